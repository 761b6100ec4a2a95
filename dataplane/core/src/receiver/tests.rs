//! Receiver state transitions, driven through `handle_repr` / `poll_repr`.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::*;
use crate::wire::{Data, Fragment, Gsi, Options, Spm};

const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const PATH: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 9));
const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 1, 1, 1));
const LOCAL: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 2));
const DPORT: u16 = crate::wire::DEFAULT_DATA_PORT;

fn tsi() -> Tsi {
    Tsi {
        gsi: Gsi([1, 2, 3, 4, 5, 6]),
        sport: 4000,
    }
}

/// The tests step time in milliseconds: no initial RTT (the timers are the ceilings
/// until a sample), so that their windows are today's constants, and no round-trip
/// probe (its SPMRs would mix with what they check; `rtt_probe_*` tests have it).
fn cfg() -> ReceiverConfig {
    ReceiverConfig {
        group: GROUP,
        rtt_initial: Duration::ZERO,
        rtt_probe: false,
        ..ReceiverConfig::default()
    }
}

fn rx() -> Receiver {
    Receiver::new(cfg(), LOCAL, 42).unwrap()
}

/// A receiver with the constant timers (`nak_adaptive` off): NAK_BO_IVL 50 ms uniform,
/// NAK_RPT_IVL and NAK_RDATA_IVL 200 ms, whatever the round trip.
fn rx_fixed() -> Receiver {
    let c = ReceiverConfig {
        nak_adaptive: false,
        ..cfg()
    };
    Receiver::new(c, LOCAL, 42).unwrap()
}

fn ms(n: u64) -> Instant {
    Instant::from_nanos(n * 1_000_000)
}

fn data_pkt(sqn: u32, trail: u32, payload: &[u8], options: Options, rdata: bool) -> PacketRepr<'_> {
    let d = Data {
        sqn: Sqn(sqn),
        trail: Sqn(trail),
        payload,
    };
    PacketRepr {
        sport: 4000,
        dport: DPORT,
        gsi: tsi().gsi,
        body: if rdata {
            Body::Rdata(d)
        } else {
            Body::Odata(d)
        },
        options,
    }
}

fn odata(sqn: u32, trail: u32, payload: &[u8]) -> PacketRepr<'_> {
    data_pkt(sqn, trail, payload, Options::default(), false)
}

fn rdata(sqn: u32, trail: u32, payload: &[u8]) -> PacketRepr<'_> {
    data_pkt(sqn, trail, payload, Options::default(), true)
}

fn spm(sqn: u32, trail: u32, lead: u32) -> PacketRepr<'static> {
    PacketRepr {
        sport: 4000,
        dport: DPORT,
        gsi: tsi().gsi,
        body: Body::Spm(Spm {
            sqn: Sqn(sqn),
            trail: Sqn(trail),
            lead: Sqn(lead),
            path: PATH,
        }),
        options: Options::default(),
    }
}

fn ncf(sqn: u32, list: &[u32]) -> PacketRepr<'static> {
    let mut options = Options::default();
    for &x in list {
        assert!(options.nak_list.push(Sqn(x)));
    }
    PacketRepr {
        sport: 4000,
        dport: DPORT,
        gsi: tsi().gsi,
        body: Body::Ncf(Nak {
            sqn: Sqn(sqn),
            source: PATH,
            group: GROUP,
        }),
        options,
    }
}

/// Owned copy of an event.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Data(u32, Vec<u8>),
    Unrec(u32, u32),
    NewPeer,
    Gone(Option<u32>),
    End,
    Reset,
    LineDown(u8),
    LineUp(u8),
}

fn events(r: &mut Receiver) -> Vec<Ev> {
    let mut v = Vec::new();
    while let Some(e) = r.poll_event() {
        v.push(match e {
            Event::Data { sqn, data, .. } => Ev::Data(sqn.0, data.to_vec()),
            Event::Unrecoverable { first, count, .. } => Ev::Unrec(first.0, count),
            Event::NewPeer { .. } => Ev::NewPeer,
            Event::PeerGone { last, .. } => Ev::Gone(last.map(|s| s.0)),
            Event::SessionEnd { .. } => Ev::End,
            Event::SessionReset { .. } => Ev::Reset,
            Event::LineDown { line } => Ev::LineDown(line),
            Event::LineUp { line } => Ev::LineUp(line),
        });
    }
    v
}

/// NAKs (first sqn + list) and their destination; SPMRs as `None`.
fn sent(r: &mut Receiver, now: Instant) -> Vec<(Option<Vec<u32>>, Destination)> {
    let mut v = Vec::new();
    while let Some((p, dest)) = r.poll_repr(now) {
        assert_eq!(p.sport, DPORT);
        assert_eq!(p.dport, 4000);
        match p.body {
            Body::Nak(n) => {
                assert_eq!(n.group, GROUP);
                let mut s = vec![n.sqn.0];
                s.extend(p.options.nak_list.as_slice().iter().map(|x| x.0));
                v.push((Some(s), dest));
            }
            Body::Spmr => v.push((None, dest)),
            other => panic!("unexpected {other:?}"),
        }
    }
    v
}

/// Runs timers up to `until` in 1 ms steps, collecting everything sent.
fn run_until(r: &mut Receiver, from: u64, until: u64) -> Vec<(u64, Option<Vec<u32>>)> {
    let mut out = Vec::new();
    for t in from..=until {
        r.handle_timeout(ms(t));
        for (n, _) in sent(r, ms(t)) {
            out.push((t, n));
        }
    }
    out
}

#[test]
fn in_order_delivery_and_new_peer() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 9));
    for i in 10..15u32 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, &[i as u8; 3]));
    }
    assert_eq!(
        events(&mut r),
        vec![
            Ev::NewPeer,
            Ev::Data(10, vec![10; 3]),
            Ev::Data(11, vec![11; 3]),
            Ev::Data(12, vec![12; 3]),
            Ev::Data(13, vec![13; 3]),
            Ev::Data(14, vec![14; 3]),
        ]
    );
    assert_eq!(r.stats().odata_received, 5);
    assert_eq!(r.stats().delivered, 5);
    assert_eq!(r.stats().bytes_received, 15);
    // Nothing missing: no NAK timer pending, nothing to send.
    assert!(sent(&mut r, ms(1000)).is_empty());
}

#[test]
fn gap_is_naked_after_backoff_within_bounds_to_path_nla() {
    for seed in 0..20 {
        let mut r = Receiver::new(cfg(), LOCAL, seed).unwrap();
        r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
        r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
        r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
        let at = r.poll_timeout().unwrap();
        assert!(at < ms(50), "back-off in [0, NAK_BO_IVL)");
        assert!(sent(&mut r, at).is_empty());
        r.handle_timeout(at);
        let s = sent(&mut r, at);
        assert_eq!(s, vec![(Some(vec![2]), Destination::Unicast(PATH))]);
        assert_eq!(r.stats().naks_sent, 1);
    }
}

#[test]
fn nak_goes_to_packet_source_before_any_spm() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    let out = run_until(&mut r, 0, 49);
    assert!(out.iter().any(|(_, n)| n.as_deref() == Some(&[2][..])));
    // Destination check with the representation.
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    r.handle_timeout(ms(49));
    let s = sent(&mut r, ms(49));
    assert!(s.contains(&(Some(vec![2]), Destination::Unicast(SRC))));
}

#[test]
fn losses_detected_together_are_batched_into_one_nak_list() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(100, 0, b"z"));
    let out = run_until(&mut r, 0, 60);
    assert_eq!(out.len(), 2, "98 missing = one NAK of 63 + one of 35");
    let all: Vec<u32> = out.iter().flat_map(|(_, n)| n.clone().unwrap()).collect();
    assert_eq!(all, (2..100).collect::<Vec<_>>());
    assert_eq!(out[0].1.as_ref().unwrap().len(), 63);
    assert_eq!(r.stats().sqns_naked, 98);
}

#[test]
fn ncf_in_backoff_suppresses_our_nak() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    // Another receiver's NAK was confirmed before our back-off expired.
    r.handle_repr(ms(0), SRC, &ncf(2, &[]));
    assert!(run_until(&mut r, 0, 199).is_empty(), "suppressed");
    assert_eq!(r.stats().naks_sent, 0);
    // No RDATA within NAK_RDATA_IVL: back to back-off, then our own NAK.
    let out = run_until(&mut r, 200, 260);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, Some(vec![2]));
}

#[test]
fn rdata_fills_gap_and_delivery_resumes_in_order() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    r.handle_repr(ms(0), SRC, &odata(4, 0, b"d"));
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(1, b"a".to_vec())]
    );
    r.handle_repr(ms(10), SRC, &rdata(2, 0, b"b"));
    assert_eq!(
        events(&mut r),
        vec![
            Ev::Data(2, b"b".to_vec()),
            Ev::Data(3, b"c".to_vec()),
            Ev::Data(4, b"d".to_vec())
        ]
    );
    assert_eq!(r.stats().rdata_received, 1);
    // The filled gap is never NAKed.
    assert!(run_until(&mut r, 10, 1000).is_empty());
}

#[test]
fn ncf_retries_exhausted_is_unrecoverable_then_delivery_continues() {
    let c = ReceiverConfig {
        nak_ncf_retries: 2,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    let out = run_until(&mut r, 0, 2000);
    // First NAK plus two retries, each after NAK_RPT_IVL and a back-off.
    assert_eq!(out.len(), 3);
    for w in out.windows(2) {
        let gap = w[1].0 - w[0].0;
        assert!((200..250).contains(&gap), "gap {gap}");
    }
    assert_eq!(
        events(&mut r),
        vec![
            Ev::NewPeer,
            Ev::Data(1, b"a".to_vec()),
            Ev::Unrec(2, 1),
            Ev::Data(3, b"c".to_vec()),
        ]
    );
    assert_eq!(r.stats().unrecoverable, 1);
    assert_eq!(r.stats().retries_exhausted, 1);
    assert_eq!(r.stats().lost_to_trail, 0);
    // A late repair of a sequence already reported is a duplicate.
    r.handle_repr(ms(2001), SRC, &rdata(2, 0, b"b"));
    assert_eq!(r.stats().duplicates, 1);
    assert!(events(&mut r).is_empty());
}

/// Issue 9.2: an OpenPGM source rate-limits RDATA behind its ODATA, so a loss early in a
/// burst is confirmed at once (NCF) but repaired seconds later. A confirmed sequence is
/// never given up by a count of retries while the source holds it; the retries back off.
#[test]
fn a_confirmed_sequence_is_repaired_however_late_and_its_naks_back_off() {
    let mut r = rx_fixed();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    let mut nak_times = Vec::new();
    for t in 0..12_000 {
        r.handle_timeout(ms(t));
        for (n, _) in sent(&mut r, ms(t)) {
            assert_eq!(n, Some(vec![2]));
            nak_times.push(t);
            // The source confirms every NAK; the repair waits behind its data.
            r.handle_repr(ms(t), SRC, &ncf(2, &[]));
        }
    }
    // 200 ms NAK_RDATA_IVL for the first two confirmed-but-unrepaired rounds, then
    // doubling to 1.6 s (plus back-offs < 50 ms each): NAKs ~0.2, 0.2, 0.4, 0.8 s apart,
    // then every ~1.6 s up to 12 s (at a fixed 200 ms: 55 NAKs).
    let gaps: Vec<u64> = nak_times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 9 && gaps.len() <= 12, "NAKs at {nak_times:?}");
    assert!(
        (200..252).contains(&gaps[0]) && (200..252).contains(&gaps[1]),
        "{gaps:?}"
    );
    assert!(
        (400..452).contains(&gaps[2]) && (800..852).contains(&gaps[3]),
        "{gaps:?}"
    );
    assert!(
        gaps[4..].iter().all(|g| (1600..1652).contains(g)),
        "{gaps:?}"
    );
    assert_eq!(r.stats().retries_exhausted, 0);
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(1, b"a".to_vec())]
    );
    r.handle_repr(ms(12_000), SRC, &rdata(2, 0, b"b"));
    assert_eq!(
        events(&mut r),
        vec![Ev::Data(2, b"b".to_vec()), Ev::Data(3, b"c".to_vec())]
    );
    assert_eq!(r.stats().unrecoverable, 0);
}

#[test]
fn a_confirmed_sequence_becomes_unrecoverable_when_the_trail_passes_it() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    for t in 0..3000 {
        r.handle_timeout(ms(t));
        for _ in sent(&mut r, ms(t)) {
            r.handle_repr(ms(t), SRC, &ncf(2, &[]));
        }
    }
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(1, b"a".to_vec())]
    );
    // The source's window moves past 2: now, and only now, it is lost.
    r.handle_repr(ms(3000), SRC, &spm(1, 3, 3));
    assert_eq!(
        events(&mut r),
        vec![Ev::Unrec(2, 1), Ev::Data(3, b"c".to_vec())]
    );
    assert_eq!(r.stats().lost_to_trail, 1);
    assert_eq!(r.stats().retries_exhausted, 0);
}

/// The source answers NAKs for sequence 4 (NCF, never RDATA) and repairs other
/// receivers' losses (a duplicate RDATA every 100 ms), but never 2's NAKs: it is
/// reachable and alive, so 2 is not given up; once the source falls silent both are,
/// after `nak_ncf_retries` unanswered rounds.
#[test]
fn naks_count_as_unanswered_only_while_the_source_is_silent() {
    let c = ReceiverConfig {
        nak_ncf_retries: 2,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 7).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    r.handle_repr(ms(0), SRC, &odata(5, 0, b"e"));
    let mut naks_for_2 = 0;
    for t in 0..8000 {
        r.handle_timeout(ms(t));
        if t % 100 == 0 {
            r.handle_repr(ms(t), SRC, &rdata(1, 0, b"a"));
        }
        for (n, _) in sent(&mut r, ms(t)) {
            let n = n.expect("a NAK");
            naks_for_2 += n.iter().filter(|&&s| s == 2).count();
            if n.contains(&4) {
                r.handle_repr(ms(t), SRC, &ncf(4, &[]));
            }
        }
    }
    assert!(naks_for_2 > 6, "2 kept being NAKed: {naks_for_2}");
    assert_eq!(r.stats().retries_exhausted, 0);
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(1, b"a".to_vec())]
    );
    // Silence: 2 goes after three unanswered NAKs; 4 waits for its data
    // (WaitData) then is NAKed unanswered too.
    for t in 8000..40_000 {
        r.handle_timeout(ms(t));
        let _ = sent(&mut r, ms(t));
    }
    assert_eq!(
        events(&mut r),
        vec![
            Ev::Unrec(2, 1),
            Ev::Data(3, b"c".to_vec()),
            Ev::Unrec(4, 1),
            Ev::Data(5, b"e".to_vec())
        ]
    );
    assert_eq!(r.stats().retries_exhausted, 2);
}

#[test]
fn duplicates_are_dropped_and_counted() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &odata(5, 0, b"x"));
    r.handle_repr(ms(0), SRC, &odata(6, 0, b"y"));
    r.handle_repr(ms(0), SRC, &odata(6, 0, b"y"));
    let _ = events(&mut r);
    r.handle_repr(ms(0), SRC, &odata(5, 0, b"x"));
    r.handle_repr(ms(0), SRC, &rdata(6, 0, b"y"));
    assert_eq!(r.stats().duplicates, 3);
    assert_eq!(r.stats().delivered, 2);
    assert!(events(&mut r).is_empty());
}

fn frag(first: u32, offset: u32, len: u32) -> Options {
    Options {
        fragment: Some(Fragment {
            first_sqn: Sqn(first),
            offset,
            apdu_len: len,
        }),
        ..Options::default()
    }
}

#[test]
fn fragments_are_reassembled_in_any_arrival_order() {
    let mut r = rx();
    let apdu: Vec<u8> = (0..25u8).collect();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 9));
    // Fragments 10..=12 of 10 + 10 + 5 bytes; the middle one arrives last as RDATA.
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(10, 0, &apdu[..10], frag(10, 0, 25), false),
    );
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(12, 0, &apdu[20..], frag(10, 20, 25), false),
    );
    assert_eq!(events(&mut r), vec![Ev::NewPeer]);
    r.handle_repr(
        ms(5),
        SRC,
        &data_pkt(11, 0, &apdu[10..20], frag(10, 10, 25), true),
    );
    r.handle_repr(ms(5), SRC, &odata(13, 0, b"next"));
    assert_eq!(
        events(&mut r),
        vec![Ev::Data(10, apdu), Ev::Data(13, b"next".to_vec())]
    );
    assert_eq!(r.stats().delivered, 2);
}

#[test]
fn partly_lost_fragment_set_is_unrecoverable_never_partial() {
    let c = ReceiverConfig {
        nak_ncf_retries: 0,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 3).unwrap();
    let apdu: Vec<u8> = (0..30u8).collect();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 9));
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(10, 0, &apdu[..10], frag(10, 0, 30), false),
    );
    // 11 lost.
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(12, 0, &apdu[20..], frag(10, 20, 30), false),
    );
    r.handle_repr(ms(0), SRC, &odata(13, 0, b"after"));
    let _ = run_until(&mut r, 0, 1000);
    let ev = events(&mut r);
    assert!(!ev.iter().any(|e| matches!(e, Ev::Data(10, _))));
    // 10..=12 reported unrecoverable (in one or more adjacent events), then 13.
    let mut covered = Vec::new();
    for e in &ev {
        if let Ev::Unrec(f, c) = e {
            covered.extend(*f..*f + *c);
        }
    }
    assert_eq!(covered, vec![10, 11, 12]);
    assert_eq!(ev.last(), Some(&Ev::Data(13, b"after".to_vec())));
}

#[test]
fn bogus_fragment_headers_are_never_delivered() {
    let c = ReceiverConfig {
        max_apdu: 100,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 3).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    // APDU larger than max_apdu, and an offset beyond the APDU.
    r.handle_repr(ms(0), SRC, &data_pkt(1, 0, b"abc", frag(1, 0, 1000), false));
    r.handle_repr(ms(0), SRC, &data_pkt(2, 0, b"abc", frag(2, 99, 100), false));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"ok"));
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Unrec(1, 2), Ev::Data(3, b"ok".to_vec())]
    );
    assert_eq!(r.stats().packets_ignored, 2);
}

#[test]
fn trail_advance_makes_missing_unrecoverable_at_once() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(5, 0, b"e"));
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(1, b"a".to_vec())]
    );
    // The source's window moved past 2..=3; 4 may still come.
    r.handle_repr(ms(1), SRC, &spm(1, 4, 5));
    assert_eq!(events(&mut r), vec![Ev::Unrec(2, 2)]);
    assert_eq!(r.stats().lost_to_trail, 2);
    r.handle_repr(ms(2), SRC, &rdata(4, 4, b"d"));
    assert_eq!(
        events(&mut r),
        vec![Ev::Data(4, b"d".to_vec()), Ev::Data(5, b"e".to_vec())]
    );
    // A trail beyond everything received: reported without holding a slot each.
    r.handle_repr(ms(3), SRC, &spm(2, 100, 99));
    assert_eq!(events(&mut r), vec![Ev::Unrec(6, 94)]);
    r.handle_repr(ms(3), SRC, &odata(100, 100, b"z"));
    assert_eq!(events(&mut r), vec![Ev::Data(100, b"z".to_vec())]);
    assert!(run_until(&mut r, 3, 500).iter().all(|(_, n)| n.is_none()));
}

#[test]
fn spm_lead_beyond_received_is_loss() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &spm(1, 0, 3));
    let out = run_until(&mut r, 0, 50);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1, Some(vec![2, 3]));
}

#[test]
fn stale_spm_is_ignored() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(5, 0, 0));
    r.handle_repr(ms(0), SRC, &spm(4, 0, 10));
    assert!(run_until(&mut r, 0, 100).is_empty());
}

#[test]
fn late_join_never_naks_before_first_data() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &odata(1000, 0, b"x"));
    r.handle_repr(ms(0), SRC, &odata(1001, 0, b"y"));
    assert_eq!(
        events(&mut r),
        vec![
            Ev::NewPeer,
            Ev::Data(1000, b"x".to_vec()),
            Ev::Data(1001, b"y".to_vec())
        ]
    );
    // Only an SPMR may go out, never a NAK.
    assert!(run_until(&mut r, 0, 1000).iter().all(|(_, n)| n.is_none()));
    // Joined from an SPM: starts after its lead.
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 500));
    r.handle_repr(ms(0), SRC, &odata(501, 0, b"a"));
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(501, b"a".to_vec())]
    );
    assert!(run_until(&mut r, 0, 1000).is_empty());
}

#[test]
fn opt_join_lets_a_late_joiner_recover_earlier_data() {
    let opts = Options {
        join: Some(Sqn(98)),
        ..Options::default()
    };
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &data_pkt(100, 90, b"c", opts, false));
    let naks: Vec<_> = run_until(&mut r, 0, 60)
        .into_iter()
        .filter_map(|(_, n)| n)
        .collect();
    assert_eq!(naks, vec![vec![98, 99]]);
    r.handle_repr(ms(61), SRC, &rdata(98, 90, b"a"));
    r.handle_repr(ms(61), SRC, &rdata(99, 90, b"b"));
    assert_eq!(
        events(&mut r),
        vec![
            Ev::NewPeer,
            Ev::Data(98, b"a".to_vec()),
            Ev::Data(99, b"b".to_vec()),
            Ev::Data(100, b"c".to_vec())
        ]
    );
}

#[test]
fn spmr_after_data_before_spm_and_suppressed_by_spm() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &odata(7, 0, b"x"));
    let at = r.poll_timeout().unwrap();
    assert!(at < ms(250));
    r.handle_timeout(at);
    assert_eq!(sent(&mut r, at), vec![(None, Destination::Unicast(SRC))]);
    assert_eq!(r.stats().spmr_sent, 1);
    // Another receiver: the SPM arrives first and no SPMR is sent.
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &odata(7, 0, b"x"));
    r.handle_repr(ms(0), SRC, &spm(0, 0, 7));
    assert!(run_until(&mut r, 0, 500).is_empty());
    assert_eq!(r.stats().spmr_sent, 0);
}

#[test]
fn fin_ends_session_after_everything_before_it() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    let mut fin = spm(1, 0, 2);
    fin.options.fin = true;
    r.handle_repr(ms(0), SRC, &fin);
    // 2 is still missing: no SessionEnd yet.
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(1, b"a".to_vec())]
    );
    r.handle_repr(ms(5), SRC, &rdata(2, 0, b"b"));
    assert_eq!(events(&mut r), vec![Ev::Data(2, b"b".to_vec()), Ev::End]);
    // Reported once.
    r.handle_repr(ms(6), SRC, &fin);
    assert!(events(&mut r).is_empty());
}

#[test]
fn rst_is_reported() {
    let mut r = rx();
    let mut p = spm(0, 0, 0);
    p.options.rst = Some(false);
    r.handle_repr(ms(0), SRC, &p);
    assert_eq!(events(&mut r), vec![Ev::NewPeer, Ev::Reset]);
    // Reported once per peer, however many packets carry it.
    r.handle_repr(ms(1), SRC, &p);
    assert!(events(&mut r).is_empty());
}

#[test]
fn silent_peer_expires_and_is_freed() {
    let c = ReceiverConfig {
        peer_expiry: Duration::from_secs(10),
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    let _ = events(&mut r);
    // Heard from again at 5 s: expiry moves to 15 s.
    r.handle_repr(ms(5000), SRC, &spm(1, 0, 3));
    r.handle_timeout(ms(10_000));
    let _ = sent(&mut r, ms(10_000));
    assert_eq!(r.peer_count(), 1);
    r.handle_timeout(ms(15_000));
    let _ = sent(&mut r, ms(15_000));
    assert_eq!(r.peer_count(), 0);
    // 2 was still being repaired (3 waits behind it): accounted up to 1, the rest
    // of the session is lost or unknown.
    assert_eq!(events(&mut r), vec![Ev::Gone(Some(1))]);
    assert_eq!(r.stats().peers_expired, 1);
    // Its buffers went back to the pool and no timer is left but stale ones.
    r.handle_timeout(ms(100_000));
    assert_eq!(r.poll_timeout(), None);
}

#[test]
fn closing_reports_how_far_each_session_is_accounted() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    // 2 is missing: 3 waits behind it, undelivered.
    r.handle_repr(ms(1), SRC, &odata(3, 0, b"c"));
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(1, b"a".to_vec())]
    );
    // A second session heard of only through an SPM: nothing accounted.
    let mut other = spm(0, 0, 0);
    other.sport = 4001;
    r.handle_repr(ms(2), SRC, &other);
    assert_eq!(events(&mut r), vec![Ev::NewPeer]);
    r.close();
    assert_eq!(r.peer_count(), 0);
    assert_eq!(events(&mut r), vec![Ev::Gone(Some(1)), Ev::Gone(None)]);
    r.handle_timeout(ms(400_000));
    assert!(events(&mut r).is_empty());
}

#[test]
fn max_peers_bounds_the_table_and_newcomers_wait_in_probation() {
    let c = ReceiverConfig {
        max_peers: 2,
        max_probation: 2,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    for port in 0..5u16 {
        let mut p = odata(1, 0, b"x");
        p.sport = 5000 + port;
        r.handle_repr(ms(0), SRC, &p);
    }
    assert_eq!(r.peer_count(), 2);
    assert_eq!(r.probation_count(), 2);
    assert_eq!(r.stats().probation_packets, 3);
    assert_eq!(
        r.stats().probation_dropped,
        1,
        "the third newcomer pushed one out"
    );
    // Probation is forgotten after probation_expiry.
    let mut p = odata(1, 0, b"x");
    p.sport = 6000;
    r.handle_repr(ms(2500), SRC, &p);
    assert_eq!(r.probation_count(), 1);
    assert_eq!(r.stats().probation_dropped, 3);
}

/// Issue 9.3: 64 spoofed TSIs (one SPM and one ODATA each: microseconds of traffic)
/// fill the peer table; the real source arriving later is admitted after
/// `probation_packets`, evicting a silent stranger, and loses nothing: what it sent
/// during probation is NAKed and repaired.
#[test]
fn strangers_that_filled_the_table_cannot_lock_out_a_real_source() {
    let mut r = rx();
    for port in 0..64u16 {
        let mut s = spm(1, 0, 0);
        s.sport = 9000 + port;
        r.handle_repr(ms(0), SRC, &s);
        let mut d = odata(1, 0, b"stray");
        d.sport = 9000 + port;
        r.handle_repr(ms(0), SRC, &d);
    }
    assert_eq!(r.peer_count(), 64);
    let strays = events(&mut r);
    assert_eq!(strays.iter().filter(|e| **e == Ev::NewPeer).count(), 64);
    // The real source (sport 4000) starts 3 s later; the strangers are silent.
    // (Without an SPM it asks for one: SPMRs are ignored here.)
    let mut got = Vec::new();
    let mut gone = 0;
    // ODATA 0..19, one per ms, then silence; NAKs are answered with RDATA at once.
    for t in 3000..3400u64 {
        if t < 3020 {
            let i = (t - 3000) as u32;
            r.handle_repr(ms(t), SRC, &odata(i, 0, &[i as u8]));
        }
        r.handle_timeout(ms(t));
        for (n, _) in sent(&mut r, ms(t)) {
            for sqn in n.unwrap_or_default() {
                r.handle_repr(ms(t), SRC, &rdata(sqn, 0, &[sqn as u8]));
            }
        }
        for e in events(&mut r) {
            match e {
                Ev::Data(sqn, _) => got.push(sqn),
                Ev::Gone(last) => {
                    assert_eq!(last, Some(1), "the evicted stranger's accounting");
                    gone += 1;
                }
                Ev::NewPeer => {}
                e => panic!("unexpected {e:?}"),
            }
        }
    }
    assert_eq!(got, (0..20).collect::<Vec<_>>(), "every message, in order");
    assert_eq!(gone, 1);
    assert_eq!(r.stats().peers_evicted, 1);
    assert_eq!(r.stats().probation_admitted, 1);
    assert_eq!(r.stats().probation_packets, 3);
    assert_eq!(r.stats().rdata_received, 2, "the two sent during probation");
    assert_eq!(r.stats().unrecoverable, 0);
}

/// A stranger in probation never displaces a peer that is delivering (more active),
/// and is forgotten within `probation_expiry` once silent.
#[test]
fn a_delivering_source_is_not_displaced_by_a_stranger() {
    let c = ReceiverConfig {
        max_peers: 1,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    for i in 0..100u32 {
        let t = u64::from(i) * 10;
        r.handle_repr(ms(t), SRC, &odata(i, 0, b"real"));
        // A stranger sends a burst of five packets.
        if i == 50 {
            for k in 0..5 {
                let mut d = odata(k, 0, b"stray");
                d.sport = 9999;
                r.handle_repr(ms(t), SRC, &d);
            }
        }
    }
    let ev = events(&mut r);
    assert_eq!(ev.iter().filter(|e| matches!(e, Ev::Data(..))).count(), 100);
    assert!(!ev.iter().any(|e| matches!(e, Ev::Gone(_))), "{ev:?}");
    assert_eq!(r.stats().peers_evicted, 0);
    assert_eq!(
        r.stats().peers_refused,
        3,
        "packets 3 to 5 met the bar but lost"
    );
    assert_eq!(r.probation_count(), 1);
    let mut d = odata(5, 0, b"stray");
    d.sport = 9998;
    r.handle_repr(ms(3500), SRC, &d);
    assert_eq!(r.probation_count(), 1, "the silent stranger was forgotten");
    assert_eq!(r.stats().probation_dropped, 1);
}

/// Proven strangers (each delivered three messages) that then jump far ahead cannot
/// together hold more than the receiver-wide slot budget: two full windows plus an
/// unproven window per peer, not 64 full windows (3 GiB).
#[test]
fn window_slots_are_bounded_over_all_peers() {
    let c = ReceiverConfig {
        rxw_sqns: 1 << 16,
        max_peers: 16,
        ..cfg()
    };
    // Two full windows, an unproven one per peer, and each peer's initial 256 slots.
    let budget = 2 * (1 << 16) + 16 * (1 << 14) + 16 * 256;
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    for port in 0..16u16 {
        for i in 0..3 {
            let mut d = odata(i, 0, b"x");
            d.sport = 9000 + port;
            r.handle_repr(ms(0), SRC, &d);
        }
        let _ = events(&mut r);
        let mut far = odata((1 << 16) - 10, 0, b"far");
        far.sport = 9000 + port;
        r.handle_repr(ms(0), SRC, &far);
        assert!(
            r.window_slots() <= budget,
            "{} > {budget}",
            r.window_slots()
        );
    }
    assert_eq!(r.peer_count(), 16);
    // The first peers got their full window; the later ones were held to what was left
    // (their data beyond it is dropped, counted, and NAKed once there is room).
    assert!(r.window_slots() > budget / 2, "{}", r.window_slots());
    assert!(r.stats().window_full_drops > 0);
    // A peer's slots come back when it goes.
    r.close();
    assert_eq!(r.window_slots(), 0);
}

#[test]
fn source_and_tsi_filters_drop_before_any_peer_state() {
    let other = Nla::V4(Ipv4Addr::new(10, 0, 0, 66));
    let c = ReceiverConfig {
        sources: vec![SRC],
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), other, &odata(1, 0, b"stray"));
    r.handle_repr(ms(0), other, &spm(1, 0, 1));
    assert_eq!(r.peer_count(), 0);
    assert_eq!(r.probation_count(), 0);
    assert_eq!(r.stats().filtered, 2);
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"real"));
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(1, b"real".to_vec())]
    );

    let c = ReceiverConfig {
        tsis: vec![tsi()],
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    let mut d = odata(1, 0, b"stray");
    d.sport = 4001;
    r.handle_repr(ms(0), SRC, &d);
    assert_eq!((r.peer_count(), r.stats().filtered), (0, 1));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"real"));
    assert_eq!(r.peer_count(), 1);
}

/// Two far-apart ODATA from an unknown TSI grow its window to 16384 slots, not
/// `rxw_sqns` (2^21, 48 MiB); a peer that has delivered may span the whole window.
#[test]
fn an_unproven_peer_has_a_small_window() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &odata(0, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(1 << 20, 0, b"far"));
    assert_eq!(r.window_slots(), 1 << 14);
    assert_eq!(r.stats().window_full_drops, 1);
    let mut r = rx();
    for i in 0..3 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, b"a"));
    }
    let _ = events(&mut r);
    r.handle_repr(ms(0), SRC, &odata(1 << 20, 0, b"far"));
    assert_eq!(r.window_slots(), 1 << 20);
}

#[test]
fn window_is_bounded_when_the_application_does_not_drain() {
    let c = ReceiverConfig {
        rxw_sqns: 64,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    for i in 0..200u32 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, &[i as u8; 100]));
    }
    assert_eq!(r.stats().odata_received, 64);
    assert_eq!(r.stats().window_full_drops, 136);
    assert!(r.buffers_allocated() <= 64);
    // Draining delivers the 64 held, then later data is accepted again and what was
    // dropped is recovered by NAK.
    let ev = events(&mut r);
    assert_eq!(ev.len(), 65);
    r.handle_repr(ms(1), SRC, &odata(200, 0, b"z"));
    let out = run_until(&mut r, 1, 60);
    let naked: Vec<u32> = out
        .iter()
        .flat_map(|(_, n)| n.clone().unwrap_or_default())
        .collect();
    assert_eq!(naked.first(), Some(&64));
    assert!(naked.len() >= 63);
}

#[test]
fn buffer_pool_is_bounded() {
    let c = ReceiverConfig {
        rxw_max_bytes: 1480 * 8,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    // 1 missing so nothing can be delivered; everything after it must be buffered.
    // Full-size TSDUs take the largest class (1456 bytes + 32 of bookkeeping): 7 fit
    // in 8 × 1480 bytes.
    let big = [7u8; 1456];
    for i in 2..40u32 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, &big));
    }
    assert_eq!(r.buffers_allocated(), 7);
    assert_eq!(r.buffer_bytes(), 7 * (1456 + 32));
    assert_eq!(r.stats().buffer_drops, 31);
}

#[test]
fn small_messages_take_small_buffers() {
    // The same budget holds 123 one-byte messages (64-byte class + 32 = 96 bytes each).
    let c = ReceiverConfig {
        rxw_max_bytes: 1480 * 8,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    for i in 2..400u32 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, &i.to_le_bytes()[..1]));
    }
    assert_eq!(r.buffers_allocated(), 1480 * 8 / 96);
    assert_eq!(r.buffer_bytes(), 123 * 96);
    assert_eq!(r.stats().buffer_drops, 398 - 123);
}

#[test]
fn free_small_buffers_are_released_for_large_ones() {
    // A burst of small messages fills the budget with small buffers; once they are
    // delivered, large messages still find room (free small buffers are released).
    let c = ReceiverConfig {
        rxw_max_bytes: 1480 * 8,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    // 122 buffered behind the missing sqn 1, then sqn 1: 123 buffers of 96 bytes.
    for i in 2..124u32 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, &i.to_le_bytes()[..1]));
    }
    r.handle_repr(ms(0), SRC, &odata(1, 0, &[1]));
    assert_eq!(r.buffer_bytes(), 123 * 96);
    assert_eq!(r.stats().buffer_drops, 0);
    let data: Vec<(u32, Vec<u8>)> = events(&mut r)
        .into_iter()
        .filter_map(|e| match e {
            Ev::Data(sqn, d) => Some((sqn, d)),
            _ => None,
        })
        .collect();
    // Delivered in order, each from its own buffer.
    assert_eq!(data.len(), 123);
    for (k, (sqn, d)) in data.iter().enumerate() {
        assert_eq!(*sqn, k as u32 + 1);
        assert_eq!(d[..], (k as u32 + 1).to_le_bytes()[..1]);
    }
    let big = [9u8; 1456];
    // 124 is missing: 7 large ones (1456 + 32 bytes each) are buffered behind it.
    for i in 125..141u32 {
        r.handle_repr(ms(1), SRC, &odata(i, 0, &big));
    }
    assert_eq!(r.stats().buffer_drops, 16 - 7);
    // Small free buffers were released as far as needed, and no further.
    assert!(r.buffer_bytes() <= 1480 * 8);
    assert!(r.buffer_bytes() >= 7 * (1456 + 32));
}

#[test]
fn foreign_and_upstream_packets_are_ignored() {
    let mut r = rx();
    let mut p = odata(1, 0, b"x");
    p.dport = 1;
    r.handle_repr(ms(0), SRC, &p);
    let nak = PacketRepr {
        sport: DPORT,
        dport: 4000,
        gsi: tsi().gsi,
        body: Body::Nak(Nak::default()),
        options: Options::default(),
    };
    r.handle_repr(ms(0), SRC, &nak);
    // NCF from an unknown session does not create a peer.
    r.handle_repr(ms(0), SRC, &ncf(1, &[]));
    assert_eq!(r.stats().packets_ignored, 3);
    assert_eq!(r.peer_count(), 0);
    assert!(events(&mut r).is_empty());
}

#[test]
fn sequence_numbers_wrap() {
    let mut r = rx();
    let start = u32::MAX - 2;
    r.handle_repr(ms(0), SRC, &spm(0, start, start.wrapping_sub(1)));
    for k in 0..6u32 {
        let s = start.wrapping_add(k);
        if k == 3 {
            continue; // sqn 0 is lost
        }
        r.handle_repr(ms(0), SRC, &odata(s, start, &[k as u8]));
    }
    let out = run_until(&mut r, 0, 60);
    assert_eq!(out[0].1, Some(vec![0]));
    r.handle_repr(ms(61), SRC, &rdata(0, start, &[3]));
    let ev = events(&mut r);
    let sqns: Vec<u32> = ev
        .iter()
        .filter_map(|e| match e {
            Ev::Data(s, _) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(sqns, vec![u32::MAX - 2, u32::MAX - 1, u32::MAX, 0, 1, 2]);
}

#[test]
fn invalid_config_is_refused() {
    let c = ReceiverConfig {
        rxw_sqns: 100,
        ..cfg()
    };
    assert!(Receiver::new(c, LOCAL, 1).is_err());
}

#[test]
fn huge_trail_jump_is_reported_in_one_event_cheaply() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    // The trail jumps ~2^31 - 2 ahead (the farthest serial arithmetic allows).
    let far = 1u32 << 31;
    r.handle_repr(ms(1), SRC, &spm(1, far - 1, far));
    let ev = events(&mut r);
    assert_eq!(
        ev,
        vec![
            Ev::NewPeer,
            Ev::Data(1, b"a".to_vec()),
            Ev::Unrec(2, far - 3),
        ]
    );
    assert_eq!(r.stats().unrecoverable, u64::from(far - 3));
}

#[test]
fn late_join_mid_apdu_skips_its_tail_silently() {
    let apdu: Vec<u8> = (0..30u8).collect();
    // Joined on ODATA: the first packet seen is the middle fragment of APDU 10..=12.
    let mut r = rx();
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(11, 0, &apdu[10..20], frag(10, 10, 30), false),
    );
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(12, 0, &apdu[20..], frag(10, 20, 30), false),
    );
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(13, 0, &apdu[..10], frag(13, 0, 30), false),
    );
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(14, 0, &apdu[10..20], frag(13, 10, 30), false),
    );
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(15, 0, &apdu[20..], frag(13, 20, 30), false),
    );
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(13, apdu.clone())]
    );
    assert_eq!(r.stats().pre_join_fragments, 2);
    assert_eq!(r.stats().unrecoverable, 0);
    // Joined on an SPM whose lead is the APDU's first fragment.
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 10));
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(11, 0, &apdu[10..20], frag(10, 10, 30), false),
    );
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(12, 0, &apdu[20..], frag(10, 20, 30), false),
    );
    r.handle_repr(ms(0), SRC, &odata(13, 0, b"next"));
    assert_eq!(
        events(&mut r),
        vec![Ev::NewPeer, Ev::Data(13, b"next".to_vec())]
    );
    // After the first event, orphans are losses again (reported, never delivered).
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(3, 0, &apdu[10..20], frag(2, 10, 30), false),
    );
    let _ = events(&mut r);
    r.handle_repr(ms(1), SRC, &spm(0, 3, 3));
    assert_eq!(events(&mut r), vec![Ev::Unrec(2, 2)]);
}

#[test]
fn suppressed_nak_leaves_no_idle_wakeup() {
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    assert!(r.poll_timeout().unwrap() < ms(50));
    // The NCF moves 2 to WAIT_DATA: the next deadline is NAK_RDATA_IVL away, not the
    // abandoned back-off.
    r.handle_repr(ms(1), SRC, &ncf(2, &[]));
    assert_eq!(r.poll_timeout(), Some(ms(201)));
}

#[test]
fn ring_grows_with_the_window_and_keeps_its_contents() {
    // Start near the wrap point so growth re-indexes across it.
    let base = u32::MAX - 100;
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, base, base.wrapping_sub(1)));
    // 1000 packets with base + 5 missing: the window spans 1000 sequences (> the initial
    // 256-slot ring) while nothing after the gap can be delivered.
    for k in 0..1000u32 {
        if k != 5 {
            let s = base.wrapping_add(k);
            r.handle_repr(ms(0), SRC, &odata(s, base, &k.to_be_bytes()));
        }
    }
    let ev = events(&mut r);
    assert_eq!(ev.len(), 1 + 5);
    r.handle_repr(
        ms(1),
        SRC,
        &rdata(base.wrapping_add(5), base, &5u32.to_be_bytes()),
    );
    let ev = events(&mut r);
    assert_eq!(ev.len(), 995);
    for (i, e) in ev.iter().enumerate() {
        let k = i as u32 + 5;
        assert_eq!(e, &Ev::Data(base.wrapping_add(k), k.to_be_bytes().to_vec()));
    }
    assert_eq!(r.stats().duplicates, 0);
    assert_eq!(r.stats().window_full_drops, 0);
}

#[test]
fn default_window_holds_300_ms_at_a_million_messages_per_second() {
    // 64-byte messages, one per µs; sqn 10 is lost and repaired 300 ms later. The
    // default window holds everything behind the gap meanwhile (no drop), then
    // delivers it all in order.
    let mut r = rx();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    let n = 300_000u32;
    let payload = |i: u32| {
        let mut p = [0u8; 64];
        p[..4].copy_from_slice(&i.to_le_bytes());
        p
    };
    let mut delivered = 0u32;
    let mut expect = 1u32;
    let mut check = |r: &mut Receiver, delivered: &mut u32| {
        while let Some(e) = r.poll_event() {
            if let Event::Data { sqn, data, .. } = e {
                assert_eq!(sqn.0, expect);
                assert_eq!(data[..4], expect.to_le_bytes());
                expect += 1;
                *delivered += 1;
            }
        }
    };
    for i in 1..=n {
        let now = Instant::from_nanos(u64::from(i) * 1000);
        if i != 10 {
            r.handle_repr(now, SRC, &odata(i, 0, &payload(i)));
        }
        check(&mut r, &mut delivered);
    }
    assert_eq!(delivered, 9, "held behind the gap");
    assert_eq!(r.stats().window_full_drops, 0);
    assert_eq!(r.stats().buffer_drops, 0);
    assert!(r.buffer_bytes() <= r.config().rxw_max_bytes);
    r.handle_repr(ms(301), SRC, &rdata(10, 0, &payload(10)));
    check(&mut r, &mut delivered);
    assert_eq!(delivered, n);
}

#[test]
fn repair_of_the_gap_fits_when_the_pool_is_full_behind_it() {
    // Data behind a gap fills the whole budget; the repair of the gap still finds a
    // buffer (head-of-line reserve), so everything drains instead of waiting for the
    // gap to be given up.
    let c = ReceiverConfig {
        rxw_max_bytes: 1480 * 8,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    let big = [3u8; 1456];
    for i in 2..12u32 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, &big));
    }
    assert_eq!(r.stats().buffer_drops, 3, "7 held behind the gap");
    r.handle_repr(ms(1), SRC, &rdata(1, 0, &big));
    assert_eq!(r.stats().buffer_drops, 3, "the repair was stored");
    let delivered: Vec<u32> = events(&mut r)
        .into_iter()
        .filter_map(|e| match e {
            Ev::Data(sqn, _) => Some(sqn),
            _ => None,
        })
        .collect();
    assert_eq!(delivered, (1..=8).collect::<Vec<_>>());
    assert!(r.buffer_bytes() <= 1480 * 8 + 2 * (1456 + 32));
    // With the window drained, the dropped sequences are taken again.
    for i in 9..12u32 {
        r.handle_repr(ms(2), SRC, &rdata(i, 0, &big));
    }
    assert_eq!(events(&mut r).len(), 3);
}

#[test]
fn repair_of_a_fragmented_head_fits_when_the_pool_is_full_behind_it() {
    // The APDU at the head of the window has three fragments: the first arrived, the
    // other two were lost, and data behind it filled the whole budget. Both repairs are
    // the head APDU's (OPT_FRAGMENT first_sqn = next) and take the head-of-line reserve;
    // before, only `next` itself could, so the second fragment's repair was dropped for
    // want of a buffer every time and the window stopped until the source went away.
    let c = ReceiverConfig {
        rxw_max_bytes: 1480 * 8,
        ..cfg()
    };
    let max_apdu = c.max_apdu;
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    let apdu: Vec<u8> = (0..3 * 1456).map(|i| (i % 251) as u8).collect();
    let part = |k: usize| &apdu[k * 1456..(k + 1) * 1456];
    r.handle_repr(
        ms(0),
        SRC,
        &data_pkt(1, 0, part(0), frag(1, 0, 3 * 1456), false),
    );
    let big = [3u8; 1456];
    for i in 4..14u32 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, &big));
    }
    let dropped = r.stats().buffer_drops;
    assert!(dropped > 0, "the pool filled behind the head APDU");
    for k in [1u32, 2] {
        let p = part(k as usize);
        let o = frag(1, k * 1456, 3 * 1456);
        r.handle_repr(ms(1), SRC, &data_pkt(1 + k, 0, p, o, true));
    }
    assert_eq!(r.stats().buffer_drops, dropped, "both repairs were stored");
    let evs = events(&mut r);
    let data: Vec<&Ev> = evs.iter().filter(|e| matches!(e, Ev::Data(..))).collect();
    assert_eq!(data.first(), Some(&&Ev::Data(1, apdu.clone())));
    let sqns: Vec<u32> = data
        .iter()
        .map(|e| match e {
            Ev::Data(s, _) => *s,
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        sqns,
        [1].into_iter()
            .chain(4..4 + sqns.len() as u32 - 1)
            .collect::<Vec<_>>()
    );
    // Memory: the budget plus the head reserve (one largest APDU and two buffers).
    let reserve = (max_apdu.div_ceil(1456) + 2) * (1456 + 32);
    assert!(r.buffer_bytes() <= 1480 * 8 + reserve);
}

#[test]
fn only_the_head_apdu_takes_the_reserve() {
    // A fragment of a later APDU (first_sqn beyond next) gets no reserve when the pool
    // is full: the reserve cannot be taken by data that would not let the window drain.
    let c = ReceiverConfig {
        rxw_max_bytes: 1480 * 8,
        ..cfg()
    };
    let mut r = Receiver::new(c, LOCAL, 1).unwrap();
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    let big = [3u8; 1456];
    for i in 2..12u32 {
        r.handle_repr(ms(0), SRC, &odata(i, 0, &big));
    }
    let dropped = r.stats().buffer_drops;
    assert!(dropped > 0);
    // Sequence 13: a fragment of the APDU starting at 12 (not the head, 1 is).
    r.handle_repr(
        ms(1),
        SRC,
        &data_pkt(13, 0, &big, frag(12, 1456, 2 * 1456), false),
    );
    assert_eq!(r.stats().buffer_drops, dropped + 1);
}

/// Issue 10: a source that confirmed a sequence slowly (its NAK repeats backed off to
/// 1.6 s) and then went away (closed after its linger, with repairs still queued). Its
/// silence is detected at the base interval: a round that drew nothing is not a slow
/// round, so the NAKs after it go out every NAK_RPT_IVL (+ back-off) and the sequence
/// is given up about (nak_ncf_retries + 1) rounds later, not (nak_ncf_retries + 1) x
/// 1.6 s (18 s, while `xpgm recv` and most applications had long given up waiting).
#[test]
fn a_slow_source_that_goes_away_is_given_up_at_the_base_interval() {
    let mut r = rx_fixed();
    let retries = u64::from(r.config().nak_ncf_retries);
    r.handle_repr(ms(0), SRC, &spm(0, 0, 0));
    r.handle_repr(ms(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(ms(0), SRC, &odata(3, 0, b"c"));
    let mut last_ncf = 0;
    for t in 0..8000 {
        r.handle_timeout(ms(t));
        for _ in sent(&mut r, ms(t)) {
            r.handle_repr(ms(t), SRC, &ncf(2, &[]));
            last_ncf = t;
        }
    }
    // Silence from 8 s on.
    let mut naks = Vec::new();
    let mut gone_at = None;
    for t in 8000..40_000 {
        r.handle_timeout(ms(t));
        naks.extend(sent(&mut r, ms(t)).into_iter().map(|_| t));
        if r.stats().retries_exhausted > 0 {
            gone_at = Some(t);
            break;
        }
    }
    let gone_at = gone_at.expect("given up");
    let gaps: Vec<u64> = naks.windows(2).map(|w| w[1] - w[0]).collect();
    // The first NAK after the silence still waits its slow round (1.6 s); every round
    // after that drew nothing and repeats at the base interval.
    assert!(
        gaps[0] <= 1652 && gaps[1..].iter().all(|g| (200..252).contains(g)),
        "unanswered rounds repeat at the base interval: {naks:?}"
    );
    // Up to two slow waits (<= 1.65 s each) after the last NCF, then the unanswered
    // rounds at the base interval (before: every round 1.6 s, given up after 24 s).
    let bound = last_ncf + 2 * 1652 + (retries + 1) * 252;
    assert!(
        gone_at <= bound,
        "given up at {gone_at} ms, last NCF at {last_ncf} ms (bound {bound})"
    );
    assert_eq!(
        events(&mut r),
        vec![
            Ev::NewPeer,
            Ev::Data(1, b"a".to_vec()),
            Ev::Unrec(2, 1),
            Ev::Data(3, b"c".to_vec())
        ]
    );
}

fn us(n: u64) -> Instant {
    Instant::from_nanos(n * 1000)
}

/// What `sent` returns.
type Sent = Vec<(Option<Vec<u32>>, Destination)>;

/// Steps `r` through its timers (at most `until`), returning the first packets sent.
fn next_sent(r: &mut Receiver, until: Instant) -> Option<(Instant, Sent)> {
    while let Some(t) = r.poll_timeout() {
        if t > until {
            return None;
        }
        r.handle_timeout(t);
        let v = sent(r, t);
        if !v.is_empty() {
            return Some((t, v));
        }
    }
    None
}

/// Issue 12: NAK -> NCF is timed, SRTT/RTTVAR follow RFC 6298, and the repeat NAK after
/// a lost repair waits RTO (SRTT + 4 RTTVAR) plus a back-off within 4 SRTT, instead of
/// NAK_RDATA_IVL 200 ms + up to 50 ms.
#[test]
fn nak_to_ncf_is_timed_and_the_repeat_follows_the_rtt() {
    let mut r = rx();
    r.handle_repr(us(0), SRC, &spm(0, 0, 0));
    r.handle_repr(us(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(us(0), SRC, &odata(3, 0, b"c"));
    assert_eq!(r.srtt(tsi()), None);
    // Unmeasured (no rtt_initial): the first back-off is within the 50 ms ceiling.
    let (t_nak, v) = next_sent(&mut r, ms(50)).expect("a NAK within NAK_BO_IVL");
    assert_eq!(v[0].0, Some(vec![2]));
    r.handle_repr(t_nak + Duration::from_micros(800), SRC, &ncf(2, &[]));
    assert_eq!(r.srtt(tsi()), Some(Duration::from_micros(800)));
    assert_eq!(r.stats().rtt_samples, 1);
    // RDATA never comes: the NAK repeats after RTO = 800 + 4 x 400 = 2400 µs, then a
    // back-off below 4 x 800 = 3200 µs.
    let t_ncf = t_nak + Duration::from_micros(800);
    let (t2, v) = next_sent(&mut r, ms(1000)).expect("a repeat NAK");
    assert_eq!(v[0].0, Some(vec![2]));
    let waited = t2 - t_ncf;
    assert!(
        waited >= Duration::from_micros(2400) && waited < Duration::from_micros(5600),
        "{waited:?}"
    );
    // The repair ends it; the RDATA is not a sample (its NAK was a repeat, Karn).
    r.handle_repr(t2 + Duration::from_micros(100), SRC, &rdata(2, 0, b"b"));
    assert_eq!(r.stats().rtt_samples, 1);
    assert_eq!(r.srtt(tsi()), Some(Duration::from_micros(800)));
}

/// SPMR -> SPM is a sample too; a silly sample is clamped to `rtt_min`.
#[test]
fn spmr_to_spm_is_timed() {
    let mut r = rx();
    r.handle_repr(us(0), SRC, &odata(5, 0, b"a"));
    let (t, v) = next_sent(&mut r, ms(300)).expect("an SPMR");
    assert_eq!(v[0].0, None);
    r.handle_repr(t + Duration::from_micros(300), SRC, &spm(0, 0, 5));
    assert_eq!(r.srtt(tsi()), Some(Duration::from_micros(300)));
    assert_eq!(r.stats().rtt_samples, 1);
}

/// A NAK answered by an NCF at once (0 s) is clamped to `rtt_min` (10 µs): back-offs
/// then have their floor (100 µs), the NCF wait its floor (1 ms).
#[test]
fn an_instant_answer_is_clamped_and_timers_keep_their_floors() {
    let mut r = rx();
    r.handle_repr(us(0), SRC, &spm(0, 0, 0));
    r.handle_repr(us(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(us(0), SRC, &odata(3, 0, b"c"));
    let (t, _) = next_sent(&mut r, ms(50)).expect("a NAK");
    r.handle_repr(t, SRC, &ncf(2, &[]));
    assert_eq!(r.srtt(tsi()), Some(Duration::from_micros(10)));
    r.handle_repr(t, SRC, &rdata(2, 0, b"b"));
    // A new loss: NAKed within the 100 µs floor of the back-off.
    r.handle_repr(t, SRC, &odata(5, 0, b"e"));
    let (t4, v) = next_sent(&mut r, t + Duration::from_millis(1)).expect("NAK for 4");
    assert_eq!(v[0].0, Some(vec![4]));
    assert!(t4 - t < Duration::from_micros(100), "{:?}", t4 - t);
    // No NCF for 4: it repeats after the 1 ms floor of NAK_RPT_IVL (+ back-off).
    let (t5, v) = next_sent(&mut r, t4 + Duration::from_millis(10)).expect("repeat");
    assert!(
        v.iter().any(|(n, _)| n.as_deref() == Some(&[4][..])),
        "{v:?}"
    );
    let gap = t5 - t4;
    assert!(
        gap >= Duration::from_millis(1) && gap < Duration::from_micros(1100),
        "{gap:?}"
    );
}

/// The exponential back-off: many receivers that lose the same packet NAK at spread
/// times; about one at once, most late (mean 0.86 of the span for N = 1000).
#[test]
fn exponential_back_off_spreads_like_its_distribution() {
    let mut env_cfg = cfg();
    env_cfg.nak_bo_ivl = ms(10) - Instant::ZERO;
    let mut early = 0;
    let mut total = Duration::ZERO;
    let n = 2000u64;
    for seed in 0..n {
        let mut r = Receiver::new(env_cfg.clone(), LOCAL, seed).unwrap();
        r.handle_repr(us(0), SRC, &spm(0, 0, 0));
        r.handle_repr(us(0), SRC, &odata(1, 0, b"a"));
        r.handle_repr(us(0), SRC, &odata(3, 0, b"c"));
        let (t, _) = next_sent(&mut r, ms(10)).expect("a NAK within the span");
        if t - Instant::ZERO < Duration::from_micros(2500) {
            early += 1;
        }
        total += t - Instant::ZERO;
    }
    // P(t < span / 4) = N^(1/4 - 1) = 1000^-0.75 = 0.56 %: about 11 of 2000.
    assert!((2..=30).contains(&early), "{early}");
    // Mean 0.855 x 10 ms.
    let mean = total / n as u32;
    assert!(
        mean > Duration::from_micros(8300) && mean < Duration::from_micros(8800),
        "{mean:?}"
    );
}

/// `rtt_initial` 1 ms: before any sample the first NAK goes out within 4 ms (span
/// 4 x 1 ms) and, unanswered, repeats after RTO = 3 ms (+ back-off).
#[test]
fn before_any_sample_the_timers_assume_rtt_initial() {
    let c = ReceiverConfig {
        group: GROUP,
        rtt_initial: Duration::from_millis(1),
        ..ReceiverConfig::default()
    };
    let mut r = Receiver::new(c, LOCAL, 42).unwrap();
    r.handle_repr(us(0), SRC, &spm(0, 0, 0));
    r.handle_repr(us(0), SRC, &odata(1, 0, b"a"));
    r.handle_repr(us(0), SRC, &odata(3, 0, b"c"));
    let (t1, _) = next_sent(&mut r, ms(4)).expect("a NAK within 4 ms");
    let (t2, _) = next_sent(&mut r, ms(20)).expect("a repeat");
    let gap = t2 - t1;
    assert!(
        gap >= Duration::from_millis(3) && gap < Duration::from_millis(7),
        "{gap:?}"
    );
    assert_eq!(r.srtt(tsi()), None);
}

// ---- A/B lines -------------------------------------------------------------------

const SRC_B: Nla = Nla::V4(Ipv4Addr::new(10, 1, 0, 1));

/// A/B receivers assume a 100 µs round trip: NAK back-off span 400 µs, far shorter
/// than `line_wait` (10 ms) and than the 3 ms skew the tests give one line.
fn rx_lines(lines: u8, seed: u64) -> Receiver {
    let c = ReceiverConfig {
        lines,
        rtt_initial: Duration::from_micros(100),
        ..cfg()
    };
    Receiver::new(c, LOCAL, seed).unwrap()
}

/// NAKs sent (first sqn + list), with their destination and line, by `poll_transmit`.
fn naks_on_lines(r: &mut Receiver, now: Instant) -> Vec<(u32, Destination, crate::LineSet)> {
    let mut buf = [0u8; 1500];
    let mut v = Vec::new();
    while let Some(t) = r.poll_transmit(now, &mut buf) {
        if t.kind == crate::wire::PacketType::Nak {
            let p = PacketRepr::parse(&buf[..t.len]).unwrap();
            let Body::Nak(n) = p.body else { unreachable!() };
            // The NAK names the source's path NLA whatever line it goes on.
            assert_eq!(n.source, PATH);
            v.push((n.sqn.0, t.dest, t.lines));
        }
    }
    v
}

/// Feeds sequences `0..n` on both lines, line 1 `skew_us` behind line 0, leaving out
/// `lose0` on line 0 and `lose1` on line 1; runs timers to 2 s; returns the NAKs.
fn ab_feed(
    r: &mut Receiver,
    n: u32,
    skew_us: u64,
    lose0: &[u32],
    lose1: &[u32],
) -> Vec<(u32, Destination, crate::LineSet)> {
    let mut naks = Vec::new();
    r.handle_repr_on(us(0), 0, SRC, &spm(0, 0, 0u32.wrapping_sub(1)));
    r.handle_repr_on(us(0), 1, SRC_B, &spm(0, 0, 0u32.wrapping_sub(1)));
    let mut arrivals = Vec::new();
    for i in 0..n {
        let t = 1000 + u64::from(i) * 100;
        if !lose0.contains(&i) {
            arrivals.push((t, 0u8, i));
        }
        if !lose1.contains(&i) {
            arrivals.push((t + skew_us, 1, i));
        }
    }
    arrivals.sort();
    for (at, line, i) in arrivals {
        let src = if line == 0 { SRC } else { SRC_B };
        r.handle_timeout(us(at));
        r.handle_repr_on(us(at), line, src, &odata(i, 0, &[i as u8; 8]));
        naks.extend(naks_on_lines(r, us(at)));
    }
    let end = 1000 + u64::from(n) * 100 + skew_us;
    for t in (end..2_000_000).step_by(100) {
        r.handle_timeout(us(t));
        naks.extend(naks_on_lines(r, us(t)));
    }
    naks
}

fn data_events(r: &mut Receiver) -> Vec<u32> {
    events(r)
        .into_iter()
        .filter_map(|e| match e {
            Ev::Data(s, _) => Some(s),
            Ev::Unrec(..) => panic!("unrecoverable"),
            _ => None,
        })
        .collect()
}

#[test]
fn ab_loss_on_one_line_is_taken_from_the_other_without_a_nak() {
    for skew in [0, 50, 3_000] {
        let mut r = rx_lines(2, 7);
        // Line 0 loses 5 and 6, line 1 loses 12; line 1 runs `skew` µs behind.
        let naks = ab_feed(&mut r, 20, skew, &[5, 6], &[12]);
        assert_eq!(naks, vec![], "skew {skew} µs");
        assert_eq!(
            data_events(&mut r),
            (0..20).collect::<Vec<_>>(),
            "skew {skew}"
        );
        let (a, b) = (r.line_stats(0).unwrap(), r.line_stats(1).unwrap());
        assert_eq!((a.received, a.lost), (18, 2));
        assert_eq!((b.received, b.lost), (19, 1));
        assert_eq!(a.won + b.won, 20);
        assert!(a.up && b.up);
        assert_eq!(r.line_stats(2), None);
        // Every copy the other line brought is a duplicate.
        assert_eq!(r.stats().duplicates, 17);
    }
}

#[test]
fn ab_a_sequence_lost_on_both_lines_is_naked_once_on_one_line() {
    let mut r = rx_lines(2, 3);
    let naks = ab_feed(&mut r, 20, 50, &[5, 9], &[9, 14]);
    // Only 9 was lost on both: one NAK (then repeats, unanswered: no source here).
    assert!(!naks.is_empty());
    assert!(naks.iter().all(|&(s, _, _)| s == 9), "{naks:?}");
    // On one line, to the source's address on that line.
    for &(_, dest, lines) in &naks {
        let l = lines.iter().collect::<Vec<_>>();
        assert_eq!(l.len(), 1);
        let want = if l[0] == 0 { SRC } else { SRC_B };
        assert_eq!(dest, Destination::Unicast(want));
    }
}

#[test]
fn ab_nak_waits_for_a_lagging_line_at_most_line_wait() {
    let mut r = rx_lines(2, 5);
    r.handle_repr_on(ms(0), 0, SRC, &spm(0, 0, 0u32.wrapping_sub(1)));
    for i in 0..4 {
        r.handle_repr_on(ms(0), 0, SRC, &odata(i, 0, b"x"));
        r.handle_repr_on(ms(0), 1, SRC_B, &odata(i, 0, b"x"));
    }
    // Line 0 goes on without 4; line 1 falls silent (but is not down yet).
    r.handle_repr_on(ms(1), 0, SRC, &odata(5, 0, b"x"));
    let mut first = None;
    for t in 1..200 {
        r.handle_timeout(ms(t));
        if !naks_on_lines(&mut r, ms(t)).is_empty() && first.is_none() {
            first = Some(t);
        }
    }
    let first = first.expect("4 is NAKed once line_wait is over");
    // Not before line_wait (10 ms) after the loss was seen (at 1 ms); then the back-off
    // (under 400 µs).
    assert!((11..=12).contains(&first), "first NAK at {first} ms");
    assert!(r.line_stats(1).unwrap().up);
}

#[test]
fn ab_a_silent_line_goes_down_and_comes_back() {
    let mut r = rx_lines(2, 9);
    let mut single = rx_lines(1, 9);
    r.handle_repr_on(ms(0), 0, SRC, &odata(0, 0, b"x"));
    r.handle_repr_on(ms(0), 1, SRC_B, &odata(0, 0, b"x"));
    single.handle_repr(ms(0), SRC, &odata(0, 0, b"x"));
    // Line 1 dies: 150 ms of packets on line 0 alone.
    for i in 1..150u32 {
        r.handle_repr_on(ms(u64::from(i)), 0, SRC, &odata(i, 0, b"x"));
        single.handle_repr(ms(u64::from(i)), SRC, &odata(i, 0, b"x"));
    }
    let evs = events(&mut r);
    assert!(evs.contains(&Ev::LineDown(1)), "{evs:?}");
    assert!(!r.line_stats(1).unwrap().up);
    let _ = events(&mut single);
    // With line 1 down a loss on line 0 is NAKed as by a one-line receiver (same seed,
    // same draws): no line wait.
    for rcv in [&mut r, &mut single] {
        rcv.handle_repr_on(ms(150), 0, SRC, &odata(151, 0, b"x"));
    }
    let t_ab = r.poll_timeout().unwrap();
    let t_one = single.poll_timeout().unwrap();
    assert_eq!(t_ab, t_one);
    // Line 1 returns: up again, and it fills 150 itself.
    r.handle_repr_on(
        ms(150) + Duration::from_micros(10),
        1,
        SRC_B,
        &odata(150, 0, b"x"),
    );
    let evs = events(&mut r);
    assert!(evs.contains(&Ev::LineUp(1)), "{evs:?}");
    assert!(evs.contains(&Ev::Data(150, b"x".to_vec())), "{evs:?}");
    let b = r.line_stats(1).unwrap();
    assert!(b.up);
    // What line 1 missed while down is counted as its loss (1..150).
    assert_eq!(b.lost, 149);
}

#[test]
fn ab_a_quiet_source_is_not_a_dead_line() {
    let mut r = rx_lines(2, 1);
    for burst in 0..5u64 {
        // Three packets per burst on both lines, line 1 0.2 ms behind, then 2 s quiet.
        for i in 0..3u32 {
            let sqn = (burst * 3) as u32 + i;
            let t = ms(burst * 2000) + Duration::from_micros(u64::from(i) * 10);
            r.handle_repr_on(t, 0, SRC, &odata(sqn, 0, b"q"));
            r.handle_repr_on(
                t + Duration::from_micros(200),
                1,
                SRC_B,
                &odata(sqn, 0, b"q"),
            );
        }
    }
    let evs = events(&mut r);
    assert!(
        !evs.iter()
            .any(|e| matches!(e, Ev::LineDown(_) | Ev::LineUp(_))),
        "{evs:?}"
    );
}

#[test]
fn packets_on_a_line_the_receiver_does_not_have_are_ignored() {
    let mut r = rx_lines(2, 1);
    r.handle_repr_on(ms(0), 2, SRC, &odata(0, 0, b"x"));
    assert_eq!(r.stats().packets_ignored, 1);
    assert_eq!(r.peer_count(), 0);
    let mut one = rx();
    one.handle_repr_on(ms(0), 1, SRC, &odata(0, 0, b"x"));
    assert_eq!(one.stats().packets_ignored, 1);
    for lines in [0, 5] {
        let c = ReceiverConfig { lines, ..cfg() };
        assert_eq!(
            Receiver::new(c, LOCAL, 1).err(),
            Some(ConfigError::Lines(lines))
        );
    }
}

// ---- round-trip probe --------------------------------------------------------------

fn rx_probe() -> Receiver {
    let c = ReceiverConfig {
        rtt_probe: true,
        ..cfg()
    };
    Receiver::new(c, LOCAL, 11).unwrap()
}

/// Runs timers in 100 µs steps from `from` to `to` (µs); the SPMRs sent, with times.
fn spmrs(r: &mut Receiver, from: u64, to: u64) -> Vec<u64> {
    let mut v = Vec::new();
    for t in (from..to).step_by(100) {
        r.handle_timeout(us(t));
        for (what, _) in sent(r, us(t)) {
            assert_eq!(what, None, "only SPMRs here");
            v.push(t);
        }
    }
    v
}

#[test]
fn rtt_probe_times_an_spmr_before_the_first_loss() {
    let mut r = rx_probe();
    r.handle_repr(us(0), SRC, &spm(0, 0, 9));
    assert_eq!(r.srtt(tsi()), None);
    // At once when the peer appears: one SPMR, though the path is known.
    let sent_at = spmrs(&mut r, 0, 250_000);
    assert_eq!(sent_at, vec![0]);
    // The source's announcement SPMs (OPT_SYN) that follow answer no SPMR: no sample.
    let mut syn = spm(1, 0, 9);
    syn.options.syn = true;
    r.handle_repr(us(50), SRC, &syn);
    assert_eq!(r.srtt(tsi()), None);
    // The SPM 300 µs after the SPMR is the sample; no further probe.
    r.handle_repr(us(300), SRC, &spm(2, 0, 9));
    assert_eq!(r.srtt(tsi()), Some(Duration::from_micros(300)));
    assert_eq!(r.stats().rtt_samples, 1);
    assert_eq!(spmrs(&mut r, 300, 2_000_000), Vec::<u64>::new());
    // So the first loss backs off within the probe's floor (nak_bo_ivl_probe, 20 ms:
    // a probe sample may be short), not the 50 ms ceiling.
    r.handle_repr(us(2_000_000), SRC, &odata(10, 0, b"a"));
    r.handle_repr(us(2_000_000), SRC, &odata(12, 0, b"c"));
    let at = r.poll_timeout().unwrap();
    assert!(at < us(2_000_000 + 20_000), "{at:?}");
    // Its NAK answered 300 µs later: from then on the back-off follows 4 x the RTT.
    let mut t = 2_000_000;
    let mut naked = None;
    while naked.is_none() && t < 2_100_000 {
        r.handle_timeout(us(t));
        for (what, _) in sent(&mut r, us(t)) {
            if what.is_some() {
                naked = Some(t);
            }
        }
        t += 10;
    }
    let naked = naked.expect("a NAK for sequence 11");
    r.handle_repr(us(naked + 300), SRC, &rdata(11, 0, b"b"));
    assert_eq!(r.stats().rtt_samples, 2);
    let t2 = naked + 10_000;
    r.handle_repr(us(t2), SRC, &odata(13, 0, b"d"));
    r.handle_repr(us(t2), SRC, &odata(15, 0, b"f"));
    let at = r.poll_timeout().unwrap();
    assert!(at < us(t2 + 1200), "{at:?}");
}

#[test]
fn rtt_probe_ignores_a_late_spm_and_gives_up_after_three() {
    let mut r = rx_probe();
    r.handle_repr(us(0), SRC, &spm(0, 0, 9));
    let mut sqn = 1;
    let mut all = Vec::new();
    let mut answer_at = None;
    for t in (0..5_000_000u64).step_by(100) {
        if answer_at == Some(t) {
            // The SPM comes 20 ms after the SPMR: held off by the source, it answers
            // nothing.
            r.handle_repr(us(t), SRC, &spm(sqn, 0, 9));
            sqn += 1;
        }
        for s in spmrs(&mut r, t, t + 1) {
            all.push(s);
            answer_at = Some(s + 20_000);
        }
    }
    assert_eq!(r.srtt(tsi()), None, "late answers are no samples");
    assert_eq!(r.stats().rtt_samples, 0);
    // RTT_PROBES (3), at least spmr_expiry apart, and no more.
    assert_eq!(all.len(), usize::from(crate::config::RTT_PROBES), "{all:?}");
    assert!(all.windows(2).all(|w| w[1] - w[0] >= 250_000), "{all:?}");
}

#[test]
fn a_probe_sample_alone_keeps_the_back_off_span_at_its_floor() {
    // Receivers that joined together time the same SPM: all but the first get a short
    // sample, so until a NAK is timed the span is at least nak_bo_ivl_probe (20 ms),
    // not 4 x the 300 µs sample.
    let mut waits = Vec::new();
    for seed in 0..16 {
        let c = ReceiverConfig {
            rtt_probe: true,
            ..cfg()
        };
        let mut r = Receiver::new(c, LOCAL, seed).unwrap();
        r.handle_repr(us(0), SRC, &spm(0, 0, 9));
        assert_eq!(spmrs(&mut r, 0, 100), vec![0]);
        r.handle_repr(us(300), SRC, &spm(1, 0, 9));
        r.handle_repr(us(1000), SRC, &odata(10, 0, b"a"));
        r.handle_repr(us(1000), SRC, &odata(12, 0, b"c"));
        let at = r.poll_timeout().unwrap();
        waits.push(at.as_nanos() / 1000 - 1000);
    }
    assert!(waits.iter().all(|&w| w < 20_000), "{waits:?}");
    assert!(
        waits.iter().filter(|&&w| w > 1200).count() >= 8,
        "the 20 ms floor, not 4 x 300 µs: {waits:?}"
    );
}
