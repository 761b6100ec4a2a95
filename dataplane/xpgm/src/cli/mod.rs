//! Command-line interface: one clap subcommand per module (`sim`, `send`, `recv`).

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod net;
mod recv;
mod send;
mod sim;
mod stamp;

/// xpgm: kernel-bypass PGM (RFC 3208) for Linux.
#[derive(Debug, Parser)]
#[command(name = "xpgm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the protocol engines on a simulated lossy network (deterministic, virtual time).
    Sim(sim::SimArgs),
    /// Publish numbered messages to a multicast group (see docs/library.md).
    Send(send::SendArgs),
    /// Receive and check numbered messages from a multicast group.
    Recv(recv::RecvArgs),
}

/// Worker-thread options shared by `send` and `recv`.
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// Pin the worker thread to this core (a core id this process may run on).
    #[arg(long, value_name = "N")]
    core: Option<usize>,
    /// How the worker waits when idle: `sleep` (in poll(2), leaving the core to others)
    /// or `busy` (spin for the lowest latency; for a dedicated core, with --core).
    #[arg(long, value_name = "sleep|busy", default_value = "sleep")]
    idle: xpgm::Idle,
    /// `--transport xdp`: how long xpgmd may be gone (exited, or ended the session)
    /// before the session ends with an error naming the cause; if it is back sooner
    /// the session registers again and NAKs repair what was missed.
    #[arg(long, value_name = "MS", default_value_t = xpgm::worker::DEFAULT_CONTROL_GRACE.as_millis() as u64)]
    control_grace_ms: u64,
}

impl WorkerArgs {
    /// The idle policy chosen.
    pub(crate) fn idle(&self) -> xpgm::Idle {
        self.idle
    }

    /// The core chosen, if any.
    pub(crate) fn core(&self) -> Option<usize> {
        self.core
    }

    /// The grace period for a lost xpgmd.
    pub(crate) fn control_grace(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.control_grace_ms)
    }
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim::run(&args),
        Command::Send(args) => send::run(&args),
        Command::Recv(args) => recv::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xpgm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `frames` in `--json` (send and recv): what became of the frames the transport
/// received below PGM (AF_XDP; zeros over kernel sockets). docs/reliability.md
/// section 9.
fn frames_json(f: &xpgm::transport::RxCounters) -> serde_json::Value {
    serde_json::json!({
        "rejected": f.rejected(),
        "rejected_checksum": f.rejected_checksum,
        "rejected_header": f.rejected_header,
        "rejected_not_pgm": f.rejected_not_pgm,
        "rejected_address": f.rejected_address,
        "udp_checksum_bad_accepted": f.udp_checksum_bad_accepted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    fn worker_args(args: &[&str]) -> Result<(Option<usize>, xpgm::Idle), clap::Error> {
        let cli = Cli::try_parse_from(args)?;
        Ok(match cli.command {
            Command::Send(a) => (a.worker.core(), a.worker.idle()),
            Command::Recv(a) => (a.worker.core(), a.worker.idle()),
            Command::Sim(_) => panic!("not a worker command"),
        })
    }

    #[test]
    fn send_and_recv_take_core_and_idle_defaulting_to_sleep_unpinned() {
        let base = ["--iface", "lo", "--group", "239.1.2.3"];
        for cmd in ["send", "recv"] {
            let mut argv = vec!["xpgm", cmd];
            argv.extend(base);
            assert_eq!(
                worker_args(&argv).unwrap(),
                (None, xpgm::Idle::Sleep),
                "{cmd}"
            );
            argv.extend(["--core", "1", "--idle", "busy"]);
            assert_eq!(
                worker_args(&argv).unwrap(),
                (Some(1), xpgm::Idle::BusyPoll),
                "{cmd}"
            );
            let mut bad = vec!["xpgm", cmd];
            bad.extend(base);
            bad.extend(["--idle", "spin"]);
            let e = worker_args(&bad).unwrap_err().to_string();
            assert!(e.contains("expected 'sleep' or 'busy'"), "{cmd}: {e}");
        }
    }

    #[test]
    fn send_and_recv_take_control_grace_defaulting_to_five_seconds() {
        let grace = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            match cli.command {
                Command::Send(a) => a.worker.control_grace(),
                Command::Recv(a) => a.worker.control_grace(),
                Command::Sim(_) => panic!("not a worker command"),
            }
        };
        for cmd in ["send", "recv"] {
            let mut argv = vec!["xpgm", cmd, "--iface", "lo", "--group", "239.1.2.3"];
            assert_eq!(grace(&argv), std::time::Duration::from_secs(5), "{cmd}");
            argv.extend(["--control-grace-ms", "1500"]);
            assert_eq!(
                grace(&argv),
                std::time::Duration::from_millis(1500),
                "{cmd}"
            );
        }
    }
}
