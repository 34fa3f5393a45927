//! The client-facing listener: HTTP/1.1 and h2c on one port, with slow
//! client and header size limits, and a graceful drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::index::LookupCache;
use crate::proxy::Proxy;

/// Limits applied to client connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest time a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head; bigger ones get 431.
    pub max_header_bytes: usize,
}

pub fn builder(limits: Limits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // hyper refuses a head larger than its read buffer with 431; 8 KiB is
        // hyper's floor for the buffer.
        .max_buf_size(limits.max_header_bytes.max(8192));
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// Serves until `shutdown` resolves, then stops accepting (the listener is
/// closed, so new connections are refused), lets every connection finish its
/// in-flight requests for at most `drain`, and returns.
pub async fn serve(
    listener: TcpListener,
    proxy: Arc<Proxy>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    let builder = Arc::new(builder(limits));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => {
                let (stream, remote) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a
                        // little instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let proxy = proxy.clone();
                let builder = builder.clone();
                let watcher = graceful.watcher();
                let first_byte_timeout = limits.header_read_timeout;
                tokio::spawn(async move {
                    // The auto builder waits for the first bytes to tell
                    // HTTP/1 from h2c before hyper's header read timer
                    // starts, so a client that connects and sends nothing
                    // would hold its connection forever: give it the header
                    // read timeout to start.
                    let mut first = [0u8; 1];
                    match tokio::time::timeout(first_byte_timeout, stream.peek(&mut first)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return,
                    }
                    let cache = Arc::new(LookupCache::default());
                    let svc = service_fn(move |req| {
                        let proxy = proxy.clone();
                        let cache = cache.clone();
                        async move { Ok::<_, Infallible>(proxy.handle(&cache, remote, req).await) }
                    });
                    let conn = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .into_owned();
                    if let Err(e) = watcher.watch(conn).await {
                        tracing::debug!(%remote, error = %e, "client connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    tracing::info!(
        connections = graceful.count(),
        "stopped accepting; draining in-flight requests"
    );
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout passed with requests still in flight; exiting anyway");
    }
}
