//! Ethernet frames around PGM packets: built in place in a UMEM frame on
//! transmit, validated before the engine sees them on receive.
//!
//! Safe code only. No allocation, no panic on any input: every read is a
//! checked slice access (`get`), every length is validated against the frame.
//!
//! Transmit layout (`pgm_offset` bytes of headers, then the PGM packet that
//! the engine wrote with `poll_transmit` directly into the frame):
//!
//! ```text
//! | Ethernet 14 | IPv4 20 or IPv6 40 | UDP 8 (encapsulated only) | PGM ... |
//! ```

use core::net::{IpAddr, Ipv4Addr};

use xpgm_core::wire::framing::{
    self, Framing, IPV4_HEADER_LEN, IPV6_HEADER_LEN, Ipv4Repr, Ipv6Repr, UdpRepr,
};
use xpgm_core::wire::{Error as WireError, IP_PROTOCOL, Nla};

/// Ethernet header length (no VLAN tag is ever emitted).
pub const ETH_HEADER_LEN: usize = 14;
/// EtherType IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88A8;

/// DSCP Expedited Forwarding (46) in the TOS / traffic-class byte, as OpenPGM
/// sets it by default.
pub const DSCP_EF_TOS: u8 = 46 << 2;

/// A 48-bit MAC address.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The Ethernet multicast address of an IP multicast group: RFC 1112
    /// `01:00:5e` + low 23 bits for IPv4, RFC 2464 `33:33` + low 32 bits for IPv6.
    pub fn of_multicast(group: IpAddr) -> Mac {
        match group {
            IpAddr::V4(g) => {
                let o = g.octets();
                Mac([0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]])
            }
            IpAddr::V6(g) => {
                let o = g.octets();
                Mac([0x33, 0x33, o[12], o[13], o[14], o[15]])
            }
        }
    }

    /// Parses `aa:bb:cc:dd:ee:ff`.
    pub fn parse(s: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for b in &mut out {
            *b = u8::from_str_radix(parts.next()?, 16).ok()?;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(Mac(out))
    }

    /// True for group (multicast/broadcast) addresses.
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl core::fmt::Display for Mac {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Converts an IP address to a PGM NLA.
pub fn nla_of(ip: IpAddr) -> Nla {
    match ip {
        IpAddr::V4(a) => Nla::V4(a),
        IpAddr::V6(a) => Nla::V6(a),
    }
}

/// Converts a PGM NLA to an IP address.
pub fn ip_of(nla: Nla) -> IpAddr {
    match nla {
        Nla::V4(a) => IpAddr::V4(a),
        Nla::V6(a) => IpAddr::V6(a),
    }
}

/// Why a frame could not be built or was refused on receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The frame is shorter than its headers or the UMEM frame too small.
    #[error("frame too short")]
    Truncated,
    /// Not IPv4/IPv6 (after at most one VLAN tag).
    #[error("not an IP frame (ethertype {0:#06x})")]
    NotIp(u16),
    /// The IP version does not match the session's family.
    #[error("IP family does not match the session")]
    WrongFamily,
    /// The IP/UDP layer refused it (bad checksum, length, not PGM, fragment).
    #[error("IP layer: {0}")]
    Wire(WireError),
    /// The destination address is not this session's (group or local address).
    #[error("destination {0} is not ours")]
    WrongDestination(IpAddr),
    /// A multicast, unspecified or loopback source address.
    #[error("bad source address {0}")]
    BadSource(IpAddr),
    /// Source and destination addresses of different families.
    #[error("address families differ")]
    MixedFamilies,
}

impl From<WireError> for FrameError {
    fn from(e: WireError) -> Self {
        FrameError::Wire(e)
    }
}

/// What the transmit side needs to put headers in front of a PGM packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxHeaders {
    /// Our interface's MAC.
    pub src_mac: Mac,
    /// Our unicast address (IP source of everything we send).
    pub src_ip: IpAddr,
    /// Raw IP (protocol 113) or UDP encapsulation.
    pub framing: Framing,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// TOS / traffic class byte (DSCP << 2); [`DSCP_EF_TOS`] by default.
    pub tos: u8,
}

impl TxHeaders {
    /// Offset of the PGM packet in a frame: Ethernet + IP (+ UDP).
    pub fn pgm_offset(&self) -> usize {
        ETH_HEADER_LEN + self.ip_header_len() + self.framing.encap_len()
    }

    fn ip_header_len(&self) -> usize {
        match self.src_ip {
            IpAddr::V4(_) => IPV4_HEADER_LEN,
            IpAddr::V6(_) => IPV6_HEADER_LEN,
        }
    }

    /// Writes Ethernet, IP and (under UDP framing) UDP headers in front of the
    /// `pgm_len` PGM bytes already at `frame[pgm_offset()..]`. `multicast`
    /// selects the UDP encapsulation port (downstream to the multicast port,
    /// upstream to the unicast one). `ident` is the IPv4 identification.
    /// Returns the frame length.
    pub fn write(
        &self,
        frame: &mut [u8],
        dst_mac: Mac,
        dst_ip: IpAddr,
        pgm_len: usize,
        ident: u16,
    ) -> Result<usize, FrameError> {
        let total = self.pgm_offset() + pgm_len;
        let frame = frame.get_mut(..total).ok_or(FrameError::Truncated)?;
        let ethertype = match self.src_ip {
            IpAddr::V4(_) => ETHERTYPE_IPV4,
            IpAddr::V6(_) => ETHERTYPE_IPV6,
        };
        {
            let eth = frame
                .get_mut(..ETH_HEADER_LEN)
                .ok_or(FrameError::Truncated)?;
            let (dst, rest) = eth.split_at_mut(6);
            dst.copy_from_slice(&dst_mac.0);
            let (src, ty) = rest.split_at_mut(6);
            src.copy_from_slice(&self.src_mac.0);
            ty.copy_from_slice(&ethertype.to_be_bytes());
        }
        let port = match self.framing {
            Framing::RawIp => 0,
            Framing::Udp {
                ucast_port,
                mcast_port,
            } => {
                if dst_ip.is_multicast() {
                    mcast_port
                } else {
                    ucast_port
                }
            }
        };
        let ip = frame
            .get_mut(ETH_HEADER_LEN..)
            .ok_or(FrameError::Truncated)?;
        match (self.src_ip, dst_ip) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                let repr = Ipv4Repr {
                    src,
                    dst,
                    protocol: self.framing.ip_protocol(),
                    ttl: self.ttl,
                    tos: self.tos,
                    ident,
                    payload_len: 0,
                };
                framing::emit_ipv4_frame(ip, &repr, self.framing, (port, port), pgm_len)?;
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => {
                let encap = self.framing.encap_len();
                let payload_len =
                    u16::try_from(encap + pgm_len).map_err(|_| WireError::Unencodable)?;
                let repr = Ipv6Repr {
                    src,
                    dst,
                    next_header: self.framing.ip_protocol(),
                    hop_limit: self.ttl,
                    payload_len,
                };
                repr.emit(ip)?;
                // Traffic class: 4 bits in byte 0, 4 bits in byte 1.
                if let Some(b) = ip.get_mut(..2) {
                    b[0] = 0x60 | (self.tos >> 4);
                    b[1] = (self.tos << 4) | (b[1] & 0x0f);
                }
                if let Framing::Udp { .. } = self.framing {
                    let seg = ip.get_mut(IPV6_HEADER_LEN..).ok_or(FrameError::Truncated)?;
                    UdpRepr {
                        src_port: port,
                        dst_port: port,
                    }
                    .emit(seg, pgm_len, src.into(), dst.into())?;
                }
            }
            _ => return Err(FrameError::MixedFamilies),
        }
        Ok(total)
    }
}

/// A received frame that passed validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RxFrame<'a> {
    /// Ethernet source (used to learn the MAC of a PGM source for NAKs).
    pub src_mac: Mac,
    /// IP source.
    pub src_ip: IpAddr,
    /// IP destination.
    pub dst_ip: IpAddr,
    /// The PGM packet (its own checksum is verified by the engine's parser).
    pub pgm: &'a [u8],
    /// UDP-encapsulated with a UDP checksum that did not verify, accepted because the
    /// PGM checksum did (the sender's kernel left the UDP checksum to an offload that
    /// never ran: see `xpgm_core::wire::framing::pgm_payload_of_ipv4`).
    pub udp_checksum_bad: bool,
}

/// Why a received frame was refused, as counted ([`RxCounters`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// UDP-encapsulated, and neither the UDP nor the PGM checksum verified.
    Checksum,
    /// Malformed below PGM: truncated, bad lengths, IPv4 header checksum, an IP
    /// fragment, not IP, or an IP family other than the session's.
    Header,
    /// IP, but not PGM under the session's framing (protocol, UDP port).
    NotPgm,
    /// Not addressed to this session (destination), or from a multicast, unspecified
    /// or loopback source.
    Address,
}

impl FrameError {
    /// The counter this refusal is counted in.
    pub fn reject(&self) -> Reject {
        match self {
            FrameError::Wire(WireError::BadUdpChecksum) => Reject::Checksum,
            FrameError::Wire(WireError::NotPgm) => Reject::NotPgm,
            FrameError::WrongDestination(_) | FrameError::BadSource(_) => Reject::Address,
            FrameError::Truncated
            | FrameError::NotIp(_)
            | FrameError::WrongFamily
            | FrameError::MixedFamilies
            | FrameError::Wire(_) => Reject::Header,
        }
    }
}

/// Per-reason counts of the frames a socket received (docs/reliability.md section 9).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RxCounters {
    /// Accepted although the UDP checksum did not verify (the PGM checksum did).
    pub udp_checksum_bad_accepted: u64,
    /// Refused: UDP and PGM checksums both failed ([`Reject::Checksum`]).
    pub rejected_checksum: u64,
    /// Refused: [`Reject::Header`].
    pub rejected_header: u64,
    /// Refused: [`Reject::NotPgm`].
    pub rejected_not_pgm: u64,
    /// Refused: [`Reject::Address`].
    pub rejected_address: u64,
}

impl RxCounters {
    /// Counts the outcome of one [`parse`].
    pub fn count(&mut self, r: &Result<RxFrame<'_>, FrameError>) {
        match r {
            Ok(f) => self.udp_checksum_bad_accepted += u64::from(f.udp_checksum_bad),
            Err(e) => match e.reject() {
                Reject::Checksum => self.rejected_checksum += 1,
                Reject::Header => self.rejected_header += 1,
                Reject::NotPgm => self.rejected_not_pgm += 1,
                Reject::Address => self.rejected_address += 1,
            },
        }
    }

    /// Frames refused, all reasons.
    pub fn rejected(&self) -> u64 {
        self.rejected_checksum
            + self.rejected_header
            + self.rejected_not_pgm
            + self.rejected_address
    }
}

/// Validates an Ethernet frame and returns the PGM packet inside.
///
/// Checks: Ethernet header present, at most one 802.1Q/802.1ad tag, IPv4
/// header checksum and lengths (IPv6 payload length), not a fragment, raw
/// PGM (protocol 113) or UDP to one of `framing`'s ports whose UDP checksum
/// verifies — or, failing that, whose PGM checksum does (set in
/// [`RxFrame::udp_checksum_bad`]) — source address neither multicast, unspecified nor loopback,
/// and the destination is one of `accept` (the group for a receiver, the
/// local address for a source).
pub fn parse<'a>(
    frame: &'a [u8],
    framing: Framing,
    accept: &[IpAddr],
) -> Result<RxFrame<'a>, FrameError> {
    let eth = frame.get(..ETH_HEADER_LEN).ok_or(FrameError::Truncated)?;
    let mut src_mac = [0u8; 6];
    src_mac.copy_from_slice(eth.get(6..12).ok_or(FrameError::Truncated)?);
    let mut ethertype = be16(frame, 12)?;
    let mut off = ETH_HEADER_LEN;
    if ethertype == ETHERTYPE_VLAN || ethertype == ETHERTYPE_QINQ {
        ethertype = be16(frame, 16)?;
        off += 4;
    }
    let ip = frame.get(off..).ok_or(FrameError::Truncated)?;
    let (src_ip, dst_ip, (pgm, udp_checksum_bad)) = match ethertype {
        ETHERTYPE_IPV4 => {
            let p = framing::pgm_payload_of_ipv4(ip, framing)?;
            (
                IpAddr::V4(p.src),
                IpAddr::V4(p.dst),
                (p.pgm, p.udp_checksum_bad),
            )
        }
        ETHERTYPE_IPV6 => {
            let p = framing::pgm_payload_of_ipv6(ip, framing)?;
            (
                IpAddr::V6(p.src),
                IpAddr::V6(p.dst),
                (p.pgm, p.udp_checksum_bad),
            )
        }
        other => return Err(FrameError::NotIp(other)),
    };
    if src_ip.is_multicast() || src_ip.is_unspecified() || src_ip.is_loopback() {
        return Err(FrameError::BadSource(src_ip));
    }
    if !accept.contains(&dst_ip) {
        return Err(FrameError::WrongDestination(dst_ip));
    }
    Ok(RxFrame {
        src_mac: Mac(src_mac),
        src_ip,
        dst_ip,
        pgm,
        udp_checksum_bad,
    })
}

fn be16(b: &[u8], at: usize) -> Result<u16, FrameError> {
    let s = b.get(at..at + 2).ok_or(FrameError::Truncated)?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

/// A small fixed table of learned IP → MAC mappings (the sources we NAK),
/// filled from received frames; no allocation after creation.
#[derive(Debug)]
pub struct NeighbourCache {
    entries: [(IpAddr, Mac); 16],
    len: usize,
    next: usize,
}

impl Default for NeighbourCache {
    fn default() -> Self {
        Self {
            entries: [(IpAddr::V4(Ipv4Addr::UNSPECIFIED), Mac::default()); 16],
            len: 0,
            next: 0,
        }
    }
}

impl NeighbourCache {
    /// Records that `ip` was seen with `mac` (replacing an older mapping;
    /// the oldest entry is evicted when the table is full).
    pub fn learn(&mut self, ip: IpAddr, mac: Mac) {
        if mac.is_multicast() {
            return;
        }
        let live = self.entries.get_mut(..self.len).unwrap_or_default();
        if let Some(e) = live.iter_mut().find(|e| e.0 == ip) {
            e.1 = mac;
            return;
        }
        let slot = if self.len < self.entries.len() {
            self.len += 1;
            self.len - 1
        } else {
            let s = self.next;
            self.next = (self.next + 1) % self.entries.len();
            s
        };
        if let Some(e) = self.entries.get_mut(slot) {
            *e = (ip, mac);
        }
    }

    /// The MAC learned for `ip`.
    pub fn lookup(&self, ip: IpAddr) -> Option<Mac> {
        self.entries
            .get(..self.len)?
            .iter()
            .find(|e| e.0 == ip)
            .map(|e| e.1)
    }
}

/// Looks `ip` up in the kernel's neighbour table (`/proc/net/arp` for IPv4,
/// `ip -6 neigh` is not parsed: IPv6 relies on learning). Slow path, used
/// only when nothing was learned from frames yet.
pub fn kernel_neighbour(ip: IpAddr) -> Option<Mac> {
    let IpAddr::V4(v4) = ip else {
        return None;
    };
    let text = std::fs::read_to_string("/proc/net/arp").ok()?;
    arp_table_lookup(&text, v4)
}

/// Finds `ip` in the text of `/proc/net/arp` (complete entries only).
pub fn arp_table_lookup(text: &str, ip: Ipv4Addr) -> Option<Mac> {
    text.lines().skip(1).find_map(|line| {
        let mut f = line.split_whitespace();
        let addr: Ipv4Addr = f.next()?.parse().ok()?;
        let _hw_type = f.next()?;
        let flags = u32::from_str_radix(f.next()?.trim_start_matches("0x"), 16).ok()?;
        let mac = Mac::parse(f.next()?)?;
        (addr == ip && flags & 0x2 != 0 && mac != Mac::default()).then_some(mac)
    })
}

/// The IP protocol number of raw PGM (re-exported for callers building filters).
pub const PGM_PROTOCOL: u8 = IP_PROTOCOL;

#[cfg(test)]
mod tests {
    use super::*;
    use xpgm_core::wire::{DEFAULT_UDP_ENCAP_MCAST_PORT, checksum};

    const PGM: &[u8] = b"0123456789abcdefPGM-PAYLOAD";

    fn headers(src_ip: IpAddr, framing: Framing) -> TxHeaders {
        TxHeaders {
            src_mac: Mac([2, 0, 0, 0, 0, 1]),
            src_ip,
            framing,
            ttl: 16,
            tos: DSCP_EF_TOS,
        }
    }

    fn build(h: &TxHeaders, dst_mac: Mac, dst: IpAddr) -> ([u8; 256], usize) {
        let mut f = [0u8; 256];
        let off = h.pgm_offset();
        f[off..off + PGM.len()].copy_from_slice(PGM);
        let n = h.write(&mut f, dst_mac, dst, PGM.len(), 7).unwrap();
        (f, n)
    }

    #[test]
    fn multicast_macs() {
        assert_eq!(
            Mac::of_multicast("239.192.0.7".parse().unwrap()),
            Mac([0x01, 0x00, 0x5e, 0x40, 0x00, 0x07])
        );
        // The 24th bit is dropped.
        assert_eq!(
            Mac::of_multicast("239.255.1.2".parse().unwrap()),
            Mac([0x01, 0x00, 0x5e, 0x7f, 0x01, 0x02])
        );
        assert_eq!(
            Mac::of_multicast("ff15::1:2:3".parse().unwrap()),
            Mac([0x33, 0x33, 0x00, 0x02, 0x00, 0x03])
        );
        assert_eq!(
            Mac::parse("02:00:0a:ff:00:01"),
            Some(Mac([2, 0, 10, 255, 0, 1]))
        );
        assert_eq!(Mac::parse("02:00:0a:ff:00"), None);
        assert_eq!(Mac::parse("02:00:0a:ff:00:01:02"), None);
        assert_eq!(Mac([2, 0, 10, 255, 0, 1]).to_string(), "02:00:0a:ff:00:01");
    }

    #[test]
    fn ipv4_raw_frame_round_trip() {
        let src: IpAddr = "10.77.0.1".parse().unwrap();
        let group: IpAddr = "239.192.0.7".parse().unwrap();
        let h = headers(src, Framing::RawIp);
        let (f, n) = build(&h, Mac::of_multicast(group), group);
        assert_eq!(n, 14 + 20 + PGM.len());
        assert_eq!(&f[..6], &[0x01, 0x00, 0x5e, 0x40, 0x00, 0x07]);
        assert_eq!(&f[12..14], &[0x08, 0x00]);
        assert_eq!(f[14 + 1], DSCP_EF_TOS, "DSCP EF");
        assert_eq!(f[14 + 8], 16, "TTL");
        assert_eq!(f[14 + 9], 113, "protocol");
        assert!(checksum::verify(&f[14..34]), "IP header checksum");
        let rx = parse(&f[..n], Framing::RawIp, &[group]).unwrap();
        assert_eq!(rx.pgm, PGM);
        assert_eq!(rx.src_ip, src);
        assert_eq!(rx.dst_ip, group);
        assert_eq!(rx.src_mac, h.src_mac);
    }

    #[test]
    fn ipv4_udp_frame_round_trip_uses_encap_ports() {
        let src: IpAddr = "10.77.0.101".parse().unwrap();
        let dst: IpAddr = "10.77.0.1".parse().unwrap();
        let framing = Framing::udp_default();
        let h = headers(src, framing);
        let (f, n) = build(&h, Mac([2, 0, 0, 0, 0, 9]), dst);
        assert_eq!(n, 14 + 20 + 8 + PGM.len());
        // Unicast (upstream) goes to the unicast port 3055.
        assert_eq!(&f[34..36], &3055u16.to_be_bytes());
        assert_eq!(&f[36..38], &3055u16.to_be_bytes());
        let rx = parse(&f[..n], framing, &[dst]).unwrap();
        assert_eq!(rx.pgm, PGM);
        let group: IpAddr = "239.1.1.1".parse().unwrap();
        let (f, n) = build(&h, Mac::of_multicast(group), group);
        assert_eq!(&f[36..38], &DEFAULT_UDP_ENCAP_MCAST_PORT.to_be_bytes());
        assert!(parse(&f[..n], framing, &[group]).is_ok());
        // The same frame is not PGM under raw framing.
        assert_eq!(
            parse(&f[..n], Framing::RawIp, &[group]),
            Err(FrameError::Wire(WireError::NotPgm))
        );
    }

    #[test]
    fn ipv6_frames_round_trip_with_traffic_class() {
        let src: IpAddr = "fd77::1".parse().unwrap();
        let group: IpAddr = "ff15::7".parse().unwrap();
        for framing in [Framing::RawIp, Framing::udp_default()] {
            let h = headers(src, framing);
            let (f, n) = build(&h, Mac::of_multicast(group), group);
            assert_eq!(n, 14 + 40 + framing.encap_len() + PGM.len());
            assert_eq!(&f[12..14], &[0x86, 0xdd]);
            let tc = ((f[14] & 0x0f) << 4) | (f[15] >> 4);
            assert_eq!(tc, DSCP_EF_TOS);
            assert_eq!(f[14 + 7], 16, "hop limit");
            let rx = parse(&f[..n], framing, &[group]).unwrap();
            assert_eq!(rx.pgm, PGM);
            assert_eq!(rx.src_ip, src);
        }
    }

    #[test]
    fn validation_refuses_bad_frames() {
        let src: IpAddr = "10.77.0.1".parse().unwrap();
        let group: IpAddr = "239.192.0.7".parse().unwrap();
        let h = headers(src, Framing::RawIp);
        let (f, n) = build(&h, Mac::of_multicast(group), group);
        // Not our group.
        let other: IpAddr = "239.192.0.8".parse().unwrap();
        assert_eq!(
            parse(&f[..n], Framing::RawIp, &[other]),
            Err(FrameError::WrongDestination(group))
        );
        // Corrupt IP checksum.
        let mut g = f;
        g[14 + 10] ^= 0xff;
        assert_eq!(
            parse(&g[..n], Framing::RawIp, &[group]),
            Err(FrameError::Wire(WireError::BadIpChecksum))
        );
        // ARP.
        let mut g = f;
        g[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(
            parse(&g[..n], Framing::RawIp, &[group]),
            Err(FrameError::NotIp(0x0806))
        );
        // Every truncation is an error, never a panic.
        for cut in 0..n - PGM.len() {
            assert!(
                parse(&f[..cut], Framing::RawIp, &[group]).is_err(),
                "cut {cut}"
            );
        }
        // A multicast source is refused.
        let h2 = headers("239.0.0.1".parse().unwrap(), Framing::RawIp);
        let (f2, n2) = build(&h2, Mac::of_multicast(group), group);
        assert!(matches!(
            parse(&f2[..n2], Framing::RawIp, &[group]),
            Err(FrameError::BadSource(_))
        ));
        // Mixed families cannot be built.
        let mut buf = [0u8; 128];
        assert_eq!(
            h.write(&mut buf, Mac::default(), "ff15::1".parse().unwrap(), 4, 0),
            Err(FrameError::MixedFamilies)
        );
        // Too small a buffer.
        assert_eq!(
            h.write(&mut buf[..40], Mac::default(), group, 16, 0),
            Err(FrameError::Truncated)
        );
    }

    /// A real PGM packet (checksummed) behind UDP headers, as an AF_XDP source sends it.
    fn udp_pgm_frame(src: IpAddr, group: IpAddr) -> (Vec<u8>, usize) {
        let h = headers(src, Framing::udp_default());
        let mut f = vec![0u8; 256];
        let off = h.pgm_offset();
        let repr = xpgm_core::wire::PacketRepr {
            sport: 4000,
            dport: 7500,
            gsi: xpgm_core::wire::Gsi([1, 2, 3, 4, 5, 6]),
            body: xpgm_core::wire::Body::Odata(xpgm_core::wire::Data {
                sqn: xpgm_core::Sqn(1),
                trail: xpgm_core::Sqn(0),
                payload: b"tick",
            }),
            options: xpgm_core::wire::Options::default(),
        };
        let len = repr.emit(&mut f[off..]).unwrap();
        let n = h
            .write(&mut f, Mac::of_multicast(group), group, len, 1)
            .unwrap();
        f.truncate(n);
        (f, off)
    }

    #[test]
    fn rejects_are_counted_by_reason_and_offloaded_udp_checksums_accepted() {
        let src: IpAddr = "10.77.0.1".parse().unwrap();
        let group: IpAddr = "239.192.0.7".parse().unwrap();
        let framing = Framing::udp_default();
        let (good, off) = udp_pgm_frame(src, group);
        let udp_sum = off - 8 + 6;
        let mut c = RxCounters::default();
        let r = parse(&good, framing, &[group]);
        assert!(r.as_ref().is_ok_and(|f| !f.udp_checksum_bad));
        c.count(&r);
        // The UDP checksum an offloading sender leaves behind: accepted, counted.
        let mut partial = good.clone();
        partial[udp_sum] ^= 0x5a;
        let r = parse(&partial, framing, &[group]);
        assert!(r.as_ref().is_ok_and(|f| f.udp_checksum_bad), "{r:?}");
        c.count(&r);
        // ... and a corrupted byte as well: neither checksum holds.
        let mut both = partial.clone();
        let last = both.len() - 1;
        both[last] ^= 1;
        let r = parse(&both, framing, &[group]);
        assert_eq!(r, Err(FrameError::Wire(WireError::BadUdpChecksum)));
        c.count(&r);
        // Bad IPv4 header checksum, not our group, wrong UDP port.
        let mut iphdr = good.clone();
        iphdr[14 + 8] ^= 1;
        c.count(&parse(&iphdr, framing, &[group]));
        let other: IpAddr = "239.192.0.8".parse().unwrap();
        c.count(&parse(&good, framing, &[other]));
        let ports = Framing::Udp {
            ucast_port: 1,
            mcast_port: 2,
        };
        c.count(&parse(&good, ports, &[group]));
        assert_eq!(
            c,
            RxCounters {
                udp_checksum_bad_accepted: 1,
                rejected_checksum: 1,
                rejected_header: 1,
                rejected_not_pgm: 1,
                rejected_address: 1,
            }
        );
        assert_eq!(c.rejected(), 4);
    }

    #[test]
    fn vlan_tagged_frames_are_accepted() {
        let src: IpAddr = "10.77.0.1".parse().unwrap();
        let group: IpAddr = "239.192.0.7".parse().unwrap();
        let h = headers(src, Framing::RawIp);
        let (f, n) = build(&h, Mac::of_multicast(group), group);
        let mut tagged = [0u8; 260];
        tagged[..12].copy_from_slice(&f[..12]);
        tagged[12..14].copy_from_slice(&0x8100u16.to_be_bytes());
        tagged[14..16].copy_from_slice(&5u16.to_be_bytes());
        tagged[16..n + 4].copy_from_slice(&f[12..n]);
        let rx = parse(&tagged[..n + 4], Framing::RawIp, &[group]).unwrap();
        assert_eq!(rx.pgm, PGM);
    }

    #[test]
    fn neighbour_cache_learns_and_evicts() {
        let mut c = NeighbourCache::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(c.lookup(a), None);
        c.learn(a, Mac([2, 0, 0, 0, 0, 1]));
        c.learn(a, Mac([2, 0, 0, 0, 0, 2]));
        assert_eq!(c.lookup(a), Some(Mac([2, 0, 0, 0, 0, 2])));
        c.learn("10.0.0.9".parse().unwrap(), Mac([1, 0, 0x5e, 0, 0, 1]));
        assert_eq!(c.lookup("10.0.0.9".parse().unwrap()), None, "multicast MAC");
        for i in 0..16u8 {
            c.learn(
                IpAddr::V4(Ipv4Addr::new(10, 1, 0, i)),
                Mac([2, 0, 0, 0, 1, i]),
            );
        }
        assert_eq!(c.lookup(a), None, "oldest evicted");
        assert_eq!(
            c.lookup("10.1.0.15".parse().unwrap()),
            Some(Mac([2, 0, 0, 0, 1, 15]))
        );
    }

    #[test]
    fn arp_table_parsing() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    10.77.0.1        0x1         0x2         02:aa:bb:cc:dd:01     *        eth0\n\
                    10.77.0.2        0x1         0x0         00:00:00:00:00:00     *        eth0\n";
        assert_eq!(
            arp_table_lookup(text, "10.77.0.1".parse().unwrap()),
            Some(Mac([2, 0xaa, 0xbb, 0xcc, 0xdd, 1]))
        );
        assert_eq!(arp_table_lookup(text, "10.77.0.2".parse().unwrap()), None);
        assert_eq!(
            arp_table_lookup("garbage", "10.77.0.2".parse().unwrap()),
            None
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let group: IpAddr = "239.192.0.7".parse().unwrap();
            let _ = parse(&bytes, Framing::RawIp, &[group]);
            let _ = parse(&bytes, Framing::udp_default(), &[group]);
        }
    }
}
