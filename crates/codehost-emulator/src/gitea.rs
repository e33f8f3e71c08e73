//! Gitea's REST API v1 (which Forgejo also speaks) under `/api/v1`, over the same repositories,
//! pull requests, comments, reviews and check runs as the GitHub and GitLab routes, so a test can
//! act on the forge through the admin routes (or another face) and see it through Gitea's.
//!
//! The shared state is mapped onto Gitea's vocabulary: a work-in-progress pull request is one
//! whose title starts with `WIP:` or `[WIP]` on Gitea and a flag on GitHub, so the state keeps the
//! flag and the bare title and these routes add or read the prefix (and report Gitea 1.22's
//! read-only `draft` field); reviews use Gitea's states (`REQUEST_CHANGES`, `COMMENT`) and a
//! dismissal marks the reviewer's earlier verdicts `dismissed`, as Gitea does; the check runs on
//! a commit become its commit statuses and combined state.
//!
//! It keeps Gitea's documented answers where the adapter depends on them: `{"message", "url"}`
//! error bodies (404 `The target couldn't be found.`, 401 for a bad token, 423 for writes to an
//! archived repository, 409 naming the existing pull request for a second open one with the same
//! head and base, 405 for merges that cannot happen), binding failures as a 422 with a JSON array,
//! `page`/`limit` pagination (30 by default, at most 50) with `Link` and `X-Total-Count`, a
//! `PATCH` answered with 201 and an empty 200 for a merge. Gitea has no rate limit of its own:
//! the emulator's primary limit and throttling faults are answered as a proxy in front of it
//! would, with a 429 and `Retry-After` and no rate-limit headers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Shared;
use crate::api::{Admission, admit, parse_number, resolve_commit, string_field, token_of};
use crate::state::{Comment, Fault, PullRequest, Repository, RepositoryState, State as EmulatorState, timestamp};

type SharedState = State<Arc<Shared>>;

/// The prefix these routes put before a work in progress's title (Gitea's default first one).
const DRAFT_PREFIX: &str = "WIP: ";

/// Gitea's default `DEFAULT_PAGING_NUM` and `MAX_RESPONSE_ITEMS`.
const DEFAULT_LIMIT: usize = 30;
const MAX_LIMIT: usize = 50;

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v1/orgs/{org}/repos", get(list_org_repositories))
        .route("/api/v1/repos/{owner}/{repo}", get(get_repository))
        .route("/api/v1/repos/{owner}/{repo}/pulls", get(list_pulls).post(create_pull))
        .route("/api/v1/repos/{owner}/{repo}/pulls/{index}", get(get_pull).patch(edit_pull))
        .route("/api/v1/repos/{owner}/{repo}/pulls/{index}/merge", post(merge_pull))
        .route("/api/v1/repos/{owner}/{repo}/pulls/{index}/reviews", get(list_reviews))
        .route("/api/v1/repos/{owner}/{repo}/issues/{index}/comments", get(list_comments).post(create_comment))
        .route("/api/v1/repos/{owner}/{repo}/commits/{reference}/status", get(combined_status))
        .layer(middleware::from_fn_with_state(shared, gitea_gate))
}

/// Gitea's error body; `url` is the instance's API documentation.
fn error(shared: &Shared, status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"message": message.into(), "url": format!("{}/api/swagger", shared.base_url)}))).into_response()
}

/// Gitea's 404: a fixed message, with the reasons in `errors`.
fn not_found(shared: &Shared, reasons: &[String]) -> Response {
    (StatusCode::NOT_FOUND, axum::Json(json!({"message": "The target couldn't be found.", "url": format!("{}/api/swagger", shared.base_url), "errors": reasons})))
        .into_response()
}

/// Gitea's answer to a request body that fails its form binding: a 422 with a JSON array.
fn binding_error(field: &str, classification: &str, message: &str) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!([{"fieldNames": [field], "classification": classification, "message": message}]))).into_response()
}

/// Authentication, injected faults and the emulator's primary limit, answered as a Gitea behind
/// a throttling proxy would.
async fn gitea_gate(State(shared): SharedState, request: Request, next: Next) -> Response {
    let Some(Admission { fault, decision }) = admit(&shared, token_of(request.headers())) else {
        return error(&shared, StatusCode::UNAUTHORIZED, "invalid username, password or token");
    };
    let too_many = |retry_after_secs: u64| {
        let mut response = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests\n").into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs.max(1)));
        response
    };
    match fault {
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            // Gitea hides the cause of a 500 from non-admins: the message is empty.
            return error(&shared, status, "");
        }
        Some(Fault::TooManyRequests { retry_after_secs } | Fault::SecondaryLimit { retry_after_secs }) => return too_many(retry_after_secs),
        Some(Fault::Slow { millis }) => tokio::time::sleep(Duration::from_millis(millis)).await,
        None => {}
    }
    match decision {
        Some(decision) if decision.allowed => next.run(request).await,
        Some(decision) => {
            let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
            too_many(decision.reset.saturating_sub(now))
        }
        None => error(&shared, StatusCode::INTERNAL_SERVER_ERROR, ""),
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<usize>,
    limit: Option<usize>,
}

/// One page of `items` with Gitea's `X-Total-Count` and `Link` (next and last while there are
/// more, first and prev after the first page).
fn paginate(shared: &Shared, uri: &Uri, items: Vec<Value>, page: &PageQuery) -> Response {
    let limit = page.limit.filter(|limit| *limit > 0).unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let total = items.len();
    let last = total.div_ceil(limit).max(1);
    let number = page.page.unwrap_or(1).max(1);
    let page_items: Vec<Value> = items.into_iter().skip((number - 1).saturating_mul(limit)).take(limit).collect();
    let mut response = axum::Json(Value::Array(page_items)).into_response();
    let link_to = |target: usize| {
        let mut query: Vec<String> = uri.query().unwrap_or("").split('&').filter(|pair| !pair.is_empty() && !pair.starts_with("page=")).map(str::to_owned).collect();
        query.push(format!("page={target}"));
        format!("<{}{}?{}>", shared.base_url, uri.path(), query.join("&"))
    };
    let mut links = Vec::new();
    if number < last {
        links.push(format!("{}; rel=\"next\"", link_to(number + 1)));
        links.push(format!("{}; rel=\"last\"", link_to(last)));
    }
    if number > 1 {
        links.push(format!("{}; rel=\"first\"", link_to(1)));
        links.push(format!("{}; rel=\"prev\"", link_to(number - 1)));
    }
    let headers = response.headers_mut();
    headers.insert("x-total-count", HeaderValue::from(total));
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(","))
    {
        headers.insert(header::LINK, value);
    }
    response
}

fn repository_json(base_url: &str, repository: &Repository) -> Value {
    let full_name = format!("{}/{}", repository.owner, repository.name);
    json!({
        "id": repository.id,
        "owner": {"id": 1, "login": repository.owner, "username": repository.owner},
        "name": repository.name,
        "full_name": full_name,
        "description": "",
        "empty": false,
        "private": repository.private,
        "fork": repository.fork,
        "template": false,
        "mirror": false,
        "archived": repository.archived,
        "default_branch": repository.default_branch,
        "html_url": format!("{base_url}/{full_name}"),
        "clone_url": format!("{base_url}/{full_name}.git"),
        "ssh_url": format!("git@emulator:{full_name}.git"),
        "permissions": {"admin": true, "push": true, "pull": true},
    })
}

/// A title as Gitea stores it, split into the bare title and whether it marks a work in
/// progress.
fn split_draft(title: &str) -> (String, bool) {
    let mut rest = title.trim_start();
    let mut draft = false;
    loop {
        let lower = rest.to_ascii_lowercase();
        match ["[wip]", "wip:"].iter().find(|marker| lower.starts_with(*marker)) {
            Some(marker) => {
                draft = true;
                rest = rest[marker.len()..].trim_start();
            }
            None => return (rest.to_owned(), draft),
        }
    }
}

fn pull_json(base_url: &str, repository: &RepositoryState, pull: &PullRequest) -> Value {
    let Some(record) = &repository.repository else { return Value::Null };
    let full_name = format!("{}/{}", record.owner, record.name);
    let branch = |name: &str| {
        json!({
            "label": name,
            "ref": name,
            "sha": crate::git::branch_commit(&record.git_dir, name).unwrap_or_default(),
            "repo_id": record.id,
            "repo": repository_json(base_url, record),
        })
    };
    let title = if pull.draft { format!("{DRAFT_PREFIX}{}", pull.title) } else { pull.title.clone() };
    json!({
        "id": pull.id,
        "url": format!("{base_url}/{full_name}/pulls/{}", pull.number),
        "number": pull.number,
        "user": {"id": 1, "login": "emulator"},
        "title": title,
        "body": pull.body,
        "labels": [],
        "state": if pull.open { "open" } else { "closed" },
        "draft": pull.draft,
        "is_locked": false,
        "html_url": format!("{base_url}/{full_name}/pulls/{}", pull.number),
        "diff_url": format!("{base_url}/{full_name}/pulls/{}.diff", pull.number),
        "patch_url": format!("{base_url}/{full_name}/pulls/{}.patch", pull.number),
        "mergeable": pull.open && !pull.draft,
        "merged": pull.merged,
        "merged_at": pull.merged_at,
        "merge_commit_sha": Value::Null,
        "base": branch(&pull.base),
        "head": branch(&pull.head),
        "created_at": pull.created_at,
        "updated_at": pull.updated_at,
        "closed_at": if pull.open { Value::Null } else { json!(pull.updated_at) },
    })
}

async fn list_org_repositories(State(shared): SharedState, Path(org): Path<String>, Query(page): Query<PageQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        state
            .repositories
            .iter()
            .filter(|((owner, _), _)| *owner == org)
            .filter_map(|(_, repository)| repository.repository.as_ref())
            .map(|repository| repository_json(&shared.base_url, repository))
            .collect()
    };
    if items.is_empty() {
        return not_found(&shared, &[format!("org does not exist [name: {org}]")]);
    }
    paginate(&shared, &uri, items, &page)
}

async fn get_repository(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>) -> Response {
    let state = shared.lock();
    match state.repository(&owner, &repo).and_then(|repository| repository.repository.as_ref()) {
        Some(repository) => axum::Json(repository_json(&shared.base_url, repository)).into_response(),
        None => not_found(&shared, &[]),
    }
}

#[derive(Debug, Deserialize)]
struct PullsQuery {
    state: Option<String>,
    sort: Option<String>,
    page: Option<usize>,
    limit: Option<usize>,
}

async fn list_pulls(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>, Query(query): Query<PullsQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let Some(repository) = state.repository(&owner, &repo) else { return not_found(&shared, &[]) };
        let mut pulls: Vec<&PullRequest> = repository
            .pulls
            .iter()
            .filter(|pull| match query.state.as_deref().unwrap_or("open") {
                "all" => true,
                "closed" => !pull.open,
                _ => pull.open,
            })
            .collect();
        // Gitea has no head or base filter here: callers page through and filter themselves.
        match query.sort.as_deref() {
            Some("oldest") => pulls.sort_by_key(|pull| pull.number),
            Some("recentupdate") => pulls.sort_by(|a, b| (&b.updated_at, b.number).cmp(&(&a.updated_at, a.number))),
            Some("leastupdate") => pulls.sort_by(|a, b| (&a.updated_at, a.number).cmp(&(&b.updated_at, b.number))),
            _ => pulls.sort_by_key(|pull| std::cmp::Reverse(pull.number)),
        }
        pulls.into_iter().map(|pull| pull_json(&shared.base_url, repository, pull)).collect()
    };
    paginate(&shared, &uri, items, &PageQuery { page: query.page, limit: query.limit })
}

/// The repository's key and the pull request's position in its pulls, or Gitea's 404.
#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn locate(shared: &Shared, state: &EmulatorState, owner: &str, repo: &str, index: &str) -> Result<usize, Response> {
    let Some(repository) = state.repository(owner, repo) else { return Err(not_found(shared, &[])) };
    let Some(number) = parse_number(index) else { return Err(not_found(shared, &[])) };
    repository.pulls.iter().position(|pull| pull.number == number).ok_or_else(|| not_found(shared, &[format!("pull request does not exist [issue_index: {number}]")]))
}

fn render(shared: &Shared, state: &EmulatorState, owner: &str, repo: &str, position: usize, status: StatusCode) -> Response {
    match state.repository(owner, repo).and_then(|repository| Some((repository, repository.pulls.get(position)?))) {
        Some((repository, pull)) => (status, axum::Json(pull_json(&shared.base_url, repository, pull))).into_response(),
        None => not_found(shared, &[]),
    }
}

async fn get_pull(State(shared): SharedState, Path((owner, repo, index)): Path<(String, String, String)>) -> Response {
    let state = shared.lock();
    match locate(&shared, &state, &owner, &repo, &index) {
        Ok(position) => render(&shared, &state, &owner, &repo, position, StatusCode::OK),
        Err(response) => response,
    }
}

/// The request body as a JSON object, or Gitea's answer to one it cannot read.
#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn object_body(shared: &Shared, body: &Bytes) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(error(shared, StatusCode::UNPROCESSABLE_ENTITY, "the request body is not a JSON object")),
    }
}

/// Gitea's message for a second open pull request with the same head and base.
fn already_exists(existing: &PullRequest, repository_id: u64) -> String {
    format!(
        "pull request already exists for these targets [id: {}, issue_id: {}, head_repo_id: {repository_id}, base_repo_id: {repository_id}, head_branch: {}, base_branch: {}]",
        existing.id, existing.number, existing.head, existing.base
    )
}

async fn create_pull(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>, body: Bytes) -> Response {
    let body = match object_body(&shared, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    for (field, name) in [("head", "Head"), ("base", "Base"), ("title", "Title")] {
        if string_field(&body, field).is_none_or(|value| value.trim().is_empty()) {
            return binding_error(name, "RequiredError", "Required");
        }
    }
    let (head, base, title) = (string_field(&body, "head").unwrap_or_default(), string_field(&body, "base").unwrap_or_default(), string_field(&body, "title").unwrap_or_default());
    // `owner:branch` names a branch of this repository when the owner is this one.
    let head = match head.split_once(':') {
        Some((head_owner, branch)) if head_owner == owner => branch.to_owned(),
        Some(_) => return not_found(&shared, &[format!("the emulator has no forks: {head}")]),
        None => head,
    };
    let mut state = shared.lock();
    let id = state.next_id();
    let Some(repository) = state.repository_mut(&owner, &repo) else { return not_found(&shared, &[]) };
    let Some(record) = repository.repository.clone() else { return not_found(&shared, &[]) };
    if record.archived {
        return error(&shared, StatusCode::LOCKED, format!("{owner}/{repo} is archived"));
    }
    let Some(base_sha) = crate::git::branch_commit(&record.git_dir, &base) else {
        return not_found(&shared, &[format!("base branch does not exist [name: {base}]")]);
    };
    let Some(head_sha) = crate::git::branch_commit(&record.git_dir, &head) else {
        return not_found(&shared, &[format!("head branch does not exist [name: {head}]")]);
    };
    if head_sha == base_sha {
        return error(&shared, StatusCode::UNPROCESSABLE_ENTITY, "There are no changes between the head and the base");
    }
    if let Some(existing) = repository.pulls.iter().find(|pull| pull.open && !pull.merged && pull.head == head && pull.base == base) {
        return error(&shared, StatusCode::CONFLICT, already_exists(existing, record.id));
    }
    let (title, draft) = split_draft(&title);
    let now = timestamp(SystemTime::now());
    let number = repository.pulls.iter().map(|pull| pull.number).max().unwrap_or(0) + 1;
    repository.pulls.push(PullRequest {
        id,
        number,
        node_id: format!("PR_{id}"),
        open: true,
        draft,
        merged: false,
        merged_at: None,
        title,
        body: string_field(&body, "body").unwrap_or_default(),
        head,
        base,
        created_at: now.clone(),
        updated_at: now,
    });
    let position = repository.pulls.len() - 1;
    render(&shared, &state, &owner, &repo, position, StatusCode::CREATED)
}

async fn edit_pull(State(shared): SharedState, Path((owner, repo, index)): Path<(String, String, String)>, body: Bytes) -> Response {
    let body = match object_body(&shared, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = shared.lock();
    let position = match locate(&shared, &state, &owner, &repo, &index) {
        Ok(position) => position,
        Err(response) => return response,
    };
    let Some(repository) = state.repository_mut(&owner, &repo) else { return not_found(&shared, &[]) };
    let Some(record) = repository.repository.clone() else { return not_found(&shared, &[]) };
    if record.archived {
        return error(&shared, StatusCode::LOCKED, format!("{owner}/{repo} is archived"));
    }
    let base = string_field(&body, "base").filter(|base| !base.is_empty());
    if let Some(base) = &base
        && crate::git::branch_commit(&record.git_dir, base).is_none()
    {
        return error(&shared, StatusCode::NOT_FOUND, format!("new base '{base}' not exist"));
    }
    let open = match string_field(&body, "state").as_deref() {
        Some("open") => Some(true),
        Some("closed") => Some(false),
        Some(other) => return error(&shared, StatusCode::UNPROCESSABLE_ENTITY, format!("unknown state {other:?}: use open or closed")),
        None => None,
    };
    let current = repository.pulls[position].clone();
    if open.is_some() && current.merged {
        return error(&shared, StatusCode::PRECONDITION_FAILED, "cannot change state of this pull request, it was already merged");
    }
    if open == Some(true) && !current.open {
        let base = base.clone().unwrap_or_else(|| current.base.clone());
        if let Some(existing) = repository.pulls.iter().find(|pull| pull.open && !pull.merged && pull.head == current.head && pull.base == base) {
            return error(&shared, StatusCode::CONFLICT, already_exists(existing, record.id));
        }
    }
    let pull = &mut repository.pulls[position];
    // An empty title leaves it as it is, as on Gitea.
    if let Some(title) = string_field(&body, "title").filter(|title| !title.trim().is_empty()) {
        let (title, draft) = split_draft(&title);
        pull.title = title;
        pull.draft = draft;
    }
    if let Some(text) = string_field(&body, "body") {
        pull.body = text;
    }
    if let Some(base) = base {
        pull.base = base;
    }
    if let Some(open) = open {
        pull.open = open;
    }
    pull.updated_at = timestamp(SystemTime::now());
    // Gitea answers an edit with 201.
    render(&shared, &state, &owner, &repo, position, StatusCode::CREATED)
}

async fn merge_pull(State(shared): SharedState, Path((owner, repo, index)): Path<(String, String, String)>, body: Bytes) -> Response {
    let body = match object_body(&shared, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    match string_field(&body, "Do").as_deref() {
        Some("merge" | "rebase" | "rebase-merge" | "squash" | "fast-forward-only" | "manually-merged") => {}
        Some(_) => return binding_error("Do", "InError", "In"),
        None => return binding_error("Do", "RequiredError", "Required"),
    }
    let mut state = shared.lock();
    let position = match locate(&shared, &state, &owner, &repo, &index) {
        Ok(position) => position,
        Err(response) => return response,
    };
    let Some(pull) = state.repository(&owner, &repo).and_then(|repository| repository.pulls.get(position)).cloned() else {
        return not_found(&shared, &[]);
    };
    if pull.merged {
        // Gitea's own answer carries no message.
        return error(&shared, StatusCode::METHOD_NOT_ALLOWED, "");
    }
    if !pull.open {
        return not_found(&shared, &[]);
    }
    if pull.draft {
        return error(&shared, StatusCode::METHOD_NOT_ALLOWED, "Work in progress PRs cannot be merged");
    }
    match crate::api::merge(&mut state, &owner, &repo, pull.number) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(message) => error(&shared, StatusCode::METHOD_NOT_ALLOWED, message),
    }
}

async fn list_reviews(State(shared): SharedState, Path((owner, repo, index)): Path<(String, String, String)>, Query(page): Query<PageQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let position = match locate(&shared, &state, &owner, &repo, &index) {
            Ok(position) => position,
            Err(response) => return response,
        };
        let Some(repository) = state.repository(&owner, &repo) else { return not_found(&shared, &[]) };
        let Some(pull) = repository.pulls.get(position) else { return not_found(&shared, &[]) };
        let commit = repository.repository.as_ref().and_then(|record| crate::git::branch_commit(&record.git_dir, &pull.head)).unwrap_or_default();
        // A dismissal is no review of its own on Gitea: it marks the reviewer's verdicts.
        let mut reviews: Vec<(String, String, bool)> = Vec::new();
        for review in repository.reviews.get(&pull.number).into_iter().flatten() {
            let state = match review.state.as_str() {
                "DISMISSED" => {
                    for (user, _, dismissed) in &mut reviews {
                        if *user == review.user {
                            *dismissed = true;
                        }
                    }
                    continue;
                }
                "CHANGES_REQUESTED" => "REQUEST_CHANGES",
                "COMMENTED" => "COMMENT",
                other => other,
            };
            reviews.push((review.user.clone(), state.to_owned(), false));
        }
        let pull_url = format!("{}/{owner}/{repo}/pulls/{}", shared.base_url, pull.number);
        reviews
            .into_iter()
            .enumerate()
            .map(|(position, (user, state, dismissed))| {
                json!({
                    "id": position + 1,
                    "user": {"login": user},
                    "state": state,
                    "body": "",
                    "commit_id": commit,
                    "stale": false,
                    "official": true,
                    "dismissed": dismissed,
                    "comments_count": 0,
                    "submitted_at": pull.updated_at,
                    "html_url": format!("{pull_url}#review"),
                    "pull_request_url": pull_url,
                })
            })
            .collect()
    };
    paginate(&shared, &uri, items, &page)
}

fn comment_json(base_url: &str, owner: &str, repo: &str, number: u64, comment: &Comment) -> Value {
    json!({
        "id": comment.id,
        "html_url": format!("{base_url}/{owner}/{repo}/pulls/{number}#issuecomment-{}", comment.id),
        "pull_request_url": format!("{base_url}/{owner}/{repo}/pulls/{number}"),
        "issue_url": "",
        "user": {"login": comment.user},
        "body": comment.body,
        "created_at": comment.created_at,
        "updated_at": comment.created_at,
    })
}

async fn list_comments(State(shared): SharedState, Path((owner, repo, index)): Path<(String, String, String)>, Query(page): Query<PageQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let position = match locate(&shared, &state, &owner, &repo, &index) {
            Ok(position) => position,
            Err(response) => return response,
        };
        let Some(repository) = state.repository(&owner, &repo) else { return not_found(&shared, &[]) };
        let Some(number) = repository.pulls.get(position).map(|pull| pull.number) else { return not_found(&shared, &[]) };
        repository.comments.get(&number).into_iter().flatten().map(|comment| comment_json(&shared.base_url, &owner, &repo, number, comment)).collect()
    };
    paginate(&shared, &uri, items, &page)
}

async fn create_comment(State(shared): SharedState, Path((owner, repo, index)): Path<(String, String, String)>, body: Bytes) -> Response {
    let body = match object_body(&shared, &body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(text) = string_field(&body, "body").filter(|text| !text.trim().is_empty()) else {
        return binding_error("Body", "RequiredError", "Required");
    };
    let mut state = shared.lock();
    let position = match locate(&shared, &state, &owner, &repo, &index) {
        Ok(position) => position,
        Err(response) => return response,
    };
    let id = state.next_id();
    let Some(repository) = state.repository_mut(&owner, &repo) else { return not_found(&shared, &[]) };
    let Some(number) = repository.pulls.get(position).map(|pull| pull.number) else { return not_found(&shared, &[]) };
    let comment = Comment { id, body: text, user: "emulator".into(), created_at: timestamp(SystemTime::now()) };
    let rendered = comment_json(&shared.base_url, &owner, &repo, number, &comment);
    repository.comments.entry(number).or_default().push(comment);
    (StatusCode::CREATED, axum::Json(rendered)).into_response()
}

/// A check run as a Gitea commit status state.
fn status_state(run: &crate::CheckRun) -> &'static str {
    if run.status != "completed" {
        return "pending";
    }
    match run.conclusion.as_deref() {
        Some("success" | "neutral" | "skipped") => "success",
        Some("cancelled" | "stale") => "error",
        _ => "failure",
    }
}

/// Gitea's combined state: the worst of the statuses (error, failure, warning, pending, success).
fn combined(states: &[&'static str]) -> &'static str {
    ["error", "failure", "warning", "pending", "success"].into_iter().find(|candidate| states.contains(candidate)).unwrap_or("")
}

async fn combined_status(State(shared): SharedState, Path((owner, repo, reference)): Path<(String, String, String)>) -> Response {
    let state = shared.lock();
    let Some(repository) = state.repository(&owner, &repo) else { return not_found(&shared, &[]) };
    let Some(record) = repository.repository.as_ref() else { return not_found(&shared, &[]) };
    let Some(sha) = resolve_commit(repository, &reference) else { return not_found(&shared, &[format!("object does not exist [id: {reference}]")]) };
    let runs = repository.checks.get(&sha).map(Vec::as_slice).unwrap_or_default();
    if runs.is_empty() {
        // Gitea answers an empty combined status (no state, no sha) for a commit without any.
        return axum::Json(json!({"state": "", "sha": "", "total_count": 0, "statuses": null, "repository": null, "commit_url": "", "url": ""})).into_response();
    }
    // The latest status per context counts, as on Gitea.
    let mut latest: BTreeMap<&str, &crate::CheckRun> = BTreeMap::new();
    for run in runs {
        latest.insert(&run.name, run);
    }
    let states: Vec<&'static str> = latest.values().map(|run| status_state(run)).collect();
    let statuses: Vec<Value> = latest
        .values()
        .enumerate()
        .map(|(position, run)| json!({"id": position + 1, "status": status_state(run), "context": run.name, "description": "", "target_url": ""}))
        .collect();
    axum::Json(json!({
        "state": combined(&states),
        "sha": sha,
        "total_count": statuses.len(),
        "statuses": statuses,
        "repository": repository_json(&shared.base_url, record),
        "commit_url": format!("{}/api/v1/repos/{owner}/{repo}/git/commits/{sha}", shared.base_url),
        "url": format!("{}/api/v1/repos/{owner}/{repo}/commits/{sha}/status", shared.base_url),
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_in_progress_titles_split_into_flag_and_bare_title() {
        assert_eq!(split_draft("WIP: Fix"), ("Fix".to_owned(), true));
        assert_eq!(split_draft("[wip] Fix"), ("Fix".to_owned(), true));
        assert_eq!(split_draft("Draft: Fix"), ("Draft: Fix".to_owned(), false));
    }

    #[test]
    fn the_combined_state_is_the_worst() {
        assert_eq!(combined(&["success", "pending"]), "pending");
        assert_eq!(combined(&["success", "failure", "pending"]), "failure");
        assert_eq!(combined(&["success"]), "success");
        assert_eq!(combined(&[]), "");
    }
}
