//! The per-user step cache: results of already-executed steps keyed by their cache key, so a
//! re-run (or a retried workspace) resumes after the last cached step. Read in bulk during
//! workspace resolution, written on job completion, evicted least-recently-used by a janitor.

use sqlx::AssertSqlSafe;

use crate::Store;
use crate::backend::{BULK_INSERT_ROWS, placeholders};
use crate::error::StoreError;
use crate::ids::UserId;
use crate::json::{JsonText, to_text};

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct StepCacheEntry {
    pub user_id: UserId,
    pub key: String,
    #[sqlx(try_from = "JsonText")]
    pub value: serde_json::Value,
    pub size: i64,
    pub created_at: i64,
    pub last_used_at: i64,
}

impl Store {
    /// The entries of `user_id` among `keys` (missing keys are absent).
    pub async fn get_step_cache_entries(
        &self,
        user_id: UserId,
        keys: &[String],
    ) -> Result<Vec<StepCacheEntry>, StoreError> {
        let mut entries = Vec::new();
        for chunk in keys.chunks(BULK_INSERT_ROWS) {
            let sql = format!(
                "SELECT user_id, key, value, size, created_at, last_used_at FROM step_cache \
                 WHERE user_id = $1 AND key IN ({})",
                placeholders(2, chunk.len())
            );
            let found = on_pool!(self, pool, dialect => {
                let mut query = sqlx::query_as::<_, StepCacheEntry>(AssertSqlSafe(sql)).bind(user_id);
                for key in chunk {
                    query = query.bind(key.clone());
                }
                query.fetch_all(pool).await?
            });
            entries.extend(found);
        }
        Ok(entries)
    }

    /// Inserts or replaces an entry.
    pub async fn upsert_step_cache_entry(
        &self,
        user_id: UserId,
        key: &str,
        value: &serde_json::Value,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let text = to_text(value);
        let size = i64::try_from(text.len()).unwrap_or(i64::MAX);
        write_transaction!(self, tx, dialect => {
            sqlx::query(
                "INSERT INTO step_cache (user_id, key, value, size, created_at, last_used_at) VALUES ($1, $2, $3, $4, $5, $5) \
                 ON CONFLICT (user_id, key) DO UPDATE SET value = excluded.value, size = excluded.size, \
                 last_used_at = excluded.last_used_at",
            )
            .bind(user_id)
            .bind(key.to_owned())
            .bind(text.clone())
            .bind(size)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    }

    /// Marks entries as used now (for LRU eviction).
    pub async fn touch_step_cache_entries(
        &self,
        user_id: UserId,
        keys: &[String],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        self.step_cache_keys_statement(
            "UPDATE step_cache SET last_used_at = $2 WHERE user_id = $1 AND key IN ({})",
            user_id,
            keys,
            Some(now_ms),
        )
        .await
    }

    /// Deletes entries by key.
    pub async fn delete_step_cache_entries(
        &self,
        user_id: UserId,
        keys: &[String],
    ) -> Result<(), StoreError> {
        self.step_cache_keys_statement(
            "DELETE FROM step_cache WHERE user_id = $1 AND key IN ({})",
            user_id,
            keys,
            None,
        )
        .await
    }

    /// Deletes every cache entry of a user (e.g. when a spec is run with no_cache).
    pub async fn clear_step_cache(&self, user_id: UserId) -> Result<u64, StoreError> {
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query("DELETE FROM step_cache WHERE user_id = $1").bind(user_id).execute(&mut **tx).await?.rows_affected())
        })
    }

    /// Runs `template` (with `{}` standing for the key placeholders, which start at `$3` when
    /// `now_ms` is bound as `$2`, else at `$2`) over `keys` in chunks, in one transaction.
    async fn step_cache_keys_statement(
        &self,
        template: &'static str,
        user_id: UserId,
        keys: &[String],
        now_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        if keys.is_empty() {
            return Ok(());
        }
        let first_key_placeholder = if now_ms.is_some() { 3 } else { 2 };
        write_transaction!(self, tx, dialect => {
            for chunk in keys.chunks(BULK_INSERT_ROWS) {
                let sql = template.replace("{}", &placeholders(first_key_placeholder, chunk.len()));
                let mut query = sqlx::query(AssertSqlSafe(sql)).bind(user_id);
                if let Some(now_ms) = now_ms {
                    query = query.bind(now_ms);
                }
                for key in chunk {
                    query = query.bind(key.clone());
                }
                query.execute(&mut **tx).await?;
            }
            Ok(())
        })
    }
}
