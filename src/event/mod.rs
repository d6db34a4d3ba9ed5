//! The event model: a CloudEvents 1.0 event in the Tencent flavour, as it is stored, and the
//! parsing and validation of incoming events ([`parse_event`]).
//!
//! Two input forms are accepted:
//! - the CloudEvents 1.0 structured JSON object (`specversion`, `id`, `source`, `type`, ...);
//! - the Tencent `PutEvents` entry (`Source`, `Data` as a JSON string, `Type`, `TagList`, ...),
//!   recognised by its capitalized `Source` key.
//!
//! Both normalize to one [`Event`]: `time` becomes epoch milliseconds (ingest time when absent),
//! a missing `id` becomes a UUID v4, `data` is kept as compact JSON bytes. Null-valued optional
//! attributes count as absent (CloudEvents JSON format). Every refusal is an
//! [`Error::Rejected`] with a Tencent-style code and the JSON path of the offending field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::DEFAULT_MAX_EVENT_BYTES;
use crate::error::{Error, RejectKind, Result};

mod typed;

pub use typed::TypedEntry;

/// One event as the log stores it.
///
/// `data` is kept as the raw JSON bytes the producer sent (empty when the event has no data), so
/// storing and delivering an event never re-serializes its payload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// CloudEvents spec version, "1.0".
    pub specversion: String,
    /// Producer-assigned (or bus-assigned UUID) id.
    pub id: String,
    /// Event source, e.g. `cvm.cloud.tencent`.
    pub source: String,
    /// Event type, e.g. `cvm:ErrorEvent:PingUnreachable`.
    #[serde(rename = "type")]
    pub ty: String,
    /// Subject (usually the resource id).
    pub subject: Option<String>,
    /// Event time in epoch milliseconds.
    pub time_ms: i64,
    /// Region, e.g. `ap-guangzhou`.
    pub region: Option<String>,
    /// Resource names (QCS strings).
    pub resource: Vec<String>,
    /// Content type of `data`.
    pub datacontenttype: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Status ("1" abnormal, "0" recovered, "-" stateless for cloud-service events).
    pub status: Option<String>,
    /// Extension attributes: name → the attribute's value as JSON text.
    pub extensions: BTreeMap<String, String>,
    /// The `data` member as raw JSON bytes; empty when absent.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl Event {
    /// A minimal event with the required attributes; everything else empty.
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Event {
            specversion: "1.0".to_string(),
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time_ms: 0,
            region: None,
            resource: Vec::new(),
            datacontenttype: None,
            tags: BTreeMap::new(),
            status: None,
            extensions: BTreeMap::new(),
            data: Vec::new(),
        }
    }

    /// Renders the event as a structured-mode CloudEvents JSON object.
    ///
    /// Raw `data` or extension bytes that are not valid JSON (only possible with damaged input
    /// written by a foreign tool) are emitted as JSON strings rather than dropped.
    pub fn to_json(&self) -> Value {
        let mut m = self.attributes_json();
        if !self.data.is_empty() {
            m.insert("data".into(), raw_json(&self.data));
        }
        Value::Object(m)
    }

    /// The length in bytes of `serde_json::to_vec(&self.to_json())`, without parsing `data`
    /// again: `data` holds compact JSON as serde_json writes it, which is what `to_json` would
    /// emit for it, so its bytes count as they are (plus `,"data":`).
    ///
    /// Counted member by member (no map is built, nothing is cloned): this runs for every
    /// event a producer puts, for the size limit.
    pub fn json_len(&self) -> usize {
        // `"key":` plus the value, for each member; commas between members; the braces.
        let member = |key: &str, value_len: usize| str_json_len(key) + 1 + value_len;
        let opt = |key: &str, v: &Option<String>| v.as_ref().map(|s| member(key, str_json_len(s)));
        let mut members = vec![
            member("specversion", str_json_len(&self.specversion)),
            member("id", str_json_len(&self.id)),
            member("source", str_json_len(&self.source)),
            member("type", str_json_len(&self.ty)),
            member("time", int_json_len(self.time_ms)),
        ];
        members.extend(opt("subject", &self.subject));
        members.extend(opt("region", &self.region));
        members.extend(opt("datacontenttype", &self.datacontenttype));
        members.extend(opt("status", &self.status));
        if !self.resource.is_empty() {
            let items: usize = self.resource.iter().map(|r| str_json_len(r)).sum();
            members.push(member("resource", 2 + items + self.resource.len() - 1));
        }
        if !self.tags.is_empty() {
            let pairs: usize = self
                .tags
                .iter()
                .map(|(k, v)| str_json_len(k) + 1 + str_json_len(v))
                .sum();
            members.push(member("tags", 2 + pairs + self.tags.len() - 1));
        }
        for (k, v) in &self.extensions {
            members.push(member(k, compact_json_len(&raw_json(v.as_bytes()))));
        }
        if !self.data.is_empty() {
            members.push(member("data", self.data.len()));
        }
        2 + members.iter().sum::<usize>() + members.len() - 1
    }

    /// Every attribute except `data`, as `to_json` renders them.
    fn attributes_json(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("specversion".into(), self.specversion.clone().into());
        m.insert("id".into(), self.id.clone().into());
        m.insert("source".into(), self.source.clone().into());
        m.insert("type".into(), self.ty.clone().into());
        if let Some(s) = &self.subject {
            m.insert("subject".into(), s.clone().into());
        }
        m.insert("time".into(), self.time_ms.into());
        if let Some(r) = &self.region {
            m.insert("region".into(), r.clone().into());
        }
        if !self.resource.is_empty() {
            m.insert("resource".into(), self.resource.clone().into());
        }
        if let Some(c) = &self.datacontenttype {
            m.insert("datacontenttype".into(), c.clone().into());
        }
        if !self.tags.is_empty() {
            let tags: Map<String, Value> = self
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect();
            m.insert("tags".into(), tags.into());
        }
        if let Some(s) = &self.status {
            m.insert("status".into(), s.clone().into());
        }
        for (k, v) in &self.extensions {
            m.insert(k.clone(), raw_json(v.as_bytes()));
        }
        m
    }
}

fn raw_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// Size limits applied by [`parse_event`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventLimits {
    /// Cap on the serialized structured-mode JSON of the normalized event
    /// ([`Event::to_json`]). Default = 64 KiB ([`DEFAULT_MAX_EVENT_BYTES`]).
    pub max_event_bytes: usize,
}

impl Default for EventLimits {
    fn default() -> Self {
        EventLimits {
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// Length of `s` as a JSON string literal the way serde_json writes it: quotes, `\"` `\\`
/// and the short escapes of `\b \f \n \r \t` add one byte, other control characters
/// become `\u00XX` (five more); everything else, non-ASCII included, is written as is.
fn str_json_len(s: &str) -> usize {
    let extra: usize = s
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | 0x08 | 0x0c | b'\n' | b'\r' | b'\t' => 1,
            0..=0x1f => 5,
            _ => 0,
        })
        .sum();
    2 + s.len() + extra
}

/// Decimal digits of `n`, with its sign.
fn int_json_len(n: i64) -> usize {
    let sign = usize::from(n < 0);
    let mut m = n.unsigned_abs();
    let mut digits = 1;
    while m >= 10 {
        m /= 10;
        digits += 1;
    }
    sign + digits
}

/// Length in bytes of `serde_json::to_vec(v)`, counted without building the text.
pub fn compact_json_len(v: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing a Value to a sink that cannot fail cannot fail.
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// The only CloudEvents version accepted.
const SPEC_VERSION: &str = "1.0";
/// Content type given to events from the PutEvents form, whose `Data` is always JSON.
const PUT_EVENTS_CONTENT_TYPE: &str = "application/json;charset=utf-8";
/// Longest extension attribute name (CloudEvents: "SHOULD NOT exceed 20 characters").
const MAX_EXTENSION_NAME_CHARS: usize = 20;

/// Context attributes (and `data`) of the CloudEvents form; every other member is an extension.
const CLOUD_EVENT_ATTRIBUTES: &[&str] = &[
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "region",
    "resource",
    "datacontenttype",
    "tags",
    "status",
    "data",
    "data_base64",
];

/// Members of a Tencent PutEvents entry.
const PUT_EVENTS_FIELDS: &[&str] = &[
    "Source", "Data", "Type", "Subject", "Time", "Region", "Status", "Id", "TagList",
];

/// Parses and validates one incoming event (a CloudEvents 1.0 JSON object or a Tencent
/// PutEvents entry) into the stored shape.
///
/// `path` is the JSON path of this entry in the request (`$`, `$[2]`, `$.EventList[2]`); error
/// paths extend it (`$[2].time`). `ingest_time_ms` fills a missing `time`.
pub fn parse_event(
    value: &Value,
    path: &str,
    ingest_time_ms: u64,
    limits: &EventLimits,
) -> Result<Event> {
    let Value::Object(obj) = value else {
        return Err(invalid(
            "InvalidEvent",
            path,
            format!("an event must be a JSON object, found {}", json_kind(value)),
        ));
    };
    parse_object(obj, path, ingest_time_ms, limits)
}

/// An incoming event in a form [`crate::EventBus::put_events`] reads: a JSON value (`&Value`)
/// or a [`TypedEntry`]. Both give the same event (or the same refusal) for the same JSON text.
/// An [`Event`] is one already validated (stored in a set, forwarded to another): only the
/// destination's size limit is checked.
pub trait EventInput {
    /// Parses and validates this entry, as [`parse_event`] does.
    fn into_event(self, path: &str, ingest_time_ms: u64, limits: &EventLimits) -> Result<Event>;
}

impl EventInput for Event {
    fn into_event(self, path: &str, _ingest_time_ms: u64, limits: &EventLimits) -> Result<Event> {
        check_size(self, path, limits)
    }
}

impl EventInput for &Value {
    fn into_event(self, path: &str, ingest_time_ms: u64, limits: &EventLimits) -> Result<Event> {
        parse_event(self, path, ingest_time_ms, limits)
    }
}

impl EventInput for Value {
    fn into_event(self, path: &str, ingest_time_ms: u64, limits: &EventLimits) -> Result<Event> {
        parse_event(&self, path, ingest_time_ms, limits)
    }
}

fn parse_object(
    obj: &Map<String, Value>,
    path: &str,
    ingest_time_ms: u64,
    limits: &EventLimits,
) -> Result<Event> {
    let ingest_ms = i64::try_from(ingest_time_ms).unwrap_or(i64::MAX);
    let event = if obj.contains_key("Source") {
        parse_put_events_entry(obj, path, ingest_ms)?
    } else {
        parse_cloud_event(obj, path, ingest_ms)?
    };
    check_size(event, path, limits)
}

/// Refuses an event larger than the limit (as structured-mode JSON).
fn check_size(event: Event, path: &str, limits: &EventLimits) -> Result<Event> {
    let size = event.json_len();
    if size > limits.max_event_bytes {
        return Err(Error::rejected(
            RejectKind::TooLarge,
            "LimitExceeded.EventSize",
            Some(path),
            format!(
                "the event is {size} bytes as JSON; the limit is {} bytes",
                limits.max_event_bytes
            ),
        ));
    }
    Ok(event)
}

/// Splits a type of the form `product:Category:Name` (three non-empty parts of ASCII letters,
/// digits, `_` or `-`) into its parts, e.g. `cvm:ErrorEvent:PingUnreachable`.
pub fn cloud_event_type_parts(ty: &str) -> Option<(&str, &str, &str)> {
    let mut parts = ty.split(':');
    let (product, category, name) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let ok = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    (ok(product) && ok(category) && ok(name)).then_some((product, category, name))
}

/// True for a cloud-service source: `<product>.cloud.tencent` with a non-empty `<product>`.
pub fn is_cloud_source(source: &str) -> bool {
    source
        .strip_suffix(".cloud.tencent")
        .is_some_and(|prefix| !prefix.is_empty())
}

fn parse_cloud_event(obj: &Map<String, Value>, path: &str, ingest_ms: i64) -> Result<Event> {
    let f = Fields { obj, path };
    match f.get("specversion") {
        None => return Err(missing("SpecVersion", &f.path_of("specversion"))),
        Some(Value::String(v)) if v == SPEC_VERSION => {}
        Some(other) => {
            return Err(invalid(
                "SpecVersion",
                &f.path_of("specversion"),
                format!(
                    "specversion must be \"{SPEC_VERSION}\", found {}",
                    short_json(other)
                ),
            ));
        }
    }
    let mut ev = Event::new(
        f.opt_id("id")?,
        f.required_string("source", "Source")?,
        f.required_string("type", "Type")?,
    );
    ev.subject = f.opt_string("subject", "Subject")?;
    ev.time_ms = f.time("time", ingest_ms)?;
    ev.region = f.opt_string("region", "Region")?;
    if let Some(v) = f.get("resource") {
        let p = f.path_of("resource");
        let Value::Array(items) = v else {
            return Err(invalid(
                "Resource",
                &p,
                format!(
                    "resource must be an array of strings, found {}",
                    json_kind(v)
                ),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let Value::String(s) = item else {
                return Err(invalid(
                    "Resource",
                    &format!("{p}[{i}]"),
                    format!("resource items must be strings, found {}", json_kind(item)),
                ));
            };
            ev.resource.push(s.clone());
        }
    }
    if let Some(ct) = f.opt_string("datacontenttype", "DataContentType")? {
        if !is_json_content_type(&ct) {
            return Err(invalid(
                "DataContentType",
                &f.path_of("datacontenttype"),
                format!(
                    "datacontenttype {ct:?} is not JSON; only JSON data is supported \
                     (application/json or a +json type)"
                ),
            ));
        }
        ev.datacontenttype = Some(ct);
    }
    if let Some(v) = f.get("tags") {
        let p = f.path_of("tags");
        let Value::Object(tags) = v else {
            return Err(invalid(
                "Tags",
                &p,
                format!(
                    "tags must be an object of string values, found {}",
                    json_kind(v)
                ),
            ));
        };
        for (k, tv) in tags {
            let Value::String(s) = tv else {
                return Err(invalid(
                    "Tags",
                    &member_path(&p, k),
                    format!(
                        "tag {k:?} must have a string value, found {}",
                        json_kind(tv)
                    ),
                ));
            };
            ev.tags.insert(k.clone(), s.clone());
        }
    }
    ev.status = f.opt_string("status", "Status")?;
    if f.get("data_base64").is_some() {
        return Err(invalid(
            "Data",
            &f.path_of("data_base64"),
            "data_base64 is not supported: only JSON data is accepted; send it in \"data\"",
        ));
    }
    if let Some(data) = f.get("data") {
        ev.data = serde_json::to_vec(data).map_err(|e| Error::Codec(e.to_string()))?;
    }
    for (name, value) in obj {
        if CLOUD_EVENT_ATTRIBUTES.contains(&name.as_str()) {
            continue;
        }
        let p = member_path(path, name);
        if !is_extension_name(name) {
            return Err(invalid(
                "ExtensionName",
                &p,
                format!(
                    "{name:?} is neither a known attribute nor a valid extension name: \
                     extension names are 1-{MAX_EXTENSION_NAME_CHARS} characters of \
                     lowercase a-z and 0-9"
                ),
            ));
        }
        match value {
            Value::Null => {}
            Value::String(_) | Value::Number(_) | Value::Bool(_) => {
                ev.extensions.insert(name.clone(), value.to_string());
            }
            Value::Array(_) | Value::Object(_) => {
                return Err(invalid(
                    "ExtensionValue",
                    &p,
                    format!(
                        "extension attribute {name:?} must be a string, number or boolean, \
                         found {}",
                        json_kind(value)
                    ),
                ));
            }
        }
    }
    Ok(ev)
}

fn parse_put_events_entry(obj: &Map<String, Value>, path: &str, ingest_ms: i64) -> Result<Event> {
    let f = Fields { obj, path };
    if let Some(unknown) = obj
        .keys()
        .find(|k| !PUT_EVENTS_FIELDS.contains(&k.as_str()))
    {
        return Err(invalid(
            "InvalidEvent",
            &member_path(path, unknown),
            format!(
                "unknown member {unknown:?} in a PutEvents entry (the capitalized \"Source\" \
                 marks this form; members are {})",
                PUT_EVENTS_FIELDS.join(", ")
            ),
        ));
    }
    let mut ev = Event::new(
        f.opt_id("Id")?,
        f.required_string("Source", "Source")?,
        f.required_string("Type", "Type")?,
    );
    ev.subject = f.opt_string("Subject", "Subject")?;
    ev.time_ms = f.time("Time", ingest_ms)?;
    ev.region = f.opt_string("Region", "Region")?;
    ev.status = f.opt_string("Status", "Status")?;
    let data_path = f.path_of("Data");
    let data = match f.get("Data") {
        None => return Err(missing("Data", &data_path)),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(invalid(
                "Data",
                &data_path,
                format!(
                    "Data must be a string holding JSON (e.g. \"{{\\\"k\\\":1}}\"), found {}",
                    json_kind(other)
                ),
            ));
        }
    };
    let parsed: Value = serde_json::from_str(data).map_err(|e| {
        invalid(
            "Data",
            &data_path,
            format!("Data must be a string holding valid JSON: {e}"),
        )
    })?;
    if !parsed.is_null() {
        ev.data = serde_json::to_vec(&parsed).map_err(|e| Error::Codec(e.to_string()))?;
    }
    ev.datacontenttype = Some(PUT_EVENTS_CONTENT_TYPE.to_string());
    if let Some(v) = f.get("TagList") {
        let p = f.path_of("TagList");
        let Value::Array(items) = v else {
            return Err(invalid(
                "Tags",
                &p,
                format!(
                    "TagList must be an array of {{\"Key\",\"Value\"}} objects, found {}",
                    json_kind(v)
                ),
            ));
        };
        for (i, item) in items.iter().enumerate() {
            let ip = format!("{p}[{i}]");
            let Value::Object(tag) = item else {
                return Err(invalid(
                    "Tags",
                    &ip,
                    format!(
                        "TagList items must be {{\"Key\",\"Value\"}} objects, found {}",
                        json_kind(item)
                    ),
                ));
            };
            let string_member = |name: &str| match tag.get(name) {
                Some(Value::String(s)) => Ok(s.clone()),
                other => Err(invalid(
                    "Tags",
                    &format!("{ip}.{name}"),
                    format!(
                        "TagList items need a string {name:?}, found {}",
                        other.map_or("nothing", json_kind)
                    ),
                )),
            };
            let key = string_member("Key")?;
            let value = string_member("Value")?;
            if let Some(extra) = tag.keys().find(|k| *k != "Key" && *k != "Value") {
                return Err(invalid(
                    "Tags",
                    &member_path(&ip, extra),
                    format!("TagList items have only \"Key\" and \"Value\", found {extra:?}"),
                ));
            }
            if ev.tags.insert(key.clone(), value).is_some() {
                return Err(invalid(
                    "Tags",
                    &format!("{ip}.Key"),
                    format!("tag key {key:?} appears more than once in TagList"),
                ));
            }
        }
    }
    Ok(ev)
}

/// Typed access to one event object's members; null members count as absent.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    path: &'a str,
}

impl<'a> Fields<'a> {
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn path_of(&self, key: &str) -> String {
        member_path(self.path, key)
    }

    fn opt_string(&self, key: &str, field: &str) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(invalid(
                field,
                &self.path_of(key),
                format!("{key} must be a string, found {}", json_kind(other)),
            )),
        }
    }

    fn required_string(&self, key: &str, field: &str) -> Result<String> {
        match self.opt_string(key, field)? {
            None => Err(missing(field, &self.path_of(key))),
            Some(s) if s.is_empty() => Err(invalid(
                field,
                &self.path_of(key),
                format!("{key} must not be empty"),
            )),
            Some(s) => Ok(s),
        }
    }

    /// The event id, or a fresh UUID v4 when absent.
    fn opt_id(&self, key: &str) -> Result<String> {
        match self.opt_string(key, "Id")? {
            None => Ok(uuid::Uuid::new_v4().to_string()),
            Some(s) if s.is_empty() => Err(invalid(
                "Id",
                &self.path_of(key),
                format!("{key} must not be empty (omit it to have one assigned)"),
            )),
            Some(s) => Ok(s),
        }
    }

    /// Epoch ms from an integer, a numeric string or an RFC 3339 string; absent → `default`.
    fn time(&self, key: &str, default: i64) -> Result<i64> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        parse_time(v).map_err(|rule| invalid("Time", &self.path_of(key), rule))
    }
}

/// Epoch milliseconds from a JSON time value, or the rule it broke.
pub(crate) fn parse_time(v: &Value) -> std::result::Result<i64, String> {
    const RULE: &str = "must be epoch milliseconds (an integer or a string of digits) or an \
                        RFC 3339 timestamp such as \"2021-03-11T02:42:39.146Z\"";
    match v {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("time {n} {RULE}; it is not an integer in range")),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse::<i64>()
            .map_err(|_| format!("time {s:?} is out of range")),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_millis())
            .map_err(|e| format!("time {s:?} {RULE} ({e})")),
        other => Err(format!("time {RULE}, found {}", json_kind(other))),
    }
}

/// CloudEvents extension names: 1-20 characters of lowercase a-z and 0-9.
fn is_extension_name(name: &str) -> bool {
    (1..=MAX_EXTENSION_NAME_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// `application/json`, or any `+json` structured-syntax type, parameters ignored.
fn is_json_content_type(ct: &str) -> bool {
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.contains('/') && media.ends_with("+json"))
}

/// `prefix.key` for plain keys, `prefix["key"]` (JSON-escaped) otherwise.
fn member_path(prefix: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if plain {
        format!("{prefix}.{key}")
    } else {
        format!("{prefix}[{}]", Value::from(key))
    }
}

fn invalid(field: &str, path: &str, message: impl Into<String>) -> Error {
    Error::rejected(
        RejectKind::Invalid,
        format!("InvalidParameterValue.{field}"),
        Some(path),
        message,
    )
}

fn missing(field: &str, path: &str) -> Error {
    Error::rejected(
        RejectKind::Invalid,
        format!("MissingParameter.{field}"),
        Some(path),
        format!("the required attribute at {path} is missing"),
    )
}

/// "null", "a boolean", "a number", "a string", "an array" or "an object", for messages.
pub fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A value for an error message, cut to a readable length.
fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_len_equals_the_length_of_the_rendered_json() {
        let mut e = Event::new(
            "id-1",
            "cvm.cloud.tencent",
            "cvm:ErrorEvent:PingUnreachable",
        );
        assert_eq!(
            e.json_len(),
            serde_json::to_vec(&e.to_json()).unwrap().len()
        );
        let data = serde_json::json!({"b": [1, 2.5, -3e-7, "x\u{e9}\n"], "a": {"z": null}});
        e.data = serde_json::to_vec(&data).unwrap();
        e.extensions.insert("ext".into(), "\"v\"".into());
        e.tags.insert("k".into(), "v".into());
        assert_eq!(
            e.json_len(),
            serde_json::to_vec(&e.to_json()).unwrap().len()
        );
    }

    use proptest::strategy::Strategy as _;

    proptest::proptest! {
        /// The counted length agrees with the rendered JSON for any attribute values:
        /// control characters, quotes, backslashes, non-ASCII, negative times, empty lists.
        #[test]
        fn json_len_matches_rendering_for_any_event(
            id in "\\PC{1,12}",
            source in "[\u{0}-\u{7f}é中]{1,12}",
            subject in proptest::option::of("[\u{0}-\u{20}\"\\\\a-z]{0,8}"),
            time_ms in proptest::num::i64::ANY,
            resource in proptest::collection::vec("\\PC{0,6}", 0..3),
            tags in proptest::collection::btree_map("[a-z\"]{0,4}", "\\PC{0,4}", 0..3),
            ext in proptest::option::of(proptest::prop_oneof![
                proptest::strategy::Just("true".to_string()),
                "-?[0-9]{1,5}",
                "[a-z\\n]{0,5}".prop_map(|s| Value::from(s).to_string()),
            ]),
            data in proptest::option::of("[\u{0}-\u{7f}]{0,10}"),
        ) {
            let mut e = Event::new(id, source, "t");
            e.subject = subject;
            e.time_ms = time_ms;
            e.resource = resource;
            e.tags = tags;
            if let Some(x) = ext {
                e.extensions.insert("ext".into(), x);
            }
            if let Some(d) = data {
                e.data = serde_json::to_vec(&serde_json::json!({"d": d, "n": [1, -2.5]})).unwrap();
            }
            proptest::prop_assert_eq!(
                e.json_len(),
                serde_json::to_vec(&e.to_json()).unwrap().len()
            );
        }
    }

    /// JSON text for `data`: numbers in every spelling, escapes serde_json does and does not
    /// write, whitespace, and objects whose keys repeat (also spelled differently).
    fn data_text() -> impl proptest::strategy::Strategy<Value = String> {
        let leaf = proptest::sample::select(vec![
            "1",
            "-0",
            "1.50",
            "1E5",
            "1e5",
            "1e+5",
            "2.5e-3",
            "true",
            "false",
            "null",
            "\"a\"",
            "\"\\u00e9\"",
            "\"\\/\"",
            "\"\\n\\\"\\\\\"",
            "\"é\u{2028}\"",
            "\"\\u001f\"",
            "\"\\uD83D\\uDE00\"",
            "\"e1\"",
            "\"E\"",
        ])
        .prop_map(str::to_string);
        let sep = || proptest::sample::select(vec!["", " ", "\n\t", "\r\n "]);
        leaf.prop_recursive(4, 24, 4, move |inner| {
            proptest::prop_oneof![
                (proptest::collection::vec(inner.clone(), 0..4), sep()).prop_map(|(items, ws)| {
                    format!("[{ws}{}{ws}]", items.join(&format!(",{ws}")))
                }),
                (
                    proptest::collection::vec(
                        (
                            proptest::sample::select(vec!["a", "b", "\\u0061", "x\\\"y", "é"]),
                            inner
                        ),
                        0..4,
                    ),
                    sep(),
                )
                    .prop_map(|(members, ws)| {
                        let members: Vec<String> = members
                            .iter()
                            .map(|(k, v)| format!("\"{k}\"{ws}:{ws}{v}"))
                            .collect();
                        format!("{{{ws}{}{ws}}}", members.join(","))
                    }),
            ]
        })
    }

    /// The value text of a `"data":…` member.
    fn data_text_value(member: &str) -> &str {
        member.strip_prefix("\"data\":").unwrap_or(member)
    }

    proptest::proptest! {
        /// The fast path ([`TypedEntry`]), whenever it takes an event, gives exactly what
        /// the slow path gives for the same text: the same event, the same stored `data`
        /// bytes; and it takes every plain event (canonical `data`, no unusual member).
        #[test]
        fn typed_entries_read_like_values(
            data in data_text(),
            // Members in any order, some repeated, some unusual.
            extra in proptest::collection::vec(proptest::sample::select(vec![
                r#""data":{"late":1}"#, r#""data":null"#, r#""ext":"v""#, r#""Ext":1"#,
                r#""Source":"s""#, r#""time":"2021-03-11T02:42:39.146Z""#, r#""time":1.5"#,
                r#""subject":7"#, r#""data_base64":"AA==""#, r#""tags":{"k":"v"}"#,
                r#""time":"1615430559146""#, r#""resource":["qcs::a"]"#, r#""x1":true"#,
                r#""datacontenttype":"text/plain""#, r#""id":"""#, r#""specversion":"0.3""#,
            ]), 0..3),
            data_first in proptest::bool::ANY,
        ) {
            let base = r#""specversion":"1.0","id":"e1","source":"app","type":"t""#;
            let data = format!("\"data\":{data}");
            let mut members = if data_first {
                vec![data.clone(), base.to_string()]
            } else {
                vec![base.to_string(), data.clone()]
            };
            members.extend(extra.iter().map(|m| m.to_string()));
            let text = format!("{{{}}}", members.join(","));
            let limits = EventLimits::default();
            let as_value: Value = serde_json::from_str(&text).unwrap();
            let slow = parse_event(&as_value, "$[0]", 1_000, &limits);
            match serde_json::from_str::<TypedEntry>(&text) {
                Ok(typed) => {
                    let fast = typed.into_event("$[0]", 1_000, &limits);
                    match (slow, fast) {
                        (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b, "{}", text),
                        (Err(a), Err(b)) => {
                            proptest::prop_assert_eq!(a.to_string(), b.to_string())
                        }
                        (a, b) => proptest::prop_assert!(false, "{text}: {a:?} vs {b:?}"),
                    }
                }
                Err(_) => {
                    // Stepping aside is only allowed for something unusual.
                    let plain = extra.is_empty()
                        && typed::is_canonical_json(data_text_value(&data).as_bytes())
                        && !data.ends_with(":null");
                    proptest::prop_assert!(!plain, "a plain event was refused: {}", text);
                }
            }
        }

        /// Text the canonical check accepts is exactly what serde_json writes for it.
        #[test]
        fn canonical_text_is_what_serde_json_writes(data in data_text()) {
            let value: Value = serde_json::from_str(&data).unwrap();
            let written = serde_json::to_string(&value).unwrap();
            if typed::is_canonical_json(data.as_bytes()) {
                proptest::prop_assert_eq!(&data, &written);
            }
            // And serde_json's own output always passes, unless it holds a control-character
            // escape.
            if !written.contains("\\u") {
                proptest::prop_assert!(typed::is_canonical_json(written.as_bytes()), "{}", written);
            }
        }
    }

    #[test]
    fn to_json_emits_time_as_epoch_ms_and_raw_data() {
        let mut e = Event::new(
            "id-1",
            "cvm.cloud.tencent",
            "cvm:ErrorEvent:PingUnreachable",
        );
        e.time_ms = 1_615_430_559_146;
        e.data = br#"{"instanceId":"ins-1"}"#.to_vec();
        e.extensions.insert("replayname".into(), "\"r1\"".into());
        let j = e.to_json();
        assert_eq!(j["time"], 1_615_430_559_146i64);
        assert_eq!(j["data"]["instanceId"], "ins-1");
        assert_eq!(j["replayname"], "r1");
        assert!(j.get("subject").is_none());
    }

    #[test]
    fn cloud_event_type_parts_needs_three_plain_parts() {
        assert_eq!(
            cloud_event_type_parts("cvm:ErrorEvent:PingUnreachable"),
            Some(("cvm", "ErrorEvent", "PingUnreachable"))
        );
        assert_eq!(
            cloud_event_type_parts("eb_platform_test:TEST:ALL"),
            Some(("eb_platform_test", "TEST", "ALL"))
        );
        assert_eq!(
            cloud_event_type_parts("cvm:ErrorEvent:ping_unreachable-2"),
            Some(("cvm", "ErrorEvent", "ping_unreachable-2"))
        );
        for bad in [
            "",
            "cvm",
            "connector:kafka",
            "cvm::Ping",
            ":a:b",
            "a:b:",
            "a:b:c:d",
            "a b:c:d",
            "a:b.c:d",
            "cvm:ErrorEvent:Ping/Unreachable",
        ] {
            assert_eq!(cloud_event_type_parts(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn is_cloud_source_needs_a_prefix_and_the_suffix() {
        assert!(is_cloud_source("cvm.cloud.tencent"));
        assert!(is_cloud_source("a.b.cloud.tencent"));
        assert!(!is_cloud_source(".cloud.tencent"));
        assert!(!is_cloud_source("cloud.tencent"));
        assert!(!is_cloud_source("cvm.cloud.tencent.evil"));
        assert!(!is_cloud_source("my.app"));
    }

    #[test]
    fn parse_time_accepts_ms_digits_and_rfc3339() {
        assert_eq!(parse_time(&Value::from(5i64)), Ok(5));
        assert_eq!(
            parse_time(&Value::from("1615430559146")),
            Ok(1_615_430_559_146)
        );
        assert_eq!(
            parse_time(&Value::from("1970-01-01T00:00:01.5Z")),
            Ok(1_500)
        );
        assert!(parse_time(&Value::from(1.5)).is_err());
        assert!(parse_time(&Value::from("")).is_err());
        assert!(parse_time(&Value::from("99999999999999999999")).is_err());
        assert!(parse_time(&Value::from(true)).is_err());
    }

    #[test]
    fn extension_name_rule_is_lowercase_alnum_up_to_20() {
        assert!(is_extension_name("replayname"));
        assert!(is_extension_name("a1"));
        assert!(is_extension_name(&"a".repeat(20)));
        assert!(!is_extension_name(&"a".repeat(21)));
        assert!(!is_extension_name(""));
        assert!(!is_extension_name("Data"));
        assert!(!is_extension_name("my_ext"));
        assert!(!is_extension_name("é"));
    }

    #[test]
    fn member_path_quotes_unusual_keys() {
        assert_eq!(member_path("$[0]", "time"), "$[0].time");
        assert_eq!(member_path("$", "a b"), "$[\"a b\"]");
        assert_eq!(member_path("$", ""), "$[\"\"]");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json;charset=utf-8"));
        assert!(is_json_content_type("Application/JSON"));
        assert!(is_json_content_type("application/cloudevents+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("+json"));
    }
}
