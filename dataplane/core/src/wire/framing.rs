//! How PGM packets travel: raw IP (protocol 113) or UDP-encapsulated.

use super::{DEFAULT_UDP_ENCAP_MCAST_PORT, DEFAULT_UDP_ENCAP_UCAST_PORT};

/// Encapsulation of PGM packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// PGM directly over IP, protocol number 113.
    RawIp,
    /// PGM in UDP datagrams (OpenPGM's UDP encapsulation).
    Udp {
        /// Port unicast (upstream) packets are sent to.
        ucast_port: u16,
        /// Port multicast (downstream) packets are sent to.
        mcast_port: u16,
    },
}

impl Framing {
    /// UDP encapsulation on OpenPGM's default ports (3055 unicast, 3056 multicast).
    pub const fn udp_default() -> Framing {
        Framing::Udp {
            ucast_port: DEFAULT_UDP_ENCAP_UCAST_PORT,
            mcast_port: DEFAULT_UDP_ENCAP_MCAST_PORT,
        }
    }
}
