//! The Gitea adapter: REST API v1 (`Authorization: token TOKEN`) against a Gitea, a Forgejo
//! (which speaks the same API) or the test emulator, whichever `base_url` (`https://HOST/api/v1`)
//! names.
//!
//! It keeps the rules of the other adapters, because the reconciler must not care which forge it
//! talks to: every request goes through the shared request loop (`transport`) and the
//! credential's [`RateLimitBudget`], 5xx and network failures are retried with bounded
//! exponential backoff, a 429 (Gitea itself has no rate limit, but a proxy in front of it may)
//! waits for `Retry-After`, and every other answer becomes a [`CodeHostError`] carrying Gitea's
//! own `{"message": ..., "url": ...}` text. Gitea sends no rate-limit headers; the GitHub-style
//! `X-RateLimit-*` ones are still read in case a proxy adds them.
//!
//! Finding a pull request by its head branch: Gitea's pull request listing has no head filter,
//! and `GET /repos/{owner}/{repo}/pulls/{base}/{head}` exists only since Gitea 1.22, needs the
//! base branch (the reconciler looks up by head alone, whatever base an earlier run used) and
//! returns one pull request. So this adapter does what works on every Gitea and Forgejo: it pages
//! through `GET /repos/{owner}/{repo}/pulls?state=all` (50 per page, Gitea's default maximum) and
//! keeps those whose head is that branch of the same repository, the open one first, else the
//! newest. That costs one request per 50 pull requests of the repository, paid only when the
//! reconciler is about to open one. Opening twice cannot happen anyway: Gitea refuses a second
//! open pull request for the same head and base with 409, naming the existing one's number
//! (`issue_id`), which this adapter then returns.
//!
//! Gitea has no draft flag to set: a pull request is a work in progress while its title starts
//! with `WIP:` or `[WIP]` (the defaults of `WORK_IN_PROGRESS_PREFIXES`, case-insensitive), as on
//! GitLab. Drafting and undrafting are title edits, and the title this adapter reports never
//! carries the marker (the reconciler compares titles with the spec's). Gitea 1.22+ also reports
//! a read-only `draft` field, which wins when present (it knows the server's configured
//! prefixes). Merged is `merged: true`; review state is each reviewer's latest non-dismissed
//! verdict; check state is the head commit's combined status.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::budget::{RateLimitBudget, RateLimitHeaders, RetryPolicy, header_u64, retry_after};
use crate::error::{CodeHostError, PermanentKind};
use crate::transport::{self, Forge, Reply, Verdict, branch_name, encode_segment, next_link};
use crate::types::{
    ChangesetRequest, ChangesetUpdate, CheckState, ExternalChangeset, ExternalState, HostedRepository, MergeMethod,
    RepositoryRef, RepositorySelection, ReviewState,
};

/// The title prefix that makes a pull request a work in progress when this adapter opens one
/// (the first of Gitea's default `WORK_IN_PROGRESS_PREFIXES`).
const DRAFT_PREFIX: &str = "WIP: ";

/// Title markers Gitea reads as "work in progress" by default (case-insensitive).
const DRAFT_MARKERS: [&str; 2] = ["[wip]", "wip:"];

/// Gitea's default `MAX_RESPONSE_ITEMS`: a larger `limit` is cut down to it.
const MAX_PAGE_SIZE: u32 = 50;

/// How to reach one Gitea (or Forgejo) with one credential.
#[derive(Debug, Clone)]
pub struct GiteaConfig {
    /// The REST root: `https://HOST/api/v1`, or the emulator's URL followed by `/api/v1`.
    pub base_url: String,
    pub token: String,
    pub retry: RetryPolicy,
    /// Bound on one HTTP exchange; a request that takes longer counts as a transient failure.
    pub request_timeout: Duration,
    /// Page size for listings (Gitea allows up to 50 unless its administrator raised it).
    pub per_page: u32,
}

impl GiteaConfig {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> GiteaConfig {
        GiteaConfig {
            base_url: base_url.into(),
            token: token.into(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            per_page: MAX_PAGE_SIZE,
        }
    }
}

/// See the module documentation. All calls through one instance (and through any instance
/// given the same budget) share the rate-limit budget.
pub struct Gitea {
    client: reqwest::Client,
    base_url: String,
    authorization: HeaderValue,
    budget: Arc<RateLimitBudget>,
    retry: RetryPolicy,
    per_page: u32,
}

impl std::fmt::Debug for Gitea {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        formatter.debug_struct("Gitea").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// How this adapter's API talks (see [`crate::transport`]).
static GITEA_API: Forge = Forge { name: "Gitea", api_hint: "a Gitea or Forgejo API (…/api/v1)", rate_limit_headers: RateLimitHeaders::GITHUB, classify };

fn repository_path(repository: &RepositoryRef) -> String {
    format!("/repos/{}/{}", encode_segment(&repository.owner), encode_segment(&repository.name))
}

/// Whether Gitea (with its default prefixes) reads `title` as a work in progress.
fn is_draft_title(title: &str) -> bool {
    let lower = title.trim_start().to_ascii_lowercase();
    DRAFT_MARKERS.iter().any(|marker| lower.starts_with(marker))
}

/// The title without its work-in-progress markers (stacked ones included).
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

/// The title to send: the bare title, marked when it should be a draft.
fn titled(title: &str, draft: bool) -> String {
    let title = strip_draft(title);
    if draft { format!("{DRAFT_PREFIX}{title}") } else { title }
}

/// The existing pull request's number in Gitea's 409 for a second one with the same head and
/// base: `pull request already exists for these targets [id: 7, issue_id: 3, ...]` (`issue_id`
/// is the number people see).
fn existing_number(message: &str) -> Option<u64> {
    let (_, rest) = message.split_once("issue_id: ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

impl Gitea {
    /// An adapter with its own budget (use [`Gitea::with_budget`] when several adapters share a
    /// credential).
    pub fn new(config: GiteaConfig) -> Result<Gitea, CodeHostError> {
        Gitea::with_budget(config, Arc::new(RateLimitBudget::new()))
    }

    pub fn with_budget(config: GiteaConfig, budget: Arc<RateLimitBudget>) -> Result<Gitea, CodeHostError> {
        // reqwest is built without a default TLS provider (see the workspace Cargo.toml);
        // installing ring twice is harmless, so the error is ignored.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(CodeHostError::protocol(format!(
                "Gitea API URL {base_url:?} must start with https:// (or http:// for a local test host), e.g. https://gitea.example.com/api/v1"
            )));
        }
        let mut authorization = HeaderValue::from_str(&format!("token {}", config.token)).map_err(|_| CodeHostError::Permanent {
            kind: PermanentKind::BadCredentials,
            message: "the Gitea token contains characters that cannot be sent in a header: paste the token again".into(),
        })?;
        authorization.set_sensitive(true);
        let client = reqwest::Client::builder()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|error| CodeHostError::protocol(format!("building the HTTP client for Gitea: {error}")))?;
        Ok(Gitea { client, base_url, authorization, budget, retry: config.retry, per_page: config.per_page.clamp(1, MAX_PAGE_SIZE) })
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
        transport::send(&GITEA_API, &self.client, &self.budget, &self.retry, |request| request.header(reqwest::header::AUTHORIZATION, self.authorization.clone()), method, url, query, body, what)
            .await
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str, what: &str) -> Result<T, CodeHostError> {
        self.send(Method::GET, &self.url(path), &[], None, what).await?.json(what)
    }

    /// Every page of a listing: the `Link: <...>; rel="next"` target when Gitea sends one, else
    /// the next page number while `X-Total-Count` says items are missing. A page cut shorter
    /// than `limit` (a server with a lower `MAX_RESPONSE_ITEMS`) is therefore no reason to stop.
    async fn get_all_pages<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)], what: &str) -> Result<Vec<T>, CodeHostError> {
        let mut items = Vec::new();
        let base_url = self.url(path);
        let mut base_query: Vec<(&str, String)> = query.to_vec();
        base_query.push(("limit", self.per_page.to_string()));
        let mut page_number = 1_u64;
        let mut next: Option<(String, Vec<(&str, String)>)> = Some((base_url.clone(), base_query.clone()));
        while let Some((url, query)) = next.take() {
            let reply = self.send(Method::GET, &url, &query, None, what).await?;
            let page: Vec<T> = reply.json(what)?;
            let empty = page.is_empty();
            items.extend(page);
            let link = reply.headers.get(reqwest::header::LINK).and_then(|value| value.to_str().ok()).and_then(next_link);
            let total = header_u64(&reply.headers, "x-total-count");
            page_number += 1;
            next = match (link, total) {
                _ if empty => None,
                // The next link carries the whole query already.
                (Some(link), _) => Some((link, Vec::new())),
                (None, Some(total)) if (items.len() as u64) < total => {
                    let mut query = base_query.clone();
                    query.push(("page", page_number.to_string()));
                    Some((base_url.clone(), query))
                }
                _ => None,
            };
        }
        Ok(items)
    }

    async fn pull(&self, repository: &RepositoryRef, number: u64) -> Result<GtPullRequest, CodeHostError> {
        let what = format!("reading pull request #{number} of {repository}");
        self.get_json(&format!("{}/pulls/{number}", repository_path(repository)), &what).await
    }

    /// A pull request with its review and check states filled in.
    async fn with_states(&self, repository: &RepositoryRef, pull: GtPullRequest) -> Result<ExternalChangeset, CodeHostError> {
        let what = format!("reading the reviews of pull request #{} of {repository}", pull.number);
        let reviews: Vec<GtReview> = self.get_all_pages(&format!("{}/pulls/{}/reviews", repository_path(repository), pull.number), &[], &what).await?;
        let check_state = match pull.head.sha.as_deref().filter(|sha| !sha.is_empty()) {
            Some(sha) => {
                let what = format!("reading the commit status of {sha} in {repository}");
                let status: GtCombinedStatus = self.get_json(&format!("{}/commits/{}/status", repository_path(repository), encode_segment(sha)), &what).await?;
                status.check_state()
            }
            None => CheckState::Unknown,
        };
        Ok(pull.into_changeset(review_state(&reviews), check_state))
    }

    async fn list_repositories_impl(&self, selection: &RepositorySelection) -> Result<Vec<HostedRepository>, CodeHostError> {
        match selection {
            RepositorySelection::Organization(org) => {
                let what = format!("listing the repositories of organization {org}");
                let repositories: Vec<GtRepository> = self.get_all_pages(&format!("/orgs/{}/repos", encode_segment(org)), &[], &what).await.map_err(|error| match error {
                    // A user's repositories are not an organization's: say how to list them.
                    CodeHostError::Permanent { kind: PermanentKind::NotFound, message } => CodeHostError::Permanent {
                        kind: PermanentKind::NotFound,
                        message: format!("{message}; if {org} is a user rather than an organization, list its repositories with --repos {org}/a,{org}/b"),
                    },
                    other => other,
                })?;
                Ok(repositories.into_iter().map(GtRepository::into_hosted).collect())
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
        let found: GtRepository = self.get_json(&repository_path(repository), &what).await?;
        Ok(found.into_hosted())
    }

    async fn find_by_head_impl(&self, repository: &RepositoryRef, head_ref: &str) -> Result<Option<ExternalChangeset>, CodeHostError> {
        let head_ref = branch_name(head_ref);
        let what = format!("looking for a pull request from {head_ref} in {repository}");
        let query = [("state", "all".to_owned()), ("sort", "recentupdate".to_owned())];
        let pulls: Vec<GtPullRequest> = self.get_all_pages(&format!("{}/pulls", repository_path(repository)), &query, &what).await?;
        let mut matching: Vec<GtPullRequest> = pulls.into_iter().filter(|pull| pull.is_from_branch_of_base_repository(head_ref)).collect();
        // An open one wins over older closed ones; among the rest, the newest.
        matching.sort_by_key(|pull| (pull.state == "open" && !pull.merged, pull.number));
        match matching.pop() {
            Some(chosen) => Ok(Some(self.with_states(repository, chosen).await?)),
            None => Ok(None),
        }
    }

    async fn create_impl(&self, request: &ChangesetRequest) -> Result<ExternalChangeset, CodeHostError> {
        let repository = &request.repository;
        let head = branch_name(&request.head_ref);
        let base = branch_name(&request.base_ref);
        let what = format!("opening a pull request from {head} in {repository}");
        let body = json!({"head": head, "base": base, "title": titled(&request.title, request.draft), "body": request.body});
        let url = self.url(&format!("{}/pulls", repository_path(repository)));
        match self.send(Method::POST, &url, &[], Some(&body), &what).await {
            Ok(reply) => {
                let pull: GtPullRequest = reply.json(&what)?;
                Ok(pull.into_changeset(ReviewState::Pending, CheckState::Unknown))
            }
            // Opened before (a crash between opening and recording it): use that one.
            Err(error @ CodeHostError::Permanent { kind: PermanentKind::Validation, .. }) if error.to_string().contains("already exists") => {
                let existing = match existing_number(&error.to_string()) {
                    Some(number) => Some(self.with_states(repository, self.pull(repository, number).await?).await?),
                    None => self.find_by_head_impl(repository, head).await?,
                };
                match existing {
                    Some(existing) if matches!(existing.state, ExternalState::Open | ExternalState::Draft) => Ok(existing),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    async fn patch_pull(&self, repository: &RepositoryRef, number: u64, body: Value, what: &str) -> Result<ExternalChangeset, CodeHostError> {
        let url = self.url(&format!("{}/pulls/{number}", repository_path(repository)));
        let pull: GtPullRequest = self.send(Method::PATCH, &url, &[], Some(&body), what).await?.json(what)?;
        self.with_states(repository, pull).await
    }

    async fn update_impl(&self, repository: &RepositoryRef, number: u64, update: &ChangesetUpdate) -> Result<ExternalChangeset, CodeHostError> {
        let mut body = serde_json::Map::new();
        if let Some(title) = &update.title {
            // The marker lives in the title: keep a draft a draft when renaming it.
            let current = self.pull(repository, number).await?;
            body.insert("title".into(), json!(titled(title, current.is_draft())));
        }
        if let Some(text) = &update.body {
            body.insert("body".into(), json!(text));
        }
        if let Some(base) = &update.base_ref {
            body.insert("base".into(), json!(branch_name(base)));
        }
        if let Some(open) = update.open {
            body.insert("state".into(), json!(if open { "open" } else { "closed" }));
        }
        let what = format!("updating pull request #{number} of {repository}");
        self.patch_pull(repository, number, Value::Object(body), &what).await
    }

    async fn ready_impl(&self, repository: &RepositoryRef, number: u64) -> Result<ExternalChangeset, CodeHostError> {
        let pull = self.pull(repository, number).await?;
        if !pull.is_draft() {
            return self.with_states(repository, pull).await;
        }
        let what = format!("marking pull request #{number} of {repository} ready for review");
        let ready = self.patch_pull(repository, number, json!({"title": strip_draft(&pull.title)}), &what).await?;
        if ready.state == ExternalState::Draft {
            return Err(CodeHostError::Permanent {
                kind: PermanentKind::Validation,
                message: format!(
                    "{what}: Gitea still reports it as a work in progress after its WIP: / [WIP] prefix was removed; the server's WORK_IN_PROGRESS_PREFIXES include another marker: remove it from the title by hand"
                ),
            });
        }
        Ok(ready)
    }

    async fn merge_impl(&self, repository: &RepositoryRef, number: u64, method: MergeMethod) -> Result<ExternalChangeset, CodeHostError> {
        let what = format!("merging pull request #{number} of {repository}");
        let url = self.url(&format!("{}/pulls/{number}/merge", repository_path(repository)));
        let style = match method {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        };
        // Gitea answers a merge with an empty 200: read the pull request afterwards.
        self.send(Method::POST, &url, &[], Some(&json!({"Do": style})), &what).await?;
        let pull = self.pull(repository, number).await?;
        self.with_states(repository, pull).await
    }

    async fn comment_impl(&self, repository: &RepositoryRef, number: u64, body: &str) -> Result<(), CodeHostError> {
        let what = format!("commenting on pull request #{number} of {repository}");
        // Pull requests are issues on Gitea: comments go through the issue.
        let url = self.url(&format!("{}/issues/{number}/comments", repository_path(repository)));
        self.send(Method::POST, &url, &[], Some(&json!({"body": body})), &what).await?;
        Ok(())
    }
}

impl Gitea {
    async fn load_impl(&self, repository: &RepositoryRef, number: u64) -> Result<ExternalChangeset, CodeHostError> {
        let pull = self.pull(repository, number).await?;
        self.with_states(repository, pull).await
    }
}

crate::code_host_by_inherent_methods!(Gitea);

/// Gitea's error body: `{"message": "...", "url": "https://HOST/api/swagger"}`, for 404s and
/// validation failures sometimes with `"errors": ["..."]`.
fn describe_error(status: StatusCode, body: &[u8]) -> String {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut parts: Vec<String> = Vec::new();
    if let Some(message) = parsed.get("message").and_then(Value::as_str).map(str::trim).filter(|message| !message.is_empty()) {
        parts.push(message.to_owned());
    }
    if let Some(errors) = parsed.get("errors").and_then(Value::as_array) {
        parts.extend(errors.iter().filter_map(Value::as_str).map(str::trim).filter(|error| !error.is_empty()).map(str::to_owned));
    }
    let mut text = format!("Gitea answered {} {}", status.as_u16(), status.canonical_reason().unwrap_or("")).trim_end().to_owned();
    if !parts.is_empty() {
        text.push_str(": ");
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
        // Gitea has no limit of its own; a proxy's 429 without Retry-After waits a minute.
        let wait = asked_wait.or_else(|| RateLimitHeaders::GITHUB.exhausted_wait(&reply.headers, now)).unwrap_or(Duration::from_secs(60));
        return Some(Verdict::RateLimited { wait, message: described });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Some(Verdict::Retry { wait: asked_wait, message: described });
    }
    let (kind, advice) = match status {
        StatusCode::UNAUTHORIZED => (PermanentKind::BadCredentials, "the token is wrong, expired or revoked: update the code host credential"),
        // Gitea answers 423 Locked for writes to an archived repository.
        StatusCode::LOCKED => (PermanentKind::ArchivedRepository, "the repository is archived and read-only: unarchive it or leave it out of the batch change"),
        StatusCode::FORBIDDEN => {
            (PermanentKind::Forbidden, "the token lacks access: give it the write:repository (and read:organization) scopes and write access to the repository")
        }
        StatusCode::NOT_FOUND => (PermanentKind::NotFound, "check the name, and that the token can see the repository"),
        StatusCode::CONFLICT => (PermanentKind::Validation, "another pull request already uses this branch and base: close it or use another branch"),
        _ => (PermanentKind::Validation, "fix the request (title, branches, state) and apply again"),
    };
    Some(Verdict::Fail(CodeHostError::Permanent { kind, message: format!("{described} ({advice})") }))
}

#[derive(Debug, Deserialize)]
struct GtRepository {
    full_name: String,
    clone_url: String,
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    archived: bool,
    #[serde(default)]
    fork: bool,
    /// Absent only for a token that cannot see it: assume the safe answer then.
    #[serde(default = "private_by_default")]
    private: bool,
}

fn private_by_default() -> bool {
    true
}

impl GtRepository {
    fn into_hosted(self) -> HostedRepository {
        HostedRepository {
            full_name: self.full_name,
            clone_url: self.clone_url,
            // An empty repository has no default branch yet; Gitea's default is "main".
            default_branch: self.default_branch.filter(|branch| !branch.is_empty()).unwrap_or_else(|| "main".to_owned()),
            archived: self.archived,
            fork: self.fork,
            private: self.private,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct GtBranch {
    #[serde(rename = "ref", default)]
    reference: String,
    #[serde(default)]
    sha: Option<String>,
    #[serde(default)]
    repo_id: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct GtPullRequest {
    number: u64,
    #[serde(default)]
    html_url: String,
    /// `open` or `closed` (merged pull requests are closed with `merged: true`).
    state: String,
    #[serde(default)]
    merged: bool,
    /// Gitea 1.22+: the server's own reading of the title's work-in-progress prefix.
    #[serde(default)]
    draft: Option<bool>,
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    head: GtBranch,
    #[serde(default)]
    base: GtBranch,
    #[serde(default)]
    updated_at: Option<String>,
}

impl GtPullRequest {
    fn is_draft(&self) -> bool {
        self.draft.unwrap_or_else(|| is_draft_title(&self.title))
    }

    /// Whether its head is `branch` of the repository it targets (not a fork's same-named one).
    fn is_from_branch_of_base_repository(&self, branch: &str) -> bool {
        let same_repository = match (self.head.repo_id, self.base.repo_id) {
            (Some(head), Some(base)) => head == base,
            _ => true,
        };
        same_repository && branch_name(&self.head.reference) == branch
    }

    fn external_state(&self) -> ExternalState {
        if self.merged {
            ExternalState::Merged
        } else if self.state == "closed" {
            ExternalState::Closed
        } else if self.is_draft() {
            ExternalState::Draft
        } else {
            ExternalState::Open
        }
    }

    fn into_changeset(self, review_state: ReviewState, check_state: CheckState) -> ExternalChangeset {
        let state = self.external_state();
        ExternalChangeset {
            number: self.number,
            url: self.html_url,
            state,
            review_state,
            check_state,
            title: strip_draft(&self.title),
            body: self.body.unwrap_or_default(),
            base_ref: branch_name(&self.base.reference).to_owned(),
            head_ref: branch_name(&self.head.reference).to_owned(),
            head_sha: self.head.sha.filter(|sha| !sha.is_empty()),
            updated_at: self.updated_at.unwrap_or_default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct GtUser {
    #[serde(default)]
    login: String,
}

#[derive(Debug, Deserialize)]
struct GtReview {
    #[serde(default)]
    id: u64,
    #[serde(default)]
    user: Option<GtUser>,
    /// `APPROVED`, `REQUEST_CHANGES`, `COMMENT`, `PENDING` or `REQUEST_REVIEW`.
    #[serde(default)]
    state: String,
    #[serde(default)]
    dismissed: bool,
}

/// Each reviewer's latest verdict: a change request outweighs approvals; a dismissed review
/// withdraws its reviewer's verdict; comments and review requests are no verdict.
fn review_state(reviews: &[GtReview]) -> ReviewState {
    let mut ordered: Vec<&GtReview> = reviews.iter().collect();
    ordered.sort_by_key(|review| review.id);
    let mut latest: std::collections::BTreeMap<&str, &str> = std::collections::BTreeMap::new();
    for review in ordered {
        let reviewer = review.user.as_ref().map_or("", |user| user.login.as_str());
        if review.dismissed {
            latest.remove(reviewer);
            continue;
        }
        if matches!(review.state.as_str(), "APPROVED" | "REQUEST_CHANGES") {
            latest.insert(reviewer, review.state.as_str());
        }
    }
    if latest.values().any(|state| *state == "REQUEST_CHANGES") {
        ReviewState::ChangesRequested
    } else if latest.values().any(|state| *state == "APPROVED") {
        ReviewState::Approved
    } else {
        ReviewState::Pending
    }
}

#[derive(Debug, Deserialize)]
struct GtCombinedStatus {
    /// Empty when the commit has no statuses.
    #[serde(default)]
    state: String,
    #[serde(default)]
    total_count: u64,
}

impl GtCombinedStatus {
    fn check_state(&self) -> CheckState {
        if self.total_count == 0 {
            return CheckState::Unknown;
        }
        combined_state(&self.state)
    }
}

/// Gitea's combined commit status in our terms.
fn combined_state(state: &str) -> CheckState {
    match state {
        "success" => CheckState::Passed,
        // A warning does not block a merge on Gitea: the checks ran and let it through.
        "warning" => CheckState::Passed,
        "failure" | "error" => CheckState::Failed,
        "pending" => CheckState::Pending,
        // Empty (no statuses) and states newer than this adapter say nothing.
        _ => CheckState::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, headers: &[(&'static str, &str)], body: &str) -> Reply {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            map.insert(*name, HeaderValue::from_str(value).expect("test header values are ASCII"));
        }
        Reply { status: StatusCode::from_u16(status).expect("valid test status"), headers: map, body: body.as_bytes().to_vec(), forge: &GITEA_API }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)
    }

    fn pull(state: &str, merged: bool, draft: Option<bool>, title: &str) -> GtPullRequest {
        GtPullRequest {
            number: 1,
            html_url: String::new(),
            state: state.into(),
            merged,
            draft,
            title: title.into(),
            body: None,
            head: GtBranch { reference: "topic".into(), sha: None, repo_id: Some(1) },
            base: GtBranch { reference: "main".into(), sha: None, repo_id: Some(1) },
            updated_at: None,
        }
    }

    #[test]
    fn repository_paths_encode_each_segment() {
        assert_eq!(repository_path(&RepositoryRef::new("acme", "my.widgets")), "/repos/acme/my.widgets");
        assert_eq!(repository_path(&RepositoryRef::new("a b", "c/d")), "/repos/a%20b/c%2Fd");
    }

    #[test]
    fn work_in_progress_markers_are_read_stripped_and_added() {
        for (title, draft, stripped) in [
            ("WIP: Fix", true, "Fix"),
            ("[WIP] Fix", true, "Fix"),
            ("wip:Fix", true, "Fix"),
            ("[wip] WIP: Fix", true, "Fix"),
            ("  WIP: Fix", true, "Fix"),
            ("Draft: Fix", false, "Draft: Fix"),
            ("Wipe the cache", false, "Wipe the cache"),
        ] {
            assert_eq!(is_draft_title(title), draft, "{title}");
            assert_eq!(strip_draft(title), stripped, "{title}");
        }
        assert_eq!(titled("Fix", true), "WIP: Fix");
        assert_eq!(titled("[WIP] Fix", true), "WIP: Fix", "never two markers");
        assert_eq!(titled("WIP: Fix", false), "Fix");
    }

    #[test]
    fn state_is_merged_closed_draft_or_open() {
        assert_eq!(pull("closed", true, None, "Fix").external_state(), ExternalState::Merged);
        assert_eq!(pull("closed", false, None, "WIP: Fix").external_state(), ExternalState::Closed);
        assert_eq!(pull("open", false, None, "WIP: Fix").external_state(), ExternalState::Draft);
        assert_eq!(pull("open", false, None, "Fix").external_state(), ExternalState::Open);
        // The server's own reading (custom prefixes) wins over ours.
        assert_eq!(pull("open", false, Some(true), "DRAFT Fix").external_state(), ExternalState::Draft);
        assert_eq!(pull("open", false, Some(false), "WIP: Fix").external_state(), ExternalState::Open);
        let changeset = pull("open", false, None, "[WIP] Fix").into_changeset(ReviewState::Pending, CheckState::Unknown);
        assert_eq!((changeset.title.as_str(), changeset.state, changeset.head_ref.as_str()), ("Fix", ExternalState::Draft, "topic"));
    }

    #[test]
    fn only_the_base_repositorys_branch_matches() {
        let mut from_fork = pull("open", false, None, "Fix");
        from_fork.head.repo_id = Some(2);
        assert!(!from_fork.is_from_branch_of_base_repository("topic"));
        assert!(pull("open", false, None, "Fix").is_from_branch_of_base_repository("topic"));
        assert!(!pull("open", false, None, "Fix").is_from_branch_of_base_repository("other"));
    }

    #[test]
    fn review_state_is_each_reviewers_latest_standing_verdict() {
        let review = |id: u64, user: &str, state: &str, dismissed: bool| GtReview { id, user: Some(GtUser { login: user.into() }), state: state.into(), dismissed };
        assert_eq!(review_state(&[]), ReviewState::Pending);
        assert_eq!(review_state(&[review(1, "a", "COMMENT", false)]), ReviewState::Pending);
        assert_eq!(review_state(&[review(1, "a", "APPROVED", false)]), ReviewState::Approved);
        assert_eq!(review_state(&[review(2, "a", "APPROVED", false), review(1, "a", "REQUEST_CHANGES", false)]), ReviewState::Approved, "ordered by id");
        assert_eq!(review_state(&[review(1, "a", "APPROVED", false), review(2, "b", "REQUEST_CHANGES", false)]), ReviewState::ChangesRequested);
        assert_eq!(review_state(&[review(1, "b", "REQUEST_CHANGES", true)]), ReviewState::Pending);
        assert_eq!(review_state(&[review(1, "a", "APPROVED", false), review(2, "a", "REQUEST_REVIEW", false)]), ReviewState::Approved);
    }

    #[test]
    fn check_state_from_the_combined_status() {
        assert_eq!(GtCombinedStatus { state: String::new(), total_count: 0 }.check_state(), CheckState::Unknown);
        assert_eq!(GtCombinedStatus { state: "pending".into(), total_count: 0 }.check_state(), CheckState::Unknown, "no statuses at all");
        for (state, expected) in [
            ("pending", CheckState::Pending),
            ("success", CheckState::Passed),
            ("warning", CheckState::Passed),
            ("failure", CheckState::Failed),
            ("error", CheckState::Failed),
            ("skipped", CheckState::Unknown),
        ] {
            assert_eq!(GtCombinedStatus { state: state.into(), total_count: 2 }.check_state(), expected, "{state}");
        }
    }

    #[test]
    fn the_existing_pull_request_is_read_from_the_conflict() {
        let message = "pull request already exists for these targets [id: 11, issue_id: 3358, head_repo_id: 4, base_repo_id: 4, head_branch: topic, base_branch: main]";
        assert_eq!(existing_number(message), Some(3358));
        assert_eq!(existing_number("pull request already exists for these targets"), None);
    }

    #[test]
    fn answers_are_sorted_into_retry_wait_or_fail() {
        assert!(classify(&reply(200, &[], "[]"), "x", now()).is_none());
        assert!(matches!(classify(&reply(502, &[], ""), "x", now()), Some(Verdict::Retry { wait: None, .. })));
        assert!(matches!(
            classify(&reply(503, &[("retry-after", "3")], ""), "x", now()),
            Some(Verdict::Retry { wait: Some(wait), .. }) if wait == Duration::from_secs(3)
        ));
        assert!(matches!(
            classify(&reply(429, &[("retry-after", "2")], ""), "x", now()),
            Some(Verdict::RateLimited { wait, .. }) if wait == Duration::from_secs(2)
        ));
        assert!(matches!(classify(&reply(429, &[], ""), "x", now()), Some(Verdict::RateLimited { wait, .. }) if wait == Duration::from_secs(60)));
        let fail = |status: u16, body: &str| match classify(&reply(status, &[], body), "reading o/r", now()) {
            Some(Verdict::Fail(error)) => error,
            _ => panic!("{status} must fail at once"),
        };
        let error = fail(401, r#"{"message":"invalid username, password or token","url":"https://gitea.example/api/swagger"}"#);
        assert_eq!(error.permanent_kind(), Some(PermanentKind::BadCredentials));
        assert!(error.to_string().starts_with("reading o/r: Gitea answered 401 Unauthorized: invalid username, password or token ("), "{error}");
        assert!(!error.to_string().contains("swagger"), "the documentation URL is not part of the message: {error}");
        let error = fail(404, r#"{"message":"The target couldn't be found.","url":"u","errors":["branch does not exist [name: topic]"]}"#);
        assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
        assert!(error.to_string().contains("The target couldn't be found.; branch does not exist [name: topic]"), "{error}");
        let error = fail(409, r#"{"message":"pull request already exists for these targets [id: 1, issue_id: 1, head_repo_id: 1, base_repo_id: 1, head_branch: a, base_branch: main]"}"#);
        assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
        assert!(error.to_string().contains("already exists"), "{error}");
        assert_eq!(fail(423, r#"{"message":"repo is archived"}"#).permanent_kind(), Some(PermanentKind::ArchivedRepository));
        assert_eq!(fail(403, "").permanent_kind(), Some(PermanentKind::Forbidden));
        let error = fail(405, r#"{"message":"","url":"u"}"#);
        assert!(error.to_string().contains("Gitea answered 405 Method Not Allowed ("), "{error}");
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let link = r#"<https://g.example/api/v1/orgs/acme/repos?limit=2&page=2>; rel="next",<https://g.example/api/v1/orgs/acme/repos?limit=2&page=3>; rel="last""#;
        assert_eq!(next_link(link).as_deref(), Some("https://g.example/api/v1/orgs/acme/repos?limit=2&page=2"));
        assert_eq!(next_link(r#"<https://g.example/x?page=1>; rel="first""#), None);
    }
}
