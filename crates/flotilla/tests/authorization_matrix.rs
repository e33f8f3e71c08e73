//! The authorisation matrix: every route the server has, called by seven kinds of caller
//! against the real server, each with the status the design says (docs/authorization.md).
//!
//! One table, one loop. The table must cover every `(method, route)` the server's routers
//! declare (read from the server's source, as `openapi_routes.rs` does), so a new route without
//! a row fails this test; and docs/authorization.md must hold the same table, so the document
//! cannot drift from what is tested.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use support::{http_request, make_repository, start_server, wait_until};

const ADMIN: &str = "flt_u_matrix_admin_token_00000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_matrix_executor_token_000000000000000000000000000000";
const PASSWORD: &str = "matrix password for tests";

/// The callers, in the order of the table's columns (and the order each row calls them).
const CALLERS: [&str; 7] = ["anonymous", "outsider", "member", "orgadmin", "siteadmin", "executor", "job"];

struct Row {
    method: &'static str,
    /// The route as the router declares it.
    route: &'static str,
    /// The request path; `{orgspec}`, `{jobA}`, `{jobB}`, `{codehost}`, `{remotehost}`, `{forgehost}` and `{caller}` are
    /// filled in per run and caller.
    request: &'static str,
    body: &'static str,
    /// Expected status per caller, in `CALLERS` order.
    expected: [u16; 7],
}

const fn row(method: &'static str, route: &'static str, request: &'static str, body: &'static str, expected: [u16; 7]) -> Row {
    Row { method, route, request, body, expected }
}

const NO_JOB_SPEC: &str = r#"{"spec": "name: matrix-{caller}\non:\n  - repository: nowhere/nothing\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n"}"#;
const EXECUTOR_DESCRIPTION: &str = r#"{"name": "matrix", "version": "0", "hostname": "h", "os": "linux", "architecture": "x86_64", "runtime": "process"}"#;
const EMPTY_RESULT: &str = r#"{"final_result": {"step_index": 0, "changed_files": {"modified": [], "added": [], "deleted": [], "renamed": []}, "stdout": "", "stderr": "", "diff_base64": "", "outputs": {}, "skipped": false}, "cache_entries": []}"#;

/// The matrix. Columns: anonymous, another user (outsider), an org member, an org admin, a site
/// admin, an executor token, a job token. The org's `membersCanAdminister` is false, so its
/// members may read but not change its batch specs.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                                                                                                                  anon  other member oadmin sadmin exec  job
    row("GET",    "/healthz",                                   "/healthz",                                        "",                  [200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/metrics",                                   "/metrics",                                        "",                  [200, 200, 200, 200, 200, 200, 200]),
    row("GET",    "/api/v1/code-hosts",                         "/api/v1/code-hosts",                              "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("POST",   "/api/v1/code-hosts",                         "/api/v1/code-hosts",                              r#"{"kind": "git-urls", "name": "host-{caller}", "urls": ["https://example.invalid/x.git"]}"#, [401, 403, 403, 403, 201, 401, 401]),
    row("PUT",    "/api/v1/code-hosts/{id}/access",             "/api/v1/code-hosts/{codehost}/access",            r#"{"users": [], "orgs": []}"#, [401, 403, 403, 403, 200, 401, 401]),
    // `{remotehost}` is a git-urls connection restricted to matrix-org: the outsider cannot
    // read it, so it does not exist for them (404), as for any restricted host.
    row("PUT",    "/api/v1/code-hosts/{id}/credential",         "/api/v1/code-hosts/{remotehost}/credential",      r#"{"token": "site-{caller}"}"#, [401, 403, 403, 403, 200, 401, 401]),
    row("DELETE", "/api/v1/code-hosts/{id}/credential",         "/api/v1/code-hosts/{remotehost}/credential",      "",                  [401, 403, 403, 403, 204, 401, 401]),
    row("PUT",    "/api/v1/code-hosts/{id}/credentials/me",     "/api/v1/code-hosts/{remotehost}/credentials/me",  r#"{"token": "own-{caller}", "username": "{caller}"}"#, [401, 404, 200, 200, 200, 401, 401]),
    row("GET",    "/api/v1/code-host-credentials",              "/api/v1/code-host-credentials",                   "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("DELETE", "/api/v1/code-hosts/{id}/credentials/me",     "/api/v1/code-hosts/{remotehost}/credentials/me",  "",                  [401, 404, 204, 204, 204, 401, 401]),
    // `{forgehost}` is a GitHub connection. Its webhook route takes no Flotilla token: the
    // signature is its authentication, so every caller's unsigned delivery is 401 alike.
    row("PUT",    "/api/v1/code-hosts/{id}/webhook-secret",     "/api/v1/code-hosts/{forgehost}/webhook-secret",   r#"{"secret": "matrix-webhook-secret-{caller}"}"#, [401, 403, 403, 403, 200, 401, 401]),
    row("POST",   "/api/webhooks/{code_host}",                  "/api/webhooks/forge",                             "{}",                [401, 401, 401, 401, 401, 401, 401]),
    row("DELETE", "/api/v1/code-hosts/{id}/webhook-secret",     "/api/v1/code-hosts/{forgehost}/webhook-secret",   "",                  [401, 403, 403, 403, 204, 401, 401]),
    row("GET",    "/api/v1/repositories",                       "/api/v1/repositories",                            "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("POST",   "/api/v1/repositories/sync",                  "/api/v1/repositories/sync",                       "{}",                [401, 403, 403, 403, 202, 401, 401]),
    row("POST",   "/api/v1/batch-specs",                        "/api/v1/batch-specs",                             NO_JOB_SPEC,         [401, 201, 201, 201, 201, 401, 401]),
    row("POST",   "/api/v1/batch-specs/resolve",                "/api/v1/batch-specs/resolve",                     r#"{"spec": "name: x\non:\n  - repository: local/a\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n"}"#, [401, 200, 200, 200, 200, 401, 401]),
    row("GET",    "/api/v1/batch-specs/{id}",                   "/api/v1/batch-specs/{orgspec}",                   "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("GET",    "/api/v1/batch-specs/{id}/workspaces",        "/api/v1/batch-specs/{orgspec}/workspaces",        "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("GET",    "/api/v1/batch-specs/{id}/changeset-specs",   "/api/v1/batch-specs/{orgspec}/changeset-specs",   "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("POST",   "/api/v1/batch-specs/{id}/cancel",            "/api/v1/batch-specs/{orgspec}/cancel",            "",                  [401, 403, 403, 200, 200, 401, 401]),
    row("POST",   "/api/v1/batch-specs/{id}/retry",             "/api/v1/batch-specs/{orgspec}/retry",             "{}",                [401, 403, 403, 200, 200, 401, 401]),
    row("GET",    "/api/v1/batch-specs/{id}/apply-preview",     "/api/v1/batch-specs/{orgspec}/apply-preview",     "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("POST",   "/api/v1/batch-specs/{id}/apply",             "/api/v1/batch-specs/{orgspec}/apply",             "{}",                [401, 403, 403, 200, 200, 401, 401]),
    row("GET",    "/api/v1/batch-changes/{name}/changesets",    "/api/v1/batch-changes/never-applied/changesets",  "",                  [401, 404, 404, 404, 404, 401, 401]),
    row("GET",    "/api/v1/batch-changes/{name}/statistics",    "/api/v1/batch-changes/never-applied/statistics",  "",                  [401, 404, 404, 404, 404, 401, 401]),
    row("POST",   "/api/v1/batch-changes/{name}/close",         "/api/v1/batch-changes/never-applied/close",       "{}",                [401, 404, 404, 404, 404, 401, 401]),
    row("POST",   "/api/v1/batch-changes/{name}/changesets/bulk", "/api/v1/batch-changes/never-applied/changesets/bulk", r#"{"action": "retry"}"#, [401, 404, 404, 404, 404, 401, 401]),
    row("DELETE", "/api/v1/batch-changes/{name}",               "/api/v1/batch-changes/never-applied",             "",                  [401, 404, 404, 404, 404, 401, 401]),
    row("GET",    "/api/v1/jobs/{id}/logs",                     "/api/v1/jobs/{jobA}/logs",                        "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("GET",    "/api/v1/secrets",                            "/api/v1/secrets",                                 "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("PUT",    "/api/v1/secrets/{name}",                     "/api/v1/secrets/OWN_{caller}",                    r#"{"value": "v"}"#, [401, 201, 201, 201, 201, 401, 401]),
    row("PUT",    "/api/v1/secrets/{name}",                     "/api/v1/secrets/ORG_{caller}?namespace=matrix-org", r#"{"value": "v"}"#, [401, 403, 403, 201, 201, 401, 401]),
    row("PUT",    "/api/v1/secrets/{name}",                     "/api/v1/secrets/GLOBAL_{caller}?namespace=global", r#"{"value": "v"}"#, [401, 403, 403, 403, 201, 401, 401]),
    row("DELETE", "/api/v1/secrets/{name}",                     "/api/v1/secrets/OWN_{caller}",                    "",                  [401, 204, 204, 204, 204, 401, 401]),
    row("GET",    "/api/v1/tokens",                             "/api/v1/tokens",                                  "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("POST",   "/api/v1/tokens",                             "/api/v1/tokens",                                  r#"{"note": "matrix"}"#, [401, 201, 201, 201, 201, 401, 401]),
    row("POST",   "/api/v1/tokens",                             "/api/v1/tokens",                                  r#"{"scope": "site-admin"}"#, [401, 403, 403, 403, 201, 401, 401]),
    row("DELETE", "/api/v1/tokens/{id}",                        "/api/v1/tokens/999999",                           "",                  [401, 404, 404, 404, 404, 401, 401]),
    row("GET",    "/api/v1/users",                              "/api/v1/users",                                   "",                  [401, 403, 403, 403, 200, 401, 401]),
    row("POST",   "/api/v1/users",                              "/api/v1/users",                                   r#"{"username": "made-by-{caller}"}"#, [401, 403, 403, 403, 201, 401, 401]),
    row("PUT",    "/api/v1/users/{username}/password",          "/api/v1/users/outsider/password",                 r#"{"password": "matrix password for tests"}"#, [401, 204, 403, 403, 204, 401, 401]),
    row("GET",    "/api/v1/orgs",                               "/api/v1/orgs",                                    "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("POST",   "/api/v1/orgs",                               "/api/v1/orgs",                                    r#"{"name": "org-{caller}"}"#, [401, 201, 201, 201, 201, 401, 401]),
    row("GET",    "/api/v1/orgs/{name}",                        "/api/v1/orgs/matrix-org",                         "",                  [401, 200, 200, 200, 200, 401, 401]),
    row("PATCH",  "/api/v1/orgs/{name}",                        "/api/v1/orgs/matrix-org",                         r#"{"membersCanAdminister": false}"#, [401, 403, 403, 200, 200, 401, 401]),
    row("GET",    "/api/v1/orgs/{name}/members",                "/api/v1/orgs/matrix-org/members",                 "",                  [401, 403, 200, 200, 200, 401, 401]),
    row("PUT",    "/api/v1/orgs/{name}/members/{username}",     "/api/v1/orgs/matrix-org/members/newbie-{caller}", r#"{"role": "member"}"#, [401, 403, 403, 200, 200, 401, 401]),
    row("DELETE", "/api/v1/orgs/{name}/members/{username}",     "/api/v1/orgs/matrix-org/members/newbie-{caller}", "",                  [401, 403, 403, 204, 204, 401, 401]),
    row("GET",    "/api/v1/audit-log",                          "/api/v1/audit-log",                               "",                  [401, 403, 403, 403, 200, 401, 401]),
    row("POST",   "/api/v1/sessions",                           "/api/v1/sessions",                                r#"{"username": "outsider", "password": "matrix password for tests"}"#, [201, 201, 201, 201, 201, 201, 201]),
    row("POST",   "/api/v1/sessions",                           "/api/v1/sessions",                                r#"{"username": "outsider", "password": "wrong password, wrong"}"#, [401, 401, 401, 401, 401, 401, 401]),
    row("POST",   "/.executors/queue/dequeue",                  "/.executors/queue/dequeue",                       r#"{"executor": EXECUTOR}"#, [401, 401, 401, 401, 401, 204, 401]),
    row("POST",   "/.executors/queue/heartbeat",                "/.executors/queue/heartbeat",                     r#"{"executor": EXECUTOR, "job_ids": [{jobA}, {jobB}]}"#, [401, 401, 401, 401, 401, 200, 401]),
    row("GET",    "/.executors/git/{*path}",                    "/.executors/git/local/a/info/refs?service=git-upload-pack", "",        [401, 401, 401, 401, 401, 401, 200]),
    row("POST",   "/.executors/git/{*path}",                    "/.executors/git/local/a/git-upload-pack",         "0000",              [401, 401, 401, 401, 401, 401, 200]),
    row("POST",   "/.executors/jobs/{job_id}/log",              "/.executors/jobs/{jobA}/log",                     r#"{"key": "matrix", "command": [], "started_at_ms": 0}"#, [401, 401, 401, 401, 401, 401, 200]),
    row("PATCH",  "/.executors/jobs/{job_id}/log/{index}",      "/.executors/jobs/{jobA}/log/0",                   r#"{"output": "o", "exit_code": 0, "duration_ms": 1}"#, [401, 401, 401, 401, 401, 401, 204]),
    // The matrix's spec mounts nothing, so the job token passes and finds no file (404).
    row("GET",    "/.executors/jobs/{job_id}/mount-files/{file_id}", "/.executors/jobs/{jobA}/mount-files/1",   "",                  [401, 401, 401, 401, 401, 401, 404]),
    row("POST",   "/.executors/jobs/{job_id}/complete",         "/.executors/jobs/{jobA}/complete",                EMPTY_RESULT,        [401, 401, 401, 401, 401, 401, 204]),
    row("POST",   "/.executors/jobs/{job_id}/fail",             "/.executors/jobs/{jobB}/fail",                    r#"{"message": "matrix", "infrastructure": false}"#, [401, 401, 401, 401, 401, 401, 204]),
    // The web interface's routes; the log stream comes after job A completed, so it ends.
    row("GET", "/api/v1/me", "/api/v1/me", "", [401, 200, 200, 200, 200, 401, 401]),
    row("GET", "/api/v1/batch-changes", "/api/v1/batch-changes?namespace=matrix-org", "", [401, 200, 200, 200, 200, 401, 401]),
    row("GET", "/api/v1/batch-changes/{name}", "/api/v1/batch-changes/never-applied", "", [401, 404, 404, 404, 404, 401, 401]),
    row("GET", "/api/v1/batch-specs", "/api/v1/batch-specs?namespace=matrix-org", "", [401, 200, 200, 200, 200, 401, 401]),
    row("POST", "/api/v1/batch-specs/validate", "/api/v1/batch-specs/validate", r#"{"spec": "name: x\non: 3\n"}"#, [401, 200, 200, 200, 200, 401, 401]),
    row("GET", "/api/v1/workspaces/{id}", "/api/v1/workspaces/{workspaceA}", "", [401, 200, 200, 200, 200, 401, 401]),
    row("GET", "/api/v1/executors", "/api/v1/executors", "", [401, 403, 403, 403, 200, 401, 401]),
    row("GET", "/api/v1/batch-templates", "/api/v1/batch-templates", "", [401, 200, 200, 200, 200, 401, 401]),
    row("POST", "/api/v1/batch-templates", "/api/v1/batch-templates", r#"{"name": "tpl-{caller}", "spec": "name: t\non:\n  - repository: local/a\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n"}"#, [401, 403, 403, 403, 201, 401, 401]),
    row("DELETE", "/api/v1/batch-templates/{name}", "/api/v1/batch-templates/tpl-{caller}", "", [401, 403, 403, 403, 204, 401, 401]),
    row("POST", "/api/v1/sessions/token", "/api/v1/sessions/token", "", [401, 201, 201, 201, 201, 401, 401]),
    row("GET", "/api/v1/jobs/{id}/logs/stream", "/api/v1/jobs/{jobA}/logs/stream", "", [401, 200, 200, 200, 200, 401, 401]),
    // Last: signing out revokes the caller's own token.
    row("DELETE", "/api/v1/sessions/current",                   "/api/v1/sessions/current",                        "",                  [401, 204, 204, 204, 204, 401, 401]),
];

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

/// `(method, route)` of every route the server's routers declare.
fn server_routes() -> BTreeSet<(String, String)> {
    let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/src");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&source_dir).expect("read the server's src") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read source");
        for part in text.split(".route(\"").skip(1) {
            let (path, rest) = part.split_once('"').expect("route path");
            let declaration = rest.lines().next().unwrap_or_default();
            let mut methods = 0;
            for method in ["get", "post", "put", "patch", "delete"] {
                let needle = format!("{method}(");
                let declared = declaration.match_indices(&needle).any(|(at, _)| {
                    at == 0 || !declaration.as_bytes()[at - 1].is_ascii_alphanumeric() && declaration.as_bytes()[at - 1] != b'_'
                });
                if declared {
                    routes.insert((method.to_uppercase(), path.to_owned()));
                    methods += 1;
                }
            }
            assert!(methods > 0, "no method found for route {path}: {declaration}");
        }
    }
    routes
}

/// The matrix as docs/authorization.md writes it: `method route request statuses...` per row.
fn documented_matrix() -> Vec<Vec<String>> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/authorization.md")).expect("read docs/authorization.md");
    let start = text.find("<!-- matrix:start -->").expect("docs/authorization.md has <!-- matrix:start -->");
    let end = text.find("<!-- matrix:end -->").expect("docs/authorization.md has <!-- matrix:end -->");
    text[start..end]
        .lines()
        .filter(|line| line.starts_with('|') && !line.starts_with("|--") && !line.starts_with("| Method"))
        .map(|line| line.trim_matches('|').split('|').map(|cell| cell.trim().trim_matches('`').to_owned()).collect())
        .collect()
}

fn matrix_as_cells() -> Vec<Vec<String>> {
    MATRIX
        .iter()
        .map(|row| {
            let mut cells = vec![row.method.to_owned(), row.route.to_owned(), row.request.to_owned()];
            cells.extend(row.expected.iter().map(u16::to_string));
            cells
        })
        .collect()
}

#[test]
fn every_route_has_a_row_and_the_document_matches() {
    let routes = server_routes();
    assert!(routes.len() >= 40, "found {} routes; the scan of the source is broken", routes.len());
    let covered: BTreeSet<(String, String)> = MATRIX.iter().map(|row| (row.method.to_owned(), row.route.to_owned())).collect();
    let missing: Vec<_> = routes.difference(&covered).collect();
    let unknown: Vec<_> = covered.difference(&routes).collect();
    assert!(missing.is_empty(), "routes without a row in the authorisation matrix: {missing:?}");
    assert!(unknown.is_empty(), "matrix rows for routes the server does not have: {unknown:?}");
    let documented = documented_matrix();
    let tested = matrix_as_cells();
    for (index, (document_row, tested_row)) in documented.iter().zip(&tested).enumerate() {
        assert_eq!(document_row, tested_row, "row {} of docs/authorization.md differs from the tested matrix", index + 1);
    }
    assert_eq!(documented.len(), tested.len(), "docs/authorization.md and the tested matrix have different row counts");
}

/// Everything the rows refer to.
struct World {
    url: String,
    /// Authorization header value per caller (`None` for anonymous).
    authorization: BTreeMap<&'static str, Option<String>>,
    job_b_token: String,
    values: BTreeMap<&'static str, String>,
}

fn request(world: &World, method: &str, path: &str, caller: &str, body: Option<&str>) -> (u16, String) {
    http_request(&world.url, method, path, world.authorization[caller].as_deref(), body)
}

fn set_up(root: &Path) -> (support::Running, World) {
    let (server, url) = start_server(&root.join("data"), ADMIN, EXECUTOR, &["--heartbeat-timeout", "600"]);
    let admin = Some(format!("token {ADMIN}"));
    let call = |method: &str, path: &str, authorization: &Option<String>, body: &str| -> serde_json::Value {
        let (status, answer) = http_request(&url, method, path, authorization.as_deref(), Some(body));
        assert!((200..300).contains(&status), "setting up: {method} {path} gave {status}: {answer}");
        if answer.is_empty() { serde_json::Value::Null } else { json(&answer) }
    };
    make_repository(root, "a", &[("README.md", "# a\n")]);
    make_repository(root, "b", &[("README.md", "# b\n")]);
    call("POST", "/api/v1/code-hosts", &admin, &serde_json::json!({"kind": "git", "name": "local", "path": root.join("repos")}).to_string());
    call("POST", "/api/v1/repositories/sync", &admin, r#"{"wait": true}"#);
    for user in ["outsider", "member", "orgadmin"] {
        call("POST", "/api/v1/users", &admin, &serde_json::json!({"username": user, "password": PASSWORD}).to_string());
    }
    for user in ["newbie-orgadmin", "newbie-siteadmin"] {
        call("POST", "/api/v1/users", &admin, &serde_json::json!({"username": user}).to_string());
    }
    let mut authorization = BTreeMap::new();
    authorization.insert("anonymous", None);
    authorization.insert("siteadmin", admin.clone());
    authorization.insert("executor", Some(format!("token-executor {EXECUTOR}")));
    for user in ["outsider", "member", "orgadmin"] {
        let session = call("POST", "/api/v1/sessions", &None, &serde_json::json!({"username": user, "password": PASSWORD}).to_string());
        authorization.insert(user, Some(format!("token {}", session["token"].as_str().expect("session token"))));
    }
    call("POST", "/api/v1/orgs", &authorization["orgadmin"], r#"{"name": "matrix-org", "membersCanAdminister": false}"#);
    call("PUT", "/api/v1/orgs/matrix-org/members/member", &authorization["orgadmin"], r#"{"role": "member"}"#);
    let remote_host = call("POST", "/api/v1/code-hosts", &admin, r#"{"kind": "git-urls", "name": "remote", "urls": ["https://example.invalid/remote.git"]}"#);
    call("PUT", &format!("/api/v1/code-hosts/{}/access", remote_host["id"]), &admin, r#"{"orgs": ["matrix-org"]}"#);
    let org_spec = call(
        "POST",
        "/api/v1/batch-specs",
        &authorization["orgadmin"],
        &serde_json::json!({"namespace": "matrix-org", "spec": "name: org-spec\non:\n  - repository: nowhere/nothing\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n"}).to_string(),
    );
    let job_spec = "name: jobs\non:\n  - repository: local/a\n  - repository: local/b\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n";
    let jobs_spec = call("POST", "/api/v1/batch-specs", &admin, &serde_json::json!({"spec": job_spec}).to_string());
    let dequeue = serde_json::json!({"executor": serde_json::from_str::<serde_json::Value>(EXECUTOR_DESCRIPTION).expect("description")}).to_string();
    let mut jobs = Vec::new();
    wait_until(Duration::from_secs(60), "both jobs to be dequeued", || {
        let (status, body) = http_request(&url, "POST", "/.executors/queue/dequeue", Some(&format!("token-executor {EXECUTOR}")), Some(&dequeue));
        if status == 200 {
            jobs.push(json(&body));
        }
        jobs.len() == 2
    });
    // Rows on `{jobA}` use job A's token (the repository `local/a`), rows on `{jobB}` job B's.
    jobs.sort_by_key(|job| job["repository_name"].as_str().unwrap_or_default().to_owned());
    assert_eq!(jobs[0]["repository_name"], "local/a", "{jobs:?}");
    authorization.insert("job", Some(format!("Bearer {}", jobs[0]["token"].as_str().expect("job token"))));
    // A forge connection for the webhook rows; nothing listens at its API URL.
    let forge_host = call(
        "POST",
        "/api/v1/code-hosts",
        &admin,
        r#"{"kind": "github", "name": "forge", "url": "http://127.0.0.1:9", "repos": ["acme/app"], "credential": {"token": "matrix-forge-token"}}"#,
    );
    let hosts = call("GET", "/api/v1/code-hosts", &admin, "");
    let mut values = BTreeMap::new();
    values.insert("{orgspec}", org_spec["id"].as_str().expect("spec id").to_owned());
    values.insert("{jobA}", jobs[0]["id"].to_string());
    values.insert("{jobB}", jobs[1]["id"].to_string());
    let workspaces = call("GET", &format!("/api/v1/batch-specs/{}/workspaces", jobs_spec["id"].as_str().expect("spec id")), &admin, "");
    let workspace_a = workspaces["workspaces"].as_array().expect("workspaces").iter().find(|workspace| workspace["repository"] == "local/a").expect("local/a's workspace");
    values.insert("{workspaceA}", workspace_a["id"].to_string());
    values.insert("{codehost}", hosts[0]["id"].to_string());
    values.insert("{remotehost}", remote_host["id"].to_string());
    values.insert("{forgehost}", forge_host["id"].to_string());
    values.insert("EXECUTOR", EXECUTOR_DESCRIPTION.to_owned());
    let job_b_token = format!("Bearer {}", jobs[1]["token"].as_str().expect("job token"));
    (server, World { url, authorization, job_b_token, values })
}

#[test]
fn every_caller_gets_the_designed_status_on_every_route() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, world) = set_up(root.path());
    let mut failures = Vec::new();
    for row in MATRIX {
        for (caller, expected) in CALLERS.iter().zip(row.expected) {
            let fill = |template: &str| {
                let mut text = template.replace("{caller}", caller);
                for (name, value) in &world.values {
                    text = text.replace(name, value);
                }
                text
            };
            let path = fill(row.request);
            let body = (!row.body.is_empty()).then(|| fill(row.body));
            let (status, answer) = if *caller == "job" && row.request.contains("{jobB}") {
                http_request(&world.url, row.method, &path, Some(&world.job_b_token), body.as_deref())
            } else {
                request(&world, row.method, &path, caller, body.as_deref())
            };
            if status != expected {
                failures.push(format!("{} {path} as {caller}: expected {expected}, got {status}: {}", row.method, &answer[..answer.len().min(300)]));
            }
            // A refusal is JSON that says what to do, never an empty page.
            if (400..500).contains(&status) && row.route != "/.executors/git/{*path}" {
                let error = serde_json::from_str::<serde_json::Value>(&answer).ok().and_then(|value| value["error"].as_str().map(str::to_owned));
                if error.is_none_or(|message| message.len() < 10) {
                    failures.push(format!("{} {path} as {caller}: a {status} without a JSON error message: {answer}", row.method));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} cells differ from the matrix:\n{}", failures.len(), failures.join("\n"));
}
