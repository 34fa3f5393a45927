//! How long a function takes from zero to its first Ready pod, as the
//! autoscaler sees it: from the write that raised it from zero (its own
//! decision, an activation, or a rise it only saw in the Deployment) to the
//! first decision that reads a ready pod. Pure: instants are arguments.
//!
//! `scale.schedules` start pods that much ahead of a window. Decisions come
//! every `--autoscale-interval`, so a figure is late by up to one interval:
//! an overestimate, which errs on the side of being Ready early. The figures
//! live in memory only; after a restart (or for a function never woken
//! under this leader) `--default-cold-start` stands in until one is measured.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Cold starts remembered; the estimate is the slowest of them, since a
/// window that opens before its pods are Ready is what the lead prevents.
const KEPT: usize = 5;
/// The lead never exceeds this, whatever was measured (a stuck rollout
/// measured as a cold start must not start pods an hour early).
pub const MAX_LEAD: Duration = Duration::from_secs(15 * 60);

/// One function's recent cold starts, and the one under way.
#[derive(Clone, Debug, Default)]
pub struct ColdStarts {
    /// The last Deployment read had zero replicas.
    at_zero: bool,
    /// When the cold start under way began.
    since: Option<Instant>,
    recent: VecDeque<Duration>,
}

impl ColdStarts {
    /// A write raised the function from zero at `at` (this autoscaler's
    /// decision, or an activation it was told about). Ignored unless the
    /// last read saw it at zero: an activation for a running function
    /// starts nothing.
    pub fn woke(&mut self, at: Instant) {
        if self.at_zero && self.since.is_none() {
            self.since = Some(at);
        }
    }

    /// The Deployment as read at `now`: `current` replicas asked for,
    /// `ready` of them Ready.
    pub fn observe(&mut self, current: i32, ready: i32, now: Instant) {
        if ready > 0 {
            if let Some(since) = self.since.take() {
                if self.recent.len() == KEPT {
                    self.recent.pop_front();
                }
                self.recent.push_back(now.saturating_duration_since(since));
            }
            self.at_zero = false;
        } else if current <= 0 {
            // At zero (again): a cold start that never got a pod Ready is
            // no figure.
            self.at_zero = true;
            self.since = None;
        } else if self.at_zero && self.since.is_none() {
            // Raised by a writer this autoscaler did not hear from (a
            // standby's activation, `kubectl scale`): it started no later
            // than now.
            self.since = Some(now);
        }
    }

    /// The slowest of the recent cold starts, if any was measured.
    pub fn estimate(&self) -> Option<Duration> {
        self.recent.iter().max().copied()
    }
}

/// How far ahead of a window its pods are started: the cold start, a
/// quarter more for the variance between cold starts, and one decision
/// interval (the first decision inside the lead may come that much after
/// it begins); at most [`MAX_LEAD`].
pub fn lead(cold_start: Duration, interval: Duration) -> Duration {
    (cold_start + cold_start / 4 + interval).min(MAX_LEAD)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_wake_from_zero_is_timed_to_the_first_ready_pod() {
        let t0 = Instant::now();
        let mut c = ColdStarts::default();
        c.observe(0, 0, t0);
        c.woke(t0 + secs(1));
        c.observe(1, 0, t0 + secs(3));
        assert_eq!(c.estimate(), None, "no pod ready yet");
        c.observe(1, 1, t0 + secs(5));
        assert_eq!(c.estimate(), Some(secs(4)));
        // Running: an activation or more reads measure nothing more.
        c.woke(t0 + secs(6));
        c.observe(2, 1, t0 + secs(7));
        c.observe(2, 2, t0 + secs(9));
        assert_eq!(c.estimate(), Some(secs(4)));
    }

    #[test]
    fn a_rise_from_zero_by_another_writer_is_timed_from_when_it_was_seen() {
        let t0 = Instant::now();
        let mut c = ColdStarts::default();
        c.observe(0, 0, t0);
        c.observe(2, 0, t0 + secs(2));
        c.observe(2, 1, t0 + secs(10));
        assert_eq!(c.estimate(), Some(secs(8)));
    }

    #[test]
    fn a_function_never_seen_at_zero_measures_nothing() {
        // A fresh leader finds it at 1 with no pod ready (a rollout): that
        // is no cold start it can time.
        let t0 = Instant::now();
        let mut c = ColdStarts::default();
        c.woke(t0);
        c.observe(1, 0, t0 + secs(1));
        c.observe(1, 1, t0 + secs(30));
        assert_eq!(c.estimate(), None);
    }

    #[test]
    fn back_to_zero_before_a_pod_is_ready_is_no_figure() {
        let t0 = Instant::now();
        let mut c = ColdStarts::default();
        c.observe(0, 0, t0);
        c.woke(t0);
        c.observe(0, 0, t0 + secs(60));
        c.observe(1, 1, t0 + secs(61));
        assert_eq!(c.estimate(), None);
    }

    #[test]
    fn the_estimate_is_the_slowest_of_the_last_five() {
        let t0 = Instant::now();
        let mut c = ColdStarts::default();
        let mut t = t0;
        for took in [20, 3, 4, 5, 6, 7] {
            c.observe(0, 0, t);
            c.woke(t);
            t += secs(took);
            c.observe(1, 1, t);
            t += secs(100);
        }
        // 20 s fell out; the slowest of 3..=7 remains.
        assert_eq!(c.estimate(), Some(secs(7)));
    }

    #[test]
    fn the_lead_covers_the_cold_start_its_variance_and_one_decision() {
        assert_eq!(lead(secs(30), secs(2)), Duration::from_millis(39_500));
        assert_eq!(lead(secs(4), secs(2)), secs(7));
        assert_eq!(lead(secs(3600), secs(2)), MAX_LEAD);
    }
}
