//! The worker: one thread that owns a [`Datapath`] and one protocol engine, and talks to
//! the application through [`xpgm_ring`] rings.
//!
//! Each turn of the loop ([`SourceWorker::step`] / [`ReceiverWorker::step`]) follows the
//! engines' driving rule (docs/engine.md): take input (network packets, application
//! messages, due timers), drain `poll_transmit` to the network, (receiver) drain
//! `poll_event` into the delivery ring, then sleep until `poll_timeout`, a packet, or the
//! application's doorbell. After warm-up a turn allocates nothing (tests/alloc.rs).
//!
//! How the worker waits when a turn leaves nothing to do is its [`Idle`] policy:
//! [`Idle::Sleep`] (the default) blocks in [`Datapath::wait`]; [`Idle::BusyPoll`] never
//! blocks and runs the next turn at once, for the lowest latency on a dedicated core.
//! A worker given a core ([`pin_current`]) pins its thread to it before its first turn.
//!
//! Every turn the worker also publishes its counters: into [`Shared::counters`] for the
//! application handle and, when a [`StatsWriter`] is attached (publishers and
//! subscribers attach one), into the session's shared-memory stats file for
//! `xpgmctl top` and xpgmd's Prometheus endpoint (`docs/operations.md`). Both are
//! relaxed atomic stores: no system call, no lock.

use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xpgm_core::Instant;
use xpgm_core::receiver::Receiver;
use xpgm_core::source::{SendError as EngineSendError, Source};
use xpgm_ring::{RecvError, SendError as RingSendError};
use xpgm_stats::StatsWriter;
use xpgm_stats::layout::{rcv as st_rcv, src as st_src};

use crate::Error;
use crate::delivery;
use crate::transport::{Datapath, Overruns, RxCounters};

/// Packets read from the network per turn before the engine's output is drained.
pub const RECV_BATCH: usize = 64;
/// Application messages handed to the source per turn.
pub const INGEST_BATCH: usize = 256;
/// Longest sleep while the delivery ring is full (the application is reading).
const FULL_RING_POLL: Duration = Duration::from_millis(1);

/// Monotonic clock mapped to the engines' virtual [`Instant`]; or, for tests, a manual
/// clock that reads a shared nanosecond counter (deterministic runs).
#[derive(Clone, Debug)]
pub struct Clock {
    origin: std::time::Instant,
    manual: Option<Arc<AtomicU64>>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose zero is now.
    pub fn new() -> Self {
        Clock {
            origin: std::time::Instant::now(),
            manual: None,
        }
    }

    /// A clock that reads `nanos` (advanced by the caller).
    pub fn manual(nanos: Arc<AtomicU64>) -> Self {
        Clock {
            origin: std::time::Instant::now(),
            manual: Some(nanos),
        }
    }

    /// Nanoseconds since creation (or the manual counter), as an engine [`Instant`].
    pub fn now(&self) -> Instant {
        match &self.manual {
            Some(n) => Instant::from_nanos(n.load(Ordering::Relaxed)),
            None => Instant::from_nanos(
                u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            ),
        }
    }
}

/// Counters the worker publishes for the application (relaxed atomics, updated every turn).
#[derive(Debug, Default)]
pub struct Counters(pub [AtomicU64; COUNTERS]);

/// Number of counter slots.
pub const COUNTERS: usize = 32;

impl Counters {
    pub(crate) fn set(&self, i: usize, v: u64) {
        if let Some(c) = self.0.get(i) {
            c.store(v, Ordering::Relaxed);
        }
    }
    pub(crate) fn get(&self, i: usize) -> u64 {
        self.0.get(i).map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// Source counter slots.
pub(crate) mod src_ix {
    pub const ACCEPTED: usize = 0;
    pub const UNSENT: usize = 1;
    pub const ODATA: usize = 2;
    pub const ODATA_BYTES: usize = 3;
    pub const RDATA: usize = 4;
    pub const NCF: usize = 5;
    pub const NAKS: usize = 6;
    pub const SPM: usize = 7;
    pub const SPMR: usize = 8;
    pub const NAKS_OUTSIDE: usize = 9;
    pub const REPAIRS_DROPPED: usize = 10;
    pub const SEND_ERRORS: usize = 11;
    pub const IGNORED: usize = 12;
    pub const QUEUED: usize = 13;
    pub const NCF_BYTES: usize = 14;
    pub const RDATA_TPDU_BYTES: usize = 15;
    pub const NCFS_DROPPED: usize = 16;
    pub const NAKS_COALESCED: usize = 17;
    pub const REPAIRS_EXPIRED: usize = 18;
    pub const CONTROL_LOST: usize = 19;
    pub const CONTROL_RECONNECTS: usize = 20;
    /// Numbered by the engine, not yet transmitted (without the message held back).
    pub const ENGINE_UNSENT: usize = 21;
    /// First of the five frame counters ([`super::set_rx`]).
    pub const RX_FRAMES: usize = 22;
    pub const NAKS_HELD_OFF: usize = 27;
    /// First of the four overrun counters ([`super::set_overruns`]).
    pub const OVERRUN: usize = 28;
}

/// Receiver counter slots.
pub(crate) mod rcv_ix {
    pub const ODATA: usize = 0;
    pub const RDATA: usize = 1;
    pub const DUPLICATES: usize = 2;
    pub const NAKS: usize = 3;
    pub const NCF: usize = 4;
    pub const UNRECOVERABLE: usize = 5;
    pub const DELIVERED: usize = 6;
    pub const WINDOW_FULL: usize = 7;
    pub const BUFFER_DROPS: usize = 8;
    pub const IGNORED: usize = 9;
    pub const SPM: usize = 10;
    pub const SEND_ERRORS: usize = 11;
    pub const BYTES: usize = 12;
    pub const SPMR: usize = 13;
    pub const CONTROL_LOST: usize = 14;
    pub const CONTROL_RECONNECTS: usize = 15;
    pub const FILTERED: usize = 16;
    pub const PROBATION_PACKETS: usize = 17;
    pub const PEERS_EVICTED: usize = 18;
    pub const RETRIES_EXHAUSTED: usize = 19;
    pub const LOST_TO_TRAIL: usize = 20;
    pub const OVERRUNS: usize = 21;
    /// First of the four overrun counters ([`super::set_overruns`]).
    pub const OVERRUN: usize = 22;
    /// First of the five frame counters ([`super::set_rx`]).
    pub const RX_FRAMES: usize = 26;
    pub const RTT_SAMPLES: usize = 31;
}

// The frame counters' five slots (UDP checksum bad but accepted, then refused for
// checksum, header, not PGM, address) fit after each role's RX_FRAMES.
const _: () = assert!(rcv_ix::RX_FRAMES + 5 <= COUNTERS && src_ix::RX_FRAMES + 5 <= COUNTERS);
// Likewise the four overrun slots after each role's OVERRUN.
const _: () = assert!(rcv_ix::OVERRUN + 4 <= rcv_ix::RX_FRAMES && src_ix::OVERRUN + 4 <= COUNTERS);
// set_rx writes the stats file's six frame counters as consecutive indices.
const _: () = assert!(
    st_rcv::REJECTED_ADDRESS == st_rcv::UDP_CHECKSUM_BAD_ACCEPTED + 5
        && st_src::REJECTED_ADDRESS == st_src::UDP_CHECKSUM_BAD_ACCEPTED + 5
        && st_rcv::FRAMES_REJECTED == st_rcv::UDP_CHECKSUM_BAD_ACCEPTED + 1
        && st_src::FRAMES_REJECTED == st_src::UDP_CHECKSUM_BAD_ACCEPTED + 1
);

/// Publishes a transport's frame counters in `c` from slot `base` (application side)
/// and, with a stats file, at its indices from `udp_checksum_bad_accepted` on.
fn set_rx(c: &Counters, base: usize, st: Option<(&StatsWriter, usize)>, r: RxCounters) {
    let vals = [
        r.udp_checksum_bad_accepted,
        r.rejected_checksum,
        r.rejected_header,
        r.rejected_not_pgm,
        r.rejected_address,
    ];
    for (k, v) in vals.into_iter().enumerate() {
        c.set(base + k, v);
    }
    if let Some((st, first)) = st {
        // udp_checksum_bad_accepted, frames_rejected, then the four reasons.
        st.set(first, r.udp_checksum_bad_accepted);
        st.set(first + 1, r.rejected());
        for (k, v) in vals.into_iter().skip(1).enumerate() {
            st.set(first + 2 + k, v);
        }
    }
}

/// The frame counters as published by [`set_rx`] from slot `base`.
pub(crate) fn get_rx(c: &Counters, base: usize) -> RxCounters {
    RxCounters {
        udp_checksum_bad_accepted: c.get(base),
        rejected_checksum: c.get(base + 1),
        rejected_header: c.get(base + 2),
        rejected_not_pgm: c.get(base + 3),
        rejected_address: c.get(base + 4),
    }
}

/// Publishes a transport's overrun counters in `c` from slot `base`.
fn set_overruns(c: &Counters, base: usize, o: &Overruns) {
    let vals = [
        o.xdp_rx_dropped,
        o.xdp_rx_ring_full,
        o.xdp_fill_ring_empty,
        o.socket_drops,
    ];
    for (k, v) in vals.into_iter().enumerate() {
        c.set(base + k, v);
    }
}

/// The overrun counters [`set_overruns`] published from slot `base`.
pub(crate) fn get_overruns(c: &Counters, base: usize) -> Overruns {
    Overruns {
        xdp_rx_dropped: c.get(base),
        xdp_rx_ring_full: c.get(base + 1),
        xdp_fill_ring_empty: c.get(base + 2),
        socket_drops: c.get(base + 3),
    }
}

/// State shared by an application handle and its worker.
#[derive(Debug)]
pub struct Shared {
    /// Set by the handle: finish (source: close, linger, exit; receiver: exit).
    pub stop: AtomicBool,
    /// Source: how long to linger after close, in nanoseconds.
    pub linger_ns: AtomicU64,
    /// Source: extra time a finishing source may spend draining queued data, in
    /// nanoseconds, before it abandons the rest.
    pub grace_ns: AtomicU64,
    /// Set by the worker when it has exited.
    pub done: AtomicBool,
    /// The worker's fatal error, if any.
    pub error: Mutex<Option<String>>,
    /// Published counters.
    pub counters: Counters,
    /// Receiver: how far each source was accounted for when the engine was closed
    /// (`PeerGone { tsi, last }` of [`Receiver::close`]), written once by the worker
    /// as it exits; at most [`GONE_MAX`] entries.
    pub gone: Mutex<Vec<(xpgm_core::wire::Tsi, Option<xpgm_core::Sqn>)>>,
    /// Receiver: per A/B line, `[received, won, lost, up, failures]`
    /// ([`crate::LineCounters`]), for the lines the session has ([`Shared::line_count`]).
    pub lines: [[AtomicU64; 5]; xpgm_core::line::MAX_LINES],
    /// Receiver: number of lines (A/B feeds) of the session.
    pub line_count: AtomicU64,
    /// Worker is (about to be) asleep in `poll`; the handle must ring the bell.
    sleeping: AtomicBool,
    bell_tx: UnixDatagram,
}

impl Shared {
    /// A new shared block and the worker's end of the doorbell.
    pub fn new() -> Result<(std::sync::Arc<Shared>, UnixDatagram), Error> {
        let (tx, rx) = UnixDatagram::pair().map_err(|e| Error::io("socketpair", e))?;
        tx.set_nonblocking(true)
            .map_err(|e| Error::io("doorbell nonblocking", e))?;
        rx.set_nonblocking(true)
            .map_err(|e| Error::io("doorbell nonblocking", e))?;
        Ok((
            std::sync::Arc::new(Shared {
                stop: AtomicBool::new(false),
                linger_ns: AtomicU64::new(0),
                grace_ns: AtomicU64::new(10_000_000_000),
                done: AtomicBool::new(false),
                error: Mutex::new(None),
                counters: Counters::default(),
                gone: Mutex::new(Vec::new()),
                lines: Default::default(),
                line_count: AtomicU64::new(1),
                sleeping: AtomicBool::new(false),
                bell_tx: tx,
            }),
            rx,
        ))
    }

    /// Wakes the worker if it is asleep (call after publishing to a ring).
    pub fn ring(&self) {
        // Pairs with the worker's store of `sleeping` + fence + ring re-check: either the
        // worker sees our message, or we see it sleeping.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            let _ = self.bell_tx.send(&[1]);
        }
    }

    /// Always wakes the worker (stop requests).
    pub fn ring_always(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
        let _ = self.bell_tx.send(&[1]);
    }

    /// The worker's error, if it stopped because of one.
    pub fn failure(&self) -> Option<Error> {
        let guard = self.error.lock().ok()?;
        guard.as_ref().map(|e| Error::Worker(e.clone()))
    }

    fn fail(&self, e: &Error) {
        if let Ok(mut g) = self.error.lock() {
            *g = Some(e.to_string());
        }
    }
}

/// The stats file for a session (in `$XPGM_STATS_DIR`, default
/// `/dev/shm/xpgm-stats`); heap-backed when no file can be created, so a session never
/// fails for want of a stats directory.
pub fn stats_writer(
    session: &crate::transport::SessionConfig,
    role: xpgm_stats::Role,
    tsi: xpgm_core::wire::Tsi,
) -> StatsWriter {
    let [g0, g1, g2, g3, g4, g5] = tsi.gsi.0;
    let [p0, p1] = tsi.sport.to_be_bytes();
    let ifaces: Vec<&str> = session.ifaces().collect();
    let w = StatsWriter::open_default(&xpgm_stats::SessionInfo {
        role,
        transport: session.transport.name().into(),
        iface: ifaces.join("+"),
        group: session.group.to_string(),
        dport: session.dport,
        udp_encap: session.udp_encap,
        tsi: [g0, g1, g2, g3, g4, g5, p0, p1],
    });
    // A receiver on A/B lines publishes per-line counters (a source's lines carry the
    // same packets and have none of their own).
    if role == xpgm_stats::Role::Receiver {
        w.set_line_names(&ifaces);
    }
    w
}

/// How a worker waits when a turn leaves nothing to do (docs/library.md).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Idle {
    /// Sleep in the transport's wait (`poll(2)`) until a packet, the application's
    /// doorbell or the engine's next deadline. Costs a wake-up of latency; leaves the
    /// core to others. The default.
    #[default]
    Sleep,
    /// Never block: run the next turn at once (each turn re-polls the transport,
    /// which also commits transmissions and issues AF_XDP need_wakeup kicks), with
    /// `spin_loop` hints in between. The worker's core stays at 100 %: use it on a
    /// dedicated core (see the `core` option of the publisher and subscriber).
    BusyPoll,
}

impl Idle {
    /// The name used on the command line (`--idle sleep|busy`).
    pub fn name(self) -> &'static str {
        match self {
            Idle::Sleep => "sleep",
            Idle::BusyPoll => "busy",
        }
    }
}

impl core::str::FromStr for Idle {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sleep" => Ok(Idle::Sleep),
            "busy" => Ok(Idle::BusyPoll),
            other => Err(format!(
                "unknown idle policy '{other}' (expected 'sleep' or 'busy')"
            )),
        }
    }
}

/// The core ids the calling thread may run on (its CPU affinity mask), ascending.
/// Empty if the mask cannot be read.
pub fn available_cores() -> Vec<usize> {
    let mut ids: Vec<usize> = core_affinity::get_core_ids()
        .unwrap_or_default()
        .into_iter()
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// Checks that `core` is one the calling thread may run on, so that a worker can be
/// pinned to it; the error names the cores that are available.
pub fn check_core(core: usize) -> Result<(), Error> {
    let ids = available_cores();
    if ids.contains(&core) {
        return Ok(());
    }
    if ids.is_empty() {
        return Err(Error::Config(format!(
            "cannot pin the worker to core {core}: this thread's CPU affinity cannot be read"
        )));
    }
    let list = ids
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Err(Error::Config(format!(
        "core {core} does not exist or is not available to this process (available cores: \
         {list})"
    )))
}

/// Pins the calling thread to `core` (checked with [`check_core`] first).
pub fn pin_current(core: usize) -> Result<(), Error> {
    check_core(core)?;
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "cannot pin the worker to core {core}: sched_setaffinity failed"
        )))
    }
}

/// How often a worker polls its transport's control connection
/// ([`Datapath::control_lost`]): a lost xpgmd is noticed within this (plus a turn).
pub const CONTROL_CHECK: Duration = Duration::from_millis(100);
/// How often a worker whose control process is lost tries to re-establish it
/// ([`Datapath::reconnect_control`]).
pub const CONTROL_RETRY: Duration = Duration::from_millis(200);
/// Default grace period for a lost control process to come back before the session
/// ends with [`Error::ControlLost`] (`SubscriberConfig::control_grace`,
/// `PublisherConfig::control_grace`, `--control-grace-ms`).
pub const DEFAULT_CONTROL_GRACE: Duration = Duration::from_secs(5);
/// How often a worker reads its transport's overrun counters
/// ([`Datapath::overruns`]: a `getsockopt` for AF_XDP; for kernel sockets a load of
/// what a thread of the transport reads from `/proc` at this interval too), and once
/// more, exactly ([`Datapath::overruns_now`]), as it exits.
pub const OVERRUN_CHECK: Duration = Duration::from_millis(100);
/// Entries of [`Shared::gone`] kept (the receiver tracks at most `max_peers`).
pub const GONE_MAX: usize = 4096;

/// The worker's watch of its transport's control process: polls for a loss every
/// [`CONTROL_CHECK`]; after one, retries every [`CONTROL_RETRY`] until it is back
/// or `grace` has passed (then the session ends with [`Error::ControlLost`]). The
/// engine keeps running meanwhile: its timers (NAKs, SPMs) go on, so what was missed
/// is repaired once frames flow again, if the peer still has it.
#[derive(Debug)]
struct ControlWatch {
    enabled: bool,
    grace: Duration,
    next: Instant,
    /// Since when (engine time, wall clock) and why control is lost.
    lost: Option<(Instant, std::time::SystemTime, String)>,
    losses: u64,
    reconnects: u64,
}

impl ControlWatch {
    fn new() -> ControlWatch {
        ControlWatch {
            enabled: false,
            grace: DEFAULT_CONTROL_GRACE,
            next: Instant::from_nanos(0),
            lost: None,
            losses: 0,
            reconnects: 0,
        }
    }

    /// Runs the check or retry that is due at `now`; an error once the grace period
    /// has passed without control coming back, or the transport refused it for good.
    fn poll(&mut self, dp: &mut dyn Datapath, now: Instant) -> Result<(), Error> {
        if !self.enabled || now < self.next {
            return Ok(());
        }
        let Some((since, wall, cause)) = &self.lost else {
            self.next = now + CONTROL_CHECK;
            if let Some(cause) = dp.control_lost() {
                self.losses += 1;
                eprintln!(
                    "xpgm: {cause}; the session keeps running and registers again when xpgmd is \
                     back (grace {} ms)",
                    self.grace.as_millis()
                );
                self.lost = Some((now, std::time::SystemTime::now(), cause));
                self.next = now;
            }
            return Ok(());
        };
        let lost_ms = (now.as_nanos().saturating_sub(since.as_nanos())) / 1_000_000;
        let what = || {
            format!(
                "{cause} at {} (monotonic {:.3} s into the session)",
                utc_time_of_day(*wall),
                since.as_nanos() as f64 / 1e9
            )
        };
        match dp.reconnect_control() {
            Ok(true) => {
                self.reconnects += 1;
                eprintln!("xpgm: registered again with xpgmd after {lost_ms} ms without it");
                self.lost = None;
                self.next = now + CONTROL_CHECK;
                Ok(())
            }
            Ok(false) if u128::from(lost_ms) >= self.grace.as_millis() => {
                Err(Error::ControlLost(format!(
                    "{}; xpgmd not back within {} ms, session ended",
                    what(),
                    self.grace.as_millis()
                )))
            }
            Ok(false) => {
                self.next = now + CONTROL_RETRY;
                Ok(())
            }
            Err(e) => Err(Error::ControlLost(format!(
                "{}; registering again failed: {e}",
                what()
            ))),
        }
    }

    fn deadline(&self) -> Option<Instant> {
        self.enabled.then_some(self.next)
    }
}

/// `HH:MM:SS.mmm UTC` of `t` (for messages; no time-zone database needed).
fn utc_time_of_day(t: std::time::SystemTime) -> String {
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let day_ms = ms % 86_400_000;
    format!(
        "{:02}:{:02}:{:02}.{:03} UTC",
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000
    )
}

fn min_deadline(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// What a turn leaves to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// More work is ready now: run another turn without sleeping.
    Again,
    /// Nothing to do before this deadline (`None`: until a packet or the doorbell).
    Sleep(Option<Instant>),
    /// The worker is finished.
    Done,
}

fn record_gone(shared: &Shared, tsi: xpgm_core::wire::Tsi, last: Option<xpgm_core::Sqn>) {
    if let Ok(mut g) = shared.gone.lock()
        && g.len() < GONE_MAX
    {
        g.push((tsi, last));
    }
}

fn drain_bell(bell: &UnixDatagram) {
    let mut b = [0u8; 16];
    while bell.recv(&mut b).is_ok() {}
}

/// The source side: publish ring → [`Source`] → datapath.
pub struct SourceWorker {
    dp: Box<dyn Datapath>,
    source: Source,
    reader: xpgm_ring::Reader,
    clock: Clock,
    shared: std::sync::Arc<Shared>,
    msg: Box<[u8]>,
    pending: Option<usize>,
    tx_buf: Box<[u8]>,
    accepted: u64,
    linger_until: Option<Instant>,
    /// When the stop request was first seen (bounds how long finishing may take).
    stop_seen: Option<Instant>,
    /// The session's stats file, if attached.
    stats: Option<StatsWriter>,
    /// How to wait when idle.
    idle: Idle,
    /// Core to pin the worker thread to.
    core: Option<usize>,
    /// Watch of the transport's control process.
    control: ControlWatch,
    /// Control lost for good: the session closes (what is numbered is transmitted,
    /// then FIN) and the worker fails with this error once the first FIN SPM is out,
    /// at the latest at the instant given ([`CONTROL_LOST_DRAIN`] after the loss).
    ending: Option<(Error, Instant)>,
    /// SPMs sent when FIN started while ending (the next one is a FIN SPM).
    fin_mark: Option<u64>,
    /// The transport's overrun counters (NAKs and SPMRs the kernel dropped before we
    /// read them), read every [`OVERRUN_CHECK`] and exactly as the worker exits.
    overruns: Overruns,
    overrun_next: Instant,
}

/// Longest a source whose control process is lost for good keeps transmitting what
/// it has numbered (and its FIN) before its worker fails.
pub const CONTROL_LOST_DRAIN: Duration = Duration::from_secs(2);

impl core::fmt::Debug for SourceWorker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SourceWorker")
            .field("accepted", &self.accepted)
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl SourceWorker {
    /// A worker for `source`, reading application messages from `reader`.
    pub fn new(
        dp: Box<dyn Datapath>,
        source: Source,
        reader: xpgm_ring::Reader,
        clock: Clock,
        shared: std::sync::Arc<Shared>,
    ) -> Self {
        let max_msg = reader.ring().config().max_msg;
        let max_tpdu = source.config().max_tpdu;
        let mut control = ControlWatch::new();
        control.enabled = dp.has_control();
        SourceWorker {
            dp,
            source,
            reader,
            clock,
            shared,
            msg: vec![0u8; max_msg].into_boxed_slice(),
            pending: None,
            tx_buf: vec![0u8; max_tpdu].into_boxed_slice(),
            accepted: 0,
            linger_until: None,
            stop_seen: None,
            stats: None,
            idle: Idle::Sleep,
            core: None,
            control,
            ending: None,
            fin_mark: None,
            overruns: Overruns::default(),
            overrun_next: Instant::from_nanos(0),
        }
    }

    /// Attaches the session's stats file; the worker updates it every turn.
    pub fn with_stats(mut self, stats: StatsWriter) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Sets how the worker waits when idle (default [`Idle::Sleep`]).
    pub fn with_idle(mut self, idle: Idle) -> Self {
        self.idle = idle;
        self
    }

    /// Pins the worker thread to `core` when it starts (`None`: not pinned). A core
    /// that cannot be pinned to is a fatal worker error.
    pub fn with_core(mut self, core: Option<usize>) -> Self {
        self.core = core;
        self
    }

    /// How long a lost control process (xpgmd) may stay away before the session ends
    /// with [`Error::ControlLost`] (default [`DEFAULT_CONTROL_GRACE`]). Transports
    /// without one ignore it.
    pub fn with_control_grace(mut self, grace: Duration) -> Self {
        self.control.grace = grace;
        self
    }

    /// The engine (for tests and stats).
    pub fn source(&self) -> &Source {
        &self.source
    }

    fn flush(&mut self, now: Instant) -> Result<(), Error> {
        while let Some(t) = self.source.poll_transmit(now, &mut self.tx_buf) {
            let pkt = self.tx_buf.get(..t.len).unwrap_or_default();
            self.dp.send_lines(t.lines, t.dest, pkt)?;
        }
        Ok(())
    }

    fn publish(&self) {
        use src_ix::*;
        let s = self.source.stats();
        let c = &self.shared.counters;
        c.set(ACCEPTED, self.accepted);
        c.set(
            UNSENT,
            self.source.unsent() as u64 + u64::from(self.pending.is_some()),
        );
        c.set(ODATA, s.odata_sent);
        c.set(ODATA_BYTES, s.odata_bytes);
        c.set(RDATA, s.rdata_sent);
        c.set(NCF, s.ncf_sent);
        c.set(NAKS, s.naks_received);
        c.set(SPM, s.spm_sent);
        c.set(SPMR, s.spmr_received);
        c.set(NAKS_OUTSIDE, s.naks_outside_window);
        c.set(REPAIRS_DROPPED, s.repairs_dropped);
        c.set(SEND_ERRORS, self.dp.send_errors());
        c.set(IGNORED, s.packets_ignored);
        c.set(QUEUED, self.reader.lag());
        c.set(NCF_BYTES, s.ncf_bytes);
        c.set(RDATA_TPDU_BYTES, s.rdata_tpdu_bytes);
        c.set(NCFS_DROPPED, s.ncfs_dropped);
        c.set(NAKS_COALESCED, s.naks_coalesced);
        c.set(REPAIRS_EXPIRED, s.repairs_expired);
        c.set(CONTROL_LOST, self.control.losses);
        c.set(CONTROL_RECONNECTS, self.control.reconnects);
        c.set(ENGINE_UNSENT, self.source.unsent() as u64);
        c.set(NAKS_HELD_OFF, s.naks_held_off);
        set_overruns(c, OVERRUN, &self.overruns);
        set_rx(
            c,
            RX_FRAMES,
            self.stats
                .as_ref()
                .map(|st| (st, st_src::UDP_CHECKSUM_BAD_ACCEPTED)),
            self.dp.rx_counters(),
        );
        if let Some(st) = &self.stats {
            st.set(st_src::ODATA_PACKETS, s.odata_sent);
            st.set(st_src::ODATA_BYTES, s.odata_bytes);
            st.set(st_src::RDATA_PACKETS, s.rdata_sent);
            st.set(st_src::RDATA_BYTES, s.rdata_bytes);
            st.set(st_src::NAKS_RECEIVED, s.naks_received);
            st.set(st_src::NAKS_OUTSIDE_WINDOW, s.naks_outside_window);
            st.set(st_src::NCF_SENT, s.ncf_sent);
            st.set(st_src::SPM_SENT, s.spm_sent);
            st.set(st_src::SPMR_RECEIVED, s.spmr_received);
            st.set(st_src::REPAIRS_DROPPED, s.repairs_dropped);
            st.set(st_src::TXW_TRAIL, u64::from(self.source.trail().0));
            st.set(st_src::TXW_LEAD, u64::from(self.source.lead().0));
            st.set(st_src::MESSAGES_ACCEPTED, self.accepted);
            st.set(st_src::UNSENT, c.get(UNSENT));
            st.set(st_src::QUEUED, c.get(QUEUED));
            st.set(st_src::SEND_ERRORS, c.get(SEND_ERRORS));
            st.set(st_src::PACKETS_IGNORED, s.packets_ignored);
            st.set(st_src::NCF_BYTES, s.ncf_bytes);
            st.set(st_src::NCFS_DROPPED, s.ncfs_dropped);
            st.set(st_src::RDATA_TPDU_BYTES, s.rdata_tpdu_bytes);
            st.set(st_src::NAKS_COALESCED, s.naks_coalesced);
            st.set(st_src::REPAIRS_EXPIRED, s.repairs_expired);
            st.set(st_src::CONTROL_LOST, self.control.losses);
            st.set(st_src::CONTROL_RECONNECTS, self.control.reconnects);
            st.set(st_src::NAKS_HELD_OFF, s.naks_held_off);
            st.set(
                st_src::REPAIRS_PENDING,
                self.source.repairs_pending() as u64,
            );
        }
    }

    /// One turn of the loop (never sleeps).
    pub fn step(&mut self) -> Result<Step, Error> {
        let now = self.clock.now();
        // 1. Network input (NAK, SPMR).
        let Self { dp, source, .. } = self;
        let got = dp.recv_lines(RECV_BATCH, &mut |line, from, bytes| {
            let _ = source.handle_packet_on(now, line, from, bytes);
        })?;
        if now >= self.overrun_next {
            self.overruns = self.dp.overruns();
            self.overrun_next = now + OVERRUN_CHECK;
        }
        // 1b. The control process: a loss not repaired within the grace period ends the
        // session; what is numbered is still transmitted, then FIN, so receivers learn
        // the end and the source's last sequence.
        if self.ending.is_none()
            && let Err(e) = self.control.poll(&mut *self.dp, now)
        {
            self.source.close(now);
            self.ending = Some((e, now + CONTROL_LOST_DRAIN));
        }
        // 2. Timers.
        if self.source.poll_timeout().is_some_and(|t| t <= now) {
            self.source.handle_timeout(now);
        }
        // 3. Application messages, while the engine accepts them (not once ending: the
        // rest stays queued, counted in `unsent`).
        let mut blocked = false;
        for _ in 0..if self.ending.is_some() {
            0
        } else {
            INGEST_BATCH
        } {
            if self.pending.is_none() {
                match self.reader.try_recv(&mut self.msg) {
                    Ok(r) => self.pending = Some(r.len),
                    Err(RecvError::Empty) => break,
                    Err(e) => return Err(Error::Worker(format!("publish ring: {e}"))),
                }
            }
            let Some(len) = self.pending else { break };
            let msg = self.msg.get(..len).unwrap_or_default();
            match self.source.send(now, msg) {
                Ok(_) => {
                    self.pending = None;
                    self.accepted += 1;
                }
                Err(EngineSendError::WouldBlock) => {
                    blocked = true;
                    break;
                }
                // The ring's max_msg equals max_apdu, so TooLarge cannot happen; Closed
                // cannot either (we close only once the ring is drained).
                Err(EngineSendError::TooLarge | EngineSendError::Closed) => {
                    self.pending = None;
                }
            }
        }
        // 4. Output.
        self.flush(now)?;
        if let Some(until) = self.ending.as_ref().map(|(_, u)| *u) {
            let spm = self.source.stats().spm_sent;
            let fin_out = self.fin_mark.is_some_and(|m| spm > m);
            if self.source.fin_started() && self.fin_mark.is_none() {
                self.fin_mark = Some(spm);
            }
            self.publish();
            if fin_out || now >= until {
                return Err(self.ending.take().map_or(Error::Closed, |(e, _)| e));
            }
            return Ok(Step::Sleep(min_deadline(
                self.source.poll_timeout(),
                Some(until),
            )));
        }
        // 5. Close and linger once the application has finished and all is handed over.
        let stop = self.shared.stop.load(Ordering::Acquire);
        if stop && self.stop_seen.is_none() {
            self.stop_seen = Some(now);
        }
        if stop && self.pending.is_none() && self.reader.lag() == 0 && self.linger_until.is_none() {
            self.source.close(now);
            self.flush(now)?;
            let linger = self.shared.linger_ns.load(Ordering::Relaxed);
            self.linger_until = Some(Instant::from_nanos(now.as_nanos().saturating_add(linger)));
        }
        self.publish();
        if let Some(until) = self.linger_until
            && now >= until
            && self.source.unsent() == 0
        {
            return Ok(Step::Done);
        }
        // A session that cannot drain (stalled rate, window full) still ends: after the
        // linger plus `grace_ns` from the stop request, what is left unsent is abandoned
        // (reported in the `unsent` counter).
        let give_up = self.stop_seen.map(|t| {
            let linger = self.shared.linger_ns.load(Ordering::Relaxed);
            Instant::from_nanos(
                t.as_nanos()
                    .saturating_add(linger)
                    .saturating_add(self.shared.grace_ns.load(Ordering::Relaxed)),
            )
        });
        if give_up.is_some_and(|g| now >= g) {
            return Ok(Step::Done);
        }
        if got == RECV_BATCH || (!blocked && self.reader.lag() > 0) {
            return Ok(Step::Again);
        }
        let mut deadline = self.source.poll_timeout();
        for t in [self.linger_until, give_up, self.control.deadline()]
            .into_iter()
            .flatten()
        {
            deadline = Some(deadline.map_or(t, |d| d.min(t)));
        }
        Ok(Step::Sleep(deadline))
    }

    /// Runs until closed and lingered, or a fatal error (recorded in `shared`).
    pub fn run(mut self, bell: UnixDatagram) {
        let pinned = self.core.map_or(Ok(()), pin_current);
        let r = pinned.and_then(|()| self.run_inner(&bell));
        // Commit transmissions a batching transport still holds (AF_XDP commits its
        // TX ring when it next receives or waits): the last packets, FIN among them.
        self.dp.commit();
        // The final, exact overrun reading, in the counters before `done`.
        self.overruns = self.dp.overruns_now();
        self.publish();
        if let Err(e) = r {
            self.shared.fail(&e);
        }
        self.shared.done.store(true, Ordering::Release);
    }

    fn run_inner(&mut self, bell: &UnixDatagram) -> Result<(), Error> {
        loop {
            match self.step()? {
                Step::Again => {}
                Step::Done => return Ok(()),
                // Busy: the next turn re-polls the transport and the ring and handles
                // due timers, stop and linger; `sleeping` stays false, so the
                // application never rings the doorbell.
                Step::Sleep(_) if self.idle == Idle::BusyPoll => std::hint::spin_loop(),
                Step::Sleep(deadline) => {
                    self.shared.sleeping.store(true, Ordering::Relaxed);
                    fence(Ordering::SeqCst);
                    let stop = self.shared.stop.load(Ordering::Relaxed);
                    let work = self.pending.is_none()
                        && (self.reader.lag() > 0 || (stop && self.linger_until.is_none()));
                    if !work {
                        let timeout =
                            deadline.map(|d| d.saturating_duration_since(self.clock.now()));
                        self.dp.wait(Some(bell.as_fd()), timeout)?;
                    }
                    self.shared.sleeping.store(false, Ordering::Relaxed);
                    drain_bell(bell);
                }
            }
        }
    }
}

/// The receiver side: datapath → [`Receiver`] → delivery ring.
pub struct ReceiverWorker {
    dp: Box<dyn Datapath>,
    receiver: Receiver,
    writer: xpgm_ring::Writer,
    clock: Clock,
    shared: std::sync::Arc<Shared>,
    tx_buf: Box<[u8]>,
    ev_buf: Box<[u8]>,
    pending: Option<usize>,
    unrecoverable: u64,
    /// Receive-window edges of the source last heard (for the stats file).
    window: RxWindow,
    /// The session's stats file, if attached.
    stats: Option<StatsWriter>,
    /// How to wait when idle.
    idle: Idle,
    /// Core to pin the worker thread to.
    core: Option<usize>,
    /// Watch of the transport's control process.
    control: ControlWatch,
    /// The session is ending with this error (control lost for good): what the engine
    /// holds is delivered, then its peers' accounting (`PeerGone`), then the error.
    ending: Option<Error>,
    /// [`Receiver::close`] was called.
    closed: bool,
    /// The transport's overrun counters, last read.
    overruns: Overruns,
    /// When they are read next.
    overrun_next: Instant,
    /// The final, exact reading was taken.
    overruns_final: bool,
    /// Sequences that arrived as RDATA, so their delivery is marked repaired.
    repaired: RepairSet,
}

/// Which sequence numbers arrived as RDATA (repairs), so that the delivery of a
/// message can say it was repaired ([`crate::Subscriber::last_repaired`]): 65,536 bits
/// keyed by the low 16 bits of the sequence, set when an RDATA arrives and cleared
/// when that sequence is delivered. Exact while fewer than 65,536 sequences separate a
/// repair from its delivery, and for one source at a time (sequences of several
/// sources share the bits).
#[derive(Debug)]
struct RepairSet(Box<[u64; 1024]>);

impl RepairSet {
    fn new() -> RepairSet {
        RepairSet(Box::new([0; 1024]))
    }

    fn slot(sqn: u32) -> (usize, u64) {
        let k = (sqn & 0xffff) as usize;
        (k / 64, 1u64 << (k % 64))
    }

    fn mark(&mut self, sqn: u32) {
        let (w, bit) = RepairSet::slot(sqn);
        if let Some(x) = self.0.get_mut(w) {
            *x |= bit;
        }
    }

    fn take(&mut self, sqn: u32) -> bool {
        let (w, bit) = RepairSet::slot(sqn);
        self.0.get_mut(w).is_some_and(|x| {
            let was = *x & bit != 0;
            *x &= !bit;
            was
        })
    }
}

/// The sequence number of an RDATA packet (PGM type 0x05 in byte 4, the sequence
/// number in bytes 16..20); `None` for anything else.
fn rdata_sqn(pgm: &[u8]) -> Option<u32> {
    if pgm.get(4).map(|t| t & 0x0f) != Some(0x05) {
        return None;
    }
    let b: [u8; 4] = pgm.get(16..20)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// RXW_TRAIL / RXW_LEAD followed from the packets the engine parsed, for the stats
/// file: the trail is the source's advertised trailing edge (SPM_TRAIL, or the data
/// packet's trail field), the lead the highest sequence number heard (data sequence
/// number, or SPM_LEAD). Tracked for one source, the one heard last: a receiver session
/// usually follows one source; with several, the values follow whichever spoke last.
#[derive(Clone, Copy, Debug, Default)]
struct RxWindow {
    /// GSI and source port of the source followed.
    tsi: Option<([u8; 6], u16)>,
    trail: u32,
    lead: u32,
}

impl RxWindow {
    // The receive-window edges of RFC 3208 (section 6, receiver procedures), as far
    // as headers show them; the engine's own window is not exposed by xpgm-core.
    fn observe(&mut self, dport: u16, bytes: &[u8]) {
        let Ok(p) = xpgm_core::wire::Packet::new_checked(bytes) else {
            return;
        };
        if p.dst_port() != dport {
            return;
        }
        let word = |b: &[u8], at: usize| -> Option<u32> {
            let w: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
            Some(u32::from_be_bytes(w))
        };
        let body = p.body();
        let (lead, trail) = match p.packet_type() {
            xpgm_core::wire::ty::ODATA | xpgm_core::wire::ty::RDATA => {
                (word(body, 0), word(body, 4))
            }
            xpgm_core::wire::ty::SPM => (word(body, 8), word(body, 4)),
            _ => return,
        };
        let (Some(lead), Some(trail)) = (lead, trail) else {
            return;
        };
        let tsi = (p.gsi().0, p.src_port());
        if self.tsi != Some(tsi) {
            *self = RxWindow {
                tsi: Some(tsi),
                trail,
                lead,
            };
            return;
        }
        if xpgm_core::Sqn(trail).gt(xpgm_core::Sqn(self.trail)) {
            self.trail = trail;
        }
        if xpgm_core::Sqn(lead).gt(xpgm_core::Sqn(self.lead)) {
            self.lead = lead;
        }
    }
}

impl core::fmt::Debug for ReceiverWorker {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ReceiverWorker")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

impl ReceiverWorker {
    /// A worker for `receiver`, delivering into `writer`.
    pub fn new(
        dp: Box<dyn Datapath>,
        receiver: Receiver,
        writer: xpgm_ring::Writer,
        clock: Clock,
        shared: std::sync::Arc<Shared>,
    ) -> Self {
        let max_msg = writer.ring().config().max_msg;
        let max_tpdu = receiver.config().max_tpdu;
        let mut control = ControlWatch::new();
        control.enabled = dp.has_control();
        ReceiverWorker {
            dp,
            receiver,
            writer,
            clock,
            shared,
            tx_buf: vec![0u8; max_tpdu].into_boxed_slice(),
            ev_buf: vec![0u8; max_msg].into_boxed_slice(),
            pending: None,
            unrecoverable: 0,
            window: RxWindow::default(),
            stats: None,
            idle: Idle::Sleep,
            core: None,
            control,
            ending: None,
            closed: false,
            overruns: Overruns::default(),
            overrun_next: Instant::from_nanos(0),
            overruns_final: false,
            repaired: RepairSet::new(),
        }
    }

    /// How long a lost control process (xpgmd) may stay away before the session ends
    /// with [`Error::ControlLost`] (default [`DEFAULT_CONTROL_GRACE`]). Transports
    /// without one ignore it.
    pub fn with_control_grace(mut self, grace: Duration) -> Self {
        self.control.grace = grace;
        self
    }

    /// Attaches the session's stats file; the worker updates it every turn.
    pub fn with_stats(mut self, stats: StatsWriter) -> Self {
        self.stats = Some(stats);
        self
    }

    /// Sets how the worker waits when idle (default [`Idle::Sleep`]).
    pub fn with_idle(mut self, idle: Idle) -> Self {
        self.idle = idle;
        self
    }

    /// Pins the worker thread to `core` when it starts (`None`: not pinned). A core
    /// that cannot be pinned to is a fatal worker error.
    pub fn with_core(mut self, core: Option<usize>) -> Self {
        self.core = core;
        self
    }

    /// The engine (for tests and stats).
    pub fn receiver(&self) -> &Receiver {
        &self.receiver
    }

    fn publish(&self) {
        use rcv_ix::*;
        let s = self.receiver.stats();
        let c = &self.shared.counters;
        c.set(ODATA, s.odata_received);
        c.set(RDATA, s.rdata_received);
        c.set(DUPLICATES, s.duplicates);
        c.set(NAKS, s.naks_sent);
        c.set(NCF, s.ncf_received);
        c.set(UNRECOVERABLE, self.unrecoverable);
        c.set(DELIVERED, s.delivered);
        c.set(WINDOW_FULL, s.window_full_drops);
        c.set(BUFFER_DROPS, s.buffer_drops);
        c.set(IGNORED, s.packets_ignored);
        c.set(SPM, s.spm_received);
        c.set(SEND_ERRORS, self.dp.send_errors());
        c.set(BYTES, s.bytes_received);
        c.set(SPMR, s.spmr_sent);
        c.set(CONTROL_LOST, self.control.losses);
        c.set(CONTROL_RECONNECTS, self.control.reconnects);
        c.set(FILTERED, s.filtered);
        c.set(PROBATION_PACKETS, s.probation_packets);
        c.set(PEERS_EVICTED, s.peers_evicted);
        c.set(RETRIES_EXHAUSTED, s.retries_exhausted);
        c.set(LOST_TO_TRAIL, s.lost_to_trail);
        let o = &self.overruns;
        c.set(OVERRUNS, o.total());
        set_overruns(c, OVERRUN, o);
        c.set(RTT_SAMPLES, s.rtt_samples);
        set_rx(
            c,
            RX_FRAMES,
            self.stats
                .as_ref()
                .map(|st| (st, st_rcv::UDP_CHECKSUM_BAD_ACCEPTED)),
            self.dp.rx_counters(),
        );
        if let Some(st) = &self.stats {
            st.set(st_rcv::OVERRUNS, o.total());
            st.set(st_rcv::XDP_RX_DROPPED, o.xdp_rx_dropped);
            st.set(st_rcv::XDP_RX_RING_FULL, o.xdp_rx_ring_full);
            st.set(st_rcv::XDP_FILL_RING_EMPTY, o.xdp_fill_ring_empty);
            st.set(st_rcv::SOCKET_DROPS, o.socket_drops);
            st.set(st_rcv::ODATA_PACKETS, s.odata_received);
            st.set(st_rcv::RDATA_PACKETS, s.rdata_received);
            st.set(st_rcv::DATA_BYTES, s.bytes_received);
            st.set(st_rcv::DUPLICATES, s.duplicates);
            st.set(st_rcv::NAKS_SENT, s.naks_sent);
            st.set(st_rcv::SQNS_NAKED, s.sqns_naked);
            st.set(st_rcv::NCF_RECEIVED, s.ncf_received);
            st.set(st_rcv::UNRECOVERABLE, self.unrecoverable);
            st.set(st_rcv::DELIVERED, s.delivered);
            st.set(st_rcv::WINDOW_FULL_DROPS, s.window_full_drops);
            st.set(st_rcv::BUFFER_DROPS, s.buffer_drops);
            st.set(st_rcv::SPM_RECEIVED, s.spm_received);
            st.set(st_rcv::SPMR_SENT, s.spmr_sent);
            st.set(st_rcv::PEERS, self.receiver.peer_count() as u64);
            st.set(st_rcv::SEND_ERRORS, c.get(SEND_ERRORS));
            st.set(st_rcv::PACKETS_IGNORED, s.packets_ignored);
            st.set(st_rcv::LOST_TO_TRAIL, s.lost_to_trail);
            st.set(st_rcv::RETRIES_EXHAUSTED, s.retries_exhausted);
            st.set(st_rcv::FILTERED, s.filtered);
            st.set(st_rcv::PROBATION_PACKETS, s.probation_packets);
            st.set(st_rcv::PEERS_EVICTED, s.peers_evicted);
            st.set(st_rcv::PROBATION, self.receiver.probation_count() as u64);
            st.set(st_rcv::CONTROL_LOST, self.control.losses);
            st.set(st_rcv::CONTROL_RECONNECTS, self.control.reconnects);
            st.set(st_rcv::RTT_SAMPLES, s.rtt_samples);
            st.set(
                st_rcv::RXW_BUFFERS,
                self.receiver.buffers_allocated() as u64,
            );
            st.set(st_rcv::RXW_TRAIL, u64::from(self.window.trail));
            st.set(st_rcv::RXW_LEAD, u64::from(self.window.lead));
        }
        self.publish_lines();
    }

    /// Per-line counters of an A/B session (nothing to do with one line).
    fn publish_lines(&self) {
        let n = self.receiver.config().lines;
        self.shared
            .line_count
            .store(u64::from(n), Ordering::Relaxed);
        if n <= 1 {
            return;
        }
        for (l, slot) in (0..n).zip(self.shared.lines.iter()) {
            let Some(ls) = self.receiver.line_stats(l) else {
                continue;
            };
            let failures = self.dp.line_status(l).map_or(0, |s| s.failures);
            let vals = [ls.received, ls.won, ls.lost, u64::from(ls.up), failures];
            for (a, v) in slot.iter().zip(vals) {
                a.store(v, Ordering::Relaxed);
            }
            if let Some(st) = &self.stats {
                st.set_line(
                    usize::from(l),
                    xpgm_stats::LineValues {
                        received: ls.received,
                        won: ls.won,
                        lost: ls.lost,
                        up: ls.up,
                        failures,
                    },
                );
            }
        }
    }

    /// One turn of the loop (never sleeps).
    pub fn step(&mut self) -> Result<Step, Error> {
        if self.shared.stop.load(Ordering::Acquire) {
            return Ok(Step::Done);
        }
        let now = self.clock.now();
        if self.ending.is_some() {
            return self.step_ending(now);
        }
        let Self {
            dp,
            receiver,
            window,
            stats,
            repaired,
            ..
        } = self;
        let dport = receiver.config().dport;
        let track = stats.is_some();
        let got = dp.recv_lines(RECV_BATCH, &mut |line, from, bytes| {
            let dups = receiver.stats().duplicates;
            let ok = receiver.handle_packet_on(now, line, from, bytes).is_ok();
            // An RDATA the engine took (not a duplicate) makes its delivery repaired.
            if ok
                && receiver.stats().duplicates == dups
                && let Some(sqn) = rdata_sqn(bytes)
            {
                repaired.mark(sqn);
            }
            if ok && track {
                window.observe(dport, bytes);
            }
        })?;
        if now >= self.overrun_next {
            self.read_overruns();
            self.overrun_next = now + OVERRUN_CHECK;
        }
        if let Err(e) = self.control.poll(&mut *self.dp, now) {
            self.ending = Some(e);
            return self.step_ending(now);
        }
        if self.receiver.poll_timeout().is_some_and(|t| t <= now) {
            self.receiver.handle_timeout(now);
        }
        while let Some(t) = self.receiver.poll_transmit(now, &mut self.tx_buf) {
            let pkt = self.tx_buf.get(..t.len).unwrap_or_default();
            self.dp.send_lines(t.lines, t.dest, pkt)?;
        }
        self.deliver()?;
        self.publish();
        if got == RECV_BATCH {
            return Ok(Step::Again);
        }
        let mut deadline = min_deadline(self.receiver.poll_timeout(), self.control.deadline());
        // Once overruns have been seen, keep reading them while idle too: the kernel
        // may count more drops after the last packet that woke us.
        if self.overruns != Overruns::default() {
            deadline = min_deadline(deadline, Some(self.overrun_next));
        }
        if self.pending.is_some() {
            let soon = now + FULL_RING_POLL;
            deadline = Some(deadline.map_or(soon, |d| d.min(soon)));
        }
        Ok(Step::Sleep(deadline))
    }

    /// A turn of a session that is ending with an error: no more input; what the
    /// engine holds goes to the application, then [`Receiver::close`]'s `PeerGone`
    /// (how far each source was accounted for), then the error.
    fn step_ending(&mut self, now: Instant) -> Result<Step, Error> {
        self.read_final_overruns();
        self.deliver()?;
        self.publish();
        if self.pending.is_some() {
            return Ok(Step::Sleep(Some(now + FULL_RING_POLL)));
        }
        if !self.closed {
            self.close_engine();
            return Ok(Step::Again);
        }
        Err(self.ending.take().unwrap_or(Error::Closed))
    }

    /// Reads the transport's overrun counters (published with the next counters).
    fn read_overruns(&mut self) {
        self.overruns = self.dp.overruns();
    }

    /// The final reading, as the session ends: exact, however slow; taken once.
    fn read_final_overruns(&mut self) {
        if !self.overruns_final {
            self.overruns_final = true;
            self.overruns = self.dp.overruns_now();
        }
    }

    /// Closes the engine once: every live peer yields `PeerGone { last }`, recorded in
    /// [`Shared::gone`] (the handle reports it after close) and left for [`Self::deliver`].
    fn close_engine(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.receiver.close();
    }

    /// Delivery: a message the ring refused waits in `ev_buf`; while it waits, events
    /// stay in the engine's window (back-pressure, never a drop).
    fn deliver(&mut self) -> Result<(), Error> {
        if let Some(len) = self.pending {
            match self
                .writer
                .try_send(self.ev_buf.get(..len).unwrap_or_default())
            {
                Ok(_) => self.pending = None,
                Err(RingSendError::Full) => {}
                Err(e) => return Err(Error::Worker(format!("delivery ring: {e}"))),
            }
        }
        while self.pending.is_none() {
            let Some(ev) = self.receiver.poll_event() else {
                break;
            };
            match ev {
                delivery::Delivery::Unrecoverable { count, .. } => {
                    self.unrecoverable += u64::from(count);
                }
                delivery::Delivery::PeerGone { tsi, last } if self.closed => {
                    record_gone(&self.shared, tsi, last);
                }
                _ => {}
            }
            let was_repaired = match ev {
                delivery::Delivery::Data { sqn, .. } => self.repaired.take(sqn.0),
                _ => false,
            };
            let Some(len) = delivery::encode(&ev, &mut self.ev_buf) else {
                // Cannot happen: the ring's max_msg holds HEADER_LEN + max_apdu.
                continue;
            };
            if was_repaired {
                delivery::mark_repaired(&mut self.ev_buf);
            }
            match self
                .writer
                .try_send(self.ev_buf.get(..len).unwrap_or_default())
            {
                Ok(_) => {}
                Err(RingSendError::Full) => self.pending = Some(len),
                Err(e) => return Err(Error::Worker(format!("delivery ring: {e}"))),
            }
        }
        Ok(())
    }

    /// On exit (stop, or an error other than an ending session): closes the engine and
    /// records every peer's accounting in [`Shared::gone`] without waiting for the
    /// delivery ring (the application has stopped reading, or the worker is failing).
    fn close_on_exit(&mut self) {
        if self.closed {
            return;
        }
        self.read_final_overruns();
        self.close_engine();
        while let Some(ev) = self.receiver.poll_event() {
            if let delivery::Delivery::PeerGone { tsi, last } = ev {
                record_gone(&self.shared, tsi, last);
            }
        }
        self.publish();
    }

    /// Runs until stopped or a fatal error (recorded in `shared`). Either way the
    /// engine is closed first and every peer's accounting recorded in [`Shared::gone`].
    pub fn run(mut self, bell: UnixDatagram) {
        let pinned = self.core.map_or(Ok(()), pin_current);
        let r = pinned.and_then(|()| self.run_inner(&bell));
        self.close_on_exit();
        if let Err(e) = r {
            self.shared.fail(&e);
        }
        self.shared.done.store(true, Ordering::Release);
    }

    fn run_inner(&mut self, bell: &UnixDatagram) -> Result<(), Error> {
        loop {
            match self.step()? {
                Step::Again => {}
                Step::Done => return Ok(()),
                // Busy: the next turn re-polls the transport and the ring and handles
                // due timers, stop and linger; `sleeping` stays false, so the
                // application never rings the doorbell.
                Step::Sleep(_) if self.idle == Idle::BusyPoll => std::hint::spin_loop(),
                Step::Sleep(deadline) => {
                    self.shared.sleeping.store(true, Ordering::Relaxed);
                    fence(Ordering::SeqCst);
                    if !self.shared.stop.load(Ordering::Relaxed) {
                        let timeout =
                            deadline.map(|d| d.saturating_duration_since(self.clock.now()));
                        self.dp.wait(Some(bell.as_fd()), timeout)?;
                    }
                    self.shared.sleeping.store(false, Ordering::Relaxed);
                    drain_bell(bell);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RxWindow;
    use xpgm_core::wire::ty;

    /// A PGM header (sport, dport, type, GSI) followed by `body`.
    fn pkt(sport: u16, dport: u16, t: u8, gsi: u8, body: &[u32]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(sport.to_be_bytes());
        b.extend(dport.to_be_bytes());
        b.extend([t, 0, 0, 0]);
        b.extend([gsi; 6]);
        b.extend([0, 0]);
        for w in body {
            b.extend(w.to_be_bytes());
        }
        b
    }

    #[test]
    fn receive_window_edges_follow_the_source_heard_last() {
        let mut w = RxWindow::default();
        // ODATA sqn 10, trail 3.
        w.observe(7500, &pkt(1000, 7500, ty::ODATA, 1, &[10, 3]));
        assert_eq!((w.trail, w.lead), (3, 10));
        // An older RDATA does not move the lead back; a newer trail advances.
        w.observe(7500, &pkt(1000, 7500, ty::RDATA, 1, &[7, 5]));
        assert_eq!((w.trail, w.lead), (5, 10));
        // SPM: sqn, trail, lead.
        w.observe(7500, &pkt(1000, 7500, ty::SPM, 1, &[1, 6, 12]));
        assert_eq!((w.trail, w.lead), (6, 12));
        // Serial arithmetic across the wrap.
        w.observe(7500, &pkt(1000, 7500, ty::ODATA, 1, &[u32::MAX, 6]));
        assert_eq!(w.lead, 12, "MAX is before 12 in serial order");
        // Other port, other types, truncated packets: ignored.
        w.observe(7500, &pkt(1000, 7501, ty::ODATA, 1, &[100, 90]));
        w.observe(7500, &pkt(1000, 7500, ty::NAK, 1, &[100, 90]));
        w.observe(7500, &pkt(1000, 7500, ty::ODATA, 1, &[100])[..20]);
        w.observe(7500, &[0u8; 5]);
        assert_eq!((w.trail, w.lead), (6, 12));
        // Another source: the window follows it from its first packet.
        w.observe(7500, &pkt(2000, 7500, ty::ODATA, 2, &[500, 400]));
        assert_eq!((w.trail, w.lead), (400, 500));
    }
}
