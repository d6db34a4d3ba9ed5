//! The `http` target: POSTs events to a webhook URL, as CloudEvents over HTTP.
//!
//! Settings (the object under `"http"` in a target body; every refusal names its field as
//! `$.http.<field>`):
//!
//! | field        | type             | default        | meaning                                      |
//! |--------------|------------------|----------------|----------------------------------------------|
//! | `url`        | string, required | —              | `http://` or `https://` URL with a host      |
//! | `headers`    | object           | `{}`           | extra request headers, name → string value   |
//! | `timeout_ms` | integer          | `5000`         | whole-request timeout, 1..=300000 ms         |
//! | `mode`       | string           | `"structured"` | `"structured"`, `"binary"` or `"data"`       |
//! | `secret`     | string           | none (unsigned)| Standard Webhooks signing secret             |
//!
//! Modes (CloudEvents HTTP protocol binding 1.0):
//! - `structured`: the body is the event as a CloudEvents JSON object
//!   (`application/cloudevents+json`), or for a batch a JSON array of them
//!   (`application/cloudevents-batch+json`).
//! - `binary`: one event per request; the attributes travel as `ce-*` headers and the body is
//!   the event's `data`. This mode cannot batch.
//! - `data`: the body is only the `data` (`null` when the event has none), or for a batch a
//!   JSON array of the `data` values; for receivers that know nothing of CloudEvents.
//!
//! With a `secret`, every request is signed the Standard Webhooks way
//! (<https://www.standardwebhooks.com/>): `webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, so receivers can
//! verify with any Standard Webhooks (or Svix) library.
//!
//! Answers are classified for the delivery engine: 2xx succeeds; 408, 429, 5xx, connection
//! errors and timeouts are retryable; 3xx (redirects are not followed) and other 4xx are not.
//! A `Retry-After` on a failing answer is passed on. Error messages never carry the URL (it may
//! hold credentials), the secret, or custom header values.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use hmac::{Hmac, Mac};
use reqwest::Url;
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{BoxFuture, Delivered, Outgoing, SendError, Target, refuse};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::transform::Output;

/// Default of `timeout_ms`: long enough for a slow receiver, short enough that one stuck
/// receiver does not hold a binding for long.
pub const DEFAULT_TIMEOUT_MS: u64 = 5_000;
/// Largest `timeout_ms` (5 minutes); beyond that a receiver should answer 202 and work later.
pub const MAX_TIMEOUT_MS: u64 = 300_000;
/// Shortest HMAC key accepted, in bytes after decoding: shorter keys are guessable.
pub const MIN_SECRET_KEY_BYTES: usize = 16;

/// Prefix of a Standard Webhooks secret whose remainder is the base64 key.
const SECRET_PREFIX: &str = "whsec_";
/// How much of a failing answer's body goes into the error message.
const ERROR_BODY_PREFIX_BYTES: usize = 200;
/// How much of a successful answer's body is read so the connection can be reused; a receiver
/// answering with more than this gets its connection closed instead.
const SUCCESS_BODY_DRAIN_BYTES: usize = 64 * 1024;
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle connections kept per host. A target has at most `max_in_flight` requests out at once
/// (up to [`crate::catalog::MAX_IN_FLIGHT_LIMIT`]), and each should find a pooled connection
/// when it starts: a smaller pool closes and reopens connections under load (measured: with 8
/// idle connections and 64 in flight, requests kept connecting and shutting down, and the
/// bench's CPU per event was twice what it is with a large enough pool).
const POOL_MAX_IDLE_PER_HOST: usize = crate::catalog::MAX_IN_FLIGHT_LIMIT as usize;
/// The `User-Agent` of every request.
const USER_AGENT: &str = concat!("eventbus/", env!("CARGO_PKG_VERSION"));

/// Content type of one structured-mode event.
const CT_CLOUDEVENT: &str = "application/cloudevents+json; charset=utf-8";
/// Content type of a structured-mode batch.
const CT_CLOUDEVENT_BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";
/// Content type of `data` when the event does not name one.
const CT_JSON: &str = "application/json";
/// Content type of a transformation's text output.
const CT_TEXT: &str = "text/plain; charset=utf-8";

/// Settings members; anything else is refused so a typo (`"secrets"`) cannot silently turn
/// signing off.
const FIELDS: &[&str] = &["url", "headers", "timeout_ms", "mode", "secret"];

/// Header names the target sets itself (or the HTTP client owns), refused in `headers`.
/// `ce-*` and `webhook-*` prefixes are refused too (see [`reserved_header`]).
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];

/// How events are laid out in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HttpMode {
    /// CloudEvents structured mode: the whole event as JSON (a JSON array for a batch).
    #[default]
    Structured,
    /// CloudEvents binary mode: attributes as `ce-*` headers, `data` as the body; one event
    /// per request.
    Binary,
    /// Only the `data` (a JSON array of them for a batch).
    Data,
}

impl HttpMode {
    /// The settings spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            HttpMode::Structured => "structured",
            HttpMode::Binary => "binary",
            HttpMode::Data => "data",
        }
    }

    fn parse(s: &str) -> Option<HttpMode> {
        match s {
            "structured" => Some(HttpMode::Structured),
            "binary" => Some(HttpMode::Binary),
            "data" => Some(HttpMode::Data),
            _ => None,
        }
    }
}

/// Why a signing secret was refused. The messages never repeat the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The part after `whsec_` is not standard base64.
    #[error("a secret starting with \"whsec_\" must continue with standard base64")]
    NotBase64,
    /// The key is shorter than [`MIN_SECRET_KEY_BYTES`].
    #[error(
        "the signing key is {len} bytes; at least {MIN_SECRET_KEY_BYTES} are required \
         (after base64-decoding a \"whsec_\" secret)"
    )]
    TooShort {
        /// Length of the key in bytes.
        len: usize,
    },
}

/// The HMAC-SHA256 key of a Standard Webhooks secret, ready to sign.
///
/// Holds the keyed MAC state rather than the secret text; its `Debug` prints nothing of it.
#[derive(Clone)]
pub struct SigningKey {
    mac: Hmac<Sha256>,
}

impl SigningKey {
    /// Reads a secret the Standard Webhooks way: `whsec_<base64>` means the decoded bytes are
    /// the key; any other string is used as its UTF-8 bytes (keys imported from elsewhere need
    /// no re-encoding).
    pub fn from_secret(secret: &str) -> std::result::Result<SigningKey, SecretError> {
        let key = match secret.strip_prefix(SECRET_PREFIX) {
            Some(b64) => BASE64.decode(b64).map_err(|_| SecretError::NotBase64)?,
            None => secret.as_bytes().to_vec(),
        };
        if key.len() < MIN_SECRET_KEY_BYTES {
            return Err(SecretError::TooShort { len: key.len() });
        }
        // HMAC takes keys of any length, so this cannot fail; the error arm is only there to
        // avoid a panic path.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(&key)
            .map_err(|_| SecretError::TooShort { len: key.len() })?;
        Ok(SigningKey { mac })
    }

    /// The `webhook-signature` value for a message: `v1,` + base64 of
    /// HMAC-SHA256(key, `"{msg_id}.{timestamp}.{body}"`).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = self.mac.clone();
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Validated settings of an `http` target. Built only by [`HttpSettings::parse`], so every
/// instance is valid.
#[derive(Clone)]
pub struct HttpSettings {
    url: Url,
    headers: HeaderMap,
    timeout: Duration,
    mode: HttpMode,
    secret: Option<SigningKey>,
}

impl HttpSettings {
    /// Parses and validates the settings object (see the module docs for the fields).
    /// Null-valued optional members count as absent.
    pub fn parse(settings: &Value) -> Result<HttpSettings> {
        let obj = super::settings_object("http", settings, FIELDS, "")?;
        let present = |name: &str| obj.get(name).filter(|v| !v.is_null());

        let url = parse_url(present("url"))?;
        let headers = match present("headers") {
            None => HeaderMap::new(),
            Some(v) => parse_headers(v)?,
        };
        let timeout_ms = match present("timeout_ms") {
            None => DEFAULT_TIMEOUT_MS,
            Some(v) => v
                .as_u64()
                .filter(|ms| (1..=MAX_TIMEOUT_MS).contains(ms))
                .ok_or_else(|| {
                    refuse(
                        "$.http.timeout_ms",
                        format!(
                            "\"timeout_ms\" must be an integer from 1 to {MAX_TIMEOUT_MS} \
                             (milliseconds)"
                        ),
                    )
                })?,
        };
        let mode = match present("mode") {
            None => HttpMode::default(),
            Some(v) => v.as_str().and_then(HttpMode::parse).ok_or_else(|| {
                refuse(
                    "$.http.mode",
                    "\"mode\" must be one of \"structured\", \"binary\", \"data\"",
                )
            })?,
        };
        let secret = match present("secret") {
            None => None,
            Some(Value::String(s)) => Some(
                SigningKey::from_secret(s).map_err(|e| refuse("$.http.secret", e.to_string()))?,
            ),
            Some(_) => return Err(refuse("$.http.secret", "\"secret\" must be a string")),
        };
        Ok(HttpSettings {
            url,
            headers,
            timeout: Duration::from_millis(timeout_ms),
            mode,
            secret,
        })
    }

    /// The receiver's URL.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The custom headers sent with every request.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Whole-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// How events are laid out in a request.
    pub fn mode(&self) -> HttpMode {
        self.mode
    }

    /// Whether requests are signed (a `secret` was given).
    pub fn is_signed(&self) -> bool {
        self.secret.is_some()
    }
}

impl fmt::Debug for HttpSettings {
    /// Prints no secret: the URL loses its password and query, headers show names only, the
    /// key is redacted. Settings end up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            // Only fails for URLs that cannot have credentials, which this one has.
            let _ = url.set_password(Some("<redacted>"));
        }
        if url.query().is_some() {
            url.set_query(Some("<redacted>"));
        }
        let header_names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("HttpSettings")
            .field("url", &url.as_str())
            .field("headers", &header_names)
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .field("secret", &self.secret)
            .finish()
    }
}

fn parse_url(v: Option<&Value>) -> Result<Url> {
    parse_url_at(v, "$.http.url")
}

/// Reads a required `http://` or `https://` URL with a host; refusals name `path` and never
/// repeat the URL (it may hold credentials).
pub(crate) fn parse_url_at(v: Option<&Value>, path: &str) -> Result<Url> {
    let Some(v) = v else {
        return Err(refuse(path, "\"url\" is required"));
    };
    let Some(s) = v.as_str() else {
        return Err(refuse(path, "\"url\" must be a string"));
    };
    // The parse error names the rule broken, never the URL text (which may hold credentials).
    let url =
        Url::parse(s).map_err(|e| refuse(path, format!("\"url\" is not a valid URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(refuse(path, "\"url\" must be an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(refuse(path, "\"url\" must name a host"));
    }
    Ok(url)
}

/// True for names the target sets itself: signing, CloudEvents attributes, framing.
fn reserved_header(name: &HeaderName) -> bool {
    let n = name.as_str();
    RESERVED_HEADERS.contains(&n) || n.starts_with("ce-") || n.starts_with("webhook-")
}

fn parse_headers(v: &Value) -> Result<HeaderMap> {
    let Value::Object(obj) = v else {
        return Err(refuse(
            "$.http.headers",
            "\"headers\" must be an object of header name to string value",
        ));
    };
    let mut headers = HeaderMap::with_capacity(obj.len());
    for (raw_name, value) in obj {
        let path = format!("$.http.headers.{raw_name}");
        // Normalizes to lower case.
        let name = HeaderName::from_bytes(raw_name.as_bytes())
            .map_err(|_| refuse(&path, format!("{raw_name:?} is not a valid header name")))?;
        if reserved_header(&name) {
            return Err(refuse(
                &path,
                format!(
                    "header {raw_name:?} is set by the target itself and cannot be configured \
                     (reserved: {}, ce-*, webhook-*)",
                    RESERVED_HEADERS.join(", ")
                ),
            ));
        }
        if headers.contains_key(&name) {
            return Err(refuse(
                &path,
                format!("header {raw_name:?} is given twice (header names ignore case)"),
            ));
        }
        let Value::String(text) = value else {
            return Err(refuse(
                &path,
                format!("the value of header {raw_name:?} must be a string"),
            ));
        };
        // Visible ASCII, space and tab only: anything else is read as Latin-1 or refused by
        // receivers. The value itself is not repeated (it is often a token).
        if !text
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(refuse(
                &path,
                format!(
                    "the value of header {raw_name:?} must be printable ASCII (no control \
                     characters, line breaks or non-ASCII characters)"
                ),
            ));
        }
        let mut value = HeaderValue::from_str(text)
            .map_err(|_| refuse(&path, format!("invalid value for header {raw_name:?}")))?;
        // Keeps tokens out of HTTP/2 header compression tables and out of Debug output.
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    Ok(headers)
}

/// The HTTP client of a webhook-style target (`what` names it in the error): rustls, the
/// whole-request `timeout`, no redirects, a pool sized for `max_in_flight`.
pub(crate) fn client(timeout: Duration, what: &str) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        // A redirect is the receiver's configuration problem: following it would send the
        // events (and their signature) somewhere nobody configured.
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| {
            Error::Unsupported(format!(
                "cannot build the HTTP client for {what}: {}",
                e.without_url()
            ))
        })
}

/// Delivers events to one webhook URL. One connection pool per target.
#[derive(Debug)]
pub struct HttpTarget {
    settings: HttpSettings,
    client: reqwest::Client,
    /// The binding batches (`batch.max_events` > 1): every request carries an array, even
    /// when only one event was ready, so the receiver sees one shape.
    batched: bool,
}

impl HttpTarget {
    /// Builds the target and its HTTP client (rustls, the settings' timeout, no redirects).
    pub fn new(settings: HttpSettings) -> Result<HttpTarget> {
        let client = client(settings.timeout, "an http target")?;
        Ok(HttpTarget {
            settings,
            client,
            batched: false,
        })
    }

    /// Always sends arrays (CloudEvents batch format, or an array of `data` values), also for
    /// a single event: set when the binding's `batch.max_events` is above 1. Default = false.
    pub fn batched(mut self, on: bool) -> HttpTarget {
        self.batched = on;
        self
    }

    /// The target's settings.
    pub fn settings(&self) -> &HttpSettings {
        &self.settings
    }

    async fn deliver(&self, batch: &[Outgoing]) -> std::result::Result<Delivered, SendError> {
        if batch.is_empty() {
            return Ok(Delivered::default());
        }
        let Rendered { body, mut headers } = if batch.iter().any(|o| o.output.is_some()) {
            render_transformed(self.settings.mode, self.batched, batch)?
        } else {
            render(self.settings.mode, self.batched, batch)?
        };
        let webhook_id = webhook_id(batch);
        for (name, value) in &self.settings.headers {
            headers.append(name.clone(), value.clone());
        }
        if let Some(key) = &self.settings.secret {
            let timestamp = Utc::now().timestamp();
            let signature = key.sign(&webhook_id, timestamp, &body);
            headers.insert(
                HeaderName::from_static("webhook-id"),
                header_value(webhook_id)?,
            );
            headers.insert(
                HeaderName::from_static("webhook-timestamp"),
                HeaderValue::from(timestamp),
            );
            headers.insert(
                HeaderName::from_static("webhook-signature"),
                header_value(signature)?,
            );
        }
        let response = self
            .client
            .post(self.settings.url.clone())
            .headers(headers)
            .body(body)
            .send()
            .await;
        match response {
            Ok(response) => classify(response).await,
            Err(e) => Err(transport_error(e, self.settings.timeout)),
        }
    }
}

impl Target for HttpTarget {
    fn send<'a>(
        &'a self,
        batch: &'a [Outgoing],
    ) -> BoxFuture<'a, std::result::Result<Delivered, SendError>> {
        Box::pin(self.deliver(batch))
    }

    fn supports_batches(&self) -> bool {
        self.settings.mode != HttpMode::Binary
    }
}

/// A request body with its mode-specific headers.
#[derive(Debug)]
struct Rendered {
    body: Vec<u8>,
    /// `content-type` and, in binary mode, the `ce-*` attributes.
    headers: HeaderMap,
}

/// The body of a batch whose rule transforms its events: the transformation's output is the
/// body whatever the mode (a JSON output as `application/json`, a text output as
/// `text/plain`), and a batched binding sends a JSON array of the outputs (text as strings).
/// Binary mode (one event per request) also sends the event's attributes as `ce-*` headers,
/// so the receiver still knows which event the output came from.
fn render_transformed(
    mode: HttpMode,
    batched: bool,
    batch: &[Outgoing],
) -> std::result::Result<Rendered, SendError> {
    let mut headers = HeaderMap::new();
    if let (HttpMode::Binary, [one]) = (mode, batch) {
        binary_headers(&one.event, &mut headers)?;
    }
    let body = match batch {
        [one] if !batched => match one.output.as_deref() {
            Some(Output::Text(text)) => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CT_TEXT));
                text.clone().into_bytes()
            }
            _ => {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CT_JSON));
                let mut body = Vec::new();
                one.write_json(&mut body);
                body
            }
        },
        batch => {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CT_JSON));
            let mut body = Vec::new();
            Outgoing::write_json_array(batch, &mut body);
            body
        }
    };
    Ok(Rendered { body, headers })
}

fn render(
    mode: HttpMode,
    batched: bool,
    batch: &[Outgoing],
) -> std::result::Result<Rendered, SendError> {
    let events: Vec<&Event> = batch.iter().map(|o| o.event.as_ref()).collect();
    let events = events.as_slice();
    let mut headers = HeaderMap::new();
    let body = match (mode, events) {
        (HttpMode::Structured, [event]) if !batched => {
            let mut body = Vec::with_capacity(event.data.len() + 256);
            write_structured(event, &mut body);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(CT_CLOUDEVENT),
            );
            body
        }
        (HttpMode::Structured, _) => {
            // Untransformed items: the events' structured-mode JSON.
            let mut body = Vec::new();
            Outgoing::write_json_array(batch, &mut body);
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(CT_CLOUDEVENT_BATCH),
            );
            body
        }
        (HttpMode::Binary, [event]) => {
            binary_headers(event, &mut headers)?;
            if let Some(ct) = &event.datacontenttype {
                headers.insert(header::CONTENT_TYPE, content_type(ct)?);
            } else if !event.data.is_empty() {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CT_JSON));
            }
            event.data.clone()
        }
        (HttpMode::Binary, events) => {
            return Err(SendError::permanent(format!(
                "binary mode sends one event per request and cannot batch {} events",
                events.len()
            )));
        }
        (HttpMode::Data, [event]) if !batched => {
            let ct = match &event.datacontenttype {
                Some(ct) if !event.data.is_empty() => content_type(ct)?,
                _ => HeaderValue::from_static(CT_JSON),
            };
            headers.insert(header::CONTENT_TYPE, ct);
            if event.data.is_empty() {
                b"null".to_vec()
            } else {
                event.data.clone()
            }
        }
        (HttpMode::Data, events) => {
            let mut body = Vec::new();
            body.push(b'[');
            for (i, event) in events.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                write_data_value(event, &mut body);
            }
            body.push(b']');
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CT_JSON));
            body
        }
    };
    Ok(Rendered { body, headers })
}

/// The Standard Webhooks message id (already a valid header value): the event id for one
/// event, a digest of the ids for a batch, so a retry of the same batch keeps its id.
fn webhook_id(batch: &[Outgoing]) -> String {
    match batch {
        [one] => percent_encode_header(&one.event.id),
        batch => batch_id(batch.iter().map(|o| o.event.id.as_str())),
    }
}

/// Writes `event` as a structured-mode CloudEvents JSON object: the same bytes as
/// `serde_json::to_vec(&event.to_json())` for data as the bus stores it (serde_json's compact
/// output); other well-formed JSON data goes out as it was stored.
///
/// Stored `data` is already compact JSON as serde_json writes it, so it is spliced in as it is
/// instead of being parsed into a `Value` and written again (the costly part for large
/// payloads); it is only checked to be well-formed JSON, and damaged data falls back to
/// [`Event::to_json`], which turns it into a string.
pub(crate) fn write_structured(event: &Event, out: &mut Vec<u8>) {
    if event.data.is_empty() || !is_json(&event.data) {
        write_json(out, &event.to_json());
        return;
    }
    let attributes = Event {
        specversion: event.specversion.clone(),
        id: event.id.clone(),
        source: event.source.clone(),
        ty: event.ty.clone(),
        subject: event.subject.clone(),
        time_ms: event.time_ms,
        region: event.region.clone(),
        resource: event.resource.clone(),
        datacontenttype: event.datacontenttype.clone(),
        tags: event.tags.clone(),
        status: event.status.clone(),
        extensions: event.extensions.clone(),
        data: Vec::new(),
    }
    .to_json();
    let start = out.len();
    write_json(out, &attributes);
    // `to_json` always writes a non-empty object (specversion, id, ...), so its last byte is
    // the closing brace and `data` goes after a comma, where `to_json` would put it.
    if out.len() > start && out.last() == Some(&b'}') {
        out.pop();
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(&event.data);
        out.push(b'}');
    } else {
        out.truncate(start);
        write_json(out, &event.to_json());
    }
}

/// Writes the event's `data` as one JSON value: `null` when absent, the raw bytes when they
/// are JSON, a JSON string of them otherwise (as [`Event::to_json`] does).
fn write_data_value(event: &Event, out: &mut Vec<u8>) {
    if event.data.is_empty() {
        out.extend_from_slice(b"null");
    } else if is_json(&event.data) {
        out.extend_from_slice(&event.data);
    } else {
        write_json(
            out,
            &Value::String(String::from_utf8_lossy(&event.data).into_owned()),
        );
    }
}

pub(crate) fn write_json(out: &mut Vec<u8>, v: &Value) {
    // Writing a Value into a Vec cannot fail (no I/O, string keys only).
    let _ = serde_json::to_writer(out, v);
}

/// Well-formedness check without building a `Value`.
fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// Sets the binary-mode `ce-*` headers of `event` (CloudEvents HTTP binding, section 3.1.3).
fn binary_headers(event: &Event, headers: &mut HeaderMap) -> std::result::Result<(), SendError> {
    let mut put = |name: &str, value: &str| -> std::result::Result<(), SendError> {
        let name = HeaderName::from_bytes(format!("ce-{name}").as_bytes()).map_err(|_| {
            SendError::permanent(format!(
                "attribute {name:?} cannot be sent as a ce- header in binary mode"
            ))
        })?;
        headers.append(name, header_value(percent_encode_header(value))?);
        Ok(())
    };
    put("specversion", &event.specversion)?;
    put("id", &event.id)?;
    put("source", &event.source)?;
    put("type", &event.ty)?;
    if let Some(time) = DateTime::<Utc>::from_timestamp_millis(event.time_ms) {
        put("time", &time.to_rfc3339_opts(SecondsFormat::Millis, true))?;
    }
    if let Some(subject) = &event.subject {
        put("subject", subject)?;
    }
    if let Some(region) = &event.region {
        put("region", region)?;
    }
    if let Some(status) = &event.status {
        put("status", status)?;
    }
    if !event.resource.is_empty() {
        put("resource", &Value::from(event.resource.clone()).to_string())?;
    }
    if !event.tags.is_empty() {
        let tags: serde_json::Map<String, Value> = event
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        put("tags", &Value::Object(tags).to_string())?;
    }
    for (name, json) in &event.extensions {
        // A JSON string goes unquoted (the binding's string form); numbers and booleans as
        // their JSON text.
        match serde_json::from_str::<String>(json) {
            Ok(s) => put(name, &s)?,
            Err(_) => put(name, json)?,
        }
    }
    Ok(())
}

/// Percent-encodes a header value as the CloudEvents HTTP binding requires (3.1.3.2): space,
/// `"`, `%` and everything outside printable ASCII become `%XX` of their UTF-8 bytes.
fn percent_encode_header(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x21..=0x7e).contains(&b) && b != b'"' && b != b'%' {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The `webhook-id` of a batch: stable for the same events in the same order, so a retried
/// batch keeps its id and receivers can deduplicate it.
fn batch_id<'a>(ids: impl IntoIterator<Item = &'a str>) -> String {
    let mut hasher = Sha256::new();
    for (i, id) in ids.into_iter().enumerate() {
        if i > 0 {
            hasher.update(b"\n");
        }
        hasher.update(id.as_bytes());
    }
    let digest = hasher.finalize();
    let mut id = String::with_capacity(6 + 2 * digest.len());
    id.push_str("batch_");
    for b in digest {
        id.push(char::from(HEX[usize::from(b >> 4)]));
        id.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    id
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn content_type(ct: &str) -> std::result::Result<HeaderValue, SendError> {
    HeaderValue::from_str(ct).map_err(|_| {
        SendError::permanent("the event's datacontenttype is not a valid Content-Type value")
    })
}

fn header_value(s: String) -> std::result::Result<HeaderValue, SendError> {
    HeaderValue::try_from(s)
        .map_err(|_| SendError::permanent("a header value could not be encoded"))
}

/// Turns an answer into success or a classified [`SendError`].
async fn classify(mut response: reqwest::Response) -> std::result::Result<Delivered, SendError> {
    let status = response.status();
    if status.is_success() {
        // Reading the (small) body lets the connection go back to the pool; the delivery
        // succeeded whatever happens while reading it.
        let mut read = 0;
        while read <= SUCCESS_BODY_DRAIN_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        return Ok(Delivered {
            status: Some(status.as_u16()),
        });
    }
    let retry_after = retry_after(response.headers());
    let prefix = read_body(&mut response, ERROR_BODY_PREFIX_BYTES).await;
    Err(failure(status, retry_after, &prefix))
}

/// The receiver's `Retry-After`, when it sent a readable one.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, Utc::now()))
}

/// Reads up to `limit` bytes of an answer's body (less if reading fails part way).
pub(crate) async fn read_body(response: &mut reqwest::Response, limit: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < limit {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(limit);
    body
}

/// Classifies a non-2xx answer: 408, 429 and 5xx are retryable, the rest (3xx, other 4xx) is
/// not. The message is `HTTP <code> <reason>: <the start of the body>` (control characters
/// blanked, at most [`ERROR_BODY_PREFIX_BYTES`] of it).
pub(crate) fn failure(
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
) -> SendError {
    let code = status.as_u16();
    let retryable = status.is_server_error() || code == 408 || code == 429;
    let snippet = snippet(body);
    let mut message = format!("HTTP {code}");
    if let Some(reason) = status.canonical_reason() {
        message.push(' ');
        message.push_str(reason);
    }
    if !snippet.is_empty() {
        message.push_str(": ");
        message.push_str(&snippet);
    }
    SendError {
        retryable,
        retry_after,
        status: Some(code),
        message,
    }
}

/// The start of an answer's body as one line of text, for error messages: at most
/// [`ERROR_BODY_PREFIX_BYTES`], control characters blanked, trimmed.
pub(crate) fn snippet(body: &[u8]) -> String {
    let prefix = &body[..body.len().min(ERROR_BODY_PREFIX_BYTES)];
    let text: String = String::from_utf8_lossy(prefix)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    text.trim().to_string()
}

/// Reads a `Retry-After` value: delta-seconds, or an HTTP-date (RFC 2822 form; a date in the
/// past means "now"). `None` when it is neither.
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        at.with_timezone(&Utc)
            .signed_duration_since(now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// Classifies a request that got no answer. Everything but a malformed request is retryable:
/// the receiver may come back. The URL is stripped from the error before it is described.
pub(crate) fn transport_error(e: reqwest::Error, timeout: Duration) -> SendError {
    let e = e.without_url();
    let io_cause = || {
        let mut source = std::error::Error::source(&e);
        while let Some(err) = source {
            if let Some(io) = err.downcast_ref::<std::io::Error>() {
                return Some(io);
            }
            source = err.source();
        }
        None
    };
    let root_cause = || {
        let mut cause: &dyn std::error::Error = &e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    };
    let message = if e.is_timeout() {
        format!("timed out after {} ms", timeout.as_millis())
    } else if e.is_connect() {
        match io_cause() {
            Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
                "connection refused".to_string()
            }
            _ => format!("cannot connect: {}", root_cause()),
        }
    } else {
        format!("request failed: {}", root_cause())
    };
    SendError {
        retryable: !e.is_builder(),
        retry_after: None,
        status: None,
        message,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxumHeaders, Method, StatusCode};
    use axum::response::{IntoResponse, Response};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    /// One request as the receiver saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: Method,
        path: String,
        headers: AxumHeaders,
        body: Vec<u8>,
    }

    /// What the receiver answers.
    #[derive(Clone, Default)]
    struct Reply {
        status: u16,
        retry_after: Option<String>,
        body: String,
        delay: Duration,
    }

    fn reply(status: u16) -> Reply {
        Reply {
            status,
            ..Reply::default()
        }
    }

    #[derive(Clone)]
    struct Receiver {
        reply: Reply,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    async fn record(
        State(rx): State<Receiver>,
        method: Method,
        uri: axum::http::Uri,
        headers: AxumHeaders,
        body: Bytes,
    ) -> Response {
        rx.seen.lock().unwrap().push(Seen {
            method,
            path: uri.path().to_string(),
            headers,
            body: body.to_vec(),
        });
        if !rx.reply.delay.is_zero() {
            tokio::time::sleep(rx.reply.delay).await;
        }
        let mut response = (
            StatusCode::from_u16(rx.reply.status).unwrap(),
            rx.reply.body.clone(),
        )
            .into_response();
        if let Some(ra) = &rx.reply.retry_after {
            response
                .headers_mut()
                .insert("retry-after", ra.parse().unwrap());
        }
        if (300..400).contains(&rx.reply.status) {
            response
                .headers_mut()
                .insert("location", "http://127.0.0.1:1/elsewhere".parse().unwrap());
        }
        response
    }

    /// Starts a receiver on 127.0.0.1:0; returns its URL (path `/hook`) and the requests log.
    async fn receiver(reply: Reply) -> (String, Arc<Mutex<Vec<Seen>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new().fallback(record).with_state(Receiver {
            reply,
            seen: seen.clone(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (format!("http://{addr}/hook"), seen)
    }

    fn target(settings: Value) -> HttpTarget {
        HttpTarget::new(HttpSettings::parse(&settings).unwrap()).unwrap()
    }

    /// Sends events untransformed (what a binding of a rule without a transformation does).
    async fn send_events(
        t: &HttpTarget,
        events: &[Arc<Event>],
    ) -> std::result::Result<Delivered, SendError> {
        let batch: Vec<Outgoing> = events.iter().cloned().map(Outgoing::plain).collect();
        t.send(&batch).await
    }

    fn event(id: &str) -> Arc<Event> {
        let mut e = Event::new(id, "cvm.cloud.tencent", "cvm:ErrorEvent:PingUnreachable");
        e.time_ms = 1_700_000_000_123;
        e.subject = Some("ins-1".into());
        e.region = Some("ap-guangzhou".into());
        e.datacontenttype = Some("application/json".into());
        // As the bus stores it: serde_json's compact output (numbers keep their text).
        let data: Value =
            serde_json::from_str(r#"{"n":1.50,"s":"h\u00e9\"\n","a":[1,{"b":null}]}"#).unwrap();
        e.data = serde_json::to_vec(&data).unwrap();
        Arc::new(e)
    }

    fn single(seen: &Arc<Mutex<Vec<Seen>>>) -> Seen {
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 1, "exactly one request expected");
        seen[0].clone()
    }

    fn header<'a>(seen: &'a Seen, name: &str) -> &'a str {
        seen.headers
            .get(name)
            .unwrap_or_else(|| panic!("header {name} missing"))
            .to_str()
            .unwrap()
    }

    // ---- rendering ----

    #[tokio::test]
    async fn structured_single_event_is_its_cloudevents_json() {
        let (url, seen) = receiver(reply(200)).await;
        let t = target(json!({ "url": url }));
        let e = event("e1");
        send_events(&t, std::slice::from_ref(&e)).await.unwrap();
        let s = single(&seen);
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.path, "/hook");
        assert_eq!(header(&s, "content-type"), CT_CLOUDEVENT);
        assert_eq!(s.body, serde_json::to_vec(&e.to_json()).unwrap());
        assert!(s.headers.get("webhook-signature").is_none());
        assert!(header(&s, "user-agent").starts_with("eventbus/"));
    }

    #[tokio::test]
    async fn structured_batch_is_a_json_array() {
        let (url, seen) = receiver(reply(200)).await;
        let t = target(json!({ "url": url, "mode": "structured" }));
        assert!(t.supports_batches());
        let events = vec![
            event("e1"),
            event("e2"),
            Arc::new(Event::new("e3", "s", "t")),
        ];
        send_events(&t, &events).await.unwrap();
        let s = single(&seen);
        assert_eq!(header(&s, "content-type"), CT_CLOUDEVENT_BATCH);
        let expected: Vec<Value> = events.iter().map(|e| e.to_json()).collect();
        assert_eq!(s.body, serde_json::to_vec(&expected).unwrap());
    }

    #[test]
    fn spliced_structured_json_equals_to_json() {
        let mut damaged = Event::new("d", "s", "t");
        damaged.data = b"{not json".to_vec();
        let mut ext = (*event("x")).clone();
        ext.extensions.insert("replayname".into(), "\"r1\"".into());
        ext.extensions.insert("seq".into(), "42".into());
        ext.resource = vec!["qcs::cvm:ap-guangzhou:uin/1:instance/ins-1".into()];
        ext.tags.insert("env".into(), "prod".into());
        ext.status = Some("1".into());
        for e in [
            (*event("e")).clone(),
            Event::new("n", "s", "t"),
            damaged,
            ext,
        ] {
            let mut out = Vec::new();
            write_structured(&e, &mut out);
            assert_eq!(out, serde_json::to_vec(&e.to_json()).unwrap(), "{e:?}");
        }
    }

    #[tokio::test]
    async fn transformed_outputs_are_the_body_in_every_mode() {
        use crate::transform::Output;
        let json_out = |id: &str| Outgoing::transformed(event(id), Output::Json(json!({"k": id})));
        // Structured: the JSON output as application/json, no ce- headers.
        let (url, seen) = receiver(reply(200)).await;
        target(json!({ "url": url }))
            .send(&[json_out("e1")])
            .await
            .unwrap();
        let s = single(&seen);
        assert_eq!(header(&s, "content-type"), CT_JSON);
        assert!(s.headers.get("ce-id").is_none());
        assert_eq!(s.body, br#"{"k":"e1"}"#);
        // Binary: the output as the body, the event's attributes as ce- headers.
        let (url, seen) = receiver(reply(200)).await;
        target(json!({ "url": url, "mode": "binary" }))
            .send(&[Outgoing::transformed(
                event("e2"),
                Output::Text("disk of ins-1 is read-only".into()),
            )])
            .await
            .unwrap();
        let s = single(&seen);
        assert_eq!(header(&s, "content-type"), CT_TEXT);
        assert_eq!(header(&s, "ce-id"), "e2");
        assert_eq!(header(&s, "ce-type"), "cvm:ErrorEvent:PingUnreachable");
        assert_eq!(s.body, b"disk of ins-1 is read-only");
        // Batched: a JSON array of the outputs.
        let (url, seen) = receiver(reply(200)).await;
        target(json!({ "url": url }))
            .batched(true)
            .send(&[json_out("e3"), json_out("e4")])
            .await
            .unwrap();
        let s = single(&seen);
        assert_eq!(s.body, br#"[{"k":"e3"},{"k":"e4"}]"#);
    }

    #[tokio::test]
    async fn binary_mode_sends_attributes_as_percent_encoded_headers() {
        let (url, seen) = receiver(reply(200)).await;
        let t = target(json!({ "url": url, "mode": "binary" }));
        assert!(!t.supports_batches());
        let mut e = (*event("id 1")).clone();
        e.subject = Some("a b\"c%d é".into());
        e.status = Some("1".into());
        e.resource = vec!["qcs::cvm:ap-guangzhou:uin/1:instance/ins-1".into()];
        e.tags = BTreeMap::from([("env".to_string(), "prod".to_string())]);
        e.extensions.insert("replayname".into(), "\"r 1\"".into());
        e.extensions.insert("seq".into(), "42".into());
        e.extensions.insert("flag".into(), "true".into());
        send_events(&t, &[Arc::new(e.clone())]).await.unwrap();
        let s = single(&seen);
        assert_eq!(header(&s, "ce-specversion"), "1.0");
        assert_eq!(header(&s, "ce-id"), "id%201");
        assert_eq!(header(&s, "ce-source"), "cvm.cloud.tencent");
        assert_eq!(header(&s, "ce-type"), "cvm:ErrorEvent:PingUnreachable");
        assert_eq!(header(&s, "ce-time"), "2023-11-14T22:13:20.123Z");
        assert_eq!(header(&s, "ce-subject"), "a%20b%22c%25d%20%C3%A9");
        assert_eq!(header(&s, "ce-region"), "ap-guangzhou");
        assert_eq!(header(&s, "ce-status"), "1");
        assert_eq!(
            header(&s, "ce-resource"),
            "[%22qcs::cvm:ap-guangzhou:uin/1:instance/ins-1%22]"
        );
        assert_eq!(header(&s, "ce-tags"), "{%22env%22:%22prod%22}");
        assert_eq!(header(&s, "ce-replayname"), "r%201");
        assert_eq!(header(&s, "ce-seq"), "42");
        assert_eq!(header(&s, "ce-flag"), "true");
        assert_eq!(header(&s, "content-type"), "application/json");
        assert_eq!(s.body, e.data);
    }

    #[tokio::test]
    async fn binary_mode_without_data_sends_an_empty_body() {
        let (url, seen) = receiver(reply(200)).await;
        let t = target(json!({ "url": url, "mode": "binary" }));
        send_events(&t, &[Arc::new(Event::new("e1", "s", "t"))])
            .await
            .unwrap();
        let s = single(&seen);
        assert!(s.body.is_empty());
        assert!(s.headers.get("ce-subject").is_none());
        assert!(s.headers.get("content-type").is_none());
        assert_eq!(header(&s, "ce-time"), "1970-01-01T00:00:00.000Z");
    }

    #[tokio::test]
    async fn binary_mode_refuses_a_batch_without_sending() {
        let (url, seen) = receiver(reply(200)).await;
        let t = target(json!({ "url": url, "mode": "binary" }));
        let err = send_events(&t, &[event("a"), event("b")])
            .await
            .unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("cannot batch"), "{}", err.message);
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn data_mode_sends_only_the_data() {
        let (url, seen) = receiver(reply(200)).await;
        let t = target(json!({ "url": url, "mode": "data" }));
        assert!(t.supports_batches());
        let e = event("e1");
        send_events(&t, std::slice::from_ref(&e)).await.unwrap();
        send_events(&t, &[Arc::new(Event::new("e2", "s", "t"))])
            .await
            .unwrap();
        let mut damaged = Event::new("e5", "s", "t");
        damaged.data = b"oops".to_vec();
        send_events(
            &t,
            &[
                event("e3"),
                Arc::new(Event::new("e4", "s", "t")),
                Arc::new(damaged),
            ],
        )
        .await
        .unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 3);
        assert_eq!(seen[0].body, e.data);
        assert_eq!(header(&seen[0], "content-type"), "application/json");
        assert_eq!(seen[1].body, b"null");
        assert_eq!(header(&seen[1], "content-type"), "application/json");
        let mut batch = b"[".to_vec();
        batch.extend_from_slice(&e.data);
        batch.extend_from_slice(b",null,\"oops\"]");
        assert_eq!(seen[2].body, batch);
        let parsed: Value = serde_json::from_slice(&seen[2].body).unwrap();
        assert_eq!(parsed[0]["n"].to_string(), "1.50");
        assert_eq!(header(&seen[2], "content-type"), "application/json");
    }

    #[tokio::test]
    async fn custom_headers_go_on_every_request() {
        let (url, seen) = receiver(reply(200)).await;
        let t = target(json!({
            "url": url,
            "headers": {"Authorization": "Bearer abc", "X-Tenant": "t 1"},
        }));
        send_events(&t, &[event("e1")]).await.unwrap();
        send_events(&t, &[event("e2"), event("e3")]).await.unwrap();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), 2);
        for s in seen.iter() {
            assert_eq!(header(s, "authorization"), "Bearer abc");
            assert_eq!(header(s, "x-tenant"), "t 1");
        }
    }

    // ---- signing ----

    /// Recomputes a signature independently of [`SigningKey`].
    fn expected_signature(secret: &str, id: &str, ts: &str, body: &[u8]) -> String {
        let key = BASE64
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{ts}.").as_bytes());
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }

    #[tokio::test]
    async fn signed_requests_carry_verifiable_standard_webhooks_headers() {
        let (url, seen) = receiver(reply(200)).await;
        let t = target(json!({ "url": url, "secret": SECRET }));
        let before = Utc::now().timestamp();
        send_events(&t, &[event("e1")]).await.unwrap();
        let batch = [event("e2"), event("e3")];
        send_events(&t, &batch).await.unwrap();
        let after = Utc::now().timestamp();
        let seen = seen.lock().unwrap();
        for s in seen.iter() {
            let id = header(s, "webhook-id");
            let ts = header(s, "webhook-timestamp");
            let ts_n: i64 = ts.parse().unwrap();
            assert!((before..=after).contains(&ts_n));
            assert_eq!(
                header(s, "webhook-signature"),
                expected_signature(SECRET, id, ts, &s.body)
            );
        }
        assert_eq!(header(&seen[0], "webhook-id"), "e1");
        let digest = Sha256::digest(b"e2\ne3");
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(header(&seen[1], "webhook-id"), format!("batch_{hex}"));
        // Stable across retries of the same batch.
        assert_eq!(
            batch_id(batch.iter().map(|e| e.id.as_str())),
            format!("batch_{hex}")
        );
    }

    #[test]
    fn signature_matches_the_standard_webhooks_test_vectors() {
        // standard-webhooks/standard-webhooks, libraries/php/tests/WebhookTest.php
        // (testSignFunctionWorks).
        let key = SigningKey::from_secret(SECRET).unwrap();
        assert_eq!(
            key.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        // standard-webhooks/standard-webhooks, libraries/rust/src/lib.rs (test_sign).
        let key = SigningKey::from_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            key.sign(
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn secrets_without_prefix_are_raw_bytes_and_short_keys_are_refused() {
        let raw = SigningKey::from_secret("0123456789abcdef").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"0123456789abcdef").unwrap();
        mac.update(b"id.1.{}");
        assert_eq!(
            raw.sign("id", 1, b"{}"),
            format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
        );
        assert_eq!(
            SigningKey::from_secret("short").unwrap_err(),
            SecretError::TooShort { len: 5 }
        );
        // 12 bytes after decoding.
        assert_eq!(
            SigningKey::from_secret("whsec_MDEyMzQ1Njc4OTAx").unwrap_err(),
            SecretError::TooShort { len: 12 }
        );
        assert_eq!(
            SigningKey::from_secret("whsec_not base64!!").unwrap_err(),
            SecretError::NotBase64
        );
    }

    // ---- classification ----

    async fn outcome(r: Reply) -> std::result::Result<Delivered, SendError> {
        let (url, _seen) = receiver(r).await;
        send_events(
            &target(json!({ "url": url, "timeout_ms": 2000 })),
            &[event("e1")],
        )
        .await
    }

    #[tokio::test]
    async fn two_hundreds_succeed() {
        assert_eq!(
            outcome(reply(200)).await,
            Ok(Delivered { status: Some(200) })
        );
        assert_eq!(
            outcome(reply(204)).await,
            Ok(Delivered { status: Some(204) })
        );
    }

    #[tokio::test]
    async fn redirects_and_client_errors_are_not_retryable() {
        for status in [301, 400, 404] {
            let err = outcome(Reply {
                body: "nope\nnever".into(),
                ..reply(status)
            })
            .await
            .unwrap_err();
            assert!(!err.retryable, "{status}");
            assert_eq!(err.status, Some(status));
            assert_eq!(err.retry_after, None);
            assert!(
                err.message.starts_with(&format!("HTTP {status} ")),
                "{}",
                err.message
            );
            assert!(err.message.ends_with(": nope never"), "{}", err.message);
        }
        let err = outcome(reply(404)).await.unwrap_err();
        assert_eq!(err.message, "HTTP 404 Not Found");
    }

    #[tokio::test]
    async fn timeouts_throttling_and_server_errors_are_retryable() {
        for status in [408, 429, 500, 503] {
            let err = outcome(reply(status)).await.unwrap_err();
            assert!(err.retryable, "{status}");
            assert_eq!(err.status, Some(status));
            assert_eq!(err.retry_after, None);
        }
        let err = outcome(Reply {
            body: "x".repeat(5000),
            ..reply(503)
        })
        .await
        .unwrap_err();
        assert_eq!(
            err.message,
            format!("HTTP 503 Service Unavailable: {}", "x".repeat(200))
        );
    }

    #[tokio::test]
    async fn retry_after_is_passed_on_as_seconds_or_date() {
        let err = outcome(Reply {
            retry_after: Some("7".into()),
            ..reply(429)
        })
        .await
        .unwrap_err();
        assert!(err.retryable);
        assert_eq!(err.retry_after, Some(Duration::from_secs(7)));

        let at = Utc::now() + chrono::Duration::seconds(120);
        let err = outcome(Reply {
            retry_after: Some(at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()),
            ..reply(503)
        })
        .await
        .unwrap_err();
        let wait = err.retry_after.unwrap();
        assert!(
            (Duration::from_secs(110)..=Duration::from_secs(120)).contains(&wait),
            "{wait:?}"
        );
    }

    #[test]
    fn retry_after_parsing() {
        let now = DateTime::parse_from_rfc3339("2015-10-21T07:28:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("-5", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("", now), None);
    }

    #[tokio::test]
    async fn connection_refused_is_retryable_and_leaks_no_credentials() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let t = target(
            json!({ "url": format!("http://user:pa55word@127.0.0.1:{port}/hook?token=tok3n") }),
        );
        let err = send_events(&t, &[event("e1")]).await.unwrap_err();
        assert!(err.retryable);
        assert_eq!(err.status, None);
        assert_eq!(err.message, "connection refused");
    }

    #[tokio::test]
    async fn a_slow_receiver_times_out_retryably() {
        let (url, _seen) = receiver(Reply {
            delay: Duration::from_secs(5),
            ..reply(200)
        })
        .await;
        let t = target(json!({ "url": url, "timeout_ms": 200 }));
        let started = std::time::Instant::now();
        let err = send_events(&t, &[event("e1")]).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(err.retryable);
        assert_eq!(err.status, None);
        assert_eq!(err.message, "timed out after 200 ms");
    }

    #[tokio::test]
    async fn an_empty_batch_sends_nothing() {
        let (url, seen) = receiver(reply(500)).await;
        assert_eq!(
            send_events(&target(json!({ "url": url })), &[]).await,
            Ok(Delivered::default())
        );
        assert!(seen.lock().unwrap().is_empty());
    }

    // ---- settings ----

    fn refused_path(settings: Value) -> String {
        super::super::refused_path(HttpSettings::parse(&settings), &settings, &["MfKQ9r8"])
    }

    #[test]
    fn defaults() {
        let s = HttpSettings::parse(&json!({"url": "https://example.com/x"})).unwrap();
        assert_eq!(s.url().as_str(), "https://example.com/x");
        assert_eq!(s.timeout(), Duration::from_millis(DEFAULT_TIMEOUT_MS));
        assert_eq!(s.mode(), HttpMode::Structured);
        assert!(s.headers().is_empty());
        assert!(!s.is_signed());
        let s = HttpSettings::parse(&json!({
            "url": "http://127.0.0.1:9000/hook", "headers": {}, "timeout_ms": 5000,
            "mode": "data", "secret": SECRET,
        }))
        .unwrap();
        assert_eq!(s.mode(), HttpMode::Data);
        assert!(s.is_signed());
        let s = HttpSettings::parse(&json!({
            "url": "http://h/", "headers": null, "timeout_ms": null, "mode": null, "secret": null,
        }))
        .unwrap();
        assert!(!s.is_signed());
        assert!(super::super::validate("http", &json!({"url": "http://h/"})).is_ok());
        assert!(
            super::super::build(
                &json!({"type": "http", "http": {"url": "http://h/"}}),
                &super::super::TargetEnv::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn every_refusal_names_its_field() {
        let url = "http://127.0.0.1:9000/hook";
        let cases = [
            (json!(null), "$.http"),
            (json!("http://x"), "$.http"),
            (json!({}), "$.http.url"),
            (json!({"url": 5}), "$.http.url"),
            (json!({"url": "ftp://x/y"}), "$.http.url"),
            (json!({"url": "http://"}), "$.http.url"),
            (json!({"url": "localhost:80"}), "$.http.url"),
            (json!({"url": "file:///etc/passwd"}), "$.http.url"),
            (json!({"url": url, "method": "PUT"}), "$.http.method"),
            (json!({"url": url, "headers": []}), "$.http.headers"),
            (
                json!({"url": url, "headers": {"X-Foo": 1}}),
                "$.http.headers.X-Foo",
            ),
            (
                json!({"url": url, "headers": {"X-Foo": "a\nb"}}),
                "$.http.headers.X-Foo",
            ),
            (
                json!({"url": url, "headers": {"X-Foo": "é"}}),
                "$.http.headers.X-Foo",
            ),
            (
                json!({"url": url, "headers": {"bad name": "v"}}),
                "$.http.headers.bad name",
            ),
            (
                json!({"url": url, "headers": {"Content-Type": "x"}}),
                "$.http.headers.Content-Type",
            ),
            (
                json!({"url": url, "headers": {"content-length": "1"}}),
                "$.http.headers.content-length",
            ),
            (
                json!({"url": url, "headers": {"Host": "h"}}),
                "$.http.headers.Host",
            ),
            (
                json!({"url": url, "headers": {"CE-Id": "x"}}),
                "$.http.headers.CE-Id",
            ),
            (
                json!({"url": url, "headers": {"webhook-id": "x"}}),
                "$.http.headers.webhook-id",
            ),
            (
                json!({"url": url, "headers": {"Transfer-Encoding": "x"}}),
                "$.http.headers.Transfer-Encoding",
            ),
            (
                json!({"url": url, "headers": {"x-a": "1", "X-A": "2"}}),
                "$.http.headers.x-a",
            ),
            (json!({"url": url, "timeout_ms": 0}), "$.http.timeout_ms"),
            (
                json!({"url": url, "timeout_ms": 300_001}),
                "$.http.timeout_ms",
            ),
            (json!({"url": url, "timeout_ms": -1}), "$.http.timeout_ms"),
            (json!({"url": url, "timeout_ms": 1.5}), "$.http.timeout_ms"),
            (
                json!({"url": url, "timeout_ms": "5000"}),
                "$.http.timeout_ms",
            ),
            (json!({"url": url, "mode": "xml"}), "$.http.mode"),
            (json!({"url": url, "mode": 1}), "$.http.mode"),
            (json!({"url": url, "secret": 5}), "$.http.secret"),
            (json!({"url": url, "secret": "short"}), "$.http.secret"),
            (json!({"url": url, "secret": "whsec_!!!"}), "$.http.secret"),
            (
                json!({"url": url, "secret": "whsec_MfKQ9r8="}),
                "$.http.secret",
            ),
        ];
        for (settings, path) in cases {
            let got = refused_path(settings.clone());
            // The duplicate-name case names whichever spelling came second.
            if path == "$.http.headers.x-a" {
                assert!(got.eq_ignore_ascii_case(path), "{settings}: {got}");
            } else {
                assert_eq!(got, path, "{settings}");
            }
        }
        assert!(HttpSettings::parse(&json!({"url": url, "timeout_ms": 1})).is_ok());
        assert!(HttpSettings::parse(&json!({"url": url, "timeout_ms": 300_000})).is_ok());
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let s = HttpSettings::parse(&json!({
            "url": "https://user:pa55word@example.com/hook?token=tok3n",
            "headers": {"Authorization": "Bearer hunter2"},
            "secret": SECRET,
        }))
        .unwrap();
        let t = HttpTarget::new(s.clone()).unwrap();
        for text in [format!("{s:?}"), format!("{t:?}")] {
            for leak in ["pa55word", "tok3n", "hunter2", "MfKQ9r8", "LaLaSw"] {
                assert!(!text.contains(leak), "{leak} in {text}");
            }
            assert!(text.contains("example.com"), "{text}");
            assert!(text.contains("authorization"), "{text}");
        }
    }
}
