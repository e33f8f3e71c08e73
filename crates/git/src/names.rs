//! Validated names that are safe to hand to git: branch names, object ids and paths inside a
//! repository.
//!
//! Parse, don't validate: once a [`BranchName`], [`CommitId`], [`ObjectId`] or [`RepoPath`]
//! exists it holds a value git accepts and that can never be mistaken for a command-line option
//! (none of them can start with `-`).

use std::fmt;

use crate::error::GitError;

/// A branch name as `git check-ref-format --branch` accepts it, without the `refs/heads/` prefix.
///
/// Rejected: empty names, `HEAD`, `@`, a leading `-` or `/`, a trailing `/` or `.`, `//`, `..`,
/// `@{`, a component starting with `.` or ending with `.lock`, ASCII control characters, space
/// and any of `~ ^ : ? * [ \`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchName(String);

impl BranchName {
    /// Validates `name`; the error says which rule it breaks.
    pub fn new(name: &str) -> Result<BranchName, GitError> {
        match branch_name_problem(name) {
            None => Ok(BranchName(name.to_owned())),
            Some(reason) => Err(GitError::invalid("branch name", name, reason)),
        }
    }

    /// The name without the `refs/heads/` prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full ref name, `refs/heads/<name>`.
    pub fn full_ref(&self) -> String {
        format!("refs/heads/{}", self.0)
    }
}

impl fmt::Display for BranchName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

fn branch_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("a branch name must not be empty");
    }
    if name == "HEAD" || name == "@" {
        return Some("`HEAD` and `@` are reserved by git");
    }
    if name.starts_with('-') {
        return Some("a branch name must not start with `-`");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some("a branch name must not start or end with `/` or contain `//`");
    }
    if name.ends_with('.') {
        return Some("a branch name must not end with `.`");
    }
    if name.contains("..") {
        return Some("a branch name must not contain `..`");
    }
    if name.contains("@{") {
        return Some("a branch name must not contain `@{`");
    }
    if name
        .chars()
        .any(|character| character.is_ascii_control() || " ~^:?*[\\".contains(character))
    {
        return Some(
            "a branch name must not contain spaces, control characters or any of `~ ^ : ? * [ \\`",
        );
    }
    for component in name.split('/') {
        if component.starts_with('.') {
            return Some("no `/`-separated part of a branch name may start with `.`");
        }
        if component.ends_with(".lock") {
            return Some("no `/`-separated part of a branch name may end with `.lock`");
        }
    }
    None
}

macro_rules! hex_object_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// Accepts 40 (SHA-1) or 64 (SHA-256) lowercase hexadecimal digits.
            pub fn new(hex: &str) -> Result<$name, GitError> {
                if hex.len() != 40 && hex.len() != 64 {
                    return Err(GitError::invalid(
                        $kind,
                        hex,
                        "expected 40 or 64 hexadecimal digits (a full object id, not an abbreviation or a ref name)",
                    ));
                }
                if !hex.bytes().all(|byte| matches!(byte, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(GitError::invalid(
                        $kind,
                        hex,
                        "expected lowercase hexadecimal digits only",
                    ));
                }
                Ok($name(hex.to_owned()))
            }

            /// The hexadecimal id.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = GitError;
            fn from_str(hex: &str) -> Result<$name, GitError> {
                $name::new(hex)
            }
        }
    };
}

hex_object_id!(
    /// The full id of a commit.
    CommitId,
    "commit id"
);

hex_object_id!(
    /// The full id of any git object (blob, tree, tag or commit).
    ObjectId,
    "object id"
);

impl From<CommitId> for ObjectId {
    fn from(commit: CommitId) -> ObjectId {
        ObjectId(commit.0)
    }
}

/// A relative, `/`-separated path inside a repository's tree, such as `src/main.rs`.
///
/// Rejected: empty paths, absolute paths, empty, `.` and `..` components, trailing `/`, a
/// component named `.git` (in any letter case), NUL and newline characters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoPath(String);

impl RepoPath {
    /// Validates `path`; the error says which rule it breaks.
    pub fn new(path: &str) -> Result<RepoPath, GitError> {
        match repo_path_problem(path) {
            None => Ok(RepoPath(path.to_owned())),
            Some(reason) => Err(GitError::invalid("repository path", path, reason)),
        }
    }

    /// The path as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.0)
    }
}

pub(crate) fn repo_path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("a path must not be empty");
    }
    if path.starts_with('/') {
        return Some("a path must be relative to the repository root, not absolute");
    }
    if path.contains('\0') || path.contains('\n') {
        return Some("a path must not contain NUL or newline characters");
    }
    for component in path.split('/') {
        match component {
            "" => return Some("a path must not contain empty components (`//` or a trailing `/`)"),
            "." | ".." => return Some("a path must not contain `.` or `..` components"),
            _ if component.eq_ignore_ascii_case(".git") => {
                return Some("a path must not reach into a `.git` directory");
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids() {
        assert!(CommitId::new(&"a".repeat(40)).is_ok());
        assert!(CommitId::new(&"0".repeat(64)).is_ok());
        assert!(CommitId::new(&"A".repeat(40)).is_err());
        assert!(CommitId::new("abc123").is_err());
        assert!(CommitId::new(&format!("-{}", "a".repeat(39))).is_err());
    }

    #[test]
    fn repo_paths() {
        for good in [
            "a",
            "a/b.txt",
            "dir with space/x",
            "ünï/cödé",
            ".batchignore",
            ".github/workflows/x.yml",
        ] {
            assert!(RepoPath::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "./a",
            "a//b",
            "a/",
            ".git/config",
            "x/.GIT/y",
            "a\0b",
        ] {
            assert!(RepoPath::new(bad).is_err(), "{bad:?}");
        }
    }
}
