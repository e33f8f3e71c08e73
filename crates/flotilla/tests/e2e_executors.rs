//! Several executor processes against one server: work spreads over all of them, an executor
//! killed with SIGKILL mid-job loses nothing (its job is requeued and finishes elsewhere, and
//! nothing is applied twice), and canceling a batch spec stops its running containers.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{flotilla, http_get, http_post, make_repository, start_executor, start_executor_with, start_server, wait_until};

const ADMIN: &str = "flt_u_executors_e2e_admin_token_000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_executors_e2e_executor_token_00000000000000000000000000";

fn run_client(url: &str, arguments: &[&str]) -> std::process::Output {
    flotilla()
        .args(arguments)
        .env("FLOTILLA_URL", url)
        .env("FLOTILLA_TOKEN", ADMIN)
        .stdin(Stdio::null())
        .output()
        .expect("run flotilla")
}

fn setup_code_host(url: &str, root: &std::path::Path, count: usize) {
    for index in 0..count {
        make_repository(root, &format!("service-{index:02}"), &[("README.md", "# service\n")]);
    }
    let repos = root.join("repos");
    assert!(run_client(url, &["codehost", "add", "--kind", "git", "--name", "fleet", "--path", repos.to_str().expect("utf-8")]).status.success());
    assert!(run_client(url, &["repos", "sync"]).status.success());
}

/// Starts a spec with `batch remote` and returns its id.
fn start_spec(url: &str, root: &std::path::Path, spec: &str) -> String {
    let path = root.join("spec.batch.yaml");
    std::fs::write(&path, spec).expect("write spec");
    let output = run_client(url, &["batch", "remote", "-f", path.to_str().expect("utf-8")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().rsplit('/').next().expect("id").to_owned()
}

fn status(url: &str, id: &str) -> serde_json::Value {
    http_get(url, ADMIN, &format!("/api/v1/batch-specs/{id}"))
}

#[test]
fn thirty_workspaces_over_three_executors_survive_a_killed_executor() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &["--heartbeat-timeout", "12"]);
    setup_code_host(&url, root.path(), 30);
    let mut executors: Vec<Option<support::Running>> = ["exec-a", "exec-b", "exec-c"]
        .iter()
        .map(|name| Some(start_executor(&url, EXECUTOR, name, &root.path().join(name), "process")))
        .collect();
    let id = start_spec(
        &url,
        root.path(),
        "name: fleet-wide\non:\n  - repositoriesMatchingQuery: repo:^fleet/\nsteps:\n  - run: sleep 1 && echo \"touched by $HOSTNAME\" >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Touch ${{ repository.name }}\n  branch: batch/touch\n  commit:\n    message: touch\n",
    );
    // Let every executor finish some work, then kill one in the middle of a job.
    wait_until(Duration::from_secs(90), "six completed workspaces", || status(&url, &id)["jobs"]["completed"].as_i64().unwrap_or(0) >= 6);
    wait_until(Duration::from_secs(30), "exec-a to be running a job", || {
        let page = http_get(&url, ADMIN, &format!("/api/v1/batch-specs/{id}/workspaces?state=processing"));
        page["workspaces"].as_array().expect("array").iter().any(|workspace| workspace["executor"] == "exec-a")
    });
    let mut killed = executors[0].take().expect("exec-a runs");
    killed.0.kill().expect("SIGKILL exec-a");
    let _ = killed.0.wait();

    wait_until(Duration::from_secs(120), "the batch spec to finish", || {
        let state = status(&url, &id)["state"].as_str().unwrap_or_default().to_owned();
        matches!(state.as_str(), "completed" | "failed" | "canceled")
    });
    let final_status = status(&url, &id);
    assert_eq!(final_status["state"], "completed", "{final_status}");
    assert_eq!(final_status["jobs"]["completed"], 30, "nothing lost: {final_status}");
    assert_eq!(final_status["jobs"]["failed"], 0, "{final_status}");

    let workspaces = http_get(&url, ADMIN, &format!("/api/v1/batch-specs/{id}/workspaces?limit=100"));
    let workspaces = workspaces["workspaces"].as_array().expect("array");
    assert_eq!(workspaces.len(), 30);
    for name in ["exec-a", "exec-b", "exec-c"] {
        assert!(workspaces.iter().any(|workspace| workspace["executor"] == name), "{name} did some of the work");
    }
    // Read in pages of 7 to follow the `next` cursor to the end.
    let mut specs: Vec<serde_json::Value> = Vec::new();
    let mut path = format!("/api/v1/batch-specs/{id}/changeset-specs?limit=7");
    loop {
        let page = http_get(&url, ADMIN, &path);
        specs.extend(page["changesetSpecs"].as_array().expect("array").iter().cloned());
        match page["next"].as_i64() {
            Some(next) => path = format!("/api/v1/batch-specs/{id}/changeset-specs?limit=7&after={next}"),
            None => break,
        }
    }
    let mut repositories: Vec<&str> = specs.iter().map(|spec| spec["repository"].as_str().expect("repository")).collect();
    repositories.sort();
    repositories.dedup();
    assert_eq!(specs.len(), 30, "one changeset spec per workspace, none twice");
    assert_eq!(repositories.len(), 30);

    // The metrics an autoscaler and dashboards read agree.
    let (code, metrics) = support::http_request(&url, "GET", "/metrics", None, None);
    assert_eq!(code, 200);
    for line in ["flotilla_queue_depth 0", "flotilla_jobs{state=\"completed\"} 30", "flotilla_job_duration_seconds_count{outcome=\"completed\"} 30"] {
        assert!(metrics.lines().any(|metric| metric == line), "missing `{line}` in\n{metrics}");
    }
    drop(executors);
}

#[test]
fn canceling_a_batch_spec_stops_its_running_containers() {
    if !support::podman_ready("the container cancel test") {
        return;
    }

    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
    setup_code_host(&url, root.path(), 3);
    let _executors: Vec<support::Running> = ["cancel-a", "cancel-b"]
        .iter()
        .map(|name| start_executor(&url, EXECUTOR, name, &root.path().join(name), "podman"))
        .collect();
    let id = start_spec(
        &url,
        root.path(),
        "name: long-running\non:\n  - repositoriesMatchingQuery: repo:^fleet/\nsteps:\n  - run: echo started && sleep 300\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: batch/long\n  commit:\n    message: m\n",
    );
    wait_until(Duration::from_secs(60), "two running workspaces", || status(&url, &id)["jobs"]["processing"].as_i64().unwrap_or(0) >= 2);
    // This test's containers: those with a bind mount from its temporary folder (other tests
    // may run containers at the same time).
    let root_path = root.path().to_string_lossy().into_owned();
    let running_containers = || {
        let listed = std::process::Command::new("podman").args(["ps", "--quiet"]).output().expect("podman ps");
        let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).collect();
        if ids.is_empty() {
            return 0;
        }
        let inspected = std::process::Command::new("podman")
            .args(["inspect", "--format", "{{range .Mounts}}{{.Source}} {{end}}"])
            .args(&ids)
            .output()
            .expect("podman inspect");
        String::from_utf8_lossy(&inspected.stdout).lines().filter(|line| line.contains(&root_path)).count()
    };
    wait_until(Duration::from_secs(30), "the step containers to run", || running_containers() >= 2);
    let started = std::time::Instant::now();
    http_post(&url, ADMIN, &format!("/api/v1/batch-specs/{id}/cancel"), "{}");
    wait_until(Duration::from_secs(30), "the batch spec to be canceled", || status(&url, &id)["state"] == "canceled");
    wait_until(Duration::from_secs(15), "the containers to be gone", || running_containers() == 0);
    assert!(started.elapsed() < Duration::from_secs(30), "canceled within seconds, took {:?}", started.elapsed());
    let final_status = status(&url, &id);
    assert_eq!(final_status["jobs"]["canceled"], 3, "{final_status}");
}

#[test]
fn executor_labels_in_a_spec_route_its_workspaces() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
    setup_code_host(&url, root.path(), 4);
    let _plain = start_executor(&url, EXECUTOR, "plain", &root.path().join("plain"), "process");
    let _gpu = start_executor_with(&url, EXECUTOR, "gpu", &root.path().join("gpu"), "process", &["--labels", "gpu=true"]);
    let id = start_spec(
        &url,
        root.path(),
        "name: needs-gpu\non:\n  - repositoriesMatchingQuery: repo:^fleet/\nexecutor:\n  labels:\n    gpu: true\nsteps:\n  - run: echo gpu >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: batch/gpu\n  commit:\n    message: m\n",
    );
    wait_until(Duration::from_secs(60), "the spec to complete", || status(&url, &id)["state"] == "completed");
    let workspaces = http_get(&url, ADMIN, &format!("/api/v1/batch-specs/{id}/workspaces"));
    let executors: Vec<&str> = workspaces["workspaces"].as_array().expect("array").iter().map(|workspace| workspace["executor"].as_str().expect("executor")).collect();
    assert_eq!(executors, vec!["gpu"; 4], "only the labelled executor takes routed jobs");
}
