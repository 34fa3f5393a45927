//! The activator's duration flags (`--drain-timeout` and friends).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    if let Ok(d) = siesta_activator::parse_duration(&s) {
        // Whatever parses is a real, finite duration that formats back.
        let _ = format!("{d:?}");
    }
});
