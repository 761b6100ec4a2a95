//! Owned (borrowed-payload) representations of every PGM packet.
//!
//! These types are the contract between the codec and the engines. Fields may be added;
//! the ones here are relied on by `source` and `receiver`.

use core::net::{Ipv4Addr, Ipv6Addr};

use crate::seq::Sqn;

/// Everything that can be wrong with a packet. Small and `Copy` so parse errors cost
/// nothing on the receive path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// Shorter than its headers or declared lengths say.
    Truncated,
    /// The PGM checksum does not match.
    BadChecksum,
    /// A declared length (TSDU length, OPT_LENGTH, an option's length) is inconsistent.
    BadLength,
    /// A packet type this codec does not know.
    UnknownType(u8),
    /// An NLA address family other than 1 (IPv4) or 2 (IPv6).
    BadAfi(u16),
    /// An option is malformed (the option type is given).
    BadOption(u8),
    /// Options-present flag and options area disagree, or OPT_LENGTH is not first.
    BadOptions,
    /// The output buffer is too small for `emit`.
    BufferTooSmall,
    /// The representation cannot be encoded (e.g. a NAK list longer than 62).
    Unencodable,
    /// An option of unknown type whose OPX bits say "discard the packet" (the option
    /// type is given).
    UnknownOptionDiscard(u8),
    /// Framing: an IP packet that does not carry PGM under the configured framing
    /// (wrong IP version, protocol or UDP port).
    NotPgm,
    /// Framing: an IP fragment (PGM is parsed from whole packets only).
    Fragmented,
    /// Framing: the IPv4 header checksum does not match.
    BadIpChecksum,
    /// Framing: the UDP checksum does not match and the PGM packet inside carries no
    /// checksum that does (see [`crate::wire::framing`]).
    BadUdpChecksum,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Truncated => write!(f, "packet truncated"),
            Error::BadChecksum => write!(f, "bad PGM checksum"),
            Error::BadLength => write!(f, "inconsistent length field"),
            Error::UnknownType(t) => write!(f, "unknown PGM packet type {t:#04x}"),
            Error::BadAfi(a) => write!(f, "unsupported NLA address family {a}"),
            Error::BadOption(t) => write!(f, "malformed option {t:#04x}"),
            Error::BadOptions => write!(f, "malformed options area"),
            Error::BufferTooSmall => write!(f, "output buffer too small"),
            Error::Unencodable => write!(f, "representation cannot be encoded"),
            Error::NotPgm => write!(f, "not a PGM packet under this framing"),
            Error::Fragmented => write!(f, "IP fragment"),
            Error::BadIpChecksum => write!(f, "bad IPv4 header checksum"),
            Error::BadUdpChecksum => {
                write!(f, "bad UDP checksum and no valid PGM checksum")
            }
            Error::UnknownOptionDiscard(t) => {
                write!(f, "unknown option {t:#04x} requires discarding the packet")
            }
        }
    }
}

impl core::error::Error for Error {}

/// Global Source Identifier (6 octets).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gsi(pub [u8; 6]);

/// Transport Session Identifier: GSI plus the source's data-source port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tsi {
    /// Global source identifier.
    pub gsi: Gsi,
    /// Source port of the session's downstream packets.
    pub sport: u16,
}

impl core::fmt::Display for Tsi {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let g = self.gsi.0;
        write!(
            f,
            "{}.{}.{}.{}.{}.{}.{}",
            g[0], g[1], g[2], g[3], g[4], g[5], self.sport
        )
    }
}

/// A TSI in its display form `g0.g1.g2.g3.g4.g5.sport` was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadTsi;

impl core::fmt::Display for BadTsi {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("a TSI is six GSI bytes and a source port, e.g. 10.20.30.40.50.60.1234")
    }
}

impl std::error::Error for BadTsi {}

impl core::str::FromStr for Tsi {
    type Err = BadTsi;

    /// Parses the [`Display`](core::fmt::Display) form: six decimal bytes and a
    /// decimal source port, separated by dots.
    fn from_str(s: &str) -> Result<Self, BadTsi> {
        let mut parts = s.split('.');
        let mut gsi = [0u8; 6];
        for b in &mut gsi {
            *b = parts.next().ok_or(BadTsi)?.parse().map_err(|_| BadTsi)?;
        }
        let sport = parts.next().ok_or(BadTsi)?.parse().map_err(|_| BadTsi)?;
        if parts.next().is_some() {
            return Err(BadTsi);
        }
        Ok(Tsi {
            gsi: Gsi(gsi),
            sport,
        })
    }
}

/// Network-layer address (RFC 3208 NLA): AFI 1 = IPv4, AFI 2 = IPv6.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Nla {
    /// IPv4 address (AFI 1).
    V4(Ipv4Addr),
    /// IPv6 address (AFI 2).
    V6(Ipv6Addr),
}

impl Default for Nla {
    fn default() -> Self {
        Nla::V4(Ipv4Addr::UNSPECIFIED)
    }
}

/// PGM packet type codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    /// Source Path Message, 0x00.
    Spm,
    /// Poll request, 0x01.
    Poll,
    /// Poll response, 0x02.
    Polr,
    /// Original data, 0x04.
    Odata,
    /// Repair data, 0x05.
    Rdata,
    /// Negative acknowledgement, 0x08.
    Nak,
    /// Null NAK, 0x09.
    Nnak,
    /// NAK confirmation, 0x0A.
    Ncf,
    /// SPM request, 0x0C.
    Spmr,
    /// PGMCC ACK (0x0D as OpenPGM and Wireshark; 0x0B accepted on decode).
    Ack,
}

impl PacketType {
    /// The type byte written on the wire.
    pub const fn code(self) -> u8 {
        use crate::wire::ty;
        match self {
            PacketType::Spm => ty::SPM,
            PacketType::Poll => ty::POLL,
            PacketType::Polr => ty::POLR,
            PacketType::Odata => ty::ODATA,
            PacketType::Rdata => ty::RDATA,
            PacketType::Nak => ty::NAK,
            PacketType::Nnak => ty::NNAK,
            PacketType::Ncf => ty::NCF,
            PacketType::Spmr => ty::SPMR,
            PacketType::Ack => ty::ACK,
        }
    }

    /// The type a wire type byte denotes (`None` for codes this codec does not know).
    pub const fn from_code(code: u8) -> Option<PacketType> {
        use crate::wire::ty;
        Some(match code {
            ty::SPM => PacketType::Spm,
            ty::POLL => PacketType::Poll,
            ty::POLR => PacketType::Polr,
            ty::ODATA => PacketType::Odata,
            ty::RDATA => PacketType::Rdata,
            ty::NAK => PacketType::Nak,
            ty::NNAK => PacketType::Nnak,
            ty::NCF => PacketType::Ncf,
            ty::SPMR => PacketType::Spmr,
            ty::ACK | ty::ACK_ALT => PacketType::Ack,
            _ => return None,
        })
    }
}

/// SPM body (RFC 3208 8.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Spm {
    /// SPM sequence number.
    pub sqn: Sqn,
    /// Trailing edge of the transmit window.
    pub trail: Sqn,
    /// Leading edge of the transmit window.
    pub lead: Sqn,
    /// Path NLA: the address NAKs are sent to.
    pub path: Nla,
}

/// POLL body (RFC 3208 14.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Poll {
    /// POLL sequence number.
    pub sqn: Sqn,
    /// Poll round.
    pub round: u16,
    /// Poll sub-type.
    pub s_type: u16,
    /// Path NLA.
    pub path: Nla,
    /// Back-off interval (microseconds).
    pub bo_ivl: u32,
    /// Random string.
    pub rand: [u8; 4],
    /// Matching bit mask.
    pub mask: u32,
}

/// POLR body (RFC 3208 14.7.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Polr {
    /// Sequence number of the POLL answered.
    pub sqn: Sqn,
    /// Round of the POLL answered.
    pub round: u16,
}

/// ODATA / RDATA body (RFC 3208 8.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Data<'a> {
    /// Data packet sequence number.
    pub sqn: Sqn,
    /// Trailing edge of the transmit window.
    pub trail: Sqn,
    /// TSDU.
    pub payload: &'a [u8],
}

/// NAK / NNAK / NCF body (RFC 3208 8.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Nak {
    /// Requested sequence number.
    pub sqn: Sqn,
    /// Unicast NLA of the source.
    pub source: Nla,
    /// Multicast group NLA.
    pub group: Nla,
}

/// PGMCC ACK body (decode only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Ack {
    /// Highest sequence number received.
    pub rx_max: Sqn,
    /// Bitmap of the 32 sequence numbers before `rx_max`.
    pub bitmap: u32,
}

/// Packet-type-specific body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// SPM.
    Spm(Spm),
    /// POLL.
    Poll(Poll),
    /// POLR.
    Polr(Polr),
    /// ODATA.
    Odata(Data<'a>),
    /// RDATA.
    Rdata(Data<'a>),
    /// NAK.
    Nak(Nak),
    /// NNAK.
    Nnak(Nak),
    /// NCF.
    Ncf(Nak),
    /// SPMR (no body).
    Spmr,
    /// PGMCC ACK (decode only: `emit` returns [`Error::Unencodable`]).
    Ack(Ack),
}

/// OPT_FRAGMENT (RFC 3208 9.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Fragment {
    /// Sequence number of the APDU's first fragment.
    pub first_sqn: Sqn,
    /// Offset of this fragment in the APDU.
    pub offset: u32,
    /// Total APDU length.
    pub apdu_len: u32,
}

/// OPT_NAK_LIST (RFC 3208 9.3): up to 62 further sequence numbers, fixed storage so that
/// parsing allocates nothing.
#[derive(Clone, Copy, Eq)]
pub struct NakList {
    len: u8,
    sqns: [Sqn; crate::wire::MAX_NAK_LIST],
}

impl Default for NakList {
    fn default() -> Self {
        NakList {
            len: 0,
            sqns: [Sqn(0); crate::wire::MAX_NAK_LIST],
        }
    }
}

/// Equality over the listed entries only (storage past `len` is not part of the value).
impl PartialEq for NakList {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl core::fmt::Debug for NakList {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl NakList {
    /// The listed sequence numbers.
    pub fn as_slice(&self) -> &[Sqn] {
        &self.sqns[..usize::from(self.len)]
    }

    /// Appends; returns false (and changes nothing) when full.
    pub fn push(&mut self, sqn: Sqn) -> bool {
        let i = usize::from(self.len);
        if i >= self.sqns.len() {
            return false;
        }
        self.sqns[i] = sqn;
        self.len += 1;
        true
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// OPT_PARITY_PRM (RFC 3208 11.1). See `docs/wire.md` for the P/O bit positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ParityPrm {
    /// Proactive parity enabled.
    pub proactive: bool,
    /// On-demand parity enabled.
    pub on_demand: bool,
    /// Transmission group size.
    pub tgs: u32,
}

/// OPT_NAK_BO_IVL (RFC 3208 16.4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NakBoIvl {
    /// Back-off interval, microseconds.
    pub ivl: u32,
    /// POLL sequence number the interval applies from.
    pub ivl_sqn: Sqn,
}

/// OPT_NAK_BO_RNG (RFC 3208 16.4.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct NakBoRng {
    /// Minimum back-off interval, microseconds.
    pub min: u32,
    /// Maximum back-off interval, microseconds.
    pub max: u32,
}

/// OPT_CR congestion report (RFC 3208 13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cr {
    /// Report flags (L/P/R bits).
    pub flags: u8,
    /// Sequence number the report refers to.
    pub lead: Sqn,
    /// Network-element loss rate.
    pub ne_worst_link: u16,
    /// Network-element path loss rate.
    pub ne_worst_path: u16,
    /// Receiver loss rate.
    pub rx_worst: u16,
    /// Number of reporters aggregated.
    pub num_reporters: u16,
    /// Address of the worst receiver.
    pub worst_receiver: Nla,
}

/// The U/N/E bits and option-extension encoding are handled by the codec; this is what
/// the packet says. Every known option is a field; unknown ones are counted and the
/// first [`crate::wire::MAX_UNKNOWN_REPORTED`] types reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Options {
    /// OPT_FRAGMENT.
    pub fragment: Option<Fragment>,
    /// OPT_NAK_LIST (empty when absent).
    pub nak_list: NakList,
    /// OPT_JOIN: minimum sequence number a late joiner may request.
    pub join: Option<Sqn>,
    /// OPT_NAK_BO_IVL.
    pub nak_bo_ivl: Option<NakBoIvl>,
    /// OPT_NAK_BO_RNG.
    pub nak_bo_rng: Option<NakBoRng>,
    /// OPT_REDIRECT: a DLR's address.
    pub redirect: Option<Nla>,
    /// OPT_SYN: first packet of the session.
    pub syn: bool,
    /// OPT_FIN: the session is ending.
    pub fin: bool,
    /// OPT_RST: the session was reset; `Some(n_bit)`.
    pub rst: Option<bool>,
    /// OPT_PARITY_PRM.
    pub parity_prm: Option<ParityPrm>,
    /// OPT_PARITY_GRP: transmission group number.
    pub parity_grp: Option<u32>,
    /// OPT_CURR_TGSIZE: actual transmission group size.
    pub curr_tgsize: Option<u32>,
    /// OPT_NBR_UNREACH.
    pub nbr_unreach: bool,
    /// OPT_PATH_NLA.
    pub path_nla: Option<Nla>,
    /// OPT_CR.
    pub cr: Option<Cr>,
    /// OPT_CRQST: flags.
    pub crqst: Option<u8>,
    /// OPT_INVALID seen (RFC 3208 9.1: the option was invalidated by a network element).
    pub invalid: bool,
    /// Number of options of unknown type that were skipped.
    pub unknown_count: u8,
    /// Types of the first skipped unknown options.
    pub unknown_types: [u8; crate::wire::MAX_UNKNOWN_REPORTED],
    /// Header options byte, parity bit (0x80): a parity (FEC) packet.
    pub parity: bool,
    /// Header options byte, variable-packet-length bit (0x40): parity for a transmission
    /// group of variable-sized packets.
    pub var_pktlen: bool,
}

/// A whole PGM packet: header fields, body and options. The payload (ODATA/RDATA) is
/// borrowed from the parsed buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketRepr<'a> {
    /// Header source port. Downstream (SPM, ODATA, RDATA, NCF, POLL): the TSI's port.
    /// Upstream (NAK, NNAK, SPMR, POLR, ACK): the data-destination port.
    pub sport: u16,
    /// Header destination port (the swap of `sport`, RFC 3208 8).
    pub dport: u16,
    /// Global source identifier of the session.
    pub gsi: Gsi,
    /// Body.
    pub body: Body<'a>,
    /// Options.
    pub options: Options,
}

impl<'a> PacketRepr<'a> {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self.body {
            Body::Spm(_) => PacketType::Spm,
            Body::Poll(_) => PacketType::Poll,
            Body::Polr(_) => PacketType::Polr,
            Body::Odata(_) => PacketType::Odata,
            Body::Rdata(_) => PacketType::Rdata,
            Body::Nak(_) => PacketType::Nak,
            Body::Nnak(_) => PacketType::Nnak,
            Body::Ncf(_) => PacketType::Ncf,
            Body::Spmr => PacketType::Spmr,
            Body::Ack(_) => PacketType::Ack,
        }
    }

    /// True for packets that flow from source to receivers.
    pub fn is_downstream(&self) -> bool {
        matches!(
            self.body,
            Body::Spm(_) | Body::Poll(_) | Body::Odata(_) | Body::Rdata(_) | Body::Ncf(_)
        )
    }

    /// The session this packet belongs to (ports un-swapped for upstream packets).
    pub fn tsi(&self) -> Tsi {
        let sport = if self.is_downstream() {
            self.sport
        } else {
            self.dport
        };
        Tsi {
            gsi: self.gsi,
            sport,
        }
    }

    /// Parses and checksum-verifies one PGM packet (starting at the PGM header).
    ///
    /// `bytes` must be exactly the PGM packet (the IP or UDP payload): the checksum
    /// covers all of it. Never panics and never allocates; see `docs/wire.md` for the
    /// error contract.
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<PacketRepr<'a>, Error> {
        crate::wire::codec::parse(bytes)
    }

    /// Parses without checking the checksum (for callers that verified it already,
    /// e.g. in hardware, and for tests).
    pub fn parse_unchecked(bytes: &'a [u8]) -> Result<PacketRepr<'a>, Error> {
        crate::wire::codec::parse_body(bytes)
    }

    /// Bytes `emit` will write.
    pub fn buffer_len(&self) -> usize {
        crate::wire::codec::buffer_len(self)
    }

    /// Writes the packet, options and checksum into `buf`; returns the length written.
    /// [`Error::BufferTooSmall`] when `buf` is shorter than [`Self::buffer_len`];
    /// [`Error::Unencodable`] for ACK (decode only) and payloads over 65535 bytes.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        crate::wire::codec::emit(self, buf)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn tsi_parses_its_display_form_and_nothing_else() {
        let t = Tsi {
            gsi: Gsi([10, 20, 30, 40, 50, 255]),
            sport: 65535,
        };
        assert_eq!(t.to_string().parse::<Tsi>(), Ok(t));
        for bad in [
            "",
            "1.2.3.4.5.6",
            "1.2.3.4.5.6.7.8",
            "1.2.3.4.5.256.7",
            "a.2.3.4.5.6.7",
            "1.2.3.4.5.6.70000",
        ] {
            assert_eq!(bad.parse::<Tsi>(), Err(BadTsi), "{bad}");
        }
    }

    use super::*;

    #[test]
    fn nak_list_equality_ignores_stale_storage() {
        let mut a = NakList::default();
        a.push(Sqn(1));
        a.push(Sqn(2));
        a.clear();
        a.push(Sqn(7));
        let mut b = NakList::default();
        b.push(Sqn(7));
        assert_eq!(a, b);
        b.push(Sqn(8));
        assert_ne!(a, b);
    }
}
