//! Changeset specs (what an execution produced), batch changes (the named, applied object in a
//! namespace) and changesets (the pull requests on code hosts). Changesets only have the basic
//! insert/get/list here; the reconciler work will extend them.
//!
//! A changeset's `batch_change_ids` JSON column is its record view; the
//! `changeset_batch_changes` table mirrors it so "changesets of batch change X" is an index
//! lookup on both backends.

use sqlx::AssertSqlSafe;

use crate::Store;
use crate::backend::{BULK_INSERT_ROWS, values_rows};
use crate::changeset_history::{ReconcilerEntry, record_event_if_changed};
use crate::error::StoreError;
use crate::ids::{
    BatchChangeId, BatchSpecId, ChangesetId, ChangesetSpecId, CodeHostId, OrgId, RepositoryId, UserId,
    WorkspaceId,
};
use crate::json::{JsonText, Namespace, NullableJsonText, optional_to_text, text_enum, to_text};

text_enum! {
    /// Whether a changeset spec creates a branch or tracks an existing changeset.
    pub enum ChangesetSpecKind {
        Branch => "branch",
        Existing => "existing",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewChangesetSpec {
    pub rand_id: String,
    pub batch_spec_id: BatchSpecId,
    pub workspace_id: Option<WorkspaceId>,
    pub repository_id: RepositoryId,
    pub kind: ChangesetSpecKind,
    pub external_id: Option<String>,
    pub base_ref: Option<String>,
    pub base_rev: Option<String>,
    pub head_ref: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub published: Option<serde_json::Value>,
    pub diff: Option<Vec<u8>>,
    pub commit_message: Option<String>,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    pub fork: Option<String>,
    pub diff_stat_added: i64,
    pub diff_stat_deleted: i64,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ChangesetSpec {
    pub id: ChangesetSpecId,
    pub rand_id: String,
    pub batch_spec_id: BatchSpecId,
    pub workspace_id: Option<WorkspaceId>,
    pub repository_id: RepositoryId,
    #[sqlx(try_from = "String")]
    pub kind: ChangesetSpecKind,
    pub external_id: Option<String>,
    pub base_ref: Option<String>,
    pub base_rev: Option<String>,
    pub head_ref: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    #[sqlx(try_from = "NullableJsonText")]
    pub published: Option<serde_json::Value>,
    pub diff: Option<Vec<u8>>,
    pub commit_message: Option<String>,
    pub author_name: Option<String>,
    pub author_email: Option<String>,
    pub fork: Option<String>,
    pub diff_stat_added: i64,
    pub diff_stat_deleted: i64,
    pub created_at: i64,
}

macro_rules! changeset_spec_columns {
    () => {
        "id, rand_id, batch_spec_id, workspace_id, repository_id, kind, external_id, base_ref, base_rev, head_ref, \
         title, body, published, diff, commit_message, author_name, author_email, fork, diff_stat_added, \
         diff_stat_deleted, created_at"
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBatchChange {
    pub namespace: Namespace,
    pub name: String,
    pub description: String,
    pub creator_user_id: UserId,
    pub batch_spec_id: Option<BatchSpecId>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BatchChange {
    pub id: BatchChangeId,
    pub namespace_user_id: Option<UserId>,
    pub namespace_org_id: Option<OrgId>,
    pub name: String,
    pub description: String,
    pub creator_user_id: Option<UserId>,
    pub last_applier_user_id: Option<UserId>,
    pub last_applied_at: Option<i64>,
    pub batch_spec_id: Option<BatchSpecId>,
    pub closed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl BatchChange {
    pub fn namespace(&self) -> Result<Namespace, StoreError> {
        Namespace::from_columns(self.namespace_user_id, self.namespace_org_id)
    }
}

/// The mutable fields of a batch change; the update replaces all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchChangeUpdate {
    pub description: String,
    pub batch_spec_id: Option<BatchSpecId>,
    pub last_applier_user_id: Option<UserId>,
    pub last_applied_at: Option<i64>,
    pub closed_at: Option<i64>,
}

macro_rules! batch_change_columns {
    () => {
        "id, namespace_user_id, namespace_org_id, name, description, creator_user_id, last_applier_user_id, \
         last_applied_at, batch_spec_id, closed_at, created_at, updated_at"
    };
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewChangeset {
    pub repository_id: RepositoryId,
    pub batch_change_ids: Vec<BatchChangeId>,
    pub owned_by_batch_change_id: Option<BatchChangeId>,
    pub current_spec_id: Option<ChangesetSpecId>,
    pub external_id: Option<String>,
    pub publication_state: String,
    pub reconciler_state: String,
    pub metadata: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Changeset {
    pub id: ChangesetId,
    pub repository_id: RepositoryId,
    #[sqlx(try_from = "JsonText")]
    pub batch_change_ids: serde_json::Value,
    pub owned_by_batch_change_id: Option<BatchChangeId>,
    pub current_spec_id: Option<ChangesetSpecId>,
    pub previous_spec_id: Option<ChangesetSpecId>,
    pub external_id: Option<String>,
    pub external_branch: Option<String>,
    pub external_url: Option<String>,
    pub external_state: Option<String>,
    pub review_state: Option<String>,
    pub check_state: Option<String>,
    pub publication_state: String,
    pub ui_publication_state: Option<String>,
    pub reconciler_state: String,
    pub failure_message: Option<String>,
    pub num_failures: i64,
    pub process_after: Option<i64>,
    pub closing: bool,
    pub archived: bool,
    pub detached_at: Option<i64>,
    #[sqlx(try_from = "JsonText")]
    pub metadata: serde_json::Value,
    pub created_at: i64,
    pub updated_at: i64,
}

macro_rules! changeset_columns {
    () => {
        "c.id, c.repository_id, c.batch_change_ids, c.owned_by_batch_change_id, c.current_spec_id, c.previous_spec_id, \
         c.external_id, c.external_branch, c.external_url, c.external_state, c.review_state, c.check_state, \
         c.publication_state, c.ui_publication_state, c.reconciler_state, c.failure_message, c.num_failures, \
         c.process_after, c.closing, c.archived, c.detached_at, c.metadata, c.created_at, c.updated_at"
    };
}

/// Inserts changeset specs inside the caller's transaction (chunked); evaluates to their ids
/// in input order.
macro_rules! insert_changeset_specs_in {
    ($tx:ident, $dialect:ident, $specs:expr, $now_ms:expr) => {{
        let mut ids = Vec::with_capacity($specs.len());
        for chunk in $specs.chunks(BULK_INSERT_ROWS) {
            let sql = format!(
                "INSERT INTO changeset_specs (rand_id, batch_spec_id, workspace_id, repository_id, kind, external_id, \
                 base_ref, base_rev, head_ref, title, body, published, diff, commit_message, author_name, \
                 author_email, fork, diff_stat_added, diff_stat_deleted, created_at) VALUES {} RETURNING id",
                values_rows($dialect, chunk.len(), 20)
            );
            let mut query = sqlx::query_scalar::<_, ChangesetSpecId>(AssertSqlSafe(sql));
            for spec in chunk {
                query = query
                    .bind(spec.rand_id.clone())
                    .bind(spec.batch_spec_id)
                    .bind(spec.workspace_id)
                    .bind(spec.repository_id)
                    .bind(spec.kind.as_str())
                    .bind(spec.external_id.clone())
                    .bind(spec.base_ref.clone())
                    .bind(spec.base_rev.clone())
                    .bind(spec.head_ref.clone())
                    .bind(spec.title.clone())
                    .bind(spec.body.clone())
                    .bind(optional_to_text(&spec.published))
                    .bind(spec.diff.clone())
                    .bind(spec.commit_message.clone())
                    .bind(spec.author_name.clone())
                    .bind(spec.author_email.clone())
                    .bind(spec.fork.clone())
                    .bind(spec.diff_stat_added)
                    .bind(spec.diff_stat_deleted)
                    .bind($now_ms);
            }
            let mut chunk_ids = query.fetch_all(&mut **$tx).await?;
            chunk_ids.sort();
            ids.extend(chunk_ids);
        }
        ids
    }};
}

impl Store {
    /// Inserts changeset specs in one transaction (chunked); returns ids in input order.
    pub async fn insert_changeset_specs(
        &self,
        specs: &[NewChangesetSpec],
        now_ms: i64,
    ) -> Result<Vec<ChangesetSpecId>, StoreError> {
        if specs.is_empty() {
            return Ok(Vec::new());
        }
        write_transaction!(self, tx, dialect => {
            let ids = insert_changeset_specs_in!(tx, dialect, specs, now_ms);
            Ok(ids)
        })
    }

    /// Stores the changeset specs of a job's workspace, replacing any an earlier report of the
    /// same workspace stored, in one transaction, and only while `executor` still owns the
    /// running job. The server calls this before it marks the job complete: a crash between
    /// the two leaves the job running (its executor reports again, or it is requeued) with one
    /// set of specs, never a completed workspace without them or a workspace with two sets.
    /// Returns false (and stores nothing) when the job is no longer this executor's.
    pub async fn replace_workspace_changeset_specs(
        &self,
        job_id: crate::ids::JobId,
        executor: &str,
        workspace_id: WorkspaceId,
        specs: &[NewChangesetSpec],
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        write_transaction!(self, tx, dialect => {
            let owned = sqlx::query_scalar::<_, i64>(
                "SELECT COUNT(*) FROM execution_jobs WHERE id = $1 AND workspace_id = $2 AND state = 'processing' AND executor_name = $3",
            )
            .bind(job_id)
            .bind(workspace_id)
            .bind(executor.to_owned())
            .fetch_one(&mut **tx)
            .await?;
            if owned == 0 {
                return Ok(false);
            }
            sqlx::query("DELETE FROM changeset_specs WHERE workspace_id = $1").bind(workspace_id).execute(&mut **tx).await?;
            let ids = if specs.is_empty() { Vec::new() } else { insert_changeset_specs_in!(tx, dialect, specs, now_ms) };
            sqlx::query("UPDATE workspaces SET changeset_spec_ids = $2 WHERE id = $1")
                .bind(workspace_id)
                .bind(serde_json::to_string(&ids)?)
                .execute(&mut **tx)
                .await?;
            Ok(true)
        })
    }

    pub async fn get_changeset_spec(
        &self,
        changeset_spec_id: ChangesetSpecId,
    ) -> Result<ChangesetSpec, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, ChangesetSpec>(concat!("SELECT ", changeset_spec_columns!(), " FROM changeset_specs WHERE id = $1"))
                .bind(changeset_spec_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("changeset spec {changeset_spec_id}")))
        })
    }

    /// The changeset specs with these ids (those that exist), in one query per 500, for pages
    /// that would otherwise look each one up.
    pub async fn get_changeset_specs(&self, ids: &[ChangesetSpecId]) -> Result<Vec<ChangesetSpec>, StoreError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(crate::backend::BULK_INSERT_ROWS) {
            let sql = format!(
                concat!("SELECT ", changeset_spec_columns!(), " FROM changeset_specs WHERE id IN ({})"),
                crate::backend::placeholders(1, chunk.len())
            );
            on_pool!(self, pool, dialect => {
                let mut query = sqlx::query_as::<_, ChangesetSpec>(sqlx::AssertSqlSafe(sql));
                for id in chunk {
                    query = query.bind(*id);
                }
                found.extend(query.fetch_all(pool).await?);
            });
        }
        Ok(found)
    }

    pub async fn get_changeset_spec_by_rand_id(
        &self,
        rand_id: &str,
    ) -> Result<ChangesetSpec, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, ChangesetSpec>(concat!(
                "SELECT ", changeset_spec_columns!(), " FROM changeset_specs WHERE rand_id = $1"
            ))
            .bind(rand_id.to_owned())
            .fetch_optional(pool)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("changeset spec {rand_id:?}")))
        })
    }

    /// A page of a batch spec's changeset specs by id, after `after`.
    pub async fn list_changeset_specs(
        &self,
        batch_spec_id: BatchSpecId,
        after: Option<ChangesetSpecId>,
        limit: i64,
    ) -> Result<Vec<ChangesetSpec>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, ChangesetSpec>(concat!(
                "SELECT ", changeset_spec_columns!(),
                " FROM changeset_specs WHERE batch_spec_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .bind(batch_spec_id)
            .bind(after.map_or(0, |id| id.0))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Creates a batch change; `Conflict` if the namespace already has one with this name.
    pub async fn create_batch_change(
        &self,
        batch_change: &NewBatchChange,
        now_ms: i64,
    ) -> Result<BatchChange, StoreError> {
        let (namespace_user_id, namespace_org_id) = batch_change.namespace.columns();
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_as::<_, BatchChange>(concat!(
                "INSERT INTO batch_changes (namespace_user_id, namespace_org_id, name, description, creator_user_id, \
                 batch_spec_id, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING ",
                batch_change_columns!()
            ))
            .bind(namespace_user_id)
            .bind(namespace_org_id)
            .bind(batch_change.name.clone())
            .bind(batch_change.description.clone())
            .bind(batch_change.creator_user_id)
            .bind(batch_change.batch_spec_id)
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    pub async fn get_batch_change(
        &self,
        batch_change_id: BatchChangeId,
    ) -> Result<BatchChange, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, BatchChange>(concat!("SELECT ", batch_change_columns!(), " FROM batch_changes WHERE id = $1"))
                .bind(batch_change_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("batch change {batch_change_id}")))
        })
    }

    pub async fn get_batch_change_by_name(
        &self,
        namespace: Namespace,
        name: &str,
    ) -> Result<Option<BatchChange>, StoreError> {
        let (namespace_user_id, namespace_org_id) = namespace.columns();
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, BatchChange>(concat!(
                "SELECT ", batch_change_columns!(),
                " FROM batch_changes WHERE COALESCE(namespace_user_id, 0) = $1 AND COALESCE(namespace_org_id, 0) = $2 \
                 AND name = $3"
            ))
            .bind(namespace_user_id.map_or(0, |id| id.0))
            .bind(namespace_org_id.map_or(0, |id| id.0))
            .bind(name.to_owned())
            .fetch_optional(pool)
            .await?)
        })
    }

    /// A namespace's batch changes by id, after `after`.
    pub async fn list_batch_changes(
        &self,
        namespace: Namespace,
        after: Option<BatchChangeId>,
        limit: i64,
    ) -> Result<Vec<BatchChange>, StoreError> {
        let (namespace_user_id, namespace_org_id) = namespace.columns();
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, BatchChange>(concat!(
                "SELECT ", batch_change_columns!(),
                " FROM batch_changes WHERE COALESCE(namespace_user_id, 0) = $1 AND COALESCE(namespace_org_id, 0) = $2 \
                 AND id > $3 ORDER BY id LIMIT $4"
            ))
            .bind(namespace_user_id.map_or(0, |id| id.0))
            .bind(namespace_org_id.map_or(0, |id| id.0))
            .bind(after.map_or(0, |id| id.0))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    pub async fn update_batch_change(
        &self,
        batch_change_id: BatchChangeId,
        update: &BatchChangeUpdate,
        now_ms: i64,
    ) -> Result<BatchChange, StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query_as::<_, BatchChange>(concat!(
                "UPDATE batch_changes SET description = $2, batch_spec_id = $3, last_applier_user_id = $4, \
                 last_applied_at = $5, closed_at = $6, updated_at = $7 WHERE id = $1 RETURNING ",
                batch_change_columns!()
            ))
            .bind(batch_change_id)
            .bind(update.description.clone())
            .bind(update.batch_spec_id)
            .bind(update.last_applier_user_id)
            .bind(update.last_applied_at)
            .bind(update.closed_at)
            .bind(now_ms)
            .fetch_optional(&mut **tx)
            .await?
            .ok_or_else(|| StoreError::not_found(format!("batch change {batch_change_id}")))
        })
    }

    pub async fn insert_changeset(
        &self,
        changeset: &NewChangeset,
        now_ms: i64,
    ) -> Result<Changeset, StoreError> {
        write_transaction!(self, tx, dialect => {
            let changeset_id = sqlx::query_scalar::<_, ChangesetId>(
                "INSERT INTO changesets (repository_id, batch_change_ids, owned_by_batch_change_id, current_spec_id, \
                 external_id, publication_state, reconciler_state, metadata, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING id",
            )
            .bind(changeset.repository_id)
            .bind(serde_json::to_string(&changeset.batch_change_ids)?)
            .bind(changeset.owned_by_batch_change_id)
            .bind(changeset.current_spec_id)
            .bind(changeset.external_id.clone())
            .bind(changeset.publication_state.clone())
            .bind(changeset.reconciler_state.clone())
            .bind(to_text(&changeset.metadata))
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?;
            for batch_change_id in &changeset.batch_change_ids {
                sqlx::query(
                    "INSERT INTO changeset_batch_changes (changeset_id, batch_change_id) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(changeset_id)
                .bind(*batch_change_id)
                .execute(&mut **tx)
                .await?;
            }
            Ok(sqlx::query_as::<_, Changeset>(concat!("SELECT ", changeset_columns!(), " FROM changesets c WHERE c.id = $1"))
                .bind(changeset_id)
                .fetch_one(&mut **tx)
                .await?)
        })
    }

    pub async fn get_changeset(&self, changeset_id: ChangesetId) -> Result<Changeset, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, Changeset>(concat!("SELECT ", changeset_columns!(), " FROM changesets c WHERE c.id = $1"))
                .bind(changeset_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("changeset {changeset_id}")))
        })
    }

    /// A page of a batch change's changesets by id, after `after`.
    pub async fn list_changesets_for_batch_change(
        &self,
        batch_change_id: BatchChangeId,
        after: Option<ChangesetId>,
        limit: i64,
    ) -> Result<Vec<Changeset>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Changeset>(concat!(
                "SELECT ", changeset_columns!(),
                " FROM changeset_batch_changes l JOIN changesets c ON c.id = l.changeset_id \
                 WHERE l.batch_change_id = $1 AND l.changeset_id > $2 ORDER BY l.changeset_id LIMIT $3"
            ))
            .bind(batch_change_id)
            .bind(after.map_or(0, |id| id.0))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Deletes a batch change; its changesets stay as history, no longer linked to it.
    pub async fn delete_batch_change(&self, batch_change_id: BatchChangeId) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let deleted = sqlx::query("DELETE FROM batch_changes WHERE id = $1").bind(batch_change_id).execute(&mut **tx).await?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("batch change {batch_change_id}")));
            }
            Ok(())
        })
    }

    /// Published pull requests that are still open or drafts, least recently synced first:
    /// what the sync worker asks the code hosts about.
    pub async fn changesets_to_sync(&self, limit: i64) -> Result<Vec<Changeset>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Changeset>(concat!(
                "SELECT ", changeset_columns!(),
                " FROM changesets c WHERE c.publication_state = 'PUBLISHED' AND c.external_state IN ('OPEN', 'DRAFT') \
                 AND c.external_id IS NOT NULL AND c.reconciler_state = 'completed' ORDER BY c.updated_at, c.id LIMIT $1"
            ))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// The published changesets (those with a pull request number) of the repository named
    /// `repository_name` on code host `code_host_id`, compared case-insensitively as forges do;
    /// at most `limit`. An incoming webhook picks the ones it names from these.
    pub async fn published_changesets_in_repository(
        &self,
        code_host_id: CodeHostId,
        repository_name: &str,
        limit: i64,
    ) -> Result<Vec<Changeset>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Changeset>(concat!(
                "SELECT ", changeset_columns!(),
                " FROM changesets c JOIN repositories r ON r.id = c.repository_id \
                 WHERE r.code_host_id = $1 AND LOWER(r.name) = LOWER($2) AND c.publication_state = 'PUBLISHED' \
                 AND c.external_id IS NOT NULL ORDER BY c.id LIMIT $3"
            ))
            .bind(code_host_id)
            .bind(repository_name.to_owned())
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Records what a code host says about a changeset now. Only a changeset the reconciler is
    /// not working on is touched (its own result will be more recent).
    pub async fn record_changeset_sync(
        &self,
        changeset_id: ChangesetId,
        external_state: &str,
        review_state: &str,
        check_state: &str,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query(
                "UPDATE changesets SET external_state = $2, review_state = $3, check_state = $4, updated_at = $5 \
                 WHERE id = $1 AND reconciler_state = 'completed'",
            )
            .bind(changeset_id)
            .bind(external_state.to_owned())
            .bind(review_state.to_owned())
            .bind(check_state.to_owned())
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            record_event_if_changed!(tx, changeset_id, now_ms);
            Ok(())
        })
    }

    /// Records an apply's rewiring in one transaction: new changesets (queued for the
    /// reconciler), changesets continued by a new spec (their current spec becomes the
    /// previous one), and changesets no spec produces any more (no current spec). Every one
    /// touched is queued for the reconciler.
    pub async fn record_apply(
        &self,
        batch_change_id: BatchChangeId,
        created: &[(RepositoryId, ChangesetSpecId)],
        continued: &[(ChangesetId, ChangesetSpecId)],
        retired: &[ChangesetId],
        entry: ReconcilerEntry,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            for (repository_id, spec_id) in created {
                let changeset_id = sqlx::query_scalar::<_, ChangesetId>(
                    "INSERT INTO changesets (repository_id, batch_change_ids, owned_by_batch_change_id, current_spec_id, \
                     publication_state, reconciler_state, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, 'UNPUBLISHED', $6, $5, $5) RETURNING id",
                )
                .bind(*repository_id)
                .bind(serde_json::to_string(&[batch_change_id])?)
                .bind(batch_change_id)
                .bind(*spec_id)
                .bind(now_ms)
                .bind(entry.as_str())
                .fetch_one(&mut **tx)
                .await?;
                sqlx::query("INSERT INTO changeset_batch_changes (changeset_id, batch_change_id) VALUES ($1, $2)")
                    .bind(changeset_id)
                    .bind(batch_change_id)
                    .execute(&mut **tx)
                    .await?;
            }
            for (changeset_id, spec_id) in continued {
                sqlx::query(
                    "UPDATE changesets SET current_spec_id = $2, reconciler_state = $4, failure_message = NULL, \
                     num_failures = 0, process_after = NULL, updated_at = $3 WHERE id = $1",
                )
                .bind(*changeset_id)
                .bind(*spec_id)
                .bind(now_ms)
                .bind(entry.as_str())
                .execute(&mut **tx)
                .await?;
            }
            for changeset_id in retired {
                sqlx::query(
                    "UPDATE changesets SET current_spec_id = NULL, reconciler_state = $3, failure_message = NULL, \
                     num_failures = 0, process_after = NULL, updated_at = $2 WHERE id = $1",
                )
                .bind(*changeset_id)
                .bind(now_ms)
                .bind(entry.as_str())
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        })
    }

    /// Takes the next changeset waiting for the reconciler (oldest first), marking it
    /// processing; `None` when there is none due.
    pub async fn next_changeset_to_reconcile(&self, now_ms: i64) -> Result<Option<Changeset>, StoreError> {
        write_transaction!(self, tx, dialect => {
            let sql = format!(
                "UPDATE changesets SET reconciler_state = 'processing', updated_at = $1 WHERE id = (\
                 SELECT id FROM changesets WHERE reconciler_state = 'queued' AND (process_after IS NULL OR process_after <= $1) \
                 ORDER BY updated_at, id LIMIT 1{}) RETURNING id",
                dialect.skip_locked()
            );
            let Some(changeset_id) = sqlx::query_scalar::<_, ChangesetId>(sqlx::AssertSqlSafe(sql)).bind(now_ms).fetch_optional(&mut **tx).await? else {
                return Ok(None);
            };
            Ok(Some(
                sqlx::query_as::<_, Changeset>(concat!("SELECT ", changeset_columns!(), " FROM changesets c WHERE c.id = $1"))
                    .bind(changeset_id)
                    .fetch_one(&mut **tx)
                    .await?,
            ))
        })
    }

    /// Records what the reconciler did to a changeset. On success the current spec becomes the
    /// one it was reconciled to (`previous_spec_id`), so re-applying it plans nothing.
    pub async fn finish_reconciling(&self, changeset_id: ChangesetId, outcome: &ReconcileOutcome, now_ms: i64) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query(
                "UPDATE changesets SET reconciler_state = $2, failure_message = $3, \
                 num_failures = CASE WHEN $3 IS NULL THEN 0 ELSE num_failures + 1 END, process_after = $4, \
                 publication_state = COALESCE($5, publication_state), external_state = COALESCE($6, external_state), \
                 external_branch = COALESCE($7, external_branch), archived = archived OR $8, \
                 detached_at = CASE WHEN $9 THEN $10 ELSE detached_at END, \
                 external_id = COALESCE($11, external_id), external_url = COALESCE($12, external_url), \
                 previous_spec_id = CASE WHEN $2 = 'completed' THEN current_spec_id ELSE previous_spec_id END, \
                 closing = CASE WHEN $2 = 'completed' THEN FALSE ELSE closing END, \
                 updated_at = $10 WHERE id = $1",
            )
            .bind(changeset_id)
            .bind(outcome.reconciler_state.clone())
            .bind(outcome.failure_message.clone())
            .bind(outcome.process_after)
            .bind(outcome.publication_state.clone())
            .bind(outcome.external_state.clone())
            .bind(outcome.external_branch.clone())
            .bind(outcome.archived)
            .bind(outcome.detached)
            .bind(now_ms)
            .bind(outcome.external_id.clone())
            .bind(outcome.external_url.clone())
            .execute(&mut **tx)
            .await?;
            record_event_if_changed!(tx, changeset_id, now_ms);
            Ok(())
        })
    }

    /// Records that the reconciler is still working on a changeset it took (its `updated_at`
    /// is the reconciler's heartbeat while it is `processing`).
    pub async fn touch_reconciling(&self, changeset_id: ChangesetId, now_ms: i64) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query("UPDATE changesets SET updated_at = $2 WHERE id = $1 AND reconciler_state = 'processing'")
                .bind(changeset_id)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
    }

    /// Queues again the changesets a reconciler took and stopped reporting on before
    /// `stalled_before_ms` (its server process died mid-way); returns how many. Reconciling is
    /// idempotent (the plan is made from the stored state, and a pull request is looked for by
    /// its branch before one is opened), so doing one again is safe.
    pub async fn requeue_stalled_reconciling(&self, stalled_before_ms: i64, now_ms: i64) -> Result<u64, StoreError> {
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query("UPDATE changesets SET reconciler_state = 'queued', updated_at = $2 WHERE reconciler_state = 'processing' AND updated_at < $1")
                .bind(stalled_before_ms)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?
                .rows_affected())
        })
    }
}

/// What one reconciler pass did to a changeset (`None` leaves a column as it was).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReconcileOutcome {
    /// `completed`, `errored` (retried after `process_after`) or `failed`.
    pub reconciler_state: String,
    pub failure_message: Option<String>,
    pub process_after: Option<i64>,
    pub publication_state: Option<String>,
    pub external_state: Option<String>,
    pub external_branch: Option<String>,
    pub archived: bool,
    pub detached: bool,
    /// The pull request's number on its host, and where a person sees it.
    pub external_id: Option<String>,
    pub external_url: Option<String>,
}
