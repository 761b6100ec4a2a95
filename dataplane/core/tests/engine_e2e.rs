//! End to end: one Source, several Receivers, wired through encoded bytes with random
//! loss in both directions, in virtual time. Every receiver must deliver every APDU, in
//! order, intact, and then see the session end.

use core::net::Ipv4Addr;
use core::time::Duration;

use xpgm_core::config::{ReceiverConfig, SourceConfig};
use xpgm_core::receiver::{Event, Receiver};
use xpgm_core::rng::Rng;
use xpgm_core::source::{Destination, SendError, Source};
use xpgm_core::wire::{Gsi, Nla, PacketType, Tsi};
use xpgm_core::{Instant, Sqn};

const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 1, 1, 1));

fn apdu(i: usize) -> Vec<u8> {
    // Mostly small, some exactly one TPDU, some fragmented.
    let len = match i % 7 {
        0 => 5000,
        3 => 1456,
        5 => 20_000,
        _ => 64 + i % 100,
    };
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

#[derive(Default)]
struct Seen {
    data: Vec<(Sqn, Vec<u8>)>,
    unrecoverable: u32,
    new_peer: u32,
    ended: bool,
}

fn run(loss: f64, receivers: usize, total: usize, seed: u64) -> (Vec<Seen>, Source) {
    let tsi = Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4000,
    };
    let scfg = SourceConfig {
        group: GROUP,
        path_nla: SRC,
        ..SourceConfig::default()
    };
    let rcfg = ReceiverConfig {
        group: GROUP,
        ..ReceiverConfig::default()
    };
    let mut now = Instant::ZERO;
    let mut src = Source::new(scfg, tsi, now).unwrap();
    let mut rxs: Vec<Receiver> = (0..receivers)
        .map(|i| {
            let local = Nla::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1));
            Receiver::new(rcfg.clone(), local, seed + i as u64).unwrap()
        })
        .collect();
    let mut seen: Vec<Seen> = (0..receivers).map(|_| Seen::default()).collect();
    let mut net = Rng::new(seed ^ 0xdead_beef);
    let mut buf = vec![0u8; 1500];
    let mut sent = 0;
    let mut closed = false;
    let step = Duration::from_millis(1);
    let deadline = Instant::ZERO + Duration::from_secs(120);
    while now < deadline {
        // The application sends one APDU per millisecond while it can.
        if sent < total {
            match src.send(now, &apdu(sent)) {
                Ok(_) => sent += 1,
                Err(SendError::WouldBlock) => {}
                Err(e) => panic!("send: {e}"),
            }
        } else if !closed {
            src.close(now);
            closed = true;
        }
        src.handle_timeout(now);
        for r in &mut rxs {
            r.handle_timeout(now);
        }
        loop {
            let mut moved = false;
            while let Some(t) = src.poll_transmit(now, &mut buf) {
                moved = true;
                assert_eq!(t.dest, Destination::Group);
                for r in &mut rxs {
                    if !net.chance(loss) {
                        r.handle_packet(now, SRC, &buf[..t.len]).unwrap();
                    }
                }
            }
            for (i, r) in rxs.iter_mut().enumerate() {
                let local = Nla::V4(Ipv4Addr::new(10, 0, 1, i as u8 + 1));
                while let Some(t) = r.poll_transmit(now, &mut buf) {
                    moved = true;
                    assert_eq!(t.dest, Destination::Unicast(SRC));
                    assert!(matches!(t.kind, PacketType::Nak | PacketType::Spmr));
                    if !net.chance(loss) {
                        src.handle_packet(now, local, &buf[..t.len]).unwrap();
                    }
                }
            }
            if !moved {
                break;
            }
        }
        for (r, s) in rxs.iter_mut().zip(seen.iter_mut()) {
            while let Some(ev) = r.poll_event() {
                match ev {
                    Event::Data { tsi: t, sqn, data } => {
                        assert_eq!(t, tsi);
                        s.data.push((sqn, data.to_vec()));
                    }
                    Event::Unrecoverable { count, .. } => s.unrecoverable += count,
                    Event::NewPeer { .. } => s.new_peer += 1,
                    Event::SessionEnd { .. } => s.ended = true,
                    Event::PeerGone { .. }
                    | Event::SessionReset { .. }
                    | Event::LineDown { .. }
                    | Event::LineUp { .. } => {
                        panic!("unexpected {ev:?}")
                    }
                }
            }
        }
        if seen.iter().all(|s| s.ended) {
            break;
        }
        now += step;
    }
    (seen, src)
}

fn check(seen: &[Seen], total: usize) {
    for (i, s) in seen.iter().enumerate() {
        assert_eq!(s.new_peer, 1, "receiver {i}");
        assert_eq!(s.unrecoverable, 0, "receiver {i}");
        assert_eq!(s.data.len(), total, "receiver {i} delivered");
        for (k, (_, d)) in s.data.iter().enumerate() {
            assert_eq!(d, &apdu(k), "receiver {i} APDU {k}");
        }
        // In order: first-TPDU sequence numbers strictly increase.
        for w in s.data.windows(2) {
            assert!(w[0].0.lt(w[1].0));
        }
        assert!(s.ended, "receiver {i} saw no SessionEnd");
    }
}

#[test]
fn lossless_delivery_in_order() {
    let (seen, src) = run(0.0, 3, 200, 1);
    check(&seen, 200);
    assert_eq!(src.stats().rdata_sent, 0);
}

#[test]
fn ten_percent_loss_full_in_order_delivery() {
    let (seen, src) = run(0.10, 4, 300, 7);
    check(&seen, 300);
    // Loss was repaired, and by RDATA.
    assert!(src.stats().rdata_sent > 0);
    assert!(src.stats().ncf_sent > 0);
}

/// The same ODATA is lost at every receiver. NCF suppression must keep the NAKs reaching
/// the source far below the number of receivers, and the sequence is repaired once.
#[test]
fn shared_loss_nak_suppression_limits_implosion() {
    const RECEIVERS: usize = 30;
    let tsi = Tsi {
        gsi: Gsi([9, 9, 9, 9, 9, 9]),
        sport: 4001,
    };
    let scfg = SourceConfig {
        group: GROUP,
        path_nla: SRC,
        ..SourceConfig::default()
    };
    let rcfg = ReceiverConfig {
        group: GROUP,
        ..ReceiverConfig::default()
    };
    let mut now = Instant::ZERO;
    let mut src = Source::new(scfg, tsi, now).unwrap();
    let mut rxs: Vec<Receiver> = (0..RECEIVERS)
        .map(|i| Receiver::new(rcfg.clone(), SRC, 100 + i as u64).unwrap())
        .collect();
    let mut buf = vec![0u8; 1500];
    for i in 0..10u8 {
        src.send(now, &[i; 32]).unwrap();
    }
    let mut delivered = vec![0usize; RECEIVERS];
    let mut odata_seen = 0;
    // 0.1 ms steps so that back-offs rarely expire in the same step.
    let step = Duration::from_micros(100);
    for _ in 0..20_000 {
        src.handle_timeout(now);
        for r in &mut rxs {
            r.handle_timeout(now);
        }
        loop {
            let mut moved = false;
            while let Some(t) = src.poll_transmit(now, &mut buf) {
                moved = true;
                if t.kind == PacketType::Odata {
                    odata_seen += 1;
                    if odata_seen == 5 {
                        continue; // lost everywhere
                    }
                }
                for r in &mut rxs {
                    r.handle_packet(now, SRC, &buf[..t.len]).unwrap();
                }
            }
            for r in &mut rxs {
                while let Some(t) = r.poll_transmit(now, &mut buf) {
                    moved = true;
                    src.handle_packet(now, SRC, &buf[..t.len]).unwrap();
                }
            }
            if !moved {
                break;
            }
        }
        for (r, d) in rxs.iter_mut().zip(delivered.iter_mut()) {
            while let Some(ev) = r.poll_event() {
                if let Event::Data { .. } = ev {
                    *d += 1;
                }
            }
        }
        now += step;
    }
    assert!(delivered.iter().all(|&d| d == 10), "{delivered:?}");
    let naks = src.stats().naks_received;
    assert!(
        (1..=3).contains(&naks),
        "{naks} NAKs from {RECEIVERS} receivers"
    );
    assert_eq!(src.stats().rdata_sent, 1);
    let sent: u64 = rxs.iter().map(|r| r.stats().naks_sent).sum();
    assert_eq!(sent, naks);
}
