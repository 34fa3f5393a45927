//! Requests stranded on a pooled connection that is already gone.
//!
//! hyper's client hands a request to a connection's task through a channel.
//! When the server ends the connection just then (nginx sends GOAWAY after
//! `keepalive_requests` streams and closes; any server closes an idle
//! HTTP/1 connection), the task can stop after the request entered the
//! channel but before it was written: the channel then keeps it, and its
//! response future waits with no error until timeoutSeconds. Seen here about
//! once in 5,000 requests to nginx h2c under load, with plain hyper-util and
//! nginx, none of Siesta's code in between (`tests/reliability/tests/
//! upstream_lifecycle.rs`).
//!
//! Only HTTP/2 requests are watched. An HTTP/1 connection takes one request
//! at a time, and the pool hands it out only while its task waits for one;
//! the pools belong to a serving thread (see `serving`), whose
//! single-threaded runtime also runs the connections' tasks, so a request
//! cannot enter the channel while a closing connection drains it: it is
//! either drained (and fails with an error hyper-util retries) or refused.
//! HTTP/2 requests stay watched: that is where the hang was seen, and a
//! GOAWAY leaves the connection in the pool, shared, while its task winds
//! down.
//!
//! The activator cannot reach into that channel, but it owns the sockets:
//! [`WatchedConnector`] wraps each connection's IO so that dropping it
//! (hyper drops it when the connection's task ends) cancels a token, which
//! every request finds through the connection's metadata. A request still
//! waiting [`GRACE`] after its connection's socket is gone was never
//! answered and can no longer be: a request that was written gets its error
//! from the connection before the socket goes, so one still pending was
//! never written, and is sent again as not processed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{
    CaptureConnection, Connected, Connection, HttpConnector, capture_connection,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// How long a request may still wait once its connection's socket is gone.
/// A written request's error travels from the connection's task through one
/// more task to the waiting request: microseconds, or milliseconds on a
/// loaded machine. A second is far past that, and short next to any
/// timeoutSeconds.
pub const GRACE: Duration = Duration::from_secs(1);

/// A connection's socket as its requests see it: cancelled when the socket
/// is dropped, and numbered, so that a request moved to another connection
/// is told apart.
#[derive(Clone)]
struct SocketGone {
    token: CancellationToken,
    id: u64,
}

/// The number of the next socket.
static NEXT_SOCKET: AtomicU64 = AtomicU64::new(0);

/// An [`HttpConnector`] whose connections say when their socket is gone.
#[derive(Clone)]
pub struct WatchedConnector(pub HttpConnector);

/// A connection's socket, which cancels its token when dropped.
pub struct WatchedIo {
    io: TokioIo<TcpStream>,
    gone: SocketGone,
}

impl Drop for WatchedIo {
    fn drop(&mut self) {
        self.gone.token.cancel();
    }
}

impl tower_service::Service<Uri> for WatchedConnector {
    type Response = WatchedIo;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<WatchedIo, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        let connecting = self.0.call(dst);
        Box::pin(async move {
            let io = connecting.await?;
            Ok(WatchedIo {
                io,
                gone: SocketGone {
                    token: CancellationToken::new(),
                    id: NEXT_SOCKET.fetch_add(1, Ordering::Relaxed),
                },
            })
        })
    }
}

impl Connection for WatchedIo {
    fn connected(&self) -> Connected {
        self.io.connected().extra(self.gone.clone())
    }
}

impl Read for WatchedIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for WatchedIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

/// Watches the connection a request is given.
pub struct Watch(CaptureConnection);

impl Watch {
    /// Call on the request before it is sent.
    pub fn on<B>(req: &mut Request<B>) -> Watch {
        Watch(capture_connection(req))
    }

    /// What the request was given so far. Read without waiting.
    fn given(&self) -> Given {
        let connected = self.0.connection_metadata();
        let Some(connected) = connected.as_ref() else {
            return Given::Nothing;
        };
        let mut found = http::Extensions::new();
        connected.get_extras(&mut found);
        match found.remove::<SocketGone>() {
            Some(gone) => Given::Socket(gone),
            None => Given::Unwatched,
        }
    }
}

/// What a watched request was given.
enum Given {
    /// No connection yet: still connecting, or never.
    Nothing,
    /// A connection whose socket says when it is gone.
    Socket(SocketGone),
    /// A connection of another connector: nothing to watch.
    Unwatched,
}

/// Resolves once the request has waited [`GRACE`] past the end of the
/// socket it was given.
///
/// No timer runs until that socket is gone. A timer for every request costs
/// more than its own upkeep: a serving thread that parked with no earlier
/// deadline is woken through its driver's eventfd when a new earliest one is
/// registered (tokio unparks for it, even from its own thread). That was one
/// `write` and one more `epoll_wait` a request (strace, h2load -c1 -m1 to an
/// h2c pod).
async fn stranded(mut watch: Watch) {
    loop {
        let socket = match watch.given() {
            Given::Socket(socket) => socket,
            Given::Unwatched => return std::future::pending().await,
            Given::Nothing => {
                // Woken once, when hyper-util gives the request a
                // connection. Still nothing after that: the request was
                // dropped without one, so it cannot be stranded on one.
                let given = watch.0.wait_for_connection_metadata().await.is_some();
                if !given {
                    return std::future::pending().await;
                }
                continue;
            }
        };
        let still_on = || matches!(watch.given(), Given::Socket(s) if s.id == socket.id);
        if !gone_or_moved(&socket.token, still_on).await {
            continue;
        }
        tokio::time::sleep(GRACE).await;
        // Stranded only if it is still on the socket that went. Given
        // another one meanwhile (hyper-util sent it again), it waits for
        // that one, which gets a whole grace of its own.
        if still_on() {
            return;
        }
    }
}

/// True once `socket` is gone; false once the request is no longer on it
/// (`still_on` says whether it is).
///
/// hyper-util sends a request again on a new connection when the one it was
/// queued on ended (a GOAWAY) before writing it, while that connection's
/// socket can live on for its streams already under way. That happens in
/// the request's `send`, polled in this same task: so every poll after the
/// first looks at what the request was given. Most requests poll this
/// once: their answer comes before anything else wakes them.
async fn gone_or_moved(socket: &CancellationToken, still_on: impl Fn() -> bool) -> bool {
    let cancelled = socket.cancelled();
    tokio::pin!(cancelled);
    // The first poll follows the look the caller just took.
    let mut looked = true;
    std::future::poll_fn(|cx| {
        if cancelled.as_mut().poll(cx).is_ready() {
            return Poll::Ready(true);
        }
        if !std::mem::take(&mut looked) && !still_on() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

/// The sent request's outcome, or `None` when it was stranded.
pub async fn unless_stranded<F: Future>(send: F, watch: Watch) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = send => Some(out),
        () = stranded(watch) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;

    /// A `Watch` as hyper-util leaves it once it gave the request a
    /// connection: a real client, a socket the test controls.
    async fn watch_given_a_socket() -> (Watch, CancellationToken) {
        let addr = silent_server(async {}).await;
        let (client, req, watch) = watched_request(addr);
        let _ = client.request(req).await;
        let Given::Socket(socket) = watch.given() else {
            panic!("the request was given a watched socket");
        };
        (watch, socket.token)
    }

    /// A client of watched connections, and a request to `addr` watched.
    fn watched_request(
        addr: std::net::SocketAddr,
    ) -> (
        Client<WatchedConnector, Empty<Bytes>>,
        Request<Empty<Bytes>>,
        Watch,
    ) {
        let client =
            Client::builder(TokioExecutor::new()).build(WatchedConnector(HttpConnector::new()));
        let mut req = Request::get(format!("http://{addr}/"))
            .body(Empty::new())
            .expect("request");
        let watch = Watch::on(&mut req);
        (client, req, watch)
    }

    /// A server that reads a request head, waits for `close` and closes
    /// without a word.
    async fn silent_server(
        close: impl Future<Output = ()> + Send + 'static,
    ) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            close.await;
        });
        addr
    }

    #[tokio::test]
    async fn a_request_is_stranded_once_it_waited_a_grace_past_its_socket() {
        let (watch, socket) = watch_given_a_socket().await;
        tokio::time::timeout(Duration::from_secs(5), socket.cancelled())
            .await
            .expect("the socket's token is cancelled once hyper drops it");
        // The socket is gone before the first look: one grace from then.
        tokio::time::pause();
        let start = tokio::time::Instant::now();
        let out = unless_stranded(std::future::pending::<()>(), watch).await;
        assert_eq!(out, None);
        // (The paused clock rounds each timer up to its millisecond.)
        let waited = start.elapsed();
        assert!(
            waited >= GRACE && waited < GRACE + Duration::from_millis(10),
            "{waited:?}"
        );
    }

    #[tokio::test]
    async fn the_grace_runs_from_when_the_socket_goes() {
        let (close, closed) = tokio::sync::oneshot::channel::<()>();
        let addr = silent_server(async {
            let _ = closed.await;
        })
        .await;
        let (client, req, mut watch) = watched_request(addr);
        let sending = tokio::spawn(async move {
            let _ = client.request(req).await;
        });
        let given = tokio::time::timeout(
            Duration::from_secs(5),
            watch.0.wait_for_connection_metadata(),
        )
        .await
        .expect("hyper-util gives the request a connection")
        .is_some();
        assert!(given);
        let Given::Socket(socket) = watch.given() else {
            panic!("the request was given a watched socket");
        };
        tokio::time::pause();
        // Polled by hand: a timer of its own would wake it as the clock
        // moves on.
        let mut watching = Box::pin(unless_stranded(std::future::pending::<()>(), watch));
        let woken = Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        assert!(
            watching
                .as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
        tokio::time::advance(GRACE * 5).await;
        assert!(
            !woken.0.load(Ordering::SeqCst),
            "a timer ran while the request's socket was still there"
        );
        close.send(()).expect("the server waits");
        socket.token.cancelled().await;
        let gone = tokio::time::Instant::now();
        assert_eq!(watching.await, None);
        let waited = gone.elapsed();
        assert!(
            waited >= GRACE && waited < GRACE + Duration::from_millis(10),
            "{waited:?}"
        );
        sending.abort();
    }

    /// A waker that records that it was woken.
    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_request_moved_to_another_socket_stops_the_wait_on_the_first() {
        let socket = CancellationToken::new();
        let moved = std::sync::atomic::AtomicBool::new(false);
        let looks = std::sync::atomic::AtomicUsize::new(0);
        let still_on = || {
            looks.fetch_add(1, Ordering::SeqCst);
            !moved.load(Ordering::SeqCst)
        };
        let mut waiting = Box::pin(gone_or_moved(&socket, still_on));
        let woken = Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(
            looks.load(Ordering::SeqCst),
            0,
            "the first poll looked again"
        );
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        assert_eq!(looks.load(Ordering::SeqCst), 1);
        // hyper-util gave the request another connection; the first socket lives on.
        moved.store(true, Ordering::SeqCst);
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(false));
        // A socket that goes ends the wait, and wakes it.
        let mut waiting = Box::pin(gone_or_moved(&socket, || true));
        assert!(waiting.as_mut().poll(&mut cx).is_pending());
        socket.cancel();
        assert!(woken.0.load(Ordering::SeqCst));
        assert_eq!(waiting.as_mut().poll(&mut cx), Poll::Ready(true));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_request_is_not_stranded() {
        let mut req = Request::new(());
        let watch = Watch::on(&mut req);
        assert_eq!(unless_stranded(async { 7 }, watch).await, Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_a_socket_is_never_stranded() {
        let mut req = Request::new(());
        let watch = Watch::on(&mut req);
        let waited = tokio::time::timeout(
            GRACE * 10,
            unless_stranded(std::future::pending::<()>(), watch),
        )
        .await;
        assert!(waited.is_err(), "only the request's own timeout ends it");
    }
}
