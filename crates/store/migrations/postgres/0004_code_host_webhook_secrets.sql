-- Incoming webhook secrets: one per code host connection, the secret the forge signs (or, for
-- GitLab, sends) with every delivery. Encrypted by the server like credentials; only
-- ciphertext and nonce are stored. A table of its own so that connections without webhooks
-- carry nothing. Keep in step with migrations/sqlite/0004_code_host_webhook_secrets.sql.
CREATE TABLE code_host_webhook_secrets (
    code_host_id BIGINT PRIMARY KEY REFERENCES code_hosts(id) ON DELETE CASCADE,
    ciphertext BYTEA NOT NULL,
    nonce BYTEA NOT NULL,
    updated_at BIGINT NOT NULL
);
