//! The subscribing handle: the receiver worker delivers data and loss events to it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use xpgm_core::Sqn;
use xpgm_core::config::ReceiverConfig;
use xpgm_core::receiver::Receiver;
use xpgm_core::wire::{Gsi, Nla, Tsi};
use xpgm_ring::{Mode, RecvError, Ring, RingConfig};

use crate::Error;
use crate::delivery::{self, Delivery};
use crate::publisher::{nla_of, random_bytes};
use crate::transport::{self, Role, SessionConfig, TransportKind};
use crate::worker::{Clock, Idle, ReceiverWorker, Shared, rcv_ix};

/// How to subscribe.
#[derive(Clone, Debug)]
pub struct SubscriberConfig {
    /// Network side (transport, interface, group, ports).
    pub session: SessionConfig,
    /// Engine tuning (windows, NAK timers). `dport`, `group`, `max_tpdu` and `max_apdu`
    /// are filled in from `session` and `max_message`.
    pub receiver: ReceiverConfig,
    /// Largest message delivered (default 16 KiB; larger APDUs are reported
    /// unrecoverable by the engine).
    pub max_message: usize,
    /// Deliveries the delivery ring holds (power of two, default 16384). When it is
    /// full the worker stops taking events from the engine (data waits in the receive
    /// window; nothing is dropped).
    pub queue_capacity: usize,
    /// How the worker thread waits when idle (default [`Idle::Sleep`]; see
    /// docs/library.md before choosing [`Idle::BusyPoll`]). Unused by a subscriber
    /// attached to another receiver's shared ring (it has no worker).
    pub idle: Idle,
    /// Core to pin the worker thread to (default `None`: not pinned). Creation fails
    /// with [`Error::Config`] if the core is not available to the calling thread.
    pub core: Option<usize>,
    /// AF_XDP: how long xpgmd may be gone (exited, or ended the session) before the
    /// subscriber ends with [`Error::ControlLost`] (after delivering what it holds and
    /// [`Delivery::PeerGone`] for every source); if it is back sooner the session
    /// registers again and NAKs repair what was missed (default 5 s,
    /// [`crate::worker::DEFAULT_CONTROL_GRACE`]; docs/reliability.md).
    pub control_grace: Duration,
}

impl SubscriberConfig {
    /// Defaults for `session`.
    pub fn new(session: SessionConfig) -> Self {
        SubscriberConfig {
            session,
            receiver: ReceiverConfig::default(),
            max_message: 16 << 10,
            queue_capacity: 16384,
            idle: Idle::Sleep,
            core: None,
            control_grace: crate::worker::DEFAULT_CONTROL_GRACE,
        }
    }
}

/// How far a subscriber accounted for one source when it closed: data up to and
/// including `last` was delivered or reported unrecoverable; after it, lost or
/// unknown (`None`: nothing of this source was accounted for).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAccount {
    /// The source.
    pub tsi: Tsi,
    /// Last sequence number accounted for.
    pub last: Option<Sqn>,
}

/// What [`Subscriber::close_report`] returns.
#[derive(Debug)]
pub struct CloseReport {
    /// Final counters.
    pub stats: SubscriberStats,
    /// Every source live when the receiver closed, with how far it was accounted for
    /// (the engine's view: what it handed to the delivery ring or reported).
    pub peers: Vec<PeerAccount>,
    /// Why the worker stopped, if it failed (e.g. [`Error::ControlLost`]).
    pub error: Option<Error>,
}

/// Subscriber counters (a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SubscriberStats {
    /// ODATA packets received.
    pub odata_received: u64,
    /// RDATA packets received.
    pub rdata_received: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Duplicate packets discarded by the engine (includes repairs other receivers
    /// asked for).
    pub duplicates: u64,
    /// NAK packets sent.
    pub naks_sent: u64,
    /// NCFs received.
    pub ncf_received: u64,
    /// SPMs received.
    pub spm_received: u64,
    /// SPMRs sent.
    pub spmr_sent: u64,
    /// Sequence numbers reported unrecoverable.
    pub unrecoverable: u64,
    /// APDUs delivered by the engine.
    pub delivered: u64,
    /// Packets dropped because the receive window was full.
    pub window_full_drops: u64,
    /// Packets dropped because the buffer pool was exhausted.
    pub buffer_drops: u64,
    /// Packets ignored (other sessions, bad packets).
    pub packets_ignored: u64,
    /// NAK/SPMR sends the kernel refused transiently.
    pub send_errors: u64,
    /// Packets dropped by the `sources` / `tsis` filter before any peer state.
    pub filtered: u64,
    /// Packets from sessions waiting in probation (peer table full; not delivered).
    pub probation_packets: u64,
    /// Peers evicted to admit a more active session.
    pub peers_evicted: u64,
    /// Sequences given up because the source answered no NAK at all.
    pub retries_exhausted: u64,
    /// Sequences given up because the source's trail passed them.
    pub lost_to_trail: u64,
    /// A subscriber attached to another local receiver's shared ring (AF_XDP
    /// fan-out): ring messages it lost because the owner's stream lapped it. Each
    /// lapping is also delivered as [`Delivery::Unrecoverable`]. Always 0 otherwise.
    pub lapped: u64,
    /// Times the transport's control process (xpgmd) was lost.
    pub control_lost: u64,
    /// Times the session registered again with a restarted xpgmd within the grace.
    pub control_reconnects: u64,
    /// Packets the kernel dropped before the worker read them, because the receiver
    /// did not keep up (`xdp_rx_dropped + xdp_rx_ring_full + socket_drops`;
    /// docs/reliability.md section 7). Each is a gap the engine repairs or reports.
    pub overruns: u64,
    /// AF_XDP: frames the kernel dropped for the socket (`XDP_STATISTICS.rx_dropped`:
    /// mostly no fill-ring buffer).
    pub xdp_rx_dropped: u64,
    /// AF_XDP: frames dropped because the RX ring was full.
    pub xdp_rx_ring_full: u64,
    /// AF_XDP: times the kernel found the fill ring empty (a cause; not in `overruns`).
    pub xdp_fill_ring_empty: u64,
    /// Kernel sockets: datagrams dropped for the receive socket (buffer full).
    pub socket_drops: u64,
    /// AF_XDP: frames refused below PGM, by reason, and frames accepted on their PGM
    /// checksum although the UDP checksum failed (docs/reliability.md section 9).
    pub frames: crate::transport::RxCounters,
    /// Round-trip samples the engine took for its NAK timers (NAK to NCF or RDATA,
    /// SPMR to SPM).
    pub rtt_samples: u64,
    /// Lines (A/B feeds) of the session: 1, or the number of interfaces given.
    pub line_count: u8,
    /// Per line, the first `line_count` (zero with one line).
    pub lines: [LineCounters; xpgm_core::line::MAX_LINES],
}

/// One A/B line's counters ([`SubscriberStats::lines`]; docs/transport.md "A/B
/// lines").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineCounters {
    /// Data packets (ODATA, RDATA) that came on this line, duplicates included.
    pub received: u64,
    /// Sequences this line brought first (the others' copies were duplicates).
    pub won: u64,
    /// Sequences this line missed (another line, or a repair, brought them).
    pub lost: u64,
    /// Whether the engine counts the line as up (it has heard from it lately).
    pub up: bool,
    /// Times the line's transport failed and was closed (then reopened every second).
    pub failures: u64,
}

/// Readers a shared delivery ring admits (the owner's tee is its writer).
pub const SHARED_RING_READERS: usize = 64;

/// Where shared delivery rings are created.
const SHARED_RING_DIR: &str = "/dev/shm";
/// File name prefix of shared delivery rings: `xpgm-rx-<pid>-<n>.ring`.
const SHARED_RING_PREFIX: &str = "xpgm-rx-";

/// The owner side of an AF_XDP fan-out: every delivery the application reads is
/// copied into a broadcast ring in a shared file that other local processes attach
/// to. Dropping it writes the "owner closed" marker and removes the file.
#[derive(Debug)]
struct ShareOwner {
    writer: xpgm_ring::Writer,
    path: PathBuf,
}

impl ShareOwner {
    /// A new broadcast ring file at `path` with the geometry of `config`'s delivery
    /// ring (fails if the file exists).
    fn create(config: &SubscriberConfig, path: PathBuf) -> Result<ShareOwner, Error> {
        let ring = Ring::create(
            &path,
            RingConfig {
                capacity: config.queue_capacity,
                max_msg: config.max_message + delivery::HEADER_LEN,
                max_readers: SHARED_RING_READERS,
                mode: Mode::Broadcast,
            },
        )?;
        match ring.writer() {
            Ok(writer) => Ok(ShareOwner { writer, path }),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(e.into())
            }
        }
    }
}

impl Drop for ShareOwner {
    fn drop(&mut self) {
        let _ = self.writer.try_send(&delivery::CLOSED_MARKER);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The reader side: attached to another process's shared ring.
#[derive(Debug)]
struct AttachedTo {
    pid: i32,
    /// The owner's start time (`/proc/<pid>/stat` field 22) when we attached, so a
    /// reused pid is not mistaken for it.
    start: Option<u64>,
    session: u64,
    path: PathBuf,
    /// Last data delivered (to place a lapping in sequence space).
    last: Option<(Tsi, Sqn)>,
    lapped: u64,
    closed: bool,
}

impl AttachedTo {
    fn owner_alive(&self) -> bool {
        match std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) {
            Err(e) => e.kind() != std::io::ErrorKind::NotFound,
            Ok(stat) => match (self.start, proc_start_time(&stat)) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            },
        }
    }

    fn gone_error(&self) -> Error {
        let how = if self.closed { "closed" } else { "exited" };
        Error::Xdp(format!(
            "the AF_XDP receiver this subscriber was attached to (pid {}, xpgmd session {}, ring \
             {}) {how}; no more data will arrive on this attachment. Start a new receiver to \
             take the feed over",
            self.pid,
            self.session,
            self.path.display()
        ))
    }

    /// A lapping of `missed` ring messages, as a loss event.
    fn lapping(&mut self, missed: u64) -> Delivery<'static> {
        self.lapped = self.lapped.saturating_add(missed);
        let (tsi, first) = match self.last {
            Some((tsi, sqn)) => (tsi, Sqn(sqn.0.wrapping_add(1))),
            None => (
                Tsi {
                    gsi: Gsi([0; 6]),
                    sport: 0,
                },
                Sqn(0),
            ),
        };
        Delivery::Unrecoverable {
            tsi,
            first,
            count: u32::try_from(missed).unwrap_or(u32::MAX),
        }
    }

    /// Notes a message read from the ring; false if it is the "owner closed" marker.
    fn note(&mut self, bytes: &[u8]) -> bool {
        if delivery::is_closed_marker(bytes) {
            self.closed = true;
            return false;
        }
        if let Some(Delivery::Data { tsi, sqn, .. }) = delivery::decode(bytes) {
            self.last = Some((tsi, sqn));
        }
        true
    }
}

/// Field 22 (start time) of a `/proc/<pid>/stat` line. `comm` (field 2) may hold
/// spaces and parentheses, so count from the last `)`.
fn proc_start_time(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_ascii_whitespace().nth(19)?.parse().ok()
}

/// Whether this subscriber shares its deliveries, or reads another's.
#[derive(Debug)]
enum Fanout {
    /// Its own worker, nothing shared.
    Private,
    /// Its own worker; deliveries copied to a shared ring.
    Owner(ShareOwner),
    /// No worker: reads another local receiver's shared ring.
    Attached(AttachedTo),
}

/// A PGM receiver: joins the group and yields [`Delivery`] items in order.
///
/// Over AF_XDP (see docs/afxdp.md) the first subscriber of a feed on a host owns the
/// socket and shares what it delivers through a ring in `/dev/shm` registered with
/// xpgmd; a later subscriber of the same feed on that host attaches to that ring
/// instead of binding a socket ([`Subscriber::attached_to`]).
#[derive(Debug)]
pub struct Subscriber {
    reader: xpgm_ring::Reader,
    buf: Box<[u8]>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    local: Nla,
    transport: TransportKind,
    fanout: Fanout,
}

/// Removes shared rings whose creating process is gone (left by a killed owner).
/// Bounded: looks at most at 4096 directory entries.
fn sweep_stale_rings(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.take(4096).flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(SHARED_RING_PREFIX))
            .and_then(|n| n.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A fresh path for a shared ring of this process.
fn shared_ring_path(dir: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(
        "{SHARED_RING_PREFIX}{}-{n}.ring",
        std::process::id()
    ))
}

impl Subscriber {
    /// Opens the transport (joining the group), creates the receiver and starts its
    /// worker thread.
    ///
    /// With [`TransportKind::Xdp`], xpgmd is asked first (before any socket is bound)
    /// whether a receiver on this host already takes the feed (same interface, group
    /// and port): if it shares its deliveries, this subscriber attaches to its ring;
    /// if not, this fails naming that receiver's pid. Otherwise this subscriber binds
    /// the socket and shares its own deliveries for later ones.
    pub fn new(config: SubscriberConfig) -> Result<Subscriber, Error> {
        if config.session.transport == TransportKind::Xdp {
            return Subscriber::new_xdp(config);
        }
        let dp = transport::open(&config.session, Role::Receiver)?;
        Subscriber::with_datapath(config, dp)
    }

    fn new_xdp(config: SubscriberConfig) -> Result<Subscriber, Error> {
        config.session.validate()?;
        if !config.session.extra_ifaces.is_empty() {
            // A/B lines over AF_XDP: a socket per line, deliveries not shared (another
            // local receiver of the feed uses --transport socket or other interfaces).
            let dp = transport::open(&config.session, Role::Receiver)?;
            return Subscriber::with_datapath(config, dp);
        }
        let sc = &config.session;
        match transport::xdp::find_served(sc)? {
            Some(transport::xdp::Served {
                session,
                pid,
                ring: Some(path),
            }) => return Subscriber::attach_to(config, &path, pid, session),
            Some(served) => {
                return Err(Error::Xdp(format!(
                    "group {} port {} on {} is already received on this host by pid {} \
                     (xpgmd session {}), which does not share its deliveries; the XDP \
                     classifier can steer each frame to one socket only. Stop that receiver, or \
                     use --transport socket on an interface it does not use",
                    sc.group, sc.dport, sc.iface, served.pid, served.session
                )));
            }
            None => {}
        }
        Subscriber::check(&config)?;
        let dir = Path::new(SHARED_RING_DIR);
        sweep_stale_rings(dir);
        // Without a shared ring (no /dev/shm) the receiver still works, unshared.
        let share = ShareOwner::create(&config, shared_ring_path(dir)).ok();
        let dp = transport::xdp::XdpDatapath::open_shared(
            sc,
            Role::Receiver,
            share.as_ref().map(|s| s.path.as_path()),
        )?;
        let fanout = share.map_or(Fanout::Private, Fanout::Owner);
        Subscriber::start(config, Box::new(dp), fanout)
    }

    /// Like [`Subscriber::with_datapath`], also sharing every delivery the application
    /// reads through a new broadcast ring file at `ring` (removed on close), which
    /// other processes read with [`Subscriber::attach_to`]. This is what
    /// [`Subscriber::new`] does over AF_XDP (with a file under `/dev/shm` registered
    /// with xpgmd).
    pub fn with_datapath_shared(
        config: SubscriberConfig,
        dp: Box<dyn transport::Datapath>,
        ring: &Path,
    ) -> Result<Subscriber, Error> {
        Subscriber::check(&config)?;
        let share = ShareOwner::create(&config, ring.to_path_buf())?;
        Subscriber::start(config, dp, Fanout::Owner(share))
    }

    /// A subscriber that reads the shared ring `path` of the local receiver process
    /// `pid` (xpgmd session `session`, for messages) instead of the network: it gets
    /// that receiver's deliveries from now on, lappings as [`Delivery::Unrecoverable`],
    /// and an error naming `pid` once that receiver has closed or exited and the ring
    /// is drained. [`Subscriber::new`] does this by itself over AF_XDP.
    pub fn attach_to(
        config: SubscriberConfig,
        path: &Path,
        pid: i32,
        session: u64,
    ) -> Result<Subscriber, Error> {
        let path = path.to_path_buf();
        let start = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| proc_start_time(&s));
        let ring = Ring::open(&path, None).map_err(|e| {
            Error::Xdp(format!(
                "this feed is received on this host by pid {pid} (xpgmd session {session}); \
                 attaching to its delivery ring failed: {e}"
            ))
        })?;
        let reader = ring.reader().map_err(|e| {
            Error::Xdp(format!(
                "this feed is received on this host by pid {pid} (xpgmd session {session}); \
                 its delivery ring refused another reader: {e}"
            ))
        })?;
        let max_msg = ring.config().max_msg;
        eprintln!(
            "xpgm: --transport xdp: group {} port {} on {} is already received on this host by \
             pid {pid} (xpgmd session {session}); reading its deliveries from {}",
            config.session.group,
            config.session.dport,
            config.session.iface,
            path.display()
        );
        let local = xpgm_afxdp::iface::InterfaceInfo::lookup(&config.session.iface)
            .ok()
            .and_then(|i| i.address_for(config.session.group))
            .map_or_else(|| nla_of(config.session.group), nla_of);
        let (shared, _bell) = Shared::new()?;
        Ok(Subscriber {
            reader,
            buf: vec![0u8; max_msg].into_boxed_slice(),
            shared,
            thread: None,
            local,
            transport: config.session.transport,
            fanout: Fanout::Attached(AttachedTo {
                pid,
                start,
                session,
                path,
                last: None,
                lapped: 0,
                closed: false,
            }),
        })
    }

    /// `Some(pid)` if this subscriber reads the shared ring of another local AF_XDP
    /// receiver (process `pid`) instead of receiving from the network itself.
    pub fn attached_to(&self) -> Option<i32> {
        match &self.fanout {
            Fanout::Attached(a) => Some(a.pid),
            _ => None,
        }
    }

    /// The shared ring this subscriber offers to other local consumers, if any.
    pub fn shared_ring(&self) -> Option<&Path> {
        match &self.fanout {
            Fanout::Owner(o) => Some(&o.path),
            _ => None,
        }
    }

    fn check(config: &SubscriberConfig) -> Result<(), Error> {
        config.session.validate()?;
        if config.max_message == 0 {
            return Err(Error::Config("max_message must be at least 1".into()));
        }
        if !config.queue_capacity.is_power_of_two() || config.queue_capacity < 2 {
            return Err(Error::Config(format!(
                "queue_capacity {} is not a power of two >= 2",
                config.queue_capacity
            )));
        }
        if let Some(core) = config.core {
            crate::worker::check_core(core)?;
        }
        Ok(())
    }

    /// Like [`Subscriber::new`] over a datapath opened by the caller (another transport,
    /// or a test double); `config.session` then only supplies group, port and sizes.
    pub fn with_datapath(
        config: SubscriberConfig,
        dp: Box<dyn transport::Datapath>,
    ) -> Result<Subscriber, Error> {
        Subscriber::check(&config)?;
        Subscriber::start(config, dp, Fanout::Private)
    }

    fn start(
        config: SubscriberConfig,
        dp: Box<dyn transport::Datapath>,
        fanout: Fanout,
    ) -> Result<Subscriber, Error> {
        let mut rcfg = config.receiver.clone();
        rcfg.dport = config.session.dport;
        rcfg.group = nla_of(config.session.group);
        rcfg.max_tpdu = config.session.max_tpdu();
        rcfg.max_apdu = config.max_message;
        rcfg.lines = dp.lines();
        rcfg.sources
            .extend(config.session.sources.iter().map(|&a| nla_of(a)));
        let local = dp.local_nla();
        let receiver = Receiver::new(rcfg, local, u64::from_le_bytes(random_bytes()))
            .map_err(|e| Error::Config(e.to_string()))?;
        let max_msg = config.max_message + delivery::HEADER_LEN;
        let ring = Ring::new(RingConfig {
            capacity: config.queue_capacity,
            max_msg,
            max_readers: 1,
            mode: Mode::BackPressure,
        })?;
        let reader = ring.reader()?;
        let writer = ring.writer()?;
        let (shared, bell) = Shared::new()?;
        let stats = crate::worker::stats_writer(
            &config.session,
            xpgm_stats::Role::Receiver,
            Tsi {
                gsi: Gsi([0; 6]),
                sport: 0,
            },
        );
        let worker = ReceiverWorker::new(dp, receiver, writer, Clock::new(), shared.clone())
            .with_stats(stats)
            .with_idle(config.idle)
            .with_core(config.core)
            .with_control_grace(config.control_grace);
        let thread = std::thread::Builder::new()
            .name("xpgm-receiver".into())
            .spawn(move || worker.run(bell))
            .map_err(|e| Error::io("spawn worker", e))?;
        Ok(Subscriber {
            reader,
            buf: vec![0u8; max_msg].into_boxed_slice(),
            shared,
            thread: Some(thread),
            local,
            transport: config.session.transport,
            fanout,
        })
    }

    /// Our address on the session's interface.
    pub fn local_nla(&self) -> Nla {
        self.local
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    fn dead(&self) -> Option<Error> {
        if let Fanout::Attached(a) = &self.fanout {
            return (a.closed || !a.owner_alive()).then(|| a.gone_error());
        }
        if self.shared.done.load(Ordering::Acquire) {
            Some(self.shared.failure().unwrap_or(Error::Closed))
        } else {
            None
        }
    }

    fn decode(&self, len: usize) -> Result<Delivery<'_>, Error> {
        self.buf
            .get(..len)
            .and_then(delivery::decode)
            .ok_or_else(|| Error::Worker("malformed delivery".into()))
    }

    /// Passes a message just read (`len` bytes in `buf`) to the fan-out: the owner
    /// copies it into the shared ring; an attached reader notes it. False if it is
    /// not a delivery (the "owner closed" marker).
    fn fan(&mut self, len: usize) -> bool {
        let bytes = self.buf.get(..len).unwrap_or(&[]);
        match &mut self.fanout {
            Fanout::Private => true,
            Fanout::Owner(o) => {
                // Broadcast mode: never full; a slow attached reader is lapped.
                let _ = o.writer.try_send(bytes);
                true
            }
            Fanout::Attached(a) => a.note(bytes),
        }
    }

    /// Whether the delivery last returned by [`Subscriber::recv`] or
    /// [`Subscriber::try_recv`] is data that was repaired: its packet (the first of
    /// its APDU) came as RDATA, not ODATA. For latency accounting (`xpgm recv
    /// --latency` reports repaired messages apart); exact for one source at a time.
    pub fn last_repaired(&self) -> bool {
        delivery::is_repaired(&self.buf)
    }

    /// Waits for the next delivery, up to `timeout` (`None`: forever). [`Error::Timeout`]
    /// if none came; [`Error::Closed`] / [`Error::Worker`] once the worker has stopped and
    /// everything it delivered was read.
    pub fn recv(&mut self, timeout: Option<Duration>) -> Result<Delivery<'_>, Error> {
        let deadline = timeout.map(|t| StdInstant::now() + t);
        let len = loop {
            let slice = match deadline {
                Some(d) => d
                    .saturating_duration_since(StdInstant::now())
                    .min(Duration::from_millis(100)),
                None => Duration::from_millis(100),
            };
            match self.reader.recv_blocking(&mut self.buf, Some(slice)) {
                Ok(r) => {
                    if self.fan(r.len) {
                        break r.len;
                    }
                }
                Err(RecvError::Lapped { missed }) if let Fanout::Attached(a) = &mut self.fanout => {
                    return Ok(a.lapping(missed));
                }
                Err(RecvError::Timeout | RecvError::Empty) => {
                    if let Some(e) = self.dead()
                        && self.reader.lag() == 0
                    {
                        return Err(e);
                    }
                    if deadline.is_some_and(|d| StdInstant::now() >= d) {
                        return Err(Error::Timeout);
                    }
                }
                Err(e) => return Err(Error::Worker(format!("delivery ring: {e}"))),
            }
        };
        self.decode(len)
    }

    /// The next delivery if one is ready.
    pub fn try_recv(&mut self) -> Result<Option<Delivery<'_>>, Error> {
        let r = loop {
            match self.reader.try_recv(&mut self.buf) {
                Ok(r) if !self.fan(r.len) => continue,
                Err(RecvError::Lapped { missed }) if let Fanout::Attached(a) = &mut self.fanout => {
                    return Ok(Some(a.lapping(missed)));
                }
                r => break r,
            }
        };
        match r {
            Ok(r) => self.decode(r.len).map(Some),
            Err(RecvError::Empty) => match self.dead() {
                Some(e) => Err(e),
                None => Ok(None),
            },
            Err(e) => Err(Error::Worker(format!("delivery ring: {e}"))),
        }
    }

    /// Up to `max` ready deliveries, each passed to `f`; returns how many (0: none ready).
    pub fn recv_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(Delivery<'_>),
    ) -> Result<usize, Error> {
        let mut bad = false;
        let Subscriber {
            reader,
            buf,
            fanout,
            ..
        } = self;
        let n = reader.recv_batch(buf, max, |_, bytes| {
            match fanout {
                Fanout::Private => {}
                Fanout::Owner(o) => {
                    let _ = o.writer.try_send(bytes);
                }
                Fanout::Attached(a) => {
                    if !a.note(bytes) {
                        return;
                    }
                }
            }
            match delivery::decode(bytes) {
                Some(d) => f(d),
                None => bad = true,
            }
        });
        match n {
            Err(RecvError::Lapped { missed }) if let Fanout::Attached(a) = &mut self.fanout => {
                f(a.lapping(missed));
                Ok(1)
            }
            Ok(0) | Err(RecvError::Empty) => match self.dead() {
                Some(e) => Err(e),
                None => Ok(0),
            },
            Ok(n) if bad => Err(Error::Worker(format!("malformed delivery after {n}"))),
            Ok(n) => Ok(n),
            Err(e) => Err(Error::Worker(format!("delivery ring: {e}"))),
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SubscriberStats {
        let c = &self.shared.counters;
        let overrun = crate::worker::get_overruns(c, rcv_ix::OVERRUN);
        SubscriberStats {
            odata_received: c.get(rcv_ix::ODATA),
            rdata_received: c.get(rcv_ix::RDATA),
            bytes_received: c.get(rcv_ix::BYTES),
            duplicates: c.get(rcv_ix::DUPLICATES),
            naks_sent: c.get(rcv_ix::NAKS),
            ncf_received: c.get(rcv_ix::NCF),
            spm_received: c.get(rcv_ix::SPM),
            spmr_sent: c.get(rcv_ix::SPMR),
            unrecoverable: c.get(rcv_ix::UNRECOVERABLE),
            delivered: c.get(rcv_ix::DELIVERED),
            window_full_drops: c.get(rcv_ix::WINDOW_FULL),
            buffer_drops: c.get(rcv_ix::BUFFER_DROPS),
            packets_ignored: c.get(rcv_ix::IGNORED),
            send_errors: c.get(rcv_ix::SEND_ERRORS),
            filtered: c.get(rcv_ix::FILTERED),
            probation_packets: c.get(rcv_ix::PROBATION_PACKETS),
            peers_evicted: c.get(rcv_ix::PEERS_EVICTED),
            retries_exhausted: c.get(rcv_ix::RETRIES_EXHAUSTED),
            lost_to_trail: c.get(rcv_ix::LOST_TO_TRAIL),
            lapped: match &self.fanout {
                Fanout::Attached(a) => a.lapped,
                _ => 0,
            },
            control_lost: c.get(rcv_ix::CONTROL_LOST),
            control_reconnects: c.get(rcv_ix::CONTROL_RECONNECTS),
            overruns: c.get(rcv_ix::OVERRUNS),
            xdp_rx_dropped: overrun.xdp_rx_dropped,
            xdp_rx_ring_full: overrun.xdp_rx_ring_full,
            xdp_fill_ring_empty: overrun.xdp_fill_ring_empty,
            socket_drops: overrun.socket_drops,
            frames: crate::worker::get_rx(c, rcv_ix::RX_FRAMES),
            rtt_samples: c.get(rcv_ix::RTT_SAMPLES),
            line_count: u8::try_from(self.shared.line_count.load(Ordering::Relaxed)).unwrap_or(1),
            lines: core::array::from_fn(|l| {
                let get = |k: usize| {
                    self.shared
                        .lines
                        .get(l)
                        .and_then(|s| s.get(k))
                        .map_or(0, |a| a.load(Ordering::Relaxed))
                };
                LineCounters {
                    received: get(0),
                    won: get(1),
                    lost: get(2),
                    up: get(3) != 0,
                    failures: get(4),
                }
            }),
        }
    }

    /// Stops the worker (leaving the group) and returns the final counters.
    pub fn close(self) -> Result<SubscriberStats, Error> {
        let r = self.close_report();
        match r.error {
            Some(e) => Err(e),
            None => Ok(r.stats),
        }
    }

    /// Stops the worker (leaving the group; the engine is closed, so every source
    /// still live is accounted for) and returns the final counters, how far each
    /// source was accounted for, and the worker's error if it failed. A subscriber
    /// attached to another receiver's ring has no engine: `peers` is empty.
    pub fn close_report(mut self) -> CloseReport {
        self.stop();
        let peers = self
            .shared
            .gone
            .lock()
            .map(|g| {
                g.iter()
                    .map(|&(tsi, last)| PeerAccount { tsi, last })
                    .collect()
            })
            .unwrap_or_default();
        CloseReport {
            stats: self.stats(),
            peers,
            error: self.shared.failure(),
        }
    }

    fn stop(&mut self) {
        if let Some(t) = self.thread.take() {
            self.shared.stop.store(true, Ordering::Release);
            self.shared.ring_always();
            let _ = t.join();
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.stop();
    }
}
