//! Table-driven pattern tests: every example on Tencent's event-pattern page and every row
//! of EventBridge's comparison-operator table, each with events that must and must not match.
//!
//! The tables live in `tests/data/patterns/{tencent,eventbridge}.json`:
//!
//! ```json
//! {"source": "…",
//!  "cases": [{"name": "…", "ref": "…", "pattern": {…}, "match": [{…}], "no_match": [{…}]}],
//!  "invalid": [{"name": "…", "pattern": {…}, "path": "$.data.n[0].numeric"}]}
//! ```
//!
//! Every event is checked four ways: [`Pattern::matches`], [`Pattern::matches_naive`], the
//! pattern re-parsed from its JSON text, and a [`PatternSet`] holding every pattern of the
//! file (which must also agree with each other pattern's own answer on that event).

use std::collections::{BTreeSet, HashSet};
use std::path::PathBuf;

use eventbus::pattern::{MAX_PATTERN_BYTES, MAX_PATTERN_DEPTH, Pattern, PatternSet};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    source: String,
    cases: Vec<Case>,
    invalid: Vec<Invalid>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    note: Option<String>,
    pattern: Value,
    #[serde(rename = "match")]
    must_match: Vec<Value>,
    no_match: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Invalid {
    name: String,
    pattern: Value,
    path: String,
}

/// The tables, with the least each must hold, so a truncated or emptied file fails.
const TABLES: &[(&str, TableFloor)] = &[
    (
        "tencent.json",
        TableFloor {
            bytes: 30_000,
            cases: 20,
            invalid: 12,
        },
    ),
    (
        "eventbridge.json",
        TableFloor {
            bytes: 30_000,
            cases: 35,
            invalid: 20,
        },
    ),
];

struct TableFloor {
    bytes: usize,
    cases: usize,
    invalid: usize,
}

/// Keywords that some case pattern must use, so coverage cannot silently shrink: every
/// operator the engine accepts (a new one needs a table case) and `$or`.
fn keywords() -> impl Iterator<Item = &'static str> {
    eventbus::pattern::OPERATORS.iter().copied().chain(["$or"])
}

fn table_path(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/patterns")
        .join(file)
}

fn load(file: &str) -> (Table, usize) {
    let path = table_path(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let table: Table = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a pattern table: {e}", path.display()));
    (table, text.len())
}

fn parse_case(file: &str, case: &Case) -> Pattern {
    Pattern::parse(&case.pattern)
        .unwrap_or_else(|e| panic!("{file}: case {:?}: pattern rejected: {e}", case.name))
}

/// Runs every case of one table; returns a description of every wrong answer.
fn wrong_answers(file: &str) -> Vec<String> {
    let (table, _) = load(file);
    let patterns: Vec<Pattern> = table.cases.iter().map(|c| parse_case(file, c)).collect();
    let reparsed: Vec<Pattern> = table
        .cases
        .iter()
        .map(|c| {
            Pattern::parse_str(&c.pattern.to_string())
                .unwrap_or_else(|e| panic!("{file}: case {:?}: text rejected: {e}", c.name))
        })
        .collect();
    let set = PatternSet::new(patterns.iter().enumerate());
    assert_eq!(
        set.len(),
        patterns.len(),
        "{file}: PatternSet lost patterns"
    );

    let mut wrong = Vec::new();
    for (i, case) in table.cases.iter().enumerate() {
        let events = case
            .must_match
            .iter()
            .enumerate()
            .map(|(j, e)| (true, format!("match[{j}]"), e))
            .chain(
                case.no_match
                    .iter()
                    .enumerate()
                    .map(|(j, e)| (false, format!("no_match[{j}]"), e)),
            );
        for (want, label, event) in events {
            let from_set: HashSet<usize> = set.matching(event).into_iter().copied().collect();
            let answers = [
                ("matches", patterns[i].matches(event)),
                ("matches_naive", patterns[i].matches_naive(event)),
                ("parse_str + matches", reparsed[i].matches(event)),
                ("PatternSet", from_set.contains(&i)),
            ];
            for (how, got) in answers {
                if got != want {
                    wrong.push(format!(
                        "{file}: case {:?} ({}), {label}: {how} says {got}, want {want}\n  pattern: {}\n  event:   {event}",
                        case.name, case.reference, case.pattern
                    ));
                }
            }
            // The set must give every other pattern's own answer on this event too.
            for (k, other) in patterns.iter().enumerate() {
                let alone = other.matches_naive(event);
                if k != i && from_set.contains(&k) != alone {
                    wrong.push(format!(
                        "{file}: PatternSet says {} for case {:?} on the event {label} of case {:?}, the pattern alone says {alone}\n  event: {event}",
                        from_set.contains(&k),
                        table.cases[k].name,
                        case.name
                    ));
                }
            }
        }
    }
    wrong
}

fn assert_table_answers(file: &str) {
    let wrong = wrong_answers(file);
    assert!(
        wrong.is_empty(),
        "{} wrong answer(s):\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn tencent_pattern_page_examples_match_as_documented() {
    assert_table_answers("tencent.json");
}

#[test]
fn eventbridge_operator_table_rows_match_as_documented() {
    assert_table_answers("eventbridge.json");
}

#[test]
fn tables_are_complete_and_every_case_has_both_kinds_of_event() {
    for (file, floor) in TABLES {
        let (table, bytes) = load(file);
        assert!(!table.source.trim().is_empty(), "{file}: no source");
        assert!(
            bytes >= floor.bytes,
            "{file}: {bytes} bytes, expected at least {} (truncated?)",
            floor.bytes
        );
        assert!(
            table.cases.len() >= floor.cases,
            "{file}: {} cases, expected at least {}",
            table.cases.len(),
            floor.cases
        );
        assert!(
            table.invalid.len() >= floor.invalid,
            "{file}: {} invalid patterns, expected at least {}",
            table.invalid.len(),
            floor.invalid
        );
        let mut names = HashSet::new();
        for case in &table.cases {
            assert!(
                names.insert(&case.name),
                "{file}: duplicate case {:?}",
                case.name
            );
            assert!(
                !case.reference.trim().is_empty(),
                "{file}: case {:?} has no ref",
                case.name
            );
            assert!(
                !case.must_match.is_empty(),
                "{file}: case {:?} has no event that must match",
                case.name
            );
            assert!(
                !case.no_match.is_empty(),
                "{file}: case {:?} has no event that must not match",
                case.name
            );
            if let Some(note) = &case.note {
                assert!(
                    !note.trim().is_empty(),
                    "{file}: case {:?}: empty note",
                    case.name
                );
            }
        }
        let mut invalid_names = HashSet::new();
        for bad in &table.invalid {
            assert!(
                invalid_names.insert(&bad.name),
                "{file}: duplicate invalid case {:?}",
                bad.name
            );
        }
    }
}

fn collect_keys(v: &Value, keys: &mut BTreeSet<String>) {
    match v {
        Value::Object(o) => {
            for (k, child) in o {
                keys.insert(k.clone());
                collect_keys(child, keys);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_keys(i, keys)),
        _ => {}
    }
}

#[test]
fn every_operator_keyword_is_used_by_some_case() {
    let mut keys = BTreeSet::new();
    for (file, _) in TABLES {
        for case in load(file).0.cases {
            collect_keys(&case.pattern, &mut keys);
        }
    }
    let missing: Vec<&str> = keywords().filter(|op| !keys.contains(*op)).collect();
    assert!(
        missing.is_empty(),
        "no case uses the operator(s) {missing:?}"
    );
}

#[test]
fn invalid_patterns_are_rejected_with_the_path_at_fault() {
    let mut wrong = Vec::new();
    for (file, _) in TABLES {
        for bad in load(file).0.invalid {
            match Pattern::parse(&bad.pattern) {
                Ok(_) => wrong.push(format!(
                    "{file}: invalid case {:?} was accepted: {}",
                    bad.name, bad.pattern
                )),
                Err(e) if e.path != bad.path => wrong.push(format!(
                    "{file}: invalid case {:?}: error path {:?}, want {:?} ({})\n  pattern: {}",
                    bad.name, e.path, bad.path, e.message, bad.pattern
                )),
                Err(e) => assert!(
                    !e.message.trim().is_empty(),
                    "{file}: invalid case {:?}: empty message",
                    bad.name
                ),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// `{"data": {"l2": {"l3": … {"leaf": ["x"]}}}}` with `depth` objects in all.
fn nested(depth: usize) -> Value {
    let mut v = json!({"leaf": ["x"]});
    for level in (2..=depth).rev() {
        let key = if level == 2 {
            "data".to_owned()
        } else {
            format!("l{level}")
        };
        v = json!({ key: v });
    }
    v
}

/// The JSON path of the object at `depth` in [`nested`].
fn nested_path(depth: usize) -> String {
    let mut path = String::from("$");
    for level in 2..=depth {
        if level == 2 {
            path.push_str(".data");
        } else {
            path.push_str(&format!(".l{level}"));
        }
    }
    path
}

/// An event that [`nested`] (with the same depth) matches.
fn nested_event(depth: usize) -> Value {
    let mut v = json!({"leaf": "x"});
    for level in (2..=depth).rev() {
        let key = if level == 2 {
            "data".to_owned()
        } else {
            format!("l{level}")
        };
        v = json!({ key: v });
    }
    v
}

#[test]
fn pattern_nested_deeper_than_the_limit_is_rejected_at_the_deepest_object() {
    assert_eq!(MAX_PATTERN_DEPTH, 32);
    let deepest_ok = Pattern::parse(&nested(MAX_PATTERN_DEPTH))
        .unwrap_or_else(|e| panic!("{MAX_PATTERN_DEPTH} levels must be accepted: {e}"));
    assert!(deepest_ok.matches(&nested_event(MAX_PATTERN_DEPTH)));
    assert!(deepest_ok.matches_naive(&nested_event(MAX_PATTERN_DEPTH)));
    assert!(!deepest_ok.matches(&nested_event(MAX_PATTERN_DEPTH - 1)));

    let too_deep = MAX_PATTERN_DEPTH + 1;
    let err = Pattern::parse(&nested(too_deep)).expect_err("33 levels must be rejected");
    assert_eq!(err.path, nested_path(too_deep), "{}", err.message);
}

/// `{"source": "cvm.cloud.tencent", "subject": ["ins-00000", …]}`, at least `bytes` long.
fn big_pattern(bytes: usize) -> Value {
    let mut subjects = Vec::new();
    let mut i = 0;
    loop {
        let p = json!({"source": "cvm.cloud.tencent", "subject": subjects});
        let len = serde_json::to_vec(&p).expect("serialize").len();
        if len >= bytes {
            return p;
        }
        subjects.push(Value::String(format!("ins-{i:05}")));
        i += 1;
    }
}

#[test]
fn pattern_larger_than_16_kib_is_rejected_at_the_root() {
    assert_eq!(MAX_PATTERN_BYTES, 16 * 1024);
    let near = Pattern::parse(&big_pattern(MAX_PATTERN_BYTES - 16))
        .unwrap_or_else(|e| panic!("a pattern just under the limit must be accepted: {e}"));
    assert!(near.matches(&json!({"source": "cvm.cloud.tencent", "subject": "ins-00042"})));

    let big = big_pattern(MAX_PATTERN_BYTES + 1);
    assert!(serde_json::to_vec(&big).expect("serialize").len() > MAX_PATTERN_BYTES);
    let err = Pattern::parse(&big).expect_err("a pattern over 16 KiB must be rejected");
    assert_eq!(err.path, "$", "{}", err.message);
}
