//! Linkage traces: per event and binding, the delivery attempts and the outcome.
//!
//! Tree `traces`: `set 0x00 offset(8, big-endian) 0x00 rule 0x00 target [0x00 replay]` →
//! `codec(TraceRecord)`. Keyed by offset first, so all the bindings of one event are one
//! prefix scan, and everything older than an offset is one key range (the expiry sweep).
//!
//! Tree `trace_batches`: `set 0x00 last offset(8) 0x00 rule 0x00 target [0x00 replay]` →
//! `codec(BatchTrace)`: the events of one binding delivered on their first attempt (the common
//! case) within one commit cycle, grouped into records spanning at most [`MAX_BATCH_SPAN`]
//! offsets, each event with its attempt, instead of one record per event: a cycle that settles
//! 100 events costs one write, not 100, and a lookup by offset scans a bounded key range.
//!
//! Records are written by the delivery committer with the binding's cursor
//! ([`DeliveryUpdate::trace`], [`DeliveryUpdate::trace_batches`]), in the same flush. Each
//! per-event record keeps the first [`TRACE_KEEP`] and the last [`TRACE_KEEP`] attempts and
//! the total count.

use serde::{Deserialize, Serialize};

use super::{BindingId, Catalog, keys};
use crate::error::Result;

/// Attempts kept at each end of a trace.
pub const TRACE_KEEP: usize = 5;

/// One delivery attempt of one event to one target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TraceAttempt {
    /// When the request started, epoch ms.
    pub time_ms: u64,
    /// True when the target accepted it.
    pub ok: bool,
    /// The receiver's HTTP status (of a success too), when it answered.
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

/// Widest offset range one [`BatchTrace`] may cover.
pub const MAX_BATCH_SPAN: u64 = 4096;

/// Events of one binding delivered on their first attempt, each with that attempt. The events
/// of one request share one attempt, stored once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchTrace {
    /// The distinct attempts.
    pub attempts: Vec<TraceAttempt>,
    /// (offset, index in `attempts`), by ascending offset, spanning at most
    /// [`MAX_BATCH_SPAN`] offsets.
    pub entries: Vec<(u64, u32)>,
}

impl BatchTrace {
    /// Groups first-attempt deliveries into records: sorted by offset (a later one of the
    /// same offset wins), a new record whenever the span would pass [`MAX_BATCH_SPAN`].
    pub fn group(mut entries: Vec<(u64, TraceAttempt)>) -> Vec<BatchTrace> {
        // Stable: of two entries of one offset, the later stays last.
        entries.sort_by_key(|(o, _)| *o);
        let mut out: Vec<BatchTrace> = Vec::new();
        let mut index: std::collections::HashMap<TraceAttempt, u32> = Default::default();
        for (o, a) in entries {
            let fits = out
                .last()
                .is_some_and(|b| o - b.entries[0].0 <= MAX_BATCH_SPAN);
            if !fits {
                index.clear();
                out.push(BatchTrace {
                    attempts: Vec::new(),
                    entries: Vec::new(),
                });
            }
            let b = out.last_mut().expect("pushed");
            let i = *index.entry(a).or_insert_with_key(|a| {
                b.attempts.push(a.clone());
                u32::try_from(b.attempts.len() - 1).unwrap_or(u32::MAX)
            });
            match b.entries.last_mut() {
                Some(last) if last.0 == o => last.1 = i,
                _ => b.entries.push((o, i)),
            }
        }
        out
    }

    /// The attempt of the event at `offset`, if this record has it.
    pub fn attempt_of(&self, offset: u64) -> Option<&TraceAttempt> {
        let i = self
            .entries
            .binary_search_by_key(&offset, |(o, _)| *o)
            .ok()?;
        self.attempts.get(self.entries[i].1 as usize)
    }
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

/// Key of a binding's trace of the event at `offset` (in `traces`), or of its batch record
/// whose last offset is `offset` (in `trace_batches`).
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
    /// Every binding's trace of the event at `offset` of `set`: its per-event records, and
    /// the batch records whose request carried it.
    pub fn event_trace(&self, set: &str, offset: u64) -> Result<EventTrace> {
        let prefix = trace_prefix(set, offset);
        let mut out: EventTrace = Vec::new();
        for kv in self.traces.scan_prefix(&prefix) {
            let (k, v) = kv.map_err(|e| self.err("scan traces", e))?;
            let Some(id) = binding_of(set, prefix.len(), &k) else {
                continue;
            };
            out.push((id, super::decode(&v)?));
        }
        // A batch carrying `offset` ends at or after it, and within MAX_BATCH_SPAN of it.
        let start = trace_prefix(set, offset);
        let end = trace_prefix(set, offset.saturating_add(MAX_BATCH_SPAN + 1));
        let key_len = start.len();
        for kv in self.trace_batches.range(start..end) {
            let (k, v) = kv.map_err(|e| self.err("scan traces", e))?;
            let Some(id) = binding_of(set, key_len, &k) else {
                continue;
            };
            let b: BatchTrace = super::decode(&v)?;
            let Some(a) = b.attempt_of(offset) else {
                continue;
            };
            if out.iter().any(|(o, _)| *o == id) {
                continue;
            }
            out.push((
                id,
                TraceRecord {
                    attempts: 1,
                    first: vec![a.clone()],
                    last: Vec::new(),
                    outcome: Some(TraceOutcome::Delivered),
                },
            ));
        }
        Ok(out)
    }

    /// Removes the traces of `set`'s events below offset `before`; returns how many records.
    pub fn expire_traces(&self, set: &str, before: u64) -> Result<u64> {
        let start = set_prefix(set);
        let end = trace_prefix(set, before);
        let mut n = 0;
        for tree in [&self.traces, &self.trace_batches] {
            let mut batch = sled::Batch::default();
            let mut any = false;
            for k in tree.range(start.clone()..end.clone()).keys() {
                batch.remove(k.map_err(|e| self.err("scan traces", e))?);
                n += 1;
                any = true;
            }
            if any {
                tree.apply_batch(batch)
                    .map_err(|e| self.err("expire traces", e))?;
            }
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
    fn first_attempt_deliveries_group_by_offset_within_the_span() {
        let a = |t| attempt(t, true).attempt;
        let groups = BatchTrace::group(vec![
            (9, a(1)),
            (3, a(2)),
            (MAX_BATCH_SPAN + 3, a(3)),
            (MAX_BATCH_SPAN + 4, a(4)),
            (9, a(5)),
        ]);
        let offsets: Vec<Vec<u64>> = groups
            .iter()
            .map(|g| g.entries.iter().map(|(o, _)| *o).collect())
            .collect();
        assert_eq!(
            offsets,
            [vec![3, 9, MAX_BATCH_SPAN + 3], vec![MAX_BATCH_SPAN + 4]]
        );
        // The later attempt of a repeated offset is the one kept; equal attempts are stored once.
        assert_eq!(groups[0].attempt_of(9).unwrap().time_ms, 5);
        assert_eq!(groups[0].attempt_of(3).unwrap().time_ms, 2);
        assert!(groups[0].attempt_of(4).is_none());
        let shared = BatchTrace::group(vec![(1, a(7)), (2, a(7)), (3, a(7))]);
        assert_eq!((shared[0].attempts.len(), shared[0].entries.len()), (1, 3));
        assert!(BatchTrace::group(Vec::new()).is_empty());
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
