//! Compiled conditions on one event value ("leaf"), and the leaf values they test.
//!
//! Types never cross: a string pattern never matches a number, `true` never matches `"true"`,
//! `null` is not `""`. Every matcher here looks at one leaf; how leaves are found and combined
//! (paths, arrays, `exists: false`) is in [`super::eval`].

use std::net::{IpAddr, Ipv6Addr};

use ipnet::IpNet;

use super::number::Decimal;

/// A scalar value of an event, as the matchers see it.
#[derive(Clone, Debug)]
pub(crate) enum LeafVal<'a> {
    Str(&'a str),
    Num(Num<'a>),
    Bool(bool),
    Null,
}

/// A number as written, with its value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Num<'a> {
    pub(crate) value: Decimal,
    pub(crate) text: &'a str,
    /// [`Decimal::is_double_exact`]: only then does the value take part in comparisons.
    pub(crate) exact: bool,
}

impl Num<'_> {
    /// Parses JSON number text.
    pub(crate) fn parse(text: &str) -> Option<Num<'_>> {
        let value = Decimal::parse(text)?;
        let exact = value.is_double_exact(text);
        Some(Num { value, text, exact })
    }
}

/// A number literal in a pattern.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct NumLit {
    pub(crate) value: Decimal,
    pub(crate) text: Box<str>,
    pub(crate) exact: bool,
}

impl NumLit {
    pub(crate) fn parse(text: &str) -> Option<NumLit> {
        let n = Num::parse(text)?;
        Some(NumLit {
            value: n.value,
            text: text.into(),
            exact: n.exact,
        })
    }

    /// Equal by value when both sides are exact doubles, else only with identical text.
    pub(crate) fn matches(&self, n: &Num<'_>) -> bool {
        (self.exact && n.exact && self.value == n.value) || *self.text == *n.text
    }
}

/// A literal in a pattern's value list (`["a", 5, true, null]`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Lit {
    Str(Box<str>),
    Num(NumLit),
    Bool(bool),
    Null,
}

impl Lit {
    fn matches(&self, v: &LeafVal<'_>) -> bool {
        match (self, v) {
            (Lit::Str(a), LeafVal::Str(b)) => **a == **b,
            (Lit::Num(a), LeafVal::Num(b)) => a.matches(b),
            (Lit::Bool(a), LeafVal::Bool(b)) => a == b,
            (Lit::Null, LeafVal::Null) => true,
            _ => false,
        }
    }
}

/// One bound of a numeric range.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Bound {
    pub(crate) value: Decimal,
    pub(crate) inclusive: bool,
}

/// One alternative in a field's value list.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Matcher {
    /// A literal value (also `{"exactly": "…"}`).
    Exact(Lit),
    Prefix(Box<str>),
    /// Prefix compared after [`fold`]ing both sides; holds the folded prefix.
    PrefixFold(Box<str>),
    Suffix(Box<str>),
    SuffixFold(Box<str>),
    /// `equals-ignore-case`; holds the folded value.
    EqualsFold(Box<str>),
    Wildcard(Wildcard),
    /// `numeric`: a number within the bounds.
    Numeric {
        lower: Option<Bound>,
        upper: Option<Bound>,
    },
    /// `exists: true`: any scalar value, `null` included.
    Exists,
    /// `cidr`: a string that parses as an IP address inside the network.
    Cidr(IpNet),
    /// A string literal that is an IPv6 address: any spelling of the same address.
    Ip(Ipv6Addr),
    /// Tencent `contain`: a string holding every one of these substrings.
    Contain(Box<[Box<str>]>),
    /// `anything-but`: a value none of the inner matchers accepts.
    AnythingBut(Box<[Matcher]>),
}

impl Matcher {
    /// Whether this alternative accepts the leaf.
    pub(crate) fn matches(&self, v: &LeafVal<'_>) -> bool {
        match self {
            Matcher::Exact(lit) => lit.matches(v),
            Matcher::Exists => true,
            Matcher::AnythingBut(inner) => !inner.iter().any(|m| m.matches(v)),
            Matcher::Numeric { lower, upper } => {
                let LeafVal::Num(Num {
                    value: n,
                    exact: true,
                    ..
                }) = v
                else {
                    return false;
                };
                lower.as_ref().is_none_or(|b| {
                    if b.inclusive {
                        *n >= b.value
                    } else {
                        *n > b.value
                    }
                }) && upper.as_ref().is_none_or(|b| {
                    if b.inclusive {
                        *n <= b.value
                    } else {
                        *n < b.value
                    }
                })
            }
            _ => {
                let LeafVal::Str(s) = v else { return false };
                self.matches_str(s)
            }
        }
    }

    fn matches_str(&self, s: &str) -> bool {
        match self {
            Matcher::Prefix(p) => s.starts_with(&**p),
            Matcher::Suffix(p) => s.ends_with(&**p),
            // Compared character by character, without building the folded value.
            Matcher::PrefixFold(p) => {
                let mut folded = s.chars().map(fold_char);
                p.chars().all(|c| folded.next() == Some(c))
            }
            Matcher::SuffixFold(p) => {
                let mut folded = s.chars().rev().map(fold_char);
                p.chars().rev().all(|c| folded.next() == Some(c))
            }
            Matcher::EqualsFold(p) => s.chars().map(fold_char).eq(p.chars()),
            Matcher::Wildcard(w) => w.matches(s),
            Matcher::Cidr(net) => s.parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip)),
            Matcher::Ip(want) => s.parse::<Ipv6Addr>().is_ok_and(|ip| ip == *want),
            Matcher::Contain(parts) => parts.iter().all(|p| s.contains(&**p)),
            Matcher::Exact(_)
            | Matcher::Exists
            | Matcher::AnythingBut(_)
            | Matcher::Numeric { .. } => false,
        }
    }
}

/// Case folding for the `equals-ignore-case` family: each character maps to its lowercase
/// form when that is a single character, so folding never changes the character count
/// ("straße" does not equal "STRASSE", "ÄbC" equals "äBC").
pub(crate) fn fold(s: &str) -> String {
    s.chars().map(fold_char).collect()
}

fn fold_char(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// A `wildcard` pattern: literal segments separated by `*` (any run of characters, possibly
/// empty). `\*` is a literal star and `\\` a literal backslash.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Wildcard {
    /// Literal pieces between the stars; `stars = parts.len() - 1`.
    parts: Box<[Box<str>]>,
}

impl Wildcard {
    /// Parses the pattern text; the error says what is wrong and at which character.
    pub(crate) fn parse(text: &str) -> Result<Wildcard, String> {
        let mut parts: Vec<Box<str>> = Vec::new();
        let mut cur = String::new();
        let mut chars = text.chars().enumerate().peekable();
        let mut last_was_star = false;
        while let Some((i, c)) = chars.next() {
            match c {
                '*' => {
                    if last_was_star {
                        return Err(format!("consecutive wildcard characters at position {i}"));
                    }
                    parts.push(std::mem::take(&mut cur).into_boxed_str());
                    last_was_star = true;
                    continue;
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('*' | '\\'))) => cur.push(e),
                    _ => {
                        return Err(format!(
                            "invalid escape at position {i}: only \\* and \\\\ may follow a backslash"
                        ));
                    }
                },
                c => cur.push(c),
            }
            last_was_star = false;
        }
        parts.push(cur.into_boxed_str());
        Ok(Wildcard {
            parts: parts.into_boxed_slice(),
        })
    }

    /// Whether the whole of `s` matches.
    pub(crate) fn matches(&self, s: &str) -> bool {
        let n = self.parts.len();
        let first = &*self.parts[0];
        if n == 1 {
            return s == first;
        }
        let last = &*self.parts[n - 1];
        if s.len() < first.len() + last.len() || !s.starts_with(first) || !s.ends_with(last) {
            return false;
        }
        // Leftmost placement of each middle piece is optimal when `*` is the only
        // metacharacter: any later placement leaves less room for the pieces after it.
        let mut rest = &s[first.len()..s.len() - last.len()];
        for piece in &self.parts[1..n - 1] {
            match rest.find(&**piece) {
                Some(at) => rest = &rest[at + piece.len()..],
                None => return false,
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wc(p: &str, s: &str) -> bool {
        Wildcard::parse(p).unwrap().matches(s)
    }

    #[test]
    fn wildcard_matches_runs_of_any_length() {
        assert!(wc("*", ""));
        assert!(wc("*", "anything"));
        assert!(wc("a*", "a"));
        assert!(wc("a*c", "abbbc"));
        assert!(wc("a*c", "ac"));
        assert!(!wc("a*c", "abcd"));
        assert!(wc("*.png", "x.png"));
        assert!(wc("a*b*c", "a-b-b-c"));
        assert!(!wc("a*b*c", "a-c-b"));
        assert!(wc("*ab*ab*", "abab"));
        assert!(!wc("*ab*ab*", "aba"));
        assert!(!wc("aa*aa", "aaa"));
        assert!(wc("exact", "exact"));
        assert!(!wc("exact", "exactly"));
    }

    #[test]
    fn wildcard_escapes_are_literal() {
        assert!(wc(r"a\*b", "a*b"));
        assert!(!wc(r"a\*b", "axb"));
        assert!(wc(r"a\\*", r"a\anything"));
        assert!(wc(r"\**", "*x"));
    }

    #[test]
    fn wildcard_rejects_double_stars_and_bad_escapes() {
        assert!(Wildcard::parse("a**b").unwrap_err().contains("position 2"));
        assert!(Wildcard::parse(r"a\b").is_err());
        assert!(Wildcard::parse("a\\").is_err());
    }

    #[test]
    fn fold_keeps_character_count() {
        assert_eq!(fold("ÄbC"), fold("äBC"));
        assert_ne!(fold("STRASSE"), fold("straße"));
        assert_eq!(fold("İ"), "İ"); // lowercases to two chars: kept as is
    }

    #[test]
    fn types_never_cross() {
        let num = LeafVal::Num(Num::parse("5").unwrap());
        assert!(!Matcher::Exact(Lit::Str("5".into())).matches(&num));
        assert!(!Matcher::Prefix("5".into()).matches(&num));
        assert!(!Matcher::Exact(Lit::Bool(true)).matches(&LeafVal::Str("true")));
        assert!(!Matcher::Exact(Lit::Str("".into())).matches(&LeafVal::Null));
        assert!(Matcher::Exact(Lit::Null).matches(&LeafVal::Null));
        assert!(Matcher::Exists.matches(&LeafVal::Null));
    }

    #[test]
    fn cidr_checks_family_and_network() {
        let m = Matcher::Cidr("10.0.0.0/24".parse().unwrap());
        assert!(m.matches(&LeafVal::Str("10.0.0.7")));
        assert!(!m.matches(&LeafVal::Str("10.0.1.7")));
        assert!(!m.matches(&LeafVal::Str("::1")));
        assert!(!m.matches(&LeafVal::Str("not an ip")));
        let m6 = Matcher::Cidr("2001:db8::/32".parse().unwrap());
        assert!(m6.matches(&LeafVal::Str("2001:db8::1")));
        assert!(!m6.matches(&LeafVal::Str("10.0.0.7")));
    }
}
