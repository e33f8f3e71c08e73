//! Secret values never reach what the server stores, even from an executor that does not
//! redact: this test plays such an executor against the real server (dequeue with the
//! executor token, report with the job token), puts a secret's value in a log command, log
//! output, a step's stdout and outputs, failure messages and a diff, and reads everything
//! back through the API and the database files. The real executor's own redaction is proved
//! by `e2e_server.rs`'s `secrets_reach_the_step_but_only_their_placeholder_is_stored`; the
//! last test here runs the real executor on a step that writes the secret into a file.

mod support;

use std::path::Path;
use std::time::Duration;

use support::{http_request, make_repository, start_executor, start_server, wait_until};

const ADMIN: &str = "flt_u_redaction_admin_token_00000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_redaction_executor_token_000000000000000000000000000";
const SECRET: &str = "s3cr3t-value-that-must-not-leak";
const PLACEHOLDER: &str = "${{ secrets.DEPLOY_TOKEN }}";

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

/// A server with the secret DEPLOY_TOKEN, a code host of `repositories` (each with a README)
/// and a batch spec whose one step uses the secret on each; returns the batch spec's id.
fn server_with_a_secret_and_a_spec(root: &Path, repositories: &[&str], url: &str) -> String {
    let admin = format!("token {ADMIN}");
    for name in repositories {
        make_repository(root, name, &[("README.md", &format!("# {name}\n"))]);
    }
    let (status, body) = http_request(url, "PUT", "/api/v1/secrets/DEPLOY_TOKEN", Some(&admin), Some(&serde_json::json!({"value": SECRET}).to_string()));
    assert!((200..300).contains(&status), "{status} {body}");
    let (status, body) = http_request(url, "POST", "/api/v1/code-hosts", Some(&admin), Some(&serde_json::json!({"kind": "git", "name": "local", "path": root.join("repos")}).to_string()));
    assert_eq!(status, 201, "{body}");
    let (status, _) = http_request(url, "POST", "/api/v1/repositories/sync", Some(&admin), Some(r#"{"wait": true}"#));
    assert_eq!(status, 204);
    let on: String = repositories.iter().map(|name| format!("  - repository: local/{name}\n")).collect();
    let spec = format!(
        "name: redaction\non:\n{on}steps:\n  - run: echo \"$DEPLOY_TOKEN\" > token.txt\n    container: alpine:3\n    env:\n      - DEPLOY_TOKEN\n    outputs:\n      said:\n        value: ${{{{ step.stdout }}}}\nchangesetTemplate:\n  title: ${{{{ outputs.said }}}}\n  branch: batch/redaction\n  commit:\n    message: m\n"
    );
    let (status, body) = http_request(url, "POST", "/api/v1/batch-specs", Some(&admin), Some(&serde_json::json!({"spec": spec}).to_string()));
    assert_eq!(status, 201, "{body}");
    json(&body)["id"].as_str().expect("batch spec id").to_owned()
}

/// Dequeues one job as an executor would.
fn dequeue(url: &str) -> serde_json::Value {
    let request = serde_json::json!({"executor": {"name": "leaky", "version": "0", "hostname": "h", "os": "linux", "architecture": "x86_64", "runtime": "process"}}).to_string();
    let mut job = serde_json::Value::Null;
    wait_until(Duration::from_secs(30), "a job to dequeue", || {
        let (status, body) = http_request(url, "POST", "/.executors/queue/dequeue", Some(&format!("token-executor {EXECUTOR}")), Some(&request));
        if status == 200 {
            job = json(&body);
        }
        status == 200
    });
    job
}

/// A step result whose stdout, stderr and outputs hold the secret, with `diff`.
fn leaky_step_result(diff: &str) -> serde_json::Value {
    let mut result = flotilla_wire::StepResult {
        changed_files: flotilla_wire::ChangedFiles { modified: vec!["README.md".to_owned()], ..Default::default() },
        stdout: format!("the token is {SECRET}\n"),
        stderr: format!("warning: {SECRET} printed\n"),
        ..Default::default()
    };
    result.outputs.insert("said".to_owned(), serde_json::json!(format!("the token is {SECRET}")));
    result.outputs.insert("nested".to_owned(), serde_json::json!({"list": [SECRET]}));
    result.set_diff(diff.as_bytes());
    serde_json::to_value(&result).expect("step result JSON")
}

fn readme_diff(added: &str) -> String {
    format!("diff --git README.md README.md\n--- README.md\n+++ README.md\n@@ -1 +1,2 @@\n # repository\n+{added}\n")
}

/// Reports a log entry whose command and output hold the secret.
fn leaky_log(url: &str, job_id: i64, bearer: &str) {
    let start = serde_json::json!({"key": "step.0", "command": [format!("echo {SECRET}")], "started_at_ms": 1}).to_string();
    let (status, body) = http_request(url, "POST", &format!("/.executors/jobs/{job_id}/log"), Some(bearer), Some(&start));
    assert_eq!(status, 200, "{body}");
    let index = json(&body)["index"].as_i64().expect("index");
    let update = serde_json::json!({"output": format!("stdout: the token is {SECRET}\n"), "exit_code": 0, "duration_ms": 5}).to_string();
    let (status, body) = http_request(url, "PATCH", &format!("/.executors/jobs/{job_id}/log/{index}"), Some(bearer), Some(&update));
    assert_eq!(status, 204, "{body}");
    // A short command's entry arrives whole: its output comes with the start.
    let whole = serde_json::json!({"key": "step.1", "command": ["true"], "started_at_ms": 2, "output": format!("stdout: again {SECRET}\n"), "exit_code": 0, "duration_ms": 3}).to_string();
    let (status, body) = http_request(url, "POST", &format!("/.executors/jobs/{job_id}/log"), Some(bearer), Some(&whole));
    assert_eq!(status, 200, "{body}");
}

fn assert_database_files_hold_no_secret(data: &Path) {
    for entry in std::fs::read_dir(data).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("flotilla.sqlite")) {
            let bytes = std::fs::read(&path).expect("read database file");
            assert!(!bytes.windows(SECRET.len()).any(|window| window == SECRET.as_bytes()), "{} holds the secret", path.display());
        }
    }
}

#[test]
fn a_non_redacting_executor_cannot_store_a_secret() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let (_server, url) = start_server(&data, ADMIN, EXECUTOR, &[]);
    let batch_spec = server_with_a_secret_and_a_spec(root.path(), &["fails", "completes", "commits-the-secret"], &url);
    let admin = format!("token {ADMIN}");

    let mut job_ids = Vec::new();
    for _ in 0..3 {
        let job = dequeue(&url);
        assert_eq!(job["secrets"]["DEPLOY_TOKEN"], SECRET, "the executor gets the value to run the step");
        let id = job["id"].as_i64().expect("job id");
        job_ids.push(id);
        let bearer = format!("Bearer {}", job["token"].as_str().expect("job token"));
        leaky_log(&url, id, &bearer);
        let repository = job["repository_name"].as_str().expect("repository");
        let (path, report) = if repository.ends_with("/fails") {
            let failure = serde_json::json!({
                "message": format!("step 1 exited with code 1\n\nstandard error:\n  bad token {SECRET}\n"),
                "infrastructure": false,
                "cache_entries": [{"key": "k-step-0", "value": leaky_step_result(&readme_diff("fine"))}],
            });
            ("fail", failure)
        } else if repository.ends_with("/completes") {
            let result = leaky_step_result(&readme_diff("a safe change"));
            ("complete", serde_json::json!({"final_result": result.clone(), "cache_entries": [{"key": "k-step-0", "value": result}]}))
        } else {
            let result = leaky_step_result(&readme_diff(&format!("token: {SECRET}")));
            ("complete", serde_json::json!({"final_result": result.clone(), "cache_entries": [{"key": "k-step-0", "value": result}]}))
        };
        let (status, body) = http_request(&url, "POST", &format!("/.executors/jobs/{id}/{path}"), Some(&bearer), Some(&report.to_string()));
        assert_eq!(status, 204, "{repository}: {body}");
    }

    // Everything the API shows: logs, workspaces (with failure messages), changeset specs.
    let mut shown = String::new();
    for id in &job_ids {
        let (status, logs) = http_request(&url, "GET", &format!("/api/v1/jobs/{id}/logs"), Some(&admin), None);
        assert_eq!(status, 200, "{logs}");
        assert!(logs.contains(&format!("echo {PLACEHOLDER}")), "the command is redacted: {logs}");
        assert!(logs.contains(&format!("the token is {PLACEHOLDER}")), "the output is redacted: {logs}");
        shown.push_str(&logs);
    }
    let (_, workspaces) = http_request(&url, "GET", &format!("/api/v1/batch-specs/{batch_spec}/workspaces"), Some(&admin), None);
    let (_, changeset_specs) = http_request(&url, "GET", &format!("/api/v1/batch-specs/{batch_spec}/changeset-specs"), Some(&admin), None);
    shown.push_str(&workspaces);
    shown.push_str(&changeset_specs);
    assert!(!shown.contains(SECRET), "the API shows the secret: {shown}");

    let workspaces = json(&workspaces);
    let workspace = |name: &str| {
        workspaces["workspaces"]
            .as_array()
            .expect("workspaces")
            .iter()
            .find(|workspace| workspace.to_string().contains(&format!("local/{name}")))
            .unwrap_or_else(|| panic!("workspace {name} in {workspaces}"))
            .clone()
    };
    let failed = workspace("fails");
    assert_eq!(failed["state"], "failed");
    assert!(failed["failureMessage"].as_str().expect("message").contains(&format!("bad token {PLACEHOLDER}")), "{failed}");
    assert_eq!(workspace("completes")["state"], "completed");
    let committed = workspace("commits-the-secret");
    assert_eq!(committed["state"], "failed", "a diff holding a secret is refused: {committed}");
    assert!(
        committed["failureMessage"].as_str().expect("message").starts_with("the diff contains the value of secret DEPLOY_TOKEN"),
        "{committed}"
    );
    let changeset_specs = json(&changeset_specs);
    let specs = changeset_specs["changesetSpecs"].as_array().expect("changeset specs");
    assert_eq!(specs.len(), 1, "only the workspace without the secret in its diff: {changeset_specs}");
    assert_eq!(specs[0]["title"], format!("the token is {PLACEHOLDER}"), "outputs are redacted before templates see them");

    assert_database_files_hold_no_secret(&data);
}

#[test]
fn a_real_step_that_commits_a_secret_fails_its_workspace() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let (_server, url) = start_server(&data, ADMIN, EXECUTOR, &[]);
    let batch_spec = server_with_a_secret_and_a_spec(root.path(), &["solo"], &url);
    let _executor = start_executor(&url, EXECUTOR, "real", &root.path().join("executor"), "process");
    let admin = format!("token {ADMIN}");
    let mut workspace = serde_json::Value::Null;
    wait_until(Duration::from_secs(45), "the workspace to end", || {
        let (_, body) = http_request(&url, "GET", &format!("/api/v1/batch-specs/{batch_spec}/workspaces"), Some(&admin), None);
        workspace = json(&body)["workspaces"][0].clone();
        matches!(workspace["state"].as_str(), Some("completed" | "failed"))
    });
    assert_eq!(workspace["state"], "failed", "{workspace}");
    assert!(workspace["failureMessage"].as_str().expect("message").starts_with("the diff contains the value of secret DEPLOY_TOKEN"), "{workspace}");
    let job = workspace["jobId"].as_i64().expect("job id");
    let (_, logs) = http_request(&url, "GET", &format!("/api/v1/jobs/{job}/logs"), Some(&admin), None);
    assert!(!logs.contains(SECRET), "{logs}");
    assert_database_files_hold_no_secret(&data);
}

#[test]
fn a_server_that_did_not_hand_out_the_job_resolves_its_secrets_again() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let (server, url) = start_server(&data, ADMIN, EXECUTOR, &[]);
    let batch_spec = server_with_a_secret_and_a_spec(root.path(), &["solo"], &url);
    let job = dequeue(&url);
    let id = job["id"].as_i64().expect("job id");
    let bearer = format!("Bearer {}", job["token"].as_str().expect("job token"));
    // Another server process on the same data: it never saw the job handed out, so it has
    // nothing in memory for it (as a second server on one PostgreSQL database would).
    drop(server);
    let (_server, url) = start_server(&data, ADMIN, EXECUTOR, &[]);
    leaky_log(&url, id, &bearer);
    let failure = serde_json::json!({"message": format!("bad token {SECRET}"), "infrastructure": false}).to_string();
    let (status, body) = http_request(&url, "POST", &format!("/.executors/jobs/{id}/fail"), Some(&bearer), Some(&failure));
    assert_eq!(status, 204, "{body}");
    let admin = format!("token {ADMIN}");
    let (_, logs) = http_request(&url, "GET", &format!("/api/v1/jobs/{id}/logs"), Some(&admin), None);
    assert!(logs.contains(&format!("the token is {PLACEHOLDER}")) && !logs.contains(SECRET), "{logs}");
    let (_, workspaces) = http_request(&url, "GET", &format!("/api/v1/batch-specs/{batch_spec}/workspaces"), Some(&admin), None);
    assert_eq!(json(&workspaces)["workspaces"][0]["failureMessage"], format!("bad token {PLACEHOLDER}"), "{workspaces}");
    assert_database_files_hold_no_secret(&data);
}
