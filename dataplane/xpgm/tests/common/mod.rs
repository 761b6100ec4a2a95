//! A fake datapath for tests: bounded in-memory queues between a source and receivers,
//! with deterministic ODATA loss. Allocates only when built.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xpgm::Error;
use xpgm::core::source::Destination;
use xpgm::core::wire::{Nla, ty};
use xpgm::transport::Datapath;

const SLOT: usize = 1600;

/// A bounded FIFO of packets in preallocated slots.
#[derive(Debug)]
pub struct Queue {
    slots: Vec<[u8; SLOT]>,
    meta: Vec<(Nla, usize)>,
    head: usize,
    len: usize,
    /// Packets refused because the queue was full.
    pub overflow: u64,
}

impl Queue {
    /// A queue of `cap` packets.
    pub fn link(cap: usize) -> Link {
        Arc::new(Mutex::new(Queue {
            slots: vec![[0u8; SLOT]; cap],
            meta: vec![(Nla::default(), 0); cap],
            head: 0,
            len: 0,
            overflow: 0,
        }))
    }

    /// Appends a packet (dropped and counted when full or oversized).
    pub fn push(&mut self, from: Nla, bytes: &[u8]) {
        let cap = self.slots.len();
        if self.len == cap || bytes.len() > SLOT {
            self.overflow += 1;
            return;
        }
        let i = (self.head + self.len) % cap;
        self.slots[i][..bytes.len()].copy_from_slice(bytes);
        self.meta[i] = (from, bytes.len());
        self.len += 1;
    }

    /// Removes the oldest packet, passing it to `f`.
    pub fn pop(&mut self, f: &mut dyn FnMut(Nla, &[u8])) -> bool {
        if self.len == 0 {
            return false;
        }
        let i = self.head;
        let (from, n) = self.meta[i];
        f(from, &self.slots[i][..n]);
        self.head = (self.head + 1) % self.slots.len();
        self.len -= 1;
        true
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// A shared queue.
pub type Link = Arc<Mutex<Queue>>;

/// A datapath over [`Link`]s.
#[derive(Debug)]
pub struct FakeDp {
    /// Where our received packets come from.
    pub inbox: Link,
    /// Where multicast goes (`None`: discarded).
    pub group: Option<Link>,
    /// Where unicast goes (`None`: discarded).
    pub unicast: Option<Link>,
    /// Our address.
    pub local: Nla,
    /// Drop every n-th ODATA sent to the group (0: none).
    pub drop_odata_every: u64,
    odata: u64,
    /// ODATA dropped so far.
    pub dropped: Arc<AtomicU64>,
}

impl FakeDp {
    /// A datapath receiving from `inbox`.
    pub fn new(local: Nla, inbox: Link, group: Option<Link>, unicast: Option<Link>) -> FakeDp {
        FakeDp {
            inbox,
            group,
            unicast,
            local,
            drop_odata_every: 0,
            odata: 0,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }
}

fn lock(l: &Link) -> std::sync::MutexGuard<'_, Queue> {
    l.lock().unwrap_or_else(|e| e.into_inner())
}

impl Datapath for FakeDp {
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error> {
        let mut q = lock(&self.inbox);
        let mut n = 0;
        while n < max && q.pop(f) {
            n += 1;
        }
        Ok(n)
    }

    fn send(&mut self, dest: Destination, pgm: &[u8]) -> Result<(), Error> {
        match dest {
            Destination::Group => {
                if pgm.get(4) == Some(&ty::ODATA) {
                    self.odata += 1;
                    if self.drop_odata_every > 0 && self.odata.is_multiple_of(self.drop_odata_every)
                    {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                        return Ok(());
                    }
                }
                if let Some(g) = &self.group {
                    lock(g).push(self.local, pgm);
                }
            }
            Destination::Unicast(_) => {
                if let Some(u) = &self.unicast {
                    lock(u).push(self.local, pgm);
                }
            }
        }
        Ok(())
    }

    fn wait(
        &mut self,
        _doorbell: Option<BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        let t = timeout.unwrap_or(Duration::from_millis(1));
        std::thread::sleep(t.min(Duration::from_micros(200)));
        Ok(())
    }

    fn local_nla(&self) -> Nla {
        self.local
    }

    fn send_errors(&self) -> u64 {
        0
    }
}
