//! The one place that knows the binary encoding of stored values (bincode 2 over serde).
//!
//! A log record's payload is `format:u8 ‖ bincode(offset:u64, ingest_time_ms:u64, event)`.
//! Producers encode their event (`encode_event`) on their own threads; the writer only prefixes
//! the offset and ingest time it assigns (`write_record_payload`). This works because bincode
//! encodes a struct as the plain concatenation of its fields, so the payload is byte-for-byte the
//! bincode encoding of a [`Record`].

use bincode::config::{Configuration, standard};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};
use crate::event::Event;

const CONFIG: Configuration = standard();

/// The first byte of every record payload: what follows and in which version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordFormat {
    /// Version 1: bincode 2 (standard config: varint integers, little endian) of [`Record`].
    EventV1 = 1,
}

impl TryFrom<u8> for RecordFormat {
    type Error = Error;
    fn try_from(b: u8) -> Result<Self> {
        match b {
            1 => Ok(RecordFormat::EventV1),
            other => Err(Error::Codec(format!("unknown record format byte {other}"))),
        }
    }
}

/// A stored event with the position and time the log gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Position in the event set's log.
    pub offset: u64,
    /// When the log accepted it (epoch ms; never decreases along the log).
    pub ingest_time_ms: u64,
    /// The event.
    pub event: Event,
}

/// An event already encoded by its producer, waiting for an offset.
#[derive(Clone, Debug)]
pub struct EncodedEvent(pub(crate) Vec<u8>);

impl EncodedEvent {
    /// Encoded size in bytes (without the record header).
    pub fn len(&self) -> usize {
        self.0.len()
    }
    /// Whether the encoding is empty (never true for a real event).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Encodes an event's body for [`write_record_payload`].
pub fn encode_event(event: &Event) -> Result<EncodedEvent> {
    encode(event).map(EncodedEvent)
}

/// Upper bound of the header `write_record_payload` puts before the event bytes.
pub const MAX_RECORD_HEADER_BYTES: usize = 1 + 9 + 9;

/// Appends a record payload (format byte, offset, ingest time, event) to `out`.
pub fn write_record_payload(
    offset: u64,
    ingest_time_ms: u64,
    event: &EncodedEvent,
    out: &mut Vec<u8>,
) -> Result<()> {
    out.push(RecordFormat::EventV1 as u8);
    bincode::serde::encode_into_std_write((offset, ingest_time_ms), out, CONFIG)
        .map_err(|e| Error::Codec(e.to_string()))?;
    out.extend_from_slice(&event.0);
    Ok(())
}

/// Decodes a whole record payload.
pub fn decode_record(payload: &[u8]) -> Result<Record> {
    let (format, body) = split_format(payload)?;
    match format {
        RecordFormat::EventV1 => decode_exact(body),
    }
}

/// Decodes only the offset and ingest time of a record payload (no event allocation).
pub fn decode_record_header(payload: &[u8]) -> Result<(u64, u64)> {
    let (format, body) = split_format(payload)?;
    match format {
        RecordFormat::EventV1 => {
            let ((offset, time), _) =
                bincode::serde::decode_from_slice::<(u64, u64), _>(body, CONFIG)
                    .map_err(|e| Error::Codec(e.to_string()))?;
            Ok((offset, time))
        }
    }
}

/// Decodes only the offset and the event id of a record payload; the id borrows from
/// `payload` (no event allocation). Used to build the id index.
pub fn decode_record_id(payload: &[u8]) -> Result<(u64, &str)> {
    let (format, body) = split_format(payload)?;
    match format {
        RecordFormat::EventV1 => {
            // Record = offset, ingest_time_ms, then the event: specversion, id, ...
            let ((offset, _time, _specversion, id), _) =
                bincode::serde::borrow_decode_from_slice::<(u64, u64, &str, &str), _>(body, CONFIG)
                    .map_err(|e| Error::Codec(e.to_string()))?;
            Ok((offset, id))
        }
    }
}

fn split_format(payload: &[u8]) -> Result<(RecordFormat, &[u8])> {
    let (&first, body) = payload
        .split_first()
        .ok_or_else(|| Error::Codec("empty record payload".into()))?;
    Ok((RecordFormat::try_from(first)?, body))
}

/// bincode-encodes any serde value (catalog values use this too).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    bincode::serde::encode_to_vec(value, CONFIG).map_err(|e| Error::Codec(e.to_string()))
}

/// Decodes a value that must span all of `bytes`.
pub fn decode_exact<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    let (value, used) = bincode::serde::decode_from_slice::<T, _>(bytes, CONFIG)
        .map_err(|e| Error::Codec(e.to_string()))?;
    if used != bytes.len() {
        return Err(Error::Codec(format!(
            "{} trailing bytes after the value",
            bytes.len() - used
        )));
    }
    Ok(value)
}

/// Convenience for tests and tools: a record's payload from a whole event.
pub fn record_payload(offset: u64, ingest_time_ms: u64, event: &Event) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    write_record_payload(offset, ingest_time_ms, &encode_event(event)?, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_format_try_from_accepts_only_known_bytes() {
        for b in 0..=255u8 {
            let r = RecordFormat::try_from(b);
            if b == 1 {
                assert_eq!(r.unwrap(), RecordFormat::EventV1);
                assert_eq!(RecordFormat::EventV1 as u8, b);
            } else {
                assert!(r.is_err(), "byte {b} accepted");
            }
        }
    }

    #[test]
    fn composed_payload_is_the_bincode_of_a_record() {
        let mut ev = Event::new("a", "s", "t");
        ev.data = br#"{"k":1}"#.to_vec();
        ev.tags.insert("x".into(), "y".into());
        let payload = record_payload(123_456, 1_700_000_000_000, &ev).unwrap();
        let rec = decode_record(&payload).unwrap();
        assert_eq!(rec.offset, 123_456);
        assert_eq!(rec.ingest_time_ms, 1_700_000_000_000);
        assert_eq!(rec.event, ev);
        let whole = encode(&rec).unwrap();
        assert_eq!(&payload[1..], &whole[..]);
        assert_eq!(
            decode_record_header(&payload).unwrap(),
            (123_456, 1_700_000_000_000)
        );
    }

    #[test]
    fn record_id_is_read_without_decoding_the_event() {
        let mut ev = Event::new("évé-1", "shop", "order.created");
        ev.data = br#"{"k":1}"#.to_vec();
        let payload = record_payload(300, 1_700_000_000_123, &ev).unwrap();
        assert_eq!(decode_record_id(&payload).unwrap(), (300, "évé-1"));
        let mut bad = payload.clone();
        bad[0] = 2;
        assert!(decode_record_id(&bad).is_err());
        assert!(decode_record_id(&payload[..6]).is_err());
    }

    #[test]
    fn decode_rejects_trailing_bytes_and_unknown_format() {
        let ev = Event::new("a", "s", "t");
        let mut payload = record_payload(1, 2, &ev).unwrap();
        payload.push(0);
        assert!(decode_record(&payload).is_err());
        payload[0] = 9;
        assert!(decode_record(&payload).is_err());
    }
}
