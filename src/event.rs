//! The event model: a CloudEvents 1.0 event in the Tencent flavour, as it is stored.
//!
//! This module holds the stored shape. Parsing and validation of incoming JSON (the Tencent
//! PutEvents form, time formats, size limits) belong to the event-model work that builds on it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

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
        if !self.data.is_empty() {
            m.insert("data".into(), raw_json(&self.data));
        }
        Value::Object(m)
    }
}

fn raw_json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
