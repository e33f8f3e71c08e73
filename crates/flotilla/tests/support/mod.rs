//! Helpers shared by the end-to-end tests: git fixtures with frozen dates, child processes
//! that die with the test, and a minimal HTTP GET (so tests need no HTTP client crate).
#![allow(dead_code)]

pub mod batch;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub mod fleet;

pub fn flotilla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
}

/// Runs git with a frozen identity and dates so fixtures are reproducible.
pub fn git(directory: &Path, arguments: &[&str]) {
    let status = Command::new("git")
        .args(arguments)
        .current_dir(directory)
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.com")
        .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run git");
    assert!(status.success(), "git {arguments:?} failed in {}", directory.display());
}

/// Creates bare repository `<root>/<name>.git` holding `files` on branch main.
pub fn make_repository(root: &Path, name: &str, files: &[(&str, &str)]) {
    let work = root.join(format!("{name}-work"));
    std::fs::create_dir_all(&work).expect("create work tree");
    git(&work, &["init", "-q", "-b", "main"]);
    for (path, content) in files {
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().expect("file has a parent")).expect("create folders");
        std::fs::write(&file, content).expect("write fixture file");
    }
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "initial"]);
    let bare = root.join("repos").join(format!("{name}.git"));
    std::fs::create_dir_all(bare.parent().expect("has parent")).expect("create repos folder");
    git(root, &["clone", "-q", "--bare", work.to_str().expect("utf-8 path"), bare.to_str().expect("utf-8 path")]);
    std::fs::remove_dir_all(&work).expect("remove work tree");
}


/// A running child process, killed when dropped.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("address").port()
}

/// Reads the child's stdout until a line starting with `prefix`, returning the line.
pub fn wait_for_line(child: &mut Child, prefix: &str) -> (String, Vec<String>) {
    let stdout = child.stdout.take().expect("stdout piped");
    let mut reader = BufReader::new(stdout);
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "timed out waiting for `{prefix}`; got {lines:?}");
        let mut line = String::new();
        if reader.read_line(&mut line).expect("read stdout") == 0 {
            panic!("the process ended before printing `{prefix}`; got {lines:?}");
        }
        let line = line.trim_end().to_owned();
        lines.push(line.clone());
        if line.starts_with(prefix) || line.trim_start().starts_with(prefix) {
            // Keep reading the rest of the banner in the background.
            std::thread::spawn(move || for _ in reader.lines() {});
            return (line, lines);
        }
    }
}


/// A GET through curl-free plain HTTP, so the test needs no HTTP client crate.
pub fn http_get(url: &str, token: &str, path: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the server");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: token {token}\r\nConnection: close\r\n\r\n").expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).unwrap_or_else(|error| panic!("{error}: {body}"))
}

/// A POST with a JSON body, same minimal client.
pub fn http_post(url: &str, token: &str, path: &str, body: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the server");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: token {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(head.starts_with("HTTP/1.1 2"), "{head}");
    serde_json::from_str(body).unwrap_or(serde_json::Value::Null)
}

/// Starts `flotilla server` on SQLite in `data` with fixed tokens; returns (process, URL).
pub fn start_server(data: &Path, admin_token: &str, executor_token: &str, extra: &[&str]) -> (Running, String) {
    let mut child = flotilla()
        .args(["server", "--listen", &format!("127.0.0.1:{}", free_port()), "--admin-token", admin_token, "--executor-token", executor_token])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flotilla server");
    let (line, _) = wait_for_line(&mut child, "Flotilla server listening on ");
    (Running(child), line.trim_start_matches("Flotilla server listening on ").to_owned())
}

/// Starts `flotilla executor` with the process runtime (or another, via `runtime`).
pub fn start_executor(url: &str, executor_token: &str, name: &str, work: &Path, runtime: &str) -> Running {
    start_executor_with(url, executor_token, name, work, runtime, &[])
}

/// The same, with extra arguments (e.g. `--labels gpu=true`).
pub fn start_executor_with(url: &str, executor_token: &str, name: &str, work: &Path, runtime: &str, extra: &[&str]) -> Running {
    let child = flotilla()
        .args(["executor", "--url", url, "--token", executor_token, "--runtime", runtime, "--name", name])
        .args(extra)
        .arg("--work-dir")
        .arg(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flotilla executor");
    Running(child)
}

/// Polls `condition` every 200 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Any request; returns the status code and the body. `authorization` is the full header value.
pub fn http_request(url: &str, method: &str, path: &str, authorization: Option<&str>, body: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the server");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(authorization) = authorization {
        request.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || method == "POST" || method == "PUT" {
        request.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).expect("send head");
    stream.write_all(body.as_bytes()).expect("send body");
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("read response");
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, body.to_owned())
}

/// Whether podman runs here, with the test image `alpine:3` built from local files. Without
/// podman it fails when FLOTILLA_REQUIRE_ALL_TOOLS is set (as CI sets it), else says what did
/// not run.
pub fn podman_ready(what: &str) -> bool {
    let present = Command::new("podman").arg("--version").output().is_ok_and(|output| output.status.success());
    if !present {
        assert!(
            std::env::var_os("FLOTILLA_REQUIRE_ALL_TOOLS").is_none(),
            "podman is required (FLOTILLA_REQUIRE_ALL_TOOLS is set): apt-get install podman runc"
        );
        eprintln!("NOTICE: podman unavailable; {what} did not run");
        return false;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image");
    assert!(Command::new("bash").arg(script).status().expect("build test image").success(), "building the test image failed");
    true
}
