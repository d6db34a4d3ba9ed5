//! `eventbus pattern check`: test event patterns against events offline, one JSON line in,
//! one JSON line out.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::pattern::Pattern;

const CHECK_HELP: &str = "\
Reads JSON lines from stdin, each {\"pattern\": …, \"event\": …}, and writes one line per
input line, in order:
  {\"matched\":true}   {\"matched\":false}   or   {\"error\":\"…\"}
A bad line (not JSON, no pattern, a pattern the engine rejects, an event that is not a JSON
object) gets its own error line; the batch never stops. Blank lines are skipped. The pattern
and the event may each be a JSON object or a string holding JSON text. With --pattern, every
input line is just an event, matched against that one pattern.

Exit status: 0 when every line was answered (errors included); 1 when stdin or stdout fails,
or --pattern is invalid.

Examples:
  echo '{\"pattern\":{\"source\":[\"cvm.cloud.tencent\"]},\"event\":{\"source\":\"cvm.cloud.tencent\"}}' \\
    | eventbus pattern check
  eventbus pattern check --pattern '{\"data\":{\"ip\":[{\"cidr\":\"10.0.0.0/8\"}]}}' < events.jsonl";

/// `eventbus pattern …`.
#[derive(Debug, Args)]
pub struct PatternArgs {
    #[command(subcommand)]
    pub command: PatternCommand,
}

/// Pattern subcommands.
#[derive(Debug, Subcommand)]
pub enum PatternCommand {
    /// Match JSON lines {"pattern","event"} from stdin; one result line per input.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
}

/// `eventbus pattern check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Match every input line (an event) against this one pattern (JSON text).
    #[arg(long)]
    pub pattern: Option<String>,
}

/// Runs `eventbus pattern …`.
pub fn run(args: PatternArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        PatternCommand::Check(a) => {
            let fixed = match &a.pattern {
                Some(text) => {
                    Some(Pattern::parse_str(text).map_err(|e| anyhow::anyhow!("--pattern: {e}"))?)
                }
                None => None,
            };
            let stdin = io::stdin().lock();
            let stdout = io::stdout().lock();
            check(stdin, stdout, fixed.as_ref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Answers every line of `input` on `output`. Only I/O errors end it early.
pub fn check(
    input: impl BufRead,
    output: impl Write,
    fixed: Option<&Pattern>,
) -> anyhow::Result<()> {
    // The last pattern compiled, with the value it came from: batches usually repeat one.
    let mut cached: Option<(Value, Result<Pattern, String>)> = None;
    answer_lines(input, output, |line| {
        match answer(line, fixed, &mut cached) {
            Ok(matched) => json!({ "matched": matched }),
            Err(e) => json!({ "error": e }),
        }
    })
}

/// Writes `answer(line)` as one JSON line for every non-blank line of `input`, in order (the
/// driver of `pattern check` and `transform check`). Only I/O errors end it early.
pub(crate) fn answer_lines(
    mut input: impl BufRead,
    output: impl Write,
    mut answer: impl FnMut(&str) -> Value,
) -> anyhow::Result<()> {
    let mut out = BufWriter::new(output);
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).context("reading stdin")? == 0 {
            break;
        }
        if line.trim().is_empty() {
            continue;
        }
        serde_json::to_writer(&mut out, &answer(&line)).context("writing stdout")?;
        out.write_all(b"\n").context("writing stdout")?;
        // Keep interactive use (and pipes that wait for each answer) responsive: flush
        // whenever no further input is already buffered.
        if input.fill_buf().map(|b| b.is_empty()).unwrap_or(true) {
            out.flush().context("writing stdout")?;
        }
    }
    out.flush().context("writing stdout")?;
    Ok(())
}

/// A field given as a JSON value or as a string of JSON text.
pub(crate) fn json_field(v: &Value, name: &str) -> Result<Value, String> {
    match v {
        Value::String(text) => serde_json::from_str(text)
            .map_err(|e| format!("{name}: a string must hold JSON text: {e}")),
        other => Ok(other.clone()),
    }
}

fn answer(
    line: &str,
    fixed: Option<&Pattern>,
    cached: &mut Option<(Value, Result<Pattern, String>)>,
) -> Result<bool, String> {
    let input: Value =
        serde_json::from_str(line).map_err(|e| format!("the line is not JSON: {e}"))?;
    let (pattern, event) = match fixed {
        Some(p) => (p, input),
        None => {
            let Value::Object(mut obj) = input else {
                return Err("expected an object {\"pattern\": …, \"event\": …}".into());
            };
            let pattern = obj.remove("pattern").ok_or("missing field \"pattern\"")?;
            let event = obj.remove("event").ok_or("missing field \"event\"")?;
            if cached.as_ref().is_none_or(|(k, _)| *k != pattern) {
                let compiled = json_field(&pattern, "pattern")
                    .and_then(|p| Pattern::parse(&p).map_err(|e| format!("pattern: {e}")));
                *cached = Some((pattern, compiled));
            }
            let Some((_, compiled)) = cached.as_ref() else {
                unreachable!("cache filled above")
            };
            let pattern = compiled.as_ref().map_err(Clone::clone)?;
            (pattern, json_field(&event, "event")?)
        }
    };
    if !event.is_object() {
        return Err("event: must be a JSON object".into());
    }
    Ok(pattern.matches(&event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_check(input: &str, fixed: Option<&Pattern>) -> Vec<Value> {
        let mut out = Vec::new();
        check(input.as_bytes(), &mut out, fixed).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn one_answer_per_line_and_errors_do_not_stop_the_batch() {
        let input = r#"{"pattern":{"a":["x"]},"event":{"a":"x"}}
{"pattern":{"a":["x"]},"event":{"a":"y"}}
not json

{"pattern":{"a":[{"nope":1}]},"event":{"a":"x"}}
{"pattern":"{\"a\":[{\"prefix\":\"x\"}]}","event":"{\"a\":\"xyz\"}"}
{"pattern":{"a":["x"]},"event":[1]}
{"event":{"a":"x"}}
{"pattern":{"a":["x"]},"event":{"a":"x"}}
"#;
        let out = run_check(input, None);
        assert_eq!(out.len(), 8, "{out:?}");
        assert_eq!(out[0], json!({"matched": true}));
        assert_eq!(out[1], json!({"matched": false}));
        assert!(out[2]["error"].as_str().unwrap().contains("not JSON"));
        let e = out[3]["error"].as_str().unwrap();
        assert!(
            e.contains("$.a[0].nope") && e.contains("unknown operator"),
            "{e}"
        );
        assert_eq!(out[4], json!({"matched": true}));
        assert!(out[5]["error"].as_str().unwrap().contains("JSON object"));
        assert!(out[6]["error"].as_str().unwrap().contains("pattern"));
        assert_eq!(out[7], json!({"matched": true}));
    }

    #[test]
    fn fixed_pattern_takes_events_only() {
        let p = Pattern::parse_str(r#"{"n":[{"numeric":[">",5]}]}"#).unwrap();
        let out = run_check("{\"n\":6}\n{\"n\":5}\n{\"n\":\"6\"}\n", Some(&p));
        assert_eq!(
            out,
            [
                json!({"matched": true}),
                json!({"matched": false}),
                json!({"matched": false})
            ]
        );
    }
}
