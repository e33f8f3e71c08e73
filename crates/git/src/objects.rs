//! Writing a git object into a repository without starting git.
//!
//! Turning a changeset's diff into a commit ends with `git commit-tree`, a process whose whole
//! job is to hash a few hundred bytes and write them compressed into `objects/`. The reconciler
//! does that once per changeset, tens of thousands of times for a large batch change, so the
//! commit object is written here instead: the same bytes `commit-tree` writes (`<kind>
//! <size>\0<content>`, SHA-1 named, zlib compressed), giving the same object id.
//!
//! Only SHA-1 repositories are written to; [`object_format`] tells callers when to let git do
//! it (a SHA-256 repository).

use std::io::Write;
use std::path::Path;

use sha1::{Digest, Sha1};

use crate::error::GitError;
use crate::names::ObjectId;
use crate::unique_suffix;

/// The repository's object format as its config states it (`extensions.objectFormat`):
/// `"sha1"` unless it says SHA-256.
pub(crate) fn object_format(git_dir: &Path) -> &'static str {
    let config = std::fs::read_to_string(git_dir.join("config")).unwrap_or_default();
    let sha256 = config.lines().any(|line| {
        let line = line.trim().to_ascii_lowercase();
        line.starts_with("objectformat") && line.contains("sha256")
    });
    if sha256 { "sha256" } else { "sha1" }
}

/// Writes one object (`kind` is `blob`, `tree`, `commit` or `tag`) as a loose object of the
/// SHA-1 repository `git_dir` and returns its id. Writing an object that exists already is a
/// no-op, as in git.
pub(crate) fn write_loose_object(git_dir: &Path, kind: &str, content: &[u8]) -> Result<ObjectId, GitError> {
    let header = format!("{kind} {}\0", content.len());
    let mut hasher = Sha1::new();
    hasher.update(header.as_bytes());
    hasher.update(content);
    let hex: String = hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect();
    let id = ObjectId::new(&hex)?;
    let folder = git_dir.join("objects").join(&hex[..2]);
    let path = folder.join(&hex[2..]);
    if path.exists() {
        return Ok(id);
    }
    std::fs::create_dir_all(&folder).map_err(|source| GitError::io("cannot create the object folder", &folder, source))?;
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::with_capacity(content.len() / 2 + 64), flate2::Compression::default());
    let compressed = encoder
        .write_all(header.as_bytes())
        .and_then(|()| encoder.write_all(content))
        .and_then(|()| encoder.finish())
        .map_err(|source| GitError::io("cannot compress the object for", &path, source))?;
    // Written beside its final name and renamed into place, so a reader never sees half an
    // object (git does the same with its `tmp_obj_` files).
    let temporary = folder.join(format!("tmp_obj_flotilla_{}", unique_suffix()));
    let written = std::fs::write(&temporary, &compressed).and_then(|()| std::fs::rename(&temporary, &path));
    if let Err(source) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(GitError::io("cannot write the object", &path, source));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_get_git_s_ids_and_are_written_once() {
        let folder = tempfile::tempdir().expect("temporary folder");
        // `printf 'hello\n' | git hash-object --stdin`
        let id = write_loose_object(folder.path(), "blob", b"hello\n").expect("written");
        assert_eq!(id.as_str(), "ce013625030ba8dba906f756967f9e9ca394464a");
        let path = folder.path().join("objects/ce/013625030ba8dba906f756967f9e9ca394464a");
        let compressed = std::fs::read(&path).expect("the loose object");
        let mut decoded = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&compressed[..]), &mut decoded).expect("zlib");
        assert_eq!(decoded, b"blob 6\0hello\n");
        let again = write_loose_object(folder.path(), "blob", b"hello\n").expect("written again");
        assert_eq!(again, id);
        let leftovers: Vec<_> = std::fs::read_dir(folder.path().join("objects/ce")).expect("folder").collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
    }

    #[test]
    fn the_object_format_comes_from_the_repository_config() {
        let folder = tempfile::tempdir().expect("temporary folder");
        assert_eq!(object_format(folder.path()), "sha1", "no config: git's default");
        std::fs::write(folder.path().join("config"), "[core]\n\tbare = true\n[extensions]\n\tobjectFormat = sha256\n").expect("config");
        assert_eq!(object_format(folder.path()), "sha256");
    }
}
