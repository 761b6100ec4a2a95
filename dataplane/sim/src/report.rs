//! The outcome of a run: totals, per-receiver results, network counters. Printed as a
//! table (`Display`) or as one JSON object ([`Report::to_json`]).

use core::fmt;
use core::time::Duration;

use xpgm_core::wire::PacketType;

/// Number of PGM packet types counted.
pub const NTYPES: usize = 10;

/// Every packet type, in counter order.
pub const TYPES: [PacketType; NTYPES] = [
    PacketType::Spm,
    PacketType::Poll,
    PacketType::Polr,
    PacketType::Odata,
    PacketType::Rdata,
    PacketType::Nak,
    PacketType::Nnak,
    PacketType::Ncf,
    PacketType::Spmr,
    PacketType::Ack,
];

/// Counter index of a packet type.
pub fn type_index(t: PacketType) -> usize {
    match t {
        PacketType::Spm => 0,
        PacketType::Poll => 1,
        PacketType::Polr => 2,
        PacketType::Odata => 3,
        PacketType::Rdata => 4,
        PacketType::Nak => 5,
        PacketType::Nnak => 6,
        PacketType::Ncf => 7,
        PacketType::Spmr => 8,
        PacketType::Ack => 9,
    }
}

/// Lower-case name of a packet type.
pub fn type_name(t: PacketType) -> &'static str {
    match t {
        PacketType::Spm => "spm",
        PacketType::Poll => "poll",
        PacketType::Polr => "polr",
        PacketType::Odata => "odata",
        PacketType::Rdata => "rdata",
        PacketType::Nak => "nak",
        PacketType::Nnak => "nnak",
        PacketType::Ncf => "ncf",
        PacketType::Spmr => "spmr",
        PacketType::Ack => "ack",
    }
}

/// Histogram of delivery latencies: 1 µs buckets below 10 ms, 100 µs buckets up to
/// 10 s (later ones count in the last bucket; the maximum is kept exactly).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    counts: Vec<u64>,
    n: u64,
    max_ns: u64,
}

const FINE_US: u64 = 10_000;
const COARSE_US: u64 = 100;
const BUCKETS: usize = (FINE_US + 99_900) as usize;

impl Latency {
    /// Counts one latency.
    pub fn record(&mut self, d: Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; BUCKETS];
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let us = ns / 1000;
        let i = if us < FINE_US {
            us
        } else {
            FINE_US + (us - FINE_US) / COARSE_US
        };
        let i = (i as usize).min(BUCKETS - 1);
        self.counts[i] += 1;
        self.n += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Percentiles (µs, bucket lower bounds) and the maximum.
    pub fn summary(&self) -> LatencySummary {
        let q = |p: f64| -> u64 {
            if self.n == 0 {
                return 0;
            }
            let rank = ((self.n as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, &c) in self.counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    let i = i as u64;
                    return if i < FINE_US {
                        i
                    } else {
                        FINE_US + (i - FINE_US) * COARSE_US
                    };
                }
            }
            0
        };
        LatencySummary {
            count: self.n,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: self.max_ns / 1000,
        }
    }
}

/// Percentiles of a [`Latency`] histogram, in µs of virtual time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl LatencySummary {
    fn to_json(self) -> serde_json::Value {
        serde_json::json!({
            "count": self.count,
            "p50_us": self.p50_us,
            "p90_us": self.p90_us,
            "p99_us": self.p99_us,
            "p999_us": self.p999_us,
            "max_us": self.max_us,
        })
    }
}

impl fmt::Display for LatencySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} samples, p50 {} µs, p90 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            self.count, self.p50_us, self.p90_us, self.p99_us, self.p999_us, self.max_us
        )
    }
}

/// Packet counts by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PerType(pub [u64; NTYPES]);

impl PerType {
    /// The count for `t`.
    pub fn get(&self, t: PacketType) -> u64 {
        self.0[type_index(t)]
    }
    /// Adds one for `t`.
    pub fn bump(&mut self, t: PacketType) {
        self.0[type_index(t)] += 1;
    }
    /// Sum over types.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
    fn to_json(self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for t in TYPES {
            let v = self.get(t);
            if v != 0 {
                m.insert(type_name(t).into(), v.into());
            }
        }
        serde_json::Value::Object(m)
    }
}

/// What the network did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Packets transmitted by the source, by type.
    pub source_sent: PerType,
    /// Packets transmitted by all receivers, by type.
    pub receivers_sent: PerType,
    /// Dropped on the shared upstream link (each drop is lost for every receiver).
    pub upstream_dropped: PerType,
    /// Dropped on per-receiver downstream links by their loss model.
    pub downstream_dropped: PerType,
    /// Dropped on reverse (receiver to source) links by their loss model.
    pub reverse_dropped: PerType,
    /// Dropped by the extra per-type loss (either direction).
    pub type_dropped: PerType,
    /// Extra copies delivered by duplication.
    pub duplicated: u64,
    /// Packets handed to a node.
    pub delivered: u64,
    /// Per line: dropped on its downstream links by their loss model (also in
    /// `downstream_dropped`).
    pub line_dropped: [PerType; xpgm_core::MAX_LINES],
}

/// Why the run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Every receiver saw `SessionEnd`.
    AllSessionsEnded,
    /// Nothing but SPMs for the configured quiet period.
    Quiet,
    /// No event left to process.
    Idle,
    /// The virtual-time cap was reached.
    TimeLimit,
    /// The event cap was reached.
    EventLimit,
    /// The source refused a message with an error other than `WouldBlock`.
    SendError,
}

impl EndReason {
    /// Short name.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::AllSessionsEnded => "all_sessions_ended",
            EndReason::Quiet => "quiet",
            EndReason::Idle => "idle",
            EndReason::TimeLimit => "time_limit",
            EndReason::EventLimit => "event_limit",
            EndReason::SendError => "send_error",
        }
    }
}

/// One receiver's outcome.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    /// Per line (of `lines`): the receiver's `received`, `won`, `lost`.
    pub lines: [(u64, u64, u64); xpgm_core::MAX_LINES],
    /// `LineDown` events the receiver reported.
    pub line_downs: u64,
    /// `LineUp` events the receiver reported.
    pub line_ups: u64,
    /// Messages delivered intact (each counted once).
    pub delivered: u64,
    /// Messages reported unrecoverable.
    pub unrecoverable: u64,
    /// Messages delivered again.
    pub duplicates: u64,
    /// Deliveries out of order.
    pub out_of_order: u64,
    /// Deliveries that match no message.
    pub corrupt: u64,
    /// Leading messages the receiver never mentioned (it joined after them).
    pub join_gap: u64,
    /// Sequence numbers reported unrecoverable.
    pub unrecoverable_sqns: u64,
    /// Messages reported lost or unknown when the peer expired (`PeerGone { last }`:
    /// the receiver never learnt the session's tail).
    pub tail_unknown: u64,
    /// Messages at or before the `last` of `PeerGone { last }` that were neither
    /// delivered nor reported: must be 0.
    pub accounting_holes: u64,
    /// Saw `SessionEnd`.
    pub session_ended: bool,
    /// NAK packets sent (engine counter).
    pub naks_sent: u64,
    /// Duplicate data packets the engine dropped (not delivered).
    pub dup_packets_dropped: u64,
    /// Packets the receiver rejected as malformed.
    pub parse_errors: u64,
    /// Sequences given up because the source's trail passed them (engine counter).
    pub lost_to_trail: u64,
    /// Sequences given up because the source answered no NAK at all (engine counter).
    pub retries_exhausted: u64,
}

/// The outcome of a run. Totals are summed over receivers, so full delivery is
/// `delivered == messages * receivers`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Seed of the run.
    pub seed: u64,
    /// Receivers.
    pub receivers: usize,
    /// Lines (A/B) every packet of the source went on.
    pub lines: usize,
    /// Messages the application meant to send.
    pub messages: u64,
    /// Message size in bytes.
    pub size: usize,
    /// Messages the source accepted.
    pub sent: u64,
    /// Messages delivered intact, summed over receivers.
    pub delivered: u64,
    /// Messages reported unrecoverable, summed over receivers.
    pub unrecoverable: u64,
    /// Messages delivered more than once.
    pub duplicates: u64,
    /// Deliveries out of order.
    pub out_of_order: u64,
    /// Deliveries whose content or sequence number match no message.
    pub corrupt: u64,
    /// Messages neither delivered nor reported unrecoverable (includes `join_gap`).
    pub missing: u64,
    /// Leading messages receivers never mentioned because they joined the stream after
    /// them (see [`crate::check::Checker::join_gap`]).
    pub join_gap: u64,
    /// Sequence numbers reported unrecoverable, summed over receivers.
    pub unrecoverable_sqns: u64,
    /// Messages reported lost or unknown at peer expiry, summed over receivers.
    pub tail_unknown: u64,
    /// Receivers that saw `SessionEnd`.
    pub sessions_ended: usize,
    /// NAKs received by the source (`SourceStats::naks_received`).
    pub naks_at_source: u64,
    /// RDATA sent by the source.
    pub rdata_sent: u64,
    /// NCFs sent by the source.
    pub ncf_sent: u64,
    /// ODATA sent by the source.
    pub odata_sent: u64,
    /// SPMs sent by the source.
    pub spm_sent: u64,
    /// NAKs the source got for sequence numbers outside its window.
    pub naks_outside_window: u64,
    /// NAK packets sent by all receivers.
    pub naks_sent: u64,
    /// Packets the source rejected as malformed.
    pub source_parse_errors: u64,
    /// `WouldBlock` answers to the application.
    pub would_block: u64,
    /// Why the run ended.
    pub end: Option<EndReason>,
    /// Virtual time at the end, nanoseconds.
    pub virtual_ns: u64,
    /// Events processed.
    pub events: u64,
    /// Network counters.
    pub net: NetStats,
    /// Per receiver.
    pub per_receiver: Vec<ReceiverReport>,
    /// One-way latency (application send to delivery, virtual time) of every delivery.
    pub latency: LatencySummary,
    /// Latency of the deliveries later than the lossless path allows (upstream +
    /// downstream delay and jitter): messages that were repaired, or waited in order
    /// behind a repair.
    pub repair_latency: LatencySummary,
}

impl Report {
    /// What breaks the accounting promise, one line per fault (empty: every receiver
    /// got every message exactly once, in order, intact, or was told it is lost —
    /// unrecoverable, before its join, or unknown at peer expiry — and the run ended
    /// by itself, not at a cap).
    pub fn accounting_errors(&self) -> Vec<String> {
        let mut errs = Vec::new();
        let mut zero = |what: &str, v: u64| {
            if v != 0 {
                errs.push(format!("{what}: {v}"));
            }
        };
        zero("duplicates", self.duplicates);
        zero("out_of_order", self.out_of_order);
        zero("corrupt", self.corrupt);
        zero("source_parse_errors", self.source_parse_errors);
        if self.sent != self.messages {
            errs.push(format!("sent {} of {} messages", self.sent, self.messages));
        }
        for (i, r) in self.per_receiver.iter().enumerate() {
            if r.parse_errors != 0 {
                errs.push(format!("receiver {i}: parse_errors {}", r.parse_errors));
            }
            if r.accounting_holes != 0 {
                errs.push(format!(
                    "receiver {i}: accounting_holes {}",
                    r.accounting_holes
                ));
            }
            let told = r.delivered + r.unrecoverable + r.join_gap + r.tail_unknown;
            if told != self.messages {
                errs.push(format!(
                    "receiver {i}: {told} of {} messages delivered or reported ({r:?})",
                    self.messages
                ));
            }
        }
        if matches!(self.end, Some(EndReason::EventLimit | EndReason::TimeLimit)) {
            errs.push(format!(
                "ended at a cap: {}",
                self.end.map_or("-", EndReason::as_str)
            ));
        }
        errs
    }

    /// True when every receiver got every message exactly once, in order, intact.
    pub fn full_delivery(&self) -> bool {
        self.delivered == self.messages * self.receivers as u64
            && self.unrecoverable == 0
            && self.duplicates == 0
            && self.out_of_order == 0
            && self.corrupt == 0
    }

    /// The report as one JSON object.
    pub fn to_json(&self) -> String {
        let j = serde_json::json!({
            "seed": self.seed,
            "lines": self.lines,
            "receivers": self.receivers,
            "messages": self.messages,
            "size": self.size,
            "sent": self.sent,
            "delivered": self.delivered,
            "unrecoverable": self.unrecoverable,
            "duplicates": self.duplicates,
            "out_of_order": self.out_of_order,
            "corrupt": self.corrupt,
            "missing": self.missing,
            "join_gap": self.join_gap,
            "unrecoverable_sqns": self.unrecoverable_sqns,
            "tail_unknown": self.tail_unknown,
            "sessions_ended": self.sessions_ended,
            "naks_at_source": self.naks_at_source,
            "rdata_sent": self.rdata_sent,
            "ncf_sent": self.ncf_sent,
            "odata_sent": self.odata_sent,
            "spm_sent": self.spm_sent,
            "naks_outside_window": self.naks_outside_window,
            "naks_sent": self.naks_sent,
            "source_parse_errors": self.source_parse_errors,
            "receiver_parse_errors": self.per_receiver.iter().map(|r| r.parse_errors).sum::<u64>(),
            "would_block": self.would_block,
            "end": self.end.map(EndReason::as_str),
            "virtual_secs": self.virtual_ns as f64 / 1e9,
            "events": self.events,
            "latency": self.latency.to_json(),
            "repair_latency": self.repair_latency.to_json(),
            "net": {
                "source_sent": self.net.source_sent.to_json(),
                "receivers_sent": self.net.receivers_sent.to_json(),
                "upstream_dropped": self.net.upstream_dropped.to_json(),
                "downstream_dropped": self.net.downstream_dropped.to_json(),
                "reverse_dropped": self.net.reverse_dropped.to_json(),
                "type_dropped": self.net.type_dropped.to_json(),
                "duplicated": self.net.duplicated,
                "delivered": self.net.delivered,
                "line_dropped": self.net.line_dropped[..self.lines.min(xpgm_core::MAX_LINES)]
                    .iter()
                    .map(|t| t.to_json())
                    .collect::<Vec<_>>(),
            },
            "per_receiver": self.per_receiver.iter().map(|r| serde_json::json!({
                "delivered": r.delivered,
                "unrecoverable": r.unrecoverable,
                "duplicates": r.duplicates,
                "out_of_order": r.out_of_order,
                "corrupt": r.corrupt,
                "join_gap": r.join_gap,
                "unrecoverable_sqns": r.unrecoverable_sqns,
                "tail_unknown": r.tail_unknown,
                "accounting_holes": r.accounting_holes,
                "session_ended": r.session_ended,
                "naks_sent": r.naks_sent,
                "dup_packets_dropped": r.dup_packets_dropped,
                "parse_errors": r.parse_errors,
                "lost_to_trail": r.lost_to_trail,
                "retries_exhausted": r.retries_exhausted,
                "line_downs": r.line_downs,
                "line_ups": r.line_ups,
                "lines": r.lines[..self.lines.min(xpgm_core::MAX_LINES)].iter().map(|&(received, won, lost)| serde_json::json!({
                    "received": received, "won": won, "lost": lost,
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        });
        j.to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let expected = self.messages * self.receivers as u64;
        writeln!(
            f,
            "xpgm sim: {} receivers, {} messages of {} bytes, seed {}",
            self.receivers, self.messages, self.size, self.seed
        )?;
        writeln!(
            f,
            "ended: {} after {:.3} s virtual, {} events",
            self.end.map_or("-", EndReason::as_str),
            self.virtual_ns as f64 / 1e9,
            self.events
        )?;
        writeln!(f)?;
        let rows: [(&str, u64); 14] = [
            ("delivered", self.delivered),
            ("unrecoverable", self.unrecoverable),
            ("lost or unknown at expiry", self.tail_unknown),
            ("duplicates delivered", self.duplicates),
            ("out-of-order delivered", self.out_of_order),
            ("corrupt delivered", self.corrupt),
            ("missing", self.missing),
            ("  of which before join", self.join_gap),
            ("NAKs received by source", self.naks_at_source),
            ("RDATA sent", self.rdata_sent),
            ("NCF sent", self.ncf_sent),
            ("ODATA sent", self.odata_sent),
            ("SPM sent", self.spm_sent),
            ("NAKs sent by receivers", self.naks_sent),
        ];
        writeln!(f, "  {:<26} {:>14}", "total", "count")?;
        writeln!(f, "  {:-<26} {:->14}", "", "")?;
        for (name, v) in rows {
            writeln!(f, "  {name:<26} {v:>14}")?;
        }
        writeln!(f)?;
        writeln!(f, "latency: {}", self.latency)?;
        writeln!(f, "repair latency: {}", self.repair_latency)?;
        let n = &self.net;
        writeln!(
            f,
            "network: {} deliveries, {} duplicated; dropped upstream {}, downstream {}, reverse {}, by type {}",
            n.delivered,
            n.duplicated,
            n.upstream_dropped.total(),
            n.downstream_dropped.total(),
            n.reverse_dropped.total(),
            n.type_dropped.total()
        )?;
        write!(
            f,
            "result: {} of {} expected deliveries ({})",
            self.delivered,
            expected,
            if self.full_delivery() {
                "complete, in order, no duplicates"
            } else {
                "INCOMPLETE or faulty"
            }
        )
    }
}
