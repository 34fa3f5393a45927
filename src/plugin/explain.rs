//! `kubectl siesta explain NAME`: why the Function has the replicas it has
//! (the autoscaler's inputs, windows, mode, clamps and delay, and its last
//! few decisions from the leader's history), whether it is Ready and why,
//! and its last cold start phase by phase, in sentences.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use serde::Serialize;
use siesta_api::cold_start::{ColdStartStatus, Phase};
use siesta_api::decisions::{DecisionHistory, DecisionRecord};
use siesta_api::{Function, ScaleMetric};

use super::cluster::Cluster;
use super::format::number;
use super::list::cold_starts_within;
use super::{Global, Output, print_object};

/// Decisions shown as text (`-o json` has them all).
const SHOWN_DECISIONS: usize = 5;

/// What `explain -o json|yaml` prints.
#[derive(Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub namespace: String,
    pub name: String,
    /// What its Deployment asks for now; `None` when it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// What the autoscaler asked for at its last decision
    /// (`status.desiredReplicas`).
    pub desired_replicas: i32,
    pub ready_replicas: i32,
    pub reason: Option<String>,
    pub scale: siesta_api::ScaleSpec,
    /// The leader's decision history, oldest first.
    pub decisions: Vec<DecisionRecord>,
    /// Why there is no history, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decisions_unavailable: Option<String>,
    pub conditions: Vec<Condition>,
    pub last_cold_start: Option<ColdStartStatus>,
    pub cold_starts_last_hour: usize,
    /// The `scale.schedules` window that sets the floor now, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_schedule: Option<String>,
    /// What scaling to zero saved over `since` (none before the controller
    /// wrote `status.usage`).
    pub saved: Option<siesta_api::usage::Savings>,
    /// The window asked for, in seconds.
    pub since_seconds: f64,
}

impl Explanation {
    /// `replicas`: the Deployment's `spec.replicas` now, if read.
    pub fn of(
        f: &Function,
        replicas: Option<i32>,
        decisions: Result<Option<DecisionHistory>, String>,
        now: DateTime<Utc>,
        since: Duration,
    ) -> Explanation {
        let status = f.status.clone().unwrap_or_default();
        let (history, unavailable) = match decisions {
            Ok(Some(h)) => (h.decisions, None),
            Ok(None) => (
                Vec::new(),
                Some("the leading controller has not decided for it yet".to_string()),
            ),
            Err(e) => (Vec::new(), Some(e)),
        };
        let (cold, _) =
            cold_starts_within(&status.recent_cold_starts, now, Duration::from_secs(3600));
        Explanation {
            namespace: f.namespace().unwrap_or_default(),
            name: f.name_any(),
            replicas,
            desired_replicas: status.desired_replicas,
            ready_replicas: status.ready_replicas,
            reason: history
                .last()
                .map(|d| d.reason.clone())
                .or_else(|| status.autoscaler.as_ref().map(|a| a.reason.clone())),
            scale: f.spec.scale.clone(),
            decisions: history,
            decisions_unavailable: unavailable,
            conditions: status.conditions.clone(),
            last_cold_start: status.last_cold_start.clone(),
            cold_starts_last_hour: cold,
            active_schedule: status
                .autoscaler
                .as_ref()
                .and_then(|a| a.active_schedule.clone()),
            saved: super::saved::savings_of(f, since, now),
            since_seconds: since.as_secs_f64(),
        }
    }

    /// The explanation in sentences: one paragraph each for the replicas,
    /// the autoscaler's inputs, its decisions, readiness, cold starts and
    /// savings.
    pub fn text(&self) -> String {
        let mut o = String::new();
        self.replicas(&mut o);
        self.inputs(&mut o);
        o.push('\n');
        self.history(&mut o);
        o.push('\n');
        o.push_str(&readiness(&self.conditions));
        o.push('\n');
        self.cold_starts(&mut o);
        o.push('\n');
        o.push_str(&super::saved::text(
            self.saved.as_ref(),
            Duration::from_secs_f64(self.since_seconds),
        ));
        o
    }

    /// How many replicas it has and why, and the schedule window in force.
    /// The count is the Deployment's: a wake-up (or a `kubectl scale`)
    /// changes it before the autoscaler's next decision, which is then
    /// said to be older than the count.
    fn replicas(&self, o: &mut String) {
        let plural = |n: i32| if n == 1 { "replica" } else { "replicas" };
        let has = self.replicas.unwrap_or(self.desired_replicas);
        let _ = write!(
            o,
            "{} has {} {} ({} ready)",
            self.name,
            has,
            plural(has),
            self.ready_replicas
        );
        match &self.reason {
            Some(r) if has == self.desired_replicas => {
                let _ = writeln!(o, " because {r}.");
            }
            Some(r) => {
                let _ = writeln!(
                    o,
                    "; {}. The autoscaler's last decision, before that, asked for {} because {r}; it decides again within its --autoscale-interval.",
                    self.changed_since_the_decision(),
                    self.desired_replicas,
                );
            }
            None => {
                let _ = writeln!(o, "; the autoscaler has not decided for it yet.");
            }
        }
        if let Some(window) = &self.active_schedule {
            let _ = writeln!(o, "A scale.schedules window sets the floor now: {window}.");
        }
    }

    /// What changed the count after the last decision: a request's wake-up
    /// when the last cold start came later, else another writer.
    fn changed_since_the_decision(&self) -> String {
        let parse = |t: &str| DateTime::parse_from_rfc3339(t).ok();
        let decided = self.decisions.last().and_then(|d| parse(&d.at));
        let woke = self.last_cold_start.as_ref().and_then(|c| parse(&c.at));
        match (woke, decided) {
            (Some(w), Some(d)) if w > d => format!(
                "a request woke it at {}, after the autoscaler's last decision at {}",
                w.with_timezone(&Utc).format("%H:%M:%S%.3f"),
                d.with_timezone(&Utc).format("%H:%M:%S%.3f"),
            ),
            _ => "the count changed after the autoscaler's last decision (a wake-up by a request, or a manual scale)".to_string(),
        }
    }

    /// What the last decision saw, or the settings when there is none.
    fn inputs(&self, o: &mut String) {
        let s = &self.scale;
        let metric = match s.metric {
            ScaleMetric::Concurrency => "concurrency",
            ScaleMetric::Rps => "rps",
        };
        match self.decisions.last() {
            Some(d) => {
                let value = if d.metric == "rps" {
                    d.stable_rps
                } else {
                    d.stable_concurrency
                };
                // As the decision counts pods: a hair of tolerance, never below 0
                // (`max` also turns ceil's -0 into 0).
                let wants = (value / d.target - 1e-9).ceil().max(0.0) + 0.0;
                let wants = if wants <= 0.0 { 0 } else { wants as i64 };
                let _ = writeln!(
                    o,
                    "Inputs: concurrency {} and {} requests/s, averaged over the {}s stable window (the panic window is the last {}s); mode {}; target {} {} per pod → {} pod(s); clamped to [{}, {}]; scale-down delay {}s; to zero after {}s without requests. Seen: {} replica(s) asked for, {} ready.",
                    number(d.stable_concurrency),
                    number(d.stable_rps),
                    number(d.stable_window_seconds),
                    number(d.panic_window_seconds),
                    d.mode,
                    number(d.target),
                    d.metric,
                    wants,
                    d.min_replicas,
                    d.max_replicas,
                    d.scale_down_delay_seconds,
                    d.scale_to_zero_after_seconds,
                    d.current,
                    d.ready,
                );
            }
            None => {
                let _ = writeln!(
                    o,
                    "Settings: target {} {metric} per pod over a {}s stable window (panic window {}% of it); clamped to [{}, {}]; scale-down delay {}s; to zero after {}s without requests.",
                    number(s.target),
                    s.stable_window_seconds,
                    s.panic_window_percent,
                    s.min_replicas,
                    s.max_replicas,
                    s.scale_down_delay_seconds,
                    s.scale_to_zero_after_seconds,
                );
            }
        }
    }

    /// The last decisions, or why there are none.
    fn history(&self, o: &mut String) {
        if let Some(why) = &self.decisions_unavailable {
            let _ = writeln!(o, "No decision history: {why}.");
        } else {
            let shown = &self.decisions[self.decisions.len().saturating_sub(SHOWN_DECISIONS)..];
            let _ = writeln!(
                o,
                "The last {} decisions (oldest first; a line is a run with the same outcome):",
                shown.len()
            );
            for d in shown {
                let _ = writeln!(o, "  {}", decision_line(d));
            }
        }
    }

    /// The last cold start and how many there were in the last hour.
    fn cold_starts(&self, o: &mut String) {
        match &self.last_cold_start {
            Some(c) => o.push_str(&cold_start_text(c)),
            None => o.push_str("No cold start recorded yet.\n"),
        }
        let _ = writeln!(
            o,
            "Cold starts in the last hour: {}.",
            self.cold_starts_last_hour
        );
    }
}

/// `15:40:02–15:40:30  0 → 1 (0 ready)  stable  ×15  <reason>`
pub fn decision_line(d: &DecisionRecord) -> String {
    let time = |t: &str| {
        DateTime::parse_from_rfc3339(t)
            .map(|t| t.with_timezone(&Utc).format("%H:%M:%S").to_string())
            .unwrap_or_else(|_| t.to_string())
    };
    let (since, at) = (time(&d.since), time(&d.at));
    let when = if since != at {
        format!("{since}–{at}")
    } else {
        at
    };
    let times = if d.count > 1 {
        format!(", {} times", d.count)
    } else {
        String::new()
    };
    // The reason usually opens with the mode ("stable: ..."); say it once.
    let mode = if d.reason.starts_with(&format!("{}:", d.mode)) {
        String::new()
    } else {
        format!(", {}", d.mode)
    };
    format!(
        "{when}  {} → {} ({} ready){mode}{times}: {}",
        d.current, d.desired, d.ready, d.reason
    )
}

/// Ready and Active, with their reasons, as sentences.
pub fn readiness(conditions: &[Condition]) -> String {
    let mut o = String::new();
    match conditions.iter().find(|c| c.type_ == "Ready") {
        Some(c) => {
            let is = if c.status == "True" {
                "is Ready"
            } else {
                "is not Ready"
            };
            let _ = writeln!(
                o,
                "It {is} ({}): {}.",
                c.reason,
                c.message.trim_end_matches('.')
            );
        }
        None => {
            o.push_str("It has no Ready condition yet: the controller has not reconciled it.\n")
        }
    }
    if let Some(c) = conditions.iter().find(|c| c.type_ == "Active") {
        let is = if c.status == "True" {
            "is Active"
        } else {
            "is not Active"
        };
        let _ = writeln!(
            o,
            "It {is} ({}): {}.",
            c.reason,
            c.message.trim_end_matches('.')
        );
    }
    o
}

/// The last cold start, phase by phase, in plain sentences.
pub fn cold_start_text(c: &ColdStartStatus) -> String {
    let mut o = String::new();
    let pod = c
        .pod
        .as_deref()
        .map(|p| format!(" on pod {p}"))
        .unwrap_or_default();
    let slowest = Phase::ALL.iter().find(|p| p.name() == c.slowest).copied();
    let _ = writeln!(
        o,
        "The last cold start, at {}{pod}, took {} from the first request to its first response byte:",
        c.at, c.total
    );
    let mut prev = "the request arrived";
    for (phase, d) in c.phases() {
        let mark = if Some(phase) == slowest {
            " (the slowest)"
        } else {
            ""
        };
        let _ = writeln!(
            o,
            "  {d} from when {prev} until {}{mark};",
            phase.sentence()
        );
        prev = phase.sentence();
    }
    if let Some(p) = slowest {
        let took = c
            .phases()
            .iter()
            .find(|(q, _)| *q == p)
            .map_or("?", |(_, d)| *d)
            .to_string();
        let _ = writeln!(
            o,
            "The slowest phase was {} ({took}, until {}).",
            p.name(),
            p.sentence()
        );
    }
    o
}

pub async fn run(
    c: &Cluster,
    g: &Global,
    name: &str,
    since: Duration,
    out: Option<Output>,
) -> anyhow::Result<ExitCode> {
    let f = c.function(&c.namespace, name).await?;
    let replicas = c.deployment_replicas(&c.namespace, name).await;
    let decisions = c
        .decisions(g, &c.namespace, name)
        .await
        .map_err(|e| format!("{e:#}"));
    let e = Explanation::of(&f, replicas, decisions, Utc::now(), since);
    match out {
        Some(out) => print_object(&e, out)?,
        None => print!("{}", e.text()),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn record(desired: i32, count: u64, reason: &str) -> DecisionRecord {
        DecisionRecord {
            since: "2026-12-01T10:00:00.000Z".into(),
            at: "2026-12-01T10:00:30.000Z".into(),
            count,
            desired,
            current: 1,
            ready: 1,
            mode: "stable".into(),
            metric: "concurrency".into(),
            target: 10.0,
            stable_window_seconds: 60.0,
            panic_window_seconds: 6.0,
            stable_concurrency: 13.2,
            stable_rps: 40.0,
            min_replicas: 0,
            max_replicas: 10,
            scale_down_delay_seconds: 0,
            scale_to_zero_after_seconds: 30,
            reason: reason.into(),
        }
    }

    fn function() -> Function {
        let spec = serde_json::from_value(serde_json::json!({"image": "x"})).unwrap();
        let mut f = Function::new("hello", spec);
        f.metadata.namespace = Some("default".into());
        f.status = Some(siesta_api::FunctionStatus {
            desired_replicas: 2,
            ready_replicas: 1,
            conditions: vec![Condition {
                type_: "Ready".into(),
                status: "False".into(),
                reason: "Scaling".into(),
                message: "1 of 2 replicas ready.".into(),
                last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                    "2026-12-01T10:00:00Z".parse().unwrap(),
                ),
                observed_generation: None,
            }],
            last_cold_start: Some(ColdStartStatus::new(
                "2026-12-01T09:59:00.000Z".into(),
                Some("hello-abc".into()),
                &[12, 88, 800, 400, 5, 4].map(Duration::from_millis),
            )),
            ..Default::default()
        });
        f
    }

    #[test]
    fn the_explanation_gives_the_reason_inputs_clamps_and_decisions() {
        let h = DecisionHistory {
            namespace: "default".into(),
            name: "hello".into(),
            decisions: vec![
                record(1, 1, "stable: concurrency 3.00 wants 1"),
                record(
                    2,
                    15,
                    "stable: concurrency 13.20 over the last 60s at target 10 per pod wants 2",
                ),
            ],
        };
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:01:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = Explanation::of(&function(), Some(2), Ok(Some(h)), now, DAY).text();
        assert!(
            t.starts_with(
                "hello has 2 replicas (1 ready) because stable: concurrency 13.20 over the last 60s"
            ),
            "{t}"
        );
        assert!(t.contains("concurrency 13.2 and 40 requests/s, averaged over the 60s stable window (the panic window is the last 6s); mode stable; target 10 concurrency per pod → 2 pod(s); clamped to [0, 10]; scale-down delay 0s"), "{t}");
        assert!(
            t.contains("10:00:00–10:00:30  1 → 2 (1 ready), 15 times: stable: concurrency 13.20"),
            "{t}"
        );
        assert!(
            t.contains("It is not Ready (Scaling): 1 of 2 replicas ready."),
            "{t}"
        );
        assert!(
            t.contains(
                "12ms from when the request arrived until the controller's scale write returned;"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "800ms from when the pod was scheduled until its container started (the slowest);"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "The slowest phase was containerStart (800ms, until its container started)."
            ),
            "{t}"
        );
    }

    /// Woken by a request (through a controller replica that is not the
    /// leader) after the leader's last decision at zero: the count is the
    /// Deployment's, and the older decision is said to be older.
    #[test]
    fn a_wake_after_the_last_decision_shows_the_deployments_count() {
        let mut at_zero = record(0, 3, "idle: at zero; the next request wakes it");
        at_zero.current = 0;
        at_zero.ready = 0;
        let h = DecisionHistory {
            namespace: "default".into(),
            name: "hello".into(),
            decisions: vec![at_zero],
        };
        let mut f = function();
        let status = f.status.as_mut().unwrap();
        status.desired_replicas = 0;
        status.last_cold_start = Some(ColdStartStatus::new(
            "2026-12-01T10:00:31.250Z".into(),
            Some("hello-abc".into()),
            &[12, 0, 0, 900, 5, 4].map(Duration::from_millis),
        ));
        let now = DateTime::parse_from_rfc3339("2026-12-01T10:00:33Z")
            .unwrap()
            .with_timezone(&Utc);
        let t = Explanation::of(&f, Some(1), Ok(Some(h.clone())), now, DAY).text();
        assert!(
            t.starts_with(
                "hello has 1 replica (1 ready); a request woke it at 10:00:31.250, after the autoscaler's last decision at 10:00:30.000. The autoscaler's last decision, before that, asked for 0 because idle: at zero"
            ),
            "{t}"
        );
        // A count changed by someone else: no wake after the decision.
        f.status.as_mut().unwrap().last_cold_start = None;
        let t = Explanation::of(&f, Some(3), Ok(Some(h.clone())), now, DAY).text();
        assert!(
            t.starts_with("hello has 3 replicas (1 ready); the count changed after the autoscaler's last decision (a wake-up by a request, or a manual scale)."),
            "{t}"
        );
        // The Deployment unreadable: the autoscaler's count, as before.
        let t = Explanation::of(&f, None, Ok(Some(h)), now, DAY).text();
        assert!(
            t.starts_with("hello has 0 replicas (1 ready) because idle: at zero"),
            "{t}"
        );
    }

    #[test]
    fn without_a_history_it_says_why_and_falls_back_to_the_spec() {
        let now = Utc::now();
        let t = Explanation::of(
            &function(),
            None,
            Err("no controller Lease".into()),
            now,
            DAY,
        )
        .text();
        assert!(
            t.contains("No decision history: no controller Lease."),
            "{t}"
        );
        assert!(
            t.contains("Settings: target 10 concurrency per pod over a 60s stable window"),
            "{t}"
        );
        assert!(
            t.contains("hello has 2 replicas (1 ready); the autoscaler has not decided"),
            "{t}"
        );
        assert!(
            t.ends_with("What scaling to zero saved: no record yet (the leading controller writes status.usage once it has seen the Function).\n"),
            "{t}"
        );
    }
}
