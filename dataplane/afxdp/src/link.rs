//! The seam between workers and a frame transport: an AF_XDP socket
//! ([`crate::xsk::XskSocket`]) in production, an in-memory hub
//! ([`MemHub`]) in tests, so the worker logic (and its allocation
//! behaviour) is tested without root or a NIC.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

/// Outcome of [`Link::send`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TxOutcome {
    /// The frame was queued for transmission.
    Queued,
    /// The builder declined (wrote nothing); the buffer went back to the pool.
    Cancelled,
    /// No transmit buffer is free (all in flight); try after [`Link::flush`].
    NoBuffer,
}

/// A frame transport.
pub trait Link {
    /// Receives up to `max` frames, calling `f` with each (the bytes are valid
    /// only during the call); returns how many frames were received.
    fn recv(&mut self, max: u32, f: &mut dyn FnMut(&[u8])) -> u32;
    /// Builds one frame in a free transmit buffer: `f` gets the whole buffer
    /// and returns the frame length, or `None` to cancel.
    fn send(&mut self, f: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> TxOutcome;
    /// Commits queued transmissions, reclaims completed transmit buffers,
    /// refills the receive side and wakes the kernel where it asked for it.
    fn flush(&mut self);
    /// Blocks until a frame may have arrived or `timeout` passed (the
    /// sleeping mode of a worker).
    fn wait(&mut self, timeout: Duration);
}

/// A lossy in-memory broadcast segment for tests: every frame sent by one
/// port is delivered to every other port (like a switch flooding
/// multicast), dropped with probability `loss` per receiving port. Buffers
/// are pooled: after warm-up no allocation happens per frame.
#[derive(Debug)]
pub struct MemHub {
    frame_size: usize,
    pool: Vec<Box<[u8]>>,
    queues: Vec<VecDeque<(Box<[u8]>, usize)>>,
    loss_per_million: Vec<u32>,
    rng: u64,
    /// Frames dropped by the loss model.
    pub dropped: u64,
    /// Frames delivered.
    pub delivered: u64,
    queue_limit: usize,
}

impl MemHub {
    /// A hub with `ports` ports, frames of `frame_size` bytes, at most
    /// `queue_limit` frames queued per port (beyond: dropped, like a NIC ring).
    pub fn new(
        ports: usize,
        frame_size: usize,
        queue_limit: usize,
        seed: u64,
    ) -> Rc<RefCell<Self>> {
        let mut pool = Vec::with_capacity(ports * (queue_limit + 64));
        for _ in 0..ports * (queue_limit + 64) {
            pool.push(vec![0u8; frame_size].into_boxed_slice());
        }
        Rc::new(RefCell::new(MemHub {
            frame_size,
            pool,
            queues: (0..ports)
                .map(|_| VecDeque::with_capacity(queue_limit + 1))
                .collect(),
            loss_per_million: vec![0; ports],
            rng: seed | 1,
            dropped: 0,
            delivered: 0,
            queue_limit,
        }))
    }

    /// Sets the loss probability (parts per million) of frames delivered to `port`.
    pub fn set_loss(&mut self, port: usize, per_million: u32) {
        if let Some(l) = self.loss_per_million.get_mut(port) {
            *l = per_million;
        }
    }

    fn next_rand(&mut self) -> u32 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as u32 % 1_000_000
    }

    fn broadcast(&mut self, from: usize, frame: &[u8]) {
        for port in 0..self.queues.len() {
            if port == from {
                continue;
            }
            let loss = self.loss_per_million.get(port).copied().unwrap_or(0);
            if loss > 0 && self.next_rand() < loss {
                self.dropped += 1;
                continue;
            }
            let Some(q) = self.queues.get(port) else {
                continue;
            };
            if q.len() >= self.queue_limit {
                self.dropped += 1;
                continue;
            }
            let Some(mut buf) = self.pool.pop() else {
                self.dropped += 1;
                continue;
            };
            let n = frame.len().min(buf.len());
            if let (Some(dst), Some(src)) = (buf.get_mut(..n), frame.get(..n)) {
                dst.copy_from_slice(src);
            }
            if let Some(q) = self.queues.get_mut(port) {
                q.push_back((buf, n));
                self.delivered += 1;
            }
        }
    }
}

/// One port of a [`MemHub`].
#[derive(Debug)]
pub struct MemPort {
    hub: Rc<RefCell<MemHub>>,
    port: usize,
    scratch: Box<[u8]>,
    /// Frames sent through this port.
    pub sent: u64,
}

impl MemPort {
    /// Port `port` of `hub`.
    pub fn new(hub: &Rc<RefCell<MemHub>>, port: usize) -> Self {
        let size = hub.borrow().frame_size;
        Self {
            hub: hub.clone(),
            port,
            scratch: vec![0u8; size].into_boxed_slice(),
            sent: 0,
        }
    }
}

impl Link for MemPort {
    fn recv(&mut self, max: u32, f: &mut dyn FnMut(&[u8])) -> u32 {
        let mut n = 0;
        while n < max {
            let item = self
                .hub
                .borrow_mut()
                .queues
                .get_mut(self.port)
                .and_then(|q| q.pop_front());
            let Some((buf, len)) = item else { break };
            f(buf.get(..len).unwrap_or(&[]));
            self.hub.borrow_mut().pool.push(buf);
            n += 1;
        }
        n
    }

    fn send(&mut self, f: &mut dyn FnMut(&mut [u8]) -> Option<usize>) -> TxOutcome {
        match f(&mut self.scratch) {
            Some(len) => {
                let len = len.min(self.scratch.len());
                let frame = self.scratch.get(..len).unwrap_or(&[]);
                self.hub.borrow_mut().broadcast(self.port, frame);
                self.sent += 1;
                TxOutcome::Queued
            }
            None => TxOutcome::Cancelled,
        }
    }

    fn flush(&mut self) {}

    fn wait(&mut self, _timeout: Duration) {}
}
