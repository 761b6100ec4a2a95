//! Send-time stamps (`xpgm send --stamp`) and one-way latency (`xpgm recv --latency`).
//!
//! A stamped message carries, after its 8-byte index, the sender's clock reading in
//! nanoseconds as a big-endian u64 in bytes 8..16; the rest is the fill byte as
//! usual. The receiver subtracts it from its own reading of the same clock.
//!
//! `CLOCK_MONOTONIC` is one clock for every network namespace of a machine, so
//! `--clock monotonic` (the default) gives exact one-way latency between namespaces
//! (the project's topology, `scripts/demo`). Between machines the monotonic clocks
//! are unrelated: use `--clock realtime` on both sides, with the clocks disciplined
//! by PTP (NTP's millisecond error would swamp the measurement).

use hdrhistogram::Histogram;
use rustix::time::{ClockId, clock_gettime};

/// Bytes 8..16 of a stamped message hold the stamp.
pub const STAMP_RANGE: std::ops::Range<usize> = 8..16;
/// Smallest `--size` that has room for the index and the stamp.
pub const MIN_STAMPED_SIZE: u32 = 16;
/// Largest latency recorded (anything above is clamped to it): 60 s.
const MAX_TRACKED_NS: u64 = 60_000_000_000;
/// Significant decimal digits of the histogram (0.1% resolution).
const SIGFIGS: u8 = 3;

/// Clock used for stamps; both ends must use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Clock {
    /// CLOCK_MONOTONIC: shared by all network namespaces of one machine.
    Monotonic,
    /// CLOCK_REALTIME: across machines, only as good as their synchronisation (PTP).
    Realtime,
}

impl Clock {
    /// The clock's current reading in nanoseconds.
    pub fn now_ns(self) -> u64 {
        let id = match self {
            Clock::Monotonic => ClockId::Monotonic,
            Clock::Realtime => ClockId::Realtime,
        };
        let t = clock_gettime(id);
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u64::try_from(t.tv_nsec).unwrap_or(0);
        secs.saturating_mul(1_000_000_000).saturating_add(nanos)
    }
}

/// Writes `stamp_ns` into bytes 8..16 of `msg`; false (nothing written) if `msg` is
/// shorter than 16 bytes.
pub fn write_stamp(msg: &mut [u8], stamp_ns: u64) -> bool {
    match msg.get_mut(STAMP_RANGE) {
        Some(dst) => {
            dst.copy_from_slice(&stamp_ns.to_be_bytes());
            true
        }
        None => false,
    }
}

/// The stamp in bytes 8..16 of `msg`, `None` if it is shorter than 16 bytes.
pub fn read_stamp(msg: &[u8]) -> Option<u64> {
    let b: [u8; 8] = msg.get(STAMP_RANGE)?.try_into().ok()?;
    Some(u64::from_be_bytes(b))
}

/// Latency percentiles in nanoseconds, as printed by `xpgm recv --json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest value recorded.
    pub max: u64,
}

/// One-way latencies of stamped messages. Fixed size (allocated once, before the
/// first message): recording never allocates.
#[derive(Debug)]
pub struct Latency {
    hist: Histogram<u64>,
    /// Messages too short to carry a stamp.
    pub unstamped: u64,
    /// Messages stamped later than they were received (clocks not comparable):
    /// not recorded.
    pub negative: u64,
}

impl Latency {
    /// An empty recorder for latencies from 1 ns to 60 s at 0.1% resolution.
    pub fn new() -> anyhow::Result<Latency> {
        let hist = Histogram::new_with_bounds(1, MAX_TRACKED_NS, SIGFIGS)
            .map_err(|e| anyhow::anyhow!("latency histogram: {e}"))?;
        Ok(Latency {
            hist,
            unstamped: 0,
            negative: 0,
        })
    }

    /// Records the latency of `msg` received at `now_ns` (same clock as the stamp).
    pub fn record(&mut self, msg: &[u8], now_ns: u64) {
        let Some(sent) = read_stamp(msg) else {
            self.unstamped += 1;
            return;
        };
        match now_ns.checked_sub(sent) {
            // Clamped to the histogram's range: never an error, never a resize.
            Some(ns) => self.hist.saturating_record(ns.clamp(1, MAX_TRACKED_NS)),
            None => self.negative += 1,
        }
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    /// The percentiles, `None` before the first recorded latency.
    pub fn percentiles(&self) -> Option<Percentiles> {
        if self.hist.is_empty() {
            return None;
        }
        Some(Percentiles {
            p50: self.hist.value_at_quantile(0.50),
            p90: self.hist.value_at_quantile(0.90),
            p99: self.hist.value_at_quantile(0.99),
            p999: self.hist.value_at_quantile(0.999),
            max: self.hist.max(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips_in_bytes_8_to_16_big_endian() {
        let mut m = [0xaau8; 24];
        m[..8].copy_from_slice(&7u64.to_be_bytes());
        assert!(write_stamp(&mut m, 0x0102_0304_0506_0708));
        assert_eq!(&m[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&m[..8], &7u64.to_be_bytes(), "index untouched");
        assert!(m[16..].iter().all(|&b| b == 0xaa), "fill untouched");
        assert_eq!(read_stamp(&m), Some(0x0102_0304_0506_0708));
    }

    #[test]
    fn short_messages_have_no_stamp() {
        let mut m = [0u8; 15];
        assert!(!write_stamp(&mut m, 5));
        assert_eq!(m, [0u8; 15]);
        assert_eq!(read_stamp(&m), None);
        let mut l = Latency::new().unwrap();
        l.record(&m, 100);
        assert_eq!((l.unstamped, l.count()), (1, 0));
        assert_eq!(l.percentiles(), None);
    }

    fn stamped(sent: u64) -> [u8; 16] {
        let mut m = [0u8; 16];
        write_stamp(&mut m, sent);
        m
    }

    #[test]
    fn percentiles_follow_the_recorded_distribution() {
        let mut l = Latency::new().unwrap();
        // 1000 messages with latencies 1 us, 2 us, ..., 1000 us.
        for i in 1..=1000u64 {
            let sent = 5_000_000_000 + i;
            l.record(&stamped(sent), sent + i * 1000);
        }
        assert_eq!(l.count(), 1000);
        let p = l.percentiles().unwrap();
        let near = |got: u64, want: u64| got.abs_diff(want) <= want / 500;
        assert!(near(p.p50, 500_000), "{p:?}");
        assert!(near(p.p90, 900_000), "{p:?}");
        assert!(near(p.p99, 990_000), "{p:?}");
        assert!(near(p.p999, 999_000), "{p:?}");
        assert!(near(p.max, 1_000_000), "{p:?}");
        assert!(p.p50 <= p.p90 && p.p90 <= p.p99 && p.p99 <= p.p999 && p.p999 <= p.max);
    }

    #[test]
    fn stamps_from_the_future_are_counted_not_recorded() {
        let mut l = Latency::new().unwrap();
        l.record(&stamped(2000), 1000);
        assert_eq!((l.negative, l.count()), (1, 0));
        l.record(&stamped(1000), 1000);
        // Zero latency is recorded as the smallest trackable value.
        assert_eq!(l.count(), 1);
        assert_eq!(l.percentiles().unwrap().max, 1);
    }

    #[test]
    fn huge_latencies_are_clamped_not_lost() {
        let mut l = Latency::new().unwrap();
        l.record(&stamped(0), u64::MAX);
        assert_eq!(l.count(), 1);
        let max = l.percentiles().unwrap().max;
        assert!((MAX_TRACKED_NS..=MAX_TRACKED_NS + MAX_TRACKED_NS / 500).contains(&max));
    }

    #[test]
    fn monotonic_clock_advances() {
        let a = Clock::Monotonic.now_ns();
        let b = Clock::Monotonic.now_ns();
        assert!(a > 0 && b >= a);
        // Realtime is after 2020-01-01 on any machine that runs this.
        assert!(Clock::Realtime.now_ns() > 1_577_836_800_000_000_000);
    }
}
