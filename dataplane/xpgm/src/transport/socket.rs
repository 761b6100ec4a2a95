//! Kernel-socket transport: PGM over raw IP (protocol 113) or UDP encapsulation, IPv4 or
//! IPv6, with no xpgmd. See `docs/transport.md`.
//!
//! Safe code only: every system call goes through `rustix`.
//!
//! * Raw IP: one `SOCK_RAW` socket of protocol 113 per session, used both ways. IPv4 raw
//!   sockets deliver the IP header on receive; it is parsed (and its checksum checked)
//!   with [`xpgm_core::wire::framing::Ipv4Repr::parse`]. IPv6 raw sockets deliver the
//!   payload only; the source address comes from `recvfrom`.
//! * UDP (`udp_encap = Some(port)`): the source binds `*:port` (receives unicast
//!   NAK/SPMR, sends to `group:port`); a receiver binds `group:port` (so it sees only
//!   the group's traffic, never another local source's unicast NAKs) and sends its NAKs
//!   from a second, unbound UDP socket to `source:port`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec};
use rustix::io::Errno;
use rustix::net::{
    self, AddressFamily, Protocol, RecvFlags, SendFlags, SocketFlags, SocketType, sockopt,
};
use xpgm_core::source::Destination;
use xpgm_core::wire::Nla;
use xpgm_core::wire::framing::Ipv4Repr;

use super::{Datapath, Overruns, Role, SessionConfig};
use crate::Error;

/// Largest datagram we read (an IPv4 packet cannot be larger).
const RECV_BUF: usize = 65536;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    RawV4,
    RawV6,
    Udp,
}

/// Kernel sockets for one session side.
#[derive(Debug)]
pub struct SocketDatapath {
    /// The socket we receive on (and send on, unless `tx` is set).
    rx: OwnedFd,
    /// Separate send socket (UDP receivers: `rx` is bound to the group address).
    tx: Option<OwnedFd>,
    kind: Kind,
    group: IpAddr,
    /// Destination port: the UDP encapsulation port, 0 for raw IP.
    port: u16,
    local: Nla,
    ifindex: u32,
    buf: Box<[u8]>,
    send_errors: u64,
    /// Receiver: the watch of the receive socket's kernel drop counter (`None`: a
    /// source, or not readable).
    drops: Option<DropWatch>,
    /// Last drop count read.
    socket_drops: u64,
}

/// The kernel's drop counter of one socket (`sk_drops`), read from the `drops` column
/// of its `/proc/net/{raw,raw6,udp,udp6}` line, found by the socket's inode.
///
/// Why `/proc`: the per-datagram alternative, `SO_RXQ_OVFL` (the count in every
/// `recvmsg`'s ancillary data), needs a control-message type `rustix` does not
/// parse, and this module has no `unsafe`; `SO_MEMINFO` is not exposed either. The
/// `/proc` line holds the same counter (`sk_drops`, which `SO_RXQ_OVFL` reports
/// too). The file is kept open and re-read from its start at most every
/// [`crate::worker::OVERRUN_CHECK`]; its cost grows with the number of sockets of
/// that kind in the network namespace (docs/reliability.md section 7), so it is read
/// by a [`DropWatch`] thread, never by the worker between packets.
#[derive(Debug)]
struct ProcDrops {
    file: std::fs::File,
    inode: u64,
    text: Vec<u8>,
}

impl ProcDrops {
    fn open(fd: &OwnedFd, kind: Kind, v4: bool) -> Option<ProcDrops> {
        let inode = rustix::fs::fstat(fd).ok()?.st_ino;
        let path = match (kind, v4) {
            (Kind::RawV4, _) => "/proc/self/net/raw",
            (Kind::RawV6, _) => "/proc/self/net/raw6",
            (Kind::Udp, true) => "/proc/self/net/udp",
            (Kind::Udp, false) => "/proc/self/net/udp6",
        };
        let file = std::fs::File::open(path).ok()?;
        Some(ProcDrops {
            file,
            inode,
            text: Vec::with_capacity(16 << 10),
        })
    }

    fn read(&mut self) -> Option<u64> {
        use std::io::{Read, Seek, SeekFrom};
        self.file.seek(SeekFrom::Start(0)).ok()?;
        self.text.clear();
        self.file.read_to_end(&mut self.text).ok()?;
        drops_of_inode(&self.text, self.inode)
    }
}

/// A thread that reads a [`ProcDrops`] every [`crate::worker::OVERRUN_CHECK`] (or
/// every [`DROP_READ_FACTOR`] times as long as the last read took, if that is longer:
/// at most 1/DROP_READ_FACTOR of a core however many sockets the namespace holds)
/// and publishes the count in an atomic, so the worker's reading is a load. Measured
/// on this project's test machine (kernel 6.18), one read of `/proc/net/udp` costs
/// about 25 µs with 1 socket in the namespace, 0.17 ms with 100, 2 ms with 1,000 and
/// 22 ms with 5,000 (the kernel's seq_file hands out 4 KiB per `read` and walks the
/// socket table again for each).
#[derive(Debug)]
struct DropWatch {
    shared: std::sync::Arc<DropShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug)]
struct DropShared {
    reader: std::sync::Mutex<ProcDrops>,
    /// Last count read; `u64::MAX` until one is.
    count: std::sync::atomic::AtomicU64,
    stop: std::sync::atomic::AtomicBool,
}

/// The watch thread sleeps at least this many times as long as its last read took.
const DROP_READ_FACTOR: u32 = 50;

impl DropShared {
    /// Reads the counter now (waiting for a read the thread is doing).
    fn read_now(&self) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let v = self.reader.lock().ok()?.read()?;
        self.count.fetch_max(v, Ordering::Relaxed);
        Some(v)
    }

    fn last(&self) -> Option<u64> {
        let v = self.count.load(std::sync::atomic::Ordering::Relaxed);
        (v != u64::MAX).then_some(v)
    }
}

impl DropWatch {
    fn start(reader: ProcDrops) -> Option<DropWatch> {
        use std::sync::atomic::Ordering;
        let shared = std::sync::Arc::new(DropShared {
            reader: std::sync::Mutex::new(reader),
            count: std::sync::atomic::AtomicU64::new(u64::MAX),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        // A first reading before the session starts: a socket that cannot be found
        // in /proc is not watched at all.
        let first = shared.read_now()?;
        shared.count.store(first, Ordering::Relaxed);
        let sh = shared.clone();
        let thread = std::thread::Builder::new()
            .name("xpgm-drops".into())
            .spawn(move || {
                while !sh.stop.load(Ordering::Relaxed) {
                    let t0 = std::time::Instant::now();
                    let _ = sh.read_now();
                    let pause = crate::worker::OVERRUN_CHECK.max(t0.elapsed() * DROP_READ_FACTOR);
                    std::thread::park_timeout(pause);
                }
            })
            .ok()?;
        Some(DropWatch {
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        self.shared
            .stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

/// The `drops` column of the line of socket inode `inode` in the text of a
/// `/proc/net/{raw,raw6,udp,udp6}` file: whitespace-separated fields `sl local rem st
/// tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ref pointer drops`.
/// `None` when no line has that inode (or its drops field is not a number).
fn drops_of_inode(text: &[u8], inode: u64) -> Option<u64> {
    const INODE: usize = 9;
    const DROPS: usize = 12;
    let num = |f: &[u8]| -> Option<u64> { std::str::from_utf8(f).ok()?.parse().ok() };
    text.split(|&b| b == b'\n').skip(1).find_map(|line| {
        let mut fields = line
            .split(|b| b.is_ascii_whitespace())
            .filter(|f| !f.is_empty());
        let ino = fields.nth(INODE)?;
        if num(ino)? != inode {
            return None;
        }
        num(fields.nth(DROPS - INODE - 1)?)
    })
}

fn family(ip: IpAddr) -> AddressFamily {
    if ip.is_ipv4() {
        AddressFamily::INET
    } else {
        AddressFamily::INET6
    }
}

fn pgm_protocol() -> Option<Protocol> {
    core::num::NonZeroU32::new(u32::from(xpgm_core::wire::IP_PROTOCOL)).map(Protocol::from_raw)
}

fn ip_of(nla: Nla) -> IpAddr {
    match nla {
        Nla::V4(a) => IpAddr::V4(a),
        Nla::V6(a) => IpAddr::V6(a),
    }
}

fn nla_of(ip: IpAddr) -> Nla {
    match ip {
        IpAddr::V4(a) => Nla::V4(a),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(v4) => Nla::V4(v4),
            None => Nla::V6(a),
        },
    }
}

fn udp_socket(fam: AddressFamily) -> Result<OwnedFd, Error> {
    net::socket_with(fam, SocketType::DGRAM, SocketFlags::CLOEXEC, None)
        .map_err(|e| Error::io("socket(UDP)", e))
}

/// The index of interface `iface`.
pub fn interface_index(iface: &str) -> Result<u32, Error> {
    let probe = udp_socket(AddressFamily::INET)?;
    match net::netdevice::name_to_index(&probe, iface) {
        Ok(i) if i > 0 => Ok(i),
        _ => Err(Error::UnknownInterface(iface.to_string())),
    }
}

/// Sets the outgoing multicast interface of `fd`.
fn set_multicast_if(fd: &OwnedFd, group: IpAddr, ifindex: u32) -> Result<(), Error> {
    match group {
        IpAddr::V4(_) => sockopt::set_ip_multicast_if_with_ifindex(
            fd,
            &Ipv4Addr::UNSPECIFIED,
            &Ipv4Addr::UNSPECIFIED,
            ifindex,
        ),
        IpAddr::V6(_) => sockopt::set_ipv6_multicast_if(fd, ifindex),
    }
    .map_err(|e| Error::io("setsockopt(IP_MULTICAST_IF)", e))
}

/// The address the kernel would send from to `group` out of `ifindex`: a UDP socket
/// "connected" to the group picks it (no packet is sent).
fn local_address(cfg: &SessionConfig, ifindex: u32) -> Result<IpAddr, Error> {
    let fam_name = if cfg.group.is_ipv4() { "IPv4" } else { "IPv6" };
    let no_addr = |source: std::io::Error| Error::NoAddress {
        iface: cfg.iface.clone(),
        family: fam_name,
        source,
    };
    let probe = udp_socket(family(cfg.group))?;
    set_multicast_if(&probe, cfg.group, ifindex)?;
    net::connect(&probe, &SocketAddr::new(cfg.group, cfg.dport)).map_err(|e| no_addr(e.into()))?;
    let name = net::getsockname(&probe).map_err(|e| no_addr(e.into()))?;
    let addr = SocketAddr::try_from(name)
        .map_err(|_| no_addr(std::io::Error::other("not an IP address")))?;
    if addr.ip().is_unspecified() {
        return Err(no_addr(std::io::Error::other("unspecified")));
    }
    Ok(addr.ip())
}

fn set_buffers(fd: &OwnedFd, bytes: usize) {
    // Best effort: the *_FORCE variants need CAP_NET_ADMIN; fall back to the capped ones.
    if sockopt::set_socket_recv_buffer_size_force(fd, bytes).is_err() {
        let _ = sockopt::set_socket_recv_buffer_size(fd, bytes);
    }
    if sockopt::set_socket_send_buffer_size_force(fd, bytes).is_err() {
        let _ = sockopt::set_socket_send_buffer_size(fd, bytes);
    }
}

/// Multicast sending options: interface, loop, TTL / hop limit, TOS / traffic class.
fn set_send_options(fd: &OwnedFd, cfg: &SessionConfig, ifindex: u32) -> Result<(), Error> {
    set_multicast_if(fd, cfg.group, ifindex)?;
    match cfg.group {
        IpAddr::V4(_) => {
            sockopt::set_ip_multicast_loop(fd, cfg.multicast_loop)
                .map_err(|e| Error::io("setsockopt(IP_MULTICAST_LOOP)", e))?;
            sockopt::set_ip_multicast_ttl(fd, u32::from(cfg.ttl))
                .map_err(|e| Error::io("setsockopt(IP_MULTICAST_TTL)", e))?;
            sockopt::set_ip_tos(fd, cfg.tos).map_err(|e| Error::io("setsockopt(IP_TOS)", e))?;
        }
        IpAddr::V6(_) => {
            sockopt::set_ipv6_multicast_loop(fd, cfg.multicast_loop)
                .map_err(|e| Error::io("setsockopt(IPV6_MULTICAST_LOOP)", e))?;
            sockopt::set_ipv6_multicast_hops(fd, u32::from(cfg.ttl))
                .map_err(|e| Error::io("setsockopt(IPV6_MULTICAST_HOPS)", e))?;
            sockopt::set_ipv6_tclass(fd, u32::from(cfg.tos))
                .map_err(|e| Error::io("setsockopt(IPV6_TCLASS)", e))?;
        }
    }
    Ok(())
}

fn join(fd: &OwnedFd, group: IpAddr, ifindex: u32) -> Result<(), Error> {
    match group {
        IpAddr::V4(g) => {
            sockopt::set_ip_add_membership_with_ifindex(fd, &g, &Ipv4Addr::UNSPECIFIED, ifindex)
        }
        IpAddr::V6(g) => sockopt::set_ipv6_add_membership(fd, &g, ifindex),
    }
    .map_err(|e| Error::io("setsockopt(IP_ADD_MEMBERSHIP)", e))
}

/// Confines `fd` to interface `iface` (`SO_BINDTODEVICE`): it then receives only what
/// arrived on it and sends only out of it.
fn bind_device(fd: &OwnedFd, iface: &str) -> Result<(), Error> {
    socket2::SockRef::from(fd)
        .bind_device(Some(iface.as_bytes()))
        .map_err(|e| Error::io("setsockopt(SO_BINDTODEVICE)", e))
}

impl SocketDatapath {
    /// Opens the sockets for `role` (joining the group on `cfg.iface` for a receiver).
    pub fn open(cfg: &SessionConfig, role: Role) -> Result<SocketDatapath, Error> {
        Self::open_with(cfg, role, false)
    }

    /// Like [`SocketDatapath::open`], with every socket bound to `cfg.iface`
    /// (`SO_BINDTODEVICE`), as one of several A/B lines: a raw IP socket (and a UDP
    /// socket bound to the group) otherwise receives the packets of every interface,
    /// so each line would see the others' traffic as its own.
    pub fn open_on_device(cfg: &SessionConfig, role: Role) -> Result<SocketDatapath, Error> {
        Self::open_with(cfg, role, true)
    }

    fn open_with(
        cfg: &SessionConfig,
        role: Role,
        on_device: bool,
    ) -> Result<SocketDatapath, Error> {
        cfg.validate()?;
        let confine = |fd: &OwnedFd| {
            if on_device {
                bind_device(fd, &cfg.iface)
            } else {
                Ok(())
            }
        };
        let ifindex = interface_index(&cfg.iface)?;
        let local = local_address(cfg, ifindex)?;
        let fam = family(cfg.group);
        let (rx, tx, kind, port) = match cfg.udp_encap {
            None => {
                let fd =
                    net::socket_with(fam, SocketType::RAW, SocketFlags::CLOEXEC, pgm_protocol())
                        .map_err(|e| match e {
                            Errno::PERM | Errno::ACCESS => Error::RawPermission,
                            e => Error::io("socket(SOCK_RAW, 113)", e),
                        })?;
                confine(&fd)?;
                set_send_options(&fd, cfg, ifindex)?;
                let kind = if cfg.group.is_ipv4() {
                    Kind::RawV4
                } else {
                    Kind::RawV6
                };
                (fd, None, kind, 0)
            }
            Some(port) => match role {
                Role::Source => {
                    let fd = udp_socket(fam)?;
                    confine(&fd)?;
                    sockopt::set_socket_reuseaddr(&fd, true)
                        .map_err(|e| Error::io("setsockopt(SO_REUSEADDR)", e))?;
                    let any = if cfg.group.is_ipv4() {
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    } else {
                        IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
                    };
                    net::bind(&fd, &SocketAddr::new(any, port))
                        .map_err(|e| Error::io("bind(UDP encapsulation port)", e))?;
                    set_send_options(&fd, cfg, ifindex)?;
                    (fd, None, Kind::Udp, port)
                }
                Role::Receiver => {
                    let rx = udp_socket(fam)?;
                    confine(&rx)?;
                    sockopt::set_socket_reuseaddr(&rx, true)
                        .map_err(|e| Error::io("setsockopt(SO_REUSEADDR)", e))?;
                    net::bind(&rx, &SocketAddr::new(cfg.group, port))
                        .map_err(|e| Error::io("bind(group, UDP encapsulation port)", e))?;
                    let tx = udp_socket(fam)?;
                    confine(&tx)?;
                    set_send_options(&tx, cfg, ifindex)?;
                    (rx, Some(tx), Kind::Udp, port)
                }
            },
        };
        set_buffers(&rx, cfg.socket_buffer);
        if let Some(tx) = &tx {
            set_buffers(tx, cfg.socket_buffer);
        }
        if role == Role::Receiver {
            match (cfg.group, cfg.sources.is_empty()) {
                (IpAddr::V4(g), false) => {
                    let IpAddr::V4(local) = local_address(cfg, ifindex)? else {
                        return Err(Error::Config("an IPv4 group needs an IPv4 address".into()));
                    };
                    for src in &cfg.sources {
                        let IpAddr::V4(src) = src else {
                            return Err(Error::Config(format!(
                                "source {src} is not IPv4 like the group {g}"
                            )));
                        };
                        sockopt::set_ip_add_source_membership(&rx, &g, &local, src)
                            .map_err(|e| Error::io("setsockopt(IP_ADD_SOURCE_MEMBERSHIP)", e))?;
                    }
                }
                _ => join(&rx, cfg.group, ifindex)?,
            }
        }
        // Both roles: a source's socket overruns under a NAK flood faster than its worker.
        let drops = ProcDrops::open(&rx, kind, cfg.group.is_ipv4()).and_then(DropWatch::start);
        Ok(SocketDatapath {
            drops,
            socket_drops: 0,
            rx,
            tx,
            kind,
            group: cfg.group,
            port,
            local: nla_of(local),
            ifindex,
            buf: vec![0u8; RECV_BUF].into_boxed_slice(),
            send_errors: 0,
        })
    }

    /// The interface index the session uses.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }
}

/// Send failures that are loss, not a broken session.
fn transient(e: Errno) -> bool {
    matches!(
        e,
        Errno::NOBUFS
            | Errno::AGAIN
            | Errno::HOSTUNREACH
            | Errno::NETUNREACH
            | Errno::CONNREFUSED
            | Errno::MSGSIZE
            | Errno::NOMEM
    )
}

impl Datapath for SocketDatapath {
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error> {
        let mut n = 0;
        while n < max {
            let (len, full, from) =
                match net::recvfrom(&self.rx, &mut self.buf[..], RecvFlags::DONTWAIT) {
                    Ok(r) => r,
                    Err(Errno::AGAIN) => break,
                    Err(Errno::INTR) => continue,
                    Err(e) => return Err(Error::io("recvfrom", e)),
                };
            n += 1;
            if full > len {
                continue; // truncated: cannot be a valid PGM packet
            }
            let bytes = self.buf.get(..len).unwrap_or_default();
            match self.kind {
                Kind::RawV4 => {
                    if let Ok((ip, payload)) = Ipv4Repr::parse(bytes)
                        && ip.protocol == xpgm_core::wire::IP_PROTOCOL
                    {
                        f(Nla::V4(ip.src), payload);
                    }
                }
                Kind::RawV6 | Kind::Udp => {
                    if let Some(addr) = from.and_then(|a| SocketAddr::try_from(a).ok()) {
                        f(nla_of(addr.ip()), bytes);
                    }
                }
            }
        }
        Ok(n)
    }

    fn send(&mut self, dest: Destination, pgm: &[u8]) -> Result<(), Error> {
        let ip = match dest {
            Destination::Group => self.group,
            Destination::Unicast(nla) => ip_of(nla),
        };
        if ip.is_ipv4() != self.group.is_ipv4() {
            self.send_errors += 1;
            return Ok(());
        }
        let addr = SocketAddr::new(ip, self.port);
        let fd = self.tx.as_ref().unwrap_or(&self.rx);
        loop {
            match net::sendto(fd, pgm, SendFlags::empty(), &addr) {
                Ok(_) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(e) if transient(e) => {
                    self.send_errors += 1;
                    return Ok(());
                }
                Err(e) => return Err(Error::io("sendto", e)),
            }
        }
    }

    fn wait(
        &mut self,
        doorbell: Option<BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> Result<(), Error> {
        let ts = timeout.map(|d| Timespec {
            tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            tv_nsec: i64::from(d.subsec_nanos()),
        });
        let rx = self.rx.as_fd();
        let bell = doorbell.unwrap_or(rx);
        let mut fds = [
            PollFd::new(&rx, PollFlags::IN),
            PollFd::new(&bell, PollFlags::IN),
        ];
        let used = if doorbell.is_some() { 2 } else { 1 };
        match rustix::event::poll(&mut fds[..used], ts.as_ref()) {
            Ok(_) | Err(Errno::INTR) => Ok(()),
            Err(e) => Err(Error::io("poll", e)),
        }
    }

    fn local_nla(&self) -> Nla {
        self.local
    }

    fn send_errors(&self) -> u64 {
        self.send_errors
    }

    fn readable_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.rx.as_fd())
    }

    fn overruns(&mut self) -> Overruns {
        if let Some(d) = self.drops.as_ref().and_then(|d| d.shared.last()) {
            self.socket_drops = self.socket_drops.max(d);
        }
        Overruns {
            socket_drops: self.socket_drops,
            ..Overruns::default()
        }
    }

    fn overruns_now(&mut self) -> Overruns {
        if let Some(d) = self.drops.as_ref().and_then(|d| d.shared.read_now()) {
            self.socket_drops = self.socket_drops.max(d);
        }
        Overruns {
            socket_drops: self.socket_drops,
            ..Overruns::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Lines as Linux 6.x prints them (header, then one line per socket).
    const RAW: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  113: 00000000:0071 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 48123 2 ffff8881039c5a00 0
  113: 00000000:0071 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 48177 2 ffff8881039c6e00 1729
";
    const UDP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
 1234: 000015FF000000000000000000000001:1D4C 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 991 2 ffff888104a1b000 12
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
  402: 0100C0EF:1D4C 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 77 2 ffff888104a1b000 3            
";

    #[test]
    fn drops_are_read_from_the_line_of_the_socket_inode() {
        assert_eq!(drops_of_inode(RAW.as_bytes(), 48177), Some(1729));
        assert_eq!(drops_of_inode(RAW.as_bytes(), 48123), Some(0));
        assert_eq!(drops_of_inode(UDP6.as_bytes(), 991), Some(12));
        // UDP lines are padded with trailing blanks.
        assert_eq!(drops_of_inode(UDP.as_bytes(), 77), Some(3));
    }

    #[test]
    fn an_absent_inode_or_a_damaged_line_reads_as_unknown() {
        assert_eq!(drops_of_inode(RAW.as_bytes(), 4812), None);
        // The header is never a match, even for a socket with inode 0.
        assert_eq!(drops_of_inode(RAW.as_bytes(), 0), None);
        assert_eq!(drops_of_inode(b"", 1), None);
        let cut = "hdr\n 1: 0:0 0:0 07 0:0 00:0 0 0 0 55 2\n";
        assert_eq!(drops_of_inode(cut.as_bytes(), 55), None);
        let bad = "hdr\n 1: 0:0 0:0 07 0:0 00:0 0 0 0 55 2 ffff x\n";
        assert_eq!(drops_of_inode(bad.as_bytes(), 55), None);
    }

    #[test]
    fn a_real_socket_is_found_in_proc_and_starts_at_zero_drops() {
        // Unprivileged: a UDP socket on loopback (IPv4 and IPv6 files).
        let fd = udp_socket(AddressFamily::INET).unwrap();
        net::bind(&fd, &SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)).unwrap();
        let mut d = ProcDrops::open(&fd, Kind::Udp, true).expect("/proc/self/net/udp");
        assert_eq!(d.read(), Some(0));
        // Read again from the start of the same open file.
        assert_eq!(d.read(), Some(0));
    }

    #[test]
    fn a_full_receive_buffer_is_counted_in_drops() {
        let rx = udp_socket(AddressFamily::INET).unwrap();
        // The smallest buffer the kernel grants (it doubles and floors the request).
        let _ = sockopt::set_socket_recv_buffer_size(&rx, 1);
        net::bind(&rx, &SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0)).unwrap();
        let to = SocketAddr::try_from(net::getsockname(&rx).unwrap()).unwrap();
        let tx = udp_socket(AddressFamily::INET).unwrap();
        let sent = 200u64;
        for _ in 0..sent {
            net::sendto(&tx, &[0u8; 1000], SendFlags::empty(), &to).unwrap();
        }
        let mut d = ProcDrops::open(&rx, Kind::Udp, true).unwrap();
        let drops = d.read().unwrap();
        // Count what was queued: queued + dropped = sent.
        let mut buf = [0u8; 2048];
        let mut queued = 0u64;
        while net::recvfrom(&rx, &mut buf, RecvFlags::DONTWAIT).is_ok() {
            queued += 1;
        }
        assert!(drops > 0, "a ~4 KiB buffer cannot hold 200 KB");
        assert_eq!(queued + drops, sent, "queued {queued} dropped {drops}");
        // The watch thread publishes the same count, read now or on its own.
        let w = DropWatch::start(ProcDrops::open(&rx, Kind::Udp, true).unwrap()).unwrap();
        assert_eq!(w.shared.last(), Some(drops));
        for _ in 0..sent {
            net::sendto(&tx, &[0u8; 1000], SendFlags::empty(), &to).unwrap();
        }
        let mut queued2 = 0u64;
        while net::recvfrom(&rx, &mut buf, RecvFlags::DONTWAIT).is_ok() {
            queued2 += 1;
        }
        let now = w.shared.read_now().unwrap();
        assert_eq!(queued2 + now - drops, sent, "second burst");
        assert_eq!(w.shared.last(), Some(now));
        drop(w); // stops and joins the thread
    }
}
