//! The batch spec templates site admins add to the web interface's template library. The
//! starters shipped with the server live in the server's code, not here; names are unique
//! across both (the server checks the shipped ones).

use crate::Store;
use crate::error::StoreError;
use crate::ids::UserId;

/// A stored template.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BatchTemplate {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub spec: String,
    pub created_by: Option<UserId>,
    pub created_at: i64,
}

impl Store {
    /// Adds a template; a taken name is a conflict.
    pub async fn create_batch_template(
        &self,
        name: &str,
        description: &str,
        spec: &str,
        created_by: UserId,
        now_ms: i64,
    ) -> Result<BatchTemplate, StoreError> {
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_as::<_, BatchTemplate>(
                "INSERT INTO batch_templates (name, description, spec, created_by, created_at) VALUES ($1, $2, $3, $4, $5) \
                 RETURNING id, name, description, spec, created_by, created_at",
            )
            .bind(name.to_owned())
            .bind(description.to_owned())
            .bind(spec.to_owned())
            .bind(created_by)
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    /// Every stored template, by name.
    pub async fn list_batch_templates(&self) -> Result<Vec<BatchTemplate>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, BatchTemplate>(
                "SELECT id, name, description, spec, created_by, created_at FROM batch_templates ORDER BY name",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Deletes a template by name; false when there was none.
    pub async fn delete_batch_template(&self, name: &str) -> Result<bool, StoreError> {
        write_transaction!(self, tx, dialect => {
            let deleted = sqlx::query("DELETE FROM batch_templates WHERE name = $1").bind(name.to_owned()).execute(&mut **tx).await?;
            Ok(deleted.rows_affected() > 0)
        })
    }
}
