//! What a failed send to a pod means, and whether the request may go again.
//!
//! Servers close connections on purpose: an h2c server recycles a connection
//! after N requests with a GOAWAY (NO_ERROR) and refuses the streams above
//! its last processed one; an HTTP/1 server closes a keep-alive connection
//! after N requests or a short idle time, and a request that went out on it
//! just then finds it closed. None of that is the pod's failure, and the
//! client must not see it. The rules, after RFC 9113 §6.8 / §8.7 and RFC 9110
//! §9.2.2 (and what Go's `net/http` transport and nginx do for HTTP/1):
//!
//! - the pod said it never processed the request (GOAWAY above the stream,
//!   REFUSED_STREAM), or the connection closed before the request was
//!   written: send it again, any method, on a new connection to the same pod;
//! - the connection closed or was reset after the request went out and
//!   before any response byte: the pod may have processed it, so only an
//!   idempotent request (GET, HEAD, PUT, DELETE, OPTIONS, TRACE, or one with
//!   an `Idempotency-Key`) is sent again;
//! - the connect failed: another pod, if there is one;
//! - a body is sent again only while the replay log holds all of it
//!   ([`crate::request_body`]); otherwise the client gets a 502 that says so.
//!
//! Pure: the error is classified by walking its source chain.

use std::error::Error as _;

use crate::http1_pool::SendError;
use crate::http1_wire::HeadError;

/// Most sends of one request (the first included).
pub const MAX_ATTEMPTS: u32 = 4;

/// Why a send to a pod failed, as far as a replay is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made.
    Connect,
    /// The pod did not process the request: GOAWAY (NO_ERROR) above its last
    /// stream, or REFUSED_STREAM.
    NotProcessed,
    /// The request was never written: its connection's socket was gone (an
    /// HTTP/2 request stranded on it, see [`crate::stranded`], or an HTTP/1
    /// write that failed before its first byte).
    Stranded,
    /// The connection closed or was reset before any response byte, after the
    /// request went out.
    Closed,
    /// The response head was refused as too large: more header fields than
    /// `--max-response-headers`, or over the client's read buffer (hyper's
    /// ~400 KiB). It would be the same on any pod.
    HeadTooLarge,
    /// The response was not valid HTTP.
    BadResponse,
    /// Anything else (a protocol error, a stream reset with an error code).
    Other,
}

impl Failure {
    /// The bounded label of the replay metric.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect_failed",
            Failure::NotProcessed => "not_processed",
            Failure::Stranded => "stranded",
            Failure::Closed => "connection_closed",
            Failure::HeadTooLarge => "head_too_large",
            Failure::BadResponse => "bad_response",
            Failure::Other => "other",
        }
    }
}

/// Classifies an error of hyper-util's client (h2c, upgrades).
pub fn classify(e: &hyper_util::client::legacy::Error) -> Failure {
    if e.is_connect() {
        return Failure::Connect;
    }
    classify_chain(e.source())
}

/// Classifies an error of an HTTP/1 connection of [`crate::http1_pool`].
pub fn classify_http1(e: &SendError) -> Failure {
    match e {
        SendError::Connect(_) => Failure::Connect,
        // The socket was gone before a byte went out, and the pool's other
        // connections to the pod may be too (it restarted): a new one.
        SendError::NotSent(_) => Failure::Stranded,
        SendError::Closed(io) => classify_io(io),
        SendError::Head(HeadError::TooLarge) => Failure::HeadTooLarge,
        SendError::Head(HeadError::Invalid(_)) => Failure::BadResponse,
        SendError::Body(_) => Failure::Other,
    }
}

fn classify_io(io: &std::io::Error) -> Failure {
    use std::io::ErrorKind::*;
    match io.kind() {
        UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => Failure::Closed,
        _ => Failure::Other,
    }
}

/// The first error in the chain from `source` on that says what happened.
fn classify_chain(mut source: Option<&(dyn std::error::Error + 'static)>) -> Failure {
    while let Some(s) = source {
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            return classify_h2(h2);
        }
        if let Some(hy) = s.downcast_ref::<hyper::Error>() {
            if hy.is_canceled() {
                // Queued on a connection that closed before writing it.
                return Failure::NotProcessed;
            }
            if hy.is_incomplete_message() {
                return Failure::Closed;
            }
            if hy.is_parse_too_large() {
                return Failure::HeadTooLarge;
            }
            if hy.is_parse() || hy.is_parse_status() {
                return Failure::BadResponse;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return classify_io(io);
        }
        source = s.source();
    }
    Failure::Other
}

fn classify_h2(e: &h2::Error) -> Failure {
    if e.is_remote() {
        if e.is_go_away() && e.reason() == Some(h2::Reason::NO_ERROR) {
            // h2 gives this error only to streams above the GOAWAY's last
            // stream id, and to requests started after it: unprocessed. (A
            // connection cut before finishing the streams it kept gives them
            // an io error instead, classified as Closed.)
            return Failure::NotProcessed;
        }
        if e.is_reset() && e.reason() == Some(h2::Reason::REFUSED_STREAM) {
            return Failure::NotProcessed;
        }
    }
    match e.get_io() {
        Some(io) => classify_io(io),
        None => Failure::Other,
    }
}

/// What to do after a failed send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Send again to another pod (the connect failed).
    OtherPod,
    /// Send again to the same pod; the pool gives a new connection (hyper
    /// stops using a connection after GOAWAY or a refusal).
    SamePod,
    /// Send again to the same pod on a connection opened for it: the pool
    /// may hold more connections the server closed the same way (an HTTP/1
    /// server that closes every N requests closes all of them), and four
    /// sends in a row could meet only those.
    NewConnection,
    /// Answer the client with an error.
    Fail,
}

/// The facts about the request that decide a replay.
#[derive(Clone, Copy, Debug)]
pub struct Replay {
    /// Sends so far.
    pub attempt: u32,
    /// RFC 9110 idempotent, or it carries an `Idempotency-Key`.
    pub idempotent: bool,
    /// A new send would carry the whole body.
    pub body_replayable: bool,
}

pub fn next(failure: Failure, r: Replay) -> Next {
    if r.attempt >= MAX_ATTEMPTS || !r.body_replayable {
        return Next::Fail;
    }
    match failure {
        Failure::Connect => Next::OtherPod,
        Failure::NotProcessed => Next::SamePod,
        Failure::Stranded => Next::NewConnection,
        Failure::Closed if r.idempotent => Next::NewConnection,
        Failure::Closed | Failure::HeadTooLarge | Failure::BadResponse | Failure::Other => {
            Next::Fail
        }
    }
}

/// Whether a request may be sent twice with the effect of once: its method
/// is idempotent (RFC 9110 §9.2.2), or the client marked it with an
/// `Idempotency-Key` (draft-ietf-httpapi-idempotency-key-header).
pub fn idempotent(method: &http::Method, headers: &http::HeaderMap) -> bool {
    method.is_idempotent()
        || headers.contains_key("idempotency-key")
        || headers.contains_key("x-idempotency-key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(attempt: u32, idempotent: bool, body_replayable: bool) -> Replay {
        Replay {
            attempt,
            idempotent,
            body_replayable,
        }
    }

    #[test]
    fn an_unprocessed_request_goes_again_whatever_its_method() {
        assert_eq!(
            next(Failure::NotProcessed, r(1, false, true)),
            Next::SamePod
        );
        assert_eq!(next(Failure::NotProcessed, r(1, true, true)), Next::SamePod);
    }

    #[test]
    fn a_closed_connection_replays_only_idempotent_requests_on_a_new_connection() {
        assert_eq!(next(Failure::Closed, r(1, true, true)), Next::NewConnection);
        assert_eq!(next(Failure::Closed, r(1, false, true)), Next::Fail);
    }

    #[test]
    fn a_stranded_request_goes_again_on_a_new_connection_whatever_its_method() {
        assert_eq!(
            next(Failure::Stranded, r(1, false, true)),
            Next::NewConnection
        );
        assert_eq!(
            next(Failure::Stranded, r(3, true, true)),
            Next::NewConnection
        );
    }

    #[test]
    fn a_failed_connect_tries_another_pod() {
        assert_eq!(next(Failure::Connect, r(1, false, true)), Next::OtherPod);
    }

    #[test]
    fn nothing_goes_again_without_its_whole_body_or_past_the_attempt_limit() {
        for f in [
            Failure::Connect,
            Failure::NotProcessed,
            Failure::Stranded,
            Failure::Closed,
        ] {
            assert_eq!(next(f, r(1, true, false)), Next::Fail, "{f:?}");
            assert_eq!(next(f, r(MAX_ATTEMPTS, true, true)), Next::Fail, "{f:?}");
        }
        assert_eq!(next(Failure::BadResponse, r(1, true, true)), Next::Fail);
        assert_eq!(next(Failure::HeadTooLarge, r(1, true, true)), Next::Fail);
        assert_eq!(next(Failure::Other, r(1, true, true)), Next::Fail);
    }

    #[test]
    fn idempotency_comes_from_the_method_or_the_key_header() {
        let none = http::HeaderMap::new();
        assert!(idempotent(&http::Method::GET, &none));
        assert!(idempotent(&http::Method::PUT, &none));
        assert!(idempotent(&http::Method::DELETE, &none));
        assert!(!idempotent(&http::Method::POST, &none));
        assert!(!idempotent(&http::Method::PATCH, &none));
        let mut keyed = http::HeaderMap::new();
        keyed.insert(
            "idempotency-key",
            http::HeaderValue::from_static("\"8e03\""),
        );
        assert!(idempotent(&http::Method::POST, &keyed));
    }

    #[test]
    fn h2_errors_say_whether_the_stream_was_processed() {
        let goaway: h2::Error = h2::Reason::NO_ERROR.into();
        // A locally made error is not the pod's word.
        assert_eq!(classify_h2(&goaway), Failure::Other);
        let refused: h2::Error = h2::Reason::REFUSED_STREAM.into();
        assert_eq!(classify_h2(&refused), Failure::Other);
        // The remote cases are exercised over real sockets in
        // tests/reliability/tests/upstream_lifecycle.rs.
    }

    /// A pod that answers every connection's first request with `headers`
    /// header fields.
    async fn pod(headers: usize) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let mut resp = String::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
                    for i in 1..headers {
                        resp.push_str(&format!("x-h{i}: v\r\n"));
                    }
                    resp.push_str("\r\nok");
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        addr
    }

    async fn get(
        max_headers: usize,
        addr: std::net::SocketAddr,
    ) -> Result<u16, hyper_util::client::legacy::Error> {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http1_max_headers(max_headers)
                .build_http::<http_body_util::Empty<bytes::Bytes>>();
        let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
        client.get(uri).await.map(|r| r.status().as_u16())
    }

    /// A local address nothing listens on.
    fn unused_addr() -> std::net::SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    #[tokio::test]
    async fn too_many_response_headers_are_told_apart_from_an_unreachable_pod() {
        assert_eq!(get(5, pod(5).await).await.unwrap(), 200);
        let e = get(5, pod(6).await).await.unwrap_err();
        assert_eq!(classify(&e), Failure::HeadTooLarge, "{e:?}");
        let gone = unused_addr();
        let e = get(5, gone).await.unwrap_err();
        assert_eq!(classify(&e), Failure::Connect, "{e:?}");
    }

    async fn pooled(
        max_headers: usize,
        addr: std::net::SocketAddr,
    ) -> Result<u16, crate::http1_pool::SendError> {
        let pool = crate::http1_pool::Pool::new(crate::http1_pool::Settings {
            max_idle: 1,
            idle_timeout: std::time::Duration::from_secs(30),
            connect_timeout: std::time::Duration::from_secs(2),
            max_headers,
        });
        crate::http1_pool::get(&pool, addr, false)
            .await
            .map(|r| r.status().as_u16())
    }

    /// A pod that reads a request, writes `reply` and closes.
    async fn replies(reply: &'static [u8]) -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(reply).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn the_pools_errors_are_classified_as_the_clients_are() {
        assert_eq!(pooled(5, pod(5).await).await.unwrap(), 200);
        let e = pooled(5, pod(6).await).await.unwrap_err();
        assert_eq!(classify_http1(&e), Failure::HeadTooLarge, "{e}");
        let gone = unused_addr();
        let e = pooled(5, gone).await.unwrap_err();
        assert_eq!(classify_http1(&e), Failure::Connect, "{e}");
        // A pod that reads the request and closes without a word.
        let e = pooled(5, replies(b"").await).await.unwrap_err();
        assert_eq!(classify_http1(&e), Failure::Closed, "{e}");
        // One that answers with something other than HTTP.
        let garbled = replies(b"SSH-2.0-OpenSSH\r\n\r\n").await;
        let e = pooled(5, garbled).await.unwrap_err();
        assert_eq!(classify_http1(&e), Failure::BadResponse, "{e}");
    }
}
