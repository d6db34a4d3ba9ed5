//! Scenario: the `file`, `command` and `event-set` targets through the real delivery engine,
//! against real local stand-ins: files under a temporary file root, shell scripts written to
//! a temporary directory (configured as commands, as the server's `[targets.commands]` would
//! be), and other event sets of the same bus. Also the HTTP API's refusal of a command the
//! server does not configure.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use eventbus::api::{ApiOptions, AppState, router};
use eventbus::bus::{BusConfig, EventBus, Producer, PutEntry};
use eventbus::catalog::BindingId;
use eventbus::config::CommandConfig;
use eventbus::delivery::{BindingState, BindingStatus, Engine, EngineOptions};
use eventbus::targets::TargetEnv;
use eventbus::{Error, Event, ReadOutcome};
use serde_json::{Value, json};
use tower::ServiceExt;

const SET: &str = "orders";
const OTHER: &str = "audit";

struct Fixture {
    _dir: tempfile::TempDir,
    bus: Arc<EventBus>,
    engine: Arc<Engine>,
}

/// A bus with the sets `orders` and `audit` (de-duplication off unless `dedup`), and an engine
/// whose targets get `env` (its file root defaults to `<data_dir>/target-files`).
async fn fixture_with(env: TargetEnv, dedup: bool) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let bus = Arc::new(
        EventBus::open(BusConfig {
            data_dir: dir.path().join("data"),
            max_segment_bytes: 64 * 1024,
            ..BusConfig::default()
        })
        .unwrap(),
    );
    let window = if dedup { None } else { Some(0) };
    bus.create_set(SET, None, None, window).unwrap();
    bus.create_set(OTHER, None, None, window).unwrap();
    let engine = Arc::new(Engine::start(
        bus.clone(),
        EngineOptions {
            restart_delay: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(2),
            target_env: env,
            ..EngineOptions::default()
        },
    ));
    Fixture {
        _dir: dir,
        bus,
        engine,
    }
}

async fn fixture() -> Fixture {
    fixture_with(TargetEnv::default(), false).await
}

fn rule(bus: &EventBus, set: &str, name: &str, pattern: Value) {
    common::create_rule(bus, set, name, pattern);
}

/// A target of `body` (merged over fast retries and `start: earliest`) on `set`/`rule`.
fn target(bus: &EventBus, set: &str, rule: &str, mut body: Value) -> BindingId {
    let defaults = json!({
        "retry": {"max_attempts": 4, "initial_backoff_ms": 10, "max_backoff_ms": 40},
        "start": "earliest",
    });
    for (k, v) in defaults.as_object().unwrap() {
        if body.get(k).is_none() {
            body[k] = v.clone();
        }
    }
    let name = body["name"].as_str().unwrap().to_string();
    bus.catalog().create_target(set, rule, body).unwrap();
    BindingId::new(set, rule, &name)
}

/// Rule "all" (events from `shop`) on SET with a target of `body` (see [`target`]); returns
/// once the engine runs the new binding.
async fn bind(f: &Fixture, body: Value) -> BindingId {
    rule(&f.bus, SET, "all", json!({"source": ["shop"]}));
    let id = target(&f.bus, SET, "all", body);
    f.engine.sync().await.unwrap();
    id
}

/// Asserts that creating `body` on rule "all" of SET is refused at `path`.
fn refused_at(bus: &EventBus, body: Value, path: &str) {
    let e = bus
        .catalog()
        .create_target(SET, "all", body.clone())
        .unwrap_err();
    assert!(
        matches!(&e, Error::Rejected { path: Some(p), .. } if p == path),
        "{body}: {e:?}"
    );
}

fn event(i: usize) -> Value {
    json!({"specversion": "1.0", "id": format!("e{i}"), "source": "shop",
           "type": "order.created", "data": {"i": i, "pad": "x".repeat(40)}})
}

async fn put(bus: &EventBus, set: &str, events: Vec<Value>, producer: Producer) {
    let out = bus.put_events(set, &events, producer).await.unwrap();
    for e in out.entries {
        if let PutEntry::Failed(e) = e {
            panic!("put failed: {e}");
        }
    }
}

async fn wait_status(
    f: &Fixture,
    id: &BindingId,
    secs: u64,
    what: &str,
    cond: impl Fn(&BindingStatus) -> bool,
) -> BindingStatus {
    common::wait_status(&f.engine, id, secs, what, cond).await
}

/// Every event stored in `set`, oldest first.
fn events_in(bus: &EventBus, set: &str) -> Vec<Event> {
    let mut r = bus.read_from(set, 0).unwrap();
    let mut out = Vec::new();
    while let ReadOutcome::Record(rec) = r.next().unwrap() {
        out.push(rec.event);
    }
    out
}

fn hops(e: &Event) -> Option<&str> {
    e.extensions.get("ebhops").map(String::as_str)
}

fn json_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("every line is JSON"))
        .collect()
}

/// Writes an executable shell script.
fn script(path: &Path, body: &str) -> PathBuf {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

fn commands(list: Vec<(&str, CommandConfig)>) -> TargetEnv {
    TargetEnv {
        commands: Arc::new(
            list.into_iter()
                .map(|(n, c)| (n.to_string(), c))
                .collect::<BTreeMap<_, _>>(),
        ),
        ..TargetEnv::default()
    }
}

// ----- file ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_target_appends_one_json_line_per_event_under_the_file_root() {
    let f = fixture().await;
    let id = bind(
        &f,
        json!({"name": "log", "type": "file", "file": {"path": "alerts/cvm.jsonl"}}),
    )
    .await;
    put(&f.bus, SET, (0..20).map(event).collect(), Producer::Custom).await;
    wait_status(&f, &id, 20, "20 delivered", |s| s.delivered == 20).await;
    // Delivered means written and fdatasynced: every line is there now.
    let path = f.bus.data_dir().join("target-files/alerts/cvm.jsonl");
    let lines = json_lines(&path);
    assert_eq!(lines.len(), 20);
    let ids: BTreeSet<String> = lines
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, (0..20).map(|i| format!("e{i}")).collect());
    assert_eq!(lines[0]["specversion"], "1.0");
    assert!(lines[0]["data"]["pad"].is_string());
    // More events append to the same file.
    put(&f.bus, SET, (20..25).map(event).collect(), Producer::Custom).await;
    wait_status(&f, &id, 20, "25 delivered", |s| s.delivered == 25).await;
    assert_eq!(json_lines(&path).len(), 25);
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_target_rotates_at_max_bytes_and_keeps_max_files() {
    let f = fixture().await;
    let id = bind(
        &f,
        json!({"name": "log", "type": "file", "ordered": true,
           "file": {"path": "rot.jsonl", "max_bytes": 1000, "max_files": 2}}),
    )
    .await;
    put(&f.bus, SET, (0..40).map(event).collect(), Producer::Custom).await;
    wait_status(&f, &id, 20, "40 delivered", |s| s.delivered == 40).await;
    let root = f.bus.data_dir().join("target-files");
    let live = root.join("rot.jsonl");
    let one = root.join("rot.jsonl.1");
    let two = root.join("rot.jsonl.2");
    assert!(
        !root.join("rot.jsonl.3").exists(),
        "only max_files rotated files"
    );
    for p in [&live, &one, &two] {
        let len = std::fs::metadata(p).unwrap().len();
        assert!(len > 0 && len <= 1000, "{}: {len} bytes", p.display());
    }
    // In order (ordered target): the newest events are in the live file, the oldest kept in
    // `.2`; the ones before were dropped with the oldest file.
    let id_of = |v: &Value| v["id"].as_str().unwrap()[1..].parse::<usize>().unwrap();
    let (l, o, t) = (json_lines(&live), json_lines(&one), json_lines(&two));
    assert_eq!(id_of(l.last().unwrap()), 39);
    assert_eq!(id_of(&o[0]), id_of(t.last().unwrap()) + 1);
    assert_eq!(id_of(&l[0]), id_of(o.last().unwrap()) + 1);
    assert!(id_of(&t[0]) > 0, "the oldest file was dropped");
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_target_paths_outside_the_root_are_refused_at_creation() {
    let f = fixture().await;
    rule(&f.bus, SET, "all", json!({"source": ["shop"]}));
    for path in [
        "/etc/cron.d/x",
        "../escape.jsonl",
        "a/../../escape",
        "",
        "dir/",
    ] {
        refused_at(
            &f.bus,
            json!({"name": "log", "type": "file", "file": {"path": path}}),
            "$.file.path",
        );
    }
    assert!(f.bus.catalog().list_targets(SET, "all").unwrap().is_empty());
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_target_write_errors_are_retried_with_the_path() {
    let f = fixture().await;
    rule(&f.bus, SET, "all", json!({"source": ["shop"]}));
    // A directory where the file should be: every open fails until it is removed.
    let root = f.bus.data_dir().join("target-files");
    let blocked = root.join("blocked.jsonl");
    std::fs::create_dir_all(&blocked).unwrap();
    let id = target(
        &f.bus,
        SET,
        "all",
        json!({"name": "log", "type": "file", "file": {"path": "blocked.jsonl"},
               "retry": {"max_attempts": 1000, "initial_backoff_ms": 20, "max_backoff_ms": 50}}),
    );
    f.engine.sync().await.unwrap();
    put(&f.bus, SET, vec![event(1)], Producer::Custom).await;
    let s = wait_status(&f, &id, 20, "a failed attempt", |s| s.failed_attempts >= 1).await;
    let err = s.last_error.unwrap();
    assert!(err.contains("blocked.jsonl"), "{err}");
    std::fs::remove_dir(&blocked).unwrap();
    wait_status(&f, &id, 20, "delivered after the fix", |s| s.delivered == 1).await;
    assert_eq!(json_lines(&blocked).len(), 1);
    f.engine.shutdown().await;
}

// ----- command ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_target_gets_the_event_json_on_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let prog = script(
        &tmp.path().join("save.sh"),
        "cat > \"$OUT/$EVENTBUS_EVENT_ID.json\"\n\
         echo \"$EVENTBUS_SET/$EVENTBUS_RULE/$EVENTBUS_TARGET $EVENTBUS_EVENT_COUNT $1\" \
         > \"$OUT/$EVENTBUS_EVENT_ID.env\"",
    );
    let mut cmd = CommandConfig::new(prog);
    cmd.args = vec!["first-arg".into()];
    cmd.env.insert("OUT".into(), out.display().to_string());
    let f = fixture_with(commands(vec![("save", cmd)]), false).await;
    let id = bind(
        &f,
        json!({"name": "run", "type": "command", "command": {"name": "save"}}),
    )
    .await;
    put(&f.bus, SET, (0..5).map(event).collect(), Producer::Custom).await;
    wait_status(&f, &id, 30, "5 delivered", |s| s.delivered == 5).await;
    for i in 0..5 {
        let doc: Value =
            serde_json::from_slice(&std::fs::read(out.join(format!("e{i}.json"))).unwrap())
                .unwrap();
        assert_eq!(doc["id"], format!("e{i}"));
        assert_eq!(doc["data"]["i"], i);
        let env = std::fs::read_to_string(out.join(format!("e{i}.env"))).unwrap();
        assert_eq!(env.trim_end(), "orders/all/run 1 first-arg");
    }
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_target_failing_once_is_delivered_on_retry() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let out = tmp.path().join("out.json");
    let prog = script(
        &tmp.path().join("flaky.sh"),
        &format!(
            "if [ ! -e {state} ]; then touch {state}; echo 'backup lock held' >&2; exit 75; fi\n\
             cat > {out}",
            state = state.display(),
            out = out.display()
        ),
    );
    let f = fixture_with(commands(vec![("flaky", CommandConfig::new(prog))]), false).await;
    let id = bind(
        &f,
        json!({"name": "run", "type": "command", "command": {"name": "flaky"}}),
    )
    .await;
    put(&f.bus, SET, vec![event(7)], Producer::Custom).await;
    let s = wait_status(&f, &id, 30, "delivered on retry", |s| s.delivered == 1).await;
    assert_eq!(s.failed_attempts, 1);
    assert_eq!((s.retrying, s.dead_lettered), (0, 0));
    let err = s.last_error.expect("the failed attempt's error is kept");
    assert!(
        err.contains("status 75") && err.contains("backup lock held"),
        "{err}"
    );
    let doc: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(doc["id"], "e7");
    f.engine.shutdown().await;
}

/// True when `pid` is gone (or a zombie waiting to be reaped).
fn process_gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_target_past_its_timeout_is_killed_with_its_children() {
    let tmp = tempfile::tempdir().unwrap();
    let pids = tmp.path().join("pids");
    // Run through /bin/sh (the script is only read), so the test cannot race another test's
    // fork holding the script open for writing (ETXTBSY).
    let body = format!(
        "sleep 30 &\necho $! > {p}.child\necho $$ > {p}.main\nwait",
        p = pids.display()
    );
    let path = script(&tmp.path().join("slow.sh"), &body);
    let mut cmd = CommandConfig::new("/bin/sh");
    cmd.args = vec![path.display().to_string()];
    cmd.timeout_ms = 60_000;
    let f = fixture_with(commands(vec![("slow", cmd)]), false).await;
    rule(&f.bus, SET, "all", json!({"source": ["shop"]}));
    let started = Instant::now();
    let id = target(
        &f.bus,
        SET,
        "all",
        // The target shortens the configured timeout.
        json!({"name": "run", "type": "command", "command": {"name": "slow", "timeout_ms": 500},
               "retry": {"max_attempts": 1}, "dead_letter": {"mode": "dlq"}}),
    );
    f.engine.sync().await.unwrap();
    put(&f.bus, SET, vec![event(1)], Producer::Custom).await;
    let s = wait_status(&f, &id, 20, "dead-lettered", |s| s.dead_lettered == 1).await;
    assert!(started.elapsed() < Duration::from_secs(20));
    let err = s.last_error.unwrap();
    assert!(err.contains("timed out after 500 ms"), "{err}");
    let dl = common::wait_dead_letters(&f.engine, &id, 1).await;
    assert!(dl[0].last_error.contains("killed"), "{}", dl[0].last_error);
    // The script and the child it started are both gone.
    let read = |ext: &str| {
        std::fs::read_to_string(format!("{}.{ext}", pids.display()))
            .unwrap()
            .trim()
            .to_string()
    };
    let (main, child) = (read("main"), read("child"));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(process_gone(&main) && process_gone(&child)) {
        assert!(
            Instant::now() < deadline,
            "processes {main} / {child} still run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.engine.shutdown().await;
}

/// The HTTP API over `f`, and a request helper.
async fn api(f: &Fixture, method: Method, uri: &str, body: Value) -> (StatusCode, Value) {
    let state = AppState::new(f.bus.clone(), f.engine.clone(), ApiOptions::default());
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    let resp = router(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_target_unconfigured_name_is_refused() {
    let f = fixture_with(
        commands(vec![("known", CommandConfig::new("/bin/true"))]),
        false,
    )
    .await;
    rule(&f.bus, SET, "all", json!({"source": ["shop"]}));
    let uri = format!("/v1/event-sets/{SET}/rules/all/targets");
    // The API refuses a name the server does not configure, naming the field.
    let (status, body) = api(
        &f,
        Method::POST,
        &uri,
        json!({"name": "run", "type": "command", "command": {"name": "nope"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["path"], "$.command.name");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("nope"),
        "{body}"
    );
    // A path or arguments cannot be given at all.
    let (status, body) = api(
        &f,
        Method::POST,
        &uri,
        json!({"name": "run", "type": "command",
               "command": {"name": "known", "program": "/bin/rm"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["path"], "$.command.program");
    // A configured name is accepted; patching it to an unknown one is refused.
    let (status, body) = api(
        &f,
        Method::POST,
        &uri,
        json!({"name": "run", "type": "command", "command": {"name": "known"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api(
        &f,
        Method::PATCH,
        &format!("{uri}/run"),
        json!({"command": {"name": "gone"}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["path"], "$.command.name");

    // A body stored without the check (a command since removed from the configuration) leaves
    // its binding failed, saying why.
    let id = target(
        &f.bus,
        SET,
        "all",
        json!({"name": "stale", "type": "command", "command": {"name": "removed"}}),
    );
    f.engine.sync().await.unwrap();
    let s = wait_status(&f, &id, 10, "failed", |s| s.state == BindingState::Failed).await;
    let err = s.last_error.unwrap();
    assert!(
        err.contains("removed") && err.contains("configured"),
        "{err}"
    );
    f.engine.shutdown().await;
}

// ----- event-set ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_set_target_forwards_events_into_the_other_set() {
    let f = fixture().await;
    rule(
        &f.bus,
        SET,
        "paid",
        json!({"data": {"i": [{"numeric": ["<", 5]}]}}),
    );
    let id = target(
        &f.bus,
        SET,
        "paid",
        json!({"name": "fwd", "type": "event-set", "event-set": {"name": OTHER}}),
    );
    f.engine.sync().await.unwrap();
    put(&f.bus, SET, (0..10).map(event).collect(), Producer::Custom).await;
    wait_status(&f, &id, 20, "5 forwarded", |s| s.delivered == 5).await;
    let got = events_in(&f.bus, OTHER);
    let ids: BTreeSet<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, BTreeSet::from(["e0", "e1", "e2", "e3", "e4"]));
    let original = &events_in(&f.bus, SET)[0];
    let copy = got.iter().find(|e| e.id == "e0").unwrap();
    assert_eq!(
        (&copy.source, &copy.ty, copy.time_ms, &copy.data),
        (
            &original.source,
            &original.ty,
            original.time_ms,
            &original.data
        )
    );
    assert_eq!(hops(copy), Some("1"));
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_set_target_forwards_cloud_events_out_of_default() {
    let f = fixture().await;
    rule(
        &f.bus,
        "default",
        "cvm",
        json!({"source": ["cvm.cloud.tencent"]}),
    );
    let id = target(
        &f.bus,
        "default",
        "cvm",
        json!({"name": "fwd", "type": "event-set", "event-set": {"name": OTHER}}),
    );
    f.engine.sync().await.unwrap();
    let cloud = json!({"specversion": "1.0", "id": "c1", "source": "cvm.cloud.tencent",
                       "type": "cvm:ErrorEvent:PingUnreachable", "data": {"ip": "10.0.0.1"}});
    put(&f.bus, "default", vec![cloud], Producer::Cloud).await;
    wait_status(&f, &id, 20, "forwarded", |s| s.delivered == 1).await;
    let got = events_in(&f.bus, OTHER);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].source, "cvm.cloud.tencent");
    // An application still cannot put such a source into a custom set.
    let out = f
        .bus
        .put_events(
            OTHER,
            &[
                json!({"specversion": "1.0", "id": "c2", "source": "cvm.cloud.tencent",
                     "type": "cvm:ErrorEvent:PingUnreachable"}),
            ],
            Producer::Custom,
        )
        .await
        .unwrap();
    assert_eq!(out.failed, 1);
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_set_target_into_its_own_set_or_default_is_refused_at_creation() {
    let f = fixture().await;
    rule(&f.bus, SET, "all", json!({"source": ["shop"]}));
    for dest in [SET, "default"] {
        refused_at(
            &f.bus,
            json!({"name": "fwd", "type": "event-set", "event-set": {"name": dest}}),
            "$.event-set.name",
        );
    }
    f.engine.shutdown().await;
}

/// A loop of event-set targets: rule "to-audit" on SET forwards every `shop` event to OTHER,
/// whose rule "to-orders" forwards it back (its target body merged with `back_extra`). Returns
/// the two bindings, applied by the engine.
async fn set_loop(f: &Fixture, back_extra: Value) -> (BindingId, BindingId) {
    rule(&f.bus, SET, "to-audit", json!({"source": ["shop"]}));
    rule(&f.bus, OTHER, "to-orders", json!({"source": ["shop"]}));
    let a = target(
        &f.bus,
        SET,
        "to-audit",
        json!({"name": "fwd", "type": "event-set", "event-set": {"name": OTHER}}),
    );
    let mut back = json!({"name": "fwd", "type": "event-set", "event-set": {"name": SET}});
    for (k, v) in back_extra.as_object().cloned().unwrap_or_default() {
        back[k] = v;
    }
    let b = target(&f.bus, OTHER, "to-orders", back);
    f.engine.sync().await.unwrap();
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_set_loop_is_dead_lettered_after_max_hops() {
    let env = TargetEnv {
        max_event_set_hops: 3,
        ..TargetEnv::default()
    };
    // No de-duplication, so only the hop limit can end the loop.
    let f = fixture_with(env, false).await;
    let (a, b) = set_loop(&f, json!({"dead_letter": {"mode": "dlq"}})).await;
    put(&f.bus, SET, vec![event(1)], Producer::Custom).await;
    // orders(0) → audit(1) → orders(2) → audit(3) → orders would be hop 4 > 3.
    let s = wait_status(&f, &b, 20, "dead-lettered", |s| s.dead_lettered == 1).await;
    assert_eq!(s.delivered, 1);
    let err = s.last_error.unwrap();
    assert!(err.contains("max_event_set_hops = 3"), "{err}");
    let dl = common::wait_dead_letters(&f.engine, &b, 1).await;
    assert_eq!(dl.len(), 1);
    assert_eq!(hops(&dl[0].event), Some("3"));
    assert_eq!(dl[0].attempts, 1, "not retried");
    wait_status(&f, &a, 10, "a settled", |s| s.delivered == 2 && s.lag == 0).await;
    let orders = events_in(&f.bus, SET);
    let audit = events_in(&f.bus, OTHER);
    assert_eq!(
        orders.iter().map(hops).collect::<Vec<_>>(),
        [None, Some("2")]
    );
    assert_eq!(
        audit.iter().map(hops).collect::<Vec<_>>(),
        [Some("1"), Some("3")]
    );
    assert!(orders.iter().chain(&audit).all(|e| e.id == "e1"));
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_set_loop_within_the_dedup_window_ends_as_a_repeat() {
    // Default de-duplication: the event coming back to `orders` is a repeat, acknowledged
    // without being stored again, so the loop ends after one round.
    let f = fixture_with(TargetEnv::default(), true).await;
    let (a, b) = set_loop(&f, json!({})).await;
    put(&f.bus, SET, vec![event(1)], Producer::Custom).await;
    wait_status(&f, &b, 20, "b delivered", |s| s.delivered == 1).await;
    wait_status(&f, &a, 20, "a delivered", |s| {
        s.delivered == 1 && s.lag == 0
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(events_in(&f.bus, SET).len(), 1);
    assert_eq!(events_in(&f.bus, OTHER).len(), 1);
    f.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_set_target_into_a_missing_set_is_dead_lettered() {
    let f = fixture().await;
    let id = bind(
        &f,
        json!({"name": "fwd", "type": "event-set", "event-set": {"name": "nowhere"}}),
    )
    .await;
    put(&f.bus, SET, vec![event(1)], Producer::Custom).await;
    let s = wait_status(&f, &id, 20, "dead-lettered", |s| s.dead_lettered == 1).await;
    assert_eq!(s.failed_attempts, 1, "not retried");
    assert!(s.last_error.unwrap().contains("nowhere"));
    f.engine.shutdown().await;
}
