//! Worker options: a busy-polling publisher/subscriber pair pinned to a core delivers
//! everything (repairs included) without ever blocking in the transport's wait, and a
//! core that does not exist is refused at creation with an error naming it.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{FakeDp, Queue};
use xpgm::core::source::Destination;
use xpgm::core::wire::Nla;
use xpgm::transport::Datapath;
use xpgm::{
    Delivery, Error, Idle, Publisher, PublisherConfig, SessionConfig, Subscriber, SubscriberConfig,
};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 9, 9, 10);
const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const RCV: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 2));
const SIZE: usize = 64;

fn session() -> SessionConfig {
    SessionConfig::new("fake0", IpAddr::V4(GROUP))
}

/// A [`FakeDp`] that counts the worker's calls to `wait`.
#[derive(Debug)]
struct Counting {
    inner: FakeDp,
    waits: Arc<AtomicU64>,
}

impl Datapath for Counting {
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error> {
        self.inner.recv_batch(max, f)
    }
    fn send(&mut self, dest: Destination, pgm: &[u8]) -> Result<(), Error> {
        self.inner.send(dest, pgm)
    }
    fn wait(&mut self, bell: Option<BorrowedFd<'_>>, t: Option<Duration>) -> Result<(), Error> {
        self.waits.fetch_add(1, Ordering::Relaxed);
        self.inner.wait(bell, t)
    }
    fn local_nla(&self) -> Nla {
        self.inner.local_nla()
    }
    fn send_errors(&self) -> u64 {
        0
    }
}

/// Cpus_allowed_list of every thread of this process named `name`.
fn affinity_of_threads(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = t.expect("task").path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        if let Some(l) = status.lines().find(|l| l.starts_with("Cpus_allowed_list:")) {
            out.push(l["Cpus_allowed_list:".len()..].trim().to_string());
        }
    }
    out
}

/// Sends `n` messages from a publisher to a subscriber over fake links that drop every
/// 7th ODATA (so NAKs and repairs flow too), both with `idle` and `core`. Returns the
/// indexes delivered, and the publisher's and subscriber's wait calls.
fn pair(idle: Idle, core: Option<usize>, n: u64) -> (Vec<u64>, u64, u64) {
    // One pair at a time: the affinity check looks at every worker thread by name.
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let wire = Queue::link(8192);
    let naks = Queue::link(1024);
    let mut pdp = FakeDp::new(SRC, naks.clone(), Some(wire.clone()), None);
    pdp.drop_odata_every = 7;
    let sdp = FakeDp::new(RCV, wire, None, Some(naks));
    let (pw, sw) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut scfg = SubscriberConfig::new(session());
    scfg.idle = idle;
    scfg.core = core;
    scfg.max_message = 512;
    let sub_dp = Counting {
        inner: sdp,
        waits: sw.clone(),
    };
    let mut sub = Subscriber::with_datapath(scfg, Box::new(sub_dp)).expect("subscriber");
    let mut pcfg = PublisherConfig::new(session());
    pcfg.idle = idle;
    pcfg.core = core;
    pcfg.max_message = 512;
    pcfg.source.txw_max_rte = 20_000_000;
    let pub_dp = Counting {
        inner: pdp,
        waits: pw.clone(),
    };
    let mut p = Publisher::with_datapath(pcfg, Box::new(pub_dp)).expect("publisher");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0u64;
    while (got.len() as u64) < n {
        assert!(
            Instant::now() < deadline,
            "only {} of {n} delivered",
            got.len()
        );
        while sent < n {
            let mut m = [0u8; SIZE];
            m[..8].copy_from_slice(&sent.to_be_bytes());
            match p.try_send(&m) {
                Ok(()) => sent += 1,
                Err(Error::WouldBlock) => break,
                Err(e) => panic!("send: {e}"),
            }
        }
        match sub.recv(Some(Duration::from_millis(5))) {
            Ok(Delivery::Data { data, .. }) => {
                got.push(u64::from_be_bytes(data[..8].try_into().expect("8 bytes")));
            }
            Ok(Delivery::NewPeer { .. }) => {}
            Ok(other) => panic!("unexpected {other:?}"),
            Err(Error::Timeout) => {}
            Err(e) => panic!("recv: {e}"),
        }
    }
    // Both workers have run turns (data went through): they pinned themselves first.
    if let Some(c) = core {
        let want = [c.to_string()];
        assert_eq!(affinity_of_threads("xpgm-source"), want);
        assert_eq!(affinity_of_threads("xpgm-receiver"), want);
    }
    let stats = p.finish(Duration::ZERO).expect("finish");
    assert!(stats.rdata_sent > 0, "repairs were exercised: {stats:?}");
    drop(sub);
    (got, pw.load(Ordering::Relaxed), sw.load(Ordering::Relaxed))
}

#[test]
fn a_busy_polling_pinned_pair_delivers_everything_without_sleeping() {
    let cores = xpgm::worker::available_cores();
    assert!(!cores.is_empty(), "CPU affinity unreadable");
    let core = if cores.contains(&0) { 0 } else { cores[0] };
    let n = 2000;
    let (got, pub_waits, sub_waits) = pair(Idle::BusyPoll, Some(core), n);
    assert_eq!(
        got,
        (0..n).collect::<Vec<_>>(),
        "every message, once, in order"
    );
    assert_eq!((pub_waits, sub_waits), (0, 0), "a busy worker never waits");
}

#[test]
fn a_sleeping_pair_waits_when_idle() {
    let n = 200;
    let (got, pub_waits, sub_waits) = pair(Idle::Sleep, None, n);
    assert_eq!(got, (0..n).collect::<Vec<_>>());
    assert!(pub_waits > 0 && sub_waits > 0, "{pub_waits} {sub_waits}");
}

#[test]
fn a_core_that_does_not_exist_is_refused_with_a_clear_error() {
    let mut pcfg = PublisherConfig::new(session());
    pcfg.core = Some(9999);
    let dp = FakeDp::new(SRC, Queue::link(4), None, None);
    let e = Publisher::with_datapath(pcfg, Box::new(dp)).expect_err("core 9999");
    let text = e.to_string();
    assert!(matches!(e, Error::Config(_)), "{text}");
    assert!(
        text.contains("core 9999") && text.contains("available cores"),
        "{text}"
    );
    let mut scfg = SubscriberConfig::new(session());
    scfg.core = Some(9999);
    scfg.idle = Idle::BusyPoll;
    let dp = FakeDp::new(RCV, Queue::link(4), None, None);
    let e = Subscriber::with_datapath(scfg, Box::new(dp)).expect_err("core 9999");
    let text = e.to_string();
    assert!(
        text.contains("core 9999") && text.contains("available cores"),
        "{text}"
    );
}
