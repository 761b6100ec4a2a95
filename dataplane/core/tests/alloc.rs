//! After warm-up, the steady-state send path (`send` + `poll_transmit`, wrapping the
//! transmit window's index and byte arena) and receive path (`handle_packet` +
//! `poll_event`) allocate nothing, at 64- and 1400-byte payloads.
//!
//! A counting global allocator counts allocations made by the current thread while
//! counting is switched on, so parallel tests do not disturb each other.

use core::net::Ipv4Addr;

use xpgm_core::Instant;
use xpgm_core::config::{ReceiverConfig, SourceConfig};
use xpgm_core::receiver::{Event, Receiver};
use xpgm_core::source::Source;
use xpgm_core::wire::{Gsi, Nla, Tsi};

#[global_allocator]
static GLOBAL: xpgm_testutil::CountingAlloc = xpgm_testutil::CountingAlloc;

use xpgm_testutil::count;

const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 1, 1, 1));
const N: usize = 20_000;

fn tsi() -> Tsi {
    Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4000,
    }
}

fn source() -> Source {
    // One packet per microsecond outruns any minimum repair time: let the window
    // advance freely (flow control is not what is measured here).
    let cfg = SourceConfig {
        group: GROUP,
        path_nla: SRC,
        txw_min_secs: core::time::Duration::ZERO,
        ..SourceConfig::default()
    };
    Source::new(cfg, tsi(), Instant::ZERO).unwrap()
}

/// A source with a small window, so that the measured loop wraps both the index (4096
/// sequences) and the byte arena (the smallest allowed, about 3 MB) several times.
fn small_source() -> Source {
    let cfg = SourceConfig {
        group: GROUP,
        path_nla: SRC,
        txw_min_secs: core::time::Duration::ZERO,
        txw_sqns: 4096,
        txw_max_bytes: 2 * 1024 * 1480,
        ..SourceConfig::default()
    };
    Source::new(cfg, tsi(), Instant::ZERO).unwrap()
}

fn us(n: usize) -> Instant {
    Instant::from_nanos(n as u64 * 1000)
}

/// One APDU per microsecond through `send` + `poll_transmit`; returns packets sent.
fn send_loop(s: &mut Source, from: usize, to: usize, payload: &[u8], buf: &mut [u8]) -> usize {
    let mut sent = 0;
    for i in from..to {
        let now = us(i);
        s.send(now, payload).unwrap();
        s.handle_timeout(now);
        while s.poll_transmit(now, buf).is_some() {
            sent += 1;
        }
    }
    sent
}

fn source_path_allocates_nothing(payload_len: usize) {
    let mut s = small_source();
    let payload = vec![0xa5u8; payload_len];
    let mut buf = vec![0u8; 1500];
    // The window is allocated by `Source::new`; nothing needs warming but the first
    // SPMs, which go out with the first packets.
    let warm = 16;
    send_loop(&mut s, 0, warm, &payload, &mut buf);
    let (allocs, sent) = count(|| send_loop(&mut s, warm, warm + N, &payload, &mut buf));
    assert!(sent >= N, "every APDU went out ({sent})");
    assert_eq!(allocs, 0, "{payload_len}-byte send path allocated");
}

fn receive_path_allocates_nothing(payload_len: usize) {
    // Encode the stream first (allocation outside the measured loop).
    let mut s = source();
    let payload = vec![0x5au8; payload_len];
    let mut buf = vec![0u8; 1500];
    let mut packets: Vec<Vec<u8>> = Vec::with_capacity(2 * N + 8192);
    let total = N + 8192;
    for i in 0..total {
        let now = us(i);
        s.send(now, &payload).unwrap();
        while let Some(t) = s.poll_transmit(now, &mut buf) {
            packets.push(buf[..t.len].to_vec());
        }
    }
    let cfg = ReceiverConfig {
        group: GROUP,
        ..ReceiverConfig::default()
    };
    let mut r = Receiver::new(cfg, Nla::V4(Ipv4Addr::new(10, 0, 0, 2)), 7).unwrap();
    let feed = |r: &mut Receiver, pkts: &[Vec<u8>]| {
        let mut delivered = 0usize;
        for (i, p) in pkts.iter().enumerate() {
            r.handle_packet(us(i), SRC, p).unwrap();
            while let Some(ev) = r.poll_event() {
                if let Event::Data { data, .. } = ev {
                    assert_eq!(data.len(), payload_len);
                    delivered += 1;
                }
            }
        }
        delivered
    };
    let split = packets.len() - N;
    let warm = feed(&mut r, &packets[..split]);
    let (allocs, delivered) = count(|| feed(&mut r, &packets[split..]));
    assert!(warm > 0 && delivered >= N - 16, "delivered {delivered}");
    assert_eq!(allocs, 0, "{payload_len}-byte receive path allocated");
    assert_eq!(r.stats().duplicates, 0);
}

/// A NAK + SPMR flood (random sequences, a fifth inside the window, OPT_NAK_LIST of 8)
/// through `handle_packet`, answered within the NCF and RDATA budgets, while data keeps
/// flowing: nothing is allocated, however full the repair and NCF queues get.
#[test]
fn nak_flood_allocates_nothing() {
    use xpgm_core::rng::Rng;
    use xpgm_core::seq::Sqn;
    use xpgm_core::wire::{Body, Nak, Options, PacketRepr};
    let mut s = small_source();
    let payload = [0x11u8; 64];
    let mut buf = vec![0u8; 1500];
    let mut wire = vec![0u8; 1500];
    let mut rng = Rng::new(3);
    send_loop(&mut s, 0, 16, &payload, &mut buf);
    let mut flood = |s: &mut Source, from: usize, to: usize| {
        for i in from..to {
            let now = us(i);
            s.send(now, &payload).unwrap();
            let (trail, lead) = (s.trail(), s.lead());
            let pick = |rng: &mut Rng| {
                let span = u64::from(lead.0.wrapping_sub(trail.0)) + 1;
                if rng.below(5) == 0 {
                    Sqn(trail.0.wrapping_add(rng.below(span) as u32))
                } else {
                    Sqn(rng.next_u64() as u32)
                }
            };
            let mut options = Options::default();
            for _ in 0..8 {
                assert!(options.nak_list.push(pick(&mut rng)));
            }
            let nak = PacketRepr {
                sport: xpgm_core::wire::DEFAULT_DATA_PORT,
                dport: tsi().sport,
                gsi: tsi().gsi,
                body: Body::Nak(Nak {
                    sqn: pick(&mut rng),
                    source: SRC,
                    group: GROUP,
                }),
                options,
            };
            let n = nak.emit(&mut wire).unwrap();
            s.handle_packet(now, Nla::V4(Ipv4Addr::new(10, 0, 0, 9)), &wire[..n])
                .unwrap();
            let spmr = PacketRepr {
                body: Body::Spmr,
                options: Options::default(),
                ..nak
            };
            let n = spmr.emit(&mut wire).unwrap();
            s.handle_packet(now, Nla::V4(Ipv4Addr::new(10, 0, 0, 9)), &wire[..n])
                .unwrap();
            s.handle_timeout(now);
            while s.poll_transmit(now, &mut buf).is_some() {}
        }
    };
    flood(&mut s, 16, 1000);
    let (allocs, ()) = count(|| flood(&mut s, 1000, 1000 + N));
    let st = s.stats();
    assert!(st.rdata_sent > 0 && st.ncf_sent > 0, "{st:?}");
    assert!(st.naks_received >= 9 * N as u64, "{st:?}");
    assert_eq!(allocs, 0, "NAK flood allocated");
}

#[test]
fn send_path_64() {
    source_path_allocates_nothing(64);
}

#[test]
fn send_path_1400() {
    source_path_allocates_nothing(1400);
}

#[test]
fn receive_path_64() {
    receive_path_allocates_nothing(64);
}

#[test]
fn receive_path_1400() {
    receive_path_allocates_nothing(1400);
}

#[test]
fn the_counter_counts() {
    // Guard against a test that cannot fail: an allocation inside `count` is seen.
    let (n, v) = count(|| vec![1u8; 10]);
    assert_eq!(v.len(), 10);
    assert!(n >= 1);
}
