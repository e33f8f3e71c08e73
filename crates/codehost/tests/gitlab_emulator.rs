//! The GitLab adapter end to end against the emulator's `/api/v4` routes: real HTTP, real git
//! pushes, injected faults and paginated listings. The emulator shares its state between its
//! GitHub and GitLab faces, so a person's actions on the forge (reviews, CI) are injected the
//! same way as in the GitHub tests.

mod support;


use flotilla_codehost::{
    ChangesetRequest, ChangesetUpdate, CheckState, CodeHost, CodeHostError, ExternalState, GitLab, GitLabConfig, MergeMethod,
    PermanentKind, RepositoryRef, RepositorySelection, ReviewState,
};
use flotilla_codehost_emulator::{CheckRun, DEFAULT_TOKEN, EmulatorHandle, Fault, NewRepository, Review};

fn config(emulator: &EmulatorHandle, token: &str) -> GitLabConfig {
    let mut config = GitLabConfig::new(format!("{}/api/v4", emulator.url()), token);
    config.retry = support::fast_retry();
    config.request_timeout = support::REQUEST_TIMEOUT;
    config
}

async fn emulator_with(repositories: &[(&str, &str)]) -> EmulatorHandle {
    support::emulator_with(repositories).await
}

fn adapter(emulator: &EmulatorHandle) -> GitLab {
    GitLab::new(config(emulator, DEFAULT_TOKEN)).expect("adapter builds")
}

fn authorization() -> String {
    format!("Bearer {DEFAULT_TOKEN}")
}

/// Clones over smart HTTP, commits a file and pushes it as `branch`; returns the commit.
async fn push_branch(emulator: &EmulatorHandle, owner: &str, name: &str, branch: &str) -> String {
    support::push_branch(&emulator.clone_url(owner, name), branch, &authorization()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_request_lives_its_whole_life_through_the_adapter() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let gitlab = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    let hosted = gitlab.get_repository(&repository).await.expect("project");
    assert_eq!((hosted.full_name.as_str(), hosted.default_branch.as_str()), ("acme/widgets", "main"));
    assert_eq!(hosted.clone_url, emulator.clone_url("acme", "widgets"));

    let commit = push_branch(&emulator, "acme", "widgets", "batch/fix-1").await;
    assert_eq!(gitlab.find_changeset_by_head(&repository, "batch/fix-1").await.expect("lookup"), None);

    let request = ChangesetRequest {
        repository: repository.clone(),
        base_ref: "refs/heads/main".into(),
        head_ref: "refs/heads/batch/fix-1".into(),
        title: "Fix widgets".into(),
        body: "Done by a batch change".into(),
        draft: true,
    };
    let opened = gitlab.create_changeset(&request).await.expect("draft opened");
    assert_eq!(opened.state, ExternalState::Draft);
    assert_eq!(opened.title, "Fix widgets", "the draft marker is not part of the title we report");
    assert_eq!(opened.head_sha.as_deref(), Some(commit.as_str()));

    // Crash safety: found by its source branch, and opening it again (a 409) returns the same one.
    let found = gitlab.find_changeset_by_head(&repository, "refs/heads/batch/fix-1").await.expect("lookup").expect("found");
    assert_eq!((found.number, found.state), (opened.number, ExternalState::Draft));
    let again = gitlab.create_changeset(&request).await.expect("second open is the first");
    assert_eq!(again.number, opened.number);
    assert_eq!(emulator.pull_request_count("acme", "widgets"), 1);

    // Renaming a draft keeps it a draft.
    let update = ChangesetUpdate { title: Some("Fix all widgets".into()), body: Some("New body".into()), ..ChangesetUpdate::default() };
    let updated = gitlab.update_changeset(&repository, opened.number, &update).await.expect("updated");
    assert_eq!((updated.title.as_str(), updated.body.as_str(), updated.state), ("Fix all widgets", "New body", ExternalState::Draft));

    let ready = gitlab.mark_ready_for_review(&repository, opened.number).await.expect("undrafted");
    assert_eq!((ready.state, ready.title.as_str()), (ExternalState::Open, "Fix all widgets"));

    let close = ChangesetUpdate { open: Some(false), ..ChangesetUpdate::default() };
    assert_eq!(gitlab.update_changeset(&repository, opened.number, &close).await.expect("closed").state, ExternalState::Closed);
    let reopen = ChangesetUpdate { open: Some(true), ..ChangesetUpdate::default() };
    assert_eq!(gitlab.update_changeset(&repository, opened.number, &reopen).await.expect("reopened").state, ExternalState::Open);

    emulator.add_review("acme", "widgets", opened.number, Review { user: "alice".into(), state: "APPROVED".into() }).expect("review");
    emulator
        .add_check_run("acme", "widgets", &commit, CheckRun { name: "ci".into(), status: "completed".into(), conclusion: Some("success".into()) })
        .expect("check run");
    let loaded = gitlab.load_changeset(&repository, opened.number).await.expect("loaded");
    assert_eq!((loaded.review_state, loaded.check_state), (ReviewState::Approved, CheckState::Passed));

    gitlab.comment(&repository, opened.number, "Merging now").await.expect("commented");
    assert_eq!(emulator.comments("acme", "widgets", opened.number), ["Merging now"]);

    let merged = gitlab.merge_changeset(&repository, opened.number, MergeMethod::Squash).await.expect("merged");
    assert_eq!(merged.state, ExternalState::Merged);
    let error = gitlab.merge_changeset(&repository, opened.number, MergeMethod::Merge).await.expect_err("merging twice fails");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
    assert!(error.to_string().contains("405 Method Not Allowed"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_storms_are_retried_until_they_pass() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let gitlab = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    emulator.inject_faults(Fault::ServerError { status: 502 }, 4);
    gitlab.get_repository(&repository).await.expect("succeeds on the fifth attempt");
    assert_eq!(emulator.stats().faults_served, 4);

    emulator.inject_faults(Fault::ServerError { status: 500 }, 5);
    let error = gitlab.get_repository(&repository).await.expect_err("five failures exhaust the attempts");
    assert!(matches!(error, CodeHostError::Transient { .. }), "{error:?}");
    assert!(error.to_string().contains("gave up after 5 attempts"), "{error}");

    emulator.inject_faults(Fault::TooManyRequests { retry_after_secs: 1 }, 1);
    gitlab.get_repository(&repository).await.expect("succeeds after the 429's wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_fail_at_once_with_the_hosts_message() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let repository = RepositoryRef::new("acme", "widgets");
    let wrong = GitLab::new(config(&emulator, "wrong-token")).expect("adapter builds");
    let error = wrong.get_repository(&repository).await.expect_err("bad credentials");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::BadCredentials));
    assert!(error.to_string().contains("401 Unauthorized"), "{error}");
    assert_eq!(emulator.stats().requests, 1, "not retried");

    let gitlab = adapter(&emulator);
    let request = ChangesetRequest {
        repository: repository.clone(),
        base_ref: "main".into(),
        head_ref: "never-pushed".into(),
        title: "t".into(),
        body: String::new(),
        draft: false,
    };
    let error = gitlab.create_changeset(&request).await.expect_err("source branch missing");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
    assert!(error.to_string().contains("Source branch \"never-pushed\" does not exist"), "{error}");
    assert_eq!(emulator.stats().requests, 2, "not retried");

    let error = gitlab.get_repository(&RepositoryRef::new("acme", "missing")).await.expect_err("404");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
    assert!(error.to_string().contains("404 Project Not Found"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_merge_request_for_a_branch_is_a_conflict() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    push_branch(&emulator, "acme", "widgets", "topic").await;
    // reqwest is built without a default TLS provider; the adapter installs ring, raw clients must too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("{}/api/v4/projects/acme%2Fwidgets/merge_requests", emulator.url());
    let body = serde_json::json!({"title": "t", "source_branch": "topic", "target_branch": "main"});
    let send = || client.post(&url).header("PRIVATE-TOKEN", DEFAULT_TOKEN).json(&body).send();
    assert_eq!(send().await.expect("first").status(), 201);
    let second = send().await.expect("second");
    assert_eq!(second.status(), 409);
    let error: serde_json::Value = second.json().await.expect("json error body");
    assert_eq!(error["message"][0], "Another open merge request already exists for this source branch: !1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_listings_follow_pagination_across_pages() {
    let names: Vec<String> = (0..5).map(|index| format!("repo-{index}")).collect();
    let repositories: Vec<(&str, &str)> = names.iter().map(|name| ("acme", name.as_str())).collect();
    let emulator = emulator_with(&repositories).await;
    emulator.create_repository(NewRepository::new("other", "elsewhere")).await.expect("created");
    let mut config = config(&emulator, DEFAULT_TOKEN);
    config.per_page = 2;
    let gitlab = GitLab::new(config).expect("adapter builds");
    let listed = gitlab.list_repositories(&RepositorySelection::Organization("acme".into())).await.expect("listed");
    let listed: Vec<&str> = listed.iter().map(|repository| repository.full_name.as_str()).collect();
    assert_eq!(listed, ["acme/repo-0", "acme/repo-1", "acme/repo-2", "acme/repo-3", "acme/repo-4"]);
    assert_eq!(emulator.stats().requests, 3, "three pages of two");

    let explicit = RepositorySelection::Explicit(vec![RepositoryRef::new("other", "elsewhere")]);
    let listed = gitlab.list_repositories(&explicit).await.expect("listed");
    assert_eq!(listed.len(), 1);
}
