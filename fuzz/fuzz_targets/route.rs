//! The activator's router: any Host and request target, under any domain.
//! Input: host, path and domain separated by 0xFF bytes (lossy UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| siesta_activator::route::check_invariants(data));
