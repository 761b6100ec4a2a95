//! A minimal rtnetlink client: link and address dumps, XDP detach, and a
//! link-event monitor. Parsing is bounds-checked; the socket calls go through
//! [`crate::sys::Netlink`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::{AtomicU32, Ordering};

use crate::sys::Netlink;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const RTM_SETLINK: u16 = 19;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_DUMP: u16 = 0x300;
const IFLA_ADDRESS: u16 = 1;
const IFLA_IFNAME: u16 = 3;
const IFLA_OPERSTATE: u16 = 16;
const IFLA_NUM_RX_QUEUES: u16 = 32;
const IFLA_XDP: u16 = 43;
const IFLA_XDP_FD: u16 = 1;
const IFLA_XDP_ATTACHED: u16 = 2;
const IFLA_XDP_FLAGS: u16 = 3;
const IFLA_XDP_PROG_ID: u16 = 4;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NLA_F_NESTED: u16 = 0x8000;
const IFF_UP: u32 = 1;
/// `RTMGRP_LINK` multicast group bit.
pub const RTMGRP_LINK: u32 = 1;

static SEQ: AtomicU32 = AtomicU32::new(1);

/// How an XDP program is attached to a link (`IFLA_XDP_ATTACHED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttach {
    /// Driver (native) mode.
    Native,
    /// Generic (skb) mode.
    Generic,
    /// Offloaded to hardware.
    Hardware,
    /// Several modes at once.
    Multi,
}

impl XdpAttach {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            XdpAttach::Native => "native",
            XdpAttach::Generic => "generic",
            XdpAttach::Hardware => "hw",
            XdpAttach::Multi => "multi",
        }
    }

    /// The `XDP_FLAGS_*` mode flag to name this attachment in a detach.
    fn flags(self) -> u32 {
        match self {
            XdpAttach::Native => 1 << 2,
            XdpAttach::Generic => 1 << 1,
            XdpAttach::Hardware => 1 << 3,
            XdpAttach::Multi => 0,
        }
    }
}

/// One network interface as reported by `RTM_GETLINK`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// Interface index.
    pub index: u32,
    /// Name.
    pub name: String,
    /// Administratively up (`IFF_UP`).
    pub admin_up: bool,
    /// RFC 2863 operational state, lower case (`up`, `down`, `unknown`, ...).
    pub oper: &'static str,
    /// Number of receive queues.
    pub rx_queues: u32,
    /// Hardware address, `aa:bb:..`, empty if none.
    pub mac: String,
    /// XDP program attached: mode and program id.
    pub xdp: Option<(XdpAttach, u32)>,
}

impl Link {
    /// Up for forwarding purposes: admin up and oper `up` or `unknown`.
    pub fn is_up(&self) -> bool {
        self.admin_up && matches!(self.oper, "up" | "unknown")
    }
}

/// A link event from the monitor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// New link or a change of an existing one.
    Changed(Link),
    /// The link was removed.
    Removed {
        /// Index of the removed link.
        index: u32,
        /// Its name.
        name: String,
    },
}

fn rd_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn rd_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Iterates the netlink messages in a datagram: (type, flags, payload).
fn messages(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = rd_u32(b, 0)? as usize;
        let ty = rd_u16(b, 4)?;
        if len < 16 || len > b.len() {
            return None;
        }
        let payload = b.get(16..len)?;
        let adv = (len + 3) & !3;
        b = b.get(adv..).unwrap_or(&[]);
        Some((ty, payload))
    })
}

/// Iterates the attributes in `b`: (type without flags, value).
fn attrs(mut b: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = rd_u16(b, 0)? as usize;
        let ty = rd_u16(b, 2)? & !NLA_F_NESTED & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        let v = b.get(4..len)?;
        let adv = (len + 3) & !3;
        b = b.get(adv..).unwrap_or(&[]);
        Some((ty, v))
    })
}

fn oper_name(v: u8) -> &'static str {
    match v {
        1 => "notpresent",
        2 => "down",
        3 => "lowerlayerdown",
        4 => "testing",
        5 => "dormant",
        6 => "up",
        _ => "unknown",
    }
}

fn parse_link(p: &[u8]) -> Option<Link> {
    // struct ifinfomsg: family u8, pad u8, type u16, index i32, flags u32, change u32
    let index = rd_u32(p, 4)?;
    let flags = rd_u32(p, 8)?;
    let mut l = Link {
        index,
        name: String::new(),
        admin_up: flags & IFF_UP != 0,
        oper: "unknown",
        rx_queues: 1,
        mac: String::new(),
        xdp: None,
    };
    for (ty, v) in attrs(p.get(16..)?) {
        match ty {
            IFLA_IFNAME => {
                let s = v.split(|&c| c == 0).next().unwrap_or(&[]);
                l.name = String::from_utf8_lossy(s).into_owned();
            }
            IFLA_OPERSTATE => l.oper = oper_name(v.first().copied().unwrap_or(0)),
            IFLA_NUM_RX_QUEUES => l.rx_queues = rd_u32(v, 0).unwrap_or(1),
            IFLA_ADDRESS => {
                l.mac = v
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":")
            }
            IFLA_XDP => {
                let mut mode = None;
                let mut id = 0;
                for (t, x) in attrs(v) {
                    match t {
                        IFLA_XDP_ATTACHED => {
                            mode = match x.first() {
                                Some(1) => Some(XdpAttach::Native),
                                Some(2) => Some(XdpAttach::Generic),
                                Some(3) => Some(XdpAttach::Hardware),
                                Some(4) => Some(XdpAttach::Multi),
                                _ => None,
                            }
                        }
                        IFLA_XDP_PROG_ID => id = rd_u32(x, 0).unwrap_or(0),
                        _ => {}
                    }
                }
                l.xdp = mode.map(|m| (m, id));
            }
            _ => {}
        }
    }
    Some(l)
}

fn header(buf: &mut Vec<u8>, ty: u16, flags: u16) -> u32 {
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    buf.extend_from_slice(&0u32.to_ne_bytes()); // length, patched by finish()
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(&flags.to_ne_bytes());
    buf.extend_from_slice(&seq.to_ne_bytes());
    buf.extend_from_slice(&0u32.to_ne_bytes());
    seq
}

fn finish(buf: &mut [u8]) {
    let len = u32::try_from(buf.len()).unwrap_or(u32::MAX).to_ne_bytes();
    if let Some(h) = buf.get_mut(0..4) {
        h.copy_from_slice(&len);
    }
}

/// Sends a dump request and collects every message payload of type `want`.
fn dump(req_ty: u16, family_hdr: &[u8], want: u16) -> io::Result<Vec<Vec<u8>>> {
    let nl = Netlink::open(0)?;
    let mut msg = Vec::new();
    header(&mut msg, req_ty, NLM_F_REQUEST | NLM_F_DUMP);
    msg.extend_from_slice(family_hdr);
    finish(&mut msg);
    nl.send(&msg)?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = nl.recv(&mut buf)?;
        for (ty, p) in messages(buf.get(..n).unwrap_or(&[])) {
            match ty {
                NLMSG_DONE => return Ok(out),
                NLMSG_ERROR => {
                    let e = rd_u32(p, 0).map_or(0, |v| v as i32);
                    if e != 0 {
                        return Err(io::Error::from_raw_os_error(-e));
                    }
                }
                t if t == want => out.push(p.to_vec()),
                _ => {}
            }
        }
        if n == 0 {
            return Ok(out);
        }
    }
}

/// All links.
pub fn links() -> io::Result<Vec<Link>> {
    let hdr = [0u8; 16]; // ifinfomsg, AF_UNSPEC
    Ok(dump(RTM_GETLINK, &hdr, RTM_NEWLINK)?
        .iter()
        .filter_map(|p| parse_link(p))
        .collect())
}

/// One link by name.
pub fn link_by_name(name: &str) -> io::Result<Option<Link>> {
    Ok(links()?.into_iter().find(|l| l.name == name))
}

/// All interface addresses: (ifindex, address, prefix length).
pub fn addresses() -> io::Result<Vec<(u32, IpAddr, u8)>> {
    let hdr = [0u8; 8]; // ifaddrmsg, AF_UNSPEC
    let mut out = Vec::new();
    for p in dump(RTM_GETADDR, &hdr, RTM_NEWADDR)? {
        let (Some(&family), Some(&plen), Some(index)) = (p.first(), p.get(1), rd_u32(&p, 4)) else {
            continue;
        };
        let mut addr = None;
        for (ty, v) in attrs(p.get(8..).unwrap_or(&[])) {
            if ty == IFA_LOCAL || (ty == IFA_ADDRESS && addr.is_none()) {
                addr = match (family as i32, v.len()) {
                    (libc::AF_INET, 4) => {
                        let o: [u8; 4] = v.try_into().unwrap_or([0; 4]);
                        Some(IpAddr::V4(Ipv4Addr::from(o)))
                    }
                    (libc::AF_INET6, 16) => {
                        let o: [u8; 16] = v.try_into().unwrap_or([0; 16]);
                        Some(IpAddr::V6(Ipv6Addr::from(o)))
                    }
                    _ => addr,
                };
            }
        }
        if let Some(a) = addr {
            out.push((index, a, plen));
        }
    }
    Ok(out)
}

/// Removes whatever XDP program is attached to `ifindex` in `mode`
/// (netlink `IFLA_XDP_FD = -1`). Works for netlink-attached programs; a
/// program held by a bpf_link owned by a live process cannot be removed this way.
pub fn xdp_detach(ifindex: u32, mode: XdpAttach) -> io::Result<()> {
    let nl = Netlink::open(0)?;
    let mut msg = Vec::new();
    let seq = header(&mut msg, RTM_SETLINK, NLM_F_REQUEST | NLM_F_ACK);
    // ifinfomsg
    msg.extend_from_slice(&[0u8; 4]);
    msg.extend_from_slice(&ifindex.to_ne_bytes());
    msg.extend_from_slice(&[0u8; 8]);
    // IFLA_XDP { IFLA_XDP_FD = -1, IFLA_XDP_FLAGS = mode }
    msg.extend_from_slice(&(4u16 + 8 + 8).to_ne_bytes());
    msg.extend_from_slice(&(IFLA_XDP | NLA_F_NESTED).to_ne_bytes());
    msg.extend_from_slice(&8u16.to_ne_bytes());
    msg.extend_from_slice(&IFLA_XDP_FD.to_ne_bytes());
    msg.extend_from_slice(&(-1i32).to_ne_bytes());
    msg.extend_from_slice(&8u16.to_ne_bytes());
    msg.extend_from_slice(&IFLA_XDP_FLAGS.to_ne_bytes());
    msg.extend_from_slice(&mode.flags().to_ne_bytes());
    finish(&mut msg);
    nl.send(&msg)?;
    let mut buf = vec![0u8; 8192];
    loop {
        let n = nl.recv(&mut buf)?;
        for (ty, p) in messages(buf.get(..n).unwrap_or(&[])) {
            if ty == NLMSG_ERROR {
                let e = rd_u32(p, 0).map_or(0, |v| v as i32);
                let s = rd_u32(p, 12).unwrap_or(0);
                if s == seq || s == 0 {
                    return if e == 0 {
                        Ok(())
                    } else {
                        Err(io::Error::from_raw_os_error(-e))
                    };
                }
            }
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// A subscription to link events (`RTMGRP_LINK`).
#[derive(Debug)]
pub struct LinkMonitor {
    nl: Netlink,
    buf: Vec<u8>,
}

impl LinkMonitor {
    /// Subscribes; `poll` waits at most `timeout` per call.
    pub fn open(timeout: std::time::Duration) -> io::Result<Self> {
        let nl = Netlink::open(RTMGRP_LINK)?;
        nl.set_read_timeout(timeout)?;
        Ok(Self {
            nl,
            buf: vec![0u8; 64 * 1024],
        })
    }

    /// Waits for the next datagram and returns its events (empty on timeout).
    pub fn poll(&mut self) -> io::Result<Vec<LinkEvent>> {
        let n = match self.nl.recv(&mut self.buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        for (ty, p) in messages(self.buf.get(..n).unwrap_or(&[])) {
            match ty {
                RTM_NEWLINK => {
                    if let Some(l) = parse_link(p) {
                        out.push(LinkEvent::Changed(l));
                    }
                }
                RTM_DELLINK => {
                    if let Some(l) = parse_link(p) {
                        out.push(LinkEvent::Removed {
                            index: l.index,
                            name: l.name,
                        });
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers_never_panic_on_garbage() {
        let mut x: u32 = 0x1234_5678;
        for len in 0..200 {
            let mut b = Vec::with_capacity(len);
            for _ in 0..len {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                b.push(x as u8);
            }
            for (_, p) in messages(&b) {
                let _ = parse_link(p);
            }
            let _ = parse_link(&b);
            let _: Vec<_> = attrs(&b).collect();
        }
    }

    #[test]
    fn loopback_is_listed() {
        // Every namespace has `lo`, index 1.
        let ls = links().expect("RTM_GETLINK dump");
        let lo = ls.iter().find(|l| l.name == "lo").expect("lo present");
        assert_eq!(lo.index, 1);
        assert!(lo.rx_queues >= 1);
        let addrs = addresses().expect("RTM_GETADDR dump");
        assert!(
            addrs
                .iter()
                .any(|(i, a, _)| *i == 1 && *a == IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }
}
