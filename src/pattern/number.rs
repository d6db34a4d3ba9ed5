//! Exact decimal numbers for pattern matching.
//!
//! Event-ruler (the EventBridge engine) compares numbers by their decimal value, not as doubles:
//! `300`, `300.0` and `3.0e2` are equal, `0.1` and `0.10000000000000001` are not, and
//! `12345678901234567890` equals itself but not `…891`. Parsing the JSON text into a
//! normalised (sign, digits, exponent) triple gives exactly that, with no big-number library:
//! equality is structural and ordering is sign, then exponent, then digit string.
//!
//! serde_json is built with `arbitrary_precision`, so a [`serde_json::Number`] still holds the
//! text the producer sent.

use std::cmp::Ordering;

/// A decimal value `±0.d1d2…dn × 10^exp` with no leading or trailing zero digit; zero has no
/// digits (and is never negative), so equal values have equal representations.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Decimal {
    neg: bool,
    exp: i64,
    digits: Vec<u8>,
}

/// Exponents beyond this are clamped; no double comes near it and it keeps the arithmetic
/// below from overflowing on hostile input such as `1e99999999999999999999`.
const EXP_LIMIT: i64 = 1 << 40;

impl Decimal {
    /// Parses JSON number text (`-?int(.frac)?([eE][+-]?exp)?`); `None` if it is not one.
    pub(crate) fn parse(text: &str) -> Option<Decimal> {
        let b = text.as_bytes();
        let mut i = 0;
        let neg = b.first() == Some(&b'-');
        if neg {
            i += 1;
        }
        let mut digits: Vec<u8> = Vec::with_capacity(b.len());
        let mut point: Option<usize> = None; // digits before the decimal point
        let mut seen_digit = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    digits.push(c);
                    seen_digit = true;
                }
                b'.' if point.is_none() => point = Some(digits.len()),
                b'e' | b'E' => break,
                _ => return None,
            }
            i += 1;
        }
        if !seen_digit {
            return None;
        }
        let mut exp: i64 = 0;
        if i < b.len() {
            i += 1; // 'e'
            let eneg = match b.get(i) {
                Some(b'-') => {
                    i += 1;
                    true
                }
                Some(b'+') => {
                    i += 1;
                    false
                }
                _ => false,
            };
            if i >= b.len() {
                return None;
            }
            for &c in &b[i..] {
                if !c.is_ascii_digit() {
                    return None;
                }
                exp = (exp * 10 + i64::from(c - b'0')).min(EXP_LIMIT);
            }
            if eneg {
                exp = -exp;
            }
        }
        let int_len = point.unwrap_or(digits.len()) as i64;
        // value = 0.<digits> × 10^(int_len + exp); now strip zeros.
        let lead = digits.iter().take_while(|&&c| c == b'0').count();
        let trail = digits.iter().rev().take_while(|&&c| c == b'0').count();
        if lead == digits.len() {
            return Some(Decimal {
                neg: false,
                exp: 0,
                digits: Vec::new(),
            });
        }
        digits.truncate(digits.len() - trail);
        digits.drain(..lead);
        Some(Decimal {
            neg,
            exp: int_len - lead as i64 + exp,
            digits,
        })
    }

    /// Whether `text` (which parsed to `self`) is exactly the shortest decimal form of an IEEE
    /// double, so converting it to a double and back loses nothing. Event-ruler compares
    /// numbers by value only in that case (and refuses other `numeric` operands: `1E309`,
    /// `1E-325`, `0.10000000000000001`); any other number matches only its identical text.
    pub(crate) fn is_double_exact(&self, text: &str) -> bool {
        // Up to 15 significant digits in the normal range always survive the round trip: two
        // such decimals are further apart than neighbouring doubles.
        if self.digits.len() <= 15 && (-300..=300).contains(&self.exp) {
            return true;
        }
        match text.parse::<f64>() {
            Ok(f) if f.is_finite() => {
                Decimal::parse(&format!("{f:e}")).is_some_and(|back| back == *self)
            }
            _ => false,
        }
    }

    fn cmp_magnitude(&self, other: &Decimal) -> Ordering {
        match (self.digits.is_empty(), other.digits.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Less,
            (false, true) => return Ordering::Greater,
            (false, false) => {}
        }
        // Both normalised 0.d… × 10^exp with d1 ≠ 0: the exponent decides, then the digits
        // compared as strings (a shorter prefix is smaller: 0.12 < 0.123).
        self.exp
            .cmp(&other.exp)
            .then_with(|| self.digits.cmp(&other.digits))
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Decimal) -> Ordering {
        match (self.neg, other.neg) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Decimal) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    #[test]
    fn equal_values_in_different_spellings_are_equal() {
        assert_eq!(d("300"), d("300.0"));
        assert_eq!(d("300"), d("3.0e2"));
        assert_eq!(d("300"), d("3E+2"));
        assert_eq!(d("0.5"), d("5e-1"));
        assert_eq!(d("0"), d("-0.000"));
        assert_eq!(d("-0"), d("0e10"));
        assert_eq!(d("12345678901234567890"), d("1.2345678901234567890e19"));
    }

    #[test]
    fn values_that_share_a_double_stay_distinct() {
        assert_ne!(d("0.1"), d("0.10000000000000001"));
        assert_ne!(d("12345678901234567890"), d("12345678901234567891"));
    }

    #[test]
    fn ordering_follows_the_number_line() {
        let sorted = [
            "-1e300", "-1000", "-999.5", "-1", "-0.123", "-0.12", "0", "1e-300", "0.12", "0.123",
            "0.13", "1", "9.99", "10", "1e300",
        ];
        for w in sorted.windows(2) {
            assert!(d(w[0]) < d(w[1]), "{} < {}", w[0], w[1]);
        }
    }

    #[test]
    fn malformed_text_is_not_a_number() {
        for s in ["", "-", "1e", "1e+", "abc", "1.2.3", "0x10", "1e5x"] {
            assert!(Decimal::parse(s).is_none(), "{s}");
        }
    }

    #[test]
    fn double_exactness() {
        let exact = |s: &str| d(s).is_double_exact(s);
        assert!(exact("1e308"));
        assert!(exact("0"));
        assert!(exact("-4e-6"));
        assert!(exact("100.00001"));
        assert!(exact("1.7976931348623157e308"));
        assert!(exact("5e-324"));
        assert!(exact("0.30000000000000004"));
        assert!(!exact("1E309"));
        assert!(!exact("2.0e422"));
        assert!(!exact("1E-325"));
        assert!(!exact("0.10000000000000001"));
        assert!(!exact("12345678901234567890"));
    }

    #[test]
    fn huge_exponents_do_not_overflow() {
        assert!(d("1e99999999999999999999999") > d("1e300"));
        assert!(d("1e-99999999999999999999999") < d("1e-300"));
    }
}
