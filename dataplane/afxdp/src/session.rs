//! High-level AF_XDP sessions for applications and the `xpgm` CLI: open the
//! socket, register it with xpgmd, start a pinned worker, talk to it through
//! rings.

use core::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use xpgm_core::config::{ReceiverConfig, SourceConfig};
use xpgm_core::receiver::Receiver;
use xpgm_core::source::Source;
use xpgm_core::wire::framing::Framing;
use xpgm_core::wire::{DEFAULT_DATA_PORT, Gsi, Tsi};
use xpgm_ring::{Mode, Reader, Received, RecvError, Ring, RingConfig, SendError, Writer};

use crate::frame::{DSCP_EF_TOS, TxHeaders, nla_of};
use crate::iface::InterfaceInfo;
use crate::register::{self, Registration, Role, SocketSpec};
use crate::worker::{
    self, Clock, IdleMode, ReceiverSession, Session, SessionCounters, SourceSession, WorkerConfig,
    WorkerHandle,
};
use crate::xsk::{BindMode, XskConfig, XskSocket};

/// Options shared by senders and receivers.
#[derive(Clone, Debug)]
pub struct XdpOptions {
    /// Interface.
    pub iface: String,
    /// Receive queue the socket binds to.
    pub queue: u32,
    /// Multicast group.
    pub group: IpAddr,
    /// PGM data port.
    pub dport: u16,
    /// UDP encapsulation port (`None`: raw IP protocol 113). The same port
    /// is used upstream and downstream.
    pub udp_encap: Option<u16>,
    /// xpgmd socket (`xpgm_control::socket_path` rule when `None`).
    pub xpgmd_socket: Option<PathBuf>,
    /// Core to pin the worker to.
    pub core: Option<usize>,
    /// Busy-poll or sleep when idle.
    pub idle: IdleMode,
    /// Largest message.
    pub max_msg: usize,
    /// UMEM / socket geometry.
    pub xsk: XskConfig,
    /// IPv4 TTL / IPv6 hop limit.
    pub ttl: u8,
    /// Source only: TXW_MAX_RTE in bytes per second (0: unlimited).
    pub rate_bytes: u64,
}

impl XdpOptions {
    /// Defaults for `iface` and `group`.
    pub fn new(iface: &str, group: IpAddr) -> Self {
        Self {
            iface: iface.to_string(),
            queue: 0,
            group,
            dport: DEFAULT_DATA_PORT,
            udp_encap: None,
            xpgmd_socket: None,
            core: None,
            idle: IdleMode::BusyPoll,
            max_msg: 2048,
            xsk: XskConfig::default(),
            ttl: 16,
            rate_bytes: 0,
        }
    }

    fn framing(&self) -> Framing {
        match self.udp_encap {
            None => Framing::RawIp,
            Some(p) => Framing::Udp {
                ucast_port: p,
                mcast_port: p,
            },
        }
    }
}

/// Errors opening a session.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Interface problem.
    #[error("{0}")]
    Interface(std::io::Error),
    /// No address of the group's family on the interface.
    #[error("interface {iface} has no address of the family of {group}")]
    NoAddress {
        /// Interface.
        iface: String,
        /// Group.
        group: IpAddr,
    },
    /// Not a multicast group.
    #[error("{0} is not a multicast address")]
    NotMulticast(IpAddr),
    /// AF_XDP socket.
    #[error(transparent)]
    Xsk(#[from] crate::xsk::XskError),
    /// xpgmd registration.
    #[error(transparent)]
    Register(#[from] register::RegisterError),
    /// Engine configuration.
    #[error("engine configuration: {0}")]
    Config(String),
    /// Rings.
    #[error("ring: {0}")]
    Ring(#[from] xpgm_ring::RingError),
    /// Worker thread.
    #[error("worker thread: {0}")]
    Thread(std::io::Error),
}

struct Opened {
    info: InterfaceInfo,
    local: IpAddr,
    sock: XskSocket,
    headers: TxHeaders,
    max_tpdu: usize,
}

fn open_socket(o: &XdpOptions) -> Result<Opened, SessionError> {
    if !o.group.is_multicast() {
        return Err(SessionError::NotMulticast(o.group));
    }
    let info = InterfaceInfo::lookup(&o.iface).map_err(SessionError::Interface)?;
    let local = info
        .address_for(o.group)
        .ok_or_else(|| SessionError::NoAddress {
            iface: o.iface.clone(),
            group: o.group,
        })?;
    let sock = XskSocket::open(&o.iface, o.queue, o.xsk)?;
    let headers = TxHeaders {
        src_mac: info.mac,
        src_ip: local,
        framing: o.framing(),
        ttl: o.ttl,
        tos: DSCP_EF_TOS,
    };
    let ip_len = headers.pgm_offset() - crate::frame::ETH_HEADER_LEN;
    let max_tpdu = info
        .mtu
        .min(o.xsk.frame_size as usize - crate::frame::ETH_HEADER_LEN)
        .saturating_sub(ip_len);
    Ok(Opened {
        info,
        local,
        sock,
        headers,
        max_tpdu,
    })
}

fn xpgmd_path(o: &XdpOptions) -> PathBuf {
    xpgm_control::socket_path(o.xpgmd_socket.as_deref())
}

fn make_tsi() -> Tsi {
    // GSI: 6 bytes from the pid and the clock (OpenPGM hashes the host
    // name; uniqueness per session is what matters). Not cryptographic.
    let pid = std::process::id();
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mix = (u64::from(pid) << 32) ^ t ^ (t >> 29);
    let b = mix.to_be_bytes();
    let sport = 1024 + ((mix >> 7) % 60000) as u16;
    Tsi {
        gsi: Gsi([b[2], b[3], b[4], b[5], b[6], b[7]]),
        sport,
    }
}

fn tsi_string(t: &Tsi) -> String {
    let g = t.gsi.0;
    format!(
        "{}.{}.{}.{}.{}.{}.{}",
        g[0], g[1], g[2], g[3], g[4], g[5], t.sport
    )
}

/// The engine configuration of an [`XdpSender`]. The transmit window is the
/// core's default (`txw_sqns` 2^21, `txw_max_bytes` 128 MiB, TSDUs byte-packed),
/// as for the `xpgm` publisher: the byte bound, not `sqns × max_tpdu`, sizes the
/// arena, so small messages get the whole sequence window without each reserving
/// a full TPDU.
fn source_config(o: &XdpOptions, local: IpAddr, max_tpdu: usize) -> SourceConfig {
    SourceConfig {
        dport: o.dport,
        group: nla_of(o.group),
        path_nla: nla_of(local),
        max_tpdu,
        max_apdu: o.max_msg,
        txw_max_rte: o.rate_bytes,
        ..SourceConfig::default()
    }
}

/// A sending AF_XDP session.
#[derive(Debug)]
pub struct XdpSender {
    publish: Writer,
    counters: Arc<SessionCounters>,
    worker: Option<WorkerHandle>,
    registration: Option<Registration>,
    mode: BindMode,
    huge_pages: bool,
    tsi: Tsi,
}

impl XdpSender {
    /// Opens the socket, registers with xpgmd and starts the worker.
    pub fn open(o: &XdpOptions) -> Result<Self, SessionError> {
        let op = open_socket(o)?;
        let tsi = make_tsi();
        let cfg = source_config(o, op.local, op.max_tpdu);
        let clock = Clock::new();
        let engine = Source::new(cfg, tsi, clock.now())
            .map_err(|e| SessionError::Config(format!("{e:?}")))?;
        let ring = Ring::new(RingConfig {
            capacity: 4096,
            max_msg: o.max_msg,
            max_readers: 1,
            mode: Mode::BackPressure,
        })?;
        let reader = ring.reader()?;
        let publish = ring.writer()?;
        let counters = Arc::new(SessionCounters::default());
        let spec = [SocketSpec {
            iface: &op.info.name,
            queue: o.queue,
            fd: op.sock.fd(),
        }];
        let role = Role::Source {
            source_port: tsi.sport,
            local_address: op.local,
        };
        let tsi_text = tsi_string(&tsi);
        let registration = register::register(
            &xpgmd_path(o),
            &register::Request::new(&role, o.group, o.dport, &tsi_text, &spec)
                .udp_port(o.udp_encap),
        )?;
        let (mode, huge_pages) = (op.sock.mode(), op.sock.huge_pages());
        let session = SourceSession::new(
            op.sock,
            engine,
            reader,
            op.headers,
            o.group,
            counters.clone(),
        );
        let sessions: Vec<Box<dyn Session + Send>> = vec![Box::new(session)];
        let worker = worker::spawn(
            sessions,
            WorkerConfig {
                core: o.core,
                idle: o.idle,
            },
            clock,
        )
        .map_err(SessionError::Thread)?;
        Ok(Self {
            publish,
            counters,
            worker: Some(worker),
            registration: Some(registration),
            mode,
            huge_pages,
            tsi,
        })
    }

    /// Queues one message; `Full` when the worker (rate, window) is behind:
    /// nothing is dropped silently.
    pub fn try_send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        self.publish.try_send(msg).map(|_| ())
    }

    /// Queues one message, waiting while the ring is full.
    pub fn send(&mut self, msg: &[u8]) -> Result<(), SendError> {
        loop {
            match self.publish.try_send(msg) {
                Ok(_) => return Ok(()),
                Err(SendError::Full) => std::thread::yield_now(),
                Err(e) => return Err(e),
            }
        }
    }

    /// Counters (ODATA, RDATA, NCF sent; NAKs received).
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// Zero-copy or copy mode.
    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// Whether the UMEM is on huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// The session's TSI.
    pub fn tsi(&self) -> Tsi {
        self.tsi
    }

    /// xpgmd's session id.
    pub fn xpgmd_session(&self) -> Option<u64> {
        self.registration.as_ref().map(|r| r.session)
    }

    /// Sends everything queued, starts OPT_FIN, keeps answering NAKs for
    /// `linger`, then stops the worker and ends the xpgmd session.
    pub fn close(mut self, linger: Duration) {
        self.counters.close.store(true, Relaxed);
        let t = std::time::Instant::now();
        while !self.counters.drained.load(Relaxed) && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        std::thread::sleep(linger);
        if let Some(w) = self.worker.take() {
            w.stop();
        }
        self.registration.take();
    }
}

/// A receiving AF_XDP session.
#[derive(Debug)]
pub struct XdpReceiver {
    delivery: Reader,
    counters: Arc<SessionCounters>,
    worker: Option<WorkerHandle>,
    registration: Option<Registration>,
    mode: BindMode,
    huge_pages: bool,
    /// Messages lost because this reader was lapped in the delivery ring.
    pub lapped: u64,
}

impl XdpReceiver {
    /// Opens the socket, registers with xpgmd (which joins the group and
    /// steers the feed to the socket) and starts the worker. A second
    /// AF_XDP receiver of the same feed on this host gets
    /// [`register::RegisterError::AlreadyServed`].
    pub fn open(o: &XdpOptions) -> Result<Self, SessionError> {
        let op = open_socket(o)?;
        // Receive window: the core's defaults (byte-budgeted, see docs/defaults.md).
        let cfg = ReceiverConfig {
            dport: o.dport,
            group: nla_of(o.group),
            max_tpdu: op.max_tpdu.max(1500),
            max_apdu: o.max_msg,
            ..ReceiverConfig::default()
        };
        let seed = u64::from(std::process::id()) ^ 0x9e37_79b9_7f4a_7c15;
        let engine = Receiver::new(cfg, nla_of(op.local), seed)
            .map_err(|e| SessionError::Config(format!("{e:?}")))?;
        let ring = Ring::new(RingConfig {
            capacity: 8192,
            max_msg: o.max_msg,
            max_readers: 4,
            mode: Mode::Broadcast,
        })?;
        let delivery = ring.reader()?;
        let writer = ring.writer()?;
        let counters = Arc::new(SessionCounters::default());
        let spec = [SocketSpec {
            iface: &op.info.name,
            queue: o.queue,
            fd: op.sock.fd(),
        }];
        let registration = register::register(
            &xpgmd_path(o),
            &register::Request::new(&Role::Receiver, o.group, o.dport, "", &spec)
                .udp_port(o.udp_encap),
        )?;
        let (mode, huge_pages) = (op.sock.mode(), op.sock.huge_pages());
        let session = ReceiverSession::new(
            op.sock,
            engine,
            writer,
            op.headers,
            o.group,
            counters.clone(),
        );
        let sessions: Vec<Box<dyn Session + Send>> = vec![Box::new(session)];
        let worker = worker::spawn(
            sessions,
            WorkerConfig {
                core: o.core,
                idle: o.idle,
            },
            Clock::new(),
        )
        .map_err(SessionError::Thread)?;
        Ok(Self {
            delivery,
            counters,
            worker: Some(worker),
            registration: Some(registration),
            mode,
            huge_pages,
            lapped: 0,
        })
    }

    /// Non-blocking receive into `buf`; `Ok(None)` when nothing is ready.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Result<Option<Received>, RecvError> {
        loop {
            match self.delivery.try_recv(buf) {
                Ok(m) => return Ok(Some(m)),
                Err(RecvError::Empty) => return Ok(None),
                Err(RecvError::Lapped { missed }) => self.lapped += missed,
                Err(e) => return Err(e),
            }
        }
    }

    /// Counters (delivered, unrecoverable, NAKs sent, duplicates).
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// Zero-copy or copy mode.
    pub fn mode(&self) -> BindMode {
        self.mode
    }

    /// Whether the UMEM is on huge pages.
    pub fn huge_pages(&self) -> bool {
        self.huge_pages
    }

    /// xpgmd's session id.
    pub fn xpgmd_session(&self) -> Option<u64> {
        self.registration.as_ref().map(|r| r.session)
    }

    /// Stops the worker and ends the xpgmd session.
    pub fn close(mut self) {
        if let Some(w) = self.worker.take() {
            w.stop();
        }
        self.registration.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sender_uses_the_cores_transmit_window() {
        let mut o = XdpOptions::new("eth0", "239.192.0.9".parse().unwrap());
        o.rate_bytes = 1_000_000;
        let c = source_config(&o, "10.0.0.1".parse().unwrap(), 1472);
        let d = SourceConfig::default();
        assert_eq!((c.txw_sqns, c.txw_max_bytes), (d.txw_sqns, d.txw_max_bytes));
        assert_eq!(c.txw_secs, d.txw_secs);
        assert_eq!(
            (c.max_tpdu, c.max_apdu, c.txw_max_rte),
            (1472, 2048, 1_000_000)
        );
        assert_eq!(c.path_nla, nla_of("10.0.0.1".parse().unwrap()));
        assert!(c.validate().is_ok(), "{:?}", c.validate());
    }
}
