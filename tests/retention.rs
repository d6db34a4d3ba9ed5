//! Scenario: retention beside delivery and queries. A binding that falls behind while paused
//! or while its target fails jumps forward to the first retained offset and reports exactly
//! the events it lost (status, the durable counter across a restart, `GET /metrics`); the
//! retention schedule (`EventBus::schedule_retention`, and `eventbus serve` through the real
//! binary) expires a quiet set; paging a query window with `after` tokens is complete and
//! stable while appends continue; a seek by time re-delivers exactly the events from that
//! time, and the cursor it writes is durable.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Answer, Receiver};
use eventbus::api::{ApiOptions, AppState, router};
use eventbus::bus::{BusConfig, EventBus, Producer, PutEntry};
use eventbus::catalog::{BindingId, RulePatch, SetPatch};
use eventbus::config::now_ms;
use eventbus::delivery::{BindingState, BindingStatus, Engine, EngineOptions, SeekTo};
use eventbus::store::ReadOutcome;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

const SET: &str = "orders";
/// Small segments, so a hundred events span several of them and retention has whole sealed
/// segments to remove.
const SEGMENT_BYTES: u64 = 8 * 1024;

// ----- fixture ------------------------------------------------------------------------------

/// A bus, its delivery engine and the HTTP router over them (no tokens: every request is
/// admin).
struct Node {
    bus: Arc<EventBus>,
    engine: Arc<Engine>,
    router: Router,
}

impl Node {
    fn open(dir: &std::path::Path) -> Node {
        let bus = Arc::new(
            EventBus::open(BusConfig {
                data_dir: dir.to_path_buf(),
                max_segment_bytes: SEGMENT_BYTES,
                ..BusConfig::default()
            })
            .unwrap(),
        );
        let engine = Arc::new(Engine::start(
            bus.clone(),
            EngineOptions {
                restart_delay: Duration::from_millis(100),
                drain_timeout: Duration::from_secs(2),
                ..EngineOptions::default()
            },
        ));
        let router = router(AppState::new(
            bus.clone(),
            engine.clone(),
            ApiOptions::default(),
        ));
        Node {
            bus,
            engine,
            router,
        }
    }

    /// Stops delivery and closes the bus, as `serve` does on shutdown.
    async fn close(self) {
        self.engine.shutdown().await;
        self.bus.shutdown().unwrap();
    }

    async fn get(&self, uri: &str) -> (StatusCode, Vec<u8>) {
        let resp = self
            .router
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        (status, body.to_vec())
    }

    async fn status(&self, id: &BindingId) -> BindingStatus {
        self.engine.status(id).await.unwrap()
    }

    /// Waits (polling every 10 ms, at most `secs`) until the binding's status satisfies `cond`.
    async fn wait_status(
        &self,
        id: &BindingId,
        secs: u64,
        what: &str,
        cond: impl Fn(&BindingStatus) -> bool,
    ) -> BindingStatus {
        common::wait_status(&self.engine, id, secs, what, cond).await
    }

    /// `lost_to_retention` of the binding as `Engine::metrics` reports it (what `GET /metrics`
    /// exports).
    async fn metrics_lost(&self, id: &BindingId) -> Option<u64> {
        self.engine
            .metrics()
            .await
            .into_iter()
            .find(|m| &m.id == id)
            .map(|m| m.status.lost_to_retention)
    }

    /// The value of `eventbus_binding_lost_to_retention_total` for target `target` in
    /// `GET /metrics`.
    async fn scraped_lost(&self, target: &str) -> Option<u64> {
        let (status, body) = self.get("/metrics").await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body).unwrap();
        let label = format!("target=\"{target}\"");
        text.lines()
            .find(|l| {
                l.starts_with("eventbus_binding_lost_to_retention_total{") && l.contains(&label)
            })
            .map(|l| l.rsplit(' ').next().unwrap().parse().unwrap())
    }

    fn rule(&self, name: &str, pattern: Value) {
        common::create_rule(&self.bus, SET, name, pattern);
    }

    fn enable(&self, rule: &str, enabled: bool) {
        self.bus
            .catalog()
            .update_rule(
                SET,
                rule,
                RulePatch {
                    enabled: Some(enabled),
                    ..RulePatch::default()
                },
            )
            .unwrap();
    }

    /// An http target from the earliest event, fast retries; `extra` is merged over the body.
    fn target(&self, rule: &str, name: &str, url: &str, extra: Value) -> BindingId {
        let mut body = json!({
            "name": name, "type": "http",
            "http": {"url": url, "timeout_ms": 10000},
            "retry": {"max_attempts": 4, "initial_backoff_ms": 10, "max_backoff_ms": 40},
            "start": "earliest",
        });
        merge(&mut body, extra);
        self.bus.catalog().create_target(SET, rule, body).unwrap();
        BindingId::new(SET, rule, name)
    }

    /// Puts events `range` into SET, `per_put` at a time; returns their offsets.
    async fn put(&self, range: std::ops::Range<usize>, per_put: usize) -> Vec<u64> {
        put_into(&self.bus, SET, range, per_put, "paid").await
    }

    /// Replaces SET's retention with a byte cap and applies it now; returns how many events it
    /// removed.
    async fn cap_bytes(&self, max_bytes: u64) -> u64 {
        let patch: SetPatch =
            serde_json::from_value(json!({"retention": {"max_bytes": max_bytes}})).unwrap();
        self.bus.update_set(SET, patch).unwrap();
        let removed = self.bus.apply_retention().await.unwrap();
        removed.iter().find(|(n, _)| n == SET).unwrap().1
    }
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

/// Event `e{i}` of type `kind`, with some padding so a segment holds about a dozen.
fn event(i: usize, kind: &str) -> Value {
    json!({"specversion": "1.0", "id": format!("e{i}"), "source": "shop",
           "type": kind, "data": {"i": i, "pad": "x".repeat(400)}})
}

async fn put_into(
    bus: &EventBus,
    set: &str,
    range: std::ops::Range<usize>,
    per_put: usize,
    kind: &str,
) -> Vec<u64> {
    let all: Vec<usize> = range.collect();
    let mut offsets = Vec::new();
    for chunk in all.chunks(per_put.max(1)) {
        let events: Vec<Value> = chunk.iter().map(|i| event(*i, kind)).collect();
        let out = bus
            .put_events(set, &events, Producer::Custom)
            .await
            .unwrap();
        for e in &out.entries {
            match e {
                PutEntry::Stored { offset, .. } => offsets.push(*offset),
                PutEntry::Failed(e) => panic!("put failed: {e}"),
            }
        }
    }
    offsets
}

fn ids(range: std::ops::Range<u64>) -> BTreeSet<String> {
    range.map(|i| format!("e{i}")).collect()
}

fn accepted_set(rx: &Receiver) -> BTreeSet<String> {
    rx.accepted_ids("hook").into_iter().collect()
}

// ----- a binding that falls behind retention --------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_jump_of_a_paused_binding_is_reported_delivered_past_and_durable() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let node = Node::open(dir.path());
    node.bus.create_set(SET, None, None, Some(0)).unwrap();
    node.rule("all", json!({"source": ["shop"]}));
    let id = node.target("all", "hook", &rx.url("hook"), json!({}));
    node.engine.sync().await.unwrap();

    // e0..e4 delivered; then the rule is disabled with the cursor at 5.
    node.put(0..5, 5).await;
    node.wait_status(&id, 10, "cursor 5", |s| s.cursor == 5)
        .await;
    node.enable("all", false);
    node.engine.sync().await.unwrap();
    let s = node.status(&id).await;
    assert_eq!(
        (s.state, s.cursor, s.lost_to_retention),
        (BindingState::Paused, 5, 0)
    );

    // While paused, 115 more events over several segments; then a byte cap removes the oldest
    // segments, the cursor's among them.
    node.put(5..120, 5).await;
    let before = node.bus.get_set(SET).unwrap().stats;
    assert!(before.segments >= 6, "{before:?}");
    assert_eq!(before.first_offset, 0);
    let removed = node.cap_bytes(3 * SEGMENT_BYTES).await;
    let first = node.bus.first_offset(SET).unwrap();
    let next = node.bus.next_offset(SET).unwrap();
    assert_eq!(removed, first, "everything below the first offset went");
    assert!(first > 5 && first < next, "first {first}, next {next}");
    let lost = first - 5;

    // Paused: the status already counts what the binding will skip (cursor vs first offset).
    let s = node.status(&id).await;
    assert_eq!(s.state, BindingState::Paused);
    assert_eq!(
        (s.cursor, s.lag, s.lost_to_retention),
        (5, next - 5, lost),
        "{s:?}"
    );
    assert_eq!(accepted_set(&rx), ids(0..5), "paused: nothing sent");
    // ... and so do the metrics, from the catalog (not the stopped worker's counters).
    assert_eq!(node.metrics_lost(&id).await, Some(lost));
    assert_eq!(node.scraped_lost("hook").await, Some(lost));

    // Re-enabled: it jumps to the first retained offset and delivers only retained events.
    node.enable("all", true);
    let s = node
        .wait_status(&id, 20, "caught up", |s| {
            s.state == BindingState::Running && s.cursor == next
        })
        .await;
    assert_eq!(s.lost_to_retention, lost, "{s:?}");
    rx.wait_until(10, "every retained event", |r| {
        accepted_set(r).is_superset(&ids(first..next))
    })
    .await;
    let expected: BTreeSet<String> = ids(0..5).union(&ids(first..next)).cloned().collect();
    assert_eq!(accepted_set(&rx), expected, "removed events are never sent");
    // The durable counter was committed with the cursor.
    let counters = node.bus.catalog().binding_counters(&id).unwrap();
    assert_eq!(counters.lost_to_retention, lost);
    assert_eq!(node.metrics_lost(&id).await, Some(lost));
    assert_eq!(node.scraped_lost("hook").await, Some(lost));
    node.close().await;

    // After a restart the counter is still there: in the status, in the metrics, and it is not
    // counted twice.
    let node = Node::open(dir.path());
    node.engine.sync().await.unwrap();
    let s = node.status(&id).await;
    assert_eq!((s.cursor, s.lost_to_retention), (next, lost), "{s:?}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while node.metrics_lost(&id).await != Some(lost) {
        assert!(Instant::now() < deadline, "metrics after restart");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(node.scraped_lost("hook").await, Some(lost));
    node.put(120..122, 2).await;
    let s = node
        .wait_status(&id, 10, "the new events", |s| s.cursor == next + 2)
        .await;
    assert_eq!(s.lost_to_retention, lost);
    rx.wait_until(10, "e120, e121", |r| {
        accepted_set(r).is_superset(&ids(120..122))
    })
    .await;
    // A seek below the first retained offset stops there: the removed events are not
    // counted as lost a second time.
    let to = node
        .engine
        .seek(&id, eventbus::delivery::SeekTo::Offset(0))
        .await
        .unwrap();
    assert_eq!(to, first);
    let s = node
        .wait_status(&id, 10, "caught up again", |s| s.cursor == next + 2)
        .await;
    assert_eq!(s.lost_to_retention, lost, "{s:?}");
    node.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_jump_behind_a_failing_ordered_target_counts_exactly_the_events_never_sent() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let failing = Arc::new(AtomicBool::new(true));
    let flag = failing.clone();
    rx.set_policy("hook", move |_, _| {
        if flag.load(Ordering::SeqCst) {
            Answer::status(503)
        } else {
            Answer::ok()
        }
    });
    let node = Node::open(dir.path());
    node.bus.create_set(SET, None, None, Some(0)).unwrap();
    node.rule("all", json!({"source": ["shop"]}));
    // Ordered: a failing batch is held in memory and the cursor stays below it (an unordered
    // binding would move failed events into retry entries, which keep a copy of the event).
    let id = node.target(
        "all",
        "hook",
        &rx.url("hook"),
        json!({"ordered": true, "retry": {"max_attempts": 100000}}),
    );
    node.engine.sync().await.unwrap();
    node.put(0..120, 5).await;
    node.wait_status(&id, 10, "failing", |s| s.failed_attempts >= 2)
        .await;
    let s = node.status(&id).await;
    assert_eq!(s.cursor, 0, "{s:?}");

    let removed = node.cap_bytes(3 * SEGMENT_BYTES).await;
    let first = node.bus.first_offset(SET).unwrap();
    let next = node.bus.next_offset(SET).unwrap();
    assert_eq!(removed, first);
    assert!(first > 5 && first < next, "first {first}, next {next}");

    failing.store(false, Ordering::SeqCst);
    let s = node
        .wait_status(&id, 20, "caught up", |s| s.cursor == next)
        .await;
    rx.wait_until(10, "every retained event", |r| {
        accepted_set(r).is_superset(&ids(first..next))
    })
    .await;
    // What the worker had read before retention (the held batch) still goes out; everything
    // else below the first offset is lost, and counted exactly once.
    let delivered = accepted_set(&rx);
    let removed_ids = ids(0..first);
    let sent_anyway = delivered.intersection(&removed_ids).count() as u64;
    assert!(sent_anyway >= 1, "the held event e0 is delivered");
    assert!(delivered.contains("e0"));
    assert_eq!(s.lost_to_retention, first - sent_anyway, "{s:?}");
    assert!(s.lost_to_retention > 0);
    assert_eq!(
        node.bus
            .catalog()
            .binding_counters(&id)
            .unwrap()
            .lost_to_retention,
        s.lost_to_retention
    );
    assert_eq!(node.scraped_lost("hook").await, Some(s.lost_to_retention));
    node.close().await;
}

// ----- the schedule ----------------------------------------------------------------------------

/// A bus without an engine, SET holding `n` events over several segments, and a byte cap set
/// but not applied: only a retention pass (or a roll) removes anything now.
async fn quiet_set_over_its_cap(dir: &std::path::Path, n: usize) -> Arc<EventBus> {
    let bus = Arc::new(
        EventBus::open(BusConfig {
            data_dir: dir.to_path_buf(),
            max_segment_bytes: SEGMENT_BYTES,
            ..BusConfig::default()
        })
        .unwrap(),
    );
    bus.create_set(SET, None, None, Some(0)).unwrap();
    put_into(&bus, SET, 0..n, 5, "paid").await;
    let patch: SetPatch =
        serde_json::from_value(json!({"retention": {"max_bytes": 2 * SEGMENT_BYTES}})).unwrap();
    bus.update_set(SET, patch).unwrap();
    assert_eq!(bus.first_offset(SET).unwrap(), 0, "nothing applied yet");
    bus
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_schedule_expires_a_quiet_set_every_interval_until_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let bus = quiet_set_over_its_cap(dir.path(), 80).await;
    let schedule = bus.schedule_retention(Duration::from_millis(20));
    assert!(schedule.is_enabled());
    let deadline = Instant::now() + Duration::from_secs(20);
    while bus.first_offset(SET).unwrap() == 0 || schedule.passes() < 3 {
        assert!(Instant::now() < deadline, "passes: {}", schedule.passes());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stats = bus.get_set(SET).unwrap().stats;
    assert!(stats.bytes <= 2 * SEGMENT_BYTES, "{stats:?}");
    assert!(stats.segments >= 1);
    schedule.stop().await;
    // Stopped: the task has ended (stop waited for it), the bus closes normally.
    bus.shutdown().unwrap();

    // A zero interval schedules nothing.
    let dir = tempfile::tempdir().unwrap();
    let bus = quiet_set_over_its_cap(dir.path(), 40).await;
    let none = bus.schedule_retention(Duration::ZERO);
    assert!(!none.is_enabled());
    assert_eq!(none.passes(), 0);
    none.stop().await;
    assert_eq!(bus.first_offset(SET).unwrap(), 0);
    bus.shutdown().unwrap();
}

/// Runs the paused-time runtime's ready tasks until `cond` holds; the retention request goes
/// to the log's writer thread, so this waits in real time (at most 10 s) without sleeping on
/// the paused clock (which would advance it).
async fn spin_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[tokio::test(start_paused = true)]
async fn retention_schedule_first_runs_one_interval_after_it_starts_on_paused_time() {
    let dir = tempfile::tempdir().unwrap();
    let bus = quiet_set_over_its_cap(dir.path(), 60).await;
    let schedule = bus.schedule_retention(Duration::from_secs(60));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::advance(Duration::from_secs(59)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(schedule.passes(), 0, "not before the first interval");
    assert_eq!(bus.first_offset(SET).unwrap(), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    spin_until("the first pass", || schedule.passes() == 1).await;
    assert!(
        bus.first_offset(SET).unwrap() > 0,
        "the first pass applied the cap"
    );
    tokio::time::advance(Duration::from_secs(60)).await;
    spin_until("the second pass", || schedule.passes() == 2).await;
    schedule.stop().await;
    bus.shutdown().unwrap();
}

// ----- `eventbus serve` runs the schedule -------------------------------------------------------

/// The server child process; killed if the test fails before it is stopped.
struct Server {
    child: Option<std::process::Child>,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

async fn http(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client.request(method, url);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_applies_retention_on_its_schedule_and_logs_it() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("eventbus.toml");
    std::fs::write(&config, format!("max_segment_bytes = {SEGMENT_BYTES}\n")).unwrap();
    let stderr_path = dir.path().join("stderr.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_eventbus"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("EVENTBUS_LOG", "info")
        // The variable, not the flag (the flag is parsed in src/cli/serve.rs's unit tests).
        .env("EVENTBUS_RETENTION_INTERVAL_SECS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start eventbus serve");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = stdout.next().expect("a first line").unwrap();
    let base = first
        .strip_prefix("eventbus: listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
        .to_string();
    let mut server = Server {
        child: Some(child),
        base,
    };
    let client = reqwest::Client::new();
    let base = server.base.clone();
    let (st, _) = http(
        &client,
        reqwest::Method::POST,
        format!("{base}/v1/event-sets"),
        Some(json!({"name": "quiet", "dedup_window_ms": 0})),
    )
    .await;
    assert_eq!(st, 201);
    for chunk in 0..12 {
        let events: Vec<Value> = (chunk * 5..chunk * 5 + 5)
            .map(|i| event(i, "paid"))
            .collect();
        let (st, v) = http(
            &client,
            reqwest::Method::POST,
            format!("{base}/v1/event-sets/quiet/events"),
            Some(Value::Array(events)),
        )
        .await;
        assert_eq!((st, &v["failed"]), (200, &json!(0)), "{v}");
    }
    // A cap set now is applied by no roll (the set is quiet): only the schedule can apply it.
    let (st, v) = http(
        &client,
        reqwest::Method::PATCH,
        format!("{base}/v1/event-sets/quiet"),
        Some(json!({"retention": {"max_bytes": 2 * SEGMENT_BYTES}})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, v) = http(
            &client,
            reqwest::Method::GET,
            format!("{base}/v1/event-sets/quiet"),
            None,
        )
        .await;
        if v["stats"]["first_offset"].as_u64().is_some_and(|f| f > 0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the schedule never applied the cap: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut child = server.child.take().unwrap();
    // SAFETY: signalling our own child process.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    let rest: Vec<String> = stdout.map(|l| l.unwrap()).collect();
    assert!(status.success(), "{status:?}");
    assert!(
        rest.iter().any(|l| l == "eventbus: closed cleanly"),
        "{rest:?}"
    );
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        log.lines()
            .any(|l| l.contains("retention removed expired events") && l.contains("quiet")),
        "{log}"
    );
}

// ----- query paging while appends continue ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_pages_cover_a_window_exactly_once_while_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::open(dir.path()));
    node.bus.create_set(SET, None, None, Some(0)).unwrap();

    // One appender: events e0, e1, … in order, two per put, alternating types a and b.
    let stop = Arc::new(AtomicBool::new(false));
    let appended = Arc::new(AtomicU64::new(0));
    let appender = {
        let (node, stop, appended) = (node.clone(), stop.clone(), appended.clone());
        tokio::spawn(async move {
            let mut i = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let events = vec![event(i, "a"), event(i + 1, "b")];
                node.bus
                    .put_events(SET, &events, Producer::Custom)
                    .await
                    .unwrap();
                i += 2;
                appended.store(i as u64, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let wait_appended = |n: u64| {
        let appended = appended.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while appended.load(Ordering::SeqCst) < n {
                assert!(Instant::now() < deadline, "appender stalled");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    };
    wait_appended(20).await;
    let start = now_ms();
    wait_appended(100).await;
    let end = now_ms();
    // Events ingested at or after `end` exist before paging starts, and more come during it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let after_end =
            node.bus.next_offset(SET).unwrap() - node.bus.offset_at_time(SET, end).unwrap();
        if after_end >= 10 {
            break;
        }
        assert!(Instant::now() < deadline, "no events after the window");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }

    let page_through = |pattern: Option<&'static str>| {
        let node = node.clone();
        async move {
            let mut got = Vec::new();
            let mut after: Option<String> = None;
            let mut pages = 0;
            loop {
                let mut uri =
                    format!("/v1/event-sets/{SET}/events?start={start}&end={end}&limit=7");
                if let Some(p) = pattern {
                    uri.push_str(&format!("&pattern={}", urlencode(p)));
                }
                if let Some(a) = &after {
                    uri.push_str(&format!("&after={a}"));
                }
                let (status, body) = node.get(&uri).await;
                assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
                let page: Value = serde_json::from_slice(&body).unwrap();
                let events = page["events"].as_array().unwrap();
                assert!(events.len() <= 7);
                got.extend(events.iter().map(|e| e["id"].as_str().unwrap().to_string()));
                pages += 1;
                assert!(pages < 10_000, "paging does not end");
                match page["after"].as_str() {
                    Some(a) => {
                        // Without a pattern every page but the last is full.
                        if pattern.is_none() {
                            assert_eq!(events.len(), 7, "a short page before the end");
                        }
                        after = Some(a.to_string());
                    }
                    None => return got,
                }
                // Let the appender in between pages.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let all = page_through(None).await;
    let only_a = page_through(Some(r#"{"type":["a"]}"#)).await;
    stop.store(true, Ordering::SeqCst);
    appender.await.unwrap();

    // The truth: the log's records with start <= ingest time < end, in offset order.
    let mut reader = node.bus.read_from(SET, 0).unwrap();
    let (mut window, mut window_a, mut later) = (Vec::new(), Vec::new(), 0);
    while let ReadOutcome::Record(r) = reader.next().unwrap() {
        if r.ingest_time_ms >= end {
            later += 1;
        } else if r.ingest_time_ms >= start {
            if r.event.ty == "a" {
                window_a.push(r.event.id.clone());
            }
            window.push(r.event.id.clone());
        }
    }
    assert!(window.len() >= 60, "window of {}", window.len());
    assert!(later >= 10, "events after the window: {later}");
    assert_eq!(
        all, window,
        "every event of the window once, in offset order"
    );
    assert_eq!(
        only_a, window_a,
        "the pattern's events of the window, in order"
    );
    // The window's ids are consecutive (one appender): no gap inside it either.
    let nums: Vec<u64> = all.iter().map(|id| id[1..].parse().unwrap()).collect();
    assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
    let node = Arc::try_unwrap(node).ok().expect("the only reference");
    node.close().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

// ----- seek by time ------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_by_time_redelivers_exactly_the_events_from_that_time_and_the_cursor_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    let node = Node::open(dir.path());
    node.bus.create_set(SET, None, None, Some(0)).unwrap();
    node.rule("all", json!({"source": ["shop"]}));
    let id = node.target("all", "hook", &rx.url("hook"), json!({}));
    node.engine.sync().await.unwrap();

    // Two batches with a moment between them: e0..e4, then e5..e9.
    node.put(0..5, 5).await;
    let acked = now_ms();
    while now_ms() <= acked {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let between = now_ms();
    while now_ms() <= between {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    node.put(5..10, 5).await;
    node.wait_status(&id, 10, "cursor 10", |s| s.cursor == 10)
        .await;
    rx.wait_until(10, "10 events", |r| r.accepted_ids("hook").len() >= 10)
        .await;
    assert_eq!(rx.accepted_ids("hook").len(), 10);
    assert_eq!(node.bus.offset_at_time(SET, between).unwrap(), 5);

    // Running: the seek re-delivers e5..e9, and only those.
    assert_eq!(
        node.engine.seek(&id, SeekTo::Time(between)).await.unwrap(),
        5
    );
    rx.wait_until(10, "e5..e9 again", |r| r.accepted_ids("hook").len() >= 15)
        .await;
    node.wait_status(&id, 10, "cursor 10 again", |s| s.cursor == 10)
        .await;
    let again: BTreeSet<String> = rx.accepted_ids("hook")[10..].iter().cloned().collect();
    assert_eq!(again, ids(5..10));
    assert_eq!(rx.accepted_ids("hook").len(), 15, "nothing else");

    // Paused, then a seek: the cursor it writes survives a restart, and re-enabling delivers
    // e5..e9 once more from there.
    node.enable("all", false);
    node.engine.sync().await.unwrap();
    assert_eq!(
        node.engine.seek(&id, SeekTo::Time(between)).await.unwrap(),
        5
    );
    let s = node.status(&id).await;
    assert_eq!((s.state, s.cursor, s.lag), (BindingState::Paused, 5, 5));
    node.close().await;

    let node = Node::open(dir.path());
    node.engine.sync().await.unwrap();
    let s = node.status(&id).await;
    assert_eq!(
        (s.state, s.cursor, s.lag),
        (BindingState::Paused, 5, 5),
        "{s:?}"
    );
    assert_eq!(
        node.bus.catalog().get_cursor(SET, "all", "hook").unwrap(),
        Some(5)
    );
    node.enable("all", true);
    node.wait_status(&id, 10, "cursor 10 after the restart", |s| {
        s.state == BindingState::Running && s.cursor == 10
    })
    .await;
    rx.wait_until(10, "e5..e9 a third time", |r| {
        r.accepted_ids("hook").len() >= 20
    })
    .await;
    let third: BTreeSet<String> = rx.accepted_ids("hook")[15..].iter().cloned().collect();
    assert_eq!(third, ids(5..10));
    assert_eq!(rx.accepted_ids("hook").len(), 20);
    node.close().await;
}
