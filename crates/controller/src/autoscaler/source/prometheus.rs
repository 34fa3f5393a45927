//! The `prometheus` source: the same numbers asked of a Prometheus server
//! that already scrapes the activators, as PromQL instant queries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client as HttpClient;
use hyper_util::client::legacy::connect::HttpConnector;
use siesta_api::names::FunctionKey;

use super::{Poll, Reading, get_text, http_client, names};

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
    pub(super) interval: Duration,
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

    fn key(name: &str) -> FunctionKey {
        FunctionKey::new("demo", name)
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
