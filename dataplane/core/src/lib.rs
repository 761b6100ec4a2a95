//! xpgm-core: the sans-IO heart of xpgm.
//!
//! Nothing in this crate touches a socket, a thread, a clock or the operating system's
//! randomness. Time ([`time::Instant`]) and randomness ([`rng::Rng`], seeded by the caller)
//! are passed in, so every run — in the simulator, in tests, on a real NIC — replays exactly.
//!
//! * [`wire`]: the RFC 3208 codec (zero-copy views, owned representations, checksum,
//!   raw-IP and UDP-encapsulated framing).
//! * [`source`]: the sending side (transmit window, SPM, NCF, RDATA).
//! * [`receiver`]: the receiving side (loss detection, NAK back-off, repair, delivery).
//! * [`fec`]: Reed–Solomon parity (RFC 3208 section 11), byte-compatible with OpenPGM.
//! * [`config`]: every timer and window, with documented defaults.
//! * [`line`]: A/B lines (one session on several networks at once).
#![forbid(unsafe_code)]

pub mod config;
pub mod fec;
pub mod line;
pub mod receiver;
pub mod rng;
pub mod seq;
pub mod source;
pub mod time;
pub mod wire;

pub use line::{LineSet, MAX_LINES};
pub use seq::Sqn;
pub use time::Instant;
