//! Token buckets for TXW_MAX_RTE (original data) and the separate repair budget.

use crate::time::Instant;

const NANOS: u128 = 1_000_000_000;

/// A byte token bucket refilled continuously at `rate` bytes per second.
///
/// Tokens are kept in byte-nanoseconds (`bytes × 10^9`) so refills are exact integers.
#[derive(Clone, Debug)]
pub(crate) struct TokenBucket {
    /// Bytes per second; 0 = unlimited.
    rate: u64,
    /// Most tokens held, byte-nanoseconds.
    cap: u128,
    /// Tokens held, byte-nanoseconds.
    tokens: u128,
    /// Last refill.
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` bytes refilled at `rate` bytes per second.
    pub(crate) fn new(rate: u64, burst: usize, now: Instant) -> Self {
        let cap = (burst as u128) * NANOS;
        TokenBucket {
            rate,
            cap,
            tokens: cap,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.last {
            let dt = u128::from(now.as_nanos() - self.last.as_nanos());
            self.tokens = (self.tokens + dt * u128::from(self.rate)).min(self.cap);
            self.last = now;
        }
    }

    /// Takes `bytes` tokens if available now; false (nothing taken) otherwise.
    pub(crate) fn try_take(&mut self, now: Instant, bytes: usize) -> bool {
        if self.rate == 0 {
            return true;
        }
        self.refill(now);
        let cost = (bytes as u128) * NANOS;
        // A packet larger than the bucket passes once the bucket is full, so a
        // misconfigured burst can never wedge the sender.
        let cost = cost.min(self.cap);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }

    /// When `bytes` tokens will be available (as of the last refill).
    pub(crate) fn ready_at(&self, bytes: usize) -> Instant {
        if self.rate == 0 {
            return self.last;
        }
        let cost = ((bytes as u128) * NANOS).min(self.cap);
        if self.tokens >= cost {
            return self.last;
        }
        let wait = (cost - self.tokens).div_ceil(u128::from(self.rate));
        Instant::from_nanos(
            self.last
                .as_nanos()
                .saturating_add(u64::try_from(wait).unwrap_or(u64::MAX)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_rate_and_caps_at_burst() {
        let t0 = Instant::ZERO;
        let mut b = TokenBucket::new(1000, 100, t0);
        assert!(b.try_take(t0, 100));
        assert!(!b.try_take(t0, 1));
        // 1000 B/s: 50 bytes take 50 ms.
        assert_eq!(b.ready_at(50), Instant::from_nanos(50_000_000));
        assert!(!b.try_take(Instant::from_nanos(49_999_999), 50));
        assert!(b.try_take(Instant::from_nanos(50_000_000), 50));
        // A long pause refills only up to the burst.
        let later = Instant::from_nanos(10_000_000_000);
        assert!(b.try_take(later, 100));
        assert!(!b.try_take(later, 1));
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let mut b = TokenBucket::new(0, 1, Instant::ZERO);
        for _ in 0..1000 {
            assert!(b.try_take(Instant::ZERO, 1_000_000));
        }
    }
}
