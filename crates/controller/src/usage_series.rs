//! The six per-Function usage series (the seconds a Function's pods ran,
//! the requested resources times those seconds, and the baselines'
//! inputs), held as one compact row per Function and made into Prometheus
//! families only when `/metrics` is read.
//!
//! As prometheus' labelled vectors, each series took about 520 bytes (a
//! descriptor of its own, its label pairs, boxes): 3.1 KiB per Function, the
//! controller's largest cost per Function after the watch stores (heaptrack
//! at 1,000 Functions, `SCALE_HEAPTRACK` in hack/bench/scale.sh). A row is
//! the Function's key and six numbers. The text a scrape gets is the same.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType};
use siesta_api::names::FunctionKey;

/// One Function's values.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Row {
    pub pod_seconds: f64,
    pub cpu_core_seconds: f64,
    pub memory_byte_seconds: f64,
    pub max_replicas: f64,
    pub pod_cpu_request: f64,
    pub pod_memory_request: f64,
}

/// A family: name, help, counter or gauge, and its value in a row.
struct Family {
    name: &'static str,
    help: &'static str,
    counter: bool,
    value: fn(&Row) -> f64,
}

const FAMILIES: [Family; 6] = [
    Family::counter(
        "siesta_controller_function_pod_seconds_total",
        "Seconds the function's pods ran, from each pod's startTime to its containers' last finishedAt, summed over pods.",
        |r| r.pod_seconds,
    ),
    Family::counter(
        "siesta_controller_function_cpu_core_seconds_total",
        "Requested CPU cores times the seconds each pod ran (a pod without a CPU request adds 0).",
        |r| r.cpu_core_seconds,
    ),
    Family::counter(
        "siesta_controller_function_memory_byte_seconds_total",
        "Requested memory bytes times the seconds each pod ran (a pod without a memory request adds 0).",
        |r| r.memory_byte_seconds,
    ),
    Family::gauge(
        "siesta_controller_function_max_replicas",
        "The function's scale.maxReplicas now: the pods a fixed-size deployment would run.",
        |r| r.max_replicas,
    ),
    Family::gauge(
        "siesta_controller_function_pod_cpu_request_cores",
        "CPU cores one of the function's pods requests by its spec (0 when none).",
        |r| r.pod_cpu_request,
    ),
    Family::gauge(
        "siesta_controller_function_pod_memory_request_bytes",
        "Memory bytes one of the function's pods requests by its spec (0 when none).",
        |r| r.pod_memory_request,
    ),
];

impl Family {
    const fn counter(name: &'static str, help: &'static str, value: fn(&Row) -> f64) -> Self {
        Self {
            name,
            help,
            counter: true,
            value,
        }
    }
    const fn gauge(name: &'static str, help: &'static str, value: fn(&Row) -> f64) -> Self {
        Self {
            name,
            help,
            counter: false,
            value,
        }
    }
}

/// The rows, shared by the usage record (which writes them) and the
/// registry (which reads them at a scrape).
#[derive(Clone)]
pub struct UsageSeries {
    rows: Arc<Mutex<HashMap<FunctionKey, Row>>>,
    descs: Arc<Vec<Desc>>,
}

impl UsageSeries {
    pub fn new() -> Result<Self, prometheus::Error> {
        let descs = FAMILIES
            .iter()
            .map(|f| {
                Desc::new(
                    f.name.to_string(),
                    f.help.to_string(),
                    vec!["namespace".into(), "function".into()],
                    HashMap::new(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            rows: Arc::default(),
            descs: Arc::new(descs),
        })
    }

    fn rows(&self) -> MutexGuard<'_, HashMap<FunctionKey, Row>> {
        self.rows.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Changes one Function's row, making it (all zero) if it has none.
    pub fn update(&self, namespace: &str, function: &str, change: impl FnOnce(&mut Row)) {
        let mut rows = self.rows();
        let key = FunctionKey::new(namespace, function);
        change(rows.entry(key).or_default());
    }

    /// Drops a deleted Function's row (and so its six series).
    pub fn remove(&self, namespace: &str, function: &str) {
        self.rows().remove(&FunctionKey::new(namespace, function));
    }

    /// One Function's row, if it has one.
    pub fn row(&self, namespace: &str, function: &str) -> Option<Row> {
        self.rows()
            .get(&FunctionKey::new(namespace, function))
            .copied()
    }
}

impl Collector for UsageSeries {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        // Copied out, so the lock is not held while the families are made
        // (the registry sorts each family's series).
        let rows: Vec<(FunctionKey, Row)> =
            self.rows().iter().map(|(k, r)| (k.clone(), *r)).collect();
        if rows.is_empty() {
            return Vec::new();
        }
        FAMILIES
            .iter()
            .map(|f| {
                let mut family = MetricFamily::default();
                family.set_name(f.name.to_string());
                family.set_help(f.help.to_string());
                family.set_field_type(if f.counter {
                    MetricType::COUNTER
                } else {
                    MetricType::GAUGE
                });
                let metrics = rows
                    .iter()
                    .map(|(key, row)| {
                        let mut m = Metric::default();
                        m.set_label(vec![
                            label("function", &key.name),
                            label("namespace", &key.namespace),
                        ]);
                        let v = (f.value)(row);
                        if f.counter {
                            let mut c = Counter::default();
                            c.set_value(v);
                            m.set_counter(c);
                        } else {
                            let mut g = Gauge::default();
                            g.set_value(v);
                            m.set_gauge(g);
                        }
                        m
                    })
                    .collect();
                family.set_metric(metrics);
                family
            })
            .collect()
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus::{Encoder, Registry, TextEncoder};

    fn render(r: &Registry) -> String {
        let mut buf = Vec::new();
        TextEncoder::new().encode(&r.gather(), &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn rows_render_as_six_labelled_families_and_leave_when_removed() {
        let registry = Registry::new();
        let s = UsageSeries::new().unwrap();
        registry.register(Box::new(s.clone())).unwrap();
        assert!(
            !render(&registry).contains("siesta_controller_function_"),
            "no Function, no series"
        );
        s.update("demo", "hello", |r| {
            r.max_replicas = 3.0;
            r.pod_cpu_request = 0.25;
        });
        s.update("demo", "hello", |r| {
            r.pod_seconds += 2.5;
            r.cpu_core_seconds += 2.5 * 0.25;
        });
        s.update("a", "z", |_| {});
        let text = render(&registry);
        for line in [
            "# TYPE siesta_controller_function_pod_seconds_total counter",
            "siesta_controller_function_pod_seconds_total{function=\"hello\",namespace=\"demo\"} 2.5",
            "siesta_controller_function_cpu_core_seconds_total{function=\"hello\",namespace=\"demo\"} 0.625",
            "siesta_controller_function_memory_byte_seconds_total{function=\"hello\",namespace=\"demo\"} 0",
            "# TYPE siesta_controller_function_max_replicas gauge",
            "siesta_controller_function_max_replicas{function=\"hello\",namespace=\"demo\"} 3",
            "siesta_controller_function_pod_cpu_request_cores{function=\"hello\",namespace=\"demo\"} 0.25",
            "siesta_controller_function_pod_memory_request_bytes{function=\"z\",namespace=\"a\"} 0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        s.remove("demo", "hello");
        assert!(!render(&registry).contains("\"hello\""));
        assert_eq!(s.row("a", "z"), Some(Row::default()));
    }
}
