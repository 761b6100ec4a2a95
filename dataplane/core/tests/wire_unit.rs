//! Hand-written codec tests: layouts built byte by byte from RFC 3208 / OpenPGM's
//! `packet.h`, every error variant, option edge cases.

use core::net::{Ipv4Addr, Ipv6Addr};

use xpgm_core::Sqn;
use xpgm_core::wire::{
    Ack, Body, Data, Error, Fragment, Gsi, Nak, Nla, OptionIter, Options, Packet, PacketRepr,
    PacketType, Spm, opt,
};

/// Independent RFC 1071 checksum (16 bits at a time), not the codec's.
fn ref_checksum(bytes: &[u8]) -> u16 {
    let mut acc: u32 = 0;
    for pair in bytes.chunks(2) {
        let w = (u32::from(pair[0]) << 8) | u32::from(*pair.get(1).unwrap_or(&0));
        acc += w;
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    !(acc as u16)
}

/// Writes the reference checksum into bytes 6..8 (zeroed first).
fn seal(mut b: Vec<u8>) -> Vec<u8> {
    b[6] = 0;
    b[7] = 0;
    let c = ref_checksum(&b);
    b[6..8].copy_from_slice(&c.to_be_bytes());
    b
}

const GSI: [u8; 6] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06];

/// ODATA, sqn 16, trail 1, OPT_LENGTH + OPT_FRAGMENT (E), payload "hello".
fn odata_bytes() -> Vec<u8> {
    let mut b = vec![
        0x12, 0x34, // sport
        0x1d, 0x4c, // dport 7500
        0x04, // ODATA
        0x01, // options present
        0x00, 0x00, // checksum (filled by seal)
    ];
    b.extend_from_slice(&GSI);
    b.extend_from_slice(&[0x00, 0x05]); // TSDU length
    b.extend_from_slice(&[0, 0, 0, 16, 0, 0, 0, 1]); // sqn, trail
    b.extend_from_slice(&[0x00, 0x04, 0x00, 0x14]); // OPT_LENGTH, len 4, total 20
    b.extend_from_slice(&[0x81, 0x10, 0x00, 0x00]); // OPT_FRAGMENT|E, len 16, ext, rsvd
    b.extend_from_slice(&[0, 0, 0, 15, 0, 0, 0, 3, 0, 0, 0, 8]); // first, off, apdu len
    b.extend_from_slice(b"hello");
    seal(b)
}

/// NAK (IPv4 source, IPv6 group) with a two-entry NAK list.
fn nak_bytes() -> Vec<u8> {
    let mut b = vec![0x1d, 0x4c, 0x12, 0x34, 0x08, 0x03, 0, 0];
    b.extend_from_slice(&GSI);
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&[0xff, 0xff, 0xff, 0xfe]); // sqn
    b.extend_from_slice(&[0, 1, 0, 0, 10, 0, 0, 1]); // AFI 1, rsvd, 10.0.0.1
    b.extend_from_slice(&[0, 2, 0, 0]); // AFI 2, rsvd
    b.extend_from_slice(&Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 1).octets());
    b.extend_from_slice(&[0x00, 0x04, 0x00, 16]); // OPT_LENGTH total 4 + 12
    b.extend_from_slice(&[0x82, 12, 0, 0, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    seal(b)
}

#[test]
fn odata_layout_from_rfc() {
    let b = odata_bytes();
    let p = PacketRepr::parse(&b).expect("valid ODATA");
    assert_eq!(p.sport, 0x1234);
    assert_eq!(p.dport, 7500);
    assert_eq!(p.gsi, Gsi(GSI));
    assert_eq!(p.packet_type(), PacketType::Odata);
    assert_eq!(
        p.body,
        Body::Odata(Data {
            sqn: Sqn(16),
            trail: Sqn(1),
            payload: b"hello"
        })
    );
    assert_eq!(
        p.options.fragment,
        Some(Fragment {
            first_sqn: Sqn(15),
            offset: 3,
            apdu_len: 8
        })
    );
    // Our emitter must produce the very same bytes.
    let mut out = [0u8; 128];
    let n = p.emit(&mut out).unwrap();
    assert_eq!(&out[..n], &b[..]);
    assert_eq!(p.buffer_len(), b.len());
}

#[test]
fn nak_layout_mixed_afi() {
    let b = nak_bytes();
    let p = PacketRepr::parse(&b).expect("valid NAK");
    assert_eq!(
        p.body,
        Body::Nak(Nak {
            sqn: Sqn(0xffff_fffe),
            source: Nla::V4(Ipv4Addr::new(10, 0, 0, 1)),
            group: Nla::V6(Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, 1)),
        })
    );
    assert_eq!(p.options.nak_list.as_slice(), &[Sqn(0xffff_ffff), Sqn(0)]);
    assert_eq!(p.tsi().sport, 0x1234);
    let mut out = [0u8; 128];
    let n = p.emit(&mut out).unwrap();
    assert_eq!(&out[..n], &b[..], "network-significant bit 0x02 and layout");
}

#[test]
fn spm_roundtrip_and_zero_checksum_policy() {
    let r = PacketRepr {
        sport: 1000,
        dport: 7500,
        gsi: Gsi(GSI),
        body: Body::Spm(Spm {
            sqn: Sqn(7),
            trail: Sqn(1),
            lead: Sqn(9),
            path: Nla::V4(Ipv4Addr::new(192, 0, 2, 1)),
        }),
        options: Options {
            syn: true,
            ..Options::default()
        },
    };
    let mut buf = [0u8; 64];
    let n = r.emit(&mut buf).unwrap();
    assert_eq!(n, 16 + 20 + 8);
    assert_eq!(PacketRepr::parse(&buf[..n]), Ok(r));
    // A zero checksum means "none" and is accepted for an SPM ...
    buf[6] = 0;
    buf[7] = 0;
    assert_eq!(PacketRepr::parse(&buf[..n]), Ok(r));
    // ... but not for ODATA.
    let mut d = odata_bytes();
    d[6] = 0;
    d[7] = 0;
    assert_eq!(PacketRepr::parse(&d), Err(Error::BadChecksum));
}

#[test]
fn ack_decodes_both_codes_but_does_not_encode() {
    for code in [0x0d, 0x0b] {
        let mut b = vec![0x1d, 0x4c, 0x12, 0x34, code, 0, 0, 0];
        b.extend_from_slice(&GSI);
        b.extend_from_slice(&[0, 0, 0, 0, 1, 0, 0x80, 0, 0, 1]);
        let b = seal(b);
        let p = PacketRepr::parse(&b).unwrap();
        assert_eq!(
            p.body,
            Body::Ack(Ack {
                rx_max: Sqn(256),
                bitmap: 0x8000_0001
            })
        );
        assert_eq!(p.emit(&mut [0u8; 64]), Err(Error::Unencodable));
    }
}

#[test]
fn truncated_everywhere() {
    let b = odata_bytes();
    for n in 0..b.len() {
        let mut v = b[..n].to_vec();
        if v.len() >= 16 {
            // Keep the checksum valid for the shorter packet so that the length
            // checks, not the checksum, reject it.
            v = seal(v);
        }
        assert!(PacketRepr::parse(&v).is_err(), "prefix of {n} bytes parsed");
    }
    assert_eq!(PacketRepr::parse(&b[..10]), Err(Error::Truncated));
}

#[test]
fn bad_checksum() {
    let mut b = odata_bytes();
    b[20] ^= 0x40;
    assert_eq!(PacketRepr::parse(&b), Err(Error::BadChecksum));
}

#[test]
fn unknown_type() {
    let mut b = odata_bytes();
    b[4] = 0x03;
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::UnknownType(0x03)));
}

#[test]
fn tsdu_length_inconsistent() {
    let mut b = odata_bytes();
    b[15] = 4; // one byte of payload left over
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::BadLength));
    let mut b = odata_bytes();
    b[15] = 6; // one byte missing
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::Truncated));
}

#[test]
fn bad_afi() {
    let mut b = nak_bytes();
    b[21] = 3; // source NLA AFI
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::BadAfi(3)));
}

#[test]
fn opt_length_not_first() {
    let mut b = odata_bytes();
    b[24] = opt::JOIN;
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::BadOptions));
}

#[test]
fn opt_length_inconsistent() {
    // Total length says 24 (four bytes more than the options hold): the E bit comes early.
    let mut b = odata_bytes();
    b[27] = 24;
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::BadLength));
    // Total length smaller than OPT_LENGTH itself.
    let mut b = odata_bytes();
    b[27] = 2;
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::BadLength));
    // OPT_LENGTH with a length other than 4.
    let mut b = odata_bytes();
    b[25] = 5;
    assert_eq!(
        PacketRepr::parse(&seal(b)),
        Err(Error::BadOption(opt::LENGTH))
    );
    // Total length past the end of the packet.
    let mut b = nak_bytes();
    let at = b.len() - 16 + 3;
    b[at] = 200;
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::Truncated));
}

#[test]
fn opt_end_missing() {
    let mut b = odata_bytes();
    b[28] = opt::FRAGMENT; // clear E
    assert_eq!(PacketRepr::parse(&seal(b)), Err(Error::BadOptions));
}

#[test]
fn option_length_too_short_or_wrong() {
    let mut b = odata_bytes();
    b[29] = 2; // shorter than an option header
    assert_eq!(
        PacketRepr::parse(&seal(b)),
        Err(Error::BadOption(opt::FRAGMENT))
    );
    let mut b = odata_bytes();
    b[29] = 20; // runs past the area
    assert_eq!(
        PacketRepr::parse(&seal(b)),
        Err(Error::BadOption(opt::FRAGMENT))
    );
}

/// ODATA whose options are OPT_LENGTH, one option of type `kind` with OPX `opx` and
/// `value` bytes, then OPT_SYN (E).
fn odata_with_unknown(kind: u8, opx: u8, value: &[u8]) -> Vec<u8> {
    let mut b = vec![0x12, 0x34, 0x1d, 0x4c, 0x04, 0x01, 0, 0];
    b.extend_from_slice(&GSI);
    b.extend_from_slice(&[0, 1, 0, 0, 0, 1, 0, 0, 0, 1]);
    let total = 4 + 3 + value.len() + 4;
    b.extend_from_slice(&[0x00, 0x04, 0x00, total as u8]);
    b.extend_from_slice(&[kind, (3 + value.len()) as u8, opx]);
    b.extend_from_slice(value);
    b.extend_from_slice(&[opt::SYN | opt::END, 4, 0, 0]);
    b.push(b'x');
    seal(b)
}

#[test]
fn unknown_option_is_skipped_and_counted() {
    let b = odata_with_unknown(0x21, opt::OPX_IGNORE, &[1, 2, 3, 4, 5]);
    let p = PacketRepr::parse(&b).unwrap();
    assert!(
        p.options.syn,
        "options after the unknown one are still read"
    );
    assert_eq!(p.options.unknown_count, 1);
    assert_eq!(p.options.unknown_types[0], 0x21);
    assert!(!p.options.invalid);
    // A zero-length value is fine for an unknown option.
    let b = odata_with_unknown(0x22, 0, &[]);
    let p = PacketRepr::parse(&b).unwrap();
    assert_eq!(p.options.unknown_count, 1);
}

#[test]
fn unknown_option_opx_invalidate_and_discard() {
    let b = odata_with_unknown(0x21, opt::OPX_INVALIDATE, &[0]);
    let p = PacketRepr::parse(&b).unwrap();
    assert!(p.options.invalid);
    assert_eq!(p.options.unknown_count, 1);
    assert_eq!(
        PacketRepr::parse(&odata_with_unknown(0x21, opt::OPX_DISCARD, &[0])),
        Err(Error::UnknownOptionDiscard(0x21))
    );
    // OPX on a known option does not matter.
    let b = odata_with_unknown(opt::JOIN, opt::OPX_DISCARD, &[0, 0, 0, 0, 9]);
    let p = PacketRepr::parse(&b).unwrap();
    assert_eq!(p.options.join, Some(Sqn(9)));
}

#[test]
fn opt_invalid_is_recorded() {
    let b = odata_with_unknown(opt::INVALID, 0, &[9, 9, 9]);
    let p = PacketRepr::parse(&b).unwrap();
    assert!(p.options.invalid);
    assert_eq!(p.options.unknown_count, 0);
}

#[test]
fn known_option_with_wrong_length() {
    let b = odata_with_unknown(opt::JOIN, 0, &[0, 0, 0, 9]);
    assert_eq!(PacketRepr::parse(&b), Err(Error::BadOption(opt::JOIN)));
    let b = odata_with_unknown(opt::NAK_LIST, 0, &[0, 0, 9, 1, 2, 3]);
    assert_eq!(PacketRepr::parse(&b), Err(Error::BadOption(opt::NAK_LIST)));
    let b = odata_with_unknown(opt::PATH_NLA, 0, &[0, 1, 2, 3, 4, 5]);
    assert_eq!(PacketRepr::parse(&b), Err(Error::BadOption(opt::PATH_NLA)));
    // Truncated NLA inside OPT_REDIRECT.
    let b = odata_with_unknown(opt::REDIRECT, 0, &[0, 0, 2, 0, 0, 1, 2, 3, 4]);
    assert_eq!(PacketRepr::parse(&b), Err(Error::BadOption(opt::REDIRECT)));
    let b = odata_with_unknown(opt::REDIRECT, 0, &[0, 0, 9, 0, 0, 1, 2, 3, 4]);
    assert_eq!(PacketRepr::parse(&b), Err(Error::BadAfi(9)));
}

#[test]
fn truncated_nla_in_body() {
    let b = nak_bytes();
    // Cut inside the IPv6 group address (after sqn + v4 NLA + AFI) and drop the
    // options flag so that only the body is read.
    let mut v = b[..16 + 4 + 8 + 4 + 10].to_vec();
    v[5] = 0;
    assert_eq!(PacketRepr::parse(&seal(v)), Err(Error::Truncated));
}

#[test]
fn emit_buffer_too_small() {
    let b = odata_bytes();
    let p = PacketRepr::parse(&b).unwrap();
    let mut small = [0u8; 20];
    assert_eq!(p.emit(&mut small), Err(Error::BufferTooSmall));
}

#[test]
fn emit_unencodable_payload() {
    let big = vec![0u8; 70_000];
    let p = PacketRepr {
        sport: 1,
        dport: 2,
        gsi: Gsi::default(),
        body: Body::Odata(Data {
            sqn: Sqn(1),
            trail: Sqn(0),
            payload: &big,
        }),
        options: Options::default(),
    };
    let mut buf = vec![0u8; 80_000];
    assert_eq!(p.emit(&mut buf), Err(Error::Unencodable));
}

#[test]
fn view_and_option_iter() {
    let b = odata_bytes();
    let p = Packet::new_checked(&b[..]).unwrap();
    assert!(p.verify_checksum());
    assert_eq!(p.packet_type(), 0x04);
    assert_eq!(p.tsdu_len(), 5);
    let it = OptionIter::new(&p.body()[8..]).unwrap();
    assert_eq!(it.total_len(), 20);
    let all: Vec<_> = it.collect();
    assert_eq!(all.len(), 1);
    let o = all[0].unwrap();
    assert_eq!(o.kind, opt::FRAGMENT);
    assert!(o.end);
    assert_eq!(o.wire_len(), 16);
    assert_eq!(Packet::new_checked(&b[..15]), Err(Error::Truncated));

    let mut m = b.clone();
    let mut v = Packet::new_checked(&mut m[..]).unwrap();
    v.set_src_port(9);
    assert!(!v.verify_checksum());
    v.fill_checksum();
    assert!(v.verify_checksum());
    assert_eq!(PacketRepr::parse(&m).unwrap().sport, 9);
}
