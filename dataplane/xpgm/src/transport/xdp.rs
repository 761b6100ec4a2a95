//! AF_XDP transport: a [`Datapath`] over `xpgm_afxdp::port::XdpPort` (an AF_XDP
//! socket registered with xpgmd, which attaches the classifier, steers the session's
//! frames to the socket and joins the group). See docs/afxdp.md.

use std::os::fd::BorrowedFd;
use std::path::Path;
use std::time::Duration;

use xpgm_afxdp::port::{PortConfig, Side, XdpPort};
pub use xpgm_afxdp::register::Served;
use xpgm_afxdp::xsk::XskConfig;
use xpgm_core::source::Destination;
use xpgm_core::wire::{Nla, Tsi};

use super::{Datapath, Overruns, Role, SessionConfig};
use crate::Error;

/// One AF_XDP socket on queue 0 of the session's interface.
#[derive(Debug)]
pub struct XdpDatapath {
    port: XdpPort,
    /// Last overruns read (kept when a read fails).
    overruns: Overruns,
}

impl XdpDatapath {
    /// Opens the socket and (receiver) registers with xpgmd; a source registers when
    /// the publisher announces its TSI ([`Datapath::start_source`]), before its worker
    /// starts, so that the first message does not wait on xpgmd. Prints which data path (zero-copy or copy) the kernel chose.
    pub fn open(config: &SessionConfig, role: Role) -> Result<Self, Error> {
        Self::open_shared(config, role, None)
    }

    /// Like [`XdpDatapath::open`]; a receiver also registers `ring`, the path of its
    /// shared delivery ring, with xpgmd (see [`find_served`]).
    pub fn open_shared(
        config: &SessionConfig,
        role: Role,
        ring: Option<&Path>,
    ) -> Result<Self, Error> {
        check_queue_free(config, role)?;
        let pc = PortConfig {
            iface: config.iface.clone(),
            queue: QUEUE,
            group: config.group,
            dport: config.dport,
            udp_encap: config.udp_encap,
            ttl: config.ttl,
            tos: config.tos,
            xpgmd_socket: config.xpgmd_socket.clone(),
            xsk: XskConfig {
                frames: config.xdp_frames,
                ..XskConfig::default()
            },
            ring: ring.map(Path::to_path_buf),
            sources: config.sources.clone(),
        };
        let side = match role {
            Role::Source => Side::Source,
            Role::Receiver => Side::Receiver,
        };
        let port = XdpPort::open(&pc, side).map_err(|e| Error::Xdp(e.to_string()))?;
        let s = port.socket();
        eprintln!(
            "xpgm: AF_XDP socket on {} queue {}: {} mode, UMEM on {} pages",
            s.iface(),
            s.queue(),
            s.mode().as_str(),
            if s.huge_pages() { "huge" } else { "4 KiB" }
        );
        Ok(XdpDatapath {
            port,
            overruns: Overruns::default(),
        })
    }
}

/// The queue the CLI and library bind (one queue per session, see docs/afxdp.md).
pub const QUEUE: u32 = 0;

/// Asks xpgmd whether a receiver on this host already takes the feed of `config`
/// (same interface, queue, group and port) over AF_XDP, before any socket is bound.
pub fn find_served(config: &SessionConfig) -> Result<Option<Served>, Error> {
    let path = xpgm_afxdp::register::xpgmd_socket(config.xpgmd_socket.as_deref());
    xpgm_afxdp::register::find_served(&path, &config.iface, QUEUE, config.group, config.dport)
        .map_err(|e| Error::Xdp(e.to_string()))
}

/// Fails with a clear error, before any bind, if another session already holds an
/// AF_XDP socket on the queue we would bind (the kernel would refuse the bind with
/// `EBUSY`). A further receiver of a feed already received here never gets this far:
/// it attaches to the first one's shared ring ([`crate::Subscriber::new`]).
fn check_queue_free(config: &SessionConfig, role: Role) -> Result<(), Error> {
    let path = xpgm_afxdp::register::xpgmd_socket(config.xpgmd_socket.as_deref());
    let user = xpgm_afxdp::register::find_queue_user(&path, &config.iface, QUEUE)
        .map_err(|e| Error::Xdp(e.to_string()))?;
    let Some(u) = user else { return Ok(()) };
    let me = match role {
        Role::Source => "source",
        Role::Receiver => "receiver",
    };
    Err(Error::Xdp(format!(
        "{iface} queue {QUEUE} is already used on this host by an AF_XDP {role} (pid {pid}, \
         xpgmd session {session}, group {group} port {port}); xpgm binds one AF_XDP socket per \
         interface queue, so this {me} cannot also use --transport xdp on {iface} (only further \
         receivers of a feed already received here can: they share its deliveries). Use \
         --transport socket for this {me}, or another interface",
        iface = config.iface,
        role = u.role,
        pid = u.pid,
        session = u.session,
        group = u.group,
        port = u.port,
    )))
}

impl Datapath for XdpDatapath {
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error> {
        if let Some(e) = self.port.take_register_error() {
            return Err(Error::Xdp(e.to_string()));
        }
        Ok(self.port.recv_batch(max, f))
    }

    fn send(&mut self, dest: Destination, pgm: &[u8]) -> Result<(), Error> {
        // A frame that cannot be sent is counted in send_errors and repaired as loss.
        self.port.send(dest, pgm);
        Ok(())
    }

    fn wait(
        &mut self,
        doorbell: Option<BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        self.port.wait(doorbell, timeout);
        Ok(())
    }

    fn local_nla(&self) -> Nla {
        self.port.local_nla()
    }

    fn send_errors(&self) -> u64 {
        self.port.send_errors()
    }

    fn start_source(&mut self, tsi: Tsi) -> Result<(), Error> {
        self.port
            .register_source(tsi.sport, &tsi.to_string())
            .map_err(|e| Error::Xdp(e.to_string()))
    }

    fn commit(&mut self) {
        self.port.commit();
    }

    fn prepare_wait(&mut self) -> Option<Duration> {
        self.port.commit();
        // As XdpPort::wait: the completion ring has no wake-up of its own.
        Some(Duration::from_millis(1))
    }

    fn readable_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.port.socket().fd())
    }

    fn has_control(&self) -> bool {
        true
    }

    fn control_lost(&mut self) -> Option<String> {
        self.port.control_lost()
    }

    fn overruns(&mut self) -> Overruns {
        if let Some(k) = self.port.kernel_stats() {
            self.overruns = overruns_of(&k);
        }
        self.overruns
    }

    fn rx_counters(&self) -> super::RxCounters {
        self.port.rx_counters()
    }

    fn reconnect_control(&mut self) -> Result<bool, Error> {
        self.port
            .reregister(REREGISTER_TIMEOUT)
            .map_err(|e| Error::Xdp(e.to_string()))
    }
}

/// The overrun counters of a socket's `XDP_STATISTICS` (docs/reliability.md
/// section 7). `rx_invalid_descs` is not an overrun (it would be a bug of ours in the
/// fill ring) and is left out.
fn overruns_of(k: &xpgm_afxdp::xsk::KernelStats) -> Overruns {
    Overruns {
        xdp_rx_dropped: k.rx_dropped,
        xdp_rx_ring_full: k.rx_ring_full,
        xdp_fill_ring_empty: k.rx_fill_ring_empty_descs,
        socket_drops: 0,
    }
}

/// Longest wait for a restarted xpgmd's reply to a re-registration (the worker
/// thread waits; data keeps arriving in the socket's ring meanwhile).
const REREGISTER_TIMEOUT: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    //! The publisher's side of the seam that lets an AF_XDP source register with
    //! xpgmd before anything is sent ([`Datapath::start_source`]), checked with a
    //! recording datapath (the AF_XDP side itself needs root and xpgmd: e2e_xdp.rs).

    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::publisher::{Publisher, PublisherConfig};
    use crate::transport::SessionConfig;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Call {
        Start(Tsi),
        /// A packet with the TSI source port of its PGM header.
        Send(u16),
    }

    #[derive(Debug)]
    struct Recorder {
        calls: Arc<Mutex<Vec<Call>>>,
        refuse: bool,
    }

    impl Datapath for Recorder {
        fn recv_batch(&mut self, _: usize, _: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error> {
            Ok(0)
        }

        fn send(&mut self, _: Destination, pgm: &[u8]) -> Result<(), Error> {
            let sport = pgm.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let mut c = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            if c.len() < 64 {
                c.push(Call::Send(sport));
            }
            Ok(())
        }

        fn wait(&mut self, _: Option<BorrowedFd<'_>>, t: Option<Duration>) -> Result<(), Error> {
            std::thread::sleep(
                t.unwrap_or(Duration::from_millis(1))
                    .min(Duration::from_millis(1)),
            );
            Ok(())
        }

        fn local_nla(&self) -> Nla {
            Nla::V4("10.1.0.1".parse().unwrap())
        }

        fn send_errors(&self) -> u64 {
            0
        }

        fn start_source(&mut self, tsi: Tsi) -> Result<(), Error> {
            self.calls
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Call::Start(tsi));
            if self.refuse {
                return Err(Error::Xdp("xpgmd is not running".into()));
            }
            Ok(())
        }
    }

    #[test]
    fn xdp_statistics_map_to_overruns_without_double_counting_fill_ring_empty() {
        let k = xpgm_afxdp::xsk::KernelStats {
            rx_dropped: 7,
            rx_invalid_descs: 100,
            rx_ring_full: 11,
            rx_fill_ring_empty_descs: 5,
            tx_invalid_descs: 1000,
            tx_ring_empty_descs: 2000,
        };
        let o = overruns_of(&k);
        assert_eq!(
            o,
            Overruns {
                xdp_rx_dropped: 7,
                xdp_rx_ring_full: 11,
                xdp_fill_ring_empty: 5,
                socket_drops: 0,
            }
        );
        // Fill-ring-empty drops are already in rx_dropped; invalid descriptors and
        // TX counters are not overruns.
        assert_eq!(o.total(), 18);
    }

    fn config() -> PublisherConfig {
        PublisherConfig::new(SessionConfig::new("lo", "239.192.7.7".parse().unwrap()))
    }

    #[test]
    fn the_source_is_announced_once_with_its_tsi_before_anything_is_sent() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let dp = Recorder {
            calls: calls.clone(),
            refuse: false,
        };
        let mut p = Publisher::with_datapath(config(), Box::new(dp)).unwrap();
        let tsi = p.tsi();
        // Announced by the time the publisher exists, before the first message.
        let first = calls.lock().unwrap().first().cloned();
        assert_eq!(first, Some(Call::Start(tsi)));
        p.send(b"hello, world").unwrap();
        p.flush(Duration::from_secs(10)).unwrap();
        p.finish(Duration::ZERO).unwrap();
        let calls = calls.lock().unwrap().clone();
        let starts = calls.iter().filter(|c| matches!(c, Call::Start(_))).count();
        assert_eq!(starts, 1, "{calls:?}");
        let sends: Vec<u16> = calls
            .iter()
            .filter_map(|c| match c {
                Call::Send(s) => Some(*s),
                Call::Start(_) => None,
            })
            .collect();
        assert!(!sends.is_empty(), "{calls:?}");
        // Every packet carries the source port that was announced (and that xpgmd
        // steers NAKs by).
        assert!(sends.iter().all(|&s| s == tsi.sport), "{calls:?}");
    }

    #[test]
    fn a_refused_announcement_fails_the_publisher_and_nothing_is_sent() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let dp = Recorder {
            calls: calls.clone(),
            refuse: true,
        };
        let e = Publisher::with_datapath(config(), Box::new(dp)).unwrap_err();
        assert!(e.to_string().contains("xpgmd is not running"), "{e}");
        let calls = calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(matches!(calls[0], Call::Start(_)), "{calls:?}");
    }
}
