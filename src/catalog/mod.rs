//! The catalog: event sets, rules, targets and the durable delivery state of every binding
//! (rule × target): its cursor, its pending retries and its dead letters, stored in sled.
//!
//! Six trees (layout in [`keys`]): `sets`, `rules`, `targets`, `cursors`, `retries`,
//! `dead_letters`. Values are [`codec::encode`]d structs; JSON values (patterns,
//! transformations, target bodies) are stored as JSON text because bincode cannot store a
//! `serde_json::Value`. The delivery state API is in [`delivery`] (`apply_delivery`,
//! `load_delivery_state`, dead letters, `subscribe`).
//!
//! ## Concurrency
//! Reads are lock-free (sled). Every mutation takes one catalog-wide mutex, so the
//! check-then-write of a create, update or delete (exists? parent exists? under the limit? has
//! children?) cannot race with another mutation. Catalog writes are rare, so one lock is cheap.
//! The delivery engine's group-committed state writes (`apply_delivery`) take the same mutex:
//! this is what lets `delete_target` collect a binding's retry and dead-letter keys by a scan
//! before its transaction (sled transactions cannot scan) and know no entry appears meanwhile.
//!
//! Every successful change of sets, rules, targets or a cursor (and a dead-letter redrive)
//! bumps a generation counter that [`Catalog::subscribe`] watches, so the delivery engine can
//! reconcile its running bindings; the engine's own `apply_delivery` writes do not bump it.
//!
//! ## Durability and crashes
//! sled is opened with its periodic flusher off; every mutation is applied and then
//! `Db::flush()`ed (which fsyncs sled's log) before it returns `Ok`. Hence:
//! - Nothing acknowledged is rolled back by a crash or a power loss.
//! - A mutation in progress when the crash hit (or whose flush failed and returned an error)
//!   may or may not be applied after restart, but never partly: a mutation that touches
//!   several trees (deleting a target with its cursor, retries and dead letters; creating a
//!   target and clearing stale delivery state; one `apply_delivery` batch over many bindings)
//!   is one sled transaction, and sled recovers a prefix of its log, all or nothing per batch.
//!
//! This is safe because the caller never saw success for such a mutation, and each possible
//! outcome is a state the API itself could have produced: the create/delete either happened or
//! did not (a retry then gets `ResourceInUse.*` or `ResourceNotFound.*`), an update holds the
//! old or the new value. Parent/child order is kept in the log order too: a rule is written only
//! after its set's creation was flushed, and a set is deleted only when it has no rules (same
//! for rules and targets), so a recovered prefix never holds a child without its parent.
//!
//! ## Codes
//! Refusals are [`Error::Rejected`] with the codes in [`codes`]. Duplicates use the
//! `ResourceInUse.*` family (as Tencent EventBridge does), the same codes that deletion-order
//! conflicts use; the message tells them apart.

mod delivery;
pub mod keys;
mod replays;
mod trace;

pub use delivery::*;
pub use replays::*;
pub use trace::*;

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::Value;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionResult, TransactionError, TransactionalTree};

use crate::codec;
use crate::config::RetentionPolicy;
use crate::error::{Error, RejectKind, Result};

/// Name of the built-in cloud-service event set.
pub const DEFAULT_SET: &str = "default";
/// Description of the built-in `default` event set.
pub const DEFAULT_SET_DESCRIPTION: &str = "Tencent Cloud service event set";
/// Retention of the `default` set: 30 days.
pub const DEFAULT_SET_MAX_AGE_HOURS: u64 = 30 * 24;
/// Retention of a custom set created without one: 7 days.
pub const DEFAULT_CUSTOM_MAX_AGE_HOURS: u64 = 7 * 24;
/// Deduplication window (by event id) of a set created without one: 120 s. 0 disables it.
pub const DEFAULT_DEDUP_WINDOW_MS: u64 = 120_000;
/// Largest de-duplication window: 24 hours. The window is kept in memory and rebuilt from the
/// log on open, so it must stay bounded.
pub const MAX_DEDUP_WINDOW_MS: u64 = 24 * 3600 * 1000;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 200;
/// Largest rule pattern, serialized JSON bytes (the pattern module's limit).
pub use crate::pattern::MAX_PATTERN_BYTES;
/// Target types a target body's `type` may name.
pub const TARGET_TYPES: [&str; 5] = ["http", "notify", "file", "command", "event-set"];
/// Values of a target body's `dead_letter.mode`.
pub const DEAD_LETTER_MODES: [&str; 3] = ["dlq", "drop", "ignore"];
/// Largest `batch.max_events`.
pub const MAX_BATCH_EVENTS: u64 = 10_000;
/// Largest `batch.max_wait_ms`.
pub const MAX_BATCH_WAIT_MS: u64 = 60_000;
/// `retry.initial_backoff_ms` when a body leaves it out.
pub const DEFAULT_INITIAL_BACKOFF_MS: u64 = 1_000;
/// `retry.max_backoff_ms` when a body leaves it out.
pub const DEFAULT_MAX_BACKOFF_MS: u64 = 300_000;
/// `retry.max_attempts` when a body leaves it out. It counts every attempt, the first included.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 10;
/// `retry.max_age_seconds` when a body leaves it out: one day.
pub const DEFAULT_MAX_AGE_SECONDS: u64 = 86_400;
/// `max_in_flight` (deliveries of one binding running at once) when a body leaves it out.
pub const DEFAULT_MAX_IN_FLIGHT: u64 = 64;
/// Largest `max_in_flight`.
pub const MAX_IN_FLIGHT_LIMIT: u64 = 1000;

/// The Tencent-style error codes the catalog returns.
pub mod codes {
    /// A value of the wrong shape with no more specific code (`$` not an object, `$.batch`...).
    pub const INVALID_PARAMETER_VALUE: &str = "InvalidParameterValue";
    /// Bad event set name.
    pub const INVALID_SET_NAME: &str = "InvalidParameterValue.EventSetName";
    /// Bad rule name.
    pub const INVALID_RULE_NAME: &str = "InvalidParameterValue.RuleName";
    /// Bad target name.
    pub const INVALID_TARGET_NAME: &str = "InvalidParameterValue.TargetName";
    /// Description too long or not a string.
    pub const INVALID_DESCRIPTION: &str = "InvalidParameterValue.Description";
    /// A retention value of 0.
    pub const INVALID_RETENTION: &str = "InvalidParameterValue.Retention";
    /// Rule pattern rejected by [`crate::pattern::Pattern::parse`] (the error's path says where).
    pub const INVALID_PATTERN: &str = "InvalidParameterValue.EventPattern";
    /// Rule transformation not an object.
    pub const INVALID_TRANSFORM: &str = "InvalidParameterValue.Transformations";
    /// Unknown target `type`.
    pub const INVALID_TARGET_TYPE: &str = "InvalidParameterValue.TargetType";
    /// The object named by the target type missing or wrong (`$.http`, `$.http.url`).
    pub const INVALID_TARGET_DESCRIPTION: &str = "InvalidParameterValue.TargetDescription";
    /// Bad `retry` settings.
    pub const INVALID_RETRY: &str = "InvalidParameterValue.RetryPolicy";
    /// Bad `dead_letter` settings.
    pub const INVALID_DEAD_LETTER: &str = "InvalidParameterValue.DeadLetterConfig";
    /// `batch.max_events` out of 1–10000.
    pub const INVALID_BATCH_COUNT: &str = "InvalidParameterValue.BatchEventCount";
    /// `batch.max_wait_ms` out of 0–60000.
    pub const INVALID_BATCH_TIMEOUT: &str = "InvalidParameterValue.BatchTimeout";
    /// Event set exists already, or still has rules.
    pub const SET_IN_USE: &str = "ResourceInUse.EventSet";
    /// Rule exists already, or still has targets.
    pub const RULE_IN_USE: &str = "ResourceInUse.Rule";
    /// Target exists already.
    pub const TARGET_IN_USE: &str = "ResourceInUse.Target";
    /// No such event set.
    pub const SET_NOT_FOUND: &str = "ResourceNotFound.EventSet";
    /// No such rule.
    pub const RULE_NOT_FOUND: &str = "ResourceNotFound.Rule";
    /// No such target.
    pub const TARGET_NOT_FOUND: &str = "ResourceNotFound.Target";
    /// Update or delete of the built-in `default` set.
    pub const IMMUTABLE: &str = "OperationDenied.ResourceImmutable";
    /// Too many custom event sets.
    pub const SET_LIMIT: &str = "LimitExceeded.EventSet";
    /// Too many rules in one set.
    pub const RULE_LIMIT: &str = "LimitExceeded.Rule";
    /// Too many targets on one rule.
    pub const TARGET_LIMIT: &str = "LimitExceeded.Target";
    /// Bad replay name.
    pub const INVALID_REPLAY_NAME: &str = "InvalidParameterValue.ReplayName";
    /// Replay exists already.
    pub const REPLAY_IN_USE: &str = "ResourceInUse.Replay";
    /// No such replay.
    pub const REPLAY_NOT_FOUND: &str = "ResourceNotFound.Replay";
    /// Too many replays in one set.
    pub const REPLAY_LIMIT: &str = "LimitExceeded.Replay";
}

/// Quotas of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogLimits {
    /// Custom event sets (the built-in `default` does not count). Default = 1000.
    pub max_sets: usize,
    /// Rules per event set. Default = 1000.
    pub max_rules_per_set: usize,
    /// Targets per rule. Default = 50.
    pub max_targets_per_rule: usize,
}

impl Default for CatalogLimits {
    fn default() -> Self {
        CatalogLimits {
            max_sets: 1000,
            max_rules_per_set: 1000,
            max_targets_per_rule: 50,
        }
    }
}

/// Whether a set is the built-in cloud-service set or a user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetKind {
    /// The built-in `default` set: immutable, written only by cloud producers.
    Cloud,
    /// Created by a user.
    Custom,
}

/// How long an event set keeps events. `None` = no limit of that kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionSpec {
    /// Keep events at most this many hours (> 0).
    pub max_age_hours: Option<u64>,
    /// Keep at most this many bytes of log (> 0).
    pub max_bytes: Option<u64>,
}

impl RetentionSpec {
    /// The retention of a custom set created without one: 7 days, no byte cap.
    pub fn custom_default() -> Self {
        RetentionSpec {
            max_age_hours: Some(DEFAULT_CUSTOM_MAX_AGE_HOURS),
            max_bytes: None,
        }
    }

    /// The log's retention policy for this spec.
    pub fn to_policy(&self) -> RetentionPolicy {
        RetentionPolicy {
            max_age: self
                .max_age_hours
                .map(|h| Duration::from_secs(h.saturating_mul(3600))),
            max_bytes: self.max_bytes,
        }
    }
}

/// A stored event set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventSetMeta {
    /// Unique name.
    pub name: String,
    /// Free text, at most 200 characters.
    pub description: String,
    /// Cloud (`default`) or custom.
    pub kind: SetKind,
    /// How long events are kept.
    pub retention: RetentionSpec,
    /// Window in which a repeated event id is dropped; 0 = no deduplication.
    pub dedup_window_ms: u64,
    /// Creation time, epoch ms.
    pub created_ms: u64,
    /// Last change, epoch ms.
    pub updated_ms: u64,
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMeta {
    /// The event set it belongs to.
    pub set: String,
    /// Name, unique within the set.
    pub name: String,
    /// Free text, at most 200 characters.
    pub description: String,
    /// The event pattern, JSON text of an object.
    pub pattern: String,
    /// Whether events are matched against it.
    pub enabled: bool,
    /// The transformation, JSON text of an object, if any.
    pub transform: Option<String>,
    /// Creation time, epoch ms.
    pub created_ms: u64,
    /// Last change, epoch ms.
    pub updated_ms: u64,
}

/// A stored target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetMeta {
    /// The event set of its rule.
    pub set: String,
    /// The rule it belongs to.
    pub rule: String,
    /// Name, unique within the rule.
    pub name: String,
    /// The whole target body, JSON text (see INTERFACE.md "Target body").
    pub config: String,
    /// The body's `type`: `http`, `notify`, `file`, `command` or `event-set`.
    pub target_type: String,
    /// Creation time, epoch ms.
    pub created_ms: u64,
    /// Last change, epoch ms.
    pub updated_ms: u64,
}

/// What a rule is created from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    /// Name, unique within the set.
    pub name: String,
    /// Free text. Default = empty.
    #[serde(default)]
    pub description: String,
    /// The event pattern: a non-empty JSON object.
    pub pattern: Value,
    /// Default = true.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// The transformation (a JSON object), if any. Default = none.
    #[serde(default)]
    pub transform: Option<Value>,
}

fn default_true() -> bool {
    true
}

/// Changes to an event set; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SetPatch {
    /// New description.
    pub description: Option<String>,
    /// New retention (replaces the whole spec).
    pub retention: Option<RetentionSpec>,
    /// New deduplication window (0 disables).
    pub dedup_window_ms: Option<u64>,
}

/// Changes to a rule; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RulePatch {
    /// New description.
    pub description: Option<String>,
    /// New pattern.
    pub pattern: Option<Value>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// New transformation; `Some(Value::Null)` removes it.
    pub transform: Option<Value>,
}

/// The catalog of event sets, rules, targets and the delivery state of their bindings.
pub struct Catalog {
    path: PathBuf,
    db: sled::Db,
    sets: sled::Tree,
    rules: sled::Tree,
    targets: sled::Tree,
    cursors: sled::Tree,
    /// Pending retries: binding key ‖ 0x00 ‖ offset → [`RetryEntry`].
    retries: sled::Tree,
    /// Dead letters: binding key ‖ 0x00 ‖ offset → [`DeadLetter`].
    dead_letters: sled::Tree,
    /// Binding key → [`BindingCounters`].
    counters: sled::Tree,
    /// `set 0x00 name` → [`ReplayMeta`].
    replays: sled::Tree,
    /// Linkage traces (see [`trace`]).
    traces: sled::Tree,
    /// Linkage traces of whole requests delivered on their first attempt (see [`trace`]).
    trace_batches: sled::Tree,
    limits: CatalogLimits,
    /// Serializes mutations (see the module docs).
    write_lock: Mutex<()>,
    /// Generation of the configuration, bumped after every change the delivery engine must
    /// reconcile (see [`Catalog::subscribe`]).
    changes: tokio::sync::watch::Sender<u64>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Catalog {
    /// Opens (or creates) the catalog in directory `path`; creates the `default` set on first
    /// open.
    pub fn open(path: &Path, limits: CatalogLimits) -> Result<Catalog> {
        let db = open_db(path)?;
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| sled_err("open catalog tree", path, e))
        };
        let catalog = Catalog {
            path: path.to_path_buf(),
            sets: tree("sets")?,
            rules: tree("rules")?,
            targets: tree("targets")?,
            cursors: tree("cursors")?,
            retries: tree("retries")?,
            dead_letters: tree("dead_letters")?,
            counters: tree("counters")?,
            replays: tree("replays")?,
            traces: tree("traces")?,
            trace_batches: tree("trace_batches")?,
            db,
            limits,
            write_lock: Mutex::new(()),
            changes: tokio::sync::watch::Sender::new(0),
        };
        catalog.ensure_default_set()?;
        Ok(catalog)
    }

    /// The directory the catalog lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The quotas in force.
    pub fn limits(&self) -> CatalogLimits {
        self.limits
    }

    fn ensure_default_set(&self) -> Result<()> {
        let _guard = self.lock();
        if self.get_raw(&self.sets, DEFAULT_SET.as_bytes())?.is_some() {
            return Ok(());
        }
        let now = now_ms();
        let meta = EventSetMeta {
            name: DEFAULT_SET.to_string(),
            description: DEFAULT_SET_DESCRIPTION.to_string(),
            kind: SetKind::Cloud,
            retention: RetentionSpec {
                max_age_hours: Some(DEFAULT_SET_MAX_AGE_HOURS),
                max_bytes: None,
            },
            dedup_window_ms: DEFAULT_DEDUP_WINDOW_MS,
            created_ms: now,
            updated_ms: now,
        };
        self.insert(&self.sets, keys::set_key(DEFAULT_SET), &meta)?;
        self.flush()
    }

    // ----- event sets -------------------------------------------------------------------------

    /// Creates a custom event set. Defaults: empty description, 7 days retention, 120 s dedup.
    pub fn create_set(
        &self,
        name: &str,
        description: Option<&str>,
        retention: Option<RetentionSpec>,
        dedup_window_ms: Option<u64>,
    ) -> Result<EventSetMeta> {
        validate_name(name, codes::INVALID_SET_NAME)?;
        let description = description.unwrap_or_default();
        validate_description(description)?;
        let retention = retention.unwrap_or_else(RetentionSpec::custom_default);
        validate_retention(&retention)?;
        if let Some(w) = dedup_window_ms {
            validate_dedup_window(w)?;
        }

        let _guard = self.lock();
        if self.get_raw(&self.sets, name.as_bytes())?.is_some() {
            return Err(conflict(
                codes::SET_IN_USE,
                format!("event set {name:?} already exists"),
            ));
        }
        let custom = self.sets.len().saturating_sub(1); // `default` always exists
        if custom >= self.limits.max_sets {
            return Err(limit(
                codes::SET_LIMIT,
                format!("at most {} custom event sets", self.limits.max_sets),
            ));
        }
        let now = now_ms();
        let meta = EventSetMeta {
            name: name.to_string(),
            description: description.to_string(),
            kind: SetKind::Custom,
            retention,
            dedup_window_ms: dedup_window_ms.unwrap_or(DEFAULT_DEDUP_WINDOW_MS),
            created_ms: now,
            updated_ms: now,
        };
        self.insert(&self.sets, keys::set_key(name), &meta)?;
        self.finish_mutation()?;
        Ok(meta)
    }

    /// All event sets, by name.
    pub fn list_sets(&self) -> Result<Vec<EventSetMeta>> {
        self.sets
            .iter()
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("scan event sets", e))?;
                decode(&v)
            })
            .collect()
    }

    /// One event set.
    pub fn get_set(&self, name: &str) -> Result<EventSetMeta> {
        match self.get_raw(&self.sets, name.as_bytes())? {
            Some(v) => decode(&v),
            None => Err(not_found(
                codes::SET_NOT_FOUND,
                format!("no event set {name:?}"),
            )),
        }
    }

    /// Changes a custom event set. The `default` set is immutable.
    pub fn update_set(&self, name: &str, patch: SetPatch) -> Result<EventSetMeta> {
        if let Some(d) = &patch.description {
            validate_description(d)?;
        }
        if let Some(r) = &patch.retention {
            validate_retention(r)?;
        }
        if let Some(w) = patch.dedup_window_ms {
            validate_dedup_window(w)?;
        }
        let _guard = self.lock();
        let mut meta = self.get_set(name)?;
        deny_cloud(&meta)?;
        if let Some(d) = patch.description {
            meta.description = d;
        }
        if let Some(r) = patch.retention {
            meta.retention = r;
        }
        if let Some(w) = patch.dedup_window_ms {
            meta.dedup_window_ms = w;
        }
        meta.updated_ms = now_ms().max(meta.created_ms);
        self.insert(&self.sets, keys::set_key(name), &meta)?;
        self.finish_mutation()?;
        Ok(meta)
    }

    /// Deletes a custom event set that has no rules.
    pub fn delete_set(&self, name: &str) -> Result<()> {
        let _guard = self.lock();
        let meta = self.get_set(name)?;
        deny_cloud(&meta)?;
        if self.has_prefix(&self.rules, &keys::rules_prefix(name))? {
            return Err(conflict(
                codes::SET_IN_USE,
                format!("event set {name:?} still has rules; delete them first"),
            ));
        }
        self.remove_set_replays(name)?;
        self.remove_set_traces(name)?;
        self.sets
            .remove(keys::set_key(name))
            .map_err(|e| self.err("delete event set", e))?;
        self.finish_mutation()
    }

    // ----- rules ------------------------------------------------------------------------------

    /// Refuses (`code`, "at most `max` `what`") when `tree` already holds `max` entries
    /// under `prefix`.
    fn ensure_room(
        &self,
        tree: &sled::Tree,
        prefix: &[u8],
        max: usize,
        code: &str,
        what: &str,
    ) -> Result<()> {
        if self.count_prefix(tree, prefix)? >= max {
            return Err(limit(code, format!("at most {max} {what}")));
        }
        Ok(())
    }

    /// Creates a rule in `set`.
    pub fn create_rule(&self, set: &str, spec: RuleSpec) -> Result<RuleMeta> {
        validate_name(&spec.name, codes::INVALID_RULE_NAME)?;
        validate_description(&spec.description)?;
        let pattern = validate_pattern(&spec.pattern)?;
        let transform = validate_transform(spec.transform.as_ref())?;

        let _guard = self.lock();
        self.get_set(set)?;
        let key = keys::rule_key(set, &spec.name);
        if self.get_raw(&self.rules, &key)?.is_some() {
            return Err(conflict(
                codes::RULE_IN_USE,
                format!("rule {:?} already exists in event set {set:?}", spec.name),
            ));
        }
        self.ensure_room(
            &self.rules,
            &keys::rules_prefix(set),
            self.limits.max_rules_per_set,
            codes::RULE_LIMIT,
            "rules per event set",
        )?;
        let now = now_ms();
        let meta = RuleMeta {
            set: set.to_string(),
            name: spec.name,
            description: spec.description,
            pattern,
            enabled: spec.enabled,
            transform,
            created_ms: now,
            updated_ms: now,
        };
        self.insert(&self.rules, key, &meta)?;
        self.finish_mutation()?;
        Ok(meta)
    }

    /// The rules of `set`, by name.
    pub fn list_rules(&self, set: &str) -> Result<Vec<RuleMeta>> {
        self.get_set(set)?;
        self.rules
            .scan_prefix(keys::rules_prefix(set))
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("scan rules", e))?;
                decode(&v)
            })
            .collect()
    }

    /// One rule.
    pub fn get_rule(&self, set: &str, rule: &str) -> Result<RuleMeta> {
        self.get_set(set)?;
        match self.get_raw(&self.rules, &keys::rule_key(set, rule))? {
            Some(v) => decode(&v),
            None => Err(not_found(
                codes::RULE_NOT_FOUND,
                format!("no rule {rule:?} in event set {set:?}"),
            )),
        }
    }

    /// Changes a rule.
    pub fn update_rule(&self, set: &str, rule: &str, patch: RulePatch) -> Result<RuleMeta> {
        if let Some(d) = &patch.description {
            validate_description(d)?;
        }
        let pattern = patch.pattern.as_ref().map(validate_pattern).transpose()?;
        let transform = match &patch.transform {
            None => None,
            Some(Value::Null) => Some(None),
            Some(t) => Some(validate_transform(Some(t))?),
        };
        let _guard = self.lock();
        let mut meta = self.get_rule(set, rule)?;
        if let Some(d) = patch.description {
            meta.description = d;
        }
        if let Some(p) = pattern {
            meta.pattern = p;
        }
        if let Some(e) = patch.enabled {
            meta.enabled = e;
        }
        if let Some(t) = transform {
            meta.transform = t;
        }
        meta.updated_ms = now_ms().max(meta.created_ms);
        self.insert(&self.rules, keys::rule_key(set, rule), &meta)?;
        self.finish_mutation()?;
        Ok(meta)
    }

    /// Deletes a rule that has no targets.
    pub fn delete_rule(&self, set: &str, rule: &str) -> Result<()> {
        let _guard = self.lock();
        self.get_rule(set, rule)?;
        if self.has_prefix(&self.targets, &keys::targets_prefix(set, rule))? {
            return Err(conflict(
                codes::RULE_IN_USE,
                format!("rule {rule:?} still has targets; delete them first"),
            ));
        }
        self.rules
            .remove(keys::rule_key(set, rule))
            .map_err(|e| self.err("delete rule", e))?;
        self.finish_mutation()
    }

    // ----- targets ----------------------------------------------------------------------------

    /// Creates a target on `set`/`rule` from a target body (INTERFACE.md "Target body").
    pub fn create_target(&self, set: &str, rule: &str, body: Value) -> Result<TargetMeta> {
        let (name, target_type) = validate_target_body(&body)?;
        check_not_own_set(set, &body)?;
        let config = to_json_text(&body)?;

        let _guard = self.lock();
        self.get_rule(set, rule)?;
        let key = keys::target_key(set, rule, &name);
        if self.get_raw(&self.targets, &key)?.is_some() {
            return Err(conflict(
                codes::TARGET_IN_USE,
                format!("target {name:?} already exists on rule {rule:?}"),
            ));
        }
        self.ensure_room(
            &self.targets,
            &keys::targets_prefix(set, rule),
            self.limits.max_targets_per_rule,
            codes::TARGET_LIMIT,
            "targets per rule",
        )?;
        let now = now_ms();
        let meta = TargetMeta {
            set: set.to_string(),
            rule: rule.to_string(),
            name,
            config,
            target_type,
            created_ms: now,
            updated_ms: now,
        };
        let value = codec::encode(&meta)?;
        // A new binding starts without a cursor, retries or dead letters, even if a crash (or a
        // delivery write racing an earlier delete) once left some behind under this key.
        let stale = self.binding_state_keys(&key)?;
        self.with_state_removed(&self.targets, &stale, "create target", |t| {
            t.insert(key.as_slice(), value.as_slice())?;
            Ok(())
        })?;
        self.finish_mutation()?;
        Ok(meta)
    }

    /// The targets of `set`/`rule`, by name.
    pub fn list_targets(&self, set: &str, rule: &str) -> Result<Vec<TargetMeta>> {
        self.get_rule(set, rule)?;
        self.targets
            .scan_prefix(keys::targets_prefix(set, rule))
            .map(|kv| {
                let (_, v) = kv.map_err(|e| self.err("scan targets", e))?;
                decode(&v)
            })
            .collect()
    }

    /// One target.
    pub fn get_target(&self, set: &str, rule: &str, target: &str) -> Result<TargetMeta> {
        self.get_rule(set, rule)?;
        match self.get_raw(&self.targets, &keys::target_key(set, rule, target))? {
            Some(v) => decode(&v),
            None => Err(not_found(
                codes::TARGET_NOT_FOUND,
                format!("no target {target:?} on rule {rule:?} of event set {set:?}"),
            )),
        }
    }

    /// Changes a target: `patch` is a JSON merge patch (RFC 7386) applied to the stored body;
    /// the result must be a valid body. `name` may be left out but not changed.
    pub fn update_target(
        &self,
        set: &str,
        rule: &str,
        target: &str,
        patch: Value,
    ) -> Result<TargetMeta> {
        self.update_target_checked(set, rule, target, patch, |_| Ok(()))
    }

    /// [`Catalog::update_target`], with `check` run on the patched body before it is validated
    /// and stored: for what only the caller knows (the server's configured commands).
    pub fn update_target_checked(
        &self,
        set: &str,
        rule: &str,
        target: &str,
        patch: Value,
        check: impl FnOnce(&Value) -> Result<()>,
    ) -> Result<TargetMeta> {
        if !patch.is_object() {
            return Err(invalid(
                codes::INVALID_PARAMETER_VALUE,
                "$",
                "a target patch must be a JSON object",
            ));
        }
        if let Some(n) = patch.get("name")
            && n.as_str() != Some(target)
        {
            return Err(invalid(
                codes::INVALID_TARGET_NAME,
                "$.name",
                "a target cannot be renamed",
            ));
        }
        let _guard = self.lock();
        let mut meta = self.get_target(set, rule, target)?;
        let mut body: Value = serde_json::from_str(&meta.config)
            .map_err(|e| Error::Codec(format!("stored target body: {e}")))?;
        merge_patch(&mut body, &patch);
        check(&body)?;
        let (_, target_type) = validate_target_body(&body)?;
        check_not_own_set(set, &body)?;
        meta.config = to_json_text(&body)?;
        meta.target_type = target_type;
        meta.updated_ms = now_ms().max(meta.created_ms);
        self.insert(&self.targets, keys::target_key(set, rule, target), &meta)?;
        self.finish_mutation()?;
        Ok(meta)
    }

    /// Deletes a target with its whole delivery state: cursor, retries and dead letters, in one
    /// transaction, so a crash never leaves state without its target.
    pub fn delete_target(&self, set: &str, rule: &str, target: &str) -> Result<()> {
        let _guard = self.lock();
        self.get_target(set, rule, target)?;
        let key = keys::target_key(set, rule, target);
        // Collected under the write lock, which every writer of these trees holds, so the
        // transaction below removes exactly the binding's entries.
        let stale = self.binding_state_keys(&key)?;
        self.with_state_removed(&self.targets, &stale, "delete target", |t| {
            t.remove(key.as_slice())?;
            Ok(())
        })?;
        self.finish_mutation()
    }

    // ----- cursors ----------------------------------------------------------------------------

    /// The cursor (next offset to deliver) of a binding; `None` if never set.
    pub fn get_cursor(&self, set: &str, rule: &str, target: &str) -> Result<Option<u64>> {
        self.get_target(set, rule, target)?;
        let key = keys::target_key(set, rule, target);
        match self.get_raw(&self.cursors, &key)? {
            None => Ok(None),
            Some(v) => keys::decode_offset(&v).map(Some).ok_or_else(|| {
                Error::Codec(format!("cursor value of {} bytes, expected 8", v.len()))
            }),
        }
    }

    /// Durably sets the cursor of a binding, backwards too (an explicit seek; the delivery
    /// engine's own progress goes through `apply_delivery`, which never moves it back).
    pub fn put_cursor(&self, set: &str, rule: &str, target: &str, offset: u64) -> Result<()> {
        self.put_binding_cursor(&BindingId::new(set, rule, target), offset)
    }

    /// [`Catalog::put_cursor`] for any binding, a replay's too.
    pub fn put_binding_cursor(&self, id: &BindingId, offset: u64) -> Result<()> {
        let _guard = self.lock();
        self.check_binding(id)?;
        self.cursors
            .insert(id.key(), &keys::encode_offset(offset)[..])
            .map_err(|e| self.err("put cursor", e))?;
        self.finish_mutation()
    }

    // ----- helpers ----------------------------------------------------------------------------

    fn lock(&self) -> MutexGuard<'_, ()> {
        // The mutex guards no data, so a panic while holding it leaves nothing inconsistent.
        self.write_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn err(&self, op: &'static str, e: sled::Error) -> Error {
        sled_err(op, &self.path, e)
    }

    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(drop)
            .map_err(|e| self.err("flush catalog", e))
    }

    /// Ends a configuration change (not the delivery engine's own writes): flushes, then bumps
    /// the generation [`Catalog::subscribe`] watches. The bump happens even when the flush
    /// fails, because readers already see the change in sled's memory and the engine must
    /// reconcile with what readers see.
    fn finish_mutation(&self) -> Result<()> {
        let flushed = self.flush();
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
        flushed
    }

    /// The delivery state of the live binding with key `target_key`: its cursor and counters
    /// (exact keys) and its entries in `retries` and `dead_letters` (under `key 00`). Only
    /// meaningful under the write lock (no writer can add one meanwhile).
    fn binding_state_keys(&self, target_key: &[u8]) -> Result<StateKeys> {
        let mut prefix = target_key.to_vec();
        prefix.push(keys::SEP);
        let own = vec![sled::IVec::from(target_key)];
        Ok(StateKeys {
            cursors: own.clone(),
            retries: self.keys_under(&self.retries, &prefix)?,
            dead_letters: self.keys_under(&self.dead_letters, &prefix)?,
            counters: own,
        })
    }

    /// All delivery state under `prefix` (every binding of a replay, or of a set's replays).
    /// Only meaningful under the write lock.
    fn state_keys_under(&self, prefix: &[u8]) -> Result<StateKeys> {
        Ok(StateKeys {
            cursors: self.keys_under(&self.cursors, prefix)?,
            retries: self.keys_under(&self.retries, prefix)?,
            dead_letters: self.keys_under(&self.dead_letters, prefix)?,
            counters: self.keys_under(&self.counters, prefix)?,
        })
    }

    fn keys_under(&self, tree: &sled::Tree, prefix: &[u8]) -> Result<Vec<sled::IVec>> {
        tree.scan_prefix(prefix)
            .keys()
            .map(|k| k.map_err(|e| self.err("scan delivery state", e)))
            .collect()
    }

    /// One transaction: `f` changes `main` (the `targets` or `replays` entry whose state this
    /// is) and `stale` delivery state goes, so a crash never leaves state without its owner,
    /// or a new owner with an old owner's state.
    fn with_state_removed(
        &self,
        main: &sled::Tree,
        stale: &StateKeys,
        op: &'static str,
        f: impl Fn(&TransactionalTree) -> ConflictableTransactionResult<(), Error>,
    ) -> Result<()> {
        self.transaction(
            (
                main,
                &self.cursors,
                &self.retries,
                &self.dead_letters,
                &self.counters,
            ),
            op,
            |(m, c, r, d, n)| {
                f(m)?;
                remove_all(c, &stale.cursors)?;
                remove_all(r, &stale.retries)?;
                remove_all(d, &stale.dead_letters)?;
                remove_all(n, &stale.counters)?;
                Ok(())
            },
        )
    }

    fn get_raw(&self, tree: &sled::Tree, key: &[u8]) -> Result<Option<sled::IVec>> {
        tree.get(key).map_err(|e| self.err("read catalog", e))
    }

    fn insert<T: Serialize>(&self, tree: &sled::Tree, key: Vec<u8>, value: &T) -> Result<()> {
        tree.insert(key, codec::encode(value)?)
            .map(drop)
            .map_err(|e| self.err("write catalog", e))
    }

    fn has_prefix(&self, tree: &sled::Tree, prefix: &[u8]) -> Result<bool> {
        match tree.scan_prefix(prefix).next() {
            None => Ok(false),
            Some(kv) => kv.map(|_| true).map_err(|e| self.err("scan catalog", e)),
        }
    }

    fn count_prefix(&self, tree: &sled::Tree, prefix: &[u8]) -> Result<usize> {
        let mut n = 0;
        for kv in tree.scan_prefix(prefix) {
            kv.map_err(|e| self.err("scan catalog", e))?;
            n += 1;
        }
        Ok(n)
    }

    /// Runs `f` as one sled transaction over `trees`. sled may run `f` more than once (on a
    /// conflict), so it must only stage writes: encode values before, not inside. `f` aborts
    /// with the error to return (e.g. an undecodable stored value).
    fn transaction<T, F>(&self, trees: T, op: &'static str, f: F) -> Result<()>
    where
        T: Transactional<Error>,
        F: Fn(&T::View) -> ConflictableTransactionResult<(), Error>,
    {
        trees.transaction(f).map_err(|e| match e {
            TransactionError::Storage(e) => self.err(op, e),
            TransactionError::Abort(e) => e,
        })
    }
}

/// Stages the removal of every key in `keys` in a transaction.
/// Keys of delivery state to remove, per tree.
struct StateKeys {
    cursors: Vec<sled::IVec>,
    retries: Vec<sled::IVec>,
    dead_letters: Vec<sled::IVec>,
    counters: Vec<sled::IVec>,
}

fn remove_all(
    tree: &TransactionalTree,
    keys: &[sled::IVec],
) -> ConflictableTransactionResult<(), Error> {
    for k in keys {
        tree.remove(k.clone())?;
    }
    Ok(())
}

/// How long `open` waits for another handle of the same catalog to let go of sled's file lock.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Opens the sled database, waiting up to [`LOCK_WAIT`] for its file lock: after the last
/// handle of a catalog is dropped, sled's background I/O threads may hold the locked file a
/// moment longer, so an immediate reopen in the same process (a restart, a test) can briefly
/// see "could not acquire lock". A second live process still gets the error, after the wait.
fn open_db(path: &Path) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    let mut pause = Duration::from_millis(5);
    loop {
        let opened = sled::Config::new()
            .path(path)
            // Every mutation flushes itself; no background flusher needed.
            .flush_every_ms(None)
            .cache_capacity(64 * 1024 * 1024)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Err(e) => return Err(sled_err("open catalog", path, e)),
        }
    }
}

// ----- validation -----------------------------------------------------------------------------

/// Whether `name` is a valid name of an event set, rule or target: 2-60 characters of letters,
/// digits, `_` or `-`, starting with a letter.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let len = name.chars().count();
    let first_ok = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    (2..=60).contains(&len) && first_ok && chars_ok
}

fn validate_name(name: &str, code: &str) -> Result<()> {
    if !is_valid_name(name) {
        return Err(invalid(
            code,
            "$.name",
            format!(
                "name {name:?} must be 2-60 characters of letters, digits, '_' or '-', \
                 starting with a letter"
            ),
        ));
    }
    Ok(())
}

fn validate_description(description: &str) -> Result<()> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(invalid(
            codes::INVALID_DESCRIPTION,
            "$.description",
            format!("description longer than {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    Ok(())
}

fn validate_retention(r: &RetentionSpec) -> Result<()> {
    if r.max_age_hours == Some(0) {
        return Err(invalid(
            codes::INVALID_RETENTION,
            "$.retention.max_age_hours",
            "max_age_hours must be > 0 (leave it out to keep events forever)",
        ));
    }
    if r.max_bytes == Some(0) {
        return Err(invalid(
            codes::INVALID_RETENTION,
            "$.retention.max_bytes",
            "max_bytes must be > 0 (leave it out for no size cap)",
        ));
    }
    Ok(())
}

/// Compiles the pattern to validate it (operators, operand types, CIDRs, numeric ranges,
/// nesting and size); returns its JSON text. The error path points into the request body:
/// `$.pattern.data.name[0].prefix`.
fn validate_pattern(pattern: &Value) -> Result<String> {
    if let Err(e) = crate::pattern::Pattern::parse(pattern) {
        let path = e.path_under("$.pattern");
        return Err(invalid(
            codes::INVALID_PATTERN,
            &path,
            format!("invalid event pattern: {}", e.message),
        ));
    }
    to_json_text(pattern)
}

fn validate_transform(transform: Option<&Value>) -> Result<Option<String>> {
    match transform {
        None | Some(Value::Null) => Ok(None),
        Some(t @ Value::Object(_)) => {
            // Compiled to validate: a bad one is refused with the path of the problem.
            crate::transform::Transform::compile_under(t, "$.transform")?;
            to_json_text(t).map(Some)
        }
        Some(_) => Err(invalid(
            codes::INVALID_TRANSFORM,
            "$.transform",
            "the transformation must be a JSON object",
        )),
    }
}

/// Refuses an `event-set` target putting into its own rule's set (`$.event-set.name`): every
/// event it forwards would match the rule again. Longer loops are cut by the hop limit.
fn check_not_own_set(set: &str, body: &Value) -> Result<()> {
    if body.get("type").and_then(Value::as_str) == Some("event-set") {
        let settings = body.get("event-set").unwrap_or(&Value::Null);
        crate::targets::event_set::EventSetSettings::parse(settings)?.check_not_own_set(set)?;
    }
    Ok(())
}

/// Checks a target body; returns its (name, type).
fn validate_target_body(body: &Value) -> Result<(String, String)> {
    let Some(obj) = body.as_object() else {
        return Err(invalid(
            codes::INVALID_PARAMETER_VALUE,
            "$",
            "a target must be a JSON object",
        ));
    };
    let Some(name) = obj.get("name").and_then(Value::as_str) else {
        return Err(invalid(
            codes::INVALID_TARGET_NAME,
            "$.name",
            "a target needs a string \"name\"",
        ));
    };
    validate_name(name, codes::INVALID_TARGET_NAME)?;
    if let Some(d) = obj.get("description") {
        let Some(d) = d.as_str() else {
            return Err(invalid(
                codes::INVALID_DESCRIPTION,
                "$.description",
                "the description must be a string",
            ));
        };
        validate_description(d)?;
    }

    let ty = obj.get("type").and_then(Value::as_str).unwrap_or_default();
    if !TARGET_TYPES.contains(&ty) {
        return Err(invalid(
            codes::INVALID_TARGET_TYPE,
            "$.type",
            format!("\"type\" must be one of {}", TARGET_TYPES.join(", ")),
        ));
    }
    let settings_path = format!("$.{ty}");
    let Some(settings_value) = obj.get(ty).filter(|v| v.is_object()) else {
        return Err(invalid(
            codes::INVALID_TARGET_DESCRIPTION,
            &settings_path,
            format!("a target of type {ty:?} needs an object {ty:?} with its settings"),
        ));
    };
    // A misspelt key ("orderd", "retyr") would silently leave a default in force.
    const TOP_LEVEL: [&str; 9] = [
        "name",
        "description",
        "type",
        "retry",
        "dead_letter",
        "batch",
        "ordered",
        "max_in_flight",
        "start",
    ];
    if let Some(unknown) = obj
        .keys()
        .find(|k| !TOP_LEVEL.contains(&k.as_str()) && k.as_str() != ty)
    {
        return Err(invalid(
            codes::INVALID_PARAMETER_VALUE,
            &format!("$.{unknown}"),
            format!(
                "unknown target field {unknown:?} (fields: {}, and the settings object {ty:?})",
                TOP_LEVEL.join(", ")
            ),
        ));
    }
    for (section, fields) in [
        (
            "retry",
            &[
                "max_attempts",
                "max_age_seconds",
                "initial_backoff_ms",
                "max_backoff_ms",
            ][..],
        ),
        ("batch", &["max_events", "max_wait_ms"][..]),
        ("dead_letter", &["mode"][..]),
    ] {
        if let Some(Value::Object(m)) = obj.get(section)
            && let Some(unknown) = m.keys().find(|k| !fields.contains(&k.as_str()))
        {
            return Err(invalid(
                codes::INVALID_PARAMETER_VALUE,
                &format!("$.{section}.{unknown}"),
                format!(
                    "unknown field {unknown:?} in \"{section}\" (fields: {})",
                    fields.join(", ")
                ),
            ));
        }
    }
    let settings = settings_value.as_object();
    if ty == "http" {
        let url = settings
            .and_then(|s| s.get("url"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(str::is_empty) {
            return Err(invalid(
                codes::INVALID_TARGET_DESCRIPTION,
                "$.http.url",
                "\"url\" must be an http:// or https:// URL",
            ));
        }
    }
    // The type's own settings (`$.http.mode`, headers, timeouts...), as the target will read
    // them, so a body that is stored can also be built.
    crate::targets::validate(ty, settings_value)?;

    if let Some(retry) = obj.get("retry") {
        validate_retry(retry)?;
    }
    if let Some(dl) = obj.get("dead_letter") {
        let Some(dl) = dl.as_object() else {
            return Err(invalid(
                codes::INVALID_DEAD_LETTER,
                "$.dead_letter",
                "\"dead_letter\" must be an object",
            ));
        };
        if let Some(mode) = dl.get("mode")
            && !mode
                .as_str()
                .is_some_and(|m| DEAD_LETTER_MODES.contains(&m))
        {
            return Err(invalid(
                codes::INVALID_DEAD_LETTER,
                "$.dead_letter.mode",
                format!(
                    "\"dead_letter.mode\" must be one of {}",
                    DEAD_LETTER_MODES.join(", ")
                ),
            ));
        }
    }
    if let Some(batch) = obj.get("batch") {
        let Some(batch) = batch.as_object() else {
            return Err(invalid(
                codes::INVALID_PARAMETER_VALUE,
                "$.batch",
                "\"batch\" must be an object",
            ));
        };
        let max_events = int_in(
            batch.get("max_events"),
            1..=MAX_BATCH_EVENTS,
            codes::INVALID_BATCH_COUNT,
            "$.batch.max_events",
            format!("\"batch.max_events\" must be an integer 1-{MAX_BATCH_EVENTS}"),
        )?;
        int_in(
            batch.get("max_wait_ms"),
            0..=MAX_BATCH_WAIT_MS,
            codes::INVALID_BATCH_TIMEOUT,
            "$.batch.max_wait_ms",
            format!("\"batch.max_wait_ms\" must be an integer 0-{MAX_BATCH_WAIT_MS}"),
        )?;
        // A binary-mode HTTP request carries one event (its data is the body, its attributes
        // the headers), so it cannot carry a batch.
        let binary = ty == "http"
            && settings.and_then(|s| s.get("mode")).and_then(Value::as_str) == Some("binary");
        if binary && max_events.is_some_and(|n| n > 1) {
            return Err(invalid(
                codes::INVALID_BATCH_COUNT,
                "$.batch.max_events",
                "\"batch.max_events\" must be 1 when \"http.mode\" is \"binary\" \
                 (one event per request)",
            ));
        }
    }
    if let Some(ordered) = obj.get("ordered")
        && !ordered.is_boolean()
    {
        return Err(invalid(
            codes::INVALID_PARAMETER_VALUE,
            "$.ordered",
            "\"ordered\" must be true or false",
        ));
    }
    int_in(
        obj.get("max_in_flight"),
        1..=MAX_IN_FLIGHT_LIMIT,
        codes::INVALID_PARAMETER_VALUE,
        "$.max_in_flight",
        format!("\"max_in_flight\" must be an integer 1-{MAX_IN_FLIGHT_LIMIT}"),
    )?;
    if let Some(start) = obj.get("start")
        && delivery::parse_start(start).is_none()
    {
        return Err(invalid(
            codes::INVALID_PARAMETER_VALUE,
            "$.start",
            "\"start\" must be \"latest\", \"earliest\" or {\"time\": <epoch ms>}",
        ));
    }
    Ok((name.to_string(), ty.to_string()))
}

fn validate_retry(retry: &Value) -> Result<()> {
    let Some(retry) = retry.as_object() else {
        return Err(invalid(
            codes::INVALID_RETRY,
            "$.retry",
            "\"retry\" must be an object",
        ));
    };
    let field = |name: &str, min: u64| {
        int_in(
            retry.get(name),
            min..=u64::MAX,
            codes::INVALID_RETRY,
            &format!("$.retry.{name}"),
            format!("\"retry.{name}\" must be an integer >= {min}"),
        )
    };
    // It counts every attempt, the first included, so 0 would mean "never deliver".
    field("max_attempts", 1)?;
    field("max_age_seconds", 0)?;
    let initial = field("initial_backoff_ms", 0)?.unwrap_or(DEFAULT_INITIAL_BACKOFF_MS);
    let max = field("max_backoff_ms", 0)?.unwrap_or(DEFAULT_MAX_BACKOFF_MS);
    if initial > max {
        return Err(invalid(
            codes::INVALID_RETRY,
            "$.retry.initial_backoff_ms",
            format!("initial_backoff_ms ({initial}) is above max_backoff_ms ({max})"),
        ));
    }
    Ok(())
}

// ----- small helpers --------------------------------------------------------------------------

/// A present `value` must be an integer in `range` (else `code` at `path` with `message`);
/// `None` when it is absent.
fn int_in(
    value: Option<&Value>,
    range: std::ops::RangeInclusive<u64>,
    code: &str,
    path: &str,
    message: String,
) -> Result<Option<u64>> {
    match value {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| range.contains(n))
            .map(Some)
            .ok_or_else(|| invalid(code, path, message)),
    }
}

fn deny_cloud(meta: &EventSetMeta) -> Result<()> {
    if meta.kind == SetKind::Cloud {
        return Err(Error::rejected(
            RejectKind::Denied,
            codes::IMMUTABLE,
            None,
            format!(
                "the cloud-service event set {:?} cannot be modified or deleted",
                meta.name
            ),
        ));
    }
    Ok(())
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(t) = target {
        for (k, v) in patch {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

fn to_json_text(v: &Value) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::Codec(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    codec::decode_exact(bytes)
}

fn invalid(code: &str, path: &str, message: impl Into<String>) -> Error {
    Error::rejected(RejectKind::Invalid, code, Some(path), message)
}

fn conflict(code: &str, message: String) -> Error {
    Error::rejected(RejectKind::Conflict, code, None, message)
}

fn not_found(code: &str, message: String) -> Error {
    Error::rejected(RejectKind::NotFound, code, None, message)
}

fn limit(code: &str, message: String) -> Error {
    Error::rejected(RejectKind::LimitExceeded, code, None, message)
}

fn sled_err(op: &'static str, path: &Path, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => Error::io(op, path, io),
        sled::Error::Corruption { at, .. } => Error::Corrupt {
            path: path.to_path_buf(),
            position: 0,
            detail: format!("sled reports corruption at {at:?} during {op}"),
        },
        other => Error::io(op, path, std::io::Error::other(other.to_string())),
    }
}

fn validate_dedup_window(w: u64) -> Result<()> {
    if w > MAX_DEDUP_WINDOW_MS {
        return Err(invalid(
            codes::INVALID_PARAMETER_VALUE,
            "$.dedup_window_ms",
            format!("dedup_window_ms is {w}; the largest window is {MAX_DEDUP_WINDOW_MS} (24 h)"),
        ));
    }
    Ok(())
}

fn now_ms() -> u64 {
    crate::config::now_ms()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut v = json!({"a": 1, "b": {"c": 2, "d": 3}, "e": [1]});
        merge_patch(
            &mut v,
            &json!({"a": null, "b": {"c": 9}, "e": {"x": 1}, "f": 4}),
        );
        assert_eq!(v, json!({"b": {"c": 9, "d": 3}, "e": {"x": 1}, "f": 4}));
    }

    #[test]
    fn names_accept_the_documented_alphabet() {
        assert!(validate_name("ab", "c").is_ok());
        assert!(validate_name(&format!("a{}", "-_9".repeat(19) + "xy"), "c").is_ok());
        for bad in ["a", "1ab", "_ab", "a b", "a\0b", "ab.c", "日本"] {
            assert!(validate_name(bad, "c").is_err(), "{bad:?} accepted");
        }
        assert!(validate_name(&"a".repeat(61), "c").is_err());
        assert!(validate_name(&"a".repeat(60), "c").is_ok());
    }

    #[test]
    fn retention_spec_converts_to_log_policy() {
        let p = RetentionSpec::custom_default().to_policy();
        assert_eq!(p.max_age, Some(Duration::from_secs(7 * 24 * 3600)));
        assert_eq!(p.max_bytes, None);
    }
}
