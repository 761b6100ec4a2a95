//! FEC end to end: a source with Reed–Solomon parity and a receiver, wired through
//! encoded bytes in virtual time, with a fixed loss pattern on ODATA. Proactive parity
//! must rebuild every loss with no NAK at all; on-demand parity must answer parity NAKs.

use core::net::Ipv4Addr;
use core::time::Duration;

use xpgm_core::config::{FecConfig, ReceiverConfig, SourceConfig};
use xpgm_core::receiver::{Event, Receiver, ReceiverStats};
use xpgm_core::source::{SendError, Source, SourceStats};
use xpgm_core::wire::{Body, Gsi, Nla, PacketRepr, Tsi};
use xpgm_core::{Instant, Sqn};

const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 192, 1, 1));

fn apdu(i: usize) -> Vec<u8> {
    // Different lengths (OPT_VAR_PKTLEN parity) and some fragmented APDUs.
    let len = match i % 11 {
        0 => 4000,
        4 => 1400,
        _ => 40 + (i * 13) % 200,
    };
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

struct Out {
    data: Vec<Vec<u8>>,
    unrecoverable: u32,
    dropped: u64,
    rx: ReceiverStats,
    tx: SourceStats,
}

fn run(fec: FecConfig, drop: impl Fn(Sqn) -> bool, naks_reach_source: bool, total: usize) -> Out {
    let tsi = Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4000,
    };
    let scfg = SourceConfig {
        group: GROUP,
        path_nla: SRC,
        fec: Some(fec),
        ..SourceConfig::default()
    };
    let rcfg = ReceiverConfig {
        group: GROUP,
        ..ReceiverConfig::default()
    };
    let mut now = Instant::ZERO;
    let mut src = Source::new(scfg, tsi, now).unwrap();
    let local = Nla::V4(Ipv4Addr::new(10, 0, 1, 1));
    let mut rx = Receiver::new(rcfg, local, 7).unwrap();
    let mut out = Out {
        data: Vec::new(),
        unrecoverable: 0,
        dropped: 0,
        rx: ReceiverStats::default(),
        tx: SourceStats::default(),
    };
    let mut buf = vec![0u8; 1500];
    let mut sent = 0;
    let mut ended = false;
    let deadline = Instant::ZERO + Duration::from_secs(60);
    while now < deadline && !ended {
        if sent < total {
            match src.send(now, &apdu(sent)) {
                Ok(_) => sent += 1,
                Err(SendError::WouldBlock) => {}
                Err(e) => panic!("send: {e}"),
            }
            if sent == total {
                src.close(now);
            }
        }
        src.handle_timeout(now);
        rx.handle_timeout(now);
        loop {
            let mut moved = false;
            while let Some(t) = src.poll_transmit(now, &mut buf) {
                moved = true;
                let lost = match PacketRepr::parse(&buf[..t.len]).unwrap().body {
                    Body::Odata(d) => drop(d.sqn),
                    _ => false,
                };
                if lost {
                    out.dropped += 1;
                } else {
                    rx.handle_packet(now, SRC, &buf[..t.len]).unwrap();
                }
            }
            while let Some(t) = rx.poll_transmit(now, &mut buf) {
                moved = true;
                if naks_reach_source {
                    src.handle_packet(now, local, &buf[..t.len]).unwrap();
                }
            }
            if !moved {
                break;
            }
        }
        while let Some(ev) = rx.poll_event() {
            match ev {
                Event::Data { data, .. } => out.data.push(data.to_vec()),
                Event::Unrecoverable { count, .. } => out.unrecoverable += count,
                Event::SessionEnd { .. } => ended = true,
                _ => {}
            }
        }
        now += Duration::from_millis(1);
    }
    out.rx = *rx.stats();
    out.tx = *src.stats();
    out
}

fn check_all_delivered(out: &Out, total: usize) {
    assert_eq!(out.unrecoverable, 0);
    assert_eq!(out.data.len(), total);
    for (i, d) in out.data.iter().enumerate() {
        assert_eq!(d, &apdu(i), "APDU {i}");
    }
}

#[test]
fn proactive_parity_rebuilds_every_loss_without_a_nak() {
    let total = 3000;
    let fec = FecConfig {
        k: 8,
        proactive: 2,
        ondemand: false,
    };
    // Two losses in every group (all the parity can rebuild), none in the last,
    // partial group (no proactive parity covers it).
    let last_full = Sqn(3000);
    let out = run(
        fec,
        |s| s.lt(last_full) && matches!(s.0 % 8, 2 | 5),
        false,
        total,
    );
    check_all_delivered(&out, total);
    assert!(out.dropped > 500, "{}", out.dropped);
    assert_eq!(out.rx.parity_recovered, out.dropped);
    assert_eq!(out.rx.naks_sent, 0);
    assert!(out.tx.parity_sent >= 2 * (out.tx.odata_sent / 8) - 2);
    assert_eq!(out.tx.rdata_sent, 0);
}

#[test]
fn more_losses_than_proactive_parity_fall_back_to_naks() {
    let total = 1000;
    let fec = FecConfig {
        k: 8,
        proactive: 1,
        ondemand: false,
    };
    let out = run(fec, |s| matches!(s.0 % 16, 1 | 2), true, total);
    check_all_delivered(&out, total);
    // Odd groups lose nothing, even ones two: one rebuilt from parity once the other
    // is repaired by RDATA.
    assert!(out.rx.parity_recovered > 0);
    assert!(out.tx.rdata_sent > 0);
    assert!(out.tx.rdata_sent + out.rx.parity_recovered >= out.dropped);
}

#[test]
fn on_demand_parity_answers_parity_naks() {
    let total = 2000;
    let fec = FecConfig {
        k: 16,
        proactive: 0,
        ondemand: true,
    };
    let out = run(fec, |s| matches!(s.0 % 16, 3 | 9), true, total);
    check_all_delivered(&out, total);
    assert!(out.rx.parity_naks_sent > 0);
    assert!(out.tx.parity_naks_received > 0);
    assert!(out.tx.parity_ondemand_sent > 0);
    assert_eq!(out.tx.parity_sent, out.tx.parity_ondemand_sent);
    // Every complete group is repaired by parity, not RDATA.
    assert!(
        out.rx.parity_recovered * 10 >= out.dropped * 9,
        "{} of {}",
        out.rx.parity_recovered,
        out.dropped
    );
}
