//! `flotilla-codehost-emulator --listen ADDR --repos DIR [--token T]...`: the GitHub, GitLab,
//! Gitea and Bitbucket Server emulator as a process, for manual runs and benchmarks. TEST
//! SUPPORT ONLY.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use flotilla_codehost_emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig};

/// Emulates the subset of GitHub's REST API Flotilla uses (test support only).
#[derive(Debug, Parser)]
struct Arguments {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3480")]
    listen: SocketAddr,
    /// Directory for the bare git repositories.
    #[arg(long)]
    repos: PathBuf,
    /// Accepted token (repeatable).
    #[arg(long = "token", default_value = DEFAULT_TOKEN)]
    tokens: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let arguments = Arguments::parse();
    let config = EmulatorConfig { listen: arguments.listen, tokens: arguments.tokens, repositories_dir: Some(arguments.repos) };
    let emulator = Emulator::start(config).await.context("starting the code host emulator")?;
    eprintln!("code host emulator listening on {} (create repositories with POST /_emulator/repos)", emulator.url());
    tokio::signal::ctrl_c().await.context("waiting for Ctrl-C")?;
    Ok(())
}
