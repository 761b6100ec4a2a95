//! Data-plane workers: the protocol engines driven over a [`Link`].
//!
//! A worker is one thread, optionally pinned to a core, that owns its
//! sessions (each with its own link, i.e. AF_XDP socket, and engine) and
//! touches no lock on the packet path. It talks to applications through
//! `xpgm-ring` rings only:
//!
//! * a [`SourceSession`] reads APDUs from the **publish ring**
//!   (back-pressure mode; the worker is the registered, gating reader, so a
//!   publisher that outruns the network gets `SendError::Full`, never a
//!   silent drop) and hands them to `xpgm_core::source::Source::send`, which
//!   copies them into the engine's own transmit window. The engine's window,
//!   not the ring, is the repair window: RDATA is built from it. The ring is
//!   a hand-off queue: an APDU leaves it as soon as the engine accepts it
//!   (`Source::send` may refuse with `WouldBlock` under rate or window flow
//!   control; the worker then keeps that one APDU aside and retries, the
//!   ring fills behind it, and the publisher sees back-pressure).
//! * a [`ReceiverSession`] writes every delivered APDU to the **delivery
//!   ring** (broadcast mode: one writer, each local consumer with its own
//!   cursor).
//!
//! Per iteration a session: receives a batch of frames (validated by
//! [`crate::frame::parse`] before the engine sees them), feeds the engine,
//! fires due timers, drains `poll_transmit` straight into UMEM frames (the
//! engine writes the PGM packet at its offset in the frame, the headers are
//! put in front: no copy), then flushes the link. Counters are published to
//! a shared [`SessionCounters`] with relaxed atomic stores.

use core::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use xpgm_core::Instant;
use xpgm_core::receiver::{Event, Receiver};
use xpgm_core::source::{Destination, SendError, Source};
use xpgm_core::wire::framing::Framing;
use xpgm_ring::{Reader, RecvError, Writer};

use crate::frame::{self, Mac, NeighbourCache, TxHeaders, ip_of, nla_of};
use crate::link::{Link, TxOutcome};

/// Frames received per batch.
pub const RX_BATCH: u32 = 64;

/// APDUs a receiver session delivers per iteration, at most.
pub const DELIVER_BATCH: u32 = 256;

/// A monotonic clock giving the engines' virtual [`Instant`]s.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: std::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Self {
            start: std::time::Instant::now(),
        }
    }

    /// Nanoseconds since creation as an engine instant.
    pub fn now(&self) -> Instant {
        let ns = self.start.elapsed().as_nanos();
        Instant::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// Counters shared between a session (writer, relaxed stores) and the
/// application or CLI (readers).
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Source: ODATA sent.
    pub odata_sent: AtomicU64,
    /// Source: RDATA sent.
    pub rdata_sent: AtomicU64,
    /// Source: NCFs sent.
    pub ncf_sent: AtomicU64,
    /// Source: NAKs received (sequence numbers).
    pub naks_received: AtomicU64,
    /// Source: APDUs taken from the publish ring and accepted by the engine.
    pub accepted: AtomicU64,
    /// Source: everything accepted has been sent at least once (ODATA).
    pub drained: AtomicBool,
    /// Receiver: APDUs delivered to the delivery ring.
    pub delivered: AtomicU64,
    /// Receiver: APDUs the delivery ring refused (larger than its slots).
    pub delivery_errors: AtomicU64,
    /// Receiver: bytes delivered.
    pub delivered_bytes: AtomicU64,
    /// Receiver: sequence numbers reported unrecoverable.
    pub unrecoverable: AtomicU64,
    /// Receiver: NAK packets sent.
    pub naks_sent: AtomicU64,
    /// Receiver: duplicates dropped by the engine.
    pub duplicates: AtomicU64,
    /// Frames refused by validation (wrong address, checksum, not PGM).
    pub frames_refused: AtomicU64,
    /// PGM packets the engine refused to parse.
    pub packets_refused: AtomicU64,
    /// Unicast packets dropped because the destination MAC was unknown.
    pub no_neighbour: AtomicU64,
    /// Ask the source to finish: drain the ring, send OPT_FIN.
    pub close: AtomicBool,
}

/// What one [`Session::poll`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Progress {
    /// Frames received.
    pub rx: u32,
    /// Frames sent.
    pub tx: u32,
    /// Messages moved between a ring and the engine.
    pub msgs: u32,
}

impl Progress {
    /// Nothing happened.
    pub fn idle(&self) -> bool {
        self.rx == 0 && self.tx == 0 && self.msgs == 0
    }
}

/// A session a worker drives.
pub trait Session {
    /// One iteration at `now`.
    fn poll(&mut self, now: Instant) -> Progress;
    /// The engine's next deadline.
    fn deadline(&self) -> Option<Instant>;
    /// Block until traffic or `timeout` (sleeping mode).
    fn wait(&mut self, timeout: Duration);
}

fn drain_tx<L: Link + ?Sized>(
    link: &mut L,
    headers: &TxHeaders,
    ident: &mut u16,
    mut next: impl FnMut(&mut [u8]) -> Option<(usize, IpAddr, Mac)>,
) -> u32 {
    let off = headers.pgm_offset();
    let mut sent = 0;
    loop {
        let mut build = |buf: &mut [u8]| {
            let (pgm_len, dst_ip, dst_mac) = next(buf.get_mut(off..)?)?;
            *ident = ident.wrapping_add(1);
            headers.write(buf, dst_mac, dst_ip, pgm_len, *ident).ok()
        };
        match link.send(&mut build) {
            TxOutcome::Queued => sent += 1,
            TxOutcome::Cancelled | TxOutcome::NoBuffer => return sent,
        }
    }
}

/// A sending session: publish ring → `Source` → frames.
pub struct SourceSession<L: Link> {
    link: L,
    engine: Source,
    publish: Reader,
    headers: TxHeaders,
    group: IpAddr,
    group_mac: Mac,
    accept: [IpAddr; 1],
    framing: Framing,
    counters: Arc<SessionCounters>,
    /// An APDU taken from the ring that the engine refused (`WouldBlock`).
    held: Vec<u8>,
    held_len: Option<usize>,
    ident: u16,
    closed: bool,
}

impl<L: Link> core::fmt::Debug for SourceSession<L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SourceSession")
            .field("group", &self.group)
            .finish_non_exhaustive()
    }
}

impl<L: Link> SourceSession<L> {
    /// A source session. `engine`'s `max_tpdu` must fit a frame after
    /// `headers.pgm_offset()`; `publish` is the worker's reader of the
    /// publish ring; `max_apdu` sizes the held-APDU buffer.
    pub fn new(
        link: L,
        engine: Source,
        publish: Reader,
        headers: TxHeaders,
        group: IpAddr,
        counters: Arc<SessionCounters>,
    ) -> Self {
        let max_apdu = engine.config().max_apdu;
        Self {
            link,
            engine,
            publish,
            headers,
            group,
            group_mac: Mac::of_multicast(group),
            accept: [headers.src_ip],
            framing: headers.framing,
            counters,
            held: vec![0u8; max_apdu],
            held_len: None,
            ident: 0,
            closed: false,
        }
    }

    /// The engine (statistics).
    pub fn engine(&self) -> &Source {
        &self.engine
    }

    /// The link (statistics).
    pub fn link(&self) -> &L {
        &self.link
    }

    fn publish_counters(&self) {
        let s = self.engine.stats();
        let c = &self.counters;
        c.odata_sent.store(s.odata_sent, Relaxed);
        c.rdata_sent.store(s.rdata_sent, Relaxed);
        c.ncf_sent.store(s.ncf_sent, Relaxed);
        c.naks_received.store(s.naks_received, Relaxed);
        let drained =
            self.held_len.is_none() && self.engine.unsent() == 0 && self.publish.lag() == 0;
        c.drained.store(drained, Relaxed);
    }
}

impl<L: Link> Session for SourceSession<L> {
    fn poll(&mut self, now: Instant) -> Progress {
        let mut p = Progress::default();
        // 1. Upstream frames (NAK, SPMR) steered to us by the classifier.
        let (engine, counters, framing, accept) =
            (&mut self.engine, &self.counters, self.framing, &self.accept);
        p.rx = self.link.recv(
            RX_BATCH,
            &mut |bytes| match frame::parse(bytes, framing, accept) {
                Ok(f) => {
                    if engine.handle_packet(now, nla_of(f.src_ip), f.pgm).is_err() {
                        counters.packets_refused.fetch_add(1, Relaxed);
                    }
                }
                Err(_) => {
                    counters.frames_refused.fetch_add(1, Relaxed);
                }
            },
        );
        // 2. Timers.
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        // 3. Publish ring → engine, while the engine accepts.
        for _ in 0..RX_BATCH {
            let len = match self.held_len {
                Some(n) => n,
                None => match self.publish.try_recv(&mut self.held) {
                    Ok(m) => m.len,
                    Err(RecvError::Empty) => break,
                    Err(_) => break,
                },
            };
            match self.engine.send(now, self.held.get(..len).unwrap_or(&[])) {
                Ok(_) => {
                    self.held_len = None;
                    p.msgs += 1;
                    self.counters.accepted.fetch_add(1, Relaxed);
                }
                Err(SendError::WouldBlock) => {
                    self.held_len = Some(len);
                    break;
                }
                Err(_) => {
                    // Too large / closed: cannot be sent; counted as refused.
                    self.held_len = None;
                    self.counters.packets_refused.fetch_add(1, Relaxed);
                }
            }
        }
        if self.counters.close.load(Relaxed)
            && !self.closed
            && self.held_len.is_none()
            && self.publish.lag() == 0
        {
            self.engine.close(now);
            self.closed = true;
        }
        // 4. Engine → frames.
        let (engine, group, group_mac) = (&mut self.engine, self.group, self.group_mac);
        p.tx = drain_tx(&mut self.link, &self.headers, &mut self.ident, |pgm| {
            let t = engine.poll_transmit(now, pgm)?;
            match t.dest {
                Destination::Group => Some((t.len, group, group_mac)),
                // A source sends nothing unicast; drop it if it ever does.
                Destination::Unicast(_) => None,
            }
        });
        self.link.flush();
        self.publish_counters();
        p
    }

    fn deadline(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn wait(&mut self, timeout: Duration) {
        self.link.wait(timeout);
    }
}

/// A receiving session: frames → `Receiver` → delivery ring.
pub struct ReceiverSession<L: Link> {
    link: L,
    engine: Receiver,
    delivery: Writer,
    headers: TxHeaders,
    accept: [IpAddr; 1],
    framing: Framing,
    neighbours: NeighbourCache,
    counters: Arc<SessionCounters>,
    ident: u16,
}

impl<L: Link> core::fmt::Debug for ReceiverSession<L> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceiverSession")
            .field("group", &self.accept)
            .finish_non_exhaustive()
    }
}

impl<L: Link> ReceiverSession<L> {
    /// A receiver session for `group`; NAKs leave with `headers`.
    pub fn new(
        link: L,
        engine: Receiver,
        delivery: Writer,
        headers: TxHeaders,
        group: IpAddr,
        counters: Arc<SessionCounters>,
    ) -> Self {
        Self {
            link,
            engine,
            delivery,
            headers,
            accept: [group],
            framing: headers.framing,
            neighbours: NeighbourCache::default(),
            counters,
            ident: 0,
        }
    }

    /// The engine (statistics).
    pub fn engine(&self) -> &Receiver {
        &self.engine
    }

    /// Pre-seeds the neighbour cache (a source's MAC known in advance).
    pub fn learn_neighbour(&mut self, ip: IpAddr, mac: Mac) {
        self.neighbours.learn(ip, mac);
    }
}

impl<L: Link> Session for ReceiverSession<L> {
    fn poll(&mut self, now: Instant) -> Progress {
        let mut p = Progress::default();
        let (engine, counters, framing, accept, neighbours) = (
            &mut self.engine,
            &self.counters,
            self.framing,
            &self.accept,
            &mut self.neighbours,
        );
        p.rx = self.link.recv(
            RX_BATCH,
            &mut |bytes| match frame::parse(bytes, framing, accept) {
                Ok(f) => {
                    neighbours.learn(f.src_ip, f.src_mac);
                    if engine.handle_packet(now, nla_of(f.src_ip), f.pgm).is_err() {
                        counters.packets_refused.fetch_add(1, Relaxed);
                    }
                }
                Err(_) => {
                    counters.frames_refused.fetch_add(1, Relaxed);
                }
            },
        );
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeout(now);
        }
        // Deliver.
        let mut unrecoverable = 0u64;
        // At most DELIVER_BATCH APDUs per iteration: after a repair the
        // engine may release thousands at once, and the broadcast ring would
        // lap a consumer that is polling it on another core. The rest stays
        // in the engine's window for the next iteration.
        for _ in 0..DELIVER_BATCH {
            let Some(ev) = self.engine.poll_event() else {
                break;
            };
            match ev {
                Event::Data { data, .. } => {
                    // Broadcast ring: the writer never waits (readers that
                    // fall behind learn how many they missed).
                    match self.delivery.try_send(data) {
                        Ok(_) => {
                            p.msgs += 1;
                            self.counters.delivered.fetch_add(1, Relaxed);
                            self.counters
                                .delivered_bytes
                                .fetch_add(data.len() as u64, Relaxed);
                        }
                        // Larger than the ring's slots (max_apdu above max_msg).
                        Err(_) => {
                            self.counters.delivery_errors.fetch_add(1, Relaxed);
                        }
                    }
                }
                Event::Unrecoverable { count, .. } => unrecoverable += u64::from(count),
                _ => {}
            }
        }
        if unrecoverable > 0 {
            self.counters
                .unrecoverable
                .fetch_add(unrecoverable, Relaxed);
        }
        // NAKs / SPMRs, unicast to the source.
        let (engine, neighbours, counters) = (&mut self.engine, &self.neighbours, &self.counters);
        p.tx = drain_tx(&mut self.link, &self.headers, &mut self.ident, |pgm| {
            loop {
                let t = engine.poll_transmit(now, pgm)?;
                let Destination::Unicast(nla) = t.dest else {
                    continue;
                };
                let ip = ip_of(nla);
                match neighbours.lookup(ip) {
                    Some(mac) => return Some((t.len, ip, mac)),
                    None => match frame::kernel_neighbour(ip) {
                        Some(mac) => return Some((t.len, ip, mac)),
                        None => {
                            counters.no_neighbour.fetch_add(1, Relaxed);
                        }
                    },
                }
            }
        });
        self.link.flush();
        let s = self.engine.stats();
        self.counters.naks_sent.store(s.naks_sent, Relaxed);
        self.counters.duplicates.store(s.duplicates, Relaxed);
        p
    }

    fn deadline(&self) -> Option<Instant> {
        self.engine.poll_timeout()
    }

    fn wait(&mut self, timeout: Duration) {
        self.link.wait(timeout);
    }
}

/// How an idle worker waits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IdleMode {
    /// Spin (lowest latency; the core stays at 100 %).
    #[default]
    BusyPoll,
    /// After `spins` idle iterations, sleep in `poll(2)` on the first
    /// session's socket until traffic or the next engine deadline (at most
    /// 1 ms, so other sessions and the stop flag are still served).
    Sleep {
        /// Idle iterations before sleeping.
        spins: u32,
    },
}

/// Worker configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerConfig {
    /// Core to pin to (`None`: not pinned).
    pub core: Option<usize>,
    /// Idle behaviour.
    pub idle: IdleMode,
}

/// Runs `sessions` until `stop` is set. The loop itself allocates nothing.
pub fn run(
    sessions: &mut [Box<dyn Session + Send>],
    clock: &Clock,
    idle: IdleMode,
    stop: &AtomicBool,
) {
    let mut idle_iters = 0u32;
    while !stop.load(Relaxed) {
        let now = clock.now();
        let mut busy = false;
        for s in sessions.iter_mut() {
            busy |= !s.poll(now).idle();
        }
        if busy {
            idle_iters = 0;
            continue;
        }
        idle_iters = idle_iters.saturating_add(1);
        match idle {
            IdleMode::BusyPoll => core::hint::spin_loop(),
            IdleMode::Sleep { spins } if idle_iters > spins => {
                let next = sessions.iter().filter_map(|s| s.deadline()).min();
                let now = clock.now();
                let until = next.map_or(Duration::from_millis(1), |t| {
                    t.saturating_duration_since(now)
                });
                if let Some(s) = sessions.first_mut() {
                    s.wait(until.min(Duration::from_millis(1)));
                }
            }
            IdleMode::Sleep { .. } => core::hint::spin_loop(),
        }
    }
}

/// A running worker thread.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<bool>>,
}

impl WorkerHandle {
    /// Asks the worker to stop and waits for it; returns whether pinning
    /// succeeded (`true` when no core was asked for).
    pub fn stop(mut self) -> bool {
        self.stop.store(true, Relaxed);
        self.thread
            .take()
            .map(|t| t.join().unwrap_or(false))
            .unwrap_or(false)
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts a worker thread owning `sessions`, pinned to `config.core`.
pub fn spawn(
    sessions: Vec<Box<dyn Session + Send>>,
    config: WorkerConfig,
    clock: Clock,
) -> std::io::Result<WorkerHandle> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let thread = std::thread::Builder::new()
        .name("xpgm-worker".into())
        .spawn(move || {
            let mut sessions = sessions;
            let pinned = match config.core {
                Some(id) => core_affinity::set_for_current(core_affinity::CoreId { id }),
                None => true,
            };
            run(&mut sessions, &clock, config.idle, &stop2);
            pinned
        })?;
    Ok(WorkerHandle {
        stop,
        thread: Some(thread),
    })
}
