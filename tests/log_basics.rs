//! Scenario: the log's basic contract on a real directory and on the simulated filesystem.

use std::path::Path;
use std::sync::Arc;

use eventbus::store::io::{PowerLoss, SimIo};
use eventbus::{Event, EventLog, LogOptions};

fn event(i: u64, size: usize) -> Event {
    let mut e = Event::new(format!("id-{i}"), "test.source", "test:Kind:Name");
    e.data = format!("{{\"i\":{i},\"pad\":\"{}\"}}", "x".repeat(size)).into_bytes();
    e
}

fn tiny(io: Option<SimIo>) -> LogOptions {
    let mut o = LogOptions {
        max_segment_bytes: 4096,
        index_interval_bytes: 512,
        ..LogOptions::default()
    };
    if let Some(io) = io {
        o.io = Arc::new(io);
    }
    o
}

fn read_all(log: &EventLog, from: u64) -> Vec<eventbus::Record> {
    log.read_from(from)
        .records()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn appends_roll_segments_and_read_back_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("set");
    {
        let log = EventLog::open(&path, tiny(None)).unwrap();
        for i in 0..200 {
            let ack = log.append_blocking(&[event(i, 100)]).unwrap();
            assert_eq!(ack.first_offset, i);
        }
        let stats = log.stats();
        assert_eq!(stats.next_offset, 200);
        assert!(stats.segments > 3, "tiny segments must roll: {stats:?}");
        let all = read_all(&log, 0);
        assert_eq!(all.len(), 200);
        assert!(
            all.iter()
                .enumerate()
                .all(|(i, r)| r.offset == i as u64 && r.event.id == format!("id-{i}"))
        );
        let mid = read_all(&log, 137);
        assert_eq!(mid.first().unwrap().offset, 137);
        log.close().unwrap();
    }
    let log = EventLog::open(&path, tiny(None)).unwrap();
    assert!(log.recovery_report().torn_tail.is_none());
    assert_eq!(log.next_offset(), 200);
    assert_eq!(read_all(&log, 0).len(), 200);
    let ack = log
        .append_blocking(&[event(200, 10), event(201, 10)])
        .unwrap();
    assert_eq!((ack.first_offset, ack.count), (200, 2));
    assert_eq!(read_all(&log, 199).len(), 3);
}

#[test]
fn power_loss_keeps_every_acknowledged_append() {
    let io = SimIo::new();
    let path = Path::new("/data/set");
    let log = EventLog::open(path, tiny(Some(io.clone()))).unwrap();
    for i in 0..100 {
        log.append_blocking(&[event(i, 50)]).unwrap();
    }
    io.power_loss(PowerLoss::TearUnsynced { seed: 7 });
    drop(log);
    let log = EventLog::open(path, tiny(Some(io.clone()))).unwrap();
    assert_eq!(log.next_offset(), 100);
    assert_eq!(read_all(&log, 0).len(), 100);
}

#[test]
fn read_from_time_finds_first_event_at_or_after() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(std::sync::atomic::AtomicU64::new(1_000));
    let clock_now = now.clone();
    let mut opts = tiny(None);
    opts.clock = Arc::new(move || clock_now.load(std::sync::atomic::Ordering::SeqCst));
    let log = EventLog::open(dir.path().join("s"), opts).unwrap();
    for i in 0..100u64 {
        now.store(1_000 + i * 10, std::sync::atomic::Ordering::SeqCst);
        log.append_blocking(&[event(i, 80)]).unwrap();
    }
    assert_eq!(log.offset_at_time(0).unwrap(), 0);
    assert_eq!(log.offset_at_time(1_000).unwrap(), 0);
    assert_eq!(log.offset_at_time(1_001).unwrap(), 1);
    assert_eq!(log.offset_at_time(1_500).unwrap(), 50);
    assert_eq!(log.offset_at_time(1_495).unwrap(), 50);
    assert_eq!(log.offset_at_time(99_999).unwrap(), 100);
}

#[tokio::test]
async fn tailing_reader_wakes_on_append() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EventLog::open(dir.path().join("s"), tiny(None)).unwrap());
    let mut reader = log.read_from(0);
    let waiter = tokio::spawn(async move { reader.next_wait().await.unwrap() });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(!waiter.is_finished());
    log.append(&[event(0, 10)]).await.unwrap();
    let rec = tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rec.offset, 0);
}
