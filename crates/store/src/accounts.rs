//! Users, orgs and org membership, plus the two kinds of bearer tokens: users' access tokens and
//! executors' shared tokens. Tokens arrive hashed (SHA-256 hex); the store never sees raw
//! tokens. Usernames and org names share one namespace, enforced by `namespace_names` in the same
//! transaction that creates the user or org.

use crate::Store;
use crate::error::StoreError;
use crate::ids::{ExecutorTokenId, OrgId, TokenId, UserId};
use crate::json::text_enum;

/// A user to create. `password_hash` is an argon2 PHC string made by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub site_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub email: String,
    pub password_hash: Option<String>,
    pub site_admin: bool,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrg {
    pub name: String,
    pub display_name: String,
    pub members_can_administer_batch_changes: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Org {
    pub id: OrgId,
    pub name: String,
    pub display_name: String,
    pub members_can_administer_batch_changes: bool,
    pub created_at: i64,
}

text_enum! {
    /// A user's role in an org.
    pub enum OrgRole {
        Admin => "admin",
        Member => "member",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct OrgMember {
    pub org_id: OrgId,
    pub user_id: UserId,
    #[sqlx(try_from = "String")]
    pub role: OrgRole,
    pub created_at: i64,
}

text_enum! {
    /// What an access token may do.
    pub enum TokenScope {
        User => "user",
        SiteAdmin => "site-admin",
    }
}

/// An access token's metadata (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessToken {
    pub id: TokenId,
    pub user_id: UserId,
    #[sqlx(try_from = "String")]
    pub scope: TokenScope,
    pub note: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// When the token stops working (web sessions); `None` for tokens that last until revoked.
    pub expires_at: Option<i64>,
}

/// The result of authenticating with an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthenticatedToken {
    pub token_id: TokenId,
    pub scope: TokenScope,
    pub user: User,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ExecutorToken {
    pub id: ExecutorTokenId,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

macro_rules! user_columns {
    () => {
        "id, username, display_name, email, password_hash, site_admin, created_at"
    };
}

impl Store {
    /// Creates a user; `Conflict` if the name is taken by a user or an org (case-insensitive).
    pub async fn create_user(&self, user: &NewUser, now_ms: i64) -> Result<User, StoreError> {
        write_transaction!(self, tx, dialect => {
            let created = sqlx::query_as::<_, User>(concat!(
                "INSERT INTO users (username, display_name, email, password_hash, site_admin, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING ", user_columns!()
            ))
            .bind(user.username.clone())
            .bind(user.display_name.clone())
            .bind(user.email.clone())
            .bind(user.password_hash.clone())
            .bind(user.site_admin)
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await
            .map_err(|error| name_taken(error, &user.username))?;
            sqlx::query("INSERT INTO namespace_names (name_lower, user_id) VALUES ($1, $2)")
                .bind(user.username.to_lowercase())
                .bind(created.id)
                .execute(&mut **tx)
                .await
                .map_err(|error| name_taken(error, &user.username))?;
            Ok(created)
        })
    }

    pub async fn get_user(&self, user_id: UserId) -> Result<User, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, User>(concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1"))
                .bind(user_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("user {user_id}")))
        })
    }

    pub async fn get_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, User>(concat!("SELECT ", user_columns!(), " FROM users WHERE username = $1"))
                .bind(username.to_owned())
                .fetch_optional(pool)
                .await?)
        })
    }

    /// Users ordered by id, after `after` (keyset pagination).
    pub async fn list_users(
        &self,
        after: Option<UserId>,
        limit: i64,
    ) -> Result<Vec<User>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, User>(concat!(
                "SELECT ", user_columns!(), " FROM users WHERE id > $1 ORDER BY id LIMIT $2"
            ))
            .bind(after.map_or(0, |user_id| user_id.0))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Replaces a user's password hash (argon2 PHC string made by the caller).
    pub async fn set_user_password_hash(
        &self,
        user_id: UserId,
        password_hash: Option<&str>,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let updated = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                .bind(user_id)
                .bind(password_hash.map(str::to_owned))
                .execute(&mut **tx)
                .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("user {user_id}")));
            }
            Ok(())
        })
    }

    /// Creates an org; `Conflict` if the name is taken by a user or an org (case-insensitive).
    pub async fn create_org(&self, org: &NewOrg, now_ms: i64) -> Result<Org, StoreError> {
        write_transaction!(self, tx, dialect => {
            let created = sqlx::query_as::<_, Org>(
                "INSERT INTO orgs (name, display_name, members_can_administer_batch_changes, created_at) \
                 VALUES ($1, $2, $3, $4) RETURNING id, name, display_name, members_can_administer_batch_changes, created_at",
            )
            .bind(org.name.clone())
            .bind(org.display_name.clone())
            .bind(org.members_can_administer_batch_changes)
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await
            .map_err(|error| name_taken(error, &org.name))?;
            sqlx::query("INSERT INTO namespace_names (name_lower, org_id) VALUES ($1, $2)")
                .bind(org.name.to_lowercase())
                .bind(created.id)
                .execute(&mut **tx)
                .await
                .map_err(|error| name_taken(error, &org.name))?;
            Ok(created)
        })
    }

    pub async fn get_org(&self, org_id: OrgId) -> Result<Org, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, Org>(
                "SELECT id, name, display_name, members_can_administer_batch_changes, created_at FROM orgs WHERE id = $1",
            )
            .bind(org_id)
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("org {org_id}")))
        })
    }

    pub async fn get_org_by_name(&self, name: &str) -> Result<Option<Org>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Org>(
                "SELECT id, name, display_name, members_can_administer_batch_changes, created_at FROM orgs WHERE name = $1",
            )
            .bind(name.to_owned())
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Orgs ordered by id, after `after` (keyset pagination).
    pub async fn list_orgs(&self, after: Option<OrgId>, limit: i64) -> Result<Vec<Org>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Org>(
                "SELECT id, name, display_name, members_can_administer_batch_changes, created_at FROM orgs \
                 WHERE id > $1 ORDER BY id LIMIT $2",
            )
            .bind(after.map_or(0, |org_id| org_id.0))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Sets whether every member of the org may change its batch specs and batch changes
    /// (Sourcegraph's `orgs.allMembersBatchChangesAdmin`), or only its admins.
    pub async fn set_org_members_can_administer(
        &self,
        org_id: OrgId,
        allowed: bool,
    ) -> Result<Org, StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query_as::<_, Org>(
                "UPDATE orgs SET members_can_administer_batch_changes = $2 WHERE id = $1 \
                 RETURNING id, name, display_name, members_can_administer_batch_changes, created_at",
            )
            .bind(org_id)
            .bind(allowed)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("org {org_id}")))
        })
    }

    /// Adds a member or changes their role.
    pub async fn set_org_member(
        &self,
        org_id: OrgId,
        user_id: UserId,
        role: OrgRole,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query(
                "INSERT INTO org_members (org_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (org_id, user_id) DO UPDATE SET role = excluded.role",
            )
            .bind(org_id)
            .bind(user_id)
            .bind(role.as_str())
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    }

    pub async fn remove_org_member(
        &self,
        org_id: OrgId,
        user_id: UserId,
    ) -> Result<bool, StoreError> {
        write_transaction!(self, tx, dialect => {
            let removed = sqlx::query("DELETE FROM org_members WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .execute(&mut **tx)
                .await?;
            Ok(removed.rows_affected() > 0)
        })
    }

    /// The user's role in the org, `None` if not a member.
    pub async fn get_org_role(
        &self,
        org_id: OrgId,
        user_id: UserId,
    ) -> Result<Option<OrgRole>, StoreError> {
        let role = on_pool!(self, pool, dialect => {
            sqlx::query_scalar::<_, String>("SELECT role FROM org_members WHERE org_id = $1 AND user_id = $2")
                .bind(org_id)
                .bind(user_id)
                .fetch_optional(pool)
                .await?
        });
        role.map(OrgRole::try_from).transpose()
    }

    pub async fn list_org_members(&self, org_id: OrgId) -> Result<Vec<OrgMember>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, OrgMember>(
                "SELECT org_id, user_id, role, created_at FROM org_members WHERE org_id = $1 ORDER BY user_id",
            )
            .bind(org_id)
            .fetch_all(pool)
            .await?)
        })
    }

    pub async fn list_user_orgs(&self, user_id: UserId) -> Result<Vec<OrgMember>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, OrgMember>(
                "SELECT org_id, user_id, role, created_at FROM org_members WHERE user_id = $1 ORDER BY org_id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Stores a new access token by its hash; it lasts until revoked.
    pub async fn create_access_token(
        &self,
        user_id: UserId,
        token_hash: &str,
        scope: TokenScope,
        note: &str,
        now_ms: i64,
    ) -> Result<AccessToken, StoreError> {
        self.create_expiring_access_token(user_id, token_hash, scope, note, None, now_ms)
            .await
    }

    /// Stores a new access token by its hash that stops working at `expires_at_ms` (web
    /// sessions), or never when `None`.
    pub async fn create_expiring_access_token(
        &self,
        user_id: UserId,
        token_hash: &str,
        scope: TokenScope,
        note: &str,
        expires_at_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<AccessToken, StoreError> {
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_as::<_, AccessToken>(
                "INSERT INTO access_tokens (user_id, token_hash, scope, note, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 RETURNING id, user_id, scope, note, created_at, last_used_at, revoked_at, expires_at",
            )
            .bind(user_id)
            .bind(token_hash.to_owned())
            .bind(scope.as_str())
            .bind(note.to_owned())
            .bind(now_ms)
            .bind(expires_at_ms)
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    /// Authenticates by token hash: the token's user and scope, unless revoked or expired.
    /// Records the use.
    pub async fn lookup_access_token(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<AuthenticatedToken>, StoreError> {
        let found = on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, (TokenId, String, UserId)>(
                "SELECT id, scope, user_id FROM access_tokens WHERE token_hash = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)",
            )
            .bind(token_hash.to_owned())
            .bind(now_ms)
            .fetch_optional(pool)
            .await?
        });
        let Some((token_id, scope, user_id)) = found else {
            return Ok(None);
        };
        let noted: Result<(), StoreError> = write_transaction!(self, tx, dialect => {
            sqlx::query("UPDATE access_tokens SET last_used_at = $2 WHERE id = $1")
                .bind(token_id)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            Ok(())
        });
        match noted {
            // Bookkeeping only: a full disk must not turn every read into an error (the writes
            // that matter report it themselves).
            Err(StoreError::StorageFull { .. }) => {}
            other => other?,
        }
        let user = self.get_user(user_id).await?;
        Ok(Some(AuthenticatedToken {
            token_id,
            scope: TokenScope::try_from(scope)?,
            user,
        }))
    }

    pub async fn list_access_tokens(
        &self,
        user_id: UserId,
    ) -> Result<Vec<AccessToken>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, AccessToken>(
                "SELECT id, user_id, scope, note, created_at, last_used_at, revoked_at, expires_at FROM access_tokens \
                 WHERE user_id = $1 ORDER BY id",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Revokes a token of `user_id`; `NotFound` if it is not theirs or already revoked.
    pub async fn revoke_access_token(
        &self,
        token_id: TokenId,
        user_id: UserId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let revoked = sqlx::query(
                "UPDATE access_tokens SET revoked_at = $3 WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL",
            )
            .bind(token_id)
            .bind(user_id)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            if revoked.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("access token {token_id}")));
            }
            Ok(())
        })
    }

    pub async fn create_executor_token(
        &self,
        token_hash: &str,
        name: &str,
        now_ms: i64,
    ) -> Result<ExecutorToken, StoreError> {
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_as::<_, ExecutorToken>(
                "INSERT INTO executor_tokens (token_hash, name, created_at) VALUES ($1, $2, $3) \
                 RETURNING id, name, created_at, revoked_at",
            )
            .bind(token_hash.to_owned())
            .bind(name.to_owned())
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    /// The executor token with this hash, unless revoked.
    pub async fn lookup_executor_token(
        &self,
        token_hash: &str,
    ) -> Result<Option<ExecutorToken>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, ExecutorToken>(
                "SELECT id, name, created_at, revoked_at FROM executor_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            )
            .bind(token_hash.to_owned())
            .fetch_optional(pool)
            .await?)
        })
    }

    pub async fn list_executor_tokens(&self) -> Result<Vec<ExecutorToken>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, ExecutorToken>("SELECT id, name, created_at, revoked_at FROM executor_tokens ORDER BY id")
                .fetch_all(pool)
                .await?)
        })
    }

    pub async fn revoke_executor_token(
        &self,
        token_id: ExecutorTokenId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let revoked = sqlx::query("UPDATE executor_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(token_id)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            if revoked.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("executor token {token_id}")));
            }
            Ok(())
        })
    }
}

/// Turns a unique violation on a user or org name into a message naming the name.
fn name_taken(error: sqlx::Error, name: &str) -> StoreError {
    match StoreError::from(error) {
        StoreError::Conflict { .. } => StoreError::Conflict {
            message: format!("the name {name:?} is already taken by a user or an organization"),
        },
        other => other,
    }
}
