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

/// Parses a persist policy as flags and variables give it: `always`, `never`, or
/// `interval:MS` (also `interval-ms:MS`) with MS > 0. The error names the input.
pub fn parse_persist(s: &str) -> Result<PersistPolicy, String> {
    match s {
        "always" => Ok(PersistPolicy::Always),
        "never" => Ok(PersistPolicy::Never),
        other => match other
            .strip_prefix("interval:")
            .or_else(|| other.strip_prefix("interval-ms:"))
        {
            Some(n) => match n.parse::<u64>() {
                Ok(ms) if ms > 0 => Ok(PersistPolicy::IntervalMs(ms)),
                Ok(_) => Err(format!("{other:?}: the interval must be more than 0 ms")),
                Err(e) => Err(format!(
                    "{other:?}: interval:MS needs a number of milliseconds: {e}"
                )),
            },
            None => Err(format!(
                "{other:?} is not a persist policy: use always, never or interval:MS"
            )),
        },
    }
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

/// Default cap on one HTTP request body: 4 MiB (64 events of the largest size fit).
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Default time a graceful shutdown waits for in-flight HTTP requests and deliveries: 10 s.
pub const DEFAULT_SHUTDOWN_TIMEOUT_MS: u64 = 10_000;
/// Default interval at which `eventbus serve` applies every event set's retention: 60 s.
pub const DEFAULT_RETENTION_INTERVAL_SECS: u64 = 60;

/// Settings of the server process (`eventbus serve`), read from a TOML file. Every key is
/// optional; `docs/CONFIG.md` and `eventbus.example.toml` list them with their defaults.
/// Precedence: command-line flags, then `EVENTBUS_*` environment variables, then the file,
/// then these defaults.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where event sets and the catalog live. Default = `./data`.
    pub data_dir: PathBuf,
    /// Address to listen on. Default = `127.0.0.1:8080`. A non-loopback address needs at
    /// least one token in `[auth]`.
    pub listen: String,
    /// Durability of appends: `"always"` (fsync before acknowledging), `"never"`, or
    /// `{ interval_ms = N }`. Default = `"always"`.
    pub persist: PersistPolicy,
    /// Segment roll size in bytes. Default = 128 MiB.
    pub max_segment_bytes: u64,
    /// Largest request body in bytes; larger requests get 413. Default = 4 MiB.
    pub max_body_bytes: usize,
    /// Largest event (structured-mode JSON) in bytes. Default = 64 KiB.
    pub max_event_bytes: usize,
    /// Log format: `"text"` or `"json"`. Default = `"text"`.
    pub log_format: LogFormat,
    /// How long a graceful shutdown waits for requests and deliveries in flight, in ms.
    /// Default = 10000.
    pub shutdown_timeout_ms: u64,
    /// Threads of the async runtime (HTTP and delivery). 0 = one fewer than the CPUs, at
    /// least one: the log's writer thread is busy on every acknowledged put and does better
    /// with a core of its own. Default = 0.
    pub worker_threads: usize,
    /// How often every event set's retention policy is applied, in seconds; 0 = never on a
    /// schedule (only when a segment rolls and when a log opens, so a quiet set keeps expired
    /// events). Default = 60.
    pub retention_interval_secs: u64,
    /// Bearer tokens.
    pub auth: AuthConfig,
    /// Catalog quotas.
    pub limits: crate::catalog::CatalogLimits,
    /// Delivery engine tuning.
    pub delivery: DeliveryConfig,
    /// What `file`, `command` and `event-set` targets may do on this host.
    pub targets: TargetsConfig,
}

impl Config {
    /// The runtime's thread count for `worker_threads` (0 = automatic).
    pub fn runtime_threads(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(1))
                .max(1),
            n => n,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            listen: DEFAULT_LISTEN.to_string(),
            persist: PersistPolicy::Always,
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            log_format: LogFormat::Text,
            shutdown_timeout_ms: DEFAULT_SHUTDOWN_TIMEOUT_MS,
            worker_threads: 0,
            retention_interval_secs: DEFAULT_RETENTION_INTERVAL_SECS,
            auth: AuthConfig::default(),
            limits: crate::catalog::CatalogLimits::default(),
            delivery: DeliveryConfig::default(),
            targets: TargetsConfig::default(),
        }
    }
}

impl Config {
    /// Reads a TOML file; unknown keys are refused (a typo must not silently fall back to a
    /// default). The error names the file, the key and the line.
    pub fn from_file(path: &std::path::Path) -> crate::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::io("read", path, e))?;
        Config::from_toml(&text)
            .map_err(|e| crate::Error::invalid(path.display().to_string(), e.to_string()))
    }

    /// Parses TOML text (see [`Config::from_file`]).
    pub fn from_toml(text: &str) -> std::result::Result<Config, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines. Default.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[auth]`: who may do what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `[[auth.tokens]]` entries. Default = none: no authentication, and the server refuses
    /// to listen on anything but a loopback address.
    pub tokens: Vec<TokenConfig>,
}

/// One `[[auth.tokens]]` entry.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// The bearer token (at least 16 characters).
    pub token: String,
    /// What it may do.
    pub role: Role,
    /// A name for logs (the token itself is never logged). Default = the role.
    #[serde(default)]
    pub name: Option<String>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is a secret: never printed, not even in debug output.
        f.debug_struct("TokenConfig")
            .field("token", &"<redacted>")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish()
    }
}

/// A token's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything: manage sets, rules and targets, put events anywhere.
    Admin,
    /// Put events into custom event sets.
    Producer,
    /// A cloud service: put events into any set, `default` included.
    Cloud,
}

impl Role {
    /// The role's name as configured.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Producer => "producer",
            Role::Cloud => "cloud",
        }
    }
}

/// `[delivery]`: tuning of the delivery engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// One shared tail reader per event set feeds the caught-up bindings. Default = true.
    pub share_reads: bool,
    /// On shutdown, how long workers wait for requests in flight before abandoning them
    /// (abandoned events are delivered again after the restart), in ms. Default = 5000.
    pub drain_timeout_ms: u64,
    /// Wait before restarting a failed worker, in ms. Default = 1000.
    pub restart_delay_ms: u64,
    /// Record every delivery attempt in the events' linkage traces. Default = true.
    pub trace: bool,
    /// How long linkage traces are kept, by the events' ingest time, in hours. Default = 72.
    pub trace_retention_hours: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            share_reads: true,
            drain_timeout_ms: 5_000,
            restart_delay_ms: 1_000,
            trace: true,
            trace_retention_hours: 72,
        }
    }
}

/// Default of `[targets] max_event_set_hops`: how many times one event may be forwarded from
/// event set to event set by `event-set` targets before it is dead-lettered as a loop.
pub const DEFAULT_MAX_EVENT_SET_HOPS: u32 = 8;
/// Default of `[targets.commands.<name>] timeout_ms`: 30 s.
pub const DEFAULT_COMMAND_TIMEOUT_MS: u64 = 30_000;
/// Largest command `timeout_ms` (1 hour), in the config and in a target's settings.
pub const MAX_COMMAND_TIMEOUT_MS: u64 = 3_600_000;
/// Largest `max_event_set_hops`: CloudEvents extension values are small, and a chain longer
/// than this is a loop.
pub const MAX_EVENT_SET_HOPS_LIMIT: u32 = 1_000;
/// Directory under the data directory that `file` targets write into when
/// `[targets] file_root` is not set.
pub const DEFAULT_FILE_ROOT_DIR: &str = "target-files";

/// `[targets]`: what targets created through the API may do on this host. Only the server's
/// operator decides which programs run and where files go; a target body can only name a
/// configured program and a path under `file_root`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TargetsConfig {
    /// The directory `file` targets write under; their `path` is relative to it. Default =
    /// `<data_dir>/target-files` (see [`TargetsConfig::file_root_in`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_root: Option<PathBuf>,
    /// How many times one event may be forwarded between event sets by `event-set` targets;
    /// the forward that would exceed it fails without retry (the event is dead-lettered).
    /// Default = 8.
    pub max_event_set_hops: u32,
    /// `[targets.commands.<name>]`: the programs `command` targets may run, by name. Default =
    /// none (every `command` target is refused).
    pub commands: std::collections::BTreeMap<String, CommandConfig>,
}

impl Default for TargetsConfig {
    fn default() -> Self {
        TargetsConfig {
            file_root: None,
            max_event_set_hops: DEFAULT_MAX_EVENT_SET_HOPS,
            commands: std::collections::BTreeMap::new(),
        }
    }
}

impl TargetsConfig {
    /// The directory `file` targets write under, for a server whose data directory is
    /// `data_dir`: `file_root` if set, else `<data_dir>/target-files`.
    pub fn file_root_in(&self, data_dir: &std::path::Path) -> PathBuf {
        self.file_root
            .clone()
            .unwrap_or_else(|| data_dir.join(DEFAULT_FILE_ROOT_DIR))
    }

    /// Checks what serde cannot: command names, absolute programs, timeouts, the hop limit.
    /// The error names the key (`targets.commands.backup.program`).
    pub fn validate(&self) -> crate::Result<()> {
        if !(1..=MAX_EVENT_SET_HOPS_LIMIT).contains(&self.max_event_set_hops) {
            return Err(crate::Error::invalid(
                "targets.max_event_set_hops",
                format!("must be from 1 to {MAX_EVENT_SET_HOPS_LIMIT}"),
            ));
        }
        if let Some(root) = &self.file_root
            && root.as_os_str().is_empty()
        {
            return Err(crate::Error::invalid(
                "targets.file_root",
                "must be a directory path (leave it out for <data_dir>/target-files)",
            ));
        }
        for (name, cmd) in &self.commands {
            if !valid_command_name(name) {
                return Err(crate::Error::invalid(
                    format!("targets.commands.{name}"),
                    "a command name is 1-64 characters of letters, digits, '_', '-' or '.'",
                ));
            }
            cmd.validate(name)?;
        }
        Ok(())
    }
}

/// True for a name `[targets.commands.<name>]` accepts: 1-64 ASCII letters, digits, `_`, `-`
/// or `.`.
pub fn valid_command_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// `[targets.commands.<name>]`: a program a `command` target may run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    /// Absolute path of the executable (no shell, no `PATH` search).
    pub program: PathBuf,
    /// Its arguments. Default = none.
    #[serde(default)]
    pub args: Vec<String>,
    /// How long one run may take before the process and its process group are killed, in ms;
    /// a target's own `timeout_ms` can only shorten it. Default = 30000.
    #[serde(default = "default_command_timeout_ms")]
    pub timeout_ms: u64,
    /// Environment variables, on top of `PATH` (the only variable inherited from the server)
    /// and the `EVENTBUS_*` variables describing the delivery. Default = none.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
}

fn default_command_timeout_ms() -> u64 {
    DEFAULT_COMMAND_TIMEOUT_MS
}

impl CommandConfig {
    /// A command running `program` with no arguments, the default timeout and no extra
    /// environment.
    pub fn new(program: impl Into<PathBuf>) -> CommandConfig {
        CommandConfig {
            program: program.into(),
            args: Vec::new(),
            timeout_ms: DEFAULT_COMMAND_TIMEOUT_MS,
            env: std::collections::BTreeMap::new(),
        }
    }

    fn validate(&self, name: &str) -> crate::Result<()> {
        let key = |k: &str| format!("targets.commands.{name}.{k}");
        if !self.program.is_absolute() {
            return Err(crate::Error::invalid(
                key("program"),
                format!(
                    "must be an absolute path (no PATH search), got {}",
                    self.program.display()
                ),
            ));
        }
        if !(1..=MAX_COMMAND_TIMEOUT_MS).contains(&self.timeout_ms) {
            return Err(crate::Error::invalid(
                key("timeout_ms"),
                format!("must be from 1 to {MAX_COMMAND_TIMEOUT_MS} (milliseconds)"),
            ));
        }
        for var in self.env.keys() {
            if var.is_empty() || var.contains('=') || var.contains('\0') {
                return Err(crate::Error::invalid(
                    key("env"),
                    format!("{var:?} is not a valid environment variable name"),
                ));
            }
            if var.starts_with("EVENTBUS_") {
                return Err(crate::Error::invalid(
                    key("env"),
                    format!("{var:?}: EVENTBUS_* variables are set by the target itself"),
                ));
            }
        }
        Ok(())
    }
}

/// Wall-clock time in epoch milliseconds (0 if the clock is before 1970).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_lists_every_key_at_its_default() {
        let text = include_str!("../eventbus.example.toml");
        let parsed = Config::from_toml(text).expect("the example parses");
        assert_eq!(parsed, Config::default());
        // Every key of the defaults appears in the example, so the example documents them all.
        let defaults = toml::to_string(&Config::default()).unwrap();
        for line in defaults.lines() {
            let Some((key, _)) = line.split_once(" = ") else {
                continue;
            };
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "eventbus.example.toml does not document `{key}`"
            );
        }
    }

    #[test]
    fn config_targets_section_parses_commands_with_defaults() {
        let cfg = Config::from_toml(
            "data_dir = \"/srv/eb\"\n\
             [targets]\nmax_event_set_hops = 3\n\
             [targets.commands.backup]\nprogram = \"/usr/local/bin/backup\"\n\
             args = [\"--quick\"]\nenv = { BUCKET = \"b\" }\n",
        )
        .unwrap();
        cfg.targets.validate().unwrap();
        assert_eq!(cfg.targets.max_event_set_hops, 3);
        let backup = &cfg.targets.commands["backup"];
        assert_eq!(backup.timeout_ms, DEFAULT_COMMAND_TIMEOUT_MS);
        assert_eq!(backup.args, ["--quick"]);
        assert_eq!(backup.env["BUCKET"], "b");
        assert_eq!(
            cfg.targets.file_root_in(&cfg.data_dir),
            PathBuf::from("/srv/eb/target-files")
        );
        let cfg = Config::from_toml("[targets]\nfile_root = \"/x\"\n").unwrap();
        assert_eq!(cfg.targets.file_root_in(&cfg.data_dir), PathBuf::from("/x"));
        // Typos in a command are named.
        let e =
            Config::from_toml("[targets.commands.a]\nprogram = \"/a\"\nargz = []\n").unwrap_err();
        assert!(e.to_string().contains("argz"), "{e}");
    }

    #[test]
    fn config_targets_validation_names_the_key() {
        let bad = |toml: &str, key: &str| {
            let cfg = Config::from_toml(toml).unwrap();
            let e = cfg.targets.validate().unwrap_err();
            assert!(e.to_string().contains(key), "{toml}: {e}");
        };
        bad(
            "[targets.commands.a]\nprogram = \"relative.sh\"\n",
            "targets.commands.a.program",
        );
        bad(
            "[targets.commands.a]\nprogram = \"/a\"\ntimeout_ms = 0\n",
            "targets.commands.a.timeout_ms",
        );
        bad(
            "[targets.commands.a]\nprogram = \"/a\"\nenv = { EVENTBUS_SET = \"x\" }\n",
            "targets.commands.a.env",
        );
        bad(
            "[targets.commands.\"a b\"]\nprogram = \"/a\"\n",
            "targets.commands.a b",
        );
        bad("[targets]\nmax_event_set_hops = 0\n", "max_event_set_hops");
    }

    #[test]
    fn config_refuses_unknown_keys_naming_them() {
        let e = Config::from_toml("[delivery]\nshare_read = true\n").unwrap_err();
        assert!(e.to_string().contains("share_read"), "{e}");
        let cfg = Config::from_toml("persist = { interval_ms = 50 }\n").unwrap();
        assert_eq!(cfg.persist, PersistPolicy::IntervalMs(50));
    }
}
