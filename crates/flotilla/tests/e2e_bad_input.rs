//! Bad input and wrong credentials get a clear error and a 4xx from the real server, never a
//! 500: malformed and oversized specs, unknown repositories and ids, missing or wrong tokens,
//! an executor token on the user API, a user token on the executor API, and a job token
//! fetching another repository.

mod support;

use support::{http_request, make_repository, start_server};

const ADMIN: &str = "flt_u_bad_input_admin_token_000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_bad_input_executor_token_0000000000000000000000000000";

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

#[test]
fn bad_input_is_a_clear_4xx() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
    let admin = format!("token {ADMIN}");
    let post = |path: &str, auth: Option<&str>, body: &str| http_request(&url, "POST", path, auth, Some(body));

    // Malformed YAML: 400 with the problem located.
    let (status, body) = post("/api/v1/batch-specs", Some(&admin), &serde_json::json!({"spec": "name: x\non: [\n"}).to_string());
    assert_eq!(status, 400, "{body}");
    let answer = json(&body);
    assert!(answer["error"].as_str().expect("error").contains("invalid YAML"), "{body}");
    assert_eq!(answer["diagnostics"][0]["line"], 3, "{body}");

    // A schema error: every diagnostic is returned.
    let (status, body) = post("/api/v1/batch-specs", Some(&admin), &serde_json::json!({"spec": "name: bad name\nsteps:\n  - run: x\n"}).to_string());
    assert_eq!(status, 400);
    assert!(json(&body)["diagnostics"].as_array().expect("list").len() >= 3, "{body}");

    // Oversized: 413, with the limit named.
    let huge = format!("name: x\ndescription: \"{}\"\n", "a".repeat(5 * 1024 * 1024));
    let (status, body) = post("/api/v1/batch-specs", Some(&admin), &serde_json::json!({"spec": huge}).to_string());
    assert_eq!(status, 413, "{}", &body[..body.len().min(200)]);
    assert!(json(&body)["error"].as_str().expect("error").contains("this server accepts at most 4194304"), "{body}");

    // Not JSON at all.
    let (status, _) = post("/api/v1/batch-specs", Some(&admin), "{not json");
    assert!((400..500).contains(&status), "{status}");

    // An unknown repository: resolution says so, as a 400.
    let spec = "name: x\non:\n  - repository: nowhere/nothing\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n";
    let (status, body) = post("/api/v1/batch-specs/resolve", Some(&admin), &serde_json::json!({"spec": spec}).to_string());
    assert_eq!(status, 400, "{body}");
    assert!(json(&body)["error"].as_str().expect("error").contains("repository nowhere/nothing not found"), "{body}");

    // Unknown ids: 404.
    let (status, _) = http_request(&url, "GET", "/api/v1/batch-specs/doesnotexist", Some(&admin), None);
    assert_eq!(status, 404);
    let (status, _) = http_request(&url, "GET", "/api/v1/jobs/999999/logs", Some(&admin), None);
    assert_eq!(status, 404);

    // No token, a wrong token, a malformed header: 401.
    for authorization in [None, Some("token flt_u_wrong"), Some("Basic abc")] {
        let (status, body) = http_request(&url, "GET", "/api/v1/repositories", authorization, None);
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert!(json(&body)["error"].is_string());
    }
    // The executor token cannot read user data; a user token cannot use the executor API.
    let (status, _) = http_request(&url, "GET", "/api/v1/repositories", Some(&format!("token {EXECUTOR}")), None);
    assert_eq!(status, 401);
    let (status, _) = http_request(&url, "GET", "/api/v1/repositories", Some(&format!("token-executor {EXECUTOR}")), None);
    assert_eq!(status, 401);
    let dequeue_body = serde_json::json!({"executor": {"name": "probe", "version": "0", "hostname": "h", "os": "linux", "architecture": "x86_64", "runtime": "process"}}).to_string();
    let (status, _) = post("/.executors/queue/dequeue", Some(&admin), &dequeue_body);
    assert_eq!(status, 401);
    let (status, _) = post("/.executors/queue/dequeue", Some(&format!("token-executor {EXECUTOR}")), &dequeue_body);
    assert_eq!(status, 204, "nothing queued yet");
}

#[test]
fn a_job_token_opens_only_its_own_repository_and_job() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
    make_repository(root.path(), "mine", &[("README.md", "# mine\n")]);
    make_repository(root.path(), "other", &[("README.md", "# other\n")]);
    let admin = format!("token {ADMIN}");
    let repos = root.path().join("repos");
    let (status, body) = http_request(&url, "POST", "/api/v1/code-hosts", Some(&admin), Some(&serde_json::json!({"kind": "git", "name": "local", "path": repos}).to_string()));
    assert_eq!(status, 201, "{body}");
    let (status, _) = http_request(&url, "POST", "/api/v1/repositories/sync", Some(&admin), Some(r#"{"wait": true}"#));
    assert_eq!(status, 204);
    let spec = "name: x\non:\n  - repository: local/mine\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n";
    let (status, body) = http_request(&url, "POST", "/api/v1/batch-specs", Some(&admin), Some(&serde_json::json!({"spec": spec}).to_string()));
    assert_eq!(status, 201, "{body}");

    // Act as an executor: dequeue the job and use its token.
    let dequeue_body = serde_json::json!({"executor": {"name": "probe", "version": "0", "hostname": "h", "os": "linux", "architecture": "x86_64", "runtime": "process"}}).to_string();
    let mut job = serde_json::Value::Null;
    support::wait_until(std::time::Duration::from_secs(30), "the job to be queued", || {
        let (status, body) = http_request(&url, "POST", "/.executors/queue/dequeue", Some(&format!("token-executor {EXECUTOR}")), Some(&dequeue_body));
        if status == 200 {
            job = json(&body);
        }
        status == 200
    });
    let bearer = format!("Bearer {}", job["token"].as_str().expect("job token"));
    let id = job["id"].as_i64().expect("job id");
    let (status, _) = http_request(&url, "GET", "/.executors/git/local/mine/info/refs?service=git-upload-pack", Some(&bearer), None);
    assert_eq!(status, 200, "the job's own repository is served");
    let (status, body) = http_request(&url, "GET", "/.executors/git/local/other/info/refs?service=git-upload-pack", Some(&bearer), None);
    assert_eq!(status, 403, "another repository is refused: {body}");
    let (status, _) = http_request(&url, "GET", "/api/v1/repositories", Some(&bearer), None);
    assert_eq!(status, 401, "a job token reads no user data");
    let log = serde_json::json!({"key": "x", "command": [], "started_at_ms": 0}).to_string();
    let (status, _) = http_request(&url, "POST", &format!("/.executors/jobs/{}/log", id + 1000), Some(&bearer), Some(&log));
    assert_eq!(status, 403, "a job token reports only on its own job");
    let (status, _) = http_request(&url, "POST", &format!("/.executors/jobs/{id}/fail"), Some(&bearer), Some(r#"{"message": "probe done", "infrastructure": false}"#));
    assert_eq!(status, 204);
    let (status, _) = http_request(&url, "GET", "/.executors/git/local/mine/info/refs?service=git-upload-pack", Some(&bearer), None);
    assert_eq!(status, 401, "the token dies with the job");
}

#[test]
fn infrastructure_failures_are_retried_then_failed_with_a_clear_message() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
    make_repository(root.path(), "flaky", &[("README.md", "# flaky\n")]);
    let admin = format!("token {ADMIN}");
    let repos = root.path().join("repos");
    http_request(&url, "POST", "/api/v1/code-hosts", Some(&admin), Some(&serde_json::json!({"kind": "git", "name": "local", "path": repos}).to_string()));
    http_request(&url, "POST", "/api/v1/repositories/sync", Some(&admin), Some(r#"{"wait": true}"#));
    let spec = "name: x\non:\n  - repository: local/flaky\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n";
    let (status, body) = http_request(&url, "POST", "/api/v1/batch-specs", Some(&admin), Some(&serde_json::json!({"spec": spec}).to_string()));
    assert_eq!(status, 201, "{body}");
    let batch_spec = json(&body)["id"].as_str().expect("id").to_owned();
    let dequeue_body = serde_json::json!({"executor": {"name": "probe", "version": "0", "hostname": "h", "os": "linux", "architecture": "x86_64", "runtime": "process"}}).to_string();
    let mut job_ids = Vec::new();
    for _ in 0..3 {
        let mut job = serde_json::Value::Null;
        support::wait_until(std::time::Duration::from_secs(30), "a job to dequeue", || {
            let (status, body) = http_request(&url, "POST", "/.executors/queue/dequeue", Some(&format!("token-executor {EXECUTOR}")), Some(&dequeue_body));
            if status == 200 {
                job = json(&body);
            }
            status == 200
        });
        job_ids.push(job["id"].as_i64().expect("id"));
        let bearer = format!("Bearer {}", job["token"].as_str().expect("token"));
        let (status, _) = http_request(&url, "POST", &format!("/.executors/jobs/{}/fail", job["id"]), Some(&bearer), Some(r#"{"message": "git fetch timed out", "infrastructure": true}"#));
        assert_eq!(status, 204);
    }
    assert!(job_ids.windows(2).all(|pair| pair[0] == pair[1]), "the same job is attempted again: {job_ids:?}");
    let (_, body) = http_request(&url, "GET", &format!("/api/v1/batch-specs/{batch_spec}/workspaces"), Some(&admin), None);
    let workspace = &json(&body)["workspaces"][0];
    assert_eq!(workspace["state"], "failed");
    assert_eq!(workspace["failureMessage"], "infrastructure failure: git fetch timed out (after 3 attempts)");
}
