//! JSONPaths as transformations use them: RFC 9535 (the `serde_json_path` crate), plus the
//! loose dot notation that EventBridge and Tencent users write.
//!
//! RFC 9535's dot shorthand only takes names that start with a letter or `_` and go on with
//! letters, digits and `_`. Users write `$.detail.instance-id` (EventBridge documents dashes
//! and forward slashes in dot notation) and `$.0` (the fields of a TEXT extraction), so before
//! parsing, a dot segment with any other name is rewritten into bracket notation:
//! `$.detail.instance-id` → `$.detail['instance-id']`, `$.0` → `$['0']`. Note that `$.0`
//! therefore names the object member `"0"`, never array index 0 (write `$[0]` for that).

use serde_json::Value;
use serde_json_path::JsonPath;

/// A compiled JSONPath.
#[derive(Debug, Clone)]
pub(crate) struct Path {
    /// The path as the user wrote it.
    text: String,
    compiled: JsonPath,
    /// No wildcard, slice, union, filter or descendant segment: selects at most one node.
    singular: bool,
}

impl Path {
    /// Parses `text`; the error message explains what is wrong (the caller adds where).
    pub(crate) fn parse(text: &str) -> Result<Path, String> {
        let (normalised, singular) = normalise(text)?;
        let compiled = JsonPath::parse(&normalised)
            .map_err(|e| format!("{text:?} is not a valid JSONPath: {e}"))?;
        Ok(Path {
            text: text.to_owned(),
            compiled,
            singular,
        })
    }

    /// The path as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }

    /// The selected value: `None` when nothing matches; a singular path gives its node, any
    /// other path the array of all the nodes it selects (possibly empty, never `None`).
    pub(crate) fn select(&self, doc: &Value) -> Option<Value> {
        let nodes = self.compiled.query(doc);
        if self.singular {
            nodes.all().first().map(|v| (*v).clone())
        } else {
            Some(Value::Array(nodes.all().into_iter().cloned().collect()))
        }
    }
}

/// Whether `name` may follow a `.` in RFC 9535 (member-name-shorthand).
fn is_shorthand(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || !c.is_ascii() => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || !c.is_ascii())
}

fn push_bracketed(out: &mut String, name: &str) {
    out.push_str("['");
    for c in name.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            c => out.push(c),
        }
    }
    out.push_str("']");
}

/// Rewrites loose dot segments into bracket notation and tells whether the path is singular.
fn normalise(text: &str) -> Result<(String, bool), String> {
    if !text.starts_with('$') {
        return Err(format!(
            "{text:?} is not a JSONPath: it must start with `$`"
        ));
    }
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len() + 8);
    out.push('$');
    let mut singular = true;
    let mut i = 1;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let descendant = chars.get(i + 1) == Some(&'.');
                if descendant {
                    singular = false;
                    out.push_str("..");
                    i += 2;
                    if chars.get(i) == Some(&'[') {
                        continue;
                    }
                } else {
                    i += 1;
                }
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if name.is_empty() {
                    return Err(format!(
                        "{text:?} is not a valid JSONPath: empty name after `.`"
                    ));
                }
                if name == "*" {
                    singular = false;
                    if !descendant {
                        out.push('.');
                    }
                    out.push('*');
                } else if is_shorthand(&name) {
                    if !descendant {
                        out.push('.');
                    }
                    out.push_str(&name);
                } else {
                    push_bracketed(&mut out, &name);
                }
            }
            '[' => {
                // Copy the bracketed selection verbatim, up to its matching `]`.
                let mut depth = 0usize;
                let mut quote: Option<char> = None;
                while i < chars.len() {
                    let c = chars[i];
                    out.push(c);
                    i += 1;
                    match quote {
                        Some(q) => {
                            if c == '\\' {
                                if let Some(&next) = chars.get(i) {
                                    out.push(next);
                                    i += 1;
                                }
                            } else if c == q {
                                quote = None;
                            }
                        }
                        None => match c {
                            '\'' | '"' => quote = Some(c),
                            '[' => depth += 1,
                            ']' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            '*' | ':' | '?' | ',' => singular = false,
                            _ => {}
                        },
                    }
                }
            }
            c => {
                // Anything else is left for the parser to refuse.
                out.push(c);
                i += 1;
            }
        }
    }
    Ok((out, singular))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn norm(p: &str) -> (String, bool) {
        normalise(p).unwrap()
    }

    #[test]
    fn normalise_keeps_rfc_paths() {
        assert_eq!(norm("$"), ("$".into(), true));
        assert_eq!(norm("$.data.msgBody"), ("$.data.msgBody".into(), true));
        assert_eq!(norm("$.a[0].b"), ("$.a[0].b".into(), true));
        assert_eq!(norm("$['a.b']"), ("$['a.b']".into(), true));
    }

    #[test]
    fn normalise_brackets_loose_names() {
        assert_eq!(norm("$.0"), ("$['0']".into(), true));
        assert_eq!(
            norm("$.detail.instance-id"),
            ("$.detail['instance-id']".into(), true)
        );
        assert_eq!(norm("$.a/b"), ("$['a/b']".into(), true));
        assert_eq!(norm("$.it's"), (r"$['it\'s']".into(), true));
    }

    #[test]
    fn normalise_detects_non_singular_paths() {
        assert!(!norm("$.a.*").1);
        assert!(!norm("$..a").1);
        assert!(!norm("$.a[*]").1);
        assert!(!norm("$.a[0:2]").1);
        assert!(!norm("$.a[0,1]").1);
        assert!(!norm("$.a[?@.b == 1]").1);
        assert!(norm("$['a:b']").1, "a colon inside quotes is a name");
    }

    #[test]
    fn normalise_refuses_paths_without_root() {
        assert!(normalise("data.x").is_err());
        assert!(normalise("").is_err());
        assert!(normalise("$.a..").is_err());
    }

    #[test]
    fn select_singular_and_multiple() {
        let doc = json!({"a": [1, 2], "b-c": {"0": "z"}});
        let p = |s: &str| Path::parse(s).unwrap();
        assert_eq!(p("$.a[1]").select(&doc), Some(json!(2)));
        assert_eq!(p("$.b-c.0").select(&doc), Some(json!("z")));
        assert_eq!(p("$.nope").select(&doc), None);
        assert_eq!(p("$.a[*]").select(&doc), Some(json!([1, 2])));
        assert_eq!(p("$.nope[*]").select(&doc), Some(json!([])));
        assert_eq!(p("$..0").select(&doc), Some(json!(["z"])));
    }

    #[test]
    fn parse_reports_bad_paths() {
        let e = Path::parse("$.a[").unwrap_err();
        assert!(e.contains("not a valid JSONPath"), "{e}");
    }
}
