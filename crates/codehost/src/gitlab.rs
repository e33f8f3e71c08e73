//! The GitLab adapter: REST API v4 (`PRIVATE-TOKEN` header) against gitlab.com, a self-managed
//! GitLab or the test emulator, whichever `base_url` (`https://HOST/api/v4`) names.
//!
//! It keeps the same rules as the GitHub adapter, because the reconciler must not care which
//! forge it talks to: every request waits for the credential's [`RateLimitBudget`] (fed from
//! GitLab's `RateLimit-*` headers), a 429 waits for `Retry-After` or `RateLimit-Reset`, 5xx and
//! network failures are retried with bounded exponential backoff, and every other answer becomes
//! a [`CodeHostError`] carrying GitLab's own message.
//!
//! GitLab's vocabulary differs and is translated here: a repository is a *project* addressed by
//! its URL-encoded path (`group%2Fname`), an organisation is a *group* (subgroups included), a
//! changeset is a *merge request* addressed by its project-local `iid`. GitLab has no separate
//! draft flag to set: a merge request is a draft while its title starts with `Draft:` (or one of
//! the older markers), so drafting and undrafting are title edits, and the title this adapter
//! reports never carries the marker (the reconciler compares titles with the spec's). Review
//! state comes from the approvals endpoint (GitLab has no "changes requested" verdict there);
//! check state from the merge request's head pipeline. The merge method is a project setting
//! on GitLab, so only `squash` is chosen per merge; `MergeMethod::Rebase` merges as the project
//! is configured.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::budget::{RateLimitBudget, RateLimitHeaders, RetryPolicy, retry_after};
use crate::error::{CodeHostError, PermanentKind};
use crate::transport::{self, Forge, Reply, Verdict, branch_name, next_link};
use crate::types::{
    ChangesetRequest, ChangesetUpdate, CheckState, ExternalChangeset, ExternalState, HostedRepository, MergeMethod,
    RepositoryRef, RepositorySelection, ReviewState,
};

/// The title prefix that makes a merge request a draft when this adapter opens one.
const DRAFT_PREFIX: &str = "Draft: ";

/// Title markers GitLab reads as "draft" (case-insensitive), longest first so that stripping
/// removes the whole marker.
const DRAFT_MARKERS: [&str; 5] = ["[draft]", "(draft)", "draft:", "[wip]", "wip:"];

/// How to reach one GitLab with one credential.
#[derive(Debug, Clone)]
pub struct GitLabConfig {
    /// The REST root: `https://gitlab.com/api/v4`, `https://HOST/api/v4`, or the emulator's
    /// URL followed by `/api/v4`.
    pub base_url: String,
    pub token: String,
    pub retry: RetryPolicy,
    /// Bound on one HTTP exchange; a request that takes longer counts as a transient failure.
    pub request_timeout: Duration,
    /// Page size for listings (GitLab allows up to 100).
    pub per_page: u32,
}

impl GitLabConfig {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> GitLabConfig {
        GitLabConfig {
            base_url: base_url.into(),
            token: token.into(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            per_page: 100,
        }
    }
}

/// See the module documentation. All calls through one instance (and through any instance
/// given the same budget) share the rate-limit budget.
pub struct GitLab {
    client: reqwest::Client,
    base_url: String,
    token: HeaderValue,
    budget: Arc<RateLimitBudget>,
    retry: RetryPolicy,
    per_page: u32,
}

impl std::fmt::Debug for GitLab {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        formatter.debug_struct("GitLab").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// How this adapter's API talks (see [`crate::transport`]).
static GITLAB_API: Forge = Forge { name: "GitLab", api_hint: "a GitLab API (…/api/v4)", rate_limit_headers: RateLimitHeaders::GITLAB, classify };

/// `group/name` as one path segment, as GitLab addresses projects and groups by path.
fn encode_path(path: &str) -> String {
    let mut encoded = String::with_capacity(path.len());
    for byte in path.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn project_path(repository: &RepositoryRef) -> String {
    format!("/projects/{}", encode_path(&format!("{}/{}", repository.owner, repository.name)))
}

/// Whether GitLab reads `title` as a draft's.
fn is_draft_title(title: &str) -> bool {
    let lower = title.trim_start().to_ascii_lowercase();
    DRAFT_MARKERS.iter().any(|marker| lower.starts_with(marker))
}

/// The title without its draft markers (GitLab accepts several stacked ones).
fn strip_draft(title: &str) -> String {
    let mut rest = title.trim_start();
    loop {
        let lower = rest.to_ascii_lowercase();
        match DRAFT_MARKERS.iter().find(|marker| lower.starts_with(*marker)) {
            // The markers are ASCII, so the byte length is the same in `rest`.
            Some(marker) => rest = rest[marker.len()..].trim_start(),
            None => return rest.to_owned(),
        }
    }
}

impl GitLab {
    /// An adapter with its own budget (use [`GitLab::with_budget`] when several adapters share
    /// a credential).
    pub fn new(config: GitLabConfig) -> Result<GitLab, CodeHostError> {
        GitLab::with_budget(config, Arc::new(RateLimitBudget::new()))
    }

    pub fn with_budget(config: GitLabConfig, budget: Arc<RateLimitBudget>) -> Result<GitLab, CodeHostError> {
        // reqwest is built without a default TLS provider (see the workspace Cargo.toml);
        // installing ring twice is harmless, so the error is ignored.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(CodeHostError::protocol(format!(
                "GitLab API URL {base_url:?} must start with https:// (or http:// for a local test host)"
            )));
        }
        let mut token = HeaderValue::from_str(&config.token).map_err(|_| CodeHostError::Permanent {
            kind: PermanentKind::BadCredentials,
            message: "the GitLab token contains characters that cannot be sent in a header: paste the token again".into(),
        })?;
        token.set_sensitive(true);
        let client = reqwest::Client::builder()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|error| CodeHostError::protocol(format!("building the HTTP client for GitLab: {error}")))?;
        Ok(GitLab { client, base_url, token, budget, retry: config.retry, per_page: config.per_page.clamp(1, 100) })
    }

    /// The budget every call through this adapter draws from.
    pub fn budget(&self) -> &Arc<RateLimitBudget> {
        &self.budget
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends one logical request, with rate-limit waits and retries (see the module docs).
    async fn send(&self, method: Method, url: &str, query: &[(&str, String)], body: Option<&Value>, what: &str) -> Result<Reply, CodeHostError> {
        transport::send(&GITLAB_API, &self.client, &self.budget, &self.retry, |request| request.header("private-token", self.token.clone()), method, url, query, body, what).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, CodeHostError> {
        self.send(Method::GET, &self.url(path), &[], None, what).await?.json(what)
    }

    /// Every page of a listing: the `Link: <...>; rel="next"` target when GitLab sends one,
    /// else the page `X-Next-Page` names (GitLab omits `Link` for very large listings).
    async fn get_all_pages<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)], what: &str) -> Result<Vec<T>, CodeHostError> {
        let mut items = Vec::new();
        let base_url = self.url(path);
        let mut base_query: Vec<(&str, String)> = query.to_vec();
        base_query.push(("per_page", self.per_page.to_string()));
        let mut next: Option<(String, Vec<(&str, String)>)> = Some((base_url.clone(), base_query.clone()));
        while let Some((url, query)) = next.take() {
            let reply = self.send(Method::GET, &url, &query, None, what).await?;
            let page: Vec<T> = reply.json(what)?;
            let empty = page.is_empty();
            items.extend(page);
            let link = reply.headers.get(reqwest::header::LINK).and_then(|value| value.to_str().ok()).and_then(next_link);
            let next_page = reply
                .headers
                .get("x-next-page")
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|page| !page.is_empty())
                .map(str::to_owned);
            next = match (link, next_page) {
                _ if empty => None,
                // The next link carries the whole query already.
                (Some(link), _) => Some((link, Vec::new())),
                (None, Some(page)) => {
                    let mut query = base_query.clone();
                    query.push(("page", page));
                    Some((base_url.clone(), query))
                }
                (None, None) => None,
            };
        }
        Ok(items)
    }

    async fn merge_request(&self, repository: &RepositoryRef, iid: u64) -> Result<GlMergeRequest, CodeHostError> {
        let what = format!("reading merge request !{iid} of {repository}");
        self.get_json(&format!("{}/merge_requests/{iid}", project_path(repository)), &what).await
    }

    /// A merge request with its review state filled in (the check state comes with it).
    async fn with_states(&self, repository: &RepositoryRef, merge_request: GlMergeRequest) -> Result<ExternalChangeset, CodeHostError> {
        let what = format!("reading approvals of merge request !{} of {repository}", merge_request.iid);
        let approvals: GlApprovals =
            self.get_json(&format!("{}/merge_requests/{}/approvals", project_path(repository), merge_request.iid), &what).await?;
        let review_state = if approvals.approved_by.is_empty() { ReviewState::Pending } else { ReviewState::Approved };
        Ok(merge_request.into_changeset(review_state))
    }

    async fn list_repositories_impl(&self, selection: &RepositorySelection) -> Result<Vec<HostedRepository>, CodeHostError> {
        match selection {
            RepositorySelection::Organization(group) => {
                let what = format!("listing the projects of group {group}");
                let query = [("include_subgroups", "true".to_owned()), ("order_by", "id".to_owned()), ("sort", "asc".to_owned())];
                let projects: Vec<GlProject> = self.get_all_pages(&format!("/groups/{}/projects", encode_path(group)), &query, &what).await?;
                Ok(projects.into_iter().map(GlProject::into_hosted).collect())
            }
            RepositorySelection::Explicit(repositories) => {
                let mut hosted = Vec::with_capacity(repositories.len());
                for repository in repositories {
                    hosted.push(self.get_repository_impl(repository).await?);
                }
                Ok(hosted)
            }
        }
    }

    async fn get_repository_impl(&self, repository: &RepositoryRef) -> Result<HostedRepository, CodeHostError> {
        let what = format!("reading project {repository}");
        let project: GlProject = self.get_json(&project_path(repository), &what).await?;
        Ok(project.into_hosted())
    }

    async fn find_by_head_impl(&self, repository: &RepositoryRef, head_ref: &str) -> Result<Option<ExternalChangeset>, CodeHostError> {
        let head_ref = branch_name(head_ref);
        let what = format!("looking for a merge request from {head_ref} in {repository}");
        let query = [("source_branch", head_ref.to_owned()), ("state", "all".to_owned())];
        let merge_requests: Vec<GlMergeRequest> =
            self.get_all_pages(&format!("{}/merge_requests", project_path(repository)), &query, &what).await?;
        // GitLab lists the newest first; an open one wins over older closed ones.
        let chosen = merge_requests.iter().find(|merge_request| merge_request.state == "opened").or(merge_requests.first());
        match chosen {
            // Listings carry no head pipeline: read the one chosen.
            Some(chosen) => {
                let merge_request = self.merge_request(repository, chosen.iid).await?;
                Ok(Some(self.with_states(repository, merge_request).await?))
            }
            None => Ok(None),
        }
    }

    async fn create_impl(&self, request: &ChangesetRequest) -> Result<ExternalChangeset, CodeHostError> {
        let repository = &request.repository;
        let head = branch_name(&request.head_ref);
        let base = branch_name(&request.base_ref);
        let what = format!("opening a merge request from {head} in {repository}");
        let title = strip_draft(&request.title);
        let title = if request.draft { format!("{DRAFT_PREFIX}{title}") } else { title };
        let body = json!({"source_branch": head, "target_branch": base, "title": title, "description": request.body});
        let url = self.url(&format!("{}/merge_requests", project_path(repository)));
        match self.send(Method::POST, &url, &[], Some(&body), &what).await {
            Ok(reply) => {
                let merge_request: GlMergeRequest = reply.json(&what)?;
                let mut changeset = merge_request.into_changeset(ReviewState::Pending);
                changeset.check_state = CheckState::Unknown;
                Ok(changeset)
            }
            // Opened before (a crash between opening and recording it): use that one.
            Err(error @ CodeHostError::Permanent { kind: PermanentKind::Validation, .. }) if error.to_string().contains("already exists") => {
                match self.find_by_head_impl(repository, head).await? {
                    Some(existing) if matches!(existing.state, ExternalState::Open | ExternalState::Draft) => Ok(existing),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    async fn put_merge_request(&self, repository: &RepositoryRef, iid: u64, body: Value, what: &str) -> Result<ExternalChangeset, CodeHostError> {
        let url = self.url(&format!("{}/merge_requests/{iid}", project_path(repository)));
        let merge_request: GlMergeRequest = self.send(Method::PUT, &url, &[], Some(&body), what).await?.json(what)?;
        self.with_states(repository, merge_request).await
    }

    async fn update_impl(&self, repository: &RepositoryRef, iid: u64, update: &ChangesetUpdate) -> Result<ExternalChangeset, CodeHostError> {
        let mut body = serde_json::Map::new();
        if let Some(title) = &update.title {
            // The draft marker lives in the title: keep a draft a draft when renaming it.
            let current = self.merge_request(repository, iid).await?;
            let title = strip_draft(title);
            let title = if current.is_draft() { format!("{DRAFT_PREFIX}{title}") } else { title };
            body.insert("title".into(), json!(title));
        }
        if let Some(text) = &update.body {
            body.insert("description".into(), json!(text));
        }
        if let Some(base) = &update.base_ref {
            body.insert("target_branch".into(), json!(branch_name(base)));
        }
        if let Some(open) = update.open {
            body.insert("state_event".into(), json!(if open { "reopen" } else { "close" }));
        }
        let what = format!("updating merge request !{iid} of {repository}");
        self.put_merge_request(repository, iid, Value::Object(body), &what).await
    }

    async fn ready_impl(&self, repository: &RepositoryRef, iid: u64) -> Result<ExternalChangeset, CodeHostError> {
        let merge_request = self.merge_request(repository, iid).await?;
        if !merge_request.is_draft() {
            return self.with_states(repository, merge_request).await;
        }
        let what = format!("marking merge request !{iid} of {repository} ready for review");
        self.put_merge_request(repository, iid, json!({"title": strip_draft(&merge_request.title)}), &what).await
    }

    async fn merge_impl(&self, repository: &RepositoryRef, iid: u64, method: MergeMethod) -> Result<ExternalChangeset, CodeHostError> {
        let what = format!("merging merge request !{iid} of {repository}");
        let url = self.url(&format!("{}/merge_requests/{iid}/merge", project_path(repository)));
        let body = json!({"squash": method == MergeMethod::Squash});
        let merge_request: GlMergeRequest = self.send(Method::PUT, &url, &[], Some(&body), &what).await?.json(&what)?;
        self.with_states(repository, merge_request).await
    }

    async fn comment_impl(&self, repository: &RepositoryRef, iid: u64, body: &str) -> Result<(), CodeHostError> {
        let what = format!("commenting on merge request !{iid} of {repository}");
        let url = self.url(&format!("{}/merge_requests/{iid}/notes", project_path(repository)));
        self.send(Method::POST, &url, &[], Some(&json!({"body": body})), &what).await?;
        Ok(())
    }
}

impl GitLab {
    async fn load_impl(&self, repository: &RepositoryRef, number: u64) -> Result<ExternalChangeset, CodeHostError> {
        let merge_request = self.merge_request(repository, number).await?;
        self.with_states(repository, merge_request).await
    }
}

crate::code_host_by_inherent_methods!(GitLab);

/// GitLab's error bodies: `{"message": "404 Project Not Found"}`, `{"message": ["Another open
/// merge request already exists for this source branch: !1"]}`, `{"message": {"title": ["can't
/// be blank"]}}`, or Grape's `{"error": "title is missing"}`.
fn describe_error(status: StatusCode, body: &[u8]) -> String {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut parts: Vec<String> = Vec::new();
    match parsed.get("message") {
        Some(Value::String(message)) => parts.push(message.clone()),
        Some(Value::Array(messages)) => parts.extend(messages.iter().filter_map(Value::as_str).map(str::to_owned)),
        Some(Value::Object(fields)) => {
            for (field, messages) in fields {
                let messages: Vec<&str> = match messages {
                    Value::Array(messages) => messages.iter().filter_map(Value::as_str).collect(),
                    Value::String(message) => vec![message.as_str()],
                    _ => Vec::new(),
                };
                parts.push(format!("{field} {}", messages.join(", ")));
            }
        }
        _ => {}
    }
    if let Some(error) = parsed.get("error").and_then(Value::as_str) {
        parts.push(error.to_owned());
    }
    let mut text = format!("GitLab answered {}", status.as_u16());
    // GitLab repeats the status in the message ("401 Unauthorized"): do not say it twice.
    let status_prefix = format!("{} ", status.as_u16());
    let parts: Vec<&str> = parts.iter().map(|part| part.strip_prefix(&status_prefix).unwrap_or(part)).filter(|part| !part.is_empty()).collect();
    if !parts.is_empty() {
        text.push(' ');
        text.push_str(&parts.join("; "));
    }
    text
}

/// What an answer means (`None`: success); pure, so the rules are tested without a server.
fn classify(reply: &Reply, what: &str, now: SystemTime) -> Option<Verdict> {
    let status = reply.status;
    if status.is_success() {
        return None;
    }
    let described = format!("{what}: {}", describe_error(status, &reply.body));
    let asked_wait = retry_after(&reply.headers, now);
    if status == StatusCode::TOO_MANY_REQUESTS {
        // GitLab: Retry-After first, then the reset time, else wait at least a minute.
        let wait = asked_wait.or_else(|| RateLimitHeaders::GITLAB.exhausted_wait(&reply.headers, now)).unwrap_or(Duration::from_secs(60));
        return Some(Verdict::RateLimited { wait, message: described });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Some(Verdict::Retry { wait: asked_wait, message: described });
    }
    let lower = described.to_ascii_lowercase();
    let (kind, advice) = match status {
        StatusCode::UNAUTHORIZED => (PermanentKind::BadCredentials, "the token is wrong, expired or revoked: update the code host credential"),
        StatusCode::FORBIDDEN if lower.contains("archived") => {
            (PermanentKind::ArchivedRepository, "the project is archived and read-only: unarchive it or leave it out of the batch change")
        }
        StatusCode::FORBIDDEN => (PermanentKind::Forbidden, "the token lacks access: give it the api scope and at least Developer access to the project"),
        StatusCode::NOT_FOUND => (PermanentKind::NotFound, "check the name, and that the token can see the project"),
        _ => (PermanentKind::Validation, "fix the request (title, branches, state) and apply again"),
    };
    Some(Verdict::Fail(CodeHostError::Permanent { kind, message: format!("{described} ({advice})") }))
}

#[derive(Debug, Deserialize)]
struct GlProject {
    path_with_namespace: String,
    http_url_to_repo: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    forked_from_project: Option<Value>,
    #[serde(default)]
    visibility: Option<String>,
}

impl GlProject {
    fn into_hosted(self) -> HostedRepository {
        HostedRepository {
            full_name: self.path_with_namespace,
            clone_url: self.http_url_to_repo,
            // An empty project has no default branch yet; GitLab then uses "main".
            default_branch: self.default_branch.unwrap_or_else(|| "main".to_owned()),
            archived: self.archived,
            fork: self.forked_from_project.is_some_and(|project| !project.is_null()),
            // Without the field (a token that cannot see it) assume the safe answer.
            private: self.visibility.as_deref() != Some("public"),
        }
    }
}

#[derive(Debug, Deserialize)]
struct GlPipeline {
    status: String,
}

#[derive(Debug, Deserialize)]
struct GlMergeRequest {
    iid: u64,
    web_url: String,
    /// `opened`, `closed`, `locked` or `merged`.
    state: String,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    work_in_progress: Option<bool>,
    title: String,
    #[serde(default)]
    description: Option<String>,
    source_branch: String,
    target_branch: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    head_pipeline: Option<GlPipeline>,
    #[serde(default)]
    updated_at: String,
}

impl GlMergeRequest {
    fn is_draft(&self) -> bool {
        self.draft.or(self.work_in_progress).unwrap_or_else(|| is_draft_title(&self.title))
    }

    fn into_changeset(self, review_state: ReviewState) -> ExternalChangeset {
        let state = match self.state.as_str() {
            "merged" => ExternalState::Merged,
            "closed" | "locked" => ExternalState::Closed,
            _ if self.is_draft() => ExternalState::Draft,
            _ => ExternalState::Open,
        };
        ExternalChangeset {
            number: self.iid,
            url: self.web_url,
            state,
            review_state,
            check_state: pipeline_state(self.head_pipeline.as_ref()),
            title: strip_draft(&self.title),
            body: self.description.unwrap_or_default(),
            base_ref: self.target_branch,
            head_ref: self.source_branch,
            head_sha: self.sha,
            updated_at: self.updated_at,
        }
    }
}

/// The head pipeline's status in our terms.
fn pipeline_state(pipeline: Option<&GlPipeline>) -> CheckState {
    match pipeline.map(|pipeline| pipeline.status.as_str()) {
        None => CheckState::Unknown,
        Some("success") => CheckState::Passed,
        Some("failed" | "canceled" | "canceling") => CheckState::Failed,
        Some("created" | "waiting_for_resource" | "preparing" | "pending" | "running" | "scheduled" | "manual") => CheckState::Pending,
        // `skipped` and any status newer than this adapter say nothing about the change.
        Some(_) => CheckState::Unknown,
    }
}

#[derive(Debug, Deserialize)]
struct GlApprovals {
    #[serde(default)]
    approved_by: Vec<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("test header values are ASCII"));
        }
        Reply { status: StatusCode::from_u16(status).expect("valid test status"), headers: map, body: body.as_bytes().to_vec(), forge: &GITLAB_API }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)
    }

    #[test]
    fn project_paths_are_one_encoded_segment() {
        assert_eq!(project_path(&RepositoryRef::new("acme", "my.widgets")), "/projects/acme%2Fmy.widgets");
        assert_eq!(encode_path("group/sub group"), "group%2Fsub%20group");
    }

    #[test]
    fn draft_markers_are_read_and_stripped() {
        for (title, draft, stripped) in [
            ("Draft: Fix", true, "Fix"),
            ("[Draft] Fix", true, "Fix"),
            ("WIP: Fix", true, "Fix"),
            ("draft: Draft: Fix", true, "Fix"),
            ("Fix drafts", false, "Fix drafts"),
        ] {
            assert_eq!(is_draft_title(title), draft, "{title}");
            assert_eq!(strip_draft(title), stripped, "{title}");
        }
    }

    #[test]
    fn answers_are_sorted_into_retry_wait_or_fail() {
        assert!(matches!(classify(&reply(502, &[], ""), "x", now()), Some(Verdict::Retry { wait: None, .. })));
        assert!(matches!(
            classify(&reply(429, &[("retry-after", "2")], "Retry later"), "x", now()),
            Some(Verdict::RateLimited { wait, .. }) if wait == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(&reply(429, &[("ratelimit-remaining", "0"), ("ratelimit-reset", "1010")], ""), "x", now()),
            Some(Verdict::RateLimited { wait, .. }) if wait >= Duration::from_secs(10)
        ));
        let Some(Verdict::Fail(error)) = classify(&reply(401, &[], r#"{"message":"401 Unauthorized"}"#), "reading o/r", now()) else {
            panic!("401 must fail at once");
        };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::BadCredentials));
        assert!(error.to_string().starts_with("reading o/r: GitLab answered 401 Unauthorized ("), "{error}");
        let conflict = r#"{"message":["Another open merge request already exists for this source branch: !1"]}"#;
        let Some(Verdict::Fail(error)) = classify(&reply(409, &[], conflict), "x", now()) else { panic!("409 must fail") };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
        assert!(error.to_string().contains("already exists"), "{error}");
        let fields = r#"{"message":{"title":["can't be blank"]}}"#;
        let Some(Verdict::Fail(error)) = classify(&reply(400, &[], fields), "x", now()) else { panic!("400 must fail") };
        assert!(error.to_string().contains("title can't be blank"), "{error}");
        let Some(Verdict::Fail(error)) = classify(&reply(404, &[], "not json"), "x", now()) else { panic!("404 must fail") };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
    }

    #[test]
    fn check_state_from_the_head_pipeline() {
        let pipeline = |status: &str| GlPipeline { status: status.into() };
        assert_eq!(pipeline_state(None), CheckState::Unknown);
        assert_eq!(pipeline_state(Some(&pipeline("running"))), CheckState::Pending);
        assert_eq!(pipeline_state(Some(&pipeline("success"))), CheckState::Passed);
        assert_eq!(pipeline_state(Some(&pipeline("failed"))), CheckState::Failed);
        assert_eq!(pipeline_state(Some(&pipeline("skipped"))), CheckState::Unknown);
    }
}
