//! Real-world specs from the shared Sourcegraph corpus, unchanged, run end to end in podman
//! containers (an `alpine:3` built from local files), and give the changeset specs
//! Sourcegraph would give: the same rendered title, body, branch, publication and diff.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;

use support::{Running, flotilla, free_port, make_repository, wait_for_line};

fn corpus(relative: &str) -> PathBuf {
    let directory = std::env::var_os("FLOTILLA_COMPAT_SPECS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compat-specs"));
    let path = directory.join("sourcegraph-examples").join(relative);
    assert!(path.is_file(), "missing corpus spec {}: set FLOTILLA_COMPAT_SPECS", path.display());
    path
}

/// Runs `batch preview --json` of a corpus spec; returns the changeset specs by repository.
fn preview(url: &str, token: &str, spec: &Path) -> Vec<serde_json::Value> {
    let output = flotilla()
        .args(["batch", "preview", "--json", "-f"])
        .arg(spec)
        .env("FLOTILLA_URL", url)
        .env("FLOTILLA_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .expect("batch preview");
    assert!(output.status.success(), "{}: {}", spec.display(), String::from_utf8_lossy(&output.stderr));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let mut specs: Vec<serde_json::Value> = document["changesetSpecs"].as_array().expect("array").clone();
    specs.sort_by_key(|spec| spec["repository"].as_str().unwrap_or_default().to_owned());
    specs
}

#[test]
fn corpus_specs_run_unchanged_and_give_sourcegraphs_changesets() {
    if !support::podman_ready("the corpus specs") {
        return;
    }

    let root = tempfile::tempdir().expect("temp dir");
    // A code host named like Sourcegraph's, so the specs' queries match unchanged.
    make_repository(root.path(), "sourcegraph/automation-testing", &[(".gitignore", "target/\n"), ("README.md", "# testing\n")]);
    make_repository(
        root.path(),
        "sourcegraph/docs",
        &[("README.md", "Use a whitelist, not a blacklist.\n"), ("vendor/lib/NOTES.md", "whitelist\n"), ("main.go", "package main // whitelist\n")],
    );
    make_repository(root.path(), "sourcegraph/ci-config", &[("circle-ci.yml", "image: mydockerhub-user/builder\n"), ("README.md", "# ci\n")]);
    let repos = root.path().join("repos");

    let mut child = flotilla()
        .args(["up", "--runtime", "podman", "--executors", "2", "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(root.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flotilla up");
    let (first, _) = wait_for_line(&mut child, "Flotilla is running at ");
    let _guard = Running(child);
    let url = first.trim_start_matches("Flotilla is running at ").to_owned();
    let credentials = std::fs::read_to_string(root.path().join("data/credentials.env")).expect("credentials");
    let token = credentials.lines().find_map(|line| line.strip_prefix("FLOTILLA_TOKEN=")).expect("token").to_owned();
    let client = |arguments: &[&str]| {
        let output = flotilla().args(arguments).env("FLOTILLA_URL", &url).env("FLOTILLA_TOKEN", &token).stdin(Stdio::null()).output().expect("run");
        assert!(output.status.success(), "{arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    client(&["codehost", "add", "--kind", "git", "--name", "github.com", "--path", repos.to_str().expect("utf-8")]);
    client(&["repos", "sync"]);

    // `whitelist OR blacklist lang:markdown -file:vendor repo:sourcegraph`, then sed over
    // Markdown files outside vendor/.
    let specs = preview(&url, &token, &corpus("misc/update-language.sedspec.yaml"));
    assert_eq!(specs.len(), 1, "only the repository with Markdown matches: {specs:?}");
    let docs = &specs[0];
    assert_eq!(docs["repository"], "github.com/sourcegraph/docs");
    assert_eq!(docs["title"], "Replace whitelist/blacklist with allowlist/denylist");
    assert_eq!(docs["headRef"], "refs/heads/batch-changes/allowlist-denylist");
    assert_eq!(docs["published"], false);
    let diff = docs["diff"].as_str().expect("diff");
    assert!(diff.contains("-Use a whitelist, not a blacklist.\n+Use a allowlist, not a denylist.\n"), "{diff}");
    assert!(!diff.contains("vendor/") && !diff.contains("main.go"), "vendor and non-Markdown files untouched: {diff}");

    // `repo:automation-testing$`, a `files:` entry appended to .gitignore; the `published`
    // rules name other repositories, so publication is left unset.
    let specs = preview(&url, &token, &corpus("ci-and-tooling-config/global-gitignore.batch.yaml"));
    assert_eq!(specs.len(), 1);
    let testing = &specs[0];
    assert_eq!(testing["repository"], "github.com/sourcegraph/automation-testing");
    assert_eq!(testing["published"], serde_json::Value::Null);
    let diff = testing["diff"].as_str().expect("diff");
    assert!(diff.starts_with("diff --git .gitignore .gitignore\n"), "no a/ b/ prefixes: {diff}");
    assert!(diff.contains("+# Vim\n+*.swp\n") && diff.contains("+.dir-locals.el\n"), "{diff}");

    // `mydockerhub-user file:circle-ci.[yaml|yml]`: search result paths fed to sed.
    let specs = preview(&url, &token, &corpus("ci-and-tooling-config/update-circle-ci-docker-user.batch.yaml"));
    assert_eq!(specs.len(), 1);
    assert_eq!(specs[0]["repository"], "github.com/sourcegraph/ci-config");
    assert!(specs[0]["diff"].as_str().expect("diff").contains("-image: mydockerhub-user/builder\n+image: ci-dockerhub-user/builder\n"));

    // `repo:github\.com`: every repository; a templated `files:` entry and awk.
    let specs = preview(&url, &token, &corpus("utils/add-backstage-minimal.batch.yaml"));
    let repositories: Vec<&str> = specs.iter().map(|spec| spec["repository"].as_str().expect("repository")).collect();
    assert_eq!(repositories, vec!["github.com/sourcegraph/automation-testing", "github.com/sourcegraph/ci-config", "github.com/sourcegraph/docs"]);
    let catalog = specs[2]["diff"].as_str().expect("diff");
    assert!(catalog.contains("+++ catalog-info.yaml"), "{catalog}");
    assert!(catalog.contains("+  name: sourcegraph\n"), "awk took the second segment of the name: {catalog}");
    assert!(catalog.contains("+    url: https://www.github.com/sourcegraph/docs\n"), "the file's template was rendered: {catalog}");
    assert_eq!(specs[2]["body"].as_str().expect("body").lines().next(), Some("This is a scaffold to add this repo to the backstage service catalog."));
}
