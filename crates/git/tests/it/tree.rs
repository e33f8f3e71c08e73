//! Tree listing, the batch blob reader and file_exists on a bare repository.

use flotilla_git::{BlobReader, RepoPath};

use crate::fixture::{FixtureRepository, bare_clone};

#[tokio::test]
async fn lists_files_and_reads_blobs_through_one_process() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let mut source = FixtureRepository::init(&temporary.path().join("source"));
    source
        .write("README.md", "hello\n")
        .write("dir with space/ünï.txt", "unicode\n")
        .write("bin/run.sh", "#!/bin/sh\n")
        .write(".batchignore", "");
    std::os::unix::fs::symlink("README.md", source.path.join("link")).expect("symlink");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        source.path.join("bin/run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    let commit = source.commit("files");
    let repository = temporary.path().join("repo.git");
    bare_clone(&source.path, &repository);

    let entries = flotilla_git::list_files(&repository, &commit)
        .await
        .expect("ls-tree");
    let summary: Vec<(&str, Option<u64>, u32)> = entries
        .iter()
        .map(|entry| (entry.path.as_str(), entry.size, entry.mode))
        .collect();
    assert_eq!(
        summary,
        vec![
            (".batchignore", Some(0), 0o100644),
            ("README.md", Some(6), 0o100644),
            ("bin/run.sh", Some(10), 0o100755),
            ("dir with space/ünï.txt", Some(8), 0o100644),
            ("link", Some(9), 0o120000),
        ]
    );
    assert!(entries[4].is_symlink());

    let reader = BlobReader::new(&repository);
    for _ in 0..3 {
        for entry in &entries {
            let contents = reader
                .read_blob(&entry.blob_id)
                .await
                .expect("read")
                .expect("blob exists");
            assert_eq!(contents.len() as u64, entry.size.expect("blob size"));
        }
    }
    let readme = reader
        .read_blob(&entries[1].blob_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(readme, b"hello\n");
    let missing = flotilla_git::ObjectId::new(&"0".repeat(40)).expect("valid id");
    assert_eq!(reader.read_blob(&missing).await.expect("read"), None);
    // Still usable after a miss.
    assert_eq!(
        reader
            .read_blob(&entries[1].blob_id)
            .await
            .expect("read")
            .as_deref(),
        Some(&b"hello\n"[..])
    );

    let batchignore = RepoPath::new(".batchignore").expect("valid");
    assert!(
        flotilla_git::file_exists(&repository, &commit, &batchignore)
            .await
            .expect("ls-tree")
    );
    let nested = RepoPath::new("dir with space/ünï.txt").expect("valid");
    assert!(
        flotilla_git::file_exists(&repository, &commit, &nested)
            .await
            .expect("ls-tree")
    );
    let absent = RepoPath::new("docs/.batchignore").expect("valid");
    assert!(
        !flotilla_git::file_exists(&repository, &commit, &absent)
            .await
            .expect("ls-tree")
    );
    let glob_like = RepoPath::new("*.md").expect("valid");
    assert!(
        !flotilla_git::file_exists(&repository, &commit, &glob_like)
            .await
            .expect("ls-tree")
    );
}
