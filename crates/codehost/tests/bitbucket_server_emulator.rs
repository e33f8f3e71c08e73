//! The Bitbucket Server adapter end to end against the emulator's `/rest/api/1.0` routes: real
//! HTTP, real git pushes to the `/scm/` clone URL, the paged envelope, versioned changes that
//! race a person's edit, injected faults. The emulator shares its state between its faces, so
//! a person's actions on the forge (reviews, builds) are injected as in the GitHub tests.

mod support;

use std::time::Duration;

use flotilla_codehost::{
    BitbucketServer, BitbucketServerConfig, ChangesetRequest, ChangesetUpdate, CheckState, CodeHost, CodeHostError, ExternalState,
    MergeMethod, PermanentKind, RepositoryRef, RepositorySelection, ReviewState,
};
use flotilla_codehost_emulator::{CheckRun, DEFAULT_TOKEN, EmulatorHandle, Fault, NewRepository, Review};
use serde_json::{Value, json};

fn config(emulator: &EmulatorHandle, token: &str) -> BitbucketServerConfig {
    let mut config = BitbucketServerConfig::new(emulator.url(), token);
    config.retry = support::fast_retry();
    config.request_timeout = support::REQUEST_TIMEOUT;
    config
}

async fn emulator_with(repositories: &[(&str, &str)]) -> EmulatorHandle {
    support::emulator_with(repositories).await
}

fn adapter(emulator: &EmulatorHandle) -> BitbucketServer {
    BitbucketServer::new(config(emulator, DEFAULT_TOKEN)).expect("adapter builds")
}

/// Git with the token as HTTP basic auth under a user name, as Bitbucket wants it.
/// The token as HTTP basic auth under a user name, as Bitbucket wants it over git.
fn authorization() -> String {
    format!("Basic {}", base64(&format!("alice:{DEFAULT_TOKEN}")))
}

fn base64(text: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut encoded = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let bytes = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let value = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for index in 0..4 {
            if index <= chunk.len() {
                encoded.push(char::from(ALPHABET[((value >> (18 - 6 * index)) & 63) as usize]));
            } else {
                encoded.push('=');
            }
        }
    }
    encoded
}

/// Clones the adapter's clone URL over smart HTTP, commits a file and pushes it as `branch`;
/// returns the commit.
async fn push_branch(clone_url: &str, branch: &str) -> String {
    support::push_branch(clone_url, branch, &authorization()).await
}

/// A raw request to the emulator's Bitbucket face: (status, JSON body).
async fn raw(emulator: &EmulatorHandle, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
    // reqwest is built without a default TLS provider; the adapter installs ring, raw clients must too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", emulator.url())).bearer_auth(DEFAULT_TOKEN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_request_lives_its_whole_life_through_the_adapter() {
    let emulator = emulator_with(&[("PROJ", "widgets")]).await;
    let bitbucket = adapter(&emulator);
    let repository = RepositoryRef::new("PROJ", "widgets");
    let hosted = bitbucket.get_repository(&repository).await.expect("repository");
    assert_eq!((hosted.full_name.as_str(), hosted.default_branch.as_str()), ("PROJ/widgets", "main"));
    assert_eq!(hosted.clone_url, format!("{}/scm/PROJ/widgets.git", emulator.url()), "the http clone link, without its user name");

    let commit = push_branch(&hosted.clone_url, "batch/fix-1").await;
    assert_eq!(bitbucket.find_changeset_by_head(&repository, "batch/fix-1").await.expect("lookup"), None);

    let request = ChangesetRequest {
        repository: repository.clone(),
        base_ref: "refs/heads/main".into(),
        head_ref: "refs/heads/batch/fix-1".into(),
        title: "Fix widgets".into(),
        body: "Done by a batch change".into(),
        draft: true,
    };
    let opened = bitbucket.create_changeset(&request).await.expect("draft opened");
    assert_eq!((opened.state, opened.title.as_str(), opened.base_ref.as_str(), opened.head_ref.as_str()), (ExternalState::Draft, "Fix widgets", "main", "batch/fix-1"));
    assert_eq!(opened.head_sha.as_deref(), Some(commit.as_str()));

    // Crash safety: found by its branch, and opening it again (a 409 duplicate) returns the same one.
    let found = bitbucket.find_changeset_by_head(&repository, "refs/heads/batch/fix-1").await.expect("lookup").expect("found");
    assert_eq!((found.number, found.state), (opened.number, ExternalState::Draft));
    let again = bitbucket.create_changeset(&request).await.expect("second open is the first");
    assert_eq!(again.number, opened.number);
    assert_eq!(emulator.pull_request_count("PROJ", "widgets"), 1);

    // Updates send the current version; the title and body change, the draft stays a draft.
    let update = ChangesetUpdate { title: Some("Fix all widgets".into()), body: Some("New body".into()), ..ChangesetUpdate::default() };
    let updated = bitbucket.update_changeset(&repository, opened.number, &update).await.expect("updated");
    assert_eq!((updated.title.as_str(), updated.body.as_str(), updated.state), ("Fix all widgets", "New body", ExternalState::Draft));

    let ready = bitbucket.mark_ready_for_review(&repository, opened.number).await.expect("undrafted");
    assert_eq!((ready.state, ready.title.as_str()), (ExternalState::Open, "Fix all widgets"));

    let close = ChangesetUpdate { open: Some(false), ..ChangesetUpdate::default() };
    assert_eq!(bitbucket.update_changeset(&repository, opened.number, &close).await.expect("declined").state, ExternalState::Closed);
    let (_, declined) = raw(&emulator, reqwest::Method::GET, "/rest/api/1.0/projects/PROJ/repos/widgets/pull-requests/1", None).await;
    assert_eq!(declined["state"], "DECLINED");
    let reopen = ChangesetUpdate { open: Some(true), title: Some("Fix every widget".into()), ..ChangesetUpdate::default() };
    let reopened = bitbucket.update_changeset(&repository, opened.number, &reopen).await.expect("reopened");
    assert_eq!((reopened.state, reopened.title.as_str()), (ExternalState::Open, "Fix every widget"));

    emulator.add_review("PROJ", "widgets", opened.number, Review { user: "alice".into(), state: "APPROVED".into() }).expect("review");
    emulator
        .add_check_run("PROJ", "widgets", &commit, CheckRun { name: "ci".into(), status: "in_progress".into(), conclusion: None })
        .expect("check run");
    let loaded = bitbucket.load_changeset(&repository, opened.number).await.expect("loaded");
    assert_eq!((loaded.review_state, loaded.check_state), (ReviewState::Approved, CheckState::Pending));
    emulator.add_review("PROJ", "widgets", opened.number, Review { user: "bob".into(), state: "CHANGES_REQUESTED".into() }).expect("review");
    emulator
        .add_check_run("PROJ", "widgets", &commit, CheckRun { name: "lint".into(), status: "completed".into(), conclusion: Some("failure".into()) })
        .expect("check run");
    let loaded = bitbucket.load_changeset(&repository, opened.number).await.expect("loaded");
    assert_eq!((loaded.review_state, loaded.check_state), (ReviewState::ChangesRequested, CheckState::Failed));

    bitbucket.comment(&repository, opened.number, "Merging now").await.expect("commented");
    assert_eq!(emulator.comments("PROJ", "widgets", opened.number), ["Merging now"]);

    let merged = bitbucket.merge_changeset(&repository, opened.number, MergeMethod::Merge).await.expect("merged");
    assert_eq!(merged.state, ExternalState::Merged);
    let error = bitbucket.merge_changeset(&repository, opened.number, MergeMethod::Merge).await.expect_err("merging twice fails");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::Validation));
    assert!(error.to_string().contains("IllegalPullRequestStateException"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_version_is_refused_and_the_adapter_changes_on_top_of_the_latest_one() {
    let emulator = emulator_with(&[("PROJ", "widgets")]).await;
    let bitbucket = adapter(&emulator);
    let repository = RepositoryRef::new("PROJ", "widgets");
    let hosted = bitbucket.get_repository(&repository).await.expect("repository");
    push_branch(&hosted.clone_url, "topic").await;
    let request = ChangesetRequest {
        repository: repository.clone(),
        base_ref: "main".into(),
        head_ref: "topic".into(),
        title: "Topic".into(),
        body: String::new(),
        draft: false,
    };
    let opened = bitbucket.create_changeset(&request).await.expect("opened");
    let path = format!("/rest/api/1.0/projects/PROJ/repos/widgets/pull-requests/{}", opened.number);

    // A person edits it on Bitbucket (version 0 → 1); a change sent with version 0 is refused.
    let (status, _) = raw(&emulator, reqwest::Method::PUT, &path, Some(json!({"version": 0, "title": "Edited by a person"}))).await;
    assert_eq!(status, 200);
    let (status, body) = raw(&emulator, reqwest::Method::PUT, &path, Some(json!({"version": 0, "title": "Stale"}))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["errors"][0]["exceptionName"], "com.atlassian.bitbucket.pull.PullRequestOutOfDateException");
    assert_eq!(body["errors"][0]["currentVersion"], 1);
    let (status, _) = raw(&emulator, reqwest::Method::POST, &format!("{path}/decline?version=0"), None).await;
    assert_eq!(status, 409);

    // The adapter always loads first, so its changes apply on top of the person's.
    let update = ChangesetUpdate { body: Some("Described".into()), ..ChangesetUpdate::default() };
    let updated = bitbucket.update_changeset(&repository, opened.number, &update).await.expect("updated");
    assert_eq!((updated.title.as_str(), updated.body.as_str()), ("Edited by a person", "Described"), "the person's title is kept");
    let (_, current) = raw(&emulator, reqwest::Method::GET, &path, None).await;
    assert_eq!(current["version"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_pull_request_between_the_same_branches_is_a_duplicate() {
    let emulator = emulator_with(&[("PROJ", "widgets")]).await;
    let hosted = adapter(&emulator).get_repository(&RepositoryRef::new("PROJ", "widgets")).await.expect("repository");
    push_branch(&hosted.clone_url, "topic").await;
    let reference = |branch: &str| json!({"id": format!("refs/heads/{branch}"), "repository": {"slug": "widgets", "project": {"key": "PROJ"}}});
    let body = json!({"title": "t", "fromRef": reference("topic"), "toRef": reference("main")});
    let path = "/rest/api/1.0/projects/PROJ/repos/widgets/pull-requests";
    assert_eq!(raw(&emulator, reqwest::Method::POST, path, Some(body.clone())).await.0, 201);
    let (status, error) = raw(&emulator, reqwest::Method::POST, path, Some(body)).await;
    assert_eq!(status, 409);
    assert_eq!(error["errors"][0]["exceptionName"], "com.atlassian.bitbucket.pull.DuplicatePullRequestException");
    assert_eq!(error["errors"][0]["existingPullRequest"]["id"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_fail_at_once_with_the_hosts_message() {
    let emulator = emulator_with(&[("PROJ", "widgets")]).await;
    let repository = RepositoryRef::new("PROJ", "widgets");
    let wrong = BitbucketServer::new(config(&emulator, "wrong-token")).expect("adapter builds");
    let error = wrong.get_repository(&repository).await.expect_err("bad credentials");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::BadCredentials));
    assert!(error.to_string().contains("401 Unauthorized: Authentication failed."), "{error}");
    assert_eq!(emulator.stats().requests, 1, "not retried");

    let bitbucket = adapter(&emulator);
    let error = bitbucket.get_repository(&RepositoryRef::new("PROJ", "missing")).await.expect_err("404");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
    assert!(error.to_string().contains("Repository PROJ/missing does not exist. (NoSuchRepositoryException)"), "{error}");

    let request = ChangesetRequest {
        repository: repository.clone(),
        base_ref: "main".into(),
        head_ref: "never-pushed".into(),
        title: "t".into(),
        body: String::new(),
        draft: false,
    };
    let error = bitbucket.create_changeset(&request).await.expect_err("source branch missing");
    assert_eq!(error.permanent_kind(), Some(PermanentKind::NotFound));
    assert!(error.to_string().contains("has no branch \"refs/heads/never-pushed\""), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_429s_are_waited_out() {
    let emulator = emulator_with(&[("PROJ", "widgets")]).await;
    let bitbucket = adapter(&emulator);
    let repository = RepositoryRef::new("PROJ", "widgets");
    emulator.inject_faults(Fault::ServerError { status: 502 }, 4);
    bitbucket.get_repository(&repository).await.expect("succeeds on the fifth attempt");
    assert_eq!(emulator.stats().faults_served, 4);

    emulator.inject_faults(Fault::ServerError { status: 500 }, 5);
    let error = bitbucket.get_repository(&repository).await.expect_err("five failures exhaust the attempts");
    assert!(matches!(error, CodeHostError::Transient { .. }), "{error:?}");

    emulator.inject_faults(Fault::TooManyRequests { retry_after_secs: 1 }, 1);
    let started = std::time::Instant::now();
    bitbucket.get_repository(&repository).await.expect("succeeds after the 429's wait");
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for Retry-After: {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn project_listings_follow_the_paged_envelope() {
    let names: Vec<String> = (0..5).map(|index| format!("repo-{index}")).collect();
    let repositories: Vec<(&str, &str)> = names.iter().map(|name| ("PROJ", name.as_str())).collect();
    let emulator = emulator_with(&repositories).await;
    emulator.create_repository(NewRepository::new("OTHER", "elsewhere")).await.expect("created");
    let mut config = config(&emulator, DEFAULT_TOKEN);
    config.page_limit = 2;
    let bitbucket = BitbucketServer::new(config).expect("adapter builds");
    let listed = bitbucket.list_repositories(&RepositorySelection::Organization("PROJ".into())).await.expect("listed");
    let listed: Vec<&str> = listed.iter().map(|repository| repository.full_name.as_str()).collect();
    assert_eq!(listed, ["PROJ/repo-0", "PROJ/repo-1", "PROJ/repo-2", "PROJ/repo-3", "PROJ/repo-4"]);
    assert_eq!(emulator.stats().requests, 3 + 5, "three pages of two, and each repository's default branch");

    let explicit = RepositorySelection::Explicit(vec![RepositoryRef::new("OTHER", "elsewhere")]);
    assert_eq!(bitbucket.list_repositories(&explicit).await.expect("listed").len(), 1);
    let error = bitbucket.list_repositories(&RepositorySelection::Organization("NONE".into())).await.expect_err("no such project");
    assert!(error.to_string().contains("Project NONE does not exist."), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_loses_a_race_with_a_person_is_loaded_and_applied_again() {
    let emulator = emulator_with(&[("PROJ", "widgets")]).await;
    let bitbucket = std::sync::Arc::new(adapter(&emulator));
    let repository = RepositoryRef::new("PROJ", "widgets");
    let hosted = bitbucket.get_repository(&repository).await.expect("repository");
    push_branch(&hosted.clone_url, "topic").await;
    let request =
        ChangesetRequest { repository: repository.clone(), base_ref: "main".into(), head_ref: "topic".into(), title: "Topic".into(), body: String::new(), draft: false };
    let opened = bitbucket.create_changeset(&request).await.expect("opened");
    let faults_before = emulator.stats().faults_served;

    // The adapter's load goes at once; its PUT is held back while a person edits the pull request.
    emulator.inject_faults(Fault::Slow { millis: 0 }, 1);
    emulator.inject_faults(Fault::Slow { millis: 500 }, 1);
    let updating = {
        let (bitbucket, repository) = (bitbucket.clone(), repository.clone());
        tokio::spawn(async move {
            let update = ChangesetUpdate { body: Some("Described by the batch change".into()), ..ChangesetUpdate::default() };
            bitbucket.update_changeset(&repository, opened.number, &update).await
        })
    };
    while emulator.stats().faults_served < faults_before + 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let path = format!("/rest/api/1.0/projects/PROJ/repos/widgets/pull-requests/{}", opened.number);
    let (status, _) = raw(&emulator, reqwest::Method::PUT, &path, Some(json!({"version": 0, "title": "Renamed by a person"}))).await;
    assert_eq!(status, 200);

    let updated = updating.await.expect("task").expect("updated after loading again");
    assert_eq!((updated.title.as_str(), updated.body.as_str()), ("Renamed by a person", "Described by the batch change"));
    let (_, current) = raw(&emulator, reqwest::Method::GET, &path, None).await;
    assert_eq!(current["version"], 2, "the person's edit, then the adapter's");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_token_bucket_is_waited_out_through_retry_after() {
    let emulator = emulator_with(&[("PROJ", "widgets")]).await;
    let bitbucket = adapter(&emulator);
    let repository = RepositoryRef::new("PROJ", "widgets");
    emulator.set_rate_limit(Some(flotilla_codehost_emulator::RateLimitConfig { limit: 3, period_secs: 1 }));
    // Each read is two requests (the repository, its default branch): the bucket runs dry.
    for _ in 0..4 {
        bitbucket.get_repository(&repository).await.expect("every read succeeds, after waiting when throttled");
    }
    assert!(emulator.stats().rate_limit_rejections >= 1, "the limit was reached: {:?}", emulator.stats());
    assert!(emulator.stats().rate_limit_rejections <= 3, "each 429 blocked the adapter until Retry-After: {:?}", emulator.stats());
}
