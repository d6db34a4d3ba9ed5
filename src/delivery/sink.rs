//! The engine's [`EventSink`]: `event-set` targets put into another set of the same bus.

use std::sync::{Arc, Weak};

use crate::bus::{EventBus, Producer, PutEntry};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::targets::{BoxFuture, EventSink};

/// Puts into the engine's bus. Holds it weakly: the bus owns the engine's tasks' lifetime, not
/// the other way round, so a target kept alive by a straggling task cannot keep the bus open.
pub(crate) struct BusSink {
    bus: Weak<EventBus>,
}

impl BusSink {
    pub(crate) fn new(bus: &Arc<EventBus>) -> BusSink {
        BusSink {
            bus: Arc::downgrade(bus),
        }
    }
}

impl EventSink for BusSink {
    fn put<'a>(&'a self, set: &'a str, events: Vec<Event>) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let bus = self
                .bus
                .upgrade()
                .ok_or_else(|| Error::Unsupported("the event bus is closed".to_string()))?;
            // Events as they are (already validated, no JSON round trip). As a forward: the
            // `default` set takes only cloud services' own puts, and a custom set takes the
            // cloud-service events forwarded out of `default`.
            let outcome = bus.put_events(set, events, Producer::Forward).await?;
            match outcome.entries.into_iter().find_map(|e| match e {
                PutEntry::Stored { .. } => None,
                PutEntry::Failed(e) => Some(e),
            }) {
                None => Ok(()),
                Some(e) => Err(e),
            }
        })
    }
}
