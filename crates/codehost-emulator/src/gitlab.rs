//! GitLab's REST API v4 under `/api/v4`, over the same repositories, pull requests, comments,
//! reviews and check runs as the GitHub routes, so one emulator serves both adapters and a test
//! can act on the forge through either API (or the admin routes) and see it in the other.
//!
//! GitLab's vocabulary is mapped onto the shared state: a project is a repository (addressed by
//! its numeric id or its URL-encoded `group%2Fname` path), a group is an owner, a merge request
//! is a pull request whose `iid` is the pull request's number. A draft is a title starting with
//! `Draft:` on GitLab and a flag on GitHub: the state keeps the flag and the bare title, and
//! these routes add or read the prefix. Approvals are the reviewers whose latest review is
//! `APPROVED`; the head pipeline's status is derived from the check runs on the head commit.
//!
//! It keeps GitLab's documented answers where the adapter depends on them: `{"message": ...}`
//! error bodies (`"401 Unauthorized"`, `"404 Project Not Found"`, the 409 for a second open
//! merge request from a branch), `X-Page`/`X-Next-Page`/`X-Total` and `Link` pagination,
//! `RateLimit-*` headers and a 429 with `Retry-After` when the primary limit is used up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Shared;
use crate::api::{Admission, admit, json_body, parse_number, string_field, token_of};
use crate::state::{Comment, Fault, PullRequest, Repository, RepositoryState, State as EmulatorState, timestamp};

type SharedState = State<Arc<Shared>>;

/// The prefix GitLab's UI and API put before a draft's title.
const DRAFT_PREFIX: &str = "Draft: ";

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/api/v4/groups/{group}/projects", get(list_group_projects))
        .route("/api/v4/projects/{project}", get(get_project))
        .route("/api/v4/projects/{project}/merge_requests", get(list_merge_requests).post(create_merge_request))
        .route("/api/v4/projects/{project}/merge_requests/{iid}", get(get_merge_request).put(update_merge_request))
        .route("/api/v4/projects/{project}/merge_requests/{iid}/merge", put(merge_merge_request))
        .route("/api/v4/projects/{project}/merge_requests/{iid}/approvals", get(approvals))
        .route("/api/v4/projects/{project}/merge_requests/{iid}/notes", get(list_notes).post(create_note))
        .layer(middleware::from_fn_with_state(shared, gitlab_gate))
}

/// GitLab's error body.
fn error(status: StatusCode, message: impl Into<Value>) -> Response {
    (status, axum::Json(json!({"message": message.into()}))).into_response()
}

fn project_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "404 Project Not Found")
}

fn merge_request_not_found() -> Response {
    error(StatusCode::NOT_FOUND, "404 Not found")
}

/// `PRIVATE-TOKEN`, or an OAuth/personal token as `Authorization: Bearer`.
fn gitlab_token(headers: &HeaderMap) -> Option<String> {
    match headers.get("private-token").and_then(|value| value.to_str().ok()) {
        Some(token) => Some(token.trim().to_owned()),
        None => token_of(headers),
    }
}

/// Authentication, injected faults and the primary rate limit, answered as GitLab does.
async fn gitlab_gate(State(shared): SharedState, request: Request, next: Next) -> Response {
    let Some(Admission { fault, decision }) = admit(&shared, gitlab_token(request.headers())) else {
        return error(StatusCode::UNAUTHORIZED, "401 Unauthorized");
    };
    match fault {
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("Server Error")));
        }
        // GitLab has one kind of limit: both faults are its throttling answer.
        Some(Fault::TooManyRequests { retry_after_secs } | Fault::SecondaryLimit { retry_after_secs }) => {
            let mut response = (StatusCode::TOO_MANY_REQUESTS, "Retry later\n").into_response();
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return response;
        }
        Some(Fault::Slow { millis }) => tokio::time::sleep(Duration::from_millis(millis)).await,
        None => {}
    }
    let Some(decision) = decision else { return error(StatusCode::INTERNAL_SERVER_ERROR, "500 Internal Server Error") };
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut response = (StatusCode::TOO_MANY_REQUESTS, "Retry later\n").into_response();
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(decision.reset.saturating_sub(now).max(1)));
        response
    };
    let headers = response.headers_mut();
    headers.insert("ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("ratelimit-reset", HeaderValue::from(decision.reset));
    headers.insert("ratelimit-observed", HeaderValue::from(decision.used));
    response
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<usize>,
    per_page: Option<usize>,
}

/// One page of `items` with GitLab's `X-*` pagination headers and `Link`.
fn paginate(shared: &Shared, uri: &Uri, items: Vec<Value>, page: &PageQuery) -> Response {
    let per_page = page.per_page.unwrap_or(20).clamp(1, 100);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let number = page.page.unwrap_or(1).max(1);
    let page_items: Vec<Value> = items.into_iter().skip((number - 1).saturating_mul(per_page)).take(per_page).collect();
    let mut response = axum::Json(Value::Array(page_items)).into_response();
    let link_to = |target: usize| {
        let mut query: Vec<String> =
            uri.query().unwrap_or("").split('&').filter(|pair| !pair.is_empty() && !pair.starts_with("page=")).map(str::to_owned).collect();
        query.push(format!("page={target}"));
        format!("<{}{}?{}>", shared.base_url, uri.path(), query.join("&"))
    };
    let mut links = Vec::new();
    let next = if number < last { number + 1 } else { 0 };
    // 0: no such page (an empty header, as GitLab sends).
    let previous = number.saturating_sub(1);
    if next > 0 {
        links.push(format!("{}; rel=\"next\"", link_to(next)));
    }
    if previous > 0 {
        links.push(format!("{}; rel=\"prev\"", link_to(previous)));
    }
    links.push(format!("{}; rel=\"first\"", link_to(1)));
    links.push(format!("{}; rel=\"last\"", link_to(last)));
    let headers = response.headers_mut();
    let page_header = |value: usize| if value == 0 { HeaderValue::from_static("") } else { HeaderValue::from(value) };
    headers.insert("x-page", HeaderValue::from(number));
    headers.insert("x-per-page", HeaderValue::from(per_page));
    headers.insert("x-next-page", page_header(next));
    headers.insert("x-prev-page", page_header(previous));
    headers.insert("x-total", HeaderValue::from(total));
    headers.insert("x-total-pages", HeaderValue::from(last));
    if let Ok(value) = HeaderValue::from_str(&links.join(", ")) {
        headers.insert(header::LINK, value);
    }
    response
}

/// The `(owner, name)` key of a project given by numeric id or by (decoded) path.
fn project_key(state: &EmulatorState, project: &str) -> Option<(String, String)> {
    if let Ok(id) = project.parse::<u64>() {
        return state
            .repositories
            .iter()
            .find(|(_, repository)| repository.repository.as_ref().is_some_and(|record| record.id == id))
            .map(|(key, _)| key.clone());
    }
    let (owner, name) = project.split_once('/')?;
    state.repository(owner, name).map(|_| (owner.to_owned(), name.to_owned()))
}

pub(crate) fn project_json(base_url: &str, repository: &Repository) -> Value {
    let path = format!("{}/{}", repository.owner, repository.name);
    json!({
        "id": repository.id,
        "name": repository.name,
        "path": repository.name,
        "path_with_namespace": path,
        "namespace": {"path": repository.owner, "full_path": repository.owner, "kind": "group"},
        "default_branch": repository.default_branch,
        "archived": repository.archived,
        "visibility": if repository.private { "private" } else { "public" },
        "forked_from_project": if repository.fork { json!({"id": 0}) } else { Value::Null },
        "web_url": format!("{base_url}/{path}"),
        "http_url_to_repo": format!("{base_url}/{path}.git"),
    })
}

/// The head pipeline's status, from the check runs on the head commit.
pub(crate) fn pipeline_status(runs: &[crate::CheckRun]) -> &'static str {
    let failed = runs.iter().any(|run| matches!(run.conclusion.as_deref(), Some("failure" | "cancelled" | "timed_out" | "action_required")));
    if failed {
        "failed"
    } else if runs.iter().any(|run| run.status != "completed") {
        "running"
    } else {
        "success"
    }
}

pub(crate) fn merge_request_json(base_url: &str, repository: &RepositoryState, pull: &PullRequest, detailed: bool) -> Value {
    let Some(record) = &repository.repository else { return Value::Null };
    let sha = crate::git::branch_commit(&record.git_dir, &pull.head);
    let title = if pull.draft { format!("{DRAFT_PREFIX}{}", pull.title) } else { pull.title.clone() };
    let state = if pull.merged {
        "merged"
    } else if pull.open {
        "opened"
    } else {
        "closed"
    };
    let mut rendered = json!({
        "id": pull.id,
        "iid": pull.number,
        "project_id": record.id,
        "title": title,
        "description": pull.body,
        "state": state,
        "draft": pull.draft,
        "work_in_progress": pull.draft,
        "source_branch": pull.head,
        "target_branch": pull.base,
        "source_project_id": record.id,
        "target_project_id": record.id,
        "sha": sha,
        "merged_at": pull.merged_at,
        "author": {"username": "emulator"},
        "web_url": format!("{base_url}/{}/{}/-/merge_requests/{}", record.owner, record.name, pull.number),
        "created_at": pull.created_at,
        "updated_at": pull.updated_at,
    });
    // As on GitLab, only single merge request answers carry the head pipeline.
    if detailed {
        let pipeline = sha.as_ref().and_then(|sha| repository.checks.get(sha)).filter(|runs| !runs.is_empty()).map(|runs| {
            json!({"id": pull.id, "sha": sha, "ref": pull.head, "status": pipeline_status(runs)})
        });
        rendered["head_pipeline"] = pipeline.unwrap_or(Value::Null);
    }
    rendered
}

async fn list_group_projects(State(shared): SharedState, Path(group): Path<String>, Query(page): Query<PageQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        state
            .repositories
            .iter()
            .filter(|((owner, _), _)| *owner == group)
            .filter_map(|(_, repository)| repository.repository.as_ref())
            .map(|repository| project_json(&shared.base_url, repository))
            .collect()
    };
    if items.is_empty() {
        return error(StatusCode::NOT_FOUND, "404 Group Not Found");
    }
    paginate(&shared, &uri, items, &page)
}

async fn get_project(State(shared): SharedState, Path(project): Path<String>) -> Response {
    let state = shared.lock();
    let Some((owner, name)) = project_key(&state, &project) else { return project_not_found() };
    match state.repository(&owner, &name).and_then(|repository| repository.repository.as_ref()) {
        Some(repository) => axum::Json(project_json(&shared.base_url, repository)).into_response(),
        None => project_not_found(),
    }
}

#[derive(Debug, Deserialize)]
struct MergeRequestsQuery {
    state: Option<String>,
    source_branch: Option<String>,
    target_branch: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list_merge_requests(State(shared): SharedState, Path(project): Path<String>, Query(query): Query<MergeRequestsQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let Some((owner, name)) = project_key(&state, &project) else { return project_not_found() };
        let Some(repository) = state.repository(&owner, &name) else { return project_not_found() };
        let mut pulls: Vec<&PullRequest> = repository
            .pulls
            .iter()
            .filter(|pull| match query.state.as_deref().unwrap_or("all") {
                "opened" => pull.open,
                "closed" => !pull.open && !pull.merged,
                "merged" => pull.merged,
                _ => true,
            })
            .filter(|pull| query.source_branch.as_ref().is_none_or(|branch| *branch == pull.head))
            .filter(|pull| query.target_branch.as_ref().is_none_or(|branch| *branch == pull.base))
            .collect();
        pulls.sort_by_key(|pull| std::cmp::Reverse(pull.number));
        pulls.into_iter().map(|pull| merge_request_json(&shared.base_url, repository, pull, false)).collect()
    };
    paginate(&shared, &uri, items, &PageQuery { page: query.page, per_page: query.per_page })
}

/// The project's key and the merge request's index in its pulls, or GitLab's 404.
#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn locate(state: &EmulatorState, project: &str, iid: &str) -> Result<((String, String), usize), Response> {
    let Some(key) = project_key(state, project) else { return Err(project_not_found()) };
    let Some(repository) = state.repository(&key.0, &key.1) else { return Err(project_not_found()) };
    let Some(iid) = parse_number(iid) else { return Err(merge_request_not_found()) };
    match repository.pulls.iter().position(|pull| pull.number == iid) {
        Some(index) => Ok((key, index)),
        None => Err(merge_request_not_found()),
    }
}

fn render(shared: &Shared, state: &EmulatorState, key: &(String, String), index: usize) -> Response {
    match state.repository(&key.0, &key.1).and_then(|repository| Some((repository, repository.pulls.get(index)?))) {
        Some((repository, pull)) => axum::Json(merge_request_json(&shared.base_url, repository, pull, true)).into_response(),
        None => merge_request_not_found(),
    }
}

async fn get_merge_request(State(shared): SharedState, Path((project, iid)): Path<(String, String)>) -> Response {
    let state = shared.lock();
    match locate(&state, &project, &iid) {
        Ok((key, index)) => render(&shared, &state, &key, index),
        Err(response) => response,
    }
}

/// A title as GitLab stores it, split into the bare title and whether it marks a draft.
fn split_draft(title: &str) -> (String, bool) {
    let mut rest = title.trim_start();
    let mut draft = false;
    loop {
        let lower = rest.to_ascii_lowercase();
        match ["[draft]", "(draft)", "draft:", "[wip]", "wip:"].iter().find(|marker| lower.starts_with(*marker)) {
            Some(marker) => {
                draft = true;
                rest = rest[marker.len()..].trim_start();
            }
            None => return (rest.to_owned(), draft),
        }
    }
}

async fn create_merge_request(State(shared): SharedState, Path(project): Path<String>, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    // Grape's answers for missing parameters.
    for field in ["source_branch", "target_branch", "title"] {
        if string_field(&body, field).is_none_or(|value| value.trim().is_empty()) {
            return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": format!("{field} is missing")}))).into_response();
        }
    }
    let (source, target, title) = (
        string_field(&body, "source_branch").unwrap_or_default(),
        string_field(&body, "target_branch").unwrap_or_default(),
        string_field(&body, "title").unwrap_or_default(),
    );
    let mut state = shared.lock();
    let id = state.next_id();
    let Some((owner, name)) = project_key(&state, &project) else { return project_not_found() };
    let Some(repository) = state.repository_mut(&owner, &name) else { return project_not_found() };
    let Some(record) = repository.repository.clone() else { return project_not_found() };
    if record.archived {
        return error(StatusCode::FORBIDDEN, "403 Forbidden - Project is archived");
    }
    if crate::git::branch_commit(&record.git_dir, &source).is_none() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, json!([format!("Source branch \"{source}\" does not exist")]));
    }
    if crate::git::branch_commit(&record.git_dir, &target).is_none() {
        return error(StatusCode::UNPROCESSABLE_ENTITY, json!([format!("Target branch \"{target}\" does not exist")]));
    }
    if let Some(existing) = repository.pulls.iter().find(|pull| pull.open && pull.head == source) {
        return error(
            StatusCode::CONFLICT,
            json!([format!("Another open merge request already exists for this source branch: !{}", existing.number)]),
        );
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
        body: string_field(&body, "description").unwrap_or_default(),
        head: source,
        base: target,
        created_at: now.clone(),
        updated_at: now,
    });
    let index = repository.pulls.len() - 1;
    crate::webhooks::announce(&shared, &state, &owner, &name, Some(number), crate::webhooks::Action::Opened);
    let mut response = render(&shared, &state, &(owner, name), index);
    *response.status_mut() = StatusCode::CREATED;
    response
}

async fn update_merge_request(State(shared): SharedState, Path((project, iid)): Path<(String, String)>, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = shared.lock();
    let (key, index) = match locate(&state, &project, &iid) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(repository) = state.repository_mut(&key.0, &key.1) else { return project_not_found() };
    let Some(record) = repository.repository.clone() else { return project_not_found() };
    if let Some(target) = string_field(&body, "target_branch")
        && crate::git::branch_commit(&record.git_dir, &target).is_none()
    {
        return error(StatusCode::UNPROCESSABLE_ENTITY, json!([format!("Target branch \"{target}\" does not exist")]));
    }
    let event = string_field(&body, "state_event");
    match event.as_deref() {
        Some("close" | "reopen") | None => {}
        Some(_) => return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "state_event does not have a valid value"}))).into_response(),
    }
    let head = repository.pulls[index].head.clone();
    if event.as_deref() == Some("reopen")
        && !repository.pulls[index].open
        && !repository.pulls[index].merged
        && repository.pulls.iter().any(|pull| pull.open && pull.head == head)
    {
        return error(
            StatusCode::CONFLICT,
            json!(["Cannot reopen merge request: Another open merge request already exists for this source branch"]),
        );
    }
    let pull = &mut repository.pulls[index];
    if let Some(title) = string_field(&body, "title") {
        let (title, draft) = split_draft(&title);
        pull.title = title;
        pull.draft = draft;
    }
    if let Some(description) = string_field(&body, "description") {
        pull.body = description;
    }
    if let Some(target) = string_field(&body, "target_branch") {
        pull.base = target;
    }
    let was_open = pull.open;
    // Merged merge requests ignore state events, as on GitLab.
    if !pull.merged {
        match event.as_deref() {
            Some("close") => pull.open = false,
            Some("reopen") => pull.open = true,
            _ => {}
        }
    }
    pull.updated_at = timestamp(SystemTime::now());
    let (now_open, number) = (pull.open, pull.number);
    if was_open != now_open {
        let action = if now_open { crate::webhooks::Action::Reopened } else { crate::webhooks::Action::Closed };
        crate::webhooks::announce(&shared, &state, &key.0, &key.1, Some(number), action);
    }
    render(&shared, &state, &key, index)
}

async fn merge_merge_request(State(shared): SharedState, Path((project, iid)): Path<(String, String)>, body: Bytes) -> Response {
    if !body.is_empty()
        && let Err(response) = json_body(&body)
    {
        return response;
    }
    let mut state = shared.lock();
    let (key, index) = match locate(&state, &project, &iid) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(number) = state.repository(&key.0, &key.1).and_then(|repository| repository.pulls.get(index)).map(|pull| pull.number) else {
        return merge_request_not_found();
    };
    match crate::api::merge(&mut state, &key.0, &key.1, number) {
        Ok(()) => {
            crate::webhooks::announce(&shared, &state, &key.0, &key.1, Some(number), crate::webhooks::Action::Merged);
            render(&shared, &state, &key, index)
        }
        Err(_) => error(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed"),
    }
}

async fn approvals(State(shared): SharedState, Path((project, iid)): Path<(String, String)>) -> Response {
    let state = shared.lock();
    let (key, index) = match locate(&state, &project, &iid) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let Some(repository) = state.repository(&key.0, &key.1) else { return project_not_found() };
    let Some(pull) = repository.pulls.get(index) else { return merge_request_not_found() };
    // Each reviewer's latest verdict; only approvals count on GitLab.
    let mut latest: BTreeMap<&str, &str> = BTreeMap::new();
    for review in repository.reviews.get(&pull.number).into_iter().flatten() {
        match review.state.as_str() {
            "APPROVED" | "CHANGES_REQUESTED" => {
                latest.insert(&review.user, &review.state);
            }
            "DISMISSED" => {
                latest.remove(review.user.as_str());
            }
            _ => {}
        }
    }
    let approved_by: Vec<Value> =
        latest.iter().filter(|(_, state)| **state == "APPROVED").map(|(user, _)| json!({"user": {"username": user}})).collect();
    axum::Json(json!({
        "id": pull.id,
        "iid": pull.number,
        "project_id": repository.repository.as_ref().map(|record| record.id),
        "approved": !approved_by.is_empty(),
        "approvals_required": 0,
        "approvals_left": 0,
        "approved_by": approved_by,
    }))
    .into_response()
}

fn note_json(comment: &Comment) -> Value {
    json!({"id": comment.id, "body": comment.body, "author": {"username": comment.user}, "created_at": comment.created_at, "system": false})
}

async fn list_notes(State(shared): SharedState, Path((project, iid)): Path<(String, String)>, Query(page): Query<PageQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let (key, index) = match locate(&state, &project, &iid) {
            Ok(found) => found,
            Err(response) => return response,
        };
        let Some(repository) = state.repository(&key.0, &key.1) else { return project_not_found() };
        let Some(number) = repository.pulls.get(index).map(|pull| pull.number) else { return merge_request_not_found() };
        repository.comments.get(&number).into_iter().flatten().map(note_json).collect()
    };
    paginate(&shared, &uri, items, &page)
}

async fn create_note(State(shared): SharedState, Path((project, iid)): Path<(String, String)>, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(text) = string_field(&body, "body").filter(|text| !text.trim().is_empty()) else {
        return (StatusCode::BAD_REQUEST, axum::Json(json!({"error": "body is missing"}))).into_response();
    };
    let mut state = shared.lock();
    let (key, index) = match locate(&state, &project, &iid) {
        Ok(found) => found,
        Err(response) => return response,
    };
    let id = state.next_id();
    let Some(repository) = state.repository_mut(&key.0, &key.1) else { return project_not_found() };
    let Some(number) = repository.pulls.get(index).map(|pull| pull.number) else { return merge_request_not_found() };
    let comment = Comment { id, body: text, user: "emulator".into(), created_at: timestamp(SystemTime::now()) };
    let rendered = note_json(&comment);
    repository.comments.entry(number).or_default().push(comment);
    (StatusCode::CREATED, axum::Json(rendered)).into_response()
}
