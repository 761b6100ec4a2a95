//! Source state transitions, driven through `handle_repr` / `poll_repr`.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::*;
use crate::wire::{Gsi, PacketType};

const PATH: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 1, 1, 1));
const RX: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 2));

fn tsi() -> Tsi {
    Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4000,
    }
}

fn cfg() -> SourceConfig {
    SourceConfig {
        group: GROUP,
        path_nla: PATH,
        ..SourceConfig::default()
    }
}

fn ms(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

/// An owned summary of one packet from `poll_repr`.
#[derive(Clone, Debug, PartialEq)]
enum Out {
    Spm {
        trail: Sqn,
        lead: Sqn,
        fin: bool,
        syn: bool,
    },
    Odata {
        sqn: Sqn,
        trail: Sqn,
        len: usize,
        frag: Option<Fragment>,
    },
    Rdata {
        sqn: Sqn,
    },
    Ncf {
        sqn: Sqn,
        list: Vec<Sqn>,
    },
}

fn poll(s: &mut Source, now: Instant) -> Option<Out> {
    let p = s.poll_repr(now)?;
    assert_eq!(p.sport, 4000);
    assert_eq!(p.gsi, tsi().gsi);
    Some(match p.body {
        Body::Spm(spm) => {
            assert_eq!(spm.path, PATH);
            Out::Spm {
                trail: spm.trail,
                lead: spm.lead,
                fin: p.options.fin,
                syn: p.options.syn,
            }
        }
        Body::Odata(d) => Out::Odata {
            sqn: d.sqn,
            trail: d.trail,
            len: d.payload.len(),
            frag: p.options.fragment,
        },
        Body::Rdata(d) => Out::Rdata { sqn: d.sqn },
        Body::Ncf(n) => {
            assert_eq!((n.source, n.group), (PATH, GROUP));
            Out::Ncf {
                sqn: n.sqn,
                list: p.options.nak_list.as_slice().to_vec(),
            }
        }
        other => panic!("unexpected {other:?}"),
    })
}

fn drain(s: &mut Source, now: Instant) -> Vec<Out> {
    let mut v = Vec::new();
    while let Some(o) = poll(s, now) {
        v.push(o);
    }
    v
}

fn nak(sqn: u32, list: &[u32]) -> PacketRepr<'static> {
    let mut options = Options::default();
    for &x in list {
        assert!(options.nak_list.push(Sqn(x)));
    }
    PacketRepr {
        sport: DEFAULT_DPORT,
        dport: 4000,
        gsi: tsi().gsi,
        body: Body::Nak(Nak {
            sqn: Sqn(sqn),
            source: PATH,
            group: GROUP,
        }),
        options,
    }
}

const DEFAULT_DPORT: u16 = crate::wire::DEFAULT_DATA_PORT;

/// A source that has sent `n` one-TPDU APDUs (and its announcement SPMs) at time 0.
fn with_data(n: usize) -> Source {
    let mut s = Source::new(cfg(), tsi(), Instant::ZERO).unwrap();
    for i in 0..n {
        s.send(Instant::ZERO, &[i as u8; 100]).unwrap();
    }
    let out = drain(&mut s, Instant::ZERO);
    assert_eq!(out.len(), n + 3);
    s
}

#[test]
fn first_spm_then_odata_numbered_in_unit_increments() {
    let mut s = Source::new(cfg(), tsi(), Instant::ZERO).unwrap();
    assert_eq!(s.send(Instant::ZERO, b"a").unwrap(), Sqn(0));
    assert_eq!(s.send(Instant::ZERO, b"bb").unwrap(), Sqn(1));
    let out = drain(&mut s, Instant::ZERO);
    let announce = Out::Spm {
        trail: Sqn(0),
        lead: Sqn(u32::MAX),
        fin: false,
        syn: true,
    };
    assert_eq!(
        out,
        vec![
            announce.clone(),
            announce.clone(),
            announce,
            Out::Odata {
                sqn: Sqn(0),
                trail: Sqn(0),
                len: 1,
                frag: None
            },
            Out::Odata {
                sqn: Sqn(1),
                trail: Sqn(0),
                len: 2,
                frag: None
            },
        ]
    );
    assert_eq!(s.stats().odata_sent, 2);
    assert_eq!(s.stats().odata_bytes, 3);
    assert_eq!(s.lead(), Sqn(1));
}

#[test]
fn large_apdu_is_fragmented_with_opt_fragment() {
    let mut s = Source::new(cfg(), tsi(), Instant::ZERO).unwrap();
    let chunk = s.config().max_fragment_tsdu();
    let apdu: Vec<u8> = (0..chunk * 2 + 10).map(|i| i as u8).collect();
    assert_eq!(s.send(Instant::ZERO, &apdu).unwrap(), Sqn(0));
    assert_eq!(s.unsent(), 3);
    let max_tpdu = s.config().max_tpdu;
    for _ in 0..3 {
        assert!(matches!(
            poll(&mut s, Instant::ZERO),
            Some(Out::Spm { syn: true, .. })
        ));
    }
    let mut joined = Vec::new();
    for i in 0..3u32 {
        let p = s.poll_repr(Instant::ZERO).unwrap();
        let Body::Odata(d) = p.body else {
            panic!("not odata")
        };
        assert_eq!(d.sqn, Sqn(i));
        let f = p.options.fragment.unwrap();
        assert_eq!(f.first_sqn, Sqn(0));
        assert_eq!(f.offset as usize, joined.len());
        assert_eq!(f.apdu_len as usize, apdu.len());
        // Every fragment fits in max_tpdu once encoded.
        assert!(p.buffer_len() <= max_tpdu);
        joined.extend_from_slice(d.payload);
    }
    assert_eq!(joined, apdu);
    assert!(s.poll_repr(Instant::ZERO).is_none());
}

#[test]
fn encoded_sizes_match_the_overhead_constants() {
    // The fragment arithmetic in config must agree with the codec.
    let mut s = Source::new(cfg(), tsi(), Instant::ZERO).unwrap();
    let max = s.config().max_tpdu;
    let single = vec![7u8; s.config().max_single_tsdu()];
    s.send(Instant::ZERO, &single).unwrap();
    let big = vec![9u8; s.config().max_single_tsdu() * 3];
    s.send(Instant::ZERO, &big).unwrap();
    let mut buf = [0u8; 2000];
    let mut kinds = Vec::new();
    while let Some(t) = s.poll_transmit(Instant::ZERO, &mut buf) {
        kinds.push(t.kind);
        if t.kind == PacketType::Odata {
            assert!(t.len <= max);
        }
    }
    assert_eq!(s.stats().emit_errors, 0);
    assert_eq!(
        kinds.iter().filter(|k| **k == PacketType::Odata).count(),
        1 + 4
    );
    // The full-size single TPDU is exactly max_tpdu bytes.
    let mut s = Source::new(cfg(), tsi(), Instant::ZERO).unwrap();
    s.send(Instant::ZERO, &single).unwrap();
    for _ in 0..3 {
        let spm = s.poll_transmit(Instant::ZERO, &mut buf).unwrap();
        assert_eq!(spm.kind, PacketType::Spm);
    }
    assert_eq!(s.poll_transmit(Instant::ZERO, &mut buf).unwrap().len, max);
}

#[test]
fn send_errors_too_large_would_block_closed() {
    let c = SourceConfig {
        send_queue: 4,
        ..cfg()
    };
    let max_apdu = 4 * c.max_fragment_tsdu();
    let c = SourceConfig { max_apdu, ..c };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    assert_eq!(
        s.send(Instant::ZERO, &vec![0; max_apdu + 1]),
        Err(SendError::TooLarge)
    );
    for _ in 0..4 {
        s.send(Instant::ZERO, b"x").unwrap();
    }
    assert_eq!(s.send(Instant::ZERO, b"x"), Err(SendError::WouldBlock));
    // Transmitting frees the queue.
    let _ = drain(&mut s, Instant::ZERO);
    assert!(s.send(Instant::ZERO, b"x").is_ok());
    s.close(Instant::ZERO);
    assert_eq!(s.send(Instant::ZERO, b"x"), Err(SendError::Closed));
}

#[test]
fn nak_gets_ncf_first_then_rdata() {
    let mut s = with_data(5);
    s.handle_repr(ms(1), RX, &nak(2, &[3]));
    assert_eq!(s.stats().naks_received, 2);
    let out = drain(&mut s, ms(1));
    assert_eq!(
        out,
        vec![
            Out::Ncf {
                sqn: Sqn(2),
                list: vec![Sqn(3)]
            },
            Out::Rdata { sqn: Sqn(2) },
            Out::Rdata { sqn: Sqn(3) },
        ]
    );
    assert_eq!(s.stats().rdata_sent, 2);
    assert_eq!(s.stats().ncf_sent, 1);
}

#[test]
fn repair_once_per_round_however_many_naks() {
    let mut s = with_data(5);
    for _ in 0..50 {
        s.handle_repr(ms(1), RX, &nak(1, &[]));
    }
    let out = drain(&mut s, ms(1));
    let ncfs = out.iter().filter(|o| matches!(o, Out::Ncf { .. })).count();
    let rdata: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Out::Rdata { .. }))
        .collect();
    // Every NAK is confirmed, but the sequence is repaired once.
    assert_eq!(ncfs, 50);
    assert_eq!(rdata, vec![&Out::Rdata { sqn: Sqn(1) }]);
    assert_eq!(s.stats().naks_coalesced, 49);
    // A NAK after the repair went out starts a new round.
    s.handle_repr(ms(2), RX, &nak(1, &[]));
    let out = drain(&mut s, ms(2));
    assert!(out.contains(&Out::Rdata { sqn: Sqn(1) }));
}

#[test]
fn nak_outside_window_is_counted_and_not_answered() {
    let mut s = with_data(3);
    // Beyond the lead (not yet sent) and far before the trail.
    s.handle_repr(ms(1), RX, &nak(3, &[1000, u32::MAX - 5]));
    assert_eq!(s.stats().naks_outside_window, 3);
    assert!(drain(&mut s, ms(1)).is_empty());
    // Mixed: only the in-window part is confirmed and repaired.
    s.handle_repr(ms(1), RX, &nak(9, &[1]));
    assert_eq!(
        drain(&mut s, ms(1)),
        vec![
            Out::Ncf {
                sqn: Sqn(1),
                list: vec![]
            },
            Out::Rdata { sqn: Sqn(1) }
        ]
    );
    assert_eq!(s.stats().naks_outside_window, 4);
}

#[test]
fn foreign_naks_are_ignored() {
    let mut s = with_data(3);
    let mut wrong_group = nak(1, &[]);
    if let Body::Nak(n) = &mut wrong_group.body {
        n.group = Nla::V4(Ipv4Addr::new(239, 9, 9, 9));
    }
    let mut wrong_source = nak(1, &[]);
    if let Body::Nak(n) = &mut wrong_source.body {
        n.source = Nla::V4(Ipv4Addr::new(10, 9, 9, 9));
    }
    let mut wrong_tsi = nak(1, &[]);
    wrong_tsi.dport = 4001;
    let mut wrong_dport = nak(1, &[]);
    wrong_dport.sport = 1;
    for p in [wrong_group, wrong_source, wrong_tsi, wrong_dport] {
        s.handle_repr(ms(1), RX, &p);
    }
    assert_eq!(s.stats().packets_ignored, 4);
    assert_eq!(s.stats().naks_received, 0);
    assert!(drain(&mut s, ms(1)).is_empty());
}

#[test]
fn odata_rate_limited_while_rdata_has_its_own_budget() {
    let c = SourceConfig {
        txw_max_rte: 100_000,
        rdata_max_rte: 100_000,
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    // Burst: max(2 * 1480, 1000) bytes; 1000-byte TSDUs cost 1024 bytes each.
    for _ in 0..10 {
        s.send(Instant::ZERO, &[1; 1000]).unwrap();
    }
    let out = drain(&mut s, Instant::ZERO);
    let odata = out
        .iter()
        .filter(|o| matches!(o, Out::Odata { .. }))
        .count();
    assert_eq!(odata, 2, "burst allows two packets");
    // Blocked: poll_timeout says when the next ODATA fits (1024 - (2960 - 2048) bytes
    // at 100 kB/s = 1.12 ms).
    let t = s.poll_timeout().unwrap();
    assert_eq!(t, Instant::from_nanos(1_120_000));
    assert!(s.poll_repr(Instant::from_nanos(1_119_999)).is_none());
    // Repairs are not held back by the exhausted ODATA bucket.
    s.handle_repr(ms(1), RX, &nak(0, &[1]));
    let out = drain(&mut s, ms(1));
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Out::Rdata { .. }))
            .count(),
        2
    );
    // Over the next 100 ms ODATA proceeds at ~100 kB/s: about 10 more packets at most.
    let mut sent = 0;
    for i in 1..=100 {
        sent += drain(&mut s, ms(i))
            .iter()
            .filter(|o| matches!(o, Out::Odata { .. }))
            .count();
    }
    assert_eq!(sent, 8, "the remaining 8 APDUs went out, paced");
    assert_eq!(s.stats().odata_sent, 10);
}

#[test]
fn repairs_go_ahead_of_new_data() {
    let mut s = with_data(3);
    s.send(ms(1), b"new").unwrap();
    s.handle_repr(ms(1), RX, &nak(0, &[]));
    let out = drain(&mut s, ms(1));
    assert!(matches!(out[0], Out::Ncf { .. }));
    assert_eq!(out[1], Out::Rdata { sqn: Sqn(0) });
    assert!(matches!(out[2], Out::Odata { sqn: Sqn(3), .. }));
}

#[test]
fn rdata_budget_limits_repairs() {
    let c = SourceConfig {
        rdata_max_rte: 10_000,
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    for _ in 0..10 {
        s.send(Instant::ZERO, &[1; 1000]).unwrap();
    }
    let _ = drain(&mut s, Instant::ZERO);
    s.handle_repr(ms(1), RX, &nak(0, &[1, 2, 3, 4, 5]));
    let out = drain(&mut s, ms(1));
    let rdata = out
        .iter()
        .filter(|o| matches!(o, Out::Rdata { .. }))
        .count();
    assert_eq!(rdata, 2, "the repair bucket's burst");
    assert_eq!(s.repairs_pending(), 4);
    // ODATA is not blocked by pending repairs.
    s.send(ms(1), b"x").unwrap();
    assert!(matches!(poll(&mut s, ms(1)), Some(Out::Odata { .. })));
}

#[test]
fn heartbeat_spms_after_data_then_ambient() {
    // A long TXW_SECS so the window-age deadline does not mask the SPM schedule.
    let c = SourceConfig {
        txw_secs: Duration::from_secs(3600),
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    s.send(Instant::ZERO, b"x").unwrap();
    assert_eq!(drain(&mut s, Instant::ZERO).len(), 4);
    // Heartbeats at +100 ms four times, then 1.3 s, 7 s, 16 s, 25 s, then ambient 30 s.
    let expect = [
        100u64, 100, 100, 100, 1300, 7000, 16000, 25000, 30000, 30000,
    ];
    let mut t = 0;
    for gap in expect {
        assert_eq!(s.poll_timeout(), Some(ms(t + gap)));
        assert!(s.poll_repr(ms(t + gap - 1)).is_none());
        t += gap;
        s.handle_timeout(ms(t));
        assert!(matches!(
            poll(&mut s, ms(t)),
            Some(Out::Spm { lead: Sqn(0), .. })
        ));
    }
    // New data restarts the heartbeat.
    s.send(ms(t), b"x").unwrap();
    let _ = drain(&mut s, ms(t));
    assert_eq!(s.poll_timeout(), Some(ms(t + 100)));
}

#[test]
fn spmr_storm_yields_few_spms() {
    let mut s = with_data(1);
    let before = s.stats().spm_sent;
    let spmr = PacketRepr {
        sport: DEFAULT_DPORT,
        dport: 4000,
        gsi: tsi().gsi,
        body: Body::Spmr,
        options: Options::default(),
    };
    // 1000 SPMRs over 50 ms (the first heartbeat is due at 100 ms).
    for i in 0..1000u64 {
        let now = Instant::from_nanos(i * 50_000);
        s.handle_repr(now, RX, &spmr);
        let _ = drain(&mut s, now);
    }
    assert_eq!(s.stats().spmr_received, 1000);
    assert_eq!(s.stats().spm_sent - before, 1);
}

#[test]
fn close_sends_remaining_data_then_fin_spms() {
    let c = SourceConfig {
        txw_max_rte: 10_000,
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    for _ in 0..5 {
        s.send(Instant::ZERO, &[0; 1000]).unwrap();
    }
    s.close(Instant::ZERO);
    let mut out = Vec::new();
    for i in 0..2000 {
        s.handle_timeout(ms(i));
        out.extend(drain(&mut s, ms(i)));
    }
    let last_odata = out
        .iter()
        .rposition(|o| matches!(o, Out::Odata { .. }))
        .unwrap();
    let first_fin = out
        .iter()
        .position(|o| matches!(o, Out::Spm { fin: true, .. }))
        .unwrap();
    assert!(first_fin > last_odata);
    assert_eq!(s.stats().odata_sent, 5);
    assert!(s.fin_started());
    // FIN SPMs advertise the final lead and repeat on the heartbeat schedule.
    let fins: Vec<_> = out
        .iter()
        .filter(|o| matches!(o, Out::Spm { fin: true, .. }))
        .collect();
    assert!(fins.len() >= 4);
    assert!(
        fins.iter()
            .all(|o| matches!(o, Out::Spm { lead: Sqn(4), .. }))
    );
}

#[test]
fn window_trail_advances_by_age_and_by_size() {
    let c = SourceConfig {
        txw_sqns: 8,
        send_queue: 8,
        txw_secs: Duration::from_secs(1),
        txw_min_secs: Duration::ZERO,
        max_apdu: 1000,
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    for i in 0..12u8 {
        s.send(Instant::ZERO, &[i]).unwrap();
        let _ = drain(&mut s, Instant::ZERO);
    }
    // Only the last 8 are repairable.
    assert_eq!(s.trail(), Sqn(4));
    assert_eq!(s.lead(), Sqn(11));
    s.handle_repr(ms(1), RX, &nak(3, &[4]));
    assert_eq!(s.stats().naks_outside_window, 1);
    let out = drain(&mut s, ms(1));
    assert!(out.contains(&Out::Rdata { sqn: Sqn(4) }));
    // TXW_SECS: after 1 s everything has aged out.
    assert_eq!(s.poll_timeout(), Some(ms(100)));
    s.handle_timeout(ms(1000));
    assert_eq!(s.trail(), Sqn(12));
    s.handle_repr(ms(1000), RX, &nak(11, &[]));
    assert_eq!(s.stats().naks_outside_window, 2);
}

#[test]
fn repair_queue_is_bounded() {
    let c = SourceConfig {
        repair_queue: 3,
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    for _ in 0..10 {
        s.send(Instant::ZERO, b"x").unwrap();
    }
    let _ = drain(&mut s, Instant::ZERO);
    s.handle_repr(ms(1), RX, &nak(0, &[1, 2, 3, 4]));
    assert_eq!(s.repairs_pending(), 3);
    assert_eq!(s.stats().repairs_dropped, 2);
}

#[test]
fn invalid_config_is_refused() {
    let c = SourceConfig {
        txw_sqns: 0,
        ..cfg()
    };
    assert!(matches!(
        Source::new(c, tsi(), Instant::ZERO),
        Err(ConfigError::WindowSqns(0))
    ));
}

#[test]
fn ambient_spms_continue_under_continuous_data() {
    let c = SourceConfig {
        txw_secs: Duration::from_secs(3600),
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    let mut spms = 0;
    // One APDU every 10 ms for 65 s: heartbeats never come due, ambient SPMs must.
    for i in 0..6500u64 {
        let now = ms(i * 10);
        s.send(now, b"x").unwrap();
        s.handle_timeout(now);
        spms += drain(&mut s, now)
            .iter()
            .filter(|o| matches!(o, Out::Spm { .. }))
            .count();
    }
    // The three announcement SPMs plus ambient ones at 30 s and 60 s.
    assert_eq!(spms, 5);
}

#[test]
fn full_window_of_young_data_blocks_send_until_it_ages() {
    let c = SourceConfig {
        txw_sqns: 8,
        send_queue: 8,
        max_apdu: 1000,
        txw_min_secs: Duration::from_millis(500),
        txw_secs: Duration::from_secs(3600),
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    for i in 0..8u64 {
        s.send(ms(i), b"x").unwrap();
        let _ = drain(&mut s, ms(i));
    }
    // Evicting sqn 0 (sent at 0 ms) is refused before 500 ms.
    assert_eq!(s.send(ms(10), b"y"), Err(SendError::WouldBlock));
    assert_eq!(
        s.poll_timeout(),
        Some(ms(107)),
        "heartbeat after the last ODATA"
    );
    assert_eq!(s.send(ms(499), b"y"), Err(SendError::WouldBlock));
    assert_eq!(s.trail(), Sqn(0));
    assert_eq!(s.send(ms(500), b"y").unwrap(), Sqn(8));
    assert_eq!(s.trail(), Sqn(1));
    let c2 = SourceConfig {
        txw_sqns: 8,
        send_queue: 8,
        max_apdu: 4000,
        txw_min_secs: Duration::from_millis(500),
        txw_secs: Duration::from_secs(3600),
        ..cfg()
    };
    let mut s = Source::new(c2, tsi(), Instant::ZERO).unwrap();
    for i in 0..8u64 {
        s.send(ms(i), b"x").unwrap();
        let _ = drain(&mut s, ms(i));
    }
    // An APDU needing two slots waits for sqn 1 (sent at 1 ms).
    let two = vec![0u8; 2000];
    assert_eq!(s.send(ms(500), &two), Err(SendError::WouldBlock));
    for t in [107, 207, 307, 407] {
        assert_eq!(s.poll_timeout(), Some(ms(t)));
        s.handle_timeout(ms(t));
        let _ = drain(&mut s, ms(t));
    }
    // The blocked-until deadline (501 ms) is reported once the heartbeats are done.
    assert_eq!(s.poll_timeout(), Some(ms(501)));
    assert_eq!(s.send(ms(501), &two).unwrap(), Sqn(8));
    // Disabled: the window evicts at once.
    let c3 = SourceConfig {
        txw_sqns: 8,
        send_queue: 8,
        max_apdu: 1000,
        txw_min_secs: Duration::ZERO,
        ..cfg()
    };
    let mut s = Source::new(c3, tsi(), Instant::ZERO).unwrap();
    for i in 0..20u8 {
        s.send(Instant::ZERO, &[i]).unwrap();
        let _ = drain(&mut s, Instant::ZERO);
    }
    assert_eq!(s.trail(), Sqn(12));
}

/// Payload of message `i`: `len` bytes, each different from its neighbours' so that a
/// record read from the wrong place is noticed.
fn msg(i: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|k| (i as usize).wrapping_mul(31).wrapping_add(k) as u8)
        .collect()
}

/// The RDATA payload the source sends for `sqn` after a NAK, or `None` when it does not
/// answer (no NCF, no RDATA).
fn repair_of(s: &mut Source, now: Instant, sqn: Sqn) -> Option<(Vec<u8>, Option<Fragment>)> {
    s.handle_repr(now, RX, &nak(sqn.0, &[]));
    let mut got = None;
    let mut ncf = false;
    while let Some(p) = s.poll_repr(now) {
        match p.body {
            Body::Ncf(n) if n.sqn == sqn => ncf = true,
            Body::Rdata(d) if d.sqn == sqn => {
                got = Some((d.payload.to_vec(), p.options.fragment));
            }
            _ => {}
        }
    }
    assert_eq!(ncf, got.is_some(), "an NCF exactly when a repair is sent");
    got
}

/// A byte-bound window: many sequences, the smallest arena allowed for `send_queue` 4
/// (2 × 4 × 1480 = 11 840 bytes).
fn byte_bound_cfg(min_secs: Duration) -> SourceConfig {
    SourceConfig {
        txw_sqns: 1024,
        txw_max_bytes: 2 * 4 * 1480,
        send_queue: 4,
        max_apdu: 4 * 1436,
        txw_min_secs: min_secs,
        txw_secs: Duration::from_secs(3600),
        ..cfg()
    }
}

#[test]
fn byte_bound_evicts_oldest_and_keeps_repairs_exact() {
    let mut s = Source::new(byte_bound_cfg(Duration::ZERO), tsi(), Instant::ZERO).unwrap();
    for i in 0..100u32 {
        assert_eq!(s.send(Instant::ZERO, &msg(i, 1000)).unwrap(), Sqn(i));
        let _ = drain(&mut s, Instant::ZERO);
    }
    // 11 records of 1000 bytes fit in 11 840 bytes; the 12th starts a new lap after 840
    // bytes of padding, so between 10 and 11 of the newest are held, never more.
    let held = s.lead().0 - s.trail().0 + 1;
    assert!((10..=11).contains(&held), "held {held}");
    assert_eq!(s.lead(), Sqn(99));
    // The oldest still held is repaired byte for byte; the one before is gone.
    let trail = s.trail();
    let (data, frag) = repair_of(&mut s, ms(1), trail).expect("trail is repairable");
    assert_eq!(data, msg(trail.0, 1000));
    assert_eq!(frag, None);
    assert_eq!(repair_of(&mut s, ms(1), trail.prev()), None);
    assert_eq!(s.stats().naks_outside_window, 1);
    assert_eq!(s.stats().ncf_sent, 1);
    // Every held sequence comes back intact.
    for q in trail.0..=99 {
        let (data, _) = repair_of(&mut s, ms(2), Sqn(q)).unwrap();
        assert_eq!(data, msg(q, 1000), "sqn {q}");
    }
}

#[test]
fn sqn_bound_evicts_even_when_bytes_remain() {
    let c = SourceConfig {
        txw_sqns: 16,
        send_queue: 16,
        max_apdu: 1000,
        txw_min_secs: Duration::ZERO,
        txw_secs: Duration::from_secs(3600),
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    for i in 0..40u32 {
        s.send(Instant::ZERO, &msg(i, 64)).unwrap();
        let _ = drain(&mut s, Instant::ZERO);
    }
    assert_eq!((s.trail(), s.lead()), (Sqn(24), Sqn(39)));
    assert_eq!(repair_of(&mut s, ms(1), Sqn(23)), None);
    assert_eq!(
        repair_of(&mut s, ms(1), Sqn(24)).map(|r| r.0),
        Some(msg(24, 64))
    );
}

#[test]
fn byte_bound_respects_min_secs_then_frees_up() {
    let mut s = Source::new(
        byte_bound_cfg(Duration::from_millis(500)),
        tsi(),
        Instant::ZERO,
    )
    .unwrap();
    // One 1000-byte message per ms: the 12th needs the arena's first record (sent at
    // 0 ms), which is younger than 500 ms.
    let mut i = 0u32;
    let blocked = loop {
        let now = ms(u64::from(i));
        match s.send(now, &msg(i, 1000)) {
            Ok(q) => assert_eq!(q, Sqn(i)),
            Err(e) => break (e, now),
        }
        let _ = drain(&mut s, now);
        i += 1;
        assert!(i < 100, "never blocked");
    };
    assert_eq!(blocked.0, SendError::WouldBlock);
    assert_eq!(i, 11);
    assert_eq!(s.trail(), Sqn(0), "nothing young was evicted");
    // Nothing was dropped: every message sent so far is repairable.
    for q in 0..11 {
        assert_eq!(
            repair_of(&mut s, blocked.1, Sqn(q)).unwrap().0,
            msg(q, 1000)
        );
    }
    // It fits once sqn 0 is 500 ms old, and not a nanosecond before.
    let before = ms(500) - Duration::from_nanos(1);
    assert_eq!(s.send(before, &msg(11, 1000)), Err(SendError::WouldBlock));
    assert!(s.poll_timeout().unwrap() <= ms(500));
    assert_eq!(s.send(ms(500), &msg(11, 1000)).unwrap(), Sqn(11));
    assert_eq!(s.trail(), Sqn(1));
}

#[test]
fn unsent_data_is_never_evicted() {
    // A queue of unsent data larger than the arena's free space blocks `send` (no
    // deadline: transmissions free it) instead of overwriting it.
    let c = SourceConfig {
        txw_max_rte: 1,
        ..byte_bound_cfg(Duration::ZERO)
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    let _ = drain(&mut s, Instant::ZERO);
    let mut n = 0;
    while s.send(Instant::ZERO, &msg(n, 1400)).is_ok() {
        n += 1;
    }
    assert_eq!(n, 4, "send_queue bounds unsent TPDUs");
    assert_eq!(s.unsent(), 4);
    assert_eq!(s.trail(), Sqn(0));
}

#[test]
fn fragmented_apdus_wrap_the_arena_and_repair_with_opt_fragment() {
    let mut s = Source::new(byte_bound_cfg(Duration::ZERO), tsi(), Instant::ZERO).unwrap();
    let chunk = s.config().max_fragment_tsdu();
    let apdu = msg(7, 3 * chunk + 5);
    let mut first = Sqn(0);
    for _ in 0..10 {
        first = s.send(Instant::ZERO, &apdu).unwrap();
        let _ = drain(&mut s, Instant::ZERO);
    }
    assert_eq!(first, Sqn(36));
    assert!(s.trail().le(Sqn(36)));
    let mut whole = Vec::new();
    for k in 0..4u32 {
        let (data, frag) = repair_of(&mut s, ms(1), first.add(k)).unwrap();
        let f = frag.expect("fragment option kept");
        assert_eq!(f.first_sqn, first);
        assert_eq!(f.offset as usize, k as usize * chunk);
        assert_eq!(f.apdu_len as usize, apdu.len());
        whole.extend_from_slice(&data);
    }
    assert_eq!(whole, apdu);
}

#[test]
fn default_window_sustains_a_million_small_messages_per_second() {
    // 3 s of 64-byte messages, one per µs, with the default window and txw_min_secs:
    // never blocked, and at the end at least txw_min_secs of history is repairable.
    let mut s = Source::new(cfg(), tsi(), Instant::ZERO).unwrap();
    let mut buf = vec![0u8; 1500];
    let payload = [0x42u8; 64];
    let n = 3_000_000u32;
    for i in 0..n {
        let now = Instant::from_nanos(u64::from(i) * 1000);
        assert_eq!(s.send(now, &payload), Ok(Sqn(i)), "blocked at {i}");
        while s.poll_transmit(now, &mut buf).is_some() {}
    }
    let held = s.lead().0 - s.trail().0 + 1;
    assert!(held >= 1_000_000, "only {held} sequences repairable");
    assert_eq!(s.stats().odata_sent, u64::from(n));
}

mod arena_model {
    //! The byte-packed window against a simple model: a map from sequence to the bytes
    //! and fragment option it must carry.

    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn check(sizes: &[usize], sqns: u32) {
        let c = SourceConfig {
            txw_sqns: sqns,
            ..byte_bound_cfg(Duration::ZERO)
        };
        let cap = c.txw_max_bytes;
        let chunk = c.max_fragment_tsdu();
        let max_record = c.max_single_tsdu().max(chunk + txw::FRAG_HEADER);
        let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
        let mut model: HashMap<u32, (Vec<u8>, Option<Fragment>)> = HashMap::new();
        for (i, &len) in sizes.iter().enumerate() {
            let apdu = msg(i as u32, len);
            let first = s.send(Instant::ZERO, &apdu).unwrap();
            let n = s.config().tpdus_for(len);
            if n == 1 {
                model.insert(first.0, (apdu, None));
            } else {
                for (k, part) in apdu.chunks(chunk).enumerate() {
                    let f = Fragment {
                        first_sqn: first,
                        offset: (k * chunk) as u32,
                        apdu_len: len as u32,
                    };
                    model.insert(first.0 + k as u32, (part.to_vec(), Some(f)));
                }
            }
            let _ = drain(&mut s, Instant::ZERO);
            let (trail, lead) = (s.trail(), s.lead());
            let held = lead.0.wrapping_add(1).wrapping_sub(trail.0);
            let record = |q: u32| {
                let (d, f) = &model[&q];
                d.len() + if f.is_some() { txw::FRAG_HEADER } else { 0 }
            };
            let bytes: usize = (trail.0..=lead.0).map(record).sum();
            // Both bounds hold...
            assert!(held <= sqns, "{held} sequences held");
            assert!(bytes <= cap, "{bytes} bytes held");
            // ...and nothing was evicted that either bound allowed to keep (the arena
            // loses less than one record to padding at its end).
            if trail.0 > 0 {
                assert!(
                    held + 1 > sqns || bytes + record(trail.0 - 1) > cap - max_record,
                    "evicted too much: {held} held, {bytes} bytes"
                );
            }
            // Every held sequence carries its own bytes and option.
            for q in [trail.0, (trail.0 + lead.0) / 2, lead.0] {
                let sqn = Sqn(q);
                let got = (s.txw.tsdu(sqn).to_vec(), s.txw.fragment(sqn));
                assert_eq!(&got, &model[&q], "sqn {q}");
            }
        }
        // Repairs of everything still held are exact.
        for q in s.trail().0..=s.lead().0 {
            assert_eq!(repair_of(&mut s, ms(1), Sqn(q)).as_ref(), Some(&model[&q]));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn byte_arena_matches_model(
            sizes in prop::collection::vec(
                prop_oneof![8 => 0usize..1456, 1 => 1457usize..4 * 1436],
                1..200,
            ),
            sqn_bits in 3u32..10,
        ) {
            check(&sizes, 1 << sqn_bits);
        }
    }
}

/// What one simulated run of [`flood_run`] sent.
#[derive(Debug, Default, PartialEq)]
struct FloodRun {
    /// ODATA packets sent in each simulated second.
    odata_per_sec: Vec<u64>,
    /// NCF bytes (as emitted) in each simulated second.
    ncf_bytes_per_sec: Vec<u64>,
    /// RDATA TPDU bytes (as emitted) in each simulated second.
    rdata_bytes_per_sec: Vec<u64>,
    ncfs: u64,
    rdatas: u64,
    spms: u64,
    /// NAKed sequences handed to the source (each NAK's sqn and its list).
    nak_sqns: u64,
    spmrs: u64,
}

/// Rates of the flood tests: ODATA 10 000 messages/s of 64 bytes, small NCF and RDATA
/// budgets so that the flood exceeds them many times over.
const FLOOD_MSG: usize = 64;
const FLOOD_MSGS_PER_SEC: u64 = 10_000;
const FLOOD_NCF_RTE: u64 = 50_000;
const FLOOD_RDATA_RTE: u64 = 200_000;

fn flood_cfg() -> SourceConfig {
    SourceConfig {
        txw_max_rte: FLOOD_MSGS_PER_SEC * (FLOOD_MSG + DATA_OVERHEAD) as u64,
        rdata_max_rte: FLOOD_RDATA_RTE,
        ncf_max_rte: FLOOD_NCF_RTE,
        ..cfg()
    }
}

/// Drives a source for `secs` simulated seconds in 100 µs steps. The application keeps
/// the send queue full of 64-byte messages. With `flood`, every step also brings 5 NAKs
/// (50 000 NAKs/s) of 1 + 8 listed sequences, a fifth of them inside the window and the
/// rest random 32-bit numbers, and one SPMR (10 000/s), all from a seeded RNG.
fn flood_run(secs: u64, flood: bool) -> (FloodRun, SourceStats) {
    const STEP_NS: u64 = 100_000;
    let mut s = Source::new(flood_cfg(), tsi(), Instant::ZERO).unwrap();
    let mut rng = crate::rng::Rng::new(0x5eed);
    let mut buf = vec![0u8; 1500];
    let mut r = FloodRun {
        odata_per_sec: vec![0; secs as usize],
        ncf_bytes_per_sec: vec![0; secs as usize],
        rdata_bytes_per_sec: vec![0; secs as usize],
        ..FloodRun::default()
    };
    let spmr = PacketRepr {
        sport: DEFAULT_DPORT,
        dport: 4000,
        gsi: tsi().gsi,
        body: Body::Spmr,
        options: Options::default(),
    };
    let mut msg = [0u8; FLOOD_MSG];
    let mut wire = vec![0u8; 1500];
    for step in 0..secs * 1_000_000_000 / STEP_NS {
        let now = Instant::from_nanos(step * STEP_NS);
        let sec = (step * STEP_NS / 1_000_000_000) as usize;
        while s.unsent() < 64 {
            s.send(now, &msg).unwrap();
            msg[0] = msg[0].wrapping_add(1);
        }
        if flood {
            for _ in 0..5 {
                let (trail, lead) = (s.trail(), s.lead());
                let pick = |rng: &mut crate::rng::Rng| {
                    let span = u64::from(lead.0.wrapping_sub(trail.0).wrapping_add(1));
                    if lead.ge(trail) && rng.below(5) == 0 {
                        trail.0.wrapping_add(rng.below(span) as u32)
                    } else {
                        rng.next_u64() as u32
                    }
                };
                let first = pick(&mut rng);
                let list: Vec<u32> = (0..8).map(|_| pick(&mut rng)).collect();
                // Through the decoder, as from the network.
                let n = nak(first, &list).emit(&mut wire).unwrap();
                s.handle_packet(now, RX, &wire[..n]).unwrap();
                r.nak_sqns += 9;
            }
            s.handle_repr(now, RX, &spmr);
            r.spmrs += 1;
        }
        s.handle_timeout(now);
        while let Some(t) = s.poll_transmit(now, &mut buf) {
            match t.kind {
                PacketType::Odata => r.odata_per_sec[sec] += 1,
                PacketType::Ncf => {
                    r.ncfs += 1;
                    r.ncf_bytes_per_sec[sec] += t.len as u64;
                }
                PacketType::Rdata => {
                    r.rdatas += 1;
                    r.rdata_bytes_per_sec[sec] += t.len as u64;
                }
                PacketType::Spm => r.spms += 1,
                k => panic!("unexpected {k:?}"),
            }
        }
    }
    (r, *s.stats())
}

#[test]
fn nak_and_spmr_flood_leaves_odata_alone_and_repairs_within_budget() {
    let secs = 3;
    let (quiet, _) = flood_run(secs, false);
    let (flood, st) = flood_run(secs, true);
    // ODATA: exactly the packets of the run without flood, in every second, at the rate.
    assert_eq!(flood.odata_per_sec, quiet.odata_per_sec);
    for (i, &n) in flood.odata_per_sec.iter().enumerate().skip(1) {
        assert!(
            n.abs_diff(FLOOD_MSGS_PER_SEC) <= 1,
            "second {i}: {n} ODATA, configured {FLOOD_MSGS_PER_SEC}/s"
        );
    }
    // The flood reached the source: every NAKed sequence and SPMR counted.
    assert_eq!(st.naks_received, flood.nak_sqns);
    assert_eq!(flood.nak_sqns, 5 * 9 * 10_000 * secs);
    assert_eq!(st.spmr_received, flood.spmrs);
    assert!(st.naks_outside_window > flood.nak_sqns / 2);
    // NCF and RDATA bytes within their budgets (burst: 2 × max_tpdu) in every second,
    // and the budgets are what limits them (the flood asks for far more).
    let burst = 2 * 1480;
    for (name, per_sec, rte) in [
        ("NCF", &flood.ncf_bytes_per_sec, FLOOD_NCF_RTE),
        ("RDATA", &flood.rdata_bytes_per_sec, FLOOD_RDATA_RTE),
    ] {
        for (i, &b) in per_sec.iter().enumerate() {
            assert!(
                b <= rte + burst,
                "second {i}: {b} {name} bytes, budget {rte}/s"
            );
            assert!(
                b >= rte * 9 / 10,
                "second {i}: {b} {name} bytes: budget not reached"
            );
        }
        let total: u64 = per_sec.iter().sum();
        assert!(
            total <= rte * secs + burst,
            "{name}: {total} bytes in {secs} s"
        );
    }
    // Counted: what was sent, and what the budgets held back.
    assert_eq!(st.ncf_sent, flood.ncfs);
    assert_eq!(st.ncf_bytes, flood.ncf_bytes_per_sec.iter().sum::<u64>());
    assert_eq!(st.rdata_sent, flood.rdatas);
    assert_eq!(
        st.rdata_tpdu_bytes,
        flood.rdata_bytes_per_sec.iter().sum::<u64>()
    );
    assert!(st.ncfs_dropped > 0, "{st:?}");
    // SPMRs: at most one SPM per spmr_holdoff on top of the schedule.
    let holdoff_ms = cfg().spmr_holdoff.as_millis() as u64;
    assert!(
        flood.spms <= quiet.spms + secs * 1000 / holdoff_ms + 1,
        "{} SPMs under SPMR flood, {} without",
        flood.spms,
        quiet.spms
    );
}

#[test]
fn flood_memory_is_the_preallocated_queues() {
    let (_, st) = flood_run(2, true);
    // The repair queue holds each sequence at most once and never beyond its bound.
    assert!(st.repairs_dropped > 0 || st.naks_coalesced > 0, "{st:?}");
    let mut s = Source::new(flood_cfg(), tsi(), Instant::ZERO).unwrap();
    let mut wire = vec![0u8; 1500];
    for _ in 0..200 {
        s.send(Instant::ZERO, &[0; FLOOD_MSG]).unwrap();
    }
    let _ = drain(&mut s, Instant::ZERO);
    for i in 0..100_000u32 {
        let n = nak(i % 200, &[(i + 1) % 200]).emit(&mut wire).unwrap();
        s.handle_packet(ms(1), RX, &wire[..n]).unwrap();
        assert!(s.repairs_pending() <= 200);
        assert!(s.ncfs.len() <= s.cfg.ncf_queue);
    }
    assert_eq!(s.repairs.capacity(), s.cfg.repair_queue);
    assert_eq!(s.ncfs.capacity(), s.cfg.ncf_queue);
}

#[test]
fn naks_the_full_repair_queue_refuses_get_no_ncf() {
    let c = SourceConfig {
        repair_queue: 2,
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    for i in 0..5 {
        s.send(Instant::ZERO, &[i; 10]).unwrap();
    }
    let _ = drain(&mut s, Instant::ZERO);
    s.handle_repr(ms(1), RX, &nak(0, &[1, 2, 3]));
    s.handle_repr(ms(1), RX, &nak(4, &[]));
    let out = drain(&mut s, ms(1));
    // Only 0 and 1 were queued: the NCF confirms them, 2, 3 and 4 get nothing.
    assert_eq!(
        out.iter()
            .filter(|o| matches!(o, Out::Ncf { .. }))
            .collect::<Vec<_>>(),
        vec![&Out::Ncf {
            sqn: Sqn(0),
            list: vec![Sqn(1)]
        }]
    );
    assert_eq!(s.stats().repairs_dropped, 3);
    assert_eq!(s.stats().ncf_sent, 1);
}

#[test]
fn ncf_budget_delays_ncfs_without_blocking_data() {
    let c = SourceConfig {
        ncf_max_rte: 3600,
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    for i in 0..200 {
        s.send(Instant::ZERO, &[i; 10]).unwrap();
    }
    let _ = drain(&mut s, Instant::ZERO);
    // 100 single-sequence NAKs (36-byte NCFs); the burst is 2 × max_tpdu = 2960 bytes.
    for i in 0..100 {
        s.handle_repr(ms(1), RX, &nak(i, &[]));
    }
    s.send(ms(1), b"new").unwrap();
    let out = drain(&mut s, ms(1));
    let ncfs = out.iter().filter(|o| matches!(o, Out::Ncf { .. })).count();
    assert_eq!(ncfs, 2960 / 36);
    assert!(out.iter().any(|o| matches!(o, Out::Odata { .. })));
    // The rest leave as the budget refills: 100 bytes/ms, one 36-byte NCF per 10 ms.
    let next = s.poll_timeout().unwrap();
    assert!(next > ms(1) && next <= ms(11), "{next:?}");
    s.handle_timeout(ms(11));
    let later = drain(&mut s, ms(11))
        .iter()
        .filter(|o| matches!(o, Out::Ncf { .. }))
        .count();
    assert_eq!(later, 1);
    assert_eq!(s.stats().ncf_bytes, 36 * (ncfs + later) as u64);
}

#[test]
fn default_budgets_are_bounded() {
    let c = SourceConfig::default();
    assert_eq!(c.rdata_max_rte, crate::config::DEFAULT_RDATA_MAX_RTE);
    assert_eq!(c.ncf_max_rte, crate::config::DEFAULT_NCF_MAX_RTE);
    assert!(c.rdata_max_rte > 0 && c.ncf_max_rte > 0);
}

/// Issue 12: after an RDATA, NAKs for the same sequence within `rdata_holdoff` (1 ms)
/// are confirmed but not repaired again; the first NAK after it is.
#[test]
fn a_repeat_rdata_is_held_off_for_rdata_holdoff() {
    let mut s = with_data(5);
    let t0 = ms(10);
    s.handle_repr(t0, RX, &nak(2, &[]));
    let out = drain(&mut s, t0);
    assert_eq!(
        out,
        vec![
            Out::Ncf {
                sqn: Sqn(2),
                list: vec![]
            },
            Out::Rdata { sqn: Sqn(2) }
        ]
    );
    // 999 µs later (in flight when the RDATA left): NCF only. Sequence 3 in the same
    // NAK was not repaired yet: it is.
    let t1 = t0 + Duration::from_micros(999);
    s.handle_repr(t1, RX, &nak(2, &[3]));
    let out = drain(&mut s, t1);
    assert_eq!(
        out,
        vec![
            Out::Ncf {
                sqn: Sqn(2),
                list: vec![Sqn(3)]
            },
            Out::Rdata { sqn: Sqn(3) }
        ]
    );
    assert_eq!(s.stats().naks_held_off, 1);
    // 1 ms after the first RDATA: repaired again.
    let t2 = t0 + Duration::from_millis(1);
    s.handle_repr(t2, RX, &nak(2, &[]));
    let out = drain(&mut s, t2);
    assert!(out.contains(&Out::Rdata { sqn: Sqn(2) }), "{out:?}");
    assert_eq!(s.stats().rdata_sent, 3);
    assert_eq!(s.stats().naks_held_off, 1);
}

/// With `rdata_holdoff` zero every NAK round after an RDATA is repaired.
#[test]
fn without_holdoff_every_nak_round_is_repaired() {
    let c = SourceConfig {
        rdata_holdoff: Duration::ZERO,
        ..cfg()
    };
    let mut s = Source::new(c, tsi(), Instant::ZERO).unwrap();
    s.send(Instant::ZERO, &[1; 100]).unwrap();
    drain(&mut s, Instant::ZERO);
    for i in 0..3 {
        let t = ms(10) + Duration::from_micros(i * 10);
        s.handle_repr(t, RX, &nak(0, &[]));
        drain(&mut s, t);
    }
    assert_eq!(s.stats().rdata_sent, 3);
    assert_eq!(s.stats().naks_held_off, 0);
}

/// Every packet `poll_transmit` has now, with the lines it goes on.
fn transmits(s: &mut Source, now: Instant) -> Vec<(PacketType, crate::line::LineSet)> {
    let mut buf = [0u8; 1500];
    let mut v = Vec::new();
    while let Some(t) = s.poll_transmit(now, &mut buf) {
        v.push((t.kind, t.lines));
    }
    v
}

#[test]
fn repairs_go_back_on_the_lines_that_naked() {
    use crate::line::LineSet;
    let mut s = Source::new(cfg(), tsi(), Instant::ZERO).unwrap();
    for i in 0..10u8 {
        s.send(Instant::ZERO, &[i; 100]).unwrap();
    }
    // Data and SPMs go on every line.
    let first = transmits(&mut s, ms(0));
    assert!(first.len() >= 10);
    assert!(first.iter().all(|&(_, l)| l == LineSet::ALL));
    // A NAK on line 1: NCF and RDATA on line 1 only.
    s.handle_repr_on(ms(5), 1, RX, &nak(3, &[]));
    assert_eq!(
        transmits(&mut s, ms(5)),
        vec![
            (PacketType::Ncf, LineSet::one(1)),
            (PacketType::Rdata, LineSet::one(1)),
        ]
    );
    // NAKs for one sequence on lines 0 and 2 before its RDATA leaves: one RDATA on both.
    s.handle_repr_on(ms(10), 0, RX, &nak(7, &[]));
    s.handle_repr_on(ms(10), 2, RX, &nak(7, &[]));
    let out = transmits(&mut s, ms(10));
    let rdata: Vec<_> = out
        .iter()
        .filter(|(k, _)| *k == PacketType::Rdata)
        .collect();
    assert_eq!(rdata, vec![&(PacketType::Rdata, LineSet::one(0).with(2))]);
    assert_eq!(s.stats().naks_coalesced, 1);
    // The next repair of that sequence starts from no line again.
    s.handle_repr_on(ms(30), 1, RX, &nak(7, &[]));
    let out = transmits(&mut s, ms(30));
    assert!(
        out.contains(&(PacketType::Rdata, LineSet::one(1))),
        "{out:?}"
    );
    // A line beyond MAX_LINES is no line: the NAK is ignored.
    let ignored = s.stats().packets_ignored;
    s.handle_repr_on(ms(40), crate::MAX_LINES as u8, RX, &nak(8, &[]));
    assert_eq!(s.stats().packets_ignored, ignored + 1);
    assert!(
        transmits(&mut s, ms(40))
            .iter()
            .all(|(k, _)| *k != PacketType::Rdata)
    );
}
