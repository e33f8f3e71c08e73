//! Finding repositories below a directory, so a server can serve an existing tree of mirrors
//! (or plain clones) without being told about each one.
//!
//! A directory is a repository when it holds `HEAD`, `objects/` and `refs/` (bare), or when it
//! holds a `.git` directory that does (non-bare). The walk never descends into a repository and
//! never follows symbolic links, so it terminates on any tree.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::GitError;

/// A repository found by [`discover_repositories`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredRepository {
    /// The path below the root, `/`-separated, without a trailing `.git` (bare `a/b.git` and
    /// non-bare `a/b/.git` are both named `a/b`).
    pub relative_name: String,
    /// The git directory: the bare repository itself, or the `.git` directory of a clone.
    pub git_dir: PathBuf,
    /// True for bare repositories, false for clones with a working tree.
    pub is_bare: bool,
}

/// Walks `root` and returns every repository below it, sorted by name.
///
/// This is blocking filesystem work; call it from `tokio::task::spawn_blocking` on a server.
/// Directories that cannot be read and names that are not UTF-8 are skipped, because one
/// unreadable directory must not hide every other repository; the root itself must be readable.
pub fn discover_repositories(root: &Path) -> Result<Vec<DiscoveredRepository>, GitError> {
    let mut found = Vec::new();
    let entries = fs::read_dir(root)
        .map_err(|source| GitError::io("cannot read repository root", root, source))?;
    let mut pending: Vec<(PathBuf, String)> = Vec::new();
    push_subdirectories(entries, "", &mut pending);
    while let Some((directory, relative)) = pending.pop() {
        if is_git_dir(&directory) {
            let relative_name = relative
                .strip_suffix(".git")
                .unwrap_or(&relative)
                .to_owned();
            if !relative_name.is_empty() && !relative_name.ends_with('/') {
                found.push(DiscoveredRepository {
                    relative_name,
                    git_dir: directory,
                    is_bare: true,
                });
            }
            continue;
        }
        let dot_git = directory.join(".git");
        if dot_git.is_dir() && is_git_dir(&dot_git) {
            found.push(DiscoveredRepository {
                relative_name: relative,
                git_dir: dot_git,
                is_bare: false,
            });
            continue;
        }
        if let Ok(entries) = fs::read_dir(&directory) {
            push_subdirectories(entries, &relative, &mut pending);
        }
    }
    found.sort_by(|left, right| left.relative_name.cmp(&right.relative_name));
    Ok(found)
}

fn push_subdirectories(
    entries: fs::ReadDir,
    parent_relative: &str,
    pending: &mut Vec<(PathBuf, String)>,
) {
    for entry in entries.flatten() {
        // `file_type` does not follow symbolic links, which keeps the walk finite.
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            continue;
        }
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if name == ".git" {
            // Handled by the parent's non-bare check.
            continue;
        }
        let relative = if parent_relative.is_empty() {
            name
        } else {
            format!("{parent_relative}/{name}")
        };
        pending.push((entry.path(), relative));
    }
}

fn is_git_dir(directory: &Path) -> bool {
    directory.join("HEAD").is_file()
        && directory.join("objects").is_dir()
        && directory.join("refs").is_dir()
}
