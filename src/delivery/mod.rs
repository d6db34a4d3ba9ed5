//! The delivery engine: every event a rule matches reaches each of the rule's targets at least
//! once, through slow or failing targets, crashes and restarts.
//!
//! Parts (docs/DELIVERY.md has the state machine and the crash analysis):
//! - [`Engine`] watches the catalog and runs one worker per enabled rule × target binding
//!   (`worker.rs`), one shared tail reader per event set (`dispatcher.rs`) and one group
//!   committer that writes every binding's cursor, retries and dead letters (`committer.rs`).
//! - `retry.rs` is the retry policy (attempts, age, jittered exponential backoff).
//! - Targets live in [`crate::targets`].
//!
//! ```no_run
//! # async fn demo() -> eventbus::Result<()> {
//! use std::sync::Arc;
//! use eventbus::bus::{BusConfig, EventBus};
//! use eventbus::delivery::{Engine, EngineOptions};
//!
//! let bus = Arc::new(EventBus::open(BusConfig::default())?);
//! let engine = Engine::start(bus.clone(), EngineOptions::default());
//! // ... create rules and targets through bus.catalog(); the engine picks them up.
//! engine.shutdown().await;
//! bus.shutdown()?;
//! # Ok(()) }
//! ```

mod committer;
mod dispatcher;
mod replay;
pub mod retry;
mod sink;
mod trace;
mod worker;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::bus::EventBus;
use crate::catalog::{BindingId, DeadLetter, TargetMeta, delivery_settings};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::pattern::Pattern;
use crate::targets::{Target, TargetEnv};
use crate::transform::Transform;

pub use replay::{INVALID_REPLAY, ReplayBindingStatus, ReplayRequest, ReplayStatus};
pub use retry::RetryPolicy;
pub use trace::{EventTraceView, RuleTrace, TargetTrace};

/// Builds a target from its catalog entry, in place of [`crate::targets::build`] (embedders
/// can deliver to in-process handlers; tests use it for instrumented targets).
pub type TargetFactory = Arc<dyn Fn(&TargetMeta) -> Result<Arc<dyn Target>> + Send + Sync>;

/// How the engine runs.
#[derive(Clone)]
pub struct EngineOptions {
    /// Caught-up bindings of a set share one tail reader. Default = true. (False makes every
    /// binding read and match the log alone; the bench compares the two.)
    pub share_reads: bool,
    /// Feeds a follower may have queued before the dispatcher drops it. Default = 64.
    pub feed_capacity: usize,
    /// Matched records the dispatcher keeps to let a joiner catch up. Default = 4096.
    pub ring_capacity: usize,
    /// How long a stopping worker waits for its requests in flight. Default = 5 s.
    pub drain_timeout: Duration,
    /// Wait before a worker that failed (its state could not be committed) is restarted.
    /// Default = 1 s.
    pub restart_delay: Duration,
    /// Builds targets; `None` = [`crate::targets::build`] on the stored body. Default = None.
    pub target_factory: Option<TargetFactory>,
    /// What targets built from stored bodies get from the server (e.g. the programs `command`
    /// targets may run). Its `sink` is filled in by the engine (puts into this bus) when
    /// left empty. Default = nothing configured.
    pub target_env: TargetEnv,
    /// Record every delivery attempt in the events' linkage traces. Default = true.
    pub trace: bool,
    /// How long traces are kept (by the events' ingest time). Default = 3 days.
    pub trace_retention: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            share_reads: true,
            feed_capacity: 64,
            ring_capacity: 4096,
            drain_timeout: Duration::from_secs(5),
            restart_delay: Duration::from_secs(1),
            target_factory: None,
            target_env: TargetEnv::default(),
            trace: true,
            trace_retention: DEFAULT_TRACE_RETENTION,
        }
    }
}

/// Default of [`EngineOptions::trace_retention`]: 3 days.
pub const DEFAULT_TRACE_RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// How often expired traces are removed.
const TRACE_SWEEP_INTERVAL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for EngineOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineOptions")
            .field("share_reads", &self.share_reads)
            .field("feed_capacity", &self.feed_capacity)
            .field("ring_capacity", &self.ring_capacity)
            .field("drain_timeout", &self.drain_timeout)
            .field("restart_delay", &self.restart_delay)
            .field("target_factory", &self.target_factory.is_some())
            .field("target_env", &self.target_env)
            .field("trace", &self.trace)
            .field("trace_retention", &self.trace_retention)
            .finish()
    }
}

/// Compiles a rule's stored transformation (JSON text), if it has one.
fn compile_transform(text: Option<&str>) -> Result<Option<Arc<Transform>>> {
    let Some(text) = text else {
        return Ok(None);
    };
    let spec: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| Error::Codec(format!("stored transformation: {e}")))?;
    Ok(Some(Arc::new(Transform::compile(&spec)?)))
}

/// A matched event on its way to a target.
#[derive(Debug, Clone)]
pub(crate) struct Matched {
    pub offset: u64,
    pub ingest_time_ms: u64,
    pub event: Arc<Event>,
}

/// Wall-clock milliseconds derived from tokio's clock, so retry times and batch waits follow
/// `tokio::time::pause()` in tests, and durable retry times are ordinary epoch milliseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    wall0_ms: u64,
    t0: Instant,
}

impl Clock {
    fn new() -> Clock {
        Clock {
            wall0_ms: crate::config::now_ms(),
            t0: Instant::now(),
        }
    }
    pub fn now_ms(&self) -> u64 {
        self.wall0_ms + u64::try_from(self.t0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
    /// The tokio instant of epoch time `ms` (now, if it is past).
    pub fn instant_at(&self, ms: u64) -> Instant {
        let now = self.now_ms();
        Instant::now() + Duration::from_millis(ms.saturating_sub(now))
    }
}

/// Live counters of one binding, shared by its worker and the status readers.
#[derive(Debug, Default)]
pub(crate) struct BindingStats {
    pub cursor: AtomicU64,
    pub in_flight: AtomicU64,
    pub delivered: AtomicU64,
    pub retrying: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub dropped: AtomicU64,
    pub failed_attempts: AtomicU64,
    pub lost_to_retention: AtomicU64,
    pub following: AtomicBool,
    /// Set once the worker has loaded its durable state; until then the catalog's figures
    /// are the truth.
    pub loaded: AtomicBool,
    pub last_error: Mutex<Option<String>>,
    /// Duration of each delivery request (one batch), success or not.
    pub latency: crate::metrics::LatencyHistogram,
}

impl BindingStats {
    /// The status from these counters alone; `next` is the end of the set's log.
    fn live_status(&self, state: BindingState, next: u64) -> BindingStatus {
        let cursor = self.cursor.load(Ordering::Relaxed);
        BindingStatus {
            state,
            cursor,
            lag: next.saturating_sub(cursor),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
            retrying: self.retrying.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            failed_attempts: self.failed_attempts.load(Ordering::Relaxed),
            lost_to_retention: self.lost_to_retention.load(Ordering::Relaxed),
            following: self.following.load(Ordering::Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Whether a binding is delivering. Serialises as [`BindingState::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    /// Its worker runs.
    Running,
    /// Its rule is disabled: nothing is sent, the cursor is kept.
    Paused,
    /// It cannot run (its target cannot be built, or its worker failed and waits to restart);
    /// `last_error` says why.
    Failed,
    /// Created since the engine last applied the catalog (it starts within moments).
    Starting,
}

impl BindingState {
    /// `running`, `paused`, `failed` or `starting`: the name in JSON and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            BindingState::Running => "running",
            BindingState::Paused => "paused",
            BindingState::Failed => "failed",
            BindingState::Starting => "starting",
        }
    }
}

impl Serialize for BindingState {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Delivery status of one binding (INTERFACE.md `"delivery"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BindingStatus {
    /// Running, paused or failed.
    pub state: BindingState,
    /// The durable cursor: every matching event below it is done with.
    pub cursor: u64,
    /// Events in the log at or after the cursor.
    pub lag: u64,
    /// Events in requests now in flight.
    pub in_flight: u64,
    /// Events delivered (or counted as delivered by `dead_letter.mode = ignore`) since this
    /// process started.
    pub delivered: u64,
    /// Events waiting for a retry.
    pub retrying: u64,
    /// Events in the dead-letter queue.
    pub dead_lettered: u64,
    /// Events given up with `dead_letter.mode = drop`, since this process started.
    pub dropped: u64,
    /// Failed attempts (requests) since this process started.
    pub failed_attempts: u64,
    /// Events the binding never saw because retention removed them first.
    pub lost_to_retention: u64,
    /// True while the binding is fed by its set's shared tail reader.
    pub following: bool,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// One binding's live figures, as [`Engine::metrics`] reports them.
#[derive(Debug, Clone)]
pub struct BindingMetrics {
    /// The binding.
    pub id: BindingId,
    /// Its status from the worker's counters (the cursor as last committed or loaded).
    pub status: BindingStatus,
    /// Duration of delivery requests since this process started.
    pub latency: crate::metrics::HistogramSnapshot,
}

/// Where [`Engine::seek`] moves a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeekTo {
    /// This offset (the end of the log at most).
    Offset(u64),
    /// The first event ingested at or after this time (epoch ms).
    Time(u64),
}

struct Running {
    fingerprint: String,
    stop: watch::Sender<bool>,
    cmds: mpsc::Sender<worker::Cmd>,
    task: JoinHandle<std::result::Result<worker::Exit, String>>,
}

impl Running {
    /// Waits for the worker (told to stop) to end; its error, a panic included, if any.
    async fn finished(self) -> Option<String> {
        match self.task.await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(e),
            Err(join) => Some(format!("the worker panicked: {join}")),
        }
    }
}

struct SetDispatch {
    tx: mpsc::Sender<dispatcher::Msg>,
    rules_fingerprint: String,
}

#[derive(Default)]
struct State {
    running: HashMap<BindingId, Running>,
    /// Bindings that cannot run, with the fingerprint they failed with and when to try again
    /// (`None`: not before their settings change, e.g. a target that cannot be built).
    failed: HashMap<BindingId, (String, Option<Instant>)>,
    paused: HashMap<BindingId, ()>,
    stats: HashMap<BindingId, Arc<BindingStats>>,
    dispatchers: HashMap<String, SetDispatch>,
}

impl State {
    fn state_of(&self, id: &BindingId) -> BindingState {
        if self.running.contains_key(id) {
            BindingState::Running
        } else if self.paused.contains_key(id) {
            BindingState::Paused
        } else if self.failed.contains_key(id) {
            BindingState::Failed
        } else {
            BindingState::Starting
        }
    }
}

struct Inner {
    bus: Arc<EventBus>,
    opts: EngineOptions,
    /// `opts.target_env` with its sink filled in.
    target_env: TargetEnv,
    clock: Clock,
    committer: mpsc::UnboundedSender<committer::CommitRequest>,
    state: tokio::sync::Mutex<State>,
    /// Serialises whole reconciliations (catalog snapshot + apply): a reconciliation applying
    /// an older snapshot after a newer one would stop bindings the newer one just started.
    reconciling: tokio::sync::Mutex<()>,
    /// Runners of the running replays, by (set, name).
    replays: tokio::sync::Mutex<HashMap<(String, String), replay::Handle>>,
}

/// The running delivery engine. Start it after opening the bus; stop it with
/// [`Engine::shutdown`] before the bus.
pub struct Engine {
    inner: Arc<Inner>,
    stop: watch::Sender<bool>,
    reconciler: Mutex<Option<JoinHandle<()>>>,
    committer: Mutex<Option<JoinHandle<()>>>,
    /// The trace expiry loop and the task resuming replays: both hold the engine's state, so
    /// shutdown waits for them.
    helpers: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("opts", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

/// One binding the catalog wants running.
struct Wanted {
    id: BindingId,
    meta: TargetMeta,
    pattern_text: String,
    /// The rule's transformation (JSON text), if it has one.
    transform_text: Option<String>,
    enabled: bool,
}

impl Wanted {
    fn fingerprint(&self) -> String {
        format!(
            "{}\u{1}{}\u{1}{}\u{1}{}\u{1}{}",
            self.pattern_text,
            self.transform_text.as_deref().unwrap_or(""),
            self.enabled,
            self.meta.config,
            self.meta.created_ms
        )
    }
}

impl Engine {
    /// Starts the engine on a runtime (must be called inside one): it reads the catalog,
    /// starts every enabled binding, and follows catalog changes from then on.
    pub fn start(bus: Arc<EventBus>, opts: EngineOptions) -> Engine {
        let (ctx, crx) = mpsc::unbounded_channel();
        let committer = tokio::spawn(committer::run(bus.clone(), crx));
        let mut target_env = opts.target_env.clone();
        if target_env.sink.is_none() {
            target_env.sink = Some(Arc::new(sink::BusSink::new(&bus)));
        }
        if target_env.file_root.is_none() {
            target_env.file_root = Some(bus.data_dir().join(crate::config::DEFAULT_FILE_ROOT_DIR));
        }
        let inner = Arc::new(Inner {
            bus,
            opts,
            target_env,
            clock: Clock::new(),
            committer: ctx,
            state: tokio::sync::Mutex::new(State::default()),
            reconciling: tokio::sync::Mutex::new(()),
            replays: tokio::sync::Mutex::new(HashMap::new()),
        });
        let (stop, stop_rx) = watch::channel(false);
        let sweeper = tokio::spawn(trace::sweep_loop(
            inner.clone(),
            TRACE_SWEEP_INTERVAL,
            stop_rx.clone(),
        ));
        let reconciler = tokio::spawn(reconcile_loop(inner.clone(), stop_rx));
        // Replays still running when the process stopped go on where they were.
        let resume = inner.clone();
        let resumer = tokio::spawn(async move {
            let bus = resume.bus.clone();
            match tokio::task::spawn_blocking(move || bus.catalog().running_replays()).await {
                Ok(Ok(replays)) => {
                    for meta in replays {
                        tracing::info!(set = %meta.set, replay = %meta.name, "resuming replay");
                        resume.spawn_replay(meta).await;
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "could not list the replays to resume"),
                Err(e) => tracing::error!(error = %e, "could not list the replays to resume"),
            }
        });
        Engine {
            inner,
            stop,
            reconciler: Mutex::new(Some(reconciler)),
            committer: Mutex::new(Some(committer)),
            helpers: Mutex::new(vec![sweeper, resumer]),
        }
    }

    /// Applies the catalog now (the engine also does so by itself after every change); returns
    /// once the bindings match it.
    pub async fn sync(&self) -> Result<()> {
        self.inner.reconcile().await
    }

    /// What targets built by this engine get from the server (configured commands, the file
    /// root, the hop limit, the sink), so the API can check a target body against it
    /// ([`TargetEnv::check`]) before storing it.
    pub fn target_env(&self) -> &TargetEnv {
        &self.inner.target_env
    }

    /// The delivery status of a binding.
    pub async fn status(&self, id: &BindingId) -> Result<BindingStatus> {
        let (state, stats) = {
            let st = self.inner.state.lock().await;
            (
                st.state_of(id),
                st.stats.get(id).cloned().unwrap_or_default(),
            )
        };
        self.status_from(id, state, &stats).await
    }

    /// A binding's status: the live figures of a running worker that has loaded its state;
    /// otherwise (paused, failed, starting) the catalog's durable ones, which only a scan of
    /// its retries and dead letters gives, so only then. `ResourceNotFound.*` for an unknown
    /// binding.
    async fn status_from(
        &self,
        id: &BindingId,
        state: BindingState,
        stats: &BindingStats,
    ) -> Result<BindingStatus> {
        let bus = &self.inner.bus;
        let running = state == BindingState::Running && stats.loaded.load(Ordering::Acquire);
        let catalog_id = id.clone();
        let bus2 = bus.clone();
        let durable = tokio::task::spawn_blocking(move || -> Result<_> {
            let cat = bus2.catalog();
            // Also the existence check: ResourceNotFound.* for an unknown binding.
            let cursor = cat.binding_cursor(&catalog_id)?;
            if running {
                return Ok(None);
            }
            Ok(Some((
                cursor,
                cat.count_delivery_entries(&catalog_id)?,
                cat.binding_counters(&catalog_id)?,
            )))
        })
        .await
        .map_err(|e| Error::Codec(format!("status task failed: {e}")))??;
        let next = bus.next_offset(&id.set)?;
        let mut status = stats.live_status(state, next);
        status.following &= running;
        if let Some((cursor, (retrying, dead), counters)) = durable {
            status.cursor = cursor.unwrap_or(0);
            status.lag = next.saturating_sub(status.cursor);
            status.retrying = retrying;
            status.dead_lettered = dead;
            // A binding that is not reading (paused, failed) and whose cursor retention has
            // passed will skip those events when it runs again: report them already.
            let behind = match cursor {
                Some(c) => bus.first_offset(&id.set)?.saturating_sub(c),
                None => 0,
            };
            status.lost_to_retention = counters.lost_to_retention + behind;
        }
        Ok(status)
    }

    /// The dead letters of a binding, oldest offset first, after `after`, at most `limit`.
    pub async fn dead_letters(
        &self,
        id: &BindingId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let bus = self.inner.bus.clone();
        let id = id.clone();
        tokio::task::spawn_blocking(move || bus.catalog().list_dead_letters(&id, after, limit))
            .await
            .map_err(|e| Error::Codec(format!("dead-letter listing failed: {e}")))?
    }

    /// Sends dead letters (all, or the given offsets) through delivery again, with a fresh
    /// attempt count; returns how many were redriven.
    pub async fn redrive(&self, id: &BindingId, offsets: Option<Vec<u64>>) -> Result<usize> {
        // Held until the end: a worker starting meanwhile would load its state before the
        // catalog redrive below and never see the redriven entries.
        let st = self.inner.state.lock().await;
        let cmds = st.running.get(id).map(|r| r.cmds.clone());
        if let Some(cmds) = cmds {
            let (tx, rx) = oneshot::channel();
            let sent = cmds
                .send(worker::Cmd::Redrive {
                    offsets: offsets.clone(),
                    reply: tx,
                })
                .await;
            if sent.is_ok()
                && let Ok(answer) = rx.await
            {
                return answer;
            }
        }
        // Not running (paused, failed, stopping): move them in the catalog; the worker loads
        // them when it starts.
        let bus = self.inner.bus.clone();
        let id = id.clone();
        let now = self.inner.clock.now_ms();
        tokio::task::spawn_blocking(move || {
            bus.catalog()
                .redrive_dead_letters(&id, offsets.as_deref(), now)
                .map(|v| v.len())
        })
        .await
        .map_err(|e| Error::Codec(format!("redrive failed: {e}")))?
    }

    /// Moves a binding's cursor (a seek): its worker is stopped (its final commit lands
    /// first), the cursor is written durably, and the worker restarts from there. Retries and
    /// dead letters are kept. Returns the new cursor.
    pub async fn seek(&self, id: &BindingId, to: SeekTo) -> Result<u64> {
        let bus = &self.inner.bus;
        let offset = match to {
            // Between the first retained offset and the end of the log: a cursor below the
            // first offset would count the removed events as lost again.
            SeekTo::Offset(o) => o
                .min(bus.next_offset(&id.set)?)
                .max(bus.first_offset(&id.set)?),
            SeekTo::Time(t) => bus.offset_at_time(&id.set, t)?,
        };
        let mut st = self.inner.state.lock().await;
        if let Some(r) = st.running.remove(id) {
            let _ = r.stop.send(true);
            if let Some(e) = r.finished().await {
                tracing::warn!(binding = %id, error = %e, "worker stopped with an error before a seek");
            }
        }
        let (bus2, id2) = (bus.clone(), id.clone());
        tokio::task::spawn_blocking(move || {
            bus2.catalog()
                .put_cursor(&id2.set, &id2.rule, &id2.target, offset)
        })
        .await
        .map_err(|e| Error::Codec(format!("seek failed: {e}")))??;
        if let Some(s) = st.stats.get(id) {
            s.cursor.store(offset, Ordering::Relaxed);
        }
        drop(st);
        self.inner.reconcile().await?;
        Ok(offset)
    }

    /// Creates a replay of `set` and starts it; its first status.
    pub async fn create_replay(&self, set: &str, req: ReplayRequest) -> Result<ReplayStatus> {
        self.inner.create_replay(set, req).await
    }

    /// The status of every replay of `set`, by name.
    pub async fn list_replays(&self, set: &str) -> Result<Vec<ReplayStatus>> {
        let (bus, s) = (self.inner.bus.clone(), set.to_string());
        let metas = tokio::task::spawn_blocking(move || bus.catalog().list_replays(&s))
            .await
            .map_err(|e| Error::Codec(format!("replay listing failed: {e}")))??;
        let mut out = Vec::with_capacity(metas.len());
        for m in metas {
            out.push(self.inner.replay_status(m).await?);
        }
        Ok(out)
    }

    /// The status of one replay.
    pub async fn replay_status(&self, set: &str, name: &str) -> Result<ReplayStatus> {
        let (bus, s, n) = (self.inner.bus.clone(), set.to_string(), name.to_string());
        let meta = tokio::task::spawn_blocking(move || bus.catalog().get_replay(&s, &n))
            .await
            .map_err(|e| Error::Codec(format!("replay read failed: {e}")))??;
        self.inner.replay_status(meta).await
    }

    /// Cancels a running replay (kept as `cancelled`) or deletes a finished one; its last
    /// status.
    pub async fn cancel_replay(&self, set: &str, name: &str) -> Result<ReplayStatus> {
        self.inner.cancel_replay(set, name).await
    }

    /// Figures of every binding the engine knows, for `GET /metrics`: a running binding's from
    /// its worker's counters, without touching the catalog (scrapes must stay cheap); a paused,
    /// failed or starting one's from the catalog, like [`Engine::status`].
    pub async fn metrics(&self) -> Vec<BindingMetrics> {
        let entries: Vec<(BindingId, BindingState, Arc<BindingStats>)> = {
            let st = self.inner.state.lock().await;
            st.stats
                .iter()
                .map(|(id, stats)| (id.clone(), st.state_of(id), stats.clone()))
                .collect()
        };
        let mut out = Vec::with_capacity(entries.len());
        for (id, state, s) in entries {
            let Ok(next) = self.inner.bus.next_offset(&id.set) else {
                continue; // the set was deleted since
            };
            let status = if state == BindingState::Running && s.loaded.load(Ordering::Acquire) {
                s.live_status(state, next)
            } else {
                // Paused or failed: its worker's counters are stale or absent; the catalog
                // has the cursor, retries, dead letters and losses to retention.
                match self.status_from(&id, state, &s).await {
                    Ok(status) => status,
                    Err(_) => continue, // deleted since
                }
            };
            out.push(BindingMetrics {
                status,
                latency: s.latency.snapshot(),
                id,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Stops every worker (each finishes or abandons its requests in flight within the drain
    /// timeout and commits its final cursor), then the committer.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let reconciler = self
            .reconciler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = reconciler {
            let _ = r.await;
        }
        let helpers = std::mem::take(&mut *self.helpers.lock().unwrap_or_else(|p| p.into_inner()));
        for h in helpers {
            let _ = h.await;
        }
        // Replays stop where they are (still `running`) and resume on the next start.
        let replays: Vec<replay::Handle> = self
            .inner
            .replays
            .lock()
            .await
            .drain()
            .map(|(_, h)| h)
            .collect();
        for h in replays {
            h.shutdown().await;
        }
        let mut st = self.inner.state.lock().await;
        let running: Vec<(BindingId, Running)> = st.running.drain().collect();
        for (_, r) in &running {
            let _ = r.stop.send(true);
        }
        for (id, r) in running {
            if let Some(e) = r.finished().await {
                tracing::warn!(binding = %id, error = %e, "worker stopped with an error");
            }
        }
        st.dispatchers.clear();
        drop(st);
        let committer = self
            .committer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        // Every worker has awaited its final commit, so the committer has nothing left to
        // write; it would otherwise live as long as `inner`.
        if let Some(c) = committer {
            c.abort();
            let _ = c.await;
        }
    }
}

async fn reconcile_loop(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut changes = inner.bus.catalog().subscribe();
    loop {
        if let Err(e) = inner.reconcile().await {
            tracing::warn!(error = %e, "applying catalog changes to delivery failed; retrying");
        }
        // Between catalog changes, wake only to restart failed workers or replace ones that
        // ended by themselves; the whole catalog is listed only when one of those is waiting.
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                r = changes.changed() => if r.is_err() { return } else { break },
                _ = tokio::time::sleep(inner.opts.restart_delay) => {
                    if inner.needs_restart().await {
                        break;
                    }
                }
            }
        }
    }
}

impl Inner {
    /// A worker ended by itself, or a failed binding's restart time has come.
    async fn needs_restart(&self) -> bool {
        let st = self.state.lock().await;
        let now = Instant::now();
        st.running.values().any(|r| r.task.is_finished())
            || st
                .failed
                .values()
                .any(|(_, at)| at.is_some_and(|at| at <= now))
    }

    async fn wanted(&self) -> Result<Vec<Wanted>> {
        let bus = self.bus.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Wanted>> {
            let cat = bus.catalog();
            let mut out = Vec::new();
            for set in cat.list_sets()? {
                for rule in cat.list_rules(&set.name)? {
                    for t in cat.list_targets(&set.name, &rule.name)? {
                        out.push(Wanted {
                            id: BindingId::new(&set.name, &rule.name, &t.name),
                            pattern_text: rule.pattern.clone(),
                            transform_text: rule.transform.clone(),
                            enabled: rule.enabled,
                            meta: t,
                        });
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| Error::Codec(format!("catalog listing failed: {e}")))?
    }

    /// Makes the running workers and dispatchers match the catalog.
    async fn reconcile(&self) -> Result<()> {
        let _one_at_a_time = self.reconciling.lock().await;
        let wanted = self.wanted().await?;
        let mut st = self.state.lock().await;
        let by_id: HashMap<&BindingId, &Wanted> = wanted.iter().map(|w| (&w.id, w)).collect();

        // 1. Stop workers that are gone, changed, paused, or ended by themselves.
        let stale: Vec<BindingId> = st
            .running
            .iter()
            .filter(|(id, r)| {
                r.task.is_finished()
                    || by_id
                        .get(id)
                        .is_none_or(|w| !w.enabled || w.fingerprint() != r.fingerprint)
            })
            .map(|(id, _)| id.clone())
            .collect();
        // Tell them all first, so their drains overlap.
        let stopping: Vec<(BindingId, Running)> = stale
            .into_iter()
            .filter_map(|id| st.running.remove(&id).map(|r| (id, r)))
            .collect();
        for (_, r) in &stopping {
            let _ = r.stop.send(true);
        }
        for (id, r) in stopping {
            let fingerprint = r.fingerprint.clone();
            let Some(error) = r.finished().await else {
                continue;
            };
            tracing::warn!(binding = %id, error = %error, "delivery worker failed; it will restart");
            if let Some(s) = st.stats.get(&id) {
                *s.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error);
            }
            let retry_at = Instant::now() + self.opts.restart_delay;
            st.failed.insert(id, (fingerprint, Some(retry_at)));
        }
        st.stats.retain(|id, _| by_id.contains_key(id));
        st.failed.retain(|id, _| by_id.contains_key(id));
        st.paused.clear();

        // Each pattern this pass needs is compiled once, for the dispatcher and the workers.
        let mut patterns: HashMap<(String, String), Arc<Pattern>> = HashMap::new();
        let mut compile = |w: &Wanted| -> Result<Arc<Pattern>> {
            let key = (w.id.set.clone(), w.id.rule.clone());
            if let Some(p) = patterns.get(&key) {
                return Ok(p.clone());
            }
            let p = Arc::new(
                Pattern::parse_str(&w.pattern_text)
                    .map_err(|e| Error::Codec(format!("stored pattern: {}", e.message)))?,
            );
            patterns.insert(key, p.clone());
            Ok(p)
        };

        // 2. The shared tail readers: one per set with active rules.
        let mut active: HashMap<String, Vec<(String, &Wanted)>> = HashMap::new();
        for w in &wanted {
            if w.enabled {
                let rules = active.entry(w.id.set.clone()).or_default();
                if !rules.iter().any(|(r, _)| *r == w.id.rule) {
                    rules.push((w.id.rule.clone(), w));
                }
            }
        }
        st.dispatchers.retain(|set, _| active.contains_key(set));
        if self.opts.share_reads {
            for (set, rules) in &mut active {
                rules.sort_by(|a, b| a.0.cmp(&b.0));
                let fp: String = rules
                    .iter()
                    .map(|(r, w)| format!("{r}\u{1}{}\u{2}", w.pattern_text))
                    .collect();
                let d = st.dispatchers.entry(set.clone()).or_insert_with(|| {
                    let (tx, rx) = mpsc::channel(256);
                    tokio::spawn(dispatcher::run(
                        self.bus.clone(),
                        set.clone(),
                        self.opts.ring_capacity,
                        rx,
                    ));
                    SetDispatch {
                        tx,
                        rules_fingerprint: String::new(),
                    }
                });
                if d.rules_fingerprint != fp {
                    let compiled: Vec<(String, Arc<Pattern>)> = rules
                        .iter()
                        .filter_map(|(r, w)| compile(w).ok().map(|p| (r.clone(), p)))
                        .collect();
                    if d.tx.send(dispatcher::Msg::Rules(compiled)).await.is_ok() {
                        d.rules_fingerprint = fp;
                    }
                }
            }
        }

        // 3. Start what should run.
        for w in &wanted {
            let fingerprint = w.fingerprint();
            let stats = st.stats.entry(w.id.clone()).or_default().clone();
            if !w.enabled {
                st.paused.insert(w.id.clone(), ());
                continue;
            }
            if st.running.contains_key(&w.id) {
                continue;
            }
            if let Some((fp, at)) = st.failed.get(&w.id)
                && *fp == fingerprint
                && at.is_none_or(|at| Instant::now() < at)
            {
                continue;
            }
            let started = compile(w).and_then(|pattern| {
                self.start_worker(
                    w,
                    fingerprint.clone(),
                    pattern,
                    stats.clone(),
                    st.dispatchers.get(&w.id.set),
                )
            });
            match started {
                Ok(r) => {
                    st.failed.remove(&w.id);
                    st.running.insert(w.id.clone(), r);
                }
                Err(e) => {
                    *stats.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some(e.to_string());
                    // A target that cannot be built is retried only when its settings change.
                    st.failed.insert(w.id.clone(), (fingerprint, None));
                }
            }
        }
        Ok(())
    }

    fn start_worker(
        &self,
        w: &Wanted,
        fingerprint: String,
        pattern: Arc<Pattern>,
        stats: Arc<BindingStats>,
        dispatch: Option<&SetDispatch>,
    ) -> Result<Running> {
        let body: serde_json::Value = serde_json::from_str(&w.meta.config)
            .map_err(|e| Error::Codec(format!("stored target body: {e}")))?;
        let target = match &self.opts.target_factory {
            Some(f) => f(&w.meta)?,
            None => crate::targets::build(&body, &self.target_env.for_binding(&w.id))?,
        };
        let transform = compile_transform(w.transform_text.as_deref())?;
        let mut settings = delivery_settings(&body);
        if !target.supports_batches() {
            settings.batch_max_events = 1;
        }
        stats.loaded.store(false, Ordering::Release);
        let (stop, stop_rx) = watch::channel(false);
        let (cmds, cmds_rx) = mpsc::channel(8);
        let cfg = worker::WorkerConfig {
            id: w.id.clone(),
            bus: self.bus.clone(),
            target,
            settings,
            pattern,
            transform,
            created_ms: w.meta.created_ms,
            dispatcher: dispatch.map(|d| d.tx.clone()),
            committer: self.committer.clone(),
            clock: self.clock,
            stats,
            drain_timeout: self.opts.drain_timeout,
            feed_capacity: self.opts.feed_capacity,
            trace: self.opts.trace,
            window: None,
        };
        let task = tokio::spawn(worker::run(cfg, stop_rx, cmds_rx));
        Ok(Running {
            fingerprint,
            stop,
            cmds,
            task,
        })
    }
}
