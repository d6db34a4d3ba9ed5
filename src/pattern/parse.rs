//! Pattern JSON → conditions, with validation that names the JSON path of what is wrong.
//!
//! A pattern compiles to a disjunction of conjunctions ("alternatives"): `$or` and Tencent's
//! `array` operator are the only sources of more than one. Each conjunction is a list of
//! [`Cond`]s, one per field path, and each `Cond` holds the OR'ed alternatives for that field.

use std::net::{IpAddr, Ipv6Addr};

use serde_json::{Map, Value};

use crate::event::compact_json_len;

use super::matcher::{Bound, Lit, Matcher, NumLit, Wildcard, fold};
use super::number::Decimal;

/// Largest pattern accepted, in bytes of compact JSON.
pub const MAX_PATTERN_BYTES: usize = 16 * 1024;
/// Deepest object nesting accepted in a pattern (the top level is depth 1).
pub const MAX_PATTERN_DEPTH: usize = 32;
/// Most alternatives a pattern may expand to (`$or` branches times `array` choices).
pub const MAX_ALTERNATIVES: usize = 1024;

/// Error code for a rejected pattern (Tencent's).
pub const PATTERN_ERROR_CODE: &str = "InvalidParameterValue.EventPattern";

/// Why a pattern was rejected, and where: `path` is a JSON path into the pattern such as
/// `$.data.name[0].prefix`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PatternError {
    /// JSON path of the offending part, `$` for the whole pattern.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

impl PatternError {
    /// The path as seen from a document holding the pattern at `prefix`: `$.pattern` turns
    /// `$.data.name[0]` into `$.pattern.data.name[0]`.
    pub fn path_under(&self, prefix: &str) -> String {
        format!(
            "{prefix}{}",
            self.path.strip_prefix('$').unwrap_or(&self.path)
        )
    }
}

fn err<T>(path: &str, message: impl Into<String>) -> Result<T, PatternError> {
    Err(PatternError {
        path: path.to_owned(),
        message: message.into(),
    })
}

/// The alternatives for one field path.
#[derive(Clone, Debug)]
pub(crate) struct Cond {
    /// Dotted field path (`data.name`); a key that itself contains a dot is not escaped, so
    /// `{"a.b": …}` and `{"a": {"b": …}}` name the same field (as in event-ruler).
    pub(crate) path: Box<str>,
    /// The field must have a value accepted by one of these…
    pub(crate) options: Box<[Matcher]>,
    /// …or, when set (`exists: false` in the list), be absent from the event.
    pub(crate) absent_ok: bool,
}

/// Every condition must hold, on values from the same element of any array they share.
pub(crate) type Conjunct = Vec<Cond>;

/// Compiles a pattern to its alternatives.
pub(crate) fn compile(pattern: &Value) -> Result<Vec<Conjunct>, PatternError> {
    let Value::Object(obj) = pattern else {
        return err("$", "a pattern must be a JSON object");
    };
    let size = compact_json_len(pattern);
    if size > MAX_PATTERN_BYTES {
        return err(
            "$",
            format!("the pattern is {size} bytes, at most {MAX_PATTERN_BYTES}"),
        );
    }
    let mut alts = object(obj, "", "$", 1, false)?;
    // Conditions are evaluated in path order: `exists: false` looks only at the values
    // already chosen for the paths before it (event-ruler walks fields sorted by name).
    for alt in &mut alts {
        alt.sort_by(|a, b| a.path.cmp(&b.path));
    }
    Ok(alts)
}

fn child_path(jpath: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        format!("{jpath}.{key}")
    } else {
        format!("{jpath}[{}]", Value::String(key.to_owned()))
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

/// AND of two sets of alternatives: every pairing of one from each.
fn product(
    left: Vec<Conjunct>,
    right: Vec<Conjunct>,
    jpath: &str,
) -> Result<Vec<Conjunct>, PatternError> {
    if left.len().saturating_mul(right.len()) > MAX_ALTERNATIVES {
        return err(
            jpath,
            format!(
                "the pattern expands to more than {MAX_ALTERNATIVES} alternatives ($or and array choices multiply)"
            ),
        );
    }
    let mut out = Vec::with_capacity(left.len() * right.len());
    for l in &left {
        for r in &right {
            // A later condition on the same path replaces the earlier one, as a later
            // duplicate key does (event-ruler's rule: `{"a": [1], "$or": [{"a": [2]}, …]}`
            // means a = 2 in the first alternative).
            let mut c: Conjunct = l
                .iter()
                .filter(|lc| !r.iter().any(|rc| rc.path == lc.path))
                .cloned()
                .collect();
            c.extend(r.iter().cloned());
            out.push(c);
        }
    }
    Ok(out)
}

/// Every operator keyword (what [`operator`] accepts).
pub const OPERATORS: &[&str] = &[
    "prefix",
    "suffix",
    "anything-but",
    "numeric",
    "exists",
    "equals-ignore-case",
    "wildcard",
    "cidr",
    "exactly",
    "contain",
    "contains",
    "array",
];

/// event-ruler's reserved future keywords. They and the [`OPERATORS`] may not be field names
/// inside an `$or` alternative, where they would be ambiguous with operators.
const RESERVED_IN_OR: &[&str] = &[
    "regex",
    "not-wildcard",
    "not-equals-ignore-case",
    "date-after",
    "date-on-or-after",
    "date-before",
    "date-on-or-before",
    "in-date-range",
    "ip-address-in-range",
    "ip-address-not-in-range",
];

fn object(
    obj: &Map<String, Value>,
    prefix: &str,
    jpath: &str,
    depth: usize,
    in_or: bool,
) -> Result<Vec<Conjunct>, PatternError> {
    if depth > MAX_PATTERN_DEPTH {
        return err(
            jpath,
            format!("the pattern nests deeper than {MAX_PATTERN_DEPTH} levels"),
        );
    }
    if obj.is_empty() {
        return err(jpath, "empty objects are not allowed in a pattern");
    }
    let mut alts: Vec<Conjunct> = vec![Vec::new()];
    for (key, value) in obj {
        let kpath = child_path(jpath, key);
        let here = if key == "$or" {
            // An `$or` that does not parse as one is a plain field called `$or` (event-ruler
            // 2.0 reads `{"$or": [{"numeric": [">", 0]}]}` that way); if it is neither, the
            // error explains the `$or` reading.
            let as_or = match value {
                Value::Array(items) if items.len() >= 2 && items.iter().all(Value::is_object) => {
                    or_branches(items, prefix, &kpath, depth)
                }
                Value::Array(items) if items.len() >= 2 => {
                    let i = items.iter().position(|v| !v.is_object()).unwrap_or(0);
                    err(
                        &format!("{kpath}[{i}]"),
                        "each $or alternative must be a pattern object",
                    )
                }
                _ => err(&kpath, "$or takes a list of at least two pattern objects"),
            };
            match as_or {
                Ok(alts) => alts,
                Err(or_err) => {
                    field(key, value, prefix, &kpath, depth, in_or).map_err(|_| or_err)?
                }
            }
        } else {
            field(key, value, prefix, &kpath, depth, in_or)?
        };
        alts = product(alts, here, &kpath)?;
    }
    Ok(alts)
}

/// One field's alternatives.
fn field(
    key: &str,
    value: &Value,
    prefix: &str,
    kpath: &str,
    depth: usize,
    in_or: bool,
) -> Result<Vec<Conjunct>, PatternError> {
    if in_or && (OPERATORS.contains(&key) || RESERVED_IN_OR.contains(&key)) {
        return err(
            kpath,
            format!("{key:?} is an operator name and cannot be a field name inside $or"),
        );
    }
    let path = join(prefix, key);
    match value {
        Value::Object(o) => object(o, &path, kpath, depth + 1, in_or),
        Value::Array(items) => value_list(items, &path, kpath, depth),
        // Tencent's shorthand: a bare scalar is a one-element list.
        scalar => value_list(std::slice::from_ref(scalar), &path, kpath, depth),
    }
}

fn or_branches(
    items: &[Value],
    prefix: &str,
    jpath: &str,
    depth: usize,
) -> Result<Vec<Conjunct>, PatternError> {
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{jpath}[{i}]");
        let Value::Object(o) = item else {
            return err(&ipath, "each $or alternative must be a pattern object");
        };
        out.extend(object(o, prefix, &ipath, depth + 1, true)?);
        if out.len() > MAX_ALTERNATIVES {
            return err(
                jpath,
                format!("the pattern expands to more than {MAX_ALTERNATIVES} alternatives"),
            );
        }
    }
    Ok(out)
}

/// What one operator object contributes to a field's list.
enum Item {
    Match(Matcher),
    Absent,
    /// Tencent `array`: a sub-pattern rooted at this field.
    SubPattern(Vec<Conjunct>),
}

fn value_list(
    items: &[Value],
    path: &str,
    jpath: &str,
    depth: usize,
) -> Result<Vec<Conjunct>, PatternError> {
    if items.is_empty() {
        return err(jpath, "empty lists are not allowed in a pattern");
    }
    let mut options = Vec::new();
    let mut absent_ok = false;
    let mut subs: Vec<Conjunct> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{jpath}[{i}]");
        match item {
            Value::Object(op) => match operator(op, path, &ipath, depth)? {
                Item::Match(m) => options.push(m),
                Item::Absent => absent_ok = true,
                Item::SubPattern(alts) => subs.extend(alts),
            },
            Value::Array(_) => {
                return err(&ipath, "a value list cannot contain a list");
            }
            scalar => {
                // A string that is an IPv6 address also matches other spellings of the same
                // address ("::1" and "0:0:0:0:0:0:0:1"), as in event-ruler. IPv4 needs no
                // extra matcher: the parser accepts only the canonical dotted quad, so the
                // exact text is the only spelling.
                if let Some(ip) = scalar.as_str().and_then(|s| s.parse::<Ipv6Addr>().ok()) {
                    options.push(Matcher::Ip(ip));
                }
                options.push(Matcher::Exact(literal(scalar, &ipath)?));
            }
        }
    }
    let mut alts = Vec::with_capacity(1 + subs.len());
    if !options.is_empty() || absent_ok {
        alts.push(vec![Cond {
            path: path.into(),
            options: options.into_boxed_slice(),
            absent_ok,
        }]);
    }
    alts.extend(subs);
    if alts.len() > MAX_ALTERNATIVES {
        return err(
            jpath,
            format!("the pattern expands to more than {MAX_ALTERNATIVES} alternatives"),
        );
    }
    Ok(alts)
}

fn literal(v: &Value, jpath: &str) -> Result<Lit, PatternError> {
    Ok(match v {
        Value::String(s) => Lit::Str(s.as_str().into()),
        Value::Number(n) => match NumLit::parse(n.as_str()) {
            Some(d) => Lit::Num(d),
            None => return err(jpath, format!("{n} is not a number")),
        },
        Value::Bool(b) => Lit::Bool(*b),
        Value::Null => Lit::Null,
        Value::Array(_) | Value::Object(_) => {
            return err(jpath, "expected a string, number, boolean or null");
        }
    })
}

fn single_key<'a>(
    op: &'a Map<String, Value>,
    jpath: &str,
) -> Result<(&'a str, &'a Value), PatternError> {
    let mut it = op.iter();
    match (it.next(), it.next()) {
        (Some((k, v)), None) => Ok((k.as_str(), v)),
        (None, _) => err(jpath, "empty objects are not allowed in a pattern"),
        (Some(_), Some(_)) => err(
            jpath,
            format!(
                "an operator object has exactly one key, found {}: {}",
                op.len(),
                op.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
            ),
        ),
    }
}

fn string_arg<'a>(v: &'a Value, jpath: &str, op: &str) -> Result<&'a str, PatternError> {
    match v {
        Value::String(s) => Ok(s),
        _ => err(jpath, format!("{op} takes a string")),
    }
}

fn operator(
    op: &Map<String, Value>,
    path: &str,
    jpath: &str,
    depth: usize,
) -> Result<Item, PatternError> {
    let (name, arg) = single_key(op, jpath)?;
    let apath = child_path(jpath, name);
    let m = match name {
        "prefix" | "suffix" => {
            let prefix = name == "prefix";
            match arg {
                Value::String(s) => {
                    if prefix {
                        Matcher::Prefix(s.as_str().into())
                    } else {
                        Matcher::Suffix(s.as_str().into())
                    }
                }
                Value::Object(inner) => {
                    let (iname, iarg) = single_key(inner, &apath)?;
                    let ipath = child_path(&apath, iname);
                    if iname != "equals-ignore-case" {
                        return err(
                            &ipath,
                            format!(
                                "{name} takes a string or {{\"equals-ignore-case\": string}}, not {iname:?}"
                            ),
                        );
                    }
                    let s = fold(string_arg(iarg, &ipath, "equals-ignore-case")?).into();
                    if prefix {
                        Matcher::PrefixFold(s)
                    } else {
                        Matcher::SuffixFold(s)
                    }
                }
                _ => {
                    return err(
                        &apath,
                        format!("{name} takes a string or {{\"equals-ignore-case\": string}}"),
                    );
                }
            }
        }
        "equals-ignore-case" => Matcher::EqualsFold(fold(string_arg(arg, &apath, name)?).into()),
        "exactly" => Matcher::Exact(Lit::Str(string_arg(arg, &apath, name)?.into())),
        "wildcard" => wildcard(arg, &apath)?,
        "numeric" => numeric(arg, &apath)?,
        "exists" => match arg {
            Value::Bool(true) => Matcher::Exists,
            Value::Bool(false) => return Ok(Item::Absent),
            _ => return err(&apath, "exists takes true or false"),
        },
        "cidr" => cidr(arg, &apath)?,
        "contain" | "contains" => match arg {
            Value::String(s) => Matcher::Contain(Box::new([s.as_str().into()])),
            Value::Array(items) if !items.is_empty() => {
                let mut parts = Vec::with_capacity(items.len());
                for (i, it) in items.iter().enumerate() {
                    parts.push(string_arg(it, &format!("{apath}[{i}]"), name)?.into());
                }
                Matcher::Contain(parts.into_boxed_slice())
            }
            _ => {
                return err(
                    &apath,
                    format!("{name} takes a string or a non-empty list of strings"),
                );
            }
        },
        "anything-but" => anything_but(arg, &apath)?,
        "array" => {
            let parsed;
            let sub = match arg {
                Value::String(s) => {
                    parsed = serde_json::from_str::<Value>(s).map_err(|e| PatternError {
                        path: apath.clone(),
                        message: format!("array takes a JSON-encoded object: {e}"),
                    })?;
                    &parsed
                }
                other => other,
            };
            let Value::Object(o) = sub else {
                return err(
                    &apath,
                    "array takes a JSON-encoded object (a string such as \"{\\\"name\\\":\\\"id\\\"}\")",
                );
            };
            return Ok(Item::SubPattern(object(o, path, &apath, depth + 1, false)?));
        }
        other => {
            return err(
                &apath,
                format!(
                    "unknown operator {other:?} (known: {})",
                    OPERATORS.join(", ")
                ),
            );
        }
    };
    Ok(Item::Match(m))
}

fn wildcard(arg: &Value, jpath: &str) -> Result<Matcher, PatternError> {
    let s = string_arg(arg, jpath, "wildcard")?;
    Wildcard::parse(s)
        .map(Matcher::Wildcard)
        .or_else(|e| err(jpath, format!("wildcard: {e}")))
}

fn cidr(arg: &Value, jpath: &str) -> Result<Matcher, PatternError> {
    let s = string_arg(arg, jpath, "cidr")?;
    if !s.contains('/') {
        return err(
            jpath,
            format!("cidr {s:?} needs a prefix length (such as 10.0.0.0/24)"),
        );
    }
    let (addr, len) = s.split_once('/').unwrap_or((s, ""));
    let Ok(ip) = addr.parse::<IpAddr>() else {
        return err(
            jpath,
            format!("cidr {s:?}: {addr:?} is not an IPv4 or IPv6 address"),
        );
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match len.parse::<u8>() {
        Ok(n) if n <= max && !len.starts_with('+') => ipnet::IpNet::new(ip, n)
            .map(Matcher::Cidr)
            .or_else(|e| err(jpath, format!("cidr {s:?}: {e}"))),
        _ => err(
            jpath,
            format!("cidr {s:?}: the prefix length must be a number from 0 to {max}"),
        ),
    }
}

fn numeric(arg: &Value, jpath: &str) -> Result<Matcher, PatternError> {
    let Value::Array(items) = arg else {
        return err(
            jpath,
            "numeric takes a list such as [\">\", 0, \"<=\", 5] or [\"=\", 3]",
        );
    };
    let operand = |i: usize, op: &str| -> Result<Decimal, PatternError> {
        let ipath = format!("{jpath}[{i}]");
        match items.get(i) {
            Some(Value::Number(n)) => match NumLit::parse(n.as_str()) {
                Some(NumLit {
                    value, exact: true, ..
                }) => Ok(value),
                _ => err(
                    &ipath,
                    format!(
                        "{n} is not exactly a double (out of range or more digits than a double holds) and cannot be compared"
                    ),
                ),
            },
            _ => err(&ipath, format!("the value after {op:?} must be a number")),
        }
    };
    let op_at = |i: usize| -> Result<&str, PatternError> {
        let ipath = format!("{jpath}[{i}]");
        match items.get(i) {
            Some(Value::String(s)) if matches!(s.as_str(), "=" | "<" | "<=" | ">" | ">=") => Ok(s),
            Some(Value::String(s)) => err(
                &ipath,
                format!("unknown numeric operator {s:?} (use =, <, <=, > or >=)"),
            ),
            _ => err(&ipath, "expected a numeric operator: =, <, <=, > or >="),
        }
    };
    if items.is_empty() {
        return err(jpath, "numeric needs an operator and a number");
    }
    let first = op_at(0)?;
    let v0 = operand(1, first)?;
    let b0 = |inclusive| {
        Some(Bound {
            value: v0.clone(),
            inclusive,
        })
    };
    let (mut lower, mut upper) = (None, None);
    match first {
        "=" => {
            lower = b0(true);
            upper = b0(true);
        }
        "<" => upper = b0(false),
        "<=" => upper = b0(true),
        ">" => lower = b0(false),
        _ => lower = b0(true),
    }
    match items.len() {
        2 => {}
        4 => {
            if !matches!(first, ">" | ">=") {
                return err(
                    jpath,
                    "a numeric range starts with its lower bound (> or >=) and ends with its upper bound (< or <=)",
                );
            }
            let second = op_at(2)?;
            if !matches!(second, "<" | "<=") {
                return err(
                    &format!("{jpath}[2]"),
                    "the second bound of a numeric range must be < or <=",
                );
            }
            let v1 = operand(3, second)?;
            if v1 <= v0 {
                return err(
                    jpath,
                    "the lower bound of a numeric range must be below the upper bound",
                );
            }
            upper = Some(Bound {
                value: v1,
                inclusive: second == "<=",
            });
        }
        n => {
            return err(
                jpath,
                format!(
                    "numeric takes 2 items ([op, number]) or 4 ([\">\"|\">=\", low, \"<\"|\"<=\", high]), found {n}"
                ),
            );
        }
    }
    Ok(Matcher::Numeric { lower, upper })
}

fn anything_but(arg: &Value, jpath: &str) -> Result<Matcher, PatternError> {
    let inner: Vec<Matcher> = match arg {
        Value::String(_) | Value::Number(_) => vec![Matcher::Exact(literal(arg, jpath)?)],
        Value::Array(items) => {
            if items.is_empty() {
                return err(jpath, "anything-but needs at least one value");
            }
            let all_str = items.iter().all(Value::is_string);
            let all_num = items.iter().all(Value::is_number);
            if !all_str && !all_num {
                return err(
                    jpath,
                    "an anything-but list holds only strings or only numbers, not a mix (nor booleans, null, lists or objects)",
                );
            }
            items
                .iter()
                .enumerate()
                .map(|(i, v)| literal(v, &format!("{jpath}[{i}]")).map(Matcher::Exact))
                .collect::<Result<_, _>>()?
        }
        Value::Object(op) => {
            let (name, iarg) = single_key(op, jpath)?;
            let ipath = child_path(jpath, name);
            let strings = |nonempty: bool| -> Result<Vec<&str>, PatternError> {
                let list: Vec<(String, &Value)> = match iarg {
                    Value::Array(items) if !items.is_empty() => items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| (format!("{ipath}[{i}]"), v))
                        .collect(),
                    Value::Array(_) => return err(&ipath, "needs at least one value"),
                    v => vec![(ipath.clone(), v)],
                };
                let mut out = Vec::with_capacity(list.len());
                for (p, v) in list {
                    let s = string_arg(v, &p, name)?;
                    if nonempty && s.is_empty() {
                        return err(&p, format!("anything-but {name} cannot be empty"));
                    }
                    out.push(s);
                }
                Ok(out)
            };
            match name {
                "prefix" => strings(true)?
                    .into_iter()
                    .map(|s| Matcher::Prefix(s.into()))
                    .collect(),
                "suffix" => strings(true)?
                    .into_iter()
                    .map(|s| Matcher::Suffix(s.into()))
                    .collect(),
                "equals-ignore-case" => strings(false)?
                    .into_iter()
                    .map(|s| Matcher::EqualsFold(fold(s).into()))
                    .collect(),
                "wildcard" => strings(false)?
                    .into_iter()
                    .map(|s| {
                        Wildcard::parse(s)
                            .map(Matcher::Wildcard)
                            .or_else(|e| err(&ipath, format!("wildcard: {e}")))
                    })
                    .collect::<Result<_, _>>()?,
                other => {
                    return err(
                        &ipath,
                        format!(
                            "anything-but takes prefix, suffix, equals-ignore-case or wildcard here, not {other:?}"
                        ),
                    );
                }
            }
        }
        Value::Bool(_) | Value::Null => {
            return err(
                jpath,
                "anything-but takes a string, a number, a list of either, or an object with prefix, suffix, equals-ignore-case or wildcard",
            );
        }
    };
    Ok(Matcher::AnythingBut(inner.into_boxed_slice()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_listed_operator_is_recognised() {
        for op in OPERATORS {
            // The argument is wrong for most of them; only "unknown operator" would be a bug.
            if let Err(e) = compile(&json!({"a": [{*op: "x"}]})) {
                assert!(!e.message.contains("unknown operator"), "{op}: {e}");
            }
        }
        let e = compile(&json!({"a": [{"begins-with": "x"}]})).unwrap_err();
        assert!(e.message.contains("unknown operator"), "{e}");
    }
}
