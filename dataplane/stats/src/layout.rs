//! The stats file: [`TOTAL_WORDS`] native-endian 64-bit words (the file never leaves
//! the host).
//!
//! | word | content |
//! |------|---------|
//! | 0 | [`MAGIC`] |
//! | 1 | [`VERSION`] |
//! | 2 | total words ([`TOTAL_WORDS`]) |
//! | 3 | writer pid |
//! | 4 | writer process start time (clock ticks since boot, `/proc/<pid>/stat` field 22) |
//! | 5 | session creation time, Unix nanoseconds |
//! | 6 | role: 1 source, 2 receiver ([`Role`]) |
//! | 7 | state: 0 initialising, 1 live, 2 closed (stored last, with Release) |
//! | 8 | bits 0..16 data port; bits 16..32 UDP encapsulation port; bit 32 encapsulation on |
//! | 9 | TSI: 6 bytes GSI then source port (network order), as bytes in memory |
//! | 10 | session number within the process |
//! | 11 | counter count in use ([`COUNTERS`]) |
//! | 12..14 | transport name, NUL-padded ASCII |
//! | 14..16 | interface name, NUL-padded ASCII |
//! | 16..24 | group address text, NUL-padded ASCII |
//! | 24 | A/B lines published (0 for a session on one line, else 2..=[`LINES`]) |
//! | 25..32 | reserved (zero) |
//! | 32..96 | counters ([`SOURCE_COUNTERS`] or [`RECEIVER_COUNTERS`] by index) |
//! | 96..128 | [`LINES`] line records of [`LINE_WORDS`] words ([`line`]); unused ones zero |
//!
//! Files of the earlier sizes are still read: [`V1_TOTAL_WORDS`] words (32 counters)
//! and [`V2_TOTAL_WORDS`] (64 counters, no line records); word 2 says which size a
//! file is.

/// "XPGMSTAT" as a little-endian word.
pub const MAGIC: u64 = u64::from_le_bytes(*b"XPGMSTAT");
/// Layout version.
pub const VERSION: u64 = 1;
/// Words before the counters.
pub const HEADER_WORDS: usize = 32;
/// Counter words.
pub const COUNTERS: usize = 64;
/// Words in a file of the first, 32-counter size (still accepted by the reader).
pub const V1_TOTAL_WORDS: usize = HEADER_WORDS + 32;
/// Words in a file of the second size: 64 counters, no line records (still accepted).
pub const V2_TOTAL_WORDS: usize = HEADER_WORDS + COUNTERS;
/// A/B line records (as many as a session can have lines).
pub const LINES: usize = 4;
/// Words per line record.
pub const LINE_WORDS: usize = 8;
/// First word of the line records.
pub const LINE_AREA: usize = HEADER_WORDS + COUNTERS;
/// Words in a file.
pub const TOTAL_WORDS: usize = LINE_AREA + LINES * LINE_WORDS;
/// Bytes in a file.
pub const TOTAL_BYTES: usize = TOTAL_WORDS * 8;

/// Header word indices.
pub mod w {
    /// [`super::MAGIC`].
    pub const MAGIC: usize = 0;
    /// [`super::VERSION`].
    pub const VERSION: usize = 1;
    /// Total words.
    pub const TOTAL: usize = 2;
    /// Writer pid.
    pub const PID: usize = 3;
    /// Writer process start time (ticks since boot).
    pub const PROC_START: usize = 4;
    /// Session creation, Unix ns.
    pub const CREATED: usize = 5;
    /// Role.
    pub const ROLE: usize = 6;
    /// State.
    pub const STATE: usize = 7;
    /// Ports.
    pub const PORTS: usize = 8;
    /// TSI bytes.
    pub const TSI: usize = 9;
    /// Session number in the process.
    pub const SEQ: usize = 10;
    /// Counters in use.
    pub const NCOUNTERS: usize = 11;
    /// Transport name (2 words).
    pub const TRANSPORT: usize = 12;
    /// Interface name (2 words).
    pub const IFACE: usize = 14;
    /// Group text (8 words).
    pub const GROUP: usize = 16;
    /// A/B lines published.
    pub const LINES: usize = 24;
}

const _: () = assert!(line::RESERVED < LINE_WORDS);

/// Word offsets within a line record (receivers: docs/transport.md "A/B lines").
pub mod line {
    /// Interface name, NUL-padded ASCII (2 words).
    pub const IFACE: usize = 0;
    /// Data packets (ODATA, RDATA) that came on the line, duplicates included.
    pub const RECEIVED: usize = 2;
    /// Sequences the line brought first.
    pub const WON: usize = 3;
    /// Sequences the line missed (another line or a repair brought them).
    pub const LOST: usize = 4;
    /// 1 while the engine counts the line as up, else 0.
    pub const UP: usize = 5;
    /// Times the line's transport failed and was closed (it is reopened every second).
    pub const FAILURES: usize = 6;
    /// Reserved (zero).
    pub const RESERVED: usize = 7;
}

/// Text fields: (first word, words).
pub(crate) const TRANSPORT_FIELD: (usize, usize) = (w::TRANSPORT, 2);
pub(crate) const IFACE_FIELD: (usize, usize) = (w::IFACE, 2);
pub(crate) const GROUP_FIELD: (usize, usize) = (w::GROUP, 8);
/// A line record's interface name: (first word, words) within the record.
pub(crate) const LINE_IFACE_FIELD: (usize, usize) = (line::IFACE, 2);

/// State word values.
pub mod state {
    /// Being written; readers skip it.
    pub const INIT: u64 = 0;
    /// Counters are live.
    pub const LIVE: u64 = 1;
    /// The session ended (the file is about to be removed).
    pub const CLOSED: u64 = 2;
}

/// Which end of a PGM session a file describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A PGM source (publisher).
    Source,
    /// A PGM receiver (subscriber).
    Receiver,
}

impl Role {
    /// Value stored in the role word.
    pub fn code(self) -> u64 {
        match self {
            Role::Source => 1,
            Role::Receiver => 2,
        }
    }

    /// The role for a role word, if valid.
    pub fn from_code(c: u64) -> Option<Role> {
        match c {
            1 => Some(Role::Source),
            2 => Some(Role::Receiver),
            _ => None,
        }
    }

    /// "source" or "receiver".
    pub fn name(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Receiver => "receiver",
        }
    }

    /// The counter table of this role.
    pub fn counters(self) -> &'static [CounterDef] {
        match self {
            Role::Source => SOURCE_COUNTERS,
            Role::Receiver => RECEIVER_COUNTERS,
        }
    }
}

/// Counter or gauge (Prometheus metric type; rates are shown for counters only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic total.
    Counter,
    /// Current value (window edges, queue depths).
    Gauge,
}

/// One counter slot: its index in the counter area, name and meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CounterDef {
    /// Index in the counter area (0..[`COUNTERS`]).
    pub index: usize,
    /// Short name (JSON key; Prometheus `xpgm_<role>_<name>[_total]`).
    pub name: &'static str,
    /// One-line description (Prometheus HELP).
    pub help: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
}

const fn c(index: usize, name: &'static str, help: &'static str) -> CounterDef {
    CounterDef {
        index,
        name,
        help,
        kind: Kind::Counter,
    }
}

const fn g(index: usize, name: &'static str, help: &'static str) -> CounterDef {
    CounterDef {
        index,
        name,
        help,
        kind: Kind::Gauge,
    }
}

/// Source counter indices (used by the worker).
pub mod src {
    #![allow(missing_docs)]
    pub const ODATA_PACKETS: usize = 0;
    pub const ODATA_BYTES: usize = 1;
    pub const RDATA_PACKETS: usize = 2;
    pub const RDATA_BYTES: usize = 3;
    pub const NAKS_RECEIVED: usize = 4;
    pub const NAKS_OUTSIDE_WINDOW: usize = 5;
    pub const NCF_SENT: usize = 6;
    pub const SPM_SENT: usize = 7;
    pub const SPMR_RECEIVED: usize = 8;
    pub const REPAIRS_DROPPED: usize = 9;
    pub const TXW_TRAIL: usize = 10;
    pub const TXW_LEAD: usize = 11;
    pub const MESSAGES_ACCEPTED: usize = 12;
    pub const UNSENT: usize = 13;
    pub const QUEUED: usize = 14;
    pub const SEND_ERRORS: usize = 15;
    pub const PACKETS_IGNORED: usize = 16;
    pub const REPAIRS_PENDING: usize = 17;
    pub const NCF_BYTES: usize = 18;
    pub const NCFS_DROPPED: usize = 19;
    pub const RDATA_TPDU_BYTES: usize = 20;
    pub const NAKS_COALESCED: usize = 21;
    pub const REPAIRS_EXPIRED: usize = 22;
    pub const CONTROL_LOST: usize = 23;
    pub const CONTROL_RECONNECTS: usize = 24;
    pub const UDP_CHECKSUM_BAD_ACCEPTED: usize = 25;
    pub const FRAMES_REJECTED: usize = 26;
    pub const REJECTED_CHECKSUM: usize = 27;
    pub const REJECTED_HEADER: usize = 28;
    pub const REJECTED_NOT_PGM: usize = 29;
    pub const REJECTED_ADDRESS: usize = 30;
    pub const NAKS_HELD_OFF: usize = 31;
}

/// Receiver counter indices (used by the worker).
pub mod rcv {
    #![allow(missing_docs)]
    pub const ODATA_PACKETS: usize = 0;
    pub const RDATA_PACKETS: usize = 1;
    pub const DATA_BYTES: usize = 2;
    pub const DUPLICATES: usize = 3;
    pub const NAKS_SENT: usize = 4;
    pub const SQNS_NAKED: usize = 5;
    pub const NCF_RECEIVED: usize = 6;
    pub const UNRECOVERABLE: usize = 7;
    pub const DELIVERED: usize = 8;
    pub const WINDOW_FULL_DROPS: usize = 9;
    pub const BUFFER_DROPS: usize = 10;
    pub const SPM_RECEIVED: usize = 11;
    pub const SPMR_SENT: usize = 12;
    pub const PEERS: usize = 13;
    pub const SEND_ERRORS: usize = 14;
    pub const PACKETS_IGNORED: usize = 15;
    pub const LOST_TO_TRAIL: usize = 16;
    pub const RETRIES_EXHAUSTED: usize = 17;
    pub const RXW_BUFFERS: usize = 18;
    pub const RXW_TRAIL: usize = 19;
    pub const RXW_LEAD: usize = 20;
    pub const FILTERED: usize = 21;
    pub const PROBATION_PACKETS: usize = 22;
    pub const PEERS_EVICTED: usize = 23;
    pub const PROBATION: usize = 24;
    pub const CONTROL_LOST: usize = 25;
    pub const CONTROL_RECONNECTS: usize = 26;
    pub const OVERRUNS: usize = 27;
    pub const XDP_RX_DROPPED: usize = 28;
    pub const XDP_RX_RING_FULL: usize = 29;
    pub const XDP_FILL_RING_EMPTY: usize = 30;
    pub const SOCKET_DROPS: usize = 31;
    pub const UDP_CHECKSUM_BAD_ACCEPTED: usize = 32;
    pub const FRAMES_REJECTED: usize = 33;
    pub const REJECTED_CHECKSUM: usize = 34;
    pub const REJECTED_HEADER: usize = 35;
    pub const REJECTED_NOT_PGM: usize = 36;
    pub const REJECTED_ADDRESS: usize = 37;
    pub const RTT_SAMPLES: usize = 38;
}

/// The six frame counters both roles publish (AF_XDP receive path; docs/reliability.md
/// section 9), in table order, for the index module `$m` of a role.
macro_rules! frame_counters {
    ($m:ident) => {
        [
            c(
                $m::UDP_CHECKSUM_BAD_ACCEPTED,
                "udp_checksum_bad_accepted",
                "UDP-encapsulated frames accepted on their PGM checksum although the UDP checksum did not verify",
            ),
            c(
                $m::FRAMES_REJECTED,
                "frames_rejected",
                "Frames steered to the session and refused below PGM (the four rejected_* reasons)",
            ),
            c(
                $m::REJECTED_CHECKSUM,
                "rejected_checksum",
                "Frames refused: neither the UDP nor the PGM checksum verified",
            ),
            c(
                $m::REJECTED_HEADER,
                "rejected_header",
                "Frames refused: truncated, bad lengths, bad IPv4 header checksum, fragment or wrong IP family",
            ),
            c(
                $m::REJECTED_NOT_PGM,
                "rejected_not_pgm",
                "Frames refused: not PGM under the session's framing (IP protocol, UDP port)",
            ),
            c(
                $m::REJECTED_ADDRESS,
                "rejected_address",
                "Frames refused: not addressed to the session, or from a bad source address",
            ),
        ]
    };
}

/// A source's counters.
pub const SOURCE_COUNTERS: &[CounterDef] = &[
    c(src::ODATA_PACKETS, "odata_packets", "ODATA packets sent"),
    c(
        src::ODATA_BYTES,
        "odata_bytes",
        "ODATA payload (TSDU) bytes sent",
    ),
    c(
        src::RDATA_PACKETS,
        "rdata_packets",
        "RDATA (repair) packets sent",
    ),
    c(
        src::RDATA_BYTES,
        "rdata_bytes",
        "RDATA payload (TSDU) bytes sent",
    ),
    c(
        src::NAKS_RECEIVED,
        "naks_received",
        "NAKed sequence numbers received",
    ),
    c(
        src::NAKS_OUTSIDE_WINDOW,
        "naks_outside_window",
        "NAKs for sequence numbers outside the transmit window",
    ),
    c(src::NCF_SENT, "ncf_sent", "NCFs sent"),
    c(src::SPM_SENT, "spm_sent", "SPMs sent"),
    c(src::SPMR_RECEIVED, "spmr_received", "SPMRs received"),
    c(
        src::REPAIRS_DROPPED,
        "repairs_dropped",
        "NAKed sequences not repaired because the repair queue was full",
    ),
    g(
        src::TXW_TRAIL,
        "txw_trail",
        "Transmit window trailing edge (sequence number)",
    ),
    g(
        src::TXW_LEAD,
        "txw_lead",
        "Transmit window leading edge (sequence number)",
    ),
    c(
        src::MESSAGES_ACCEPTED,
        "messages_accepted",
        "Application messages accepted by the source",
    ),
    g(src::UNSENT, "unsent", "Messages accepted but not yet sent"),
    g(
        src::QUEUED,
        "queued",
        "Messages waiting in the publish ring",
    ),
    c(
        src::SEND_ERRORS,
        "send_errors",
        "Packets the transport failed to send",
    ),
    c(
        src::PACKETS_IGNORED,
        "packets_ignored",
        "Malformed or foreign packets ignored",
    ),
    g(
        src::REPAIRS_PENDING,
        "repairs_pending",
        "Repairs queued for sending",
    ),
    c(
        src::NCF_BYTES,
        "ncf_bytes",
        "NCF bytes sent (PGM header on), within ncf_max_rte",
    ),
    c(
        src::NCFS_DROPPED,
        "ncfs_dropped",
        "NAKs not confirmed because the NCF queue or budget was full",
    ),
    c(
        src::RDATA_TPDU_BYTES,
        "rdata_tpdu_bytes",
        "RDATA bytes sent (PGM header on), within rdata_max_rte",
    ),
    c(
        src::NAKS_COALESCED,
        "naks_coalesced",
        "NAKed sequences already queued for repair",
    ),
    c(
        src::REPAIRS_EXPIRED,
        "repairs_expired",
        "Queued repairs dropped because the trail passed them",
    ),
    c(
        src::CONTROL_LOST,
        "control_lost",
        "Times the connection to xpgmd was lost",
    ),
    c(
        src::CONTROL_RECONNECTS,
        "control_reconnects",
        "Times the session registered again with a restarted xpgmd",
    ),
    frame_counters!(src)[0],
    frame_counters!(src)[1],
    frame_counters!(src)[2],
    frame_counters!(src)[3],
    frame_counters!(src)[4],
    frame_counters!(src)[5],
    c(
        src::NAKS_HELD_OFF,
        "naks_held_off",
        "NAKs confirmed but not repaired again: within rdata_holdoff of an RDATA for that sequence",
    ),
];

/// A receiver's counters.
pub const RECEIVER_COUNTERS: &[CounterDef] = &[
    c(
        rcv::ODATA_PACKETS,
        "odata_packets",
        "ODATA packets accepted",
    ),
    c(
        rcv::RDATA_PACKETS,
        "rdata_packets",
        "RDATA (repair) packets accepted",
    ),
    c(
        rcv::DATA_BYTES,
        "data_bytes",
        "Payload (TSDU) bytes accepted, ODATA and RDATA",
    ),
    c(
        rcv::DUPLICATES,
        "duplicates",
        "Duplicate data packets dropped",
    ),
    c(rcv::NAKS_SENT, "naks_sent", "NAK packets sent"),
    c(
        rcv::SQNS_NAKED,
        "sqns_naked",
        "Sequence numbers requested (NAK plus OPT_NAK_LIST entries)",
    ),
    c(rcv::NCF_RECEIVED, "ncf_received", "NCFs received"),
    c(
        rcv::UNRECOVERABLE,
        "unrecoverable",
        "Sequence numbers reported unrecoverable to the application",
    ),
    c(rcv::DELIVERED, "delivered", "Messages (APDUs) delivered"),
    c(
        rcv::WINDOW_FULL_DROPS,
        "window_full_drops",
        "Data dropped beyond the receive window (application not draining)",
    ),
    c(
        rcv::BUFFER_DROPS,
        "buffer_drops",
        "Data dropped because the receive buffer pool was exhausted",
    ),
    c(rcv::SPM_RECEIVED, "spm_received", "SPMs received"),
    c(rcv::SPMR_SENT, "spmr_sent", "SPMRs sent"),
    g(rcv::PEERS, "peers", "Sources (TSIs) tracked"),
    c(
        rcv::SEND_ERRORS,
        "send_errors",
        "Packets the transport failed to send",
    ),
    c(
        rcv::PACKETS_IGNORED,
        "packets_ignored",
        "Malformed or foreign packets ignored",
    ),
    c(
        rcv::LOST_TO_TRAIL,
        "lost_to_trail",
        "Missing sequences given up because the source's trail passed them",
    ),
    c(
        rcv::RETRIES_EXHAUSTED,
        "retries_exhausted",
        "Missing sequences given up because nak_ncf_retries + 1 NAKs drew nothing from the source",
    ),
    g(
        rcv::RXW_BUFFERS,
        "rxw_buffers",
        "Receive window buffers allocated",
    ),
    g(
        rcv::RXW_TRAIL,
        "rxw_trail",
        "Receive window trailing edge advertised by the source last heard (sequence number)",
    ),
    g(
        rcv::RXW_LEAD,
        "rxw_lead",
        "Receive window leading edge: highest sequence number heard from the source last heard",
    ),
    c(
        rcv::FILTERED,
        "filtered",
        "Packets dropped by the source/TSI filter before any peer state",
    ),
    c(
        rcv::PROBATION_PACKETS,
        "probation_packets",
        "Packets from sessions waiting in probation (peer table full; not delivered)",
    ),
    c(
        rcv::PEERS_EVICTED,
        "peers_evicted",
        "Peers evicted to admit a more active session",
    ),
    g(
        rcv::PROBATION,
        "probation",
        "Sessions (TSIs) waiting in probation",
    ),
    c(
        rcv::CONTROL_LOST,
        "control_lost",
        "Times the connection to xpgmd was lost",
    ),
    c(
        rcv::CONTROL_RECONNECTS,
        "control_reconnects",
        "Times the session registered again with a restarted xpgmd",
    ),
    c(
        rcv::OVERRUNS,
        "overruns",
        "Packets the kernel dropped before the receiver read them (xdp_rx_dropped + xdp_rx_ring_full + socket_drops)",
    ),
    c(
        rcv::XDP_RX_DROPPED,
        "xdp_rx_dropped",
        "AF_XDP frames dropped by the kernel for the socket, mostly for want of a fill ring buffer",
    ),
    c(
        rcv::XDP_RX_RING_FULL,
        "xdp_rx_ring_full",
        "AF_XDP frames dropped because the RX ring was full",
    ),
    c(
        rcv::XDP_FILL_RING_EMPTY,
        "xdp_fill_ring_empty",
        "Times the kernel found the AF_XDP fill ring empty (a cause; its copy-mode drops are in xdp_rx_dropped)",
    ),
    c(
        rcv::SOCKET_DROPS,
        "socket_drops",
        "Datagrams the kernel dropped for the receive socket (buffer full, or a bad UDP checksum)",
    ),
    frame_counters!(rcv)[0],
    frame_counters!(rcv)[1],
    frame_counters!(rcv)[2],
    frame_counters!(rcv)[3],
    frame_counters!(rcv)[4],
    frame_counters!(rcv)[5],
    c(
        rcv::RTT_SAMPLES,
        "rtt_samples",
        "Round-trip samples taken (NAK to NCF or RDATA, SPMR to SPM) for the NAK timers",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_consistent() {
        for role in [Role::Source, Role::Receiver] {
            let t = role.counters();
            for (i, d) in t.iter().enumerate() {
                assert_eq!(d.index, i, "{} {} out of order", role.name(), d.name);
                assert!(d.index < COUNTERS);
                assert!(
                    d.name
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b == b'_' || b.is_ascii_digit())
                );
                assert!(!d.help.contains('\n') && !d.help.contains('\\'));
            }
            assert_eq!(Role::from_code(role.code()), Some(role));
        }
        assert_eq!(Role::from_code(0), None);
        assert_eq!(Role::from_code(3), None);
        // Text fields fit in the header and do not overlap the counters.
        assert!(GROUP_FIELD.0 + GROUP_FIELD.1 <= HEADER_WORDS);
        assert_eq!(TRANSPORT_FIELD.0 + TRANSPORT_FIELD.1, IFACE_FIELD.0);
        assert_eq!(IFACE_FIELD.0 + IFACE_FIELD.1, GROUP_FIELD.0);
        assert_eq!(GROUP_FIELD.0 + GROUP_FIELD.1, w::LINES);
        assert_eq!(LINE_IFACE_FIELD.0 + LINE_IFACE_FIELD.1, line::RECEIVED);
        assert_eq!(LINE_AREA + LINES * LINE_WORDS, TOTAL_WORDS);
    }
}
