//! The `xpgm` command. Subcommands live in [`cli`]; today only `sim`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
