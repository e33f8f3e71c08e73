//! `flotilla batch apply` against a Bitbucket Server / Data Center code host (the project's
//! emulator of Bitbucket's REST API 1.0 and git under `/scm/`, started in this test): a
//! project's repositories are listed and mirrored through the API, apply opens exactly the pull
//! requests the spec asks for (drafts where it says so), applying again opens nothing, an
//! edited spec updates and undrafts them (each change at the pull request's current version),
//! a merge, a review and a build on Bitbucket show after a sync, and a bulk close declines the
//! rest.

mod support;

use std::process::Stdio;
use std::time::Duration;

use flotilla_codehost_emulator::{CheckRun, DEFAULT_TOKEN, Emulator, EmulatorConfig, NewRepository, Review};
use support::{flotilla, http_request, start_executor, start_server, wait_until};

const ADMIN: &str = "flt_u_bitbucket_e2e_admin_token_00000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_bitbucket_e2e_executor_token_000000000000000000000000000";
const HOST: &str = "bitbucket.example";

fn run(url: &str, arguments: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut command = flotilla();
    command.args(arguments).env("FLOTILLA_URL", url).env("FLOTILLA_TOKEN", ADMIN).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().expect("run flotilla");
    if let Some(input) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

/// Every repository of project PROJ but docs gets a README fix; web's is published as `web`.
fn spec(title: &str, web: &str) -> String {
    format!(
        "name: readme-fix\non:\n  - repositoriesMatchingQuery: repo:^bitbucket\\.example/PROJ/\nsteps:\n  - run: |\n      if [ \"${{{{ repository.name }}}}\" != \"{HOST}/PROJ/docs\" ]; then echo fixed >> README.md; fi\n    container: alpine:3\nchangesetTemplate:\n  title: {title}\n  body: Fixes the README of ${{{{ repository.name }}}}\n  branch: batch/readme-fix\n  commit:\n    message: Fix the README\n  published:\n    - \"*\": true\n    - {HOST}/PROJ/web: {web}\n"
    )
}

/// The plan `batch apply --json` printed, as (repository, action, operations).
fn apply(url: &str, file: &std::path::Path) -> Vec<(String, String, String)> {
    let output = run(url, &["batch", "apply", "--json", "-f", file.to_str().expect("utf-8")], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON plan");
    plan["changesets"]
        .as_array()
        .expect("changesets")
        .iter()
        .map(|changeset| {
            let operations: Vec<&str> = changeset["operations"].as_array().expect("operations").iter().filter_map(|operation| operation.as_str()).collect();
            (changeset["repository"].as_str().expect("repository").to_owned(), changeset["action"].as_str().expect("action").to_owned(), operations.join(","))
        })
        .collect()
}

fn rows(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items.iter().map(|(repository, action, operations)| (format!("{HOST}/PROJ/{repository}"), (*action).to_owned(), (*operations).to_owned())).collect()
}

fn changesets(url: &str) -> Vec<serde_json::Value> {
    let output = run(url, &["changesets", "list", "--batch-change", "readme-fix", "--json"], None);
    serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default()
}

fn reconciled(url: &str) -> Vec<serde_json::Value> {
    let mut listed = Vec::new();
    wait_until(Duration::from_secs(60), "the reconciler to finish", || {
        listed = changesets(url);
        !listed.is_empty() && listed.iter().all(|changeset| matches!(changeset["reconcilerState"].as_str(), Some("completed" | "failed")))
    });
    listed
}

/// `field` of the changeset of repository PROJ/`name`.
fn field(listed: &[serde_json::Value], name: &str, field: &str) -> Option<String> {
    listed.iter().find(|changeset| changeset["repository"] == format!("{HOST}/PROJ/{name}")).and_then(|changeset| changeset[field].as_str().map(str::to_owned))
}

/// A pull request as the emulated Bitbucket serves it.
fn pull_request(emulator_url: &str, repository: &str, id: u64) -> serde_json::Value {
    let path = format!("/rest/api/1.0/projects/PROJ/repos/{repository}/pull-requests/{id}");
    let (status, body) = http_request(emulator_url, "GET", &path, Some(&format!("Bearer {DEFAULT_TOKEN}")), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

#[test]
fn apply_opens_updates_and_declines_pull_requests_on_bitbucket_server() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
    for name in ["app", "api", "web", "docs"] {
        runtime.block_on(emulator.create_repository(NewRepository::new("PROJ", name))).expect("repository");
    }
    // Another project, not mirrored: `--org` is a project key.
    runtime.block_on(emulator.create_repository(NewRepository::new("OTHER", "elsewhere"))).expect("repository");
    let emulator_url = emulator.url().to_owned();
    let root = tempfile::tempdir().expect("temp dir");
    let (server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &["--changeset-sync-interval", "1"]);
    let executor = start_executor(&url, EXECUTOR, "bitbucket", &root.path().join("executor"), "process");

    // A personal token with its owner's name: git then uses basic auth, the API Bearer.
    let added = run(
        &url,
        &["codehost", "add", "--kind", "bitbucket-server", "--name", HOST, "--api-url", &emulator_url, "--org", "PROJ", "--token-stdin", "--username", "alice"],
        Some(DEFAULT_TOKEN),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let synced = run(&url, &["repos", "sync"], None);
    assert!(synced.status.success(), "{}", String::from_utf8_lossy(&synced.stderr));
    let listed = run(&url, &["repos", "list", "--json"], None);
    let repositories: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("JSON repositories");
    let mut names: Vec<&str> = repositories.iter().filter_map(|repository| repository["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, [format!("{HOST}/PROJ/api"), format!("{HOST}/PROJ/app"), format!("{HOST}/PROJ/docs"), format!("{HOST}/PROJ/web")], "{repositories:?}");

    // Apply: pull requests for the three changed repositories, web's as a draft.
    let file = root.path().join("readme-fix.batch.yaml");
    std::fs::write(&file, spec("Fix the README", "draft")).expect("write spec");
    assert_eq!(apply(&url, &file), rows(&[("api", "create", "push,publish"), ("app", "create", "push,publish"), ("web", "create", "push,publish-draft")]));
    let listed = reconciled(&url);
    for name in ["app", "api", "web"] {
        let expected = if name == "web" { "DRAFT" } else { "OPEN" };
        assert_eq!((field(&listed, name, "reconcilerState").as_deref(), field(&listed, name, "externalState").as_deref()), (Some("completed"), Some(expected)), "{listed:?}");
        assert_eq!(emulator.pull_request_count("PROJ", name), 1, "{name}");
    }
    assert_eq!(emulator.pull_request_count("PROJ", "docs"), 0);
    let app = pull_request(&emulator_url, "app", 1);
    assert_eq!(
        (app["title"].as_str(), app["description"].as_str(), app["fromRef"]["id"].as_str(), app["toRef"]["id"].as_str(), app["state"].as_str()),
        (Some("Fix the README"), Some("Fixes the README of bitbucket.example/PROJ/app"), Some("refs/heads/batch/readme-fix"), Some("refs/heads/main"), Some("OPEN"))
    );
    assert_eq!((app["version"].as_u64(), app["draft"].as_bool()), (Some(0), Some(false)));
    assert_eq!(pull_request(&emulator_url, "web", 1)["draft"], true);
    assert!(field(&listed, "app", "externalUrl").is_some_and(|link| link.ends_with("/projects/PROJ/repos/app/pull-requests/1")), "{listed:?}");

    // The same spec again opens nothing.
    assert_eq!(apply(&url, &file), rows(&[("api", "continue", ""), ("app", "continue", ""), ("web", "continue", "")]));

    // A new title updates every pull request; web is published for real.
    std::fs::write(&file, spec("Fix the README file", "true")).expect("write spec");
    assert_eq!(apply(&url, &file), rows(&[("api", "continue", "update"), ("app", "continue", "update"), ("web", "continue", "update,undraft")]));
    let listed = reconciled(&url);
    assert!(listed.iter().all(|changeset| changeset["reconcilerState"] == "completed" && changeset["externalState"] == "OPEN"), "{listed:?}");
    let app = pull_request(&emulator_url, "app", 1);
    assert_eq!((app["title"].as_str(), app["version"].as_u64()), (Some("Fix the README file"), Some(1)), "one versioned update");
    let web = pull_request(&emulator_url, "web", 1);
    assert_eq!((web["title"].as_str(), web["draft"].as_bool(), web["version"].as_u64()), (Some("Fix the README file"), Some(false), Some(2)), "update, then undraft");
    for name in ["app", "api", "web"] {
        assert_eq!(emulator.pull_request_count("PROJ", name), 1, "still one pull request in {name}");
    }

    // What happens on Bitbucket shows after a sync: api merged, app approved with a green build.
    emulator.merge_pull_request("PROJ", "api", 1).expect("merge");
    emulator.add_review("PROJ", "app", 1, Review { user: "reviewer".into(), state: "APPROVED".into() }).expect("review");
    emulator
        .add_check_run("PROJ", "app", "batch/readme-fix", CheckRun { name: "ci".into(), status: "completed".into(), conclusion: Some("success".into()) })
        .expect("build");
    wait_until(Duration::from_secs(30), "the sync to see the merge, the review and the build", || {
        let listed = changesets(&url);
        field(&listed, "api", "externalState").as_deref() == Some("MERGED")
            && field(&listed, "app", "reviewState").as_deref() == Some("APPROVED")
            && field(&listed, "app", "checkState").as_deref() == Some("PASSED")
    });
    assert_eq!(pull_request(&emulator_url, "api", 1)["state"], "MERGED");

    // Bulk close declines the open ones; the merged one is skipped.
    let closed = run(&url, &["changesets", "bulk", "close", "--batch-change", "readme-fix", "--json"], None);
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&closed.stdout).expect("JSON");
    let outcome_of = |name: &str| outcomes.iter().find(|outcome| outcome["repository"] == format!("{HOST}/PROJ/{name}")).and_then(|outcome| outcome["outcome"].as_str().map(str::to_owned));
    assert_eq!((outcome_of("app").as_deref(), outcome_of("web").as_deref(), outcome_of("api").as_deref()), (Some("done"), Some("done"), Some("skipped")), "{outcomes:?}");
    wait_until(Duration::from_secs(60), "the pull requests to be declined", || {
        ["app", "web"].iter().all(|name| pull_request(&emulator_url, name, 1)["state"] == "DECLINED")
    });
    assert_eq!(pull_request(&emulator_url, "api", 1)["state"], "MERGED");
    wait_until(Duration::from_secs(30), "the changesets to show as closed", || {
        let listed = changesets(&url);
        field(&listed, "app", "externalState").as_deref() == Some("CLOSED") && field(&listed, "web", "externalState").as_deref() == Some("CLOSED")
    });
    assert_eq!(emulator.stats().rate_limit_rejections, 0);

    // Drop order: the server and executor go before the emulator's runtime.
    drop(executor);
    drop(server);
    drop(emulator);
    drop(runtime);
}

#[test]
fn a_bitbucket_code_host_is_checked_when_it_is_added() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
    let without_url = run(&url, &["codehost", "add", "--kind", "bitbucket-server", "--name", HOST, "--org", "PROJ", "--token-stdin"], Some("t"));
    assert!(!without_url.status.success());
    assert!(String::from_utf8_lossy(&without_url.stderr).contains("https://HOST for Bitbucket Server"), "{}", String::from_utf8_lossy(&without_url.stderr));
    let bad_repository = run(
        &url,
        &["codehost", "add", "--kind", "bitbucket-server", "--name", HOST, "--api-url", "https://bitbucket.example", "--repos", "PROJ", "--token-stdin"],
        Some("t"),
    );
    assert!(!bad_repository.status.success());
    assert!(String::from_utf8_lossy(&bad_repository.stderr).contains("PROJ is not owner/name"), "{}", String::from_utf8_lossy(&bad_repository.stderr));
    let help = run(&url, &["codehost", "add", "--help"], None);
    assert!(String::from_utf8_lossy(&help.stdout).contains("bitbucket-server"), "the help lists the kind");
}
