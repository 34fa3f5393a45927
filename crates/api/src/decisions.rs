//! The autoscaler's recent decisions, as the leading controller serves them
//! on its admin port (`GET /v1/decisions/{namespace}/{name}`) for
//! `kubectl siesta explain`. Shared here so the server and the client read
//! one type.
//!
//! One [`DecisionRecord`] is a run of consecutive decisions with the same
//! outcome (desired, current, ready, mode): the autoscaler decides every
//! couple of seconds, and twenty identical "stable: wants 1" lines would
//! push the one that scaled the function out of the history. The record
//! keeps the run's first and last time, how many decisions it holds, and the
//! inputs and reason of the last one.

use serde::{Deserialize, Serialize};

/// The answer of `GET /v1/decisions/{namespace}/{name}`.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DecisionHistory {
    pub namespace: String,
    pub name: String,
    /// Oldest first.
    pub decisions: Vec<DecisionRecord>,
}

/// A run of decisions with the same outcome, and what the last one saw.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DecisionRecord {
    /// The first decision of the run (RFC 3339, milliseconds).
    pub since: String,
    /// The last decision of the run.
    pub at: String,
    /// Decisions in the run.
    pub count: u64,
    pub desired: i32,
    /// The Deployment's replicas when decided.
    pub current: i32,
    /// Ready pods when decided.
    pub ready: i32,
    /// `stable` or `panic`.
    pub mode: String,
    /// `concurrency` or `rps`.
    pub metric: String,
    /// Per-pod target of the metric.
    pub target: f64,
    pub stable_window_seconds: f64,
    pub panic_window_seconds: f64,
    /// Stable-window average concurrency.
    pub stable_concurrency: f64,
    /// Stable-window average requests per second.
    pub stable_rps: f64,
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub scale_down_delay_seconds: i32,
    pub scale_to_zero_after_seconds: i32,
    pub reason: String,
}

impl DecisionRecord {
    /// Whether `other` has the same outcome, so it extends this run.
    pub fn same_outcome(&self, other: &DecisionRecord) -> bool {
        self.desired == other.desired
            && self.current == other.current
            && self.ready == other.ready
            && self.mode == other.mode
    }
}
