//! Streaming bodies in both directions; nothing is buffered.
//!
//! [`ProxyBody`] is what clients receive: an upstream body that carries the
//! request's [`Ticket`] (so a pod's concurrency slot is held until the last
//! byte, and metrics are taken then) and the request deadline, or a short
//! message the activator wrote itself. [`UpBody`] is what pods receive: the
//! client's body, either as is or parked in a shared slot so that a request
//! whose connect failed (before any byte was read) can be sent to another pod.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body, Frame, Incoming, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};

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
        m.duration
            .observe(now.saturating_duration_since(self.start).as_secs_f64());
    }
}

#[derive(Debug)]
struct DeadlineExceeded;

impl std::fmt::Display for DeadlineExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request exceeded the function's timeoutSeconds while streaming")
    }
}

impl std::error::Error for DeadlineExceeded {}

pin_project! {
    /// The body sent to the client.
    #[project = ProxyBodyProj]
    pub enum ProxyBody {
        Upstream {
            #[pin]
            inner: Incoming,
            ticket: Option<Ticket>,
            #[pin]
            deadline: Sleep,
        },
        Local {
            data: Option<Bytes>,
        },
    }
}

impl ProxyBody {
    pub fn upstream(inner: Incoming, ticket: Ticket, deadline: Instant) -> Self {
        ProxyBody::Upstream {
            inner,
            ticket: Some(ticket),
            deadline: tokio::time::sleep_until(deadline),
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
                inner,
                ticket,
                deadline,
            } => match inner.poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
                Poll::Ready(Some(Err(e))) => {
                    ticket.take();
                    Poll::Ready(Some(Err(e.into())))
                }
                Poll::Ready(None) => {
                    ticket.take();
                    Poll::Ready(None)
                }
                Poll::Pending => {
                    if ticket.is_some() && deadline.poll(cx).is_ready() {
                        if let Some(t) = ticket.take() {
                            t.entry.metrics.reject(Reject::RequestTimeout);
                        }
                        return Poll::Ready(Some(Err(DeadlineExceeded.into())));
                    }
                    Poll::Pending
                }
            },
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

/// Where a retryable request body waits until a connection to a pod exists.
pub type BodySlot = Arc<Mutex<Option<Incoming>>>;

/// The body sent to a pod.
pub enum UpBody {
    Direct(Incoming),
    /// Taken out of the slot on first read: if the connect fails first, the
    /// body is still in the slot for the next pod.
    Shared {
        slot: BodySlot,
        taken: Option<Incoming>,
    },
}

impl UpBody {
    pub fn shared(slot: BodySlot) -> Self {
        UpBody::Shared { slot, taken: None }
    }
}

/// The slot's body, even if a holder panicked.
pub(crate) fn lock(slot: &BodySlot) -> std::sync::MutexGuard<'_, Option<Incoming>> {
    slot.lock().unwrap_or_else(|p| p.into_inner())
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            UpBody::Direct(b) => Pin::new(b).poll_frame(cx),
            UpBody::Shared { slot, taken } => {
                if taken.is_none() {
                    *taken = lock(slot).take();
                }
                match taken {
                    Some(b) => Pin::new(b).poll_frame(cx),
                    None => Poll::Ready(None),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            UpBody::Direct(b) => b.is_end_stream(),
            UpBody::Shared { slot, taken } => match taken {
                Some(b) => b.is_end_stream(),
                None => lock(slot).as_ref().is_none_or(|b| b.is_end_stream()),
            },
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            UpBody::Direct(b) => b.size_hint(),
            UpBody::Shared { slot, taken } => match taken {
                Some(b) => b.size_hint(),
                None => lock(slot)
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint()),
            },
        }
    }
}
