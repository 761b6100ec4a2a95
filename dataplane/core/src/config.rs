//! Every timer, window and queue bound, with defaults that work out of the box.
//!
//! Where each default comes from (RFC 3208 section or OpenPGM value) is documented on the
//! field and in `docs/defaults.md`. `Source::new` and `Receiver::new` call `validate` and
//! refuse nonsensical values with a typed [`ConfigError`].

use core::time::Duration;

use crate::wire::{Nla, Tsi};

/// Bytes of PGM header plus ODATA/RDATA body (sqn, trail) before the options and TSDU.
pub const DATA_OVERHEAD: usize = crate::wire::HEADER_LEN + 8;
/// Bytes of OPT_LENGTH plus OPT_FRAGMENT carried by every fragment of a large APDU.
pub const FRAGMENT_OPTIONS_LEN: usize = 4 + 16;
/// Smallest `max_tpdu` accepted: room for the headers, fragment options and 1 byte.
pub const MIN_TPDU: usize = DATA_OVERHEAD + FRAGMENT_OPTIONS_LEN + 1;
/// Largest `max_tpdu` accepted (PGM lengths are 16-bit).
pub const MAX_TPDU: usize = 65_535;
/// Largest window accepted, in sequence numbers (16 Mi: far below the 2^31 that
/// serial-number arithmetic allows, and a bound on the slot arrays allocated up front).
pub const MAX_WINDOW_SQNS: u32 = 1 << 24;
/// Largest transmit-window byte bound accepted (2 GiB): the window's index keeps 32 bits
/// of each record's position, which identifies it only within 2^31 bytes of the head.
pub const MAX_WINDOW_BYTES: usize = 1 << 31;
/// Largest queue or table bound accepted (queues are allocated up front).
pub const MAX_QUEUE: usize = 1 << 24;

/// Default repair budget (`rdata_max_rte`): 12.5 MB/s (100 Mbit/s) of RDATA, however
/// many NAKs arrive.
pub const DEFAULT_RDATA_MAX_RTE: u64 = 12_500_000;

/// Default NCF budget (`ncf_max_rte`): 1.25 MB/s (10 Mbit/s, about 34 000 NCFs/s
/// without NAK lists), however many NAKs arrive.
pub const DEFAULT_NCF_MAX_RTE: u64 = 1_250_000;

/// Why a configuration was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_tpdu` outside `MIN_TPDU..=MAX_TPDU`.
    TpduSize(usize),
    /// `max_apdu` is zero or larger than the window / send queue can hold.
    ApduSize(usize),
    /// A window size is zero, not a power of two, or above [`MAX_WINDOW_SQNS`].
    WindowSqns(u32),
    /// A window byte bound is too small (the transmit window must hold two send queues
    /// of `max_tpdu`-byte TPDUs; the receive window four `max_tpdu` buffers) or above
    /// [`MAX_WINDOW_BYTES`].
    WindowBytes(usize),
    /// A timer interval that must be positive is zero (field name given).
    ZeroInterval(&'static str),
    /// A queue or table bound is zero (field name given).
    ZeroBound(&'static str),
    /// A queue or table bound is above [`MAX_QUEUE`] (field name given).
    BoundTooLarge(&'static str),
    /// `send_queue` is larger than the transmit window (unsent data would be evicted).
    SendQueue(usize),
    /// `txw_min_secs` is longer than `txw_secs`.
    MinSecs,
    /// `lines` is not in `1..=MAX_LINES`.
    Lines(u8),
    /// The FEC settings are invalid (what is wrong given).
    Fec(&'static str),
}

impl core::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ConfigError::TpduSize(n) => {
                write!(f, "max_tpdu {n} outside {MIN_TPDU}..={MAX_TPDU}")
            }
            ConfigError::ApduSize(n) => write!(f, "max_apdu {n} is zero or too large"),
            ConfigError::WindowSqns(n) => {
                write!(
                    f,
                    "window of {n} sqns: must be a power of two in 1..={MAX_WINDOW_SQNS}"
                )
            }
            ConfigError::WindowBytes(n) => {
                write!(
                    f,
                    "window byte bound {n} too small for the queue or too large"
                )
            }
            ConfigError::ZeroInterval(s) => write!(f, "{s} must be positive"),
            ConfigError::ZeroBound(s) => write!(f, "{s} must be positive"),
            ConfigError::BoundTooLarge(s) => write!(f, "{s} above {MAX_QUEUE}"),
            ConfigError::SendQueue(n) => write!(f, "send_queue {n} exceeds the transmit window"),
            ConfigError::MinSecs => write!(f, "txw_min_secs exceeds txw_secs"),
            ConfigError::Fec(s) => write!(f, "fec: {s}"),
            ConfigError::Lines(n) => {
                write!(
                    f,
                    "{n} lines: a session has 1 to {} lines",
                    crate::MAX_LINES
                )
            }
        }
    }
}

impl core::error::Error for ConfigError {}

/// Forward error correction of a source (RFC 3208 section 11): Reed–Solomon parity over
/// transmission groups of `k` packets, sent after each group (`proactive`) and in answer
/// to parity NAKs (`ondemand`). Advertised in every SPM (OPT_PARITY_PRM); the code is
/// OpenPGM's (see [`crate::fec`]), with its block size of 255 (255 - k parity indices).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FecConfig {
    /// Transmission group size k: a power of two in 2..=128 (OpenPGM's and Windows PGM's
    /// range). Small groups repair sooner; a loss waits at most for the rest of its group.
    pub k: u8,
    /// Parity packets sent after every group of `k` ODATA (0..=min(k, 255-k)), within the
    /// ODATA rate budget: each repairs any one loss in its group with no round trip.
    pub proactive: u8,
    /// Answer parity NAKs (a count of parity packets for a group) with fresh parity,
    /// within the RDATA budget: one parity packet repairs different losses at
    /// different receivers.
    pub ondemand: bool,
}

impl FecConfig {
    /// Checks the fields.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let k = usize::from(self.k);
        if crate::fec::Code::new(k).is_err() {
            return Err(ConfigError::Fec(
                "group size k must be a power of two in 2..=128",
            ));
        }
        if usize::from(self.proactive) > (crate::fec::MAX_N - k).min(k) {
            return Err(ConfigError::Fec(
                "more proactive parity packets than a group has indices (min(k, 255 - k))",
            ));
        }
        if self.proactive == 0 && !self.ondemand {
            return Err(ConfigError::Fec(
                "neither proactive nor on-demand parity: nothing to send",
            ));
        }
        Ok(())
    }

    /// The parity TSDU may be 2 bytes longer than the group's longest TSDU (the length
    /// trailer of OPT_VAR_PKTLEN): a source with FEC keeps its TSDUs that much shorter.
    pub const RESERVE: usize = 2;
}

/// Configuration of a sending session.
#[derive(Clone, Debug)]
pub struct SourceConfig {
    /// Data-destination port (header dport of downstream packets).
    pub dport: u16,
    /// Multicast group NLA placed in NCFs and matched in NAKs.
    pub group: Nla,
    /// The source's unicast NLA: SPM path NLA, where receivers send NAKs.
    pub path_nla: Nla,
    /// Largest PGM packet (header + options + TSDU) the transport can carry.
    pub max_tpdu: usize,
    /// Largest APDU accepted by `send` (fragmented into TPDUs).
    pub max_apdu: usize,
    /// TXW_SQNS: transmit window size in sequence numbers (a power of two). Costs 16
    /// bytes of index per sequence, allocated up front.
    pub txw_sqns: u32,
    /// Byte bound on the transmit window: TSDUs are packed back to back in a ring of this
    /// many bytes (fragments carry 12 more), allocated up front. Whichever of `txw_sqns`
    /// and this bound is reached first advances the trail. At least
    /// `2 × send_queue × max_tpdu`, at most [`MAX_WINDOW_BYTES`].
    pub txw_max_bytes: usize,
    /// TXW_SECS: how long a packet stays available for repair.
    pub txw_secs: Duration,
    /// Least time a transmitted packet stays available for repair: when the window is
    /// full of packets younger than this, `send` returns `WouldBlock` instead of
    /// evicting them (flow control: a burst cannot push data out of the window before
    /// receivers had a chance to NAK it). Zero disables it.
    pub txw_min_secs: Duration,
    /// TXW_MAX_RTE: bytes per second of original data (0 = unlimited).
    pub txw_max_rte: u64,
    /// Separate budget for repairs (RDATA), bytes per second of TPDU (PGM header on),
    /// 0 = unlimited. Bounds what a NAK flood can make the source send.
    pub rdata_max_rte: u64,
    /// Budget for NCFs, bytes per second of PGM packet, 0 = unlimited. NCFs beyond it
    /// wait in the NCF queue (`ncf_queue`; overflow counted in `ncfs_dropped`).
    pub ncf_max_rte: u64,
    /// Ambient SPM interval.
    pub spm_ambient_ivl: Duration,
    /// Heartbeat SPM intervals after data, in order; once they are used up, SPMs continue
    /// at the ambient interval.
    pub spm_heartbeat: [Duration; 8],
    /// Least time between two SPMs sent in answer to SPMRs (an SPMR storm yields few SPMs).
    pub spmr_holdoff: Duration,
    /// Most TPDUs (not APDUs) queued by `send` but not yet transmitted; `send` returns
    /// `WouldBlock` beyond.
    pub send_queue: usize,
    /// Most distinct sequence numbers queued for repair at once.
    pub repair_queue: usize,
    /// After an RDATA, further NAKs for the same sequence within this long are confirmed
    /// (NCF) but not repaired again: they crossed the repair on its way (a receiver that
    /// lost the RDATA NAKs again only after its NAK_RDATA_IVL, at least 1 ms by
    /// default, plus a round trip). About one round trip of the receivers; zero: one
    /// RDATA per NAK round, as before.
    pub rdata_holdoff: Duration,
    /// Most NCFs waiting to be sent (NAK floods beyond are counted, not answered).
    pub ncf_queue: usize,
    /// Forward error correction (none by default, as OpenPGM).
    pub fec: Option<FecConfig>,
}

/// Most SPMRs a receiver sends to measure the round trip to a new source
/// ([`ReceiverConfig::rtt_probe`]).
pub const RTT_PROBES: u8 = 3;

/// Configuration of a receiving session.
#[derive(Clone, Debug)]
pub struct ReceiverConfig {
    /// Data-destination port accepted.
    pub dport: u16,
    /// Multicast group NLA placed in NAKs.
    pub group: Nla,
    /// Largest PGM packet accepted.
    pub max_tpdu: usize,
    /// Largest reassembled APDU accepted.
    pub max_apdu: usize,
    /// RXW_SQNS: receive window size in sequence numbers, per peer (a power of two).
    pub rxw_sqns: u32,
    /// Byte bound on buffered TSDUs, all peers together. Buffers come in size classes
    /// (64, 128, ... bytes up to the largest TSDU); each is charged its class plus 32
    /// bytes of bookkeeping.
    pub rxw_max_bytes: usize,
    /// NAK_BO_IVL ceiling: NAKs are sent after a random back-off in `[0, T)`, where `T`
    /// is `nak_bo_rtt_mult × SRTT` within `[nak_bo_ivl_min, nak_bo_ivl]` once the round
    /// trip to the source is measured, and `nak_bo_ivl` before (or with `nak_adaptive`
    /// off). The back-off is drawn from a truncated exponential distribution sized by
    /// `nak_group_size` (see `docs/engine.md`).
    pub nak_bo_ivl: Duration,
    /// NAK_RPT_IVL ceiling: wait for an NCF after sending a NAK; once the RTT is
    /// measured, RTO (`SRTT + 4 RTTVAR`, RFC 6298) within `[nak_rpt_ivl_min, nak_rpt_ivl]`.
    pub nak_rpt_ivl: Duration,
    /// NAK_RDATA_IVL ceiling: wait for RDATA after an NCF; once the RTT is measured, RTO
    /// within `[nak_rdata_ivl_min, nak_rdata_ivl]`.
    pub nak_rdata_ivl: Duration,
    /// Derive the NAK timers from the measured round trip (true), or use the constants
    /// `nak_bo_ivl`, `nak_rpt_ivl`, `nak_rdata_ivl` with a uniform back-off (false: the
    /// behaviour before RTT estimation).
    pub nak_adaptive: bool,
    /// Back-off span in round trips: `T = nak_bo_rtt_mult × SRTT`.
    pub nak_bo_rtt_mult: u32,
    /// Floor of the adaptive back-off span.
    pub nak_bo_ivl_min: Duration,
    /// Floor of the back-off span while the round trip is known only from the probe
    /// (`rtt_probe`: receivers that joined together probe together and all but the
    /// first time a short round trip), until a NAK's answer is timed.
    pub nak_bo_ivl_probe: Duration,
    /// Floor of the adaptive NAK_RPT_IVL.
    pub nak_rpt_ivl_min: Duration,
    /// Floor of the adaptive NAK_RDATA_IVL.
    pub nak_rdata_ivl_min: Duration,
    /// Estimate of the number of receivers (upper bound rather than exact): sizes the
    /// exponential back-off so that about `nak_group_size^(RTT/T)` receivers NAK one
    /// loss they all share. 1: uniform back-off in `[0, T)`.
    pub nak_group_size: u32,
    /// Estimate, per source, how many receivers this receiver's losses concern (from
    /// the repairs it hears of sequences it already had, and the losses others NAKed
    /// first) and size the back-off by it, within `[4, nak_group_size]`; smaller
    /// groups also get a shorter span (`nak_bo_rtt_mult × ln n / ln 50` round trips
    /// below 50). False: always `nak_group_size` and the full span.
    pub nak_group_estimate: bool,
    /// Round trip assumed before the first sample (the timers then start at back-off
    /// span `nak_bo_rtt_mult × rtt_initial`, RTO `3 × rtt_initial`, as if it had been
    /// measured once); zero: the ceilings until the first sample.
    pub rtt_initial: Duration,
    /// Measure the round trip to a new source before its first loss: as soon as the
    /// peer appears, and again a random time in `[spmr_expiry, 2 spmr_expiry)` later (at most
    /// [`RTT_PROBES`] times in all) while no sample has been taken, the receiver sends
    /// an SPMR and times the SPM that answers it (only with `nak_adaptive`).
    pub rtt_probe: bool,
    /// An SPM later than this after the SPMR is not taken as a sample (the source
    /// answers one SPMR per `spmr_holdoff` at most: a later SPM may answer nothing).
    pub rtt_probe_max: Duration,
    /// Round-trip samples are clamped to `[rtt_min, rtt_max]`.
    pub rtt_min: Duration,
    /// See `rtt_min`.
    pub rtt_max: Duration,
    /// NAK_NCF_RETRIES, counted only while the source is silent: a sequence is given up
    /// (`retries_exhausted`) after this many repeated NAKs that each drew no NCF and no
    /// RDATA at all from the source (for any sequence, to any receiver), i.e. when the
    /// source cannot be reached for repairs. While the source answers, a missing
    /// sequence is NAKed again (repeat intervals doubling up to 8 × NAK_RPT_IVL /
    /// NAK_RDATA_IVL) until it arrives, the source's trail passes it, or the source is
    /// gone. There is no NAK_DATA_RETRIES: an NCF proves the source still holds the
    /// data, so a count of unanswered NCFs is never a reason to give up.
    pub nak_ncf_retries: u32,
    /// SPMR back-off: wait this long for an SPM before asking for one.
    pub spmr_expiry: Duration,
    /// Peer expiry: a peer silent this long is removed.
    pub peer_expiry: Duration,
    /// Most peers (TSIs) tracked at once. When the table is full, a new TSI waits in
    /// probation (below) and is admitted only by evicting the least active peer, and
    /// only if it is more active than that peer.
    pub max_peers: usize,
    /// Most TSIs waiting in probation at once (a few dozen bytes each: no window, no
    /// buffers, no NAKs). When full, the least active and longest silent is dropped.
    pub max_probation: usize,
    /// Packets (SPM, ODATA, RDATA) a TSI in probation must send, within about a second,
    /// before it may displace a tracked peer.
    pub probation_packets: u32,
    /// A TSI in probation silent this long is forgotten (`probation_expired`).
    pub probation_expiry: Duration,
    /// Accept packets only from these source addresses (empty: from any). Others are
    /// dropped before any peer state exists and counted in `filtered`.
    pub sources: Vec<Nla>,
    /// Accept only these sessions (empty: any). Others are dropped and counted in
    /// `filtered`.
    pub tsis: Vec<Tsi>,
    /// Most control events (NewPeer, PeerGone, SessionReset) queued for the application.
    /// Data, Unrecoverable and SessionEnd events are produced from the receive window
    /// itself and are bounded by `rxw_sqns` and `rxw_max_bytes`.
    pub event_queue: usize,
    /// Most NAK/SPMR packets waiting to be sent.
    pub tx_queue: usize,
    /// Lines (networks) the session receives on: 1 to [`crate::MAX_LINES`]. With more
    /// than one, each sequence is taken from whichever line brings it first, and a
    /// sequence missing on one line is NAKed only once every live line has passed it
    /// without it (or after `line_wait`).
    pub lines: u8,
    /// A line that brought this receiver nothing for this long while another line
    /// did is down (`Event::LineDown`): no sequence waits for it any more. It is up again
    /// with its next packet.
    pub line_timeout: Duration,
    /// Longest a sequence missing on one line waits for a live line that has not
    /// passed it yet before it is NAKed anyway (a line lagging by more than this is
    /// not worth waiting for).
    pub line_wait: Duration,
    /// Use a source's parity (FEC) when its SPMs offer it (OPT_PARITY_PRM): rebuild lost
    /// packets from proactive parity, and NAK for parity instead of selectively when it
    /// offers on-demand parity. Costs, per such source, [`FEC_GROUPS`] groups of
    /// `k + 16` buffers of `max_tpdu` bytes and a copy of every data packet.
    pub fec: bool,
}

/// Transmission groups a receiver collects at once per source with FEC.
pub const FEC_GROUPS: usize = 4;

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            dport: crate::wire::DEFAULT_DATA_PORT,
            group: Nla::default(),
            path_nla: Nla::default(),
            max_tpdu: 1500 - 20,
            max_apdu: 1 << 20,
            txw_sqns: 1 << 21,
            txw_max_bytes: 128 << 20,
            txw_secs: Duration::from_secs(30),
            txw_min_secs: Duration::from_secs(1),
            txw_max_rte: 0,
            rdata_max_rte: DEFAULT_RDATA_MAX_RTE,
            ncf_max_rte: DEFAULT_NCF_MAX_RTE,
            spm_ambient_ivl: Duration::from_secs(30),
            spm_heartbeat: [
                Duration::from_millis(100),
                Duration::from_millis(100),
                Duration::from_millis(100),
                Duration::from_millis(100),
                Duration::from_millis(1300),
                Duration::from_secs(7),
                Duration::from_secs(16),
                Duration::from_secs(25),
            ],
            spmr_holdoff: Duration::from_millis(100),
            send_queue: 1024,
            repair_queue: 1 << 16,
            rdata_holdoff: Duration::from_millis(1),
            ncf_queue: 256,
            fec: None,
        }
    }
}

impl Default for ReceiverConfig {
    fn default() -> Self {
        ReceiverConfig {
            dport: crate::wire::DEFAULT_DATA_PORT,
            group: Nla::default(),
            max_tpdu: 1500 - 20,
            max_apdu: 1 << 20,
            rxw_sqns: 1 << 21,
            rxw_max_bytes: 128 << 20,
            nak_bo_ivl: Duration::from_millis(50),
            nak_rpt_ivl: Duration::from_millis(200),
            nak_rdata_ivl: Duration::from_millis(200),
            nak_adaptive: true,
            nak_bo_rtt_mult: 4,
            nak_bo_ivl_probe: Duration::from_millis(20),
            nak_bo_ivl_min: Duration::from_micros(100),
            nak_rpt_ivl_min: Duration::from_millis(1),
            nak_rdata_ivl_min: Duration::from_millis(1),
            nak_group_size: 1000,
            nak_group_estimate: true,
            rtt_initial: Duration::ZERO,
            rtt_probe: true,
            rtt_probe_max: Duration::from_millis(10),
            rtt_min: Duration::from_micros(10),
            rtt_max: Duration::from_secs(1),
            nak_ncf_retries: 10,
            spmr_expiry: Duration::from_millis(250),
            peer_expiry: Duration::from_secs(300),
            max_peers: 64,
            max_probation: 64,
            probation_packets: 3,
            probation_expiry: Duration::from_secs(2),
            sources: Vec::new(),
            tsis: Vec::new(),
            event_queue: 4096,
            tx_queue: 1024,
            lines: 1,
            line_timeout: Duration::from_millis(100),
            line_wait: Duration::from_millis(10),
            fec: true,
        }
    }
}

fn check_sqns(sqns: u32) -> Result<(), ConfigError> {
    if sqns == 0 || !sqns.is_power_of_two() || sqns > MAX_WINDOW_SQNS {
        return Err(ConfigError::WindowSqns(sqns));
    }
    Ok(())
}

fn positive(d: Duration, name: &'static str) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(ConfigError::ZeroInterval(name))
    } else {
        Ok(())
    }
}

fn nonzero(n: usize, name: &'static str) -> Result<(), ConfigError> {
    if n == 0 {
        Err(ConfigError::ZeroBound(name))
    } else if n > MAX_QUEUE {
        Err(ConfigError::BoundTooLarge(name))
    } else {
        Ok(())
    }
}

impl SourceConfig {
    /// Largest TSDU of a fragment (TPDU minus headers, OPT_LENGTH and OPT_FRAGMENT).
    pub fn max_fragment_tsdu(&self) -> usize {
        self.max_tpdu
            .saturating_sub(DATA_OVERHEAD + FRAGMENT_OPTIONS_LEN + self.fec_reserve())
    }

    /// Largest TSDU of an unfragmented APDU (TPDU minus headers; with FEC, minus the
    /// parity's length trailer, [`FecConfig::RESERVE`]).
    pub fn max_single_tsdu(&self) -> usize {
        self.max_tpdu
            .saturating_sub(DATA_OVERHEAD + self.fec_reserve())
    }

    fn fec_reserve(&self) -> usize {
        if self.fec.is_some() {
            FecConfig::RESERVE
        } else {
            0
        }
    }

    /// TPDUs needed for an APDU of `len` bytes.
    pub fn tpdus_for(&self, len: usize) -> usize {
        if len <= self.max_single_tsdu() {
            1
        } else {
            len.div_ceil(self.max_fragment_tsdu().max(1))
        }
    }

    /// Checks every field; `Source::new` refuses what this refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_TPDU..=MAX_TPDU).contains(&self.max_tpdu) {
            return Err(ConfigError::TpduSize(self.max_tpdu));
        }
        check_sqns(self.txw_sqns)?;
        positive(self.txw_secs, "txw_secs")?;
        if self.txw_min_secs > self.txw_secs {
            return Err(ConfigError::MinSecs);
        }
        positive(self.spm_ambient_ivl, "spm_ambient_ivl")?;
        for d in self.spm_heartbeat {
            positive(d, "spm_heartbeat")?;
        }
        nonzero(self.send_queue, "send_queue")?;
        nonzero(self.repair_queue, "repair_queue")?;
        nonzero(self.ncf_queue, "ncf_queue")?;
        if let Some(f) = &self.fec {
            f.validate()?;
            if u32::from(f.k) > self.txw_sqns {
                return Err(ConfigError::Fec("group size k larger than txw_sqns"));
            }
        }
        if self.send_queue > self.txw_sqns as usize {
            return Err(ConfigError::SendQueue(self.send_queue));
        }
        // Two send queues of full TPDUs fit the arena: whatever `send` admits (one
        // queue, plus the padding of one wrap) fits without evicting unsent data.
        let least = self
            .send_queue
            .saturating_mul(self.max_tpdu)
            .saturating_mul(2);
        if self.txw_max_bytes < least || self.txw_max_bytes > MAX_WINDOW_BYTES {
            return Err(ConfigError::WindowBytes(self.txw_max_bytes));
        }
        if self.max_apdu == 0
            || self.max_apdu > u32::MAX as usize
            || self.tpdus_for(self.max_apdu) > self.send_queue
        {
            return Err(ConfigError::ApduSize(self.max_apdu));
        }
        Ok(())
    }
}

impl ReceiverConfig {
    /// Checks every field; `Receiver::new` refuses what this refuses.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_TPDU..=MAX_TPDU).contains(&self.max_tpdu) {
            return Err(ConfigError::TpduSize(self.max_tpdu));
        }
        if self.rxw_sqns == 0 || !self.rxw_sqns.is_power_of_two() || self.rxw_sqns > MAX_WINDOW_SQNS
        {
            return Err(ConfigError::WindowSqns(self.rxw_sqns));
        }
        if self.rxw_max_bytes < self.max_tpdu.saturating_mul(4) {
            return Err(ConfigError::WindowBytes(self.rxw_max_bytes));
        }
        if self.max_apdu == 0 || self.max_apdu > u32::MAX as usize {
            return Err(ConfigError::ApduSize(self.max_apdu));
        }
        positive(self.nak_bo_ivl, "nak_bo_ivl")?;
        positive(self.nak_rpt_ivl, "nak_rpt_ivl")?;
        positive(self.nak_rdata_ivl, "nak_rdata_ivl")?;
        positive(self.nak_bo_ivl_min, "nak_bo_ivl_min")?;
        positive(self.rtt_min, "rtt_min")?;
        if self.nak_bo_rtt_mult == 0 {
            return Err(ConfigError::ZeroBound("nak_bo_rtt_mult"));
        }
        if self.nak_group_size == 0 {
            return Err(ConfigError::ZeroBound("nak_group_size"));
        }
        positive(self.spmr_expiry, "spmr_expiry")?;
        positive(self.peer_expiry, "peer_expiry")?;
        nonzero(self.max_peers, "max_peers")?;
        nonzero(self.max_probation, "max_probation")?;
        positive(self.probation_expiry, "probation_expiry")?;
        nonzero(self.event_queue, "event_queue")?;
        nonzero(self.tx_queue, "tx_queue")?;
        if self.lines == 0 || usize::from(self.lines) > crate::MAX_LINES {
            return Err(ConfigError::Lines(self.lines));
        }
        positive(self.line_timeout, "line_timeout")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate() {
        assert_eq!(SourceConfig::default().validate(), Ok(()));
        assert_eq!(ReceiverConfig::default().validate(), Ok(()));
    }

    #[test]
    fn nonsense_is_refused() {
        let c = SourceConfig {
            txw_sqns: 0,
            ..SourceConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::WindowSqns(0)));
        let c = SourceConfig {
            txw_sqns: 1000,
            ..SourceConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::WindowSqns(1000)));
        let c = SourceConfig {
            max_tpdu: 20,
            ..SourceConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::TpduSize(20)));
        let c = SourceConfig {
            txw_max_bytes: 1024 * 1480 * 2 - 1,
            ..SourceConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::WindowBytes(1024 * 1480 * 2 - 1))
        );
        let c = SourceConfig {
            txw_max_bytes: MAX_WINDOW_BYTES + 1,
            ..SourceConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::WindowBytes(MAX_WINDOW_BYTES + 1))
        );
        let c = SourceConfig {
            txw_sqns: 1 << 25,
            ..SourceConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::WindowSqns(1 << 25)));
        let c = SourceConfig {
            txw_sqns: 1024,
            send_queue: 2048,
            max_apdu: 1000,
            ..SourceConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::SendQueue(2048)));
        let c = SourceConfig {
            max_apdu: 10 << 20,
            ..SourceConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::ApduSize(10 << 20)));
        let c = SourceConfig {
            spm_ambient_ivl: Duration::ZERO,
            ..SourceConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::ZeroInterval("spm_ambient_ivl"))
        );
        let c = SourceConfig {
            txw_min_secs: Duration::from_secs(31),
            ..SourceConfig::default()
        };
        assert_eq!(c.validate(), Err(ConfigError::MinSecs));
        let r = ReceiverConfig {
            nak_rpt_ivl: Duration::ZERO,
            ..ReceiverConfig::default()
        };
        assert_eq!(r.validate(), Err(ConfigError::ZeroInterval("nak_rpt_ivl")));
        let r = ReceiverConfig {
            max_peers: 0,
            ..ReceiverConfig::default()
        };
        assert_eq!(r.validate(), Err(ConfigError::ZeroBound("max_peers")));
        let r = ReceiverConfig {
            event_queue: usize::MAX,
            ..ReceiverConfig::default()
        };
        assert_eq!(r.validate(), Err(ConfigError::BoundTooLarge("event_queue")));
        let r = ReceiverConfig {
            rxw_sqns: 1 << 25,
            ..ReceiverConfig::default()
        };
        assert_eq!(r.validate(), Err(ConfigError::WindowSqns(1 << 25)));
        let r = ReceiverConfig {
            rxw_sqns: 3,
            ..ReceiverConfig::default()
        };
        assert_eq!(r.validate(), Err(ConfigError::WindowSqns(3)));
    }

    #[test]
    fn fragment_arithmetic() {
        let c = SourceConfig::default();
        assert_eq!(c.max_single_tsdu(), 1480 - 24);
        assert_eq!(c.tpdus_for(0), 1);
        assert_eq!(c.tpdus_for(c.max_single_tsdu()), 1);
        assert_eq!(c.tpdus_for(c.max_single_tsdu() + 1), 2);
        assert_eq!(c.tpdus_for(c.max_fragment_tsdu() * 3), 3);
    }
}
