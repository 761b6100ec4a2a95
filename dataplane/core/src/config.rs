//! Every timer, window and queue bound, with defaults that work out of the box.
//!
//! Where each default comes from (RFC 3208 section or OpenPGM value) is documented on the
//! field and in `docs/defaults.md`.

use core::time::Duration;

use crate::wire::Nla;

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
    /// TXW_SQNS: transmit window size in sequence numbers.
    pub txw_sqns: u32,
    /// TXW_SECS: how long a packet stays available for repair.
    pub txw_secs: Duration,
    /// TXW_MAX_RTE: bytes per second of original data (0 = unlimited).
    pub txw_max_rte: u64,
    /// Separate budget for repairs (RDATA), bytes per second (0 = unlimited).
    pub rdata_max_rte: u64,
    /// Ambient SPM interval.
    pub spm_ambient_ivl: Duration,
    /// Heartbeat SPM intervals after data, in order; the last repeats until ambient.
    pub spm_heartbeat: [Duration; 8],
    /// Most APDUs queued by `send` but not yet transmitted (back-pressure beyond).
    pub send_queue: usize,
    /// Most distinct sequence numbers queued for repair at once.
    pub repair_queue: usize,
}

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
    /// RXW_SQNS: receive window size in sequence numbers, per peer.
    pub rxw_sqns: u32,
    /// NAK_BO_IVL: NAKs are sent after a random back-off in `[0, nak_bo_ivl)`.
    pub nak_bo_ivl: Duration,
    /// NAK_RPT_IVL: wait for an NCF after sending a NAK.
    pub nak_rpt_ivl: Duration,
    /// NAK_RDATA_IVL: wait for RDATA after an NCF.
    pub nak_rdata_ivl: Duration,
    /// NAK_NCF_RETRIES: NAKs sent without an NCF before giving up.
    pub nak_ncf_retries: u32,
    /// NAK_DATA_RETRIES: NCFs received without RDATA before giving up.
    pub nak_data_retries: u32,
    /// SPMR back-off: wait this long for an SPM before asking for one.
    pub spmr_expiry: Duration,
    /// Peer expiry: a peer silent this long is removed.
    pub peer_expiry: Duration,
    /// Most peers (TSIs) tracked at once.
    pub max_peers: usize,
    /// Most deliverable events queued for the application.
    pub event_queue: usize,
}

impl Default for SourceConfig {
    fn default() -> Self {
        SourceConfig {
            dport: crate::wire::DEFAULT_DATA_PORT,
            group: Nla::default(),
            path_nla: Nla::default(),
            max_tpdu: 1500 - 20,
            max_apdu: 1 << 20,
            txw_sqns: 1 << 16,
            txw_secs: Duration::from_secs(30),
            txw_max_rte: 0,
            rdata_max_rte: 0,
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
            send_queue: 1024,
            repair_queue: 4096,
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
            rxw_sqns: 1 << 16,
            nak_bo_ivl: Duration::from_millis(50),
            nak_rpt_ivl: Duration::from_millis(200),
            nak_rdata_ivl: Duration::from_millis(200),
            nak_ncf_retries: 50,
            nak_data_retries: 50,
            spmr_expiry: Duration::from_millis(250),
            peer_expiry: Duration::from_secs(300),
            max_peers: 1024,
            event_queue: 4096,
        }
    }
}
