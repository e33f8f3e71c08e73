//! Incoming webhook secrets, one per code host connection: what the forge signs its deliveries
//! with (GitHub, Gitea, Bitbucket Server) or sends as a token (GitLab). They arrive encrypted by
//! the server, like credentials; this module keeps ciphertext and nonce only.

use crate::Store;
use crate::error::StoreError;
use crate::ids::CodeHostId;

/// A connection's webhook secret, still encrypted.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct EncryptedWebhookSecret {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub updated_at: i64,
}

impl std::fmt::Debug for EncryptedWebhookSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("EncryptedWebhookSecret").field("updated_at", &self.updated_at).finish_non_exhaustive()
    }
}

impl Store {
    /// Creates or replaces a connection's webhook secret; `NotFound` when the code host does
    /// not exist.
    pub async fn set_code_host_webhook_secret(&self, code_host_id: CodeHostId, ciphertext: &[u8], nonce: &[u8], now_ms: i64) -> Result<(), StoreError> {
        let (ciphertext, nonce) = (ciphertext.to_vec(), nonce.to_vec());
        write_transaction!(self, tx, dialect => {
            let host_exists = sqlx::query_scalar::<_, i64>("SELECT id FROM code_hosts WHERE id = $1")
                .bind(code_host_id)
                .fetch_optional(&mut **tx)
                .await?
                .is_some();
            if !host_exists {
                return Err(StoreError::not_found(format!("code host {code_host_id}")));
            }
            sqlx::query(
                "INSERT INTO code_host_webhook_secrets (code_host_id, ciphertext, nonce, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (code_host_id) DO UPDATE SET ciphertext = excluded.ciphertext, nonce = excluded.nonce, updated_at = excluded.updated_at",
            )
            .bind(code_host_id)
            .bind(ciphertext.clone())
            .bind(nonce.clone())
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    }

    /// A connection's webhook secret, if one is set.
    pub async fn get_code_host_webhook_secret(&self, code_host_id: CodeHostId) -> Result<Option<EncryptedWebhookSecret>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, EncryptedWebhookSecret>("SELECT ciphertext, nonce, updated_at FROM code_host_webhook_secrets WHERE code_host_id = $1")
                .bind(code_host_id)
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Removes a connection's webhook secret; `NotFound` if it has none.
    pub async fn delete_code_host_webhook_secret(&self, code_host_id: CodeHostId) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let deleted = sqlx::query("DELETE FROM code_host_webhook_secrets WHERE code_host_id = $1").bind(code_host_id).execute(&mut **tx).await?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("webhook secret of code host {code_host_id}")));
            }
            Ok(())
        })
    }
}
