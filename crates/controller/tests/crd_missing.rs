//! Without the Function CRD the controller must not crash-loop: it keeps
//! retrying and `/readyz` says why it is not ready. A fake apiserver on
//! loopback that answers 404 to everything stands in for a cluster without
//! the CRD (the shared local cluster's CRD must not be removed).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn fake_apiserver_without_crds() -> std::net::SocketAddr {
    siesta_testkit::backend::serve(|_req| async {
        let body = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"the server could not find the requested resource","reason":"NotFound","details":{},"code":404}"#;
        let mut resp = http::Response::new(Full::new(Bytes::from(body)));
        *resp.status_mut() = http::StatusCode::NOT_FOUND;
        resp.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        resp
    })
    .await
}

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let code = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (
        code,
        out.split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default(),
    )
}

#[tokio::test]
async fn without_the_crd_it_waits_not_ready_instead_of_crashing() {
    let api = fake_apiserver_without_crds().await;
    let config = kube::Config::new(format!("http://{api}").parse().expect("url"));
    let client = kube::Client::try_from(config).expect("client");
    let mut cfg = siesta_controller::Config::defaults();
    cfg.admin_addr = "127.0.0.1:0".parse().expect("addr");
    cfg.identity = Some("t".into());
    let mut running = siesta_controller::start(client, cfg).await.expect("start");
    let admin = running.admin_addr();

    // Still running after several retries, alive but not ready, saying why.
    let ended = tokio::time::timeout(Duration::from_secs(3), running.until_stopped()).await;
    assert!(
        ended.is_err(),
        "the controller stopped without the CRD: {ended:?}"
    );
    assert_eq!(get(admin, "/healthz").await.0, 200);
    let (code, body) = get(admin, "/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("kubectl apply -f crds/function.yaml"),
        "{body}"
    );
    assert!(!running.is_leader());
    running
        .shutdown()
        .await
        .expect("clean shutdown while waiting for the CRD");
}
