//! The admin HTTP server (`--admin-addr`): `/metrics`, `/healthz`,
//! `/readyz`, the activation endpoint and the cold-start endpoint. Every replica serves it, leader
//! or not.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::{activation, cold_start};

type Body = Full<Bytes>;

/// Serves until `stop`, then lets open connections finish their request.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, stop: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let (stream, _peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off, don't spin.
                tracing::warn!(error = %e, "admin server could not accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let ctx = ctx.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(route(&ctx, req).await) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "admin connection ended with an error");
                    }
                }
                () = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.into())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = text(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}\n"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    resp
}

async fn route(ctx: &Context, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let method = req.method();
    if let Some(parsed) = activation::parse_path_under(cold_start::PREFIX, path) {
        if method != Method::POST {
            return method_not_allowed("POST");
        }
        let key = match parsed {
            Err(activation::BadPath(why)) => {
                return text(StatusCode::BAD_REQUEST, format!("{why}\n"));
            }
            Ok(key) => key,
        };
        let body = Limited::new(req.into_body(), cold_start::MAX_REPORT_BYTES);
        let bytes = match body.collect().await {
            Ok(c) => c.to_bytes(),
            Err(_) => {
                return text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "a cold-start report is at most {} bytes\n",
                        cold_start::MAX_REPORT_BYTES
                    ),
                );
            }
        };
        return match cold_start::parse_report(&bytes) {
            Err(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
            Ok(report) => {
                let answer = cold_start::record(ctx, &key, report).await;
                let status = StatusCode::from_u16(answer.status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                text(status, answer.body)
            }
        };
    }
    if let Some(parsed) = activation::parse_path(path) {
        if method != Method::POST {
            return method_not_allowed("POST");
        }
        return match parsed {
            Err(activation::BadPath(why)) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
            Ok(key) => {
                let answer = activation::activate(ctx, &key).await;
                let status = StatusCode::from_u16(answer.status)
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                text(status, answer.body)
            }
        };
    }
    let read_only = |resp: Response<Body>| {
        if method == Method::GET || method == Method::HEAD {
            resp
        } else {
            method_not_allowed("GET")
        }
    };
    match path {
        "/metrics" => read_only(match ctx.metrics.render() {
            Ok(body) => {
                let mut resp = text(StatusCode::OK, body);
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                resp
            }
            Err(e) => text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("could not render metrics: {e}\n"),
            ),
        }),
        "/healthz" => read_only(text(StatusCode::OK, "ok\n")),
        "/readyz" => read_only(match ctx.not_ready_because() {
            None => text(StatusCode::OK, "ok\n"),
            Some(why) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("not ready: {why}\n"),
            ),
        }),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /metrics, /healthz, /readyz, POST /v1/activate/NAMESPACE/NAME or POST /v1/coldstart/NAMESPACE/NAME\n",
        ),
    }
}
