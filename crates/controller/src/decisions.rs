//! The autoscaler's recent decisions per Function, kept in memory on the
//! leader and served by the admin server (`GET /v1/decisions/NS/NAME`) so
//! `kubectl siesta explain` can say why a function has the replicas it has.
//!
//! Consecutive decisions with the same outcome merge into one record (see
//! [`siesta_api::decisions`]); each Function keeps its last
//! [`PER_FUNCTION`] records, and at most [`FUNCTIONS`] Functions are kept
//! (the least recently decided goes first), so deleted Functions cannot
//! grow it without bound. A new leader starts empty, like its autoscaler.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SecondsFormat, Utc};
use siesta_api::ScaleSpec;
use siesta_api::decisions::DecisionRecord;
use siesta_api::names::FunctionKey;

use crate::autoscaler::decision::Decision;

/// Records kept per Function.
pub const PER_FUNCTION: usize = 20;
/// Functions kept.
pub const FUNCTIONS: usize = 10_000;

#[derive(Default)]
pub struct DecisionLog {
    inner: Mutex<Log>,
}

#[derive(Default)]
struct Log {
    /// A monotonic sequence, not a clock: what "least recently decided" means.
    seq: u64,
    functions: HashMap<FunctionKey, (u64, VecDeque<DecisionRecord>)>,
}

impl DecisionLog {
    /// Adds one decision, made at `now` for a Deployment at `current`
    /// replicas with `ready` pods ready.
    pub fn record(
        &self,
        key: &FunctionKey,
        spec: &ScaleSpec,
        current: i32,
        ready: i32,
        d: &Decision,
        now: SystemTime,
    ) {
        self.push(key, record_of(spec, current, ready, d, now));
    }

    /// Adds a record, merging it into the last one on the same outcome.
    pub fn push(&self, key: &FunctionKey, record: DecisionRecord) {
        let Ok(mut log) = self.inner.lock() else {
            return;
        };
        log.seq += 1;
        let seq = log.seq;
        let map = &mut log.functions;
        // Evicting scans every Function, but only when a new one arrives at
        // the cap; the common push is a map lookup.
        if !map.contains_key(key)
            && map.len() >= FUNCTIONS
            && let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (s, _))| *s)
                .map(|(k, _)| k.clone())
        {
            map.remove(&oldest);
        }
        // Room for one record: most Functions at zero only ever have the
        // one (idle, merged), and the default first allocation is four
        // (about 600 bytes more per Function at 10,000).
        let (last_seq, records) = map
            .entry(key.clone())
            .or_insert_with(|| (0, VecDeque::with_capacity(1)));
        *last_seq = seq;
        match records.back_mut() {
            Some(last) if last.same_outcome(&record) => {
                let since = std::mem::take(&mut last.since);
                let count = last.count + record.count;
                *last = DecisionRecord {
                    since,
                    count,
                    ..record
                };
            }
            _ => {
                records.push_back(record);
                while records.len() > PER_FUNCTION {
                    records.pop_front();
                }
            }
        }
    }

    /// The Function's records, oldest first; `None` when it has none.
    pub fn get(&self, key: &FunctionKey) -> Option<Vec<DecisionRecord>> {
        let log = self.inner.lock().ok()?;
        log.functions
            .get(key)
            .map(|(_, r)| r.iter().cloned().collect())
    }
}

/// The record of one decision. The window lengths are worked out as
/// `decision::decide` does (at least 1 s each).
pub fn record_of(
    spec: &ScaleSpec,
    current: i32,
    ready: i32,
    d: &Decision,
    now: SystemTime,
) -> DecisionRecord {
    let stable = Duration::from_secs(u64::try_from(spec.stable_window_seconds).unwrap_or(0))
        .max(Duration::from_secs(1));
    let panic = stable
        .mul_f64(f64::from(spec.panic_window_percent.clamp(1, 100)) / 100.0)
        .max(Duration::from_secs(1));
    let at = DateTime::<Utc>::from(now).to_rfc3339_opts(SecondsFormat::Millis, true);
    DecisionRecord {
        since: at.clone(),
        at,
        count: 1,
        desired: d.desired,
        current,
        ready,
        mode: d.mode.as_str().to_string(),
        metric: match spec.metric {
            siesta_api::ScaleMetric::Concurrency => "concurrency",
            siesta_api::ScaleMetric::Rps => "rps",
        }
        .to_string(),
        target: spec.target,
        stable_window_seconds: stable.as_secs_f64(),
        panic_window_seconds: panic.as_secs_f64(),
        stable_concurrency: round(d.concurrency),
        stable_rps: round(d.rps),
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        scale_down_delay_seconds: spec.scale_down_delay_seconds,
        scale_to_zero_after_seconds: spec.scale_to_zero_after_seconds,
        reason: d.reason.clone(),
    }
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autoscaler::decision::Mode;

    fn key(name: &str) -> FunctionKey {
        FunctionKey {
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    fn decision(desired: i32, reason: &str) -> Decision {
        Decision {
            desired,
            mode: Mode::Stable,
            concurrency: 13.21,
            rps: 40.0,
            reason: reason.into(),
            panic_entered: false,
            schedule: None,
        }
    }

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    #[test]
    fn the_same_outcome_extends_the_run_and_keeps_the_latest_reason() {
        let log = DecisionLog::default();
        let spec = ScaleSpec::default();
        log.record(&key("a"), &spec, 0, 0, &decision(1, "wake"), at(0));
        log.record(&key("a"), &spec, 1, 0, &decision(1, "waiting"), at(2));
        log.record(&key("a"), &spec, 1, 0, &decision(1, "still waiting"), at(4));
        log.record(&key("a"), &spec, 1, 1, &decision(1, "served"), at(6));
        let r = log.get(&key("a")).unwrap();
        assert_eq!(r.len(), 3, "{r:#?}");
        assert_eq!(r[1].count, 2);
        assert_eq!(r[1].since, "2027-01-15T08:00:02.000Z");
        assert_eq!(r[1].at, "2027-01-15T08:00:04.000Z");
        assert_eq!(r[1].reason, "still waiting");
        assert_eq!(r[2].ready, 1);
        assert!(log.get(&key("b")).is_none());
    }

    #[test]
    fn past_the_cap_the_least_recently_decided_function_goes() {
        let log = DecisionLog::default();
        let spec = ScaleSpec::default();
        for i in 0..FUNCTIONS {
            log.record(
                &key(&format!("f{i}")),
                &spec,
                1,
                1,
                &decision(1, "x"),
                at(0),
            );
        }
        // f0 decided again: f1 is now the least recent.
        log.record(&key("f0"), &spec, 1, 1, &decision(1, "x"), at(1));
        log.record(&key("new"), &spec, 1, 1, &decision(1, "x"), at(2));
        assert!(log.get(&key("f0")).is_some());
        assert!(log.get(&key("f1")).is_none());
        assert!(log.get(&key("new")).is_some());
    }

    #[test]
    fn only_the_last_twenty_runs_are_kept() {
        let log = DecisionLog::default();
        let spec = ScaleSpec::default();
        for i in 0..30 {
            log.record(&key("a"), &spec, i, i, &decision(i + 1, "up"), at(i as u64));
        }
        let r = log.get(&key("a")).unwrap();
        assert_eq!(r.len(), PER_FUNCTION);
        assert_eq!(r[0].current, 10);
        assert_eq!(r[19].desired, 30);
    }

    #[test]
    fn a_record_carries_the_windows_clamps_and_inputs() {
        let spec = ScaleSpec {
            stable_window_seconds: 60,
            panic_window_percent: 10,
            max_replicas: 7,
            scale_down_delay_seconds: 30,
            ..ScaleSpec::default()
        };
        let r = record_of(&spec, 2, 2, &decision(2, "stable"), at(0));
        assert_eq!(r.stable_window_seconds, 60.0);
        assert_eq!(r.panic_window_seconds, 6.0);
        assert_eq!((r.min_replicas, r.max_replicas), (0, 7));
        assert_eq!(r.scale_down_delay_seconds, 30);
        assert_eq!(r.metric, "concurrency");
        assert_eq!(r.stable_concurrency, 13.21);
    }
}
