//! `xpgm send`: publish `--count` messages of `--size` bytes, each starting with its
//! index (u64 big-endian), then linger and end the session (FIN).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use xpgm::{Publisher, PublisherConfig};

use super::net::NetArgs;

/// Arguments of `xpgm send`.
#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    net: NetArgs,
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
    /// After the last message, keep answering NAKs this long (FIN is sent first).
    #[arg(long, default_value_t = 2000)]
    linger_ms: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs `xpgm send`.
pub fn run(args: &SendArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = PublisherConfig::new(args.net.session());
    let size = args.size as usize;
    cfg.max_message = cfg.max_message.max(size);
    cfg.source.max_tpdu = cfg.session.max_tpdu();
    if let Some(rate) = args.rate {
        let tpdu = (size + xpgm::core::config::DATA_OVERHEAD) as u64;
        let tpdus = cfg.source.tpdus_for(size) as u64;
        cfg.source.txw_max_rte = rate
            .saturating_mul(tpdu.max(1))
            .saturating_mul(tpdus.max(1));
    }
    let mut publisher = Publisher::new(cfg).context("cannot start the publisher")?;
    let mut msg = vec![0u8; size];
    let start = Instant::now();
    for i in 0..args.count {
        msg[..8].copy_from_slice(&i.to_be_bytes());
        let fill = (i & 0xff) as u8;
        msg[8..].fill(fill);
        publisher
            .send(&msg)
            .with_context(|| format!("send of message {i} failed"))?;
    }
    publisher
        .flush(Duration::from_secs(600))
        .context("waiting for the last message to be transmitted")?;
    let secs = start.elapsed().as_secs_f64();
    let transport = publisher.transport().name();
    let tsi = publisher.tsi();
    let stats = publisher
        .finish(Duration::from_millis(args.linger_ms))
        .context("publisher failed while lingering")?;
    let rate = if secs > 0.0 {
        args.count as f64 / secs
    } else {
        0.0
    };
    if args.json {
        let j = serde_json::json!({
            "sent": args.count,
            "bytes": args.count * u64::from(args.size),
            "secs": secs,
            "msgs_per_s": rate,
            "naks_received": stats.naks_received,
            "ncf_sent": stats.ncf_sent,
            "rdata_sent": stats.rdata_sent,
            "transport": transport,
            "odata_sent": stats.odata_sent,
            "spm_sent": stats.spm_sent,
            "naks_outside_window": stats.naks_outside_window,
            "send_errors": stats.send_errors,
            "tsi": tsi.to_string(),
        });
        println!("{j}");
    } else {
        println!(
            "sent {} messages ({} bytes) in {secs:.3} s ({rate:.0} msg/s) over {transport}; \
             NAKs received {}, NCF sent {}, RDATA sent {}",
            args.count,
            args.count * u64::from(args.size),
            stats.naks_received,
            stats.ncf_sent,
            stats.rdata_sent
        );
    }
    Ok(ExitCode::SUCCESS)
}
