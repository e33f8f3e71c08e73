//! `flotilla batch apply` against a plain git code host (a folder of bare repositories): the
//! changesets become branches pushed to the repositories themselves; applying again does
//! nothing; an edited spec updates the same branches; a repository the spec no longer matches
//! has its branch deleted and its changeset archived; closing closes the rest and deleting
//! removes the batch change; webhooks announce each step, signed.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::{flotilla, make_repository, start_executor, start_server, wait_until};

const ADMIN: &str = "flt_u_apply_e2e_admin_token_00000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_apply_e2e_executor_token_0000000000000000000000000000000";

fn run(url: &str, arguments: &[&str]) -> std::process::Output {
    flotilla().args(arguments).env("FLOTILLA_URL", url).env("FLOTILLA_TOKEN", ADMIN).stdin(Stdio::null()).output().expect("run flotilla")
}

fn spec(query: &str, line: &str) -> String {
    format!(
        "name: greetings\non:\n  - repositoriesMatchingQuery: {query}\nsteps:\n  - run: |\n      if [ \"${{{{ repository.name }}}}\" != \"local/gamma\" ]; then echo \"{line}\" >> README.md; fi\n    container: alpine:3\nchangesetTemplate:\n  title: Greet ${{{{ repository.name }}}}\n  body: Adds a greeting\n  branch: batch/greetings\n  commit:\n    message: Add a greeting\n    author:\n      name: Ada\n      email: ada@example.com\n  published: true\n"
    )
}

/// Applies a spec file and returns the plan as (repository, action, operations).
fn apply(url: &str, file: &Path) -> Vec<(String, String, String)> {
    let output = run(url, &["batch", "apply", "--json", "-f", file.to_str().expect("utf-8")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    plan_rows(&output.stdout)
}

fn plan_rows(stdout: &[u8]) -> Vec<(String, String, String)> {
    let plan: serde_json::Value = serde_json::from_slice(stdout).expect("JSON plan");
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

/// Waits until the reconciler has finished every changeset; returns them.
fn reconciled(url: &str) -> Vec<serde_json::Value> {
    let mut listed = Vec::new();
    wait_until(Duration::from_secs(60), "the reconciler to finish", || {
        let output = run(url, &["changesets", "list", "--batch-change", "greetings", "--json"]);
        listed = serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default();
        !listed.is_empty() && listed.iter().all(|changeset| matches!(changeset["reconcilerState"].as_str(), Some("completed" | "failed")))
    });
    listed
}

/// The README on `batch/greetings` in a bare repository, if the branch exists.
fn branch_readme(repository: &Path) -> Option<String> {
    let output = std::process::Command::new("git")
        .args(["--git-dir", repository.to_str().expect("utf-8"), "show", "refs/heads/batch/greetings:README.md"])
        .output()
        .expect("git show");
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn apply_pushes_branches_and_follows_the_spec() {
    let root = tempfile::tempdir().expect("temp dir");
    for name in ["alpha", "beta", "gamma"] {
        make_repository(root.path(), name, &[("README.md", &format!("# {name}\n"))]);
    }
    let repos = root.path().join("repos");
    let (hook_url, received) = webhook_receiver();
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &["--webhook", &hook_url, "--webhook-secret", "hook-secret"]);
    let _executor = start_executor(&url, EXECUTOR, "apply", &root.path().join("executor"), "process");
    assert!(run(&url, &["codehost", "add", "--kind", "git", "--name", "local", "--path", repos.to_str().expect("utf-8")]).status.success());
    assert!(run(&url, &["repos", "sync"]).status.success());

    // First apply: two changesets (gamma's step changes nothing), pushed as branches.
    let file = root.path().join("greetings.batch.yaml");
    std::fs::write(&file, spec("repo:^local/", "hello")).expect("write spec");
    // The preview says what apply would do.
    let preview = run(&url, &["batch", "preview", "--json", "-f", file.to_str().expect("utf-8")]);
    assert!(preview.status.success(), "{}", String::from_utf8_lossy(&preview.stderr));
    let document: serde_json::Value = serde_json::from_slice(&preview.stdout).expect("JSON");
    assert_eq!(
        plan_rows(document["applyPlan"].to_string().as_bytes()),
        rows(&[("local/alpha", "create", "push"), ("local/beta", "create", "push")])
    );
    assert_eq!(apply(&url, &file), rows(&[("local/alpha", "create", "push"), ("local/beta", "create", "push")]));
    let listed = reconciled(&url);
    assert!(listed.iter().all(|changeset| changeset["reconcilerState"] == "completed" && changeset["externalState"] == "PUSHED"), "{listed:?}");
    assert_eq!(branch_readme(&repos.join("alpha.git")).as_deref(), Some("# alpha\nhello\n"));
    assert_eq!(branch_readme(&repos.join("beta.git")).as_deref(), Some("# beta\nhello\n"));
    assert_eq!(branch_readme(&repos.join("gamma.git")), None);
    let author = std::process::Command::new("git")
        .args(["--git-dir", repos.join("alpha.git").to_str().expect("utf-8"), "log", "-1", "--format=%an <%ae> %s", "refs/heads/batch/greetings"])
        .output()
        .expect("git log");
    assert_eq!(String::from_utf8_lossy(&author.stdout).trim(), "Ada <ada@example.com> Add a greeting");

    // The same spec again: the same changesets, nothing to do.
    assert_eq!(apply(&url, &file), rows(&[("local/alpha", "continue", ""), ("local/beta", "continue", "")]));

    // An edited spec: the same branches get the new commit.
    std::fs::write(&file, spec("repo:^local/", "hello again")).expect("write spec");
    assert_eq!(apply(&url, &file), rows(&[("local/alpha", "continue", "push"), ("local/beta", "continue", "push")]));
    reconciled(&url);
    assert_eq!(branch_readme(&repos.join("alpha.git")).as_deref(), Some("# alpha\nhello again\n"));

    // beta no longer matched: its branch is deleted and its changeset archived.
    std::fs::write(&file, spec("repo:^local/(alpha|gamma)", "hello again")).expect("write spec");
    assert_eq!(apply(&url, &file), rows(&[("local/alpha", "continue", ""), ("local/beta", "retire", "close,archive")]));
    let listed = reconciled(&url);
    let beta = listed.iter().find(|changeset| changeset["repository"] == "local/beta").expect("beta listed");
    assert_eq!((beta["externalState"].as_str(), beta["archived"].as_bool()), (Some("CLOSED"), Some(true)), "{beta}");
    assert_eq!(branch_readme(&repos.join("beta.git")), None, "beta's branch is gone");
    assert_eq!(branch_readme(&repos.join("alpha.git")).as_deref(), Some("# alpha\nhello again\n"));

    // Deleting an open batch change is refused; closing it with its changesets deletes alpha's
    // branch; then it can be deleted.
    let refused = run(&url, &["batch", "delete", "greetings"]);
    assert!(!refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains("close it first"), "{}", String::from_utf8_lossy(&refused.stderr));
    assert!(run(&url, &["batch", "close", "greetings", "--close-changesets"]).status.success());
    wait_until(Duration::from_secs(60), "alpha's branch to be deleted", || branch_readme(&repos.join("alpha.git")).is_none());
    let listed = reconciled(&url);
    assert!(listed.iter().all(|changeset| changeset["archived"] == true), "{listed:?}");
    assert!(run(&url, &["batch", "delete", "greetings"]).status.success());
    assert!(!run(&url, &["changesets", "list", "--batch-change", "greetings"]).status.success(), "the batch change is gone");

    // Every step was announced, signed with the secret.
    wait_until(Duration::from_secs(30), "the webhook events", || received.lock().expect("events").iter().any(|(event, _, _)| event == "batch_change.delete"));
    let events = received.lock().expect("events").clone();
    for expected in ["batch_change.apply", "changeset.publish", "batch_change.close", "batch_change.delete"] {
        assert!(events.iter().any(|(event, _, _)| event == expected), "no {expected} in {events:?}");
    }
    for (event, body, signature) in &events {
        let expected = format!("sha256={}", hex_hmac(b"hook-secret", body.as_bytes()));
        assert_eq!(signature, &expected, "{event} is signed");
    }
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<(String, String, String)>>>;

/// A minimal HTTP receiver on loopback that records (event header, body, signature header).
fn webhook_receiver() -> (String, Received) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("address"));
    let received: Received = Default::default();
    let store = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let (mut event, mut signature, mut length) = (String::new(), String::new(), 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                let value = line.split_once(':').map(|(_, value)| value.trim().to_owned()).unwrap_or_default();
                if lower.starts_with("x-flotilla-event:") {
                    event = value;
                } else if lower.starts_with("x-flotilla-signature:") {
                    signature = value;
                } else if lower.starts_with("content-length:") {
                    length = value.parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            store.lock().expect("events").push((event, String::from_utf8_lossy(&body).into_owned(), signature));
            let _ = reader.get_mut().write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (url, received)
}

/// HMAC-SHA256 as hex, computed here with the `sha256sum`-free standard construction.
fn hex_hmac(key: &[u8], message: &[u8]) -> String {
    flotilla_server::webhooks::hmac_sha256(key, message).iter().map(|byte| format!("{byte:02x}")).collect()
}
