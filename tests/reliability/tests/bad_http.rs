//! Bad HTTP against a real activator on loopback, with a recording backend
//! as the only "pod": malformed requests, oversized heads, slow clients,
//! Hosts and targets that are not a Function (404, never forwarded), and the
//! hop-by-hop / X-Forwarded-* policy.
//!
//! Policy on X-Forwarded-For (documented here and asserted): the activator
//! APPENDS the connecting client's IP to whatever X-Forwarded-For the client
//! sent, from every peer (as nginx's `$proxy_add_x_forwarded_for` and Envoy
//! with `use_remote_address: true` do); a function must trust only the
//! right-most entries, the ones added by proxies it knows.
//! X-Forwarded-Proto, X-Forwarded-Host, X-Forwarded-Prefix and Forwarded
//! are REPLACED by the activator's own values unless the peer is in
//! `--trusted-proxies` (default: none); see `request_target.rs` for the
//! trusted case, the request-target rules and the Host rules.

use std::time::{Duration, Instant};

use siesta_activator::Config;
use siesta_activator::index::FunctionConfig;
use siesta_activator::route::FunctionKey;
use siesta_reliability::ActivatorRun;
use siesta_reliability::backend::{Seen, raw, recording_backend, status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn setup(config: Config) -> (ActivatorRun, Seen) {
    let run = ActivatorRun::start(None, config).await.expect("activator");
    let (be, seen) = recording_backend().await;
    let key = FunctionKey::new("ns", "f");
    run.control.apply_function(
        key.clone(),
        FunctionConfig {
            port: be.port(),
            queue_timeout: Duration::from_secs(2),
            ..FunctionConfig::default()
        },
    );
    run.control.set_endpoints(&key, &[be]);
    run.wait_endpoints("ns", "f", 1, Duration::from_secs(2))
        .await;
    // The probe connects without a request, so nothing is recorded yet.
    (run, seen)
}

#[tokio::test]
async fn malformed_requests_get_400_and_reach_no_pod() {
    let (run, seen) = setup(Config::loopback()).await;
    let cases: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\nHost: f.ns.siesta.local\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.ns.siesta.local\r\nno colon here\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.ns.siesta.local\r\nBad Name: x\r\n\r\n",
        b"GET /\x01 HTTP/1.1\r\nHost: f.ns.siesta.local\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: f.ns.siesta.local\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET / HTTP/1.1\r\nHost: f.ns.siesta.local\r\nContent-Length: -1\r\n\r\n",
        b"\x00\x01\x02\x03\r\n\r\n",
        b"G\xc3\xa4T / HTTP/1.1\r\nHost: f.ns.siesta.local\r\n\r\n",
    ];
    let mut n400 = 0;
    for case in cases {
        let resp = raw(run.traffic, case).await;
        assert_eq!(
            status(&resp),
            Some(400),
            "{:?} answered {resp:?}",
            String::from_utf8_lossy(case)
        );
        n400 += 1;
    }
    // HTTP/1.0 and HTTP/1.1 are served; an unknown version is refused too.
    let resp = raw(
        run.traffic,
        b"GET / HTTP/9.9\r\nHost: f.ns.siesta.local\r\n\r\n",
    )
    .await;
    assert!(
        status(&resp).is_none_or(|s| s == 400 || s == 505),
        "HTTP/9.9 answered {resp:?}"
    );
    assert!(
        seen.lock().expect("lock").is_empty(),
        "a malformed request reached the pod: {:?}",
        seen.lock().expect("lock")
    );
    // The activator is still up and forwards a good request.
    let resp = raw(
        run.traffic,
        b"GET / HTTP/1.1\r\nHost: f.ns.siesta.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), Some(200), "{resp}");
    eprintln!(
        "RELIABILITY bad-http-malformed sent={} answered_400={n400} forwarded=0",
        cases.len() + 1
    );
    run.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_431() {
    let (run, seen) = setup(Config::loopback()).await;
    let big = "x".repeat(80 * 1024);
    let req = format!("GET / HTTP/1.1\r\nHost: f.ns.siesta.local\r\nX-Big: {big}\r\n\r\n");
    let resp = raw(run.traffic, req.as_bytes()).await;
    assert_eq!(status(&resp), Some(431), "{:?}", resp.get(..200));
    // Many small headers adding up to more than the limit, too.
    let mut req = String::from("GET / HTTP/1.1\r\nHost: f.ns.siesta.local\r\n");
    for i in 0..3000 {
        req.push_str(&format!("X-H{i}: {}\r\n", "y".repeat(30)));
    }
    req.push_str("\r\n");
    let resp = raw(run.traffic, req.as_bytes()).await;
    assert_eq!(status(&resp), Some(431), "{:?}", resp.get(..200));
    assert!(seen.lock().expect("lock").is_empty());
    eprintln!("RELIABILITY bad-http-oversized sent=2 answered_431=2 forwarded=0");
    run.stop().await;
}

#[tokio::test]
async fn a_slow_client_is_cut_off_after_the_header_read_timeout() {
    let (run, seen) = setup(Config {
        header_read_timeout: Duration::from_secs(1),
        ..Config::loopback()
    })
    .await;
    // Slowloris: a partial head, one byte now and then, never the end.
    let s = TcpStream::connect(run.traffic).await.expect("connect");
    let started = Instant::now();
    let (mut rd, mut wr) = s.into_split();
    wr.write_all(b"GET / HTTP/1.1\r\nHost: f.ns.siesta.local\r\n")
        .await
        .expect("write");
    // When the activator closes the connection, as seen by the client.
    let reader = tokio::spawn(async move {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        (out, started.elapsed())
    });
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        if reader.is_finished() || wr.write_all(b"X").await.is_err() {
            break;
        }
    }
    let (out, closed_after) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the activator kept a slow client's connection open")
        .expect("reader task");
    let text = String::from_utf8_lossy(&out);
    // The timer counts from the first byte of the head: not before 1 s, and
    // not much after (a generous bound, for a busy machine).
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(6),
        "a 1 s header read timeout closed the connection after {closed_after:?}"
    );
    // hyper answers 408 when the timer fires on a started head; either way the
    // connection is closed, which is what protects the activator.
    assert!(
        text.is_empty() || status(&text) == Some(408),
        "slow client got {text:?}"
    );
    assert!(seen.lock().expect("lock").is_empty());
    eprintln!(
        "RELIABILITY bad-http-slow-client closed_after={closed_after:?} response={:?}",
        status(&text)
    );
    // An idle connection that never sends anything is closed too.
    let mut idle = TcpStream::connect(run.traffic).await.expect("connect");
    let mut buf = Vec::new();
    let idle_read = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut buf)).await;
    assert!(idle_read.is_ok(), "an idle connection stayed open");
    run.stop().await;
}

#[tokio::test]
async fn hosts_and_targets_that_are_not_a_function_get_404_and_are_never_forwarded() {
    let (run, seen) = setup(Config::loopback()).await;
    let cases: Vec<(String, String)> = [
        ("127.0.0.1", "/"),
        ("127.0.0.1:8080", "/"),
        ("localhost", "/"),
        ("kubernetes.default.svc", "/api"),
        ("kubernetes.default.svc.cluster.local", "/"),
        ("kubernetes.default", "/"),
        ("evil.com", "/"),
        ("f.ns.siesta.local.evil.com", "/"),
        ("f.ns.siesta.localevil.com", "/"),
        ("evil.com.f.ns.siesta.local", "/"),
        ("x.f.ns.siesta.local", "/"),
        ("ns.siesta.local", "/"),
        ("siesta.local", "/"),
        ("169.254.169.254", "/latest/meta-data/"),
        ("[::1]", "/"),
        ("g.ns.siesta.local", "/"),
        ("f.other.siesta.local", "/"),
        ("evil.com", "/fn/../x"),
        ("evil.com", "/fn/ns/"),
        ("evil.com", "/fn/ns"),
        ("evil.com", "/fn//f/"),
        // Resolved before routing (RFC 3986 §5.2.4): `/fn/f/` and `/ns/f/`.
        // (`/x/../fn/ns/f/` is `/fn/ns/f/`, so it is the function's:
        // request_target.rs checks that it reaches ns/f as `/`.)
        ("evil.com", "/fn/ns/../f/"),
        ("evil.com", "/fn/../ns/f/"),
        ("evil.com", "/fn/ns/..%2ff/"),
        ("evil.com", "/fn/ns/f%2f..%2fg/"),
        ("evil.com", "/fn/NS/f/"),
        ("evil.com", "/fn/ns/g/"),
        ("evil.com", "//fn/ns/f/"),
        ("evil.com", "*"),
        ("", "/"),
    ]
    .into_iter()
    .map(|(h, p)| (h.to_string(), p.to_string()))
    .collect();
    let mut answered = 0;
    for (host, target) in &cases {
        let req = if host.is_empty() {
            format!("GET {target} HTTP/1.1\r\nConnection: close\r\n\r\n")
        } else {
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
        };
        let resp = raw(run.traffic, req.as_bytes()).await;
        let code = status(&resp);
        assert!(
            code == Some(404) || code == Some(400),
            "Host {host:?} target {target:?} answered {resp:?}"
        );
        answered += 1;
    }
    // Absolute-form targets: the URI's host is never contacted; without a
    // function Host it is a 404, with one the request goes to the function's
    // pod (not to the URI's host).
    let absolute = [
        "GET http://169.254.169.254/ HTTP/1.1\r\nConnection: close\r\n\r\n",
        "GET http://169.254.169.254/latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n",
        "GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: evil.com\r\nConnection: close\r\n\r\n",
        "GET http://kubernetes.default.svc/api HTTP/1.1\r\nHost: kubernetes.default.svc\r\nConnection: close\r\n\r\n",
        "CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n",
        "CONNECT f.ns.siesta.local:80 HTTP/1.1\r\nHost: f.ns.siesta.local:80\r\n\r\n",
    ];
    for req in absolute {
        let resp = raw(run.traffic, req.as_bytes()).await;
        let code = status(&resp);
        // CONNECT is refused with 405 whatever the target (the activator is
        // not a forward proxy); the others are 404.
        assert!(
            matches!(code, Some(404 | 400 | 405)),
            "{req:?} answered {resp:?}"
        );
        answered += 1;
    }
    let forwarded = seen.lock().expect("lock").len();
    assert_eq!(forwarded, 0, "forwarded: {:?}", seen.lock().expect("lock"));

    // An absolute-form target's authority names the function, not Host;
    // when the two disagree, the request is refused (400): the URI's host
    // is never a destination, and the function's Host does not smuggle a
    // request for another name in.
    let resp = raw(
        run.traffic,
        b"GET http://169.254.169.254/meta HTTP/1.1\r\nHost: f.ns.siesta.local\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&resp), Some(400), "{resp}");
    assert!(seen.lock().expect("lock").is_empty());
    eprintln!(
        "RELIABILITY bad-http-not-a-function sent={} answered_4xx={answered} forwarded=0",
        cases.len() + absolute.len()
    );
    run.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_dropped_x_forwarded_for_is_appended_and_proto_replaced() {
    let (run, seen) = setup(Config::loopback()).await;
    let req = "GET /h HTTP/1.1\r\n\
        Host: f.ns.siesta.local\r\n\
        Connection: keep-alive, X-Secret, close\r\n\
        X-Secret: s3cret\r\n\
        Upgrade: h2c\r\n\
        Keep-Alive: timeout=5\r\n\
        Proxy-Authorization: Basic Zm9vOmJhcg==\r\n\
        Proxy-Connection: keep-alive\r\n\
        TE: gzip\r\n\
        Trailer: X-T\r\n\
        X-Forwarded-For: 6.6.6.6, 10.0.0.1\r\n\
        X-Forwarded-Proto: https\r\n\
        X-Keep: yes\r\n\r\n";
    let resp = raw(run.traffic, req.as_bytes()).await;
    assert_eq!(status(&resp), Some(200), "{resp}");
    let got = seen.lock().expect("lock").clone();
    assert_eq!(got.len(), 1);
    let h = &got[0].1;
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(!h.contains_key(gone), "{gone} was forwarded: {h:?}");
    }
    assert_ne!(
        h.get("connection").and_then(|v| v.to_str().ok()),
        Some("keep-alive, X-Secret, close"),
        "the client's Connection header was forwarded as is"
    );
    assert_eq!(h.get("x-keep").map(|v| v.as_bytes()), Some(&b"yes"[..]));
    assert_eq!(
        h.get("x-forwarded-for").and_then(|v| v.to_str().ok()),
        Some("6.6.6.6, 10.0.0.1, 127.0.0.1"),
        "the client IP is appended last"
    );
    assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
    // The peer is no trusted proxy (none is, by default): its claim of
    // https is replaced by what the activator saw.
    assert_eq!(
        h.get("x-forwarded-proto").and_then(|v| v.to_str().ok()),
        Some("http")
    );
    assert_eq!(
        h.get("x-forwarded-host").and_then(|v| v.to_str().ok()),
        Some("f.ns.siesta.local")
    );
    assert_eq!(
        h.get("host").and_then(|v| v.to_str().ok()),
        Some("f.ns.siesta.local")
    );
    eprintln!(
        "RELIABILITY bad-http-headers forwarded x-forwarded-for={:?}",
        h.get("x-forwarded-for")
    );
    run.stop().await;
}
