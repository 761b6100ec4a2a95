//! `xpgm recv`: receive messages whose first 8 bytes are their index and check the
//! sequence: duplicates, out-of-order deliveries and index gaps not explained by
//! reported unrecoverable loss. With `--latency`, messages are expected to be stamped
//! by `xpgm send --stamp` and one-way latency percentiles are reported; with
//! `--progress-ms`, a progress line goes to stderr at that interval.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use xpgm::core::wire::Tsi;
use xpgm::{Delivery, Error, Subscriber, SubscriberConfig};

use super::net::{Framing, NetArgs};
use super::stamp::{self, Clock, Latency};
use xpgm::framing::zmq;

/// Arguments of `xpgm recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    pub(super) worker: super::WorkerArgs,
    /// Exit after this many messages (default: until the session ends or goes idle).
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many milliseconds without a message (also before the first).
    #[arg(long, default_value_t = 5000)]
    idle_ms: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Messages are stamped by `xpgm send --stamp`: measure one-way latency (receive
    /// time minus the stamp in bytes 8..16, on `--clock`) into a histogram and report
    /// p50/p90/p99/p99.9/max (`latency_ns` in --json), and the same for the repaired
    /// messages alone, those whose packet came as RDATA (`repair_latency_ns`). Bytes
    /// 8..16 are then not checked against the fill byte.
    #[arg(long)]
    latency: bool,
    /// Clock of `--latency`; must be the sender's `--clock`. `monotonic` is shared by
    /// the network namespaces of one machine; across machines use `realtime` with
    /// PTP-synchronised clocks.
    #[arg(long, value_enum, default_value_t = Clock::Monotonic)]
    clock: Clock,
    /// Print a progress line to stderr every MS milliseconds: `progress t=SECS
    /// received=N rate=MSGS_PER_S unrecoverable=N naks=N repairs=N`.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    progress_ms: Option<u64>,
    /// Accept only this source address (repeatable): the group is joined
    /// source-specifically and other sources' packets are dropped before any peer
    /// state (counted in `filtered`).
    #[arg(long = "source", value_name = "ADDR")]
    sources: Vec<std::net::IpAddr>,
    /// Accept only this session (repeatable), as printed in `sources[].tsi`
    /// (GSI bytes and source port, e.g. 10.20.30.40.50.60.1234).
    #[arg(long = "tsi", value_name = "TSI")]
    tsis: Vec<Tsi>,
}

/// Sessions tracked by `xpgm recv`'s checks; data of further ones is counted only in
/// `stray_received`.
const MAX_TRACKED_SOURCES: usize = 1024;
/// Sessions listed in the JSON `sources` array (the most active first).
const MAX_LISTED_SOURCES: usize = 64;

/// What one session delivered, checked on its own.
#[derive(Debug, Default)]
struct PerSource {
    received: u64,
    bytes: u64,
    short: u64,
    corrupt: u64,
    unrecoverable: u64,
    check: IndexCheck,
    ended: bool,
    /// `Some(last)` once the peer went away (expired or closed): accounted through
    /// `last` (`None` inside: nothing was).
    gone: Option<Option<u32>>,
}

impl PerSource {
    fn json(&self, tsi: &Tsi) -> serde_json::Value {
        serde_json::json!({
            "tsi": tsi.to_string(),
            "received": self.received,
            "bytes": self.bytes,
            "unrecoverable": self.unrecoverable,
            "duplicates": self.check.duplicates,
            "out_of_order": self.check.out_of_order,
            "index_gaps": self.check.index_gaps,
            "first_index": self.check.first,
            "skipped": self.check.skipped,
            "short": self.short,
            "corrupt": self.corrupt,
            "session_end": self.ended,
            "gone": self.gone.is_some(),
            "accounted_through": self.gone.flatten(),
        })
    }
}

/// How many skipped index ranges are remembered to tell late (out-of-order) messages
/// from duplicates.
const GAP_MEMORY: usize = 64;

/// Checks a stream of message indexes.
#[derive(Debug, Default)]
pub struct IndexCheck {
    /// Next index expected (`None` before the first message: it sets the base).
    expected: Option<u64>,
    /// First index seen.
    pub first: Option<u64>,
    /// Unrecoverable sequence numbers reported and not yet matched to a jump.
    explained: u64,
    /// Recently skipped ranges `[from, to)`.
    gaps: Vec<(u64, u64)>,
    /// Messages whose index was already delivered.
    pub duplicates: u64,
    /// Messages that arrived after a later index (inside a skipped range).
    pub out_of_order: u64,
    /// Jumps forward not explained by reported unrecoverable loss.
    pub index_gaps: u64,
    /// Indexes skipped by all jumps (explained or not).
    pub skipped: u64,
}

impl IndexCheck {
    /// Notes `count` sequence numbers reported unrecoverable.
    pub fn unrecoverable(&mut self, count: u64) {
        self.explained = self.explained.saturating_add(count);
    }

    /// Notes a delivered message with index `idx`.
    pub fn message(&mut self, idx: u64) {
        let Some(e) = self.expected else {
            self.first = Some(idx);
            self.expected = Some(idx.saturating_add(1));
            return;
        };
        if idx == e {
            self.expected = Some(e.saturating_add(1));
        } else if idx > e {
            let gap = idx - e;
            self.skipped += gap;
            if self.explained >= gap {
                self.explained -= gap;
            } else {
                self.index_gaps += 1;
                self.explained = 0;
            }
            if self.gaps.len() == GAP_MEMORY {
                self.gaps.remove(0);
            }
            self.gaps.push((e, idx));
            self.expected = Some(idx.saturating_add(1));
        } else if let Some(pos) = self.gaps.iter().position(|&(a, b)| a <= idx && idx < b) {
            self.out_of_order += 1;
            // A late message fills its slot of the gap; seeing it again is a duplicate.
            let (a, b) = self.gaps.remove(pos);
            if a < idx {
                self.gaps.push((a, idx));
            }
            if idx + 1 < b {
                self.gaps.push((idx + 1, b));
            }
        } else {
            self.duplicates += 1;
        }
    }
}

/// Largest ZeroMQ message body accepted by `--framing zmq`.
const ZMQ_MAX_MESSAGE: usize = 1 << 20;
/// Senders decoded at once by `--framing zmq`.
const ZMQ_MAX_SOURCES: usize = 16;

/// A message's index (first 8 bytes, big-endian) and whether the rest is the fill byte
/// `index & 0xff` (from byte 16 on if `stamped`: bytes 8..16 hold the send time);
/// `None` if it is shorter than 8 bytes.
fn message_index(m: &[u8], stamped: bool) -> Option<(u64, bool)> {
    let head: [u8; 8] = m.get(..8)?.try_into().ok()?;
    let idx = u64::from_be_bytes(head);
    let fill = (idx & 0xff) as u8;
    let from = if stamped { stamp::STAMP_RANGE.end } else { 8 };
    let intact = m
        .get(from..)
        .is_none_or(|rest| rest.iter().all(|&x| x == fill));
    Some((idx, intact))
}

/// Progress lines of `--progress-ms`: the first at once (the receiver is listening),
/// then one per interval; the rate is over the last interval.
#[derive(Debug)]
struct Progress {
    every: Duration,
    start: Instant,
    next: Instant,
    last_at: Instant,
    last_received: u64,
}

impl Progress {
    fn new(every: Duration, now: Instant) -> Progress {
        Progress {
            every,
            start: now,
            next: now,
            last_at: now,
            last_received: 0,
        }
    }

    /// Whether a line is due at `now`.
    fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// The line to print at `now`, if one is due.
    fn tick(
        &mut self,
        now: Instant,
        received: u64,
        unrecoverable: u64,
        naks: u64,
        repairs: u64,
    ) -> Option<String> {
        if now < self.next {
            return None;
        }
        let dt = now.duration_since(self.last_at).as_secs_f64();
        let rate = if dt > 0.0 {
            received.saturating_sub(self.last_received) as f64 / dt
        } else {
            0.0
        };
        self.last_at = now;
        self.last_received = received;
        while self.next <= now {
            self.next += self.every;
        }
        Some(format!(
            "progress t={:.3} received={received} rate={rate:.0} unrecoverable={unrecoverable} \
             naks={naks} repairs={repairs}",
            now.duration_since(self.start).as_secs_f64()
        ))
    }

    /// Time left until the next line is due.
    fn until_next(&self, now: Instant) -> Duration {
        self.next.saturating_duration_since(now)
    }
}

/// How often `xpgm recv` checks whether frames arrive that it cannot use.
const UNUSABLE_CHECK: Duration = Duration::from_secs(1);

/// The warning for a session that receives frames and can use none of them (nothing
/// accepted: no ODATA, RDATA, SPM or NCF), or `None`.
fn unusable_warning(st: &xpgm::SubscriberStats) -> Option<String> {
    let used = st.odata_received + st.rdata_received + st.spm_received + st.ncf_received;
    let f = &st.frames;
    let refused = f.rejected() + st.packets_ignored;
    if used > 0 || refused == 0 {
        return None;
    }
    Some(format!(
        "xpgm: warning: {refused} packets arrived for this session and none could be used: \
         {} failed both the UDP and the PGM checksum, {} had malformed headers, {} were not \
         PGM under this framing (--udp-encap), {} were not addressed to this session, {} \
         were refused by the PGM parser or are for another port (--dport); check the \
         sender's framing and ports",
        f.rejected_checksum,
        f.rejected_header,
        f.rejected_not_pgm,
        f.rejected_address,
        st.packets_ignored
    ))
}

/// Runs `xpgm recv`.
pub fn run(args: &RecvArgs) -> anyhow::Result<ExitCode> {
    let mut session = args.net.session();
    session.sources.clone_from(&args.sources);
    let mut cfg = SubscriberConfig::new(session);
    cfg.receiver.tsis.clone_from(&args.tsis);
    cfg.idle = args.worker.idle();
    cfg.core = args.worker.core();
    cfg.control_grace = args.worker.control_grace();
    let mut sub = Subscriber::new(cfg).context("cannot start the subscriber")?;
    let idle = Duration::from_millis(args.idle_ms);
    let mut zmq_rx = (args.net.framing == Framing::Zmq)
        .then(|| zmq::ZmqReceiver::new(ZMQ_MAX_MESSAGE, ZMQ_MAX_SOURCES));
    // Per session; the top-level checks describe the one that delivered most.
    let mut per: std::collections::HashMap<Tsi, PerSource> = Default::default();
    let mut best: Option<Tsi> = None;
    let mut best_received = 0u64;
    let mut all_received = 0u64;
    let mut stray_untracked = 0u64;
    // The subscriber's failure: reported in the summary (never a silent stop).
    let mut failure: Option<Error> = None;
    // Per source: the last sequence accounted for when it went (PeerGone).
    let mut gone: BTreeMap<String, Option<u32>> = BTreeMap::new();
    // A/B lines: the interfaces, and how often the engine said each went down / up.
    let ifaces: Vec<String> = args.net.iface.clone();
    let mut line_events = [(0u64, 0u64); xpgm::core::line::MAX_LINES];
    let mut first_at: Option<Instant> = None;
    let mut last_at = Instant::now();
    let mut last_activity = Instant::now();
    let mut latency = if args.latency {
        Some(Latency::new()?)
    } else {
        None
    };
    // Latency of the repaired messages alone (their packet came as RDATA).
    let mut repair_latency = if args.latency {
        Some(Latency::new()?)
    } else {
        None
    };
    // The stamped message just recorded, and when: added to `repair_latency` once the
    // delivery is released and the subscriber can say whether it was repaired.
    let mut just_recorded: Option<([u8; 16], u64)> = None;
    let mut progress = args
        .progress_ms
        .map(|ms| Progress::new(Duration::from_millis(ms), Instant::now()));
    // Until the first message: warn (once) if frames arrive and none can be used.
    let mut unusable_next = Some(Instant::now() + UNUSABLE_CHECK);
    loop {
        if args.count.is_some_and(|c| best_received >= c) {
            break;
        }
        let now = Instant::now();
        if first_at.is_some() {
            unusable_next = None;
        }
        if let Some(t) = unusable_next.filter(|t| now >= *t) {
            match unusable_warning(&sub.stats()) {
                Some(w) => {
                    eprintln!("{w}");
                    unusable_next = None;
                }
                None => unusable_next = Some(t + UNUSABLE_CHECK),
            }
        }
        if let Some(p) = progress.as_mut().filter(|p| p.due(now)) {
            let st = sub.stats();
            let unrecoverable = best
                .and_then(|t| per.get(&t))
                .map_or(0, |p| p.unrecoverable);
            if let Some(line) = p.tick(
                now,
                best_received,
                unrecoverable,
                st.naks_sent,
                st.rdata_received,
            ) {
                eprintln!("{line}");
            }
        }
        let left = idle.saturating_sub(now.duration_since(last_activity));
        if left.is_zero() {
            break;
        }
        let mut wait = progress.as_ref().map_or(left, |p| {
            left.min(p.until_next(now).max(Duration::from_millis(1)))
        });
        if let Some(t) = unusable_next {
            wait = wait.min(
                t.saturating_duration_since(now)
                    .max(Duration::from_millis(1)),
            );
        }
        match sub.recv(Some(wait)) {
            Ok(Delivery::Data { tsi, sqn, data }) => {
                let now = Instant::now();
                let now_ns = latency.as_ref().map(|_| args.clock.now_ns());
                last_activity = now;
                last_at = now;
                first_at.get_or_insert(now);
                let stamped = args.latency;
                let mut on_message = |from: Tsi, m: &[u8]| {
                    all_received += 1;
                    if per.len() >= MAX_TRACKED_SOURCES && !per.contains_key(&from) {
                        stray_untracked += 1;
                        return;
                    }
                    let p = per.entry(from).or_default();
                    p.received += 1;
                    p.bytes += m.len() as u64;
                    if p.received > best_received {
                        best_received = p.received;
                        best = Some(from);
                    }
                    if best == Some(from)
                        && let (Some(l), Some(t)) = (latency.as_mut(), now_ns)
                    {
                        l.record(m, t);
                        if let Some(head) = m.get(..16).and_then(|h| <[u8; 16]>::try_from(h).ok()) {
                            just_recorded = Some((head, t));
                        }
                    }
                    match message_index(m, stamped) {
                        Some((idx, intact)) => {
                            p.corrupt += u64::from(!intact);
                            p.check.message(idx);
                        }
                        None => p.short += 1,
                    }
                };
                match zmq_rx.as_mut() {
                    Some(rx) => rx.handle(&Delivery::Data { tsi, sqn, data }, |t, m, _| {
                        on_message(t, m)
                    }),
                    None => on_message(tsi, data),
                }
            }
            Ok(Delivery::Unrecoverable { tsi, first, count }) => {
                just_recorded = None;
                last_activity = Instant::now();
                if per.len() < MAX_TRACKED_SOURCES || per.contains_key(&tsi) {
                    let p = per.entry(tsi).or_default();
                    p.unrecoverable += u64::from(count);
                    p.check.unrecoverable(u64::from(count));
                }
                if let Some(rx) = zmq_rx.as_mut() {
                    rx.handle(&Delivery::Unrecoverable { tsi, first, count }, |_, _, _| {});
                }
            }
            Ok(Delivery::SessionEnd { tsi }) => {
                last_activity = Instant::now();
                if let Some(p) = per.get_mut(&tsi) {
                    p.ended = true;
                }
                // A stranger's FIN does not end the run: only the end of the session
                // the checks describe does (and, with --count, only the count).
                if args.count.is_none() && best == Some(tsi) {
                    break;
                }
            }
            Ok(Delivery::PeerGone { tsi, last }) => {
                if let Some(p) = per.get_mut(&tsi) {
                    p.gone = Some(last.map(|s| s.0));
                }
                // Bounded like `per`: a flood of stranger sessions cannot grow it.
                if gone.len() < MAX_TRACKED_SOURCES {
                    gone.insert(tsi.to_string(), last.map(|l| l.0));
                }
            }
            Ok(Delivery::LineDown { line }) => {
                let name = ifaces.get(usize::from(line)).map_or("?", String::as_str);
                eprintln!(
                    "xpgm recv: line {line} ({name}) is down: nothing heard on it lately; the \
                     feed carries on with the other lines"
                );
                if let Some(e) = line_events.get_mut(usize::from(line)) {
                    e.0 += 1;
                }
            }
            Ok(Delivery::LineUp { line }) => {
                let name = ifaces.get(usize::from(line)).map_or("?", String::as_str);
                eprintln!("xpgm recv: line {line} ({name}) is up again");
                if let Some(e) = line_events.get_mut(usize::from(line)) {
                    e.1 += 1;
                }
            }
            Ok(_) => {}
            // The idle limit is checked at the top of the loop; a shorter wait was
            // for the next progress line.
            Err(Error::Timeout) => {}
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
        if let Some((head, t)) = just_recorded.take()
            && sub.last_repaired()
            && let Some(r) = repair_latency.as_mut()
        {
            r.record(&head, t);
        }
    }
    let primary = best.and_then(|t| per.remove_entry(&t));
    let empty = PerSource::default();
    let main = primary.as_ref().map_or(&empty, |(_, p)| p);
    let (received, bytes, unrecoverable, ended) =
        (main.received, main.bytes, main.unrecoverable, main.ended);
    let (short, corrupt, check) = (main.short, main.corrupt, &main.check);
    let stray_received = all_received - received;
    let secs = first_at.map_or(0.0, |f| last_at.duration_since(f).as_secs_f64());
    let rate = if secs > 0.0 {
        received as f64 / secs
    } else {
        0.0
    };
    let transport = sub.transport().name();
    let report = sub.close_report();
    let stats = report.stats;
    for p in &report.peers {
        gone.entry(p.tsi.to_string()).or_insert(p.last.map(|l| l.0));
    }
    let error = failure
        .or(report.error)
        .map(|e| format!("subscriber failed: {e}"));
    let peers_gone: Vec<serde_json::Value> = gone
        .iter()
        .map(|(tsi, last)| serde_json::json!({"tsi": tsi, "last": last}))
        .collect();
    if args.json {
        let mut all: Vec<(&Tsi, &PerSource)> = primary
            .iter()
            .map(|(t, p)| (t, p))
            .chain(per.iter())
            .collect();
        all.sort_by_key(|(_, p)| std::cmp::Reverse(p.received));
        let listed: Vec<serde_json::Value> = all
            .iter()
            .take(MAX_LISTED_SOURCES)
            .map(|(t, p)| p.json(t))
            .collect();
        let j = serde_json::json!({
            "received": received,
            "bytes": bytes,
            "secs": secs,
            "msgs_per_s": rate,
            "unrecoverable": unrecoverable,
            "duplicates": check.duplicates,
            "out_of_order": check.out_of_order,
            "index_gaps": check.index_gaps,
            "naks_sent": stats.naks_sent,
            "transport": transport,
            "first_index": check.first,
            "skipped": check.skipped,
            "short": short,
            "corrupt": corrupt,
            "framing_desyncs": zmq_rx.as_ref().map(|r| r.desyncs()),
            "session_end": ended,
            "odata_received": stats.odata_received,
            "rdata_received": stats.rdata_received,
            "duplicate_packets": stats.duplicates,
            "ncf_received": stats.ncf_received,
            "repairs": stats.rdata_received,
            "tsi": primary.as_ref().map(|(t, _)| t.to_string()),
            "stray_received": stray_received,
            "filtered": stats.filtered,
            "probation_packets": stats.probation_packets,
            "peers_evicted": stats.peers_evicted,
            "sources": listed,
            "sources_seen": per.len() + usize::from(primary.is_some()),
            "stray_untracked": stray_untracked,
            "vm_hwm_kib": super::send::vm_hwm_kib(),
            "error": error,
            "control_lost": stats.control_lost,
            "control_reconnects": stats.control_reconnects,
            "peers_gone": peers_gone,
            // Why sequences were lost or dropped in the engine (docs/reliability.md):
            // window/buffer pool full, passed by the source's trail, source unreachable.
            "window_full_drops": stats.window_full_drops,
            "buffer_drops": stats.buffer_drops,
            "lost_to_trail": stats.lost_to_trail,
            "retries_exhausted": stats.retries_exhausted,
            "engine_unrecoverable": stats.unrecoverable,
            "spm_received": stats.spm_received,
            "rtt_samples": stats.rtt_samples,
        });
        let mut j = j;
        if let Some(obj) = j.as_object_mut() {
            obj.insert(
                "overrun".into(),
                serde_json::json!({
                    "total": stats.overruns,
                    "xdp_rx_dropped": stats.xdp_rx_dropped,
                    "xdp_rx_ring_full": stats.xdp_rx_ring_full,
                    "xdp_fill_ring_empty": stats.xdp_fill_ring_empty,
                    "socket_drops": stats.socket_drops,
                }),
            );
            obj.insert("frames".into(), super::frames_json(&stats.frames));
            if stats.line_count > 1 {
                let lines: Vec<serde_json::Value> = stats
                    .lines
                    .iter()
                    .zip(line_events)
                    .take(usize::from(stats.line_count))
                    .enumerate()
                    .map(|(i, (l, (downs, ups)))| {
                        serde_json::json!({
                            "iface": ifaces.get(i),
                            "received": l.received,
                            "won": l.won,
                            "lost": l.lost,
                            "up": l.up,
                            "downs": downs,
                            "ups": ups,
                            "failures": l.failures,
                        })
                    })
                    .collect();
                obj.insert("lines".into(), serde_json::Value::Array(lines));
            }
        }
        if let (Some(l), Some(obj)) = (latency.as_ref(), j.as_object_mut()) {
            let p = l.percentiles();
            obj.insert(
                "latency_ns".into(),
                serde_json::json!({
                    "count": l.count(),
                    "p50": p.map(|p| p.p50),
                    "p90": p.map(|p| p.p90),
                    "p99": p.map(|p| p.p99),
                    "p999": p.map(|p| p.p999),
                    "max": p.map(|p| p.max),
                    "unstamped": l.unstamped,
                    "negative": l.negative,
                }),
            );
            if let Some(r) = repair_latency.as_ref() {
                let p = r.percentiles();
                obj.insert(
                    "repair_latency_ns".into(),
                    serde_json::json!({
                        "count": r.count(),
                        "p50": p.map(|p| p.p50),
                        "p90": p.map(|p| p.p90),
                        "p99": p.map(|p| p.p99),
                        "p999": p.map(|p| p.p999),
                        "max": p.map(|p| p.max),
                    }),
                );
            }
        }
        println!("{j}");
    } else {
        println!(
            "received {received} messages ({bytes} bytes) in {secs:.3} s ({rate:.0} msg/s) over \
             {transport}; unrecoverable {unrecoverable}, duplicates {}, out of order {}, index \
             gaps {}, NAKs sent {}{}",
            check.duplicates,
            check.out_of_order,
            check.index_gaps,
            stats.naks_sent,
            if ended { ", session ended" } else { "" }
        );
        if let Some(l) = latency.as_ref() {
            match l.percentiles() {
                Some(p) => println!(
                    "latency (us) over {} messages: p50 {:.1}, p90 {:.1}, p99 {:.1}, p99.9 {:.1}, \
                     max {:.1}",
                    l.count(),
                    p.p50 as f64 / 1e3,
                    p.p90 as f64 / 1e3,
                    p.p99 as f64 / 1e3,
                    p.p999 as f64 / 1e3,
                    p.max as f64 / 1e3
                ),
                None => println!("latency: no stamped message received"),
            }
        }
    }
    if let Some(e) = &error {
        eprintln!("xpgm recv: {e}");
        for (tsi, last) in &gone {
            match last {
                Some(l) => eprintln!(
                    "xpgm recv: source {tsi}: accounted for through sequence {l}; data after it \
                     is lost or unknown"
                ),
                None => eprintln!("xpgm recv: source {tsi}: nothing accounted for"),
            }
        }
        return Ok(ExitCode::FAILURE);
    }
    if let Some(c) = args.count
        && received < c
    {
        eprintln!("xpgm recv: received {received} of {c} messages");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::{IndexCheck, Progress, message_index, unusable_warning};
    use std::time::{Duration, Instant};

    #[test]
    fn warns_only_when_frames_arrive_and_none_can_be_used() {
        let mut st = xpgm::SubscriberStats::default();
        assert_eq!(unusable_warning(&st), None, "nothing arrived");
        st.frames.rejected_checksum = 20;
        st.frames.rejected_not_pgm = 3;
        st.packets_ignored = 1;
        let w = unusable_warning(&st).expect("a warning");
        assert!(w.contains("24 packets arrived"), "{w}");
        assert!(
            w.contains("20 failed both the UDP and the PGM checksum"),
            "{w}"
        );
        assert!(w.contains("3 were not PGM"), "{w}");
        // One usable packet (an SPM) and there is nothing to warn about.
        st.spm_received = 1;
        assert_eq!(unusable_warning(&st), None);
    }

    #[test]
    fn stamped_messages_skip_the_stamp_in_the_fill_check() {
        let mut m = [0x05u8; 32];
        m[..8].copy_from_slice(&5u64.to_be_bytes());
        assert_eq!(message_index(&m, false), Some((5, true)));
        m[8..16].copy_from_slice(&123_456_789u64.to_be_bytes());
        assert_eq!(message_index(&m, false), Some((5, false)));
        assert_eq!(message_index(&m, true), Some((5, true)));
        m[20] = 0;
        assert_eq!(message_index(&m, true), Some((5, false)));
        assert_eq!(message_index(&m[..7], true), None);
        // Exactly index + stamp: nothing left to check.
        assert_eq!(message_index(&m[..16], true), Some((5, true)));
    }

    #[test]
    fn progress_lines_come_once_per_interval_with_the_interval_rate() {
        let t0 = Instant::now();
        let mut p = Progress::new(Duration::from_millis(500), t0);
        assert!(p.due(t0));
        assert_eq!(
            p.tick(t0, 0, 0, 0, 0).unwrap(),
            "progress t=0.000 received=0 rate=0 unrecoverable=0 naks=0 repairs=0"
        );
        assert!(!p.due(t0 + Duration::from_millis(100)));
        assert_eq!(p.tick(t0 + Duration::from_millis(100), 10, 0, 0, 0), None);
        let line = p
            .tick(t0 + Duration::from_millis(500), 1000, 1, 2, 3)
            .unwrap();
        assert_eq!(
            line,
            "progress t=0.500 received=1000 rate=2000 unrecoverable=1 naks=2 repairs=3"
        );
        assert_eq!(p.tick(t0 + Duration::from_millis(600), 1100, 1, 2, 3), None);
        assert_eq!(
            p.until_next(t0 + Duration::from_millis(600)),
            Duration::from_millis(400)
        );
        // A late tick covers the time since the last line, and the schedule skips
        // the missed intervals.
        let line = p
            .tick(t0 + Duration::from_millis(2000), 4000, 1, 2, 3)
            .unwrap();
        assert!(line.contains("received=4000 rate=2000 "), "{line}");
        assert_eq!(
            p.until_next(t0 + Duration::from_millis(2000)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn in_order_stream_from_any_base_is_clean() {
        let mut c = IndexCheck::default();
        for i in 500..600 {
            c.message(i);
        }
        assert_eq!(c.first, Some(500));
        assert_eq!((c.duplicates, c.out_of_order, c.index_gaps), (0, 0, 0));
    }

    #[test]
    fn explained_jump_is_not_a_gap_but_an_unexplained_one_is() {
        let mut c = IndexCheck::default();
        c.message(0);
        c.unrecoverable(3);
        c.message(4); // 1,2,3 lost and reported
        assert_eq!(c.index_gaps, 0);
        c.message(7); // 5,6 silently missing
        assert_eq!(c.index_gaps, 1);
        assert_eq!(c.skipped, 5);
    }

    #[test]
    fn late_message_is_out_of_order_and_repeat_is_duplicate() {
        let mut c = IndexCheck::default();
        c.message(0);
        c.message(3);
        c.message(1);
        assert_eq!(c.out_of_order, 1);
        c.message(1);
        c.message(3);
        assert_eq!(c.duplicates, 2);
        c.message(2);
        assert_eq!(c.out_of_order, 2);
    }
}
