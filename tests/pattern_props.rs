//! Property tests for the pattern engine:
//! - a pattern derived from an event (any subset of its fields, each with an operator its
//!   value satisfies) matches that event;
//! - `anything-but: x` never matches a field whose values are all `x`;
//! - the indexed [`PatternSet`] and [`Pattern::matches`] give the same answers as the naive
//!   reference evaluator for random patterns and events.
//!
//! PROPTEST_CASES raises the case count (default 256 here).

use eventbus::pattern::{Pattern, PatternSet};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ----- events ---------------------------------------------------------------------------------

/// Strings with characters that stress the operators: wildcard metacharacters, case pairs
/// with one-character folds, multi-byte UTF-8.
fn string() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::char::range('a', 'e'),
            2 => proptest::char::range('A', 'E'),
            1 => Just('*'),
            1 => Just('\\'),
            1 => Just('é'),
            1 => Just('Ü'),
            1 => Just('中'),
            1 => Just('-'),
        ],
        0..6,
    )
    .prop_map(|cs| cs.into_iter().collect())
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => string().prop_map(Value::String),
        3 => (-50i64..50).prop_map(|n| json!(n)),
        1 => (-50i64..50).prop_map(|n| json!(n as f64 / 4.0)),
        1 => any::<bool>().prop_map(Value::Bool),
        1 => Just(Value::Null),
        1 => (0u8..4, 0u8..255).prop_map(|(a, b)| json!(format!("10.0.{a}.{b}"))),
    ]
}

/// Field names from a small alphabet so random patterns and events share paths.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![Just("a"), Just("b"), Just("c"), Just("d")].prop_map(String::from)
}

fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(key(), inner, 1..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn event() -> impl Strategy<Value = Value> {
    proptest::collection::btree_map(key(), value(), 1..4)
        .prop_map(|m| Value::Object(m.into_iter().collect()))
}

// ----- patterns derived from an event ---------------------------------------------------------

/// A tiny deterministic chooser fed by proptest, so derivation stays shrinkable.
struct Picks(Vec<u8>, usize);

impl Picks {
    fn next(&mut self, n: usize) -> usize {
        let v = self.0.get(self.1).copied().unwrap_or(0) as usize;
        self.1 += 1;
        if n == 0 { 0 } else { v % n }
    }
}

fn escape_wildcard(s: &str) -> String {
    s.replace('\\', "\\\\").replace('*', "\\*")
}

/// An operator object (or literal) that `v` satisfies.
fn derive_leaf(v: &Value, p: &mut Picks) -> Value {
    match v {
        Value::String(s) => {
            let chars: Vec<char> = s.chars().collect();
            let cut = p.next(chars.len() + 1);
            let head: String = chars[..cut].iter().collect();
            let tail: String = chars[cut..].iter().collect();
            match p.next(10) {
                0 => json!(s),
                1 => json!({"prefix": head}),
                2 => json!({"suffix": tail}),
                3 => json!({"equals-ignore-case": s.to_uppercase()}),
                4 => json!({"prefix": {"equals-ignore-case": head.to_lowercase()}}),
                5 => {
                    json!({"wildcard": format!("{}*{}", escape_wildcard(&head), escape_wildcard(&tail))})
                }
                6 => json!({"anything-but": format!("{s}~")}),
                7 => json!({"contain": head}),
                8 => json!({"exists": true}),
                _ => json!({"anything-but": {"suffix": format!("{tail}~")}}),
            }
        }
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            match p.next(6) {
                0 => Value::Number(n.clone()),
                1 => json!({"numeric": ["=", f]}),
                2 => json!({"numeric": [">=", f]}),
                3 => json!({"numeric": [">", f - 1.0, "<=", f]}),
                4 => json!({"anything-but": [f + 1.0, f + 2.0]}),
                _ => json!({"exists": true}),
            }
        }
        Value::Bool(_) | Value::Null => {
            if p.next(2) == 0 {
                v.clone()
            } else {
                json!({"exists": true})
            }
        }
        Value::Array(_) | Value::Object(_) => unreachable!("leaves only"),
    }
}

/// Derives a sub-pattern for `v`, or None when `v` holds no scalar at all. Arrays commit to
/// one element, so every condition below an array is satisfied by that same element.
fn derive(v: &Value, p: &mut Picks) -> Option<Value> {
    match v {
        Value::Array(items) => {
            if items.is_empty() {
                return None;
            }
            let start = p.next(items.len());
            (0..items.len()).find_map(|i| derive(&items[(start + i) % items.len()], p))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, child) in map {
                if p.next(3) == 0 && !out.is_empty() {
                    continue; // leave this field out of the pattern
                }
                if let Some(sub) = derive(child, p) {
                    out.insert(k.clone(), sub);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        scalar => Some(json!([derive_leaf(scalar, p)])),
    }
}

// ----- random patterns ------------------------------------------------------------------------

fn leaf_condition() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => scalar(),
        1 => string().prop_map(|s| json!({"prefix": s})),
        1 => string().prop_map(|s| json!({"suffix": s})),
        1 => string().prop_map(|s| json!({"equals-ignore-case": s})),
        1 => string().prop_map(|s| json!({"anything-but": s})),
        1 => (-50i64..50).prop_map(|n| json!({"anything-but": [n, n + 1]})),
        1 => (-50i64..50, 1i64..30).prop_map(|(lo, w)| json!({"numeric": [">", lo, "<=", lo + w]})),
        1 => (-50i64..50).prop_map(|n| json!({"numeric": ["<", n]})),
        1 => any::<bool>().prop_map(|b| json!({"exists": b})),
        1 => string().prop_map(|s| json!({"wildcard": format!("*{}*", escape_wildcard(&s))})),
        1 => string().prop_map(|s| json!({"contain": s})),
        1 => (0u8..4).prop_map(|a| json!({"cidr": format!("10.0.{a}.0/24")})),
    ]
}

fn pattern_value() -> impl Strategy<Value = Value> {
    let list = proptest::collection::vec(leaf_condition(), 1..3).prop_map(Value::Array);
    list.prop_recursive(2, 12, 3, |inner| {
        proptest::collection::btree_map(key(), inner, 1..3)
            .prop_map(|m| Value::Object(m.into_iter().collect()))
    })
}

fn pattern() -> impl Strategy<Value = Value> {
    let object = || {
        proptest::collection::btree_map(key(), pattern_value(), 1..3)
            .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
    };
    prop_oneof![
        4 => object(),
        1 => (object(), object(), object()).prop_map(|(base, x, y)| {
            let mut m = base.as_object().cloned().unwrap_or_default();
            m.insert("$or".into(), json!([x, y]));
            Value::Object(m)
        }),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_pattern_derived_from_an_event_matches_it(
        ev in event(),
        picks in proptest::collection::vec(any::<u8>(), 64),
    ) {
        let mut p = Picks(picks, 0);
        let Some(derived) = derive(&ev, &mut p) else { return Ok(()) };
        let pattern = Pattern::parse(&derived)
            .map_err(|e| TestCaseError::fail(format!("derived pattern rejected: {e}\n{derived}")))?;
        prop_assert!(pattern.matches(&ev), "pattern {derived}\nevent {ev}");
        prop_assert!(pattern.matches_naive(&ev), "naive: pattern {derived}\nevent {ev}");
        let set = PatternSet::new([(0, &pattern)]);
        prop_assert_eq!(set.matching(&ev), vec![&0]);
    }

    #[test]
    fn anything_but_never_matches_its_own_value(
        x in scalar().prop_filter("anything-but takes strings and numbers", |v| v.is_string() || v.is_number()),
        copies in 1usize..4,
        as_list in any::<bool>(),
        other in event(),
    ) {
        let mut ev = other.as_object().cloned().unwrap_or_default();
        ev.insert("a".into(), if copies == 1 { x.clone() } else { Value::Array(vec![x.clone(); copies]) });
        let ev = Value::Object(ev);
        let operand = if as_list { json!([x]) } else { x.clone() };
        let pattern = Pattern::parse(&json!({"a": [{"anything-but": operand}]})).unwrap();
        prop_assert!(!pattern.matches(&ev), "{ev}");
        prop_assert!(!pattern.matches_naive(&ev), "{ev}");
        if let Value::String(s) = &x
            && !s.is_empty()
        {
            let p = Pattern::parse(&json!({"a": [{"anything-but": {"prefix": s}}]})).unwrap();
            prop_assert!(!p.matches(&ev), "prefix form: {ev}");
        }
    }

    #[test]
    fn the_index_agrees_with_the_naive_evaluator(
        patterns in proptest::collection::vec(pattern(), 1..12),
        events in proptest::collection::vec(event(), 1..8),
    ) {
        let compiled: Vec<(usize, Pattern)> = patterns
            .iter()
            .enumerate()
            .filter_map(|(i, p)| Pattern::parse(p).ok().map(|c| (i, c)))
            .collect();
        let set = PatternSet::new(compiled.iter().map(|(i, p)| (*i, p)));
        for ev in &events {
            let naive: Vec<usize> = compiled
                .iter()
                .filter(|(_, p)| p.matches_naive(ev))
                .map(|(i, _)| *i)
                .collect();
            let one_by_one: Vec<usize> = compiled
                .iter()
                .filter(|(_, p)| p.matches(ev))
                .map(|(i, _)| *i)
                .collect();
            let indexed: Vec<usize> = set.matching(ev).into_iter().copied().collect();
            prop_assert_eq!(&one_by_one, &naive, "event {}", ev);
            prop_assert_eq!(&indexed, &naive, "event {}", ev);
        }
    }
}

#[test]
fn random_patterns_do_match_sometimes() {
    // Guards the generator: if no random pattern ever matched, the agreement property above
    // would hold vacuously.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut matched, mut total) = (0, 0);
    for _ in 0..2000 {
        let p = pattern().new_tree(&mut runner).unwrap().current();
        let e = event().new_tree(&mut runner).unwrap().current();
        if let Ok(p) = Pattern::parse(&p) {
            total += 1;
            if p.matches(&e) {
                matched += 1;
            }
        }
    }
    assert!(
        total > 1000,
        "most random patterns should be valid ({total})"
    );
    assert!(
        matched > 20,
        "random patterns matched only {matched} of {total}"
    );
}
