//! The request heads the HTTP/1 fast path serves itself, taken straight off
//! the connection's read buffer. Pure: no IO.
//!
//! It takes the plain case only, which is nearly all traffic: a whole
//! HTTP/1.1 head already in the buffer, origin form, no body, nothing that
//! changes the connection (`Upgrade`, `Expect`, a `Connection` other than
//! `keep-alive`), and no more fields than fit on the stack. Everything else,
//! and anything malformed, is left in the buffer for hyper's server, which
//! then answers it as before: the errors (400, 431), bodies, upgrades and
//! HTTP/1.0 stay hyper's.

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Uri, Version};

use crate::request_body::PlainBody;

/// Header fields parsed on the stack; a head with more goes to hyper.
pub const STACK_FIELDS: usize = 64;

/// A request the fast path serves.
pub type Simple = Request<PlainBody>;

/// What the front of the buffer holds.
// The request is what nearly every call returns: boxing it would add an
// allocation per request to make the two others smaller.
#[allow(clippy::large_enum_variant)]
pub enum Taken {
    /// A plain request, its head taken off the buffer.
    Plain(Simple),
    /// The start of a head that is so far plain: more bytes may finish it.
    Partial,
    /// A head the fast path does not serve, left in the buffer.
    Other,
}

/// Takes a plain request's head off the front of `buf`; anything else
/// leaves `buf` as it was. `max_headers` is `--max-request-headers`: a head
/// with more fields is hyper's to refuse.
pub fn take(buf: &mut BytesMut, max_headers: usize) -> Taken {
    // Filled in place: returned, its kilobyte would be copied twice more.
    let mut found = Found {
        len: 0,
        method: (0, 0),
        path: (0, 0),
        fields: [[0; 4]; STACK_FIELDS],
        count: 0,
    };
    match find(buf, max_headers.min(STACK_FIELDS), &mut found) {
        Ok(()) => {}
        Err(Miss::Partial) => return Taken::Partial,
        Err(Miss::Other) => return Taken::Other,
    }
    let head = buf.split_to(found.len).freeze();
    match build(&head, &found) {
        Some(req) => Taken::Plain(req),
        None => {
            // Rare (a target or name hyper parses differently): hand the
            // bytes back, in order, for hyper to read.
            let mut whole = BytesMut::with_capacity(head.len() + buf.len());
            whole.extend_from_slice(&head);
            whole.extend_from_slice(buf);
            *buf = whole;
            Taken::Other
        }
    }
}

/// Where the parts of a plain head lie in the buffer. Offsets are `u32`
/// (a head is at most a read buffer), so that this, made once a request,
/// is 1 KiB and not 2.
struct Found {
    len: usize,
    method: (u32, u32),
    path: (u32, u32),
    /// Each field's name start and end, value start and end.
    fields: [[u32; 4]; STACK_FIELDS],
    count: usize,
}

/// The fields whose presence makes a request not plain: a body, an
/// upgrade, an expectation, HTTP/2 settings for an `Upgrade: h2c`.
fn is_not_plain(name: &str) -> bool {
    [
        "content-length",
        "transfer-encoding",
        "upgrade",
        "expect",
        "http2-settings",
    ]
    .iter()
    .any(|n| name.eq_ignore_ascii_case(n))
}

/// Why [`find`] found no plain head: [`Taken`]'s other two.
enum Miss {
    Partial,
    Other,
}

fn find(buf: &[u8], max_fields: usize, found: &mut Found) -> Result<(), Miss> {
    let mut stack = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_FIELDS];
    let mut req = httparse::Request::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_request_with_uninit_headers(
        &mut req,
        buf,
        &mut stack[..max_fields],
    ) {
        Ok(httparse::Status::Complete(len)) => len,
        // httparse reads a partial head as far as it goes: what it has
        // checked of it so far is fine, and a later line may still be not.
        Ok(httparse::Status::Partial) => return Err(Miss::Partial),
        Err(_) => return Err(Miss::Other),
    };
    let (Some(1), Some(method), Some(path)) = (req.version, req.method, req.path) else {
        return Err(Miss::Other);
    };
    if method == "HEAD" || method == "CONNECT" || !path.starts_with('/') {
        return Err(Miss::Other);
    }
    if u32::try_from(len).is_err() {
        return Err(Miss::Other);
    }
    let base = buf.as_ptr() as usize;
    // Within the head, so below `len`: the casts keep every bit.
    let span = |s: &[u8]| {
        let start = (s.as_ptr() as usize - base) as u32;
        (start, start + s.len() as u32)
    };
    found.len = len;
    found.method = span(method.as_bytes());
    found.path = span(path.as_bytes());
    found.count = 0;
    for h in req.headers.iter() {
        if is_not_plain(h.name) {
            return Err(Miss::Other);
        }
        if h.name.eq_ignore_ascii_case("connection")
            && !h.value.trim_ascii().eq_ignore_ascii_case(b"keep-alive")
        {
            return Err(Miss::Other);
        }
        let (name, value) = (span(h.name.as_bytes()), span(h.value));
        found.fields[found.count] = [name.0, name.1, value.0, value.1];
        found.count += 1;
    }
    Ok(())
}

/// The request, its parts shared with the head's bytes, as hyper's server
/// builds it.
fn build(head: &Bytes, found: &Found) -> Option<Simple> {
    let range = |(start, end): (u32, u32)| start as usize..end as usize;
    let method = Method::from_bytes(&head[range(found.method)]).ok()?;
    let uri = Uri::from_maybe_shared(head.slice(range(found.path))).ok()?;
    let mut headers = HeaderMap::with_capacity(found.count);
    for &[ns, ne, vs, ve] in &found.fields[..found.count] {
        let name = HeaderName::from_bytes(&head[range((ns, ne))]).ok()?;
        let value = HeaderValue::from_maybe_shared(head.slice(range((vs, ve)))).ok()?;
        headers.append(name, value);
    }
    let mut req = Request::new(PlainBody::of_plain_head());
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Some(req)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take_str(s: &str) -> (Option<Simple>, BytesMut) {
        let mut buf = BytesMut::from(s.as_bytes());
        let req = plain(take(&mut buf, 1000));
        (req, buf)
    }

    fn plain(taken: Taken) -> Option<Simple> {
        match taken {
            Taken::Plain(req) => Some(req),
            Taken::Partial | Taken::Other => None,
        }
    }

    #[test]
    fn a_head_cut_short_is_partial_until_it_is_whole() {
        let whole = "GET /a HTTP/1.1\r\nHost: a\r\nCookie: c=1\r\n\r\n";
        for cut in 1..whole.len() {
            let mut buf = BytesMut::from(&whole.as_bytes()[..cut]);
            assert!(
                matches!(take(&mut buf, 100), Taken::Partial),
                "cut at {cut}"
            );
            assert_eq!(buf.len(), cut);
        }
        let mut buf = BytesMut::from(whole.as_bytes());
        assert!(matches!(take(&mut buf, 100), Taken::Plain(_)));
        // A head is judged whole: the start of one with a body is waited
        // on too (and handed to hyper once whole).
        let mut buf = BytesMut::from("POST / HTTP/1.1\r\nContent-Length: 3\r\n");
        assert!(matches!(take(&mut buf, 100), Taken::Partial));
        let mut buf = BytesMut::from("GET / HTTP/1.0\r\n\r\n");
        assert!(matches!(take(&mut buf, 100), Taken::Other));
    }

    #[test]
    fn a_plain_get_is_taken_with_its_fields_and_the_rest_stays() {
        let (req, rest) = take_str(
            "GET /a/b?c=1 HTTP/1.1\r\nHost: f.ns.siesta.local\r\nX-A: 1\r\nx-a: 2\r\nConnection: Keep-Alive\r\n\r\nGET /next",
        );
        let req = req.expect("taken");
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri().path_and_query().unwrap().as_str(), "/a/b?c=1");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "f.ns.siesta.local");
        let xa: Vec<_> = req.headers().get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert_eq!(req.headers().len(), 4);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn what_the_fast_path_does_not_serve_is_left_whole_for_hyper() {
        for head in [
            // Not whole yet.
            "GET / HTTP/1.1\r\nHost: a\r\n",
            // Bodies, upgrades, expectations, connection options.
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\nHTTP2-Settings: AAA\r\n\r\n",
            // Other versions, methods and target forms.
            "GET / HTTP/1.0\r\nHost: a\r\n\r\n",
            "HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
            "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
            "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
            "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
            // Malformed: hyper answers these with 400.
            "GET / HTTP/1.1\r\nHo st: a\r\n\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            "GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n",
            "\x16\x03\x01\x00",
        ] {
            let (req, rest) = take_str(head);
            assert!(req.is_none(), "{head:?} was taken");
            assert_eq!(&rest[..], head.as_bytes(), "{head:?} was not left whole");
        }
    }

    #[test]
    fn a_head_with_more_fields_than_allowed_or_than_the_stack_is_left_for_hyper() {
        let head = |n: usize| {
            let mut s = String::from("GET / HTTP/1.1\r\n");
            for i in 0..n {
                s.push_str(&format!("x-{i}: v\r\n"));
            }
            s + "\r\n"
        };
        let mut at_limit = BytesMut::from(head(10).as_bytes());
        assert!(plain(take(&mut at_limit, 10)).is_some());
        let mut over_limit = BytesMut::from(head(11).as_bytes());
        assert!(plain(take(&mut over_limit, 10)).is_none());
        assert_eq!(over_limit.len(), head(11).len());
        let mut stack_full = BytesMut::from(head(STACK_FIELDS).as_bytes());
        assert!(plain(take(&mut stack_full, 1000)).is_some());
        let mut over_stack = BytesMut::from(head(STACK_FIELDS + 1).as_bytes());
        assert!(plain(take(&mut over_stack, 1000)).is_none());
    }

    #[test]
    fn a_target_the_uri_parser_refuses_is_handed_back_with_what_followed() {
        // httparse takes any visible byte in a target; `Uri` does not.
        let s = "GET /a{b} HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\n";
        let (req, rest) = take_str(s);
        if let Some(req) = req {
            // The `http` crate accepted it: then it must be the same path.
            assert_eq!(req.uri().path(), "/a{b}");
        } else {
            assert_eq!(&rest[..], s.as_bytes());
        }
        let s = "GET /a\x7f HTTP/1.1\r\nHost: a\r\n\r\n";
        let (req, rest) = take_str(s);
        assert!(req.is_none());
        assert_eq!(&rest[..], s.as_bytes());
    }
}
