//! What this activator sees of one cold start, as it happens: the ends of
//! the phases it can measure (arrival, the activation answered, the pod
//! seen Ready, the queue released, the first byte out), made into the
//! report the controller records (`siesta_api::cold_start`).
//!
//! Pure state with explicit times; the function's entry drives it under its
//! lock. Times are tokio `Instant`s made into Unix milliseconds through one
//! anchor taken at first use, so every end of one record is on one clock
//! (and a paused test clock still gives consistent durations).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use siesta_api::cold_start::ColdStartReport;
use tokio::time::Instant;

/// Unix milliseconds of `at`, on this process's one anchor.
pub fn unix_ms(at: Instant) -> i64 {
    static ANCHOR: OnceLock<(Instant, i64)> = OnceLock::new();
    let (base, base_ms) = *ANCHOR.get_or_init(|| {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        (Instant::now(), ms)
    });
    if at >= base {
        base_ms.saturating_add(i64::try_from((at - base).as_millis()).unwrap_or(i64::MAX))
    } else {
        base_ms.saturating_sub(i64::try_from((base - at).as_millis()).unwrap_or(i64::MAX))
    }
}

/// One function's cold start in progress, then released and waiting for
/// its first byte.
#[derive(Debug, Default)]
pub struct ColdRecord {
    arrived: Option<Instant>,
    scale_written: Option<Instant>,
    ready: Option<Instant>,
    /// Released: the report, waiting for the first response byte.
    released: Option<ColdStartReport>,
}

impl ColdRecord {
    /// The first request parked with no pod. A new cold start replaces a
    /// released one whose first byte never came.
    pub fn arrived(&mut self, now: Instant) {
        if self.arrived.is_none() {
            *self = ColdRecord {
                arrived: Some(now),
                ..ColdRecord::default()
            };
        }
    }

    /// The activation signal was answered 2xx.
    pub fn scale_written(&mut self, now: Instant) {
        if self.arrived.is_some() && self.scale_written.is_none() {
            self.scale_written = Some(now);
        }
    }

    /// A pod was seen Ready.
    pub fn ready(&mut self, now: Instant) {
        if self.arrived.is_some() && self.ready.is_none() {
            self.ready = Some(now);
        }
    }

    /// The pod answered the probe and `parked` requests were released to it.
    pub fn released(&mut self, pod: SocketAddr, parked: usize, now: Instant) {
        let Some(arrived) = self.arrived.take() else {
            return;
        };
        self.released = Some(ColdStartReport {
            arrived_ms: unix_ms(arrived),
            scale_written_ms: self.scale_written.take().map(unix_ms),
            ready_ms: unix_ms(self.ready.take().unwrap_or(now)),
            released_ms: unix_ms(now),
            first_byte_ms: None,
            pod_addr: pod.to_string(),
            parked: u32::try_from(parked).unwrap_or(u32::MAX),
        });
    }

    /// The first response head of a released request went out: the report,
    /// once.
    pub fn first_byte(&mut self, now: Instant) -> Option<ColdStartReport> {
        let mut r = self.released.take()?;
        r.first_byte_ms = Some(unix_ms(now));
        Some(r)
    }

    /// The wake was refused or the function deleted: nothing to report.
    pub fn abandon(&mut self) {
        *self = ColdRecord::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pod() -> SocketAddr {
        SocketAddr::from(([10, 244, 0, 7], 8080))
    }

    #[test]
    fn a_whole_cold_start_is_reported_once_with_every_end() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut r = ColdRecord::default();
        r.arrived(at(0));
        r.arrived(at(5)); // a second parked request changes nothing
        r.scale_written(at(12));
        r.ready(at(1_500));
        r.ready(at(1_600));
        r.released(pod(), 3, at(1_505));
        let rep = r.first_byte(at(1_509)).expect("a report");
        // Each end is truncated to its millisecond on its own, so a
        // difference may be one short.
        let near =
            |got: i64, want: i64| assert!((want - 1..=want).contains(&got), "{got} vs {want}");
        near(rep.scale_written_ms.unwrap() - rep.arrived_ms, 12);
        near(rep.ready_ms - rep.arrived_ms, 1_500);
        near(rep.released_ms - rep.arrived_ms, 1_505);
        near(rep.first_byte_ms.unwrap() - rep.arrived_ms, 1_509);
        assert_eq!((rep.pod_addr.as_str(), rep.parked), ("10.244.0.7:8080", 3));
        assert!(r.first_byte(at(1_600)).is_none(), "once");
    }

    #[test]
    fn nothing_is_reported_without_a_cold_start_or_after_abandoning_it() {
        let now = Instant::now();
        let mut r = ColdRecord::default();
        r.scale_written(now);
        r.ready(now);
        r.released(pod(), 1, now);
        assert!(r.first_byte(now).is_none());
        r.arrived(now);
        r.abandon();
        r.released(pod(), 1, now);
        assert!(r.first_byte(now).is_none());
    }

    #[test]
    fn a_missing_ready_sighting_takes_the_release_time() {
        let now = Instant::now();
        let mut r = ColdRecord::default();
        r.arrived(now);
        r.released(pod(), 1, now + Duration::from_millis(40));
        let rep = r.first_byte(now + Duration::from_millis(41)).unwrap();
        assert_eq!(rep.ready_ms, rep.released_ms);
        assert_eq!(rep.scale_written_ms, None);
    }
}
