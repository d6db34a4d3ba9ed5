//! Targets: where a binding sends the events its rule matched. One file per target type, all
//! behind the [`Target`] trait, which the delivery engine calls with a batch of one or more
//! events and which answers with success or a classified failure (retryable or not, with the
//! receiver's `Retry-After` when it gave one).
//!
//! What a target sends for each event is an [`Outgoing`]: the event itself, or, when its rule
//! has a transformation, what the transformation made of it ([`Outgoing::output`]). Targets
//! that need the server's help get it through a [`TargetEnv`]: the programs `command` targets
//! may run (server configuration only, never the API) and an [`EventSink`] through which
//! `event-set` targets put into another set.

pub mod command;
pub mod event_set;
pub mod file;
pub mod http;
pub mod notify;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::catalog::BindingId;
use crate::config::CommandConfig;
use crate::error::{Error, RejectKind, Result};
use crate::event::Event;
use crate::transform::Output;

/// A boxed, sendable future (the trait is object-safe so the engine can hold any target).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a send failed, and whether trying again may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// True for connection errors, timeouts, 5xx, 408 and 429; false for other answers (e.g.
    /// 400, 404), which would fail the same way again.
    pub retryable: bool,
    /// The receiver asked to wait this long before trying again (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    /// Human-readable cause, for status reports and dead letters. Never contains secrets.
    pub message: String,
}

impl SendError {
    /// A failure that would happen again on retry (no answer status).
    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError {
            retryable: false,
            retry_after: None,
            status: None,
            message: message.into(),
        }
    }

    /// A failure that may pass on retry (no answer status, no `Retry-After`).
    pub fn retryable(message: impl Into<String>) -> SendError {
        SendError {
            retryable: true,
            ..SendError::permanent(message)
        }
    }
}

/// A refused target setting at `path` (`$.file.path`), with the target-description code.
pub(crate) fn refuse(path: &str, message: impl Into<String>) -> Error {
    Error::rejected(
        RejectKind::Invalid,
        crate::catalog::codes::INVALID_TARGET_DESCRIPTION,
        Some(path),
        message,
    )
}

/// Test helper: the path of a [`refuse`]d setting in `result`, after checking that the
/// message leaks none of `secrets`; panics on anything else.
#[cfg(test)]
pub(crate) fn refused_path<T: std::fmt::Debug>(
    result: Result<T>,
    settings: &serde_json::Value,
    secrets: &[&str],
) -> String {
    match result {
        Err(Error::Rejected {
            kind: RejectKind::Invalid,
            code,
            path: Some(path),
            message,
        }) => {
            assert_eq!(code, crate::catalog::codes::INVALID_TARGET_DESCRIPTION);
            for leak in secrets {
                assert!(!message.contains(leak), "{message}");
            }
            path
        }
        other => panic!("expected a rejection for {settings}, got {other:?}"),
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// One event as a target sends it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// The stored event (with a replay's `replayname` mark when it is replayed).
    pub event: Arc<Event>,
    /// What the rule's transformation made of the event; `None` when the rule has none, and
    /// the event itself is sent.
    pub output: Option<Arc<Output>>,
}

impl Outgoing {
    /// The event as it is (its rule has no transformation).
    pub fn plain(event: Arc<Event>) -> Outgoing {
        Outgoing {
            event,
            output: None,
        }
    }

    /// The event with its transformation's output.
    pub fn transformed(event: Arc<Event>, output: Output) -> Outgoing {
        Outgoing {
            event,
            output: Some(Arc::new(output)),
        }
    }

    /// Writes [`Outgoing::to_json`] as compact JSON text, the same bytes as
    /// `serde_json::to_vec(&self.to_json())`; an untransformed event is written without
    /// building its JSON value first (its stored `data` is spliced in as it is).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self.output.as_deref() {
            Some(Output::Json(v)) => http::write_json(out, v),
            Some(Output::Text(t)) => {
                // Writing a string into a Vec cannot fail.
                let _ = serde_json::to_writer(out, t);
            }
            None => http::write_structured(&self.event, out),
        }
    }

    /// Writes `batch` as a JSON array of [`Outgoing::write_json`] items.
    pub fn write_json_array(batch: &[Outgoing], out: &mut Vec<u8>) {
        out.push(b'[');
        for (i, item) in batch.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            item.write_json(out);
        }
        out.push(b']');
    }

    /// The JSON document this item stands for: the transformation's output (a text output as
    /// a JSON string), else the event's CloudEvents JSON.
    pub fn to_json(&self) -> Value {
        match self.output.as_deref() {
            Some(Output::Json(v)) => v.clone(),
            Some(Output::Text(t)) => Value::String(t.clone()),
            None => self.event.to_json(),
        }
    }
}

/// A destination for events.
pub trait Target: Send + Sync {
    /// Delivers `batch` (one request for the whole batch; a batch of one is a single event).
    /// Must not panic; every failure is a [`SendError`].
    fn send<'a>(
        &'a self,
        batch: &'a [Outgoing],
    ) -> BoxFuture<'a, std::result::Result<Delivered, SendError>>;

    /// Whether this target can take more than one event per request in its current settings.
    fn supports_batches(&self) -> bool {
        true
    }
}

/// What a successful delivery reports (for the linkage trace).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// The receiver's answer status, for targets that have one (HTTP).
    pub status: Option<u16>,
}

/// Puts events into an event set on behalf of an `event-set` target. The delivery engine
/// provides it (over the bus), so targets need not know the bus.
pub trait EventSink: Send + Sync {
    /// Appends `events` to `set` durably; answers once they are acknowledged (or refused).
    fn put<'a>(&'a self, set: &'a str, events: Vec<Event>) -> BoxFuture<'a, Result<()>>;
}

/// What the server lends its targets.
#[derive(Clone)]
pub struct TargetEnv {
    /// Puts into other event sets (`event-set` targets). Default = none: such targets cannot
    /// be built.
    pub sink: Option<Arc<dyn EventSink>>,
    /// The programs `command` targets may run, by name (`[targets.commands.<name>]`). Default
    /// = none: every `command` target is refused.
    pub commands: Arc<BTreeMap<String, CommandConfig>>,
    /// The directory `file` targets write under (`[targets] file_root`). Default = none: the
    /// engine uses `<data_dir>/target-files`; without an engine, file targets cannot be built.
    pub file_root: Option<PathBuf>,
    /// How many times one event may be forwarded between event sets (`[targets]
    /// max_event_set_hops`). Default = 8.
    pub max_event_set_hops: u32,
    /// The binding the target is built for; the engine fills it in for each binding (commands
    /// see it as `EVENTBUS_SET` / `EVENTBUS_RULE` / `EVENTBUS_TARGET`, and an `event-set`
    /// target refuses to put into its own rule's set). Default = none.
    pub binding: Option<BindingId>,
}

impl Default for TargetEnv {
    fn default() -> Self {
        TargetEnv {
            sink: None,
            commands: Arc::default(),
            file_root: None,
            max_event_set_hops: crate::config::DEFAULT_MAX_EVENT_SET_HOPS,
            binding: None,
        }
    }
}

impl TargetEnv {
    /// This environment for the target of `binding`.
    pub fn for_binding(&self, binding: &BindingId) -> TargetEnv {
        TargetEnv {
            binding: Some(binding.clone()),
            ..self.clone()
        }
    }

    /// Checks a target body against what this server has configured, beyond what
    /// [`validate`] can see: a `command` target must name a configured program
    /// (`$.command.name`). The HTTP layer calls it before storing a body; [`build`] applies
    /// the same checks, so a binding whose program left the configuration reports it.
    pub fn check(&self, body: &Value) -> Result<()> {
        if body.get("type").and_then(Value::as_str) == Some("command") {
            let settings = body.get("command").unwrap_or(&Value::Null);
            command::CommandSettings::parse(settings)?.resolve(self)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for TargetEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TargetEnv")
            .field("sink", &self.sink.is_some())
            .field("commands", &self.commands.keys().collect::<Vec<_>>())
            .field("file_root", &self.file_root)
            .field("max_event_set_hops", &self.max_event_set_hops)
            .field("binding", &self.binding)
            .finish_non_exhaustive()
    }
}

/// The settings object of a target of type `ty` (its member named `ty` in the body), with
/// only the members `fields`. Refusals name `$.<ty>` or the unknown member; `hint` (may be
/// empty) is added to the unknown-member message.
pub(crate) fn settings_object<'a>(
    ty: &str,
    settings: &'a Value,
    fields: &[&str],
    hint: &str,
) -> Result<&'a serde_json::Map<String, Value>> {
    let Value::Object(obj) = settings else {
        return Err(refuse(
            &format!("$.{ty}"),
            format!("a target of type {ty:?} needs an object {ty:?} with its settings"),
        ));
    };
    if let Some(unknown) = obj.keys().find(|k| !fields.contains(&k.as_str())) {
        return Err(refuse(
            &format!("$.{ty}.{unknown}"),
            format!(
                "unknown {ty} setting {unknown:?}; the settings are {}{hint}",
                fields.join(", ")
            ),
        ));
    }
    Ok(obj)
}

/// Builds the target of a stored target body (INTERFACE.md "Target body").
pub fn build(body: &Value, env: &TargetEnv) -> Result<Arc<dyn Target>> {
    let ty = body.get("type").and_then(Value::as_str).unwrap_or_default();
    let settings = body.get(ty).cloned().unwrap_or(Value::Null);
    // The binding batches: http and command targets then always send arrays.
    let batched = body
        .pointer("/batch/max_events")
        .and_then(Value::as_u64)
        .is_some_and(|n| n > 1);
    match ty {
        "http" => {
            let target = http::HttpTarget::new(http::HttpSettings::parse(&settings)?)?;
            Ok(Arc::new(target.batched(batched)))
        }
        "file" => Ok(Arc::new(file::FileTarget::new(
            file::FileSettings::parse(&settings)?,
            env,
        )?)),
        "command" => {
            let settings = command::CommandSettings::parse(&settings)?;
            Ok(Arc::new(command::CommandTarget::new(
                settings, env, batched,
            )?))
        }
        "notify" => Ok(Arc::new(notify::NotifyTarget::new(
            notify::NotifySettings::parse(&settings)?,
        )?)),
        "event-set" => Ok(Arc::new(event_set::EventSetTarget::new(
            event_set::EventSetSettings::parse(&settings)?,
            env,
        )?)),
        other => Err(Error::Unsupported(format!(
            "unknown target type {other:?}; the types are {}",
            crate::catalog::TARGET_TYPES.join(", ")
        ))),
    }
}

/// Checks the settings object of a target type at creation (`$.http.…` paths in errors).
pub fn validate(ty: &str, settings: &Value) -> Result<()> {
    match ty {
        "http" => http::HttpSettings::parse(settings).map(drop),
        "file" => file::FileSettings::parse(settings).map(drop),
        "command" => command::CommandSettings::parse(settings).map(drop),
        "event-set" => event_set::EventSetSettings::parse(settings).map(drop),
        "notify" => notify::NotifySettings::parse(settings).map(drop),
        _ => Ok(()),
    }
}
