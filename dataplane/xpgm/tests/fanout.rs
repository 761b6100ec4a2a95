//! Local fan-out of one receiver's deliveries (what `--transport xdp` does for a second
//! consumer of a feed on the same host, docs/afxdp.md), over a fake datapath: the owner
//! shares through a ring file, attached subscribers get the same deliveries in order,
//! a lapped reader gets a loss event (never silence), and the owner's close or death
//! ends attached readers with an error naming its pid.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Duration;

use common::{FakeDp, Link, Queue};
use xpgm::core::Instant;
use xpgm::core::config::SourceConfig;
use xpgm::core::source::Source;
use xpgm::core::wire::{Gsi, Nla, Tsi};
use xpgm::{Delivery, Error, SessionConfig, Subscriber, SubscriberConfig};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 9, 9, 10);
const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const RCV: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 2));
const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn config(capacity: usize) -> SubscriberConfig {
    let mut c = SubscriberConfig::new(SessionConfig::new("fake0", IpAddr::V4(GROUP)));
    c.queue_capacity = capacity;
    c.max_message = 256;
    c
}

/// A ring path of its own for each test, removed when dropped.
struct TempRing(PathBuf);

impl TempRing {
    fn new(tag: &str) -> TempRing {
        let p = std::env::temp_dir().join(format!(
            "xpgm-fanout-test-{}-{tag}.ring",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        TempRing(p)
    }
}

impl Drop for TempRing {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A source engine that puts `n` messages (index `from + i`) into `inbox`.
struct Feed {
    src: Source,
    buf: Vec<u8>,
    now: u64,
}

impl Feed {
    fn new() -> Feed {
        let scfg = SourceConfig {
            group: Nla::V4(GROUP),
            path_nla: SRC,
            ..SourceConfig::default()
        };
        let tsi = Tsi {
            gsi: Gsi([1, 2, 3, 4, 5, 6]),
            sport: 4321,
        };
        Feed {
            src: Source::new(scfg, tsi, Instant::ZERO).expect("source"),
            buf: vec![0u8; 1500],
            now: 1_000,
        }
    }

    fn send(&mut self, inbox: &Link, from: u64, n: u64) {
        self.now += 1_000;
        let now = Instant::from_nanos(self.now);
        for i in from..from + n {
            self.src.send(now, &i.to_be_bytes()).expect("send");
        }
        while let Some(t) = self.src.poll_transmit(now, &mut self.buf) {
            inbox.lock().expect("lock").push(SRC, &self.buf[..t.len]);
        }
    }
}

fn index(d: &Delivery<'_>) -> Option<u64> {
    match d {
        Delivery::Data { data, .. } => Some(u64::from_be_bytes(
            data.get(..8)?.try_into().expect("8 bytes"),
        )),
        _ => None,
    }
}

/// Next data index from `sub`, skipping peer events; panics on anything else.
fn next_index(sub: &mut Subscriber) -> u64 {
    loop {
        let d = sub.recv(WAIT).expect("delivery");
        match d {
            Delivery::Data { .. } => return index(&d).expect("index"),
            Delivery::NewPeer { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn attached_subscribers_get_the_owners_deliveries_in_order() {
    let ring = TempRing::new("order");
    let inbox = Queue::link(1024);
    let dp = FakeDp::new(RCV, inbox.clone(), None, None);
    let mut owner =
        Subscriber::with_datapath_shared(config(1024), Box::new(dp), &ring.0).expect("owner");
    assert_eq!(owner.shared_ring(), Some(ring.0.as_path()));
    assert_eq!(owner.attached_to(), None);
    let me = i32::try_from(std::process::id()).expect("pid");
    let mut a = Subscriber::attach_to(config(1024), &ring.0, me, 7).expect("attach a");
    let mut b = Subscriber::attach_to(config(1024), &ring.0, me, 7).expect("attach b");
    assert_eq!(a.attached_to(), Some(me));
    assert_eq!(a.shared_ring(), None);

    let mut feed = Feed::new();
    feed.send(&inbox, 0, 100);
    let got: Vec<u64> = (0..100).map(|_| next_index(&mut owner)).collect();
    assert_eq!(got, (0..100).collect::<Vec<_>>());
    // Attached readers see what the owner delivered, in order, by each API.
    let via_recv: Vec<u64> = (0..50).map(|_| next_index(&mut a)).collect();
    assert_eq!(via_recv, (0..50).collect::<Vec<_>>());
    let mut via_try = Vec::new();
    while let Some(d) = a.try_recv().expect("try_recv") {
        via_try.extend(index(&d));
    }
    assert_eq!(via_try, (50..100).collect::<Vec<_>>());
    let mut via_batch = Vec::new();
    while via_batch.len() < 100 {
        b.recv_batch(16, |d| via_batch.extend(index(&d)))
            .expect("recv_batch");
    }
    assert_eq!(via_batch, (0..100).collect::<Vec<_>>());
    assert_eq!(a.stats().lapped, 0);
    // Nothing more for anyone while the owner lives.
    assert!(matches!(
        a.recv(Some(Duration::from_millis(50))),
        Err(Error::Timeout)
    ));

    // The owner closes: its ring file goes; attached readers drain what is left,
    // then end with an error naming the owner.
    feed.send(&inbox, 100, 3);
    let got: Vec<u64> = (0..3).map(|_| next_index(&mut owner)).collect();
    assert_eq!(got, vec![100, 101, 102]);
    owner.close().expect("close");
    assert!(!ring.0.exists(), "ring file removed on close");
    let rest: Vec<u64> = (0..3).map(|_| next_index(&mut a)).collect();
    assert_eq!(rest, vec![100, 101, 102]);
    let e = a.recv(WAIT).expect_err("owner closed").to_string();
    assert!(
        e.contains(&format!("pid {me}")) && e.contains("closed"),
        "{e}"
    );
    // try_recv says the same once drained.
    for _ in 0..3 {
        b.recv(WAIT).expect("drain b");
    }
    let e = b.try_recv().expect_err("owner closed").to_string();
    assert!(e.contains(&format!("pid {me}")), "{e}");
}

#[test]
fn a_lapped_reader_gets_a_loss_event_with_the_exact_count() {
    let ring = TempRing::new("lap");
    let inbox = Queue::link(1024);
    let dp = FakeDp::new(RCV, inbox.clone(), None, None);
    let mut owner =
        Subscriber::with_datapath_shared(config(8), Box::new(dp), &ring.0).expect("owner");
    let me = i32::try_from(std::process::id()).expect("pid");
    let mut slow = Subscriber::attach_to(config(8), &ring.0, me, 1).expect("attach");
    let mut feed = Feed::new();
    // 4 messages, read by both (the owner's first delivery may be a NewPeer event).
    feed.send(&inbox, 0, 4);
    assert_eq!(
        (0..4).map(|_| next_index(&mut owner)).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(
        (0..4).map(|_| next_index(&mut slow)).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    // 20 more, read by the owner in small steps (its own ring holds 8), not by `slow`:
    // the shared ring (8 slots) laps it by 12.
    for k in 0..5 {
        feed.send(&inbox, 4 + 4 * k, 4);
        for i in 0..4 {
            assert_eq!(next_index(&mut owner), 4 + 4 * k + i);
        }
    }
    match slow.recv(WAIT).expect("loss event") {
        Delivery::Unrecoverable { tsi, first, count } => {
            assert_eq!(count, 12);
            assert_eq!(tsi.sport, 4321, "placed after the last data it saw");
            assert_eq!(first.0, 4, "right after sqn 3");
        }
        other => panic!("expected Unrecoverable, got {other:?}"),
    }
    assert_eq!(slow.stats().lapped, 12);
    // Then the 8 the ring still holds, in order.
    assert_eq!(
        (0..8).map(|_| next_index(&mut slow)).collect::<Vec<_>>(),
        (16..24).collect::<Vec<_>>()
    );
}

#[test]
fn an_attached_reader_of_a_dead_owner_ends_naming_its_pid() {
    let ring = TempRing::new("dead");
    let inbox = Queue::link(64);
    let dp = FakeDp::new(RCV, inbox.clone(), None, None);
    let _owner =
        Subscriber::with_datapath_shared(config(16), Box::new(dp), &ring.0).expect("owner");
    // A process that has exited stands for a killed owner.
    let mut child = std::process::Command::new("true").spawn().expect("spawn");
    child.wait().expect("wait");
    let dead = i32::try_from(child.id()).expect("pid");
    let mut r = Subscriber::attach_to(config(16), &ring.0, dead, 9).expect("attach");
    let e = r.recv(WAIT).expect_err("owner gone").to_string();
    assert!(
        e.contains(&format!("pid {dead}")) && e.contains("exited") && e.contains("session 9"),
        "{e}"
    );
    // Attaching to something that is not a ring fails clearly.
    let not_ring = TempRing::new("junk");
    std::fs::write(&not_ring.0, [0u8; 4096]).expect("write");
    let e = Subscriber::attach_to(config(16), &not_ring.0, dead, 9)
        .expect_err("not a ring")
        .to_string();
    assert!(
        e.contains(&format!("pid {dead}")) && e.contains("ring"),
        "{e}"
    );
}
