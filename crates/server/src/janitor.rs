//! Periodic clean-up that keeps the queue moving after failures.
//!
//! A job whose executor stopped sending heartbeats (killed, crashed, lost its network) goes
//! back to the queue for another executor; after a bounded number of such resets it fails
//! with a message that says so. The same holds for the resolutions and the changesets being
//! reconciled of a server process that died (both heartbeat while they work).

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
    // So does the reconciler: a changeset left `processing` by a dead server is queued again.
    match state.store.requeue_stalled_reconciling(stalled_before, now).await {
        Ok(0) => {}
        Ok(requeued) => {
            tracing::warn!(requeued, "changesets a stopped server process was reconciling were queued again");
            state.reconcile_requested.notify_one();
        }
        Err(error) => tracing::error!(error = %error, "requeuing stalled changesets failed"),
    }
    // Resolution runs inside the server and heartbeats like an executor does; one without
    // heartbeats for the same timeout belongs to a server process that died.
    match state.store.requeue_stalled_resolution_jobs(stalled_before, 3, now).await {
        Ok((0, 0)) => {}
        Ok((requeued, failed)) => {
            tracing::warn!(requeued, failed, "resolutions of a server process that stopped were reset");
            state.resolution_requested.notify_one();
        }
        Err(error) => tracing::error!(error = %error, "requeuing stalled resolutions failed"),
    }
}
