//! One module per command group; each function returns the process exit code.

mod batch;

use std::process::ExitCode;

use crate::cli::{BatchCommand, Cli, Command};

pub fn run(arguments: Cli) -> anyhow::Result<ExitCode> {
    match arguments.command {
        Command::Batch(BatchCommand::Validate(validate)) => batch::validate(&validate),
        Command::Batch(BatchCommand::New(new)) => batch::new(&new),
    }
}
