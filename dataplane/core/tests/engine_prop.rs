//! Property tests: arbitrary packet sequences (valid framing, hostile contents) and
//! arbitrary bytes never panic the engines, and the receiver's event stream stays
//! ordered: per session, delivered and unrecoverable ranges never overlap or go back.

use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::HashMap;

use proptest::prelude::*;
use xpgm_core::config::{ReceiverConfig, SourceConfig};
use xpgm_core::receiver::{Event, Receiver};
use xpgm_core::source::Source;
use xpgm_core::wire::{Body, Data, Fragment, Gsi, Nak, Nla, Options, PacketRepr, Spm, Tsi};
use xpgm_core::{Instant, Sqn};

const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 1, 1, 1));
const BASE: u32 = u32::MAX - 60;

#[derive(Clone, Debug)]
struct Op {
    kind: u8,
    port: u16,
    sqn: u32,
    trail: u32,
    len: usize,
    frag: Option<(u32, u32, u32)>,
    fin: bool,
    rst: bool,
    join: Option<u32>,
    list: Vec<u32>,
    dt_ms: u64,
}

fn op() -> impl Strategy<Value = Op> {
    (
        (0u8..6, 0u16..2, 0u32..200, 0u32..200, 0usize..64),
        proptest::option::weighted(0.3, (0u32..200, 0u32..300, 0u32..300)),
        (
            proptest::bool::weighted(0.05),
            proptest::bool::weighted(0.02),
        ),
        proptest::option::weighted(0.05, 0u32..200),
        proptest::collection::vec(0u32..200, 0..5),
        0u64..120,
    )
        .prop_map(
            |((kind, port, sqn, trail, len), frag, (fin, rst), join, list, dt_ms)| Op {
                kind,
                port,
                sqn,
                trail,
                len,
                frag,
                fin,
                rst,
                join,
                list,
                dt_ms,
            },
        )
}

fn repr<'a>(o: &Op, payload: &'a [u8]) -> PacketRepr<'a> {
    let s = |x: u32| Sqn(BASE.wrapping_add(x));
    let mut options = Options {
        fin: o.fin,
        rst: o.rst.then_some(false),
        join: o.join.map(s),
        fragment: o.frag.map(|(f, off, len)| Fragment {
            first_sqn: s(f),
            offset: off,
            apdu_len: len,
        }),
        ..Options::default()
    };
    for &x in &o.list {
        options.nak_list.push(s(x));
    }
    let data = Data {
        sqn: s(o.sqn),
        trail: s(o.trail),
        payload: &payload[..o.len],
    };
    let body = match o.kind {
        0 | 1 => Body::Odata(data),
        2 => Body::Rdata(data),
        3 => Body::Spm(Spm {
            sqn: Sqn(o.sqn),
            trail: s(o.trail),
            lead: s(o.sqn),
            path: SRC,
        }),
        4 => Body::Ncf(Nak {
            sqn: s(o.sqn),
            source: SRC,
            group: GROUP,
        }),
        _ => Body::Nak(Nak {
            sqn: s(o.sqn),
            source: SRC,
            group: GROUP,
        }),
    };
    let downstream = o.kind < 5;
    PacketRepr {
        sport: if downstream { 4000 + o.port } else { 7500 },
        dport: if downstream { 7500 } else { 4000 + o.port },
        gsi: Gsi([1; 6]),
        body,
        options,
    }
}

fn rcfg() -> ReceiverConfig {
    ReceiverConfig {
        group: GROUP,
        rxw_sqns: 64,
        max_apdu: 256,
        nak_ncf_retries: 2,
        peer_expiry: Duration::from_secs(5),
        ..ReceiverConfig::default()
    }
}

/// Per-session position after the last event: the next sequence that may be reported.
fn check_event(next: &mut HashMap<Tsi, Sqn>, ev: &Event<'_>) {
    match *ev {
        Event::Data { tsi, sqn, data } => {
            assert!(data.len() <= 256);
            if let Some(n) = next.get(&tsi) {
                assert!(sqn.ge(*n), "data {sqn:?} before {n:?}");
            }
            next.insert(tsi, sqn.next());
        }
        Event::Unrecoverable { tsi, first, count } => {
            assert!(count > 0);
            if let Some(n) = next.get(&tsi) {
                assert!(first.ge(*n), "unrecoverable {first:?} before {n:?}");
            }
            next.insert(tsi, first.add(count));
        }
        Event::PeerGone { tsi, .. } => {
            next.remove(&tsi);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn receiver_survives_hostile_sequences(ops in proptest::collection::vec(op(), 1..120), seed: u64) {
        let payload: Vec<u8> = (0..64u8).collect();
        let mut r = Receiver::new(rcfg(), SRC, seed).unwrap();
        let mut now = Instant::ZERO;
        let mut next = HashMap::new();
        let mut buf = [0u8; 1500];
        for o in &ops {
            now += Duration::from_millis(o.dt_ms);
            r.handle_timeout(now);
            let p = repr(o, &payload);
            r.handle_repr(now, SRC, &p);
            // Through the codec too, when it encodes.
            let mut wire = [0u8; 2048];
            if let Ok(n) = p.emit(&mut wire) {
                let _ = r.handle_packet(now, SRC, &wire[..n]);
            }
            while r.poll_transmit(now, &mut buf).is_some() {}
            while let Some(ev) = r.poll_event() {
                check_event(&mut next, &ev);
            }
            // Every tracked peer has at least its expiry timer armed.
            if r.peer_count() > 0 {
                prop_assert!(r.poll_timeout().is_some());
            }
        }
        // Let every timer run out: everything missing is eventually resolved.
        for _ in 0..200 {
            now += Duration::from_millis(100);
            r.handle_timeout(now);
            while r.poll_transmit(now, &mut buf).is_some() {}
            while let Some(ev) = r.poll_event() {
                check_event(&mut next, &ev);
            }
        }
        prop_assert_eq!(r.peer_count(), 0, "peers expire after 5 s of silence");
    }

    #[test]
    fn engines_survive_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut r = Receiver::new(rcfg(), SRC, 1).unwrap();
        let _ = r.handle_packet(Instant::ZERO, SRC, &bytes);
        while r.poll_event().is_some() {}
        let cfg = SourceConfig { group: GROUP, path_nla: SRC, ..SourceConfig::default() };
        let tsi = Tsi { gsi: Gsi([1; 6]), sport: 4000 };
        let mut s = Source::new(cfg, tsi, Instant::ZERO).unwrap();
        let _ = s.handle_packet(Instant::ZERO, SRC, &bytes);
        let mut buf = [0u8; 1500];
        while s.poll_transmit(Instant::ZERO, &mut buf).is_some() {}
    }

    #[test]
    fn source_survives_hostile_naks(ops in proptest::collection::vec(op(), 1..100), sends in 0usize..300) {
        let cfg = SourceConfig {
            group: GROUP,
            path_nla: SRC,
            txw_sqns: 64,
            send_queue: 64,
            max_apdu: 4000,
            repair_queue: 16,
            ncf_queue: 4,
            txw_max_rte: 50_000,
            rdata_max_rte: 20_000,
            ..SourceConfig::default()
        };
        let tsi = Tsi { gsi: Gsi([1; 6]), sport: 4000 };
        let mut s = Source::new(cfg, tsi, Instant::ZERO).unwrap();
        let payload = vec![3u8; 4000];
        let mut now = Instant::ZERO;
        let mut buf = [0u8; 1500];
        let mut i = 0;
        for o in &ops {
            now += Duration::from_millis(o.dt_ms);
            if i < sends {
                let _ = s.send(now, &payload[..(o.len * 60).min(4000)]);
                i += 1;
            }
            s.handle_timeout(now);
            // NAKs and SPMRs carry real window sequences here (0..200).
            let mut p = repr(o, &payload);
            if let Body::Nak(n) = &mut p.body {
                n.sqn = Sqn(o.sqn);
            }
            if o.kind == 5 && o.rst {
                p.body = Body::Spmr;
            }
            s.handle_repr(now, SRC, &p);
            while let Some(t) = s.poll_transmit(now, &mut buf) {
                prop_assert!(t.len <= 1480);
            }
            let st = s.stats();
            prop_assert!(st.naks_outside_window <= st.naks_received);
            prop_assert!(s.repairs_pending() <= 16);
        }
    }
}
