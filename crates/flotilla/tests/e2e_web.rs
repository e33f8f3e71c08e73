//! The web interface in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` (`crates/web/browser-tests/flow.mjs`) against the real server, a
//! process-runtime executor and a folder of git repositories. The flow signs in with a token,
//! creates a batch change from a template (a validation error shown at its line, one
//! workspace excluded), runs it, watches a log line arrive live over server-sent events,
//! previews, applies with publication choices, sees the changesets and bulk-closes them; then
//! a user who is not an admin signs in with a password, reads the batch change and is refused
//! a bulk operation and the executors page.
//! Screenshots of each page go to `docs/screenshots/` (the README shows them) when the test
//! runs with `FLOTILLA_UPDATE_SCREENSHOTS=1`, else to a temporary folder.
//!
//! Node, npm and Chromium must be installed (`.ci/run` installs them); the test fails, never
//! skips, without them. `npm ci` runs when `node_modules` is missing (the lockfile is committed).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{http_post, make_repository, start_executor_with, start_server, wait_until};

const ADMIN: &str = "flt_u_web_e2e_admin_token_000000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_web_e2e_executor_token_00000000000000000000000000000000";
const VIEWER_PASSWORD: &str = "a viewer's password for the web test";

fn browser_tests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/browser-tests")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

/// Node, npm and Chromium, or a failure that says how to install them.
fn require_tools() {
    for (tool, install) in [("node", "apt-get install nodejs"), ("npm", "apt-get install npm")] {
        let found = Command::new(tool).arg("--version").output().is_ok_and(|output| output.status.success());
        assert!(found, "{tool} is required for the browser tests: {install} (or run .ci/run, which installs it)");
    }
    assert!(Path::new(&chromium()).exists(), "Chromium is required for the browser tests: apt-get install chromium (or set CHROMIUM to its path)");
    let modules = browser_tests().join("node_modules/playwright-core");
    if !modules.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(browser_tests())
            .status()
            .expect("run npm ci");
        assert!(status.success(), "npm ci failed in {}", browser_tests().display());
    }
}

#[test]
fn the_web_interface_creates_runs_applies_and_closes_a_batch_change() {
    require_tools();
    let root = tempfile::tempdir().expect("temp dir");
    for name in ["alpha", "beta", "gamma"] {
        make_repository(root.path(), name, &[("README.md", &format!("# {name}\n"))]);
    }
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
    http_post(&url, ADMIN, "/api/v1/code-hosts", &serde_json::json!({"kind": "git", "name": "local", "path": root.path().join("repos")}).to_string());
    http_post(&url, ADMIN, "/api/v1/repositories/sync", r#"{"wait": true}"#);
    http_post(&url, ADMIN, "/api/v1/users", &serde_json::json!({"username": "viewer", "password": VIEWER_PASSWORD}).to_string());
    let _executor = start_executor_with(&url, EXECUTOR, "web-e2e", &root.path().join("executor"), "process", &["--labels", "pool=web"]);
    wait_until(Duration::from_secs(30), "the executor to register", || {
        let (status, body) = support::http_request(&url, "GET", "/api/v1/executors", Some(&format!("token {ADMIN}")), None);
        status == 200 && body.contains("web-e2e")
    });

    // The screenshots in docs/ change only when asked (FLOTILLA_UPDATE_SCREENSHOTS=1), so a
    // test run leaves the working tree clean; otherwise they go to the test's own folder.
    let screenshots = match (std::env::var_os("FLOTILLA_SCREENSHOTS_DIR"), std::env::var_os("FLOTILLA_UPDATE_SCREENSHOTS")) {
        (Some(directory), _) => PathBuf::from(directory),
        (None, Some(_)) => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/screenshots"),
        (None, None) => root.path().join("screenshots"),
    };
    let output = Command::new("node")
        .arg(browser_tests().join("flow.mjs"))
        .arg(&url)
        .arg(ADMIN)
        .arg(&screenshots)
        .env("CHROMIUM", chromium())
        .env("VIEWER_PASSWORD", VIEWER_PASSWORD)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stdout.contains("BROWSER FLOW PASSED"), "the browser flow failed:\n{stdout}\n{stderr}");
    for page in ["sign-in", "create", "execution-live-log", "preview", "batch-change", "batch-changes", "admin-executors"] {
        assert!(screenshots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }

    // What the browser did is what the server has: two changesets, both closed.
    let (status, body) = support::http_request(&url, "GET", "/api/v1/batch-changes/web-hello/changesets", Some(&format!("token {ADMIN}")), None);
    assert_eq!(status, 200, "{body}");
    let changesets: Vec<serde_json::Value> = serde_json::from_str(&body).expect("changesets");
    let mut repositories: Vec<&str> = changesets.iter().filter_map(|changeset| changeset["repository"].as_str()).collect();
    repositories.sort_unstable();
    assert_eq!(repositories, ["local/alpha", "local/beta"], "gamma was excluded in the editor");
    assert!(changesets.iter().all(|changeset| changeset["externalState"] == "CLOSED"), "{body}");

    // The log stream of a finished job: every entry, then `end`; from its last event id, only `end`.
    let (_, specs) = support::http_request(&url, "GET", "/api/v1/batch-specs?limit=1", Some(&format!("token {ADMIN}")), None);
    let specs: serde_json::Value = serde_json::from_str(&specs).expect("batch specs");
    let spec_id = specs["batchSpecs"][0]["id"].as_str().expect("a batch spec").to_owned();
    let (_, workspaces) = support::http_request(&url, "GET", &format!("/api/v1/batch-specs/{spec_id}/workspaces"), Some(&format!("token {ADMIN}")), None);
    let workspaces: serde_json::Value = serde_json::from_str(&workspaces).expect("workspaces");
    let alpha = workspaces["workspaces"].as_array().expect("workspaces").iter().find(|workspace| workspace["repository"] == "local/alpha").expect("alpha");
    let job = alpha["jobId"].as_i64().expect("a job");
    let (head, stream) = raw_get(&url, &format!("/api/v1/jobs/{job}/logs/stream"), &[]);
    assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
    assert!(stream.contains("event: log") && stream.contains("live line from local/alpha") && stream.contains("event: end"), "{stream}");
    let last_id = stream.lines().filter_map(|line| line.strip_prefix("id: ")).next_back().expect("event ids").to_owned();
    let (_, resumed) = raw_get(&url, &format!("/api/v1/jobs/{job}/logs/stream"), &[("Last-Event-ID", &last_id)]);
    // (The last entry's end is sent again, with no output: a reconnect may have missed it.)
    assert!(!resumed.contains("\"offset\":0") && !resumed.contains("stdout: live line") && resumed.contains("event: end"), "resuming from {last_id} sent output again: {resumed}");
}

/// A GET with extra headers, answering (head, body with chunked framing removed).
fn raw_get(url: &str, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: token {ADMIN}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    // Chunk sizes are lines of hex digits between the chunks; the events never are.
    let body: String = body.split("\r\n").filter(|part| part.is_empty() || !part.chars().all(|c| c.is_ascii_hexdigit())).collect::<Vec<_>>().join("");
    (head.to_owned(), body)
}

/// The client's pure helpers (excluding a workspace by editing the spec, the changeset state
/// a person sees, formatting), tested under Node without a browser.
#[test]
fn the_client_helpers_edit_specs_and_show_states() {
    let found = Command::new("node").arg("--version").output().is_ok_and(|output| output.status.success());
    assert!(found, "node is required for the web client's tests: apt-get install nodejs (or run .ci/run)");
    let output = Command::new("node").args(["--test", "client.test.mjs"]).current_dir(browser_tests()).output().expect("run node --test");
    assert!(output.status.success(), "{}\n{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
}
