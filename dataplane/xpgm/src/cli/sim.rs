//! `xpgm sim`: one source and N receivers on a simulated network (see docs/simulator.md).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use xpgm_sim::SimConfig;

/// Arguments of `xpgm sim`.
#[derive(Debug, Args)]
pub struct SimArgs {
    /// Number of receivers.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    receivers: u32,
    /// Loss on each receiver's link, in percent (both directions, independent per receiver).
    #[arg(long, default_value_t = 1.0, value_parser = percent, allow_negative_numbers = true)]
    loss: f64,
    /// Number of messages the source sends.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=100_000_000))]
    messages: u64,
    /// Size of each message in bytes (at least 8: each starts with its index).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(8..=1_048_576))]
    size: u32,
    /// Seed of every random choice; same seed, same result.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Bursty loss (Gilbert–Elliott, mean burst 4 packets) with the same mean loss.
    #[arg(long)]
    burst: bool,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    json: bool,
    /// Loss on the shared link from the source, in percent (a drop hits every receiver).
    #[arg(long, default_value_t = 0.0, value_parser = percent, allow_negative_numbers = true)]
    upstream_loss: f64,
    /// Messages per second offered by the application (0: as fast as back-pressure allows).
    #[arg(long, default_value_t = 10_000)]
    rate: u64,
    /// One-way delay of each receiver's link, microseconds (plus 500 µs shared upstream).
    #[arg(long, default_value_t = 500)]
    delay_us: u64,
    /// Jitter of each link, microseconds (uniform; reorders packets closer than this).
    #[arg(long, default_value_t = 200)]
    jitter_us: u64,
    /// Duplication on each receiver's link, in percent.
    #[arg(long, default_value_t = 0.0, value_parser = percent, allow_negative_numbers = true)]
    dup: f64,
    /// Extra loss of SPMs, in percent (per receiver).
    #[arg(long, default_value_t = 0.0, value_parser = percent, allow_negative_numbers = true)]
    spm_loss: f64,
    /// Extra loss of NAKs, in percent (per receiver, on the way to the source).
    #[arg(long, default_value_t = 0.0, value_parser = percent, allow_negative_numbers = true)]
    nak_loss: f64,
    /// Extra loss of NCFs, in percent (per receiver).
    #[arg(long, default_value_t = 0.0, value_parser = percent, allow_negative_numbers = true)]
    ncf_loss: f64,
    /// Extra loss of RDATA, in percent (per receiver).
    #[arg(long, default_value_t = 0.0, value_parser = percent, allow_negative_numbers = true)]
    rdata_loss: f64,
    /// Extra loss of SPMRs, in percent (per receiver, on the way to the source).
    #[arg(long, default_value_t = 0.0, value_parser = percent, allow_negative_numbers = true)]
    spmr_loss: f64,
    /// Exit with status 1 unless every receiver got every message once, in order.
    #[arg(long)]
    strict: bool,
}

/// Parses a percentage in `0..=100`.
fn percent(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{v} is outside 0..=100 (percent)"))
    }
}

impl SimArgs {
    /// The simulator configuration these arguments describe.
    pub fn config(&self) -> SimConfig {
        let mut c = SimConfig {
            seed: self.seed,
            receivers: self.receivers as usize,
            messages: self.messages,
            size: self.size as usize,
            msg_rate: self.rate,
            ..SimConfig::default()
        }
        .with_receiver_loss(self.loss / 100.0, self.burst);
        c.upstream.loss = self.upstream_loss / 100.0;
        if self.burst {
            c.upstream.burst_len = Some(SimConfig::DEFAULT_BURST_LEN);
        }
        c.downstream.delay = Duration::from_micros(self.delay_us);
        c.reverse.delay = Duration::from_micros(self.delay_us) + c.upstream.delay;
        let jitter = Duration::from_micros(self.jitter_us);
        c.upstream.jitter = Duration::ZERO;
        c.downstream.jitter = jitter;
        c.reverse.jitter = jitter;
        c.downstream.duplicate = self.dup / 100.0;
        c.type_loss.spm = self.spm_loss / 100.0;
        c.type_loss.nak = self.nak_loss / 100.0;
        c.type_loss.ncf = self.ncf_loss / 100.0;
        c.type_loss.rdata = self.rdata_loss / 100.0;
        c.type_loss.spmr = self.spmr_loss / 100.0;
        c
    }
}

/// Runs `xpgm sim`.
pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    let cfg = args.config();
    let report = xpgm_sim::run(&cfg).context("invalid simulation")?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    Ok(if args.strict && !report.full_delivery() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_are_checked() {
        assert_eq!(percent("5"), Ok(5.0));
        assert_eq!(percent("2.5%"), Ok(2.5));
        assert!(percent("101").is_err());
        assert!(percent("-1").is_err());
        assert!(percent("NaN").is_err());
        assert!(percent("five").is_err());
    }
}
