//! Test support: the activator in-process, small hyper backends, a fake
//! controller, and a client. Everything talks real HTTP over loopback.
#![allow(dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use siesta_activator::index::FunctionConfig;
use siesta_activator::route::FunctionKey;
use siesta_activator::{Activator, Config, Control};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

pub type Body = BoxBody<Bytes, Infallible>;

pub fn full(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).boxed()
}

pub fn empty() -> Body {
    Empty::new().boxed()
}

/// A body of `total` bytes sent in 64 KiB chunks, produced lazily.
pub fn generated(total: usize) -> Body {
    const CHUNK: usize = 64 * 1024;
    let chunk = Bytes::from(vec![b'x'; CHUNK]);
    let s = futures::stream::unfold(total, move |left| {
        let chunk = chunk.clone();
        async move {
            if left == 0 {
                return None;
            }
            let n = left.min(CHUNK);
            Some((Ok::<_, Infallible>(Frame::data(chunk.slice(..n))), left - n))
        }
    });
    BodyExt::boxed(StreamBody::new(s))
}

/// The activator running in this process.
pub struct Harness {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    pub control: Control,
    shutdown: Option<oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    pub async fn start(config: Config) -> Harness {
        let activator = Activator::bind(config).await.unwrap();
        let addr = activator.listen_addr().unwrap();
        let admin = activator.admin_addr().unwrap();
        let control = activator.control();
        control.mark_synced();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(activator.serve(async move {
            let _ = rx.await;
        }));
        Harness {
            addr,
            admin,
            control,
            shutdown: Some(tx),
            task,
        }
    }

    pub async fn default() -> Harness {
        Self::start(Config::loopback()).await
    }

    pub fn shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Adds a function with `config` and these pods, and waits until every
    /// pod has been probed.
    pub async fn function(
        &self,
        name: &str,
        config: FunctionConfig,
        pods: &[SocketAddr],
    ) -> FunctionKey {
        let key = FunctionKey::new("ns", name);
        self.control.apply_function(key.clone(), config);
        self.set_pods(&key, pods).await;
        key
    }

    pub async fn set_pods(&self, key: &FunctionKey, pods: &[SocketAddr]) {
        self.control.set_endpoints(key, pods);
        let entry = self.control.index().get(key).unwrap();
        for _ in 0..500 {
            if entry.endpoints() == pods.len() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("pods of {key} were not probed in time");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub async fn metrics(&self) -> String {
        let (_, _, body) = send(
            Request::get(format!("http://{}/metrics", self.admin))
                .body(empty())
                .unwrap(),
        )
        .await;
        body
    }

    pub async fn readyz(&self) -> StatusCode {
        send(
            Request::get(format!("http://{}/readyz", self.admin))
                .body(empty())
                .unwrap(),
        )
        .await
        .0
    }
}

/// The value of one sample line in Prometheus text, e.g.
/// `siesta_activator_requests_total{code="200",function="f",namespace="ns"}`.
// Not every test binary reads metrics.
#[allow(unused_imports)]
pub use siesta_testkit::metrics_text::sample;

pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2_client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// Sends a request and reads the whole answer.
pub async fn send(req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    try_send(req).await.unwrap()
}

/// Like [`send`], for a request that may be cut: the error, if any.
pub async fn try_send(req: Request<Body>) -> Result<(StatusCode, http::HeaderMap, String), String> {
    let resp = client().request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, headers, String::from_utf8_lossy(&body).into_owned()))
}

pub fn get(h: &Harness, host: &str, path: &str) -> Request<Body> {
    Request::get(h.url(path))
        .header("host", host)
        .body(empty())
        .unwrap()
}

/// Starts a backend that answers with `handler`; serves HTTP/1.1 and h2c
/// unless `h2_only`.
pub async fn backend<F, Fut>(h2_only: bool, handler: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Body>> + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    if h2_only {
        builder = builder.http2_only();
    }
    siesta_testkit::backend::serve_with(builder, handler).await
}

/// Echo backend. `/headers` answers with the request line and headers as
/// text; `/sleep/MS` waits then answers; `/count` reads the body and answers
/// its length; `/stream/N` answers N generated bytes; `/echo` streams the
/// request body back; anything else answers the method, path and version.
pub async fn echo() -> SocketAddr {
    backend(false, echo_handler).await
}

pub async fn echo_handler(req: Request<Incoming>) -> Response<Body> {
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    if path.starts_with("/headers") {
        let mut s = format!("{} {}\n", req.method(), path);
        for (k, v) in req.headers() {
            s.push_str(&format!("{}: {}\n", k, v.to_str().unwrap_or("?")));
        }
        return Response::new(full(s));
    }
    if let Some(ms) = path.strip_prefix("/sleep/") {
        let ms: u64 = ms.parse().unwrap_or(0);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return Response::new(full("slept"));
    }
    if path == "/count" {
        let mut body = req.into_body();
        let mut n = 0usize;
        while let Some(f) = body.frame().await {
            if let Ok(d) = f.unwrap().into_data() {
                n += d.len();
            }
        }
        return Response::new(full(n.to_string()));
    }
    if let Some(n) = path.strip_prefix("/stream/") {
        return Response::new(generated(n.parse().unwrap_or(0)));
    }
    if path == "/echo" {
        let body = req.into_body().map_err(|_| unreachable!()).boxed();
        // Errors of the client body end the response; tests never send any.
        return Response::new(body);
    }
    Response::new(full(format!(
        "{} {} {:?}",
        req.method(),
        path,
        req.version()
    )))
}

/// A backend that counts in-flight requests and remembers the most at once;
/// each request takes `delay`. Answers with the `x-seq` header it got.
pub struct Counting {
    pub addr: SocketAddr,
    pub max: Arc<AtomicUsize>,
    pub total: Arc<AtomicUsize>,
    pub order: Arc<Mutex<Vec<String>>>,
}

pub async fn counting(delay: Duration) -> Counting {
    let now = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let total = Arc::new(AtomicUsize::new(0));
    let order = Arc::new(Mutex::new(Vec::new()));
    let (n2, m2, t2, o2) = (now.clone(), max.clone(), total.clone(), order.clone());
    let addr = backend(false, move |req: Request<Incoming>| {
        let (now, max, total, order) = (n2.clone(), m2.clone(), t2.clone(), o2.clone());
        async move {
            let seq = req
                .headers()
                .get("x-seq")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            order.lock().unwrap().push(seq.clone());
            let cur = now.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(cur, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            now.fetch_sub(1, Ordering::SeqCst);
            total.fetch_add(1, Ordering::SeqCst);
            Response::new(full(seq))
        }
    })
    .await;
    Counting {
        addr,
        max,
        total,
        order,
    }
}

/// A WebSocket echo server (plain TCP, tungstenite handshake).
pub async fn websocket_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return; // the activator's probe connects and leaves
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if msg.is_text() || msg.is_binary() {
                        if futures::SinkExt::send(&mut ws, msg).await.is_err() {
                            return;
                        }
                    } else if msg.is_close() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A fake controller: records each activation path and answers 202.
pub async fn fake_controller() -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = backend(false, move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(format!("{} {}", req.method(), req.uri().path()));
            let mut r = Response::new(empty());
            *r.status_mut() = StatusCode::ACCEPTED;
            r
        }
    })
    .await;
    (format!("http://{addr}"), rx)
}

/// A fake controller that refuses every activation with 409 and `reason`
/// as the body, as the real one does for a Function whose Deployment is not
/// Siesta's; records each activation path.
pub async fn refusing_controller(
    reason: &'static str,
) -> (String, mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let addr = backend(false, move |req: Request<Incoming>| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(format!("{} {}", req.method(), req.uri().path()));
            let mut r = Response::new(full(reason));
            *r.status_mut() = StatusCode::CONFLICT;
            r
        }
    })
    .await;
    (format!("http://{addr}"), rx)
}

/// Reads VmRSS or VmHWM of this process, in KiB.
pub fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}
