//! A host that is both a PGM source (on one group) and a PGM receiver (on
//! another), for the round-trip benchmark (`xpgm-rtt`).
//!
//! * [`SocketDuplex`]: two kernel-socket datapaths of the `xpgm` crate, one
//!   per role.
//! * [`XdpDuplex`]: ONE AF_XDP socket carrying both sessions. The kernel
//!   allows one AF_XDP socket per interface queue, so a process cannot open a
//!   source port and a receiver port on queue 0 (what
//!   `xpgm_afxdp::port::XdpPort` does per session). Here the socket is
//!   registered with xpgmd twice, on two control connections: as a receiver
//!   of the receive group (steering key: group, port, downstream) and as a
//!   source of the send group (key: local address, TSI source port,
//!   upstream). xpgmd puts the same socket into two XSKMAP slots, which the
//!   kernel permits. Received frames are accepted if addressed to the
//!   receive group or to us, and demultiplexed by PGM type
//!   ([`crate::latency::is_upstream`]): NAK/SPMR/… to the source engine,
//!   SPM/ODATA/RDATA/NCF to the receiver engine.

use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};

use xpgm::transport::socket::SocketDatapath;
use xpgm::transport::{Datapath, Role, SessionConfig};
use xpgm_afxdp::frame::{self, Mac, NeighbourCache, TxHeaders, ip_of, nla_of};
use xpgm_afxdp::iface::InterfaceInfo;
use xpgm_afxdp::link::{Link, TxOutcome};
use xpgm_afxdp::register::{self, Registration, Role as RegRole, SocketSpec};
use xpgm_afxdp::xsk::{XskConfig, XskSocket};
use xpgm_core::source::Destination;
use xpgm_core::wire::Nla;
use xpgm_core::wire::framing::Framing;

use crate::latency::is_upstream;

/// Which engine a packet belongs to / comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// The local source (send group).
    Source,
    /// The local receiver (receive group).
    Receiver,
}

/// Packets in and out for a source and a receiver on one host.
pub trait Duplex {
    /// Receives up to `max` packets per underlying socket without blocking,
    /// calling `f(engine, from, pgm)`. Returns how many.
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(Engine, Nla, &[u8])) -> usize;
    /// Sends one PGM packet produced by `engine`.
    fn send(&mut self, engine: Engine, dest: Destination, pgm: &[u8]);
    /// Commits queued transmissions (AF_XDP); no-op for sockets.
    fn flush(&mut self);
    /// Our address on the interface.
    fn local_nla(&self) -> Nla;
    /// Sends that failed.
    fn send_errors(&self) -> u64;
    /// One line for the report (transport, mode).
    fn describe(&self) -> String;
    /// Commits queued transmissions, then sleeps until a packet may have
    /// arrived or `timeout` passed (nanosecond resolution).
    fn wait(&mut self, timeout: Duration);
}

fn timespec(d: Duration) -> Timespec {
    Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    }
}

/// Two kernel-socket datapaths: a source on the send group, a receiver on
/// the receive group (multicast loop off, so neither sees our own traffic).
#[derive(Debug)]
pub struct SocketDuplex {
    src: SocketDatapath,
    rcv: SocketDatapath,
    errors: u64,
}

impl SocketDuplex {
    /// Opens both datapaths. `base` supplies interface, port, encapsulation.
    pub fn open(
        base: &SessionConfig,
        send_group: IpAddr,
        recv_group: IpAddr,
    ) -> anyhow::Result<Self> {
        let mut s = base.clone();
        s.multicast_loop = false;
        s.group = send_group;
        let src = SocketDatapath::open(&s, Role::Source)?;
        s.group = recv_group;
        let rcv = SocketDatapath::open(&s, Role::Receiver)?;
        Ok(SocketDuplex {
            src,
            rcv,
            errors: 0,
        })
    }
}

impl Duplex for SocketDuplex {
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(Engine, Nla, &[u8])) -> usize {
        let mut n = 0;
        // Under raw IP both sockets see every PGM packet the host gets; each
        // engine only takes its own direction.
        n += self
            .src
            .recv_batch(max, &mut |from, pgm| {
                if is_upstream(pgm) {
                    f(Engine::Source, from, pgm);
                }
            })
            .unwrap_or(0);
        n += self
            .rcv
            .recv_batch(max, &mut |from, pgm| {
                if !is_upstream(pgm) {
                    f(Engine::Receiver, from, pgm);
                }
            })
            .unwrap_or(0);
        n
    }

    fn send(&mut self, engine: Engine, dest: Destination, pgm: &[u8]) {
        let dp = match engine {
            Engine::Source => &mut self.src,
            Engine::Receiver => &mut self.rcv,
        };
        if dp.send(dest, pgm).is_err() {
            self.errors += 1;
        }
    }

    fn flush(&mut self) {}

    fn local_nla(&self) -> Nla {
        self.src.local_nla()
    }

    fn send_errors(&self) -> u64 {
        self.errors + self.src.send_errors() + self.rcv.send_errors()
    }

    fn describe(&self) -> String {
        "kernel sockets".into()
    }

    fn wait(&mut self, timeout: Duration) {
        // Raw IP: the receiver's socket sees every PGM packet the host gets
        // (NAKs too). Under UDP the source's socket is separate: at most 1 ms.
        let _ = self
            .rcv
            .wait(None, Some(timeout.min(Duration::from_millis(1))));
    }
}

/// Where and how to open an [`XdpDuplex`].
#[derive(Clone, Debug)]
pub struct XdpDuplexConfig {
    /// Interface.
    pub iface: String,
    /// Queue (0 on veth).
    pub queue: u32,
    /// Group we publish on.
    pub send_group: IpAddr,
    /// Group we receive.
    pub recv_group: IpAddr,
    /// PGM data port (both sessions).
    pub dport: u16,
    /// UDP encapsulation port, or raw IP.
    pub udp_encap: Option<u16>,
    /// TTL.
    pub ttl: u8,
    /// TOS.
    pub tos: u8,
    /// Our source's TSI source port (xpgmd steers NAKs by it).
    pub source_port: u16,
    /// xpgmd's control socket (`None`: the usual rule).
    pub xpgmd_socket: Option<PathBuf>,
}

/// One AF_XDP socket registered for a source session and a receiver session.
#[derive(Debug)]
pub struct XdpDuplex {
    sock: XskSocket,
    headers: TxHeaders,
    send_group: IpAddr,
    send_mac: Mac,
    accept: [IpAddr; 2],
    framing: Framing,
    neighbours: NeighbourCache,
    _registrations: [Registration; 2],
    ident: u16,
    errors: u64,
}

impl XdpDuplex {
    /// Opens the socket and registers both sessions with xpgmd.
    pub fn open(c: &XdpDuplexConfig) -> anyhow::Result<Self> {
        let info = InterfaceInfo::lookup(&c.iface)?;
        let local = info.address_for(c.send_group).ok_or_else(|| {
            anyhow::anyhow!("{} has no address of {}'s family", c.iface, c.send_group)
        })?;
        let xpgmd = xpgm_control_path(c.xpgmd_socket.clone());
        let sock = XskSocket::open(&c.iface, c.queue, XskConfig::default())?;
        let framing = match c.udp_encap {
            None => Framing::RawIp,
            Some(p) => Framing::Udp {
                ucast_port: p,
                mcast_port: p,
            },
        };
        let spec = [SocketSpec {
            iface: &c.iface,
            queue: c.queue,
            fd: sock.fd(),
        }];
        let r_rcv = register::register(
            &xpgmd,
            &register::Request::new(&RegRole::Receiver, c.recv_group, c.dport, "", &spec)
                .udp_port(c.udp_encap),
        )?;
        let src_role = RegRole::Source {
            source_port: c.source_port,
            local_address: local,
        };
        let r_src = register::register(
            &xpgmd,
            &register::Request::new(&src_role, c.send_group, c.dport, "", &spec)
                .udp_port(c.udp_encap),
        )?;
        Ok(XdpDuplex {
            headers: TxHeaders {
                src_mac: info.mac,
                src_ip: local,
                framing,
                ttl: c.ttl,
                tos: c.tos,
            },
            sock,
            send_group: c.send_group,
            send_mac: Mac::of_multicast(c.send_group),
            accept: [local, c.recv_group],
            framing,
            neighbours: NeighbourCache::default(),
            _registrations: [r_rcv, r_src],
            ident: 0,
            errors: 0,
        })
    }
}

fn xpgm_control_path(p: Option<PathBuf>) -> PathBuf {
    match p {
        Some(p) => p,
        None => std::env::var_os("XPGM_SOCKET")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/run/xpgm/xpgmd.sock")),
    }
}

impl Duplex for XdpDuplex {
    fn recv(&mut self, max: usize, f: &mut dyn FnMut(Engine, Nla, &[u8])) -> usize {
        let (framing, accept, neighbours) = (self.framing, &self.accept, &mut self.neighbours);
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let mut n = 0;
        self.sock.recv(max, &mut |bytes| {
            if let Ok(fr) = frame::parse(bytes, framing, accept) {
                neighbours.learn(fr.src_ip, fr.src_mac);
                let e = if is_upstream(fr.pgm) {
                    Engine::Source
                } else {
                    Engine::Receiver
                };
                f(e, nla_of(fr.src_ip), fr.pgm);
                n += 1;
            }
        });
        n
    }

    fn send(&mut self, _engine: Engine, dest: Destination, pgm: &[u8]) {
        let (dst_ip, dst_mac) = match dest {
            Destination::Group => (self.send_group, self.send_mac),
            Destination::Unicast(nla) => {
                let ip = ip_of(nla);
                match self
                    .neighbours
                    .lookup(ip)
                    .or_else(|| frame::kernel_neighbour(ip))
                {
                    Some(mac) => (ip, mac),
                    None => {
                        self.errors += 1;
                        return;
                    }
                }
            }
        };
        let off = self.headers.pgm_offset();
        let mut out = TxOutcome::NoBuffer;
        for attempt in 0..2 {
            if attempt == 1 {
                self.sock.flush();
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
        if out != TxOutcome::Queued {
            self.errors += 1;
        }
    }

    fn flush(&mut self) {
        self.sock.flush();
    }

    fn local_nla(&self) -> Nla {
        nla_of(self.headers.src_ip)
    }

    fn send_errors(&self) -> u64 {
        self.errors
    }

    fn wait(&mut self, timeout: Duration) {
        self.sock.flush();
        let fd: BorrowedFd<'_> = self.sock.fd();
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        let ts = timespec(timeout);
        let _ = rustix::event::poll(&mut fds, Some(&ts));
    }

    fn describe(&self) -> String {
        format!(
            "AF_XDP {} queue {}, {} mode",
            self.sock.iface(),
            self.sock.queue(),
            self.sock.mode().as_str()
        )
    }
}
