//! `eventbus transform check`: try a rule's transformation on events offline, one JSON line in,
//! one JSON line out (the CLI counterpart of `POST /v1/test/transform`).

use std::io::{self, BufRead, Write};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::pattern::{answer_lines, json_field};
use crate::error::Error;
use crate::transform::{Output, Transform};

const CHECK_HELP: &str = "\
Reads JSON lines from stdin, each {\"transform\": …, \"event\": …}, and writes one line per
input line, in order:
  {\"output\":…}   the transformation's output (a text output as a JSON string)
  {\"dropped\":true}   the EtlFilter dropped the event (the target would not get it)
  {\"error\":\"…\",\"code\":\"…\",\"path\":\"$.transform.…\"}   a bad transformation (the path of
                   the problem, as creating the rule would report it) or one that cannot be
                   applied to this event
A bad line never stops the batch; blank lines are skipped. The transformation and the event
may each be a JSON object or a string holding JSON text. With --transform, every input line
is just an event. SYS_VARIABLE date is the current time.

Exit status: 0 when every line was answered (errors included); 1 when stdin or stdout fails,
or --transform is invalid.

Examples:
  echo '{\"transform\":{\"input_path\":\"$.data\"},\"event\":{\"data\":{\"a\":1}}}' \\
    | eventbus transform check
  eventbus transform check --transform '{\"Transform\":{\"OutputStructs\":[
      {\"Key\":\"host\",\"Value\":\"$.subject\",\"ValueType\":\"JSONPATH\"}]}}' < events.jsonl";

/// `eventbus transform …`.
#[derive(Debug, Args)]
pub struct TransformArgs {
    #[command(subcommand)]
    pub command: TransformCommand,
}

/// Transformation subcommands.
#[derive(Debug, Subcommand)]
pub enum TransformCommand {
    /// Apply JSON lines {"transform","event"} from stdin; one result line per input.
    #[command(after_help = CHECK_HELP)]
    Check(CheckArgs),
}

/// `eventbus transform check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Apply this one transformation (JSON text) to every input line (an event).
    #[arg(long)]
    pub transform: Option<String>,
}

/// Runs `eventbus transform …`.
pub fn run(args: TransformArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        TransformCommand::Check(a) => {
            let fixed = match &a.transform {
                Some(text) => {
                    let spec: Value = serde_json::from_str(text)
                        .map_err(|e| anyhow::anyhow!("--transform: not JSON: {e}"))?;
                    Some(
                        Transform::compile_under(&spec, "$.transform")
                            .map_err(|e| anyhow::anyhow!("--transform: {}", describe(&e)))?,
                    )
                }
                None => None,
            };
            check(io::stdin().lock(), io::stdout().lock(), fixed.as_ref())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Answers every line of `input` on `output`. Only I/O errors end it early.
pub fn check(
    input: impl BufRead,
    output: impl Write,
    fixed: Option<&Transform>,
) -> anyhow::Result<()> {
    // The last transformation compiled, with the value it came from: batches usually repeat one.
    let mut cached: Option<(Value, Result<Transform, Value>)> = None;
    answer_lines(input, output, |line| {
        answer(line, fixed, &mut cached).unwrap_or_else(|e| e)
    })
}

/// The error line of a refusal: message, and code and path when it has them.
fn error_line(e: &Error) -> Value {
    match e {
        Error::Rejected {
            code,
            message,
            path,
            ..
        } => {
            let mut v = json!({"error": message, "code": code});
            if let Some(p) = path {
                v["path"] = json!(p);
            }
            v
        }
        other => json!({"error": other.to_string()}),
    }
}

fn describe(e: &Error) -> String {
    match e {
        Error::Rejected {
            message,
            path: Some(p),
            ..
        } => format!("{p}: {message}"),
        other => other.to_string(),
    }
}

fn answer(
    line: &str,
    fixed: Option<&Transform>,
    cached: &mut Option<(Value, Result<Transform, Value>)>,
) -> Result<Value, Value> {
    let bad = |m: String| json!({ "error": m });
    let input: Value =
        serde_json::from_str(line).map_err(|e| bad(format!("the line is not JSON: {e}")))?;
    let (transform, event) = match fixed {
        Some(t) => (t, input),
        None => {
            let Value::Object(mut obj) = input else {
                return Err(bad(
                    "expected an object {\"transform\": …, \"event\": …}".into()
                ));
            };
            let spec = obj
                .remove("transform")
                .ok_or_else(|| bad("missing field \"transform\"".into()))?;
            let event = obj
                .remove("event")
                .ok_or_else(|| bad("missing field \"event\"".into()))?;
            if cached.as_ref().is_none_or(|(k, _)| *k != spec) {
                let compiled = json_field(&spec, "transform").map_err(bad).and_then(|s| {
                    Transform::compile_under(&s, "$.transform").map_err(|e| error_line(&e))
                });
                *cached = Some((spec, compiled));
            }
            let Some((_, compiled)) = cached.as_ref() else {
                unreachable!("cache filled above")
            };
            let t = compiled.as_ref().map_err(Clone::clone)?;
            (t, json_field(&event, "event").map_err(bad)?)
        }
    };
    if !event.is_object() {
        return Err(bad("event: must be a JSON object".into()));
    }
    match transform.apply(&event, crate::config::now_ms()) {
        Ok(Some(Output::Json(v))) => Ok(json!({ "output": v })),
        Ok(Some(Output::Text(s))) => Ok(json!({ "output": s })),
        Ok(None) => Ok(json!({ "dropped": true })),
        Err(e) => Err(error_line(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_check(input: &str, fixed: Option<&Transform>) -> Vec<Value> {
        let mut out = Vec::new();
        check(input.as_bytes(), &mut out, fixed).unwrap();
        String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn transform_check_answers_every_line_with_output_drop_or_error() {
        let input = r#"{"transform":{"input_path":"$.data"},"event":{"data":{"a":1}}}
{"transform":{"EtlFilter":{"Filter":"{\"a\":[2]}"}},"event":{"a":1}}
{"transform":{"EtlFilter":{"Filter":"{\"a\":[2]}"}},"event":{"a":2}}
not json

{"transform":{"Transform":{"OutputStructs":[{"Key":"k","Value":"x","ValueType":"NOPE"}]}},"event":{}}
{"transform":{"Extraction":{"ExtractionInputPath":"$.missing"}},"event":{"a":1}}
{"transform":"{\"input_transformer\":{\"input_paths_map\":{\"s\":\"$.subject\"},\"input_template\":\"host <s>\"}}","event":{"subject":"ins-1"}}
{"event":{"a":1}}
"#;
        let out = run_check(input, None);
        assert_eq!(out.len(), 8, "{out:?}");
        assert_eq!(out[0], json!({"output": {"a": 1}}));
        assert_eq!(out[1], json!({"dropped": true}));
        assert_eq!(out[2], json!({"output": {"a": 2}}));
        assert!(out[3]["error"].as_str().unwrap().contains("not JSON"));
        assert_eq!(
            out[4]["path"],
            "$.transform.Transform.OutputStructs[0].ValueType"
        );
        assert_eq!(out[4]["code"], crate::transform::INVALID_TRANSFORM);
        assert_eq!(out[5]["code"], crate::transform::TRANSFORM_FAILED);
        assert_eq!(out[6], json!({"output": "host ins-1"}));
        assert!(out[7]["error"].as_str().unwrap().contains("transform"));
    }

    #[test]
    fn transform_check_fixed_transform_takes_events_only() {
        let t = Transform::compile(&json!({"input_path": "$.n"})).unwrap();
        let out = run_check("{\"n\":6}\n[1]\n", Some(&t));
        assert_eq!(out[0], json!({"output": 6}));
        assert!(out[1]["error"].as_str().unwrap().contains("JSON object"));
    }
}
