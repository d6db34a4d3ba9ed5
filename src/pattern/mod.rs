//! Event patterns: Tencent EventBridge's dialect and the full Amazon EventBridge operator set.
//!
//! A pattern is a JSON object that mirrors the event: keys are AND, the values in a list are
//! OR, a bare scalar is a one-element list. Matching is exact (case-sensitive, `null` is not
//! `""`, numbers compare by value so `5` matches `5.0`), a list-valued event field matches when
//! any element does, and every field the pattern names must exist unless the operator says
//! otherwise. See docs/PATTERNS.md for the language, operator by operator.
//!
//! - [`Pattern::parse`] validates and compiles one pattern; a [`PatternError`] names the JSON
//!   path of what is wrong.
//! - [`Pattern::matches`] tests one event.
//! - [`PatternSet`] compiles many patterns into one index, so matching an event against a set
//!   costs roughly the rules that could match it, not the rule count.
//!
//! The semantics follow aws/event-ruler (the library behind EventBridge) on every operator
//! the two share, checked against its conformance corpus in `tests/pattern_conformance.rs`.
//!
//! ```
//! use eventbus::pattern::{Pattern, PatternSet};
//! use serde_json::json;
//!
//! let ping = Pattern::parse(&json!({
//!     "source": "cvm.cloud.tencent",
//!     "type": ["cvm:ErrorEvent:PingUnreachable"],
//!     "subject": [{"anything-but": ["ins-test"]}]
//! })).unwrap();
//! let event = json!({
//!     "source": "cvm.cloud.tencent", "type": "cvm:ErrorEvent:PingUnreachable",
//!     "subject": "ins-9f3k2", "data": {"ip": "10.0.3.4"}
//! });
//! assert!(ping.matches(&event));
//!
//! let lan = Pattern::parse(&json!({"data": {"ip": [{"cidr": "10.0.0.0/16"}]}})).unwrap();
//! let set = PatternSet::new([("ping-alarm", &ping), ("lan", &lan)]);
//! assert_eq!(set.matching(&event), [&"ping-alarm", &"lan"]);
//!
//! let bad = Pattern::parse(&json!({"data": {"n": [{"numeric": [">", "5"]}]}})).unwrap_err();
//! assert_eq!(bad.path, "$.data.n[0].numeric[1]");
//! ```

mod eval;
mod index;
mod matcher;
mod number;
mod parse;

use serde_json::Value;

pub use index::PatternSet;
pub use parse::{
    MAX_ALTERNATIVES, MAX_PATTERN_BYTES, MAX_PATTERN_DEPTH, OPERATORS, PATTERN_ERROR_CODE,
    PatternError,
};

use eval::Program;
use parse::Conjunct;

/// A validated, compiled event pattern.
#[derive(Clone, Debug)]
pub struct Pattern {
    /// The alternatives (more than one only with `$or` or Tencent's `array`).
    alts: Vec<Conjunct>,
    /// The same, with paths interned for fast matching.
    program: Program,
}

impl Pattern {
    /// Validates and compiles a pattern given as JSON.
    pub fn parse(pattern: &Value) -> Result<Pattern, PatternError> {
        let alts = parse::compile(pattern)?;
        let mut program = Program::default();
        program.add(0, &alts);
        program.seal();
        Ok(Pattern { alts, program })
    }

    /// Parses JSON text, then [`Pattern::parse`]. With duplicate keys the last one wins.
    pub fn parse_str(text: &str) -> Result<Pattern, PatternError> {
        let value: Value = serde_json::from_str(text).map_err(|e| PatternError {
            path: "$".into(),
            message: format!("the pattern is not valid JSON: {e}"),
        })?;
        Pattern::parse(&value)
    }

    /// Whether the event matches. An event that is not a JSON object matches nothing.
    pub fn matches(&self, event: &Value) -> bool {
        let flat = self.program.flatten(event);
        eval::Memo::with(&self.program, |memo| {
            self.program
                .conjs
                .iter()
                .any(|c| eval::conj_matches(c, &self.program, &flat, memo))
        })
    }

    /// The reference evaluator behind the property tests: no path interning, no pruning,
    /// no shortcuts. Same answer as [`Pattern::matches`], much slower.
    #[doc(hidden)]
    pub fn matches_naive(&self, event: &Value) -> bool {
        eval::naive_matches(&self.alts, event)
    }

    /// Number of alternatives the pattern expands to (`$or` branches times `array` choices).
    pub fn alternatives(&self) -> usize {
        self.alts.len()
    }
}
