//! Batch specs and what hangs off them before execution: uploaded mount files, the workspace
//! resolution job (run by the server's own worker, so no fairness or routing), and the resolved
//! workspaces, which arrive thousands at a time and are bulk inserted.

use sqlx::AssertSqlSafe;

use crate::Store;
use crate::backend::{BULK_INSERT_ROWS, values_rows};
use crate::error::StoreError;
use crate::ids::{
    BatchChangeId, BatchSpecId, MountFileId, OrgId, RepositoryId, ResolutionJobId, UserId,
    WorkspaceId,
};
use crate::json::{JsonText, Namespace, text_enum, to_text};

#[derive(Debug, Clone, PartialEq)]
pub struct NewBatchSpec {
    /// The public random id, made by the caller.
    pub rand_id: String,
    pub namespace: Namespace,
    pub creator_user_id: UserId,
    pub name: String,
    pub raw_spec: String,
    pub parsed_spec: serde_json::Value,
    /// True for server-side specs: creating one also queues its workspace resolution job.
    pub created_from_raw: bool,
    pub allow_unsupported: bool,
    pub allow_ignored: bool,
    pub no_cache: bool,
    pub batch_change_id: Option<BatchChangeId>,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BatchSpec {
    pub id: BatchSpecId,
    pub rand_id: String,
    pub namespace_user_id: Option<UserId>,
    pub namespace_org_id: Option<OrgId>,
    pub creator_user_id: UserId,
    pub name: String,
    pub raw_spec: String,
    #[sqlx(try_from = "JsonText")]
    pub parsed_spec: serde_json::Value,
    pub created_from_raw: bool,
    pub allow_unsupported: bool,
    pub allow_ignored: bool,
    pub no_cache: bool,
    pub batch_change_id: Option<BatchChangeId>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl BatchSpec {
    pub fn namespace(&self) -> Result<Namespace, StoreError> {
        Namespace::from_columns(self.namespace_user_id, self.namespace_org_id)
    }
}

macro_rules! batch_spec_columns {
    () => {
        "id, rand_id, namespace_user_id, namespace_org_id, creator_user_id, name, raw_spec, parsed_spec, \
         created_from_raw, allow_unsupported, allow_ignored, no_cache, batch_change_id, created_at, updated_at"
    };
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMountFile {
    pub path: String,
    pub modified_at: i64,
    pub content: Vec<u8>,
}

/// A mount file's metadata (content is fetched separately).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct MountFile {
    pub id: MountFileId,
    pub batch_spec_id: BatchSpecId,
    pub path: String,
    pub size: i64,
    pub modified_at: i64,
}

text_enum! {
    /// Where a workspace resolution job is.
    pub enum ResolutionState {
        Queued => "queued",
        Processing => "processing",
        Completed => "completed",
        Failed => "failed",
    }
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ResolutionJob {
    pub id: ResolutionJobId,
    pub batch_spec_id: BatchSpecId,
    #[sqlx(try_from = "String")]
    pub state: ResolutionState,
    pub failure_message: Option<String>,
    pub attempts: i64,
    pub worker: Option<String>,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
}

macro_rules! resolution_job_columns {
    () => {
        "id, batch_spec_id, state, failure_message, attempts, worker, queued_at, started_at, finished_at, \
         last_heartbeat_at"
    };
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewWorkspace {
    pub batch_spec_id: BatchSpecId,
    pub repository_id: RepositoryId,
    pub branch: String,
    pub commit: String,
    pub path: String,
    pub file_matches: Vec<String>,
    pub only_fetch_workspace: bool,
    pub ignored: bool,
    pub unsupported: bool,
    pub skipped: bool,
    pub cached_result_found: bool,
    pub step_cache_results: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub batch_spec_id: BatchSpecId,
    pub repository_id: RepositoryId,
    pub branch: String,
    pub commit: String,
    pub path: String,
    #[sqlx(try_from = "JsonText")]
    pub file_matches: serde_json::Value,
    pub only_fetch_workspace: bool,
    pub ignored: bool,
    pub unsupported: bool,
    pub skipped: bool,
    pub cached_result_found: bool,
    #[sqlx(try_from = "JsonText")]
    pub step_cache_results: serde_json::Value,
    #[sqlx(try_from = "JsonText")]
    pub changeset_spec_ids: serde_json::Value,
    pub created_at: i64,
}

macro_rules! workspace_columns {
    () => {
        "id, batch_spec_id, repository_id, branch, \"commit\", path, file_matches, only_fetch_workspace, \
         ignored, unsupported, skipped, cached_result_found, step_cache_results, changeset_spec_ids, created_at"
    };
}

impl Store {
    /// Creates a batch spec and, for server-side specs (`created_from_raw`), its queued
    /// resolution job, in one transaction.
    pub async fn create_batch_spec(
        &self,
        spec: &NewBatchSpec,
        now_ms: i64,
    ) -> Result<BatchSpec, StoreError> {
        self.create_batch_spec_with_mount_files(spec, &[], now_ms).await
    }

    /// Creates a batch spec together with the files its steps mount, in one transaction, so
    /// that its resolution (queued in the same transaction) never sees it without them.
    pub async fn create_batch_spec_with_mount_files(
        &self,
        spec: &NewBatchSpec,
        mount_files: &[NewMountFile],
        now_ms: i64,
    ) -> Result<BatchSpec, StoreError> {
        let (namespace_user_id, namespace_org_id) = spec.namespace.columns();
        write_transaction!(self, tx, dialect => {
            let created = sqlx::query_as::<_, BatchSpec>(concat!(
                "INSERT INTO batch_specs (rand_id, namespace_user_id, namespace_org_id, creator_user_id, name, \
                 raw_spec, parsed_spec, created_from_raw, allow_unsupported, allow_ignored, no_cache, \
                 batch_change_id, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13) RETURNING ",
                batch_spec_columns!()
            ))
            .bind(spec.rand_id.clone())
            .bind(namespace_user_id)
            .bind(namespace_org_id)
            .bind(spec.creator_user_id)
            .bind(spec.name.clone())
            .bind(spec.raw_spec.clone())
            .bind(to_text(&spec.parsed_spec))
            .bind(spec.created_from_raw)
            .bind(spec.allow_unsupported)
            .bind(spec.allow_ignored)
            .bind(spec.no_cache)
            .bind(spec.batch_change_id)
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?;
            for file in mount_files {
                sqlx::query(
                    "INSERT INTO batch_spec_mount_files (batch_spec_id, path, size, modified_at, content) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(created.id)
                .bind(file.path.clone())
                .bind(i64::try_from(file.content.len()).unwrap_or(i64::MAX))
                .bind(file.modified_at)
                .bind(file.content.clone())
                .execute(&mut **tx)
                .await?;
            }
            if spec.created_from_raw {
                sqlx::query("INSERT INTO resolution_jobs (batch_spec_id, state, queued_at) VALUES ($1, 'queued', $2)")
                    .bind(created.id)
                    .bind(now_ms)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(created)
        })
    }

    pub async fn get_batch_spec(
        &self,
        batch_spec_id: BatchSpecId,
    ) -> Result<BatchSpec, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, BatchSpec>(concat!("SELECT ", batch_spec_columns!(), " FROM batch_specs WHERE id = $1"))
                .bind(batch_spec_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("batch spec {batch_spec_id}")))
        })
    }

    pub async fn get_batch_spec_by_rand_id(&self, rand_id: &str) -> Result<BatchSpec, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, BatchSpec>(concat!("SELECT ", batch_spec_columns!(), " FROM batch_specs WHERE rand_id = $1"))
                .bind(rand_id.to_owned())
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("batch spec {rand_id:?}")))
        })
    }

    /// A namespace's batch specs, newest first, before `before` (keyset pagination).
    pub async fn list_batch_specs_by_namespace(
        &self,
        namespace: Namespace,
        before: Option<BatchSpecId>,
        limit: i64,
    ) -> Result<Vec<BatchSpec>, StoreError> {
        let before_id = before.map_or(i64::MAX, |batch_spec_id| batch_spec_id.0);
        on_pool!(self, pool, dialect => {
            Ok(match namespace {
                Namespace::User(user_id) => sqlx::query_as::<_, BatchSpec>(concat!(
                    "SELECT ", batch_spec_columns!(),
                    " FROM batch_specs WHERE namespace_user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(user_id)
                .bind(before_id)
                .bind(limit)
                .fetch_all(pool)
                .await?,
                Namespace::Org(org_id) => sqlx::query_as::<_, BatchSpec>(concat!(
                    "SELECT ", batch_spec_columns!(),
                    " FROM batch_specs WHERE namespace_org_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
                ))
                .bind(org_id)
                .bind(before_id)
                .bind(limit)
                .fetch_all(pool)
                .await?,
            })
        })
    }

    /// Links a batch spec to a batch change (or unlinks it).
    pub async fn set_batch_spec_batch_change(
        &self,
        batch_spec_id: BatchSpecId,
        batch_change_id: Option<BatchChangeId>,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let updated = sqlx::query("UPDATE batch_specs SET batch_change_id = $2, updated_at = $3 WHERE id = $1")
                .bind(batch_spec_id)
                .bind(batch_change_id)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("batch spec {batch_spec_id}")));
            }
            Ok(())
        })
    }

    /// Sets `no_cache` (executeBatchSpec may change it).
    pub async fn set_batch_spec_no_cache(
        &self,
        batch_spec_id: BatchSpecId,
        no_cache: bool,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let updated = sqlx::query("UPDATE batch_specs SET no_cache = $2, updated_at = $3 WHERE id = $1")
                .bind(batch_spec_id)
                .bind(no_cache)
                .bind(now_ms)
                .execute(&mut **tx)
                .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("batch spec {batch_spec_id}")));
            }
            Ok(())
        })
    }

    /// Deletes a batch spec and everything under it (workspaces, jobs, logs, changeset specs).
    pub async fn delete_batch_spec(&self, batch_spec_id: BatchSpecId) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let deleted = sqlx::query("DELETE FROM batch_specs WHERE id = $1").bind(batch_spec_id).execute(&mut **tx).await?;
            if deleted.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("batch spec {batch_spec_id}")));
            }
            Ok(())
        })
    }

    /// Stores (or replaces, by path) an uploaded mount file.
    pub async fn put_mount_file(
        &self,
        batch_spec_id: BatchSpecId,
        file: &NewMountFile,
    ) -> Result<MountFile, StoreError> {
        let size = i64::try_from(file.content.len()).unwrap_or(i64::MAX);
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_as::<_, MountFile>(
                "INSERT INTO batch_spec_mount_files (batch_spec_id, path, size, modified_at, content) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (batch_spec_id, path) DO UPDATE SET \
                 size = excluded.size, modified_at = excluded.modified_at, content = excluded.content \
                 RETURNING id, batch_spec_id, path, size, modified_at",
            )
            .bind(batch_spec_id)
            .bind(file.path.clone())
            .bind(size)
            .bind(file.modified_at)
            .bind(file.content.clone())
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    pub async fn list_mount_files(
        &self,
        batch_spec_id: BatchSpecId,
    ) -> Result<Vec<MountFile>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, MountFile>(
                "SELECT id, batch_spec_id, path, size, modified_at FROM batch_spec_mount_files \
                 WHERE batch_spec_id = $1 ORDER BY path",
            )
            .bind(batch_spec_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// A mount file's content.
    pub async fn get_mount_file_content(
        &self,
        mount_file_id: MountFileId,
    ) -> Result<Vec<u8>, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_scalar::<_, Vec<u8>>("SELECT content FROM batch_spec_mount_files WHERE id = $1")
                .bind(mount_file_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("mount file {mount_file_id}")))
        })
    }

    pub async fn get_resolution_job(
        &self,
        batch_spec_id: BatchSpecId,
    ) -> Result<Option<ResolutionJob>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, ResolutionJob>(concat!(
                "SELECT ", resolution_job_columns!(), " FROM resolution_jobs WHERE batch_spec_id = $1"
            ))
            .bind(batch_spec_id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Queues (again) the resolution of a batch spec, e.g. after its input was replaced.
    pub async fn requeue_resolution_job(
        &self,
        batch_spec_id: BatchSpecId,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query(
                "INSERT INTO resolution_jobs (batch_spec_id, state, queued_at) VALUES ($1, 'queued', $2) \
                 ON CONFLICT (batch_spec_id) DO UPDATE SET state = 'queued', queued_at = excluded.queued_at, \
                 failure_message = NULL, worker = NULL, started_at = NULL, finished_at = NULL, last_heartbeat_at = NULL",
            )
            .bind(batch_spec_id)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    }

    /// Takes the oldest queued resolution job for `worker`.
    pub async fn dequeue_resolution_job(
        &self,
        worker: &str,
        now_ms: i64,
    ) -> Result<Option<ResolutionJob>, StoreError> {
        write_transaction!(self, tx, dialect => {
            let next_id_sql = match dialect {
                crate::Dialect::Sqlite => "SELECT id FROM resolution_jobs WHERE state = 'queued' ORDER BY id LIMIT 1",
                crate::Dialect::Postgres => {
                    "SELECT id FROM resolution_jobs WHERE state = 'queued' ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
                }
            };
            let Some(job_id) = sqlx::query_scalar::<_, ResolutionJobId>(next_id_sql).fetch_optional(&mut **tx).await? else {
                return Ok(None);
            };
            Ok(sqlx::query_as::<_, ResolutionJob>(concat!(
                "UPDATE resolution_jobs SET state = 'processing', worker = $2, started_at = $3, last_heartbeat_at = $3, \
                 attempts = attempts + 1, failure_message = NULL, finished_at = NULL \
                 WHERE id = $1 AND state = 'queued' RETURNING ", resolution_job_columns!()
            ))
            .bind(job_id)
            .bind(worker.to_owned())
            .bind(now_ms)
            .fetch_optional(&mut **tx)
            .await?)
        })
    }

    /// Records that `worker` is still resolving; false if it no longer owns the job.
    pub async fn heartbeat_resolution_job(
        &self,
        job_id: ResolutionJobId,
        worker: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        write_transaction!(self, tx, dialect => {
            let updated = sqlx::query(
                "UPDATE resolution_jobs SET last_heartbeat_at = $3 WHERE id = $1 AND worker = $2 AND state = 'processing'",
            )
            .bind(job_id)
            .bind(worker.to_owned())
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            Ok(updated.rows_affected() > 0)
        })
    }

    /// Finishes a resolution job owned by `worker`: completed when `failure_message` is `None`,
    /// failed otherwise. Returns false (and changes nothing) if `worker` does not own it.
    pub async fn finish_resolution_job(
        &self,
        job_id: ResolutionJobId,
        worker: &str,
        failure_message: Option<&str>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let state = if failure_message.is_some() {
            ResolutionState::Failed
        } else {
            ResolutionState::Completed
        };
        write_transaction!(self, tx, dialect => {
            let updated = sqlx::query(
                "UPDATE resolution_jobs SET state = $3, failure_message = $4, finished_at = $5 \
                 WHERE id = $1 AND worker = $2 AND state = 'processing'",
            )
            .bind(job_id)
            .bind(worker.to_owned())
            .bind(state.as_str())
            .bind(failure_message.map(str::to_owned))
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            Ok(updated.rows_affected() > 0)
        })
    }

    /// Requeues resolution jobs whose worker stopped heartbeating; fails those already tried
    /// `max_attempts` times. Returns (requeued, failed) counts.
    pub async fn requeue_stalled_resolution_jobs(
        &self,
        stalled_before_ms: i64,
        max_attempts: i64,
        now_ms: i64,
    ) -> Result<(u64, u64), StoreError> {
        write_transaction!(self, tx, dialect => {
            let failed = sqlx::query(
                "UPDATE resolution_jobs SET state = 'failed', finished_at = $3, \
                 failure_message = 'workspace resolution worker died while handling this job too many times' \
                 WHERE state = 'processing' AND last_heartbeat_at < $1 AND attempts >= $2",
            )
            .bind(stalled_before_ms)
            .bind(max_attempts)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            let requeued = sqlx::query(
                "UPDATE resolution_jobs SET state = 'queued', worker = NULL, started_at = NULL, last_heartbeat_at = NULL, \
                 queued_at = $2 WHERE state = 'processing' AND last_heartbeat_at < $1",
            )
            .bind(stalled_before_ms)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            Ok((requeued, failed))
        })
    }

    /// Removes what an interrupted resolution of a batch spec wrote (its workspaces, their jobs
    /// and logs, and its changeset specs), in one transaction, so resolving it again from the
    /// start writes each workspace once. Returns how many workspaces were removed.
    pub async fn discard_resolution_output(&self, batch_spec_id: BatchSpecId) -> Result<u64, StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query("DELETE FROM changeset_specs WHERE batch_spec_id = $1").bind(batch_spec_id).execute(&mut **tx).await?;
            sqlx::query("DELETE FROM execution_jobs WHERE batch_spec_id = $1").bind(batch_spec_id).execute(&mut **tx).await?;
            let removed = sqlx::query("DELETE FROM workspaces WHERE batch_spec_id = $1").bind(batch_spec_id).execute(&mut **tx).await?.rows_affected();
            Ok(removed)
        })
    }

    /// Inserts workspaces in one transaction with chunked multi-row INSERTs; returns their ids
    /// in input order.
    pub async fn insert_workspaces(
        &self,
        workspaces: &[NewWorkspace],
        now_ms: i64,
    ) -> Result<Vec<WorkspaceId>, StoreError> {
        if workspaces.is_empty() {
            return Ok(Vec::new());
        }
        write_transaction!(self, tx, dialect => {
            let mut ids = Vec::with_capacity(workspaces.len());
            for chunk in workspaces.chunks(BULK_INSERT_ROWS) {
                let sql = format!(
                    "INSERT INTO workspaces (batch_spec_id, repository_id, branch, \"commit\", path, file_matches, \
                     only_fetch_workspace, ignored, unsupported, skipped, cached_result_found, step_cache_results, \
                     created_at) VALUES {} RETURNING id",
                    values_rows(dialect, chunk.len(), 13)
                );
                let mut query = sqlx::query_scalar::<_, WorkspaceId>(AssertSqlSafe(sql));
                for workspace in chunk {
                    query = query
                        .bind(workspace.batch_spec_id)
                        .bind(workspace.repository_id)
                        .bind(workspace.branch.clone())
                        .bind(workspace.commit.clone())
                        .bind(workspace.path.clone())
                        .bind(serde_json::to_string(&workspace.file_matches)?)
                        .bind(workspace.only_fetch_workspace)
                        .bind(workspace.ignored)
                        .bind(workspace.unsupported)
                        .bind(workspace.skipped)
                        .bind(workspace.cached_result_found)
                        .bind(to_text(&workspace.step_cache_results))
                        .bind(now_ms);
                }
                let mut chunk_ids = query.fetch_all(&mut **tx).await?;
                // Ids are assigned in VALUES order; RETURNING order is unspecified.
                chunk_ids.sort();
                ids.extend(chunk_ids);
            }
            Ok(ids)
        })
    }

    pub async fn get_workspace(&self, workspace_id: WorkspaceId) -> Result<Workspace, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, Workspace>(concat!("SELECT ", workspace_columns!(), " FROM workspaces WHERE id = $1"))
                .bind(workspace_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("workspace {workspace_id}")))
        })
    }

    /// A page of a batch spec's workspaces by id, after `after`.
    pub async fn list_workspaces(
        &self,
        batch_spec_id: BatchSpecId,
        after: Option<WorkspaceId>,
        limit: i64,
    ) -> Result<Vec<Workspace>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, Workspace>(concat!(
                "SELECT ", workspace_columns!(), " FROM workspaces WHERE batch_spec_id = $1 AND id > $2 ORDER BY id LIMIT $3"
            ))
            .bind(batch_spec_id)
            .bind(after.map_or(0, |workspace_id| workspace_id.0))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Number of workspaces of a batch spec.
    pub async fn count_workspaces(&self, batch_spec_id: BatchSpecId) -> Result<i64, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM workspaces WHERE batch_spec_id = $1")
                .bind(batch_spec_id)
                .fetch_one(pool)
                .await?)
        })
    }

    /// How many changeset specs a batch spec has (without loading their diffs).
    pub async fn count_changeset_specs(&self, batch_spec_id: BatchSpecId) -> Result<i64, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM changeset_specs WHERE batch_spec_id = $1")
                .bind(batch_spec_id)
                .fetch_one(pool)
                .await?)
        })
    }

    /// Head refs that several changeset specs of a batch spec push to in one repository:
    /// (repository name, head ref, how many), which Sourcegraph refuses to apply.
    pub async fn duplicate_head_refs(&self, batch_spec_id: BatchSpecId) -> Result<Vec<(String, String, i64)>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, (String, String, i64)>(
                "SELECT r.name, c.head_ref, COUNT(*) FROM changeset_specs c JOIN repositories r ON r.id = c.repository_id \
                 WHERE c.batch_spec_id = $1 AND c.head_ref IS NOT NULL \
                 GROUP BY r.name, c.head_ref HAVING COUNT(*) > 1 ORDER BY r.name, c.head_ref",
            )
            .bind(batch_spec_id)
            .fetch_all(pool)
            .await?)
        })
    }

    /// Records which changeset specs a workspace's execution produced.
    pub async fn set_workspace_changeset_specs(
        &self,
        workspace_id: WorkspaceId,
        changeset_spec_ids: &[crate::ids::ChangesetSpecId],
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let updated = sqlx::query("UPDATE workspaces SET changeset_spec_ids = $2 WHERE id = $1")
                .bind(workspace_id)
                .bind(serde_json::to_string(changeset_spec_ids)?)
                .execute(&mut **tx)
                .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("workspace {workspace_id}")));
            }
            Ok(())
        })
    }

    /// Marks workspaces as skipped (not executed) or not.
    pub async fn set_workspaces_skipped(
        &self,
        workspace_ids: &[WorkspaceId],
        skipped: bool,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            for workspace_id in workspace_ids {
                sqlx::query("UPDATE workspaces SET skipped = $2 WHERE id = $1")
                    .bind(*workspace_id)
                    .bind(skipped)
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(())
        })
    }
}
