//! The response side: what clients receive, streamed, nothing buffered.
//!
//! [`ProxyBody`] is an upstream body that carries the request's [`Ticket`]
//! (so a pod's concurrency slot is held until the last byte, and metrics are
//! taken then) and the request deadline; or a short message the activator
//! wrote itself. For HTTP/1 the upstream body is the pod connection's
//! [`Lease`], which gives the connection back to its pool at the body's end
//! (see [`crate::http1_pool`]). What pods receive is in [`crate::request_body`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::http1_pool::Lease;
use crate::index::FunctionEntry;
use crate::metrics::Reject;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request held by a function, from admission to its last response byte.
/// Dropping it gives back the pod slot and records the request's metrics.
pub struct Ticket {
    pub entry: Arc<FunctionEntry>,
    /// The pod whose slot this request holds, if any.
    pub addr: Option<SocketAddr>,
    pub start: Instant,
    /// Status code sent to the client. 499 until a response is chosen: a
    /// ticket dropped before that means the client went away.
    pub code: u16,
}

impl Ticket {
    pub fn new(entry: Arc<FunctionEntry>, addr: Option<SocketAddr>, start: Instant) -> Self {
        Self {
            entry,
            addr,
            start,
            code: 499,
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let now = Instant::now();
        self.entry.finish(self.addr.take(), now);
        let m = &self.entry.metrics;
        m.request(self.code);
        m.observe_duration(now.saturating_duration_since(self.start).as_secs_f64());
    }
}

/// An error that is one fixed sentence: what a body stream reports when
/// the activator ends it.
#[derive(Debug)]
pub struct Ended(pub &'static str);

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for Ended {}

/// A pod's response body: from hyper-util's client (h2c, upgrades), or read
/// from a connection of the HTTP/1 pool.
pub enum PodBody {
    Hyper(Incoming),
    Pooled(Lease),
}

impl PodBody {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self {
            PodBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
            PodBody::Pooled(b) => Pin::new(b).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            PodBody::Hyper(b) => b.is_end_stream(),
            PodBody::Pooled(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            PodBody::Hyper(b) => b.size_hint(),
            PodBody::Pooled(b) => b.size_hint(),
        }
    }
}

/// The body sent to the client.
// Upstream is nearly every response's, and holds the pod connection's
// lease: boxing it would add an allocation per request to spare the
// activator's own short answers a few hundred bytes.
#[allow(clippy::large_enum_variant)]
pub enum ProxyBody {
    Upstream {
        inner: PodBody,
        ticket: Option<Ticket>,
        deadline: Instant,
        // Made the first time the pod's body keeps the client waiting:
        // most bodies are complete when the head arrives, and a timer
        // costs a registration with the runtime's clock.
        timer: Option<Pin<Box<Sleep>>>,
    },
    Local {
        data: Option<Bytes>,
    },
}

/// What a client reads when its response body outlived `timeoutSeconds`.
const STREAM_TIMEOUT: &str = "the request exceeded the function's timeoutSeconds while streaming";

impl ProxyBody {
    /// The pod's body.
    pub fn upstream(inner: PodBody, ticket: Ticket, deadline: Instant) -> Self {
        ProxyBody::Upstream {
            inner,
            ticket: Some(ticket),
            deadline,
            timer: None,
        }
    }

    pub fn local(data: impl Into<Bytes>) -> Self {
        ProxyBody::Local {
            data: Some(data.into()),
        }
    }

    pub fn empty() -> Self {
        ProxyBody::Local { data: None }
    }

    /// An HTTP/1 pod's response fields, as it wrote them, when they were
    /// left for the server to write (see [`crate::http1_wire::Fields`]).
    pub fn pod_fields(&self) -> Option<&crate::http1_wire::Fields> {
        match self {
            ProxyBody::Upstream {
                inner: PodBody::Pooled(lease),
                ..
            } => lease.fields(),
            _ => None,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            ProxyBody::Upstream {
                inner,
                ticket,
                deadline,
                timer,
            } => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(e))) => {
                    ticket.take();
                    Poll::Ready(Some(Err(e)))
                }
                Poll::Ready(None) => {
                    ticket.take();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    let timer =
                        timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*deadline)));
                    if ticket.is_some() && timer.as_mut().poll(cx).is_ready() {
                        if let Some(t) = ticket.take() {
                            t.entry.metrics.reject(Reject::RequestTimeout);
                        }
                        return Poll::Ready(Some(Err(Ended(STREAM_TIMEOUT).into())));
                    }
                    Poll::Pending
                }
            },
            ProxyBody::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.is_end_stream(),
            ProxyBody::Local { data } => data.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream { inner, .. } => inner.size_hint(),
            ProxyBody::Local { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
        }
    }
}
