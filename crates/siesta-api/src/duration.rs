//! Durations on the command line of every component (`15s`, `500ms`, `2m`,
//! or plain seconds), so that tests can use sub-second timings.

use std::time::Duration;

/// A duration, zero allowed (e.g. "no drain").
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration; use e.g. 15s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("{s:?} is not a valid duration"))
}

/// A duration above zero (periods, leases, timeouts that must elapse).
pub fn parse_positive(s: &str) -> Result<Duration, String> {
    parse(s).and_then(|d| {
        if d.is_zero() {
            Err(format!("{:?}: a duration must be above zero", s.trim()))
        } else {
            Ok(d)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_plain_seconds() {
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
    }

    #[test]
    fn nonsense_is_refused_with_a_hint() {
        assert!(parse("fast").unwrap_err().contains("15s"));
        assert!(parse("5d").is_err());
        assert!(parse_positive("0s").is_err());
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert!(parse("-1s").is_err());
    }
}
