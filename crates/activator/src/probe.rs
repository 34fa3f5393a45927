//! A pod the kubelet calls ready may still refuse connections for a moment
//! (readiness probes can be lax). Before the queue is released to a new pod
//! the activator connects to it once, so no parked request meets a refusal.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::{Instant, sleep, timeout};

use crate::index::FunctionEntry;

/// Probes `addr` until it accepts a TCP connection, the pod stops being
/// ready, or `limit` passes; then admits it. After `limit` it is admitted
/// anyway: the kubelet is the authority on readiness, and connect failures
/// are retried on another pod.
pub async fn probe_and_admit(entry: Arc<FunctionEntry>, addr: SocketAddr, limit: Duration) {
    let deadline = Instant::now() + limit;
    let mut backoff = Duration::from_millis(5);
    loop {
        if !entry.is_ready(addr) {
            return;
        }
        match timeout(Duration::from_secs(1), TcpStream::connect(addr)).await {
            Ok(Ok(_stream)) => break,
            Ok(Err(e)) => {
                tracing::debug!(function = %entry.key, %addr, error = %e, "probe refused")
            }
            Err(_) => tracing::debug!(function = %entry.key, %addr, "probe timed out"),
        }
        if Instant::now() + backoff > deadline {
            tracing::warn!(function = %entry.key, %addr, "pod is ready but did not accept a connection within {limit:?}; admitting it anyway");
            break;
        }
        sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_millis(200));
    }
    tracing::debug!(function = %entry.key, %addr, "pod probed, releasing queue");
    entry.probed(addr, Instant::now());
}
