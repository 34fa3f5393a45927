//! The body sent to a pod: the client's request body, streamed, with a
//! bounded replay log so that a request the pod never processed can be sent
//! again (on a new connection, or to another pod) even after some of its body
//! went out, a per-Function size limit, and a record of why it failed when
//! the failure is the client's.
//!
//! Each attempt gets an [`UpBody`] handle on one shared `Log`. A handle
//! first replays what earlier attempts read (cheap `Bytes` clones), then
//! reads on from the client, appending to the log while it stays within
//! [`REPLAY_BUFFER_BYTES`]; past that the log is dropped and the request can
//! no longer be replayed. Only the newest handle may read from the client: a
//! handle of a failed attempt that hyper still polls gets an error instead of
//! stealing bytes from the next attempt.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::body::{BoxError, Ended};

/// The most of a request body kept for a replay (as linkerd2-proxy keeps
/// 64 KiB): bodies up to this size can always be replayed; a longer body
/// can be replayed only until its first 64 KiB have been read.
pub const REPLAY_BUFFER_BYTES: usize = 64 * 1024;

/// Why the client's side of a request body failed: the client's fault, never
/// the pod's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientFault {
    /// The body is not valid HTTP (a bad chunk size, a chunk longer than
    /// announced, bad h2 framing): 400.
    Malformed,
    /// The client went away (closed or reset) before sending all of it: 499.
    Gone,
    /// The body is longer than the Function's `maxRequestBodyBytes`: 413.
    TooLarge,
}

impl ClientFault {
    fn error(self) -> BoxError {
        Ended(match self {
            ClientFault::Malformed => "the client sent a malformed request body",
            ClientFault::Gone => "the client went away before sending the whole body",
            ClientFault::TooLarge => "the request body is larger than the function allows",
        })
        .into()
    }
}

/// A frame kept for replay.
enum Kept {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Kept {
    fn frame(&self) -> Frame<Bytes> {
        match self {
            Kept::Data(b) => Frame::data(b.clone()),
            Kept::Trailers(t) => Frame::trailers(t.clone()),
        }
    }
}

/// The state all attempts of one request share.
struct Log {
    /// The client's body; `None` once it ended or failed.
    inner: Option<Incoming>,
    /// What was read so far, while replayable.
    kept: Vec<Kept>,
    kept_bytes: usize,
    /// False once more than [`REPLAY_BUFFER_BYTES`] were read (`kept` is then
    /// emptied): a new attempt could not resend the whole body.
    replayable: bool,
    /// Body bytes read from the client, for the limit.
    read: u64,
    limit: Option<u64>,
    fault: Option<ClientFault>,
    /// The attempt allowed to read on from the client.
    generation: u32,
}

/// A client's request body as a server hands it to the proxy: hyper's, or
/// none at all (the HTTP/1 fast path, [`crate::h1_server`], serves only
/// requests without one).
pub trait ClientBody: Body + Send + 'static {
    /// Whether the server that hands it over writes a pod's HTTP/1
    /// response fields from their bytes ([`crate::http1_wire::Fields`]):
    /// the fast path does; hyper's server needs them in the response's map.
    const WRITES_POD_FIELDS: bool;

    /// Whether its request's head is known to carry no body framing
    /// (`Content-Length`, `Transfer-Encoding`), `Upgrade`, `Expect` or
    /// `Connection` option ([`PlainBody`]): the proxy then does not look
    /// for them in the map.
    const PLAIN_HEAD: bool = false;

    /// hyper's body, to read on from the client; `None` when there is none.
    fn into_incoming(self) -> Option<Incoming>;
}

impl ClientBody for Incoming {
    const WRITES_POD_FIELDS: bool = false;

    fn into_incoming(self) -> Option<Incoming> {
        Some(self)
    }
}

/// A bodiless request whose head nothing has checked: the proxy's tests
/// hand these to [`crate::proxy::Proxy::handle`] (the fast path's requests
/// are [`PlainBody`]).
#[cfg(test)]
impl ClientBody for http_body_util::Empty<Bytes> {
    const WRITES_POD_FIELDS: bool = true;

    fn into_incoming(self) -> Option<Incoming> {
        None
    }
}

/// The body of a request whose head the HTTP/1 fast path has read and
/// found plain ([`crate::h1_server::request_head`]): none, and a head with
/// none of the fields [`ClientBody::PLAIN_HEAD`] names. Made only there.
#[derive(Debug)]
pub struct PlainBody(());

impl PlainBody {
    pub(crate) fn of_plain_head() -> Self {
        Self(())
    }
}

impl Body for PlainBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        true
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(0)
    }
}

impl ClientBody for PlainBody {
    const WRITES_POD_FIELDS: bool = true;
    const PLAIN_HEAD: bool = true;

    fn into_incoming(self) -> Option<Incoming> {
        None
    }
}

/// One request's body, shared by its attempts.
#[derive(Clone)]
pub struct RequestBody {
    log: Arc<Mutex<Log>>,
}

impl RequestBody {
    /// `limit`: the most body bytes the Function accepts, if any.
    pub fn new(inner: Incoming, limit: Option<u64>) -> Self {
        Self {
            log: Arc::new(Mutex::new(Log {
                inner: Some(inner),
                kept: Vec::new(),
                kept_bytes: 0,
                replayable: true,
                read: 0,
                limit,
                fault: None,
                generation: 0,
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A body for the next attempt, replaying what earlier ones read. Earlier
    /// handles stop reading from the client.
    pub fn attempt(&self) -> UpBody {
        let mut log = self.lock();
        log.generation = log.generation.wrapping_add(1);
        UpBody(Handle::Log {
            log: self.log.clone(),
            generation: log.generation,
            pos: 0,
        })
    }

    /// Whether a new attempt would send the whole body again.
    pub fn replayable(&self) -> bool {
        let log = self.lock();
        log.replayable && log.fault.is_none()
    }

    /// The client's fault, if reading its body failed.
    pub fn fault(&self) -> Option<ClientFault> {
        self.lock().fault
    }
}

/// The body a pod receives for one attempt.
pub struct UpBody(Handle);

enum Handle {
    /// The request had no body.
    Empty,
    Log {
        log: Arc<Mutex<Log>>,
        generation: u32,
        /// Frames of `kept` this handle has sent.
        pos: usize,
    },
}

impl UpBody {
    /// The body of a request that has none.
    pub fn empty() -> Self {
        UpBody(Handle::Empty)
    }
}

/// What a failed read from the client says about the client.
fn fault_of(e: &hyper::Error) -> ClientFault {
    use std::error::Error as _;
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ClientFault::Gone;
    }
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            return match io.kind() {
                UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe => {
                    ClientFault::Gone
                }
                _ => ClientFault::Malformed,
            };
        }
        if let Some(h2) = s.downcast_ref::<h2::Error>() {
            // The client reset its stream (CANCEL and the like): it left.
            return if h2.is_reset()
                && h2.is_remote()
                && h2.reason() != Some(h2::Reason::PROTOCOL_ERROR)
            {
                ClientFault::Gone
            } else {
                ClientFault::Malformed
            };
        }
        source = s.source();
    }
    ClientFault::Malformed
}

impl Body for UpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (log, generation, pos) = match &mut self.get_mut().0 {
            Handle::Empty => return Poll::Ready(None),
            Handle::Log {
                log,
                generation,
                pos,
            } => (log, *generation, pos),
        };
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        let log = &mut *log;
        if let Some(kept) = log.kept.get(*pos) {
            *pos += 1;
            return Poll::Ready(Some(Ok(kept.frame())));
        }
        if log.generation != generation {
            return Poll::Ready(Some(Err(Ended(
                "a newer attempt of this request owns its body",
            )
            .into())));
        }
        if let Some(fault) = log.fault {
            return Poll::Ready(Some(Err(fault.error())));
        }
        let Some(inner) = log.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                log.inner = None;
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                let fault = fault_of(&e);
                tracing::debug!(error = %e, ?fault, "reading the client's request body failed");
                log.inner = None;
                log.fault = Some(fault);
                return Poll::Ready(Some(Err(fault.error())));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        let len = frame.data_ref().map_or(0, Bytes::len);
        log.read += len as u64;
        if log.limit.is_some_and(|limit| log.read > limit) {
            log.inner = None;
            log.fault = Some(ClientFault::TooLarge);
            return Poll::Ready(Some(Err(ClientFault::TooLarge.error())));
        }
        if log.replayable {
            if log.kept_bytes + len <= REPLAY_BUFFER_BYTES {
                let kept = match frame.data_ref() {
                    Some(d) => Some(Kept::Data(d.clone())),
                    None => frame.trailers_ref().map(|t| Kept::Trailers(t.clone())),
                };
                if let Some(kept) = kept {
                    log.kept.push(kept);
                    log.kept_bytes += len;
                    *pos += 1;
                }
            } else {
                log.replayable = false;
                log.kept = Vec::new();
                log.kept_bytes = 0;
                *pos = 0;
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Handle::Empty => true,
            Handle::Log { log, pos, .. } => {
                let log = log.lock().unwrap_or_else(|p| p.into_inner());
                *pos >= log.kept.len()
                    && log.fault.is_none()
                    && log.inner.as_ref().is_none_or(|b| b.is_end_stream())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Handle::Empty => SizeHint::with_exact(0),
            Handle::Log { log, pos, .. } => {
                let log = log.lock().unwrap_or_else(|p| p.into_inner());
                let replay: u64 = log.kept[(*pos).min(log.kept.len())..]
                    .iter()
                    .map(|k| match k {
                        Kept::Data(b) => b.len() as u64,
                        Kept::Trailers(_) => 0,
                    })
                    .sum();
                let inner = log
                    .inner
                    .as_ref()
                    .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + replay);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + replay);
                }
                hint
            }
        }
    }
}
