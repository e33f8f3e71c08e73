//! Commit a diff onto a mirror without a working tree, push it to a code host (a bare
//! repository here), force-push, delete the branch; patches that do not apply.

use flotilla_git::{
    BranchName, GitError, GitTime, PushOptions, RemoteFailureKind, RemoteOptions, Signature,
};

use crate::fixture::{bare_clone, git, sample_repository};

fn signature(name: &str, seconds: i64) -> Signature {
    Signature {
        name: name.to_owned(),
        email: format!("{}@example.com", name.to_lowercase()),
        time: GitTime {
            seconds_since_epoch: seconds,
            offset_minutes: 60,
        },
    }
}

#[tokio::test]
async fn commit_diff_then_push_creates_the_branch_on_the_code_host() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let (source, commits) = sample_repository(&temporary.path().join("source"));
    let code_host = temporary.path().join("code-host/repo.git");
    bare_clone(&source.path, &code_host);
    let mirror = temporary.path().join("mirror.git");
    flotilla_git::create_mirror(
        &code_host.display().to_string(),
        &mirror,
        RemoteOptions::default(),
    )
    .await
    .expect("mirror");

    // The changeset's diff, produced by git in the fixture (binary, rename, delete, spaces).
    source.write("logo.bin", [0u8, 159, 146, 150, 0, 1]);
    source.git(&["mv", "docs/guide.md", "docs/manual.md"]);
    source.remove("README.md");
    source.write("dir with space/file name.txt", "edited\n");
    source.git(&["add", "--all"]);
    let diff = source.git(&["diff", "--cached", "--no-prefix", "--binary", "HEAD"]);
    let diff = diff.trim_end_matches('\n').as_bytes().to_vec(); // also exercises the missing final newline
    let refs_before = git(&mirror, &["for-each-ref"]);

    let author = signature("Author", 1_700_000_500);
    let committer = signature("Committer", 1_700_000_600);
    let commit = flotilla_git::commit_diff(
        &mirror,
        &commits[1],
        &diff,
        "Update things\n\nBody.\n",
        &author,
        &committer,
    )
    .await
    .expect("commit");
    let again = flotilla_git::commit_diff(
        &mirror,
        &commits[1],
        &diff,
        "Update things\n\nBody.\n",
        &author,
        &committer,
    )
    .await
    .expect("commit again");
    assert_eq!(commit, again, "same inputs give the same commit id");
    assert_eq!(
        git(&mirror, &["for-each-ref"]),
        refs_before,
        "commit_diff must not move refs"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&mirror)
        .expect("list mirror")
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("flotilla-index")
        })
        .collect();
    assert!(leftovers.is_empty(), "temporary index left behind");

    let branch = BranchName::new("batch-changes/update-things").expect("valid");
    let remote = code_host.display().to_string();
    flotilla_git::push(&mirror, &remote, &commit, &branch, PushOptions::default())
        .await
        .expect("push");
    assert_eq!(
        git(&code_host, &["rev-parse", &branch.full_ref()]).trim(),
        commit.as_str()
    );
    assert_eq!(
        git(
            &code_host,
            &["show", &format!("{commit}:dir with space/file name.txt")]
        ),
        "edited\n"
    );
    assert_eq!(
        git(&code_host, &["rev-parse", &format!("{commit}^")]).trim(),
        commits[1].as_str()
    );
    assert_eq!(
        git(
            &code_host,
            &[
                "log",
                "-1",
                "--format=%an <%ae> %ad|%cn %cd|%B",
                "--date=raw",
                commit.as_str()
            ]
        )
        .trim_end(),
        "Author <author@example.com> 1700000500 +0100|Committer 1700000600 +0100|Update things\n\nBody."
    );
    // The commit object the server wrote itself passes git's strictest check on both sides.
    git(&code_host, &["fsck", "--strict", "--no-dangling"]);
    git(&mirror, &["fsck", "--strict", "--no-dangling"]);
    let names = git(
        &code_host,
        &["ls-tree", "-r", "--name-only", commit.as_str()],
    );
    assert!(
        names.contains("docs/manual.md")
            && !names.contains("README.md")
            && names.contains("logo.bin"),
        "{names}"
    );
    assert_eq!(
        std::fs::read(temporary.path().join("source/logo.bin")).expect("read"),
        std::process::Command::new("git")
            .args([
                "--git-dir",
                &code_host.display().to_string(),
                "cat-file",
                "blob",
                &format!("{commit}:logo.bin")
            ])
            .output()
            .expect("cat-file")
            .stdout
    );

    // A different commit on the same branch needs force (Sourcegraph always force-pushes).
    let other = flotilla_git::commit_diff(&mirror, &commits[0], b"", "empty", &author, &committer)
        .await
        .expect("empty diff commit");
    let error = flotilla_git::push(&mirror, &remote, &other, &branch, PushOptions::default())
        .await
        .expect_err("non-fast-forward");
    assert!(
        matches!(
            error,
            GitError::Remote {
                kind: RemoteFailureKind::Rejected,
                ..
            }
        ),
        "{error}"
    );
    assert!(!error.is_retryable());
    let force = PushOptions {
        force: true,
        ..PushOptions::default()
    };
    flotilla_git::push(&mirror, &remote, &other, &branch, force)
        .await
        .expect("force push");
    assert_eq!(
        git(&code_host, &["rev-parse", &branch.full_ref()]).trim(),
        other.as_str()
    );

    flotilla_git::delete_remote_branch(&mirror, &remote, &branch, PushOptions::default())
        .await
        .expect("delete");
    assert!(!git(&code_host, &["branch", "--list"]).contains("batch-changes"));
    flotilla_git::delete_remote_branch(&mirror, &remote, &branch, PushOptions::default())
        .await
        .expect("deleting a missing branch succeeds");
}

#[tokio::test]
async fn a_patch_that_does_not_apply_is_a_permanent_distinct_error() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let (source, commits) = sample_repository(&temporary.path().join("source"));
    let mirror = temporary.path().join("mirror.git");
    bare_clone(&source.path, &mirror);
    let author = signature("Author", 1_700_000_500);
    let cases: [&[u8]; 3] = [
        b"diff --git src/lib.rs src/lib.rs\nindex 1..2 100644\n--- src/lib.rs\n+++ src/lib.rs\n@@ -1,3 +1,3 @@\n pub fn answer() -> u32 {\n-    41\n+    40\n }\n",
        b"diff --git missing.txt missing.txt\nindex 1..2 100644\n--- missing.txt\n+++ missing.txt\n@@ -1 +1 @@\n-a\n+b\n",
        b"diff --git README.md README.md\nnew file mode 100644\n--- /dev/null\n+++ README.md\n@@ -0,0 +1 @@\n+exists already\n",
    ];
    for diff in cases {
        let error = flotilla_git::commit_diff(&mirror, &commits[1], diff, "x", &author, &author)
            .await
            .expect_err("does not apply");
        assert!(error.is_patch_does_not_apply(), "{error}");
        assert!(!error.is_retryable());
        assert!(
            error.to_string().contains("patch does not apply"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn pushing_to_an_unreachable_remote_is_retryable_and_option_like_remotes_are_refused() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let (source, commits) = sample_repository(&temporary.path().join("source"));
    let mirror = temporary.path().join("mirror.git");
    bare_clone(&source.path, &mirror);
    let branch = BranchName::new("x").expect("valid");
    let credentials =
        flotilla_git::Credentials::basic("x-access-token", "ghp_supersecret").expect("valid");
    let options = PushOptions {
        credentials: Some(&credentials),
        ..PushOptions::default()
    };
    let error = flotilla_git::push(
        &mirror,
        "http://127.0.0.1:9/repo.git",
        &commits[1],
        &branch,
        options,
    )
    .await
    .expect_err("nothing listens on port 9");
    assert!(error.is_retryable(), "{error}");
    assert!(!format!("{error} {error:?}").contains("supersecret"));
    let error = flotilla_git::push(
        &mirror,
        "--receive-pack=evil",
        &commits[1],
        &branch,
        PushOptions::default(),
    )
    .await
    .expect_err("option-like remote");
    assert!(matches!(error, GitError::InvalidName { .. }), "{error}");
    let error = flotilla_git::push(
        &mirror,
        "https://user:hunter2@example.invalid/r",
        &commits[1],
        &branch,
        PushOptions::default(),
    )
    .await
    .expect_err("credentials in URL");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

/// Diffs a compromised executor could send, each trying to write outside the repository
/// when the server turns them into a commit. `commit_diff` applies to a temporary index only
/// (`git apply --cached`), and git refuses these paths; nothing may appear on disk.
const HOSTILE_DIFFS: &[(&str, &str)] = &[
    ("dot-dot path", "diff --git ../../escape.txt ../../escape.txt\nnew file mode 100644\n--- /dev/null\n+++ ../../escape.txt\n@@ -0,0 +1 @@\n+pwned\n"),
    ("absolute path", "diff --git /tmp/flotilla-hostile-escape.txt /tmp/flotilla-hostile-escape.txt\nnew file mode 100644\n--- /dev/null\n+++ /tmp/flotilla-hostile-escape.txt\n@@ -0,0 +1 @@\n+pwned\n"),
    ("into .git", "diff --git .git/config .git/config\nnew file mode 100644\n--- /dev/null\n+++ .git/config\n@@ -0,0 +1,2 @@\n+[core]\n+\tfsmonitor = touch pwned\n"),
    ("through a new symlink", "diff --git up up\nnew file mode 120000\n--- /dev/null\n+++ up\n@@ -0,0 +1 @@\n+../../..\n\\ No newline at end of file\ndiff --git up/escape.txt up/escape.txt\nnew file mode 100644\n--- /dev/null\n+++ up/escape.txt\n@@ -0,0 +1 @@\n+pwned\n"),
];

#[tokio::test]
async fn hostile_diffs_never_write_outside_the_repository() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let (source, commits) = sample_repository(&temporary.path().join("a/b/source"));
    let code_host = temporary.path().join("a/b/code-host/repo.git");
    bare_clone(&source.path, &code_host);
    let mirror = temporary.path().join("a/b/mirror.git");
    flotilla_git::create_mirror(&code_host.display().to_string(), &mirror, RemoteOptions::default()).await.expect("mirror");
    let author = signature("Author", 1_700_000_500);
    for (attack, diff) in HOSTILE_DIFFS {
        let outcome = flotilla_git::commit_diff(&mirror, &commits[1], diff.as_bytes(), "m", &author, &author).await;
        match outcome {
            Err(GitError::PatchDoesNotApply { stderr_tail, .. }) => {
                assert!(!stderr_tail.is_empty(), "{attack}: git says why");
            }
            Err(other) => panic!("{attack}: expected a patch that does not apply, got {other}"),
            Ok(commit) => panic!("{attack}: git made commit {commit} of it"),
        }
    }
    for escaped in [temporary.path().join("escape.txt"), temporary.path().join("a/escape.txt"), std::path::PathBuf::from("/tmp/flotilla-hostile-escape.txt"), mirror.join("pwned")] {
        assert!(!escaped.exists(), "{} was written", escaped.display());
    }
    let config = std::fs::read_to_string(mirror.join("config")).expect("mirror config");
    assert!(!config.contains("pwned"), "{config}");
}
