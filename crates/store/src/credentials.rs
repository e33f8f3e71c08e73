//! Users' own code host credentials, and the choice of which credential to act with.
//!
//! Sourcegraph lets each user store a token per code host so that the pull requests a batch
//! change opens are authored by that user; the connection's credential (a service account,
//! kept on `code_hosts`) is the fallback. Both arrive encrypted by the server: this module keeps
//! ciphertext, nonce and the (non-secret) username, and lists credentials without their values.

use crate::Store;
use crate::code_hosts::EncryptedCredential;
use crate::error::StoreError;
use crate::ids::{CodeHostId, UserId};

/// One user's credential for one code host, without its value.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UserCodeHostCredential {
    pub user_id: UserId,
    pub code_host_id: CodeHostId,
    pub username: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Whose credential [`Store::credential_to_act_with`] picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// The acting user's own token for this code host.
    User,
    /// The code host connection's (site) credential.
    Connection,
}

/// The credential to act with, still encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActingCredential {
    pub source: CredentialSource,
    pub credential: EncryptedCredential,
}

#[derive(sqlx::FromRow)]
struct CredentialRow {
    ciphertext: Vec<u8>,
    nonce: Vec<u8>,
    username: Option<String>,
}

impl From<CredentialRow> for EncryptedCredential {
    fn from(row: CredentialRow) -> EncryptedCredential {
        EncryptedCredential {
            ciphertext: row.ciphertext,
            nonce: row.nonce,
            username: row.username,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ConnectionCredentialRow {
    credential_ciphertext: Option<Vec<u8>>,
    credential_nonce: Option<Vec<u8>>,
    credential_username: Option<String>,
}

macro_rules! user_credential_columns {
    () => {
        "user_id, code_host_id, username, created_at, updated_at"
    };
}

impl Store {
    /// Creates or replaces `user_id`'s credential for `code_host_id`; `NotFound` when the code
    /// host does not exist.
    pub async fn set_user_code_host_credential(
        &self,
        user_id: UserId,
        code_host_id: CodeHostId,
        credential: &EncryptedCredential,
        now_ms: i64,
    ) -> Result<UserCodeHostCredential, StoreError> {
        let credential = credential.clone();
        write_transaction!(self, tx, dialect => {
            let host_exists = sqlx::query_scalar::<_, i64>("SELECT id FROM code_hosts WHERE id = $1")
                .bind(code_host_id)
                .fetch_optional(&mut **tx)
                .await?
                .is_some();
            if !host_exists {
                return Err(StoreError::not_found(format!("code host {code_host_id}")));
            }
            Ok(sqlx::query_as::<_, UserCodeHostCredential>(concat!(
                "INSERT INTO user_code_host_credentials (user_id, code_host_id, ciphertext, nonce, username, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (user_id, code_host_id) DO UPDATE SET \
                 ciphertext = excluded.ciphertext, nonce = excluded.nonce, username = excluded.username, \
                 updated_at = excluded.updated_at RETURNING ",
                user_credential_columns!()
            ))
            .bind(user_id)
            .bind(code_host_id)
            .bind(credential.ciphertext.clone())
            .bind(credential.nonce.clone())
            .bind(credential.username.clone())
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    /// Removes `user_id`'s credential for `code_host_id`; `NotFound` if there is none.
    pub async fn delete_user_code_host_credential(
        &self,
        user_id: UserId,
        code_host_id: CodeHostId,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let deleted = sqlx::query("DELETE FROM user_code_host_credentials WHERE user_id = $1 AND code_host_id = $2")
                .bind(user_id)
                .bind(code_host_id)
                .execute(&mut **tx)
                .await?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("credential of user {user_id} for code host {code_host_id}")));
            }
            Ok(())
        })
    }

    /// A user's code host credentials, by code host, without values.
    pub async fn list_user_code_host_credentials(
        &self,
        user_id: UserId,
    ) -> Result<Vec<UserCodeHostCredential>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, UserCodeHostCredential>(concat!(
                "SELECT ", user_credential_columns!(), " FROM user_code_host_credentials WHERE user_id = $1 ORDER BY code_host_id"
            ))
            .bind(user_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The credential to act with for `user_id` on `code_host_id`, in Sourcegraph's order: the
    /// user's own, else the connection's; `None` when neither exists. `NotFound` when the code
    /// host does not exist.
    pub async fn credential_to_act_with(
        &self,
        user_id: UserId,
        code_host_id: CodeHostId,
    ) -> Result<Option<ActingCredential>, StoreError> {
        on_pool!(self, pool, dialect => {
            let own = sqlx::query_as::<_, CredentialRow>(
                "SELECT ciphertext, nonce, username FROM user_code_host_credentials WHERE user_id = $1 AND code_host_id = $2",
            )
            .bind(user_id)
            .bind(code_host_id)
            .fetch_optional(pool)
            .await?;
            if let Some(own) = own {
                return Ok(Some(ActingCredential { source: CredentialSource::User, credential: own.into() }));
            }
            let connection = sqlx::query_as::<_, ConnectionCredentialRow>(
                "SELECT credential_ciphertext, credential_nonce, credential_username FROM code_hosts WHERE id = $1",
            )
            .bind(code_host_id)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("code host {code_host_id}")))?;
            Ok(match (connection.credential_ciphertext, connection.credential_nonce) {
                (Some(ciphertext), Some(nonce)) => Some(ActingCredential {
                    source: CredentialSource::Connection,
                    credential: EncryptedCredential { ciphertext, nonce, username: connection.credential_username },
                }),
                _ => None,
            })
        })
    }
}
