//! The receiving side of PGM (RFC 3208 section 6): one peer state per TSI.
//!
//! Drive it like the source: after every `handle_packet` or `handle_timeout`, drain
//! `poll_transmit`, then `poll_event`, then arm a timer for `poll_timeout`.
//!
//! # Design
//!
//! * Each peer has a receive window: a ring of `rxw_sqns` slots (power of two) covering
//!   `[next_deliver, lead]`. A slot is `Missing` (with its NAK state), `Have` (holding a
//!   buffer from the receiver-wide pool), or `Lost`.
//! * TSDU buffers come from one pool bounded by `rxw_max_bytes`, in size classes
//!   (64, 128, 256, ... bytes up to the largest TSDU) so that small messages take small
//!   buffers; a buffer is allocated the first time its class runs dry and reused ever
//!   after, so the steady-state receive path allocates nothing.
//! * Events are not copied into a queue: `poll_event` walks the window of a "ready" peer
//!   and lends the slot's buffer (or, for a fragmented APDU, the reassembly buffer) to the
//!   returned [`Event`]. The buffer is released on the next call.
//! * Timers are data: one binary heap of `(deadline, peer, what)` entries with lazy
//!   deletion (an entry is acted on only if the slot still holds that deadline).
//!   Sequences detected missing together share one back-off deadline and one heap
//!   entry, and expire together into one NAK with OPT_NAK_LIST. `poll_timeout` is the
//!   heap's minimum: O(1).
//!
//! # Back-pressure
//!
//! If the application stops calling `poll_event`, undelivered data stays in the window.
//! Once a peer's window spans `rxw_sqns` or the buffer pool is exhausted, new data for
//! it is dropped (counted in `window_full_drops` / `buffer_drops`). Those sequences are
//! detected as missing once there is room again and repaired from the source's transmit
//! window like any loss (or reported unrecoverable if the source has moved on). Memory
//! never grows beyond the configured bounds.

mod fec;
mod group;
mod rtt;
mod window;

use std::cmp::Reverse;
use std::collections::{HashMap, VecDeque};

use crate::config::{ConfigError, ReceiverConfig};
use crate::line::LineSet;
use crate::rng::Rng;
use crate::seq::Sqn;
use crate::source::{Destination, Transmit};
use crate::time::Instant;
use crate::wire::{Body, Error, Nak, NakList, Nla, PacketRepr, Spm, Tsi};

use window::{Activity, Deliver, Env, Peer, TimerEntry, TimerKind};

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
    ///
    /// Every sequence number up to and including `last` was delivered or reported
    /// [`Event::Unrecoverable`]; whatever the source sent after `last` is lost or
    /// unknown (a receiver that missed every packet about the tail of a session cannot
    /// know how long it was). `None`: nothing of this session was delivered or
    /// reported, so all of it is lost or unknown.
    PeerGone {
        /// Session.
        tsi: Tsi,
        /// Last sequence number accounted for.
        last: Option<Sqn>,
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
    /// A/B lines: `line` brought nothing for `line_timeout` while another line did.
    /// No missing sequence waits for it any more; the session carries on with the
    /// others.
    LineDown {
        /// The line (0: the first configured).
        line: u8,
    },
    /// A/B lines: `line`, down, brought a packet again and is used again.
    LineUp {
        /// The line.
        line: u8,
    },
}

/// Packets on other lines, since a line's last, before it can be declared down (with
/// `line_timeout` of silence).
pub const LINE_DOWN_PACKETS: u32 = 16;

/// One line's state and counters ([`Receiver::line_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Data packets (ODATA and RDATA) that came on the line.
    pub received: u64,
    /// Of those, the first copies: the data this line delivered before any other.
    pub won: u64,
    /// ODATA sequences missing from the line's stream (gaps in the sequences it brought,
    /// per source, including what a down line missed; a packet reordered on its line
    /// is counted when the gap opens and taken back when it comes).
    pub lost: u64,
    /// Not down (see [`Event::LineDown`]).
    pub up: bool,
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
    /// New peers refused because `max_peers` were tracked.
    pub peers_refused: u64,
    /// Peers expired.
    pub peers_expired: u64,
    /// Data dropped because it lay beyond the peer's window (application not draining).
    pub window_full_drops: u64,
    /// Data dropped because the buffer pool (`rxw_max_bytes`) was exhausted.
    pub buffer_drops: u64,
    /// Control events dropped because `event_queue` was full.
    pub events_dropped: u64,
    /// NAK/SPMR packets dropped because `tx_queue` was full.
    pub tx_dropped: u64,
    /// Tail fragments of an APDU that began before a late join, dropped silently.
    pub pre_join_fragments: u64,
    /// Missing sequences given up because the source's trail passed them.
    pub lost_to_trail: u64,
    /// Missing sequences given up because `nak_ncf_retries + 1` NAKs drew nothing at
    /// all from the source.
    pub retries_exhausted: u64,
    /// Packets dropped by the `sources` / `tsis` filter, before any peer state.
    pub filtered: u64,
    /// Packets from TSIs waiting in probation (not admitted: their data is not
    /// delivered; an admitted peer NAKs what it sent during probation).
    pub probation_packets: u64,
    /// TSIs admitted from probation.
    pub probation_admitted: u64,
    /// TSIs dropped from probation (silent for `probation_expiry`, or pushed out by a
    /// more active newcomer when `max_probation` were waiting).
    pub probation_dropped: u64,
    /// Peers evicted to admit a more active TSI (each reported with `PeerGone`).
    pub peers_evicted: u64,
    /// Round-trip samples taken (NAK -> NCF/RDATA, SPMR -> SPM).
    pub rtt_samples: u64,
    /// Parity (FEC) packets received.
    pub parity_received: u64,
    /// Data packets rebuilt from parity (also counted in neither ODATA nor RDATA).
    pub parity_recovered: u64,
    /// Parity NAKs sent (each group asked for counts once; also in `naks_sent`).
    pub parity_naks_sent: u64,
    /// Parity packets not used: no FEC offered (or `fec` off), their group already
    /// complete or too old to collect, or a duplicate.
    pub parity_unused: u64,
    /// Groups whose parity and data did not fit together (lengths out of range): the
    /// parity was dropped, the losses are NAKed selectively.
    pub parity_errors: u64,
}

/// A TSI heard from while the peer table was full: no window, no buffers, no NAKs; just
/// enough to judge how active it is and to start its window where it started sending.
#[derive(Clone, Copy, Debug)]
struct Candidate {
    tsi: Tsi,
    activity: Activity,
    last_heard: Instant,
    /// First ODATA sequence heard (and the trail it carried).
    first_data: Option<(Sqn, Sqn)>,
    /// Latest SPM heard.
    spm: Option<Spm>,
}

/// Control events queued for the application.
#[derive(Clone, Copy, Debug)]
enum Ctrl {
    NewPeer(Tsi),
    PeerGone(Tsi, Option<Sqn>),
    Reset(Tsi),
    LineDown(u8),
    LineUp(u8),
}

/// A packet waiting for `poll_transmit`.
#[derive(Clone, Copy, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "fixed-size NAK lists keep the queue allocation-free"
)]
pub(crate) enum PendingTx {
    Nak {
        peer: u32,
        epoch: u32,
        sqn: Sqn,
        list: NakList,
        /// A parity NAK (each sequence `group | count - 1`).
        parity: bool,
    },
    Spmr {
        peer: u32,
        epoch: u32,
    },
}

/// A PGM receiver.
#[derive(Debug)]
pub struct Receiver {
    env: Env,
    local: Nla,
    peers: Vec<Option<Peer>>,
    epochs: Vec<u32>,
    free_peers: Vec<u32>,
    by_tsi: HashMap<Tsi, u32>,
    /// TSIs waiting for admission (at most `max_probation`).
    probation: Vec<Candidate>,
    control: Bounded<Ctrl>,
    ready: VecDeque<u32>,
    tx: Bounded<PendingTx>,
    /// Peers with a NAK being assembled during `handle_timeout`.
    nak_peers: Vec<u32>,
    /// Pool buffer lent to the last `Event::Data`.
    lent: Option<u32>,
    /// Reassembly buffer for fragmented APDUs (grows to the largest APDU once).
    apdu: Vec<u8>,
    /// Heap length above which stale timer entries are purged.
    compact_at: usize,
    /// When the first packet came (on any line): a line never heard from is down
    /// `line_timeout` after it.
    first_heard: Option<Instant>,
}

impl Receiver {
    /// A receiver; `seed` drives NAK back-off randomisation; `local` is this host's NLA.
    /// Fails if `config` is refused by [`ReceiverConfig::validate`].
    pub fn new(config: ReceiverConfig, local: Nla, seed: u64) -> Result<Self, ConfigError> {
        config.validate()?;
        let max_peers = config.max_peers;
        Ok(Receiver {
            local,
            peers: Vec::new(),
            epochs: Vec::new(),
            free_peers: Vec::new(),
            by_tsi: HashMap::with_capacity(max_peers.min(4096)),
            probation: Vec::with_capacity(config.max_probation.min(4096)),
            control: Bounded::new(config.event_queue),
            ready: VecDeque::with_capacity(max_peers.min(4096)),
            tx: Bounded::new(config.tx_queue),
            nak_peers: Vec::with_capacity(max_peers.min(4096)),
            lent: None,
            apdu: Vec::new(),
            compact_at: 4096,
            first_heard: None,
            env: Env::new(config, Rng::new(seed)),
        })
    }

    /// This host's NLA, as given to `new`.
    pub fn local(&self) -> Nla {
        self.local
    }

    /// The configuration in use.
    pub fn config(&self) -> &ReceiverConfig {
        &self.env.cfg
    }

    /// Number of peers tracked.
    pub fn peer_count(&self) -> usize {
        self.by_tsi.len()
    }

    /// TSIs waiting in probation (see [`ReceiverConfig::max_probation`]).
    pub fn probation_count(&self) -> usize {
        self.probation.len()
    }

    /// Receive-window slots allocated over all peers (24 bytes each): a peer's ring
    /// grows with the span of its window, up to 16384 slots until it has delivered
    /// `probation_packets` messages, then up to `rxw_sqns`.
    pub fn window_slots(&self) -> usize {
        self.peers.iter().flatten().map(|p| p.ring_len()).sum()
    }

    /// Buffers currently allocated in the pool (free or holding data).
    pub fn buffers_allocated(&self) -> usize {
        self.env.pool.allocated()
    }

    /// Bytes of the `rxw_max_bytes` budget the pool's buffers take: each buffer's
    /// size class (64, 128, ... bytes, up to the largest TSDU) plus 32 bytes of
    /// bookkeeping.
    pub fn buffer_bytes(&self) -> usize {
        self.env.pool.bytes()
    }

    fn release_lent(&mut self) {
        if let Some(b) = self.lent.take() {
            self.env.pool.free(b);
        }
    }

    /// Handles one received packet (bytes from the PGM header on) from `src`.
    pub fn handle_packet(&mut self, now: Instant, src: Nla, bytes: &[u8]) -> Result<(), Error> {
        self.handle_packet_on(now, 0, src, bytes)
    }

    /// Like [`Receiver::handle_packet`], for a packet that came on `line` (below
    /// [`ReceiverConfig::lines`]; others are ignored).
    pub fn handle_packet_on(
        &mut self,
        now: Instant,
        line: u8,
        src: Nla,
        bytes: &[u8],
    ) -> Result<(), Error> {
        let pkt = match PacketRepr::parse(bytes) {
            Ok(p) => p,
            Err(e) => {
                self.env.stats.packets_ignored += 1;
                return Err(e);
            }
        };
        self.handle_repr_on(now, line, src, &pkt);
        Ok(())
    }

    /// Handles one already-parsed packet.
    pub fn handle_repr(&mut self, now: Instant, src: Nla, pkt: &PacketRepr<'_>) {
        self.handle_repr_on(now, 0, src, pkt);
    }

    /// Handles one already-parsed packet that came on `line`.
    pub fn handle_repr_on(&mut self, now: Instant, line: u8, src: Nla, pkt: &PacketRepr<'_>) {
        self.release_lent();
        if line >= self.env.cfg.lines || !pkt.is_downstream() || pkt.dport != self.env.cfg.dport {
            self.env.stats.packets_ignored += 1;
            return;
        }
        let tsi = pkt.tsi();
        let cfg = &self.env.cfg;
        if (!cfg.sources.is_empty() && !cfg.sources.contains(&src))
            || (!cfg.tsis.is_empty() && !cfg.tsis.contains(&tsi))
        {
            self.env.stats.filtered += 1;
            return;
        }
        self.note_line(now, line);
        let creates = matches!(pkt.body, Body::Spm(_) | Body::Odata(_) | Body::Rdata(_));
        let idx = match self.by_tsi.get(&tsi) {
            Some(&i) => i,
            None if creates => match self.admit(now, tsi, src, pkt) {
                Some(i) => i,
                None => return,
            },
            None => {
                self.env.stats.packets_ignored += 1;
                return;
            }
        };
        let Some(Some(peer)) = self.peers.get_mut(idx as usize) else {
            self.env.stats.packets_ignored += 1;
            return;
        };
        peer.last_heard = now;
        peer.activity.hit(now);
        peer.src = src;
        if let Some(s) = peer.line_src.get_mut(usize::from(line)) {
            *s = Some(src);
        }
        let env = &mut self.env;
        match pkt.body {
            Body::Odata(d) => peer.on_data(env, now, &d, &pkt.options, false),
            Body::Rdata(d) => peer.on_data(env, now, &d, &pkt.options, true),
            Body::Spm(spm) => peer.on_spm(env, now, &spm, &pkt.options),
            Body::Ncf(ncf) => peer.on_ncf(env, now, &ncf, &pkt.options),
            _ => env.stats.packets_ignored += 1,
        }
        if pkt.options.rst.is_some() && !peer.reset_reported {
            peer.reset_reported = true;
            push_ctrl(&mut self.control, &mut self.env.stats, Ctrl::Reset(tsi));
        }
        if peer.wants_delivery() && !peer.in_ready {
            peer.in_ready = true;
            self.ready.push_back(idx);
        }
        if self.env.timers.len() > self.compact_at {
            self.compact_timers();
        }
        self.prune_stale_head();
    }

    /// A packet came on `line`: it is up. Another line is down once it has been silent
    /// for `line_timeout` and [`LINE_DOWN_PACKETS`] packets came on other lines since
    /// its last one (time alone would take a quiet source for a dead line: the first
    /// packet after a pause, on whichever line wins it, would find the others "silent").
    fn note_line(&mut self, now: Instant, line: u8) {
        let first = *self.first_heard.get_or_insert(now);
        self.env.line = line;
        let timeout = self.env.cfg.line_timeout;
        let lines = usize::from(self.env.cfg.lines);
        for (l, st) in self.env.lines.iter_mut().enumerate().take(lines) {
            if l == usize::from(line) {
                st.heard = Some(now);
                st.missed = 0;
                if !st.up {
                    st.up = true;
                    push_ctrl(&mut self.control, &mut self.env.stats, Ctrl::LineUp(line));
                }
                continue;
            }
            st.missed = st.missed.saturating_add(1);
            if st.up && st.missed >= LINE_DOWN_PACKETS && now - st.heard.unwrap_or(first) > timeout
            {
                st.up = false;
                let l = l as u8;
                push_ctrl(&mut self.control, &mut self.env.stats, Ctrl::LineDown(l));
            }
        }
    }

    /// State and counters of `line`; `None` if the receiver has no such line.
    pub fn line_stats(&self, line: u8) -> Option<LineStats> {
        if line >= self.env.cfg.lines {
            return None;
        }
        let st = self.env.lines.get(usize::from(line))?;
        Some(LineStats {
            received: st.received,
            won: st.won,
            lost: st.lost,
            up: st.up,
        })
    }

    /// Drops stale entries from the top of the timer heap so that `poll_timeout`
    /// reports a deadline at which something is really due (fewer idle wake-ups).
    fn prune_stale_head(&mut self) {
        while let Some(Reverse(top)) = self.env.timers.peek() {
            let live = matches!(
                self.peers.get(top.peer as usize),
                Some(Some(p)) if p.epoch == top.epoch && p.timer_live(top)
            );
            if live {
                break;
            }
            self.env.timers.pop();
        }
    }

    /// A packet from an unknown TSI: a new peer while the table has room; otherwise
    /// the TSI waits in probation and is admitted, by evicting the least active peer,
    /// once it has sent `probation_packets` recently and is more active than that peer.
    /// A stranger's burst cannot lock a source out: silent peers score 0 within two
    /// seconds, and a TSI in probation costs no window, buffer or NAK.
    fn admit(&mut self, now: Instant, tsi: Tsi, src: Nla, pkt: &PacketRepr<'_>) -> Option<u32> {
        let full = self.by_tsi.len() >= self.env.cfg.max_peers;
        if !full && self.probation.is_empty() {
            return self.new_peer(now, tsi, src);
        }
        let expiry = self.env.cfg.probation_expiry;
        let before = self.probation.len();
        self.probation.retain(|c| now - c.last_heard < expiry);
        self.env.stats.probation_dropped += (before - self.probation.len()) as u64;
        let i = match self.probation.iter().position(|c| c.tsi == tsi) {
            Some(i) => i,
            None => {
                if self.probation.len() >= self.env.cfg.max_probation {
                    // Push out the least active, longest silent candidate.
                    let worst = self
                        .probation
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, c)| (c.activity.at(now), c.last_heard))
                        .map(|(i, _)| i)?;
                    self.probation.swap_remove(worst);
                    self.env.stats.probation_dropped += 1;
                }
                self.probation.push(Candidate {
                    tsi,
                    activity: Activity::new(now),
                    last_heard: now,
                    first_data: None,
                    spm: None,
                });
                self.probation.len() - 1
            }
        };
        self.env.stats.probation_packets += 1;
        let c = self.probation.get_mut(i)?;
        c.activity.hit(now);
        c.last_heard = now;
        match pkt.body {
            Body::Odata(d) if c.first_data.is_none() => c.first_data = Some((d.sqn, d.trail)),
            Body::Spm(spm) => c.spm = Some(spm),
            _ => {}
        }
        let score = c.activity.at(now);
        if full {
            if score < self.env.cfg.probation_packets {
                return None;
            }
            // The least active peer, if this candidate is more active.
            let victim = self
                .peers
                .iter()
                .flatten()
                .map(|p| (p.activity.at(now), p.last_heard, p.idx))
                .min()?;
            if victim.0 >= score {
                self.env.stats.peers_refused += 1;
                return None;
            }
            self.remove_peer(victim.2, true);
        }
        let c = self.probation.swap_remove(i);
        self.env.stats.probation_admitted += 1;
        let idx = self.new_peer(now, tsi, src)?;
        if let Some(Some(peer)) = self.peers.get_mut(idx as usize) {
            peer.activity = c.activity;
            if let Some((first, trail)) = c.first_data {
                let start = if trail.gt(first) { trail } else { first };
                peer.join_at(&mut self.env, now, start);
            }
            if let Some(spm) = c.spm {
                peer.on_spm(&mut self.env, now, &spm, &Default::default());
            }
        }
        Some(idx)
    }

    fn new_peer(&mut self, now: Instant, tsi: Tsi, src: Nla) -> Option<u32> {
        if self.by_tsi.len() >= self.env.cfg.max_peers {
            self.env.stats.peers_refused += 1;
            return None;
        }
        let idx = match self.free_peers.pop() {
            Some(i) => i,
            None => {
                let i = u32::try_from(self.peers.len()).ok()?;
                self.peers.push(None);
                self.epochs.push(0);
                i
            }
        };
        let epoch = self.epochs.get(idx as usize).copied().unwrap_or(0);
        let mut peer = Peer::new(&mut self.env, idx, epoch, tsi, src, now);
        peer.schedule_probe(&mut self.env, now);
        if let Some(slot) = self.peers.get_mut(idx as usize) {
            *slot = Some(peer);
        }
        self.by_tsi.insert(tsi, idx);
        push_ctrl(&mut self.control, &mut self.env.stats, Ctrl::NewPeer(tsi));
        Some(idx)
    }

    /// Frees peer `idx` (expired, closed, or `evicted` for a more active TSI) and
    /// reports how far its session is accounted for.
    fn remove_peer(&mut self, idx: u32, evicted: bool) {
        let Some(slot) = self.peers.get_mut(idx as usize) else {
            return;
        };
        let Some(mut peer) = slot.take() else {
            return;
        };
        peer.release_all(&mut self.env);
        self.by_tsi.remove(&peer.tsi);
        if let Some(g) = self.epochs.get_mut(idx as usize) {
            *g = g.wrapping_add(1);
        }
        self.free_peers.push(idx);
        if evicted {
            self.env.stats.peers_evicted += 1;
        } else {
            self.env.stats.peers_expired += 1;
        }
        let last = peer.accounted_through();
        push_ctrl(
            &mut self.control,
            &mut self.env.stats,
            Ctrl::PeerGone(peer.tsi, last),
        );
    }

    /// Closes every session: each live peer is freed as if it had expired, and the
    /// application gets `PeerGone { last }` for it (counted in `peers_expired`), so a
    /// receiver shut down mid-stream still says which sequence each source's data is
    /// accounted up to. Call it before dropping the receiver, then drain `poll_event`.
    /// Control events beyond `event_queue` are dropped and counted in `events_dropped`.
    pub fn close(&mut self) {
        self.release_lent();
        for idx in 0..self.peers.len() {
            if matches!(self.peers.get(idx), Some(Some(_))) {
                self.remove_peer(idx as u32, false);
            }
        }
        self.ready.clear();
    }

    fn compact_timers(&mut self) {
        let peers = &self.peers;
        self.env.timers.retain(|Reverse(e)| {
            matches!(peers.get(e.peer as usize), Some(Some(p)) if p.epoch == e.epoch && p.timer_live(e))
        });
        self.compact_at = (self.env.timers.len() * 2).max(4096);
    }

    /// Processes expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.release_lent();
        while let Some(Reverse(top)) = self.env.timers.peek() {
            if top.at > now {
                break;
            }
            let e = *top;
            self.env.timers.pop();
            let Some(Some(peer)) = self.peers.get_mut(e.peer as usize) else {
                continue;
            };
            if peer.epoch != e.epoch {
                continue;
            }
            match e.kind {
                TimerKind::Expiry => {
                    let due = peer.last_heard + self.env.cfg.peer_expiry;
                    if due <= now {
                        self.remove_peer(e.peer, false);
                    } else {
                        self.env.timers.push(Reverse(TimerEntry {
                            at: due,
                            kind: TimerKind::Expiry,
                            ..e
                        }));
                    }
                }
                TimerKind::Spmr => {
                    if peer.spmr_at == Some(e.at) {
                        peer.spmr_at = None;
                        if peer.path.is_none() {
                            peer.spmr_sent = Some(now);
                            push_tx(
                                &mut self.tx,
                                &mut self.env.stats,
                                PendingTx::Spmr {
                                    peer: e.peer,
                                    epoch: e.epoch,
                                },
                            );
                        }
                    }
                }
                TimerKind::RttProbe => {
                    if peer.probe_at == Some(e.at) {
                        peer.probe_at = None;
                        if peer.rtt.srtt().is_none() {
                            peer.probes += 1;
                            peer.spmr_sent = Some(now);
                            push_tx(
                                &mut self.tx,
                                &mut self.env.stats,
                                PendingTx::Spmr {
                                    peer: e.peer,
                                    epoch: e.epoch,
                                },
                            );
                            // Again later if this one draws no timely answer.
                            let again = now + self.env.cfg.spmr_expiry;
                            peer.schedule_probe(&mut self.env, again);
                        }
                    }
                }
                TimerKind::Nak { first, count } => {
                    let had = peer.nak_build.is_some() || peer.nak_parity.is_some();
                    peer.on_nak_timer(&mut self.env, &mut self.tx, now, e.at, Sqn(first), count);
                    if !had && (peer.nak_build.is_some() || peer.nak_parity.is_some()) {
                        self.nak_peers.push(e.peer);
                    }
                    if peer.wants_delivery() && !peer.in_ready {
                        peer.in_ready = true;
                        self.ready.push_back(e.peer);
                    }
                }
            }
        }
        // Flush the NAKs assembled from back-offs that expired together.
        for i in 0..self.nak_peers.len() {
            let idx = self.nak_peers[i];
            if let Some(Some(peer)) = self.peers.get_mut(idx as usize) {
                let epoch = peer.epoch;
                for (built, parity) in [
                    (peer.nak_build.take(), false),
                    (peer.nak_parity.take(), true),
                ] {
                    if let Some((sqn, list)) = built {
                        push_tx(
                            &mut self.tx,
                            &mut self.env.stats,
                            PendingTx::Nak {
                                peer: idx,
                                epoch,
                                sqn,
                                list,
                                parity,
                            },
                        );
                    }
                }
            }
        }
        self.nak_peers.clear();
        self.prune_stale_head();
    }

    fn tx_repr(&mut self, p: PendingTx) -> Option<(PacketRepr<'static>, Destination, LineSet)> {
        let (idx, epoch) = match p {
            PendingTx::Nak { peer, epoch, .. } | PendingTx::Spmr { peer, epoch } => (peer, epoch),
        };
        let Some(Some(peer)) = self.peers.get(idx as usize) else {
            return None;
        };
        if peer.epoch != epoch {
            return None;
        }
        let to = peer.path.unwrap_or(peer.src);
        // A/B lines: one line, to the source's address as heard on it (the NAK still
        // names the path NLA as the source).
        let (dest, lines) = match peer.nak_line(&self.env) {
            Some((l, src)) if self.env.cfg.lines > 1 => (src, LineSet::one(l)),
            _ => (to, LineSet::one(0)),
        };
        //= https://www.rfc-editor.org/rfc/rfc3208#section-3.1
        //# receivers simply echo the TSI heard from the source in any corresponding
        //# packets they originate.
        let mut repr = PacketRepr {
            sport: self.env.cfg.dport,
            dport: peer.tsi.sport,
            gsi: peer.tsi.gsi,
            body: Body::Spmr,
            options: Default::default(),
        };
        match p {
            PendingTx::Nak {
                sqn, list, parity, ..
            } => {
                repr.body = Body::Nak(Nak {
                    sqn,
                    source: to,
                    group: self.env.cfg.group,
                });
                repr.options.nak_list = list;
                //= https://www.rfc-editor.org/rfc/rfc3208#section-11
                // (paraphrase) a parity NAK has the parity bit set and asks for a count of parity packets.
                repr.options.parity = parity;
                if parity {
                    self.env.stats.parity_naks_sent += 1 + list.len() as u64;
                }
                self.env.stats.naks_sent += 1;
                self.env.stats.sqns_naked += 1 + list.len() as u64;
            }
            PendingTx::Spmr { .. } => self.env.stats.spmr_sent += 1,
        }
        Some((repr, Destination::Unicast(dest), lines))
    }

    /// Like [`Receiver::poll_transmit`], but returns the packet as a representation and
    /// its destination instead of encoding it.
    /// (The line is in [`Transmit::lines`] of [`Receiver::poll_transmit`].)
    pub fn poll_repr(&mut self, now: Instant) -> Option<(PacketRepr<'static>, Destination)> {
        self.next_repr(now).map(|(r, d, _)| (r, d))
    }

    fn next_repr(&mut self, now: Instant) -> Option<(PacketRepr<'static>, Destination, LineSet)> {
        let _ = now;
        while let Some(p) = self.tx.pop() {
            if let Some(r) = self.tx_repr(p) {
                return Some(r);
            }
        }
        None
    }

    /// Writes the next packet to send (NAK, SPMR) into `buf`.
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            let (repr, dest, lines) = self.next_repr(now)?;
            if let Ok(len) = repr.emit(buf) {
                return Some(Transmit {
                    len,
                    dest,
                    kind: repr.packet_type(),
                    lines,
                });
            }
            self.env.stats.tx_dropped += 1;
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        self.release_lent();
        if let Some(c) = self.control.pop() {
            return Some(match c {
                Ctrl::NewPeer(tsi) => Event::NewPeer { tsi },
                Ctrl::PeerGone(tsi, last) => Event::PeerGone { tsi, last },
                Ctrl::Reset(tsi) => Event::SessionReset { tsi },
                Ctrl::LineDown(line) => Event::LineDown { line },
                Ctrl::LineUp(line) => Event::LineUp { line },
            });
        }
        let mut found = None;
        while let Some(&idx) = self.ready.front() {
            let d = match self.peers.get_mut(idx as usize) {
                Some(Some(peer)) => {
                    let d = peer.next_delivery(&mut self.env, &mut self.apdu);
                    match d {
                        None => peer.in_ready = false,
                        Some(Deliver::Buf { .. } | Deliver::Apdu { .. }) => {
                            peer.delivered_one(&self.env.cfg);
                        }
                        Some(_) => {}
                    }
                    d
                }
                _ => None,
            };
            match d {
                Some(d) => {
                    found = Some(d);
                    break;
                }
                None => {
                    self.ready.pop_front();
                }
            }
        }
        Some(match found? {
            Deliver::Buf { tsi, sqn, buf } => {
                self.lent = Some(buf);
                Event::Data {
                    tsi,
                    sqn,
                    data: self.env.pool.get(buf),
                }
            }
            Deliver::Apdu { tsi, sqn } => Event::Data {
                tsi,
                sqn,
                data: &self.apdu,
            },
            Deliver::Unrecoverable { tsi, first, count } => {
                Event::Unrecoverable { tsi, first, count }
            }
            Deliver::End { tsi } => Event::SessionEnd { tsi },
        })
    }

    /// When `handle_timeout` next needs calling.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.env.timers.peek().map(|Reverse(e)| e.at)
    }

    /// Smoothed round trip to the source of session `tsi`, once measured.
    pub fn srtt(&self, tsi: Tsi) -> Option<core::time::Duration> {
        let idx = *self.by_tsi.get(&tsi)?;
        self.peers.get(idx as usize)?.as_ref()?.rtt.srtt()
    }

    /// Counters.
    pub fn stats(&self) -> &ReceiverStats {
        &self.env.stats
    }
}

/// A FIFO with a fixed bound, preallocated.
#[derive(Debug)]
pub(crate) struct Bounded<T> {
    q: VecDeque<T>,
    bound: usize,
}

impl<T> Bounded<T> {
    fn new(bound: usize) -> Self {
        Bounded {
            q: VecDeque::with_capacity(bound),
            bound,
        }
    }

    /// Appends; false (and nothing stored) when full.
    pub(crate) fn push(&mut self, v: T) -> bool {
        if self.q.len() < self.bound {
            self.q.push_back(v);
            true
        } else {
            false
        }
    }

    fn pop(&mut self) -> Option<T> {
        self.q.pop_front()
    }
}

fn push_ctrl(q: &mut Bounded<Ctrl>, stats: &mut ReceiverStats, c: Ctrl) {
    if !q.push(c) {
        stats.events_dropped += 1;
    }
}

pub(crate) fn push_tx(q: &mut Bounded<PendingTx>, stats: &mut ReceiverStats, p: PendingTx) {
    if !q.push(p) {
        stats.tx_dropped += 1;
    }
}

#[cfg(test)]
mod tests;
