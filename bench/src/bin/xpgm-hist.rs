//! `xpgm-hist`: latency samples (nanoseconds, one per line; e.g. from
//! `pgmpeer ping --samples`) to the same HdrHistogram report `xpgm-rtt` prints.
//!
//! ```text
//! xpgm-hist --samples FILE [--key rtt] [--json FILE] [--dist FILE]
//! ```
//!
//! Lines that are empty or start with `#` are skipped; any other line that is
//! not a non-negative integer is an error (named by line number).

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use xpgm_bench::latency::{LatencyHist, parse_samples};

/// Samples to percentiles (see the module documentation).
#[derive(Parser, Debug)]
#[command(name = "xpgm-hist")]
struct Args {
    /// File of samples in nanoseconds, one per line.
    #[arg(long)]
    samples: PathBuf,
    /// JSON key of the histogram in the report.
    #[arg(long, default_value = "rtt")]
    key: String,
    /// Write the JSON report here (default: stdout).
    #[arg(long)]
    json: Option<PathBuf>,
    /// Write the percentile distribution (gnuplot data) here.
    #[arg(long)]
    dist: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let text = std::fs::read_to_string(&a.samples)
        .with_context(|| format!("reading {}", a.samples.display()))?;
    let mut h = LatencyHist::new();
    parse_samples(&text, &mut h).map_err(|e| anyhow::anyhow!("{}: {e}", a.samples.display()))?;
    let mut report = serde_json::Map::new();
    report.insert(a.key.clone(), h.to_json());
    let out = serde_json::to_string_pretty(&serde_json::Value::Object(report))?;
    if let Some(p) = &a.dist {
        std::fs::write(p, h.distribution_text()).with_context(|| format!("{}", p.display()))?;
    }
    match &a.json {
        Some(p) => std::fs::write(p, out + "\n").with_context(|| format!("{}", p.display()))?,
        None => println!("{out}"),
    }
    Ok(())
}
