//! The headers that tell a pod how a request reached it: who sent it
//! (`X-Forwarded-For`, `Forwarded: for=`), under which name (`Host`,
//! `X-Forwarded-Host`, `Forwarded: host=`), over which scheme
//! (`X-Forwarded-Proto`, `Forwarded: proto=`) and under which path prefix
//! (`X-Forwarded-Prefix`, so an app routed by `/fn/NS/NAME/` can build its
//! own URLs).
//!
//! Pure: a header map in, the map without what this hop replaces and the
//! fields it adds ([`Added`]) out. The added fields stay out of the map:
//! an HTTP/1 pod's head is written with them directly, a pod reached
//! through hyper's client gets them inserted (four map inserts a request
//! fewer on the common path).
//!
//! Policy:
//! - From a peer not in `--trusted-proxies` (the default: every peer),
//!   the client's `X-Forwarded-Host`, `-Proto`, `-Prefix` and `Forwarded`
//!   are dropped and replaced by the activator's own: the authority the
//!   request was routed by, `http` (the activator serves plain HTTP), the
//!   stripped prefix, and one `Forwarded` element saying the same.
//! - From a trusted peer they are kept: `X-Forwarded-Host` and `-Proto`
//!   when present (set when absent), the prefix is the peer's followed by
//!   ours, and our `Forwarded` element is appended to the peer's.
//! - `X-Forwarded-For` is appended to, from every peer, as nginx's
//!   `$proxy_add_x_forwarded_for` and Envoy with `use_remote_address: true`
//!   do (Envoy then also overwrites `X-Forwarded-Proto` unless
//!   `xff_num_trusted_hops` is set): earlier entries are kept, so a
//!   function must trust only the right-most entries, added by proxies it
//!   knows.
//! - `Host` is the routed authority (empty when an HTTP/1.0 request had
//!   none); an HTTP/2 pod gets it as `X-Forwarded-Host` only, its
//!   `:authority` being the pod's address.

use std::net::IpAddr;

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::ascii::write_ip;
use crate::target::Target;

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static FORWARDED: HeaderName = header::FORWARDED;

/// The forwarding fields this hop sends, besides the request's own.
#[derive(Clone, Debug, Default)]
pub struct Added {
    xff: Option<HeaderValue>,
    proto: Option<HeaderValue>,
    host: Option<HeaderValue>,
    prefix: Option<HeaderValue>,
    forwarded: Option<HeaderValue>,
}

impl Added {
    /// The fields, in the order they are written.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> + Clone {
        [
            (&X_FORWARDED_FOR, &self.xff),
            (&X_FORWARDED_PROTO, &self.proto),
            (&X_FORWARDED_HOST, &self.host),
            (&X_FORWARDED_PREFIX, &self.prefix),
            (&FORWARDED, &self.forwarded),
        ]
        .into_iter()
        .filter_map(|(name, value)| value.as_ref().map(|v| (name, v)))
    }

    /// Puts the fields into `h` (which [`set`] left without them).
    pub fn insert_into(&self, h: &mut HeaderMap) {
        for (name, value) in self.iter() {
            h.insert(name.clone(), value.clone());
        }
    }
}

/// Which forwarding headers a request came with, found in one pass over
/// its names: most requests carry none, and a lookup per name would hash
/// each of them (a dozen hashes per request).
#[derive(Default)]
struct Present {
    xff: bool,
    host: bool,
    proto: bool,
    prefix: bool,
    forwarded: bool,
}

impl Present {
    fn of(h: &HeaderMap) -> Self {
        let mut p = Present::default();
        for name in h.keys() {
            if name == header::FORWARDED {
                p.forwarded = true;
            } else if name.as_str().starts_with("x-forwarded-") {
                p.xff |= name == X_FORWARDED_FOR;
                p.host |= name == X_FORWARDED_HOST;
                p.proto |= name == X_FORWARDED_PROTO;
                p.prefix |= name == X_FORWARDED_PREFIX;
            }
        }
        p
    }
}

/// Room for this hop's `X-Forwarded-For` and `Forwarded` values, which
/// most requests write into one buffer.
const LINE_CAPACITY: usize = 160;

/// This hop's `X-Forwarded-For` and `Forwarded` values for a request with
/// no earlier ones to join (nearly all requests) depend only on the peer
/// and the authority: a connection, one peer, keeps the last ones it made
/// and sends them again while the authority is the same (about 800 of the
/// 20,000 instructions a request cost, `callgrind` at c=16).
#[derive(Debug, Default)]
pub struct Memo {
    last: Option<Remembered>,
}

#[derive(Debug)]
struct Remembered {
    ip: IpAddr,
    /// A copy: the request's own value shares its head's bytes, and would
    /// keep the connection's read buffer of that request alive.
    authority: Option<Bytes>,
    xff: Option<HeaderValue>,
    forwarded: Option<HeaderValue>,
}

impl Memo {
    fn get(&self, ip: IpAddr, authority: Option<&HeaderValue>) -> Option<&Remembered> {
        self.last.as_ref().filter(|r| {
            r.ip == ip && r.authority.as_deref() == authority.map(HeaderValue::as_bytes)
        })
    }
}

/// Sets the forwarding headers of a request about to go to a pod: removes
/// from `h` what this hop replaces, sets Host, and returns what it adds.
/// `memo` is the connection's (see [`Memo`]).
pub fn set(
    h: &mut HeaderMap,
    peer: IpAddr,
    trusted: bool,
    target: &Target,
    h2_upstream: bool,
    memo: &mut Memo,
) -> Added {
    let ip = peer.to_canonical();
    let mut present = Present::of(h);
    let mut added = Added::default();
    // An untrusted peer's `Forwarded` is dropped, not joined.
    let join_forwarded = trusted && present.forwarded;
    // With nothing earlier to join, the values depend only on the peer
    // and the authority: what `memo` keeps.
    let ours_alone = !present.xff && !join_forwarded;
    let remembered = ours_alone
        .then(|| memo.get(ip, target.authority.as_ref()))
        .flatten();
    if let Some(r) = remembered {
        added.xff.clone_from(&r.xff);
        added.forwarded.clone_from(&r.forwarded);
    } else {
        // This hop's values are written into one buffer and the fields
        // share it: two allocations a request, where a buffer and a copy
        // per field were six.
        let mut line = BytesMut::with_capacity(LINE_CAPACITY);
        join_previous(&mut line, h, &X_FORWARDED_FOR, present.xff);
        write_ip(&mut line, ip);
        added.xff = value(line.split().freeze());
        // A trusted peer's elements come first.
        join_previous(&mut line, h, &header::FORWARDED, join_forwarded);
        forwarded_element(&mut line, ip, target);
        added.forwarded = value(line.split().freeze());
        if ours_alone {
            memo.last = Some(Remembered {
                ip,
                authority: target
                    .authority
                    .as_ref()
                    .map(|a| Bytes::copy_from_slice(a.as_bytes())),
                xff: added.xff.clone(),
                forwarded: added.forwarded.clone(),
            });
        }
    }
    if present.xff {
        h.remove(&X_FORWARDED_FOR);
    }
    if !trusted {
        for (there, name) in [
            (&mut present.host, &X_FORWARDED_HOST),
            (&mut present.proto, &X_FORWARDED_PROTO),
            (&mut present.prefix, &X_FORWARDED_PREFIX),
        ] {
            if std::mem::take(there) {
                h.remove(name);
            }
        }
    }
    if !present.proto {
        added.proto = Some(HeaderValue::from_static("http"));
    }
    if !present.host {
        added.host.clone_from(&target.authority);
    }
    if let Some(ours) = &target.prefix {
        let mut prefix = String::new();
        if present.prefix {
            for theirs in h.get_all(&X_FORWARDED_PREFIX) {
                if let Ok(t) = theirs.to_str() {
                    prefix.push_str(t.trim().trim_end_matches('/'));
                }
            }
            h.remove(&X_FORWARDED_PREFIX);
        }
        prefix.push_str(ours);
        added.prefix = HeaderValue::from_str(&prefix).ok();
    }
    if present.forwarded {
        h.remove(header::FORWARDED);
    }
    if h2_upstream {
        h.remove(header::HOST);
    } else {
        let host = target
            .authority
            .clone()
            .unwrap_or_else(|| HeaderValue::from_static(""));
        // Replaced in place when there is one (routing refused two):
        // `insert` makes room for a new field first, and a map built to
        // the size of its head grows for it (a reallocation per request).
        match crate::field_scan::first_mut(h, &header::HOST) {
            Some(v) => *v = host,
            None => {
                h.insert(header::HOST, host);
            }
        }
    }
    added
}

/// Writes every value of `name` (when `present`) as `a, b, `, for this
/// hop's value to follow.
fn join_previous(line: &mut BytesMut, h: &HeaderMap, name: &HeaderName, present: bool) {
    if present {
        for prev in h.get_all(name) {
            line.extend_from_slice(prev.as_bytes());
            line.extend_from_slice(b", ");
        }
    }
}

/// The field value of `line`, shared, not copied.
fn value(line: Bytes) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(line).ok()
}

/// This hop's RFC 7239 element: `for=1.2.3.4;host="a.b";proto=http`. An
/// IPv6 node is quoted in brackets; host is always quoted (it may hold `:`).
fn forwarded_element(e: &mut BytesMut, ip: IpAddr, target: &Target) {
    match ip {
        IpAddr::V4(_) => {
            e.extend_from_slice(b"for=");
            write_ip(e, ip);
        }
        IpAddr::V6(_) => {
            e.extend_from_slice(b"for=\"[");
            write_ip(e, ip);
            e.extend_from_slice(b"]\"");
        }
    }
    if let Some(a) = &target.authority {
        e.extend_from_slice(b";host=\"");
        e.extend_from_slice(a.as_bytes());
        e.extend_from_slice(b"\"");
    }
    e.extend_from_slice(b";proto=http");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::FunctionKey;

    fn target(authority: Option<&str>, prefix: Option<&str>) -> Target {
        Target {
            key: FunctionKey::new("ns", "f").into(),
            path_and_query: http::uri::PathAndQuery::from_static("/"),
            authority: authority.map(|a| HeaderValue::from_str(a).expect("header value")),
            prefix: prefix.map(Into::into),
        }
    }

    /// [`set`], and the fields as an HTTP/1 pod gets them: the map's, then
    /// the added ones after them. Appended, not inserted, so that a field
    /// `set` failed to take out of the map shows as a second value.
    fn set_all(h: &mut HeaderMap, peer: IpAddr, trusted: bool, target: &Target, h2: bool) {
        let added = set(h, peer, trusted, target, h2, &mut Memo::default());
        for (name, value) in added.iter() {
            h.append(name, value.clone());
        }
        for name in [
            &X_FORWARDED_FOR,
            &X_FORWARDED_PROTO,
            &X_FORWARDED_HOST,
            &X_FORWARDED_PREFIX,
            &FORWARDED,
            &header::HOST,
        ] {
            assert!(
                h.get_all(name).iter().count() <= 1,
                "{name} sent twice: {h:?}"
            );
        }
    }

    fn spoofed() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("1.1.1.1"));
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("2.2.2.2"));
        h.insert(&X_FORWARDED_HOST, HeaderValue::from_static("evil.com"));
        h.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        h.insert(&X_FORWARDED_PREFIX, HeaderValue::from_static("/evil/"));
        h.insert(
            header::FORWARDED,
            HeaderValue::from_static("for=6.6.6.6;host=evil.com"),
        );
        h.insert(header::HOST, HeaderValue::from_static("F.ns.siesta.local"));
        h
    }

    fn get<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
        assert!(h.get_all(name).iter().count() <= 1, "{name} twice: {h:?}");
        h.get(name).and_then(|v| v.to_str().ok())
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 1, 2, 3));

    #[test]
    fn an_untrusted_peer_gets_its_forwarding_headers_replaced() {
        let mut h = spoofed();
        set_all(
            &mut h,
            PEER,
            false,
            &target(Some("f.ns.siesta.local"), None),
            false,
        );
        assert_eq!(
            get(&h, "x-forwarded-for"),
            Some("1.1.1.1, 2.2.2.2, 10.1.2.3")
        );
        assert_eq!(get(&h, "x-forwarded-host"), Some("f.ns.siesta.local"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&h, "x-forwarded-prefix"), None);
        assert_eq!(
            get(&h, "forwarded"),
            Some("for=10.1.2.3;host=\"f.ns.siesta.local\";proto=http")
        );
        assert_eq!(get(&h, "host"), Some("f.ns.siesta.local"));
    }

    #[test]
    fn path_routing_sets_the_prefix() {
        let mut h = spoofed();
        let t = target(Some("localhost:8080"), Some("/fn/ns/f"));
        set_all(&mut h, PEER, false, &t, false);
        assert_eq!(get(&h, "x-forwarded-prefix"), Some("/fn/ns/f"));
        assert_eq!(get(&h, "x-forwarded-host"), Some("localhost:8080"));
        assert_eq!(
            get(&h, "forwarded"),
            Some("for=10.1.2.3;host=\"localhost:8080\";proto=http")
        );
    }

    #[test]
    fn a_trusted_peer_keeps_its_headers_and_ours_are_appended() {
        let mut h = spoofed();
        let t = target(Some("f.ns.siesta.local"), Some("/fn/ns/f"));
        set_all(&mut h, PEER, true, &t, false);
        assert_eq!(
            get(&h, "x-forwarded-for"),
            Some("1.1.1.1, 2.2.2.2, 10.1.2.3")
        );
        assert_eq!(get(&h, "x-forwarded-host"), Some("evil.com"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("https"));
        assert_eq!(get(&h, "x-forwarded-prefix"), Some("/evil/fn/ns/f"));
        assert_eq!(
            get(&h, "forwarded"),
            Some("for=6.6.6.6;host=evil.com, for=10.1.2.3;host=\"f.ns.siesta.local\";proto=http")
        );
        // Trusted, but sending none: ours are set.
        let mut h = HeaderMap::new();
        set_all(&mut h, PEER, true, &t, false);
        assert_eq!(get(&h, "x-forwarded-host"), Some("f.ns.siesta.local"));
        assert_eq!(get(&h, "x-forwarded-proto"), Some("http"));
        assert_eq!(get(&h, "x-forwarded-prefix"), Some("/fn/ns/f"));
    }

    #[test]
    fn host_follows_the_upstream_protocol_and_may_be_empty() {
        let mut h = spoofed();
        set_all(
            &mut h,
            PEER,
            false,
            &target(Some("f.ns.siesta.local"), None),
            true,
        );
        assert_eq!(get(&h, "host"), None, "an h2 pod gets :authority instead");
        assert_eq!(get(&h, "x-forwarded-host"), Some("f.ns.siesta.local"));
        let mut h = HeaderMap::new();
        set_all(&mut h, PEER, false, &target(None, Some("/fn/ns/f")), false);
        assert_eq!(get(&h, "host"), Some(""));
        assert_eq!(get(&h, "x-forwarded-host"), None);
        assert_eq!(get(&h, "forwarded"), Some("for=10.1.2.3;proto=http"));
    }

    #[test]
    fn an_ipv6_peer_is_bracketed_and_quoted_and_a_mapped_v4_is_v4() {
        let mut h = HeaderMap::new();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        set_all(&mut h, v6, false, &target(None, None), false);
        assert_eq!(
            get(&h, "forwarded"),
            Some("for=\"[2001:db8::1]\";proto=http")
        );
        assert_eq!(get(&h, "x-forwarded-for"), Some("2001:db8::1"));
        let mut h = HeaderMap::new();
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        set_all(&mut h, mapped, false, &target(None, None), false);
        assert_eq!(get(&h, "x-forwarded-for"), Some("10.1.2.3"));
    }

    #[test]
    fn a_connection_s_remembered_values_are_the_ones_it_would_make() {
        // One connection's requests, one after another: with and without
        // earlier values, other authorities, another peer; each request's
        // fields with the memo are those made without it.
        let authorities = [
            Some("f.ns.siesta.local"),
            Some("g.ns.siesta.local:8080"),
            None,
        ];
        let peers = [PEER, "2001:db8::1".parse().unwrap()];
        let mut memo = Memo::default();
        for round in 0..3 {
            for (i, authority) in authorities.iter().enumerate() {
                for (j, peer) in peers.iter().enumerate() {
                    for trusted in [false, true] {
                        let incoming = || {
                            if (round + i + j) % 2 == 0 {
                                spoofed()
                            } else {
                                HeaderMap::new()
                            }
                        };
                        let t = target(*authority, None);
                        let (mut with, mut without) = (incoming(), incoming());
                        let remembered = set(&mut with, *peer, trusted, &t, false, &mut memo);
                        let fresh = set(
                            &mut without,
                            *peer,
                            trusted,
                            &t,
                            false,
                            &mut Memo::default(),
                        );
                        let fields = |a: &Added| {
                            a.iter()
                                .map(|(n, v)| (n.clone(), v.clone()))
                                .collect::<Vec<_>>()
                        };
                        assert_eq!(
                            fields(&remembered),
                            fields(&fresh),
                            "{authority:?} {peer} {trusted}"
                        );
                        assert_eq!(with, without);
                    }
                }
            }
        }
        assert!(
            memo.last.is_some(),
            "a request with no earlier values is remembered"
        );
    }

    #[test]
    fn a_connection_s_next_request_gets_the_values_it_made_not_new_ones() {
        // The same peer and authority, no earlier values: the second
        // request's fields are the first's own bytes (shared), which
        // only the memo hands out.
        let mut memo = Memo::default();
        let t = target(Some("f.ns.siesta.local"), None);
        let made = || {
            set(
                &mut HeaderMap::new(),
                PEER,
                false,
                &t,
                false,
                &mut Memo::default(),
            )
        };
        let first = set(&mut HeaderMap::new(), PEER, false, &t, false, &mut memo);
        let second = set(&mut HeaderMap::new(), PEER, false, &t, false, &mut memo);
        let at = |v: &Option<HeaderValue>| v.as_ref().expect("a value").as_bytes().as_ptr();
        assert_eq!(at(&second.xff), at(&first.xff));
        assert_eq!(at(&second.forwarded), at(&first.forwarded));
        // Without the memo, each request's values are made anew.
        assert_ne!(at(&made().xff), at(&first.xff));
    }
}
