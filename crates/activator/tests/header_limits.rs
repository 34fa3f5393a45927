//! How many header fields pass through the activator, over real sockets:
//! request heads beyond `--max-request-headers` get 431 (never a 502 or a
//! dropped connection), pod responses beyond `--max-response-headers` get
//! 502, and everything up to them passes through whole.

mod support;

use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyper_util::server::conn::auto;
use siesta_activator::index::FunctionConfig;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "f.ns.siesta.local";

/// A pod that counts the `x-h*` request headers it got (it accepts up to
/// 5,000) and answers `/respond/N` with exactly N header fields.
async fn pod() -> SocketAddr {
    let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
    builder.http1().max_headers(5000);
    siesta_testkit::backend::serve_with(builder, |req: Request<Incoming>| async move {
        let n = req
            .headers()
            .keys()
            .filter(|k| k.as_str().starts_with("x-h"))
            .count();
        let mut resp = Response::new(full(n.to_string()));
        if let Some(want) = req.uri().path().strip_prefix("/respond/") {
            let want: usize = want.parse().unwrap_or(0);
            // hyper adds content-length and date.
            for i in 2..want {
                resp.headers_mut().insert(
                    format!("x-r{i}").parse::<http::HeaderName>().unwrap(),
                    "v".parse().unwrap(),
                );
            }
        }
        resp
    })
    .await
}

/// A client that takes responses with up to 5,000 header fields.
fn big_client(h2: bool) -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
    Client::builder(TokioExecutor::new())
        .http1_max_headers(5000)
        .http2_only(h2)
        .build_http()
}

/// For HTTP/2, where the URI's authority (the activator's address) is the
/// `:authority` and a different Host would be refused (400): routed by path.
fn by_path_with_headers(h: &Harness, n: usize) -> Request<Body> {
    let mut b = Request::get(h.url("/fn/ns/f/"));
    for i in 0..n {
        b = b.header(format!("x-h{i}"), "v");
    }
    b.body(empty()).unwrap()
}

fn with_headers(h: &Harness, path: &str, n: usize) -> Request<Body> {
    let mut b = Request::get(h.url(path)).header("host", HOST);
    for i in 0..n {
        b = b.header(format!("x-h{i}"), "v");
    }
    b.body(empty()).unwrap()
}

async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Body>,
    req: Request<Body>,
) -> (StatusCode, http::HeaderMap, String) {
    let resp = client
        .request(req)
        .await
        .expect("an answer, not a dropped connection");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

async fn harness(config: siesta_activator::Config) -> Harness {
    let h = Harness::start(config).await;
    let be = pod().await;
    h.function("f", FunctionConfig::default(), &[be]).await;
    h
}

#[tokio::test]
async fn requests_with_many_headers_pass_with_the_defaults_and_one_too_many_gets_431() {
    let h = harness(siesta_activator::Config::loopback()).await;
    let limit = siesta_activator::Config::loopback().max_request_headers as usize;
    for h2 in [false, true] {
        for n in [120, 400] {
            let req = if h2 {
                by_path_with_headers(&h, n)
            } else {
                with_headers(&h, "/", n)
            };
            let (s, _, body) = call(&big_client(h2), req).await;
            assert_eq!(
                (s, body),
                (StatusCode::OK, n.to_string()),
                "{n} headers, h2 {h2}"
            );
        }
    }
    // The limit counts every field; host is one of them.
    let (s, _, body) = call(&big_client(false), with_headers(&h, "/", limit - 1)).await;
    assert_eq!((s, body), (StatusCode::OK, (limit - 1).to_string()));
    let (s, _, _) = call(&big_client(false), with_headers(&h, "/", limit)).await;
    assert_eq!(s, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn one_request_header_too_many_gets_431_on_the_wire() {
    let mut config = siesta_activator::Config::loopback();
    config.max_request_headers = 50;
    let h = harness(config).await;
    // Raw bytes, so a dropped connection could not pass for an answer.
    let head = |n: usize| {
        let mut s = format!("GET / HTTP/1.1\r\nhost: {HOST}\r\n");
        for i in 0..n {
            s.push_str(&format!("x-h{i}: v\r\n"));
        }
        s + "\r\n"
    };
    let mut answers = Vec::new();
    for n in [49, 50] {
        let mut s = tokio::net::TcpStream::connect(h.addr).await.unwrap();
        s.write_all(head(n).as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let k = s.read(&mut buf).await.unwrap();
        answers.push(String::from_utf8_lossy(&buf[..k]).into_owned());
    }
    assert!(answers[0].starts_with("HTTP/1.1 200 "), "{}", answers[0]);
    assert!(
        answers[1].starts_with("HTTP/1.1 431 "),
        "50 x-h headers and host are 51: {}",
        answers[1]
    );
}

#[tokio::test]
async fn responses_with_many_headers_pass_and_one_too_many_gets_502() {
    let h = harness(siesta_activator::Config::loopback()).await;
    let limit = siesta_activator::Config::loopback().max_response_headers as usize;
    for n in [120, 400, limit] {
        let (s, headers, _) = call(
            &big_client(false),
            with_headers(&h, &format!("/respond/{n}"), 0),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{n} response headers");
        let got = headers
            .keys()
            .filter(|k| k.as_str().starts_with("x-r"))
            .count();
        assert_eq!(got, n - 2, "every header passed through");
    }
    let (s, _, body) = call(
        &big_client(false),
        with_headers(&h, &format!("/respond/{}", limit + 1), 0),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");

    // The flag is what counts.
    let mut config = siesta_activator::Config::loopback();
    config.max_response_headers = 50;
    let h = harness(config).await;
    let (s, _, _) = call(&big_client(false), with_headers(&h, "/respond/50", 0)).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _, _) = call(&big_client(false), with_headers(&h, "/respond/51", 0)).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
}
