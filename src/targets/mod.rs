//! Targets: where a binding sends the events its rule matched. One file per target type, all
//! behind the [`Target`] trait, which the delivery engine calls with a batch of one or more
//! events and which answers with success or a classified failure (retryable or not, with the
//! receiver's `Retry-After` when it gave one).
//!
//! Only the `http` target exists so far; the other types of INTERFACE.md (`notify`, `file`,
//! `command`, `event-set`) are accepted by the catalog but [`build`] refuses them, and their
//! bindings report that as their last error instead of delivering.

pub mod http;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::event::Event;

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

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A destination for events.
pub trait Target: Send + Sync {
    /// Delivers `events` (one request for the whole batch; a batch of one is a single event).
    /// Must not panic; every failure is a [`SendError`].
    fn send<'a>(
        &'a self,
        events: &'a [Arc<Event>],
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

/// Builds the target of a stored target body (INTERFACE.md "Target body").
pub fn build(body: &Value) -> Result<Arc<dyn Target>> {
    let ty = body.get("type").and_then(Value::as_str).unwrap_or_default();
    let settings = body.get(ty).cloned().unwrap_or(Value::Null);
    match ty {
        "http" => {
            let batched = body
                .pointer("/batch/max_events")
                .and_then(Value::as_u64)
                .is_some_and(|n| n > 1);
            let target = http::HttpTarget::new(http::HttpSettings::parse(&settings)?)?;
            Ok(Arc::new(target.batched(batched)))
        }
        other => Err(Error::Unsupported(format!(
            "target type {other:?} is not implemented yet; only \"http\" targets deliver"
        ))),
    }
}

/// Checks the settings object of a target type at creation (`$.http.…` paths in errors).
pub fn validate(ty: &str, settings: &Value) -> Result<()> {
    match ty {
        "http" => http::HttpSettings::parse(settings).map(drop),
        _ => Ok(()),
    }
}
