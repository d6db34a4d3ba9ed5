//! Scenario: replays through the delivery engine against a real local HTTP receiver
//! (tests/common): exactly the window, to exactly the chosen rules, beside live traffic and
//! without moving live cursors; retries and dead letters inside a replay; a restart in the
//! middle of a replay; cancelling one.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Answer, Receiver};
use eventbus::bus::{BusConfig, EventBus, Producer, PutEntry};
use eventbus::catalog::{BindingId, ReplayState, RuleSpec};
use eventbus::delivery::{Engine, EngineOptions, ReplayRequest, ReplayStatus};
use serde_json::{Value, json};

const SET: &str = "orders";

fn open(dir: &std::path::Path) -> (Arc<EventBus>, Engine) {
    let bus = Arc::new(
        EventBus::open(BusConfig {
            data_dir: dir.to_path_buf(),
            max_segment_bytes: 64 * 1024,
            ..BusConfig::default()
        })
        .unwrap(),
    );
    let engine = Engine::start(
        bus.clone(),
        EngineOptions {
            restart_delay: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(2),
            ..EngineOptions::default()
        },
    );
    (bus, engine)
}

async fn close(bus: Arc<EventBus>, engine: Engine) {
    engine.shutdown().await;
    bus.shutdown().unwrap();
}

/// Rule `name` matching events of `type` `kind`, with an http target `hook` posting to
/// `/{name}` on the receiver; `extra` is merged into the target body.
fn rule_with_hook(bus: &EventBus, rx: &Receiver, name: &str, kind: &str, extra: Value) {
    bus.catalog()
        .create_rule(
            SET,
            RuleSpec {
                name: name.into(),
                description: String::new(),
                pattern: json!({"type": [kind]}),
                enabled: true,
                transform: None,
            },
        )
        .unwrap();
    let mut body = json!({
        "name": "hook", "type": "http",
        "http": {"url": rx.url(name), "timeout_ms": 2000},
        "retry": {"max_attempts": 3, "initial_backoff_ms": 10, "max_backoff_ms": 40},
        "start": "earliest",
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    bus.catalog().create_target(SET, name, body).unwrap();
}

async fn put(bus: &EventBus, ids: std::ops::Range<usize>, kind: &str) {
    let events: Vec<Value> = ids
        .map(|i| json!({"specversion": "1.0", "id": format!("{kind}-{i}"), "source": "shop", "type": kind}))
        .collect();
    let out = bus
        .put_events(SET, &events, Producer::Custom)
        .await
        .unwrap();
    assert!(
        out.entries
            .iter()
            .all(|e| matches!(e, PutEntry::Stored { .. }))
    );
}

/// A time strictly between the events put before and after it.
async fn mark() -> u64 {
    tokio::time::sleep(Duration::from_millis(5)).await;
    let t = eventbus::config::now_ms();
    tokio::time::sleep(Duration::from_millis(5)).await;
    t
}

async fn wait_replay(
    engine: &Engine,
    name: &str,
    secs: u64,
    cond: impl Fn(&ReplayStatus) -> bool,
) -> ReplayStatus {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let s = engine.replay_status(SET, name).await.unwrap();
        if cond(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "timed out: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Ids received on `path` from the replay `name` (events with `replayname` = name), and the
/// live ones (no `replayname`), each in arrival order; other replays' events are left out.
fn split(rx: &Receiver, path: &str, name: &str) -> (Vec<String>, Vec<String>) {
    let (mut replayed, mut live) = (Vec::new(), Vec::new());
    for r in rx.accepted(path) {
        for e in r.events() {
            let id = e["id"].as_str().unwrap().to_string();
            match e.get("replayname") {
                Some(v) if v == name => replayed.push(id),
                Some(_) => {}
                None => live.push(id),
            }
        }
    }
    (replayed, live)
}

fn ids(kind: &str, r: std::ops::Range<usize>) -> Vec<String> {
    r.map(|i| format!("{kind}-{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_delivers_exactly_the_window_to_exactly_the_chosen_rules_beside_live_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, engine) = open(dir.path());
    bus.create_set(SET, None, None, Some(0)).unwrap();
    let rx = Receiver::start().await;
    rule_with_hook(&bus, &rx, "paid", "paid", json!({}));
    rule_with_hook(&bus, &rx, "shipped", "shipped", json!({}));
    engine.sync().await.unwrap();

    put(&bus, 0..5, "paid").await;
    put(&bus, 0..5, "shipped").await;
    let start = mark().await;
    put(&bus, 5..15, "paid").await;
    put(&bus, 5..15, "shipped").await;
    let end = mark().await;
    put(&bus, 15..20, "paid").await;
    rx.wait_until(10, "live delivery", |r| {
        r.accepted_ids("paid").len() == 20 && r.accepted_ids("shipped").len() == 15
    })
    .await;
    let live_cursor = engine
        .status(&BindingId::new(SET, "paid", "hook"))
        .await
        .unwrap()
        .cursor;

    let created = engine
        .create_replay(
            SET,
            ReplayRequest {
                name: "fix-1".into(),
                start_ms: start,
                end_ms: end,
                rules: Some(vec!["paid".into()]),
            },
        )
        .await
        .unwrap();
    assert_eq!(created.state, ReplayState::Running);
    // Live traffic goes on during the replay.
    put(&bus, 20..30, "paid").await;
    let done = wait_replay(&engine, "fix-1", 10, |s| s.state == ReplayState::Completed).await;
    assert_eq!(done.total, Some(10));
    assert_eq!(done.replayed, 10);
    assert_eq!(done.rules, vec!["paid".to_string()]);
    rx.wait_until(10, "live events after the replay started", |r| {
        split(r, "paid", "fix-1").1.len() == 30
    })
    .await;

    let (replayed, live) = split(&rx, "paid", "fix-1");
    assert_eq!(
        replayed.iter().cloned().collect::<BTreeSet<_>>(),
        ids("paid", 5..15).into_iter().collect(),
        "exactly the window"
    );
    assert_eq!(replayed.len(), 10, "each once: {replayed:?}");
    assert_eq!(
        live.iter().cloned().collect::<BTreeSet<_>>(),
        ids("paid", 0..30).into_iter().collect()
    );
    let (shipped_replayed, _) = split(&rx, "shipped", "fix-1");
    assert!(
        shipped_replayed.is_empty(),
        "a rule not chosen got {shipped_replayed:?}"
    );
    // The live cursor only moved for the new live events, never back.
    let after = engine
        .status(&BindingId::new(SET, "paid", "hook"))
        .await
        .unwrap();
    assert!(after.cursor >= live_cursor);
    assert_eq!(after.lag, 0);
    close(bus, engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_retries_failures_and_dead_letters_what_never_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, engine) = open(dir.path());
    bus.create_set(SET, None, None, Some(0)).unwrap();
    let rx = Receiver::start().await;
    rule_with_hook(&bus, &rx, "paid", "paid", json!({}));
    engine.sync().await.unwrap();
    put(&bus, 0..6, "paid").await;
    rx.wait_until(10, "live delivery", |r| r.accepted_ids("paid").len() == 6)
        .await;
    // From now on: replayed `paid-0` always fails, other replayed events fail their first
    // attempt.
    let attempts = Arc::new(std::sync::Mutex::new(std::collections::HashMap::<
        String,
        usize,
    >::new()));
    let a2 = attempts.clone();
    rx.set_policy("paid", move |req, _| {
        let e = &req.events()[0];
        if e.get("replayname").is_none() {
            return Answer::ok();
        }
        let id = e["id"].as_str().unwrap().to_string();
        let mut a = a2.lock().unwrap();
        let n = a.entry(id.clone()).or_default();
        *n += 1;
        if id == "paid-0" || *n == 1 {
            Answer::status(503)
        } else {
            Answer::ok()
        }
    });
    common::replay_everything(&engine, SET, "again").await;
    let done = wait_replay(&engine, "again", 20, |s| s.state.is_final()).await;
    assert_eq!(done.state, ReplayState::Completed, "{done:?}");
    assert_eq!((done.total, done.replayed), (Some(6), 6));
    let b = &done.bindings[0];
    assert_eq!((b.dead_lettered, b.retrying), (1, 0));
    let a = attempts.lock().unwrap().clone();
    assert_eq!(a["paid-0"], 3, "max_attempts = 3");
    for i in 1..6 {
        assert_eq!(a[&format!("paid-{i}")], 2, "one retry each");
    }
    let (replayed, _) = split(&rx, "paid", "again");
    assert_eq!(
        replayed.into_iter().collect::<BTreeSet<_>>(),
        ids("paid", 1..6).into_iter().collect()
    );
    // The live binding kept nothing of it.
    let live = engine
        .status(&BindingId::new(SET, "paid", "hook"))
        .await
        .unwrap();
    assert_eq!((live.dead_lettered, live.retrying), (0, 0));
    close(bus, engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_resumes_after_a_restart_and_stops_when_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    // Replayed events are slow to accept, so the replay is mid-way when the engine stops.
    rx.set_policy("paid", |req, _| {
        let mut a = Answer::ok();
        if req.events()[0].get("replayname").is_some() {
            a.delay = Duration::from_millis(20);
        }
        a
    });
    let (bus, engine) = open(dir.path());
    bus.create_set(SET, None, None, Some(0)).unwrap();
    rule_with_hook(&bus, &rx, "paid", "paid", json!({"max_in_flight": 1}));
    engine.sync().await.unwrap();
    put(&bus, 0..60, "paid").await;
    rx.wait_until(10, "live delivery", |r| r.accepted_ids("paid").len() == 60)
        .await;
    let end = eventbus::config::now_ms() + 1;
    for name in ["resumed", "cancelled"] {
        engine
            .create_replay(
                SET,
                ReplayRequest {
                    name: name.into(),
                    start_ms: 0,
                    end_ms: end,
                    rules: None,
                },
            )
            .await
            .unwrap();
    }
    wait_replay(&engine, "resumed", 10, |s| s.replayed >= 10).await;
    close(bus, engine).await;
    let before_restart = split(&rx, "paid", "resumed").0.len();
    assert!(
        before_restart < 60,
        "the replay finished before the restart"
    );

    let (bus, engine) = open(dir.path());
    let s = engine.replay_status(SET, "resumed").await.unwrap();
    assert_eq!(s.state, ReplayState::Running);
    // Cancel the other one mid-way: it stays listed as cancelled and sends no more.
    wait_replay(&engine, "cancelled", 10, |s| {
        s.replayed > before_restart as u64
    })
    .await;
    let cancelled = engine.cancel_replay(SET, "cancelled").await.unwrap();
    assert_eq!(cancelled.state, ReplayState::Cancelled);
    assert!(cancelled.finished.is_some());
    let sent_at_cancel = split(&rx, "paid", "cancelled").0.len();
    assert!(sent_at_cancel < 60, "cancelled after it finished");

    let done = wait_replay(&engine, "resumed", 20, |s| s.state.is_final()).await;
    assert_eq!(done.state, ReplayState::Completed);
    let (replayed, _) = split(&rx, "paid", "resumed");
    assert_eq!(
        replayed.iter().cloned().collect::<BTreeSet<_>>(),
        ids("paid", 0..60).into_iter().collect(),
        "every event of the window, at least once"
    );
    // A graceful stop commits what was done: nothing is sent twice.
    assert_eq!(replayed.len(), 60, "{replayed:?}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(split(&rx, "paid", "cancelled").0.len(), sent_at_cancel);
    assert_eq!(
        engine.replay_status(SET, "cancelled").await.unwrap().state,
        ReplayState::Cancelled
    );
    // Deleting the finished ones removes them.
    engine.cancel_replay(SET, "cancelled").await.unwrap();
    assert!(engine.replay_status(SET, "cancelled").await.is_err());
    assert_eq!(engine.list_replays(SET).await.unwrap().len(), 1);
    close(bus, engine).await;
}

/// A replay goes through the rule's transformation like live delivery: the target gets the
/// output, which can read the replay's `replayname` mark.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_applies_the_rule_transformation() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, engine) = open(dir.path());
    let rx = Receiver::start().await;
    bus.create_set(SET, None, None, Some(0)).unwrap();
    bus.catalog()
        .create_rule(
            SET,
            RuleSpec {
                name: "shaped".into(),
                description: String::new(),
                pattern: json!({"type": ["paid"]}),
                enabled: true,
                transform: Some(json!({"input_transformer": {
                    "input_paths_map": {"id": "$.id", "replay": "$.replayname"},
                    "input_template": "{\"order\": <id>, \"replay\": <replay>}"}})),
            },
        )
        .unwrap();
    bus.catalog()
        .create_target(
            SET,
            "shaped",
            json!({"name": "hook", "type": "http", "http": {"url": rx.url("shaped")},
                   "start": "earliest"}),
        )
        .unwrap();
    engine.sync().await.unwrap();
    put(&bus, 0..3, "paid").await;
    rx.wait_until(20, "3 live deliveries", |r| r.accepted("shaped").len() >= 3)
        .await;
    common::replay_everything(&engine, SET, "again").await;
    wait_replay(&engine, "again", 20, |s| s.state == ReplayState::Completed).await;
    let mut bodies: Vec<Value> = rx
        .accepted("shaped")
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect();
    bodies.sort_by_key(|b| (b["replay"].to_string(), b["order"].to_string()));
    let mut want: Vec<Value> = [Value::Null, json!("again")]
        .into_iter()
        .flat_map(|replay| {
            (0..3).map(move |i| json!({"order": format!("paid-{i}"), "replay": replay}))
        })
        .collect();
    want.sort_by_key(|b| (b["replay"].to_string(), b["order"].to_string()));
    assert_eq!(bodies, want);
    close(bus, engine).await;
}
