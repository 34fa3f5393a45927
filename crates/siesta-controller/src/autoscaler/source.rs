//! Where the autoscaler's numbers come from: the activators' own Prometheus
//! metrics, either scraped directly (`scrape`, the default: nothing else to
//! install) or asked of a Prometheus server that already scrapes them
//! (`prometheus`, for clusters that run one).
//!
//! Both give, per function and per poll, the request rate, the average
//! concurrency (from `siesta_activator_concurrency_seconds_total`, whose rate
//! is the exact average of in-flight requests), the requests counted, and
//! the in-flight and queued gauges, summed over all activators. A poll that
//! could not see every activator says so (`complete: false`): the decision
//! must then not read silence as idleness.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use siesta_api::names::FunctionKey;

/// Metric names published by the activator (DESIGN.md, "Metrics").
pub use siesta_api::names::metrics as names;

/// One function's traffic over one poll, summed over activators.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Reading {
    pub rps: f64,
    pub concurrency: f64,
    /// Requests counted during the poll interval.
    pub requests: f64,
    pub in_flight: f64,
    pub queued: f64,
}

/// The result of one poll of the source.
#[derive(Clone, Debug)]
pub struct Poll {
    pub at: Instant,
    /// The interval the readings cover.
    pub dt: Duration,
    /// Every activator was read (and the rates cover a whole interval); a
    /// function missing from `functions` then has no traffic at all.
    pub complete: bool,
    pub functions: HashMap<FunctionKey, Reading>,
}

/// The metric source, chosen by `--metrics-source`.
pub enum MetricSource {
    Scrape(Scraper),
    Prometheus(PromQuery),
}

impl MetricSource {
    /// How often the source is polled.
    pub fn interval(&self) -> Duration {
        match self {
            MetricSource::Scrape(s) => s.interval,
            MetricSource::Prometheus(p) => p.interval,
        }
    }

    pub async fn poll(&mut self) -> Poll {
        match self {
            MetricSource::Scrape(s) => s.poll().await,
            MetricSource::Prometheus(p) => p.poll().await,
        }
    }
}

fn http_client() -> HttpClient<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// GETs `url` and returns the body as text, within `timeout`.
async fn get_text(
    client: &HttpClient<HttpConnector, Empty<Bytes>>,
    url: &str,
    timeout: Duration,
) -> Result<String, String> {
    let uri: hyper::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a valid http URL: {e}"))?;
    let fetch = async {
        let response = client
            .get(uri)
            .await
            .map_err(|e| format!("GET {url} failed: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("reading the answer of GET {url} failed: {e}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if !status.is_success() {
            let head: String = text.chars().take(300).collect();
            return Err(format!("GET {url} answered {status}: {head}"));
        }
        Ok(text)
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| format!("GET {url} took longer than {timeout:?}"))?
}

// ------------------------------------------------------------------ scrape

/// One activator's numbers for one function, as published.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Counters {
    /// `siesta_activator_requests_total`, summed over codes.
    pub requests: f64,
    pub concurrency_seconds: f64,
    pub in_flight: f64,
    pub queued: f64,
}

/// Parses an activator's `/metrics` text into per-function counters.
pub fn parse_activator_metrics(text: &str) -> Result<HashMap<FunctionKey, Counters>, String> {
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines)
        .map_err(|e| format!("not the Prometheus text format: {e}"))?;
    let mut out: HashMap<FunctionKey, Counters> = HashMap::new();
    for sample in scrape.samples {
        let field: fn(&mut Counters) -> &mut f64 = match sample.metric.as_str() {
            names::REQUESTS => |c| &mut c.requests,
            names::CONCURRENCY_SECONDS => |c| &mut c.concurrency_seconds,
            names::IN_FLIGHT => |c| &mut c.in_flight,
            names::QUEUED => |c| &mut c.queued,
            _ => continue,
        };
        let value = match sample.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => continue,
        };
        let (Some(namespace), Some(name)) = (
            sample.labels.get("namespace"),
            sample.labels.get("function"),
        ) else {
            continue;
        };
        if namespace.is_empty() || name.is_empty() || !value.is_finite() {
            continue;
        }
        let key = FunctionKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        *field(out.entry(key).or_default()) += value;
    }
    Ok(out)
}

/// What is remembered of one function's counters on one activator.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SeriesState {
    requests: f64,
    /// The concurrency counter as published.
    raw: f64,
    /// The concurrency counter including the part the activator has not
    /// published yet (see [`advance`]); never decreases.
    estimate: f64,
    /// When `raw` was last seen to change.
    raw_changed_at: Instant,
}

/// Increase of one function's counters on one activator since the last scrape.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Delta {
    pub requests: f64,
    pub concurrency_seconds: f64,
}

/// Counter deltas for one function on one activator.
///
/// - First sight of the activator (`prev` is `None`, `known_activator`
///   false): a baseline, no delta: those counts happened at unknown times.
/// - A series new on a known activator: it started since the last scrape,
///   so its whole value is the delta.
/// - A counter that went down: the activator restarted (or forgot the
///   function); the new value is the delta, as Prometheus' `rate` reads it.
/// - The activator adds to the concurrency counter only when a request
///   arrives or leaves, so one long request leaves it flat. The estimate
///   adds `in_flight × time` since the counter last moved (capped by the
///   scrape interval), so that a steady long request counts as concurrency 1
///   now and not as a burst when it ends.
pub fn advance(
    prev: Option<&SeriesState>,
    known_activator: bool,
    now: Counters,
    at: Instant,
    dt: Duration,
) -> (Delta, SeriesState) {
    let fresh = |at| SeriesState {
        requests: now.requests,
        raw: now.concurrency_seconds,
        estimate: now.concurrency_seconds,
        raw_changed_at: at,
    };
    let Some(prev) = prev else {
        let delta = if known_activator {
            Delta {
                requests: now.requests,
                concurrency_seconds: now.concurrency_seconds,
            }
        } else {
            Delta::default()
        };
        return (delta, fresh(at));
    };
    if now.requests < prev.requests || now.concurrency_seconds < prev.raw {
        let delta = Delta {
            requests: now.requests,
            concurrency_seconds: now.concurrency_seconds,
        };
        return (delta, fresh(at));
    }
    let raw = now.concurrency_seconds;
    let raw_changed_at = if raw != prev.raw {
        at
    } else {
        prev.raw_changed_at
    };
    let g = now.in_flight.max(0.0);
    let unpublished = g * at.saturating_duration_since(raw_changed_at).as_secs_f64();
    let estimate = prev
        .estimate
        .max(raw)
        .max((prev.estimate + g * dt.as_secs_f64()).min(raw + unpublished));
    (
        Delta {
            requests: now.requests - prev.requests,
            concurrency_seconds: estimate - prev.estimate,
        },
        SeriesState {
            requests: now.requests,
            raw,
            estimate,
            raw_changed_at,
        },
    )
}

/// An activator to scrape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// Stable identity: the pod UID, or the URL for static targets.
    pub id: String,
    pub url: String,
}

/// Where the activators are.
pub enum Targets {
    /// `--activator-url`: fixed metrics URLs (tests, or activators outside the cluster).
    Static(Vec<String>),
    /// Activator pods found by a watch: ready, with a pod IP.
    Pods { store: Store<Pod>, port: u16 },
}

impl Targets {
    /// Watches pods matching `selector` in all namespaces (the chart grants
    /// the controller a cluster-wide pod watch). The returned task feeds the
    /// store; abort it to stop watching.
    pub fn watch(
        client: kube::Client,
        selector: &str,
        port: u16,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let (store, writer) = reflector::store();
        let api: Api<Pod> = Api::all(client);
        let stream = reflector::reflector(
            writer,
            watcher(api, watcher::Config::default().labels(selector)),
        )
        .backoff(siesta_api::watch_backoff::WatchBackoff::default())
        .touched_objects();
        let selector = selector.to_string();
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(event) = stream.next().await {
                if let Err(e) = event {
                    tracing::warn!(error = %e, %selector, "watching activator pods failed; retrying (check the controller may list and watch pods)");
                }
            }
        });
        (Targets::Pods { store, port }, task)
    }

    fn list(&self) -> Vec<Target> {
        match self {
            Targets::Static(urls) => urls
                .iter()
                .map(|u| Target {
                    id: u.clone(),
                    url: u.clone(),
                })
                .collect(),
            Targets::Pods { store, port } => store
                .state()
                .iter()
                .filter(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
                .filter_map(|p| {
                    let ip = p.status.as_ref()?.pod_ip.as_deref()?;
                    let host = if ip.contains(':') {
                        format!("[{ip}]")
                    } else {
                        ip.to_string()
                    };
                    Some(Target {
                        id: p.uid().unwrap_or_else(|| p.name_any()),
                        url: format!("http://{host}:{port}/metrics"),
                    })
                })
                .collect(),
        }
    }
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

struct ActivatorState {
    url: String,
    last_at: Instant,
    series: HashMap<FunctionKey, SeriesState>,
}

/// The `scrape` source.
pub struct Scraper {
    targets: Targets,
    interval: Duration,
    timeout: Duration,
    client: HttpClient<HttpConnector, Empty<Bytes>>,
    activators: HashMap<String, ActivatorState>,
    last_poll: Option<Instant>,
    /// The last complaint about having no activators, to say it once a minute.
    warned_empty: Option<Instant>,
}

impl Scraper {
    pub fn new(targets: Targets, interval: Duration) -> Self {
        Self {
            targets,
            interval,
            // A scrape slower than the interval would pile up.
            timeout: interval.mul_f64(0.8).max(Duration::from_millis(200)),
            client: http_client(),
            activators: HashMap::new(),
            last_poll: None,
            warned_empty: None,
        }
    }

    pub async fn poll(&mut self) -> Poll {
        let targets = self.targets.list();
        let started = Instant::now();
        let dt = self
            .last_poll
            .map_or(self.interval, |t| started.saturating_duration_since(t));
        let mut complete = self.last_poll.is_some();
        self.last_poll = Some(started);
        if targets.is_empty() {
            if self
                .warned_empty
                .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
            {
                self.warned_empty = Some(started);
                tracing::warn!(
                    "no ready activator to scrape; nothing is scaled down until one answers (check the activator pods and --activator-selector, or --activator-url)"
                );
            }
            return Poll {
                at: started,
                dt,
                complete: false,
                functions: HashMap::new(),
            };
        }
        let scrapes = futures::future::join_all(targets.iter().map(|t| {
            let client = &self.client;
            let timeout = self.timeout;
            async move {
                let text = get_text(client, &t.url, timeout).await;
                (t, Instant::now(), text)
            }
        }))
        .await;

        let mut functions: HashMap<FunctionKey, Reading> = HashMap::new();
        let live: HashSet<&str> = targets.iter().map(|t| t.id.as_str()).collect();
        self.activators.retain(|id, _| live.contains(id.as_str()));
        for (target, at, text) in scrapes {
            let parsed = text.and_then(|t| {
                parse_activator_metrics(&t).map_err(|e| format!("unreadable metrics: {e}"))
            });
            let counters = match parsed {
                Ok(c) => c,
                Err(e) => {
                    complete = false;
                    tracing::warn!(activator = %target.url, error = %e, "could not scrape an activator; scale-down waits until it answers or goes away");
                    continue;
                }
            };
            let known = self.activators.contains_key(&target.id);
            let state =
                self.activators
                    .entry(target.id.clone())
                    .or_insert_with(|| ActivatorState {
                        url: target.url.clone(),
                        last_at: at,
                        series: HashMap::new(),
                    });
            if state.url != target.url {
                // Same pod, new address: treat as a new activator.
                state.url = target.url.clone();
                state.series.clear();
            }
            let adt = at.saturating_duration_since(state.last_at);
            state.last_at = at;
            let secs = adt.as_secs_f64();
            let mut next = HashMap::with_capacity(counters.len());
            for (key, now) in counters {
                let (delta, series) = advance(state.series.get(&key), known, now, at, adt);
                next.insert(key.clone(), series);
                let r = functions.entry(key).or_default();
                if secs > 0.0 {
                    r.rps += delta.requests / secs;
                    r.concurrency += delta.concurrency_seconds / secs;
                }
                r.requests += delta.requests;
                r.in_flight += now.in_flight;
                r.queued += now.queued;
            }
            state.series = next;
        }
        Poll {
            at: started,
            dt,
            complete,
            functions,
        }
    }
}

// -------------------------------------------------------------- prometheus

/// One query's values per function, or why it failed.
type QueryResult = Result<HashMap<FunctionKey, f64>, String>;

/// Puts one query's value into a reading.
type Setter = fn(&mut Reading, f64);

/// The `prometheus` source: PromQL instant queries.
pub struct PromQuery {
    base: String,
    /// The range of `rate()`; at least twice Prometheus' scrape interval.
    window: Duration,
    timeout: Duration,
    interval: Duration,
    client: HttpClient<HttpConnector, Empty<Bytes>>,
}

impl PromQuery {
    pub fn new(base: &str, window: Duration, timeout: Duration, interval: Duration) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            window,
            timeout,
            interval,
            client: http_client(),
        }
    }

    /// The four queries: rate of requests, rate of the concurrency integral
    /// (average concurrency), and the two gauges, per function.
    pub fn queries(&self) -> [String; 4] {
        let w = format!("{}s", self.window.as_secs().max(1));
        [
            format!(
                "sum by (namespace, function) (rate({}[{w}]))",
                names::REQUESTS
            ),
            format!(
                "sum by (namespace, function) (rate({}[{w}]))",
                names::CONCURRENCY_SECONDS
            ),
            format!("sum by (namespace, function) ({})", names::IN_FLIGHT),
            format!("sum by (namespace, function) ({})", names::QUEUED),
        ]
    }

    /// Runs one instant query; returns the value per function.
    pub async fn query(&self, promql: &str) -> QueryResult {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.base,
            percent_encode(promql)
        );
        let text = get_text(&self.client, &url, self.timeout)
            .await
            .map_err(|e| format!("{e} (check --prometheus-url and that Prometheus is up)"))?;
        parse_vector(&text).map_err(|e| format!("query {promql:?} to {}: {e}", self.base))
    }

    pub async fn poll(&mut self) -> Poll {
        let started = Instant::now();
        let [rps_q, conc_q, fl_q, q_q] = self.queries();
        let (rps, conc, fl, queued) = tokio::join!(
            self.query(&rps_q),
            self.query(&conc_q),
            self.query(&fl_q),
            self.query(&q_q)
        );
        let mut functions: HashMap<FunctionKey, Reading> = HashMap::new();
        let mut complete = true;
        let results: [(QueryResult, Setter); 4] = [
            (rps, |r, v| r.rps = v),
            (conc, |r, v| r.concurrency = v),
            (fl, |r, v| r.in_flight = v),
            (queued, |r, v| r.queued = v),
        ];
        for (result, set) in results {
            match result {
                Ok(values) => {
                    for (key, v) in values {
                        set(functions.entry(key).or_default(), v);
                    }
                }
                Err(e) => {
                    complete = false;
                    tracing::warn!(error = %e, "a Prometheus query failed; scale-down waits until it answers");
                }
            }
        }
        let dt = self.interval;
        for r in functions.values_mut() {
            r.requests = r.rps * dt.as_secs_f64();
        }
        Poll {
            at: started,
            dt,
            complete,
            functions,
        }
    }
}

/// Parses a Prometheus `/api/v1/query` answer of result type vector.
pub fn parse_vector(text: &str) -> Result<HashMap<FunctionKey, f64>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the answer is not JSON: {e}"))?;
    if v.get("status").and_then(|s| s.as_str()) != Some("success") {
        return Err(format!(
            "Prometheus said {}: {}",
            v.get("errorType")
                .and_then(|s| s.as_str())
                .unwrap_or("error"),
            v.get("error")
                .and_then(|s| s.as_str())
                .unwrap_or("no message")
        ));
    }
    let data = v.get("data").ok_or("the answer has no data")?;
    if data.get("resultType").and_then(|s| s.as_str()) != Some("vector") {
        return Err("the answer is not an instant vector".into());
    }
    let mut out = HashMap::new();
    for item in data
        .get("result")
        .and_then(|r| r.as_array())
        .ok_or("the answer has no result list")?
    {
        let metric = item.get("metric");
        let label = |name: &str| metric.and_then(|m| m.get(name)).and_then(|s| s.as_str());
        let (Some(namespace), Some(name)) = (label("namespace"), label("function")) else {
            continue;
        };
        let Some(value) = item
            .get("value")
            .and_then(|v| v.get(1))
            .and_then(|s| s.as_str())
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|v| v.is_finite())
        else {
            continue;
        };
        out.insert(
            FunctionKey {
                namespace: namespace.to_string(),
                name: name.to_string(),
            },
            value,
        );
    }
    Ok(out)
}

/// Percent-encodes a query parameter value (RFC 3986 unreserved kept).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP siesta_activator_requests_total Requests.
# TYPE siesta_activator_requests_total counter
siesta_activator_requests_total{code="200",function="hello",namespace="demo"} 40
siesta_activator_requests_total{code="503",function="hello",namespace="demo"} 2
siesta_activator_requests_total{code="200",function="other",namespace="demo"} 7
# HELP siesta_activator_concurrency_seconds_total Integral.
# TYPE siesta_activator_concurrency_seconds_total counter
siesta_activator_concurrency_seconds_total{function="hello",namespace="demo"} 12.5
# HELP siesta_activator_in_flight_requests In flight.
# TYPE siesta_activator_in_flight_requests gauge
siesta_activator_in_flight_requests{function="hello",namespace="demo"} 3
# HELP siesta_activator_queued_requests Queued.
# TYPE siesta_activator_queued_requests gauge
siesta_activator_queued_requests{function="hello",namespace="demo"} 1
# HELP siesta_activator_rejected_requests_total Rejected.
# TYPE siesta_activator_rejected_requests_total counter
siesta_activator_rejected_requests_total{function="",namespace="",reason="unknown_function"} 9
# HELP siesta_activator_request_duration_seconds Duration.
# TYPE siesta_activator_request_duration_seconds histogram
siesta_activator_request_duration_seconds_bucket{function="hello",namespace="demo",le="0.1"} 3
siesta_activator_request_duration_seconds_sum{function="hello",namespace="demo"} 1.5
siesta_activator_request_duration_seconds_count{function="hello",namespace="demo"} 42
"#;

    fn key(name: &str) -> FunctionKey {
        FunctionKey {
            namespace: "demo".into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_text_format_gives_per_function_counters_summed_over_codes() {
        let m = parse_activator_metrics(TEXT).unwrap();
        assert_eq!(
            m[&key("hello")],
            Counters {
                requests: 42.0,
                concurrency_seconds: 12.5,
                in_flight: 3.0,
                queued: 1.0
            }
        );
        assert_eq!(m[&key("other")].requests, 7.0);
        assert_eq!(m.len(), 2, "series without a function label are skipped");
    }

    #[test]
    fn the_real_activator_encoding_parses() {
        let metrics = siesta_activator::metrics::Metrics::new().unwrap();
        let fm = metrics.function(&siesta_activator::route::FunctionKey::new("demo", "hello"));
        fm.request(200);
        fm.request(200);
        fm.request(404);
        fm.concurrency_seconds.inc_by(2.5);
        fm.in_flight.set(4);
        fm.queued.set(2);
        let text = String::from_utf8(metrics.encode()).unwrap();
        let m = parse_activator_metrics(&text).unwrap();
        assert_eq!(
            m[&key("hello")],
            Counters {
                requests: 3.0,
                concurrency_seconds: 2.5,
                in_flight: 4.0,
                queued: 2.0
            }
        );
    }

    fn c(requests: f64, conc: f64, in_flight: f64) -> Counters {
        Counters {
            requests,
            concurrency_seconds: conc,
            in_flight,
            queued: 0.0,
        }
    }

    #[test]
    fn deltas_are_counter_increases_and_a_new_activator_is_a_baseline() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let (d, st) = advance(None, false, c(100.0, 50.0, 0.0), t0, s);
        assert_eq!(d, Delta::default(), "first sight: no delta");
        let (d, st) = advance(Some(&st), true, c(110.0, 55.0, 0.0), t0 + s, s);
        assert_eq!(
            d,
            Delta {
                requests: 10.0,
                concurrency_seconds: 5.0
            }
        );
        // A series that appears on a known activator counts in full.
        let (d, _) = advance(None, true, c(3.0, 1.5, 0.0), t0 + s, s);
        assert_eq!(d.requests, 3.0);
        // A reset (restart): the new value is the increase.
        let (d, st) = advance(Some(&st), true, c(4.0, 2.0, 0.0), t0 + 2 * s, s);
        assert_eq!(
            d,
            Delta {
                requests: 4.0,
                concurrency_seconds: 2.0
            }
        );
        let (d, _) = advance(Some(&st), true, c(6.0, 3.0, 0.0), t0 + 3 * s, s);
        assert_eq!(d.requests, 2.0);
    }

    #[test]
    fn a_long_request_counts_as_concurrency_while_it_runs_and_not_twice_when_it_ends() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let (_, mut st) = advance(None, false, c(0.0, 0.0, 0.0), t0, s);
        // One request in flight for 10 s: the counter stays at 0 meanwhile.
        let mut total = 0.0;
        for i in 1..=10 {
            let (d, next) = advance(Some(&st), true, c(0.0, 0.0, 1.0), t0 + s * i, s);
            assert!(
                (d.concurrency_seconds - 1.0).abs() < 1e-9,
                "second {i}: {d:?}"
            );
            total += d.concurrency_seconds;
            st = next;
        }
        // It ends: the activator publishes the whole 10.2 s at once.
        let (d, _) = advance(Some(&st), true, c(1.0, 10.2, 0.0), t0 + s * 11, s);
        total += d.concurrency_seconds;
        assert!((d.concurrency_seconds - 0.2).abs() < 1e-9, "{d:?}");
        assert!((total - 10.2).abs() < 1e-9);
        assert_eq!(d.requests, 1.0);
    }

    #[test]
    fn prometheus_vectors_parse_and_errors_say_why() {
        let ok = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"namespace":"demo","function":"hello"},"value":[1700000000.1,"2.5"]},
            {"metric":{"namespace":"demo"},"value":[1700000000.1,"9"]}]}}"#;
        let v = parse_vector(ok).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[&key("hello")], 2.5);
        let bad = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let e = parse_vector(bad).unwrap_err();
        assert!(e.contains("bad_data") && e.contains("parse error"), "{e}");
        assert!(parse_vector("<html>").is_err());
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            percent_encode("sum by (a) (x[5s])"),
            "sum%20by%20%28a%29%20%28x%5B5s%5D%29"
        );
    }
}
