//! Library behaviour over a fake datapath: back-pressure (a full publisher blocks or says
//! WouldBlock, and never drops), and loss events reaching the subscriber in order.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{FakeDp, Queue};
use xpgm::core::Instant;
use xpgm::core::config::SourceConfig;
use xpgm::core::source::Source;
use xpgm::core::wire::{Gsi, Nla, Tsi, ty};
use xpgm::{
    Delivery, Error, Publisher, PublisherConfig, SessionConfig, Subscriber, SubscriberConfig,
};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 9, 9, 9);
const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const RCV: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 2));
const SIZE: usize = 64;

fn session() -> SessionConfig {
    SessionConfig::new("fake0", IpAddr::V4(GROUP))
}

fn msg(i: u64) -> [u8; SIZE] {
    let mut m = [0u8; SIZE];
    m[..8].copy_from_slice(&i.to_be_bytes());
    m
}

/// Indexes of the ODATA packets in `link`, in order (the message is the packet's tail).
fn odata_indexes(link: &common::Link) -> Vec<u64> {
    let mut out = Vec::new();
    let mut q = link.lock().expect("lock");
    while q.pop(&mut |_, p| {
        if p.get(4) == Some(&ty::ODATA) {
            let m = &p[p.len() - SIZE..];
            out.push(u64::from_be_bytes(m[..8].try_into().expect("8 bytes")));
        }
    }) {}
    out
}

#[test]
fn a_rate_limited_publisher_pushes_back_and_never_drops() {
    let wire = Queue::link(8192);
    let dp = FakeDp::new(SRC, Queue::link(16), Some(wire.clone()), None);
    let mut cfg = PublisherConfig::new(session());
    cfg.queue_capacity = 4;
    cfg.source.send_queue = 8;
    cfg.max_message = 512;
    // ~2 300 TPDUs of 88 bytes per second: far slower than this loop offers them.
    cfg.source.txw_max_rte = 200_000;
    let mut p = Publisher::with_datapath(cfg, Box::new(dp)).expect("publisher");
    let n = 1500u64;
    let mut would_block = 0u64;
    for i in 0..n {
        match p.try_send(&msg(i)) {
            Ok(()) => {}
            Err(Error::WouldBlock) => {
                would_block += 1;
                p.send(&msg(i))
                    .expect("blocking send succeeds once there is room");
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert!(would_block > 0, "the queue never filled");
    p.flush(Duration::from_secs(30)).expect("flush");
    let stats = p.finish(Duration::ZERO).expect("finish");
    assert_eq!(stats.messages, n);
    assert_eq!(stats.odata_sent, n);
    let seen = odata_indexes(&wire);
    assert_eq!(
        seen,
        (0..n).collect::<Vec<_>>(),
        "every message, once, in order"
    );
}

#[test]
fn a_stalled_publisher_reports_would_block_and_timeout() {
    let wire = Queue::link(1024);
    let dp = FakeDp::new(SRC, Queue::link(16), Some(wire.clone()), None);
    let mut cfg = PublisherConfig::new(session());
    cfg.queue_capacity = 4;
    cfg.source.send_queue = 8;
    cfg.max_message = 512;
    // 1 byte/s: after the initial burst nothing more can leave for minutes.
    cfg.source.txw_max_rte = 1;
    cfg.finish_timeout = Duration::from_millis(100);
    let mut p = Publisher::with_datapath(cfg, Box::new(dp)).expect("publisher");
    let mut accepted = 0u64;
    loop {
        match p.try_send(&msg(accepted)) {
            Ok(()) => accepted += 1,
            Err(Error::WouldBlock) => {
                // The worker may still be moving messages into the engine: retry until
                // the engine is full too.
                std::thread::sleep(Duration::from_millis(20));
                match p.try_send(&msg(accepted)) {
                    Ok(()) => accepted += 1,
                    Err(Error::WouldBlock) => break,
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(accepted < 10_000, "never pushed back");
    }
    assert!(
        matches!(
            p.send_timeout(&msg(accepted), Duration::from_millis(30)),
            Err(Error::Timeout)
        ),
        "a blocking send times out instead of dropping"
    );
    assert!(matches!(
        p.try_send(&[0u8; 600]),
        Err(Error::TooLarge { len: 600, .. })
    ));
    // Whatever left is a prefix of what was accepted, in order.
    let seen = odata_indexes(&wire);
    assert!(!seen.is_empty() && (seen.len() as u64) < accepted);
    assert_eq!(seen, (0..seen.len() as u64).collect::<Vec<_>>());
    // Finishing gives up after the grace period and says how much was left unsent.
    let stats = p.finish(Duration::ZERO).expect("finish");
    assert_eq!(stats.odata_sent, seen.len() as u64);
    assert_eq!(stats.unsent, accepted - seen.len() as u64, "{stats:?}");
}

#[test]
fn loss_events_reach_the_subscriber_in_order() {
    let inbox = Queue::link(1024);
    let naks = Queue::link(1024);
    let dp = FakeDp::new(RCV, inbox.clone(), None, Some(naks.clone()));
    let mut cfg = SubscriberConfig::new(session());
    cfg.receiver.nak_bo_ivl = Duration::from_millis(1);
    cfg.receiver.nak_rpt_ivl = Duration::from_millis(5);
    cfg.receiver.nak_rdata_ivl = Duration::from_millis(5);
    cfg.receiver.nak_ncf_retries = 1;
    let mut sub = Subscriber::with_datapath(cfg, Box::new(dp)).expect("subscriber");

    // A real source engine in virtual time produces the packets; ODATA #3 is lost and
    // nobody answers the NAKs.
    let scfg = SourceConfig {
        group: Nla::V4(GROUP),
        path_nla: SRC,
        ..SourceConfig::default()
    };
    let tsi = Tsi {
        gsi: Gsi([9, 8, 7, 6, 5, 4]),
        sport: 1234,
    };
    let mut src = Source::new(scfg, tsi, Instant::ZERO).expect("source");
    let mut buf = vec![0u8; 1500];
    let mut odata = 0;
    let now = Instant::from_nanos(1_000);
    for i in 0..10u64 {
        src.send(now, &msg(i)).expect("send");
    }
    while let Some(t) = src.poll_transmit(now, &mut buf) {
        let pkt = &buf[..t.len];
        if pkt[4] == ty::ODATA {
            odata += 1;
            if odata == 4 {
                continue; // message 3
            }
        }
        inbox.lock().expect("lock").push(SRC, pkt);
    }

    let mut got = Vec::new();
    let mut lost = None;
    while got.len() < 9 {
        match sub.recv(Some(Duration::from_secs(10))).expect("delivery") {
            Delivery::Data { data, .. } => {
                got.push(u64::from_be_bytes(data[..8].try_into().expect("8 bytes")));
            }
            Delivery::Unrecoverable {
                tsi: t,
                first,
                count,
            } => {
                assert_eq!(t, tsi);
                assert_eq!(got, vec![0, 1, 2], "reported where the loss is");
                lost = Some((first, count));
            }
            _ => {}
        }
    }
    assert_eq!(got, vec![0, 1, 2, 4, 5, 6, 7, 8, 9]);
    let (first, count) = lost.expect("an Unrecoverable event");
    assert_eq!(count, 1);
    assert_eq!(first.0.wrapping_sub(tsi_first_sqn(&got)), 3);
    assert!(naks.lock().expect("lock").len() > 0, "NAKs were sent");
    // Nothing else pending: try_recv and recv_batch see an empty queue.
    assert!(sub.try_recv().expect("alive").is_none());
    assert_eq!(sub.recv_batch(16, |_| {}).expect("alive"), 0);
    let stats = sub.close().expect("close");
    assert_eq!(stats.unrecoverable, 1);
    assert!(stats.naks_sent > 0);
}

/// The source numbers from 0 (xpgm_core's initial sequence number).
fn tsi_first_sqn(_: &[u64]) -> u32 {
    0
}

#[test]
fn a_slow_subscriber_holds_data_in_the_window_instead_of_dropping() {
    let inbox = Queue::link(1024);
    let dp = FakeDp::new(RCV, inbox.clone(), None, None);
    let mut cfg = SubscriberConfig::new(session());
    cfg.queue_capacity = 2; // the delivery ring fills after two deliveries
    let mut sub = Subscriber::with_datapath(cfg, Box::new(dp)).expect("subscriber");
    let scfg = SourceConfig {
        group: Nla::V4(GROUP),
        path_nla: SRC,
        ..SourceConfig::default()
    };
    let tsi = Tsi {
        gsi: Gsi([1, 1, 1, 1, 1, 1]),
        sport: 99,
    };
    let mut src = Source::new(scfg, tsi, Instant::ZERO).expect("source");
    let mut buf = vec![0u8; 1500];
    let now = Instant::from_nanos(1_000);
    let n = 300u64;
    for i in 0..n {
        src.send(now, &msg(i)).expect("send");
    }
    while let Some(t) = src.poll_transmit(now, &mut buf) {
        inbox.lock().expect("lock").push(SRC, &buf[..t.len]);
    }
    // Not reading: the worker must wait for room, not drop.
    std::thread::sleep(Duration::from_millis(200));
    let mut got = Vec::new();
    while (got.len() as u64) < n {
        let mut batch = Vec::new();
        let k = sub
            .recv_batch(7, |d| {
                if let Delivery::Data { data, .. } = d {
                    batch.push(u64::from_be_bytes(data[..8].try_into().expect("8 bytes")));
                } else if let Delivery::Unrecoverable { .. } = d {
                    panic!("nothing was lost");
                }
            })
            .expect("alive");
        got.extend(batch);
        if k == 0 {
            match sub.recv(Some(Duration::from_secs(10))).expect("delivery") {
                Delivery::Data { data, .. } => {
                    got.push(u64::from_be_bytes(data[..8].try_into().expect("8 bytes")));
                }
                Delivery::Unrecoverable { .. } => panic!("nothing was lost"),
                _ => {}
            }
        }
    }
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    let stats = sub.close().expect("close");
    assert_eq!(stats.unrecoverable, 0);
    assert_eq!(stats.window_full_drops + stats.buffer_drops, 0);
    assert_eq!(stats.delivered, n);
}

#[test]
fn a_repaired_message_is_flagged_and_the_others_are_not() {
    let inbox = Queue::link(1024);
    let naks = Queue::link(1024);
    let dp = FakeDp::new(RCV, inbox.clone(), None, Some(naks.clone()));
    let mut cfg = SubscriberConfig::new(session());
    cfg.receiver.nak_bo_ivl = Duration::from_millis(1);
    let mut sub = Subscriber::with_datapath(cfg, Box::new(dp)).expect("subscriber");
    let scfg = SourceConfig {
        group: Nla::V4(GROUP),
        path_nla: SRC,
        ..SourceConfig::default()
    };
    let tsi = Tsi {
        gsi: Gsi([9, 8, 7, 6, 5, 1]),
        sport: 1235,
    };
    let mut src = Source::new(scfg, tsi, Instant::ZERO).expect("source");
    let mut buf = vec![0u8; 1500];
    let mut odata = 0;
    let now = Instant::from_nanos(1_000);
    for i in 0..10u64 {
        src.send(now, &msg(i)).expect("send");
    }
    while let Some(t) = src.poll_transmit(now, &mut buf) {
        let pkt = &buf[..t.len];
        if pkt[4] == ty::ODATA {
            odata += 1;
            if odata == 4 {
                continue; // message 3, repaired below
            }
        }
        inbox.lock().expect("lock").push(SRC, pkt);
    }
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut t = 2_000u64;
    while got.len() < 10 && std::time::Instant::now() < deadline {
        // The source answers the receiver's NAKs with RDATA.
        let mut asked = Vec::new();
        while naks
            .lock()
            .expect("lock")
            .pop(&mut |from, b| asked.push((from, b.to_vec())))
        {}
        t += 1_000_000;
        let tn = Instant::from_nanos(t);
        for (from, b) in asked {
            let _ = src.handle_packet(tn, from, &b);
        }
        while let Some(tx) = src.poll_transmit(tn, &mut buf) {
            inbox.lock().expect("lock").push(SRC, &buf[..tx.len]);
        }
        if let Ok(Delivery::Data { data, .. }) = sub.recv(Some(Duration::from_millis(20))) {
            let i = u64::from_be_bytes(data[..8].try_into().expect("8 bytes"));
            got.push((i, sub.last_repaired()));
        }
    }
    let want: Vec<(u64, bool)> = (0..10).map(|i| (i, i == 3)).collect();
    assert_eq!(got, want);
    sub.close().expect("close");
}
