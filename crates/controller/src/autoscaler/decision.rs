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

impl Sample {
    /// No traffic at all over `dt`.
    fn is_idle(&self) -> bool {
        self.rps == 0.0 && self.concurrency == 0.0 && self.requests == 0.0
    }
}

impl Decision {
    /// Zero replicas, no traffic, no panic: what a Function at zero that is
    /// never called decides every time.
    pub fn is_idle(&self) -> bool {
        self.desired == 0 && self.concurrency == 0.0 && self.rps == 0.0 && self.mode == Mode::Stable
    }
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
    ///
    /// A sample of no traffic after another one extends it (`at` moves,
    /// `dt` grows) instead of adding one: an idle function keeps one
    /// sample, not one per scrape, and the averages clip a sample's weight
    /// to the part of it inside their window.
    pub fn record(&mut self, sample: Sample, in_flight: f64, queued: f64) {
        if self.data_since.is_none() {
            self.data_since = Some(sample.at.checked_sub(sample.dt).unwrap_or(sample.at));
        }
        if sample.requests > 0.0 {
            self.last_demand = Some(sample.at);
        }
        self.in_flight = in_flight.max(0.0);
        self.queued = queued.max(0.0);
        match self.samples.back_mut() {
            Some(last) if last.is_idle() && sample.is_idle() && sample.at >= last.at => {
                last.dt += sample.at.saturating_duration_since(last.at);
                last.at = sample.at;
            }
            _ => self.samples.push_back(sample),
        }
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

    /// How long the current stretch of unbroken data has lasted at `now`.
    fn covered(&self, now: Instant) -> Duration {
        self.data_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    /// Drops the samples that end before `now - keep`: no average reads
    /// them (the stable window is the longest, and `keep` is at least it).
    fn forget_before(&mut self, now: Instant, keep: Duration) {
        let Some(start) = now.checked_sub(keep) else {
            return;
        };
        while self.samples.len() > 1 && self.samples.front().is_some_and(|s| s.at <= start) {
            self.samples.pop_front();
        }
    }

    /// Weighted averages (concurrency, rps) of the samples within `window`
    /// before `now`, each weighed by the part of its `dt` inside the window;
    /// the latest sample alone when none falls inside (a panic window
    /// shorter than the sampling interval).
    fn averages(&self, now: Instant, window: Duration) -> (f64, f64) {
        let start = now.checked_sub(window);
        let (mut c, mut r, mut w) = (0.0, 0.0, 0.0);
        for s in self.samples.iter().rev() {
            if start.is_some_and(|start| s.at <= start) {
                break;
            }
            let inside = start.map_or(s.dt, |start| {
                s.dt.min(s.at.saturating_duration_since(start))
            });
            let dt = inside.as_secs_f64().max(1e-3);
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
/// history's panic state and its record of recent counts. Each numbered
/// rule of the module doc is one function below, applied in that order.
pub fn decide(
    h: &mut History,
    spec: &ScaleSpec,
    replicas: Replicas,
    floor: Option<&Floor>,
    now: Instant,
) -> Decision {
    let b = Bounds::of(spec, floor);
    // Only the stable window is read; a minute more covers a scrape that
    // straddles its start. (A longer window set later starts with what is
    // kept.)
    h.forget_before(now, b.stable_window + Duration::from_secs(60));
    let current = replicas.current.max(0);
    note_raised_from_zero(h, current, now);

    let avg = rule1_averages(h, spec.metric, &b, now);
    let panic = rule2_panic(
        h,
        &avg,
        replicas.ready,
        &b,
        spec.panic_threshold_percent,
        now,
    );
    let mut want = wanted_by_mode(h, &avg, &panic, current, replicas.ready, &b, spec);
    wanted_by_parked(h, current, replicas.ready, b.target, &mut want);
    rule3_zero(h, spec, &b, current, panic.mode, now, &mut want);
    rule4_scale_down_delay(h, spec.scale_down_delay_seconds, current, now, &mut want);
    let covered = h.covered(now);
    if !rule5_hold_without_a_stable_window(current, covered, b.stable_window, &mut want) {
        rule6_halve_at_most(current, &mut want);
    }
    rule7_clamp(&b, &mut want);

    Decision {
        desired: want.desired,
        mode: panic.mode,
        concurrency: avg.stable_c,
        rps: avg.stable_r,
        reason: want.reason,
        panic_entered: panic.entered,
        schedule: floor.map(|f| f.window.clone()),
    }
}

/// The spec's numbers made safe to compute with, and the bounds of rule 7.
#[derive(Clone, Debug, PartialEq)]
struct Bounds {
    stable_window: Duration,
    panic_window: Duration,
    target: f64,
    metric_name: &'static str,
    /// `minReplicas`, or the open schedule window's floor when higher.
    min: i32,
    max: i32,
    /// Where `min` comes from, in the reason's words.
    min_why: String,
    /// A schedule window raised `min` above `minReplicas`.
    raised: bool,
}

impl Bounds {
    fn of(spec: &ScaleSpec, floor: Option<&Floor>) -> Self {
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
        let metric_name = match spec.metric {
            ScaleMetric::Concurrency => "concurrency",
            ScaleMetric::Rps => "rps",
        };
        Self {
            stable_window,
            panic_window,
            target,
            metric_name,
            min,
            max,
            min_why,
            raised: raised_by.is_some(),
        }
    }
}

/// The count being decided, and why, as the rules refine it.
#[derive(Clone, Debug, PartialEq)]
struct Want {
    desired: i32,
    reason: String,
}

/// Raised from zero by another writer (a controller replica that is not
/// the leader took the activation, or a user's `kubectl scale`): that is
/// demand this history has not seen yet, so the idle timer restarts
/// instead of the function going straight back to zero.
fn note_raised_from_zero(h: &mut History, current: i32, now: Instant) {
    if h.seen_replicas == Some(0) && current > 0 {
        h.activation(now);
    }
    h.seen_replicas = Some(current);
}

/// The windows' averages (rule 1).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Averages {
    stable_c: f64,
    stable_r: f64,
    /// The scaling metric over the stable window and over the panic window.
    stable_v: f64,
    panic_v: f64,
}

/// Rule 1: the stable window and the panic window each give an average.
fn rule1_averages(h: &History, metric: ScaleMetric, b: &Bounds, now: Instant) -> Averages {
    let (stable_c, stable_r) = h.averages(now, b.stable_window);
    let (panic_c, panic_r) = h.averages(now, b.panic_window);
    let (stable_v, panic_v) = match metric {
        ScaleMetric::Concurrency => (stable_c, panic_c),
        ScaleMetric::Rps => (stable_r, panic_r),
    };
    Averages {
        stable_c,
        stable_r,
        stable_v,
        panic_v,
    }
}

/// Rule 2's verdict.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Panic {
    mode: Mode,
    /// The trigger holds at this decision (not only recently).
    trigger: bool,
    /// This decision entered panic.
    entered: bool,
}

/// Rule 2: panic starts when the panic-window demand reaches the threshold
/// of the ready pods' capacity, and ends only after a whole stable window
/// without that trigger.
fn rule2_panic(
    h: &mut History,
    avg: &Averages,
    ready: i32,
    b: &Bounds,
    threshold_percent: i32,
    now: Instant,
) -> Panic {
    // Panic: the short window says the pods we have cannot keep up.
    let capacity = f64::from(ready.max(1)) * b.target;
    let threshold = capacity * f64::from(threshold_percent) / 100.0;
    let trigger = avg.panic_v > 0.0 && avg.panic_v >= threshold;
    let mut entered = false;
    if trigger {
        if h.panic_since.is_none() {
            entered = true;
            h.panic_peak = 0;
        }
        h.panic_since = Some(now);
    } else if h
        .panic_since
        .is_some_and(|t| now.saturating_duration_since(t) >= b.stable_window)
    {
        h.panic_since = None;
        h.panic_peak = 0;
    }
    let mode = if h.panic_since.is_some() {
        Mode::Panic
    } else {
        Mode::Stable
    };
    Panic {
        mode,
        trigger,
        entered,
    }
}

/// Rule 2, continued: in panic the panic-window average decides and the
/// count never goes below the current one or the panic's peak; otherwise
/// the stable-window average decides.
fn wanted_by_mode(
    h: &mut History,
    avg: &Averages,
    panic: &Panic,
    current: i32,
    ready: i32,
    b: &Bounds,
    spec: &ScaleSpec,
) -> Want {
    let (metric_name, target) = (b.metric_name, b.target);
    match panic.mode {
        Mode::Panic => {
            let want_panic = pods_for(avg.panic_v, target);
            let desired = want_panic.max(current).max(h.panic_peak);
            h.panic_peak = desired;
            let reason = format!(
                "panic: {metric_name} {:.2} over the last {:.0}s {} {}% of the capacity of {} ready pods × target {target}; wants {want_panic}, never scales down in panic",
                avg.panic_v,
                b.panic_window.as_secs_f64(),
                if panic.trigger {
                    "is at least"
                } else {
                    "was recently at least"
                },
                spec.panic_threshold_percent,
                ready.max(1),
            );
            Want { desired, reason }
        }
        Mode::Stable => {
            let want_stable = pods_for(avg.stable_v, target);
            let reason = format!(
                "stable: {metric_name} {:.2} over the last {:.0}s at target {target} per pod wants {want_stable}",
                avg.stable_v,
                b.stable_window.as_secs_f64()
            );
            Want {
                desired: want_stable,
                reason,
            }
        }
    }
}

/// At zero (or with no pod ready yet) the requests parked now are the
/// demand: an activation with 30 parked requests wants 30 / target pods
/// at once, not after the averages catch up.
fn wanted_by_parked(h: &History, current: i32, ready: i32, target: f64, want: &mut Want) {
    if current == 0 || ready == 0 {
        let parked = pods_for(h.in_flight, target);
        if parked > want.desired {
            want.desired = parked;
            want.reason = format!(
                "{}; {} requests waiting with no ready pod want {parked}",
                want.reason, h.in_flight
            );
        }
    }
}

/// Rule 3: zero only when nothing holds a floor above it, after a whole idle
/// period (`scaleToZeroAfterSeconds`) with nothing in flight or queued, and
/// not in panic. A count that came to zero otherwise is kept at 1 while
/// there is demand or pods.
fn rule3_zero(
    h: &History,
    spec: &ScaleSpec,
    b: &Bounds,
    current: i32,
    mode: Mode,
    now: Instant,
    want: &mut Want,
) {
    let covered = h.covered(now);
    let s2z = secs(spec.scale_to_zero_after_seconds);
    let idle_for = match h.last_demand {
        Some(t) => now.saturating_duration_since(t).min(covered),
        None => covered,
    };
    let waiting = h.in_flight > 0.0 || h.queued > 0.0;
    // A request counted in the latest sample is never "idle for 0 s".
    let idle = idle_for >= s2z && (h.last_demand.is_none() || !idle_for.is_zero());
    let zero_allowed = b.min == 0 && !waiting && idle && mode == Mode::Stable;
    if zero_allowed {
        want.desired = 0;
        want.reason = if current > 0 {
            format!(
                "idle: no requests for {:.0}s (scaleToZeroAfterSeconds {}), none in flight or queued; scaling to zero",
                idle_for.as_secs_f64(),
                spec.scale_to_zero_after_seconds
            )
        } else {
            "idle: at zero; the next request wakes it".to_string()
        };
    } else if want.desired == 0 && !b.raised {
        let demand = waiting || (h.last_demand.is_some() && !idle);
        if current > 0 || demand {
            want.desired = 1;
            let reason = &want.reason;
            want.reason = if b.min > 0 {
                format!("{reason}; kept at 1: minReplicas is {}", b.min)
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
            want.reason = "idle: at zero; the next request wakes it".to_string();
        }
    }
}

/// Rule 4: `scaleDownDelaySeconds`: the highest count wanted over the delay
/// wins over a lower one now.
fn rule4_scale_down_delay(
    h: &mut History,
    delay_seconds: i32,
    current: i32,
    now: Instant,
    want: &mut Want,
) {
    let delay = secs(delay_seconds);
    h.wanted.push_back((now, want.desired));
    while h
        .wanted
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > delay)
    {
        h.wanted.pop_front();
    }
    if want.desired < current {
        let held = h
            .wanted
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or(want.desired)
            .min(current);
        if held > want.desired {
            want.reason = format!(
                "{}; held at {held} by scaleDownDelaySeconds {delay_seconds}",
                want.reason
            );
            want.desired = held;
        }
    }
}

/// Rule 5: with less than a stable window of unbroken data, nothing scales
/// down. True when it held the count.
fn rule5_hold_without_a_stable_window(
    current: i32,
    covered: Duration,
    stable_window: Duration,
    want: &mut Want,
) -> bool {
    if want.desired >= current || covered >= stable_window {
        return false;
    }
    want.reason = format!(
        "{}; held at {current}: only {:.0}s of metrics since a restart or a gap, scale-down waits for a full {:.0}s stable window",
        want.reason,
        covered.as_secs_f64(),
        stable_window.as_secs_f64()
    );
    want.desired = current;
    true
}

/// Rule 6: a scale-down at most halves the count per decision.
fn rule6_halve_at_most(current: i32, want: &mut Want) {
    if want.desired < current && current > 1 {
        let floor = (current + 1) / 2;
        if want.desired < floor {
            want.reason = format!(
                "{}; scale-down limited to halving: {current} → {floor}",
                want.reason
            );
            want.desired = floor;
        }
    }
}

/// Rule 7: `[minReplicas, maxReplicas]` clamps the result, `minReplicas`
/// raised by an open schedule window.
fn rule7_clamp(b: &Bounds, want: &mut Want) {
    if want.desired > b.max {
        want.reason = format!("{}; clamped to maxReplicas {}", want.reason, b.max);
        want.desired = b.max;
    }
    if want.desired < b.min {
        want.reason = format!("{}; raised to {}", want.reason, b.min_why);
        want.desired = b.min;
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

    /// An hour idle at zero keeps one sample, not 3,600 (at 10,000
    /// functions that was over 2 GB); traffic keeps about a stable window.
    #[test]
    fn the_history_is_bounded_by_the_stable_window_and_idle_runs_are_one_sample() {
        let mut s = Sim::new(spec(10.0), 0);
        s.run(3600, 0.0, 0.0, 0.0);
        assert_eq!(s.h.samples.len(), 1);
        assert_eq!(s.h.samples[0].dt, Duration::from_secs(3600));
        s.run(600, 5.0, 5.0, 5.0);
        assert!(
            (60..=122).contains(&s.h.samples.len()),
            "{} samples",
            s.h.samples.len()
        );
    }

    /// Idle seconds merged into one sample weigh in the averages as the
    /// seconds they were: only their part inside the window counts.
    #[test]
    fn a_merged_idle_sample_averages_as_its_seconds_did() {
        let t0 = Instant::now();
        let second = |i: u64, c: f64| Sample {
            at: t0 + Duration::from_secs(i),
            dt: Duration::from_secs(1),
            rps: c,
            concurrency: c,
            requests: c,
        };
        let mut merged = History::new();
        for i in 1..=100 {
            merged.record(second(i, 0.0), 0.0, 0.0);
        }
        for i in 101..=130 {
            merged.record(second(i, 10.0), 10.0, 0.0);
        }
        assert_eq!(merged.samples.len(), 31);
        let now = t0 + Duration::from_secs(130);
        // 30 s of 10 and 30 s of nothing in the last 60 s.
        let (c, r) = merged.averages(now, Duration::from_secs(60));
        assert!((c - 5.0).abs() < 1e-9 && (r - 5.0).abs() < 1e-9, "{c} {r}");
        let (c, _) = merged.averages(now, Duration::from_secs(120));
        assert!((c - 2.5).abs() < 1e-9, "{c}");
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

    // One test per rule function, each on its own, without the whole
    // decision around it.

    fn want(desired: i32) -> Want {
        Want {
            desired,
            reason: "r".into(),
        }
    }

    /// A history that saw `concurrency` for each of the `secs` seconds before `t0 + secs`.
    fn steady(t0: Instant, secs: u64, concurrency: f64) -> History {
        let mut h = History::new();
        for i in 1..=secs {
            h.record(
                Sample {
                    at: t0 + Duration::from_secs(i),
                    dt: Duration::from_secs(1),
                    rps: concurrency,
                    concurrency,
                    requests: concurrency,
                },
                0.0,
                0.0,
            );
        }
        h
    }

    #[test]
    fn bounds_clamp_odd_specs_and_take_a_higher_schedule_floor() {
        let odd = ScaleSpec {
            target: f64::NAN,
            stable_window_seconds: 0,
            panic_window_percent: 0,
            min_replicas: 5,
            max_replicas: 2,
            ..ScaleSpec::default()
        };
        let b = Bounds::of(&odd, None);
        assert_eq!(b.target, 1.0);
        assert_eq!(b.stable_window, Duration::from_secs(1));
        assert_eq!(b.panic_window, Duration::from_secs(1));
        assert_eq!(
            (b.min, b.max),
            (5, 5),
            "maxReplicas is at least minReplicas"
        );
        assert!(!b.raised);

        let floor = Floor {
            min_replicas: 3,
            window: "schedules[0]".into(),
        };
        let b = Bounds::of(&spec(1.0), Some(&floor));
        assert_eq!((b.min, b.raised), (3, true));
        assert_eq!(b.min_why, "floor 3 from schedules[0]");
        let low = Floor {
            min_replicas: 0,
            ..floor
        };
        let b = Bounds::of(
            &ScaleSpec {
                min_replicas: 1,
                ..spec(1.0)
            },
            Some(&low),
        );
        assert_eq!(
            (b.min, b.raised),
            (1, false),
            "a lower floor changes nothing"
        );
    }

    #[test]
    fn rule1_averages_the_chosen_metric_over_each_window() {
        let t0 = Instant::now();
        let mut h = steady(t0, 54, 1.0);
        for i in 55..=60 {
            h.record(
                Sample {
                    at: t0 + Duration::from_secs(i),
                    dt: Duration::from_secs(1),
                    rps: 20.0,
                    concurrency: 11.0,
                    requests: 20.0,
                },
                0.0,
                0.0,
            );
        }
        let b = Bounds::of(&spec(1.0), None);
        let now = t0 + Duration::from_secs(60);
        let avg = rule1_averages(&h, ScaleMetric::Concurrency, &b, now);
        assert!((avg.stable_c - 2.0).abs() < 1e-9, "{avg:?}");
        assert!(
            (avg.panic_v - 11.0).abs() < 1e-9,
            "the 6 s panic window: {avg:?}"
        );
        assert_eq!(avg.stable_v, avg.stable_c);
        let avg = rule1_averages(&h, ScaleMetric::Rps, &b, now);
        assert!((avg.panic_v - 20.0).abs() < 1e-9, "{avg:?}");
        assert_eq!(avg.stable_v, avg.stable_r);
    }

    #[test]
    fn rule2_panic_starts_at_the_threshold_and_ends_a_stable_window_later() {
        let t0 = Instant::now();
        let mut h = History::new();
        let b = Bounds::of(&spec(1.0), None);
        let at = |panic_v| Averages {
            stable_c: 0.0,
            stable_r: 0.0,
            stable_v: 0.0,
            panic_v,
        };
        // 2 ready pods × target 1 at 200 %: the trigger is 4.
        let p = rule2_panic(&mut h, &at(3.9), 2, &b, 200, t0);
        assert_eq!((p.mode, p.entered), (Mode::Stable, false));
        let p = rule2_panic(&mut h, &at(4.0), 2, &b, 200, t0);
        assert_eq!((p.mode, p.trigger, p.entered), (Mode::Panic, true, true));
        let p = rule2_panic(&mut h, &at(5.0), 2, &b, 200, t0 + Duration::from_secs(1));
        assert_eq!((p.mode, p.entered), (Mode::Panic, false), "entered once");
        let later = t0 + Duration::from_secs(1) + b.stable_window;
        let p = rule2_panic(&mut h, &at(0.0), 2, &b, 200, later - Duration::from_secs(1));
        assert_eq!(
            (p.mode, p.trigger),
            (Mode::Panic, false),
            "still within the window"
        );
        let p = rule2_panic(&mut h, &at(0.0), 2, &b, 200, later);
        assert_eq!(p.mode, Mode::Stable);
    }

    #[test]
    fn in_panic_the_count_never_goes_below_the_current_one_or_the_peak() {
        let mut h = History::new();
        let b = Bounds::of(&spec(1.0), None);
        let panic = Panic {
            mode: Mode::Panic,
            trigger: true,
            entered: true,
        };
        let avg = |panic_v| Averages {
            stable_c: 0.0,
            stable_r: 0.0,
            stable_v: 0.0,
            panic_v,
        };
        let w = wanted_by_mode(&mut h, &avg(7.5), &panic, 3, 3, &b, &spec(1.0));
        assert_eq!(w.desired, 8, "{}", w.reason);
        let w = wanted_by_mode(&mut h, &avg(1.0), &panic, 3, 3, &b, &spec(1.0));
        assert_eq!(w.desired, 8, "the peak holds: {}", w.reason);
        let stable = Panic {
            mode: Mode::Stable,
            ..panic
        };
        let w = wanted_by_mode(
            &mut h,
            &Averages {
                stable_v: 2.5,
                ..avg(9.0)
            },
            &stable,
            3,
            3,
            &b,
            &spec(1.0),
        );
        assert_eq!(w.desired, 3, "{}", w.reason);
        assert!(
            w.reason.starts_with("stable: concurrency 2.50"),
            "{}",
            w.reason
        );
    }

    #[test]
    fn parked_requests_are_the_demand_only_while_no_pod_serves() {
        let mut h = History::new();
        h.in_flight = 30.0;
        let mut w = want(1);
        wanted_by_parked(&h, 0, 0, 10.0, &mut w);
        assert_eq!(w.desired, 3, "{}", w.reason);
        let mut w = want(1);
        wanted_by_parked(&h, 2, 2, 10.0, &mut w);
        assert_eq!(w, want(1), "pods are serving: the averages decide");
    }

    #[test]
    fn rule3_zero_waits_for_a_whole_idle_period_with_nothing_waiting() {
        let t0 = Instant::now();
        let h = steady(t0, 40, 0.0);
        let spec = spec(1.0);
        let b = Bounds::of(&spec, None);
        let now = t0 + Duration::from_secs(40);
        let mut w = want(0);
        rule3_zero(&h, &spec, &b, 1, Mode::Stable, now, &mut w);
        assert_eq!(w.desired, 0, "{}", w.reason);
        assert!(w.reason.contains("scaling to zero"), "{}", w.reason);

        let mut busy = h.clone();
        busy.queued = 1.0;
        let mut w = want(0);
        rule3_zero(&busy, &spec, &b, 1, Mode::Stable, now, &mut w);
        assert_eq!(w.desired, 1, "{}", w.reason);
        assert!(
            w.reason
                .ends_with("kept at 1: 0 requests in flight, 1 queued"),
            "{}",
            w.reason
        );

        let mut w = want(0);
        rule3_zero(&h, &spec, &b, 1, Mode::Panic, now, &mut w);
        assert_eq!(w.desired, 1, "never to zero in panic: {}", w.reason);

        let recent = steady(t0, 40, 1.0);
        let mut w = want(0);
        rule3_zero(&recent, &spec, &b, 1, Mode::Stable, now, &mut w);
        assert_eq!(w.desired, 1, "{}", w.reason);
        assert!(w.reason.contains("idle for 0s of the 30s"), "{}", w.reason);

        let fresh = steady(t0, 10, 0.0);
        let mut w = want(0);
        rule3_zero(
            &fresh,
            &spec,
            &b,
            0,
            Mode::Stable,
            t0 + Duration::from_secs(10),
            &mut w,
        );
        assert_eq!(
            w.desired, 0,
            "at zero with no demand stays there: {}",
            w.reason
        );
        assert_eq!(w.reason, "idle: at zero; the next request wakes it");
    }

    #[test]
    fn rule4_the_highest_count_over_the_delay_wins() {
        let t0 = Instant::now();
        let mut h = History::new();
        let mut w = want(5);
        rule4_scale_down_delay(&mut h, 10, 5, t0, &mut w);
        assert_eq!(w.desired, 5);
        let mut w = want(2);
        rule4_scale_down_delay(&mut h, 10, 5, t0 + Duration::from_secs(10), &mut w);
        assert_eq!(w.desired, 5, "{}", w.reason);
        assert!(
            w.reason.ends_with("held at 5 by scaleDownDelaySeconds 10"),
            "{}",
            w.reason
        );
        let mut w = want(2);
        rule4_scale_down_delay(&mut h, 10, 5, t0 + Duration::from_secs(21), &mut w);
        assert_eq!(w.desired, 2, "the 5 is older than the delay: {}", w.reason);
    }

    #[test]
    fn rule5_holds_a_scale_down_until_a_stable_window_of_data() {
        let window = Duration::from_secs(60);
        let mut w = want(1);
        assert!(rule5_hold_without_a_stable_window(
            4,
            Duration::from_secs(59),
            window,
            &mut w
        ));
        assert_eq!(w.desired, 4, "{}", w.reason);
        let mut w = want(1);
        assert!(!rule5_hold_without_a_stable_window(
            4, window, window, &mut w
        ));
        assert_eq!(w, want(1));
        let mut w = want(6);
        assert!(!rule5_hold_without_a_stable_window(
            4,
            Duration::ZERO,
            window,
            &mut w
        ));
        assert_eq!(w, want(6), "a scale-up is never held");
    }

    #[test]
    fn rule6_a_scale_down_at_most_halves() {
        let mut w = want(1);
        rule6_halve_at_most(9, &mut w);
        assert_eq!(w.desired, 5, "{}", w.reason);
        assert!(
            w.reason.ends_with("limited to halving: 9 → 5"),
            "{}",
            w.reason
        );
        let mut w = want(0);
        rule6_halve_at_most(1, &mut w);
        assert_eq!(w, want(0), "1 → 0 is allowed");
        let mut w = want(3);
        rule6_halve_at_most(4, &mut w);
        assert_eq!(w, want(3));
    }

    #[test]
    fn rule7_clamps_to_the_bounds_and_says_which() {
        let floor = Floor {
            min_replicas: 2,
            window: "schedules[0]".into(),
        };
        let b = Bounds::of(
            &ScaleSpec {
                max_replicas: 4,
                ..spec(1.0)
            },
            Some(&floor),
        );
        let mut w = want(9);
        rule7_clamp(&b, &mut w);
        assert_eq!(w.desired, 4);
        assert!(
            w.reason.ends_with("clamped to maxReplicas 4"),
            "{}",
            w.reason
        );
        let mut w = want(0);
        rule7_clamp(&b, &mut w);
        assert_eq!(w.desired, 2);
        assert!(
            w.reason.ends_with("raised to floor 2 from schedules[0]"),
            "{}",
            w.reason
        );
    }
}
