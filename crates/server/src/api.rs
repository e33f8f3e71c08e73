//! The user API (`/api/v1/...`): code hosts and repositories, batch specs, workspaces, logs,
//! changeset specs, and `/metrics`.
//!
//! Every route but `/metrics`, `/healthz` and sign-in needs an access token
//! (`Authorization: token <t>`) or a web session cookie. Executor and job tokens are refused
//! here: they only reach the executor API. Who may read and change what is decided in
//! [`crate::access`]: any signed-in user reads batch specs, only their administrators change
//! them, and repositories behind a restricted code host are invisible to everyone else.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use flotilla_store::{
    AuthenticatedToken, Clock, CodeHostId, CodeHostKind, JobId, JobState, Namespace, NewBatchSpec, NewCodeHost,
    ResolutionState, WorkspaceId, WorkspaceJobFilter,
};
use flotilla_wire::api::{
    BatchSpecStatus, ChangesetSpecInfo, ChangesetSpecPage, CodeHostInfo, CreateBatchSpec, CreateCodeHost, JobCounts, LogEntryInfo, RepositoryInfo,
    SyncRequest, WorkspaceInfo, WorkspacePage,
};
use serde::Deserialize;

use crate::SharedState;
use crate::access::{CodeHostAccess, RepositoryVisibility, is_site_admin, require_can_administer, require_site_admin};
use crate::error::{ApiError, ApiResult};
use crate::secrets_crypto::hash_token;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(crate::metrics::metrics))
        .route("/api/v1/code-hosts", get(list_code_hosts).post(create_code_host))
        .route("/api/v1/code-hosts/{id}/access", axum::routing::put(restrict_code_host))
        .route("/api/v1/repositories", get(list_repositories))
        .route("/api/v1/repositories/sync", post(sync_repositories))
        .route("/api/v1/batch-specs", post(create_batch_spec))
        .route("/api/v1/batch-specs/resolve", post(resolve_batch_spec))
        .route("/api/v1/batch-specs/{id}", get(get_batch_spec))
        .route("/api/v1/batch-specs/{id}/workspaces", get(list_workspaces))
        .route("/api/v1/batch-specs/{id}/changeset-specs", get(list_changeset_specs))
        .route("/api/v1/batch-specs/{id}/cancel", post(cancel_batch_spec))
        .route("/api/v1/batch-specs/{id}/retry", post(retry_batch_spec))
        .route("/api/v1/jobs/{id}/logs", get(job_logs))
        // Room for the largest accepted spec, JSON-escaped, so an oversized spec gets the
        // server's own message (with the limit) rather than a bare "length limit exceeded".
        // Mounted files travel base64-encoded in the same request (4/3 of their size).
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.max_spec_bytes * 2 + state.config.max_mount_total_bytes / 3 * 4 + (1 << 20),
        ))
        .with_state(state)
}

/// The caller, from their access token (`Authorization` header) or, when there is no such
/// header, the web session cookie.
pub(crate) async fn authenticate(state: &SharedState, headers: &HeaderMap) -> ApiResult<AuthenticatedToken> {
    let token = match headers.get(header::AUTHORIZATION) {
        Some(value) => {
            let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header must be `token <access token>`"))?;
            value
                .strip_prefix("token ")
                .or_else(|| value.strip_prefix("Bearer "))
                .ok_or_else(|| ApiError::unauthorized("the Authorization header must be `token <access token>`"))?
                .trim()
                .to_owned()
        }
        None => session_cookie(headers).ok_or_else(|| {
            ApiError::unauthorized("sign in: send `Authorization: token <access token>` (set FLOTILLA_TOKEN for the CLI) or sign in with POST /api/v1/sessions")
        })?,
    };
    state
        .store
        .lookup_access_token(&hash_token(&token), Clock::now_ms())
        .await?
        .ok_or_else(|| ApiError::unauthorized("unknown, expired or revoked access token; create a new one with `flotilla tokens create` or sign in again"))
}

/// The value of the `flotilla_session` cookie, if the request has one.
fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == crate::accounts::SESSION_COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The code hosts whose repositories the caller may read.
async fn list_code_hosts(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Vec<CodeHostInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let visibility = RepositoryVisibility::for_caller(&state, &caller).await?;
    let hosts = state.store.list_code_hosts().await?;
    let mine: std::collections::HashSet<CodeHostId> =
        state.store.list_user_code_host_credentials(caller.user.id).await?.into_iter().map(|credential| credential.code_host_id).collect();
    Ok(Json(
        hosts
            .into_iter()
            .filter(|host| visibility.can_read_host(host.id))
            .map(|host| CodeHostInfo {
                id: host.id.0,
                kind: host.kind.as_str().to_owned(),
                has_credential: host.has_credential(),
                has_my_credential: mine.contains(&host.id),
                name: host.name,
                url: host.url,
            })
            .collect(),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeHostAccessRequest {
    #[serde(default)]
    users: Vec<String>,
    #[serde(default)]
    orgs: Vec<String>,
}

#[derive(serde::Serialize)]
struct CodeHostAccessInfo {
    name: String,
    /// True when everyone signed in may read the host's repositories.
    everyone: bool,
    users: Vec<String>,
    orgs: Vec<String>,
}

/// Restricts who may read a code host's repositories; both lists empty opens it to everyone.
async fn restrict_code_host(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>, Json(request): Json<CodeHostAccessRequest>) -> ApiResult<Json<CodeHostAccessInfo>> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    let host = state.store.get_code_host(CodeHostId(id)).await.map_err(|_| ApiError::not_found(format!("no code host {id}; see `flotilla codehost list`")))?;
    let mut access = CodeHostAccess::default();
    for name in &request.users {
        let user = state.store.get_user_by_username(name).await?.ok_or_else(|| ApiError::bad_request(format!("no user named {name}; see `flotilla users list`")))?;
        access.users.push(user.id);
    }
    for name in &request.orgs {
        let org = state.store.get_org_by_name(name).await?.ok_or_else(|| ApiError::bad_request(format!("no organization named {name}; see `flotilla orgs list`")))?;
        access.orgs.push(org.id);
    }
    let everyone = access.users.is_empty() && access.orgs.is_empty();
    let document = if everyone { None } else { Some(serde_json::to_value(&access).map_err(|error| ApiError::internal(error.to_string()))?) };
    state.store.set_code_host_restriction(host.id, document.as_ref()).await?;
    crate::audit::record(&state, caller.user.id, "code_host.restrict", "code_host", &host.name, serde_json::json!({ "users": request.users, "orgs": request.orgs })).await?;
    Ok(Json(CodeHostAccessInfo { name: host.name, everyone, users: request.users, orgs: request.orgs }))
}

async fn create_code_host(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<CreateCodeHost>) -> ApiResult<(StatusCode, Json<CodeHostInfo>)> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    if request.name.is_empty() || request.name.contains(char::is_whitespace) || request.name.starts_with('/') {
        return Err(ApiError::bad_request("a code host name is one word without spaces, e.g. `local` or `github.com`"));
    }
    let (kind, url, config) = match request.kind.as_str() {
        "git" | "git-directory" => {
            let path = request.path.clone().ok_or_else(|| ApiError::bad_request("a git-directory code host needs a path"))?;
            let absolute = std::path::Path::new(&path);
            if !absolute.is_absolute() || !absolute.is_dir() {
                return Err(ApiError::bad_request(format!("{path} is not an existing absolute folder on the server")));
            }
            (CodeHostKind::GitDirectory, path.clone(), serde_json::json!({ "path": path }))
        }
        "git-urls" => {
            if request.urls.is_empty() {
                return Err(ApiError::bad_request("a git-urls code host needs at least one URL"));
            }
            (CodeHostKind::GitUrls, String::new(), serde_json::json!({ "urls": request.urls }))
        }
        "github" | "gitlab" | "gitea" | "forgejo" | "bitbucket-server" => {
            // Forgejo speaks Gitea's API: one kind, one adapter.
            let kind = match request.kind.as_str() {
                "github" => CodeHostKind::Github,
                "gitlab" => CodeHostKind::Gitlab,
                "bitbucket-server" => CodeHostKind::BitbucketServer,
                _ => CodeHostKind::Gitea,
            };
            let url = request.url.clone().ok_or_else(|| {
                ApiError::bad_request(
                    "a forge code host needs --api-url, the API's base URL (https://api.github.com, https://HOST/api/v3, https://gitlab.com/api/v4, https://HOST/api/v1 for Gitea and Forgejo, or https://HOST for Bitbucket Server)",
                )
            })?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(ApiError::bad_request(format!("{url} is not an http(s) URL")));
            }
            if request.credential.is_none() {
                return Err(ApiError::bad_request("a forge code host needs a token: pass it on standard input with --token-stdin"));
            }
            let config = match (&request.org, request.repos.is_empty()) {
                (Some(org), true) => serde_json::json!({ "org": org }),
                (None, false) => {
                    if let Some(bad) = request.repos.iter().find(|repo| flotilla_codehost::RepositoryRef::parse(repo).is_none()) {
                        return Err(ApiError::bad_request(format!("{bad} is not owner/name")));
                    }
                    serde_json::json!({ "repos": request.repos })
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "say which repositories to mirror: --org ORG (a GitLab group, a Gitea organization, a Bitbucket project key) or --repos owner/a,owner/b (one of them)",
                    ));
                }
            };
            (kind, url, config)
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "code host kind {other:?} is not supported yet; use git-directory, git-urls, github, gitlab, gitea (forgejo) or bitbucket-server"
            )));
        }
    };
    let credential = match &request.credential {
        Some(_) if kind == CodeHostKind::GitDirectory => {
            return Err(ApiError::bad_request("a git-directory code host reads a folder on the server and needs no credential; leave it out"));
        }
        Some(credential) => {
            crate::code_host_credentials::validate(credential)?;
            Some(crate::code_host_credentials::encrypt(&state.config.secret_key, credential))
        }
        None => None,
    };
    let created = state
        .store
        .create_code_host(
            &NewCodeHost {
                kind,
                name: request.name,
                url,
                config,
                credential_ciphertext: credential.as_ref().map(|credential| credential.ciphertext.clone()),
                credential_nonce: credential.as_ref().map(|credential| credential.nonce.clone()),
                credential_username: credential.and_then(|credential| credential.username),
                restricted_to: None,
            },
            Clock::now_ms(),
        )
        .await?;
    crate::audit::record(
        &state,
        caller.user.id,
        "code_host.create",
        "code_host",
        &created.name,
        serde_json::json!({ "kind": created.kind.as_str(), "credential": created.has_credential() }),
    )
    .await?;
    state.sync_requested.notify_one();
    Ok((
        StatusCode::CREATED,
        Json(CodeHostInfo {
            id: created.id.0,
            kind: created.kind.as_str().to_owned(),
            has_credential: created.has_credential(),
            has_my_credential: false,
            name: created.name,
            url: created.url,
        }),
    ))
}

#[derive(Deserialize)]
struct PageQuery {
    after: Option<String>,
    limit: Option<i64>,
    state: Option<String>,
}

/// The repositories the caller may read, by name, `limit` at a time after `after`.
async fn list_repositories(State(state): State<SharedState>, headers: HeaderMap, Query(page): Query<PageQuery>) -> ApiResult<Json<Vec<RepositoryInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let visibility = RepositoryVisibility::for_caller(&state, &caller).await?;
    let limit = page.limit.unwrap_or(1000).clamp(1, 10_000);
    // Unreadable repositories are skipped, so a page is filled from as many store pages as it
    // takes; a short page still means the end.
    let mut repositories = Vec::new();
    let mut after = page.after.clone();
    loop {
        let batch = state.store.list_repositories(after.as_deref(), limit).await?;
        let exhausted = (batch.len() as i64) < limit;
        after = batch.last().map(|repository| repository.name.clone());
        repositories.extend(batch.into_iter().filter(|repository| visibility.can_read(repository)));
        if exhausted || repositories.len() as i64 >= limit {
            break;
        }
    }
    repositories.truncate(limit as usize);
    Ok(Json(
        repositories
            .into_iter()
            .map(|repository| RepositoryInfo {
                name: repository.name,
                mirror_state: repository.mirror_state.as_str().to_owned(),
                default_branch: repository.default_branch,
                head_commit: repository.head_commit,
                last_synced_at_ms: repository.last_synced_at,
                last_error: repository.last_error,
            })
            .collect(),
    ))
}

async fn sync_repositories(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<SyncRequest>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    match (&request.name, request.wait) {
        (Some(name), _) => {
            let repository = state.store.get_repository_by_name(name).await?.ok_or_else(|| ApiError::not_found(format!("unknown repository {name}; see `flotilla repos list`")))?;
            crate::mirrors::sync_repository(&state, &repository).await;
            Ok(StatusCode::NO_CONTENT)
        }
        (None, true) => {
            crate::mirrors::sync_all(&state).await?;
            Ok(StatusCode::NO_CONTENT)
        }
        (None, false) => {
            state.sync_requested.notify_one();
            Ok(StatusCode::ACCEPTED)
        }
    }
}

async fn create_batch_spec(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<CreateBatchSpec>) -> ApiResult<(StatusCode, Json<BatchSpecStatus>)> {
    let caller = authenticate(&state, &headers).await?;
    if request.spec.len() > state.config.max_spec_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the batch spec is {} bytes; this server accepts at most {}", request.spec.len(), state.config.max_spec_bytes),
        ));
    }
    let validated = flotilla_spec::parse_batch_spec(&request.spec).map_err(|diagnostics| {
        let mut error = ApiError::bad_request(format!(
            "the batch spec is invalid:\n{}",
            flotilla_spec::render_all(&diagnostics, "batch spec", &request.spec)
        ));
        error.details = Some(serde_json::json!({ "diagnostics": diagnostics }));
        error
    })?;
    let namespace = match &request.namespace {
        None => Namespace::User(caller.user.id),
        Some(name) if *name == caller.user.username => Namespace::User(caller.user.id),
        Some(name) => {
            let org = state.store.get_org_by_name(name).await?.ok_or_else(|| ApiError::not_found(format!("no user or organisation named {name}")))?;
            let member = state.store.get_org_role(org.id, caller.user.id).await?.is_some();
            if !member && !is_site_admin(&caller) {
                return Err(ApiError::forbidden(format!("you are not a member of {name}; ask an admin of {name} to add you, or leave out --namespace")));
            }
            Namespace::Org(org.id)
        }
    };
    let spec = &validated.spec;
    crate::admission::check_images(spec, &state.config.allowed_images).map_err(ApiError::bad_request)?;
    let mount_files = crate::admission::mount_files(
        spec,
        &request.mount_files,
        state.config.max_mount_file_bytes,
        state.config.max_mount_total_bytes,
    )
    .map_err(ApiError::bad_request)?;
    let row = state
        .store
        .create_batch_spec_with_mount_files(
            &NewBatchSpec {
                rand_id: crate::changeset_specs::rand_id(),
                namespace,
                creator_user_id: caller.user.id,
                name: spec.name.clone(),
                raw_spec: request.spec.clone(),
                parsed_spec: serde_json::to_value(spec).map_err(|error| ApiError::internal(error.to_string()))?,
                created_from_raw: true,
                allow_unsupported: false,
                allow_ignored: request.allow_ignored,
                no_cache: request.no_cache,
                batch_change_id: None,
            },
            &mount_files,
            Clock::now_ms(),
        )
        .await?;
    crate::audit::record(&state, caller.user.id, "batch_spec.create", "batch_spec", &row.rand_id, serde_json::json!({ "name": row.name })).await?;
    state.resolution_requested.notify_one();
    let status = batch_spec_status(&state, &row).await?;
    Ok((StatusCode::CREATED, Json(status)))
}

/// Resolves a spec's workspaces without storing or running it (`flotilla batch repositories`).
async fn resolve_batch_spec(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<CreateBatchSpec>) -> ApiResult<Json<Vec<crate::resolution::WorkspacePreview>>> {
    let caller = authenticate(&state, &headers).await?;
    let validated = flotilla_spec::parse_batch_spec(&request.spec).map_err(|diagnostics| {
        ApiError::bad_request(format!("the batch spec is invalid:\n{}", flotilla_spec::render_all(&diagnostics, "batch spec", &request.spec)))
    })?;
    let visibility = RepositoryVisibility::for_caller(&state, &caller).await?;
    let workspaces = crate::resolution::preview_workspaces(&state, &validated.spec, &visibility).await.map_err(ApiError::bad_request)?;
    Ok(Json(workspaces))
}

/// Loads a batch spec by its public id. Every signed-in user may read every batch spec (as in
/// Sourcegraph); what it shows of repositories they cannot read is filtered by the callers.
pub(crate) async fn batch_spec_by_id(state: &SharedState, id: &str) -> ApiResult<flotilla_store::BatchSpec> {
    state.store.get_batch_spec_by_rand_id(id).await.map_err(|_| ApiError::not_found(format!("no batch spec {id}; check the id `flotilla batch remote` printed")))
}

pub(crate) async fn batch_spec_status(state: &SharedState, row: &flotilla_store::BatchSpec) -> ApiResult<BatchSpecStatus> {
    let resolution = state.store.get_resolution_job(row.id).await?;
    let counts = state.store.job_counts_by_state(row.id).await?;
    let workspaces = state.store.count_workspaces(row.id).await?;
    let changeset_specs = state.store.count_changeset_specs(row.id).await?;
    let problems = if changeset_specs > 1 {
        state
            .store
            .duplicate_head_refs(row.id)
            .await?
            .into_iter()
            .map(|(repository, head_ref, count)| {
                format!(
                    "{count} changeset specs in {repository} use the same branch: {head_ref} (give each workspace its own branch, e.g. `branch: my-change-${{{{ steps.path }}}}`)"
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let jobs = JobCounts {
        queued: counts.queued,
        processing: counts.processing,
        canceling: counts.canceling,
        completed: counts.completed,
        failed: counts.failed,
        canceled: counts.canceled,
    };
    let resolution_state = resolution.as_ref().map(|job| job.state);
    let state_name = overall_state(resolution_state, &jobs);
    let namespace = match row.namespace()? {
        Namespace::User(user) => state.store.get_user(user).await?.username,
        Namespace::Org(org) => state.store.get_org(org).await?.name,
    };
    Ok(BatchSpecStatus {
        id: row.rand_id.clone(),
        name: row.name.clone(),
        namespace,
        state: state_name.to_owned(),
        resolution_state: resolution_state.map_or("completed", |state| state.as_str()).to_owned(),
        resolution_failure: resolution.and_then(|job| job.failure_message),
        workspaces,
        jobs,
        changeset_specs,
        problems,
    })
}

/// Sourcegraph's computed batch spec state.
fn overall_state(resolution: Option<ResolutionState>, jobs: &JobCounts) -> &'static str {
    match resolution {
        Some(ResolutionState::Queued | ResolutionState::Processing) => return "pending",
        Some(ResolutionState::Failed) => return "failed",
        _ => {}
    }
    let active = jobs.queued + jobs.processing + jobs.canceling;
    if jobs.canceling > 0 {
        "canceling"
    } else if jobs.processing > 0 || (jobs.queued > 0 && jobs.completed + jobs.failed + jobs.canceled > 0) {
        "processing"
    } else if jobs.queued > 0 {
        "queued"
    } else if active == 0 && jobs.canceled > 0 {
        "canceled"
    } else if jobs.failed > 0 {
        "failed"
    } else {
        "completed"
    }
}

async fn get_batch_spec(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<BatchSpecStatus>> {
    authenticate(&state, &headers).await?;
    let row = batch_spec_by_id(&state, &id).await?;
    Ok(Json(batch_spec_status(&state, &row).await?))
}

async fn list_workspaces(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>, Query(page): Query<PageQuery>) -> ApiResult<Json<WorkspacePage>> {
    let caller = authenticate(&state, &headers).await?;
    let row = batch_spec_by_id(&state, &id).await?;
    let filter = match page.state.as_deref() {
        None | Some("") | Some("all") => WorkspaceJobFilter::All,
        Some(name) => WorkspaceJobFilter::JobState(
            JobState::parse(name).ok_or_else(|| ApiError::bad_request(format!("unknown state {name:?}; use queued, processing, completed, failed or canceled")))?,
        ),
    };
    let after = page.after.as_deref().map(str::parse::<i64>).transpose().map_err(|_| ApiError::bad_request("`after` is a workspace id"))?;
    let limit = page.limit.unwrap_or(500).clamp(1, 5000);
    let rows = state.store.list_workspaces_with_jobs(row.id, filter, after.map(WorkspaceId), limit).await?;
    let visibility = RepositoryVisibility::for_caller(&state, &caller).await?;
    let readable = visibility.readable_names(&state, rows.iter().map(|workspace| workspace.repository_id)).await?;
    let mut workspaces = Vec::with_capacity(rows.len());
    for workspace in &rows {
        // Paging follows the unfiltered rows, so `next` stays right when a page loses some.
        let Some(repository_name) = readable.get(&workspace.repository_id) else {
            continue;
        };
        let job = workspace.job.as_ref();
        let state_name = match job {
            Some(job) if job.cancel && job.state == JobState::Processing => "canceling".to_owned(),
            Some(job) => job.state.as_str().to_owned(),
            None if workspace.cached_result_found => "cached".to_owned(),
            None => "skipped".to_owned(),
        };
        workspaces.push(WorkspaceInfo {
            id: workspace.workspace_id.0,
            repository: repository_name.clone(),
            branch: workspace.branch.clone(),
            path: workspace.path.clone(),
            state: state_name,
            job_id: job.map(|job| job.id.0),
            executor: job.and_then(|job| job.executor_name.clone()),
            failure_message: job.and_then(|job| job.failure_message.clone()),
            queued_at_ms: job.map(|job| job.queued_at),
            started_at_ms: job.and_then(|job| job.started_at),
            finished_at_ms: job.and_then(|job| job.finished_at),
        });
    }
    let next = (rows.len() as i64 == limit).then(|| rows.last().map(|workspace| workspace.workspace_id.0)).flatten();
    Ok(Json(WorkspacePage { workspaces, next }))
}

async fn list_changeset_specs(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(page): Query<PageQuery>,
) -> ApiResult<Json<ChangesetSpecPage>> {
    let caller = authenticate(&state, &headers).await?;
    let row = batch_spec_by_id(&state, &id).await?;
    let after = page.after.as_deref().map(str::parse::<i64>).transpose().map_err(|_| ApiError::bad_request("`after` is the `next` of the previous page"))?;
    let limit = page.limit.unwrap_or(500).clamp(1, 5000);
    let specs = state.store.list_changeset_specs(row.id, after.map(flotilla_store::ChangesetSpecId), limit).await?;
    // Paging follows the unfiltered rows, so `next` stays right when a page loses some.
    let next = (specs.len() as i64 == limit).then(|| specs.last().map(|spec| spec.id.0)).flatten();
    let visibility = RepositoryVisibility::for_caller(&state, &caller).await?;
    let readable = visibility.readable_names(&state, specs.iter().map(|spec| spec.repository_id)).await?;
    let mut changeset_specs = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some(repository) = readable.get(&spec.repository_id) else {
            continue;
        };
        changeset_specs.push(ChangesetSpecInfo {
            id: spec.rand_id,
            repository: repository.clone(),
            base_ref: spec.base_ref.unwrap_or_default(),
            head_ref: spec.head_ref.unwrap_or_default(),
            title: spec.title.unwrap_or_default(),
            body: spec.body.unwrap_or_default(),
            commit_message: spec.commit_message.unwrap_or_default(),
            author_name: spec.author_name.unwrap_or_default(),
            author_email: spec.author_email.unwrap_or_default(),
            published: spec.published.unwrap_or(serde_json::Value::Null),
            diff: String::from_utf8_lossy(&spec.diff.unwrap_or_default()).into_owned(),
        });
    }
    Ok(Json(ChangesetSpecPage { changeset_specs, next }))
}

async fn cancel_batch_spec(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<BatchSpecStatus>> {
    let caller = authenticate(&state, &headers).await?;
    let row = batch_spec_by_id(&state, &id).await?;
    require_can_administer(&state, &caller, &row).await?;
    state.store.cancel_batch_spec_jobs(row.id, Clock::now_ms()).await?;
    crate::audit::record(&state, caller.user.id, "batch_spec.cancel", "batch_spec", &row.rand_id, serde_json::json!({})).await?;
    Ok(Json(batch_spec_status(&state, &row).await?))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RetryRequest {
    #[serde(default)]
    include_completed: bool,
    #[serde(default)]
    workspaces: Vec<i64>,
}

async fn retry_batch_spec(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>, Json(request): Json<RetryRequest>) -> ApiResult<Json<BatchSpecStatus>> {
    let caller = authenticate(&state, &headers).await?;
    let row = batch_spec_by_id(&state, &id).await?;
    require_can_administer(&state, &caller, &row).await?;
    let now = Clock::now_ms();
    let details = serde_json::json!({ "includeCompleted": request.include_completed, "workspaces": request.workspaces });
    if request.workspaces.is_empty() {
        state.store.retry_batch_spec_jobs(row.id, request.include_completed, now).await?;
    } else {
        let ids: Vec<WorkspaceId> = request.workspaces.into_iter().map(WorkspaceId).collect();
        state.store.retry_workspace_jobs(row.id, &ids, now).await?;
    }
    crate::audit::record(&state, caller.user.id, "batch_spec.retry", "batch_spec", &row.rand_id, details).await?;
    state.jobs_were_queued();
    Ok(Json(batch_spec_status(&state, &row).await?))
}

async fn job_logs(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult<Json<Vec<LogEntryInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let job = state.store.get_execution_job(JobId(id)).await.map_err(|_| ApiError::not_found(format!("no job {id}")))?;
    let workspace = state.store.get_workspace(job.workspace_id).await?;
    // A job on a repository the caller cannot read does not exist for them.
    let mut visibility = RepositoryVisibility::for_caller(&state, &caller).await?;
    if !visibility.can_read_id(&state, workspace.repository_id).await? {
        return Err(ApiError::not_found(format!("no job {id}")));
    }
    let entries = state.store.list_log_entries(job.id).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|entry| LogEntryInfo {
                index: entry.entry_index,
                key: entry.key,
                command: serde_json::from_value(entry.command).unwrap_or_default(),
                started_at_ms: entry.started_at,
                exit_code: entry.exit_code,
                duration_ms: entry.duration_ms,
                output: entry.output,
            })
            .collect(),
    ))
}

/// Prometheus text: queue depth (what an autoscaler scales executors on), jobs by state,
/// executors seen in the last minute.
#[cfg(test)]
mod tests {
    use super::*;

    fn counts(queued: i64, processing: i64, completed: i64, failed: i64, canceled: i64) -> JobCounts {
        JobCounts { queued, processing, canceling: 0, completed, failed, canceled }
    }

    #[test]
    fn overall_state_follows_sourcegraph() {
        assert_eq!(overall_state(Some(ResolutionState::Processing), &counts(0, 0, 0, 0, 0)), "pending");
        assert_eq!(overall_state(Some(ResolutionState::Completed), &counts(3, 0, 0, 0, 0)), "queued");
        assert_eq!(overall_state(Some(ResolutionState::Completed), &counts(2, 0, 1, 0, 0)), "processing");
        assert_eq!(overall_state(Some(ResolutionState::Completed), &counts(0, 0, 2, 1, 0)), "failed");
        assert_eq!(overall_state(Some(ResolutionState::Completed), &counts(0, 0, 3, 0, 0)), "completed");
        assert_eq!(overall_state(Some(ResolutionState::Completed), &counts(0, 0, 1, 0, 2)), "canceled");
        assert_eq!(overall_state(Some(ResolutionState::Failed), &counts(0, 0, 0, 0, 0)), "failed");
    }
}
