//! Executor workspaces: a per-repository cache that fetches only the commits jobs need, fresh
//! working directories checked out from it, and the diff a job's steps produced.
//!
//! Layout under the cache root:
//! - `cache/<repository name>.git`: a bare, shallow repository per repository name. Each job's
//!   commit is fetched with `--depth=1` and kept under `refs/flotilla/commits/<id>`, so a later
//!   fetch of a newer commit negotiates with those and receives only new objects, and a job on
//!   an already cached commit does no network at all. `gc.auto=0`: nothing prunes it behind a
//!   running job's back, and `maintenance.auto=false` spares each fetch a `git maintenance`
//!   process that would find nothing to do.
//! - `cache/<repository name>.lock`: an advisory file lock held while the cache repository is
//!   created or fetched into, by this process or another executor process on the machine.
//! - `jobs/<unique>`: one working directory per job: a new repository whose object store
//!   borrows the cache's (`objects/info/alternates`, like `git clone --shared`) and whose
//!   `shallow` file is copied from the cache, checked out at the commit with a detached HEAD.
//!   Nothing in a job directory is shared back: the job's own objects (from `git add`) land in
//!   the job directory, so deleting it can never corrupt the cache.
//!
//! Crash safety: the cache repository is created in a temporary directory and renamed into
//! place; a fetch interrupted by a crash leaves at most stale `*.lock` files (removed under the
//! lock before the next fetch) and unreferenced temporary packs; a cache that git reports as
//! broken is deleted and fetched again once.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::{Credentials, GitCommand, check_remote};
use crate::error::GitError;
use crate::names::{CommitId, RepoPath, repo_path_problem};
use crate::unique_suffix;

/// Where an executor keeps repository caches and job working directories.
#[derive(Clone, Debug)]
pub struct WorkspaceCache {
    root: PathBuf,
    fetch_timeout: Option<Duration>,
}

/// A job's working directory, checked out at the requested commit with a detached HEAD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedWorkspace {
    /// The working directory; its git directory is `<path>/.git`.
    pub path: PathBuf,
    pub commit: CommitId,
    /// True when the commit had to be fetched; false when the cache already had it.
    pub fetched: bool,
}

impl PreparedWorkspace {
    /// Deletes the working directory. The cache is unaffected.
    pub async fn remove(self) -> Result<(), GitError> {
        tokio::fs::remove_dir_all(&self.path)
            .await
            .map_err(|source| GitError::io("cannot delete the job workspace", &self.path, source))
    }
}

impl WorkspaceCache {
    /// A cache rooted at `root` (created on first use).
    pub fn new(root: &Path) -> WorkspaceCache {
        WorkspaceCache {
            root: root.to_path_buf(),
            fetch_timeout: None,
        }
    }

    /// Kill a fetch that takes longer than `timeout`.
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> WorkspaceCache {
        self.fetch_timeout = Some(timeout);
        self
    }

    /// Makes sure `commit` of `repository_name` is in the cache (fetching it from `remote_url`
    /// with `credentials` when it is not) and checks it out into a new job directory.
    ///
    /// With `sparse_paths`, only those directories are checked out (non-cone sparse checkout
    /// with one `<path>/*` pattern per directory, as Sourcegraph's executors do). Files a job
    /// creates outside them still show up in [`diff_workspace`].
    pub async fn prepare(
        &self,
        repository_name: &str,
        remote_url: &str,
        credentials: Option<&Credentials>,
        commit: &CommitId,
        sparse_paths: Option<&[String]>,
    ) -> Result<PreparedWorkspace, GitError> {
        check_remote(remote_url)?;
        check_repository_name(repository_name)?;
        let sparse_patterns = match sparse_paths {
            Some(paths) => Some(sparse_patterns(paths)?),
            None => None,
        };
        let cache_repository = self
            .root
            .join("cache")
            .join(format!("{repository_name}.git"));
        let fetched = {
            let _lock = RepositoryLock::acquire(
                &self
                    .root
                    .join("cache")
                    .join(format!("{repository_name}.lock")),
            )
            .await?;
            self.ensure_commit_cached(&cache_repository, remote_url, credentials, commit)
                .await?
        };
        let jobs = self.root.join("jobs");
        tokio::fs::create_dir_all(&jobs)
            .await
            .map_err(|source| GitError::io("cannot create the jobs directory", &jobs, source))?;
        let job_directory = jobs.join(format!(
            "{}-{}-{}",
            repository_name.replace('/', "-"),
            &commit.as_str()[..12],
            unique_suffix()
        ));
        let checkout = check_out(
            &cache_repository,
            &job_directory,
            commit,
            sparse_patterns.as_deref(),
        )
        .await;
        if let Err(error) = checkout {
            let _ = tokio::fs::remove_dir_all(&job_directory).await;
            return Err(error);
        }
        Ok(PreparedWorkspace {
            path: job_directory,
            commit: commit.clone(),
            fetched,
        })
    }

    /// Called with the repository lock held. Returns whether a fetch happened.
    async fn ensure_commit_cached(
        &self,
        cache_repository: &Path,
        remote_url: &str,
        credentials: Option<&Credentials>,
        commit: &CommitId,
    ) -> Result<bool, GitError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self
                .fetch_into_cache(cache_repository, remote_url, credentials, commit)
                .await;
            match result {
                Ok(fetched) => return Ok(fetched),
                // Remote trouble says nothing about the cache's health; leave it alone.
                Err(error @ (GitError::Remote { .. } | GitError::TimedOut { .. })) => {
                    return Err(error);
                }
                Err(error) if attempt >= 2 => return Err(error),
                Err(_) => {
                    // Anything else (a corrupt object store, a half-written ref) is repaired by
                    // starting the cache over; jobs only lose the incremental benefit.
                    remove_directory_if_present(cache_repository).await?;
                }
            }
        }
    }

    async fn fetch_into_cache(
        &self,
        cache_repository: &Path,
        remote_url: &str,
        credentials: Option<&Credentials>,
        commit: &CommitId,
    ) -> Result<bool, GitError> {
        let created = create_cache_repository_if_missing(cache_repository).await?;
        remove_stale_lock_files(cache_repository).await;
        // A cache created just now is empty: no need to ask git whether it has the commit.
        if !created && has_commit(cache_repository, commit).await? {
            return Ok(false);
        }
        GitCommand::in_git_dir(cache_repository)
            .args([
                "fetch",
                "--quiet",
                "--depth=1",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--",
                remote_url,
            ])
            .arg(format!("+{commit}:refs/flotilla/commits/{commit}"))
            .credentials(credentials)
            .timeout(self.fetch_timeout)
            .talks_to_remote()
            .run()
            .await?;
        if !fetched_ref_points_at(cache_repository, commit).await && !has_commit(cache_repository, commit).await? {
            return Err(GitCommand::in_git_dir(cache_repository)
                .args(["fetch", remote_url, commit.as_str()])
                .unexpected_output("the fetch succeeded but the commit is not in the cache"));
        }
        Ok(true)
    }
}

/// `git add --all` in the workspace, then the binary-safe, prefix-free diff of everything
/// against the checked-out commit (HEAD): exactly what Sourcegraph's executors upload.
/// Files ignored by the repository's own `.gitignore` are not included; nothing else is
/// excluded.
pub async fn diff_workspace(workspace: &Path) -> Result<Vec<u8>, GitError> {
    // `--sparse` lets files created outside a sparse checkout's patterns be added too.
    GitCommand::in_work_tree(workspace)
        .args(["add", "--all", "--sparse"])
        .run()
        .await?;
    GitCommand::in_work_tree(workspace)
        .args([
            "diff",
            "--cached",
            "--no-prefix",
            "--binary",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "HEAD",
            "--",
        ])
        .run()
        .await
}

fn check_repository_name(name: &str) -> Result<(), GitError> {
    if let Some(reason) = repo_path_problem(name) {
        return Err(GitError::invalid("repository name", name, reason));
    }
    if name
        .split('/')
        .any(|component| component.ends_with(".git") || component.ends_with(".lock"))
    {
        return Err(GitError::invalid(
            "repository name",
            name,
            "no part of a repository name may end with `.git` or `.lock` (they name cache files)",
        ));
    }
    Ok(())
}

fn sparse_patterns(paths: &[String]) -> Result<String, GitError> {
    let mut patterns = String::new();
    for path in paths {
        let path = RepoPath::new(path.trim_end_matches('/'))?;
        patterns.push_str(&format!("{path}/*\n"));
    }
    Ok(patterns)
}

async fn has_commit(repository: &Path, commit: &CommitId) -> Result<bool, GitError> {
    let command = GitCommand::in_git_dir(repository)
        .args(["cat-file", "-e", "--end-of-options"])
        .arg(format!("{commit}^{{commit}}"));
    let display = GitCommand::in_git_dir(repository).args(["cat-file", "-e", commit.as_str()]);
    let output = command.output().await?;
    match output.exit_code {
        Some(0) => Ok(true),
        // Exit 1: the object is missing; 128 with this message: `^{commit}` does not resolve
        // (also missing). Any other 128 (not a repository, corruption) is a real error.
        Some(1) => Ok(false),
        Some(128)
            if String::from_utf8_lossy(&output.stderr).contains("Not a valid object name") =>
        {
            Ok(false)
        }
        _ => Err(display.failure(&output)),
    }
}

/// Whether the fetch left the loose ref `refs/flotilla/commits/<commit>` pointing at the
/// commit: read from the file, which spares a `git cat-file` per workspace. `false` (ask git)
/// when the ref is packed or anything is unexpected.
async fn fetched_ref_points_at(cache_repository: &Path, commit: &CommitId) -> bool {
    let reference = cache_repository.join("refs/flotilla/commits").join(commit.as_str());
    tokio::fs::read_to_string(reference).await.is_ok_and(|content| content.trim() == commit.as_str())
}

/// Makes sure the cache repository exists; returns whether it was created now (empty).
async fn create_cache_repository_if_missing(cache_repository: &Path) -> Result<bool, GitError> {
    let complete = cache_repository.join("HEAD").is_file()
        && cache_repository.join("objects").is_dir()
        && cache_repository.join("refs").is_dir();
    if complete {
        return Ok(false);
    }
    remove_directory_if_present(cache_repository).await?;
    let parent = cache_repository.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent)
        .await
        .map_err(|source| GitError::io("cannot create the cache directory", parent, source))?;
    let temporary = parent.join(format!(".init-{}", unique_suffix()));
    let created = async {
        write_empty_repository(&temporary, true, "[gc]\n\tauto = 0\n[maintenance]\n\tauto = false\n").await?;
        tokio::fs::rename(&temporary, cache_repository)
            .await
            .map_err(|source| {
                GitError::io(
                    "cannot move the new cache repository into place at",
                    cache_repository,
                    source,
                )
            })
    }
    .await;
    if created.is_err() {
        let _ = tokio::fs::remove_dir_all(&temporary).await;
    }
    created.map(|()| true)
}

async fn remove_directory_if_present(directory: &Path) -> Result<(), GitError> {
    match tokio::fs::remove_dir_all(directory).await {
        Ok(()) => Ok(()),
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(GitError::io(
            "cannot delete the broken cache repository",
            directory,
            source,
        )),
    }
}

/// With the repository lock held nobody else is writing to the cache, so any `*.lock` file git
/// left there is from a process that died; git would refuse to proceed while it exists.
async fn remove_stale_lock_files(cache_repository: &Path) {
    let cache_repository = cache_repository.to_path_buf();
    let _ = tokio::task::spawn_blocking(move || {
        for name in [
            "shallow.lock",
            "packed-refs.lock",
            "config.lock",
            "HEAD.lock",
            "index.lock",
        ] {
            let _ = std::fs::remove_file(cache_repository.join(name));
        }
        let mut pending = vec![cache_repository.join("refs")];
        while let Some(directory) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&directory) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().is_ok_and(|file_type| file_type.is_dir()) {
                    pending.push(path);
                } else if path
                    .extension()
                    .is_some_and(|extension| extension == "lock")
                {
                    let _ = std::fs::remove_file(path);
                }
            }
        }
    })
    .await;
}

/// Creates `job_directory` as a repository borrowing the cache's objects and checks out `commit`.
async fn check_out(
    cache_repository: &Path,
    job_directory: &Path,
    commit: &CommitId,
    sparse_patterns: Option<&str>,
) -> Result<(), GitError> {
    let git_dir = job_directory.join(".git");
    // Sparse checkout is configured up front, in the config the repository is born with.
    let sparse_config = if sparse_patterns.is_some() { "[core]\n\tsparseCheckout = true\n\tsparseCheckoutCone = false\n" } else { "" };
    write_empty_repository(&git_dir, false, sparse_config).await?;
    let cache_objects =
        std::path::absolute(cache_repository.join("objects")).map_err(|source| {
            GitError::io(
                "cannot make the cache path absolute",
                cache_repository,
                source,
            )
        })?;
    let mut alternates = cache_objects.into_os_string().into_encoded_bytes();
    alternates.push(b'\n');
    write_file(&git_dir.join("objects/info/alternates"), &alternates).await?;
    // The cache is shallow; without its `shallow` file git would treat the missing parents of
    // the checked-out commit as corruption.
    match tokio::fs::read(cache_repository.join("shallow")).await {
        Ok(shallow) => write_file(&git_dir.join("shallow"), &shallow).await?,
        Err(source) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(GitError::io(
                "cannot read the cache's shallow file",
                cache_repository,
                source,
            ));
        }
    }
    if let Some(patterns) = sparse_patterns {
        write_file(&git_dir.join("info/sparse-checkout"), patterns.as_bytes()).await?;
    }
    GitCommand::in_work_tree(job_directory)
        .args([
            "checkout",
            "--quiet",
            "--force",
            "--detach",
            commit.as_str(),
        ])
        .run()
        .await?;
    Ok(())
}

/// Lays out an empty repository at `git_dir` as `git init --template=` does (HEAD on `main`,
/// an empty object store and ref folders, a format-0 config), plus `extra_config`. Executors
/// create two repositories per job on a new repository, and writing five small files costs
/// nothing next to starting git twice.
async fn write_empty_repository(git_dir: &Path, bare: bool, extra_config: &str) -> Result<(), GitError> {
    for folder in ["objects/info", "objects/pack", "refs/heads", "refs/tags"] {
        let path = git_dir.join(folder);
        tokio::fs::create_dir_all(&path)
            .await
            .map_err(|source| GitError::io("cannot create the repository folder", &path, source))?;
    }
    write_file(&git_dir.join("HEAD"), b"ref: refs/heads/main\n").await?;
    let config = format!("[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = {bare}\n{extra_config}");
    write_file(&git_dir.join("config"), config.as_bytes()).await
}

async fn write_file(path: &Path, contents: &[u8]) -> Result<(), GitError> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|source| GitError::io("cannot create directory", parent, source))?;
    }
    tokio::fs::write(path, contents)
        .await
        .map_err(|source| GitError::io("cannot write", path, source))
}

/// An exclusive advisory lock on a lock file, released when dropped (the file stays).
struct RepositoryLock {
    _file: File,
}

impl RepositoryLock {
    async fn acquire(path: &Path) -> Result<RepositoryLock, GitError> {
        let path = path.to_path_buf();
        let join = tokio::task::spawn_blocking(move || {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| {
                    GitError::io("cannot create the cache directory", parent, source)
                })?;
            }
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| {
                    GitError::io("cannot open the repository lock file", &path, source)
                })?;
            // Blocks this pool thread (not the runtime) until the holder finishes its fetch.
            file.lock().map_err(|source| {
                GitError::io("cannot lock the repository lock file", &path, source)
            })?;
            Ok(RepositoryLock { _file: file })
        })
        .await;
        match join {
            Ok(result) => result,
            Err(join_error) => Err(GitError::io(
                "the task taking the repository lock failed for",
                "cache",
                std::io::Error::other(join_error.to_string()),
            )),
        }
    }
}
