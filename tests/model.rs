//! Scenario: the log against an in-memory model (model-based property test, after
//! quickwit-oss/mrecordlog's `proptests.rs`).
//!
//! proptest generates a sequence of operations and runs it both against an [`EventLog`] on
//! [`SimIo`] (tiny segments, so rollover runs all the time; an injected clock) and against a
//! `Vec` of records. Operations: appends (several batches submitted before waiting, so they can
//! share one group commit), reads from any offset, reads from any time, a tailing reader kept
//! across operations, clock steps, clean reopens, simulated power losses (dropping or tearing
//! unsynced bytes), retention (reopening with a new policy, or applying the current one), stats.
//!
//! After every operation: the stats match the model, reading from 0 returns exactly the model's
//! records (same offsets, ingest times and events), and where retention ran, the new first
//! offset is exactly what the policy demands given the segment files that existed (retention
//! deletes whole sealed segments from the front; the model reads the segment boundaries from the
//! simulated directory instead of predicting them).
//!
//! Default: [`DEFAULT_CASES`] cases (a few seconds in a debug build). More:
//! `PROPTEST_CASES=2000 cargo test --release --test model`. Shrunk failures are kept below as
//! named regression tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use eventbus::store::io::{Io, PowerLoss, SimIo};
use eventbus::store::segment::parse_segment_name;
use eventbus::store::{EventLog, LogOptions, LogReader, ReadOutcome};
use eventbus::{Event, PersistPolicy, Record, RetentionPolicy};
use proptest::prelude::*;

/// Cases per run unless `PROPTEST_CASES` says otherwise.
const DEFAULT_CASES: u32 = 128;

/// The clock's value when a case starts (epoch ms).
const T0: u64 = 1_700_000_000_000;

// ---------------------------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    /// Submit each batch (a list of event sizes) without waiting, then wait for every ticket.
    Append {
        batches: Vec<Vec<usize>>,
    },
    /// Read everything from an offset chosen as `permille` of `[0, next_offset + 3]`.
    Read {
        from_permille: u16,
    },
    /// `offset_at_time` / `read_from_time` at `permille` of `[T0 - 5, now + 5]`.
    ReadFromTime {
        t_permille: u16,
    },
    /// Advance the tailing reader (created on first use, dropped on reopen) by up to `max`.
    TailRead {
        max: usize,
    },
    AdvanceClock {
        ms: u64,
    },
    /// Clean close and open.
    Reopen,
    /// Power loss (`tear`: seed of a torn power loss, else drop every unsynced byte), then open.
    Crash {
        tear: Option<u64>,
    },
    /// Close, then open with this retention policy (open applies it), then apply it again.
    SetRetention {
        max_bytes: Option<u64>,
        max_age_ms: Option<u64>,
    },
    /// `apply_retention_blocking` with the current policy.
    ApplyRetention,
    Stats,
}

#[derive(Debug, Clone)]
struct Case {
    max_segment_bytes: u64,
    index_interval_bytes: u64,
    ops: Vec<Op>,
}

fn event_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..200,
        2 => 200usize..900,
        // Larger than the smallest segments: one record alone in an over-full segment.
        1 => 900usize..3000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec(prop::collection::vec(event_size(), 1..6), 1..4)
            .prop_map(|batches| Op::Append { batches }),
        2 => (0u16..=1000).prop_map(|from_permille| Op::Read { from_permille }),
        2 => (0u16..=1000).prop_map(|t_permille| Op::ReadFromTime { t_permille }),
        2 => (1usize..40).prop_map(|max| Op::TailRead { max }),
        3 => prop_oneof![0u64..5, 5u64..4000].prop_map(|ms| Op::AdvanceClock { ms }),
        1 => Just(Op::Reopen),
        2 => prop::option::of(any::<u64>()).prop_map(|tear| Op::Crash { tear }),
        1 => (prop::option::of(0u64..12_000), prop::option::of(0u64..15_000))
            .prop_map(|(max_bytes, max_age_ms)| Op::SetRetention { max_bytes, max_age_ms }),
        1 => Just(Op::ApplyRetention),
        1 => Just(Op::Stats),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        1024u64..=4096,
        64u64..=512,
        prop::collection::vec(op(), 1..60),
    )
        .prop_map(|(max_segment_bytes, index_interval_bytes, ops)| Case {
            max_segment_bytes,
            index_interval_bytes,
            ops,
        })
}

// ---------------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------------

/// Every record ever acknowledged (`all[i].offset == i`) and the first one still stored.
/// Records before `first` are kept: a reader already inside a deleted segment may still return
/// them, and they must be the right ones.
#[derive(Debug, Default)]
struct Model {
    /// First offset still stored (retention moves it forward).
    first: u64,
    all: Vec<Record>,
}

impl Model {
    fn next(&self) -> u64 {
        self.all.len() as u64
    }

    /// The records the log holds.
    fn records(&self) -> &[Record] {
        &self.all[self.first as usize..]
    }

    /// The records a reader starting at `from` must return (it is clamped to `first`).
    fn suffix(&self, from: u64) -> &[Record] {
        &self.all[from.clamp(self.first, self.next()) as usize..]
    }

    fn offset_at_time(&self, t: u64) -> u64 {
        self.records()
            .iter()
            .find(|r| r.ingest_time_ms >= t)
            .map_or(self.next(), |r| r.offset)
    }

    fn time_of(&self, offset: u64) -> u64 {
        self.all[offset as usize].ingest_time_ms
    }

    fn drop_before(&mut self, offset: u64) {
        assert!(offset >= self.first && offset <= self.next());
        self.first = offset;
    }
}

/// A varied event: optional attributes present or not, data of about `size` bytes.
fn event(n: u64, size: usize) -> Event {
    let mut e = Event::new(format!("ev-{n}"), "model.source", "model:Kind:Name");
    e.time_ms = n as i64 * 7 - 50;
    if n.is_multiple_of(2) {
        e.subject = Some(format!("res-{n}"));
    }
    if n.is_multiple_of(3) {
        e.tags.insert("k".into(), format!("v{n}"));
        e.resource
            .push(format!("qcs::model:ap-guangzhou:uin/1:res/{n}"));
    }
    if size == 0 && n % 2 == 1 {
        return e; // no data at all
    }
    let pad: String = (0..size)
        .map(|i| char::from(b'a' + ((n as usize + i) % 26) as u8))
        .collect();
    e.data = format!("{{\"n\":{n},\"pad\":\"{pad}\"}}").into_bytes();
    e
}

fn read_all(log: &EventLog, from: u64) -> (Vec<Record>, LogReader) {
    let mut reader = log.read_from(from);
    let mut out = Vec::new();
    loop {
        match reader.next() {
            Ok(ReadOutcome::Record(r)) => out.push(r),
            Ok(ReadOutcome::EndOfLog) => return (out, reader),
            Err(e) => panic!("read from {from} failed after {} records: {e}", out.len()),
        }
    }
}

/// `offset@time id` (records are too big to print whole).
fn brief(r: &Record) -> String {
    format!("{}@{} {}", r.offset, r.ingest_time_ms, r.event.id)
}

/// Asserts a record equals the model's, printing only `brief` forms when it does not.
fn assert_record(got: &Record, want: &Record, what: &str) {
    assert!(
        got == want,
        "{what}: got {}, the model has {}{}",
        brief(got),
        brief(want),
        if brief(got) == brief(want) {
            " (events differ)"
        } else {
            ""
        }
    );
}

/// Asserts two record lists are equal, naming the first difference (not dumping both lists).
fn assert_same_records(got: &[Record], want: &[Record], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_record(g, w, &format!("{what}, record #{i}"));
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} records, the model has {} (offsets {:?} vs {:?})",
        got.len(),
        want.len(),
        got.last().map(|r| r.offset),
        want.last().map(|r| r.offset),
    );
}

/// `(base offset, bytes)` of every segment file in `dir`, oldest first.
fn segment_files(io: &SimIo, dir: &Path) -> Vec<(u64, u64)> {
    let mut segs: Vec<(u64, u64)> = io
        .list_dir(dir)
        .expect("list log dir")
        .iter()
        .filter_map(|name| {
            let base = parse_segment_name(name)?;
            let len = io.read_file(&dir.join(name)).expect("read segment").len() as u64;
            Some((base, len))
        })
        .collect();
    segs.sort_unstable();
    segs
}

/// What retention (as `EventLog` applies it on open and on request) must leave: the first
/// offset, segments deleted and bytes freed, given the segment files before it ran.
///
/// The policy, restated: with `max_age`, first seal the active segment when its newest record
/// is older than the cutoff; then delete the oldest sealed segment (never the active one) while
/// its newest record is older than the cutoff or the segments hold more than `max_bytes`.
fn expected_retention(
    segs_before: &[(u64, u64)],
    policy: RetentionPolicy,
    now: u64,
    model: &Model,
) -> (u64, usize, u64) {
    let mut segs = segs_before.to_vec();
    let cutoff = policy
        .max_age
        .map(|a| now.saturating_sub(a.as_millis() as u64));
    if let Some(c) = cutoff {
        let active_len = segs.last().expect("at least one segment").1;
        if active_len > 0 && model.time_of(model.next() - 1) < c {
            segs.push((model.next(), 0));
        }
    }
    let (mut deleted, mut freed) = (0, 0);
    while segs.len() >= 2 {
        let total: u64 = segs.iter().map(|s| s.1).sum();
        let newest = model.time_of(segs[1].0 - 1);
        let too_old = cutoff.is_some_and(|c| newest < c);
        let too_big = policy.max_bytes.is_some_and(|m| total > m);
        if !(too_old || too_big) {
            break;
        }
        deleted += 1;
        freed += segs[0].1;
        segs.remove(0);
    }
    (segs[0].0, deleted, freed)
}

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

struct Harness {
    io: SimIo,
    dir: PathBuf,
    clock: Arc<AtomicU64>,
    opts: LogOptions,
    log: Option<EventLog>,
    model: Model,
    /// The tailing reader and the offset it must return next (before clamping).
    tail: Option<(LogReader, u64)>,
    next_id: u64,
}

impl Harness {
    fn new(case: &Case) -> Harness {
        let io = SimIo::new();
        let clock = Arc::new(AtomicU64::new(T0));
        let c = clock.clone();
        let opts = LogOptions {
            max_segment_bytes: case.max_segment_bytes,
            index_interval_bytes: case.index_interval_bytes,
            persist: PersistPolicy::Always,
            io: Arc::new(io.clone()),
            clock: Arc::new(move || c.load(Ordering::SeqCst)),
            ..LogOptions::default()
        };
        let dir = PathBuf::from("/data/model");
        let log = EventLog::open(&dir, opts.clone()).expect("open a new log");
        Harness {
            io,
            dir,
            clock,
            opts,
            log: Some(log),
            model: Model::default(),
            tail: None,
            next_id: 0,
        }
    }

    fn log(&self) -> &EventLog {
        self.log.as_ref().expect("log is open")
    }

    fn now(&self) -> u64 {
        self.clock.load(Ordering::SeqCst)
    }

    fn open(&mut self) {
        let log = EventLog::open(&self.dir, self.opts.clone())
            .unwrap_or_else(|e| panic!("reopen failed: {e}"));
        self.log = Some(log);
    }

    fn run(&mut self, op: &Op) {
        let segs_before = segment_files(&self.io, &self.dir);
        match op {
            Op::Append { batches } => {
                self.append(batches);
                self.accept_retention_after_roll();
            }
            Op::Read { from_permille } => {
                let from = (self.model.next() + 3) * u64::from(*from_permille) / 1000;
                let (got, reader) = read_all(self.log(), from);
                assert_same_records(&got, self.model.suffix(from), &format!("read from {from}"));
                if from < self.model.first && !self.model.records().is_empty() {
                    assert_eq!(reader.skipped_by_retention(), self.model.first - from);
                }
            }
            Op::ReadFromTime { t_permille } => {
                let (lo, hi) = (T0 - 5, self.now() + 5);
                let t = lo + (hi - lo) * u64::from(*t_permille) / 1000;
                let want = self.model.offset_at_time(t);
                let got = self.log().offset_at_time(t).expect("offset_at_time");
                assert_eq!(got, want, "offset_at_time({t})");
                let mut reader = self.log().read_from_time(t).expect("read_from_time");
                let mut records = Vec::new();
                while let ReadOutcome::Record(r) = reader.next().expect("read") {
                    records.push(r);
                }
                assert_same_records(&records, self.model.suffix(want), "read from time");
            }
            Op::TailRead { max } => self.tail_read(*max),
            Op::AdvanceClock { ms } => {
                self.clock.fetch_add(*ms, Ordering::SeqCst);
            }
            Op::Reopen => {
                self.tail = None;
                let log = self.log.take().expect("log is open");
                log.close().expect("clean close");
                drop(log);
                self.open();
                assert!(
                    self.log().recovery_report().torn_tail.is_none(),
                    "a clean close left a torn tail: {:?}",
                    self.log().recovery_report()
                );
                self.expect_retention(&segs_before, None);
            }
            Op::Crash { tear } => {
                self.tail = None;
                let mode = match tear {
                    Some(seed) => PowerLoss::TearUnsynced { seed: *seed },
                    None => PowerLoss::DropUnsynced,
                };
                self.io.power_loss(mode);
                drop(self.log.take());
                self.open();
                // Every append was acknowledged after its fdatasync: no segment has an unsynced
                // byte, so there is nothing to cut (only the unsynced index may be torn).
                assert!(
                    self.log().recovery_report().torn_tail.is_none(),
                    "power loss with PersistPolicy::Always tore a segment: {:?}",
                    self.log().recovery_report()
                );
                self.expect_retention(&segs_before, None);
            }
            Op::SetRetention {
                max_bytes,
                max_age_ms,
            } => {
                self.tail = None;
                let log = self.log.take().expect("log is open");
                log.close().expect("clean close");
                drop(log);
                self.opts.retention = RetentionPolicy {
                    max_age: max_age_ms.map(Duration::from_millis),
                    max_bytes: *max_bytes,
                };
                self.open();
                self.expect_retention(&segs_before, None);
                // Open applied the policy; applying it again at the same time deletes nothing.
                let again = self.log().apply_retention_blocking().expect("retention");
                assert_eq!(again.segments_deleted, 0, "{again:?}");
                assert_eq!(again.first_offset, self.model.first);
            }
            Op::ApplyRetention => {
                let out = self.log().apply_retention_blocking().expect("retention");
                self.expect_retention(&segs_before, Some((out.segments_deleted, out.bytes_freed)));
                assert_eq!(out.first_offset, self.model.first);
            }
            Op::Stats => {
                let stats = self.log().stats();
                let files = segment_files(&self.io, &self.dir);
                assert_eq!(stats.segments, files.len(), "{stats:?} vs files {files:?}");
                assert_eq!(stats.bytes, files.iter().map(|f| f.1).sum::<u64>());
                assert_eq!(stats.first_offset, files[0].0);
            }
        }
        self.check();
    }

    fn append(&mut self, batches: &[Vec<usize>]) {
        let now = self.now();
        let mut pending = Vec::new();
        for sizes in batches {
            let events: Vec<Event> = sizes
                .iter()
                .map(|&size| {
                    self.next_id += 1;
                    event(self.next_id, size)
                })
                .collect();
            let ticket = self.log().submit(&events).expect("submit");
            pending.push((events, ticket));
        }
        for (events, ticket) in pending {
            let ack = ticket.wait().expect("append acknowledged");
            let next = self.model.next();
            assert_eq!(ack.first_offset, next, "appends get consecutive offsets");
            assert_eq!(ack.count, events.len() as u64);
            assert_eq!(ack.ingest_time_ms, now, "ingest time is the clock's");
            for (i, event) in events.into_iter().enumerate() {
                self.model.all.push(Record {
                    offset: next + i as u64,
                    ingest_time_ms: now,
                    event,
                });
            }
        }
    }

    /// Retention also runs after every segment roll. Appends do not say which segments they
    /// sealed, so here the model only checks that the first offset moved forward to the start
    /// of a segment, under a policy, and (age only) over records that were all expired.
    fn accept_retention_after_roll(&mut self) {
        let first = self.log().first_offset();
        if first == self.model.first {
            return;
        }
        let policy = self.opts.retention;
        assert!(
            first > self.model.first && first <= self.model.next(),
            "first offset moved from {} to {first} (next {})",
            self.model.first,
            self.model.next()
        );
        assert!(
            policy.max_age.is_some() || policy.max_bytes.is_some(),
            "records deleted without a retention policy"
        );
        assert_eq!(segment_files(&self.io, &self.dir)[0].0, first);
        if let (Some(age), None) = (policy.max_age, policy.max_bytes) {
            let cutoff = self.now().saturating_sub(age.as_millis() as u64);
            let newest_deleted = self.model.time_of(first - 1);
            assert!(
                newest_deleted < cutoff,
                "retention deleted a record ingested at {newest_deleted}, cutoff {cutoff}"
            );
        }
        self.model.drop_before(first);
    }

    /// After an open or a retention request: the first offset is exactly what the policy
    /// demands of the segment files that existed before (and, given, the outcome's counts).
    fn expect_retention(&mut self, segs_before: &[(u64, u64)], outcome: Option<(usize, u64)>) {
        let (first, deleted, freed) =
            expected_retention(segs_before, self.opts.retention, self.now(), &self.model);
        assert_eq!(
            self.log().first_offset(),
            first,
            "retention {:?} at {} over segments {segs_before:?}",
            self.opts.retention,
            self.now()
        );
        if let Some(got) = outcome {
            assert_eq!(got, (deleted, freed), "segments deleted, bytes freed");
        }
        self.model.drop_before(first);
    }

    fn tail_read(&mut self, max: usize) {
        let (mut reader, mut want) = match self.tail.take() {
            Some(t) => t,
            None => (self.log().read_from(self.model.first), self.model.first),
        };
        for _ in 0..max {
            let (first, next) = (self.model.first, self.model.next());
            match reader.next().expect("tailing read") {
                ReadOutcome::Record(r) => {
                    // A reader inside a segment that retention deleted meanwhile may finish it
                    // (its handle stays valid, like an open file descriptor); otherwise it jumps
                    // to the first stored offset.
                    assert!(
                        r.offset == want || r.offset == want.max(first),
                        "tailing read returned {} after {want} (first {first})",
                        brief(&r)
                    );
                    assert!(r.offset < next, "read past the end: {}", brief(&r));
                    assert_record(&r, &self.model.all[r.offset as usize], "tailing read");
                    want = r.offset + 1;
                }
                ReadOutcome::EndOfLog => {
                    assert_eq!(want.max(first), next, "end of log too early");
                    break;
                }
            }
        }
        assert_eq!(
            reader.position().max(self.model.first),
            want.max(self.model.first)
        );
        self.tail = Some((reader, want));
    }

    /// The whole log equals the model.
    fn check(&self) {
        let log = self.log();
        let stats = log.stats();
        let m = &self.model;
        assert_eq!(stats.first_offset, m.first, "{stats:?}");
        assert_eq!(stats.next_offset, m.next(), "{stats:?}");
        assert_eq!(stats.records, m.records().len() as u64, "{stats:?}");
        assert_eq!(
            stats.first_time_ms,
            m.records().first().map(|r| r.ingest_time_ms)
        );
        assert_eq!(
            stats.last_time_ms,
            m.records().last().map(|r| r.ingest_time_ms)
        );
        assert_eq!((log.first_offset(), log.next_offset()), (m.first, m.next()));
        let (all, _) = read_all(log, 0);
        assert_same_records(&all, m.records(), "read from 0");
    }
}

fn run_case(case: &Case) {
    let mut h = Harness::new(case);
    h.check();
    for (i, op) in case.ops.iter().enumerate() {
        // Name the step in the panic message so a failure reads as a story.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| h.run(op)));
        if let Err(p) = r {
            eprintln!("model test failed at op #{i}: {op:?}");
            std::panic::resume_unwind(p);
        }
    }
    if let Some(log) = h.log.take() {
        log.close().expect("final close");
    }
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_CASES)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // Shrunk failures become named #[test]s below instead of a regressions file.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn log_matches_model_through_appends_reads_reopens_crashes_and_retention(case in case()) {
        run_case(&case);
    }
}

// ---------------------------------------------------------------------------------------------
// Fixed scenarios and shrunk regressions
// ---------------------------------------------------------------------------------------------

/// A long, fixed walk through every operation, so the default run always covers them all
/// whatever proptest draws.
#[test]
fn model_fixed_walk_covers_every_operation() {
    let mut ops = Vec::new();
    for round in 0..6u64 {
        ops.push(Op::Append {
            batches: vec![vec![100, 0, 300], vec![1200], vec![10; 5]],
        });
        ops.push(Op::TailRead { max: 7 });
        ops.push(Op::AdvanceClock { ms: 1000 });
        ops.push(Op::Append {
            batches: vec![vec![50; 4], vec![700, 20]],
        });
        ops.push(Op::Read { from_permille: 500 });
        ops.push(Op::ReadFromTime { t_permille: 300 });
        ops.push(match round % 3 {
            0 => Op::Reopen,
            1 => Op::Crash { tear: Some(round) },
            _ => Op::Crash { tear: None },
        });
        ops.push(Op::TailRead { max: 30 });
        if round == 2 {
            ops.push(Op::SetRetention {
                max_bytes: Some(6000),
                max_age_ms: None,
            });
        }
        if round == 4 {
            ops.push(Op::SetRetention {
                max_bytes: None,
                max_age_ms: Some(2500),
            });
            ops.push(Op::AdvanceClock { ms: 10_000 });
            ops.push(Op::ApplyRetention);
        }
        ops.push(Op::Stats);
    }
    run_case(&Case {
        max_segment_bytes: 1024,
        index_interval_bytes: 256,
        ops,
    });
}

/// Found by the model (shrunk by hand to its core). With `max_age`, a retention request first
/// seals the active segment when it has expired, and the roll itself runs retention, so the
/// request's own pass finds nothing left to delete: the outcome must still count every segment
/// the request deleted.
#[test]
fn retention_outcome_counts_segments_deleted_when_the_active_segment_expires() {
    let io = SimIo::new();
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let opts = LogOptions {
        max_segment_bytes: 1024,
        index_interval_bytes: 256,
        retention: RetentionPolicy {
            max_age: Some(Duration::from_secs(5)),
            max_bytes: None,
        },
        io: Arc::new(io.clone()),
        clock: Arc::new(move || c.load(Ordering::SeqCst)),
        ..LogOptions::default()
    };
    let dir = Path::new("/data/r1");
    let log = EventLog::open(dir, opts).unwrap();
    for n in 0..20 {
        log.append_blocking(&[event(n, 200)]).unwrap();
    }
    let before = log.stats();
    assert!(before.segments > 2, "{before:?}");
    clock.fetch_add(60_000, Ordering::SeqCst); // everything expires
    let out = log.apply_retention_blocking().unwrap();
    assert_eq!(log.first_offset(), 20, "every record expired");
    assert_eq!(log.stats().segments, 1);
    assert_eq!(
        (out.segments_deleted, out.bytes_freed),
        (before.segments, before.bytes),
        "{out:?}"
    );
}

/// Found by the model. A segment sealed because the next append did not fit must record the
/// ingest time of its own last record, not that of the append that sealed it: otherwise
/// `max_age` retention keeps it until that later append expires.
#[test]
fn retention_by_age_deletes_a_segment_sealed_by_a_later_append() {
    let io = SimIo::new();
    let clock = Arc::new(AtomicU64::new(T0));
    let c = clock.clone();
    let mut opts = LogOptions {
        max_segment_bytes: 1024,
        index_interval_bytes: 256,
        io: Arc::new(io.clone()),
        clock: Arc::new(move || c.load(Ordering::SeqCst)),
        ..LogOptions::default()
    };
    let dir = Path::new("/data/r2");
    let log = EventLog::open(dir, opts.clone()).unwrap();
    log.append_blocking(&[event(0, 600)]).unwrap(); // at T0
    clock.store(T0 + 10_000, Ordering::SeqCst);
    log.append_blocking(&[event(1, 600)]).unwrap(); // does not fit: seals segment 0
    assert_eq!(log.stats().segments, 2);
    log.close().unwrap();
    drop(log);
    // Record 0 is 10 s old and alone in its sealed segment; record 1 is new.
    opts.retention.max_age = Some(Duration::from_secs(5));
    let log = EventLog::open(dir, opts).unwrap();
    assert_eq!(
        log.first_offset(),
        1,
        "segment 0 (newest record at T0) outlived a 5 s max_age at T0 + 10 s"
    );
}
