//! The retry delay of every watch Siesta runs (activator and controller).
//!
//! kube's default doubles from 0.8 s up to 30 s, so after a 30 s apiserver
//! outage a watch could wait another ~20 s before it looked again, and a
//! cold request parked meanwhile waited with it. Watches here are few
//! (a handful per process), so retrying often costs the apiserver little:
//! the delay doubles from 250 ms and stops at 5 s, and a watch that works
//! again starts from 250 ms at its next failure.

use std::time::Duration;

use kube::runtime::utils::Backoff;

const FIRST: Duration = Duration::from_millis(250);
const MAX: Duration = Duration::from_secs(5);

/// 250 ms, 500 ms, 1 s, 2 s, 4 s, then 5 s for as long as it fails.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = (self.next * 2).min(MAX);
        Some(now)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_five_seconds_and_resets() {
        let mut b = WatchBackoff::default();
        let ms: Vec<u128> = b.by_ref().take(7).map(|d| d.as_millis()).collect();
        assert_eq!(ms, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next(), Some(FIRST));
    }
}
