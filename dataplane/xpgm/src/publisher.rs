//! The publishing handle: an application thread hands messages to the source worker.

use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use xpgm_core::config::SourceConfig;
use xpgm_core::source::Source;
use xpgm_core::wire::{Gsi, Nla, Tsi};
use xpgm_ring::{Mode, Ring, RingConfig, SendError as RingSendError};

use crate::Error;
use crate::transport::{self, Role, SessionConfig, TransportKind};
use crate::worker::{Clock, Idle, Shared, SourceWorker, src_ix};

/// How to publish.
#[derive(Clone, Debug)]
pub struct PublisherConfig {
    /// Network side (transport, interface, group, ports, TTL, DSCP).
    pub session: SessionConfig,
    /// Engine tuning (windows, rates, SPM intervals). `dport`, `group`, `path_nla`,
    /// `max_tpdu` and `max_apdu` are filled in from `session` and `max_message`.
    pub source: SourceConfig,
    /// Largest message `send` accepts (default 16 KiB); larger ones are refused with
    /// [`Error::TooLarge`].
    pub max_message: usize,
    /// Messages the publish ring holds between `send` and the worker (power of two,
    /// default 4096).
    pub queue_capacity: usize,
    /// How long `send` waits for room before [`Error::Timeout`] (default 10 s).
    pub send_timeout: Duration,
    /// How long the worker keeps answering NAKs after the last message before it stops
    /// (used by `Drop`; `finish` takes its own; default 2 s).
    pub linger: Duration,
    /// Finishing (`finish`, `Drop`) waits for queued messages to be transmitted; past
    /// the linger plus this much, what is still unsent is abandoned and counted in
    /// [`PublisherStats::unsent`] (default 10 s).
    pub finish_timeout: Duration,
    /// How the worker thread waits when idle (default [`Idle::Sleep`]; see
    /// docs/library.md before choosing [`Idle::BusyPoll`]).
    pub idle: Idle,
    /// Core to pin the worker thread to (default `None`: not pinned). Creation fails
    /// with [`Error::Config`] if the core is not available to the calling thread.
    pub core: Option<usize>,
    /// AF_XDP: how long xpgmd may be gone (exited, or ended the session) before the
    /// publisher ends with [`Error::ControlLost`]; if it is back sooner the session
    /// registers again and goes on (default 5 s, [`crate::worker::DEFAULT_CONTROL_GRACE`];
    /// docs/reliability.md). Other transports have no control process.
    pub control_grace: Duration,
}

impl PublisherConfig {
    /// Defaults for `session`.
    pub fn new(session: SessionConfig) -> Self {
        PublisherConfig {
            session,
            source: SourceConfig::default(),
            max_message: 16 << 10,
            queue_capacity: 4096,
            send_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(2),
            finish_timeout: Duration::from_secs(10),
            idle: Idle::Sleep,
            core: None,
            control_grace: crate::worker::DEFAULT_CONTROL_GRACE,
        }
    }
}

/// Publisher counters (a snapshot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PublisherStats {
    /// Messages handed to the engine.
    pub messages: u64,
    /// ODATA packets sent.
    pub odata_sent: u64,
    /// ODATA payload bytes.
    pub odata_bytes: u64,
    /// RDATA (repairs) sent.
    pub rdata_sent: u64,
    /// NCFs sent.
    pub ncf_sent: u64,
    /// Sequence numbers NAKed to us.
    pub naks_received: u64,
    /// NAKed sequences no longer (or not yet) in the window.
    pub naks_outside_window: u64,
    /// SPMs sent.
    pub spm_sent: u64,
    /// SPMRs received.
    pub spmr_received: u64,
    /// Repairs dropped because the repair queue was full.
    pub repairs_dropped: u64,
    /// NCF bytes sent (whole PGM packets), within `SourceConfig::ncf_max_rte`.
    pub ncf_bytes: u64,
    /// RDATA bytes sent (TPDUs), within `SourceConfig::rdata_max_rte`.
    pub rdata_tpdu_bytes: u64,
    /// NCFs not sent: the NCF queue was full (NAKs beyond the NCF budget).
    pub ncfs_dropped: u64,
    /// NAKed sequences already queued for repair (one RDATA answers them all).
    pub naks_coalesced: u64,
    /// Queued repairs skipped because the sequence left the window first.
    pub repairs_expired: u64,
    /// Sends the kernel refused transiently (counted as loss).
    pub send_errors: u64,
    /// Packets ignored (not for this session).
    pub packets_ignored: u64,
    /// Messages accepted but not yet transmitted (after `finish`: abandoned).
    pub unsent: u64,
    /// Times the transport's control process (xpgmd) was lost.
    pub control_lost: u64,
    /// Times the session registered again with a restarted xpgmd within the grace.
    pub control_reconnects: u64,
    /// AF_XDP: frames (NAKs, SPMRs) refused below PGM, by reason, and frames accepted
    /// on their PGM checksum although the UDP checksum failed (docs/reliability.md
    /// section 9).
    pub frames: crate::transport::RxCounters,
    /// NAKs confirmed but not repaired again, within `rdata_holdoff` of an RDATA for
    /// the same sequence.
    pub naks_held_off: u64,
    /// NAKs and SPMRs the kernel dropped before the worker read them (a flood faster
    /// than the worker), by kind as for receivers; `overrun.total()` is what was lost.
    /// Exact once the session has ended.
    pub overrun: crate::transport::Overruns,
}

/// A PGM source. `send` copies the message into the publish ring; the worker thread
/// numbers it, transmits it at the configured rate and repairs it on NAK.
#[derive(Debug)]
pub struct Publisher {
    writer: xpgm_ring::Writer,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    tsi: Tsi,
    local: Nla,
    send_timeout: Duration,
    linger: Duration,
    transport: TransportKind,
}

/// Random bytes from the kernel (for the TSI and NAK back-off seeds).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom")
        && f.read_exact(&mut b).is_ok()
    {
        return b;
    }
    // Fallback: time and pid mixed (uniqueness, not secrecy, is what matters here).
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id()).rotate_left(32);
    for (i, x) in b.iter_mut().enumerate() {
        *x = (t.rotate_left(8 * (i as u32 % 8)) & 0xff) as u8;
    }
    b
}

pub(crate) fn nla_of(ip: IpAddr) -> Nla {
    match ip {
        IpAddr::V4(a) => Nla::V4(a),
        IpAddr::V6(a) => Nla::V6(a),
    }
}

impl Publisher {
    /// Opens the transport, creates the source and starts its worker thread.
    pub fn new(config: PublisherConfig) -> Result<Publisher, Error> {
        let dp = transport::open(&config.session, Role::Source)?;
        Publisher::with_datapath(config, dp)
    }

    /// Like [`Publisher::new`] over a datapath opened by the caller (another transport,
    /// or a test double); `config.session` then only supplies group, port and sizes.
    pub fn with_datapath(
        config: PublisherConfig,
        mut dp: Box<dyn transport::Datapath>,
    ) -> Result<Publisher, Error> {
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
        let mut scfg = config.source.clone();
        scfg.dport = config.session.dport;
        scfg.group = nla_of(config.session.group);
        scfg.path_nla = dp.local_nla();
        scfg.max_tpdu = config.session.max_tpdu();
        scfg.max_apdu = config.max_message;
        let r: [u8; 8] = random_bytes();
        let tsi = Tsi {
            gsi: Gsi([r[0], r[1], r[2], r[3], r[4], r[5]]),
            sport: u16::from_be_bytes([r[6], r[7]]).max(1),
        };
        let clock = Clock::new();
        let source =
            Source::new(scfg, tsi, clock.now()).map_err(|e| Error::Config(e.to_string()))?;
        dp.start_source(tsi)?;
        let ring = Ring::new(RingConfig {
            capacity: config.queue_capacity,
            max_msg: config.max_message,
            max_readers: 1,
            mode: Mode::BackPressure,
        })?;
        let reader = ring.reader()?;
        let writer = ring.writer()?;
        let (shared, bell) = Shared::new()?;
        shared
            .linger_ns
            .store(config.linger.as_nanos() as u64, Ordering::Relaxed);
        shared
            .grace_ns
            .store(config.finish_timeout.as_nanos() as u64, Ordering::Relaxed);
        let local = dp.local_nla();
        let stats = crate::worker::stats_writer(&config.session, xpgm_stats::Role::Source, tsi);
        let worker = SourceWorker::new(dp, source, reader, clock, shared.clone())
            .with_stats(stats)
            .with_idle(config.idle)
            .with_core(config.core)
            .with_control_grace(config.control_grace);
        let thread = std::thread::Builder::new()
            .name("xpgm-source".into())
            .spawn(move || worker.run(bell))
            .map_err(|e| Error::io("spawn worker", e))?;
        Ok(Publisher {
            writer,
            shared,
            thread: Some(thread),
            tsi,
            local,
            send_timeout: config.send_timeout,
            linger: config.linger,
            transport: config.session.transport,
        })
    }

    /// The session's TSI.
    pub fn tsi(&self) -> Tsi {
        self.tsi
    }

    /// Our address (the SPM path NLA receivers send NAKs to).
    pub fn local_nla(&self) -> Nla {
        self.local
    }

    /// The transport in use.
    pub fn transport(&self) -> TransportKind {
        self.transport
    }

    fn check_alive(&self) -> Result<(), Error> {
        if self.shared.done.load(Ordering::Acquire) {
            return Err(self.shared.failure().unwrap_or(Error::Closed));
        }
        Ok(())
    }

    /// Queues `msg` without waiting. [`Error::WouldBlock`] when the publish ring is full
    /// (the engine is rate- or window-limited): nothing was queued, retry later.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.check_alive()?;
        match self.writer.try_send(msg) {
            Ok(_) => {
                self.shared.ring();
                Ok(())
            }
            Err(RingSendError::Full) => Err(Error::WouldBlock),
            Err(RingSendError::TooLarge { len, max }) => Err(Error::TooLarge { len, max }),
            Err(e) => Err(Error::Worker(format!("publish ring: {e}"))),
        }
    }

    /// Queues `msg`, waiting while the publish ring is full, up to the configured
    /// `send_timeout` ([`Error::Timeout`]; nothing was queued). Never drops a message.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), Error> {
        self.send_timeout(msg, self.send_timeout)
    }

    /// [`Publisher::send`] with an explicit timeout.
    pub fn send_timeout(&mut self, msg: &[u8], timeout: Duration) -> Result<(), Error> {
        let deadline = StdInstant::now() + timeout;
        loop {
            match self.try_send(msg) {
                Err(Error::WouldBlock) => {}
                other => return other,
            }
            let left = deadline.saturating_duration_since(StdInstant::now());
            if left.is_zero() {
                return Err(Error::Timeout);
            }
            match self
                .writer
                .send_blocking(msg, Some(left.min(Duration::from_millis(20))))
            {
                Ok(_) => {
                    self.shared.ring();
                    return Ok(());
                }
                Err(RingSendError::Timeout | RingSendError::Full) => {}
                Err(RingSendError::TooLarge { len, max }) => {
                    return Err(Error::TooLarge { len, max });
                }
                Err(e) => return Err(Error::Worker(format!("publish ring: {e}"))),
            }
        }
    }

    /// Waits until every queued message has been transmitted once (ODATA), or `timeout`.
    pub fn flush(&self, timeout: Duration) -> Result<(), Error> {
        let deadline = StdInstant::now() + timeout;
        let queued = self.writer.next_seq();
        loop {
            let c = &self.shared.counters;
            if c.get(src_ix::ACCEPTED) >= queued && c.get(src_ix::UNSENT) == 0 {
                return Ok(());
            }
            self.check_alive()?;
            if StdInstant::now() >= deadline {
                return Err(Error::Timeout);
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> PublisherStats {
        let c = &self.shared.counters;
        PublisherStats {
            messages: c.get(src_ix::ACCEPTED),
            odata_sent: c.get(src_ix::ODATA),
            odata_bytes: c.get(src_ix::ODATA_BYTES),
            rdata_sent: c.get(src_ix::RDATA),
            ncf_sent: c.get(src_ix::NCF),
            naks_received: c.get(src_ix::NAKS),
            naks_outside_window: c.get(src_ix::NAKS_OUTSIDE),
            spm_sent: c.get(src_ix::SPM),
            spmr_received: c.get(src_ix::SPMR),
            repairs_dropped: c.get(src_ix::REPAIRS_DROPPED),
            ncf_bytes: c.get(src_ix::NCF_BYTES),
            rdata_tpdu_bytes: c.get(src_ix::RDATA_TPDU_BYTES),
            ncfs_dropped: c.get(src_ix::NCFS_DROPPED),
            naks_coalesced: c.get(src_ix::NAKS_COALESCED),
            repairs_expired: c.get(src_ix::REPAIRS_EXPIRED),
            send_errors: c.get(src_ix::SEND_ERRORS),
            packets_ignored: c.get(src_ix::IGNORED),
            // Written to the publish ring but not taken by the engine (exact also after
            // the worker stopped), plus numbered but not transmitted.
            unsent: self
                .writer
                .next_seq()
                .saturating_sub(c.get(src_ix::ACCEPTED))
                .saturating_add(c.get(src_ix::ENGINE_UNSENT)),
            control_lost: c.get(src_ix::CONTROL_LOST),
            control_reconnects: c.get(src_ix::CONTROL_RECONNECTS),
            frames: crate::worker::get_rx(c, src_ix::RX_FRAMES),
            naks_held_off: c.get(src_ix::NAKS_HELD_OFF),
            overrun: crate::worker::get_overruns(c, src_ix::OVERRUN),
        }
    }

    /// Ends the session: everything queued is sent, then FIN (SPM with OPT_FIN), and the
    /// worker keeps answering NAKs for `linger` before it stops. Returns final counters.
    pub fn finish(mut self, linger: Duration) -> Result<PublisherStats, Error> {
        self.stop(linger);
        match self.shared.failure() {
            Some(e) => Err(e),
            None => Ok(self.stats()),
        }
    }

    fn stop(&mut self, linger: Duration) {
        if let Some(t) = self.thread.take() {
            self.shared
                .linger_ns
                .store(linger.as_nanos() as u64, Ordering::Relaxed);
            self.shared.stop.store(true, Ordering::Release);
            self.shared.ring_always();
            let _ = t.join();
        }
    }
}

impl Drop for Publisher {
    /// Finishes with the configured linger (blocks for it).
    fn drop(&mut self) {
        let linger = self.linger;
        self.stop(linger);
    }
}
