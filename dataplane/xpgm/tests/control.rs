//! The worker's watch of its transport's control process (AF_XDP: xpgmd), over a fake
//! datapath whose "control connection" the test breaks and restores: a loss is noticed
//! within a second, a control process back within the grace period is re-registered
//! with and what was missed meanwhile is repaired by NAK, and one that stays away ends
//! the session with an error naming the cause, after the application got everything
//! the engine held and `PeerGone { last }` for every source. The real thing (xpgmd
//! killed under a live stream) is `e2e_xdp.rs`, run by `scripts/test-xdp`.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use common::{FakeDp, Link, Queue};
use xpgm::core::config::SourceConfig;
use xpgm::core::source::{Destination, Source};
use xpgm::core::wire::{Gsi, Nla, Tsi};
use xpgm::core::{Instant, Sqn};
use xpgm::transport::Datapath;
use xpgm::{
    Delivery, Error, PeerAccount, Publisher, PublisherConfig, SessionConfig, Subscriber,
    SubscriberConfig,
};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 9, 9);
const SRC: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));
const RCV: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 2));
const TSI: Tsi = Tsi {
    gsi: Gsi([9, 8, 7, 6, 5, 4]),
    sport: 1234,
};

fn session() -> SessionConfig {
    SessionConfig::new("fake0", IpAddr::V4(GROUP))
}

fn msg(i: u64) -> [u8; 64] {
    let mut m = [0u8; 64];
    m[..8].copy_from_slice(&i.to_be_bytes());
    m
}

/// The fake control process, shared by the test and the datapath.
#[derive(Debug, Default)]
struct Control {
    /// The control process is gone (the datapath reports it once).
    down: bool,
    /// The loss was reported to the worker.
    reported: bool,
    /// Re-registration refused with this text.
    refuse: Option<String>,
    /// Re-registration attempts.
    attempts: u64,
}

/// [`FakeDp`] with a control process; while it is down, nothing is received (AF_XDP
/// after xpgmd detached its classifier).
#[derive(Debug)]
struct ControlledDp {
    inner: FakeDp,
    control: Arc<Mutex<Control>>,
}

fn lock(c: &Arc<Mutex<Control>>) -> std::sync::MutexGuard<'_, Control> {
    c.lock().unwrap_or_else(|e| e.into_inner())
}

impl Datapath for ControlledDp {
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error> {
        let cut = {
            let c = lock(&self.control);
            c.down || c.reported
        };
        if cut {
            // Frames arriving while unregistered are not steered to us: lost.
            let mut q = self.inner.inbox.lock().unwrap_or_else(|e| e.into_inner());
            while q.pop(&mut |_, _| {}) {}
            return Ok(0);
        }
        self.inner.recv_batch(max, f)
    }
    fn send(&mut self, dest: Destination, pgm: &[u8]) -> Result<(), Error> {
        self.inner.send(dest, pgm)
    }
    fn wait(&mut self, bell: Option<BorrowedFd<'_>>, t: Option<Duration>) -> Result<(), Error> {
        self.inner.wait(bell, t)
    }
    fn local_nla(&self) -> Nla {
        self.inner.local_nla()
    }
    fn send_errors(&self) -> u64 {
        0
    }
    fn has_control(&self) -> bool {
        true
    }
    fn control_lost(&mut self) -> Option<String> {
        let mut c = lock(&self.control);
        if c.down && !c.reported {
            c.reported = true;
            return Some("connection to fake xpgmd lost: closed".into());
        }
        None
    }
    fn reconnect_control(&mut self) -> Result<bool, Error> {
        let mut c = lock(&self.control);
        c.attempts += 1;
        if let Some(r) = &c.refuse {
            return Err(Error::Xdp(r.clone()));
        }
        if c.down {
            return Ok(false);
        }
        c.reported = false;
        Ok(true)
    }
}

/// A source engine on the test thread: sends `msgs` to `inbox` unless control is
/// down, answers the NAKs that arrive in `naks`.
struct Pump {
    src: Source,
    inbox: Link,
    naks: Link,
    start: StdInstant,
    buf: Vec<u8>,
}

impl Pump {
    fn new(inbox: Link, naks: Link) -> Pump {
        let scfg = SourceConfig {
            group: Nla::V4(GROUP),
            path_nla: SRC,
            ..SourceConfig::default()
        };
        Pump {
            src: Source::new(scfg, TSI, Instant::ZERO).expect("source"),
            inbox,
            naks,
            start: StdInstant::now(),
            buf: vec![0u8; 1500],
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    fn send(&mut self, i: u64) {
        let now = self.now();
        self.src.send(now, &msg(i)).expect("send");
        self.turn();
    }

    /// One turn: NAKs in, due timers, everything out.
    fn turn(&mut self) {
        let now = self.now();
        {
            let mut q = self.naks.lock().expect("lock");
            let src = &mut self.src;
            while q.pop(&mut |from, p| {
                let _ = src.handle_packet(now, from, p);
            }) {}
        }
        if self.src.poll_timeout().is_some_and(|t| t <= now) {
            self.src.handle_timeout(now);
        }
        while let Some(t) = self.src.poll_transmit(now, &mut self.buf) {
            self.inbox
                .lock()
                .expect("lock")
                .push(SRC, &self.buf[..t.len]);
        }
    }
}

fn subscriber(grace: Duration) -> (Subscriber, Arc<Mutex<Control>>, Pump) {
    let inbox = Queue::link(4096);
    let naks = Queue::link(4096);
    let control = Arc::new(Mutex::new(Control::default()));
    let dp = ControlledDp {
        inner: FakeDp::new(RCV, inbox.clone(), None, Some(naks.clone())),
        control: control.clone(),
    };
    let mut cfg = SubscriberConfig::new(session());
    cfg.control_grace = grace;
    cfg.receiver.nak_bo_ivl = Duration::from_millis(5);
    cfg.receiver.nak_rpt_ivl = Duration::from_millis(50);
    cfg.receiver.nak_rdata_ivl = Duration::from_millis(50);
    let sub = Subscriber::with_datapath(cfg, Box::new(dp)).expect("subscriber");
    (sub, control, Pump::new(inbox, naks))
}

/// Reads data until `n` messages, running the pump meanwhile; returns their indexes
/// and the unrecoverable count.
fn read(sub: &mut Subscriber, pump: &mut Pump, n: usize, limit: Duration) -> (Vec<u64>, u64) {
    let deadline = StdInstant::now() + limit;
    let mut got = Vec::new();
    let mut lost = 0;
    while got.len() < n {
        assert!(
            StdInstant::now() < deadline,
            "only {got:?} within {limit:?}"
        );
        pump.turn();
        match sub.recv(Some(Duration::from_millis(5))) {
            Ok(Delivery::Data { data, .. }) => {
                got.push(u64::from_be_bytes(data[..8].try_into().expect("8 bytes")));
            }
            Ok(Delivery::Unrecoverable { count, .. }) => lost += u64::from(count),
            Ok(_) | Err(Error::Timeout) => {}
            Err(e) => panic!("subscriber failed: {e}"),
        }
    }
    (got, lost)
}

fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = StdInstant::now();
    while !f() {
        assert!(t0.elapsed() < limit, "{what} not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
    t0.elapsed()
}

#[test]
fn a_control_process_back_within_the_grace_is_re_registered_and_the_gap_repaired() {
    let (mut sub, control, mut pump) = subscriber(Duration::from_secs(5));
    for i in 0..20 {
        pump.send(i);
    }
    let (got, lost) = read(&mut sub, &mut pump, 20, Duration::from_secs(10));
    assert_eq!(got, (0..20).collect::<Vec<_>>());
    assert_eq!(lost, 0);

    // xpgmd goes away: noticed within a second; messages 20..40 sent meanwhile are
    // not received.
    lock(&control).down = true;
    let noticed = wait_for(Duration::from_secs(1), "control loss", || {
        sub.stats().control_lost == 1
    });
    eprintln!("control loss noticed after {noticed:?}");
    for i in 20..40 {
        pump.send(i);
    }
    std::thread::sleep(Duration::from_millis(300));
    pump.turn();
    assert!(lock(&control).attempts > 0, "re-registration tried");
    assert_eq!(sub.stats().control_reconnects, 0);

    // Back: the session registers again; the next messages show the gap, NAKs
    // repair it from the source's window.
    lock(&control).down = false;
    wait_for(Duration::from_secs(2), "re-registration", || {
        sub.stats().control_reconnects == 1
    });
    for i in 40..60 {
        pump.send(i);
    }
    let (got, lost) = read(&mut sub, &mut pump, 40, Duration::from_secs(20));
    assert_eq!(got, (20..60).collect::<Vec<_>>(), "every message, in order");
    assert_eq!(lost, 0);
    let st = sub.stats();
    assert_eq!((st.control_lost, st.control_reconnects), (1, 1), "{st:?}");
    assert!(st.naks_sent > 0 && st.rdata_received >= 20, "{st:?}");
    let report = sub.close_report();
    assert!(report.error.is_none(), "{:?}", report.error);
    // Closing accounts for the source: everything through 59 was delivered.
    assert_eq!(
        report.peers,
        vec![PeerAccount {
            tsi: TSI,
            last: Some(Sqn(59))
        }]
    );
}

#[test]
fn a_control_process_gone_for_good_ends_the_session_with_its_cause_and_the_accounting() {
    let grace = Duration::from_millis(400);
    let (mut sub, control, mut pump) = subscriber(grace);
    for i in 0..10 {
        pump.send(i);
    }
    let (got, _) = read(&mut sub, &mut pump, 10, Duration::from_secs(10));
    assert_eq!(got, (0..10).collect::<Vec<_>>());
    let t0 = StdInstant::now();
    lock(&control).down = true;
    for i in 10..15 {
        pump.send(i);
    }
    // The application reads on: every delivery, then PeerGone naming how far the
    // source was accounted for, then the error.
    let mut gone = Vec::new();
    let err = loop {
        assert!(t0.elapsed() < Duration::from_secs(5), "no error in 5 s");
        match sub.recv(Some(Duration::from_millis(50))) {
            Ok(Delivery::PeerGone { tsi, last }) => gone.push((tsi, last)),
            Ok(Delivery::Data { .. }) => panic!("data while control is lost"),
            Ok(_) | Err(Error::Timeout) => {}
            Err(e) => break e,
        }
    };
    let took = t0.elapsed();
    let text = err.to_string();
    assert!(
        text.contains("connection to fake xpgmd lost: closed at ")
            && text.contains("UTC")
            && text.contains("not back within 400 ms"),
        "{text}"
    );
    assert!(took >= grace, "ended after {took:?}, before the grace");
    assert!(
        took < grace + Duration::from_secs(1),
        "ended after {took:?}"
    );
    assert_eq!(gone, vec![(TSI, Some(Sqn(9)))]);
    let st = sub.stats();
    assert_eq!((st.control_lost, st.control_reconnects), (1, 0), "{st:?}");
    let report = sub.close_report();
    assert!(
        report
            .error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("not back within 400 ms")),
        "{:?}",
        report.error
    );
    assert_eq!(
        report.peers,
        vec![PeerAccount {
            tsi: TSI,
            last: Some(Sqn(9))
        }]
    );
}

#[test]
fn a_refused_re_registration_ends_the_session_at_once_naming_both_causes() {
    let (mut sub, control, mut pump) = subscriber(Duration::from_secs(30));
    for i in 0..5 {
        pump.send(i);
    }
    read(&mut sub, &mut pump, 5, Duration::from_secs(10));
    {
        let mut c = lock(&control);
        c.down = true;
        c.refuse = Some("another session took the feed".into());
    }
    let t0 = StdInstant::now();
    let err = loop {
        assert!(t0.elapsed() < Duration::from_secs(3), "no error in 3 s");
        match sub.recv(Some(Duration::from_millis(50))) {
            Ok(_) | Err(Error::Timeout) => {}
            Err(e) => break e,
        }
    };
    let text = err.to_string();
    assert!(
        text.contains("connection to fake xpgmd lost")
            && text.contains("registering again failed")
            && text.contains("another session took the feed"),
        "{text}"
    );
}

#[test]
fn closing_a_subscriber_accounts_for_every_live_source() {
    // A transport without a control process (plain FakeDp): no watch, but close
    // still reports how far each source was accounted for.
    let inbox = Queue::link(1024);
    let naks = Queue::link(1024);
    let dp = FakeDp::new(RCV, inbox.clone(), None, Some(naks.clone()));
    let mut sub = Subscriber::with_datapath(SubscriberConfig::new(session()), Box::new(dp))
        .expect("subscriber");
    let mut pump = Pump::new(inbox, naks);
    for i in 0..7 {
        pump.send(i);
    }
    read(&mut sub, &mut pump, 7, Duration::from_secs(10));
    let report = sub.close_report();
    assert!(report.error.is_none());
    assert_eq!((report.stats.control_lost, report.stats.delivered), (0, 7));
    assert_eq!(
        report.peers,
        vec![PeerAccount {
            tsi: TSI,
            last: Some(Sqn(6))
        }]
    );
}

#[test]
fn a_publisher_whose_control_process_stays_away_fails_naming_it() {
    let control = Arc::new(Mutex::new(Control::default()));
    let group = Queue::link(4096);
    let dp = ControlledDp {
        inner: FakeDp::new(SRC, Queue::link(16), Some(group), None),
        control: control.clone(),
    };
    let mut cfg = PublisherConfig::new(session());
    cfg.control_grace = Duration::from_millis(300);
    let mut p = Publisher::with_datapath(cfg, Box::new(dp)).expect("publisher");
    p.send(&msg(0)).expect("send");
    lock(&control).down = true;
    let t0 = StdInstant::now();
    let err = loop {
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "publisher still alive"
        );
        if let Err(e) = p.try_send(&msg(1))
            && !matches!(e, Error::WouldBlock)
        {
            break e;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(t0.elapsed() >= Duration::from_millis(300));
    let text = err.to_string();
    assert!(
        text.contains("connection to fake xpgmd lost") && text.contains("not back within 300 ms"),
        "{text}"
    );
    assert_eq!(p.stats().control_lost, 1);
}
