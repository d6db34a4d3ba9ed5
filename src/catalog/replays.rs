//! Replays: their records (`replays` tree) and the removal of their bindings' state.
//!
//! A replay re-delivers the events of a set ingested in `[start_ms, end_ms)` that its rules
//! match, to those rules' targets, through the normal delivery machinery but with bindings of
//! its own ([`BindingId::for_replay`]): each has its own cursor, retries, dead letters and
//! counters, under the replay's key range (see [`keys`]), so the live cursors never move.
//!
//! The record is written when the replay is created, with the window already resolved to log
//! offsets and the bindings fixed (the targets of the chosen rules at that moment), so a
//! restart resumes exactly the same replay: each binding from its durable cursor.

use serde::{Deserialize, Serialize};

use super::{
    BindingId, Catalog, codes, conflict, decode, keys, limit, not_found, remove_all, validate_name,
};
use crate::codec;
use crate::error::Result;

/// Where a replay is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReplayState {
    /// Counting its events or delivering them (also while the server is down: it resumes).
    Running,
    /// Every binding went through the whole window.
    Completed,
    /// Cancelled by a user before it completed.
    Cancelled,
    /// Could not go on (e.g. one of its targets was deleted); `error` says why.
    Failed,
}

impl ReplayState {
    /// True for the states a replay never leaves.
    pub fn is_final(self) -> bool {
        self != ReplayState::Running
    }
}

/// One binding of a replay: a target of one of its rules, as it was when the replay started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayBinding {
    /// The rule.
    pub rule: String,
    /// The target on the rule.
    pub target: String,
    /// The target's creation time: if it is deleted and re-created, the replay does not
    /// deliver to the new one.
    pub target_created_ms: u64,
}

/// A replay as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayMeta {
    /// The event set.
    pub set: String,
    /// Its name, unique in the set.
    pub name: String,
    /// Window start, epoch ms of ingest time (inclusive).
    pub start_ms: u64,
    /// Window end, epoch ms of ingest time (exclusive); never after the creation time.
    pub end_ms: u64,
    /// The first offset of the window.
    pub start_offset: u64,
    /// The offset after the window: the first event ingested at or after `end_ms`.
    pub end_offset: u64,
    /// The rules replayed to.
    pub rules: Vec<String>,
    /// The targets of those rules when the replay was created.
    pub bindings: Vec<ReplayBinding>,
    /// Where it is.
    pub state: ReplayState,
    /// Events to deliver: for each binding, the window's events its rule matches (summed).
    /// `None` until counted.
    pub total: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// Creation time, epoch ms.
    pub created_ms: u64,
    /// When it completed, was cancelled or failed, epoch ms.
    pub finished_ms: Option<u64>,
}

impl ReplayMeta {
    /// The ids of its bindings.
    pub fn binding_ids(&self) -> Vec<BindingId> {
        self.bindings
            .iter()
            .map(|b| BindingId::for_replay(&self.set, &self.name, &b.rule, &b.target))
            .collect()
    }
}

/// Most replays one event set keeps (finished ones count until deleted).
pub const MAX_REPLAYS_PER_SET: usize = 100;

impl Catalog {
    /// Stores a new replay. `ResourceInUse.Replay` if the name is taken, `LimitExceeded.Replay`
    /// past [`MAX_REPLAYS_PER_SET`]; the set must exist. Any state left under the name (by a
    /// crash during an earlier delete) is cleared in the same transaction.
    pub fn create_replay(&self, meta: &ReplayMeta) -> Result<()> {
        validate_name(&meta.name, codes::INVALID_REPLAY_NAME)?;
        let _guard = self.lock();
        self.get_set(&meta.set)?;
        let key = keys::replay_key(&meta.set, &meta.name);
        if self.get_raw(&self.replays, &key)?.is_some() {
            return Err(conflict(
                codes::REPLAY_IN_USE,
                format!(
                    "replay {:?} of event set {:?} already exists",
                    meta.name, meta.set
                ),
            ));
        }
        if self.count_prefix(&self.replays, &keys::replays_prefix(&meta.set))?
            >= MAX_REPLAYS_PER_SET
        {
            return Err(limit(
                codes::REPLAY_LIMIT,
                format!(
                    "at most {MAX_REPLAYS_PER_SET} replays per event set; delete finished ones"
                ),
            ));
        }
        let value = codec::encode(meta)?;
        let stale = self.state_keys_under(&keys::replay_state_prefix(&meta.set, &meta.name))?;
        self.with_state_removed(&self.replays, &stale, "create replay", |replays| {
            replays.insert(key.as_slice(), value.as_slice())?;
            Ok(())
        })?;
        self.flush()
    }

    /// One replay; `ResourceNotFound.Replay` if there is none.
    pub fn get_replay(&self, set: &str, name: &str) -> Result<ReplayMeta> {
        match self.get_raw(&self.replays, &keys::replay_key(set, name))? {
            Some(v) => decode(&v),
            None => Err(not_found(
                codes::REPLAY_NOT_FOUND,
                format!("no replay {name:?} in event set {set:?}"),
            )),
        }
    }

    /// The replays of `set`, by name (the set must exist).
    pub fn list_replays(&self, set: &str) -> Result<Vec<ReplayMeta>> {
        self.get_set(set)?;
        self.replays
            .scan_prefix(keys::replays_prefix(set))
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("scan replays", e))?;
                decode(&v)
            })
            .collect()
    }

    /// Every replay of every set still running (what the engine resumes on start).
    pub fn running_replays(&self) -> Result<Vec<ReplayMeta>> {
        let mut out = Vec::new();
        for kv in self.replays.iter() {
            let (_, v) = kv.map_err(|e| self.err("scan replays", e))?;
            let meta: ReplayMeta = decode(&v)?;
            if meta.state == ReplayState::Running {
                out.push(meta);
            }
        }
        Ok(out)
    }

    /// Changes a stored replay with `f` (its total, state, error); durable on return. A replay
    /// in a final state is not changed again (`f` is not called); returns the stored record.
    pub fn update_replay(
        &self,
        set: &str,
        name: &str,
        f: impl FnOnce(&mut ReplayMeta),
    ) -> Result<ReplayMeta> {
        let _guard = self.lock();
        let mut meta = self.get_replay(set, name)?;
        if meta.state.is_final() {
            return Ok(meta);
        }
        f(&mut meta);
        self.insert(&self.replays, keys::replay_key(set, name), &meta)?;
        self.flush()?;
        Ok(meta)
    }

    /// Deletes a replay's record and all its bindings' state in one transaction. The engine
    /// must have stopped its workers first.
    pub fn delete_replay(&self, set: &str, name: &str) -> Result<()> {
        let _guard = self.lock();
        self.get_replay(set, name)?;
        let key = keys::replay_key(set, name);
        let stale = self.state_keys_under(&keys::replay_state_prefix(set, name))?;
        self.with_state_removed(&self.replays, &stale, "delete replay", |replays| {
            replays.remove(key.as_slice())?;
            Ok(())
        })?;
        self.flush()
    }

    /// Removes every replay of `set` and their state (the set is being deleted). Runs under
    /// the caller's write lock.
    pub(super) fn remove_set_replays(&self, set: &str) -> Result<()> {
        let records = self.keys_under(&self.replays, &keys::replays_prefix(set))?;
        let stale = self.state_keys_under(&keys::replay_set_state_prefix(set))?;
        self.with_state_removed(
            &self.replays,
            &stale,
            "delete the set's replays",
            |replays| remove_all(replays, &records),
        )
    }
}
