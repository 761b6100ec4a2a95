//! Rust mirror of `ebpf/include/xpgm_abi.h`: the keys and values of the
//! classifier's maps. Every struct is `#[repr(C)]` and padding-free; the
//! tests below pin sizes and offsets to the C layout.

#![expect(
    unsafe_code,
    reason = "aya::Pod is an unsafe marker trait; each impl states why it holds"
)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Name of the steering hash map.
pub const MAP_STEER: &str = "xpgm_steer";
/// Name of the XSKMAP holding AF_XDP sockets.
pub const MAP_XSKS: &str = "xpgm_xsks";
/// Name of the per-CPU counters array.
pub const MAP_COUNTERS: &str = "xpgm_counters";
/// Name of the per-CPU per-slot hit counters.
pub const MAP_SLOT_HITS: &str = "xpgm_slot_hits";
/// Name of the UDP encapsulation port map (key: UDP destination port).
pub const MAP_UDP_PORTS: &str = "xpgm_udp_ports";
/// Name of the per-CPU LRU flow table.
pub const MAP_FLOWS: &str = "xpgm_flows";
/// Name of the XDP program in the object.
pub const PROGRAM_NAME: &str = "xpgm_classify";

/// Capacity of the steering map.
pub const MAX_STEER: u32 = 16384;
/// Number of XSKMAP slots.
pub const MAX_SLOTS: u32 = 256;
/// Capacity of the flow table (LRU: old flows are evicted).
pub const MAX_FLOWS: u32 = 4096;
/// Capacity of the UDP encapsulation port map (per interface).
pub const MAX_UDP_PORTS: u32 = 256;
/// [`UdpPort::flags`]: one of xpgmd's default ports (`--udp-ports`).
pub const UDP_PORT_DEFAULT: u32 = 1;

/// `family` value for IPv4 keys (address stored v4-mapped).
pub const FAMILY_V4: u8 = 4;
/// `family` value for IPv6 keys.
pub const FAMILY_V6: u8 = 6;

/// Direction of a PGM packet type, part of the steering key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Direction {
    /// SPM, POLL, ODATA, RDATA, NCF: sent to the group, keyed by group and data port.
    Downstream = 0,
    /// NAK, NNAK, SPMR, POLR, ACK: sent to a local source, keyed by its unicast
    /// address and TSI source port.
    Upstream = 1,
}

/// Steering map key (`struct xpgm_steer_key`, 24 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct SteerKey {
    /// Receive queue the frame arrived on.
    pub queue: u32,
    /// Destination address; IPv4 v4-mapped (`::ffff:a.b.c.d`).
    pub addr: [u8; 16],
    /// PGM destination port, host byte order.
    pub port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// [`Direction`] as `u8`.
    pub dir: u8,
}

impl SteerKey {
    /// Builds a key for `addr` (group or local unicast), `port` and `dir` on `queue`.
    pub fn new(queue: u32, addr: IpAddr, port: u16, dir: Direction) -> Self {
        let (addr, family) = match addr {
            IpAddr::V4(a) => (a.to_ipv6_mapped().octets(), FAMILY_V4),
            IpAddr::V6(a) => (a.octets(), FAMILY_V6),
        };
        Self {
            queue,
            addr,
            port,
            family,
            dir: dir as u8,
        }
    }

    /// The destination address this key matches.
    pub fn ip(&self) -> IpAddr {
        let v6 = Ipv6Addr::from(self.addr);
        if self.family == FAMILY_V4 {
            let o = self.addr;
            IpAddr::V4(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
        } else {
            IpAddr::V6(v6)
        }
    }
}

/// Steering map value (`struct xpgm_steer_value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct SteerValue {
    /// XSKMAP slot of the worker socket.
    pub slot: u32,
    /// xpgmd session id (diagnostics only).
    pub session: u32,
}

/// What [`crate::Classifier::load`] puts into a new classifier: the default
/// UDP encapsulation ports, entered into the port map with [`UDP_PORT_DEFAULT`]
/// (xpgmd's `--udp-ports UCAST,MCAST`). Not a map value: the program itself
/// only reads the port map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Config {
    /// Default UDP encapsulation port for unicast (upstream) PGM, 0 = none.
    pub udp_ucast_port: u16,
    /// Default UDP encapsulation port for multicast (downstream) PGM, 0 = none.
    pub udp_mcast_port: u16,
    /// Reserved, must be 0.
    pub flags: u32,
}

impl Config {
    /// The default ports, without 0 and without repeats.
    pub fn default_ports(&self) -> Vec<u16> {
        let mut v: Vec<u16> = [self.udp_ucast_port, self.udp_mcast_port]
            .into_iter()
            .filter(|p| *p != 0)
            .collect();
        v.dedup();
        v
    }
}

impl Default for Config {
    /// OpenPGM's default UDP encapsulation ports, 3055 and 3056.
    fn default() -> Self {
        Self {
            udp_ucast_port: 3055,
            udp_mcast_port: 3056,
            flags: 0,
        }
    }
}

/// UDP port map value (`struct xpgm_udp_port`): who uses the port. The
/// program only tests whether a port is in the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct UdpPort {
    /// Sessions using the port on this interface.
    pub sessions: u32,
    /// `UDP_PORT_*` flags ([`UDP_PORT_DEFAULT`]).
    pub flags: u32,
}

impl UdpPort {
    /// Whether this is one of the default ports.
    pub fn is_default(&self) -> bool {
        self.flags & UDP_PORT_DEFAULT != 0
    }
}

/// Flow table key (`struct xpgm_flow_key`, 40 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(C)]
pub struct FlowKey {
    /// Source address (v4-mapped for IPv4).
    pub source: [u8; 16],
    /// Group address (v4-mapped for IPv4).
    pub group: [u8; 16],
    /// Data-destination port, host order.
    pub port: u16,
    /// [`FAMILY_V4`] or [`FAMILY_V6`].
    pub family: u8,
    /// Zero.
    pub pad: u8,
    /// Zero.
    pub pad2: u32,
}

fn addr(family: u8, a: [u8; 16]) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(a[12], a[13], a[14], a[15]))
    } else {
        IpAddr::V6(Ipv6Addr::from(a))
    }
}

impl FlowKey {
    /// The flow's source.
    pub fn source_ip(&self) -> IpAddr {
        addr(self.family, self.source)
    }
    /// The flow's group.
    pub fn group_ip(&self) -> IpAddr {
        addr(self.family, self.group)
    }
}

/// Flow counters (`struct xpgm_flow_stats`), per CPU in the map.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(C)]
pub struct FlowStats {
    /// Downstream packets (SPM, POLL, ODATA, RDATA, NCF).
    pub packets: u64,
    /// Their frame bytes.
    pub bytes: u64,
    /// NAKs and NNAKs naming this flow.
    pub naks: u64,
    /// RDATA packets.
    pub repairs: u64,
}

impl FlowStats {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &FlowStats) {
        self.packets += o.packets;
        self.bytes += o.bytes;
        self.naks += o.naks;
        self.repairs += o.repairs;
    }
}

// SAFETY: repr(C), integer arrays and integers, explicit padding fields, no
// implicit padding (40 bytes, checked by a test); every bit pattern is valid.
unsafe impl aya::Pod for FlowKey {}
// SAFETY: repr(C), four u64, no padding, every bit pattern is valid.
unsafe impl aya::Pod for FlowStats {}

// SAFETY: repr(C), only integer fields and arrays of integers, no padding
// (24 = 4 + 16 + 2 + 1 + 1, checked by a test), every bit pattern is valid.
unsafe impl aya::Pod for SteerKey {}
// SAFETY: repr(C), two u32 fields, no padding, every bit pattern is valid.
unsafe impl aya::Pod for SteerValue {}
// SAFETY: repr(C), two u32 fields, no padding, every bit pattern is valid.
unsafe impl aya::Pod for UdpPort {}

/// Indices of the per-CPU counters (`XPGM_CNT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Counter {
    /// Not PGM: passed early.
    NonPgm = 0,
    /// Recognised as PGM (raw or UDP-encapsulated).
    Pgm = 1,
    /// Redirected to an AF_XDP socket.
    Redirected = 2,
    /// PGM for no session (or of an unknown type): passed to the kernel.
    Passed = 3,
    /// Truncated PGM or a bad IP header: passed (the kernel drops it).
    Malformed = 4,
    /// A session matched but its slot holds no socket: passed.
    NoSocket = 5,
    /// Of `Pgm`: UDP-encapsulated.
    UdpEncap = 6,
    /// IPv4 non-first fragments: passed.
    Fragment = 7,
}

/// Number of counters.
pub const COUNTER_MAX: u32 = 8;

impl Counter {
    /// Every counter, in index order.
    pub const ALL: [Counter; COUNTER_MAX as usize] = [
        Counter::NonPgm,
        Counter::Pgm,
        Counter::Redirected,
        Counter::Passed,
        Counter::Malformed,
        Counter::NoSocket,
        Counter::UdpEncap,
        Counter::Fragment,
    ];

    /// Stable snake_case name (used in JSON and tables).
    pub fn name(self) -> &'static str {
        match self {
            Counter::NonPgm => "non_pgm",
            Counter::Pgm => "pgm",
            Counter::Redirected => "redirected",
            Counter::Passed => "passed",
            Counter::Malformed => "malformed",
            Counter::NoSocket => "no_socket",
            Counter::UdpEncap => "udp_encap",
            Counter::Fragment => "fragment",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn layouts_match_the_c_header() {
        assert_eq!(size_of::<SteerKey>(), 24);
        assert_eq!(offset_of!(SteerKey, queue), 0);
        assert_eq!(offset_of!(SteerKey, addr), 4);
        assert_eq!(offset_of!(SteerKey, port), 20);
        assert_eq!(offset_of!(SteerKey, family), 22);
        assert_eq!(offset_of!(SteerKey, dir), 23);
        assert_eq!(size_of::<SteerValue>(), 8);
        assert_eq!(size_of::<UdpPort>(), 8);
        assert_eq!(offset_of!(UdpPort, sessions), 0);
        assert_eq!(offset_of!(UdpPort, flags), 4);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(offset_of!(FlowKey, group), 16);
        assert_eq!(offset_of!(FlowKey, port), 32);
        assert_eq!(offset_of!(FlowKey, family), 34);
        assert_eq!(size_of::<FlowStats>(), 32);
    }

    #[test]
    fn header_constants_match() {
        let h = include_str!("../include/xpgm_abi.h");
        for (name, v) in [
            ("XPGM_MAX_STEER", MAX_STEER),
            ("XPGM_MAX_SLOTS", MAX_SLOTS),
            ("XPGM_MAX_FLOWS", MAX_FLOWS),
            ("XPGM_MAX_UDP_PORTS", MAX_UDP_PORTS),
            ("XPGM_UDP_PORT_DEFAULT", UDP_PORT_DEFAULT),
            ("XPGM_CNT_MAX", COUNTER_MAX),
        ] {
            assert!(h.contains(&format!("#define {name} {v}")), "{name} != {v}");
        }
        assert!(h.contains(&format!("#define XPGM_MAP_UDP_PORTS \"{MAP_UDP_PORTS}\"")));
        for c in Counter::ALL {
            let cname = format!("XPGM_CNT_{} {}", c.name().to_uppercase(), c as u32);
            assert!(h.contains(&cname), "missing {cname}");
        }
    }

    #[test]
    fn default_ports_skip_zero_and_repeats() {
        assert_eq!(Config::default().default_ports(), vec![3055, 3056]);
        let c = |u, m| Config {
            udp_ucast_port: u,
            udp_mcast_port: m,
            flags: 0,
        };
        assert_eq!(c(5701, 5701).default_ports(), vec![5701]);
        assert_eq!(c(0, 3056).default_ports(), vec![3056]);
        assert_eq!(c(0, 0).default_ports(), Vec::<u16>::new());
    }

    #[test]
    fn v4_keys_are_v4_mapped_and_round_trip() {
        let g: IpAddr = "239.192.0.1".parse().unwrap();
        let k = SteerKey::new(3, g, 7500, Direction::Downstream);
        assert_eq!(&k.addr[..12], &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);
        assert_eq!(&k.addr[12..], &[239, 192, 0, 1]);
        assert_eq!(k.family, FAMILY_V4);
        assert_eq!(k.ip(), g);
        let g6: IpAddr = "ff15::77".parse().unwrap();
        let k6 = SteerKey::new(0, g6, 1, Direction::Upstream);
        assert_eq!(k6.ip(), g6);
        assert_eq!(k6.dir, 1);
    }
}
