//! The `xpgm` command. Subcommands live in [`cli`]: `sim`, `send`, `recv`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
