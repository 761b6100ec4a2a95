//! One direction of one simulated link: seeded loss (Bernoulli or Gilbert–Elliott),
//! delay with jitter, duplication.

use core::time::Duration;

use xpgm_core::rng::Rng;

use crate::config::LinkConfig;

/// What a link does with one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Lost by the link's own loss model.
    Lost,
    /// Lost by the extra per-packet-type loss.
    LostByType,
    /// Delivered after `delay`, and a second time after `dup` if duplicated.
    Delivered {
        /// Delay of the (first) copy.
        delay: Duration,
        /// Delay of a duplicate copy, if any.
        dup: Option<Duration>,
    },
}

/// State of one link direction.
#[derive(Clone, Debug)]
pub struct Link {
    cfg: LinkConfig,
    rng: Rng,
    /// Gilbert–Elliott state: currently in the bad (losing) state.
    bad: bool,
    /// Probability of entering the bad state per packet.
    p_enter: f64,
    /// Probability of leaving the bad state per packet.
    p_leave: f64,
}

impl Link {
    /// A link with its own random stream.
    ///
    /// Gilbert–Elliott parameters: every packet sent in the bad state is lost, none in
    /// the good state; leaving the bad state has probability `r = 1 / burst_len` (so
    /// bursts are geometric with mean `burst_len`), entering it `p = r·L / (1 − L)`, which
    /// makes the stationary share of bad packets `p / (p + r) = L`, the configured mean
    /// loss. (`p` is clamped to 1, so for `L > b/(b+1)` the mean loss is lower than asked.)
    pub fn new(cfg: LinkConfig, seed: u64) -> Self {
        let (p_enter, p_leave) = match cfg.burst_len {
            Some(b) if cfg.loss > 0.0 => {
                let r = 1.0 / b.max(1.0);
                if cfg.loss >= 1.0 {
                    (1.0, 0.0)
                } else {
                    ((r * cfg.loss / (1.0 - cfg.loss)).min(1.0), r)
                }
            }
            _ => (0.0, 1.0),
        };
        Link {
            cfg,
            rng: Rng::new(seed),
            bad: false,
            p_enter,
            p_leave,
        }
    }

    fn lost(&mut self) -> bool {
        if self.cfg.burst_len.is_some() {
            if self.bad {
                if self.rng.chance(self.p_leave) {
                    self.bad = false;
                }
            } else if self.rng.chance(self.p_enter) {
                self.bad = true;
            }
            self.bad
        } else {
            self.cfg.loss > 0.0 && self.rng.chance(self.cfg.loss)
        }
    }

    fn delay(&mut self) -> Duration {
        let j = u64::try_from(self.cfg.jitter.as_nanos()).unwrap_or(u64::MAX);
        self.cfg.delay + Duration::from_nanos(self.rng.below(j))
    }

    /// Decides the fate of one packet whose type has extra loss `type_loss`.
    pub fn transmit(&mut self, type_loss: f64) -> Fate {
        if self.lost() {
            return Fate::Lost;
        }
        if type_loss > 0.0 && self.rng.chance(type_loss) {
            return Fate::LostByType;
        }
        let delay = self.delay();
        let dup =
            (self.cfg.duplicate > 0.0 && self.rng.chance(self.cfg.duplicate)).then(|| self.delay());
        Fate::Delivered { delay, dup }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loss_rate(cfg: LinkConfig, n: u32) -> (f64, f64) {
        let mut l = Link::new(cfg, 42);
        let mut lost = 0u32;
        let mut bursts = 0u32;
        let mut prev = false;
        for _ in 0..n {
            let now = !matches!(l.transmit(0.0), Fate::Delivered { .. });
            if now {
                lost += 1;
                if !prev {
                    bursts += 1;
                }
            }
            prev = now;
        }
        let mean_burst = if bursts == 0 {
            0.0
        } else {
            f64::from(lost) / f64::from(bursts)
        };
        (f64::from(lost) / f64::from(n), mean_burst)
    }

    #[test]
    fn bernoulli_loss_matches_configured_rate() {
        let mut cfg = LinkConfig::lossless(Duration::ZERO);
        cfg.loss = 0.05;
        let (rate, burst) = loss_rate(cfg, 200_000);
        assert!((rate - 0.05).abs() < 0.005, "rate {rate}");
        // Independent loss: bursts are short (mean 1/(1-p) ≈ 1.05).
        assert!(burst < 1.2, "burst {burst}");
    }

    #[test]
    fn gilbert_elliott_keeps_mean_and_makes_bursts() {
        let mut cfg = LinkConfig::lossless(Duration::ZERO);
        cfg.loss = 0.05;
        cfg.burst_len = Some(4.0);
        let (rate, burst) = loss_rate(cfg, 400_000);
        assert!((rate - 0.05).abs() < 0.01, "rate {rate}");
        assert!((burst - 4.0).abs() < 0.5, "burst {burst}");
    }

    #[test]
    fn lossless_link_delivers_within_delay_and_jitter() {
        let mut cfg = LinkConfig::lossless(Duration::from_millis(1));
        cfg.jitter = Duration::from_micros(100);
        let mut l = Link::new(cfg, 1);
        let mut distinct = std::collections::BTreeSet::new();
        for _ in 0..1000 {
            match l.transmit(0.0) {
                Fate::Delivered { delay, dup } => {
                    assert!(delay >= Duration::from_millis(1));
                    assert!(delay < Duration::from_micros(1100));
                    assert_eq!(dup, None);
                    distinct.insert(delay);
                }
                f => panic!("lossless link lost a packet: {f:?}"),
            }
        }
        assert!(distinct.len() > 100, "jitter produced too few delays");
    }

    #[test]
    fn type_loss_and_duplication_apply() {
        let mut cfg = LinkConfig::lossless(Duration::ZERO);
        cfg.duplicate = 1.0;
        let mut l = Link::new(cfg, 3);
        assert_eq!(l.transmit(1.0), Fate::LostByType);
        assert!(matches!(
            l.transmit(0.0),
            Fate::Delivered { dup: Some(_), .. }
        ));
    }

    #[test]
    fn total_loss_loses_everything() {
        for burst in [None, Some(3.0)] {
            let mut cfg = LinkConfig::lossless(Duration::ZERO);
            cfg.loss = 1.0;
            cfg.burst_len = burst;
            let mut l = Link::new(cfg, 9);
            for _ in 0..100 {
                assert_eq!(l.transmit(0.0), Fate::Lost);
            }
        }
    }
}
