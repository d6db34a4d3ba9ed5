//! The embeddable event bus: the catalog (event sets, rules, targets) plus one [`EventLog`] per
//! event set, and the put path with its per-entry results, the rules of the built-in `default`
//! cloud service event set, and de-duplication.
//!
//! Layout of a data directory:
//! ```text
//! DATA/catalog/        sled database (event sets, rules, targets, cursors)
//! DATA/sets/NAME/      one log per event set (see docs/FORMAT.md)
//! ```

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::watch;

use crate::catalog::{Catalog, CatalogLimits, EventSetMeta, SetKind};
use crate::config::PersistPolicy;
use crate::error::{Error, RejectKind, Result};
use crate::event::{Event, EventInput, EventLimits, cloud_event_type_parts, is_cloud_source};
use crate::store::{EventLog, LogOptions, LogReader, LogStats};

pub use crate::catalog::DEFAULT_SET;

/// How to open an [`EventBus`].
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Where the catalog and the logs live. Default = `./data`.
    pub data_dir: PathBuf,
    /// Durability of appends. Default = `Always`.
    pub persist: PersistPolicy,
    /// Segment size of every log. Default = 128 MiB.
    pub max_segment_bytes: u64,
    /// Event validation limits. Default = 64 KiB per event.
    pub event_limits: EventLimits,
    /// Catalog limits.
    pub catalog_limits: CatalogLimits,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            data_dir: PathBuf::from(crate::config::DEFAULT_DATA_DIR),
            persist: PersistPolicy::Always,
            max_segment_bytes: crate::config::DEFAULT_MAX_SEGMENT_BYTES,
            event_limits: EventLimits::default(),
            catalog_limits: CatalogLimits::default(),
        }
    }
}

/// Who is putting events: only cloud producers may write to `default`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// A cloud service (the HTTP layer maps the `cloud` and `admin` token roles here).
    Cloud,
    /// An application.
    Custom,
    /// The bus itself, forwarding events already stored in one of its sets into another
    /// (`event-set` targets). Like [`Producer::Custom`] it cannot write to `default`, but a
    /// custom set takes the cloud-service events (`*.cloud.tencent`) it forwards out of
    /// `default`, which it refuses from applications.
    Forward,
}

/// The result of one entry of a put.
#[derive(Debug)]
pub enum PutEntry {
    /// Stored (or recognised as a duplicate of a stored event, with its original offset).
    Stored {
        /// The event's id (assigned when the producer gave none).
        id: String,
        /// Its offset in the event set's log.
        offset: u64,
        /// True when this was a repeat of an event inside the de-duplication window.
        duplicate: bool,
    },
    /// Refused; the other entries are unaffected.
    Failed(Error),
}

/// The result of a put: one entry per input, in order.
#[derive(Debug)]
pub struct PutOutcome {
    /// Per-entry results.
    pub entries: Vec<PutEntry>,
    /// How many entries failed.
    pub failed: usize,
}

/// An event set's catalog entry and the extent of its log.
#[derive(Debug, Clone)]
pub struct EventSetInfo {
    /// The catalog entry.
    pub meta: EventSetMeta,
    /// Count, bytes, first/last offset and time.
    pub stats: LogStats,
}

/// A `(source, id)` pair as a keyed 128-bit SipHash: 16 bytes per remembered event instead of
/// two copies of both strings, so a busy window stays affordable (at 40 k events/s a 120 s
/// window holds 4.8 M keys). The key is random per process, so producers cannot aim for
/// collisions; by chance, two of a window's keys collide with probability about n²/2¹²⁹
/// (5·10⁻²⁶ for 4.8 M keys).
type DedupKey = u128;

fn dedup_key(keys: &(u64, u64), source: &str, id: &str) -> DedupKey {
    use std::hash::Hasher;
    let mut h = siphasher::sip128::SipHasher13::new_with_keys(keys.0, keys.1);
    // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
    h.write_usize(source.len());
    h.write(source.as_bytes());
    h.write(id.as_bytes());
    siphasher::sip128::Hasher128::finish128(&h).as_u128()
}

/// The keys are already uniform hashes; hashing them again would only cost time.
type KeyMap<V> = HashMap<DedupKey, V, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>;

#[derive(Debug, Clone)]
enum Seen {
    /// Being appended by another put; its result arrives on the channel.
    Pending(watch::Receiver<Option<std::result::Result<u64, String>>>),
    /// Stored at this offset, ingested at this time.
    Stored(u64, u64),
}

/// Recent (source, id) pairs of one event set, for the de-duplication window.
#[derive(Debug, Default)]
struct Dedup {
    seen: KeyMap<Seen>,
    /// Stored keys by ingest time, oldest first, for expiry.
    order: VecDeque<(u64, DedupKey)>,
}

impl Dedup {
    fn expire(&mut self, cutoff_ms: u64) {
        while let Some(&(t, key)) = self.order.front() {
            if t >= cutoff_ms {
                break;
            }
            self.order.pop_front();
            if matches!(self.seen.get(&key), Some(Seen::Stored(_, t2)) if *t2 < cutoff_ms) {
                self.seen.remove(&key);
            }
        }
    }
    fn stored(&mut self, key: DedupKey, offset: u64, time_ms: u64) {
        self.seen.insert(key, Seen::Stored(offset, time_ms));
        self.order.push_back((time_ms, key));
    }
}

/// Finishes the de-duplication bookkeeping of one append: the pending markers become stored
/// entries (or are removed if the append failed) and waiters are told. If the put's future is
/// dropped mid-append (a client gave up during the fsync), `Drop` hands the ticket to a task
/// that does the same when the append completes, so markers never leak and a retry finds the
/// events as duplicates. The common path needs no task of its own.
struct PendingAppend {
    set: Arc<SetLog>,
    ticket: Option<crate::store::AppendTicket>,
    keys: Vec<DedupKey>,
    done: Option<watch::Sender<Option<std::result::Result<u64, String>>>>,
}

impl PendingAppend {
    async fn wait(mut self) -> Result<crate::store::AppendOutcome> {
        let outcome = match self.ticket.as_mut() {
            Some(t) => t.await,
            None => Err(Error::Closed),
        };
        self.ticket = None;
        self.finish(&outcome);
        outcome
    }

    fn finish(&mut self, outcome: &Result<crate::store::AppendOutcome>) {
        if !self.keys.is_empty() {
            let mut d = self.set.dedup.lock().unwrap_or_else(|p| p.into_inner());
            for (i, key) in self.keys.drain(..).enumerate() {
                match outcome {
                    Ok(o) => d.stored(key, o.first_offset + i as u64, o.ingest_time_ms),
                    Err(_) => {
                        d.seen.remove(&key);
                    }
                }
            }
        }
        if let Some(done) = self.done.take() {
            let _ = done.send(Some(match outcome {
                Ok(o) => Ok(o.first_offset),
                Err(e) => Err(e.to_string()),
            }));
        }
    }
}

impl Drop for PendingAppend {
    fn drop(&mut self) {
        let Some(ticket) = self.ticket.take() else {
            return;
        };
        let mut rest = PendingAppend {
            set: self.set.clone(),
            ticket: None,
            keys: std::mem::take(&mut self.keys),
            done: self.done.take(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let outcome = ticket.await;
                    rest.finish(&outcome);
                });
            }
            // No runtime to wait on: release the markers now, as if the append failed; at
            // worst a retry stores the event a second time (at-least-once, not a loss).
            Err(_) => rest.finish(&Err(Error::Closed)),
        }
    }
}

struct SetLog {
    log: EventLog,
    dedup: Mutex<Dedup>,
    /// Copied from the catalog entry so a put needs no catalog read.
    cloud: bool,
    dedup_window_ms: AtomicU64,
}

/// The event bus: open it on a data directory, put and read events, manage event sets.
pub struct EventBus {
    config: BusConfig,
    catalog: Catalog,
    sets: RwLock<HashMap<String, Arc<SetLog>>>,
    /// Serialises creating, updating and deleting event sets, so the catalog, the map of open
    /// logs and the directories change together (a delete racing a create of the same name
    /// must not close or remove the new set's log).
    lifecycle: Mutex<()>,
    /// SipHash keys of the de-duplication windows, random per process.
    dedup_keys: (u64, u64),
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("data_dir", &self.config.data_dir)
            .finish_non_exhaustive()
    }
}

use crate::config::now_ms;

impl EventBus {
    /// Opens (creating if needed) the bus in `config.data_dir`: the catalog, the built-in
    /// `default` event set, and every event set's log (recovering each from any crash).
    pub fn open(config: BusConfig) -> Result<EventBus> {
        let catalog = Catalog::open(&config.data_dir.join("catalog"), config.catalog_limits)?;
        let bus = EventBus {
            config,
            catalog,
            sets: RwLock::new(HashMap::new()),
            lifecycle: Mutex::new(()),
            dedup_keys: (rand::random(), rand::random()),
        };
        let sets = bus.catalog.list_sets()?;
        bus.remove_deleted_set_dirs(&sets)?;
        for meta in &sets {
            bus.open_set_log(meta)?;
        }
        Ok(bus)
    }

    /// A directory under `sets/` that no catalog entry names can only be what is left of a
    /// deleted set (the catalog entry is written before a set's directory exists and removed
    /// before it is deleted): a crash cut the deletion short. Finish it, so a later set of the
    /// same name never inherits those events.
    fn remove_deleted_set_dirs(&self, sets: &[EventSetMeta]) -> Result<()> {
        let root = self.config.data_dir.join("sets");
        let entries = match std::fs::read_dir(&root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io("list", &root, e)),
        };
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("list", &root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().is_dir() && !sets.iter().any(|m| m.name == name) {
                tracing::warn!(
                    dir = %entry.path().display(),
                    "removing the directory of a deleted event set (its deletion was interrupted)"
                );
                std::fs::remove_dir_all(entry.path())
                    .map_err(|e| Error::io("remove", entry.path(), e))?;
                removed = true;
            }
        }
        if removed {
            std::fs::File::open(&root)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("fsync dir", &root, e))?;
        }
        Ok(())
    }

    fn open_set_log(&self, meta: &EventSetMeta) -> Result<Arc<SetLog>> {
        let opts = LogOptions {
            persist: self.config.persist,
            max_segment_bytes: self.config.max_segment_bytes,
            retention: meta.retention.to_policy(),
            ..LogOptions::default()
        };
        let log = EventLog::open(self.log_dir(&meta.name), opts)?;
        let mut dedup = Dedup::default();
        if meta.dedup_window_ms > 0 {
            // Rebuild the window from the log itself: no separate state to keep durable.
            let from = now_ms().saturating_sub(meta.dedup_window_ms);
            let mut reader = log.read_from_time(from)?;
            for r in reader.records() {
                let r = r?;
                let key = dedup_key(&self.dedup_keys, &r.event.source, &r.event.id);
                dedup.stored(key, r.offset, r.ingest_time_ms);
            }
        }
        let set = Arc::new(SetLog {
            log,
            dedup: Mutex::new(dedup),
            cloud: meta.kind == SetKind::Cloud,
            dedup_window_ms: AtomicU64::new(meta.dedup_window_ms),
        });
        self.sets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(meta.name.clone(), set.clone());
        Ok(set)
    }

    fn set(&self, name: &str) -> Result<Arc<SetLog>> {
        self.sets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| {
                Error::rejected(
                    RejectKind::NotFound,
                    "ResourceNotFound.EventSet",
                    None,
                    format!("event set `{name}` does not exist"),
                )
            })
    }

    /// The catalog, for rules, targets and cursors. Event sets are managed through the
    /// `EventBus` methods (`create_set`, `update_set`, `delete_set`), which also open, retune
    /// and remove their logs; the catalog's own set methods change only the catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Creates a custom event set and its log.
    pub fn create_set(
        &self,
        name: &str,
        description: Option<&str>,
        retention: Option<crate::catalog::RetentionSpec>,
        dedup_window_ms: Option<u64>,
    ) -> Result<EventSetInfo> {
        let _lifecycle = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        let meta = self
            .catalog
            .create_set(name, description, retention, dedup_window_ms)?;
        // A directory left by an earlier set of this name (deleted, then a crash before its
        // files were removed) must not leak old events into the new set.
        let dir = self.log_dir(name);
        let opened = if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))
        } else {
            Ok(())
        }
        .and_then(|()| self.open_set_log(&meta));
        let set = match opened {
            Ok(set) => set,
            Err(e) => {
                // Take the catalog entry back: a set without a log would be stuck.
                if let Err(undo) = self.catalog.delete_set(name) {
                    tracing::error!(set = name, "could not undo a failed create: {undo}");
                }
                return Err(e);
            }
        };
        Ok(EventSetInfo {
            stats: set.log.stats(),
            meta,
        })
    }

    /// Every event set with its stats.
    pub fn list_sets(&self) -> Result<Vec<EventSetInfo>> {
        self.catalog
            .list_sets()?
            .into_iter()
            .map(|meta| {
                let stats = self.set(&meta.name)?.log.stats();
                Ok(EventSetInfo { meta, stats })
            })
            .collect()
    }

    /// One event set with its stats.
    pub fn get_set(&self, name: &str) -> Result<EventSetInfo> {
        let meta = self.catalog.get_set(name)?;
        let stats = self.set(name)?.log.stats();
        Ok(EventSetInfo { meta, stats })
    }

    /// Updates an event set's description, retention or de-duplication window (refused for
    /// `default`). A new retention policy applies to the log at once.
    pub fn update_set(&self, name: &str, patch: crate::catalog::SetPatch) -> Result<EventSetInfo> {
        let _lifecycle = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        let meta = self.catalog.update_set(name, patch)?;
        let set = self.set(name)?;
        set.log.set_retention(meta.retention.to_policy());
        set.dedup_window_ms
            .store(meta.dedup_window_ms, Ordering::Relaxed);
        Ok(EventSetInfo {
            stats: set.log.stats(),
            meta,
        })
    }

    /// The open event sets, by name (a snapshot: the map's lock is not held afterwards).
    fn open_sets(&self) -> Vec<(String, Arc<SetLog>)> {
        let mut sets: Vec<(String, Arc<SetLog>)> = self
            .sets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        sets.sort_by(|a, b| a.0.cmp(&b.0));
        sets
    }

    /// Applies every event set's retention policy now; returns the records removed per set.
    pub async fn apply_retention(&self) -> Result<Vec<(String, u64)>> {
        let mut out = Vec::new();
        for (name, set) in self.open_sets() {
            let before = set.log.first_offset();
            let r = set.log.apply_retention().await?;
            out.push((name, r.first_offset - before));
        }
        Ok(out)
    }

    /// Deletes an event set (refused while it has rules, and for `default`) and its log.
    pub fn delete_set(&self, name: &str) -> Result<()> {
        let _lifecycle = self.lifecycle.lock().unwrap_or_else(|p| p.into_inner());
        self.catalog.delete_set(name)?;
        let set = self
            .sets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if let Some(set) = set {
            set.log.close()?;
        }
        let dir = self.log_dir(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io("remove", &dir, e))?;
            let parent = self.config.data_dir.join("sets");
            std::fs::File::open(&parent)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io("fsync dir", &parent, e))?;
        }
        Ok(())
    }

    /// Puts events into `set`. `entries` are CloudEvents objects or Tencent PutEvents
    /// entries; each gets its own result, and accepted ones are durable (per the persist
    /// policy) when this returns. Only [`Producer::Cloud`] may write to `default`, and only
    /// cloud-service events; custom sets refuse events claiming a `*.cloud.tencent` source.
    pub async fn put_events<I>(
        &self,
        set_name: &str,
        entries: I,
        producer: Producer,
    ) -> Result<PutOutcome>
    where
        I: IntoIterator,
        I::Item: EventInput,
    {
        let set = self.set(set_name)?;
        let cloud_set = set.cloud;
        if cloud_set && producer != Producer::Cloud {
            return Err(Error::rejected(
                RejectKind::Denied,
                "OperationDenied.CloudEventSet",
                None,
                format!("only cloud producers may put events into `{set_name}`"),
            ));
        }
        let now = now_ms();
        let entries = entries.into_iter();
        let mut results: Vec<Option<PutEntry>> = Vec::with_capacity(entries.size_hint().0);
        let mut events = Vec::new();
        let mut slots = Vec::new(); // result index of each event to append
        for (i, value) in entries.enumerate() {
            let path = format!("$[{i}]");
            match value
                .into_event(&path, now, &self.config.event_limits)
                .and_then(|e| check_set_rules(&e, cloud_set, producer, &path).map(|()| e))
            {
                Ok(e) => {
                    results.push(None);
                    slots.push(i);
                    events.push(e);
                }
                Err(e) => results.push(Some(PutEntry::Failed(e))),
            }
        }
        // De-duplication: claim each (source, id) or find it stored / being stored.
        let window = set.dedup_window_ms.load(Ordering::Relaxed);
        let mut waiters = Vec::new();
        let mut to_append = Vec::new();
        let mut keys = Vec::new();
        let mut done = None;
        if window > 0 {
            let (done_tx, done_rx) = watch::channel(None);
            done = Some(done_tx);
            let mut d = set.dedup.lock().unwrap_or_else(|p| p.into_inner());
            d.expire(now.saturating_sub(window));
            for (event, slot) in events.into_iter().zip(slots) {
                let key = dedup_key(&self.dedup_keys, &event.source, &event.id);
                match d.seen.get(&key) {
                    Some(Seen::Stored(offset, _)) => {
                        results[slot] = Some(PutEntry::Stored {
                            id: event.id,
                            offset: *offset,
                            duplicate: true,
                        });
                    }
                    Some(Seen::Pending(rx)) => waiters.push((slot, key, event.id, rx.clone())),
                    None => {
                        d.seen.insert(key, Seen::Pending(done_rx.clone()));
                        keys.push(key);
                        to_append.push((slot, event));
                    }
                }
            }
        } else {
            to_append = slots.into_iter().zip(events).collect();
        }
        if !to_append.is_empty() {
            let (slots, events): (Vec<usize>, Vec<Event>) = to_append.into_iter().unzip();
            let submitted = set.log.submit(&events);
            let ids: Vec<String> = events.into_iter().map(|e| e.id).collect();
            let mut pending = PendingAppend {
                set: set.clone(),
                ticket: None,
                keys,
                done,
            };
            let outcome = match submitted {
                Ok(ticket) => {
                    pending.ticket = Some(ticket);
                    pending.wait().await
                }
                Err(e) => {
                    pending.finish(&Err(e.replicate()));
                    Err(e)
                }
            };
            match outcome {
                Ok(o) => {
                    for (i, (slot, id)) in slots.into_iter().zip(ids).enumerate() {
                        results[slot] = Some(PutEntry::Stored {
                            id,
                            offset: o.first_offset + i as u64,
                            duplicate: false,
                        });
                    }
                }
                Err(err) => {
                    for slot in slots {
                        results[slot] = Some(PutEntry::Failed(err.replicate()));
                    }
                }
            }
        }
        for (slot, key, id, mut rx) in waiters {
            // Another put is storing the same (source, id): report its outcome.
            let outcome = rx.wait_for(|v| v.is_some()).await.map(|v| v.clone());
            let stored = {
                let d = set.dedup.lock().unwrap_or_else(|p| p.into_inner());
                match d.seen.get(&key) {
                    Some(Seen::Stored(offset, _)) => Some(*offset),
                    _ => None,
                }
            };
            let entry = match (outcome, stored) {
                (Ok(Some(Ok(_))), Some(offset)) => PutEntry::Stored {
                    id,
                    offset,
                    duplicate: true,
                },
                (Ok(Some(Err(msg))), _) => PutEntry::Failed(Error::rejected(
                    RejectKind::Conflict,
                    "FailedOperation.ConcurrentPut",
                    Some(&format!("$[{slot}]")),
                    format!("a concurrent put of the same (source, id) failed ({msg}); retry"),
                )),
                _ => PutEntry::Failed(Error::Closed),
            };
            results[slot] = Some(entry);
        }
        let entries: Vec<PutEntry> = results
            .into_iter()
            .map(|r| r.expect("every entry has a result"))
            .collect();
        let failed = entries
            .iter()
            .filter(|e| matches!(e, PutEntry::Failed(_)))
            .count();
        Ok(PutOutcome { entries, failed })
    }

    /// The log's stats, the writer's counters and the fdatasync latency distribution of
    /// `set`'s log, from one lookup of the open log.
    pub fn log_metrics(
        &self,
        set: &str,
    ) -> Result<(
        LogStats,
        crate::store::WriterStats,
        crate::metrics::HistogramSnapshot,
    )> {
        let set = self.set(set)?;
        Ok((
            set.log.stats(),
            set.log.writer_stats(),
            set.log.fsync_latency(),
        ))
    }

    /// A reader over `set` from `offset`.
    pub fn read_from(&self, set: &str, offset: u64) -> Result<LogReader> {
        Ok(self.set(set)?.log.read_from(offset))
    }

    /// The offset the next event put into `set` will get (the end of its log).
    pub fn next_offset(&self, set: &str) -> Result<u64> {
        Ok(self.set(set)?.log.next_offset())
    }

    /// The first offset of `set` still stored (older events were removed by retention).
    pub fn first_offset(&self, set: &str) -> Result<u64> {
        Ok(self.set(set)?.log.first_offset())
    }

    /// Every stored event of `set` whose id is exactly `id`, oldest first (several sources may
    /// use one id). See [`EventLog::find_by_id`]: the first lookup builds the set's id index,
    /// so call it from a blocking context.
    pub fn find_events_by_id(&self, set: &str, id: &str) -> Result<Vec<crate::codec::Record>> {
        self.set(set)?.log.find_by_id(id)
    }

    /// The first offset of `set` whose ingest time is at or after `time_ms` (the end of the log
    /// when there is none).
    pub fn offset_at_time(&self, set: &str, time_ms: u64) -> Result<u64> {
        self.set(set)?.log.offset_at_time(time_ms)
    }

    /// The directory of an event set's log (`DATA/sets/NAME`).
    pub fn log_dir(&self, set: &str) -> PathBuf {
        self.config.data_dir.join("sets").join(set)
    }

    /// Closes every log (after their pending appends) and flushes the catalog.
    pub fn shutdown(&self) -> Result<()> {
        let sets: Vec<Arc<SetLog>> = self
            .sets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        let mut first_err = None;
        for s in sets {
            if let Err(e) = s.log.close() {
                first_err.get_or_insert(e);
            }
        }
        // Every catalog mutation was flushed before it returned; nothing more to make durable.
        first_err.map_or(Ok(()), Err)
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }
}

/// The event-set rules on top of event validation: `default` takes only cloud-service events
/// (source `*.cloud.tencent`, type `product:Category:Name`); custom sets refuse events that
/// claim a cloud source (spoofing), except those the bus forwards ([`Producer::Forward`]).
fn check_set_rules(
    e: &crate::event::Event,
    cloud_set: bool,
    producer: Producer,
    path: &str,
) -> Result<()> {
    if cloud_set {
        if !is_cloud_source(&e.source) {
            return Err(Error::rejected(
                RejectKind::Invalid,
                "InvalidParameterValue.Source",
                Some(&format!("{path}.source")),
                format!(
                    "the cloud service event set accepts only cloud-service events: source `{}` \
                     does not end in `.cloud.tencent`",
                    e.source
                ),
            ));
        }
        if cloud_event_type_parts(&e.ty).is_none() {
            return Err(Error::rejected(
                RejectKind::Invalid,
                "InvalidParameterValue.Type",
                Some(&format!("{path}.type")),
                format!(
                    "the cloud service event set needs a type of the form product:Category:Name, \
                     got `{}`",
                    e.ty
                ),
            ));
        }
    } else if is_cloud_source(&e.source) && producer != Producer::Forward {
        return Err(Error::rejected(
            RejectKind::Denied,
            "OperationDenied.ReservedSource",
            Some(&format!("{path}.source")),
            format!(
                "sources ending in `.cloud.tencent` are reserved for cloud services; `{}` cannot \
                 be put into a custom event set",
                e.source
            ),
        ));
    }
    Ok(())
}

// ----- retention schedule -------------------------------------------------------------------

/// A running retention schedule, from [`EventBus::schedule_retention`]. [`stop`] ends it after
/// the pass in progress, if any; dropping the handle ends it too, without waiting.
///
/// [`stop`]: RetentionSchedule::stop
#[derive(Debug)]
pub struct RetentionSchedule {
    stop: watch::Sender<bool>,
    task: Option<tokio::task::JoinHandle<()>>,
    passes: Arc<AtomicU64>,
}

impl RetentionSchedule {
    /// Passes over every event set completed so far.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::Relaxed)
    }

    /// Whether a task runs (false for a zero interval).
    pub fn is_enabled(&self) -> bool {
        self.task.is_some()
    }

    /// Stops the schedule; returns once a pass in progress has finished (so the logs can be
    /// closed next).
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl EventBus {
    /// Applies every event set's retention policy every `every`, on a tokio task, until the
    /// returned handle is stopped or dropped, or the bus is dropped (the task holds only a weak
    /// reference). Without it retention runs only when a segment rolls and when a log opens,
    /// so a quiet set would keep its expired events. The first pass runs one interval from now
    /// (opening a log already applied its policy); a pass that overruns delays the next one. A
    /// zero `every` schedules nothing. Each set that lost records is logged at info level; a
    /// set whose retention fails is logged as a warning and does not hold the others back.
    /// Must be called inside a tokio runtime. `eventbus serve` runs it every
    /// `retention_interval_secs`.
    pub fn schedule_retention(self: &Arc<Self>, every: std::time::Duration) -> RetentionSchedule {
        let (stop, stopped) = watch::channel(false);
        let passes = Arc::new(AtomicU64::new(0));
        let task = (!every.is_zero()).then(|| {
            tokio::spawn(retention_schedule(
                Arc::downgrade(self),
                every,
                stopped,
                passes.clone(),
            ))
        });
        RetentionSchedule { stop, task, passes }
    }

    /// One scheduled pass: every open set's retention, one set after the other, each failure
    /// logged and passed over. Stops between sets once `stop` is set or its sender is gone;
    /// returns whether it went through every set.
    async fn scheduled_retention_pass(&self, stop: &watch::Receiver<bool>) -> bool {
        for (name, set) in self.open_sets() {
            if *stop.borrow() || stop.has_changed().is_err() {
                return false;
            }
            let before = set.log.first_offset();
            match set.log.apply_retention().await {
                Ok(r) => {
                    let removed = r.first_offset.saturating_sub(before);
                    if removed > 0 {
                        tracing::info!(
                            set = %name,
                            removed,
                            segments = r.segments_deleted,
                            bytes = r.bytes_freed,
                            first_offset = r.first_offset,
                            "retention removed expired events"
                        );
                    }
                }
                Err(e) => {
                    // A set deleted (or a bus shut down) since the snapshot is not a failure.
                    let current = self
                        .sets
                        .read()
                        .unwrap_or_else(|p| p.into_inner())
                        .get(&name)
                        .is_some_and(|s| Arc::ptr_eq(s, &set));
                    if current {
                        tracing::warn!(set = %name, error = %e, "scheduled retention failed");
                    }
                }
            }
        }
        true
    }
}

async fn retention_schedule(
    bus: std::sync::Weak<EventBus>,
    every: std::time::Duration,
    mut stop: watch::Receiver<bool>,
    passes: Arc<AtomicU64>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            // Set by `stop`, or an error when the handle was dropped: either way, done.
            _ = stop.wait_for(|s| *s) => return,
        }
        let Some(bus) = bus.upgrade() else {
            return;
        };
        let completed = bus.scheduled_retention_pass(&stop).await;
        drop(bus);
        if completed {
            passes.fetch_add(1, Ordering::Relaxed);
        }
    }
}
