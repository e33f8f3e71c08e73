//! The one error type of this crate, and how callers decide whether to retry.
//!
//! Every variant names what was being done (the git command without credentials, the
//! repository path) and, for git failures, the last lines of git's stderr, so a log line is
//! enough to act on. [`GitError::is_retryable`] encodes the reconciler's rule: network trouble
//! is retried, a patch that does not apply or a rejected credential is not.

use std::path::PathBuf;
use std::time::Duration;

/// Why a command that talked to a remote failed, as far as git's stderr tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemoteFailureKind {
    /// Connection refused or reset, DNS failure, timeout, HTTP 5xx, broken pipe: try again later.
    Network,
    /// HTTP 401/403 or "Authentication failed": the credential is missing, wrong or lacks access.
    Authentication,
    /// The remote repository does not exist (HTTP 404, "not found", "does not appear to be a git repository").
    NotFound,
    /// The remote refused the ref update (protected branch, non-fast-forward without force, hook declined).
    Rejected,
    /// Anything git reported that matches none of the above.
    Other,
}

/// An error from a git operation.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// The git binary could not be started at all.
    #[error(
        "could not start `git {command}`: {source}; install git 2.39 or newer and make sure it is on PATH"
    )]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },

    /// Reading or writing git's pipes failed while the command ran.
    #[error("i/o error talking to `git {command}` for {repository}: {source}")]
    Pipe {
        command: String,
        repository: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Git ran and exited unsuccessfully.
    #[error("`git {command}` failed for {repository} ({status}): {stderr_tail}")]
    CommandFailed {
        command: String,
        repository: PathBuf,
        status: String,
        stderr_tail: String,
    },

    /// Git did not finish within the caller's time limit and was killed.
    #[error(
        "`git {command}` for {repository} did not finish within {timeout:?} and was killed; raise the timeout or check the remote"
    )]
    TimedOut {
        command: String,
        repository: PathBuf,
        timeout: Duration,
    },

    /// A clone, fetch or push failed on the remote side or on the way to it.
    #[error(
        "`git {command}` for {repository} failed talking to the remote ({kind:?}): {stderr_tail}"
    )]
    Remote {
        command: String,
        repository: PathBuf,
        kind: RemoteFailureKind,
        stderr_tail: String,
    },

    /// The diff could not be applied to the base commit. Permanent: retrying will not help;
    /// the changeset spec has to be regenerated against the current base.
    #[error(
        "patch does not apply to base commit {base} in {repository}: {stderr_tail}; re-run the batch spec against the current base commit"
    )]
    PatchDoesNotApply {
        base: String,
        repository: PathBuf,
        stderr_tail: String,
    },

    /// A name (branch, commit id, path, repository name, URL) was rejected before reaching git.
    #[error("invalid {kind} {value:?}: {reason}")]
    InvalidName {
        kind: &'static str,
        value: String,
        reason: &'static str,
    },

    /// Git printed something this crate does not understand; usually a git version mismatch.
    #[error(
        "unexpected output from `git {command}` for {repository}: {detail}; check the installed git version (2.39 or newer)"
    )]
    UnexpectedOutput {
        command: String,
        repository: PathBuf,
        detail: String,
    },

    /// A filesystem operation around git (temp files, lock files, directories) failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl GitError {
    /// True when the same call may succeed later without anybody changing anything:
    /// network trouble and timeouts. Patch, name and credential problems are permanent.
    pub fn is_retryable(&self) -> bool {
        match self {
            GitError::Remote { kind, .. } => matches!(kind, RemoteFailureKind::Network),
            GitError::TimedOut { .. } => true,
            GitError::Pipe { .. } => true,
            _ => false,
        }
    }

    /// True for [`GitError::PatchDoesNotApply`].
    pub fn is_patch_does_not_apply(&self) -> bool {
        matches!(self, GitError::PatchDoesNotApply { .. })
    }

    pub(crate) fn invalid(kind: &'static str, value: &str, reason: &'static str) -> GitError {
        GitError::InvalidName {
            kind,
            value: value.to_owned(),
            reason,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> GitError {
        GitError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Classifies the stderr of a failed network command (clone, fetch, push, ls-remote).
pub(crate) fn classify_remote_failure(stderr: &str) -> RemoteFailureKind {
    let lower = stderr.to_ascii_lowercase();
    let contains_any = |needles: &[&str]| needles.iter().any(|needle| lower.contains(needle));
    if contains_any(&[
        "authentication failed",
        "returned error: 401",
        "returned error: 403",
        "could not read username",
        "could not read password",
        "terminal prompts disabled",
        "permission denied",
        "access denied",
    ]) {
        return RemoteFailureKind::Authentication;
    }
    if contains_any(&[
        "[rejected]",
        "[remote rejected]",
        "non-fast-forward",
        "protected branch",
        "hook declined",
        "failed to push some refs",
    ]) {
        return RemoteFailureKind::Rejected;
    }
    if contains_any(&[
        "returned error: 404",
        "repository not found",
        "does not appear to be a git repository",
        "not found",
    ]) {
        return RemoteFailureKind::NotFound;
    }
    if contains_any(&[
        "could not resolve host",
        "couldn't resolve host",
        "connection refused",
        "connection reset",
        "connection timed out",
        "operation timed out",
        "failed to connect",
        "returned error: 5",
        "rpc failed",
        "early eof",
        "unexpected disconnect",
        "the remote end hung up",
        "broken pipe",
        "ssl",
        "gnutls",
        "http/2 stream",
        "transfer closed",
        "empty reply from server",
        "temporary failure",
    ]) {
        return RemoteFailureKind::Network;
    }
    RemoteFailureKind::Other
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_common_remote_failures() {
        let cases = [
            (
                "fatal: unable to access 'x': Could not resolve host: example.invalid",
                RemoteFailureKind::Network,
            ),
            (
                "error: RPC failed; HTTP 502 curl 22 The requested URL returned error: 502",
                RemoteFailureKind::Network,
            ),
            (
                "fatal: Authentication failed for 'https://h/r'",
                RemoteFailureKind::Authentication,
            ),
            (
                "fatal: unable to access 'x': The requested URL returned error: 403",
                RemoteFailureKind::Authentication,
            ),
            (
                " ! [rejected]        main -> main (non-fast-forward)",
                RemoteFailureKind::Rejected,
            ),
            (
                "fatal: repository 'https://h/r/' not found",
                RemoteFailureKind::NotFound,
            ),
            ("fatal: something odd", RemoteFailureKind::Other),
        ];
        for (stderr, expected) in cases {
            assert_eq!(classify_remote_failure(stderr), expected, "{stderr}");
        }
    }
}
