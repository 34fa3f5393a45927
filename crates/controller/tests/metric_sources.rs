//! Both metric sources against a real activator (in-process, static index)
//! serving real requests to a slow loopback backend:
//! - `scrape` reads the activator's /metrics directly;
//! - `prometheus` queries a real Prometheus server (Debian's `prometheus`,
//!   /usr/bin/prometheus) that this test starts on a free loopback port with
//!   a 1 s scrape of that activator, and stops (by its PID) at the end.
//!
//! Run: `cargo test -p siesta-controller --test metric_sources -- --include-ignored`

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use siesta_activator::index::FunctionConfig;
use siesta_activator::route::FunctionKey as ActivatorKey;
use siesta_activator::{Activator, Config as ActivatorConfig};
use siesta_controller::FunctionKey;
use siesta_controller::autoscaler::source::{PromQuery, Scraper, Targets};

/// How long each request takes at the backend.
const SERVICE_TIME: Duration = Duration::from_millis(250);
/// Concurrent clients, each sending one request after another.
const CLIENTS: usize = 4;

/// A backend that answers every request after `SERVICE_TIME`.
async fn slow_backend() -> SocketAddr {
    siesta_testkit::backend::serve(|_req| async {
        tokio::time::sleep(SERVICE_TIME).await;
        Response::new(Full::new(Bytes::from_static(b"ok\n")))
    })
    .await
}

struct Running {
    traffic: SocketAddr,
    admin: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// An activator with one function, `demo/hello`, served by a slow backend.
async fn activator() -> Running {
    let backend = slow_backend().await;
    let activator = Activator::bind(ActivatorConfig::loopback())
        .await
        .expect("bind the activator");
    let traffic = activator.listen_addr().expect("traffic address");
    let admin = activator.admin_addr().expect("admin address");
    let control = activator.control();
    let key = ActivatorKey::new("demo", "hello");
    control.apply_function(
        key.clone(),
        FunctionConfig {
            port: backend.port(),
            ..FunctionConfig::default()
        },
    );
    control.set_endpoints(&key, &[backend]);
    control.mark_synced();
    let entry = control.index().get(&key).expect("the function is indexed");
    let started = Instant::now();
    while entry.endpoints() != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the backend was not admitted"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(activator.serve(async move {
        let _ = stopped.await;
    }));
    Running {
        traffic,
        admin,
        _stop: stop,
    }
}

/// `CLIENTS` loops of requests through the activator until `stop` is set.
/// Returns the number of 200 answers.
fn load(traffic: SocketAddr, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<usize> {
    tokio::spawn(async move {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let loops = (0..CLIENTS).map(|_| {
            let client = client.clone();
            let stop = stop.clone();
            async move {
                let mut ok = 0;
                while !stop.load(Ordering::Relaxed) {
                    let req = Request::get(format!("http://{traffic}/"))
                        .header("host", "hello.demo.siesta.local")
                        .body(Empty::new())
                        .expect("a request");
                    if let Ok(resp) = client.request(req).await {
                        if resp.status() == 200 {
                            ok += 1;
                        }
                        let _ = resp.into_body().collect().await;
                    }
                }
                ok
            }
        });
        futures::future::join_all(loops).await.into_iter().sum()
    })
}

fn hello() -> FunctionKey {
    FunctionKey {
        namespace: "demo".into(),
        name: "hello".into(),
    }
}

/// Expected steady state: CLIENTS requests always in flight, each taking
/// SERVICE_TIME, so CLIENTS / SERVICE_TIME requests per second.
fn expected() -> (f64, f64) {
    (CLIENTS as f64, CLIENTS as f64 / SERVICE_TIME.as_secs_f64())
}

/// The two tests measure rates from real traffic: run them one at a time,
/// so neither starves the other's clients of CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scrape_source_reads_rate_and_concurrency_from_a_real_activator() {
    let _one = ONE_AT_A_TIME.lock().await;
    let a = activator().await;
    let mut scraper = Scraper::new(
        Targets::Static(vec![format!("http://{}/metrics", a.admin)]),
        Duration::from_secs(1),
    );
    let first = scraper.poll().await;
    assert!(!first.complete, "the first poll is only a baseline");
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(a.traffic, stop.clone());
    let (want_c, want_rps) = expected();
    let mut readings = Vec::new();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let poll = scraper.poll().await;
        assert!(poll.complete);
        readings.push(poll.functions.get(&hello()).copied().unwrap_or_default());
    }
    stop.store(true, Ordering::Relaxed);
    let answered = traffic.await.expect("load task");
    // Skip the first interval (the load was starting); the rest are steady.
    // The mean is held tight; one second alone may see the clients starved
    // of CPU on a busy machine, so each sample gets a wider band.
    let steady = &readings[1..];
    let n = steady.len() as f64;
    let mean_c = steady.iter().map(|r| r.concurrency).sum::<f64>() / n;
    let mean_rps = steady.iter().map(|r| r.rps).sum::<f64>() / n;
    assert!(
        (mean_c - want_c).abs() < 0.5,
        "mean concurrency {mean_c:.2}, expected about {want_c}: {readings:?}"
    );
    assert!(
        (mean_rps - want_rps).abs() < want_rps * 0.2,
        "mean rps {mean_rps:.2}, expected about {want_rps}: {readings:?}"
    );
    for r in steady {
        assert!(
            (r.concurrency - want_c).abs() < 1.5 && (r.rps - want_rps).abs() < want_rps * 0.4,
            "a sample far off {want_c} in flight, {want_rps} rps: {readings:?}"
        );
    }
    let counted: f64 = readings.iter().map(|r| r.requests).sum();
    assert!(
        counted <= answered as f64 && counted >= answered as f64 * 0.6,
        "{counted} requests counted, {answered} answered"
    );
    // Idle: zero requests counted, zero concurrency, nothing in flight.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    scraper.poll().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = scraper.poll().await;
    let r = idle.functions.get(&hello()).copied().unwrap_or_default();
    assert_eq!(
        (r.requests, r.in_flight, r.queued),
        (0.0, 0.0, 0.0),
        "{r:?}"
    );
    assert!(r.concurrency.abs() < 1e-9, "{r:?}");
}

/// The Prometheus server this test started; killed by its PID when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

async fn start_prometheus(target: SocketAddr) -> Prometheus {
    let bin = std::env::var("PROMETHEUS_BIN").unwrap_or_else(|_| "/usr/bin/prometheus".into());
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} not found: install it with `apt-get install -y prometheus` (hack/cluster/install.sh does)"
    );
    let dir = std::env::temp_dir().join(format!(
        "siesta-prom-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(dir.join("data")).expect("temp dir");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: activator\n    static_configs:\n      - targets: ['{target}']\n"
    );
    std::fs::write(dir.join("prometheus.yml"), config).expect("write the config");
    let port = free_port();
    let child = Command::new(&bin)
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join("prometheus.log")).expect("log file"),
        ))
        .spawn()
        .unwrap_or_else(|e| panic!("could not start {bin}: {e}"));
    let prom = Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: TempDir(dir.clone()),
    };
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let started = Instant::now();
    loop {
        let ready = client
            .get(format!("{}/-/ready", prom.url).parse().expect("uri"))
            .await
            .is_ok_and(|r| r.status() == 200);
        if ready {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Prometheus did not get ready; log: {}",
            std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    prom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs /usr/bin/prometheus (Debian package prometheus): make test"]
async fn prometheus_source_queries_a_real_prometheus_scraping_a_real_activator() {
    let _one = ONE_AT_A_TIME.lock().await;
    let a = activator().await;
    let prom = start_prometheus(a.admin).await;
    let mut source = PromQuery::new(
        &prom.url,
        Duration::from_secs(5),
        Duration::from_secs(2),
        Duration::from_secs(2),
    );
    // Before any traffic: the queries answer, and nothing is flowing.
    let idle = source.poll().await;
    assert!(idle.complete, "the queries failed against {}", prom.url);
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = load(a.traffic, stop.clone());
    // Let Prometheus gather a full 5 s window of steady load (the request
    // series only exist after the first request, and rate() needs two
    // scrapes of them inside the window).
    tokio::time::sleep(Duration::from_secs(12)).await;
    let busy = source.poll().await;
    stop.store(true, Ordering::Relaxed);
    let answered = traffic.await.expect("load task");
    assert!(busy.complete);
    let r = busy.functions.get(&hello()).copied().unwrap_or_default();
    let (want_c, want_rps) = expected();
    assert!(
        (r.concurrency - want_c).abs() < 1.0,
        "concurrency {:.2} from Prometheus, expected about {want_c} ({r:?})",
        r.concurrency
    );
    assert!(
        (r.rps - want_rps).abs() < want_rps * 0.35,
        "rps {:.2} from Prometheus, expected about {want_rps} ({r:?})",
        r.rps
    );
    assert!(r.in_flight <= CLIENTS as f64, "{r:?}");
    assert!(answered > 50, "only {answered} requests answered");
    // After the load: the rate window empties, and the rate drops to zero.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let after = source.poll().await;
    let r = after.functions.get(&hello()).copied().unwrap_or_default();
    assert_eq!((r.rps, r.in_flight, r.queued), (0.0, 0.0, 0.0), "{r:?}");
    // A query error is reported as an incomplete poll, not as zero traffic.
    let mut broken = PromQuery::new(
        &format!("http://127.0.0.1:{}", free_port()),
        Duration::from_secs(5),
        Duration::from_millis(500),
        Duration::from_secs(2),
    );
    assert!(!broken.poll().await.complete);
    drop(prom);
}
