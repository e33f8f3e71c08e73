//! Executor workspaces over smart HTTP with credentials: incremental cache fetches (timed),
//! sparse checkouts, diffs of a job's changes, cache recovery.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use flotilla_git::{
    ChangedFiles, CommitId, Credentials, GitError, RemoteFailureKind, WorkspaceCache,
};

use crate::fixture::{FixtureRepository, bare_clone, sample_repository};
use crate::http_server::TestGitServer;

const REPOSITORY: &str = "github.com/org/repo";
const TOKEN: &str = "secret-token-123";

struct Setup {
    _temporary: tempfile::TempDir,
    root: std::path::PathBuf,
    server: TestGitServer,
    source: FixtureRepository,
    commits: Vec<CommitId>,
    served: std::path::PathBuf,
}

async fn setup() -> Setup {
    let temporary = tempfile::tempdir().expect("temp dir");
    let root = temporary.path().to_path_buf();
    let (mut source, mut commits) = sample_repository(&root.join("source"));
    // Some bulk so that the difference between a full and an incremental fetch is visible.
    for index in 0..200 {
        source.write(
            &format!("bulk/file{index:03}.txt"),
            format!("line {index}\n").repeat(200),
        );
    }
    commits.push(source.commit("bulk files"));
    source.write("src/lib.rs", "pub fn answer() -> u32 {\n    44\n}\n");
    commits.push(source.commit("small change"));
    let served = root.join("served/repo.git");
    bare_clone(&source.path, &served);
    let server = TestGitServer::start(
        HashMap::from([(REPOSITORY.to_owned(), served.clone())]),
        Some(format!("Bearer {TOKEN}")),
    )
    .await;
    Setup {
        _temporary: temporary,
        root,
        server,
        source,
        commits,
        served,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_prepare_on_the_same_repository_fetches_only_new_objects() {
    let setup = setup().await;
    let cache = WorkspaceCache::new(&setup.root.join("executor"));
    let credentials = Credentials::bearer(TOKEN).expect("valid token");
    let url = setup.server.url(REPOSITORY);
    let bytes_served = || setup.server.stats.upload_pack_bytes.load(Ordering::Relaxed);

    let started = Instant::now();
    let first = cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[2],
            None,
        )
        .await
        .expect("first prepare");
    let first_duration = started.elapsed();
    let first_bytes = bytes_served();
    assert!(first.fetched);
    assert!(first.path.join("bulk/file199.txt").is_file());
    // The new cache never garbage-collects behind the executor's back.
    let gc_auto = std::process::Command::new("git")
        .args(["config", "--file"])
        .arg(setup.root.join(format!("executor/cache/{REPOSITORY}.git/config")))
        .args(["--get", "gc.auto"])
        .output()
        .expect("git config");
    assert_eq!(String::from_utf8_lossy(&gc_auto.stdout).trim(), "0", "{}", String::from_utf8_lossy(&gc_auto.stderr));

    let started = Instant::now();
    let second = cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[3],
            None,
        )
        .await
        .expect("second prepare");
    let second_duration = started.elapsed();
    let second_bytes = bytes_served() - first_bytes;
    assert!(second.fetched);
    assert_eq!(
        std::fs::read_to_string(second.path.join("src/lib.rs")).expect("file"),
        "pub fn answer() -> u32 {\n    44\n}\n"
    );

    let started = Instant::now();
    let third = cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[3],
            None,
        )
        .await
        .expect("third prepare");
    let third_duration = started.elapsed();
    assert!(!third.fetched);
    assert_eq!(
        bytes_served() - first_bytes - second_bytes,
        0,
        "a cached commit needs no network"
    );

    println!(
        "workspace prepare: first (cold cache, {first_bytes} bytes served) {first_duration:?}; \
         second (new commit, {second_bytes} bytes served) {second_duration:?}; \
         third (cached commit, no fetch) {third_duration:?}"
    );
    assert!(
        second_bytes * 4 < first_bytes,
        "second fetch should be incremental: {second_bytes} vs {first_bytes}"
    );

    // Deleting job directories never harms the cache.
    first.remove().await.expect("remove first");
    second.remove().await.expect("remove second");
    let again = cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[2],
            None,
        )
        .await
        .expect("prepare after cleanup");
    assert!(!again.fetched);
    assert!(again.path.join("bulk/file000.txt").is_file());
    assert_eq!(
        flotilla_git::diff_workspace(&again.path)
            .await
            .expect("diff"),
        b"",
        "a fresh checkout has no changes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_credentials_fail_permanently_without_leaking_the_token() {
    let setup = setup().await;
    let cache = WorkspaceCache::new(&setup.root.join("executor"));
    let url = setup.server.url(REPOSITORY);
    let error = cache
        .prepare(REPOSITORY, &url, None, &setup.commits[0], None)
        .await
        .expect_err("no credentials");
    assert!(
        matches!(
            error,
            GitError::Remote {
                kind: RemoteFailureKind::Authentication,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retryable());
    let wrong = Credentials::bearer("wrong-token").expect("valid");
    let error = cache
        .prepare(REPOSITORY, &url, Some(&wrong), &setup.commits[0], None)
        .await
        .expect_err("wrong credentials");
    assert!(!error.to_string().contains("wrong-token"), "{error}");
    assert!(!format!("{error:?}").contains("wrong-token"), "{error:?}");

    let unreachable = "http://127.0.0.1:9/nothing";
    let credentials = Credentials::bearer(TOKEN).expect("valid");
    let error = cache
        .prepare(
            REPOSITORY,
            unreachable,
            Some(&credentials),
            &setup.commits[0],
            None,
        )
        .await
        .expect_err("nothing listens on port 9");
    assert!(error.is_retryable(), "{error}");
    assert!(!error.to_string().contains(TOKEN));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sparse_checkout_and_diff_of_a_jobs_changes() {
    let setup = setup().await;
    let cache = WorkspaceCache::new(&setup.root.join("executor"));
    let credentials = Credentials::bearer(TOKEN).expect("valid token");
    let url = setup.server.url(REPOSITORY);

    let sparse_paths = vec!["src".to_owned(), "dir with space".to_owned()];
    let sparse = cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[3],
            Some(&sparse_paths),
        )
        .await
        .expect("sparse prepare");
    assert!(sparse.path.join("src/lib.rs").is_file());
    assert!(sparse.path.join("dir with space/file name.txt").is_file());
    assert!(!sparse.path.join("README.md").exists());
    assert!(!sparse.path.join("bulk").exists());
    // A file created outside the sparse patterns is still part of the diff.
    std::fs::write(sparse.path.join("src/new.rs"), "// new\n").expect("write");
    std::fs::write(sparse.path.join("TOP-LEVEL.md"), "outside\n").expect("write");
    let diff = flotilla_git::diff_workspace(&sparse.path)
        .await
        .expect("sparse diff");
    let changes = flotilla_git::changed_files(&diff).expect("parses");
    assert_eq!(
        changes.added,
        vec!["TOP-LEVEL.md".to_owned(), "src/new.rs".to_owned()]
    );

    let workspace = cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[3],
            None,
        )
        .await
        .expect("full prepare");
    let path = &workspace.path;
    std::fs::write(path.join("binary.bin"), [0u8, 1, 2, 255, 0, 10]).expect("write binary");
    std::fs::rename(path.join("docs/guide.md"), path.join("docs/manual.md")).expect("rename");
    std::fs::remove_file(path.join("README.md")).expect("delete");
    std::fs::write(
        path.join("dir with space/file name.txt"),
        "changed spaces\n",
    )
    .expect("modify");
    std::fs::create_dir_all(path.join("new dir")).expect("mkdir");
    std::fs::write(path.join("new dir/with space.txt"), "x\n").expect("write");
    std::fs::write(path.join("new dir/été.txt"), "unicode\n").expect("write");
    std::fs::write(path.join("src/main.rs"), "fn main() {}\n").expect("modify");
    let diff = flotilla_git::diff_workspace(path).await.expect("diff");
    let text = String::from_utf8_lossy(&diff);
    assert!(text.contains("GIT binary patch"), "{text}");
    assert!(
        !text.contains("a/src/main.rs"),
        "diff must have no a/ b/ prefixes"
    );
    let owned = |names: &[&str]| {
        names
            .iter()
            .map(|name| (*name).to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        flotilla_git::changed_files(&diff).expect("parses"),
        ChangedFiles {
            modified: owned(&["dir with space/file name.txt", "src/main.rs"]),
            added: owned(&["binary.bin", "new dir/with space.txt", "new dir/été.txt"]),
            deleted: owned(&["README.md"]),
            renamed: owned(&["docs/manual.md"]),
        }
    );

    // The diff applies back onto the base commit in a mirror (what the reconciler does).
    let signature = flotilla_git::Signature {
        name: "Flotilla".to_owned(),
        email: "flotilla@example.com".to_owned(),
        time: flotilla_git::GitTime {
            seconds_since_epoch: 1_700_000_100,
            offset_minutes: 0,
        },
    };
    let commit = flotilla_git::commit_diff(
        &setup.served,
        &setup.commits[3],
        &diff,
        "apply",
        &signature,
        &signature,
    )
    .await
    .expect("diff applies to its base");
    let expected_tree =
        crate::fixture::git(&setup.served, &["rev-parse", &format!("{commit}^{{tree}}")]);
    crate::fixture::git(path, &["commit", "--quiet", "-m", "job"]);
    let workspace_tree = crate::fixture::git(path, &["rev-parse", "HEAD^{tree}"]);
    assert_eq!(
        expected_tree, workspace_tree,
        "the committed tree equals the workspace's"
    );
    let _ = &setup.source;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_cache_is_rebuilt_and_stale_locks_are_removed() {
    let setup = setup().await;
    let executor = setup.root.join("executor");
    let cache = WorkspaceCache::new(&executor);
    let credentials = Credentials::bearer(TOKEN).expect("valid token");
    let url = setup.server.url(REPOSITORY);
    cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[0],
            None,
        )
        .await
        .expect("first prepare");
    let cache_repository = executor.join(format!("cache/{REPOSITORY}.git"));
    // A fetch killed mid-way leaves lock files behind.
    std::fs::write(cache_repository.join("shallow.lock"), "").expect("stale lock");
    let second = cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[1],
            None,
        )
        .await
        .expect("prepare despite a stale lock");
    assert!(second.fetched);
    // A corrupted cache (here: a garbage HEAD) is deleted and fetched again.
    std::fs::write(cache_repository.join("HEAD"), "garbage").expect("corrupt");
    let third = cache
        .prepare(
            REPOSITORY,
            &url,
            Some(&credentials),
            &setup.commits[2],
            None,
        )
        .await
        .expect("prepare rebuilds the cache");
    assert!(third.path.join("bulk/file000.txt").is_file());
    assert!(is_repository(&cache_repository));
}

fn is_repository(path: &Path) -> bool {
    path.join("HEAD").is_file() && path.join("objects").is_dir()
}

#[tokio::test]
async fn invalid_names_never_reach_git() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let cache = WorkspaceCache::new(temporary.path());
    let commit = CommitId::new(&"a".repeat(40)).expect("valid");
    for name in ["../escape", "/absolute", "a/../b", "repo.git", ""] {
        let error = cache
            .prepare(name, "http://127.0.0.1:9/x", None, &commit, None)
            .await
            .expect_err("invalid name");
        assert!(
            matches!(error, GitError::InvalidName { .. }),
            "{name}: {error}"
        );
    }
    let error = cache
        .prepare(
            "ok",
            "http://127.0.0.1:9/x",
            None,
            &commit,
            Some(&["../x".to_owned()]),
        )
        .await
        .expect_err("invalid sparse path");
    assert!(matches!(error, GitError::InvalidName { .. }), "{error}");
}
