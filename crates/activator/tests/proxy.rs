//! The activator end to end over loopback: a real listener in this process,
//! real hyper backends, and a state fed directly instead of from a cluster.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use hyper::{Request, StatusCode};
use siesta_activator::index::FunctionConfig;
use siesta_activator::route::FunctionKey;
use siesta_api::Protocol;
use support::*;
use tokio::time::Instant;

const HOST: &str = "f.ns.siesta.local";

fn cfg() -> FunctionConfig {
    FunctionConfig::default()
}

#[tokio::test]
async fn routes_by_host_and_by_path_with_the_prefix_stripped() {
    let h = Harness::default().await;
    let be = echo().await;
    h.function("f", cfg(), &[be]).await;

    let (s, _, body) = send(get(&h, HOST, "/a/b?x=1")).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, "GET /a/b?x=1 HTTP/1.1")
    );

    let (s, _, body) = send(get(&h, "localhost", "/fn/ns/f/c?y=2")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "GET /c?y=2 HTTP/1.1"));

    let (s, headers, body) = send(get(&h, "g.ns.siesta.local", "/")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("function ns/g not found"), "{body}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );

    let (s, _, body) = send(get(&h, "localhost", "/elsewhere")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(body.contains("/fn/NAMESPACE/NAME/"), "{body}");
}

#[tokio::test]
async fn at_zero_a_request_parks_wakes_the_controller_and_is_answered_when_a_pod_is_ready() {
    let (controller, mut activations) = fake_controller().await;
    let mut config = siesta_activator::Config::loopback();
    config.controller_url = vec![controller];
    let h = Harness::start(config).await;
    let key = h.function("f", cfg(), &[]).await;

    let pending = tokio::spawn(send(get(&h, HOST, "/hello")));
    let signal = tokio::time::timeout(Duration::from_secs(5), activations.recv())
        .await
        .expect("no activation signal")
        .unwrap();
    assert_eq!(signal, "POST /v1/activate/ns/f");
    assert!(!pending.is_finished(), "the request waits for a pod");

    let be = echo().await;
    h.set_pods(&key, &[be]).await;
    let (s, _, body) = pending.await.unwrap();
    assert_eq!((s, body.as_str()), (StatusCode::OK, "GET /hello HTTP/1.1"));

    let m = h.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"siesta_activator_cold_start_duration_seconds_count{function="f",namespace="ns"}"#
        ),
        Some(1.0),
        "{m}"
    );
    // Then the record of that cold start goes to the controller, once.
    let report = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let next = activations.recv().await.unwrap();
            if next.contains("/v1/coldstart/") {
                return next;
            }
        }
    })
    .await
    .expect("a cold-start report");
    assert_eq!(report, "POST /v1/coldstart/ns/f");
    let (s, _, _) = send(get(&h, HOST, "/again")).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        activations.try_recv().is_err(),
        "a warm request reports nothing"
    );
}

#[tokio::test]
async fn the_wake_up_is_repeated_while_requests_stay_parked() {
    let (controller, mut activations) = fake_controller().await;
    let mut config = siesta_activator::Config::loopback();
    config.controller_url = vec!["http://127.0.0.1:1".into(), controller];
    config.wake_interval = Duration::from_millis(100);
    let h = Harness::start(config).await;
    h.function("f", cfg(), &[]).await;
    let pending = tokio::spawn(send(get(&h, HOST, "/")));
    for _ in 0..3 {
        let s = tokio::time::timeout(Duration::from_secs(5), activations.recv())
            .await
            .expect("activation not repeated (or the dead first controller was not skipped)");
        assert_eq!(s.as_deref(), Some("POST /v1/activate/ns/f"));
    }
    pending.abort();
}

#[tokio::test]
async fn a_refused_wake_up_answers_parked_requests_503_at_once_with_the_reason() {
    const REASON: &str = "function ns/f cannot be woken: Deployment ns/f is not controlled by Function ns/f: it has no controller owner reference; Siesta never scales, patches or wakes a workload it does not own\n";
    let (controller, mut activations) = refusing_controller(REASON).await;
    let mut config = siesta_activator::Config::loopback();
    config.controller_url = vec![controller];
    config.wake_interval = Duration::from_secs(2);
    let h = Harness::start(config).await;
    let mut c = cfg();
    c.queue_timeout = Duration::from_secs(30);
    let key = h.function("f", c, &[]).await;

    // A burst at zero: every request is answered long before its 30 s
    // queue timeout, with the controller's reason.
    let t0 = Instant::now();
    let burst: Vec<_> = (0..5)
        .map(|_| tokio::spawn(send(get(&h, HOST, "/"))))
        .collect();
    for r in burst {
        let (s, headers, body) = r.await.unwrap();
        assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            body.starts_with("function ns/f cannot be started: the controller refused to wake it: function ns/f cannot be woken: Deployment ns/f is not controlled by Function ns/f"),
            "{body}"
        );
        assert!(
            !headers.contains_key("retry-after"),
            "retrying does not help"
        );
    }
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "answered at once, not at the queue timeout: {:?}",
        t0.elapsed()
    );
    let signal = activations.recv().await.unwrap();
    assert_eq!(signal, "POST /v1/activate/ns/f");

    // Within one wake interval the refusal stands without asking again.
    let (s, _, body) = send(get(&h, HOST, "/")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body.contains("is not controlled by Function ns/f"),
        "{body}"
    );
    assert!(
        activations.try_recv().is_err(),
        "one signal for the burst and the request after it"
    );

    // After it, the controller is asked again (the conflict may be gone).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (s, _, _) = send(get(&h, HOST, "/")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let signal = tokio::time::timeout(Duration::from_secs(5), activations.recv())
        .await
        .expect("asked again after the wake interval")
        .unwrap();
    assert_eq!(signal, "POST /v1/activate/ns/f");

    let m = h.metrics().await;
    let labels = r#"function="f",namespace="ns""#;
    assert_eq!(
        sample(
            &m,
            &format!(
                r#"siesta_activator_rejected_requests_total{{{labels},reason="activation_refused"}}"#
            )
        ),
        Some(7.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"siesta_activator_requests_total{{code="503",{labels}}}"#)
        ),
        Some(7.0),
        "{m}"
    );
    let entry = h.control.index().get(&key).unwrap();
    assert_eq!(entry.metrics.queued(), 0);
    assert_eq!(entry.metrics.in_flight(), 0);
}

#[tokio::test]
async fn a_burst_of_parked_requests_is_answered_in_arrival_order() {
    let h = Harness::default().await;
    let mut c = cfg();
    c.container_concurrency = 1; // one at a time, so the pod sees the release order
    let key = h.function("f", c, &[]).await;
    let entry = h.control.index().get(&key).unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let req = Request::get(h.url("/"))
            .header("host", HOST)
            .header("x-seq", i.to_string())
            .body(empty())
            .unwrap();
        tasks.push(tokio::spawn(send(req)));
        while entry.metrics.queued() < i + 1 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let pod = counting(Duration::from_millis(5)).await;
    h.set_pods(&key, &[pod.addr]).await;
    for (i, t) in tasks.into_iter().enumerate() {
        let (s, _, body) = t.await.unwrap();
        assert_eq!((s, body), (StatusCode::OK, i.to_string()));
    }
    let order = pod.order.lock().unwrap().clone();
    let expected: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    assert_eq!(order, expected);
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let h = Harness::default().await;
    let mut c = cfg();
    c.queue_max = 2;
    let key = h.function("f", c, &[]).await;
    let entry = h.control.index().get(&key).unwrap();
    let parked: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send(get(&h, HOST, "/"))))
        .collect();
    while entry.metrics.queued() < 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let (s, headers, _) = send(get(&h, HOST, "/")).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "1");
    let m = h.metrics().await;
    assert_eq!(
        sample(
            &m,
            r#"siesta_activator_rejected_requests_total{function="f",namespace="ns",reason="queue_full"}"#
        ),
        Some(1.0)
    );
    for p in parked {
        p.abort();
    }
}

#[tokio::test]
async fn no_pod_within_the_queue_timeout_answers_504() {
    let h = Harness::default().await;
    let mut c = cfg();
    c.queue_timeout = Duration::from_millis(1000);
    let key = h.function("f", c, &[]).await;
    let t0 = Instant::now();
    let (s, _, body) = send(get(&h, HOST, "/")).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    assert!(body.contains("queue.timeoutSeconds"), "{body}");
    assert!(t0.elapsed() >= Duration::from_millis(1000));
    let entry = h.control.index().get(&key).unwrap();
    assert_eq!(
        entry.metrics.queued(),
        0,
        "the timed-out request left the queue"
    );
    assert_eq!(entry.metrics.in_flight(), 0);
}

#[tokio::test]
async fn a_request_over_its_timeout_answers_504() {
    let h = Harness::default().await;
    let be = echo().await;
    let mut c = cfg();
    c.timeout = Duration::from_millis(500);
    let key = h.function("f", c, &[be]).await;
    let (s, _, _) = send(get(&h, HOST, "/sleep/3000")).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    let entry = h.control.index().get(&key).unwrap();
    assert_eq!(entry.metrics.in_flight(), 0);
    let (s, _, _) = send(get(&h, HOST, "/sleep/10")).await;
    assert_eq!(s, StatusCode::OK, "the slot was given back");
}

#[tokio::test]
async fn container_concurrency_is_honoured_per_pod_and_excess_waits() {
    let h = Harness::default().await;
    let a = counting(Duration::from_millis(150)).await;
    let b = counting(Duration::from_millis(150)).await;
    let mut c = cfg();
    c.container_concurrency = 1;
    h.function("f", c, &[a.addr, b.addr]).await;
    let tasks: Vec<_> = (0..6)
        .map(|_| tokio::spawn(send(get(&h, HOST, "/"))))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(a.max.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(b.max.load(std::sync::atomic::Ordering::SeqCst), 1);
    let total = a.total.load(std::sync::atomic::Ordering::SeqCst)
        + b.total.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(total, 6);
}

#[tokio::test]
async fn least_in_flight_spreads_concurrent_requests() {
    use std::sync::atomic::Ordering::SeqCst;
    let h = Harness::default().await;
    let a = counting(Duration::from_millis(200)).await;
    let b = counting(Duration::from_millis(200)).await;
    h.function("f", cfg(), &[a.addr, b.addr]).await;
    let tasks: Vec<_> = (0..10)
        .map(|_| tokio::spawn(send(get(&h, HOST, "/"))))
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(a.total.load(SeqCst), 5);
    assert_eq!(b.total.load(SeqCst), 5);
}

#[tokio::test]
async fn requests_go_to_the_pod_with_fewer_in_flight_not_round_robin() {
    use std::sync::atomic::Ordering::SeqCst;
    let h = Harness::default().await;
    let slow = counting(Duration::from_millis(1500)).await;
    let fast = counting(Duration::from_millis(20)).await;
    h.function("f", cfg(), &[slow.addr, fast.addr]).await;
    // One request on each pod; the slow pod's is still in flight after.
    let first: Vec<_> = (0..2)
        .map(|_| tokio::spawn(send(get(&h, HOST, "/"))))
        .collect();
    let arrived = |c: &Counting| c.order.lock().unwrap().len();
    let start = Instant::now();
    while (arrived(&slow), fast.total.load(SeqCst)) != (1, 1) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "one request on each pod: slow {}, fast {}",
            arrived(&slow),
            fast.total.load(SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // One after another, each finding the slow pod busy: all to the fast one
    // (round-robin would send half of them to the slow pod).
    for _ in 0..6 {
        assert_eq!(send(get(&h, HOST, "/")).await.0, StatusCode::OK);
    }
    assert_eq!(arrived(&slow), 1);
    assert_eq!(fast.total.load(SeqCst), 7);
    for t in first {
        assert_eq!(t.await.unwrap().0, StatusCode::OK);
    }
}

#[tokio::test]
async fn chunked_bodies_stream_both_ways() {
    let h = Harness::default().await;
    let be = echo().await;
    h.function("f", cfg(), &[be]).await;
    let req = Request::post(h.url("/echo"))
        .header("host", HOST)
        .body(generated(1_000_000))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get("content-length").is_none(),
        "streamed, not buffered"
    );
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(body.len(), 1_000_000);
    assert!(body.iter().all(|b| *b == b'x'));
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let h = Harness::default().await;
    let be = websocket_echo().await;
    let key = h.function("f", cfg(), &[be]).await;
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        format!("ws://{}/fn/ns/f/ws", h.addr),
    )
    .unwrap();
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..3 {
        ws.send(tokio_tungstenite::tungstenite::Message::text(format!(
            "hi {i}"
        )))
        .await
        .unwrap();
        let back = ws.next().await.unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), format!("hi {i}"));
    }
    let entry = h.control.index().get(&key).unwrap();
    assert_eq!(
        entry.metrics.in_flight(),
        1,
        "an open WebSocket is in flight"
    );
    ws.close(None).await.unwrap();
    drop(ws);
    for _ in 0..200 {
        if entry.metrics.in_flight() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the closed WebSocket was still counted in flight");
}

#[tokio::test]
async fn h2c_to_an_h2c_pod_and_from_an_h2c_client() {
    let h = Harness::default().await;
    let h2_pod = backend(true, echo_handler).await;
    let mut c = cfg();
    c.protocol = Protocol::H2c;
    h.function("h2", c, &[h2_pod]).await;
    let (s, _, body) = send(get(&h, "h2.ns.siesta.local", "/x")).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "GET /x HTTP/2.0"));

    let h1_pod = echo().await;
    h.function("f", cfg(), &[h1_pod]).await;
    let req = Request::get(format!("http://{HOST}:{}/y", h.addr.port()))
        .body(empty())
        .unwrap();
    // Connect to the activator while naming the function in :authority.
    let io = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(io),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    assert_eq!(&body[..], b"GET /y HTTP/1.1");

    let (s, _, _) = send(
        Request::get(format!("http://{}/fn/ns/f/z", h.addr))
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let resp = h2_client()
        .request(
            Request::get(format!("http://{}/fn/ns/f/z", h.addr))
                .body(empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_failed_connect_is_retried_on_another_pod() {
    let h = Harness::default().await;
    let good = counting(Duration::ZERO).await;
    // A pod that accepted the probe, then died.
    let dying = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = dying.local_addr().unwrap();
    let key = h.function("f", cfg(), &[dead, good.addr]).await;
    drop(dying);
    for _ in 0..6 {
        let (s, _, _) = send(get(&h, HOST, "/")).await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(good.total.load(std::sync::atomic::Ordering::SeqCst), 6);
    let entry = h.control.index().get(&key).unwrap();
    assert_eq!(entry.metrics.in_flight(), 0);

    // With only the dead pod left there is nowhere to retry: 502.
    h.control.set_endpoints(&key, &[dead]);
    let (s, _, _) = send(get(&h, HOST, "/")).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_and_forwarded_headers_set() {
    let h = Harness::default().await;
    let be = echo().await;
    h.function("f", cfg(), &[be]).await;
    let req = Request::get(h.url("/headers"))
        .header("host", HOST)
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "secret")
        .header("keep-alive", "timeout=5")
        .header("proxy-authorization", "Basic eA==")
        .header("te", "gzip")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-end-to-end", "kept")
        .body(empty())
        .unwrap();
    let (s, _, body) = send(req).await;
    assert_eq!(s, StatusCode::OK);
    let lower = body.to_ascii_lowercase();
    for gone in [
        "x-hop:",
        "keep-alive:",
        "proxy-authorization:",
        "\nte:",
        "connection: keep-alive, x-hop",
    ] {
        assert!(!lower.contains(gone), "{gone} was forwarded:\n{body}");
    }
    assert!(lower.contains("x-end-to-end: kept"), "{body}");
    assert!(
        lower.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "{body}"
    );
    assert!(lower.contains("x-forwarded-proto: http"), "{body}");
    assert!(
        lower.contains("x-forwarded-host: f.ns.siesta.local"),
        "{body}"
    );
    assert!(lower.contains("host: f.ns.siesta.local"), "{body}");
    // Each once: the client's own X-Forwarded-For is replaced, not kept
    // beside ours.
    for name in [
        "x-forwarded-for:",
        "x-forwarded-proto:",
        "x-forwarded-host:",
        "\nforwarded:",
    ] {
        assert_eq!(lower.matches(name).count(), 1, "{name}\n{body}");
    }
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let h = Harness::default().await;
    let be = echo().await;
    h.function("f", cfg(), &[be]).await;
    let req = Request::get(h.url("/"))
        .header("host", HOST)
        .header("x-big", "a".repeat(100_000))
        .body(empty())
        .unwrap();
    let (s, _, _) = send(req).await;
    assert_eq!(s, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn a_client_that_trickles_its_first_bytes_is_still_served() {
    // "P" alone could start POST or the HTTP/2 preface: the listener must
    // wait for more instead of guessing.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::default().await;
    let be = echo().await;
    h.function("f", cfg(), &[be]).await;
    let mut io = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    io.write_all(b"P").await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    io.write_all(b"OST /echo HTTP/1.1\r\nHost: f.ns.siesta.local\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi")
        .await
        .unwrap();
    let mut resp = String::new();
    io.read_to_string(&mut resp).await.unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.ends_with("hi"), "{resp}");
}

/// Waits (up to 10 s) until the activator holds `n` requests for `key`: a
/// test that acts on an in-flight request must not guess when it arrived.
async fn wait_in_flight(h: &Harness, key: &FunctionKey, n: i64) {
    let entry = h.control.index().get(key).expect("the function's entry");
    let start = Instant::now();
    while entry.metrics.in_flight() != n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{} in flight, waited for {n}",
            entry.metrics.in_flight()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests_and_refuses_new_connections() {
    let mut h = Harness::default().await;
    let be = echo().await;
    let key = h.function("f", cfg(), &[be]).await;
    assert_eq!(h.readyz().await, StatusCode::OK);
    let slow = tokio::spawn(send(get(&h, HOST, "/sleep/1500")));
    wait_in_flight(&h, &key, 1).await;
    h.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        tokio::net::TcpStream::connect(h.addr).await.is_err(),
        "new connections are refused while draining"
    );
    assert!(!h.task.is_finished(), "still draining");
    let (s, _, body) = slow.await.unwrap();
    assert_eq!((s, body.as_str()), (StatusCode::OK, "slept"));
    tokio::time::timeout(Duration::from_secs(5), &mut h.task)
        .await
        .expect("serve did not return after the drain")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_connection_that_never_sent_a_byte_does_not_hold_up_the_drain() {
    // Client pools open connections they may never use (hyper-util's
    // opens one while the previous is on its way back): the drain must not
    // wait out the header read timeout for them.
    let mut config = siesta_activator::Config::loopback();
    config.drain_timeout = Duration::from_secs(30);
    config.header_read_timeout = Duration::from_secs(30);
    let mut h = Harness::start(config).await;
    let be = echo().await;
    h.function("f", cfg(), &[be]).await;
    let silent = tokio::net::TcpStream::connect(h.addr)
        .await
        .expect("connect");
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.shutdown();
    tokio::time::timeout(Duration::from_secs(5), &mut h.task)
        .await
        .expect("the drain waited for a connection that sent nothing")
        .unwrap()
        .unwrap();
    drop(silent);
}

#[tokio::test]
async fn the_shutdown_delay_keeps_serving_while_not_ready() {
    let mut config = siesta_activator::Config::loopback();
    config.shutdown_delay = Duration::from_millis(800);
    let mut h = Harness::start(config).await;
    let be = echo().await;
    h.function("f", cfg(), &[be]).await;
    h.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.readyz().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        send(get(&h, HOST, "/")).await.0,
        StatusCode::OK,
        "new requests are still served during the shutdown delay"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        tokio::net::TcpStream::connect(h.addr).await.is_err(),
        "the listener closes when the delay ends"
    );
    tokio::time::timeout(Duration::from_secs(5), &mut h.task)
        .await
        .expect("serve did not return after the delay and drain")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn the_drain_is_bounded_by_the_drain_timeout() {
    let mut config = siesta_activator::Config::loopback();
    config.drain_timeout = Duration::from_millis(300);
    let mut h = Harness::start(config).await;
    let be = echo().await;
    let key = h.function("f", cfg(), &[be]).await;
    let slow = tokio::spawn(try_send(get(&h, HOST, "/sleep/10000")));
    wait_in_flight(&h, &key, 1).await;
    let asked = Instant::now();
    h.shutdown();
    tokio::time::timeout(Duration::from_secs(3), &mut h.task)
        .await
        .expect("the drain was not bounded")
        .unwrap()
        .unwrap();
    // It waited for the request (up to the drain timeout), then cut it.
    assert!(
        asked.elapsed() >= Duration::from_millis(250),
        "returned after {:?}, without draining",
        asked.elapsed()
    );
    let cut = tokio::time::timeout(Duration::from_secs(3), slow)
        .await
        .expect("the cut request ends at once")
        .unwrap();
    assert!(cut.is_err(), "the 10 s request was answered: {cut:?}");
}

#[tokio::test]
async fn metrics_count_a_known_sequence_exactly() {
    let h = Harness::default().await;
    let be = echo().await;
    h.function("f", cfg(), &[be]).await;
    for _ in 0..3 {
        assert_eq!(send(get(&h, HOST, "/")).await.0, StatusCode::OK);
    }
    assert_eq!(
        send(get(&h, "nope.ns.siesta.local", "/")).await.0,
        StatusCode::NOT_FOUND
    );
    let before = {
        let m = h.metrics().await;
        sample(
            &m,
            r#"siesta_activator_concurrency_seconds_total{function="f",namespace="ns"}"#,
        )
        .unwrap()
    };
    // Two requests in flight for ~1 s add ~2 s of concurrency.
    let t0 = Instant::now();
    let a = tokio::spawn(send(get(&h, HOST, "/sleep/1000")));
    let b = tokio::spawn(send(get(&h, HOST, "/sleep/1000")));
    assert_eq!(a.await.unwrap().0, StatusCode::OK);
    assert_eq!(b.await.unwrap().0, StatusCode::OK);
    let wall = t0.elapsed().as_secs_f64();

    let m = h.metrics().await;
    let ns = r#"function="f",namespace="ns""#;
    assert_eq!(
        sample(
            &m,
            &format!(r#"siesta_activator_requests_total{{code="200",{ns}}}"#)
        ),
        Some(5.0),
        "{m}"
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"siesta_activator_request_duration_seconds_count{{{ns}}}"#)
        ),
        Some(5.0)
    );
    assert_eq!(
        sample(
            &m,
            &format!(r#"siesta_activator_in_flight_requests{{{ns}}}"#)
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&m, &format!(r#"siesta_activator_queued_requests{{{ns}}}"#)),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &m,
            r#"siesta_activator_rejected_requests_total{function="",namespace="",reason="unknown_function"}"#
        ),
        Some(1.0)
    );
    let after = sample(
        &m,
        &format!(r#"siesta_activator_concurrency_seconds_total{{{ns}}}"#),
    )
    .unwrap();
    let added = after - before;
    assert!(
        added >= 2.0 && added <= 2.0 * wall + 0.01,
        "added {added}, wall {wall}"
    );
}

#[tokio::test]
async fn two_serving_threads_answer_every_connection_and_drain_together() {
    let mut h = Harness::start(siesta_activator::Config {
        serving_threads: 2,
        ..siesta_activator::Config::loopback()
    })
    .await;
    let be = echo().await;
    let key = h.function("f", cfg(), &[be]).await;
    // Each send is its own connection: the kernel spreads them over both
    // threads' listeners.
    let tasks: Vec<_> = (0..40)
        .map(|i| tokio::spawn(send(get(&h, HOST, &format!("/{i}")))))
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let (s, _, body) = t.await.unwrap();
        assert_eq!((s, body), (StatusCode::OK, format!("GET /{i} HTTP/1.1")));
    }
    // Other tests here run one serving thread each (`serve-0`); only
    // this activator has a second.
    assert!(
        thread_names().iter().any(|n| n == "serve-1"),
        "a second serving thread runs: {:?}",
        thread_names()
    );
    let slow: Vec<_> = (0..6)
        .map(|_| tokio::spawn(send(get(&h, HOST, "/sleep/1000"))))
        .collect();
    wait_in_flight(&h, &key, 6).await;
    h.shutdown();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..8 {
        assert!(
            tokio::net::TcpStream::connect(h.addr).await.is_err(),
            "every thread's listener is closed while draining"
        );
    }
    for t in slow {
        let (s, _, body) = t.await.unwrap();
        assert_eq!((s, body.as_str()), (StatusCode::OK, "slept"));
    }
    tokio::time::timeout(Duration::from_secs(5), &mut h.task)
        .await
        .expect("serve did not return after both threads drained")
        .unwrap()
        .unwrap();
}

/// The names of this process's threads (the serving threads are
/// `serve-N`, see `siesta_activator::serving`).
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|name| name.trim().to_owned())
        .collect()
}
