//! The fast path of event parsing: one CloudEvents JSON object read straight into an
//! [`Event`], with `data` copied from the request text instead of built into a tree and
//! written out again.
//!
//! It accepts only what is plainly valid and plainly read: every member present at most once,
//! no `null` members, no PutEvents form, nothing refused. On anything else deserialization
//! fails and the caller reads the same text as a [`Value`] through [`super::parse_event`],
//! which gives the full answer (the event, or the refusal with its path and message). So the
//! two paths cannot disagree on an event this one accepts; a property test in the parent
//! module checks that they agree byte for byte.

use std::borrow::Cow;

use serde::de::{Deserialize, Deserializer, Error as _, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use super::{
    CLOUD_EVENT_ATTRIBUTES, Event, EventInput, EventLimits, SPEC_VERSION, check_size,
    is_extension_name, is_json_content_type, parse_time,
};
use crate::error::{Error, Result};

/// An event object read by the fast path. `id` and `time`, when the producer left them out,
/// are filled in when the bus takes the event ([`EventInput::into_event`]), as on the slow
/// path.
#[derive(Debug)]
pub struct TypedEntry {
    event: Event,
    has_id: bool,
    has_time: bool,
}

impl EventInput for TypedEntry {
    fn into_event(self, path: &str, ingest_time_ms: u64, limits: &EventLimits) -> Result<Event> {
        let mut event = self.event;
        if !self.has_id {
            event.id = uuid::Uuid::new_v4().to_string();
        }
        if !self.has_time {
            event.time_ms = i64::try_from(ingest_time_ms).unwrap_or(i64::MAX);
        }
        check_size(event, path, limits)
    }
}

/// Why the fast path stepped aside (never shown: the slow path reads the text again).
const NOT_PLAIN: &str = "not a plain event; read as a JSON value";

impl<'de> Deserialize<'de> for TypedEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        d.deserialize_map(EntryVisitor)
    }
}

struct EntryVisitor;

/// The bit of an attribute (its place in [`CLOUD_EVENT_ATTRIBUTES`]) in the set of those
/// seen; 0 for an extension. A repeated attribute sends the event to the slow path, which keeps
/// the last value as a JSON map does.
fn bit(name: &str) -> u16 {
    CLOUD_EVENT_ATTRIBUTES
        .iter()
        .position(|a| *a == name)
        .map_or(0, |i| 1 << i)
}

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = TypedEntry;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an event object")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> std::result::Result<TypedEntry, M::Error> {
        let aside = || M::Error::custom(NOT_PLAIN);
        let mut ev = Event::new(String::new(), String::new(), String::new());
        let mut seen = 0u16;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            let b = bit(&key);
            if seen & b != 0 {
                return Err(aside());
            }
            seen |= b;
            // A `null` member fails to read as a string, list or map: the slow path then
            // treats it as absent.
            match key.as_ref() {
                "specversion" => {
                    let v: Cow<'de, str> = map.next_value()?;
                    if v != SPEC_VERSION {
                        return Err(aside());
                    }
                }
                "id" => ev.id = non_empty(map.next_value()?).ok_or_else(aside)?,
                "source" => ev.source = non_empty(map.next_value()?).ok_or_else(aside)?,
                "type" => ev.ty = non_empty(map.next_value()?).ok_or_else(aside)?,
                "subject" => ev.subject = Some(map.next_value()?),
                "region" => ev.region = Some(map.next_value()?),
                "status" => ev.status = Some(map.next_value()?),
                // `null` is not a time either: the slow path takes it as absent.
                "time" => ev.time_ms = parse_time(&map.next_value()?).map_err(|_| aside())?,
                "resource" => ev.resource = map.next_value()?,
                "datacontenttype" => {
                    let ct: String = map.next_value()?;
                    if !is_json_content_type(&ct) {
                        return Err(aside());
                    }
                    ev.datacontenttype = Some(ct);
                }
                "tags" => ev.tags = map.next_value()?,
                "data" => {
                    let raw: &'de RawValue = map.next_value()?;
                    if raw.get() == "null" {
                        return Err(aside());
                    }
                    ev.data = compact_data(raw).map_err(|_| aside())?;
                }
                name => {
                    // Extensions: lowercase names with a scalar value. Anything else here
                    // (`data_base64`, PutEvents' `Source`, `EventList`, a bad name) is
                    // answered by the slow path.
                    if b != 0 || !is_extension_name(name) {
                        return Err(aside());
                    }
                    let v: Value = map.next_value()?;
                    if !matches!(v, Value::String(_) | Value::Number(_) | Value::Bool(_))
                        || ev
                            .extensions
                            .insert(name.to_string(), v.to_string())
                            .is_some()
                    {
                        return Err(aside());
                    }
                }
            }
        }
        let required = bit("specversion") | bit("source") | bit("type");
        if seen & required != required {
            return Err(aside());
        }
        Ok(TypedEntry {
            event: ev,
            has_id: seen & bit("id") != 0,
            has_time: seen & bit("time") != 0,
        })
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// The stored bytes of raw `data` text: the text itself when it is already what serde_json
/// writes for its value ([`is_canonical_json`]), otherwise the value written out again, so
/// stored `data` is the same whichever path read it.
fn compact_data(raw: &serde_json::value::RawValue) -> Result<Vec<u8>> {
    let text = raw.get();
    if is_canonical_json(text.as_bytes()) {
        return Ok(text.as_bytes().to_vec());
    }
    let value: Value = serde_json::from_str(text).map_err(|e| Error::Codec(e.to_string()))?;
    serde_json::to_vec(&value).map_err(|e| Error::Codec(e.to_string()))
}

/// True when valid JSON `text` is byte for byte what serde_json writes for its value (with
/// `preserve_order` and `arbitrary_precision`): no whitespace between tokens; in strings no
/// `\/` and no `\u` escape (serde_json writes those characters as themselves, and control
/// characters, which it does write as `\u00XX`, are left to the slow path); exponents as
/// `e+N` / `e-N`; no object with a repeated key (a map keeps one). Objects with many keys are
/// left to the slow path rather than compared pairwise.
pub(super) fn is_canonical_json(text: &[u8]) -> bool {
    const MAX_KEYS: usize = 64;
    /// An open object: the keys seen so far, and whether a key comes next.
    type Object<'t> = (Vec<&'t [u8]>, bool);
    // Per open container: `Some` for objects, `None` for arrays.
    let mut stack: Vec<Option<Object>> = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b'E' => return false,
            b'e' if text.get(i + 1).is_some_and(u8::is_ascii_digit) => return false,
            b'{' => stack.push(Some((Vec::new(), true))),
            b'[' => stack.push(None),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => {
                if let Some(Some((_, expect_key))) = stack.last_mut() {
                    *expect_key = true;
                }
            }
            b'"' => {
                let start = i;
                i += 1;
                while i < text.len() && text[i] != b'"' {
                    if text[i] == b'\\' {
                        if matches!(text.get(i + 1), Some(b'/' | b'u')) {
                            return false;
                        }
                        i += 1;
                    }
                    i += 1;
                }
                if let Some(Some((keys, expect_key))) = stack.last_mut()
                    && *expect_key
                {
                    let key = &text[start..=i.min(text.len() - 1)];
                    if keys.len() >= MAX_KEYS || keys.contains(&key) {
                        return false;
                    }
                    keys.push(key);
                    *expect_key = false;
                }
            }
            _ => {}
        }
        i += 1;
    }
    true
}
