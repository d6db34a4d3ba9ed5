//! Event transformations: what a rule's `transform` does to an event between the match and
//! the target.
//!
//! [`Transform::compile`] validates a rule's `transform` JSON once (every JSONPath, regex and
//! filter pattern is compiled then); [`Transform::apply`] runs it on one event, given as the
//! CloudEvents JSON that [`crate::Event::to_json`] produces.
//!
//! Two forms are accepted; which one is meant is decided by the keys of the object.
//!
//! # Tencent form (`Extraction` / `EtlFilter` / `Transform`)
//!
//! ```json
//! {"Extraction": {"ExtractionInputPath": "$.data.msgBody", "Format": "JSON"},
//!  "EtlFilter": {"Filter": "{\"city\":[{\"contain\":\"shen\"}]}"},
//!  "Transform": {"OutputStructs": [
//!     {"Key": "city",  "Value": "$.city", "ValueType": "JSONPATH"},
//!     {"Key": "const", "Value": "11",     "ValueType": "NUMBER"},
//!     {"Key": "sdate", "Value": "date",   "ValueType": "SYS_VARIABLE"}]}}
//! ```
//!
//! 1. **Extraction** (optional; default `{"ExtractionInputPath": "$", "Format": "JSON"}`):
//!    `ExtractionInputPath` selects the document the rest works on. It must match: an event
//!    where it matches nothing fails with [`TRANSFORM_FAILED`].
//!    - `Format: "JSON"`: a selected *string* that holds a JSON object or array is parsed
//!      (`"{\"city\":…}"` becomes an object); any other value is kept as it is (a string
//!      `"32"` stays a string). `TextParams` is refused with JSON.
//!    - `Format: "TEXT"`: the selected value as text (a string's content, else its JSON text)
//!      becomes an object of string fields, addressed as `$.0`, `$.1`, … (see "JSONPaths" below on how
//!      `$.0` reads): with `TextParams.Separator` (one of [`SEPARATORS`]; the two-character
//!      escapes `\t` and `\n` are accepted too) field `n` is the `n`-th piece of the split;
//!      with `TextParams.Regex` (at most [`MAX_REGEX_CHARS`] characters, Rust `regex`
//!      syntax, searched anywhere in the text) field `"0"` is the whole first match and
//!      `"1"`, `"2"`, … the capture groups (a group that took no part is `null`), and a named
//!      group `(?P<name>…)` is also available as `$.name`. Text that the regex does not match
//!      fails the event with [`TRANSFORM_FAILED`] rather than dropping it silently.
//! 2. **EtlFilter** (optional): `{"Filter": "<pattern JSON text>"}` (a pattern object is
//!    accepted too), the same syntax as rule patterns ([`crate::pattern::Pattern`]), matched
//!    against the *extracted* document. No match: [`Transform::apply`] returns `Ok(None)`
//!    and the event is dropped for this rule.
//! 3. **Transform** (optional): `OutputStructs`, 1 to [`MAX_OUTPUT_STRUCTS`] entries
//!    `{Key, Value, ValueType}` with distinct keys, building one JSON object (in their order):
//!    - `STRING`: `Value` as it is; `NUMBER`: `Value` parsed as a JSON number (`"11"` → `11`);
//!      `BOOLEAN`: `"true"` or `"false"`; `NULL`: `null` (`Value` may be left out);
//!    - `SYS_VARIABLE`: `Value` `date` (also written `$.date`, any case): the time given to
//!      [`Transform::apply`] as RFC 3339 in China Standard Time, to the second
//!      (`2021-11-20T14:16:06+08:00`, as in Tencent's example and API timestamps);
//!    - `JSONPATH`: `Value` is a JSONPath on the extracted document; when it matches nothing
//!      the key gets `null` (the output keeps its shape).
//!
//!    Without `Transform` the output is the extracted (and, for TEXT, split) document.
//!
//! The output is always [`Output::Json`]. Unknown fields are refused, so a misspelt key
//! (`OutPutStructs`) is an error instead of a silently ignored setting.
//!
//! # EventBridge form (`input_path` / `input_transformer`)
//!
//! - `{"input_path": "$.data"}`: the output is the value at the path, or JSON `null` when it
//!   matches nothing.
//! - `{"input_transformer": {"input_paths_map": {"name": "$.path", …}, "input_template": "…"}}`:
//!   up to [`MAX_INPUT_PATHS`] variables; names are letters, digits, `_`, `-` and `.` and may
//!   not start with `aws.`; the template has 1 to [`MAX_TEMPLATE_CHARS`] characters and
//!   refers to variables as `<name>`. Besides the map, the reserved `<aws.events.event>`
//!   (the event without `data`, the CloudEvents counterpart of "without `detail`") and
//!   `<aws.events.event.json>` (the whole event) are available. A `<word>` that names no
//!   variable is refused at compile time (it is most likely a typo).
//!
//!   Whether the template is JSON is decided once, at compile time: it is JSON when it
//!   parses as JSON with its placeholders filled in. Then a placeholder inside a JSON string
//!   is replaced by the value's text (a string's content, anything else its JSON text),
//!   **escaped** for the string (EventBridge does not escape; we always produce valid JSON),
//!   and a bare placeholder by the value's JSON (a string keeps its quotes); the output is
//!   [`Output::Json`]. Otherwise the template is text: each placeholder becomes the value's
//!   text (strings without quotes) and the output is [`Output::Text`]. Deciding at compile
//!   time keeps the output kind of a rule stable whatever the event holds.
//!
//!   A path that matches nothing yields `null` for a bare JSON placeholder and the empty
//!   string inside a JSON string or in a text template.
//! - At most one of `input_path` and `input_transformer`; the two forms do not mix.
//!
//! # JSONPaths
//!
//! RFC 9535 (the `serde_json_path` crate), compiled at compile time, plus the loose dot
//! notation users write: a dot segment whose name RFC 9535 does not allow after a dot
//! (`$.detail.instance-id`, `$.0`) is read as a member name, as if written in brackets
//! (`$.detail['instance-id']`, `$['0']`); so `$.0` names the member `"0"`, never array
//! index 0 (write `$[0]` for that). A path without wildcards, slices, unions, filters or
//! `..` gives the one node it selects; any other path gives the array of all its nodes.
//!
//! # Errors
//!
//! Compile errors are [`Error::Rejected`] with code [`INVALID_TRANSFORM`] and the JSON path of
//! the offending field inside the spec (`$.Transform.OutputStructs[1].ValueType`);
//! [`Transform::compile_under`] puts them under a prefix such as `$.transform`. Apply errors
//! are [`Error::Rejected`] with code [`TRANSFORM_FAILED`] and the path of the spec field that
//! could not be applied (`$.Extraction.TextParams.Regex`).

mod eventbridge;
mod path;
mod tencent;

use serde_json::Value;

use crate::error::{Error, RejectKind, Result};

/// The code of a refused transformation spec (Tencent's code for CreateTransformation).
pub const INVALID_TRANSFORM: &str = "InvalidParameterValue.Transformations";
/// The code of an event that a valid transformation could not be applied to.
pub const TRANSFORM_FAILED: &str = "FailedOperation.Transformation";
/// Most `OutputStructs` entries in one transformation (our limit; Tencent documents none).
pub const MAX_OUTPUT_STRUCTS: usize = 100;
/// Longest `TextParams.Regex`, in characters (Tencent's limit).
pub const MAX_REGEX_CHARS: usize = 128;
/// The separators Tencent offers for TEXT extraction: comma, `|`, tab, space, newline, `%`, `#`.
pub const SEPARATORS: &[char] = &[',', '|', '\t', ' ', '\n', '%', '#'];
/// Most entries in `input_paths_map` (EventBridge's limit).
pub const MAX_INPUT_PATHS: usize = 100;
/// Longest `input_template`, in characters (EventBridge's limit).
pub const MAX_TEMPLATE_CHARS: usize = 8192;

/// A validated, compiled transformation.
#[derive(Debug, Clone)]
pub struct Transform {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Tencent(Box<tencent::Tencent>),
    EventBridge(eventbridge::EventBridge),
}

/// What a transformation makes of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A JSON document (delivered as JSON).
    Json(Value),
    /// Plain text (an EventBridge template that is not JSON).
    Text(String),
}

impl Output {
    /// The body to deliver: compact JSON text, or the text itself.
    pub fn to_body(&self) -> String {
        match self {
            Output::Json(v) => v.to_string(),
            Output::Text(s) => s.clone(),
        }
    }
}

impl Transform {
    /// Validates and compiles a rule's `transform` JSON (either form, see the module docs).
    /// Errors name the JSON path of the problem relative to the spec (`$.Extraction.Format`).
    pub fn compile(spec: &Value) -> Result<Transform> {
        Transform::compile_under(spec, "$")
    }

    /// [`Transform::compile`] for a spec found at `prefix` in a larger document: with
    /// `prefix = "$.transform"` errors name `$.transform.Extraction.Format`.
    pub fn compile_under(spec: &Value, prefix: &str) -> Result<Transform> {
        let Some(obj) = spec.as_object() else {
            return Err(invalid(prefix, "the transformation must be a JSON object"));
        };
        let eventbridge = obj.contains_key("input_path") || obj.contains_key("input_transformer");
        let kind = if eventbridge {
            Kind::EventBridge(eventbridge::EventBridge::compile(obj, prefix)?)
        } else {
            Kind::Tencent(Box::new(tencent::Tencent::compile(obj, prefix)?))
        };
        Ok(Transform { kind })
    }

    /// Applies the transformation to one event (its CloudEvents JSON). `now_ms` (Unix
    /// milliseconds) is what the `date` system variable shows.
    ///
    /// `Ok(None)`: an `EtlFilter` dropped the event. `Err` ([`TRANSFORM_FAILED`]): the event
    /// cannot be transformed (the extraction path matches nothing, the regex does not match).
    pub fn apply(&self, event: &Value, now_ms: u64) -> Result<Option<Output>> {
        match &self.kind {
            Kind::Tencent(t) => t.apply(event, now_ms),
            Kind::EventBridge(t) => Ok(Some(t.apply(event))),
        }
    }
}

/// A refused spec: [`INVALID_TRANSFORM`] at `path`.
fn invalid(path: &str, message: impl Into<String>) -> Error {
    Error::rejected(RejectKind::Invalid, INVALID_TRANSFORM, Some(path), message)
}

/// An event the transformation cannot be applied to: [`TRANSFORM_FAILED`] at `path`.
fn failed(path: &str, message: impl Into<String>) -> Error {
    Error::rejected(RejectKind::Invalid, TRANSFORM_FAILED, Some(path), message)
}

/// `base.key`, or `base['key']` when the key is not a plain name.
fn member(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{base}.{key}")
    } else {
        format!("{base}[{}]", Value::String(key.to_owned()))
    }
}

/// A JSONPath string field at `path`, compiled.
fn compile_path(value: &Value, path: &str) -> Result<path::Path> {
    let Some(text) = value.as_str() else {
        return Err(invalid(path, "must be a JSONPath string"));
    };
    path::Path::parse(text).map_err(|m| invalid(path, m))
}

/// Refuses any key of `obj` not in `known`.
fn only_known(obj: &serde_json::Map<String, Value>, known: &[&str], at: &str) -> Result<()> {
    for key in obj.keys() {
        if !known.contains(&key.as_str()) {
            return Err(invalid(
                &member(at, key),
                format!(
                    "unknown field {key:?}; expected one of {}",
                    known.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The text of a value: a string's content, anything else its JSON text.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn member_paths() {
        assert_eq!(member("$", "Extraction"), "$.Extraction");
        assert_eq!(member("$.m", "a b"), "$.m[\"a b\"]");
        assert_eq!(member("$.m", "a.b"), "$.m[\"a.b\"]");
    }

    #[test]
    fn compile_under_prefixes_error_paths() {
        let e = Transform::compile_under(&json!({"Extraction": {"Format": "XML"}}), "$.transform")
            .unwrap_err();
        assert!(
            matches!(&e, Error::Rejected { path: Some(p), .. } if p == "$.transform.Extraction.Format"),
            "{e:?}"
        );
    }

    #[test]
    fn output_body() {
        assert_eq!(Output::Json(json!({"a": 1})).to_body(), r#"{"a":1}"#);
        assert_eq!(Output::Text("hi".into()).to_body(), "hi");
    }
}
