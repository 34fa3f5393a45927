//! Restart back-off for crashed containers, as the kubelet does it but
//! shorter: 1 s doubling to 30 s, reset after 10 s of clean running.

use std::time::Duration;

pub const INITIAL: Duration = Duration::from_secs(1);
pub const MAX: Duration = Duration::from_secs(30);
pub const RESET_AFTER: Duration = Duration::from_secs(10);

/// The wait before the next start, given the last wait and how long the
/// container ran before it exited.
pub fn next_delay(previous: Option<Duration>, ran_for: Duration) -> Duration {
    match previous {
        _ if ran_for >= RESET_AFTER => INITIAL,
        None => INITIAL,
        Some(d) => (d * 2).min(MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut d = None;
        let mut seen = vec![];
        for _ in 0..8 {
            let next = next_delay(d, Duration::from_millis(100));
            seen.push(next.as_secs());
            d = Some(next);
        }
        assert_eq!(seen, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn resets_after_a_clean_run() {
        assert_eq!(next_delay(Some(MAX), Duration::from_secs(11)), INITIAL);
    }
}
