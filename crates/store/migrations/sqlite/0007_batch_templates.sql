-- Batch spec templates site admins add to the web interface's template library (the starters
-- shipped with the server are not stored). Keep in step with
-- migrations/postgres/0007_batch_templates.sql.
CREATE TABLE batch_templates (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL
);
