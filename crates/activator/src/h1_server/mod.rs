//! The HTTP/1 fast path: a client connection's plain requests read, proxied
//! and answered here, without hyper's server; anything else hands the
//! connection to hyper's server, which then keeps it.
//!
//! Why: after the pool's own codec (`http1_wire`), hyper's server side was
//! the largest share of the activator's user-space instructions per request
//! left (its dispatcher, the `Incoming` body, a header-read timer allocated
//! per request, the response encoder: about 10,000 of 27,400 instructions
//! per request, `callgrind` at c=16 against `hello`), where nginx spends
//! about 17,300 in all.
//!
//! Plain means what nearly all traffic is: a whole HTTP/1.1 head in the
//! buffer, origin form, no body, no upgrade, expectation or connection
//! option ([`request_head`]). Anything else, a malformed head included,
//! is left unread in the buffer and handed over with the socket
//! ([`Ended::HandOver`]); hyper then reads it first, as if it had read it
//! itself, so its answers (400, 431, bodies, upgrades, HTTP/1.0) are
//! unchanged. The request itself goes through [`Proxy::handle`], the same
//! as hyper's requests; its response is written here ([`response_head`]).
//!
//! What hyper's server did around a request is done here too:
//! - the header read timeout, from the moment the connection waits for a
//!   request, idle keep-alive included (one timer per connection, re-armed
//!   only when it fires early, see [`crate::kept_timer`]; likewise the
//!   timer the proxy waits for a pod's answer on);
//! - a client that closes while its request is in flight ends it (the
//!   ticket is dropped: a parked request leaves its queue);
//! - the drain: an idle connection closes at once, a busy one after its
//!   response;
//! - the response's head and the body bytes at hand go out in one write.

pub mod request_head;
pub mod response_head;
mod rewind;

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use http_body_util::BodyExt as _;
use hyper::body::Body as _;
use tokio::io::{AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::time::{Instant, Sleep};

use crate::body::ProxyBody;
use crate::index::LookupCache;
use crate::kept_timer;
use crate::proxy::{self, Proxy};
use request_head::Taken;
use response_head::{BodySize, Framing};
pub use rewind::Rewind;

/// What a read asks the socket for: a request head comes in one read
/// (hyper's server reads 8 KiB at first too).
const READ_SIZE: usize = 8192;

/// The end of a chunked body, with no trailers.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The limits the fast path applies, as hyper's server would.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    pub header_read_timeout: Duration,
    pub max_request_headers: usize,
}

/// How a connection left the fast path.
pub enum Ended {
    /// Closed: the client left, the response closed it, a timeout or the
    /// drain.
    Closed,
    /// A request the fast path does not serve: the socket, and the bytes
    /// read from it that hyper must read first.
    HandOver(TcpStream, BytesMut),
}

/// Serves a connection's plain requests until it ends or a request is not
/// plain. `draining` says the activator is shutting down.
pub async fn serve(
    mut stream: TcpStream,
    remote: SocketAddr,
    proxy: &Proxy,
    cache: &LookupCache,
    settings: Settings,
    draining: impl Fn() -> bool,
) -> Ended {
    let mut buf = BytesMut::new();
    let mut head = Vec::new();
    let idle = tokio::time::sleep(settings.header_read_timeout);
    tokio::pin!(idle);
    // Each request's deadline, for the proxy's wait on the pod (see
    // `Proxy::handle`): reset by each request to its own.
    let deadline = tokio::time::sleep(settings.header_read_timeout);
    tokio::pin!(deadline);
    loop {
        // The header read timeout runs from here, as hyper's runs from when
        // it starts on a head: on the connection's timer, re-armed only
        // when it fires before this deadline (see `kept_timer`).
        let read_by = Instant::now() + settings.header_read_timeout;
        let req = loop {
            let taken = if buf.is_empty() {
                Taken::Partial
            } else {
                request_head::take(&mut buf, settings.max_request_headers)
            };
            match taken {
                Taken::Plain(req) => break req,
                // Nothing yet, or a head in more than one read (a long one,
                // over a real network): read on while it fits in a read
                // buffer.
                Taken::Partial if buf.len() < READ_SIZE => {
                    // hyper's server closes a head the header read timeout
                    // cut short without an answer, and so does this.
                    if !next_bytes(&mut stream, &mut buf, idle.as_mut(), read_by, &draining).await {
                        return Ended::Closed;
                    }
                }
                Taken::Partial | Taken::Other => return Ended::HandOver(stream, buf),
            }
        };
        let keep_alive = {
            let (mut rd, mut wr) = stream.split();
            // Pinned where they are made, and polled in order (the
            // exchange first): the exchange holds the proxy's future, a
            // few KiB that `select!` would move once more per request.
            let mut exchange = std::pin::pin!(async {
                let resp = proxy
                    .handle(cache, remote, req, Some(deadline.as_mut()))
                    .await;
                // Taken apart here and lent: moved into the writer's
                // future, the response would be copied twice more.
                let (parts, mut body) = resp.into_parts();
                // The drain began while the pod answered: the head says
                // the connection closes after it, as hyper's server says.
                write_response(&mut wr, parts, &mut body, &mut head, draining()).await
            });
            let mut gone = std::pin::pin!(client_gone(&mut rd, &mut buf));
            poll_fn(|cx| {
                if let Poll::Ready(keep_alive) = exchange.as_mut().poll(cx) {
                    return Poll::Ready(keep_alive);
                }
                match gone.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(false),
                    Poll::Pending => Poll::Pending,
                }
            })
            .await
        };
        if !keep_alive || draining() {
            return Ended::Closed;
        }
    }
}

/// Reads the next bytes of a request into `buf`: false when the client
/// closed, the header read timeout passed, or the drain began while the
/// connection had no request started (one that arrived is read and served,
/// as hyper's server serves a request it has begun to read).
async fn next_bytes(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    mut idle: Pin<&mut Sleep>,
    read_by: Instant,
    draining: &impl Fn() -> bool,
) -> bool {
    buf.reserve(READ_SIZE);
    let started = !buf.is_empty();
    poll_fn(|cx| {
        match tokio_util::io::poll_read_buf(Pin::new(&mut *stream), cx, buf) {
            Poll::Ready(Ok(n)) => return Poll::Ready(n > 0),
            Poll::Ready(Err(_)) => return Poll::Ready(false),
            Poll::Pending => {}
        }
        if !started && draining() {
            return Poll::Ready(false);
        }
        if kept_timer::poll_until(idle.as_mut(), read_by, cx).is_ready() {
            return Poll::Ready(false);
        }
        Poll::Pending
    })
    .await
}

/// Resolves when the client closes (or its socket fails) while a request
/// is in flight, as hyper's server notices. Bytes of a next request are
/// kept in `buf`, after which it stops reading, as hyper does.
async fn client_gone(rd: &mut ReadHalf<'_>, buf: &mut BytesMut) {
    if buf.is_empty() {
        match rd.read_buf(buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
    std::future::pending::<()>().await
}

/// Writes the response, streaming its body; true when the connection may
/// carry another request.
async fn write_response(
    wr: &mut WriteHalf<'_>,
    parts: http::response::Parts,
    body: &mut ProxyBody,
    head: &mut Vec<u8>,
    closing: bool,
) -> bool {
    head.clear();
    let size = BodySize::of(&body);
    let encoded = with_date(|date| match body.pod_fields() {
        Some(fields) => {
            let fields = proxy::end_to_end(fields);
            response_head::encode(&parts, fields, size, closing, date, head)
        }
        None => {
            let fields = parts
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
            response_head::encode(&parts, fields, size, closing, date, head)
        }
    });
    drop(parts);
    let encoded = match encoded {
        Ok(encoded) => encoded,
        Err(e) => {
            tracing::debug!(error = e.0, "response not written: closing the connection");
            return false;
        }
    };
    let mut left = match encoded.framing {
        Framing::Length(n) => n,
        Framing::Chunked | Framing::UntilClose => 0,
    };
    // The head waits for the body bytes already at hand, to go out with
    // them in one write.
    let mut unsent_head = true;
    loop {
        let frame = if unsent_head {
            match poll_fn(|cx| Poll::Ready(Pin::new(&mut *body).poll_frame(cx))).await {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    if write_all(wr, &mut [IoSlice::new(head)]).await.is_err() {
                        return false;
                    }
                    unsent_head = false;
                    body.frame().await
                }
            }
        } else {
            body.frame().await
        };
        let at_head: &[u8] = if unsent_head { head } else { &[] };
        let data = match frame {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => data,
                // Trailers: hyper's server writes none unless the response
                // declares them, and `Trailer` is hop-by-hop.
                Err(_) => continue,
            },
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed: closing the connection");
                return false;
            }
            None => {
                let end: &[u8] = match encoded.framing {
                    Framing::Chunked => LAST_CHUNK,
                    _ => &[],
                };
                if (!at_head.is_empty() || !end.is_empty())
                    && write_all(wr, &mut [IoSlice::new(at_head), IoSlice::new(end)])
                        .await
                        .is_err()
                {
                    return false;
                }
                return left == 0 && !encoded.close;
            }
        };
        if data.is_empty() {
            continue;
        }
        if let Framing::Length(_) = encoded.framing {
            let Some(rest) = left.checked_sub(data.len() as u64) else {
                tracing::debug!("response body longer than its length: closing the connection");
                return false;
            };
            left = rest;
        }
        // The body's end is taken before its last bytes are written, as
        // hyper's server does: the request is counted (its ticket ends)
        // before the client can have its answer. A body whose length is
        // all written is done with, as hyper's is, whether or not it has
        // said so yet (an h2c pod's END_STREAM may come after its data).
        let last = if let (Framing::Length(_), 0) = (encoded.framing, left) {
            if !matches!(end_now(body), BodyEnd::Now) {
                *body = ProxyBody::empty();
            }
            true
        } else if body.is_end_stream() {
            match end_now(body) {
                BodyEnd::Now => true,
                BodyEnd::Later => false,
                BodyEnd::Broken => return false,
            }
        } else {
            false
        };
        let mut line = [0u8; 18];
        let (prefix, suffix): (&[u8], &[u8]) = match encoded.framing {
            Framing::Length(_) | Framing::UntilClose => (&[], &[]),
            // A body that ends with this chunk ends in the same write.
            Framing::Chunked => (
                response_head::chunk_size_line(data.len(), &mut line),
                if last { b"\r\n0\r\n\r\n" } else { b"\r\n" },
            ),
        };
        let parts = &mut [
            IoSlice::new(at_head),
            IoSlice::new(prefix),
            IoSlice::new(&data),
            IoSlice::new(suffix),
        ];
        if write_all(wr, parts).await.is_err() {
            return false;
        }
        if last {
            return left == 0 && !encoded.close;
        }
        unsent_head = false;
    }
}

/// Whether a body that says it is at its end gives its end at once.
enum BodyEnd {
    Now,
    Later,
    /// More data after all, or an error: the response cannot be finished.
    Broken,
}

fn end_now(body: &mut ProxyBody) -> BodyEnd {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    match Pin::new(&mut *body).poll_frame(&mut cx) {
        Poll::Ready(None) => BodyEnd::Now,
        // Trailers: not written (see above); the end follows them.
        Poll::Ready(Some(Ok(frame))) if frame.is_trailers() => end_now(body),
        Poll::Ready(Some(_)) => BodyEnd::Broken,
        Poll::Pending => BodyEnd::Later,
    }
}

/// Writes every byte of `parts`, in as few writes as the socket takes.
async fn write_all(w: &mut (impl AsyncWrite + Unpin), parts: &mut [IoSlice<'_>]) -> io::Result<()> {
    let mut parts = parts;
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = w.write_vectored(parts).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    Ok(())
}

/// The `Date` value of this second, made once a second per thread (as
/// hyper's server caches it).
fn with_date<R>(f: impl FnOnce(&[u8]) -> R) -> R {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with(|d| {
        let mut d = d.borrow_mut();
        if d.0 != secs {
            *d = (secs, httpdate::fmt_http_date(now));
        }
        f(d.1.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncReadExt as _;
    use tokio::net::TcpListener;

    use super::*;

    const GET_A: &[u8] = b"GET /a HTTP/1.1\r\nHost: a.ns.siesta.local\r\n\r\n";
    const GET_B: &[u8] = b"GET /b HTTP/1.1\r\nHost: b.ns.siesta.local\r\n\r\n";
    const POST: &[u8] =
        b"POST /c HTTP/1.1\r\nHost: c.ns.siesta.local\r\nContent-Length: 2\r\n\r\nhi";

    /// The fast path on one side of a loopback connection, with a proxy
    /// that knows no function (every request is answered 404 by the
    /// proxy itself); the client's side is returned with the outcome.
    async fn serving(
        timeout: Duration,
        draining: impl Fn() -> bool + Send + Sync + 'static,
    ) -> (TcpStream, tokio::task::JoinHandle<Ended>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, remote) = listener.accept().await.unwrap();
        let settings = Settings {
            header_read_timeout: timeout,
            max_request_headers: 100,
        };
        let ended = tokio::spawn(async move {
            let proxy = Proxy::for_tests(65536);
            let cache = LookupCache::default();
            serve(server, remote, &proxy, &cache, settings, draining).await
        });
        (client, ended)
    }

    /// Reads whole 404 responses of the proxy's until `n` have come.
    async fn read_404s(client: &mut TcpStream, n: usize) -> String {
        let mut text = String::new();
        let mut buf = [0u8; 4096];
        while text.matches("HTTP/1.1 404 Not Found\r\n").count() < n || !text.ends_with("found\n") {
            let got = client.read(&mut buf).await.unwrap();
            assert!(got > 0, "closed after {text:?}");
            text.push_str(std::str::from_utf8(&buf[..got]).unwrap());
        }
        text
    }

    #[tokio::test]
    async fn pipelined_plain_requests_are_answered_in_order_on_a_kept_connection() {
        let (mut client, ended) = serving(Duration::from_secs(30), || false).await;
        client.write_all(&[GET_A, GET_B].concat()).await.unwrap();
        let text = read_404s(&mut client, 2).await;
        let a = text.find("function ns/a not found").expect("a answered");
        let b = text.find("function ns/b not found").expect("b answered");
        assert!(a < b, "{text}");
        assert!(
            text.contains("content-type: text/plain; charset=utf-8\r\n"),
            "{text}"
        );
        assert!(text.contains("content-length: 24\r\n"), "{text}");
        assert!(text.contains("\r\ndate: "), "{text}");
        // Still open: a third request on the same connection is answered.
        client.write_all(GET_A).await.unwrap();
        read_404s(&mut client, 1).await;
        drop(client);
        assert!(matches!(ended.await.unwrap(), Ended::Closed));
    }

    #[tokio::test]
    async fn a_request_with_a_body_hands_the_connection_over_with_its_bytes_unread() {
        let (mut client, ended) = serving(Duration::from_secs(30), || false).await;
        client.write_all(&[GET_A, POST].concat()).await.unwrap();
        read_404s(&mut client, 1).await;
        match ended.await.unwrap() {
            Ended::HandOver(_, read) => assert_eq!(&read[..], POST),
            Ended::Closed => panic!("closed instead of handing over"),
        }
    }

    #[tokio::test]
    async fn a_head_that_comes_in_two_reads_is_still_served_here() {
        let (mut client, ended) = serving(Duration::from_secs(30), || false).await;
        let (first, rest) = GET_A.split_at(20);
        client.write_all(first).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        client.write_all(rest).await.unwrap();
        read_404s(&mut client, 1).await;
        drop(client);
        assert!(matches!(ended.await.unwrap(), Ended::Closed), "handed over");
    }

    #[tokio::test]
    async fn a_head_cut_short_by_the_header_read_timeout_is_closed_unanswered() {
        // As hyper 1's server: the timeout ends the connection, no 408.
        let (mut client, ended) = serving(Duration::from_millis(200), || false).await;
        client.write_all(&GET_A[..20]).await.unwrap();
        assert!(matches!(ended.await.unwrap(), Ended::Closed));
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        assert!(all.is_empty(), "{:?}", String::from_utf8_lossy(&all));
    }

    #[tokio::test]
    async fn an_idle_connection_closes_at_the_header_read_timeout() {
        let (mut client, ended) = serving(Duration::from_millis(200), || false).await;
        client.write_all(GET_A).await.unwrap();
        read_404s(&mut client, 1).await;
        let idle = Instant::now();
        assert!(matches!(ended.await.unwrap(), Ended::Closed));
        assert!(
            idle.elapsed() >= Duration::from_millis(150),
            "{:?}",
            idle.elapsed()
        );
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    }

    #[tokio::test]
    async fn the_drain_closes_a_busy_connection_after_its_response_and_an_idle_one_at_once_and_serves_what_arrived()
     {
        // The drain begins while the first request is in hand: the flag is
        // read as the connection waits for it, then after its response.
        let reads = Arc::new(AtomicUsize::new(0));
        let seen = reads.clone();
        let (mut client, ended) = serving(Duration::from_secs(30), move || {
            seen.fetch_add(1, Ordering::Relaxed) >= 1
        })
        .await;
        client.write_all(GET_A).await.unwrap();
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8(all).unwrap();
        assert!(matches!(ended.await.unwrap(), Ended::Closed));
        assert_eq!(text.matches("HTTP/1.1 404").count(), 1, "{text}");
        assert_eq!(reads.load(Ordering::Relaxed), 2);

        // Idle when the drain begins: closed at once.
        let (mut client, ended) = serving(Duration::from_secs(30), || true).await;
        assert!(matches!(ended.await.unwrap(), Ended::Closed));
        let mut buf = [0u8; 64];
        assert!(matches!(client.read(&mut buf).await, Ok(0) | Err(_)));

        // A request that had arrived when the drain began is served first.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        client.write_all(GET_A).await.unwrap();
        let (server, remote) = listener.accept().await.unwrap();
        // The bytes are there before the fast path first looks.
        while server.peek(&mut [0u8; 1]).await.unwrap() == 0 {}
        let settings = Settings {
            header_read_timeout: Duration::from_secs(30),
            max_request_headers: 100,
        };
        let proxy = Proxy::for_tests(65536);
        let cache = LookupCache::default();
        let ended = serve(server, remote, &proxy, &cache, settings, || true).await;
        assert!(matches!(ended, Ended::Closed));
        let mut all = Vec::new();
        client.read_to_end(&mut all).await.unwrap();
        let text = String::from_utf8(all).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\n"), "{text}");
        assert!(text.contains("\r\nconnection: close\r\n"), "{text}");
    }
}
