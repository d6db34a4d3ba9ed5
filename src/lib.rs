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
//! - [`codec`]: the binary encoding of stored values (bincode 2 behind one module).
//! - [`event`]: the stored event model.
//! - [`config`]: settings and their defaults.
//!
//! ## Guarantees
//! - With [`PersistPolicy::Always`] (the default) an append is acknowledged only after the
//!   bytes are fdatasynced; a crash or power loss at any instant loses no acknowledged event.
//! - Offsets are dense from 0 and never reused; ingest times never decrease along a log.
//! - Damage that a crash cannot explain is never silently dropped: opening fails with
//!   [`Error::Corrupt`] naming the file and byte position.
//!
//! ## Not (yet) here
//! Rules, targets, delivery, the HTTP API: see the project's issues.
//!
//! ## Example
//! ```
//! use eventbus::{Event, EventLog, LogOptions, ReadOutcome};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let log = EventLog::open(dir.path().join("orders"), LogOptions::default()).unwrap();
//! let mut ev = Event::new("e-1", "cvm.cloud.tencent", "cvm:ErrorEvent:PingUnreachable");
//! ev.data = br#"{"instanceId":"ins-1"}"#.to_vec();
//! let ack = log.append_blocking(&[ev.clone()]).unwrap();
//! assert_eq!(ack.first_offset, 0);
//!
//! let mut reader = log.read_from(0);
//! match reader.next().unwrap() {
//!     ReadOutcome::Record(r) => assert_eq!(r.event, ev),
//!     ReadOutcome::EndOfLog => unreachable!(),
//! }
//! log.close().unwrap();
//! ```

pub mod bus;
pub mod catalog;
pub mod cli;
pub mod codec;
pub mod config;
pub mod error;
pub mod event;
pub mod store;

pub use codec::Record;
pub use config::{PersistPolicy, RetentionPolicy};
pub use error::{Error, RejectKind, Result};
pub use event::Event;
pub use store::{
    AppendOutcome, EventLog, LogOptions, LogReader, LogStats, ReadOutcome, WriterStats,
};
