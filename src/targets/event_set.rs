//! The `event-set` target: puts the events its rule matched into another event set of the
//! same bus, where that set's own rules and targets take over.
//!
//! Settings (the object under `"event-set"` in a target body; refusals name
//! `$.event-set.<field>`):
//!
//! | field  | type             | meaning                                                         |
//! |--------|------------------|-----------------------------------------------------------------|
//! | `name` | string, required | the destination event set; not `default`, not the rule's own set |
//!
//! **What is put.** Without a transformation, the event itself: `id`, `source`, `type`, `time`,
//! `data` and every other attribute are kept, so the destination's de-duplication window
//! recognises a forward that is retried (or a copy arriving by two paths) and stores it once.
//! With a transformation, its JSON output, which must be an event the bus accepts (a
//! CloudEvents object with `specversion` `"1.0"`, `source` and `type`; a missing `id` becomes
//! the original event's id); anything else (text, an array, an object that is not an event)
//! fails **without retry**, with the reason, and goes to the target's dead-letter handling.
//! The destination's own checks apply: a custom set refuses events over its size limit.
//! Cloud-service events (`*.cloud.tencent`) forwarded out of `default` are accepted by custom
//! sets, which refuse such sources from applications.
//!
//! **Loops.** Every forward adds one to the event's `ebhops` extension attribute (a CloudEvents
//! extension, so receivers downstream see it too). A forward that would take it above the
//! server's `[targets] max_event_set_hops` (default 8) fails without retry, with a message
//! saying so, and the event is dead-lettered where the loop was cut. A rule putting into its
//! own set is refused when the target is created (`$.event-set.name`); longer loops (A → B →
//! A) are stopped by the hop limit, or earlier by the de-duplication window of a set the event
//! has already passed through (a repeat is acknowledged without being stored again). With a
//! transformation the hop count is carried over from the original event, whatever the output
//! says.
//!
//! **`default`.** The built-in cloud service event set takes only cloud services' own puts;
//! these targets put as an application, so `default` is refused as a destination when the
//! target is created.
//!
//! **Failures.** A destination set that does not exist, or that refuses the event (invalid,
//! too large, reserved source), fails without retry; a closed bus or a storage error (no
//! space, a poisoned log) is retryable. Each event is its own put (these targets do not
//! batch), so one event that cannot be forwarded never takes others with it.

use std::sync::Arc;

use serde_json::Value;

use super::{BoxFuture, Delivered, EventSink, Outgoing, SendError, Target, TargetEnv, refuse};
use crate::catalog::DEFAULT_SET;
use crate::error::{Error, RejectKind, Result};
use crate::event::{Event, EventLimits, parse_event};
use crate::transform::Output;

/// The extension attribute counting an event's forwards between event sets.
pub const HOPS_ATTRIBUTE: &str = "ebhops";

/// Settings members; anything else is refused.
const FIELDS: &[&str] = &["name"];

/// Validated settings of an `event-set` target. Built only by [`EventSetSettings::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSetSettings {
    name: String,
}

impl EventSetSettings {
    /// Parses and validates the settings object (see the module docs).
    pub fn parse(settings: &Value) -> Result<EventSetSettings> {
        let obj = super::settings_object("event-set", settings, FIELDS, "")?;
        const PATH: &str = "$.event-set.name";
        let name = match obj.get("name").filter(|v| !v.is_null()) {
            None => {
                return Err(refuse(
                    PATH,
                    "\"name\" (the destination event set) is required",
                ));
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(refuse(PATH, "\"name\" must be a string")),
        };
        if name == DEFAULT_SET {
            return Err(refuse(
                PATH,
                "event-set targets cannot put into the cloud service event set \"default\": \
                 only cloud services write to it",
            ));
        }
        if !crate::catalog::is_valid_name(&name) {
            return Err(refuse(
                PATH,
                format!(
                    "{name:?} is not an event set name (2-60 characters of letters, digits, \
                     '_' or '-', starting with a letter)"
                ),
            ));
        }
        Ok(EventSetSettings { name })
    }

    /// The destination event set.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Refuses a destination that is the rule's own set (`$.event-set.name`).
    pub fn check_not_own_set(&self, own_set: &str) -> Result<()> {
        if self.name == own_set {
            return Err(refuse(
                "$.event-set.name",
                format!(
                    "an event-set target cannot put into its own rule's event set {:?}: every \
                     event would match the rule again",
                    self.name
                ),
            ));
        }
        Ok(())
    }
}

/// An `event-set` target.
pub struct EventSetTarget {
    set: String,
    sink: Arc<dyn EventSink>,
    max_hops: u32,
}

impl std::fmt::Debug for EventSetTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSetTarget")
            .field("set", &self.set)
            .field("max_hops", &self.max_hops)
            .finish_non_exhaustive()
    }
}

impl EventSetTarget {
    /// A target putting through `env.sink`; fails without one, or when the binding's own set
    /// is the destination.
    pub fn new(settings: EventSetSettings, env: &TargetEnv) -> Result<EventSetTarget> {
        if let Some(b) = &env.binding {
            settings.check_not_own_set(&b.set)?;
        }
        let Some(sink) = env.sink.clone() else {
            return Err(Error::Unsupported(
                "event-set targets need an event sink (the delivery engine provides one)"
                    .to_string(),
            ));
        };
        Ok(EventSetTarget {
            set: settings.name,
            sink,
            max_hops: env.max_event_set_hops,
        })
    }

    /// The event to put for `item`, with its hop count raised; an error for an item that
    /// cannot be forwarded.
    fn forward(&self, item: &Outgoing) -> std::result::Result<Event, SendError> {
        let hops = hops_of(&item.event);
        let mut event = match item.output.as_deref() {
            None => (*item.event).clone(),
            Some(Output::Json(v)) => event_from_output(v, &item.event)?,
            Some(Output::Text(_)) => {
                return Err(SendError::permanent(format!(
                    "event {:?}: the rule's transformation produced text; an event-set \
                     target needs a CloudEvents JSON object",
                    item.event.id
                )));
            }
        };
        let hops = hops.max(hops_of(&event)).saturating_add(1);
        if hops > u64::from(self.max_hops) {
            return Err(SendError::permanent(format!(
                "event {:?} has been forwarded between event sets {} times already; \
                 forwarding it to {:?} would exceed max_event_set_hops = {} (a loop of \
                 event-set targets?)",
                item.event.id,
                hops - 1,
                self.set,
                self.max_hops
            )));
        }
        event
            .extensions
            .insert(HOPS_ATTRIBUTE.to_string(), hops.to_string());
        Ok(event)
    }
}

/// The hop count an event carries (0 without one, or when it is not a number).
pub fn hops_of(event: &Event) -> u64 {
    event
        .extensions
        .get(HOPS_ATTRIBUTE)
        .and_then(|raw| {
            let raw = raw.trim().trim_matches('"');
            raw.parse::<u64>().ok()
        })
        .unwrap_or(0)
}

/// Reads a transformation's output as an event; a missing `id` becomes the original's.
fn event_from_output(v: &Value, original: &Event) -> std::result::Result<Event, SendError> {
    let not_event = |why: String| {
        SendError::permanent(format!(
            "event {:?}: the rule's transformation output is not an event the bus accepts \
             ({why}); an event-set target needs a CloudEvents object with specversion \
             \"1.0\", source and type",
            original.id
        ))
    };
    let Value::Object(obj) = v else {
        return Err(not_event("it is not a JSON object".to_string()));
    };
    let mut obj = obj.clone();
    let id_key = if obj.contains_key("Source") {
        "Id"
    } else {
        "id"
    };
    if obj.get(id_key).is_none_or(Value::is_null) {
        obj.insert(id_key.to_string(), Value::String(original.id.clone()));
    }
    let now = crate::config::now_ms();
    // Size is the destination's business: its put checks its own limit.
    let limits = EventLimits {
        max_event_bytes: usize::MAX,
    };
    parse_event(&Value::Object(obj), "$", now, &limits).map_err(|e| not_event(e.to_string()))
}

impl Target for EventSetTarget {
    fn send<'a>(
        &'a self,
        batch: &'a [Outgoing],
    ) -> BoxFuture<'a, std::result::Result<Delivered, SendError>> {
        Box::pin(async move {
            let events = batch
                .iter()
                .map(|item| self.forward(item))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            match self.sink.put(&self.set, events).await {
                Ok(()) => Ok(Delivered::default()),
                Err(e) => Err(classify(&self.set, e)),
            }
        })
    }

    /// One event per put, so an event that cannot be forwarded fails alone.
    fn supports_batches(&self) -> bool {
        false
    }
}

/// A refusal by the destination fails for good (the same event is refused again); anything
/// else (a closed bus, a storage error) may pass.
fn classify(set: &str, e: Error) -> SendError {
    let retryable = match &e {
        Error::Rejected { kind, .. } => matches!(kind, RejectKind::LimitExceeded),
        _ => true,
    };
    SendError {
        retryable,
        retry_after: None,
        status: None,
        message: format!("putting into event set {set:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::catalog::BindingId;
    use serde_json::json;

    #[test]
    fn event_set_settings_refusals_name_their_field() {
        for (body, field, needle) in [
            (json!({}), "$.event-set.name", "required"),
            (json!({"name": 3}), "$.event-set.name", "string"),
            (json!({"name": "default"}), "$.event-set.name", "default"),
            (
                json!({"name": "a/b"}),
                "$.event-set.name",
                "not an event set name",
            ),
            (
                json!({"name": "x", "max_hops": 3}),
                "$.event-set.max_hops",
                "unknown",
            ),
            (json!([]), "$.event-set", "object"),
        ] {
            let e = EventSetSettings::parse(&body).unwrap_err();
            assert!(
                matches!(&e, Error::Rejected { path: Some(p), message, .. }
                    if p == field && message.contains(needle)),
                "{body}: {e:?}"
            );
        }
        assert_eq!(
            EventSetSettings::parse(&json!({"name": "other-set"}))
                .unwrap()
                .name(),
            "other-set"
        );
    }

    #[derive(Default)]
    struct Recorder {
        puts: Mutex<Vec<(String, Vec<Event>)>>,
    }

    impl EventSink for Recorder {
        fn put<'a>(&'a self, set: &'a str, events: Vec<Event>) -> BoxFuture<'a, Result<()>> {
            self.puts.lock().unwrap().push((set.to_string(), events));
            Box::pin(async { Ok(()) })
        }
    }

    fn target(max_hops: u32) -> (EventSetTarget, Arc<Recorder>) {
        let rec = Arc::new(Recorder::default());
        let env = TargetEnv {
            sink: Some(rec.clone()),
            max_event_set_hops: max_hops,
            binding: Some(BindingId::new("src", "r", "t")),
            ..TargetEnv::default()
        };
        let s = EventSetSettings::parse(&json!({"name": "dst"})).unwrap();
        (EventSetTarget::new(s, &env).unwrap(), rec)
    }

    #[test]
    fn event_set_target_refuses_its_own_set() {
        let env = TargetEnv {
            sink: Some(Arc::new(Recorder::default())),
            binding: Some(BindingId::new("dst", "r", "t")),
            ..TargetEnv::default()
        };
        let s = EventSetSettings::parse(&json!({"name": "dst"})).unwrap();
        assert!(EventSetTarget::new(s.clone(), &env).is_err());
        assert!(matches!(
            EventSetTarget::new(s, &TargetEnv::default()),
            Err(Error::Unsupported(_))
        ));
    }

    #[tokio::test]
    async fn event_set_forward_keeps_the_event_and_counts_hops() {
        let (t, rec) = target(2);
        let mut e = Event::new("e1", "shop", "order");
        e.data = b"{\"a\":1}".to_vec();
        t.send(&[Outgoing::plain(Arc::new(e.clone()))])
            .await
            .unwrap();
        let put = rec.puts.lock().unwrap()[0].clone();
        assert_eq!(put.0, "dst");
        let fwd = &put.1[0];
        assert_eq!(
            (fwd.id.as_str(), fwd.data.as_slice()),
            ("e1", &b"{\"a\":1}"[..])
        );
        assert_eq!(hops_of(fwd), 1);
        // Second hop allowed, third refused for good.
        t.send(&[Outgoing::plain(Arc::new(fwd.clone()))])
            .await
            .unwrap();
        let fwd2 = rec.puts.lock().unwrap()[1].1[0].clone();
        assert_eq!(hops_of(&fwd2), 2);
        let err = t
            .send(&[Outgoing::plain(Arc::new(fwd2))])
            .await
            .unwrap_err();
        assert!(!err.retryable);
        assert!(
            err.message.contains("max_event_set_hops = 2"),
            "{}",
            err.message
        );
    }

    #[tokio::test]
    async fn event_set_transformed_output_must_be_an_event() {
        let (t, rec) = target(8);
        let mut original = Event::new("e1", "shop", "order");
        original
            .extensions
            .insert(HOPS_ATTRIBUTE.into(), "3".into());
        let original = Arc::new(original);
        let ok = Outgoing::transformed(
            original.clone(),
            Output::Json(
                json!({"specversion": "1.0", "source": "etl", "type": "slim",
                                 "data": {"x": 1}}),
            ),
        );
        t.send(&[ok]).await.unwrap();
        let fwd = rec.puts.lock().unwrap()[0].1[0].clone();
        assert_eq!((fwd.id.as_str(), fwd.source.as_str()), ("e1", "etl"));
        assert_eq!(hops_of(&fwd), 4, "hops carried over from the original");
        for output in [
            Output::Text("hello".into()),
            Output::Json(json!([1, 2])),
            Output::Json(json!({"source": "etl", "type": "x"})),
        ] {
            let e = t
                .send(&[Outgoing::transformed(original.clone(), output)])
                .await
                .unwrap_err();
            assert!(!e.retryable, "{e:?}");
        }
        assert_eq!(rec.puts.lock().unwrap().len(), 1);
    }

    #[test]
    fn event_set_sink_errors_are_classified() {
        let not_found = Error::rejected(
            RejectKind::NotFound,
            "ResourceNotFound.EventSet",
            None,
            "event set `x` does not exist",
        );
        assert!(!classify("x", not_found).retryable);
        assert!(classify("x", Error::Closed).retryable);
        let io = Error::io(
            "write",
            "/x",
            std::io::Error::from_raw_os_error(libc::ENOSPC),
        );
        assert!(classify("x", io).retryable);
    }
}
