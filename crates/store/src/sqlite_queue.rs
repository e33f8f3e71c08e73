//! The queue's hottest transactions on SQLite (dequeue, complete, fail) on one dedicated thread
//! with its own connection.
//!
//! Through sqlx every statement is a round trip between the async task and the connection's
//! worker thread, two context switches each; a dequeue is six statements, and on a small
//! machine the switching, not SQLite, was the cost. Here a whole transaction is one closure
//! run on the database thread: one round trip. The statements and their meaning are the same
//! as the sqlx versions in `queue.rs` (which PostgreSQL uses), and the store's write lock is
//! held by the caller for the duration, so these writes stay serialised with every other.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};

use crate::error::StoreError;
use crate::ids::{BatchSpecId, JobId, RepositoryId, UserId, WorkspaceId};
use crate::queue::{CompletionOutcome, DequeuedJob, ExecutionJob, JobState};

type Task = Box<dyn FnOnce(&mut Connection) + Send>;

/// The thread and its connection; dropping it ends the thread.
pub(crate) struct QueueThread {
    tasks: std::sync::Mutex<std::sync::mpsc::Sender<Task>>,
}

impl QueueThread {
    /// Opens a second connection to the database file and starts its thread.
    pub(crate) fn open(path: &Path) -> Result<QueueThread, StoreError> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(std::time::Duration::from_secs(30))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        let (sender, receiver) = std::sync::mpsc::channel::<Task>();
        std::thread::Builder::new()
            .name("flotilla-sqlite-queue".into())
            .spawn(move || {
                let mut connection = connection;
                while let Ok(task) = receiver.recv() {
                    task(&mut connection);
                }
            })
            .map_err(|error| StoreError::Corrupt { message: format!("starting the SQLite queue thread: {error}") })?;
        Ok(QueueThread { tasks: std::sync::Mutex::new(sender) })
    }

    /// Runs `work` on the database thread and waits for its answer.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let task: Task = Box::new(move |connection| {
            let _ = reply.send(work(connection));
        });
        let sent = self.tasks.lock().unwrap_or_else(std::sync::PoisonError::into_inner).send(task);
        if sent.is_err() {
            return Err(thread_gone());
        }
        answer.await.map_err(|_| thread_gone())?
    }
}

fn thread_gone() -> StoreError {
    StoreError::Database(sqlx::Error::WorkerCrashed)
}

/// `?first, ?first+1, …` for the routing keys (see `RoutingFilter::condition`).
fn routing_condition(keys: usize, first: usize) -> String {
    if keys == 0 {
        String::from("j.routing_key = ''")
    } else {
        let placeholders: Vec<String> = (first..first + keys).map(|number| format!("?{number}")).collect();
        format!("(j.routing_key = '' OR j.routing_key IN ({}))", placeholders.join(", "))
    }
}

/// What a dequeue needs, owned so it can travel to the thread.
pub(crate) struct DequeueRequest {
    pub executor_name: String,
    pub routing_keys: Vec<String>,
    pub token_hash: String,
    pub token_expires_at_ms: i64,
    pub now_ms: i64,
    pub candidate_users: i64,
}

/// The dequeue transaction: users in round-robin order, the first one's oldest eligible job,
/// its token (scoped to the workspace's repository), and the user's place in the rotation.
pub(crate) fn dequeue(connection: &mut Connection, request: &DequeueRequest) -> Result<Option<DequeuedJob>, StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let keys = request.routing_keys.len();
    let claimed = {
        let mut values: Vec<rusqlite::types::Value> = Vec::with_capacity(keys + 1);
        values.push(request.candidate_users.into());
        values.extend(request.routing_keys.iter().map(|key| rusqlite::types::Value::from(key.clone())));
        let mut candidates = transaction.prepare_cached(&format!(
            "SELECT q.user_id FROM user_queue_state q WHERE EXISTS (\
             SELECT 1 FROM execution_jobs j WHERE j.state = 'queued' AND j.user_id = q.user_id \
             AND j.cancel = FALSE AND {}) ORDER BY q.dequeue_sequence, q.user_id LIMIT ?1",
            routing_condition(keys, 2)
        ))?;
        let users = candidates.query_map(params_from_iter(values.iter()), |row| row.get::<_, i64>(0))?.collect::<Result<Vec<i64>, _>>()?;
        let mut oldest = transaction.prepare_cached(&format!(
            "SELECT j.id FROM execution_jobs j WHERE j.state = 'queued' AND j.user_id = ?1 \
             AND j.cancel = FALSE AND {} ORDER BY j.queued_at, j.id LIMIT 1",
            routing_condition(keys, 2)
        ))?;
        let mut found = None;
        for user in users {
            values[0] = user.into();
            if let Some(job_id) = oldest.query_row(params_from_iter(values.iter()), |row| row.get::<_, i64>(0)).optional()? {
                found = Some(job_id);
                break;
            }
        }
        match found {
            None => None,
            Some(job_id) => {
                let mut claim = transaction.prepare_cached(concat!(
                    "UPDATE execution_jobs SET state = 'processing', started_at = ?2, last_heartbeat_at = ?2, \
                     executor_name = ?3, finished_at = NULL, failure_message = NULL, result = NULL \
                     WHERE id = ?1 AND state = 'queued' RETURNING ",
                    "id, workspace_id, batch_spec_id, user_id, state, cancel, routing_key, num_resets, \
                     num_failures, queued_at, started_at, finished_at, last_heartbeat_at, executor_name, \
                     failure_message, result, payload, created_at"
                ))?;
                claim.query_row(params![job_id, request.now_ms, request.executor_name], RawJob::read).optional()?
            }
        }
    };
    let Some(raw) = claimed else {
        return Ok(None);
    };
    let job = raw.into_job()?;
    let repository_id: i64 = transaction
        .prepare_cached(
            "INSERT INTO job_tokens (job_id, token_hash, repository_id, created_at, expires_at) \
             SELECT ?1, ?2, w.repository_id, ?3, ?4 FROM workspaces w WHERE w.id = ?5 \
             ON CONFLICT (job_id) DO UPDATE SET \
             token_hash = excluded.token_hash, repository_id = excluded.repository_id, \
             created_at = excluded.created_at, expires_at = excluded.expires_at RETURNING repository_id",
        )?
        .query_row(params![job.id.0, request.token_hash, request.now_ms, request.token_expires_at_ms, job.workspace_id.0], |row| row.get(0))?;
    transaction
        .prepare_cached(
            "UPDATE user_queue_state SET last_dequeued_at = ?2, dequeue_sequence = \
             (SELECT MAX(dequeue_sequence) FROM user_queue_state) + 1 WHERE user_id = ?1",
        )?
        .execute(params![job.user_id.0, request.now_ms])?;
    transaction.commit()?;
    Ok(Some(DequeuedJob { job, repository_id: RepositoryId(repository_id) }))
}

/// How a job ends when its executor reports.
pub(crate) enum Report {
    Completed { result: String },
    Failed { message: String },
}

/// Marks a job completed or failed if this executor owns it and it is processing; otherwise
/// reports where it is (the same as `finish_report!` in `queue.rs`).
pub(crate) fn finish(connection: &mut Connection, job_id: i64, executor_name: &str, report: &Report, now_ms: i64) -> Result<CompletionOutcome, StoreError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let final_state: Option<String> = match report {
        Report::Completed { result } => transaction
            .prepare_cached(
                "UPDATE execution_jobs SET state = 'completed', finished_at = ?3, result = ?4 \
                 WHERE id = ?1 AND state = 'processing' AND executor_name = ?2 RETURNING state",
            )?
            .query_row(params![job_id, executor_name, now_ms, result], |row| row.get(0))
            .optional()?,
        Report::Failed { message } => transaction
            .prepare_cached(
                "UPDATE execution_jobs SET \
                 state = CASE WHEN cancel THEN 'canceled' ELSE 'failed' END, \
                 num_failures = num_failures + CASE WHEN cancel THEN 0 ELSE 1 END, \
                 finished_at = ?3, failure_message = ?4 \
                 WHERE id = ?1 AND state = 'processing' AND executor_name = ?2 RETURNING state",
            )?
            .query_row(params![job_id, executor_name, now_ms, message], |row| row.get(0))
            .optional()?,
    };
    let outcome = match final_state {
        Some(state) => {
            transaction.prepare_cached("DELETE FROM job_tokens WHERE job_id = ?1")?.execute(params![job_id])?;
            if matches!(report, Report::Failed { .. }) {
                // As `fail_job` does on PostgreSQL: a failed or canceled job keeps no changeset specs.
                transaction
                    .prepare_cached("DELETE FROM changeset_specs WHERE workspace_id = (SELECT workspace_id FROM execution_jobs WHERE id = ?1)")?
                    .execute(params![job_id])?;
                transaction
                    .prepare_cached("UPDATE workspaces SET changeset_spec_ids = '[]' WHERE id = (SELECT workspace_id FROM execution_jobs WHERE id = ?1)")?
                    .execute(params![job_id])?;
            }
            CompletionOutcome::Applied { final_state: JobState::try_from(state)? }
        }
        None => {
            let current: Option<String> = transaction
                .prepare_cached("SELECT state FROM execution_jobs WHERE id = ?1")?
                .query_row(params![job_id], |row| row.get(0))
                .optional()?;
            CompletionOutcome::Ignored { current_state: current.map(JobState::try_from).transpose()? }
        }
    };
    transaction.commit()?;
    Ok(outcome)
}

/// An `execution_jobs` row as SQLite returns it, before its text columns are decoded.
struct RawJob {
    id: i64,
    workspace_id: i64,
    batch_spec_id: i64,
    user_id: i64,
    state: String,
    cancel: bool,
    routing_key: String,
    num_resets: i64,
    num_failures: i64,
    queued_at: i64,
    started_at: Option<i64>,
    finished_at: Option<i64>,
    last_heartbeat_at: Option<i64>,
    executor_name: Option<String>,
    failure_message: Option<String>,
    result: Option<String>,
    payload: String,
    created_at: i64,
}

impl RawJob {
    /// Reads the columns of `job_columns!()` in `queue.rs`, in order.
    fn read(row: &rusqlite::Row<'_>) -> rusqlite::Result<RawJob> {
        Ok(RawJob {
            id: row.get(0)?,
            workspace_id: row.get(1)?,
            batch_spec_id: row.get(2)?,
            user_id: row.get(3)?,
            state: row.get(4)?,
            cancel: row.get(5)?,
            routing_key: row.get(6)?,
            num_resets: row.get(7)?,
            num_failures: row.get(8)?,
            queued_at: row.get(9)?,
            started_at: row.get(10)?,
            finished_at: row.get(11)?,
            last_heartbeat_at: row.get(12)?,
            executor_name: row.get(13)?,
            failure_message: row.get(14)?,
            result: row.get(15)?,
            payload: row.get(16)?,
            created_at: row.get(17)?,
        })
    }

    fn into_job(self) -> Result<ExecutionJob, StoreError> {
        Ok(ExecutionJob {
            id: JobId(self.id),
            workspace_id: WorkspaceId(self.workspace_id),
            batch_spec_id: BatchSpecId(self.batch_spec_id),
            user_id: UserId(self.user_id),
            state: JobState::try_from(self.state)?,
            cancel: self.cancel,
            routing_key: self.routing_key,
            num_resets: self.num_resets,
            num_failures: self.num_failures,
            queued_at: self.queued_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            last_heartbeat_at: self.last_heartbeat_at,
            executor_name: self.executor_name,
            failure_message: self.failure_message,
            result: self.result.map(|text| serde_json::from_str(&text)).transpose()?,
            payload: serde_json::from_str(&self.payload)?,
            created_at: self.created_at,
        })
    }
}
