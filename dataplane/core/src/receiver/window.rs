//! Per-peer receive window, NAK state machine, reassembly and in-order delivery.

use core::time::Duration;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::fec::{PeerFec, bytes_to_frag, frag_to_bytes};
use super::group::{FULL_SPAN_GROUP, GroupEstimate};
use super::rtt::RttEstimator;
use super::{Bounded, PendingTx, ReceiverStats, push_tx};
use crate::config::{DATA_OVERHEAD, ReceiverConfig};
use crate::line::MAX_LINES;
use crate::rng::Rng;
use crate::seq::Sqn;
use crate::time::Instant;
use crate::wire::{Data, Fragment, Nak, NakList, Nla, Options, Spm, Tsi};

/// Initial ring size of a new peer (grows by doubling up to `rxw_sqns`).
const INITIAL_RING: u32 = 256;

/// State shared by all peers (split from the peer table so both can be borrowed).
#[derive(Debug)]
pub(crate) struct Env {
    pub(crate) cfg: ReceiverConfig,
    pub(crate) pool: Pool,
    pub(crate) timers: BinaryHeap<Reverse<TimerEntry>>,
    pub(crate) rng: Rng,
    pub(crate) stats: ReceiverStats,
    /// Window slots allocated over all peers beyond each one's initial ring.
    pub(crate) ring_slots: usize,
    /// Bound on `ring_slots` (see [`ring_budget`]).
    pub(crate) max_ring_slots: usize,
    /// State and counters of each line (`cfg.lines` of them used).
    pub(crate) lines: [LineState; MAX_LINES],
    /// The line the packet being handled came on.
    pub(crate) line: u8,
}

/// One line (network) of the receiver, over all peers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LineState {
    /// Last packet that came on it.
    pub(crate) heard: Option<Instant>,
    /// Up until silent for `line_timeout` while other lines brought packets.
    pub(crate) up: bool,
    /// Packets that came on other lines since this line's last one.
    pub(crate) missed: u32,
    /// Data packets (ODATA, RDATA) that came on it.
    pub(crate) received: u64,
    /// Of those, the first copies (the data the line won).
    pub(crate) won: u64,
    /// ODATA sequences its stream skipped (per peer, summed).
    pub(crate) lost: u64,
}

impl Default for LineState {
    fn default() -> Self {
        LineState {
            heard: None,
            up: true,
            missed: 0,
            received: 0,
            won: 0,
            lost: 0,
        }
    }
}

/// Receive-window slots all peers together may hold beyond their initial rings (256
/// slots each): two full windows (`rxw_sqns`) plus an unproven window for every peer.
/// With the defaults 5.2 M slots, 126 MiB, however many strangers send far-apart
/// sequence numbers (each peer alone could reach `rxw_sqns`, 48 MiB, and 64 of them
/// 3 GiB).
pub(crate) fn ring_budget(cfg: &ReceiverConfig) -> usize {
    let full = cfg.rxw_sqns as usize;
    full.saturating_mul(2).saturating_add(
        cfg.max_peers
            .saturating_mul(full.min(UNPROVEN_SQNS as usize)),
    )
}

impl Env {
    pub(crate) fn new(cfg: ReceiverConfig, rng: Rng) -> Self {
        let size = cfg.max_tpdu.saturating_sub(DATA_OVERHEAD).max(1);
        Env {
            pool: Pool::new(size, cfg.rxw_max_bytes, cfg.max_apdu),
            timers: BinaryHeap::with_capacity(1024),
            rng,
            stats: ReceiverStats::default(),
            ring_slots: 0,
            max_ring_slots: ring_budget(&cfg),
            lines: [LineState::default(); MAX_LINES],
            line: 0,
            cfg,
        }
    }

    /// A random instant in `[now, now + span)`.
    fn random_after(&mut self, now: Instant, span: Duration) -> Instant {
        let n = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        now + Duration::from_nanos(self.rng.below(n))
    }

    /// NAK_RB_IVL: a random back-off in `[now, now + span)`, `span` being this
    /// source's NAK_BO_IVL.
    ///
    /// With `nak_group_size` N > 1 (and `nak_adaptive`) the back-off is
    /// `max(0, span × (1 + log_N u))`, u uniform in (0, 1]: the truncated exponential
    /// timer of Nonnenmacher & Biersack ("Scalable feedback for large groups",
    /// IEEE/ACM ToN 1999) in the form TFMCC uses (Widmer & Handley, SIGCOMM 2001). Of N
    /// receivers that miss the same packet, about one draws 0 and NAKs at once; one whose
    /// draw falls within the suppression delay d (about one RTT) NAKs as well only with
    /// probability N^(d/span − 1), so about N^(d/span) NAKs go out in all (for
    /// `span` = 4 RTT: 2.7 for 50 receivers, 5.6 for 1000), where a uniform back-off
    /// would send 1 + (N − 1) d / span. A receiver alone in missing a packet waits
    /// `span × (1 − (1 − 1/N) / ln N)` on average (0.86 span for N = 1000).
    ///
    /// The distribution's N stays `nak_group_size` whatever the group-size estimate
    /// (which shortens `span` instead): with a small N a draw of 0 is likely (1 in N),
    /// and a receiver would NAK every gap a reordering opens for a moment (in the
    /// simulator, 200 µs of jitter at 10,000 msg/s: 3.9 NAKs per loss with N = 4).
    fn backoff(&mut self, now: Instant, span: Duration) -> Instant {
        let n = self.cfg.nak_group_size;
        if !self.cfg.nak_adaptive || n <= 1 {
            return self.random_after(now, span);
        }
        let u = 1.0 - self.rng.unit();
        let f = (1.0 + ln(u) / ln(f64::from(n))).clamp(0.0, 1.0);
        let ns = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX);
        // `f < 1`, so the product fits; `as` saturates.
        now + Duration::from_nanos((ns as f64 * f) as u64)
    }
}

/// A timer: a deadline for one peer. Entries are never removed early; an entry whose
/// peer generation or slot deadline no longer matches is stale and skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct TimerEntry {
    pub(crate) at: Instant,
    pub(crate) peer: u32,
    pub(crate) epoch: u32,
    pub(crate) kind: TimerKind,
}

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// NAK state deadline for `count` consecutive sequences from `first` (those whose
    /// slot still holds deadline `at`).
    Nak { first: u32, count: u32 },
    /// SPMR back-off.
    Spmr,
    /// SPMR to time the round trip ([`ReceiverConfig::rtt_probe`]).
    RttProbe,
    /// Peer expiry check.
    Expiry,
}

/// Smallest pool buffer class, in bytes; classes double from it up to the largest TSDU.
const MIN_CLASS: usize = 64;
/// Most buffer classes (64 B doubling to 64 KiB covers every TSDU `max_tpdu` allows).
const MAX_CLASSES: usize = 11;
/// Bytes charged to the budget per buffer on top of its capacity (its `Vec` header in
/// the table and the allocator's own header), so the budget bounds real memory.
pub(crate) const BUF_OVERHEAD: usize = 32;
/// Largest buffers head-of-line data may take beyond the budget, on top of one
/// largest APDU's fragments (see [`Pool`]).
pub(crate) const HEAD_RESERVE: usize = 2;

/// Receiver-wide TSDU buffers, sized to fit: each buffer belongs to a class (64, 128,
/// 256, ... bytes, the last class the largest TSDU), so a 64-byte message costs 96 bytes
/// of the `rxw_max_bytes` budget instead of a whole `max_tpdu` buffer.
///
/// Buffers are allocated on demand while the budget allows and recycled through one
/// free list per class. When a class has no free buffer and the budget is spent, free
/// buffers of other classes are released to make room (so a change of message sizes
/// does not leave the budget stuck in the wrong class). In a steady mix of sizes the
/// pool allocates nothing.
///
/// Head of line: data of the APDU at a peer's next sequence to deliver (that sequence,
/// or a fragment whose OPT_FRAGMENT names it as the APDU's first) may exceed the budget
/// by the buffers of one largest APDU (`max_apdu` in largest buffers) plus
/// [`HEAD_RESERVE`]. Once complete it is delivered at once and its buffers come back on
/// the next call, so the reserve never accumulates, and a window full of data behind a
/// gap can still take the repairs that let it drain (otherwise a repair would be
/// dropped for want of a buffer until the source went away: with only `next` allowed,
/// the second fragment of a three-fragment head APDU never found one).
#[derive(Debug)]
pub(crate) struct Pool {
    bufs: Vec<Vec<u8>>,
    /// Class of each entry of `bufs` (`u8::MAX` for a released, vacant entry).
    class_of: Vec<u8>,
    /// Capacity of each class.
    classes: [usize; MAX_CLASSES],
    nclasses: usize,
    /// Free buffers per class; each list's capacity covers every buffer of its class.
    free: [Vec<u32>; MAX_CLASSES],
    /// Buffers per class (free or in use).
    count: [usize; MAX_CLASSES],
    /// Entries of `bufs` whose buffer was released, for reuse.
    vacant: Vec<u32>,
    /// Bytes charged for the buffers that exist (free or in use).
    used: usize,
    /// Bytes charged for the buffers holding data.
    in_use: usize,
    /// Budget (`rxw_max_bytes`).
    max: usize,
    /// Largest APDU (`max_apdu`): sizes the head-of-line reserve.
    max_apdu: usize,
    size: usize,
}

impl Pool {
    fn new(size: usize, max: usize, max_apdu: usize) -> Self {
        let mut classes = [0; MAX_CLASSES];
        let mut nclasses = 0;
        let mut c = MIN_CLASS;
        while nclasses < MAX_CLASSES {
            if let Some(slot) = classes.get_mut(nclasses) {
                *slot = c.min(size);
            }
            nclasses += 1;
            if c >= size {
                break;
            }
            c *= 2;
        }
        Pool {
            bufs: Vec::new(),
            class_of: Vec::new(),
            classes,
            nclasses,
            free: Default::default(),
            count: [0; MAX_CLASSES],
            vacant: Vec::new(),
            used: 0,
            in_use: 0,
            max,
            max_apdu,
            size,
        }
    }

    /// Largest TSDU a buffer holds.
    pub(crate) fn size(&self) -> usize {
        self.size
    }

    /// Buffers that exist (free or in use).
    pub(crate) fn allocated(&self) -> usize {
        self.bufs.len() - self.vacant.len()
    }

    /// Budget bytes charged for the buffers that exist.
    pub(crate) fn bytes(&self) -> usize {
        self.used
    }

    fn class_for(&self, len: usize) -> Option<usize> {
        self.classes
            .iter()
            .take(self.nclasses)
            .position(|&c| c >= len)
    }

    /// Releases one free buffer of a class other than `keep`; false if there is none.
    fn release_one(&mut self, keep: usize) -> bool {
        for c in (0..self.nclasses).rev() {
            if c == keep {
                continue;
            }
            let Some(i) = self.free.get_mut(c).and_then(Vec::pop) else {
                continue;
            };
            if let Some(b) = self.bufs.get_mut(i as usize) {
                *b = Vec::new();
            }
            if let Some(k) = self.class_of.get_mut(i as usize) {
                *k = u8::MAX;
            }
            let cap = self.classes.get(c).copied().unwrap_or(0);
            self.used = self.used.saturating_sub(cap + BUF_OVERHEAD);
            if let Some(n) = self.count.get_mut(c) {
                *n = n.saturating_sub(1);
            }
            self.vacant.push(i);
            return true;
        }
        false
    }

    /// Bytes the head APDU may take beyond the budget: its fragments (at most
    /// `max_apdu` bytes in largest buffers) and [`HEAD_RESERVE`] more.
    pub(crate) fn head_reserve(&self) -> usize {
        let frags = self.max_apdu.div_ceil(self.size.max(1));
        frags
            .saturating_add(HEAD_RESERVE)
            .saturating_mul(self.cost(self.nclasses.saturating_sub(1)))
    }

    fn cost(&self, class: usize) -> usize {
        self.classes.get(class).copied().unwrap_or(0) + BUF_OVERHEAD
    }

    /// A buffer for a TSDU of `len` bytes (`len <= size()`), or `None` when the budget
    /// is spent. `head`: the data belongs to the APDU at its peer's next sequence to
    /// deliver (may use the reserve).
    fn alloc(&mut self, len: usize, head: bool) -> Option<u32> {
        let c = self.class_for(len)?;
        let cost = self.cost(c);
        let limit = if head {
            self.max.saturating_add(self.head_reserve())
        } else {
            self.max
        };
        if self.in_use + cost > limit {
            return None;
        }
        if let Some(i) = self.free.get_mut(c).and_then(Vec::pop) {
            self.in_use += cost;
            return Some(i);
        }
        let cap = self.classes.get(c).copied()?;
        while self.used + cost > limit {
            if !self.release_one(c) {
                return None;
            }
        }
        let buf = Vec::with_capacity(cap);
        let i = match self.vacant.pop() {
            Some(i) => {
                if let Some(b) = self.bufs.get_mut(i as usize) {
                    *b = buf;
                }
                if let Some(k) = self.class_of.get_mut(i as usize) {
                    *k = c as u8;
                }
                i
            }
            None => {
                let i = u32::try_from(self.bufs.len()).ok()?;
                self.bufs.push(buf);
                self.class_of.push(c as u8);
                if self.vacant.capacity() < self.bufs.len() {
                    // The vacant list can hold every entry, so releasing never allocates.
                    self.vacant
                        .reserve(self.bufs.len().next_power_of_two() - self.vacant.len());
                }
                i
            }
        };
        self.used += cost;
        self.in_use += cost;
        if let (Some(n), Some(f)) = (self.count.get_mut(c), self.free.get_mut(c)) {
            *n += 1;
            if f.capacity() < *n {
                // Keep the class's free list able to hold all its buffers, so `free`
                // never allocates.
                f.reserve(n.next_power_of_two() - f.len());
            }
        }
        Some(i)
    }

    pub(crate) fn free(&mut self, i: u32) {
        let c = self.class_of.get(i as usize).copied().unwrap_or(u8::MAX) as usize;
        let cost = self.cost(c);
        if let Some(f) = self.free.get_mut(c) {
            f.push(i);
            self.in_use = self.in_use.saturating_sub(cost);
        }
    }

    pub(crate) fn get(&self, i: u32) -> &[u8] {
        self.bufs.get(i as usize).map_or(&[], |v| v.as_slice())
    }

    fn fill(&mut self, i: u32, data: &[u8]) {
        if let Some(v) = self.bufs.get_mut(i as usize) {
            v.clear();
            v.extend_from_slice(data);
        }
    }
}

/// NAK state of a missing sequence (RFC 3208 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Missing on one line, while another live line has not passed it yet (A/B
    /// lines): no NAK until every live line has passed it or `line_wait` is over.
    LineWait,
    /// Waiting a random back-off before NAKing.
    BackOff,
    /// NAK sent; waiting NAK_RPT_IVL for an NCF.
    WaitNcf,
    /// NCF seen; waiting NAK_RDATA_IVL for the repair.
    WaitData,
}

#[derive(Clone, Copy, Debug)]
enum Slot {
    /// Outside `[next, lead]`.
    Empty,
    Missing {
        phase: Phase,
        at: Instant,
        /// Rounds that ended with the source's confirmation (NCF) but no RDATA: a
        /// source that holds the data and is slow to repair it (behind its rate
        /// limit); sets the retry back-off. Rounds lost to ordinary loss (the NAK, or
        /// one RDATA) keep the base intervals.
        slow: u32,
        /// NAK rounds that drew nothing at all from the source: no NCF or RDATA for any
        /// sequence while this NAK waited for its NCF. Only these count towards giving
        /// up (`nak_ncf_retries`): a source that answers is alive and holds the data.
        unanswered: u32,
    },
    Have {
        buf: u32,
        frag: Option<Fragment>,
    },
    Lost,
}

/// What `next_delivery` found.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Deliver {
    /// A one-TPDU APDU in pool buffer `buf` (now lent to the event).
    Buf { tsi: Tsi, sqn: Sqn, buf: u32 },
    /// A reassembled APDU in the receiver's reassembly buffer.
    Apdu { tsi: Tsi, sqn: Sqn },
    /// Lost sequences.
    Unrecoverable { tsi: Tsi, first: Sqn, count: u32 },
    /// OPT_FIN reached.
    End { tsi: Tsi },
}

/// Accumulates consecutive sequences sharing a deadline into one timer entry.
struct Run {
    at: Instant,
    first: Sqn,
    count: u32,
}

/// Packets heard from a TSI recently: a count over the current second, halved once
/// when a second has passed and forgotten after two. Compares how active two sources
/// are, for admission and eviction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Activity {
    count: u32,
    since: Instant,
}

/// Length of one activity period.
const ACTIVITY_IVL: Duration = Duration::from_secs(1);

impl Activity {
    pub(crate) fn new(now: Instant) -> Self {
        Activity {
            count: 0,
            since: now,
        }
    }

    /// The score at `now`.
    pub(crate) fn at(&self, now: Instant) -> u32 {
        let age = now - self.since;
        if age < ACTIVITY_IVL {
            self.count
        } else if age < 2 * ACTIVITY_IVL {
            self.count / 2
        } else {
            0
        }
    }

    /// One more packet at `now`.
    pub(crate) fn hit(&mut self, now: Instant) {
        if now - self.since >= ACTIVITY_IVL {
            self.count = self.at(now);
            self.since = now;
        }
        self.count = self.count.saturating_add(1);
    }
}

/// Largest window (sequences) of a peer that has not yet delivered
/// `probation_packets` messages: two far-apart ODATA from a stranger cost at most
/// this many slots (24 B each), not `rxw_sqns`.
pub(crate) const UNPROVEN_SQNS: u32 = 1 << 14;

/// One remote source (TSI).
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) tsi: Tsi,
    pub(crate) idx: u32,
    pub(crate) epoch: u32,
    /// Source address of its last packet.
    pub(crate) src: Nla,
    /// Path NLA from its last SPM: where NAKs go.
    pub(crate) path: Option<Nla>,
    pub(crate) last_heard: Instant,
    /// Recent packets, for eviction when the peer table is full.
    pub(crate) activity: Activity,
    /// Data events delivered (saturating at `probation_packets`, when the window may
    /// grow to `rxw_sqns`).
    pub(crate) proven: u32,
    pub(crate) spmr_at: Option<Instant>,
    pub(crate) in_ready: bool,
    /// NAK being assembled from back-offs expiring together.
    pub(crate) nak_build: Option<(Sqn, NakList)>,
    /// Parity NAK being assembled likewise (on-demand parity).
    pub(crate) nak_parity: Option<(Sqn, NakList)>,
    /// FEC state, once the source's SPMs offered parity.
    fec: Option<Box<PeerFec>>,
    /// When the source last answered a repair request (NCF or RDATA, for anyone).
    repair_heard: Option<Instant>,
    /// Round trip to this source.
    pub(crate) rtt: RttEstimator,
    /// How many receivers this receiver's losses from the source concern.
    pub(crate) group: GroupEstimate,
    /// The NAK being timed: its first sequence and when it was sent.
    probe: Option<(Sqn, Instant)>,
    /// When an SPMR was last sent while no SPM answered it yet.
    pub(crate) spmr_sent: Option<Instant>,
    /// When the next round-trip probe is due, and how many were sent.
    pub(crate) probe_at: Option<Instant>,
    pub(crate) probes: u8,
    spm_sqn: Option<Sqn>,
    started: bool,
    /// Ring of slots (power of two, at most `max_sqns`), indexed by `sqn & mask`.
    slots: Vec<Slot>,
    mask: u32,
    max_sqns: u32,
    /// Next sequence to deliver (or report).
    next: Sqn,
    /// Highest sequence in the window (`next - 1` when empty).
    lead: Sqn,
    /// Sequences before this one cannot be repaired any more (source trail).
    lost_until: Sqn,
    fin: Option<Sqn>,
    fin_reported: bool,
    /// OPT_RST already reported for this peer.
    pub(crate) reset_reported: bool,
    /// No event produced yet since the window started at `join_start`.
    joining: bool,
    join_start: Sqn,
    /// Reassembly progress of the APDU at `next`: (first, next fragment, bytes so far).
    scan: Option<(Sqn, Sqn, u32)>,
    /// Per line: the highest sequence its stream has accounted for (ODATA, SPM lead).
    line_lead: [Option<Sqn>; MAX_LINES],
    /// Per line: the address this source's packets came from on it (NAKs sent on that
    /// line go there).
    pub(crate) line_src: [Option<Nla>; MAX_LINES],
}

impl Peer {
    pub(crate) fn new(
        env: &mut Env,
        idx: u32,
        epoch: u32,
        tsi: Tsi,
        src: Nla,
        now: Instant,
    ) -> Self {
        // The ring starts small and doubles as the window actually spans more (up to
        // rxw_sqns), so memory follows use, not the configured maximum.
        let n = env.cfg.rxw_sqns.min(INITIAL_RING) as usize;
        env.timers.push(Reverse(TimerEntry {
            at: now + env.cfg.peer_expiry,
            peer: idx,
            epoch,
            kind: TimerKind::Expiry,
        }));
        Peer {
            tsi,
            idx,
            epoch,
            src,
            path: None,
            last_heard: now,
            activity: Activity::new(now),
            proven: 0,
            spmr_at: None,
            in_ready: false,
            nak_build: None,
            nak_parity: None,
            fec: None,
            repair_heard: None,
            rtt: RttEstimator::default(),
            group: GroupEstimate::default(),
            probe: None,
            spmr_sent: None,
            probe_at: None,
            probes: 0,
            spm_sqn: None,
            started: false,
            slots: vec![Slot::Empty; n],
            mask: (n as u32).saturating_sub(1),
            max_sqns: if env.cfg.probation_packets == 0 {
                env.cfg.rxw_sqns
            } else {
                env.cfg.rxw_sqns.min(UNPROVEN_SQNS)
            },
            next: Sqn(0),
            lead: Sqn(0).prev(),
            lost_until: Sqn(0),
            fin: None,
            fin_reported: false,
            reset_reported: false,
            joining: false,
            join_start: Sqn(0),
            scan: None,
            line_lead: [None; MAX_LINES],
            line_src: [None; MAX_LINES],
        }
    }

    /// Schedules the next round-trip probe (an SPMR timed to its SPM) while no sample
    /// has been taken and fewer than `RTT_PROBES` were sent: the first at `now` (a
    /// loss before the first sample waits the back-off ceiling, and at market-data
    /// rates the first loss comes within milliseconds of the join), the next ones a
    /// random time in `[0, spmr_expiry)` after `now`.
    pub(crate) fn schedule_probe(&mut self, env: &mut Env, now: Instant) {
        if !env.cfg.rtt_probe
            || !env.cfg.nak_adaptive
            || self.probes >= crate::config::RTT_PROBES
            || self.rtt.srtt().is_some()
        {
            self.probe_at = None;
            return;
        }
        let at = if self.probes == 0 {
            now
        } else {
            env.random_after(now, env.cfg.spmr_expiry)
        };
        self.probe_at = Some(at);
        env.timers.push(Reverse(TimerEntry {
            at,
            peer: self.idx,
            epoch: self.epoch,
            kind: TimerKind::RttProbe,
        }));
    }

    /// The window bound (rxw_sqns): at most this many sequences from `next`.
    fn cap(&self) -> u32 {
        self.max_sqns
    }

    /// Slots in the ring.
    pub(crate) fn ring_len(&self) -> usize {
        self.slots.len()
    }

    /// One more data event delivered: once `probation_packets` are, the window may
    /// span `rxw_sqns`.
    pub(crate) fn delivered_one(&mut self, cfg: &ReceiverConfig) {
        if self.proven < cfg.probation_packets {
            self.proven += 1;
        }
        if self.proven >= cfg.probation_packets {
            self.max_sqns = cfg.rxw_sqns;
        }
    }

    /// Starts the window at `sqn` as a first ODATA there would (admission from
    /// probation: what was heard before admission is then NAKed like any loss).
    pub(crate) fn join_at(&mut self, env: &mut Env, now: Instant, sqn: Sqn) {
        if self.started {
            return;
        }
        self.start(sqn);
        self.ask_for_spm(env, now);
    }

    /// Data before any SPM: schedules an SPMR after a random back-off.
    fn ask_for_spm(&mut self, env: &mut Env, now: Instant) {
        if self.path.is_none() {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
            // (paraphrase) SPMR: data before any SPM -> ask the source for one after a back-off
            let at = env.random_after(now, env.cfg.spmr_expiry);
            self.spmr_at = Some(at);
            env.timers.push(Reverse(TimerEntry {
                at,
                peer: self.idx,
                epoch: self.epoch,
                kind: TimerKind::Spmr,
            }));
        }
    }

    /// The most sequences the window can span now: its bound (`max_sqns`), or less
    /// while the receiver-wide slot budget does not let the ring grow that far.
    fn room(&self, env: &Env) -> u32 {
        let len = self.slots.len();
        let most = len + env.max_ring_slots.saturating_sub(env.ring_slots);
        let pow = if most.is_power_of_two() {
            most
        } else {
            most.next_power_of_two() / 2
        };
        u32::try_from(pow)
            .unwrap_or(u32::MAX)
            .clamp(len as u32, self.max_sqns.max(len as u32))
    }

    /// Grows the ring so that `[next, to]` fits (caller ensures `to - next < room`).
    /// Allocates only while the window grows (warm-up), never in steady state.
    fn reserve(&mut self, env: &mut Env, to: Sqn) {
        let span = to.distance(self.next);
        if span < 0 {
            return;
        }
        let need = span as u32 + 1;
        let len = self.slots.len() as u32;
        if need <= len {
            return;
        }
        let free = env.max_ring_slots.saturating_sub(env.ring_slots);
        let mut new_len = need
            .next_power_of_two()
            .max(len.saturating_mul(2))
            .min(self.max_sqns);
        if (new_len - len) as usize > free {
            // Only what is needed (the caller checked `room`).
            new_len = need.next_power_of_two().min(self.max_sqns);
        }
        env.ring_slots = env.ring_slots + new_len as usize - len as usize;
        let new_mask = new_len - 1;
        let mut slots = vec![Slot::Empty; new_len as usize];
        let mut s = self.next;
        while s.le(self.lead) {
            if let Some(dst) = slots.get_mut((s.0 & new_mask) as usize) {
                *dst = self.get(s);
            }
            s = s.next();
        }
        self.slots = slots;
        self.mask = new_mask;
    }

    fn si(&self, sqn: Sqn) -> usize {
        (sqn.0 & self.mask) as usize
    }

    fn get(&self, sqn: Sqn) -> Slot {
        self.slots.get(self.si(sqn)).copied().unwrap_or(Slot::Empty)
    }

    fn set(&mut self, sqn: Sqn, s: Slot) {
        let i = self.si(sqn);
        if let Some(slot) = self.slots.get_mut(i) {
            *slot = s;
        }
    }

    /// Moves delivery on to `next`, keeping `lost_until` from falling behind it (so
    /// serial-number comparisons with it stay meaningful however long the session runs).
    fn advance(&mut self, next: Sqn) {
        self.next = next;
        if next.gt(self.lost_until) {
            self.lost_until = next;
        }
    }

    fn in_ring(&self, sqn: Sqn) -> bool {
        sqn.ge(self.next) && sqn.le(self.lead)
    }

    fn start(&mut self, at: Sqn) {
        self.started = true;
        self.joining = true;
        self.join_start = at;
        self.next = at;
        self.lead = at.prev();
        self.lost_until = at;
    }

    fn push_run(&self, env: &mut Env, run: &mut Option<Run>, at: Instant, sqn: Sqn) {
        if let Some(r) = run {
            if r.at == at && r.first.add(r.count) == sqn {
                r.count += 1;
                return;
            }
            self.flush_run(env, run);
        }
        *run = Some(Run {
            at,
            first: sqn,
            count: 1,
        });
    }

    fn flush_run(&self, env: &mut Env, run: &mut Option<Run>) {
        if let Some(r) = run.take() {
            env.timers.push(Reverse(TimerEntry {
                at: r.at,
                peer: self.idx,
                epoch: self.epoch,
                kind: TimerKind::Nak {
                    first: r.first.0,
                    count: r.count,
                },
            }));
        }
    }

    /// The next NAK back-off's span: NAK_BO_IVL scaled by `ln n / ln 50` when the
    /// group-size estimate `n` (see `group.rs`) is below 50.
    fn bo_span(&self, cfg: &ReceiverConfig) -> Duration {
        let n = self.group.size(cfg);
        let scale = if n >= FULL_SPAN_GROUP {
            1000
        } else {
            // n >= 1: ln n / ln 50 in [0, 1); `as` saturates.
            (1000.0 * ln(f64::from(n.max(1))) / ln(f64::from(FULL_SPAN_GROUP))) as u32
        };
        self.rtt.bo_ivl(cfg, scale)
    }

    /// Grows the window to `to` (inclusive): the new sequences are missing (sharing one
    /// back-off deadline) or, below the source's trail, lost. Caller ensures
    /// `to - next < cap`.
    fn extend(&mut self, env: &mut Env, now: Instant, to: Sqn) {
        if !to.gt(self.lead) {
            return;
        }
        self.reserve(env, to);
        let at = env.backoff(now, self.bo_span(&env.cfg));
        let wait_at = now + env.cfg.line_wait;
        let mut run = None;
        let mut s = self.lead.next();
        loop {
            if s.lt(self.lost_until) {
                self.set(s, Slot::Lost);
            } else {
                let (phase, at) = if self.line_pending(env, s) {
                    (Phase::LineWait, wait_at)
                } else {
                    (Phase::BackOff, at)
                };
                self.set(
                    s,
                    Slot::Missing {
                        phase,
                        at,
                        slow: 0,
                        unanswered: 0,
                    },
                );
                self.push_run(env, &mut run, at, s);
            }
            if s == to {
                break;
            }
            s = s.next();
        }
        self.lead = to;
        self.flush_run(env, &mut run);
    }

    /// A/B lines: whether another live line may still bring `sqn` (it has not passed
    /// it yet), so that a NAK for it would be premature.
    fn line_pending(&self, env: &Env, sqn: Sqn) -> bool {
        env.cfg.lines > 1
            && (0..env.cfg.lines).any(|l| {
                l != env.line
                    && env.lines.get(usize::from(l)).is_some_and(|st| st.up)
                    && self
                        .line_lead
                        .get(usize::from(l))
                        .is_some_and(|p| p.is_none_or(|p| p.lt(sqn)))
            })
    }

    /// The current line's stream has accounted for every sequence up to `through`
    /// (`seen`: `through` itself came, as ODATA; else an SPM advertised it as the lead).
    /// Counts what the line skipped, and with several lines lets the sequences that
    /// waited for this line go to NAK back-off once no live line may bring them.
    fn line_advance(&mut self, env: &mut Env, now: Instant, through: Sqn, seen: bool) {
        let l = usize::from(env.line);
        let Some(slot) = self.line_lead.get_mut(l) else {
            return;
        };
        let prev = *slot;
        if let Some(p) = prev
            && !through.gt(p)
        {
            if seen && through != p {
                // Came late (reordered on its line): it was counted as skipped.
                if let Some(st) = env.lines.get_mut(l) {
                    st.lost = st.lost.saturating_sub(1);
                }
            }
            return;
        }
        *slot = Some(through);
        if let Some(p) = prev {
            let gap = through.distance(p).unsigned_abs() - u32::from(seen);
            if let Some(st) = env.lines.get_mut(l) {
                st.lost += u64::from(gap.min(self.cap()));
            }
        }
        if env.cfg.lines <= 1 || !self.started {
            return;
        }
        // Waiting sequences this line has now passed: [max(prev + 1, next), through).
        let mut s = match prev {
            Some(p) if p.next().gt(self.next) => p.next(),
            _ => self.next,
        };
        let end = if seen { through } else { through.next() };
        let mut bo_at = None;
        let mut run = None;
        while s.lt(end) && s.le(self.lead) {
            if let Slot::Missing {
                phase: Phase::LineWait,
                slow,
                unanswered,
                ..
            } = self.get(s)
                && !self.line_pending(env, s)
            {
                let at = *bo_at.get_or_insert_with(|| env.backoff(now, self.bo_span(&env.cfg)));
                self.set(
                    s,
                    Slot::Missing {
                        phase: Phase::BackOff,
                        at,
                        slow,
                        unanswered,
                    },
                );
                self.push_run(env, &mut run, at, s);
            }
            s = s.next();
        }
        self.flush_run(env, &mut run);
    }

    /// The line a NAK to this source goes on, and where (A/B lines): of the live lines
    /// this source was heard on, the one furthest ahead in its stream (lowest first).
    pub(crate) fn nak_line(&self, env: &Env) -> Option<(u8, Nla)> {
        let mut best: Option<(u8, Nla, Sqn)> = None;
        for l in 0..env.cfg.lines {
            let i = usize::from(l);
            let up = env.lines.get(i).is_some_and(|st| st.up);
            let (Some(Some(src)), Some(lead)) = (self.line_src.get(i), self.line_lead.get(i))
            else {
                continue;
            };
            let lead = lead.unwrap_or(self.next.prev());
            if up && best.is_none_or(|(_, _, b)| lead.gt(b)) {
                best = Some((l, *src, lead));
            }
        }
        best.map(|(l, src, _)| (l, src))
    }

    /// The source's trail moved to `trail`: what is still missing before it is lost.
    /// `limit` is the highest trail the packet can validly carry.
    fn apply_trail(&mut self, env: &mut Env, trail: Sqn, limit: Sqn) {
        if !self.started || !trail.le(limit) || !trail.gt(self.lost_until) {
            return;
        }
        let from = if self.lost_until.gt(self.next) {
            self.lost_until
        } else {
            self.next
        };
        self.lost_until = trail;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
        // (paraphrase) data that has fallen out of the transmit window cannot be repaired
        let mut s = from;
        while s.lt(trail) && s.le(self.lead) {
            if let Slot::Missing { .. } = self.get(s) {
                self.set(s, Slot::Lost);
                env.stats.lost_to_trail += 1;
            }
            s = s.next();
        }
    }

    /// ODATA or RDATA.
    pub(crate) fn on_data(
        &mut self,
        env: &mut Env,
        now: Instant,
        d: &Data<'_>,
        opts: &Options,
        rdata: bool,
    ) {
        let sqn = d.sqn;
        if opts.parity {
            if rdata {
                self.repair_heard = Some(now);
            }
            self.on_parity(env, now, d, opts);
            return;
        }
        if let Some(st) = env.lines.get_mut(usize::from(env.line)) {
            st.received += 1;
        }
        if rdata {
            // Any repair (ours, or a duplicate of someone else's) shows the source is
            // alive and answering NAKs.
            self.repair_heard = Some(now);
            if self.probe.is_some_and(|(p, _)| p == sqn) {
                self.rtt_sample(env, now);
            }
        }
        if d.payload.len() > env.pool.size() {
            env.stats.packets_ignored += 1;
            return;
        }
        if !self.started {
            if rdata {
                // A repair for someone else's loss tells a newcomer nothing about where
                // the stream is; wait for ODATA or an SPM.
                env.stats.packets_ignored += 1;
                return;
            }
            // Late join: start at the first data seen, or earlier if OPT_JOIN allows
            // (never before the source's trail, never more than half a window back).
            let mut start = sqn;
            if let Some(j) = opts.join
                && j.le(sqn)
                && sqn.distance(j) < (self.cap() / 2) as i32
            {
                start = j;
            }
            if d.trail.gt(start) && d.trail.le(sqn) {
                start = d.trail;
            }
            self.start(start);
            self.ask_for_spm(env, now);
        }
        self.apply_trail(env, d.trail, sqn);
        if opts.fin && self.fin.is_none() {
            self.fin = Some(sqn);
        }
        if !rdata {
            self.line_advance(env, now, sqn, true);
        }
        let dist = sqn.distance(self.next);
        if dist < 0 {
            env.stats.duplicates += 1;
            if rdata {
                self.group.on_foreign_repair();
            }
            return;
        }
        let room = self.room(env);
        if dist as u32 >= room {
            // Beyond the window: drop it, but grow the window to its full span so the
            // sequences in between are NAKed and delivery can catch up (otherwise a
            // receiver that fell a window behind would drop everything forever).
            env.stats.window_full_drops += 1;
            let last = self.next.add(room - 1);
            self.extend(env, now, last);
            return;
        }
        let fresh = sqn.gt(self.lead);
        if fresh {
            self.reserve(env, sqn);
            self.extend(env, now, sqn.prev());
        } else {
            match self.get(sqn) {
                Slot::Have { .. } => {
                    env.stats.duplicates += 1;
                    if rdata {
                        self.group.on_foreign_repair();
                    }
                    return;
                }
                // Repaired before this receiver NAKed it: someone else did.
                Slot::Missing {
                    phase: Phase::BackOff,
                    ..
                } if rdata => self.group.on_suppressed(),
                _ => {}
            }
        }
        if let Some(f) = opts.fragment
            && !fragment_ok(&f, sqn, d.payload.len(), env.cfg.max_apdu)
        {
            // A fragment that cannot belong to a valid APDU is never delivered.
            env.stats.packets_ignored += 1;
            if fresh {
                self.lead = sqn;
            }
            self.set(sqn, Slot::Lost);
            return;
        }
        // The head APDU (its first sequence is the next to deliver) may use the reserve:
        // every one of its fragments must fit for the window to drain.
        let head = sqn == self.next || opts.fragment.is_some_and(|f| f.first_sqn == self.next);
        let Some(buf) = env.pool.alloc(d.payload.len(), head) else {
            env.stats.buffer_drops += 1;
            if fresh {
                // Keep it as a loss to repair once buffers are free again.
                self.extend(env, now, sqn);
            }
            return;
        };
        env.pool.fill(buf, d.payload);
        if fresh {
            self.lead = sqn;
        }
        self.set(
            sqn,
            Slot::Have {
                buf,
                frag: opts.fragment,
            },
        );
        if let Some(st) = env.lines.get_mut(usize::from(env.line)) {
            st.won += 1;
        }
        if rdata {
            env.stats.rdata_received += 1;
        } else {
            env.stats.odata_received += 1;
        }
        env.stats.bytes_received += d.payload.len() as u64;
        self.fec_data(env, sqn, d.payload, opts.fragment);
    }

    /// A parity packet (RFC 3208 section 11): kept with its group, which is rebuilt as
    /// soon as it holds as many packets as the group has.
    fn on_parity(&mut self, env: &mut Env, now: Instant, d: &Data<'_>, opts: &Options) {
        env.stats.parity_received += 1;
        let Some(k) = self.fec.as_ref().map(|f| f.k()) else {
            env.stats.parity_unused += 1;
            return;
        };
        if !self.started || d.payload.len() > env.pool.size() {
            env.stats.parity_unused += 1;
            return;
        }
        //= https://www.rfc-editor.org/rfc/rfc3208#section-11
        // (paraphrase) a parity packet's sequence number is its group's ORed with its index.
        let tg = Sqn(d.sqn.0 & !(k - 1));
        let index = (d.sqn.0 & (k - 1)) as u8;
        let last = tg.add(k - 1);
        self.apply_trail(env, d.trail, last);
        if last.lt(self.next) {
            // The whole group was delivered (or reported lost) already.
            env.stats.parity_unused += 1;
            return;
        }
        if last.distance(self.next) as u32 >= self.room(env) {
            env.stats.window_full_drops += 1;
            return;
        }
        // The group's packets not seen yet are missing (the parity follows its group).
        if last.gt(self.lead) {
            self.extend(env, now, last);
        }
        let frag = opts.fragment.as_ref().map(frag_to_bytes);
        let Some(g) = self.fec.as_mut().and_then(|f| f.group(tg)) else {
            env.stats.parity_unused += 1;
            return;
        };
        if !g.buf.put_parity(index, d.payload, opts.var_pktlen, frag) {
            env.stats.parity_unused += 1;
            return;
        }
        self.try_recover(env, tg);
    }

    /// A data packet stored in the window: its copy goes to its FEC group.
    fn fec_data(&mut self, env: &mut Env, sqn: Sqn, payload: &[u8], frag: Option<Fragment>) {
        let Some(fec) = self.fec.as_mut() else {
            return;
        };
        let tg = fec.tg(sqn);
        let i = sqn.0.wrapping_sub(tg.0) as usize;
        let Some(g) = fec.group(tg) else {
            return;
        };
        g.buf.put_data(i, payload, frag.as_ref().map(frag_to_bytes));
        if g.buf.parity_count() > 0 {
            self.try_recover(env, tg);
        }
    }

    /// Rebuilds group `tg`'s missing packets if it holds enough parity, and puts those
    /// the window still waits for in place as if their RDATA had come.
    fn try_recover(&mut self, env: &mut Env, tg: Sqn) {
        let Some(k) = self.fec.as_ref().map(|f| f.k()) else {
            return;
        };
        // Which of the group's sequences the window still waits for.
        let mut wanted = 0u128;
        for i in 0..k {
            let s = tg.add(i);
            if self.in_ring(s) && matches!(self.get(s), Slot::Missing { .. }) {
                wanted |= 1u128 << i;
            }
        }
        let mut rebuilt: [(u32, u32, Option<Fragment>); crate::fec::MAX_RECOVER] =
            [(0, 0, None); crate::fec::MAX_RECOVER];
        let mut n = 0;
        {
            let Some(fec) = self.fec.as_mut() else {
                return;
            };
            let PeerFec { code, groups, .. } = &mut **fec;
            let Some(g) = groups.iter_mut().find(|g| g.used && g.tg == tg) else {
                return;
            };
            let missing = g.buf.missing(k as usize);
            if missing == 0 || missing > g.buf.parity_count() {
                return;
            }
            if wanted == 0 {
                // Nothing the window needs (what is missing was delivered or reported).
                return;
            }
            let mask = match g.buf.recover(code, k as usize) {
                Ok(m) => m,
                Err(_) => {
                    env.stats.parity_errors += 1;
                    g.buf.drop_parity();
                    return;
                }
            };
            for i in 0..k {
                if mask & wanted & (1u128 << i) == 0 || n >= rebuilt.len() {
                    continue;
                }
                let (payload, fb) = g.buf.data(i as usize);
                let frag = bytes_to_frag(&fb);
                let s = tg.add(i);
                if frag.is_some_and(|f| !fragment_ok(&f, s, payload.len(), env.cfg.max_apdu))
                    || payload.is_empty()
                {
                    env.stats.parity_errors += 1;
                    continue;
                }
                let head = s == self.next || frag.is_some_and(|f| f.first_sqn == self.next);
                let Some(buf) = env.pool.alloc(payload.len(), head) else {
                    env.stats.buffer_drops += 1;
                    continue;
                };
                env.pool.fill(buf, payload);
                env.stats.bytes_received += payload.len() as u64;
                if let Some(r) = rebuilt.get_mut(n) {
                    *r = (i, buf, frag);
                }
                n += 1;
            }
        }
        for &(i, buf, frag) in rebuilt.iter().take(n) {
            self.set(tg.add(i), Slot::Have { buf, frag });
            env.stats.parity_recovered += 1;
        }
    }

    /// NAKs `sqn` by parity when the source offers on-demand parity and `sqn`'s group
    /// has been seen to its end: one parity NAK per group, for as many parity packets
    /// as the group still lacks. False when `sqn` is to be NAKed selectively.
    fn add_parity_nak(&mut self, env: &mut Env, tx: &mut Bounded<PendingTx>, sqn: Sqn) -> bool {
        let Some(fec) = self.fec.as_mut().filter(|f| f.ondemand) else {
            return false;
        };
        let k = fec.k();
        let tg = fec.tg(sqn);
        if tg.add(k - 1).gt(self.lead) {
            // The group is not complete yet (its end may still come, or the source may
            // stop before it): selective.
            return false;
        }
        let Some(g) = fec.get(tg) else {
            return false;
        };
        let need = g
            .buf
            .missing(k as usize)
            .saturating_sub(g.buf.parity_count());
        if need == 0 || need > crate::fec::MAX_RECOVER {
            return false;
        }
        let psqn = Sqn(tg.0 | (need as u32 - 1));
        let same = |s: &Sqn| s.0 & !(k - 1) == tg.0;
        match &mut self.nak_parity {
            None => self.nak_parity = Some((psqn, NakList::default())),
            Some((first, list)) => {
                if same(first) || list.as_slice().iter().any(same) {
                    return true;
                }
                if !list.push(psqn) {
                    if let Some((first, list)) = self.nak_parity.take() {
                        push_tx(
                            tx,
                            &mut env.stats,
                            PendingTx::Nak {
                                peer: self.idx,
                                epoch: self.epoch,
                                sqn: first,
                                list,
                                parity: true,
                            },
                        );
                    }
                    self.nak_parity = Some((psqn, NakList::default()));
                }
            }
        }
        true
    }

    /// A parity NCF: the source will send parity for each group named; the group's
    /// missing packets wait for it as for RDATA.
    fn on_parity_ncf(&mut self, env: &mut Env, now: Instant, ncf: &Nak, opts: &Options) {
        let Some(k) = self.fec.as_ref().map(|f| f.k()) else {
            return;
        };
        let mut run = None;
        for &sqn in core::iter::once(&ncf.sqn).chain(opts.nak_list.as_slice()) {
            let tg = Sqn(sqn.0 & !(k - 1));
            for i in 0..k {
                let s = tg.add(i);
                if !self.in_ring(s) {
                    continue;
                }
                if let Slot::Missing {
                    phase: phase @ (Phase::LineWait | Phase::BackOff | Phase::WaitNcf),
                    slow,
                    unanswered,
                    ..
                } = self.get(s)
                {
                    if phase == Phase::BackOff {
                        self.group.on_suppressed();
                    }
                    let at = now + retry_ivl(self.rtt.rdata_ivl(&env.cfg), slow);
                    self.set(
                        s,
                        Slot::Missing {
                            phase: Phase::WaitData,
                            at,
                            slow,
                            unanswered,
                        },
                    );
                    self.push_run(env, &mut run, at, s);
                }
            }
        }
        self.flush_run(env, &mut run);
    }

    pub(crate) fn on_spm(&mut self, env: &mut Env, now: Instant, spm: &Spm, opts: &Options) {
        env.stats.spm_received += 1;
        // The source's announcement SPMs (OPT_SYN, back to back as a session starts)
        // answer no SPMR: a probe sent on the first of them would time the next at a
        // few microseconds. They leave the probe waiting for its answer.
        if !opts.syn
            && let Some(t) = self.spmr_sent.take()
            && now - t <= env.cfg.rtt_probe_max
        {
            // SPMR -> SPM (an SPM the source sent anyway may come first: a short
            // sample, clamped like any). A later one may answer nothing (the source
            // answers one SPMR per `spmr_holdoff`): no sample.
            self.rtt
                .sample_probe(now - t, env.cfg.rtt_min, env.cfg.rtt_max);
            env.stats.rtt_samples += 1;
        }
        // The line has accounted for the advertised lead, whichever line brought this
        // SPM's sequence number first.
        self.line_advance(env, now, spm.lead, false);
        //= https://www.rfc-editor.org/rfc/rfc3208#section-6.2
        // (paraphrase) receivers ... discard SPMs whose sequence number is not newer
        if let Some(last) = self.spm_sqn
            && !spm.sqn.gt(last)
        {
            return;
        }
        self.spm_sqn = Some(spm.sqn);
        self.path = Some(spm.path);
        if env.cfg.fec
            && let Some(prm) = &opts.parity_prm
        {
            match &mut self.fec {
                Some(f) if f.same(prm) => {
                    f.proactive = prm.proactive;
                    f.ondemand = prm.on_demand;
                }
                _ => self.fec = PeerFec::new(prm, env.pool.size()).map(Box::new),
            }
        }
        self.spmr_at = None;
        if !self.started {
            // Late join from an SPM: the window starts after the advertised lead.
            self.start(spm.lead.next());
        }
        self.apply_trail(env, spm.trail, spm.lead.next());
        if spm.lead.gt(self.lead) {
            let last = self.next.add(self.room(env) - 1);
            let to = if spm.lead.gt(last) { last } else { spm.lead };
            self.extend(env, now, to);
        }
        if opts.fin && self.fin.is_none() {
            self.fin = Some(spm.lead);
        }
    }

    pub(crate) fn on_ncf(&mut self, env: &mut Env, now: Instant, ncf: &Nak, opts: &Options) {
        env.stats.ncf_received += 1;
        if !self.started {
            return;
        }
        self.repair_heard = Some(now);
        if opts.parity {
            // Parity NCFs name groups, not sequences.
            self.on_parity_ncf(env, now, ncf, opts);
            return;
        }
        if let Some((p, _)) = self.probe
            && core::iter::once(&ncf.sqn)
                .chain(opts.nak_list.as_slice())
                .any(|&s| s == p)
        {
            self.rtt_sample(env, now);
        }
        let mut run = None;
        for &sqn in core::iter::once(&ncf.sqn).chain(opts.nak_list.as_slice()) {
            let d = sqn.distance(self.next);
            if d < 0 || d as u32 >= self.room(env) {
                continue;
            }
            if sqn.gt(self.lead) {
                self.extend(env, now, sqn);
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
            // (paraphrase) an NCF for a sequence in BACK_OFF suppresses this receiver's NAK
            if let Slot::Missing {
                phase: phase @ (Phase::LineWait | Phase::BackOff | Phase::WaitNcf),
                slow,
                unanswered,
                ..
            } = self.get(sqn)
            {
                if phase == Phase::BackOff {
                    // Someone else NAKed it first: a loss this receiver shares.
                    self.group.on_suppressed();
                }
                let at = now + retry_ivl(self.rtt.rdata_ivl(&env.cfg), slow);
                self.set(
                    sqn,
                    Slot::Missing {
                        phase: Phase::WaitData,
                        at,
                        slow,
                        unanswered,
                    },
                );
                self.push_run(env, &mut run, at, sqn);
            }
        }
        self.flush_run(env, &mut run);
    }

    /// How long a NAK waits for its NCF: NAK_RPT_IVL (after `slow` confirmed rounds,
    /// see [`retry_ivl`]). After `unanswered` rounds that drew nothing, the adaptive
    /// interval doubles per round (RFC 6298 section 5.5's back-off) up to the
    /// NAK_RPT_IVL ceiling, so a source gone silent is not NAKed every RTT.
    fn ncf_wait(&self, cfg: &ReceiverConfig, slow: u32, unanswered: u32) -> Duration {
        let base = self.rtt.rpt_ivl(cfg);
        let backed = base
            .saturating_mul(1u32 << unanswered.min(16))
            .min(cfg.nak_rpt_ivl)
            .max(base);
        retry_ivl(backed, slow)
    }

    /// The timed NAK was answered at `now`.
    fn rtt_sample(&mut self, env: &mut Env, now: Instant) {
        if let Some((_, t)) = self.probe.take() {
            self.rtt.sample(now - t, env.cfg.rtt_min, env.cfg.rtt_max);
            env.stats.rtt_samples += 1;
        }
    }

    fn add_to_nak(&mut self, env: &mut Env, tx: &mut Bounded<PendingTx>, sqn: Sqn) {
        match &mut self.nak_build {
            None => self.nak_build = Some((sqn, NakList::default())),
            Some((_, list)) => {
                if !list.push(sqn) {
                    if let Some((first, list)) = self.nak_build.take() {
                        push_tx(
                            tx,
                            &mut env.stats,
                            PendingTx::Nak {
                                peer: self.idx,
                                epoch: self.epoch,
                                sqn: first,
                                list,
                                parity: false,
                            },
                        );
                    }
                    self.nak_build = Some((sqn, NakList::default()));
                }
            }
        }
    }

    /// A NAK timer entry fired.
    pub(crate) fn on_nak_timer(
        &mut self,
        env: &mut Env,
        tx: &mut Bounded<PendingTx>,
        now: Instant,
        at: Instant,
        first: Sqn,
        count: u32,
    ) {
        let mut bo_at = None;
        let mut wait_run = None;
        let mut bo_run = None;
        for i in 0..count {
            let sqn = first.add(i);
            if !self.in_ring(sqn) {
                continue;
            }
            let Slot::Missing {
                phase,
                at: a,
                slow,
                unanswered,
            } = self.get(sqn)
            else {
                continue;
            };
            if a != at {
                continue;
            }
            let (slow, unanswered) = match phase {
                Phase::LineWait => {
                    // Waited `line_wait` for the other lines: NAK it like any loss.
                    let b = *bo_at.get_or_insert_with(|| env.backoff(now, self.bo_span(&env.cfg)));
                    self.set(
                        sqn,
                        Slot::Missing {
                            phase: Phase::BackOff,
                            at: b,
                            slow,
                            unanswered,
                        },
                    );
                    self.push_run(env, &mut bo_run, b, sqn);
                    continue;
                }
                Phase::BackOff => {
                    //= https://www.rfc-editor.org/rfc/rfc3208#section-6.3
                    // (paraphrase) back-off expired: send the NAK, then wait NAK_RPT_IVL for an NCF
                    if !self.add_parity_nak(env, tx, sqn) {
                        self.add_to_nak(env, tx, sqn);
                    }
                    if slow == 0 && unanswered == 0 {
                        // Its first NAK, as far as the slot tells (a NAK repeated
                        // because its NCF was lost looks the same: a few per hundred).
                        self.group.on_naked();
                    }
                    // Time one NAK at a time, a sequence's first (Karn: an answer to a
                    // repeated NAK may answer the earlier one). A probe never answered
                    // is dropped after the NAK_RPT_IVL ceiling.
                    let stale = self
                        .probe
                        .is_none_or(|(_, t)| now - t >= env.cfg.nak_rpt_ivl);
                    if self.probe.is_some_and(|(p, _)| p == sqn) {
                        // NAKed again before an answer: whatever answers now may answer
                        // either NAK (Karn), so it is no sample.
                        self.probe = None;
                    } else if stale && slow == 0 && unanswered == 0 {
                        self.probe = Some((sqn, now));
                    }
                    let rpt_at = now + self.ncf_wait(&env.cfg, slow, unanswered);
                    self.set(
                        sqn,
                        Slot::Missing {
                            phase: Phase::WaitNcf,
                            at: rpt_at,
                            slow,
                            unanswered,
                        },
                    );
                    self.push_run(env, &mut wait_run, rpt_at, sqn);
                    continue;
                }
                Phase::WaitNcf => {
                    // The NAK went out `retry_ivl` before this deadline: did the source
                    // answer anything (to anyone) since?
                    // (The interval may have moved with the RTT since: approximate.)
                    let sent = at - self.ncf_wait(&env.cfg, slow, unanswered);
                    if self.repair_heard.is_some_and(|h| h >= sent) {
                        (slow, unanswered)
                    } else {
                        // Nothing from the source at all: not a slow source but maybe a
                        // gone one (closed with repairs still queued). The next rounds
                        // go at the base interval, so that its absence is known after
                        // about `nak_ncf_retries` x NAK_RPT_IVL, not 8 times that.
                        (0, unanswered + 1)
                    }
                }
                // The source confirmed it holds the data (NCF): only its trail passing
                // the sequence, or the source going away, makes it unrecoverable.
                Phase::WaitData => (slow.saturating_add(1), unanswered),
            };
            // Unreachable: more than `nak_ncf_retries` of this sequence's NAK rounds
            // drew nothing, and the source has answered nobody's NAK (no NCF, no RDATA)
            // for as long as that many rounds take at the base interval.
            let silent = self
                .repair_heard
                .is_none_or(|h| now - h >= unreachable_after(&env.cfg));
            if unanswered > env.cfg.nak_ncf_retries && silent {
                self.set(sqn, Slot::Lost);
                env.stats.retries_exhausted += 1;
                continue;
            }
            let b = match bo_at {
                Some(b) => b,
                None => {
                    let b = env.backoff(now, self.bo_span(&env.cfg));
                    bo_at = Some(b);
                    b
                }
            };
            self.set(
                sqn,
                Slot::Missing {
                    phase: Phase::BackOff,
                    at: b,
                    slow,
                    unanswered,
                },
            );
            self.push_run(env, &mut bo_run, b, sqn);
        }
        self.flush_run(env, &mut wait_run);
        self.flush_run(env, &mut bo_run);
    }

    /// True if `e` (a timer of this peer) can still do something.
    pub(crate) fn timer_live(&self, e: &TimerEntry) -> bool {
        match e.kind {
            TimerKind::Expiry => true,
            TimerKind::Spmr => self.spmr_at == Some(e.at),
            TimerKind::RttProbe => self.probe_at == Some(e.at),
            TimerKind::Nak { first, count } => (0..count).any(|i| {
                let s = Sqn(first).add(i);
                self.in_ring(s) && matches!(self.get(s), Slot::Missing { at, .. } if at == e.at)
            }),
        }
    }

    /// Whether `next_delivery` may have something.
    pub(crate) fn wants_delivery(&self) -> bool {
        if !self.started {
            return false;
        }
        if let Some(f) = self.fin
            && !self.fin_reported
            && f.lt(self.next)
        {
            return true;
        }
        if self.lost_until.gt(self.next) {
            return true;
        }
        self.next.le(self.lead) && matches!(self.get(self.next), Slot::Have { .. } | Slot::Lost)
    }

    /// The last sequence number delivered to the application or reported unrecoverable
    /// (`None` before the first event): what the peer's session is known up to.
    pub(crate) fn accounted_through(&self) -> Option<Sqn> {
        (self.started && !self.joining).then(|| self.next.prev())
    }

    /// Frees every buffer the window holds, and its slots.
    pub(crate) fn release_all(&mut self, env: &mut Env) {
        for s in &mut self.slots {
            if let Slot::Have { buf, .. } = *s {
                env.pool.free(buf);
            }
            *s = Slot::Empty;
        }
        let initial = env.cfg.rxw_sqns.min(INITIAL_RING) as usize;
        env.ring_slots = env
            .ring_slots
            .saturating_sub(self.slots.len().saturating_sub(initial));
        self.slots = Vec::new();
        self.mask = 0;
    }

    fn take_buf(&mut self, env: &mut Env, sqn: Sqn) {
        if let Slot::Have { buf, .. } = self.get(sqn) {
            env.pool.free(buf);
        }
        self.set(sqn, Slot::Empty);
    }

    fn unrecoverable(&mut self, env: &mut Env, count: u32) -> Option<Deliver> {
        let first = self.next;
        // Only the part inside the ring holds slots; a run past the lead (a trail that
        // jumped far ahead) costs nothing per sequence.
        let held = if self.lead.ge(first) {
            count.min(self.lead.distance(first) as u32 + 1)
        } else {
            0
        };
        for i in 0..held {
            self.take_buf(env, first.add(i));
        }
        self.advance(first.add(count));
        if self.next.gt(self.lead.next()) {
            self.lead = self.next.prev();
        }
        self.scan = None;
        env.stats.unrecoverable += u64::from(count);
        Some(Deliver::Unrecoverable {
            tsi: self.tsi,
            first,
            count,
        })
    }

    /// A run of lost sequences (and orphan fragments of APDUs whose start is lost) at
    /// `next`.
    fn lost_run(&mut self, env: &mut Env) -> Option<Deliver> {
        let mut count = 0u32;
        let mut s = self.next;
        while s.le(self.lead) {
            let dead = match self.get(s) {
                Slot::Lost => true,
                Slot::Have { frag: Some(f), .. } => f.first_sqn != s || f.offset != 0,
                _ => false,
            };
            if !dead {
                break;
            }
            count += 1;
            s = s.next();
        }
        if s == self.lead.next() && self.lost_until.gt(s) {
            count += self.lost_until.distance(s) as u32;
        }
        if count == 0 {
            return None;
        }
        self.unrecoverable(env, count)
    }

    /// The next event of this peer's stream, if it is ready.
    pub(crate) fn next_delivery(&mut self, env: &mut Env, apdu: &mut Vec<u8>) -> Option<Deliver> {
        if !self.started {
            return None;
        }
        self.skip_join_orphans(env);
        let d = self.next_event(env, apdu);
        if d.is_some() {
            self.joining = false;
        }
        d
    }

    /// A late joiner's first packets may be the tail fragments of an APDU that began
    /// before it joined: they belong to "before joining" and are dropped silently (the
    /// application was never going to see that APDU), not reported unrecoverable.
    fn skip_join_orphans(&mut self, env: &mut Env) {
        while self.joining && self.next.le(self.lead) {
            match self.get(self.next) {
                Slot::Have { frag: Some(f), .. } if f.first_sqn.lt(self.join_start) => {
                    let s = self.next;
                    self.take_buf(env, s);
                    self.advance(s.next());
                    self.scan = None;
                    env.stats.pre_join_fragments += 1;
                }
                _ => break,
            }
        }
    }

    fn next_event(&mut self, env: &mut Env, apdu: &mut Vec<u8>) -> Option<Deliver> {
        if let Some(f) = self.fin
            && !self.fin_reported
            && f.lt(self.next)
        {
            self.fin_reported = true;
            return Some(Deliver::End { tsi: self.tsi });
        }
        if self.next.gt(self.lead) {
            if self.lost_until.gt(self.next) {
                let count = self.lost_until.distance(self.next) as u32;
                return self.unrecoverable(env, count);
            }
            return None;
        }
        let sqn = self.next;
        match self.get(sqn) {
            Slot::Empty | Slot::Missing { .. } => None,
            Slot::Lost => self.lost_run(env),
            Slot::Have { buf, frag } => {
                let single = match frag {
                    None => true,
                    Some(f) if f.first_sqn == sqn && f.offset == 0 => {
                        env.pool.get(buf).len() as u64 == u64::from(f.apdu_len)
                    }
                    Some(_) => return self.lost_run(env),
                };
                if single {
                    self.set(sqn, Slot::Empty);
                    self.advance(sqn.next());
                    self.scan = None;
                    env.stats.delivered += 1;
                    return Some(Deliver::Buf {
                        tsi: self.tsi,
                        sqn,
                        buf,
                    });
                }
                let f = frag?;
                self.reassemble(env, apdu, f)
            }
        }
    }

    fn reassemble(&mut self, env: &mut Env, apdu: &mut Vec<u8>, f: Fragment) -> Option<Deliver> {
        let first = self.next;
        let (mut q, mut acc) = match self.scan {
            Some((sf, q, acc)) if sf == first => (q, acc),
            _ => {
                let Slot::Have { buf, .. } = self.get(first) else {
                    return None;
                };
                (first.next(), env.pool.get(buf).len() as u32)
            }
        };
        let broken = loop {
            if acc == f.apdu_len {
                break false;
            }
            if acc > f.apdu_len {
                break true;
            }
            if q.gt(self.lead) {
                if self.lost_until.gt(q) {
                    break true;
                }
                self.scan = Some((first, q, acc));
                return None;
            }
            match self.get(q) {
                Slot::Missing { .. } => {
                    self.scan = Some((first, q, acc));
                    return None;
                }
                Slot::Have { buf, frag: Some(g) }
                    if g.first_sqn == first && g.offset == acc && g.apdu_len == f.apdu_len =>
                {
                    acc = acc.saturating_add(env.pool.get(buf).len() as u32);
                    q = q.next();
                }
                _ => break true,
            }
        };
        let count = q.distance(first) as u32;
        if broken {
            //= https://www.rfc-editor.org/rfc/rfc3208#section-9.2
            // (paraphrase) an APDU with a missing fragment is unrecoverable; never deliver it partly
            return self.unrecoverable(env, count);
        }
        apdu.clear();
        for i in 0..count {
            let s = first.add(i);
            if let Slot::Have { buf, .. } = self.get(s) {
                apdu.extend_from_slice(env.pool.get(buf));
            }
            self.take_buf(env, s);
        }
        self.advance(q);
        self.scan = None;
        env.stats.delivered += 1;
        Some(Deliver::Apdu {
            tsi: self.tsi,
            sqn: first,
        })
    }
}

/// Natural logarithm of `x > 0` from IEEE basic operations only (exponent bits, then
/// `ln m = 2 atanh((m − 1)/(m + 1))` for the mantissa `m` in [1, 2), 12 terms: error
/// below 1e-12), so a seed gives the same back-offs on every machine and libm.
fn ln(x: f64) -> f64 {
    if x.is_nan() || x <= 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let mut x = x;
    let mut e = 0i32;
    // Subnormals: scale into the normal range first.
    if x < f64::MIN_POSITIVE {
        x *= (1u64 << 54) as f64;
        e -= 54;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i32 - 1023;
    let m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut term = z;
    let mut sum = 0.0;
    let mut k = 1.0;
    for _ in 0..12 {
        sum += term / k;
        term *= z2;
        k += 2.0;
    }
    f64::from(e) * core::f64::consts::LN_2 + 2.0 * sum
}

/// Most doublings of a NAK's repeat interval: 8 times the configured NAK_RPT_IVL /
/// NAK_RDATA_IVL at most.
const MAX_RETRY_SHIFT: u32 = 3;

/// How long the source must have answered nobody's NAK before a sequence may be given
/// up as unreachable: as long as `nak_ncf_retries + 1` rounds take at the base interval.
fn unreachable_after(cfg: &ReceiverConfig) -> Duration {
    cfg.nak_rpt_ivl
        .saturating_mul(cfg.nak_ncf_retries.saturating_add(1))
}

/// The wait (for an NCF, or for RDATA after one) of a sequence's next NAK round after
/// `slow` rounds that the source confirmed without repairing: `base` while `slow` is 0
/// or 1 (one late RDATA is most likely a lost one), then doubling up to
/// `base << MAX_RETRY_SHIFT`. A source that holds the data but repairs it late costs a
/// falling NAK rate; ordinary loss of NAKs or RDATA keeps the base intervals, so
/// repairs stay fast and finish well before a short transmit window moves on.
fn retry_ivl(base: Duration, slow: u32) -> Duration {
    base.saturating_mul(1u32 << slow.saturating_sub(1).min(MAX_RETRY_SHIFT))
}

/// A fragment header that can belong to a valid APDU of at most `max_apdu` bytes.
fn fragment_ok(f: &Fragment, sqn: Sqn, len: usize, max_apdu: usize) -> bool {
    let apdu_len = f.apdu_len as usize;
    let back = sqn.distance(f.first_sqn);
    len > 0
        && apdu_len <= max_apdu
        && (f.offset as usize).saturating_add(len) <= apdu_len
        && back >= 0
        && (back as u64) <= u64::from(f.offset)
        && (back != 0 || f.offset == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_starts_small_and_doubles_up_to_the_window() {
        let cfg = ReceiverConfig {
            rxw_sqns: 1024,
            ..ReceiverConfig::default()
        };
        let mut env = Env::new(cfg, Rng::new(1));
        let mut p = Peer::new(
            &mut env,
            0,
            0,
            Tsi::default(),
            Nla::default(),
            Instant::ZERO,
        );
        assert_eq!(p.slots.len(), 256);
        p.start(Sqn(10));
        p.extend(&mut env, Instant::ZERO, Sqn(10 + 299));
        assert_eq!(p.slots.len(), 512);
        p.extend(&mut env, Instant::ZERO, Sqn(10 + 1023));
        assert_eq!(p.slots.len(), 1024, "capped at rxw_sqns");
        assert!((0..1024).all(|i| matches!(p.get(Sqn(10 + i)), Slot::Missing { .. })));
    }

    #[test]
    fn back_off_arithmetic_saturates_instead_of_overflowing() {
        assert_eq!(retry_ivl(Duration::MAX, 9), Duration::MAX);
        assert_eq!(
            retry_ivl(Duration::from_millis(200), 9),
            Duration::from_millis(1600)
        );
        let cfg = ReceiverConfig {
            nak_ncf_retries: u32::MAX,
            nak_rpt_ivl: Duration::from_secs(u64::MAX / 4),
            ..ReceiverConfig::default()
        };
        assert_eq!(unreachable_after(&cfg), Duration::MAX);
        assert_eq!(
            unreachable_after(&ReceiverConfig::default()),
            Duration::from_millis(2200)
        );
    }

    #[test]
    fn portable_ln_matches_the_library() {
        for &x in &[
            1e-300, 1e-12, 0.001, 0.25, 0.5, 0.999_999, 1.0, 1.5, 2.0, 50.0, 1000.0,
        ] {
            let (a, b) = (ln(x), x.ln());
            assert!((a - b).abs() <= 1e-11 * b.abs().max(1.0), "{x}: {a} vs {b}");
        }
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(ln(0.0), f64::NEG_INFINITY);
        assert!(ln(5e-324) < -744.0);
    }

    #[test]
    fn slots_stay_small() {
        // docs/defaults.md sizes the per-peer ring with this.
        assert!(
            core::mem::size_of::<Slot>() <= 24,
            "{}",
            core::mem::size_of::<Slot>()
        );
    }
}
