//! Secrets for batch spec steps, scoped globally, to a user or to an org. The caller encrypts;
//! the store keeps ciphertext and nonce bytes, bumps `version` on every change, and logs every
//! read of a secret's ciphertext in `secret_access_log`.

use sqlx::AssertSqlSafe;

use crate::Store;
use crate::backend::placeholders;
use crate::error::StoreError;
use crate::ids::{JobId, OrgId, SecretId, UserId};

/// Where a secret lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretScope {
    Global,
    User(UserId),
    Org(OrgId),
}

impl SecretScope {
    fn columns(self) -> (Option<UserId>, Option<OrgId>) {
        match self {
            SecretScope::Global => (None, None),
            SecretScope::User(user_id) => (Some(user_id), None),
            SecretScope::Org(org_id) => (None, Some(org_id)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSecret {
    pub scope: SecretScope,
    pub name: String,
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    pub created_by: Option<UserId>,
}

/// A secret without its value.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretMetadata {
    pub id: SecretId,
    pub user_id: Option<UserId>,
    pub org_id: Option<OrgId>,
    pub name: String,
    pub version: i64,
    pub created_by: Option<UserId>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SecretMetadata {
    pub fn scope(&self) -> SecretScope {
        match (self.user_id, self.org_id) {
            (Some(user_id), _) => SecretScope::User(user_id),
            (None, Some(org_id)) => SecretScope::Org(org_id),
            (None, None) => SecretScope::Global,
        }
    }
}

/// A secret with its encrypted value.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretWithCiphertext {
    #[sqlx(flatten)]
    pub metadata: SecretMetadata,
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
}

/// Who is reading a secret, for the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SecretAccessor {
    pub user_id: Option<UserId>,
    pub job_id: Option<JobId>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SecretAccess {
    pub secret_id: SecretId,
    pub user_id: Option<UserId>,
    pub job_id: Option<JobId>,
    pub accessed_at: i64,
}

macro_rules! secret_metadata_columns {
    () => {
        "id, user_id, org_id, name, version, created_by, created_at, updated_at"
    };
}

impl Store {
    /// Creates a secret; `Conflict` if the scope already has one with this name.
    pub async fn create_secret(
        &self,
        secret: &NewSecret,
        now_ms: i64,
    ) -> Result<SecretMetadata, StoreError> {
        let (user_id, org_id) = secret.scope.columns();
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_as::<_, SecretMetadata>(concat!(
                "INSERT INTO secrets (user_id, org_id, name, ciphertext, nonce, version, created_by, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, 1, $6, $7, $7) RETURNING ", secret_metadata_columns!()
            ))
            .bind(user_id)
            .bind(org_id)
            .bind(secret.name.clone())
            .bind(secret.ciphertext.clone())
            .bind(secret.nonce.clone())
            .bind(secret.created_by)
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    /// Replaces a secret's value; its version goes up by one.
    pub async fn update_secret(
        &self,
        secret_id: SecretId,
        ciphertext: &[u8],
        nonce: &[u8],
        now_ms: i64,
    ) -> Result<SecretMetadata, StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query_as::<_, SecretMetadata>(concat!(
                "UPDATE secrets SET ciphertext = $2, nonce = $3, version = version + 1, updated_at = $4 \
                 WHERE id = $1 RETURNING ", secret_metadata_columns!()
            ))
            .bind(secret_id)
            .bind(ciphertext.to_vec())
            .bind(nonce.to_vec())
            .bind(now_ms)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("secret {secret_id}")))
        })
    }

    /// The secrets of one scope, by name, without values.
    pub async fn list_secrets(
        &self,
        scope: SecretScope,
    ) -> Result<Vec<SecretMetadata>, StoreError> {
        let (user_id, org_id) = scope.columns();
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, SecretMetadata>(concat!(
                "SELECT ", secret_metadata_columns!(),
                " FROM secrets WHERE COALESCE(user_id, 0) = $1 AND COALESCE(org_id, 0) = $2 ORDER BY name"
            ))
            .bind(user_id.map_or(0, |id| id.0))
            .bind(org_id.map_or(0, |id| id.0))
            .fetch_all(pool)
            .await?)
        })
    }

    pub async fn get_secret_metadata(
        &self,
        secret_id: SecretId,
    ) -> Result<SecretMetadata, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, SecretMetadata>(concat!("SELECT ", secret_metadata_columns!(), " FROM secrets WHERE id = $1"))
                .bind(secret_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("secret {secret_id}")))
        })
    }

    /// Reads a secret's ciphertext and records the access, in one transaction.
    pub async fn read_secret(
        &self,
        secret_id: SecretId,
        accessor: SecretAccessor,
        now_ms: i64,
    ) -> Result<SecretWithCiphertext, StoreError> {
        write_transaction!(self, tx, dialect => {
            let secret = sqlx::query_as::<_, SecretWithCiphertext>(concat!(
                "SELECT ", secret_metadata_columns!(), ", ciphertext, nonce FROM secrets WHERE id = $1"
            ))
            .bind(secret_id)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("secret {secret_id}")))?;
            sqlx::query("INSERT INTO secret_access_log (secret_id, user_id, job_id, accessed_at) VALUES ($1, $2, $3, $4)")
                .bind(secret_id)
                .bind(accessor.user_id)
                .bind(accessor.job_id)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            Ok(secret)
        })
    }

    /// Reads the named secrets of one scope (missing names are simply absent) and records one
    /// access per secret returned.
    pub async fn read_secrets_by_name(
        &self,
        scope: SecretScope,
        names: &[String],
        accessor: SecretAccessor,
        now_ms: i64,
    ) -> Result<Vec<SecretWithCiphertext>, StoreError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let (user_id, org_id) = scope.columns();
        let sql = format!(
            concat!(
                "SELECT ",
                secret_metadata_columns!(),
                ", ciphertext, nonce FROM secrets WHERE COALESCE(user_id, 0) = $1 AND COALESCE(org_id, 0) = $2 \
                 AND name IN ({}) ORDER BY name"
            ),
            placeholders(3, names.len())
        );
        write_transaction!(self, tx, dialect => {
            let mut query = sqlx::query_as::<_, SecretWithCiphertext>(AssertSqlSafe(sql))
                .bind(user_id.map_or(0, |id| id.0))
                .bind(org_id.map_or(0, |id| id.0));
            for name in names {
                query = query.bind(name.clone());
            }
            let secrets = query.fetch_all(&mut **tx).await?;
            for secret in &secrets {
                sqlx::query("INSERT INTO secret_access_log (secret_id, user_id, job_id, accessed_at) VALUES ($1, $2, $3, $4)")
                    .bind(secret.metadata.id)
                    .bind(accessor.user_id)
                    .bind(accessor.job_id)
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(secrets)
        })
    }

    /// A secret's access log, newest first.
    pub async fn list_secret_accesses(
        &self,
        secret_id: SecretId,
        limit: i64,
    ) -> Result<Vec<SecretAccess>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, SecretAccess>(
                "SELECT secret_id, user_id, job_id, accessed_at FROM secret_access_log WHERE secret_id = $1 \
                 ORDER BY id DESC LIMIT $2",
            )
            .bind(secret_id)
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    pub async fn delete_secret(&self, secret_id: SecretId) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let deleted = sqlx::query("DELETE FROM secrets WHERE id = $1").bind(secret_id).execute(&mut **tx).await?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("secret {secret_id}")));
            }
            Ok(())
        })
    }
}
