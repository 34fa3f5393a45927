//! The response side: what clients receive, streamed, nothing buffered.
//!
//! [`ProxyBody`] is an upstream body that carries the request's [`Ticket`]
//! (so a pod's concurrency slot is held until the last byte, and metrics are
//! taken then), the request deadline and, for HTTP/1, the pod connection it
//! comes on (driven from here, given back to its pool at the body's end;
//! see [`crate::http1_pool`]); or a short message the activator wrote
//! itself. What pods receive is in [`crate::request_body`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use pin_project_lite::pin_project;
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

pin_project! {
    /// The body sent to the client.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream {
            #[pin]
            inner: Incoming,
            ticket: Option<Ticket>,
            deadline: Instant,
            // Made the first time the pod's body keeps the client waiting:
            // most bodies are complete when the head arrives, and a timer
            // costs a registration with the runtime's clock.
            timer: Option<Pin<Box<Sleep>>>,
            // The HTTP/1 connection the body comes on, lent until its end.
            lease: Option<Lease>,
        },
        Local {
            data: Option<Bytes>,
        },
    }
}

/// What a client reads when its response body outlived `timeoutSeconds`.
const STREAM_TIMEOUT: &str = "the request exceeded the function's timeoutSeconds while streaming";

/// Gives a lent connection back to its pool, once.
fn give_back(lease: &mut Option<Lease>) {
    if let Some(l) = lease.take() {
        l.release();
    }
}

impl ProxyBody {
    /// The pod's body. A lease is given back at once if the body is
    /// already complete (no body, or an empty one): the client's server
    /// may never poll it.
    pub fn upstream(
        inner: Incoming,
        ticket: Ticket,
        deadline: Instant,
        mut lease: Option<Lease>,
    ) -> Self {
        if inner.is_end_stream() {
            give_back(&mut lease);
        }
        ProxyBody::Upstream {
            inner,
            ticket: Some(ticket),
            deadline,
            timer: None,
            lease,
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
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.project() {
            ProxyBodyProj::Upstream {
                mut inner,
                ticket,
                deadline,
                timer,
                lease,
            } => {
                if let Some(l) = lease.as_mut() {
                    l.drive(cx);
                }
                match inner.as_mut().poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        // hyper's server stops at a body's declared length,
                        // and after trailers, and drops it without polling
                        // for its end: give the connection back with the
                        // last frame.
                        if frame.is_trailers() || inner.is_end_stream() {
                            give_back(lease);
                        }
                        Poll::Ready(Some(Ok(frame)))
                    }
                    Poll::Ready(Some(Err(e))) => {
                        lease.take();
                        ticket.take();
                        Poll::Ready(Some(Err(e.into())))
                    }
                    Poll::Ready(None) => {
                        give_back(lease);
                        ticket.take();
                        Poll::Ready(None)
                    }
                    Poll::Pending => {
                        let timer = timer
                            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(*deadline)));
                        if ticket.is_some() && timer.as_mut().poll(cx).is_ready() {
                            if let Some(t) = ticket.take() {
                                t.entry.metrics.reject(Reject::RequestTimeout);
                            }
                            return Poll::Ready(Some(Err(Ended(STREAM_TIMEOUT).into())));
                        }
                        Poll::Pending
                    }
                }
            }
            ProxyBodyProj::Local { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
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
