//! [`XdpPort`]: one AF_XDP socket registered with xpgmd, seen as "PGM
//! packets in, PGM packets out" — what the `xpgm` crate's transport seam
//! (`Datapath`) needs for `--transport xdp`.
//!
//! Receive: frames are validated ([`crate::frame::parse`]) and the PGM
//! packet is lent to the caller straight from the UMEM frame (no copy).
//! Transmit: the PGM packet is copied once into a UMEM frame behind the
//! headers (the `Datapath` seam hands us a finished packet; the zero-copy
//! path where the engine writes into the frame is [`crate::worker`]).
//! Transmissions are batched: they are committed to the TX ring (one
//! wake-up) when the caller next receives or waits, or when the batch is full.
//!
//! A receiver registers with xpgmd when opened. A source registers as soon
//! as its owner knows the TSI ([`XdpPort::register_source`], called by the
//! `xpgm` publisher right after the port is opened and before its worker
//! starts): xpgmd needs the TSI source port to steer NAKs, and registering
//! then keeps the round trip to xpgmd (which may attach the classifier to the
//! interface first) out of the data path — the first message leaves at once
//! — and makes the queue visible in xpgmd's `sessions` from the start, so a
//! second process on the same queue gets xpgmd's "already used by pid N"
//! rather than the kernel's `EBUSY`. A source whose owner never calls it
//! registers on its first packet instead, whose PGM header carries the TSI
//! source port (the session's first packet is an SPM, so the steering is in
//! place before any receiver can NAK).

use core::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::PathBuf;
use std::time::Duration;

use xpgm_core::source::Destination;
use xpgm_core::wire::Nla;
use xpgm_core::wire::framing::Framing;

use crate::frame::{self, Mac, NeighbourCache, RxCounters, TxHeaders, ip_of, nla_of};
use crate::iface::InterfaceInfo;
use crate::link::{Link, TxOutcome};
use crate::register::{self, RegisterError, Registration, Role, SocketSpec};
use crate::xsk::{XskConfig, XskError, XskSocket};

/// Which side of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Sends to the group; receives NAK/SPMR.
    Source,
    /// Receives the group; sends NAK/SPMR.
    Receiver,
}

/// Configuration of a port.
#[derive(Clone, Debug)]
pub struct PortConfig {
    /// Interface.
    pub iface: String,
    /// Queue to bind.
    pub queue: u32,
    /// Group.
    pub group: IpAddr,
    /// PGM data port.
    pub dport: u16,
    /// UDP encapsulation port (both directions) or raw IP.
    pub udp_encap: Option<u16>,
    /// TTL / hop limit.
    pub ttl: u8,
    /// TOS / traffic class.
    pub tos: u8,
    /// xpgmd's socket (`None`: `XPGM_SOCKET` or `/run/xpgm/xpgmd.sock`).
    pub xpgmd_socket: Option<PathBuf>,
    /// UMEM geometry.
    pub xsk: XskConfig,
    /// Receiver: the shared delivery ring registered with xpgmd for other local
    /// consumers of the feed (`None`: not shared).
    pub ring: Option<PathBuf>,
    /// Receiver: join source-specifically to these sources (empty: any source).
    pub sources: Vec<IpAddr>,
}

/// Errors opening or registering a port.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Interface lookup.
    #[error("{0}")]
    Interface(std::io::Error),
    /// No address of the group's family.
    #[error("interface {iface} has no address of the family of {group}")]
    NoAddress {
        /// Interface.
        iface: String,
        /// Group.
        group: IpAddr,
    },
    /// AF_XDP.
    #[error(transparent)]
    Xsk(#[from] XskError),
    /// xpgmd.
    #[error(transparent)]
    Register(#[from] RegisterError),
}

/// One registered AF_XDP socket.
#[derive(Debug)]
pub struct XdpPort {
    sock: XskSocket,
    headers: TxHeaders,
    group: IpAddr,
    group_mac: Mac,
    accept: [IpAddr; 1],
    framing: Framing,
    neighbours: NeighbourCache,
    side: Side,
    iface: String,
    queue: u32,
    dport: u16,
    /// UDP encapsulation port registered with xpgmd (`None`: raw IP).
    udp_encap: Option<u16>,
    xpgmd: PathBuf,
    ring: Option<PathBuf>,
    sources: Vec<IpAddr>,
    registration: Option<Registration>,
    /// What the session registered as (role, TSI text), kept to register again with
    /// a restarted xpgmd ([`XdpPort::reregister`]).
    registered_as: Option<(Role, String)>,
    /// xpgmd ended the session because its interface was removed: never registered
    /// again.
    gone_for_good: bool,
    register_error: Option<RegisterError>,
    ident: u16,
    send_errors: u64,
    unsent: bool,
    /// What became of the frames received ([`XdpPort::rx_counters`]).
    rx: RxCounters,
}

impl XdpPort {
    /// Opens the socket; a receiver registers now (joins, steers).
    pub fn open(c: &PortConfig, side: Side) -> Result<Self, PortError> {
        let info = InterfaceInfo::lookup(&c.iface).map_err(PortError::Interface)?;
        let local = info
            .address_for(c.group)
            .ok_or_else(|| PortError::NoAddress {
                iface: c.iface.clone(),
                group: c.group,
            })?;
        let xpgmd = xpgm_control::socket_path(c.xpgmd_socket.as_deref());
        // Fail early with the "start xpgmd" message, before building a UMEM.
        if std::os::unix::net::UnixStream::connect(&xpgmd).is_err() {
            let err = std::io::Error::new(std::io::ErrorKind::NotFound, "no xpgmd listening");
            return Err(RegisterError::NotRunning { path: xpgmd, err }.into());
        }
        let sock = XskSocket::open(&c.iface, c.queue, c.xsk)?;
        let framing = match c.udp_encap {
            None => Framing::RawIp,
            Some(p) => Framing::Udp {
                ucast_port: p,
                mcast_port: p,
            },
        };
        let headers = TxHeaders {
            src_mac: info.mac,
            src_ip: local,
            framing,
            ttl: c.ttl,
            tos: c.tos,
        };
        let accept = match side {
            Side::Source => [local],
            Side::Receiver => [c.group],
        };
        let mut port = XdpPort {
            sock,
            headers,
            group: c.group,
            group_mac: Mac::of_multicast(c.group),
            accept,
            framing,
            neighbours: NeighbourCache::default(),
            side,
            iface: c.iface.clone(),
            queue: c.queue,
            dport: c.dport,
            udp_encap: c.udp_encap,
            xpgmd,
            ring: c.ring.clone(),
            sources: c.sources.clone(),
            registration: None,
            registered_as: None,
            gone_for_good: false,
            register_error: None,
            ident: 0,
            send_errors: 0,
            unsent: false,
            rx: RxCounters::default(),
        };
        if side == Side::Receiver {
            port.register(Role::Receiver, "")?;
        }
        Ok(port)
    }

    fn register(&mut self, role: Role, tsi: &str) -> Result<(), RegisterError> {
        self.register_within(role, tsi, None)
    }

    fn register_within(
        &mut self,
        role: Role,
        tsi: &str,
        timeout: Option<Duration>,
    ) -> Result<(), RegisterError> {
        let spec = [SocketSpec {
            iface: &self.iface,
            queue: self.queue,
            fd: self.sock.fd(),
        }];
        let ring = match role {
            Role::Receiver => self.ring.as_deref(),
            Role::Source { .. } => None,
        };
        let req = register::Request {
            ring,
            sources: &self.sources,
            ..register::Request::new(&role, self.group, self.dport, tsi, &spec)
                .udp_port(self.udp_encap)
        };
        let r = register::register_within(&self.xpgmd, &req, timeout)?;
        self.registration = Some(r);
        self.registered_as = Some((role, tsi.to_owned()));
        Ok(())
    }

    /// Whether the session has lost xpgmd, without blocking: `Some(cause)` once,
    /// when the registration's connection has closed (xpgmd exited or crashed) or
    /// xpgmd sent a `session_error` (interface down or removed). The registration is
    /// then dropped; [`XdpPort::reregister`] makes a new one. `None` while
    /// registered, before a source has registered, and after a loss already
    /// reported. While xpgmd is gone the socket stays bound and can transmit, but
    /// nothing keeps frames steered to it: xpgmd's shutdown detaches the classifier,
    /// and with xpgmd gone its group memberships go too (in scripts/test-xdp a
    /// receiver stops receiving within milliseconds of xpgmd's SIGTERM or SIGKILL).
    pub fn control_lost(&mut self) -> Option<String> {
        let loss = self.registration.as_mut()?.check().err()?;
        self.registration = None;
        if loss.code.as_deref() == Some("interface_removed") {
            // The socket is bound to a device that no longer exists: registering it
            // again (even with an interface of the same name) could never receive.
            self.gone_for_good = true;
        }
        Some(loss.cause)
    }

    /// Registers the session again, with the parameters of its first registration
    /// and the same socket, with the xpgmd now listening on the control socket (a
    /// restarted one inserts the socket into its own classifier's map). `Ok(true)`:
    /// registered; `Ok(false)`: no xpgmd answers yet (try again later); an error:
    /// xpgmd refused (e.g. another session took the feed meanwhile). Waits at most
    /// `timeout` for the reply. Registered already, or never registered: `Ok(true)`.
    pub fn reregister(&mut self, timeout: Duration) -> Result<bool, RegisterError> {
        if self.registration.is_some() {
            return Ok(true);
        }
        if self.gone_for_good {
            return Err(RegisterError::InterfaceGone {
                iface: self.iface.clone(),
            });
        }
        let Some((role, tsi)) = self.registered_as.clone() else {
            return Ok(true);
        };
        match self.register_within(role, &tsi, Some(timeout)) {
            Ok(()) => Ok(true),
            // Not back yet, or its interface is down for now: retry within the grace.
            Err(RegisterError::NotRunning { .. } | RegisterError::Io(_)) => Ok(false),
            Err(RegisterError::Refused { code, .. }) if code == "interface_down" => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Source: registers the session with xpgmd now, with the TSI source
    /// port `source_port` (NAKs to it are steered to this socket) and the TSI
    /// `tsi` as text (shown by `xpgmctl sessions`). Idempotent: a port that
    /// is already registered keeps its registration. On failure nothing is
    /// registered and the error is returned (it is not deferred to the first
    /// packet); a receiver port registered when opened.
    pub fn register_source(&mut self, source_port: u16, tsi: &str) -> Result<(), RegisterError> {
        if self.side != Side::Source || self.registered_as.is_some() {
            return Ok(());
        }
        let role = Role::Source {
            source_port,
            local_address: self.headers.src_ip,
        };
        self.register(role, tsi)
    }

    /// The socket (mode, statistics).
    pub fn socket(&self) -> &XskSocket {
        &self.sock
    }

    /// xpgmd's session id, once registered.
    pub fn xpgmd_session(&self) -> Option<u64> {
        self.registration.as_ref().map(|r| r.session)
    }

    /// The source's deferred registration failed (reported once).
    pub fn take_register_error(&mut self) -> Option<RegisterError> {
        self.register_error.take()
    }

    /// Our address as an NLA.
    pub fn local_nla(&self) -> Nla {
        nla_of(self.headers.src_ip)
    }

    /// The socket's kernel counters (`XDP_STATISTICS`, one system call); `None` if
    /// they cannot be read.
    pub fn kernel_stats(&self) -> Option<crate::xsk::KernelStats> {
        self.sock.kernel_stats()
    }

    /// Packets that could not be sent (no TX frame, unknown neighbour).
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    /// Receives up to `max` PGM packets, calling `f(source, pgm)` for each
    /// frame that passed validation. Commits pending transmissions first.
    pub fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(Nla, &[u8])) -> usize {
        self.flush_tx();
        let (framing, accept, neighbours) = (self.framing, &self.accept, &mut self.neighbours);
        let rx = &mut self.rx;
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let mut n = 0;
        self.sock.recv(max, &mut |bytes| {
            let r = frame::parse(bytes, framing, accept);
            rx.count(&r);
            if let Ok(fr) = r {
                neighbours.learn(fr.src_ip, fr.src_mac);
                f(nla_of(fr.src_ip), fr.pgm);
                n += 1;
            }
        });
        n
    }

    /// Per-reason counts of the frames received so far: refused ones (never handed
    /// to the caller) and those accepted on their PGM checksum alone.
    pub fn rx_counters(&self) -> RxCounters {
        self.rx
    }

    /// Sends one PGM packet (copied into a UMEM frame). Returns false when
    /// it could not be sent (counted; the protocol repairs it like a loss).
    pub fn send(&mut self, dest: Destination, pgm: &[u8]) -> bool {
        if self.side == Side::Source
            && self.registered_as.is_none()
            && self.register_error.is_none()
        {
            let sport = pgm.get(..2).map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
            let local = self.headers.src_ip;
            if let Err(e) = self.register(
                Role::Source {
                    source_port: sport,
                    local_address: local,
                },
                "",
            ) {
                self.register_error = Some(e);
            }
        }
        let (dst_ip, dst_mac) = match dest {
            Destination::Group => (self.group, self.group_mac),
            Destination::Unicast(nla) => {
                let ip = ip_of(nla);
                match self
                    .neighbours
                    .lookup(ip)
                    .or_else(|| frame::kernel_neighbour(ip))
                {
                    Some(mac) => (ip, mac),
                    None => {
                        self.send_errors += 1;
                        return false;
                    }
                }
            }
        };
        let off = self.headers.pgm_offset();
        let mut out = TxOutcome::NoBuffer;
        for attempt in 0..2 {
            if attempt == 1 {
                // Every TX frame is in flight: push them out, reclaim, retry once.
                self.flush_tx();
            }
            let (headers, ident) = (&self.headers, &mut self.ident);
            out = self.sock.send(&mut |buf| {
                buf.get_mut(off..off + pgm.len())?.copy_from_slice(pgm);
                *ident = ident.wrapping_add(1);
                headers.write(buf, dst_mac, dst_ip, pgm.len(), *ident).ok()
            });
            if out != TxOutcome::NoBuffer {
                break;
            }
        }
        match out {
            TxOutcome::Queued => {
                self.unsent = true;
                true
            }
            TxOutcome::NoBuffer | TxOutcome::Cancelled => {
                self.send_errors += 1;
                false
            }
        }
    }

    /// Commits pending transmissions to the TX ring now (they are otherwise
    /// committed when the caller next receives or waits).
    pub fn commit(&mut self) {
        self.flush_tx();
    }

    fn flush_tx(&mut self) {
        self.sock.flush();
        self.unsent = false;
    }

    /// Commits pending transmissions, then sleeps until a frame arrives on
    /// the socket, `doorbell` becomes readable, or `timeout` passes.
    pub fn wait(&mut self, doorbell: Option<BorrowedFd<'_>>, timeout: Option<Duration>) {
        self.flush_tx();
        let mut fds = [
            libc::pollfd {
                fd: self.sock.fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: doorbell.map_or(-1, |d| d.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // While transmissions are still completing, do not sleep long: the
        // completion ring has no wake-up of its own.
        let cap = Duration::from_millis(1);
        let t = timeout.map_or(cap, |t| t.min(cap));
        crate::xsk::poll_fds(&mut fds, t);
    }
}
