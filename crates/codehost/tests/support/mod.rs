//! What every adapter-against-emulator test needs: an emulator with repositories, a retry
//! policy fast enough for tests, and git over the emulator's smart HTTP with a forge's kind of
//! `Authorization` header.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::Path;
use std::time::Duration;

use flotilla_codehost::RetryPolicy;
use flotilla_codehost_emulator::{Emulator, EmulatorConfig, EmulatorHandle, NewRepository};

/// Retries quickly (tests inject faults on purpose) but waits out real rate limits.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy { max_attempts: 5, initial_backoff: Duration::from_millis(10), max_backoff: Duration::from_millis(50), max_rate_limit_wait: Duration::from_secs(10) }
}

/// How long one request may take in tests.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn emulator_with(repositories: &[(&str, &str)]) -> EmulatorHandle {
    let emulator = Emulator::start(EmulatorConfig::default()).await.expect("emulator starts");
    for (owner, name) in repositories {
        emulator.create_repository(NewRepository::new(*owner, *name)).await.expect("repository created");
    }
    emulator
}

/// Runs git in `directory`, hermetically, sending `authorization` as the HTTP header.
pub async fn git(directory: &Path, arguments: &[&str], authorization: &str) -> String {
    let output = tokio::process::Command::new("git")
        .args(arguments)
        .current_dir(directory)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env("GIT_CONFIG_VALUE_0", format!("Authorization: {authorization}"))
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.com")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.com")
        .output()
        .await
        .expect("git runs");
    assert!(output.status.success(), "git {arguments:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Clones `clone_url` over smart HTTP, commits a file and pushes it as `branch`; returns the
/// commit.
pub async fn push_branch(clone_url: &str, branch: &str, authorization: &str) -> String {
    let work = tempfile::tempdir().expect("temporary directory");
    git(work.path(), &["clone", "--quiet", clone_url, "checkout"], authorization).await;
    let checkout = work.path().join("checkout");
    tokio::fs::write(checkout.join("CHANGE.md"), format!("{branch}\n")).await.expect("file written");
    git(&checkout, &["add", "CHANGE.md"], authorization).await;
    git(&checkout, &["commit", "--quiet", "-m", "A change"], authorization).await;
    git(&checkout, &["push", "--quiet", "origin", &format!("HEAD:refs/heads/{branch}")], authorization).await;
    git(&checkout, &["rev-parse", "HEAD"], authorization).await
}
