//! The admin port, apart from client traffic: `/metrics`, `/healthz`, `/readyz`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use siesta_api::lifecycle;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::index::Index;

/// Readiness: ready once the watches have synced, until shutdown begins.
#[derive(Default)]
pub struct Health {
    synced: AtomicBool,
    draining: AtomicBool,
}

impl Health {
    pub fn set_synced(&self) {
        self.synced.store(true, Ordering::Release);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn ready(&self) -> bool {
        self.synced.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }
}

/// Serves the admin port until the task is dropped.
pub async fn serve(listener: TcpListener, index: Arc<Index>, health: Arc<Health>) {
    let serve_connection = |stream| {
        let index = index.clone();
        let health = health.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = answer(&req, &index, &health);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    };
    lifecycle::accept_until(
        &listener,
        "the admin server",
        Duration::from_millis(20),
        std::future::pending(),
        |stream, _| serve_connection(stream),
    )
    .await;
}

fn answer<B>(req: &Request<B>, index: &Index, health: &Health) -> Response<Full<Bytes>> {
    let (status, ctype, body): (StatusCode, &'static str, Bytes) = match req.uri().path() {
        "/metrics" => {
            index.flush(Instant::now());
            (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                Bytes::from(index.metrics().encode()),
            )
        }
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if health.ready() => {
            (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n"))
        }
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            Bytes::from_static(b"not ready: watches not synced yet, or shutting down\n"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found; try /metrics, /healthz or /readyz\n"),
        ),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(ctype),
    );
    r
}
