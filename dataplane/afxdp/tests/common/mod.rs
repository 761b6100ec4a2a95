//! A source and receivers on an in-memory lossy hub, driven in virtual time.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use core::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use xpgm_afxdp::frame::{DSCP_EF_TOS, Mac, TxHeaders};
use xpgm_afxdp::link::{MemHub, MemPort};
use xpgm_afxdp::worker::{ReceiverSession, Session, SessionCounters, SourceSession};
use xpgm_core::Instant;
use xpgm_core::config::{ReceiverConfig, SourceConfig};
use xpgm_core::receiver::Receiver;
use xpgm_core::source::Source;
use xpgm_core::wire::framing::Framing;
use xpgm_core::wire::{Gsi, Nla, Tsi};
use xpgm_ring::{Mode, Reader, RecvError, Ring, RingConfig, SendError, Writer};

pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 192, 0, 7);
pub const SRC: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);

pub struct Net {
    pub source: SourceSession<MemPort>,
    pub receivers: Vec<ReceiverSession<MemPort>>,
    pub publish: Writer,
    pub deliveries: Vec<Reader>,
    pub src_counters: Arc<SessionCounters>,
    pub rx_counters: Vec<Arc<SessionCounters>>,
    pub now: Instant,
    pub buf: Vec<u8>,
}

fn headers(ip: Ipv4Addr, k: u8, framing: Framing) -> TxHeaders {
    TxHeaders {
        src_mac: Mac([2, 0, 0, 0, 0, k]),
        src_ip: IpAddr::V4(ip),
        framing,
        ttl: 16,
        tos: DSCP_EF_TOS,
    }
}

impl Net {
    pub fn new(receivers: usize, loss_per_million: u32, framing: Framing, seed: u64) -> Net {
        let hub = MemHub::new(receivers + 1, 2048, 4096, seed);
        for k in 1..=receivers {
            hub.borrow_mut().set_loss(k, loss_per_million);
        }
        let ring_cfg = |mode| RingConfig {
            capacity: 4096,
            max_msg: 256,
            max_readers: 4,
            mode,
        };
        let publish_ring = Ring::new(ring_cfg(Mode::BackPressure)).unwrap();
        let publish_reader = publish_ring.reader().unwrap();
        let publish = publish_ring.writer().unwrap();
        let now = Instant::from_nanos(1_000_000);
        let scfg = SourceConfig {
            group: Nla::V4(GROUP),
            path_nla: Nla::V4(SRC),
            max_apdu: 256,
            txw_sqns: 1 << 14,
            txw_max_bytes: (1 << 14) * 1500,
            ..SourceConfig::default()
        };
        let tsi = Tsi {
            gsi: Gsi([1, 2, 3, 4, 5, 6]),
            sport: 40001,
        };
        let engine = Source::new(scfg, tsi, now).unwrap();
        let src_counters = Arc::new(SessionCounters::default());
        let source = SourceSession::new(
            MemPort::new(&hub, 0),
            engine,
            publish_reader,
            headers(SRC, 1, framing),
            IpAddr::V4(GROUP),
            src_counters.clone(),
        );
        let mut rxs = Vec::new();
        let mut deliveries = Vec::new();
        let mut rx_counters = Vec::new();
        for k in 1..=receivers {
            let ip = Ipv4Addr::new(10, 77, 0, 100 + k as u8);
            let rcfg = ReceiverConfig {
                group: Nla::V4(GROUP),
                max_apdu: 256,
                rxw_sqns: 1 << 14,
                rxw_max_bytes: (1 << 14) * 1500,
                ..ReceiverConfig::default()
            };
            let engine = Receiver::new(rcfg, Nla::V4(ip), seed + k as u64).unwrap();
            let ring = Ring::new(ring_cfg(Mode::Broadcast)).unwrap();
            deliveries.push(ring.reader().unwrap());
            let c = Arc::new(SessionCounters::default());
            rx_counters.push(c.clone());
            rxs.push(ReceiverSession::new(
                MemPort::new(&hub, k),
                engine,
                ring.writer().unwrap(),
                headers(ip, 10 + k as u8, framing),
                IpAddr::V4(GROUP),
                c,
            ));
        }
        Net {
            source,
            receivers: rxs,
            publish,
            deliveries,
            src_counters,
            rx_counters,
            now,
            buf: vec![0u8; 256],
        }
    }

    /// Publishes message `index` (first 8 bytes big-endian index, `size` bytes);
    /// false if the publish ring is full.
    pub fn publish(&mut self, index: u64, size: usize) -> bool {
        let mut msg = [0u8; 256];
        msg[..8].copy_from_slice(&index.to_be_bytes());
        for (i, b) in msg[8..size].iter_mut().enumerate() {
            *b = (index as u8).wrapping_add(i as u8);
        }
        match self.publish.try_send(&msg[..size]) {
            Ok(_) => true,
            Err(SendError::Full) => false,
            Err(e) => panic!("publish: {e:?}"),
        }
    }

    /// One round: every session polled once, then time advances by `step`.
    pub fn step(&mut self, step: Duration) {
        self.source.poll(self.now);
        for r in &mut self.receivers {
            r.poll(self.now);
        }
        self.now = Instant::from_nanos(self.now.as_nanos() + step.as_nanos() as u64);
    }

    /// Drains receiver `k`'s delivery ring, checking order and contents;
    /// `next` is the expected index.
    pub fn drain(&mut self, k: usize, next: &mut u64, size: usize) {
        loop {
            match self.deliveries[k].try_recv(&mut self.buf) {
                Ok(m) => {
                    assert_eq!(m.len, size);
                    let idx = u64::from_be_bytes(self.buf[..8].try_into().unwrap());
                    assert_eq!(idx, *next, "receiver {k}: out of order or gap");
                    for (i, b) in self.buf[8..size].iter().enumerate() {
                        assert_eq!(*b, (idx as u8).wrapping_add(i as u8), "payload");
                    }
                    *next += 1;
                }
                Err(RecvError::Empty) => return,
                Err(e) => panic!("delivery ring: {e:?}"),
            }
        }
    }

    pub fn naks_sent(&self, k: usize) -> u64 {
        self.rx_counters[k].naks_sent.load(Relaxed)
    }
}
