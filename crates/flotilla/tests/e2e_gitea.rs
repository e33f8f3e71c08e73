//! `flotilla batch apply` against a Gitea code host (the project's emulator, whose `/api/v1`
//! face speaks Gitea's REST API over the same state as its other faces, started in this test):
//! the organization's repositories are listed and mirrored through the API, apply opens exactly
//! the pull requests the spec asks for (work in progress where it says `draft`), applying again
//! opens nothing, an edited spec renames them (drafts stay drafts) and undrafts the one now
//! published, a merge and a review done on the forge show after a sync, and a bulk close closes
//! the rest. Forgejo connections (`--kind forgejo`) are the same kind.

mod support;

use std::process::Stdio;
use std::time::Duration;

use flotilla_codehost_emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig, NewRepository, Review};
use support::{flotilla, http_request, start_executor, start_server, wait_until};

const ADMIN: &str = "flt_u_gitea_e2e_admin_token_00000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_gitea_e2e_executor_token_000000000000000000000000000000";
const HOST: &str = "gitea.example";

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

/// Every repository but docs gets a README fix; cli is published as a draft, web as `web` says,
/// the others for real.
fn spec(title: &str, web: &str) -> String {
    format!(
        "name: readme-fix\non:\n  - repositoriesMatchingQuery: repo:^gitea\\.example/acme/\nsteps:\n  - run: |\n      if [ \"${{{{ repository.name }}}}\" != \"{HOST}/acme/docs\" ]; then echo fixed >> README.md; fi\n    container: alpine:3\nchangesetTemplate:\n  title: {title}\n  body: Fixes the README of ${{{{ repository.name }}}}\n  branch: batch/readme-fix\n  commit:\n    message: Fix the README\n  published:\n    - \"*\": true\n    - {HOST}/acme/web: {web}\n    - {HOST}/acme/cli: draft\n"
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

/// Plan rows for `acme/NAME` on the Gitea host.
fn rows(items: &[(&str, &str, &str)]) -> Vec<(String, String, String)> {
    items.iter().map(|(name, action, operations)| (format!("{HOST}/acme/{name}"), (*action).to_owned(), (*operations).to_owned())).collect()
}

/// The batch change's changesets once the reconciler has finished with every one.
fn reconciled(url: &str) -> Vec<serde_json::Value> {
    let mut listed = Vec::new();
    wait_until(Duration::from_secs(60), "the reconciler to finish", || {
        listed = changesets(url);
        !listed.is_empty() && listed.iter().all(|changeset| matches!(changeset["reconcilerState"].as_str(), Some("completed" | "failed")))
    });
    listed
}

fn changesets(url: &str) -> Vec<serde_json::Value> {
    let output = run(url, &["changesets", "list", "--batch-change", "readme-fix", "--json"], None);
    serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default()
}

/// `field` of the changeset of `acme/NAME`.
fn field(listed: &[serde_json::Value], name: &str, field: &str) -> Option<String> {
    listed.iter().find(|changeset| changeset["repository"] == format!("{HOST}/acme/{name}")).and_then(|changeset| changeset[field].as_str().map(str::to_owned))
}

/// A pull request as the emulated Gitea serves it.
fn pull_request(emulator_url: &str, repository: &str, number: u64) -> serde_json::Value {
    let (status, body) = http_request(emulator_url, "GET", &format!("/api/v1/repos/acme/{repository}/pulls/{number}"), Some(&format!("token {DEFAULT_TOKEN}")), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

#[test]
fn apply_opens_updates_merges_and_closes_pull_requests_on_gitea() {
    let fixture = Fixture::start(&["app", "api", "web", "cli", "docs"]);
    let (emulator, emulator_url, url, root) = (&fixture.emulator, fixture.emulator_url.as_str(), fixture.url.as_str(), fixture.root.path());

    // The organization's repositories were listed through Gitea's API and mirrored over git.
    let listed = run(url, &["repos", "list", "--json"], None);
    let repositories: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("JSON repositories");
    let mut names: Vec<&str> = repositories.iter().filter_map(|repository| repository["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["gitea.example/acme/api", "gitea.example/acme/app", "gitea.example/acme/cli", "gitea.example/acme/docs", "gitea.example/acme/web"]);
    // Cloned from the clone URL Gitea reported, with the token as the password.
    assert!(repositories.iter().all(|repository| repository["headCommit"].as_str().is_some_and(|commit| commit.len() == 40)), "{repositories:?}");

    // Apply: pull requests for the four changed repositories, web's and cli's as work in progress.
    let file = root.join("readme-fix.batch.yaml");
    std::fs::write(&file, spec("Fix the README", "draft")).expect("write spec");
    assert_eq!(
        apply(url, &file),
        rows(&[
            ("api", "create", "push,publish"),
            ("app", "create", "push,publish"),
            ("cli", "create", "push,publish-draft"),
            ("web", "create", "push,publish-draft"),
        ])
    );
    let listed = reconciled(url);
    for name in ["app", "api", "web", "cli"] {
        let expected = if matches!(name, "web" | "cli") { "DRAFT" } else { "OPEN" };
        assert_eq!((field(&listed, name, "reconcilerState").as_deref(), field(&listed, name, "externalState").as_deref()), (Some("completed"), Some(expected)), "{name}: {listed:?}");
        assert_eq!(emulator.pull_request_count("acme", name), 1, "{name}");
    }
    assert_eq!(emulator.pull_request_count("acme", "docs"), 0);
    assert_eq!(field(&listed, "app", "externalUrl"), Some(format!("{emulator_url}/acme/app/pulls/1")));
    let app = pull_request(emulator_url, "app", 1);
    assert_eq!(
        (app["title"].as_str(), app["body"].as_str(), app["head"]["ref"].as_str(), app["base"]["ref"].as_str(), app["state"].as_str()),
        (Some("Fix the README"), Some("Fixes the README of gitea.example/acme/app"), Some("batch/readme-fix"), Some("main"), Some("open"))
    );
    // Gitea marks work in progress in the title; Flotilla reports the title without the marker.
    let web = pull_request(emulator_url, "web", 1);
    assert_eq!((web["title"].as_str(), web["draft"].as_bool()), (Some("WIP: Fix the README"), Some(true)));
    assert_eq!(field(&listed, "web", "title").as_deref(), Some("Fix the README"));

    // The same spec again opens nothing.
    assert_eq!(apply(url, &file), rows(&[("api", "continue", ""), ("app", "continue", ""), ("cli", "continue", ""), ("web", "continue", "")]));

    // A new title renames every pull request (cli stays a draft); web is published for real.
    std::fs::write(&file, spec("Fix the README file", "true")).expect("write spec");
    assert_eq!(
        apply(url, &file),
        rows(&[("api", "continue", "update"), ("app", "continue", "update"), ("cli", "continue", "update"), ("web", "continue", "update,undraft")])
    );
    let listed = reconciled(url);
    assert_eq!(pull_request(emulator_url, "app", 1)["title"], "Fix the README file");
    let web = pull_request(emulator_url, "web", 1);
    assert_eq!((web["title"].as_str(), web["draft"].as_bool()), (Some("Fix the README file"), Some(false)));
    assert_eq!(pull_request(emulator_url, "cli", 1)["title"], "WIP: Fix the README file");
    assert_eq!((field(&listed, "web", "externalState").as_deref(), field(&listed, "cli", "externalState").as_deref()), (Some("OPEN"), Some("DRAFT")));
    for name in ["app", "api", "web", "cli"] {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "still one pull request in {name}");
    }

    // What happens on Gitea shows after a sync: api merged, app approved with passing checks.
    emulator.merge_pull_request("acme", "api", 1).expect("merge");
    emulator.add_review("acme", "app", 1, Review { user: "reviewer".into(), state: "APPROVED".into() }).expect("review");
    let check = flotilla_codehost_emulator::CheckRun { name: "ci".into(), status: "completed".into(), conclusion: Some("success".into()) };
    emulator.add_check_run("acme", "app", "batch/readme-fix", check).expect("check run");
    wait_until(Duration::from_secs(30), "the sync to see the merge, the review and the checks", || {
        let listed = changesets(url);
        field(&listed, "api", "externalState").as_deref() == Some("MERGED")
            && field(&listed, "app", "reviewState").as_deref() == Some("APPROVED")
            && field(&listed, "app", "checkState").as_deref() == Some("PASSED")
    });

    // Bulk close: every open pull request (the merged one is skipped).
    let closed = run(url, &["changesets", "bulk", "close", "--batch-change", "readme-fix", "--json"], None);
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&closed.stdout).expect("JSON outcomes");
    let outcome_of = |name: &str| {
        outcomes.iter().find(|outcome| outcome["repository"] == format!("{HOST}/acme/{name}")).and_then(|outcome| outcome["outcome"].as_str().map(str::to_owned))
    };
    assert_eq!(
        [outcome_of("app"), outcome_of("web"), outcome_of("cli"), outcome_of("api")],
        [Some("done".to_owned()), Some("done".to_owned()), Some("done".to_owned()), Some("skipped".to_owned())],
        "{outcomes:?}"
    );
    wait_until(Duration::from_secs(60), "the pull requests to close", || {
        ["app", "web", "cli"].iter().all(|name| pull_request(emulator_url, name, 1)["state"] == "closed")
    });
    let listed = reconciled(url);
    for name in ["app", "web", "cli"] {
        assert_eq!(field(&listed, name, "externalState").as_deref(), Some("CLOSED"), "{name}: {listed:?}");
        assert_eq!(pull_request(emulator_url, name, 1)["merged"], false, "{name}");
    }
    assert_eq!((field(&listed, "api", "externalState").as_deref(), pull_request(emulator_url, "api", 1)["merged"].as_bool()), (Some("MERGED"), Some(true)));
    for name in ["app", "api", "web", "cli"] {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "nothing reopened or opened twice in {name}");
    }
}

#[test]
fn forgejo_is_the_gitea_kind_and_connections_are_checked() {
    let fixture = Fixture::start(&["app"]);
    let api_url = format!("{}/api/v1", fixture.emulator_url);
    let added = run(&fixture.url, &["codehost", "add", "--kind", "forgejo", "--name", "forgejo.example", "--api-url", &api_url, "--repos", "acme/app", "--token-stdin"], Some(DEFAULT_TOKEN));
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let listed = run(&fixture.url, &["codehost", "list", "--json"], None);
    let hosts: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("JSON code hosts");
    let kind_of = |name: &str| hosts.iter().find(|host| host["name"] == name).and_then(|host| host["kind"].as_str().map(str::to_owned));
    assert_eq!((kind_of(HOST).as_deref(), kind_of("forgejo.example").as_deref()), (Some("gitea"), Some("gitea")));
    assert!(run(&fixture.url, &["repos", "sync"], None).status.success());
    let listed = run(&fixture.url, &["repos", "list", "--json"], None);
    let repositories: Vec<serde_json::Value> = serde_json::from_slice(&listed.stdout).expect("JSON repositories");
    assert!(repositories.iter().any(|repository| repository["name"] == "forgejo.example/acme/app"), "{repositories:?}");

    // A forge connection must say which repositories to mirror.
    let refused = run(&fixture.url, &["codehost", "add", "--kind", "gitea", "--name", "nothing", "--api-url", &api_url, "--token-stdin"], Some(DEFAULT_TOKEN));
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("a Gitea organization"), "{}", String::from_utf8_lossy(&refused.stderr));
}

/// The emulated Gitea with repositories under `acme`, a server with a Gitea code host mirroring
/// the organization, and an executor.
struct Fixture {
    // Field order is drop order: the server and executor go before the emulator's runtime.
    _executor: support::Running,
    _server: support::Running,
    emulator: flotilla_codehost_emulator::EmulatorHandle,
    _runtime: tokio::runtime::Runtime,
    emulator_url: String,
    url: String,
    root: tempfile::TempDir,
}

impl Fixture {
    fn start(names: &[&str]) -> Fixture {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
        for name in names {
            runtime.block_on(emulator.create_repository(NewRepository::new("acme", *name))).expect("repository");
        }
        let emulator_url = emulator.url().to_owned();
        let root = tempfile::tempdir().expect("temp dir");
        let (server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &["--changeset-sync-interval", "1"]);
        let executor = start_executor(&url, EXECUTOR, "gitea", &root.path().join("executor"), "process");
        let api_url = format!("{emulator_url}/api/v1");
        let added = run(&url, &["codehost", "add", "--kind", "gitea", "--name", HOST, "--api-url", &api_url, "--org", "acme", "--token-stdin"], Some(DEFAULT_TOKEN));
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
        assert!(run(&url, &["repos", "sync"], None).status.success());
        Fixture { _executor: executor, _server: server, emulator, _runtime: runtime, emulator_url, url, root }
    }
}
