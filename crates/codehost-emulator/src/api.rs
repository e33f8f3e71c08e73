//! The HTTP side: GitHub's REST routes, the one GraphQL mutation, git smart HTTP, and the
//! `/_emulator/` admin routes tests use to act as a person on the forge and inject faults.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use futures_util::TryStreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::Shared;
use crate::state::{Comment, Fault, PullRequest, RateLimitConfig, RepositoryState, Review, State as EmulatorState, timestamp};
use crate::{CheckRun, NewRepository};

type SharedState = State<Arc<Shared>>;

const DOCS: &str = "https://docs.github.com/rest";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/orgs/{org}/repos", get(list_org_repositories))
        .route("/repos/{owner}/{repo}", get(get_repository))
        .route("/repos/{owner}/{repo}/pulls", get(list_pulls).post(create_pull))
        .route("/repos/{owner}/{repo}/pulls/{number}", get(get_pull).patch(update_pull))
        .route("/repos/{owner}/{repo}/pulls/{number}/merge", axum::routing::put(merge_pull))
        .route("/repos/{owner}/{repo}/pulls/{number}/reviews", get(list_reviews))
        .route("/repos/{owner}/{repo}/issues/{number}/comments", get(list_comments).post(create_comment))
        .route("/repos/{owner}/{repo}/commits/{reference}/check-runs", get(list_check_runs))
        .route("/graphql", post(graphql))
        .layer(middleware::from_fn_with_state(shared.clone(), api_gate));
    let git = Router::new()
        .route("/{owner}/{repo}/info/refs", get(git_info_refs))
        .route("/{owner}/{repo}/git-upload-pack", post(git_upload_pack))
        .route("/{owner}/{repo}/git-receive-pack", post(git_receive_pack))
        .layer(DefaultBodyLimit::disable());
    let admin = Router::new()
        .route("/_emulator/repos", post(admin_create_repository))
        .route("/_emulator/faults", post(admin_faults))
        .route("/_emulator/rate-limit", post(admin_rate_limit))
        .route("/_emulator/stats", get(admin_stats))
        .route("/_emulator/repos/{owner}/{repo}/pulls/{number}/merge", post(admin_merge))
        .route("/_emulator/repos/{owner}/{repo}/pulls/{number}/close", post(admin_close))
        .route("/_emulator/repos/{owner}/{repo}/pulls/{number}/reviews", post(admin_review))
        .route("/_emulator/repos/{owner}/{repo}/commits/{reference}/check-runs", post(admin_check_run))
        .route("/_emulator/hooks", post(crate::webhooks::admin_add).delete(crate::webhooks::admin_clear))
        .route("/_emulator/hooks/deliveries", get(crate::webhooks::admin_deliveries));
    api.merge(crate::gitlab::router(shared.clone()))
        .merge(crate::gitea::router(shared.clone()))
        .merge(crate::bitbucket::router(shared.clone()))
        .merge(git)
        .merge(admin)
        .with_state(shared)
}

/// GitHub's error body.
fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message, "documentation_url": DOCS}))).into_response()
}

/// A 422 with `errors`, as GitHub reports validation failures.
fn validation(errors: Value) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"message": "Validation Failed", "errors": errors, "documentation_url": DOCS}))).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "Not Found")
}

pub(crate) fn token_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" | "token" => Some(credential.trim().to_owned()),
        "basic" => {
            let decoded = base64::engine::general_purpose::STANDARD.decode(credential.trim()).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (user, password) = decoded.split_once(':')?;
            // Git sends the token as the password (any user name), some tools as the user.
            Some(if password.is_empty() { user.to_owned() } else { password.to_owned() })
        }
        _ => None,
    }
}

/// What the gate decided for one API request (both API styles share it).
pub(crate) struct Admission {
    pub(crate) fault: Option<Fault>,
    /// `None` when a fault is served instead of the request.
    pub(crate) decision: Option<crate::state::RateLimitDecision>,
}

/// Counts the request, checks the token (`None`: refused), pops the next injected fault and
/// applies the primary rate limit.
pub(crate) fn admit(shared: &Shared, token: Option<String>) -> Option<Admission> {
    let mut state = shared.lock();
    state.stats.requests += 1;
    let token = token.filter(|token| state.tokens.contains(token))?;
    let now = SystemTime::now();
    let fault = match state.outage.iter().find(|(_, until)| now < *until) {
        Some((fault, _)) => Some(*fault),
        None => state.faults.pop_front(),
    };
    if fault.is_some() {
        state.stats.faults_served += 1;
    }
    let decision = match fault {
        Some(Fault::Slow { .. }) | None => Some(state.count_request(&token, SystemTime::now())),
        Some(_) => None,
    };
    Some(Admission { fault, decision })
}

/// Authentication, injected faults and the primary rate limit, in GitHub's order.
async fn api_gate(State(shared): SharedState, request: Request, next: Next) -> Response {
    let Some(Admission { fault, decision }) = admit(&shared, token_of(request.headers())) else {
        return error(StatusCode::UNAUTHORIZED, "Bad credentials");
    };
    match fault {
        Some(Fault::ServerError { status }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, "Server Error");
        }
        Some(Fault::TooManyRequests { retry_after_secs }) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            let headers = response.headers_mut();
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            // As GitHub does: the rate-limit headers come with it, the window used up until the reset.
            let reset = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_secs()) + retry_after_secs;
            headers.insert("x-ratelimit-limit", HeaderValue::from(5000));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
            headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
            return response;
        }
        Some(Fault::SecondaryLimit { retry_after_secs }) => {
            let mut response = error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.",
            );
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return response;
        }
        Some(Fault::Slow { millis }) => tokio::time::sleep(Duration::from_millis(millis)).await,
        None => {}
    }
    let Some(decision) = decision else { return error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error") };
    let mut response = if decision.allowed {
        next.run(request).await
    } else {
        error(StatusCode::FORBIDDEN, "API rate limit exceeded for user ID 1. (But here's the good news: Authenticated requests get a higher rate limit. Check out the documentation for more details.)")
    };
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(decision.limit));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(decision.remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(decision.reset));
    headers.insert("x-ratelimit-used", HeaderValue::from(decision.used));
    headers.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    response
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    page: Option<usize>,
    per_page: Option<usize>,
}

/// One page of `items` and, when there are more, a `Link` header like GitHub's.
fn paginate(shared: &Shared, uri: &Uri, items: Vec<Value>, page: &PageQuery) -> Response {
    let per_page = page.per_page.unwrap_or(30).clamp(1, 100);
    let number = page.page.unwrap_or(1).max(1);
    let last = items.len().div_ceil(per_page).max(1);
    let page_items: Vec<Value> = items.into_iter().skip((number - 1).saturating_mul(per_page)).take(per_page).collect();
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
        links.push(format!("{}; rel=\"prev\"", link_to(number - 1)));
        links.push(format!("{}; rel=\"first\"", link_to(1)));
    }
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

pub(crate) fn repository_json(base_url: &str, repository: &crate::state::Repository) -> Value {
    let full_name = format!("{}/{}", repository.owner, repository.name);
    json!({
        "id": repository.id,
        "node_id": format!("R_{}", repository.id),
        "name": repository.name,
        "full_name": full_name,
        "owner": {"login": repository.owner},
        "private": repository.private,
        "fork": repository.fork,
        "archived": repository.archived,
        "default_branch": repository.default_branch,
        "html_url": format!("{base_url}/{full_name}"),
        "clone_url": format!("{base_url}/{full_name}.git"),
        "url": format!("{base_url}/repos/{full_name}"),
    })
}

pub(crate) fn pull_json(base_url: &str, repository: &RepositoryState, pull: &PullRequest) -> Value {
    let Some(repo) = &repository.repository else { return Value::Null };
    let full_name = format!("{}/{}", repo.owner, repo.name);
    let branch = |name: &str| {
        json!({
            "ref": name,
            "label": format!("{}:{name}", repo.owner),
            "sha": crate::git::branch_commit(&repo.git_dir, name),
            "repo": repository_json(base_url, repo),
        })
    };
    json!({
        "id": pull.id,
        "node_id": pull.node_id,
        "number": pull.number,
        "url": format!("{base_url}/repos/{full_name}/pulls/{}", pull.number),
        "html_url": format!("{base_url}/{full_name}/pull/{}", pull.number),
        "state": if pull.open { "open" } else { "closed" },
        "draft": pull.draft,
        "merged": pull.merged,
        "merged_at": pull.merged_at,
        "title": pull.title,
        "body": pull.body,
        "head": branch(&pull.head),
        "base": branch(&pull.base),
        "user": {"login": "emulator"},
        "created_at": pull.created_at,
        "updated_at": pull.updated_at,
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
        return not_found();
    }
    paginate(&shared, &uri, items, &page)
}

async fn get_repository(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>) -> Response {
    let state = shared.lock();
    match state.repository(&owner, &repo).and_then(|repository| repository.repository.as_ref()) {
        Some(repository) => axum::Json(repository_json(&shared.base_url, repository)).into_response(),
        None => not_found(),
    }
}

#[derive(Debug, Deserialize)]
struct PullsQuery {
    state: Option<String>,
    head: Option<String>,
    base: Option<String>,
    page: Option<usize>,
    per_page: Option<usize>,
}

async fn list_pulls(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>, Query(query): Query<PullsQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let Some(repository) = state.repository(&owner, &repo) else { return not_found() };
        let wanted_state = query.state.as_deref().unwrap_or("open");
        // `head` is `owner:branch`; GitHub ignores the filter's owner part only when absent.
        let head = query.head.as_deref().map(|head| match head.split_once(':') {
            Some((head_owner, branch)) => (Some(head_owner), branch),
            None => (None, head),
        });
        let mut pulls: Vec<&PullRequest> = repository
            .pulls
            .iter()
            .filter(|pull| match wanted_state {
                "all" => true,
                "closed" => !pull.open,
                _ => pull.open,
            })
            .filter(|pull| match head {
                Some((head_owner, branch)) => head_owner.is_none_or(|head_owner| head_owner == owner) && pull.head == branch,
                None => true,
            })
            .filter(|pull| query.base.as_ref().is_none_or(|base| *base == pull.base))
            .collect();
        pulls.sort_by_key(|pull| std::cmp::Reverse(pull.number));
        pulls.into_iter().map(|pull| pull_json(&shared.base_url, repository, pull)).collect()
    };
    paginate(&shared, &uri, items, &PageQuery { page: query.page, per_page: query.per_page })
}

pub(crate) fn find_pull<'a>(state: &'a mut EmulatorState, owner: &str, repo: &str, number: u64) -> Option<&'a mut PullRequest> {
    state.repository_mut(owner, repo)?.pulls.iter_mut().find(|pull| pull.number == number)
}

pub(crate) fn parse_number(number: &str) -> Option<u64> {
    number.parse().ok()
}

async fn get_pull(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>) -> Response {
    let state = shared.lock();
    let Some(repository) = state.repository(&owner, &repo) else { return not_found() };
    let Some(pull) = parse_number(&number).and_then(|number| repository.pulls.iter().find(|pull| pull.number == number)) else {
        return not_found();
    };
    axum::Json(pull_json(&shared.base_url, repository, pull)).into_response()
}

#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
pub(crate) fn json_body(body: &Bytes) -> Result<Value, Response> {
    match serde_json::from_slice::<Value>(body) {
        Ok(value @ Value::Object(_)) => Ok(value),
        _ => Err(error(StatusCode::BAD_REQUEST, "Problems parsing JSON")),
    }
}

pub(crate) fn string_field(body: &Value, field: &str) -> Option<String> {
    body.get(field).and_then(Value::as_str).map(str::to_owned)
}

async fn create_pull(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = shared.lock();
    let id = state.next_id();
    let Some(repository) = state.repository_mut(&owner, &repo) else { return not_found() };
    let Some(repo_record) = repository.repository.clone() else { return not_found() };
    if repo_record.archived {
        return error(StatusCode::FORBIDDEN, "Repository was archived so is read-only.");
    }
    let Some(title) = string_field(&body, "title").filter(|title| !title.trim().is_empty()) else {
        return validation(json!([{"resource": "PullRequest", "field": "title", "code": "missing_field"}]));
    };
    let Some(head) = string_field(&body, "head") else {
        return validation(json!([{"resource": "PullRequest", "field": "head", "code": "missing_field"}]));
    };
    let head = match head.split_once(':') {
        Some((head_owner, branch)) if head_owner == owner => branch.to_owned(),
        Some(_) => return validation(json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}])),
        None => head,
    };
    let base = string_field(&body, "base").unwrap_or_else(|| repo_record.default_branch.clone());
    let Some(base_sha) = crate::git::branch_commit(&repo_record.git_dir, &base) else {
        return validation(json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]));
    };
    let Some(head_sha) = crate::git::branch_commit(&repo_record.git_dir, &head) else {
        return validation(json!([{"resource": "PullRequest", "field": "head", "code": "invalid"}]));
    };
    if head_sha == base_sha {
        return validation(json!([{"resource": "PullRequest", "code": "custom", "message": format!("No commits between {base} and {head}")}]));
    }
    if repository.pulls.iter().any(|pull| pull.open && pull.head == head) {
        return validation(json!([{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {owner}:{head}.")}]));
    }
    let now = timestamp(SystemTime::now());
    let number = repository.pulls.iter().map(|pull| pull.number).max().unwrap_or(0) + 1;
    let pull = PullRequest {
        id,
        number,
        node_id: format!("PR_{id}"),
        open: true,
        draft: body.get("draft").and_then(Value::as_bool).unwrap_or(false),
        merged: false,
        merged_at: None,
        title,
        body: string_field(&body, "body").unwrap_or_default(),
        head,
        base,
        created_at: now.clone(),
        updated_at: now,
    };
    let rendered = pull_json(&shared.base_url, repository, &pull);
    repository.pulls.push(pull);
    crate::webhooks::announce(&shared, &state, &owner, &repo, Some(number), crate::webhooks::Action::Opened);
    (StatusCode::CREATED, axum::Json(rendered)).into_response()
}

async fn update_pull(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let mut state = shared.lock();
    let Some(repository) = state.repository_mut(&owner, &repo) else { return not_found() };
    let Some(repo_record) = repository.repository.clone() else { return not_found() };
    let Some(number) = parse_number(&number) else { return not_found() };
    let Some(index) = repository.pulls.iter().position(|pull| pull.number == number) else { return not_found() };
    if let Some(base) = string_field(&body, "base")
        && crate::git::branch_commit(&repo_record.git_dir, &base).is_none()
    {
        return validation(json!([{"resource": "PullRequest", "field": "base", "code": "invalid"}]));
    }
    let reopen = match string_field(&body, "state").as_deref() {
        Some("open") => Some(true),
        Some("closed") => Some(false),
        Some(_) => return validation(json!([{"resource": "PullRequest", "field": "state", "code": "invalid"}])),
        None => None,
    };
    let head = repository.pulls[index].head.clone();
    if reopen == Some(true) && !repository.pulls[index].open {
        if repository.pulls[index].merged {
            return validation(json!([{"resource": "PullRequest", "code": "custom", "message": "state cannot be changed. The pull request has been merged."}]));
        }
        if repository.pulls.iter().any(|pull| pull.open && pull.head == head) {
            return validation(json!([{"resource": "PullRequest", "code": "custom", "message": format!("A pull request already exists for {owner}:{head}.")}]));
        }
    }
    let was_open = repository.pulls[index].open;
    let pull = &mut repository.pulls[index];
    if let Some(title) = string_field(&body, "title") {
        pull.title = title;
    }
    if let Some(text) = string_field(&body, "body") {
        pull.body = text;
    }
    if let Some(base) = string_field(&body, "base") {
        pull.base = base;
    }
    if let Some(open) = reopen
        && !pull.merged
    {
        pull.open = open;
    }
    pull.updated_at = timestamp(SystemTime::now());
    let pull = pull.clone();
    let rendered = pull_json(&shared.base_url, repository, &pull);
    if was_open != pull.open {
        let action = if pull.open { crate::webhooks::Action::Reopened } else { crate::webhooks::Action::Closed };
        crate::webhooks::announce(&shared, &state, &owner, &repo, Some(number), action);
    }
    axum::Json(rendered).into_response()
}

/// Merges as GitHub's merge button does (without writing the merge commit; see the crate docs).
pub(crate) fn merge(state: &mut EmulatorState, owner: &str, repo: &str, number: u64) -> Result<(), String> {
    let pull = find_pull(state, owner, repo, number).ok_or_else(|| format!("no pull request #{number} in {owner}/{repo}"))?;
    if pull.merged || !pull.open {
        return Err("Pull Request is not mergeable".into());
    }
    if pull.draft {
        return Err("Pull Request is still a draft".into());
    }
    let now = timestamp(SystemTime::now());
    pull.merged = true;
    pull.open = false;
    pull.merged_at = Some(now.clone());
    pull.updated_at = now;
    Ok(())
}

async fn merge_pull(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>, body: Bytes) -> Response {
    if !body.is_empty()
        && let Err(response) = json_body(&body)
    {
        return response;
    }
    let mut state = shared.lock();
    let Some(number) = parse_number(&number) else { return not_found() };
    if find_pull(&mut state, &owner, &repo, number).is_none() {
        return not_found();
    }
    match merge(&mut state, &owner, &repo, number) {
        Ok(()) => {
            crate::webhooks::announce(&shared, &state, &owner, &repo, Some(number), crate::webhooks::Action::Merged);
            let sha = state
                .repository(&owner, &repo)
                .and_then(|repository| {
                    let pull = repository.pulls.iter().find(|pull| pull.number == number)?;
                    crate::git::branch_commit(&repository.repository.as_ref()?.git_dir, &pull.head)
                })
                .unwrap_or_default();
            axum::Json(json!({"sha": sha, "merged": true, "message": "Pull Request successfully merged"})).into_response()
        }
        Err(message) => error(StatusCode::METHOD_NOT_ALLOWED, &message),
    }
}

async fn list_reviews(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>, Query(page): Query<PageQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let Some(repository) = state.repository(&owner, &repo) else { return not_found() };
        let Some(number) = parse_number(&number).filter(|number| repository.pulls.iter().any(|pull| pull.number == *number)) else {
            return not_found();
        };
        repository
            .reviews
            .get(&number)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(index, review)| json!({"id": index + 1, "user": {"login": review.user}, "state": review.state, "body": ""}))
            .collect()
    };
    paginate(&shared, &uri, items, &page)
}

async fn list_comments(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>, Query(page): Query<PageQuery>, uri: Uri) -> Response {
    let items: Vec<Value> = {
        let state = shared.lock();
        let Some(repository) = state.repository(&owner, &repo) else { return not_found() };
        let Some(number) = parse_number(&number) else { return not_found() };
        repository
            .comments
            .get(&number)
            .into_iter()
            .flatten()
            .map(|comment| json!({"id": comment.id, "body": comment.body, "user": {"login": comment.user}, "created_at": comment.created_at}))
            .collect()
    };
    paginate(&shared, &uri, items, &page)
}

async fn create_comment(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let Some(text) = string_field(&body, "body") else {
        return validation(json!([{"resource": "IssueComment", "field": "body", "code": "missing_field"}]));
    };
    let mut state = shared.lock();
    let id = state.next_id();
    let Some(repository) = state.repository_mut(&owner, &repo) else { return not_found() };
    let Some(number) = parse_number(&number).filter(|number| repository.pulls.iter().any(|pull| pull.number == *number)) else {
        return not_found();
    };
    let comment = Comment { id, body: text, user: "emulator".into(), created_at: timestamp(SystemTime::now()) };
    let rendered = json!({"id": comment.id, "body": comment.body, "user": {"login": comment.user}, "created_at": comment.created_at});
    repository.comments.entry(number).or_default().push(comment);
    (StatusCode::CREATED, axum::Json(rendered)).into_response()
}

/// A commit id, or the commit a branch points at.
pub(crate) fn resolve_commit(repository: &RepositoryState, reference: &str) -> Option<String> {
    if reference.len() == 40 && reference.chars().all(|character| character.is_ascii_hexdigit()) {
        return Some(reference.to_owned());
    }
    crate::git::branch_commit(&repository.repository.as_ref()?.git_dir, reference)
}

async fn list_check_runs(State(shared): SharedState, Path((owner, repo, reference)): Path<(String, String, String)>) -> Response {
    let state = shared.lock();
    let Some(repository) = state.repository(&owner, &repo) else { return not_found() };
    let Some(sha) = resolve_commit(repository, &reference) else {
        return validation(json!([{"resource": "Commit", "field": "ref", "code": "invalid"}]));
    };
    let runs: Vec<Value> = repository
        .checks
        .get(&sha)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, run)| json!({"id": index + 1, "name": run.name, "status": run.status, "conclusion": run.conclusion, "head_sha": sha}))
        .collect();
    axum::Json(json!({"total_count": runs.len(), "check_runs": runs})).into_response()
}

/// Only `markPullRequestReadyForReview(input: {pullRequestId: $id})`, the one mutation REST
/// cannot replace. GraphQL reports errors with status 200, as GitHub does.
async fn graphql(State(shared): SharedState, body: Bytes) -> Response {
    let body = match json_body(&body) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let query = string_field(&body, "query").unwrap_or_default();
    if !query.contains("markPullRequestReadyForReview") {
        return axum::Json(json!({"errors": [{"message": "the emulator implements only the markPullRequestReadyForReview mutation"}]})).into_response();
    }
    let Some(id) = body.pointer("/variables/id").and_then(Value::as_str).map(str::to_owned) else {
        return axum::Json(json!({"errors": [{"message": "Variable $id of type ID! was provided invalid value"}]})).into_response();
    };
    let mut state = shared.lock();
    let found = state.repositories.values_mut().flat_map(|repository| repository.pulls.iter_mut()).find(|pull| pull.node_id == id);
    match found {
        Some(pull) => {
            pull.draft = false;
            pull.updated_at = timestamp(SystemTime::now());
            axum::Json(json!({"data": {"markPullRequestReadyForReview": {"pullRequest": {"number": pull.number, "isDraft": false}}}})).into_response()
        }
        None => axum::Json(json!({"data": null, "errors": [{"type": "NOT_FOUND", "message": format!("Could not resolve to a node with the global id of '{id}'")}]}))
            .into_response(),
    }
}

/// The git directory for `/{owner}/{repo}.git/...` if the request's token is accepted.
#[allow(clippy::result_large_err, reason = "the error is the handler's finished answer, returned at once")]
fn git_repository(shared: &Shared, headers: &HeaderMap, owner: &str, repo: &str) -> Result<std::path::PathBuf, Response> {
    let state = shared.lock();
    let authorized = token_of(headers).is_some_and(|token| state.tokens.contains(&token));
    if !authorized {
        let mut response = (StatusCode::UNAUTHORIZED, "authentication required\n").into_response();
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"flotilla-codehost-emulator\""));
        return Err(response);
    }
    let name = repo.strip_suffix(".git").unwrap_or(repo);
    state
        .repository(owner, name)
        .and_then(|repository| repository.repository.as_ref())
        .map(|repository| repository.git_dir.clone())
        .ok_or_else(|| (StatusCode::NOT_FOUND, "repository not found\n").into_response())
}

fn git_failure(error: impl std::fmt::Display) -> Response {
    tracing::warn!(%error, "git serving failed");
    (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response()
}

fn no_cache(content_type: &'static str, body: impl Into<Body>) -> Response {
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body.into()).into_response()
}

#[derive(Debug, Deserialize)]
pub(crate) struct ServiceQuery {
    service: Option<String>,
}

pub(crate) async fn git_info_refs(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>, Query(query): Query<ServiceQuery>, headers: HeaderMap) -> Response {
    let git_dir = match git_repository(&shared, &headers, &owner, &repo) {
        Ok(git_dir) => git_dir,
        Err(response) => return response,
    };
    match query.service.as_deref() {
        Some("git-upload-pack") => {
            let protocol = headers.get("git-protocol").and_then(|value| value.to_str().ok());
            match flotilla_git::advertise_upload_pack(&git_dir, protocol).await {
                Ok(body) => no_cache(flotilla_git::ADVERTISEMENT_CONTENT_TYPE, body),
                Err(failure) => git_failure(failure),
            }
        }
        Some("git-receive-pack") => match crate::git::advertise_receive_pack(&git_dir).await {
            Ok(body) => no_cache("application/x-git-receive-pack-advertisement", body),
            Err(failure) => git_failure(failure),
        },
        _ => (StatusCode::FORBIDDEN, "only smart HTTP is served\n").into_response(),
    }
}

/// The request body, gunzipped when the client compressed it.
async fn request_bytes(headers: &HeaderMap, body: Body) -> Result<Vec<u8>, Response> {
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::StreamReader::new(stream);
    let gzipped = headers.get(header::CONTENT_ENCODING).and_then(|value| value.to_str().ok()) == Some("gzip");
    let mut bytes = Vec::new();
    let read = if gzipped {
        async_compression::tokio::bufread::GzipDecoder::new(reader).read_to_end(&mut bytes).await
    } else {
        let mut reader = reader;
        reader.read_to_end(&mut bytes).await
    };
    read.map_err(|failure| (StatusCode::BAD_REQUEST, format!("reading the request: {failure}\n")).into_response())?;
    Ok(bytes)
}

pub(crate) async fn git_upload_pack(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>, headers: HeaderMap, body: Body) -> Response {
    let git_dir = match git_repository(&shared, &headers, &owner, &repo) {
        Ok(git_dir) => git_dir,
        Err(response) => return response,
    };
    let request = match request_bytes(&headers, body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    let protocol = headers.get("git-protocol").and_then(|value| value.to_str().ok());
    match flotilla_git::upload_pack(&git_dir, std::io::Cursor::new(request), protocol).await {
        Ok(response) => no_cache(flotilla_git::RESULT_CONTENT_TYPE, Body::from_stream(tokio_util::io::ReaderStream::new(response))),
        Err(failure) => git_failure(failure),
    }
}

pub(crate) async fn git_receive_pack(State(shared): SharedState, Path((owner, repo)): Path<(String, String)>, headers: HeaderMap, body: Body) -> Response {
    let git_dir = match git_repository(&shared, &headers, &owner, &repo) {
        Ok(git_dir) => git_dir,
        Err(response) => return response,
    };
    let request = match request_bytes(&headers, body).await {
        Ok(request) => request,
        Err(response) => return response,
    };
    match crate::git::receive_pack(&git_dir, &request).await {
        Ok(result) => no_cache("application/x-git-receive-pack-result", result),
        Err(failure) => git_failure(failure),
    }
}

fn admin_result(result: Result<(), String>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(message) => error(StatusCode::UNPROCESSABLE_ENTITY, &message),
    }
}

async fn admin_create_repository(State(shared): SharedState, body: Bytes) -> Response {
    let new: NewRepository = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(failure) => return error(StatusCode::BAD_REQUEST, &failure.to_string()),
    };
    match shared.create_repository(new).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(failure) => error(StatusCode::UNPROCESSABLE_ENTITY, &failure.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct FaultRequest {
    fault: Fault,
    #[serde(default = "one")]
    count: usize,
}

fn one() -> usize {
    1
}

async fn admin_faults(State(shared): SharedState, body: Bytes) -> Response {
    match serde_json::from_slice::<FaultRequest>(&body) {
        Ok(request) => {
            shared.lock().faults.extend(std::iter::repeat_n(request.fault, request.count.min(100_000)));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(failure) => error(StatusCode::BAD_REQUEST, &failure.to_string()),
    }
}

async fn admin_rate_limit(State(shared): SharedState, body: Bytes) -> Response {
    match serde_json::from_slice::<Option<RateLimitConfig>>(&body) {
        Ok(limit) => {
            let mut state = shared.lock();
            state.rate_limit = limit;
            state.usage = BTreeMap::new();
            StatusCode::NO_CONTENT.into_response()
        }
        Err(failure) => error(StatusCode::BAD_REQUEST, &failure.to_string()),
    }
}

async fn admin_stats(State(shared): SharedState) -> Response {
    axum::Json(shared.lock().stats).into_response()
}

async fn admin_merge(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>) -> Response {
    let Some(number) = parse_number(&number) else { return not_found() };
    let mut state = shared.lock();
    let merged = merge(&mut state, &owner, &repo, number);
    if merged.is_ok() {
        crate::webhooks::announce(&shared, &state, &owner, &repo, Some(number), crate::webhooks::Action::Merged);
    }
    admin_result(merged)
}

async fn admin_close(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>) -> Response {
    let Some(number) = parse_number(&number) else { return not_found() };
    let mut state = shared.lock();
    match find_pull(&mut state, &owner, &repo, number) {
        Some(pull) => {
            pull.open = false;
            pull.updated_at = timestamp(SystemTime::now());
            crate::webhooks::announce(&shared, &state, &owner, &repo, Some(number), crate::webhooks::Action::Closed);
            StatusCode::NO_CONTENT.into_response()
        }
        None => not_found(),
    }
}

async fn admin_review(State(shared): SharedState, Path((owner, repo, number)): Path<(String, String, String)>, body: Bytes) -> Response {
    let Some(number) = parse_number(&number) else { return not_found() };
    let review: Review = match serde_json::from_slice(&body) {
        Ok(review) => review,
        Err(failure) => return error(StatusCode::BAD_REQUEST, &failure.to_string()),
    };
    let mut state = shared.lock();
    let Some(repository) = state.repository_mut(&owner, &repo) else { return not_found() };
    if !repository.pulls.iter().any(|pull| pull.number == number) {
        return not_found();
    }
    repository.reviews.entry(number).or_default().push(review.clone());
    crate::webhooks::announce(&shared, &state, &owner, &repo, Some(number), crate::webhooks::Action::Reviewed(review));
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_check_run(State(shared): SharedState, Path((owner, repo, reference)): Path<(String, String, String)>, body: Bytes) -> Response {
    let run: CheckRun = match serde_json::from_slice(&body) {
        Ok(run) => run,
        Err(failure) => return error(StatusCode::BAD_REQUEST, &failure.to_string()),
    };
    let mut state = shared.lock();
    let Some(repository) = state.repository_mut(&owner, &repo) else { return not_found() };
    let Some(sha) = resolve_commit(repository, &reference) else { return not_found() };
    repository.checks.entry(sha.clone()).or_default().push(run.clone());
    crate::webhooks::announce(&shared, &state, &owner, &repo, None, crate::webhooks::Action::CheckRun { sha, run });
    StatusCode::NO_CONTENT.into_response()
}
