//! The subscribing handle: the receiver worker delivers data and loss events to it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant as StdInstant};

use xpgm_core::config::ReceiverConfig;
use xpgm_core::receiver::Receiver;
use xpgm_core::wire::{Gsi, Nla, Tsi};
use xpgm_ring::{Mode, RecvError, Ring, RingConfig};

use crate::Error;
use crate::delivery::{self, Delivery};
use crate::publisher::{nla_of, random_bytes};
use crate::transport::{self, Role, SessionConfig, TransportKind};
use crate::worker::{Clock, ReceiverWorker, Shared, rcv_ix};

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
}

impl SubscriberConfig {
    /// Defaults for `session`.
    pub fn new(session: SessionConfig) -> Self {
        SubscriberConfig {
            session,
            receiver: ReceiverConfig::default(),
            max_message: 16 << 10,
            queue_capacity: 16384,
        }
    }
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
}

/// A PGM receiver: joins the group and yields [`Delivery`] items in order.
#[derive(Debug)]
pub struct Subscriber {
    reader: xpgm_ring::Reader,
    buf: Box<[u8]>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    local: Nla,
    transport: TransportKind,
}

impl Subscriber {
    /// Opens the transport (joining the group), creates the receiver and starts its
    /// worker thread.
    pub fn new(config: SubscriberConfig) -> Result<Subscriber, Error> {
        let dp = transport::open(&config.session, Role::Receiver)?;
        Subscriber::with_datapath(config, dp)
    }

    /// Like [`Subscriber::new`] over a datapath opened by the caller (another transport,
    /// or a test double); `config.session` then only supplies group, port and sizes.
    pub fn with_datapath(
        config: SubscriberConfig,
        dp: Box<dyn transport::Datapath>,
    ) -> Result<Subscriber, Error> {
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
        let mut rcfg = config.receiver.clone();
        rcfg.dport = config.session.dport;
        rcfg.group = nla_of(config.session.group);
        rcfg.max_tpdu = config.session.max_tpdu();
        rcfg.max_apdu = config.max_message;
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
            .with_stats(stats);
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
                Ok(r) => break r.len,
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
        match self.reader.try_recv(&mut self.buf) {
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
        let n = self.reader.recv_batch(&mut self.buf, max, |_, bytes| {
            match delivery::decode(bytes) {
                Some(d) => f(d),
                None => bad = true,
            }
        });
        match n {
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
        }
    }

    /// Stops the worker (leaving the group) and returns the final counters.
    pub fn close(mut self) -> Result<SubscriberStats, Error> {
        self.stop();
        match self.shared.failure() {
            Some(e) => Err(e),
            None => Ok(self.stats()),
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
