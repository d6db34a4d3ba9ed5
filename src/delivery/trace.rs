//! The linkage trace of an event: which rules match it and, per target, every attempt kept
//! and where it stands; plus the sweep that removes traces older than the retention.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{Engine, Inner};
use crate::catalog::{BindingId, TraceAttempt, TraceOutcome, TraceRecord};
use crate::error::{Error, Result};
use crate::pattern::Pattern;

/// One target of a rule (or of a replay of it) in a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct TargetTrace {
    /// The target.
    pub target: String,
    /// The replay that delivered it, for a replay's attempts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
    /// `delivered`, `retrying`, `dead_lettered`, `dropped`, `ignored`; `pending` (matched,
    /// not attempted yet); `not_traced` (the binding is past it but kept no trace: tracing
    /// was off, or the trace expired).
    pub state: String,
    /// Attempts made in all.
    pub attempts: u32,
    /// The first attempts (at most 5).
    pub first_attempts: Vec<TraceAttempt>,
    /// The last attempts after the first five (at most 5).
    pub last_attempts: Vec<TraceAttempt>,
}

/// One rule of the set in a trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RuleTrace {
    /// The rule.
    pub rule: String,
    /// Whether the rule's pattern (as it is now) matches the event.
    pub matched: bool,
    /// Its targets (for a matching rule) and any target with attempts recorded.
    pub targets: Vec<TargetTrace>,
}

/// The linkage trace of one stored event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct EventTraceView {
    /// The event set.
    pub set: String,
    /// The event's id.
    pub id: String,
    /// Its source.
    pub source: String,
    /// Its offset in the set's log.
    pub offset: u64,
    /// When the log accepted it, epoch ms.
    pub ingest_time_ms: u64,
    /// Every rule of the set (and rules since deleted that have attempts recorded).
    pub rules: Vec<RuleTrace>,
}

fn outcome_name(o: TraceOutcome) -> &'static str {
    match o {
        TraceOutcome::Delivered => "delivered",
        TraceOutcome::Retrying => "retrying",
        TraceOutcome::DeadLettered => "dead_lettered",
        TraceOutcome::Dropped => "dropped",
        TraceOutcome::Ignored => "ignored",
    }
}

fn target_trace(id: &BindingId, r: TraceRecord) -> TargetTrace {
    TargetTrace {
        target: id.target.clone(),
        replay: id.replay.clone(),
        state: r.outcome.map_or("pending", outcome_name).to_string(),
        attempts: r.attempts,
        first_attempts: r.first,
        last_attempts: r.last,
    }
}

impl Engine {
    /// The linkage trace of the stored event `record` of `set`.
    pub async fn trace(&self, set: &str, record: crate::Record) -> Result<EventTraceView> {
        let bus = self.inner.bus.clone();
        let set = set.to_string();
        tokio::task::spawn_blocking(move || {
            let cat = bus.catalog();
            let offset = record.offset;
            let json = record.event.to_json();
            let mut recorded: HashMap<String, Vec<(BindingId, TraceRecord)>> = HashMap::new();
            for (id, r) in cat.event_trace(&set, offset)? {
                recorded.entry(id.rule.clone()).or_default().push((id, r));
            }
            let mut rules = Vec::new();
            for rule in cat.list_rules(&set)? {
                let matched = Pattern::parse_str(&rule.pattern)
                    .map_err(|e| Error::Codec(format!("stored pattern: {}", e.message)))?
                    .matches(&json);
                let mut done = recorded.remove(&rule.name).unwrap_or_default();
                let mut targets = Vec::new();
                if matched {
                    for t in cat.list_targets(&set, &rule.name)? {
                        let id = BindingId::new(&set, &rule.name, &t.name);
                        if let Some(i) = done.iter().position(|(d, _)| *d == id) {
                            let (id, r) = done.remove(i);
                            targets.push(target_trace(&id, r));
                            continue;
                        }
                        let reached = cat.binding_cursor(&id)?.is_some_and(|c| c > offset);
                        targets.push(TargetTrace {
                            target: t.name,
                            replay: None,
                            state: if reached { "not_traced" } else { "pending" }.into(),
                            attempts: 0,
                            first_attempts: Vec::new(),
                            last_attempts: Vec::new(),
                        });
                    }
                }
                // Replays, and targets since deleted or no longer matching, that have attempts.
                targets.extend(done.iter().map(|(id, r)| target_trace(id, r.clone())));
                rules.push(RuleTrace {
                    rule: rule.name,
                    matched,
                    targets,
                });
            }
            let mut gone: Vec<_> = recorded.into_iter().collect();
            gone.sort_by(|a, b| a.0.cmp(&b.0));
            for (rule, done) in gone {
                rules.push(RuleTrace {
                    rule,
                    matched: false,
                    targets: done
                        .iter()
                        .map(|(id, r)| target_trace(id, r.clone()))
                        .collect(),
                });
            }
            Ok(EventTraceView {
                set,
                id: record.event.id.clone(),
                source: record.event.source.clone(),
                offset,
                ingest_time_ms: record.ingest_time_ms,
                rules,
            })
        })
        .await
        .map_err(|e| Error::Codec(format!("trace task failed: {e}")))?
    }

    /// Removes traces of events ingested before the trace retention, in every set, now;
    /// returns how many. (The engine also does so every minute.)
    pub async fn expire_traces(&self) -> Result<u64> {
        self.inner.expire_traces().await
    }
}

impl Inner {
    pub(super) async fn expire_traces(&self) -> Result<u64> {
        let bus = self.bus.clone();
        let cutoff_ms = self.clock.now_ms().saturating_sub(
            u64::try_from(self.opts.trace_retention.as_millis()).unwrap_or(u64::MAX),
        );
        tokio::task::spawn_blocking(move || {
            let mut n = 0;
            for set in bus.catalog().list_sets()? {
                let before = bus.offset_at_time(&set.name, cutoff_ms)?;
                n += bus.catalog().expire_traces(&set.name, before)?;
            }
            Ok(n)
        })
        .await
        .map_err(|e| Error::Codec(format!("trace expiry failed: {e}")))?
    }
}

/// Runs the trace expiry every `interval` until `stop`.
pub(super) async fn sweep_loop(
    inner: Arc<Inner>,
    interval: std::time::Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(interval) => {}
        }
        match inner.expire_traces().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired linkage traces"),
            Err(e) => tracing::warn!(error = %e, "expiring linkage traces failed"),
        }
    }
}
