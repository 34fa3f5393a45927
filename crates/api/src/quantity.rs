//! Kubernetes resource quantities (`128Mi`, `500m`, `1.5`, `2e3`), parsed the
//! way the apiserver's `resource.Quantity` reads them, so that a bad value in
//! `spec.resources` is reported on the Function before a Deployment is applied.
//!
//! The grammar (k8s.io/apimachinery/pkg/api/resource):
//!
//! ```text
//! <quantity>        ::= <signedNumber><suffix>
//! <signedNumber>    ::= <number> | <sign><number>
//! <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
//! <sign>            ::= "+" | "-"
//! <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
//! <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
//! <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
//! <decimalExponent> ::= "e" <signedDigits> | "E" <signedDigits>
//! ```
//!
//! A number needs a digit: the apiserver's parser also takes `Mi`, `.`, `-`
//! and `+` (as 0), which are refused here as the typos they are.
//!
//! Values are kept exactly, in nano-units (the smallest unit a Quantity
//! keeps; finer fractions round up, as the apiserver rounds them).

use std::cmp::Ordering;
use std::fmt;

/// A parsed quantity: its value in nano-units, or "too large to hold"
/// (beyond ±1.7e29 units, far past any real resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity {
    nanos: Option<i128>,
    negative: bool,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(&'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ParseError {}

impl Quantity {
    /// Below zero (the apiserver refuses negative container resources).
    pub fn is_negative(&self) -> bool {
        self.negative && self.nanos != Some(0)
    }

    /// The value in whole units (cores, bytes) as a float; `None` when too
    /// large to hold. Exact to the nano-unit for any real request.
    pub fn as_f64(&self) -> Option<f64> {
        let v = self.nanos? as f64 / 1e9;
        Some(if self.negative { -v } else { v })
    }

    /// Compares two quantities; `None` when either is too large to hold.
    pub fn compare(&self, other: &Quantity) -> Option<Ordering> {
        Some(self.nanos?.cmp(&other.nanos?))
    }
}

/// Parses `s` as a Kubernetes quantity.
pub fn parse(s: &str) -> Result<Quantity, ParseError> {
    if s.is_empty() {
        return Err(ParseError("it is empty"));
    }
    let (negative, rest) = match s.as_bytes()[0] {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (int_digits, rest) = rest.split_at(int_len);
    let (frac_digits, suffix) = match rest.strip_prefix('.') {
        Some(after) => {
            let n = after.bytes().take_while(u8::is_ascii_digit).count();
            after.split_at(n)
        }
        None => ("", rest),
    };
    if int_digits.is_empty() && frac_digits.is_empty() {
        return Err(ParseError("it does not start with a number"));
    }
    // value = digits × 10^exp10 × 2^exp2, with `digits` the int and fraction
    // digits run together, and the fraction moved into exp10.
    let (mut exp10, exp2): (i64, u32) = match suffix {
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "" => (0, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => (decimal_exponent(suffix)?, 0),
    };
    exp10 = exp10.saturating_sub(frac_digits.len() as i64);
    let nanos = to_nanos(int_digits, frac_digits, exp10.saturating_add(9), exp2);
    Ok(Quantity { nanos, negative })
}

/// `e3`, `E-2`, `e+6`: the suffix of a decimal exponent.
fn decimal_exponent(suffix: &str) -> Result<i64, ParseError> {
    let unknown = ParseError(
        "its suffix is not one of n u m k M G T P E Ki Mi Gi Ti Pi Ei or an exponent such as e3",
    );
    let digits = suffix
        .strip_prefix(['e', 'E'])
        .ok_or_else(|| unknown.clone())?;
    let unsigned = digits.strip_prefix(['+', '-']).unwrap_or(digits);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(unknown);
    }
    digits
        .parse()
        .map_err(|_| ParseError("its exponent is too large"))
}

/// digits × 10^exp10 × 2^exp2, in nano-units, rounded up; `None` on overflow.
fn to_nanos(int_digits: &str, frac_digits: &str, exp10: i64, exp2: u32) -> Option<i128> {
    let all = int_digits.bytes().chain(frac_digits.bytes());
    let significant: Vec<u8> = all.skip_while(|&b| b == b'0').map(|b| b - b'0').collect();
    if significant.is_empty() {
        return Some(0);
    }
    let mut value: i128 = 0;
    let mut exp10 = exp10;
    let mut rounded_away = false;
    // Digits past the nano precision only decide whether to round up.
    let kept = if exp10 < 0 {
        let drop = usize::try_from(-exp10).unwrap_or(usize::MAX);
        exp10 = 0;
        let kept = significant.len().saturating_sub(drop);
        rounded_away = significant[kept..].iter().any(|&d| d != 0);
        kept
    } else {
        significant.len()
    };
    for &d in &significant[..kept] {
        value = value.checked_mul(10)?.checked_add(i128::from(d))?;
    }
    for _ in 0..exp10 {
        value = value.checked_mul(10)?;
    }
    value = value.checked_mul(1i128.checked_shl(exp2)?)?;
    if rounded_away {
        value = value.checked_add(1)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nanos(s: &str) -> i128 {
        match parse(s) {
            Ok(Quantity {
                nanos: Some(n),
                negative,
            }) => {
                if negative {
                    -n
                } else {
                    n
                }
            }
            other => panic!("{s:?}: {other:?}"),
        }
    }

    const UNIT: i128 = 1_000_000_000;

    #[test]
    fn valid_forms_have_their_value() {
        assert_eq!(nanos("0"), 0);
        assert_eq!(nanos("2"), 2 * UNIT);
        assert_eq!(nanos("+2"), 2 * UNIT);
        assert_eq!(nanos("-2"), -2 * UNIT);
        assert_eq!(nanos("500m"), UNIT / 2);
        assert_eq!(nanos("0.5"), UNIT / 2);
        assert_eq!(nanos(".5"), UNIT / 2);
        assert_eq!(nanos("1."), UNIT);
        assert_eq!(nanos("1.5Gi"), 3 * (1 << 29) * UNIT);
        assert_eq!(nanos("128Mi"), 128 * (1 << 20) * UNIT);
        assert_eq!(nanos("1Ki"), 1024 * UNIT);
        assert_eq!(nanos("1Ei"), (1 << 60) * UNIT);
        assert_eq!(nanos("1k"), 1000 * UNIT);
        assert_eq!(nanos("1M"), 1_000_000 * UNIT);
        assert_eq!(nanos("1G"), 1_000_000_000 * UNIT);
        assert_eq!(nanos("1T"), 1_000_000_000_000 * UNIT);
        assert_eq!(nanos("1P"), 1_000_000_000_000_000 * UNIT);
        assert_eq!(nanos("1E"), 1_000_000_000_000_000_000 * UNIT);
        assert_eq!(nanos("1n"), 1);
        assert_eq!(nanos("3u"), 3000);
        assert_eq!(nanos("1e3"), 1000 * UNIT);
        assert_eq!(nanos("1E3"), 1000 * UNIT);
        assert_eq!(nanos("1e+3"), 1000 * UNIT);
        assert_eq!(nanos("25e-1"), 5 * UNIT / 2);
        assert_eq!(nanos("007"), 7 * UNIT);
        // Finer than a nano-unit rounds up, as the apiserver does.
        assert_eq!(nanos("0.1n"), 1);
        assert_eq!(nanos("1e-12"), 1);
    }

    #[test]
    fn invalid_forms_are_refused() {
        for bad in [
            "",
            "lots",
            "Mi",
            "1 Gi",
            " 1",
            "1Gb",
            "1mi",
            "1KI",
            "1K",
            "1MM",
            "1e",
            "1e+",
            "1e1.5",
            "1.2.3",
            "--1",
            "+-1",
            ".",
            "-",
            "0x10",
            "1_000",
            "1Gi ",
            "∞",
            "1e99999999999999999999",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn binary_and_decimal_forms_compare_exactly() {
        let q = |s| parse(s).unwrap();
        assert_eq!(q("1Gi").compare(&q("1073741824")), Some(Ordering::Equal));
        assert_eq!(q("1Gi").compare(&q("1G")), Some(Ordering::Greater));
        assert_eq!(q("999m").compare(&q("1")), Some(Ordering::Less));
        assert_eq!(q("1e3").compare(&q("1k")), Some(Ordering::Equal));
        assert!(q("-1").is_negative());
        assert!(!q("-0").is_negative());
        // Too large to hold, yet a quantity: no ordering is claimed.
        assert_eq!(q("1e40").compare(&q("1")), None);
    }
}
