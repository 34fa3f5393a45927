//! The `scrape` source: each activator's `/metrics`, read directly. The
//! counters become per-poll deltas per activator (a new or restarted
//! activator is a baseline, not a burst), summed over activators.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use siesta_api::names::FunctionKey;

use super::targets::{Target, Targets};
use super::{Poll, Reading, get_text, http_client, names, text_format};

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
    const WANTED: &[&str] = &[
        names::REQUESTS,
        names::CONCURRENCY_SECONDS,
        names::IN_FLIGHT,
        names::QUEUED,
    ];
    let mut out: HashMap<FunctionKey, Counters> = HashMap::new();
    for sample in text_format::samples(text, WANTED) {
        let field: fn(&mut Counters) -> &mut f64 = match sample.name {
            names::REQUESTS => |c| &mut c.requests,
            names::CONCURRENCY_SECONDS => |c| &mut c.concurrency_seconds,
            names::IN_FLIGHT => |c| &mut c.in_flight,
            names::QUEUED => |c| &mut c.queued,
            _ => continue,
        };
        let (Some(namespace), Some(name)) = (sample.label("namespace"), sample.label("function"))
        else {
            continue;
        };
        if namespace.is_empty() || name.is_empty() || !sample.value.is_finite() {
            continue;
        }
        let key = FunctionKey {
            namespace: namespace.into_owned(),
            name: name.into_owned(),
        };
        *field(out.entry(key).or_default()) += sample.value;
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

struct ActivatorState {
    url: String,
    last_at: Instant,
    series: HashMap<FunctionKey, SeriesState>,
}

/// The `scrape` source.
pub struct Scraper {
    targets: Targets,
    pub(super) interval: Duration,
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

    /// No activator to scrape: an incomplete poll (silence is not idleness),
    /// and a warning at most once a minute.
    fn no_activators(&mut self, started: Instant, dt: Duration) -> Poll {
        if self
            .warned_empty
            .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
        {
            self.warned_empty = Some(started);
            tracing::warn!(
                "no ready activator to scrape; nothing is scaled down until one answers (check the activator pods and --activator-selector, or --activator-url)"
            );
        }
        Poll {
            at: started,
            dt,
            complete: false,
            functions: HashMap::new(),
        }
    }

    /// Adds one activator's scrape to `functions`: its counters' increases
    /// since its previous scrape (a new activator is a baseline), as rates,
    /// and its gauges.
    fn add(
        &mut self,
        target: &Target,
        at: Instant,
        counters: HashMap<FunctionKey, Counters>,
        functions: &mut HashMap<FunctionKey, Reading>,
    ) {
        let known = self.activators.contains_key(&target.id);
        let state = self
            .activators
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

    pub async fn poll(&mut self) -> Poll {
        let targets = self.targets.list();
        let started = Instant::now();
        let dt = self
            .last_poll
            .map_or(self.interval, |t| started.saturating_duration_since(t));
        let mut complete = self.last_poll.is_some();
        self.last_poll = Some(started);
        if targets.is_empty() {
            return self.no_activators(started, dt);
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
            self.add(target, at, counters, &mut functions);
        }
        Poll {
            at: started,
            dt,
            complete,
            functions,
        }
    }
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
        fm.set_in_flight(4);
        fm.add_concurrency_seconds(2.5);
        fm.set_queued(2);
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
}
