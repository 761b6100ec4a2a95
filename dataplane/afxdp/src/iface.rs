//! What a session needs to know about its interface: MAC, MTU, addresses.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::io;

use crate::frame::Mac;

/// An interface's link-layer and IP facts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// Name.
    pub name: String,
    /// MAC address.
    pub mac: Mac,
    /// MTU (IP packet size).
    pub mtu: usize,
    /// Unicast addresses (IPv6 link-local ones last).
    pub addrs: Vec<IpAddr>,
}

impl InterfaceInfo {
    /// Reads `/sys/class/net/NAME` and `getifaddrs(3)`.
    pub fn lookup(name: &str) -> io::Result<Self> {
        if name.is_empty() || name.contains('/') || name.contains("..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad interface name {name:?}"),
            ));
        }
        let base = format!("/sys/class/net/{name}");
        let mac_text = std::fs::read_to_string(format!("{base}/address"))
            .map_err(|e| io::Error::new(e.kind(), format!("interface {name} not found ({e})")))?;
        let mac = Mac::parse(mac_text.trim()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{name}: bad MAC {mac_text:?}"),
            )
        })?;
        let mtu = std::fs::read_to_string(format!("{base}/mtu"))?
            .trim()
            .parse()
            .unwrap_or(1500);
        let mut addrs = interface_addresses(name)?;
        addrs.sort_by_key(|a| matches!(a, IpAddr::V6(v6) if v6.is_unicast_link_local()));
        Ok(Self {
            name: name.to_string(),
            mac,
            mtu,
            addrs,
        })
    }

    /// The first address of the same family as `group` (not link-local
    /// for IPv6 when another exists).
    pub fn address_for(&self, group: IpAddr) -> Option<IpAddr> {
        self.addrs
            .iter()
            .copied()
            .find(|a| a.is_ipv4() == group.is_ipv4())
    }
}

/// Unicast addresses of `name` (getifaddrs).
pub fn interface_addresses(name: &str) -> io::Result<Vec<IpAddr>> {
    let mut head: *mut libc::ifaddrs = core::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into `head`; freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet
        // freed; its fields are valid C data for the list's lifetime.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let n = unsafe { core::ffi::CStr::from_ptr(ifa.ifa_name) };
        if n.to_bytes() != name.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points to a sockaddr of the
        // family it declares.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: AF_INET addresses are sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))));
        } else if family == libc::AF_INET6 {
            // SAFETY: AF_INET6 addresses are sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            out.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found() {
        let lo = InterfaceInfo::lookup("lo").unwrap();
        assert_eq!(lo.mac, Mac::default());
        assert!(lo.mtu > 1000);
        if !lo.addrs.is_empty() {
            assert!(lo.addrs.iter().any(|a| a.is_loopback()));
        }
        assert!(InterfaceInfo::lookup("no-such-if0").is_err());
        assert!(InterfaceInfo::lookup("../etc").is_err());
    }
}
