//! The forge-neutral records adapters return and accept. They carry only what the reconciler
//! and the mirrors use, in our vocabulary (changeset, not pull or merge request).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A repository on a code host, by its owner (user, organisation or group) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepositoryRef {
    pub owner: String,
    pub name: String,
}

impl RepositoryRef {
    pub fn new(owner: impl Into<String>, name: impl Into<String>) -> RepositoryRef {
        RepositoryRef { owner: owner.into(), name: name.into() }
    }

    /// Parses `owner/name`; `None` when either part is missing or there are more parts.
    pub fn parse(full_name: &str) -> Option<RepositoryRef> {
        let (owner, name) = full_name.split_once('/')?;
        if owner.is_empty() || name.is_empty() || name.contains('/') {
            return None;
        }
        Some(RepositoryRef::new(owner, name))
    }
}

impl fmt::Display for RepositoryRef {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}/{}", self.owner, self.name)
    }
}

/// Which repositories a code host connection mirrors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepositorySelection {
    /// Every repository of an organisation.
    Organization(String),
    /// Exactly these repositories.
    Explicit(Vec<RepositoryRef>),
}

/// A repository as the code host describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostedRepository {
    /// `owner/name`.
    pub full_name: String,
    /// The URL to clone and push with (credentials travel separately, never in the URL).
    pub clone_url: String,
    pub default_branch: String,
    pub archived: bool,
    pub fork: bool,
    pub private: bool,
}

/// A changeset the reconciler wants opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangesetRequest {
    pub repository: RepositoryRef,
    /// The branch to merge into, without `refs/heads/`.
    pub base_ref: String,
    /// The branch holding the change, without `refs/heads/`.
    pub head_ref: String,
    pub title: String,
    pub body: String,
    pub draft: bool,
}

/// What to change on an existing changeset; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangesetUpdate {
    pub title: Option<String>,
    pub body: Option<String>,
    pub base_ref: Option<String>,
    /// `Some(false)` closes, `Some(true)` reopens.
    pub open: Option<bool>,
}

/// How to merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MergeMethod {
    #[default]
    Merge,
    Squash,
    Rebase,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExternalState {
    Open,
    Draft,
    Closed,
    Merged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReviewState {
    Pending,
    Approved,
    ChangesRequested,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckState {
    Pending,
    Passed,
    Failed,
    Unknown,
}

/// A changeset as the code host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalChangeset {
    /// The host's id for it (the pull request number on GitHub).
    pub number: u64,
    /// Where a person sees it.
    pub url: String,
    pub state: ExternalState,
    pub review_state: ReviewState,
    pub check_state: CheckState,
    pub title: String,
    pub body: String,
    pub base_ref: String,
    pub head_ref: String,
    /// The commit at the head of the changeset, when the host reports it.
    pub head_sha: Option<String>,
    /// As the host wrote it (RFC 3339 on GitHub).
    pub updated_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_parse_only_owner_slash_name() {
        assert_eq!(RepositoryRef::parse("a/b"), Some(RepositoryRef::new("a", "b")));
        for bad in ["", "a", "a/", "/b", "a/b/c"] {
            assert_eq!(RepositoryRef::parse(bad), None, "{bad:?}");
        }
        assert_eq!(RepositoryRef::new("o", "r").to_string(), "o/r");
    }
}
