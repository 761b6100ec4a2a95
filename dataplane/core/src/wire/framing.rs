//! How PGM packets travel: raw IP (protocol 113) or UDP-encapsulated, over IPv4 or IPv6.
//!
//! Small zero-copy helpers for the data plane: parse an IP packet down to the PGM bytes
//! it carries ([`pgm_payload_of_ipv4`], [`pgm_payload_of_ipv6`]) and write IPv4, IPv6
//! and UDP headers with their checksums ([`Ipv4Repr::emit`], [`Ipv6Repr::emit`],
//! [`UdpRepr::emit`]). Like the rest of `wire`, nothing here panics on any input.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::checksum;
use super::cursor::{Reader, Writer};
use super::{DEFAULT_UDP_ENCAP_MCAST_PORT, DEFAULT_UDP_ENCAP_UCAST_PORT, Error, IP_PROTOCOL};

/// IP protocol number of UDP.
pub const UDP_PROTOCOL: u8 = 17;
/// Length of an IPv4 header without options.
pub const IPV4_HEADER_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_HEADER_LEN: usize = 40;
/// Length of a UDP header.
pub const UDP_HEADER_LEN: usize = 8;

/// Encapsulation of PGM packets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Framing {
    /// PGM directly over IP, protocol number 113.
    #[default]
    RawIp,
    /// PGM in UDP datagrams (OpenPGM's UDP encapsulation).
    Udp {
        /// Port unicast (upstream) packets are sent to.
        ucast_port: u16,
        /// Port multicast (downstream) packets are sent to.
        mcast_port: u16,
    },
}

impl Framing {
    /// UDP encapsulation on OpenPGM's default ports (3055 unicast, 3056 multicast;
    /// `DEFAULT_UDP_ENCAP_UCAST_PORT` / `_MCAST_PORT` in OpenPGM's `packet.h`).
    pub const fn udp_default() -> Framing {
        Framing::Udp {
            ucast_port: DEFAULT_UDP_ENCAP_UCAST_PORT,
            mcast_port: DEFAULT_UDP_ENCAP_MCAST_PORT,
        }
    }

    /// Bytes between the IP header and the PGM header.
    pub const fn encap_len(&self) -> usize {
        match self {
            Framing::RawIp => 0,
            Framing::Udp { .. } => UDP_HEADER_LEN,
        }
    }

    /// The IP protocol number the IP header carries.
    pub const fn ip_protocol(&self) -> u8 {
        match self {
            Framing::RawIp => IP_PROTOCOL,
            Framing::Udp { .. } => UDP_PROTOCOL,
        }
    }

    fn accepts_port(&self, port: u16) -> bool {
        match self {
            Framing::RawIp => false,
            Framing::Udp {
                ucast_port,
                mcast_port,
            } => port == *ucast_port || port == *mcast_port,
        }
    }
}

/// The parts of an IPv4 header the data plane sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Repr {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Protocol of the payload (113 for PGM, 17 for UDP).
    pub protocol: u8,
    /// Time to live.
    pub ttl: u8,
    /// Type of service / DSCP+ECN byte.
    pub tos: u8,
    /// Identification field.
    pub ident: u16,
    /// Payload length (bytes after the header).
    pub payload_len: u16,
}

impl Ipv4Repr {
    /// Parses and checks (version, IHL, total length, header checksum, no fragment) an
    /// IPv4 packet; returns the header and the payload it delimits.
    pub fn parse(packet: &[u8]) -> Result<(Ipv4Repr, &[u8]), Error> {
        let mut r = Reader::new(packet);
        let vihl = r.u8()?;
        if vihl >> 4 != 4 {
            return Err(Error::NotPgm);
        }
        let ihl = usize::from(vihl & 0x0f) * 4;
        let tos = r.u8()?;
        let total = usize::from(r.u16()?);
        let ident = r.u16()?;
        let frag = r.u16()?;
        let ttl = r.u8()?;
        let protocol = r.u8()?;
        if ihl < IPV4_HEADER_LEN || total < ihl {
            return Err(Error::BadLength);
        }
        let whole = packet.get(..total).ok_or(Error::Truncated)?;
        let header = whole.get(..ihl).ok_or(Error::Truncated)?;
        if !checksum::verify(header) {
            return Err(Error::BadIpChecksum);
        }
        // More-fragments bit or a non-zero offset: PGM cannot be parsed from a fragment.
        if frag & 0x3fff != 0 {
            return Err(Error::Fragmented);
        }
        let mut addrs = Reader::new(header.get(12..20).ok_or(Error::Truncated)?);
        let src = Ipv4Addr::from(addrs.array::<4>()?);
        let dst = Ipv4Addr::from(addrs.array::<4>()?);
        let payload = whole.get(ihl..).unwrap_or(&[]);
        let repr = Ipv4Repr {
            src,
            dst,
            protocol,
            ttl,
            tos,
            ident,
            payload_len: u16::try_from(payload.len()).map_err(|_| Error::BadLength)?,
        };
        Ok((repr, payload))
    }

    /// Writes a 20-byte header (no options, DF set) with its checksum; returns 20.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let total = usize::from(self.payload_len) + IPV4_HEADER_LEN;
        let total = u16::try_from(total).map_err(|_| Error::Unencodable)?;
        let out = buf
            .get_mut(..IPV4_HEADER_LEN)
            .ok_or(Error::BufferTooSmall)?;
        let mut w = Writer::new(out);
        w.u8(0x45)?;
        w.u8(self.tos)?;
        w.u16(total)?;
        w.u16(self.ident)?;
        w.u16(0x4000)?;
        w.u8(self.ttl)?;
        w.u8(self.protocol)?;
        w.u16(0)?;
        w.bytes(&self.src.octets())?;
        w.bytes(&self.dst.octets())?;
        let c = checksum::checksum(out);
        if let Some(f) = out.get_mut(10..12) {
            f.copy_from_slice(&c.to_be_bytes());
        }
        Ok(IPV4_HEADER_LEN)
    }
}

/// The parts of an IPv6 header the data plane sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Repr {
    /// Source address.
    pub src: Ipv6Addr,
    /// Destination address.
    pub dst: Ipv6Addr,
    /// Next header of the fixed header.
    pub next_header: u8,
    /// Hop limit.
    pub hop_limit: u8,
    /// Payload length (bytes after the fixed header).
    pub payload_len: u16,
}

/// IPv6 extension headers skipped on the way to the upper layer.
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_DEST_OPTS: u8 = 60;

impl Ipv6Repr {
    /// Parses the fixed header and returns it with the payload it delimits (extension
    /// headers included).
    pub fn parse(packet: &[u8]) -> Result<(Ipv6Repr, &[u8]), Error> {
        let mut r = Reader::new(packet);
        let v = r.u32()?;
        if v >> 28 != 6 {
            return Err(Error::NotPgm);
        }
        let payload_len = r.u16()?;
        let next_header = r.u8()?;
        let hop_limit = r.u8()?;
        let src = Ipv6Addr::from(r.array::<16>()?);
        let dst = Ipv6Addr::from(r.array::<16>()?);
        let payload = r.take(usize::from(payload_len))?;
        let repr = Ipv6Repr {
            src,
            dst,
            next_header,
            hop_limit,
            payload_len,
        };
        Ok((repr, payload))
    }

    /// Writes the 40-byte fixed header; returns 40.
    pub fn emit(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let out = buf
            .get_mut(..IPV6_HEADER_LEN)
            .ok_or(Error::BufferTooSmall)?;
        let mut w = Writer::new(out);
        w.u32(6 << 28)?;
        w.u16(self.payload_len)?;
        w.u8(self.next_header)?;
        w.u8(self.hop_limit)?;
        w.bytes(&self.src.octets())?;
        w.bytes(&self.dst.octets())?;
        Ok(IPV6_HEADER_LEN)
    }
}

/// Follows IPv6 extension headers from `next` over `payload` to the upper layer;
/// returns its protocol and bytes.
fn ipv6_upper_layer(mut next: u8, mut payload: &[u8]) -> Result<(u8, &[u8]), Error> {
    // Bounded: each step consumes at least 8 bytes.
    loop {
        match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => {
                let mut r = Reader::new(payload);
                let nh = r.u8()?;
                let len = (usize::from(r.u8()?) + 1) * 8;
                payload = payload.get(len..).ok_or(Error::Truncated)?;
                next = nh;
            }
            IPV6_FRAGMENT => return Err(Error::Fragmented),
            other => return Ok((other, payload)),
        }
    }
}

/// What a UDP datagram's checksum field says about it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpChecksum {
    /// Present and correct.
    Valid,
    /// Zero: no checksum (allowed over IPv4 only).
    Absent,
    /// Wrong, or zero over IPv6.
    Invalid,
}

/// A UDP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRepr {
    /// Source port.
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
}

impl UdpRepr {
    /// Parses a UDP datagram carried between `src` and `dst` and checks its length and
    /// checksum (pseudo-header included). A zero checksum means "none" over IPv4 and is
    /// an error over IPv6 (RFC 8200 section 8.1).
    pub fn parse(datagram: &[u8], src: IpAddr, dst: IpAddr) -> Result<(UdpRepr, &[u8]), Error> {
        let (repr, payload, sum) = Self::parse_unverified(datagram, src, dst)?;
        match sum {
            UdpChecksum::Valid | UdpChecksum::Absent => Ok((repr, payload)),
            UdpChecksum::Invalid => Err(Error::BadUdpChecksum),
        }
    }

    /// Like [`UdpRepr::parse`] (lengths checked), but returns the checksum's verdict
    /// instead of failing on a bad one.
    pub fn parse_unverified(
        datagram: &[u8],
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<(UdpRepr, &[u8], UdpChecksum), Error> {
        let mut r = Reader::new(datagram);
        let src_port = r.u16()?;
        let dst_port = r.u16()?;
        let len = usize::from(r.u16()?);
        let sum = r.u16()?;
        if len < UDP_HEADER_LEN {
            return Err(Error::BadLength);
        }
        let whole = datagram.get(..len).ok_or(Error::Truncated)?;
        let verdict = if sum == 0 {
            if src.is_ipv6() {
                UdpChecksum::Invalid
            } else {
                UdpChecksum::Absent
            }
        } else if checksum::combine(pseudo_header_sum(src, dst, len), checksum::sum(whole))
            == 0xffff
        {
            UdpChecksum::Valid
        } else {
            UdpChecksum::Invalid
        };
        let payload = whole.get(UDP_HEADER_LEN..).unwrap_or(&[]);
        Ok((UdpRepr { src_port, dst_port }, payload, verdict))
    }

    /// Writes the UDP header in front of the `payload_len` bytes that already follow it
    /// in `buf`, with the checksum over pseudo-header, header and payload. Returns the
    /// datagram length.
    pub fn emit(
        &self,
        buf: &mut [u8],
        payload_len: usize,
        src: IpAddr,
        dst: IpAddr,
    ) -> Result<usize, Error> {
        let len = UDP_HEADER_LEN + payload_len;
        let len16 = u16::try_from(len).map_err(|_| Error::Unencodable)?;
        let out = buf.get_mut(..len).ok_or(Error::BufferTooSmall)?;
        {
            let mut w = Writer::new(out);
            w.u16(self.src_port)?;
            w.u16(self.dst_port)?;
            w.u16(len16)?;
            w.u16(0)?;
        }
        let c = !checksum::combine(pseudo_header_sum(src, dst, len), checksum::sum(out));
        let c = if c == 0 { 0xffff } else { c };
        if let Some(f) = out.get_mut(6..8) {
            f.copy_from_slice(&c.to_be_bytes());
        }
        Ok(len)
    }
}

/// Ones-complement sum of the UDP pseudo-header (RFC 768 / RFC 8200 section 8.1).
fn pseudo_header_sum(src: IpAddr, dst: IpAddr, udp_len: usize) -> u16 {
    let proto = u16::from(UDP_PROTOCOL);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let len = u16::try_from(udp_len).unwrap_or(u16::MAX);
            let fixed = checksum::combine(proto, len);
            checksum::combine(
                checksum::combine(checksum::sum(&s.octets()), checksum::sum(&d.octets())),
                fixed,
            )
        }
        _ => {
            let s = to_v6(src);
            let d = to_v6(dst);
            let len = u32::try_from(udp_len).unwrap_or(u32::MAX);
            let mut tail = [0u8; 8];
            tail[..4].copy_from_slice(&len.to_be_bytes());
            tail[7] = UDP_PROTOCOL;
            checksum::combine(
                checksum::combine(checksum::sum(&s.octets()), checksum::sum(&d.octets())),
                checksum::sum(&tail),
            )
        }
    }
}

fn to_v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// The PGM packet found in an IP packet ([`pgm_payload_of_ipv4`],
/// [`pgm_payload_of_ipv6`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPayload<'a, A> {
    /// IP source address.
    pub src: A,
    /// IP destination address.
    pub dst: A,
    /// The PGM packet.
    pub pgm: &'a [u8],
    /// UDP-encapsulated, and the UDP checksum did not verify; the packet was accepted
    /// because its PGM checksum did (see [`pgm_payload_of_ipv4`]).
    pub udp_checksum_bad: bool,
}

/// True when a PGM packet carries a checksum (non-zero field) that verifies over it.
//= https://www.rfc-editor.org/rfc/rfc3208#section-8
//# Checksum: This field is the usual 1's complement of the 1's complement sum of the
//# entire PGM packet including header.
//# A value of zero in this field means the transmitter generated no
//# checksum.
fn pgm_checksum_verifies(pgm: &[u8]) -> bool {
    matches!(pgm.get(6..8), Some(c) if c != [0, 0]) && checksum::verify(pgm)
}

/// PGM bytes of an IP packet's upper layer, under `framing`; the flag is
/// [`IpPayload::udp_checksum_bad`].
fn pgm_of_upper(
    framing: Framing,
    protocol: u8,
    upper: &[u8],
    src: IpAddr,
    dst: IpAddr,
) -> Result<(&[u8], bool), Error> {
    match (framing, protocol) {
        (Framing::RawIp, IP_PROTOCOL) => Ok((upper, false)),
        (Framing::Udp { .. }, UDP_PROTOCOL) => {
            let (udp, pgm, sum) = UdpRepr::parse_unverified(upper, src, dst)?;
            if !framing.accepts_port(udp.dst_port) {
                return Err(Error::NotPgm);
            }
            match sum {
                UdpChecksum::Valid | UdpChecksum::Absent => Ok((pgm, false)),
                // A sender whose kernel offloads the UDP checksum hands a frame to the
                // wire with only the pseudo-header sum in the field (veth, checksum
                // offload on a NIC, same-host senders); the kernel's own receive path
                // trusts such frames, AF_XDP hands them over as they came. The PGM
                // checksum covers the whole PGM packet, so one that verifies vouches
                // for every byte the engine reads.
                UdpChecksum::Invalid if pgm_checksum_verifies(pgm) => Ok((pgm, true)),
                UdpChecksum::Invalid => Err(Error::BadUdpChecksum),
            }
        }
        _ => Err(Error::NotPgm),
    }
}

/// The PGM packet inside an IPv4 packet. Handles raw PGM (protocol 113) under
/// [`Framing::RawIp`] and UDP datagrams to either encapsulation port under
/// [`Framing::Udp`]; anything else is [`Error::NotPgm`].
///
/// Checksums: the IPv4 header checksum must verify ([`Error::BadIpChecksum`]). A UDP
/// datagram whose checksum does not verify is accepted when the PGM packet inside has
/// a checksum that does ([`IpPayload::udp_checksum_bad`] is then set), and refused
/// with [`Error::BadUdpChecksum`] otherwise.
pub fn pgm_payload_of_ipv4(
    packet: &[u8],
    framing: Framing,
) -> Result<IpPayload<'_, Ipv4Addr>, Error> {
    let (ip, upper) = Ipv4Repr::parse(packet)?;
    let (pgm, udp_checksum_bad) =
        pgm_of_upper(framing, ip.protocol, upper, ip.src.into(), ip.dst.into())?;
    Ok(IpPayload {
        src: ip.src,
        dst: ip.dst,
        pgm,
        udp_checksum_bad,
    })
}

/// The PGM packet inside an IPv6 packet (hop-by-hop, routing and destination-options
/// headers skipped; fragments are [`Error::Fragmented`]). Checksums as
/// [`pgm_payload_of_ipv4`] (a zero UDP checksum is invalid over IPv6).
pub fn pgm_payload_of_ipv6(
    packet: &[u8],
    framing: Framing,
) -> Result<IpPayload<'_, Ipv6Addr>, Error> {
    let (ip, payload) = Ipv6Repr::parse(packet)?;
    let (protocol, upper) = ipv6_upper_layer(ip.next_header, payload)?;
    let (pgm, udp_checksum_bad) =
        pgm_of_upper(framing, protocol, upper, ip.src.into(), ip.dst.into())?;
    Ok(IpPayload {
        src: ip.src,
        dst: ip.dst,
        pgm,
        udp_checksum_bad,
    })
}

/// Writes IPv4 + (UDP) headers in front of `pgm_len` PGM bytes already placed at
/// `buf[20 + framing.encap_len()..]`; returns the IP packet's length. `udp_ports` is
/// `(source, destination)` and is ignored for raw IP.
pub fn emit_ipv4_frame(
    buf: &mut [u8],
    ip: &Ipv4Repr,
    framing: Framing,
    udp_ports: (u16, u16),
    pgm_len: usize,
) -> Result<usize, Error> {
    let encap = framing.encap_len();
    let payload_len = u16::try_from(encap + pgm_len).map_err(|_| Error::Unencodable)?;
    let ip = Ipv4Repr {
        protocol: framing.ip_protocol(),
        payload_len,
        ..*ip
    };
    ip.emit(buf)?;
    if let Framing::Udp { .. } = framing {
        let udp = UdpRepr {
            src_port: udp_ports.0,
            dst_port: udp_ports.1,
        };
        let seg = buf
            .get_mut(IPV4_HEADER_LEN..)
            .ok_or(Error::BufferTooSmall)?;
        udp.emit(seg, pgm_len, ip.src.into(), ip.dst.into())?;
    }
    Ok(IPV4_HEADER_LEN + usize::from(payload_len))
}
