//! Incoming code host webhooks keep changesets fresh without polling: the server's periodic
//! sync is set to an hour, so only a webhook can tell it what happens on the forge. The project's
//! emulator of GitHub (and of GitLab, over the same state) delivers signed events to the
//! server's `/api/webhooks/{code host}` as the forges do: a merge shows as merged, an approval
//! as approved and a failed check as failed within seconds, while a delivery signed with the
//! wrong secret is refused (401) and changes nothing.

mod support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use flotilla_codehost_emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig, Hook, HookKind, NewRepository, Review};
use support::{flotilla, start_executor, start_server, wait_until};

const ADMIN: &str = "flt_u_webhook_e2e_admin_token_000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_webhook_e2e_executor_token_0000000000000000000000000000";
const SECRET: &str = "webhook-secret-shared-with-the-forge-0123456789";

/// How soon a webhook's news must show (the periodic sync would take an hour).
const PROMPTLY: Duration = Duration::from_secs(10);

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

/// A POST with any headers; returns the status and the body.
fn post(url: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the server");
    let mut request = format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\n");
    if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("content-length")) {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send head");
    let _ = stream.write_all(body.as_bytes());
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0), body.to_owned())
}

fn github_signature(secret: &str, body: &str) -> String {
    format!("sha256={}", hex_digits(&flotilla_codehost_emulator::webhooks::hmac_sha256(secret.as_bytes(), body.as_bytes())))
}

fn hex_digits(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn spec(host: &str) -> String {
    let pattern = host.replace('.', "\\.");
    format!(
        "name: readme-fix\non:\n  - repositoriesMatchingQuery: repo:^{pattern}/acme/\nsteps:\n  - run: |\n      if [ \"${{{{ repository.name }}}}\" != \"{host}/acme/docs\" ]; then echo fixed >> README.md; fi\n    container: alpine:3\nchangesetTemplate:\n  title: Fix the README\n  body: Fixes the README\n  branch: batch/readme-fix\n  commit:\n    message: Fix the README\n  published: true\n"
    )
}

/// The changesets of `readme-fix`, by repository name without the host.
fn changesets(url: &str) -> Vec<serde_json::Value> {
    let output = run(url, &["changesets", "list", "--batch-change", "readme-fix", "--json"], None);
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

fn field(listed: &[serde_json::Value], repository_suffix: &str, name: &str) -> Option<String> {
    listed.iter().find(|changeset| changeset["repository"].as_str().is_some_and(|repository| repository.ends_with(repository_suffix))).and_then(|changeset| changeset[name].as_str().map(str::to_owned))
}

/// Waits until `repository`'s changeset has `name` = `value`; returns how long it took.
fn wait_for_state(url: &str, repository: &str, name: &str, value: &str) -> Duration {
    let started = Instant::now();
    wait_until(PROMPTLY, &format!("{repository}'s {name} to become {value} through a webhook"), || field(&changesets(url), repository, name).as_deref() == Some(value));
    started.elapsed()
}

/// The emulator (its runtime must outlive it), a server that polls only hourly, an executor,
/// and a forge code host mirroring `acme`.
struct Fixture {
    _executor: support::Running,
    _server: support::Running,
    emulator: flotilla_codehost_emulator::EmulatorHandle,
    _runtime: tokio::runtime::Runtime,
    url: String,
    root: tempfile::TempDir,
}

impl Fixture {
    fn start(kind: &str, host: &str, api_path: &str) -> Fixture {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
        for name in ["app", "api", "docs"] {
            runtime.block_on(emulator.create_repository(NewRepository::new("acme", name))).expect("repository");
        }
        let root = tempfile::tempdir().expect("temp dir");
        let (server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &["--changeset-sync-interval", "3600"]);
        let executor = start_executor(&url, EXECUTOR, "webhooks", &root.path().join("executor"), "process");
        let api_url = format!("{}{api_path}", emulator.url());
        let added = run(&url, &["codehost", "add", "--kind", kind, "--name", host, "--api-url", &api_url, "--org", "acme", "--token-stdin"], Some(DEFAULT_TOKEN));
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
        assert!(run(&url, &["repos", "sync"], None).status.success());
        Fixture { _executor: executor, _server: server, emulator, _runtime: runtime, url, root }
    }

    /// Sets the webhook secret with the CLI; returns the URL it printed.
    fn set_secret(&self, host: &str) -> String {
        let output = run(&self.url, &["codehost", "webhook", "set", host, "--secret-stdin"], Some(&format!("{SECRET}\n")));
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// Applies the spec and waits until the pull requests of app and api are open.
    fn apply(&self, host: &str) {
        let file = self.root.path().join("readme-fix.batch.yaml");
        std::fs::write(&file, spec(host)).expect("write spec");
        let output = run(&self.url, &["batch", "apply", "-f", file.to_str().expect("utf-8")], None);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        wait_until(Duration::from_secs(90), "the pull requests to open", || {
            let listed = changesets(&self.url);
            listed.len() == 2 && listed.iter().all(|changeset| changeset["reconcilerState"] == "completed" && changeset["externalState"] == "OPEN")
        });
    }
}

#[test]
fn github_webhooks_update_changesets_at_once_and_wrong_signatures_change_nothing() {
    let fixture = Fixture::start("github", "github.com", "");
    let url = fixture.url.clone();

    // Before a secret is set, deliveries are refused with what to do; unknown hosts are 404.
    let (status, body) = post(&url, "/api/webhooks/github.com", &[("X-GitHub-Event", "ping")], "{}");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("flotilla codehost webhook set github.com --secret-stdin"), "{body}");
    assert_eq!(post(&url, "/api/webhooks/nowhere", &[("X-GitHub-Event", "ping")], "{}").0, 404);

    let hook_url = fixture.set_secret("github.com");
    assert_eq!(hook_url, format!("{url}/api/webhooks/github.com"));
    // A short secret is refused with advice.
    let short = run(&url, &["codehost", "webhook", "set", "github.com", "--secret-stdin"], Some("tiny"));
    assert!(!short.status.success() && String::from_utf8_lossy(&short.stderr).contains("openssl rand -hex 32"), "{}", String::from_utf8_lossy(&short.stderr));

    // GitHub's ping, signed, answers 200; unsigned or mis-signed it is 401 with what to check.
    let ping = r#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    let signature = github_signature(SECRET, ping);
    assert_eq!(post(&url, "/api/webhooks/github.com", &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &signature)], ping).0, 200);
    let (status, body) = post(&url, "/api/webhooks/github.com", &[("X-GitHub-Event", "ping")], ping);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("X-Hub-Signature-256"), "{body}");
    let tampered = ping.replace("awesome", "awful");
    let (status, body) = post(&url, "/api/webhooks/github.com", &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &signature)], &tampered);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("does not match"), "{body}");
    // Over 25 MiB is refused before it is read.
    let (status, _) = post(&url, "/api/webhooks/github.com", &[("X-GitHub-Event", "ping"), ("Content-Length", "26214401")], "");
    assert_eq!(status, 413);

    fixture.emulator.add_webhook(Hook { url: hook_url.clone(), secret: SECRET.to_owned(), kind: HookKind::Github });
    fixture.apply("github.com");

    // A merge on GitHub: merged within seconds, though the periodic sync is an hour away.
    fixture.emulator.merge_pull_request("acme", "api", 1).expect("merge");
    let merged_after = wait_for_state(&url, "acme/api", "externalState", "MERGED");
    // An approval, then a failing check run.
    fixture.emulator.add_review("acme", "app", 1, Review { user: "reviewer".into(), state: "APPROVED".into() }).expect("review");
    let approved_after = wait_for_state(&url, "acme/app", "reviewState", "APPROVED");
    fixture
        .emulator
        .add_check_run("acme", "app", "batch/readme-fix", flotilla_codehost_emulator::CheckRun { name: "ci".into(), status: "completed".into(), conclusion: Some("failure".into()) })
        .expect("check run");
    let failed_after = wait_for_state(&url, "acme/app", "checkState", "FAILED");
    eprintln!("webhook to visible state: merge {merged_after:?}, approval {approved_after:?}, check {failed_after:?}");

    // A forge configured with another secret: its delivery is refused and changes nothing.
    fixture.emulator.clear_webhooks();
    fixture.emulator.add_webhook(Hook { url: hook_url, secret: "not-the-secret-the-server-has-0000".to_owned(), kind: HookKind::Github });
    let before = fixture.emulator.webhook_deliveries().len();
    fixture.emulator.close_pull_request("acme", "app", 1).expect("close");
    wait_until(PROMPTLY, "the mis-signed delivery", || fixture.emulator.webhook_deliveries().len() > before);
    let refused = fixture.emulator.webhook_deliveries().pop().expect("a delivery");
    assert_eq!((refused.event.as_str(), refused.status), ("pull_request", Some(401)), "{refused:?}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(field(&changesets(&url), "acme/app", "externalState").as_deref(), Some("OPEN"), "a refused delivery changed nothing");
    // Every accepted delivery was answered 200 or 202.
    let deliveries = fixture.emulator.webhook_deliveries();
    assert!(deliveries[..before].iter().all(|delivery| matches!(delivery.status, Some(200 | 202))), "{deliveries:?}");
}

#[test]
fn gitlab_webhooks_update_merge_requests_at_once() {
    let fixture = Fixture::start("gitlab", "gitlab.example", "/api/v4");
    let hook_url = fixture.set_secret("gitlab.example");
    assert!(hook_url.ends_with("/api/webhooks/gitlab.example"), "{hook_url}");
    // GitLab sends the secret itself: the wrong one is refused.
    let (status, body) = post(&fixture.url, "/api/webhooks/gitlab.example", &[("X-Gitlab-Event", "Merge Request Hook"), ("X-Gitlab-Token", "wrong")], "{}");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("X-Gitlab-Token"), "{body}");

    fixture.emulator.add_webhook(Hook { url: hook_url, secret: SECRET.to_owned(), kind: HookKind::Gitlab });
    fixture.apply("gitlab.example");
    fixture.emulator.merge_pull_request("acme", "app", 1).expect("merge");
    let merged_after = wait_for_state(&fixture.url, "acme/app", "externalState", "MERGED");
    eprintln!("GitLab webhook to visible merge: {merged_after:?}");
    assert_eq!(field(&changesets(&fixture.url), "acme/api", "externalState").as_deref(), Some("OPEN"), "only the merged one changed");
}
