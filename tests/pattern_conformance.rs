//! The pattern engine against aws/event-ruler's answers.
//!
//! The corpus (Apache-2.0, harvested from event-ruler's own test suite at snapshot 337e8d9,
//! every answer produced by event-ruler 2.0.x) lives outside this repository, in
//! `../shared/conformance/event-ruler/`, or wherever `EVENTBUS_CONFORMANCE_DIR` points. It is
//! read, never copied. When it is absent these tests say so and pass.
//!
//! Deliberate differences are listed in [`DIFFERENCES`] and explained in docs/PATTERNS.md;
//! every other case must give event-ruler's answer.

use std::path::PathBuf;

use eventbus::pattern::{Pattern, PatternSet};
use serde_json::Value;

/// Case ids where eventbus answers differently on purpose (see docs/PATTERNS.md,
/// "Differences from event-ruler").
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "er-p-0067",
        "a bare scalar is Tencent's one-element-list shorthand, so {\"a\":1} is valid",
    ),
    (
        "er-probe-53",
        "a bare scalar is Tencent's one-element-list shorthand, so {\"a\":\"x\"} is valid",
    ),
];

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("EVENTBUS_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance/event-ruler")
        });
    if dir.join("match_cases.jsonl").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: event-ruler conformance corpus not found at {} (set EVENTBUS_CONFORMANCE_DIR)",
            dir.display()
        );
        None
    }
}

fn lines(dir: &std::path::Path, file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(dir.join(file)).expect("read corpus file");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("corpus line is JSON"))
        .collect()
}

fn is_difference(id: &str) -> bool {
    DIFFERENCES.iter().any(|(d, _)| *d == id)
}

fn text<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field].as_str().expect("field is a string")
}

/// Runs match cases; returns descriptions of every wrong answer.
fn check_matches(cases: &[Value]) -> (usize, Vec<String>) {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for case in cases {
        let id = text(case, "id");
        if is_difference(id) {
            continue;
        }
        let want = case["matches"].as_bool().expect("matches is a bool");
        let pattern = match Pattern::parse_str(text(case, "pattern")) {
            Ok(p) => p,
            Err(e) => {
                wrong.push(format!("{id}: pattern rejected ({e}): {}", case["pattern"]));
                continue;
            }
        };
        let event: Value = match serde_json::from_str(text(case, "event")) {
            Ok(v) => v,
            Err(e) => {
                wrong.push(format!("{id}: event is not JSON: {e}"));
                continue;
            }
        };
        checked += 1;
        let got = pattern.matches(&event);
        let naive = pattern.matches_naive(&event);
        if got != want || naive != want {
            wrong.push(format!(
                "{id}: want {want}, got {got} (naive {naive})\n  pattern {}\n  event   {}",
                case["pattern"], case["event"]
            ));
        }
    }
    (checked, wrong)
}

fn report(name: &str, checked: usize, wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "{name}: {} of {checked} cases differ from event-ruler:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    eprintln!("{name}: {checked} cases agree with event-ruler");
}

#[test]
fn match_cases_agree_with_event_ruler() {
    let Some(dir) = corpus_dir() else { return };
    let cases = lines(&dir, "match_cases.jsonl");
    assert!(cases.len() > 3000, "corpus looks truncated");
    let (checked, wrong) = check_matches(&cases);
    report("match_cases", checked, &wrong);
}

#[test]
fn match_cases_agree_when_all_patterns_share_one_index() {
    let Some(dir) = corpus_dir() else { return };
    let cases = lines(&dir, "match_cases.jsonl");
    let parsed: Vec<(usize, Pattern)> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| !is_difference(text(c, "id")))
        .map(|(i, c)| {
            (
                i,
                Pattern::parse_str(text(c, "pattern")).expect("pattern parses"),
            )
        })
        .collect();
    let set = PatternSet::new(parsed.iter().map(|(i, p)| (*i, p)));
    let mut wrong = Vec::new();
    for (n, (i, _)) in parsed.iter().enumerate() {
        let case = &cases[*i];
        let event: Value = serde_json::from_str(text(case, "event")).expect("event JSON");
        let hits: Vec<usize> = set.matching(&event).into_iter().copied().collect();
        let want = case["matches"].as_bool().expect("matches is a bool");
        if hits.contains(i) != want {
            wrong.push(format!(
                "{}: in the shared index, want {want}",
                text(case, "id")
            ));
        }
        // Every 25th event: the whole answer equals asking each pattern on its own.
        if n % 25 == 0 {
            let each: Vec<usize> = parsed
                .iter()
                .filter(|(_, p)| p.matches(&event))
                .map(|(j, _)| *j)
                .collect();
            if each != hits {
                wrong.push(format!(
                    "{}: index found {} patterns, one-by-one {}",
                    text(case, "id"),
                    hits.len(),
                    each.len()
                ));
            }
        }
    }
    report("match_cases (shared index)", parsed.len(), &wrong);
}

#[test]
fn correctness_cases_agree_with_event_ruler() {
    let Some(dir) = corpus_dir() else { return };
    let cases = lines(&dir, "correctness_cases_with_expected.jsonl");
    let (checked, wrong) = check_matches(&cases);
    report("correctness_cases", checked, &wrong);
}

#[test]
fn pattern_validity_agrees_with_event_ruler() {
    let Some(dir) = corpus_dir() else { return };
    let mut wrong = Vec::new();
    let mut checked = 0;
    for case in lines(&dir, "pattern_validity.jsonl") {
        let id = text(&case, "id");
        if is_difference(id) {
            continue;
        }
        checked += 1;
        let want = case["valid"].as_bool().expect("valid is a bool");
        let got = Pattern::parse_str(text(&case, "pattern"));
        if got.is_ok() != want {
            wrong.push(format!(
                "{id}: want valid={want}, got {:?}\n  pattern {}",
                got.err(),
                case["pattern"]
            ));
        }
    }
    report("pattern_validity", checked, &wrong);
}

#[test]
fn edge_probes_agree_with_event_ruler() {
    let Some(dir) = corpus_dir() else { return };
    let (errors, matches): (Vec<Value>, Vec<Value>) = lines(&dir, "edge_probes.jsonl")
        .into_iter()
        .filter(|c| !is_difference(text(c, "id")))
        .partition(|c| c.get("matches").is_none());
    let (mut checked, mut wrong) = check_matches(&matches);
    for case in &errors {
        let id = text(case, "id");
        checked += 1;
        let parsed = Pattern::parse_str(text(case, "pattern"));
        if case.get("pattern_error").is_some() {
            if parsed.is_ok() {
                wrong.push(format!(
                    "{id}: pattern should be rejected: {}",
                    case["pattern"]
                ));
            }
            continue;
        }
        // An event error: a non-object event is an error for `eventbus pattern check` and
        // matches nothing.
        let event: Value = serde_json::from_str(text(case, "event")).expect("event JSON");
        let pattern = match parsed {
            Ok(p) => p,
            Err(e) => {
                wrong.push(format!("{id}: pattern rejected ({e}): {}", case["pattern"]));
                continue;
            }
        };
        if event.is_object() || pattern.matches(&event) {
            wrong.push(format!("{id}: event should be refused: {}", case["event"]));
        }
    }
    assert!(
        !errors.is_empty() && !matches.is_empty(),
        "edge probes split oddly"
    );
    report("edge_probes", checked, &wrong);
}

#[test]
fn deliberate_differences_are_real_differences() {
    let Some(dir) = corpus_dir() else { return };
    // Each listed id must exist and must actually be answered differently; otherwise the list
    // (and docs/PATTERNS.md) is stale.
    let mut all = lines(&dir, "pattern_validity.jsonl");
    all.extend(lines(&dir, "edge_probes.jsonl"));
    for (id, why) in DIFFERENCES {
        let case = all
            .iter()
            .find(|c| c["id"] == *id)
            .unwrap_or_else(|| panic!("{id} not in the corpus"));
        let parsed = Pattern::parse_str(text(case, "pattern"));
        let ruler_valid = case["valid"]
            .as_bool()
            .unwrap_or(case.get("pattern_error").is_none());
        assert_ne!(
            parsed.is_ok(),
            ruler_valid,
            "{id} is no longer a difference ({why})"
        );
    }
}
