//! Events of a set: put (`POST …/events`), query (`GET …/events`), follow live
//! (`GET …/tail`, Server-Sent Events), one by id (`GET …/events/{id}`), and the linkage trace
//! (not in this version).
//!
//! Put accepts every content mode of the CloudEvents HTTP binding and Tencent's PutEvents:
//!
//! | request | entries |
//! |---|---|
//! | `application/json` (or none) with an object | one event |
//! | `application/json` with an array | one per element |
//! | `application/json` with `{"EventList":[…]}` | Tencent PutEvents entries (`Source`, `Data`, …) |
//! | `application/cloudevents+json` | one event (structured mode) |
//! | `application/cloudevents-batch+json` | an array of events (batched mode) |
//! | `ce-specversion` header present | binary mode: attributes from `ce-*` headers, `data` = body |
//!
//! Error paths name the entry as the client sent it: `$` for a single event,
//! `$[2].time` in an array, `$.EventList[2].Time` in PutEvents, `header:ce-type` in binary mode.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::auth::Caller;
use super::body::{RawBody, page_limit, query_params};
use super::error::{ApiError, ApiResult, ErrorBody, ErrorDetail, codes};
use super::{AppState, blocking};
use crate::bus::PutEntry;
use crate::event::TypedEntry;
use crate::pattern::Pattern;
use crate::store::ReadOutcome;

/// How the entries of a put were sent; decides how error paths are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// One event object: `$`.
    Single,
    /// A JSON array: `$[i]`.
    Array,
    /// `{"EventList":[…]}`: `$.EventList[i]`.
    EventList,
    /// Binary mode: attributes are headers.
    Binary,
}

/// Media type without parameters, lowercased.
fn media_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

fn is_json_media(m: &str) -> bool {
    m == "application/json" || m == "text/json" || m.ends_with("+json")
}

/// The entries of a put request.
#[derive(Debug)]
enum Entries {
    /// Event objects (or other values, which are refused per entry) as JSON trees.
    Values(Vec<Value>),
    /// Event objects read straight into events: the common case.
    Typed(Vec<TypedEntry>),
}

impl Entries {
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn len(&self) -> usize {
        match self {
            Entries::Values(v) => v.len(),
            Entries::Typed(v) => v.len(),
        }
    }
}

/// Splits a put request into entries (each a JSON object for [`crate::event::parse_event`]).
fn entries(headers: &HeaderMap, body: &[u8]) -> ApiResult<(Entries, Shape)> {
    if headers.contains_key("ce-specversion") {
        return Ok((
            Entries::Values(vec![binary_event(headers, body)?]),
            Shape::Binary,
        ));
    }
    let media = media_type(headers);
    if let Some((typed, shape)) = typed_entries(media.as_deref(), body) {
        return Ok((Entries::Typed(typed), shape));
    }
    value_entries(media, body).map(|(v, shape)| (Entries::Values(v), shape))
}

/// The common put, read straight into events ([`TypedEntry`]): JSON text of one plain event
/// object or an array of them. `None` for anything else (PutEvents, a refused or unusual
/// entry, malformed JSON, other media types), which [`value_entries`] reads and answers.
fn typed_entries(media: Option<&str>, body: &[u8]) -> Option<(Vec<TypedEntry>, Shape)> {
    let (object, array) = match media {
        Some("application/cloudevents+json") => (true, false),
        Some("application/cloudevents-batch+json") => (false, true),
        None | Some("application/x-www-form-urlencoded") => (true, true),
        Some(m) if is_json_media(m) => (true, true),
        Some(_) => return None,
    };
    match body.iter().find(|b| !b.is_ascii_whitespace())? {
        // An object with `EventList` (PutEvents) is not a plain event: it fails here.
        b'{' if object => Some((vec![serde_json::from_slice(body).ok()?], Shape::Single)),
        b'[' if array => Some((serde_json::from_slice(body).ok()?, Shape::Array)),
        _ => None,
    }
}

/// Splits a put request that is not in binary mode into JSON values.
fn value_entries(media: Option<String>, body: &[u8]) -> ApiResult<(Vec<Value>, Shape)> {
    let parsed = || super::body::parse_value(body);
    match media.as_deref() {
        Some("application/cloudevents+json") => match parsed()? {
            v @ Value::Object(_) => Ok((vec![v], Shape::Single)),
            _ => Err(ApiError::invalid(
                codes::INVALID_PARAMETER,
                "$",
                "application/cloudevents+json carries one event object; use \
                 application/cloudevents-batch+json for an array",
            )),
        },
        Some("application/cloudevents-batch+json") => match parsed()? {
            Value::Array(items) => Ok((items, Shape::Array)),
            _ => Err(ApiError::invalid(
                codes::INVALID_PARAMETER,
                "$",
                "application/cloudevents-batch+json carries a JSON array of events",
            )),
        },
        None => general_json(parsed()?),
        Some(m) if is_json_media(m) => general_json(parsed()?),
        // What `curl -d` sends when no type is given: read as JSON, the only format a put
        // can be in, rather than refusing the most common first try.
        Some("application/x-www-form-urlencoded") => general_json(parsed()?),
        Some(m) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            codes::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "content type {m:?} is not accepted: send JSON (application/json, \
                 application/cloudevents+json, application/cloudevents-batch+json), or \
                 binary mode with ce-* headers"
            ),
        )),
    }
}

fn general_json(v: Value) -> ApiResult<(Vec<Value>, Shape)> {
    match v {
        Value::Array(items) => Ok((items, Shape::Array)),
        Value::Object(mut obj) if obj.contains_key("EventList") => {
            for k in obj.keys() {
                if k != "EventList" && k != "EventBusId" {
                    return Err(ApiError::invalid(
                        codes::INVALID_PARAMETER,
                        format!("$.{k}"),
                        format!("unknown PutEvents member `{k}`; expected EventList"),
                    ));
                }
            }
            match obj.remove("EventList") {
                Some(Value::Array(items)) => Ok((items, Shape::EventList)),
                _ => Err(ApiError::invalid(
                    codes::INVALID_PARAMETER,
                    "$.EventList",
                    "EventList must be an array of entries",
                )),
            }
        }
        v @ Value::Object(_) => Ok((vec![v], Shape::Single)),
        _ => Err(ApiError::invalid(
            codes::INVALID_PARAMETER,
            "$",
            "the body must be an event object, an array of events, or {\"EventList\":[…]}",
        )),
    }
}

/// Builds the structured form of a binary-mode event: `ce-*` headers (percent-decoded, as
/// the CloudEvents HTTP binding requires) are the attributes, the body is `data`.
fn binary_event(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let mut obj = Map::new();
    for (name, value) in headers {
        let Some(attr) = name.as_str().strip_prefix("ce-") else {
            continue;
        };
        let raw = value.to_str().map_err(|_| {
            ApiError::invalid(
                codes::INVALID_PARAMETER,
                format!("header:{name}"),
                "not valid text",
            )
        })?;
        let text = percent_encoding::percent_decode_str(raw)
            .decode_utf8()
            .map_err(|_| {
                ApiError::invalid(
                    codes::INVALID_PARAMETER,
                    format!("header:{name}"),
                    "percent-decodes to invalid UTF-8",
                )
            })?
            .into_owned();
        let value = match attr {
            // Tencent's array and object attributes travel as JSON text.
            "resource" if text.trim_start().starts_with('[') => json_header(name.as_str(), &text)?,
            "resource" => Value::Array(vec![Value::String(text)]),
            "tags" => json_header(name.as_str(), &text)?,
            _ => Value::String(text),
        };
        obj.insert(attr.to_string(), value);
    }
    let media = media_type(headers);
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        obj.insert("datacontenttype".into(), Value::String(ct.to_string()));
    }
    if !body.is_empty() {
        let data = match media.as_deref() {
            None => super::body::parse_value(body)?,
            Some(m) if is_json_media(m) => super::body::parse_value(body)?,
            // Not JSON: the event model refuses the content type with a clear message.
            Some(_) => Value::String(String::from_utf8_lossy(body).into_owned()),
        };
        obj.insert("data".into(), data);
    }
    Ok(Value::Object(obj))
}

fn json_header(name: &str, text: &str) -> ApiResult<Value> {
    serde_json::from_str(text).map_err(|e| {
        ApiError::invalid(
            codes::INVALID_PARAMETER,
            format!("header:{name}"),
            format!("must be JSON text: {e}"),
        )
    })
}

/// Rewrites an entry error path from the bus's `$[i]…` to the shape the client sent.
fn client_path(path: &str, shape: Shape) -> String {
    let Some(rest) = path.strip_prefix("$[") else {
        return path.to_string();
    };
    let Some(close) = rest.find(']') else {
        return path.to_string();
    };
    let (index, tail) = (&rest[..close], &rest[close + 1..]);
    match shape {
        Shape::Array => path.to_string(),
        Shape::Single => format!("${tail}"),
        Shape::EventList => format!("$.EventList[{index}]{tail}"),
        Shape::Binary => match tail.strip_prefix('.') {
            Some("datacontenttype") => "header:content-type".to_string(),
            Some(attr) if attr.starts_with("data") => format!("body{}", &attr[4..]),
            Some(attr) => format!("header:ce-{attr}"),
            None => "$".to_string(),
        },
    }
}

/// One entry of a put response.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PutEntryView {
    /// Stored (durably, before this response).
    Stored {
        /// The event id (assigned when the producer gave none).
        id: String,
        /// Its offset in the set's log.
        offset: u64,
        /// True when it repeated a stored (source, id) within the de-duplication window
        /// and was not stored again.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        duplicate: bool,
    },
    /// Refused; the other entries are unaffected.
    Failed {
        /// Why.
        error: ErrorDetail,
    },
}

/// `POST …/events` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct PutResponse {
    /// One result per entry, in request order.
    pub entries: Vec<PutEntryView>,
    /// How many entries failed.
    pub failed: usize,
}

/// Put events: one object, an array, CloudEvents structured / batch / binary mode, or
/// Tencent PutEvents. Accepted entries are durable (fsynced, unless the server runs with a
/// weaker `persist` policy) before the response.
#[utoipa::path(post, path = "/v1/event-sets/{set}/events", tag = "events",
    request_body(content = Object, description = "a CloudEvent, an array of them, or {\"EventList\":[…]}",
        content_type = "application/json"),
    params(("set" = String, Path, description = "event set name")),
    responses(
        (status = 200, description = "per-entry results", body = PutResponse),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, description = "this token may not write to this set", body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody)))]
pub async fn put_events(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
    req: axum::extract::Request,
) -> ApiResult<Json<PutResponse>> {
    caller.require_put(&set)?;
    // The headers are moved out, not cloned as the `HeaderMap` extractor would.
    let (mut parts, body) = req.into_parts();
    let headers = std::mem::take(&mut parts.headers);
    let RawBody(body) = <RawBody as axum::extract::FromRequest<AppState>>::from_request(
        axum::extract::Request::from_parts(parts, body),
        &st,
    )
    .await?;
    let started = Instant::now();
    let (items, shape) = entries(&headers, &body)?;
    if items.is_empty() {
        return Err(ApiError::invalid(
            codes::MISSING_PARAMETER,
            "$",
            "no events in the request",
        ));
    }
    let bus = &st.inner.bus;
    let outcome = match items {
        Entries::Values(items) => bus.put_events(&set, items, caller.producer()).await?,
        Entries::Typed(items) => bus.put_events(&set, items, caller.producer()).await?,
    };
    let mut duplicates = 0;
    let entries: Vec<PutEntryView> = outcome
        .entries
        .into_iter()
        .map(|e| match e {
            PutEntry::Stored {
                id,
                offset,
                duplicate,
            } => {
                duplicates += usize::from(duplicate);
                PutEntryView::Stored {
                    id,
                    offset,
                    duplicate,
                }
            }
            PutEntry::Failed(err) => {
                let mut detail = ApiError::from(err).detail();
                if let Some(p) = detail.path.take() {
                    let client = client_path(&p, shape);
                    // The message names the same field; it must agree with `path`.
                    detail.message = detail.message.replace(&p, &client);
                    detail.path = Some(client);
                }
                PutEntryView::Failed { error: detail }
            }
        })
        .collect();
    st.inner.metrics.ingest(
        &set,
        (entries.len() - outcome.failed - duplicates) as u64,
        outcome.failed as u64,
        duplicates as u64,
        started.elapsed(),
    );
    Ok(Json(PutResponse {
        entries,
        failed: outcome.failed,
    }))
}

/// Query of `GET …/events`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// Ingest time from (epoch ms, inclusive). Default = 0.
    pub start: Option<u64>,
    /// Ingest time to (epoch ms, exclusive). Default = no end.
    pub end: Option<u64>,
    /// An event pattern (JSON text) the events must match.
    pub pattern: Option<String>,
    /// The previous page's `after` token.
    pub after: Option<String>,
    /// Page size, 1–1000. Default = 100.
    pub limit: Option<usize>,
}

/// `GET …/events` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// Matching events, oldest first.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Pass back as `after` for the next page; null when the range is exhausted.
    pub after: Option<String>,
}

/// Most records one query request reads, so a sparse pattern over a large range cannot hold a
/// blocking thread for long; the page then comes back short, with an `after` token.
const QUERY_SCAN_BUDGET: usize = 100_000;

fn encode_after(offset: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1.{offset}"))
}

fn decode_after(token: &str) -> ApiResult<u64> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("v1.").and_then(|o| o.parse().ok()))
        .ok_or_else(|| {
            ApiError::invalid(
                codes::INVALID_VALUE,
                "after",
                "not a token this server issued; pass back the `after` of the previous page",
            )
        })
}

fn parse_pattern_param(text: &str, param: &str) -> ApiResult<Pattern> {
    Pattern::parse_str(text).map_err(|e| {
        ApiError::invalid(
            "InvalidParameterValue.EventPattern",
            e.path_under(param),
            e.message,
        )
    })
}

/// Query stored events by ingest time range and an optional pattern, oldest first, paged.
#[utoipa::path(get, path = "/v1/event-sets/{set}/events", tag = "events",
    params(("set" = String, Path, description = "event set name"), EventQuery),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn query_events(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
    query: Result<Query<EventQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<EventPage>> {
    caller.require_admin()?;
    let q = query_params(query)?;
    let limit = page_limit(q.limit)?;
    let start = q.start.unwrap_or(0);
    let end = q.end.unwrap_or(u64::MAX);
    let pattern = q
        .pattern
        .as_deref()
        .map(|p| parse_pattern_param(p, "pattern"))
        .transpose()?;
    let after = q.after.as_deref().map(decode_after).transpose()?;
    let page = blocking(&st, move |bus| {
        let from = match after {
            Some(o) => o,
            None => bus.offset_at_time(&set, start)?,
        };
        let mut reader = bus.read_from(&set, from)?;
        let mut events = Vec::new();
        let mut scanned = 0;
        loop {
            let rec = match reader.next()? {
                ReadOutcome::Record(r) => r,
                ReadOutcome::EndOfLog => return Ok((events, None)),
            };
            if rec.ingest_time_ms >= end {
                return Ok((events, None));
            }
            scanned += 1;
            if rec.ingest_time_ms >= start {
                let json = rec.event.to_json();
                if pattern.as_ref().is_none_or(|p| p.matches(&json)) {
                    events.push(json);
                }
            }
            if events.len() == limit || scanned == QUERY_SCAN_BUDGET {
                return Ok((events, Some(encode_after(rec.offset + 1))));
            }
        }
    })
    .await?;
    Ok(Json(EventPage {
        events: page.0,
        after: page.1,
    }))
}

/// Query of `GET …/tail`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TailQuery {
    /// Only events matching this pattern (JSON text).
    pub pattern: Option<String>,
    /// Start at this offset. Default = the end of the log (new events only).
    pub from: Option<u64>,
}

/// Follow a set live as Server-Sent Events: each message has `id: <offset>` and
/// `data: <event JSON>`; comments keep the connection alive. Ends when the server stops.
#[utoipa::path(get, path = "/v1/event-sets/{set}/tail", tag = "events",
    params(("set" = String, Path, description = "event set name"), TailQuery),
    responses((status = 200, description = "text/event-stream of events", content_type = "text/event-stream", body = String),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn tail(
    State(st): State<AppState>,
    caller: Caller,
    Path(set): Path<String>,
    query: Result<Query<TailQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    caller.require_admin()?;
    let q = query_params(query)?;
    let pattern = q
        .pattern
        .as_deref()
        .map(|p| parse_pattern_param(p, "pattern"))
        .transpose()?;
    let bus = st.inner.bus.clone();
    let from = match q.from {
        Some(o) => o,
        None => bus.next_offset(&set)?,
    };
    let mut reader = bus.read_from(&set, from)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<SseEvent>(256);
    let mut shutdown = st.inner.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let rec = tokio::select! {
                r = reader.next_wait() => r,
                _ = tx.closed() => return,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let rec = match rec {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(set = %set, "tail stopped: {e}");
                    return;
                }
            };
            let json = rec.event.to_json();
            if pattern.as_ref().is_some_and(|p| !p.matches(&json)) {
                continue;
            }
            let ev = SseEvent::default()
                .id(rec.offset.to_string())
                .data(json.to_string());
            if tx.send(ev).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok(ev), rx))
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// Query of `GET …/events/{id}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct GetEventQuery {
    /// Only an event from this `source` (ids are unique per source, not per set).
    pub source: Option<String>,
}

/// One stored event by id: the most recent one with this id (and `source`, when given).
///
/// Ids are not unique within a set: two sources may use the same id, and a producer may
/// repeat one after the de-duplication window. Without `source` the answer is the event
/// with the id stored last; `?source=` picks that source's. Served from the set's id index,
/// built lazily: the first lookup after a start reads each sealed segment once.
#[utoipa::path(get, path = "/v1/event-sets/{set}/events/{id}", tag = "events",
    params(("set" = String, Path, description = "event set name"),
        ("id" = String, Path, description = "event id"), GetEventQuery),
    responses(
        (status = 200, description = "the event (CloudEvents JSON, as the query returns it)", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "no such event set (`ResourceNotFound.EventSet`) or no stored event with this id (`ResourceNotFound.Event`)", body = ErrorBody)))]
pub async fn get_event(
    State(st): State<AppState>,
    caller: Caller,
    Path((set, id)): Path<(String, String)>,
    query: Result<Query<GetEventQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let source = query_params(query)?.source;
    let record = newest_by_id(&st, &set, &id, source).await?;
    Ok(Json(record.event.to_json()))
}

/// The most recent stored event of `set` with `id` (and `source`, when given), from the id
/// index; `ResourceNotFound.Event` when there is none.
pub(crate) async fn newest_by_id(
    st: &AppState,
    set: &str,
    id: &str,
    source: Option<String>,
) -> ApiResult<crate::Record> {
    let (set_name, wanted) = (set.to_string(), id.to_string());
    let found = blocking(st, move |bus| bus.find_events_by_id(&set_name, &wanted)).await?;
    let newest = found
        .into_iter()
        .rev()
        .find(|r| source.as_ref().is_none_or(|s| r.event.source == *s));
    newest.ok_or_else(|| {
        let from = source
            .map(|s| format!(" from source `{s}`"))
            .unwrap_or_default();
        ApiError::new(
            StatusCode::NOT_FOUND,
            codes::EVENT_NOT_FOUND,
            format!("no stored event with id `{id}`{from} in event set `{set}`"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    #[test]
    fn client_paths_follow_the_request_shape() {
        assert_eq!(client_path("$[0].time", Shape::Single), "$.time");
        assert_eq!(client_path("$[0]", Shape::Single), "$");
        assert_eq!(client_path("$[3].data.x", Shape::Array), "$[3].data.x");
        assert_eq!(
            client_path("$[3].Time", Shape::EventList),
            "$.EventList[3].Time"
        );
        assert_eq!(client_path("$[0].type", Shape::Binary), "header:ce-type");
        assert_eq!(
            client_path("$[0].datacontenttype", Shape::Binary),
            "header:content-type"
        );
    }

    #[test]
    fn binary_mode_reads_ce_headers_percent_decoded_and_the_body_as_data() {
        let mut h = HeaderMap::new();
        h.insert("ce-specversion", HeaderValue::from_static("1.0"));
        h.insert("ce-type", HeaderValue::from_static("order.created"));
        h.insert("ce-source", HeaderValue::from_static("shop%20eu"));
        h.insert(
            "ce-resource",
            HeaderValue::from_static("[\"qcs::a\",\"qcs::b\"]"),
        );
        h.insert("ce-traceid", HeaderValue::from_static("t1"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        let (items, shape) = entries(&h, br#"{"total":3}"#).unwrap();
        assert_eq!(shape, Shape::Binary);
        let Entries::Values(items) = items else {
            panic!("binary mode builds a value");
        };
        assert_eq!(
            items[0],
            json!({"specversion":"1.0","type":"order.created","source":"shop eu",
                   "resource":["qcs::a","qcs::b"],"traceid":"t1",
                   "datacontenttype":"application/json","data":{"total":3}})
        );
    }

    #[test]
    fn put_bodies_are_split_by_content_type_and_shape() {
        let mut h = HeaderMap::new();
        let (items, shape) = entries(&h, br#"[{"a":1},{"b":2}]"#).unwrap();
        assert_eq!((items.len(), shape), (2, Shape::Array));
        assert!(
            matches!(items, Entries::Values(_)),
            "invalid events: the slow path"
        );
        let plain = br#"[{"specversion":"1.0","source":"app","type":"t","data":{"k":1}},
            {"specversion":"1.0","id":"x","source":"app","type":"t","time":5}]"#;
        let (items, shape) = entries(&h, plain).unwrap();
        assert_eq!((items.len(), shape), (2, Shape::Array));
        assert!(
            matches!(items, Entries::Typed(_)),
            "plain events take the fast path"
        );
        // A non-object element is refused per entry: the array is read as values.
        let (items, shape) = entries(&h, br#"[{"a":1},2]"#).unwrap();
        assert_eq!((items.len(), shape), (2, Shape::Array));
        assert!(matches!(items, Entries::Values(_)));
        let (items, shape) =
            entries(&h, br#"{"EventList":[{"Source":"s"}],"EventBusId":"x"}"#).unwrap();
        assert_eq!((items.len(), shape), (1, Shape::EventList));
        assert!(matches!(items, Entries::Values(_)));
        let e = entries(&h, br#"{"EventList":{}}"#).unwrap_err();
        assert_eq!(e.path.as_deref(), Some("$.EventList"));
        h.insert(
            "content-type",
            HeaderValue::from_static("application/cloudevents+json"),
        );
        assert_eq!(entries(&h, br#"{"a":1}"#).unwrap().1, Shape::Single);
        assert!(entries(&h, br#"[{"a":1}]"#).is_err());
        h.insert(
            "content-type",
            HeaderValue::from_static("application/cloudevents-batch+json; charset=utf-8"),
        );
        assert_eq!(entries(&h, br#"[{"a":1}]"#).unwrap().1, Shape::Array);
        h.insert("content-type", HeaderValue::from_static("text/plain"));
        let e = entries(&h, b"hello").unwrap_err();
        assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn after_tokens_round_trip_and_foreign_ones_are_refused() {
        assert_eq!(decode_after(&encode_after(42)).unwrap(), 42);
        assert_eq!(
            decode_after("42").unwrap_err().path.as_deref(),
            Some("after")
        );
    }
}
