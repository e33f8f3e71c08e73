//! The GitHub adapter: REST v3 (`Accept: application/vnd.github+json`, a bearer token) against
//! github.com, GitHub Enterprise Server or the test emulator, whichever `base_url` names.
//!
//! Every request goes through [`GitHub::send`], which owns the rules GitHub documents for
//! integrators: wait for the credential's budget ([`RateLimitBudget`]), honour `Retry-After`
//! (429 and the secondary-limit 403), wait for `X-RateLimit-Reset` when the primary limit is
//! used up, retry 5xx and network failures with bounded exponential backoff, and turn every
//! other answer into a [`CodeHostError`] carrying GitHub's own message.
//!
//! One GitHub-specific wrinkle: REST cannot take a pull request out of draft (`PATCH` with
//! `draft: false` is silently ignored by GitHub), so [`CodeHost::mark_ready_for_review`] uses
//! the GraphQL mutation `markPullRequestReadyForReview`, as Sourcegraph does. The emulator
//! implements that one mutation at `/graphql`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::budget::{RateLimitBudget, RateLimitHeaders, RetryPolicy, retry_after};
use crate::error::{CodeHostError, PermanentKind};
use crate::transport::{self, Forge, Reply, Verdict, next_link};
use crate::types::{
    ChangesetRequest, ChangesetUpdate, CheckState, ExternalChangeset, ExternalState, HostedRepository,
    MergeMethod, RepositoryRef, RepositorySelection, ReviewState,
};

/// How to reach one GitHub with one credential.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// The REST root: `https://api.github.com`, `https://HOST/api/v3` for GitHub Enterprise
    /// Server, or the emulator's URL.
    pub base_url: String,
    pub token: String,
    pub retry: RetryPolicy,
    /// Bound on one HTTP exchange; a request that takes longer counts as a transient failure.
    pub request_timeout: Duration,
    /// Page size for listings (GitHub allows up to 100).
    pub per_page: u32,
}

impl GitHubConfig {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> GitHubConfig {
        GitHubConfig {
            base_url: base_url.into(),
            token: token.into(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            per_page: 100,
        }
    }
}

/// See the module documentation. Cheap to share behind an `Arc`; all calls through one
/// instance (and through any instance given the same budget) share the rate-limit budget.
pub struct GitHub {
    client: reqwest::Client,
    base_url: String,
    graphql_url: String,
    authorization: HeaderValue,
    budget: Arc<RateLimitBudget>,
    retry: RetryPolicy,
    per_page: u32,
}

impl std::fmt::Debug for GitHub {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        formatter.debug_struct("GitHub").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// How this adapter's API talks (see [`crate::transport`]).
static GITHUB_API: Forge = Forge { name: "GitHub", api_hint: "a GitHub API", rate_limit_headers: RateLimitHeaders::GITHUB, classify };

impl GitHub {
    /// An adapter with its own budget (use [`GitHub::with_budget`] when several adapters share
    /// a credential).
    pub fn new(config: GitHubConfig) -> Result<GitHub, CodeHostError> {
        GitHub::with_budget(config, Arc::new(RateLimitBudget::new()))
    }

    pub fn with_budget(config: GitHubConfig, budget: Arc<RateLimitBudget>) -> Result<GitHub, CodeHostError> {
        // reqwest is built without a default TLS provider (see the workspace Cargo.toml);
        // installing ring twice is harmless, so the error is ignored.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(CodeHostError::Permanent {
                kind: PermanentKind::Protocol,
                message: format!("GitHub API URL {base_url:?} must start with https:// (or http:// for a local test host)"),
            });
        }
        let graphql_url = match base_url.strip_suffix("/api/v3") {
            Some(root) => format!("{root}/api/graphql"),
            None => format!("{base_url}/graphql"),
        };
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", config.token)).map_err(|_| CodeHostError::Permanent {
            kind: PermanentKind::BadCredentials,
            message: "the GitHub token contains characters that cannot be sent in a header: paste the token again".into(),
        })?;
        authorization.set_sensitive(true);
        let mut default_headers = HeaderMap::new();
        default_headers.insert(header::ACCEPT, HeaderValue::from_static("application/vnd.github+json"));
        default_headers.insert("x-github-api-version", HeaderValue::from_static("2022-11-28"));
        let client = reqwest::Client::builder()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .default_headers(default_headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|error| CodeHostError::protocol(format!("building the HTTP client for GitHub: {error}")))?;
        Ok(GitHub {
            client,
            base_url,
            graphql_url,
            authorization,
            budget,
            retry: config.retry,
            per_page: config.per_page.clamp(1, 100),
        })
    }

    /// The budget every call through this adapter draws from.
    pub fn budget(&self) -> &Arc<RateLimitBudget> {
        &self.budget
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends one logical request, with rate-limit waits and retries (see the module docs).
    /// `what` says what was being done, for error messages.
    async fn send(&self, method: Method, url: &str, query: &[(&str, String)], body: Option<&Value>, what: &str) -> Result<Reply, CodeHostError> {
        transport::send(&GITHUB_API, &self.client, &self.budget, &self.retry, |request| request.header(header::AUTHORIZATION, self.authorization.clone()), method, url, query, body, what).await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)], what: &str) -> Result<T, CodeHostError> {
        self.send(Method::GET, &self.url(path), query, None, what).await?.json(what)
    }

    /// Every page of a listing, following `Link: <...>; rel="next"`.
    async fn get_all_pages<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)], what: &str) -> Result<Vec<T>, CodeHostError> {
        let mut items = Vec::new();
        let mut query: Vec<(&str, String)> = query.to_vec();
        query.push(("per_page", self.per_page.to_string()));
        let mut next = Some(self.url(path));
        let mut first = true;
        while let Some(url) = next.take() {
            // The next link carries the whole query already.
            let query: &[(&str, String)] = if first { &query } else { &[] };
            first = false;
            let reply = self.send(Method::GET, &url, query, None, what).await?;
            let page: Vec<T> = reply.json(what)?;
            items.extend(page);
            next = reply.headers.get(header::LINK).and_then(|value| value.to_str().ok()).and_then(next_link);
        }
        Ok(items)
    }

    async fn pull(&self, repository: &RepositoryRef, number: u64) -> Result<GhPull, CodeHostError> {
        let what = format!("reading pull request #{number} of {repository}");
        self.get_json(&format!("/repos/{}/{}/pulls/{number}", repository.owner, repository.name), &[], &what).await
    }

    /// A pull request with its review and check states filled in.
    async fn with_states(&self, repository: &RepositoryRef, pull: GhPull) -> Result<ExternalChangeset, CodeHostError> {
        let what = format!("reading reviews of pull request #{} of {repository}", pull.number);
        let reviews: Vec<GhReview> =
            self.get_all_pages(&format!("/repos/{}/{}/pulls/{}/reviews", repository.owner, repository.name, pull.number), &[], &what).await?;
        let check_state = match &pull.head.sha {
            Some(sha) => {
                let what = format!("reading check runs of {repository}@{sha}");
                let runs: GhCheckRuns = self
                    .get_json(&format!("/repos/{}/{}/commits/{sha}/check-runs", repository.owner, repository.name), &[("per_page", "100".into())], &what)
                    .await?;
                check_state(&runs.check_runs)
            }
            None => CheckState::Unknown,
        };
        Ok(pull.into_changeset(review_state(&reviews), check_state))
    }

    async fn list_repositories_impl(&self, selection: &RepositorySelection) -> Result<Vec<HostedRepository>, CodeHostError> {
        match selection {
            RepositorySelection::Organization(organization) => {
                let what = format!("listing the repositories of {organization}");
                let repositories: Vec<GhRepository> =
                    self.get_all_pages(&format!("/orgs/{organization}/repos"), &[("type", "all".into())], &what).await?;
                Ok(repositories.into_iter().map(GhRepository::into_hosted).collect())
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
        let what = format!("reading repository {repository}");
        let repository: GhRepository = self.get_json(&format!("/repos/{}/{}", repository.owner, repository.name), &[], &what).await?;
        Ok(repository.into_hosted())
    }

    async fn find_by_head_impl(&self, repository: &RepositoryRef, head_ref: &str) -> Result<Option<ExternalChangeset>, CodeHostError> {
        let head_ref = head_ref.strip_prefix("refs/heads/").unwrap_or(head_ref);
        let what = format!("looking for a pull request from {head_ref} in {repository}");
        let query = [("head", format!("{}:{head_ref}", repository.owner)), ("state", "all".to_owned())];
        let pulls: Vec<GhPull> =
            self.get_all_pages(&format!("/repos/{}/{}/pulls", repository.owner, repository.name), &query, &what).await?;
        // GitHub lists the newest first; an open one wins over older closed ones.
        let chosen = match pulls.iter().position(|pull| pull.state == "open") {
            Some(index) => pulls.into_iter().nth(index),
            None => pulls.into_iter().next(),
        };
        match chosen {
            Some(pull) => Ok(Some(self.with_states(repository, pull).await?)),
            None => Ok(None),
        }
    }

    async fn create_impl(&self, request: &ChangesetRequest) -> Result<ExternalChangeset, CodeHostError> {
        let repository = &request.repository;
        let head = request.head_ref.strip_prefix("refs/heads/").unwrap_or(&request.head_ref);
        let base = request.base_ref.strip_prefix("refs/heads/").unwrap_or(&request.base_ref);
        let what = format!("opening a pull request from {head} in {repository}");
        let body = json!({"title": request.title, "body": request.body, "head": head, "base": base, "draft": request.draft});
        let url = self.url(&format!("/repos/{}/{}/pulls", repository.owner, repository.name));
        match self.send(Method::POST, &url, &[], Some(&body), &what).await {
            Ok(reply) => {
                let pull: GhPull = reply.json(&what)?;
                Ok(pull.into_changeset(ReviewState::Pending, CheckState::Unknown))
            }
            // Opened before (a crash between opening and recording it): use that one.
            Err(error @ CodeHostError::Permanent { kind: PermanentKind::Validation, .. })
                if error.to_string().contains("already exists") =>
            {
                match self.find_by_head_impl(repository, head).await? {
                    Some(existing) if matches!(existing.state, ExternalState::Open | ExternalState::Draft) => Ok(existing),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    async fn update_impl(&self, repository: &RepositoryRef, number: u64, update: &ChangesetUpdate) -> Result<ExternalChangeset, CodeHostError> {
        let mut body = serde_json::Map::new();
        if let Some(title) = &update.title {
            body.insert("title".into(), json!(title));
        }
        if let Some(text) = &update.body {
            body.insert("body".into(), json!(text));
        }
        if let Some(base) = &update.base_ref {
            body.insert("base".into(), json!(base.strip_prefix("refs/heads/").unwrap_or(base)));
        }
        if let Some(open) = update.open {
            body.insert("state".into(), json!(if open { "open" } else { "closed" }));
        }
        let what = format!("updating pull request #{number} of {repository}");
        let url = self.url(&format!("/repos/{}/{}/pulls/{number}", repository.owner, repository.name));
        let pull: GhPull = self.send(Method::PATCH, &url, &[], Some(&Value::Object(body)), &what).await?.json(&what)?;
        self.with_states(repository, pull).await
    }

    async fn ready_impl(&self, repository: &RepositoryRef, number: u64) -> Result<ExternalChangeset, CodeHostError> {
        let pull = self.pull(repository, number).await?;
        if !pull.draft.unwrap_or(false) {
            return self.with_states(repository, pull).await;
        }
        let what = format!("marking pull request #{number} of {repository} ready for review");
        let Some(node_id) = pull.node_id.clone() else {
            return Err(CodeHostError::protocol(format!("{what}: GitHub did not give the pull request's node id")));
        };
        let body = json!({
            "query": "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { number isDraft } } }",
            "variables": {"id": node_id},
        });
        let reply = self.send(Method::POST, &self.graphql_url, &[], Some(&body), &what).await?;
        let answer: GraphQlAnswer = reply.json(&what)?;
        if let Some(errors) = answer.errors.filter(|errors| !errors.is_empty()) {
            let messages: Vec<String> = errors.into_iter().map(|error| error.message).collect();
            return Err(CodeHostError::Permanent { kind: PermanentKind::Validation, message: format!("{what}: GitHub refused: {}", messages.join("; ")) });
        }
        let pull = self.pull(repository, number).await?;
        self.with_states(repository, pull).await
    }

    async fn merge_impl(&self, repository: &RepositoryRef, number: u64, method: MergeMethod) -> Result<ExternalChangeset, CodeHostError> {
        let what = format!("merging pull request #{number} of {repository}");
        let merge_method = match method {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        };
        let url = self.url(&format!("/repos/{}/{}/pulls/{number}/merge", repository.owner, repository.name));
        self.send(Method::PUT, &url, &[], Some(&json!({"merge_method": merge_method})), &what).await?;
        let pull = self.pull(repository, number).await?;
        self.with_states(repository, pull).await
    }

    async fn comment_impl(&self, repository: &RepositoryRef, number: u64, body: &str) -> Result<(), CodeHostError> {
        let what = format!("commenting on pull request #{number} of {repository}");
        let url = self.url(&format!("/repos/{}/{}/issues/{number}/comments", repository.owner, repository.name));
        self.send(Method::POST, &url, &[], Some(&json!({"body": body})), &what).await?;
        Ok(())
    }
}

impl GitHub {
    async fn load_impl(&self, repository: &RepositoryRef, number: u64) -> Result<ExternalChangeset, CodeHostError> {
        let pull = self.pull(repository, number).await?;
        self.with_states(repository, pull).await
    }
}

crate::code_host_by_inherent_methods!(GitHub);

/// The wait until `X-RateLimit-Reset`, when the primary limit is used up.
fn primary_limit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    RateLimitHeaders::GITHUB.exhausted_wait(headers, now)
}

/// GitHub's error body: `{"message", "documentation_url", "errors": [...]}`.
#[derive(Debug, Default, Deserialize)]
struct GhError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<GhErrorDetail>,
}

#[derive(Debug, Deserialize)]
struct GhErrorDetail {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    field: Option<String>,
    #[serde(default)]
    code: Option<String>,
}

impl GhError {
    fn parse(body: &[u8]) -> GhError {
        serde_json::from_slice(body).unwrap_or_default()
    }

    /// `Validation Failed: A pull request already exists for o:b.` and the like.
    fn describe(&self, status: StatusCode) -> String {
        let mut text = format!("GitHub answered {}", status.as_u16());
        if !self.message.is_empty() {
            text.push(' ');
            text.push_str(&self.message);
        }
        let details: Vec<String> = self
            .errors
            .iter()
            .map(|detail| match (&detail.message, &detail.field, &detail.code) {
                (Some(message), _, _) => message.clone(),
                (None, Some(field), Some(code)) => format!("{field} {code}"),
                (None, Some(field), None) => format!("{field} is invalid"),
                (None, None, Some(code)) => code.clone(),
                (None, None, None) => String::new(),
            })
            .filter(|detail| !detail.is_empty())
            .collect();
        if !details.is_empty() {
            text.push_str(": ");
            text.push_str(&details.join("; "));
        }
        text
    }
}

/// What an answer means (`None`: success); pure, so the rules are tested without a server.
fn classify(reply: &Reply, what: &str, now: SystemTime) -> Option<Verdict> {
    let status = reply.status;
    if status.is_success() {
        return None;
    }
    let error = GhError::parse(&reply.body);
    let described = format!("{what}: {}", error.describe(status));
    let lower = error.message.to_ascii_lowercase();
    let asked_wait = retry_after(&reply.headers, now);
    let is_rate_limit = status == StatusCode::TOO_MANY_REQUESTS
        || (status == StatusCode::FORBIDDEN
            && (asked_wait.is_some() || lower.contains("rate limit") || primary_limit_wait(&reply.headers, now).is_some()));
    if is_rate_limit {
        // GitHub: Retry-After first, then the reset time, else wait at least a minute.
        let wait = asked_wait.or_else(|| primary_limit_wait(&reply.headers, now)).unwrap_or(Duration::from_secs(60));
        return Some(Verdict::RateLimited { wait, message: described });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Some(Verdict::Retry { wait: asked_wait, message: described });
    }
    let (kind, advice) = match status {
        StatusCode::UNAUTHORIZED => (PermanentKind::BadCredentials, "the token is wrong, expired or revoked: update the code host credential"),
        StatusCode::FORBIDDEN if lower.contains("archived") => {
            (PermanentKind::ArchivedRepository, "the repository is archived and read-only: unarchive it or leave it out of the batch change")
        }
        StatusCode::FORBIDDEN => (PermanentKind::Forbidden, "the token lacks access: give it the repo scope or write access to the repository"),
        StatusCode::NOT_FOUND => (PermanentKind::NotFound, "check the name, and that the token can see the repository"),
        _ => (PermanentKind::Validation, "fix the request (title, branches, state) and apply again"),
    };
    Some(Verdict::Fail(CodeHostError::Permanent { kind, message: format!("{described} ({advice})") }))
}

#[derive(Debug, Deserialize)]
struct GhRepository {
    full_name: String,
    clone_url: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    fork: bool,
    #[serde(default)]
    private: bool,
}

impl GhRepository {
    fn into_hosted(self) -> HostedRepository {
        HostedRepository {
            full_name: self.full_name,
            clone_url: self.clone_url,
            // An empty repository has no default branch yet; GitHub then reports "main".
            default_branch: self.default_branch.unwrap_or_else(|| "main".to_owned()),
            archived: self.archived,
            fork: self.fork,
            private: self.private,
        }
    }
}

#[derive(Debug, Deserialize)]
struct GhBranch {
    #[serde(rename = "ref")]
    name: String,
    #[serde(default)]
    sha: Option<String>,
}

#[derive(Debug, Deserialize)]
struct GhPull {
    number: u64,
    #[serde(default)]
    node_id: Option<String>,
    html_url: String,
    state: String,
    #[serde(default)]
    draft: Option<bool>,
    #[serde(default)]
    merged: Option<bool>,
    #[serde(default)]
    merged_at: Option<String>,
    title: String,
    #[serde(default)]
    body: Option<String>,
    base: GhBranch,
    head: GhBranch,
    #[serde(default)]
    updated_at: String,
}

impl GhPull {
    fn into_changeset(self, review_state: ReviewState, check_state: CheckState) -> ExternalChangeset {
        // Listings have no `merged`, only `merged_at`.
        let state = if self.merged == Some(true) || self.merged_at.is_some() {
            ExternalState::Merged
        } else if self.state == "closed" {
            ExternalState::Closed
        } else if self.draft == Some(true) {
            ExternalState::Draft
        } else {
            ExternalState::Open
        };
        ExternalChangeset {
            number: self.number,
            url: self.html_url,
            state,
            review_state,
            check_state,
            title: self.title,
            body: self.body.unwrap_or_default(),
            base_ref: self.base.name,
            head_ref: self.head.name,
            head_sha: self.head.sha,
            updated_at: self.updated_at,
        }
    }
}

#[derive(Debug, Deserialize)]
struct GhUser {
    login: String,
}

#[derive(Debug, Deserialize)]
struct GhReview {
    #[serde(default)]
    user: Option<GhUser>,
    state: String,
}

/// Each reviewer's latest verdict counts (comments are not verdicts, a dismissal withdraws
/// one); any "changes requested" wins over approvals, as on Sourcegraph.
fn review_state(reviews: &[GhReview]) -> ReviewState {
    let mut latest: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for review in reviews {
        let reviewer = review.user.as_ref().map_or("", |user| user.login.as_str());
        match review.state.as_str() {
            "APPROVED" | "CHANGES_REQUESTED" => {
                latest.insert(reviewer, review.state.as_str());
            }
            "DISMISSED" => {
                latest.remove(reviewer);
            }
            _ => {}
        }
    }
    if latest.values().any(|state| *state == "CHANGES_REQUESTED") {
        ReviewState::ChangesRequested
    } else if latest.values().any(|state| *state == "APPROVED") {
        ReviewState::Approved
    } else {
        ReviewState::Pending
    }
}

#[derive(Debug, Deserialize)]
struct GhCheckRuns {
    #[serde(default)]
    check_runs: Vec<GhCheckRun>,
}

#[derive(Debug, Deserialize)]
struct GhCheckRun {
    status: String,
    #[serde(default)]
    conclusion: Option<String>,
}

fn check_state(runs: &[GhCheckRun]) -> CheckState {
    if runs.is_empty() {
        return CheckState::Unknown;
    }
    let failed = runs.iter().any(|run| {
        matches!(run.conclusion.as_deref(), Some("failure" | "cancelled" | "timed_out" | "action_required" | "startup_failure"))
    });
    if failed {
        CheckState::Failed
    } else if runs.iter().any(|run| run.status != "completed") {
        CheckState::Pending
    } else {
        CheckState::Passed
    }
}

#[derive(Debug, Deserialize)]
struct GraphQlAnswer {
    #[serde(default)]
    errors: Option<Vec<GraphQlError>>,
}

#[derive(Debug, Deserialize)]
struct GraphQlError {
    message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("test header values are ASCII"));
        }
        Reply { status: StatusCode::from_u16(status).expect("valid test status"), headers: map, body: body.as_bytes().to_vec(), forge: &GITHUB_API }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)
    }

    #[test]
    fn link_headers_give_the_next_page() {
        let link = r#"<https://api.github.com/orgs/a/repos?page=2>; rel="next", <https://api.github.com/orgs/a/repos?page=5>; rel="last""#;
        assert_eq!(next_link(link).as_deref(), Some("https://api.github.com/orgs/a/repos?page=2"));
        assert_eq!(next_link(r#"<https://x/?page=1>; rel="prev""#), None);
        assert_eq!(next_link("garbage"), None);
    }

    #[test]
    fn answers_are_sorted_into_retry_wait_or_fail() {
        assert!(matches!(classify(&reply(502, &[], ""), "x", now()), Some(Verdict::Retry { wait: None, .. })));
        assert!(matches!(
            classify(&reply(503, &[("retry-after", "3")], ""), "x", now()),
            Some(Verdict::Retry { wait: Some(wait), .. }) if wait == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(&reply(429, &[("retry-after", "2")], "{}"), "x", now()),
            Some(Verdict::RateLimited { wait, .. }) if wait == Duration::from_secs(2)
        ));
        let secondary = r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#;
        assert!(matches!(
            classify(&reply(403, &[("retry-after", "1")], secondary), "x", now()),
            Some(Verdict::RateLimited { wait, .. }) if wait == Duration::from_secs(1)
        ));
        let primary = r#"{"message":"API rate limit exceeded for user ID 1."}"#;
        assert!(matches!(
            classify(&reply(403, &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1010")], primary), "x", now()),
            Some(Verdict::RateLimited { wait, .. }) if wait >= Duration::from_secs(10)
        ));
        let Some(Verdict::Fail(error)) = classify(&reply(401, &[], r#"{"message":"Bad credentials"}"#), "reading o/r", now()) else {
            panic!("401 must fail at once");
        };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::BadCredentials));
        assert!(error.to_string().starts_with("reading o/r: GitHub answered 401 Bad credentials"), "{error}");
        let archived = r#"{"message":"Repository was archived so is read-only."}"#;
        let Some(Verdict::Fail(error)) = classify(&reply(403, &[], archived), "x", now()) else { panic!("archived must fail") };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::ArchivedRepository));
        let invalid = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}]}"#;
        let Some(Verdict::Fail(error)) = classify(&reply(422, &[], invalid), "x", now()) else { panic!("422 must fail") };
        assert!(error.to_string().contains("Validation Failed: head invalid"), "{error}");
        let Some(Verdict::Fail(error)) = classify(&reply(404, &[], "not json"), "x", now()) else { panic!("404 must fail") };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
    }

    #[test]
    fn review_state_is_each_reviewers_latest_verdict() {
        let review = |user: &str, state: &str| GhReview { user: Some(GhUser { login: user.into() }), state: state.into() };
        assert_eq!(review_state(&[]), ReviewState::Pending);
        assert_eq!(review_state(&[review("a", "COMMENTED")]), ReviewState::Pending);
        assert_eq!(review_state(&[review("a", "APPROVED")]), ReviewState::Approved);
        assert_eq!(review_state(&[review("a", "CHANGES_REQUESTED"), review("a", "APPROVED")]), ReviewState::Approved);
        assert_eq!(review_state(&[review("a", "APPROVED"), review("b", "CHANGES_REQUESTED")]), ReviewState::ChangesRequested);
        assert_eq!(review_state(&[review("b", "CHANGES_REQUESTED"), review("b", "DISMISSED")]), ReviewState::Pending);
    }

    #[test]
    fn check_state_from_runs() {
        let run = |status: &str, conclusion: Option<&str>| GhCheckRun { status: status.into(), conclusion: conclusion.map(Into::into) };
        assert_eq!(check_state(&[]), CheckState::Unknown);
        assert_eq!(check_state(&[run("in_progress", None)]), CheckState::Pending);
        assert_eq!(check_state(&[run("completed", Some("success")), run("completed", Some("skipped"))]), CheckState::Passed);
        assert_eq!(check_state(&[run("completed", Some("failure")), run("queued", None)]), CheckState::Failed);
    }
}
