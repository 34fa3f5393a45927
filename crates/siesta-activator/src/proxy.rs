//! One request, from arrival to the pod and back: route, admit (or park and
//! wake), forward with pooled connections, retry a failed connect on another
//! pod, pass upgrades through.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use siesta_api::Protocol;
use tokio::time::{Instant, timeout_at};

use crate::body::{self, BodySlot, ProxyBody, Ticket, UpBody};
use crate::index::{Admission, FunctionEntry, Index, LookupCache, OverBudget};
use crate::metrics::Reject;
use crate::wake::Waker;
use crate::{park_budget, route};

/// Most tries of one request on different pods after connect failures.
const MAX_ATTEMPTS: usize = 3;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// The request path's shared state.
pub struct Proxy {
    pub index: Arc<Index>,
    pub waker: Arc<Waker>,
    domain: String,
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
        waker: Arc<Waker>,
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
            max_header_bytes,
            max_response_headers,
            http1,
            h2c,
        }
    }

    /// Answers one client request. Never fails: every error is a response.
    pub async fn handle(
        &self,
        cache: &LookupCache,
        remote: SocketAddr,
        mut req: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        if req.method() == Method::CONNECT {
            // A function is not a tunnel endpoint: forwarding CONNECT would
            // leave an upgraded connection nobody serves.
            self.index.metrics().unknown_function();
            return local(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT is not supported: the activator is not a forward proxy\n",
            );
        }
        // hyper stops reading a head at its read buffer's limit, but how far
        // that buffer grows depends on how the bytes arrived: the limit is
        // enforced here, exactly, for HTTP/1 and HTTP/2 alike.
        if head_bytes(&req) > self.max_header_bytes {
            return local(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("request head larger than {} bytes\n", self.max_header_bytes),
            );
        }
        let host: Option<HeaderValue> = match req.headers().get(header::HOST) {
            Some(h) => Some(h.clone()),
            None => req
                .uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok()),
        };
        let routed = {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            route::route(
                host.as_ref().and_then(|h| h.to_str().ok()),
                pq,
                &self.domain,
            )
        };
        let Some(routed) = routed else {
            self.index.metrics().unknown_function();
            return local(
                StatusCode::NOT_FOUND,
                "no function here: use Host NAME.NAMESPACE.DOMAIN or the path /fn/NAMESPACE/NAME/\n",
            );
        };
        let Some(entry) = cache.get(&self.index, &routed.key) else {
            self.index.metrics().unknown_function();
            return local(
                StatusCode::NOT_FOUND,
                format!("function {} not found\n", routed.key),
            );
        };

        let admission = entry.admit_costing(start, || park_budget::cost(&req));
        let (mut ticket, config, alternatives) = match admission {
            Admission::Go {
                addr,
                config,
                alternatives,
            } => (Ticket::new(entry, Some(addr), start), config, alternatives),
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
        prepare_request_headers(&mut parts.headers, remote, host, upgrade, h2);
        let version = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        parts.version = version;
        let pq = PathAndQuery::from_maybe_shared(Bytes::from(routed.path_and_query))
            .unwrap_or_else(|_| PathAndQuery::from_static("/"));

        // Only pay for a retry copy of the head when another pod could take it.
        let (up_body, retry) = if alternatives && !upgrade {
            let slot: BodySlot = Arc::new(Mutex::new(Some(body)));
            let copy = RetryCopy {
                slot: slot.clone(),
                method: parts.method.clone(),
                headers: parts.headers.clone(),
                version,
            };
            (UpBody::shared(slot), Some(copy))
        } else {
            (UpBody::Direct(body), None)
        };
        let mut up = Request::from_parts(parts, up_body);
        let mut attempt = 1;
        let mut resp = loop {
            let Some(addr) = ticket.addr else {
                // Unreachable by construction: every path above took a slot.
                ticket.code = 502;
                return local(StatusCode::BAD_GATEWAY, "no pod\n");
            };
            *up.uri_mut() = upstream_uri(addr, &pq);
            let client = if h2 { &self.h2c } else { &self.http1 };
            match timeout_at(deadline, client.request(up)).await {
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
                Ok(Err(e)) => {
                    let connect = e.is_connect();
                    if attempt < MAX_ATTEMPTS
                        && let Some(copy) = &retry
                        && ((connect && body::lock(&copy.slot).is_some()) || copy.replayable())
                    {
                        match ticket.entry.repick(addr) {
                            Some(next) => {
                                tracing::debug!(function = %ticket.entry.key, %addr, %next, error = %e, "connect failed; retrying on another pod");
                                ticket.addr = Some(next);
                                attempt += 1;
                                up = copy.request();
                                continue;
                            }
                            None => ticket.addr = None,
                        }
                    }
                    tracing::warn!(function = %ticket.entry.key, %addr, error = %e, source = ?std::error::Error::source(&e), "upstream request failed");
                    if connect {
                        ticket.entry.metrics.reject(Reject::UpstreamUnavailable);
                    }
                    ticket.code = 502;
                    return local(
                        StatusCode::BAD_GATEWAY,
                        format!(
                            "function {}: the pod could not be reached\n",
                            ticket.entry.key
                        ),
                    );
                }
            }
        };

        ticket.code = resp.status().as_u16();
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

/// What a retry on another pod needs: the head, and the body while nothing
/// of it has been sent.
struct RetryCopy {
    slot: BodySlot,
    method: Method,
    headers: HeaderMap,
    version: Version,
}

impl RetryCopy {
    fn request(&self) -> Request<UpBody> {
        let mut r = Request::new(UpBody::shared(self.slot.clone()));
        *r.method_mut() = self.method.clone();
        *r.headers_mut() = self.headers.clone();
        *r.version_mut() = self.version;
        r
    }

    /// Whether a request that failed after connecting (e.g. a pod shutting
    /// down closed the pooled connection as the request went out) may be
    /// sent again: an idempotent method (RFC 9110 9.2.2) whose body is empty
    /// and still in the slot, so nothing of it was consumed.
    fn replayable(&self) -> bool {
        use hyper::body::Body as _;
        self.method.is_idempotent()
            && body::lock(&self.slot)
                .as_ref()
                .is_some_and(|body| body.is_end_stream())
    }
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

/// An HTTP/1.1 upgrade request (WebSocket and the like).
fn is_upgrade(h: &HeaderMap) -> bool {
    h.contains_key(header::UPGRADE)
        && h.get_all(header::CONNECTION).iter().any(|v| {
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
    h.remove(header::PROXY_AUTHENTICATE);
    h.remove(header::PROXY_AUTHORIZATION);
    h.remove(header::TRAILER);
    h.remove(header::TRANSFER_ENCODING);
    if !keep_upgrade {
        h.remove(header::UPGRADE);
    }
}

/// Strips hop-by-hop headers and sets the X-Forwarded-* ones. Proto and Host
/// are kept when present: a proxy in front of the activator knows better.
fn prepare_request_headers(
    h: &mut HeaderMap,
    remote: SocketAddr,
    host: Option<HeaderValue>,
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

    let ip = remote.ip().to_canonical().to_string();
    let xff = match h.get_all(&X_FORWARDED_FOR).iter().next() {
        None => HeaderValue::from_str(&ip).ok(),
        Some(_) => {
            let mut v = Vec::with_capacity(64);
            for prev in h.get_all(&X_FORWARDED_FOR) {
                v.extend_from_slice(prev.as_bytes());
                v.extend_from_slice(b", ");
            }
            v.extend_from_slice(ip.as_bytes());
            HeaderValue::from_bytes(&v).ok()
        }
    };
    if let Some(xff) = xff {
        h.insert(X_FORWARDED_FOR.clone(), xff);
    }
    if !h.contains_key(&X_FORWARDED_PROTO) {
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    }
    if let Some(host) = host {
        if !h.contains_key(&X_FORWARDED_HOST) {
            h.insert(X_FORWARDED_HOST.clone(), host.clone());
        }
        if h2 {
            // HTTP/2 carries the authority in the URI (the pod's address).
            h.remove(header::HOST);
        } else if !h.contains_key(header::HOST) {
            // From an HTTP/2 client: keep the name the client asked for.
            h.insert(header::HOST, host);
        }
    }
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
    fn forwarded_headers_are_appended_or_set() {
        let remote = SocketAddr::from(([10, 1, 2, 3], 5555));
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        prepare_request_headers(
            &mut h,
            remote,
            Some(HeaderValue::from_static("a.b.siesta.local")),
            false,
            false,
        );
        assert_eq!(
            h.get(&X_FORWARDED_FOR).unwrap(),
            "1.1.1.1, 2.2.2.2, 10.1.2.3"
        );
        assert_eq!(h.get_all(&X_FORWARDED_FOR).iter().count(), 1);
        assert_eq!(h.get(&X_FORWARDED_PROTO).unwrap(), "http");
        assert_eq!(h.get(&X_FORWARDED_HOST).unwrap(), "a.b.siesta.local");
        assert_eq!(h.get(header::HOST).unwrap(), "a.b.siesta.local");
        assert!(!h.contains_key(header::TE));

        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("x"));
        prepare_request_headers(
            &mut h,
            remote,
            Some(HeaderValue::from_static("x")),
            false,
            true,
        );
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert!(!h.contains_key(header::HOST));
    }
}
