//! BPF_PROG_TEST_RUN tests of the classifier on hand-built frames: verdicts,
//! counters and steering decisions (per-slot hit counters).
//!
//! Needs root (CAP_BPF); skips with a message otherwise. CI runs as root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xpgm_ebpf::abi::{self, Config, Counter, Direction, SteerKey, SteerValue, UdpPort};
use xpgm_ebpf::{Classifier, Counters, verdict};

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn load() -> Option<Classifier> {
    if !is_root() {
        eprintln!("skipping: BPF_PROG_TEST_RUN needs root (CAP_BPF)");
        return None;
    }
    Some(Classifier::load(Config::default()).expect("load classifier"))
}

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x01, 0, 0x5e, 0x40, 0, 1];
const GROUP4: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 1);
const SRC4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const LOCAL4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const DPORT: u16 = 7500;
const SPORT: u16 = 40001;

const SPM: u8 = 0x00;
const ODATA: u8 = 0x04;
const RDATA: u8 = 0x05;
const NAK: u8 = 0x08;
const NCF: u8 = 0x0a;
const SPMR: u8 = 0x0c;

fn group6() -> Ipv6Addr {
    "ff15::7701".parse().unwrap()
}

fn pgm(sport: u16, dport: u16, ty: u8, payload: usize) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.push(ty);
    p.push(0); // options
    p.extend_from_slice(&[0, 0]); // checksum (not checked by the classifier)
    p.extend_from_slice(&[1, 2, 3, 4, 5, 6]); // gsi
    p.extend_from_slice(&u16::try_from(payload).unwrap().to_be_bytes());
    p.extend(std::iter::repeat_n(0xab, payload));
    p
}

fn csum(b: &[u8]) -> u16 {
    let mut s: u32 = 0;
    for c in b.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        s += u32::from(w);
    }
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}

fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, frag: u16, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&u16::try_from(20 + payload.len()).unwrap().to_be_bytes());
    h.extend_from_slice(&[0x12, 0x34]);
    h.extend_from_slice(&frag.to_be_bytes());
    h.push(16);
    h.push(proto);
    h.extend_from_slice(&[0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(payload);
    h
}

fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, next: u8, payload: &[u8]) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    h.push(next);
    h.push(16);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    h.extend_from_slice(payload);
    h
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&u16::try_from(8 + payload.len()).unwrap().to_be_bytes());
    u.extend_from_slice(&[0, 0]); // checksum optional for IPv4
    u.extend_from_slice(payload);
    u
}

fn eth(ethertype: u16, vlan: Option<u16>, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&DST_MAC);
    f.extend_from_slice(&SRC_MAC);
    if let Some(tci) = vlan {
        f.extend_from_slice(&0x8100u16.to_be_bytes());
        f.extend_from_slice(&tci.to_be_bytes());
    }
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn v4_pgm(dst: Ipv4Addr, ty: u8, sport: u16, dport: u16) -> Vec<u8> {
    eth(
        0x0800,
        None,
        &ipv4(SRC4, dst, 113, 0, &pgm(sport, dport, ty, 32)),
    )
}

/// Runs `frame`, returns the verdict and the counter deltas.
fn run(c: &Classifier, frame: &[u8]) -> (u32, Counters) {
    let before = c.counters().unwrap();
    let v = c.test_run(frame).unwrap();
    let after = c.counters().unwrap();
    let mut d = Counters::default();
    for (i, x) in d.values.iter_mut().enumerate() {
        *x = after.values[i] - before.values[i];
    }
    (v, d)
}

fn only(d: &Counters, expect: &[(Counter, u64)]) {
    for c in Counter::ALL {
        let want = expect.iter().find(|(k, _)| *k == c).map_or(0, |(_, n)| *n);
        assert_eq!(d.get(c), want, "counter {}", c.name());
    }
}

fn steer(c: &mut Classifier, addr: IpAddr, port: u16, dir: Direction, queue: u32, slot: u32) {
    c.insert_steer(
        SteerKey::new(queue, addr, port, dir),
        SteerValue { slot, session: 1 },
    )
    .unwrap();
}

#[test]
fn non_pgm_passes_early() {
    let Some(c) = load() else { return };
    let arp = eth(0x0806, None, &[0u8; 28]);
    let icmp = eth(
        0x0800,
        None,
        &ipv4(SRC4, LOCAL4, 1, 0, &[8, 0, 0, 0, 0, 1, 0, 1]),
    );
    let tcp = eth(0x0800, None, &ipv4(SRC4, LOCAL4, 6, 0, &[0u8; 20]));
    let igmp = eth(
        0x0800,
        None,
        &ipv4(SRC4, GROUP4, 2, 0, &[0x22, 0, 0, 0, 0, 0, 0, 0]),
    );
    let icmp6 = eth(
        0x86dd,
        None,
        &ipv6(
            Ipv6Addr::LOCALHOST,
            group6(),
            58,
            &[128, 0, 0, 0, 0, 1, 0, 1],
        ),
    );
    let udp_other = eth(
        0x0800,
        None,
        &ipv4(SRC4, GROUP4, 17, 0, &udp(5000, 5353, &pgm(1, 2, ODATA, 4))),
    );
    // The kernel refuses test frames shorter than an Ethernet header, so the
    // shortest case is a bare header of an unknown EtherType (LLDP).
    let lldp = eth(0x88cc, None, &[]);
    let short_ip = eth(0x0800, None, &[0x45, 0, 0]);
    for f in [arp, icmp, tcp, igmp, icmp6, udp_other, lldp, short_ip] {
        let (v, d) = run(&c, &f);
        assert_eq!(v, verdict::PASS);
        only(&d, &[(Counter::NonPgm, 1)]);
    }
}

#[test]
fn pgm_for_no_session_is_passed() {
    let Some(c) = load() else { return };
    for ty in [SPM, ODATA, RDATA, NCF, NAK, SPMR, 0x03] {
        let (v, d) = run(&c, &v4_pgm(GROUP4, ty, SPORT, DPORT));
        assert_eq!(v, verdict::PASS);
        only(&d, &[(Counter::Pgm, 1), (Counter::Passed, 1)]);
    }
}

#[test]
fn downstream_ipv4_is_steered_by_group_and_port() {
    let Some(mut c) = load() else { return };
    steer(&mut c, GROUP4.into(), DPORT, Direction::Downstream, 0, 7);
    for ty in [SPM, ODATA, RDATA, NCF] {
        let before = c.slot_hits(7).unwrap();
        let (v, d) = run(&c, &v4_pgm(GROUP4, ty, SPORT, DPORT));
        // No socket in slot 7: the redirect falls back to XDP_PASS.
        assert_eq!(v, verdict::PASS);
        only(&d, &[(Counter::Pgm, 1), (Counter::NoSocket, 1)]);
        assert_eq!(c.slot_hits(7).unwrap(), before + 1);
    }
    // Other port, other group, or an upstream type: not this session.
    for f in [
        v4_pgm(GROUP4, ODATA, SPORT, DPORT + 1),
        v4_pgm(Ipv4Addr::new(239, 192, 0, 2), ODATA, SPORT, DPORT),
        v4_pgm(GROUP4, NAK, SPORT, DPORT),
    ] {
        let (v, d) = run(&c, &f);
        assert_eq!(v, verdict::PASS);
        only(&d, &[(Counter::Pgm, 1), (Counter::Passed, 1)]);
    }
    assert_eq!(c.slot_hits(7).unwrap(), 4);
}

#[test]
fn steering_is_per_queue() {
    let Some(mut c) = load() else { return };
    // Test runs arrive on queue 0; a session on queue 1 must not match.
    steer(&mut c, GROUP4.into(), DPORT, Direction::Downstream, 1, 3);
    let (v, d) = run(&c, &v4_pgm(GROUP4, ODATA, SPORT, DPORT));
    assert_eq!(v, verdict::PASS);
    only(&d, &[(Counter::Pgm, 1), (Counter::Passed, 1)]);
    assert_eq!(c.slot_hits(3).unwrap(), 0);
}

#[test]
fn upstream_nak_to_local_source_is_steered() {
    let Some(mut c) = load() else { return };
    // NAKs carry the ports swapped: dport is the source's TSI port.
    steer(&mut c, LOCAL4.into(), SPORT, Direction::Upstream, 0, 9);
    for ty in [NAK, SPMR, 0x09, 0x02] {
        let (v, d) = run(&c, &v4_pgm(LOCAL4, ty, DPORT, SPORT));
        assert_eq!(v, verdict::PASS);
        only(&d, &[(Counter::Pgm, 1), (Counter::NoSocket, 1)]);
    }
    assert_eq!(c.slot_hits(9).unwrap(), 4);
    // ODATA to the unicast address is downstream: no match.
    let (_, d) = run(&c, &v4_pgm(LOCAL4, ODATA, DPORT, SPORT));
    only(&d, &[(Counter::Pgm, 1), (Counter::Passed, 1)]);
    // After removal, NAKs pass.
    assert!(
        c.remove_steer(&SteerKey::new(0, LOCAL4.into(), SPORT, Direction::Upstream))
            .unwrap()
    );
    let (_, d) = run(&c, &v4_pgm(LOCAL4, NAK, DPORT, SPORT));
    only(&d, &[(Counter::Pgm, 1), (Counter::Passed, 1)]);
}

#[test]
fn ipv6_is_steered() {
    let Some(mut c) = load() else { return };
    steer(&mut c, group6().into(), DPORT, Direction::Downstream, 0, 11);
    let src: Ipv6Addr = "fd77::1".parse().unwrap();
    let f = eth(
        0x86dd,
        None,
        &ipv6(src, group6(), 113, &pgm(SPORT, DPORT, ODATA, 100)),
    );
    let (v, d) = run(&c, &f);
    assert_eq!(v, verdict::PASS);
    only(&d, &[(Counter::Pgm, 1), (Counter::NoSocket, 1)]);
    assert_eq!(c.slot_hits(11).unwrap(), 1);
    // The same group as an IPv4-mapped key must not match an IPv6 frame's
    // v4 twin and vice versa.
    let f4 = v4_pgm(GROUP4, ODATA, SPORT, DPORT);
    let (_, d) = run(&c, &f4);
    only(&d, &[(Counter::Pgm, 1), (Counter::Passed, 1)]);
}

#[test]
fn udp_encapsulation_uses_the_default_ports() {
    let Some(mut c) = load() else { return };
    steer(&mut c, GROUP4.into(), DPORT, Direction::Downstream, 0, 5);
    let f = eth(
        0x0800,
        None,
        &ipv4(
            SRC4,
            GROUP4,
            17,
            0,
            &udp(3055, 3056, &pgm(SPORT, DPORT, ODATA, 16)),
        ),
    );
    let (v, d) = run(&c, &f);
    assert_eq!(v, verdict::PASS);
    only(
        &d,
        &[
            (Counter::Pgm, 1),
            (Counter::UdpEncap, 1),
            (Counter::NoSocket, 1),
        ],
    );
    assert_eq!(c.slot_hits(5).unwrap(), 1);
    // IPv6 UDP to the unicast port (a NAK to a local source).
    let local6: Ipv6Addr = "fd77::2".parse().unwrap();
    steer(&mut c, local6.into(), SPORT, Direction::Upstream, 0, 6);
    let f6 = eth(
        0x86dd,
        None,
        &ipv6(
            "fd77::3".parse().unwrap(),
            local6,
            17,
            &udp(3056, 3055, &pgm(DPORT, SPORT, NAK, 0)),
        ),
    );
    let (_, d) = run(&c, &f6);
    only(
        &d,
        &[
            (Counter::Pgm, 1),
            (Counter::UdpEncap, 1),
            (Counter::NoSocket, 1),
        ],
    );
    assert_eq!(c.slot_hits(6).unwrap(), 1);
    // Remove the default ports: the same frames are plain UDP.
    assert!(c.remove_udp_port(3055).unwrap());
    assert!(c.remove_udp_port(3056).unwrap());
    assert!(!c.remove_udp_port(3056).unwrap(), "already gone");
    assert_eq!(c.udp_ports().unwrap(), vec![]);
    for frame in [&f, &f6] {
        let (v, d) = run(&c, frame);
        assert_eq!(v, verdict::PASS);
        only(&d, &[(Counter::NonPgm, 1)]);
    }
    assert_eq!(c.slot_hits(5).unwrap(), 1, "not steered again");
}

fn udp_odata(dport: u16) -> Vec<u8> {
    eth(
        0x0800,
        None,
        &ipv4(
            SRC4,
            GROUP4,
            17,
            0,
            &udp(dport, dport, &pgm(SPORT, DPORT, ODATA, 16)),
        ),
    )
}

#[test]
fn udp_port_map_steers_mapped_ports_only() {
    let Some(mut c) = load() else { return };
    // The defaults are in the map from the start, flagged as such.
    let def = UdpPort {
        sessions: 0,
        flags: abi::UDP_PORT_DEFAULT,
    };
    assert_eq!(c.udp_ports().unwrap(), vec![(3055, def), (3056, def)]);
    steer(&mut c, GROUP4.into(), DPORT, Direction::Downstream, 0, 3);
    let encap = [
        (Counter::Pgm, 1),
        (Counter::UdpEncap, 1),
        (Counter::NoSocket, 1),
    ];
    // Unmapped port: passed as non-PGM, not steered.
    let (v, d) = run(&c, &udp_odata(5711));
    assert_eq!(v, verdict::PASS);
    only(&d, &[(Counter::NonPgm, 1)]);
    assert_eq!(c.slot_hits(3).unwrap(), 0);
    // Mapped: parsed as PGM and steered to the session's slot.
    let user = UdpPort {
        sessions: 2,
        flags: 0,
    };
    c.set_udp_port(5711, user).unwrap();
    let (_, d) = run(&c, &udp_odata(5711));
    only(&d, &encap);
    assert_eq!(c.slot_hits(3).unwrap(), 1);
    // A second port works alongside; another unmapped one still does not.
    c.set_udp_port(5712, user).unwrap();
    let (_, d) = run(&c, &udp_odata(5712));
    only(&d, &encap);
    let (_, d) = run(&c, &udp_odata(5713));
    only(&d, &[(Counter::NonPgm, 1)]);
    assert_eq!(c.slot_hits(3).unwrap(), 2);
    // Replacing a value keeps the port; the listing is sorted.
    c.set_udp_port(
        5711,
        UdpPort {
            sessions: 1,
            flags: 0,
        },
    )
    .unwrap();
    let ports: Vec<u16> = c.udp_ports().unwrap().iter().map(|p| p.0).collect();
    assert_eq!(ports, vec![3055, 3056, 5711, 5712]);
    assert_eq!(c.udp_ports().unwrap()[2].1.sessions, 1);
    // After removal the port passes again.
    assert!(c.remove_udp_port(5711).unwrap());
    let (v, d) = run(&c, &udp_odata(5711));
    assert_eq!(v, verdict::PASS);
    only(&d, &[(Counter::NonPgm, 1)]);
    assert_eq!(c.slot_hits(3).unwrap(), 2);
    let (_, d) = run(&c, &udp_odata(5712));
    only(&d, &encap);
    // Removing an absent steering entry says so (and is not an error).
    let absent = SteerKey::new(9, GROUP4.into(), DPORT, Direction::Downstream);
    assert!(!c.remove_steer(&absent).unwrap());
    // Port 0 is refused.
    assert!(matches!(
        c.set_udp_port(0, user),
        Err(xpgm_ebpf::Error::UdpPortZero)
    ));
}

#[test]
fn udp_port_map_is_bounded() {
    let Some(mut c) = load() else { return };
    let user = UdpPort {
        sessions: 1,
        flags: 0,
    };
    // Two defaults plus 254 more fill the map.
    for p in 0..(abi::MAX_UDP_PORTS as u16 - 2) {
        c.set_udp_port(20_000 + p, user).unwrap();
    }
    assert_eq!(c.udp_ports().unwrap().len(), abi::MAX_UDP_PORTS as usize);
    let e = c.set_udp_port(40_000, user).unwrap_err();
    assert!(
        matches!(e, xpgm_ebpf::Error::UdpPortsFull { port: 40_000 }),
        "{e}"
    );
    assert!(e.to_string().contains("full"), "{e}");
    // A port already present can still be updated; after a removal, one fits.
    c.set_udp_port(
        20_000,
        UdpPort {
            sessions: 3,
            flags: 0,
        },
    )
    .unwrap();
    assert!(c.remove_udp_port(20_001).unwrap());
    c.set_udp_port(40_000, user).unwrap();
    let (_, d) = run(&c, &udp_odata(40_000));
    assert_eq!(d.get(Counter::UdpEncap), 1);
    // Empty defaults: a classifier loaded with both ports 0 maps nothing.
    let none = Classifier::load(Config {
        udp_ucast_port: 0,
        udp_mcast_port: 0,
        flags: 0,
    })
    .unwrap();
    assert_eq!(none.udp_ports().unwrap(), vec![]);
    let (_, d) = run(&none, &udp_odata(3056));
    only(&d, &[(Counter::NonPgm, 1)]);
    // Equal defaults (`--udp-ports 5701,5701`) are one entry.
    let one = Classifier::load(Config {
        udp_ucast_port: 5701,
        udp_mcast_port: 5701,
        flags: 0,
    })
    .unwrap();
    assert_eq!(one.udp_ports().unwrap().len(), 1);
}

#[test]
fn vlan_tagged_frames_are_parsed() {
    let Some(mut c) = load() else { return };
    steer(&mut c, GROUP4.into(), DPORT, Direction::Downstream, 0, 2);
    let f = eth(
        0x0800,
        Some(0x0064),
        &ipv4(SRC4, GROUP4, 113, 0, &pgm(SPORT, DPORT, ODATA, 8)),
    );
    let (v, d) = run(&c, &f);
    assert_eq!(v, verdict::PASS);
    only(&d, &[(Counter::Pgm, 1), (Counter::NoSocket, 1)]);
    assert_eq!(c.slot_hits(2).unwrap(), 1);
    // A tagged ARP is still non-PGM.
    let (_, d) = run(&c, &eth(0x0806, Some(5), &[0u8; 28]));
    only(&d, &[(Counter::NonPgm, 1)]);
}

#[test]
fn truncated_pgm_is_malformed_and_passed() {
    let Some(mut c) = load() else { return };
    steer(&mut c, GROUP4.into(), DPORT, Direction::Downstream, 0, 1);
    let full = pgm(SPORT, DPORT, ODATA, 0);
    for cut in [0, 1, 4, 8, 15] {
        let f = eth(0x0800, None, &ipv4(SRC4, GROUP4, 113, 0, &full[..cut]));
        let (v, d) = run(&c, &f);
        assert_eq!(v, verdict::PASS, "cut {cut}");
        only(&d, &[(Counter::Pgm, 1), (Counter::Malformed, 1)]);
        let f6 = eth(
            0x86dd,
            None,
            &ipv6(Ipv6Addr::LOCALHOST, group6(), 113, &full[..cut]),
        );
        let (_, d) = run(&c, &f6);
        only(&d, &[(Counter::Pgm, 1), (Counter::Malformed, 1)]);
    }
    // Exactly the 16-byte header is enough.
    let f = eth(0x0800, None, &ipv4(SRC4, GROUP4, 113, 0, &full[..16]));
    let (_, d) = run(&c, &f);
    only(&d, &[(Counter::Pgm, 1), (Counter::NoSocket, 1)]);
    // A bad IHL is malformed.
    let mut bad = ipv4(SRC4, GROUP4, 113, 0, &full);
    bad[0] = 0x44;
    let (v, d) = run(&c, &eth(0x0800, None, &bad));
    assert_eq!(v, verdict::PASS);
    only(&d, &[(Counter::Malformed, 1)]);
    // IHL pointing past the end of the frame.
    let mut past = ipv4(SRC4, GROUP4, 113, 0, &[]);
    past[0] = 0x4f;
    let (_, d) = run(&c, &eth(0x0800, None, &past));
    only(&d, &[(Counter::Malformed, 1)]);
    assert_eq!(c.slot_hits(1).unwrap(), 1);
}

#[test]
fn non_first_fragments_pass() {
    let Some(mut c) = load() else { return };
    steer(&mut c, GROUP4.into(), DPORT, Direction::Downstream, 0, 1);
    let f = eth(
        0x0800,
        None,
        &ipv4(SRC4, GROUP4, 113, 185, &pgm(SPORT, DPORT, ODATA, 8)),
    );
    let (v, d) = run(&c, &f);
    assert_eq!(v, verdict::PASS);
    only(&d, &[(Counter::Fragment, 1)]);
    // First fragment (MF set, offset 0) is classified.
    let f = eth(
        0x0800,
        None,
        &ipv4(SRC4, GROUP4, 113, 0x2000, &pgm(SPORT, DPORT, ODATA, 8)),
    );
    let (_, d) = run(&c, &f);
    only(&d, &[(Counter::Pgm, 1), (Counter::NoSocket, 1)]);
}

#[test]
fn slot_range_is_checked() {
    let Some(mut c) = load() else { return };
    let e = c.insert_steer(
        SteerKey::new(0, GROUP4.into(), 1, Direction::Downstream),
        SteerValue {
            slot: xpgm_ebpf::abi::MAX_SLOTS,
            session: 0,
        },
    );
    assert!(e.is_err());
    assert!(c.slot_hits(xpgm_ebpf::abi::MAX_SLOTS).is_err());
    assert!(c.steer_entries().unwrap().is_empty());
}

fn nak_body(src: IpAddr, grp: IpAddr) -> Vec<u8> {
    let mut b = vec![0, 0, 0, 42]; // NAK sequence number
    for a in [src, grp] {
        match a {
            IpAddr::V4(x) => {
                b.extend_from_slice(&[0, 1, 0, 0]);
                b.extend_from_slice(&x.octets());
            }
            IpAddr::V6(x) => {
                b.extend_from_slice(&[0, 2, 0, 0]);
                b.extend_from_slice(&x.octets());
            }
        }
    }
    b
}

#[test]
fn flows_count_packets_bytes_repairs_and_naks() {
    let Some(c) = load() else { return };
    let odata = v4_pgm(GROUP4, ODATA, SPORT, DPORT);
    let rdata = v4_pgm(GROUP4, RDATA, SPORT, DPORT);
    c.test_run(&odata).unwrap();
    c.test_run(&odata).unwrap();
    c.test_run(&rdata).unwrap();
    // A NAK from a receiver to the source's unicast address: ports swapped,
    // the flow named by the NLAs in its body.
    let mut nak = pgm(DPORT, SPORT, NAK, 0);
    nak.truncate(16);
    nak.extend_from_slice(&nak_body(SRC4.into(), GROUP4.into()));
    let nak_frame = eth(0x0800, None, &ipv4(LOCAL4, SRC4, 113, 0, &nak));
    c.test_run(&nak_frame).unwrap();
    // A NAK whose body is cut short names no flow.
    let short = eth(0x0800, None, &ipv4(LOCAL4, SRC4, 113, 0, &nak[..16 + 10]));
    c.test_run(&short).unwrap();

    let flows = c.flows().unwrap();
    assert_eq!(flows.len(), 1, "{flows:?}");
    let (k, s) = flows[0];
    assert_eq!(k.source_ip(), IpAddr::from(SRC4));
    assert_eq!(k.group_ip(), IpAddr::from(GROUP4));
    assert_eq!(k.port, DPORT);
    assert_eq!(s.packets, 3);
    assert_eq!(s.repairs, 1);
    assert_eq!(s.naks, 1);
    assert_eq!(s.bytes, (2 * odata.len() + rdata.len()) as u64);

    // IPv6: a data packet and a NAK for it.
    let src6: Ipv6Addr = "fd77::1".parse().unwrap();
    let rcv6: Ipv6Addr = "fd77::2".parse().unwrap();
    let d6 = eth(
        0x86dd,
        None,
        &ipv6(src6, group6(), 113, &pgm(SPORT, DPORT, ODATA, 10)),
    );
    c.test_run(&d6).unwrap();
    let mut nak6 = pgm(DPORT, SPORT, NAK, 0);
    nak6.truncate(16);
    nak6.extend_from_slice(&nak_body(src6.into(), group6().into()));
    c.test_run(&eth(0x86dd, None, &ipv6(rcv6, src6, 113, &nak6)))
        .unwrap();
    let flows = c.flows().unwrap();
    let f6 = flows
        .iter()
        .find(|(k, _)| k.family == xpgm_ebpf::abi::FAMILY_V6)
        .expect("IPv6 flow");
    assert_eq!(f6.0.source_ip(), IpAddr::from(src6));
    assert_eq!(f6.0.group_ip(), IpAddr::from(group6()));
    assert_eq!((f6.1.packets, f6.1.naks, f6.1.repairs), (1, 1, 0));
}

/// Mutated and truncated frames: the verdict is always XDP_PASS (no session
/// has a socket) and every frame lands in exactly one accounting class.
#[test]
fn random_frames_are_each_accounted_once() {
    let Some(mut c) = load() else { return };
    steer(&mut c, GROUP4.into(), DPORT, Direction::Downstream, 0, 1);
    steer(&mut c, group6().into(), DPORT, Direction::Downstream, 0, 2);
    let seeds = [
        v4_pgm(GROUP4, ODATA, SPORT, DPORT),
        eth(
            0x86dd,
            None,
            &ipv6(
                "fd77::1".parse().unwrap(),
                group6(),
                113,
                &pgm(SPORT, DPORT, ODATA, 40),
            ),
        ),
        eth(
            0x0800,
            Some(7),
            &ipv4(
                SRC4,
                GROUP4,
                17,
                0,
                &udp(3055, 3056, &pgm(SPORT, DPORT, RDATA, 8)),
            ),
        ),
        eth(0x0800, None, &ipv4(SRC4, LOCAL4, 6, 0, &[0u8; 20])),
        eth(0x0806, None, &[0u8; 28]),
    ];
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..3000 {
        let mut f = seeds[i % seeds.len()].clone();
        for _ in 0..(rnd() % 4) {
            let at = (rnd() as usize) % f.len();
            f[at] ^= 1 << (rnd() % 8);
        }
        // Target the interesting bytes (EtherType, IP version/IHL/proto, ports, type) often.
        if rnd() % 2 == 0 {
            let hot = [12usize, 13, 14, 20, 23, 36, 37, 38, 39, 40, 54];
            let at = hot[(rnd() as usize) % hot.len()];
            if at < f.len() {
                f[at] = rnd() as u8;
            }
        }
        let keep = 14 + (rnd() as usize) % (f.len() - 13);
        f.truncate(keep);
        let (v, d) = run(&c, &f);
        assert_eq!(v, verdict::PASS, "frame {i}: {f:02x?}");
        let g = |k| d.get(k);
        let outcomes = g(Counter::Passed)
            + g(Counter::Malformed)
            + g(Counter::NoSocket)
            + g(Counter::Redirected);
        let ok = if g(Counter::Pgm) == 1 {
            outcomes == 1 && g(Counter::NonPgm) == 0 && g(Counter::Fragment) == 0
        } else {
            g(Counter::Pgm) == 0
                && g(Counter::UdpEncap) == 0
                && g(Counter::NonPgm) + g(Counter::Fragment) + g(Counter::Malformed) == 1
                && g(Counter::Passed) + g(Counter::NoSocket) + g(Counter::Redirected) == 0
        };
        assert!(ok, "frame {i} accounted as {d:?}: {f:02x?}");
    }
}
