//! Replays the decode fuzz target's seed corpus (`dataplane/core/fuzz/corpus/decode/`)
//! through the same invariants the fuzz target checks, so `cargo test` exercises them.
//!
//! The seeds were written by `generate_corpus` (ignored; run it with
//! `cargo test -p xpgm-core --test wire_fuzz_corpus -- --ignored` to refresh them).

use core::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use xpgm_core::Sqn;
use xpgm_core::wire::framing::{Framing, IPV4_HEADER_LEN, Ipv4Repr, emit_ipv4_frame};
use xpgm_core::wire::{
    Body, Cr, Data, Fragment, Gsi, Nak, NakBoIvl, NakBoRng, NakList, Nla, Options, Packet,
    PacketRepr, ParityPrm, Poll, Polr, Spm, ty,
};

#[path = "../fuzz/check.rs"]
mod check;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decode")
}

#[test]
fn replay_corpus() {
    let mut n = 0;
    let mut parsed = 0;
    for entry in std::fs::read_dir(corpus_dir()).expect("corpus directory") {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        check::check(&data);
        if PacketRepr::parse(&data).is_ok() {
            parsed += 1;
        }
        n += 1;
    }
    // The committed seeds: every packet type and every option, plus IP frames.
    assert!(n >= 30, "only {n} corpus files");
    assert!(parsed >= 25, "only {parsed} seeds parse as PGM");
}

const GSI: Gsi = Gsi([0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f]);
const V4: Nla = Nla::V4(Ipv4Addr::new(192, 0, 2, 10));
const V6: Nla = Nla::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x10));
const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 192, 0, 1));

fn repr(body: Body<'_>, options: Options) -> PacketRepr<'_> {
    PacketRepr {
        sport: 41000,
        dport: 7500,
        gsi: GSI,
        body,
        options,
    }
}

fn nak() -> Nak {
    Nak {
        sqn: Sqn(100),
        source: V4,
        group: GROUP,
    }
}

fn odata(payload: &[u8]) -> Body<'_> {
    Body::Odata(Data {
        sqn: Sqn(100),
        trail: Sqn(90),
        payload,
    })
}

fn one_option_each() -> Vec<(&'static str, Options)> {
    let d = Options::default;
    let mut list = NakList::default();
    for i in 101..=162 {
        list.push(Sqn(i));
    }
    vec![
        (
            "fragment",
            Options {
                fragment: Some(Fragment {
                    first_sqn: Sqn(99),
                    offset: 1400,
                    apdu_len: 4000,
                }),
                ..d()
            },
        ),
        (
            "nak_list",
            Options {
                nak_list: list,
                ..d()
            },
        ),
        (
            "join",
            Options {
                join: Some(Sqn(5)),
                ..d()
            },
        ),
        (
            "nak_bo_ivl",
            Options {
                nak_bo_ivl: Some(NakBoIvl {
                    ivl: 50_000,
                    ivl_sqn: Sqn(3),
                }),
                ..d()
            },
        ),
        (
            "nak_bo_rng",
            Options {
                nak_bo_rng: Some(NakBoRng {
                    min: 1000,
                    max: 90_000,
                }),
                ..d()
            },
        ),
        (
            "redirect_v6",
            Options {
                redirect: Some(V6),
                ..d()
            },
        ),
        ("syn", Options { syn: true, ..d() }),
        ("fin", Options { fin: true, ..d() }),
        (
            "rst",
            Options {
                rst: Some(true),
                ..d()
            },
        ),
        (
            "parity_prm",
            Options {
                parity_prm: Some(ParityPrm {
                    proactive: true,
                    on_demand: true,
                    tgs: 16,
                }),
                ..d()
            },
        ),
        (
            "parity_grp",
            Options {
                parity_grp: Some(7),
                parity: true,
                ..d()
            },
        ),
        (
            "curr_tgsize",
            Options {
                curr_tgsize: Some(12),
                var_pktlen: true,
                ..d()
            },
        ),
        (
            "nbr_unreach",
            Options {
                nbr_unreach: true,
                ..d()
            },
        ),
        (
            "path_nla_v4",
            Options {
                path_nla: Some(V4),
                ..d()
            },
        ),
        (
            "path_nla_v6",
            Options {
                path_nla: Some(V6),
                ..d()
            },
        ),
        (
            "cr",
            Options {
                cr: Some(Cr {
                    flags: 1,
                    lead: Sqn(77),
                    ne_worst_link: 1,
                    ne_worst_path: 2,
                    rx_worst: 3,
                    num_reporters: 4,
                    worst_receiver: V4,
                }),
                ..d()
            },
        ),
        (
            "crqst",
            Options {
                crqst: Some(2),
                ..d()
            },
        ),
        (
            "invalid",
            Options {
                invalid: true,
                ..d()
            },
        ),
    ]
}

fn emit(r: &PacketRepr<'_>) -> Vec<u8> {
    let mut buf = vec![0u8; r.buffer_len()];
    r.emit(&mut buf).unwrap();
    buf
}

fn seeds() -> Vec<(String, Vec<u8>)> {
    let payload = b"seed payload";
    let mut out = Vec::new();
    let d = Options::default();
    let bodies: Vec<(&str, Body<'_>)> = vec![
        (
            "spm_v4",
            Body::Spm(Spm {
                sqn: Sqn(1),
                trail: Sqn(2),
                lead: Sqn(3),
                path: V4,
            }),
        ),
        (
            "spm_v6",
            Body::Spm(Spm {
                sqn: Sqn(1),
                trail: Sqn(2),
                lead: Sqn(3),
                path: V6,
            }),
        ),
        (
            "poll",
            Body::Poll(Poll {
                sqn: Sqn(4),
                round: 1,
                s_type: 0,
                path: V4,
                bo_ivl: 100,
                rand: *b"rand",
                mask: 0xff,
            }),
        ),
        (
            "polr",
            Body::Polr(Polr {
                sqn: Sqn(4),
                round: 1,
            }),
        ),
        ("odata", odata(payload)),
        (
            "rdata",
            Body::Rdata(Data {
                sqn: Sqn(100),
                trail: Sqn(90),
                payload,
            }),
        ),
        ("nak", Body::Nak(nak())),
        ("nnak", Body::Nnak(nak())),
        (
            "ncf_v6",
            Body::Ncf(Nak {
                sqn: Sqn(100),
                source: V6,
                group: V6,
            }),
        ),
        ("spmr", Body::Spmr),
    ];
    for (name, body) in bodies {
        out.push((format!("type_{name}"), emit(&repr(body, d))));
    }
    // ACK, both type codes, built through the view.
    for (name, code) in [("ack", ty::ACK), ("ack_alt", ty::ACK_ALT)] {
        let mut b = vec![0u8; 24];
        let mut p = Packet::new_checked(&mut b[..]).unwrap();
        p.set_src_port(7500);
        p.set_dst_port(41000);
        p.set_packet_type(code);
        p.set_gsi(GSI);
        p.body_mut()[..4].copy_from_slice(&100u32.to_be_bytes());
        p.body_mut()[4..].copy_from_slice(&0xffff_0000u32.to_be_bytes());
        p.fill_checksum();
        out.push((format!("type_{name}"), b));
    }
    for (name, o) in one_option_each() {
        let body = if name == "nak_list" {
            Body::Nak(nak())
        } else {
            odata(payload)
        };
        out.push((format!("opt_{name}"), emit(&repr(body, o))));
    }
    // Every option at once.
    let mut all = Options::default();
    for (_, o) in one_option_each() {
        merge(&mut all, &o);
    }
    out.push(("opt_all".into(), emit(&repr(Body::Nak(nak()), all))));
    // IPv4 frames, raw and UDP-encapsulated.
    for (name, framing) in [("raw", Framing::RawIp), ("udp", Framing::udp_default())] {
        let r = repr(odata(payload), Options::default());
        let off = IPV4_HEADER_LEN + framing.encap_len();
        let mut buf = vec![0u8; off + r.buffer_len()];
        let n = r.emit(&mut buf[off..]).unwrap();
        let ip = Ipv4Repr {
            src: Ipv4Addr::new(192, 0, 2, 1),
            dst: Ipv4Addr::new(239, 192, 0, 1),
            protocol: 0,
            ttl: 16,
            tos: 0,
            ident: 1,
            payload_len: 0,
        };
        let len = emit_ipv4_frame(&mut buf, &ip, framing, (3055, 3056), n).unwrap();
        buf.truncate(len);
        out.push((format!("ipv4_{name}"), buf));
    }
    out
}

fn merge(all: &mut Options, o: &Options) {
    all.fragment = all.fragment.or(o.fragment);
    if !o.nak_list.is_empty() {
        all.nak_list = o.nak_list;
    }
    all.join = all.join.or(o.join);
    all.nak_bo_ivl = all.nak_bo_ivl.or(o.nak_bo_ivl);
    all.nak_bo_rng = all.nak_bo_rng.or(o.nak_bo_rng);
    all.redirect = all.redirect.or(o.redirect);
    all.syn |= o.syn;
    all.fin |= o.fin;
    all.rst = all.rst.or(o.rst);
    all.parity_prm = all.parity_prm.or(o.parity_prm);
    all.parity_grp = all.parity_grp.or(o.parity_grp);
    all.curr_tgsize = all.curr_tgsize.or(o.curr_tgsize);
    all.nbr_unreach |= o.nbr_unreach;
    all.path_nla = all.path_nla.or(o.path_nla);
    all.cr = all.cr.or(o.cr);
    all.crqst = all.crqst.or(o.crqst);
    all.invalid |= o.invalid;
}

#[test]
fn seeds_roundtrip() {
    for (name, bytes) in seeds() {
        check::check(&bytes);
        if !name.starts_with("ipv4") {
            assert!(PacketRepr::parse(&bytes).is_ok(), "seed {name} must parse");
        }
    }
}

#[test]
#[ignore = "writes the seed corpus; run once by hand"]
fn generate_corpus() {
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds() {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
