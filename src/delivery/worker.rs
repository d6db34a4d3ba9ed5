//! The worker of one binding (rule × target): reads the set's log from its cursor (on its own
//! or as a follower of the set's dispatcher), keeps the events its rule matches, sends them in
//! batches with up to `max_in_flight` requests at once, schedules failures for retry, dead-
//! letters what the policy gives up, and commits its cursor as the low watermark of completed
//! work. docs/DELIVERY.md describes the state machine and why each crash point is safe.
//!
//! Invariants (checked by the delivery tests):
//! - The durable cursor `c` is only ever written as `min(oldest outstanding offset, scanned)`:
//!   every matching event below it was delivered, dead-lettered (or dropped / ignored by
//!   policy), or has a retry entry written in the same transaction as the cursor.
//! - Matching events read past the durable cursor are at most the window (`max_in_flight ×
//!   batch.max_events`): that is the most a crash can deliver twice.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bus::EventBus;
use crate::catalog::{
    BatchTrace, BindingId, DeadLetter, DeadLetterMode, DeliverySettings, DeliveryUpdate,
    RetryEntry, StartPosition, TraceAttempt, TraceOutcome, TraceUpdate,
};
use crate::event::Event;
use crate::pattern::Pattern;
use crate::store::{LogReader, ReadOutcome};
use crate::targets::{Delivered, Outgoing, SendError, Target};
use crate::transform::Transform;

use super::committer::{CommitRequest, CommitResult};
use super::dispatcher::{self, Feed};
use super::retry::{RetryPolicy, Verdict};
use super::{BindingStats, Clock, Matched};

/// Records a worker reads on its own per step.
const CHUNK: usize = 256;

/// Commands from the engine.
pub enum Cmd {
    /// Move dead letters (all, or these offsets) back to the retry queue, due now.
    Redrive {
        offsets: Option<Vec<u64>>,
        reply: oneshot::Sender<crate::Result<usize>>,
    },
}

/// Everything a worker needs.
pub struct WorkerConfig {
    pub id: BindingId,
    pub bus: Arc<EventBus>,
    pub target: Arc<dyn Target>,
    pub settings: DeliverySettings,
    pub pattern: Arc<Pattern>,
    /// The rule's transformation, applied to each event just before it is sent.
    pub transform: Option<Arc<Transform>>,
    /// Creation time of the target: where `"start": "latest"` begins.
    pub created_ms: u64,
    /// The set's shared tail reader, when reads are shared.
    pub dispatcher: Option<mpsc::Sender<dispatcher::Msg>>,
    pub committer: mpsc::UnboundedSender<CommitRequest>,
    pub clock: Clock,
    pub stats: Arc<BindingStats>,
    pub drain_timeout: Duration,
    pub feed_capacity: usize,
    /// A replay's binding: the window of offsets `[start, end)` it goes through. It starts at
    /// `start` (when it has no cursor yet), never reads at or past `end`, marks every event it
    /// sends with the extension `replayname`, and ends ([`Exit::Finished`]) once everything in
    /// the window is settled and its cursor is durably at `end`.
    pub window: Option<(u64, u64)>,
    /// Record every attempt in the events' linkage traces.
    pub trace: bool,
}

/// How a worker ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It was told to stop.
    Stopped,
    /// A replay's binding went through its whole window.
    Finished,
}

/// One event on its way: new (read from the log) or a retry.
#[derive(Debug, Clone)]
struct Item {
    m: Matched,
    /// Attempts made so far.
    attempts: u32,
    /// Where the retry age counts from: ingest, or the redrive.
    age_from_ms: u64,
    last_error: String,
    /// True when it has a retry entry in the catalog (a retry or a redriven dead letter).
    retry: bool,
}

impl Item {
    fn new(m: Matched) -> Item {
        Item {
            age_from_ms: m.ingest_time_ms,
            m,
            attempts: 0,
            last_error: String::new(),
            retry: false,
        }
    }

    fn from_entry(e: RetryEntry) -> Item {
        Item {
            m: Matched {
                offset: e.offset,
                ingest_time_ms: e.ingest_time_ms,
                event: Arc::new(e.event),
            },
            attempts: e.attempts,
            age_from_ms: e.age_from_ms,
            last_error: e.last_error,
            retry: true,
        }
    }

    fn entry(&self, next_attempt_ms: u64) -> RetryEntry {
        RetryEntry {
            offset: self.m.offset,
            ingest_time_ms: self.m.ingest_time_ms,
            event: Event::clone(&self.m.event),
            attempts: self.attempts,
            next_attempt_ms,
            age_from_ms: self.age_from_ms,
            last_error: self.last_error.clone(),
        }
    }
}

enum Source {
    Own(LogReader),
    Follow(mpsc::Receiver<Feed>),
}

/// A finished request: its events, the outcome, when it started (epoch ms) and how long it
/// took (µs).
type Sent = (Vec<Item>, Result<Delivered, SendError>, u64, u64);

/// What woke the worker up.
// Read carries a record by value once per wake-up; boxing it would allocate per record.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Stop,
    Cmd(Option<Cmd>),
    Sent(Option<Result<Sent, tokio::task::JoinError>>),
    Committed(Result<CommitResult, oneshot::error::RecvError>),
    Timer,
    Read(crate::Result<crate::Record>),
    Feed(Option<Feed>),
}

/// Changes not yet handed to the committer, kept as sets so that a later change of the same
/// offset replaces an earlier one (a retry put then removed within one commit is just removed).
#[derive(Default)]
struct Pending {
    put_retries: BTreeMap<u64, RetryEntry>,
    remove_retries: BTreeSet<u64>,
    dead_letters: BTreeMap<u64, DeadLetter>,
    /// Events settled since the last commit.
    done: u64,
    /// Events lost to retention since the last commit.
    lost: u64,
    /// Attempts for the linkage traces.
    trace: Vec<TraceUpdate>,
    /// Events delivered on their first attempt, for the linkage traces (grouped into few
    /// records at commit).
    first_ok: Vec<(u64, TraceAttempt)>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.put_retries.is_empty()
            && self.remove_retries.is_empty()
            && self.dead_letters.is_empty()
            && self.done == 0
            && self.lost == 0
            && self.trace.is_empty()
            && self.first_ok.is_empty()
    }
    fn put_retry(&mut self, e: RetryEntry) {
        self.remove_retries.remove(&e.offset);
        self.put_retries.insert(e.offset, e);
    }
    fn remove_retry(&mut self, offset: u64) {
        self.put_retries.remove(&offset);
        self.remove_retries.insert(offset);
    }
    fn take(&mut self, cursor: Option<u64>, target_created_ms: u64) -> DeliveryUpdate {
        let p = std::mem::take(self);
        DeliveryUpdate {
            target_created_ms: Some(target_created_ms),
            cursor,
            put_retries: p.put_retries.into_values().collect(),
            remove_retries: p.remove_retries.into_iter().collect(),
            put_dead_letters: p.dead_letters.into_values().collect(),
            add_done: p.done,
            add_lost_to_retention: p.lost,
            trace: p.trace,
            trace_batches: BatchTrace::group(p.first_ok),
        }
    }
}

struct Worker {
    cfg: WorkerConfig,
    policy: RetryPolicy,
    rng: StdRng,
    window: usize,
    max_in_flight: usize,
    max_events: usize,
    max_wait: Duration,
    /// The next offset to scan.
    scanned: u64,
    /// Matched offsets not yet completed (queued, in flight, or held by ordered mode).
    outstanding: BTreeSet<u64>,
    /// Matched offsets read at or after the durable cursor (the duplicate window).
    uncommitted: VecDeque<u64>,
    /// New events waiting to be sent, each with the time it was queued.
    queue: VecDeque<(Instant, Item)>,
    /// Scheduled retries by (due time, offset).
    retries: BTreeMap<(u64, u64), Item>,
    /// Ordered mode: the batch that failed, and when to send it again.
    blocked: Option<(Vec<Item>, u64)>,
    in_flight_batches: usize,
    /// Retries among the events in flight (for the `retrying` figure).
    in_flight_retries: usize,
    pending: Pending,
    /// The commit being written and the cursor it carries.
    commit_cursor: Option<u64>,
    committed: u64,
    stopping: bool,
    /// Offsets at or above the start cursor that already have a retry entry or a dead letter
    /// (the cursor was held below them when the binding last stopped): reading skips them, so
    /// they are not sent a second time as new events.
    skip: BTreeSet<u64>,
    /// Events lost to retention by readers this worker used before the current one.
    lost_before: u64,
    /// Events lost to retention since the worker started, and how many of them were handed to
    /// the committer.
    lost_session: u64,
    lost_sent: u64,
    /// The durable `lost_to_retention` counter when the worker started.
    lost_durable: u64,
    /// The `replayname` extension value (JSON text) of a replay's binding.
    replay_mark: Option<String>,
}

/// Runs the binding until `stop` turns true (Ok) or its state cannot be committed (Err: the
/// engine restarts it from the durable state).
pub async fn run(
    cfg: WorkerConfig,
    mut stop: watch::Receiver<bool>,
    mut cmds: mpsc::Receiver<Cmd>,
) -> Result<Exit, String> {
    let bus = cfg.bus.clone();
    let id = cfg.id.clone();
    let load_id = id.clone();
    let (cursor, retries, dead_letters, counters) = tokio::task::spawn_blocking({
        let bus = bus.clone();
        move || -> crate::Result<_> {
            let (cursor, retries) = bus.catalog().load_delivery_state(&load_id)?;
            let dead_letters = bus.catalog().dead_letter_offsets(&load_id)?;
            let counters = bus.catalog().binding_counters(&load_id)?;
            Ok((cursor, retries, dead_letters, counters))
        }
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    cfg.stats
        .dead_lettered
        .store(dead_letters.len() as u64, Ordering::Relaxed);

    let s = &cfg.settings;
    let end = bus.next_offset(&id.set).map_err(|e| e.to_string())?;
    let start = match cursor {
        // A cursor past the end of the log: only possible when the log lost acknowledged
        // events (a weaker persist policy and a power loss). Offsets from there on are new
        // events; start at the end so they are delivered.
        Some(c) if c > end => {
            tracing::warn!(binding = %id, cursor = c, end, "cursor beyond the end of the log; moved back to the end");
            let (bus2, id2) = (bus.clone(), id.clone());
            tokio::task::spawn_blocking(move || bus2.catalog().put_binding_cursor(&id2, end))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            end
        }
        Some(c) => c,
        None if cfg.window.is_some() => cfg.window.map_or(0, |(start, _)| start),
        None => match s.start {
            StartPosition::Latest => bus.offset_at_time(&id.set, cfg.created_ms),
            StartPosition::Earliest => bus.first_offset(&id.set),
            StartPosition::Time(t) => bus.offset_at_time(&id.set, t),
        }
        .map_err(|e| e.to_string())?,
    };
    // Settings from the catalog are already clamped (`delivery_settings`); these guard hand-made
    // ones, once, so the loop can trust them.
    let max_events = s.batch_max_events.max(1);
    let max_in_flight = s.max_in_flight.max(1);
    let mut w = Worker {
        policy: RetryPolicy::from_settings(s),
        rng: StdRng::from_entropy(),
        window: max_in_flight * max_events,
        max_in_flight,
        max_events,
        max_wait: Duration::from_millis(s.batch_max_wait_ms),
        scanned: start,
        outstanding: BTreeSet::new(),
        uncommitted: VecDeque::new(),
        queue: VecDeque::new(),
        retries: BTreeMap::new(),
        blocked: None,
        in_flight_batches: 0,
        in_flight_retries: 0,
        pending: Pending::default(),
        commit_cursor: None,
        committed: if cursor.is_some() { start } else { 0 },
        skip: BTreeSet::new(),
        lost_before: 0,
        lost_session: 0,
        lost_sent: 0,
        lost_durable: counters.lost_to_retention,
        replay_mark: id
            .replay
            .as_ref()
            .map(|name| serde_json::Value::from(name.as_str()).to_string()),
        stopping: false,
        cfg,
    };
    for e in retries {
        if e.offset >= start {
            w.skip.insert(e.offset);
        }
        let due = e.next_attempt_ms;
        let item = Item::from_entry(e);
        w.retries.insert((due, item.m.offset), item);
    }
    // Dead letters at or above the cursor (it was held below them by an earlier event):
    // reading must not send them again.
    w.skip
        .extend(dead_letters.into_iter().filter(|o| *o >= start));
    w.cfg.stats.cursor.store(start, Ordering::Relaxed);
    w.cfg
        .stats
        .lost_to_retention
        .store(w.lost_durable, Ordering::Relaxed);
    w.publish();
    w.cfg.stats.loaded.store(true, Ordering::Release);

    let mut source = Source::Own(bus.read_from(&id.set, start).map_err(|e| e.to_string())?);
    let mut in_flight: JoinSet<Sent> = JoinSet::new();
    let mut commit_rx: Option<oneshot::Receiver<CommitResult>> = None;
    let mut drain_deadline: Option<Instant> = None;

    loop {
        if !w.stopping {
            w.start_sends(&mut in_flight);
        }
        if commit_rx.is_none() {
            commit_rx = w.submit_commit();
        }
        w.publish();
        if w.stopping && in_flight.is_empty() && commit_rx.is_none() {
            return Ok(Exit::Stopped);
        }
        if in_flight.is_empty() && commit_rx.is_none() && w.window_finished() {
            return Ok(Exit::Finished);
        }
        let can_read = !w.stopping
            && !w.window_read()
            && w.uncommitted.len() < w.window
            && w.queue.len() < w.window;
        let timer = if w.stopping {
            drain_deadline
        } else {
            w.next_timer()
        };
        let wake = tokio::select! {
            biased;
            _ = stop.changed(), if !w.stopping => Wake::Stop,
            c = cmds.recv(), if !w.stopping => Wake::Cmd(c),
            r = in_flight.join_next(), if !in_flight.is_empty() => Wake::Sent(r),
            r = async { commit_rx.as_mut().expect("guarded").await }, if commit_rx.is_some() => Wake::Committed(r),
            _ = async { tokio::time::sleep_until(timer.expect("guarded")).await }, if timer.is_some() => Wake::Timer,
            r = async {
                match &mut source {
                    Source::Own(reader) => Wake::Read(reader.next_wait().await),
                    Source::Follow(rx) => Wake::Feed(rx.recv().await),
                }
            }, if can_read => r,
        };
        match wake {
            Wake::Stop | Wake::Cmd(None) => {
                w.stopping = true;
                drain_deadline = Some(Instant::now() + w.cfg.drain_timeout);
            }
            Wake::Cmd(Some(Cmd::Redrive { offsets, reply })) => {
                let r = w.redrive(&mut commit_rx, offsets).await;
                let failed = r.as_ref().err().map(|e| e.to_string());
                let _ = reply.send(r);
                if let Some(e) = failed {
                    return Err(e);
                }
            }
            Wake::Sent(Some(Ok((batch, result, started_ms, latency_us)))) => {
                w.on_sent(batch, result, started_ms, latency_us)
            }
            Wake::Sent(Some(Err(join))) => {
                // A send task panicked or was aborted: its events stay outstanding, so the
                // cursor holds below them and a restart delivers them again.
                return Err(format!("a delivery task failed: {join}"));
            }
            Wake::Sent(None) => {}
            Wake::Committed(r) => {
                commit_rx = None;
                match r {
                    Ok(Ok(())) => w.on_committed(),
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err("the committer stopped".into()),
                }
            }
            Wake::Timer => {
                if w.stopping {
                    // Out of patience: abandon what is still in flight (it stays outstanding,
                    // so the cursor stays below it) and write the final state.
                    in_flight.abort_all();
                    while in_flight.join_next().await.is_some() {}
                    w.in_flight_batches = 0;
                    w.in_flight_retries = 0;
                    w.cfg.stats.in_flight.store(0, Ordering::Relaxed);
                    drain_deadline = None;
                }
            }
            Wake::Read(Ok(first)) => {
                let at_end = w.read_own(first, &mut source);
                if at_end && !w.stopping {
                    w.try_follow(&mut source).await;
                }
            }
            Wake::Read(Err(e)) => {
                w.set_error(format!("reading the log: {e}"));
                if matches!(e, crate::Error::Closed) {
                    w.stopping = true;
                    drain_deadline = Some(Instant::now() + w.cfg.drain_timeout);
                } else {
                    return Err(format!("reading the log: {e}"));
                }
            }
            Wake::Feed(Some(feed)) => {
                if !w.on_feed(feed) {
                    w.cfg.stats.following.store(false, Ordering::Relaxed);
                    source = w.own_reader(&source)?;
                }
            }
            Wake::Feed(None) => {
                // The dispatcher let go of us (we fell behind): read on our own from here.
                w.cfg.stats.following.store(false, Ordering::Relaxed);
                source = w.own_reader(&source)?;
            }
        }
    }
}

impl Worker {
    fn set_error(&self, e: String) {
        *self
            .cfg
            .stats
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    fn publish(&self) {
        let blocked = self.blocked.as_ref().map_or(0, |(b, _)| b.len());
        let retrying = self.retries.len() + self.in_flight_retries + blocked;
        self.cfg
            .stats
            .retrying
            .store(retrying as u64, Ordering::Relaxed);
    }

    /// A replay's binding has read its whole window.
    fn window_read(&self) -> bool {
        self.cfg.window.is_some_and(|(_, end)| self.scanned >= end)
    }

    /// A replay's binding has settled its whole window and committed its cursor at its end.
    fn window_finished(&self) -> bool {
        self.cfg.window.is_some_and(|(_, end)| {
            self.scanned >= end
                && self.committed >= end
                && self.outstanding.is_empty()
                && self.retries.is_empty()
                && self.queue.is_empty()
                && self.blocked.is_none()
                && self.pending.is_empty()
        })
    }

    fn accept(&mut self, mut m: Matched) {
        if !self.skip.is_empty() {
            // Passed offsets leave the set; a listed one is already being handled.
            let listed = self.skip.remove(&m.offset);
            while self.skip.first().is_some_and(|o| *o < m.offset) {
                self.skip.pop_first();
            }
            if listed {
                return;
            }
        }
        if let Some(mark) = &self.replay_mark {
            let mut e = Event::clone(&m.event);
            e.extensions.insert("replayname".to_string(), mark.clone());
            m.event = Arc::new(e);
        }
        self.outstanding.insert(m.offset);
        self.uncommitted.push_back(m.offset);
        self.queue.push_back((Instant::now(), Item::new(m)));
    }

    /// Handles `first` and whatever else is visible (a chunk, within the window). True when
    /// the reader reached the end of the log.
    fn read_own(&mut self, first: crate::Record, source: &mut Source) -> bool {
        let Source::Own(reader) = source else {
            return false;
        };
        let mut next = Some(first);
        let mut n = 0;
        let mut at_end = false;
        let end = self.cfg.window.map(|(_, end)| end);
        while let Some(r) = next.take() {
            if end.is_some_and(|end| r.offset >= end) {
                self.scanned = self.scanned.max(end.unwrap_or(0));
                break;
            }
            n += 1;
            self.scanned = r.offset + 1;
            if self.cfg.pattern.matches(&r.event.to_json()) {
                self.accept(Matched {
                    offset: r.offset,
                    ingest_time_ms: r.ingest_time_ms,
                    event: Arc::new(r.event),
                });
            }
            if n >= CHUNK || self.uncommitted.len() >= self.window {
                break;
            }
            match reader.next() {
                Ok(ReadOutcome::Record(r)) => next = Some(r),
                Ok(ReadOutcome::EndOfLog) => at_end = true,
                // Reported by the next `next_wait`.
                Err(_) => {}
            }
        }
        self.lost_session = self.lost_before + reader.skipped_by_retention();
        self.cfg
            .stats
            .lost_to_retention
            .store(self.lost_durable + self.lost_session, Ordering::Relaxed);
        at_end
    }

    /// A reader of our own from `scanned` (leaving the dispatcher, or replacing a reader).
    fn own_reader(&mut self, old: &Source) -> Result<Source, String> {
        if let Source::Own(r) = old {
            self.lost_before += r.skipped_by_retention();
        }
        let reader = self
            .cfg
            .bus
            .read_from(&self.cfg.id.set, self.scanned)
            .map_err(|e| e.to_string())?;
        Ok(Source::Own(reader))
    }

    /// At the end of the log: ask the set's dispatcher to carry us from here.
    async fn try_follow(&mut self, source: &mut Source) {
        let Some(d) = &self.cfg.dispatcher else {
            return;
        };
        let (tx, rx) = mpsc::channel(self.cfg.feed_capacity.max(1));
        let (ok_tx, ok_rx) = oneshot::channel();
        let msg = dispatcher::Msg::Join {
            rule: self.cfg.id.rule.clone(),
            from: self.scanned,
            feed: tx,
            accepted: ok_tx,
        };
        if d.send(msg).await.is_ok() && ok_rx.await == Ok(true) {
            if let Source::Own(r) = source {
                self.lost_before += r.skipped_by_retention();
            }
            *source = Source::Follow(rx);
            self.cfg.stats.following.store(true, Ordering::Relaxed);
        }
    }

    /// Takes a feed's events. False when the window filled up before the end of the feed:
    /// the worker must then leave the dispatcher and read on its own from `scanned`, which
    /// stays at the first event it did not take.
    fn on_feed(&mut self, feed: Feed) -> bool {
        for m in feed.matched.iter() {
            if m.offset < self.scanned {
                continue;
            }
            if self.uncommitted.len() >= self.window {
                self.scanned = m.offset;
                return false;
            }
            self.accept(m.clone());
            self.scanned = m.offset + 1;
        }
        self.scanned = self.scanned.max(feed.scanned_to);
        true
    }

    /// When the worker must wake up without other news: a batch's wait is over, a retry is
    /// due, or an ordered batch may be sent again.
    fn next_timer(&self) -> Option<Instant> {
        let mut t: Option<Instant> = None;
        let mut earliest = |i: Instant| t = Some(t.map_or(i, |t: Instant| t.min(i)));
        if self.free_slots() > 0 {
            if let Some((since, _)) = self.queue.front()
                && self.queue.len() < self.max_events
            {
                earliest(*since + self.max_wait);
            }
            if let Some(((due, _), _)) = self.retries.first_key_value() {
                earliest(self.cfg.clock.instant_at(*due));
            }
        }
        if let Some((_, due)) = &self.blocked
            && self.in_flight_batches == 0
        {
            earliest(self.cfg.clock.instant_at(*due));
        }
        t
    }

    fn free_slots(&self) -> usize {
        if self.cfg.settings.ordered {
            usize::from(self.in_flight_batches == 0 && self.blocked.is_none())
        } else {
            self.max_in_flight.saturating_sub(self.in_flight_batches)
        }
    }

    /// Starts every send the limits allow: due retries first, then full batches, then a
    /// partial batch whose wait is over.
    fn start_sends(&mut self, in_flight: &mut JoinSet<Sent>) {
        loop {
            let now_ms = self.cfg.clock.now_ms();
            if self.cfg.settings.ordered
                && self.in_flight_batches == 0
                && let Some((_, due)) = &self.blocked
                && *due <= now_ms
            {
                let (batch, _) = self.blocked.take().expect("checked");
                self.spawn(in_flight, batch);
                continue;
            }
            if self.free_slots() == 0 {
                return;
            }
            if let Some(((due, _), _)) = self.retries.first_key_value()
                && *due <= now_ms
            {
                let mut batch = Vec::new();
                while batch.len() < self.max_events
                    && let Some(entry) = self.retries.first_entry()
                    && entry.key().0 <= now_ms
                {
                    batch.push(entry.remove());
                }
                self.spawn(in_flight, batch);
                continue;
            }
            // A partial batch goes when its oldest event has waited max_wait.
            let wait_over = self
                .queue
                .front()
                .is_some_and(|(since, _)| Instant::now() >= *since + self.max_wait);
            if self.queue.len() >= self.max_events || wait_over {
                let n = self.queue.len().min(self.max_events);
                let batch: Vec<Item> = self.queue.drain(..n).map(|(_, i)| i).collect();
                self.spawn(in_flight, batch);
                continue;
            }
            return;
        }
    }

    fn spawn(&mut self, in_flight: &mut JoinSet<Sent>, batch: Vec<Item>) {
        let (batch, outgoing) = match self.cfg.transform.clone() {
            None => {
                let outgoing = batch
                    .iter()
                    .map(|i| Outgoing::plain(i.m.event.clone()))
                    .collect();
                (batch, outgoing)
            }
            Some(t) => self.transform_batch(&t, batch),
        };
        if batch.is_empty() {
            return;
        }
        let target = self.cfg.target.clone();
        self.begin(&batch);
        let stats = self.cfg.stats.clone();
        let started_ms = self.cfg.clock.now_ms();
        in_flight.spawn(async move {
            let started = std::time::Instant::now();
            let result = target.send(&outgoing).await;
            let took = started.elapsed();
            stats.latency.observe(took);
            let latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
            (batch, result, started_ms, latency_us)
        });
    }

    /// Counts `batch` as in flight ([`Worker::on_sent`] counts it out).
    fn begin(&mut self, batch: &[Item]) {
        self.in_flight_batches += 1;
        self.in_flight_retries += batch.iter().filter(|i| i.retry).count();
        self.cfg
            .stats
            .in_flight
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
    }

    /// Applies the rule's transformation to every event of `batch`, returning the events to
    /// send with their outputs. The others are settled here, each as its own attempt:
    /// an event the transformation's `EtlFilter` drops counts as delivered (the rule does
    /// not want it sent; there is nothing to retry), and one it cannot be applied to fails
    /// without retry (the same event fails the same way again) and goes to its dead-letter
    /// handling with the reason.
    fn transform_batch(&mut self, t: &Transform, batch: Vec<Item>) -> (Vec<Item>, Vec<Outgoing>) {
        let now_ms = self.cfg.clock.now_ms();
        let mut keep = Vec::with_capacity(batch.len());
        let mut outgoing = Vec::with_capacity(batch.len());
        for item in batch {
            let settled = match t.apply(&item.m.event.to_json(), now_ms) {
                Ok(Some(output)) => {
                    outgoing.push(Outgoing::transformed(item.m.event.clone(), output));
                    keep.push(item);
                    continue;
                }
                Ok(None) => Ok(Delivered::default()),
                Err(e) => Err(SendError::permanent(format!("transformation failed: {e}"))),
            };
            let one = vec![item];
            self.begin(&one);
            self.on_sent(one, settled, now_ms, 0);
        }
        (keep, outgoing)
    }

    /// Notes one attempt of `item` in its trace (when traces are on).
    fn trace(&mut self, item: &Item, attempt: &TraceAttempt, outcome: TraceOutcome, first: bool) {
        if self.cfg.trace {
            self.pending.trace.push(TraceUpdate {
                offset: item.m.offset,
                attempt: attempt.clone(),
                outcome,
                first,
            });
        }
    }

    fn on_sent(
        &mut self,
        batch: Vec<Item>,
        result: Result<Delivered, SendError>,
        started_ms: u64,
        latency_us: u64,
    ) {
        let attempt = TraceAttempt {
            time_ms: started_ms,
            ok: result.is_ok(),
            status: match &result {
                Ok(d) => d.status,
                Err(e) => e.status,
            },
            error: result.as_ref().err().map(|e| e.message.clone()),
            latency_us,
            batch: u32::try_from(batch.len()).unwrap_or(u32::MAX),
        };
        self.in_flight_batches -= 1;
        self.in_flight_retries -= batch.iter().filter(|i| i.retry).count();
        let st = self.cfg.stats.clone();
        st.in_flight
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        match result {
            Ok(_) => {
                st.delivered
                    .fetch_add(batch.len() as u64, Ordering::Relaxed);
                self.pending.done += batch.len() as u64;
                for item in batch {
                    if self.cfg.trace && item.attempts == 0 {
                        // The common case: grouped with the cycle's others at commit.
                        self.pending.first_ok.push((item.m.offset, attempt.clone()));
                    } else {
                        self.trace(&item, &attempt, TraceOutcome::Delivered, false);
                    }
                    self.complete(&item);
                }
            }
            Err(e) => {
                st.failed_attempts.fetch_add(1, Ordering::Relaxed);
                self.set_error(e.message.clone());
                let now = self.cfg.clock.now_ms();
                if self.cfg.settings.ordered && batch.iter().all(|i| !i.retry) {
                    self.on_ordered_failure(batch, &e, now, &attempt);
                    return;
                }
                for mut item in batch {
                    item.attempts += 1;
                    item.last_error = e.message.clone();
                    match self.policy.after_failure(
                        item.attempts,
                        &e,
                        item.age_from_ms,
                        now,
                        &mut self.rng,
                    ) {
                        Verdict::RetryAt(at) => {
                            let first = item.attempts == 1;
                            self.trace(&item, &attempt, TraceOutcome::Retrying, first);
                            self.pending.put_retry(item.entry(at));
                            if !item.retry {
                                self.outstanding.remove(&item.m.offset);
                                item.retry = true;
                            }
                            self.retries.insert((at, item.m.offset), item);
                        }
                        Verdict::Exhausted => {
                            let first = item.attempts == 1;
                            let outcome = self.give_up_outcome();
                            self.trace(&item, &attempt, outcome, first);
                            self.give_up(item, now);
                        }
                    }
                }
            }
        }
    }

    /// How [`Worker::give_up`] settles an event, for its trace.
    fn give_up_outcome(&self) -> TraceOutcome {
        match self.cfg.settings.dead_letter {
            DeadLetterMode::Dlq => TraceOutcome::DeadLettered,
            DeadLetterMode::Drop => TraceOutcome::Dropped,
            DeadLetterMode::Ignore => TraceOutcome::Ignored,
        }
    }

    /// Ordered mode: the batch holds the binding until it succeeds or is given up.
    fn on_ordered_failure(
        &mut self,
        mut batch: Vec<Item>,
        e: &SendError,
        now: u64,
        attempt: &TraceAttempt,
    ) {
        for item in &mut batch {
            item.attempts += 1;
            item.last_error = e.message.clone();
        }
        let attempts = batch.iter().map(|i| i.attempts).max().unwrap_or(1);
        let oldest = batch.iter().map(|i| i.age_from_ms).min().unwrap_or(now);
        let verdict = self
            .policy
            .after_failure(attempts, e, oldest, now, &mut self.rng);
        let outcome = match verdict {
            Verdict::RetryAt(_) => TraceOutcome::Retrying,
            Verdict::Exhausted => self.give_up_outcome(),
        };
        for item in &batch {
            self.trace(item, attempt, outcome, item.attempts == 1);
        }
        match verdict {
            Verdict::RetryAt(at) => self.blocked = Some((batch, at)),
            Verdict::Exhausted => {
                for item in batch {
                    self.give_up(item, now);
                }
            }
        }
    }

    /// The event is done with (delivered or given up): release it.
    fn complete(&mut self, item: &Item) {
        if item.retry {
            self.pending.remove_retry(item.m.offset);
        } else {
            self.outstanding.remove(&item.m.offset);
        }
    }

    /// Retries exhausted: apply the dead-letter mode.
    fn give_up(&mut self, item: Item, now: u64) {
        self.pending.done += 1;
        let st = &self.cfg.stats;
        match self.cfg.settings.dead_letter {
            DeadLetterMode::Dlq => {
                self.pending.dead_letters.insert(
                    item.m.offset,
                    DeadLetter {
                        offset: item.m.offset,
                        ingest_time_ms: item.m.ingest_time_ms,
                        event: Event::clone(&item.m.event),
                        attempts: item.attempts,
                        last_error: item.last_error.clone(),
                        dead_lettered_ms: now,
                    },
                );
                st.dead_lettered.fetch_add(1, Ordering::Relaxed);
            }
            DeadLetterMode::Drop => {
                st.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(binding = %self.cfg.id, offset = item.m.offset, id = %item.m.event.id,
                    attempts = item.attempts, error = %item.last_error,
                    "retries exhausted; event dropped (dead_letter.mode = drop)");
            }
            DeadLetterMode::Ignore => {
                st.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.complete(&item);
    }

    /// The cursor the worker may commit now: below every outstanding event and the scan.
    fn low_watermark(&self) -> u64 {
        self.outstanding
            .first()
            .copied()
            .unwrap_or(self.scanned)
            .min(self.scanned)
    }

    fn submit_commit(&mut self) -> Option<oneshot::Receiver<CommitResult>> {
        self.pending.lost += self.lost_session - self.lost_sent;
        self.lost_sent = self.lost_session;
        let c = self.low_watermark();
        let moves = c > self.committed;
        if !moves && self.pending.is_empty() {
            return None;
        }
        let update = self.pending.take(moves.then_some(c), self.cfg.created_ms);
        let (tx, rx) = oneshot::channel();
        let req = CommitRequest {
            id: self.cfg.id.clone(),
            update,
            done: tx,
        };
        if self.cfg.committer.send(req).is_err() {
            return None;
        }
        self.commit_cursor = Some(c.max(self.committed));
        Some(rx)
    }

    fn on_committed(&mut self) {
        if let Some(c) = self.commit_cursor.take() {
            self.committed = self.committed.max(c);
        }
        while self
            .uncommitted
            .front()
            .is_some_and(|o| *o < self.committed)
        {
            self.uncommitted.pop_front();
        }
        self.cfg
            .stats
            .cursor
            .store(self.committed, Ordering::Relaxed);
    }

    /// Makes everything decided so far durable (waits for the commit in flight, then commits
    /// the rest).
    async fn commit_all(
        &mut self,
        commit_rx: &mut Option<oneshot::Receiver<CommitResult>>,
    ) -> crate::Result<()> {
        for _ in 0..2 {
            if commit_rx.is_none() {
                *commit_rx = self.submit_commit();
            }
            if let Some(rx) = commit_rx.take() {
                match rx.await {
                    Ok(Ok(())) => self.on_committed(),
                    Ok(Err(e)) => return Err(crate::Error::Codec(e)),
                    Err(_) => return Err(crate::Error::Closed),
                }
            }
        }
        Ok(())
    }

    async fn redrive(
        &mut self,
        commit_rx: &mut Option<oneshot::Receiver<CommitResult>>,
        offsets: Option<Vec<u64>>,
    ) -> crate::Result<usize> {
        self.commit_all(commit_rx).await?;
        let bus = self.cfg.bus.clone();
        let id = self.cfg.id.clone();
        let now = self.cfg.clock.now_ms();
        let entries = tokio::task::spawn_blocking(move || {
            bus.catalog()
                .redrive_dead_letters(&id, offsets.as_deref(), now)
        })
        .await
        .map_err(|e| crate::Error::Codec(format!("redrive task failed: {e}")))??;
        let n = entries.len();
        for e in entries {
            let due = e.next_attempt_ms;
            let item = Item::from_entry(e);
            self.retries.insert((due, item.m.offset), item);
        }
        let st = &self.cfg.stats;
        let _ = st
            .dead_lettered
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(n as u64))
            });
        Ok(n)
    }
}
