//! xpgm: the data plane (transports around the protocol core).
pub use xpgm_core as core;
