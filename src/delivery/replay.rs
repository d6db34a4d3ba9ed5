//! Replays: re-delivering a window of stored events to chosen rules' targets.
//!
//! A replay is stored in the catalog ([`ReplayMeta`]) with its window resolved to offsets and
//! its bindings (the targets of its rules) fixed. One runner task per running replay:
//! 1. counts the events to deliver (each binding's rule against the window), once, and stores
//!    the total;
//! 2. runs one ordinary delivery worker per binding, bounded to the window
//!    ([`worker::WorkerConfig::window`]): the same batching, retries with backoff and dead
//!    letters as live delivery, on the binding's own cursor, so live cursors never move and
//!    live traffic goes on meanwhile;
//! 3. marks the replay completed when every worker has settled its window, failed when a
//!    binding's rule or target disappears, cancelled when a user cancels it.
//!
//! A restart resumes every replay still running: each worker starts from its durable cursor
//! and retries, as a live binding does, so at most the in-flight window is delivered twice.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::worker::{self, Exit};
use super::{BindingStats, Inner};
use crate::catalog::{BindingId, ReplayBinding, ReplayMeta, ReplayState, delivery_settings};
use crate::error::{Error, RejectKind, Result};
use crate::pattern::Pattern;
use crate::store::ReadOutcome;
use crate::transform::Transform;

/// Error code of a bad replay window or rule list.
pub const INVALID_REPLAY: &str = "InvalidParameterValue.Replay";

/// What a user asks for.
#[derive(Debug, Clone)]
pub struct ReplayRequest {
    /// Unique in the set.
    pub name: String,
    /// Window start, epoch ms of ingest time (inclusive).
    pub start_ms: u64,
    /// Window end, epoch ms (exclusive); a time after now means now.
    pub end_ms: u64,
    /// Rules to replay to; `None` = every enabled rule of the set.
    pub rules: Option<Vec<String>>,
}

/// Where one binding of a replay is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReplayBindingStatus {
    /// The rule.
    pub rule: String,
    /// The target.
    pub target: String,
    /// The binding's cursor in the window (`null` before it first committed).
    pub cursor: Option<u64>,
    /// Events settled: delivered, dead-lettered, dropped or ignored.
    pub replayed: u64,
    /// Events waiting for a retry.
    pub retrying: u64,
    /// Events whose retries ran out (kept with the replay).
    pub dead_lettered: u64,
    /// Events of the window retention removed before the replay read them.
    pub lost_to_retention: u64,
}

/// A replay's status (INTERFACE.md: `name`, `state`, `replayed`, `total`, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReplayStatus {
    /// Its name.
    pub name: String,
    /// The event set.
    pub set: String,
    /// `running`, `completed`, `cancelled` or `failed`.
    pub state: ReplayState,
    /// Events settled so far, over all bindings.
    pub replayed: u64,
    /// Events to deliver over all bindings (`null` while being counted).
    pub total: Option<u64>,
    /// Window start (epoch ms, inclusive).
    pub start: u64,
    /// Window end (epoch ms, exclusive).
    pub end: u64,
    /// The window as offsets, `[start_offset, end_offset)`.
    pub start_offset: u64,
    /// See `start_offset`.
    pub end_offset: u64,
    /// The rules replayed to.
    pub rules: Vec<String>,
    /// Per rule × target.
    pub bindings: Vec<ReplayBindingStatus>,
    /// When it was created (epoch ms).
    pub started: u64,
    /// When it completed, was cancelled or failed (epoch ms).
    pub finished: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
}

/// A running replay's runner.
pub(super) struct Handle {
    /// Turned true to cancel (the runner stops its workers and stores `cancelled`).
    cancel: watch::Sender<bool>,
    /// Turned true to stop for a shutdown (the replay stays `running` and resumes).
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Handle {
    pub(super) async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn invalid(path: &str, message: impl Into<String>) -> Error {
    Error::rejected(RejectKind::Invalid, INVALID_REPLAY, Some(path), message)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Codec(format!("replay task failed: {e}")))?
}

impl Inner {
    /// Validates and stores a new replay, then starts it.
    pub(super) async fn create_replay(
        self: &Arc<Self>,
        set: &str,
        req: ReplayRequest,
    ) -> Result<ReplayStatus> {
        if req.start_ms >= req.end_ms {
            return Err(invalid("$.end", "`end` must be after `start`"));
        }
        let now = self.clock.now_ms();
        if req.start_ms >= now {
            return Err(invalid("$.start", "`start` must be in the past"));
        }
        let bus = self.bus.clone();
        let set_name = set.to_string();
        let meta = blocking(move || {
            let cat = bus.catalog();
            cat.get_set(&set_name)?;
            let rules = match req.rules {
                Some(rules) => {
                    if rules.is_empty() {
                        return Err(invalid(
                            "$.rules",
                            "give at least one rule, or leave `rules` out for all enabled rules",
                        ));
                    }
                    let mut seen = Vec::new();
                    for (i, r) in rules.iter().enumerate() {
                        cat.get_rule(&set_name, r).map_err(|e| match e {
                            Error::Rejected {
                                kind,
                                code,
                                message,
                                ..
                            } => Error::Rejected {
                                kind,
                                code,
                                path: Some(format!("$.rules[{i}]")),
                                message,
                            },
                            other => other,
                        })?;
                        if !seen.contains(r) {
                            seen.push(r.clone());
                        }
                    }
                    seen
                }
                None => cat
                    .list_rules(&set_name)?
                    .into_iter()
                    .filter(|r| r.enabled)
                    .map(|r| r.name)
                    .collect(),
            };
            let mut bindings = Vec::new();
            for r in &rules {
                for t in cat.list_targets(&set_name, r)? {
                    bindings.push(ReplayBinding {
                        rule: r.clone(),
                        target: t.name,
                        target_created_ms: t.created_ms,
                    });
                }
            }
            let end_ms = req.end_ms.min(now);
            let meta = ReplayMeta {
                start_offset: bus.offset_at_time(&set_name, req.start_ms)?,
                end_offset: bus.offset_at_time(&set_name, end_ms)?,
                set: set_name,
                name: req.name,
                start_ms: req.start_ms,
                end_ms,
                rules,
                bindings,
                state: ReplayState::Running,
                total: None,
                error: None,
                created_ms: now,
                finished_ms: None,
            };
            cat.create_replay(&meta)?;
            Ok(meta)
        })
        .await?;
        self.spawn_replay(meta.clone()).await;
        self.replay_status(meta).await
    }

    /// Starts the runner of a stored, running replay (on creation, and on engine start).
    pub(super) async fn spawn_replay(self: &Arc<Self>, meta: ReplayMeta) {
        let (cancel, cancel_rx) = watch::channel(false);
        let (stop, stop_rx) = watch::channel(false);
        let key = (meta.set.clone(), meta.name.clone());
        let task = tokio::spawn(run(self.clone(), meta, cancel_rx, stop_rx));
        let old = self
            .replays
            .lock()
            .await
            .insert(key, Handle { cancel, stop, task });
        if let Some(old) = old {
            old.shutdown().await;
        }
    }

    /// The status of a replay from its record and its bindings' durable state.
    pub(super) async fn replay_status(&self, meta: ReplayMeta) -> Result<ReplayStatus> {
        let bus = self.bus.clone();
        blocking(move || {
            let cat = bus.catalog();
            let mut bindings = Vec::with_capacity(meta.bindings.len());
            for (b, id) in meta.bindings.iter().zip(meta.binding_ids()) {
                // A target deleted since has no state left to read.
                let (cursor, counters, (retrying, dead)) = match cat.binding_cursor(&id) {
                    Ok(c) => (
                        c,
                        cat.binding_counters(&id)?,
                        cat.count_delivery_entries(&id)?,
                    ),
                    Err(Error::Rejected {
                        kind: RejectKind::NotFound,
                        ..
                    }) => (None, Default::default(), (0, 0)),
                    Err(e) => return Err(e),
                };
                bindings.push(ReplayBindingStatus {
                    rule: b.rule.clone(),
                    target: b.target.clone(),
                    cursor,
                    replayed: counters.done,
                    retrying,
                    dead_lettered: dead,
                    lost_to_retention: counters.lost_to_retention,
                });
            }
            Ok(ReplayStatus {
                replayed: bindings.iter().map(|b| b.replayed).sum(),
                name: meta.name,
                set: meta.set,
                state: meta.state,
                total: meta.total,
                start: meta.start_ms,
                end: meta.end_ms,
                start_offset: meta.start_offset,
                end_offset: meta.end_offset,
                rules: meta.rules,
                bindings,
                started: meta.created_ms,
                finished: meta.finished_ms,
                error: meta.error,
            })
        })
        .await
    }

    /// Cancels a running replay (it stays listed as `cancelled`), or deletes a finished one
    /// with its state. Returns its last status.
    pub(super) async fn cancel_replay(&self, set: &str, name: &str) -> Result<ReplayStatus> {
        let (bus, s, n) = (self.bus.clone(), set.to_string(), name.to_string());
        let meta = blocking(move || bus.catalog().get_replay(&s, &n)).await?;
        let handle = self
            .replays
            .lock()
            .await
            .remove(&(set.to_string(), name.to_string()));
        if let Some(h) = handle {
            let _ = h.cancel.send(true);
            let _ = h.task.await;
        }
        if meta.state == ReplayState::Running {
            let (bus, s, n) = (self.bus.clone(), set.to_string(), name.to_string());
            let now = self.clock.now_ms();
            let meta = blocking(move || {
                bus.catalog().update_replay(&s, &n, |m| {
                    m.state = ReplayState::Cancelled;
                    m.finished_ms = Some(now);
                })
            })
            .await?;
            return self.replay_status(meta).await;
        }
        let status = self.replay_status(meta).await?;
        let (bus, s, n) = (self.bus.clone(), set.to_string(), name.to_string());
        blocking(move || bus.catalog().delete_replay(&s, &n)).await?;
        Ok(status)
    }
}

/// Counts, per binding, the window's events its rule matches; `None` when cancelled or
/// stopped meanwhile.
fn count_window(
    inner: &Inner,
    meta: &ReplayMeta,
    patterns: &HashMap<String, RuleCode>,
    quit: &AtomicBool,
) -> Result<Option<u64>> {
    let mut per_rule: HashMap<&str, u64> = HashMap::new();
    let mut reader = inner.bus.read_from(&meta.set, meta.start_offset)?;
    let mut n = 0u64;
    loop {
        let rec = match reader.next()? {
            ReadOutcome::Record(r) if r.offset < meta.end_offset => r,
            _ => break,
        };
        n += 1;
        if n.is_multiple_of(4096) && quit.load(Ordering::Relaxed) {
            return Ok(None);
        }
        let json = rec.event.to_json();
        for (rule, code) in patterns {
            if code.pattern.matches(&json) {
                *per_rule.entry(rule.as_str()).or_default() += 1;
            }
        }
    }
    Ok(Some(
        meta.bindings
            .iter()
            .map(|b| per_rule.get(b.rule.as_str()).copied().unwrap_or(0))
            .sum(),
    ))
}

/// How a runner ended.
enum End {
    Completed,
    Failed(String),
    /// Cancelled or stopped: the caller (or the next start) decides the state.
    Interrupted,
}

async fn run(
    inner: Arc<Inner>,
    meta: ReplayMeta,
    mut cancel: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let (set, name) = (meta.set.clone(), meta.name.clone());
    let end = match drive(&inner, meta, &mut cancel, &mut stop).await {
        Ok(end) => end,
        Err(e) => End::Failed(e.to_string()),
    };
    let now = inner.clock.now_ms();
    let update = match end {
        End::Interrupted => return,
        End::Completed => (ReplayState::Completed, None),
        End::Failed(e) => {
            tracing::warn!(set = %set, replay = %name, error = %e, "replay failed");
            (ReplayState::Failed, Some(e))
        }
    };
    let bus = inner.bus.clone();
    let stored = blocking(move || {
        bus.catalog().update_replay(&set, &name, |m| {
            m.state = update.0;
            m.error = update.1;
            m.finished_ms = Some(now);
        })
    })
    .await;
    if let Err(e) = stored {
        tracing::warn!(error = %e, "could not store a replay's final state");
    }
}

async fn drive(
    inner: &Arc<Inner>,
    mut meta: ReplayMeta,
    cancel: &mut watch::Receiver<bool>,
    stop: &mut watch::Receiver<bool>,
) -> Result<End> {
    let interrupted =
        |c: &watch::Receiver<bool>, s: &watch::Receiver<bool>| *c.borrow() || *s.borrow();
    // The rules' patterns, as they are now.
    let (bus, m) = (inner.bus.clone(), meta.clone());
    let found = blocking(move || {
        if let Some(why) = missing_binding(&bus, &m)? {
            return Ok(Err(why));
        }
        let mut patterns = HashMap::new();
        for r in &m.rules {
            let rule = bus.catalog().get_rule(&m.set, r)?;
            let p = Pattern::parse_str(&rule.pattern)
                .map_err(|e| Error::Codec(format!("stored pattern: {}", e.message)))?;
            let transform = super::compile_transform(rule.transform.as_deref())?;
            patterns.insert(
                r.clone(),
                RuleCode {
                    pattern: Arc::new(p),
                    transform,
                },
            );
        }
        Ok(Ok(patterns))
    })
    .await;
    let patterns = match found {
        Ok(Ok(p)) => p,
        Ok(Err(why)) => return Ok(End::Failed(why)),
        Err(Error::Rejected {
            kind: RejectKind::NotFound,
            message,
            ..
        }) => return Ok(End::Failed(message)),
        Err(e) => return Err(e),
    };

    if meta.total.is_none() {
        let quit = Arc::new(AtomicBool::new(false));
        let counting = {
            let (inner2, m, p, q) = (inner.clone(), meta.clone(), patterns.clone(), quit.clone());
            tokio::task::spawn_blocking(move || count_window(&inner2, &m, &p, &q))
        };
        let watch_quit = async {
            tokio::select! {
                _ = cancel.wait_for(|c| *c) => {}
                _ = stop.wait_for(|s| *s) => {}
            }
            quit.store(true, Ordering::Relaxed);
        };
        let counted = tokio::select! {
            r = counting => r.map_err(|e| Error::Codec(format!("replay count failed: {e}")))??,
            _ = watch_quit => None,
        };
        let Some(total) = counted else {
            return Ok(End::Interrupted);
        };
        let (bus, s, n) = (inner.bus.clone(), meta.set.clone(), meta.name.clone());
        meta = blocking(move || {
            bus.catalog()
                .update_replay(&s, &n, |m| m.total = Some(total))
        })
        .await?;
    }

    let mut changes = inner.bus.catalog().subscribe();
    let mut workers: JoinSet<(usize, std::result::Result<Exit, String>)> = JoinSet::new();
    let mut stops: Vec<Option<watch::Sender<bool>>> = vec![None; meta.bindings.len()];
    let mut finished = vec![false; meta.bindings.len()];
    for (i, stop) in stops.iter_mut().enumerate() {
        *stop = Some(start_worker(inner, &meta, i, &patterns, &mut workers).await?);
    }
    let mut failure: Option<String> = None;
    while !finished.iter().all(|f| *f) {
        if interrupted(cancel, stop) || failure.is_some() {
            break;
        }
        tokio::select! {
            _ = cancel.changed() => {}
            _ = stop.changed() => {}
            r = changes.changed() => {
                if r.is_err() {
                    break;
                }
                let (bus, m) = (inner.bus.clone(), meta.clone());
                if let Some(why) = blocking(move || missing_binding(&bus, &m)).await? {
                    failure = Some(why);
                }
            }
            done = workers.join_next(), if !workers.is_empty() => {
                let Some(done) = done else { continue };
                let (i, result) = done.map_err(|e| Error::Codec(format!("replay worker panicked: {e}")))?;
                match result {
                    Ok(Exit::Finished) => finished[i] = true,
                    Ok(Exit::Stopped) => {}
                    Err(e) => {
                        let (bus, m) = (inner.bus.clone(), meta.clone());
                        if let Some(why) = blocking(move || missing_binding(&bus, &m)).await? {
                            failure = Some(why);
                            continue;
                        }
                        tracing::warn!(replay = %meta.name, binding = %meta.binding_ids()[i], error = %e,
                            "replay worker failed; it will restart");
                        tokio::select! {
                            _ = tokio::time::sleep(inner.opts.restart_delay) => {}
                            _ = cancel.changed() => continue,
                            _ = stop.changed() => continue,
                        }
                        stops[i] = Some(start_worker(inner, &meta, i, &patterns, &mut workers).await?);
                    }
                }
            }
        }
    }
    // Stop what still runs (each commits its final state) and wait for it.
    for s in stops.iter().flatten() {
        let _ = s.send(true);
    }
    while let Some(r) = workers.join_next().await {
        if let Ok((i, Ok(Exit::Finished))) = r {
            finished[i] = true;
        }
    }
    if let Some(why) = failure {
        return Ok(End::Failed(why));
    }
    if finished.iter().all(|f| *f) {
        return Ok(End::Completed);
    }
    Ok(End::Interrupted)
}

/// Why a replay cannot go on, if one of its rules or targets is gone or was re-created.
fn missing_binding(bus: &Arc<crate::bus::EventBus>, meta: &ReplayMeta) -> Result<Option<String>> {
    let cat = bus.catalog();
    let gone = |e: Error| match e {
        Error::Rejected {
            kind: RejectKind::NotFound,
            message,
            ..
        } => Ok(Some(message)),
        e => Err(e),
    };
    for r in &meta.rules {
        if let Err(e) = cat.get_rule(&meta.set, r) {
            return gone(e);
        }
    }
    for b in &meta.bindings {
        match cat.get_target(&meta.set, &b.rule, &b.target) {
            Ok(t) if t.created_ms == b.target_created_ms => {}
            Ok(_) => {
                return Ok(Some(format!(
                    "target {:?} of rule {:?} was deleted and created again",
                    b.target, b.rule
                )));
            }
            Err(e) => return gone(e),
        }
    }
    Ok(None)
}

/// A rule's pattern and transformation, compiled when a replay's runner starts.
#[derive(Clone)]
struct RuleCode {
    pattern: Arc<Pattern>,
    transform: Option<Arc<Transform>>,
}

/// Starts the worker of binding `i`; returns its stop switch.
async fn start_worker(
    inner: &Arc<Inner>,
    meta: &ReplayMeta,
    i: usize,
    patterns: &HashMap<String, RuleCode>,
    workers: &mut JoinSet<(usize, std::result::Result<Exit, String>)>,
) -> Result<watch::Sender<bool>> {
    let b = &meta.bindings[i];
    let id = BindingId::for_replay(&meta.set, &meta.name, &b.rule, &b.target);
    let (bus, s, r, t) = (
        inner.bus.clone(),
        meta.set.clone(),
        b.rule.clone(),
        b.target.clone(),
    );
    let target_meta = blocking(move || bus.catalog().get_target(&s, &r, &t)).await?;
    let body: serde_json::Value = serde_json::from_str(&target_meta.config)
        .map_err(|e| Error::Codec(format!("stored target body: {e}")))?;
    let target = match &inner.opts.target_factory {
        Some(f) => f(&target_meta)?,
        None => crate::targets::build(
            &body,
            &inner
                .target_env
                .for_binding(&BindingId::new(&meta.set, &b.rule, &b.target)),
        )?,
    };
    let mut settings = delivery_settings(&body);
    if !target.supports_batches() {
        settings.batch_max_events = 1;
    }
    let RuleCode { pattern, transform } = patterns
        .get(&b.rule)
        .cloned()
        .ok_or_else(|| Error::Codec(format!("no pattern for rule {:?}", b.rule)))?;
    let (stop, stop_rx) = watch::channel(false);
    // Replays take no commands (no redrive of their dead letters); the sender lives as long as
    // the worker, which would take its closing for a stop.
    let (cmds, cmds_rx) = mpsc::channel(1);
    let cfg = worker::WorkerConfig {
        id,
        bus: inner.bus.clone(),
        target,
        settings,
        pattern,
        transform,
        created_ms: b.target_created_ms,
        dispatcher: None,
        committer: inner.committer.clone(),
        clock: inner.clock,
        stats: Arc::new(BindingStats::default()),
        drain_timeout: inner.opts.drain_timeout,
        feed_capacity: inner.opts.feed_capacity,
        trace: inner.opts.trace,
        window: Some((meta.start_offset, meta.end_offset)),
    };
    workers.spawn(async move {
        let _cmds = cmds;
        (i, worker::run(cfg, stop_rx, cmds_rx).await)
    });
    Ok(stop)
}
