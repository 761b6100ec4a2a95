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
use xpgm_core::wire::Nla;

use super::{Datapath, Role, SessionConfig};
use crate::Error;

/// One AF_XDP socket on queue 0 of the session's interface.
#[derive(Debug)]
pub struct XdpDatapath {
    port: XdpPort,
}

impl XdpDatapath {
    /// Opens the socket and (receiver) registers with xpgmd; a source registers on
    /// its first packet. Prints which data path (zero-copy or copy) the kernel chose.
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
            xsk: XskConfig::default(),
            ring: ring.map(Path::to_path_buf),
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
        Ok(XdpDatapath { port })
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
}
