//! The event loop: a binary heap of events ordered by (virtual time, insertion counter),
//! so that two runs with the same seed process exactly the same events in the same order.

use core::cmp::Ordering;
use core::net::Ipv4Addr;
use core::time::Duration;
use std::collections::BinaryHeap;

use xpgm_core::Instant;
use xpgm_core::receiver::Event;
use xpgm_core::rng::Rng;
use xpgm_core::source::SendError;
use xpgm_core::wire::{Nla, PacketType};

use crate::check::{Checker, MessageTable, fill_message};
use crate::config::{ConfigError, SimConfig, TypeLoss};
use crate::link::{Fate, Link};
use crate::node::{SimReceiver, SimSource};
use crate::report::{EndReason, Latency, NetStats, ReceiverReport, Report};

/// Multicast group of the simulated session.
pub const GROUP: Nla = Nla::V4(Ipv4Addr::new(239, 192, 0, 1));
/// Unicast address of the simulated source.
pub const SOURCE_NLA: Nla = Nla::V4(Ipv4Addr::new(10, 0, 0, 1));

/// The simulated source's address on line `line` (line 0: [`SOURCE_NLA`]).
pub fn source_nla(line: u8) -> Nla {
    Nla::V4(Ipv4Addr::new(10, 0, line, 1))
}

/// Unicast address of receiver `i`.
pub fn receiver_nla(i: usize) -> Nla {
    let i = u32::try_from(i).unwrap_or(u32::MAX);
    Nla::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + i))
}

/// How often a blocked application retries `send` even without a source timer.
const APP_RETRY: Duration = Duration::from_millis(1);
/// Messages offered per application step when no rate is set.
const APP_BURST: u32 = 64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Target {
    Source { from: usize },
    Receiver(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    Deliver {
        to: Target,
        line: u8,
        slot: u32,
        len: u32,
    },
    SourceTimer,
    ReceiverTimer(usize),
    App,
}

#[derive(Debug, PartialEq, Eq)]
struct Entry {
    at: Instant,
    seq: u64,
    ev: Ev,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reverse so the earliest (then first inserted) pops.
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Packet buffers, reference-counted by the deliveries still in flight, recycled.
#[derive(Debug, Default)]
struct Pool {
    bufs: Vec<Vec<u8>>,
    refs: Vec<u32>,
    free: Vec<u32>,
    cap: usize,
}

impl Pool {
    fn alloc(&mut self) -> u32 {
        if let Some(s) = self.free.pop() {
            return s;
        }
        self.bufs.push(vec![0; self.cap]);
        self.refs.push(0);
        (self.bufs.len() - 1) as u32
    }
    fn buf(&mut self, slot: u32) -> &mut [u8] {
        &mut self.bufs[slot as usize]
    }
    fn retain(&mut self, slot: u32) {
        self.refs[slot as usize] += 1;
    }
    /// Frees `slot` if nothing refers to it any more.
    fn release(&mut self, slot: u32) {
        let r = &mut self.refs[slot as usize];
        *r = r.saturating_sub(1);
        if *r == 0 {
            self.free.push(slot);
        }
    }
}

#[derive(Debug)]
struct Peer<R> {
    node: R,
    timer: Option<Instant>,
    /// Per line.
    down: Vec<Link>,
    /// Per line.
    back: Vec<Link>,
    nla: Nla,
    check: Checker,
    parse_errors: u64,
    line_downs: u64,
    line_ups: u64,
}

#[derive(Debug, Default)]
struct App {
    sent: u64,
    next_at: Option<Instant>,
    blocked: bool,
    /// When the application closed the session (`None`: still sending).
    closed_at: Option<Instant>,
    would_block: u64,
    failed: bool,
    scratch: Vec<u8>,
}

fn type_loss(t: &TypeLoss, k: PacketType) -> f64 {
    match k {
        PacketType::Spm => t.spm,
        PacketType::Odata => t.odata,
        PacketType::Rdata => t.rdata,
        PacketType::Ncf => t.ncf,
        PacketType::Nak => t.nak,
        PacketType::Spmr => t.spmr,
        _ => 0.0,
    }
}

/// A simulated network around one source and N receivers.
#[derive(Debug)]
pub struct Simulation<S, R> {
    cfg: SimConfig,
    now: Instant,
    queue: BinaryHeap<Entry>,
    seq: u64,
    events: u64,
    source: S,
    source_timer: Option<Instant>,
    source_parse_errors: u64,
    peers: Vec<Peer<R>>,
    /// Per line.
    upstream: Vec<Link>,
    pool: Pool,
    table: MessageTable,
    app: App,
    net: NetStats,
    last_activity: Instant,
    /// When the application sent each message.
    sent_at: Vec<Instant>,
    latency: Latency,
    repair_latency: Latency,
    ended: usize,
    end: Option<EndReason>,
}

impl<S: SimSource, R: SimReceiver> Simulation<S, R> {
    /// A simulation of `cfg` around `source` and `receivers` (one per configured
    /// receiver; extra ones are ignored, missing ones reduce the count).
    pub fn new(
        cfg: SimConfig,
        source: S,
        receivers: impl IntoIterator<Item = R>,
    ) -> Result<Self, ConfigError> {
        cfg.validate()?;
        let mut seeds = Rng::new(cfg.seed ^ 0x5349_4d55_4c41_544f);
        let upstream = Link::new(cfg.upstream.clone(), seeds.next_u64());
        let peers: Vec<Peer<R>> = receivers
            .into_iter()
            .take(cfg.receivers)
            .enumerate()
            .map(|(i, node)| Peer {
                node,
                timer: None,
                down: vec![Link::new(cfg.downstream.clone(), seeds.next_u64())],
                back: vec![Link::new(cfg.reverse.clone(), seeds.next_u64())],
                nla: receiver_nla(i),
                check: Checker::new(cfg.messages, cfg.size),
                parse_errors: 0,
                line_downs: 0,
                line_ups: 0,
            })
            .collect();
        if peers.is_empty() {
            return Err(ConfigError::NoReceivers);
        }
        // Further lines draw from seeds of their own, after line 0's: a one-line run
        // draws exactly what it drew before lines existed.
        let mut upstream = vec![upstream];
        let mut peers = peers;
        for _ in 1..cfg.lines {
            upstream.push(Link::new(cfg.upstream.clone(), seeds.next_u64()));
            for p in &mut peers {
                p.down
                    .push(Link::new(cfg.downstream.clone(), seeds.next_u64()));
                p.back
                    .push(Link::new(cfg.reverse.clone(), seeds.next_u64()));
            }
        }
        let cap = cfg
            .source
            .max_tpdu
            .max(cfg.receiver.max_tpdu)
            .clamp(1500, 65536);
        let messages = usize::try_from(cfg.messages).unwrap_or(0);
        Ok(Simulation {
            now: Instant::ZERO,
            queue: BinaryHeap::new(),
            seq: 0,
            events: 0,
            source,
            source_timer: None,
            source_parse_errors: 0,
            peers,
            upstream,
            pool: Pool {
                cap,
                ..Pool::default()
            },
            table: MessageTable::with_capacity(messages),
            app: App {
                scratch: vec![0; cfg.size],
                ..App::default()
            },
            net: NetStats::default(),
            last_activity: Instant::ZERO,
            sent_at: Vec::with_capacity(messages),
            latency: Latency::default(),
            repair_latency: Latency::default(),
            ended: 0,
            end: None,
            cfg,
        })
    }

    fn push(&mut self, at: Instant, ev: Ev) {
        self.seq += 1;
        self.queue.push(Entry {
            at,
            seq: self.seq,
            ev,
        });
    }

    /// Runs to the end and reports.
    pub fn run(self) -> Report {
        self.run_with_nodes().0
    }

    /// Runs to the end; returns the report and the nodes (for inspection in tests).
    pub fn run_with_nodes(mut self) -> (Report, S, Vec<R>) {
        let start = Instant::ZERO + self.cfg.start_delay;
        self.push(start, Ev::App);
        self.app.next_at = Some(start);
        self.drain_source();
        for r in 0..self.peers.len() {
            self.drain_receiver(r);
        }
        self.end = Some(loop {
            if self.end.is_some() {
                break EndReason::SendError;
            }
            if self.events >= self.cfg.max_events {
                break EndReason::EventLimit;
            }
            if self.app.closed_at.is_some() && self.ended == self.peers.len() {
                break EndReason::AllSessionsEnded;
            }
            let Some(e) = self.queue.pop() else {
                break EndReason::Idle;
            };
            if e.at > Instant::ZERO + self.cfg.max_time {
                break EndReason::TimeLimit;
            }
            if !self.source_gone(e.at)
                && e.at.saturating_duration_since(self.last_activity) > self.cfg.quiet
            {
                break EndReason::Quiet;
            }
            self.now = self.now.max(e.at);
            self.events += 1;
            self.step(e.ev);
        });
        let report = self.report();
        let nodes = self.peers.into_iter().map(|p| p.node).collect();
        (report, self.source, nodes)
    }

    fn step(&mut self, ev: Ev) {
        match ev {
            Ev::Deliver {
                to,
                line,
                slot,
                len,
            } => {
                self.net.delivered += 1;
                let now = self.now;
                let len = (len as usize).min(self.pool.cap);
                match to {
                    Target::Source { .. } if self.source_gone(now) => {
                        self.pool.release(slot);
                    }
                    Target::Source { from } => {
                        let src = self.peers[from].nla;
                        let bytes = &self.pool.bufs[slot as usize][..len];
                        if !self.source.handle_packet_on(now, line, src, bytes) {
                            self.source_parse_errors += 1;
                        }
                        self.pool.release(slot);
                        self.drain_source();
                    }
                    Target::Receiver(r) => {
                        let bytes = &self.pool.bufs[slot as usize][..len];
                        let p = &mut self.peers[r];
                        if !p.node.handle_packet_on(now, line, source_nla(line), bytes) {
                            p.parse_errors += 1;
                        }
                        self.pool.release(slot);
                        self.drain_receiver(r);
                    }
                }
            }
            Ev::SourceTimer => {
                if self.source_timer != Some(self.now) || self.source_gone(self.now) {
                    return; // superseded
                }
                self.source_timer = None;
                if self.source.poll_timeout().is_some_and(|t| t <= self.now) {
                    self.source.handle_timeout(self.now);
                }
                self.drain_source();
                if self.app.blocked {
                    self.schedule_app(self.now);
                }
            }
            Ev::ReceiverTimer(r) => {
                let p = &mut self.peers[r];
                if p.timer != Some(self.now) {
                    return;
                }
                p.timer = None;
                if p.node.poll_timeout().is_some_and(|t| t <= self.now) {
                    p.node.handle_timeout(self.now);
                }
                self.drain_receiver(r);
            }
            Ev::App => {
                if self.app.next_at != Some(self.now) {
                    return;
                }
                self.app.next_at = None;
                self.app_step();
            }
        }
    }

    /// The source application exited: `linger` after it closed its socket, as a real
    /// one does. From then on it neither sends nor receives; receivers that never
    /// learnt the session's end must find out by themselves (peer expiry).
    fn source_gone(&self, at: Instant) -> bool {
        self.app
            .closed_at
            .is_some_and(|c| at >= c + self.cfg.linger)
    }

    /// Whether `line` is in its configured outage now.
    fn line_out(&self, line: u8) -> bool {
        self.cfg.line_outage.is_some_and(|(l, from, to)| {
            l == line && self.now >= Instant::ZERO + from && self.now < Instant::ZERO + to
        })
    }

    fn schedule_app(&mut self, at: Instant) {
        if self.app.next_at.is_none_or(|t| at < t) {
            self.app.next_at = Some(at);
            self.push(at, Ev::App);
        }
    }

    /// Time at which message `i` is offered, for a rate-limited application.
    fn offer_time(&self, i: u64) -> Instant {
        let rate = self.cfg.msg_rate;
        let ns = u128::from(i) * 1_000_000_000 / u128::from(rate.max(1));
        Instant::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX)) + self.cfg.start_delay
    }

    fn app_step(&mut self) {
        if self.app.closed_at.is_some() {
            return;
        }
        let now = self.now;
        let mut budget = if self.cfg.msg_rate == 0 { APP_BURST } else { 1 };
        self.app.blocked = false;
        while self.app.sent < self.cfg.messages && budget > 0 {
            if self.cfg.msg_rate != 0 && self.offer_time(self.app.sent) > now {
                break;
            }
            fill_message(self.app.sent, &mut self.app.scratch);
            match self.source.send(now, &self.app.scratch) {
                Ok(sqn) => {
                    self.table.push(sqn);
                    self.sent_at.push(now);
                    self.app.sent += 1;
                    budget -= 1;
                }
                Err(SendError::WouldBlock) => {
                    self.app.would_block += 1;
                    self.app.blocked = true;
                    break;
                }
                Err(SendError::TooLarge | SendError::Closed) => {
                    self.app.failed = true;
                    self.end = Some(EndReason::SendError);
                    return;
                }
            }
        }
        self.drain_source();
        if self.app.sent >= self.cfg.messages {
            self.source.close(now);
            self.app.closed_at = Some(now);
            self.drain_source();
        } else if self.app.blocked {
            self.schedule_app(now + APP_RETRY);
        } else if self.cfg.msg_rate == 0 {
            self.schedule_app(now);
        } else {
            let next = self.offer_time(self.app.sent).max(now);
            self.schedule_app(next);
        }
    }

    fn note_activity(&mut self, k: PacketType) {
        if !matches!(k, PacketType::Spm | PacketType::Spmr) {
            self.last_activity = self.now;
        }
    }

    fn drain_source(&mut self) {
        let now = self.now;
        if self.source_gone(now) {
            return;
        }
        loop {
            if self.events >= self.cfg.max_events {
                break;
            }
            let slot = self.pool.alloc();
            let Some(tx) = self.source.poll_transmit(now, self.pool.buf(slot)) else {
                self.pool.free.push(slot);
                break;
            };
            self.events += 1;
            let kind = tx.kind;
            let len = tx.len.min(self.pool.cap) as u32;
            self.net.source_sent.bump(kind);
            self.note_activity(kind);
            let tl = type_loss(&self.cfg.type_loss, kind);
            let nlines = self.cfg.lines;
            for line in tx.lines.iter().take_while(|&l| l < nlines) {
                let skew = self.cfg.line_skew * u32::from(line);
                let li = usize::from(line);
                if self.line_out(line) {
                    self.net.upstream_dropped.bump(kind);
                    continue;
                }
                match self.upstream[li].transmit(0.0) {
                    Fate::Lost | Fate::LostByType => self.net.upstream_dropped.bump(kind),
                    Fate::Delivered { delay, dup } => {
                        if dup.is_some() {
                            self.net.duplicated += 1;
                        }
                        for up in [Some(delay), dup].into_iter().flatten() {
                            for r in 0..self.peers.len() {
                                match self.peers[r].down[li].transmit(tl) {
                                    Fate::Lost => {
                                        self.net.downstream_dropped.bump(kind);
                                        if let Some(d) = self.net.line_dropped.get_mut(li) {
                                            d.bump(kind);
                                        }
                                    }
                                    Fate::LostByType => self.net.type_dropped.bump(kind),
                                    Fate::Delivered { delay, dup } => {
                                        for d in [Some(delay), dup].into_iter().flatten() {
                                            self.pool.retain(slot);
                                            let ev = Ev::Deliver {
                                                to: Target::Receiver(r),
                                                line,
                                                slot,
                                                len,
                                            };
                                            self.push(now + up + d + skew, ev);
                                        }
                                        if dup.is_some() {
                                            self.net.duplicated += 1;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if self.pool.refs[slot as usize] == 0 {
                self.pool.free.push(slot);
            }
        }
        let t = self.source.poll_timeout();
        if let Some(t) = t
            && self.source_timer.is_none_or(|a| t < a)
        {
            let at = t.max(now);
            self.source_timer = Some(at);
            self.push(at, Ev::SourceTimer);
        }
    }

    fn drain_receiver(&mut self, r: usize) {
        let now = self.now;
        loop {
            if self.events >= self.cfg.max_events {
                break;
            }
            let slot = self.pool.alloc();
            let p = &mut self.peers[r];
            let Some(tx) = p
                .node
                .poll_transmit(now, &mut self.pool.bufs[slot as usize])
            else {
                self.pool.free.push(slot);
                break;
            };
            self.events += 1;
            let kind = tx.kind;
            let len = tx.len.min(self.pool.cap) as u32;
            self.net.receivers_sent.bump(kind);
            self.note_activity(kind);
            let tl = type_loss(&self.cfg.type_loss, kind);
            // A receiver's packet goes on one line (the first of its set).
            let line = tx.lines.iter().next().unwrap_or(0).min(self.cfg.lines - 1);
            let fate = if self.line_out(line) {
                Fate::Lost
            } else {
                self.peers[r].back[usize::from(line)].transmit(tl)
            };
            match fate {
                Fate::Lost => self.net.reverse_dropped.bump(kind),
                Fate::LostByType => self.net.type_dropped.bump(kind),
                Fate::Delivered { delay, dup } => {
                    if dup.is_some() {
                        self.net.duplicated += 1;
                    }
                    for d in [Some(delay), dup].into_iter().flatten() {
                        self.pool.retain(slot);
                        let ev = Ev::Deliver {
                            to: Target::Source { from: r },
                            line,
                            slot,
                            len,
                        };
                        self.push(now + d, ev);
                    }
                }
            }
            if self.pool.refs[slot as usize] == 0 {
                self.pool.free.push(slot);
            }
        }
        let table = &self.table;
        let p = &mut self.peers[r];
        // (The slowest line's: a message another line brought is not a repair.)
        let lossless = self.cfg.upstream.delay
            + self.cfg.upstream.jitter
            + self.cfg.downstream.delay
            + self.cfg.downstream.jitter
            + self.cfg.line_skew * u32::from(self.cfg.lines - 1);
        let mut delivered_any = false;
        while let Some(ev) = p.node.poll_event() {
            match ev {
                Event::Data { sqn, data, .. } => {
                    p.check.on_data(table, sqn, data);
                    if let Some(&at) = table
                        .message_starting_at(sqn)
                        .and_then(|i| self.sent_at.get(i))
                    {
                        let d = now - at;
                        self.latency.record(d);
                        if d > lossless {
                            self.repair_latency.record(d);
                        }
                    }
                    delivered_any = true;
                }
                Event::Unrecoverable { first, count, .. } => {
                    p.check.on_unrecoverable(table, first, count);
                    delivered_any = true;
                }
                Event::SessionEnd { .. } => {
                    if !p.check.session_ended {
                        if !p.check.peer_gone {
                            self.ended += 1;
                        }
                        p.check.session_ended = true;
                    }
                }
                Event::PeerGone { last, .. } => {
                    if !p.check.peer_gone {
                        if !p.check.session_ended {
                            self.ended += 1;
                        }
                        p.check.on_peer_gone(table, last);
                    }
                    delivered_any = true;
                }
                Event::SessionReset { .. } => p.check.resets += 1,
                Event::LineDown { .. } => p.line_downs += 1,
                Event::LineUp { .. } => p.line_ups += 1,
                Event::NewPeer { .. } => {}
            }
        }
        if delivered_any {
            self.last_activity = now;
        }
        let p = &mut self.peers[r];
        if let Some(t) = p.node.poll_timeout()
            && p.timer.is_none_or(|a| t < a)
        {
            let at = t.max(now);
            p.timer = Some(at);
            self.push(at, Ev::ReceiverTimer(r));
        }
    }

    fn report(&self) -> Report {
        let s = self.source.stats();
        let mut rep = Report {
            seed: self.cfg.seed,
            receivers: self.peers.len(),
            lines: usize::from(self.cfg.lines),
            messages: self.cfg.messages,
            size: self.cfg.size,
            sent: self.app.sent,
            naks_at_source: s.naks_received,
            rdata_sent: s.rdata_sent,
            ncf_sent: s.ncf_sent,
            odata_sent: s.odata_sent,
            spm_sent: s.spm_sent,
            naks_outside_window: s.naks_outside_window,
            source_parse_errors: self.source_parse_errors,
            would_block: self.app.would_block,
            end: self.end,
            virtual_ns: self.now.as_nanos(),
            events: self.events,
            net: self.net,
            latency: self.latency.summary(),
            repair_latency: self.repair_latency.summary(),
            ..Report::default()
        };
        for p in &self.peers {
            let c = &p.check;
            let st = p.node.stats();
            let mut lines = [(0, 0, 0); xpgm_core::MAX_LINES];
            for (l, slot) in lines
                .iter_mut()
                .enumerate()
                .take(usize::from(self.cfg.lines))
            {
                if let Some(ls) = p.node.line_stats(l as u8) {
                    *slot = (ls.received, ls.won, ls.lost);
                }
            }
            let rr = ReceiverReport {
                lines,
                line_downs: p.line_downs,
                line_ups: p.line_ups,
                delivered: c.delivered,
                unrecoverable: c.unrecoverable,
                duplicates: c.duplicates,
                out_of_order: c.out_of_order,
                corrupt: c.corrupt,
                join_gap: c.join_gap,
                unrecoverable_sqns: c.unrecoverable_sqns,
                session_ended: c.session_ended,
                tail_unknown: c.tail_unknown,
                accounting_holes: c.accounting_holes,
                naks_sent: st.naks_sent,
                dup_packets_dropped: st.duplicates,
                parse_errors: p.parse_errors,
                lost_to_trail: st.lost_to_trail,
                retries_exhausted: st.retries_exhausted,
            };
            rep.delivered += rr.delivered;
            rep.unrecoverable += rr.unrecoverable;
            rep.duplicates += rr.duplicates;
            rep.out_of_order += rr.out_of_order;
            rep.corrupt += rr.corrupt;
            rep.join_gap += rr.join_gap;
            rep.tail_unknown += rr.tail_unknown;
            rep.unrecoverable_sqns += rr.unrecoverable_sqns;
            rep.sessions_ended += usize::from(rr.session_ended);
            rep.naks_sent += rr.naks_sent;
            rep.missing += self
                .cfg
                .messages
                .saturating_sub(rr.delivered + rr.unrecoverable + rr.tail_unknown);
            rep.per_receiver.push(rr);
        }
        rep
    }
}
