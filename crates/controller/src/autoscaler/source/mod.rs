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

//!
//! The sources are apart: `scrape` reads each activator's `/metrics` and
//! turns counters into per-poll deltas, `targets` finds the activator pods
//! to read, `prometheus` asks a Prometheus server instead.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use siesta_api::names::FunctionKey;

/// Metric names published by the activator (DESIGN.md, "Metrics").
pub use siesta_api::names::metrics as names;

mod prometheus;
mod scrape;
mod targets;
mod text_format;

pub use prometheus::{PromQuery, parse_vector};
pub use scrape::{Counters, Delta, Scraper, SeriesState, advance, parse_activator_metrics};
pub use targets::{Target, Targets};

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

pub(super) fn http_client() -> HttpClient<HttpConnector, Empty<Bytes>> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(1)));
    HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// GETs `url` and returns the body as text, within `timeout`.
pub(super) async fn get_text(
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
