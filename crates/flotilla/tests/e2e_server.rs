//! End to end through the real binary: a server, executors, a directory of generated git
//! repositories as the code host, and `flotilla batch preview`, on SQLite (`flotilla up`)
//! and on PostgreSQL (`flotilla server` plus a separate `flotilla executor` process).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use support::{Running, flotilla, free_port, make_repository, wait_for_line};

/// Five repositories: three with README and a Go module, one with two Go modules in
/// folders, one without README.
fn make_code_host(root: &Path) -> PathBuf {
    make_repository(root, "alpha", &[("README.md", "# alpha\n"), ("go.mod", "module alpha\n")]);
    make_repository(root, "beta", &[("README.md", "# beta\n"), ("go.mod", "module beta\n")]);
    make_repository(root, "gamma", &[("README.md", "# gamma\n"), ("go.mod", "module gamma\n")]);
    make_repository(root, "mono", &[("README.md", "# mono\n"), ("api/go.mod", "module api\n"), ("web/go.mod", "module web\n"), ("docs/x.txt", "x\n")]);
    make_repository(root, "empty-readme", &[("LICENSE", "MIT\n")]);
    root.join("repos")
}

const SPEC: &str = r#"name: e2e-hello
description: end to end
on:
  - repositoriesMatchingQuery: file:README.md
workspaces:
  - rootAtLocationOf: go.mod
    in: local/mono
steps:
  - run: |
      echo "hello from ${{ repository.name }} ${{ steps.path }}" >> greeting.txt
      if [ "${{ repository.name }}" = "local/beta" ]; then echo "beta cannot be greeted" >&2; exit 7; fi
    container: alpine:3
    outputs:
      module:
        value: ${{ step.stdout }}
changesetTemplate:
  title: Greet ${{ repository.name }}
  body: Created by ${{ batch_change.name }}
  branch: batch/hello${{ if steps.path }}-${{ steps.path }}${{ end }}
  commit:
    message: Add a greeting
  published:
    - "*": false
    - local/gamma: draft
"#;

/// Runs the client commands against a server and checks the preview.
fn add_code_host_and_preview(url: &str, token: &str, repos: &Path, work: &Path) {
    let with_server = |command: &mut Command| {
        command.env("FLOTILLA_URL", url).env("FLOTILLA_TOKEN", token);
    };
    let mut add = flotilla();
    add.args(["codehost", "add", "--kind", "git", "--name", "local", "--path"]).arg(repos);
    with_server(&mut add);
    let output = add.output().expect("codehost add");
    assert!(output.status.success(), "codehost add: {}", String::from_utf8_lossy(&output.stderr));

    let mut sync = flotilla();
    sync.args(["repos", "sync"]);
    with_server(&mut sync);
    assert!(sync.output().expect("repos sync").status.success());

    let mut list = flotilla();
    list.args(["repos", "list", "--json"]);
    with_server(&mut list);
    let listed: serde_json::Value = serde_json::from_slice(&list.output().expect("repos list").stdout).expect("repos list --json is JSON");
    let names: Vec<&str> = listed.as_array().expect("array").iter().map(|repository| repository["name"].as_str().expect("name")).collect();
    assert_eq!(names, vec!["local/alpha", "local/beta", "local/empty-readme", "local/gamma", "local/mono"]);
    assert!(listed.as_array().expect("array").iter().all(|repository| repository["mirrorState"] == "ready"), "{listed}");

    let spec = work.join("hello.batch.yaml");
    std::fs::write(&spec, SPEC).expect("write spec");
    let mut repositories = flotilla();
    repositories.args(["batch", "repositories", "--json", "-f"]).arg(&spec);
    with_server(&mut repositories);
    let resolved: serde_json::Value = serde_json::from_slice(&repositories.output().expect("batch repositories").stdout).expect("JSON");
    let resolved: Vec<(&str, &str)> = resolved
        .as_array()
        .expect("array")
        .iter()
        .map(|workspace| (workspace["repository"].as_str().expect("repository"), workspace["path"].as_str().expect("path")))
        .collect();
    assert_eq!(
        resolved,
        vec![("local/alpha", ""), ("local/beta", ""), ("local/gamma", ""), ("local/mono", "api"), ("local/mono", "web")],
        "batch repositories shows what the spec would touch"
    );
    let mut preview = flotilla();
    preview.args(["batch", "preview", "--json", "-f"]).arg(&spec);
    with_server(&mut preview);
    let output = preview.output().expect("batch preview");
    assert_eq!(output.status.code(), Some(3), "one workspace fails, so the exit status is 3; stderr: {}", String::from_utf8_lossy(&output.stderr));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("preview --json is one JSON document");

    let workspaces = document["workspaces"].as_array().expect("workspaces");
    let summary: Vec<(String, String, String)> = workspaces
        .iter()
        .map(|workspace| {
            (
                workspace["repository"].as_str().expect("repository").to_owned(),
                workspace["path"].as_str().expect("path").to_owned(),
                workspace["state"].as_str().expect("state").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("local/alpha", "", "completed"),
        ("local/beta", "", "failed"),
        ("local/gamma", "", "completed"),
        ("local/mono", "api", "completed"),
        ("local/mono", "web", "completed"),
    ]
    .iter()
    .map(|(repository, path, state)| ((*repository).to_owned(), (*path).to_owned(), (*state).to_owned()))
    .collect();
    assert_eq!(summary, expected);
    let beta = &workspaces[1];
    let failure = beta["failureMessage"].as_str().expect("the failed workspace has a message");
    assert!(failure.contains("exited with code 7"), "{failure}");
    assert!(failure.contains("beta cannot be greeted"), "the failure shows the step's stderr: {failure}");
    assert!(workspaces.iter().filter(|workspace| workspace["state"] == "completed").all(|workspace| workspace["executor"].is_string()));

    let specs = document["changesetSpecs"].as_array().expect("changeset specs");
    let mut heads: Vec<(String, String, serde_json::Value)> = specs
        .iter()
        .map(|spec| (spec["repository"].as_str().expect("repo").to_owned(), spec["headRef"].as_str().expect("head").to_owned(), spec["published"].clone()))
        .collect();
    heads.sort_by(|left, right| (&left.0, &left.1).cmp(&(&right.0, &right.1)));
    assert_eq!(
        heads,
        vec![
            ("local/alpha".to_owned(), "refs/heads/batch/hello".to_owned(), serde_json::json!(false)),
            ("local/gamma".to_owned(), "refs/heads/batch/hello".to_owned(), serde_json::json!("draft")),
            ("local/mono".to_owned(), "refs/heads/batch/hello-api".to_owned(), serde_json::json!(false)),
            ("local/mono".to_owned(), "refs/heads/batch/hello-web".to_owned(), serde_json::json!(false)),
        ]
    );
    let alpha = specs.iter().find(|spec| spec["repository"] == "local/alpha").expect("alpha spec");
    assert_eq!(alpha["title"], "Greet local/alpha");
    assert_eq!(alpha["body"], "Created by e2e-hello");
    assert_eq!(alpha["baseRef"], "refs/heads/main");
    let diff = alpha["diff"].as_str().expect("diff");
    assert!(diff.contains("+++ greeting.txt") && diff.contains("+hello from local/alpha"), "{diff}");
    let api = specs.iter().find(|spec| spec["headRef"] == "refs/heads/batch/hello-api").expect("api spec");
    assert!(api["diff"].as_str().expect("diff").contains("+++ api/greeting.txt"), "the step ran in the workspace folder");

    // Two workspaces of one repository pushing to one branch cannot be applied: said, with
    // exit status 4.
    let same_branch = work.join("same-branch.batch.yaml");
    std::fs::write(
        &same_branch,
        "name: same-branch\non:\n  - repository: local/mono\nworkspaces:\n  - rootAtLocationOf: go.mod\n    in: local/mono\nsteps:\n  - run: echo x >> notes.txt\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: batch/same\n  commit:\n    message: m\n",
    )
    .expect("write spec");
    let mut preview = flotilla();
    preview.args(["batch", "preview", "--json", "-f"]).arg(&same_branch);
    with_server(&mut preview);
    let output = preview.output().expect("batch preview");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let problem = "2 changeset specs in local/mono use the same branch: refs/heads/batch/same";
    assert!(document["problems"][0].as_str().is_some_and(|text| text.starts_with(problem)), "{document}");
    assert!(stderr.contains(problem), "{stderr}");
}

/// Starts `flotilla up` with the process runtime; returns (process, URL, admin token).
fn start_up(data: &Path, executors: usize) -> (Running, String, String) {
    let mut child = flotilla()
        .args(["up", "--runtime", "process", "--executors", &executors.to_string(), "--listen", &format!("127.0.0.1:{}", free_port()), "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flotilla up");
    let (first, _) = wait_for_line(&mut child, "Flotilla is running at ");
    let url = first.trim_start_matches("Flotilla is running at ").to_owned();
    let credentials = std::fs::read_to_string(data.join("credentials.env")).expect("up writes credentials.env");
    let token = credentials.lines().find_map(|line| line.strip_prefix("FLOTILLA_TOKEN=")).expect("token in credentials.env").to_owned();
    (Running(child), url, token)
}

#[test]
fn up_on_sqlite_runs_a_spec_end_to_end() {
    let root = tempfile::tempdir().expect("temp dir");
    let repos = make_code_host(root.path());
    let (_guard, url, token) = start_up(&root.path().join("data"), 2);
    add_code_host_and_preview(&url, &token, &repos, root.path());
}

/// Creates a fresh PostgreSQL database for one test, from FLOTILLA_TEST_POSTGRES_URL.
fn postgres_database(name: &str) -> Option<String> {
    let Ok(base) = std::env::var("FLOTILLA_TEST_POSTGRES_URL") else {
        assert!(
            std::env::var_os("FLOTILLA_REQUIRE_ALL_TOOLS").is_none(),
            "FLOTILLA_TEST_POSTGRES_URL is not set: start PostgreSQL (pg_ctlcluster 15 main start) and set it, as .ci/run does"
        );
        eprintln!("NOTICE: FLOTILLA_TEST_POSTGRES_URL is not set; the PostgreSQL end-to-end test did not run");
        return None;
    };
    let database = format!("flotilla_e2e_{name}_{}", std::process::id());
    for statement in [format!("DROP DATABASE IF EXISTS {database}"), format!("CREATE DATABASE {database}")] {
        let status = Command::new("psql").arg(&base).args(["-q", "-c", &statement]).status().expect("run psql");
        assert!(status.success(), "psql {statement} failed");
    }
    let (prefix, _) = base.rsplit_once('/').expect("the URL ends with a database name");
    Some(format!("{prefix}/{database}"))
}

#[test]
fn server_on_postgres_with_a_separate_executor_process() {
    let Some(database_url) = postgres_database("preview") else { return };
    let root = tempfile::tempdir().expect("temp dir");
    let repos = make_code_host(root.path());
    let port = free_port();
    let admin_token = "flt_u_e2e_admin_token_for_the_postgres_test_0123456789abcdef";
    let executor_token = "flt_e_e2e_executor_token_for_the_postgres_test_0123456789ab";
    let mut server = flotilla()
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--database-url", &database_url])
        .args(["--admin-token", admin_token, "--executor-token", executor_token, "--data-dir"])
        .arg(root.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flotilla server");
    let (line, _) = wait_for_line(&mut server, "Flotilla server listening on ");
    let _server = Running(server);
    let url = line.trim_start_matches("Flotilla server listening on ").to_owned();
    let executor = flotilla()
        .args(["executor", "--url", &url, "--token", executor_token, "--runtime", "process", "--concurrency", "2", "--name", "e2e-executor", "--work-dir"])
        .arg(root.path().join("executor"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start flotilla executor");
    let _executor = Running(executor);
    add_code_host_and_preview(&url, admin_token, &repos, root.path());
}

#[test]
fn secrets_reach_the_step_but_only_their_placeholder_is_stored() {
    let root = tempfile::tempdir().expect("temp dir");
    make_repository(root.path(), "solo", &[("README.md", "# solo\n")]);
    let repos = root.path().join("repos");
    let (_guard, url, token) = start_up(&root.path().join("data"), 1);
    let run = |arguments: &[&str], stdin: Option<&str>| {
        let mut command = flotilla();
        command.args(arguments).env("FLOTILLA_URL", &url).env("FLOTILLA_TOKEN", &token).stdout(Stdio::piped()).stderr(Stdio::piped());
        command.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
        let mut child = command.spawn().expect("run flotilla");
        if let Some(input) = stdin {
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        }
        child.wait_with_output().expect("wait")
    };
    let secret = "s3cr3t-value-that-must-not-leak";
    assert!(run(&["secrets", "set", "DEPLOY_TOKEN"], Some(&format!("{secret}\n"))).status.success());
    let listed = run(&["secrets", "list", "--json"], None);
    let listed_text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed_text.contains("DEPLOY_TOKEN") && !listed_text.contains(secret), "{listed_text}");

    assert!(run(&["codehost", "add", "--kind", "git", "--name", "local", "--path", repos.to_str().expect("utf-8")], None).status.success());
    assert!(run(&["repos", "sync"], None).status.success());
    let spec = root.path().join("secret.batch.yaml");
    std::fs::write(
        &spec,
        "name: secret-test\non:\n  - repository: local/solo\nsteps:\n  - run: |\n      echo \"the token is $DEPLOY_TOKEN\"\n      echo \"length ${#DEPLOY_TOKEN}\" >> README.md\n    container: alpine:3\n    env:\n      - DEPLOY_TOKEN\n    outputs:\n      said:\n        value: ${{ step.stdout }}\nchangesetTemplate:\n  title: ${{ outputs.said }}\n  branch: batch/secret\n  commit:\n    message: m\n",
    )
    .expect("write spec");
    let preview = run(&["batch", "preview", "--json", "-f", spec.to_str().expect("utf-8")], None);
    assert!(preview.status.success(), "{}", String::from_utf8_lossy(&preview.stderr));
    let document: serde_json::Value = serde_json::from_slice(&preview.stdout).expect("JSON");
    let preview_text = document.to_string();
    assert!(!preview_text.contains(secret), "the preview leaks the secret: {preview_text}");
    let changeset = &document["changesetSpecs"][0];
    assert_eq!(changeset["title"], "the token is ${{ secrets.DEPLOY_TOKEN }}", "outputs carry the placeholder");
    assert!(changeset["diff"].as_str().expect("diff").contains(&format!("+length {}", secret.len())), "the step really saw the secret");

    // The step's log through the API shows only the placeholder.
    let batch_spec = document["batchSpec"].as_str().expect("id");
    let workspaces = support::http_get(&url, &token, &format!("/api/v1/batch-specs/{batch_spec}/workspaces"));
    let job = workspaces["workspaces"][0]["jobId"].as_i64().expect("job id");
    let logs = support::http_get(&url, &token, &format!("/api/v1/jobs/{job}/logs")).to_string();
    assert!(logs.contains("the token is ${{ secrets.DEPLOY_TOKEN }}"), "{logs}");
    assert!(!logs.contains(secret), "{logs}");

    // Nothing in the database files holds the value.
    for entry in std::fs::read_dir(root.path().join("data")).expect("data dir") {
        let path = entry.expect("entry").path();
        if path.file_name().is_some_and(|name| name.to_string_lossy().starts_with("flotilla.sqlite")) {
            let bytes = std::fs::read(&path).expect("read database file");
            assert!(!bytes.windows(secret.len()).any(|window| window == secret.as_bytes()), "{} holds the secret", path.display());
        }
    }
}


#[test]
fn tokens_are_shown_once_and_revocation_locks_them_out() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_guard, url, admin) = start_up(&root.path().join("data"), 0);
    let run = |token: &str, arguments: &[&str]| flotilla().args(arguments).env("FLOTILLA_URL", &url).env("FLOTILLA_TOKEN", token).stdin(Stdio::null()).output().expect("run");
    let created = run(&admin, &["tokens", "create", "--note", "ci"]);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let token = String::from_utf8_lossy(&created.stdout).trim().to_owned();
    assert!(token.starts_with("flt_u_"), "{token}");
    let listed = run(&token, &["tokens", "list", "--json"]);
    let listed_text = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.status.success() && listed_text.contains("\"ci\"") && !listed_text.contains(&token), "{listed_text}");
    let tokens: serde_json::Value = serde_json::from_str(&listed_text).expect("JSON");
    let id = tokens.as_array().expect("array").iter().find(|entry| entry["note"] == "ci").expect("the new token")["id"].to_string();
    let forbidden = run(&token, &["tokens", "create", "--scope", "site-admin"]);
    assert!(!forbidden.status.success(), "a user-scoped token cannot mint a site-admin token");
    assert!(run(&admin, &["tokens", "revoke", &id]).status.success());
    let refused = run(&token, &["repos", "list"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refused the token"), "{}", String::from_utf8_lossy(&refused.stderr));
}

#[test]
fn the_queue_benchmark_harness_runs_at_a_small_size() {
    let output = flotilla().args(["bench", "queue", "--jobs", "60", "--executors", "3"]).stdin(Stdio::null()).output().expect("run bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("60 jobs dequeued and completed over HTTP by 3 no-op executors"), "{stdout}");
}

#[test]
fn the_resolution_benchmark_harness_runs_at_a_small_size() {
    let output = flotilla().args(["bench", "resolution", "--repositories", "40"]).stdin(Stdio::null()).output().expect("run bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    // 40 repositories: all match the name query, one in ten has a go.mod (found by its name
    // and by its content); cold, warm, then after a restart with the file index on disk.
    assert_eq!(stdout.matches("(repo:^bench/service-00) over 40 repositories: 40 workspaces").count(), 3, "{stdout}");
    assert_eq!(stdout.matches("over 40 repositories: 4 workspaces").count(), 6, "{stdout}");
    assert_eq!(stdout.matches("content query over every repository (module example.com/service) over 40 repositories: 4 workspaces").count(), 3, "{stdout}");
}

#[test]
fn the_end_to_end_benchmark_harness_runs_at_a_small_size() {
    let output = flotilla().args(["bench", "e2e", "--repositories", "12", "--executors", "1"]).stdin(Stdio::null()).output().expect("run bench");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.starts_with("flotilla bench e2e: 12 repositories, 1 executor(s)"), "{stdout}");
    for phase in ["mirroring", "resolution and queueing", "execution", "changeset spec ingestion", "publishing (branches pushed", "per workspace", "peak resident memory", "API while running"] {
        assert!(stdout.contains(phase), "{phase} is reported: {stdout}");
    }
}

/// The executor API checks the token before it reads a body: without one, a malformed body
/// is still 401, so a caller learns nothing about what the route would accept.
#[test]
fn executor_routes_refuse_a_missing_token_before_reading_the_body() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = support::start_server(&root.path().join("data"), "flt_u_token_first_admin_0000000000000000000000000000000000000", "flt_e_token_first_executor_000000000000000000000000000000000", &[]);
    for (method, path) in [("POST", "/.executors/queue/dequeue"), ("POST", "/.executors/queue/heartbeat"), ("POST", "/.executors/jobs/1/log"), ("PATCH", "/.executors/jobs/1/log/0"), ("POST", "/.executors/jobs/1/complete"), ("POST", "/.executors/jobs/1/fail")] {
        let (status, body) = support::http_request(&url, method, path, None, Some("not json"));
        assert_eq!(status, 401, "{method} {path}: {body}");
        assert!(body.contains("\"error\""), "{method} {path}: a JSON error: {body}");
        let (status, _) = support::http_request(&url, method, path, Some("token-executor wrong"), Some("not json"));
        assert_eq!(status, 401, "{method} {path} with a wrong executor token");
    }
}
