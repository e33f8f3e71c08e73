//! The command line as a faithful record of what the user typed (clap derive).
//!
//! Help texts teach: every command says what it does and shows an example.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Change code across thousands of repositories with batch changes, run server-side.",
    long_about = "Flotilla runs batch changes: a batch spec (YAML, Sourcegraph's format) says which \
repositories to change, which steps to run in containers, and how the resulting pull requests look.\n\n\
Start with:\n  flotilla batch new -f hello.batch.yaml     # write a starter spec\n  \
flotilla batch validate -f hello.batch.yaml   # check it, with every error at its line and column",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with batch specs: write, validate, and (with a server) preview and apply them.
    #[command(subcommand)]
    Batch(BatchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Check a batch spec: schema, semantic rules and templates, with no server needed.
    ///
    /// Exits 0 and prints a one-line summary when the spec is valid; exits 1 and prints every
    /// problem (file:line:column, the field, what was expected) when it is not.
    ///
    /// Examples:
    ///   flotilla batch validate -f hello.batch.yaml
    ///   cat hello.batch.yaml | flotilla batch validate -f -
    #[command(verbatim_doc_comment)]
    Validate(ValidateArgs),

    /// Write a commented starter batch spec that validates.
    ///
    /// Examples:
    ///   flotilla batch new                       # writes batch.yaml
    ///   flotilla batch new -f update-readme.batch.yaml
    #[command(verbatim_doc_comment)]
    New(NewArgs),
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The batch spec file; `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,

    /// Print the result as JSON on standard output (the parsed spec, or the diagnostics).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Where to write the spec.
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "batch.yaml")]
    pub file: PathBuf,

    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}
