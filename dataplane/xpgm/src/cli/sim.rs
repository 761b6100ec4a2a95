//! `xpgm sim`: one source and N receivers on a simulated network (see docs/simulator.md).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use clap::Parser;
use xpgm_core::rng::Rng;
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
    /// Bursty loss on the receivers' links (Gilbert–Elliott, mean burst 4 packets)
    /// with the same mean loss.
    #[arg(long)]
    burst: bool,
    /// Bursty loss on the shared upstream link too (with `--upstream-loss`).
    #[arg(long)]
    upstream_burst: bool,
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
    /// Duplication on each receiver's link, in percent (both directions).
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
    /// How long the source application stays after closing its session before it
    /// exits, milliseconds (receivers that never learnt the end find out at peer expiry).
    #[arg(long, default_value_t = 10_000)]
    linger_ms: u64,
    /// Cap on processed events (the run ends "event_limit" there).
    #[arg(long, default_value_t = 2_000_000_000)]
    max_events: u64,
    /// Exit with status 1 unless every receiver got every message once, in order.
    #[arg(long)]
    strict: bool,
    /// Constant repair timers (NAK_BO_IVL 50 ms uniform, NAK_RPT_IVL / NAK_RDATA_IVL
    /// 200 ms) and no repeat-RDATA hold-off: the timing before RTT estimation, to
    /// compare.
    #[arg(long)]
    fixed_timers: bool,
    /// A/B lines: the network exists this many times (1 to 4), with independent loss
    /// draws on every line; the source sends on all, receivers arbitrate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=4))]
    lines: u8,
    /// Extra downstream delay of line i: i times this (µs).
    #[arg(long, default_value_t = 10)]
    line_skew_us: u64,
    /// Instead of one run: N runs with faults drawn at random (the property tests'
    /// ranges), each checked for exact accounting; every failure is printed as the
    /// `xpgm sim` command line that reproduces it. Exit status 1 if any failed.
    #[arg(long, value_name = "N")]
    soak: Option<u64>,
    /// Seed of the draws of `--soak` (default: from the clock; printed).
    #[arg(long)]
    soak_seed: Option<u64>,
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
        c.linger = Duration::from_millis(self.linger_ms);
        c.max_events = self.max_events;
        if self.upstream_burst {
            c.upstream.burst_len = Some(SimConfig::DEFAULT_BURST_LEN);
        }
        c.downstream.delay = Duration::from_micros(self.delay_us);
        c.reverse.delay = Duration::from_micros(self.delay_us) + c.upstream.delay;
        let jitter = Duration::from_micros(self.jitter_us);
        c.upstream.jitter = Duration::ZERO;
        c.downstream.jitter = jitter;
        c.reverse.jitter = jitter;
        c.downstream.duplicate = self.dup / 100.0;
        c.reverse.duplicate = self.dup / 100.0;
        c.type_loss.spm = self.spm_loss / 100.0;
        c.type_loss.nak = self.nak_loss / 100.0;
        c.type_loss.ncf = self.ncf_loss / 100.0;
        c.type_loss.rdata = self.rdata_loss / 100.0;
        c.type_loss.spmr = self.spmr_loss / 100.0;
        c.lines = self.lines;
        c.line_skew = Duration::from_micros(self.line_skew_us);
        if self.fixed_timers {
            c.receiver.nak_adaptive = false;
            c.source.rdata_holdoff = Duration::ZERO;
        }
        c
    }
}

/// Arguments of one soak case drawn from `rng`, over the ranges of the property test
/// `every_message_is_delivered_once_in_order_or_reported` (dataplane/sim/tests/engine.rs).
fn draw(rng: &mut Rng) -> Vec<String> {
    let mut pct = |max: f64| format!("{}", rng.unit() * max);
    let loss = pct(15.0);
    let upstream = pct(5.0);
    let dup = pct(5.0);
    let spm = pct(50.0);
    let nak = pct(50.0);
    let ncf = pct(50.0);
    let rdata = pct(30.0);
    let mut a: Vec<String> = vec![
        "--receivers".into(),
        (1 + rng.below(5)).to_string(),
        "--messages".into(),
        (50 + rng.below(250)).to_string(),
        "--size".into(),
        if rng.chance(0.5) {
            8 + rng.below(192)
        } else {
            1000 + rng.below(4000)
        }
        .to_string(),
        "--seed".into(),
        rng.next_u64().to_string(),
        "--jitter-us".into(),
        rng.below(2000).to_string(),
    ];
    for (flag, v) in [
        ("--loss", loss),
        ("--upstream-loss", upstream),
        ("--dup", dup),
        ("--spm-loss", spm),
        ("--nak-loss", nak),
        ("--ncf-loss", ncf),
        ("--rdata-loss", rdata),
    ] {
        a.push(flag.into());
        a.push(v);
    }
    if rng.chance(0.5) {
        a.push("--burst".into());
    }
    a.extend(["--max-events".into(), "3000000".into()]);
    a
}

/// `xpgm sim --soak N`.
fn soak(cases: u64, seed: Option<u64>) -> anyhow::Result<ExitCode> {
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    println!("xpgm sim --soak {cases} --soak-seed {seed}");
    let mut rng = Rng::new(seed);
    let mut failed = 0u64;
    for i in 0..cases {
        let argv = draw(&mut rng);
        let parsed =
            SimCommand::try_parse_from(std::iter::once("sim".to_string()).chain(argv.clone()))
                .context("soak drew arguments the CLI refuses")?;
        let report = xpgm_sim::run(&parsed.args.config()).context("invalid simulation")?;
        let errs = report.accounting_errors();
        if !errs.is_empty() {
            failed += 1;
            println!("case {i} FAILED: {}", errs.join("; "));
            println!("  reproduce: xpgm sim {}", argv.join(" "));
        }
    }
    println!("soak: {cases} cases, {failed} failed (seed {seed})");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `SimArgs` on their own, to parse a drawn case exactly as `xpgm sim` would.
#[derive(Debug, clap::Parser)]
struct SimCommand {
    #[command(flatten)]
    args: SimArgs,
}

/// Runs `xpgm sim`.
pub fn run(args: &SimArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.soak {
        return soak(n, args.soak_seed);
    }
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
    fn soak_cases_parse_and_reach_the_config() {
        let mut rng = Rng::new(7);
        for _ in 0..200 {
            let argv = draw(&mut rng);
            let c = SimCommand::try_parse_from(std::iter::once("sim".to_string()).chain(argv))
                .expect("drawn arguments parse")
                .args
                .config();
            assert!(c.validate().is_ok(), "{c:?}");
            assert_eq!(c.max_events, 3_000_000);
            assert_eq!(c.reverse.duplicate, c.downstream.duplicate);
        }
    }

    #[test]
    fn every_fault_flag_reaches_the_config() {
        let c = SimCommand::try_parse_from([
            "sim",
            "--loss",
            "2",
            "--burst",
            "--upstream-loss",
            "3",
            "--upstream-burst",
            "--jitter-us",
            "1153",
            "--dup",
            "4",
            "--spm-loss",
            "48.25",
            "--nak-loss",
            "6",
            "--ncf-loss",
            "7",
            "--rdata-loss",
            "8",
            "--spmr-loss",
            "9",
            "--linger-ms",
            "250",
            "--max-events",
            "1234",
        ])
        .expect("parses")
        .args
        .config();
        assert!(c.downstream.burst_len.is_some() && c.upstream.burst_len.is_some());
        assert_eq!(c.upstream.loss, 0.03);
        assert_eq!(c.downstream.jitter, Duration::from_micros(1153));
        assert_eq!(c.reverse.jitter, Duration::from_micros(1153));
        assert_eq!((c.downstream.duplicate, c.reverse.duplicate), (0.04, 0.04));
        assert_eq!(c.type_loss.spm, 48.25 / 100.0);
        assert_eq!(
            (
                c.type_loss.nak,
                c.type_loss.ncf,
                c.type_loss.rdata,
                c.type_loss.spmr
            ),
            (0.06, 0.07, 0.08, 0.09)
        );
        assert_eq!(c.linger, Duration::from_millis(250));
        assert_eq!(c.max_events, 1234);
        assert!(c.receiver.nak_adaptive, "RTT-derived timers by default");
        assert_eq!(c.source.rdata_holdoff, Duration::from_millis(1));
        let fixed = SimCommand::try_parse_from(["sim", "--fixed-timers"])
            .expect("parses")
            .args
            .config();
        assert!(!fixed.receiver.nak_adaptive);
        assert_eq!(fixed.source.rdata_holdoff, Duration::ZERO);
        let plain = SimCommand::try_parse_from(["sim", "--burst"])
            .expect("parses")
            .args
            .config();
        assert!(
            plain.upstream.burst_len.is_none(),
            "--burst alone leaves upstream independent"
        );
    }

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
