//! Fuzz the PGM decoder: `PacketRepr::parse`, the `Packet` view, `OptionIter` and the
//! IP/UDP framing helpers. Whatever decodes must re-encode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    check::check(data);
});
