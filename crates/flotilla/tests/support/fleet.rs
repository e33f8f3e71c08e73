//! A fleet for the outage tests: a `flotilla server` at a fixed port with its log kept in a
//! file (so a test can read what it said), a plain git code host of many repositories, specs
//! started with `batch remote`, and the end-state check every fault test wants (each workspace
//! completed exactly once, one changeset spec each, its log kept).

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
    super::batch::run_client_as(url, tokens.admin, arguments, stdin)
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
    super::batch::start_spec_as(url, tokens.admin, root, spec)
}

pub fn spec_status(tokens: Tokens, url: &str, id: &str) -> serde_json::Value {
    super::batch::batch_spec_status(url, tokens.admin, id)
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
    super::batch::assert_every_workspace_completed_once(url, tokens.admin, id, count, log_marker);
}
