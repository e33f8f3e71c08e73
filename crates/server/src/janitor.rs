//! Periodic clean-up that keeps the queue moving after failures.
//!
//! A job whose executor stopped sending heartbeats (killed, crashed, lost its network) goes
//! back to the queue for another executor; after a bounded number of such resets it fails
//! with a message that says so. The same holds for resolution jobs of a crashed server.

use std::time::Duration;

use flotilla_store::Clock;
use tokio_util::sync::CancellationToken;

use crate::SharedState;

/// How often the janitor looks.
const INTERVAL: Duration = Duration::from_secs(5);

pub async fn run(state: SharedState, shutdown: CancellationToken) {
    loop {
        sweep(&state).await;
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(INTERVAL) => {}
        }
    }
}

/// One pass: requeue or fail stalled execution and resolution jobs.
pub async fn sweep(state: &SharedState) {
    let now = Clock::now_ms();
    let stalled_before = now - state.config.stalled_after.as_millis() as i64;
    match state.store.requeue_stalled_jobs(stalled_before, state.config.max_resets, now).await {
        Ok(outcome) => {
            if !outcome.requeued.is_empty() || !outcome.failed.is_empty() {
                tracing::warn!(requeued = outcome.requeued.len(), failed = outcome.failed.len(), "jobs of silent executors were reset");
                state.jobs_were_queued();
            }
        }
        Err(error) => tracing::error!(error = %error, "requeuing stalled jobs failed"),
    }
    // Resolution runs inside the server; a resolution still "processing" after a restart
    // belongs to a server process that died.
    let resolution_stalled_before = now - 60_000;
    if let Err(error) = state.store.requeue_stalled_resolution_jobs(resolution_stalled_before, 3, now).await {
        tracing::error!(error = %error, "requeuing stalled resolutions failed");
    }
}
