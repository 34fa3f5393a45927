//! The activator-wide budget of parked requests over real sockets: refusals
//! beyond it (503, Retry-After, the metric), a quiet function still waking
//! from the reserve, and the budget given back however a request leaves.

mod support;

use std::time::Duration;

use hyper::{Request, StatusCode};
use siesta_activator::index::FunctionConfig;
use siesta_activator::park_budget::Usage;
use support::*;

fn at_zero() -> FunctionConfig {
    FunctionConfig {
        queue_max: 100,
        queue_timeout: Duration::from_secs(60),
        timeout: Duration::from_secs(120),
        ..FunctionConfig::default()
    }
}

fn budget(requests: u64, bytes: u64) -> siesta_activator::Config {
    siesta_activator::Config {
        max_parked_requests: requests,
        max_parked_bytes: bytes,
        ..siesta_activator::Config::loopback()
    }
}

fn host(name: &str) -> String {
    format!("{name}.ns.siesta.local")
}

fn rejected(metrics: &str, name: &str) -> Option<f64> {
    sample(
        metrics,
        &format!(
            r#"siesta_activator_rejected_requests_total{{function="{name}",namespace="ns",reason="park_budget"}}"#
        ),
    )
}

/// Polls until `f` holds.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn beyond_the_budget_requests_get_503_with_retry_after_and_a_quiet_function_still_wakes() {
    // 10 requests, 3 functions: a reserve of a tenth (1) plus a slot for
    // each function with nothing parked.
    let h = Harness::start(budget(10, 1 << 30)).await;
    let f = h.function("f", at_zero(), &[]).await;
    let g = h.function("g", at_zero(), &[]).await;
    let k = h.function("k", at_zero(), &[]).await;
    let budget = h.control.index().park_budget();

    // f floods: it gets the pool (10 - 1 - 2 slots kept for g and k), the
    // rest is refused at once.
    let flood: Vec<_> = (0..20)
        .map(|i| tokio::spawn(send(get(&h, &host("f"), &format!("/?i={i}")))))
        .collect();
    let mut m = String::new();
    for _ in 0..1000 {
        m = h.metrics().await;
        if rejected(&m, "f") == Some(13.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rejected(&m, "f"), Some(13.0), "{m}");
    assert_eq!(budget.used().0.requests, 7, "{m}");
    // g and k, quiet so far, each wake with the slot kept for them.
    let quiet = tokio::spawn(send(get(&h, &host("g"), "/quiet")));
    until("g to park", || budget.used().0.requests == 8).await;
    let k_first = tokio::spawn(send(get(&h, &host("k"), "/first")));
    until("k to park", || budget.used().0.requests == 9).await;
    // k's second request would take the last of the reserve: refused.
    let (s, headers, body) = send(get(&h, &host("k"), "/second")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    assert!(
        body.starts_with("function ns/k: ") && body.contains("--max-parked-requests 10"),
        "{body}"
    );

    // Pods come up: every parked request is answered.
    let be = echo().await;
    for key in [&f, &g, &k] {
        h.set_pods(key, &[be]).await;
    }
    let mut codes = Vec::new();
    for t in flood {
        let (s, headers, body) = t.await.unwrap();
        if s == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(headers["retry-after"], "1");
            assert!(body.contains("--max-parked-requests 10"), "{body}");
        }
        codes.push(s.as_u16());
    }
    codes.sort_unstable();
    assert_eq!(codes, [[200; 7].as_slice(), &[503; 13]].concat());
    let (s, _, body) = quiet.await.unwrap();
    assert_eq!((s, body.as_str()), (StatusCode::OK, "GET /quiet HTTP/1.1"));
    assert_eq!(k_first.await.unwrap().0, StatusCode::OK);

    let m = h.metrics().await;
    assert_eq!(rejected(&m, "f"), Some(13.0), "{m}");
    assert_eq!(rejected(&m, "k"), Some(1.0));
    assert_eq!(rejected(&m, "g"), None, "g was never refused");
    assert_eq!(budget.used(), (Usage::default(), 0), "all given back");
}

#[tokio::test]
async fn a_parked_request_that_times_out_or_whose_client_leaves_gives_its_part_back() {
    let h = Harness::start(budget(100, 1 << 30)).await;
    let mut c = at_zero();
    c.queue_timeout = Duration::from_millis(500);
    h.function("f", c, &[]).await;
    h.function("g", at_zero(), &[]).await;
    let budget = h.control.index().park_budget();

    let timing_out: Vec<_> = (0..3)
        .map(|_| tokio::spawn(send(get(&h, &host("f"), "/"))))
        .collect();
    let leaving = tokio::spawn(send(get(&h, &host("g"), "/")));
    until("four to park", || budget.used().0.requests == 4).await;
    assert_eq!(budget.used().1, 2, "two functions parking");

    for t in timing_out {
        assert_eq!(t.await.unwrap().0, StatusCode::GATEWAY_TIMEOUT);
    }
    assert_eq!(
        budget.used().0.requests,
        1,
        "the timed-out gave theirs back"
    );
    leaving.abort();
    until("the client that left to give its part back", || {
        budget.used() == (Usage::default(), 0)
    })
    .await;
}

#[tokio::test]
async fn parked_uploads_are_charged_what_the_server_may_buffer_for_them() {
    // 256 KiB of bytes: one h2 upload of unknown length (its head and what
    // its 128 KiB stream window may pin) fits, a second does not; small GETs
    // still do.
    let h = Harness::start(budget(1000, 256 << 10)).await;
    let f = h.function("f", at_zero(), &[]).await;
    let budget = h.control.index().park_budget();
    const SIZE: usize = 1 << 20;
    // Routed by path: over HTTP/2 the URI's authority (the activator's
    // address) is the `:authority`, and a Host naming another would be 400.
    let upload = |path: &'static str| {
        h2_client().request(Request::post(h.url(path)).body(generated(SIZE)).unwrap())
    };
    let first = tokio::spawn(upload("/fn/ns/f/count"));
    until("the first upload to park", || budget.used().0.requests == 1).await;
    let charged = budget.used().0.bytes;
    assert!(
        (170 << 10..172 << 10).contains(&charged),
        "charged {charged} bytes"
    );
    let second = upload("/fn/ns/f/count").await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(second.headers()["retry-after"], "1");
    let body = http_body_util::BodyExt::collect(second.into_body())
        .await
        .unwrap()
        .to_bytes();
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("--max-parked-bytes 262144"), "{body}");
    let small = tokio::spawn(send(get(&h, &host("f"), "/small")));
    until("the GET to park", || budget.used().0.requests == 2).await;

    // A pod: the parked upload is sent whole, the GET answered.
    let be = echo().await;
    h.set_pods(&f, &[be]).await;
    let resp = first.await.unwrap().unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let n = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(n, SIZE.to_string());
    assert_eq!(small.await.unwrap().0, StatusCode::OK);
    assert_eq!(budget.used(), (Usage::default(), 0));
}

#[tokio::test]
async fn warm_requests_are_never_charged() {
    let h = Harness::start(budget(1, 1)).await;
    let be = echo().await;
    h.function("f", at_zero(), &[be]).await;
    for _ in 0..20 {
        assert_eq!(send(get(&h, &host("f"), "/")).await.0, StatusCode::OK);
    }
    let m = h.metrics().await;
    assert_eq!(rejected(&m, "f"), None);
}
