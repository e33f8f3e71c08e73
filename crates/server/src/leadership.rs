//! Background duties that one server process does for the whole database (the rollout
//! scheduler's pace, the periodic changeset sync): every process runs the loop, and only the
//! one holding the duty's lead (`flotilla_store::Leadership`) does the work. Everything else
//! runs on every server and claims its work row by row in the database.

use std::time::Duration;

use flotilla_store::Leadership;

use crate::SharedState;

/// How often a process that does not lead a duty tries to take it (the longest a duty waits
/// after its leader died).
pub const RETRY_EVERY: Duration = Duration::from_secs(5);

/// Whether this process leads `duty` now: keeps the lead it holds while it holds, else tries to
/// take it. A database error is logged and counts as not leading.
pub async fn lead(state: &SharedState, duty: &str, held: &mut Option<Leadership>) -> bool {
    if let Some(leadership) = held {
        if leadership.still_held().await {
            return true;
        }
        tracing::warn!(duty, "lost the lead of a duty (the database connection holding it closed)");
        *held = None;
    }
    match state.store.try_lead(duty).await {
        Ok(Some(leadership)) => {
            if state.store.dialect() == flotilla_store::Dialect::Postgres {
                tracing::info!(duty, "this server leads a duty for the database");
            }
            *held = Some(leadership);
            true
        }
        Ok(None) => false,
        Err(error) => {
            tracing::warn!(duty, %error, "trying to lead a duty failed");
            false
        }
    }
}
