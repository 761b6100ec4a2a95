//! Command-line interface: one clap subcommand per module (`sim`, `send`, `recv`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
