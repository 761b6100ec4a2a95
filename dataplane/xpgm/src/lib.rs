//! xpgm: the data plane an application embeds — the PGM protocol core
//! ([`xpgm_core`]) behind a transport, run by a worker thread.
//!
//! * [`Publisher`]: `send(&[u8])` with back-pressure (blocks up to a timeout, or
//!   `try_send` returns [`Error::WouldBlock`]); never a silent drop.
//! * [`Subscriber`]: blocking [`Subscriber::recv`], non-blocking
//!   [`Subscriber::try_recv`] and [`Subscriber::recv_batch`] of [`Delivery`] items:
//!   data, unrecoverable loss, session end.
//! * [`transport`]: where packets go. [`TransportKind::Socket`] (raw IP protocol 113
//!   or UDP encapsulation over kernel sockets) needs nothing else;
//!   [`TransportKind::Xdp`] is AF_XDP (`xpgm-afxdp`) registered with a running xpgmd.
//! * [`worker`]: the loop that owns a transport and an engine (one thread per
//!   publisher or subscriber).
//!
//! Application thread and worker are connected by [`xpgm_ring`] rings (see
//! `docs/library.md`).

pub mod delivery;
mod error;
pub mod framing;
pub mod publisher;
pub mod subscriber;
pub mod transport;
pub mod worker;

pub use delivery::Delivery;
pub use error::Error;
pub use publisher::{Publisher, PublisherConfig, PublisherStats};
pub use subscriber::{
    CloseReport, LineCounters, PeerAccount, Subscriber, SubscriberConfig, SubscriberStats,
};
pub use transport::{SessionConfig, TransportKind};
pub use worker::Idle;
pub use xpgm_core as core;
