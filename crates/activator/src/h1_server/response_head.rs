//! The response head the HTTP/1 fast path writes, and how its body is
//! framed: what hyper's server writes for the same response to an HTTP/1.1
//! request that is neither HEAD nor CONNECT (the only ones the fast path
//! takes). Pure, but for the date, which the caller passes in.
//!
//! The fields come from the response's map, or, for an HTTP/1 pod's
//! response, from the bytes the pod wrote (`http1_wire::Fields`, the
//! hop-by-hop ones already left out by `proxy::end_to_end`); names are
//! compared without case and written in lower case either way.
//!
//! The rules, as hyper 1's `Server::encode`: names in lower case, fields in
//! the order given; the first `Content-Length` is written as given when the
//! body's length is known, and read when it is not; with neither, a body of
//! unknown length is chunked (close-delimited in an HTTP/1.0 response) and
//! one of known length gets `Content-Length`; 204 and 304 carry no body;
//! `Date` is added when the response has none. Hop-by-hop fields
//! (`Transfer-Encoding`, `Trailer`, `Connection`) are gone before a
//! response gets here (`proxy::strip_hop_by_hop`); should one come, the
//! first two are dropped, as a chunked body is framed here, and
//! `Connection: close` closes the connection after the response.

use http::response::Parts;
use http::{StatusCode, Version};

/// How the body after the head is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Exactly this many bytes (0: no body at all).
    Length(u64),
    Chunked,
    /// Until the connection closes.
    UntilClose,
}

/// What the head said about the rest of the exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Encoded {
    pub framing: Framing,
    /// The connection closes after this response.
    pub close: bool,
}

/// A response hyper's server would refuse to write (it closes the
/// connection instead): a 1xx, or `Content-Length` values that disagree.
#[derive(Debug, PartialEq, Eq)]
pub struct Unwritable(pub &'static str);

/// What the body says of its size when the head is written, as hyper's
/// server reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodySize {
    /// At its end already (`is_end_stream`): no body, whatever the fields
    /// say.
    Empty,
    Known(u64),
    Unknown,
}

impl BodySize {
    pub fn of(body: &impl hyper::body::Body) -> Self {
        if body.is_end_stream() {
            return BodySize::Empty;
        }
        body.size_hint()
            .exact()
            .map_or(BodySize::Unknown, BodySize::Known)
    }
}

/// Appends the head of `parts` to `dst`, with `fields` (names and values)
/// as its header fields. `date` is the `Date` value to add when the
/// response has none; `closing` says the connection closes after it (the
/// drain), which the head then says, as hyper's server says it.
pub fn encode<'f>(
    parts: &Parts,
    fields: impl Iterator<Item = (&'f [u8], &'f [u8])>,
    size: BodySize,
    closing: bool,
    date: &[u8],
    dst: &mut Vec<u8>,
) -> Result<Encoded, Unwritable> {
    let status = parts.status;
    if status.is_informational() {
        return Err(Unwritable("a 1xx response"));
    }
    let http10 = parts.version == Version::HTTP_10;
    let can_body = status != StatusCode::NO_CONTENT && status != StatusCode::NOT_MODIFIED;
    status_line(parts, http10, dst);

    let known = match size {
        BodySize::Known(n) => Some(n),
        BodySize::Empty | BodySize::Unknown => None,
    };
    let mut framing = None;
    let mut close = false;
    let mut wrote_date = false;
    for (name, value) in fields {
        if name.eq_ignore_ascii_case(b"content-length") {
            if size == BodySize::Empty {
                // No body to frame: hyper writes its own length below.
                continue;
            }
            let len = match known {
                Some(n) => n,
                None => parse_length(value).ok_or(Unwritable("an invalid content-length"))?,
            };
            match framing {
                None => {
                    framing = Some(Framing::Length(len));
                    field(dst, b"content-length", value);
                }
                Some(Framing::Length(first)) if known.is_none() && first != len => {
                    return Err(Unwritable("content-length values that disagree"));
                }
                _ => {}
            }
            continue;
        }
        if name.eq_ignore_ascii_case(b"transfer-encoding") || name.eq_ignore_ascii_case(b"trailer")
        {
            continue;
        }
        if name.eq_ignore_ascii_case(b"connection") {
            close |= value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
        wrote_date |= name.eq_ignore_ascii_case(b"date");
        field(dst, name, value);
    }
    if closing && !close {
        dst.extend_from_slice(b"connection: close\r\n");
        close = true;
    }
    let framing = match framing {
        Some(f) => f,
        None => match known {
            None if size == BodySize::Empty => {
                if can_body {
                    dst.extend_from_slice(b"content-length: 0\r\n");
                }
                Framing::Length(0)
            }
            None if http10 || !can_body => Framing::UntilClose,
            None => {
                dst.extend_from_slice(b"transfer-encoding: chunked\r\n");
                Framing::Chunked
            }
            Some(n) => {
                if can_body {
                    let mut digits = itoa::Buffer::new();
                    field(dst, b"content-length", digits.format(n).as_bytes());
                }
                Framing::Length(n)
            }
        },
    };
    let framing = if can_body {
        framing
    } else {
        Framing::Length(0)
    };
    if !wrote_date {
        field(dst, b"date", date);
    }
    dst.extend_from_slice(b"\r\n");
    Ok(Encoded {
        framing,
        close: close || framing == Framing::UntilClose,
    })
}

fn status_line(parts: &Parts, http10: bool, dst: &mut Vec<u8>) {
    let reason = parts.extensions.get::<hyper::ext::ReasonPhrase>();
    if !http10 && parts.status == StatusCode::OK && reason.is_none() {
        dst.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    dst.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    dst.extend_from_slice(parts.status.as_str().as_bytes());
    dst.push(b' ');
    match reason {
        Some(r) => dst.extend_from_slice(r.as_bytes()),
        // A reason must be written: many parsers expect one.
        None => dst.extend_from_slice(
            parts
                .status
                .canonical_reason()
                .unwrap_or("<none>")
                .as_bytes(),
        ),
    }
    dst.extend_from_slice(b"\r\n");
}

fn field(dst: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    dst.extend(name.iter().map(u8::to_ascii_lowercase));
    dst.extend_from_slice(b": ");
    dst.extend_from_slice(value);
    dst.extend_from_slice(b"\r\n");
}

fn parse_length(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The line that starts a chunk of `len` bytes.
pub fn chunk_size_line(len: usize, dst: &mut [u8; 18]) -> &[u8] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut i = 16;
    let mut n = len;
    loop {
        i -= 1;
        dst[i] = HEX[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    dst[16] = b'\r';
    dst[17] = b'\n';
    &dst[i..]
}

#[cfg(test)]
mod tests {
    use http::Response;
    use hyper::body::SizeHint;

    use super::*;

    const DATE: &[u8] = b"Mon, 07 Dec 2026 05:48:52 GMT";

    fn head(resp: Response<()>, size: SizeHint) -> (String, Result<Encoded, Unwritable>) {
        let size = size.exact().map_or(BodySize::Unknown, BodySize::Known);
        head_of(resp, size, false)
    }

    fn head_of(
        resp: Response<()>,
        size: BodySize,
        closing: bool,
    ) -> (String, Result<Encoded, Unwritable>) {
        let (parts, ()) = resp.into_parts();
        let mut dst = Vec::new();
        let fields = parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().as_bytes(), v.as_bytes()));
        let r = encode(&parts, fields, size, closing, DATE, &mut dst);
        (String::from_utf8(dst).expect("ascii"), r)
    }

    #[test]
    fn a_body_already_at_its_end_is_framed_by_hyper_s_own_zero_length() {
        // An h2c pod's HEADERS with END_STREAM, a 200 of `content-length: 00`.
        let (text, r) = head_of(Response::new(()), BodySize::Empty, false);
        assert!(
            text.contains("content-length: 0\r\n") && !text.contains("chunked"),
            "{text}"
        );
        assert_eq!(r.unwrap().framing, Framing::Length(0));
        let resp = Response::builder()
            .header("content-length", "00")
            .body(())
            .unwrap();
        let (text, _) = head_of(resp, BodySize::Empty, false);
        assert_eq!(text.matches("content-length").count(), 1, "{text}");
        assert!(text.contains("content-length: 0\r\n"), "{text}");
        // A 304 keeps no length at all.
        let resp = Response::builder()
            .status(304)
            .header("content-length", "1234")
            .body(())
            .unwrap();
        let (text, r) = head_of(resp, BodySize::Empty, false);
        assert!(!text.contains("content-length"), "{text}");
        assert_eq!(r.unwrap().framing, Framing::Length(0));
    }

    #[test]
    fn a_response_written_during_the_drain_says_the_connection_closes() {
        let (text, r) = head_of(Response::new(()), BodySize::Known(2), true);
        assert!(text.contains("connection: close\r\n"), "{text}");
        assert!(r.unwrap().close);
        let (text, r) = head_of(Response::new(()), BodySize::Known(2), false);
        assert!(!text.contains("connection"), "{text}");
        assert!(!r.unwrap().close);
    }

    #[test]
    fn fields_as_a_pod_wrote_them_are_written_in_lower_case() {
        let (parts, ()) = Response::new(()).into_parts();
        let fields: [(&[u8], &[u8]); 3] = [
            (b"Content-Type", b"text/plain"),
            (b"X-Pod-Name", b"Bench"),
            (b"Content-Length", b"5"),
        ];
        let mut dst = Vec::new();
        let r = encode(
            &parts,
            fields.into_iter(),
            BodySize::Known(5),
            false,
            DATE,
            &mut dst,
        );
        assert_eq!(
            String::from_utf8(dst).unwrap(),
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-pod-name: Bench\r\ncontent-length: 5\r\ndate: Mon, 07 Dec 2026 05:48:52 GMT\r\n\r\n"
        );
        assert_eq!(r.unwrap().framing, Framing::Length(5));
    }

    fn exact(n: u64) -> SizeHint {
        SizeHint::with_exact(n)
    }

    #[test]
    fn a_200_with_a_length_is_written_as_hyper_writes_it() {
        let resp = Response::builder()
            .header("content-type", "text/plain")
            .header("x-pod-name", "bench")
            .header("content-length", "17")
            .body(())
            .unwrap();
        let (text, r) = head(resp, exact(17));
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nx-pod-name: bench\r\ncontent-length: 17\r\ndate: Mon, 07 Dec 2026 05:48:52 GMT\r\n\r\n"
        );
        assert_eq!(
            r,
            Ok(Encoded {
                framing: Framing::Length(17),
                close: false
            })
        );
    }

    #[test]
    fn a_body_of_unknown_length_is_chunked_and_a_known_one_gets_its_length() {
        let (text, r) = head(Response::new(()), SizeHint::new());
        assert!(text.contains("transfer-encoding: chunked\r\n"), "{text}");
        assert_eq!(r.unwrap().framing, Framing::Chunked);
        let (text, r) = head(Response::new(()), exact(5));
        assert!(text.contains("content-length: 5\r\n"), "{text}");
        assert_eq!(r.unwrap().framing, Framing::Length(5));
        let (text, r) = head(Response::new(()), exact(0));
        assert!(text.contains("content-length: 0\r\n"), "{text}");
        assert_eq!(r.unwrap().framing, Framing::Length(0));
    }

    #[test]
    fn a_length_header_frames_a_body_of_unknown_length_and_must_agree_with_itself() {
        let resp = Response::builder()
            .header("content-length", "9")
            .body(())
            .unwrap();
        let (text, r) = head(resp, SizeHint::new());
        assert!(text.contains("content-length: 9\r\n"), "{text}");
        assert!(!text.contains("chunked"), "{text}");
        assert_eq!(r.unwrap().framing, Framing::Length(9));
        let resp = Response::builder()
            .header("content-length", "9")
            .header("content-length", "8")
            .body(())
            .unwrap();
        assert!(head(resp, SizeHint::new()).1.is_err());
        let resp = Response::builder()
            .header("content-length", "nine")
            .body(())
            .unwrap();
        assert!(head(resp, SizeHint::new()).1.is_err());
    }

    #[test]
    fn no_content_and_not_modified_have_no_body_and_no_added_length() {
        for code in [204, 304] {
            let resp = Response::builder().status(code).body(()).unwrap();
            let (text, r) = head(resp, SizeHint::new());
            assert!(!text.contains("content-length"), "{text}");
            assert!(!text.contains("transfer-encoding"), "{text}");
            assert_eq!(r.unwrap().framing, Framing::Length(0), "{code}");
        }
    }

    #[test]
    fn a_reason_phrase_an_http10_response_and_an_own_date_are_kept() {
        let mut resp = Response::builder()
            .status(404)
            .version(Version::HTTP_10)
            .header("date", "then")
            .body(())
            .unwrap();
        resp.extensions_mut()
            .insert(hyper::ext::ReasonPhrase::from_static(b"Gone Fishing"));
        let (text, r) = head(resp, SizeHint::new());
        assert!(text.starts_with("HTTP/1.0 404 Gone Fishing\r\n"), "{text}");
        assert!(text.contains("date: then\r\n"), "{text}");
        assert_eq!(text.matches("date:").count(), 1, "{text}");
        // HTTP/1.0 has no chunks: the body ends with the connection.
        assert_eq!(
            r.unwrap(),
            Encoded {
                framing: Framing::UntilClose,
                close: true
            }
        );
        let resp = Response::builder().status(599).body(()).unwrap();
        let (text, _) = head(resp, exact(0));
        assert!(text.starts_with("HTTP/1.1 599 <none>\r\n"), "{text}");
    }

    #[test]
    fn hop_by_hop_framing_fields_are_dropped_and_connection_close_is_obeyed() {
        let resp = Response::builder()
            .header("transfer-encoding", "gzip")
            .header("trailer", "x-sum")
            .header("connection", "keep-alive, Close")
            .body(())
            .unwrap();
        let (text, r) = head(resp, SizeHint::new());
        assert!(
            !text.contains("gzip") && !text.contains("trailer"),
            "{text}"
        );
        assert_eq!(
            r.unwrap(),
            Encoded {
                framing: Framing::Chunked,
                close: true
            }
        );
        let resp = Response::builder().status(103).body(()).unwrap();
        assert!(head(resp, SizeHint::new()).1.is_err());
    }

    #[test]
    fn chunk_size_lines_are_lower_case_hex() {
        let mut b = [0u8; 18];
        assert_eq!(chunk_size_line(0, &mut b), b"0\r\n");
        assert_eq!(chunk_size_line(17, &mut b), b"11\r\n");
        assert_eq!(chunk_size_line(0xabcdef, &mut b), b"abcdef\r\n");
        assert_eq!(chunk_size_line(usize::MAX, &mut b), b"ffffffffffffffff\r\n");
    }
}
