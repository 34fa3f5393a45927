//! A flood of parked requests across many functions at zero: the activator
//! parks up to each queue's limit, refuses the rest at once with 503, keeps
//! its memory bounded, and answers every parked request once pods appear.
//! Its own test binary so VmHWM is this scenario's peak. Clients use h2c
//! (many streams per connection) so that 10,000 parked requests fit in the
//! file descriptor limit.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use siesta_activator::index::FunctionConfig;
use siesta_activator::route::FunctionKey;
use siesta_reliability::backend::answering;
use siesta_reliability::{ActivatorRun, metric_sum};

const FUNCTIONS: usize = 200;
const QUEUE: usize = 50;
const EXTRA: usize = 5;

/// The allocator of the `siesta` binary, so RSS here is what the activator
/// would hold. (With glibc's malloc, hyper's per-parse header arrays, 64 KiB
/// at --max-response-headers 1000, raised this test's peak from 444 to 536
/// MiB, one run each, as 10,000 responses were parsed at once; with
/// jemalloc the peak is 415 to 438 MiB, and siesta-bench park shows no
/// difference between 100 and 1000.)
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn vm_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_requests_across_many_functions_stay_bounded() {
    // The activator-wide budget would refuse some of these 10,000 (its
    // default is 10,000, a tenth of it reserved): this test is about the
    // queues; park_budget_flood.rs is about the budget.
    let run = ActivatorRun::start(
        None,
        siesta_activator::Config {
            max_parked_requests: 20_000,
            ..siesta_activator::Config::loopback()
        },
    )
    .await
    .expect("activator");
    let base = vm_kib("VmRSS");
    for i in 0..FUNCTIONS {
        run.control.apply_function(
            FunctionKey::new("ns", format!("f{i}")),
            FunctionConfig {
                queue_max: QUEUE,
                queue_timeout: Duration::from_secs(120),
                timeout: Duration::from_secs(300),
                ..FunctionConfig::default()
            },
        );
    }
    let addr = run.traffic;
    let mut tasks = Vec::new();
    for i in 0..FUNCTIONS {
        let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build_http();
        for j in 0..QUEUE + EXTRA {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let req = http::Request::get(format!("http://{addr}/fn/ns/f{i}/?j={j}"))
                    .body(Empty::<Bytes>::new())
                    .expect("request");
                match client.request(req).await {
                    Ok(r) => {
                        let code = r.status().as_u16();
                        let _ = r.into_body().collect().await;
                        code
                    }
                    Err(_) => 0,
                }
            }));
        }
    }
    // Wait until every queue is full.
    let mut queued = 0.0;
    for _ in 0..600 {
        queued = metric_sum(&run.metrics().await, "siesta_activator_queued_requests", "");
        if queued >= (FUNCTIONS * QUEUE) as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(queued, (FUNCTIONS * QUEUE) as f64, "every queue filled");
    let peak_parked = vm_kib("VmHWM");

    // Pods appear: one backend per function (a single listener for all
    // 10,000 at once overflows its accept backlog; see the report).
    for i in 0..FUNCTIONS {
        let be = answering(b"ok").await;
        let key = FunctionKey::new("ns", format!("f{i}"));
        let mut config = run.control.index().get(&key).expect("entry").config();
        config.port = be.port();
        run.control.apply_function(key.clone(), config);
        run.control.set_endpoints(&key, &[be]);
    }
    let mut ok = 0;
    let mut rejected = 0;
    let mut other = Vec::new();
    for t in tasks {
        match t.await.unwrap_or(0) {
            200 => ok += 1,
            503 => rejected += 1,
            c => other.push(c),
        }
    }
    let peak = vm_kib("VmHWM");
    let growth = peak.saturating_sub(base);
    eprintln!(
        "RELIABILITY flood functions={FUNCTIONS} parked={} answered={ok} rejected_503={rejected} other={} rss_before_kib={base} vmhwm_parked_kib={peak_parked} vmhwm_kib={peak} growth_kib={growth} per_parked_request_kib={:.1}",
        FUNCTIONS * QUEUE,
        other.len(),
        growth as f64 / (FUNCTIONS * QUEUE) as f64
    );
    // Known limit, counted not asserted: releasing all 10,000 at once makes
    // the activator open one upstream connection per request; in this one
    // process (clients, activator and 200 backends) some of those fail with
    // 502 (seen: ~2% here; the cause, likely the 20,000 fd limit shared by
    // both ends of every connection, is not yet confirmed).
    assert!(
        other.iter().all(|c| *c == 502),
        "unexpected outcomes: {:?}",
        &other[..other.len().min(10)]
    );
    assert!(
        other.len() <= FUNCTIONS * QUEUE / 20,
        "{} of {} parked requests got 502 (the known limit is a few percent)",
        other.len(),
        FUNCTIONS * QUEUE
    );
    assert_eq!(
        ok + other.len(),
        FUNCTIONS * QUEUE,
        "every parked request got an answer"
    );
    assert_eq!(rejected, FUNCTIONS * EXTRA, "beyond the queue: 503 at once");
    // Client and activator share this process: both sides of 11,000 streams.
    assert!(growth < 512 * 1024, "memory grew by {growth} KiB");
    run.stop().await;
}
