//! `eventbus events`: an event set's stored events over the HTTP API (the audit trail).
//!
//! - `events query SET` pages through `GET /v1/event-sets/{SET}/events?start=&end=&pattern=
//!   &after=&limit=` (ingest time range, optional event pattern, oldest first); `--all`
//!   follows the `after` tokens to the end.
//! - `events get SET ID` is `GET /v1/event-sets/{SET}/events/{ID}[?source=]`: the most recent
//!   stored event with that id (and source).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::client::{self, CellStyle, Client, ClientArgs, Column, OutputFormat};
use super::manage::parse_time_ms_for;

const EVENTS_HELP: &str = "\
`query` lists stored events by ingest time, oldest first: --start (inclusive) and --end
(exclusive) take epoch milliseconds or an RFC 3339 time; --pattern (JSON text, or @file.json)
keeps only matching events. It prints one page of --limit events (default 100, at most 1000)
and, when more are left, says on stderr how to continue (--after TOKEN); --all fetches every
page to the end (with --output json each page is printed as it arrives).

`get` prints the most recent stored event with that id. Ids are unique per source, not per set:
--source picks the event of one source.

Examples:
  eventbus events query orders --start 2024-05-01T00:00:00Z --end 2024-05-02T00:00:00Z
  eventbus events query orders --start 1714521600000 --limit 10
  eventbus events query default --pattern '{\"source\":[\"cvm.cloud.tencent\"]}' --all --output json > cvm.jsonl
  eventbus events get orders o-1
  eventbus events get orders o-1 --source shop --output json";

/// `eventbus events …`.
#[derive(Debug, Args)]
#[command(after_help = EVENTS_HELP)]
pub struct EventsArgs {
    #[command(subcommand)]
    pub command: EventsCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Events subcommands.
#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Stored events by ingest time range and an optional pattern, oldest first.
    Query {
        /// Event set name.
        set: String,
        /// Ingest time from (inclusive): epoch milliseconds or RFC 3339. Default = the oldest.
        #[arg(long, value_name = "T")]
        start: Option<String>,
        /// Ingest time to (exclusive): epoch milliseconds or RFC 3339. Default = no end.
        #[arg(long, value_name = "T")]
        end: Option<String>,
        /// Only events matching this event pattern (JSON text, or `@file.json`).
        #[arg(long, value_name = "JSON")]
        pattern: Option<String>,
        /// Events per page, 1–1000.
        #[arg(long, value_name = "N", default_value_t = 100,
              value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1000))]
        limit: usize,
        /// Continue from a previous page's `after` token.
        #[arg(long, value_name = "TOKEN")]
        after: Option<String>,
        /// Follow the pages until the end of the range and print every event.
        #[arg(long)]
        all: bool,
    },
    /// The most recent stored event with this id.
    Get {
        /// Event set name.
        set: String,
        /// Event id.
        id: String,
        /// Only an event from this source.
        #[arg(long)]
        source: Option<String>,
    },
}

const EVENT_COLUMNS: &[Column] = &[
    Column::styled("TIME", "time", CellStyle::TimeMs),
    Column::new("ID", "id"),
    Column::new("SOURCE", "source"),
    Column::new("TYPE", "type"),
    Column::new("SUBJECT", "subject"),
];

/// The query parameters of `GET …/events` for one page.
pub fn query_pairs(
    start: Option<u64>,
    end: Option<u64>,
    pattern: Option<&Value>,
    after: Option<&str>,
    limit: usize,
) -> Vec<(&'static str, String)> {
    let mut q = Vec::new();
    if let Some(s) = start {
        q.push(("start", s.to_string()));
    }
    if let Some(e) = end {
        q.push(("end", e.to_string()));
    }
    if let Some(p) = pattern {
        // Compact JSON; percent-encoded by the URL builder.
        q.push(("pattern", p.to_string()));
    }
    if let Some(a) = after {
        q.push(("after", a.to_owned()));
    }
    q.push(("limit", limit.to_string()));
    q
}

/// Runs `eventbus events …`.
pub fn run(args: EventsArgs) -> anyhow::Result<ExitCode> {
    let out = args.client.output.unwrap_or(OutputFormat::Table);
    let c = Client::new(&args.client)?;
    match &args.command {
        EventsCommand::Query {
            set,
            start,
            end,
            pattern,
            limit,
            after,
            all,
        } => {
            let start = start
                .as_deref()
                .map(|t| parse_time_ms_for("--start", t))
                .transpose()?;
            let end = end
                .as_deref()
                .map(|t| parse_time_ms_for("--end", t))
                .transpose()?;
            let pattern = pattern
                .as_deref()
                .map(|p| client::json_arg(p, "--pattern"))
                .transpose()?;
            client::block_on(async {
                let mut after = after.clone();
                let mut shown = Vec::new();
                let more = loop {
                    let mut url = c.url(&["v1", "event-sets", set, "events"])?;
                    url.query_pairs_mut().extend_pairs(query_pairs(
                        start,
                        end,
                        pattern.as_ref(),
                        after.as_deref(),
                        *limit,
                    ));
                    let answer = c.call_json(Method::GET, url, None).await?;
                    let page = client::list_field(&answer, "events")?;
                    let next = match answer.get("after") {
                        Some(Value::String(s)) => Some(s.clone()),
                        _ => None,
                    };
                    match out {
                        OutputFormat::Json => client::emit(&client::json_lines(&page)?)?,
                        OutputFormat::Table => shown.extend(page),
                    }
                    match next {
                        Some(token) if *all => after = Some(token),
                        other => break other,
                    }
                };
                if out == OutputFormat::Table {
                    client::print_list(&shown, out, EVENT_COLUMNS)?;
                }
                if let Some(token) = more {
                    eprintln!("(more events: continue with --after {token}, or use --all)");
                }
                anyhow::Ok(())
            })??
        }
        EventsCommand::Get { set, id, source } => client::block_on(async {
            let mut url = c.url(&["v1", "event-sets", set, "events", id])?;
            if let Some(s) = source {
                url.query_pairs_mut().append_pair("source", s);
            }
            let v = c.call_json(Method::GET, url, None).await?;
            client::print_resource(&v, out)
        })??,
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_sends_only_what_was_given_and_always_a_limit() {
        assert_eq!(
            query_pairs(None, None, None, None, 100),
            vec![("limit", "100".to_owned())]
        );
        let p = json!({"source": ["shop"]});
        assert_eq!(
            query_pairs(Some(1), Some(2), Some(&p), Some("tok"), 5),
            vec![
                ("start", "1".to_owned()),
                ("end", "2".to_owned()),
                ("pattern", r#"{"source":["shop"]}"#.to_owned()),
                ("after", "tok".to_owned()),
                ("limit", "5".to_owned()),
            ]
        );
    }
}
