//! The controller's Prometheus metrics, in a registry of its own so that two
//! controllers in one process (tests) do not share counters.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::Error;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconciles: IntCounterVec,
    reconcile_duration: Histogram,
    reconcile_errors: IntCounterVec,
    leader: IntGauge,
    activations: IntCounterVec,
    /// Per-function autoscaler outputs and inputs (namespace, function).
    pub desired_replicas: IntGaugeVec,
    pub observed_concurrency: GaugeVec,
    pub observed_rps: GaugeVec,
    pub panic_mode: IntGaugeVec,
    /// Time one decision round over all functions took.
    pub decision_duration: Histogram,
    /// Polls of the metric source that missed some activator or query.
    pub source_errors: IntCounterVec,
    /// Scale writes by the autoscaler, by result.
    pub scale_writes: IntCounterVec,
    /// Each phase of each recorded cold start (namespace, function, phase).
    pub cold_start_phase: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let fl = &["namespace", "function"];
        let m = Self {
            reconciles: counters(
                r,
                "siesta_controller_reconcile_total",
                "Reconciles of Functions, by result (success or error).",
                &["result"],
            )?,
            reconcile_duration: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "siesta_controller_reconcile_duration_seconds",
                        "Time one reconcile of a Function took.",
                    )
                    .buckets(vec![
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0,
                    ]),
                )?,
            )?,
            reconcile_errors: counters(
                r,
                "siesta_controller_reconcile_errors_total",
                "Failed reconciles, by kind of error.",
                &["error"],
            )?,
            leader: registered(
                r,
                IntGauge::new(
                    "siesta_controller_leader",
                    "1 while this replica holds the leader Lease and reconciles, else 0.",
                )?,
            )?,
            activations: counters(
                r,
                "siesta_controller_activations_total",
                "Wake-up requests from activators, by result (woke, awake, not_found, invalid, conflict, not_ready, error).",
                &["result"],
            )?,
            desired_replicas: registered(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "siesta_controller_desired_replicas",
                        "Replicas the autoscaler last decided for the function.",
                    ),
                    fl,
                )?,
            )?,
            observed_concurrency: gauges(
                r,
                "siesta_controller_observed_concurrency",
                "Average in-flight requests over the stable window, summed over activators.",
                fl,
            )?,
            observed_rps: gauges(
                r,
                "siesta_controller_observed_rps",
                "Requests per second over the stable window, summed over activators.",
                fl,
            )?,
            panic_mode: registered(
                r,
                IntGaugeVec::new(
                    Opts::new(
                        "siesta_controller_panic_mode",
                        "1 while the function's autoscaler is in panic mode, else 0.",
                    ),
                    fl,
                )?,
            )?,
            decision_duration: registered(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "siesta_controller_autoscaler_decision_duration_seconds",
                        "Time one autoscaler decision round over all functions took (API writes excluded).",
                    )
                    .buckets(vec![
                        0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
                    ]),
                )?,
            )?,
            source_errors: counters(
                r,
                "siesta_controller_metrics_source_incomplete_total",
                "Polls of the autoscaler's metric source that missed an activator or a query, by source.",
                &["source"],
            )?,
            scale_writes: counters(
                r,
                "siesta_controller_autoscaler_scale_writes_total",
                "Replica changes the autoscaler wrote, by result (success or error).",
                &["result"],
            )?,
            cold_start_phase: registered(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "siesta_controller_cold_start_phase_seconds",
                        "Each phase of a wake from zero, as the activator reported it: scaleWrite, schedule, containerStart, ready, release, firstByte.",
                    )
                    .buckets(vec![
                        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                        60.0,
                    ]),
                    &["namespace", "function", "phase"],
                )?,
            )?,
            registry,
        };
        m.precreate_zero_series();
        Ok(m)
    }

    /// Pre-creates the series a dashboard expects to see at zero.
    fn precreate_zero_series(&self) {
        for source in ["scrape", "prometheus"] {
            self.source_errors.with_label_values(&[source]);
        }
        for result in ["success", "error"] {
            self.scale_writes.with_label_values(&[result]);
            self.reconciles.with_label_values(&[result]);
        }
        for result in [
            "woke",
            "awake",
            "not_found",
            "invalid",
            "conflict",
            "not_ready",
            "error",
        ] {
            self.activations.with_label_values(&[result]);
        }
    }

    pub fn reconciled(&self, took: Duration, error: Option<&Error>) {
        self.reconcile_duration.observe(took.as_secs_f64());
        match error {
            None => self.reconciles.with_label_values(&["success"]).inc(),
            Some(err) => {
                self.reconciles.with_label_values(&["error"]).inc();
                self.reconcile_errors
                    .with_label_values(&[err.metric_label()])
                    .inc();
            }
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.leader.set(i64::from(leader));
    }

    pub fn activation(&self, result: &str) {
        self.activations.with_label_values(&[result]).inc();
    }

    /// Drops a deleted function's autoscaler series.
    pub fn forget_function(&self, namespace: &str, function: &str) {
        let l = [namespace, function];
        let _ = self.desired_replicas.remove_label_values(&l);
        let _ = self.observed_concurrency.remove_label_values(&l);
        let _ = self.observed_rps.remove_label_values(&l);
        let _ = self.panic_mode.remove_label_values(&l);
        for phase in siesta_api::cold_start::Phase::ALL {
            let _ = self
                .cold_start_phase
                .remove_label_values(&[namespace, function, phase.name()]);
        }
    }

    /// The registry in the Prometheus text format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buf)?;
        String::from_utf8(buf).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// Registers `metric` and hands it back.
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A registered counter family.
fn counters(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

/// A registered gauge family.
fn gauges(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<GaugeVec, prometheus::Error> {
    registered(registry, GaugeVec::new(Opts::new(name, help), labels)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_its_unit_and_total_suffix() {
        let m = Metrics::new().unwrap();
        m.set_leader(true);
        m.reconciled(Duration::from_millis(3), None);
        m.activation("woke");
        let text = m.render().unwrap();
        assert!(text.contains("siesta_controller_reconcile_total{result=\"success\"} 1"));
        assert!(text.contains("siesta_controller_reconcile_total{result=\"error\"} 0"));
        assert!(text.contains("siesta_controller_reconcile_duration_seconds_bucket"));
        assert!(text.contains("siesta_controller_leader 1"));
        assert!(text.contains("siesta_controller_activations_total{result=\"woke\"} 1"));
        m.set_leader(false);
        assert!(m.render().unwrap().contains("siesta_controller_leader 0"));
    }

    #[test]
    fn errors_are_counted_by_kind() {
        let m = Metrics::new().unwrap();
        m.reconciled(
            Duration::from_millis(3),
            Some(&Error::MissingObjectKey("metadata.uid")),
        );
        let text = m.render().unwrap();
        assert!(
            text.contains(
                "siesta_controller_reconcile_errors_total{error=\"missing_object_key\"} 1"
            )
        );
        assert!(text.contains("siesta_controller_reconcile_total{result=\"error\"} 1"));
    }
}
