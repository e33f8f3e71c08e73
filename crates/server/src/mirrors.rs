//! Code host connections → repositories → mirrors.
//!
//! The server keeps a bare mirror of every repository it knows, in
//! `<data dir>/mirrors/<repository id>.git`, and serves executors from it. The syncer lists
//! each code host's repositories, creates missing mirrors and fetches existing ones, in the
//! background, when asked or when [`crate::mirror_schedule`] says a mirror is due. Progress is visible per repository through its
//! mirror state (pending, cloning, ready, failed with the error).
//!
//! Kinds handled here: `git-directory` (every git repository below a local folder becomes
//! `NAME/<path without .git>`) and `git-urls` (an explicit list of clone URLs, each named
//! `NAME/<last path segments>`). Forge kinds (GitHub, GitLab, Bitbucket Server) are listed
//! through their adapter ([`crate::forges`]) and named `NAME/owner/repo`.
//!
//! Several server processes of one PostgreSQL database share one data folder (see
//! RELIABILITY.md, "Running two servers"): a clone or fetch holds a file lock beside its
//! mirror, so two processes never write one mirror at once, and every commit the database
//! names is in the one mirror every process serves executors from.
//!
//! Clone and fetch use the connection's credential when it has one
//! ([`crate::code_host_credentials`]), decrypted just for the git call and passed as an
//! `Authorization` header through git's environment; a sync that the remote refuses says
//! whether a credential is missing or was refused, and how to set one.

use std::path::PathBuf;
use std::time::Duration;

use flotilla_store::{
    Clock, CodeHost, CodeHostKind, MirrorState, MirrorStateUpdate, NewRepository, Repository, RepositoryId,
};
use tokio_util::sync::CancellationToken;

use crate::{ServerConfig, SharedState};

/// Where a repository's mirror lives.
pub fn mirror_path(config: &ServerConfig, repository_id: RepositoryId) -> PathBuf {
    config.mirrors_dir().join(format!("{}.git", repository_id.0))
}

/// Runs until shutdown: syncs everything at start and when
/// [`crate::AppState::sync_requested`] is notified, and at the configured interval the
/// mirrors the [`crate::mirror_schedule`] says are due.
pub async fn run_syncer(state: SharedState, shutdown: CancellationToken) {
    let mut which = Which::All;
    loop {
        if let Err(error) = sync_code_hosts(&state, which).await {
            tracing::error!(error = %error, "syncing code hosts failed");
        }
        which = tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(state.config.mirror_interval) => Which::Due,
            _ = state.sync_requested.notified() => Which::All,
        };
    }
}

/// Which mirrors a sync pass fetches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    All,
    /// Those the schedule says are due (new repositories always are).
    Due,
}

/// Lists every code host's repositories and brings each mirror up to date.
pub async fn sync_all(state: &SharedState) -> anyhow::Result<()> {
    sync_code_hosts(state, Which::All).await
}

async fn sync_code_hosts(state: &SharedState, which: Which) -> anyhow::Result<()> {
    for code_host in state.store.list_code_hosts().await? {
        if let Err(error) = sync_code_host(state, &code_host, which).await {
            tracing::error!(code_host.name = %code_host.name, error = %error, "syncing a code host failed");
        }
    }
    Ok(())
}

/// Discovers a code host's repositories and syncs each mirror (or each one due).
pub async fn sync_code_host(state: &SharedState, code_host: &CodeHost, which: Which) -> anyhow::Result<Vec<Repository>> {
    let now = Clock::now_ms();
    let discovered = discover(state, code_host).await?;
    let mut repositories = Vec::with_capacity(discovered.len());
    for (name, clone_url) in discovered {
        let repository = state
            .store
            .upsert_repository(
                &NewRepository { code_host_id: code_host.id, name, clone_url, default_branch: None, archived: false, fork: false },
                now,
            )
            .await?;
        repositories.push(repository);
    }
    // Mirrors are synced a few at a time: git is IO-bound and a code host may have thousands.
    let mut pending = tokio::task::JoinSet::new();
    let limit = 4;
    let now = std::time::Instant::now();
    for repository in repositories.iter().filter(|repository| which == Which::All || state.mirror_schedule.is_due(repository.id, now)) {
        while pending.len() >= limit {
            pending.join_next().await;
        }
        let (state, repository) = (state.clone(), repository.clone());
        pending.spawn(async move { sync_repository(&state, &repository).await });
    }
    while pending.join_next().await.is_some() {}
    Ok(repositories)
}

async fn discover(state: &SharedState, code_host: &CodeHost) -> anyhow::Result<Vec<(String, String)>> {
    match code_host.kind {
        CodeHostKind::GitDirectory => {
            let root = PathBuf::from(code_host.config.get("path").and_then(|path| path.as_str()).unwrap_or(&code_host.url));
            let found = tokio::task::spawn_blocking(move || flotilla_git::discover_repositories(&root)).await??;
            Ok(found
                .into_iter()
                .map(|repository| {
                    (format!("{}/{}", code_host.name, repository.relative_name), repository.git_dir.display().to_string())
                })
                .collect())
        }
        CodeHostKind::GitUrls => {
            let urls = code_host.config.get("urls").and_then(|urls| urls.as_array()).cloned().unwrap_or_default();
            Ok(urls
                .iter()
                .filter_map(|url| url.as_str())
                .map(|url| (format!("{}/{}", code_host.name, name_from_url(url)), url.to_owned()))
                .collect())
        }
        CodeHostKind::Github | CodeHostKind::Gitlab | CodeHostKind::Gitea | CodeHostKind::BitbucketServer => {
            let adapter = state.forges.adapter(state, code_host).map_err(anyhow::Error::msg)?;
            let selection = crate::forges::selection(code_host).map_err(anyhow::Error::msg)?;
            let repositories = adapter.list_repositories(&selection).await.map_err(|error| anyhow::anyhow!("listing the repositories of {}: {error}", code_host.name))?;
            Ok(repositories.into_iter().map(|repository| (format!("{}/{}", code_host.name, repository.full_name), repository.clone_url)).collect())
        }
    }
}

/// `https://host/owner/repo.git` → `owner/repo`; `/srv/git/a/b.git` → `a/b`.
fn name_from_url(url: &str) -> String {
    let without_scheme = url.split_once("://").map_or(url, |(_, rest)| rest.split_once('/').map_or(rest, |(_, path)| path));
    let trimmed = without_scheme.trim_end_matches('/').trim_end_matches(".git");
    let parts: Vec<&str> = trimmed.split('/').filter(|part| !part.is_empty()).collect();
    parts[parts.len().saturating_sub(2)..].join("/")
}

/// Clones or fetches one mirror and records its state.
pub async fn sync_repository(state: &SharedState, repository: &Repository) {
    let lock = {
        let mut locks = state.mirror_locks.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        locks.entry(repository.id).or_default().clone()
    };
    let _held = lock.lock().await;
    let path = mirror_path(&state.config, repository.id);
    // Servers of one database share the data folder: the file lock keeps a second process
    // from cloning into (or deleting) a mirror the first is cloning or fetching.
    let _file_lock = match lock_across_processes(&path).await {
        Ok(file_lock) => file_lock,
        Err(error) => {
            let update = failed(format!("locking the mirror {} failed: {error}; check the data folder's permissions", path.display()));
            record(state, repository, &update).await;
            return;
        }
    };
    let code_host = match state.store.get_code_host(repository.code_host_id).await {
        Ok(code_host) => code_host,
        Err(error) => {
            tracing::error!(repo.name = %repository.name, error = %error, "reading the repository's code host failed");
            return;
        }
    };
    let credentials = match crate::code_host_credentials::connection_git_credentials(&state.config.secret_key, &code_host) {
        Ok(credentials) => credentials,
        Err(error) => {
            let update = failed(format!(
                "{error}; set the credential of code host {} again with `flotilla codehost credential set {}`",
                code_host.name, code_host.name
            ));
            record(state, repository, &update).await;
            return;
        }
    };
    let options = flotilla_git::RemoteOptions { credentials: credentials.as_ref(), timeout: Some(Duration::from_secs(600)) };
    let exists = tokio::fs::try_exists(path.join("HEAD")).await.unwrap_or(false);
    if !exists {
        let _ = state
            .store
            .update_repository_mirror_state(
                repository.id,
                &MirrorStateUpdate { mirror_state: MirrorState::Cloning, head_commit: None, default_branch: None, last_error: None, synced_at: None },
            )
            .await;
        let _ = tokio::fs::remove_dir_all(&path).await;
    }
    let result = if exists {
        flotilla_git::fetch_mirror(&path, options).await.map(|outcome| outcome.refs_changed())
    } else {
        flotilla_git::create_mirror(&repository.clone_url, &path, options).await.map(|()| true)
    };
    // A failed sync counts as a change: it is tried again at the shortest interval.
    state.mirror_schedule.record(repository.id, *result.as_ref().unwrap_or(&true), std::time::Instant::now());
    let result = result.map(drop);
    let update = match result {
        Ok(()) => match default_branch_or_fallback(&path).await {
            Ok(Some(branch)) => MirrorStateUpdate {
                mirror_state: MirrorState::Ready,
                head_commit: Some(branch.commit.as_str().to_owned()),
                default_branch: Some(branch.name.as_str().to_owned()),
                last_error: None,
                synced_at: Some(Clock::now_ms()),
            },
            Ok(None) => MirrorStateUpdate {
                mirror_state: MirrorState::Failed,
                head_commit: None,
                default_branch: None,
                last_error: Some("the repository has no default branch (empty repository?)".to_owned()),
                synced_at: Some(Clock::now_ms()),
            },
            Err(error) => failed(error.to_string()),
        },
        Err(error) => failed(explain_remote_failure(&error, &code_host, credentials.is_some())),
    };
    // Index the default branch's files now, while the mirror is warm, so that resolution
    // reads a listing instead of running `git ls-tree` (see `search_index`).
    if let Some(commit) = &update.head_commit
        && let Err(error) = state.trees.files(&path, repository.id, commit).await
    {
        tracing::warn!(%error, repository = %repository.name, "indexing the mirror's files failed; resolution will list them itself");
    }
    record(state, repository, &update).await;
}

/// Holds `<mirror>.lock` exclusively (an advisory `flock`, released when the file closes or
/// the process dies) while a mirror is cloned or fetched. Waiting happens on a blocking
/// thread; within one process the per-repository mutex already serialises syncs, so only
/// another server process sharing the data folder makes this wait.
async fn lock_across_processes(mirror: &std::path::Path) -> std::io::Result<std::fs::File> {
    let mut name = mirror.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(std::io::Error::other)?
}

/// A failed clone or fetch, with what to do when the code host refused the (missing) credential.
fn explain_remote_failure(error: &flotilla_git::GitError, code_host: &CodeHost, had_credential: bool) -> String {
    let refused = matches!(error, flotilla_git::GitError::Remote { kind: flotilla_git::RemoteFailureKind::Authentication, .. });
    match (refused, had_credential) {
        (true, false) => format!(
            "{error}; code host {} has no credential: set one with `printf %s \"$TOKEN\" | flotilla codehost credential set {} [--username USER]`",
            code_host.name, code_host.name
        ),
        (true, true) => format!(
            "{error}; the code host refused the credential of {}: check the token's access and set it again with `flotilla codehost credential set {}`",
            code_host.name, code_host.name
        ),
        (false, _) => error.to_string(),
    }
}

async fn record(state: &SharedState, repository: &Repository, update: &MirrorStateUpdate) {
    if let Some(message) = &update.last_error {
        tracing::warn!(repo.name = %repository.name, error = %message, "mirror sync failed");
    }
    if let Err(error) = state.store.update_repository_mirror_state(repository.id, update).await {
        tracing::error!(repo.name = %repository.name, error = %error, "recording the mirror state failed");
    }
}

/// The branch HEAD names; when HEAD names a branch that does not exist (a bare repository
/// created with `git init --bare` and then pushed `main` to, while HEAD still says
/// `master`), the only branch, or else `main` or `master`, like a clone would pick.
async fn default_branch_or_fallback(path: &std::path::Path) -> Result<Option<flotilla_git::Branch>, flotilla_git::GitError> {
    if let Some(branch) = flotilla_git::default_branch(path).await? {
        return Ok(Some(branch));
    }
    let mut branches = flotilla_git::list_branches(path).await?;
    if branches.len() == 1 {
        return Ok(branches.pop());
    }
    for preferred in ["main", "master"] {
        if let Some(index) = branches.iter().position(|branch| branch.name.as_str() == preferred) {
            return Ok(Some(branches.swap_remove(index)));
        }
    }
    Ok(None)
}

fn failed(message: String) -> MirrorStateUpdate {
    MirrorStateUpdate {
        mirror_state: MirrorState::Failed,
        head_commit: None,
        default_branch: None,
        last_error: Some(message),
        synced_at: Some(Clock::now_ms()),
    }
}

#[cfg(test)]
mod tests {
    use super::name_from_url;

    #[test]
    fn names_from_urls() {
        assert_eq!(name_from_url("https://github.com/owner/repo.git"), "owner/repo");
        assert_eq!(name_from_url("/srv/git/team/tool.git"), "team/tool");
        assert_eq!(name_from_url("file:///srv/git/x/"), "git/x");
    }
}

#[cfg(test)]
mod lock_tests {
    use super::lock_across_processes;

    #[tokio::test]
    async fn a_mirror_lock_waits_for_the_holder_to_let_go() {
        let folder = tempfile::tempdir().expect("temp dir");
        let mirror = folder.path().join("7.git");
        let held = lock_across_processes(&mirror).await.expect("first lock");
        // flock conflicts between two open files even in one process, as it does between the
        // server processes sharing a data folder.
        let second = tokio::time::timeout(std::time::Duration::from_millis(300), lock_across_processes(&mirror)).await;
        assert!(second.is_err(), "the second lock waits while the first is held");
        drop(held);
        let again = tokio::time::timeout(std::time::Duration::from_secs(5), lock_across_processes(&mirror)).await;
        assert!(matches!(again, Ok(Ok(_))), "the lock is free once its holder closed it");
        assert!(folder.path().join("7.git.lock").exists());
    }
}
