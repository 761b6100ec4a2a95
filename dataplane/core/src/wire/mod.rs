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

pub mod checksum;
mod codec;
mod cursor;
pub mod framing;
mod options;
mod packet;
mod repr;

pub use checksum::checksum;
pub use options::{OptionIter, RawOption};
pub use packet::Packet;
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
/// NLA address family indicator for IPv4 (RFC 1700).
pub const AFI_IP: u16 = 1;
/// NLA address family indicator for IPv6 (RFC 1700).
pub const AFI_IP6: u16 = 2;

/// Packet type codes (the header's type byte).
pub mod ty {
    /// SPM.
    pub const SPM: u8 = 0x00;
    /// POLL.
    pub const POLL: u8 = 0x01;
    /// POLR.
    pub const POLR: u8 = 0x02;
    /// ODATA.
    pub const ODATA: u8 = 0x04;
    /// RDATA.
    pub const RDATA: u8 = 0x05;
    /// NAK.
    pub const NAK: u8 = 0x08;
    /// NNAK.
    pub const NNAK: u8 = 0x09;
    /// NCF.
    pub const NCF: u8 = 0x0a;
    /// SPMR.
    pub const SPMR: u8 = 0x0c;
    /// PGMCC ACK as OpenPGM and Wireshark send it.
    pub const ACK: u8 = 0x0d;
    /// PGMCC ACK as the PGMCC draft numbers it; accepted on decode only.
    pub const ACK_ALT: u8 = 0x0b;
}

/// Bits of the header's options byte, as OpenPGM and Wireshark place them (see
/// `docs/wire.md`: RFC 3208 numbers them from the other end).
pub mod flags {
    /// One or more option extensions are present.
    pub const OPT_PRESENT: u8 = 0x01;
    /// One or more options are network-significant.
    pub const OPT_NETWORK: u8 = 0x02;
    /// Parity packet for a transmission group of variable-sized packets.
    pub const OPT_VAR_PKTLEN: u8 = 0x40;
    /// Parity packet.
    pub const OPT_PARITY: u8 = 0x80;
}

/// Option type codes and option-header bits.
pub mod opt {
    /// OPT_LENGTH (always first; carries the total options length).
    pub const LENGTH: u8 = 0x00;
    /// OPT_FRAGMENT.
    pub const FRAGMENT: u8 = 0x01;
    /// OPT_NAK_LIST.
    pub const NAK_LIST: u8 = 0x02;
    /// OPT_JOIN.
    pub const JOIN: u8 = 0x03;
    /// OPT_NAK_BO_IVL.
    pub const NAK_BO_IVL: u8 = 0x04;
    /// OPT_NAK_BO_RNG.
    pub const NAK_BO_RNG: u8 = 0x05;
    /// OPT_REDIRECT.
    pub const REDIRECT: u8 = 0x07;
    /// OPT_PARITY_PRM.
    pub const PARITY_PRM: u8 = 0x08;
    /// OPT_PARITY_GRP.
    pub const PARITY_GRP: u8 = 0x09;
    /// OPT_CURR_TGSIZE.
    pub const CURR_TGSIZE: u8 = 0x0a;
    /// OPT_NBR_UNREACH.
    pub const NBR_UNREACH: u8 = 0x0b;
    /// OPT_PATH_NLA.
    pub const PATH_NLA: u8 = 0x0c;
    /// OPT_SYN.
    pub const SYN: u8 = 0x0d;
    /// OPT_FIN.
    pub const FIN: u8 = 0x0e;
    /// OPT_RST.
    pub const RST: u8 = 0x0f;
    /// OPT_CR.
    pub const CR: u8 = 0x10;
    /// OPT_CRQST.
    pub const CRQST: u8 = 0x11;
    /// OpenPGM's OPT_PGMCC_DATA (not modelled: reported as unknown).
    pub const PGMCC_DATA: u8 = 0x12;
    /// OpenPGM's OPT_PGMCC_FEEDBACK (not modelled: reported as unknown).
    pub const PGMCC_FEEDBACK: u8 = 0x13;
    /// OPT_INVALID: an option a network element invalidated.
    pub const INVALID: u8 = 0x7f;
    /// Mask of the type in the option's first byte.
    pub const TYPE_MASK: u8 = 0x7f;
    /// E bit: this is the last option.
    pub const END: u8 = 0x80;
    /// Option-extension byte: OPX mask (OpenPGM layout).
    pub const OPX_MASK: u8 = 0x03;
    /// OPX: an unknown option may be ignored.
    pub const OPX_IGNORE: u8 = 0x00;
    /// OPX: an unknown option must be invalidated by network elements.
    pub const OPX_INVALIDATE: u8 = 0x01;
    /// OPX: a packet with this option, when unknown, must be discarded.
    pub const OPX_DISCARD: u8 = 0x02;
    /// Option-extension byte: F bit (the option is FEC-encoded in parity packets).
    pub const F_BIT: u8 = 0x08;
    /// Option-extension byte: U bit (the option is not encoded in parity packets).
    pub const U_BIT: u8 = 0x80;
    /// OPT_PARITY_PRM: pro-active parity (OpenPGM bit position).
    pub const PARITY_PRM_PRO: u8 = 0x01;
    /// OPT_PARITY_PRM: on-demand parity (OpenPGM bit position).
    pub const PARITY_PRM_OND: u8 = 0x02;
    /// OPT_RST: N bit (the reset was generated by a network element).
    pub const RST_N: u8 = 0x80;
}
