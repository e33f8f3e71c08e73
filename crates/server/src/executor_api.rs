//! The executor API: the queue (dequeue, heartbeat), job reports (logs, complete, fail) and
//! the git endpoint executors fetch code from.
//!
//! Three credentials meet here. The executor token (`Authorization: token-executor <t>`)
//! only dequeues and heartbeats. Each dequeued job gets its own short-lived job token
//! (`Authorization: Bearer <t>`), which only reports on that job and only fetches that job's
//! repository. Neither can read user data, and executors never see code host credentials:
//! they fetch from the server's mirror.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use flotilla_store::{
    Clock, CompletionOutcome, ExecutionJob, ExecutorInfo, JobId, JobTokenGrant, NewJobToken, NewLogEntry, RoutingFilter,
};
use flotilla_wire::{
    DequeueRequest, HeartbeatRequest, HeartbeatResponse, Job, JobFailure, JobResult, LogEntryCreated, LogEntryStart,
    LogEntryUpdate,
};
use futures_util::TryStreamExt;

use crate::SharedState;
use crate::error::{ApiError, ApiResult};
use crate::secrets_crypto::{TokenKind, generate_token, hash_token};

/// What dequeues would otherwise ask the database for every time: which executor tokens are
/// valid (for a few seconds) and which routing keys queued jobs carry (for a second, or until
/// this server queues more jobs). Each saved statement matters: on SQLite every one is a round
/// trip to the database thread, and dequeues are the hottest path of the server.
///
/// On SQLite (one server, enforced at start by `single_server`) the jobs handed out are
/// remembered by their token too, so the reports that follow (log lines, completion) need no
/// read to find their job.
/// That is safe because every report's write checks in SQL that the job is still processing
/// for that executor, and a job's entry goes when it is handed out again or finishes.
#[derive(Default)]
pub struct DequeueCaches {
    executor_tokens: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
    routing_keys: std::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>,
    handed_out: std::sync::Mutex<HandedOut>,
}

/// Jobs being processed, by token hash (and the token hash of each job, to forget it).
#[derive(Default)]
struct HandedOut {
    by_token: std::collections::HashMap<String, (std::sync::Arc<ExecutionJob>, i64)>,
    token_of_job: std::collections::HashMap<JobId, String>,
}

/// Jobs remembered at most; beyond, the memory is emptied (reports then read the database).
const HANDED_OUT_JOBS: usize = 100_000;

/// How long a checked executor token is trusted without asking the database again (a revoked
/// token stops working on every server within this time).
const EXECUTOR_TOKEN_TRUST: std::time::Duration = std::time::Duration::from_secs(10);
/// How long the set of queued routing keys is reused (a newly routed job waits at most this
/// long on another server; this server forgets the set as soon as it queues jobs).
const ROUTING_KEYS_REUSE: std::time::Duration = std::time::Duration::from_secs(1);

impl DequeueCaches {
    fn executor_token_trusted(&self, token_hash: &str) -> bool {
        let tokens = self.executor_tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.get(token_hash).is_some_and(|checked| checked.elapsed() < EXECUTOR_TOKEN_TRUST)
    }

    fn trust_executor_token(&self, token_hash: String) {
        let mut tokens = self.executor_tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if tokens.len() > 10_000 {
            tokens.clear();
        }
        tokens.insert(token_hash, std::time::Instant::now());
    }

    /// Forgets every trusted executor token (after a revocation).
    pub fn forget_executor_tokens(&self) {
        self.executor_tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
    }

    fn routing_keys(&self) -> Option<Vec<String>> {
        let keys = self.routing_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.as_ref().filter(|(read, _)| read.elapsed() < ROUTING_KEYS_REUSE).map(|(_, keys)| keys.clone())
    }

    fn remember_routing_keys(&self, keys: Vec<String>) {
        *self.routing_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((std::time::Instant::now(), keys));
    }

    fn remember_handed_out(&self, token_hash: String, job: ExecutionJob, expires_at_ms: i64) {
        let mut handed_out = self.handed_out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if handed_out.by_token.len() >= HANDED_OUT_JOBS {
            *handed_out = HandedOut::default();
        }
        if let Some(previous) = handed_out.token_of_job.insert(job.id, token_hash.clone()) {
            handed_out.by_token.remove(&previous);
        }
        handed_out.by_token.insert(token_hash, (std::sync::Arc::new(job), expires_at_ms));
    }

    fn handed_out(&self, token_hash: &str, now_ms: i64) -> Option<std::sync::Arc<ExecutionJob>> {
        let handed_out = self.handed_out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        handed_out.by_token.get(token_hash).filter(|(_, expires)| *expires > now_ms).map(|(job, _)| job.clone())
    }

    /// Forgets a job that finished.
    fn forget_job(&self, job_id: JobId) {
        let mut handed_out = self.handed_out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(token_hash) = handed_out.token_of_job.remove(&job_id) {
            handed_out.by_token.remove(&token_hash);
        }
    }

    /// Forgets the routing keys: jobs were queued.
    pub fn jobs_queued(&self) {
        *self.routing_keys.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

pub fn router(state: SharedState) -> Router {
    // The token is checked before the body is read, so a caller without one learns nothing
    // about what the route would accept (found by schemathesis: malformed bodies used to be
    // answered 400 before the missing token's 401).
    let queue = Router::new()
        .route("/.executors/queue/dequeue", post(dequeue))
        .route("/.executors/queue/heartbeat", post(heartbeat))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), executor_token_first));
    let jobs = Router::new()
        .route("/.executors/jobs/{job_id}/log", post(append_log))
        .route("/.executors/jobs/{job_id}/log/{index}", patch(update_log))
        .route("/.executors/jobs/{job_id}/complete", post(complete))
        .route("/.executors/jobs/{job_id}/fail", post(fail))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), job_token_first))
        // A report carries diffs; the bound is the one executors keep to (they say so clearly
        // when a result is larger), and the token is checked before any of it is read.
        .layer(axum::extract::DefaultBodyLimit::max(flotilla_wire::executor::MAX_REPORT_BYTES));
    queue
        .merge(jobs)
        .route("/.executors/jobs/{job_id}/mount-files/{file_id}", get(mount_file))
        .route("/.executors/git/{*path}", get(git_get).post(git_post))
        .with_state(state)
}

/// Refuses a queue request without a valid executor token before its body is read.
async fn executor_token_first(State(state): State<SharedState>, request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    match authorize_executor(&state, request.headers()).await {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Refuses a job report unless it carries this job's token, before its body is read: a body
/// may be tens of megabytes, and only the executor running the job may make the server read it.
async fn job_token_first(
    State(state): State<SharedState>,
    Path(parameters): Path<std::collections::HashMap<String, String>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if !authorization(request.headers()).is_some_and(|value| value.starts_with("Bearer ")) {
        return ApiError::unauthorized("this route needs the job's token: `Authorization: Bearer <job token>`").into_response();
    }
    let Some(job_id) = parameters.get("job_id").and_then(|id| id.parse::<i64>().ok()) else {
        return ApiError::bad_request("the job id in the path must be a number").into_response();
    };
    match authorize_report(&state, request.headers(), job_id).await {
        Ok(_) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}

/// Checks the executor token.
async fn authorize_executor(state: &SharedState, headers: &HeaderMap) -> ApiResult<()> {
    let token = authorization(headers)
        .and_then(|value| value.strip_prefix("token-executor "))
        .ok_or_else(|| ApiError::unauthorized("this route needs `Authorization: token-executor <executor token>`"))?;
    let token_hash = hash_token(token.trim());
    if state.dequeue_caches.executor_token_trusted(&token_hash) {
        return Ok(());
    }
    match state.store.lookup_executor_token(&token_hash).await? {
        Some(_) => {
            state.dequeue_caches.trust_executor_token(token_hash);
            Ok(())
        }
        None => Err(ApiError::unauthorized("unknown or revoked executor token")),
    }
}

/// Checks a job token (for the git routes, which check its repository).
async fn authorize_job(state: &SharedState, headers: &HeaderMap) -> ApiResult<JobTokenGrant> {
    let token = authorization(headers)
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("this route needs the job's token: `Authorization: Bearer <job token>`"))?;
    let grant = state
        .store
        .lookup_job_token(&hash_token(token.trim()), Clock::now_ms())
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown or expired job token (the job may have finished or been requeued)"))?;
    Ok(grant)
}

/// Checks a job token for a report on `job_id` and returns the job and the executor that
/// owns it, in one query.
async fn authorize_report(state: &SharedState, headers: &HeaderMap, job_id: i64) -> ApiResult<(ExecutionJob, String)> {
    let token = authorization(headers)
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("this route needs the job's token: `Authorization: Bearer <job token>`"))?;
    let token_hash = hash_token(token.trim());
    let now = Clock::now_ms();
    let job = match state.dequeue_caches.handed_out(&token_hash, now) {
        Some(job) => ExecutionJob::clone(&job),
        None => {
            state
                .store
                .lookup_job_token_with_job(&token_hash, now)
                .await?
                .ok_or_else(|| ApiError::unauthorized("unknown or expired job token (the job may have finished or been requeued)"))?
                .1
        }
    };
    if job.id != JobId(job_id) {
        return Err(ApiError::forbidden("this job token belongs to another job"));
    }
    let executor = job.executor_name.clone().ok_or_else(|| ApiError::conflict("the job is not being processed"))?;
    Ok((job, executor))
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()
}

async fn dequeue(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<DequeueRequest>) -> ApiResult<Response> {
    authorize_executor(&state, &headers).await?;
    let executor = &request.executor;
    if executor.name.trim().is_empty() {
        return Err(ApiError::bad_request("the executor needs a name"));
    }
    record_executor_if_stale(&state, executor).await?;
    let routing = routing_filter(&state, &executor.labels).await?;
    let token = generate_token(TokenKind::Job);
    let token_hash = hash_token(&token);
    let now = Clock::now_ms();
    let expires = now + state.config.job_timeout.as_millis() as i64 + 3_600_000;
    let Some(dequeued) = state
        .store
        .dequeue_execution_job(&executor.name, &routing, &NewJobToken { token_hash: token_hash.clone(), expires_at_ms: expires }, now)
        .await?
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let job = job_payload(&state, &dequeued.job, token).await?;
    if state.store.dialect() == flotilla_store::Dialect::Sqlite {
        state.dequeue_caches.remember_handed_out(token_hash, dequeued.job.clone(), expires);
    }
    tracing::info!(job.id = dequeued.job.id.0, executor.name = %executor.name, repo.name = %job.repository_name, "job dequeued");
    Ok(Json(job).into_response())
}

/// Which routed jobs this executor may take: a job's routing key is `k=v,k2=v2`, and every
/// pair must be among the executor's labels.
async fn routing_filter(state: &SharedState, labels: &BTreeMap<String, String>) -> ApiResult<RoutingFilter> {
    let keys = match state.dequeue_caches.routing_keys() {
        Some(keys) => keys,
        None => {
            let keys = state.store.queued_routing_keys().await?;
            state.dequeue_caches.remember_routing_keys(keys.clone());
            keys
        }
    };
    let satisfiable = keys.into_iter().filter(|key| routing_key_satisfied(key, labels));
    Ok(RoutingFilter::with_keys(satisfiable))
}

pub fn routing_key_satisfied(key: &str, labels: &BTreeMap<String, String>) -> bool {
    key.split(',').filter(|pair| !pair.is_empty()).all(|pair| match pair.split_once('=') {
        Some((name, value)) => labels.get(name).is_some_and(|label| label == value),
        None => labels.contains_key(pair),
    })
}

/// The job as the executor receives it: the payload stored at resolution, plus this attempt's
/// token and the secrets its steps need.
async fn job_payload(state: &SharedState, job: &ExecutionJob, token: String) -> ApiResult<Job> {
    let mut payload: Job = serde_json::from_value(job.payload.clone())
        .map_err(|error| ApiError::internal(format!("job {} has an unreadable payload: {error}", job.id.0)))?;
    payload.id = job.id.0;
    payload.token = token;
    payload.timeout_seconds = state.config.job_timeout.as_secs();
    payload.allowed_images = state.config.allowed_images.clone();
    if payload.steps.iter().any(|step| !step.mount.is_empty()) {
        payload.mount_files = state
            .store
            .list_mount_files(job.batch_spec_id)
            .await?
            .into_iter()
            .map(|file| flotilla_wire::MountFile {
                url: format!("/.executors/jobs/{}/mount-files/{}", job.id.0, file.id.0),
                path: file.path,
                size: u64::try_from(file.size).unwrap_or(0),
                modified_at: file.modified_at,
            })
            .collect();
    }
    let names = outer_variable_names(&payload.steps);
    if names.is_empty() {
        state.job_redactors.remember(job.id, &BTreeMap::new());
    } else {
        let namespace = state.store.get_batch_spec(job.batch_spec_id).await?.namespace()?;
        let accessor = flotilla_store::SecretAccessor { user_id: Some(job.user_id), job_id: Some(job.id) };
        let secrets = crate::secrets::resolve(state, namespace, &names, accessor).await.map_err(ApiError::internal)?;
        // The same values check this job's reports again on this server (see `report_redaction`).
        state.job_redactors.remember(job.id, &secrets);
        payload.redactions = secrets
            .iter()
            .map(|(name, value)| flotilla_wire::Redaction { value: value.clone(), replacement: format!("${{{{ secrets.{name} }}}}") })
            .collect();
        payload.secrets = secrets;
    }
    Ok(payload)
}

/// A file the job's steps mount, for that job's token only.
async fn mount_file(State(state): State<SharedState>, Path((job_id, file_id)): Path<(i64, i64)>, headers: HeaderMap) -> ApiResult<Response> {
    let (job, _) = authorize_report(&state, &headers, job_id).await?;
    let belongs = state.store.list_mount_files(job.batch_spec_id).await?.iter().any(|file| file.id.0 == file_id);
    if !belongs {
        return Err(ApiError::not_found(format!("job {job_id} has no mount file {file_id}")));
    }
    let content = state.store.get_mount_file_content(flotilla_store::MountFileId(file_id)).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], content).into_response())
}

/// The bare `env` names of the steps: the secrets a job needs.
pub fn outer_variable_names(steps: &[flotilla_spec::Step]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in steps.iter().flat_map(flotilla_spec::Step::outer_variable_names) {
        if !names.iter().any(|known| known == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// Records an executor at most every few seconds from dequeues (heartbeats always record):
/// a write per dequeue would serialise every dequeue behind it on SQLite.
async fn record_executor_if_stale(state: &SharedState, executor: &flotilla_wire::ExecutorDescription) -> ApiResult<()> {
    let now = Clock::now_ms();
    let stale = {
        let mut seen = state.executors_seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let last = seen.get(&executor.name).copied().unwrap_or(i64::MIN);
        if now.saturating_sub(last) >= 5_000 {
            seen.insert(executor.name.clone(), now);
            true
        } else {
            false
        }
    };
    if stale { record_executor(state, executor).await } else { Ok(()) }
}

async fn record_executor(state: &SharedState, executor: &flotilla_wire::ExecutorDescription) -> ApiResult<()> {
    let info = ExecutorInfo {
        name: executor.name.clone(),
        hostname: executor.hostname.clone(),
        version: executor.version.clone(),
        labels: serde_json::to_value(&executor.labels).unwrap_or_default(),
        resources: serde_json::json!({"cpus": executor.cpus, "memoryBytes": executor.memory_bytes, "runtime": executor.runtime}),
        os: executor.os.clone(),
        architecture: executor.architecture.clone(),
    };
    state.store.upsert_executor(&info, Clock::now_ms()).await?;
    Ok(())
}

async fn heartbeat(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<HeartbeatRequest>) -> ApiResult<Json<HeartbeatResponse>> {
    authorize_executor(&state, &headers).await?;
    record_executor(&state, &request.executor).await?;
    let ids: Vec<JobId> = request.job_ids.iter().copied().map(JobId).collect();
    let outcome = state.store.heartbeat(&request.executor.name, &ids, Clock::now_ms()).await?;
    Ok(Json(HeartbeatResponse {
        known_ids: outcome.known.iter().map(|id| id.0).collect(),
        cancel_ids: outcome.cancel.iter().map(|id| id.0).collect(),
    }))
}

async fn append_log(
    State(state): State<SharedState>,
    Path(job_id): Path<i64>,
    headers: HeaderMap,
    Json(entry): Json<LogEntryStart>,
) -> ApiResult<Json<LogEntryCreated>> {
    let (job, executor) = authorize_report(&state, &headers, job_id).await?;
    let redactor = state.job_redactors.for_job(&state, &job).await?;
    let index = state
        .store
        .append_log_entry(
            JobId(job_id),
            &executor,
            &NewLogEntry {
                key: redactor.redact(&entry.key),
                command: entry.command.iter().map(|part| redactor.redact(part)).collect(),
                started_at: entry.started_at_ms,
                exit_code: entry.exit_code.map(i64::from),
                duration_ms: entry.duration_ms,
                output: redactor.redact(&entry.output),
            },
        )
        .await?;
    state.log_updates.changed(JobId(job_id));
    Ok(Json(LogEntryCreated { index }))
}

async fn update_log(
    State(state): State<SharedState>,
    Path((job_id, index)): Path<(i64, i64)>,
    headers: HeaderMap,
    Json(update): Json<LogEntryUpdate>,
) -> ApiResult<StatusCode> {
    let (job, executor) = authorize_report(&state, &headers, job_id).await?;
    let output = state.job_redactors.for_job(&state, &job).await?.redact(&update.output);
    state
        .store
        .update_log_entry(JobId(job_id), &executor, index, &output, update.exit_code.map(i64::from), update.duration_ms)
        .await?;
    state.log_updates.changed(JobId(job_id));
    Ok(StatusCode::NO_CONTENT)
}

async fn complete(
    State(state): State<SharedState>,
    Path(job_id): Path<i64>,
    headers: HeaderMap,
    Json(mut result): Json<JobResult>,
) -> ApiResult<StatusCode> {
    let (job, executor) = authorize_report(&state, &headers, job_id).await?;
    let _announce = AnnounceOnDrop(&state, job.id);
    // The executor redacted already; check again, and refuse a diff that holds a secret.
    let redactor = state.job_redactors.for_job(&state, &job).await?;
    if let Err(message) = redactor.redact_result(&mut result) {
        crate::changeset_specs::store_cache_entries(&state, &job, &result.cache_entries).await?;
        tracing::warn!(job.id = job.id.0, "a job's diff holds the value of one of its secrets; the workspace fails");
        state.store.fail_job(job.id, &executor, &message, Clock::now_ms()).await?;
        forget_job(&state, job.id);
        return Ok(StatusCode::NO_CONTENT);
    }
    // Build the changeset specs before the job is marked complete: if the result cannot
    // become changeset specs (a template fails, two specs share a branch), the workspace
    // fails with that message instead.
    let built = crate::changeset_specs::build_for_job(&state, &job, &result).await;
    let now = Clock::now_ms();
    let specs = match built {
        Ok(specs) => specs,
        Err(message) => {
            state.store.fail_job(job.id, &executor, &message, now).await?;
            forget_job(&state, job.id);
            return Ok(StatusCode::NO_CONTENT);
        }
    };
    let result_json = serde_json::to_value(&result).map_err(|error| ApiError::bad_request(format!("unreadable result: {error}")))?;
    // The changeset specs are stored first (replacing any of an earlier report), then the job
    // completes: a crash in between leaves a running job that is reported again or requeued,
    // never a completed workspace whose changeset specs were lost.
    if !crate::changeset_specs::store_for_job(&state, &job, &executor, &result, &specs).await? {
        return Err(ApiError::conflict("the job was already finished or given to another executor"));
    }
    match state.store.complete_job(job.id, &executor, &result_json, now).await? {
        CompletionOutcome::Applied { .. } => {
            forget_job(&state, job.id);
            state.job_durations.observe_job("completed", job.started_at);
            Ok(StatusCode::NO_CONTENT)
        }
        CompletionOutcome::Ignored { .. } => Err(ApiError::conflict("the job was already finished or given to another executor")),
    }
}

async fn fail(
    State(state): State<SharedState>,
    Path(job_id): Path<i64>,
    headers: HeaderMap,
    Json(mut failure): Json<JobFailure>,
) -> ApiResult<StatusCode> {
    let (job, executor) = authorize_report(&state, &headers, job_id).await?;
    let _announce = AnnounceOnDrop(&state, job.id);
    state.job_redactors.for_job(&state, &job).await?.redact_failure(&mut failure);
    crate::changeset_specs::store_cache_entries(&state, &job, &failure.cache_entries).await?;
    let message = if failure.infrastructure { format!("infrastructure failure: {}", failure.message) } else { failure.message };
    if failure.infrastructure {
        // Fetch, runtime or executor trouble is retried on another attempt (the step cache
        // makes it resume after the last finished step); a step's own failure is final.
        let outcome = state
            .store
            .requeue_after_infrastructure_failure(job.id, &executor, &message, INFRASTRUCTURE_ATTEMPTS, Clock::now_ms())
            .await?;
        if matches!(outcome, CompletionOutcome::Applied { .. }) {
            forget_job(&state, job.id);
            tracing::warn!(job.id = job.id.0, executor.name = %executor, error = %message, "job requeued after an infrastructure failure");
            state.jobs_were_queued();
            return Ok(StatusCode::NO_CONTENT);
        }
    }
    let message = if failure.infrastructure && failure_is_final_after_retries(&job) { format!("{message} (after {INFRASTRUCTURE_ATTEMPTS} attempts)") } else { message };
    match state.store.fail_job(job.id, &executor, &message, Clock::now_ms()).await? {
        CompletionOutcome::Applied { .. } => {
            forget_job(&state, job.id);
            state.job_durations.observe_job("failed", job.started_at);
            Ok(StatusCode::NO_CONTENT)
        }
        CompletionOutcome::Ignored { .. } => Err(ApiError::conflict("the job was already finished or given to another executor")),
    }
}

/// Forgets what this server remembered of a job that ended or went back to the queue.
fn forget_job(state: &SharedState, job: JobId) {
    state.dequeue_caches.forget_job(job);
    state.job_redactors.forget(job);
}

/// Tells live log streams that a job changed when a report finishes, however it returns.
struct AnnounceOnDrop<'a>(&'a SharedState, JobId);

impl Drop for AnnounceOnDrop<'_> {
    fn drop(&mut self) {
        self.0.log_updates.changed(self.1);
    }
}

/// Attempts a job gets when its failures are the infrastructure's, not its steps'.
const INFRASTRUCTURE_ATTEMPTS: i64 = 3;

fn failure_is_final_after_retries(job: &ExecutionJob) -> bool {
    job.num_failures + 1 >= INFRASTRUCTURE_ATTEMPTS
}

/// Splits `/.executors/git/<repository>/<suffix>` and checks the job token covers it.
async fn git_repository(state: &SharedState, headers: &HeaderMap, path: &str, suffix: &str) -> ApiResult<std::path::PathBuf> {
    let name = path
        .strip_suffix(suffix)
        .map(|name| name.trim_end_matches('/'))
        .ok_or_else(|| ApiError::not_found("unknown git route; executors fetch with git's smart HTTP protocol"))?;
    let grant = authorize_job(state, headers).await?;
    let repository = state
        .store
        .get_repository_by_name(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("unknown repository {name}")))?;
    if repository.id != grant.repository_id {
        return Err(ApiError::forbidden("this job token only fetches its own job's repository"));
    }
    Ok(crate::mirrors::mirror_path(&state.config, repository.id))
}

async fn git_get(State(state): State<SharedState>, Path(path): Path<String>, headers: HeaderMap) -> ApiResult<Response> {
    let mirror = git_repository(&state, &headers, &path, "info/refs").await?;
    let protocol = headers.get("git-protocol").and_then(|value| value.to_str().ok());
    let body = flotilla_git::advertise_upload_pack(&mirror, protocol)
        .await
        .map_err(|error| ApiError::internal(format!("serving {path}: {error}")))?;
    Ok(([(header::CONTENT_TYPE, flotilla_git::ADVERTISEMENT_CONTENT_TYPE), (header::CACHE_CONTROL, "no-cache")], body).into_response())
}

async fn git_post(State(state): State<SharedState>, Path(path): Path<String>, headers: HeaderMap, body: Body) -> ApiResult<Response> {
    let mirror = git_repository(&state, &headers, &path, "git-upload-pack").await?;
    let protocol = headers.get("git-protocol").and_then(|value| value.to_str().ok()).map(str::to_owned);
    let gzipped = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()) == Some("gzip");
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let response = if gzipped {
        let decoder = async_compression::tokio::bufread::GzipDecoder::new(reader);
        flotilla_git::upload_pack(&mirror, decoder, protocol.as_deref()).await
    } else {
        flotilla_git::upload_pack(&mirror, reader, protocol.as_deref()).await
    }
    .map_err(|error| ApiError::internal(format!("serving {path}: {error}")))?;
    let body = Body::from_stream(tokio_util::io::ReaderStream::new(response));
    Ok(([(header::CONTENT_TYPE, flotilla_git::RESULT_CONTENT_TYPE), (header::CACHE_CONTROL, "no-cache")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_keys_need_every_label() {
        let labels = BTreeMap::from([("gpu".to_owned(), "true".to_owned()), ("size".to_owned(), "large".to_owned())]);
        assert!(routing_key_satisfied("", &labels));
        assert!(routing_key_satisfied("gpu=true", &labels));
        assert!(routing_key_satisfied("gpu=true,size=large", &labels));
        assert!(!routing_key_satisfied("gpu=false", &labels));
        assert!(!routing_key_satisfied("arch=arm64", &labels));
    }
}
