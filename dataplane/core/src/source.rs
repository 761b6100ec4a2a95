//! The sending side of a PGM session (RFC 3208 section 5).
//!
//! Drive it like quinn-proto's `Connection`: after every `send`, `handle_packet` or
//! `handle_timeout`, call `poll_transmit` until it returns `None`, then arm a timer for
//! `poll_timeout`.
//!
//! # Design
//!
//! * The transmit window is byte-packed (module `txw`): TSDUs lie back to back in a byte
//!   ring of `txw_max_bytes`, with a 16-byte index entry per sequence (`txw_sqns`
//!   entries, a power of two). Both are allocated by `Source::new` and never again, so
//!   `send` and `poll_transmit` allocate nothing, with no warm-up.
//! * The trail advances when data is older than `txw_secs`, or when `send` needs room
//!   because either bound (sequences or bytes) is reached. It never evicts data sent
//!   less than `txw_min_secs` ago, nor data not yet sent: `send` returns `WouldBlock`.
//! * `send` copies the APDU into the window at once (assigning sequence numbers), so
//!   "queued but not transmitted" data lives in the window between the lead (last ODATA
//!   transmitted) and the next sequence number to assign. `send_queue` bounds that span in
//!   **TPDUs**.
//! * `poll_transmit` order: NCFs (own token bucket, `ncf_max_rte`), then a due SPM, then
//!   RDATA (own token bucket, `rdata_max_rte`), then ODATA (TXW_MAX_RTE bucket). Repairs
//!   therefore always go ahead of new data and have a budget new data cannot consume,
//!   and new data has a budget no NAK flood can consume: whatever arrives, NCF and RDATA
//!   bytes per second stay within their budgets and ODATA keeps its rate.
//! * Timers are a handful of deadlines (SPM, window age, token availability), so
//!   `poll_timeout` is O(1).

mod rate;
mod txw;

use std::collections::VecDeque;

use crate::config::{ConfigError, DATA_OVERHEAD, FRAGMENT_OPTIONS_LEN, FecConfig, SourceConfig};
use crate::fec::{self, Code};
use crate::line::LineSet;
use crate::seq::Sqn;
use crate::time::Instant;
use crate::wire::{
    Body, Data, Error, Fragment, Nak, NakList, Nla, Options, PacketRepr, PacketType, ParityPrm,
    Spm, Tsi,
};

use rate::TokenBucket;
use txw::TxWindow;

/// SPMs (with OPT_SYN) announcing a new session, back to back, as OpenPGM does when a
/// sending socket connects: a receiver present from the start that loses one of them
/// (and the first ODATA) still learns the session starts at sequence 0.
const ANNOUNCE_SPMS: u8 = 3;

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
    /// The lines to send it on (a one-line datapath ignores this). Source: ODATA and SPM
    /// on every line, RDATA and NCF on the lines whose NAKs asked for them. Receiver:
    /// one line.
    pub lines: LineSet,
}

/// Why `send` refused an APDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The send queue is full (rate limit), or the transmit window is full of data
    /// younger than `txw_min_secs`; try again after `poll_timeout`.
    WouldBlock,
    /// Larger than `max_apdu`.
    TooLarge,
    /// `close` was called.
    Closed,
}

impl core::fmt::Display for SendError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SendError::WouldBlock => write!(f, "send queue full"),
            SendError::TooLarge => write!(f, "APDU larger than max_apdu"),
            SendError::Closed => write!(f, "session closed"),
        }
    }
}

impl core::error::Error for SendError {}

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
    /// NCF bytes sent (whole PGM packets), charged to `ncf_max_rte`.
    pub ncf_bytes: u64,
    /// RDATA bytes sent as charged to `rdata_max_rte` (TPDU: PGM header, options, TSDU).
    pub rdata_tpdu_bytes: u64,
    /// NAKs received (each sequence in an OPT_NAK_LIST counts once).
    pub naks_received: u64,
    /// NAKs for sequence numbers outside the transmit window.
    pub naks_outside_window: u64,
    /// Malformed or foreign packets ignored.
    pub packets_ignored: u64,
    /// SPMRs received.
    pub spmr_received: u64,
    /// NAKed sequences already queued for repair (answered by the pending RDATA).
    pub naks_coalesced: u64,
    /// NAKed sequences not queued because the repair queue was full.
    pub repairs_dropped: u64,
    /// Queued repairs skipped because the sequence left the window before its turn.
    pub repairs_expired: u64,
    /// NCFs not sent because the NCF queue was full (NAKs arriving faster than
    /// `ncf_max_rte` lets NCFs out).
    pub ncfs_dropped: u64,
    /// NAKed sequences confirmed but not repaired again because their RDATA went out
    /// less than `rdata_holdoff` before.
    pub naks_held_off: u64,
    /// Packets lost because `poll_transmit`'s buffer was too small.
    pub emit_errors: u64,
    /// Parity packets sent (proactive and on demand; also counted in neither ODATA nor
    /// RDATA).
    pub parity_sent: u64,
    /// Parity TSDU bytes sent.
    pub parity_bytes: u64,
    /// Of `parity_sent`, on demand (in answer to parity NAKs).
    pub parity_ondemand_sent: u64,
    /// Parity NAKs received (each group in an OPT_NAK_LIST counts once).
    pub parity_naks_received: u64,
    /// Parity NAKs ignored: no on-demand parity offered, or the group is not (wholly)
    /// in the transmit window.
    pub parity_naks_refused: u64,
    /// Parity packets not sent: their group left the window before their turn, the
    /// parity queue was full, or the parity would not fit `max_tpdu`.
    pub parity_dropped: u64,
}

/// Parity packets waiting for one transmission group.
#[derive(Clone, Copy, Debug)]
struct ParityJob {
    /// First sequence of the group.
    tg: Sqn,
    /// Parity packets still to send.
    count: u16,
    lines: LineSet,
}

/// Most groups with parity waiting, per kind (proactive, on demand).
const PARITY_JOBS: usize = 256;

/// A source's FEC state.
#[derive(Debug)]
struct SourceFec {
    cfg: FecConfig,
    code: Code,
    /// Next parity index per group in the window (ring over group numbers).
    next_index: Vec<u8>,
    /// Proactive parity (charged to the ODATA budget), after each full group.
    proactive: VecDeque<ParityJob>,
    /// On-demand parity (charged to the RDATA budget), in answer to parity NAKs.
    ondemand: VecDeque<ParityJob>,
    /// The parity packet being sent (TSDU).
    buf: Vec<u8>,
}

impl SourceFec {
    fn index_slot(&mut self, tg: Sqn) -> Option<&mut u8> {
        let len = self.next_index.len();
        self.next_index
            .get_mut(((tg.0 >> self.code.shift()) as usize) & (len - 1))
    }
}

/// An NCF waiting to be sent.
#[derive(Clone, Copy, Debug)]
struct PendingNcf {
    sqn: Sqn,
    list: NakList,
    /// Confirms a parity NAK (the sequences are `group | count - 1`).
    parity: bool,
    /// The line the NAK came on (where the NCF goes).
    lines: LineSet,
}

/// What `next_packet` decided to send (resolved to a `PacketRepr` afterwards).
#[derive(Clone, Copy, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "short-lived value; boxing would allocate per packet"
)]
enum Next {
    Ncf(PendingNcf),
    Spm {
        sqn: Sqn,
        fin: bool,
        syn: bool,
    },
    Rdata(Sqn, LineSet),
    Odata(Sqn),
    /// A parity packet (its TSDU in `SourceFec::buf`).
    Parity {
        sqn: Sqn,
        len: usize,
        var: bool,
        frag: Option<Fragment>,
        lines: LineSet,
    },
}

impl Next {
    fn lines(&self) -> LineSet {
        match self {
            Next::Ncf(n) => n.lines,
            Next::Rdata(_, l) => *l,
            Next::Parity { lines, .. } => *lines,
            Next::Spm { .. } | Next::Odata(_) => LineSet::ALL,
        }
    }
}

/// A PGM source.
#[derive(Debug)]
pub struct Source {
    cfg: SourceConfig,
    tsi: Tsi,
    txw: TxWindow,
    /// Oldest sequence still in the window (repairable).
    trail: Sqn,
    /// Next sequence to transmit as ODATA; the lead is `next_tx - 1`.
    next_tx: Sqn,
    /// Next sequence to assign in `send`.
    next_sqn: Sqn,
    repairs: VecDeque<Sqn>,
    /// RDATA sent within the last `rdata_holdoff`, oldest first (at most
    /// `repair_queue`).
    recent: VecDeque<(Sqn, Instant)>,
    ncfs: VecDeque<PendingNcf>,
    odata_rate: TokenBucket,
    rdata_rate: TokenBucket,
    ncf_rate: TokenBucket,
    spm_sqn: Sqn,
    /// When the next ambient SPM is due (`spm_ambient_ivl` after the last SPM of any
    /// kind), independent of data: a continuous stream still gets ambient SPMs.
    next_ambient: Instant,
    /// When the next heartbeat SPM is due, if the heartbeat schedule is running.
    next_heartbeat: Option<Instant>,
    /// Index into `spm_heartbeat` of the next heartbeat interval (len = ambient).
    hb_idx: usize,
    /// Last SPM sent because of an SPMR.
    last_spmr_spm: Option<Instant>,
    /// Announcement SPMs (with OPT_SYN) still to send.
    announce: u8,
    /// Set when `send` refused for a full window of young data: when it will fit.
    blocked_until: Option<Instant>,
    closed: bool,
    /// All data sent after `close`: SPMs carry OPT_FIN.
    fin: bool,
    stats: SourceStats,
    fec: Option<SourceFec>,
}

impl Source {
    /// A new source for session `tsi`, starting at `now`, or why `config` is refused
    /// (see [`SourceConfig::validate`]).
    pub fn new(config: SourceConfig, tsi: Tsi, now: Instant) -> Result<Self, ConfigError> {
        config.validate()?;
        let burst = |rate: u64| {
            (config.max_tpdu * 2).max(usize::try_from(rate / 100).unwrap_or(usize::MAX))
        };
        // The first sequence number is 0 (as OpenPGM's `lead = -1` start), so the window
        // starts empty with trail = lead + 1.
        let first = Sqn(0);
        Ok(Source {
            odata_rate: TokenBucket::new(config.txw_max_rte, burst(config.txw_max_rte), now),
            rdata_rate: TokenBucket::new(config.rdata_max_rte, burst(config.rdata_max_rte), now),
            ncf_rate: TokenBucket::new(config.ncf_max_rte, burst(config.ncf_max_rte), now),
            repairs: VecDeque::with_capacity(config.repair_queue),
            recent: VecDeque::with_capacity(if config.rdata_holdoff.is_zero() {
                0
            } else {
                config.repair_queue
            }),
            ncfs: VecDeque::with_capacity(config.ncf_queue),
            txw: TxWindow::new(config.txw_sqns, config.txw_max_bytes),
            trail: first,
            next_tx: first,
            next_sqn: first,
            spm_sqn: Sqn(0),
            // The announcement SPMs go out at once (receivers learn the path NLA and the
            // session start before any data); the ambient schedule follows them.
            next_ambient: now,
            next_heartbeat: None,
            hb_idx: config.spm_heartbeat.len(),
            last_spmr_spm: None,
            announce: ANNOUNCE_SPMS,
            blocked_until: None,
            closed: false,
            fin: false,
            stats: SourceStats::default(),
            fec: config.fec.map(|f| {
                let code = Code::new(usize::from(f.k)).expect("validated");
                let groups = (config.txw_sqns >> code.shift()).max(1) as usize;
                SourceFec {
                    cfg: f,
                    code,
                    next_index: vec![0; groups],
                    proactive: VecDeque::with_capacity(PARITY_JOBS),
                    ondemand: VecDeque::with_capacity(PARITY_JOBS),
                    buf: vec![0; config.max_tpdu],
                }
            }),
            tsi,
            cfg: config,
        })
    }

    /// The session identifier.
    pub fn tsi(&self) -> Tsi {
        self.tsi
    }

    /// The configuration in use.
    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    /// Trailing edge of the transmit window (oldest repairable sequence).
    pub fn trail(&self) -> Sqn {
        self.trail
    }

    /// Leading edge: the last sequence transmitted as ODATA (`trail - 1` when none).
    pub fn lead(&self) -> Sqn {
        self.next_tx.prev()
    }

    /// TPDUs accepted by `send` and not yet transmitted.
    pub fn unsent(&self) -> usize {
        self.next_sqn.0.wrapping_sub(self.next_tx.0) as usize
    }

    /// Sequences queued for repair.
    pub fn repairs_pending(&self) -> usize {
        self.repairs.len()
    }

    /// True once `close` was called and the FIN SPMs have started.
    pub fn fin_started(&self) -> bool {
        self.fin
    }

    /// Sequences held (sent or not).
    fn occupied(&self) -> u32 {
        self.next_sqn.0.wrapping_sub(self.trail.0)
    }

    /// `sqn` has been transmitted and is still repairable.
    fn in_window(&self, sqn: Sqn) -> bool {
        sqn.ge(self.trail) && sqn.lt(self.next_tx)
    }

    /// Queues one APDU; returns the sequence number of its first TPDU.
    ///
    /// Large APDUs are fragmented with OPT_FRAGMENT. Returns `WouldBlock` when the TPDUs
    /// of this APDU would take the number of unsent TPDUs above `send_queue`, or would
    /// evict from the transmit window data sent less than `txw_min_secs` ago (then
    /// `poll_timeout` includes the instant it will fit).
    pub fn send(&mut self, now: Instant, apdu: &[u8]) -> Result<Sqn, SendError> {
        if self.closed {
            return Err(SendError::Closed);
        }
        if apdu.len() > self.cfg.max_apdu {
            return Err(SendError::TooLarge);
        }
        let n = self.cfg.tpdus_for(apdu.len());
        if self.unsent() + n > self.cfg.send_queue {
            self.blocked_until = None;
            return Err(SendError::WouldBlock);
        }
        // Make room. The trail advances (the advance scheme is the implementation's
        // choice) past as many of the oldest sequences as needed for both bounds:
        // `txw_sqns` sequences and `txw_max_bytes` arena bytes.
        let chunk = self.cfg.max_fragment_tsdu().max(1);
        let frag = n > 1;
        let mut end = self.txw.head();
        if frag {
            for part in apdu.chunks(chunk) {
                let len = TxWindow::record_len(part.len(), true);
                end = self.txw.place(end, len) + len;
            }
        } else {
            let len = TxWindow::record_len(apdu.len(), false);
            end = self.txw.place(end, len) + len;
        }
        if end - self.txw.head() > self.txw.capacity() {
            // Cannot happen with a validated config (txw_max_bytes holds two send queues
            // of max_tpdu); refuse rather than overwrite live data.
            return Err(SendError::TooLarge);
        }
        let need_sqns = (self.occupied() as usize + n).saturating_sub(self.cfg.txw_sqns as usize);
        let min_pos = end.saturating_sub(self.txw.capacity());
        let mut evict = 0usize;
        let mut s = self.trail;
        while s != self.next_sqn && (evict < need_sqns || self.txw.pos(s) < min_pos) {
            if s == self.next_tx {
                // Only unsent data is left to evict: wait for transmissions.
                self.blocked_until = None;
                return Err(SendError::WouldBlock);
            }
            // Transmission times increase along the window, so the first young sequence
            // met decides when the room frees up.
            let free_at = self.txw.sent_at(s) + self.cfg.txw_min_secs;
            if !self.cfg.txw_min_secs.is_zero() && free_at > now {
                self.blocked_until = Some(free_at);
                return Err(SendError::WouldBlock);
            }
            evict += 1;
            s = s.next();
        }
        self.blocked_until = None;
        self.trail = s;
        let first = self.next_sqn;
        //= https://www.rfc-editor.org/rfc/rfc3208#section-3.2
        //# Sources MUST number ODATA packets in unit increments in the order in which
        //# the corresponding application data is submitted for transmission.
        if !frag {
            let sqn = self.next_sqn;
            self.txw.push(sqn, apdu, None);
            self.next_sqn = sqn.next();
        } else {
            let apdu_len = apdu.len() as u32;
            for (i, part) in apdu.chunks(chunk).enumerate() {
                let sqn = self.next_sqn;
                //= https://www.rfc-editor.org/rfc/rfc3208#section-9.2
                // (paraphrase) OPT_FRAGMENT: first sequence number, offset and length of the APDU.
                let f = Fragment {
                    first_sqn: first,
                    offset: (i * chunk) as u32,
                    apdu_len,
                };
                self.txw.push(sqn, part, Some(f));
                self.next_sqn = sqn.next();
            }
        }
        Ok(first)
    }

    /// Ends the session: queued data is sent, then SPMs with OPT_FIN.
    pub fn close(&mut self, now: Instant) {
        if self.closed {
            return;
        }
        self.closed = true;
        if self.unsent() == 0 {
            self.start_fin(now);
        }
    }

    /// When the next SPM (ambient or heartbeat) is due.
    fn next_spm(&self) -> Instant {
        match self.next_heartbeat {
            Some(h) => h.min(self.next_ambient),
            None => self.next_ambient,
        }
    }

    fn start_fin(&mut self, now: Instant) {
        self.fin = true;
        // FIN SPMs follow the heartbeat schedule from now.
        self.hb_idx = 0;
        self.next_heartbeat = Some(now);
    }

    /// Handles one received packet (bytes from the PGM header on) from `src`.
    pub fn handle_packet(&mut self, now: Instant, src: Nla, bytes: &[u8]) -> Result<(), Error> {
        self.handle_packet_on(now, 0, src, bytes)
    }

    /// Like [`Source::handle_packet`], for a packet that came on `line` (A/B lines:
    /// repairs it asks for go back on that line).
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
                self.stats.packets_ignored += 1;
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
        let _ = src;
        let lines = LineSet::one(line);
        if lines.is_empty() {
            self.stats.packets_ignored += 1;
            return;
        }
        // Upstream packets carry the data-destination port as sport and the TSI's port
        // as dport; `tsi()` un-swaps them.
        if pkt.tsi() != self.tsi || pkt.is_downstream() || pkt.sport != self.cfg.dport {
            self.stats.packets_ignored += 1;
            return;
        }
        match pkt.body {
            Body::Nak(nak) => self.on_nak(now, &nak, &pkt.options, lines),
            Body::Spmr => self.on_spmr(now),
            _ => self.stats.packets_ignored += 1,
        }
    }

    fn on_spmr(&mut self, now: Instant) {
        self.stats.spmr_received += 1;
        // RFC 3208 5.1.4 / 6.2: an SPMR asks for an SPM. At most one answer per
        // `spmr_holdoff`, so a storm of SPMRs costs a few SPMs.
        let allowed = match self.last_spmr_spm {
            None => true,
            Some(t) => now >= t + self.cfg.spmr_holdoff,
        };
        if allowed {
            self.last_spmr_spm = Some(now);
            if self.next_spm() > now {
                self.next_heartbeat = Some(now);
            }
        }
    }

    /// Forgets RDATA older than the hold-off.
    fn expire_recent(&mut self, now: Instant) {
        while let Some(&(sqn, at)) = self.recent.front() {
            if at + self.cfg.rdata_holdoff > now {
                break;
            }
            self.recent.pop_front();
            if self.in_window(sqn) {
                self.txw.set_recently_repaired(sqn, false);
            }
        }
    }

    fn on_nak(&mut self, now: Instant, nak: &Nak, opts: &Options, lines: LineSet) {
        self.expire_recent(now);
        // RFC 3208 8.3: the NAK's source NLA is the source's unicast address and its
        // group NLA the session's group; a NAK naming anything else is not for us.
        if nak.source != self.cfg.path_nla || nak.group != self.cfg.group {
            self.stats.packets_ignored += 1;
            return;
        }
        if opts.parity {
            self.on_parity_nak(nak, opts, lines);
            return;
        }
        let mut ncf = PendingNcf {
            sqn: nak.sqn,
            list: NakList::default(),
            parity: false,
            lines,
        };
        let mut any = false;
        let list = opts.nak_list;
        for &sqn in core::iter::once(&nak.sqn).chain(list.as_slice()) {
            self.stats.naks_received += 1;
            // NAKs for data outside the transmit window cannot be repaired. An NCF would
            // promise a repair that never comes (and move receivers to WAIT_DATA), so
            // they get neither NCF nor RDATA; receivers learn the loss from the trail
            // advertised in SPM/ODATA/RDATA. (OpenPGM's source confirms every NAK but
            // queues retransmissions only for sequences in its window; we deliberately
            // do not confirm what we cannot repair. See docs/engine.md.)
            if !self.in_window(sqn) {
                self.stats.naks_outside_window += 1;
                continue;
            }
            if self.txw.recently_repaired(sqn) {
                // Its RDATA went out less than `rdata_holdoff` ago: this NAK crossed
                // it. Confirm (the NCF suppresses other NAKs), do not repeat it.
                self.stats.naks_held_off += 1;
            } else if !self.queue_repair(sqn, lines) {
                // Confirm only what an RDATA will answer: a sequence the full repair
                // queue refused gets no NCF (the receiver NAKs again after NAK_RPT_IVL).
                continue;
            }
            if any {
                // At most 62 list entries were received, so this cannot overflow.
                let _ = ncf.list.push(sqn);
            } else {
                ncf.sqn = sqn;
                any = true;
            }
        }
        if !any {
            return;
        }
        // RFC 3208 5.2: NCFs are multicast immediately in answer to NAKs, echoing the
        // NAK's sequence number(s) so that other receivers suppress their own NAKs.
        if self.ncfs.len() < self.cfg.ncf_queue {
            self.ncfs.push_back(ncf);
        } else {
            self.stats.ncfs_dropped += 1;
        }
    }

    /// A parity NAK: each sequence is `group | (count - 1)`, asking for `count` parity
    /// packets of that group (RFC 3208 11.3). Queued for on-demand parity (a group
    /// already queued keeps the larger count) and confirmed with a parity NCF.
    fn on_parity_nak(&mut self, nak: &Nak, opts: &Options, lines: LineSet) {
        let (trail, next_tx) = (self.trail, self.next_tx);
        let mut ncf = PendingNcf {
            sqn: nak.sqn,
            list: NakList::default(),
            parity: true,
            lines,
        };
        let mut any = false;
        for &sqn in core::iter::once(&nak.sqn).chain(opts.nak_list.as_slice()) {
            self.stats.parity_naks_received += 1;
            let Some(fec) = self.fec.as_mut().filter(|f| f.cfg.ondemand) else {
                self.stats.parity_naks_refused += 1;
                continue;
            };
            let k = fec.code.k() as u32;
            let tg = Sqn(sqn.0 & !(k - 1));
            let count = (sqn.0 & (k - 1)) as u16 + 1;
            let last = tg.add(k - 1);
            if !(tg.ge(trail) && last.lt(next_tx)) {
                self.stats.parity_naks_refused += 1;
                continue;
            }
            if let Some(j) = fec.ondemand.iter_mut().find(|j| j.tg == tg) {
                j.count = j.count.max(count);
                j.lines = j.lines.union(lines);
            } else if fec.ondemand.len() < PARITY_JOBS {
                fec.ondemand.push_back(ParityJob { tg, count, lines });
            } else {
                self.stats.parity_dropped += u64::from(count);
                continue;
            }
            if any {
                let _ = ncf.list.push(sqn);
            } else {
                ncf.sqn = sqn;
                any = true;
            }
        }
        if !any {
            return;
        }
        if self.ncfs.len() < self.cfg.ncf_queue {
            self.ncfs.push_back(ncf);
        } else {
            self.stats.ncfs_dropped += 1;
        }
    }

    /// The next parity packet of `ondemand` or proactive jobs, encoded into the FEC
    /// buffer, if its budget allows it now.
    fn next_parity(&mut self, now: Instant, ondemand: bool) -> Option<Next> {
        let fec = self.fec.as_mut()?;
        let k = fec.code.k() as u32;
        loop {
            let queue = if ondemand {
                &mut fec.ondemand
            } else {
                &mut fec.proactive
            };
            let job = *queue.front()?;
            let last = job.tg.add(k - 1);
            if !(job.tg.ge(self.trail) && last.lt(self.next_tx)) {
                queue.pop_front();
                self.stats.parity_dropped += u64::from(job.count);
                continue;
            }
            // The group's shape: longest TSDU, whether lengths differ, any fragment.
            let mut max = 0usize;
            let mut min = usize::MAX;
            let mut frag = false;
            for i in 0..k {
                let s = job.tg.add(i);
                let l = self.txw.tsdu(s).len();
                max = max.max(l);
                min = min.min(l);
                frag |= self.txw.is_fragment(s);
            }
            let var = min != max;
            let len = fec::parity_len(max, var);
            let tpdu = DATA_OVERHEAD + len + if frag { FRAGMENT_OPTIONS_LEN } else { 0 };
            if tpdu > self.cfg.max_tpdu || len > fec.buf.len() {
                queue.pop_front();
                self.stats.parity_dropped += u64::from(job.count);
                continue;
            }
            let bucket = if ondemand {
                &mut self.rdata_rate
            } else {
                &mut self.odata_rate
            };
            if !bucket.try_take(now, tpdu) {
                return None;
            }
            if job.count <= 1 {
                queue.pop_front();
            } else if let Some(j) = queue.front_mut() {
                j.count -= 1;
            }
            let indices = fec.code.parity_indices();
            let h = match fec.index_slot(job.tg) {
                Some(slot) => {
                    let h = *slot;
                    *slot = ((usize::from(h) + 1) % indices) as u8;
                    usize::from(h)
                }
                None => 0,
            };
            let out = &mut fec.buf[..len];
            out.fill(0);
            let mut fbytes = [0u8; fec::FRAG_BYTES];
            for i in 0..k {
                let s = job.tg.add(i);
                fec.code
                    .add_packet(out, h, i as usize, self.txw.tsdu(s), var);
                if let Some(f) = self.txw.fragment(s) {
                    let b = fec::frag_bytes(f.first_sqn.0, f.offset, f.apdu_len);
                    fec::addmul(&mut fbytes, fec.code.coef(h, i as usize), &b);
                }
            }
            let frag = frag.then(|| {
                let w = |i: usize| {
                    u32::from_be_bytes([fbytes[i], fbytes[i + 1], fbytes[i + 2], fbytes[i + 3]])
                };
                Fragment {
                    first_sqn: Sqn(w(0)),
                    offset: w(4),
                    apdu_len: w(8),
                }
            });
            self.stats.parity_sent += 1;
            self.stats.parity_bytes += len as u64;
            if ondemand {
                self.stats.parity_ondemand_sent += 1;
            }
            //= https://www.rfc-editor.org/rfc/rfc3208#section-11
            // (paraphrase) a parity packet's sequence number is its group's ORed with its index.
            return Some(Next::Parity {
                sqn: Sqn(job.tg.0 | h as u32),
                len,
                var,
                frag,
                lines: if ondemand { job.lines } else { LineSet::ALL },
            });
        }
    }

    /// Queues `sqn` (in the window) for RDATA once per NAK round; false when the repair
    /// queue is full (no RDATA will answer this NAK).
    fn queue_repair(&mut self, sqn: Sqn, lines: LineSet) -> bool {
        if self.txw.repair_queued(sqn) {
            // An RDATA for it is already waiting: further NAKs add nothing (but their
            // line, which the RDATA goes out on as well).
            self.txw.add_repair_lines(sqn, lines);
            self.stats.naks_coalesced += 1;
            return true;
        }
        if self.repairs.len() >= self.cfg.repair_queue {
            self.stats.repairs_dropped += 1;
            return false;
        }
        self.txw.set_repair_queued(sqn, true);
        self.txw.add_repair_lines(sqn, lines);
        self.repairs.push_back(sqn);
        true
    }

    /// Processes expired timers.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.expire_trail(now);
        if self.blocked_until.is_some_and(|b| b <= now) {
            self.blocked_until = None;
        }
    }

    /// TXW_SECS: transmitted data older than `txw_secs` leaves the window.
    fn expire_trail(&mut self, now: Instant) {
        while self.trail != self.next_tx {
            if self.txw.sent_at(self.trail) + self.cfg.txw_secs > now {
                break;
            }
            self.trail = self.trail.next();
        }
    }

    fn tpdu_len(&self, sqn: Sqn) -> usize {
        DATA_OVERHEAD
            + self.txw.tsdu(sqn).len()
            + if self.txw.is_fragment(sqn) {
                FRAGMENT_OPTIONS_LEN
            } else {
                0
            }
    }

    /// Decides the next packet and updates all state for having sent it.
    fn next_packet(&mut self, now: Instant) -> Option<Next> {
        self.expire_trail(now);
        // NCFs first, against their own budget: a NAK flood costs at most
        // `ncf_max_rte` of NCFs and never holds back SPMs, repairs or new data.
        if let Some(&ncf) = self.ncfs.front() {
            let len = self.ncf_len(ncf);
            if self.ncf_rate.try_take(now, len) {
                self.ncfs.pop_front();
                self.stats.ncf_sent += 1;
                self.stats.ncf_bytes += len as u64;
                return Some(Next::Ncf(ncf));
            }
        }
        if self.announce > 0 || self.next_spm() <= now {
            let syn = self.announce > 0;
            self.announce = self.announce.saturating_sub(1);
            let sqn = self.spm_sqn;
            self.spm_sqn = sqn.next();
            self.stats.spm_sent += 1;
            self.next_ambient = now + self.cfg.spm_ambient_ivl;
            self.next_heartbeat = match self.cfg.spm_heartbeat.get(self.hb_idx) {
                Some(&d) => {
                    self.hb_idx += 1;
                    Some(now + d)
                }
                None => None,
            };
            return Some(Next::Spm {
                sqn,
                fin: self.fin,
                syn,
            });
        }
        // Repairs first, against their own budget.
        while let Some(&sqn) = self.repairs.front() {
            if !self.in_window(sqn) {
                self.repairs.pop_front();
                self.stats.repairs_expired += 1;
                continue;
            }
            let len = self.tpdu_len(sqn);
            if !self.rdata_rate.try_take(now, len) {
                break;
            }
            self.repairs.pop_front();
            let lines = self.txw.repair_lines(sqn);
            self.txw.set_repair_queued(sqn, false);
            if !self.cfg.rdata_holdoff.is_zero() {
                self.expire_recent(now);
                if self.recent.len() >= self.cfg.repair_queue
                    && let Some((old, _)) = self.recent.pop_front()
                    && self.in_window(old)
                {
                    self.txw.set_recently_repaired(old, false);
                }
                self.txw.set_recently_repaired(sqn, true);
                self.recent.push_back((sqn, now));
            }
            let bytes = self.txw.tsdu(sqn).len() as u64;
            self.stats.rdata_sent += 1;
            self.stats.rdata_bytes += bytes;
            self.stats.rdata_tpdu_bytes += len as u64;
            return Some(Next::Rdata(sqn, lines));
        }
        if let Some(p) = self.next_parity(now, true) {
            return Some(p);
        }
        // Proactive parity goes right after its group, ahead of new data (same budget).
        if let Some(p) = self.next_parity(now, false) {
            return Some(p);
        }
        if self.fec.as_ref().is_some_and(|f| !f.proactive.is_empty()) {
            return None;
        }
        if self.next_tx != self.next_sqn {
            let sqn = self.next_tx;
            let len = self.tpdu_len(sqn);
            if !self.odata_rate.try_take(now, len) {
                return None;
            }
            self.next_tx = sqn.next();
            self.txw.set_sent_at(sqn, now);
            let bytes = self.txw.tsdu(sqn).len() as u64;
            self.stats.odata_sent += 1;
            self.stats.odata_bytes += bytes;
            self.odata_sent_fec(sqn);
            // Heartbeat SPMs restart after every data packet (OpenPGM's schedule).
            self.hb_idx = 1;
            self.next_heartbeat = Some(now + self.cfg.spm_heartbeat[0]);
            if self.closed && self.next_tx == self.next_sqn {
                self.start_fin(now);
            }
            return Some(Next::Odata(sqn));
        }
        None
    }

    /// FEC bookkeeping for ODATA `sqn` just sent: a group's first packet resets its
    /// parity indices, its last queues the proactive parity.
    fn odata_sent_fec(&mut self, sqn: Sqn) {
        let Some(fec) = self.fec.as_mut() else {
            return;
        };
        let k = fec.code.k() as u32;
        let tg = Sqn(sqn.0 & !(k - 1));
        if sqn == tg
            && let Some(slot) = fec.index_slot(tg)
        {
            *slot = 0;
        }
        if sqn.0 & (k - 1) == k - 1 && fec.cfg.proactive > 0 {
            if fec.proactive.len() < PARITY_JOBS {
                fec.proactive.push_back(ParityJob {
                    tg,
                    count: u16::from(fec.cfg.proactive),
                    lines: LineSet::ALL,
                });
            } else {
                self.stats.parity_dropped += u64::from(fec.cfg.proactive);
            }
        }
    }

    /// Encoded length of an NCF (what it costs against `ncf_max_rte`).
    fn ncf_len(&self, ncf: PendingNcf) -> usize {
        self.repr_of(Next::Ncf(ncf)).buffer_len()
    }

    fn data_repr(&self, sqn: Sqn, rdata: bool) -> PacketRepr<'_> {
        let body = Data {
            sqn,
            trail: self.trail,
            payload: self.txw.tsdu(sqn),
        };
        PacketRepr {
            sport: self.tsi.sport,
            dport: self.cfg.dport,
            gsi: self.tsi.gsi,
            body: if rdata {
                Body::Rdata(body)
            } else {
                Body::Odata(body)
            },
            options: Options {
                fragment: self.txw.fragment(sqn),
                ..Options::default()
            },
        }
    }

    fn repr_of(&self, next: Next) -> PacketRepr<'_> {
        let mut options = Options::default();
        let body = match next {
            Next::Ncf(ncf) => {
                options.nak_list = ncf.list;
                options.parity = ncf.parity;
                Body::Ncf(Nak {
                    sqn: ncf.sqn,
                    source: self.cfg.path_nla,
                    group: self.cfg.group,
                })
            }
            Next::Spm { sqn, fin, syn } => {
                options.syn = syn;
                //= https://www.rfc-editor.org/rfc/rfc3208#section-9
                // (paraphrase) OPT_FIN: the source is ending the session.
                options.fin = fin;
                options.parity_prm = self.fec.as_ref().map(|f| ParityPrm {
                    proactive: f.cfg.proactive > 0,
                    on_demand: f.cfg.ondemand,
                    tgs: u32::from(f.cfg.k),
                });
                Body::Spm(Spm {
                    sqn,
                    trail: self.trail,
                    lead: self.lead(),
                    path: self.cfg.path_nla,
                })
            }
            Next::Rdata(sqn, _) => return self.data_repr(sqn, true),
            Next::Parity {
                sqn,
                len,
                var,
                frag,
                ..
            } => {
                options.parity = true;
                options.var_pktlen = var;
                options.fragment = frag;
                Body::Rdata(Data {
                    sqn,
                    trail: self.trail,
                    payload: self
                        .fec
                        .as_ref()
                        .and_then(|f| f.buf.get(..len))
                        .unwrap_or(&[]),
                })
            }
            Next::Odata(sqn) => return self.data_repr(sqn, false),
        };
        PacketRepr {
            sport: self.tsi.sport,
            dport: self.cfg.dport,
            gsi: self.tsi.gsi,
            body,
            options,
        }
    }

    /// Like [`Source::poll_transmit`], but hands out the packet as a representation
    /// (borrowing the window's buffer) instead of encoding it. Every packet is multicast
    /// to the group.
    pub fn poll_repr(&mut self, now: Instant) -> Option<PacketRepr<'_>> {
        let next = self.next_packet(now)?;
        Some(self.repr_of(next))
    }

    /// Writes the next packet to send into `buf`, if any is due now.
    ///
    /// `buf` should hold `max_tpdu` bytes; a packet that does not fit is counted in
    /// `emit_errors` and lost (receivers repair it like any other loss).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut [u8]) -> Option<Transmit> {
        loop {
            let next = self.next_packet(now)?;
            let lines = next.lines();
            let repr = self.repr_of(next);
            let kind = repr.packet_type();
            match repr.emit(buf) {
                Ok(len) => {
                    return Some(Transmit {
                        len,
                        dest: Destination::Group,
                        kind,
                        lines,
                    });
                }
                Err(_) => self.stats.emit_errors += 1,
            }
        }
    }

    /// When `handle_timeout` (or `poll_transmit`, for rate-limited data) next needs calling.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.announce > 0 {
            return Some(Instant::ZERO);
        }
        let mut t = self.next_spm();
        if let Some(&ncf) = self.ncfs.front() {
            t = t.min(self.ncf_rate.ready_at(self.ncf_len(ncf)));
        }
        if self.trail != self.next_tx {
            t = t.min(self.txw.sent_at(self.trail) + self.cfg.txw_secs);
        }
        if let Some(&sqn) = self.repairs.front() {
            t = t.min(self.rdata_rate.ready_at(self.tpdu_len(sqn)));
        }
        if let Some(f) = &self.fec {
            // The parity's length is known once encoded; its TPDU is at most max_tpdu.
            if !f.ondemand.is_empty() {
                t = t.min(self.rdata_rate.ready_at(self.cfg.max_tpdu));
            }
            if !f.proactive.is_empty() {
                t = t.min(self.odata_rate.ready_at(self.cfg.max_tpdu));
            }
        }
        if self.next_tx != self.next_sqn {
            t = t.min(self.odata_rate.ready_at(self.tpdu_len(self.next_tx)));
        }
        if let Some(b) = self.blocked_until {
            t = t.min(b);
        }
        Some(t)
    }

    /// Counters.
    pub fn stats(&self) -> &SourceStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests;
