//! Durations on the command line of every component (`15s`, `500ms`, `2m`,
//! or plain seconds), so that tests can use sub-second timings, and in
//! `scale.schedules[].duration`, where Go's compound form (`1h30m`, as in
//! `kubectl` and metav1.Duration) reads naturally.

use std::time::Duration;

/// A duration, zero allowed (e.g. "no drain"): one or more `<number><unit>`
/// parts (`ms`, `s`, `m`, `h`), added up, or a plain number of seconds.
pub fn parse(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let hint = || format!("{s:?} is not a duration; use e.g. 15s, 500ms, 2m or 1h30m");
    if s.is_empty() {
        return Err(hint());
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return seconds(s, 1.0).ok_or_else(hint);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_end);
        if number.is_empty() {
            return Err(hint());
        }
        let scale = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(hint()),
            _ => return Err(format!("{s:?}: unknown unit {unit:?}; use ms, s, m or h")),
        };
        let value: f64 = number.parse().map_err(|_| hint())?;
        total += value * scale;
        rest = next;
    }
    Duration::try_from_secs_f64(total).map_err(|_| format!("{s:?} is not a valid duration"))
}

/// `number` seconds times `scale`, if it is a number.
fn seconds(number: &str, scale: f64) -> Option<Duration> {
    let value: f64 = number.parse().ok()?;
    Duration::try_from_secs_f64(value * scale).ok()
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
    fn compound_durations_add_up_as_in_go() {
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("2h0m5s"), Ok(Duration::from_secs(7205)));
        assert_eq!(parse("1m500ms"), Ok(Duration::from_millis(60_500)));
        assert_eq!(parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(
            parse("1h30").is_err(),
            "a number without a unit after a part"
        );
        assert!(parse("h").is_err());
        assert!(parse("1h 30m").is_err());
        assert!(parse("").is_err());
        assert!(parse("1d").unwrap_err().contains("unknown unit"));
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
