//! The bytes of HTTP/1 between the activator and a pod: a request head
//! written out, a response head read in, and the framing of both bodies.
//!
//! Pure: buffers in, buffers and header maps out; the socket work is in
//! [`crate::http1_pool`]. Written for the one client this is, an HTTP/1.1
//! reverse proxy (RFC 9112): the request is always HTTP/1.1 with lowercase
//! names, as hyper's client writes it, and a response is read the way hyper's
//! client reads it: informational responses (100, 103) skipped, a body
//! framed by `Transfer-Encoding: chunked`, by `Content-Length` or by the
//! connection's close, none for HEAD, 204 and 304.
//!
//! A response head's values are slices of the bytes read (no copy); only
//! names outside the standard set are allocated, as in hyper.

use std::fmt::Write as _;
use std::mem::MaybeUninit;

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// The largest response head read, as hyper's client reads at most its
/// default buffer (8 KiB + 100 × 4 KiB) before it calls the head too large.
pub const MAX_HEAD_BYTES: usize = 8192 + 4096 * 100;

/// Header fields parsed from the stack; a larger `--max-response-headers`
/// parses into a vector.
const STACK_HEADERS: usize = 128;

/// The longest chunk-size line (size and extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;

/// How a body is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    Empty,
    /// `Content-Length`: this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// A response read until the pod closes the connection.
    Close,
}

/// How a request body goes out: its framing, and the header that says so
/// when the client's head did not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestFraming {
    pub body: Framing,
    /// Written after the client's fields.
    pub declare: Option<Framing>,
}

/// Writes a request head in origin form: the method, `target`, HTTP/1.1,
/// the header fields, the framing's own header, the blank line.
pub fn encode_head<'h>(
    out: &mut BytesMut,
    method: &Method,
    target: &str,
    headers: &'h HeaderMap,
    more: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)> + Clone,
    framing: RequestFraming,
) {
    let size: usize = headers
        .iter()
        .chain(more.clone())
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    out.reserve(method.as_str().len() + target.len() + 13 + size + 40);
    out.put_slice(method.as_str().as_bytes());
    out.put_u8(b' ');
    out.put_slice(target.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers.iter().chain(more) {
        out.put_slice(name.as_str().as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    match framing.declare {
        Some(Framing::Chunked) => out.put_slice(b"transfer-encoding: chunked\r\n"),
        Some(Framing::Length(n)) => {
            // Writing to a BytesMut cannot fail.
            let _ = write!(out, "content-length: {n}\r\n");
        }
        Some(Framing::Empty) => out.put_slice(b"content-length: 0\r\n"),
        Some(Framing::Close) | None => {}
    }
    out.put_slice(b"\r\n");
}

/// Chooses how the request body goes out, as hyper's client does: a
/// `Content-Length` the client sent is kept; else an exact length is
/// declared; else the body is chunked. A request with no body declares
/// `Content-Length: 0` only for a method that defines a payload (POST, PUT,
/// PATCH), as curl does. The client's `Transfer-Encoding` is gone by now
/// (hop-by-hop). An invalid `Content-Length` is refused: hyper's server
/// answers such a request 400 before it gets here.
pub fn request_framing(
    method: &Method,
    headers: &HeaderMap,
    no_body: bool,
    exact: Option<u64>,
) -> Result<RequestFraming, &'static str> {
    let kept = |body| RequestFraming {
        body,
        declare: None,
    };
    let declared = |body| RequestFraming {
        body,
        declare: Some(body),
    };
    // Nearly every request has none: looked for without a hashed lookup.
    if crate::field_scan::has(headers, &header::CONTENT_LENGTH) {
        let n = content_length(headers.get_all(header::CONTENT_LENGTH).iter())
            .ok_or("invalid content-length")?;
        return match (n, no_body) {
            (0, _) => Ok(kept(Framing::Empty)),
            // The pod would wait for bytes that never come.
            (_, true) => Err("content-length declared, but no body"),
            (n, false) => Ok(kept(Framing::Length(n))),
        };
    }
    if no_body {
        return Ok(
            if matches!(*method, Method::POST | Method::PUT | Method::PATCH) {
                declared(Framing::Empty)
            } else {
                kept(Framing::Empty)
            },
        );
    }
    Ok(match exact {
        Some(0) => declared(Framing::Empty),
        Some(n) => declared(Framing::Length(n)),
        None => declared(Framing::Chunked),
    })
}

/// A `Content-Length` field's value: one number, or a list of the same
/// number (RFC 9110 §8.6); `None` when invalid.
fn content_length<'a>(values: impl Iterator<Item = &'a HeaderValue>) -> Option<u64> {
    content_length_of(values.map(HeaderValue::as_bytes))
}

fn content_length_of<'a>(values: impl Iterator<Item = &'a [u8]>) -> Option<u64> {
    let mut found = None;
    for v in values {
        for part in v.split(|&b| b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = part.iter().try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            })?;
            if found.is_some_and(|f| f != n) {
                return None;
            }
            found = Some(n);
        }
    }
    found
}

/// A response head read from a pod.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    pub fields: Fields,
    /// The pod's reason phrase when it is not the status code's own, which
    /// hyper's server then writes to the client as hyper's client had it.
    pub reason: Option<hyper::ext::ReasonPhrase>,
    pub framing: Framing,
    /// The connection may carry another request after this response.
    pub keep_alive: bool,
}

/// Why a response head was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum HeadError {
    /// More fields than allowed, or more than [`MAX_HEAD_BYTES`].
    TooLarge,
    /// Not a valid HTTP/1 response head.
    Invalid(&'static str),
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::TooLarge => f.write_str("the response head is too large"),
            HeadError::Invalid(why) => write!(f, "invalid response head: {why}"),
        }
    }
}

/// Takes a whole response head off the front of `buf`, skipping
/// informational responses; `Ok(None)` while it is incomplete.
pub fn parse_response(
    buf: &mut BytesMut,
    max_headers: usize,
    method: &Method,
) -> Result<Option<ResponseHead>, HeadError> {
    loop {
        let found = {
            // Left uninitialised: httparse writes only the fields it finds.
            // The stack holds what responses carry; only a head with more
            // fields is parsed again into a vector of `max_headers` (the
            // default, 1,000 fields, is 32 KiB: allocated per response, it
            // was a tenth of the activator's instructions per request).
            let mut stack =
                [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
            match find_head(buf, &mut stack[..max_headers.min(STACK_HEADERS)]) {
                Err(httparse::Error::TooManyHeaders) if max_headers > STACK_HEADERS => {
                    let mut heap = Vec::new();
                    heap.resize_with(max_headers, MaybeUninit::uninit);
                    find_head(buf, &mut heap)
                }
                other => other,
            }
        };
        let found = match found {
            Ok(Some(found)) => found,
            Ok(None) if buf.len() > MAX_HEAD_BYTES => return Err(HeadError::TooLarge),
            Ok(None) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Invalid(invalid(e))),
        };
        if found.len > MAX_HEAD_BYTES {
            return Err(HeadError::TooLarge);
        }
        let status =
            StatusCode::from_u16(found.code).map_err(|_| HeadError::Invalid("status code"))?;
        if status.is_informational() {
            if status == StatusCode::SWITCHING_PROTOCOLS {
                // Upgrades go through hyper-util's client, never here.
                return Err(HeadError::Invalid("101 to a request that asked no upgrade"));
            }
            buf.advance(found.len);
            continue;
        }
        let head = buf.split_to(found.len).freeze();
        let reason = found.reason.and_then(|r| {
            let r = &head[r];
            let canonical = status.canonical_reason().map(str::as_bytes);
            (canonical != Some(r))
                .then(|| hyper::ext::ReasonPhrase::try_from(r).ok())
                .flatten()
        });
        let mut fields = Fields {
            head,
            at: found.fields,
            drop_length: false,
            connection: false,
        };
        let framed = Framed::of(&fields);
        fields.connection = framed.connection;
        let version = found.version;
        let (framing, clean) = response_framing(method, status, version, &mut fields, framed)?;
        let keep_alive = clean && framing != Framing::Close && persistent(version, &fields, framed);
        return Ok(Some(ResponseHead {
            status,
            version,
            fields,
            reason,
            framing,
            keep_alive,
        }));
    }
}

/// A response's header fields as the pod wrote them: the head's bytes and
/// where each name and value lie in them. No map is made of them on the way
/// (a tenth of the instructions per request was building one): the HTTP/1
/// fast path writes them from these bytes ([`crate::h1_server`]); hyper's
/// server gets a map ([`Fields::to_map`]).
///
/// Every name httparse takes is a valid [`HeaderName`] and every value a
/// valid [`HeaderValue`] (the same token and field-value rules; tested
/// byte by byte below), so what the map would have refused never gets here.
#[derive(Debug)]
pub struct Fields {
    head: Bytes,
    /// Each field's name, and its value's start and end, in `head`.
    at: Vec<(std::ops::Range<usize>, usize, usize)>,
    /// `Transfer-Encoding` framed the body too, and wins (RFC 9112 §6.3):
    /// the `Content-Length` fields are not passed on.
    drop_length: bool,
    /// There is a `Connection` field.
    connection: bool,
}

impl Fields {
    /// Whether there is a `Connection` field (most responses have none).
    pub fn has_connection(&self) -> bool {
        self.connection
    }

    /// Each field's name (as the pod wrote it) and value, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.at
            .iter()
            .map(|(name, start, end)| (&self.head[name.clone()], &self.head[*start..*end]))
            .filter(|(name, _)| !(self.drop_length && name.eq_ignore_ascii_case(b"content-length")))
    }

    /// The values of the fields named `name` (given in lower case).
    pub fn values<'a>(&'a self, name: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// The fields as a map, their values sharing the head's bytes.
    pub fn to_map(&self) -> Result<HeaderMap, HeadError> {
        let mut map = HeaderMap::with_capacity(self.at.len());
        for (name, start, end) in &self.at {
            let name = HeaderName::from_bytes(&self.head[name.clone()])
                .map_err(|_| HeadError::Invalid("header name"))?;
            if self.drop_length && name == header::CONTENT_LENGTH {
                continue;
            }
            let value = HeaderValue::from_maybe_shared(self.head.slice(*start..*end))
                .map_err(|_| HeadError::Invalid("header value"))?;
            map.append(name, value);
        }
        Ok(map)
    }
}

/// A response head as httparse found it: where each field lies in the
/// buffer, so that names and values are taken from the bytes themselves.
struct Found {
    len: usize,
    code: u16,
    /// The reason phrase's range, when there is one.
    reason: Option<std::ops::Range<usize>>,
    version: Version,
    /// The name's range, and the value's start and end.
    fields: Vec<(std::ops::Range<usize>, usize, usize)>,
}

/// Parses the head at the front of `buf` into `fields`; `Ok(None)` while
/// it is incomplete.
fn find_head<'b>(
    buf: &'b [u8],
    fields: &mut [MaybeUninit<httparse::Header<'b>>],
) -> Result<Option<Found>, httparse::Error> {
    let mut resp = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default()
        .parse_response_with_uninit_headers(&mut resp, buf, fields)?
    {
        httparse::Status::Complete(len) => len,
        httparse::Status::Partial => return Ok(None),
    };
    let base = buf.as_ptr() as usize;
    let at = |s: &[u8]| s.as_ptr() as usize - base;
    Ok(Some(Found {
        len,
        code: resp.code.unwrap_or(0),
        // An empty phrase may not point into `buf`.
        reason: resp
            .reason
            .filter(|r| !r.is_empty())
            .map(|r| at(r.as_bytes())..at(r.as_bytes()) + r.len()),
        version: if resp.version == Some(0) {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        },
        fields: resp
            .headers
            .iter()
            .map(|h| {
                let name = at(h.name.as_bytes());
                let value = at(h.value);
                (name..name + h.name.len(), value, value + h.value.len())
            })
            .collect(),
    }))
}

fn invalid(e: httparse::Error) -> &'static str {
    match e {
        httparse::Error::HeaderName => "header name",
        httparse::Error::HeaderValue => "header value",
        httparse::Error::NewLine => "line ending",
        httparse::Error::Status => "status code",
        httparse::Error::Token => "token",
        httparse::Error::Version => "version",
        httparse::Error::TooManyHeaders => "too many headers",
    }
}

/// Which of the fields that frame a message a head has, noted in one pass
/// over the names: most have no `Transfer-Encoding` or `Connection`.
#[derive(Clone, Copy, Default)]
struct Framed {
    transfer_encoding: bool,
    content_length: bool,
    connection: bool,
}

impl Framed {
    fn of(fields: &Fields) -> Self {
        let mut framed = Framed::default();
        for (name, _) in fields.iter() {
            framed.transfer_encoding |= name.eq_ignore_ascii_case(b"transfer-encoding");
            framed.content_length |= name.eq_ignore_ascii_case(b"content-length");
            framed.connection |= name.eq_ignore_ascii_case(b"connection");
        }
        framed
    }
}

/// How a response body is delimited (RFC 9112 §6.3), and false when the
/// head was ambiguous enough that the connection must not be reused.
fn response_framing(
    method: &Method,
    status: StatusCode,
    version: Version,
    fields: &mut Fields,
    framed: Framed,
) -> Result<(Framing, bool), HeadError> {
    if *method == Method::HEAD
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, true));
    }
    if framed.transfer_encoding {
        if version == Version::HTTP_10 {
            // RFC 9112 §6.1: faulty framing; hyper's client refuses it too.
            return Err(HeadError::Invalid(
                "transfer-encoding in an HTTP/1.0 response",
            ));
        }
        let chunked_last = fields
            .values(b"transfer-encoding")
            .last()
            .and_then(|v| v.rsplit(|&b| b == b',').next())
            .is_some_and(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        // Both framings: the transfer coding wins, and the connection is
        // not trusted with another request (RFC 9112 §6.3, point 3).
        let both = framed.content_length;
        fields.drop_length = both;
        let framing = if chunked_last {
            Framing::Chunked
        } else {
            Framing::Close
        };
        return Ok((framing, !both));
    }
    if framed.content_length {
        return match content_length_of(fields.values(b"content-length")) {
            Some(0) => Ok((Framing::Empty, true)),
            Some(n) => Ok((Framing::Length(n), true)),
            None => Err(HeadError::Invalid("content-length")),
        };
    }
    Ok((Framing::Close, false))
}

/// Whether the pod keeps the connection open after this response.
fn persistent(version: Version, fields: &Fields, framed: Framed) -> bool {
    let says = |token: &[u8]| {
        framed.connection
            && fields.values(b"connection").any(|v| {
                v.split(|&b| b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
            })
    };
    if version == Version::HTTP_10 {
        says(b"keep-alive")
    } else {
        !says(b"close")
    }
}

/// What the chunked decoder took off the buffer.
#[derive(Debug, PartialEq)]
pub enum Piece {
    Data(Bytes),
    Trailers(HeaderMap),
    /// The last chunk, with no trailers.
    End,
}

/// Where a chunked body's decoding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk, with this many bytes left.
    Data(u64),
    /// After a chunk's bytes, before its CRLF.
    DataEnd,
    /// After the last chunk: trailer fields, or the blank line.
    Trailers,
    Done,
}

impl Chunked {
    /// The next piece of the body from `buf`; `Ok(None)` when `buf` holds
    /// too little (read more, call again).
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, &'static str> {
        loop {
            match *self {
                Chunked::Size => {
                    let Some(eol) = buf.iter().position(|&b| b == b'\n') else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err("chunk-size line too long")
                        } else {
                            Ok(None)
                        };
                    };
                    if eol > MAX_CHUNK_LINE {
                        return Err("chunk-size line too long");
                    }
                    let size = chunk_size(&buf[..eol])?;
                    buf.advance(eol + 1);
                    *self = if size == 0 {
                        Chunked::Trailers
                    } else {
                        Chunked::Data(size)
                    };
                }
                Chunked::Data(mut left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let data = take_up_to(buf, &mut left);
                    *self = if left == 0 {
                        Chunked::DataEnd
                    } else {
                        Chunked::Data(left)
                    };
                    return Ok(Some(Piece::Data(data)));
                }
                Chunked::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err("chunk longer than its size");
                    }
                    buf.advance(2);
                    *self = Chunked::Size;
                }
                Chunked::Trailers => {
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                        *self = Chunked::Done;
                        return Ok(Some(Piece::End));
                    }
                    if buf.first() == Some(&b'\n') {
                        return Err("bare LF after the last chunk");
                    }
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; STACK_HEADERS];
                    let len = match httparse::parse_headers(buf, &mut fields) {
                        Ok(httparse::Status::Complete((len, _))) => len,
                        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
                            return Err("trailers too large");
                        }
                        Ok(httparse::Status::Partial) => return Ok(None),
                        Err(_) => return Err("invalid trailers"),
                    };
                    let mut trailers = HeaderMap::new();
                    for f in fields.iter().take_while(|f| !f.name.is_empty()) {
                        let name = HeaderName::from_bytes(f.name.as_bytes())
                            .map_err(|_| "invalid trailer name")?;
                        let value = HeaderValue::from_bytes(f.value)
                            .map_err(|_| "invalid trailer value")?;
                        trailers.append(name, value);
                    }
                    buf.advance(len);
                    *self = Chunked::Done;
                    return Ok(Some(Piece::Trailers(trailers)));
                }
                Chunked::Done => return Ok(Some(Piece::End)),
            }
        }
    }
}

/// Takes at most `left` bytes off the front of `buf`, and counts them off.
pub fn take_up_to(buf: &mut BytesMut, left: &mut u64) -> Bytes {
    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
    *left -= n as u64;
    buf.split_to(n).freeze()
}

/// A chunk-size line's size (without its LF): hex digits, then optional
/// spaces or tabs and extensions (ignored, visible ASCII), then CR. A bare
/// LF is refused, as hyper refuses it: framing read two ways is how
/// requests are smuggled.
fn chunk_size(line: &[u8]) -> Result<u64, &'static str> {
    let line = line
        .strip_suffix(b"\r")
        .ok_or("chunk-size line not ended by CRLF")?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err("invalid chunk size");
    }
    let after = &line[digits..];
    let blanks = after
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    let rest = &after[blanks..];
    if !(rest.is_empty() || rest[0] == b';') {
        return Err("invalid chunk size");
    }
    if !rest
        .iter()
        .all(|&b| b == b'\t' || (b' '..=b'~').contains(&b))
    {
        return Err("invalid chunk extension");
    }
    let hex = std::str::from_utf8(&line[..digits]).map_err(|_| "invalid chunk size")?;
    u64::from_str_radix(hex, 16).map_err(|_| "invalid chunk size")
}

/// The line that starts a chunk of `len` bytes.
pub fn chunk_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str, method: &Method) -> Result<Option<ResponseHead>, HeadError> {
        parse_response(&mut BytesMut::from(raw), 100, method)
    }

    fn head(raw: &str) -> ResponseHead {
        parse(raw, &Method::GET).expect("valid").expect("complete")
    }

    #[test]
    fn every_field_httparse_takes_makes_a_valid_map_entry() {
        // What `Fields` rests on: a byte that httparse lets into a name or
        // a value is one `HeaderName` or `HeaderValue` takes too.
        let mut names = 0;
        let mut values = 0;
        for b in 0..=255u8 {
            for (raw, is_name) in [
                (
                    [b"HTTP/1.1 200 OK\r\nx".as_slice(), &[b], b"y: v\r\n\r\n"].concat(),
                    true,
                ),
                (
                    [b"HTTP/1.1 200 OK\r\nx: a".as_slice(), &[b], b"c\r\n\r\n"].concat(),
                    false,
                ),
            ] {
                let Ok(Some(h)) = parse_response(&mut BytesMut::from(&raw[..]), 100, &Method::GET)
                else {
                    continue;
                };
                let Some((name, value)) = h.fields.iter().next() else {
                    continue;
                };
                let taken = if is_name {
                    name == [b'x', b, b'y']
                } else {
                    value == [b'a', b, b'c']
                };
                if !taken {
                    // `x:y` is the name `x`: not this byte's case.
                    continue;
                }
                assert!(
                    HeaderName::from_bytes(name).is_ok() && HeaderValue::from_bytes(value).is_ok(),
                    "byte {b:#04x} in a {}",
                    if is_name { "name" } else { "value" }
                );
                h.fields.to_map().expect("a map");
                if is_name {
                    names += 1;
                } else {
                    values += 1;
                }
            }
        }
        // The token characters, and visible bytes, space, tab and obs-text.
        assert_eq!(names, 77, "names taken");
        assert_eq!(values, 224, "values taken");
    }

    fn written(method: &Method, headers: &HeaderMap, no_body: bool, exact: Option<u64>) -> String {
        let framing = request_framing(method, headers, no_body, exact).expect("valid");
        let mut out = BytesMut::new();
        encode_head(
            &mut out,
            method,
            "/p?q=1",
            headers,
            std::iter::empty(),
            framing,
        );
        String::from_utf8(out.to_vec()).expect("ascii")
    }

    #[test]
    fn a_request_head_is_written_in_origin_form() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("f.ns"));
        h.append("x-a", HeaderValue::from_static("1"));
        h.append("x-a", HeaderValue::from_static("2"));
        assert_eq!(
            written(&Method::GET, &h, true, Some(0)),
            "GET /p?q=1 HTTP/1.1\r\nhost: f.ns\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
        );
    }

    #[test]
    fn the_request_body_is_framed_as_hyper_frames_it() {
        let none = HeaderMap::new();
        let head = |m: &Method, no_body, exact| written(m, &none, no_body, exact);
        assert_eq!(
            head(&Method::GET, true, Some(0)),
            "GET /p?q=1 HTTP/1.1\r\n\r\n"
        );
        assert_eq!(
            head(&Method::POST, true, Some(0)),
            "POST /p?q=1 HTTP/1.1\r\ncontent-length: 0\r\n\r\n"
        );
        assert_eq!(
            head(&Method::POST, false, Some(7)),
            "POST /p?q=1 HTTP/1.1\r\ncontent-length: 7\r\n\r\n"
        );
        assert_eq!(
            head(&Method::POST, false, None),
            "POST /p?q=1 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n"
        );
        let mut sent = HeaderMap::new();
        sent.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(
            request_framing(&Method::PUT, &sent, false, Some(5)),
            Ok(RequestFraming {
                body: Framing::Length(5),
                declare: None
            })
        );
        assert_eq!(
            written(&Method::PUT, &sent, false, Some(5)),
            "PUT /p?q=1 HTTP/1.1\r\ncontent-length: 5\r\n\r\n",
            "the client's own is written once"
        );
        assert!(
            request_framing(&Method::PUT, &sent, true, Some(0)).is_err(),
            "a length with no body would leave the pod waiting"
        );
        sent.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5x"));
        assert!(request_framing(&Method::PUT, &sent, false, None).is_err());
    }

    #[test]
    fn a_head_is_taken_off_the_buffer_whole_or_not_at_all() {
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n");
        assert!(matches!(
            parse_response(&mut buf, 100, &Method::GET),
            Ok(None)
        ));
        buf.extend_from_slice(b"x-y: z\r\n\r\nhi");
        let h = parse_response(&mut buf, 100, &Method::GET)
            .expect("valid")
            .expect("complete");
        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.framing, Framing::Length(2));
        assert_eq!(h.fields.to_map().expect("valid")["x-y"], "z");
        assert!(h.keep_alive);
        assert!(h.reason.is_none(), "the canonical reason needs no copy");
        let odd = head("HTTP/1.1 200 Fine Thanks\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(odd.reason.expect("kept").as_bytes(), b"Fine Thanks");
        assert_eq!(&buf[..], b"hi", "the body stays in the buffer");
    }

    #[test]
    fn informational_responses_are_skipped() {
        let h = head(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n",
        );
        assert_eq!(h.status, StatusCode::CREATED);
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(h.fields.iter().count(), 1, "only the 201's own field");
    }

    #[test]
    fn the_framing_follows_rfc_9112() {
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").framing,
            Framing::Chunked
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n").framing,
            Framing::Chunked
        );
        let close = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert_eq!(close.framing, Framing::Close);
        assert!(!close.keep_alive);
        let both =
            head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(both.framing, Framing::Chunked);
        assert!(
            !both
                .fields
                .to_map()
                .expect("valid")
                .contains_key(header::CONTENT_LENGTH)
        );
        assert_eq!(both.fields.values(b"content-length").count(), 0);
        assert!(!both.keep_alive, "an ambiguous head ends the connection");
        let eof = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(eof.framing, Framing::Close);
        assert!(!eof.keep_alive);
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 4, 4\r\n\r\n").framing,
            Framing::Length(4)
        );
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ncontent-length: 000000000000000000004\r\n\r\n").framing,
            Framing::Length(4)
        );
        for empty in ["204 No Content", "304 Not Modified"] {
            let h = head(&format!("HTTP/1.1 {empty}\r\ncontent-length: 9\r\n\r\n"));
            assert_eq!(h.framing, Framing::Empty);
        }
        let to_head = parse(
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n",
            &Method::HEAD,
        )
        .expect("valid")
        .expect("complete");
        assert_eq!(to_head.framing, Framing::Empty);
        assert_eq!(
            to_head.fields.to_map().expect("valid")[header::CONTENT_LENGTH],
            "9"
        );
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(
            !head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").keep_alive
        );
        assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
        let h = head("HTTP/1.0 200 OK\r\nconnection: Keep-Alive\r\ncontent-length: 0\r\n\r\n");
        assert!(h.keep_alive);
        assert_eq!(h.version, Version::HTTP_10);
    }

    #[test]
    fn bad_heads_are_refused_with_the_reason() {
        for bad in [
            "HTTP/1.1 200 OK\r\ncontent-length: 1, 2\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
            "HTTP/1.1 2000 OK\r\n\r\n",
            "HTTX/1.1 200 OK\r\n\r\n",
            "HTTP/1.1 200 OK\r\nbad name: x\r\n\r\n",
            "HTTP/1.1 101 Switching Protocols\r\n\r\n",
            "HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad, &Method::GET), Err(HeadError::Invalid(_))),
                "{bad:?}"
            );
        }
        let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
        assert_eq!(
            parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), &Method::GET).err(),
            Some(HeadError::TooLarge)
        );
        let long = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD_BYTES));
        assert_eq!(parse(&long, &Method::GET).err(), Some(HeadError::TooLarge));
    }

    #[test]
    fn a_head_with_more_fields_than_the_stack_holds_is_parsed_up_to_the_limit() {
        let head = |n: usize| {
            let fields: String = (0..n).map(|i| format!("x-{i}: v{i}\r\n")).collect();
            BytesMut::from(
                format!("HTTP/1.1 299 Fine Thanks\r\n{fields}content-length: 0\r\n\r\n").as_str(),
            )
        };
        let over = STACK_HEADERS + 72;
        let h = parse_response(&mut head(over), 1000, &Method::GET)
            .expect("valid")
            .expect("complete");
        let map = h.fields.to_map().expect("valid");
        assert_eq!(map.len(), over + 1);
        assert_eq!(map["x-199"], "v199");
        assert_eq!(h.framing, Framing::Empty);
        assert_eq!(
            h.reason.as_ref().map(|r| r.as_bytes()),
            Some(&b"Fine Thanks"[..])
        );
        // The limit still counts every field, on the stack or not.
        assert_eq!(
            parse_response(&mut head(over), over, &Method::GET).err(),
            Some(HeadError::TooLarge)
        );
        assert!(matches!(
            parse_response(&mut head(over), over + 1, &Method::GET),
            Ok(Some(_))
        ));
    }

    fn decode_all(wire: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), &'static str> {
        let mut state = Chunked::Size;
        let mut buf = BytesMut::new();
        let mut body = Vec::new();
        let mut fed = 0;
        loop {
            match state.next(&mut buf)? {
                Some(Piece::Data(d)) => body.extend_from_slice(&d),
                Some(Piece::Trailers(t)) => return Ok((body, Some(t))),
                Some(Piece::End) => return Ok((body, None)),
                None if fed >= wire.len() => return Err("incomplete"),
                None => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunks_are_decoded_however_the_bytes_arrive() {
        let wire = b"5;ext=1\r\nhello\r\n1 \r\n \r\nA\r\n0123456789\r\n0\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (body, trailers) = decode_all(wire, step).expect("valid");
            assert_eq!(body, b"hello 0123456789", "step {step}");
            assert!(trailers.is_none());
        }
        let (body, trailers) =
            decode_all(b"2\r\nok\r\n0\r\ngrpc-status: 0\r\n\r\n", 1).expect("valid");
        assert_eq!(body, b"ok");
        assert_eq!(trailers.expect("trailers")["grpc-status"], "0");
    }

    #[test]
    fn bad_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhello!\r\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n",
            // A bare LF, a form feed, a control byte in an extension: a
            // size line read two ways is how requests are smuggled.
            b"5\nhello\r\n0\r\n\r\n",
            b"5\x0c\r\nhello\r\n",
            b"5;a\x01\r\nhello\r\n",
            // The last chunk's blank line as a bare LF: refused, not
            // waited on.
            b"0\r\n\n",
        ] {
            assert!(decode_all(bad, 1).is_err(), "{bad:?}");
        }
        assert_eq!(decode_all(b"5\r\nhel", 1), Err("incomplete"));
        let long_ext = format!("1;{}\r\nx\r\n0\r\n\r\n", "e".repeat(MAX_CHUNK_LINE));
        assert!(decode_all(long_ext.as_bytes(), 4096).is_err());
    }

    #[test]
    fn a_chunk_is_written_with_its_size() {
        assert_eq!(&chunk_line(26)[..], b"1a\r\n");
    }
}
