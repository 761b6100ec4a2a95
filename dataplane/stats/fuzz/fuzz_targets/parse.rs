//! Fuzz the stats-file parser (`xpgm_stats::parse`) and the Prometheus renderer.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
