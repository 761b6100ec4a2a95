//! IPv4 / IPv6 / UDP framing around PGM packets.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xpgm_core::Sqn;
use xpgm_core::wire::framing::{
    Framing, IPV4_HEADER_LEN, Ipv4Repr, Ipv6Repr, UDP_HEADER_LEN, UdpRepr, emit_ipv4_frame,
    pgm_payload_of_ipv4, pgm_payload_of_ipv6,
};
use xpgm_core::wire::{Body, Data, Error, Gsi, IP_PROTOCOL, Options, PacketRepr};

/// Independent RFC 1071 sum (not folded-inverted), 16 bits at a time.
fn ref_sum(bytes: &[u8]) -> u32 {
    bytes
        .chunks(2)
        .map(|p| (u32::from(p[0]) << 8) | u32::from(*p.get(1).unwrap_or(&0)))
        .sum()
}

fn fold(mut acc: u32) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

fn odata(payload: &[u8]) -> PacketRepr<'_> {
    PacketRepr {
        sport: 4000,
        dport: 7500,
        gsi: Gsi([9, 8, 7, 6, 5, 4]),
        body: Body::Odata(Data {
            sqn: Sqn(42),
            trail: Sqn(40),
            payload,
        }),
        options: Options::default(),
    }
}

#[test]
fn ipv4_header_known_checksum() {
    // The classic example header 4500 0073 0000 4000 4011 b861 c0a8 0001 c0a8 00c7.
    let ip = Ipv4Repr {
        src: Ipv4Addr::new(192, 168, 0, 1),
        dst: Ipv4Addr::new(192, 168, 0, 199),
        protocol: 17,
        ttl: 64,
        tos: 0,
        ident: 0,
        payload_len: 0x73 - 20,
    };
    let mut buf = [0u8; 20];
    assert_eq!(ip.emit(&mut buf), Ok(20));
    let want = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xb8, 0x61, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];
    assert_eq!(buf, want);
}

fn v4_frame(framing: Framing, payload: &[u8]) -> (Vec<u8>, usize) {
    let src = Ipv4Addr::new(10, 0, 0, 1);
    let dst = Ipv4Addr::new(239, 192, 0, 1);
    let mut buf = vec![0u8; 2048];
    let off = IPV4_HEADER_LEN + framing.encap_len();
    let n = odata(payload).emit(&mut buf[off..]).unwrap();
    let ip = Ipv4Repr {
        src,
        dst,
        protocol: 0,
        ttl: 16,
        tos: 0,
        ident: 7,
        payload_len: 0,
    };
    let len = emit_ipv4_frame(&mut buf, &ip, framing, (3055, 3056), n).unwrap();
    buf.truncate(len);
    (buf, n)
}

#[test]
fn raw_ip_roundtrip() {
    let (frame, n) = v4_frame(Framing::RawIp, b"raw pgm");
    assert_eq!(frame[9], IP_PROTOCOL);
    let p = pgm_payload_of_ipv4(&frame, Framing::RawIp).unwrap();
    let (src, dst, pgm) = (p.src, p.dst, p.pgm);
    assert_eq!(src, Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(dst, Ipv4Addr::new(239, 192, 0, 1));
    assert_eq!(pgm.len(), n);
    assert_eq!(PacketRepr::parse(pgm).unwrap(), odata(b"raw pgm"));
    // Raw PGM is not accepted when UDP framing is configured.
    assert_eq!(
        pgm_payload_of_ipv4(&frame, Framing::udp_default()),
        Err(Error::NotPgm)
    );
}

#[test]
fn udp_roundtrip_and_independent_checksum() {
    let framing = Framing::udp_default();
    let (frame, n) = v4_frame(framing, b"udp pgm!");
    assert_eq!(frame[9], 17);
    let udp = &frame[20..];
    assert_eq!(udp.len(), UDP_HEADER_LEN + n);
    assert_eq!(&udp[2..4], &3056u16.to_be_bytes());
    // Pseudo-header + datagram sums to all ones.
    let mut acc = ref_sum(&frame[12..20]) + 17 + udp.len() as u32;
    acc += ref_sum(udp);
    assert_eq!(fold(acc), 0xffff);
    let p = pgm_payload_of_ipv4(&frame, framing).unwrap();
    assert!(!p.udp_checksum_bad);
    assert_eq!(PacketRepr::parse(p.pgm).unwrap(), odata(b"udp pgm!"));
    assert_eq!(
        pgm_payload_of_ipv4(&frame, Framing::RawIp),
        Err(Error::NotPgm)
    );
    let other_ports = Framing::Udp {
        ucast_port: 1,
        mcast_port: 2,
    };
    assert_eq!(pgm_payload_of_ipv4(&frame, other_ports), Err(Error::NotPgm));
    // A flipped payload bit fails both the UDP and the PGM checksum.
    let mut bad = frame.clone();
    let last = bad.len() - 1;
    bad[last] ^= 0x01;
    assert_eq!(
        pgm_payload_of_ipv4(&bad, framing),
        Err(Error::BadUdpChecksum)
    );
    // A zero UDP checksum means "none" over IPv4.
    let mut none = frame.clone();
    none[26] = 0;
    none[27] = 0;
    let p = pgm_payload_of_ipv4(&none, framing).unwrap();
    assert!(!p.udp_checksum_bad);
}

/// What a sender whose kernel leaves the UDP checksum to an offload puts on the wire:
/// only the pseudo-header sum in the field (Linux's CHECKSUM_PARTIAL over veth).
fn partial_udp_checksum(frame: &mut [u8]) {
    let udp_len = frame.len() - 20;
    let pseudo = ref_sum(&frame[12..20]) + 17 + udp_len as u32;
    frame[26..28].copy_from_slice(&fold(pseudo).to_be_bytes());
}

#[test]
fn a_bad_udp_checksum_is_accepted_when_the_pgm_checksum_verifies() {
    let framing = Framing::udp_default();
    let (frame, _) = v4_frame(framing, b"offloaded");
    let mut partial = frame.clone();
    partial_udp_checksum(&mut partial);
    assert_ne!(partial[26..28], frame[26..28]);
    let p = pgm_payload_of_ipv4(&partial, framing).unwrap();
    assert!(p.udp_checksum_bad);
    assert_eq!(PacketRepr::parse(p.pgm).unwrap(), odata(b"offloaded"));
    // The PGM packet starts after IPv4 (20) and UDP (8) headers; its checksum is at
    // bytes 6..8. Without a PGM checksum nothing vouches for the bytes: refused.
    let mut no_pgm_sum = partial.clone();
    no_pgm_sum[28 + 6] = 0;
    no_pgm_sum[28 + 7] = 0;
    assert_eq!(
        pgm_payload_of_ipv4(&no_pgm_sum, framing),
        Err(Error::BadUdpChecksum)
    );
    // A corrupted byte under a partial UDP checksum fails the PGM checksum: refused.
    let mut corrupt = partial.clone();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;
    assert_eq!(
        pgm_payload_of_ipv4(&corrupt, framing),
        Err(Error::BadUdpChecksum)
    );
    // The rule is about checksums only: lengths and ports are still checked.
    let mut short = partial.clone();
    short[24..26].copy_from_slice(&7u16.to_be_bytes());
    assert_eq!(pgm_payload_of_ipv4(&short, framing), Err(Error::BadLength));
    let other_ports = Framing::Udp {
        ucast_port: 1,
        mcast_port: 2,
    };
    assert_eq!(
        pgm_payload_of_ipv4(&partial, other_ports),
        Err(Error::NotPgm)
    );
}

#[test]
fn ipv4_errors() {
    let (frame, _) = v4_frame(Framing::RawIp, b"x");
    let mut bad = frame.clone();
    bad[8] ^= 1; // TTL: header checksum no longer matches
    assert_eq!(
        pgm_payload_of_ipv4(&bad, Framing::RawIp),
        Err(Error::BadIpChecksum)
    );
    assert_eq!(
        pgm_payload_of_ipv4(&frame[..frame.len() - 1], Framing::RawIp),
        Err(Error::Truncated)
    );
    assert_eq!(
        pgm_payload_of_ipv4(&frame[..5], Framing::RawIp),
        Err(Error::Truncated)
    );
    // A fragment (more-fragments bit), checksum fixed up.
    let mut frag = frame.clone();
    frag[6] = 0x20;
    frag[10] = 0;
    frag[11] = 0;
    let c = !fold(ref_sum(&frag[..20]));
    frag[10..12].copy_from_slice(&c.to_be_bytes());
    assert_eq!(
        pgm_payload_of_ipv4(&frag, Framing::RawIp),
        Err(Error::Fragmented)
    );
    let mut v6 = frame.clone();
    v6[0] = 0x65;
    assert_eq!(pgm_payload_of_ipv4(&v6, Framing::RawIp), Err(Error::NotPgm));
    let mut ihl = frame;
    ihl[0] = 0x44;
    assert_eq!(
        pgm_payload_of_ipv4(&ihl, Framing::RawIp),
        Err(Error::BadLength)
    );
}

fn v6_addrs() -> (Ipv6Addr, Ipv6Addr) {
    (
        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 0x42),
    )
}

#[test]
fn ipv6_raw_with_hop_by_hop() {
    let (src, dst) = v6_addrs();
    let mut pgm = [0u8; 64];
    let n = odata(b"six").emit(&mut pgm).unwrap();
    // Hop-by-hop header with a router alert option: next header 113, length 0 (8 bytes).
    let hbh = [IP_PROTOCOL, 0, 0x05, 0x02, 0x00, 0x00, 0x01, 0x00];
    let ip = Ipv6Repr {
        src,
        dst,
        next_header: 0,
        hop_limit: 1,
        payload_len: (hbh.len() + n) as u16,
    };
    let mut frame = vec![0u8; 40];
    ip.emit(&mut frame).unwrap();
    frame.extend_from_slice(&hbh);
    frame.extend_from_slice(&pgm[..n]);
    let p = pgm_payload_of_ipv6(&frame, Framing::RawIp).unwrap();
    let (s, d, body) = (p.src, p.dst, p.pgm);
    assert_eq!((s, d), (src, dst));
    assert_eq!(PacketRepr::parse(body).unwrap(), odata(b"six"));
    assert_eq!(Ipv6Repr::parse(&frame).unwrap().0, ip);
    // Fragment header.
    let mut frag = frame.clone();
    frag[6] = 44;
    assert_eq!(
        pgm_payload_of_ipv6(&frag, Framing::RawIp),
        Err(Error::Fragmented)
    );
    assert_eq!(
        pgm_payload_of_ipv6(&frame[..frame.len() - 1], Framing::RawIp),
        Err(Error::Truncated)
    );
}

#[test]
fn ipv6_udp_checksum_mandatory() {
    let (src, dst) = v6_addrs();
    let mut seg = vec![0u8; 256];
    let n = odata(b"udp6").emit(&mut seg[UDP_HEADER_LEN..]).unwrap();
    let udp = UdpRepr {
        src_port: 40000,
        dst_port: 3056,
    };
    let len = udp
        .emit(&mut seg, n, IpAddr::V6(src), IpAddr::V6(dst))
        .unwrap();
    seg.truncate(len);
    // Independent check: pseudo-header (src, dst, 32-bit length, next header 17).
    let acc = ref_sum(&src.octets()) + ref_sum(&dst.octets()) + len as u32 + 17 + ref_sum(&seg);
    assert_eq!(fold(acc), 0xffff);
    let ip = Ipv6Repr {
        src,
        dst,
        next_header: 17,
        hop_limit: 8,
        payload_len: len as u16,
    };
    let mut frame = vec![0u8; 40];
    ip.emit(&mut frame).unwrap();
    frame.extend_from_slice(&seg);
    let p = pgm_payload_of_ipv6(&frame, Framing::udp_default()).unwrap();
    assert!(!p.udp_checksum_bad);
    assert_eq!(PacketRepr::parse(p.pgm).unwrap(), odata(b"udp6"));
    // A zero UDP checksum is invalid over IPv6 (RFC 8200 section 8.1); the PGM
    // checksum still vouches for the packet.
    frame[46] = 0;
    frame[47] = 0;
    let p = pgm_payload_of_ipv6(&frame, Framing::udp_default()).unwrap();
    assert!(p.udp_checksum_bad);
    // ... unless it is absent too.
    frame[48 + 6] = 0;
    frame[48 + 7] = 0;
    assert_eq!(
        pgm_payload_of_ipv6(&frame, Framing::udp_default()),
        Err(Error::BadUdpChecksum)
    );
}

#[test]
fn framing_defaults() {
    assert_eq!(
        Framing::udp_default(),
        Framing::Udp {
            ucast_port: 3055,
            mcast_port: 3056
        }
    );
    assert_eq!(Framing::default(), Framing::RawIp);
    assert_eq!(Framing::RawIp.encap_len(), 0);
    assert_eq!(Framing::udp_default().ip_protocol(), 17);
}

proptest::proptest! {
    /// The checksum rule over any payload, any UDP checksum field and any PGM checksum
    /// field: accepted exactly when the UDP checksum verifies (or is absent over IPv4),
    /// or else when the PGM checksum is present and verifies; a packet accepted on the
    /// PGM checksum alone says so.
    #[test]
    fn udp_or_pgm_checksum_vouches_for_the_packet(
        payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
        udp_sum in proptest::prelude::any::<u16>(),
        pgm_sum in proptest::option::of(proptest::prelude::any::<u16>()),
    ) {
        let framing = Framing::udp_default();
        let (mut frame, _) = v4_frame(framing, &payload);
        if let Some(c) = pgm_sum {
            frame[34..36].copy_from_slice(&c.to_be_bytes());
        }
        frame[26..28].copy_from_slice(&udp_sum.to_be_bytes());
        // Verdicts computed independently of the code under test.
        let udp_len = frame.len() - 20;
        let udp_ok = udp_sum == 0
            || fold(ref_sum(&frame[12..20]) + 17 + udp_len as u32 + ref_sum(&frame[20..])) == 0xffff;
        let pgm_field = u16::from_be_bytes([frame[34], frame[35]]);
        let pgm_ok = pgm_field != 0 && fold(ref_sum(&frame[28..])) == 0xffff;
        let r = pgm_payload_of_ipv4(&frame, framing);
        match r {
            Ok(p) => {
                proptest::prop_assert!(udp_ok || pgm_ok);
                proptest::prop_assert_eq!(p.udp_checksum_bad, !udp_ok);
            }
            Err(e) => {
                proptest::prop_assert!(!udp_ok && !pgm_ok, "{e:?}");
                proptest::prop_assert_eq!(e, Error::BadUdpChecksum);
            }
        }
        // Unmodified, the PGM checksum that xpgm emits verifies.
        if pgm_sum.is_none() {
            proptest::prop_assert!(pgm_ok);
        }
    }
}
