//! The real engines (`xpgm_core::source::Source`, `xpgm_core::receiver::Receiver`) on
//! the simulated network: reliability properties, determinism, NAK suppression.

use std::time::Duration;

use proptest::prelude::*;
use xpgm_core::wire::PacketType;
use xpgm_sim::{EndReason, Report, SimConfig};

/// Work cap per run: every property case stays well under a second in debug builds.
const MAX_EVENTS: u64 = 3_000_000;

fn base(receivers: usize, messages: u64, seed: u64) -> SimConfig {
    SimConfig {
        seed,
        receivers,
        messages,
        size: 64,
        max_events: MAX_EVENTS,
        ..SimConfig::default()
    }
}

fn run(c: &SimConfig) -> Report {
    xpgm_sim::run(c).expect("valid config")
}

/// Every receiver got every message exactly once and in order, or was told it is
/// unrecoverable; nothing is corrupt, duplicated or reordered. The only messages a
/// receiver may never mention are those before the first one it heard of (`join_gap`:
/// it missed the session's start — the initial SPM and the first data — and joined
/// late, which RFC 3208 allows; see the report of the `sim` branch).
fn assert_accounted(r: &Report) {
    let errs = r.accounting_errors();
    assert!(errs.is_empty(), "{}\n{r}", errs.join("\n"));
}

#[derive(Debug, Clone)]
struct Faults {
    loss: f64,
    burst: bool,
    upstream_loss: f64,
    jitter_us: u64,
    dup: f64,
    spm: f64,
    nak: f64,
    ncf: f64,
    rdata: f64,
}

fn faults() -> impl Strategy<Value = Faults> {
    (
        0.0..0.15f64,
        any::<bool>(),
        0.0..0.05f64,
        0u64..2000,
        0.0..0.05f64,
        (0.0..0.5f64, 0.0..0.5f64, 0.0..0.5f64, 0.0..0.3f64),
    )
        .prop_map(
            |(loss, burst, upstream_loss, jitter_us, dup, (spm, nak, ncf, rdata))| Faults {
                loss,
                burst,
                upstream_loss,
                jitter_us,
                dup,
                spm,
                nak,
                ncf,
                rdata,
            },
        )
}

fn faulty(f: &Faults, receivers: usize, messages: u64, size: usize, seed: u64) -> SimConfig {
    let mut c = base(receivers, messages, seed).with_receiver_loss(f.loss, f.burst);
    c.size = size;
    c.upstream.loss = f.upstream_loss;
    let jitter = Duration::from_micros(f.jitter_us);
    c.downstream.jitter = jitter;
    c.reverse.jitter = jitter;
    c.downstream.duplicate = f.dup;
    c.reverse.duplicate = f.dup;
    c.type_loss.spm = f.spm;
    c.type_loss.nak = f.nak;
    c.type_loss.ncf = f.ncf;
    c.type_loss.rdata = f.rdata;
    c
}

proptest! {
    // A fixed seed: `scripts/test` runs the same 512 cases every time (never flaky);
    // `scripts/soak-sim` draws new ones.
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x9e37_79b9_7f4a_7c15),
        ..ProptestConfig::default()
    })]

    /// Whatever the network does, each message is delivered once, in order, intact, or
    /// reported unrecoverable.
    #[test]
    fn every_message_is_delivered_once_in_order_or_reported(
        f in faults(),
        receivers in 1usize..6,
        messages in 50u64..300,
        size in prop_oneof![8usize..200, 1000usize..5000],
        seed in any::<u64>(),
    ) {
        let c = faulty(&f, receivers, messages, size, seed);
        let r = run(&c);
        assert_accounted(&r);
    }

    /// With at most 5% independent loss and the default (ample) windows, nothing is lost.
    #[test]
    fn moderate_random_loss_is_fully_repaired(
        loss in 0.0..0.05f64,
        receivers in 1usize..6,
        messages in 50u64..300,
        jitter_us in 0u64..500,
        seed in any::<u64>(),
    ) {
        let mut c = base(receivers, messages, seed).with_receiver_loss(loss, false);
        c.downstream.jitter = Duration::from_micros(jitter_us);
        let r = run(&c);
        assert_accounted(&r);
        prop_assert_eq!(r.unrecoverable, 0, "{}", r);
        prop_assert_eq!(r.delivered + r.join_gap, r.messages * r.receivers as u64, "{}", r);
        prop_assert_eq!(r.end, Some(EndReason::AllSessionsEnded), "{}", r);
    }
}

#[test]
fn same_seed_same_report_different_seed_different_network() {
    let f = Faults {
        loss: 0.05,
        burst: true,
        upstream_loss: 0.01,
        jitter_us: 300,
        dup: 0.01,
        spm: 0.1,
        nak: 0.1,
        ncf: 0.1,
        rdata: 0.05,
    };
    let c = faulty(&f, 4, 400, 64, 99);
    let a = run(&c);
    let b = run(&c);
    assert_eq!(a, b);
    assert_accounted(&a);
    let mut differ = 0;
    for seed in 100..105 {
        let d = run(&faulty(&f, 4, 400, 64, seed));
        assert_accounted(&d);
        if d.net != a.net || d.naks_at_source != a.naks_at_source {
            differ += 1;
        }
    }
    assert!(differ >= 4, "only {differ} of 5 seeds changed the run");
}

/// 50 receivers behind one lossy shared link, every other link lossless.
fn suppression(seed: u64) -> SimConfig {
    let mut c = base(50, 400, seed).with_receiver_loss(0.0, false);
    c.upstream.loss = 0.03;
    c
}

/// Bound on NAKs per packet lost upstream. Every receiver detects an upstream loss at
/// (almost) the same time and backs off uniformly in `[0, NAK_BO_IVL)`. The first NAK
/// reaches the source one reverse delay after the earliest back-off, and the NCF it
/// triggers reaches the others one downstream delay later: about `rtt` ≈ 2.4 ms
/// (1 ms + 1 ms + up to 2 × 200 µs jitter). Only receivers whose back-off falls in that
/// window NAK as well: expected `1 + (N − 1) · rtt / NAK_BO_IVL` = 1 + 49 · 2.4 / 50 ≈ 3.4
/// per loss. We allow 5× (margin for the spread of the few losses in a short run);
/// without suppression the source would get up to N = 50 NAKs per loss.
const NAKS_PER_UPSTREAM_LOSS: u64 = 5;

#[test]
fn ncf_suppresses_duplicate_naks_behind_a_shared_lossy_link() {
    for seed in [1, 2, 3] {
        let c = suppression(seed);
        let r = run(&c);
        assert_accounted(&r);
        assert_eq!(r.unrecoverable, 0, "{r}");
        let lost = r.net.upstream_dropped.get(PacketType::Odata)
            + r.net.upstream_dropped.get(PacketType::Rdata);
        assert!(lost > 0, "seed {seed}: nothing lost upstream");
        assert!(
            r.naks_at_source <= NAKS_PER_UPSTREAM_LOSS * lost,
            "seed {seed}: {} NAKs for {lost} upstream losses\n{r}",
            r.naks_at_source
        );
    }
}

/// Issue 12: 500 receivers behind the shared lossy link, with the RTT-derived
/// exponential back-off (span 4 SRTT, group size estimate 1000): about
/// 500 · 1000^(RTT/span − 1) + 1 ≈ 4 NAKs per loss; a uniform back-off over the same
/// span would draw 1 + 499 / 4 ≈ 126. Bound: 8.
const NAKS_PER_UPSTREAM_LOSS_500: u64 = 8;

#[test]
fn suppression_holds_with_500_receivers() {
    let mut c = base(500, 150, 4).with_receiver_loss(0.0, false);
    c.upstream.loss = 0.03;
    let r = run(&c);
    assert_accounted(&r);
    assert_eq!(r.unrecoverable, 0, "{r}");
    let lost = r.net.upstream_dropped.get(PacketType::Odata)
        + r.net.upstream_dropped.get(PacketType::Rdata);
    assert!(lost > 0, "nothing lost upstream");
    assert!(
        r.naks_at_source <= NAKS_PER_UPSTREAM_LOSS_500 * lost,
        "{} NAKs for {lost} upstream losses\n{r}",
        r.naks_at_source
    );
    eprintln!("500 receivers: {} NAKs for {lost} losses", r.naks_at_source);
}

/// Issue 12: at the simulator's default (3 receivers, 1% loss per link both ways, RTT
/// about 2.5 ms) the RTT-derived timers repair in a few round trips where the constant
/// ones (NAK_BO_IVL 50 ms, NAK_RDATA_IVL 200 ms) take tens of ms: median and 99th
/// percentile of the late deliveries' latency (virtual time, deterministic).
#[test]
fn rtt_derived_timers_repair_in_round_trips() {
    let c = base(3, 3000, 1).with_receiver_loss(0.01, false);
    let mut fixed = c.clone();
    fixed.receiver.nak_adaptive = false;
    fixed.source.rdata_holdoff = Duration::ZERO;
    let a = run(&c);
    let f = run(&fixed);
    for r in [&a, &f] {
        assert_accounted(r);
        assert_eq!(r.unrecoverable, 0, "{r}");
    }
    eprintln!(
        "adaptive: {}\nfixed: {}",
        a.repair_latency, f.repair_latency
    );
    assert!(a.repair_latency.count > 0 && f.repair_latency.count > 0);
    // Detection + back-off (< 4 SRTT) + a round trip: under 15 ms at the median.
    assert!(a.repair_latency.p50_us < 15_000, "{}", a.repair_latency);
    assert!(f.repair_latency.p50_us > 20_000, "{}", f.repair_latency);
    assert!(
        a.repair_latency.p99_us * 4 < f.repair_latency.p99_us,
        "{} vs {}",
        a.repair_latency,
        f.repair_latency
    );
}

/// Issue 12, group-size estimate: with losses that only one receiver has (1% per
/// receiver link, 3 receivers), each receiver learns from the others' repairs that its
/// losses concern few receivers and backs off over a shorter span: repairs come sooner
/// for the same NAKs (646 vs 657). With a shared lossy link added, the suppressed
/// losses keep enough of the back-off that NAKs do not grow (898 vs 1124).
#[test]
fn group_estimate_shortens_the_back_off_for_losses_nobody_shares() {
    let c = base(3, 20_000, 1).with_receiver_loss(0.01, false);
    let mut shared = c.clone();
    shared.upstream.loss = 0.01;
    // (name, config, bound on the estimate's median repair latency over the fixed
    // group's, in percent): a fifth shorter for independent losses (measured: 4.9 vs
    // 7.5 ms), no longer with shared ones (6.3 vs 7.7 ms).
    for (name, on, pct) in [
        ("independent", c, 80),
        ("independent + shared", shared, 100),
    ] {
        let mut off = on.clone();
        off.receiver.nak_group_estimate = false;
        let (a, f) = (run(&on), run(&off));
        for r in [&a, &f] {
            assert_accounted(r);
            assert_eq!(r.unrecoverable, 0, "{r}");
        }
        eprintln!(
            "{name}: estimate {} ({} NAKs), fixed group {} ({} NAKs)",
            a.repair_latency, a.naks_at_source, f.repair_latency, f.naks_at_source
        );
        assert!(
            a.repair_latency.p50_us * 100 < f.repair_latency.p50_us * pct,
            "{name}: {} vs {}",
            a.repair_latency,
            f.repair_latency
        );
        assert!(
            a.naks_at_source * 100 <= f.naks_at_source * 102,
            "{name}: {} NAKs vs {}",
            a.naks_at_source,
            f.naks_at_source
        );
    }
}

#[test]
fn without_back_off_and_ncf_every_receiver_naks() {
    // Control for the test above: with (almost) no back-off nobody waits long enough to
    // hear an NCF, and with NCFs lost nobody is told either, so NAKs scale with the
    // number of receivers.
    let mut c = suppression(1);
    c.receiver.nak_bo_ivl = Duration::from_micros(1);
    c.type_loss.ncf = 1.0;
    let r = run(&c);
    assert_accounted(&r);
    let lost = r.net.upstream_dropped.get(PacketType::Odata);
    assert!(lost > 0);
    let suppressed = run(&suppression(1));
    assert!(
        r.naks_at_source >= 20 * lost,
        "{} NAKs for {lost} losses",
        r.naks_at_source
    );
    assert!(
        r.naks_at_source > 4 * suppressed.naks_at_source,
        "{} vs {} with suppression",
        r.naks_at_source,
        suppressed.naks_at_source
    );
}

#[test]
fn heavy_bursty_loss_on_every_path_still_accounts_for_every_message() {
    let mut c = base(10, 1000, 5).with_receiver_loss(0.2, true);
    c.upstream.loss = 0.05;
    c.upstream.burst_len = Some(8.0);
    let r = run(&c);
    assert_accounted(&r);
}

#[test]
fn a_rate_limited_source_pushes_back_and_the_application_catches_up() {
    let mut c = base(3, 3000, 8).with_receiver_loss(0.02, false);
    c.msg_rate = 0; // offer as fast as the source accepts
    c.source.txw_max_rte = 500_000; // bytes/s: ~5000 messages of 64 bytes + headers
    let r = run(&c);
    assert_accounted(&r);
    assert!(r.would_block > 0, "{r}");
    assert_eq!(r.unrecoverable, 0, "{r}");
    // 3000 messages of ~100 bytes on the wire at 500 kB/s take about 0.6 s.
    assert!(r.virtual_ns > 400_000_000, "{r}");
}

#[test]
fn without_repairs_a_lost_fragment_loses_its_whole_message() {
    // 3000-byte messages travel as 3 TPDUs; NAKs never reach the source.
    let mut c = base(3, 300, 21).with_receiver_loss(0.05, false);
    c.size = 3000;
    c.reverse.loss = 1.0;
    let r = run(&c);
    assert_accounted(&r);
    assert_eq!(r.naks_at_source, 0);
    assert_eq!(r.rdata_sent, 0);
    assert!(r.odata_sent >= 900, "{r}");
    assert!(r.unrecoverable > 0, "{r}");
    for rr in &r.per_receiver {
        // Each unrecoverable message owns at least one of the lost sequence numbers,
        // and no lost sequence number belongs to two messages.
        assert!(rr.unrecoverable <= rr.unrecoverable_sqns, "{rr:?}");
        assert!(rr.unrecoverable_sqns <= 3 * rr.unrecoverable, "{rr:?}");
    }
}

/// A receiver present from the start must not miss message 0 even when its link drops
/// the first SPM and ODATA 0 (seed 51): the source announces the session with three
/// SPMs carrying OPT_SYN, as OpenPGM does, and the receiver NAKs back to the start.
#[test]
fn a_receiver_present_from_the_start_misses_nothing() {
    let c = base(1, 20, 51).with_receiver_loss(0.05, false);
    let r = run(&c);
    assert_accounted(&r);
    assert_eq!(r.join_gap, 0, "{r}");
    assert_eq!(r.delivered, 20, "{r}");
}

/// Issue 9, item 1: a case proptest shrank to in a `scripts/test` run. Receiver 1
/// delivered 165 of 167 messages and reported none lost; the run ended "quiet".
#[test]
fn regression_quiet_end_with_lost_tail_spms() {
    let f = Faults {
        loss: 0.06656608919609268,
        burst: true,
        upstream_loss: 0.0,
        jitter_us: 1153,
        dup: 0.037288446511152505,
        spm: 0.48145582990769736,
        nak: 0.2078594719962055,
        ncf: 0.45893909101199276,
        rdata: 0.02754552270306549,
    };
    let mut c = faulty(&f, 4, 167, 8, 6367587682560630090);
    // The scenario needs the constant timers it was found with (issue 12's RTT-derived
    // timers repair everything before the tail SPMs matter).
    c.receiver.nak_adaptive = false;
    c.source.rdata_holdoff = Duration::ZERO;
    let r = run(&c);
    assert_accounted(&r);
    // Every SPM after the last two ODATA was lost to receiver 1, so it never learnt
    // the session's tail; the source exited after `linger`, and at peer expiry the
    // receiver said that everything after its last delivered message is unknown.
    let r1 = &r.per_receiver[1];
    assert_eq!((r1.delivered, r1.tail_unknown), (165, 2), "{r}");
    assert!(!r1.session_ended, "{r}");
    assert_eq!(r.end, Some(EndReason::AllSessionsEnded), "{r}");
}
