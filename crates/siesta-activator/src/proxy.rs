//! One request, from arrival to the pod and back: route, admit (or park and
//! wake), forward with pooled connections, retry a failed connect on another
//! pod, pass upgrades through.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::{Body as _, Incoming};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use siesta_api::Protocol;
use tokio::time::{Instant, timeout_at};

use crate::body::{ProxyBody, Ticket};
use crate::forwarded;
use crate::index::{Admission, FunctionEntry, Index, LookupCache, OverBudget};
use crate::metrics::Reject;
use crate::park_budget;
use crate::request_body::{ClientFault, RequestBody, UpBody};
use crate::target::{self, Target};
use crate::trust::TrustedProxies;
use crate::upstream::{self, Next};
use crate::wake::WakeClient;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// The request path's shared state.
pub struct Proxy {
    pub index: Arc<Index>,
    pub waker: Arc<WakeClient>,
    domain: String,
    trusted_proxies: TrustedProxies,
    max_header_bytes: usize,
    /// Most header fields in a pod's HTTP/1 response (for the 502 message).
    pub max_response_headers: usize,
    http1: Client<HttpConnector, UpBody>,
    h2c: Client<HttpConnector, UpBody>,
}

impl Proxy {
    /// `max_header_bytes` bounds a request's head (request line and
    /// headers); a bigger one gets 431 and is never forwarded. A pod's
    /// HTTP/1 response with more than `max_response_headers` header fields
    /// fails (502).
    pub fn new(
        index: Arc<Index>,
        waker: Arc<WakeClient>,
        domain: String,
        max_header_bytes: usize,
        max_response_headers: usize,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        // Pods come and go; an idle connection to a gone pod is worth little,
        // and the pool must not pin memory for functions that went to zero.
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(1024)
            .pool_timer(TokioTimer::new())
            .set_host(false)
            .http1_max_headers(max_response_headers)
            .build(connector.clone());
        let h2c = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .set_host(false)
            .build(connector);
        Self {
            index,
            waker,
            domain,
            trusted_proxies: TrustedProxies::default(),
            max_header_bytes,
            max_response_headers,
            http1,
            h2c,
        }
    }

    /// Peers whose forwarding headers are kept (see [`forwarded`]).
    pub fn with_trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted_proxies = trusted;
        self
    }

    /// Answers one client request. Never fails: every error is a response.
    pub async fn handle(
        &self,
        cache: &LookupCache,
        remote: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        // hyper stops reading a head at its read buffer's limit, but how far
        // that buffer grows depends on how the bytes arrived: the limit is
        // enforced here, exactly, for HTTP/1 and HTTP/2 alike.
        if head_bytes(&req) > self.max_header_bytes {
            return local(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("request head larger than {} bytes\n", self.max_header_bytes),
            );
        }
        let hosts = req.headers().get_all(header::HOST);
        let routed =
            match target::resolve(req.method(), req.version(), req.uri(), hosts, &self.domain) {
                Ok(t) => t,
                Err(refusal) => {
                    self.index.metrics().unrouted(refusal.reject());
                    return local(refusal.status(), format!("{refusal}\n"));
                }
            };
        let Some(entry) = cache.get(&self.index, &routed.key) else {
            self.index.metrics().unknown_function();
            return local(
                StatusCode::NOT_FOUND,
                format!("function {} not found\n", routed.key),
            );
        };

        let declared = declared_length(req.headers());
        let admission = entry.admit_costing(start, declared, || park_budget::cost(&req));
        let (mut ticket, config, parked) = match admission {
            Admission::Go { addr, config, .. } => {
                (Ticket::new(entry, Some(addr), start), config, false)
            }
            Admission::TooLarge { limit } => {
                entry.metrics.request(413);
                return client_fault(&entry, ClientFault::TooLarge, limit);
            }
            Admission::Full => {
                entry.metrics.reject(Reject::QueueFull);
                entry.metrics.request(503);
                let mut r = local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "function {} has too many requests waiting; retry later\n",
                        entry.key
                    ),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
            Admission::OverBudget(over) => return over_budget(&entry, &over),
            Admission::Refused(why) => {
                entry.metrics.request(503);
                return refused(&entry, &why);
            }
            Admission::Parked {
                id,
                rx,
                config,
                wake,
            } => {
                if wake {
                    tokio::spawn(self.waker.clone().wake_loop(entry.clone()));
                }
                let mut ticket = Ticket::new(entry.clone(), None, start);
                let queue_deadline = start + config.queue_timeout;
                let request_deadline = start + config.timeout;
                let mut park = Parked {
                    entry,
                    id,
                    rx,
                    armed: true,
                };
                match timeout_at(queue_deadline.min(request_deadline), &mut park.rx).await {
                    Ok(Ok(Ok(addr))) => {
                        park.armed = false;
                        ticket.addr = Some(addr);
                    }
                    Ok(Ok(Err(why))) => {
                        park.armed = false;
                        ticket.code = 503;
                        return refused(&ticket.entry, &why);
                    }
                    Ok(Err(_)) => {
                        park.armed = false;
                        ticket.entry.metrics.reject(Reject::FunctionDeleted);
                        ticket.code = 503;
                        return local(
                            StatusCode::SERVICE_UNAVAILABLE,
                            format!("function {} was deleted\n", ticket.entry.key),
                        );
                    }
                    Err(_) => {
                        drop(park);
                        let (reason, msg) = if queue_deadline <= request_deadline {
                            (
                                Reject::QueueTimeout,
                                "no ready pod within queue.timeoutSeconds",
                            )
                        } else {
                            (
                                Reject::RequestTimeout,
                                "timeoutSeconds passed while waiting for a pod",
                            )
                        };
                        ticket.entry.metrics.reject(reason);
                        ticket.code = 504;
                        return local(
                            StatusCode::GATEWAY_TIMEOUT,
                            format!("function {}: {msg}\n", ticket.entry.key),
                        );
                    }
                }
                (ticket, config, true)
            }
        };

        let deadline = start + config.timeout;
        let upgrade = req.version() == Version::HTTP_11 && is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        let h2 = config.protocol == Protocol::H2c && !upgrade;
        let trusted = self.trusted_proxies.trusts(remote.ip());
        prepare_request_headers(&mut parts.headers, remote, trusted, &routed, upgrade, h2);
        let version = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        parts.version = version;
        let pq = PathAndQuery::from_maybe_shared(Bytes::from(routed.path_and_query))
            .unwrap_or_else(|_| PathAndQuery::from_static("/"));

        // What a replay needs (see `upstream`): the head, and the body's log.
        let body =
            (!body.is_end_stream()).then(|| RequestBody::new(body, config.max_request_body_bytes));
        let head = Head {
            method: parts.method.clone(),
            headers: parts.headers.clone(),
            version,
        };
        let idempotent = upstream::idempotent(&parts.method, &parts.headers);
        let mut up = Request::from_parts(parts, attempt_body(body.as_ref()));
        let mut attempt = 1;
        let mut resp = loop {
            let Some(addr) = ticket.addr else {
                // Unreachable by construction: every path above took a slot.
                ticket.code = 502;
                return local(StatusCode::BAD_GATEWAY, "no pod\n");
            };
            *up.uri_mut() = upstream_uri(addr, &pq);
            let client = if h2 { &self.h2c } else { &self.http1 };
            let e = match timeout_at(deadline, client.request(up)).await {
                Err(_) => {
                    ticket.entry.metrics.reject(Reject::RequestTimeout);
                    ticket.code = 504;
                    return local(
                        StatusCode::GATEWAY_TIMEOUT,
                        format!(
                            "function {}: no response within timeoutSeconds\n",
                            ticket.entry.key
                        ),
                    );
                }
                Ok(Ok(resp)) => break resp,
                Ok(Err(e)) => e,
            };
            if let Some(fault) = body.as_ref().and_then(RequestBody::fault) {
                let limit = config.max_request_body_bytes.unwrap_or(0);
                let r = client_fault(&ticket.entry, fault, limit);
                ticket.code = r.status().as_u16();
                return r;
            }
            let failure = upstream::classify(&e);
            let replay = upstream::Replay {
                attempt,
                idempotent,
                body_replayable: body.as_ref().is_none_or(RequestBody::replayable),
            };
            let again = match upstream::next(failure, replay) {
                Next::SamePod => true,
                Next::OtherPod => match ticket.entry.repick(addr) {
                    Some(next) => {
                        ticket.addr = Some(next);
                        true
                    }
                    None => {
                        ticket.addr = None;
                        false
                    }
                },
                Next::Fail => false,
            };
            if again {
                tracing::debug!(function = %ticket.entry.key, %addr, next = ?ticket.addr, ?failure, error = %e, "sending the request again");
                ticket.entry.metrics.replay(failure);
                attempt += 1;
                up = head.request(attempt_body(body.as_ref()));
                continue;
            }
            tracing::warn!(function = %ticket.entry.key, %addr, ?failure, attempt, error = %e, source = ?std::error::Error::source(&e), "upstream request failed");
            ticket.code = 502;
            let head_too_large = format!(
                "its response had too many headers (more than {}, --max-response-headers) or too large a head",
                self.max_response_headers
            );
            let (reason, why) = match failure {
                upstream::Failure::Connect => (
                    Some(Reject::UpstreamUnavailable),
                    "the pod could not be reached",
                ),
                upstream::Failure::NotProcessed | upstream::Failure::Closed => (
                    Some(Reject::UpstreamClosed),
                    if replay.body_replayable {
                        "the pod closed the connection before answering, and the request is not idempotent, so it was not sent again"
                    } else {
                        "the pod closed the connection before answering, and the request body was already streamed, so it could not be sent again"
                    },
                ),
                upstream::Failure::HeadTooLarge => {
                    (Some(Reject::UpstreamBadResponse), head_too_large.as_str())
                }
                upstream::Failure::BadResponse => (
                    Some(Reject::UpstreamBadResponse),
                    "the pod's response was not valid HTTP",
                ),
                upstream::Failure::Other => (None, "the pod could not be reached"),
            };
            if let Some(reason) = reason {
                ticket.entry.metrics.reject(reason);
            }
            return local(
                StatusCode::BAD_GATEWAY,
                format!("function {}: {why}\n", ticket.entry.key),
            );
        };

        ticket.code = resp.status().as_u16();
        if parked && let Some(report) = ticket.entry.first_byte(Instant::now()) {
            let waker = self.waker.clone();
            let key = ticket.entry.key.clone();
            tokio::spawn(async move { waker.report_cold_start(&key, report).await });
        }
        if let Some(client_upgrade) = client_upgrade
            && resp.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let pod_upgrade = hyper::upgrade::on(&mut resp);
            strip_hop_by_hop(resp.headers_mut(), true);
            tokio::spawn(tunnel(client_upgrade, pod_upgrade, ticket));
            let (parts, _) = resp.into_parts();
            return Response::from_parts(parts, ProxyBody::empty());
        }
        strip_hop_by_hop(resp.headers_mut(), false);
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, ProxyBody::upstream(body, ticket, deadline))
    }
}

/// The size of a request's head as HTTP/1 sends it: request line, then each
/// header as `name: value` and CRLF.
pub(crate) fn head_bytes<B>(req: &Request<B>) -> usize {
    let uri = req.uri();
    let target = uri.path_and_query().map_or(1, |p| p.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1\r\n".len();
    req.headers().iter().fold(line, |n, (name, value)| {
        n + name.as_str().len() + value.len() + 4
    })
}

/// 503 for a function the controller refused to wake (its Deployment is
/// not Siesta's, or its spec is invalid): nothing the client can fix, and
/// nothing waiting would fix, so it is answered at once with the
/// controller's reason and no `Retry-After`.
fn refused(entry: &FunctionEntry, why: &str) -> Response<ProxyBody> {
    entry.metrics.reject(Reject::ActivationRefused);
    local(
        StatusCode::SERVICE_UNAVAILABLE,
        format!(
            "function {} cannot be started: the controller refused to wake it: {}\n",
            entry.key,
            why.trim_end()
        ),
    )
}

/// 503 + `Retry-After: 1` for a request the activator-wide budget of parked
/// requests refused (see `park_budget`): waiting a little helps, as parked
/// requests leave when their pods come up. Logged at most once a second per
/// function, with the count.
fn over_budget(entry: &FunctionEntry, over: &OverBudget) -> Response<ProxyBody> {
    entry.metrics.reject(Reject::ParkBudget);
    entry.metrics.request(503);
    let r = &over.refusal;
    if let Some(refused) = over.log {
        tracing::warn!(
            function = %entry.key,
            refused,
            limit = r.resource.flag(),
            why = ?r.why,
            parked = r.used,
            of = r.limit,
            function_parked = r.mine,
            fair_share = r.fair_share,
            functions_parking = r.parking,
            "parked-request budget used up: answered 503 (the count is since the last such line)"
        );
    }
    let mut resp = local(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("function {}: {}; retry later\n", entry.key, r.explain()),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// A parked request; dropping it while armed leaves the queue.
struct Parked {
    entry: Arc<FunctionEntry>,
    id: u64,
    rx: tokio::sync::oneshot::Receiver<crate::index::Woken>,
    armed: bool,
}

impl Drop for Parked {
    fn drop(&mut self) {
        if self.armed {
            self.entry.cancel(self.id, &mut self.rx);
        }
    }
}

/// The head of a request as first sent, to send it again.
struct Head {
    method: Method,
    headers: HeaderMap,
    version: Version,
}

impl Head {
    fn request(&self, body: UpBody) -> Request<UpBody> {
        let mut r = Request::new(body);
        *r.method_mut() = self.method.clone();
        *r.headers_mut() = self.headers.clone();
        *r.version_mut() = self.version;
        r
    }
}

fn attempt_body(body: Option<&RequestBody>) -> UpBody {
    body.map_or_else(UpBody::empty, RequestBody::attempt)
}

/// The body's length as its Content-Length says, if it says one clearly.
fn declared_length(h: &HeaderMap) -> Option<u64> {
    let mut values = h.get_all(header::CONTENT_LENGTH).iter();
    let first = values.next()?;
    if values.next().is_some() {
        return None;
    }
    first.to_str().ok()?.trim().parse().ok()
}

/// The answer when the client's side of the body failed: never the pod's
/// fault, so no pod is blamed and nothing is retried.
fn client_fault(entry: &FunctionEntry, fault: ClientFault, limit: u64) -> Response<ProxyBody> {
    let key = &entry.key;
    let (status, reason, msg) = match fault {
        ClientFault::Malformed => (
            StatusCode::BAD_REQUEST,
            Reject::BadRequestBody,
            "the request body is malformed (bad chunked encoding or framing)".to_owned(),
        ),
        ClientFault::TooLarge => (
            StatusCode::PAYLOAD_TOO_LARGE,
            Reject::BodyTooLarge,
            format!("the request body is larger than maxRequestBodyBytes ({limit} bytes)"),
        ),
        // Nobody reads this answer; the code says what happened.
        ClientFault::Gone => (
            StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            Reject::ClientClosed,
            "the client went away before sending the whole request body".to_owned(),
        ),
    };
    entry.metrics.reject(reason);
    let mut r = local(status, format!("function {key}: {msg}\n"));
    if fault != ClientFault::Gone {
        // The rest of the body is not read: the connection cannot carry
        // another request.
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// Copies bytes both ways between the client and the pod after a 101; the
/// ticket (and so the pod's concurrency slot) is held until both sides close.
async fn tunnel(client: hyper::upgrade::OnUpgrade, pod: hyper::upgrade::OnUpgrade, ticket: Ticket) {
    match tokio::try_join!(client, pod) {
        Ok((c, p)) => {
            let mut c = TokioIo::new(c);
            let mut p = TokioIo::new(p);
            if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut p).await {
                tracing::debug!(function = %ticket.entry.key, error = %e, "upgraded connection ended");
            }
        }
        Err(e) => {
            tracing::debug!(function = %ticket.entry.key, error = %e, "upgrade failed");
        }
    }
    drop(ticket);
}

fn upstream_uri(addr: SocketAddr, pq: &PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Authority::from_maybe_shared(Bytes::from(addr.to_string())).ok();
    parts.path_and_query = Some(pq.clone());
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("/"))
}

fn local(status: StatusCode, msg: impl Into<Bytes>) -> Response<ProxyBody> {
    let mut r = Response::new(ProxyBody::local(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// An HTTP/1.1 upgrade request (WebSocket and the like). `Upgrade: h2c`
/// is not one to pass on: it asks for HTTP/2 on the client's own hop (and
/// RFC 9113 §3.1 retired it), so such a request is served as HTTP/1.1 and
/// its `Upgrade` and `HTTP2-Settings` are dropped as hop-by-hop.
fn is_upgrade(h: &HeaderMap) -> bool {
    h.get_all(header::UPGRADE).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| !t.trim().eq_ignore_ascii_case("h2c") && !t.trim().is_empty())
        })
    }) && h.get_all(header::CONNECTION).iter().any(|v| {
        v.to_str().is_ok_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    })
}

/// Removes hop-by-hop headers (RFC 9110 §7.6.1): Connection and what it
/// lists, and the fixed set. On an upgrade, `Connection: upgrade` and
/// `Upgrade` pass through, since the pod must see them.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    if h.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|s| s.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for n in listed {
            h.remove(n);
        }
        h.remove(header::CONNECTION);
        if keep_upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        }
    }
    h.remove(&KEEP_ALIVE);
    h.remove(&PROXY_CONNECTION);
    // Only for an HTTP/1.1 `Upgrade: h2c` of this hop (RFC 7540 §3.2.1).
    h.remove(&HTTP2_SETTINGS);
    h.remove(header::PROXY_AUTHENTICATE);
    h.remove(header::PROXY_AUTHORIZATION);
    h.remove(header::TRAILER);
    h.remove(header::TRANSFER_ENCODING);
    if !keep_upgrade {
        h.remove(header::UPGRADE);
    }
}

/// Strips hop-by-hop headers and sets the forwarding ones (see
/// [`forwarded`] for the policy).
fn prepare_request_headers(
    h: &mut HeaderMap,
    remote: SocketAddr,
    trusted: bool,
    target: &Target,
    upgrade: bool,
    h2: bool,
) {
    // `TE: trailers` is the one TE value HTTP/2 allows (gRPC needs it).
    let te_trailers = h2
        && h.get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(h, upgrade);
    h.remove(header::TE);
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    forwarded::set(h, remote.ip(), trusted, target, h2);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_size_counts_the_request_line_and_each_header_line() {
        let req = Request::get("/a?b=1")
            .header("host", "f.ns.siesta.local")
            .header("x-a", "1")
            .body(())
            .unwrap();
        let wire = "GET /a?b=1 HTTP/1.1\r\nhost: f.ns.siesta.local\r\nx-a: 1\r\n";
        assert_eq!(head_bytes(&req), wire.len());
    }

    #[test]
    fn hop_by_hop_headers_go_and_connection_listed_ones_too() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::PROXY_AUTHORIZATION, HeaderValue::from_static("x"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-keep"));
    }

    #[test]
    fn an_h2c_upgrade_is_not_passed_on() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("Upgrade, HTTP2-Settings"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert(
            &HTTP2_SETTINGS,
            HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
        );
        assert!(!is_upgrade(&h));
        strip_hop_by_hop(&mut h, false);
        assert!(h.is_empty(), "{h:?}");
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c, websocket"));
        assert!(is_upgrade(&h));
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Upgrade"),
        );
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
    }

    #[test]
    fn te_is_dropped_except_trailers_to_an_h2_pod_and_forwarding_headers_are_set() {
        let remote = SocketAddr::from(([10, 1, 2, 3], 5555));
        let target = Target {
            key: crate::route::FunctionKey::new("b", "a"),
            path_and_query: "/".into(),
            authority: Some("a.b.siesta.local".into()),
            prefix: None,
        };
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            &HTTP2_SETTINGS,
            HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
        );
        prepare_request_headers(&mut h, remote, false, &target, false, false);
        assert!(!h.contains_key(header::TE));
        assert!(!h.contains_key(&HTTP2_SETTINGS));
        assert_eq!(h.get(&forwarded::X_FORWARDED_FOR).unwrap(), "10.1.2.3");
        assert_eq!(h.get(header::HOST).unwrap(), "a.b.siesta.local");

        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("a.b.siesta.local"));
        prepare_request_headers(&mut h, remote, false, &target, false, true);
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert!(!h.contains_key(header::HOST));
    }
}
