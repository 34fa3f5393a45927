//! The activation signal: the moment a request parks for a function with no
//! ready pod, tell a controller to scale it from zero, and repeat while
//! requests stay parked in case a signal was lost.
//!
//! A controller that answers 409 refuses for a reason only a person can
//! fix (the function's Deployment is not Siesta's, or its spec is invalid):
//! then the parked requests are answered 503 with its reason at once, not
//! after their queue timeout, and so are new ones for one `--wake-interval`
//! before the controller is asked again.
//!
//! Controllers are found from `--controller-url`, or by watching the
//! controller's pods (no cluster DNS or kube-proxy is assumed).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;

use siesta_api::cold_start::ColdStartReport;

use crate::index::FunctionEntry;
use crate::route::FunctionKey;

/// The most of a controller's refusal passed on to clients.
const MAX_REASON_BYTES: usize = 1024;

/// What one activation signal came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Signal {
    /// A controller took it (2xx), answering at this moment (after its
    /// scale write returned).
    Accepted(Instant),
    /// A controller refused it for good (409), with its reason.
    Refused(Arc<str>),
    /// No controller took it (unreachable, not ready, 5xx): try again later.
    Failed,
}

/// Sends activation signals to whichever controller answers.
pub struct WakeClient {
    client: Client<HttpConnector, Full<Bytes>>,
    /// Base URLs like `http://127.0.0.1:9090`, tried in order.
    targets: RwLock<Vec<String>>,
    interval: Duration,
}

impl WakeClient {
    pub fn new(targets: Vec<String>, interval: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Self {
            client,
            targets: RwLock::new(normalize(targets)),
            interval,
        }
    }

    /// Replaces the controller list (from the controller-pod watch).
    pub fn set_targets(&self, targets: Vec<String>) {
        *self.targets.write().unwrap_or_else(|p| p.into_inner()) = normalize(targets);
    }

    pub fn targets(&self) -> Vec<String> {
        self.targets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Signals, then re-signals every interval while the function stays cold
    /// with requests parked.
    pub async fn wake_loop(self: Arc<Self>, entry: Arc<FunctionEntry>) {
        loop {
            match self.signal(&entry.key).await {
                Signal::Refused(why) => {
                    entry.refuse(why, Instant::now() + self.interval);
                    return;
                }
                Signal::Accepted(at) => entry.scale_written(at),
                Signal::Failed => {}
            }
            tokio::time::sleep(self.interval).await;
            if !entry.keep_waking() {
                return;
            }
        }
    }

    /// One signal: the first controller that answers 2xx takes it; the
    /// first that answers 409 refuses it for all (they share one apiserver).
    pub async fn signal(&self, key: &FunctionKey) -> Signal {
        let targets = self.targets();
        if targets.is_empty() {
            tracing::warn!(function = %key, "no controller known to wake the function; will retry");
            return Signal::Failed;
        }
        for base in &targets {
            let uri = format!("{base}/v1/activate/{}/{}", key.namespace, key.name);
            let req = match Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .body(Full::new(Bytes::new()))
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(%uri, error = %e, "bad controller URL");
                    continue;
                }
            };
            match tokio::time::timeout(Duration::from_secs(2), self.client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    tracing::info!(function = %key, controller = %base, "activation signal sent");
                    return Signal::Accepted(Instant::now());
                }
                Ok(Ok(resp)) if resp.status() == StatusCode::CONFLICT => {
                    let why = refusal(key, resp.into_body()).await;
                    tracing::warn!(function = %key, controller = %base, reason = %why, "activation refused; answering the parked requests 503");
                    return Signal::Refused(why);
                }
                Ok(Ok(resp)) if resp.status() == StatusCode::NOT_FOUND => {
                    tracing::warn!(function = %key, controller = %base, "controller does not know the function yet");
                }
                Ok(Ok(resp)) => {
                    tracing::warn!(function = %key, controller = %base, status = %resp.status(), "activation refused");
                }
                Ok(Err(e)) => {
                    tracing::warn!(function = %key, controller = %base, error = %e, "activation failed; trying the next controller");
                }
                Err(_) => {
                    tracing::warn!(function = %key, controller = %base, "activation timed out; trying the next controller");
                }
            }
        }
        Signal::Failed
    }
}

impl WakeClient {
    /// Sends the record of a cold start to the first controller that takes
    /// it. Best effort: each controller is tried once; a lost record loses
    /// no request.
    pub async fn report_cold_start(&self, key: &FunctionKey, report: ColdStartReport) {
        let body = match serde_json::to_vec(&report) {
            Ok(b) => Bytes::from(b),
            Err(e) => {
                tracing::warn!(function = %key, error = %e, "cannot encode a cold-start report");
                return;
            }
        };
        for base in self.targets() {
            let uri = format!("{base}/v1/coldstart/{}/{}", key.namespace, key.name);
            let Ok(req) = Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body.clone()))
            else {
                continue;
            };
            match tokio::time::timeout(Duration::from_secs(5), self.client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    tracing::debug!(function = %key, controller = %base, "cold start reported");
                    return;
                }
                Ok(Ok(resp)) => {
                    tracing::info!(function = %key, controller = %base, status = %resp.status(), "cold-start report refused");
                }
                Ok(Err(e)) => {
                    tracing::info!(function = %key, controller = %base, error = %e, "cold-start report failed");
                }
                Err(_) => {
                    tracing::info!(function = %key, controller = %base, "cold-start report timed out");
                }
            }
        }
    }
}

/// The controller's reason for a 409, as a client may read it: at most
/// [`MAX_REASON_BYTES`] of its body, read within a second, as one line of
/// text. A body that cannot be read still gives a reason that says where
/// to look.
async fn refusal(key: &FunctionKey, body: hyper::body::Incoming) -> Arc<str> {
    let read = Limited::new(body, MAX_REASON_BYTES).collect();
    let text = match tokio::time::timeout(Duration::from_secs(1), read).await {
        Ok(Ok(collected)) => reason_text(&collected.to_bytes()),
        _ => String::new(),
    };
    if text.is_empty() {
        return Arc::from(format!(
            "409 Conflict; see `kubectl describe fn {} -n {}`",
            key.name, key.namespace
        ));
    }
    Arc::from(text)
}

/// Untrusted bytes made into one short line: valid UTF-8, control
/// characters (line breaks included) turned into spaces, trimmed.
fn reason_text(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if out.len() > MAX_REASON_BYTES {
        let mut cut = MAX_REASON_BYTES;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out.trim().to_string()
}

fn normalize(targets: Vec<String>) -> Vec<String> {
    targets
        .into_iter()
        .flat_map(|t| {
            t.split(',')
                .map(|s| s.trim().trim_end_matches('/').to_owned())
                .collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .map(|s| {
            if s.contains("://") {
                s
            } else {
                format!("http://{s}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{normalize, reason_text};

    #[test]
    fn a_refusal_reason_is_one_short_line_of_text() {
        assert_eq!(
            reason_text(b"function ns/f cannot be woken: not ours\n"),
            "function ns/f cannot be woken: not ours"
        );
        assert_eq!(reason_text(b"a\r\nb\x1b[31m\xff"), "a  b [31m\u{fffd}");
        assert_eq!(reason_text("é".repeat(600).as_bytes()).len(), 1024);
        assert_eq!(reason_text(b"  \n"), "");
    }

    #[test]
    fn controller_urls_accept_lists_and_bare_addresses() {
        assert_eq!(
            normalize(vec![
                "http://a:1/, 127.0.0.1:9090".into(),
                "".into(),
                "http://b:2".into()
            ]),
            vec!["http://a:1", "http://127.0.0.1:9090", "http://b:2"]
        );
    }
}
