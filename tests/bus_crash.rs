//! Scenario: the whole bus (catalog in sled + logs) killed with SIGKILL while it creates event
//! sets and puts events. Everything acknowledged before the kill is there after a restart.
//!
//! The test re-runs its own binary, selecting the ignored child test below, which prints one
//! line per acknowledged operation; the parent kills it after a while and checks.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eventbus::bus::{BusConfig, EventBus, Producer, PutEntry};
use serde_json::json;

const CHILD_TEST: &str = "bus_crash_child_creates_sets_and_puts_until_killed";
const CHILD_DIR_VAR: &str = "EVENTBUS_BUS_CRASH_DIR";

fn open(dir: &std::path::Path) -> EventBus {
    EventBus::open(BusConfig {
        data_dir: dir.to_path_buf(),
        max_segment_bytes: 8192,
        ..BusConfig::default()
    })
    .unwrap()
}

/// The child: creates sets and puts events forever, printing each acknowledgement.
#[tokio::test]
#[ignore = "child process of bus_crash_kill_9_keeps_acknowledged_sets_and_events"]
async fn bus_crash_child_creates_sets_and_puts_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR_VAR) else {
        return;
    };
    let bus = open(std::path::Path::new(&dir));
    let round = bus.list_sets().unwrap().len();
    for s in 0.. {
        let name = format!("set-{round}-{s}");
        bus.create_set(&name, None, None, None).unwrap();
        println!("SET {name}");
        for i in 0..20 {
            let id = format!("{name}-e{i}");
            let ev = json!({"specversion": "1.0", "id": id, "source": "app", "type": "t",
                            "data": {"i": i}});
            let out = bus
                .put_events(&name, &[ev], Producer::Custom)
                .await
                .unwrap();
            if let PutEntry::Stored { offset, .. } = &out.entries[0] {
                println!("EVENT {name} {offset} {id}");
            }
        }
    }
}

#[test]
fn bus_crash_kill_9_keeps_acknowledged_sets_and_events() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..3 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_DIR_VAR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut sets = Vec::new();
        let mut events = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        let want = 150 + round * 37;
        // The harness may print "test <name> ... " before the first line: find the keyword.
        let mut take = |line: String| {
            let parts: Vec<&str> = line.split(' ').collect();
            let at = parts.iter().position(|p| *p == "SET" || *p == "EVENT");
            match at.map(|a| &parts[a..]) {
                Some(["SET", name]) => sets.push(name.to_string()),
                Some(["EVENT", set, offset, id]) => events.push((
                    set.to_string(),
                    offset.parse::<u64>().unwrap(),
                    id.to_string(),
                )),
                _ => {}
            }
        };
        let mut seen = 0;
        while seen < want && Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) else {
                break;
            };
            seen += usize::from(line.contains("EVENT "));
            take(line);
        }
        child.kill().unwrap();
        child.wait().unwrap();
        // Lines already in the pipe were acknowledged before the kill.
        while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            take(line);
        }
        assert!(
            events.len() >= want,
            "round {round}: child acknowledged too little"
        );
        let bus = open(dir.path());
        for name in &sets {
            bus.get_set(name)
                .unwrap_or_else(|e| panic!("round {round}: set {name} lost: {e}"));
        }
        for (set, offset, id) in &events {
            let rec = bus
                .read_from(set, *offset)
                .unwrap()
                .records()
                .next()
                .unwrap_or_else(|| panic!("round {round}: {set}@{offset} missing"))
                .unwrap();
            assert_eq!((rec.offset, &rec.event.id), (*offset, id), "round {round}");
        }
        bus.shutdown().unwrap();
    }
}
