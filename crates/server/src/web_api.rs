//! The routes the web interface needs beyond the CLI's: who am I, batch changes and batch
//! specs listed per namespace, one batch change, validation as you type (diagnostics with
//! line and column), one workspace with its steps, executors, and turning an access token
//! into a session cookie (so `EventSource`, which cannot send headers, is signed in too).
//!
//! Everything here is an ordinary API route with the same authentication and permission rules
//! as the rest of `/api/v1` (see [`crate::access`]); the browser gets nothing the CLI could not.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_store::{AuthenticatedToken, BatchChange, BatchChangeId, BatchSpecId, Clock, Namespace, OrgRole, TokenScope, WorkspaceId};
use flotilla_wire::api::ChangesetStatistics;
use serde::{Deserialize, Serialize};

use crate::SharedState;
use crate::access::{RepositoryVisibility, is_site_admin, require_site_admin};
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::secrets_crypto::{TokenKind, generate_token, hash_token};

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/v1/me", get(me))
        .route("/api/v1/batch-changes", get(list_batch_changes))
        .route("/api/v1/batch-changes/{name}", get(get_batch_change))
        .route("/api/v1/batch-specs", get(list_batch_specs))
        .route("/api/v1/batch-specs/validate", post(validate))
        .route("/api/v1/workspaces/{id}", get(get_workspace))
        .route("/api/v1/executors", get(list_executors))
        .route("/api/v1/sessions/token", post(session_from_token))
        .with_state(state)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Me {
    username: String,
    display_name: String,
    /// True when this session acts as a site admin (a site admin's user-scoped token does not).
    site_admin: bool,
    /// The namespaces the caller can create batch changes in: their own first, then their orgs.
    namespaces: Vec<NamespaceInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct NamespaceInfo {
    name: String,
    /// `user` or `org`.
    kind: &'static str,
    /// For orgs: `admin` or `member`.
    role: Option<&'static str>,
}

async fn me(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Me>> {
    let caller = authenticate(&state, &headers).await?;
    let mut namespaces = vec![NamespaceInfo { name: caller.user.username.clone(), kind: "user", role: None }];
    for membership in state.store.list_user_orgs(caller.user.id).await? {
        let org = state.store.get_org(membership.org_id).await?;
        let role = if membership.role == OrgRole::Admin { "admin" } else { "member" };
        namespaces.push(NamespaceInfo { name: org.name, kind: "org", role: Some(role) });
    }
    Ok(Json(Me { site_admin: is_site_admin(&caller), username: caller.user.username, display_name: caller.user.display_name, namespaces }))
}

#[derive(Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
}

/// The namespace a query names: a user or an org, the caller's own by default. Batch changes
/// and batch specs are readable by every signed-in user (as in Sourcegraph), so any existing
/// namespace may be listed.
async fn namespace_named(state: &SharedState, caller: &AuthenticatedToken, name: Option<&str>) -> ApiResult<(Namespace, String)> {
    let Some(name) = name.filter(|name| !name.is_empty() && *name != caller.user.username) else {
        return Ok((Namespace::User(caller.user.id), caller.user.username.clone()));
    };
    if let Some(org) = state.store.get_org_by_name(name).await? {
        return Ok((Namespace::Org(org.id), org.name));
    }
    match state.store.get_user_by_username(name).await? {
        Some(user) => Ok((Namespace::User(user.id), user.username)),
        None => Err(ApiError::not_found(format!("no user or organisation named {name}"))),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchChangeSummary {
    name: String,
    namespace: String,
    description: String,
    /// `open` or `closed`.
    state: &'static str,
    /// The public id of the batch spec last applied.
    batch_spec_id: Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    last_applied_at_ms: Option<i64>,
    closed_at_ms: Option<i64>,
    changesets: ChangesetStatistics,
}

async fn summary(state: &SharedState, batch_change: BatchChange, namespace: &str, rand_ids: &mut HashMap<BatchSpecId, String>) -> ApiResult<BatchChangeSummary> {
    let counts = state.store.changeset_state_counts(batch_change.id).await?;
    let batch_spec_id = match batch_change.batch_spec_id {
        Some(id) => match rand_ids.get(&id) {
            Some(rand_id) => Some(rand_id.clone()),
            None => {
                let rand_id = state.store.get_batch_spec(id).await?.rand_id;
                rand_ids.insert(id, rand_id.clone());
                Some(rand_id)
            }
        },
        None => None,
    };
    Ok(BatchChangeSummary {
        name: batch_change.name,
        namespace: namespace.to_owned(),
        description: batch_change.description,
        state: if batch_change.closed_at.is_some() { "closed" } else { "open" },
        batch_spec_id,
        created_at_ms: batch_change.created_at,
        updated_at_ms: batch_change.updated_at,
        last_applied_at_ms: batch_change.last_applied_at,
        closed_at_ms: batch_change.closed_at,
        changesets: crate::statistics::changeset_statistics(&counts),
    })
}

#[derive(Deserialize)]
struct BatchChangePage {
    namespace: Option<String>,
    /// `open`, `closed` or absent for both.
    state: Option<String>,
    after: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchChangeList {
    batch_changes: Vec<BatchChangeSummary>,
    /// Pass as `after` for the next page; absent on the last.
    next: Option<i64>,
}

/// A namespace's batch changes, oldest first, `limit` (default 50) at a time.
async fn list_batch_changes(State(state): State<SharedState>, headers: HeaderMap, Query(page): Query<BatchChangePage>) -> ApiResult<Json<BatchChangeList>> {
    let caller = authenticate(&state, &headers).await?;
    let (namespace, namespace_name) = namespace_named(&state, &caller, page.namespace.as_deref()).await?;
    let wanted = match page.state.as_deref() {
        None | Some("" | "all") => None,
        Some(state @ ("open" | "closed")) => Some(state == "open"),
        Some(other) => return Err(ApiError::bad_request(format!("unknown state {other:?}; use open, closed or all"))),
    };
    let limit = page.limit.unwrap_or(50).clamp(1, 500);
    let rows = state.store.list_batch_changes(namespace, page.after.map(BatchChangeId), limit).await?;
    // Paging follows the unfiltered rows, so `next` stays right when a page loses some to the
    // state filter.
    let next = (rows.len() as i64 == limit).then(|| rows.last().map(|row| row.id.0)).flatten();
    let mut rand_ids = HashMap::new();
    let mut batch_changes = Vec::with_capacity(rows.len());
    for row in rows.into_iter().filter(|row| wanted.is_none_or(|open| open == row.closed_at.is_none())) {
        batch_changes.push(summary(&state, row, &namespace_name, &mut rand_ids).await?);
    }
    Ok(Json(BatchChangeList { batch_changes, next }))
}

async fn get_batch_change(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>, Query(query): Query<NamespaceQuery>) -> ApiResult<Json<BatchChangeSummary>> {
    let caller = authenticate(&state, &headers).await?;
    let (_, namespace_name) = namespace_named(&state, &caller, query.namespace.as_deref()).await?;
    let batch_change = crate::apply::find_batch_change(&state, &caller, &name, query.namespace.as_deref()).await?;
    Ok(Json(summary(&state, batch_change, &namespace_name, &mut HashMap::new()).await?))
}

#[derive(Deserialize)]
struct BatchSpecPage {
    namespace: Option<String>,
    /// The `next` of the previous page.
    before: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchSpecSummary {
    id: String,
    name: String,
    created_at_ms: i64,
    /// Whether a batch change was applied from it.
    applied: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchSpecList {
    batch_specs: Vec<BatchSpecSummary>,
    next: Option<i64>,
}

/// A namespace's batch specs, newest first: runs that were never applied show up here.
async fn list_batch_specs(State(state): State<SharedState>, headers: HeaderMap, Query(page): Query<BatchSpecPage>) -> ApiResult<Json<BatchSpecList>> {
    let caller = authenticate(&state, &headers).await?;
    let (namespace, _) = namespace_named(&state, &caller, page.namespace.as_deref()).await?;
    let limit = page.limit.unwrap_or(20).clamp(1, 200);
    let rows = state.store.list_batch_specs_by_namespace(namespace, page.before.map(BatchSpecId), limit).await?;
    let next = (rows.len() as i64 == limit).then(|| rows.last().map(|row| row.id.0)).flatten();
    Ok(Json(BatchSpecList {
        batch_specs: rows
            .into_iter()
            .map(|row| BatchSpecSummary { applied: row.batch_change_id.is_some(), id: row.rand_id, name: row.name, created_at_ms: row.created_at })
            .collect(),
        next,
    }))
}

#[derive(Deserialize)]
struct ValidateRequest {
    spec: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ValidateResponse {
    valid: bool,
    /// Errors and warnings, each with its 1-based line and column.
    diagnostics: Vec<flotilla_spec::Diagnostic>,
    /// The spec's name and number of steps, when it is valid.
    name: Option<String>,
    steps: Option<usize>,
}

/// Validates a spec as `flotilla batch validate` does, answering diagnostics as data (200 even
/// for an invalid spec: the editor shows them at their lines).
async fn validate(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<ValidateRequest>) -> ApiResult<Json<ValidateResponse>> {
    authenticate(&state, &headers).await?;
    Ok(Json(match flotilla_spec::parse_batch_spec(&request.spec) {
        Ok(validated) => {
            let mut diagnostics = validated.warnings;
            if let Err(message) = crate::admission::check_images(&validated.spec, &state.config.allowed_images) {
                diagnostics.push(flotilla_spec::Diagnostic {
                    severity: flotilla_spec::Severity::Error,
                    path: "steps".into(),
                    message,
                    line: 1,
                    column: 1,
                    width: 1,
                });
            }
            let valid = diagnostics.iter().all(|diagnostic| diagnostic.severity != flotilla_spec::Severity::Error);
            ValidateResponse { valid, diagnostics, name: Some(validated.spec.name.clone()), steps: Some(validated.spec.steps.len()) }
        }
        Err(diagnostics) => ValidateResponse { valid: false, diagnostics, name: None, steps: None },
    }))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WorkspaceDetail {
    id: i64,
    batch_spec_id: String,
    repository: String,
    branch: String,
    commit: String,
    path: String,
    /// queued, processing, canceling, completed, failed, canceled, cached or skipped.
    state: String,
    job_id: Option<i64>,
    executor: Option<String>,
    failure_message: Option<String>,
    queued_at_ms: Option<i64>,
    started_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    steps: Vec<StepDetail>,
    /// The workspace's final diff (what its changeset specs carry), once it finished.
    diff: Option<String>,
    /// Log entries that are not steps (`setup.fetch`...), with their output.
    setup: Vec<flotilla_wire::api::LogEntryInfo>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StepDetail {
    index: usize,
    run: String,
    container: String,
    /// The step's `if:` as written; empty when it has none.
    condition: String,
    /// not-started, running, completed, failed, skipped or cached.
    state: &'static str,
    exit_code: Option<i64>,
    duration_ms: Option<i64>,
    started_at_ms: Option<i64>,
    /// The step's output as logged (stdout and stderr, redacted).
    output: String,
    /// The cumulative diff after this step, once it finished.
    diff: Option<String>,
    outputs: serde_json::Map<String, serde_json::Value>,
}

/// One workspace with each step: its command, container, exit code, duration, output, diff
/// and outputs. A workspace on a repository the caller cannot read does not exist for them.
async fn get_workspace(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<WorkspaceDetail>> {
    let caller = authenticate(&state, &headers).await?;
    let not_found = || ApiError::not_found(format!("no workspace {id}"));
    let workspace = state.store.get_workspace(WorkspaceId(id)).await.map_err(|_| not_found())?;
    let mut visibility = RepositoryVisibility::for_caller(&state, &caller).await?;
    if !visibility.can_read_id(&state, workspace.repository_id).await? {
        return Err(not_found());
    }
    let repository = state.store.get_repository(workspace.repository_id).await?;
    let batch_spec = state.store.get_batch_spec(workspace.batch_spec_id).await?;
    let spec: flotilla_spec::BatchSpec =
        serde_json::from_value(batch_spec.parsed_spec.clone()).map_err(|error| ApiError::internal(format!("the stored spec is unreadable: {error}")))?;
    let job = state.store.get_execution_job_for_workspace(workspace.id).await?;
    let entries = match &job {
        Some(job) => state.store.list_log_entries(job.id).await?,
        None => Vec::new(),
    };
    let result: Option<flotilla_wire::JobResult> = job.as_ref().and_then(|job| job.result.clone()).and_then(|value| serde_json::from_value(value).ok());
    let skipped_steps: Vec<usize> = job
        .as_ref()
        .and_then(|job| serde_json::from_value::<flotilla_wire::Job>(job.payload.clone()).ok())
        .map(|payload| payload.skipped_steps)
        .unwrap_or_default();
    let job_finished = job.as_ref().is_some_and(|job| job.state.is_terminal());
    let mut steps = Vec::with_capacity(spec.steps.len());
    for (index, step) in spec.steps.iter().enumerate() {
        // The latest attempt's entry: a job requeued after an infrastructure failure logs its
        // steps again after the earlier attempt's entries.
        let entry = entries.iter().rev().find(|entry| entry.key == format!("step.{index}"));
        let from_result = result.as_ref().and_then(|result| result.cache_entries.iter().find(|cached| cached.value.step_index == index).map(|cached| &cached.value));
        let state_name = match (entry, from_result) {
            (Some(entry), _) if entry.exit_code.is_some_and(|code| code != 0) => "failed",
            (Some(entry), _) if entry.exit_code.is_some() => "completed",
            (Some(_), _) if job_finished => "failed",
            (Some(_), _) => "running",
            (None, Some(cached)) if cached.skipped => "skipped",
            (None, Some(_)) => "cached",
            (None, None) if skipped_steps.contains(&index) => "skipped",
            (None, None) => "not-started",
        };
        steps.push(StepDetail {
            index,
            run: step.run.clone(),
            container: step.container.clone(),
            condition: step.if_condition.clone(),
            state: state_name,
            exit_code: entry.and_then(|entry| entry.exit_code),
            duration_ms: entry.and_then(|entry| entry.duration_ms),
            started_at_ms: entry.map(|entry| entry.started_at),
            output: entry.map(|entry| entry.output.clone()).unwrap_or_default(),
            diff: from_result.map(|result| String::from_utf8_lossy(&result.diff()).into_owned()),
            outputs: from_result.map(|result| result.outputs.clone()).unwrap_or_default(),
        });
    }
    let setup = entries
        .iter()
        .filter(|entry| !entry.key.starts_with("step."))
        .map(|entry| flotilla_wire::api::LogEntryInfo {
            index: entry.entry_index,
            key: entry.key.clone(),
            command: serde_json::from_value(entry.command.clone()).unwrap_or_default(),
            started_at_ms: entry.started_at,
            exit_code: entry.exit_code,
            duration_ms: entry.duration_ms,
            output: entry.output.clone(),
        })
        .collect();
    let state_name = match &job {
        Some(job) if job.cancel && job.state == flotilla_store::JobState::Processing => "canceling".to_owned(),
        Some(job) => job.state.as_str().to_owned(),
        None if workspace.cached_result_found => "cached".to_owned(),
        None => "skipped".to_owned(),
    };
    Ok(Json(WorkspaceDetail {
        id: workspace.id.0,
        batch_spec_id: batch_spec.rand_id,
        repository: repository.name,
        branch: workspace.branch,
        commit: workspace.commit,
        path: workspace.path,
        state: state_name,
        job_id: job.as_ref().map(|job| job.id.0),
        executor: job.as_ref().and_then(|job| job.executor_name.clone()),
        failure_message: job.as_ref().and_then(|job| job.failure_message.clone()),
        queued_at_ms: job.as_ref().map(|job| job.queued_at),
        started_at_ms: job.as_ref().and_then(|job| job.started_at),
        finished_at_ms: job.as_ref().and_then(|job| job.finished_at),
        steps,
        diff: result.as_ref().map(|result| String::from_utf8_lossy(&result.final_result.diff()).into_owned()),
        setup,
    }))
}

/// An executor counts as alive when it was seen this recently (heartbeats come every few seconds).
const ALIVE_WITHIN_MS: i64 = 60_000;
/// Executors not seen for this long are no longer listed.
const LISTED_WITHIN_MS: i64 = 7 * 24 * 60 * 60 * 1000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ExecutorSummary {
    name: String,
    hostname: String,
    version: String,
    os: String,
    architecture: String,
    labels: serde_json::Value,
    resources: serde_json::Value,
    alive: bool,
    first_seen_at_ms: i64,
    last_seen_at_ms: i64,
    /// Jobs this executor is processing now.
    running_jobs: i64,
}

/// The executors seen in the last week (site admins only, as in Sourcegraph).
async fn list_executors(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Vec<ExecutorSummary>>> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    let now = Clock::now_ms();
    let records = state.store.list_executors(now - LISTED_WITHIN_MS).await?;
    let running = state.store.processing_jobs_by_executor().await?;
    Ok(Json(
        records
            .into_iter()
            .map(|record| ExecutorSummary {
                alive: now - record.last_seen_at <= ALIVE_WITHIN_MS,
                running_jobs: running.get(&record.name).copied().unwrap_or(0),
                name: record.name,
                hostname: record.hostname,
                version: record.version,
                os: record.os,
                architecture: record.architecture,
                labels: record.labels,
                resources: record.resources,
                first_seen_at_ms: record.first_seen_at,
                last_seen_at_ms: record.last_seen_at,
            })
            .collect(),
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenSession {
    username: String,
    scope: String,
    expires_at_ms: i64,
}

/// Signs the browser in with an access token: a new web session (as password sign-in makes)
/// for the token's user and scope, set as the HttpOnly session cookie. The access token itself
/// never becomes the cookie, so signing out (which revokes the session) leaves it working.
async fn session_from_token(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Response> {
    if headers.get(header::AUTHORIZATION).is_none() {
        return Err(ApiError::unauthorized("send the access token as `Authorization: token <access token>`"));
    }
    let caller = authenticate(&state, &headers).await?;
    let token = generate_token(TokenKind::User);
    let now = Clock::now_ms();
    let expires_at_ms = now + crate::accounts::SESSION_LIFETIME_MS;
    let scope = if caller.scope == TokenScope::SiteAdmin && caller.user.site_admin { TokenScope::SiteAdmin } else { TokenScope::User };
    state.store.create_expiring_access_token(caller.user.id, &hash_token(&token), scope, "web session (from a token)", Some(expires_at_ms), now).await?;
    crate::audit::record(&state, caller.user.id, "session.create", "user", &caller.user.username, serde_json::json!({ "from": "token" })).await?;
    let secure = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()) == Some("https");
    let cookie = format!(
        "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        crate::accounts::SESSION_COOKIE,
        crate::accounts::SESSION_LIFETIME_MS / 1000,
        if secure { "; Secure" } else { "" }
    );
    let mut response = (StatusCode::CREATED, Json(TokenSession { username: caller.user.username, scope: scope.as_str().to_owned(), expires_at_ms })).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|error| ApiError::internal(error.to_string()))?);
    Ok(response)
}

