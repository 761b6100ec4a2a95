//! `xpgm send`: publish `--count` messages of `--size` bytes, each starting with its
//! index (u64 big-endian), then linger and end the session (FIN). With `--stamp`,
//! bytes 8..16 carry the send time (see [`super::stamp`]).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use xpgm::{Publisher, PublisherConfig};

use super::net::{Framing, NetArgs};
use super::stamp::{self, Clock};
use xpgm::framing::zmq;

/// Arguments of `xpgm send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    pub(super) worker: super::WorkerArgs,
    /// Number of messages.
    #[arg(long, default_value_t = 1000)]
    count: u64,
    /// Bytes per message (at least 8: each starts with its index).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=65_536))]
    size: u32,
    /// Messages per second (the engine's TXW_MAX_RTE is set to this many TPDUs per
    /// second). Without it, as fast as the transport takes them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    rate: Option<u64>,
    /// Repair budget: bytes per second of RDATA (TPDUs), however many NAKs arrive
    /// (default: the engine's, `SourceConfig::rdata_max_rte`; 0 = unlimited).
    #[arg(long, value_name = "BYTES_PER_S")]
    repair_rate: Option<u64>,
    /// NCF budget: bytes per second of NCFs, however many NAKs arrive (default: the
    /// engine's, `SourceConfig::ncf_max_rte`; 0 = unlimited).
    #[arg(long, value_name = "BYTES_PER_S")]
    ncf_rate: Option<u64>,
    /// After the last message, keep answering NAKs this long (FIN is sent first).
    #[arg(long, default_value_t = 2000)]
    linger_ms: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Write the send time (nanoseconds of `--clock`, u64 big-endian) into bytes 8..16
    /// of each message, for `xpgm recv --latency`. Needs --size 16 or more. With
    /// --rate, the sender then paces messages itself at that rate and sets the engine's
    /// rate limit 25% higher (room for repairs), so that messages do not wait in the
    /// publish queue and the latency is that of the path, not of the queue.
    #[arg(long)]
    stamp: bool,
    /// Clock of `--stamp`: `monotonic` (shared by all network namespaces of one
    /// machine) or `realtime` (across machines; needs PTP-synchronised clocks).
    #[arg(long, value_enum, default_value_t = Clock::Monotonic)]
    clock: Clock,
}

/// Engine rate limit over the offered rate when `--stamp` paces the messages itself.
const STAMP_RATE_HEADROOM_PCT: u64 = 125;

/// Paces a loop to `rate` iterations per second from `start`, sleeping when ahead
/// (never busy-waiting: the machine's cores are shared with the receivers).
#[derive(Debug)]
struct Pacer {
    start: Instant,
    ns_per_msg: f64,
}

impl Pacer {
    fn new(rate: u64) -> Pacer {
        Pacer {
            start: Instant::now(),
            ns_per_msg: 1e9 / rate.max(1) as f64,
        }
    }

    /// How long to wait before message `i` is due (zero when due or late).
    fn wait(&self, i: u64, now: Instant) -> Duration {
        let due = Duration::from_nanos((i as f64 * self.ns_per_msg) as u64);
        due.saturating_sub(now.duration_since(self.start))
    }
}

/// Peak resident set size of this process (`VmHWM` of /proc/self/status), KiB; `None`
/// where /proc is not available.
pub(super) fn vm_hwm_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs `xpgm send`.
pub fn run(args: &SendArgs) -> anyhow::Result<ExitCode> {
    if args.stamp && args.size < stamp::MIN_STAMPED_SIZE {
        anyhow::bail!(
            "--stamp needs --size {} or more (8 bytes of index, then 8 of send time); got --size {}",
            stamp::MIN_STAMPED_SIZE,
            args.size
        );
    }
    let mut cfg = PublisherConfig::new(args.net.session());
    cfg.idle = args.worker.idle();
    cfg.core = args.worker.core();
    cfg.control_grace = args.worker.control_grace();
    let size = args.size as usize;
    let zmq_framing = args.net.framing == Framing::Zmq;
    let apdu_size = if zmq_framing {
        zmq::apdu_len(size)
    } else {
        size
    };
    cfg.max_message = cfg.max_message.max(apdu_size);
    cfg.source.max_tpdu = cfg.session.max_tpdu();
    if let Some(rate) = args.rate {
        let tpdu = (size + xpgm::core::config::DATA_OVERHEAD) as u64;
        let tpdus = cfg.source.tpdus_for(size) as u64;
        cfg.source.txw_max_rte = rate
            .saturating_mul(tpdu.max(1))
            .saturating_mul(tpdus.max(1));
        if args.stamp {
            cfg.source.txw_max_rte = cfg
                .source
                .txw_max_rte
                .saturating_mul(STAMP_RATE_HEADROOM_PCT)
                / 100;
        }
    }
    if let Some(r) = args.repair_rate {
        cfg.source.rdata_max_rte = r;
    }
    if let Some(r) = args.ncf_rate {
        cfg.source.ncf_max_rte = r;
    }
    let (rdata_max_rte, ncf_max_rte) = (cfg.source.rdata_max_rte, cfg.source.ncf_max_rte);
    // ZeroMQ receivers take only single-TPDU APDUs: cut each message into parts.
    let zmq_apdu = cfg.source.max_single_tsdu();
    let mut publisher = Publisher::new(cfg).context("cannot start the publisher")?;
    let mut msg = vec![0u8; size];
    let mut zmq_sender = zmq::ZmqSender::new(zmq_apdu);
    let start = Instant::now();
    let pacer = args.rate.filter(|_| args.stamp).map(Pacer::new);
    // A failure (e.g. xpgmd lost for good) ends the run with the summary and the error.
    let mut failure: Option<String> = None;
    let mut sent = 0u64;
    for i in 0..args.count {
        msg[..8].copy_from_slice(&i.to_be_bytes());
        let fill = (i & 0xff) as u8;
        msg[8..].fill(fill);
        if let Some(p) = &pacer {
            let wait = p.wait(i, Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
        }
        if args.stamp {
            stamp::write_stamp(&mut msg, args.clock.now_ns());
        }
        let r = if zmq_framing {
            zmq_sender.send(&mut publisher, &msg, false)
        } else {
            publisher.send(&msg)
        };
        if let Err(e) = r {
            failure = Some(format!("send of message {i} failed: {e}"));
            break;
        }
        sent += 1;
    }
    if failure.is_none()
        && let Err(e) = publisher.flush(Duration::from_secs(600))
    {
        failure = Some(format!(
            "waiting for the last message to be transmitted: {e}"
        ));
    }
    let secs = start.elapsed().as_secs_f64();
    let transport = publisher.transport().name();
    let tsi = publisher.tsi();
    let before = publisher.stats();
    let stats = match publisher.finish(Duration::from_millis(args.linger_ms)) {
        Ok(s) => s,
        Err(e) => {
            failure.get_or_insert(format!("publisher failed while lingering: {e}"));
            before
        }
    };
    let rate = if secs > 0.0 { sent as f64 / secs } else { 0.0 };
    if args.json {
        let j = serde_json::json!({
            "sent": sent,
            "bytes": sent * u64::from(args.size),
            "secs": secs,
            "msgs_per_s": rate,
            "naks_received": stats.naks_received,
            "ncf_sent": stats.ncf_sent,
            "rdata_sent": stats.rdata_sent,
            "transport": transport,
            "odata_sent": stats.odata_sent,
            "spm_sent": stats.spm_sent,
            "naks_outside_window": stats.naks_outside_window,
            "naks_coalesced": stats.naks_coalesced,
            "spmr_received": stats.spmr_received,
            "ncf_bytes": stats.ncf_bytes,
            "ncfs_dropped": stats.ncfs_dropped,
            "rdata_tpdu_bytes": stats.rdata_tpdu_bytes,
            "repairs_dropped": stats.repairs_dropped,
            "repairs_expired": stats.repairs_expired,
            "packets_ignored": stats.packets_ignored,
            "rdata_max_rte": rdata_max_rte,
            "ncf_max_rte": ncf_max_rte,
            "vm_hwm_kib": vm_hwm_kib(),
            "send_errors": stats.send_errors,
            "tsi": tsi.to_string(),
            "stamped": args.stamp,
            "control_lost": stats.control_lost,
            "control_reconnects": stats.control_reconnects,
            "unsent": stats.unsent,
            "frames": super::frames_json(&stats.frames),
            "naks_held_off": stats.naks_held_off,
            "overrun": {
                "total": stats.overrun.total(),
                "xdp_rx_dropped": stats.overrun.xdp_rx_dropped,
                "xdp_rx_ring_full": stats.overrun.xdp_rx_ring_full,
                "xdp_fill_ring_empty": stats.overrun.xdp_fill_ring_empty,
                "socket_drops": stats.overrun.socket_drops,
            },
            "error": failure,
        });
        println!("{j}");
    } else {
        println!(
            "sent {} messages ({} bytes) in {secs:.3} s ({rate:.0} msg/s) over {transport}; \
             NAKs received {}, NCF sent {}, RDATA sent {}",
            sent,
            sent * u64::from(args.size),
            stats.naks_received,
            stats.ncf_sent,
            stats.rdata_sent
        );
    }
    if let Some(e) = failure {
        eprintln!("xpgm send: {e}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_read_from_proc() {
        let kib = vm_hwm_kib().expect("VmHWM in /proc/self/status");
        // A test binary maps at least a few hundred KiB.
        assert!(kib > 100, "{kib} KiB");
    }

    #[test]
    fn pacer_schedules_messages_at_the_rate() {
        let p = Pacer::new(1000); // one message per millisecond
        let t0 = p.start;
        assert_eq!(p.wait(0, t0), Duration::ZERO);
        assert_eq!(p.wait(5, t0), Duration::from_millis(5));
        assert_eq!(
            p.wait(5, t0 + Duration::from_millis(2)),
            Duration::from_millis(3)
        );
        // Late: no wait, the loop catches up.
        assert_eq!(p.wait(5, t0 + Duration::from_millis(9)), Duration::ZERO);
    }
}
