//! RFC 3208 wire codec.
//!
//! Contract (as smoltcp's `wire`): any byte string given to [`PacketRepr::parse`] yields a
//! value or a typed [`Error`], never a panic. Views check lengths once in `new_checked`
//! so their getters cannot panic. Emitting writes the PGM checksum.
//!
//! Where RFC 3208's text and deployed implementations (OpenPGM, Wireshark) disagree we
//! interoperate with the implementations; every such case is listed in `docs/wire.md`.
//!
//! The engine-facing API is [`PacketRepr`] (borrowed payload, no allocation) with
//! [`PacketRepr::parse`], [`PacketRepr::buffer_len`] and [`PacketRepr::emit`].

mod repr;

pub use repr::*;

/// IP protocol number assigned to PGM.
pub const IP_PROTOCOL: u8 = 113;
/// OpenPGM's default UDP encapsulation port for unicast (upstream) packets.
pub const DEFAULT_UDP_ENCAP_UCAST_PORT: u16 = 3055;
/// OpenPGM's default UDP encapsulation port for multicast (downstream) packets.
pub const DEFAULT_UDP_ENCAP_MCAST_PORT: u16 = 3056;
/// OpenPGM's default data-destination port.
pub const DEFAULT_DATA_PORT: u16 = 7500;
/// Length of the fixed PGM header.
pub const HEADER_LEN: usize = 16;
/// Most sequence numbers one OPT_NAK_LIST can carry (RFC 3208 9.3: 62).
pub const MAX_NAK_LIST: usize = 62;
/// Most unknown options whose types are reported per packet (the rest are counted).
pub const MAX_UNKNOWN_REPORTED: usize = 4;
