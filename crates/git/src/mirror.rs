//! Server-side mirrors: bare `git clone --mirror` copies of code-host repositories, kept up to
//! date with `git fetch --prune`, and questions about their branches.
//!
//! A mirror is created in a temporary sibling directory and renamed into place, so a crash
//! mid-clone never leaves a half-initialised mirror at the destination.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::command::{Credentials, GitCommand, check_remote};
use crate::error::GitError;
use crate::names::{BranchName, CommitId, ObjectId};
use crate::refs::FileRefs;
use crate::unique_suffix;

/// A branch and the commit it points to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Branch {
    pub name: BranchName,
    pub commit: CommitId,
}

/// One ref that a fetch created, moved or deleted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefChange {
    /// The full ref name, such as `refs/heads/main` or `refs/tags/v1`.
    pub name: String,
    /// The object before the fetch; `None` when the fetch created the ref.
    pub before: Option<ObjectId>,
    /// The object after the fetch; `None` when the fetch pruned the ref.
    pub after: Option<ObjectId>,
}

/// What [`fetch_mirror`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// Every ref that differs between before and after the fetch, sorted by name.
    pub changed_refs: Vec<RefChange>,
    /// The default branch after the fetch, when it changed on the remote (HEAD was repointed).
    pub new_default_branch: Option<BranchName>,
}

impl FetchOutcome {
    /// True when any ref (or the default branch) changed, so dependent caches must be refreshed.
    pub fn refs_changed(&self) -> bool {
        !self.changed_refs.is_empty() || self.new_default_branch.is_some()
    }
}

/// Options shared by the network operations on mirrors.
#[derive(Clone, Debug, Default)]
pub struct RemoteOptions<'a> {
    /// The `Authorization` header for HTTP(S) remotes, if the remote needs one.
    pub credentials: Option<&'a Credentials>,
    /// Kill git when it runs longer than this.
    pub timeout: Option<Duration>,
}

/// Creates a bare mirror of `source` (a URL or a local path) at `destination`, which must not
/// exist yet. The clone happens in a temporary sibling directory that is renamed into place.
pub async fn create_mirror(
    source: &str,
    destination: &Path,
    options: RemoteOptions<'_>,
) -> Result<(), GitError> {
    check_remote(source)?;
    if tokio::fs::try_exists(destination).await.unwrap_or(false) {
        return Err(GitError::io(
            "refusing to create a mirror over an existing path; remove it or call fetch_mirror instead",
            destination,
            std::io::Error::from(std::io::ErrorKind::AlreadyExists),
        ));
    }
    let parent = destination.parent().unwrap_or(Path::new("."));
    tokio::fs::create_dir_all(parent).await.map_err(|source| {
        GitError::io(
            "cannot create the mirror's parent directory",
            parent,
            source,
        )
    })?;
    let file_name = destination
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "mirror".to_owned());
    let temporary = parent.join(format!(".{file_name}.tmp-{}", unique_suffix()));
    let clone = GitCommand::in_directory(parent)
        .args(["clone", "--mirror", "--quiet", "--no-hardlinks", "--"])
        .arg(source)
        .arg(&temporary)
        .credentials(options.credentials)
        .timeout(options.timeout)
        .talks_to_remote()
        .run()
        .await;
    if let Err(error) = clone {
        let _ = tokio::fs::remove_dir_all(&temporary).await;
        return Err(error);
    }
    if let Err(source) = tokio::fs::rename(&temporary, destination).await {
        let _ = tokio::fs::remove_dir_all(&temporary).await;
        return Err(GitError::io(
            "cannot move the new mirror into place at",
            destination,
            source,
        ));
    }
    Ok(())
}

/// Brings the mirror up to date with its `origin` remote (all refs, `--prune`) and reports
/// which refs changed. Also follows a change of the remote's default branch (its HEAD).
///
/// The remote's refs are listed first (`git ls-remote`, one small request) and compared with
/// the mirror's: when nothing changed, which is most repositories at most syncs, no fetch runs.
/// At tens of thousands of repositories that halves the periodic sync's git processes and
/// requests to the code host.
pub async fn fetch_mirror(
    mirror: &Path,
    options: RemoteOptions<'_>,
) -> Result<FetchOutcome, GitError> {
    let before = snapshot_refs(mirror).await?;
    let remote = list_remote(mirror, &options).await?;
    let after = if remote.refs == before {
        before.clone()
    } else {
        GitCommand::in_git_dir(mirror)
            .args([
                "fetch",
                "--prune",
                "--quiet",
                "--no-write-fetch-head",
                "origin",
            ])
            .credentials(options.credentials)
            .timeout(options.timeout)
            .talks_to_remote()
            .run()
            .await?;
        snapshot_refs(mirror).await?
    };
    let mut changed_refs = Vec::new();
    for (name, before_id) in &before {
        match after.get(name) {
            Some(after_id) if after_id == before_id => {}
            after_id => changed_refs.push(RefChange {
                name: name.clone(),
                before: Some(before_id.clone()),
                after: after_id.cloned(),
            }),
        }
    }
    for (name, after_id) in &after {
        if !before.contains_key(name) {
            changed_refs.push(RefChange {
                name: name.clone(),
                before: None,
                after: Some(after_id.clone()),
            });
        }
    }
    changed_refs.sort_by(|left, right| left.name.cmp(&right.name));
    let new_default_branch = follow_remote_head(mirror, remote.head.as_deref()).await?;
    Ok(FetchOutcome {
        changed_refs,
        new_default_branch,
    })
}

/// What `git ls-remote --symref origin` says: every ref under `refs/` and the branch HEAD
/// names (when the remote says).
struct RemoteListing {
    refs: BTreeMap<String, ObjectId>,
    head: Option<String>,
}

async fn list_remote(mirror: &Path, options: &RemoteOptions<'_>) -> Result<RemoteListing, GitError> {
    let command = GitCommand::in_git_dir(mirror)
        .args(["ls-remote", "--symref", "origin"])
        .credentials(options.credentials)
        .timeout(options.timeout)
        .talks_to_remote();
    let listing = command.run().await?;
    let mut refs = BTreeMap::new();
    let mut head = None;
    for line in String::from_utf8_lossy(&listing).lines() {
        let Some((value, name)) = line.split_once('\t') else {
            continue;
        };
        if let Some(target) = value.strip_prefix("ref: ") {
            if name == "HEAD" {
                head = target.strip_prefix("refs/heads/").map(str::to_owned);
            }
            continue;
        }
        // `refs/tags/v1^{}` is the commit an annotated tag points to, not a ref.
        if !name.starts_with("refs/") || name.ends_with("^{}") {
            continue;
        }
        let id = ObjectId::new(value).map_err(|_| {
            GitCommand::in_git_dir(mirror)
                .args(["ls-remote"])
                .unexpected_output(format!("not an object id: {value:?}"))
        })?;
        refs.insert(name.to_owned(), id);
    }
    Ok(RemoteListing { refs, head })
}

/// Repoints the mirror's HEAD at the remote's default branch when they differ.
async fn follow_remote_head(
    mirror: &Path,
    remote_head: Option<&str>,
) -> Result<Option<BranchName>, GitError> {
    let Some(remote_head) = remote_head else {
        return Ok(None);
    };
    let Ok(remote_branch) = BranchName::new(remote_head) else {
        return Ok(None);
    };
    let local_head = symbolic_head(mirror).await?;
    if local_head.as_deref() == Some(remote_branch.as_str()) {
        return Ok(None);
    }
    GitCommand::in_git_dir(mirror)
        .args(["symbolic-ref", "HEAD"])
        .arg(remote_branch.full_ref())
        .run()
        .await?;
    Ok(Some(remote_branch))
}

async fn symbolic_head(repository: &Path) -> Result<Option<String>, GitError> {
    if let Some(refs) = FileRefs::open(repository) {
        let target = refs.head_target()?;
        return Ok(target.and_then(|target| target.strip_prefix("refs/heads/").map(str::to_owned)));
    }
    let output = GitCommand::in_git_dir(repository)
        .args(["symbolic-ref", "-q", "HEAD"])
        .output()
        .await?;
    if !output.succeeded() {
        // Exit code 1: HEAD is detached, which a mirror should never be.
        return Ok(None);
    }
    let head = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok(head.strip_prefix("refs/heads/").map(str::to_owned))
}

/// Every ref and the object it points to.
async fn snapshot_refs(repository: &Path) -> Result<BTreeMap<String, ObjectId>, GitError> {
    if let Some(refs) = FileRefs::open(repository) {
        return refs.list("refs/");
    }
    let command = GitCommand::in_git_dir(repository)
        .args(["for-each-ref", "--format=%(objectname) %(refname)"]);
    let display_command = GitCommand::in_git_dir(repository).args(["for-each-ref"]);
    let stdout = command.run().await?;
    let mut refs = BTreeMap::new();
    for line in String::from_utf8_lossy(&stdout).lines() {
        let Some((object, name)) = line.split_once(' ') else {
            return Err(
                display_command.unexpected_output(format!("line without a space: {line:?}"))
            );
        };
        refs.insert(name.to_owned(), ObjectId::new(object)?);
    }
    Ok(refs)
}

/// The branch HEAD points to and its commit; `None` when HEAD is detached or the branch has no
/// commits yet (an empty repository).
pub async fn default_branch(repository: &Path) -> Result<Option<Branch>, GitError> {
    let Some(head) = symbolic_head(repository).await? else {
        return Ok(None);
    };
    let Ok(name) = BranchName::new(&head) else {
        return Ok(None);
    };
    let Some(commit) = resolve_branch(repository, &name).await? else {
        return Ok(None);
    };
    Ok(Some(Branch { name, commit }))
}

/// The commit `refs/heads/<branch>` points to, or `None` when the branch does not exist.
pub async fn resolve_branch(
    repository: &Path,
    branch: &BranchName,
) -> Result<Option<CommitId>, GitError> {
    // A branch always points to a commit (git refuses to make it point elsewhere), so the id
    // the ref file holds is the answer.
    if let Some(refs) = FileRefs::open(repository) {
        let id = refs.resolve(&branch.full_ref())?;
        return id.map(|id| CommitId::new(id.as_str())).transpose();
    }
    resolve_commit(repository, &branch.full_ref()).await
}

/// Resolves a full ref name (or object id) to a commit; `None` when it does not exist.
pub(crate) async fn resolve_commit(
    repository: &Path,
    revision: &str,
) -> Result<Option<CommitId>, GitError> {
    let command = GitCommand::in_git_dir(repository)
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{revision}^{{commit}}"));
    let display_command =
        GitCommand::in_git_dir(repository).args(["rev-parse", "--verify", revision]);
    let output = command.output().await?;
    match output.exit_code {
        Some(0) => {
            let hex = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            CommitId::new(&hex).map(Some).map_err(|_| {
                display_command.unexpected_output(format!("not an object id: {hex:?}"))
            })
        }
        Some(1) => Ok(None),
        _ => Err(display_command.failure(&output)),
    }
}

/// Every branch of the repository with its commit, sorted by name. Branches whose names git
/// would not let us push (possible in old repositories) are skipped.
pub async fn list_branches(repository: &Path) -> Result<Vec<Branch>, GitError> {
    if let Some(refs) = FileRefs::open(repository) {
        let mut branches: Vec<Branch> = refs
            .list("refs/heads/")?
            .into_iter()
            .filter_map(|(name, id)| {
                let name = BranchName::new(name.strip_prefix("refs/heads/")?).ok()?;
                Some(Branch { name, commit: CommitId::new(id.as_str()).ok()? })
            })
            .collect();
        branches.sort_by(|left, right| left.name.cmp(&right.name));
        return Ok(branches);
    }
    let stdout = GitCommand::in_git_dir(repository)
        .args([
            "for-each-ref",
            "--format=%(objectname) %(refname:lstrip=2)",
            "refs/heads/",
        ])
        .run()
        .await?;
    let mut branches = Vec::new();
    for line in String::from_utf8_lossy(&stdout).lines() {
        let Some((object, name)) = line.split_once(' ') else {
            continue;
        };
        let (Ok(name), Ok(commit)) = (BranchName::new(name), CommitId::new(object)) else {
            continue;
        };
        branches.push(Branch { name, commit });
    }
    branches.sort_by(|left, right| left.name.cmp(&right.name));
    Ok(branches)
}
