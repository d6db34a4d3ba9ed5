//! Durable delivery state of the bindings (rule × target), and the delivery settings of a
//! target body.
//!
//! A binding's state is its cursor (`cursors`, the next log offset to read), its pending
//! retries (`retries`) and its dead letters (`dead_letters`), the last two keyed by
//! `binding key ‖ 0x00 ‖ offset` (see [`keys`]). Retry entries and dead letters carry their
//! event, so neither a retry nor a redrive depends on the log still holding it (retention may
//! have removed it).
//!
//! Invariants:
//! - State exists only for a binding whose target exists: `delete_target` removes it in the
//!   target's own transaction, `create_target` clears any leftover, and `apply_delivery` skips
//!   bindings whose target is gone, all under the catalog's write lock.
//! - `apply_delivery` never moves a cursor backwards; only `put_cursor` (an explicit seek) does.
//! - One `apply_delivery` call is one sled transaction and one flush: after a crash either all
//!   of its updates are there or none.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use sled::transaction::ConflictableTransactionError;

use super::{
    Catalog, DEFAULT_INITIAL_BACKOFF_MS, DEFAULT_MAX_AGE_SECONDS, DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_BACKOFF_MS, DEFAULT_MAX_IN_FLIGHT, MAX_IN_FLIGHT_LIMIT, decode, keys,
};
use crate::codec;
use crate::error::{Error, Result};
use crate::event::Event;

/// Names one rule × target binding: a live one, or one of a replay's (`replay` set), which has
/// its own cursor, retries and dead letters so that a replay never moves the live cursor.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BindingId {
    /// The event set of the rule.
    pub set: String,
    /// The rule.
    pub rule: String,
    /// The target on the rule.
    pub target: String,
    /// The replay this binding belongs to; `None` for the live binding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<String>,
}

impl BindingId {
    /// The live binding of `target` on `set`/`rule`.
    pub fn new(set: &str, rule: &str, target: &str) -> Self {
        BindingId {
            set: set.to_string(),
            rule: rule.to_string(),
            target: target.to_string(),
            replay: None,
        }
    }

    /// The binding of `target` on `set`/`rule` in replay `name`.
    pub fn for_replay(set: &str, name: &str, rule: &str, target: &str) -> Self {
        BindingId {
            replay: Some(name.to_string()),
            ..BindingId::new(set, rule, target)
        }
    }

    /// Its key in `cursors` and `counters` (for a live binding, also its target's key in
    /// `targets`).
    pub(super) fn key(&self) -> Vec<u8> {
        match &self.replay {
            None => self.target_key(),
            Some(name) => keys::replay_binding_key(&self.set, name, &self.rule, &self.target),
        }
    }

    /// Its target's key in `targets`.
    pub(super) fn target_key(&self) -> Vec<u8> {
        keys::target_key(&self.set, &self.rule, &self.target)
    }

    /// The prefix of its entries in `retries` and `dead_letters`.
    pub(super) fn entries_prefix(&self) -> Vec<u8> {
        let mut k = self.key();
        k.push(keys::SEP);
        k
    }
}

impl fmt::Display for BindingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.set, self.rule, self.target)?;
        match &self.replay {
            Some(name) => write!(f, " (replay {name})"),
            None => Ok(()),
        }
    }
}

/// A failed delivery scheduled to be tried again. It carries the event so a retry never
/// depends on the log still holding it (retention).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryEntry {
    /// The event's offset in its set's log; also the last 8 bytes of the entry's key.
    pub offset: u64,
    /// When the log accepted the event (epoch ms).
    pub ingest_time_ms: u64,
    /// The event.
    pub event: Event,
    /// Attempts made so far (the first one included; 0 after a redrive).
    pub attempts: u32,
    /// Not to be tried before this time (epoch ms).
    pub next_attempt_ms: u64,
    /// Where `retry.max_age_seconds` counts from (epoch ms): the event's ingest time, or the
    /// time of its redrive (a redrive gives a dead letter a fresh age budget).
    pub age_from_ms: u64,
    /// Why the last attempt failed.
    pub last_error: String,
}

/// An event whose retries are exhausted, kept until redriven or its target is deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The event's offset in its set's log; also the last 8 bytes of the entry's key.
    pub offset: u64,
    /// When the log accepted the event (epoch ms).
    pub ingest_time_ms: u64,
    /// The event.
    pub event: Event,
    /// Attempts made before giving up.
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: String,
    /// When it was dead-lettered (epoch ms).
    pub dead_lettered_ms: u64,
}

/// One atomic change of a binding's delivery state, applied in field order: retries removed,
/// retries put, dead letters put, then the cursor advanced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryUpdate {
    /// Advance the cursor to this offset (ignored if the stored cursor is already beyond it).
    pub cursor: Option<u64>,
    /// Retries to add or replace (keyed by their offset).
    pub put_retries: Vec<RetryEntry>,
    /// Offsets whose retries are settled (delivered, dropped or dead-lettered).
    pub remove_retries: Vec<u64>,
    /// Dead letters to add or replace (keyed by their offset).
    pub put_dead_letters: Vec<DeadLetter>,
    /// Apply only if the stored target has this creation time: the update belongs to that
    /// incarnation of the binding, not to a target deleted and re-created under the same name
    /// meanwhile. `None` = no check.
    pub target_created_ms: Option<u64>,
    /// Events settled (delivered, dead-lettered, dropped or ignored) since the last update,
    /// added to the binding's durable `done` counter.
    #[serde(default)]
    pub add_done: u64,
    /// Events the binding skipped because retention removed them before it read them, added to
    /// its durable `lost_to_retention` counter.
    #[serde(default)]
    pub add_lost_to_retention: u64,
    /// Delivery attempts to add to the events' linkage traces.
    #[serde(default)]
    pub trace: Vec<super::TraceUpdate>,
    /// Events delivered on their first attempt, grouped ([`super::BatchTrace::group`]).
    #[serde(default)]
    pub trace_batches: Vec<super::BatchTrace>,
}

/// Durable counters of one binding, written in the same transaction as its cursor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BindingCounters {
    /// Events settled: delivered, dead-lettered, dropped or ignored (a crash may count an event
    /// that is then delivered again once more, as delivery is at-least-once).
    pub done: u64,
    /// Events retention removed before the binding read them.
    pub lost_to_retention: u64,
}

impl DeliveryUpdate {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.cursor.is_none()
            && self.put_retries.is_empty()
            && self.remove_retries.is_empty()
            && self.put_dead_letters.is_empty()
            && self.add_done == 0
            && self.add_lost_to_retention == 0
            && self.trace.is_empty()
            && self.trace_batches.is_empty()
    }
}

/// What happens to an event whose retries are exhausted (`dead_letter.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum DeadLetterMode {
    /// Keep it as a dead letter (`"dlq"`).
    #[default]
    Dlq,
    /// Discard it (`"drop"`).
    Drop,
    /// Count it as delivered (`"ignore"`, Tencent's `IGNORE_ERROR`). The event is retried
    /// by the policy like any other; only what happens when the retries run out differs.
    Ignore,
}

/// Where a new binding starts reading its set's log (`start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StartPosition {
    /// Only events appended after the binding starts (`"latest"`).
    #[default]
    Latest,
    /// The oldest event the log still holds (`"earliest"`).
    Earliest,
    /// The first event ingested at or after this time, epoch ms (`{"time": ms}`).
    Time(u64),
}

/// The delivery settings of a target body, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliverySettings {
    /// Attempts per event, the first included (`retry.max_attempts`, ≥ 1).
    pub max_attempts: u32,
    /// No attempt later than this after the event's age start: its ingest time, or its redrive
    /// (`retry.max_age_seconds` × 1000).
    pub max_age_ms: u64,
    /// Backoff before the first retry (`retry.initial_backoff_ms`).
    pub initial_backoff_ms: u64,
    /// Largest backoff (`retry.max_backoff_ms`); never below `initial_backoff_ms`.
    pub max_backoff_ms: u64,
    /// What to do with exhausted events (`dead_letter.mode`).
    pub dead_letter: DeadLetterMode,
    /// Events per request (`batch.max_events`, ≥ 1; 1 for an HTTP target in binary mode).
    pub batch_max_events: usize,
    /// How long to wait to fill a batch (`batch.max_wait_ms`).
    pub batch_max_wait_ms: u64,
    /// Deliver one at a time in offset order (`ordered`).
    pub ordered: bool,
    /// Deliveries of the binding running at once (`max_in_flight`, 1–1000).
    pub max_in_flight: usize,
    /// Where a new binding starts (`start`).
    pub start: StartPosition,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_age_ms: DEFAULT_MAX_AGE_SECONDS * 1000,
            initial_backoff_ms: DEFAULT_INITIAL_BACKOFF_MS,
            max_backoff_ms: DEFAULT_MAX_BACKOFF_MS,
            dead_letter: DeadLetterMode::Dlq,
            batch_max_events: 1,
            batch_max_wait_ms: 0,
            ordered: false,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT as usize,
            start: StartPosition::Latest,
        }
    }
}

/// Reads the delivery settings of an already-validated target body; absent fields get their
/// defaults. Bodies stored before a validation rule existed may break it (e.g. a
/// `max_attempts` of 0), so values are also clamped into their valid ranges here rather than
/// trusted: the engine never sees 0 attempts, 0 in flight or a batch in binary mode.
pub fn delivery_settings(body: &Value) -> DeliverySettings {
    let d = DeliverySettings::default();
    let get = |section: &str, field: &str| {
        body.get(section)
            .and_then(|s| s.get(field))
            .and_then(Value::as_u64)
    };
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);

    let max_backoff_ms = get("retry", "max_backoff_ms").unwrap_or(d.max_backoff_ms);
    let binary = body.get("type").and_then(Value::as_str) == Some("http")
        && body
            .get("http")
            .and_then(|h| h.get("mode"))
            .and_then(Value::as_str)
            == Some("binary");
    let batch_max_events = if binary {
        1
    } else {
        get("batch", "max_events").map_or(d.batch_max_events, to_usize)
    };
    DeliverySettings {
        max_attempts: get("retry", "max_attempts")
            .map_or(d.max_attempts, |n| u32::try_from(n).unwrap_or(u32::MAX))
            .max(1),
        max_age_ms: get("retry", "max_age_seconds")
            .map_or(d.max_age_ms, |s| s.saturating_mul(1000)),
        initial_backoff_ms: get("retry", "initial_backoff_ms")
            .unwrap_or(d.initial_backoff_ms)
            .min(max_backoff_ms),
        max_backoff_ms,
        dead_letter: match body
            .get("dead_letter")
            .and_then(|dl| dl.get("mode"))
            .and_then(Value::as_str)
        {
            Some("drop") => DeadLetterMode::Drop,
            Some("ignore") => DeadLetterMode::Ignore,
            _ => DeadLetterMode::Dlq,
        },
        batch_max_events: batch_max_events.max(1),
        batch_max_wait_ms: get("batch", "max_wait_ms").unwrap_or(d.batch_max_wait_ms),
        ordered: body
            .get("ordered")
            .and_then(Value::as_bool)
            .unwrap_or(d.ordered),
        max_in_flight: body
            .get("max_in_flight")
            .and_then(Value::as_u64)
            .map_or(d.max_in_flight, |n| {
                to_usize(n.clamp(1, MAX_IN_FLIGHT_LIMIT))
            }),
        start: body.get("start").and_then(parse_start).unwrap_or(d.start),
    }
}

/// Parses a body's `start`: `"latest"`, `"earliest"` or `{"time": <epoch ms>}` (nothing else
/// in the object); `None` for any other value. Shared by validation and
/// [`delivery_settings`], so what is accepted is exactly what is understood.
pub(super) fn parse_start(v: &Value) -> Option<StartPosition> {
    match v {
        Value::String(s) if s == "latest" => Some(StartPosition::Latest),
        Value::String(s) if s == "earliest" => Some(StartPosition::Earliest),
        Value::Object(o) if o.len() == 1 => o
            .get("time")
            .and_then(Value::as_u64)
            .map(StartPosition::Time),
        _ => None,
    }
}

/// One binding's update, encoded before the transaction (sled may run a transaction's closure
/// more than once, and an encoding error must not abort a half-staged batch).
struct StagedUpdate {
    key: sled::IVec,
    /// Must exist in `targets` for the update to apply.
    target_key: Vec<u8>,
    /// Must exist in `replays` for the update to apply (a replay's binding).
    replay_key: Option<Vec<u8>>,
    add_done: u64,
    add_lost: u64,
    /// Trace keys with the attempt; a first attempt's record comes encoded already.
    trace: Vec<(sled::IVec, super::TraceUpdate, Option<sled::IVec>)>,
    /// Batch trace records, keyed and encoded.
    trace_batches: Vec<(sled::IVec, sled::IVec)>,
    cursor: Option<u64>,
    remove_retries: Vec<sled::IVec>,
    put_retries: Vec<(sled::IVec, sled::IVec)>,
    put_dead_letters: Vec<(sled::IVec, sled::IVec)>,
    target_created_ms: Option<u64>,
}

impl StagedUpdate {
    fn encode(id: &BindingId, u: &DeliveryUpdate) -> Result<StagedUpdate> {
        let prefix = id.entries_prefix();
        let entry_key = |offset| sled::IVec::from(keys::entry_key_under(&prefix, offset));
        Ok(StagedUpdate {
            key: id.key().into(),
            target_key: id.target_key(),
            replay_key: id.replay.as_ref().map(|r| keys::replay_key(&id.set, r)),
            add_done: u.add_done,
            add_lost: u.add_lost_to_retention,
            trace: u
                .trace
                .iter()
                .map(|t| {
                    let fresh = if t.first {
                        let mut r = super::TraceRecord::default();
                        r.push(t);
                        Some(codec::encode(&r)?.into())
                    } else {
                        None
                    };
                    Ok((
                        super::trace::trace_key(id, t.offset).into(),
                        t.clone(),
                        fresh,
                    ))
                })
                .collect::<Result<_>>()?,
            trace_batches: u
                .trace_batches
                .iter()
                .filter_map(|b| b.entries.last().map(|(last, _)| (b, *last)))
                .map(|(b, last)| {
                    Ok((
                        super::trace::trace_key(id, last).into(),
                        codec::encode(b)?.into(),
                    ))
                })
                .collect::<Result<_>>()?,
            cursor: u.cursor,
            remove_retries: u.remove_retries.iter().map(|&o| entry_key(o)).collect(),
            put_retries: u
                .put_retries
                .iter()
                .map(|r| Ok((entry_key(r.offset), codec::encode(r)?.into())))
                .collect::<Result<_>>()?,
            put_dead_letters: u
                .put_dead_letters
                .iter()
                .map(|d| Ok((entry_key(d.offset), codec::encode(d)?.into())))
                .collect::<Result<_>>()?,
            target_created_ms: u.target_created_ms,
        })
    }
}

impl Catalog {
    /// Applies the delivery engine's state changes of one group-commit cycle: all `updates` in
    /// one sled transaction over `cursors`, `retries` and `dead_letters`, then one flush, so a
    /// crash leaves all of them or none.
    ///
    /// Per update: `remove_retries`, `put_retries`, `put_dead_letters`, then the cursor, which
    /// only moves forward (the stored value becomes max(stored, new)). An update for a binding
    /// whose target no longer exists is skipped silently, so a delete racing the engine never
    /// resurrects state; so is one whose `target_created_ms` names an earlier incarnation of
    /// a re-created target. Several updates of one binding apply in slice order.
    ///
    /// Does not bump the [`Catalog::subscribe`] generation: these are the engine's own writes.
    pub fn apply_delivery(&self, updates: &[(BindingId, DeliveryUpdate)]) -> Result<()> {
        // Encoding outside the lock keeps catalog mutations from waiting on it.
        let staged = updates
            .iter()
            .filter(|(_, u)| !u.is_empty())
            .map(|(id, u)| StagedUpdate::encode(id, u))
            .collect::<Result<Vec<_>>>()?;
        if staged.is_empty() {
            return Ok(());
        }
        // The write lock serialises this with create/delete target: a target seen here exists
        // until the transaction has committed.
        let _guard = self.lock();
        let mut live = Vec::with_capacity(staged.len());
        for s in staged {
            let Some(target) = self
                .targets
                .get(&s.target_key)
                .map_err(|e| self.err("read catalog", e))?
            else {
                continue;
            };
            if let Some(r) = &s.replay_key
                && self.get_raw(&self.replays, r)?.is_none()
            {
                continue;
            }
            if let Some(created) = s.target_created_ms {
                let meta: super::TargetMeta = codec::decode_exact(&target)?;
                if meta.created_ms != created {
                    continue;
                }
            }
            live.push(s);
        }
        if live.is_empty() {
            return Ok(());
        }
        self.write_traces(&live)?;
        self.transaction(
            (
                &self.cursors,
                &self.retries,
                &self.dead_letters,
                &self.counters,
            ),
            "apply delivery state",
            |(cursors, retries, dead_letters, counters)| {
                for s in &live {
                    if s.add_done > 0 || s.add_lost > 0 {
                        let mut c: BindingCounters = match counters.get(&s.key)? {
                            None => BindingCounters::default(),
                            Some(v) => codec::decode_exact(&v)
                                .map_err(ConflictableTransactionError::Abort)?,
                        };
                        c.done += s.add_done;
                        c.lost_to_retention += s.add_lost;
                        let v = codec::encode(&c).map_err(ConflictableTransactionError::Abort)?;
                        counters.insert(s.key.clone(), v)?;
                    }
                    for k in &s.remove_retries {
                        retries.remove(k.clone())?;
                    }
                    for (k, v) in &s.put_retries {
                        retries.insert(k.clone(), v.clone())?;
                    }
                    for (k, v) in &s.put_dead_letters {
                        dead_letters.insert(k.clone(), v.clone())?;
                    }
                    if let Some(new) = s.cursor {
                        let stored = match cursors.get(&s.key)? {
                            None => None,
                            Some(v) => Some(keys::decode_offset(&v).ok_or_else(|| {
                                ConflictableTransactionError::Abort(bad_cursor(v.len()))
                            })?),
                        };
                        if stored.is_none_or(|old| new > old) {
                            cursors.insert(s.key.clone(), &keys::encode_offset(new)[..])?;
                        }
                    }
                }
                Ok(())
            },
        )?;
        self.flush()
    }

    /// A binding's cursor (`None` if never set) and all its pending retries in offset order,
    /// read as one consistent snapshot: what the engine needs to (re)start the binding.
    /// `ResourceNotFound.*` like `get_target` when the target does not exist.
    pub fn load_delivery_state(&self, id: &BindingId) -> Result<(Option<u64>, Vec<RetryEntry>)> {
        // Under the write lock no `apply_delivery` or redrive lands between the two reads.
        let _guard = self.lock();
        let cursor = self.binding_cursor(id)?;
        let retries =
            self.scan_entries(&self.retries, id, None, usize::MAX, |r: &RetryEntry| {
                r.offset
            })?;
        Ok((cursor, retries))
    }

    /// The offsets of a binding's dead letters, in order, read from the keys alone (no entry
    /// is decoded): what a starting worker needs to count them and to skip the ones above its
    /// cursor. `ResourceNotFound.*` like `get_target` when the target does not exist.
    pub fn dead_letter_offsets(&self, id: &BindingId) -> Result<Vec<u64>> {
        self.check_binding(id)?;
        let mut out = Vec::new();
        for k in self.dead_letters.scan_prefix(id.entries_prefix()).keys() {
            let k = k.map_err(|e| self.err("scan delivery state", e))?;
            out.push(keys::decode_entry_offset(&k).ok_or_else(|| {
                Error::Codec(format!(
                    "dead-letter key of {} bytes has no offset",
                    k.len()
                ))
            })?);
        }
        Ok(out)
    }

    /// Up to `limit` dead letters of a binding in offset order, strictly after offset `after`
    /// (pass the last offset of a page to get the next). `ResourceNotFound.*` like
    /// `get_target` when the target does not exist.
    pub fn list_dead_letters(
        &self,
        id: &BindingId,
        after: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.check_binding(id)?;
        self.scan_entries(&self.dead_letters, id, after, limit, |d: &DeadLetter| {
            d.offset
        })
    }

    /// How many retries and dead letters a binding holds, in that order. `ResourceNotFound.*`
    /// like `get_target` when the target does not exist.
    pub fn count_delivery_entries(&self, id: &BindingId) -> Result<(u64, u64)> {
        self.check_binding(id)?;
        let prefix = id.entries_prefix();
        let count = |tree: &sled::Tree| -> Result<u64> {
            let mut n = 0;
            for k in tree.scan_prefix(&prefix).keys() {
                k.map_err(|e| self.err("scan delivery state", e))?;
                n += 1;
            }
            Ok(n)
        };
        Ok((count(&self.retries)?, count(&self.dead_letters)?))
    }

    /// Moves dead letters of a binding back to its retries, due at once: the given `offsets`
    /// (those that are not dead letters are ignored), or all when `None`. Each becomes a
    /// [`RetryEntry`] with 0 attempts, `next_attempt_ms` and `age_from_ms` = `now_ms`
    /// (a fresh retry budget) and its `last_error` kept. One transaction and one flush; bumps
    /// the [`Catalog::subscribe`] generation when anything moved, so the engine picks the
    /// entries up. Returns the new retry entries in offset order. `ResourceNotFound.*` like
    /// `get_target` when the target does not exist.
    pub fn redrive_dead_letters(
        &self,
        id: &BindingId,
        offsets: Option<&[u64]>,
        now_ms: u64,
    ) -> Result<Vec<RetryEntry>> {
        let _guard = self.lock();
        self.check_binding(id)?;
        let chosen: Vec<DeadLetter> = match offsets {
            None => self.scan_entries(
                &self.dead_letters,
                id,
                None,
                usize::MAX,
                |d: &DeadLetter| d.offset,
            )?,
            Some(offsets) => {
                let mut offsets = offsets.to_vec();
                offsets.sort_unstable();
                offsets.dedup();
                let prefix = id.entries_prefix();
                let mut chosen = Vec::with_capacity(offsets.len());
                for offset in offsets {
                    let key = keys::entry_key_under(&prefix, offset);
                    if let Some(v) = self.get_raw(&self.dead_letters, &key)? {
                        chosen.push(decode_entry(&key, &v, |d: &DeadLetter| d.offset)?);
                    }
                }
                chosen
            }
        };
        if chosen.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<RetryEntry> = chosen
            .into_iter()
            .map(|d| RetryEntry {
                offset: d.offset,
                ingest_time_ms: d.ingest_time_ms,
                event: d.event,
                attempts: 0,
                next_attempt_ms: now_ms,
                age_from_ms: now_ms,
                last_error: d.last_error,
            })
            .collect();
        let prefix = id.entries_prefix();
        let writes = entries
            .iter()
            .map(|r| {
                let key = sled::IVec::from(keys::entry_key_under(&prefix, r.offset));
                Ok((key, sled::IVec::from(codec::encode(r)?)))
            })
            .collect::<Result<Vec<_>>>()?;
        self.transaction(
            (&self.retries, &self.dead_letters),
            "redrive dead letters",
            |(retries, dead_letters)| {
                for (k, v) in &writes {
                    dead_letters.remove(k.clone())?;
                    retries.insert(k.clone(), v.clone())?;
                }
                Ok(())
            },
        )?;
        self.finish_mutation()?;
        Ok(entries)
    }

    /// `ResourceNotFound.*` unless the binding's target (and, for a replay's binding, the
    /// replay) exists.
    pub fn check_binding(&self, id: &BindingId) -> Result<()> {
        self.get_target(&id.set, &id.rule, &id.target)?;
        if let Some(r) = &id.replay {
            self.get_replay(&id.set, r)?;
        }
        Ok(())
    }

    /// Writes the trace records of a commit cycle as one sled batch, before the delivery
    /// transaction (the same flush makes both durable). Not in the transaction: transactional
    /// inserts cost several times more, and a trace is a log of attempts that did happen, so
    /// a crash between the two leaves at worst an attempt recorded whose cursor move was lost
    /// (the event is sent again and its next attempt is recorded too). Only the committer
    /// writes traces, so reading a record and writing it back cannot race.
    ///
    /// One event can have several attempts in one cycle (a quick retry, or a binding's updates
    /// of two cycles merged): each builds on the record as this cycle left it, not as stored,
    /// or all but the last attempt would be lost.
    fn write_traces(&self, live: &[StagedUpdate]) -> Result<()> {
        // The records written in this cycle: key → encoded record, and the keys in order.
        let mut written: HashMap<sled::IVec, sled::IVec> = HashMap::new();
        let mut order: Vec<sled::IVec> = Vec::new();
        for s in live {
            for (k, t, fresh) in &s.trace {
                let before = match written.get(k) {
                    Some(v) => Some(v.clone()),
                    None if fresh.is_some() => None,
                    None => self.get_raw(&self.traces, k)?,
                };
                let v = match (before, fresh) {
                    (None, Some(v)) => v.clone(),
                    (before, _) => {
                        let mut r: super::TraceRecord = match before {
                            None => super::TraceRecord::default(),
                            Some(v) => codec::decode_exact(&v)?,
                        };
                        r.push(t);
                        codec::encode(&r)?.into()
                    }
                };
                if written.insert(k.clone(), v).is_none() {
                    order.push(k.clone());
                }
            }
        }
        if !order.is_empty() {
            let mut batch = sled::Batch::default();
            for k in order {
                if let Some(v) = written.remove(&k) {
                    batch.insert(k, v);
                }
            }
            self.traces
                .apply_batch(batch)
                .map_err(|e| self.err("write traces", e))?;
        }
        let mut batch = sled::Batch::default();
        let mut any = false;
        for s in live {
            for (k, v) in &s.trace_batches {
                batch.insert(k.clone(), v.clone());
                any = true;
            }
        }
        if any {
            self.trace_batches
                .apply_batch(batch)
                .map_err(|e| self.err("write traces", e))?;
        }
        Ok(())
    }

    /// A binding's cursor (`None` if never set), after [`Catalog::check_binding`].
    pub fn binding_cursor(&self, id: &BindingId) -> Result<Option<u64>> {
        self.check_binding(id)?;
        match self.get_raw(&self.cursors, &id.key())? {
            None => Ok(None),
            Some(v) => keys::decode_offset(&v)
                .map(Some)
                .ok_or_else(|| bad_cursor(v.len())),
        }
    }

    /// A binding's durable counters (zero if it never counted anything), after
    /// [`Catalog::check_binding`].
    pub fn binding_counters(&self, id: &BindingId) -> Result<BindingCounters> {
        self.check_binding(id)?;
        match self.get_raw(&self.counters, &id.key())? {
            None => Ok(BindingCounters::default()),
            Some(v) => codec::decode_exact(&v),
        }
    }

    /// Watches the catalog's generation: it is bumped after every successful change of sets,
    /// rules, targets or a cursor (`put_cursor`), and after a dead-letter redrive, but not after
    /// `apply_delivery` (the delivery engine's own writes). The engine reconciles its running
    /// bindings when it changes; the value itself only counts changes.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Up to `limit` entries of a binding in `tree`, in offset order, strictly after `after`.
    fn scan_entries<T: DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        id: &BindingId,
        after: Option<u64>,
        limit: usize,
        offset_of: impl Fn(&T) -> u64,
    ) -> Result<Vec<T>> {
        let first = match after {
            None => 0,
            Some(a) => match a.checked_add(1) {
                Some(first) => first,
                None => return Ok(Vec::new()),
            },
        };
        let prefix = id.entries_prefix();
        let start = keys::entry_key_under(&prefix, first);
        let end = keys::entry_key_under(&prefix, u64::MAX);
        tree.range(start..=end)
            .take(limit)
            .map(|kv| {
                let (k, v) = kv.map_err(|e| self.err("scan delivery state", e))?;
                decode_entry(&k, &v, &offset_of)
            })
            .collect()
    }
}

/// Decodes a retry or dead-letter value and checks it against its key, so a value stored under
/// the wrong offset is reported instead of delivered twice or lost.
fn decode_entry<T: DeserializeOwned>(
    key: &[u8],
    value: &[u8],
    offset_of: impl Fn(&T) -> u64,
) -> Result<T> {
    let entry: T = decode(value)?;
    let stored = offset_of(&entry);
    match keys::decode_entry_offset(key) {
        Some(k) if k == stored => Ok(entry),
        k => Err(Error::Codec(format!(
            "delivery state entry for offset {stored} stored under key offset {k:?}"
        ))),
    }
}

fn bad_cursor(len: usize) -> Error {
    Error::Codec(format!("cursor value of {len} bytes, expected 8"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn delivery_settings_defaults_for_a_bare_body() {
        let s = delivery_settings(&json!({"name": "t1", "type": "file", "file": {}}));
        assert_eq!(s, DeliverySettings::default());
        assert_eq!(s.max_attempts, 10);
        assert_eq!(s.max_age_ms, 86_400_000);
        assert_eq!(s.initial_backoff_ms, 1_000);
        assert_eq!(s.max_backoff_ms, 300_000);
        assert_eq!(s.dead_letter, DeadLetterMode::Dlq);
        assert_eq!((s.batch_max_events, s.batch_max_wait_ms), (1, 0));
        assert!(!s.ordered);
        assert_eq!(s.max_in_flight, 64);
        assert_eq!(s.start, StartPosition::Latest);
    }

    #[test]
    fn delivery_settings_reads_every_field() {
        let body = json!({"name": "t1", "type": "http",
            "http": {"url": "http://x/", "mode": "structured"},
            "retry": {"max_attempts": 3, "max_age_seconds": 60, "initial_backoff_ms": 50,
                      "max_backoff_ms": 5000},
            "dead_letter": {"mode": "drop"},
            "batch": {"max_events": 20, "max_wait_ms": 250},
            "ordered": true, "max_in_flight": 8, "start": {"time": 1_700_000_000_000u64}});
        assert_eq!(
            delivery_settings(&body),
            DeliverySettings {
                max_attempts: 3,
                max_age_ms: 60_000,
                initial_backoff_ms: 50,
                max_backoff_ms: 5000,
                dead_letter: DeadLetterMode::Drop,
                batch_max_events: 20,
                batch_max_wait_ms: 250,
                ordered: true,
                max_in_flight: 8,
                start: StartPosition::Time(1_700_000_000_000),
            }
        );
        let ignore = json!({"dead_letter": {"mode": "ignore"}, "start": "earliest"});
        let s = delivery_settings(&ignore);
        assert_eq!(s.dead_letter, DeadLetterMode::Ignore);
        assert_eq!(s.start, StartPosition::Earliest);
    }

    #[test]
    fn delivery_settings_clamps_values_older_bodies_may_hold() {
        let body = json!({"type": "http", "http": {"mode": "binary"},
            "retry": {"max_attempts": 0, "initial_backoff_ms": 9000, "max_backoff_ms": 10,
                      "max_age_seconds": u64::MAX},
            "batch": {"max_events": 50}, "max_in_flight": 5000});
        let s = delivery_settings(&body);
        assert_eq!(s.max_attempts, 1);
        assert_eq!((s.initial_backoff_ms, s.max_backoff_ms), (10, 10));
        assert_eq!(s.max_age_ms, u64::MAX);
        assert_eq!(s.batch_max_events, 1, "binary mode carries one event");
        assert_eq!(s.max_in_flight, 1000);
        let huge = json!({"retry": {"max_attempts": u64::MAX}, "max_in_flight": 0});
        let s = delivery_settings(&huge);
        assert_eq!(s.max_attempts, u32::MAX);
        assert_eq!(s.max_in_flight, 1);
    }

    #[test]
    fn start_accepts_exactly_the_three_forms() {
        assert_eq!(parse_start(&json!("latest")), Some(StartPosition::Latest));
        assert_eq!(
            parse_start(&json!("earliest")),
            Some(StartPosition::Earliest)
        );
        assert_eq!(
            parse_start(&json!({"time": 0})),
            Some(StartPosition::Time(0))
        );
        for bad in [
            json!("LATEST"),
            json!("now"),
            json!(5),
            json!(null),
            json!({"time": -1}),
            json!({"time": 1.5}),
            json!({"time": "5"}),
            json!({}),
            json!({"time": 1, "x": 2}),
            json!(["latest"]),
        ] {
            assert_eq!(parse_start(&bad), None, "{bad} accepted");
        }
    }

    #[test]
    fn binding_id_displays_as_a_path_and_orders_by_tuple() {
        let a = BindingId::new("orders", "r1", "hook");
        assert_eq!(a.to_string(), "orders/r1/hook");
        assert!(BindingId::new("a", "z", "z") < BindingId::new("b", "a", "a"));
        assert_eq!(a.key(), keys::target_key("orders", "r1", "hook"));
        assert_eq!(
            a.entries_prefix(),
            keys::binding_entries_prefix("orders", "r1", "hook")
        );
    }

    #[test]
    fn decode_entry_checks_the_key_offset() {
        let dl = DeadLetter {
            offset: 7,
            ingest_time_ms: 1,
            event: Event::new("e", "s", "t"),
            attempts: 3,
            last_error: "500".into(),
            dead_lettered_ms: 2,
        };
        let v = codec::encode(&dl).unwrap();
        let ok = keys::binding_entry_key("s", "r", "t", 7);
        assert_eq!(
            decode_entry(&ok, &v, |d: &DeadLetter| d.offset).unwrap(),
            dl
        );
        let wrong = keys::binding_entry_key("s", "r", "t", 8);
        assert!(decode_entry(&wrong, &v, |d: &DeadLetter| d.offset).is_err());
    }
}
