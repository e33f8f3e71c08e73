//! A fleet for the outage tests: a `flotilla server` at a fixed port with its log kept in a
//! file (so a test can read what it said), a plain git code host of many repositories, specs
//! started with `batch remote`, and the end-state check every fault test wants (each workspace
//! completed exactly once, one changeset spec each, its log kept).

use std::io::Write;
use std::path::Path;
use std::process::Stdio;

use super::{Running, flotilla, http_get, make_repository, wait_for_line};

/// The access tokens of a fleet's admin and executors.
#[derive(Clone, Copy)]
pub struct Tokens {
    pub admin: &'static str,
    pub executor: &'static str,
}

/// `flotilla server` on `data` at `port` (so executors find a restarted one), its stderr in
/// `server-N.log` beside `data`.
pub fn start_server_logged(tokens: Tokens, data: &Path, port: u16, extra: &[&str]) -> Running {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::fs::File::create(data.with_file_name(format!("server-{start}.log"))).expect("create the server log");
    let mut child = flotilla()
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--admin-token", tokens.admin, "--executor-token", tokens.executor])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start flotilla server");
    wait_for_line(&mut child, "Flotilla server listening on ");
    Running(child)
}

/// Every line of the server logs beside `data` that contains `text`.
pub fn server_log_lines(data: &Path, text: &str) -> Vec<String> {
    let folder = data.parent().expect("data has a parent");
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(folder).expect("read the test folder") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("server-")) {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            lines.extend(log.lines().filter(|line| line.contains(text)).map(str::to_owned));
        }
    }
    lines
}

/// Runs a `flotilla` client command as the admin.
pub fn run_client(tokens: Tokens, url: &str, arguments: &[&str], stdin: Option<&str>) -> std::process::Output {
    let mut command = flotilla();
    command.args(arguments).env("FLOTILLA_URL", url).env("FLOTILLA_TOKEN", tokens.admin).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().expect("run flotilla");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait")
}

/// `count` repositories `service-NNN` (copies of one, with a README) registered as the plain
/// git code host `fleet` and mirrored.
pub fn setup_git_code_host(tokens: Tokens, url: &str, root: &Path, count: usize) {
    setup_git_code_host_with(tokens, url, root, count, &[("README.md", "# service\n")]);
}

/// The same with `files` in every repository. Copies are hard links of one repository (git
/// never rewrites an object file, and replaces refs by renaming), so hundreds take a moment.
pub fn setup_git_code_host_with(tokens: Tokens, url: &str, root: &Path, count: usize, files: &[(&str, &str)]) {
    make_repository(root, "template", files);
    let template = root.join("repos").join("template.git");
    for index in 0..count {
        hard_link_tree(&template, &root.join("repos").join(format!("service-{index:03}.git")));
    }
    std::fs::remove_dir_all(&template).expect("remove the template");
    let repos = root.join("repos");
    let added = run_client(tokens, url, &["codehost", "add", "--kind", "git", "--name", "fleet", "--path", repos.to_str().expect("utf-8")], None);
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let synced = run_client(tokens, url, &["repos", "sync"], None);
    assert!(synced.status.success(), "{}", String::from_utf8_lossy(&synced.stderr));
}

fn hard_link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create folder");
    for entry in std::fs::read_dir(from).expect("read folder") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            hard_link_tree(&entry.path(), &target);
        } else {
            std::fs::hard_link(entry.path(), &target).expect("hard link");
        }
    }
}

/// Starts a spec with `batch remote` and returns its id.
pub fn start_spec(tokens: Tokens, url: &str, root: &Path, spec: &str) -> String {
    let path = root.join("spec.batch.yaml");
    std::fs::write(&path, spec).expect("write spec");
    let output = run_client(tokens, url, &["batch", "remote", "-f", path.to_str().expect("utf-8")], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().rsplit('/').next().expect("id").to_owned()
}

pub fn spec_status(tokens: Tokens, url: &str, id: &str) -> serde_json::Value {
    http_get(url, tokens.admin, &format!("/api/v1/batch-specs/{id}"))
}

pub fn spec_finished(tokens: Tokens, url: &str, id: &str) -> bool {
    matches!(spec_status(tokens, url, id)["state"].as_str(), Some("completed" | "failed" | "canceled"))
}

pub fn workspaces(tokens: Tokens, url: &str, id: &str) -> Vec<serde_json::Value> {
    http_get(url, tokens.admin, &format!("/api/v1/batch-specs/{id}/workspaces?limit=5000"))["workspaces"].as_array().expect("workspaces").clone()
}

/// Asserts `count` workspaces, one per repository, each completed exactly once with exactly one
/// changeset spec and its step's log (containing `log_marker`) kept.
pub fn assert_each_workspace_completed_once(tokens: Tokens, url: &str, id: &str, count: usize, log_marker: &str) {
    let status = spec_status(tokens, url, id);
    if status["state"] != "completed" {
        let failures: Vec<String> = workspaces(tokens, url, id)
            .iter()
            .filter(|workspace| workspace["state"] != "completed")
            .map(|workspace| format!("{} {}: {}", workspace["repository"], workspace["state"], workspace["failureMessage"]))
            .collect();
        panic!("the batch spec did not complete: {status}\nworkspaces not completed: {failures:#?}");
    }
    assert_eq!(status["jobs"]["completed"], count as i64, "nothing lost: {status}");
    assert_eq!(status["workspaces"], count as i64, "no workspace twice: {status}");
    let listed = workspaces(tokens, url, id);
    let mut repositories: Vec<&str> = listed.iter().map(|workspace| workspace["repository"].as_str().expect("repository")).collect();
    repositories.sort_unstable();
    repositories.dedup();
    assert_eq!((listed.len(), repositories.len()), (count, count), "one workspace per repository");
    assert!(listed.iter().all(|workspace| workspace["state"] == "completed"), "every workspace completed: {listed:?}");

    let mut specs = Vec::new();
    let mut path = format!("/api/v1/batch-specs/{id}/changeset-specs?limit=50");
    loop {
        let page = http_get(url, tokens.admin, &path);
        specs.extend(page["changesetSpecs"].as_array().expect("array").iter().cloned());
        match page["next"].as_i64() {
            Some(next) => path = format!("/api/v1/batch-specs/{id}/changeset-specs?limit=50&after={next}"),
            None => break,
        }
    }
    let mut spec_repositories: Vec<&str> = specs.iter().map(|spec| spec["repository"].as_str().expect("repository")).collect();
    spec_repositories.sort_unstable();
    spec_repositories.dedup();
    assert_eq!((specs.len(), spec_repositories.len()), (count, count), "one changeset spec per workspace, none twice");

    for workspace in &listed {
        let job = workspace["jobId"].as_i64().expect("a job");
        let logs = http_get(url, tokens.admin, &format!("/api/v1/jobs/{job}/logs")).to_string();
        assert!(logs.contains(log_marker), "the log of the completed step of {} is kept: {logs}", workspace["repository"]);
    }
}
