//! Configuration types and their documented defaults.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default data directory of `eventbus serve`.
pub const DEFAULT_DATA_DIR: &str = "./data";
/// Default listen address of `eventbus serve`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Default segment size at which the log rolls to a new segment file: 128 MiB.
pub const DEFAULT_MAX_SEGMENT_BYTES: u64 = 128 * 1024 * 1024;
/// Default spacing of sparse index entries: one per 64 KiB of log.
pub const DEFAULT_INDEX_INTERVAL_BYTES: u64 = 64 * 1024;
/// Default cap on the bytes one group commit writes before its fdatasync: 8 MiB.
pub const DEFAULT_MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Default cap on one event's serialized structured-mode JSON: 64 KiB (Tencent EB's limit).
pub const DEFAULT_MAX_EVENT_BYTES: usize = 64 * 1024;

/// When an append is acknowledged relative to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PersistPolicy {
    /// Acknowledge only after the group commit's fdatasync. Default: no acknowledged event is
    /// lost by a crash or a power loss.
    #[default]
    Always,
    /// Acknowledge after the write; fdatasync at most every `n` ms. A power loss can lose the
    /// last `n` ms of acknowledged events (a process crash loses none: the OS has them).
    IntervalMs(u64),
    /// Acknowledge after the write; fsync only when a segment is sealed or the log closes.
    Never,
}

/// How much of an event set's log to keep. Applied by deleting whole sealed segments, oldest
/// first; the active segment is sealed first when everything in it has expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RetentionPolicy {
    /// Delete segments whose newest event was ingested longer ago than this. Default = keep.
    pub max_age: Option<Duration>,
    /// Delete the oldest segments while the log holds more bytes than this. Default = no cap.
    pub max_bytes: Option<u64>,
}

/// Settings of the server process (more keys arrive with the HTTP work).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// Where event sets live. Default = `./data`.
    pub data_dir: PathBuf,
    /// Address to listen on. Default = `127.0.0.1:8080`.
    pub listen: String,
    /// Durability of appends. Default = `always`.
    pub persist: PersistPolicy,
    /// Segment roll size. Default = 128 MiB.
    pub max_segment_bytes: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.to_string(),
            persist: PersistPolicy::Always,
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
        }
    }
}

/// Wall-clock time in epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
