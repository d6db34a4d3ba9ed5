//! Plumbing shared by the client commands (`put`, `tail`, `sets`, `rules`, `targets`,
//! `dead-letters`): the `--server` / `--token` / `--output` options, an HTTP client that turns
//! the server's error bodies into readable errors, `@file` JSON arguments, and plain-text tables.
//!
//! The client commands talk to a running `eventbus serve` over its HTTP API (see the HTTP table
//! in the README); they never open a data directory themselves.

use std::fmt;
use std::future::Future;
use std::io::{Read, Write};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, StatusCode, Url};
use serde_json::Value;

/// Server the client commands talk to when neither `--server` nor `EVENTBUS_SERVER` is given:
/// the default listen address of `eventbus serve`.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8080";

/// How long a connection attempt may take before the command gives up. A local server answers
/// in microseconds; ten seconds covers a slow network without hanging a script forever.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whole-request time limit for request/response calls (not for `tail`, whose stream is meant
/// to stay open). A put of one chunk is one group commit on the server, far below this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Options every client command takes. They are `global` so they may be given before or after
/// a nested subcommand (`eventbus sets --server … list` and `eventbus sets list --server …`).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the eventbus server (`eventbus serve`). A bare `host:port` means http.
    #[arg(long, env = "EVENTBUS_SERVER", default_value = DEFAULT_SERVER, global = true)]
    pub server: String,
    /// Bearer token sent as `Authorization: Bearer …`. Never printed.
    // `hide_env_values` keeps `--help` from echoing the token taken from the environment.
    #[arg(long, env = "EVENTBUS_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<Token>,
    /// Output format: `table` (aligned columns for people) or `json` (the server's JSON; one
    /// object per line for lists and streams). Default: table, except JSON lines for `tail`.
    #[arg(long, value_enum, global = true)]
    pub output: Option<OutputFormat>,
}

/// An API token. Its `Debug` is redacted so that debug-printing the parsed arguments (or an
/// error that carries them) can never leak it.
#[derive(Clone)]
pub struct Token(String);

impl From<String> for Token {
    fn from(s: String) -> Self {
        Token(s)
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// `--output`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Aligned columns (lists) or `FIELD  VALUE` rows (single resources).
    Table,
    /// The server's JSON: pretty for single resources, one compact object per line for lists.
    Json,
}

/// Runs a client command's async body on a current-thread runtime: a CLI call makes a handful
/// of sequential requests, so one thread is all it needs.
pub fn block_on<F: Future>(f: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(rt.block_on(f))
}

/// An error answer from the server: `{"error":{"code","message","path"?}}` with a non-2xx
/// status. Its `Display` is exactly `<code>: <message> (at <path>)`, so `eventbus` prints
/// `error: InvalidParameterValue.EventPattern: … (at $.source)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Tencent-style error code, e.g. `ResourceNotFound.Rule`; for a body that is not the
    /// API's error shape (a proxy's HTML page, say), `HTTP <status>`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The offending field, when the server names one.
    pub path: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(path) = &self.path {
            write!(f, " (at {path})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    /// Reads an error answer. Falls back to the status and the start of the body when the body
    /// is not `{"error":{…}}`, so that an unexpected answer is still shown, not swallowed.
    pub fn from_body(status: StatusCode, body: &[u8]) -> ApiError {
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let err = parsed.as_ref().and_then(|v| v.get("error"));
        match err {
            Some(e) if e.get("code").is_some_and(Value::is_string) => ApiError {
                status,
                code: str_field(e, "code"),
                message: str_field(e, "message"),
                path: e.get("path").and_then(Value::as_str).map(str::to_owned),
            },
            _ => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = if text.is_empty() {
                    status.canonical_reason().unwrap_or("no body").to_owned()
                } else {
                    truncate(text, 300)
                };
                ApiError {
                    status,
                    code: format!("HTTP {}", status.as_u16()),
                    message,
                    path: None,
                }
            }
        }
    }
}

fn str_field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// An HTTP client bound to one server and token.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<Token>,
}

impl Client {
    /// Builds a client from the shared options. Fails on a malformed `--server`.
    pub fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let base = parse_server(&args.server)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("eventbus/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Client {
            http,
            base,
            token: args.token.clone(),
        })
    }

    /// The URL of an API path given as segments, e.g. `["v1", "event-sets", set, "rules"]`.
    /// Each segment is percent-encoded, so a name can never escape its place in the path; a
    /// path prefix in `--server` (a reverse proxy's `/eventbus/`) is kept.
    pub fn url(&self, segments: &[&str]) -> anyhow::Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| anyhow::anyhow!("--server {} cannot take a path", self.server()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    /// The server's base URL for messages, without any password it may hold.
    pub fn server(&self) -> String {
        let mut shown = self.base.clone();
        if shown.password().is_some() {
            // Only fails for URLs that cannot have credentials, which then have none to hide.
            let _ = shown.set_password(Some("***"));
        }
        shown.to_string()
    }

    /// A request with the token attached. `bearer_auth` marks the header sensitive, so it
    /// is left out of reqwest's own debug output too.
    pub fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let rb = self.http.request(method, url);
        match &self.token {
            Some(Token(t)) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// Sends a request and returns the response when its status is 2xx; a non-2xx answer
    /// becomes an [`ApiError`], a refused connection an error that names the server and
    /// suggests `eventbus serve`.
    pub async fn send(&self, rb: RequestBuilder) -> anyhow::Result<Response> {
        let resp = match rb.send().await {
            Ok(r) => r,
            Err(e) => return Err(self.transport_error(e)),
        };
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        // The error body is small; if even reading it fails, say so with the status.
        let body = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))
            .with_context(|| format!("reading the server's HTTP {status} answer"))?;
        Err(ApiError::from_body(status, &body).into())
    }

    /// Sends a JSON request (or a bodiless one) and returns the JSON answer; `None` when the
    /// answer has no body (204, or an empty 200).
    pub async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> anyhow::Result<Option<Value>> {
        let mut rb = self
            .request(method, url.clone())
            .timeout(REQUEST_TIMEOUT)
            .header(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(body) = body {
            let bytes = serde_json::to_vec(body).context("encoding the request body")?;
            rb = rb
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(bytes);
        }
        let resp = self.send(rb).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(e))
            .with_context(|| format!("reading the answer from {}", url.path()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        let value = serde_json::from_slice(&bytes)
            .with_context(|| format!("the server's answer from {} is not JSON", url.path()))?;
        Ok(Some(value))
    }

    /// [`Client::call`] for routes that always answer with a JSON body.
    pub async fn call_json(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let path = url.path().to_owned();
        self.call(method, url, body)
            .await?
            .with_context(|| format!("the server sent an empty answer from {path}"))
    }

    /// Turns a reqwest failure into an error a person can act on. The request URL is dropped
    /// from reqwest's message (it is named by us instead, without credentials).
    pub fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow::Error::new(e.without_url()).context(format!(
                "cannot connect to the eventbus server at {}; is it running? Start one with \
                 `eventbus serve`, or point --server / EVENTBUS_SERVER at it",
                self.server()
            ))
        } else if e.is_timeout() {
            anyhow::Error::new(e.without_url()).context(format!(
                "the eventbus server at {} timed out",
                self.server()
            ))
        } else {
            anyhow::Error::new(e.without_url()).context(format!(
                "talking to the eventbus server at {}",
                self.server()
            ))
        }
    }
}

/// Parses `--server`: a full URL, or a bare `host:port` taken as http. Only http and https.
pub fn parse_server(server: &str) -> anyhow::Result<Url> {
    let text = server.trim();
    let with_scheme = if text.contains("://") {
        text.to_owned()
    } else {
        format!("http://{text}")
    };
    let url = Url::parse(&with_scheme)
        .with_context(|| format!("--server {server:?} is not a valid URL"))?;
    match url.scheme() {
        "http" | "https" => {}
        other => bail!("--server {server:?}: scheme {other:?} is not supported (http or https)"),
    }
    if url.host_str().is_none() {
        bail!("--server {server:?} has no host");
    }
    Ok(url)
}

/// Reads a JSON argument: the JSON text itself, `@path` to read a file, or `@-` for stdin.
/// `what` names the argument (e.g. `--pattern`) in errors, which also give the line and column
/// of a syntax error.
pub fn json_arg(arg: &str, what: &str) -> anyhow::Result<Value> {
    let (text, source) = match arg.strip_prefix('@') {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .with_context(|| format!("{what}: reading stdin"))?;
            (s, "stdin".to_owned())
        }
        Some(path) => {
            let s =
                std::fs::read_to_string(path).with_context(|| format!("{what}: reading {path}"))?;
            (s, path.to_owned())
        }
        None => (arg.to_owned(), "the argument".to_owned()),
    };
    serde_json::from_str(&text).with_context(|| format!("{what}: {source} is not valid JSON"))
}

/// Writes `text` to stdout and flushes. A reader that went away (`eventbus … | head -3`) is a
/// normal way for output to end, not an error: `print!` would panic there instead.
pub fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing stdout"),
    }
}

/// Prints one resource: pretty JSON, or a `FIELD  VALUE` table of its leaf fields.
pub fn print_resource(value: &Value, format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => emit(&format!("{}\n", serde_json::to_string_pretty(value)?)),
        OutputFormat::Table => emit(&fields_table(value).render()),
    }
}

/// Prints a list: one compact JSON object per line, or a table of the chosen columns.
pub fn print_list(items: &[Value], format: OutputFormat, columns: &[Column]) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => emit(&json_lines(items)?),
        OutputFormat::Table => emit(&list_table(items, columns).render()),
    }
}

/// One compact JSON text per item, each ending in `\n`.
pub fn json_lines(items: &[Value]) -> anyhow::Result<String> {
    let mut text = String::new();
    for item in items {
        text.push_str(&serde_json::to_string(item)?);
        text.push('\n');
    }
    Ok(text)
}

/// The array under `key` of a list answer such as `{"rules":[…]}`.
pub fn list_field(answer: &Value, key: &str) -> anyhow::Result<Vec<Value>> {
    match answer.get(key) {
        Some(Value::Array(items)) => Ok(items.clone()),
        _ => bail!(
            "the server's answer has no {key:?} array: {}",
            truncate(&answer.to_string(), 200)
        ),
    }
}

/// One column of a list table: a header and the dotted path of the field it shows.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    /// Header, upper case by convention.
    pub header: &'static str,
    /// Dotted path into each item, e.g. `stats.events`.
    pub path: &'static str,
    /// How the value is shown.
    pub style: CellStyle,
}

/// How a table cell shows its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellStyle {
    /// Strings bare, anything else as compact JSON.
    Plain,
    /// Epoch milliseconds as an RFC 3339 UTC time.
    TimeMs,
    /// An error: a string bare, an object by its `code: message`.
    Error,
}

impl Column {
    /// A plain column.
    pub const fn new(header: &'static str, path: &'static str) -> Column {
        Column {
            header,
            path,
            style: CellStyle::Plain,
        }
    }

    /// A column with a display style.
    pub const fn styled(header: &'static str, path: &'static str, style: CellStyle) -> Column {
        Column {
            header,
            path,
            style,
        }
    }
}

/// The value at a dotted path (`delivery.lag`), if every step exists.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, key| v.get(key))
}

/// Longest text a table cell shows; longer values (patterns, descriptions) end in `…`. Errors
/// are shown whole: they are what a person reads the table for, and a cut message may lose the
/// part that says which field is wrong. JSON output always has the full value.
const MAX_CELL_CHARS: usize = 60;

/// Text of one cell. Missing and null show as `-` so that columns stay aligned and a reader can
/// tell "no value" from an empty string.
pub fn cell(value: Option<&Value>, style: CellStyle) -> String {
    let text = match (value, style) {
        (None | Some(Value::Null), _) => "-".to_owned(),
        (Some(Value::String(s)), _) => s.clone(),
        (Some(v), CellStyle::TimeMs) => {
            match v.as_i64().and_then(chrono::DateTime::from_timestamp_millis) {
                Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                None => v.to_string(),
            }
        }
        (Some(v @ Value::Object(o)), CellStyle::Error) => match (o.get("code"), o.get("message")) {
            (Some(Value::String(c)), Some(Value::String(m))) => format!("{c}: {m}"),
            (None, Some(Value::String(m))) => m.clone(),
            _ => v.to_string(),
        },
        (Some(v), _) => v.to_string(),
    };
    let text = one_line(&text);
    match style {
        CellStyle::Error => text,
        _ => truncate(&text, MAX_CELL_CHARS),
    }
}

/// Control characters (newlines, tabs) would break the table's rows; they become spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` characters, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A plain-text table: columns separated by two spaces, no borders, so that it reads well and
/// still works with `grep`, `awk` and `cut` (kubectl's style).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Table {
    /// Header cells.
    pub headers: Vec<String>,
    /// Body rows; each as long as `headers`.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these headers and no rows.
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn push(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    /// The table as text, one line per row, each ending in `\n`; trailing spaces trimmed.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, c) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(c.chars().count());
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, c) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(c);
                let pad = widths
                    .get(i)
                    .copied()
                    .unwrap_or(0)
                    .saturating_sub(c.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// A list as a table of the given columns.
pub fn list_table(items: &[Value], columns: &[Column]) -> Table {
    let mut t = Table::new(&columns.iter().map(|c| c.header).collect::<Vec<_>>());
    for item in items {
        t.push(
            columns
                .iter()
                .map(|c| cell(lookup(item, c.path), c.style))
                .collect(),
        );
    }
    t
}

/// Fields whose value is shown whole, as compact JSON, instead of being flattened: they are
/// documents of their own (a pattern, a transformation, an event) and read best as one value.
const WHOLE_FIELDS: &[&str] = &["pattern", "transform", "event", "data", "headers", "tags"];

/// Whether a dotted path names a point in time in epoch ms (shown as RFC 3339), as opposed to
/// a duration in ms such as `dedup_window_ms` or `timeout_ms` (shown as a number).
fn is_time_field(path: &str) -> bool {
    let key = path.rsplit('.').next().unwrap_or(path);
    key.ends_with("time_ms") || matches!(key, "created_ms" | "updated_ms" | "dead_lettered_ms")
}

/// One resource as `FIELD  VALUE` rows: every leaf field by its dotted path, in the server's
/// order, so that a table view hides nothing (only long values are shortened).
pub fn fields_table(value: &Value) -> Table {
    fn walk(prefix: &str, v: &Value, t: &mut Table) {
        match v {
            Value::Object(map) if !map.is_empty() => {
                for (k, child) in map {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    if WHOLE_FIELDS.contains(&k.as_str()) {
                        t.push(vec![path, cell(Some(child), CellStyle::Plain)]);
                    } else {
                        walk(&path, child, t);
                    }
                }
            }
            _ => {
                let style = if is_time_field(prefix) {
                    CellStyle::TimeMs
                } else if prefix.ends_with("error") {
                    CellStyle::Error
                } else {
                    CellStyle::Plain
                };
                let shown = if prefix.is_empty() { "value" } else { prefix };
                t.push(vec![shown.to_owned(), cell(Some(v), style)]);
            }
        }
    }
    let mut t = Table::new(&["FIELD", "VALUE"]);
    walk("", value, &mut t);
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_without_scheme_is_http_and_other_schemes_are_refused() {
        assert_eq!(
            parse_server("127.0.0.1:9000").unwrap().as_str(),
            "http://127.0.0.1:9000/"
        );
        assert_eq!(
            parse_server("localhost:8080").unwrap().as_str(),
            "http://localhost:8080/"
        );
        assert!(parse_server("https://bus.example/prefix").is_ok());
        let e = parse_server("ftp://x").unwrap_err().to_string();
        assert!(e.contains("ftp"), "{e}");
    }

    #[test]
    fn url_encodes_segments_and_keeps_a_path_prefix() {
        let args = ClientArgs {
            server: "http://h:1/base/".into(),
            token: None,
            output: None,
        };
        let c = Client::new(&args).unwrap();
        let u = c.url(&["v1", "event-sets", "a b/c", "rules"]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/base/v1/event-sets/a%20b%2Fc/rules");
        let args = ClientArgs {
            server: "http://h:1".into(),
            ..args
        };
        let c = Client::new(&args).unwrap();
        assert_eq!(
            c.url(&["v1", "event-sets"]).unwrap().path(),
            "/v1/event-sets"
        );
    }

    #[test]
    fn server_shown_in_messages_hides_a_password() {
        let args = ClientArgs {
            server: "http://u:secret@h:1".into(),
            token: None,
            output: None,
        };
        let shown = Client::new(&args).unwrap().server();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("h:1"), "{shown}");
    }

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::from("s3cr3t".to_owned());
        assert!(!format!("{t:?}").contains("s3cr3t"));
    }

    #[test]
    fn api_error_displays_code_message_and_path() {
        let body = br#"{"error":{"code":"InvalidParameterValue.EventPattern","message":"bad","path":"$.a"}}"#;
        let e = ApiError::from_body(StatusCode::BAD_REQUEST, body);
        assert_eq!(
            e.to_string(),
            "InvalidParameterValue.EventPattern: bad (at $.a)"
        );
        let e = ApiError::from_body(
            StatusCode::NOT_FOUND,
            br#"{"error":{"code":"ResourceNotFound.Rule","message":"no rule r"}}"#,
        );
        assert_eq!(e.to_string(), "ResourceNotFound.Rule: no rule r");
    }

    #[test]
    fn api_error_from_an_unexpected_body_keeps_status_and_text() {
        let e = ApiError::from_body(StatusCode::BAD_GATEWAY, b"<html>upstream down</html>");
        assert_eq!(e.code, "HTTP 502");
        assert!(e.message.contains("upstream down"));
        let e = ApiError::from_body(StatusCode::SERVICE_UNAVAILABLE, b"");
        assert_eq!(e.to_string(), "HTTP 503: Service Unavailable");
    }

    #[test]
    fn json_arg_reads_text_and_files_and_names_the_argument_on_error() {
        assert_eq!(
            json_arg(r#"{"a":[1]}"#, "--pattern").unwrap(),
            json!({"a":[1]})
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, "{\n  \"source\": [\"x\"]\n}\n").unwrap();
        let arg = format!("@{}", path.display());
        assert_eq!(
            json_arg(&arg, "--pattern").unwrap(),
            json!({"source":["x"]})
        );

        let e = format!("{:#}", json_arg("{nope", "--pattern").unwrap_err());
        assert!(
            e.starts_with("--pattern: the argument is not valid JSON"),
            "{e}"
        );
        assert!(e.contains("line 1"), "{e}");
        std::fs::write(&path, "{\n  \"a\": \n}").unwrap();
        let e = format!("{:#}", json_arg(&arg, "--body").unwrap_err());
        assert!(
            e.contains("--body") && e.contains("p.json") && e.contains("line 3"),
            "{e}"
        );
        let missing = format!("@{}", dir.path().join("missing.json").display());
        let e = format!("{:#}", json_arg(&missing, "--body").unwrap_err());
        assert!(
            e.contains("--body: reading") && e.contains("missing.json"),
            "{e}"
        );
    }

    #[test]
    fn table_aligns_columns_and_trims_trailing_space() {
        let mut t = Table::new(&["NAME", "EVENTS", "DESCRIPTION"]);
        t.push(vec!["orders".into(), "12".into(), "".into()]);
        t.push(vec!["x".into(), "3456789".into(), "café orders".into()]);
        assert_eq!(
            t.render(),
            "NAME    EVENTS   DESCRIPTION\n\
             orders  12\n\
             x       3456789  café orders\n"
        );
    }

    #[test]
    fn list_table_picks_nested_fields_and_shows_missing_as_dash() {
        let items = [
            json!({"name":"a","type":"http","delivery":{"state":"running","lag":0,
                   "last_error":{"code":"Http.Status","message":"503"}}}),
            json!({"name":"b","type":"file","delivery":{"state":"paused","last_error":"line1\nline2"}}),
        ];
        let cols = [
            Column::new("NAME", "name"),
            Column::new("LAG", "delivery.lag"),
            Column::styled("LAST_ERROR", "delivery.last_error", CellStyle::Error),
        ];
        let t = list_table(&items, &cols);
        assert_eq!(
            t.rows,
            vec![
                vec!["a".to_owned(), "0".into(), "Http.Status: 503".into()],
                vec!["b".to_owned(), "-".into(), "line1 line2".into()],
            ]
        );
    }

    #[test]
    fn cells_shorten_long_values_and_format_times() {
        let long = Value::String("x".repeat(100));
        let c = cell(Some(&long), CellStyle::Plain);
        assert_eq!(c.chars().count(), MAX_CELL_CHARS);
        assert!(c.ends_with('…'));
        assert_eq!(
            cell(Some(&json!(1_700_000_000_123_i64)), CellStyle::TimeMs),
            "2023-11-14T22:13:20.123Z"
        );
        assert_eq!(cell(Some(&json!({"a":1})), CellStyle::Plain), r#"{"a":1}"#);
    }

    #[test]
    fn fields_table_flattens_but_keeps_documents_whole() {
        let rule = json!({"name":"r","enabled":true,"pattern":{"source":["x"]},
                          "created_ms":0,"stats":{"matched":3,"last_time_ms":null},
                          "dedup_window_ms":120000});
        let t = fields_table(&rule);
        assert_eq!(
            t.rows,
            vec![
                vec!["name".to_owned(), "r".into()],
                vec!["enabled".to_owned(), "true".into()],
                vec!["pattern".to_owned(), r#"{"source":["x"]}"#.into()],
                vec!["created_ms".to_owned(), "1970-01-01T00:00:00.000Z".into()],
                vec!["stats.matched".to_owned(), "3".into()],
                vec!["stats.last_time_ms".to_owned(), "-".into()],
                vec!["dedup_window_ms".to_owned(), "120000".into()],
            ]
        );
    }
}
