//! The client-facing listener: HTTP/1.1 and h2c on one port, with slow
//! client and header size limits, and a graceful drain on shutdown.
//!
//! The protocol is told from the first bytes, peeked (not read) from the
//! socket: the HTTP/2 preface starts with `PRI`, a method nobody else uses.
//! An HTTP/1 connection goes to the fast path ([`crate::h1_server`]) first,
//! and to hyper's HTTP/1 server, with the bytes the fast path read, at the
//! first request it does not serve; an HTTP/2 one to hyper's HTTP/2 server.
//! Knowing the protocol up front lets either read the socket directly
//! (hyper's through [`Rewind`], empty but for a handed-over request's
//! bytes). hyper-util's auto builder, kept only for a client that
//! has sent too little to tell, replays its sniffed bytes as a separate first
//! read, after which hyper reallocates the connection's read buffer from 8
//! to 16 KiB, and a parked request keeps that buffer alive (its headers point
//! into it): with 10,000 parked requests that doubled the activator's RSS
//! (measured with `siesta-bench park`, see docs/benchmarks.md).

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use siesta_api::lifecycle;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::h1_server::{self, Ended, Rewind};
use crate::index::LookupCache;
use crate::proxy::Proxy;
use crate::request_size::H2_STREAM_WINDOW;

/// Limits applied to client connections.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest time a client may take to send a request's headers.
    pub header_read_timeout: Duration,
    /// Largest request head; bigger ones get 431.
    pub max_header_bytes: usize,
    /// Most header fields in an HTTP/1 request; more get 431.
    pub max_request_headers: usize,
}

/// The connection builders, configured once from the limits.
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    auto: auto::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: Limits) -> Self {
        // hyper stops reading a head that fills its read buffer (431); 8 KiB
        // is hyper's floor for the buffer. The exact limit is the proxy's.
        let max_buf = limits.max_header_bytes.max(8192);
        let max_header_list = u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX);
        let mut http1 = http1::Builder::new();
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(max_buf)
            .max_headers(limits.max_request_headers);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(max_header_list)
            .initial_stream_window_size(H2_STREAM_WINDOW);
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(max_buf)
            .max_headers(limits.max_request_headers);
        auto.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(max_header_list)
            .initial_stream_window_size(H2_STREAM_WINDOW);
        Self { http1, http2, auto }
    }
}

/// What the first bytes of a connection say it speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sniffed {
    Http1,
    /// HTTP/2 with prior knowledge (h2c): the preface `PRI * HTTP/2.0...`.
    Http2,
    /// Too few bytes to tell (`P` or `PR`): let hyper-util read on.
    Unsure,
}

fn sniff(first: &[u8]) -> Sniffed {
    const PREFACE: &[u8] = b"PRI";
    let n = first.len().min(PREFACE.len());
    if first[..n] != PREFACE[..n] {
        Sniffed::Http1
    } else if n == PREFACE.len() {
        Sniffed::Http2
    } else {
        Sniffed::Unsure
    }
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
    let protocols = Arc::new(Protocols::new(limits));
    let stopping = Arc::new(Stopping::default());
    // Fired when the drain timeout passes: what is still open is cut.
    let cut = CancellationToken::new();
    let connections = TaskTracker::new();
    lifecycle::accept_until(
        &listener,
        "the traffic port",
        Duration::from_millis(20),
        shutdown,
        |stream, remote| {
            let _ = stream.set_nodelay(true);
            connections.spawn(connection(
                stream,
                remote,
                proxy.clone(),
                protocols.clone(),
                limits,
                stopping.clone(),
                cut.clone(),
            ));
        },
    )
    .await;
    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "stopped accepting; draining in-flight requests"
    );
    stopping.fire();
    connections.close();
    if tokio::time::timeout(drain, connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            connections = connections.len(),
            "drain timeout passed with requests still in flight; closing them"
        );
        cut.cancel();
        connections.wait().await;
    }
}

/// One client connection, from its first byte to its close.
async fn connection(
    stream: TcpStream,
    remote: SocketAddr,
    proxy: Arc<Proxy>,
    protocols: Arc<Protocols>,
    limits: Limits,
    stopping: Arc<Stopping>,
    cut: CancellationToken,
) {
    // hyper's header read timer starts only once a request begins, so a
    // client that connects and sends nothing would hold its connection
    // forever: give it the header read timeout to start. A drain closes it
    // at once, as hyper closes an idle keep-alive connection: a client's
    // pool may hold connections it opened and never used, and the drain
    // would otherwise wait out their timeout.
    let mut first = [0u8; 3];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout(limits.header_read_timeout, stream.peek(&mut first)) => peeked,
        () = stopping.token.cancelled() => return,
    };
    let sniffed = match peeked {
        Ok(Ok(n)) if n > 0 => sniff(&first[..n]),
        _ => return,
    };
    let cache = Arc::new(LookupCache::default());
    let (io, sniffed) = match sniffed {
        Sniffed::Http1 => {
            let settings = h1_server::Settings {
                header_read_timeout: limits.header_read_timeout,
                max_request_headers: limits.max_request_headers,
            };
            let fast = h1_server::serve(stream, remote, &proxy, &cache, settings, || {
                stopping.fired()
            });
            // The fast path has no graceful shutdown to ask for: it reads
            // the drain flag itself, between requests.
            match until_drained(fast, &stopping, &cut, |_| {}).await {
                Some(Ended::Closed) => return,
                None => {
                    tracing::debug!(%remote, "client connection cut at the drain timeout");
                    return;
                }
                Some(Ended::HandOver(stream, read)) => {
                    (Rewind::new(stream, read.freeze()), Sniffed::Http1)
                }
            }
        }
        other => (Rewind::new(stream, Bytes::new()), other),
    };
    // Boxed: hyper's HTTP/2 server moves each request's future into a
    // task of its own, and with the proxy's future inline that move
    // copied about 2 KB four times a request (callgrind, h2load -c1 -m1:
    // 51,000 -> 49,690 instructions a request). The HTTP/1 requests hyper
    // serves here (bodies, upgrades; plain ones take `h1_server`) pay one
    // allocation for it.
    let svc = service_fn(move |req| {
        let proxy = proxy.clone();
        let cache = cache.clone();
        Box::pin(async move { Ok::<_, Infallible>(proxy.handle(&cache, remote, req, None).await) })
    });
    let io = TokioIo::new(io);
    let ended = match sniffed {
        Sniffed::Http1 => {
            let conn = protocols.http1.serve_connection(io, svc).with_upgrades();
            until_drained(conn, &stopping, &cut, |c| c.graceful_shutdown())
                .await
                .map(|r| r.map_err(Into::into))
        }
        Sniffed::Http2 => {
            let conn = protocols.http2.serve_connection(io, svc);
            until_drained(conn, &stopping, &cut, |c| c.graceful_shutdown())
                .await
                .map(|r| r.map_err(Into::into))
        }
        Sniffed::Unsure => {
            // Rare, and much larger than the others: boxed, so that it does
            // not size every connection's task.
            let conn = Box::pin(protocols.auto.serve_connection_with_upgrades(io, svc));
            until_drained(conn, &stopping, &cut, |c| {
                c.get_mut().as_mut().graceful_shutdown()
            })
            .await
        }
    };
    match ended {
        Some(Ok(())) => {}
        Some(Err(e)) => {
            tracing::debug!(%remote, error = %e, "client connection ended with an error");
        }
        None => tracing::debug!(%remote, "client connection cut at the drain timeout"),
    }
}

/// The signal to drain, cheap to look at: a connection's task is woken
/// through the token, and on every other wake-up (each read and write of
/// its requests) reads one flag instead of locking the token.
#[derive(Default)]
struct Stopping {
    fired: AtomicBool,
    token: CancellationToken,
}

impl Stopping {
    fn fired(&self) -> bool {
        self.fired.load(Ordering::Acquire)
    }

    fn fire(&self) {
        self.fired.store(true, Ordering::Release);
        self.token.cancel();
    }
}

/// Runs a connection to its end; once `stopping` fires, asks it to finish
/// the requests it has and close; once `cut` fires, drops it (closing the
/// socket) with whatever it still had. `None` when cut.
async fn until_drained<C: Future>(
    conn: C,
    stopping: &Stopping,
    cut: &CancellationToken,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
) -> Option<C::Output> {
    tokio::pin!(conn);
    let stop = stopping.token.cancelled();
    tokio::pin!(stop);
    // The waker the token holds: a task's waker stays the same, so the
    // token is polled (locked) once, not on every wake-up.
    let mut registered: Option<Waker> = None;
    let ended = poll_fn(|cx| {
        if let Poll::Ready(out) = conn.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if stopping.fired() {
            return Poll::Ready(None);
        }
        if !registered.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            if stop.as_mut().poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            registered = Some(cx.waker().clone());
        }
        Poll::Pending
    })
    .await;
    if let Some(out) = ended {
        return Some(out);
    }
    graceful_shutdown(conn.as_mut());
    tokio::select! {
        out = conn => Some(out),
        () = cut.cancelled() => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_bytes_tell_http1_from_the_h2_preface() {
        assert_eq!(sniff(b"GET"), Sniffed::Http1);
        assert_eq!(sniff(b"G"), Sniffed::Http1);
        assert_eq!(sniff(b"POS"), Sniffed::Http1);
        assert_eq!(sniff(b"PUT"), Sniffed::Http1);
        assert_eq!(sniff(b"PA"), Sniffed::Http1);
        assert_eq!(sniff(b"PRI"), Sniffed::Http2);
        assert_eq!(sniff(b"P"), Sniffed::Unsure);
        assert_eq!(sniff(b"PR"), Sniffed::Unsure);
        // Not HTTP at all: hyper's HTTP/1 parser answers it with 400.
        assert_eq!(sniff(b"\x16\x03\x01"), Sniffed::Http1);
    }
}
