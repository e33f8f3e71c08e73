//! `flotilla`: the one binary. Its roles (server, executor, client commands) are subcommands.
//!
//! This file only parses arguments and dispatches; each command lives in `commands/` and the
//! real work in the library crates, so the binary stays small and boring.

mod cli;
mod client;
mod commands;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let arguments = cli::Cli::parse();
    match commands::run(arguments) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}
