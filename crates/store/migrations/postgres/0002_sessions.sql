-- Web sign-in sessions are access tokens that expire. Keep in step with
-- migrations/sqlite/0002_sessions.sql.
ALTER TABLE access_tokens ADD COLUMN expires_at BIGINT;
