//! Mirrors: clone --mirror from a local path, fetch detecting new commits and a new default
//! branch, branch questions.

use flotilla_git::{BranchName, RemoteOptions};

use crate::fixture::{bare_clone, git, sample_repository};

#[tokio::test]
async fn mirror_create_and_fetch_report_changes() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let (mut source, commits) = sample_repository(&temporary.path().join("source"));
    let upstream = temporary.path().join("upstream.git");
    bare_clone(&source.path, &upstream);
    let mirror = temporary.path().join("mirrors/github.com/org/repo.git");

    flotilla_git::create_mirror(
        &upstream.display().to_string(),
        &mirror,
        RemoteOptions::default(),
    )
    .await
    .expect("mirror created");
    let default = flotilla_git::default_branch(&mirror)
        .await
        .expect("read HEAD")
        .expect("has default branch");
    assert_eq!(default.name.as_str(), "main");
    assert_eq!(default.commit, commits[1]);
    let error = flotilla_git::create_mirror(
        &upstream.display().to_string(),
        &mirror,
        RemoteOptions::default(),
    )
    .await
    .expect_err("destination exists");
    assert!(error.to_string().contains("fetch_mirror"), "{error}");

    let unchanged = flotilla_git::fetch_mirror(&mirror, RemoteOptions::default())
        .await
        .expect("fetch");
    assert!(!unchanged.refs_changed(), "{unchanged:?}");

    source.write("new.txt", "new\n");
    let third = source.commit("third");
    source.git(&["push", "--quiet", &upstream.display().to_string(), "main"]);
    source.git(&[
        "push",
        "--quiet",
        &upstream.display().to_string(),
        "main:refs/heads/feature",
    ]);
    let outcome = flotilla_git::fetch_mirror(&mirror, RemoteOptions::default())
        .await
        .expect("fetch");
    let changed: Vec<(&str, bool, bool)> = outcome
        .changed_refs
        .iter()
        .map(|change| {
            (
                change.name.as_str(),
                change.before.is_some(),
                change.after.is_some(),
            )
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            ("refs/heads/feature", false, true),
            ("refs/heads/main", true, true)
        ]
    );
    assert_eq!(
        outcome.changed_refs[1].after.as_ref().map(|id| id.as_str()),
        Some(third.as_str())
    );

    let main = BranchName::new("main").expect("valid");
    assert_eq!(
        flotilla_git::resolve_branch(&mirror, &main)
            .await
            .expect("resolve"),
        Some(third.clone())
    );
    let missing = BranchName::new("does-not-exist").expect("valid");
    assert_eq!(
        flotilla_git::resolve_branch(&mirror, &missing)
            .await
            .expect("resolve"),
        None
    );
    let branches = flotilla_git::list_branches(&mirror).await.expect("list");
    let names: Vec<&str> = branches.iter().map(|branch| branch.name.as_str()).collect();
    assert_eq!(names, vec!["feature", "main"]);

    // Deleting upstream's branch prunes it; repointing upstream's HEAD moves the mirror's.
    git(&upstream, &["symbolic-ref", "HEAD", "refs/heads/feature"]);
    git(&upstream, &["update-ref", "-d", "refs/heads/main"]);
    let outcome = flotilla_git::fetch_mirror(&mirror, RemoteOptions::default())
        .await
        .expect("fetch");
    assert_eq!(outcome.changed_refs.len(), 1);
    assert_eq!(outcome.changed_refs[0].name, "refs/heads/main");
    assert!(outcome.changed_refs[0].after.is_none());
    assert_eq!(
        outcome.new_default_branch.as_ref().map(BranchName::as_str),
        Some("feature")
    );
    let default = flotilla_git::default_branch(&mirror)
        .await
        .expect("read HEAD")
        .expect("has default");
    assert_eq!(default.name.as_str(), "feature");

    // Only the remote's HEAD moves: no ref changed (so no fetch runs), and HEAD still follows.
    git(&upstream, &["update-ref", "refs/heads/main", third.as_str()]);
    let outcome = flotilla_git::fetch_mirror(&mirror, RemoteOptions::default()).await.expect("fetch");
    assert_eq!(outcome.changed_refs.len(), 1, "{outcome:?}");
    assert_eq!(outcome.new_default_branch, None);
    git(&upstream, &["symbolic-ref", "HEAD", "refs/heads/main"]);
    let outcome = flotilla_git::fetch_mirror(&mirror, RemoteOptions::default()).await.expect("fetch");
    assert!(outcome.changed_refs.is_empty(), "{outcome:?}");
    assert!(outcome.refs_changed(), "a new default branch counts as a change");
    assert_eq!(outcome.new_default_branch.as_ref().map(BranchName::as_str), Some("main"));
    let default = flotilla_git::default_branch(&mirror).await.expect("read HEAD").expect("has default");
    assert_eq!((default.name.as_str(), &default.commit), ("main", &third));
}

#[tokio::test]
async fn mirror_of_a_missing_source_fails_without_leaving_a_directory() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let mirror = temporary.path().join("mirror.git");
    let error =
        flotilla_git::create_mirror("/nonexistent/source.git", &mirror, RemoteOptions::default())
            .await
            .expect_err("missing source");
    assert!(!error.is_retryable(), "{error}");
    assert!(!mirror.exists());
    let leftovers = std::fs::read_dir(temporary.path()).expect("list").count();
    assert_eq!(leftovers, 0, "temporary clone directory left behind");
    let error = flotilla_git::create_mirror(
        "--upload-pack=touch /tmp/x",
        &mirror,
        RemoteOptions::default(),
    )
    .await
    .expect_err("option-like source");
    assert!(
        error.to_string().contains("must not start with `-`"),
        "{error}"
    );
}
