//! TEST SUPPORT ONLY — never used by the product. A code host emulator speaking the subsets of
//! GitHub's REST API, (under `/api/v4`) GitLab's REST API v4, (under `/api/v1`) Gitea's REST
//! API v1 and (under `/rest/api/1.0`) Bitbucket Server's REST API 1.0 that `flotilla-codehost`
//! uses, so adapters, the reconciler and the end-to-end tests run against real HTTP with real
//! state on a machine where no forge runs. All API faces share one state (see `gitlab`,
//! `gitea` and `bitbucket`).
//!
//! It keeps GitHub's documented behaviour where the adapter depends on it: status codes, error
//! bodies (`{"message", "documentation_url"}`, 422 with `errors`), `Link` pagination,
//! `X-RateLimit-*` headers and a primary limit, the secondary-limit 403. Each repository is a
//! real bare git repository in a temporary directory, served over smart HTTP at
//! `/{owner}/{repo}.git` (token auth, fetch and push). A test drives what a person would do on
//! the forge (merge, close, review, CI checks) and injects faults through [`EmulatorHandle`]
//! or the equivalent admin API under `/_emulator/`. Registered webhooks receive the pull
//! request events as the forge would send them, signed (see [`webhooks`]).
//!
//! Deliberate differences from GitHub: merging records the merge but does not write a merge
//! commit into the base branch; pushes to archived repositories are accepted; there is one
//! user (`emulator`) behind every token.

mod api;
mod bitbucket;
pub mod git;
mod gitea;
mod gitlab;
pub mod state;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

pub use state::{CheckRun, Fault, RateLimitConfig, Review, Stats};
pub use webhooks::{Delivery, Hook, HookKind};

/// How to start an emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// Where to listen; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Tokens the API and git accept.
    pub tokens: Vec<String>,
    /// Where bare repositories are created; a temporary directory (removed on drop) if `None`.
    pub repositories_dir: Option<PathBuf>,
}

impl Default for EmulatorConfig {
    fn default() -> EmulatorConfig {
        EmulatorConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tokens: vec![DEFAULT_TOKEN.to_owned()],
            repositories_dir: None,
        }
    }
}

/// The token [`EmulatorConfig::default`] accepts.
pub const DEFAULT_TOKEN: &str = "emulator-token";

#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("listening on {address}: {source}")]
    Listen { address: SocketAddr, source: std::io::Error },
    #[error("creating the repositories directory: {0}")]
    Directory(std::io::Error),
    #[error(transparent)]
    Git(#[from] git::GitError),
    #[error("{0}")]
    Invalid(String),
}

/// A repository to create.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct NewRepository {
    pub owner: String,
    pub name: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub archived: bool,
    #[serde(default)]
    pub fork: bool,
    #[serde(default = "default_branch")]
    pub default_branch: String,
}

fn default_branch() -> String {
    "main".to_owned()
}

impl NewRepository {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> NewRepository {
        NewRepository {
            owner: owner.into(),
            name: name.into(),
            private: false,
            archived: false,
            fork: false,
            default_branch: default_branch(),
        }
    }
}

pub(crate) struct Shared {
    state: Mutex<state::State>,
    base_url: String,
    repositories_dir: PathBuf,
    /// Registered webhook receivers and the deliveries made (see `webhooks`).
    webhooks: webhooks::Webhooks,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, state::State> {
        // Every update is a few assignments; a panicking handler cannot leave half of one.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn create_repository(&self, new: NewRepository) -> Result<(), EmulatorError> {
        let valid = |part: &str| {
            !part.is_empty() && part.chars().all(|character| character.is_ascii_alphanumeric() || "-_.".contains(character)) && !part.starts_with('.')
        };
        if !valid(&new.owner) || !valid(&new.name) {
            return Err(EmulatorError::Invalid(format!("{}/{} is not a valid repository name", new.owner, new.name)));
        }
        if self.lock().repository(&new.owner, &new.name).is_some() {
            return Err(EmulatorError::Invalid(format!("{}/{} already exists", new.owner, new.name)));
        }
        let git_dir = self.repositories_dir.join(&new.owner).join(format!("{}.git", new.name));
        git::create_repository(&git_dir, &new.name, &new.default_branch).await?;
        let mut state = self.lock();
        let id = state.next_id();
        let entry = state.repositories.entry((new.owner.clone(), new.name.clone())).or_default();
        entry.repository = Some(state::Repository {
            id,
            owner: new.owner,
            name: new.name,
            private: new.private,
            archived: new.archived,
            fork: new.fork,
            default_branch: new.default_branch,
            git_dir,
        });
        Ok(())
    }
}

/// A running emulator; stops when dropped.
pub struct EmulatorHandle {
    shared: Arc<Shared>,
    address: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _temporary: Option<tempfile::TempDir>,
}

/// Namespace for [`Emulator::start`].
pub struct Emulator;

impl Emulator {
    /// Binds, starts serving on the current tokio runtime and returns at once.
    pub async fn start(config: EmulatorConfig) -> Result<EmulatorHandle, EmulatorError> {
        let (repositories_dir, temporary) = match config.repositories_dir {
            Some(directory) => {
                std::fs::create_dir_all(&directory).map_err(EmulatorError::Directory)?;
                (directory, None)
            }
            None => {
                let temporary = tempfile::tempdir().map_err(EmulatorError::Directory)?;
                (temporary.path().to_path_buf(), Some(temporary))
            }
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| EmulatorError::Listen { address: config.listen, source })?;
        let address = listener.local_addr().map_err(|source| EmulatorError::Listen { address: config.listen, source })?;
        let state = state::State { tokens: config.tokens.into_iter().collect(), ..state::State::default() };
        let (hooks, delivery_task) = webhooks::Webhooks::start();
        let shared = Arc::new(Shared { state: Mutex::new(state), base_url: format!("http://{address}"), repositories_dir, webhooks: hooks });
        tokio::spawn(delivery_task.run(Arc::downgrade(&shared)));
        let router = api::router(shared.clone());
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let serving = axum::serve(listener, router).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(error) = serving.await {
                tracing::error!(%error, "the code host emulator stopped");
            }
        });
        Ok(EmulatorHandle { shared, address, shutdown: Some(shutdown), _temporary: temporary })
    }
}

impl EmulatorHandle {
    /// The API root (`http://127.0.0.1:PORT`), also the prefix of clone URLs.
    pub fn url(&self) -> &str {
        &self.shared.base_url
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `{url}/{owner}/{name}.git`.
    pub fn clone_url(&self, owner: &str, name: &str) -> String {
        format!("{}/{owner}/{name}.git", self.shared.base_url)
    }

    /// Creates a repository (a bare git repository with one commit on its default branch).
    pub async fn create_repository(&self, repository: NewRepository) -> Result<(), EmulatorError> {
        self.shared.create_repository(repository).await
    }

    /// Queues `count` copies of `fault` for the next API requests.
    pub fn inject_faults(&self, fault: Fault, count: usize) {
        self.shared.lock().faults.extend(std::iter::repeat_n(fault, count));
    }

    /// An outage starting now, in phases back to back: during each, every API request gets its
    /// fault (a 5xx, a 429, or `Slow` for a host that hangs) whatever faults are queued; after
    /// the last the API answers normally again. Git traffic is not affected.
    pub fn start_outage(&self, phases: &[(Fault, std::time::Duration)]) {
        let mut until = std::time::SystemTime::now();
        self.shared.lock().outage = phases
            .iter()
            .map(|(fault, duration)| {
                until += *duration;
                (*fault, until)
            })
            .collect();
    }

    /// Sets (or with `None` removes) the primary rate limit.
    pub fn set_rate_limit(&self, limit: Option<RateLimitConfig>) {
        let mut state = self.shared.lock();
        state.rate_limit = limit;
        state.usage.clear();
    }

    pub fn stats(&self) -> Stats {
        self.shared.lock().stats
    }

    /// Merges a pull request as a person would on the forge.
    pub fn merge_pull_request(&self, owner: &str, name: &str, number: u64) -> Result<(), EmulatorError> {
        let mut state = self.shared.lock();
        api::merge(&mut state, owner, name, number).map_err(EmulatorError::Invalid)?;
        webhooks::announce(&self.shared, &state, owner, name, Some(number), webhooks::Action::Merged);
        Ok(())
    }

    /// Closes a pull request as a person would on the forge.
    pub fn close_pull_request(&self, owner: &str, name: &str, number: u64) -> Result<(), EmulatorError> {
        let mut state = self.shared.lock();
        let pull = api::find_pull(&mut state, owner, name, number).ok_or_else(|| EmulatorError::Invalid(format!("no pull request #{number} in {owner}/{name}")))?;
        pull.open = false;
        pull.updated_at = state::timestamp(SystemTime::now());
        webhooks::announce(&self.shared, &state, owner, name, Some(number), webhooks::Action::Closed);
        Ok(())
    }

    /// Adds a review to a pull request.
    pub fn add_review(&self, owner: &str, name: &str, number: u64, review: Review) -> Result<(), EmulatorError> {
        let mut state = self.shared.lock();
        let repository = state.repository_mut(owner, name).ok_or_else(|| EmulatorError::Invalid(format!("no repository {owner}/{name}")))?;
        if !repository.pulls.iter().any(|pull| pull.number == number) {
            return Err(EmulatorError::Invalid(format!("no pull request #{number} in {owner}/{name}")));
        }
        repository.reviews.entry(number).or_default().push(review.clone());
        webhooks::announce(&self.shared, &state, owner, name, Some(number), webhooks::Action::Reviewed(review));
        Ok(())
    }

    /// Adds a check run to a commit (`commit` may be a branch name, resolved now).
    pub fn add_check_run(&self, owner: &str, name: &str, commit: &str, run: CheckRun) -> Result<(), EmulatorError> {
        let mut state = self.shared.lock();
        let repository = state.repository_mut(owner, name).ok_or_else(|| EmulatorError::Invalid(format!("no repository {owner}/{name}")))?;
        let sha = api::resolve_commit(repository, commit).ok_or_else(|| EmulatorError::Invalid(format!("no commit {commit} in {owner}/{name}")))?;
        repository.checks.entry(sha.clone()).or_default().push(run.clone());
        webhooks::announce(&self.shared, &state, owner, name, None, webhooks::Action::CheckRun { sha, run });
        Ok(())
    }

    /// Delivers the pull request events that happen from now on to `hook`, in its forge's
    /// format, signed with its secret (see `webhooks`).
    pub fn add_webhook(&self, hook: Hook) {
        self.shared.webhooks.add(hook);
    }

    /// Stops delivering webhooks.
    pub fn clear_webhooks(&self) {
        self.shared.webhooks.clear();
    }

    /// The webhook deliveries made so far, oldest first.
    pub fn webhook_deliveries(&self) -> Vec<Delivery> {
        self.shared.webhooks.deliveries()
    }

    /// The bodies of a pull request's comments, oldest first.
    pub fn comments(&self, owner: &str, name: &str, number: u64) -> Vec<String> {
        let state = self.shared.lock();
        state
            .repository(owner, name)
            .and_then(|repository| repository.comments.get(&number))
            .map(|comments| comments.iter().map(|comment| comment.body.clone()).collect())
            .unwrap_or_default()
    }

    /// How many pull requests a repository has, in any state.
    pub fn pull_request_count(&self, owner: &str, name: &str) -> usize {
        self.shared.lock().repository(owner, name).map_or(0, |repository| repository.pulls.len())
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
