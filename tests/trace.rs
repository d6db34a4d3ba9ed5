//! Scenario: linkage traces through the delivery engine against a real local HTTP receiver
//! (tests/common): which rules match, every attempt kept (first five and last five) with its
//! status, error and latency, the final outcome, pending events, replays' attempts, a restart,
//! and expiry.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Answer, Receiver};
use eventbus::bus::{BusConfig, EventBus, Producer};
use eventbus::catalog::RulePatch;
use eventbus::delivery::{Engine, EngineOptions, EventTraceView, TargetTrace};
use serde_json::{Value, json};

const SET: &str = "orders";

fn open(dir: &std::path::Path, trace_retention: Duration) -> (Arc<EventBus>, Engine) {
    let bus = Arc::new(
        EventBus::open(BusConfig {
            data_dir: dir.to_path_buf(),
            ..BusConfig::default()
        })
        .unwrap(),
    );
    let engine = Engine::start(
        bus.clone(),
        EngineOptions {
            restart_delay: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(2),
            trace_retention,
            ..EngineOptions::default()
        },
    );
    (bus, engine)
}

fn rule(bus: &EventBus, name: &str, kind: &str) {
    common::create_rule(bus, SET, name, json!({"type": [kind]}));
}

fn hook(bus: &EventBus, rx: &Receiver, rule: &str, name: &str, attempts: u32, extra: Value) {
    let mut body = json!({
        "name": name, "type": "http",
        "http": {"url": rx.url(name), "timeout_ms": 2000},
        "retry": {"max_attempts": attempts, "initial_backoff_ms": 5, "max_backoff_ms": 10},
        "start": "earliest",
    });
    for (k, v) in extra.as_object().cloned().unwrap_or_default() {
        body[k] = v;
    }
    bus.catalog().create_target(SET, rule, body).unwrap();
}

/// Stops the engine and the bus and drops them (releasing the data directory).
async fn close(bus: Arc<EventBus>, engine: Engine) {
    engine.shutdown().await;
    bus.shutdown().unwrap();
}

async fn put(bus: &EventBus, id: &str, kind: &str) {
    let e = json!({"specversion": "1.0", "id": id, "source": "shop", "type": kind});
    bus.put_events(SET, [&e], Producer::Custom).await.unwrap();
}

async fn trace(bus: &EventBus, engine: &Engine, id: &str) -> EventTraceView {
    let rec = bus
        .find_events_by_id(SET, id)
        .unwrap()
        .pop()
        .expect("stored");
    engine.trace(SET, rec).await.unwrap()
}

fn target<'a>(t: &'a EventTraceView, rule: &str, target: &str) -> &'a TargetTrace {
    t.rules
        .iter()
        .find(|r| r.rule == rule)
        .unwrap_or_else(|| panic!("no rule {rule} in {t:?}"))
        .targets
        .iter()
        .find(|x| x.target == target && x.replay.is_none())
        .unwrap_or_else(|| panic!("no target {target} in {t:?}"))
}

async fn wait_trace(
    bus: &EventBus,
    engine: &Engine,
    id: &str,
    what: &str,
    cond: impl Fn(&EventTraceView) -> bool,
) -> EventTraceView {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t = trace(bus, engine, id).await;
        if cond(&t) {
            return t;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_matching_rules_retries_and_the_final_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, engine) = open(dir.path(), Duration::from_secs(3600));
    bus.create_set(SET, None, None, Some(0)).unwrap();
    let rx = Receiver::start().await;
    // `flaky` fails twice with 503, then accepts; `broken` always fails (12 attempts, then a
    // dead letter); `other` matches a different type.
    rx.set_policy("flaky", |_, n| {
        if n < 2 {
            Answer::status(503)
        } else {
            Answer::ok()
        }
    });
    rx.set_policy("broken", |_, _| Answer::status(500));
    rule(&bus, "paid", "paid");
    rule(&bus, "other", "shipped");
    hook(&bus, &rx, "paid", "flaky", 5, json!({}));
    hook(&bus, &rx, "paid", "broken", 12, json!({}));
    hook(&bus, &rx, "other", "ok", 3, json!({}));
    engine.sync().await.unwrap();
    put(&bus, "p-1", "paid").await;

    let t = wait_trace(&bus, &engine, "p-1", "both outcomes", |t| {
        target(t, "paid", "flaky").state == "delivered"
            && target(t, "paid", "broken").state == "dead_lettered"
    })
    .await;
    assert_eq!(
        (t.id.as_str(), t.source.as_str(), t.offset),
        ("p-1", "shop", 0)
    );
    let paid = t.rules.iter().find(|r| r.rule == "paid").unwrap();
    let other = t.rules.iter().find(|r| r.rule == "other").unwrap();
    assert!(paid.matched);
    assert!(!other.matched && other.targets.is_empty(), "{other:?}");

    let flaky = target(&t, "paid", "flaky");
    assert_eq!(flaky.attempts, 3);
    let statuses: Vec<_> = flaky
        .first_attempts
        .iter()
        .map(|a| (a.ok, a.status))
        .collect();
    assert_eq!(
        statuses,
        [(false, Some(503)), (false, Some(503)), (true, Some(200))]
    );
    assert!(
        flaky.first_attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("503")
    );
    assert!(
        flaky
            .first_attempts
            .windows(2)
            .all(|w| w[0].time_ms <= w[1].time_ms)
    );
    assert!(flaky.last_attempts.is_empty());

    let broken = target(&t, "paid", "broken");
    assert_eq!(broken.attempts, 12);
    assert_eq!(
        (broken.first_attempts.len(), broken.last_attempts.len()),
        (5, 5)
    );
    assert!(
        broken
            .first_attempts
            .iter()
            .chain(&broken.last_attempts)
            .all(|a| !a.ok && a.status == Some(500))
    );
    // The last five are the last five: their times follow the first five's.
    assert!(broken.last_attempts[0].time_ms >= broken.first_attempts[4].time_ms);

    // Durable: the same after a restart.
    close(bus, engine).await;
    let (bus, engine) = open(dir.path(), Duration::from_secs(3600));
    let again = trace(&bus, &engine, "p-1").await;
    assert_eq!(target(&again, "paid", "broken"), broken);
    assert_eq!(target(&again, "paid", "flaky"), flaky);
    close(bus, engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_shows_pending_events_replays_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, engine) = open(dir.path(), Duration::from_secs(3600));
    bus.create_set(SET, None, None, Some(0)).unwrap();
    let rx = Receiver::start().await;
    rule(&bus, "paid", "paid");
    hook(&bus, &rx, "paid", "hook", 3, json!({}));
    engine.sync().await.unwrap();
    // Paused rule: the event matches but is not attempted yet.
    bus.catalog()
        .update_rule(
            SET,
            "paid",
            RulePatch {
                enabled: Some(false),
                ..RulePatch::default()
            },
        )
        .unwrap();
    engine.sync().await.unwrap();
    put(&bus, "p-1", "paid").await;
    let t = trace(&bus, &engine, "p-1").await;
    assert_eq!(target(&t, "paid", "hook").state, "pending");
    bus.catalog()
        .update_rule(
            SET,
            "paid",
            RulePatch {
                enabled: Some(true),
                ..RulePatch::default()
            },
        )
        .unwrap();
    engine.sync().await.unwrap();
    wait_trace(&bus, &engine, "p-1", "delivery", |t| {
        target(t, "paid", "hook").state == "delivered"
    })
    .await;

    // A replay's attempt shows beside the live one.
    common::replay_everything(&engine, SET, "again").await;
    let t = wait_trace(&bus, &engine, "p-1", "the replay's attempt", |t| {
        t.rules[0]
            .targets
            .iter()
            .any(|x| x.replay.as_deref() == Some("again"))
    })
    .await;
    let replayed = t.rules[0]
        .targets
        .iter()
        .find(|x| x.replay.is_some())
        .unwrap();
    assert_eq!(
        (replayed.state.as_str(), replayed.attempts),
        ("delivered", 1)
    );
    close(bus, engine).await;

    // With a retention of zero, the sweep removes every trace of events ingested before now;
    // the binding is past the event, so it shows as not traced.
    let (bus, engine) = open(dir.path(), Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(5)).await;
    assert!(engine.expire_traces().await.unwrap() >= 2);
    let t = trace(&bus, &engine, "p-1").await;
    assert_eq!(target(&t, "paid", "hook").state, "not_traced");
    assert_eq!(t.rules[0].targets.len(), 1, "{t:?}");
    close(bus, engine).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_of_events_delivered_in_one_batch_shows_the_shared_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (bus, engine) = open(dir.path(), Duration::from_secs(3600));
    bus.create_set(SET, None, None, Some(0)).unwrap();
    let rx = Receiver::start().await;
    rule(&bus, "paid", "paid");
    // Put first, then start the binding: it reads the 30 events at once and sends batches.
    let events: Vec<Value> = (0..30)
        .map(|i| json!({"specversion": "1.0", "id": format!("b-{i}"), "source": "shop", "type": "paid"}))
        .collect();
    bus.put_events(SET, &events, Producer::Custom)
        .await
        .unwrap();
    hook(
        &bus,
        &rx,
        "paid",
        "hook",
        3,
        json!({"batch": {"max_events": 10, "max_wait_ms": 50}}),
    );
    engine.sync().await.unwrap();
    rx.wait_until(10, "delivery", |r| r.accepted_ids("hook").len() == 30)
        .await;
    for i in [0, 7, 15, 29] {
        let id = format!("b-{i}");
        let t = wait_trace(&bus, &engine, &id, "delivered", |t| {
            target(t, "paid", "hook").state == "delivered"
        })
        .await;
        let h = target(&t, "paid", "hook");
        assert_eq!((h.attempts, h.first_attempts.len()), (1, 1), "{h:?}");
        let a = &h.first_attempts[0];
        // The attempt is that of the request that carried the event: its size.
        let carried = rx
            .accepted("hook")
            .iter()
            .find(|r| r.ids().contains(&id))
            .map(|r| r.events().len())
            .unwrap();
        assert!(a.ok && a.batch > 1, "{a:?}");
        assert_eq!(a.batch as usize, carried, "{a:?}");
        assert_eq!(a.status, Some(200));
    }
    let requests = rx.accepted("hook").len();
    assert!(requests < 30, "batched: {requests} requests");
    close(bus, engine).await;
}
