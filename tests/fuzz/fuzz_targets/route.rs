//! The activator's router and request-target checks: any Host and request
//! target, under any domain. Input: host, target and domain separated by
//! 0xFF bytes (lossy UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| siesta_activator::invariants::check(data));
