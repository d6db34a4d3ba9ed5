//! Scenario: a process that puts events and delivers them to a webhook is killed with SIGKILL
//! in the middle of delivering, three times, on one data directory. After a final restart,
//! every acknowledged event that matches the rule has reached the receiver at least once, and
//! the events delivered more than once are no more than the in-flight window per kill.
//!
//! The test re-runs its own binary, selecting the ignored child test below; the child prints
//! one line per acknowledged put. The receiver lives in the parent, so it outlives each child.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Answer, Receiver};
use eventbus::bus::{BusConfig, EventBus, Producer, PutEntry};
use eventbus::catalog::{BindingId, RuleSpec};
use eventbus::delivery::{Engine, EngineOptions};
use serde_json::json;

const CHILD_TEST: &str = "delivery_crash_child_puts_and_delivers_until_killed";
const DIR_VAR: &str = "EVENTBUS_DELIVERY_CRASH_DIR";
const URL_VAR: &str = "EVENTBUS_DELIVERY_CRASH_URL";
const SET: &str = "crash";
/// The binding's window: max_in_flight × batch.max_events.
const MAX_IN_FLIGHT: u64 = 8;
const BATCH: u64 = 2;

fn open(dir: &std::path::Path) -> Arc<EventBus> {
    Arc::new(
        EventBus::open(BusConfig {
            data_dir: dir.to_path_buf(),
            max_segment_bytes: 16 * 1024,
            ..BusConfig::default()
        })
        .unwrap(),
    )
}

/// Creates the set, rule and target on the first run (they persist across kills).
fn ensure_binding(bus: &EventBus, url: &str) {
    if bus.get_set(SET).is_ok() {
        return;
    }
    bus.create_set(SET, None, None, Some(0)).unwrap();
    bus.catalog()
        .create_rule(
            SET,
            RuleSpec {
                name: "kept".into(),
                description: String::new(),
                pattern: json!({"data": {"keep": [true]}}),
                enabled: true,
                transform: None,
            },
        )
        .unwrap();
    bus.catalog()
        .create_target(
            SET,
            "kept",
            json!({"name": "hook", "type": "http", "http": {"url": url},
                   "start": "earliest", "max_in_flight": MAX_IN_FLIGHT,
                   "batch": {"max_events": BATCH, "max_wait_ms": 0},
                   "retry": {"initial_backoff_ms": 10, "max_backoff_ms": 50}}),
        )
        .unwrap();
}

/// The child: puts events forever (two of three match the rule) while the engine delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "child process of delivery_crash_kill_9_delivers_every_acknowledged_event"]
async fn delivery_crash_child_puts_and_delivers_until_killed() {
    let (Ok(dir), Ok(url)) = (std::env::var(DIR_VAR), std::env::var(URL_VAR)) else {
        return;
    };
    let bus = open(std::path::Path::new(&dir));
    ensure_binding(&bus, &url);
    let _engine = Engine::start(bus.clone(), EngineOptions::default());
    let round = std::process::id();
    for i in 0u64.. {
        let events: Vec<_> = (0..4)
            .map(|j| {
                let n = i * 4 + j;
                json!({"specversion": "1.0", "id": format!("p{round}-{n}"), "source": "app",
                       "type": "t", "data": {"keep": n % 3 != 0}})
            })
            .collect();
        let out = bus
            .put_events(SET, &events, Producer::Custom)
            .await
            .unwrap();
        for (e, r) in events.iter().zip(&out.entries) {
            if let PutEntry::Stored { .. } = r {
                println!("ACK {} {}", e["id"].as_str().unwrap(), e["data"]["keep"]);
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_crash_kill_9_delivers_every_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let rx = Receiver::start().await;
    // A little latency so requests are in flight when the kill comes.
    rx.set_policy("hook", |_, _| Answer {
        status: 200,
        retry_after: None,
        delay: Duration::from_millis(3),
    });
    let mut acked: BTreeSet<String> = BTreeSet::new();
    let kills = 3;
    for round in 0..kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(DIR_VAR, dir.path())
            .env(URL_VAR, rx.url("hook"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines.push(line);
            }
            lines
        });
        // Let it run until it has delivered something this round, then a bit more.
        let before = rx.accepted_ids("hook").len();
        let deadline = Instant::now() + Duration::from_secs(20);
        while rx.accepted_ids("hook").len() < before + 50 {
            assert!(
                Instant::now() < deadline,
                "round {round}: child delivers nothing"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(150 + 100 * round)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        for line in reader.join().unwrap() {
            if let Some(rest) = line.strip_prefix("ACK ")
                && let Some((id, keep)) = rest.split_once(' ')
                && keep == "true"
            {
                acked.insert(id.to_string());
            }
        }
    }
    assert!(
        acked.len() > 100,
        "only {} acknowledged events",
        acked.len()
    );

    // Restart once more and let it finish.
    let bus = open(dir.path());
    let engine = Engine::start(bus.clone(), EngineOptions::default());
    rx.wait_until(30, "every acknowledged matching event", |r| {
        let got: BTreeSet<String> = r.accepted_ids("hook").into_iter().collect();
        acked.is_subset(&got)
    })
    .await;
    let id = BindingId::new(SET, "kept", "hook");
    let end = bus.next_offset(SET).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while engine.status(&id).await.unwrap().cursor < end {
        assert!(Instant::now() < deadline, "cursor does not reach the end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let mut counts: HashMap<String, usize> = HashMap::new();
    for i in rx.accepted_ids("hook") {
        *counts.entry(i).or_default() += 1;
    }
    let extra: usize = counts.values().map(|c| c - 1).sum();
    let bound = (kills * MAX_IN_FLIGHT * BATCH) as usize;
    eprintln!(
        "{} acknowledged matching events, {} deliveries, {extra} duplicates (bound {bound})",
        acked.len(),
        counts.values().sum::<usize>()
    );
    assert!(
        extra <= bound,
        "{extra} duplicate deliveries after {kills} kills; the window allows {bound}"
    );
    // Only matching events were delivered (event n of a child matches unless n % 3 == 0).
    for k in counts.keys() {
        let n: u64 = k.rsplit('-').next().unwrap().parse().unwrap();
        assert_ne!(n % 3, 0, "{k} does not match the rule but was delivered");
    }
    engine.shutdown().await;
    bus.shutdown().unwrap();
}
