//! The receiving side of PGM (RFC 3208 section 6): one peer state per TSI.
//!
//! Drive it like the source: after every `handle_packet` or `handle_timeout`, drain
//! `poll_transmit`, then `poll_event`, then arm a timer for `poll_timeout`.

use crate::config::ReceiverConfig;
use crate::seq::Sqn;
use crate::source::Transmit;
use crate::time::Instant;
use crate::wire::{Error, Nla, PacketRepr, Tsi};

/// What the application sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    /// One APDU, in order. `sqn` is the sequence number of its first TPDU.
    Data {
        /// Session.
        tsi: Tsi,
        /// Sequence number of the APDU's first TPDU.
        sqn: Sqn,
        /// The APDU (valid until the next call on the receiver).
        data: &'a [u8],
    },
    /// `count` sequence numbers starting at `first` will never be delivered.
    Unrecoverable {
        /// Session.
        tsi: Tsi,
        /// First lost sequence number.
        first: Sqn,
        /// Number of consecutive sequence numbers lost.
        count: u32,
    },
    /// A session was heard from for the first time.
    NewPeer {
        /// Session.
        tsi: Tsi,
    },
    /// A session expired (silent for `peer_expiry`) and its state was freed.
    PeerGone {
        /// Session.
        tsi: Tsi,
    },
    /// The source ended the session (OPT_FIN) and everything before it was delivered.
    SessionEnd {
        /// Session.
        tsi: Tsi,
    },
    /// The source reset the session (OPT_RST).
    SessionReset {
        /// Session.
        tsi: Tsi,
    },
}

/// Counters a receiver exposes (summed over peers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// ODATA packets accepted.
    pub odata_received: u64,
    /// RDATA packets accepted.
    pub rdata_received: u64,
    /// Data bytes (TSDU) accepted.
    pub bytes_received: u64,
    /// Duplicate data packets dropped.
    pub duplicates: u64,
    /// NAK packets sent.
    pub naks_sent: u64,
    /// Sequence numbers requested (NAK plus OPT_NAK_LIST entries).
    pub sqns_naked: u64,
    /// NCFs received.
    pub ncf_received: u64,
    /// SPMs received.
    pub spm_received: u64,
    /// SPMRs sent.
    pub spmr_sent: u64,
    /// Sequence numbers reported unrecoverable.
    pub unrecoverable: u64,
    /// APDUs delivered.
    pub delivered: u64,
    /// Malformed or foreign packets ignored.
    pub packets_ignored: u64,
}

/// A PGM receiver.
#[derive(Debug)]
pub struct Receiver {
    _private: (),
}

impl Receiver {
    /// A receiver; `seed` drives NAK back-off randomisation; `local` is this host's NLA.
    pub fn new(config: ReceiverConfig, local: Nla, seed: u64) -> Self {
        let _ = (config, local, seed);
        todo!("engine")
    }

    /// Handles one received packet (bytes from the PGM header on) from `src`.
    pub fn handle_packet(&mut self, now: Instant, src: Nla, bytes: &[u8]) -> Result<(), Error> {
        let pkt = PacketRepr::parse(bytes)?;
        self.handle_repr(now, src, &pkt);
        Ok(())
    }

    /// Handles one already-parsed packet.
    pub fn handle_repr(&mut self, now: Instant, src: Nla, pkt: &PacketRepr<'_>) {
        let _ = (now, src, pkt);
        todo!("engine")
    }

    /// Processes expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _ = now;
        todo!("engine")
    }

    /// Writes the next packet to send (NAK, SPMR) into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let _ = (now, buf);
        todo!("engine")
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        todo!("engine")
    }

    /// When `handle_timeout` next needs calling.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!("engine")
    }

    /// Counters.
    pub fn stats(&self) -> &ReceiverStats {
        todo!("engine")
    }
}
