//! Linkage traces: per event and binding, the delivery attempts and the outcome.
//!
//! Tree `traces`: `set 0x00 offset(8, big-endian) 0x00 rule 0x00 target [0x00 replay]` →
//! `codec(TraceRecord)`. Keyed by offset first, so all the bindings of one event are one
//! prefix scan, and everything older than an offset is one key range (the expiry sweep).
//!
//! Records are written by the delivery committer in the same transaction as the binding's
//! cursor ([`DeliveryUpdate::trace`]), so a trace never claims more than the durable state.
//! Each keeps the first [`TRACE_KEEP`] and the last [`TRACE_KEEP`] attempts and the total count.

use serde::{Deserialize, Serialize};

use super::{BindingId, Catalog, keys};
use crate::error::Result;

/// Attempts kept at each end of a trace.
pub const TRACE_KEEP: usize = 5;

/// One delivery attempt of one event to one target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceAttempt {
    /// When the request started, epoch ms.
    pub time_ms: u64,
    /// True when the target accepted it.
    pub ok: bool,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Why it failed.
    pub error: Option<String>,
    /// How long the request took, microseconds.
    pub latency_us: u64,
    /// Events in the request (batches carry several).
    pub batch: u32,
}

/// How a binding finished with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TraceOutcome {
    /// The target accepted it.
    Delivered,
    /// A retry is scheduled.
    Retrying,
    /// Retries ran out; it is a dead letter.
    DeadLettered,
    /// Retries ran out; dropped (`dead_letter.mode = drop`).
    Dropped,
    /// Retries ran out; counted as delivered (`dead_letter.mode = ignore`).
    Ignored,
}

/// One attempt (and the outcome it led to) for one event, as a worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceUpdate {
    /// The event's offset.
    pub offset: u64,
    /// The attempt.
    pub attempt: TraceAttempt,
    /// Where the event stands after it.
    pub outcome: TraceOutcome,
    /// True when this is the event's first attempt by this binding: the record is new and is
    /// written without reading the old one.
    pub first: bool,
}

/// The stored trace of one event at one binding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Attempts made in all.
    pub attempts: u32,
    /// The first attempts (at most [`TRACE_KEEP`]).
    pub first: Vec<TraceAttempt>,
    /// The last attempts after the first ones (at most [`TRACE_KEEP`]).
    pub last: Vec<TraceAttempt>,
    /// Where it stands.
    pub outcome: Option<TraceOutcome>,
}

impl TraceRecord {
    /// Adds an attempt and its outcome.
    pub fn push(&mut self, u: &TraceUpdate) {
        self.attempts += 1;
        if self.first.len() < TRACE_KEEP {
            self.first.push(u.attempt.clone());
        } else {
            if self.last.len() == TRACE_KEEP {
                self.last.remove(0);
            }
            self.last.push(u.attempt.clone());
        }
        self.outcome = Some(u.outcome);
    }
}

/// The traces of one event: per binding, its record.
pub type EventTrace = Vec<(BindingId, TraceRecord)>;

/// Key of a binding's trace of the event at `offset`.
pub(super) fn trace_key(id: &BindingId, offset: u64) -> Vec<u8> {
    let mut k = trace_prefix(&id.set, offset);
    k.extend_from_slice(id.rule.as_bytes());
    k.push(keys::SEP);
    k.extend_from_slice(id.target.as_bytes());
    if let Some(r) = &id.replay {
        k.push(keys::SEP);
        k.extend_from_slice(r.as_bytes());
    }
    k
}

/// Prefix of the traces of the event at `offset` of `set`.
fn trace_prefix(set: &str, offset: u64) -> Vec<u8> {
    let mut k = set_prefix(set);
    k.extend_from_slice(&offset.to_be_bytes());
    k.push(keys::SEP);
    k
}

/// Prefix of every trace of `set`.
fn set_prefix(set: &str) -> Vec<u8> {
    let mut k = set.as_bytes().to_vec();
    k.push(keys::SEP);
    k
}

/// The binding a trace key under `prefix` names.
fn binding_of(set: &str, prefix_len: usize, key: &[u8]) -> Option<BindingId> {
    let rest = std::str::from_utf8(key.get(prefix_len..)?).ok()?;
    let mut parts = rest.split('\0');
    let rule = parts.next()?;
    let target = parts.next()?;
    let replay = parts.next();
    Some(match replay {
        None => BindingId::new(set, rule, target),
        Some(r) => BindingId::for_replay(set, r, rule, target),
    })
}

impl Catalog {
    /// Every binding's trace of the event at `offset` of `set`.
    pub fn event_trace(&self, set: &str, offset: u64) -> Result<EventTrace> {
        let prefix = trace_prefix(set, offset);
        let mut out = Vec::new();
        for kv in self.traces.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(|e| self.err("scan traces", e))?;
            let Some(id) = binding_of(set, prefix.len(), &k) else {
                continue;
            };
            out.push((id, super::decode(&v)?));
        }
        Ok(out)
    }

    /// Removes the traces of `set`'s events below offset `before`; returns how many.
    pub fn expire_traces(&self, set: &str, before: u64) -> Result<u64> {
        let start = set_prefix(set);
        let end = trace_prefix(set, before);
        let mut n = 0;
        let mut batch = sled::Batch::default();
        for k in self.traces.range(start..end).keys() {
            batch.remove(k.map_err(|e| self.err("scan traces", e))?);
            n += 1;
        }
        if n > 0 {
            self.traces
                .apply_batch(batch)
                .map_err(|e| self.err("expire traces", e))?;
        }
        Ok(n)
    }

    /// Removes every trace of `set` (the set is deleted).
    pub(super) fn remove_set_traces(&self, set: &str) -> Result<()> {
        self.expire_traces(set, u64::MAX).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(t: u64, ok: bool) -> TraceUpdate {
        TraceUpdate {
            offset: 3,
            attempt: TraceAttempt {
                time_ms: t,
                ok,
                status: Some(if ok { 200 } else { 503 }),
                error: (!ok).then(|| "HTTP 503".to_string()),
                latency_us: 10,
                batch: 1,
            },
            outcome: if ok {
                TraceOutcome::Delivered
            } else {
                TraceOutcome::Retrying
            },
            first: t == 0,
        }
    }

    #[test]
    fn a_record_keeps_the_first_five_and_the_last_five_attempts() {
        let mut r = TraceRecord::default();
        for t in 0..12 {
            r.push(&attempt(t, t == 11));
        }
        assert_eq!(r.attempts, 12);
        let times = |v: &[TraceAttempt]| v.iter().map(|a| a.time_ms).collect::<Vec<_>>();
        assert_eq!(times(&r.first), [0, 1, 2, 3, 4]);
        assert_eq!(times(&r.last), [7, 8, 9, 10, 11]);
        assert_eq!(r.outcome, Some(TraceOutcome::Delivered));
        let mut short = TraceRecord::default();
        for t in 0..3 {
            short.push(&attempt(t, false));
        }
        assert_eq!((times(&short.first), short.last.len()), (vec![0, 1, 2], 0));
    }

    #[test]
    fn trace_keys_group_by_event_and_name_their_binding() {
        let live = BindingId::new("s", "r1", "t1");
        let replay = BindingId::for_replay("s", "again", "r1", "t1");
        let k = trace_key(&live, 7);
        assert!(k.starts_with(&trace_prefix("s", 7)));
        assert!(!k.starts_with(&trace_prefix("s", 8)));
        assert!(trace_key(&live, 255) < trace_key(&live, 256));
        let p = trace_prefix("s", 7).len();
        assert_eq!(binding_of("s", p, &k), Some(live));
        assert_eq!(binding_of("s", p, &trace_key(&replay, 7)), Some(replay));
        // Set `s` does not reach into set `s2`'s traces.
        assert!(!trace_key(&BindingId::new("s2", "r", "t"), 0).starts_with(&set_prefix("s")));
    }
}
