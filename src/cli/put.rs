//! `eventbus put SET [FILE|-]`: put events into an event set through a running server.
//!
//! The whole input is read and checked first, so a typo on line 9,000 stops the command
//! before anything is stored (a put that half happened is harder to fix than one that did not).
//! The events then go out in chunks of at most `--batch` events (and about 1 MiB) per
//! `POST /v1/event-sets/{SET}/events`, in input order, one chunk at a time.

use std::io::Read;
use std::ops::Range;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use serde_json::Value;

use super::client::{self, CellStyle, Client, ClientArgs, Column, OutputFormat};

const PUT_HELP: &str = "\
Input: one JSON object (one event), a JSON array of events, or JSON lines (one event per line;
blank lines skipped). Events are CloudEvents 1.0 JSON or Tencent PutEvents entries; the server
validates them. Input that is not JSON is reported with its line number and nothing is sent.

Output: one result per event, in input order: its id and offset, or the server's error for it.
Exit status: 0 when every event was stored; 1 when any event was rejected or a request failed
(events of earlier chunks are stored then; the results printed say which).

Examples:
  echo '{\"specversion\":\"1.0\",\"id\":\"o-1\",\"source\":\"shop\",\"type\":\"order.created\",\"data\":{\"total\":5}}' \\
    | eventbus put orders
  eventbus put orders events.jsonl --batch 500 --output json
  EVENTBUS_TOKEN=… eventbus put orders - --server http://10.0.0.5:8080 < events.json";

/// Upper bound on one request body. Well under the server's default 4 MiB body cap even when
/// a single event of the maximum 64 KiB pushes a chunk over it; smaller requests also keep a
/// failed chunk (and its retry) cheap.
const MAX_REQUEST_BYTES: usize = 1024 * 1024;

/// `eventbus put`.
#[derive(Debug, Args)]
#[command(after_help = PUT_HELP)]
pub struct PutArgs {
    /// Event set to put the events into.
    pub set: String,
    /// File of events (JSON object, array, or JSON lines); `-` reads stdin.
    #[arg(default_value = "-")]
    pub file: String,
    /// Events per request, at most. Chunks are also cut at about 1 MiB of JSON.
    #[arg(long, default_value_t = 100,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=10_000))]
    pub batch: usize,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Runs `eventbus put`.
pub fn run(args: PutArgs) -> anyhow::Result<ExitCode> {
    let format = args.client.output.unwrap_or(OutputFormat::Table);
    let text = read_input(&args.file)?;
    let events = parse_events(&text)
        .with_context(|| format!("bad input in {}, nothing was sent", source_name(&args.file)))?;
    let bodies = encode(&events)?;
    let chunks = chunks(&bodies, args.batch, MAX_REQUEST_BYTES);
    let client = Client::new(&args.client)?;
    let url = client.url(&["v1", "event-sets", &args.set, "events"])?;

    let mut results: Vec<Value> = Vec::with_capacity(events.len());
    let mut failure = None;
    let sent = client::block_on(async {
        for range in &chunks {
            match put_chunk(&client, &url, &bodies[range.clone()]).await {
                Ok(entries) => results.extend(entries),
                Err(e) => {
                    failure = Some((range.clone(), e));
                    break;
                }
            }
        }
    });
    sent?;

    print_results(&results, format)?;
    let total = events.len();
    if let Some((range, e)) = failure {
        // A refusal (an error answer) stored nothing of the chunk; a broken connection or a
        // timeout leaves the chunk's fate unknown.
        let refused = e.downcast_ref::<client::ApiError>().is_some();
        let fate = if refused {
            "were not stored"
        } else {
            "are not confirmed"
        };
        if range.start > 0 {
            eprintln!(
                "note: events 1-{} were sent (results above); events {}-{total} {fate}",
                range.start,
                range.start + 1
            );
        }
        // With one chunk the range says nothing the error does not: keep the message plain.
        if chunks.len() == 1 {
            return Err(e);
        }
        return Err(e.context(format!(
            "putting events {}-{} of {total} into {:?}",
            range.start + 1,
            range.end,
            args.set
        )));
    }
    let failed = results.iter().filter(|r| r.get("error").is_some()).count();
    if failed > 0 {
        eprintln!("error: {failed} of {total} events were rejected (see their errors above)");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn source_name(file: &str) -> String {
    if file == "-" {
        "stdin".to_owned()
    } else {
        file.to_owned()
    }
}

/// The whole input as text.
fn read_input(file: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    if file == "-" {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading events from stdin")?;
    } else {
        text =
            std::fs::read_to_string(file).with_context(|| format!("reading events from {file}"))?;
    }
    Ok(text)
}

/// The events in `text`: a sequence of JSON values separated by whitespace, where an object is
/// one event and an array holds events. This one rule covers a single object, an array,
/// JSON lines and pretty-printed objects one after another. Errors name the line (1-based).
pub fn parse_events(text: &str) -> anyhow::Result<Vec<Value>> {
    let line_at = |byte: usize| {
        1 + text.as_bytes()[..byte.min(text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
    };
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    let mut events = Vec::new();
    let mut end = 0;
    while let Some(item) = stream.next() {
        let value = match item {
            Ok(v) => v,
            Err(e) => {
                // serde_json's message ends in " at line L column C"; say the line first.
                let msg = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
                bail!(
                    "line {}, column {}: not valid JSON: {msg}",
                    e.line(),
                    e.column()
                );
            }
        };
        // Where this value started: the first non-whitespace byte after the previous one.
        let start = end + text[end..].len() - text[end..].trim_start().len();
        end = stream.byte_offset();
        let line = line_at(start);
        match value {
            Value::Object(_) => events.push(value),
            Value::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    if !item.is_object() {
                        bail!(
                            "line {line}: element {i} of the array is {}, not an event (a JSON object)",
                            crate::event::json_kind(&item)
                        );
                    }
                    events.push(item);
                }
            }
            other => bail!(
                "line {line}: expected an event (a JSON object), found {}",
                crate::event::json_kind(&other)
            ),
        }
    }
    if events.is_empty() {
        bail!("no events in the input");
    }
    Ok(events)
}

/// Each event serialized once; chunks are cut by these lengths and their bodies spliced from
/// them, so no event is encoded twice.
pub(crate) fn encode(events: &[Value]) -> anyhow::Result<Vec<Vec<u8>>> {
    events
        .iter()
        .map(|e| serde_json::to_vec(e).context("encoding an event"))
        .collect()
}

/// Cuts the events into consecutive chunks of at most `max_events` events and, unless a single
/// event is bigger on its own, at most `max_bytes` of JSON array text.
pub fn chunks(bodies: &[Vec<u8>], max_events: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    // "[" + "]" and a comma per element after the first.
    let mut bytes = 2;
    for (i, body) in bodies.iter().enumerate() {
        let add = body.len() + usize::from(i > start);
        if i > start && (i - start == max_events || bytes + add > max_bytes) {
            out.push(start..i);
            start = i;
            bytes = 2 + body.len();
        } else {
            bytes += add;
        }
    }
    if start < bodies.len() {
        out.push(start..bodies.len());
    }
    out
}

/// POSTs one chunk as a JSON array and returns its entry results, in order.
pub(crate) async fn put_chunk(
    client: &Client,
    url: &reqwest::Url,
    bodies: &[Vec<u8>],
) -> anyhow::Result<Vec<Value>> {
    let mut body = Vec::with_capacity(bodies.iter().map(|b| b.len() + 1).sum::<usize>() + 2);
    body.push(b'[');
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(b);
    }
    body.push(b']');
    let rb = client
        .request(Method::POST, url.clone())
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(ACCEPT, HeaderValue::from_static("application/json"))
        .body(body);
    let resp = client.send(rb).await?;
    let bytes = resp.bytes().await.map_err(|e| client.transport_error(e))?;
    let answer: Value =
        serde_json::from_slice(&bytes).context("the server's answer is not JSON")?;
    let entries = client::list_field(&answer, "entries")?;
    if entries.len() != bodies.len() {
        bail!(
            "the server answered {} entries for {} events; cannot tell which were stored",
            entries.len(),
            bodies.len()
        );
    }
    Ok(entries)
}

/// Table columns of the results; `#` is the event's 1-based position in the input.
const RESULT_COLUMNS: &[Column] = &[
    Column::new("ID", "id"),
    Column::new("OFFSET", "offset"),
    Column::styled("ERROR", "error", CellStyle::Error),
];

fn print_results(results: &[Value], format: OutputFormat) -> anyhow::Result<()> {
    match format {
        OutputFormat::Json => client::emit(&client::json_lines(results)?)?,
        OutputFormat::Table => {
            if results.is_empty() {
                return Ok(());
            }
            let mut table = client::list_table(results, RESULT_COLUMNS);
            table.headers.insert(0, "#".to_owned());
            for (i, row) in table.rows.iter_mut().enumerate() {
                row.insert(0, (i + 1).to_string());
            }
            client::emit(&table.render())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(text: &str) -> String {
        format!("{:#}", parse_events(text).unwrap_err())
    }

    #[test]
    fn one_object_is_one_event() {
        let text = "{\n  \"id\": \"a\",\n  \"source\": \"s\"\n}\n";
        assert_eq!(
            parse_events(text).unwrap(),
            vec![json!({"id":"a","source":"s"})]
        );
    }

    #[test]
    fn an_array_is_its_events_in_order() {
        let events = parse_events(r#"[{"id":"a"},{"id":"b"}]"#).unwrap();
        assert_eq!(events, vec![json!({"id":"a"}), json!({"id":"b"})]);
    }

    #[test]
    fn json_lines_skip_blank_lines() {
        let events =
            parse_events("{\"id\":\"a\"}\n\n  \r\n{\"id\":\"b\"}\r\n{\"id\":\"c\"}").unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[2], json!({"id":"c"}));
    }

    #[test]
    fn a_bad_line_is_named_by_its_number() {
        let e = err("{\"id\":\"a\"}\n{\"id\":\"b\"}\n{\"id\": oops}\n{\"id\":\"d\"}\n");
        assert!(
            e.starts_with("line 3, column 8: not valid JSON: expected value"),
            "{e}"
        );
        let e = err("{\"id\":\"a\"}\n\n{\"id\":\"b\"} xtra\n");
        assert!(
            e.starts_with("line 3, column 12: not valid JSON: expected value"),
            "{e}"
        );
        let e = err("{\"id\":\"a\"}\n{\"id\":\n");
        assert!(
            e.starts_with("line 3, column 0: not valid JSON: EOF"),
            "{e}"
        );
    }

    #[test]
    fn values_that_are_not_events_are_named_by_line() {
        let e = err("{\"id\":\"a\"}\n\n42\n");
        assert_eq!(
            e,
            "line 3: expected an event (a JSON object), found a number"
        );
        let e = err("{\"id\":\"a\"}\n  [{\"id\":\"b\"}, \"x\"]\n");
        assert_eq!(
            e,
            "line 2: element 1 of the array is a string, not an event (a JSON object)"
        );
    }

    #[test]
    fn empty_input_is_an_error() {
        assert_eq!(err(""), "no events in the input");
        assert_eq!(err(" \n\n"), "no events in the input");
        assert_eq!(err("[]"), "no events in the input");
    }

    #[test]
    fn chunks_respect_the_event_count() {
        let bodies = vec![b"{}".to_vec(); 5];
        assert_eq!(chunks(&bodies, 2, usize::MAX), vec![0..2, 2..4, 4..5]);
        assert_eq!(chunks(&bodies, 100, usize::MAX), vec![0..5]);
        assert_eq!(
            chunks(&bodies, 1, usize::MAX),
            vec![0..1, 1..2, 2..3, 3..4, 4..5]
        );
        assert!(chunks(&[], 10, 10).is_empty());
    }

    #[test]
    fn chunks_respect_the_byte_cap_but_never_split_an_event() {
        // Bodies of 10 bytes: an array of n of them is 2 + 10n + (n-1) bytes.
        let bodies = vec![vec![b'x'; 10]; 5];
        // 34 bytes hold 3 (2 + 30 + 2 = 34), not 4.
        assert_eq!(chunks(&bodies, 100, 34), vec![0..3, 3..5]);
        assert_eq!(chunks(&bodies, 100, 33), vec![0..2, 2..4, 4..5]);
        // A cap below one event still sends each event, alone.
        assert_eq!(chunks(&bodies, 100, 5), vec![0..1, 1..2, 2..3, 3..4, 4..5]);
    }
}
