//! Latency measurement for `xpgm-rtt` and `scripts/bench-latency`: the message
//! stamp, the HdrHistogram wrapper with the percentiles we report, the
//! "was this message repaired?" set, and the JSON/plot data formats.
//!
//! Message layout (also what `interop/pgmpeer.c ping|echo` writes and reads):
//!
//! ```text
//! bytes 0..8    message index, u64 big-endian
//! bytes 8..16   send time, CLOCK_MONOTONIC nanoseconds, u64 big-endian
//! bytes 16..    filler (index & 0xff)
//! ```
//!
//! Network namespaces share CLOCK_MONOTONIC, so a receiver in another
//! namespace on the same machine can compute one-way latency from the stamp.

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Offset of the send-time stamp in a message.
pub const STAMP_OFFSET: usize = 8;
/// Smallest message that carries index and stamp.
pub const MIN_MESSAGE: usize = 16;
/// Largest latency the histograms track (60 s, in nanoseconds); larger
/// samples are clamped to it (and counted in [`LatencyHist::clamped`]).
pub const MAX_TRACKED_NS: u64 = 60_000_000_000;
/// Percentiles reported, as (JSON key, quantile).
pub const PERCENTILES: [(&str, f64); 4] = [
    ("p50", 0.50),
    ("p90", 0.90),
    ("p99", 0.99),
    ("p99_9", 0.999),
];

/// CLOCK_MONOTONIC in nanoseconds (the clock the stamps use).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Writes message `index` stamped `stamp_ns` into `buf` (index, stamp, filler).
/// Returns false (and writes nothing) if `buf` is shorter than [`MIN_MESSAGE`].
pub fn write_message(buf: &mut [u8], index: u64, stamp_ns: u64) -> bool {
    let Some((head, filler)) = buf.split_at_mut_checked(MIN_MESSAGE) else {
        return false;
    };
    let (i, s) = head.split_at_mut(STAMP_OFFSET);
    i.copy_from_slice(&index.to_be_bytes());
    s.copy_from_slice(&stamp_ns.to_be_bytes());
    filler.fill((index & 0xff) as u8);
    true
}

/// Reads (index, stamp) from a message; `None` if it is too short.
pub fn read_message(msg: &[u8]) -> Option<(u64, u64)> {
    let i: [u8; 8] = msg.get(..STAMP_OFFSET)?.try_into().ok()?;
    let s: [u8; 8] = msg.get(STAMP_OFFSET..MIN_MESSAGE)?.try_into().ok()?;
    Some((u64::from_be_bytes(i), u64::from_be_bytes(s)))
}

/// A latency histogram in nanoseconds (1 ns .. 60 s, 3 significant digits).
/// Recording never allocates.
#[derive(Debug, Clone)]
pub struct LatencyHist {
    h: Histogram<u64>,
    clamped: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Samples.
    pub count: u64,
    /// p50, p90, p99, p99.9 (see [`PERCENTILES`]).
    pub percentiles: [f64; 4],
    /// Largest sample.
    pub max: f64,
    /// Smallest sample.
    pub min: f64,
    /// Mean.
    pub mean: f64,
}

impl LatencyHist {
    /// An empty histogram.
    pub fn new() -> Self {
        // Constant, valid bounds (1 <= low, high >= 2 * low, 3 figures): this
        // cannot fail, whatever the input.
        #[allow(clippy::expect_used)]
        let h =
            Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3).expect("constant bounds are valid");
        LatencyHist { h, clamped: 0 }
    }

    /// Records one sample (0 is recorded as 1 ns; above 60 s clamped).
    pub fn record(&mut self, ns: u64) {
        let v = if ns > MAX_TRACKED_NS {
            self.clamped += 1;
            MAX_TRACKED_NS
        } else {
            ns.max(1)
        };
        let _ = self.h.record(v);
    }

    /// Records `later - earlier` (a stamp from the future counts as 0).
    pub fn record_since(&mut self, earlier_ns: u64, later_ns: u64) {
        self.record(later_ns.saturating_sub(earlier_ns));
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.h.len()
    }

    /// No samples yet.
    pub fn is_empty(&self) -> bool {
        self.h.is_empty()
    }

    /// Samples that were above [`MAX_TRACKED_NS`].
    pub fn clamped(&self) -> u64 {
        self.clamped
    }

    /// Percentiles in microseconds (all zero when empty).
    pub fn summary(&self) -> Summary {
        let us = |ns: u64| ns as f64 / 1000.0;
        if self.h.is_empty() {
            return Summary {
                count: 0,
                percentiles: [0.0; 4],
                max: 0.0,
                min: 0.0,
                mean: 0.0,
            };
        }
        let mut p = [0.0; 4];
        for (slot, (_, q)) in p.iter_mut().zip(PERCENTILES) {
            *slot = us(self.h.value_at_quantile(q));
        }
        Summary {
            count: self.h.len(),
            percentiles: p,
            max: us(self.h.max()),
            min: us(self.h.min()),
            mean: self.h.mean() / 1000.0,
        }
    }

    /// The percentile distribution for plotting: (percentile in %, latency in
    /// µs) points at quantiles 0, 0.5, 0.75, 0.875, … (each step halves the
    /// distance to 1) down to 1 − 1/`samples`, then the maximum.
    pub fn distribution(&self) -> Vec<(f64, f64)> {
        let mut out = Vec::new();
        if self.h.is_empty() {
            return out;
        }
        let n = self.h.len() as f64;
        let mut tail = 1.0f64;
        while tail >= 1.0 / n && out.len() < 64 {
            let q = 1.0 - tail;
            out.push((q * 100.0, self.h.value_at_quantile(q) as f64 / 1000.0));
            // Two points per halving for a smoother curve.
            let mid = 1.0 - tail * std::f64::consts::FRAC_1_SQRT_2;
            if tail * std::f64::consts::FRAC_1_SQRT_2 >= 1.0 / n {
                out.push((mid * 100.0, self.h.value_at_quantile(mid) as f64 / 1000.0));
            }
            tail /= 2.0;
        }
        let last = 1.0 - 1.0 / n;
        out.push((last * 100.0, self.h.max() as f64 / 1000.0));
        out
    }

    /// `{"count", "p50", "p90", "p99", "p99_9", "max", "min", "mean"}`, in µs.
    pub fn to_json(&self) -> Value {
        let s = self.summary();
        let mut m = serde_json::Map::new();
        m.insert("count".into(), json!(s.count));
        for ((k, _), v) in PERCENTILES.iter().zip(s.percentiles) {
            m.insert((*k).into(), json!(round3(v)));
        }
        m.insert("max".into(), json!(round3(s.max)));
        m.insert("min".into(), json!(round3(s.min)));
        m.insert("mean".into(), json!(round3(s.mean)));
        m.insert("unit".into(), json!("us"));
        Value::Object(m)
    }

    /// Plot data for gnuplot: one line per point, `percentile 1/(1-p) latency_us`
    /// (the last point, the maximum, is placed at 1/(1-p) of the last quantile).
    pub fn distribution_text(&self) -> String {
        let mut s = String::from("# percentile  one_over_one_minus_p  latency_us\n");
        for (pct, us) in self.distribution() {
            let tail = 1.0 - pct / 100.0;
            let x = if tail > 0.0 { 1.0 / tail } else { f64::MAX };
            s.push_str(&format!("{pct:.6} {x:.3} {us:.3}\n"));
        }
        s
    }
}

/// Records every sample of `text` (nanoseconds, one per line; empty lines and
/// `#` comments skipped) into `h`. Returns how many, or the first bad line.
pub fn parse_samples(text: &str, h: &mut LatencyHist) -> Result<u64, String> {
    let mut n = 0;
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let v: u64 = line
            .parse()
            .map_err(|_| format!("line {}: not a sample in nanoseconds: {line:?}", i + 1))?;
        h.record(v);
        n += 1;
    }
    Ok(n)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Which sequence numbers arrived as RDATA (repairs), so a delivered message
/// can be classified as repaired. A fixed 65 536-bit set keyed by the low 16
/// bits of the sequence number (no allocation after creation): exact as long
/// as fewer than 65 536 sequence numbers separate a repair from its delivery,
/// which the receive window guarantees for the windows used here.
#[derive(Debug, Clone)]
pub struct RepairSet {
    bits: Box<[u64; 1024]>,
}

impl Default for RepairSet {
    fn default() -> Self {
        RepairSet {
            bits: Box::new([0; 1024]),
        }
    }
}

impl RepairSet {
    fn slot(sqn: u32) -> (usize, u64) {
        let k = (sqn & 0xffff) as usize;
        (k / 64, 1u64 << (k % 64))
    }

    /// Marks `sqn` as received in an RDATA packet.
    pub fn mark(&mut self, sqn: u32) {
        let (w, b) = Self::slot(sqn);
        if let Some(x) = self.bits.get_mut(w) {
            *x |= b;
        }
    }

    /// Whether `sqn` was marked; clears the mark.
    pub fn take(&mut self, sqn: u32) -> bool {
        let (w, b) = Self::slot(sqn);
        match self.bits.get_mut(w) {
            Some(x) => {
                let was = *x & b != 0;
                *x &= !b;
                was
            }
            None => false,
        }
    }
}

/// PGM packet types (RFC 3208 section 8, type field of the common header).
pub mod pgm_type {
    /// SPM.
    pub const SPM: u8 = 0x00;
    /// ODATA.
    pub const ODATA: u8 = 0x04;
    /// RDATA.
    pub const RDATA: u8 = 0x05;
    /// NAK.
    pub const NAK: u8 = 0x08;
    /// NNAK.
    pub const NNAK: u8 = 0x09;
    /// NCF.
    pub const NCF: u8 = 0x0a;
    /// SPMR.
    pub const SPMR: u8 = 0x0c;
    /// POLR.
    pub const POLR: u8 = 0x02;
    /// ACK.
    pub const ACK: u8 = 0x0d;
}

/// Whether a PGM packet travels upstream (receiver to source: NAK, NNAK,
/// SPMR, POLR, ACK), i.e. belongs to the local *source* of a duplex host;
/// everything else (SPM, ODATA, RDATA, NCF, POLL) belongs to its receiver.
/// Too-short packets count as downstream (the receiver's parser rejects them).
pub fn is_upstream(pgm: &[u8]) -> bool {
    use pgm_type::*;
    matches!(
        pgm.get(4).map(|t| t & 0x0f),
        Some(NAK | NNAK | SPMR | POLR | ACK)
    )
}

/// For an RDATA packet, its data sequence number (`None` for anything else).
/// Layout: 16-byte common header, then data_sqn (u32 BE).
pub fn rdata_sqn(pgm: &[u8]) -> Option<u32> {
    if pgm.get(4).map(|t| t & 0x0f) != Some(pgm_type::RDATA) {
        return None;
    }
    let b: [u8; 4] = pgm.get(16..20)?.try_into().ok()?;
    Some(u32::from_be_bytes(b))
}

/// Pacing at a fixed rate: the send time of message `i` is `start + i / rate`.
#[derive(Debug, Clone, Copy)]
pub struct Pacer {
    start_ns: u64,
    period_ns: f64,
    next: u64,
}

impl Pacer {
    /// `rate` messages per second from `start_ns` (rate 0 is treated as 1).
    pub fn new(start_ns: u64, rate: u64) -> Self {
        Pacer {
            start_ns,
            period_ns: 1e9 / rate.max(1) as f64,
            next: 0,
        }
    }

    /// Index of the next message.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// When the next message is due.
    pub fn due_ns(&self) -> u64 {
        self.start_ns + (self.next as f64 * self.period_ns) as u64
    }

    /// If the next message is due at `now_ns`, returns its index and advances.
    pub fn poll(&mut self, now_ns: u64) -> Option<u64> {
        if now_ns >= self.due_ns() {
            let i = self.next;
            self.next += 1;
            Some(i)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_round_trip() {
        let mut b = [0u8; 64];
        assert!(write_message(&mut b, 0x0102_0304_0506_0708, 987_654_321));
        assert_eq!(&b[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(read_message(&b), Some((0x0102_0304_0506_0708, 987_654_321)));
        assert!(b[16..].iter().all(|&x| x == 0x08));
    }

    #[test]
    fn short_messages_refused() {
        let mut b = [0xaau8; 15];
        assert!(!write_message(&mut b, 1, 2));
        assert!(b.iter().all(|&x| x == 0xaa));
        assert_eq!(read_message(&b), None);
        assert_eq!(read_message(&[]), None);
        let mut b = [0u8; 16];
        assert!(write_message(&mut b, 7, 9));
        assert_eq!(read_message(&b), Some((7, 9)));
    }

    #[test]
    fn monotonic_advances() {
        let a = monotonic_ns();
        let b = monotonic_ns();
        assert!(a > 0);
        assert!(b >= a);
    }

    #[test]
    fn percentiles_of_known_samples() {
        let mut h = LatencyHist::new();
        // 1..=1000 µs, one sample each.
        for us in 1..=1000u64 {
            h.record(us * 1000);
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.002 + 0.001;
        assert!(close(s.percentiles[0], 500.0), "{s:?}");
        assert!(close(s.percentiles[1], 900.0), "{s:?}");
        assert!(close(s.percentiles[2], 990.0), "{s:?}");
        assert!(close(s.percentiles[3], 999.0), "{s:?}");
        assert!(close(s.max, 1000.0), "{s:?}");
        assert!(close(s.min, 1.0), "{s:?}");
        let j = h.to_json();
        assert_eq!(j["count"], 1000);
        assert!(close(j["p99"].as_f64().unwrap_or(0.0), 990.0), "{j}");
        assert_eq!(j["unit"], "us");
    }

    #[test]
    fn clamping_and_negative() {
        let mut h = LatencyHist::new();
        h.record(MAX_TRACKED_NS + 5);
        h.record_since(100, 50); // stamp in the future: 0 -> 1 ns
        assert_eq!(h.len(), 2);
        assert_eq!(h.clamped(), 1);
        let s = h.summary();
        assert!(s.min <= 0.001 + 1e-9, "{s:?}");
        assert!(s.max >= 59_000_000.0, "{s:?}");
    }

    #[test]
    fn empty_summary_is_zero() {
        let h = LatencyHist::new();
        assert!(h.is_empty());
        assert_eq!(h.summary().count, 0);
        assert!(h.distribution().is_empty());
        assert_eq!(h.to_json()["p99"], 0.0);
    }

    #[test]
    fn distribution_is_monotonic_and_ends_at_max() {
        let mut h = LatencyHist::new();
        for i in 0..10_000u64 {
            h.record(10_000 + (i * 7919) % 90_000);
        }
        h.record(5_000_000);
        let d = h.distribution();
        assert!(d.len() > 10);
        for w in d.windows(2) {
            assert!(w[1].0 >= w[0].0, "{w:?}");
            assert!(w[1].1 >= w[0].1, "{w:?}");
        }
        let last = d.last().copied().unwrap_or_default();
        assert!((last.1 - 5000.0).abs() < 10.0, "{last:?}");
        assert_eq!(d[0].0, 0.0);
        let text = h.distribution_text();
        assert_eq!(text.lines().count(), d.len() + 1);
        // 1/(1-p) column: 1 at p = 0, growing.
        let second: Vec<f64> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().nth(1)?.parse().ok())
            .collect();
        assert_eq!(second.first().copied(), Some(1.0));
        assert!(second.windows(2).all(|w| w[1] >= w[0]));
    }

    #[test]
    fn samples_parse() {
        let mut h = LatencyHist::new();
        assert_eq!(
            parse_samples("# rtt\n1000\n\n 3000 \n2000\n", &mut h),
            Ok(3)
        );
        assert_eq!(h.len(), 3);
        assert!((h.summary().percentiles[0] - 2.0).abs() < 0.01);
        let mut h = LatencyHist::new();
        let e = parse_samples("1\n-5\n", &mut h);
        assert!(e.is_err_and(|m| m.contains("line 2")));
        let e = parse_samples("12abc", &mut h);
        assert!(e.is_err());
    }

    #[test]
    fn repair_set_marks_and_clears() {
        let mut r = RepairSet::default();
        assert!(!r.take(5));
        r.mark(5);
        r.mark(0xffff_ffff);
        assert!(!r.take(6));
        assert!(r.take(5));
        assert!(!r.take(5), "take clears");
        assert!(r.take(0xffff_ffff));
        r.mark(0x1_0005);
        assert!(r.take(5), "keyed by the low 16 bits");
    }

    #[test]
    fn packet_classification() {
        let mut p = [0u8; 24];
        for (t, up) in [
            (pgm_type::NAK, true),
            (pgm_type::NNAK, true),
            (pgm_type::SPMR, true),
            (pgm_type::ACK, true),
            (pgm_type::POLR, true),
            (pgm_type::ODATA, false),
            (pgm_type::RDATA, false),
            (pgm_type::SPM, false),
            (pgm_type::NCF, false),
        ] {
            p[4] = t;
            assert_eq!(is_upstream(&p), up, "type {t:#x}");
        }
        assert!(!is_upstream(&[0u8; 3]));
        p[4] = pgm_type::RDATA;
        p[16..20].copy_from_slice(&0xdead_beefu32.to_be_bytes());
        assert_eq!(rdata_sqn(&p), Some(0xdead_beef));
        p[4] = pgm_type::ODATA;
        assert_eq!(rdata_sqn(&p), None);
        p[4] = pgm_type::RDATA;
        assert_eq!(rdata_sqn(&p[..18]), None);
    }

    #[test]
    fn pacer_spaces_messages() {
        let mut p = Pacer::new(1_000, 10_000); // every 100 µs
        assert_eq!(p.poll(999), None);
        assert_eq!(p.poll(1_000), Some(0));
        assert_eq!(p.poll(1_000), None);
        assert_eq!(p.due_ns(), 101_000);
        assert_eq!(p.poll(101_000), Some(1));
        // Late: catches up one message per poll.
        assert_eq!(p.poll(1_000_000), Some(2));
        assert_eq!(p.poll(1_000_000), Some(3));
        assert_eq!(p.next_index(), 4);
    }
}
