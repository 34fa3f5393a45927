//! `scale.schedules` at one instant: which windows are open, the floor they
//! set and the window that sets it. Pure: the wall clock and the lead are
//! arguments, so every case (clock changes, overlaps, the lead) is tested
//! with fixed instants.
//!
//! A window counts from `lead` before each opening (pods take a cold start
//! to become Ready, so they are started that much early) until `duration`
//! after it. Openings before `now - duration` are looked at too: a window
//! that opened yesterday at 22:00 for 12h is open at 08:00. Where windows
//! overlap the highest `minReplicas` wins; on a tie, a window already open
//! is named before one that only starts ahead, then the first listed.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp, Zoned};
use siesta_api::schedule::Window;

/// The floor the open windows set, and the window that sets it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Floor {
    pub min_replicas: i32,
    /// The window, for `status.autoscaler.activeSchedule` and the reason,
    /// e.g. `schedules[1] "0 8 * * 1-5" Europe/Berlin until 18:00`.
    pub window: String,
}

/// Where one window stands at `now`.
#[derive(Clone, Debug, PartialEq)]
enum Phase {
    /// Opened and not yet closed; `until` is when the latest opening closes.
    Open { until: Zoned },
    /// Opens at `opens`, within the lead.
    Ahead { opens: Zoned },
}

/// The floor of the windows that count at `now`, or `None` when none does.
pub fn active_floor(windows: &[Window], now: Timestamp, lead: Duration) -> Option<Floor> {
    let mut best: Option<(i32, bool, usize, Phase)> = None;
    for (index, w) in windows.iter().enumerate() {
        let Some(phase) = phase(w, now, lead) else {
            continue;
        };
        let open = matches!(phase, Phase::Open { .. });
        let better = best
            .as_ref()
            .is_none_or(|(min, best_open, _, _)| (w.min_replicas, open) > (*min, *best_open));
        if better {
            best = Some((w.min_replicas, open, index, phase));
        }
    }
    let (min_replicas, _, index, phase) = best?;
    Some(Floor {
        min_replicas,
        window: describe(index, &windows[index], &phase, now, lead),
    })
}

fn phase(w: &Window, now: Timestamp, lead: Duration) -> Option<Phase> {
    let length = SignedDuration::try_from(w.duration).ok()?;
    let lead = SignedDuration::try_from(lead).ok()?;
    let open_until = w
        .last_opening(now)
        .and_then(|last| last.checked_add(length).ok())
        .filter(|until| now < until.timestamp());
    let ahead = w
        .next_opening(now)
        .filter(|next| next.timestamp().checked_sub(lead).is_ok_and(|t| t <= now));
    match (open_until, ahead) {
        // Open now, and the next opening is already within the lead: the
        // window stays open through it.
        (Some(until), Some(next)) => {
            let next_until = next.checked_add(length).ok()?;
            Some(Phase::Open {
                until: if next_until > until {
                    next_until
                } else {
                    until
                },
            })
        }
        (Some(until), None) => Some(Phase::Open { until }),
        (None, Some(opens)) => Some(Phase::Ahead { opens }),
        (None, None) => None,
    }
}

/// `schedules[i] "cron" Zone until 18:00`, or `... opens at 08:00 (pods
/// start 40s ahead)`; the time is local to the window's zone, with its date
/// when that is not today there.
fn describe(index: usize, w: &Window, phase: &Phase, now: Timestamp, lead: Duration) -> String {
    let head = format!("schedules[{index}] {:?} {}", w.cron, w.time_zone);
    let today = w.local(now).date();
    match phase {
        Phase::Open { until } => format!("{head} until {}", clock(until, today)),
        Phase::Ahead { opens } => format!(
            "{head} opens at {} (pods start {}s ahead for the cold start)",
            clock(opens, today),
            lead.as_secs()
        ),
    }
}

fn clock(t: &Zoned, today: jiff::civil::Date) -> String {
    let time = if t.second() == 0 { "%H:%M" } else { "%H:%M:%S" };
    if t.date() == today {
        t.strftime(time).to_string()
    } else {
        t.strftime(&format!("%Y-%m-%d {time}")).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use siesta_api::ScaleSchedule;

    fn window(cron: &str, time_zone: &str, duration: &str, min_replicas: i32) -> Window {
        siesta_api::schedule::parse(&ScaleSchedule {
            cron: cron.into(),
            time_zone: time_zone.into(),
            duration: duration.into(),
            min_replicas,
        })
        .expect("a valid schedule")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp literal")
    }

    const LEAD: Duration = Duration::from_secs(40);

    fn floor_at(windows: &[Window], now: &str) -> Option<(i32, String)> {
        active_floor(windows, at(now), LEAD).map(|f| (f.min_replicas, f.window))
    }

    #[test]
    fn a_window_counts_from_the_lead_before_it_opens_until_it_closes() {
        // 08:00–18:00 Europe/Berlin on weekdays; 2025-06-02 is a Monday (CEST, +02:00).
        let w = [window("0 8 * * 1-5", "Europe/Berlin", "10h", 3)];
        assert_eq!(floor_at(&w, "2025-06-02T05:59:19Z"), None, "41 s before");
        assert_eq!(
            floor_at(&w, "2025-06-02T05:59:20Z"),
            Some((
                3,
                r#"schedules[0] "0 8 * * 1-5" Europe/Berlin opens at 08:00 (pods start 40s ahead for the cold start)"#
                    .to_string()
            )),
            "exactly the lead before"
        );
        assert_eq!(
            floor_at(&w, "2025-06-02T06:00:00Z"),
            Some((
                3,
                r#"schedules[0] "0 8 * * 1-5" Europe/Berlin until 18:00"#.to_string()
            ))
        );
        assert_eq!(floor_at(&w, "2025-06-02T15:59:59Z").map(|f| f.0), Some(3));
        assert_eq!(
            floor_at(&w, "2025-06-02T16:00:00Z"),
            None,
            "closed at 18:00"
        );
        // Saturday: no window, not even ahead of Monday's.
        assert_eq!(floor_at(&w, "2025-06-07T06:00:00Z"), None);
    }

    #[test]
    fn a_window_that_opened_yesterday_is_still_open() {
        let w = [window("0 22 * * *", "UTC", "12h", 2)];
        assert_eq!(
            floor_at(&w, "2025-06-03T08:00:00Z"),
            Some((
                2,
                r#"schedules[0] "0 22 * * *" UTC until 10:00"#.to_string()
            ))
        );
        // Before midnight the end is tomorrow, so it carries the date.
        assert_eq!(
            floor_at(&w, "2025-06-02T23:00:00Z").unwrap().1,
            r#"schedules[0] "0 22 * * *" UTC until 2025-06-03 10:00"#
        );
        assert_eq!(floor_at(&w, "2025-06-03T10:00:00Z"), None);
    }

    #[test]
    fn overlapping_windows_take_the_highest_floor_and_name_its_window() {
        let w = [
            window("0 8 * * *", "UTC", "10h", 2),
            window("0 12 * * *", "UTC", "2h", 5),
            window("0 13 * * *", "UTC", "2h", 1),
        ];
        assert_eq!(floor_at(&w, "2025-06-02T09:00:00Z").unwrap().0, 2);
        let (min, name) = floor_at(&w, "2025-06-02T13:30:00Z").unwrap();
        assert_eq!(min, 5);
        assert!(name.starts_with("schedules[1] \"0 12 * * *\""), "{name}");
        // schedules[1] closed at 14:00; schedules[0] (2) beats schedules[2] (1).
        let (min, name) = floor_at(&w, "2025-06-02T14:30:00Z").unwrap();
        assert_eq!(min, 2);
        assert!(name.starts_with("schedules[0]"), "{name}");
        // At 18:00 all three have closed, and none opens within the lead.
        assert_eq!(floor_at(&w, "2025-06-02T18:00:00Z"), None);
    }

    #[test]
    fn on_a_tie_the_open_window_is_named_before_one_starting_ahead() {
        let w = [
            window("0 9 * * *", "UTC", "1h", 2),
            window("0 8 * * *", "UTC", "2h", 2),
        ];
        let (_, name) = floor_at(&w, "2025-06-02T08:59:30Z").unwrap();
        assert!(name.starts_with("schedules[1]"), "{name}");
    }

    #[test]
    fn a_window_that_reopens_within_the_lead_stays_open_through_it() {
        // Every 10 minutes for 10 minutes: always open, closing 10 minutes
        // after the opening that is about to come.
        let w = [window("*/10 * * * *", "UTC", "10m", 1)];
        assert_eq!(
            floor_at(&w, "2025-06-02T08:09:30Z").unwrap().1,
            r#"schedules[0] "*/10 * * * *" UTC until 08:20"#
        );
    }

    #[test]
    fn spring_forward_opens_a_skipped_time_right_after_the_jump() {
        // Europe/Berlin, Sunday 2025-03-30: 02:00 CET (01:00 UTC) jumps to
        // 03:00 CEST. "30 2" opens at 03:00 CEST = 01:00 UTC, for 1h of
        // elapsed time: until 04:00 CEST.
        let w = [window("30 2 * * *", "Europe/Berlin", "1h", 2)];
        assert_eq!(floor_at(&w, "2025-03-30T00:59:19Z"), None);
        assert_eq!(floor_at(&w, "2025-03-30T00:59:20Z").unwrap().0, 2);
        assert_eq!(
            floor_at(&w, "2025-03-30T01:30:00Z").unwrap().1,
            r#"schedules[0] "30 2 * * *" Europe/Berlin until 04:00"#
        );
        assert_eq!(floor_at(&w, "2025-03-30T02:00:00Z"), None);
        // America/New_York, 2025-03-09: 02:00 EST (07:00 UTC) jumps to 03:00 EDT.
        let w = [window("30 2 * * *", "America/New_York", "30m", 4)];
        assert_eq!(floor_at(&w, "2025-03-09T06:59:00Z").map(|f| f.0), None);
        assert_eq!(
            floor_at(&w, "2025-03-09T07:00:00Z").unwrap().1,
            r#"schedules[0] "30 2 * * *" America/New_York until 03:30"#
        );
        assert_eq!(floor_at(&w, "2025-03-09T07:30:00Z"), None);
        // The next day it is 02:30 EDT again (06:30 UTC).
        assert_eq!(floor_at(&w, "2025-03-10T06:30:00Z").unwrap().0, 4);
    }

    #[test]
    fn fall_back_opens_a_repeated_time_once() {
        // Europe/Berlin, 2025-10-26: 03:00 CEST (01:00 UTC) goes back to
        // 02:00 CET. "30 2" opens at the first 02:30 (00:30 UTC) for 1h:
        // until 02:30 CET (01:30 UTC); the second 02:30 opens nothing.
        let w = [window("30 2 * * *", "Europe/Berlin", "1h", 2)];
        assert_eq!(floor_at(&w, "2025-10-26T00:29:59Z").unwrap().0, 2, "ahead");
        assert_eq!(
            floor_at(&w, "2025-10-26T00:30:00Z").unwrap().1,
            r#"schedules[0] "30 2 * * *" Europe/Berlin until 02:30"#
        );
        assert_eq!(floor_at(&w, "2025-10-26T01:29:59Z").unwrap().0, 2);
        assert_eq!(floor_at(&w, "2025-10-26T01:30:00Z"), None);
        assert_eq!(floor_at(&w, "2025-10-26T02:00:00Z"), None);
        // America/New_York, 2025-11-02: 02:00 EDT (06:00 UTC) goes back to
        // 01:00 EST. "0 1" for 3h opens at the first 01:00 (05:00 UTC) and
        // closes 3 elapsed hours later, at 03:00 EST (08:00 UTC).
        let w = [window("0 1 * * *", "America/New_York", "3h", 3)];
        assert_eq!(floor_at(&w, "2025-11-02T05:00:00Z").unwrap().0, 3);
        assert_eq!(
            floor_at(&w, "2025-11-02T06:30:00Z").unwrap().1,
            r#"schedules[0] "0 1 * * *" America/New_York until 03:00"#
        );
        assert_eq!(floor_at(&w, "2025-11-02T07:59:59Z").unwrap().0, 3);
        assert_eq!(floor_at(&w, "2025-11-02T08:00:00Z"), None);
    }

    #[test]
    fn a_window_across_a_clock_change_lasts_its_elapsed_duration() {
        // 22:00 CET on Saturday 2025-03-29 (21:00 UTC) for 10h: 10 elapsed
        // hours later is 07:00 UTC, which is 09:00 CEST (not 08:00).
        let w = [window("0 22 * * *", "Europe/Berlin", "10h", 1)];
        assert_eq!(
            floor_at(&w, "2025-03-30T06:00:00Z").unwrap().1,
            r#"schedules[0] "0 22 * * *" Europe/Berlin until 09:00"#
        );
        assert_eq!(floor_at(&w, "2025-03-30T07:00:00Z"), None);
    }

    #[test]
    fn no_windows_no_floor() {
        assert_eq!(active_floor(&[], at("2025-06-02T06:00:00Z"), LEAD), None);
    }
}
