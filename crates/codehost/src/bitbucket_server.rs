//! The Bitbucket Server / Data Center adapter: REST API 1.0 (`/rest/api/1.0`) and the build
//! status API (`/rest/build-status/1.0`) of a self-hosted Bitbucket, or of the test emulator,
//! whichever `base_url` (`https://HOST`, without the `/rest/...` part) names. It authenticates
//! with `Authorization: Bearer TOKEN`: an HTTP access token (personal, project or repository).
//!
//! It keeps the same rules as the GitHub and GitLab adapters, because the reconciler must not
//! care which forge it talks to: every request goes through the shared request loop
//! ([`crate::transport`]) and the credential's [`RateLimitBudget`]. Bitbucket's rate limiting
//! is a token bucket per user that answers 429 with `Retry-After` when the bucket is empty;
//! the loop waits that long (every caller sharing the budget does) and tries again. 5xx and
//! network failures are retried with bounded exponential backoff, and every other answer
//! becomes a [`CodeHostError`] carrying Bitbucket's own message from its
//! `{"errors": [{"message", "exceptionName"}]}` body.
//!
//! Bitbucket's vocabulary differs and is translated here: an organisation is a *project*,
//! named by its key (`RepositorySelection::Organization("PROJ")`), a repository is addressed by
//! project key and *slug*, so `RepositoryRef { owner: key, name: slug }`. Listings come in
//! Bitbucket's paged envelope (`{values, isLastPage, nextPageStart}`) and are followed to the
//! last page. The clone URL is the `http` entry of the repository's `links.clone`, with the
//! user name Bitbucket puts in it removed (credentials travel separately). The default branch
//! needs a call of its own per repository (`/default-branch`, or `/branches/default` on
//! versions older than 7.5).
//!
//! Pull requests carry a `version` for optimistic locking: every change (`PUT`, decline,
//! reopen, merge) sends the version last read, and a stale one is refused with 409. So each
//! change loads the pull request first, and an update that loses a race with a person editing
//! it on Bitbucket is loaded and applied again (a few times). A `PUT` replaces the pull
//! request's title, description, target and reviewer list, so the current values of what is
//! not being changed are sent back. Closing is *declining* (state `DECLINED`, reported as
//! closed) and reopening a declined one is its own call. Review state comes from the
//! reviewers' statuses (`NEEDS_WORK` wins over `APPROVED`), check state from the build
//! statuses of the head commit.
//!
//! Drafts: Bitbucket Data Center 8.18 added a `draft` flag to pull requests. A draft is opened
//! with `draft: true` and undrafted with an update carrying `draft: false`. Older versions
//! ignore the flag and would open the pull request for review, so before opening a draft the
//! adapter reads the server's version (`/application-properties`, once per adapter) and refuses
//! with a message saying what to do on a version without drafts.
//!
//! Merging uses the repository's default merge strategy; `MergeMethod::Squash` and `Rebase`
//! ask for the `squash` and `rebase-no-ff` strategies, which the repository must have enabled.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderValue;
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::budget::{RateLimitBudget, RateLimitHeaders, RetryPolicy, retry_after};
use crate::error::{CodeHostError, PermanentKind};
use crate::transport::{self, Forge, Reply, Verdict, branch_name, encode_segment};
use crate::types::{
    ChangesetRequest, ChangesetUpdate, CheckState, ExternalChangeset, ExternalState, HostedRepository, MergeMethod,
    RepositoryRef, RepositorySelection, ReviewState,
};

/// The first Bitbucket Data Center version with draft pull requests.
const DRAFTS_SINCE: (u32, u32) = (8, 18);

/// How often an update that keeps meeting a stale `version` (someone else editing the pull
/// request at the same time) is loaded and tried again before giving up.
const VERSION_CONFLICT_ATTEMPTS: u32 = 3;

/// How to reach one Bitbucket Server or Data Center with one credential.
#[derive(Debug, Clone)]
pub struct BitbucketServerConfig {
    /// The server's root, `https://HOST` (or `https://HOST/CONTEXT`); a trailing
    /// `/rest/api/1.0` is accepted and removed.
    pub base_url: String,
    /// An HTTP access token, sent as `Authorization: Bearer`.
    pub token: String,
    pub retry: RetryPolicy,
    /// Bound on one HTTP exchange; a request that takes longer counts as a transient failure.
    pub request_timeout: Duration,
    /// Page size for listings (`limit`; Bitbucket caps it at 1000 by default).
    pub page_limit: u32,
}

impl BitbucketServerConfig {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>) -> BitbucketServerConfig {
        BitbucketServerConfig {
            base_url: base_url.into(),
            token: token.into(),
            retry: RetryPolicy::default(),
            request_timeout: Duration::from_secs(30),
            page_limit: 100,
        }
    }
}

/// See the module documentation. All calls through one instance (and through any instance
/// given the same budget) share the rate-limit budget.
pub struct BitbucketServer {
    client: reqwest::Client,
    base_url: String,
    authorization: HeaderValue,
    budget: Arc<RateLimitBudget>,
    retry: RetryPolicy,
    page_limit: u32,
    /// The server's `major.minor`, read the first time a draft is opened.
    version: tokio::sync::OnceCell<(u32, u32)>,
}

impl std::fmt::Debug for BitbucketServer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        formatter.debug_struct("BitbucketServer").field("base_url", &self.base_url).finish_non_exhaustive()
    }
}

/// Bitbucket sends `X-RateLimit-Limit` (the bucket size) when rate limiting is on, but no
/// remaining count or reset time: the budget learns what it can, and the 429's `Retry-After`
/// does the rest.
const BITBUCKET_RATE_LIMIT_HEADERS: RateLimitHeaders =
    RateLimitHeaders { limit: "x-ratelimit-limit", remaining: "x-ratelimit-remaining", reset: "x-ratelimit-reset" };

/// How this adapter's API talks (see [`crate::transport`]).
static BITBUCKET_API: Forge =
    Forge { name: "Bitbucket", api_hint: "the Bitbucket server's root (https://HOST, without /rest/api/1.0)", rate_limit_headers: BITBUCKET_RATE_LIMIT_HEADERS, classify };

/// `/projects/KEY/repos/slug`, relative to `/rest/api/1.0`.
fn repository_path(repository: &RepositoryRef) -> String {
    format!("/projects/{}/repos/{}", encode_segment(&repository.owner), encode_segment(&repository.name))
}

fn pull_request_path(repository: &RepositoryRef, id: u64) -> String {
    format!("{}/pull-requests/{id}", repository_path(repository))
}

fn branch_ref(branch: &str) -> String {
    format!("refs/heads/{}", branch_name(branch))
}

/// A `fromRef` or `toRef` in this repository.
fn ref_json(repository: &RepositoryRef, branch: &str) -> Value {
    json!({"id": branch_ref(branch), "repository": {"slug": repository.name, "project": {"key": repository.owner}}})
}

/// The clone URL without the `user@` Bitbucket writes into it for the token's owner.
fn without_user_info(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (authority, path) = rest.split_once('/').map_or((rest, ""), |(authority, path)| (authority, path));
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if path.is_empty() && !rest.contains('/') { format!("{scheme}://{host}") } else { format!("{scheme}://{host}/{path}") }
}

/// `8.19.1` → `(8, 19)`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|minor| minor.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()).unwrap_or(0);
    Some((major, minor))
}

impl BitbucketServer {
    /// An adapter with its own budget (use [`BitbucketServer::with_budget`] when several
    /// adapters share a credential).
    pub fn new(config: BitbucketServerConfig) -> Result<BitbucketServer, CodeHostError> {
        BitbucketServer::with_budget(config, Arc::new(RateLimitBudget::new()))
    }

    pub fn with_budget(config: BitbucketServerConfig, budget: Arc<RateLimitBudget>) -> Result<BitbucketServer, CodeHostError> {
        // reqwest is built without a default TLS provider (see the workspace Cargo.toml);
        // installing ring twice is harmless, so the error is ignored.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let trimmed = config.base_url.trim_end_matches('/');
        let base_url = trimmed.strip_suffix("/rest/api/1.0").or_else(|| trimmed.strip_suffix("/rest/api/latest")).unwrap_or(trimmed).to_owned();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            return Err(CodeHostError::protocol(format!(
                "Bitbucket URL {base_url:?} must start with https:// (or http:// for a local test host)"
            )));
        }
        let mut authorization = HeaderValue::from_str(&format!("Bearer {}", config.token)).map_err(|_| CodeHostError::Permanent {
            kind: PermanentKind::BadCredentials,
            message: "the Bitbucket token contains characters that cannot be sent in a header: paste the token again".into(),
        })?;
        authorization.set_sensitive(true);
        let client = reqwest::Client::builder()
            .user_agent(concat!("flotilla/", env!("CARGO_PKG_VERSION")))
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|error| CodeHostError::protocol(format!("building the HTTP client for Bitbucket: {error}")))?;
        Ok(BitbucketServer {
            client,
            base_url,
            authorization,
            budget,
            retry: config.retry,
            page_limit: config.page_limit.clamp(1, 1000),
            version: tokio::sync::OnceCell::new(),
        })
    }

    /// The budget every call through this adapter draws from.
    pub fn budget(&self) -> &Arc<RateLimitBudget> {
        &self.budget
    }

    /// A REST API 1.0 URL.
    fn api(&self, path: &str) -> String {
        format!("{}/rest/api/1.0{path}", self.base_url)
    }

    /// Sends one logical request, with rate-limit waits and retries (see the module docs).
    async fn send(&self, method: Method, url: &str, query: &[(&str, String)], body: Option<&Value>, what: &str) -> Result<Reply, CodeHostError> {
        transport::send(&BITBUCKET_API, &self.client, &self.budget, &self.retry, |request| request.header("authorization", self.authorization.clone()), method, url, query, body, what)
            .await
    }

    async fn get_json<T: DeserializeOwned>(&self, url: &str, what: &str) -> Result<T, CodeHostError> {
        self.send(Method::GET, url, &[], None, what).await?.json(what)
    }

    /// Every page of a listing, following `nextPageStart` until `isLastPage`.
    async fn get_all_pages<T: DeserializeOwned>(&self, url: &str, query: &[(&str, String)], what: &str) -> Result<Vec<T>, CodeHostError> {
        let mut items = Vec::new();
        let mut start = 0_u64;
        loop {
            let mut page_query: Vec<(&str, String)> = query.to_vec();
            page_query.push(("start", start.to_string()));
            page_query.push(("limit", self.page_limit.to_string()));
            let page: Page<T> = self.send(Method::GET, url, &page_query, None, what).await?.json(what)?;
            let next = page.next_start(start).map_err(|message| CodeHostError::protocol(format!("{what}: {message}")))?;
            items.extend(page.values);
            match next {
                Some(next) => start = next,
                None => return Ok(items),
            }
        }
    }

    /// The server's `major.minor`, read once.
    async fn server_version(&self) -> Result<(u32, u32), CodeHostError> {
        self.version
            .get_or_try_init(|| async {
                let what = "reading the Bitbucket server's version";
                let properties: BbApplicationProperties = self.get_json(&self.api("/application-properties"), what).await?;
                parse_version(&properties.version)
                    .ok_or_else(|| CodeHostError::protocol(format!("{what}: {:?} is not a version number", properties.version)))
            })
            .await
            .copied()
    }

    async fn default_branch(&self, repository: &RepositoryRef) -> Result<String, CodeHostError> {
        let what = format!("reading the default branch of {repository}");
        let attempt = self.get_json::<BbBranch>(&self.api(&format!("{}/default-branch", repository_path(repository))), &what).await;
        let fallback = match attempt {
            Ok(branch) => return Ok(branch.display_id()),
            // Before 7.5 the resource was `branches/default`.
            Err(error) if error.permanent_kind() == Some(PermanentKind::NotFound) => {
                self.get_json::<BbBranch>(&self.api(&format!("{}/branches/default", repository_path(repository))), &what).await
            }
            Err(error) => return Err(error),
        };
        match fallback {
            Ok(branch) => Ok(branch.display_id()),
            // An empty repository has no default branch yet; git then creates `main` or
            // `master` on the first push. Say `main`, as the GitLab adapter does.
            Err(error) if error.permanent_kind() == Some(PermanentKind::NotFound) => Ok("main".to_owned()),
            Err(error) => Err(error),
        }
    }

    async fn hosted(&self, repository: BbRepository) -> Result<HostedRepository, CodeHostError> {
        let reference = RepositoryRef::new(repository.project.key.clone(), repository.slug.clone());
        let default_branch = self.default_branch(&reference).await?;
        repository.into_hosted(default_branch)
    }

    async fn list_repositories_impl(&self, selection: &RepositorySelection) -> Result<Vec<HostedRepository>, CodeHostError> {
        match selection {
            RepositorySelection::Organization(project) => {
                let what = format!("listing the repositories of project {project}");
                let repositories: Vec<BbRepository> = self.get_all_pages(&self.api(&format!("/projects/{}/repos", encode_segment(project))), &[], &what).await?;
                let mut hosted = Vec::with_capacity(repositories.len());
                for repository in repositories {
                    hosted.push(self.hosted(repository).await?);
                }
                Ok(hosted)
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
        let found: BbRepository = self.get_json(&self.api(&repository_path(repository)), &what).await?;
        self.hosted(found).await
    }

    async fn pull_request(&self, repository: &RepositoryRef, id: u64) -> Result<BbPullRequest, CodeHostError> {
        let what = format!("reading pull request #{id} of {repository}");
        self.get_json(&self.api(&pull_request_path(repository, id)), &what).await
    }

    /// A pull request with its check state filled in (the review state comes with it).
    async fn with_states(&self, repository: &RepositoryRef, pull_request: BbPullRequest) -> Result<ExternalChangeset, CodeHostError> {
        let check_state = match pull_request.from_ref.latest_commit.as_deref() {
            Some(sha) if !sha.is_empty() => {
                let what = format!("reading the build statuses of {repository}@{sha}");
                let url = format!("{}/rest/build-status/1.0/commits/{}", self.base_url, encode_segment(sha));
                let statuses: Vec<BbBuildStatus> = self.get_all_pages(&url, &[], &what).await?;
                build_state(&statuses)
            }
            _ => CheckState::Unknown,
        };
        Ok(pull_request.into_changeset(check_state))
    }

    async fn find_by_head_impl(&self, repository: &RepositoryRef, head_ref: &str) -> Result<Option<ExternalChangeset>, CodeHostError> {
        let head = branch_ref(head_ref);
        let what = format!("looking for a pull request from {} in {repository}", branch_name(head_ref));
        let query = [("state", "ALL".to_owned()), ("at", head.clone()), ("direction", "OUTGOING".to_owned()), ("order", "NEWEST".to_owned())];
        let pull_requests: Vec<BbPullRequest> = self.get_all_pages(&self.api(&format!("{}/pull-requests", repository_path(repository))), &query, &what).await?;
        // `at` matches the branch; keep only those from this repository's branch (not a fork's).
        let mut candidates: Vec<BbPullRequest> = pull_requests.into_iter().filter(|pull_request| pull_request.from_ref.id == head && pull_request.from_ref.is_in(repository)).collect();
        // Newest first; an open one wins over older declined or merged ones.
        let chosen = match candidates.iter().position(|pull_request| pull_request.state == "OPEN") {
            Some(index) => Some(candidates.swap_remove(index)),
            None => candidates.into_iter().next(),
        };
        match chosen {
            Some(chosen) => Ok(Some(self.with_states(repository, chosen).await?)),
            None => Ok(None),
        }
    }

    async fn create_impl(&self, request: &ChangesetRequest) -> Result<ExternalChangeset, CodeHostError> {
        let repository = &request.repository;
        let head = branch_name(&request.head_ref);
        let what = format!("opening a pull request from {head} in {repository}");
        if request.draft {
            let version = self.server_version().await?;
            if version < DRAFTS_SINCE {
                return Err(CodeHostError::Permanent {
                    kind: PermanentKind::Validation,
                    message: format!(
                        "{what}: this Bitbucket is version {}.{}, and draft pull requests need Bitbucket Data Center {}.{} or later: publish with `published: true` instead of `draft`, or upgrade Bitbucket",
                        version.0, version.1, DRAFTS_SINCE.0, DRAFTS_SINCE.1
                    ),
                });
            }
        }
        let mut body = json!({
            "title": request.title,
            "description": request.body,
            "fromRef": ref_json(repository, &request.head_ref),
            "toRef": ref_json(repository, &request.base_ref),
        });
        if request.draft {
            body["draft"] = json!(true);
        }
        let url = self.api(&format!("{}/pull-requests", repository_path(repository)));
        match self.send(Method::POST, &url, &[], Some(&body), &what).await {
            Ok(reply) => {
                let pull_request: BbPullRequest = reply.json(&what)?;
                let mut changeset = pull_request.into_changeset(CheckState::Unknown);
                changeset.review_state = ReviewState::Pending;
                Ok(changeset)
            }
            // Opened before (a crash between opening and recording it): use that one.
            Err(error @ CodeHostError::Permanent { kind: PermanentKind::Validation, .. }) if error.to_string().contains("DuplicatePullRequestException") => {
                match self.find_by_head_impl(repository, head).await? {
                    Some(existing) if matches!(existing.state, ExternalState::Open | ExternalState::Draft) => Ok(existing),
                    _ => Err(error),
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Loads the pull request and applies `change` to it with its current version; when the
    /// version went stale in between (someone edited it), loads and applies again.
    async fn with_fresh_version<F, Fut>(&self, repository: &RepositoryRef, id: u64, change: F) -> Result<BbPullRequest, CodeHostError>
    where
        F: Fn(BbPullRequest) -> Fut,
        Fut: std::future::Future<Output = Result<BbPullRequest, CodeHostError>>,
    {
        let mut attempt = 1;
        loop {
            let current = self.pull_request(repository, id).await?;
            match change(current).await {
                Err(error) if attempt < VERSION_CONFLICT_ATTEMPTS && is_stale_version(&error) => {
                    tracing::info!(attempt, "{error}; loading the pull request again");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// `PUT` with every field Bitbucket would otherwise reset, changed where `update` says.
    async fn put_pull_request(&self, repository: &RepositoryRef, current: &BbPullRequest, update: &ChangesetUpdate, draft: Option<bool>) -> Result<BbPullRequest, CodeHostError> {
        let what = format!("updating pull request #{} of {repository}", current.id);
        let reviewers: Vec<Value> = current.reviewers.iter().filter_map(|reviewer| reviewer.user.as_ref()).map(|user| json!({"user": {"name": user.name}})).collect();
        let mut body = json!({
            "version": current.version,
            "title": update.title.as_deref().unwrap_or(&current.title),
            "description": update.body.as_deref().or(current.description.as_deref()).unwrap_or_default(),
            "reviewers": reviewers,
        });
        if let Some(base) = &update.base_ref {
            body["toRef"] = ref_json(repository, base);
        }
        if let Some(draft) = draft.or(current.draft) {
            body["draft"] = json!(draft);
        }
        let url = self.api(&pull_request_path(repository, current.id));
        self.send(Method::PUT, &url, &[], Some(&body), &what).await?.json(&what)
    }

    /// `decline`, `reopen` or `merge`, at the version last read.
    async fn transition(&self, repository: &RepositoryRef, current: &BbPullRequest, action: &str, extra: Value, what: &str) -> Result<BbPullRequest, CodeHostError> {
        let url = self.api(&format!("{}/{action}", pull_request_path(repository, current.id)));
        let mut body = json!({"version": current.version});
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        self.send(Method::POST, &url, &[("version", current.version.to_string())], Some(&body), what).await?.json(what)
    }

    async fn update_impl(&self, repository: &RepositoryRef, id: u64, update: &ChangesetUpdate) -> Result<ExternalChangeset, CodeHostError> {
        let changes_fields = update.title.is_some() || update.body.is_some() || update.base_ref.is_some();
        let updated = self
            .with_fresh_version(repository, id, |mut current| async move {
                // A declined pull request cannot be edited: reopen it first.
                if update.open == Some(true) && current.state == "DECLINED" {
                    let what = format!("reopening pull request #{id} of {repository}");
                    current = self.transition(repository, &current, "reopen", json!({}), &what).await?;
                }
                if changes_fields && current.state != "MERGED" {
                    current = self.put_pull_request(repository, &current, update, None).await?;
                }
                if update.open == Some(false) && current.state == "OPEN" {
                    let what = format!("declining pull request #{id} of {repository}");
                    current = self.transition(repository, &current, "decline", json!({}), &what).await?;
                }
                Ok(current)
            })
            .await?;
        self.with_states(repository, updated).await
    }

    async fn ready_impl(&self, repository: &RepositoryRef, id: u64) -> Result<ExternalChangeset, CodeHostError> {
        let updated = self
            .with_fresh_version(repository, id, |current| async move {
                if current.draft != Some(true) {
                    return Ok(current);
                }
                self.put_pull_request(repository, &current, &ChangesetUpdate::default(), Some(false)).await
            })
            .await?;
        self.with_states(repository, updated).await
    }

    async fn merge_impl(&self, repository: &RepositoryRef, id: u64, method: MergeMethod) -> Result<ExternalChangeset, CodeHostError> {
        let strategy = match method {
            MergeMethod::Merge => json!({}),
            MergeMethod::Squash => json!({"strategyId": "squash"}),
            MergeMethod::Rebase => json!({"strategyId": "rebase-no-ff"}),
        };
        let what = format!("merging pull request #{id} of {repository}");
        let merged = self
            .with_fresh_version(repository, id, |current| {
                let (strategy, what) = (strategy.clone(), &what);
                async move { self.transition(repository, &current, "merge", strategy, what).await }
            })
            .await?;
        self.with_states(repository, merged).await
    }

    async fn comment_impl(&self, repository: &RepositoryRef, id: u64, text: &str) -> Result<(), CodeHostError> {
        let what = format!("commenting on pull request #{id} of {repository}");
        let url = self.api(&format!("{}/comments", pull_request_path(repository, id)));
        self.send(Method::POST, &url, &[], Some(&json!({"text": text})), &what).await?;
        Ok(())
    }
}

impl BitbucketServer {
    async fn load_impl(&self, repository: &RepositoryRef, number: u64) -> Result<ExternalChangeset, CodeHostError> {
        let pull_request = self.pull_request(repository, number).await?;
        self.with_states(repository, pull_request).await
    }
}

crate::code_host_by_inherent_methods!(BitbucketServer);

/// Whether an error is Bitbucket's "the version you sent is stale" refusal.
fn is_stale_version(error: &CodeHostError) -> bool {
    error.permanent_kind() == Some(PermanentKind::Validation) && error.to_string().contains("PullRequestOutOfDateException")
}

/// Bitbucket's error bodies: `{"errors": [{"context": null, "message": "...", "exceptionName":
/// "com.atlassian.bitbucket...NoSuchRepositoryException"}]}`, merge refusals adding `vetoes`
/// (`[{"summaryMessage", "detailedMessage"}]`). The exception's short name is kept: it is what
/// Atlassian's documentation and this adapter's callers recognise.
fn describe_error(status: StatusCode, body: &[u8]) -> String {
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let mut parts: Vec<String> = Vec::new();
    for error in parsed.get("errors").and_then(Value::as_array).into_iter().flatten() {
        let mut part = error.get("message").and_then(Value::as_str).unwrap_or_default().trim().to_owned();
        if let Some(context) = error.get("context").and_then(Value::as_str) {
            part = format!("{context}: {part}");
        }
        for veto in error.get("vetoes").and_then(Value::as_array).into_iter().flatten() {
            let summary = veto.get("summaryMessage").and_then(Value::as_str).unwrap_or_default();
            let detail = veto.get("detailedMessage").and_then(Value::as_str).unwrap_or_default();
            part.push_str(&format!(" [{summary}{}{detail}]", if summary.is_empty() || detail.is_empty() { "" } else { ": " }));
        }
        if let Some(exception) = error.get("exceptionName").and_then(Value::as_str) {
            let short = exception.rsplit('.').next().unwrap_or(exception);
            part.push_str(&format!(" ({short})"));
        }
        if !part.trim().is_empty() {
            parts.push(part.trim().to_owned());
        }
    }
    let mut text = format!("Bitbucket answered {} {}", status.as_u16(), status.canonical_reason().unwrap_or(""));
    text = text.trim_end().to_owned();
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
        // Bitbucket's token bucket refills within seconds; it says how long in Retry-After.
        return Some(Verdict::RateLimited { wait: asked_wait.unwrap_or(Duration::from_secs(10)), message: described });
    }
    if status.is_server_error() || status == StatusCode::REQUEST_TIMEOUT {
        return Some(Verdict::Retry { wait: asked_wait, message: described });
    }
    let lower = described.to_ascii_lowercase();
    let (kind, advice) = match status {
        StatusCode::UNAUTHORIZED => (PermanentKind::BadCredentials, "the token is wrong, expired or revoked: update the code host credential"),
        StatusCode::FORBIDDEN if lower.contains("archived") => {
            (PermanentKind::ArchivedRepository, "the repository is archived and read-only: unarchive it or leave it out of the batch change")
        }
        StatusCode::FORBIDDEN => {
            (PermanentKind::Forbidden, "the token lacks access: give it repository write (and project read) permission")
        }
        StatusCode::NOT_FOUND => (PermanentKind::NotFound, "check the project key and slug, and that the token can see the repository"),
        StatusCode::CONFLICT if lower.contains("pullrequestoutofdateexception") => {
            (PermanentKind::Validation, "the pull request changed on Bitbucket meanwhile; it is loaded again and the change retried")
        }
        _ => (PermanentKind::Validation, "fix the request (title, branches, state) and apply again"),
    };
    Some(Verdict::Fail(CodeHostError::Permanent { kind, message: format!("{described} ({advice})") }))
}

/// Bitbucket's paged envelope.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
    #[serde(default)]
    is_last_page: Option<bool>,
    #[serde(default)]
    next_page_start: Option<u64>,
}

impl<T> Page<T> {
    /// Where the next page starts, `None` after the last one. A server that says there is
    /// more but names no later start would loop forever: that is refused.
    fn next_start(&self, start: u64) -> Result<Option<u64>, String> {
        if self.is_last_page.unwrap_or(true) || self.values.is_empty() {
            return Ok(None);
        }
        match self.next_page_start {
            Some(next) if next > start => Ok(Some(next)),
            Some(next) => Err(format!("Bitbucket's page at {start} says the next starts at {next}, which is not later")),
            None => Err(format!("Bitbucket's page at {start} is not the last but names no nextPageStart")),
        }
    }
}

#[derive(Debug, Deserialize)]
struct BbApplicationProperties {
    version: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BbBranch {
    id: String,
    #[serde(default)]
    display_id: Option<String>,
}

impl BbBranch {
    fn display_id(self) -> String {
        self.display_id.unwrap_or_else(|| branch_name(&self.id).to_owned())
    }
}

#[derive(Debug, Deserialize)]
struct BbProject {
    key: String,
    #[serde(default)]
    public: bool,
}

#[derive(Debug, Deserialize)]
struct BbLink {
    href: String,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct BbLinks {
    #[serde(default)]
    clone: Vec<BbLink>,
    #[serde(default, rename = "self")]
    self_links: Vec<BbLink>,
}

#[derive(Debug, Deserialize)]
struct BbRepository {
    slug: String,
    project: BbProject,
    #[serde(default)]
    public: bool,
    #[serde(default)]
    archived: bool,
    /// Present on forks: the repository it was forked from.
    #[serde(default)]
    origin: Option<Value>,
    #[serde(default)]
    links: BbLinks,
}

impl BbRepository {
    fn into_hosted(self, default_branch: String) -> Result<HostedRepository, CodeHostError> {
        let full_name = format!("{}/{}", self.project.key, self.slug);
        let clone_url = self
            .links
            .clone
            .iter()
            .find(|link| link.name.as_deref() == Some("http"))
            .map(|link| without_user_info(&link.href))
            .ok_or_else(|| {
                CodeHostError::protocol(format!(
                    "Bitbucket offers no HTTP clone URL for {full_name}: an administrator must enable HTTP(S) access in Bitbucket's server settings"
                ))
            })?;
        Ok(HostedRepository {
            full_name,
            clone_url,
            default_branch,
            archived: self.archived,
            fork: self.origin.is_some_and(|origin| !origin.is_null()),
            private: !(self.public || self.project.public),
        })
    }
}

#[derive(Debug, Deserialize)]
struct BbRefRepository {
    slug: String,
    project: BbProject,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BbRef {
    id: String,
    #[serde(default)]
    latest_commit: Option<String>,
    #[serde(default)]
    repository: Option<BbRefRepository>,
}

impl BbRef {
    /// Whether this ref is a branch of `repository` (the emulator and old versions may leave
    /// the repository out: then it is taken to be).
    fn is_in(&self, repository: &RepositoryRef) -> bool {
        self.repository.as_ref().is_none_or(|own| own.slug == repository.name && own.project.key.eq_ignore_ascii_case(&repository.owner))
    }
}

#[derive(Debug, Deserialize)]
struct BbUser {
    name: String,
}

#[derive(Debug, Deserialize)]
struct BbParticipant {
    #[serde(default)]
    user: Option<BbUser>,
    /// `APPROVED`, `NEEDS_WORK` or `UNAPPROVED`.
    #[serde(default)]
    status: Option<String>,
    /// Versions before 4.2 had only this.
    #[serde(default)]
    approved: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BbPullRequest {
    id: u64,
    version: u64,
    title: String,
    #[serde(default)]
    description: Option<String>,
    /// `OPEN`, `DECLINED` or `MERGED`.
    state: String,
    /// Data Center 8.18 and later.
    #[serde(default)]
    draft: Option<bool>,
    from_ref: BbRef,
    to_ref: BbRef,
    #[serde(default)]
    reviewers: Vec<BbParticipant>,
    #[serde(default)]
    updated_date: Option<i64>,
    #[serde(default)]
    links: BbLinks,
}

impl BbPullRequest {
    fn into_changeset(self, check_state: CheckState) -> ExternalChangeset {
        ExternalChangeset {
            number: self.id,
            url: self.links.self_links.into_iter().next().map(|link| link.href).unwrap_or_default(),
            state: pull_request_state(&self.state, self.draft.unwrap_or(false)),
            review_state: review_state(&self.reviewers),
            check_state,
            title: self.title,
            body: self.description.unwrap_or_default(),
            base_ref: branch_name(&self.to_ref.id).to_owned(),
            head_ref: branch_name(&self.from_ref.id).to_owned(),
            head_sha: self.from_ref.latest_commit.filter(|sha| !sha.is_empty()),
            // Bitbucket writes milliseconds since the Unix epoch.
            updated_at: self.updated_date.map(|millis| millis.to_string()).unwrap_or_default(),
        }
    }
}

/// A pull request's state in our terms: declined is closed.
fn pull_request_state(state: &str, draft: bool) -> ExternalState {
    match state {
        "MERGED" => ExternalState::Merged,
        "OPEN" if draft => ExternalState::Draft,
        "OPEN" => ExternalState::Open,
        // DECLINED, and anything newer than this adapter that is not open.
        _ => ExternalState::Closed,
    }
}

/// Any reviewer's "needs work" wins over approvals, as on Sourcegraph.
fn review_state(reviewers: &[BbParticipant]) -> ReviewState {
    let status = |reviewer: &BbParticipant| match reviewer.status.as_deref() {
        Some(status) => status.to_owned(),
        None if reviewer.approved => "APPROVED".to_owned(),
        None => "UNAPPROVED".to_owned(),
    };
    if reviewers.iter().any(|reviewer| status(reviewer) == "NEEDS_WORK") {
        ReviewState::ChangesRequested
    } else if reviewers.iter().any(|reviewer| status(reviewer) == "APPROVED") {
        ReviewState::Approved
    } else {
        ReviewState::Pending
    }
}

#[derive(Debug, Deserialize)]
struct BbBuildStatus {
    /// `SUCCESSFUL`, `FAILED`, `INPROGRESS` (and `CANCELLED`, `UNKNOWN` on newer versions).
    state: String,
}

/// The head commit's builds (Bitbucket keeps the latest status per build key).
fn build_state(statuses: &[BbBuildStatus]) -> CheckState {
    let states: Vec<&str> = statuses.iter().map(|status| status.state.as_str()).filter(|state| *state != "UNKNOWN").collect();
    if states.is_empty() {
        CheckState::Unknown
    } else if states.iter().any(|state| matches!(*state, "FAILED" | "CANCELLED")) {
        CheckState::Failed
    } else if states.iter().any(|state| *state != "SUCCESSFUL") {
        CheckState::Pending
    } else {
        CheckState::Passed
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
        Reply { status: StatusCode::from_u16(status).expect("valid test status"), headers: map, body: body.as_bytes().to_vec(), forge: &BITBUCKET_API }
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000)
    }

    fn reviewer(status: Option<&str>, approved: bool) -> BbParticipant {
        BbParticipant { user: Some(BbUser { name: "r".into() }), status: status.map(str::to_owned), approved }
    }

    fn page(values: usize, last: Option<bool>, next: Option<u64>) -> Page<u8> {
        Page { values: vec![0; values], is_last_page: last, next_page_start: next }
    }

    #[test]
    fn paths_and_refs_are_bitbuckets() {
        let repository = RepositoryRef::new("PROJ", "my.repo");
        assert_eq!(repository_path(&repository), "/projects/PROJ/repos/my.repo");
        assert_eq!(pull_request_path(&repository, 7), "/projects/PROJ/repos/my.repo/pull-requests/7");
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(branch_ref("batch/fix"), "refs/heads/batch/fix");
        assert_eq!(branch_ref("refs/heads/batch/fix"), "refs/heads/batch/fix");
        assert_eq!(ref_json(&repository, "main"), json!({"id": "refs/heads/main", "repository": {"slug": "my.repo", "project": {"key": "PROJ"}}}));
    }

    #[test]
    fn clone_urls_lose_the_user_name_bitbucket_puts_in_them() {
        assert_eq!(without_user_info("https://jdoe@bitbucket.example.com/scm/proj/repo.git"), "https://bitbucket.example.com/scm/proj/repo.git");
        assert_eq!(without_user_info("http://127.0.0.1:7990/scm/PROJ/repo.git"), "http://127.0.0.1:7990/scm/PROJ/repo.git");
        assert_eq!(without_user_info("https://a:b@host"), "https://host");
    }

    #[test]
    fn versions_are_major_and_minor() {
        assert_eq!(parse_version("8.19.1"), Some((8, 19)));
        assert_eq!(parse_version("9.0"), Some((9, 0)));
        assert_eq!(parse_version("8.18.0-rc1"), Some((8, 18)));
        assert_eq!(parse_version("8"), Some((8, 0)));
        assert_eq!(parse_version("dev"), None);
        assert!(parse_version("8.17.2").is_some_and(|version| version < DRAFTS_SINCE));
        assert!(parse_version("8.18.0").is_some_and(|version| version >= DRAFTS_SINCE));
    }

    #[test]
    fn the_paged_envelope_is_followed_to_the_last_page() {
        assert_eq!(page(2, Some(false), Some(2)).next_start(0), Ok(Some(2)));
        assert_eq!(page(2, Some(true), None).next_start(2), Ok(None));
        assert_eq!(page(0, Some(false), Some(5)).next_start(5), Ok(None), "an empty page ends the listing");
        assert_eq!(page(3, None, None).next_start(0), Ok(None), "no isLastPage: one page");
        assert!(page(2, Some(false), Some(0)).next_start(0).is_err(), "a start that does not advance would loop");
        assert!(page(2, Some(false), None).next_start(0).is_err());
        let parsed: Page<u8> = serde_json::from_str(r#"{"size":2,"limit":2,"isLastPage":false,"values":[1,2],"start":0,"nextPageStart":2}"#).expect("envelope");
        assert_eq!((parsed.values, parsed.next_page_start, parsed.is_last_page), (vec![1, 2], Some(2), Some(false)));
    }

    #[test]
    fn states_map_declined_to_closed_and_draft_flags_to_drafts() {
        assert_eq!(pull_request_state("OPEN", false), ExternalState::Open);
        assert_eq!(pull_request_state("OPEN", true), ExternalState::Draft);
        assert_eq!(pull_request_state("DECLINED", false), ExternalState::Closed);
        assert_eq!(pull_request_state("MERGED", true), ExternalState::Merged);
        assert_eq!(pull_request_state("SUPERSEDED", false), ExternalState::Closed);
    }

    #[test]
    fn review_state_from_reviewer_statuses() {
        assert_eq!(review_state(&[]), ReviewState::Pending);
        assert_eq!(review_state(&[reviewer(Some("UNAPPROVED"), false)]), ReviewState::Pending);
        assert_eq!(review_state(&[reviewer(Some("APPROVED"), true), reviewer(Some("UNAPPROVED"), false)]), ReviewState::Approved);
        assert_eq!(review_state(&[reviewer(Some("APPROVED"), true), reviewer(Some("NEEDS_WORK"), false)]), ReviewState::ChangesRequested);
        assert_eq!(review_state(&[reviewer(None, true)]), ReviewState::Approved, "before statuses existed, `approved` said it");
    }

    #[test]
    fn check_state_from_build_statuses() {
        let statuses = |states: &[&str]| states.iter().map(|state| BbBuildStatus { state: (*state).to_owned() }).collect::<Vec<_>>();
        assert_eq!(build_state(&statuses(&[])), CheckState::Unknown);
        assert_eq!(build_state(&statuses(&["UNKNOWN"])), CheckState::Unknown);
        assert_eq!(build_state(&statuses(&["SUCCESSFUL", "SUCCESSFUL"])), CheckState::Passed);
        assert_eq!(build_state(&statuses(&["SUCCESSFUL", "INPROGRESS"])), CheckState::Pending);
        assert_eq!(build_state(&statuses(&["INPROGRESS", "FAILED"])), CheckState::Failed);
        assert_eq!(build_state(&statuses(&["CANCELLED"])), CheckState::Failed);
    }

    #[test]
    fn repositories_become_hosted_repositories() {
        let repository: BbRepository = serde_json::from_value(json!({
            "slug": "app", "id": 1, "name": "App", "public": false, "archived": true,
            "project": {"key": "PROJ", "public": false},
            "origin": {"slug": "upstream"},
            "links": {"clone": [{"href": "ssh://git@host:7999/proj/app.git", "name": "ssh"}, {"href": "https://me@host/scm/proj/app.git", "name": "http"}]}
        }))
        .expect("repository");
        let hosted = repository.into_hosted("develop".into()).expect("hosted");
        assert_eq!(
            hosted,
            HostedRepository { full_name: "PROJ/app".into(), clone_url: "https://host/scm/proj/app.git".into(), default_branch: "develop".into(), archived: true, fork: true, private: true }
        );
        let ssh_only: BbRepository =
            serde_json::from_value(json!({"slug": "x", "project": {"key": "P"}, "links": {"clone": [{"href": "ssh://git@host/p/x.git", "name": "ssh"}]}})).expect("repository");
        let error = ssh_only.into_hosted("main".into()).expect_err("no http clone URL");
        assert!(error.to_string().contains("enable HTTP(S) access"), "{error}");
    }

    #[test]
    fn answers_are_sorted_into_retry_wait_or_fail() {
        assert!(matches!(classify(&reply(503, &[], ""), "x", now()), Some(Verdict::Retry { wait: None, .. })));
        assert!(matches!(
            classify(&reply(429, &[("retry-after", "3")], ""), "x", now()),
            Some(Verdict::RateLimited { wait, .. }) if wait == Duration::from_secs(3)
        ));
        let unauthorized = r#"{"errors":[{"context":null,"message":"Authentication failed. Please check your credentials and try again.","exceptionName":"com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException"}]}"#;
        let Some(Verdict::Fail(error)) = classify(&reply(401, &[], unauthorized), "reading P/r", now()) else { panic!("401 must fail at once") };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::BadCredentials));
        assert!(error.to_string().starts_with("reading P/r: Bitbucket answered 401 Unauthorized: Authentication failed."), "{error}");
        let missing = r#"{"errors":[{"context":null,"message":"Repository P/nope does not exist.","exceptionName":"com.atlassian.bitbucket.repository.NoSuchRepositoryException"}]}"#;
        let Some(Verdict::Fail(error)) = classify(&reply(404, &[], missing), "x", now()) else { panic!("404 must fail") };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
        assert!(error.to_string().contains("Repository P/nope does not exist. (NoSuchRepositoryException)"), "{error}");
        let stale = r#"{"errors":[{"context":null,"message":"You are attempting to modify a pull request based on out-of-date information.","exceptionName":"com.atlassian.bitbucket.pull.PullRequestOutOfDateException","currentVersion":2,"expectedVersion":1}]}"#;
        let Some(Verdict::Fail(error)) = classify(&reply(409, &[], stale), "x", now()) else { panic!("409 must fail") };
        assert!(is_stale_version(&error), "{error}");
        let vetoed = r#"{"errors":[{"context":null,"message":"Merging the pull request has been vetoed.","exceptionName":"com.atlassian.bitbucket.pull.PullRequestMergeVetoedException","vetoes":[{"summaryMessage":"Draft","detailedMessage":"A draft cannot be merged."}]}]}"#;
        let Some(Verdict::Fail(error)) = classify(&reply(409, &[], vetoed), "x", now()) else { panic!("409 must fail") };
        assert!(!is_stale_version(&error));
        assert!(error.to_string().contains("vetoed. [Draft: A draft cannot be merged.] (PullRequestMergeVetoedException)"), "{error}");
        let Some(Verdict::Fail(error)) = classify(&reply(400, &[], "not json"), "x", now()) else { panic!("400 must fail") };
        assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
        assert!(error.to_string().contains("Bitbucket answered 400 Bad Request"), "{error}");
    }
}
