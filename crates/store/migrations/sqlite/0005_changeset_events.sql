-- Changeset history for statistics and the burndown chart: one row each time a published
-- changeset's state on its code host (or its review state) changes, written by the reconciler
-- and the sync in the same transaction as the change. Also the index the reconciler's queue and
-- the rollout scheduler read by. Keep in step with migrations/postgres/0005_changeset_events.sql.
CREATE TABLE changeset_events (
    id INTEGER PRIMARY KEY,
    changeset_id INTEGER NOT NULL REFERENCES changesets(id) ON DELETE CASCADE,
    external_state TEXT NOT NULL,
    review_state TEXT,
    at INTEGER NOT NULL
);
CREATE INDEX changeset_events_changeset_idx ON changeset_events(changeset_id, id);
CREATE INDEX changesets_reconciler_queue_idx ON changesets(reconciler_state, updated_at, id);
