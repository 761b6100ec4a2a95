//! Command-line interface: one clap subcommand per module (`sim` now; `send`/`recv`
//! join it when the data plane exists).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod sim;

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
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sim(args) => sim::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xpgm: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
