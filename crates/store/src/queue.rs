//! The execution-job queue that remote executors pull from, and everything an executor touches
//! while holding a job: heartbeats, log entries, job tokens, completion, plus the resetter that
//! requeues jobs whose executor went silent.
//!
//! Invariants (the contract executors depend on):
//! * A queued job is handed to at most one executor: the claim is one `UPDATE … WHERE state =
//!   'queued'` inside a write transaction (SQLite: `BEGIN IMMEDIATE`, one writer; PostgreSQL: the
//!   candidate row is locked with `FOR UPDATE SKIP LOCKED`, so concurrent dequeuers take
//!   different rows instead of waiting).
//! * Every executor-side write (log, heartbeat, completion) only applies while the job is
//!   `processing` *and* owned by the calling executor, so a job that was reset and handed to
//!   someone else cannot be completed twice.
//! * Fairness: users are served round robin. `user_queue_state.dequeue_sequence` is a global
//!   counter value stamped on a user at each dequeue; the next job comes from the user with
//!   eligible queued jobs and the smallest stamp (never-dequeued users have 0), and within a user
//!   the oldest `(queued_at, id)`. Both lookups are index probes, so a dequeue costs O(users +
//!   log jobs), not a sort of all queued jobs.
//!
//! Retries create a fresh job row (new [`JobId`]) and delete the old attempt with its logs, so an
//! id never refers to two attempts.

use sqlx::AssertSqlSafe;

use crate::Store;
use crate::backend::{BULK_INSERT_ROWS, placeholders, values_rows};
use crate::error::StoreError;
use crate::ids::{BatchSpecId, JobId, RepositoryId, UserId, WorkspaceId};
use crate::json::{JsonText, NullableJsonText, text_enum, to_text};

/// After a completion/failure update (`$final_state`: the new state if it applied): deletes the
/// job token if it applied, or reports why not. A macro because it runs inside
/// `write_transaction!` for either backend.
macro_rules! finish_report {
    ($tx:ident, $job_id:expr, $final_state:expr) => {{
        match $final_state {
            // The job's token needs no delete: tokens only grant while their job is
            // processing, and the next attempt's dequeue replaces it.
            Some(state) => {
                sqlx::query("DELETE FROM job_tokens WHERE job_id = $1")
                    .bind($job_id)
                    .execute(&mut **$tx)
                    .await?;
                Ok(CompletionOutcome::Applied {
                    final_state: JobState::try_from(state)?,
                })
            }
            None => {
                let current = sqlx::query_scalar::<_, String>(
                    "SELECT state FROM execution_jobs WHERE id = $1",
                )
                .bind($job_id)
                .fetch_optional(&mut **$tx)
                .await?;
                let current_state = current.map(JobState::try_from).transpose()?;
                Ok(CompletionOutcome::Ignored { current_state })
            }
        }
    }};
}

/// A job that ends failed or canceled keeps no changeset specs: a completion stores them
/// before it completes the job (see `replace_workspace_changeset_specs`), so an attempt the
/// server died under may have left some. Both run in the transaction that ends the job.
const DELETE_SPECS_OF_JOBS_WORKSPACE: &str = "DELETE FROM changeset_specs WHERE workspace_id = (SELECT workspace_id FROM execution_jobs WHERE id = $1)";
const FORGET_SPECS_OF_JOBS_WORKSPACE: &str = "UPDATE workspaces SET changeset_spec_ids = '[]' WHERE id = (SELECT workspace_id FROM execution_jobs WHERE id = $1)";

text_enum! {
    /// Where an execution job is in its life.
    pub enum JobState {
        Queued => "queued",
        Processing => "processing",
        Completed => "completed",
        Failed => "failed",
        Canceled => "canceled",
    }
}

impl JobState {
    /// Completed, failed and canceled jobs never change again (except by an explicit retry).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Completed | JobState::Failed | JobState::Canceled
        )
    }
}

/// A job to enqueue: one attempt at executing one workspace.
#[derive(Debug, Clone, PartialEq)]
pub struct NewExecutionJob {
    pub workspace_id: WorkspaceId,
    pub batch_spec_id: BatchSpecId,
    /// Whose job this is; fairness is round robin across users.
    pub user_id: UserId,
    /// `""` means any executor may run it; otherwise only executors that satisfy the key.
    pub routing_key: String,
    /// The job's steps etc.; opaque to the store.
    pub payload: serde_json::Value,
}

/// An execution job row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ExecutionJob {
    pub id: JobId,
    pub workspace_id: WorkspaceId,
    pub batch_spec_id: BatchSpecId,
    pub user_id: UserId,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    /// Set when a user canceled the job while it was processing; the executor learns it through
    /// its heartbeat.
    pub cancel: bool,
    pub routing_key: String,
    pub num_resets: i64,
    pub num_failures: i64,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_heartbeat_at: Option<i64>,
    pub executor_name: Option<String>,
    pub failure_message: Option<String>,
    #[sqlx(try_from = "NullableJsonText")]
    pub result: Option<serde_json::Value>,
    #[sqlx(try_from = "JsonText")]
    pub payload: serde_json::Value,
    pub created_at: i64,
}

/// The column list matching [`ExecutionJob`], as a macro so it can be `concat!`ed into
/// `&'static str` statements.
macro_rules! job_columns {
    () => {
        "id, workspace_id, batch_spec_id, user_id, state, cancel, routing_key, num_resets, \
         num_failures, queued_at, started_at, finished_at, last_heartbeat_at, executor_name, \
         failure_message, result, payload, created_at"
    };
}

/// Which routing keys the dequeuing executor satisfies. Jobs with an empty routing key are
/// always eligible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingFilter {
    pub satisfiable_keys: Vec<String>,
}

impl RoutingFilter {
    /// Only jobs any executor can run.
    pub fn unrouted_only() -> RoutingFilter {
        RoutingFilter::default()
    }

    /// Unrouted jobs plus jobs whose key is one of `keys`.
    pub fn with_keys<I: IntoIterator<Item = S>, S: Into<String>>(keys: I) -> RoutingFilter {
        RoutingFilter {
            satisfiable_keys: keys.into_iter().map(Into::into).collect(),
        }
    }

    /// SQL condition over alias `j` whose key placeholders start at `$first`.
    fn condition(&self, first: usize) -> String {
        if self.satisfiable_keys.is_empty() {
            String::from("j.routing_key = ''")
        } else {
            format!(
                "(j.routing_key = '' OR j.routing_key IN ({}))",
                placeholders(first, self.satisfiable_keys.len())
            )
        }
    }
}

/// The job token minted by the caller at dequeue; the store keeps only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJobToken {
    pub token_hash: String,
    pub expires_at_ms: i64,
}

/// A job just moved to `processing` for the calling executor.
#[derive(Debug, Clone, PartialEq)]
pub struct DequeuedJob {
    pub job: ExecutionJob,
    /// The workspace's repository, which the job token grants access to.
    pub repository_id: RepositoryId,
}

/// What a heartbeat learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeartbeatOutcome {
    /// Jobs still processing and owned by this executor (heartbeat recorded).
    pub known: Vec<JobId>,
    /// Those among `known` that a user canceled: the executor should stop them.
    pub cancel: Vec<JobId>,
}

/// The result of a completion or failure report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionOutcome {
    /// The transition happened; the job is now in `final_state`.
    Applied { final_state: JobState },
    /// Nothing changed: the job is not processing or not owned by this executor (a second
    /// completion, or one from an executor that lost the job). `current_state` is `None` when
    /// the job does not exist.
    Ignored { current_state: Option<JobState> },
}

/// What the stalled-job resetter did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StalledJobsOutcome {
    pub requeued: Vec<JobId>,
    pub failed: Vec<JobId>,
    /// Stalled jobs a user had already asked to cancel: they end as `canceled`.
    pub canceled: Vec<JobId>,
}

/// What canceling a batch spec's execution did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CancelOutcome {
    /// Queued jobs that became `canceled` immediately.
    pub canceled: u64,
    /// Processing jobs now flagged `cancel`; their executors learn it at the next heartbeat.
    pub canceling: u64,
}

/// Job counts per state, e.g. for one batch spec.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JobStateCounts {
    pub queued: i64,
    pub processing: i64,
    /// Processing jobs with `cancel` set.
    pub canceling: i64,
    pub completed: i64,
    pub failed: i64,
    pub canceled: i64,
}

impl JobStateCounts {
    fn add(&mut self, state: JobState, cancel: bool, count: i64) {
        match state {
            JobState::Queued => self.queued += count,
            JobState::Processing if cancel => self.canceling += count,
            JobState::Processing => self.processing += count,
            JobState::Completed => self.completed += count,
            JobState::Failed => self.failed += count,
            JobState::Canceled => self.canceled += count,
        }
    }
}

/// One command's log entry, as shown in the UI timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct NewLogEntry {
    pub key: String,
    pub command: Vec<String>,
    pub started_at: i64,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub output: String,
}

/// A stored log entry. In [`Store::list_log_entries_since`] results, `output` may be the tail
/// of the stored output starting at `output_offset` (bytes).
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct LogEntry {
    pub job_id: JobId,
    pub entry_index: i64,
    pub key: String,
    #[sqlx(try_from = "JsonText")]
    pub command: serde_json::Value,
    pub started_at: i64,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub output: String,
    #[sqlx(default)]
    pub output_offset: i64,
}

/// What a job token authorises: fetching this repository for this job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, sqlx::FromRow)]
pub struct JobTokenGrant {
    pub job_id: JobId,
    pub repository_id: RepositoryId,
}

/// Executor telemetry sent with each heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorInfo {
    pub name: String,
    pub hostname: String,
    pub version: String,
    pub labels: serde_json::Value,
    pub resources: serde_json::Value,
    pub os: String,
    pub architecture: String,
}

/// An executor as last seen.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ExecutorRecord {
    pub name: String,
    pub hostname: String,
    pub version: String,
    #[sqlx(try_from = "JsonText")]
    pub labels: serde_json::Value,
    #[sqlx(try_from = "JsonText")]
    pub resources: serde_json::Value,
    pub os: String,
    pub architecture: String,
    pub first_seen_at: i64,
    pub last_seen_at: i64,
}

/// Which job states a workspace listing keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceJobFilter {
    /// Every workspace, with its job if it has one.
    All,
    /// Only workspaces whose job is in this state.
    JobState(JobState),
}

/// A workspace with its current execution job, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkspaceWithJob {
    pub workspace_id: WorkspaceId,
    pub repository_id: RepositoryId,
    pub branch: String,
    pub path: String,
    pub skipped: bool,
    pub cached_result_found: bool,
    pub job: Option<JobSummary>,
}

/// The job fields a workspace listing shows.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub id: JobId,
    pub state: JobState,
    pub cancel: bool,
    pub queued_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub executor_name: Option<String>,
    pub failure_message: Option<String>,
}

#[derive(sqlx::FromRow)]
struct WorkspaceWithJobRow {
    workspace_id: WorkspaceId,
    repository_id: RepositoryId,
    branch: String,
    path: String,
    skipped: bool,
    cached_result_found: bool,
    job_id: Option<JobId>,
    job_state: Option<String>,
    job_cancel: Option<bool>,
    job_queued_at: Option<i64>,
    job_started_at: Option<i64>,
    job_finished_at: Option<i64>,
    job_executor_name: Option<String>,
    job_failure_message: Option<String>,
}

impl WorkspaceWithJobRow {
    fn into_public(self) -> Result<WorkspaceWithJob, StoreError> {
        let job = match (self.job_id, self.job_state) {
            (Some(id), Some(state)) => Some(JobSummary {
                id,
                state: JobState::try_from(state)?,
                cancel: self.job_cancel.unwrap_or(false),
                queued_at: self.job_queued_at.unwrap_or(0),
                started_at: self.job_started_at,
                finished_at: self.job_finished_at,
                executor_name: self.job_executor_name,
                failure_message: self.job_failure_message,
            }),
            _ => None,
        };
        Ok(WorkspaceWithJob {
            workspace_id: self.workspace_id,
            repository_id: self.repository_id,
            branch: self.branch,
            path: self.path,
            skipped: self.skipped,
            cached_result_found: self.cached_result_found,
            job,
        })
    }
}

/// The failure message for a job whose executor stopped heartbeating too often.
pub fn too_many_resets_message(resets: i64) -> String {
    format!(
        "job processor died while handling this job too many times ({resets} resets); \
         its executor stopped sending heartbeats"
    )
}

/// How many users the dequeue considers per attempt, in fairness order. More than one so that on
/// PostgreSQL a user whose remaining jobs are all being claimed concurrently does not make the
/// dequeue come back empty while other users have work.
const DEQUEUE_CANDIDATE_USERS: i64 = 8;

impl Store {
    /// Enqueues jobs in one transaction; returns their ids in input order.
    pub async fn enqueue_execution_jobs(
        &self,
        jobs: &[NewExecutionJob],
        now_ms: i64,
    ) -> Result<Vec<JobId>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        write_transaction!(self, tx, dialect => {
            let mut users: Vec<UserId> = jobs.iter().map(|job| job.user_id).collect();
            users.sort();
            users.dedup();
            for user_id in users {
                sqlx::query("INSERT INTO user_queue_state (user_id) VALUES ($1) ON CONFLICT (user_id) DO NOTHING")
                    .bind(user_id)
                    .execute(&mut **tx)
                    .await?;
            }
            let mut ids = Vec::with_capacity(jobs.len());
            for chunk in jobs.chunks(BULK_INSERT_ROWS) {
                let sql = format!(
                    "INSERT INTO execution_jobs (workspace_id, batch_spec_id, user_id, state, routing_key, \
                     payload, queued_at, created_at) VALUES {} RETURNING id",
                    values_rows(dialect, chunk.len(), 8)
                );
                let mut query = sqlx::query_scalar::<_, JobId>(AssertSqlSafe(sql));
                for job in chunk {
                    query = query
                        .bind(job.workspace_id)
                        .bind(job.batch_spec_id)
                        .bind(job.user_id)
                        .bind(JobState::Queued.as_str())
                        .bind(job.routing_key.clone())
                        .bind(to_text(&job.payload))
                        .bind(now_ms)
                        .bind(now_ms);
                }
                let mut chunk_ids = query.fetch_all(&mut **tx).await?;
                // Both engines assign ids in VALUES order within one statement, but neither
                // promises RETURNING order; sorting restores input order.
                chunk_ids.sort();
                ids.extend(chunk_ids);
            }
            Ok(ids)
        })
    }

    /// Distinct non-empty routing keys among queued jobs, so the caller can decide which its
    /// executor satisfies before dequeuing.
    pub async fn queued_routing_keys(&self) -> Result<Vec<String>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_scalar::<_, String>(
                "SELECT DISTINCT routing_key FROM execution_jobs \
                 WHERE state = 'queued' AND routing_key <> '' ORDER BY routing_key",
            )
            .fetch_all(pool)
            .await?)
        })
    }

    /// Atomically moves one eligible queued job to `processing` for `executor_name`, records
    /// the job token, and returns it; `None` when nothing is eligible.
    pub async fn dequeue_execution_job(
        &self,
        executor_name: &str,
        routing: &RoutingFilter,
        job_token: &NewJobToken,
        now_ms: i64,
    ) -> Result<Option<DequeuedJob>, StoreError> {
        if let Some(queue) = self.sqlite_queue() {
            let _serialised_writer = self.sqlite_write_lock().lock().await;
            let request = crate::sqlite_queue::DequeueRequest {
                executor_name: executor_name.to_owned(),
                routing_keys: routing.satisfiable_keys.clone(),
                token_hash: job_token.token_hash.clone(),
                token_expires_at_ms: job_token.expires_at_ms,
                now_ms,
                candidate_users: DEQUEUE_CANDIDATE_USERS,
            };
            return queue.run(move |connection| crate::sqlite_queue::dequeue(connection, &request)).await;
        }
        write_transaction!(self, tx, dialect => {
            // Users in round-robin order, each user's oldest eligible job; on PostgreSQL
            // (several servers may dequeue at once) rows other transactions hold are skipped.
            let claimed = {
                let candidate_users_sql = format!(
                    "SELECT q.user_id FROM user_queue_state q WHERE EXISTS (\
                     SELECT 1 FROM execution_jobs j WHERE j.state = 'queued' AND j.user_id = q.user_id \
                     AND j.cancel = FALSE AND {}) ORDER BY q.dequeue_sequence, q.user_id LIMIT $1",
                    routing.condition(2)
                );
                let mut candidate_users_query =
                    sqlx::query_scalar::<_, UserId>(AssertSqlSafe(candidate_users_sql)).bind(DEQUEUE_CANDIDATE_USERS);
                for key in &routing.satisfiable_keys {
                    candidate_users_query = candidate_users_query.bind(key.clone());
                }
                let candidate_users = candidate_users_query.fetch_all(&mut **tx).await?;
                let oldest_job_sql = format!(
                    "SELECT j.id FROM execution_jobs j WHERE j.state = 'queued' AND j.user_id = $1 \
                     AND j.cancel = FALSE AND {} ORDER BY j.queued_at, j.id LIMIT 1{}",
                    routing.condition(2),
                    dialect.skip_locked()
                );
                let mut locked: Option<JobId> = None;
                for user_id in candidate_users {
                    let mut oldest_job_query =
                        sqlx::query_scalar::<_, JobId>(AssertSqlSafe(oldest_job_sql.clone())).bind(user_id);
                    for key in &routing.satisfiable_keys {
                        oldest_job_query = oldest_job_query.bind(key.clone());
                    }
                    if let Some(job_id) = oldest_job_query.fetch_optional(&mut **tx).await? {
                        locked = Some(job_id);
                        break;
                    }
                }
                match locked {
                    None => None,
                    // The row is locked, so it is still queued: the update cannot miss.
                    Some(job_id) => sqlx::query_as::<_, ExecutionJob>(concat!(
                        "UPDATE execution_jobs SET state = 'processing', started_at = $2, last_heartbeat_at = $2, \
                         executor_name = $3, finished_at = NULL, failure_message = NULL, result = NULL \
                         WHERE id = $1 AND state = 'queued' RETURNING ",
                        job_columns!()
                    ))
                    .bind(job_id)
                    .bind(now_ms)
                    .bind(executor_name.to_owned())
                    .fetch_optional(&mut **tx)
                    .await?,
                }
            };
            let Some(job) = claimed else {
                return Ok(None);
            };

            // The token, scoped to the workspace's repository (read in the same statement).
            let repository_id = sqlx::query_scalar::<_, RepositoryId>(
                "INSERT INTO job_tokens (job_id, token_hash, repository_id, created_at, expires_at) \
                 SELECT $1, $2, w.repository_id, $3, $4 FROM workspaces w WHERE w.id = $5 \
                 ON CONFLICT (job_id) DO UPDATE SET \
                 token_hash = excluded.token_hash, repository_id = excluded.repository_id, \
                 created_at = excluded.created_at, expires_at = excluded.expires_at RETURNING repository_id",
            )
            .bind(job.id)
            .bind(job_token.token_hash.clone())
            .bind(now_ms)
            .bind(job_token.expires_at_ms)
            .bind(job.workspace_id)
            .fetch_one(&mut **tx)
            .await?;

            sqlx::query(
                "UPDATE user_queue_state SET last_dequeued_at = $2, dequeue_sequence = \
                 (SELECT MAX(dequeue_sequence) FROM user_queue_state) + 1 WHERE user_id = $1",
            )
            .bind(job.user_id)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;

            Ok(Some(DequeuedJob { job, repository_id }))
        })
    }

    /// Records a heartbeat for `job_ids` and reports which of them this executor still owns and
    /// which of those were canceled.
    pub async fn heartbeat(
        &self,
        executor_name: &str,
        job_ids: &[JobId],
        now_ms: i64,
    ) -> Result<HeartbeatOutcome, StoreError> {
        if job_ids.is_empty() {
            return Ok(HeartbeatOutcome::default());
        }
        write_transaction!(self, tx, dialect => {
            let mut outcome = HeartbeatOutcome::default();
            for chunk in job_ids.chunks(BULK_INSERT_ROWS) {
                let sql = format!(
                    "UPDATE execution_jobs SET last_heartbeat_at = $1 WHERE state = 'processing' \
                     AND executor_name = $2 AND id IN ({}) RETURNING id, cancel",
                    placeholders(3, chunk.len())
                );
                let mut query = sqlx::query_as::<_, (JobId, bool)>(AssertSqlSafe(sql))
                    .bind(now_ms)
                    .bind(executor_name.to_owned());
                for job_id in chunk {
                    query = query.bind(*job_id);
                }
                for (job_id, cancel) in query.fetch_all(&mut **tx).await? {
                    outcome.known.push(job_id);
                    if cancel {
                        outcome.cancel.push(job_id);
                    }
                }
            }
            outcome.known.sort();
            outcome.cancel.sort();
            Ok(outcome)
        })
    }

    /// Records executor telemetry (inserted on first sight, updated after).
    pub async fn upsert_executor(
        &self,
        executor: &ExecutorInfo,
        now_ms: i64,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            sqlx::query(
                "INSERT INTO executors (name, hostname, version, labels, resources, os, architecture, \
                 first_seen_at, last_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
                 ON CONFLICT (name) DO UPDATE SET hostname = excluded.hostname, version = excluded.version, \
                 labels = excluded.labels, resources = excluded.resources, os = excluded.os, \
                 architecture = excluded.architecture, last_seen_at = excluded.last_seen_at",
            )
            .bind(executor.name.clone())
            .bind(executor.hostname.clone())
            .bind(executor.version.clone())
            .bind(to_text(&executor.labels))
            .bind(to_text(&executor.resources))
            .bind(executor.os.clone())
            .bind(executor.architecture.clone())
            .bind(now_ms)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
    }

    /// Executors seen at or after `seen_since_ms`, by name.
    pub async fn list_executors(
        &self,
        seen_since_ms: i64,
    ) -> Result<Vec<ExecutorRecord>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, ExecutorRecord>(
                "SELECT name, hostname, version, labels, resources, os, architecture, first_seen_at, \
                 last_seen_at FROM executors WHERE last_seen_at >= $1 ORDER BY name",
            )
            .bind(seen_since_ms)
            .fetch_all(pool)
            .await?)
        })
    }

    /// How many jobs each executor is processing now (for the executors page).
    pub async fn processing_jobs_by_executor(&self) -> Result<std::collections::HashMap<String, i64>, StoreError> {
        let rows = on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, (String, i64)>(
                "SELECT executor_name, COUNT(*) FROM execution_jobs WHERE state = 'processing' AND executor_name IS NOT NULL GROUP BY executor_name",
            )
            .fetch_all(pool)
            .await?
        });
        Ok(rows.into_iter().collect())
    }

    /// Looks up a job token by its hash. Valid only while the job is processing and before the
    /// token expires.
    pub async fn lookup_job_token(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<JobTokenGrant>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, JobTokenGrant>(
                "SELECT t.job_id, t.repository_id FROM job_tokens t JOIN execution_jobs j ON j.id = t.job_id \
                 WHERE t.token_hash = $1 AND t.expires_at > $2 AND j.state = 'processing'",
            )
            .bind(token_hash.to_owned())
            .bind(now_ms)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// [`Store::lookup_job_token`] and the job it grants, in one query (every report an
    /// executor sends starts with both).
    pub async fn lookup_job_token_with_job(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<(JobTokenGrant, ExecutionJob)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            job: ExecutionJob,
            grant_repository_id: RepositoryId,
        }
        on_pool!(self, pool, dialect => {
            let row = sqlx::query_as::<_, Row>(
                "SELECT j.id, j.workspace_id, j.batch_spec_id, j.user_id, j.state, j.cancel, j.routing_key, \
                 j.num_resets, j.num_failures, j.queued_at, j.started_at, j.finished_at, j.last_heartbeat_at, \
                 j.executor_name, j.failure_message, j.result, j.payload, j.created_at, \
                 t.repository_id AS grant_repository_id \
                 FROM job_tokens t JOIN execution_jobs j ON j.id = t.job_id \
                 WHERE t.token_hash = $1 AND t.expires_at > $2 AND j.state = 'processing'",
            )
            .bind(token_hash.to_owned())
            .bind(now_ms)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|row| (JobTokenGrant { job_id: row.job.id, repository_id: row.grant_repository_id }, row.job)))
        })
    }

    /// Fetches one job.
    pub async fn get_execution_job(&self, job_id: JobId) -> Result<ExecutionJob, StoreError> {
        on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, ExecutionJob>(concat!("SELECT ", job_columns!(), " FROM execution_jobs WHERE id = $1"))
                .bind(job_id)
                .fetch_optional(pool)
                .await?
                .ok_or_else(|| StoreError::not_found(format!("execution job {job_id}")))
        })
    }

    /// The current job of a workspace, if any.
    pub async fn get_execution_job_for_workspace(
        &self,
        workspace_id: WorkspaceId,
    ) -> Result<Option<ExecutionJob>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, ExecutionJob>(concat!(
                "SELECT ", job_columns!(), " FROM execution_jobs WHERE workspace_id = $1"
            ))
            .bind(workspace_id)
            .fetch_optional(pool)
            .await?)
        })
    }

    /// Appends a log entry to a job this executor owns; returns its 0-based index.
    pub async fn append_log_entry(
        &self,
        job_id: JobId,
        executor_name: &str,
        entry: &NewLogEntry,
    ) -> Result<i64, StoreError> {
        write_transaction!(self, tx, dialect => {
            let ownership = sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT state, executor_name FROM execution_jobs WHERE id = $1",
            )
            .bind(job_id)
            .fetch_optional(&mut **tx)
            .await?;
            require_owned_processing(job_id, executor_name, ownership)?;
            let next_index = sqlx::query_scalar::<_, i64>(
                "SELECT COALESCE(MAX(entry_index) + 1, 0) FROM execution_log_entries WHERE job_id = $1",
            )
            .bind(job_id)
            .fetch_one(&mut **tx)
            .await?;
            sqlx::query(
                "INSERT INTO execution_log_entries (job_id, entry_index, key, command, started_at, \
                 exit_code, duration_ms, output) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(job_id)
            .bind(next_index)
            .bind(entry.key.clone())
            .bind(serde_json::to_string(&entry.command)?)
            .bind(entry.started_at)
            .bind(entry.exit_code)
            .bind(entry.duration_ms)
            .bind(entry.output.clone())
            .execute(&mut **tx)
            .await?;
            Ok(next_index)
        })
    }

    /// Replaces the output (and final exit code/duration, once known) of a log entry of a job
    /// this executor owns.
    pub async fn update_log_entry(
        &self,
        job_id: JobId,
        executor_name: &str,
        entry_index: i64,
        output: &str,
        exit_code: Option<i64>,
        duration_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        write_transaction!(self, tx, dialect => {
            let ownership = sqlx::query_as::<_, (String, Option<String>)>(
                "SELECT state, executor_name FROM execution_jobs WHERE id = $1",
            )
            .bind(job_id)
            .fetch_optional(&mut **tx)
            .await?;
            require_owned_processing(job_id, executor_name, ownership)?;
            let updated = sqlx::query(
                "UPDATE execution_log_entries SET output = $3, exit_code = $4, duration_ms = $5 \
                 WHERE job_id = $1 AND entry_index = $2",
            )
            .bind(job_id)
            .bind(entry_index)
            .bind(output.to_owned())
            .bind(exit_code)
            .bind(duration_ms)
            .execute(&mut **tx)
            .await?;
            if updated.rows_affected() == 0 {
                return Err(StoreError::not_found(format!("log entry {entry_index} of job {job_id}")));
            }
            Ok(())
        })
    }

    /// All log entries of a job, in order.
    pub async fn list_log_entries(&self, job_id: JobId) -> Result<Vec<LogEntry>, StoreError> {
        self.list_log_entries_since(job_id, 0, 0).await
    }

    /// Log entries from `entry_index` on; the first one's output is cut to start at byte
    /// `output_offset` (what the caller already has), so a poller only receives new output.
    pub async fn list_log_entries_since(
        &self,
        job_id: JobId,
        entry_index: i64,
        output_offset: i64,
    ) -> Result<Vec<LogEntry>, StoreError> {
        let mut entries = on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, LogEntry>(
                "SELECT job_id, entry_index, key, command, started_at, exit_code, duration_ms, output \
                 FROM execution_log_entries WHERE job_id = $1 AND entry_index >= $2 ORDER BY entry_index",
            )
            .bind(job_id)
            .bind(entry_index)
            .fetch_all(pool)
            .await?
        });
        if let Some(first) = entries.first_mut()
            && first.entry_index == entry_index
            && output_offset > 0
        {
            let offset = usize::try_from(output_offset).unwrap_or(usize::MAX);
            // An offset inside a multi-byte character (or past the end) cannot come from a
            // previous read of this entry; sending the whole output is the safe answer.
            if offset <= first.output.len() && first.output.is_char_boundary(offset) {
                first.output = first.output[offset..].to_owned();
                first.output_offset = output_offset;
            }
        }
        Ok(entries)
    }

    /// Marks a job completed with its result, if this executor owns it and it is processing.
    pub async fn complete_job(
        &self,
        job_id: JobId,
        executor_name: &str,
        result: &serde_json::Value,
        now_ms: i64,
    ) -> Result<CompletionOutcome, StoreError> {
        if let Some(queue) = self.sqlite_queue() {
            let _serialised_writer = self.sqlite_write_lock().lock().await;
            let (executor, report) = (executor_name.to_owned(), crate::sqlite_queue::Report::Completed { result: to_text(result) });
            return queue.run(move |connection| crate::sqlite_queue::finish(connection, job_id.0, &executor, &report, now_ms)).await;
        }
        write_transaction!(self, tx, dialect => {
            let final_state = sqlx::query_scalar::<_, String>(
                "UPDATE execution_jobs SET state = 'completed', finished_at = $3, result = $4 \
                 WHERE id = $1 AND state = 'processing' AND executor_name = $2 RETURNING state",
            )
            .bind(job_id)
            .bind(executor_name.to_owned())
            .bind(now_ms)
            .bind(to_text(result))
            .fetch_optional(&mut **tx)
            .await?;
            finish_report!(tx, job_id, final_state)
        })
    }

    /// Marks a job failed (or `canceled`, if a user canceled it) if this executor owns it and it
    /// is processing.
    pub async fn fail_job(
        &self,
        job_id: JobId,
        executor_name: &str,
        failure_message: &str,
        now_ms: i64,
    ) -> Result<CompletionOutcome, StoreError> {
        if let Some(queue) = self.sqlite_queue() {
            let _serialised_writer = self.sqlite_write_lock().lock().await;
            let (executor, report) = (executor_name.to_owned(), crate::sqlite_queue::Report::Failed { message: failure_message.to_owned() });
            return queue.run(move |connection| crate::sqlite_queue::finish(connection, job_id.0, &executor, &report, now_ms)).await;
        }
        write_transaction!(self, tx, dialect => {
            let final_state = sqlx::query_scalar::<_, String>(
                "UPDATE execution_jobs SET \
                 state = CASE WHEN cancel THEN 'canceled' ELSE 'failed' END, \
                 num_failures = num_failures + CASE WHEN cancel THEN 0 ELSE 1 END, \
                 finished_at = $3, failure_message = $4 \
                 WHERE id = $1 AND state = 'processing' AND executor_name = $2 RETURNING state",
            )
            .bind(job_id)
            .bind(executor_name.to_owned())
            .bind(now_ms)
            .bind(failure_message.to_owned())
            .fetch_optional(&mut **tx)
            .await?;
            if final_state.is_some() {
                sqlx::query(DELETE_SPECS_OF_JOBS_WORKSPACE).bind(job_id).execute(&mut **tx).await?;
                sqlx::query(FORGET_SPECS_OF_JOBS_WORKSPACE).bind(job_id).execute(&mut **tx).await?;
            }
            finish_report!(tx, job_id, final_state)
        })
    }

    /// The resetter: processing jobs whose last heartbeat is before `stalled_before_ms` go back
    /// to the queue; those already reset `max_resets` times fail instead, and canceled ones end
    /// as canceled.
    pub async fn requeue_stalled_jobs(
        &self,
        stalled_before_ms: i64,
        max_resets: i64,
        now_ms: i64,
    ) -> Result<StalledJobsOutcome, StoreError> {
        write_transaction!(self, tx, dialect => {
            let mut canceled = sqlx::query_scalar::<_, JobId>(
                "UPDATE execution_jobs SET state = 'canceled', finished_at = $2 \
                 WHERE state = 'processing' AND last_heartbeat_at < $1 AND cancel = TRUE RETURNING id",
            )
            .bind(stalled_before_ms)
            .bind(now_ms)
            .fetch_all(&mut **tx)
            .await?;
            let mut failed = sqlx::query_scalar::<_, JobId>(
                "UPDATE execution_jobs SET state = 'failed', finished_at = $3, num_failures = num_failures + 1, \
                 failure_message = 'job processor died while handling this job too many times (' \
                 || CAST(num_resets AS TEXT) || ' resets); its executor stopped sending heartbeats' \
                 WHERE state = 'processing' AND last_heartbeat_at < $1 AND num_resets >= $2 RETURNING id",
            )
            .bind(stalled_before_ms)
            .bind(max_resets)
            .bind(now_ms)
            .fetch_all(&mut **tx)
            .await?;
            let mut requeued = sqlx::query_scalar::<_, JobId>(
                "UPDATE execution_jobs SET state = 'queued', num_resets = num_resets + 1, queued_at = $2, \
                 started_at = NULL, last_heartbeat_at = NULL, executor_name = NULL \
                 WHERE state = 'processing' AND last_heartbeat_at < $1 RETURNING id",
            )
            .bind(stalled_before_ms)
            .bind(now_ms)
            .fetch_all(&mut **tx)
            .await?;
            // The lost executor's job tokens must stop working, whatever happened to the job.
            sqlx::query(
                "DELETE FROM job_tokens WHERE job_id IN (SELECT t.job_id FROM job_tokens t \
                 JOIN execution_jobs j ON j.id = t.job_id WHERE j.state <> 'processing')",
            )
            .execute(&mut **tx)
            .await?;
            for job_id in failed.iter().chain(&canceled) {
                sqlx::query(DELETE_SPECS_OF_JOBS_WORKSPACE).bind(*job_id).execute(&mut **tx).await?;
                sqlx::query(FORGET_SPECS_OF_JOBS_WORKSPACE).bind(*job_id).execute(&mut **tx).await?;
            }
            canceled.sort();
            failed.sort();
            requeued.sort();
            Ok(StalledJobsOutcome { requeued, failed, canceled })
        })
    }

    /// Puts a job whose attempt failed for an infrastructure reason (fetch, runtime, executor
    /// trouble) back in the queue for another attempt, if it has had fewer than
    /// `max_attempts` and was not canceled. Only the owning executor's report counts; its job
    /// token dies. Returns `Ignored` when the job is not retried (the caller then fails it).
    pub async fn requeue_after_infrastructure_failure(
        &self,
        job_id: JobId,
        executor_name: &str,
        failure_message: &str,
        max_attempts: i64,
        now_ms: i64,
    ) -> Result<CompletionOutcome, StoreError> {
        write_transaction!(self, tx, dialect => {
            let final_state = sqlx::query_scalar::<_, String>(
                "UPDATE execution_jobs SET state = 'queued', num_failures = num_failures + 1, queued_at = $3, \
                 started_at = NULL, last_heartbeat_at = NULL, executor_name = NULL, failure_message = $4 \
                 WHERE id = $1 AND state = 'processing' AND executor_name = $2 AND NOT cancel \
                 AND num_failures + 1 < $5 RETURNING state",
            )
            .bind(job_id)
            .bind(executor_name.to_owned())
            .bind(now_ms)
            .bind(failure_message.to_owned())
            .bind(max_attempts)
            .fetch_optional(&mut **tx)
            .await?;
            finish_report!(tx, job_id, final_state)
        })
    }

    /// Cancels a batch spec's execution: queued jobs become `canceled` now; processing jobs get
    /// `cancel` set and stop when their executor next heartbeats.
    pub async fn cancel_batch_spec_jobs(
        &self,
        batch_spec_id: BatchSpecId,
        now_ms: i64,
    ) -> Result<CancelOutcome, StoreError> {
        write_transaction!(self, tx, dialect => {
            let canceled = sqlx::query(
                "UPDATE execution_jobs SET state = 'canceled', cancel = TRUE, finished_at = $2 \
                 WHERE batch_spec_id = $1 AND state = 'queued'",
            )
            .bind(batch_spec_id)
            .bind(now_ms)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            let canceling = sqlx::query(
                "UPDATE execution_jobs SET cancel = TRUE WHERE batch_spec_id = $1 AND state = 'processing'",
            )
            .bind(batch_spec_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            Ok(CancelOutcome { canceled, canceling })
        })
    }

    /// Retries the given workspaces of a batch spec whose jobs are terminal (failed, completed or
    /// canceled): each old attempt is deleted with its logs and the changeset specs it produced,
    /// and a fresh queued job (new id) is inserted. Workspaces whose job is still queued or
    /// processing, or that have no job, are left alone. Returns the new jobs.
    pub async fn retry_workspace_jobs(
        &self,
        batch_spec_id: BatchSpecId,
        workspace_ids: &[WorkspaceId],
        now_ms: i64,
    ) -> Result<Vec<JobId>, StoreError> {
        let mut retried = Vec::new();
        for chunk in workspace_ids.chunks(BULK_INSERT_ROWS) {
            let sql = format!(
                concat!(
                    "SELECT ",
                    job_columns!(),
                    " FROM execution_jobs WHERE batch_spec_id = $1 \
                     AND state IN ('failed', 'completed', 'canceled') AND workspace_id IN ({})"
                ),
                placeholders(2, chunk.len())
            );
            let old_jobs = on_pool!(self, pool, dialect => {
                let mut query = sqlx::query_as::<_, ExecutionJob>(AssertSqlSafe(sql)).bind(batch_spec_id);
                for workspace_id in chunk {
                    query = query.bind(*workspace_id);
                }
                query.fetch_all(pool).await?
            });
            retried.extend(
                self.replace_jobs_with_fresh_attempts(old_jobs, now_ms)
                    .await?,
            );
        }
        Ok(retried)
    }

    /// Retries every failed (and canceled) job of a batch spec, plus completed ones when
    /// `include_completed`; see [`Store::retry_workspace_jobs`].
    pub async fn retry_batch_spec_jobs(
        &self,
        batch_spec_id: BatchSpecId,
        include_completed: bool,
        now_ms: i64,
    ) -> Result<Vec<JobId>, StoreError> {
        let old_jobs = on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, ExecutionJob>(concat!(
                "SELECT ", job_columns!(),
                " FROM execution_jobs WHERE batch_spec_id = $1 \
                 AND (state IN ('failed', 'canceled') OR (state = 'completed' AND $2)) ORDER BY workspace_id"
            ))
            .bind(batch_spec_id)
            .bind(include_completed)
            .fetch_all(pool)
            .await?
        });
        self.replace_jobs_with_fresh_attempts(old_jobs, now_ms)
            .await
    }

    async fn replace_jobs_with_fresh_attempts(
        &self,
        old_jobs: Vec<ExecutionJob>,
        now_ms: i64,
    ) -> Result<Vec<JobId>, StoreError> {
        if old_jobs.is_empty() {
            return Ok(Vec::new());
        }
        write_transaction!(self, tx, dialect => {
            let mut new_ids = Vec::with_capacity(old_jobs.len());
            for old_job in &old_jobs {
                // Re-checked inside the transaction: the job may have been retried concurrently.
                let deleted = sqlx::query(
                    "DELETE FROM execution_jobs WHERE id = $1 AND state IN ('failed', 'completed', 'canceled')",
                )
                .bind(old_job.id)
                .execute(&mut **tx)
                .await?
                .rows_affected();
                if deleted == 0 {
                    continue;
                }
                sqlx::query("DELETE FROM changeset_specs WHERE workspace_id = $1")
                    .bind(old_job.workspace_id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query("UPDATE workspaces SET changeset_spec_ids = '[]' WHERE id = $1")
                    .bind(old_job.workspace_id)
                    .execute(&mut **tx)
                    .await?;
                let new_id = sqlx::query_scalar::<_, JobId>(
                    "INSERT INTO execution_jobs (workspace_id, batch_spec_id, user_id, state, routing_key, \
                     payload, queued_at, created_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $6) RETURNING id",
                )
                .bind(old_job.workspace_id)
                .bind(old_job.batch_spec_id)
                .bind(old_job.user_id)
                .bind(old_job.routing_key.clone())
                .bind(to_text(&old_job.payload))
                .bind(now_ms)
                .fetch_one(&mut **tx)
                .await?;
                new_ids.push(new_id);
            }
            Ok(new_ids)
        })
    }

    /// Job counts per state for one batch spec.
    pub async fn job_counts_by_state(
        &self,
        batch_spec_id: BatchSpecId,
    ) -> Result<JobStateCounts, StoreError> {
        let rows = on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, (String, bool, i64)>(
                "SELECT state, cancel, COUNT(*) FROM execution_jobs WHERE batch_spec_id = $1 GROUP BY state, cancel",
            )
            .bind(batch_spec_id)
            .fetch_all(pool)
            .await?
        });
        let mut counts = JobStateCounts::default();
        for (state, cancel, count) in rows {
            counts.add(JobState::try_from(state)?, cancel, count);
        }
        Ok(counts)
    }

    /// Job counts per state across all batch specs, for metrics.
    pub async fn jobs_by_state(&self) -> Result<JobStateCounts, StoreError> {
        let rows = on_pool!(self, pool, dialect => {
            sqlx::query_as::<_, (String, bool, i64)>(
                "SELECT state, cancel, COUNT(*) FROM execution_jobs GROUP BY state, cancel",
            )
            .fetch_all(pool)
            .await?
        });
        let mut counts = JobStateCounts::default();
        for (state, cancel, count) in rows {
            counts.add(JobState::try_from(state)?, cancel, count);
        }
        Ok(counts)
    }

    /// Number of queued jobs.
    pub async fn queue_depth(&self) -> Result<i64, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM execution_jobs WHERE state = 'queued'")
                .fetch_one(pool)
                .await?)
        })
    }

    /// A page of a batch spec's workspaces with their jobs, in workspace id order after
    /// `after` (keyset pagination: pass the last id of the previous page).
    pub async fn list_workspaces_with_jobs(
        &self,
        batch_spec_id: BatchSpecId,
        filter: WorkspaceJobFilter,
        after: Option<WorkspaceId>,
        limit: i64,
    ) -> Result<Vec<WorkspaceWithJob>, StoreError> {
        let after_id = after.map_or(0, |workspace_id| workspace_id.0);
        let rows = on_pool!(self, pool, dialect => {
            match filter {
                WorkspaceJobFilter::All => sqlx::query_as::<_, WorkspaceWithJobRow>(
                    "SELECT w.id AS workspace_id, w.repository_id, w.branch, w.path, w.skipped, \
                     w.cached_result_found, j.id AS job_id, j.state AS job_state, j.cancel AS job_cancel, \
                     j.queued_at AS job_queued_at, j.started_at AS job_started_at, \
                     j.finished_at AS job_finished_at, j.executor_name AS job_executor_name, \
                     j.failure_message AS job_failure_message \
                     FROM workspaces w LEFT JOIN execution_jobs j ON j.workspace_id = w.id \
                     WHERE w.batch_spec_id = $1 AND w.id > $2 ORDER BY w.id LIMIT $3",
                )
                .bind(batch_spec_id)
                .bind(after_id)
                .bind(limit)
                .fetch_all(pool)
                .await?,
                // Driven from the jobs index (batch_spec_id, state, workspace_id) so a rare state
                // among 45,000 workspaces does not scan them all.
                WorkspaceJobFilter::JobState(state) => sqlx::query_as::<_, WorkspaceWithJobRow>(
                    "SELECT w.id AS workspace_id, w.repository_id, w.branch, w.path, w.skipped, \
                     w.cached_result_found, j.id AS job_id, j.state AS job_state, j.cancel AS job_cancel, \
                     j.queued_at AS job_queued_at, j.started_at AS job_started_at, \
                     j.finished_at AS job_finished_at, j.executor_name AS job_executor_name, \
                     j.failure_message AS job_failure_message \
                     FROM execution_jobs j JOIN workspaces w ON w.id = j.workspace_id \
                     WHERE j.batch_spec_id = $1 AND j.state = $2 AND j.workspace_id > $3 \
                     ORDER BY j.workspace_id LIMIT $4",
                )
                .bind(batch_spec_id)
                .bind(state.as_str())
                .bind(after_id)
                .bind(limit)
                .fetch_all(pool)
                .await?,
            }
        });
        rows.into_iter()
            .map(WorkspaceWithJobRow::into_public)
            .collect()
    }
}

/// Checks that a job exists (`NotFound` otherwise) and is processing under `executor_name`
/// (`InvalidState` otherwise).
fn require_owned_processing(
    job_id: JobId,
    executor_name: &str,
    ownership: Option<(String, Option<String>)>,
) -> Result<(), StoreError> {
    let Some((state, owner)) = ownership else {
        return Err(StoreError::not_found(format!("execution job {job_id}")));
    };
    if state != JobState::Processing.as_str() || owner.as_deref() != Some(executor_name) {
        return Err(StoreError::invalid_state(format!(
            "execution job {job_id} is not being processed by executor {executor_name:?}"
        )));
    }
    Ok(())
}
