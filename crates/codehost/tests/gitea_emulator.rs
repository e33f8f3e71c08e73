//! The Gitea adapter end to end against the emulator's `/api/v1` routes: real HTTP, real git
//! pushes, injected faults and paginated listings. The emulator shares its state between its
//! GitHub, GitLab and Gitea faces, so a person's actions on the forge (merges, reviews, CI) are
//! injected the same way as in the other adapters' tests.

mod support;

use std::time::Duration;

use flotilla_codehost::{
    ChangesetRequest, ChangesetUpdate, CheckState, CodeHost, CodeHostError, ExternalState, Gitea, GiteaConfig, MergeMethod,
    PermanentKind, RepositoryRef, RepositorySelection, ReviewState,
};
use flotilla_codehost_emulator::{CheckRun, DEFAULT_TOKEN, EmulatorHandle, Fault, NewRepository, Review};

fn config(emulator: &EmulatorHandle, token: &str) -> GiteaConfig {
    let mut config = GiteaConfig::new(format!("{}/api/v1", emulator.url()), token);
    config.retry = support::fast_retry();
    config.request_timeout = support::REQUEST_TIMEOUT;
    config
}

async fn emulator_with(repositories: &[(&str, &str)]) -> EmulatorHandle {
    support::emulator_with(repositories).await
}

fn adapter(emulator: &EmulatorHandle) -> Gitea {
    Gitea::new(config(emulator, DEFAULT_TOKEN)).expect("adapter builds")
}

fn authorization() -> String {
    format!("token {DEFAULT_TOKEN}")
}

/// Clones over smart HTTP (from the clone URL the API reports), commits a file and pushes it as
/// `branch`; returns the commit.
async fn push_branch(clone_url: &str, branch: &str) -> String {
    support::push_branch(clone_url, branch, &authorization()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_lives_its_whole_life_through_the_adapter() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let gitea = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    let hosted = gitea.get_repository(&repository).await.expect("repository");
    assert_eq!((hosted.full_name.as_str(), hosted.default_branch.as_str(), hosted.private), ("acme/widgets", "main", false));
    assert_eq!(hosted.clone_url, emulator.clone_url("acme", "widgets"));

    let commit = push_branch(&hosted.clone_url, "batch/fix-1").await;
    assert_eq!(gitea.find_changeset_by_head(&repository, "batch/fix-1").await.expect("lookup"), None);

    let request = ChangesetRequest {
        repository: repository.clone(),
        base_ref: "refs/heads/main".into(),
        head_ref: "refs/heads/batch/fix-1".into(),
        title: "Fix widgets".into(),
        body: "Done by a batch change".into(),
        draft: true,
    };
    let opened = gitea.create_changeset(&request).await.expect("draft opened");
    assert_eq!(opened.state, ExternalState::Draft);
    assert_eq!(opened.title, "Fix widgets", "the WIP marker is not part of the title we report");
    assert_eq!((opened.head_ref.as_str(), opened.base_ref.as_str()), ("batch/fix-1", "main"));
    assert_eq!(opened.head_sha.as_deref(), Some(commit.as_str()));

    // Crash safety: found by its head branch, and opening it again (a 409) returns the same one.
    let found = gitea.find_changeset_by_head(&repository, "refs/heads/batch/fix-1").await.expect("lookup").expect("found");
    assert_eq!((found.number, found.state), (opened.number, ExternalState::Draft));
    let again = gitea.create_changeset(&request).await.expect("second open is the first");
    assert_eq!(again.number, opened.number);
    assert_eq!(emulator.pull_request_count("acme", "widgets"), 1);

    // Renaming a draft keeps it a draft.
    let update = ChangesetUpdate { title: Some("Fix all widgets".into()), body: Some("New body".into()), ..ChangesetUpdate::default() };
    let updated = gitea.update_changeset(&repository, opened.number, &update).await.expect("updated");
    assert_eq!((updated.title.as_str(), updated.body.as_str(), updated.state), ("Fix all widgets", "New body", ExternalState::Draft));

    let ready = gitea.mark_ready_for_review(&repository, opened.number).await.expect("undrafted");
    assert_eq!((ready.state, ready.title.as_str()), (ExternalState::Open, "Fix all widgets"));

    let close = ChangesetUpdate { open: Some(false), ..ChangesetUpdate::default() };
    assert_eq!(gitea.update_changeset(&repository, opened.number, &close).await.expect("closed").state, ExternalState::Closed);
    let reopen = ChangesetUpdate { open: Some(true), ..ChangesetUpdate::default() };
    assert_eq!(gitea.update_changeset(&repository, opened.number, &reopen).await.expect("reopened").state, ExternalState::Open);

    // Reviews and checks done on the forge.
    let loaded = gitea.load_changeset(&repository, opened.number).await.expect("loaded");
    assert_eq!((loaded.review_state, loaded.check_state), (ReviewState::Pending, CheckState::Unknown));
    emulator.add_review("acme", "widgets", opened.number, Review { user: "bob".into(), state: "CHANGES_REQUESTED".into() }).expect("review");
    emulator.add_check_run("acme", "widgets", &commit, CheckRun { name: "ci".into(), status: "in_progress".into(), conclusion: None }).expect("check run");
    let loaded = gitea.load_changeset(&repository, opened.number).await.expect("loaded");
    assert_eq!((loaded.review_state, loaded.check_state), (ReviewState::ChangesRequested, CheckState::Pending));
    emulator.add_review("acme", "widgets", opened.number, Review { user: "bob".into(), state: "DISMISSED".into() }).expect("dismissal");
    emulator.add_review("acme", "widgets", opened.number, Review { user: "alice".into(), state: "APPROVED".into() }).expect("review");
    emulator
        .add_check_run("acme", "widgets", &commit, CheckRun { name: "ci".into(), status: "completed".into(), conclusion: Some("success".into()) })
        .expect("check run");
    let loaded = gitea.load_changeset(&repository, opened.number).await.expect("loaded");
    assert_eq!((loaded.review_state, loaded.check_state), (ReviewState::Approved, CheckState::Passed));

    gitea.comment(&repository, opened.number, "Merging now").await.expect("commented");
    assert_eq!(emulator.comments("acme", "widgets", opened.number), ["Merging now"]);

    let merged = gitea.merge_changeset(&repository, opened.number, MergeMethod::Squash).await.expect("merged");
    assert_eq!(merged.state, ExternalState::Merged);
    let error = gitea.merge_changeset(&repository, opened.number, MergeMethod::Merge).await.expect_err("merging twice fails");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
    assert!(error.to_string().contains("405 Method Not Allowed"), "{error}");
    let error = gitea.update_changeset(&repository, opened.number, &close).await.expect_err("a merged pull request stays merged");
    assert!(error.to_string().contains("it was already merged"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_work_in_progress_cannot_be_merged() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let gitea = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    push_branch(&emulator.clone_url("acme", "widgets"), "topic").await;
    let request =
        ChangesetRequest { repository: repository.clone(), base_ref: "main".into(), head_ref: "topic".into(), title: "[WIP] Topic".into(), body: String::new(), draft: true };
    let opened = gitea.create_changeset(&request).await.expect("opened");
    assert_eq!((opened.state, opened.title.as_str()), (ExternalState::Draft, "Topic"), "one marker, and none reported");
    let error = gitea.merge_changeset(&repository, opened.number, MergeMethod::Merge).await.expect_err("a draft is not merged");
    assert!(error.to_string().contains("Work in progress PRs cannot be merged"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_storms_are_retried_until_they_pass() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let gitea = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    emulator.inject_faults(Fault::ServerError { status: 502 }, 4);
    gitea.get_repository(&repository).await.expect("succeeds on the fifth attempt");
    assert_eq!(emulator.stats().faults_served, 4);

    emulator.inject_faults(Fault::ServerError { status: 500 }, 5);
    let error = gitea.get_repository(&repository).await.expect_err("five failures exhaust the attempts");
    assert!(matches!(error, CodeHostError::Transient { .. }), "{error:?}");
    assert!(error.to_string().contains("gave up after 5 attempts"), "{error}");

    emulator.inject_faults(Fault::TooManyRequests { retry_after_secs: 1 }, 1);
    let started = std::time::Instant::now();
    gitea.get_repository(&repository).await.expect("succeeds after the 429's wait");
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After was honoured: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_fail_at_once_with_the_hosts_message() {
    let mut archived = NewRepository::new("acme", "attic");
    archived.archived = true;
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    emulator.create_repository(archived).await.expect("archived repository");
    let repository = RepositoryRef::new("acme", "widgets");
    let wrong = Gitea::new(config(&emulator, "wrong-token")).expect("adapter builds");
    let error = wrong.get_repository(&repository).await.expect_err("bad credentials");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::BadCredentials));
    assert!(error.to_string().contains("401 Unauthorized: invalid username, password or token"), "{error}");
    assert_eq!(emulator.stats().requests, 1, "not retried");

    let gitea = adapter(&emulator);
    let request =
        ChangesetRequest { repository: repository.clone(), base_ref: "main".into(), head_ref: "never-pushed".into(), title: "t".into(), body: String::new(), draft: false };
    let error = gitea.create_changeset(&request).await.expect_err("head branch missing");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
    assert!(error.to_string().contains("head branch does not exist [name: never-pushed]"), "{error}");
    assert_eq!(emulator.stats().requests, 2, "not retried");

    let error = gitea.get_repository(&RepositoryRef::new("acme", "missing")).await.expect_err("404");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
    assert!(error.to_string().contains("The target couldn't be found."), "{error}");

    let request = ChangesetRequest { repository: RepositoryRef::new("acme", "attic"), head_ref: "main".into(), ..request };
    let error = gitea.create_changeset(&request).await.expect_err("archived");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::ArchivedRepository));

    let error = gitea.list_repositories(&RepositorySelection::Organization("alice".into())).await.expect_err("no such organization");
    assert!(error.to_string().contains("--repos alice/a,alice/b"), "says what to do for a user's repositories: {error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_pull_request_for_the_same_head_and_base_is_a_conflict_naming_the_first() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    push_branch(&emulator.clone_url("acme", "widgets"), "topic").await;
    // reqwest is built without a default TLS provider; the adapter installs ring, raw clients must too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/repos/acme/widgets/pulls", emulator.url());
    let body = serde_json::json!({"title": "t", "head": "topic", "base": "main"});
    let send = || client.post(&url).header("Authorization", format!("token {DEFAULT_TOKEN}")).json(&body).send();
    assert_eq!(send().await.expect("first").status(), 201);
    let second = send().await.expect("second");
    assert_eq!(second.status(), 409);
    let error: serde_json::Value = second.json().await.expect("json error body");
    let message = error["message"].as_str().expect("message");
    assert!(message.starts_with("pull request already exists for these targets [id: ") && message.contains("issue_id: 1,"), "{message}");
    assert!(error["url"].as_str().is_some_and(|url| url.ends_with("/api/swagger")), "{error}");
    // A missing title is a binding failure: a 422 with Gitea's array body.
    let untitled = client.post(&url).header("Authorization", format!("token {DEFAULT_TOKEN}")).json(&serde_json::json!({"head": "topic", "base": "main"})).send().await.expect("sent");
    assert_eq!(untitled.status(), 422);
    let error: serde_json::Value = untitled.json().await.expect("json error body");
    assert_eq!(error[0]["fieldNames"][0], "Title");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn organization_listings_follow_pagination_across_pages() {
    let names: Vec<String> = (0..5).map(|index| format!("repo-{index}")).collect();
    let repositories: Vec<(&str, &str)> = names.iter().map(|name| ("acme", name.as_str())).collect();
    let emulator = emulator_with(&repositories).await;
    emulator.create_repository(NewRepository::new("other", "elsewhere")).await.expect("created");
    let mut config = config(&emulator, DEFAULT_TOKEN);
    config.per_page = 2;
    let gitea = Gitea::new(config).expect("adapter builds");
    let listed = gitea.list_repositories(&RepositorySelection::Organization("acme".into())).await.expect("listed");
    let listed: Vec<&str> = listed.iter().map(|repository| repository.full_name.as_str()).collect();
    assert_eq!(listed, ["acme/repo-0", "acme/repo-1", "acme/repo-2", "acme/repo-3", "acme/repo-4"]);
    assert_eq!(emulator.stats().requests, 3, "three pages of two");

    let explicit = RepositorySelection::Explicit(vec![RepositoryRef::new("other", "elsewhere")]);
    let listed = gitea.list_repositories(&explicit).await.expect("listed");
    assert_eq!(listed.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_by_head_pages_through_every_pull_request() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let clone_url = emulator.clone_url("acme", "widgets");
    let opener = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    for index in 0..5 {
        let branch = format!("topic-{index}");
        push_branch(&clone_url, &branch).await;
        let request = ChangesetRequest { repository: repository.clone(), base_ref: "main".into(), head_ref: branch, title: format!("Topic {index}"), body: String::new(), draft: false };
        opener.create_changeset(&request).await.expect("opened");
    }
    // The first one opened is the least recently updated: on the last page of two.
    let mut config = config(&emulator, DEFAULT_TOKEN);
    config.per_page = 2;
    let gitea = Gitea::new(config).expect("adapter builds");
    let before = emulator.stats().requests;
    let found = gitea.find_changeset_by_head(&repository, "topic-0").await.expect("lookup").expect("found");
    assert_eq!((found.number, found.title.as_str()), (1, "Topic 0"));
    // Three pages, then the reviews and the commit status of the one found.
    assert_eq!(emulator.stats().requests - before, 5);
}
