//! Code host credentials end to end: a git server that demands HTTP basic auth (python3's
//! http.server in front of `git http-backend`, `support/git_http_basic_auth.py`), the real
//! server and CLI. Mirroring fails without the credential (saying how to set one) and with a
//! wrong one (saying it was refused), succeeds with the right one; and the token is found
//! nowhere it could leak: not in any file of the data directory (SQLite database, WAL,
//! mirrors), not in any API response, not in the job payload an executor dequeues.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use support::{Running, flotilla, http_request, make_repository, start_server, wait_until};

const ADMIN: &str = "flt_u_credentials_admin_token_0000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_credentials_executor_token_00000000000000000000000000";
const USERNAME: &str = "robot";
const TOKEN: &str = "ghp_CredentialThatMustNeverLeak_7f3a9c";
const MY_TOKEN: &str = "glpat_PersonalTokenThatMustNeverLeak_51d2";

/// Starts the basic-auth git server over `<root>/repos`; returns it and its base URL.
fn start_git_server(root: &Path) -> (Running, String) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/git_http_basic_auth.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(root.join("repos"))
        .args([USERNAME, TOKEN])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is needed for the basic-auth git server");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("read the git server's port");
    let port = line.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line from the git server: {line:?}")).to_owned();
    (Running(child), format!("http://127.0.0.1:{port}"))
}

fn cli(url: &str, arguments: &[&str], stdin: Option<&str>) -> Output {
    let mut command = flotilla();
    command.args(arguments).env("FLOTILLA_URL", url).env("FLOTILLA_TOKEN", ADMIN).stdout(Stdio::piped()).stderr(Stdio::piped());
    command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = command.spawn().expect("run flotilla");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("wait for flotilla")
}

fn succeeds(output: Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// Every response body the test saw, to look for the tokens in at the end.
struct Responses {
    url: String,
    seen: Vec<String>,
}

impl Responses {
    fn call(&mut self, method: &str, path: &str, authorization: &str, body: Option<&str>) -> (u16, String) {
        let (status, answer) = http_request(&self.url, method, path, Some(authorization), body);
        self.seen.push(answer.clone());
        (status, answer)
    }

    fn admin(&mut self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        let (status, answer) = self.call(method, path, &format!("token {ADMIN}"), body);
        assert!((200..300).contains(&status), "{method} {path} gave {status}: {answer}");
        if answer.is_empty() { serde_json::Value::Null } else { serde_json::from_str(&answer).expect("JSON") }
    }

    /// Syncs every mirror, waiting, and returns the one repository's state.
    /// Syncs and reads the repository once no sync is under way (a change of credential also
    /// wakes the background syncer, which may still be cloning when ours returns).
    fn sync_and_read(&mut self) -> serde_json::Value {
        self.admin("POST", "/api/v1/repositories/sync", Some(r#"{"wait": true}"#));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let repositories = self.admin("GET", "/api/v1/repositories", None);
            let repository = repositories
                .as_array()
                .and_then(|list| list.iter().find(|repository| repository["name"] == "private/private"))
                .cloned()
                .unwrap_or_else(|| panic!("no private/private in {repositories}"));
            if !matches!(repository["mirrorState"].as_str(), Some("cloning" | "pending")) || std::time::Instant::now() > deadline {
                return repository;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

/// Every file below `directory` whose bytes contain `needle`.
fn files_containing(directory: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in walk(directory) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        if bytes.windows(needle.len()).any(|window| window == needle) {
            found.push(entry.display().to_string());
        }
    }
    found
}

fn walk(directory: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(directory).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn base64(text: &str) -> String {
    let output = Command::new("base64").arg("-w0").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().and_then(|mut child| {
        child.stdin.take().expect("stdin").write_all(text.as_bytes())?;
        child.wait_with_output()
    });
    String::from_utf8_lossy(&output.expect("base64 runs").stdout).trim().to_owned()
}

#[test]
fn mirrors_need_the_credential_and_it_never_leaks() {
    let root = tempfile::tempdir().expect("temp dir");
    let root = root.path();
    make_repository(root, "private", &[("README.md", "# private\n")]);
    let (_git_server, git_url) = start_git_server(root);
    let data = root.join("data");
    let (_server, url) = start_server(&data, ADMIN, EXECUTOR, &["--heartbeat-timeout", "600"]);
    let mut responses = Responses { url: url.clone(), seen: Vec::new() };

    // No credential: the mirror fails, and the error says how to set one.
    succeeds(cli(&url, &["codehost", "add", "--kind", "git-urls", "--name", "private", "--urls", &format!("{git_url}/private.git")], None));
    let repository = responses.sync_and_read();
    assert_eq!(repository["mirrorState"], "failed", "{repository}");
    let error = repository["lastError"].as_str().unwrap_or_default();
    assert!(error.contains("has no credential") && error.contains("flotilla codehost credential set private"), "{error}");

    // A wrong token: refused, and the error says so.
    succeeds(cli(&url, &["codehost", "credential", "set", "private", "--username", USERNAME], Some("not-the-token\n")));
    let repository = responses.sync_and_read();
    assert_eq!(repository["mirrorState"], "failed", "{repository}");
    assert!(repository["lastError"].as_str().unwrap_or_default().contains("refused the credential"), "{repository}");

    // The right token (with the newline `echo` adds): the mirror is ready at the repository's head.
    let said = succeeds(cli(&url, &["codehost", "credential", "set", "private", "--username", USERNAME], Some(&format!("{TOKEN}\n"))));
    assert!(said.contains("saved the credential of private"), "{said}");
    let repository = responses.sync_and_read();
    assert_eq!(repository["mirrorState"], "ready", "{repository}");
    assert_eq!(repository["defaultBranch"], "main");
    // A second sync fetches through the same credential.
    assert_eq!(responses.sync_and_read()["mirrorState"], "ready");

    // A user's own credential, listed without its value; the listing shows which exist.
    succeeds(cli(&url, &["codehost", "credential", "set", "private", "--mine"], Some(MY_TOKEN)));
    let output = cli(&url, &["codehost", "credential", "list", "--json"], None);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    responses.seen.push(String::from_utf8_lossy(&output.stdout).into_owned());
    let scopes: Vec<(&str, &str)> = listed.as_array().map(|list| list.iter().map(|item| (item["codeHost"].as_str().unwrap_or(""), item["scope"].as_str().unwrap_or(""))).collect()).unwrap_or_default();
    assert_eq!(scopes, vec![("private", "connection"), ("private", "user")], "{listed}");
    let hosts = responses.admin("GET", "/api/v1/code-hosts", None);
    assert_eq!((hosts[0]["hasCredential"].clone(), hosts[0]["hasMyCredential"].clone()), (serde_json::json!(true), serde_json::json!(true)), "{hosts}");
    responses.admin("GET", "/api/v1/code-host-credentials", None);

    // Bad input is a clear 4xx.
    let host_id = hosts[0]["id"].to_string();
    let (status, answer) = responses.call("PUT", &format!("/api/v1/code-hosts/{host_id}/credential"), &format!("token {ADMIN}"), Some(r#"{"token": "a\nb"}"#));
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("one line"), "{answer}");
    let (status, answer) = responses.call("PUT", "/api/v1/code-hosts/999/credentials/me", &format!("token {ADMIN}"), Some(r#"{"token": "x"}"#));
    assert_eq!(status, 404, "{answer}");
    assert!(answer.contains("flotilla codehost list"), "{answer}");

    // A job on the repository: its payload carries a job token and the server's git URL only.
    let spec = "name: creds\non:\n  - repository: private/private\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n";
    responses.admin("POST", "/api/v1/batch-specs", Some(&serde_json::json!({ "spec": spec }).to_string()));
    let dequeue = serde_json::json!({"executor": {"name": "probe", "version": "0", "hostname": "h", "os": "linux", "architecture": "x86_64", "runtime": "process"}}).to_string();
    let mut job = String::new();
    wait_until(Duration::from_secs(60), "the job to dequeue", || {
        let (status, body) = responses.call("POST", "/.executors/queue/dequeue", &format!("token-executor {EXECUTOR}"), Some(&dequeue));
        if status == 200 {
            job = body;
        }
        status == 200
    });
    assert!(job.contains("private/private"), "{job}");

    // The audit log records each change, never a value.
    let audit = responses.admin("GET", "/api/v1/audit-log", None);
    let actions: Vec<&str> = audit["events"].as_array().map(|events| events.iter().filter_map(|event| event["action"].as_str()).collect()).unwrap_or_default();
    assert!(actions.contains(&"code_host.credential.set") && actions.contains(&"code_host.user_credential.set"), "{actions:?}");

    // Deleting the connection's credential makes the next sync fail again.
    succeeds(cli(&url, &["codehost", "credential", "delete", "private"], None));
    responses.admin("POST", "/api/v1/repositories/sync", Some(r#"{"wait": true}"#));
    let repositories = responses.admin("GET", "/api/v1/repositories", None);
    assert!(repositories.to_string().contains("has no credential"), "{repositories}");

    // Nowhere: not in any response, not in any file of the data directory, in any encoding git
    // would send.
    let basic = base64(&format!("{USERNAME}:{TOKEN}"));
    for needle in [TOKEN, MY_TOKEN, basic.as_str()] {
        for (index, response) in responses.seen.iter().enumerate() {
            assert!(!response.contains(needle), "response {index} holds a credential: {response}");
        }
        assert_eq!(files_containing(&data, needle.as_bytes()), Vec::<String>::new(), "files holding {needle}");
    }
    let database = data.join("flotilla.sqlite");
    assert!(walk(&data).contains(&database), "the scan covered the SQLite database {}", database.display());
    // The scan would have found the value had it been stored: the username is stored in clear.
    assert!(!files_containing(&data, USERNAME.as_bytes()).is_empty(), "the credential's username is in the database");
}
