//! Example Siesta function.
//!
//! A tiny HTTP server (HTTP/1.1 and h2c on one port) used by tests, the demo
//! and benchmarks. Routes: `/`, `/pod`, `/healthz`, `/delay?ms=`, `/stream`,
//! `/echo`, `/count`, `/headers`, `/ws` (see [`route`]).
//!
//! Environment:
//! - `POD_IP` / `HOST` (default `0.0.0.0`), `PORT` (default `8080`, `0` = ephemeral);
//! - `POD_NAME` / `HOSTNAME`: reported name (default `unknown`);
//! - `HELLO_START_DELAY_MS`: sleep before binding (slow cold start);
//! - `HELLO_FAIL_AFTER_REQUESTS=N`: exit(1) once N requests have been served
//!   (`/healthz` is not counted so probes don't eat the budget).
//!
//! On SIGTERM (or SIGINT) it stops accepting, finishes in-flight requests and
//! exits 0.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Body, Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ResBody = UnsyncBoxBody<Bytes, BoxError>;

/// Upper bound for `/delay?ms=`.
const MAX_DELAY_MS: u64 = 600_000;
/// Upper bound for one `/stream` chunk (the total is unbounded).
const MAX_CHUNK_SIZE: usize = 16 * 1024 * 1024;
/// Largest WebSocket frame payload accepted.
const MAX_WS_PAYLOAD: u64 = 16 * 1024 * 1024;
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

struct State {
    pod: String,
    pod_header: HeaderValue,
    /// `HELLO_FAIL_AFTER_REQUESTS`.
    fail_after: Option<u64>,
    served: AtomicU64,
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn env_u64(name: &str) -> Option<u64> {
    let v = env_nonempty(name)?;
    match v.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("hello: ignoring invalid {name}={v:?}");
            None
        }
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("hello: fatal: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), BoxError> {
    let pod = env_nonempty("POD_NAME")
        .or_else(|| env_nonempty("HOSTNAME"))
        .unwrap_or_else(|| "unknown".to_owned());
    let pod_header =
        HeaderValue::from_str(&pod).unwrap_or_else(|_| HeaderValue::from_static("unknown"));
    let state = Arc::new(State {
        pod,
        pod_header,
        fail_after: env_u64("HELLO_FAIL_AFTER_REQUESTS"),
        served: AtomicU64::new(0),
    });

    // Register signal handlers before the (possibly long) start delay so a
    // SIGTERM during it is not fatal-by-default.
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    if let Some(ms) = env_u64("HELLO_START_DELAY_MS").filter(|ms| *ms > 0) {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
            _ = sigterm.recv() => { eprintln!("hello exit"); return Ok(()); }
            _ = sigint.recv() => { eprintln!("hello exit"); return Ok(()); }
        }
    }

    let host = env_nonempty("POD_IP")
        .or_else(|| env_nonempty("HOST"))
        .unwrap_or_else(|| "0.0.0.0".to_owned());
    let port: u16 = match env_nonempty("PORT") {
        Some(p) => p
            .trim()
            .parse()
            .map_err(|_| format!("invalid PORT {p:?}"))?,
        None => 8080,
    };
    // `(host, port)` handles IPv6 literals without brackets and host names.
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let listener = TcpListener::bind((host, port))
        .await
        .map_err(|e| format!("bind {host}:{port}: {e}"))?;
    eprintln!("hello listening on {}", listener.local_addr()?);

    let builder = auto::Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();

    loop {
        let (stream, _peer) = tokio::select! {
            res = listener.accept() => match res {
                Ok(conn) => conn,
                Err(e) => {
                    // e.g. EMFILE: back off briefly instead of spinning.
                    eprintln!("hello: accept error: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let svc = service_fn(move |req| handle(state.clone(), req));
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            // Client resets etc. are not interesting for an example server.
            let _ = conn.await;
        });
    }

    eprintln!("hello draining");
    drop(listener);
    graceful.shutdown().await;
    eprintln!("hello exit");
    Ok(())
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<ResBody>, Infallible> {
    let counted = req.uri().path() != "/healthz";
    let mut res = route(&state, req).await;
    res.headers_mut()
        .insert("x-pod-name", state.pod_header.clone());

    if counted && let Some(limit) = state.fail_after {
        let n = state.served.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= limit {
            // Exit once this response's body has been handed to hyper (or
            // dropped), leaving a moment for the bytes to reach the socket.
            let (parts, body) = res.into_parts();
            let body = ExitOnDrop { inner: body };
            return Ok(Response::from_parts(parts, UnsyncBoxBody::new(body)));
        }
    }
    Ok(res)
}

/// Body wrapper that terminates the process (exit 1) shortly after it is
/// dropped; used for `HELLO_FAIL_AFTER_REQUESTS`.
struct ExitOnDrop {
    inner: ResBody,
}

impl Body for ExitOnDrop {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for ExitOnDrop {
    fn drop(&mut self) {
        eprintln!("hello: HELLO_FAIL_AFTER_REQUESTS reached, exiting with status 1");
        let exit = || {
            std::thread::sleep(Duration::from_millis(100));
            std::process::exit(1);
        };
        std::thread::spawn(exit);
    }
}

fn full(body: impl Into<Bytes>) -> ResBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<ResBody> {
    let mut res = Response::new(full(body));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

fn bad_request(msg: impl std::fmt::Display) -> Response<ResBody> {
    text(StatusCode::BAD_REQUEST, format!("bad request: {msg}\n"))
}

/// Parses the numeric query parameter `key`; `Ok(None)` when absent.
fn query_num<T: std::str::FromStr>(query: Option<&str>, key: &str) -> Result<Option<T>, String> {
    let Some(query) = query else {
        return Ok(None);
    };
    let mut found = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == key {
            let n = v
                .parse::<T>()
                .map_err(|_| format!("invalid value for {key}: {v:?}"))?;
            found = Some(n);
        }
    }
    Ok(found)
}

async fn route(state: &State, req: Request<Incoming>) -> Response<ResBody> {
    let path = req.uri().path();
    let query = req.uri().query();
    let method = req.method();
    match (method, path) {
        (&Method::GET | &Method::HEAD, "/") => {
            text(StatusCode::OK, format!("hello from {}\n", state.pod))
        }
        (&Method::GET | &Method::HEAD, "/pod") => text(StatusCode::OK, format!("{}\n", state.pod)),
        (&Method::GET | &Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/delay") => {
            let ms = match query_num::<u64>(query, "ms") {
                Ok(Some(ms)) => ms.min(MAX_DELAY_MS),
                Ok(None) => return bad_request("missing ms"),
                Err(e) => return bad_request(e),
            };
            tokio::time::sleep(Duration::from_millis(ms)).await;
            text(StatusCode::OK, format!("slept {ms} ms\n"))
        }
        (&Method::GET, "/stream") => stream(query),
        (&Method::POST | &Method::PUT, "/echo") => {
            let mut res = Response::new(req.into_body().map_err(BoxError::from).boxed_unsync());
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            res
        }
        (&Method::POST | &Method::PUT, "/count") => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(frame) => {
                        if let Some(data) = frame.data_ref() {
                            n += data.len() as u64;
                        }
                    }
                    Err(e) => return bad_request(format!("reading body: {e}")),
                }
            }
            text(StatusCode::OK, format!("{n}\n"))
        }
        (&Method::GET, "/headers") => {
            let mut out = String::new();
            for (name, value) in req.headers() {
                out.push_str(name.as_str());
                out.push_str(": ");
                out.push_str(&String::from_utf8_lossy(value.as_bytes()));
                out.push('\n');
            }
            text(StatusCode::OK, out)
        }
        (&Method::GET, "/ws") => websocket(req),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `GET /stream?chunks=N&size=S&interval_ms=I`: N chunks of S bytes of `x`,
/// I ms apart, generated lazily (one shared buffer, memory stays flat).
fn stream(query: Option<&str>) -> Response<ResBody> {
    let parsed = (|| -> Result<(u64, usize, u64), String> {
        let chunks = query_num::<u64>(query, "chunks")?.unwrap_or(10);
        let size = query_num::<usize>(query, "size")?.unwrap_or(1024);
        let interval = query_num::<u64>(query, "interval_ms")?.unwrap_or(0);
        if size > MAX_CHUNK_SIZE {
            return Err(format!("size must be <= {MAX_CHUNK_SIZE}"));
        }
        Ok((chunks, size, interval.min(MAX_DELAY_MS)))
    })();
    let (chunks, size, interval) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let chunk = Bytes::from(vec![b'x'; size]);
    let interval = Duration::from_millis(interval);
    let frames = futures::stream::unfold(0u64, move |i| {
        let chunk = chunk.clone();
        async move {
            if i >= chunks {
                return None;
            }
            if i > 0 && !interval.is_zero() {
                tokio::time::sleep(interval).await;
            }
            Some((Ok::<_, BoxError>(Frame::data(chunk)), i + 1))
        }
    });
    let mut res = Response::new(UnsyncBoxBody::new(StreamBody::new(frames.boxed())));
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    res
}

/// `GET /ws`: RFC 6455 handshake, then echo frames on the upgraded connection.
fn websocket(mut req: Request<Incoming>) -> Response<ResBody> {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") {
        return bad_request("expected Upgrade: websocket");
    }
    let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
        return bad_request("missing Sec-WebSocket-Key");
    };
    let accept = ws_accept(key.as_bytes());
    let Ok(accept) = HeaderValue::from_str(&accept) else {
        return bad_request("bad Sec-WebSocket-Key");
    };

    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                if let Err(e) = ws_echo(TokioIo::new(upgraded)).await {
                    eprintln!("hello: websocket: {e}");
                }
            }
            Err(e) => eprintln!("hello: websocket upgrade failed: {e}"),
        }
    });

    let mut res = Response::new(full(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    res
}

fn ws_accept(key: &[u8]) -> String {
    use base64::Engine as _;
    use sha1::{Digest, Sha1};
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(WS_GUID.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

async fn ws_echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: S) -> std::io::Result<()> {
    loop {
        let mut head = [0u8; 2];
        match io.read_exact(&mut head).await {
            Ok(_) => {}
            // Peer went away without a close frame.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let fin = head[0] & 0x80 != 0;
        let rsv = head[0] & 0x70;
        let opcode = head[0] & 0x0F;
        let masked = head[1] & 0x80 != 0;
        let len = match head[1] & 0x7F {
            126 => u64::from(io.read_u16().await?),
            127 => io.read_u64().await?,
            n => u64::from(n),
        };
        if rsv != 0 {
            return ws_close(&mut io, 1002).await;
        }
        let is_control = opcode & 0x08 != 0;
        if is_control && (len > 125 || !fin) {
            return ws_close(&mut io, 1002).await;
        }
        if len > MAX_WS_PAYLOAD {
            return ws_close(&mut io, 1009).await;
        }
        let mut mask = [0u8; 4];
        if masked {
            io.read_exact(&mut mask).await?;
        }
        // `len` is bounded by MAX_WS_PAYLOAD, so it fits in usize.
        let mut payload = BytesMut::zeroed(len as usize);
        io.read_exact(&mut payload).await?;
        if masked {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        match opcode {
            // Echo data frames as they come (fragmentation preserved).
            OP_CONT | OP_TEXT | OP_BINARY => ws_write(&mut io, fin, opcode, &payload).await?,
            OP_PING => ws_write(&mut io, true, OP_PONG, &payload).await?,
            OP_PONG => {}
            OP_CLOSE => {
                // Echo the status code (if any), then close the TCP stream.
                let body = if payload.len() >= 2 {
                    &payload[..2]
                } else {
                    &[][..]
                };
                ws_write(&mut io, true, OP_CLOSE, body).await?;
                let _ = io.shutdown().await;
                return Ok(());
            }
            _ => return ws_close(&mut io, 1002).await,
        }
    }
}

async fn ws_close<S: AsyncWrite + Unpin>(io: &mut S, code: u16) -> std::io::Result<()> {
    ws_write(io, true, OP_CLOSE, &code.to_be_bytes()).await?;
    let _ = io.shutdown().await;
    Ok(())
}

/// Writes one unmasked (server-to-client) frame.
async fn ws_write<S: AsyncWrite + Unpin>(
    io: &mut S,
    fin: bool,
    opcode: u8,
    payload: &[u8],
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(payload.len() + 10);
    buf.push(if fin { 0x80 } else { 0 } | opcode);
    match payload.len() {
        n if n < 126 => buf.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            buf.push(126);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            buf.push(127);
            buf.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    buf.extend_from_slice(payload);
    io.write_all(&buf).await?;
    io.flush().await
}
