//! Tencent's transformation: `Extraction`, `EtlFilter`, `Transform.OutputStructs`.

use regex::Regex;
use serde_json::{Map, Value};

use super::path::Path;
use super::{
    MAX_OUTPUT_STRUCTS, MAX_REGEX_CHARS, Output, SEPARATORS, compile_path, failed, invalid, member,
    only_known, text_of,
};
use crate::error::Result;
use crate::pattern::Pattern;

/// Seconds east of UTC of the `date` system variable (China Standard Time, UTC+08:00).
const DATE_OFFSET_SECS: i64 = 8 * 3600;

#[derive(Debug, Clone)]
pub(super) struct Tencent {
    input: Path,
    format: Format,
    filter: Option<Pattern>,
    outputs: Option<Vec<OutputStruct>>,
    /// Spec paths, for apply errors.
    input_at: String,
    regex_at: String,
}

#[derive(Debug, Clone)]
enum Format {
    Json,
    Separator(char),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct OutputStruct {
    key: String,
    value: Val,
}

#[derive(Debug, Clone)]
enum Val {
    Const(Value),
    Date,
    Path(Path),
}

impl Tencent {
    pub(super) fn compile(obj: &Map<String, Value>, at: &str) -> Result<Tencent> {
        only_known(obj, &["Extraction", "EtlFilter", "Transform"], at)?;
        let ex_at = member(at, "Extraction");
        let mut input = Path::parse("$").map_err(|m| invalid(&ex_at, m))?;
        let mut format = Format::Json;
        if let Some(ex) = obj.get("Extraction") {
            let Some(ex) = ex.as_object() else {
                return Err(invalid(&ex_at, "must be an object"));
            };
            only_known(ex, &["ExtractionInputPath", "Format", "TextParams"], &ex_at)?;
            if let Some(p) = ex.get("ExtractionInputPath") {
                input = compile_path(p, &member(&ex_at, "ExtractionInputPath"))?;
            }
            let format_at = member(&ex_at, "Format");
            let text = match ex.get("Format") {
                None => false,
                Some(Value::String(f)) if f == "JSON" => false,
                Some(Value::String(f)) if f == "TEXT" => true,
                Some(other) => {
                    return Err(invalid(
                        &format_at,
                        format!("must be \"JSON\" or \"TEXT\", not {other}"),
                    ));
                }
            };
            let tp_at = member(&ex_at, "TextParams");
            match (text, ex.get("TextParams")) {
                (false, None) => {}
                (false, Some(_)) => {
                    return Err(invalid(&tp_at, "TextParams is only for Format \"TEXT\""));
                }
                (true, None) => {
                    return Err(invalid(
                        &tp_at,
                        "Format \"TEXT\" needs TextParams with a Separator or a Regex",
                    ));
                }
                (true, Some(tp)) => format = compile_text_params(tp, &tp_at)?,
            }
        }

        let filter = match obj.get("EtlFilter") {
            None => None,
            Some(f) => Some(compile_filter(f, &member(at, "EtlFilter"))?),
        };

        let outputs = match obj.get("Transform") {
            None => None,
            Some(t) => Some(compile_outputs(t, &member(at, "Transform"))?),
        };

        Ok(Tencent {
            input,
            format,
            filter,
            outputs,
            input_at: member(&ex_at, "ExtractionInputPath"),
            regex_at: member(&member(&ex_at, "TextParams"), "Regex"),
        })
    }

    pub(super) fn apply(&self, event: &Value, now_ms: u64) -> Result<Option<Output>> {
        let Some(selected) = self.input.select(event) else {
            return Err(failed(
                &self.input_at,
                format!("{} matches nothing in the event", self.input.as_str()),
            ));
        };
        let doc = match &self.format {
            Format::Json => parse_embedded_json(selected),
            Format::Separator(sep) => {
                let text = text_of(&selected);
                let fields = text
                    .split(*sep)
                    .enumerate()
                    .map(|(i, piece)| (i.to_string(), Value::String(piece.to_owned())));
                Value::Object(fields.collect())
            }
            Format::Regex(re) => {
                let text = text_of(&selected);
                let Some(caps) = re.captures(&text) else {
                    return Err(failed(
                        &self.regex_at,
                        format!(
                            "the regex {:?} does not match the extracted text",
                            re.as_str()
                        ),
                    ));
                };
                let mut fields = Map::new();
                for (i, group) in caps.iter().enumerate() {
                    let v = group.map_or(Value::Null, |m| Value::String(m.as_str().to_owned()));
                    fields.insert(i.to_string(), v);
                }
                for name in re.capture_names().flatten() {
                    if !fields.contains_key(name) {
                        let v = caps
                            .name(name)
                            .map_or(Value::Null, |m| Value::String(m.as_str().to_owned()));
                        fields.insert(name.to_owned(), v);
                    }
                }
                Value::Object(fields)
            }
        };
        if let Some(filter) = &self.filter
            && !filter.matches(&doc)
        {
            return Ok(None);
        }
        let Some(outputs) = &self.outputs else {
            return Ok(Some(Output::Json(doc)));
        };
        let mut out = Map::with_capacity(outputs.len());
        for o in outputs {
            let v = match &o.value {
                Val::Const(v) => v.clone(),
                Val::Date => Value::String(date(now_ms)),
                Val::Path(p) => p.select(&doc).unwrap_or(Value::Null),
            };
            out.insert(o.key.clone(), v);
        }
        Ok(Some(Output::Json(Value::Object(out))))
    }
}

/// A string holding a JSON object or array becomes that; anything else stays as it is.
fn parse_embedded_json(value: Value) -> Value {
    if let Value::String(s) = &value {
        let t = s.trim_start();
        if (t.starts_with('{') || t.starts_with('['))
            && let Ok(parsed) = serde_json::from_str::<Value>(s)
        {
            return parsed;
        }
    }
    value
}

/// `now_ms` as RFC 3339 at UTC+08:00, to the second.
fn date(now_ms: u64) -> String {
    let shifted = i64::try_from(now_ms / 1000)
        .unwrap_or(0)
        .saturating_add(DATE_OFFSET_SECS);
    let dt = chrono::DateTime::from_timestamp(shifted, 0).unwrap_or_default();
    format!("{}+08:00", dt.format("%Y-%m-%dT%H:%M:%S"))
}

fn compile_text_params(tp: &Value, at: &str) -> Result<Format> {
    let Some(tp) = tp.as_object() else {
        return Err(invalid(at, "must be an object"));
    };
    only_known(tp, &["Separator", "Regex"], at)?;
    match (tp.get("Separator"), tp.get("Regex")) {
        (Some(_), Some(_)) => Err(invalid(at, "give either a Separator or a Regex, not both")),
        (None, None) => Err(invalid(at, "needs a Separator or a Regex")),
        (Some(sep), None) => {
            let sep_at = member(at, "Separator");
            let Some(s) = sep.as_str() else {
                return Err(invalid(&sep_at, "must be a string of one character"));
            };
            let c = match s {
                "\\t" => '\t',
                "\\n" => '\n',
                _ => {
                    let mut chars = s.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => c,
                        _ => {
                            return Err(invalid(
                                &sep_at,
                                format!("must be one character, not {s:?}"),
                            ));
                        }
                    }
                }
            };
            if !SEPARATORS.contains(&c) {
                return Err(invalid(
                    &sep_at,
                    format!(
                        "{s:?} is not a supported separator (comma, |, tab, space, newline, %, #)"
                    ),
                ));
            }
            Ok(Format::Separator(c))
        }
        (None, Some(re)) => {
            let re_at = member(at, "Regex");
            let Some(s) = re.as_str() else {
                return Err(invalid(&re_at, "must be a string"));
            };
            if s.is_empty() {
                return Err(invalid(&re_at, "must not be empty"));
            }
            let n = s.chars().count();
            if n > MAX_REGEX_CHARS {
                return Err(invalid(
                    &re_at,
                    format!("{n} characters; at most {MAX_REGEX_CHARS} are allowed"),
                ));
            }
            let re = Regex::new(s).map_err(|e| invalid(&re_at, format!("invalid regex: {e}")))?;
            Ok(Format::Regex(re))
        }
    }
}

fn compile_filter(f: &Value, at: &str) -> Result<Pattern> {
    let Some(f) = f.as_object() else {
        return Err(invalid(at, "must be an object with a Filter"));
    };
    only_known(f, &["Filter"], at)?;
    let filter_at = member(at, "Filter");
    match f.get("Filter") {
        None => Err(invalid(
            &filter_at,
            "missing: the event pattern (JSON text)",
        )),
        Some(Value::String(text)) => Pattern::parse_str(text).map_err(|e| {
            invalid(
                &filter_at,
                format!("invalid event pattern at {}: {}", e.path, e.message),
            )
        }),
        Some(obj @ Value::Object(_)) => {
            Pattern::parse(obj).map_err(|e| invalid(&e.path_under(&filter_at), e.message))
        }
        Some(other) => Err(invalid(
            &filter_at,
            format!("must be an event pattern as JSON text, not {other}"),
        )),
    }
}

fn compile_outputs(t: &Value, at: &str) -> Result<Vec<OutputStruct>> {
    let Some(t) = t.as_object() else {
        return Err(invalid(at, "must be an object with OutputStructs"));
    };
    only_known(t, &["OutputStructs"], at)?;
    let list_at = member(at, "OutputStructs");
    let Some(list) = t.get("OutputStructs") else {
        return Err(invalid(&list_at, "missing"));
    };
    let Some(list) = list.as_array() else {
        return Err(invalid(&list_at, "must be an array"));
    };
    if list.is_empty() {
        return Err(invalid(&list_at, "needs at least one entry"));
    }
    if list.len() > MAX_OUTPUT_STRUCTS {
        return Err(invalid(
            &list_at,
            format!(
                "{} entries; at most {MAX_OUTPUT_STRUCTS} are allowed",
                list.len()
            ),
        ));
    }
    let mut outputs: Vec<OutputStruct> = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let item_at = format!("{list_at}[{i}]");
        let Some(item) = item.as_object() else {
            return Err(invalid(
                &item_at,
                "must be an object {Key, Value, ValueType}",
            ));
        };
        only_known(item, &["Key", "Value", "ValueType"], &item_at)?;
        let key_at = member(&item_at, "Key");
        let key = match item.get("Key") {
            Some(Value::String(k)) if !k.is_empty() => k.clone(),
            Some(Value::String(_)) => return Err(invalid(&key_at, "must not be empty")),
            None => return Err(invalid(&key_at, "missing")),
            Some(_) => return Err(invalid(&key_at, "must be a string")),
        };
        if outputs.iter().any(|o| o.key == key) {
            return Err(invalid(&key_at, format!("duplicate Key {key:?}")));
        }
        let vt_at = member(&item_at, "ValueType");
        let vt = match item.get("ValueType") {
            Some(Value::String(vt)) => vt.as_str(),
            None => return Err(invalid(&vt_at, "missing")),
            Some(_) => return Err(invalid(&vt_at, "must be a string")),
        };
        const TYPES: &[&str] = &[
            "STRING",
            "NUMBER",
            "BOOLEAN",
            "NULL",
            "SYS_VARIABLE",
            "JSONPATH",
        ];
        if !TYPES.contains(&vt) {
            return Err(invalid(
                &vt_at,
                format!(
                    "unknown ValueType {vt:?}; expected one of {}",
                    TYPES.join(", ")
                ),
            ));
        }
        let value_at = member(&item_at, "Value");
        let raw = item.get("Value");
        if vt == "NULL" {
            outputs.push(OutputStruct {
                key,
                value: Val::Const(Value::Null),
            });
            continue;
        }
        let text = match raw {
            Some(Value::String(s)) => s.as_str(),
            None => return Err(invalid(&value_at, format!("missing (needed by {vt})"))),
            Some(_) => return Err(invalid(&value_at, "must be a string")),
        };
        let value = match vt {
            "STRING" => Val::Const(Value::String(text.to_owned())),
            "NUMBER" => {
                let n = (text == text.trim())
                    .then(|| serde_json::from_str::<Value>(text).ok())
                    .flatten()
                    .filter(Value::is_number);
                match n {
                    Some(n) => Val::Const(n),
                    None => return Err(invalid(&value_at, format!("{text:?} is not a number"))),
                }
            }
            "BOOLEAN" => match text {
                "true" => Val::Const(Value::Bool(true)),
                "false" => Val::Const(Value::Bool(false)),
                _ => {
                    return Err(invalid(
                        &value_at,
                        format!("{text:?} is not a boolean (\"true\" or \"false\")"),
                    ));
                }
            },
            "SYS_VARIABLE" => {
                let name = text.strip_prefix("$.").unwrap_or(text);
                if name.eq_ignore_ascii_case("date") {
                    Val::Date
                } else {
                    return Err(invalid(
                        &value_at,
                        format!("unknown system variable {text:?}; supported: date"),
                    ));
                }
            }
            // "JSONPATH", the only type left.
            _ => Val::Path(compile_path(&Value::String(text.to_owned()), &value_at)?),
        };
        outputs.push(OutputStruct { key, value });
    }
    Ok(outputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_is_cst_rfc3339() {
        // 2021-11-20T06:16:06Z
        assert_eq!(date(1_637_388_966_000), "2021-11-20T14:16:06+08:00");
        assert_eq!(date(1_637_388_966_999), "2021-11-20T14:16:06+08:00");
        assert_eq!(date(0), "1970-01-01T08:00:00+08:00");
    }

    #[test]
    fn embedded_json_only_objects_and_arrays() {
        use serde_json::json;
        assert_eq!(parse_embedded_json(json!("{\"a\":1}")), json!({"a": 1}));
        assert_eq!(parse_embedded_json(json!(" [1]")), json!([1]));
        assert_eq!(parse_embedded_json(json!("32")), json!("32"));
        assert_eq!(parse_embedded_json(json!("{not json")), json!("{not json"));
        assert_eq!(parse_embedded_json(json!({"a": "{}"})), json!({"a": "{}"}));
    }
}
