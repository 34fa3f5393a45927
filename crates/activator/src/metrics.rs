//! The activator's Prometheus metrics, with exactly the names of DESIGN.md.
//!
//! Label lookups are costly (a hash and a lock inside `prometheus`), so each
//! function caches its label handles once ([`FunctionMetrics`]) and the request
//! path only touches atomics.

use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::{
    Counter, CounterVec, Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use siesta_api::names::metrics as names;

use crate::route::FunctionKey;
use crate::upstream::Failure;

/// Why the activator answered a request itself instead of a pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// No Function with that name: 404.
    UnknownFunction,
    /// `queue.maxRequests` requests already parked: 503.
    QueueFull,
    /// The activator-wide budget of parked requests (or the function's fair
    /// share of it) is used up: 503.
    ParkBudget,
    /// No pod became ready within `queue.timeoutSeconds`: 504.
    QueueTimeout,
    /// The whole request took longer than `timeoutSeconds`: 504.
    RequestTimeout,
    /// No pod could be reached (connect failed on every try): 502.
    UpstreamUnavailable,
    /// The activator is shutting down and the function is gone: 503.
    FunctionDeleted,
    /// The controller refused to wake the function (409: its Deployment or
    /// Service is not Siesta's, or its spec is invalid): 503 at once.
    ActivationRefused,
    /// The pod closed the connection before answering and the request could
    /// not be sent again (not idempotent, or its body already streamed): 502.
    UpstreamClosed,
    /// The pod's response was not valid HTTP, or its head too large: 502.
    UpstreamBadResponse,
    /// The client's request body was malformed (bad chunked encoding): 400.
    BadRequestBody,
    /// The request body is longer than `maxRequestBodyBytes`: 413.
    BodyTooLarge,
    /// The client went away before sending its whole body: 499.
    ClientClosed,
    /// The request target or Host broke a rule of `target`: 400, before
    /// any routing.
    BadRequest,
}

impl Reject {
    pub const ALL: [Reject; 14] = [
        Reject::UnknownFunction,
        Reject::QueueFull,
        Reject::ParkBudget,
        Reject::QueueTimeout,
        Reject::RequestTimeout,
        Reject::UpstreamUnavailable,
        Reject::FunctionDeleted,
        Reject::ActivationRefused,
        Reject::UpstreamClosed,
        Reject::UpstreamBadResponse,
        Reject::BadRequestBody,
        Reject::BodyTooLarge,
        Reject::ClientClosed,
        Reject::BadRequest,
    ];

    /// The bounded `reason` label value.
    pub fn label(self) -> &'static str {
        match self {
            Reject::UnknownFunction => "unknown_function",
            Reject::QueueFull => "queue_full",
            Reject::ParkBudget => "park_budget",
            Reject::QueueTimeout => "queue_timeout",
            Reject::RequestTimeout => "request_timeout",
            Reject::UpstreamUnavailable => "upstream_unavailable",
            Reject::FunctionDeleted => "function_deleted",
            Reject::ActivationRefused => "activation_refused",
            Reject::UpstreamClosed => "upstream_closed",
            Reject::UpstreamBadResponse => "upstream_bad_response",
            Reject::BadRequestBody => "bad_request_body",
            Reject::BodyTooLarge => "body_too_large",
            Reject::ClientClosed => "client_closed",
            Reject::BadRequest => "bad_request",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The metric families, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    in_flight: IntGaugeVec,
    concurrency_seconds: CounterVec,
    queued: IntGaugeVec,
    cold_start: HistogramVec,
    rejected: IntCounterVec,
    replays: IntCounterVec,
    /// `rejected` for requests naming no known function, looked up once.
    unknown_function: IntCounter,
    /// `rejected` for requests refused before routing (400).
    bad_request: IntCounter,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let r = &registry;
        let rejected = rejected(r)?;
        Ok(Self {
            requests: requests(r)?,
            duration: request_duration(r)?,
            in_flight: in_flight(r)?,
            concurrency_seconds: concurrency_seconds(r)?,
            queued: queued(r)?,
            cold_start: cold_start(r)?,
            // The two series of requests that name no function exist from
            // the start, at 0.
            unknown_function: rejected.with_label_values(&[
                "",
                "",
                Reject::UnknownFunction.label(),
            ]),
            bad_request: rejected.with_label_values(&["", "", Reject::BadRequest.label()]),
            rejected,
            replays: replays(r)?,
            registry,
        })
    }

    /// Label handles for one function, looked up once.
    pub fn function(&self, key: &FunctionKey) -> FunctionMetrics {
        FunctionMetrics {
            namespace: key.namespace.clone(),
            name: key.name.clone(),
            requests: self.requests.clone(),
            codes: Default::default(),
            rejected: Default::default(),
            rejected_vec: self.rejected.clone(),
            replays: self.replays.clone(),
            duration_vec: self.duration.clone(),
            duration: OnceLock::new(),
            in_flight_vec: self.in_flight.clone(),
            concurrency_seconds_vec: self.concurrency_seconds.clone(),
            queued_vec: self.queued.clone(),
            live: OnceLock::new(),
            cold_start_vec: self.cold_start.clone(),
            cold_start: OnceLock::new(),
        }
    }

    /// Drops a deleted function's series so they do not linger forever.
    pub fn forget(&self, key: &FunctionKey) {
        let l = [key.namespace.as_str(), key.name.as_str()];
        let _ = self.duration.remove_label_values(&l);
        let _ = self.in_flight.remove_label_values(&l);
        let _ = self.concurrency_seconds.remove_label_values(&l);
        let _ = self.queued.remove_label_values(&l);
        let _ = self.cold_start.remove_label_values(&l);
        for code in CACHED_CODES {
            let _ = self
                .requests
                .remove_label_values(&[l[0], l[1], code_str(code)]);
        }
        for r in Reject::ALL {
            let _ = self.rejected.remove_label_values(&[l[0], l[1], r.label()]);
        }
        for f in REPLAY_REASONS {
            let _ = self.replays.remove_label_values(&[l[0], l[1], f.label()]);
        }
    }

    /// A rejection for a request that names no known function. The labels are
    /// left empty on purpose: names from arbitrary Host headers would make the
    /// series count unbounded.
    pub fn unknown_function(&self) {
        self.unknown_function.inc();
    }

    /// A request refused before routing: with empty labels, as for
    /// [`Metrics::unknown_function`], since it names no function for sure.
    pub fn unrouted(&self, reason: Reject) {
        match reason {
            Reject::BadRequest => self.bad_request.inc(),
            _ => self.unknown_function.inc(),
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8192);
        let enc = TextEncoder::new();
        if let Err(e) = enc.encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "encoding metrics failed");
        }
        buf
    }
}

/// The labels of every per-function series.
const FUNCTION_LABELS: &[&str] = &["namespace", "function"];

/// Registers `metric` and hands it back.
fn registered<M: Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// Requests for a known function, by the status code sent.
fn requests(r: &Registry) -> Result<IntCounterVec, prometheus::Error> {
    let opts = Opts::new(
        names::REQUESTS,
        "Requests for a known function, by the status code sent to the client.",
    );
    registered(
        r,
        IntCounterVec::new(opts, &["namespace", "function", "code"])?,
    )
}

/// How long requests took, queueing included.
fn request_duration(r: &Registry) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(
        names::REQUEST_DURATION,
        "Time from a request's arrival to the last byte of its response, queueing included.",
    )
    .buckets(vec![
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        300.0,
    ]);
    registered(r, HistogramVec::new(opts, FUNCTION_LABELS)?)
}

/// Requests held now, parked or proxied: what the autoscaler scales on.
fn in_flight(r: &Registry) -> Result<IntGaugeVec, prometheus::Error> {
    let opts = Opts::new(
        names::IN_FLIGHT,
        "Requests this activator holds for the function, parked or proxied.",
    );
    registered(r, IntGaugeVec::new(opts, FUNCTION_LABELS)?)
}

/// In-flight requests integrated over time.
fn concurrency_seconds(r: &Registry) -> Result<CounterVec, prometheus::Error> {
    let opts = Opts::new(
        names::CONCURRENCY_SECONDS,
        "Integral of in-flight requests over time; its rate() is the average concurrency.",
    );
    registered(r, CounterVec::new(opts, FUNCTION_LABELS)?)
}

/// Requests parked now.
fn queued(r: &Registry) -> Result<IntGaugeVec, prometheus::Error> {
    let opts = Opts::new(
        names::QUEUED,
        "Requests parked waiting for a ready pod or a free concurrency slot.",
    );
    registered(r, IntGaugeVec::new(opts, FUNCTION_LABELS)?)
}

/// How long wakes from zero took, as the activator saw them.
fn cold_start(r: &Registry) -> Result<HistogramVec, prometheus::Error> {
    let opts = HistogramOpts::new(
        names::COLD_START_DURATION,
        "Time from the first request parked at zero to the first ready, probed pod.",
    )
    .buckets(vec![
        0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0,
    ]);
    registered(r, HistogramVec::new(opts, FUNCTION_LABELS)?)
}

/// Requests the activator answered itself, by [`Reject`].
fn rejected(r: &Registry) -> Result<IntCounterVec, prometheus::Error> {
    let opts = Opts::new(
        names::REJECTED,
        "Requests the activator answered itself, by reason.",
    );
    registered(
        r,
        IntCounterVec::new(opts, &["namespace", "function", "reason"])?,
    )
}

/// Requests sent to a pod again, by the failure before.
fn replays(r: &Registry) -> Result<IntCounterVec, prometheus::Error> {
    let opts = Opts::new(
        names::UPSTREAM_REPLAYS,
        "Requests sent to a pod again, by why the previous send failed (connect_failed, not_processed, connection_closed).",
    );
    registered(
        r,
        IntCounterVec::new(opts, &["namespace", "function", "reason"])?,
    )
}

/// Status codes whose counters are cached per function; others take the slow path.
const CACHED_CODES: [u16; 18] = [
    200, 201, 202, 204, 101, 301, 302, 304, 400, 401, 403, 404, 413, 499, 500, 502, 503, 504,
];

/// The failures a request is replayed after (the `reason` label values).
const REPLAY_REASONS: [Failure; 4] = [
    Failure::Connect,
    Failure::NotProcessed,
    Failure::Stranded,
    Failure::Closed,
];

fn code_str(code: u16) -> &'static str {
    match code {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        101 => "101",
        301 => "301",
        302 => "302",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        413 => "413",
        499 => "499",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => "other",
    }
}

/// One function's label handles.
pub struct FunctionMetrics {
    namespace: String,
    name: String,
    requests: IntCounterVec,
    codes: [OnceLock<IntCounter>; CACHED_CODES.len()],
    rejected: [OnceLock<IntCounter>; Reject::ALL.len()],
    rejected_vec: IntCounterVec,
    replays: IntCounterVec,
    // The two histograms are a dozen series each: made at a function's
    // first request and first cold start (with 10,000 functions, they were
    // most of the page and of the activator's memory).
    duration_vec: HistogramVec,
    duration: OnceLock<Histogram>,
    // The three gauges the autoscaler reads are made together when the
    // function first holds a request: a function that has never been
    // called has no series at all, which the autoscaler reads as no
    // traffic (at 1,000 functions at zero they were about 1.5 KiB each of
    // the activator's memory).
    in_flight_vec: IntGaugeVec,
    concurrency_seconds_vec: CounterVec,
    queued_vec: IntGaugeVec,
    live: OnceLock<Live>,
    cold_start_vec: HistogramVec,
    cold_start: OnceLock<Histogram>,
}

/// One function's in-flight, concurrency-seconds and queued series.
struct Live {
    in_flight: IntGauge,
    concurrency_seconds: Counter,
    queued: IntGauge,
}

impl FunctionMetrics {
    fn live(&self) -> &Live {
        self.live.get_or_init(|| {
            let l = [self.namespace.as_str(), self.name.as_str()];
            Live {
                in_flight: self.in_flight_vec.with_label_values(&l),
                concurrency_seconds: self.concurrency_seconds_vec.with_label_values(&l),
                queued: self.queued_vec.with_label_values(&l),
            }
        })
    }

    /// The live series to set `n` on: made for a non-zero `n`, else only
    /// if they exist (a 0 on a function never called makes none).
    fn live_for(&self, n: i64) -> Option<&Live> {
        if n != 0 {
            Some(self.live())
        } else {
            self.live.get()
        }
    }

    /// Sets the requests held now.
    pub fn set_in_flight(&self, n: i64) {
        if let Some(l) = self.live_for(n) {
            l.in_flight.set(n);
        }
    }

    /// Sets the requests parked now.
    pub fn set_queued(&self, n: i64) {
        if let Some(l) = self.live_for(n) {
            l.queued.set(n);
        }
    }

    /// Adds to the integral of held requests.
    pub fn add_concurrency_seconds(&self, v: f64) {
        self.live().concurrency_seconds.inc_by(v);
    }

    /// Requests held now (0 before the first).
    pub fn in_flight(&self) -> i64 {
        self.live.get().map_or(0, |l| l.in_flight.get())
    }

    /// Requests parked now (0 before the first).
    pub fn queued(&self) -> i64 {
        self.live.get().map_or(0, |l| l.queued.get())
    }

    /// The integral of held requests, in request-seconds.
    pub fn concurrency_seconds(&self) -> f64 {
        self.live.get().map_or(0.0, |l| l.concurrency_seconds.get())
    }

    /// One answered request's duration, in seconds.
    pub fn observe_duration(&self, seconds: f64) {
        self.duration
            .get_or_init(|| {
                self.duration_vec
                    .with_label_values(&[&self.namespace, &self.name])
            })
            .observe(seconds);
    }

    /// One cold start's duration (arrival to first byte), in seconds.
    pub fn observe_cold_start(&self, seconds: f64) {
        self.cold_start
            .get_or_init(|| {
                self.cold_start_vec
                    .with_label_values(&[&self.namespace, &self.name])
            })
            .observe(seconds);
    }

    /// The function's cold-start histogram; `None` before its first cold
    /// start. Reading it makes no series.
    #[cfg(test)]
    pub(crate) fn cold_start_histogram(&self) -> Option<&Histogram> {
        self.cold_start.get()
    }

    /// Counts one answered request with its status code.
    pub fn request(&self, code: u16) {
        if let Some(i) = CACHED_CODES.iter().position(|c| *c == code) {
            self.codes[i]
                .get_or_init(|| {
                    self.requests
                        .with_label_values(&[&self.namespace, &self.name, code_str(code)])
                })
                .inc();
        } else {
            let code = code.to_string();
            self.requests
                .with_label_values(&[&self.namespace, &self.name, &code])
                .inc();
        }
    }

    /// Counts one request the activator answered itself.
    pub fn reject(&self, reason: Reject) {
        self.rejected[reason.index()]
            .get_or_init(|| {
                self.rejected_vec
                    .with_label_values(&[&self.namespace, &self.name, reason.label()])
            })
            .inc();
    }

    /// Counts one request sent to a pod again after `failure`. Rare, so
    /// the label lookup is not cached.
    pub fn replay(&self, failure: Failure) {
        self.replays
            .with_label_values(&[&self.namespace, &self.name, failure.label()])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(m: &Metrics) -> String {
        String::from_utf8(m.encode()).expect("utf-8 page")
    }

    #[test]
    fn a_function_has_no_series_until_it_is_called_or_cold_started() {
        let m = Metrics::new().expect("metrics");
        let f = m.function(&FunctionKey::new("ns", "f"));
        // Zeros on a function never called make nothing.
        f.set_queued(0);
        f.set_in_flight(0);
        let before = page(&m);
        assert!(!before.contains(r#"function="f""#), "{before}");
        assert_eq!((f.in_flight(), f.queued()), (0, 0));

        // The first held request makes the three gauges the autoscaler reads.
        f.set_in_flight(1);
        let held = page(&m);
        for series in [
            r#"siesta_activator_in_flight_requests{function="f",namespace="ns"} 1"#,
            r#"siesta_activator_queued_requests{function="f",namespace="ns"} 0"#,
            r#"siesta_activator_concurrency_seconds_total{function="f",namespace="ns"} 0"#,
        ] {
            assert!(held.contains(series), "{series} in {held}");
        }
        f.add_concurrency_seconds(2.5);
        f.set_in_flight(0);
        assert_eq!(f.concurrency_seconds(), 2.5);
        assert!(
            page(&m)
                .contains(r#"siesta_activator_in_flight_requests{function="f",namespace="ns"} 0"#),
            "a series once made stays, at 0"
        );
        assert!(
            !held.contains("siesta_activator_request_duration_seconds"),
            "{held}"
        );
        assert!(
            !held.contains("siesta_activator_cold_start_duration_seconds"),
            "{held}"
        );

        f.observe_duration(0.25);
        f.observe_cold_start(1.5);
        let after = page(&m);
        assert!(
            after.contains(
                r#"siesta_activator_request_duration_seconds_count{function="f",namespace="ns"} 1"#
            ),
            "{after}"
        );
        assert!(
            after.contains(
                r#"siesta_activator_cold_start_duration_seconds_sum{function="f",namespace="ns"} 1.5"#
            ),
            "{after}"
        );
    }
}
