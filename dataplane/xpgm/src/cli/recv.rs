//! `xpgm recv`: receive messages whose first 8 bytes are their index and check the
//! sequence: duplicates, out-of-order deliveries and index gaps not explained by
//! reported unrecoverable loss.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use xpgm::{Delivery, Error, Subscriber, SubscriberConfig};

use super::net::NetArgs;

/// Arguments of `xpgm recv`.
#[derive(Debug, Args)]
pub struct RecvArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Exit after this many messages (default: until the session ends or goes idle).
    #[arg(long)]
    count: Option<u64>,
    /// Exit after this many milliseconds without a message (also before the first).
    #[arg(long, default_value_t = 5000)]
    idle_ms: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// How many skipped index ranges are remembered to tell late (out-of-order) messages
/// from duplicates.
const GAP_MEMORY: usize = 64;

/// Checks a stream of message indexes.
#[derive(Debug, Default)]
pub struct IndexCheck {
    /// Next index expected (`None` before the first message: it sets the base).
    expected: Option<u64>,
    /// First index seen.
    pub first: Option<u64>,
    /// Unrecoverable sequence numbers reported and not yet matched to a jump.
    explained: u64,
    /// Recently skipped ranges `[from, to)`.
    gaps: Vec<(u64, u64)>,
    /// Messages whose index was already delivered.
    pub duplicates: u64,
    /// Messages that arrived after a later index (inside a skipped range).
    pub out_of_order: u64,
    /// Jumps forward not explained by reported unrecoverable loss.
    pub index_gaps: u64,
    /// Indexes skipped by all jumps (explained or not).
    pub skipped: u64,
}

impl IndexCheck {
    /// Notes `count` sequence numbers reported unrecoverable.
    pub fn unrecoverable(&mut self, count: u64) {
        self.explained = self.explained.saturating_add(count);
    }

    /// Notes a delivered message with index `idx`.
    pub fn message(&mut self, idx: u64) {
        let Some(e) = self.expected else {
            self.first = Some(idx);
            self.expected = Some(idx.saturating_add(1));
            return;
        };
        if idx == e {
            self.expected = Some(e.saturating_add(1));
        } else if idx > e {
            let gap = idx - e;
            self.skipped += gap;
            if self.explained >= gap {
                self.explained -= gap;
            } else {
                self.index_gaps += 1;
                self.explained = 0;
            }
            if self.gaps.len() == GAP_MEMORY {
                self.gaps.remove(0);
            }
            self.gaps.push((e, idx));
            self.expected = Some(idx.saturating_add(1));
        } else if let Some(pos) = self.gaps.iter().position(|&(a, b)| a <= idx && idx < b) {
            self.out_of_order += 1;
            // A late message fills its slot of the gap; seeing it again is a duplicate.
            let (a, b) = self.gaps.remove(pos);
            if a < idx {
                self.gaps.push((a, idx));
            }
            if idx + 1 < b {
                self.gaps.push((idx + 1, b));
            }
        } else {
            self.duplicates += 1;
        }
    }
}

/// Runs `xpgm recv`.
pub fn run(args: &RecvArgs) -> anyhow::Result<ExitCode> {
    let cfg = SubscriberConfig::new(args.net.session());
    let mut sub = Subscriber::new(cfg).context("cannot start the subscriber")?;
    let idle = Duration::from_millis(args.idle_ms);
    let mut check = IndexCheck::default();
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut short = 0u64;
    let mut corrupt = 0u64;
    let mut unrecoverable = 0u64;
    let mut ended = false;
    let mut first_at: Option<Instant> = None;
    let mut last_at = Instant::now();
    let mut last_activity = Instant::now();
    loop {
        if args.count.is_some_and(|c| received >= c) {
            break;
        }
        let left = idle.saturating_sub(last_activity.elapsed());
        if left.is_zero() {
            break;
        }
        match sub.recv(Some(left)) {
            Ok(Delivery::Data { data, .. }) => {
                let now = Instant::now();
                last_activity = now;
                last_at = now;
                first_at.get_or_insert(now);
                received += 1;
                bytes += data.len() as u64;
                let Some(head) = data.get(..8) else {
                    short += 1;
                    continue;
                };
                let mut b = [0u8; 8];
                b.copy_from_slice(head);
                let idx = u64::from_be_bytes(b);
                let fill = (idx & 0xff) as u8;
                if data
                    .get(8..)
                    .is_some_and(|rest| rest.iter().any(|&x| x != fill))
                {
                    corrupt += 1;
                }
                check.message(idx);
            }
            Ok(Delivery::Unrecoverable { count, .. }) => {
                last_activity = Instant::now();
                unrecoverable += u64::from(count);
                check.unrecoverable(u64::from(count));
            }
            Ok(Delivery::SessionEnd { .. }) => {
                ended = true;
                break;
            }
            Ok(_) => {}
            Err(Error::Timeout) => break,
            Err(e) => return Err(e).context("subscriber failed"),
        }
    }
    let secs = first_at.map_or(0.0, |f| last_at.duration_since(f).as_secs_f64());
    let rate = if secs > 0.0 {
        received as f64 / secs
    } else {
        0.0
    };
    let transport = sub.transport().name();
    let stats = sub.close().context("subscriber failed")?;
    if args.json {
        let j = serde_json::json!({
            "received": received,
            "bytes": bytes,
            "secs": secs,
            "msgs_per_s": rate,
            "unrecoverable": unrecoverable,
            "duplicates": check.duplicates,
            "out_of_order": check.out_of_order,
            "index_gaps": check.index_gaps,
            "naks_sent": stats.naks_sent,
            "transport": transport,
            "first_index": check.first,
            "skipped": check.skipped,
            "short": short,
            "corrupt": corrupt,
            "session_end": ended,
            "odata_received": stats.odata_received,
            "rdata_received": stats.rdata_received,
            "duplicate_packets": stats.duplicates,
            "ncf_received": stats.ncf_received,
        });
        println!("{j}");
    } else {
        println!(
            "received {received} messages ({bytes} bytes) in {secs:.3} s ({rate:.0} msg/s) over \
             {transport}; unrecoverable {unrecoverable}, duplicates {}, out of order {}, index \
             gaps {}, NAKs sent {}{}",
            check.duplicates,
            check.out_of_order,
            check.index_gaps,
            stats.naks_sent,
            if ended { ", session ended" } else { "" }
        );
    }
    if let Some(c) = args.count
        && received < c
    {
        eprintln!("xpgm recv: received {received} of {c} messages");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::IndexCheck;

    #[test]
    fn in_order_stream_from_any_base_is_clean() {
        let mut c = IndexCheck::default();
        for i in 500..600 {
            c.message(i);
        }
        assert_eq!(c.first, Some(500));
        assert_eq!((c.duplicates, c.out_of_order, c.index_gaps), (0, 0, 0));
    }

    #[test]
    fn explained_jump_is_not_a_gap_but_an_unexplained_one_is() {
        let mut c = IndexCheck::default();
        c.message(0);
        c.unrecoverable(3);
        c.message(4); // 1,2,3 lost and reported
        assert_eq!(c.index_gaps, 0);
        c.message(7); // 5,6 silently missing
        assert_eq!(c.index_gaps, 1);
        assert_eq!(c.skipped, 5);
    }

    #[test]
    fn late_message_is_out_of_order_and_repeat_is_duplicate() {
        let mut c = IndexCheck::default();
        c.message(0);
        c.message(3);
        c.message(1);
        assert_eq!(c.out_of_order, 1);
        c.message(1);
        c.message(3);
        assert_eq!(c.duplicates, 2);
        c.message(2);
        assert_eq!(c.out_of_order, 2);
    }
}
