//! One serving thread's HTTP/1 keep-alive connections to pods, driven by
//! the request that holds them.
//!
//! hyper-util's pooled client runs each upstream connection as a task of
//! its own: the request crosses a channel to that task, and the response
//! head and every body chunk cross back, each a wake-up of the other task.
//! Here the client connection's task polls the upstream connection itself,
//! while the request goes out (`send`) and while the response body streams
//! (the [`Lease`] travels in [`crate::body::ProxyBody`]), and gives it back
//! to the pool when the body has ended. Each serving thread has its own
//! pool (`serving`), so its lock is never contended.
//!
//! A pooled connection is polled once as it is taken: one the pod closed
//! while it sat idle reads its end then and is passed over before anything
//! is written to it. One that closes just as the request goes out is the
//! replay's case ([`crate::upstream`]). A sweep every quarter of the idle
//! timeout closes the connections idle for a whole one (so a request reads
//! no clock for the pool); at most `max_idle` are kept per pod, the newest
//! taken first.
//!
//! Upgrades (WebSocket) and h2c keep hyper-util's client (`proxy`).

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::request_body::UpBody;

/// One pod's connections, idle, each with the sweep tick it was put back in.
type Idle = Vec<(Conn, u32)>;

/// Sweeps per idle timeout: a connection is closed after it has been idle
/// for between 1 and 1 + 1/`TICKS` idle timeouts.
const TICKS: u32 = 4;

/// The pool's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Idle connections kept per pod.
    pub max_idle: usize,
    /// How long a connection may sit idle before it is closed.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// Most header fields in a response (`--max-response-headers`).
    pub max_headers: usize,
}

pub struct Pool {
    idle: Mutex<HashMap<SocketAddr, Idle>>,
    settings: Settings,
    builder: http1::Builder,
    sweeping: AtomicBool,
    /// Sweeps so far: an idle connection's age is counted in them, so that
    /// a request reads no clock for the pool.
    tick: AtomicU32,
}

/// Why a send failed, before or after the request was written.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (or not within the connect timeout).
    Connect(std::io::Error),
    /// A new connection closed before it could take the request: nothing
    /// was written.
    NotSent(hyper::Error),
    /// What the connection reported for the request.
    Http(hyper::Error),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::NotSent(e) => {
                write!(f, "connection closed before the request went out: {e}")
            }
            SendError::Http(e) => with_source(f, e),
        }
    }
}

/// An error and what caused it, on one line: hyper's errors say what
/// failed, their source why (a reset, an early EOF).
pub fn with_source(f: &mut std::fmt::Formatter<'_>, e: &dyn std::error::Error) -> std::fmt::Result {
    match e.source() {
        Some(s) => write!(f, "{e}: {s}"),
        None => write!(f, "{e}"),
    }
}

/// One connection to a pod and the handle that sends on it.
pub struct Conn {
    sender: SendRequest<UpBody>,
    // Boxed, as is the connect: each request's future holds a `Conn`, and
    // a parked request's is as large (the park budget counts on it). Gone
    // once the connection has ended: dropping it closes the sender's
    // channel, so that a send on it fails at once instead of waiting.
    io: Option<Box<Connection<TokioIo<TcpStream>, UpBody>>>,
    addr: SocketAddr,
}

impl Conn {
    /// Does the connection's pending reads and writes; false once it is
    /// closed.
    fn drive(&mut self, cx: &mut Context<'_>) -> bool {
        if let Some(io) = self.io.as_mut()
            && Pin::new(&mut **io).poll(cx).is_ready()
        {
            self.io = None;
        }
        self.io.is_some()
    }

    /// Polls without a task to wake: what an idle connection's socket
    /// holds is looked at when it is next taken, and its registration
    /// keeps no finished task alive.
    fn drive_idle(&mut self) -> bool {
        self.drive(&mut Context::from_waker(Waker::noop()))
    }
}

/// A connection lent to one response, until its body ends.
pub struct Lease {
    conn: Conn,
    pool: Arc<Pool>,
}

impl Lease {
    /// Reads what the pod sends for the body (and writes what is left of
    /// the request). Call before polling the response body.
    pub fn drive(&mut self, cx: &mut Context<'_>) {
        self.conn.drive(cx);
    }

    /// The response body ended: back to the pool, if the connection can
    /// take another request.
    pub fn release(self) {
        Pool::put(&self.pool, self.conn);
    }
}

impl Pool {
    pub fn new(settings: Settings) -> Arc<Self> {
        let mut builder = http1::Builder::new();
        builder.max_headers(settings.max_headers);
        Arc::new(Self {
            idle: Mutex::new(HashMap::new()),
            settings,
            builder,
            sweeping: AtomicBool::new(false),
            tick: AtomicU32::new(0),
        })
    }

    /// Sends `req` (its URI in origin form) to `addr` on a pooled
    /// connection, or on a new one if none is idle or `fresh` asks for it.
    /// The lease must be driven while the response body is read.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        fresh: bool,
        req: Request<UpBody>,
    ) -> Result<(Response<Incoming>, Lease), SendError> {
        self.start_sweeping();
        let mut conn = loop {
            let (mut conn, reused) = match (!fresh).then(|| self.take(addr)).flatten() {
                Some(conn) => (conn, true),
                None => (Box::pin(self.connect(addr)).await?, false),
            };
            let ready = poll_fn(|cx| {
                conn.drive(cx);
                conn.sender.poll_ready(cx)
            })
            .await;
            match ready {
                Ok(()) => break conn,
                // It closed while idle: the next one.
                Err(_) if reused => continue,
                Err(e) => return Err(SendError::NotSent(e)),
            }
        };
        let mut response = pin!(conn.sender.send_request(req));
        let answered = poll_fn(|cx| {
            conn.drive(cx);
            response.as_mut().poll(cx)
        })
        .await;
        match answered {
            Ok(resp) => Ok((
                resp,
                Lease {
                    conn,
                    pool: self.clone(),
                },
            )),
            Err(e) => Err(SendError::Http(e)),
        }
    }

    /// Idle connections held now, over all pods.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Idle>> {
        // A panic while holding it leaves the map as it was between
        // operations: usable.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest idle connection to `addr` (the sweep closes the old).
    fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.lock();
        let list = idle.get_mut(&addr)?;
        let found = list.pop().map(|(conn, _)| conn);
        if list.is_empty() {
            idle.remove(&addr);
        }
        found
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Conn, SendError> {
        let stream = tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                SendError::Connect(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "no connection within the connect timeout",
                ))
            })?
            .map_err(SendError::Connect)?;
        stream.set_nodelay(true).map_err(SendError::Connect)?;
        // An HTTP/1 handshake writes nothing: it only builds the state.
        let (sender, io) = self
            .builder
            .handshake(TokioIo::new(stream))
            .await
            .map_err(SendError::NotSent)?;
        Ok(Conn {
            sender,
            io: Some(Box::new(io)),
            addr,
        })
    }

    fn put(self: &Arc<Self>, mut conn: Conn) {
        // One more turn lets the connection take in the body's end and ask
        // for the next request; a `Connection: close` ends it here.
        if !conn.drive_idle() {
            return;
        }
        if !conn.sender.is_ready() {
            // The response ended before the request did (a 202 or a 413
            // sent before the whole body was read): the pod may still be
            // reading the body, so the connection is driven until it has
            // all been sent, as hyper-util's connection task did, and
            // pooled then. Rare: most pods read the body first.
            tokio::spawn(finish(self.clone(), conn));
            return;
        }
        self.keep(conn);
    }

    fn keep(&self, conn: Conn) {
        let mut idle = self.lock();
        let list = idle.entry(conn.addr).or_default();
        if list.len() < self.settings.max_idle {
            list.push((conn, self.tick.load(Ordering::Relaxed)));
        }
    }

    /// Closes connections idle past the timeout, or closed by their pod,
    /// every few seconds, from the first send on: a pod that went away
    /// (its function at zero) takes none of them.
    fn start_sweeping(self: &Arc<Self>) {
        // A read on every send, a write once.
        if self.sweeping.load(Ordering::Relaxed) || self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(self);
        let every = (self.settings.idle_timeout / TICKS).max(Duration::from_millis(10));
        tokio::spawn(sweep(pool, every));
    }

    fn sweep(&self) {
        let now = self.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.lock().retain(|_, list| {
            list.retain_mut(|(conn, put)| now.wrapping_sub(*put) <= TICKS && conn.drive_idle());
            !list.is_empty()
        });
    }
}

/// Drives a connection whose request is still going out until it can take
/// another (then pools it) or ends.
async fn finish(pool: Arc<Pool>, mut conn: Conn) {
    let ready = poll_fn(|cx| {
        if !conn.drive(cx) {
            return Poll::Ready(false);
        }
        conn.sender.poll_ready(cx).map(|r| r.is_ok())
    })
    .await;
    if ready {
        pool.keep(conn);
    }
}

async fn sweep(pool: Weak<Pool>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// Reads a response body to its end as `ProxyBody` does: driving the
    /// lease before each poll, releasing it at the end.
    async fn body_text(resp: Response<Incoming>, mut lease: Lease) -> String {
        use hyper::body::Body as _;
        let mut body = resp.into_body();
        let mut out = Vec::new();
        loop {
            let frame = poll_fn(|cx| {
                lease.drive(cx);
                Pin::new(&mut body).poll_frame(cx)
            })
            .await;
            match frame {
                Some(Ok(f)) => {
                    if let Ok(d) = f.into_data() {
                        out.extend_from_slice(&d);
                    }
                }
                Some(Err(e)) => panic!("body: {e}"),
                None => break,
            }
        }
        lease.release();
        String::from_utf8_lossy(&out).into_owned()
    }

    fn settings(idle_timeout: Duration) -> Settings {
        Settings {
            max_idle: 8,
            idle_timeout,
            connect_timeout: Duration::from_secs(2),
            max_headers: 100,
        }
    }

    fn get() -> Request<UpBody> {
        let mut r = Request::new(UpBody::empty());
        *r.uri_mut() = http::Uri::from_static("/");
        r.headers_mut()
            .insert(http::header::HOST, http::HeaderValue::from_static("pod"));
        r
    }

    /// A keep-alive server that answers each request with the number of
    /// its connection, closing each `linger` after its `per_conn`th
    /// answer. Counts connections.
    async fn server(per_conn: usize, linger: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_conn {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut chunk = [0u8; 1024];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        }
                        buf.clear();
                        let body = format!("conn {n}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(linger).await;
                });
            }
        });
        (addr, accepted)
    }

    async fn one(pool: &Arc<Pool>, addr: SocketAddr, fresh: bool) -> String {
        let (resp, lease) = pool.send(addr, fresh, get()).await.expect("send");
        body_text(resp, lease).await
    }

    #[tokio::test]
    async fn a_connection_whose_body_ended_is_used_again() {
        let (addr, accepted) = server(100, Duration::ZERO).await;
        let pool = Pool::new(settings(Duration::from_secs(30)));
        for _ in 0..5 {
            assert_eq!(one(&pool, addr, false).await, "conn 1");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
        // A fresh send opens its own, and gives it back too.
        assert_eq!(one(&pool, addr, true).await, "conn 2");
        assert_eq!(pool.idle_count(), 2);
    }

    #[tokio::test]
    async fn a_connection_the_pod_closed_while_idle_is_passed_over_unwritten() {
        // Each connection answers twice, then closes without a word 30 ms
        // later: after it went back to the pool, before it is taken again.
        let (addr, accepted) = server(2, Duration::from_millis(30)).await;
        let pool = Pool::new(settings(Duration::from_secs(30)));
        let mut seen = Vec::new();
        for _ in 0..6 {
            let sent = tokio::time::timeout(Duration::from_secs(5), one(&pool, addr, false));
            seen.push(sent.await.expect("no send waits on a closed connection"));
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_eq!(
            seen,
            ["conn 1", "conn 1", "conn 2", "conn 2", "conn 3", "conn 3"]
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_not_read_to_its_end_takes_its_connection_with_it() {
        let (addr, accepted) = server(100, Duration::ZERO).await;
        let pool = Pool::new(settings(Duration::from_secs(30)));
        let (resp, lease) = pool.send(addr, false, get()).await.expect("send");
        drop((resp, lease));
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(one(&pool, addr, false).await, "conn 2");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (addr, accepted) = server(100, Duration::ZERO).await;
        let pool = Pool::new(settings(Duration::from_millis(200)));
        one(&pool, addr, false).await;
        assert_eq!(pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.idle_count(), 1, "kept within the idle timeout");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle_count(), 0, "the sweep closed it");
        assert_eq!(one(&pool, addr, false).await, "conn 2");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn no_listener_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let pool = Pool::new(settings(Duration::from_secs(30)));
        let e = pool.send(addr, false, get()).await.err().expect("refused");
        assert!(matches!(e, SendError::Connect(_)), "{e}");
    }
}
