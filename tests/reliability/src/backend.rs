//! Small real servers and raw-socket helpers for the request-path tests:
//! a function's "pod" served by hyper on a loopback port, a pod that
//! records what it received, and a client that writes raw bytes.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The loopback server every test tier shares, here too so that these
/// tests find all their backends in one place.
pub use siesta_testkit::backend::{answering, serve};

/// Every request a [`recording_backend`] got: its target and headers.
pub type Seen = Arc<Mutex<Vec<(String, http::HeaderMap)>>>;

/// A pod that records each request's target and headers and answers 200.
pub async fn recording_backend() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let addr = serve(move |req: Request<Incoming>| {
        let seen = s2.clone();
        async move {
            seen.lock()
                .expect("lock")
                .push((req.uri().to_string(), req.headers().clone()));
            Response::new(Full::new(Bytes::from_static(b"from the function")))
        }
    })
    .await;
    (addr, seen)
}

/// Writes `bytes`, then reads until the server closes or 10 s pass;
/// returns what came back.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let _ = s.write_all(bytes).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status of an HTTP/1.1 or (to an HTTP/1.0 request) HTTP/1.0 response.
pub fn status(resp: &str) -> Option<u16> {
    resp.strip_prefix("HTTP/1.1 ")
        .or_else(|| resp.strip_prefix("HTTP/1.0 "))?
        .get(..3)?
        .parse()
        .ok()
}
