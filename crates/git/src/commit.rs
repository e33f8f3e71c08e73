//! Turning a changeset's diff into a commit on a mirror and pushing it to the code host, the
//! way Sourcegraph's gitserver does `CreateCommitFromPatch`.
//!
//! The commit is built without any working tree: a temporary index file (`GIT_INDEX_FILE`)
//! inside the mirror is loaded with the base tree, the diff is applied to it with
//! `git apply --cached -p0`, `write-tree` writes the tree and the commit object is written
//! in-process (the bytes `commit-tree` would write; see `objects`). The mirror's
//! refs are never changed; the new commit is only reachable once pushed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::command::{Credentials, GitCommand, check_remote, stderr_tail};
use crate::error::GitError;
use crate::names::{BranchName, CommitId, ObjectId};
use crate::objects::{object_format, write_loose_object};
use crate::unique_suffix;

/// A point in time as git records it: seconds since the Unix epoch plus the author's UTC offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GitTime {
    pub seconds_since_epoch: i64,
    /// Offset from UTC in minutes, such as `120` for `+0200` or `-300` for `-0500`.
    pub offset_minutes: i32,
}

impl GitTime {
    /// The `@<seconds> <+hhmm>` form `GIT_AUTHOR_DATE` and `GIT_COMMITTER_DATE` accept.
    pub fn to_git_date(self) -> String {
        let sign = if self.offset_minutes < 0 { '-' } else { '+' };
        let offset = self.offset_minutes.unsigned_abs();
        format!(
            "@{} {sign}{:02}{:02}",
            self.seconds_since_epoch,
            offset / 60,
            offset % 60
        )
    }
}

/// Who wrote or committed a change, and when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    pub name: String,
    pub email: String,
    pub time: GitTime,
}

impl Signature {
    /// `Name <email> <seconds> <+hhmm>`, as on a commit's `author` and `committer` lines.
    fn header_value(&self) -> String {
        let date = self.time.to_git_date();
        format!("{} <{}> {}", self.name, self.email, date.trim_start_matches('@'))
    }

    fn check(&self, role: &'static str) -> Result<(), GitError> {
        let forbidden = |text: &str| text.contains(['<', '>', '\n', '\r', '\0']);
        if self.name.trim().is_empty() {
            return Err(GitError::invalid(
                role,
                &self.name,
                "the name must not be empty",
            ));
        }
        if forbidden(&self.name) || forbidden(&self.email) {
            return Err(GitError::invalid(
                role,
                &format!("{} <{}>", self.name, self.email),
                "names and emails must not contain `<`, `>` or line breaks",
            ));
        }
        Ok(())
    }
}

/// Applies `diff` (a `git diff --no-prefix --binary` patch) to `base` in the bare repository
/// `repository` and creates a commit with `message`, `author` and `committer` whose parent is
/// `base`. Returns the new commit's id. No ref and no working tree is touched. An empty diff
/// gives a commit with the base's tree.
///
/// A diff that does not apply gives [`GitError::PatchDoesNotApply`], which is permanent.
pub async fn commit_diff(
    repository: &Path,
    base: &CommitId,
    diff: &[u8],
    message: &str,
    author: &Signature,
    committer: &Signature,
) -> Result<CommitId, GitError> {
    author.check("author")?;
    committer.check("committer")?;
    let index = TemporaryIndex::new(repository);
    let with_index = |command: GitCommand| command.env("GIT_INDEX_FILE", index.path());

    with_index(GitCommand::in_git_dir(repository))
        .args(["read-tree", "--end-of-options"])
        .arg(base.as_str())
        .run()
        .await?;

    // An empty diff makes a commit with the base's tree; git apply would reject it.
    if !diff.is_empty() {
        let apply = with_index(GitCommand::in_git_dir(repository))
            .args([
                "apply",
                "--cached",
                "-p0",
                "--binary",
                "--whitespace=nowarn",
                "-",
            ])
            .input(with_complete_ending(diff))
            .output()
            .await?;
        if !apply.succeeded() {
            return Err(GitError::PatchDoesNotApply {
                base: base.to_string(),
                repository: repository.to_path_buf(),
                stderr_tail: stderr_tail(&apply.stderr),
            });
        }
    }

    let tree_command = with_index(GitCommand::in_git_dir(repository)).arg("write-tree");
    let tree = String::from_utf8_lossy(&tree_command.run().await?)
        .trim()
        .to_owned();
    if object_format(repository) == "sha1" {
        // What `git commit-tree` would write, byte for byte, without a process.
        let tree = ObjectId::new(&tree).map_err(|_| {
            with_index(GitCommand::in_git_dir(repository)).arg("write-tree").unexpected_output(format!("not a tree id: {tree:?}"))
        })?;
        let content = format!(
            "tree {tree}\nparent {base}\nauthor {}\ncommitter {}\n\n{message}",
            author.header_value(),
            committer.header_value()
        );
        let repository = repository.to_path_buf();
        let id = tokio::task::spawn_blocking(move || write_loose_object(&repository, "commit", content.as_bytes()))
            .await
            .map_err(|error| GitError::io("writing the commit object was interrupted", PathBuf::new(), std::io::Error::other(error)))??;
        return CommitId::new(id.as_str());
    }
    let commit_command = GitCommand::in_git_dir(repository)
        .config("commit.gpgSign", "false")
        .env("GIT_AUTHOR_NAME", &author.name)
        .env("GIT_AUTHOR_EMAIL", &author.email)
        .env("GIT_AUTHOR_DATE", author.time.to_git_date())
        .env("GIT_COMMITTER_NAME", &committer.name)
        .env("GIT_COMMITTER_EMAIL", &committer.email)
        .env("GIT_COMMITTER_DATE", committer.time.to_git_date())
        .args(["commit-tree", "-p", base.as_str(), "-F", "-", tree.as_str()])
        .input(message.as_bytes().to_vec());
    let display = GitCommand::in_git_dir(repository).args(["commit-tree", tree.as_str()]);
    let commit = String::from_utf8_lossy(&commit_command.run().await?)
        .trim()
        .to_owned();
    CommitId::new(&commit)
        .map_err(|_| display.unexpected_output(format!("not a commit id: {commit:?}")))
}

/// Diffs are often stored without their final newline; Sourcegraph adds it back before
/// applying. A binary patch additionally needs the empty line that ends its last hunk, without
/// which `git apply` silently skips that file.
fn with_complete_ending(diff: &[u8]) -> Vec<u8> {
    let mut patch = diff.to_vec();
    if patch.is_empty() {
        return patch;
    }
    if !patch.ends_with(b"\n") {
        patch.push(b'\n');
    }
    let last_file_start = patch
        .windows(12)
        .rposition(|window| window == b"\ndiff --git ")
        .unwrap_or(0);
    let last_file = &patch[last_file_start..];
    let last_file_is_binary_patch = last_file
        .windows(18)
        .any(|window| window == b"\nGIT binary patch\n");
    if last_file_is_binary_patch && !patch.ends_with(b"\n\n") {
        patch.push(b'\n');
    }
    patch
}

/// A temporary index file inside the repository, removed when dropped.
struct TemporaryIndex {
    path: PathBuf,
}

impl TemporaryIndex {
    fn new(repository: &Path) -> TemporaryIndex {
        TemporaryIndex {
            path: repository.join(format!("flotilla-index-{}", unique_suffix())),
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TemporaryIndex {
    fn drop(&mut self) {
        // Absent when read-tree failed before creating it; nothing to report either way.
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(self.path.with_extension("lock"));
    }
}

/// How to push.
#[derive(Clone, Debug, Default)]
pub struct PushOptions<'a> {
    /// The `Authorization` header for an HTTP(S) remote.
    pub credentials: Option<&'a Credentials>,
    /// Overwrite the branch even if it has commits the pushed commit does not contain
    /// (Sourcegraph always force-pushes changeset branches).
    pub force: bool,
    pub timeout: Option<Duration>,
}

/// Pushes `commit` from `repository` to `refs/heads/<branch>` at `remote` (a URL or path).
pub async fn push(
    repository: &Path,
    remote: &str,
    commit: &CommitId,
    branch: &BranchName,
    options: PushOptions<'_>,
) -> Result<(), GitError> {
    check_remote(remote)?;
    let force_marker = if options.force { "+" } else { "" };
    push_command(repository, remote, &options)
        .arg(format!("{force_marker}{commit}:{}", branch.full_ref()))
        .run()
        .await?;
    Ok(())
}

/// Deletes `refs/heads/<branch>` at `remote`. Deleting a branch that does not exist succeeds.
pub async fn delete_remote_branch(
    repository: &Path,
    remote: &str,
    branch: &BranchName,
    options: PushOptions<'_>,
) -> Result<(), GitError> {
    check_remote(remote)?;
    let command = push_command(repository, remote, &options).arg(format!(":{}", branch.full_ref()));
    let display = GitCommand::in_git_dir(repository).args(["push", remote]);
    let output = command.talks_to_remote().output().await?;
    if output.succeeded() {
        return Ok(());
    }
    if String::from_utf8_lossy(&output.stderr).contains("remote ref does not exist") {
        return Ok(());
    }
    Err(display.talks_to_remote().failure(&output))
}

fn push_command(repository: &Path, remote: &str, options: &PushOptions<'_>) -> GitCommand {
    GitCommand::in_git_dir(repository)
        // A mirror's `origin` has `mirror = true`, which refuses explicit refspecs.
        .config("remote.origin.mirror", "false")
        .config("push.recurseSubmodules", "no")
        .args(["push", "--quiet", "--no-verify", "--"])
        .arg(remote)
        .credentials(options.credentials)
        .timeout(options.timeout)
        .talks_to_remote()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_git_dates() {
        let cases = [
            (
                GitTime {
                    seconds_since_epoch: 1_700_000_000,
                    offset_minutes: 0,
                },
                "@1700000000 +0000",
            ),
            (
                GitTime {
                    seconds_since_epoch: 5,
                    offset_minutes: 150,
                },
                "@5 +0230",
            ),
            (
                GitTime {
                    seconds_since_epoch: 5,
                    offset_minutes: -300,
                },
                "@5 -0500",
            ),
        ];
        for (time, expected) in cases {
            assert_eq!(time.to_git_date(), expected);
        }
    }
}
