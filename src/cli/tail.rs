//! `eventbus tail SET [--pattern P] [--from OFFSET]`: follow an event set's new events live.
//!
//! The server streams Server-Sent Events from `GET /v1/event-sets/{SET}/tail`: each message is
//! `id: <offset>` and `data: <the event as one line of JSON>`, and lines starting with `:` are
//! keep-alive comments. The protocol is a few lines of text, so it is parsed here
//! ([`SseParser`]) rather than pulling in a crate for it.

use std::io::{ErrorKind, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use reqwest::header::{ACCEPT, HeaderValue};

use super::client::{self, Client, ClientArgs, OutputFormat};

const TAIL_HELP: &str = "\
Prints each new event of the set as one line of JSON on stdout, as it is stored. Without
--from, only events stored after the command starts are shown; --from OFFSET starts at that
offset (0 = the oldest event still kept). --pattern filters on the server with an event
pattern (JSON text, or @file.json). Output is always JSON lines.

Stops with status 0 when the server ends the stream (e.g. it shuts down) or on Ctrl-C.

Examples:
  eventbus tail orders
  eventbus tail default --pattern '{\"source\":[\"cvm.cloud.tencent\"]}'
  eventbus tail orders --from 0 --pattern @pattern.json | jq .data";

/// `eventbus tail`.
#[derive(Debug, Args)]
#[command(after_help = TAIL_HELP)]
pub struct TailArgs {
    /// Event set to follow.
    pub set: String,
    /// Only events matching this event pattern (JSON text, or `@file.json`).
    #[arg(long)]
    pub pattern: Option<String>,
    /// Start at this offset instead of at the end of the log.
    #[arg(long)]
    pub from: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs `eventbus tail`.
pub fn run(args: TailArgs) -> anyhow::Result<ExitCode> {
    if args.client.output == Some(OutputFormat::Table) {
        bail!("tail prints JSON lines only; drop --output table");
    }
    let pattern = args
        .pattern
        .as_deref()
        .map(|p| client::json_arg(p, "--pattern"))
        .transpose()?;
    let client = Client::new(&args.client)?;
    let mut url = client.url(&["v1", "event-sets", &args.set, "tail"])?;
    {
        let mut q = url.query_pairs_mut();
        if let Some(p) = &pattern {
            // Compact JSON, percent-encoded by `append_pair`.
            q.append_pair("pattern", &p.to_string());
        }
        if let Some(from) = args.from {
            q.append_pair("from", &from.to_string());
        }
    }
    // `query_pairs_mut` leaves a bare `?` when nothing was appended.
    if url.query() == Some("") {
        url.set_query(None);
    }
    client::block_on(async {
        tokio::select! {
            r = follow(&client, url) => r,
            // Ctrl-C is how a person stops following: not an error.
            _ = tokio::signal::ctrl_c() => Ok(ExitCode::SUCCESS),
        }
    })?
}

/// Streams events to stdout until the server closes the stream.
async fn follow(client: &Client, url: reqwest::Url) -> anyhow::Result<ExitCode> {
    let rb = client
        .request(Method::GET, url)
        .header(ACCEPT, HeaderValue::from_static("text/event-stream"));
    let mut resp = client.send(rb).await?;
    let mut parser = SseParser::default();
    let mut stdout = std::io::stdout().lock();
    loop {
        let chunk = match resp.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(client.transport_error(e)).context("the event stream broke off"),
        };
        for msg in parser.push(&chunk) {
            match msg.event.as_deref() {
                None | Some("message") => {
                    // A reader that went away (`| head -3`) is a normal way to stop.
                    match write_line(&mut stdout, &msg.data) {
                        Err(e) if e.kind() == ErrorKind::BrokenPipe => {
                            return Ok(ExitCode::SUCCESS);
                        }
                        r => r.context("writing stdout")?,
                    }
                }
                // The server may end a stream it cannot continue with an `error` event.
                Some("error") => bail!("the server ended the stream: {}", msg.data),
                // Other event kinds are for other clients; skipping them keeps this one
                // working if the server adds some.
                Some(_) => {}
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per event, flushed at once so that `tail | grep` and people see it immediately.
fn write_line(out: &mut impl Write, data: &str) -> std::io::Result<()> {
    out.write_all(data.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// One dispatched Server-Sent Events message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseMessage {
    /// The `id:` field (the event's offset), if the message had one.
    pub id: Option<String>,
    /// The `event:` field; `None` means the default type, `message`.
    pub event: Option<String>,
    /// The `data:` lines joined by `\n`.
    pub data: String,
}

/// An incremental parser of the `text/event-stream` format (WHATWG HTML, "Server-sent
/// events"): lines end in LF, CRLF or CR; `field: value` (one space after the colon dropped);
/// lines starting with `:` are comments; a blank line dispatches the message if it has data.
/// Chunks may split lines (and a CRLF) anywhere, so unfinished input is kept between pushes.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of a line not yet ended.
    line: Vec<u8>,
    /// The last chunk ended in CR: a LF at the start of the next one belongs to it.
    after_cr: bool,
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
}

impl SseParser {
    /// Feeds bytes; returns the messages they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<SseMessage> {
        let mut out = Vec::new();
        for &b in bytes {
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(msg) = self.line_done(&line) {
                        out.push(msg);
                    }
                }
                _ => self.line.push(b),
            }
        }
        out
    }

    fn line_done(&mut self, line: &[u8]) -> Option<SseMessage> {
        if line.is_empty() {
            let data = self.data.take();
            let event = self.event.take();
            // The spec keeps the last id across messages; each of ours carries its own anyway.
            return data.map(|data| SseMessage {
                id: self.id.clone(),
                event,
                data,
            });
        }
        if line.first() == Some(&b':') {
            return None;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_ref(), ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            // An id holding NUL is ignored, as the spec says.
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            // `retry` (reconnection time) does not apply: tail does not reconnect.
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: Option<&str>, data: &str) -> SseMessage {
        SseMessage {
            id: id.map(str::to_owned),
            event: None,
            data: data.to_owned(),
        }
    }

    #[test]
    fn messages_with_ids_and_keep_alive_comments() {
        let mut p = SseParser::default();
        let out =
            p.push(b": keep-alive\n\nid: 7\ndata: {\"a\":1}\n\n:ping\nid: 8\ndata: {\"a\":2}\n\n");
        assert_eq!(
            out,
            vec![msg(Some("7"), r#"{"a":1}"#), msg(Some("8"), r#"{"a":2}"#)]
        );
    }

    #[test]
    fn lines_split_across_chunks_anywhere() {
        let stream = b"id: 1\r\ndata: {\"x\":\"y\"}\r\n\r\nid: 2\rdata:{\"z\":0}\r\r";
        // Every split point, including between CR and LF.
        for cut in 0..stream.len() {
            let mut p = SseParser::default();
            let mut out = p.push(&stream[..cut]);
            out.extend(p.push(&stream[cut..]));
            assert_eq!(
                out,
                vec![msg(Some("1"), r#"{"x":"y"}"#), msg(Some("2"), r#"{"z":0}"#)],
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn multi_line_data_is_joined_and_event_types_kept() {
        let mut p = SseParser::default();
        let out = p.push(b"event: error\ndata: first\ndata: second\n\n");
        assert_eq!(
            out,
            vec![SseMessage {
                id: None,
                event: Some("error".into()),
                data: "first\nsecond".into()
            }]
        );
    }

    #[test]
    fn nothing_is_dispatched_without_data_or_before_the_blank_line() {
        let mut p = SseParser::default();
        assert!(p.push(b"id: 3\n\nretry: 100\n\n").is_empty());
        assert!(p.push(b"data: pending\n").is_empty());
        assert_eq!(p.push(b"\n"), vec![msg(Some("3"), "pending")]);
    }
}
