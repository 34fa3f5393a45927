//! Benchmark helpers for `make bench` (hack/bench/run.sh). Not shipped.
//!
//! The activator they drive is `siesta bench-activator` (the shipped binary
//! with a static route and no cluster; `siesta_activator::standalone`).
//!
//! - `park`: opens N connections, sends one request on each to a function at
//!   zero, waits until the activator reports all N queued, sends SIGUSR1 to
//!   the activator and times the drain.
//! - `stream`: a large upload to `/echo` (echoed back) or a large download
//!   from `/stream`, with throughput and the target process's peak RSS.
//! - `cold`: one request, printing the wall-clock send and first-byte times
//!   (to be lined up with the controller's and node agent's log timestamps).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::Request;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The same allocator as the `siesta` binary.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(about = "Siesta benchmark helpers (see hack/bench/run.sh)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Park N requests at zero, then release them and time the drain.
    Park {
        #[arg(long, default_value = "127.0.0.1:18080")]
        target: SocketAddr,
        #[arg(long, default_value = "127.0.0.1:19091")]
        admin: SocketAddr,
        #[arg(long, default_value = "hello.bench.siesta.local")]
        host: String,
        #[arg(long, default_value_t = 10_000)]
        n: usize,
        /// PID of the activator (gets SIGUSR1; its VmHWM is read).
        #[arg(long)]
        pid: i32,
    },
    /// Stream a large body through a proxy.
    Stream {
        #[arg(long, default_value = "127.0.0.1:18080")]
        target: SocketAddr,
        #[arg(long, default_value = "hello.bench.siesta.local")]
        host: String,
        /// `upload` (POST /echo, the echo read back) or `download` (GET /stream).
        #[arg(long)]
        mode: String,
        #[arg(long, default_value_t = 1 << 30)]
        bytes: u64,
        /// PID whose RSS is sampled (0: none).
        #[arg(long, default_value_t = 0)]
        pid: i32,
    },
    /// One request; prints `send_unix=... first_byte_unix=... status=...`.
    Cold {
        #[arg(long)]
        target: SocketAddr,
        #[arg(long)]
        host: String,
        #[arg(long, default_value = "/")]
        path: String,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.command {
            Command::Park {
                target,
                admin,
                host,
                n,
                pid,
            } => park(target, admin, &host, n, pid).await,
            Command::Stream {
                target,
                host,
                mode,
                bytes,
                pid,
            } => stream(target, &host, &mode, bytes, pid).await,
            Command::Cold { target, host, path } => cold(target, &host, &path).await,
        }
    })
}

/// `VmHWM` and `VmRSS` of a process, in KiB.
fn rss_kib(pid: i32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

async fn metric(admin: SocketAddr, name: &str) -> anyhow::Result<f64> {
    let stream = TcpStream::connect(admin).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("/metrics")
                .header("host", "admin")
                .body(Empty::<Bytes>::new())?,
        )
        .await?;
    let body = resp.into_body().collect().await?.to_bytes();
    let text = String::from_utf8_lossy(&body);
    Ok(text
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

async fn one_request(target: SocketAddr, host: String) -> anyhow::Result<(u16, Instant)> {
    let stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("/")
                .header("host", host)
                .body(Empty::<Bytes>::new())?,
        )
        .await?;
    let status = resp.status().as_u16();
    resp.into_body().collect().await?;
    Ok((status, Instant::now()))
}

async fn park(
    target: SocketAddr,
    admin: SocketAddr,
    host: &str,
    n: usize,
    pid: i32,
) -> anyhow::Result<()> {
    let (_, rss_before) = rss_kib(pid);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    // Connect in batches so the listen backlog is not overrun.
    for i in 0..n {
        tasks.push(tokio::spawn(one_request(target, host.to_string())));
        if i % 500 == 499 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queued = metric(admin, "siesta_activator_queued_requests").await?;
        if queued as usize >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {queued} of {n} requests parked after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let parked_after = started.elapsed();
    let (_, rss_parked) = rss_kib(pid);
    let released = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .context("signalling the activator")?;
    let mut ok = 0usize;
    let mut failed = 0usize;
    let mut last = released;
    for t in tasks {
        match t.await {
            Ok(Ok((200, at))) => {
                ok += 1;
                last = last.max(at);
            }
            Ok(Ok((code, _))) => {
                failed += 1;
                eprintln!("status {code}");
            }
            Ok(Err(e)) => {
                failed += 1;
                if failed < 5 {
                    eprintln!("request failed: {e:#}");
                }
            }
            Err(e) => {
                failed += 1;
                eprintln!("task: {e}");
            }
        }
    }
    let drain = last.duration_since(released);
    let (hwm, rss_after) = rss_kib(pid);
    println!(
        "n={n} ok={ok} failed={failed} parked_in_s={:.3} drain_s={:.3} rss_before_kib={rss_before} rss_parked_kib={rss_parked} rss_after_kib={rss_after} hwm_kib={hwm}",
        parked_after.as_secs_f64(),
        drain.as_secs_f64()
    );
    Ok(())
}

async fn stream(
    target: SocketAddr,
    host: &str,
    mode: &str,
    total: u64,
    pid: i32,
) -> anyhow::Result<()> {
    const CHUNK: usize = 64 * 1024;
    let peak = Arc::new(AtomicU64::new(0));
    let sampler = (pid != 0).then(|| {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let (_, rss) = rss_kib(pid);
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    });
    let (_, rss_before) = if pid != 0 { rss_kib(pid) } else { (0, 0) };
    let stream = TcpStream::connect(target).await?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let started = Instant::now();
    let resp = match mode {
        "upload" => {
            let chunk = Bytes::from(vec![b'u'; CHUNK]);
            let chunks = total.div_ceil(CHUNK as u64);
            let body = StreamBody::new(futures::stream::iter((0..chunks).map(move |i| {
                let left = total - i * CHUNK as u64;
                let c = if left < CHUNK as u64 {
                    chunk.slice(..left as usize)
                } else {
                    chunk.clone()
                };
                Ok::<_, std::convert::Infallible>(Frame::data(c))
            })));
            send.send_request(
                Request::post("/echo")
                    .header("host", host)
                    .header("content-length", total)
                    .body(body.boxed())?,
            )
            .await?
        }
        "download" => {
            let chunks = total.div_ceil(CHUNK as u64);
            send.send_request(
                Request::get(format!("/stream?chunks={chunks}&size={CHUNK}"))
                    .header("host", host)
                    .body(Empty::<Bytes>::new().boxed())?,
            )
            .await?
        }
        other => bail!("--mode must be upload or download, not {other:?}"),
    };
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut got = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            got += data.len() as u64;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    if let Some(s) = sampler {
        s.abort();
    }
    let (hwm, rss_after) = if pid != 0 { rss_kib(pid) } else { (0, 0) };
    if status != 200 || got < total {
        bail!("{mode}: status {status}, {got} of {total} bytes back");
    }
    println!(
        "mode={mode} bytes={got} secs={secs:.3} mib_per_s={:.1} rss_before_kib={rss_before} rss_peak_sampled_kib={} rss_after_kib={rss_after} hwm_kib={hwm}",
        got as f64 / secs / (1024.0 * 1024.0),
        peak.load(Ordering::Relaxed)
    );
    Ok(())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

async fn cold(target: SocketAddr, host: &str, path: &str) -> anyhow::Result<()> {
    let stream = TcpStream::connect(target).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())?;
    let sent = unix_now();
    let resp = send.send_request(req).await?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    // The first body byte (or the end of an empty body).
    let mut first = None;
    let mut text = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(d) = frame?.data_ref().filter(|d| !d.is_empty()) {
            first.get_or_insert_with(unix_now);
            text.extend_from_slice(d);
        }
    }
    let first = first.unwrap_or_else(unix_now);
    let text = String::from_utf8_lossy(&text);
    println!(
        "send_unix={sent:.6} first_byte_unix={first:.6} status={status} body={}",
        text.trim().replace(char::is_whitespace, "_")
    );
    Ok(())
}
