//! `flotilla batch apply` against a GitHub code host (the project's emulator of GitHub's REST
//! API and git, started in this test): repositories are listed and mirrored through the API,
//! apply opens exactly the pull requests the spec asks for (drafts where it says so), applying
//! again opens nothing, an edited spec updates and undrafts them, and closing the batch change
//! closes them.

mod support;

use std::process::Stdio;
use std::time::Duration;

use flotilla_codehost_emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig, NewRepository};
use support::{flotilla, http_request, start_executor, start_server, wait_until};

const ADMIN: &str = "flt_u_github_e2e_admin_token_0000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_github_e2e_executor_token_00000000000000000000000000000";

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

fn spec(title: &str, web: &str) -> String {
    spec_on("github.com", title, web)
}

/// The spec for repositories named `HOST/acme/...`: every one but docs gets a README fix.
fn spec_on(host: &str, title: &str, web: &str) -> String {
    let pattern = host.replace('.', "\\.");
    format!(
        "name: readme-fix\non:\n  - repositoriesMatchingQuery: repo:^{pattern}/acme/\nsteps:\n  - run: |\n      if [ \"${{{{ repository.name }}}}\" != \"{host}/acme/docs\" ]; then echo fixed >> README.md; fi\n    container: alpine:3\nchangesetTemplate:\n  title: {title}\n  body: Fixes the README of ${{{{ repository.name }}}}\n  branch: batch/readme-fix\n  commit:\n    message: Fix the README\n  published:\n    - \"*\": true\n    - {host}/acme/web: {web}\n"
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
    items.iter().map(|(repository, action, operations)| ((*repository).to_owned(), (*action).to_owned(), (*operations).to_owned())).collect()
}

fn reconciled(url: &str) -> Vec<serde_json::Value> {
    reconciled_within(url, Duration::from_secs(60))
}

fn reconciled_within(url: &str, timeout: Duration) -> Vec<serde_json::Value> {
    let mut listed = Vec::new();
    wait_until(timeout, "the reconciler to finish", || {
        let output = run(url, &["changesets", "list", "--batch-change", "readme-fix", "--json"], None);
        listed = serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default();
        !listed.is_empty() && listed.iter().all(|changeset| matches!(changeset["reconcilerState"].as_str(), Some("completed" | "failed")))
    });
    listed
}

/// A pull request as the emulated GitHub serves it.
fn pull_request(emulator_url: &str, repository: &str, number: u64) -> serde_json::Value {
    let (status, body) = http_request(emulator_url, "GET", &format!("/repos/acme/{repository}/pulls/{number}"), Some(&format!("Bearer {DEFAULT_TOKEN}")), None);
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

#[test]
fn apply_opens_updates_and_closes_pull_requests_on_github() {
    let fixture = Fixture::start(&["app", "api", "web", "docs"]);
    let (emulator, emulator_url, url, root) = (&fixture.emulator, fixture.emulator_url.clone(), fixture.url.clone(), fixture.root.path());

    // Apply: pull requests for the three changed repositories, web's as a draft.
    let file = root.join("readme-fix.batch.yaml");
    std::fs::write(&file, spec("Fix the README", "draft")).expect("write spec");
    assert_eq!(
        apply(&url, &file),
        rows(&[
            ("github.com/acme/api", "create", "push,publish"),
            ("github.com/acme/app", "create", "push,publish"),
            ("github.com/acme/web", "create", "push,publish-draft"),
        ])
    );
    let listed = reconciled(&url);
    for changeset in &listed {
        let expected = if changeset["repository"] == "github.com/acme/web" { "DRAFT" } else { "OPEN" };
        assert_eq!((changeset["reconcilerState"].as_str(), changeset["externalState"].as_str()), (Some("completed"), Some(expected)), "{changeset}");
    }
    for name in ["app", "api", "web"] {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "{name}");
    }
    assert_eq!(emulator.pull_request_count("acme", "docs"), 0);
    let app = pull_request(&emulator_url, "app", 1);
    assert_eq!((app["title"].as_str(), app["body"].as_str(), app["head"]["ref"].as_str(), app["base"]["ref"].as_str()), (Some("Fix the README"), Some("Fixes the README of github.com/acme/app"), Some("batch/readme-fix"), Some("main")));
    assert_eq!(pull_request(&emulator_url, "web", 1)["draft"], true);

    // The same spec again opens nothing.
    assert_eq!(
        apply(&url, &file),
        rows(&[("github.com/acme/api", "continue", ""), ("github.com/acme/app", "continue", ""), ("github.com/acme/web", "continue", "")])
    );

    // A new title updates every pull request; web is published for real.
    std::fs::write(&file, spec("Fix the README file", "true")).expect("write spec");
    assert_eq!(
        apply(&url, &file),
        rows(&[
            ("github.com/acme/api", "continue", "update"),
            ("github.com/acme/app", "continue", "update"),
            ("github.com/acme/web", "continue", "update,undraft"),
        ])
    );
    reconciled(&url);
    assert_eq!(pull_request(&emulator_url, "app", 1)["title"], "Fix the README file");
    assert_eq!(pull_request(&emulator_url, "web", 1)["draft"], false);
    for name in ["app", "api", "web"] {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "still one pull request in {name}");
    }

    // What happens on GitHub shows after a sync: api merged, app approved.
    emulator.merge_pull_request("acme", "api", 1).expect("merge");
    emulator
        .add_review("acme", "app", 1, flotilla_codehost_emulator::Review { user: "reviewer".into(), state: "APPROVED".into() })
        .expect("review");
    wait_until(Duration::from_secs(30), "the sync to see the merge and the review", || {
        let listed = reconciled(&url);
        let state = |name: &str, field: &str| {
            listed.iter().find(|changeset| changeset["repository"] == format!("github.com/acme/{name}")).and_then(|changeset| changeset[field].as_str().map(str::to_owned))
        };
        state("api", "externalState").as_deref() == Some("MERGED") && state("app", "reviewState").as_deref() == Some("APPROVED")
    });

    // Bulk: a comment on every open pull request (api is merged: skipped), then merge web.
    let commented = run(&url, &["changesets", "bulk", "comment", "--batch-change", "readme-fix", "--body", "Please review", "--json"], None);
    assert!(commented.status.success(), "{}", String::from_utf8_lossy(&commented.stderr));
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&commented.stdout).expect("JSON");
    let outcome_of = |name: &str| outcomes.iter().find(|outcome| outcome["repository"] == format!("github.com/acme/{name}")).map(|outcome| outcome["outcome"].clone());
    assert_eq!((outcome_of("app"), outcome_of("web"), outcome_of("api")), (Some("done".into()), Some("done".into()), Some("skipped".into())), "{outcomes:?}");
    assert_eq!(emulator.comments("acme", "app", 1), vec!["Please review".to_owned()]);
    let listed = reconciled(&url);
    let web_id = listed.iter().find(|changeset| changeset["repository"] == "github.com/acme/web").and_then(|changeset| changeset["id"].as_i64()).expect("web's id");
    let merged = run(&url, &["changesets", "bulk", "merge", "--batch-change", "readme-fix", "--id", &web_id.to_string(), "--squash"], None);
    assert!(merged.status.success(), "{}", String::from_utf8_lossy(&merged.stderr));
    assert_eq!(pull_request(&emulator_url, "web", 1)["merged"], true);

    // Closing the batch change closes its open pull requests (the merged ones stay merged).
    assert!(run(&url, &["batch", "close", "readme-fix", "--close-changesets"], None).status.success());
    wait_until(Duration::from_secs(60), "the pull request to close", || pull_request(&emulator_url, "app", 1)["state"] == "closed");
    assert_eq!((pull_request(&emulator_url, "api", 1)["merged"].as_bool(), pull_request(&emulator_url, "web", 1)["merged"].as_bool()), (Some(true), Some(true)));
}

/// The emulated GitHub with repositories under `acme`, a server with a GitHub code host
/// mirroring them, and an executor.
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
        Fixture::start_as("github", "github.com", "", names)
    }

    /// `kind` is github or gitlab; the API lives at the emulator's URL plus `api_path`.
    fn start_as(kind: &str, host: &str, api_path: &str, names: &[&str]) -> Fixture {
        Fixture::start_with_tokens(kind, host, api_path, names, &[DEFAULT_TOKEN])
    }

    /// The same, with the emulator accepting `tokens` (the first is the connection's).
    fn start_with_tokens(kind: &str, host: &str, api_path: &str, names: &[&str], tokens: &[&str]) -> Fixture {
        Fixture::start_with(kind, host, api_path, names, tokens, &[])
    }

    /// GitHub with `server_args` added to the server's command line.
    fn start_with_server_args(names: &[&str], server_args: &[&str]) -> Fixture {
        Fixture::start_with("github", "github.com", "", names, &[DEFAULT_TOKEN], server_args)
    }

    fn start_with(kind: &str, host: &str, api_path: &str, names: &[&str], tokens: &[&str], server_args: &[&str]) -> Fixture {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let config = EmulatorConfig { tokens: tokens.iter().map(|token| (*token).to_owned()).collect(), ..EmulatorConfig::default() };
        let emulator = runtime.block_on(Emulator::start(config)).expect("emulator");
        for name in names {
            runtime.block_on(emulator.create_repository(NewRepository::new("acme", *name))).expect("repository");
        }
        let emulator_url = emulator.url().to_owned();
        let root = tempfile::tempdir().expect("temp dir");
        let mut arguments = vec!["--changeset-sync-interval", "1"];
        arguments.extend_from_slice(server_args);
        let (server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &arguments);
        let executor = start_executor(&url, EXECUTOR, "github", &root.path().join("executor"), "process");
        let api_url = format!("{emulator_url}{api_path}");
        let added = run(&url, &["codehost", "add", "--kind", kind, "--name", host, "--api-url", &api_url, "--org", "acme", "--token-stdin"], Some(DEFAULT_TOKEN));
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
        assert!(run(&url, &["repos", "sync"], None).status.success());
        Fixture { _executor: executor, _server: server, emulator, _runtime: runtime, emulator_url, url, root }
    }
}

#[test]
fn under_5xx_and_429_storms_every_pull_request_is_opened_exactly_once() {
    let names = ["a1", "a2", "a3", "a4", "a5", "a6"];
    let fixture = Fixture::start(&names);
    let file = fixture.root.path().join("storm.batch.yaml");
    std::fs::write(&file, spec("Weather the storm", "true").replace("github.com/acme/docs", "github.com/acme/none")).expect("write spec");
    // Storms while the reconciler publishes: server errors, then rate limits, then both again.
    fixture.emulator.inject_faults(flotilla_codehost_emulator::Fault::ServerError { status: 502 }, 7);
    fixture.emulator.inject_faults(flotilla_codehost_emulator::Fault::TooManyRequests { retry_after_secs: 1 }, 3);
    fixture.emulator.inject_faults(flotilla_codehost_emulator::Fault::SecondaryLimit { retry_after_secs: 1 }, 2);
    fixture.emulator.inject_faults(flotilla_codehost_emulator::Fault::ServerError { status: 500 }, 6);
    let plan = apply(&fixture.url, &file);
    assert_eq!(plan.len(), names.len());
    let listed = reconciled_within(&fixture.url, Duration::from_secs(120));
    assert!(listed.iter().all(|changeset| changeset["reconcilerState"] == "completed" && changeset["externalState"] == "OPEN"), "{listed:?}");
    for name in names {
        assert_eq!(fixture.emulator.pull_request_count("acme", name), 1, "exactly one pull request in {name}");
    }
    assert!(fixture.emulator.stats().faults_served >= 18, "the storms really happened: {:?}", fixture.emulator.stats());
}

#[test]
fn apply_opens_updates_merges_and_closes_merge_requests_on_gitlab() {
    let fixture = Fixture::start_as("gitlab", "gitlab.example", "/api/v4", &["app", "api", "web", "docs"]);
    let merge_request = |name: &str| -> serde_json::Value {
        let (status, body) = http_request(&fixture.emulator_url, "GET", &format!("/api/v4/projects/acme%2F{name}/merge_requests/1"), Some(&format!("Bearer {DEFAULT_TOKEN}")), None);
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).expect("JSON")
    };
    let file = fixture.root.path().join("readme-fix.batch.yaml");
    std::fs::write(&file, spec_on("gitlab.example", "Fix the README", "draft")).expect("write spec");
    assert_eq!(
        apply(&fixture.url, &file),
        rows(&[
            ("gitlab.example/acme/api", "create", "push,publish"),
            ("gitlab.example/acme/app", "create", "push,publish"),
            ("gitlab.example/acme/web", "create", "push,publish-draft"),
        ])
    );
    let listed = reconciled(&fixture.url);
    for changeset in &listed {
        let expected = if changeset["repository"] == "gitlab.example/acme/web" { "DRAFT" } else { "OPEN" };
        assert_eq!((changeset["reconcilerState"].as_str(), changeset["externalState"].as_str()), (Some("completed"), Some(expected)), "{changeset}");
    }
    assert_eq!((fixture.emulator.pull_request_count("acme", "app"), fixture.emulator.pull_request_count("acme", "web"), fixture.emulator.pull_request_count("acme", "docs")), (1, 1, 0));
    // GitLab marks drafts in the title.
    assert_eq!(merge_request("web")["title"], "Draft: Fix the README");
    assert_eq!(merge_request("app")["description"], "Fixes the README of gitlab.example/acme/app");
    assert_eq!(
        apply(&fixture.url, &file),
        rows(&[("gitlab.example/acme/api", "continue", ""), ("gitlab.example/acme/app", "continue", ""), ("gitlab.example/acme/web", "continue", "")])
    );

    // An edited spec retitles all three and publishes web for real.
    std::fs::write(&file, spec_on("gitlab.example", "Fix the README file", "true")).expect("write spec");
    assert_eq!(
        apply(&fixture.url, &file),
        rows(&[
            ("gitlab.example/acme/api", "continue", "update"),
            ("gitlab.example/acme/app", "continue", "update"),
            ("gitlab.example/acme/web", "continue", "update,undraft"),
        ])
    );
    reconciled(&fixture.url);
    assert_eq!((merge_request("app")["title"].as_str(), merge_request("web")["title"].as_str()), (Some("Fix the README file"), Some("Fix the README file")));

    // A merge on GitLab shows after a sync; bulk close closes the other two.
    fixture.emulator.merge_pull_request("acme", "api", 1).expect("merge");
    wait_until(Duration::from_secs(30), "the sync to see the merge", || {
        reconciled(&fixture.url).iter().any(|changeset| changeset["repository"] == "gitlab.example/acme/api" && changeset["externalState"] == "MERGED")
    });
    let closed = run(&fixture.url, &["changesets", "bulk", "close", "--batch-change", "readme-fix", "--json"], None);
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
    wait_until(Duration::from_secs(60), "the merge requests to close", || ["app", "web"].iter().all(|name| merge_request(name)["state"] == "closed"));
    assert_eq!(merge_request("api")["state"], "merged");
    for name in ["app", "api", "web"] {
        assert_eq!(fixture.emulator.pull_request_count("acme", name), 1, "never opened twice: {name}");
    }
}

#[test]
fn pull_requests_are_opened_with_the_appliers_own_credential() {
    let fixture = Fixture::start_with_tokens("github", "github.com", "", &["app", "docs"], &[DEFAULT_TOKEN, "alices-own-token"]);
    // The admin sets their own token for the host, then the connection's stops working: only
    // the user's own credential can publish now.
    assert!(run(&fixture.url, &["codehost", "credential", "set", "github.com", "--mine"], Some("alices-own-token")).status.success());
    assert!(run(&fixture.url, &["codehost", "credential", "set", "github.com"], Some("revoked-token")).status.success());
    let file = fixture.root.path().join("readme-fix.batch.yaml");
    std::fs::write(&file, spec("Fix the README", "true")).expect("write spec");
    assert_eq!(apply(&fixture.url, &file), rows(&[("github.com/acme/app", "create", "push,publish")]));
    let listed = reconciled(&fixture.url);
    assert_eq!((listed[0]["reconcilerState"].as_str(), listed[0]["externalState"].as_str()), (Some("completed"), Some("OPEN")), "{listed:?}");
    assert_eq!(fixture.emulator.pull_request_count("acme", "app"), 1);
}

#[test]
fn imported_pull_requests_are_tracked_and_synced() {
    let fixture = Fixture::start(&["app", "docs"]);
    let file = fixture.root.path().join("readme-fix.batch.yaml");
    std::fs::write(&file, spec("Fix the README", "true")).expect("write spec");
    assert_eq!(apply(&fixture.url, &file), rows(&[("github.com/acme/app", "create", "push,publish")]));
    reconciled(&fixture.url);

    // Another batch change tracks that pull request without owning it.
    let tracker = fixture.root.path().join("tracker.batch.yaml");
    std::fs::write(&tracker, "name: tracker\nimportChangesets:\n  - repository: github.com/acme/app\n    externalIDs: [1]\n").expect("write spec");
    let output = run(&fixture.url, &["batch", "apply", "--json", "-f", tracker.to_str().expect("utf-8")], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(plan["changesets"][0]["operations"], serde_json::json!(["import"]), "{plan}");
    let listed = |name: &str| {
        let output = run(&fixture.url, &["changesets", "list", "--batch-change", name, "--json"], None);
        serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default()
    };
    wait_until(Duration::from_secs(30), "the import", || listed("tracker").first().is_some_and(|changeset| changeset["externalState"] == "OPEN"));
    let imported = &listed("tracker")[0];
    assert_eq!((imported["externalId"].as_str(), imported["headRef"].as_str()), (Some("1"), Some("refs/heads/batch/readme-fix")), "{imported}");

    // A merge on GitHub reaches the tracker through the sync.
    fixture.emulator.merge_pull_request("acme", "app", 1).expect("merge");
    wait_until(Duration::from_secs(30), "the sync", || listed("tracker").first().is_some_and(|changeset| changeset["externalState"] == "MERGED"));
    assert_eq!(fixture.emulator.pull_request_count("acme", "app"), 1, "importing opened nothing");
}

/// Twenty repositories, fifteen of them changed: five as drafts, ten published. What the
/// issue's "done means" describes, with the statistics and burndown checked along the way.
#[test]
fn twenty_repositories_fifteen_pull_requests_tracked_to_the_end_with_statistics() {
    let names: Vec<String> = (1..=20).map(|index| format!("r{index:02}")).collect();
    let fixture = Fixture::start(&names.iter().map(String::as_str).collect::<Vec<_>>());
    let file = fixture.root.path().join("readme-fix.batch.yaml");
    let spec = "name: readme-fix\non:\n  - repositoriesMatchingQuery: repo:^github\\.com/acme/\nsteps:\n  - run: |\n      case \"${{ repository.name }}\" in */r1[6-9]|*/r20) ;; *) echo fixed >> README.md ;; esac\n    container: alpine:3\nchangesetTemplate:\n  title: Fix the README of ${{ repository.name }}\n  body: Automated\n  branch: batch/readme-fix\n  commit:\n    message: Fix the README\n  published:\n    - \"*\": true\n    - github.com/acme/r0[1-5]: draft\n";
    std::fs::write(&file, spec).expect("write spec");
    let plan = apply(&fixture.url, &file);
    assert_eq!(plan.len(), 15, "{plan:?}");
    for (repository, action, operations) in &plan {
        let index: u32 = repository.trim_start_matches("github.com/acme/r").parse().expect("index");
        assert!(index <= 15, "{repository} has no change");
        assert_eq!((action.as_str(), operations.as_str()), ("create", if index <= 5 { "push,publish-draft" } else { "push,publish" }), "{repository}");
    }
    let listed = reconciled(&fixture.url);
    assert_eq!(listed.len(), 15);
    for name in &names {
        let index: u32 = name[1..].parse().expect("index");
        assert_eq!(fixture.emulator.pull_request_count("acme", name), usize::from(index <= 15), "{name}");
        if index <= 15 {
            let pull = pull_request(&fixture.emulator_url, name, 1);
            assert_eq!((pull["title"].as_str(), pull["draft"].as_bool(), pull["head"]["ref"].as_str()), (Some(format!("Fix the README of github.com/acme/{name}").as_str()), Some(index <= 5), Some("batch/readme-fix")));
        }
    }
    let statistics = |points: &str| -> serde_json::Value {
        let output = run(&fixture.url, &["batch", "status", "readme-fix", "--json", "--points", points], None);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("JSON")
    };
    let counts = statistics("5")["changesets"].clone();
    assert_eq!((counts["total"].as_i64(), counts["open"].as_i64(), counts["draft"].as_i64(), counts["merged"].as_i64()), (Some(15), Some(10), Some(5), Some(0)), "{counts}");
    assert_eq!(apply(&fixture.url, &file).iter().filter(|(_, _, operations)| !operations.is_empty()).count(), 0, "a second apply does nothing");

    // Three are merged on GitHub: the sync sees it, and so do the statistics and the chart.
    for name in ["r06", "r07", "r08"] {
        fixture.emulator.merge_pull_request("acme", name, 1).expect("merge");
    }
    wait_until(Duration::from_secs(30), "the sync to see three merges", || statistics("5")["changesets"]["merged"] == 3);
    let now = statistics("3");
    let last = now["burndown"].as_array().and_then(|points| points.last()).cloned().expect("a burndown");
    assert_eq!((last["total"].as_i64(), last["merged"].as_i64(), last["open"].as_i64(), last["draft"].as_i64()), (Some(15), Some(3), Some(7), Some(5)), "{now}");

    // Bulk close closes the other twelve; the batch change is then complete.
    let closed = run(&fixture.url, &["changesets", "bulk", "close", "--batch-change", "readme-fix", "--json"], None);
    assert!(closed.status.success(), "{}", String::from_utf8_lossy(&closed.stderr));
    let outcomes: Vec<serde_json::Value> = serde_json::from_slice(&closed.stdout).expect("JSON");
    assert_eq!(outcomes.iter().filter(|outcome| outcome["outcome"] == "done").count(), 12, "{outcomes:?}");
    wait_until(Duration::from_secs(60), "twelve pull requests to close", || statistics("5")["changesets"]["closed"] == 12);
    let counts = statistics("5")["changesets"].clone();
    assert_eq!((counts["isCompleted"].as_bool(), counts["percentComplete"].as_f64()), (Some(true), Some(100.0)), "{counts}");
    for name in ["r01", "r09", "r15"] {
        assert_eq!(pull_request(&fixture.emulator_url, name, 1)["state"], "closed", "{name}");
    }
    let text = run(&fixture.url, &["batch", "status", "readme-fix"], None);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with("readme-fix: 15 changesets, 100% complete"), "{text}");
}

/// A spec that leaves `published` unset publishes nothing; a person then publishes some as
/// drafts and the rest for real with bulk publish, through a rollout window of one per second.
#[test]
fn bulk_publish_goes_through_the_rollout_window_at_its_rate() {
    let root = tempfile::tempdir().expect("temp dir");
    let windows = root.path().join("windows.yaml");
    std::fs::write(&windows, "- rate: 1/second\n").expect("write windows");
    let names = ["a1", "a2", "a3", "a4", "a5"];
    let fixture = Fixture::start_with_server_args(&names, &["--rollout-windows", windows.to_str().expect("utf-8")]);
    let file = fixture.root.path().join("readme-fix.batch.yaml");
    std::fs::write(&file, spec("Fix the README", "true").replace("  published:\n    - \"*\": true\n    - github.com/acme/web: true\n", "")).expect("write spec");
    let plan = apply(&fixture.url, &file);
    assert!(plan.len() == 5 && plan.iter().all(|(_, action, operations)| action == "create" && operations.is_empty()), "nothing to publish: {plan:?}");
    let listed = reconciled(&fixture.url);
    assert!(listed.iter().all(|changeset| changeset["publicationState"] == "UNPUBLISHED"), "{listed:?}");
    let id_of = |name: &str| listed.iter().find(|changeset| changeset["repository"] == format!("github.com/acme/{name}")).and_then(|changeset| changeset["id"].as_i64()).expect("id").to_string();

    let bulk = |arguments: &[&str]| -> Vec<serde_json::Value> {
        let mut all = vec!["changesets", "bulk", "publish", "--batch-change", "readme-fix", "--json"];
        all.extend_from_slice(arguments);
        let output = run(&fixture.url, &all, None);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("JSON")
    };
    let drafts = bulk(&["--draft", "--id", &id_of("a1"), "--id", &id_of("a2")]);
    assert!(drafts.iter().all(|outcome| outcome["outcome"] == "done"), "{drafts:?}");
    let rest = bulk(&[]);
    let outcome_of = |name: &str| rest.iter().find(|outcome| outcome["repository"] == format!("github.com/acme/{name}")).map(|outcome| outcome["outcome"].clone());
    // a1 and a2 are already chosen as drafts; publishing them for real is allowed (undraft later).
    assert_eq!((outcome_of("a3"), outcome_of("a4"), outcome_of("a5")), (Some("done".into()), Some("done".into()), Some("done".into())), "{rest:?}");

    let listed = reconciled(&fixture.url);
    assert!(listed.iter().all(|changeset| changeset["externalState"] == "OPEN"), "all published in the end: {listed:?}");
    for name in names {
        assert_eq!(fixture.emulator.pull_request_count("acme", name), 1, "{name}");
    }
    // One per second: five openings take at least four seconds from first to last.
    let mut opened: Vec<i64> = names.iter().map(|name| flotilla_codehost_emulator::state::timestamp_millis(pull_request(&fixture.emulator_url, name, 1)["created_at"].as_str().expect("created_at")) / 1000).collect();
    opened.sort_unstable();
    assert!(opened[4] - opened[0] >= 3, "opened too fast for 1/second: {opened:?}");

    // Publishing again is refused per changeset, with the reason; a draft cannot come back.
    let again = bulk(&["--draft"]);
    assert!(again.iter().all(|outcome| outcome["outcome"] == "skipped" && outcome["message"].as_str().is_some_and(|message| message.contains("cannot become a draft"))), "{again:?}");
}

/// A paused rollout window (rate 0) keeps every changeset scheduled: nothing reaches GitHub.
#[test]
fn a_paused_rollout_window_publishes_nothing_and_says_scheduled() {
    let root = tempfile::tempdir().expect("temp dir");
    let windows = root.path().join("windows.json");
    std::fs::write(&windows, r#"[{"rate": 0}]"#).expect("write windows");
    let fixture = Fixture::start_with_server_args(&["app", "api"], &["--rollout-windows", windows.to_str().expect("utf-8")]);
    let file = fixture.root.path().join("readme-fix.batch.yaml");
    std::fs::write(&file, spec("Fix the README", "true")).expect("write spec");
    assert_eq!(apply(&fixture.url, &file).len(), 2);
    let output = run(&fixture.url, &["changesets", "list", "--batch-change", "readme-fix", "--json"], None);
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(listed.iter().all(|changeset| changeset["reconcilerState"] == "scheduled"), "{listed:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!((fixture.emulator.pull_request_count("acme", "app"), fixture.emulator.pull_request_count("acme", "api")), (0, 0));
    let status = run(&fixture.url, &["batch", "status", "readme-fix", "--json"], None);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON");
    assert_eq!(status["changesets"]["scheduled"], 2, "{status}");
}

#[test]
fn bad_rollout_windows_stop_the_server_with_the_reason() {
    let root = tempfile::tempdir().expect("temp dir");
    let windows = root.path().join("windows.yaml");
    std::fs::write(&windows, "- rate: 10/day\n").expect("write windows");
    let output = flotilla()
        .args(["server", "--listen", "127.0.0.1:0", "--data-dir", root.path().join("data").to_str().expect("utf-8"), "--rollout-windows", windows.to_str().expect("utf-8")])
        .output()
        .expect("run flotilla");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("windows.yaml: rollout window 1: rate \"10/day\" is not"), "{stderr}");
}
