//! The sending side of a PGM session (RFC 3208 section 5).
//!
//! Drive it like quinn-proto's `Connection`: after every `send`, `handle_packet` or
//! `handle_timeout`, call `poll_transmit` until it returns `None`, then arm a timer for
//! `poll_timeout`.

use crate::config::SourceConfig;
use crate::seq::Sqn;
use crate::time::Instant;
use crate::wire::{Error, Nla, PacketRepr, PacketType, Tsi};

/// Where a packet produced by an engine must go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// The session's multicast group.
    Group,
    /// A unicast address (a source's path NLA, for NAKs and SPMRs).
    Unicast(Nla),
}

/// One packet written into the caller's buffer by `poll_transmit`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// Bytes written (a whole PGM packet starting at its header).
    pub len: usize,
    /// Where to send it.
    pub dest: Destination,
    /// Its PGM type (for counters and steering).
    pub kind: PacketType,
}

/// Why `send` refused an APDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The send queue is full (rate limit); try again after transmitting.
    WouldBlock,
    /// Larger than `max_apdu`.
    TooLarge,
    /// `close` was called.
    Closed,
}

/// Counters a source exposes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// ODATA packets sent.
    pub odata_sent: u64,
    /// ODATA bytes (TSDU) sent.
    pub odata_bytes: u64,
    /// RDATA packets sent.
    pub rdata_sent: u64,
    /// RDATA bytes (TSDU) sent.
    pub rdata_bytes: u64,
    /// SPMs sent.
    pub spm_sent: u64,
    /// NCFs sent.
    pub ncf_sent: u64,
    /// NAKs received (each sequence in an OPT_NAK_LIST counts once).
    pub naks_received: u64,
    /// NAKs for sequence numbers outside the transmit window.
    pub naks_outside_window: u64,
    /// Malformed or foreign packets ignored.
    pub packets_ignored: u64,
    /// SPMRs received.
    pub spmr_received: u64,
}

/// A PGM source.
#[derive(Debug)]
pub struct Source {
    _private: (),
}

impl Source {
    /// A new source for session `tsi`, starting at `now`.
    pub fn new(config: SourceConfig, tsi: Tsi, now: Instant) -> Self {
        let _ = (config, tsi, now);
        todo!("engine")
    }

    /// Queues one APDU; returns the sequence number of its first TPDU.
    pub fn send(&mut self, now: Instant, apdu: &[u8]) -> Result<Sqn, SendError> {
        let _ = (now, apdu);
        todo!("engine")
    }

    /// Ends the session: queued data is sent, then SPMs with OPT_FIN.
    pub fn close(&mut self, now: Instant) {
        let _ = now;
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

    /// Writes the next packet to send into `buf`, if any is due now.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        let _ = (now, buf);
        todo!("engine")
    }

    /// When `handle_timeout` (or `poll_transmit`, for rate-limited data) next needs calling.
    pub fn poll_timeout(&self) -> Option<Instant> {
        todo!("engine")
    }

    /// Counters.
    pub fn stats(&self) -> &SourceStats {
        todo!("engine")
    }
}
