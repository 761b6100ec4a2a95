//! Arguments shared by `xpgm send` and `xpgm recv`.

use std::net::IpAddr;

use clap::Args;
use xpgm::{SessionConfig, TransportKind};

/// Where the session lives.
#[derive(Debug, Args, Clone)]
pub struct NetArgs {
    /// Network interface to send on and join the group on (e.g. eth0). Give it up to
    /// four times for A/B lines (docs/transport.md): a sender sends every packet on
    /// each interface, a receiver joins on each and takes every message from the line
    /// that brings it first.
    #[arg(long, value_parser = iface, required = true, action = clap::ArgAction::Append)]
    pub iface: Vec<String>,
    /// Multicast group, IPv4 or IPv6 (e.g. 239.192.0.1, ff15::1).
    #[arg(long, value_parser = group)]
    pub group: IpAddr,
    /// PGM data-destination port.
    #[arg(long, default_value_t = xpgm::core::wire::DEFAULT_DATA_PORT)]
    pub dport: u16,
    /// UDP encapsulation on PORT instead of raw IP protocol 113: multicast downstream
    /// to GROUP:PORT, unicast NAK/SPMR upstream to SOURCE:PORT.
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub udp_encap: Option<u16>,
    /// Transport: `socket` (kernel sockets) or `xdp` (AF_XDP via xpgmd).
    #[arg(long, default_value = "socket", value_parser = transport)]
    pub transport: TransportKind,
    /// xpgmd's control socket for `--transport xdp` (else $XPGM_SOCKET, else
    /// /run/xpgm/xpgmd.sock — the same rule as xpgmd and xpgmctl).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<std::path::PathBuf>,
    /// Kernel-socket transport: receive and send buffer size asked of the kernel, in
    /// bytes (SO_RCVBUFFORCE/SO_SNDBUFFORCE when privileged, else capped by
    /// net.core.rmem_max/wmem_max). A receiver's datagrams beyond it are dropped by the
    /// kernel and counted as overruns (`overrun.socket_drops` in `xpgm recv --json`).
    #[arg(long, value_name = "BYTES", default_value_t = 8 << 20, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    pub socket_buffer: u64,
    /// AF_XDP transport: UMEM chunks of the session's socket (a power of two, at
    /// least 64): half receive (fill and RX rings of FRAMES/2 entries), half transmit.
    /// Frames arriving faster than the worker drains the rings are dropped by the
    /// kernel and counted as overruns (`overrun` in `xpgm recv --json`).
    #[arg(long, value_name = "FRAMES", default_value_t = xpgm::transport::DEFAULT_XDP_FRAMES, value_parser = xdp_frames)]
    pub xdp_frames: u32,
    /// Framing of messages inside PGM APDUs: `none` (one message per APDU) or `zmq`
    /// (ZeroMQ's pgm:// / epgm:// framing, to talk to ZeroMQ PUB/SUB sockets).
    #[arg(long, value_enum, default_value_t = Framing::None)]
    pub framing: Framing,
}

/// Message framing inside APDUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Framing {
    /// Each APDU is one message.
    None,
    /// ZeroMQ's PGM framing (see `xpgm::framing::zmq`).
    Zmq,
}

fn iface(s: &str) -> Result<String, String> {
    if s.is_empty() || s.len() > 15 || s.contains('/') || s.contains(char::is_whitespace) {
        return Err(format!("'{s}' is not a valid interface name"));
    }
    Ok(s.to_string())
}

fn group(s: &str) -> Result<IpAddr, String> {
    let ip: IpAddr = s
        .parse()
        .map_err(|_| format!("'{s}' is not an IPv4 or IPv6 address"))?;
    if !ip.is_multicast() {
        return Err(format!(
            "{ip} is not a multicast address (IPv4 224.0.0.0/4, IPv6 ff00::/8)"
        ));
    }
    Ok(ip)
}

fn xdp_frames(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("'{s}' is not a number of frames"))?;
    if n < 64 || !n.is_power_of_two() || n > 1 << 20 {
        return Err(format!(
            "{n}: the AF_XDP frame count must be a power of two from 64 to 1048576"
        ));
    }
    Ok(n)
}

fn transport(s: &str) -> Result<TransportKind, String> {
    s.parse()
}

impl NetArgs {
    /// The library's session configuration.
    pub fn session(&self) -> SessionConfig {
        let mut ifaces = self.iface.iter().cloned();
        let mut s = SessionConfig::new(ifaces.next().unwrap_or_default(), self.group);
        s.extra_ifaces = ifaces.collect();
        s.dport = self.dport;
        s.udp_encap = self.udp_encap;
        s.transport = self.transport;
        s.xpgmd_socket = self.socket.clone();
        s.socket_buffer = usize::try_from(self.socket_buffer).unwrap_or(usize::MAX);
        s.xdp_frames = self.xdp_frames;
        s
    }
}
