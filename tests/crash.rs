//! Scenario: failures while the log is being written. Faults injected through the simulated
//! filesystem (failed fsync, ENOSPC, EIO on write, power loss), and a real child process killed
//! with SIGKILL in the middle of concurrent appends.
//!
//! The promise checked everywhere: every acknowledged append is there after a reopen, with the
//! same event at the same offset, and offsets stay dense.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eventbus::codec::{MAX_RECORD_HEADER_BYTES, encode_event};
use eventbus::store::frame::FRAME_HEADER_BYTES;
use eventbus::store::io::{Io, OsIo, PowerLoss, SimIo};
use eventbus::store::recovery;
use eventbus::{Error, Event, EventLog, LogOptions, Record};
use rand::Rng;

const DIR: &str = "/data/orders";
const MAX_SEGMENT_BYTES: u64 = 4096;

fn dir() -> &'static Path {
    Path::new(DIR)
}

fn event_with_id(id: String) -> Event {
    let mut e = Event::new(id, "test.source", "test:Kind:Name");
    e.data = format!("{{\"pad\":\"{}\"}}", "x".repeat(100)).into_bytes();
    e
}

/// Event `i` is meant to land at offset `i`; its id says so.
fn event(i: u64) -> Event {
    event_with_id(format!("id-{i}"))
}

/// Tiny segments so that rolls happen every ~20 appends.
fn tiny(io: Arc<dyn Io>) -> LogOptions {
    LogOptions {
        max_segment_bytes: MAX_SEGMENT_BYTES,
        index_interval_bytes: 512,
        io,
        ..LogOptions::default()
    }
}

fn open(io: &SimIo) -> eventbus::Result<EventLog> {
    EventLog::open(dir(), tiny(Arc::new(io.clone())))
}

fn append_range(log: &EventLog, from: u64, to: u64) {
    for i in from..to {
        let ack = log
            .append_blocking(&[event(i)])
            .unwrap_or_else(|e| panic!("append {i}: {e}"));
        assert_eq!(ack.first_offset, i);
    }
}

fn read_all(log: &EventLog) -> Vec<Record> {
    log.read_from(0)
        .records()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("read failed: {e}"))
}

/// The records are exactly `0..n`, each with the id of the event meant for it.
fn assert_dense_log(log: &EventLog, n: u64) {
    let records = read_all(log);
    let got: Vec<u64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    for r in &records {
        assert_eq!(r.event.id, format!("id-{}", r.offset));
    }
    assert_eq!(log.next_offset(), n);
}

/// Every regular file of the log directory and its bytes.
fn files(io: &SimIo) -> BTreeMap<String, Vec<u8>> {
    io.dir_files(dir())
}

fn used_bytes(io: &SimIo) -> u64 {
    files(io).values().map(|b| b.len() as u64).sum()
}

fn is_poisoned_error(e: &Error) -> bool {
    matches!(e, Error::Poisoned { .. })
}

// ---------------------------------------------------------------------------------------------
// Failed fsync
// ---------------------------------------------------------------------------------------------

/// One failed fsync poisons the log: the append fails, so does every later one (also after the
/// disk recovers) until the log is reopened; reopening keeps every acknowledged record. Swept
/// over the first 60 appends so the failure also hits the fsyncs of segment rolls.
#[test]
fn crash_failed_fsync_poisons_the_log_until_reopen() {
    for acked in 0..60u64 {
        for power_loss in [false, true] {
            let ctx = format!("after {acked} acks, power loss {power_loss}");
            let io = SimIo::new();
            let log = open(&io).unwrap();
            append_range(&log, 0, acked);
            io.set_fail_sync(true);
            let err = log
                .append_blocking(&[event(acked)])
                .expect_err("append with a failing fsync");
            // The append that hit the failure reports it (as the fdatasync error or Poisoned).
            assert!(
                is_poisoned_error(&err)
                    || matches!(
                        err,
                        Error::Io {
                            op: "fdatasync",
                            ..
                        }
                    ),
                "{ctx}: {err:?}"
            );
            assert!(log.is_poisoned(), "{ctx}");
            io.set_fail_sync(false);
            for i in 0..3 {
                let err = log
                    .append_blocking(&[event(acked + 1 + i)])
                    .expect_err("appends to a poisoned log fail");
                assert!(is_poisoned_error(&err), "{ctx}: {err:?}");
            }
            let err = log.sync_blocking().expect_err("sync on a poisoned log");
            assert!(is_poisoned_error(&err), "{ctx}: {err:?}");
            let err = log.close().expect_err("close reports the poison");
            assert!(is_poisoned_error(&err), "{ctx}: {err:?}");
            drop(log);

            if power_loss {
                io.power_loss(PowerLoss::DropUnsynced);
            }
            let log = open(&io).unwrap_or_else(|e| panic!("{ctx}: reopen failed: {e}"));
            assert!(!log.is_poisoned());
            // The failed append was never acknowledged: it may or may not be there, but
            // without power loss its bytes were written, and with it they were never durable.
            let n = log.next_offset();
            if power_loss {
                assert_eq!(n, acked, "{ctx}");
            } else {
                assert!(n == acked || n == acked + 1, "{ctx}: next offset {n}");
            }
            assert_dense_log(&log, n);
            append_range(&log, n, n + 2);
            log.close().unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ENOSPC and EIO on write
// ---------------------------------------------------------------------------------------------

/// Whether appending `e` now makes the writer roll to a new segment first (its rule: the
/// active segment is not empty and the frame, with the largest record header, would not fit).
fn rolls(io: &SimIo, e: &Event) -> bool {
    let active = files(io)
        .into_iter()
        .rfind(|(name, _)| name.ends_with(".log"))
        .map(|(_, bytes)| bytes.len() as u64)
        .unwrap_or(0);
    let frame = FRAME_HEADER_BYTES + MAX_RECORD_HEADER_BYTES + encode_event(e).unwrap().len();
    active > 0 && active + frame as u64 > MAX_SEGMENT_BYTES
}

/// How an append that hit a write fault failed.
struct Failure {
    /// Its offset (= records acknowledged before it).
    offset: u64,
    error: Error,
    /// Whether it had to roll to a new segment first.
    rolled: bool,
    /// Whether it changed any file (the files no longer match the last acknowledged state).
    left_garbage: bool,
}

/// Appends until one fails; every success must have the next dense offset.
fn append_until_failure(io: &SimIo, log: &EventLog, from: u64, ctx: &str) -> Failure {
    let mut next = from;
    loop {
        let before = files(io);
        let rolled = rolls(io, &event(next));
        match log.append_blocking(&[event(next)]) {
            Ok(ack) => {
                assert_eq!(ack.first_offset, next, "{ctx}");
                next += 1;
            }
            Err(error) => {
                return Failure {
                    offset: next,
                    error,
                    rolled,
                    left_garbage: files(io) != before,
                };
            }
        }
        assert!(next < from + 500, "{ctx}: the fault never hit");
    }
}

/// The contract for a failed write: the log is not poisoned, the files are as they were, a
/// retry after the fault clears gets the next dense offset, and a reopen finds a clean log (no
/// torn tail) with every record.
fn assert_failed_write_contract(
    io: &SimIo,
    log: EventLog,
    f: &Failure,
    heal: impl Fn(),
    ctx: &str,
) {
    let n = f.offset;
    assert!(!log.is_poisoned(), "{ctx}: poisoned by {}", f.error);
    // A roll that completed before the failing write leaves the old segment sealed and a new,
    // empty segment: files changed, records did not (checked below: dense, no torn tail).
    assert!(
        !f.left_garbage || f.rolled,
        "{ctx}: the failed append left bytes behind: {}",
        f.error
    );
    heal();
    append_range(&log, n, n + 3);
    assert_dense_log(&log, n + 3);
    log.close().unwrap();
    drop(log);
    let log = open(io).unwrap_or_else(|e| panic!("{ctx}: reopen: {e}"));
    assert_eq!(log.recovery_report().torn_tail, None, "{ctx}");
    assert_dense_log(&log, n + 3);
}

/// ENOSPC fails the append with an error that says so, does not poison, and leaves no bytes
/// behind. Swept over the free space left, so the failure hits a frame or an index entry
/// mid-write, and the writes of a segment roll.
#[test]
fn crash_enospc_fails_the_append_without_poisoning_or_garbage() {
    let mut rolled = 0;
    for free in (0..4600u64).step_by(37) {
        let ctx = format!("{free} bytes free");
        let io = SimIo::new();
        let log = open(&io).unwrap();
        append_range(&log, 0, 10);
        io.set_space_limit(Some(used_bytes(&io) + free));
        let f = append_until_failure(&io, &log, 10, &ctx);
        assert!(f.error.is_no_space(), "{ctx}: {:?}", f.error);
        let heal = || io.set_space_limit(None);
        rolled += u32::from(f.rolled);
        // Still full: fails the same way, still not poisoned.
        let again = log.append_blocking(&[event(f.offset)]).unwrap_err();
        assert!(again.is_no_space() && !log.is_poisoned(), "{ctx}: {again}");
        assert_failed_write_contract(&io, log, &f, heal, &ctx);
    }
    assert!(rolled > 0, "the sweep never hit a segment roll");
}

/// EIO on write: same contract as ENOSPC. Swept over the append it hits, rolls included.
#[test]
fn crash_failed_write_fails_the_append_without_poisoning_or_garbage() {
    let mut rolled = 0;
    for acked in 0..60u64 {
        let ctx = format!("after {acked} acks");
        let io = SimIo::new();
        let log = open(&io).unwrap();
        append_range(&log, 0, acked);
        io.set_fail_write(true);
        let f = append_until_failure(&io, &log, acked, &ctx);
        assert_eq!(f.offset, acked, "{ctx}");
        assert!(
            matches!(&f.error, Error::Io { op: "write", .. }) && !f.error.is_no_space(),
            "{ctx}: {:?}",
            f.error
        );
        let heal = || io.set_fail_write(false);
        rolled += u32::from(f.rolled);
        assert_failed_write_contract(&io, log, &f, heal, &ctx);
    }
    assert!(rolled > 0, "the sweep never hit a segment roll");
}

/// Fills the active segment so that the next append of `event(n)` must roll; returns `n`.
fn fill_until_next_append_rolls(io: &SimIo, log: &EventLog) -> u64 {
    let mut n = 0;
    while !rolls(io, &event(n)) {
        append_range(log, n, n + 1);
        n += 1;
    }
    n
}

/// Shows a bug in `src/store/mod.rs`: every failure inside `Writer::roll` poisons the log
/// (`roll` maps all its errors to `CommitFailure { poison: true }`), and a failure after the
/// roll in the new segment does too (`commit` poisons when `active_base` changed). So ENOSPC
/// on the append that rolls poisons the log, and the partial seal entry stays in the old
/// segment's index (no undo).
#[test]
fn crash_enospc_during_segment_roll_does_not_poison() {
    let io = SimIo::new();
    let log = open(&io).unwrap();
    let n = fill_until_next_append_rolls(&io, &log);
    let before = files(&io);
    io.set_space_limit(Some(used_bytes(&io) + 2));
    let err = log.append_blocking(&[event(n)]).unwrap_err();
    assert!(err.is_no_space(), "{err}");
    assert!(!log.is_poisoned(), "poisoned by {err}");
    assert!(files(&io) == before, "the failed roll left bytes behind");
    io.set_space_limit(None);
    append_range(&log, n, n + 1);
}

/// Same bug with EIO: the seal entry is the first write of a rolling append.
#[test]
fn crash_failed_write_during_segment_roll_does_not_poison() {
    let io = SimIo::new();
    let log = open(&io).unwrap();
    let n = fill_until_next_append_rolls(&io, &log);
    io.set_fail_write(true);
    let err = log.append_blocking(&[event(n)]).unwrap_err();
    assert!(!log.is_poisoned(), "poisoned by {err}");
    io.set_fail_write(false);
    append_range(&log, n, n + 1);
}

// ---------------------------------------------------------------------------------------------
// Power loss
// ---------------------------------------------------------------------------------------------

/// Several threads append while the power goes at a random moment, leaving a torn prefix of
/// whatever was not fsynced. Every acknowledged append survives at its offset.
#[test]
fn crash_power_loss_during_concurrent_appends_keeps_every_ack() {
    let mut rng = rand::thread_rng();
    for seed in 0..8u64 {
        let io = SimIo::new();
        let log = Arc::new(open(&io).unwrap());
        let acks: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (log, acks, stop) = (log.clone(), acks.clone(), stop.clone());
                std::thread::spawn(move || {
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let id = format!("s{seed}-t{t}-{i}");
                        match log.append_blocking(&[event_with_id(id.clone())]) {
                            Ok(ack) => acks.lock().unwrap().push((ack.first_offset, id)),
                            Err(_) => break, // the power went
                        }
                    }
                })
            })
            .collect();
        let target = rng.gen_range(50..250);
        while acks.lock().unwrap().len() < target {
            std::thread::sleep(Duration::from_micros(200));
        }
        io.power_loss(PowerLoss::TearUnsynced { seed });
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            t.join().unwrap();
        }
        drop(log);

        let log = open(&io).unwrap_or_else(|e| panic!("seed {seed}: reopen: {e}"));
        let records = read_all(&log);
        assert!(
            records
                .iter()
                .enumerate()
                .all(|(i, r)| r.offset == i as u64),
            "seed {seed}: offsets not dense"
        );
        let acks = acks.lock().unwrap();
        for (offset, id) in acks.iter() {
            let got = records.get(*offset as usize).map(|r| r.event.id.as_str());
            assert_eq!(got, Some(id.as_str()), "seed {seed}: acked offset {offset}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kill -9 of a real process
// ---------------------------------------------------------------------------------------------

/// Carries the log directory to the child process.
const CHILD_DIR_VAR: &str = "EVENTBUS_CRASH_TEST_DIR";
/// Prefix of the child's acknowledgement lines: `ACK <offset> <event id>`.
const ACK: &str = "ACK ";
const CHILD_TEST: &str = "crash_child_appends_until_killed";

/// The child half of `crash_kill_9_during_concurrent_appends_keeps_every_ack` (run by it in
/// a separate process; does nothing when run directly). Appends from four threads until it is
/// killed, printing a line for each acknowledged append.
#[test]
#[ignore = "child process of crash_kill_9_during_concurrent_appends_keeps_every_ack"]
fn crash_child_appends_until_killed() {
    let Some(dir) = std::env::var_os(CHILD_DIR_VAR) else {
        return;
    };
    let log = Arc::new(EventLog::open(&dir, tiny(Arc::new(OsIo))).unwrap());
    let pid = std::process::id();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0u64.. {
                    let id = format!("p{pid}-t{t}-{i}");
                    let ack = log.append_blocking(&[event_with_id(id.clone())]).unwrap();
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{ACK}{} {id}", ack.first_offset).unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Runs the child until it has acknowledged about `acks` appends, kills it with SIGKILL, and
/// returns every acknowledgement it printed (including those still in the pipe).
fn run_child_and_kill(dir: &Path, acks: usize, rng: &mut impl Rng) -> Vec<(u64, String)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_DIR_VAR, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let reader = {
        let seen = seen.clone();
        std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                if stdout.read_until(b'\n', &mut line).unwrap() == 0 {
                    break;
                }
                // A line cut by the kill has no newline: it was not a whole acknowledgement.
                let Some(text) = line.strip_suffix(b"\n") else {
                    break;
                };
                let text = String::from_utf8_lossy(text);
                // The test harness may print "test <name> ... " before the first line.
                let Some(at) = text.find(ACK) else { continue };
                let mut parts = text[at + ACK.len()..].split(' ');
                let offset: u64 = parts.next().unwrap().parse().unwrap();
                let id = parts.next().unwrap().to_string();
                seen.lock().unwrap().push((offset, id));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.lock().unwrap().len() < acks {
        if Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            panic!(
                "the child stopped or stalled after {} acks",
                seen.lock().unwrap().len()
            );
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_micros(rng.gen_range(0..20_000)));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed: {status}");
    reader.join().unwrap();
    Arc::try_unwrap(seen).unwrap().into_inner().unwrap()
}

/// A child process appends from several threads and is killed with SIGKILL at a random
/// moment, five times over on the same directory. After each kill the log reopens with every
/// acknowledged append at its offset, offsets dense, and the next child continues after it.
#[test]
fn crash_kill_9_during_concurrent_appends_keeps_every_ack() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("orders");
    let mut rng = rand::thread_rng();
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut next_offset = 0;
    for round in 0..5 {
        let acks = run_child_and_kill(&dir, rng.gen_range(200..400), &mut rng);
        let acks_this_round = acks.len();
        for (offset, id) in acks {
            assert!(
                offset >= next_offset,
                "round {round}: offset {offset} acked again (log had {next_offset})"
            );
            assert_eq!(
                acked.insert(offset, id),
                None,
                "offset {offset} acked twice"
            );
        }

        let log = EventLog::open(&dir, tiny(Arc::new(OsIo)))
            .unwrap_or_else(|e| panic!("round {round}: reopen after kill: {e}"));
        let records = read_all(&log);
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.offset, i as u64, "round {round}: offsets not dense");
        }
        let ids: HashSet<&str> = records.iter().map(|r| r.event.id.as_str()).collect();
        assert_eq!(
            ids.len(),
            records.len(),
            "round {round}: an event stored twice"
        );
        for (offset, id) in &acked {
            let got = records.get(*offset as usize).map(|r| r.event.id.as_str());
            assert_eq!(
                got,
                Some(id.as_str()),
                "round {round}: acked offset {offset}"
            );
        }
        next_offset = log.next_offset();
        eprintln!(
            "round {round}: {acks_this_round} acks, log has {next_offset} records in {} \
             segments, torn tail {:?}",
            log.stats().segments,
            log.recovery_report().torn_tail
        );
        assert!(log.stats().segments > 1, "tiny segments must roll");
        log.close().unwrap();
        drop(log);
        let report = recovery::verify(&OsIo, &dir).unwrap();
        assert!(report.is_clean(), "round {round}: {report:?}");
    }
}
