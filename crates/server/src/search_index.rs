//! What makes `repositoriesMatchingQuery` fast over tens of thousands of mirrors: an index of
//! each mirror's default-branch files, written when the mirror syncs, and a cache of file
//! contents by blob id.
//!
//! Without it, a file or content query lists every repository's tree with one `git ls-tree`
//! process per repository (22 s for 10,000 on 2 cores) before a single file is read. The
//! listing of a commit never changes, so it is written once, next to the mirror
//! (`<mirror>/flotilla-index/<commit>`), when the syncer has fetched that commit, and read back
//! by resolution in microseconds; resolution writes it too for a commit it meets first. Blob
//! contents are addressed by their id, so a blob read from one mirror answers for every
//! repository that holds the same file (vendored files, templates, generated repositories),
//! and entries never go stale. Both caches are bounded.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use flotilla_git::{ObjectId, TreeEntry};

/// The folder inside a mirror that holds its file listings, one file per commit.
const INDEX_DIRECTORY: &str = "flotilla-index";

/// Largest blob kept in the content cache.
const MAX_CACHED_BLOB: usize = 1 << 20;
/// Total bytes of blob contents kept.
const BLOB_CACHE_BYTES: usize = 256 << 20;

fn index_path(mirror: &Path, commit: &str) -> PathBuf {
    mirror.join(INDEX_DIRECTORY).join(commit)
}

/// One record per file: `MODE SIZE BLOB\tPATH\0` (octal mode, `-` for no size), the layout of
/// `git ls-tree -l -z`.
pub fn encode_listing(files: &[TreeEntry]) -> Vec<u8> {
    let mut encoded = Vec::with_capacity(files.len() * 80);
    for file in files {
        let size = file.size.map_or_else(|| "-".to_owned(), |size| size.to_string());
        encoded.extend_from_slice(format!("{:o} {size} {}\t", file.mode, file.blob_id).as_bytes());
        encoded.extend_from_slice(file.path.as_bytes());
        encoded.push(0);
    }
    encoded
}

/// Reads what [`encode_listing`] wrote; `None` for anything malformed (the caller lists the
/// tree again and rewrites it).
pub fn decode_listing(bytes: &[u8]) -> Option<Vec<TreeEntry>> {
    let mut files = Vec::new();
    for record in bytes.split(|byte| *byte == 0).filter(|record| !record.is_empty()) {
        let record = std::str::from_utf8(record).ok()?;
        let (header, path) = record.split_once('\t')?;
        let mut fields = header.split(' ');
        let mode = u32::from_str_radix(fields.next()?, 8).ok()?;
        let size = match fields.next()? {
            "-" => None,
            size => Some(size.parse().ok()?),
        };
        let blob_id = ObjectId::new(fields.next()?).ok()?;
        if fields.next().is_some() || path.is_empty() {
            return None;
        }
        files.push(TreeEntry { path: path.to_owned(), blob_id, size, mode });
    }
    Some(files)
}

/// The listing of `commit` written next to the mirror, if there is a readable one.
pub async fn read_listing(mirror: &Path, commit: &str) -> Option<Vec<TreeEntry>> {
    let bytes = tokio::fs::read(index_path(mirror, commit)).await.ok()?;
    decode_listing(&bytes)
}

/// Writes the listing of `commit` next to the mirror (atomically, by rename), replacing the
/// listings of older commits. Failures only cost speed, so they are logged, not returned.
pub async fn write_listing(mirror: &Path, commit: &str, files: &[TreeEntry]) {
    let directory = mirror.join(INDEX_DIRECTORY);
    let written = async {
        tokio::fs::create_dir_all(&directory).await?;
        // Random, not the process id alone: servers on two machines share the data folder.
        let suffix = hex::encode(crate::secrets_crypto::random_bytes::<6>());
        let temporary = directory.join(format!(".{commit}.tmp-{}-{suffix}", std::process::id()));
        tokio::fs::write(&temporary, encode_listing(files)).await?;
        tokio::fs::rename(&temporary, directory.join(commit)).await?;
        let mut entries = tokio::fs::read_dir(&directory).await?;
        while let Some(entry) = entries.next_entry().await? {
            if entry.file_name().to_string_lossy() != commit {
                let _ = tokio::fs::remove_file(entry.path()).await;
            }
        }
        Ok::<_, std::io::Error>(())
    }
    .await;
    if let Err(error) = written {
        tracing::warn!(%error, mirror = %mirror.display(), "writing the mirror's file index failed; resolution will list its tree again");
    }
}

/// Blob contents by id, bounded by total size (cleared when full: simple, and a search that
/// needs them again refills it).
#[derive(Default)]
pub struct BlobCache {
    inner: Mutex<BlobCacheInner>,
}

#[derive(Default)]
struct BlobCacheInner {
    blobs: HashMap<ObjectId, Arc<Vec<u8>>>,
    bytes: usize,
}

impl BlobCache {
    pub fn get(&self, id: &ObjectId) -> Option<Arc<Vec<u8>>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).blobs.get(id).cloned()
    }

    /// Keeps `content` (unless it is too big to be worth it) and returns it shared.
    pub fn insert(&self, id: ObjectId, content: Vec<u8>) -> Arc<Vec<u8>> {
        let content = Arc::new(content);
        if content.len() > MAX_CACHED_BLOB {
            return content;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.bytes + content.len() > BLOB_CACHE_BYTES {
            inner.blobs.clear();
            inner.bytes = 0;
        }
        inner.bytes += content.len();
        inner.blobs.insert(id, content.clone());
        content
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, size: Option<u64>, mode: u32) -> TreeEntry {
        TreeEntry { path: path.into(), blob_id: ObjectId::new(&"ab".repeat(20)).expect("id"), size, mode }
    }

    #[test]
    fn listings_round_trip_through_their_file_format() {
        let files = vec![entry("README.md", Some(12), 0o100644), entry("dir with space/tab\tname", Some(0), 0o100755), entry("vendor/lib", None, 0o160000)];
        assert_eq!(decode_listing(&encode_listing(&files)), Some(files));
        assert_eq!(decode_listing(b""), Some(Vec::new()), "an empty tree");
        for broken in [&b"100644 12\tREADME.md\0"[..], b"100644 12 notanid\tREADME.md\0", b"9 12 abab\tx\0", b"100644 x abababababababababababababababababababab\tx\0"] {
            assert_eq!(decode_listing(broken), None, "{}", String::from_utf8_lossy(broken));
        }
    }

    #[tokio::test]
    async fn a_listing_written_for_a_commit_is_read_back_and_older_ones_go() {
        let mirror = tempfile::tempdir().expect("temp dir");
        let files = vec![entry("go.mod", Some(30), 0o100644)];
        let (old, new) = ("1".repeat(40), "2".repeat(40));
        write_listing(mirror.path(), &old, &files).await;
        assert_eq!(read_listing(mirror.path(), &old).await, Some(files.clone()));
        write_listing(mirror.path(), &new, &files).await;
        assert_eq!(read_listing(mirror.path(), &new).await, Some(files));
        assert_eq!(read_listing(mirror.path(), &old).await, None, "only the current commit's listing is kept");
    }

    #[test]
    fn blobs_are_shared_by_id_and_the_cache_stays_bounded() {
        let cache = BlobCache::default();
        let id = ObjectId::new(&"cd".repeat(20)).expect("id");
        assert!(cache.get(&id).is_none());
        cache.insert(id.clone(), b"module example.com/service\n".to_vec());
        assert_eq!(cache.get(&id).as_deref().map(Vec::as_slice), Some(&b"module example.com/service\n"[..]));
        let big = ObjectId::new(&"ef".repeat(20)).expect("id");
        let returned = cache.insert(big.clone(), vec![0; MAX_CACHED_BLOB + 1]);
        assert_eq!(returned.len(), MAX_CACHED_BLOB + 1, "a big blob is still returned");
        assert!(cache.get(&big).is_none(), "but not kept");
    }
}
