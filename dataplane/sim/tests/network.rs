//! The network model, event loop and checks, driven by the fake protocol in `common`
//! (independent of the real engines).

mod common;

use std::time::Duration;

use common::{run_fake, run_fake_nodes};
use xpgm_core::wire::PacketType;
use xpgm_sim::{EndReason, LinkConfig, SimConfig};

fn cfg(receivers: usize, messages: u64, loss: f64, seed: u64) -> SimConfig {
    SimConfig {
        seed,
        receivers,
        messages,
        size: 40,
        ..SimConfig::default()
    }
    .with_receiver_loss(loss, false)
}

#[test]
fn lossless_run_delivers_everything_and_ends_cleanly() {
    let mut c = cfg(4, 500, 0.0, 1);
    c.downstream.jitter = Duration::ZERO; // no reordering, so no spurious NAK
    let r = run_fake(&c, 1000, |_, _| {});
    assert!(r.full_delivery(), "{r}");
    assert_eq!(r.delivered, 2000);
    assert_eq!(r.end, Some(EndReason::AllSessionsEnded));
    assert_eq!(r.sessions_ended, 4);
    assert_eq!(r.naks_at_source, 0);
    assert_eq!(r.net.source_sent.get(PacketType::Odata), 500);
    // Every ODATA reached every receiver exactly once.
    assert_eq!(r.odata_sent, 500);
    assert_eq!(r.net.downstream_dropped.total(), 0);
    // 500 messages at 10000/s: the last is offered at 49.9 ms.
    assert!(r.virtual_ns >= 49_900_000, "{}", r.virtual_ns);
}

#[test]
fn sequence_numbers_may_wrap() {
    let c = cfg(2, 300, 0.05, 2);
    let r = run_fake(&c, u32::MAX - 100, |_, _| {});
    assert!(r.full_delivery(), "{r}");
}

#[test]
fn repairs_cover_independent_loss() {
    let c = cfg(5, 1000, 0.05, 3);
    let r = run_fake(&c, 0, |_, _| {});
    assert!(r.full_delivery(), "{r}");
    let lost = r.net.downstream_dropped.get(PacketType::Odata);
    // 5000 ODATA deliveries at 5%: about 250 lost, each repaired by RDATA.
    assert!((150..350).contains(&lost), "lost {lost}");
    assert!(r.rdata_sent >= lost.min(1), "{r}");
    assert!(r.naks_at_source > 0);
}

#[test]
fn without_a_reverse_path_losses_become_unrecoverable_messages() {
    let mut c = cfg(3, 1000, 0.05, 4);
    c.reverse.loss = 1.0;
    let r = run_fake(&c, 0, |_, _| {});
    assert_eq!(r.naks_at_source, 0);
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.out_of_order, 0);
    assert_eq!(r.corrupt, 0);
    assert_eq!(r.missing, 0, "{r}");
    assert_eq!(r.delivered + r.unrecoverable, 3000);
    // Messages are one TPDU each here, so every ODATA lost is one message lost (FINs
    // can also be lost but are repeated).
    assert_eq!(
        r.unrecoverable,
        r.net.downstream_dropped.get(PacketType::Odata)
    );
    for rr in &r.per_receiver {
        assert_eq!(rr.delivered + rr.unrecoverable, 1000);
    }
}

#[test]
fn upstream_loss_is_shared_by_every_receiver() {
    let mut c = cfg(4, 1000, 0.0, 5);
    c.upstream.loss = 0.03;
    c.reverse.loss = 1.0;
    let r = run_fake(&c, 0, |_, _| {});
    let lost = r.net.upstream_dropped.get(PacketType::Odata);
    assert!(lost > 10, "{lost}");
    for rr in &r.per_receiver {
        assert_eq!(rr.unrecoverable, lost, "{r}");
    }
}

#[test]
fn nak_loss_per_type_only_hits_naks() {
    let mut c = cfg(3, 500, 0.05, 6);
    c.type_loss.nak = 1.0;
    let r = run_fake(&c, 0, |_, _| {});
    assert_eq!(r.naks_at_source, 0);
    assert!(r.net.type_dropped.get(PacketType::Nak) > 0);
    assert_eq!(
        r.net.reverse_dropped.total() + r.net.type_dropped.total(),
        r.naks_sent
    );
    assert!(r.unrecoverable > 0);
    assert_eq!(r.delivered + r.unrecoverable, 1500);
}

#[test]
fn ncf_and_rdata_type_loss_are_counted_per_receiver() {
    let mut c = cfg(3, 500, 0.05, 7);
    c.type_loss.ncf = 1.0;
    c.type_loss.rdata = 0.5;
    let r = run_fake(&c, 0, |_, _| {});
    // Every NCF is multicast to 3 receivers and dropped on each link.
    let ncf_reaching_links = r.net.source_sent.get(PacketType::Ncf) * 3;
    assert_eq!(
        r.net.type_dropped.get(PacketType::Ncf) + r.net.downstream_dropped.get(PacketType::Ncf),
        ncf_reaching_links
    );
    assert!(r.net.type_dropped.get(PacketType::Rdata) > 0);
    assert_eq!(r.delivered + r.unrecoverable, 1500, "{r}");
    assert_eq!(r.duplicates + r.out_of_order + r.corrupt, 0);
}

#[test]
fn jitter_reorders_and_duplication_duplicates() {
    let mut c = cfg(3, 2000, 0.0, 8);
    c.msg_rate = 100_000; // 10 µs apart
    c.downstream.jitter = Duration::from_micros(100);
    c.downstream.duplicate = 0.05;
    let (r, _, rxs) = run_fake_nodes(&c, 0, |_, _| {});
    assert!(r.full_delivery(), "{r}");
    assert!(r.net.duplicated > 100, "{}", r.net.duplicated);
    let reordered: u64 = rxs.iter().map(|x| x.reordered).sum();
    assert!(reordered > 100, "reordered {reordered}");
    let dups: u64 = r.per_receiver.iter().map(|x| x.dup_packets_dropped).sum();
    assert!(dups > 100, "{dups}");
}

#[test]
fn no_jitter_no_reordering() {
    let mut c = cfg(3, 2000, 0.0, 8);
    c.msg_rate = 100_000;
    c.downstream.jitter = Duration::ZERO;
    c.reverse.jitter = Duration::ZERO;
    let (r, _, rxs) = run_fake_nodes(&c, 0, |_, _| {});
    assert!(r.full_delivery(), "{r}");
    assert_eq!(rxs.iter().map(|x| x.reordered).sum::<u64>(), 0);
}

#[test]
fn back_pressure_is_retried_until_everything_is_sent() {
    let mut c = cfg(2, 600, 0.02, 9);
    c.msg_rate = 0; // offer as fast as the source accepts
    let r = run_fake(&c, 0, |s, _| {
        s.queue_limit = 8;
        s.per_ms = 50;
    });
    assert!(r.would_block > 0, "{r}");
    assert_eq!(r.sent, 600);
    assert!(r.full_delivery(), "{r}");
    // 600 messages released at 50 per virtual ms take at least 12 ms.
    assert!(r.virtual_ns >= 12_000_000);
}

#[test]
fn same_seed_same_report_and_other_seeds_differ() {
    let mut c = cfg(4, 800, 0.05, 10);
    c.downstream.burst_len = Some(3.0);
    c.downstream.duplicate = 0.01;
    c.upstream.loss = 0.01;
    let a = run_fake(&c, 0, |_, _| {});
    let b = run_fake(&c, 0, |_, _| {});
    assert_eq!(a, b);
    let mut differ = 0;
    for seed in 11..16 {
        c.seed = seed;
        let d = run_fake(&c, 0, |_, _| {});
        if d.net != a.net {
            differ += 1;
        }
    }
    assert!(
        differ >= 4,
        "only {differ} of 5 other seeds changed the network"
    );
}

#[test]
fn caps_stop_runs_that_would_not_end() {
    // No FIN ever reaches anyone: sessions never end; the quiet period stops the run.
    let mut c = cfg(2, 100, 0.0, 12);
    c.type_loss.spm = 1.0;
    c.quiet = Duration::from_millis(500);
    let r = run_fake(&c, 0, |_, _| {});
    assert_eq!(r.end, Some(EndReason::Quiet));
    assert_eq!(r.delivered, 200);
    assert_eq!(r.sessions_ended, 0);

    let mut c = cfg(2, 100, 0.0, 12);
    c.max_events = 50;
    let r = run_fake(&c, 0, |_, _| {});
    assert_eq!(r.end, Some(EndReason::EventLimit));
    assert!(r.events <= 51, "{}", r.events);

    let mut c = cfg(2, 1000, 0.0, 12);
    c.max_time = Duration::from_millis(10);
    let r = run_fake(&c, 0, |_, _| {});
    assert_eq!(r.end, Some(EndReason::TimeLimit));
    assert!(r.virtual_ns <= 10_000_000);
    assert!(r.missing > 0);
}

#[test]
fn bad_configs_are_rejected() {
    let ok = cfg(2, 10, 0.0, 1);
    let mut c = ok.clone();
    c.downstream.loss = 1.5;
    assert!(c.validate().is_err());
    let mut c = ok.clone();
    c.size = 7;
    assert!(c.validate().is_err());
    let mut c = ok.clone();
    c.receivers = 0;
    assert!(c.validate().is_err());
    let mut c = ok.clone();
    c.upstream = LinkConfig {
        burst_len: Some(0.5),
        ..c.upstream
    };
    assert!(c.validate().is_err());
    let mut c = ok;
    c.type_loss.ncf = f64::NAN;
    assert!(c.validate().is_err());
}

#[test]
fn report_renders_as_json_and_table() {
    let c = cfg(2, 50, 0.0, 1);
    let r = run_fake(&c, 0, |_, _| {});
    let j: serde_json::Value = serde_json::from_str(&r.to_json()).expect("valid JSON");
    assert_eq!(j["delivered"], 100);
    assert_eq!(j["receivers"], 2);
    assert_eq!(j["messages"], 50);
    assert_eq!(j["end"], "all_sessions_ended");
    let t = r.to_string();
    assert!(t.contains("delivered") && t.contains("NCF sent") && t.contains("complete"));
}
