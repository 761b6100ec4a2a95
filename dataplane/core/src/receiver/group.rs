//! How many receivers share this receiver's losses: the group size that sizes the NAK
//! back-off (docs/engine.md "Group-size estimate").
//!
//! The back-off exists for losses many receivers share: it lets one of them NAK and
//! the source's NCF suppress the rest. A loss only this receiver has gains nothing from
//! waiting, and with `nak_group_size` 1000 and a span of 4 round trips it waits 3.4
//! round trips on average. So each receiver estimates, per source, how many receivers
//! its losses concern, from what it hears anyway:
//!
//! * `lost`: its own losses: sequences it NAKed (first NAKs), and `suppressed` ones;
//! * `foreign`: repairs (RDATA) of sequences it already had — someone else lost them;
//! * `suppressed`: own losses that someone else NAKed first (an NCF or the RDATA came
//!   while this receiver was still backing off).
//!
//! A gap that its own ODATA fills during the back-off (a reordering) is no loss.
//!
//! With receivers that lose independently at similar rates, `foreign / lost` is about
//! the number of other receivers, so `n = 2 (1 + foreign / lost)` (twice, for margin)
//! is an upper estimate of the group; losses that are shared show up as suppressions,
//! and when more than one own loss in [`SHARED_ONE_IN`] was suppressed the estimate is
//! not used at all. Nor is it before [`MIN_LOSSES`] own losses. The counts are halved
//! every [`DECAY_AT`] own losses, so the estimate follows the last few hundred.

use crate::config::ReceiverConfig;

/// Own losses before the estimate is used (until then: `nak_group_size`).
pub(crate) const MIN_LOSSES: u32 = 16;
/// More than one suppressed own loss in this many: losses are shared, use
/// `nak_group_size`.
pub(crate) const SHARED_ONE_IN: u32 = 16;
/// Own losses at which every count is halved.
pub(crate) const DECAY_AT: u32 = 512;
/// Smallest group the estimate gives.
pub(crate) const MIN_GROUP: u32 = 4;
/// Group size from which the back-off span is the full `nak_bo_rtt_mult` round
/// trips; smaller groups get `ln n / ln 50` of it, so that about
/// `n^(RTT / span)` = 50^(1/4) ≈ 2.7 receivers NAK a loss they all share, as 50
/// receivers do with the full span.
pub(crate) const FULL_SPAN_GROUP: u32 = 50;

/// Per-source counts (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct GroupEstimate {
    lost: u32,
    foreign: u32,
    suppressed: u32,
}

impl GroupEstimate {
    /// This receiver NAKed a sequence (its first NAK for it).
    pub(crate) fn on_naked(&mut self) {
        self.on_lost(1);
    }

    fn on_lost(&mut self, k: u32) {
        self.lost = self.lost.saturating_add(k);
        if self.lost >= DECAY_AT {
            self.lost /= 2;
            self.foreign /= 2;
            self.suppressed /= 2;
        }
    }

    /// A repair came for a sequence this receiver already had.
    pub(crate) fn on_foreign_repair(&mut self) {
        self.foreign = self.foreign.saturating_add(1);
    }

    /// An own loss was confirmed or repaired before this receiver NAKed it.
    pub(crate) fn on_suppressed(&mut self) {
        self.suppressed = self.suppressed.saturating_add(1);
        self.on_lost(1);
    }

    /// The group size for the back-off: `nak_group_size` unless the estimate applies
    /// (`nak_group_estimate`, enough own losses, few of them shared), else
    /// `2 (1 + foreign / lost)` rounded up, within `[MIN_GROUP, nak_group_size]`.
    pub(crate) fn size(&self, cfg: &ReceiverConfig) -> u32 {
        let full = cfg.nak_group_size;
        if !cfg.nak_group_estimate
            || !cfg.nak_adaptive
            || self.lost < MIN_LOSSES
            || self.suppressed.saturating_mul(SHARED_ONE_IN) > self.lost
        {
            return full;
        }
        let n =
            2u64 * (u64::from(self.lost) + u64::from(self.foreign)).div_ceil(u64::from(self.lost));
        u32::try_from(n)
            .unwrap_or(u32::MAX)
            .clamp(MIN_GROUP.min(full), full)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ReceiverConfig {
        ReceiverConfig::default()
    }

    #[test]
    fn the_configured_size_until_enough_losses() {
        let mut g = GroupEstimate::default();
        g.on_lost(MIN_LOSSES - 1);
        assert_eq!(g.size(&cfg()), cfg().nak_group_size);
        g.on_lost(1);
        // Nobody else's repairs: the smallest group.
        assert_eq!(g.size(&cfg()), MIN_GROUP);
    }

    #[test]
    fn foreign_repairs_count_the_others() {
        let mut g = GroupEstimate::default();
        // Two other receivers losing as much as this one: 2 × (1 + 2) = 6.
        g.on_lost(100);
        for _ in 0..200 {
            g.on_foreign_repair();
        }
        assert_eq!(g.size(&cfg()), 6);
        // Forty-nine others: the configured size caps nothing yet (100), but a cap
        // below it applies.
        for _ in 0..4700 {
            g.on_foreign_repair();
        }
        assert_eq!(g.size(&cfg()), 100);
        let small = ReceiverConfig {
            nak_group_size: 30,
            ..cfg()
        };
        assert_eq!(g.size(&small), 30);
        let off = ReceiverConfig {
            nak_group_estimate: false,
            ..cfg()
        };
        assert_eq!(g.size(&off), off.nak_group_size);
    }

    #[test]
    fn shared_losses_keep_the_configured_size() {
        let mut g = GroupEstimate::default();
        g.on_lost(160);
        for _ in 0..10 {
            g.on_suppressed();
        }
        // 10 of 160 = one in 16: still the estimate.
        assert_eq!(g.size(&cfg()), MIN_GROUP);
        g.on_suppressed();
        assert_eq!(g.size(&cfg()), cfg().nak_group_size);
    }

    #[test]
    fn counts_decay_so_the_estimate_follows_recent_losses() {
        let mut g = GroupEstimate::default();
        g.on_lost(100);
        for _ in 0..50 {
            g.on_suppressed();
        }
        assert_eq!(g.size(&cfg()), cfg().nak_group_size);
        // Hundreds of unshared losses later, the old suppressions weigh less.
        for _ in 0..40 {
            g.on_lost(20);
        }
        assert!(g.lost < DECAY_AT);
        assert!(g.suppressed * SHARED_ONE_IN <= g.lost, "{g:?}");
        assert_eq!(g.size(&cfg()), MIN_GROUP);
    }
}
