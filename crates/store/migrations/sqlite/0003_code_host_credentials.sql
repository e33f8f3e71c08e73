-- Code host credentials: the connection's (a service account, beside the ciphertext columns
-- that 0001 already has) and each user's own. Values are encrypted by the server; only
-- ciphertext, nonce and the non-secret username are stored. Keep in step with
-- migrations/postgres/0003_code_host_credentials.sql.
ALTER TABLE code_hosts ADD COLUMN credential_username TEXT;
ALTER TABLE code_hosts ADD COLUMN credential_updated_at INTEGER;

CREATE TABLE user_code_host_credentials (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    code_host_id INTEGER NOT NULL REFERENCES code_hosts(id) ON DELETE CASCADE,
    ciphertext BLOB NOT NULL,
    nonce BLOB NOT NULL,
    username TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    UNIQUE (user_id, code_host_id)
);
CREATE INDEX user_code_host_credentials_host_idx ON user_code_host_credentials(code_host_id);
