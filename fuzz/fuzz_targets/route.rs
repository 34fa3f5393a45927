//! The activator's router: any Host and request target, under any domain.
//! Input: host, path and domain separated by 0xFF bytes (lossy UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use siesta_activator::route::{key_from_host, route};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|b| *b == 0xFF);
    let host = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let path = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let domain = parts
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or("siesta.local".into());
    for h in [Some(host.as_ref()), None] {
        if let Some(r) = route(h, &path, &domain) {
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
    if let Some(k) = key_from_host(&host, &domain) {
        assert!(!k.name.contains('.') && !k.namespace.contains('.'), "{k:?}");
    }
});
