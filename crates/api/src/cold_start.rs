//! The record of one cold start: when each phase of a wake from zero ended,
//! as the activator and the cluster saw it, made into durations that add up
//! to exactly what the first client waited.
//!
//! The activator measures, on its own clock, the ends it sees: the request
//! arrived, the activation signal was answered (the controller answers it
//! once its scale write returned), the pod turned Ready in its watch, the
//! queue was released (the pod answered the probe), the first byte went to
//! the client. It reports them to the controller ([`ColdStartReport`], over
//! the activation channel; the activator never writes to the API). The
//! controller adds what only the pod's status says — scheduled, container
//! started, at the apiserver's one-second precision — and writes
//! [`ColdStartStatus`] as `status.lastColdStart`.
//!
//! Pure: [`phases`] orders and clamps the ends (a coarse or missing one
//! takes the nearest precise neighbour), so the phases never go negative and
//! their sum is always `first byte - arrival`.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The phases of a cold start, in order; each ends at the moment named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    ScaleWrite,
    Schedule,
    ContainerStart,
    Ready,
    Release,
    FirstByte,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::ScaleWrite,
        Phase::Schedule,
        Phase::ContainerStart,
        Phase::Ready,
        Phase::Release,
        Phase::FirstByte,
    ];

    /// The field and metric label name.
    pub fn name(self) -> &'static str {
        match self {
            Phase::ScaleWrite => "scaleWrite",
            Phase::Schedule => "schedule",
            Phase::ContainerStart => "containerStart",
            Phase::Ready => "ready",
            Phase::Release => "release",
            Phase::FirstByte => "firstByte",
        }
    }

    /// What happened at the phase's end, for people.
    pub fn sentence(self) -> &'static str {
        match self {
            Phase::ScaleWrite => "the controller's scale write returned",
            Phase::Schedule => "the pod was scheduled",
            Phase::ContainerStart => "its container started",
            Phase::Ready => "it turned Ready",
            Phase::Release => "it answered the probe and the queue was released",
            Phase::FirstByte => "the first response byte went to the client",
        }
    }
}

/// What the activator saw of one cold start, in Unix milliseconds of its
/// clock. Sent as JSON to `POST /v1/coldstart/{namespace}/{name}`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ColdStartReport {
    /// The first request parked with no pod.
    pub arrived_ms: i64,
    /// The activation signal was answered 2xx (after the scale write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_written_ms: Option<i64>,
    /// The pod was seen Ready.
    pub ready_ms: i64,
    /// The pod answered the probe; parked requests were sent to it.
    pub released_ms: i64,
    /// The first released request's response head went to its client;
    /// none when it got no response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_byte_ms: Option<i64>,
    /// The pod's address (`IP:port`), to find its status.
    pub pod_addr: String,
    /// Requests parked when the queue was released.
    pub parked: u32,
}

/// `status.lastColdStart`: each phase of the last wake from zero as a
/// duration (`850ms`, `1.204s`), ending at the moment its name says.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColdStartStatus {
    /// When the first request arrived (RFC 3339, milliseconds).
    pub at: String,
    /// Arrival to the first response byte: the sum of the phases.
    pub total: String,
    /// The phase that took longest.
    pub slowest: String,
    /// The pod that took the first requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub scale_write: String,
    pub schedule: String,
    pub container_start: String,
    pub ready: String,
    pub release: String,
    pub first_byte: String,
}

impl ColdStartStatus {
    pub fn new(at: String, pod: Option<String>, d: &[Duration; 6]) -> Self {
        let total: Duration = d.iter().sum();
        let f = |p: Phase| format_duration(d[p as usize]);
        Self {
            at,
            total: format_duration(total),
            slowest: slowest(d).name().to_string(),
            pod,
            scale_write: f(Phase::ScaleWrite),
            schedule: f(Phase::Schedule),
            container_start: f(Phase::ContainerStart),
            ready: f(Phase::Ready),
            release: f(Phase::Release),
            first_byte: f(Phase::FirstByte),
        }
    }

    /// The phases in order, as written.
    pub fn phases(&self) -> [(Phase, &str); 6] {
        [
            (Phase::ScaleWrite, self.scale_write.as_str()),
            (Phase::Schedule, self.schedule.as_str()),
            (Phase::ContainerStart, self.container_start.as_str()),
            (Phase::Ready, self.ready.as_str()),
            (Phase::Release, self.release.as_str()),
            (Phase::FirstByte, self.first_byte.as_str()),
        ]
    }
}

/// How many cold starts `status.recentColdStarts` keeps.
pub const RECENT_COLD_STARTS: usize = 20;

/// One entry of `status.recentColdStarts`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RecentColdStart {
    /// When the first request arrived (RFC 3339, milliseconds).
    pub at: String,
    /// Arrival to the first response byte.
    pub total: String,
}

/// `recent` with `latest` appended, the oldest dropped past
/// [`RECENT_COLD_STARTS`]. A report sent twice (same `at`) is kept once.
pub fn append_recent(recent: &[RecentColdStart], latest: &ColdStartStatus) -> Vec<RecentColdStart> {
    let mut out: Vec<RecentColdStart> = recent
        .iter()
        .filter(|r| r.at != latest.at)
        .cloned()
        .collect();
    out.push(RecentColdStart {
        at: latest.at.clone(),
        total: latest.total.clone(),
    });
    let excess = out.len().saturating_sub(RECENT_COLD_STARTS);
    out.drain(..excess);
    out
}

/// The ends of the phases, in Unix milliseconds; `None` where unknown.
/// `arrived` and `first_byte` are the activator's and always known.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ends {
    pub arrived: i64,
    pub scale_written: Option<i64>,
    pub scheduled: Option<i64>,
    pub started: Option<i64>,
    pub ready: Option<i64>,
    pub released: Option<i64>,
    pub first_byte: i64,
}

/// The phases' durations, in [`Phase::ALL`] order. Each end is clamped
/// between the one before it and the next end the activator measured (the
/// pod status's whole seconds are the coarse ones; an unknown end takes the
/// one before it: a zero phase), so the durations are never negative and
/// add up to `first_byte - arrived` exactly.
pub fn phases(e: &Ends) -> [Duration; 6] {
    let first_byte = e.first_byte.max(e.arrived);
    // (end, measured by the activator to the millisecond)
    let ends = [
        (e.scale_written, true),
        (e.scheduled, false),
        (e.started, false),
        (e.ready, true),
        (e.released, true),
        (Some(first_byte), true),
    ];
    let mut out = [Duration::ZERO; 6];
    let mut prev = e.arrived;
    for i in 0..ends.len() {
        let next_precise = ends[i + 1..]
            .iter()
            .filter(|(_, precise)| *precise)
            .find_map(|(end, _)| *end)
            .unwrap_or(first_byte)
            .max(prev);
        let end = ends[i].0.unwrap_or(prev).clamp(prev, next_precise);
        out[i] = Duration::from_millis(u64::try_from(end - prev).unwrap_or(0));
        prev = end;
    }
    out
}

/// The longest phase (the first of equals).
pub fn slowest(d: &[Duration; 6]) -> Phase {
    let mut best = 0;
    for i in 1..d.len() {
        if d[i] > d[best] {
            best = i;
        }
    }
    Phase::ALL[best]
}

/// `850ms` below a second, `1.204s` from a second on.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{}.{:03}s", ms / 1000, ms % 1000)
    }
}

/// The inverse of [`format_duration`], to the millisecond (also accepts
/// what [`crate::duration::parse`] does).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let d = crate::duration::parse(s).ok()?;
    Some(Duration::from_millis(
        (d.as_secs_f64() * 1000.0).round() as u64
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: &[u64; 6]) -> [Duration; 6] {
        v.map(Duration::from_millis)
    }

    #[test]
    fn known_ends_give_the_gaps_between_them() {
        let e = Ends {
            arrived: 1_000,
            scale_written: Some(1_012),
            scheduled: Some(1_100),
            started: Some(1_900),
            ready: Some(2_300),
            released: Some(2_305),
            first_byte: 2_309,
        };
        let d = phases(&e);
        assert_eq!(d, ms(&[12, 88, 800, 400, 5, 4]));
        assert_eq!(d.iter().sum::<Duration>(), Duration::from_millis(1_309));
        assert_eq!(slowest(&d), Phase::ContainerStart);
    }

    #[test]
    fn coarse_ends_are_clamped_between_their_precise_neighbours() {
        // The pod's status says it was scheduled at second 1 and started at
        // second 2 (truncated), before the scale write returned at 1.012 and
        // after it turned Ready at 1.950: clamped, never negative.
        let e = Ends {
            arrived: 1_000,
            scale_written: Some(1_012),
            scheduled: Some(1_000),
            started: Some(2_000),
            ready: Some(1_950),
            released: Some(1_960),
            first_byte: 1_970,
        };
        let d = phases(&e);
        assert_eq!(d, ms(&[12, 0, 938, 0, 10, 10]));
        assert_eq!(d.iter().sum::<Duration>(), Duration::from_millis(970));
    }

    #[test]
    fn unknown_ends_make_zero_phases_and_the_sum_still_holds() {
        let e = Ends {
            arrived: 5_000,
            first_byte: 6_500,
            released: Some(6_400),
            ..Ends::default()
        };
        let d = phases(&e);
        assert_eq!(d, ms(&[0, 0, 0, 0, 1_400, 100]));
        // Even with the first byte before the arrival (clock trouble).
        let d = phases(&Ends {
            arrived: 5_000,
            first_byte: 4_000,
            ready: Some(4_500),
            ..Ends::default()
        });
        assert_eq!(d.iter().sum::<Duration>(), Duration::ZERO);
    }

    #[test]
    fn durations_read_as_people_write_them_and_parse_back() {
        assert_eq!(format_duration(Duration::from_millis(850)), "850ms");
        assert_eq!(format_duration(Duration::from_millis(1_204)), "1.204s");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        for ms in [0u64, 7, 999, 1000, 1204, 61_000] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse_duration(&format_duration(d)), Some(d), "{ms}");
        }
    }

    #[test]
    fn recent_cold_starts_keep_the_last_twenty_once_each() {
        let status = |i: usize| {
            ColdStartStatus::new(
                format!("2026-12-01T10:{i:02}:00.000Z"),
                None,
                &ms(&[i as u64, 0, 0, 0, 0, 0]),
            )
        };
        let mut recent = Vec::new();
        for i in 0..25 {
            recent = append_recent(&recent, &status(i));
        }
        assert_eq!(recent.len(), RECENT_COLD_STARTS);
        assert_eq!(recent[0].at, "2026-12-01T10:05:00.000Z");
        assert_eq!(recent[19].total, "24ms");
        // The same report again replaces its entry instead of counting twice.
        let again = append_recent(&recent, &status(24));
        assert_eq!(again, recent);
    }

    #[test]
    fn the_status_names_the_slowest_phase_and_the_total() {
        let s = ColdStartStatus::new(
            "2026-12-01T10:00:00.000Z".into(),
            Some("hello-abc".into()),
            &ms(&[12, 88, 800, 400, 5, 4]),
        );
        assert_eq!(s.total, "1.309s");
        assert_eq!(s.slowest, "containerStart");
        assert_eq!(s.phases()[2], (Phase::ContainerStart, "800ms"));
    }
}
