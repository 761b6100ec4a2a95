//! The sans-IO surface the simulator drives. Implemented by the real engines
//! ([`xpgm_core::source::Source`], [`xpgm_core::receiver::Receiver`]); tests implement it
//! with small fakes to exercise the network model without the engines.

use xpgm_core::Instant;
use xpgm_core::receiver::{Event, LineStats, Receiver, ReceiverStats};
use xpgm_core::seq::Sqn;
use xpgm_core::source::{SendError, Source, SourceStats, Transmit};
use xpgm_core::wire::Nla;

/// What every simulated endpoint does.
pub trait Node {
    /// Handles one packet (bytes from the PGM header on) from `src`. Returns false if
    /// the node rejected it as malformed.
    fn handle_packet(&mut self, now: Instant, src: Nla, bytes: &[u8]) -> bool;
    /// Like `handle_packet`, for a packet that came on `line` (A/B lines). Default:
    /// the node has one line.
    fn handle_packet_on(&mut self, now: Instant, line: u8, src: Nla, bytes: &[u8]) -> bool {
        let _ = line;
        self.handle_packet(now, src, bytes)
    }
    /// Processes expired timers.
    fn handle_timeout(&mut self, now: Instant);
    /// Writes the next packet to send into `buf`.
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit>;
    /// When `handle_timeout` next needs calling.
    fn poll_timeout(&self) -> Option<Instant>;
}

/// The sending endpoint.
pub trait SimSource: Node {
    /// Queues one APDU; returns the sequence number of its first TPDU.
    fn send(&mut self, now: Instant, apdu: &[u8]) -> Result<Sqn, SendError>;
    /// Ends the session.
    fn close(&mut self, now: Instant);
    /// Counters.
    fn stats(&self) -> SourceStats;
}

/// A receiving endpoint.
pub trait SimReceiver: Node {
    /// The next event for the application.
    fn poll_event(&mut self) -> Option<Event<'_>>;
    /// Counters.
    fn stats(&self) -> ReceiverStats;
    /// A/B line counters; default: none.
    fn line_stats(&self, line: u8) -> Option<LineStats> {
        let _ = line;
        None
    }
}

impl Node for Source {
    fn handle_packet(&mut self, now: Instant, src: Nla, bytes: &[u8]) -> bool {
        Source::handle_packet(self, now, src, bytes).is_ok()
    }
    fn handle_packet_on(&mut self, now: Instant, line: u8, src: Nla, bytes: &[u8]) -> bool {
        Source::handle_packet_on(self, now, line, src, bytes).is_ok()
    }
    fn handle_timeout(&mut self, now: Instant) {
        Source::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        Source::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Source::poll_timeout(self)
    }
}

impl SimSource for Source {
    fn send(&mut self, now: Instant, apdu: &[u8]) -> Result<Sqn, SendError> {
        Source::send(self, now, apdu)
    }
    fn close(&mut self, now: Instant) {
        Source::close(self, now);
    }
    fn stats(&self) -> SourceStats {
        *Source::stats(self)
    }
}

impl Node for Receiver {
    fn handle_packet(&mut self, now: Instant, src: Nla, bytes: &[u8]) -> bool {
        Receiver::handle_packet(self, now, src, bytes).is_ok()
    }
    fn handle_packet_on(&mut self, now: Instant, line: u8, src: Nla, bytes: &[u8]) -> bool {
        Receiver::handle_packet_on(self, now, line, src, bytes).is_ok()
    }
    fn handle_timeout(&mut self, now: Instant) {
        Receiver::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        Receiver::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Receiver::poll_timeout(self)
    }
}

impl SimReceiver for Receiver {
    fn poll_event(&mut self) -> Option<Event<'_>> {
        Receiver::poll_event(self)
    }
    fn stats(&self) -> ReceiverStats {
        *Receiver::stats(self)
    }
    fn line_stats(&self, line: u8) -> Option<LineStats> {
        Receiver::line_stats(self, line)
    }
}
