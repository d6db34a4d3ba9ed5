//! # eventbus
//!
//! A durable, embedded, single-node event bus for cloud-service events (CloudEvents 1.0, in
//! the Tencent Cloud EventBridge flavour).
//!
//! Components, bottom up:
//! - [`store`]: the per-event-set log. CRC-framed records in rolling segment files,
//!   group-committed appends acknowledged after fdatasync, sparse indexes for reads by offset
//!   and time, tailing readers, retention, crash recovery, offline verify and repair.
//! - [`catalog`]: event sets, rules, targets and cursors (sled), validated with Tencent-style
//!   error codes; every change is flushed before it returns.
//! - [`event`]: the event model: CloudEvents 1.0 and Tencent PutEvents parsing and validation.
//! - [`pattern`]: event patterns (Tencent's dialect and the EventBridge operators, with
//!   aws/event-ruler's semantics), compiled once and indexed so one event is matched against
//!   thousands of rules at the cost of the few that could match.
//! - [`bus`]: [`bus::EventBus`], the embeddable whole: the catalog, one log per event set,
//!   the built-in `default` cloud service event set, per-entry puts, de-duplication.
//! - [`codec`]: the binary encoding of stored values (bincode 2 behind one module).
//! - [`config`]: settings and their defaults; [`error`]: the error type.
//!
//! ## Guarantees
//! - With [`PersistPolicy::Always`] (the default) an append is acknowledged only after the
//!   bytes are fdatasynced; a crash or power loss at any instant loses no acknowledged event.
//! - A put answers per entry: a bad entry gets its own error (with a Tencent-style code and
//!   the JSON path of the field) and never affects the others.
//! - Offsets are dense from 0 and never reused; ingest times never decrease along a log.
//! - Damage that a crash cannot explain is never silently dropped: opening fails with
//!   [`Error::Corrupt`] naming the file and byte position.
//!
//! ## Not (yet) here
//! Delivery to targets, the HTTP API: see the project's issues.
//!
//! ## Example
//! ```
//! use eventbus::bus::{BusConfig, EventBus, Producer, PutEntry};
//! use serde_json::json;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let dir = tempfile::tempdir().unwrap();
//! let bus = EventBus::open(BusConfig {
//!     data_dir: dir.path().to_path_buf(),
//!     ..BusConfig::default()
//! })
//! .unwrap();
//! bus.create_set("orders", Some("order events"), None, None).unwrap();
//! let out = bus
//!     .put_events(
//!         "orders",
//!         &[
//!             json!({"specversion": "1.0", "id": "o-1", "source": "shop", "type": "order.created",
//!                    "data": {"total": 12}}),
//!             json!({"specversion": "1.0", "source": "shop"}), // no type: refused
//!         ],
//!         Producer::Custom,
//!     )
//!     .await
//!     .unwrap();
//! assert_eq!(out.failed, 1);
//! assert!(matches!(out.entries[0], PutEntry::Stored { offset: 0, .. }));
//! match &out.entries[1] {
//!     PutEntry::Failed(e) => assert_eq!(e.code(), Some("MissingParameter.Type")),
//!     other => panic!("{other:?}"),
//! }
//! let events: Vec<_> = bus
//!     .read_from("orders", 0)
//!     .unwrap()
//!     .records()
//!     .collect::<Result<_, _>>()
//!     .unwrap();
//! assert_eq!(events[0].event.id, "o-1");
//! bus.shutdown().unwrap();
//! # });
//! ```
//!
//! The log alone ([`EventLog`]) can be embedded too; see [`store`].

pub mod api;
pub mod bus;
pub mod catalog;
pub mod cli;
/// The catalog of official cloud-service events (23 products) and an event simulator.
pub mod cloud;
pub mod codec;
pub mod config;
pub mod delivery;
pub mod error;
pub mod event;
pub mod metrics;
pub mod pattern;
pub mod store;
pub mod targets;
pub mod transform;

pub use codec::Record;
pub use config::{PersistPolicy, RetentionPolicy};
pub use error::{Error, RejectKind, Result};
pub use event::Event;
pub use store::{
    AppendOutcome, EventLog, LogOptions, LogReader, LogStats, ReadOutcome, WriterStats,
};
