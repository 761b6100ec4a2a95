//! Application framings carried inside PGM APDUs.
//!
//! - [`zmq`]: ZeroMQ's `pgm://` / `epgm://` framing, so that xpgm talks to ZeroMQ
//!   publishers and subscribers (see docs/interop.md).

pub mod zmq;
