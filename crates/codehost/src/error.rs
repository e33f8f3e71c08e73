//! One error type for every adapter, sorted by what the caller should do about it: retry
//! later (`Transient`, `RateLimited`) or stop and tell a person (`Permanent`). The reconciler
//! decides between "errored, will retry" and "failed" from this alone.

use std::time::Duration;

/// Why a permanent failure happened, for callers that react differently (a missing pull
/// request means "deleted" to the syncer; bad credentials mean "ask the user for a new token").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PermanentKind {
    /// 401: the token is wrong, expired or revoked.
    BadCredentials,
    /// 403 for a reason other than rate limits: the token lacks a scope or access.
    Forbidden,
    /// 404: the repository or changeset does not exist, or the token cannot see it.
    NotFound,
    /// 422 (or another 4xx): the host refused the request's content.
    Validation,
    /// The repository is archived and so read-only.
    ArchivedRepository,
    /// The host answered with something this adapter cannot read, or the adapter is
    /// misconfigured (bad base URL, bad token characters).
    Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeHostError {
    /// The host failed or could not be reached (5xx, timeout, connection reset) and retrying
    /// within this call did not help. `retry_after` is the wait the host asked for, if it did.
    #[error("{message} (the code host seems to be having trouble; this will be retried later)")]
    Transient { message: String, retry_after: Option<Duration> },
    /// The host's rate limit for this credential is used up and the wait is longer than this
    /// call may block; try again after `retry_after`.
    #[error(
        "{message} (rate limit for this credential reached; retry after {} s, or use a credential with a higher limit)",
        retry_after.as_secs()
    )]
    RateLimited { message: String, retry_after: Duration },
    /// Retrying the same request cannot succeed.
    #[error("{message}")]
    Permanent { kind: PermanentKind, message: String },
}

impl CodeHostError {
    /// Whether the same request may succeed later.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, CodeHostError::Permanent { .. })
    }

    /// The permanent failure's kind, if this is one.
    pub fn permanent_kind(&self) -> Option<PermanentKind> {
        match self {
            CodeHostError::Permanent { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// How long the host asked to wait before retrying, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CodeHostError::Transient { retry_after, .. } => *retry_after,
            CodeHostError::RateLimited { retry_after, .. } => Some(*retry_after),
            CodeHostError::Permanent { .. } => None,
        }
    }

    pub(crate) fn protocol(message: impl Into<String>) -> CodeHostError {
        CodeHostError::Permanent { kind: PermanentKind::Protocol, message: message.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_permanent_errors_are_final() {
        let transient = CodeHostError::Transient { message: "502".into(), retry_after: None };
        let limited = CodeHostError::RateLimited { message: "429".into(), retry_after: Duration::from_secs(7) };
        let permanent = CodeHostError::Permanent { kind: PermanentKind::NotFound, message: "404".into() };
        assert!(transient.is_retryable() && limited.is_retryable() && !permanent.is_retryable());
        assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(permanent.permanent_kind(), Some(PermanentKind::NotFound));
        assert!(limited.to_string().contains("retry after 7 s"));
    }
}
