//! The client's faults are the client's (issue 12 §3): a malformed request
//! body gets 400, a client that leaves mid-body is counted as 499, a body
//! over the Function's `maxRequestBodyBytes` gets 413, and none of them is
//! blamed on the pod (no `upstream_*` rejection, nothing sent again), over
//! raw sockets against a real activator and an echoing backend.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use siesta_activator::index::FunctionConfig;
use siesta_activator::route::FunctionKey;
use siesta_reliability::backend::{raw, serve, status};
use siesta_reliability::{ActivatorRun, metric_sum};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What the backend saw of each request: its body length, or the error
/// reading it.
type Seen = Arc<Mutex<Vec<Result<usize, String>>>>;

async fn echo_backend() -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let addr = serve(move |req: Request<Incoming>| {
        let seen = s2.clone();
        async move {
            let got = req.into_body().collect().await.map(|c| c.to_bytes().len());
            let text = format!("{got:?}");
            seen.lock()
                .expect("lock")
                .push(got.map_err(|e| e.to_string()));
            Response::new(Full::new(Bytes::from(text)))
        }
    })
    .await;
    (addr, seen)
}

async fn setup(limit: Option<u64>) -> (ActivatorRun, Seen) {
    let run = ActivatorRun::start(None, siesta_activator::Config::loopback())
        .await
        .expect("activator");
    let (be, seen) = echo_backend().await;
    let key = FunctionKey::new("ns", "f");
    run.control.apply_function(
        key.clone(),
        FunctionConfig {
            port: be.port(),
            max_request_body_bytes: limit,
            ..FunctionConfig::default()
        },
    );
    run.control.set_endpoints(&key, &[be]);
    run.wait_endpoints("ns", "f", 1, Duration::from_secs(5))
        .await;
    (run, seen)
}

fn blamed_on_the_pod(m: &str) -> f64 {
    [
        "upstream_unavailable",
        "upstream_closed",
        "upstream_bad_response",
    ]
    .iter()
    .map(|r| {
        metric_sum(
            m,
            "siesta_activator_rejected_requests_total",
            &format!("reason=\"{r}\""),
        )
    })
    .sum::<f64>()
        + metric_sum(m, "siesta_activator_upstream_replays_total", "")
}

const HEAD: &str = "POST /up HTTP/1.1\r\nHost: f.ns.siesta.local\r\n";

#[tokio::test]
async fn a_malformed_chunked_body_gets_400_and_no_pod_is_blamed() {
    let (run, seen) = setup(None).await;
    let cases: [(&str, &str); 4] = [
        (
            "chunk size overflow",
            "fffffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
        ),
        ("negative chunk size", "-5\r\nabcde\r\n0\r\n\r\n"),
        ("chunk size not hex", "zz\r\nabc\r\n0\r\n\r\n"),
        ("chunk longer than announced", "3\r\nabcdefgh\r\n0\r\n\r\n"),
    ];
    for (what, body) in cases {
        let req = format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n{body}");
        let resp = raw(run.traffic, req.as_bytes()).await;
        assert_eq!(status(&resp), Some(400), "{what}: {resp}");
        assert!(resp.contains("malformed"), "{what}: {resp}");
    }
    let m = run.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "siesta_activator_rejected_requests_total",
            "reason=\"bad_request_body\""
        ),
        4.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(&m, "siesta_activator_requests_total", "code=\"400\""),
        4.0
    );
    assert_eq!(blamed_on_the_pod(&m), 0.0, "{m}");
    // The backend saw, at most, bodies cut short; never a whole one.
    assert!(seen.lock().expect("lock").iter().all(Result::is_err));
    // And the function still works.
    let ok = raw(
        run.traffic,
        format!("{HEAD}Content-Length: 3\r\nConnection: close\r\n\r\nabc").as_bytes(),
    )
    .await;
    assert_eq!(status(&ok), Some(200), "{ok}");
    assert!(ok.ends_with("Ok(3)"), "{ok}");
}

#[tokio::test]
async fn a_client_that_leaves_mid_body_is_counted_499_not_as_a_pod_failure() {
    let (run, _seen) = setup(None).await;
    for _ in 0..3 {
        let mut s = TcpStream::connect(run.traffic).await.expect("connect");
        s.write_all(format!("{HEAD}Content-Length: 100000\r\n\r\n").as_bytes())
            .await
            .expect("write");
        s.write_all(&[b'x'; 1000]).await.expect("write");
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(s);
    }
    let mut m = String::new();
    for _ in 0..100 {
        m = run.metrics().await;
        if metric_sum(&m, "siesta_activator_requests_total", "code=\"499\"") >= 3.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        metric_sum(&m, "siesta_activator_requests_total", "code=\"499\""),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric_sum(
            &m,
            "siesta_activator_rejected_requests_total",
            "reason=\"client_closed\""
        ),
        3.0
    );
    assert_eq!(blamed_on_the_pod(&m), 0.0, "{m}");
}

#[tokio::test]
async fn a_body_over_max_request_body_bytes_gets_413() {
    let (run, seen) = setup(Some(1000)).await;
    // Said up front: refused before anything is sent to the pod.
    let resp = raw(
        run.traffic,
        format!("{HEAD}Content-Length: 5000\r\n\r\n{}", "x".repeat(5000)).as_bytes(),
    )
    .await;
    assert_eq!(status(&resp), Some(413), "{resp}");
    assert!(resp.contains("maxRequestBodyBytes (1000 bytes)"), "{resp}");
    assert!(
        seen.lock().expect("lock").is_empty(),
        "nothing reached the pod"
    );
    // Found out while streaming: the pod's request is cut off, the client
    // gets 413.
    let chunk = format!("400\r\n{}\r\n", "y".repeat(1024));
    let resp = raw(
        run.traffic,
        format!("{HEAD}Transfer-Encoding: chunked\r\n\r\n{chunk}{chunk}0\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(status(&resp), Some(413), "{resp}");
    // At the limit exactly: forwarded whole.
    let resp = raw(
        run.traffic,
        format!(
            "{HEAD}Content-Length: 1000\r\nConnection: close\r\n\r\n{}",
            "z".repeat(1000)
        )
        .as_bytes(),
    )
    .await;
    assert_eq!(status(&resp), Some(200), "{resp}");
    assert!(resp.ends_with("Ok(1000)"), "{resp}");
    let m = run.metrics().await;
    assert_eq!(
        metric_sum(
            &m,
            "siesta_activator_rejected_requests_total",
            "reason=\"body_too_large\""
        ),
        2.0
    );
    assert_eq!(
        metric_sum(&m, "siesta_activator_requests_total", "code=\"413\""),
        2.0
    );
    assert_eq!(blamed_on_the_pod(&m), 0.0, "{m}");
}
