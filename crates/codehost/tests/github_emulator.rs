//! The GitHub adapter end to end against the emulator: real HTTP, real git pushes, injected
//! faults and a real rate limit.

mod support;

use std::time::{Duration, Instant};

use flotilla_codehost::{
    ChangesetRequest, ChangesetUpdate, CheckState, CodeHost, CodeHostError, ExternalState, GitHub, GitHubConfig, MergeMethod,
    PermanentKind, RepositoryRef, RepositorySelection, ReviewState,
};
use flotilla_codehost_emulator::{
    CheckRun, DEFAULT_TOKEN, EmulatorHandle, Fault, NewRepository, RateLimitConfig, Review,
};

fn config(emulator: &EmulatorHandle, token: &str) -> GitHubConfig {
    let mut config = GitHubConfig::new(emulator.url(), token);
    config.retry = support::fast_retry();
    config.request_timeout = support::REQUEST_TIMEOUT;
    config
}

async fn emulator_with(repositories: &[(&str, &str)]) -> EmulatorHandle {
    support::emulator_with(repositories).await
}

fn adapter(emulator: &EmulatorHandle) -> GitHub {
    GitHub::new(config(emulator, DEFAULT_TOKEN)).expect("adapter builds")
}

fn authorization() -> String {
    format!("Bearer {DEFAULT_TOKEN}")
}

/// Clones over smart HTTP, commits a file and pushes it as `branch`; returns the commit.
async fn push_branch(emulator: &EmulatorHandle, owner: &str, name: &str, branch: &str) -> String {
    support::push_branch(&emulator.clone_url(owner, name), branch, &authorization()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_lives_its_whole_life_through_the_adapter() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let github = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    let hosted = github.get_repository(&repository).await.expect("repository");
    assert_eq!((hosted.full_name.as_str(), hosted.default_branch.as_str()), ("acme/widgets", "main"));
    assert_eq!(hosted.clone_url, emulator.clone_url("acme", "widgets"));

    let commit = push_branch(&emulator, "acme", "widgets", "batch/fix-1").await;
    assert_eq!(github.find_changeset_by_head(&repository, "batch/fix-1").await.expect("lookup"), None);

    let request = ChangesetRequest {
        repository: repository.clone(),
        base_ref: "refs/heads/main".into(),
        head_ref: "refs/heads/batch/fix-1".into(),
        title: "Fix widgets".into(),
        body: "Done by a batch change".into(),
        draft: true,
    };
    let opened = github.create_changeset(&request).await.expect("draft opened");
    assert_eq!(opened.state, ExternalState::Draft);
    assert_eq!(opened.head_sha.as_deref(), Some(commit.as_str()));

    // Crash safety: found by its head, and opening it again returns the same one.
    let found = github.find_changeset_by_head(&repository, "refs/heads/batch/fix-1").await.expect("lookup").expect("found");
    assert_eq!((found.number, found.state), (opened.number, ExternalState::Draft));
    let again = github.create_changeset(&request).await.expect("second open is the first");
    assert_eq!(again.number, opened.number);
    assert_eq!(emulator.pull_request_count("acme", "widgets"), 1);

    let update = ChangesetUpdate { title: Some("Fix all widgets".into()), body: Some("New body".into()), ..ChangesetUpdate::default() };
    let updated = github.update_changeset(&repository, opened.number, &update).await.expect("updated");
    assert_eq!((updated.title.as_str(), updated.body.as_str()), ("Fix all widgets", "New body"));

    let ready = github.mark_ready_for_review(&repository, opened.number).await.expect("undrafted");
    assert_eq!(ready.state, ExternalState::Open);

    let close = ChangesetUpdate { open: Some(false), ..ChangesetUpdate::default() };
    assert_eq!(github.update_changeset(&repository, opened.number, &close).await.expect("closed").state, ExternalState::Closed);
    let reopen = ChangesetUpdate { open: Some(true), ..ChangesetUpdate::default() };
    assert_eq!(github.update_changeset(&repository, opened.number, &reopen).await.expect("reopened").state, ExternalState::Open);

    emulator.add_review("acme", "widgets", opened.number, Review { user: "alice".into(), state: "APPROVED".into() }).expect("review");
    emulator
        .add_check_run("acme", "widgets", &commit, CheckRun { name: "ci".into(), status: "completed".into(), conclusion: Some("success".into()) })
        .expect("check run");
    let loaded = github.load_changeset(&repository, opened.number).await.expect("loaded");
    assert_eq!((loaded.review_state, loaded.check_state), (ReviewState::Approved, CheckState::Passed));

    github.comment(&repository, opened.number, "Merging now").await.expect("commented");
    assert_eq!(emulator.comments("acme", "widgets", opened.number), ["Merging now"]);

    let merged = github.merge_changeset(&repository, opened.number, MergeMethod::Squash).await.expect("merged");
    assert_eq!(merged.state, ExternalState::Merged);
    let error = github.merge_changeset(&repository, opened.number, MergeMethod::Merge).await.expect_err("merging twice fails");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
    assert!(error.to_string().contains("not mergeable"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_error_storms_are_retried_until_they_pass() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let github = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    emulator.inject_faults(Fault::ServerError { status: 502 }, 4);
    github.get_repository(&repository).await.expect("succeeds on the fifth attempt");
    assert_eq!(emulator.stats().faults_served, 4);

    emulator.inject_faults(Fault::ServerError { status: 500 }, 5);
    let error = github.get_repository(&repository).await.expect_err("five failures exhaust the attempts");
    assert!(matches!(error, CodeHostError::Transient { .. }), "{error:?}");
    assert!(error.to_string().contains("gave up after 5 attempts"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_many_requests_and_secondary_limits_wait_as_asked() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let github = adapter(&emulator);
    let repository = RepositoryRef::new("acme", "widgets");
    emulator.inject_faults(Fault::TooManyRequests { retry_after_secs: 1 }, 1);
    emulator.inject_faults(Fault::SecondaryLimit { retry_after_secs: 1 }, 1);
    let started = Instant::now();
    github.get_repository(&repository).await.expect("succeeds after the limits pass");
    assert!(started.elapsed() >= Duration::from_secs(2), "waited only {:?}", started.elapsed());
    assert_eq!(emulator.stats().requests, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_longer_than_the_caller_may_wait_is_returned() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let github = adapter(&emulator);
    emulator.inject_faults(Fault::TooManyRequests { retry_after_secs: 3600 }, 1);
    let error = github.get_repository(&RepositoryRef::new("acme", "widgets")).await.expect_err("an hour is too long");
    assert_eq!(error, CodeHostError::RateLimited { message: error_message(&error), retry_after: Duration::from_secs(3600) });
}

fn error_message(error: &CodeHostError) -> String {
    match error {
        CodeHostError::RateLimited { message, .. } | CodeHostError::Transient { message, .. } | CodeHostError::Permanent { message, .. } => message.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_fail_at_once_with_the_hosts_message() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let repository = RepositoryRef::new("acme", "widgets");
    let wrong = GitHub::new(config(&emulator, "wrong-token")).expect("adapter builds");
    let error = wrong.get_repository(&repository).await.expect_err("bad credentials");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::BadCredentials));
    assert!(error.to_string().contains("401 Bad credentials"), "{error}");
    assert_eq!(emulator.stats().requests, 1, "not retried");

    let github = adapter(&emulator);
    let request = ChangesetRequest {
        repository: repository.clone(),
        base_ref: "main".into(),
        head_ref: "never-pushed".into(),
        title: "t".into(),
        body: String::new(),
        draft: false,
    };
    let error = github.create_changeset(&request).await.expect_err("head missing");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
    assert!(error.to_string().contains("422 Validation Failed: head invalid"), "{error}");
    assert_eq!(emulator.stats().requests, 2, "not retried");

    let error = github.get_repository(&RepositoryRef::new("acme", "missing")).await.expect_err("404");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_open_pull_request_for_a_branch_is_refused_by_the_emulator() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    push_branch(&emulator, "acme", "widgets", "topic").await;
    // reqwest is built without a default TLS provider; the adapter installs ring, raw clients must too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("{}/repos/acme/widgets/pulls", emulator.url());
    let body = serde_json::json!({"title": "t", "head": "topic", "base": "main"});
    let send = || client.post(&url).bearer_auth(DEFAULT_TOKEN).json(&body).send();
    assert_eq!(send().await.expect("first").status(), 201);
    let second = send().await.expect("second");
    assert_eq!(second.status(), 422);
    let error: serde_json::Value = second.json().await.expect("json error body");
    assert_eq!(error["errors"][0]["message"], "A pull request already exists for acme:topic.");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hourly_limit_is_kept_without_a_single_rejection() {
    let emulator = emulator_with(&[("acme", "widgets")]).await;
    let github = adapter(&emulator);
    // The test's "hour": 3 requests per second.
    emulator.set_rate_limit(Some(RateLimitConfig { limit: 3, period_secs: 1 }));
    let repository = RepositoryRef::new("acme", "widgets");
    for _ in 0..8 {
        github.get_repository(&repository).await.expect("waits for the reset instead of failing");
    }
    let stats = emulator.stats();
    assert_eq!(stats.rate_limit_rejections, 0);
    assert_eq!(stats.requests, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_follow_link_headers_across_pages() {
    let names: Vec<String> = (0..5).map(|index| format!("repo-{index}")).collect();
    let repositories: Vec<(&str, &str)> = names.iter().map(|name| ("acme", name.as_str())).collect();
    let emulator = emulator_with(&repositories).await;
    emulator.create_repository(NewRepository::new("other", "elsewhere")).await.expect("created");
    let mut config = config(&emulator, DEFAULT_TOKEN);
    config.per_page = 2;
    let github = GitHub::new(config).expect("adapter builds");
    let listed = github.list_repositories(&RepositorySelection::Organization("acme".into())).await.expect("listed");
    let listed: Vec<&str> = listed.iter().map(|repository| repository.full_name.as_str()).collect();
    assert_eq!(listed, ["acme/repo-0", "acme/repo-1", "acme/repo-2", "acme/repo-3", "acme/repo-4"]);
    assert_eq!(emulator.stats().requests, 3, "three pages of two");

    let explicit = RepositorySelection::Explicit(vec![RepositoryRef::new("other", "elsewhere")]);
    let listed = github.list_repositories(&explicit).await.expect("listed");
    assert_eq!(listed.len(), 1);
}
