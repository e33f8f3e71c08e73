//! Bitbucket Server / Data Center's REST API 1.0 under `/rest/api/1.0` and its build status API
//! under `/rest/build-status/1.0`, over the same repositories, pull requests, comments, reviews
//! and check runs as the GitHub and GitLab routes, so a test can act on the forge through any
//! face (or the admin routes) and see it in the others.
//!
//! Bitbucket's vocabulary is mapped onto the shared state: a project (by its key, matched
//! without regard to case as Bitbucket does) is an owner, a repository slug is a name, a pull
//! request's id is the shared pull request number, and a declined pull request is a closed one.
//! Reviewers are the users who reviewed, with their latest verdict as Bitbucket's status
//! (`APPROVED`, `NEEDS_WORK` for "changes requested", `UNAPPROVED` after a dismissal); build
//! statuses are the check runs on a commit. A pull request's `version` (Bitbucket's optimistic
//! lock) counts the changes made through this face; every change must send the current one.
//! Git is served at `/scm/{KEY}/{slug}.git` as well, the path Bitbucket's clone links use, and
//! the `http` clone link carries the user name as Bitbucket writes it (`http://emulator@...`).
//! The server reports version 8.19.0, so it has draft pull requests.
//!
//! It keeps Bitbucket's documented answers where the adapter depends on them: the paged envelope
//! (`{size, limit, isLastPage, values, start, nextPageStart}`), `{"errors": [{"context",
//! "message", "exceptionName"}]}` error bodies (401, 404 `NoSuchRepositoryException`, 409
//! `DuplicatePullRequestException` for a second open pull request between the same branches,
//! 409 `PullRequestOutOfDateException` for a stale version), and a 429 with `Retry-After` when
//! the primary limit is used up (Bitbucket's token bucket sends no remaining count).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Shared;
use crate::api::{Admission, admit, parse_number, token_of};
use crate::state::{Comment, Fault, PullRequest, Repository, RepositoryState, State as EmulatorState, timestamp};

type SharedState = State<Arc<Shared>>;

/// The version `/application-properties` reports: one with draft pull requests.
const VERSION: &str = "8.19.0";

const REPOSITORY: &str = "/rest/api/1.0/projects/{key}/repos/{slug}";

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let api = Router::new()
        .route("/rest/api/1.0/application-properties", get(application_properties))
        .route("/rest/api/1.0/projects/{key}/repos", get(list_repositories))
        .route(REPOSITORY, get(get_repository))
        .route(&format!("{REPOSITORY}/default-branch"), get(default_branch))
        .route(&format!("{REPOSITORY}/branches/default"), get(default_branch))
        .route(&format!("{REPOSITORY}/pull-requests"), get(list_pull_requests).post(create_pull_request))
        .route(&format!("{REPOSITORY}/pull-requests/{{id}}"), get(get_pull_request).put(update_pull_request))
        .route(&format!("{REPOSITORY}/pull-requests/{{id}}/decline"), post(decline))
        .route(&format!("{REPOSITORY}/pull-requests/{{id}}/reopen"), post(reopen))
        .route(&format!("{REPOSITORY}/pull-requests/{{id}}/merge"), post(merge))
        .route(&format!("{REPOSITORY}/pull-requests/{{id}}/comments"), post(create_comment))
        .route("/rest/build-status/1.0/commits/{commit}", get(build_statuses))
        .layer(middleware::from_fn_with_state(shared, bitbucket_gate));
    // Bitbucket's clone URLs; the handlers are the GitHub face's, with their own token check.
    let git = Router::new()
        .route("/scm/{owner}/{repo}/info/refs", get(crate::api::git_info_refs))
        .route("/scm/{owner}/{repo}/git-upload-pack", post(crate::api::git_upload_pack))
        .route("/scm/{owner}/{repo}/git-receive-pack", post(crate::api::git_receive_pack))
        .layer(DefaultBodyLimit::disable());
    api.merge(git)
}

/// Bitbucket's error body with one error.
fn error(status: StatusCode, exception: Option<&str>, message: impl Into<String>) -> Response {
    error_with(status, exception, message, json!({}))
}

/// The same, with extra fields on the error (`currentVersion`, `existingPullRequest`, ...).
fn error_with(status: StatusCode, exception: Option<&str>, message: impl Into<String>, extra: Value) -> Response {
    let mut entry = json!({"context": null, "message": message.into(), "exceptionName": exception.map(|name| format!("com.atlassian.bitbucket.{name}"))});
    if let (Value::Object(entry), Value::Object(extra)) = (&mut entry, extra) {
        entry.extend(extra);
    }
    (status, axum::Json(json!({"errors": [entry]}))).into_response()
}

/// A 400 for a field, as Bitbucket's validation reports it.
fn field_error(field: &str, message: &str) -> Response {
    (StatusCode::BAD_REQUEST, axum::Json(json!({"errors": [{"context": field, "message": message, "exceptionName": null}]}))).into_response()
}

fn no_such_repository(key: &str, slug: &str) -> Response {
    error(StatusCode::NOT_FOUND, Some("repository.NoSuchRepositoryException"), format!("Repository {key}/{slug} does not exist."))
}

fn no_such_pull_request(id: &str) -> Response {
    error(StatusCode::NOT_FOUND, Some("pull.NoSuchPullRequestException"), format!("No pull request exists with ID {id} for this repository."))
}

fn malformed_body() -> Response {
    error(StatusCode::BAD_REQUEST, None, "The request body could not be read as JSON.")
}

/// Authentication, injected faults and the primary rate limit, answered as Bitbucket does.
async fn bitbucket_gate(State(shared): SharedState, request: Request, next: Next) -> Response {
    let Some(Admission { fault, decision }) = admit(&shared, token_of(request.headers())) else {
        return error(
            StatusCode::UNAUTHORIZED,
            Some("auth.IncorrectPasswordAuthenticationException"),
            "Authentication failed. Please check your credentials and try again.",
        );
    };
    let throttled = |retry_after_secs: u64| {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            Some("ratelimit.RateLimitExceededException"),
            "You have been rate limited. Please wait before making more requests.",
        );
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        response
    };
    match fault {
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, None, "An unexpected error occurred. Please contact your administrator.");
        }
        // Bitbucket has one kind of limit: both faults are its throttling answer.
        Some(Fault::TooManyRequests { retry_after_secs } | Fault::SecondaryLimit { retry_after_secs }) => return throttled(retry_after_secs),
        Some(Fault::Slow { millis }) => tokio::time::sleep(Duration::from_millis(millis)).await,
        None => {}
    }
    let Some(decision) = decision else { return error(StatusCode::INTERNAL_SERVER_ERROR, None, "An unexpected error occurred.") };
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        throttled(decision.reset.saturating_sub(now).max(1))
    };
    response.headers_mut().insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    response
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    start: Option<usize>,
    limit: Option<usize>,
}

/// One page of `items` in Bitbucket's envelope.
fn paged(items: Vec<Value>, start: Option<usize>, limit: Option<usize>) -> Response {
    axum::Json(envelope(items, start.unwrap_or(0), limit.unwrap_or(25).clamp(1, 1000))).into_response()
}

fn envelope(items: Vec<Value>, start: usize, limit: usize) -> Value {
    let total = items.len();
    let values: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let end = start.saturating_add(values.len());
    let last = end >= total;
    let mut page = json!({"size": values.len(), "limit": limit, "isLastPage": last, "values": values, "start": start});
    if !last {
        page["nextPageStart"] = json!(end);
    }
    page
}

/// The `(owner, name)` key of a repository; project keys match without regard to case.
fn repository_key(state: &EmulatorState, key: &str, slug: &str) -> Option<(String, String)> {
    state
        .repositories
        .iter()
        .find(|((owner, name), repository)| repository.repository.is_some() && owner.eq_ignore_ascii_case(key) && name == slug)
        .map(|(found, _)| found.clone())
}

fn project_json(repository: &Repository) -> Value {
    json!({"key": repository.owner, "id": 1, "name": repository.owner, "public": false, "type": "NORMAL"})
}

fn repository_json(base_url: &str, repository: &Repository) -> Value {
    let (key, slug) = (&repository.owner, &repository.name);
    let (scheme, authority) = base_url.split_once("://").unwrap_or(("http", base_url));
    let host = authority.split(':').next().unwrap_or(authority);
    let mut rendered = json!({
        "slug": slug,
        "id": repository.id,
        "name": slug,
        "hierarchyId": format!("{:020x}", repository.id),
        "scmId": "git",
        "state": "AVAILABLE",
        "statusMessage": "Available",
        "forkable": true,
        "project": project_json(repository),
        "public": !repository.private,
        "archived": repository.archived,
        "links": {
            "clone": [
                {"href": format!("ssh://git@{host}:7999/{}/{slug}.git", key.to_ascii_lowercase()), "name": "ssh"},
                // Bitbucket names the requesting user in the HTTP clone link.
                {"href": format!("{scheme}://emulator@{authority}/scm/{key}/{slug}.git"), "name": "http"},
            ],
            "self": [{"href": format!("{base_url}/projects/{key}/repos/{slug}/browse")}],
        },
    });
    if repository.fork {
        rendered["origin"] = json!({"slug": slug, "project": {"key": "UPSTREAM"}});
    }
    rendered
}

async fn application_properties() -> Response {
    axum::Json(json!({"version": VERSION, "buildNumber": "8019000", "buildDate": "1700000000000", "displayName": "Bitbucket"})).into_response()
}

async fn list_repositories(State(shared): SharedState, Path(key): Path<String>, Query(page): Query<PageQuery>) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        state
            .repositories
            .iter()
            .filter(|((owner, _), _)| owner.eq_ignore_ascii_case(&key))
            .filter_map(|(_, repository)| repository.repository.as_ref())
            .map(|repository| repository_json(&shared.base_url, repository))
            .collect()
    };
    if items.is_empty() {
        return error(StatusCode::NOT_FOUND, Some("project.NoSuchProjectException"), format!("Project {key} does not exist."));
    }
    paged(items, page.start, page.limit)
}

async fn get_repository(State(shared): SharedState, Path((key, slug)): Path<(String, String)>) -> Response {
    let state = shared.lock();
    match repository_key(&state, &key, &slug).and_then(|(owner, name)| state.repository(&owner, &name)).and_then(|repository| repository.repository.as_ref()) {
        Some(repository) => axum::Json(repository_json(&shared.base_url, repository)).into_response(),
        None => no_such_repository(&key, &slug),
    }
}

async fn default_branch(State(shared): SharedState, Path((key, slug)): Path<(String, String)>) -> Response {
    let record = {
        let state = shared.lock();
        match repository_key(&state, &key, &slug).and_then(|(owner, name)| state.repository(&owner, &name)?.repository.clone()) {
            Some(record) => record,
            None => return no_such_repository(&key, &slug),
        }
    };
    match crate::git::branch_commit(&record.git_dir, &record.default_branch) {
        Some(commit) => axum::Json(json!({
            "id": format!("refs/heads/{}", record.default_branch),
            "displayId": record.default_branch,
            "type": "BRANCH",
            "latestCommit": commit,
            "latestChangeset": commit,
            "isDefault": true,
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, Some("repository.NoDefaultBranchException"), format!("Repository {key}/{slug} does not have a default branch.")),
    }
}

/// Each reviewer's latest verdict, as Bitbucket's reviewer statuses.
fn reviewers_json(repository: &RepositoryState, number: u64) -> Vec<Value> {
    let mut latest: BTreeMap<&str, &'static str> = BTreeMap::new();
    for review in repository.reviews.get(&number).into_iter().flatten() {
        let status = match review.state.as_str() {
            "APPROVED" => "APPROVED",
            "CHANGES_REQUESTED" => "NEEDS_WORK",
            "DISMISSED" => "UNAPPROVED",
            _ => continue,
        };
        latest.insert(&review.user, status);
    }
    latest
        .into_iter()
        .map(|(user, status)| json!({"user": {"name": user, "slug": user, "displayName": user}, "role": "REVIEWER", "approved": status == "APPROVED", "status": status}))
        .collect()
}

fn ref_json(base_url: &str, record: &Repository, branch: &str) -> Value {
    json!({
        "id": format!("refs/heads/{branch}"),
        "displayId": branch,
        "type": "BRANCH",
        "latestCommit": crate::git::branch_commit(&record.git_dir, branch),
        "repository": repository_json(base_url, record),
    })
}

fn state_name(pull: &PullRequest) -> &'static str {
    if pull.merged {
        "MERGED"
    } else if pull.open {
        "OPEN"
    } else {
        "DECLINED"
    }
}

fn version_of(repository: &RepositoryState, number: u64) -> u64 {
    repository.bitbucket_versions.get(&number).copied().unwrap_or(0)
}

fn pull_request_json(base_url: &str, repository: &RepositoryState, pull: &PullRequest) -> Value {
    let Some(record) = &repository.repository else { return Value::Null };
    let mut rendered = json!({
        "id": pull.number,
        "version": version_of(repository, pull.number),
        "title": pull.title,
        "description": pull.body,
        "state": state_name(pull),
        "open": pull.open,
        "closed": !pull.open,
        "draft": pull.draft,
        "createdDate": crate::state::timestamp_millis(&pull.created_at),
        "updatedDate": crate::state::timestamp_millis(&pull.updated_at),
        "fromRef": ref_json(base_url, record, &pull.head),
        "toRef": ref_json(base_url, record, &pull.base),
        "locked": false,
        "author": {"user": {"name": "emulator", "slug": "emulator"}, "role": "AUTHOR", "approved": false, "status": "UNAPPROVED"},
        "reviewers": reviewers_json(repository, pull.number),
        "participants": [],
        "links": {"self": [{"href": format!("{base_url}/projects/{}/repos/{}/pull-requests/{}", record.owner, record.name, pull.number)}]},
    });
    if !pull.open {
        rendered["closedDate"] = json!(crate::state::timestamp_millis(&pull.updated_at));
    }
    rendered
}

#[derive(Debug, Deserialize)]
struct PullRequestsQuery {
    state: Option<String>,
    at: Option<String>,
    direction: Option<String>,
    order: Option<String>,
    start: Option<usize>,
    limit: Option<usize>,
}

async fn list_pull_requests(State(shared): SharedState, Path((key, slug)): Path<(String, String)>, Query(query): Query<PullRequestsQuery>) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let Some(repository) = repository_key(&state, &key, &slug).and_then(|(owner, name)| state.repository(&owner, &name)) else {
            return no_such_repository(&key, &slug);
        };
        let wanted = query.state.as_deref().unwrap_or("OPEN").to_ascii_uppercase();
        let at = query.at.as_deref().map(|at| at.strip_prefix("refs/heads/").unwrap_or(at));
        let outgoing = query.direction.as_deref().is_some_and(|direction| direction.eq_ignore_ascii_case("OUTGOING"));
        let mut pulls: Vec<&PullRequest> = repository
            .pulls
            .iter()
            .filter(|pull| wanted == "ALL" || state_name(pull) == wanted)
            .filter(|pull| at.is_none_or(|branch| if outgoing { pull.head == branch } else { pull.base == branch }))
            .collect();
        pulls.sort_by_key(|pull| pull.number);
        if !query.order.as_deref().is_some_and(|order| order.eq_ignore_ascii_case("OLDEST")) {
            pulls.reverse();
        }
        pulls.into_iter().map(|pull| pull_request_json(&shared.base_url, repository, pull)).collect()
    };
    paged(items, query.start, query.limit)
}

/// The repository's key and the pull request's index in its pulls, or Bitbucket's 404.
#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn locate(state: &EmulatorState, key: &str, slug: &str, id: &str) -> Result<((String, String), usize), Response> {
    let Some(found) = repository_key(state, key, slug) else { return Err(no_such_repository(key, slug)) };
    let Some(repository) = state.repository(&found.0, &found.1) else { return Err(no_such_repository(key, slug)) };
    let index = parse_number(id).and_then(|id| repository.pulls.iter().position(|pull| pull.number == id));
    match index {
        Some(index) => Ok((found, index)),
        None => Err(no_such_pull_request(id)),
    }
}

fn render(shared: &Shared, state: &EmulatorState, found: &(String, String), index: usize, status: StatusCode) -> Response {
    match state.repository(&found.0, &found.1).and_then(|repository| Some((repository, repository.pulls.get(index)?))) {
        Some((repository, pull)) => (status, axum::Json(pull_request_json(&shared.base_url, repository, pull))).into_response(),
        None => no_such_pull_request(&index.to_string()),
    }
}

async fn get_pull_request(State(shared): SharedState, Path((key, slug, id)): Path<(String, String, String)>) -> Response {
    let state = shared.lock();
    match locate(&state, &key, &slug, &id) {
        Ok((found, index)) => render(&shared, &state, &found, index, StatusCode::OK),
        Err(response) => response,
    }
}

#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn json_object(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(malformed_body()),
    }
}

/// `{"id": "refs/heads/x", "repository": {...}}` → `x`, refusing refs of another repository
/// (forks are not emulated).
#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn branch_of(body: &Value, field: &str, record: &Repository) -> Result<String, Response> {
    let Some(reference) = body.get(field).and_then(|reference| reference.get("id")).and_then(Value::as_str) else {
        return Err(field_error(field, "You must specify a branch."));
    };
    if let Some(repository) = body.get(field).and_then(|reference| reference.get("repository")) {
        let slug = repository.get("slug").and_then(Value::as_str).unwrap_or(&record.name);
        let key = repository.pointer("/project/key").and_then(Value::as_str).unwrap_or(&record.owner);
        if slug != record.name || !key.eq_ignore_ascii_case(&record.owner) {
            return Err(field_error(field, "Pull requests between repositories (forks) are not supported by the emulator."));
        }
    }
    let branch = reference.strip_prefix("refs/heads/").unwrap_or(reference).to_owned();
    if crate::git::branch_commit(&record.git_dir, &branch).is_none() {
        return Err(error(
            StatusCode::NOT_FOUND,
            Some("repository.NoSuchBranchException"),
            format!("Repository \"{}\" of project with key \"{}\" has no branch \"{reference}\"", record.name, record.owner),
        ));
    }
    Ok(branch)
}

async fn create_pull_request(State(shared): SharedState, Path((key, slug)): Path<(String, String)>, body: Bytes) -> Response {
    let body = match json_object(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = shared.lock();
    let id = state.next_id();
    let Some(found) = repository_key(&state, &key, &slug) else { return no_such_repository(&key, &slug) };
    let Some(repository) = state.repository_mut(&found.0, &found.1) else { return no_such_repository(&key, &slug) };
    let Some(record) = repository.repository.clone() else { return no_such_repository(&key, &slug) };
    let Some(title) = body.get("title").and_then(Value::as_str).filter(|title| !title.trim().is_empty()).map(str::to_owned) else {
        return field_error("title", "Please enter a non-empty value");
    };
    if record.archived {
        return error(StatusCode::FORBIDDEN, Some("repository.ArchivedRepositoryException"), format!("Repository {key}/{slug} is archived and cannot be modified."));
    }
    let (head, base) = match (branch_of(&body, "fromRef", &record), branch_of(&body, "toRef", &record)) {
        (Ok(head), Ok(base)) => (head, base),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    if crate::git::branch_commit(&record.git_dir, &head) == crate::git::branch_commit(&record.git_dir, &base) {
        return error(
            StatusCode::CONFLICT,
            Some("pull.EmptyPullRequestException"),
            format!("Pull request cannot be created: refs/heads/{head} is up to date with refs/heads/{base}."),
        );
    }
    if let Some(existing) = repository.pulls.iter().find(|pull| pull.open && pull.head == head && pull.base == base) {
        let existing = pull_request_json(&shared.base_url, repository, existing);
        return error_with(
            StatusCode::CONFLICT,
            Some("pull.DuplicatePullRequestException"),
            "Only one pull request may be open for a given source and target branch",
            json!({"existingPullRequest": existing}),
        );
    }
    let now = timestamp(SystemTime::now());
    let number = repository.pulls.iter().map(|pull| pull.number).max().unwrap_or(0) + 1;
    repository.pulls.push(PullRequest {
        id,
        number,
        node_id: format!("PR_{id}"),
        open: true,
        draft: body.get("draft").and_then(Value::as_bool).unwrap_or(false),
        merged: false,
        merged_at: None,
        title,
        body: body.get("description").and_then(Value::as_str).unwrap_or_default().to_owned(),
        head,
        base,
        created_at: now.clone(),
        updated_at: now,
    });
    let index = repository.pulls.len() - 1;
    render(&shared, &state, &found, index, StatusCode::CREATED)
}

/// The version a change was based on: the `version` query parameter or body field.
fn sent_version(query: &VersionQuery, body: &Value) -> Option<u64> {
    query.version.or_else(|| body.get("version").and_then(Value::as_u64))
}

#[derive(Debug, Deserialize)]
struct VersionQuery {
    version: Option<u64>,
}

/// 409 unless `sent` is the pull request's current version.
#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn check_version(repository: &RepositoryState, number: u64, sent: Option<u64>) -> Result<(), Response> {
    let current = version_of(repository, number);
    match sent {
        Some(sent) if sent == current => Ok(()),
        Some(sent) => Err(error_with(
            StatusCode::CONFLICT,
            Some("pull.PullRequestOutOfDateException"),
            "You are attempting to modify a pull request based on out-of-date information.",
            json!({"currentVersion": current, "expectedVersion": sent}),
        )),
        None => Err(field_error("version", "You must specify the version of the pull request you are modifying.")),
    }
}

fn bump(repository: &mut RepositoryState, index: usize) {
    let Some(pull) = repository.pulls.get_mut(index) else { return };
    pull.updated_at = timestamp(SystemTime::now());
    *repository.bitbucket_versions.entry(pull.number).or_insert(0) += 1;
}

fn illegal_state(message: &str) -> Response {
    error(StatusCode::CONFLICT, Some("pull.IllegalPullRequestStateException"), message)
}

async fn update_pull_request(State(shared): SharedState, Path((key, slug, id)): Path<(String, String, String)>, body: Bytes) -> Response {
    let body = match json_object(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = shared.lock();
    let (found, index) = match locate(&state, &key, &slug, &id) {
        Ok(located) => located,
        Err(response) => return response,
    };
    let Some(repository) = state.repository_mut(&found.0, &found.1) else { return no_such_repository(&key, &slug) };
    let Some(record) = repository.repository.clone() else { return no_such_repository(&key, &slug) };
    let number = repository.pulls[index].number;
    if let Err(response) = check_version(repository, number, body.get("version").and_then(Value::as_u64)) {
        return response;
    }
    if repository.pulls[index].merged {
        return illegal_state("A merged pull request cannot be updated.");
    }
    if let Some(title) = body.get("title")
        && title.as_str().is_none_or(|title| title.trim().is_empty())
    {
        return field_error("title", "Please enter a non-empty value");
    }
    let base = if body.get("toRef").is_some() {
        match branch_of(&body, "toRef", &record) {
            Ok(base) => Some(base),
            Err(response) => return response,
        }
    } else {
        None
    };
    let pull = &mut repository.pulls[index];
    if let Some(title) = body.get("title").and_then(Value::as_str) {
        pull.title = title.to_owned();
    }
    if let Some(description) = body.get("description").and_then(Value::as_str) {
        pull.body = description.to_owned();
    }
    if let Some(base) = base {
        pull.base = base;
    }
    if let Some(draft) = body.get("draft").and_then(Value::as_bool) {
        pull.draft = draft;
    }
    bump(repository, index);
    render(&shared, &state, &found, index, StatusCode::OK)
}

/// The shared beginning of decline, reopen and merge: the body, the pull request, the version.
#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn transition_target(state: &EmulatorState, key: &str, slug: &str, id: &str, query: &VersionQuery, body: &Bytes) -> Result<((String, String), usize, Value), Response> {
    let body = json_object(body)?;
    let (found, index) = locate(state, key, slug, id)?;
    let Some(repository) = state.repository(&found.0, &found.1) else { return Err(no_such_repository(key, slug)) };
    check_version(repository, repository.pulls[index].number, sent_version(query, &body))?;
    Ok((found, index, body))
}

async fn decline(State(shared): SharedState, Path((key, slug, id)): Path<(String, String, String)>, Query(query): Query<VersionQuery>, body: Bytes) -> Response {
    let mut state = shared.lock();
    let (found, index) = match transition_target(&state, &key, &slug, &id, &query, &body) {
        Ok((found, index, _)) => (found, index),
        Err(response) => return response,
    };
    let Some(repository) = state.repository_mut(&found.0, &found.1) else { return no_such_repository(&key, &slug) };
    if !repository.pulls[index].open {
        return illegal_state("The pull request is not open, so it cannot be declined.");
    }
    repository.pulls[index].open = false;
    bump(repository, index);
    render(&shared, &state, &found, index, StatusCode::OK)
}

async fn reopen(State(shared): SharedState, Path((key, slug, id)): Path<(String, String, String)>, Query(query): Query<VersionQuery>, body: Bytes) -> Response {
    let mut state = shared.lock();
    let (found, index) = match transition_target(&state, &key, &slug, &id, &query, &body) {
        Ok((found, index, _)) => (found, index),
        Err(response) => return response,
    };
    let Some(repository) = state.repository_mut(&found.0, &found.1) else { return no_such_repository(&key, &slug) };
    let pull = &repository.pulls[index];
    if pull.open || pull.merged {
        return illegal_state("Only a declined pull request can be reopened.");
    }
    if repository.pulls.iter().any(|other| other.open && other.head == pull.head && other.base == pull.base) {
        return error(StatusCode::CONFLICT, Some("pull.DuplicatePullRequestException"), "Only one pull request may be open for a given source and target branch");
    }
    repository.pulls[index].open = true;
    bump(repository, index);
    render(&shared, &state, &found, index, StatusCode::OK)
}

async fn merge(State(shared): SharedState, Path((key, slug, id)): Path<(String, String, String)>, Query(query): Query<VersionQuery>, body: Bytes) -> Response {
    let mut state = shared.lock();
    let (found, index) = match transition_target(&state, &key, &slug, &id, &query, &body) {
        Ok((found, index, _)) => (found, index),
        Err(response) => return response,
    };
    let Some(pull) = state.repository(&found.0, &found.1).and_then(|repository| repository.pulls.get(index)) else { return no_such_pull_request(&id) };
    let (number, open, draft) = (pull.number, pull.open, pull.draft);
    if !open {
        return illegal_state("The pull request is not open, so it cannot be merged.");
    }
    if draft {
        return error_with(
            StatusCode::CONFLICT,
            Some("pull.PullRequestMergeVetoedException"),
            "Merging the pull request has been vetoed.",
            json!({"vetoes": [{"summaryMessage": "Draft pull request", "detailedMessage": "A draft pull request cannot be merged. Publish it first."}]}),
        );
    }
    if let Err(message) = crate::api::merge(&mut state, &found.0, &found.1, number) {
        return illegal_state(&message);
    }
    if let Some(repository) = state.repository_mut(&found.0, &found.1) {
        bump(repository, index);
    }
    render(&shared, &state, &found, index, StatusCode::OK)
}

async fn create_comment(State(shared): SharedState, Path((key, slug, id)): Path<(String, String, String)>, body: Bytes) -> Response {
    let body = match json_object(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(text) = body.get("text").and_then(Value::as_str).filter(|text| !text.trim().is_empty()).map(str::to_owned) else {
        return field_error("text", "Please enter a non-empty value");
    };
    let mut state = shared.lock();
    let (found, index) = match locate(&state, &key, &slug, &id) {
        Ok(located) => located,
        Err(response) => return response,
    };
    let comment_id = state.next_id();
    let Some(repository) = state.repository_mut(&found.0, &found.1) else { return no_such_repository(&key, &slug) };
    let number = repository.pulls[index].number;
    let comment = Comment { id: comment_id, body: text, user: "emulator".into(), created_at: timestamp(SystemTime::now()) };
    let created = crate::state::timestamp_millis(&comment.created_at);
    let rendered = json!({"id": comment.id, "version": 0, "text": comment.body, "author": {"name": comment.user}, "createdDate": created, "updatedDate": created});
    repository.comments.entry(number).or_default().push(comment);
    (StatusCode::CREATED, axum::Json(rendered)).into_response()
}

/// A check run as a Bitbucket build status.
fn build_status_state(run: &crate::CheckRun) -> &'static str {
    match (run.status.as_str(), run.conclusion.as_deref()) {
        ("completed", Some("failure" | "timed_out" | "action_required" | "startup_failure")) => "FAILED",
        ("completed", Some("cancelled")) => "CANCELLED",
        ("completed", _) => "SUCCESSFUL",
        _ => "INPROGRESS",
    }
}

/// Build statuses are per commit, not per repository, on Bitbucket: every repository's check
/// runs on `commit` are listed.
async fn build_statuses(State(shared): SharedState, Path(commit): Path<String>, Query(page): Query<PageQuery>) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        state
            .repositories
            .values()
            .filter_map(|repository| repository.checks.get(&commit))
            .flatten()
            .map(|run| {
                json!({
                    "state": build_status_state(run),
                    "key": run.name,
                    "name": run.name,
                    "url": format!("{}/builds/{}", shared.base_url, run.name),
                    "description": "",
                    "dateAdded": 1_700_000_000_000_i64,
                })
            })
            .collect()
    };
    paged(items, page.start, page.limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_pages_with_next_page_start() {
        let items: Vec<Value> = (0..5).map(|number| json!(number)).collect();
        let first = envelope(items.clone(), 0, 2);
        assert_eq!(first, json!({"size": 2, "limit": 2, "isLastPage": false, "values": [0, 1], "start": 0, "nextPageStart": 2}));
        let last = envelope(items.clone(), 4, 2);
        assert_eq!(last, json!({"size": 1, "limit": 2, "isLastPage": true, "values": [4], "start": 4}));
        assert_eq!(envelope(Vec::new(), 0, 25)["isLastPage"], true);
    }

    #[test]
    fn timestamps_become_epoch_milliseconds() {
        assert_eq!(crate::state::timestamp_millis("1970-01-01T00:00:00Z"), 0);
        assert_eq!(crate::state::timestamp_millis("2024-02-29T12:34:56Z"), 1_709_210_096_000);
        assert_eq!(crate::state::timestamp_millis(&timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))), 1_800_000_000_000);
    }
}
