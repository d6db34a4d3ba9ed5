//! EventBridge's target input: `input_path` or `input_transformer`.

use serde_json::{Map, Value};

use super::path::Path;
use super::{
    MAX_INPUT_PATHS, MAX_TEMPLATE_CHARS, Output, compile_path, invalid, member, only_known, text_of,
};
use crate::error::Result;

/// The event without `data` (EventBridge: the event without `detail`).
const RESERVED_EVENT: &str = "aws.events.event";
/// The whole event.
const RESERVED_EVENT_JSON: &str = "aws.events.event.json";

#[derive(Debug, Clone)]
pub(super) enum EventBridge {
    InputPath(Path),
    Template(Template),
}

#[derive(Debug, Clone)]
pub(super) struct Template {
    /// The `input_paths_map` variables, in map order.
    vars: Vec<Path>,
    pieces: Vec<Piece>,
    /// The template is JSON (decided at compile time).
    json: bool,
}

#[derive(Debug, Clone)]
enum Piece {
    Lit(String),
    Var { var: Var, in_string: bool },
}

#[derive(Debug, Clone, Copy)]
enum Var {
    /// Index into `vars`.
    Path(usize),
    Event,
    EventJson,
}

impl EventBridge {
    pub(super) fn compile(obj: &Map<String, Value>, at: &str) -> Result<EventBridge> {
        only_known(obj, &["input_path", "input_transformer"], at)?;
        match (obj.get("input_path"), obj.get("input_transformer")) {
            (Some(_), Some(_)) => Err(invalid(
                &member(at, "input_transformer"),
                "give at most one of input_path and input_transformer",
            )),
            (Some(p), None) => Ok(EventBridge::InputPath(compile_path(
                p,
                &member(at, "input_path"),
            )?)),
            (None, Some(t)) => Ok(EventBridge::Template(Template::compile(
                t,
                &member(at, "input_transformer"),
            )?)),
            (None, None) => Err(invalid(at, "needs input_path or input_transformer")),
        }
    }

    pub(super) fn apply(&self, event: &Value) -> Output {
        match self {
            EventBridge::InputPath(p) => Output::Json(p.select(event).unwrap_or(Value::Null)),
            EventBridge::Template(t) => t.apply(event),
        }
    }
}

/// Whether `c` may appear in a variable name (and so in a `<placeholder>`).
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

impl Template {
    fn compile(t: &Value, at: &str) -> Result<Template> {
        let Some(t) = t.as_object() else {
            return Err(invalid(
                at,
                "must be an object {input_paths_map, input_template}",
            ));
        };
        only_known(t, &["input_paths_map", "input_template"], at)?;

        let map_at = member(at, "input_paths_map");
        let mut names: Vec<&str> = Vec::new();
        let mut vars = Vec::new();
        match t.get("input_paths_map") {
            None => {}
            Some(Value::Object(map)) => {
                if map.len() > MAX_INPUT_PATHS {
                    return Err(invalid(
                        &map_at,
                        format!("{} paths; at most {MAX_INPUT_PATHS} are allowed", map.len()),
                    ));
                }
                for (name, path) in map {
                    let name_at = member(&map_at, name);
                    if name.is_empty() || !name.chars().all(is_name_char) {
                        return Err(invalid(
                            &name_at,
                            format!(
                                "variable name {name:?}: use letters, digits, '_', '-' and '.'"
                            ),
                        ));
                    }
                    if name.len() >= 4 && name[..4].eq_ignore_ascii_case("aws.") {
                        return Err(invalid(
                            &name_at,
                            format!(
                                "variable name {name:?}: names starting with \"aws.\" are reserved"
                            ),
                        ));
                    }
                    vars.push(compile_path(path, &name_at)?);
                    names.push(name);
                }
            }
            Some(_) => return Err(invalid(&map_at, "must be an object of name → JSONPath")),
        }

        let tpl_at = member(at, "input_template");
        let text = match t.get("input_template") {
            Some(Value::String(s)) => s.as_str(),
            None => return Err(invalid(&tpl_at, "missing")),
            Some(_) => return Err(invalid(&tpl_at, "must be a string")),
        };
        let n = text.chars().count();
        if n == 0 || n > MAX_TEMPLATE_CHARS {
            return Err(invalid(
                &tpl_at,
                format!("{n} characters; 1 to {MAX_TEMPLATE_CHARS} are allowed"),
            ));
        }

        let pieces = split_template(text, |name| match name {
            RESERVED_EVENT => Some(Var::Event),
            RESERVED_EVENT_JSON => Some(Var::EventJson),
            _ => names.iter().position(|n| *n == name).map(Var::Path),
        })
        .map_err(|name| {
            invalid(
                &tpl_at,
                format!("placeholder <{name}> is not defined in input_paths_map"),
            )
        })?;

        // JSON when it parses with every placeholder filled in.
        let mut probe = String::with_capacity(text.len());
        for p in &pieces {
            match p {
                Piece::Lit(s) => probe.push_str(s),
                Piece::Var {
                    in_string: true, ..
                } => probe.push('x'),
                Piece::Var {
                    in_string: false, ..
                } => probe.push_str("null"),
            }
        }
        let json = serde_json::from_str::<Value>(&probe).is_ok();
        Ok(Template { vars, pieces, json })
    }

    fn apply(&self, event: &Value) -> Output {
        let mut out = String::new();
        for p in &self.pieces {
            let (var, in_string) = match p {
                Piece::Lit(s) => {
                    out.push_str(s);
                    continue;
                }
                Piece::Var { var, in_string } => (*var, *in_string),
            };
            let value = match var {
                Var::Path(i) => self.vars[i].select(event),
                Var::EventJson => Some(event.clone()),
                Var::Event => Some(match event {
                    Value::Object(m) => {
                        let mut m = m.clone();
                        m.remove("data");
                        Value::Object(m)
                    }
                    other => other.clone(),
                }),
            };
            match (self.json, in_string, value) {
                (true, false, None) => out.push_str("null"),
                (true, false, Some(v)) => out.push_str(&v.to_string()),
                (true, true, v) => {
                    let text = v.as_ref().map(text_of).unwrap_or_default();
                    let quoted = Value::String(text).to_string();
                    out.push_str(&quoted[1..quoted.len() - 1]);
                }
                (false, _, v) => out.push_str(&v.as_ref().map(text_of).unwrap_or_default()),
            }
        }
        if self.json {
            // Always parses (values are escaped or valid JSON); text is a safety net.
            match serde_json::from_str(&out) {
                Ok(v) => Output::Json(v),
                Err(_) => Output::Text(out),
            }
        } else {
            Output::Text(out)
        }
    }
}

/// Splits a template into literals and placeholders, noting for each placeholder whether it
/// sits inside a JSON string. `lookup` resolves a name; an unknown name is returned as `Err`.
/// A `<` not followed by a name and `>` is literal text.
fn split_template(text: &str, lookup: impl Fn(&str) -> Option<Var>) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut lit = String::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if c == '<' {
            let after = &rest[1..];
            let name_len = after
                .find(|ch: char| !is_name_char(ch))
                .unwrap_or(after.len());
            if name_len > 0 && after[name_len..].starts_with('>') {
                let name = &after[..name_len];
                let var = lookup(name).ok_or_else(|| name.to_owned())?;
                if !lit.is_empty() {
                    pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                }
                pieces.push(Piece::Var { var, in_string });
                rest = &after[name_len + 1..];
                escaped = false;
                continue;
            }
        }
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
        }
        lit.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if !lit.is_empty() {
        pieces.push(Piece::Lit(lit));
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(text: &str) -> Vec<String> {
        split_template(text, |n| (n == "a").then_some(Var::Path(0)))
            .unwrap()
            .iter()
            .map(|p| match p {
                Piece::Lit(s) => format!("L{s}"),
                Piece::Var { in_string, .. } => format!("V{in_string}"),
            })
            .collect()
    }

    #[test]
    fn split_marks_string_context() {
        assert_eq!(
            shape(r#"{"k": "<a>", "n": <a>}"#),
            vec![r#"L{"k": ""#, "Vtrue", r#"L", "n": "#, "Vfalse", "L}"]
        );
        assert_eq!(shape(r#""a\"<a>""#), vec![r#"L"a\""#, "Vtrue", "L\""]);
        assert_eq!(shape("x < 3 <> <a"), vec!["Lx < 3 <> <a"]);
    }

    #[test]
    fn split_refuses_unknown_names() {
        assert_eq!(
            split_template("hi <b>", |_| None).err(),
            Some("b".to_owned())
        );
    }
}
