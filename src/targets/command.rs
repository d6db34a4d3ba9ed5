//! The `command` target: runs a program from the server's configuration with the events as
//! JSON on its standard input.
//!
//! Settings (the object under `"command"` in a target body; refusals name `$.command.<field>`):
//!
//! | field        | type             | default                     | meaning                      |
//! |--------------|------------------|-----------------------------|------------------------------|
//! | `name`       | string, required | —                           | a `[targets.commands.<name>]` of the server's config |
//! | `timeout_ms` | integer          | the command's `timeout_ms`  | 1..=3600000; only shortens the configured timeout |
//!
//! **Only configured programs run.** The API names a command; the program, its arguments and
//! its environment come from the server's configuration file (`[targets.commands.<name>]
//! program = "/abs/path", args = [...], timeout_ms = 30000, env = {...}`). A body naming a
//! command the server does not know is refused with a 400 naming `$.command.name` by the
//! HTTP API ([`super::TargetEnv::check`]); a stored binding whose command has since left the
//! configuration fails to start and reports why as its last error.
//!
//! **One run per request.** Standard input carries the event's CloudEvents JSON object (or its
//! transformation's output, [`Outgoing::to_json`]); a target whose `batch.max_events` is above
//! 1 always gets a JSON array, also when only one event was ready, so the program sees one
//! shape. Standard output is discarded; the last lines of standard error go into the failure
//! message. The program is not run through a shell. Its environment is `PATH` (the only
//! variable inherited from the server, so the server's own settings and tokens do not leak),
//! the command's `env`, and:
//!
//! | variable               | value                                           |
//! |------------------------|-------------------------------------------------|
//! | `EVENTBUS_COMMAND`     | the command's name                              |
//! | `EVENTBUS_SET`, `EVENTBUS_RULE`, `EVENTBUS_TARGET` | the binding being delivered |
//! | `EVENTBUS_EVENT_COUNT` | events on standard input                        |
//! | `EVENTBUS_EVENT_ID`    | the event's id, when there is exactly one       |
//!
//! **Outcomes.** Exit status 0 is success. Any other exit, death by a signal, a program that
//! cannot be started, and a run that outlasts its timeout are **retryable** failures: the
//! common case is a script failing transiently (a lock held, a service restarting), and the
//! binding's retry policy and dead-letter mode bound the retries. A program that must not be
//! retried should exit 0 and report the problem itself. The message carries the exit code (or
//! signal) and up to the last 10 lines (at most 1000 characters) of standard error.
//!
//! **Timeouts and cancellation.** The program runs in a process group of its own. When the
//! timeout passes, or the delivery is abandoned (shutdown), the whole group gets SIGKILL, so
//! the children a script started do not outlive it. After a normal exit, processes the program
//! left running in the background are left alone.
//!
//! Each binding runs up to its `max_in_flight` (default 64) programs at once; set it (or
//! `ordered: true`) on the target to run fewer.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxFuture, Delivered, Outgoing, SendError, Target, TargetEnv, refuse};
use crate::catalog::BindingId;
use crate::config::{CommandConfig, MAX_COMMAND_TIMEOUT_MS, valid_command_name};
use crate::error::Result;

/// Settings members; anything else is refused.
const FIELDS: &[&str] = &["name", "timeout_ms"];
/// Bytes of standard error kept (the end of it).
const STDERR_TAIL_BYTES: usize = 8 * 1024;
/// Lines of standard error quoted in a failure message.
const STDERR_LINES: usize = 10;
/// Characters of standard error quoted in a failure message.
const STDERR_CHARS: usize = 1_000;
/// After the program exits, how long to wait for the rest of its standard error (a background
/// child may hold the pipe open forever).
const STDERR_GRACE: Duration = Duration::from_millis(200);
/// `PATH` of the program when the server has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Validated settings of a `command` target. Built only by [`CommandSettings::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSettings {
    name: String,
    timeout_ms: Option<u64>,
}

impl CommandSettings {
    /// Parses and validates the settings object (see the module docs). Whether the name is
    /// configured is checked by [`CommandSettings::resolve`], which needs the server's
    /// configuration. Null-valued optional members count as absent.
    pub fn parse(settings: &Value) -> Result<CommandSettings> {
        let obj = super::settings_object(
            "command",
            settings,
            FIELDS,
            " (the program, its arguments and environment come from the server's configuration)",
        )?;
        let present = |name: &str| obj.get(name).filter(|v| !v.is_null());
        let name = match present("name") {
            None => return Err(refuse("$.command.name", "\"name\" is required")),
            Some(Value::String(s)) if valid_command_name(s) => s.clone(),
            Some(Value::String(_)) => {
                return Err(refuse(
                    "$.command.name",
                    "\"name\" must be 1-64 characters of letters, digits, '_', '-' or '.': \
                     the name of a command in the server's configuration, not a path",
                ));
            }
            Some(_) => return Err(refuse("$.command.name", "\"name\" must be a string")),
        };
        let timeout_ms = match present("timeout_ms") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .filter(|ms| (1..=MAX_COMMAND_TIMEOUT_MS).contains(ms))
                    .ok_or_else(|| {
                        refuse(
                            "$.command.timeout_ms",
                            format!(
                                "\"timeout_ms\" must be an integer from 1 to \
                                 {MAX_COMMAND_TIMEOUT_MS} (milliseconds)"
                            ),
                        )
                    })?,
            ),
        };
        Ok(CommandSettings { name, timeout_ms })
    }

    /// The configured command's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The configured command and the effective timeout: the target's `timeout_ms`, at most
    /// the command's. Refused (`$.command.name`) when the server has no such command.
    pub fn resolve(&self, env: &TargetEnv) -> Result<(CommandConfig, Duration)> {
        let Some(cmd) = env.commands.get(&self.name) else {
            let known: Vec<&str> = env.commands.keys().map(String::as_str).collect();
            return Err(refuse(
                "$.command.name",
                format!(
                    "no command {:?} is configured on this server ([targets.commands.{}] in \
                     its config file); configured: {}",
                    self.name,
                    self.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ),
            ));
        };
        let ms = self
            .timeout_ms
            .map_or(cmd.timeout_ms, |t| t.min(cmd.timeout_ms));
        Ok((cmd.clone(), Duration::from_millis(ms)))
    }
}

/// A `command` target: a configured program, its timeout, and the binding it serves.
#[derive(Debug)]
pub struct CommandTarget {
    name: String,
    cmd: CommandConfig,
    timeout: Duration,
    batched: bool,
    binding: Option<BindingId>,
    path: OsString,
}

impl CommandTarget {
    /// A target running the command `settings` names; fails when `env` does not configure it.
    /// `batched`: the target's `batch.max_events` is above 1 (always send an array).
    pub fn new(settings: CommandSettings, env: &TargetEnv, batched: bool) -> Result<Self> {
        let (cmd, timeout) = settings.resolve(env)?;
        Ok(CommandTarget {
            name: settings.name,
            cmd,
            timeout,
            batched,
            binding: env.binding.clone(),
            path: std::env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into()),
        })
    }

    fn command(&self, batch: &[Outgoing]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.cmd.program);
        c.args(&self.cmd.args)
            .env_clear()
            .env("PATH", &self.path)
            .envs(&self.cmd.env)
            .env("EVENTBUS_COMMAND", &self.name)
            .env("EVENTBUS_EVENT_COUNT", batch.len().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            // A group of its own, so a timeout can kill the children a script started.
            .process_group(0)
            .kill_on_drop(true);
        if let Some(b) = &self.binding {
            c.env("EVENTBUS_SET", &b.set)
                .env("EVENTBUS_RULE", &b.rule)
                .env("EVENTBUS_TARGET", &b.target);
        }
        if let [one] = batch {
            c.env("EVENTBUS_EVENT_ID", &one.event.id);
        }
        c
    }

    fn payload(&self, batch: &[Outgoing]) -> Vec<u8> {
        let mut bytes = Vec::new();
        match batch {
            [one] if !self.batched => one.write_json(&mut bytes),
            _ => Outgoing::write_json_array(batch, &mut bytes),
        }
        bytes.push(b'\n');
        bytes
    }

    async fn run(&self, batch: &[Outgoing]) -> std::result::Result<Delivered, SendError> {
        let what = format!("command {:?} ({})", self.name, self.cmd.program.display());
        let mut child = self
            .command(batch)
            .spawn()
            .map_err(|e| SendError::retryable(format!("{what} could not be started: {e}")))?;
        // Kills the process group if this future is dropped (delivery abandoned) or times out.
        let mut group = GroupKill(child.id());
        let payload = self.payload(batch);
        let stdin = child.stdin.take();
        // Written beside the wait: a program that reads nothing must not block the target (a
        // broken pipe once it exits is its business).
        let writer = tokio::spawn(async move {
            if let Some(mut stdin) = stdin {
                let _ = stdin.write_all(&payload).await;
                let _ = stdin.shutdown().await;
            }
        });
        let tail = Arc::new(Mutex::new(Tail::default()));
        let reader = child.stderr.take().map(|stderr| {
            let tail = tail.clone();
            tokio::spawn(read_tail(stderr, tail))
        });
        let waited = tokio::time::timeout(self.timeout, child.wait()).await;
        writer.abort();
        let outcome = match waited {
            Ok(Ok(status)) => {
                group.disarm();
                Ok(status)
            }
            Ok(Err(e)) => {
                group.kill();
                Err(format!("{what}: waiting for it failed: {e}"))
            }
            Err(_) => {
                group.kill();
                // Reap it; SIGKILL cannot be ignored.
                let _ = child.wait().await;
                Err(format!(
                    "{what} timed out after {} ms and was killed (with its process group)",
                    self.timeout.as_millis()
                ))
            }
        };
        if let Some(mut reader) = reader
            && tokio::time::timeout(STDERR_GRACE, &mut reader)
                .await
                .is_err()
        {
            reader.abort();
        }
        let stderr = tail.lock().unwrap_or_else(|p| p.into_inner()).last_lines();
        let with_stderr = |msg: String| {
            if stderr.is_empty() {
                msg
            } else {
                format!("{msg}; stderr: {stderr}")
            }
        };
        match outcome {
            Ok(status) if status.success() => Ok(Delivered::default()),
            Ok(status) => Err(SendError::retryable(with_stderr(
                match (status.code(), status.signal()) {
                    (Some(code), _) => format!("{what} exited with status {code}"),
                    (None, Some(sig)) => format!("{what} was killed by signal {sig}"),
                    (None, None) => format!("{what} failed: {status}"),
                },
            ))),
            Err(msg) => Err(SendError::retryable(with_stderr(msg))),
        }
    }
}

impl Target for CommandTarget {
    fn send<'a>(
        &'a self,
        batch: &'a [Outgoing],
    ) -> BoxFuture<'a, std::result::Result<Delivered, SendError>> {
        Box::pin(self.run(batch))
    }
}

/// SIGKILLs a process group when dropped, unless disarmed. The group's id is the leader's
/// pid, which the kernel does not hand out again while any member of the group lives, so a
/// late kill can only reach the group's own stragglers.
struct GroupKill(Option<u32>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pid) = self.0.take()
            && let Ok(pgid) = i32::try_from(pid)
            && pgid > 0
        {
            // SAFETY: kill(2) has no memory-safety preconditions; a negative pid names the
            // process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The end of a stream: the last [`STDERR_TAIL_BYTES`] bytes.
#[derive(Default)]
struct Tail {
    bytes: VecDeque<u8>,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend(chunk);
        let excess = self.bytes.len().saturating_sub(STDERR_TAIL_BYTES);
        self.bytes.drain(..excess);
    }

    /// The last [`STDERR_LINES`] non-empty lines, joined by ` | `, at most [`STDERR_CHARS`]
    /// characters (the end kept).
    fn last_lines(&self) -> String {
        let (a, b) = self.bytes.as_slices();
        let text = String::from_utf8_lossy(&[a, b].concat()).into_owned();
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        let joined = lines[lines.len().saturating_sub(STDERR_LINES)..].join(" | ");
        let n = joined.chars().count();
        if n > STDERR_CHARS {
            let cut: String = joined.chars().skip(n - STDERR_CHARS).collect();
            format!("…{cut}")
        } else {
            joined
        }
    }
}

async fn read_tail(mut r: tokio::process::ChildStderr, tail: Arc<Mutex<Tail>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => tail
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(&buf[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::error::Error;
    use crate::event::Event;
    use serde_json::json;

    fn env_with(name: &str, cmd: CommandConfig) -> TargetEnv {
        TargetEnv {
            commands: Arc::new(BTreeMap::from([(name.to_string(), cmd)])),
            ..TargetEnv::default()
        }
    }

    #[test]
    fn command_settings_refusals_name_their_field() {
        for (body, field) in [
            (json!({}), "$.command.name"),
            (json!({"name": 1}), "$.command.name"),
            (json!({"name": "/bin/sh"}), "$.command.name"),
            (json!({"name": "a b"}), "$.command.name"),
            (
                json!({"name": "x", "timeout_ms": 0}),
                "$.command.timeout_ms",
            ),
            (
                json!({"name": "x", "timeout_ms": 3_600_001}),
                "$.command.timeout_ms",
            ),
            (json!({"name": "x", "args": ["-rf"]}), "$.command.args"),
            (
                json!({"name": "x", "program": "/bin/sh"}),
                "$.command.program",
            ),
            (json!(null), "$.command"),
        ] {
            let e = CommandSettings::parse(&body).unwrap_err();
            assert!(
                matches!(&e, Error::Rejected { path: Some(p), .. } if p == field),
                "{body}: {e:?}"
            );
        }
    }

    #[test]
    fn command_resolve_needs_a_configured_name_and_caps_the_timeout() {
        let s = CommandSettings::parse(&json!({"name": "backup", "timeout_ms": 90_000})).unwrap();
        let e = s.resolve(&TargetEnv::default()).unwrap_err();
        assert!(
            matches!(&e, Error::Rejected { path: Some(p), message, .. }
                if p == "$.command.name" && message.contains("backup")),
            "{e:?}"
        );
        let env = env_with("backup", CommandConfig::new("/bin/true"));
        let (cmd, timeout) = s.resolve(&env).unwrap();
        assert_eq!(cmd.program, std::path::Path::new("/bin/true"));
        assert_eq!(
            timeout,
            Duration::from_millis(30_000),
            "capped by the config"
        );
        let s = CommandSettings::parse(&json!({"name": "backup", "timeout_ms": 50})).unwrap();
        assert_eq!(s.resolve(&env).unwrap().1, Duration::from_millis(50));
        // The env check the API runs.
        let body = json!({"type": "command", "command": {"name": "nope"}});
        assert!(env.check(&body).is_err());
        assert!(
            env.check(&json!({"type": "command", "command": {"name": "backup"}}))
                .is_ok()
        );
    }

    #[test]
    fn command_stderr_tail_keeps_the_last_lines() {
        let mut t = Tail::default();
        for i in 0..3000 {
            t.push(format!("line {i}\n").as_bytes());
        }
        let s = t.last_lines();
        assert!(s.starts_with("line 2990"), "{s}");
        assert!(s.ends_with("line 2999"), "{s}");
        let mut t = Tail::default();
        t.push(&vec![b'x'; 5000]);
        assert_eq!(t.last_lines().chars().count(), STDERR_CHARS + 1);
    }

    fn outgoing(id: &str) -> Outgoing {
        Outgoing::plain(Arc::new(Event::new(id, "shop", "order")))
    }

    #[tokio::test]
    async fn command_runs_with_stdin_and_env_and_reports_failures() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut cmd = CommandConfig::new("/bin/sh");
        cmd.args = vec![
            "-c".into(),
            format!(
                "cat > {0}; echo \"$EVENTBUS_EVENT_ID $EVENTBUS_COMMAND $HOME\" >> {0}; \
                 echo oops >&2; exit \"$CODE\"",
                out.display()
            ),
        ];
        cmd.env.insert("CODE".into(), "0".into());
        let env = env_with("c", cmd.clone());
        let s = CommandSettings::parse(&json!({"name": "c"})).unwrap();
        let t = CommandTarget::new(s.clone(), &env, false).unwrap();
        t.send(&[outgoing("e1")]).await.unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let mut lines = text.lines();
        let doc: Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(doc["id"], "e1");
        assert_eq!(
            lines.next().unwrap().trim_end(),
            "e1 c",
            "HOME is not inherited"
        );

        // A batch is an array; a failing exit is retryable with the status and stderr.
        cmd.env.insert("CODE".into(), "3".into());
        let t = CommandTarget::new(s, &env_with("c", cmd), false).unwrap();
        let e = t.send(&[outgoing("e2"), outgoing("e3")]).await.unwrap_err();
        assert!(e.retryable);
        assert!(e.message.contains("status 3"), "{}", e.message);
        assert!(e.message.contains("oops"), "{}", e.message);
        let text = std::fs::read_to_string(&out).unwrap();
        let doc: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(doc.as_array().map(Vec::len), Some(2));
    }

    #[tokio::test]
    async fn command_missing_program_is_a_retryable_failure() {
        let env = env_with(
            "c",
            CommandConfig::new("/nonexistent/eventbus-test-program"),
        );
        let t = CommandTarget::new(
            CommandSettings::parse(&json!({"name": "c"})).unwrap(),
            &env,
            false,
        )
        .unwrap();
        let e = t.send(&[outgoing("e1")]).await.unwrap_err();
        assert!(
            e.retryable && e.message.contains("could not be started"),
            "{e:?}"
        );
    }
}
