//! The scaling decision, KPA style: a pure function of a function's metric
//! history, its `scale` spec, its current replica counts and the time. No IO
//! and no clock of its own, so every window is tested with a fake clock.
//!
//! The rules, in the order they are applied:
//! 1. the stable window (`stableWindowSeconds`) and the panic window
//!    (`panicWindowPercent` of it) each give an average of the metric;
//! 2. panic starts when the panic-window demand reaches
//!    `panicThresholdPercent` of the current capacity (ready pods × target)
//!    and ends only after a whole stable window without that trigger; in
//!    panic the panic-window average decides and nothing scales down;
//! 3. at zero demand the count may reach zero only when `minReplicas` is 0
//!    and no `scale.schedules` window holds a floor above 0, no request was
//!    counted (and no activation came) for `scaleToZeroAfterSeconds`, and
//!    nothing is queued or in flight;
//! 4. `scaleDownDelaySeconds`: the highest count wanted over the delay wins;
//! 5. with less than a stable window of unbroken data (a restart, a fresh
//!    leader, a metrics outage) nothing scales down;
//! 6. a scale-down at most halves the count per decision;
//! 7. `[minReplicas, maxReplicas]` clamps the result, where an open window
//!    of `scale.schedules` raises `minReplicas` to its floor ([`Floor`],
//!    computed by the caller from the wall clock: this stays pure).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use siesta_api::{ScaleMetric, ScaleSpec};

pub use super::schedule::Floor;

/// One observation of a function's traffic, summed over all activators,
/// covering the `dt` before `at`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub at: Instant,
    /// How long the sample covers; averages weigh samples by it.
    pub dt: Duration,
    /// Requests per second over `dt`.
    pub rps: f64,
    /// Average in-flight requests (parked or proxied) over `dt`.
    pub concurrency: f64,
    /// Requests counted over `dt` (a counter delta, not a gauge).
    pub requests: f64,
}

/// Stable or panic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Stable,
    Panic,
}

impl Mode {
    /// The value of `status.autoscaler.mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Stable => "stable",
            Mode::Panic => "panic",
        }
    }
}

/// What the decision concluded, and why, in words a user reads on the status.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub desired: i32,
    pub mode: Mode,
    /// Stable-window average concurrency.
    pub concurrency: f64,
    /// Stable-window average requests per second.
    pub rps: f64,
    pub reason: String,
    /// This decision entered panic mode (for the PanicEntered event).
    pub panic_entered: bool,
    /// The window of `scale.schedules` that sets the floor, if one is open
    /// (for `status.autoscaler.activeSchedule`).
    pub schedule: Option<String>,
}

/// A function's metric history and the decision's own memory (panic state,
/// recent desired counts for the scale-down delay).
#[derive(Clone, Debug)]
pub struct History {
    samples: VecDeque<Sample>,
    /// Start of the current stretch of unbroken data; `None` until the
    /// first sample after creation or after a gap.
    data_since: Option<Instant>,
    /// The last time a request was counted or an activation arrived.
    last_demand: Option<Instant>,
    /// The replica count the previous decision saw.
    seen_replicas: Option<i32>,
    in_flight: f64,
    queued: f64,
    /// While in panic: the last time the trigger held.
    panic_since: Option<Instant>,
    /// The highest count decided during the current panic.
    panic_peak: i32,
    /// Counts wanted recently, for `scaleDownDelaySeconds`.
    wanted: VecDeque<(Instant, i32)>,
}

/// Longest history kept: the largest stable window (3600 s, the schema's
/// bound) plus slack; older samples can never be read.
const RETENTION: Duration = Duration::from_secs(3700);

impl Default for History {
    fn default() -> Self {
        Self::new()
    }
}

impl History {
    /// A fresh history: as after a restart, it knows nothing, so it allows
    /// no scale-down until it has seen a stable window of data.
    pub fn new() -> Self {
        Self {
            samples: VecDeque::new(),
            data_since: None,
            last_demand: None,
            seen_replicas: None,
            in_flight: 0.0,
            queued: 0.0,
            panic_since: None,
            panic_peak: 0,
            wanted: VecDeque::new(),
        }
    }

    /// Adds a sample (samples must come in time order) and the gauges read with it.
    pub fn record(&mut self, sample: Sample, in_flight: f64, queued: f64) {
        if self.data_since.is_none() {
            self.data_since = Some(sample.at.checked_sub(sample.dt).unwrap_or(sample.at));
        }
        if sample.requests > 0.0 {
            self.last_demand = Some(sample.at);
        }
        self.in_flight = in_flight.max(0.0);
        self.queued = queued.max(0.0);
        self.samples.push_back(sample);
        while self
            .samples
            .front()
            .is_some_and(|s| sample.at.saturating_duration_since(s.at) > RETENTION)
        {
            self.samples.pop_front();
        }
    }

    /// Some metrics could not be read: what was not seen may have been
    /// traffic, so the unbroken stretch starts again (no scale-down until a
    /// new stable window of data). Gauges keep their last values.
    pub fn gap(&mut self) {
        self.data_since = None;
    }

    /// An activator asked to wake the function: that is a request, even
    /// before any metric shows it, so the idle timer starts again.
    pub fn activation(&mut self, now: Instant) {
        self.last_demand = Some(self.last_demand.map_or(now, |t| t.max(now)));
    }

    /// Weighted averages (concurrency, rps) of the samples within `window`
    /// before `now`; the latest sample alone when none falls inside (a panic
    /// window shorter than the sampling interval).
    fn averages(&self, now: Instant, window: Duration) -> (f64, f64) {
        let start = now.checked_sub(window);
        let (mut c, mut r, mut w) = (0.0, 0.0, 0.0);
        for s in self.samples.iter().rev() {
            if start.is_some_and(|start| s.at <= start) {
                break;
            }
            let dt = s.dt.as_secs_f64().max(1e-3);
            c += s.concurrency * dt;
            r += s.rps * dt;
            w += dt;
        }
        if w == 0.0 {
            return self
                .samples
                .back()
                .map_or((0.0, 0.0), |s| (s.concurrency, s.rps));
        }
        (c / w, r / w)
    }
}

/// What the decision needs besides the history.
#[derive(Clone, Copy, Debug)]
pub struct Replicas {
    /// The Deployment's `spec.replicas`: what is asked for now.
    pub current: i32,
    /// Pods ready now: the capacity that serves the load.
    pub ready: i32,
}

fn secs(seconds: i32) -> Duration {
    Duration::from_secs(u64::try_from(seconds).unwrap_or(0))
}

/// Pods needed to serve `value` at `target` per pod; a hair of tolerance so
/// that 20.0000001 / 10 is 2, not 3.
fn pods_for(value: f64, target: f64) -> i32 {
    let pods = (value / target - 1e-9).ceil();
    if pods.is_nan() || pods <= 0.0 {
        0
    } else if pods >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        pods as i32
    }
}

/// Decides the replica count of one function at `now`, with the floor of
/// the `scale.schedules` window open at that time, if any. Updates the
/// history's panic state and its record of recent counts.
pub fn decide(
    h: &mut History,
    spec: &ScaleSpec,
    replicas: Replicas,
    floor: Option<&Floor>,
    now: Instant,
) -> Decision {
    let stable_window = secs(spec.stable_window_seconds).max(Duration::from_secs(1));
    let panic_window = stable_window
        .mul_f64(f64::from(spec.panic_window_percent.clamp(1, 100)) / 100.0)
        .max(Duration::from_secs(1));
    let target = if spec.target.is_finite() && spec.target > 0.0 {
        spec.target
    } else {
        1.0
    };
    let spec_min = spec.min_replicas.max(0);
    let max = spec.max_replicas.max(spec_min).max(1);
    // A window's floor replaces minReplicas only where it is higher (and
    // never passes maxReplicas, which validation refuses anyway).
    let raised_by = floor.filter(|f| f.min_replicas.min(max) > spec_min);
    let min = raised_by.map_or(spec_min, |f| f.min_replicas.min(max));
    let min_why = match raised_by {
        Some(f) => format!("floor {min} from {}", f.window),
        None => format!("minReplicas {min}"),
    };
    let current = replicas.current.max(0);
    // Raised from zero by another writer (a controller replica that is not
    // the leader took the activation, or a user's `kubectl scale`): that is
    // demand this history has not seen yet, so the idle timer restarts
    // instead of the function going straight back to zero.
    if h.seen_replicas == Some(0) && current > 0 {
        h.activation(now);
    }
    h.seen_replicas = Some(current);
    let metric_name = match spec.metric {
        ScaleMetric::Concurrency => "concurrency",
        ScaleMetric::Rps => "rps",
    };

    let (stable_c, stable_r) = h.averages(now, stable_window);
    let (panic_c, panic_r) = h.averages(now, panic_window);
    let (stable_v, panic_v) = match spec.metric {
        ScaleMetric::Concurrency => (stable_c, panic_c),
        ScaleMetric::Rps => (stable_r, panic_r),
    };
    let want_stable = pods_for(stable_v, target);
    let want_panic = pods_for(panic_v, target);

    // Panic: the short window says the pods we have cannot keep up.
    let capacity = f64::from(replicas.ready.max(1)) * target;
    let threshold = capacity * f64::from(spec.panic_threshold_percent) / 100.0;
    let trigger = panic_v > 0.0 && panic_v >= threshold;
    let mut panic_entered = false;
    if trigger {
        if h.panic_since.is_none() {
            panic_entered = true;
            h.panic_peak = 0;
        }
        h.panic_since = Some(now);
    } else if h
        .panic_since
        .is_some_and(|t| now.saturating_duration_since(t) >= stable_window)
    {
        h.panic_since = None;
        h.panic_peak = 0;
    }
    let mode = if h.panic_since.is_some() {
        Mode::Panic
    } else {
        Mode::Stable
    };

    let mut desired;
    let mut reason;
    match mode {
        Mode::Panic => {
            desired = want_panic.max(current).max(h.panic_peak);
            h.panic_peak = desired;
            reason = format!(
                "panic: {metric_name} {panic_v:.2} over the last {:.0}s {} {}% of the capacity of {} ready pods × target {target}; wants {want_panic}, never scales down in panic",
                panic_window.as_secs_f64(),
                if trigger {
                    "is at least"
                } else {
                    "was recently at least"
                },
                spec.panic_threshold_percent,
                replicas.ready.max(1),
            );
        }
        Mode::Stable => {
            desired = want_stable;
            reason = format!(
                "stable: {metric_name} {stable_v:.2} over the last {:.0}s at target {target} per pod wants {want_stable}",
                stable_window.as_secs_f64()
            );
        }
    }

    // At zero (or with no pod ready yet) the requests parked now are the
    // demand: an activation with 30 parked requests wants 30 / target pods
    // at once, not after the averages catch up.
    if current == 0 || replicas.ready == 0 {
        let parked = pods_for(h.in_flight, target);
        if parked > desired {
            desired = parked;
            reason = format!(
                "{reason}; {} requests waiting with no ready pod want {parked}",
                h.in_flight
            );
        }
    }

    // Zero: only after a whole idle period, with nothing waiting.
    let s2z = secs(spec.scale_to_zero_after_seconds);
    let covered = h
        .data_since
        .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
    let idle_for = match h.last_demand {
        Some(t) => now.saturating_duration_since(t).min(covered),
        None => covered,
    };
    let waiting = h.in_flight > 0.0 || h.queued > 0.0;
    // A request counted in the latest sample is never "idle for 0 s".
    let idle = idle_for >= s2z && (h.last_demand.is_none() || !idle_for.is_zero());
    let zero_allowed = min == 0 && !waiting && idle && mode == Mode::Stable;
    if zero_allowed {
        desired = 0;
        reason = if current > 0 {
            format!(
                "idle: no requests for {:.0}s (scaleToZeroAfterSeconds {}), none in flight or queued; scaling to zero",
                idle_for.as_secs_f64(),
                spec.scale_to_zero_after_seconds
            )
        } else {
            "idle: at zero; the next request wakes it".to_string()
        };
    } else if desired == 0 && raised_by.is_none() {
        let demand = waiting || (h.last_demand.is_some() && !idle);
        if current > 0 || demand {
            desired = 1;
            reason = if min > 0 {
                format!("{reason}; kept at 1: minReplicas is {min}")
            } else if waiting {
                format!(
                    "{reason}; kept at 1: {} requests in flight, {} queued",
                    h.in_flight, h.queued
                )
            } else {
                format!(
                    "{reason}; kept at 1: idle for {:.0}s of the {}s scaleToZeroAfterSeconds",
                    idle_for.as_secs_f64(),
                    spec.scale_to_zero_after_seconds
                )
            };
        } else {
            reason = "idle: at zero; the next request wakes it".to_string();
        }
    }

    // The scale-down delay: the highest count wanted over the delay.
    let delay = secs(spec.scale_down_delay_seconds);
    h.wanted.push_back((now, desired));
    while h
        .wanted
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > delay)
    {
        h.wanted.pop_front();
    }
    if desired < current {
        let held = h
            .wanted
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or(desired)
            .min(current);
        if held > desired {
            reason = format!(
                "{reason}; held at {held} by scaleDownDelaySeconds {}",
                spec.scale_down_delay_seconds
            );
            desired = held;
        }
    }

    if desired < current {
        if covered < stable_window {
            reason = format!(
                "{reason}; held at {current}: only {:.0}s of metrics since a restart or a gap, scale-down waits for a full {:.0}s stable window",
                covered.as_secs_f64(),
                stable_window.as_secs_f64()
            );
            desired = current;
        } else if current > 1 {
            let floor = (current + 1) / 2;
            if desired < floor {
                reason = format!("{reason}; scale-down limited to halving: {current} → {floor}");
                desired = floor;
            }
        }
    }

    if desired > max {
        reason = format!("{reason}; clamped to maxReplicas {max}");
        desired = max;
    }
    if desired < min {
        reason = format!("{reason}; raised to {min_why}");
        desired = min;
    }

    Decision {
        desired,
        mode,
        concurrency: stable_c,
        rps: stable_r,
        reason,
        panic_entered,
        schedule: floor.map(|f| f.window.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake clock and a function's history, fed one sample per second.
    struct Sim {
        t0: Instant,
        now: Duration,
        h: History,
        spec: ScaleSpec,
        /// Some decision entered panic.
        entered: bool,
        /// Every decision, in order.
        log: Vec<Decision>,
        current: i32,
        ready: i32,
        /// `scale.schedules`: the wall clock at `t0`, the parsed windows and
        /// the lead; each decision gets the floor they set at its instant,
        /// as `plan_for` passes it.
        wall0: Option<jiff::Timestamp>,
        windows: Vec<siesta_api::schedule::Window>,
        lead: Duration,
        /// The wall clock of each decision in `log`.
        walls: Vec<jiff::Timestamp>,
    }

    impl Sim {
        fn new(spec: ScaleSpec, current: i32) -> Self {
            Self {
                t0: Instant::now(),
                now: Duration::ZERO,
                h: History::new(),
                spec,
                entered: false,
                log: Vec::new(),
                current,
                ready: current,
                wall0: None,
                windows: Vec::new(),
                lead: Duration::ZERO,
                walls: Vec::new(),
            }
        }

        /// Sim time 0 is the wall-clock instant `wall0`; `schedules` are
        /// (cron, time zone, duration, minReplicas).
        fn with_schedules(
            mut self,
            wall0: &str,
            lead: Duration,
            schedules: &[(&str, &str, &str, i32)],
        ) -> Self {
            self.wall0 = Some(wall0.parse().expect("a timestamp literal"));
            self.lead = lead;
            self.windows = schedules
                .iter()
                .map(|(cron, tz, duration, min)| {
                    siesta_api::schedule::parse(&siesta_api::ScaleSchedule {
                        cron: cron.to_string(),
                        time_zone: tz.to_string(),
                        duration: duration.to_string(),
                        min_replicas: *min,
                    })
                    .expect("a valid schedule")
                })
                .collect();
            self
        }

        fn wall(&self) -> Option<jiff::Timestamp> {
            let since = jiff::SignedDuration::try_from(self.now).ok()?;
            self.wall0?.checked_add(since).ok()
        }

        fn at(&self) -> Instant {
            self.t0 + self.now
        }

        /// `secs` seconds of `concurrency` in flight at `rps`, with the gauges
        /// showing `in_flight`; one decision every 2 s, applied at once.
        fn run(&mut self, secs: u64, concurrency: f64, rps: f64, in_flight: f64) -> Decision {
            let mut last = None;
            for i in 0..secs {
                self.now += Duration::from_secs(1);
                self.h.record(
                    Sample {
                        at: self.at(),
                        dt: Duration::from_secs(1),
                        rps,
                        concurrency,
                        requests: rps,
                    },
                    in_flight,
                    0.0,
                );
                if i % 2 == 1 || i + 1 == secs {
                    last = Some(self.decide());
                }
            }
            last.unwrap()
        }

        fn decide(&mut self) -> Decision {
            let now = self.at();
            let wall = self.wall();
            let floor = wall
                .and_then(|w| super::super::schedule::active_floor(&self.windows, w, self.lead));
            if let Some(w) = wall {
                self.walls.push(w);
            }
            let d = decide(
                &mut self.h,
                &self.spec,
                Replicas {
                    current: self.current,
                    ready: self.ready,
                },
                floor.as_ref(),
                now,
            );
            self.entered |= d.panic_entered;
            self.log.push(d.clone());
            self.current = d.desired;
            self.ready = d.desired;
            d
        }
    }

    fn spec(target: f64) -> ScaleSpec {
        ScaleSpec {
            target,
            stable_window_seconds: 60,
            panic_window_percent: 10,
            panic_threshold_percent: 200,
            scale_to_zero_after_seconds: 30,
            max_replicas: 100,
            ..ScaleSpec::default()
        }
    }

    /// A history that has a full stable window of idle data behind it.
    fn warmed(spec: ScaleSpec, current: i32, concurrency: f64) -> Sim {
        let mut s = Sim::new(spec, current);
        for _ in 0..61 {
            s.now += Duration::from_secs(1);
            s.h.record(
                Sample {
                    at: s.at(),
                    dt: Duration::from_secs(1),
                    rps: concurrency,
                    concurrency,
                    requests: concurrency,
                },
                concurrency,
                0.0,
            );
        }
        s
    }

    #[test]
    fn step_load_settles_at_load_over_target() {
        let mut s = warmed(spec(10.0), 1, 5.0);
        // From 5 to 35 in flight: within a panic window (6 s) the short
        // average passes 200% of the one pod's capacity of 10, so it panics
        // and goes to ceil(35 / 10) = 4 without waiting for the stable window.
        let d = s.run(6, 35.0, 35.0, 35.0);
        assert!(s.entered);
        assert_eq!(d.mode, Mode::Panic);
        assert_eq!(d.desired, 4);
        // Held for a stable window, the load stays 35: it stays at 4 (ceil(3.5)).
        let d = s.run(120, 35.0, 35.0, 35.0);
        assert_eq!(d.mode, Mode::Stable);
        assert_eq!(d.desired, 4);
        assert!(
            d.reason.starts_with("stable: concurrency 35.00"),
            "{}",
            d.reason
        );
    }

    #[test]
    fn a_small_step_scales_on_the_stable_window_without_panic() {
        let mut s = warmed(spec(10.0), 2, 15.0);
        // 15 → 25: 25 < 200% of 20 capacity, no panic; the stable average rises slowly.
        let d = s.run(2, 25.0, 25.0, 25.0);
        assert_eq!((d.mode, d.desired), (Mode::Stable, 2));
        let d = s.run(60, 25.0, 25.0, 25.0);
        assert_eq!((d.mode, d.desired), (Mode::Stable, 3));
        assert!(!d.panic_entered);
    }

    #[test]
    fn a_ramp_is_followed_upwards_step_by_step() {
        let mut s = warmed(spec(10.0), 1, 0.0);
        let mut seen = Vec::new();
        for step in 1..=10 {
            let d = s.run(20, f64::from(step) * 5.0, 1.0, 1.0);
            seen.push(d.desired);
        }
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "not monotonic: {seen:?}"
        );
        assert!(*seen.last().unwrap() >= 3, "{seen:?}");
        let d = s.run(60, 50.0, 1.0, 1.0);
        assert_eq!(d.desired, 5);
    }

    #[test]
    fn a_spike_panics_and_panic_never_scales_down_until_a_stable_window_passes() {
        let mut s = warmed(spec(1.0), 2, 2.0);
        let d = s.run(6, 20.0, 20.0, 20.0);
        assert!(s.entered);
        assert_eq!((d.mode, d.desired), (Mode::Panic, 20));
        // The spike ends; no scale-down while the panic lasts.
        let d = s.run(10, 2.0, 2.0, 2.0);
        assert_eq!((d.mode, d.desired), (Mode::Panic, 20));
        assert!(!d.panic_entered);
        // After a stable window without the trigger: stable again, scaling
        // down by at most half per decision.
        let from = s.log.len();
        let d = s.run(120, 2.0, 2.0, 2.0);
        assert_eq!(d.desired, 2);
        let after: Vec<(Mode, i32)> = s.log[from..].iter().map(|d| (d.mode, d.desired)).collect();
        let first_stable = after.iter().position(|(m, _)| *m == Mode::Stable).unwrap();
        assert!(first_stable >= 20, "left panic too early: {after:?}");
        assert!(
            after[..first_stable].iter().all(|(_, n)| *n == 20),
            "{after:?}"
        );
        let downs: Vec<i32> = after[first_stable..].iter().map(|(_, n)| *n).collect();
        assert_eq!(&downs[..5], &[10, 5, 3, 2, 2], "{after:?}");
        assert!(s.log[from + first_stable].reason.contains("halving"));
    }

    #[test]
    fn idle_goes_to_zero_only_after_the_idle_period() {
        let mut s = warmed(spec(10.0), 1, 3.0);
        // Requests stop; the stable average decays but zero waits 30 s.
        let d = s.run(28, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 1, "{}", d.reason);
        // Idle for 30 s: zero, although the 60 s stable average is not zero yet.
        let d = s.run(4, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 0, "{}", d.reason);
        assert!(d.reason.starts_with("idle"), "{}", d.reason);
        // At zero with no demand it stays at zero.
        let d = s.run(10, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 0);
    }

    #[test]
    fn in_flight_or_queued_requests_block_zero() {
        let mut s = warmed(spec(10.0), 1, 0.0);
        // A single long request: no request counted (it has not finished), the
        // in-flight gauge says 1. Counter-based concurrency says ~0.
        let d = s.run(120, 0.0, 0.0, 1.0);
        assert_eq!(d.desired, 1, "{}", d.reason);
        assert!(d.reason.contains("in flight"), "{}", d.reason);
        // Queued only.
        s.h.record(
            Sample {
                at: s.at() + Duration::from_secs(1),
                dt: Duration::from_secs(1),
                rps: 0.0,
                concurrency: 0.0,
                requests: 0.0,
            },
            0.0,
            3.0,
        );
        s.now += Duration::from_secs(1);
        assert_eq!(s.decide().desired, 1);
        let d = s.run(2, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 0, "{}", d.reason);
    }

    #[test]
    fn min_replicas_forbids_zero_and_max_caps_panic() {
        let mut sp = spec(10.0);
        sp.min_replicas = 2;
        sp.max_replicas = 5;
        let mut s = warmed(sp, 2, 0.0);
        let d = s.run(200, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 2);
        let d = s.run(2, 500.0, 500.0, 500.0);
        assert_eq!((d.mode, d.desired), (Mode::Panic, 5));
        assert!(d.reason.contains("maxReplicas 5"), "{}", d.reason);
    }

    #[test]
    fn scale_down_delay_keeps_the_highest_count_over_the_delay() {
        let mut sp = spec(10.0);
        sp.stable_window_seconds = 6;
        sp.scale_down_delay_seconds = 30;
        let mut s = warmed(sp, 4, 40.0);
        let d = s.run(4, 40.0, 40.0, 40.0);
        assert_eq!(d.desired, 4);
        // Load drops to 10 (1 pod): held at 4 for 30 s, then down.
        let d = s.run(20, 10.0, 10.0, 10.0);
        assert_eq!(d.desired, 4, "{}", d.reason);
        assert!(d.reason.contains("scaleDownDelaySeconds"), "{}", d.reason);
        let d = s.run(20, 10.0, 10.0, 10.0);
        assert!(d.desired < 4, "{}", d.reason);
    }

    #[test]
    fn after_a_restart_nothing_scales_down_before_a_stable_window_of_data() {
        // A fresh history (restart) for a function at 6 replicas and no load.
        let mut s = Sim::new(spec(10.0), 6);
        let d = s.run(50, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 6, "{}", d.reason);
        assert!(d.reason.contains("stable window"), "{}", d.reason);
        // But it still scales up at once.
        let d = s.run(6, 200.0, 200.0, 200.0);
        assert_eq!(d.desired, 20, "{}", d.reason);
    }

    #[test]
    fn a_gap_in_metrics_blocks_scale_down_again() {
        let mut s = warmed(spec(10.0), 4, 40.0);
        s.h.gap();
        let d = s.run(30, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 4, "{}", d.reason);
        let d = s.run(40, 0.0, 0.0, 0.0);
        assert!(d.desired < 4);
    }

    #[test]
    fn an_activation_is_demand_and_restarts_the_idle_timer() {
        let mut s = warmed(spec(10.0), 0, 0.0);
        let d = s.run(10, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 0);
        // An activator woke it (0 → 1) before any request was counted.
        s.h.activation(s.at());
        s.current = 1;
        let d = s.decide();
        assert_eq!(d.desired, 1, "{}", d.reason);
        let d = s.run(28, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 1, "{}", d.reason);
        let d = s.run(4, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 0, "{}", d.reason);
        // An activation at zero, with requests parked: it decides 0 → N.
        s.h.activation(s.at());
        s.h.record(
            Sample {
                at: s.at() + Duration::from_secs(1),
                dt: Duration::from_secs(1),
                rps: 0.0,
                concurrency: 30.0,
                requests: 0.0,
            },
            30.0,
            30.0,
        );
        s.now += Duration::from_secs(1);
        let d = s.decide();
        assert_eq!(d.desired, 3, "{}", d.reason);
    }

    #[test]
    fn a_wake_by_another_writer_restarts_the_idle_timer() {
        // Idle at zero; then another controller replica (or a user) scales
        // it to 1 before this one has seen any request for it.
        let mut s = warmed(spec(10.0), 0, 0.0);
        let d = s.run(10, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 0);
        s.current = 1;
        let d = s.decide();
        assert_eq!(d.desired, 1, "woken by someone else: {}", d.reason);
        let d = s.run(28, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 1, "{}", d.reason);
        let d = s.run(4, 0.0, 0.0, 0.0);
        assert_eq!(
            d.desired, 0,
            "idle for scaleToZeroAfterSeconds: {}",
            d.reason
        );
    }

    #[test]
    fn rps_metric_uses_requests_per_second() {
        let mut sp = spec(5.0);
        sp.metric = ScaleMetric::Rps;
        let mut s = warmed(sp, 1, 0.0);
        let d = s.run(120, 1.0, 22.0, 1.0);
        assert_eq!(d.desired, 5, "{}", d.reason);
        assert!((d.rps - 22.0).abs() < 1e-9);
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().expect("a timestamp literal")
    }

    /// Idle at zero, a window opens at `opens` (UTC instant): every
    /// decision before `opens - lead` stays at zero, the first one from
    /// then on raises it to the window's floor, and the reason says why.
    fn scales_up_by_the_lead_ahead(cron: &str, tz: &str, opens: &str) {
        let lead = Duration::from_secs(30);
        let start = ts(opens) - jiff::SignedDuration::from_secs(150);
        let mut s = warmed(spec(10.0), 0, 0.0).with_schedules(
            &start.to_string(),
            lead,
            &[(cron, tz, "1h", 3)],
        );
        s.run(200, 0.0, 0.0, 0.0);
        let ahead = ts(opens) - jiff::SignedDuration::from_secs(30);
        let first_up = s
            .log
            .iter()
            .position(|d| d.desired > 0)
            .expect("scaled up for the window");
        assert!(
            s.log[..first_up].iter().all(|d| d.desired == 0),
            "{cron} {tz}"
        );
        let at = s.walls[first_up];
        assert!(at >= ahead, "{cron} {tz}: up at {at}, before {ahead}");
        assert!(
            at < ahead + jiff::SignedDuration::from_secs(2),
            "{cron} {tz}: up at {at}, not at the first decision from {ahead}"
        );
        let d = &s.log[first_up];
        assert_eq!(d.desired, 3, "{}", d.reason);
        assert!(
            d.reason.contains(&format!(
                "raised to floor 3 from schedules[0] \"{cron}\" {tz} opens at"
            )),
            "{}",
            d.reason
        );
        assert!(
            d.schedule
                .as_deref()
                .is_some_and(|w| w.contains("opens at"))
        );
        // Held at the floor through the window, never at zero.
        let open_end = ts(opens) + jiff::SignedDuration::from_secs(3600);
        for (d, wall) in s.log[first_up..].iter().zip(&s.walls[first_up..]) {
            if *wall < open_end {
                assert_eq!(d.desired, 3, "{wall}: {}", d.reason);
            }
        }
    }

    #[test]
    fn a_window_opening_at_zero_scales_up_by_the_lead_ahead() {
        scales_up_by_the_lead_ahead("0 8 * * *", "UTC", "2025-06-02T08:00:00Z");
        // 08:00 in Berlin in summer is 06:00 UTC.
        scales_up_by_the_lead_ahead("0 8 * * *", "Europe/Berlin", "2025-06-02T06:00:00Z");
    }

    #[test]
    fn a_window_at_a_time_the_clocks_skip_scales_up_ahead_of_the_jump() {
        // 02:30 does not exist on 2025-03-30 in Berlin: it opens at 03:00
        // CEST, 01:00 UTC; in New York on 2025-03-09 at 03:00 EDT, 07:00 UTC.
        scales_up_by_the_lead_ahead("30 2 * * *", "Europe/Berlin", "2025-03-30T01:00:00Z");
        scales_up_by_the_lead_ahead("30 2 * * *", "America/New_York", "2025-03-09T07:00:00Z");
    }

    #[test]
    fn a_window_at_a_time_the_clocks_repeat_scales_up_ahead_of_its_first_occurrence() {
        // 02:30 happens twice on 2025-10-26 in Berlin; the first is 00:30
        // UTC. 01:30 happens twice on 2025-11-02 in New York; first 05:30 UTC.
        scales_up_by_the_lead_ahead("30 2 * * *", "Europe/Berlin", "2025-10-26T00:30:00Z");
        scales_up_by_the_lead_ahead("30 1 * * *", "America/New_York", "2025-11-02T05:30:00Z");
    }

    #[test]
    fn a_window_opening_while_busy_raises_only_a_floor_above_demand() {
        // 50 in flight at target 10: 5 pods. A window of 3 changes nothing.
        let mut s = warmed(spec(10.0), 5, 50.0).with_schedules(
            "2025-06-02T07:59:00Z",
            Duration::from_secs(10),
            &[("0 8 * * *", "UTC", "1h", 3), ("0 9 * * *", "UTC", "1h", 8)],
        );
        // Sim time after warming is 61 s: 08:00:01, inside the window of 3.
        let d = s.run(60, 50.0, 50.0, 50.0);
        assert_eq!(d.desired, 5, "{}", d.reason);
        assert!(!d.reason.contains("floor"), "{}", d.reason);
        assert_eq!(
            d.schedule.as_deref(),
            Some(r#"schedules[0] "0 8 * * *" UTC until 09:00"#),
            "the open window is named even when demand is above it"
        );
        // At 09:00 the window of 8 opens (10 s ahead): 8, as the floor says.
        // Up to 08:59:48, 3648 s after 07:59:00: still 5.
        let to_0859_48 = 3648 - s.now.as_secs();
        s.run(to_0859_48, 50.0, 50.0, 50.0);
        assert_eq!(s.walls.last().copied(), Some(ts("2025-06-02T08:59:48Z")));
        assert_eq!(s.log.last().unwrap().desired, 5);
        let d = s.run(4, 50.0, 50.0, 50.0);
        assert_eq!(d.desired, 8, "{}", d.reason);
        assert!(
            d.reason.ends_with(
                r#"raised to floor 8 from schedules[1] "0 9 * * *" UTC opens at 09:00 (pods start 10s ahead for the cold start)"#
            ),
            "{}",
            d.reason
        );
        // Demand above the floor still scales out past it.
        let d = s.run(10, 200.0, 200.0, 200.0);
        assert!(d.desired > 8, "{}", d.reason);
    }

    #[test]
    fn a_window_closing_returns_to_the_usual_rules_and_idle_goes_to_zero() {
        // At 3 for a window 08:00–08:05 with no traffic at all.
        let mut s = warmed(spec(10.0), 0, 0.0).with_schedules(
            "2025-06-02T07:59:00Z",
            Duration::from_secs(10),
            &[("0 8 * * *", "UTC", "5m", 3)],
        );
        let d = s.run(4, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 3, "{}", d.reason);
        // Idle all along, yet never below 3 before 08:05:00.
        let from = s.log.len();
        s.run(292, 0.0, 0.0, 0.0);
        assert!(s.walls[s.walls.len() - 1] < ts("2025-06-02T08:05:00Z"));
        assert!(
            s.log[from..].iter().all(|d| d.desired == 3),
            "{:?}",
            s.log[from..].iter().map(|d| d.desired).collect::<Vec<_>>()
        );
        // Closed: scaleToZeroAfterSeconds (30 s) has long passed, so it
        // goes down, halving per decision, to zero.
        let from = s.log.len();
        let d = s.run(20, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 0, "{}", d.reason);
        assert_eq!(d.schedule, None);
        let downs: Vec<i32> = s.log[from..].iter().map(|d| d.desired).collect();
        assert!(downs.windows(2).all(|w| w[0] >= w[1]), "{downs:?}");
        assert!(downs.contains(&2), "halving 3 → 2 → 1 → 0: {downs:?}");
    }

    #[test]
    fn a_floor_at_or_below_min_replicas_changes_nothing() {
        let mut sp = spec(10.0);
        sp.min_replicas = 4;
        let mut s = warmed(sp, 4, 0.0).with_schedules(
            "2025-06-02T08:00:00Z",
            Duration::ZERO,
            &[("0 8 * * *", "UTC", "1h", 2)],
        );
        let d = s.run(4, 0.0, 0.0, 0.0);
        assert_eq!(d.desired, 4, "{}", d.reason);
        assert!(!d.reason.contains("floor"), "{}", d.reason);
    }
}
