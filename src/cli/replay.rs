//! `eventbus replay`: start, follow, list and cancel replays over the HTTP API
//! (`/v1/event-sets/{set}/replays`).
//!
//! `replay start` creates the replay and, unless `--no-wait`, follows it with a progress bar
//! on stderr (events replayed of the total) until it completes, fails or is cancelled; the
//! final status goes to stdout. `replay status --watch` follows an existing one the same way.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{self, CellStyle, Client, ClientArgs, Column, OutputFormat};
use super::manage::parse_time_ms_for;

const REPLAY_HELP: &str = "\
A replay sends every stored event ingested in [--start, --end) that a chosen rule matches to
that rule's targets again, through retries and dead letters, without moving the live cursors.
Replayed events carry the extension attribute `replayname`. Times are epoch milliseconds or
RFC 3339. Without --rule, every enabled rule of the set is replayed to.

`start` follows the replay with a progress bar (on stderr) until it ends, then prints its
status; --no-wait returns at once. `cancel` stops a running replay (it stays listed as
cancelled); on a finished replay it deletes it and its state. A replay resumes by itself
after a server restart. The exit status is non-zero when a followed replay failed or was
cancelled.

Examples:
  eventbus replay start orders fix-1 --start 2024-05-01T00:00:00Z --end 2024-05-02T00:00:00Z
  eventbus replay start orders fix-2 --start 1714521600000 --end 1714525200000 --rule big-orders --no-wait
  eventbus replay status orders fix-2 --watch
  eventbus replay list orders
  eventbus replay cancel orders fix-2";

/// `eventbus replay …`.
#[derive(Debug, Args)]
#[command(after_help = REPLAY_HELP)]
pub struct ReplayArgs {
    #[command(subcommand)]
    pub command: ReplayCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// Replay subcommands.
#[derive(Debug, Subcommand)]
pub enum ReplayCommand {
    /// Start a replay and follow it to its end.
    Start {
        /// Event set name.
        set: String,
        /// Replay name (unique in the set).
        name: String,
        /// Window start, inclusive: epoch milliseconds or RFC 3339.
        #[arg(long, value_name = "T")]
        start: String,
        /// Window end, exclusive: epoch milliseconds or RFC 3339 (a future time means now).
        #[arg(long, value_name = "T")]
        end: String,
        /// A rule to replay to (repeat for several). Default = every enabled rule.
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
        /// Return after creating it instead of following it.
        #[arg(long)]
        no_wait: bool,
    },
    /// A replay's status.
    Status {
        /// Event set name.
        set: String,
        /// Replay name.
        name: String,
        /// Follow it with a progress bar until it ends.
        #[arg(long)]
        watch: bool,
    },
    /// The set's replays.
    List {
        /// Event set name.
        set: String,
    },
    /// Cancel a running replay, or delete a finished one.
    Cancel {
        /// Event set name.
        set: String,
        /// Replay name.
        name: String,
    },
}

const REPLAY_COLUMNS: &[Column] = &[
    Column::new("NAME", "name"),
    Column::new("STATE", "state"),
    Column::new("REPLAYED", "replayed"),
    Column::new("TOTAL", "total"),
    Column::styled("START", "start", CellStyle::TimeMs),
    Column::styled("END", "end", CellStyle::TimeMs),
    Column::new("ERROR", "error"),
];

/// How often a followed replay's status is read.
const POLL: Duration = Duration::from_millis(250);

/// The request body of `replay start`.
pub fn start_body(name: &str, start: u64, end: u64, rules: &[String]) -> Value {
    let mut body = json!({"name": name, "start": start, "end": end});
    if !rules.is_empty() {
        body["rules"] = json!(rules);
    }
    body
}

/// One line about a replay's progress, for the bar's message.
pub fn progress_line(status: &Value) -> String {
    let state = status["state"].as_str().unwrap_or("?");
    let replayed = status["replayed"].as_u64().unwrap_or(0);
    match status["total"].as_u64() {
        Some(total) => format!("{state}: {replayed}/{total} events"),
        None => format!("{state}: counting the window's events"),
    }
}

/// Reads the replay's status until it is no longer running, showing a progress bar on
/// stderr (hidden when stderr is not a terminal); returns the final status.
async fn follow(c: &Client, set: &str, name: &str) -> anyhow::Result<Value> {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    loop {
        let url = c.url(&["v1", "event-sets", set, "replays", name])?;
        let status = c.call_json(Method::GET, url, None).await?;
        if let Some(total) = status["total"].as_u64() {
            bar.set_length(total);
        }
        bar.set_position(status["replayed"].as_u64().unwrap_or(0));
        bar.set_message(progress_line(&status));
        if status["state"] != "running" {
            bar.finish_and_clear();
            return Ok(status);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The exit code for a followed replay's final status.
fn exit_for(status: &Value) -> ExitCode {
    if status["state"] == "completed" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `eventbus replay …`.
pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let out = args.client.output.unwrap_or(OutputFormat::Table);
    let c = Client::new(&args.client)?;
    let show = |v: &Value| match out {
        OutputFormat::Json => client::print_resource(v, out),
        OutputFormat::Table => client::print_list(std::slice::from_ref(v), out, REPLAY_COLUMNS),
    };
    client::block_on(async {
        match &args.command {
            ReplayCommand::Start {
                set,
                name,
                start,
                end,
                rules,
                no_wait,
            } => {
                let body = start_body(
                    name,
                    parse_time_ms_for("--start", start)?,
                    parse_time_ms_for("--end", end)?,
                    rules,
                );
                let url = c.url(&["v1", "event-sets", set, "replays"])?;
                let created = c.call_json(Method::POST, url, Some(&body)).await?;
                if *no_wait {
                    show(&created)?;
                    return Ok(ExitCode::SUCCESS);
                }
                let last = follow(&c, set, name).await?;
                show(&last)?;
                Ok(exit_for(&last))
            }
            ReplayCommand::Status { set, name, watch } => {
                let last = if *watch {
                    follow(&c, set, name).await?
                } else {
                    let url = c.url(&["v1", "event-sets", set, "replays", name])?;
                    c.call_json(Method::GET, url, None).await?
                };
                show(&last)?;
                Ok(if *watch {
                    exit_for(&last)
                } else {
                    ExitCode::SUCCESS
                })
            }
            ReplayCommand::List { set } => {
                let url = c.url(&["v1", "event-sets", set, "replays"])?;
                let answer = c.call_json(Method::GET, url, None).await?;
                client::print_list(
                    &client::list_field(&answer, "replays")?,
                    out,
                    REPLAY_COLUMNS,
                )?;
                Ok(ExitCode::SUCCESS)
            }
            ReplayCommand::Cancel { set, name } => {
                let url = c.url(&["v1", "event-sets", set, "replays", name])?;
                let last = c.call_json(Method::DELETE, url, None).await?;
                show(&last)?;
                Ok(ExitCode::SUCCESS)
            }
        }
    })?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_body_sends_rules_only_when_given() {
        assert_eq!(
            start_body("r1", 5, 9, &[]),
            json!({"name": "r1", "start": 5, "end": 9})
        );
        assert_eq!(
            start_body("r1", 5, 9, &["a".into(), "b".into()]),
            json!({"name": "r1", "start": 5, "end": 9, "rules": ["a", "b"]})
        );
    }

    #[test]
    fn progress_line_says_counting_until_the_total_is_known() {
        assert_eq!(
            progress_line(&json!({"state": "running", "replayed": 0, "total": null})),
            "running: counting the window's events"
        );
        assert_eq!(
            progress_line(&json!({"state": "completed", "replayed": 7, "total": 7})),
            "completed: 7/7 events"
        );
        assert_eq!(exit_for(&json!({"state": "completed"})), ExitCode::SUCCESS);
        assert_eq!(exit_for(&json!({"state": "cancelled"})), ExitCode::FAILURE);
    }
}
