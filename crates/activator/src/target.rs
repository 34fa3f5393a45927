//! The request target and Host, checked once before routing: the authority
//! that names the function, the one path that is both routed and forwarded,
//! or a refusal that says what was wrong.
//!
//! Pure. The rules (RFC 9110 §4.2, §7.2; RFC 9112 §3.2-3.3; RFC 9113 §8.3.1):
//!
//! - The authority is the request target's own (HTTP/1 absolute-form, or
//!   HTTP/2 `:authority`), else the Host header. A front proxy that routes
//!   by the URL and Siesta then agree on the function.
//! - More than one Host header, a Host that is not `host[:port]` (userinfo,
//!   a comma, a bad port), or a Host naming another host than the target's
//!   authority (compared without case, a trailing dot, or the scheme's
//!   default port): 400. nginx routes by the URL and ignores such a Host;
//!   two readings of one request are refused here instead.
//! - HTTP/1.1 without Host: 400, absolute-form too (RFC 9112 §3.2 says
//!   "MUST", and nginx does). HTTP/2 needs `:authority` or Host. HTTP/1.0
//!   may go without: it is routed by path only, and forwarded with an empty
//!   Host (RFC 9112 §3.2: the value for "no authority").
//! - Absolute-form with a scheme other than http/https: 400. Authority-form
//!   (`host:port`) outside CONNECT, `*` (`OPTIONS *` too, as nginx does),
//!   and targets not starting with `/`: 400. CONNECT: 405.
//! - The path's dot segments: see [`crate::normalize`].
//! - A fragment (`#...`) never gets here: hyper's URI parser drops it, so
//!   the path routed and the path forwarded are both without it.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderValue, Method, StatusCode, Uri, Version};

use crate::metrics::Reject;
use crate::normalize::{self, PathError};
use crate::route::{self, FunctionKey};

/// Where a request goes, and what is sent there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// Shared with the connection's [`HostMemo`], which hands it to each
    /// request the same Host names (no copy of its two strings).
    pub key: Arc<FunctionKey>,
    /// The path (dot segments resolved, the `/fn/NS/NAME` prefix stripped
    /// when routed by path) and the query as received. Starts with `/`.
    /// Unchanged, it is the request's own (shared, not copied).
    pub path_and_query: PathAndQuery,
    /// The authority the request names (the target's, else Host), as the
    /// client wrote it: forwarded as Host and `X-Forwarded-Host`. From
    /// Host, it is the request's own value (shared, not copied).
    pub authority: Option<HeaderValue>,
    /// `/fn/NS/NAME` when routed by path: `X-Forwarded-Prefix`.
    pub prefix: Option<String>,
}

/// Why a request is answered by the activator before any routing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Connect,
    MultipleHosts,
    InvalidHost {
        value: String,
        why: &'static str,
    },
    InvalidAuthority {
        value: String,
        why: &'static str,
    },
    MissingHost {
        http2: bool,
    },
    HostMismatch {
        host: String,
        authority: String,
    },
    Scheme(String),
    AuthorityForm,
    Asterisk,
    NotOriginForm,
    Path {
        path: String,
        error: PathError,
    },
    /// Neither the authority nor the path names a function: 404.
    NoFunction,
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::NoFunction => StatusCode::NOT_FOUND,
            Refusal::Connect => StatusCode::METHOD_NOT_ALLOWED,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The metric reason: 404 and 405 as `unknown_function` (as before),
    /// every 400 as `bad_request`.
    pub fn reject(&self) -> Reject {
        match self {
            Refusal::NoFunction | Refusal::Connect => Reject::UnknownFunction,
            _ => Reject::BadRequest,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Connect => {
                write!(
                    f,
                    "CONNECT is not supported: the activator is not a forward proxy"
                )
            }
            Refusal::MultipleHosts => {
                write!(
                    f,
                    "more than one Host header: send exactly one (RFC 9112 section 3.2)"
                )
            }
            Refusal::InvalidHost { value, why } => {
                write!(f, "invalid Host header {value:?}: {why}")
            }
            Refusal::InvalidAuthority { value, why } => {
                write!(
                    f,
                    "invalid authority {value:?} in the request target: {why}"
                )
            }
            Refusal::MissingHost { http2: false } => write!(
                f,
                "no Host header: HTTP/1.1 requires one (RFC 9112 section 3.2); \
                 send Host NAME.NAMESPACE.DOMAIN, or any Host with the path /fn/NAMESPACE/NAME/"
            ),
            Refusal::MissingHost { http2: true } => write!(
                f,
                "neither :authority nor Host: HTTP/2 requires one (RFC 9113 section 8.3.1)"
            ),
            Refusal::HostMismatch { host, authority } => write!(
                f,
                "Host {host:?} names another host than the request target's authority \
                 {authority:?}: send the same one in both (RFC 9112 section 3.2.2)"
            ),
            Refusal::Scheme(s) => {
                write!(
                    f,
                    "request target scheme {s:?}: only http and https are served"
                )
            }
            Refusal::AuthorityForm => write!(
                f,
                "request target is an authority (host:port), which only CONNECT uses"
            ),
            Refusal::Asterisk => write!(
                f,
                "request target `*` (OPTIONS *) is not served: ask a function by its path"
            ),
            Refusal::NotOriginForm => write!(
                f,
                "request target must start with / or be an absolute http(s) URL"
            ),
            Refusal::Path { path, error } => {
                write!(f, "request path {path:?} is not routed: it has {error}")
            }
            Refusal::NoFunction => write!(
                f,
                "no function here: use Host NAME.NAMESPACE.DOMAIN or the path /fn/NAMESPACE/NAME/"
            ),
        }
    }
}

/// A checked `host[:port]`.
#[derive(Debug)]
struct Authority<'a> {
    raw: &'a str,
    /// Lower case, without a trailing dot.
    host: Cow<'a, str>,
    port: Option<u16>,
    /// The Host header it was read from.
    header: Option<&'a HeaderValue>,
}

impl Authority<'_> {
    fn same_as(&self, other: &Authority<'_>, default_port: u16) -> bool {
        self.host == other.host
            && self.port.unwrap_or(default_port) == other.port.unwrap_or(default_port)
    }
}

/// `host[:port]` as RFC 9110 §4.2.1 and §7.2 allow it in Host and in an
/// http(s) URI: a reg-name of unreserved characters or an IP literal, and a
/// port of at most 65535. Userinfo is refused (RFC 9110 §4.2.4).
fn parse_authority(raw: &str) -> Result<Authority<'_>, &'static str> {
    if raw.is_empty() {
        return Err("empty");
    }
    if raw.contains('@') {
        return Err("userinfo (user@) is not allowed");
    }
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (literal, after) = rest.split_once(']').ok_or("unclosed [")?;
        if literal.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("not an IPv6 literal in []");
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after ]")?),
        };
        (&raw[..literal.len() + 2], port)
    } else {
        match raw.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (raw, None),
        }
    };
    if !host.starts_with('[')
        && (host.is_empty()
            || !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')))
    {
        return Err("not a host name (letters, digits, - . _ ~) or IP literal");
    }
    let port = match port {
        None => None,
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => {
            Some(p.parse::<u16>().map_err(|_| "port above 65535")?)
        }
        Some(_) => return Err("port is not a number"),
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Ok(Authority {
        raw,
        host,
        port,
        header: None,
    })
}

/// Decides where a request goes, or why it is refused. `hosts` are the
/// request's Host header values, in order.
pub fn resolve<'h>(
    method: &Method,
    version: Version,
    uri: &Uri,
    hosts: impl IntoIterator<Item = &'h HeaderValue>,
    domain: &str,
) -> Result<Target, Refusal> {
    if method == Method::CONNECT {
        // A function is not a tunnel endpoint: forwarding CONNECT would
        // leave an upgraded connection nobody serves.
        return Err(Refusal::Connect);
    }
    let host = host_header(hosts)?;
    let Some(pq) = uri.path_and_query() else {
        return Err(Refusal::AuthorityForm);
    };
    let from_target = target_authority(uri)?;
    let absolute = from_target.is_some();
    let authority = choose_authority(from_target, host, version)?;
    let normalized = normalized_path(pq.as_str(), absolute, version)?;
    let routed = route::route(authority.as_ref().map(|a| a.raw), &normalized, domain)
        .ok_or(Refusal::NoFunction)?;
    Ok(Target {
        key: Arc::new(routed.key),
        path_and_query: forwarded_path(pq, routed.path_and_query),
        authority: authority.and_then(|a| match a.header {
            Some(h) => Some(h.clone()),
            None => HeaderValue::from_str(a.raw).ok(),
        }),
        prefix: routed.prefix,
    })
}

/// The path and query sent on: the request's own when routing left them
/// as they were (shared, no copy).
fn forwarded_path(pq: &PathAndQuery, routed: Cow<'_, str>) -> PathAndQuery {
    if routed == pq.as_str() {
        pq.clone()
    } else {
        PathAndQuery::from_maybe_shared(Bytes::from(routed.into_owned()))
            .unwrap_or_else(|_| PathAndQuery::from_static("/"))
    }
}

/// The last Host (or, over HTTP/2, `:authority`) a connection's request
/// named a function with, and that function: a keep-alive client names
/// the same one request after request, and a request that names it with
/// the same bytes is routed without reading them again (the authority
/// parse and the name checks were about 1,700 instructions a request over
/// HTTP/1, 2,000 over HTTP/2). Only an authority that named a function by
/// itself is kept: any other request is resolved in full.
#[derive(Debug, Default)]
pub struct HostMemo {
    /// The bytes the function was named by.
    named: Vec<u8>,
    /// Where they were: the one Host header, or an HTTP/2 target's
    /// authority (with no Host header beside it).
    by_target: bool,
    key: Option<Arc<FunctionKey>>,
    /// The authority forwarded when the memo is the target's.
    authority: Option<HeaderValue>,
}

/// Where a request names its function, when it is in a form the memo
/// keeps: the one Host header of a request whose target has no authority;
/// or, over HTTP/2 with no Host header, an `http` or `https` target's
/// authority. `resolve` reads nothing else of the request to find the
/// function (the path is read either way).
enum Named<'a> {
    Host(&'a HeaderValue),
    Target(&'a str),
}

impl Named<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            Named::Host(h) => h.as_bytes(),
            Named::Target(a) => a.as_bytes(),
        }
    }

    fn by_target(&self) -> bool {
        matches!(self, Named::Target(_))
    }
}

impl HostMemo {
    /// The function `n` names, when it names it as the last request did.
    fn key_for(&self, n: &Named<'_>) -> Option<&Arc<FunctionKey>> {
        self.key
            .as_ref()
            .filter(|_| self.by_target == n.by_target() && self.named == n.bytes())
    }
}

fn named<'a>(
    method: &Method,
    version: Version,
    uri: &'a Uri,
    first: Option<&'a HeaderValue>,
    second: Option<&HeaderValue>,
) -> Option<Named<'a>> {
    if method == Method::CONNECT {
        return None;
    }
    match (first, second, uri.authority()) {
        (Some(h), None, None) => Some(Named::Host(h)),
        (None, _, Some(a))
            if version == Version::HTTP_2
                && uri.scheme_str().is_some_and(|s| {
                    s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https")
                }) =>
        {
            Some(Named::Target(a.as_str()))
        }
        _ => None,
    }
}

/// [`resolve`], with what `memo` remembers of the connection's last Host
/// or HTTP/2 authority: the same answer, sooner when it is the same.
pub fn resolve_remembering<'h>(
    method: &Method,
    version: Version,
    uri: &Uri,
    hosts: impl IntoIterator<Item = &'h HeaderValue>,
    domain: &str,
    memo: &mut HostMemo,
) -> Result<Target, Refusal> {
    let mut hosts = hosts.into_iter();
    let (first, second) = (hosts.next(), hosts.next());
    let named = named(method, version, uri, first, second);
    if let Some(n) = &named
        && let Some(key) = memo.key_for(n)
    {
        let Some(pq) = uri.path_and_query() else {
            return Err(Refusal::AuthorityForm);
        };
        let normalized = normalized_path(pq.as_str(), n.by_target(), version)?;
        return Ok(Target {
            key: key.clone(),
            path_and_query: forwarded_path(pq, normalized),
            authority: match n {
                Named::Host(h) => Some((*h).clone()),
                Named::Target(_) => memo.authority.clone(),
            },
            prefix: None,
        });
    }
    let target = resolve(
        method,
        version,
        uri,
        first.into_iter().chain(second).chain(hosts),
        domain,
    )?;
    if let Some(n) = named
        && target.prefix.is_none()
    {
        memo.named.clear();
        memo.named.extend_from_slice(n.bytes());
        memo.by_target = n.by_target();
        // A Host is forwarded as it came; a target's authority as
        // `resolve` made it.
        memo.authority = if memo.by_target {
            target.authority.clone()
        } else {
            None
        };
        memo.key = Some(target.key.clone());
    }
    Ok(target)
}

/// The one Host header, checked; none is `None`, two are a refusal.
fn host_header<'h>(
    hosts: impl IntoIterator<Item = &'h HeaderValue>,
) -> Result<Option<Authority<'h>>, Refusal> {
    let mut hosts = hosts.into_iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => Ok(None),
        (Some(h), None) => {
            let value = h.to_str().map_err(|_| Refusal::InvalidHost {
                value: String::from_utf8_lossy(h.as_bytes()).into_owned(),
                why: "not visible ASCII",
            })?;
            let mut a = parse_authority(value).map_err(|why| Refusal::InvalidHost {
                value: value.to_owned(),
                why,
            })?;
            a.header = Some(h);
            Ok(Some(a))
        }
        (Some(_), Some(_)) => Err(Refusal::MultipleHosts),
    }
}

/// The authority of the request target itself (HTTP/1 absolute-form, or
/// HTTP/2 with `:authority`), with its scheme's default port.
fn target_authority(uri: &Uri) -> Result<Option<(Authority<'_>, u16)>, Refusal> {
    // HTTP/1 absolute-form, or HTTP/2 with `:authority`: a scheme comes with it.
    let Some(a) = uri.authority() else {
        return Ok(None);
    };
    let scheme = uri.scheme_str().unwrap_or_default();
    let default_port = if scheme.eq_ignore_ascii_case("http") {
        80
    } else if scheme.eq_ignore_ascii_case("https") {
        443
    } else {
        return Err(Refusal::Scheme(scheme.to_owned()));
    };
    let parsed = parse_authority(a.as_str()).map_err(|why| Refusal::InvalidAuthority {
        value: a.as_str().to_owned(),
        why,
    })?;
    Ok(Some((parsed, default_port)))
}

/// The authority that routes: the target's and the Host must agree when
/// both are given; which may be missing depends on the HTTP version.
fn choose_authority<'a>(
    from_target: Option<(Authority<'a>, u16)>,
    host: Option<Authority<'a>>,
    version: Version,
) -> Result<Option<Authority<'a>>, Refusal> {
    match (from_target, host) {
        (Some((a, default_port)), Some(h)) => {
            if !a.same_as(&h, default_port) {
                return Err(Refusal::HostMismatch {
                    host: h.raw.to_owned(),
                    authority: a.raw.to_owned(),
                });
            }
            Ok(Some(a))
        }
        (Some(_), None) if version == Version::HTTP_11 => {
            Err(Refusal::MissingHost { http2: false })
        }
        (Some((a, _)), None) => Ok(Some(a)),
        (None, Some(h)) => Ok(Some(h)),
        (None, None) if version == Version::HTTP_10 || version == Version::HTTP_09 => Ok(None),
        (None, None) => Err(Refusal::MissingHost {
            http2: version == Version::HTTP_2,
        }),
    }
}

/// The path and query to route: origin-form, dot segments resolved (see
/// [`normalize::resolve_path`]), the query kept as it was.
fn normalized_path(raw: &str, absolute: bool, version: Version) -> Result<Cow<'_, str>, Refusal> {
    let (raw_path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let path = raw_path;
    if path == "*" {
        return Err(Refusal::Asterisk);
    }
    // `http://host?q` has an empty path, which is `/` (RFC 9112 §3.2.1);
    // an HTTP/2 `:path` must start with `/` itself.
    let path = if path.is_empty() && absolute && version != Version::HTTP_2 {
        "/"
    } else {
        path
    };
    if !path.starts_with('/') {
        return Err(Refusal::NotOriginForm);
    }
    let resolved = normalize::resolve_path(path).map_err(|error| Refusal::Path {
        path: path.to_owned(),
        error,
    })?;
    // Most targets need no change: route the request's own bytes, with no
    // copy on the hot path.
    if matches!(resolved, Cow::Borrowed(_)) && path.len() == raw_path.len() {
        return Ok(Cow::Borrowed(raw));
    }
    let mut n = String::with_capacity(raw.len() + 1);
    n.push_str(&resolved);
    if let Some(q) = query {
        n.push('?');
        n.push_str(q);
    }
    Ok(Cow::Owned(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "siesta.local";

    fn go(version: Version, target: &str, hosts: &[&str]) -> Result<Target, Refusal> {
        let uri: Uri = target.parse().unwrap_or_else(|e| panic!("{target}: {e}"));
        let hosts: Vec<HeaderValue> = hosts
            .iter()
            .map(|h| HeaderValue::from_str(h).expect("header value"))
            .collect();
        resolve(&Method::GET, version, &uri, &hosts, D)
    }

    fn h1(target: &str, hosts: &[&str]) -> Result<Target, Refusal> {
        go(Version::HTTP_11, target, hosts)
    }

    fn routed(r: Result<Target, Refusal>) -> (String, String) {
        let t = r.unwrap_or_else(|e| panic!("refused: {e}"));
        (t.key.to_string(), t.path_and_query.as_str().to_owned())
    }

    fn pair(key: &str, pq: &str) -> (String, String) {
        (key.to_owned(), pq.to_owned())
    }

    #[test]
    fn the_absolute_form_authority_names_the_function_not_host() {
        let t = h1("http://g.ns.siesta.local/a?x", &["g.ns.siesta.local"]).unwrap();
        assert_eq!(*t.key, FunctionKey::new("ns", "g"));
        assert_eq!(t.path_and_query, "/a?x");
        assert_eq!(
            t.authority,
            Some(HeaderValue::from_static("g.ns.siesta.local"))
        );
        // And when they disagree, nobody guesses.
        assert_eq!(
            h1("http://g.ns.siesta.local/a", &["f.ns.siesta.local"]),
            Err(Refusal::HostMismatch {
                host: "f.ns.siesta.local".into(),
                authority: "g.ns.siesta.local".into()
            })
        );
        assert!(matches!(
            h1("http://localhost/fn/ns/g/x", &["f.ns.siesta.local"]),
            Err(Refusal::HostMismatch { .. })
        ));
    }

    #[test]
    fn host_and_authority_compare_without_case_trailing_dot_or_default_port() {
        for (target, host) in [
            ("http://F.NS.siesta.local/a", "f.ns.SIESTA.local"),
            ("http://f.ns.siesta.local:80/a", "f.ns.siesta.local"),
            ("http://f.ns.siesta.local/a", "f.ns.siesta.local:80"),
            ("https://f.ns.siesta.local/a", "f.ns.siesta.local:443"),
            ("http://f.ns.siesta.local./a", "f.ns.siesta.local"),
        ] {
            assert_eq!(
                routed(h1(target, &[host])),
                pair("ns/f", "/a"),
                "{target} {host}"
            );
        }
        for (target, host) in [
            ("http://f.ns.siesta.local:8080/a", "f.ns.siesta.local"),
            ("https://f.ns.siesta.local/a", "f.ns.siesta.local:80"),
            ("http://f.ns.siesta.local/a", "f.ns.siesta.local:8080"),
        ] {
            assert!(
                matches!(h1(target, &[host]), Err(Refusal::HostMismatch { .. })),
                "{target} {host}"
            );
        }
    }

    #[test]
    fn host_rules() {
        assert_eq!(
            h1("/a", &["f.ns.siesta.local", "f.ns.siesta.local"]),
            Err(Refusal::MultipleHosts)
        );
        assert_eq!(
            h1("/a", &["f.ns.siesta.local", "g.ns.siesta.local"]),
            Err(Refusal::MultipleHosts)
        );
        assert_eq!(
            h1("/fn/ns/f/a", &[]),
            Err(Refusal::MissingHost { http2: false })
        );
        assert_eq!(
            h1("http://f.ns.siesta.local/a", &[]),
            Err(Refusal::MissingHost { http2: false })
        );
        assert_eq!(
            go(Version::HTTP_2, "/fn/ns/f/a", &[]),
            Err(Refusal::MissingHost { http2: true })
        );
        for bad in [
            "",
            "f.ns siesta.local",
            "f.ns.siesta.local,g.ns.siesta.local",
            "u@f.ns.siesta.local",
            "f.ns.siesta.local:99999",
            "f.ns.siesta.local:",
            "f.ns.siesta.local:8o",
            "f.ns.siesta.local/x",
            "[::1",
            "[zz]",
            "[::1]x",
            ":80",
        ] {
            assert!(
                matches!(h1("/a", &[bad]), Err(Refusal::InvalidHost { .. })),
                "{bad:?}"
            );
        }
        // Still fine: an IP literal, a port, another name with the path.
        assert_eq!(
            routed(h1("/fn/ns/f/a", &["[::1]:8080"])),
            pair("ns/f", "/a")
        );
        assert_eq!(
            routed(h1("/fn/ns/f/a", &["localhost:8080"])),
            pair("ns/f", "/a")
        );
    }

    #[test]
    fn http_1_0_without_host_is_routed_by_path_only() {
        let t = go(Version::HTTP_10, "/fn/ns/f/a", &[]).unwrap();
        assert_eq!((t.key.to_string(), t.authority), ("ns/f".into(), None));
        assert_eq!(go(Version::HTTP_10, "/a", &[]), Err(Refusal::NoFunction));
        assert_eq!(
            routed(go(Version::HTTP_10, "http://f.ns.siesta.local/a", &[])),
            pair("ns/f", "/a")
        );
    }

    #[test]
    fn http2_authority_plays_the_absolute_form_role() {
        assert_eq!(
            routed(go(Version::HTTP_2, "http://f.ns.siesta.local/a", &[])),
            pair("ns/f", "/a")
        );
        assert!(matches!(
            go(
                Version::HTTP_2,
                "http://f.ns.siesta.local/a",
                &["g.ns.siesta.local"]
            ),
            Err(Refusal::HostMismatch { .. })
        ));
        // Translated from HTTP/1 by an intermediary: Host only.
        assert_eq!(
            routed(go(Version::HTTP_2, "/a", &["f.ns.siesta.local"])),
            pair("ns/f", "/a")
        );
    }

    #[test]
    fn target_forms_other_than_origin_and_absolute_http_are_refused() {
        let star = Uri::from_static("*");
        let host = [HeaderValue::from_static("f.ns.siesta.local")];
        assert_eq!(
            resolve(&Method::OPTIONS, Version::HTTP_11, &star, &host, D),
            Err(Refusal::Asterisk)
        );
        assert_eq!(
            h1("f.ns.siesta.local:80", &["f.ns.siesta.local"]),
            Err(Refusal::AuthorityForm)
        );
        // An HTTP/2 `:path` of `?x` (HTTP/1's `GET ?x` does not even parse).
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(http::uri::Scheme::HTTP);
        parts.authority = Some(http::uri::Authority::from_static("f.ns.siesta.local"));
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("?x"));
        let uri = Uri::from_parts(parts).unwrap();
        assert_eq!(
            resolve(&Method::GET, Version::HTTP_2, &uri, &[], D),
            Err(Refusal::NotOriginForm)
        );
        assert_eq!(
            h1("ftp://f.ns.siesta.local/a", &["f.ns.siesta.local"]),
            Err(Refusal::Scheme("ftp".into()))
        );
        assert!(matches!(
            h1("http://u@f.ns.siesta.local/a", &["f.ns.siesta.local"]),
            Err(Refusal::InvalidAuthority { .. })
        ));
        let uri = Uri::from_static("http://f.ns.siesta.local:80/");
        assert_eq!(
            resolve(&Method::CONNECT, Version::HTTP_11, &uri, &host, D),
            Err(Refusal::Connect)
        );
        // `http://host?q` is `/?q`.
        assert_eq!(
            routed(h1("http://f.ns.siesta.local?q", &["f.ns.siesta.local"])),
            pair("ns/f", "/?q")
        );
        assert_eq!(
            routed(h1("HTTP://F.NS.SIESTA.LOCAL/a", &["f.ns.siesta.local"])),
            pair("ns/f", "/a")
        );
    }

    #[test]
    fn dot_segments_are_resolved_before_routing_and_the_result_is_forwarded() {
        let f = ["f.ns.siesta.local"];
        let l = ["localhost"];
        assert_eq!(
            routed(h1("/a/../b?x=/../y", &f)),
            pair("ns/f", "/b?x=/../y")
        );
        assert_eq!(routed(h1("/a/%2e%2e/b", &f)), pair("ns/f", "/b"));
        assert_eq!(routed(h1("/fn/ns/f/a/../b", &l)), pair("ns/f", "/b"));
        assert_eq!(routed(h1("/x/../fn/ns/f/a", &l)), pair("ns/f", "/a"));
        // The resolved path names ns/g: that is where it goes, and what
        // nginx does too (`location /fn/ns/g/`).
        assert_eq!(routed(h1("/fn/ns/f/../g/x", &l)), pair("ns/g", "/x"));
        assert_eq!(routed(h1("/fn/ns/f/%2e%2e/g/x", &l)), pair("ns/g", "/x"));
        assert_eq!(h1("/fn/ns/f/..", &l), Err(Refusal::NoFunction));
        assert_eq!(h1("/fn/ns/f/../../x", &l), Err(Refusal::NoFunction));
        for (target, error) in [
            ("/../../etc/passwd", PathError::AboveRoot),
            ("/fn/ns/f/../../../../x", PathError::AboveRoot),
            ("/fn/ns/f/..%2fg/x", PathError::Ambiguous),
            ("/fn/ns/f//../g", PathError::DotDotAfterEmptySegment),
            ("/a%zz", PathError::BadPercentEncoding),
        ] {
            let hosts: &[&str] = if target.starts_with("/fn") { &l } else { &f };
            assert!(
                matches!(h1(target, hosts), Err(Refusal::Path { error: e, .. }) if e == error),
                "{target}"
            );
        }
        let t = h1("/fn/ns/f/a", &l).unwrap();
        assert_eq!(t.prefix.as_deref(), Some("/fn/ns/f"));
        assert_eq!(h1("/a", &f).unwrap().prefix, None);
    }

    #[test]
    fn a_remembered_host_routes_as_resolve_does() {
        // Requests one connection might send in turn, each answered by
        // `resolve_remembering` with the memo the ones before it left, and
        // by `resolve` alone: the answers are the same.
        let cases: &[(Method, Version, &str, &[&str])] = &[
            (
                Method::GET,
                Version::HTTP_11,
                "/a?b=1",
                &["f.ns.siesta.local"],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                "/x/../y",
                &["f.ns.siesta.local"],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                "/fn/other/g/z",
                &["f.ns.siesta.local"],
            ),
            (Method::GET, Version::HTTP_11, "*", &["f.ns.siesta.local"]),
            (
                Method::GET,
                Version::HTTP_11,
                "/%2e%2e/q",
                &["f.ns.siesta.local"],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                "http://f.ns.siesta.local/abs",
                &["f.ns.siesta.local"],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                "http://g.ns.siesta.local/abs",
                &["f.ns.siesta.local"],
            ),
            (
                Method::CONNECT,
                Version::HTTP_11,
                "/c",
                &["f.ns.siesta.local"],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                "/two",
                &["f.ns.siesta.local", "f.ns.siesta.local"],
            ),
            (Method::GET, Version::HTTP_11, "/up", &["F.NS.Siesta.Local"]),
            (
                Method::GET,
                Version::HTTP_11,
                "/port",
                &["f.ns.siesta.local:8080"],
            ),
            (
                Method::GET,
                Version::HTTP_11,
                "/fn/ns/g/p",
                &["gateway.example"],
            ),
            (Method::GET, Version::HTTP_11, "/q", &["gateway.example"]),
            (
                Method::GET,
                Version::HTTP_11,
                "/again",
                &["f.ns.siesta.local"],
            ),
            (
                Method::GET,
                Version::HTTP_10,
                "/old",
                &["f.ns.siesta.local"],
            ),
            (Method::GET, Version::HTTP_2, "/h2", &["f.ns.siesta.local"]),
            (
                Method::GET,
                Version::HTTP_11,
                "/bad",
                &["user@f.ns.siesta.local"],
            ),
            (Method::GET, Version::HTTP_11, "/none", &[]),
            // HTTP/2: the function named by `:authority`, no Host.
            (
                Method::GET,
                Version::HTTP_2,
                "http://f.ns.siesta.local/a",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://f.ns.siesta.local/b?c",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "https://f.ns.siesta.local/s",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://f.ns.siesta.local/x/../y",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://f.ns.siesta.local/%2e%2e/q",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://f.ns.siesta.local/",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "ftp://f.ns.siesta.local/f",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://f.ns.siesta.local:80/p",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://F.ns.siesta.local/p",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://g.ns.siesta.local/g",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://g.ns.siesta.local/g2",
                &[],
            ),
            (
                Method::CONNECT,
                Version::HTTP_2,
                "http://g.ns.siesta.local/c",
                &[],
            ),
            // The same authority and a Host beside it: resolved in full.
            (
                Method::GET,
                Version::HTTP_2,
                "http://g.ns.siesta.local/h",
                &["g.ns.siesta.local"],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://g.ns.siesta.local/h",
                &["f.ns.siesta.local"],
            ),
            // A Host memo, then the same bytes as an authority.
            (Method::GET, Version::HTTP_11, "/h1", &["f.ns.siesta.local"]),
            (
                Method::GET,
                Version::HTTP_2,
                "http://f.ns.siesta.local/h2",
                &[],
            ),
            (Method::GET, Version::HTTP_2, "/nothing", &[]),
            (
                Method::GET,
                Version::HTTP_2,
                "http://gateway.example/fn/ns/f/p",
                &[],
            ),
            (
                Method::GET,
                Version::HTTP_2,
                "http://gateway.example/q",
                &[],
            ),
            (Method::GET, Version::HTTP_2, "http://[::1]:8080/v6", &[]),
        ];
        let mut memo = HostMemo::default();
        let (mut remembered, mut remembered_h2) = (0, 0);
        for (method, version, target, hosts) in cases {
            let uri: Uri = target.parse().unwrap();
            let hosts: Vec<HeaderValue> = hosts
                .iter()
                .map(|h| HeaderValue::from_str(h).unwrap())
                .collect();
            let hit = named(method, *version, &uri, hosts.first(), hosts.get(1))
                .is_some_and(|n| memo.key_for(&n).is_some());
            let key_before = memo.key.clone();
            let with = resolve_remembering(method, *version, &uri, &hosts, D, &mut memo);
            let without = resolve(method, *version, &uri, &hosts, D);
            assert_eq!(with, without, "{method} {version:?} {target} {hosts:?}");
            if hit && let (Ok(t), Some(k)) = (&with, &key_before) {
                // Answered by the memo: its own key, not one made anew.
                assert!(Arc::ptr_eq(&t.key, k), "{method} {target} {hosts:?}");
            }
            remembered += usize::from(hit);
            remembered_h2 += usize::from(hit && hosts.is_empty());
        }
        assert!(remembered >= 9, "only {remembered} answered from the memo");
        assert!(
            remembered_h2 >= 3,
            "only {remembered_h2} answered from an HTTP/2 authority"
        );
    }

    #[test]
    fn every_refusal_is_a_400_with_a_message_except_404_and_405() {
        let all = [
            Refusal::Connect,
            Refusal::MultipleHosts,
            Refusal::InvalidHost {
                value: "x".into(),
                why: "y",
            },
            Refusal::InvalidAuthority {
                value: "x".into(),
                why: "y",
            },
            Refusal::MissingHost { http2: false },
            Refusal::MissingHost { http2: true },
            Refusal::HostMismatch {
                host: "a".into(),
                authority: "b".into(),
            },
            Refusal::Scheme("ftp".into()),
            Refusal::AuthorityForm,
            Refusal::Asterisk,
            Refusal::NotOriginForm,
            Refusal::Path {
                path: "/..".into(),
                error: PathError::AboveRoot,
            },
            Refusal::NoFunction,
        ];
        for r in all {
            let code = r.status().as_u16();
            assert!(!r.to_string().is_empty());
            match r {
                Refusal::NoFunction => assert_eq!(code, 404),
                Refusal::Connect => assert_eq!(code, 405),
                _ => {
                    assert_eq!(code, 400, "{r}");
                    assert_eq!(r.reject(), Reject::BadRequest);
                }
            }
        }
    }
}
