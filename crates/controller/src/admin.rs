//! The admin HTTP server (`--admin-addr`): `/metrics`, `/healthz`,
//! `/readyz`, the activation endpoint, the cold-start endpoint and the
//! decision history (`GET /v1/decisions/NS/NAME`, leader only: a standby
//! answers 503 naming the leader). Every replica serves it, leader or not.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use siesta_api::lifecycle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::context::Context;
use crate::error::api_call;
use crate::{activation, cold_start};

/// The path prefix of the decision history.
pub const DECISIONS_PREFIX: &str = "/v1/decisions/";

type Body = Full<Bytes>;

/// Serves until `stop`, then lets open connections finish their request.
pub async fn serve(listener: TcpListener, ctx: Arc<Context>, stop: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    let serve_connection = |stream| {
        let ctx = ctx.clone();
        let stop = stop.clone();
        async move {
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
        }
    };
    lifecycle::accept_until(
        &listener,
        "the admin server",
        std::time::Duration::from_millis(100),
        stop.cancelled(),
        |stream, _peer| {
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(stream));
        },
    )
    .await;
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
        return cold_start_report(ctx, &key, req.into_body()).await;
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
    if let Some(parsed) = activation::parse_path_under(DECISIONS_PREFIX, path) {
        if method != Method::GET && method != Method::HEAD {
            return method_not_allowed("GET");
        }
        return match parsed {
            Err(activation::BadPath(why)) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
            Ok(key) => decisions(ctx, key).await,
        };
    }
    fixed_path(ctx, method, path)
}

/// `POST /v1/coldstart/NS/NAME`: an activator's record of one cold start,
/// at most [`cold_start::MAX_REPORT_BYTES`].
async fn cold_start_report(
    ctx: &Context,
    key: &siesta_api::names::FunctionKey,
    body: Incoming,
) -> Response<Body> {
    let body = Limited::new(body, cold_start::MAX_REPORT_BYTES);
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
    match cold_start::parse_report(&bytes) {
        Err(why) => text(StatusCode::BAD_REQUEST, format!("{why}\n")),
        Ok(report) => {
            let answer = cold_start::record(ctx, key, report).await;
            let status =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            text(status, answer.body)
        }
    }
}

/// `/metrics`, `/healthz`, `/readyz` (GET or HEAD), and 404 for the rest.
fn fixed_path(ctx: &Context, method: &Method, path: &str) -> Response<Body> {
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
            "not found; try /metrics, /healthz, /readyz, GET /v1/decisions/NAMESPACE/NAME, POST /v1/activate/NAMESPACE/NAME or POST /v1/coldstart/NAMESPACE/NAME\n",
        ),
    }
}

/// `GET /v1/decisions/NS/NAME`: the leader's recent decisions as JSON; 404
/// when it has decided nothing for that Function; 503 on a standby, naming
/// the leader when the Lease says who it is.
async fn decisions(ctx: &Context, key: siesta_api::names::FunctionKey) -> Response<Body> {
    if !ctx.is_leader() {
        let holder = match ctx.lease.get() {
            Some((ns, name)) => {
                let api: kube::Api<k8s_openapi::api::coordination::v1::Lease> =
                    kube::Api::namespaced(ctx.client.clone(), ns);
                api_call(|| format!("read Lease {ns}/{name}"), api.get_opt(name))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|l| l.spec?.holder_identity)
                    .filter(|h| !h.is_empty())
                    .map(|h| format!("{h} (Lease {ns}/{name})"))
            }
            None => None,
        };
        let mut resp = text(
            StatusCode::SERVICE_UNAVAILABLE,
            match &holder {
                Some(h) => format!(
                    "this replica is not the leader; only the leader decides: ask {h}\n"
                ),
                None => "this replica is not the leader and does not know who is; only the leader decides\n".to_string(),
            },
        );
        if let Some(h) = holder
            && let Ok(v) = header::HeaderValue::from_str(h.split(' ').next().unwrap_or(""))
        {
            resp.headers_mut().insert("siesta-leader", v);
        }
        return resp;
    }
    let Some(records) = ctx.decisions.get(&key) else {
        return text(
            StatusCode::NOT_FOUND,
            format!(
                "no decisions recorded for {key}: not a Function, or this leader has not decided it yet (it decides every --autoscale-interval)\n"
            ),
        );
    };
    let body = siesta_api::decisions::DecisionHistory {
        namespace: key.namespace,
        name: key.name,
        decisions: records,
    };
    match serde_json::to_string(&body) {
        Ok(json) => {
            let mut resp = text(StatusCode::OK, json);
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the decisions: {e}\n"),
        ),
    }
}
