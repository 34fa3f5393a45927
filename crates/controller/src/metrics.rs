//! The controller's Prometheus metrics, in a registry of its own so that two
//! controllers in one process (tests) do not share counters.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::Error;
use crate::usage_series::UsageSeries;

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    reconcile: ReconcileMetrics,
    /// Wake-ups asked by activators and the cold starts they report.
    pub wakes: WakeMetrics,
    /// Per-function autoscaler outputs and inputs, and its rounds.
    pub autoscaler: AutoscalerMetrics,
    usage: UsageMetrics,
}

/// Reconciles and leadership.
#[derive(Clone)]
struct ReconcileMetrics {
    reconciles: IntCounterVec,
    reconcile_duration: Histogram,
    reconcile_errors: IntCounterVec,
    leader: IntGauge,
}

/// Wake-up requests from activators, and what each cold start took.
#[derive(Clone)]
pub struct WakeMetrics {
    activations: IntCounterVec,
    /// Each phase of each recorded cold start (namespace, function, phase).
    pub cold_start_phase: HistogramVec,
}

/// The autoscaler's outputs and inputs (namespace, function) and its rounds.
#[derive(Clone)]
pub struct AutoscalerMetrics {
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
}

/// What the function's pods ran and the baselines' inputs (namespace,
/// function: [`UsageSeries`]), and the writes of `status.usage`.
#[derive(Clone)]
struct UsageMetrics {
    series: UsageSeries,
    /// Writes of `status.usage`, by result.
    usage_writes: IntCounterVec,
}

/// The labels of every per-function series.
const FUNCTION_LABELS: &[&str] = &["namespace", "function"];

impl ReconcileMetrics {
    fn new(r: &Registry) -> Result<Self, prometheus::Error> {
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
        };
        // The series a dashboard expects to see at zero.
        for result in ["success", "error"] {
            m.reconciles.with_label_values(&[result]);
        }
        Ok(m)
    }
}

impl WakeMetrics {
    fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            activations: counters(
                r,
                "siesta_controller_activations_total",
                "Wake-up requests from activators, by result (woke, awake, not_found, invalid, conflict, not_ready, error).",
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
        };
        for result in [
            "woke",
            "awake",
            "not_found",
            "invalid",
            "conflict",
            "not_ready",
            "error",
        ] {
            m.activations.with_label_values(&[result]);
        }
        Ok(m)
    }
}

impl AutoscalerMetrics {
    fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let fl = FUNCTION_LABELS;
        let m = Self {
            desired_replicas: int_gauges(
                r,
                "siesta_controller_desired_replicas",
                "Replicas the autoscaler last decided for the function.",
                fl,
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
            panic_mode: int_gauges(
                r,
                "siesta_controller_panic_mode",
                "1 while the function's autoscaler is in panic mode, else 0.",
                fl,
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
        };
        for source in ["scrape", "prometheus"] {
            m.source_errors.with_label_values(&[source]);
        }
        for result in ["success", "error"] {
            m.scale_writes.with_label_values(&[result]);
        }
        Ok(m)
    }
}

impl UsageMetrics {
    fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self {
            series: registered(r, UsageSeries::new()?)?,
            usage_writes: counters(
                r,
                "siesta_controller_usage_writes_total",
                "Writes of status.usage (the record of the pods a function ran), by result (success or error).",
                &["result"],
            )?,
        };
        for result in ["success", "error"] {
            m.usage_writes.with_label_values(&[result]);
        }
        Ok(m)
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        Ok(Self {
            reconcile: ReconcileMetrics::new(&registry)?,
            wakes: WakeMetrics::new(&registry)?,
            autoscaler: AutoscalerMetrics::new(&registry)?,
            usage: UsageMetrics::new(&registry)?,
            registry,
        })
    }

    pub fn reconciled(&self, took: Duration, error: Option<&Error>) {
        self.reconcile
            .reconcile_duration
            .observe(took.as_secs_f64());
        match error {
            None => self
                .reconcile
                .reconciles
                .with_label_values(&["success"])
                .inc(),
            Some(err) => {
                self.reconcile
                    .reconciles
                    .with_label_values(&["error"])
                    .inc();
                self.reconcile
                    .reconcile_errors
                    .with_label_values(&[err.metric_label()])
                    .inc();
            }
        }
    }

    pub fn set_leader(&self, leader: bool) {
        self.reconcile.leader.set(i64::from(leader));
    }

    pub fn activation(&self, result: &str) {
        self.wakes.activations.with_label_values(&[result]).inc();
    }

    /// Adds `seconds` of one pod that requests `cpu` cores and `memory` bytes.
    pub fn add_usage(&self, namespace: &str, function: &str, seconds: f64, cpu: f64, memory: f64) {
        self.usage.series.update(namespace, function, |r| {
            r.pod_seconds += seconds;
            r.cpu_core_seconds += seconds * cpu;
            r.memory_byte_seconds += seconds * memory;
        });
    }

    /// The baselines' inputs for one function. Its counters exist from
    /// then on, at 0: `increase()` then sees the first pod's seconds instead
    /// of a series appearing mid-window.
    pub fn set_function_baseline(
        &self,
        namespace: &str,
        function: &str,
        max_replicas: i32,
        per_pod: siesta_api::usage::Requests,
    ) {
        self.usage.series.update(namespace, function, |r| {
            r.max_replicas = f64::from(max_replicas);
            r.pod_cpu_request = per_pod.cpu_cores.unwrap_or(0.0);
            r.pod_memory_request = per_pod.memory_bytes.unwrap_or(0.0);
        });
    }

    pub fn usage_write(&self, result: &str) {
        self.usage.usage_writes.with_label_values(&[result]).inc();
    }

    /// Drops a deleted function's usage series.
    pub fn forget_usage(&self, namespace: &str, function: &str) {
        self.usage.series.remove(namespace, function);
    }

    /// Drops a deleted function's autoscaler series.
    pub fn forget_function(&self, namespace: &str, function: &str) {
        let l = [namespace, function];
        let _ = self.autoscaler.desired_replicas.remove_label_values(&l);
        let _ = self.autoscaler.observed_concurrency.remove_label_values(&l);
        let _ = self.autoscaler.observed_rps.remove_label_values(&l);
        let _ = self.autoscaler.panic_mode.remove_label_values(&l);
        for phase in siesta_api::cold_start::Phase::ALL {
            let _ = self.wakes.cold_start_phase.remove_label_values(&[
                namespace,
                function,
                phase.name(),
            ]);
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

/// A registered family of integer gauges.
fn int_gauges(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
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
    fn usage_counters_add_resource_seconds_and_go_with_the_function() {
        let m = Metrics::new().unwrap();
        m.set_function_baseline("ns", "f", 4, siesta_api::usage::Requests::default());
        assert!(m.render().unwrap().contains(
            "siesta_controller_function_pod_seconds_total{function=\"f\",namespace=\"ns\"} 0"
        ));
        m.add_usage("ns", "f", 10.0, 0.5, 1024.0);
        m.add_usage("ns", "f", 2.5, 0.5, 1024.0);
        m.set_function_baseline(
            "ns",
            "f",
            4,
            siesta_api::usage::Requests {
                cpu_cores: Some(0.5),
                memory_bytes: None,
            },
        );
        let text = m.render().unwrap();
        let l = "{function=\"f\",namespace=\"ns\"}";
        assert!(
            text.contains(&format!(
                "siesta_controller_function_pod_seconds_total{l} 12.5"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "siesta_controller_function_cpu_core_seconds_total{l} 6.25"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "siesta_controller_function_memory_byte_seconds_total{l} 12800"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!("siesta_controller_function_max_replicas{l} 4")),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "siesta_controller_function_pod_memory_request_bytes{l} 0"
            )),
            "{text}"
        );
        m.forget_usage("ns", "f");
        assert!(!m.render().unwrap().contains("namespace=\"ns\""));
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
