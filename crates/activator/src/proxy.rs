//! One request, from arrival to the pod and back: route, admit (or park and
//! wake), forward with pooled connections, retry a failed connect on another
//! pod, pass upgrades through.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt as _;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Body as _;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use siesta_api::Protocol;
use tokio::time::{Instant, Sleep, timeout_at};

use crate::body::{PodBody, ProxyBody, Ticket};
use crate::field_scan;
use crate::forwarded;
use crate::index::{Admission, FunctionConfig, FunctionEntry, Index, LookupCache, OverBudget};
use crate::kept_timer;
use crate::metrics::Reject;
use crate::park_budget;
use crate::request_body::{ClientBody, ClientFault, RequestBody, UpBody};
use crate::request_size::head_bytes;
use crate::stranded::{self, WatchedConnector};
use crate::target::{self, Target};
use crate::trust::TrustedProxies;
use crate::upstream::{self, Next};
use crate::wake::WakeClient;
use crate::{http1_pool, http1_wire};

/// Upstream connections, for every client: how long one may sit idle (pods
/// come and go, and a function at zero must not pin them), how many idle
/// ones are kept per pod, and how long a connect may take.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_IDLE_PER_POD: usize = 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

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
    /// Plain HTTP/1 requests: this serving thread's connections, driven by
    /// the request that holds one (see [`http1_pool`]).
    http1: Arc<http1_pool::Pool>,
    /// HTTP/1 upgrades (WebSocket): hyper-util's client hands over the
    /// connection when the pod answers 101.
    upgrades: Clients<HttpConnector>,
    h2c: Clients<WatchedConnector>,
}

/// hyper-util's clients for a protocol: the pool, and one that opens a
/// connection for each request, for a replay the pool's connections could
/// fail again. HTTP/1 connections need no watching (see `stranded`), so
/// they are plain.
struct Clients<C> {
    pooled: Client<C, UpBody>,
    fresh: Client<C, UpBody>,
}

impl<C> Clients<C> {
    fn pick(&self, fresh: bool) -> &Client<C, UpBody> {
        if fresh { &self.fresh } else { &self.pooled }
    }
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
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        // Pods come and go; an idle connection to a gone pod is worth little,
        // and the pool must not pin memory for functions that went to zero.
        let http1 = |max_idle| {
            Client::builder(TokioExecutor::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .pool_max_idle_per_host(max_idle)
                .pool_timer(TokioTimer::new())
                .set_host(false)
                .http1_max_headers(max_response_headers)
                .build(connector.clone())
        };
        let h2c = |max_idle| {
            Client::builder(TokioExecutor::new())
                .http2_only(true)
                .timer(TokioTimer::new())
                .pool_timer(TokioTimer::new())
                .pool_idle_timeout(IDLE_TIMEOUT)
                .pool_max_idle_per_host(max_idle)
                .set_host(false)
                .build(WatchedConnector(connector.clone()))
        };
        // No idle connection at all disables the pool: one connection each.
        let (upgrades, h2c) = (
            Clients {
                pooled: http1(MAX_IDLE_PER_POD),
                fresh: http1(0),
            },
            Clients {
                pooled: h2c(usize::MAX),
                fresh: h2c(0),
            },
        );
        Self {
            index,
            waker,
            domain,
            trusted_proxies: TrustedProxies::default(),
            max_header_bytes,
            max_response_headers,
            http1: http1_pool::Pool::new(http1_pool::Settings {
                max_idle: MAX_IDLE_PER_POD,
                idle_timeout: IDLE_TIMEOUT,
                connect_timeout: CONNECT_TIMEOUT,
                max_headers: max_response_headers,
            }),
            upgrades,
            h2c,
        }
    }

    /// Peers whose forwarding headers are kept (see [`forwarded`]).
    pub fn with_trusted_proxies(mut self, trusted: TrustedProxies) -> Self {
        self.trusted_proxies = trusted;
        self
    }

    /// Answers one client request. Never fails: every error is a response.
    /// The steps, in order: `route` (the early refusals and the function),
    /// `admit` (a pod now, or parked until one), then `forward` (with
    /// retry) and `respond` (an upgrade or the streamed body).
    ///
    /// `timer` is a timer the caller keeps for the requests it hands over
    /// one after another (the HTTP/1 fast path's connection): the pod's
    /// answer is awaited on it, for this request's deadline, instead of on
    /// a timer made for the request (registered with the runtime's clock
    /// and taken out again, each time).
    pub async fn handle<B: ClientBody>(
        &self,
        cache: &LookupCache,
        remote: SocketAddr,
        mut req: Request<B>,
        timer: Option<Pin<&mut Sleep>>,
    ) -> Response<ProxyBody> {
        let start = Instant::now();
        let (routed, entry) = match self.route(cache, &req) {
            Ok(found) => found,
            Err(refusal) => return refusal,
        };
        let (mut ticket, config, parked) = match self.admit(entry, &req, start).await {
            Ok(admitted) => admitted,
            Err(refusal) => return refusal,
        };
        let deadline = start + config.timeout;
        let upgrade =
            !B::PLAIN_HEAD && req.version() == Version::HTTP_11 && is_upgrade(req.headers());
        let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let outgoing = self.outgoing(req, remote, routed, &config, upgrade, cache);
        let resp = match self
            .forward(&mut ticket, &outgoing, &config, deadline, timer)
            .await
        {
            Ok(sent) => sent,
            Err(failed) => return failed,
        };
        self.respond(
            ticket,
            resp,
            parked,
            client_upgrade,
            deadline,
            B::WRITES_POD_FIELDS,
        )
    }

    /// The early refusals, before anything is held for the request: a head
    /// over `--max-header-bytes` (431), a target that names no function
    /// (see [`target::resolve`]), a function that does not exist (404).
    /// Otherwise, where it goes and the function's entry.
    // The refusal is the response itself, handed straight back to the
    // client: boxing it would only add an allocation.
    #[allow(clippy::result_large_err)]
    fn route<B>(
        &self,
        cache: &LookupCache,
        req: &Request<B>,
    ) -> Result<(Target, Arc<FunctionEntry>), Response<ProxyBody>> {
        // hyper stops reading a head at its read buffer's limit, but how far
        // that buffer grows depends on how the bytes arrived: the limit is
        // enforced here, exactly, for HTTP/1 and HTTP/2 alike.
        if head_bytes(req) > self.max_header_bytes {
            return Err(local(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("request head larger than {} bytes\n", self.max_header_bytes),
            ));
        }
        let hosts = field_scan::values(req.headers(), &header::HOST);
        let resolved = target::resolve_remembering(
            req.method(),
            req.version(),
            req.uri(),
            hosts,
            &self.domain,
            &mut cache.host_memo(),
        );
        let routed = match resolved {
            Ok(t) => t,
            Err(refusal) => {
                self.index.metrics().unrouted(refusal.reject());
                return Err(local(refusal.status(), format!("{refusal}\n")));
            }
        };
        let Some(entry) = cache.get(&self.index, &routed.key) else {
            self.index.metrics().unknown_function();
            return Err(local(
                StatusCode::NOT_FOUND,
                format!("function {} not found\n", routed.key),
            ));
        };
        Ok((routed, entry))
    }

    /// Takes a pod slot for the request, parking it until one is free if
    /// need be (and starting the wake-up when it is the first at zero).
    /// Returns the ticket holding the slot, the function's configuration,
    /// and whether the request was parked; or the refusal (413, 503 for a
    /// full queue, the parked-request budget or a refused wake-up).
    async fn admit<B: ClientBody>(
        &self,
        entry: Arc<FunctionEntry>,
        req: &Request<B>,
        start: Instant,
    ) -> Result<(Ticket, FunctionConfig, bool), Response<ProxyBody>> {
        let declared = if B::PLAIN_HEAD {
            None
        } else {
            declared_length(req.headers())
        };
        let admission = entry.admit_costing(start, declared, || park_budget::cost(req));
        match admission {
            Admission::Go { addr, config, .. } => {
                Ok((Ticket::new(entry, Some(addr), start), config, false))
            }
            Admission::TooLarge { limit } => {
                entry.metrics.request(413);
                Err(client_fault(&entry, ClientFault::TooLarge, limit))
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
                Err(r)
            }
            Admission::OverBudget(over) => Err(over_budget(&entry, &over)),
            Admission::Refused(why) => {
                entry.metrics.request(503);
                Err(refused(&entry, &why))
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
                let park = Parked {
                    entry,
                    id,
                    rx,
                    armed: true,
                };
                // Boxed: rare, and large next to the warm path's future.
                let ticket = Box::pin(wait_parked(park, &config, start)).await?;
                Ok((ticket, config, true))
            }
        }
    }

    /// The request as the pod gets it: hop-by-hop headers gone, forwarding
    /// headers set, the function's protocol, the routed path; and what a
    /// replay needs (see `upstream`): the head, and the body's log.
    fn outgoing<B: ClientBody>(
        &self,
        req: Request<B>,
        remote: SocketAddr,
        routed: Target,
        config: &FunctionConfig,
        upgrade: bool,
        cache: &LookupCache,
    ) -> Outgoing {
        let (mut parts, body) = req.into_parts();
        let h2 = config.protocol == Protocol::H2c && !upgrade;
        let trusted = self.trusted_proxies.trusts(remote.ip());
        let added = prepare_request_headers(
            &mut parts.headers,
            remote,
            trusted,
            &routed,
            upgrade,
            h2,
            &mut cache.forwarded_memo(),
        );
        let version = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        parts.version = version;
        let pq = routed.path_and_query;

        // What a replay needs (see `upstream`): the head, and the body's log.
        let body = body
            .into_incoming()
            .filter(|b| !b.is_end_stream())
            .map(|b| RequestBody::new(b, config.max_request_body_bytes));
        let idempotent = upstream::idempotent(&parts.method, &parts.headers);
        let head = Head {
            method: parts.method,
            headers: parts.headers,
            added,
            version,
        };
        Outgoing {
            pq,
            h2,
            upgrade,
            body,
            head,
            idempotent,
        }
    }

    /// Sends the request to the ticket's pod until a response comes back,
    /// sending it again (to the same pod or another, see
    /// [`upstream::next`]) after a failure the pod did not process; or the
    /// answer when it cannot (502, 504, or the client's own fault).
    async fn forward(
        &self,
        ticket: &mut Ticket,
        outgoing: &Outgoing,
        config: &FunctionConfig,
        deadline: Instant,
        mut timer: Option<Pin<&mut Sleep>>,
    ) -> Result<Sent, Response<ProxyBody>> {
        // Borrowed: the request stays in `handle`'s future, not moved into
        // this one (a few hundred bytes a request).
        let &Outgoing {
            ref pq,
            h2,
            upgrade,
            ref body,
            ref head,
            idempotent,
        } = outgoing;
        let mut attempt = 1;
        let mut fresh = false;
        let resp = loop {
            let Some(addr) = ticket.addr else {
                // Unreachable by construction: every path above took a slot.
                ticket.code = 502;
                return Err(local(StatusCode::BAD_GATEWAY, "no pod\n"));
            };
            // Only an HTTP/2 connection's requests can be stranded (see
            // `stranded`); watching costs a look at its connection (a
            // timer only once its socket is gone). It and
            // an upgrade's futures are boxed so that they do not size every
            // request's.
            let sent = if h2 {
                let mut up = head.request(attempt_body(body.as_ref()));
                *up.uri_mut() = upstream_uri(addr, pq);
                let watch = stranded::Watch::on(&mut up);
                let client = self.h2c.pick(fresh);
                let sent = stranded::unless_stranded(client.request(up), watch).map(|r| match r {
                    Some(Ok(resp)) => Ok(resp.map(PodBody::Hyper)),
                    Some(Err(e)) => Err(SendFailure::Client(e)),
                    // Never written: its connection's socket is gone.
                    None => Err(SendFailure::Stranded),
                });
                (Box::pin(sent) as Sending<'_>).left_future()
            } else if upgrade {
                let mut up = head.request(attempt_body(body.as_ref()));
                *up.uri_mut() = upstream_uri(addr, pq);
                let sent = self.upgrades.pick(fresh).request(up).map(|r| {
                    r.map(|resp| resp.map(PodBody::Hyper))
                        .map_err(SendFailure::Client)
                });
                (Box::pin(sent) as Sending<'_>).left_future()
            } else {
                // A connection of our own is sent the origin form, the head
                // written from the one kept for replays (no copy).
                let target = http1_pool::Target {
                    method: &head.method,
                    path_and_query: pq.as_str(),
                    headers: &head.headers,
                    added: &head.added,
                };
                self.http1
                    .send(addr, fresh, target, attempt_body(body.as_ref()))
                    .map(|r| {
                        r.map(|resp| resp.map(PodBody::Pooled))
                            .map_err(SendFailure::Http1)
                    })
                    .right_future()
            };
            // Pinned here: `within` takes it by reference, not by another
            // move of a few hundred bytes.
            let sent = std::pin::pin!(sent);
            let e = match within(sent, deadline, timer.as_mut().map(Pin::as_mut)).await {
                None => return Err(request_timeout(ticket)),
                Some(Ok(sent)) => break sent,
                Some(Err(e)) => e,
            };
            if let Some(fault) = body.as_ref().and_then(RequestBody::fault) {
                let limit = config.max_request_body_bytes.unwrap_or(0);
                let r = client_fault(&ticket.entry, fault, limit);
                ticket.code = r.status().as_u16();
                return Err(r);
            }
            let failure = e.failure();
            let replay = upstream::Replay {
                attempt,
                idempotent,
                body_replayable: body.as_ref().is_none_or(RequestBody::replayable),
            };
            if let Some(new_connection) = next_attempt(ticket, addr, failure, replay) {
                fresh = new_connection;
                tracing::debug!(function = %ticket.entry.key, %addr, next = ?ticket.addr, ?failure, error = %e, "sending the request again");
                ticket.entry.metrics.replay(failure);
                attempt += 1;
                continue;
            }
            tracing::warn!(function = %ticket.entry.key, %addr, ?failure, attempt, error = %e, "upstream request failed");
            ticket.code = 502;
            return Err(self.upstream_failed(&ticket.entry, failure, replay));
        };
        Ok(resp)
    }

    /// 502 for a request that failed upstream and is not sent again, saying
    /// why in the pod's terms.
    fn upstream_failed(
        &self,
        entry: &FunctionEntry,
        failure: upstream::Failure,
        replay: upstream::Replay,
    ) -> Response<ProxyBody> {
        let head_too_large = format!(
            "its response had too many headers (more than {}, --max-response-headers) or too large a head",
            self.max_response_headers
        );
        let (reason, why) = match failure {
            upstream::Failure::Connect => (
                Some(Reject::UpstreamUnavailable),
                "the pod could not be reached",
            ),
            upstream::Failure::NotProcessed
            | upstream::Failure::Stranded
            | upstream::Failure::Closed => (
                Some(Reject::UpstreamClosed),
                if !replay.body_replayable {
                    "the pod closed the connection before answering, and the request body was already streamed, so it could not be sent again"
                } else if !replay.idempotent && failure == upstream::Failure::Closed {
                    "the pod closed the connection before answering, and the request is not idempotent, so it was not sent again"
                } else {
                    "the pod closed the connection before answering, on every send the request's timeoutSeconds and the replay limit allowed"
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
            entry.metrics.reject(reason);
        }
        local(
            StatusCode::BAD_GATEWAY,
            format!("function {}: {why}\n", entry.key),
        )
    }

    /// The pod's response to the client: the first byte after a cold start
    /// is reported to the controller; a 101 to an upgrade becomes a tunnel
    /// that holds the ticket, anything else streams with it. An HTTP/1
    /// pod's fields stay bytes for a server that writes them so
    /// (`writes_pod_fields`), which leaves out the hop-by-hop ones itself;
    /// hyper's server gets them as the response's map.
    fn respond(
        &self,
        mut ticket: Ticket,
        mut resp: Response<PodBody>,
        parked: bool,
        client_upgrade: Option<hyper::upgrade::OnUpgrade>,
        deadline: Instant,
        writes_pod_fields: bool,
    ) -> Response<ProxyBody> {
        if !writes_pod_fields
            && let PodBody::Pooled(lease) = resp.body_mut()
            && let Some(fields) = lease.take_fields()
        {
            match fields.to_map() {
                Ok(map) => *resp.headers_mut() = map,
                Err(e) => {
                    // Unreachable: httparse took the head (see `Fields`).
                    ticket.code = 502;
                    ticket.entry.metrics.reject(Reject::UpstreamBadResponse);
                    return local(
                        StatusCode::BAD_GATEWAY,
                        format!("function {}: {e}\n", ticket.entry.key),
                    );
                }
            }
        }
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

/// `fut`'s output, or `None` once `deadline` passes first: on `timer`
/// when the caller keeps one (see [`Proxy::handle`] and
/// [`crate::kept_timer`]), else on a timer of its own.
async fn within<F: Future>(
    mut fut: Pin<&mut F>,
    deadline: Instant,
    timer: Option<Pin<&mut Sleep>>,
) -> Option<F::Output> {
    let Some(mut timer) = timer else {
        return timeout_at(deadline, fut).await.ok();
    };
    poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        if kept_timer::poll_until(timer.as_mut(), deadline, cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Waits for a parked request's pod, until its queue timeout or its request
/// timeout, whichever comes first. The ticket holds the slot it was handed;
/// the refusal says why there is none (503: refused wake-up or deleted
/// function, 504: a timeout).
async fn wait_parked(
    park: Parked,
    config: &FunctionConfig,
    start: Instant,
) -> Result<Ticket, Response<ProxyBody>> {
    let mut ticket = Ticket::new(park.entry.clone(), None, start);
    // Declared after the ticket, so dropped before it (as when the client
    // leaves mid-wait): the request leaves the queue before its ticket ends.
    let mut park = park;
    let queue_deadline = start + config.queue_timeout;
    let request_deadline = start + config.timeout;
    match timeout_at(queue_deadline.min(request_deadline), &mut park.rx).await {
        Ok(Ok(Ok(addr))) => {
            park.armed = false;
            ticket.addr = Some(addr);
            Ok(ticket)
        }
        Ok(Ok(Err(why))) => {
            park.armed = false;
            ticket.code = 503;
            Err(refused(&ticket.entry, &why))
        }
        Ok(Err(_)) => {
            park.armed = false;
            ticket.entry.metrics.reject(Reject::FunctionDeleted);
            ticket.code = 503;
            Err(local(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("function {} was deleted\n", ticket.entry.key),
            ))
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
            Err(local(
                StatusCode::GATEWAY_TIMEOUT,
                format!("function {}: {msg}\n", ticket.entry.key),
            ))
        }
    }
}

/// The request to send, and what sending it again needs.
struct Outgoing {
    pq: PathAndQuery,
    h2: bool,
    upgrade: bool,
    body: Option<RequestBody>,
    head: Head,
    idempotent: bool,
}

/// A pod's response.
type Sent = Response<PodBody>;

/// A send by hyper-util's client, boxed: the rarer paths.
type Sending<'a> = std::pin::Pin<Box<dyn Future<Output = Result<Sent, SendFailure>> + Send + 'a>>;

/// A send that failed, from whichever client made it.
enum SendFailure {
    /// hyper-util's client (h2c, upgrades).
    Client(hyper_util::client::legacy::Error),
    Http1(http1_pool::SendError),
    /// Never written: its HTTP/2 connection's socket is gone (`stranded`).
    Stranded,
}

impl SendFailure {
    fn failure(&self) -> upstream::Failure {
        match self {
            SendFailure::Client(e) => upstream::classify(e),
            SendFailure::Http1(e) => upstream::classify_http1(e),
            SendFailure::Stranded => upstream::Failure::Stranded,
        }
    }
}

impl std::fmt::Display for SendFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendFailure::Client(e) => with_source(f, e),
            SendFailure::Http1(e) => write!(f, "{e}"),
            SendFailure::Stranded => f.write_str("stranded on a closed connection, never written"),
        }
    }
}

/// An error and what caused it, on one line: hyper's errors say what
/// failed, their source why (a reset, an early EOF).
fn with_source(f: &mut std::fmt::Formatter<'_>, e: &dyn std::error::Error) -> std::fmt::Result {
    match e.source() {
        Some(s) => write!(f, "{e}: {s}"),
        None => write!(f, "{e}"),
    }
}

/// 504 for a request whose pod sent no response within `timeoutSeconds`.
fn request_timeout(ticket: &mut Ticket) -> Response<ProxyBody> {
    ticket.entry.metrics.reject(Reject::RequestTimeout);
    ticket.code = 504;
    local(
        StatusCode::GATEWAY_TIMEOUT,
        format!(
            "function {}: no response within timeoutSeconds\n",
            ticket.entry.key
        ),
    )
}

/// Whether a request that failed on `addr` is sent again, as
/// [`upstream::next`] decides: `Some(new_connection)` to send it to
/// `ticket.addr` (another pod when the decision was to move, and on a new
/// connection when `new_connection`), `None` to give up. Moving to another
/// pod gives this one's slot back; with no other pod, `ticket.addr` is left
/// empty.
fn next_attempt(
    ticket: &mut Ticket,
    addr: SocketAddr,
    failure: upstream::Failure,
    replay: upstream::Replay,
) -> Option<bool> {
    match upstream::next(failure, replay) {
        Next::SamePod => Some(false),
        Next::NewConnection => Some(true),
        Next::OtherPod => {
            ticket.addr = ticket.entry.repick(addr);
            ticket.addr.map(|_| false)
        }
        Next::Fail => None,
    }
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
    /// The forwarding fields, sent after `headers`.
    added: forwarded::Added,
    version: Version,
}

impl Head {
    /// The request for hyper's client: the fields all in one map.
    fn request(&self, body: UpBody) -> Request<UpBody> {
        let mut r = Request::new(body);
        *r.method_mut() = self.method.clone();
        let mut headers = self.headers.clone();
        self.added.insert_into(&mut headers);
        *r.headers_mut() = headers;
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
    let mut authority = Vec::with_capacity(24);
    crate::ascii::write_socket_addr(&mut authority, addr);
    parts.authority = Authority::from_maybe_shared(Bytes::from(authority)).ok();
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
    // Most messages carry none: one pass over the names is cheaper than a
    // lookup per hop-by-hop name (two dozen hashes per request).
    if !h.keys().any(is_hop_by_hop) {
        return;
    }
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

/// The names [`strip_hop_by_hop`] and [`end_to_end`] leave out whatever
/// `Connection` says (RFC 9110 §7.6.1, and the connection-specific fields
/// of proxies, keep-alive and `Upgrade: h2c`).
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "upgrade",
    "transfer-encoding",
    "trailer",
    "proxy-authenticate",
    "proxy-authorization",
    "keep-alive",
    "proxy-connection",
    "http2-settings",
];

fn is_hop_by_hop(n: &HeaderName) -> bool {
    is_hop_by_hop_name(n.as_str().as_bytes())
}

fn is_hop_by_hop_name(name: &[u8]) -> bool {
    HOP_BY_HOP
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// An HTTP/1 pod's response fields as the client gets them: those
/// [`strip_hop_by_hop`] takes out of a map (but for an upgrade's, which go
/// through hyper's client) left out of the pod's bytes.
pub fn end_to_end(fields: &http1_wire::Fields) -> impl Iterator<Item = (&[u8], &[u8])> {
    // Rare: a list is made only when `Connection` names fields.
    let listed: Vec<&[u8]> = if fields.has_connection() {
        fields
            .values(b"connection")
            // As `strip_hop_by_hop` reads them: a value that is not visible
            // ASCII (`HeaderValue::to_str`) names nothing.
            .filter(|v| v.iter().all(|&b| b == b'\t' || (0x20..0x7f).contains(&b)))
            .flat_map(|v| v.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter(|t| !t.is_empty())
            .collect()
    } else {
        Vec::new()
    };
    fields.iter().filter(move |(name, _)| {
        !is_hop_by_hop_name(name) && !listed.iter().any(|l| name.eq_ignore_ascii_case(l))
    })
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
    memo: &mut forwarded::Memo,
) -> forwarded::Added {
    // `TE: trailers` is the one TE value HTTP/2 allows (gRPC needs it).
    // Most requests have no TE: looked for without a hashed lookup.
    let te = field_scan::has(h, &header::TE);
    let te_trailers = te
        && h2
        && h.get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    strip_hop_by_hop(h, upgrade);
    if te {
        h.remove(header::TE);
    }
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    forwarded::set(h, remote.ip(), trusted, target, h2, memo)
}

#[cfg(test)]
impl Proxy {
    /// A proxy with no function, for tests of what surrounds it.
    pub(crate) fn for_tests(max_header_bytes: usize) -> Proxy {
        let index = Arc::new(Index::new(
            crate::metrics::Metrics::new().expect("metrics"),
            park_budget::Limits {
                requests: 100,
                bytes: 1 << 20,
            },
        ));
        let waker = Arc::new(WakeClient::new(Vec::new(), Duration::from_secs(1)));
        Proxy::new(index, waker, "siesta.local".into(), max_header_bytes, 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use http_body_util::{BodyExt as _, Empty};

    use crate::route::FunctionKey;

    fn proxy(max_header_bytes: usize) -> Proxy {
        Proxy::for_tests(max_header_bytes)
    }

    async fn text(r: Response<ProxyBody>) -> (StatusCode, String) {
        let status = r.status();
        let body = r
            .into_body()
            .collect()
            .await
            .expect("a local body")
            .to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn get(host: &str, path: &str) -> Request<Empty<Bytes>> {
        Request::get(path)
            .header("host", host)
            .body(Empty::new())
            .unwrap()
    }

    #[tokio::test]
    async fn a_head_over_the_limit_is_refused_with_431_before_routing() {
        let p = proxy(200);
        let mut req = get("a.b.siesta.local", "/");
        req.headers_mut()
            .insert("x-big", HeaderValue::from_str(&"x".repeat(200)).unwrap());
        let Err(r) = p.route(&LookupCache::default(), &req) else {
            panic!("routed a head over the limit");
        };
        let (status, body) = text(r).await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(body, "request head larger than 200 bytes\n");
    }

    #[tokio::test]
    async fn a_target_that_names_no_function_is_refused_with_the_resolvers_status() {
        let p = proxy(8192);
        let cache = LookupCache::default();
        let Err(r) = p.route(&cache, &get("example.com", "/")) else {
            panic!("routed a host outside the domain");
        };
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let connect = Request::connect("a.b.siesta.local:443").body(()).unwrap();
        let Err(r) = p.route(&cache, &connect) else {
            panic!("routed a CONNECT");
        };
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[tokio::test]
    async fn an_unknown_function_is_404_and_a_known_one_is_found() {
        let p = proxy(8192);
        let cache = LookupCache::default();
        let Err(r) = p.route(&cache, &get("a.b.siesta.local", "/x")) else {
            panic!("routed to a function that does not exist");
        };
        let (status, body) = text(r).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body, "function b/a not found\n");

        p.index
            .apply(FunctionKey::new("b", "a"), FunctionConfig::default());
        let Ok((routed, entry)) = p.route(&cache, &get("a.b.siesta.local", "/x")) else {
            panic!("a known function was refused");
        };
        assert_eq!(*routed.key, FunctionKey::new("b", "a"));
        assert_eq!(routed.path_and_query, "/x");
        assert_eq!(entry.key, *routed.key);
    }

    #[tokio::test]
    async fn a_body_declared_over_the_limit_is_refused_with_413_before_it_parks() {
        let p = proxy(8192);
        let key = FunctionKey::new("b", "a");
        let config = FunctionConfig {
            max_request_body_bytes: Some(10),
            ..FunctionConfig::default()
        };
        let entry = p.index.apply(key, config);
        let req = Request::post("/")
            .header(header::CONTENT_LENGTH, "11")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let Err(r) = p.admit(entry.clone(), &req, Instant::now()).await else {
            panic!("admitted a body over the limit");
        };
        let (status, body) = text(r).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body.contains("maxRequestBodyBytes (10 bytes)"), "{body}");
        assert_eq!(entry.metrics.queued(), 0, "nothing was parked");
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_request_with_no_pod_gets_504_at_its_queue_timeout() {
        let p = proxy(8192);
        let config = FunctionConfig {
            queue_timeout: Duration::from_secs(3),
            timeout: Duration::from_secs(60),
            ..FunctionConfig::default()
        };
        let entry = p.index.apply(FunctionKey::new("b", "a"), config);
        let start = Instant::now();
        let Err(r) = p
            .admit(entry.clone(), &get("a.b.siesta.local", "/"), start)
            .await
        else {
            panic!("admitted with no pod");
        };
        assert_eq!(Instant::now() - start, Duration::from_secs(3));
        let (status, body) = text(r).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            body,
            "function b/a: no ready pod within queue.timeoutSeconds\n"
        );
        assert_eq!(entry.metrics.queued(), 0, "the request left the queue");
    }

    #[tokio::test(start_paused = true)]
    async fn a_parked_request_whose_timeout_comes_first_says_so() {
        let p = proxy(8192);
        let config = FunctionConfig {
            queue_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(2),
            ..FunctionConfig::default()
        };
        let entry = p.index.apply(FunctionKey::new("b", "a"), config);
        let start = Instant::now();
        let Err(r) = p.admit(entry, &get("a.b.siesta.local", "/"), start).await else {
            panic!("admitted with no pod");
        };
        assert_eq!(Instant::now() - start, Duration::from_secs(2));
        let (status, body) = text(r).await;
        assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            body,
            "function b/a: timeoutSeconds passed while waiting for a pod\n"
        );
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
    fn a_pod_s_fields_as_bytes_lose_what_its_map_loses() {
        let head = b"HTTP/1.1 200 OK\r\nConnection: close, X-Secret\r\nx-secret: 1\r\nKeep-Alive: timeout=5\r\nTrailer: x-sum\r\nUpgrade: h2c\r\nProxy-Authenticate: Basic\r\nProxy-Connection: keep-alive\r\nHTTP2-Settings: AAA\r\nX-Keep: 1\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 0\r\nConnection: x-latin, caf\xe9\r\nX-Latin: 2\r\n\r\n";
        let mut buf = bytes::BytesMut::from(&head[..]);
        let fields = http1_wire::parse_response(&mut buf, 100, &Method::GET)
            .expect("valid")
            .expect("whole")
            .fields;
        let kept: Vec<(String, String)> = end_to_end(&fields)
            .map(|(n, v)| {
                (
                    String::from_utf8_lossy(n).to_ascii_lowercase(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let mut map = fields.to_map().expect("valid");
        strip_hop_by_hop(&mut map, false);
        let mut from_map: Vec<(String, String)> = map
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        // A map's removals move its fields about; each name's values keep
        // their order (the sorts are stable).
        let mut sorted = kept.clone();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        from_map.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(sorted, from_map);
        assert_eq!(
            kept.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            // An obs-text `Connection` value names nothing, as in a map.
            [
                "x-keep",
                "set-cookie",
                "set-cookie",
                "content-length",
                "x-latin"
            ]
        );
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
            key: crate::route::FunctionKey::new("b", "a").into(),
            path_and_query: PathAndQuery::from_static("/"),
            authority: Some(HeaderValue::from_static("a.b.siesta.local")),
            prefix: None,
        };
        // An untrusted peer's request, not an upgrade, to an HTTP/1 or an
        // h2c pod; the added fields put into the map to look at.
        let prepare = |h: &mut HeaderMap, h2: bool| {
            prepare_request_headers(
                h,
                remote,
                false,
                &target,
                false,
                h2,
                &mut Default::default(),
            )
            .insert_into(h);
        };
        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(
            &HTTP2_SETTINGS,
            HeaderValue::from_static("AAMAAABkAAQAoAAAAAIAAAAA"),
        );
        prepare(&mut h, false);
        assert!(!h.contains_key(header::TE));
        assert!(!h.contains_key(&HTTP2_SETTINGS));
        assert_eq!(h.get(&forwarded::X_FORWARDED_FOR).unwrap(), "10.1.2.3");
        assert_eq!(h.get(header::HOST).unwrap(), "a.b.siesta.local");

        let mut h = HeaderMap::new();
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert(header::HOST, HeaderValue::from_static("a.b.siesta.local"));
        prepare(&mut h, true);
        assert_eq!(h.get(header::TE).unwrap(), "trailers");
        assert!(!h.contains_key(header::HOST));
    }
}
