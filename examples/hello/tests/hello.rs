//! End-to-end tests: run the built `hello` binary on an ephemeral 127.0.0.1
//! port and talk to it over real HTTP.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Hello {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Hello {
    fn start(envs: &[(&str, &str)]) -> Hello {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hello"));
        cmd.env_remove("POD_IP")
            .env("HOST", "127.0.0.1")
            .env("PORT", "0")
            .env("POD_NAME", "test-pod")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn hello");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("hello listening on ") {
                    let _ = tx.send(addr.parse::<SocketAddr>().expect("listen addr"));
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => addr,
            Err(e) => {
                let _ = child.kill();
                panic!("hello did not report its address: {e}; stderr: {lines:?}");
            }
        };
        Hello {
            child,
            addr,
            stderr: lines,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    fn sigterm(&self) {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGTERM).expect("kill");
    }

    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "hello did not exit in {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Hello {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request over a fresh HTTP/1.1 connection.
async fn send<B>(addr: SocketAddr, req: Request<B>) -> Response<Incoming>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let io = TokioIo::new(TcpStream::connect(addr).await.expect("connect"));
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender.send_request(req).await.expect("send_request")
}

async fn get(h: &Hello, path: &str) -> Response<Incoming> {
    let req = Request::get(h.url(path))
        .header("host", h.addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    send(h.addr, req).await
}

async fn body_bytes(res: Response<Incoming>) -> Bytes {
    res.into_body().collect().await.expect("body").to_bytes()
}

async fn body_string(res: Response<Incoming>) -> String {
    String::from_utf8(body_bytes(res).await.to_vec()).expect("utf-8 body")
}

#[tokio::test]
async fn root_pod_healthz_and_404() {
    let h = Hello::start(&[]);

    let res = get(&h, "/").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["x-pod-name"], "test-pod");
    assert_eq!(body_string(res).await, "hello from test-pod\n");

    let res = get(&h, "/pod").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res).await.trim(), "test-pod");

    let res = get(&h, "/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res).await.trim(), "ok");

    let res = get(&h, "/nope").await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["x-pod-name"], "test-pod");
}

#[tokio::test]
async fn pod_name_falls_back_to_hostname() {
    let h = Hello::start(&[("POD_NAME", ""), ("HOSTNAME", "host-1")]);
    let res = get(&h, "/").await;
    assert_eq!(res.headers()["x-pod-name"], "host-1");
    assert_eq!(body_string(res).await, "hello from host-1\n");
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let h = Hello::start(&[]);
    let io = TokioIo::new(TcpStream::connect(h.addr).await.unwrap());
    let (mut sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    let req = Request::get(h.url("/"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.expect("h2 request");
    assert_eq!(res.version(), hyper::Version::HTTP_2);
    assert_eq!(res.headers()["x-pod-name"], "test-pod");
    assert_eq!(body_string(res).await, "hello from test-pod\n");
}

#[tokio::test]
async fn headers_route_lists_request_headers() {
    let h = Hello::start(&[]);
    let req = Request::get(h.url("/headers"))
        .header("host", "example.test")
        .header("x-forwarded-for", "10.0.0.1")
        .header("x-forwarded-proto", "https")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = send(h.addr, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let body = body_string(res).await;
    let lines: Vec<&str> = body.lines().collect();
    assert!(lines.contains(&"host: example.test"), "{body}");
    assert!(lines.contains(&"x-forwarded-for: 10.0.0.1"), "{body}");
    assert!(lines.contains(&"x-forwarded-proto: https"), "{body}");
}

#[tokio::test]
async fn delay_and_bad_queries() {
    let h = Hello::start(&[]);

    let start = Instant::now();
    let res = get(&h, "/delay?ms=200").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res).await, "slept 200 ms\n");
    assert!(start.elapsed() >= Duration::from_millis(200));

    for bad in [
        "/delay?ms=abc",
        "/delay?ms=-1",
        "/delay",
        "/stream?chunks=x",
        "/stream?size=1e3",
        "/stream?interval_ms=",
    ] {
        let res = get(&h, bad).await;
        assert_eq!(res.status(), StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn stream_is_chunked_and_incremental() {
    let h = Hello::start(&[]);
    let start = Instant::now();
    let res = get(&h, "/stream?chunks=100&size=10&interval_ms=3").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["transfer-encoding"], "chunked");
    assert!(res.headers().get("content-length").is_none());
    // Headers arrive before the ~300 ms the whole stream takes.
    let head_after = start.elapsed();

    let mut body = res.into_body();
    let mut total = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            frames += 1;
            total.extend_from_slice(&data);
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(total.len(), 1000);
    assert!(total.iter().all(|b| *b == b'x'));
    assert!(frames > 1, "response was not streamed ({frames} frames)");
    assert!(elapsed >= Duration::from_millis(99 * 3), "{elapsed:?}");
    assert!(head_after < elapsed, "{head_after:?} vs {elapsed:?}");
}

#[tokio::test]
async fn stream_large_total() {
    // 64 MiB in 1 MiB chunks: exercised lazily, the server never holds it all.
    let h = Hello::start(&[]);
    let res = get(&h, "/stream?chunks=64&size=1048576").await;
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            total += data.len();
        }
    }
    assert_eq!(total, 64 * 1024 * 1024);
}

fn streaming_body(
    chunks: usize,
    chunk: Bytes,
) -> StreamBody<impl futures::Stream<Item = Result<Frame<Bytes>, std::io::Error>>> {
    StreamBody::new(futures::stream::iter(
        (0..chunks).map(move |_| Ok(Frame::data(chunk.clone()))),
    ))
}

#[tokio::test]
async fn echo_10mb() {
    let h = Hello::start(&[]);
    // 10 MiB with a non-trivial pattern, sent as a chunked streaming body.
    let chunk: Bytes = (0..1024 * 1024)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    let req = Request::post(h.url("/echo"))
        .header("host", h.addr.to_string())
        .body(streaming_body(10, chunk.clone()))
        .unwrap();
    let res = send(h.addr, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    let got = body_bytes(res).await;
    assert_eq!(got.len(), 10 * 1024 * 1024);
    for part in got.chunks(chunk.len()) {
        assert!(part == &chunk[..], "echoed data differs");
    }

    // PUT with a fixed-length body works too.
    let req = Request::put(h.url("/echo"))
        .header("host", h.addr.to_string())
        .body(Full::new(Bytes::from_static(b"ping")))
        .unwrap();
    let res = send(h.addr, req).await;
    assert_eq!(body_string(res).await, "ping");
}

#[tokio::test]
async fn count_streamed_upload() {
    let h = Hello::start(&[]);
    let req = Request::post(h.url("/count"))
        .header("host", h.addr.to_string())
        .body(streaming_body(32, Bytes::from(vec![7u8; 1024 * 1024])))
        .unwrap();
    let res = send(h.addr, req).await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_string(res).await, format!("{}\n", 32 * 1024 * 1024));
}

#[tokio::test]
async fn sigterm_drains_in_flight_request() {
    let mut h = Hello::start(&[]);
    let addr = h.addr;
    let url = h.url("/delay?ms=2000");
    let in_flight = tokio::spawn(async move {
        let req = Request::get(url)
            .header("host", addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let res = send(addr, req).await;
        (res.status(), body_string(res).await)
    });
    // Let the request reach the server before signalling (a quarter of its
    // time, so a slow machine still signals while it is in flight).
    tokio::time::sleep(Duration::from_millis(500)).await;
    h.sigterm();

    let (status, body) = in_flight.await.expect("request task");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "slept 2000 ms\n");

    let exit = h.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(0), "{exit:?}");
    let log = h.stderr();
    // The reader thread may lag slightly behind process exit.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut log = log;
    while !log.iter().any(|l| l == "hello exit") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        log = h.stderr();
    }
    assert!(log.iter().any(|l| l == "hello draining"), "{log:?}");
    assert!(log.iter().any(|l| l == "hello exit"), "{log:?}");
    // No longer accepting.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn fail_after_requests_exits_1() {
    let mut h = Hello::start(&[("HELLO_FAIL_AFTER_REQUESTS", "2")]);
    for _ in 0..2 {
        let res = get(&h, "/").await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body_string(res).await, "hello from test-pod\n");
    }
    let exit = h.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(exit.code(), Some(1), "{exit:?}");
}

#[tokio::test]
async fn start_delay_postpones_listening() {
    let start = Instant::now();
    let h = Hello::start(&[("HELLO_START_DELAY_MS", "300")]);
    assert!(start.elapsed() >= Duration::from_millis(300));
    let res = get(&h, "/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
}

/// Writes a masked client frame.
fn client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x12u8, 0x34, 0x56, 0x78];
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// Reads one (unmasked) server frame: (fin+opcode byte, payload).
async fn server_frame(io: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    io.read_exact(&mut head).await.unwrap();
    assert_eq!(head[1] & 0x80, 0, "server frames must not be masked");
    let len = match head[1] & 0x7F {
        126 => io.read_u16().await.unwrap() as usize,
        127 => io.read_u64().await.unwrap() as usize,
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await.unwrap();
    (head[0], payload)
}

#[tokio::test]
async fn websocket_echo() {
    let h = Hello::start(&[]);
    let mut io = TcpStream::connect(h.addr).await.unwrap();
    let handshake = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        h.addr
    );
    io.write_all(handshake.as_bytes()).await.unwrap();

    // Read the response head byte by byte so no frame bytes are consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(io.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    // RFC 6455 section 1.3 example key/accept pair.
    assert!(
        head.contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="),
        "{head}"
    );
    assert!(head.contains("upgrade: websocket"), "{head}");

    io.write_all(&client_frame(0x1, b"hello ws")).await.unwrap();
    assert_eq!(server_frame(&mut io).await, (0x81, b"hello ws".to_vec()));

    // 16-bit length binary frame.
    let big: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
    io.write_all(&client_frame(0x2, &big)).await.unwrap();
    assert_eq!(server_frame(&mut io).await, (0x82, big));

    io.write_all(&client_frame(0x9, b"p")).await.unwrap();
    assert_eq!(server_frame(&mut io).await, (0x8A, b"p".to_vec()));

    io.write_all(&client_frame(0x8, &1000u16.to_be_bytes()))
        .await
        .unwrap();
    assert_eq!(
        server_frame(&mut io).await,
        (0x88, 1000u16.to_be_bytes().to_vec())
    );
    let mut rest = Vec::new();
    io.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn websocket_requires_upgrade_headers() {
    let h = Hello::start(&[]);
    let res = get(&h, "/ws").await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
}
