//! What routing must never do, whatever comes in: checked by the fuzzer
//! (`tests/fuzz/fuzz_targets/route.rs`), the corpus replay test and the generated
//! request targets of the unit tests. Panics when an invariant breaks.
#![doc(hidden)]

use http::{HeaderValue, Method, Uri, Version};
use siesta_api::names::{is_dns_label, is_dns_subdomain};

use crate::normalize;
use crate::route::{self, FunctionKey, key_from_host};
use crate::target;

/// Input: host, request target and domain separated by 0xFF bytes (lossy
/// UTF-8; the domain defaults to `siesta.local`).
pub fn check(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0xFF);
    let host = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let domain = parts
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or("siesta.local".into());
    check_router(&host, &path, &domain);
    check_target(&host, &path, &domain);
    check_fast_path_head(&host, &path);
}

/// The HTTP/1 fast path's reading of a head made of them: all of it or
/// none of it, and what it takes is what the head says.
fn check_fast_path_head(host: &str, path: &str) {
    let head = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut buf = bytes::BytesMut::from(head.as_bytes());
    use crate::h1_server::request_head::{Taken, take};
    let Taken::Plain(req) = take(&mut buf, 100) else {
        assert_eq!(&buf[..], head.as_bytes(), "left as it was");
        return;
    };
    assert!(buf.is_empty(), "the whole head was taken: {head:?}");
    assert_eq!(req.method(), Method::GET);
    assert_eq!(req.version(), Version::HTTP_11);
    // With no byte that could end a line or a field early, it is the one
    // request the head was written as, its target as hyper's parser reads it.
    let plain = |s: &str, space: bool| {
        !s.bytes()
            .any(|b| b < 0x20 || b == 0x7f || (!space && b == b' '))
    };
    if plain(host, true) && plain(path, false) {
        let expected = Uri::try_from(path).ok();
        assert_eq!(
            req.uri().path_and_query(),
            expected.as_ref().and_then(Uri::path_and_query),
            "{head:?}"
        );
        let hosts: Vec<_> = req.headers().get_all("host").iter().collect();
        assert_eq!(hosts.len(), 1, "{head:?}");
        assert_eq!(
            hosts[0].as_bytes(),
            host.trim_matches(' ').as_bytes(),
            "{head:?}"
        );
    }
}

/// The router alone, on a path taken as already resolved.
fn check_router(host: &str, path: &str, domain: &str) {
    for h in [Some(host), None] {
        if let Some(r) = route::route(h, path, domain) {
            // What a routed request may look like, whatever came in.
            assert!(r.path_and_query.starts_with('/'), "{r:?}");
            assert!(!r.key.namespace.is_empty() && r.key.namespace.len() <= 63);
            assert!(!r.key.name.is_empty() && r.key.name.len() <= 253);
            for c in r.key.namespace.chars().chain(r.key.name.chars()) {
                assert!(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
            }
            assert!(!r.key.namespace.contains('.'), "{r:?}");
            assert!(!r.key.name.split('.').any(str::is_empty), "{r:?}");
        }
    }
    if let Some(k) = key_from_host(host, domain) {
        assert!(!k.name.contains('.') && !k.namespace.contains('.'), "{k:?}");
    }
}

/// The whole decision, as the proxy makes it: the target parsed as hyper
/// parses it, with the host as the only Host header or with none.
fn check_target(host: &str, raw_target: &str, domain: &str) {
    // hyper answers 400 itself to a target the URI parser refuses.
    let Ok(uri) = Uri::try_from(raw_target) else {
        return;
    };
    let header = HeaderValue::from_str(host).ok();
    for version in [Version::HTTP_11, Version::HTTP_10, Version::HTTP_2] {
        for hosts in [header.as_slice(), &[]] {
            // A connection whose last request named a function by this
            // Host, or over HTTP/2 by this target's authority, answers as
            // `resolve` does.
            let root = Uri::from_static("/");
            let primes: [(Version, &Uri, &[HeaderValue]); 2] = [
                (Version::HTTP_11, &root, hosts),
                (Version::HTTP_2, &uri, &[]),
            ];
            for (prime_version, prime_uri, prime_hosts) in primes {
                let mut memo = target::HostMemo::default();
                let _ = target::resolve_remembering(
                    &Method::GET,
                    prime_version,
                    prime_uri,
                    prime_hosts,
                    domain,
                    &mut memo,
                );
                assert_eq!(
                    target::resolve_remembering(
                        &Method::GET,
                        version,
                        &uri,
                        hosts,
                        domain,
                        &mut memo
                    ),
                    target::resolve(&Method::GET, version, &uri, hosts, domain),
                    "{version:?} Host {hosts:?} target {raw_target:?}"
                );
            }
            let Ok(t) = target::resolve(&Method::GET, version, &uri, hosts, domain) else {
                continue;
            };
            let ctx = format!("{version:?} Host {hosts:?} target {raw_target:?} -> {t:?}");
            // The forwarded path has nothing left to resolve.
            let fwd_path = t.path_and_query.path();
            assert!(fwd_path.starts_with('/'), "{ctx}");
            assert!(
                !fwd_path.split('/').any(normalize::is_dot_segment),
                "a dot segment was forwarded: {ctx}"
            );
            assert_eq!(
                normalize::resolve_path(fwd_path).as_deref(),
                Ok(fwd_path),
                "the forwarded path resolves to something else: {ctx}"
            );
            // The authority used is the target's own when it has one.
            if let Some(a) = uri.authority() {
                assert_eq!(
                    t.authority.as_ref().and_then(|v| v.to_str().ok()),
                    Some(a.as_str()),
                    "{ctx}"
                );
                if let Some(h) = hosts.first().and_then(|h| h.to_str().ok()) {
                    assert!(
                        bare_host(h) == bare_host(a.as_str()),
                        "Host and authority name different hosts: {ctx}"
                    );
                }
            }
            let named_by_authority = t
                .authority
                .as_ref()
                .and_then(|a| a.to_str().ok())
                .and_then(|a| key_from_host(a, domain));
            match &t.prefix {
                None => {
                    // Host routing: the authority named exactly this function.
                    assert_eq!(named_by_authority.as_ref(), Some(&*t.key), "{ctx}");
                }
                Some(prefix) => {
                    assert_eq!(named_by_authority, None, "the Host must win: {ctx}");
                    assert_eq!(
                        prefix,
                        &format!("/fn/{}/{}", t.key.namespace, t.key.name),
                        "{ctx}"
                    );
                    // Putting the prefix back routes to the same place.
                    let put_back = format!("{prefix}{}", t.path_and_query);
                    let back = route::route(None, &put_back, domain)
                        .unwrap_or_else(|| panic!("the prefix put back does not route: {ctx}"));
                    assert_eq!(
                        (&back.key, &*back.path_and_query),
                        (&*t.key, t.path_and_query.as_str()),
                        "{ctx}"
                    );
                    // A reader that decodes everything (nginx-like) names the
                    // same function, or none.
                    if let Some(k) = liberal_path_key(uri.path()) {
                        assert_eq!(
                            k, *t.key,
                            "a decoding proxy would pick another function: {ctx}"
                        );
                    }
                }
            }
        }
    }
}

/// Host without port or trailing dot, lower case.
fn bare_host(a: &str) -> String {
    let h = if a.starts_with('[') {
        a.split_inclusive(']').next().unwrap_or(a)
    } else {
        a.rsplit_once(':').map_or(a, |(h, _)| h)
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

/// The function a liberal reader would take the path to name: every `%XX`
/// decoded, `\` read as `/`, `;params` cut, slashes merged, dot segments
/// resolved (clamped at the root). Written apart from `normalize` on
/// purpose, to check it against another reading.
pub fn liberal_path_key(path: &str) -> Option<FunctionKey> {
    let b = path.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| hex(*c)),
                b.get(i + 2).and_then(|c| hex(*c)),
            )
        {
            let byte = (h * 16 + l) as u8;
            decoded.push(if byte == b'\\' { b'/' } else { byte });
            i += 3;
            continue;
        }
        decoded.push(if b[i] == b'\\' { b'/' } else { b[i] });
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded);
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = seg.split(';').next().unwrap_or(seg);
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    match out.as_slice() {
        ["fn", ns, name, ..] if is_dns_label(ns) && is_dns_subdomain(name) => {
            Some(FunctionKey::new(*ns, *name))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_liberal_reader_decodes_merges_and_resolves() {
        let k = |p: &str| liberal_path_key(p).map(|k| k.to_string());
        assert_eq!(k("/fn/ns/f/x").as_deref(), Some("ns/f"));
        assert_eq!(k("//fn//ns/%66/x").as_deref(), Some("ns/f"));
        assert_eq!(k("/fn/ns/f/..%2fg/x").as_deref(), Some("ns/g"));
        assert_eq!(k("/fn/ns/f\\..\\g").as_deref(), Some("ns/g"));
        assert_eq!(k("/fn/ns/f/..;/g").as_deref(), Some("ns/g"));
        assert_eq!(k("/fn/ns/f//../g").as_deref(), Some("ns/g"));
        assert_eq!(k("/x"), None);
    }

    /// Many request targets over an alphabet of the characters that matter
    /// (separators, dots and their escapes, the prefix's words), under
    /// Hosts that name a function, another one, or none.
    #[test]
    fn generated_request_targets_keep_every_invariant() {
        const TOKENS: &[&str] = &[
            "/", "/", "/", ".", "..", "%2e", "%2E", "%2f", "%2F", "%5c", "%5C", "\\", "?", "#",
            "fn", "ns", "f", "g", ";", "%", "2", "e", "a", "//", "fn/ns/f", "fn/ns/g",
        ];
        const STARTS: &[&str] = &[
            "/",
            "/fn/ns/f/",
            "/fn/ns/g/",
            "/fn/",
            "http://f.ns.siesta.local/",
            "http://g.ns.siesta.local/",
            "http://localhost:8080/fn/ns/f/",
        ];
        const HOSTS: &[&str] = &[
            "f.ns.siesta.local",
            "g.ns.siesta.local",
            "F.NS.Siesta.Local.:80",
            "localhost:8080",
            "evil.com",
            "f.ns.siesta.local.evil.com",
            "u@f.ns.siesta.local",
        ];
        let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |n: usize| {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (seed >> 33) as usize % n
        };
        let (mut by_host, mut by_path, mut refused) = (0, 0, 0);
        for _ in 0..60_000 {
            let mut t = String::from(STARTS[next(STARTS.len())]);
            for _ in 0..next(10) {
                t.push_str(TOKENS[next(TOKENS.len())]);
            }
            let host = HOSTS[next(HOSTS.len())];
            let mut data = host.as_bytes().to_vec();
            data.push(0xFF);
            data.extend_from_slice(t.as_bytes());
            check(&data);
            // Tally what the HTTP/1.1 request with that Host would get.
            let outcome = Uri::try_from(t.as_str()).ok().map(|uri| {
                let h = [HeaderValue::from_static(host)];
                target::resolve(&Method::GET, Version::HTTP_11, &uri, &h, "siesta.local")
            });
            match outcome {
                Some(Ok(r)) if r.prefix.is_some() => by_path += 1,
                Some(Ok(_)) => by_host += 1,
                _ => refused += 1,
            }
        }
        eprintln!("generated targets: by_host={by_host} by_path={by_path} refused={refused}");
        // The generator must reach every outcome, or the test proves little.
        assert!(
            by_host > 5_000 && by_path > 2_000 && refused > 5_000,
            "{by_host} {by_path} {refused}"
        );
    }

    #[test]
    fn corpus_style_inputs_pass() {
        for (h, p) in [
            ("f.ns.siesta.local", "/a/../b"),
            ("localhost", "/fn/ns/f/../g/x"),
            ("localhost", "http://f.ns.siesta.local/x"),
            ("f.ns.siesta.local", "http://f.ns.siesta.local:80/../x"),
        ] {
            let mut data = h.as_bytes().to_vec();
            data.push(0xFF);
            data.extend_from_slice(p.as_bytes());
            check(&data);
        }
    }
}
