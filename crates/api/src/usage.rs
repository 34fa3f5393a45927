//! What scaling to zero saved: the pods a Function ran, each as an interval
//! from its `status.startTime` to its containers' last `finishedAt`, kept in
//! `status.usage` so that a new leader continues the open ones, and the
//! window arithmetic that sets them beside two baselines: `maxReplicas` pods
//! all the time, and one pod all the time.
//!
//! Pure: times are Unix milliseconds passed in. The controller feeds it the
//! pods it watches ([`PodSpan::of`], [`Ledger::observe`]); the plugin asks
//! for a window ([`Ledger::window`]).
//!
//! Bounds: every open interval is kept (one per pod that exists), plus the
//! last [`KEPT_CLOSED_INTERVALS`] closed ones; older closed intervals are
//! folded into whole UTC hours, kept for [`KEPT_HOURS`] hours. A Function
//! that churns pods therefore holds at most ~50 intervals and 168 hours in
//! its status (about 25 KiB).

use std::collections::HashSet;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, ResourceRequirements};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Closed intervals kept as such; older ones are folded into hours.
pub const KEPT_CLOSED_INTERVALS: usize = 50;
/// Hours of folded usage kept (7 days).
pub const KEPT_HOURS: i64 = 168;
const HOUR_MS: i64 = 3_600_000;
const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// `status.usage`: the record of the pods a Function ran.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageStatus {
    /// When the record starts: the Function's creation when the leader saw
    /// it created, else when it first counted it (to the whole second); or
    /// the oldest hour still kept.
    pub since: String,
    /// The last time the leader wrote the record. A pod that disappeared
    /// while no controller ran is counted until here.
    pub recorded_at: String,
    /// Recent pods, oldest start first; a pod without `end` still runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<PodInterval>,
    /// Older pods, folded into whole UTC hours, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hours: Vec<HourBucket>,
}

/// One pod's run, with what it requested.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodInterval {
    pub pod: String,
    /// The pod's `status.startTime`.
    pub start: String,
    /// Its containers' last `finishedAt`, or when the controller saw it
    /// deleted or finished; absent while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Sum of its containers' CPU requests, in cores (0 when none).
    pub cpu_cores: f64,
    /// Sum of its containers' memory requests, in bytes (0 when none).
    pub memory_bytes: f64,
}

/// The pods of one UTC hour, folded.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HourBucket {
    /// The hour's start.
    pub hour: String,
    pub pod_seconds: f64,
    pub cpu_core_seconds: f64,
    pub memory_byte_seconds: f64,
}

/// Pod-seconds and requested resource-seconds.
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    pub pod_seconds: f64,
    pub cpu_core_seconds: f64,
    pub memory_byte_seconds: f64,
}

impl Amounts {
    fn add_scaled(&mut self, other: &Amounts, factor: f64) {
        self.pod_seconds += other.pod_seconds * factor;
        self.cpu_core_seconds += other.cpu_core_seconds * factor;
        self.memory_byte_seconds += other.memory_byte_seconds * factor;
    }

    fn of_pods(seconds: f64, cpu: f64, memory: f64) -> Amounts {
        Amounts {
            pod_seconds: seconds,
            cpu_core_seconds: seconds * cpu,
            memory_byte_seconds: seconds * memory,
        }
    }

    /// Memory in GiB-seconds, as shown.
    pub fn memory_gib_seconds(&self) -> f64 {
        self.memory_byte_seconds / GIB
    }
}

/// What one pod requests: the sum over its containers; `None` when no
/// container requests the resource (it then counts 0, and says so).
#[derive(Serialize, Clone, Copy, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Requests {
    pub cpu_cores: Option<f64>,
    pub memory_bytes: Option<f64>,
}

impl Requests {
    /// The sum of the containers' `resources.requests` (an unparsable
    /// quantity counts as absent: the apiserver would not have taken it).
    pub fn of<'a>(resources: impl IntoIterator<Item = Option<&'a ResourceRequirements>>) -> Self {
        let mut r = Requests::default();
        for res in resources.into_iter().flatten() {
            let Some(requests) = res.requests.as_ref() else {
                continue;
            };
            let value = |name: &str| {
                requests
                    .get(name)
                    .and_then(|q| crate::quantity::parse(&q.0).ok()?.as_f64())
            };
            if let Some(cpu) = value("cpu") {
                r.cpu_cores = Some(r.cpu_cores.unwrap_or(0.0) + cpu);
            }
            if let Some(memory) = value("memory") {
                r.memory_bytes = Some(r.memory_bytes.unwrap_or(0.0) + memory);
            }
        }
        r
    }
}

/// A pod as the accounting sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub pod: String,
    pub start: i64,
    pub end: Option<i64>,
    pub cpu: f64,
    pub memory: f64,
}

/// Reads a pod: `None` until it has a `startTime` (it never started on a
/// node, so it reserved nothing there). It ends when all its containers
/// have terminated (at their last `finishedAt`, as a kubelet writes it), or,
/// lacking that, `now` when it is `deleted` or its phase is Succeeded or
/// Failed.
pub struct PodSpan;

impl PodSpan {
    pub fn of(pod: &Pod, now: i64, deleted: bool) -> Option<Span> {
        let status = pod.status.as_ref()?;
        let start = status.start_time.as_ref()?.0.as_millisecond();
        let containers = status.container_statuses.as_deref().unwrap_or_default();
        let finished: Vec<Option<i64>> = containers
            .iter()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .map(|t| t.finished_at.as_ref().map(|f| f.0.as_millisecond()))
            .collect();
        let all_terminated = !containers.is_empty() && finished.len() == containers.len();
        let phase_done = matches!(status.phase.as_deref(), Some("Succeeded" | "Failed"));
        let end = if all_terminated {
            Some(
                finished
                    .iter()
                    .map(|f| f.unwrap_or(now))
                    .max()
                    .unwrap_or(now),
            )
        } else if deleted || phase_done {
            Some(now)
        } else {
            None
        };
        let requests = Requests::of(
            pod.spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .map(|c| c.resources.as_ref()),
        );
        Some(Span {
            pod: pod.metadata.name.clone().unwrap_or_default(),
            start,
            end: end.map(|e| e.max(start)),
            cpu: requests.cpu_cores.unwrap_or(0.0),
            memory: requests.memory_bytes.unwrap_or(0.0),
        })
    }
}

/// One folded hour, in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Hour {
    pub start: i64,
    pub amounts: Amounts,
}

/// The record in memory: [`UsageStatus`] with times as Unix milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct Ledger {
    pub since: i64,
    pub recorded_at: i64,
    pub pods: Vec<Span>,
    pub hours: Vec<Hour>,
}

/// What the window shows: used, and the two baselines, over the part of the
/// asked window the record covers.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Savings {
    /// The start asked for (`now - since`).
    pub asked_from: String,
    /// The start of the covered part: the later of `askedFrom` and the
    /// record's `since`.
    pub from: String,
    pub to: String,
    pub covered_seconds: f64,
    pub used: Amounts,
    /// `maxReplicas` pods through the covered span (today's `maxReplicas`).
    pub at_max_replicas: Amounts,
    /// One pod through the covered span.
    pub one_always_on: Amounts,
    pub max_replicas: i32,
    /// What one pod requests in the baselines.
    pub requests: Requests,
    /// Percent of the pod-seconds saved against `maxReplicas` always on.
    pub saved_vs_max_replicas_percent: Option<f64>,
    /// Percent of the pod-seconds saved against one pod always on
    /// (negative when the function used more than one pod's worth).
    pub saved_vs_one_always_on_percent: Option<f64>,
}

/// RFC 3339, to the millisecond when there is one.
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// An RFC 3339 time in Unix milliseconds.
pub fn parse_time(s: &str) -> Option<i64> {
    s.parse::<Timestamp>().ok().map(|t| t.as_millisecond())
}

/// `--since`: `24h`, `90m`, `7d`, `1h30m`; days are added to what
/// [`crate::duration::parse`] reads.
pub fn parse_since(s: &str) -> Result<std::time::Duration, String> {
    let t = s.trim();
    if let Some(days) = t.strip_suffix('d')
        && let Ok(n) = days.parse::<f64>()
        && n > 0.0
    {
        return std::time::Duration::try_from_secs_f64(n * 86_400.0)
            .map_err(|_| format!("{t:?} is too long"));
    }
    crate::duration::parse_positive(t).map_err(|e| format!("{e}; days as 7d"))
}

fn overlap(a: (i64, i64), b: (i64, i64)) -> i64 {
    (a.1.min(b.1) - a.0.max(b.0)).max(0)
}

fn hour_of(ms: i64) -> i64 {
    ms.div_euclid(HOUR_MS) * HOUR_MS
}

impl Ledger {
    /// A new record starting at `now`, to the whole second (the apiserver's
    /// precision for `startTime`, so a pod started in the same second is
    /// inside it).
    pub fn new(now: i64) -> Self {
        let since = now.div_euclid(1000) * 1000;
        Ledger {
            since,
            recorded_at: now,
            pods: Vec::new(),
            hours: Vec::new(),
        }
    }

    /// The record in `status.usage`; `None` when its `since` is unreadable
    /// (then a new record starts). Unreadable entries are dropped.
    pub fn from_status(s: &UsageStatus) -> Option<Self> {
        let since = parse_time(&s.since)?;
        let recorded_at = parse_time(&s.recorded_at).unwrap_or(since);
        let pods = s
            .pods
            .iter()
            .filter_map(|p| {
                Some(Span {
                    pod: p.pod.clone(),
                    start: parse_time(&p.start)?,
                    end: match &p.end {
                        Some(e) => Some(parse_time(e)?),
                        None => None,
                    },
                    cpu: p.cpu_cores,
                    memory: p.memory_bytes,
                })
            })
            .collect();
        let hours = s
            .hours
            .iter()
            .filter_map(|h| {
                Some(Hour {
                    start: parse_time(&h.hour)?,
                    amounts: Amounts {
                        pod_seconds: h.pod_seconds,
                        cpu_core_seconds: h.cpu_core_seconds,
                        memory_byte_seconds: h.memory_byte_seconds,
                    },
                })
            })
            .collect();
        Some(Ledger {
            since,
            recorded_at,
            pods,
            hours,
        })
    }

    pub fn to_status(&self) -> UsageStatus {
        UsageStatus {
            since: rfc3339(self.since),
            recorded_at: rfc3339(self.recorded_at),
            pods: self
                .pods
                .iter()
                .map(|p| PodInterval {
                    pod: p.pod.clone(),
                    start: rfc3339(p.start),
                    end: p.end.map(rfc3339),
                    cpu_cores: p.cpu,
                    memory_bytes: p.memory,
                })
                .collect(),
            hours: self
                .hours
                .iter()
                .map(|h| HourBucket {
                    hour: rfc3339(h.start),
                    pod_seconds: h.amounts.pod_seconds,
                    cpu_core_seconds: h.amounts.cpu_core_seconds,
                    memory_byte_seconds: h.amounts.memory_byte_seconds,
                })
                .collect(),
        }
    }

    /// Takes what a pod shows now. A new pod opens an interval (or adds a
    /// closed one); a known open one closes once the pod shows an end; a
    /// closed one never reopens. Returns whether the record changed.
    pub fn observe(&mut self, span: Span) -> bool {
        if let Some(known) = self.pods.iter_mut().find(|p| p.pod == span.pod) {
            return match (known.end, span.end) {
                (None, Some(end)) => {
                    known.end = Some(end.max(known.start));
                    true
                }
                _ => false,
            };
        }
        if span.end.is_some_and(|e| e <= self.since) {
            return false;
        }
        let at = self.pods.partition_point(|p| p.start <= span.start);
        self.pods.insert(at, span);
        true
    }

    /// Closes, at `at`, every open interval whose pod is not `live`: after
    /// a (re)list, the pods that went away unseen. Returns whether any was.
    pub fn close_missing(&mut self, live: &HashSet<String>, at: i64) -> bool {
        let mut changed = false;
        for p in self.pods.iter_mut().filter(|p| p.end.is_none()) {
            if !live.contains(&p.pod) {
                p.end = Some(at.max(p.start));
                changed = true;
            }
        }
        changed
    }

    /// Keeps the record bounded: folds the oldest closed intervals past
    /// [`KEPT_CLOSED_INTERVALS`] into hours and drops what is older than
    /// [`KEPT_HOURS`] (moving `since` up to the oldest hour kept). Returns
    /// whether the record changed.
    pub fn compact(&mut self, now: i64) -> bool {
        let mut changed = false;
        let cutoff = hour_of(now) - KEPT_HOURS * HOUR_MS;
        if self.since < cutoff {
            self.since = cutoff;
            changed = true;
        }
        let before = (self.hours.len(), self.pods.len());
        self.hours.retain(|h| h.start >= cutoff);
        self.pods.retain(|p| p.end.is_none_or(|e| e > cutoff));
        changed |= before != (self.hours.len(), self.pods.len());
        loop {
            let closed = self.pods.iter().filter(|p| p.end.is_some()).count();
            if closed <= KEPT_CLOSED_INTERVALS {
                break;
            }
            let Some(oldest) = self
                .pods
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((i, p.end?)))
                .min_by_key(|&(_, end)| end)
                .map(|(i, _)| i)
            else {
                break;
            };
            let span = self.pods.remove(oldest);
            self.fold(&span);
            changed = true;
        }
        changed
    }

    /// Adds a closed interval to the hours it covers (inside the record).
    fn fold(&mut self, span: &Span) {
        let Some(end) = span.end else { return };
        let mut t = span.start.max(self.since);
        while t < end {
            let hour = hour_of(t);
            let next = (hour + HOUR_MS).min(end);
            let seconds = (next - t) as f64 / 1000.0;
            let add = Amounts::of_pods(seconds, span.cpu, span.memory);
            let at = self.hours.partition_point(|h| h.start < hour);
            match self.hours.get_mut(at) {
                Some(h) if h.start == hour => h.amounts.add_scaled(&add, 1.0),
                _ => self.hours.insert(
                    at,
                    Hour {
                        start: hour,
                        amounts: add,
                    },
                ),
            }
            t = next;
        }
    }

    /// What the pods used within `[from, to]` (open intervals run until
    /// `now`), clipped to the record. An hour partly inside counts its part
    /// of the hour: usage is taken as even across a folded hour.
    pub fn used_between(&self, from: i64, to: i64, now: i64) -> Amounts {
        let range = (from.max(self.since), to);
        let mut a = Amounts::default();
        for p in &self.pods {
            let ms = overlap((p.start, p.end.unwrap_or(now).max(p.start)), range);
            let add = Amounts::of_pods(ms as f64 / 1000.0, p.cpu, p.memory);
            a.add_scaled(&add, 1.0);
        }
        for h in &self.hours {
            let ms = overlap((h.start, h.start + HOUR_MS), range);
            a.add_scaled(&h.amounts, ms as f64 / HOUR_MS as f64);
        }
        a
    }

    /// What one pod requests, as the cluster last showed it: the newest
    /// pod's requests; `None` before any pod ran.
    pub fn latest_requests(&self) -> Option<Requests> {
        self.pods.iter().max_by_key(|p| p.start).map(|p| Requests {
            cpu_cores: (p.cpu > 0.0).then_some(p.cpu),
            memory_bytes: (p.memory > 0.0).then_some(p.memory),
        })
    }

    /// The window `[now - since, now]` beside the baselines. Both baselines
    /// take today's `max_replicas` and `per_pod` requests for the whole
    /// covered span (the record keeps no history of the spec).
    pub fn window(
        &self,
        since: std::time::Duration,
        now: i64,
        max_replicas: i32,
        per_pod: Requests,
    ) -> Savings {
        let asked = now.saturating_sub(i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
        let from = asked.max(self.since).min(now);
        let covered = (now - from) as f64 / 1000.0;
        let used = self.used_between(from, now, now);
        let (cpu, memory) = (
            per_pod.cpu_cores.unwrap_or(0.0),
            per_pod.memory_bytes.unwrap_or(0.0),
        );
        let one = Amounts::of_pods(covered, cpu, memory);
        let max = Amounts::of_pods(covered * f64::from(max_replicas.max(0)), cpu, memory);
        let saved = |base: f64| (base > 0.0).then(|| 100.0 * (1.0 - used.pod_seconds / base));
        Savings {
            asked_from: rfc3339(asked),
            from: rfc3339(from),
            to: rfc3339(now),
            covered_seconds: covered,
            used,
            at_max_replicas: max,
            one_always_on: one,
            max_replicas,
            requests: per_pod,
            saved_vs_max_replicas_percent: saved(max.pod_seconds),
            saved_vs_one_always_on_percent: saved(one.pod_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateRunning, ContainerStateTerminated,
        ContainerStatus, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use std::time::Duration;

    const T0: i64 = 1_764_590_400_000; // 2025-12-01T12:00:00Z, on the hour
    const S: i64 = 1000;

    fn span(pod: &str, start: i64, end: Option<i64>) -> Span {
        Span {
            pod: pod.into(),
            start,
            end,
            cpu: 0.5,
            memory: GIB,
        }
    }

    fn ledger(pods: Vec<Span>) -> Ledger {
        let mut l = Ledger::new(T0);
        for p in pods {
            l.observe(p);
        }
        l
    }

    fn one_pod() -> Requests {
        Requests {
            cpu_cores: Some(0.5),
            memory_bytes: Some(GIB),
        }
    }

    #[test]
    fn an_open_interval_counts_until_now() {
        let l = ledger(vec![span("a", T0 + 10 * S, None)]);
        let u = l.used_between(T0, T0 + 100 * S, T0 + 70 * S);
        assert_eq!(u.pod_seconds, 60.0);
        assert_eq!(u.cpu_core_seconds, 30.0);
        assert_eq!(u.memory_gib_seconds(), 60.0);
    }

    #[test]
    fn intervals_straddling_the_window_edges_count_their_inside_part() {
        let l = ledger(vec![
            span("a", T0 + 10 * S, Some(T0 + 50 * S)),
            span("b", T0 + 90 * S, Some(T0 + 200 * S)),
        ]);
        // [40 s, 100 s]: 10 s of a, 10 s of b.
        let u = l.used_between(T0 + 40 * S, T0 + 100 * S, T0 + 300 * S);
        assert_eq!(u.pod_seconds, 20.0);
    }

    #[test]
    fn a_folded_hour_partly_inside_the_window_counts_pro_rata() {
        let mut l = Ledger::new(T0);
        l.fold(&span("a", T0, Some(T0 + 1200 * S)));
        assert_eq!(l.hours.len(), 1);
        assert_eq!(l.hours[0].amounts.pod_seconds, 1200.0);
        // The last quarter of the hour: a quarter of its 1200 s.
        let u = l.used_between(T0 + 2700 * S, T0 + 3600 * S, T0 + 3600 * S);
        assert_eq!(u.pod_seconds, 300.0);
    }

    #[test]
    fn a_window_longer_than_the_record_reports_the_covered_span() {
        let l = ledger(vec![span("a", T0 + 100 * S, Some(T0 + 160 * S))]);
        let now = T0 + 600 * S;
        let w = l.window(Duration::from_secs(86_400), now, 10, one_pod());
        assert_eq!(w.covered_seconds, 600.0);
        assert_eq!(w.from, "2025-12-01T12:00:00Z");
        assert_eq!(w.asked_from, "2025-11-30T12:10:00Z");
        assert_eq!(w.used.pod_seconds, 60.0);
        assert_eq!(w.one_always_on.pod_seconds, 600.0);
        assert_eq!(w.at_max_replicas.pod_seconds, 6000.0);
        assert_eq!(w.at_max_replicas.cpu_core_seconds, 3000.0);
        assert_eq!(w.saved_vs_one_always_on_percent, Some(90.0));
        assert_eq!(w.saved_vs_max_replicas_percent, Some(99.0));
    }

    #[test]
    fn a_window_inside_the_record_covers_just_itself() {
        let l = ledger(vec![span("a", T0 + 100 * S, None)]);
        let w = l.window(Duration::from_secs(60), T0 + 3600 * S, 2, one_pod());
        assert_eq!(w.covered_seconds, 60.0);
        assert_eq!(w.used.pod_seconds, 60.0);
        assert_eq!(w.saved_vs_one_always_on_percent, Some(0.0));
        assert_eq!(w.saved_vs_max_replicas_percent, Some(50.0));
    }

    #[test]
    fn more_than_one_pods_worth_is_a_negative_saving_against_one() {
        let l = ledger(vec![span("a", T0, None), span("b", T0, None)]);
        let w = l.window(Duration::from_secs(100), T0 + 100 * S, 4, one_pod());
        assert_eq!(w.saved_vs_one_always_on_percent, Some(-100.0));
        assert_eq!(w.saved_vs_max_replicas_percent, Some(50.0));
    }

    #[test]
    fn without_requests_the_resources_count_zero_and_say_so() {
        let mut l = Ledger::new(T0);
        l.observe(Span {
            cpu: 0.0,
            memory: 0.0,
            ..span("a", T0, None)
        });
        assert_eq!(
            l.latest_requests(),
            Some(Requests {
                cpu_cores: None,
                memory_bytes: None
            })
        );
        let w = l.window(Duration::from_secs(10), T0 + 10 * S, 3, Requests::default());
        assert_eq!(w.used.pod_seconds, 10.0);
        assert_eq!(w.used.cpu_core_seconds, 0.0);
        assert_eq!(w.at_max_replicas.cpu_core_seconds, 0.0);
        assert_eq!(w.requests.cpu_cores, None);
    }

    #[test]
    fn a_pod_closes_once_and_never_reopens() {
        let mut l = ledger(vec![span("a", T0, None)]);
        assert!(!l.observe(span("a", T0, None)));
        assert!(l.observe(span("a", T0, Some(T0 + 5 * S))));
        assert!(!l.observe(span("a", T0, Some(T0 + 9 * S))));
        assert!(!l.observe(span("a", T0, None)));
        assert_eq!(l.pods[0].end, Some(T0 + 5 * S));
    }

    #[test]
    fn a_new_leader_continues_the_open_intervals_from_status() {
        let mut first = ledger(vec![
            span("a", T0, Some(T0 + 20 * S)),
            span("b", T0 + 30 * S, None),
        ]);
        first.recorded_at = T0 + 40 * S;
        let status = first.to_status();
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["pods"][1].get("end"), None);
        let mut second =
            Ledger::from_status(&serde_json::from_value::<UsageStatus>(json).unwrap()).unwrap();
        assert_eq!(second, first);
        // The new leader sees b still running, then b ends.
        assert!(!second.observe(span("b", T0 + 30 * S, None)));
        assert!(second.observe(span("b", T0 + 30 * S, Some(T0 + 90 * S))));
        let u = second.used_between(T0, T0 + 100 * S, T0 + 100 * S);
        assert_eq!(u.pod_seconds, 20.0 + 60.0);
    }

    #[test]
    fn pods_gone_while_unwatched_close_at_the_given_time() {
        let mut l = ledger(vec![span("a", T0, None), span("b", T0, None)]);
        let live: HashSet<String> = ["b".to_string()].into();
        assert!(l.close_missing(&live, T0 + 30 * S));
        assert!(!l.close_missing(&live, T0 + 60 * S));
        assert_eq!(l.pods[0].end, Some(T0 + 30 * S));
        assert_eq!(l.pods[1].end, None);
    }

    #[test]
    fn folding_bounds_the_intervals_and_keeps_the_totals() {
        let mut l = Ledger::new(T0);
        // 80 pods of 100 s each, one every 120 s, spanning several hours.
        for i in 0..80 {
            let start = T0 + i * 120 * S + 7 * S;
            l.observe(span(&format!("p{i}"), start, Some(start + 100 * S)));
        }
        l.observe(span("open", T0 + 10_000 * S, None));
        let now = T0 + 11_000 * S;
        let before = l.used_between(T0, now, now);
        assert!(l.compact(now));
        assert_eq!(l.pods.len(), KEPT_CLOSED_INTERVALS + 1);
        assert!(l.pods.iter().any(|p| p.pod == "open"));
        assert!(!l.hours.is_empty());
        let after = l.used_between(T0, now, now);
        assert!((after.pod_seconds - before.pod_seconds).abs() < 1e-6);
        assert!((after.memory_byte_seconds - before.memory_byte_seconds).abs() < 1.0);
        assert_eq!(before.pod_seconds, 8000.0 + 1000.0);
        assert!(!l.compact(now), "a compact record stays as it is");
    }

    #[test]
    fn a_fold_across_an_hour_boundary_splits_the_interval() {
        let mut l = Ledger::new(T0);
        l.fold(&span("a", T0 + 3500 * S, Some(T0 + 3700 * S)));
        let secs: Vec<f64> = l.hours.iter().map(|h| h.amounts.pod_seconds).collect();
        assert_eq!(secs, vec![100.0, 100.0]);
        assert_eq!(l.hours[1].start, T0 + HOUR_MS);
    }

    #[test]
    fn what_is_older_than_seven_days_is_dropped_and_since_moves_up() {
        let mut l = Ledger::new(T0);
        l.fold(&span("a", T0, Some(T0 + 60 * S)));
        l.observe(span("b", T0 + 100 * S, Some(T0 + 160 * S)));
        let now = T0 + (KEPT_HOURS + 2) * HOUR_MS;
        assert!(l.compact(now));
        assert!(l.hours.is_empty());
        assert!(l.pods.is_empty());
        assert_eq!(l.since, now - KEPT_HOURS * HOUR_MS);
    }

    #[test]
    fn a_pod_reads_from_its_start_time_to_its_last_finished_at() {
        let t = |ms: i64| Time(Timestamp::from_millisecond(ms).unwrap());
        let container = |state: ContainerState| ContainerStatus {
            state: Some(state),
            ..Default::default()
        };
        let terminated = |ms: i64| ContainerState {
            terminated: Some(ContainerStateTerminated {
                finished_at: Some(t(ms)),
                ..Default::default()
            }),
            ..Default::default()
        };
        let running = ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(t(T0)),
            }),
            ..Default::default()
        };
        let mut requests = std::collections::BTreeMap::new();
        requests.insert("cpu".to_string(), Quantity("250m".into()));
        requests.insert("memory".to_string(), Quantity("64Mi".into()));
        let pod = |states: Vec<ContainerState>| Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("p".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![
                    Container {
                        resources: Some(ResourceRequirements {
                            requests: Some(requests.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    Container::default(),
                ],
                ..Default::default()
            }),
            status: Some(PodStatus {
                start_time: Some(t(T0)),
                phase: Some("Running".into()),
                container_statuses: Some(states.into_iter().map(container).collect()),
                ..Default::default()
            }),
        };
        let now = T0 + 99 * S;
        let s = PodSpan::of(&pod(vec![running.clone(), running.clone()]), now, false).unwrap();
        assert_eq!((s.start, s.end), (T0, None));
        assert_eq!((s.cpu, s.memory), (0.25, 64.0 * 1024.0 * 1024.0));
        // One container done, one running: still running.
        let s = PodSpan::of(
            &pod(vec![terminated(T0 + 5 * S), running.clone()]),
            now,
            false,
        );
        assert_eq!(s.unwrap().end, None);
        let s = PodSpan::of(
            &pod(vec![terminated(T0 + 5 * S), terminated(T0 + 7 * S)]),
            now,
            false,
        );
        assert_eq!(s.unwrap().end, Some(T0 + 7 * S));
        // Deleted before its containers showed an end: seen then.
        let s = PodSpan::of(&pod(vec![running]), now, true);
        assert_eq!(s.unwrap().end, Some(now));
        let mut unstarted = pod(vec![]);
        unstarted.status.as_mut().unwrap().start_time = None;
        assert_eq!(PodSpan::of(&unstarted, now, false), None);
    }

    #[test]
    fn since_takes_hours_minutes_and_days() {
        assert_eq!(parse_since("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_since("90m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_since("7d"), Ok(Duration::from_secs(604_800)));
        assert!(parse_since("0s").is_err());
        assert!(parse_since("soon").unwrap_err().contains("7d"));
    }

    #[test]
    fn a_new_record_starts_on_the_whole_second() {
        let l = Ledger::new(T0 + 1_750);
        assert_eq!(l.since, T0 + 1_000);
        assert_eq!(rfc3339(T0 + 1_750), "2025-12-01T12:00:01.75Z");
        assert_eq!(parse_time("2025-12-01T12:00:01.75Z"), Some(T0 + 1_750));
    }
}
