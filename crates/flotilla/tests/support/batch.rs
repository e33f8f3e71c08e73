//! Helpers for the tests that run a batch spec through real server processes and then check
//! that nothing was lost or done twice: the CLI as a user runs it, fresh PostgreSQL databases,
//! SIGKILL, and the end-state checks of a batch spec (every workspace completed once, one
//! changeset spec each, logs kept).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use super::{Running, flotilla, http_get};

/// Runs the CLI against `url` with `token`, feeding `stdin` when given.
pub fn run_client_as(url: &str, token: &str, arguments: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut command = flotilla();
    command.args(arguments).env("FLOTILLA_URL", url).env("FLOTILLA_TOKEN", token).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().expect("run flotilla");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

/// Kills the process with SIGKILL (no chance to clean up) and reaps it.
pub fn sigkill(process: Running) {
    let mut process = process;
    process.0.kill().expect("SIGKILL");
    let _ = process.0.wait();
}

/// A fresh PostgreSQL database for one test, from FLOTILLA_TEST_POSTGRES_URL (which CI sets;
/// without it the test fails under FLOTILLA_REQUIRE_ALL_TOOLS, else says it did not run).
pub fn fresh_postgres_database(name: &str) -> Option<String> {
    let Ok(base) = std::env::var("FLOTILLA_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("FLOTILLA_REQUIRE_ALL_TOOLS").is_none(),
            "FLOTILLA_TEST_POSTGRES_URL is not set: start PostgreSQL (pg_ctlcluster 15 main start) and set it, as .ci/run does"
        );
        eprintln!("NOTICE: FLOTILLA_TEST_POSTGRES_URL is not set; the PostgreSQL test {name} did not run");
        return None;
    };
    let database = format!("flotilla_e2e_{name}_{}", std::process::id());
    for statement in [format!("DROP DATABASE IF EXISTS {database}"), format!("CREATE DATABASE {database}")] {
        let status = std::process::Command::new("psql").arg(&base).args(["-q", "-c", &statement]).status().expect("run psql");
        assert!(status.success(), "psql {statement} failed");
    }
    let (prefix, _) = base.rsplit_once('/').expect("the URL ends with a database name");
    Some(format!("{prefix}/{database}"))
}

/// Starts a spec with `batch remote` and returns its id.
pub fn start_spec_as(url: &str, token: &str, folder: &Path, spec: &str) -> String {
    let path = folder.join("spec.batch.yaml");
    std::fs::write(&path, spec).expect("write spec");
    let output = run_client_as(url, token, &["batch", "remote", "-f", path.to_str().expect("utf-8")], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().rsplit('/').next().expect("id").to_owned()
}

/// A batch spec's state and job counts.
pub fn batch_spec_status(url: &str, token: &str, id: &str) -> serde_json::Value {
    http_get(url, token, &format!("/api/v1/batch-specs/{id}"))
}

/// Every changeset spec of a batch spec, following the `next` cursor.
pub fn all_changeset_specs(url: &str, token: &str, id: &str) -> Vec<serde_json::Value> {
    let mut specs = Vec::new();
    let mut path = format!("/api/v1/batch-specs/{id}/changeset-specs?limit=50");
    loop {
        let page = http_get(url, token, &path);
        specs.extend(page["changesetSpecs"].as_array().expect("array").iter().cloned());
        match page["next"].as_i64() {
            Some(next) => path = format!("/api/v1/batch-specs/{id}/changeset-specs?limit=50&after={next}"),
            None => return specs,
        }
    }
}

/// Asserts that a batch spec ended with `count` workspaces, one per repository, each completed
/// exactly once with exactly one changeset spec, and its step's log (holding `log_marker`) kept.
pub fn assert_every_workspace_completed_once(url: &str, token: &str, id: &str, count: usize, log_marker: &str) {
    let status = batch_spec_status(url, token, id);
    let listed = http_get(url, token, &format!("/api/v1/batch-specs/{id}/workspaces?limit=5000"))["workspaces"].as_array().expect("workspaces").clone();
    if status["state"] != "completed" {
        let failures: Vec<String> = listed
            .iter()
            .filter(|workspace| workspace["state"] != "completed")
            .map(|workspace| format!("{} {}: {}", workspace["repository"], workspace["state"], workspace["failureMessage"]))
            .collect();
        panic!("the batch spec did not complete: {status}\nworkspaces not completed: {failures:#?}");
    }
    assert_eq!(status["jobs"]["completed"], count as i64, "nothing lost: {status}");
    assert_eq!(status["workspaces"], count as i64, "no workspace twice: {status}");
    let mut repositories: Vec<&str> = listed.iter().map(|workspace| workspace["repository"].as_str().expect("repository")).collect();
    repositories.sort_unstable();
    repositories.dedup();
    assert_eq!((listed.len(), repositories.len()), (count, count), "one workspace per repository");
    assert!(listed.iter().all(|workspace| workspace["state"] == "completed"), "every workspace completed");

    let specs = all_changeset_specs(url, token, id);
    let mut spec_repositories: Vec<&str> = specs.iter().map(|spec| spec["repository"].as_str().expect("repository")).collect();
    spec_repositories.sort_unstable();
    spec_repositories.dedup();
    assert_eq!((specs.len(), spec_repositories.len()), (count, count), "one changeset spec per workspace, none twice");

    for workspace in &listed {
        let job = workspace["jobId"].as_i64().expect("a job");
        let logs = http_get(url, token, &format!("/api/v1/jobs/{job}/logs")).to_string();
        assert!(logs.contains(log_marker), "the log of the completed step of {} is kept: {logs}", workspace["repository"]);
    }
}
