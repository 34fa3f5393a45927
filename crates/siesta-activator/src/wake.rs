//! The activation signal: the moment a request parks for a function with no
//! ready pod, tell a controller to scale it from zero, and repeat while
//! requests stay parked in case a signal was lost.
//!
//! Controllers are found from `--controller-url`, or by watching the
//! controller's pods (no cluster DNS or kube-proxy is assumed).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;

use crate::index::FunctionEntry;
use crate::route::FunctionKey;

/// Sends activation signals to whichever controller answers.
pub struct Waker {
    client: Client<HttpConnector, Empty<Bytes>>,
    /// Base URLs like `http://127.0.0.1:9090`, tried in order.
    targets: RwLock<Vec<String>>,
    interval: Duration,
}

impl Waker {
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
            self.signal(&entry.key).await;
            tokio::time::sleep(self.interval).await;
            if !entry.keep_waking() {
                return;
            }
        }
    }

    /// One signal: the first controller that answers 2xx takes it.
    pub async fn signal(&self, key: &FunctionKey) -> bool {
        let targets = self.targets();
        if targets.is_empty() {
            tracing::warn!(function = %key, "no controller known to wake the function; will retry");
            return false;
        }
        for base in &targets {
            let uri = format!("{base}/v1/activate/{}/{}", key.namespace, key.name);
            let req = match Request::builder()
                .method(Method::POST)
                .uri(&uri)
                .body(Empty::new())
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
                    return true;
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
        false
    }
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
    use super::normalize;

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
