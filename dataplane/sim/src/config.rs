//! Every knob of a simulated run, with defaults that model a small LAN.

use core::fmt;
use core::time::Duration;

use xpgm_core::config::{ReceiverConfig, SourceConfig};

/// One direction of one link: loss, delay, jitter and duplication.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkConfig {
    /// Probability (0..=1) that a packet is lost on this link. With
    /// [`LinkConfig::burst_len`] set this is the *mean* loss of the Gilbert–Elliott chain.
    pub loss: f64,
    /// `Some(b)`: bursty loss (Gilbert–Elliott) with a mean burst of `b` packets
    /// (`b >= 1`); `None`: independent (Bernoulli) loss.
    pub burst_len: Option<f64>,
    /// Fixed one-way delay.
    pub delay: Duration,
    /// Extra delay drawn uniformly from `[0, jitter)` for every packet; packets sent closer
    /// together than the jitter can overtake each other (reordering).
    pub jitter: Duration,
    /// Probability (0..=1) that a packet that survives is delivered twice (the copy gets
    /// its own delay).
    pub duplicate: f64,
}

impl LinkConfig {
    /// A lossless link with `delay` and no jitter or duplication.
    pub fn lossless(delay: Duration) -> Self {
        LinkConfig {
            loss: 0.0,
            burst_len: None,
            delay,
            jitter: Duration::ZERO,
            duplicate: 0.0,
        }
    }
}

/// Extra loss applied to packets of one type, on top of the link's own loss.
///
/// Downstream types (SPM, ODATA, RDATA, NCF) are dropped independently on each
/// per-receiver link; upstream types (NAK, SPMR) on each receiver's reverse link.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TypeLoss {
    /// SPMs (including heartbeat and FIN SPMs).
    pub spm: f64,
    /// Original data.
    pub odata: f64,
    /// Repair data.
    pub rdata: f64,
    /// NAK confirmations.
    pub ncf: f64,
    /// NAKs (receiver to source).
    pub nak: f64,
    /// SPM requests (receiver to source).
    pub spmr: f64,
}

/// A whole simulated run.
///
/// Topology: the source feeds one shared `upstream` link, which fans out into one
/// `downstream` link per receiver; each receiver answers (NAK, SPMR) over its own
/// `reverse` link straight to the source. A drop on `upstream` loses the packet for every
/// receiver; a drop on a `downstream` link only for that receiver.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Seed of every random choice in the run (network and receivers' NAK back-off).
    pub seed: u64,
    /// Number of receivers.
    pub receivers: usize,
    /// Number of messages (APDUs) the source application sends.
    pub messages: u64,
    /// Size of each message in bytes (at least 8: it starts with its index).
    pub size: usize,
    /// Messages per second offered by the application; 0 = as fast as the source's
    /// back-pressure (`WouldBlock`) allows.
    pub msg_rate: u64,
    /// Virtual time between creating the source (which announces the session with an
    /// SPM at once) and the application's first `send`, as an application connects
    /// and then sends.
    pub start_delay: Duration,
    /// The shared link from the source.
    pub upstream: LinkConfig,
    /// Each receiver's own link from the shared link (independent state per receiver).
    pub downstream: LinkConfig,
    /// Each receiver's path back to the source (independent state per receiver).
    pub reverse: LinkConfig,
    /// Extra per-packet-type loss.
    pub type_loss: TypeLoss,
    /// Source engine configuration (group and path NLA are set by the simulator).
    /// The simulator's default widens the engine's default window to
    /// [`SimConfig::DEFAULT_WINDOW_SQNS`].
    pub source: SourceConfig,
    /// Receiver engine configuration (group is set by the simulator).
    pub receiver: ReceiverConfig,
    /// Lower both engines' `max_tpdu` to the smallest TPDU that carries one whole
    /// message, when that is below the configured value. Packets on the wire are the
    /// same (one TPDU per message either way); the engines size their windows as
    /// `sqns × max_tpdu` bytes, so small messages need far less memory. (`max_apdu`
    /// is then lowered to the message size too.)
    pub fit_tpdu: bool,
    /// After the source closed: stop when no ODATA, RDATA, NCF, NAK or delivery happened
    /// for this long.
    pub quiet: Duration,
    /// How long the source application keeps its socket open after closing the
    /// session (its FIN SPMs go out meanwhile) before it exits; from then on the
    /// source is silent and the quiet period no longer ends the run.
    pub linger: Duration,
    /// Hard cap on virtual time.
    pub max_time: Duration,
    /// Hard cap on processed events.
    pub max_events: u64,
    /// A/B lines (1 to `xpgm_core::MAX_LINES`): the whole network (upstream, each
    /// receiver's downstream and reverse links) exists once per line, each line's links
    /// with their own loss draws; the source sends on every line, each receiver
    /// arbitrates (`ReceiverConfig::lines` is set to this).
    pub lines: u8,
    /// Line `i` is `i × line_skew` slower than line 0 downstream (A/B feeds never
    /// arrive at exactly the same instant).
    pub line_skew: Duration,
    /// A line outage: line `.0` carries nothing, either way, from `.1` to `.2` (virtual
    /// time), as if its switch had died and come back.
    pub line_outage: Option<(u8, Duration, Duration)>,
}

impl Default for SimConfig {
    /// 3 receivers, 1% independent loss per receiver link (both directions), 10000
    /// messages of 64 bytes at 10000 messages/s starting after 10 ms, about 1 ms one-way
    /// delay with 200 µs jitter.
    fn default() -> Self {
        SimConfig {
            seed: 1,
            receivers: 3,
            messages: 10_000,
            size: 64,
            msg_rate: 10_000,
            start_delay: Duration::from_millis(10),
            upstream: LinkConfig::lossless(Duration::from_micros(500)),
            downstream: LinkConfig {
                loss: 0.01,
                burst_len: None,
                delay: Duration::from_micros(500),
                jitter: Duration::from_micros(200),
                duplicate: 0.0,
            },
            reverse: LinkConfig {
                loss: 0.01,
                burst_len: None,
                delay: Duration::from_millis(1),
                jitter: Duration::from_micros(200),
                duplicate: 0.0,
            },
            type_loss: TypeLoss::default(),
            source: SourceConfig {
                txw_sqns: Self::DEFAULT_WINDOW_SQNS,
                ..SourceConfig::default()
            },
            receiver: ReceiverConfig {
                rxw_sqns: Self::DEFAULT_WINDOW_SQNS,
                ..ReceiverConfig::default()
            },
            fit_tpdu: true,
            quiet: Duration::from_secs(60),
            linger: Duration::from_secs(10),
            max_time: Duration::from_secs(24 * 3600),
            max_events: 2_000_000_000,
            lines: 1,
            line_skew: Duration::from_micros(10),
            line_outage: None,
        }
    }
}

/// Why a configuration cannot be run.
#[derive(Clone, Debug, PartialEq)]
pub enum ConfigError {
    /// A probability outside `0..=1` (or not a number); names the knob.
    Probability(&'static str, f64),
    /// A burst length below 1 packet (or not a number).
    BurstLen(&'static str, f64),
    /// `size` below 8 bytes (the message index does not fit).
    SizeTooSmall(usize),
    /// `size` above the source's `max_apdu`.
    SizeTooLarge(usize, usize),
    /// No receivers.
    NoReceivers,
    /// More than [`SimConfig::MAX_RECEIVERS`] receivers.
    TooManyReceivers(usize),
    /// More than [`SimConfig::MAX_MESSAGES`] messages.
    TooManyMessages(u64),
    /// The engines refused their configuration.
    Engine(xpgm_core::config::ConfigError),
    /// `lines` outside `1..=MAX_LINES`.
    Lines(u8),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Probability(k, v) => {
                write!(f, "{k} must be a probability between 0 and 1, got {v}")
            }
            ConfigError::BurstLen(k, v) => {
                write!(f, "{k} burst length must be at least 1 packet, got {v}")
            }
            ConfigError::SizeTooSmall(s) => write!(
                f,
                "message size must be at least 8 bytes (it starts with its index), got {s}"
            ),
            ConfigError::SizeTooLarge(s, m) => {
                write!(f, "message size {s} exceeds the source's max_apdu {m}")
            }
            ConfigError::NoReceivers => write!(f, "at least one receiver is needed"),
            ConfigError::TooManyReceivers(n) => write!(
                f,
                "at most {} receivers are supported, got {n}",
                SimConfig::MAX_RECEIVERS
            ),
            ConfigError::Engine(e) => write!(f, "engine configuration: {e}"),
            ConfigError::Lines(n) => {
                write!(f, "lines must be 1 to {}, got {n}", xpgm_core::MAX_LINES)
            }
            ConfigError::TooManyMessages(n) => write!(
                f,
                "at most {} messages are supported, got {n}",
                SimConfig::MAX_MESSAGES
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

fn check_p(name: &'static str, p: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(ConfigError::Probability(name, p))
    }
}

fn check_link(name: &'static str, l: &LinkConfig) -> Result<(), ConfigError> {
    check_p(name, l.loss)?;
    check_p(name, l.duplicate)?;
    if let Some(b) = l.burst_len
        && !(b >= 1.0 && b.is_finite())
    {
        return Err(ConfigError::BurstLen(name, b));
    }
    Ok(())
}

impl SimConfig {
    /// Most receivers a run may have.
    pub const MAX_RECEIVERS: usize = 10_000;
    /// Most messages a run may send (keeps sequence numbers far from wrapping ambiguity
    /// and the message table bounded).
    pub const MAX_MESSAGES: u64 = 100_000_000;

    /// Sets independent loss `loss` (0..=1) on every per-receiver link in both
    /// directions; with `burst` the loss is Gilbert–Elliott with mean burst
    /// [`SimConfig::DEFAULT_BURST_LEN`] packets and the same mean loss.
    pub fn with_receiver_loss(mut self, loss: f64, burst: bool) -> Self {
        let burst_len = burst.then_some(Self::DEFAULT_BURST_LEN);
        for l in [&mut self.downstream, &mut self.reverse] {
            l.loss = loss;
            l.burst_len = burst_len;
        }
        self
    }

    /// Transmit and receive window of the simulator's default configuration: 32768
    /// sequence numbers, 3.3 s at the default 10000 messages/s, room for a dozen
    /// NAK/RDATA rounds (`NAK_RDATA_IVL` 200 ms + `NAK_BO_IVL` ≤ 50 ms each). Set
    /// explicitly so runs do not depend on the engines' default (it was 4096, 0.4 s
    /// here, shorter than two rounds: a repair lost twice fell out of the window).
    pub const DEFAULT_WINDOW_SQNS: u32 = 1 << 15;

    /// Mean burst length (packets) used by `--burst`.
    pub const DEFAULT_BURST_LEN: f64 = 4.0;

    /// Checks every knob.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.receivers == 0 {
            return Err(ConfigError::NoReceivers);
        }
        if self.receivers > Self::MAX_RECEIVERS {
            return Err(ConfigError::TooManyReceivers(self.receivers));
        }
        if self.messages > Self::MAX_MESSAGES {
            return Err(ConfigError::TooManyMessages(self.messages));
        }
        if self.size < 8 {
            return Err(ConfigError::SizeTooSmall(self.size));
        }
        if self.size > self.source.max_apdu {
            return Err(ConfigError::SizeTooLarge(self.size, self.source.max_apdu));
        }
        if self.lines == 0 || usize::from(self.lines) > xpgm_core::MAX_LINES {
            return Err(ConfigError::Lines(self.lines));
        }
        check_link("upstream", &self.upstream)?;
        check_link("downstream", &self.downstream)?;
        check_link("reverse", &self.reverse)?;
        let t = &self.type_loss;
        check_p("spm loss", t.spm)?;
        check_p("odata loss", t.odata)?;
        check_p("rdata loss", t.rdata)?;
        check_p("ncf loss", t.ncf)?;
        check_p("nak loss", t.nak)?;
        check_p("spmr loss", t.spmr)?;
        Ok(())
    }
}
