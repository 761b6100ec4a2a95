//! The data plane's error type.

use std::net::IpAddr;

/// Everything the library can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No network interface has this name.
    #[error("unknown network interface '{0}'")]
    UnknownInterface(String),
    /// The group address is not a multicast address.
    #[error("{0} is not a multicast group address")]
    NotMulticast(IpAddr),
    /// The interface has no address of the group's family to use as our NLA.
    #[error(
        "interface '{iface}' has no usable {family} address (needed as the source/receiver address): {source}"
    )]
    NoAddress {
        /// Interface name.
        iface: String,
        /// "IPv4" or "IPv6".
        family: &'static str,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// Raw sockets need CAP_NET_RAW.
    #[error(
        "cannot open a raw PGM socket (IP protocol 113): permission denied; run as root or with CAP_NET_RAW, or use UDP encapsulation (--udp-encap PORT)"
    )]
    RawPermission,
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// What the kernel said.
        #[source]
        source: std::io::Error,
    },
    /// `try_send`: the publish queue is full (the engine is rate- or window-limited).
    #[error("publish queue full (back-pressure); retry later")]
    WouldBlock,
    /// `send`/`recv` waited for the configured time without success.
    #[error("timed out")]
    Timeout,
    /// A message larger than the configured maximum.
    #[error("message of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// Message length.
        len: usize,
        /// Configured maximum.
        max: usize,
    },
    /// The handle was closed, or its worker has stopped.
    #[error("session closed")]
    Closed,
    /// The AF_XDP transport failed (xpgmd not running, feed already served on this
    /// host, socket setup); the text says what to do.
    #[error("--transport xdp: {0}")]
    Xdp(String),
    /// Invalid configuration.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The worker thread failed; the text is its error.
    #[error("worker failed: {0}")]
    Worker(String),
    /// The transport lost its control process (AF_XDP: xpgmd) and it did not come back
    /// within the grace period; the text names the cause and when it happened.
    #[error("{0}")]
    ControlLost(String),
    /// A ring could not be set up.
    #[error("ring: {0}")]
    Ring(#[from] xpgm_ring::RingError),
}

impl Error {
    pub(crate) fn io(what: &'static str, e: impl Into<std::io::Error>) -> Error {
        Error::Io {
            what,
            source: e.into(),
        }
    }
}
