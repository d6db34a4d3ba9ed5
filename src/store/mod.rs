//! The per-event-set log: CRC-framed records in rolling segment files, group-committed appends,
//! sparse indexes, tailing readers, retention, and crash recovery.
//!
//! Layering (each file only uses the ones before it): [`io`] (the fault-injection seam) →
//! [`frame`] (`len | crc | payload`) → [`index`] (sparse offset/time index) → [`segment`]
//! (names, scanning) → [`recovery`] (open, verify, repair) → [`ids`] (the id index, built
//! lazily by lookups, off the append path) → this module ([`EventLog`]).
//!
//! # Concurrency
//! One writer thread owns every mutation (appends, rolls, retention). Producers encode their
//! events on their own threads and hand them to the writer over a channel; the writer takes
//! everything waiting, writes it with one `write`, fdatasyncs once, publishes the new end of the
//! log to readers, and only then acknowledges each append (group commit). Readers share the
//! segment files (positional reads) and never block the writer for longer than a metadata copy.
//!
//! # Example
//! ```
//! use eventbus::{Event, EventLog, LogOptions, ReadOutcome};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = EventLog::open(dir.path().join("orders"), LogOptions::default()).unwrap();
//! let mut ev = Event::new("e-1", "cvm.cloud.tencent", "cvm:ErrorEvent:PingUnreachable");
//! ev.data = br#"{"instanceId":"ins-1"}"#.to_vec();
//! let ack = log.append_blocking(&[ev.clone()]).unwrap(); // returns after fdatasync
//! assert_eq!(ack.first_offset, 0);
//! match log.read_from(0).next().unwrap() {
//!     ReadOutcome::Record(r) => assert_eq!(r.event, ev),
//!     ReadOutcome::EndOfLog => unreachable!(),
//! }
//! log.close().unwrap();
//! ```

pub mod frame;
pub mod ids;
pub mod index;
pub mod io;
pub mod recovery;
pub mod segment;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};

use self::frame::{FRAME_HEADER_BYTES, FrameDecode, MAX_FRAME_PAYLOAD_BYTES, decode_frame};
use self::index::{
    IndexEntry, SealInfo, SyncMark, encode_entry, encode_seal, encode_sync_mark, lookup_offset,
    lookup_time,
};
use self::io::{Io, IoFile, OsIo};
use self::recovery::{ActiveIndex, OpenedSegment, RecoveryReport, Repairs, create_segment};
use crate::codec::{
    EncodedEvent, MAX_RECORD_HEADER_BYTES, Record, decode_record, decode_record_header,
    encode_event, write_record_payload,
};
use crate::config::{
    DEFAULT_INDEX_INTERVAL_BYTES, DEFAULT_MAX_BATCH_BYTES, DEFAULT_MAX_SEGMENT_BYTES,
    PersistPolicy, RetentionPolicy,
};
use crate::error::{Error, Result};
use crate::event::Event;

/// A source of "now" in epoch milliseconds (injectable so retention can be tested).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(crate::config::now_ms)
}

/// How to open an [`EventLog`].
#[derive(Clone)]
pub struct LogOptions {
    /// Roll to a new segment when the next frame would pass this size. Default = 128 MiB.
    pub max_segment_bytes: u64,
    /// One index entry per this many bytes of log. Default = 64 KiB.
    pub index_interval_bytes: u64,
    /// When appends are acknowledged. Default = [`PersistPolicy::Always`].
    pub persist: PersistPolicy,
    /// Cap on the bytes of one group commit. Default = 8 MiB.
    pub max_batch_bytes: usize,
    /// Retention, applied after every segment roll and by [`EventLog::apply_retention`].
    /// Default = keep everything.
    pub retention: RetentionPolicy,
    /// Largest encoded event accepted, in bytes. Default = 16 MiB minus the record header
    /// (the event model applies its own, smaller, limit before this).
    pub max_event_bytes: usize,
    /// The filesystem. Default = [`OsIo`].
    pub io: Arc<dyn Io>,
    /// The clock for ingest times. Default = the system clock.
    pub clock: Clock,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            index_interval_bytes: DEFAULT_INDEX_INTERVAL_BYTES,
            persist: PersistPolicy::Always,
            max_batch_bytes: DEFAULT_MAX_BATCH_BYTES,
            retention: RetentionPolicy::default(),
            max_event_bytes: MAX_FRAME_PAYLOAD_BYTES as usize - MAX_RECORD_HEADER_BYTES,
            io: Arc::new(OsIo),
            clock: system_clock(),
        }
    }
}

impl std::fmt::Debug for LogOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogOptions")
            .field("max_segment_bytes", &self.max_segment_bytes)
            .field("index_interval_bytes", &self.index_interval_bytes)
            .field("persist", &self.persist)
            .field("max_batch_bytes", &self.max_batch_bytes)
            .field("retention", &self.retention)
            .field("io", &self.io)
            .finish_non_exhaustive()
    }
}

/// Where an acknowledged append landed: `count` records from `first_offset`, consecutive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Offset of the first event of the append.
    pub first_offset: u64,
    /// Number of events (their offsets are `first_offset..first_offset + count`).
    pub count: u64,
    /// Ingest time given to all of them.
    pub ingest_time_ms: u64,
}

/// What retention did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: usize,
    /// Bytes freed.
    pub bytes_freed: u64,
    /// First offset still in the log.
    pub first_offset: u64,
}

/// A snapshot of the log's extent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct LogStats {
    /// First offset still stored (older ones were removed by retention).
    pub first_offset: u64,
    /// The offset the next append will get; `next_offset - first_offset` records are stored
    /// (minus any gap accepted by a repair).
    pub next_offset: u64,
    /// Offset of the newest stored record (None when the log holds none).
    pub last_offset: Option<u64>,
    /// Records stored.
    pub records: u64,
    /// Bytes of segment files.
    pub bytes: u64,
    /// Segment files.
    pub segments: usize,
    /// Ingest time of the first stored record.
    pub first_time_ms: Option<u64>,
    /// Ingest time of the last stored record.
    pub last_time_ms: Option<u64>,
}

/// One result of [`LogReader::next`].
// Records are returned by value on the read path; boxing would add an allocation per record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum ReadOutcome {
    /// The next record.
    Record(Record),
    /// Nothing more has been acknowledged yet.
    EndOfLog,
}

// ---------------------------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct SegmentMeta {
    base: u64,
    path: PathBuf,
    file: Arc<dyn IoFile>,
    /// Bytes readers may read (acknowledged or, with a weaker policy, written).
    len: u64,
    next_offset: u64,
    first_time: Option<u64>,
    last_time: Option<u64>,
    entries: Vec<IndexEntry>,
}

impl From<OpenedSegment> for SegmentMeta {
    fn from(s: OpenedSegment) -> Self {
        SegmentMeta {
            base: s.base,
            path: s.path,
            file: s.file,
            len: s.len,
            next_offset: s.next_offset,
            first_time: s.first_time,
            last_time: s.last_time,
            entries: s.entries,
        }
    }
}

#[derive(Debug)]
struct LogState {
    /// Oldest first; the last one is the active segment. Never empty.
    segments: Vec<SegmentMeta>,
}

impl LogState {
    fn next_offset(&self) -> u64 {
        self.segments.last().map(|s| s.next_offset).unwrap_or(0)
    }
    fn first_offset(&self) -> u64 {
        self.segments.first().map(|s| s.base).unwrap_or(0)
    }
    /// Index of the segment holding `offset` (the last one whose base is ≤ it).
    fn segment_for(&self, offset: u64) -> usize {
        self.segments
            .partition_point(|s| s.base <= offset)
            .saturating_sub(1)
    }
}

struct Shared {
    dir: PathBuf,
    state: RwLock<LogState>,
    /// The next visible offset; readers wait on it.
    visible: watch::Sender<u64>,
    poisoned: Mutex<Option<String>>,
    closed: AtomicBool,
    repairs: Repairs,
    counters: Counters,
    /// The retention policy; changeable while the log is open.
    retention: Mutex<RetentionPolicy>,
}

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    appends: AtomicU64,
    records: AtomicU64,
    fsyncs: AtomicU64,
    fsync_micros: AtomicU64,
    fsync_latency: crate::metrics::LatencyHistogram,
}

/// A snapshot of the writer's counters since open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WriterStats {
    /// Group commits written.
    pub commits: u64,
    /// Append requests acknowledged.
    pub appends: u64,
    /// Records acknowledged.
    pub records: u64,
    /// Data fdatasyncs of the active segment.
    pub fsyncs: u64,
    /// Total time spent in those fdatasyncs, in microseconds.
    pub fsync_micros: u64,
}

impl Shared {
    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, LogState> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }
    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, LogState> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
    fn retention_policy(&self) -> RetentionPolicy {
        *self.retention.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn poison_cause(&self) -> Option<String> {
        self.poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
    fn poisoned_error(&self, cause: String) -> Error {
        Error::Poisoned {
            path: self.dir.clone(),
            cause,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// EventLog
// ---------------------------------------------------------------------------------------------

enum Request {
    Append {
        events: Vec<EncodedEvent>,
        bytes: usize,
        reply: oneshot::Sender<Result<AppendOutcome>>,
    },
    Retention {
        reply: oneshot::Sender<Result<RetentionOutcome>>,
    },
    Sync {
        reply: oneshot::Sender<Result<()>>,
    },
}

/// The durable log of one event set. Cheap to share behind an `Arc`; all methods take `&self`.
pub struct EventLog {
    /// Held for the life of the log: one `EventLog` per directory.
    _lock: io::LockGuard,
    shared: Arc<Shared>,
    tx: Mutex<Option<Sender<Request>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    report: RecoveryReport,
    max_event_bytes: usize,
    /// Event id → offsets, for [`EventLog::find_by_id`]; only lookups use it.
    ids: ids::IdIndex,
}

impl std::fmt::Debug for EventLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventLog")
            .field("dir", &self.shared.dir)
            .finish_non_exhaustive()
    }
}

/// A pending append; await it, or call [`AppendTicket::wait`] from synchronous code.
#[derive(Debug)]
pub struct AppendTicket {
    rx: oneshot::Receiver<Result<AppendOutcome>>,
}

impl AppendTicket {
    /// Blocks until the append is acknowledged (must not be called inside an async runtime).
    pub fn wait(self) -> Result<AppendOutcome> {
        self.rx.blocking_recv().unwrap_or(Err(Error::Closed))
    }
}

impl std::future::Future for AppendTicket {
    type Output = Result<AppendOutcome>;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(Error::Closed)))
    }
}

impl EventLog {
    /// Opens the log in `dir`, creating it when missing, and recovers from any crash (see
    /// [`EventLog::recovery_report`]). Fails with [`Error::Corrupt`] on damage a crash cannot
    /// explain.
    pub fn open(dir: impl AsRef<Path>, opts: LogOptions) -> Result<EventLog> {
        let dir = dir.as_ref().to_path_buf();
        if opts.max_segment_bytes == 0 {
            return Err(Error::invalid("max_segment_bytes", "must be at least 1"));
        }
        if opts.index_interval_bytes == 0 {
            return Err(Error::invalid("index_interval_bytes", "must be at least 1"));
        }
        let opened = recovery::open_dir(opts.io.as_ref(), &dir, opts.index_interval_bytes)?;
        let segments: Vec<SegmentMeta> = opened.segments.into_iter().map(Into::into).collect();
        let active = segments
            .last()
            .expect("open_dir returns at least one segment");
        let next_offset = active.next_offset;
        let last_time = segments.iter().rev().find_map(|s| s.last_time).unwrap_or(0);
        let writer_state = WriterState {
            active_file: active.file.clone(),
            active_path: active.path.clone(),
            active_base: active.base,
            active_len: active.len,
            index: opened.active_index,
            next_offset,
            last_time,
            active_first_time: active.first_time,
            unsynced: false,
            last_sync: Instant::now(),
        };
        let (visible, _) = watch::channel(next_offset);
        let shared = Arc::new(Shared {
            dir: dir.clone(),
            state: RwLock::new(LogState { segments }),
            visible,
            poisoned: Mutex::new(None),
            closed: AtomicBool::new(false),
            repairs: opened.repairs,
            counters: Counters::default(),
            retention: Mutex::new(opts.retention),
        });
        let max_event_bytes = opts
            .max_event_bytes
            .min(MAX_FRAME_PAYLOAD_BYTES as usize - MAX_RECORD_HEADER_BYTES);
        let retention = opts.retention;
        let ids = ids::IdIndex::new(opts.io.clone(), dir.clone());
        // Unbounded so that submitting never blocks an async caller; the queue is bounded by
        // the producers themselves, each of which waits for its acknowledgement.
        let (tx, rx) = mpsc::channel();
        let mut writer = Writer {
            shared: shared.clone(),
            opts,
            st: writer_state,
            buf: Vec::with_capacity(1 << 20),
            pending_index: Vec::new(),
            gather: Gather {
                expect: 0,
                acked_at: Instant::now(),
                last_sync: Duration::ZERO,
            },
            undo_to: UndoPoint {
                base: 0,
                active_len: 0,
                next_offset: 0,
                last_time: 0,
                index_len: 0,
                last_indexed: None,
                first_time: None,
            },
            rolled_retention: RetentionOutcome::default(),
        };
        if retention.max_age.is_some() || retention.max_bytes.is_some() {
            // On this thread, before the writer starts: `open` may be called from async code.
            writer.retention()?;
        }
        let handle = std::thread::Builder::new()
            .name(format!(
                "eventbus-writer-{}",
                dir.file_name().unwrap_or_default().to_string_lossy()
            ))
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::io("spawn writer thread", &dir, e))?;
        let log = EventLog {
            _lock: opened.lock,
            shared,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            report: opened.report,
            max_event_bytes,
            ids,
        };
        Ok(log)
    }

    /// The directory of this log.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// What recovery found and did when this log was opened.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.report
    }

    /// Gaps accepted by an earlier `repair`.
    pub fn accepted_gaps(&self) -> &[recovery::Gap] {
        &self.shared.repairs.gaps
    }

    fn send(&self, req: Request) -> Result<()> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or(Error::Closed)?;
        tx.send(req).map_err(|_| Error::Closed)
    }

    /// Encodes `events` on the calling thread and queues them for the next group commit.
    /// The returned ticket resolves once they are durable (per the persist policy); they get
    /// consecutive offsets.
    pub fn submit(&self, events: &[Event]) -> Result<AppendTicket> {
        let encoded = events
            .iter()
            .map(encode_event)
            .collect::<Result<Vec<_>>>()?;
        self.submit_encoded(encoded)
    }

    /// Like [`EventLog::submit`] for events already encoded with [`crate::codec::encode_event`].
    pub fn submit_encoded(&self, events: Vec<EncodedEvent>) -> Result<AppendTicket> {
        if events.is_empty() {
            return Err(Error::invalid(
                "events",
                "an append needs at least one event",
            ));
        }
        let mut bytes = 0;
        for (i, e) in events.iter().enumerate() {
            if e.len() > self.max_event_bytes {
                return Err(Error::invalid(
                    format!("events[{i}]"),
                    format!(
                        "encoded event is {} bytes, more than the maximum {}",
                        e.len(),
                        self.max_event_bytes
                    ),
                ));
            }
            bytes += e.len() + FRAME_HEADER_BYTES + MAX_RECORD_HEADER_BYTES;
        }
        if let Some(cause) = self.shared.poison_cause() {
            return Err(self.shared.poisoned_error(cause));
        }
        let (reply, rx) = oneshot::channel();
        self.send(Request::Append {
            events,
            bytes,
            reply,
        })?;
        Ok(AppendTicket { rx })
    }

    /// Appends and waits for the acknowledgement.
    pub async fn append(&self, events: &[Event]) -> Result<AppendOutcome> {
        self.submit(events)?.await
    }

    /// Appends and blocks until acknowledged (not for use inside an async runtime).
    pub fn append_blocking(&self, events: &[Event]) -> Result<AppendOutcome> {
        self.submit(events)?.wait()
    }

    /// fdatasyncs whatever was written but not yet synced (useful with weaker policies).
    pub fn sync_blocking(&self) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Sync { reply })?;
        rx.blocking_recv().unwrap_or(Err(Error::Closed))
    }

    /// Replaces the retention policy. It takes effect at the next roll, on the next
    /// [`EventLog::apply_retention`], and when the log is opened again.
    pub fn set_retention(&self, policy: RetentionPolicy) {
        *self
            .shared
            .retention
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = policy;
    }

    /// Applies the retention policy now (it also runs after every segment roll and on open).
    pub async fn apply_retention(&self) -> Result<RetentionOutcome> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Retention { reply })?;
        rx.await.unwrap_or(Err(Error::Closed))
    }

    /// Blocking form of [`EventLog::apply_retention`].
    pub fn apply_retention_blocking(&self) -> Result<RetentionOutcome> {
        let (reply, rx) = oneshot::channel();
        self.send(Request::Retention { reply })?;
        rx.blocking_recv().unwrap_or(Err(Error::Closed))
    }

    /// The first offset still stored (everything before it was removed by retention).
    pub fn first_offset(&self) -> u64 {
        self.shared.read_state().first_offset()
    }

    /// The offset the next append will get (= one past the last visible record).
    pub fn next_offset(&self) -> u64 {
        self.shared.read_state().next_offset()
    }

    /// Extent and size of the log.
    pub fn stats(&self) -> LogStats {
        let st = self.shared.read_state();
        let records: u64 = st.segments.iter().map(|s| s.next_offset - s.base).sum();
        LogStats {
            first_offset: st.first_offset(),
            next_offset: st.next_offset(),
            last_offset: (records > 0).then(|| st.next_offset() - 1),
            records,
            bytes: st.segments.iter().map(|s| s.len).sum(),
            segments: st.segments.len(),
            first_time_ms: st.segments.iter().find_map(|s| s.first_time),
            last_time_ms: st.segments.iter().rev().find_map(|s| s.last_time),
        }
    }

    /// A reader starting at `offset` (clamped to the first stored offset).
    pub fn read_from(&self, offset: u64) -> LogReader {
        LogReader {
            shared: self.shared.clone(),
            next: offset,
            seg: None,
            buf: Vec::new(),
            buf_pos: 0,
            visible: self.shared.visible.subscribe(),
            skipped_by_retention: 0,
        }
    }

    /// The first offset whose ingest time is at or after `time_ms` (the next offset when none).
    pub fn offset_at_time(&self, time_ms: u64) -> Result<u64> {
        let start = {
            let st = self.shared.read_state();
            // The last segment whose first record is before `time_ms` holds the answer or it is
            // the first record of the following segment.
            let i = st
                .segments
                .partition_point(|s| s.first_time.is_some_and(|t| t < time_ms));
            match i.checked_sub(1) {
                None => return Ok(st.first_offset()),
                Some(i) => {
                    let s = &st.segments[i];
                    lookup_time(&s.entries, time_ms)
                        .map(|e| e.offset)
                        .unwrap_or(s.base)
                }
            }
        };
        let mut reader = self.read_from(start);
        loop {
            match reader.next()? {
                ReadOutcome::Record(r) if r.ingest_time_ms >= time_ms => return Ok(r.offset),
                ReadOutcome::Record(_) => continue,
                ReadOutcome::EndOfLog => return Ok(reader.next),
            }
        }
    }

    /// Every stored event whose id is exactly `id`, oldest first (ids are not unique: two
    /// sources may use the same one, and a producer may repeat one after the de-duplication
    /// window).
    ///
    /// Uses the id index ([`ids`]): the first lookup builds the `.ids` file of each sealed
    /// segment that lacks a valid one (reading the whole segment once), and scans the active
    /// segment's records it has not seen before; appends never pay for it. Each candidate
    /// the index gives is read back and kept only if its id is `id`.
    pub fn find_by_id(&self, id: &str) -> Result<Vec<Record>> {
        let offsets = self.ids.candidates(id, || {
            self.shared
                .read_state()
                .segments
                .iter()
                .map(|s| ids::SegmentView {
                    base: s.base,
                    next_offset: s.next_offset,
                    len: s.len,
                    path: s.path.clone(),
                    file: s.file.clone(),
                })
                .collect()
        })?;
        let mut found = Vec::with_capacity(offsets.len());
        for offset in offsets {
            // A record removed by retention since the lookup is skipped by the reader.
            if let ReadOutcome::Record(r) = self.read_from(offset).next()?
                && r.offset == offset
                && r.event.id == id
            {
                found.push(r);
            }
        }
        Ok(found)
    }

    /// What the id index has built, loaded and scanned since the log was opened.
    pub fn id_index_stats(&self) -> ids::IdIndexStats {
        self.ids.stats()
    }

    /// A reader starting at the first record ingested at or after `time_ms`.
    pub fn read_from_time(&self, time_ms: u64) -> Result<LogReader> {
        Ok(self.read_from(self.offset_at_time(time_ms)?))
    }

    /// Stops the writer after everything queued is written, fsyncs, and waits for it.
    /// Readers see end of log afterwards; tailing readers get [`Error::Closed`].
    pub fn close(&self) -> Result<()> {
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(tx);
        let handle = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = h.join();
        }
        self.shared.closed.store(true, Ordering::SeqCst);
        self.shared.visible.send_modify(|_| {});
        match self.shared.poison_cause() {
            Some(cause) => Err(self.shared.poisoned_error(cause)),
            None => Ok(()),
        }
    }

    /// The writer's counters (group commits, fsyncs and their total time).
    pub fn writer_stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            commits: c.commits.load(Ordering::Relaxed),
            appends: c.appends.load(Ordering::Relaxed),
            records: c.records.load(Ordering::Relaxed),
            fsyncs: c.fsyncs.load(Ordering::Relaxed),
            fsync_micros: c.fsync_micros.load(Ordering::Relaxed),
        }
    }

    /// The distribution of data fdatasync durations since open (for `GET /metrics`).
    pub fn fsync_latency(&self) -> crate::metrics::HistogramSnapshot {
        self.shared.counters.fsync_latency.snapshot()
    }

    /// Whether an earlier failure poisoned the log.
    pub fn is_poisoned(&self) -> bool {
        self.shared.poison_cause().is_some()
    }
}

impl Drop for EventLog {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

// ---------------------------------------------------------------------------------------------
// The writer thread
// ---------------------------------------------------------------------------------------------

struct WriterState {
    active_file: Arc<dyn IoFile>,
    active_path: PathBuf,
    active_base: u64,
    /// Bytes written to the active segment (visible ones are in the shared state).
    active_len: u64,
    index: ActiveIndex,
    next_offset: u64,
    last_time: u64,
    active_first_time: Option<u64>,
    unsynced: bool,
    last_sync: Instant,
}

struct Writer {
    shared: Arc<Shared>,
    opts: LogOptions,
    st: WriterState,
    /// Frames of the group commit being built.
    buf: Vec<u8>,
    /// Index entries of the active segment not yet written to its index file.
    pending_index: Vec<IndexEntry>,
    gather: Gather,
    /// Where a failure of the current group commit rolls back to.
    undo_to: UndoPoint,
    /// What retention run by a roll deleted (reported by a retention request that rolled).
    rolled_retention: RetentionOutcome,
}

/// The writer's position at a point it can return to after a failed group commit.
#[derive(Debug, Clone, Copy)]
struct UndoPoint {
    base: u64,
    active_len: u64,
    next_offset: u64,
    last_time: u64,
    index_len: u64,
    last_indexed: Option<u64>,
    first_time: Option<u64>,
}

/// State for sizing group commits (see `Writer::gather_wait`).
struct Gather {
    /// Requests in the previous group commit.
    expect: usize,
    /// When the previous group commit was acknowledged.
    acked_at: Instant,
    /// How long the last fdatasync took.
    last_sync: Duration,
}

/// A failure inside a group commit and whether the log state is still known.
struct CommitFailure {
    error: Error,
    poison: bool,
}

impl Writer {
    fn run(&mut self, rx: Receiver<Request>) {
        let mut pending: Option<Request> = None;
        loop {
            let first = match pending.take() {
                Some(r) => r,
                None => match self.wait_for_request(&rx) {
                    Some(r) => r,
                    None => break,
                },
            };
            match first {
                Request::Append { .. } => {
                    // Take everything already waiting, up to the batch cap.
                    let mut batch = vec![first];
                    let mut bytes = 0usize;
                    loop {
                        if bytes >= self.opts.max_batch_bytes {
                            break;
                        }
                        let next = match rx.try_recv() {
                            Ok(r) => r,
                            Err(TryRecvError::Disconnected) => break,
                            Err(TryRecvError::Empty) => match self.gather_wait(batch.len()) {
                                None => break,
                                Some(wait) => match rx.recv_timeout(wait) {
                                    Ok(r) => r,
                                    Err(_) => break,
                                },
                            },
                        };
                        match next {
                            Request::Append { bytes: b, .. } => {
                                bytes += b;
                                batch.push(next);
                            }
                            other => {
                                pending = Some(other);
                                break;
                            }
                        }
                    }
                    self.gather.expect = batch.len();
                    self.commit(batch);
                    self.gather.acked_at = Instant::now();
                }
                Request::Retention { reply } => {
                    let r = self.guard().and_then(|()| self.retention());
                    let _ = reply.send(r);
                }
                Request::Sync { reply } => {
                    let r = self.guard().and_then(|()| self.sync_now());
                    let _ = reply.send(r);
                }
            }
        }
        // Channel closed: make everything written durable before the thread ends.
        if self.shared.poison_cause().is_none() && self.st.unsynced {
            let _ = self.sync_now();
        }
    }

    /// Blocks for the next request; with an interval policy, fsyncs when the interval is due.
    fn wait_for_request(&mut self, rx: &Receiver<Request>) -> Option<Request> {
        loop {
            let PersistPolicy::IntervalMs(ms) = self.opts.persist else {
                return rx.recv().ok();
            };
            if !self.st.unsynced {
                return rx.recv().ok();
            }
            let due = self.st.last_sync + Duration::from_millis(ms);
            let now = Instant::now();
            if now >= due {
                if self.guard().is_err() {
                    // Poisoned: nothing will be synced any more; just serve requests (which
                    // fail) until the log closes.
                    return rx.recv().ok();
                }
                let _ = self.sync_now();
                continue;
            }
            match rx.recv_timeout(due - now) {
                Ok(r) => return Some(r),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// How much longer to wait for more appends before committing a batch of `have` requests,
    /// or None to commit now.
    ///
    /// Producers that were just acknowledged usually come straight back; if the writer
    /// commits the moment the first one arrives, the rest miss that fsync and wait a whole
    /// extra one (batches alternate between halves). So, with `Always`, the writer waits until
    /// as many requests as the previous batch had have arrived, but never longer than half the
    /// last fsync took (at most 1 ms) after the previous acknowledgement: an idle or
    /// single-producer log commits at once.
    fn gather_wait(&self, have: usize) -> Option<Duration> {
        if self.opts.persist != PersistPolicy::Always || have >= self.gather.expect {
            return None;
        }
        let window = (self.gather.last_sync / 2).min(Duration::from_millis(1));
        let deadline = self.gather.acked_at + window;
        deadline.checked_duration_since(Instant::now())
    }

    fn guard(&self) -> Result<()> {
        match self.shared.poison_cause() {
            Some(cause) => Err(self.shared.poisoned_error(cause)),
            None => Ok(()),
        }
    }

    fn poison(&self, cause: String) {
        tracing::error!(dir = %self.shared.dir.display(), "event log poisoned: {cause}");
        let mut p = self
            .shared
            .poisoned
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        p.get_or_insert(cause);
    }

    /// fdatasyncs the active segment, then records in its index the entries written so far
    /// and a sync mark (the length now known durable). Index writes are not fsynced: a lost
    /// mark only makes recovery scan more.
    fn sync_now(&mut self) -> Result<()> {
        let started = Instant::now();
        if let Err(e) = self.st.active_file.sync_data() {
            let err = Error::io("fdatasync", &self.st.active_path, e);
            self.poison(format!("fdatasync: {err}"));
            return Err(err);
        }
        self.st.unsynced = false;
        self.st.last_sync = Instant::now();
        self.gather.last_sync = self.st.last_sync - started;
        let c = &self.shared.counters;
        c.fsyncs.fetch_add(1, Ordering::Relaxed);
        c.fsync_micros
            .fetch_add(self.gather.last_sync.as_micros() as u64, Ordering::Relaxed);
        c.fsync_latency.observe(self.gather.last_sync);
        let mark = (self.st.next_offset > self.st.active_base).then(|| SyncMark {
            last_offset: self.st.next_offset - 1,
            position: self.st.active_len,
        });
        self.write_index(mark);
        Ok(())
    }

    /// Appends the pending index entries (and a sync mark) to the active index file. A failure
    /// here loses nothing (the index is rebuilt from the data on open), so it is only logged.
    fn write_index(&mut self, mark: Option<SyncMark>) {
        if self.pending_index.is_empty() && mark.is_none() {
            return;
        }
        let mut ibuf =
            Vec::with_capacity((self.pending_index.len() + 1) * index::INDEX_ENTRY_BYTES);
        for e in &self.pending_index {
            ibuf.extend_from_slice(&encode_entry(e));
        }
        if let Some(m) = &mark {
            ibuf.extend_from_slice(&encode_sync_mark(m));
        }
        match self.st.index.file.write_all_at(&ibuf, self.st.index.len) {
            Ok(()) => {
                self.st.index.len += ibuf.len() as u64;
                self.pending_index.clear();
            }
            Err(e) => {
                tracing::warn!(
                    dir = %self.shared.dir.display(),
                    "writing index entries failed (recovery will scan instead): {e}"
                );
                // Cut any partial entry so later entries follow whole ones.
                let _ = self.st.index.file.set_len(self.st.index.len);
                self.pending_index.clear();
            }
        }
    }

    fn now_ms(&self) -> u64 {
        (self.opts.clock)().max(self.st.last_time)
    }

    fn undo_point(&self) -> UndoPoint {
        UndoPoint {
            base: self.st.active_base,
            active_len: self.st.active_len,
            next_offset: self.st.next_offset,
            last_time: self.st.last_time,
            index_len: self.st.index.len,
            last_indexed: self.st.index.last_indexed,
            first_time: self.st.active_first_time,
        }
    }

    /// Puts the active segment back to `u` after a failed group commit: truncates the data and
    /// index files (and fsyncs them, so a crash cannot resurrect a mark over rewritten bytes)
    /// and resets the writer's counters. False when that is impossible (the log is then
    /// poisoned by the caller).
    fn undo(&mut self, u: UndoPoint) -> bool {
        if u.base != self.st.active_base {
            return false;
        }
        let files = [&self.st.active_file, &self.st.index.file];
        let lens = [u.active_len, u.index_len];
        for (f, len) in files.into_iter().zip(lens) {
            if f.set_len(len).and_then(|()| f.sync_data()).is_err() {
                return false;
            }
        }
        self.st.active_len = u.active_len;
        self.st.next_offset = u.next_offset;
        self.st.last_time = u.last_time;
        self.st.index.len = u.index_len;
        self.st.index.last_indexed = u.last_indexed;
        self.st.active_first_time = u.first_time;
        true
    }

    fn commit(&mut self, batch: Vec<Request>) {
        let replies_ok = self.guard();
        let mut items = Vec::with_capacity(batch.len());
        for r in batch {
            if let Request::Append { events, reply, .. } = r {
                items.push((events, reply));
            }
        }
        if let Err(e) = replies_ok {
            for (_, reply) in items {
                let _ = reply.send(Err(e.replicate()));
            }
            return;
        }
        self.undo_to = self.undo_point();
        let outcome = self.write_batch(&items);
        self.pending_index.clear();
        match outcome {
            Ok((outcomes, new_entries)) => {
                self.publish(new_entries);
                let c = &self.shared.counters;
                c.commits.fetch_add(1, Ordering::Relaxed);
                c.appends
                    .fetch_add(outcomes.len() as u64, Ordering::Relaxed);
                c.records
                    .fetch_add(outcomes.iter().map(|o| o.count).sum(), Ordering::Relaxed);
                for ((_, reply), o) in items.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(o));
                }
            }
            Err(CommitFailure { error, poison }) => {
                // Records sealed by a roll inside this batch stay (they are durable and
                // visible); the appends still fail, so a retrying producer may store them
                // twice: at-least-once.
                if poison || !self.undo(self.undo_to) {
                    self.poison(error.to_string());
                }
                for (_, reply) in items {
                    let _ = reply.send(Err(error.replicate()));
                }
            }
        }
    }

    /// Writes the batch (rolling segments as needed) and syncs per policy. Returns the outcome
    /// of each append and the index entries added to the active segment.
    #[allow(clippy::type_complexity)]
    fn write_batch(
        &mut self,
        items: &[(Vec<EncodedEvent>, oneshot::Sender<Result<AppendOutcome>>)],
    ) -> std::result::Result<(Vec<AppendOutcome>, Vec<IndexEntry>), CommitFailure> {
        let io_fail = |error: Error| CommitFailure {
            error,
            poison: false,
        };
        let now = self.now_ms();
        let mut outcomes = Vec::with_capacity(items.len());
        let mut new_entries: Vec<IndexEntry> = Vec::new();
        self.buf.clear();
        for (events, _) in items {
            let first_offset = self.st.next_offset;
            for ev in events {
                let frame_len = (FRAME_HEADER_BYTES + MAX_RECORD_HEADER_BYTES + ev.len()) as u64;
                let used = self.st.active_len + self.buf.len() as u64;
                if used > 0 && used + frame_len > self.opts.max_segment_bytes {
                    self.flush_buf().map_err(io_fail)?;
                    self.roll(&mut new_entries)?;
                }
                let pos = self.st.active_len + self.buf.len() as u64;
                if self
                    .st
                    .index
                    .last_indexed
                    .is_none_or(|l| pos - l >= self.opts.index_interval_bytes)
                {
                    let entry = IndexEntry {
                        offset: self.st.next_offset,
                        position: pos,
                        ingest_time_ms: now,
                    };
                    new_entries.push(entry);
                    self.pending_index.push(entry);
                    self.st.index.last_indexed = Some(pos);
                }
                let offset = self.st.next_offset;
                frame::encode_frame_with(&mut self.buf, |out| {
                    write_record_payload(offset, now, ev, out)
                })
                .map_err(io_fail)?;
                self.st.active_first_time.get_or_insert(now);
                self.st.last_time = now;
                self.st.next_offset += 1;
            }
            outcomes.push(AppendOutcome {
                first_offset,
                count: events.len() as u64,
                ingest_time_ms: now,
            });
        }
        self.flush_buf().map_err(io_fail)?;
        let must_sync = match self.opts.persist {
            PersistPolicy::Always => true,
            PersistPolicy::IntervalMs(ms) => {
                self.st.last_sync.elapsed() >= Duration::from_millis(ms)
            }
            PersistPolicy::Never => false,
        };
        if must_sync {
            self.sync_now().map_err(|error| CommitFailure {
                error,
                poison: true,
            })?;
        } else {
            self.write_index(None);
        }
        Ok((outcomes, new_entries))
    }

    /// Writes the buffered frames to the active segment (one `write`).
    fn flush_buf(&mut self) -> Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.st
            .active_file
            .write_all_at(&self.buf, self.st.active_len)
            .map_err(|e| Error::io("write", &self.st.active_path, e))?;
        self.st.active_len += self.buf.len() as u64;
        self.st.unsynced = true;
        self.buf.clear();
        Ok(())
    }

    /// Seals the active segment and starts a new one. Steps (each fsync named):
    /// 1. fdatasync the active segment (its records become durable), then append the pending
    ///    index entries and a sync mark to its index;
    /// 2. append the seal entry to its index and fdatasync the index;
    /// 3. create the new segment and index files, fdatasync both, fsync the directory;
    /// 4. publish the sealed segment's final length and the new segment to readers.
    ///
    /// A failure in step 1's fdatasync or in step 2's fdatasync poisons the log. A failed write
    /// (ENOSPC, EIO) in step 2 or 3 is undone (the half-made segment is removed, the seal is cut
    /// off by the caller's undo) and only fails this group commit.
    fn roll(&mut self, new_entries: &mut Vec<IndexEntry>) -> Result<(), CommitFailure> {
        let poison = |error: Error| CommitFailure {
            error,
            poison: true,
        };
        let fail = |error: Error| CommitFailure {
            error,
            poison: false,
        };
        if self.st.unsynced {
            self.sync_now().map_err(poison)?;
        } else {
            self.write_index(Some(SyncMark {
                last_offset: self.st.next_offset - 1,
                position: self.st.active_len,
            }));
        }
        let ipath = self
            .shared
            .dir
            .join(segment::index_file_name(self.st.active_base));
        let seal = SealInfo {
            last_offset: self.st.next_offset - 1,
            end_position: self.st.active_len,
            last_time_ms: self.st.last_time,
        };
        self.st
            .index
            .file
            .write_all_at(&encode_seal(&seal), self.st.index.len)
            .map_err(|e| fail(Error::io("write", &ipath, e)))?;
        self.st
            .index
            .file
            .sync_data()
            .map_err(|e| poison(Error::io("fdatasync", &ipath, e)))?;
        let new_base = self.st.next_offset;
        let io = self.opts.io.as_ref();
        let (file, index, path) = match create_segment(io, &self.shared.dir, new_base) {
            Ok(created) => created,
            Err(error) => {
                // Remove whatever was created so the directory is as before the roll.
                let mut clean = true;
                for name in [
                    segment::segment_file_name(new_base),
                    segment::index_file_name(new_base),
                ] {
                    let p = self.shared.dir.join(name);
                    if io.exists(&p) && io.remove_file(&p).is_err() {
                        clean = false;
                    }
                }
                clean = clean && io.sync_dir(&self.shared.dir).is_ok();
                return Err(CommitFailure {
                    error,
                    poison: !clean,
                });
            }
        };
        // Publish the sealed segment (its bytes are durable: step 1) and the new one.
        {
            let mut st = self.shared.write_state();
            let old = st.segments.last_mut().expect("active segment");
            old.len = self.st.active_len;
            old.next_offset = self.st.next_offset;
            old.last_time = Some(self.st.last_time);
            old.first_time = old.first_time.or(self.st.active_first_time);
            old.entries.extend(
                new_entries
                    .iter()
                    .filter(|e| e.offset >= old.base && e.offset < new_base),
            );
            st.segments.push(SegmentMeta {
                base: new_base,
                path: path.clone(),
                file: file.clone(),
                len: 0,
                next_offset: new_base,
                first_time: None,
                last_time: None,
                entries: Vec::new(),
            });
        }
        new_entries.retain(|e| e.offset >= new_base);
        self.shared.visible.send_replace(new_base);
        self.st.active_file = file;
        self.st.active_path = path;
        self.st.active_base = new_base;
        self.st.active_len = 0;
        self.st.index = index;
        self.st.active_first_time = None;
        // A later failure in this batch undoes only what follows the roll.
        self.undo_to = self.undo_point();
        self.apply_retention_after_roll();
        Ok(())
    }

    /// Retention after a roll; its counts are kept for a retention request that caused the
    /// roll (see `retention`).
    fn apply_retention_after_roll(&mut self) {
        match self.delete_expired() {
            Ok(o) => {
                self.rolled_retention.segments_deleted += o.segments_deleted;
                self.rolled_retention.bytes_freed += o.bytes_freed;
            }
            Err(e) => {
                tracing::warn!(dir = %self.shared.dir.display(), "retention after roll failed: {e}")
            }
        }
    }

    /// Makes the batch visible to readers: the active segment's length, offsets, index.
    fn publish(&mut self, new_entries: Vec<IndexEntry>) {
        {
            let mut st = self.shared.write_state();
            let seg = st.segments.last_mut().expect("active segment");
            debug_assert_eq!(seg.base, self.st.active_base);
            seg.len = self.st.active_len;
            seg.next_offset = self.st.next_offset;
            if seg.next_offset > seg.base {
                seg.last_time = Some(self.st.last_time);
                seg.first_time = seg.first_time.or(self.st.active_first_time);
            }
            seg.entries.extend(new_entries);
        }
        self.shared.visible.send_replace(self.st.next_offset);
    }

    /// Retention request: seal the active segment if all of it has expired, then delete.
    fn retention(&mut self) -> Result<RetentionOutcome> {
        self.rolled_retention = RetentionOutcome::default();
        if let Some(max_age) = self.shared.retention_policy().max_age {
            let cutoff = (self.opts.clock)().saturating_sub(max_age.as_millis() as u64);
            let active_expired = self.st.active_len > 0 && self.st.last_time < cutoff;
            if active_expired {
                self.undo_to = self.undo_point();
                let mut none = Vec::new();
                if let Err(f) = self.roll(&mut none) {
                    if f.poison || !self.undo(self.undo_to) {
                        self.poison(f.error.to_string());
                    }
                    return Err(f.error);
                }
            }
        }
        let mut out = self.delete_expired()?;
        out.segments_deleted += self.rolled_retention.segments_deleted;
        out.bytes_freed += self.rolled_retention.bytes_freed;
        Ok(out)
    }

    /// Deletes sealed segments, oldest first, while the policy says so. Each deletion is made
    /// durable (directory fsync) before the next, so a crash never leaves a hole in the chain.
    fn delete_expired(&mut self) -> Result<RetentionOutcome> {
        let policy = self.shared.retention_policy();
        let cutoff = policy
            .max_age
            .map(|a| (self.opts.clock)().saturating_sub(a.as_millis() as u64));
        let mut out = RetentionOutcome::default();
        loop {
            let victim = {
                let st = self.shared.read_state();
                if st.segments.len() < 2 {
                    None
                } else {
                    let s = &st.segments[0];
                    let total: u64 = st.segments.iter().map(|s| s.len).sum();
                    let too_old = cutoff.is_some_and(|c| s.last_time.is_none_or(|t| t < c));
                    let too_big = policy.max_bytes.is_some_and(|m| total > m);
                    (too_old || too_big).then(|| (s.base, s.path.clone(), s.len))
                }
            };
            let Some((base, path, len)) = victim else {
                break;
            };
            // Readers first stop finding it; open handles keep working until dropped.
            self.shared.write_state().segments.remove(0);
            let io = self.opts.io.as_ref();
            io.remove_file(&path)
                .map_err(|e| Error::io("remove", &path, e))?;
            // Its derived files go with it (the id index only exists once a lookup built it).
            for name in [segment::index_file_name(base), segment::ids_file_name(base)] {
                let p = self.shared.dir.join(name);
                if io.exists(&p) {
                    io.remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
                }
            }
            io.sync_dir(&self.shared.dir)
                .map_err(|e| Error::io("fsync dir", &self.shared.dir, e))?;
            out.segments_deleted += 1;
            out.bytes_freed += len;
            tracing::info!(segment = %path.display(), bytes = len, "retention deleted a segment");
        }
        out.first_offset = self.shared.read_state().first_offset();
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Readers
// ---------------------------------------------------------------------------------------------

struct ReaderSeg {
    base: u64,
    path: PathBuf,
    file: Arc<dyn IoFile>,
    /// Visible length when last refreshed.
    len: u64,
    /// File position of the next frame to read.
    pos: u64,
}

/// Reads records in offset order. Created by [`EventLog::read_from`] and friends.
pub struct LogReader {
    shared: Arc<Shared>,
    next: u64,
    seg: Option<ReaderSeg>,
    buf: Vec<u8>,
    /// File position of `buf[0]` (in the current segment).
    buf_pos: u64,
    visible: watch::Receiver<u64>,
    skipped_by_retention: u64,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

const READ_CHUNK: usize = 64 * 1024;

impl LogReader {
    /// The offset this reader will return next (or the first one after it that exists).
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Records this reader jumped over because retention deleted them before it got there.
    pub fn skipped_by_retention(&self) -> u64 {
        self.skipped_by_retention
    }

    /// The next record, or [`ReadOutcome::EndOfLog`] when nothing more is visible yet.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Result<ReadOutcome> {
        loop {
            let need_locate = match &self.seg {
                None => true,
                Some(s) => s.pos >= s.len,
            };
            if need_locate && !self.locate()? {
                return Ok(ReadOutcome::EndOfLog);
            }
            let pos = self.seg.as_ref().expect("located").pos;
            let corrupt = |this: &Self, detail: String| Error::Corrupt {
                path: this.seg.as_ref().expect("located").path.clone(),
                position: pos,
                detail,
            };
            let Some((start, end)) = self.frame_at(pos)? else {
                return Err(corrupt(
                    self,
                    "damaged frame inside the acknowledged part of the log".into(),
                ));
            };
            let payload = &self.buf[start..end];
            // Frames before the wanted offset (scanning forward from an index entry) are
            // skipped on their header alone.
            let (offset, _) =
                decode_record_header(payload).map_err(|e| corrupt(self, e.to_string()))?;
            let next_pos = self.buf_pos + end as u64;
            if offset < self.next {
                self.seg.as_mut().expect("located").pos = next_pos;
                continue;
            }
            let record = decode_record(payload).map_err(|e| corrupt(self, e.to_string()))?;
            self.seg.as_mut().expect("located").pos = next_pos;
            self.next = record.offset + 1;
            return Ok(ReadOutcome::Record(record));
        }
    }

    /// The records visible now, in order, ending at the end of the log (an error ends it too).
    pub fn records(&mut self) -> impl Iterator<Item = Result<Record>> + '_ {
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            match self.next() {
                Ok(ReadOutcome::Record(r)) => Some(Ok(r)),
                Ok(ReadOutcome::EndOfLog) => None,
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        })
    }

    /// Waits until the next record is acknowledged and returns it (a tailing read). The wait
    /// is a notification from the writer, not a poll of the disk.
    pub async fn next_wait(&mut self) -> Result<Record> {
        loop {
            if let ReadOutcome::Record(r) = self.next()? {
                return Ok(r);
            }
            let want = self.next;
            let shared = self.shared.clone();
            self.visible
                .wait_for(|v| *v > want || shared.closed.load(Ordering::SeqCst))
                .await
                .map_err(|_| Error::Closed)?;
            if self.shared.closed.load(Ordering::SeqCst) {
                if let ReadOutcome::Record(r) = self.next()? {
                    return Ok(r);
                }
                return Err(Error::Closed);
            }
        }
    }

    /// Points the reader at the segment and position holding `self.next`. False at end of log.
    fn locate(&mut self) -> Result<bool> {
        let st = self.shared.read_state();
        if self.next >= st.next_offset() {
            if let Some(s) = &mut self.seg {
                // Pick up a longer visible length of the same segment for the next call.
                if let Some(m) = st.segments.iter().find(|m| m.base == s.base) {
                    s.len = m.len;
                }
            }
            return Ok(false);
        }
        let first = st.first_offset();
        if self.next < first {
            self.skipped_by_retention += first - self.next;
            self.next = first;
            self.seg = None;
        }
        // Same segment grew: keep going from where we are.
        if let Some(s) = &mut self.seg
            && let Some(m) = st.segments.iter().find(|m| m.base == s.base)
            && s.pos < m.len
        {
            s.len = m.len;
            return Ok(true);
        }
        let i = st.segment_for(self.next);
        let m = &st.segments[i];
        let target = self.next.max(m.base);
        if target >= m.next_offset {
            // `next` is in a gap after this segment (a repaired log): go to the following one.
            let Some(n) = st.segments.get(i + 1) else {
                return Ok(false);
            };
            self.next = n.base;
            self.seg = Some(ReaderSeg {
                base: n.base,
                path: n.path.clone(),
                file: n.file.clone(),
                len: n.len,
                pos: 0,
            });
        } else {
            let pos = lookup_offset(&m.entries, target)
                .map(|e| e.position)
                .unwrap_or(0);
            self.seg = Some(ReaderSeg {
                base: m.base,
                path: m.path.clone(),
                file: m.file.clone(),
                len: m.len,
                pos,
            });
        }
        self.buf.clear();
        self.buf_pos = 0;
        Ok(true)
    }

    /// Ensures the frame at `pos` is in the buffer; returns its payload's range in `buf`,
    /// or None when the bytes there are not a valid frame.
    fn frame_at(&mut self, pos: u64) -> Result<Option<(usize, usize)>> {
        let seg = self.seg.as_ref().expect("located");
        loop {
            let in_buf = pos >= self.buf_pos && pos <= self.buf_pos + self.buf.len() as u64;
            if in_buf {
                let at = (pos - self.buf_pos) as usize;
                match decode_frame(&self.buf[at..]) {
                    FrameDecode::Frame { size, .. } => {
                        return Ok(Some((at + FRAME_HEADER_BYTES, at + size)));
                    }
                    FrameDecode::Corrupt(_) => return Ok(None),
                    FrameDecode::Incomplete { needed } => {
                        let have = self.buf.len() - at;
                        if pos + needed as u64 > seg.len {
                            return Ok(None);
                        }
                        // Slide the unread part to the front and read more.
                        self.buf.drain(..at);
                        self.buf_pos = pos;
                        let want = needed.max(READ_CHUNK).min((seg.len - pos) as usize);
                        self.buf.resize(want, 0);
                        io::read_exact_at(
                            seg.file.as_ref(),
                            &mut self.buf[have..],
                            pos + have as u64,
                        )
                        .map_err(|e| Error::io("read", &seg.path, e))?;
                    }
                }
            } else {
                self.buf.clear();
                self.buf_pos = pos;
            }
        }
    }
}
