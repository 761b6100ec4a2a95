//! xpgm's AF_XDP transport.
//!
//! * [`xsk`]: AF_XDP sockets over a memmap2 UMEM (huge pages when
//!   available), zero-copy bind with copy-mode fallback, need_wakeup,
//!   batched RX/TX, completion reclaim and fill-ring refill; frames owned
//!   through a move-only [`xsk::Frame`]. The crate's only `unsafe` code.
//! * [`frame`]: Ethernet + IPv4/IPv6 (+ UDP) headers built in place in
//!   front of the PGM packet; received frames validated before the engine
//!   sees them.
//! * [`link`]: the [`link::Link`] seam (AF_XDP socket or an in-memory hub
//!   for tests).
//! * [`worker`]: source/receiver sessions driving the `xpgm-core` engines
//!   between `xpgm-ring` rings and a link; pinned worker threads.
//! * [`register`]: handing the sockets to xpgmd (`register`, SCM_RIGHTS).
//! * [`session`]: [`session::XdpSender`] / [`session::XdpReceiver`], what
//!   applications and `xpgm --transport xdp` use.
//! * [`port`]: [`port::XdpPort`], a registered socket as "PGM packets in and
//!   out", behind the `xpgm` crate's `--transport xdp`.
//! * [`iface`]: interface MAC, MTU and addresses.
//!
//! See docs/afxdp.md.

pub mod frame;
pub mod iface;
pub mod link;
pub mod port;
pub mod register;
pub mod session;
pub mod worker;
pub mod xsk;
