//! The emulator's git side: bare repositories with a first commit, branch lookups, and git's
//! smart HTTP protocol for fetches and pushes.
//!
//! Fetches reuse `flotilla_git::smart_http` (the server's upload-pack serving). That module
//! serves fetches only, so pushes (`git-receive-pack`) are served here, buffered in memory,
//! which is fine for the small repositories of tests.

use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("running git {command} in {path}: {message}")]
    Failed { command: String, path: String, message: String },
    #[error("{0:?} is not a valid branch name")]
    InvalidBranch(String),
}

/// Runs git with an isolated configuration and fixed identities and dates, so repositories
/// are the same on every machine.
pub async fn run_git(directory: &Path, arguments: &[&str], stdin: Option<&[u8]>) -> Result<Vec<u8>, GitError> {
    let failed = |message: String| GitError::Failed {
        command: arguments.join(" "),
        path: directory.display().to_string(),
        message,
    };
    let mut command = Command::new("git");
    command
        .args(arguments)
        .current_dir(directory)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Emulator")
        .env("GIT_AUTHOR_EMAIL", "emulator@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_NAME", "Emulator")
        .env("GIT_COMMITTER_EMAIL", "emulator@example.com")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|error| failed(error.to_string()))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // Git may stop reading early and answer with an error; that error is the one to report.
        let _ = pipe.write_all(input).await;
        drop(pipe);
    }
    let output = child.wait_with_output().await.map_err(|error| failed(error.to_string()))?;
    if !output.status.success() {
        return Err(failed(String::from_utf8_lossy(&output.stderr).trim().to_owned()));
    }
    Ok(output.stdout)
}

/// Creates a bare repository at `git_dir` whose `default_branch` holds one commit with a README.
pub async fn create_repository(git_dir: &Path, name: &str, default_branch: &str) -> Result<(), GitError> {
    check_branch_name(default_branch)?;
    let parent = git_dir.parent().unwrap_or(git_dir);
    tokio::fs::create_dir_all(parent).await.map_err(|error| GitError::Failed {
        command: "mkdir".into(),
        path: parent.display().to_string(),
        message: error.to_string(),
    })?;
    let git_dir_text = git_dir.to_string_lossy().into_owned();
    run_git(parent, &["init", "--bare", "--quiet", &format!("--initial-branch={default_branch}"), &git_dir_text], None).await?;
    let readme = format!("# {name}\n");
    let blob = run_git(git_dir, &["hash-object", "-w", "--stdin"], Some(readme.as_bytes())).await?;
    let blob = String::from_utf8_lossy(&blob).trim().to_owned();
    let tree = run_git(git_dir, &["mktree"], Some(format!("100644 blob {blob}\tREADME.md\n").as_bytes())).await?;
    let tree = String::from_utf8_lossy(&tree).trim().to_owned();
    let commit = run_git(git_dir, &["commit-tree", &tree, "-m", "Initial commit"], None).await?;
    let commit = String::from_utf8_lossy(&commit).trim().to_owned();
    run_git(git_dir, &["update-ref", &format!("refs/heads/{default_branch}"), &commit], None).await?;
    Ok(())
}

/// Rejects names that could escape `refs/heads/` or that git would refuse.
pub fn check_branch_name(branch: &str) -> Result<(), GitError> {
    let invalid = branch.is_empty()
        || branch.starts_with('/')
        || branch.ends_with('/')
        || branch.starts_with('-')
        || branch.contains("..")
        || branch.contains("//")
        || branch.ends_with(".lock")
        || branch.chars().any(|character| character.is_control() || " ~^:?*[\\".contains(character));
    if invalid { Err(GitError::InvalidBranch(branch.to_owned())) } else { Ok(()) }
}

/// The commit a branch points at, read from the ref files directly (no process per request).
pub fn branch_commit(git_dir: &Path, branch: &str) -> Option<String> {
    check_branch_name(branch).ok()?;
    let loose = git_dir.join("refs/heads").join(branch);
    if let Ok(text) = std::fs::read_to_string(&loose) {
        let commit = text.trim();
        if !commit.is_empty() {
            return Some(commit.to_owned());
        }
    }
    let packed = std::fs::read_to_string(git_dir.join("packed-refs")).ok()?;
    let wanted = format!("refs/heads/{branch}");
    packed.lines().find_map(|line| {
        let (commit, name) = line.split_once(' ')?;
        (name == wanted).then(|| commit.to_owned())
    })
}

pub fn pkt_line(payload: &[u8]) -> Vec<u8> {
    let mut line = format!("{:04x}", payload.len() + 4).into_bytes();
    line.extend_from_slice(payload);
    line
}

/// The body of `info/refs?service=git-receive-pack`.
pub async fn advertise_receive_pack(git_dir: &Path) -> Result<Vec<u8>, GitError> {
    let git_dir_text = git_dir.to_string_lossy().into_owned();
    let advertisement = run_git(git_dir, &["receive-pack", "--stateless-rpc", "--advertise-refs", &git_dir_text], None).await?;
    let mut body = pkt_line(b"# service=git-receive-pack\n");
    body.extend_from_slice(b"0000");
    body.extend_from_slice(&advertisement);
    Ok(body)
}

/// Runs one push: the client's request in, git's report out.
pub async fn receive_pack(git_dir: &Path, request: &[u8]) -> Result<Vec<u8>, GitError> {
    let git_dir_text = git_dir.to_string_lossy().into_owned();
    run_git(git_dir, &["receive-pack", "--stateless-rpc", &git_dir_text], Some(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_names_that_escape_refs_are_refused() {
        for good in ["main", "batch/fix-1", "a.b"] {
            assert!(check_branch_name(good).is_ok(), "{good}");
        }
        for bad in ["", "../x", "a/../../b", "/abs", "a b", "a:b", "-x", "x.lock", "a\\b"] {
            assert!(check_branch_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_new_repository_has_its_default_branch() {
        let root = tempfile::tempdir().expect("temporary directory");
        let git_dir = root.path().join("o/r.git");
        create_repository(&git_dir, "r", "trunk").await.expect("repository created");
        let commit = branch_commit(&git_dir, "trunk").expect("trunk exists");
        assert_eq!(commit.len(), 40);
        assert_eq!(branch_commit(&git_dir, "main"), None);
    }
}
