//! What a batch change's changesets add up to, now and over time, and the rollout schedule.
//!
//! Statistics are counted from the changesets table itself (one grouped query), so they can
//! never drift from it. The burndown chart needs history the table does not keep, so every
//! change of a published changeset's code host state or review state appends a row to
//! `changeset_events`, in the same transaction as the change (see [`record_event_if_changed`]).
//! The chart is then a replay of those rows (done by the server, over data alone).
//!
//! Rollout windows (Sourcegraph's `batchChanges.rolloutWindows`) park changesets in the
//! `scheduled` reconciler state; the server's scheduler moves them, oldest first, to `queued`
//! at the pace the active window allows ([`Store::release_scheduled_changesets`]).

use crate::Store;
use crate::error::StoreError;
use crate::ids::{BatchChangeId, ChangesetId};

/// Where an apply, a retry or a bulk publish puts the changesets it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReconcilerEntry {
    /// Straight to the reconciler (no rollout windows configured).
    #[default]
    Queued,
    /// Into the rollout schedule; the scheduler queues them at the window's rate.
    Scheduled,
}

impl ReconcilerEntry {
    pub fn as_str(self) -> &'static str {
        match self {
            ReconcilerEntry::Queued => "queued",
            ReconcilerEntry::Scheduled => "scheduled",
        }
    }
}

/// How many changesets of a batch change share one combination of states.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChangesetStateCount {
    pub publication_state: String,
    pub external_state: Option<String>,
    pub reconciler_state: String,
    pub archived: bool,
    /// The last attempt failed (with `queued`: waiting to be retried).
    pub failing: bool,
    pub count: i64,
}

/// One change of a changeset's state on its code host.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ChangesetEvent {
    pub changeset_id: ChangesetId,
    pub external_state: String,
    pub review_state: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

/// Appends an event when a published changeset's external or review state differs from its
/// latest event (or it has none yet). Runs inside the caller's transaction.
macro_rules! record_event_if_changed {
    ($tx:expr, $changeset_id:expr, $now:expr) => {
        sqlx::query(
            "INSERT INTO changeset_events (changeset_id, external_state, review_state, at) \
             SELECT c.id, c.external_state, c.review_state, $2 FROM changesets c \
             WHERE c.id = $1 AND c.publication_state = 'PUBLISHED' AND c.external_state IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM changeset_events e WHERE e.id = \
                 (SELECT MAX(latest.id) FROM changeset_events latest WHERE latest.changeset_id = c.id) \
                 AND e.external_state = c.external_state AND COALESCE(e.review_state, '') = COALESCE(c.review_state, ''))",
        )
        .bind($changeset_id)
        .bind($now)
        .execute(&mut **$tx)
        .await?
    };
}
pub(crate) use record_event_if_changed;

impl Store {
    /// The batch change's changesets counted by (publication, external, reconciler, archived).
    pub async fn changeset_state_counts(&self, batch_change_id: BatchChangeId) -> Result<Vec<ChangesetStateCount>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, ChangesetStateCount>(
                "SELECT c.publication_state, c.external_state, c.reconciler_state, c.archived, \
                 (c.failure_message IS NOT NULL) AS failing, COUNT(*) AS count \
                 FROM changeset_batch_changes l JOIN changesets c ON c.id = l.changeset_id \
                 WHERE l.batch_change_id = $1 \
                 GROUP BY c.publication_state, c.external_state, c.reconciler_state, c.archived, (c.failure_message IS NOT NULL)",
            )
            .bind(batch_change_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Every event of the batch change's changesets, by changeset, oldest first.
    pub async fn changeset_events_for_batch_change(&self, batch_change_id: BatchChangeId) -> Result<Vec<ChangesetEvent>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, ChangesetEvent>(
                "SELECT e.changeset_id, e.external_state, e.review_state, e.at \
                 FROM changeset_batch_changes l JOIN changeset_events e ON e.changeset_id = l.changeset_id \
                 WHERE l.batch_change_id = $1 ORDER BY e.changeset_id, e.id",
            )
            .bind(batch_change_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Moves up to `limit` scheduled changesets, oldest first, to the reconciler's queue;
    /// returns how many moved.
    pub async fn release_scheduled_changesets(&self, limit: i64, now_ms: i64) -> Result<u64, StoreError> {
        write_transaction!(self, tx, dialect => {
            let sql = format!(
                "UPDATE changesets SET reconciler_state = 'queued', updated_at = $2 WHERE id IN (\
                 SELECT id FROM changesets WHERE reconciler_state = 'scheduled' ORDER BY updated_at, id LIMIT $1{})",
                dialect.skip_locked()
            );
            Ok(sqlx::query(sqlx::AssertSqlSafe(sql)).bind(limit).bind(now_ms).execute(&mut **tx).await?.rows_affected())
        })
    }

    /// The scheduled changesets' ids in the order the scheduler will release them (at most
    /// `limit`), so a listing can show each one's place and estimated time.
    pub async fn scheduled_changeset_order(&self, limit: i64) -> Result<Vec<ChangesetId>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_scalar::<_, ChangesetId>(
                "SELECT id FROM changesets WHERE reconciler_state = 'scheduled' ORDER BY updated_at, id LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Asks the reconciler to close these changesets (a person's bulk close): they stay
    /// attached to the batch change, unlike the ones an apply retires.
    pub async fn mark_changesets_closing(&self, changeset_ids: &[ChangesetId], now_ms: i64) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            for changeset_id in changeset_ids {
                sqlx::query(
                    "UPDATE changesets SET closing = TRUE, reconciler_state = 'queued', failure_message = NULL, \
                     num_failures = 0, process_after = NULL, updated_at = $2 WHERE id = $1",
                )
                .bind(*changeset_id)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        })
    }

    /// Sets what a person chose to publish (`PUBLISHED` or `DRAFT`) for changesets whose spec
    /// leaves `published` unset, and sends them to the reconciler (or the schedule).
    pub async fn set_ui_publication_state(
        &self,
        changeset_ids: &[ChangesetId],
        ui_publication_state: &str,
        entry: ReconcilerEntry,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            for changeset_id in changeset_ids {
                sqlx::query(
                    "UPDATE changesets SET ui_publication_state = $2, reconciler_state = $3, failure_message = NULL, \
                     num_failures = 0, process_after = NULL, updated_at = $4 WHERE id = $1",
                )
                .bind(*changeset_id)
                .bind(ui_publication_state.to_owned())
                .bind(entry.as_str())
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        })
    }
}
