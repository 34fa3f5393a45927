//! Which function a request is for: by Host `NAME.NAMESPACE.DOMAIN`, or by the
//! path prefix `/fn/NAMESPACE/NAME/` (stripped before forwarding).
//!
//! Pure and total: every input, however malformed, gives `Some` or `None`.

use std::borrow::Cow;

use siesta_api::names::{is_dns_label, is_dns_subdomain};

/// A Function's identity, shared with the controller.
pub use siesta_api::names::FunctionKey;

/// Where a request goes: the function, and the path and query to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route<'a> {
    pub key: FunctionKey,
    /// Always starts with `/`; the one given, unless routed by path.
    pub path_and_query: Cow<'a, str>,
    /// `/fn/NAMESPACE/NAME` as it was stripped, when routed by path.
    pub prefix: Option<String>,
}

const PATH_PREFIX: &str = "/fn/";

/// Routes by Host first (the path is kept as it is), then by path prefix.
/// `host` is the Host header or the request's authority, port allowed.
pub fn route<'a>(host: Option<&str>, path_and_query: &'a str, domain: &str) -> Option<Route<'a>> {
    let path_and_query = if path_and_query.is_empty() {
        "/"
    } else {
        path_and_query
    };
    if let Some(key) = host.and_then(|h| key_from_host(h, domain)) {
        if path_and_query.starts_with('/') {
            return Some(Route {
                key,
                path_and_query: Cow::Borrowed(path_and_query),
                prefix: None,
            });
        }
        // An absolute-form or `*` target under a function host: nothing sane to forward.
        return None;
    }
    route_by_path(path_and_query)
}

/// `NAME.NAMESPACE.DOMAIN[:port]` -> key; case-insensitive, a trailing dot allowed.
pub fn key_from_host(host: &str, domain: &str) -> Option<FunctionKey> {
    let host = strip_port(host.trim());
    let host = host.strip_suffix('.').unwrap_or(host);
    let domain = domain.trim_matches('.');
    if domain.is_empty() {
        return None;
    }
    // Compared without case and without a copy: the key's own strings are
    // the only ones made.
    let cut = host.len().checked_sub(domain.len())?;
    let (prefix, suffix) = (host.get(..cut)?, host.get(cut..)?);
    if !suffix.eq_ignore_ascii_case(domain) {
        return None;
    }
    let (name, namespace) = prefix.strip_suffix('.')?.split_once('.')?;
    let key = FunctionKey::new(namespace.to_ascii_lowercase(), name.to_ascii_lowercase());
    (is_dns_label(&key.name) && is_dns_label(&key.namespace)).then_some(key)
}

fn route_by_path(path_and_query: &str) -> Option<Route<'static>> {
    let (path, query) = match path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_and_query, None),
    };
    let rest = path.strip_prefix(PATH_PREFIX)?;
    let (namespace, rest) = rest.split_once('/')?;
    let (name, tail) = match rest.split_once('/') {
        Some((name, tail)) => (name, tail),
        None => (rest, ""),
    };
    if !is_dns_label(namespace) || !is_dns_subdomain(name) {
        return None;
    }
    let mut rewritten = String::with_capacity(tail.len() + 2 + query.map_or(0, str::len));
    rewritten.push('/');
    rewritten.push_str(tail);
    if let Some(q) = query {
        rewritten.push('?');
        rewritten.push_str(q);
    }
    Some(Route {
        key: FunctionKey::new(namespace, name),
        path_and_query: Cow::Owned(rewritten),
        prefix: Some(format!("{PATH_PREFIX}{namespace}/{name}")),
    })
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal never names a function; keep it whole so it fails to match.
        return host;
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "siesta.local";

    fn r(host: Option<&str>, pq: &str) -> Option<(String, String, String)> {
        route(host, pq, D).map(|r| (r.key.namespace, r.key.name, r.path_and_query.into_owned()))
    }

    fn some(ns: &str, name: &str, pq: &str) -> Option<(String, String, String)> {
        Some((ns.into(), name.into(), pq.into()))
    }

    #[test]
    fn host_routes_and_keeps_the_path() {
        assert_eq!(
            r(Some("hello.default.siesta.local"), "/a/b?x=1"),
            some("default", "hello", "/a/b?x=1")
        );
        assert_eq!(
            r(Some("hello.default.siesta.local:8080"), "/"),
            some("default", "hello", "/")
        );
        assert_eq!(
            r(Some("HELLO.Default.Siesta.Local."), "/"),
            some("default", "hello", "/")
        );
        assert_eq!(
            r(Some("hello.default.siesta.local"), ""),
            some("default", "hello", "/")
        );
    }

    #[test]
    fn host_must_have_exactly_name_and_namespace_under_the_domain() {
        assert_eq!(r(Some("default.siesta.local"), "/"), None);
        assert_eq!(r(Some("a.b.c.siesta.local"), "/"), None);
        assert_eq!(r(Some("hello.default.notsiesta.local"), "/"), None);
        assert_eq!(r(Some("hello.defaultsiesta.local"), "/"), None);
        assert_eq!(r(Some("siesta.local"), "/"), None);
        assert_eq!(r(Some(".default.siesta.local"), "/"), None);
        assert_eq!(r(Some("-x.default.siesta.local"), "/"), None);
        assert_eq!(r(Some("hello.default.siesta.local:80x"), "/"), None);
        assert_eq!(r(Some("[::1]:80"), "/"), None);
    }

    #[test]
    fn a_custom_domain_is_honoured() {
        let got = route(Some("f.ns.fn.example.com"), "/", "fn.example.com");
        assert_eq!(got.map(|r| r.key), Some(FunctionKey::new("ns", "f")));
        assert_eq!(
            route(Some("f.ns.siesta.local"), "/", "fn.example.com"),
            None
        );
        assert_eq!(route(Some("f.ns."), "/", ""), None);
    }

    #[test]
    fn path_routes_and_strips_the_prefix() {
        assert_eq!(
            r(None, "/fn/default/hello/a/b?x=1"),
            some("default", "hello", "/a/b?x=1")
        );
        assert_eq!(r(None, "/fn/default/hello"), some("default", "hello", "/"));
        assert_eq!(r(None, "/fn/default/hello/"), some("default", "hello", "/"));
        assert_eq!(
            r(None, "/fn/default/hello?q"),
            some("default", "hello", "/?q")
        );
        assert_eq!(
            r(None, "/fn/default/hello//x"),
            some("default", "hello", "//x")
        );
        assert_eq!(
            r(Some("localhost:8080"), "/fn/ns/my.fn/x"),
            some("ns", "my.fn", "/x")
        );
    }

    #[test]
    fn path_without_a_full_prefix_is_not_routed() {
        for pq in [
            "/",
            "/fn",
            "/fn/",
            "/fn/default",
            "/fn/default/",
            "/fn//hello",
            "/fnx/default/hello",
            "/FN/default/hello",
            "/fn/Default/hello",
            "/fn/default/he%6clo",
            "fn/default/hello",
            "*",
            "http://x/fn/a/b",
            "?/fn/a/b",
        ] {
            assert_eq!(r(None, pq), None, "{pq}");
        }
    }

    #[test]
    fn host_wins_over_path() {
        assert_eq!(
            r(Some("a.b.siesta.local"), "/fn/c/d/x"),
            some("b", "a", "/fn/c/d/x")
        );
    }

    #[test]
    fn never_panics_on_odd_input() {
        let samples = [
            "",
            "/",
            ":",
            "::",
            "?",
            "/?",
            "/fn/?/?",
            "/fn/a/b?",
            "ä.ö.siesta.local",
            "\u{0}",
            ".",
            "..",
            "...siesta.local",
            "a..siesta.local",
            "a.b.siesta.local:",
            "/fn/ä/b",
            "/fn/a/ä",
            "%",
            "/fn/a/b%",
            "[",
            "[::1",
            "siesta.local.siesta.local",
        ];
        for h in samples {
            for p in samples {
                let _ = route(Some(h), p, D);
                let _ = route(None, p, D);
                let _ = route(Some(h), p, h);
            }
        }
        // A cheap deterministic fuzz over a small alphabet that hits the separators.
        let alphabet: Vec<char> = "af/.-:?n0ä[]".chars().collect();
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(seed % 24) {
                seed = seed
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                s.push(alphabet[(seed >> 33) as usize % alphabet.len()]);
            }
            let _ = route(Some(&s), &s, D);
            let _ = route(None, &format!("/fn/{s}"), D);
            let _ = route(Some(&format!("{s}.siesta.local")), "/", D);
        }
    }

    #[test]
    fn long_labels_are_refused() {
        let long = "a".repeat(64);
        assert_eq!(r(Some(&format!("{long}.ns.siesta.local")), "/"), None);
        assert_eq!(r(None, &format!("/fn/{long}/x")), None);
        let ok = "a".repeat(63);
        assert!(r(None, &format!("/fn/{ok}/x")).is_some());
    }
}
