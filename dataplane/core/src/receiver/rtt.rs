//! Round-trip time to one source, and the repair timers derived from it.
//!
//! Samples (sans-IO: the caller's `now`):
//! * NAK → NCF or RDATA for the NAK's first sequence: one NAK at a time is timed (a
//!   "probe"), only a sequence's NAK sent while no other probe is outstanding.
//! * SPMR → the next SPM.
//!
//! Smoothing is RFC 6298's (section 2: `RTTVAR = 3/4 RTTVAR + 1/4 |SRTT - R|`,
//! `SRTT = 7/8 SRTT + 1/8 R`; the first sample sets `SRTT = R`, `RTTVAR = R / 2`), and
//! the retransmission timeout `RTO = SRTT + 4 RTTVAR`. Each sample is first clamped to
//! `[rtt_min, rtt_max]`.
//!
//! In multicast an NCF or RDATA may answer another receiver's earlier NAK, so a sample
//! can be much shorter than the round trip: behind a shared loss the receivers that
//! NAK at all are the first (whose sample is the real RTT) and the ones whose back-off
//! ended just before the NCF arrived (whose sample is short). Smoothing alone then
//! drifts down, shortens the back-off and lets more receivers NAK (a feedback loop:
//! in the simulator's 50-receiver case NAKs per loss doubled to 5.9). So the back-off
//! span and the repeat waits also follow `peak`, a decaying maximum of the samples
//! (`peak = max(R, 7/8 peak)`): the back-off span is `nak_bo_rtt_mult × peak`, the
//! waits `max(RTO, 2 × peak)`.

use core::time::Duration;

use crate::config::ReceiverConfig;

/// RFC 6298 SRTT / RTTVAR of one source.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RttEstimator {
    /// Smoothed RTT; `None` before the first sample.
    srtt: Option<Duration>,
    rttvar: Duration,
    /// Decaying maximum of the samples.
    peak: Duration,
    /// Whether a NAK's answer has been timed (else only the round-trip probe's SPM).
    nak_sampled: bool,
}

impl RttEstimator {
    /// Folds in one NAK's measured round trip (NAK to NCF or RDATA), clamped to
    /// `[min, max]`.
    pub(crate) fn sample(&mut self, r: Duration, min: Duration, max: Duration) {
        self.nak_sampled = true;
        self.fold(r, min, max);
    }

    /// Folds in the round-trip probe's sample (SPMR to SPM). Receivers that joined
    /// together probe together, and the one SPM the source sends answers the earliest
    /// SPMR: every other receiver's sample is short by how much later it asked. Until
    /// a NAK is timed, the back-off span is therefore at least `nak_bo_ivl_probe`.
    pub(crate) fn sample_probe(&mut self, r: Duration, min: Duration, max: Duration) {
        self.fold(r, min, max);
    }

    fn fold(&mut self, r: Duration, min: Duration, max: Duration) {
        let r = r.max(min).min(max.max(min));
        match self.srtt {
            None => {
                self.srtt = Some(r);
                self.rttvar = r / 2;
            }
            Some(s) => {
                let diff = s.abs_diff(r);
                self.rttvar = self.rttvar * 3 / 4 + diff / 4;
                self.srtt = Some(s * 7 / 8 + r / 8);
            }
        }
        self.peak = r.max(self.peak * 7 / 8);
    }

    /// Smoothed round trip, once measured.
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// `SRTT + 4 RTTVAR`, once measured.
    pub(crate) fn rto(&self) -> Option<Duration> {
        self.srtt
            .map(|s| s.saturating_add(self.rttvar.saturating_mul(4)))
    }

    /// The decaying maximum of the samples, once measured.
    pub(crate) fn peak(&self) -> Option<Duration> {
        self.srtt.map(|_| self.peak)
    }

    /// `peak`, or `rtt_initial` before the first sample (`None` if that is zero).
    fn peak_or_initial(&self, cfg: &ReceiverConfig) -> Option<Duration> {
        self.peak()
            .or((!cfg.rtt_initial.is_zero()).then_some(cfg.rtt_initial))
    }

    /// `max(RTO, 2 peak)`, or `3 × rtt_initial` (RFC 6298's RTO after a first sample of
    /// that value) before the first sample. From the probe's sample alone (maybe short),
    /// at least a quarter of `nak_bo_ivl_probe`, so that a NAK is not repeated before
    /// its NCF could have come back.
    fn wait_or_initial(&self, cfg: &ReceiverConfig) -> Option<Duration> {
        match (self.rto(), self.peak()) {
            (Some(r), Some(p)) if !self.nak_sampled => {
                Some(r.max(p.saturating_mul(2)).max(cfg.nak_bo_ivl_probe / 4))
            }
            (Some(r), Some(p)) => Some(r.max(p.saturating_mul(2))),
            _ => (!cfg.rtt_initial.is_zero()).then(|| cfg.rtt_initial.saturating_mul(3)),
        }
    }

    /// NAK_BO_IVL for this source: `nak_bo_rtt_mult × peak` (or `rtt_initial`) scaled
    /// by `scale` / 1000 (the group-size estimate's, 1000 for the full span), at least
    /// `nak_bo_ivl_min`, at most `nak_bo_ivl` (which it is when `nak_adaptive` is off,
    /// or unmeasured with `rtt_initial` zero).
    pub(crate) fn bo_ivl(&self, cfg: &ReceiverConfig, scale: u32) -> Duration {
        match self.peak_or_initial(cfg) {
            Some(s) if cfg.nak_adaptive => {
                let floor = if self.srtt.is_some() && !self.nak_sampled {
                    cfg.nak_bo_ivl_min.max(cfg.nak_bo_ivl_probe)
                } else {
                    cfg.nak_bo_ivl_min
                };
                (s.saturating_mul(cfg.nak_bo_rtt_mult)
                    .saturating_mul(scale.min(1000))
                    / 1000)
                    .max(floor)
                    .min(cfg.nak_bo_ivl)
            }
            _ => cfg.nak_bo_ivl,
        }
    }

    /// NAK_RPT_IVL for this source: `max(RTO, 2 peak)` within
    /// `[nak_rpt_ivl_min, nak_rpt_ivl]`.
    pub(crate) fn rpt_ivl(&self, cfg: &ReceiverConfig) -> Duration {
        self.follow(cfg, cfg.nak_rpt_ivl_min, cfg.nak_rpt_ivl)
    }

    /// NAK_RDATA_IVL for this source: `max(RTO, 2 peak)` within
    /// `[nak_rdata_ivl_min, nak_rdata_ivl]`.
    pub(crate) fn rdata_ivl(&self, cfg: &ReceiverConfig) -> Duration {
        self.follow(cfg, cfg.nak_rdata_ivl_min, cfg.nak_rdata_ivl)
    }

    fn follow(&self, cfg: &ReceiverConfig, floor: Duration, ceiling: Duration) -> Duration {
        match self.wait_or_initial(cfg) {
            Some(r) if cfg.nak_adaptive => r.max(floor).min(ceiling),
            _ => ceiling,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const US: fn(u64) -> Duration = Duration::from_micros;

    #[test]
    fn smoothing_follows_rfc_6298_exactly() {
        let mut e = RttEstimator::default();
        assert_eq!((e.srtt(), e.rto()), (None, None));
        let (min, max) = (US(10), Duration::from_secs(1));
        e.sample(US(800), min, max);
        // First sample: SRTT = R, RTTVAR = R/2, RTO = R + 4 R/2 = 3 R.
        assert_eq!(e.srtt(), Some(US(800)));
        assert_eq!(e.rto(), Some(US(2400)));
        e.sample(US(400), min, max);
        // RTTVAR = 3/4 400 + 1/4 |800 - 400| = 400; SRTT = 7/8 800 + 1/8 400 = 750.
        assert_eq!(e.srtt(), Some(US(750)));
        assert_eq!(e.rto(), Some(US(750 + 1600)));
        e.sample(US(750), min, max);
        // RTTVAR = 3/4 400 + 0 = 300; SRTT unchanged.
        assert_eq!(e.srtt(), Some(US(750)));
        assert_eq!(e.rto(), Some(US(750 + 1200)));
    }

    /// Short samples (NCFs answering someone else's earlier NAK) pull SRTT down but
    /// the back-off follows the decaying peak.
    #[test]
    fn the_back_off_follows_the_decaying_peak() {
        let cfg = ReceiverConfig::default();
        let mut e = RttEstimator::default();
        e.sample(US(2400), cfg.rtt_min, cfg.rtt_max);
        e.sample(US(200), cfg.rtt_min, cfg.rtt_max);
        e.sample(US(200), cfg.rtt_min, cfg.rtt_max);
        // SRTT 2400 -> 2125 -> 1884.375 µs; peak 2400 -> 2100 -> 1837.5 µs.
        assert_eq!(e.srtt(), Some(Duration::from_nanos(1_884_375)));
        assert_eq!(e.peak(), Some(Duration::from_nanos(1_837_500)));
        assert_eq!(e.bo_ivl(&cfg, 1000), Duration::from_nanos(4 * 1_837_500));
        // A real round trip again: the peak jumps back.
        e.sample(US(2400), cfg.rtt_min, cfg.rtt_max);
        assert_eq!(e.peak(), Some(US(2400)));
        assert_eq!(e.bo_ivl(&cfg, 1000), US(9600));
    }

    #[test]
    fn samples_are_clamped() {
        let mut e = RttEstimator::default();
        e.sample(Duration::ZERO, US(10), US(100));
        assert_eq!(e.srtt(), Some(US(10)));
        let mut e = RttEstimator::default();
        e.sample(Duration::from_secs(5), US(10), US(100));
        assert_eq!(e.srtt(), Some(US(100)));
        // A ceiling below the floor cannot panic: the floor wins.
        let mut e = RttEstimator::default();
        e.sample(US(50), US(10), US(1));
        assert_eq!(e.srtt(), Some(US(10)));
    }

    #[test]
    fn timers_follow_the_rtt_between_floor_and_ceiling() {
        let cfg = ReceiverConfig::default();
        let mut e = RttEstimator::default();
        // Unmeasured, no initial value (the default): the configured ceilings.
        assert_eq!(e.bo_ivl(&cfg, 1000), cfg.nak_bo_ivl);
        assert_eq!(e.rpt_ivl(&cfg), cfg.nak_rpt_ivl);
        assert_eq!(e.rdata_ivl(&cfg), cfg.nak_rdata_ivl);
        // rtt_initial 1 ms: as if 1 ms had been measured: span 4 ms, RTO 3 ms.
        let one = ReceiverConfig {
            rtt_initial: US(1000),
            ..ReceiverConfig::default()
        };
        assert_eq!(e.bo_ivl(&one, 1000), US(4000));
        assert_eq!(e.rpt_ivl(&one), US(3000));
        assert_eq!(e.rdata_ivl(&one), US(3000));
        // 100 µs: back-off 4 × 100 µs; RTO 300 µs, below the 1 ms floors.
        e.sample(US(100), cfg.rtt_min, cfg.rtt_max);
        assert_eq!(e.bo_ivl(&cfg, 1000), US(400));
        assert_eq!(e.rpt_ivl(&cfg), cfg.nak_rpt_ivl_min);
        assert_eq!(e.rdata_ivl(&cfg), cfg.nak_rdata_ivl_min);
        // 2 ms: back-off 8 ms; RTO 6 ms.
        let mut e = RttEstimator::default();
        e.sample(US(2000), cfg.rtt_min, cfg.rtt_max);
        assert_eq!(e.bo_ivl(&cfg, 1000), US(8000));
        assert_eq!(e.rpt_ivl(&cfg), US(6000));
        assert_eq!(e.rdata_ivl(&cfg), US(6000));
        // 500 ms: capped by today's values.
        let mut e = RttEstimator::default();
        e.sample(Duration::from_millis(500), cfg.rtt_min, cfg.rtt_max);
        assert_eq!(e.bo_ivl(&cfg, 1000), cfg.nak_bo_ivl);
        assert_eq!(e.rpt_ivl(&cfg), cfg.nak_rpt_ivl);
        // 1 µs is clamped to rtt_min; the back-off floor holds.
        let mut e = RttEstimator::default();
        e.sample(US(1), cfg.rtt_min, cfg.rtt_max);
        assert_eq!(e.srtt(), Some(cfg.rtt_min));
        assert_eq!(e.bo_ivl(&cfg, 1000), cfg.nak_bo_ivl_min);
        // Not adaptive: the constants, whatever was measured.
        let fixed = ReceiverConfig {
            nak_adaptive: false,
            ..ReceiverConfig::default()
        };
        assert_eq!(e.bo_ivl(&fixed, 1000), fixed.nak_bo_ivl);
        assert_eq!(e.rpt_ivl(&fixed), fixed.nak_rpt_ivl);
        assert_eq!(e.rdata_ivl(&fixed), fixed.nak_rdata_ivl);
    }
}
