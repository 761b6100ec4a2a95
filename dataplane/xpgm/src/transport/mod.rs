//! Transports: how the worker moves PGM packets. A transport is a [`Datapath`]; the
//! worker ([`crate::worker`]) is generic over it, so adding one (AF_XDP) means
//! implementing [`Datapath`] and adding an arm to [`open`].

pub mod lines;
pub mod socket;
pub mod xdp;

use std::net::IpAddr;
use std::os::fd::BorrowedFd;
use std::str::FromStr;
use std::time::Duration;

use xpgm_core::line::{LineSet, MAX_LINES};
use xpgm_core::source::Destination;
use xpgm_core::wire::{Nla, Tsi};

use crate::Error;

/// Default of [`SessionConfig::xdp_frames`]: the AF_XDP crate's default geometry (16384
/// chunks: 8192-entry fill and RX rings; docs/reliability.md section 8).
pub const DEFAULT_XDP_FRAMES: u32 = xpgm_afxdp::xsk::DEFAULT_FRAMES;

/// Which transport a session uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TransportKind {
    /// Kernel sockets: raw IP protocol 113, or UDP encapsulation. Needs no xpgmd.
    #[default]
    Socket,
    /// AF_XDP through xpgmd (`xpgm-afxdp`); xpgmd must be running.
    Xdp,
}

impl TransportKind {
    /// The name used on the command line and in JSON reports.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Socket => "socket",
            TransportKind::Xdp => "xdp",
        }
    }
}

impl FromStr for TransportKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "socket" => Ok(TransportKind::Socket),
            "xdp" => Ok(TransportKind::Xdp),
            other => Err(format!(
                "unknown transport '{other}' (expected 'socket' or 'xdp')"
            )),
        }
    }
}

/// Where a session lives on the network (shared by publisher and subscriber).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Transport.
    pub transport: TransportKind,
    /// Interface to send on and join the group on (line 0).
    pub iface: String,
    /// A/B lines (docs/transport.md "A/B lines"): further interfaces that carry the
    /// same feed, line 1 first. A source sends every packet on each line (one TSI, one
    /// sequence space, repairs on the lines that asked); a receiver joins on each and
    /// takes every sequence from the line that brings it first. At most
    /// [`MAX_LINES`]` - 1` (default: none, one line).
    pub extra_ifaces: Vec<String>,
    /// Multicast group (IPv4 or IPv6).
    pub group: IpAddr,
    /// PGM data-destination port (default 7500, as OpenPGM).
    pub dport: u16,
    /// `Some(port)`: UDP encapsulation, multicast downstream to `group:port` and unicast
    /// upstream (NAK, SPMR) to `source:port` (OpenPGM with both encapsulation ports set to
    /// the same value). `None`: raw IP protocol 113.
    pub udp_encap: Option<u16>,
    /// Multicast TTL / hop limit (default 16).
    pub ttl: u8,
    /// IP TOS / IPv6 traffic class byte (default 0xb8: DSCP EF, as OpenPGM).
    pub tos: u8,
    /// IP_MULTICAST_LOOP: deliver our multicast to local receivers too (default on, so a
    /// sender and a receiver on one host work).
    pub multicast_loop: bool,
    /// Socket receive and send buffer size requested (SO_RCVBUFFORCE when privileged).
    pub socket_buffer: usize,
    /// AF_XDP: UMEM chunks of the session's socket (power of two, at least 64; default
    /// 4096, `xpgm_afxdp::xsk::XskConfig`): half receive (the fill and RX rings hold
    /// `xdp_frames / 2` each), half transmit. Frames beyond what the rings hold are
    /// dropped by the kernel and counted as overruns.
    pub xdp_frames: u32,
    /// xpgmd's control socket (AF_XDP only). `None`: `$XPGM_SOCKET`, else
    /// `/run/xpgm/xpgmd.sock` (`xpgm_control::socket_path`).
    pub xpgmd_socket: Option<std::path::PathBuf>,
    /// Receiver: accept only these sources (empty: any). The group is joined
    /// source-specifically (IGMPv3 INCLUDE; over the socket transport for IPv4, over
    /// AF_XDP by xpgmd for both families; an IPv6 socket joins any-source) and the
    /// engine drops other sources' packets before any peer state (`filtered`).
    pub sources: Vec<IpAddr>,
}

impl SessionConfig {
    /// Defaults for `iface` and `group`: raw IP, port 7500, TTL 16, EF, loop on, 8 MiB.
    pub fn new(iface: impl Into<String>, group: IpAddr) -> Self {
        SessionConfig {
            transport: TransportKind::Socket,
            iface: iface.into(),
            extra_ifaces: Vec::new(),
            group,
            dport: xpgm_core::wire::DEFAULT_DATA_PORT,
            udp_encap: None,
            ttl: 16,
            tos: 0xb8,
            multicast_loop: true,
            socket_buffer: 8 << 20,
            xdp_frames: DEFAULT_XDP_FRAMES,
            xpgmd_socket: None,
            sources: Vec::new(),
        }
    }

    /// Checks what can be checked without the network: a multicast group, a usable port.
    pub fn validate(&self) -> Result<(), Error> {
        if !self.group.is_multicast() {
            return Err(Error::NotMulticast(self.group));
        }
        if self.udp_encap == Some(0) {
            return Err(Error::Config("UDP encapsulation port must not be 0".into()));
        }
        if self.iface.is_empty() || self.extra_ifaces.iter().any(String::is_empty) {
            return Err(Error::UnknownInterface(String::new()));
        }
        if self.extra_ifaces.len() >= MAX_LINES {
            return Err(Error::Config(format!(
                "{} interfaces given: a session has at most {MAX_LINES} lines",
                self.extra_ifaces.len() + 1
            )));
        }
        for (i, a) in self.ifaces().enumerate() {
            if self.ifaces().skip(i + 1).any(|b| b == a) {
                return Err(Error::Config(format!(
                    "interface {a} is given twice: each line needs an interface of its own"
                )));
            }
        }
        Ok(())
    }

    /// The session's interfaces, one per line: `iface`, then `extra_ifaces`.
    pub fn ifaces(&self) -> impl Iterator<Item = &str> + '_ {
        std::iter::once(self.iface.as_str()).chain(self.extra_ifaces.iter().map(String::as_str))
    }

    /// Number of lines (1 + `extra_ifaces`).
    pub fn line_count(&self) -> u8 {
        u8::try_from(1 + self.extra_ifaces.len()).unwrap_or(u8::MAX)
    }

    /// The configuration of line `line` alone: `iface` is that line's interface and
    /// there are no further lines.
    pub fn line(&self, line: u8) -> Option<SessionConfig> {
        let iface = self.ifaces().nth(usize::from(line))?.to_string();
        Some(SessionConfig {
            iface,
            extra_ifaces: Vec::new(),
            ..self.clone()
        })
    }

    /// Bytes of IP (+UDP) header around each PGM packet.
    pub fn header_overhead(&self) -> usize {
        let ip = if self.group.is_ipv4() { 20 } else { 40 };
        ip + if self.udp_encap.is_some() { 8 } else { 0 }
    }

    /// The largest PGM packet (TPDU) that fits a 1500-byte MTU.
    pub fn max_tpdu(&self) -> usize {
        1500 - self.header_overhead()
    }
}

/// Which side of a session a datapath serves (they bind differently under UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Sends downstream to the group, receives NAK/SPMR.
    Source,
    /// Receives the group's traffic, sends NAK/SPMR upstream.
    Receiver,
}

/// Packets the receive path lost before the engine saw them, because the receiver did
/// not keep up (docs/reliability.md section 7): totals since the datapath opened, as
/// the kernel counts them. Every such packet is a gap the engine then repairs by NAK
/// or reports as unrecoverable; these counters say *why* the gap happened. A source
/// counts the same for the NAKs and SPMRs it did not read in time (a flood).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Overruns {
    /// AF_XDP `XDP_STATISTICS.rx_dropped`: frames the kernel dropped for the socket,
    /// mostly for want of a fill-ring buffer (copy mode: each such drop is also in
    /// [`Overruns::xdp_fill_ring_empty`]), also frames larger than a UMEM chunk.
    pub xdp_rx_dropped: u64,
    /// AF_XDP `XDP_STATISTICS.rx_ring_full`: frames dropped because the RX ring was
    /// full (the worker did not drain it in time).
    pub xdp_rx_ring_full: u64,
    /// AF_XDP `XDP_STATISTICS.rx_fill_ring_empty_descs`: times the kernel found the
    /// fill ring empty. A cause, not a separate count of lost frames (in copy mode
    /// the frame is counted in `xdp_rx_dropped` too; in zero-copy mode the NIC drops
    /// it and counts it in its own statistics), so it is not part of [`Overruns::total`].
    pub xdp_fill_ring_empty: u64,
    /// Kernel socket: datagrams dropped for the socket (`sk_drops`: receive buffer
    /// full, or for UDP a bad checksum), from the `drops` column of `/proc/net/*`.
    pub socket_drops: u64,
}

impl Overruns {
    /// Packets lost to overruns: `xdp_rx_dropped + xdp_rx_ring_full + socket_drops`.
    pub fn total(&self) -> u64 {
        self.xdp_rx_dropped
            .saturating_add(self.xdp_rx_ring_full)
            .saturating_add(self.socket_drops)
    }
}

/// What became of the frames a transport received below PGM (AF_XDP: refused by
/// reason, and accepted on the PGM checksum alone; docs/reliability.md section 9).
/// Kernel sockets leave this zero: the kernel checks IP and UDP itself and counts what
/// it drops in [`Overruns::socket_drops`].
pub use xpgm_afxdp::frame::RxCounters;

/// The seam between the worker and the network: everything the worker needs from a
/// transport, per packet, with no allocation.
pub trait Datapath: Send {
    /// Receive up to `max` packets without blocking, calling `f(source, pgm_bytes)` for
    /// each (the PGM packet without IP/UDP headers). Returns how many were received.
    fn recv_batch(&mut self, max: usize, f: &mut dyn FnMut(Nla, &[u8])) -> Result<usize, Error>;
    /// Send one PGM packet. Transient failures (no buffer space, unreachable) are
    /// counted in [`Datapath::send_errors`] and treated as loss; the protocol repairs it.
    fn send(&mut self, dest: Destination, pgm: &[u8]) -> Result<(), Error>;
    /// Sleep until a packet may be readable, `doorbell` becomes readable, or `timeout`
    /// passes (`None`: no timeout).
    fn wait(
        &mut self,
        doorbell: Option<BorrowedFd<'_>>,
        timeout: Option<Duration>,
    ) -> Result<(), Error>;
    /// Our own address on the session's interface (source path NLA / receiver NLA).
    fn local_nla(&self) -> Nla;
    /// Sends that failed transiently.
    fn send_errors(&self) -> u64;
    /// Source only: the session's TSI, announced once by the publisher before its
    /// worker starts and before any packet is sent. AF_XDP registers the source with
    /// xpgmd here (NAK steering needs the TSI source port); other transports need
    /// nothing. An error here fails the publisher's creation.
    fn start_source(&mut self, tsi: Tsi) -> Result<(), Error> {
        let _ = tsi;
        Ok(())
    }
    /// Hands transmissions the transport still batches to the network (AF_XDP
    /// commits its TX ring when it next receives or waits); called as the worker
    /// exits so its last packets (FIN) leave. Default: nothing is batched.
    fn commit(&mut self) {}
    /// Whether this transport depends on a control process the worker must watch
    /// (AF_XDP: the session's registration with xpgmd). Kernel sockets: no.
    fn has_control(&self) -> bool {
        false
    }
    /// Never blocks: `Some(cause)`, once, when the control process has been lost
    /// (xpgmd exited, or ended the session with a `session_error`). The worker
    /// polls this every [`crate::worker::CONTROL_CHECK`].
    fn control_lost(&mut self) -> Option<String> {
        None
    }
    /// After a loss: tries to re-establish control (AF_XDP: register again, same
    /// parameters and socket, with the xpgmd listening now). `Ok(true)`: done;
    /// `Ok(false)`: not back yet, try again later; an error: refused for good.
    fn reconnect_control(&mut self) -> Result<bool, Error> {
        Ok(true)
    }
    /// Receive-path overruns counted by the kernel so far ([`Overruns`]). May make a
    /// system call or read a `/proc` file: the worker calls it at most every
    /// [`crate::worker::OVERRUN_CHECK`] and once as it exits. A counter that cannot
    /// be read keeps its last value. Default: none counted.
    fn overruns(&mut self) -> Overruns {
        Overruns::default()
    }
    /// Like [`Datapath::overruns`], but read from the kernel now even where that is
    /// slow (the kernel-socket transport otherwise reads `/proc` on a thread of its
    /// own): the worker calls it once, as it exits, for exact final counts.
    fn overruns_now(&mut self) -> Overruns {
        self.overruns()
    }
    /// Frames received so far, refused by reason or accepted on the PGM checksum alone
    /// ([`RxCounters`]); cheap (read every turn). Default: none.
    fn rx_counters(&self) -> RxCounters {
        RxCounters::default()
    }
    /// Number of lines (A/B feeds) this datapath carries; default 1.
    fn lines(&self) -> u8 {
        1
    }
    /// Like [`Datapath::recv_batch`], with the line each packet came on
    /// (`f(line, source, pgm_bytes)`). Default: everything is line 0.
    fn recv_lines(
        &mut self,
        max: usize,
        f: &mut dyn FnMut(u8, Nla, &[u8]),
    ) -> Result<usize, Error> {
        self.recv_batch(max, &mut |src, b| f(0, src, b))
    }
    /// Like [`Datapath::send`], on each line of `lines` (those this datapath has).
    /// Default (one line): sent once, whatever `lines` says.
    fn send_lines(&mut self, lines: LineSet, dest: Destination, pgm: &[u8]) -> Result<(), Error> {
        let _ = lines;
        self.send(dest, pgm)
    }
    /// For a caller that waits on several datapaths in one `poll(2)` (the A/B
    /// [`lines::Lines`]): hands batched transmissions to the network and returns the
    /// longest this datapath may sleep (AF_XDP: its completion ring has no wake-up of
    /// its own). Default: [`Datapath::commit`], no limit.
    fn prepare_wait(&mut self) -> Option<Duration> {
        self.commit();
        None
    }
    /// The descriptor that becomes readable when a packet may be received, for such a
    /// shared `poll(2)`. `None`: there is none (the caller then polls often).
    fn readable_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    /// Per line: whether its transport is open (a line whose interface failed is
    /// reopened in the background) and how often it failed. Cheap (read every turn).
    /// Default: one line, open.
    fn line_status(&self, line: u8) -> Option<LineStatus> {
        (line == 0).then_some(LineStatus {
            open: true,
            ..LineStatus::default()
        })
    }
}

/// What a datapath says of one of its lines ([`Datapath::line_status`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStatus {
    /// False while the line's transport has failed and is being reopened.
    pub open: bool,
    /// Times the line's transport failed (send or receive error, interface gone).
    pub failures: u64,
    /// Times it was reopened after a failure.
    pub reopened: u64,
}

/// Opens the transport `config.transport` for `role`.
pub fn open(config: &SessionConfig, role: Role) -> Result<Box<dyn Datapath>, Error> {
    config.validate()?;
    if !config.extra_ifaces.is_empty() {
        return Ok(Box::new(lines::Lines::open(config, role)?));
    }
    open_line(config, role, false)
}

/// Opens the transport of one line. `bind_device`: confine the line's sockets to its
/// interface (A/B lines; a raw IP or group-bound socket otherwise receives every
/// interface's packets).
pub(crate) fn open_line(
    config: &SessionConfig,
    role: Role,
    bind_device: bool,
) -> Result<Box<dyn Datapath>, Error> {
    match config.transport {
        TransportKind::Socket if bind_device => Ok(Box::new(
            socket::SocketDatapath::open_on_device(config, role)?,
        )),
        TransportKind::Socket => Ok(Box::new(socket::SocketDatapath::open(config, role)?)),
        TransportKind::Xdp => Ok(Box::new(xdp::XdpDatapath::open(config, role)?)),
    }
}
