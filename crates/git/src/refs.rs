//! Reading a repository's refs straight from its files, without starting git.
//!
//! The server asks its mirrors small questions all the time — which branch HEAD names, which
//! commit a branch points to, which refs a fetch changed — and at tens of thousands of
//! repositories a `git` process per question is most of the server's CPU (each costs a few
//! milliseconds to start). Git's default ref storage is plain files: `HEAD`, loose refs under
//! `refs/` (one file each, `<object id>\n` or `ref: <target>\n`) and `packed-refs` (one
//! `<object id> <name>` line per ref, `^<id>` lines after annotated tags). Reading them is
//! what git itself does, in microseconds.
//!
//! Only the files backend is read here. A repository using the reftable backend (or anything
//! unexpected) makes [`FileRefs::open`] answer `None`, and callers fall back to asking git.
//! Reads follow git's order so that a concurrent `git pack-refs` (which writes `packed-refs`
//! before it deletes the loose files) never hides a ref: the loose file first, then
//! `packed-refs`.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::error::GitError;
use crate::names::ObjectId;

/// How many symbolic refs are followed before giving up (git's own limit is 5).
const MAX_SYMREF_DEPTH: usize = 5;

/// The refs of one repository that stores them as files.
pub(crate) struct FileRefs {
    git_dir: PathBuf,
}

/// A ref's content: an object id, or the name of another ref.
#[derive(Debug, PartialEq, Eq)]
enum RefValue {
    Object(ObjectId),
    Symbolic(String),
}

impl FileRefs {
    /// `None` when the repository does not keep its refs as files (reftable), or is not a git
    /// directory: the caller asks git instead.
    pub(crate) fn open(git_dir: &Path) -> Option<FileRefs> {
        if git_dir.join("reftable").exists() || !git_dir.join("HEAD").is_file() {
            return None;
        }
        Some(FileRefs { git_dir: git_dir.to_owned() })
    }

    /// The ref HEAD names (`refs/heads/main`), or `None` when HEAD is detached.
    pub(crate) fn head_target(&self) -> Result<Option<String>, GitError> {
        match self.read_loose("HEAD")? {
            Some(RefValue::Symbolic(target)) => Ok(Some(target)),
            _ => Ok(None),
        }
    }

    /// The object `name` (a full ref name such as `refs/heads/main`, or `HEAD`) points to,
    /// following symbolic refs; `None` when it does not exist.
    pub(crate) fn resolve(&self, name: &str) -> Result<Option<ObjectId>, GitError> {
        let mut packed: Option<BTreeMap<String, ObjectId>> = None;
        let mut current = name.to_owned();
        for _ in 0..MAX_SYMREF_DEPTH {
            match self.read_loose(&current)? {
                Some(RefValue::Object(id)) => return Ok(Some(id)),
                Some(RefValue::Symbolic(target)) => current = target,
                None => {
                    let packed = match &mut packed {
                        Some(packed) => packed,
                        None => packed.insert(self.read_packed()?),
                    };
                    return Ok(packed.get(&current).cloned());
                }
            }
        }
        Ok(None)
    }

    /// Every ref under `prefix` (which starts with `refs/`) and the object it points to, as
    /// `git for-each-ref` lists them: symbolic refs resolved, dangling ones left out.
    pub(crate) fn list(&self, prefix: &str) -> Result<BTreeMap<String, ObjectId>, GitError> {
        let mut refs: BTreeMap<String, ObjectId> =
            self.read_packed()?.into_iter().filter(|(name, _)| name.starts_with(prefix)).collect();
        let mut symbolic = Vec::new();
        let mut loose = Vec::new();
        self.walk_loose("refs", &mut loose)?;
        for name in loose.into_iter().filter(|name| name.starts_with(prefix)) {
            match self.read_loose(&name)? {
                Some(RefValue::Object(id)) => {
                    refs.insert(name, id);
                }
                Some(RefValue::Symbolic(_)) => symbolic.push(name),
                None => {}
            }
        }
        for name in symbolic {
            match self.resolve(&name)? {
                Some(id) => refs.insert(name, id),
                None => refs.remove(&name),
            };
        }
        Ok(refs)
    }

    fn read_loose(&self, name: &str) -> Result<Option<RefValue>, GitError> {
        let path = self.git_dir.join(name);
        let content = match std::fs::read(&path) {
            Ok(content) => content,
            // A directory where a ref would be (`refs/heads/team` holding `team/x`) is no ref.
            Err(error) if matches!(error.kind(), ErrorKind::NotFound | ErrorKind::IsADirectory | ErrorKind::NotADirectory) => {
                return Ok(None);
            }
            Err(source) => return Err(GitError::io("cannot read the ref file", &path, source)),
        };
        let text = String::from_utf8_lossy(&content);
        let text = text.trim_end();
        if let Some(target) = text.strip_prefix("ref:") {
            return Ok(Some(RefValue::Symbolic(target.trim().to_owned())));
        }
        // A file that is not a ref (an editor's leftover, a half-written file) is skipped, as
        // git skips it with a warning.
        Ok(ObjectId::new(text).ok().map(RefValue::Object))
    }

    /// The names of the loose refs below `relative` (a folder inside the git directory).
    fn walk_loose(&self, relative: &str, names: &mut Vec<String>) -> Result<(), GitError> {
        let folder = self.git_dir.join(relative);
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(()),
            Err(source) => return Err(GitError::io("cannot list the refs in", &folder, source)),
        };
        for entry in entries {
            let entry = entry.map_err(|source| GitError::io("cannot list the refs in", &folder, source))?;
            let Ok(file_name) = entry.file_name().into_string() else {
                continue;
            };
            if file_name.ends_with(".lock") || file_name.starts_with('.') {
                continue;
            }
            let name = format!("{relative}/{file_name}");
            let file_type = entry.file_type().map_err(|source| GitError::io("cannot read", entry.path(), source))?;
            if file_type.is_dir() {
                self.walk_loose(&name, names)?;
            } else if file_type.is_file() {
                names.push(name);
            }
        }
        Ok(())
    }

    /// `packed-refs` as name → object (the `^` peeled lines of annotated tags are skipped).
    fn read_packed(&self) -> Result<BTreeMap<String, ObjectId>, GitError> {
        let path = self.git_dir.join("packed-refs");
        let content = match std::fs::read(&path) {
            Ok(content) => content,
            Err(error) if error.kind() == ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(source) => return Err(GitError::io("cannot read", &path, source)),
        };
        let mut refs = BTreeMap::new();
        for line in String::from_utf8_lossy(&content).lines() {
            if line.starts_with('#') || line.starts_with('^') {
                continue;
            }
            let Some((id, name)) = line.split_once(' ') else {
                continue;
            };
            if let Ok(id) = ObjectId::new(id) {
                refs.insert(name.to_owned(), id);
            }
        }
        Ok(refs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const C: &str = "3333333333333333333333333333333333333333";

    fn repository() -> (tempfile::TempDir, FileRefs) {
        let folder = tempfile::tempdir().expect("temporary folder");
        std::fs::write(folder.path().join("HEAD"), "ref: refs/heads/main\n").expect("HEAD");
        std::fs::create_dir_all(folder.path().join("refs/heads/team")).expect("refs");
        std::fs::write(
            folder.path().join("packed-refs"),
            format!("# pack-refs with: peeled fully-peeled sorted \n{A} refs/heads/main\n{B} refs/heads/old\n{C} refs/tags/v1\n^{A}\n"),
        )
        .expect("packed-refs");
        let refs = FileRefs::open(folder.path()).expect("a files-backend repository");
        (folder, refs)
    }

    fn id(hex: &str) -> ObjectId {
        ObjectId::new(hex).expect("object id")
    }

    #[test]
    fn loose_refs_win_over_packed_ones_and_symbolic_refs_are_followed() {
        let (folder, refs) = repository();
        assert_eq!(refs.head_target().expect("HEAD"), Some("refs/heads/main".to_owned()));
        assert_eq!(refs.resolve("refs/heads/main").expect("main"), Some(id(A)));
        std::fs::write(folder.path().join("refs/heads/main"), format!("{C}\n")).expect("loose main");
        assert_eq!(refs.resolve("refs/heads/main").expect("main"), Some(id(C)), "the loose file is newer than packed-refs");
        assert_eq!(refs.resolve("HEAD").expect("HEAD"), Some(id(C)));
        assert_eq!(refs.resolve("refs/heads/missing").expect("missing"), None);
        assert_eq!(refs.resolve("refs/heads/team").expect("a folder"), None);
    }

    #[test]
    fn listing_merges_loose_and_packed_skips_locks_and_resolves_symbolic_refs() {
        let (folder, refs) = repository();
        std::fs::write(folder.path().join("refs/heads/team/x"), format!("{B}\n")).expect("loose");
        std::fs::write(folder.path().join("refs/heads/half.lock"), format!("{C}\n")).expect("lock");
        std::fs::write(folder.path().join("refs/heads/garbage"), "not a ref\n").expect("garbage");
        std::fs::write(folder.path().join("refs/heads/alias"), "ref: refs/heads/old\n").expect("symref");
        std::fs::write(folder.path().join("refs/heads/dangling"), "ref: refs/heads/nowhere\n").expect("dangling");
        let heads = refs.list("refs/heads/").expect("list");
        let expected: BTreeMap<String, ObjectId> = [
            ("refs/heads/alias", B),
            ("refs/heads/main", A),
            ("refs/heads/old", B),
            ("refs/heads/team/x", B),
        ]
        .into_iter()
        .map(|(name, hex)| (name.to_owned(), id(hex)))
        .collect();
        assert_eq!(heads, expected);
        let all = refs.list("refs/").expect("list");
        assert_eq!(all.get("refs/tags/v1"), Some(&id(C)), "the tag itself, not its peeled commit");
        assert_eq!(all.len(), 5);
    }

    #[test]
    fn a_detached_head_names_no_branch_and_reftable_is_left_to_git() {
        let (folder, refs) = repository();
        std::fs::write(folder.path().join("HEAD"), format!("{A}\n")).expect("detached");
        assert_eq!(refs.head_target().expect("HEAD"), None);
        assert_eq!(refs.resolve("HEAD").expect("HEAD"), Some(id(A)));
        std::fs::create_dir(folder.path().join("reftable")).expect("reftable");
        assert!(FileRefs::open(folder.path()).is_none());
        assert!(FileRefs::open(&folder.path().join("refs")).is_none(), "not a git directory");
    }
}
