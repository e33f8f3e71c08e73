//! Code hosts (where repositories come from, with the connection's encrypted credential) and the
//! mirrored repositories themselves. Users' own credentials live in [`crate::credentials`]. Repositories are upserted by name and listed with keyset pagination
//! on name, because there can be tens of thousands.

use crate::Store;
use crate::error::StoreError;
use crate::ids::{CodeHostId, RepositoryId};
use crate::json::{JsonText, NullableJsonText, optional_to_text, text_enum, to_text};

text_enum! {
    /// The kind of code host, which decides how repositories are listed and changesets pushed.
    pub enum CodeHostKind {
        GitDirectory => "git-directory",
        GitUrls => "git-urls",
        Github => "github",
        Gitlab => "gitlab",
        Gitea => "gitea",
        BitbucketServer => "bitbucket-server",
    }
}

text_enum! {
    /// How far the local mirror of a repository is.
    pub enum MirrorState {
        Pending => "pending",
        Cloning => "cloning",
        Ready => "ready",
        Failed => "failed",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewCodeHost {
    pub kind: CodeHostKind,
    pub name: String,
    pub url: String,
    pub config: serde_json::Value,
    pub credential_ciphertext: Option<Vec<u8>>,
    pub credential_nonce: Option<Vec<u8>>,
    /// The username that goes with the credential (Bitbucket Server needs one); not secret.
    pub credential_username: Option<String>,
    /// A list of user/org ids allowed to use this host; `None` = everyone.
    pub restricted_to: Option<serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct CodeHost {
    pub id: CodeHostId,
    #[sqlx(try_from = "String")]
    pub kind: CodeHostKind,
    pub name: String,
    pub url: String,
    #[sqlx(try_from = "JsonText")]
    pub config: serde_json::Value,
    pub credential_ciphertext: Option<Vec<u8>>,
    pub credential_nonce: Option<Vec<u8>>,
    pub credential_username: Option<String>,
    /// When the credential was last set or removed (unix ms); `None` if it never was.
    pub credential_updated_at: Option<i64>,
    #[sqlx(try_from = "NullableJsonText")]
    pub restricted_to: Option<serde_json::Value>,
    pub created_at: i64,
}

impl CodeHost {
    /// Whether the connection has a credential (its value is never needed to answer this).
    pub fn has_credential(&self) -> bool {
        self.credential_ciphertext.is_some() && self.credential_nonce.is_some()
    }
}

/// An encrypted credential as the store keeps it: the caller encrypts and decrypts.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedCredential {
    pub ciphertext: Vec<u8>,
    pub nonce: Vec<u8>,
    /// Not secret: the account the token belongs to, when the code host needs it.
    pub username: Option<String>,
}

impl std::fmt::Debug for EncryptedCredential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("EncryptedCredential")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRepository {
    pub code_host_id: CodeHostId,
    pub name: String,
    pub clone_url: String,
    pub default_branch: Option<String>,
    pub archived: bool,
    pub fork: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Repository {
    pub id: RepositoryId,
    pub code_host_id: CodeHostId,
    pub name: String,
    pub clone_url: String,
    pub default_branch: Option<String>,
    pub head_commit: Option<String>,
    #[sqlx(try_from = "String")]
    pub mirror_state: MirrorState,
    pub last_synced_at: Option<i64>,
    pub last_error: Option<String>,
    pub archived: bool,
    pub fork: bool,
    pub created_at: i64,
}

/// A mirror sync's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorStateUpdate {
    pub mirror_state: MirrorState,
    pub head_commit: Option<String>,
    pub default_branch: Option<String>,
    pub last_error: Option<String>,
    pub synced_at: Option<i64>,
}

macro_rules! code_host_columns {
    () => {
        "id, kind, name, url, config, credential_ciphertext, credential_nonce, credential_username, \
         credential_updated_at, restricted_to, created_at"
    };
}

macro_rules! repository_columns {
    () => {
        "id, code_host_id, name, clone_url, default_branch, head_commit, mirror_state, last_synced_at, \
         last_error, archived, fork, created_at"
    };
}

impl Store {
    pub async fn create_code_host(
        &self,
        code_host: &NewCodeHost,
        now_ms: i64,
    ) -> Result<CodeHost, StoreError> {
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_as::<_, CodeHost>(concat!(
                "INSERT INTO code_hosts (kind, name, url, config, credential_ciphertext, credential_nonce, \
                 credential_username, credential_updated_at, restricted_to, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $10, $8, $9) RETURNING ",
                code_host_columns!()
            ))
            .bind(code_host.kind.as_str())
            .bind(code_host.name.clone())
            .bind(code_host.url.clone())
            .bind(to_text(&code_host.config))
            .bind(code_host.credential_ciphertext.clone())
            .bind(code_host.credential_nonce.clone())
            .bind(code_host.credential_username.clone())
            .bind(optional_to_text(&code_host.restricted_to))
            .bind(now_ms)
            .bind(code_host.credential_ciphertext.is_some().then_some(now_ms))
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    pub async fn get_code_host(&self, code_host_id: CodeHostId) -> Result<CodeHost, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, CodeHost>(concat!("SELECT ", code_host_columns!(), " FROM code_hosts WHERE id = $1"))
                .bind(code_host_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("code host {code_host_id}")))
        })
    }

    pub async fn list_code_hosts(&self) -> Result<Vec<CodeHost>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, CodeHost>(concat!("SELECT ", code_host_columns!(), " FROM code_hosts ORDER BY id"))
                .fetch_all(pool)
                .await?)
        })
    }

    /// Replaces a code host's configuration and credential.
    pub async fn update_code_host(
        &self,
        code_host_id: CodeHostId,
        update: &NewCodeHost,
    ) -> Result<CodeHost, StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query_as::<_, CodeHost>(concat!(
                "UPDATE code_hosts SET kind = $2, name = $3, url = $4, config = $5, credential_ciphertext = $6, \
                 credential_nonce = $7, restricted_to = $8, credential_username = $9 WHERE id = $1 RETURNING ",
                code_host_columns!()
            ))
            .bind(code_host_id)
            .bind(update.kind.as_str())
            .bind(update.name.clone())
            .bind(update.url.clone())
            .bind(to_text(&update.config))
            .bind(update.credential_ciphertext.clone())
            .bind(update.credential_nonce.clone())
            .bind(optional_to_text(&update.restricted_to))
            .bind(update.credential_username.clone())
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("code host {code_host_id}")))
        })
    }

    /// Sets (`Some`) or removes (`None`) the connection's credential, in one statement so the
    /// ciphertext, nonce and username always belong together.
    pub async fn set_code_host_credential(
        &self,
        code_host_id: CodeHostId,
        credential: Option<&EncryptedCredential>,
        now_ms: i64,
    ) -> Result<CodeHost, StoreError> {
        let (ciphertext, nonce, username) = match credential {
            Some(credential) => (
                Some(credential.ciphertext.clone()),
                Some(credential.nonce.clone()),
                credential.username.clone(),
            ),
            None => (None, None, None),
        };
        write_transaction!(self, tx, dialect => {
            sqlx::query_as::<_, CodeHost>(concat!(
                "UPDATE code_hosts SET credential_ciphertext = $2, credential_nonce = $3, credential_username = $4, \
                 credential_updated_at = $5 WHERE id = $1 RETURNING ",
                code_host_columns!()
            ))
            .bind(code_host_id)
            .bind(ciphertext)
            .bind(nonce)
            .bind(username)
            .bind(now_ms)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("code host {code_host_id}")))
        })
    }

    /// Replaces who may read a code host's repositories: `None` = everyone, otherwise a JSON
    /// document the server owns (user and org ids).
    pub async fn set_code_host_restriction(
        &self,
        code_host_id: CodeHostId,
        restricted_to: Option<&serde_json::Value>,
    ) -> Result<CodeHost, StoreError> {
        let restricted_to = restricted_to.cloned();
        write_transaction!(self, tx, dialect => {
            sqlx::query_as::<_, CodeHost>(concat!(
                "UPDATE code_hosts SET restricted_to = $2 WHERE id = $1 RETURNING ",
                code_host_columns!()
            ))
            .bind(code_host_id)
            .bind(optional_to_text(&restricted_to))
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("code host {code_host_id}")))
        })
    }

    pub async fn delete_code_host(&self, code_host_id: CodeHostId) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let deleted = sqlx::query("DELETE FROM code_hosts WHERE id = $1").bind(code_host_id).execute(&mut **tx).await?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("code host {code_host_id}")));
            }
            Ok(())
        })
    }

    /// Inserts a repository or, if the name exists, updates its host, clone URL and flags
    /// (mirror state is kept).
    pub async fn upsert_repository(
        &self,
        repository: &NewRepository,
        now_ms: i64,
    ) -> Result<Repository, StoreError> {
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_as::<_, Repository>(concat!(
                "INSERT INTO repositories (code_host_id, name, clone_url, default_branch, archived, fork, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET \
                 code_host_id = excluded.code_host_id, clone_url = excluded.clone_url, \
                 default_branch = COALESCE(excluded.default_branch, repositories.default_branch), \
                 archived = excluded.archived, fork = excluded.fork RETURNING ",
                repository_columns!()
            ))
            .bind(repository.code_host_id)
            .bind(repository.name.clone())
            .bind(repository.clone_url.clone())
            .bind(repository.default_branch.clone())
            .bind(repository.archived)
            .bind(repository.fork)
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    /// The repositories with these ids (those that exist), for listing pages that would
    /// otherwise look each one up.
    pub async fn get_repositories(&self, repository_ids: &[RepositoryId]) -> Result<Vec<Repository>, StoreError> {
        let mut found = Vec::with_capacity(repository_ids.len());
        for chunk in repository_ids.chunks(crate::backend::BULK_INSERT_ROWS) {
            let sql = format!(
                concat!("SELECT ", repository_columns!(), " FROM repositories WHERE id IN ({})"),
                crate::backend::placeholders(1, chunk.len())
            );
            on_pool!(self, pool, dialect => {
                let mut query = sqlx::query_as::<_, Repository>(sqlx::AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(*id);
                }
                found.extend(query.fetch_all(pool).await?);
            });
        }
        Ok(found)
    }

    pub async fn get_repository(
        &self,
        repository_id: RepositoryId,
    ) -> Result<Repository, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, Repository>(concat!("SELECT ", repository_columns!(), " FROM repositories WHERE id = $1"))
                .bind(repository_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("repository {repository_id}")))
        })
    }

    pub async fn get_repository_by_name(
        &self,
        name: &str,
    ) -> Result<Option<Repository>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Repository>(concat!("SELECT ", repository_columns!(), " FROM repositories WHERE name = $1"))
                .bind(name.to_owned())
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Repositories ordered by name, strictly after `after_name` (keyset pagination).
    pub async fn list_repositories(
        &self,
        after_name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Repository>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Repository>(concat!(
                "SELECT ", repository_columns!(), " FROM repositories WHERE name > $1 ORDER BY name LIMIT $2"
            ))
            .bind(after_name.unwrap_or("").to_owned())
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// A code host's repositories ordered by name, after `after_name`.
    pub async fn list_code_host_repositories(
        &self,
        code_host_id: CodeHostId,
        after_name: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Repository>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Repository>(concat!(
                "SELECT ", repository_columns!(),
                " FROM repositories WHERE code_host_id = $1 AND name > $2 ORDER BY name LIMIT $3"
            ))
            .bind(code_host_id)
            .bind(after_name.unwrap_or("").to_owned())
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Records a mirror sync outcome.
    pub async fn update_repository_mirror_state(
        &self,
        repository_id: RepositoryId,
        update: &MirrorStateUpdate,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let updated = sqlx::query(
                "UPDATE repositories SET mirror_state = $2, head_commit = COALESCE($3, head_commit), \
                 default_branch = COALESCE($4, default_branch), last_error = $5, \
                 last_synced_at = COALESCE($6, last_synced_at) WHERE id = $1",
            )
            .bind(repository_id)
            .bind(update.mirror_state.as_str())
            .bind(update.head_commit.clone())
            .bind(update.default_branch.clone())
            .bind(update.last_error.clone())
            .bind(update.synced_at)
            .execute(&mut **tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("repository {repository_id}")));
            }
            Ok(())
        })
    }
}
