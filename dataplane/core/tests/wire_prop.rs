//! Property tests: emit -> parse is the identity for every packet type and option;
//! arbitrary bytes never panic; single-bit corruption is caught by the checksum.

use core::net::{Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;

use xpgm_core::Sqn;
use xpgm_core::wire::framing::{Framing, pgm_payload_of_ipv4, pgm_payload_of_ipv6};
use xpgm_core::wire::{
    Ack, Body, Cr, Data, Error, Fragment, Gsi, Nak, NakBoIvl, NakBoRng, NakList, Nla, OptionIter,
    Options, Packet, PacketRepr, ParityPrm, Poll, Polr, Spm, ty,
};

fn sqn() -> impl Strategy<Value = Sqn> {
    any::<u32>().prop_map(Sqn)
}

fn nla() -> impl Strategy<Value = Nla> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|a| Nla::V4(Ipv4Addr::from(a))),
        any::<[u8; 16]>().prop_map(|a| Nla::V6(Ipv6Addr::from(a))),
    ]
}

fn nak_list() -> impl Strategy<Value = NakList> {
    vec(sqn(), 0..=62).prop_map(|v| {
        let mut l = NakList::default();
        for s in v {
            assert!(l.push(s));
        }
        l
    })
}

fn cr() -> impl Strategy<Value = Cr> {
    (any::<u8>(), sqn(), any::<[u16; 4]>(), nla()).prop_map(|(flags, lead, w, worst_receiver)| Cr {
        flags,
        lead,
        ne_worst_link: w[0],
        ne_worst_path: w[1],
        rx_worst: w[2],
        num_reporters: w[3],
        worst_receiver,
    })
}

fn options() -> impl Strategy<Value = Options> {
    let a = (
        of(
            (sqn(), any::<u32>(), any::<u32>()).prop_map(|(first_sqn, offset, apdu_len)| {
                Fragment {
                    first_sqn,
                    offset,
                    apdu_len,
                }
            }),
        ),
        nak_list(),
        of(sqn()),
        of((any::<u32>(), sqn()).prop_map(|(ivl, ivl_sqn)| NakBoIvl { ivl, ivl_sqn })),
        of((any::<u32>(), any::<u32>()).prop_map(|(min, max)| NakBoRng { min, max })),
        of(nla()),
        any::<[bool; 3]>(),
        of(any::<bool>()),
    );
    let b =
        (
            of((any::<bool>(), any::<bool>(), any::<u32>()).prop_map(
                |(proactive, on_demand, tgs)| ParityPrm {
                    proactive,
                    on_demand,
                    tgs,
                },
            )),
            of(any::<u32>()),
            of(any::<u32>()),
            any::<bool>(),
            of(nla()),
            of(cr()),
            of(any::<u8>()),
            any::<[bool; 3]>(),
        );
    (a, b).prop_map(
        |(
            (fragment, nak_list, join, nak_bo_ivl, nak_bo_rng, redirect, sfn, rst),
            (parity_prm, parity_grp, curr_tgsize, nbr_unreach, path_nla, cr, crqst, bits),
        )| Options {
            fragment,
            nak_list,
            join,
            nak_bo_ivl,
            nak_bo_rng,
            redirect,
            syn: sfn[0],
            fin: sfn[1],
            rst,
            parity_prm,
            parity_grp,
            curr_tgsize,
            nbr_unreach,
            path_nla,
            cr,
            crqst,
            invalid: bits[0],
            unknown_count: 0,
            unknown_types: [0; 4],
            parity: bits[1],
            var_pktlen: bits[2],
        },
    )
}

/// A body whose payload (for ODATA/RDATA) lives in the accompanying Vec.
#[derive(Clone, Debug)]
enum OwnedBody {
    Spm(Spm),
    Poll(Poll),
    Polr(Polr),
    Odata(Sqn, Sqn),
    Rdata(Sqn, Sqn),
    Nak(Nak),
    Nnak(Nak),
    Ncf(Nak),
    Spmr,
}

fn nak() -> impl Strategy<Value = Nak> {
    (sqn(), nla(), nla()).prop_map(|(sqn, source, group)| Nak { sqn, source, group })
}

fn body() -> impl Strategy<Value = OwnedBody> {
    prop_oneof![
        (sqn(), sqn(), sqn(), nla()).prop_map(|(sqn, trail, lead, path)| OwnedBody::Spm(Spm {
            sqn,
            trail,
            lead,
            path
        })),
        (
            sqn(),
            any::<(u16, u16)>(),
            nla(),
            any::<u32>(),
            any::<[u8; 4]>(),
            any::<u32>()
        )
            .prop_map(|(sqn, (round, s_type), path, bo_ivl, rand, mask)| {
                OwnedBody::Poll(Poll {
                    sqn,
                    round,
                    s_type,
                    path,
                    bo_ivl,
                    rand,
                    mask,
                })
            }),
        (sqn(), any::<u16>()).prop_map(|(sqn, round)| OwnedBody::Polr(Polr { sqn, round })),
        (sqn(), sqn()).prop_map(|(a, b)| OwnedBody::Odata(a, b)),
        (sqn(), sqn()).prop_map(|(a, b)| OwnedBody::Rdata(a, b)),
        nak().prop_map(OwnedBody::Nak),
        nak().prop_map(OwnedBody::Nnak),
        nak().prop_map(OwnedBody::Ncf),
        Just(OwnedBody::Spmr),
    ]
}

#[derive(Clone, Debug)]
struct Case {
    sport: u16,
    dport: u16,
    gsi: [u8; 6],
    body: OwnedBody,
    payload: Vec<u8>,
    options: Options,
}

impl Case {
    fn repr(&self) -> PacketRepr<'_> {
        let data = |sqn, trail| Data {
            sqn,
            trail,
            payload: &self.payload,
        };
        let body = match &self.body {
            OwnedBody::Spm(s) => Body::Spm(*s),
            OwnedBody::Poll(p) => Body::Poll(*p),
            OwnedBody::Polr(p) => Body::Polr(*p),
            OwnedBody::Odata(a, b) => Body::Odata(data(*a, *b)),
            OwnedBody::Rdata(a, b) => Body::Rdata(data(*a, *b)),
            OwnedBody::Nak(n) => Body::Nak(*n),
            OwnedBody::Nnak(n) => Body::Nnak(*n),
            OwnedBody::Ncf(n) => Body::Ncf(*n),
            OwnedBody::Spmr => Body::Spmr,
        };
        PacketRepr {
            sport: self.sport,
            dport: self.dport,
            gsi: Gsi(self.gsi),
            body,
            options: self.options,
        }
    }
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<u16>(),
        any::<u16>(),
        any::<[u8; 6]>(),
        body(),
        vec(any::<u8>(), 0..1500),
        options(),
    )
        .prop_map(|(sport, dport, gsi, body, payload, options)| Case {
            sport,
            dport,
            gsi,
            body,
            payload,
            options,
        })
}

fn emit(r: &PacketRepr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; r.buffer_len()];
    let n = r.emit(&mut buf).expect("encodable");
    assert_eq!(n, buf.len(), "emit wrote buffer_len bytes");
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn emit_parse_identity(c in case()) {
        let r = c.repr();
        let bytes = emit(&r);
        let back = PacketRepr::parse(&bytes);
        prop_assert_eq!(back, Ok(r));
        // The view sees the same header and a valid checksum.
        let v = Packet::new_checked(&bytes[..]).unwrap();
        prop_assert!(v.verify_checksum());
        prop_assert_eq!(v.packet_type(), r.packet_type().code());
        prop_assert_eq!(v.gsi(), r.gsi);
    }

    #[test]
    fn single_bit_flip_is_detected(c in case(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let r = c.repr();
        let mut bytes = emit(&r);
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        let got = PacketRepr::parse(&bytes);
        if (6..8).contains(&i) && bytes[6] == 0 && bytes[7] == 0 {
            // The checksum field became "no checksum": only data packets must refuse.
            let data = matches!(r.body, Body::Odata(_) | Body::Rdata(_));
            prop_assert_eq!(got.is_err(), data);
        } else {
            prop_assert_eq!(got, Err(Error::BadChecksum));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..600)) {
        let _ = PacketRepr::parse(&bytes);
        if let Ok(r) = PacketRepr::parse_unchecked(&bytes) {
            // Whatever decodes re-encodes (except ACK) and decodes to the same value,
            // up to unknown options, which emit cannot reproduce.
            let mut buf = vec![0u8; r.buffer_len()];
            match r.emit(&mut buf) {
                Ok(n) => {
                    let again = PacketRepr::parse(&buf[..n]).unwrap();
                    let mut want = r;
                    want.options.unknown_count = 0;
                    want.options.unknown_types = [0; 4];
                    prop_assert_eq!(again, want);
                }
                Err(e) => prop_assert_eq!(e, Error::Unencodable),
            }
        }
        if let Ok(p) = Packet::new_checked(&bytes[..]) {
            let _ = p.verify_checksum();
            for skip in [0usize, 8, 12, 20] {
                if let Ok(it) = OptionIter::new(p.body().get(skip..).unwrap_or(&[])) {
                    for o in it.take(300) {
                        let _ = o;
                    }
                }
            }
        }
        let _ = pgm_payload_of_ipv4(&bytes, Framing::RawIp);
        let _ = pgm_payload_of_ipv4(&bytes, Framing::udp_default());
        let _ = pgm_payload_of_ipv6(&bytes, Framing::RawIp);
        let _ = pgm_payload_of_ipv6(&bytes, Framing::udp_default());
    }

    #[test]
    fn mutated_valid_packets_never_panic(c in case(), edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = emit(&c.repr());
        for (at, v) in edits {
            let i = at.index(bytes.len());
            bytes[i] = v;
        }
        // Skip the checksum so the structural checks run on the damage.
        let _ = PacketRepr::parse_unchecked(&bytes);
        let _ = PacketRepr::parse(&bytes);
    }

    #[test]
    fn ack_built_by_view_parses(
        sport in any::<u16>(), dport in any::<u16>(), gsi in any::<[u8; 6]>(),
        rx_max in any::<u32>(), bitmap in any::<u32>(), alt in any::<bool>()
    ) {
        let mut buf = [0u8; 24];
        let mut p = Packet::new_checked(&mut buf[..]).unwrap();
        p.set_src_port(sport);
        p.set_dst_port(dport);
        p.set_packet_type(if alt { ty::ACK_ALT } else { ty::ACK });
        p.set_options(0);
        p.set_gsi(Gsi(gsi));
        p.set_tsdu_len(0);
        p.body_mut()[..4].copy_from_slice(&rx_max.to_be_bytes());
        p.body_mut()[4..8].copy_from_slice(&bitmap.to_be_bytes());
        p.fill_checksum();
        let r = PacketRepr::parse(&buf).unwrap();
        prop_assert_eq!(r.body, Body::Ack(Ack { rx_max: Sqn(rx_max), bitmap }));
        prop_assert_eq!((r.sport, r.dport, r.gsi), (sport, dport, Gsi(gsi)));
        prop_assert_eq!(r.tsi().sport, dport);
    }
}
