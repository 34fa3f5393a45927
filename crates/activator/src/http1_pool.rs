//! One serving thread's HTTP/1 keep-alive connections to pods, read and
//! written by the request that holds them.
//!
//! hyper's client connection is a dispatcher of its own: a request crosses
//! a channel to it, and a callback carries the response back, even when it
//! is polled from the request's task. Here a connection is a socket and a
//! read buffer: the request's task writes the head (with as much of the
//! body as is at hand, in one `writev`), reads the response head
//! ([`crate::http1_wire`]), and then the body through the [`Lease`], which
//! is the response body itself ([`crate::body::ProxyBody`] polls it). The
//! lease gives the connection back to the pool as it reads the body's last
//! byte. Each serving thread has its own pool (`serving`), so its lock is
//! never contended.
//!
//! A pooled connection is checked as it is taken, from the readiness the
//! runtime already holds (no system call): one the pod closed while it sat
//! idle is passed over before anything is written to it. One that closes
//! just as the request goes out is the replay's case ([`crate::upstream`]).
//! A pod that answers before it has read the whole request body (a 202, a
//! 413) gets the rest of it from a task of its own, after which the
//! connection is pooled. A sweep every quarter of the idle timeout closes
//! the connections idle for a whole one (so a request reads no clock for
//! the pool); at most `max_idle` are kept per pod, the newest taken first.
//!
//! Upgrades (WebSocket) and h2c keep hyper-util's client (`proxy`).

use std::collections::{HashMap, VecDeque};
use std::future::poll_fn;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use bytes::{Buf as _, Bytes, BytesMut};
use http::Response;
use hyper::body::{Body, Frame, SizeHint};
use tokio::io::AsyncWrite;
use tokio::net::TcpStream;

use crate::body::BoxError;
use crate::http1_wire::{self, Chunked, Framing, HeadError, Piece};
use crate::request_body::UpBody;

/// One pod's connections, idle, each with the sweep tick it was put back in.
type Idle = Vec<(Conn, u32)>;

/// The idle connections by pod. Looked up twice a request (take, give
/// back): SipHash, the default, was about 230 instructions a lookup. Pod
/// addresses come from the cluster, not from clients, so the map needs no
/// resistance to chosen keys.
type ByPod = HashMap<SocketAddr, Idle, BuildHasherDefault<AddrHasher>>;

/// FxHash's multiply-and-rotate step, over what an address hashes.
#[derive(Default)]
struct AddrHasher(u64);

impl AddrHasher {
    fn add(&mut self, x: u64) {
        self.0 = (self.0.rotate_left(5) ^ x).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for AddrHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// Sweeps per idle timeout: a connection is closed after it has been idle
/// for between 1 and 1 + 1/`TICKS` idle timeouts.
const TICKS: u32 = 4;

/// What a read asks the socket for at first: a response head and a small
/// body come in one read.
const READ_SIZE: usize = 8192;

/// The most a read asks for: a read that fills its room doubles the next
/// one's, up to this, as hyper's adaptive read buffer grows for a large
/// body.
const MAX_READ_SIZE: usize = 512 * 1024;

/// The last chunk of a chunked body, with no trailers.
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Request body bytes gathered before they are written.
const WRITE_BATCH: usize = 64 * 1024;

/// The pool's settings.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Idle connections kept per pod.
    pub max_idle: usize,
    /// How long a connection may sit idle before it is closed; also how
    /// long a pod that answered early has to take the rest of the body.
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    /// Most header fields in a response (`--max-response-headers`).
    pub max_headers: usize,
}

/// What a request's head says, as it goes to a pod: written as it is, with
/// the framing header the body needs.
#[derive(Clone, Copy)]
pub struct Target<'a> {
    pub method: &'a http::Method,
    /// Origin form.
    pub path_and_query: &'a str,
    pub headers: &'a http::HeaderMap,
    /// Written after `headers`.
    pub added: &'a crate::forwarded::Added,
}

pub struct Pool {
    idle: Mutex<ByPod>,
    settings: Settings,
    sweeping: AtomicBool,
    /// Sweeps so far: an idle connection's age is counted in them, so that
    /// a request reads no clock for the pool.
    tick: AtomicU32,
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (or not within the connect timeout).
    Connect(io::Error),
    /// The connection failed before a byte of the request was written:
    /// the pod cannot have seen it.
    NotSent(io::Error),
    /// The connection closed or failed after the request (or part of it)
    /// went out, before a whole response head came back.
    Closed(io::Error),
    /// The response head was refused ([`http1_wire::parse_response`]).
    Head(HeadError),
    /// The request body failed: the client's side ([`UpBody`]).
    Body(BoxError),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect: {e}"),
            SendError::NotSent(e) => {
                write!(f, "connection closed before the request went out: {e}")
            }
            SendError::Closed(e) => write!(f, "connection closed before a response: {e}"),
            SendError::Head(e) => write!(f, "{e}"),
            SendError::Body(e) => write!(f, "request body: {e}"),
        }
    }
}

fn closed(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, what)
}

/// One connection to a pod: its socket and what was read from it but not
/// yet used.
pub struct Conn {
    io: TcpStream,
    rbuf: BytesMut,
    /// Room the next read asks for.
    read_size: usize,
    /// Reads in a row that used less than half of it.
    short_reads: u8,
    addr: SocketAddr,
}

impl Conn {
    /// Whether an idle connection may take a request: not closed by its
    /// pod, nothing unasked-for sent. Looks only at the readiness the
    /// runtime has: a socket with nothing to read needs no system call.
    fn usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        match self.io.poll_read_ready(&mut cx) {
            Poll::Pending => true,
            Poll::Ready(Err(_)) => false,
            Poll::Ready(Ok(())) => {
                let mut probe = [0u8; 1];
                matches!(self.io.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
        }
    }

    /// Reads more of what the pod sends; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.rbuf.capacity() - self.rbuf.len() < self.read_size / 2 {
            self.rbuf.reserve(self.read_size);
        }
        let room = self.rbuf.capacity() - self.rbuf.len();
        let n = ready!(tokio_util::io::poll_read_buf(
            Pin::new(&mut self.io),
            cx,
            &mut self.rbuf
        ))?;
        (self.read_size, self.short_reads) =
            next_read_size(self.read_size, self.short_reads, room, n);
        Poll::Ready(Ok(n))
    }

    /// Back to an idle connection's footprint: a buffer grown for a large
    /// body is let go.
    fn shrink(&mut self) {
        if self.read_size > READ_SIZE {
            self.read_size = READ_SIZE;
            self.rbuf = BytesMut::new();
        }
    }
}

/// The room the next read asks for, after a read of `n` bytes into `room`,
/// and the short reads in a row so far: a read that fills its room doubles
/// it (up to [`MAX_READ_SIZE`]); two reads in a row that use less than half
/// halve it (down to [`READ_SIZE`]): the stream slowed down (a long
/// server-sent stream), and a large buffer per read would pin memory for
/// little.
fn next_read_size(size: usize, short_reads: u8, room: usize, n: usize) -> (usize, u8) {
    if n == room {
        ((size * 2).min(MAX_READ_SIZE), 0)
    } else if n < size / 2 && size > READ_SIZE {
        if short_reads >= 1 {
            (size / 2, 0)
        } else {
            (size, short_reads + 1)
        }
    } else {
        (size, short_reads)
    }
}

/// What is left to write of a request: queued bytes, and the body still to
/// read from the client.
struct Writer {
    queue: VecDeque<Bytes>,
    queued: usize,
    body: Option<UpBody>,
    framing: Framing,
    /// For `Content-Length`: body bytes still owed.
    owed: u64,
    /// Bytes of this request written so far.
    written: u64,
}

/// Why writing a request stopped.
enum WriteError {
    Io(io::Error),
    Body(BoxError),
}

impl Writer {
    fn new(head: Bytes, body: Option<UpBody>, framing: Framing) -> Self {
        let owed = match framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut queue = VecDeque::with_capacity(4);
        let queued = head.len();
        queue.push_back(head);
        Self {
            queue,
            queued,
            body,
            framing,
            owed,
            written: 0,
        }
    }

    fn push(&mut self, b: Bytes) {
        if !b.is_empty() {
            self.queued += b.len();
            self.queue.push_back(b);
        }
    }

    /// Takes what the body has ready into the queue; the body is gone once
    /// it has all been taken.
    fn gather(&mut self, cx: &mut Context<'_>) -> Result<(), WriteError> {
        while self.queued < WRITE_BATCH {
            let Some(body) = self.body.as_mut() else {
                return Ok(());
            };
            match Pin::new(body).poll_frame(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(Some(Err(e))) => {
                    self.body = None;
                    return Err(WriteError::Body(e));
                }
                Poll::Ready(None) => {
                    self.body = None;
                    match self.framing {
                        Framing::Chunked => self.push(Bytes::from_static(LAST_CHUNK)),
                        Framing::Length(_) if self.owed > 0 => {
                            return Err(WriteError::Body(
                                "the request body ended before its content-length".into(),
                            ));
                        }
                        _ => {}
                    }
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => match self.framing {
                        Framing::Chunked if !data.is_empty() => {
                            self.push(http1_wire::chunk_line(data.len()));
                            self.push(data);
                            self.push(Bytes::from_static(b"\r\n"));
                        }
                        Framing::Length(_) => {
                            let len = data.len() as u64;
                            if len > self.owed {
                                self.body = None;
                                return Err(WriteError::Body(
                                    "the request body is longer than its content-length".into(),
                                ));
                            }
                            self.owed -= len;
                            self.push(data);
                        }
                        _ => {}
                    },
                    Err(frame) => {
                        // Trailers end the body. They are not passed on,
                        // as hyper's client passed none here: fields sent
                        // after the head would reach the pod unchecked by
                        // the hop-by-hop and forwarding rules.
                        if frame.is_trailers() {
                            self.body = None;
                            if self.framing == Framing::Chunked {
                                self.push(Bytes::from_static(LAST_CHUNK));
                            }
                        }
                    }
                },
            }
        }
        Ok(())
    }

    /// Writes the request on: ready once all of it is written.
    fn poll(&mut self, cx: &mut Context<'_>, io: &mut TcpStream) -> Poll<Result<(), WriteError>> {
        loop {
            self.gather(cx)?;
            if self.queue.is_empty() {
                return if self.body.is_none() {
                    Poll::Ready(Ok(()))
                } else {
                    Poll::Pending
                };
            }
            let mut slices = [IoSlice::new(&[]); 8];
            let n = self.queue.len().min(slices.len());
            for (s, b) in slices.iter_mut().zip(&self.queue) {
                *s = IoSlice::new(b);
            }
            let mut wrote = ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n]))
                .map_err(WriteError::Io)?;
            if wrote == 0 {
                return Poll::Ready(Err(WriteError::Io(io::ErrorKind::WriteZero.into())));
            }
            self.written += wrote as u64;
            self.queued -= wrote;
            while wrote > 0 {
                let front = &mut self.queue[0];
                if wrote >= front.len() {
                    wrote -= front.len();
                    self.queue.pop_front();
                } else {
                    front.advance(wrote);
                    wrote = 0;
                }
            }
        }
    }
}

/// How far the response body has been read.
enum Reading {
    Length(u64),
    Chunked(Chunked),
    Close,
    Done,
}

/// A connection lent to one response: its body, read from the socket as it
/// is polled. The connection goes back to the pool as the body ends.
pub struct Lease {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    reading: Reading,
    /// The request's rest, when the pod answered before reading it all
    /// (rare, so boxed: the lease is in every response's body).
    writer: Option<Box<Writer>>,
    keep_alive: bool,
    /// The response's header fields, until they are written or made a map
    /// of: the response itself carries an empty map (see
    /// [`http1_wire::Fields`]).
    fields: Option<http1_wire::Fields>,
}

impl Lease {
    /// The response's header fields, as the pod wrote them.
    pub fn fields(&self) -> Option<&http1_wire::Fields> {
        self.fields.as_ref()
    }

    /// The response's header fields, taken out to be made a map of.
    pub fn take_fields(&mut self) -> Option<http1_wire::Fields> {
        self.fields.take()
    }

    /// The body has been read to its end: the connection goes back to the
    /// pool if it can take another request.
    fn end(&mut self) {
        self.reading = Reading::Done;
        let Some(conn) = self.conn.take() else { return };
        // Bytes after the response: the pod is not speaking HTTP/1 as asked.
        if !self.keep_alive || !conn.rbuf.is_empty() {
            return;
        }
        match self.writer.take() {
            None => self.pool.keep(conn),
            // Rare: most pods read the body before they answer.
            Some(writer) => {
                tokio::spawn(finish(self.pool.clone(), conn, writer));
            }
        }
    }

    /// Writes on the request's rest, if the pod answered before it.
    fn drive_writer(&mut self, cx: &mut Context<'_>) {
        if let (Some(w), Some(conn)) = (self.writer.as_mut(), self.conn.as_mut()) {
            match w.poll(cx, &mut conn.io) {
                Poll::Pending => {}
                Poll::Ready(Ok(())) => self.writer = None,
                Poll::Ready(Err(_)) => {
                    self.writer = None;
                    self.keep_alive = false;
                }
            }
        }
    }
}

impl Body for Lease {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        this.drive_writer(cx);
        loop {
            let Some(conn) = this.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut this.reading {
                Reading::Done => return Poll::Ready(None),
                Reading::Length(left) => {
                    if !conn.rbuf.is_empty() {
                        let data = http1_wire::take_up_to(&mut conn.rbuf, left);
                        if *left == 0 {
                            // hyper's server stops at the declared length
                            // and drops the body without polling for its
                            // end: the connection goes back now.
                            this.end();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
                Reading::Chunked(state) => match state.next(&mut conn.rbuf) {
                    Ok(Some(Piece::Data(data))) => {
                        // The last chunk often comes with the data before
                        // it: end now, so that the connection goes back
                        // with the data.
                        if *state == Chunked::DataEnd
                            && conn.rbuf.starts_with(b"\r\n")
                            && conn.rbuf[2..].starts_with(LAST_CHUNK)
                        {
                            conn.rbuf.advance(2 + LAST_CHUNK.len());
                            this.end();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Ok(Some(Piece::Trailers(t))) => {
                        // hyper's server stops polling after trailers.
                        this.end();
                        return Poll::Ready(Some(Ok(Frame::trailers(t))));
                    }
                    Ok(Some(Piece::End)) => {
                        this.end();
                        return Poll::Ready(None);
                    }
                    Ok(None) => {}
                    Err(why) => {
                        this.conn = None;
                        return Poll::Ready(Some(Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            why,
                        ))));
                    }
                },
                Reading::Close => {
                    if !conn.rbuf.is_empty() {
                        let data = conn.rbuf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                }
            }
            match ready!(conn.poll_fill(cx)) {
                Ok(0) if matches!(this.reading, Reading::Close) => {
                    this.reading = Reading::Done;
                    this.conn = None;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(closed(
                        "the pod closed the connection before the body ended",
                    ))));
                }
                Ok(_) => {}
                Err(e) => {
                    this.conn = None;
                    return Poll::Ready(Some(Err(e)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.reading, Reading::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.reading {
            Reading::Length(n) => SizeHint::with_exact(n),
            Reading::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

impl Pool {
    pub fn new(settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            idle: Mutex::new(ByPod::default()),
            settings,
            sweeping: AtomicBool::new(false),
            tick: AtomicU32::new(0),
        })
    }

    /// Sends a request to `addr` on a pooled connection, or on a new one
    /// if none is idle or `fresh` asks for it. The response's body is the
    /// lease: reading it to its end gives the connection back.
    pub async fn send(
        self: &Arc<Self>,
        addr: SocketAddr,
        fresh: bool,
        target: Target<'_>,
        body: UpBody,
    ) -> Result<Response<Lease>, SendError> {
        self.start_sweeping();
        // Before a connection is taken: a request that cannot go out
        // costs none.
        let framing = http1_wire::request_framing(
            target.method,
            target.headers,
            body.is_end_stream(),
            body.size_hint().exact(),
        )
        .map_err(|e| SendError::Body(e.into()))?;
        let mut conn = loop {
            match (!fresh).then(|| self.take(addr)).flatten() {
                Some(mut conn) => {
                    // It closed while idle: the next one.
                    if conn.usable() {
                        break conn;
                    }
                }
                None => break Box::pin(self.connect(addr)).await?,
            }
        };
        let mut head = BytesMut::new();
        http1_wire::encode_head(
            &mut head,
            target.method,
            target.path_and_query,
            target.headers,
            target.added.iter(),
            framing,
        );
        let framing = framing.body;
        let body = (framing != Framing::Empty).then_some(body);
        let mut writer = Some(Writer::new(head.freeze(), body, framing));
        let method = target.method;
        let max_headers = self.settings.max_headers;
        let mut write_failed: Option<io::Error> = None;
        let head = poll_fn(|cx| {
            if let Some(w) = writer.as_mut() {
                match w.poll(cx, &mut conn.io) {
                    Poll::Pending => {}
                    Poll::Ready(Ok(())) => writer = None,
                    Poll::Ready(Err(WriteError::Body(e))) => {
                        return Poll::Ready(Err(SendError::Body(e)));
                    }
                    Poll::Ready(Err(WriteError::Io(e))) => {
                        if w.written == 0 {
                            return Poll::Ready(Err(SendError::NotSent(e)));
                        }
                        // A pod that answered and closed (a 413) has its
                        // answer to read yet.
                        writer = None;
                        write_failed = Some(e);
                    }
                }
            }
            loop {
                // An empty buffer has nothing to parse: the pod has not
                // answered yet, which is what the first polls find.
                if !conn.rbuf.is_empty() {
                    match http1_wire::parse_response(&mut conn.rbuf, max_headers, method) {
                        Ok(Some(head)) => return Poll::Ready(Ok(head)),
                        Ok(None) => {}
                        Err(e) => return Poll::Ready(Err(SendError::Head(e))),
                    }
                }
                match ready!(conn.poll_fill(cx)) {
                    Ok(0) => {
                        let e = write_failed.take().unwrap_or_else(|| {
                            closed("the pod closed the connection before answering")
                        });
                        return Poll::Ready(Err(SendError::Closed(e)));
                    }
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Err(SendError::Closed(e))),
                }
            }
        })
        .await?;
        let reading = match head.framing {
            Framing::Empty => Reading::Done,
            Framing::Length(n) => Reading::Length(n),
            Framing::Chunked => Reading::Chunked(Chunked::Size),
            Framing::Close => Reading::Close,
        };
        let mut lease = Lease {
            conn: Some(conn),
            pool: self.clone(),
            reading,
            keep_alive: head.keep_alive && write_failed.is_none(),
            writer: writer.map(Box::new),
            fields: Some(head.fields),
        };
        if matches!(lease.reading, Reading::Done) {
            // No body: the client's server may never poll it.
            lease.end();
        }
        let mut resp = Response::new(lease);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        if let Some(reason) = head.reason {
            resp.extensions_mut().insert(reason);
        }
        Ok(resp)
    }

    /// Idle connections held now, over all pods.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.lock().values().map(Vec::len).sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByPod> {
        // A panic while holding it leaves the map as it was between
        // operations: usable.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The newest idle connection to `addr` (the sweep closes the old).
    fn take(&self, addr: SocketAddr) -> Option<Conn> {
        let mut idle = self.lock();
        let list = idle.get_mut(&addr)?;
        let found = list.pop().map(|(conn, _)| conn);
        if list.is_empty() {
            idle.remove(&addr);
        }
        found
    }

    async fn connect(&self, addr: SocketAddr) -> Result<Conn, SendError> {
        let io = tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                SendError::Connect(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no connection within the connect timeout",
                ))
            })?
            .map_err(SendError::Connect)?;
        io.set_nodelay(true).map_err(SendError::Connect)?;
        Ok(Conn {
            io,
            rbuf: BytesMut::new(),
            read_size: READ_SIZE,
            short_reads: 0,
            addr,
        })
    }

    fn keep(&self, mut conn: Conn) {
        conn.shrink();
        let mut idle = self.lock();
        let list = idle.entry(conn.addr).or_default();
        if list.len() < self.settings.max_idle {
            list.push((conn, self.tick.load(Ordering::Relaxed)));
        }
    }

    /// Closes connections idle past the timeout, or closed by their pod,
    /// every few seconds, from the first send on: a pod that went away
    /// (its function at zero) takes none of them.
    fn start_sweeping(self: &Arc<Self>) {
        // A read on every send, a write once.
        if self.sweeping.load(Ordering::Relaxed) || self.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(self);
        let every = (self.settings.idle_timeout / TICKS).max(Duration::from_millis(10));
        tokio::spawn(sweep(pool, every));
    }

    fn sweep(&self) {
        let now = self.tick.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        self.lock().retain(|_, list| {
            list.retain_mut(|(conn, put)| now.wrapping_sub(*put) <= TICKS && conn.usable());
            !list.is_empty()
        });
    }
}

/// Writes the rest of a request whose response has ended (the pod answered
/// early), then pools the connection; gives up after the idle timeout.
async fn finish(pool: Arc<Pool>, mut conn: Conn, mut writer: Box<Writer>) {
    let written = poll_fn(|cx| writer.poll(cx, &mut conn.io));
    if let Ok(Ok(())) = tokio::time::timeout(pool.settings.idle_timeout, written).await {
        pool.keep(conn);
    }
}

/// `GET /` with `Host: pod`, for tests.
#[cfg(test)]
pub(crate) async fn get(
    pool: &Arc<Pool>,
    addr: SocketAddr,
    fresh: bool,
) -> Result<Response<Lease>, SendError> {
    let mut headers = http::HeaderMap::new();
    headers.insert(http::header::HOST, http::HeaderValue::from_static("pod"));
    let target = Target {
        method: &http::Method::GET,
        path_and_query: "/",
        headers: &headers,
        added: &crate::forwarded::Added::default(),
    };
    pool.send(addr, fresh, target, UpBody::empty()).await
}

async fn sweep(pool: Weak<Pool>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    use super::*;

    /// Reads a response body to its end.
    async fn body_text(resp: Response<Lease>) -> String {
        use http_body_util::BodyExt as _;
        let body = resp.into_body().collect().await.expect("body");
        String::from_utf8_lossy(&body.to_bytes()).into_owned()
    }

    fn settings(idle_timeout: Duration) -> Settings {
        Settings {
            max_idle: 8,
            idle_timeout,
            connect_timeout: Duration::from_secs(2),
            max_headers: 100,
        }
    }

    /// A keep-alive server that answers each request with the number of
    /// its connection, closing each `linger` after its `per_conn`th
    /// answer. Counts connections.
    async fn server(per_conn: usize, linger: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for _ in 0..per_conn {
                        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            let mut chunk = [0u8; 1024];
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => buf.extend_from_slice(&chunk[..k]),
                            }
                        }
                        buf.clear();
                        let body = format!("conn {n}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(resp.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                    tokio::time::sleep(linger).await;
                });
            }
        });
        (addr, accepted)
    }

    async fn one(pool: &Arc<Pool>, addr: SocketAddr, fresh: bool) -> String {
        let resp = get(pool, addr, fresh).await.expect("send");
        body_text(resp).await
    }

    #[tokio::test]
    async fn a_connection_whose_body_ended_is_used_again() {
        let (addr, accepted) = server(100, Duration::ZERO).await;
        let pool = Pool::new(settings(Duration::from_secs(30)));
        for _ in 0..5 {
            assert_eq!(one(&pool, addr, false).await, "conn 1");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
        // A fresh send opens its own, and gives it back too.
        assert_eq!(one(&pool, addr, true).await, "conn 2");
        assert_eq!(pool.idle_count(), 2);
    }

    #[tokio::test]
    async fn a_connection_the_pod_closed_while_idle_is_passed_over_unwritten() {
        // Each connection answers twice, then closes without a word 30 ms
        // later: after it went back to the pool, before it is taken again.
        let (addr, accepted) = server(2, Duration::from_millis(30)).await;
        let pool = Pool::new(settings(Duration::from_secs(30)));
        let mut seen = Vec::new();
        for _ in 0..6 {
            let sent = tokio::time::timeout(Duration::from_secs(5), one(&pool, addr, false));
            seen.push(sent.await.expect("no send waits on a closed connection"));
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_eq!(
            seen,
            ["conn 1", "conn 1", "conn 2", "conn 2", "conn 3", "conn 3"]
        );
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_body_not_read_to_its_end_takes_its_connection_with_it() {
        let (addr, accepted) = server(100, Duration::ZERO).await;
        let pool = Pool::new(settings(Duration::from_secs(30)));
        let resp = get(&pool, addr, false).await.expect("send");
        drop(resp);
        assert_eq!(pool.idle_count(), 0);
        assert_eq!(one(&pool, addr, false).await, "conn 2");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_idle_timeout() {
        let (addr, accepted) = server(100, Duration::ZERO).await;
        let pool = Pool::new(settings(Duration::from_millis(200)));
        one(&pool, addr, false).await;
        assert_eq!(pool.idle_count(), 1);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.idle_count(), 1, "kept within the idle timeout");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle_count(), 0, "the sweep closed it");
        assert_eq!(one(&pool, addr, false).await, "conn 2");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn reads_grow_while_they_fill_their_room_and_shrink_when_the_stream_slows() {
        let mut size = READ_SIZE;
        let mut short = 0;
        for _ in 0..10 {
            (size, short) = next_read_size(size, short, size, size);
        }
        assert_eq!(size, MAX_READ_SIZE, "doubled up to the cap");
        (size, short) = next_read_size(size, short, size, 100);
        assert_eq!(size, MAX_READ_SIZE, "one short read changes nothing");
        (size, short) = next_read_size(size, short, size, size);
        (size, short) = next_read_size(size, short, size, 100);
        assert_eq!(size, MAX_READ_SIZE, "a full read between resets the count");
        (size, short) = next_read_size(size, short, size, 100);
        assert_eq!(
            (size, short),
            (MAX_READ_SIZE / 2, 0),
            "two in a row halve it"
        );
        for _ in 0..40 {
            (size, short) = next_read_size(size, short, size, 1);
        }
        assert_eq!(size, READ_SIZE, "never below the first size");
        // A read that fills a room smaller than the size (a part-used
        // buffer) still says the pod is ahead.
        assert_eq!(next_read_size(READ_SIZE, 0, 100, 100).0, 2 * READ_SIZE);
    }

    #[tokio::test]
    async fn no_listener_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let pool = Pool::new(settings(Duration::from_secs(30)));
        let e = get(&pool, addr, false).await.err().expect("refused");
        assert!(matches!(e, SendError::Connect(_)), "{e}");
    }
}
