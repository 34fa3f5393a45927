//! `scale.schedules`: a window's cron expression, time zone and duration,
//! parsed and checked, and the instants it opens at. Pure: no clock here,
//! every instant is an argument.
//!
//! - Cron: five fields, `minute hour day-of-month month day-of-week`, as in
//!   crontab(5) (lists, ranges, steps, `JAN`–`DEC`, `SUN`–`SAT`, 0 or 7 for
//!   Sunday, day-of-month OR day-of-week when both are restricted, and the
//!   `@daily`-style names). Parsed by `croner`, which also takes `L`, `W` and
//!   `#` (last day, nearest weekday, nth weekday of the month).
//! - Time zone: an IANA name, looked up in the tz database compiled into the
//!   binary (jiff's bundled copy), never the host's: the distroless image has
//!   no /usr/share/zoneinfo, and a test gives the same answer everywhere.
//! - Daylight saving time, as Vixie cron (croner follows it and the Open Cron
//!   Pattern Specification): a fixed time that the clocks skip (02:30 on the
//!   spring-forward night in Europe/Berlin) opens once, at the first instant
//!   after the jump (03:00 CEST); a fixed time that happens twice (02:30 on
//!   the fall-back night) opens once, at its first occurrence. Fields with
//!   `*` or steps in the minute or hour field follow the wall clock instead:
//!   times inside the skipped hour do not happen, and times inside the
//!   repeated hour happen twice.
//! - Duration: elapsed time from the opening, so a window that spans the
//!   night of a clock change closes `duration` after it opened, not at the
//!   same wall-clock time as on other days.

use std::sync::LazyLock;
use std::time::Duration;

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::civil::Date;
use jiff::tz::{TimeZone, TimeZoneDatabase};
use jiff::{Timestamp, Zoned};

use crate::{ScaleSchedule, duration};

/// Most windows per Function, as in the schema (`maxItems`): every decision
/// looks at each of them.
pub const MAX_SCHEDULES: usize = 20;
/// The longest window: 31 days, so one window can cover a month.
pub const MAX_DURATION: Duration = Duration::from_secs(31 * 24 * 3600);

/// The tz database compiled in (see the module doc).
static TZDB: LazyLock<TimeZoneDatabase> = LazyLock::new(TimeZoneDatabase::bundled);

/// A `scale.schedules[i]` that parsed: it can say when it opens.
#[derive(Clone, Debug)]
pub struct Window {
    /// The cron expression as written.
    pub cron: String,
    /// The time zone's IANA name, as the database spells it.
    pub time_zone: String,
    pub duration: Duration,
    pub min_replicas: i32,
    pattern: Cron,
    tz: TimeZone,
}

/// Which field of one schedule is wrong, and why, in words a user acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// `cron`, `timeZone` or `duration`.
    pub field: &'static str,
    pub value: String,
    pub why: String,
}

/// Parses one schedule; the first wrong field is the problem.
pub fn parse(schedule: &ScaleSchedule) -> Result<Window, Problem> {
    let problem = |field, value: &str, why: String| Problem {
        field,
        value: value.to_string(),
        why,
    };
    let pattern = parse_cron(&schedule.cron).map_err(|why| problem("cron", &schedule.cron, why))?;
    let tz = TZDB.get(schedule.time_zone.trim()).map_err(|_| {
        problem(
            "timeZone",
            &schedule.time_zone,
            "not a time zone of the IANA database; use a name such as Europe/Berlin, America/New_York or UTC".to_string(),
        )
    })?;
    let length = duration::parse(&schedule.duration).map_err(|why| {
        problem(
            "duration",
            &schedule.duration,
            format!("{why} (a window's length, e.g. 8h)"),
        )
    })?;
    if length < Duration::from_secs(1) {
        return Err(problem(
            "duration",
            &schedule.duration,
            "a window must stay open at least 1s".to_string(),
        ));
    }
    if length > MAX_DURATION {
        return Err(problem(
            "duration",
            &schedule.duration,
            "longer than 744h (31 days), the longest window".to_string(),
        ));
    }
    Ok(Window {
        cron: schedule.cron.clone(),
        time_zone: tz.iana_name().unwrap_or(&schedule.time_zone).to_string(),
        duration: length,
        min_replicas: schedule.min_replicas,
        pattern,
        tz,
    })
}

/// A five-field cron expression that matches at least one date.
fn parse_cron(text: &str) -> Result<Cron, String> {
    const HINT: &str = "use five fields, minute hour day-of-month month day-of-week, e.g. \"0 8 * * 1-5\" for 08:00 on weekdays";
    let parser = CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build();
    let cron = parser
        .parse(text)
        .map_err(|e| format!("not a cron expression ({e}); {HINT}"))?;
    if !matches_some_date(&cron) {
        return Err(
            "matches no date (such as 30 February); check the day-of-month, month and day-of-week fields"
                .to_string(),
        );
    }
    Ok(cron)
}

/// Whether the pattern matches any day in a whole 28-year cycle of the
/// Gregorian calendar (every weekday falls on every date in it, leap days
/// included), so that "30 February" is refused up front instead of each
/// search for it running to croner's year-5000 limit. It stops at the first
/// matching day, which for any usual pattern is within days.
fn matches_some_date(cron: &Cron) -> bool {
    let Some(hour) = (0..24).find(|h| cron.pattern.hour_match(*h).unwrap_or(false)) else {
        return false;
    };
    let Some(minute) = (0..60).find(|m| cron.pattern.minute_match(*m).unwrap_or(false)) else {
        return false;
    };
    let (Ok(first), Ok(last)) = (Date::new(2028, 1, 1), Date::new(2055, 12, 31)) else {
        return false;
    };
    first
        .series(jiff::Span::new().days(1))
        .take_while(|d| *d <= last)
        .any(|d| {
            let at = d.at(hour as i8, minute as i8, 0, 0);
            cron.is_time_matching(&at).unwrap_or(false)
        })
}

impl Window {
    /// The latest opening at or before `t`, in the window's time zone.
    pub fn last_opening(&self, t: Timestamp) -> Option<Zoned> {
        self.pattern
            .find_previous_occurrence(&t.to_zoned(self.tz.clone()), true)
            .ok()
    }

    /// The first opening after `t`, in the window's time zone.
    pub fn next_opening(&self, t: Timestamp) -> Option<Zoned> {
        self.pattern
            .find_next_occurrence(&t.to_zoned(self.tz.clone()), false)
            .ok()
    }

    /// `t` as a wall-clock time in the window's time zone.
    pub fn local(&self, t: Timestamp) -> Zoned {
        t.to_zoned(self.tz.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, time_zone: &str, duration: &str) -> ScaleSchedule {
        ScaleSchedule {
            cron: cron.into(),
            time_zone: time_zone.into(),
            duration: duration.into(),
            min_replicas: 2,
        }
    }

    fn window(cron: &str, time_zone: &str) -> Window {
        parse(&schedule(cron, time_zone, "1h")).expect("a valid schedule")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp literal")
    }

    /// The next `n` openings after `from`, as local times with offsets.
    fn openings(w: &Window, from: &str, n: usize) -> Vec<String> {
        let mut t = at(from);
        let mut seen = Vec::new();
        for _ in 0..n {
            let z = w.next_opening(t).expect("an opening");
            seen.push(z.strftime("%Y-%m-%d %H:%M%:z").to_string());
            t = z.timestamp();
        }
        seen
    }

    #[test]
    fn a_valid_schedule_parses_with_the_canonical_zone_name() {
        let w = parse(&schedule("0 8 * * MON-FRI", "europe/berlin", "10h")).unwrap();
        assert_eq!(w.time_zone, "Europe/Berlin");
        assert_eq!(w.duration, Duration::from_secs(36_000));
        assert_eq!(w.min_replicas, 2);
        // Monday 2025-06-02 08:00 CEST is 06:00 UTC.
        let z = w.next_opening(at("2025-06-01T12:00:00Z")).unwrap();
        assert_eq!(z.timestamp(), at("2025-06-02T06:00:00Z"));
        // Inclusive backwards: at the very opening, that opening.
        assert_eq!(
            w.last_opening(at("2025-06-02T06:00:00Z"))
                .unwrap()
                .timestamp(),
            at("2025-06-02T06:00:00Z")
        );
        assert_eq!(
            w.last_opening(at("2025-06-02T05:59:59Z"))
                .unwrap()
                .timestamp(),
            at("2025-05-30T06:00:00Z"),
            "before Monday's opening, Friday's"
        );
    }

    #[test]
    fn bad_fields_are_named_with_a_hint() {
        for (cron, why) in [
            ("0 8 * *", "five fields"),
            ("0 8 * * * *", "five fields"),
            ("61 8 * * *", "five fields"),
            ("0 8 * * FUNDAY", "five fields"),
            ("", "five fields"),
            ("0 0 30 2 *", "matches no date"),
            ("0 0 31 4,6,9,11 *", "matches no date"),
        ] {
            let p = parse(&schedule(cron, "UTC", "1h")).expect_err(cron);
            assert_eq!(p.field, "cron", "{cron}");
            assert!(p.why.contains(why), "{cron}: {}", p.why);
        }
        // 29 February and the fifth Friday of February do happen.
        assert!(parse(&schedule("0 0 29 2 *", "UTC", "1h")).is_ok());
        assert!(parse(&schedule("0 0 * 2 5#5", "UTC", "1h")).is_ok());

        let p = parse(&schedule("0 8 * * *", "Europe/Berln", "1h")).unwrap_err();
        assert_eq!((p.field, p.value.as_str()), ("timeZone", "Europe/Berln"));
        assert!(p.why.contains("Europe/Berlin"), "{}", p.why);
        for bad in ["", "CEST+2"] {
            assert_eq!(
                parse(&schedule("0 8 * * *", bad, "1h")).unwrap_err().field,
                "timeZone"
            );
        }

        for (d, why) in [
            ("8 hours", "unknown unit"),
            ("fast", "not a duration"),
            ("1d", "unknown unit"),
            ("0s", "at least 1s"),
            ("745h", "744h"),
        ] {
            let p = parse(&schedule("0 8 * * *", "UTC", d)).unwrap_err();
            assert_eq!(p.field, "duration", "{d}");
            assert!(p.why.contains(why), "{d}: {}", p.why);
        }
        assert!(parse(&schedule("0 8 * * *", "UTC", "744h")).is_ok());
        assert!(parse(&schedule("0 8 * * *", "UTC", "1h30m")).is_ok());
    }

    #[test]
    fn every_zone_in_the_issue_and_tests_is_compiled_in() {
        for tz in ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"] {
            assert!(TZDB.get(tz).is_ok(), "{tz}");
        }
    }

    #[test]
    fn a_fixed_time_the_clocks_skip_opens_once_right_after_the_jump() {
        // Europe/Berlin, 2025-03-30: 02:00 CET jumps to 03:00 CEST.
        let w = window("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            openings(&w, "2025-03-28T12:00:00Z", 3),
            [
                "2025-03-29 02:30+01:00",
                "2025-03-30 03:00+02:00",
                "2025-03-31 02:30+02:00"
            ]
        );
        // America/New_York, 2025-03-09: 02:00 EST jumps to 03:00 EDT.
        let w = window("30 2 * * *", "America/New_York");
        assert_eq!(
            openings(&w, "2025-03-08T12:00:00Z", 2),
            ["2025-03-09 03:00-04:00", "2025-03-10 02:30-04:00"]
        );
        // Backwards gives the same instants.
        assert_eq!(
            w.last_opening(at("2025-03-09T08:00:00Z"))
                .unwrap()
                .timestamp(),
            at("2025-03-09T07:00:00Z")
        );
    }

    #[test]
    fn a_fixed_time_the_clocks_repeat_opens_once_at_its_first_occurrence() {
        // Europe/Berlin, 2025-10-26: 03:00 CEST goes back to 02:00 CET.
        let w = window("30 2 * * *", "Europe/Berlin");
        assert_eq!(
            openings(&w, "2025-10-25T12:00:00Z", 2),
            ["2025-10-26 02:30+02:00", "2025-10-27 02:30+01:00"]
        );
        // America/New_York, 2025-11-02: 02:00 EDT goes back to 01:00 EST.
        let w = window("30 1 * * *", "America/New_York");
        assert_eq!(
            openings(&w, "2025-11-01T12:00:00Z", 2),
            ["2025-11-02 01:30-04:00", "2025-11-03 01:30-05:00"]
        );
        // After the second 01:30 (06:30 UTC), the last opening is still the first.
        assert_eq!(
            w.last_opening(at("2025-11-02T06:45:00Z"))
                .unwrap()
                .timestamp(),
            at("2025-11-02T05:30:00Z")
        );
    }

    #[test]
    fn stepped_times_follow_the_wall_clock_through_a_change() {
        // Every 30 minutes in hour 2: none on the night it is skipped,
        // both passes on the night it is repeated.
        let w = window("*/30 2 * * *", "Europe/Berlin");
        assert_eq!(
            openings(&w, "2025-03-29T12:00:00Z", 2),
            ["2025-03-31 02:00+02:00", "2025-03-31 02:30+02:00"]
        );
        assert_eq!(
            openings(&w, "2025-10-25T12:00:00Z", 4),
            [
                "2025-10-26 02:00+02:00",
                "2025-10-26 02:30+02:00",
                "2025-10-26 02:00+01:00",
                "2025-10-26 02:30+01:00"
            ]
        );
    }
}
