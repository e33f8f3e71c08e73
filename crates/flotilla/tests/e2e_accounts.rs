//! Accounts end to end through the real binary: users and orgs from the CLI, password sign-in
//! with its cookie, who may change a batch spec, repositories hidden behind a restricted code
//! host (in listings, resolution, workspaces, logs and changeset specs), and the audit log.

mod support;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;

use support::{flotilla, http_request, make_repository, start_executor, start_server};

const ADMIN: &str = "flt_u_accounts_admin_token_000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_accounts_executor_token_0000000000000000000000000000";

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {body}"))
}

/// Runs the CLI as the holder of `token`.
fn cli(url: &str, token: &str, arguments: &[&str], stdin: Option<&str>) -> Output {
    support::batch::run_client_as(url, token, arguments, stdin)
}

fn succeeds(output: &Output) -> String {
    assert!(output.status.success(), "failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The CLI fails with exit 2 and an error that contains `advice`.
fn fails_with(output: &Output, advice: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "expected a failure: {stderr}");
    assert!(stderr.contains(advice), "expected {advice:?} in: {stderr}");
}

/// A raw request with any headers; returns (status, head, body).
fn raw(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String, String) {
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect");
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n", body.len());
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

fn sign_in(url: &str, username: &str, password: &str) -> String {
    let (status, _, body) = raw(url, "POST", "/api/v1/sessions", &[], &serde_json::json!({"username": username, "password": password}).to_string());
    assert_eq!(status, 201, "{username} signs in: {body}");
    json(&body)["token"].as_str().expect("token").to_owned()
}

#[test]
fn users_orgs_and_password_sessions() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);

    // A site admin creates users; the password comes from stdin and is never echoed.
    succeeds(&cli(&url, ADMIN, &["users", "create", "alice", "--email", "alice@example.com", "--password-stdin"], Some("alice's long password\n")));
    succeeds(&cli(&url, ADMIN, &["users", "create", "bob", "--password-stdin"], Some("bob's long password!")));
    succeeds(&cli(&url, ADMIN, &["users", "create", "carol"], None));
    fails_with(&cli(&url, ADMIN, &["users", "create", "alice"], None), "already taken");
    fails_with(&cli(&url, ADMIN, &["users", "create", "dave", "--password-stdin"], Some("short")), "at least 12");
    let users: serde_json::Value = serde_json::from_str(&succeeds(&cli(&url, ADMIN, &["users", "list", "--json"], None))).expect("JSON");
    let alice = users.as_array().expect("list").iter().find(|user| user["username"] == "alice").expect("alice listed");
    assert_eq!((alice["email"].as_str(), alice["hasPassword"].as_bool()), (Some("alice@example.com"), Some(true)));
    assert!(!users.to_string().contains("argon2"), "password hashes are never returned");

    // Sign-in: the same 401 for a wrong user and a wrong password.
    let (status, _, wrong_user) = raw(&url, "POST", "/api/v1/sessions", &[], r#"{"username": "nobody", "password": "alice's long password"}"#);
    assert_eq!(status, 401);
    let (status, _, wrong_password) = raw(&url, "POST", "/api/v1/sessions", &[], r#"{"username": "alice", "password": "not alice's password"}"#);
    assert_eq!(status, 401);
    assert_eq!(wrong_user, wrong_password, "a wrong username and a wrong password must look the same");
    let (status, _, no_password) = raw(&url, "POST", "/api/v1/sessions", &[], r#"{"username": "carol", "password": "anything at all"}"#);
    assert_eq!((status, no_password), (401, wrong_password.clone()), "a user without a password cannot sign in");

    // A session: a 12-hour token, also an HttpOnly SameSite=Strict cookie that authenticates.
    let (status, head, body) = raw(&url, "POST", "/api/v1/sessions", &[], r#"{"username": "alice", "password": "alice's long password"}"#);
    assert_eq!(status, 201, "{body}");
    let session = json(&body);
    let token = session["token"].as_str().expect("token").to_owned();
    assert_eq!(session["scope"], "user");
    let cookie_line = head.lines().find(|line| line.to_ascii_lowercase().starts_with("set-cookie:")).expect("a Set-Cookie header");
    assert!(cookie_line.contains(&format!("flotilla_session={token}")) && cookie_line.contains("HttpOnly") && cookie_line.contains("SameSite=Strict"), "{cookie_line}");
    let cookie = format!("flotilla_session={token}");
    let (status, _, tokens) = raw(&url, "GET", "/api/v1/tokens", &[("Cookie", &cookie)], "");
    assert_eq!(status, 200, "the cookie authenticates: {tokens}");
    let expires = json(&tokens)[0]["expiresAtMs"].as_i64().expect("a session expires");
    let lifetime = expires - json(&tokens)[0]["createdAtMs"].as_i64().expect("created");
    assert_eq!(lifetime, 12 * 3600 * 1000);

    // Orgs: alice creates one and becomes its admin; she adds bob; bob cannot add others.
    succeeds(&cli(&url, &token, &["orgs", "create", "platform"], None));
    succeeds(&cli(&url, &token, &["orgs", "add-member", "platform", "bob"], None));
    let bob = sign_in(&url, "bob", "bob's long password!");
    fails_with(&cli(&url, &bob, &["orgs", "add-member", "platform", "carol"], None), "ask an admin of platform");
    fails_with(&cli(&url, &bob, &["users", "list"], None), "only site admins");
    let members = succeeds(&cli(&url, &bob, &["orgs", "members", "platform"], None));
    assert_eq!(members, "alice\tadmin\nbob\tmember\n");
    let orgs: serde_json::Value = serde_json::from_str(&succeeds(&cli(&url, &bob, &["orgs", "list", "--json"], None))).expect("JSON");
    assert_eq!((orgs[0]["name"].as_str(), orgs[0]["role"].as_str(), orgs[0]["membersCanAdminister"].as_bool()), (Some("platform"), Some("member"), Some(true)));
    // The last admin cannot leave or be demoted.
    fails_with(&cli(&url, &token, &["orgs", "remove-member", "platform", "alice"], None), "make another member admin first");
    succeeds(&cli(&url, &token, &["orgs", "add-member", "platform", "bob", "--role", "admin"], None));
    succeeds(&cli(&url, &bob, &["orgs", "remove-member", "platform", "alice"], None));
    assert_eq!(succeeds(&cli(&url, &bob, &["orgs", "members", "platform", "--json"], None)).matches("username").count(), 1);

    // Passwords: your own (stdin), or anyone's as a site admin; nobody else's.
    fails_with(&cli(&url, &bob, &["users", "set-password", "alice"], Some("bob sets alice's password")), "only set your own password");
    succeeds(&cli(&url, &bob, &["users", "set-password", "bob"], Some("bob's new long password\n")));
    let (status, _, _) = raw(&url, "POST", "/api/v1/sessions", &[], r#"{"username": "bob", "password": "bob's long password!"}"#);
    assert_eq!(status, 401, "the old password no longer works");
    sign_in(&url, "bob", "bob's new long password");
    succeeds(&cli(&url, ADMIN, &["users", "set-password", "carol"], Some("carol's first password")));
    sign_in(&url, "carol", "carol's first password");

    // Signing out revokes the session: the cookie stops working.
    let (status, head, _) = raw(&url, "DELETE", "/api/v1/sessions/current", &[("Cookie", &cookie)], "");
    assert_eq!(status, 204);
    assert!(head.contains("Max-Age=0"), "the cookie is cleared: {head}");
    let (status, _, body) = raw(&url, "GET", "/api/v1/tokens", &[("Cookie", &cookie)], "");
    assert_eq!(status, 401, "{body}");
    assert!(json(&body)["error"].as_str().expect("error").contains("sign in again"), "{body}");

    // The audit log: newest first, for site admins only.
    fails_with(&cli(&url, &bob, &["audit-log"], None), "only site admins");
    let page: serde_json::Value = serde_json::from_str(&succeeds(&cli(&url, ADMIN, &["audit-log", "--json"], None))).expect("JSON");
    let events = page["events"].as_array().expect("events");
    let ids: Vec<i64> = events.iter().map(|event| event["id"].as_i64().expect("id")).collect();
    assert!(ids.windows(2).all(|pair| pair[0] > pair[1]), "newest first: {ids:?}");
    let summary: Vec<String> = events
        .iter()
        .rev()
        .map(|event| format!("{} {} {}", event["actor"].as_str().unwrap_or("-"), event["action"].as_str().unwrap_or("?"), event["targetId"].as_str().unwrap_or("?")))
        .collect();
    for expected in [
        "admin user.create alice",
        "alice org.create platform",
        "alice org.member.set platform",
        "bob org.member.remove platform",
        "bob user.password.set bob",
        "admin user.password.set carol",
    ] {
        assert!(summary.iter().any(|line| line == expected), "{expected:?} not in the audit log: {summary:#?}");
    }
    assert!(!page.to_string().contains("long password"), "no password in the audit log");
    let older = succeeds(&cli(&url, ADMIN, &["audit-log", "--json", "--limit", "2"], None));
    let older: serde_json::Value = serde_json::from_str(&older).expect("JSON");
    assert_eq!(older["events"].as_array().expect("events").len(), 2);
    let next = older["next"].as_i64().expect("a next page");
    let second: serde_json::Value =
        serde_json::from_str(&succeeds(&cli(&url, ADMIN, &["audit-log", "--json", "--limit", "2", "--before", &next.to_string()], None))).expect("JSON");
    assert!(second["events"][0]["id"].as_i64().expect("id") < next, "the next page is older");
}

fn write_spec(path: &Path, text: &str) -> String {
    std::fs::write(path, text).expect("write spec");
    path.to_str().expect("utf-8").to_owned()
}

#[test]
fn restricted_code_hosts_hide_their_repositories_and_only_administrators_change_specs() {
    let root = tempfile::tempdir().expect("temp dir");
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
    let _executor = start_executor(&url, EXECUTOR, "accounts-executor", &root.path().join("work"), "process");
    let open_root = root.path().join("open");
    let secret_root = root.path().join("secret");
    make_repository(&open_root, "app", &[("README.md", "# app\n")]);
    make_repository(&secret_root, "vault", &[("README.md", "# vault\n")]);
    for (name, folder) in [("open", &open_root), ("secret", &secret_root)] {
        succeeds(&cli(&url, ADMIN, &["codehost", "add", "--kind", "git", "--name", name, "--path", folder.join("repos").to_str().expect("utf-8")], None));
    }
    succeeds(&cli(&url, ADMIN, &["repos", "sync"], None));
    for user in ["alice", "bob", "carol"] {
        succeeds(&cli(&url, ADMIN, &["users", "create", user, "--password-stdin"], Some(&format!("{user}'s long password"))));
    }
    let alice = sign_in(&url, "alice", "alice's long password");
    let bob = sign_in(&url, "bob", "bob's long password");
    let carol = sign_in(&url, "carol", "carol's long password");
    succeeds(&cli(&url, &alice, &["orgs", "create", "security"], None));
    succeeds(&cli(&url, &alice, &["orgs", "add-member", "security", "carol"], None));

    fails_with(&cli(&url, &alice, &["codehost", "restrict", "secret", "--org", "security"], None), "only site admins");
    fails_with(&cli(&url, ADMIN, &["codehost", "restrict", "secret"], None), "--everyone");
    fails_with(&cli(&url, ADMIN, &["codehost", "restrict", "secret", "--org", "nosuchorg"], None), "see `flotilla orgs list`");
    succeeds(&cli(&url, ADMIN, &["codehost", "restrict", "secret", "--org", "security"], None));

    let repos = |token: &str| succeeds(&cli(&url, token, &["repos", "list", "--json"], None));
    assert!(repos(&bob).contains("open/app") && !repos(&bob).contains("secret/vault"), "bob does not see the restricted host: {}", repos(&bob));
    assert!(repos(&carol).contains("secret/vault"), "a member of the allowed org sees it");
    assert!(repos(ADMIN).contains("secret/vault"), "site admins see everything");
    assert!(!succeeds(&cli(&url, &bob, &["codehost", "list"], None)).contains("secret"));

    // Resolution with bob's permissions: the hidden repository is "not found", as if absent,
    // and a search skips it.
    let template = "steps:\n  - run: echo changed >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: batch/t\n  commit:\n    message: m\n";
    let explicit = write_spec(&root.path().join("explicit.batch.yaml"), &format!("name: explicit\non:\n  - repository: secret/vault\n{template}"));
    let (status, body) = http_request(&url, "POST", "/api/v1/batch-specs/resolve", Some(&format!("token {bob}")), Some(&serde_json::json!({"spec": std::fs::read_to_string(&explicit).expect("read")}).to_string()));
    assert_eq!(status, 400);
    let (_, absent) = http_request(
        &url,
        "POST",
        "/api/v1/batch-specs/resolve",
        Some(&format!("token {bob}")),
        Some(&serde_json::json!({"spec": std::fs::read_to_string(&explicit).expect("read").replace("secret/vault", "secret/nothing")}).to_string()),
    );
    assert_eq!(body.replace("secret/vault", "X"), absent.replace("secret/nothing", "X"), "hidden reads exactly like absent");
    let search = write_spec(&root.path().join("search.batch.yaml"), &format!("name: everything\non:\n  - repositoriesMatchingQuery: repo:.*\n{template}"));
    let listed = succeeds(&cli(&url, &bob, &["batch", "repositories", "--json", "-f", &search], None));
    assert!(listed.contains("open/app") && !listed.contains("secret/vault"), "{listed}");

    // The admin runs a spec over both; bob reads it but sees only what he may read.
    let preview = succeeds(&cli(&url, ADMIN, &["batch", "preview", "--json", "-f", &search], None));
    let batch_spec = json(&preview)["batchSpec"].as_str().expect("id").to_owned();
    assert_eq!(json(&preview)["changesetSpecs"].as_array().expect("specs").len(), 2, "{preview}");
    let get = |token: &str, path: &str| {
        let (status, body) = http_request(&url, "GET", path, Some(&format!("token {token}")), None);
        (status, body)
    };
    let (status, workspaces) = get(&bob, &format!("/api/v1/batch-specs/{batch_spec}/workspaces"));
    assert_eq!(status, 200, "any signed-in user reads any batch spec");
    let workspaces = json(&workspaces);
    let names: Vec<&str> = workspaces["workspaces"].as_array().expect("list").iter().filter_map(|workspace| workspace["repository"].as_str()).collect();
    assert_eq!(names, ["open/app"]);
    let (_, changesets) = get(&bob, &format!("/api/v1/batch-specs/{batch_spec}/changeset-specs"));
    assert!(changesets.contains("open/app") && !changesets.contains("secret/vault"), "{changesets}");
    let (_, all_workspaces) = get(ADMIN, &format!("/api/v1/batch-specs/{batch_spec}/workspaces"));
    let hidden_job = json(&all_workspaces)["workspaces"]
        .as_array()
        .expect("list")
        .iter()
        .find(|workspace| workspace["repository"] == "secret/vault")
        .and_then(|workspace| workspace["jobId"].as_i64())
        .expect("the admin sees the hidden workspace's job");
    assert_eq!(get(&bob, &format!("/api/v1/jobs/{hidden_job}/logs")).0, 404, "its logs do not exist for bob");
    assert_eq!(get(&carol, &format!("/api/v1/jobs/{hidden_job}/logs")).0, 200);

    // Bob may read but not change the admin's spec.
    let (status, body) = http_request(&url, "POST", &format!("/api/v1/batch-specs/{batch_spec}/cancel"), Some(&format!("token {bob}")), None);
    assert_eq!(status, 403);
    assert!(json(&body)["error"].as_str().expect("error").contains("only the creator"), "{body}");

    // An org's spec: members change it while the org allows it, then only admins.
    let app_only = write_spec(&root.path().join("org.batch.yaml"), &format!("name: org-change\non:\n  - repository: open/app\n{template}"));
    let created = succeeds(&cli(&url, &alice, &["batch", "remote", "--namespace", "security", "-f", &app_only], None));
    let org_spec = created.trim().rsplit('/').next().expect("the spec's URL").to_owned();
    let retry = |token: &str| http_request(&url, "POST", &format!("/api/v1/batch-specs/{org_spec}/retry"), Some(&format!("token {token}")), Some("{}"));
    assert_eq!(retry(&carol).0, 200, "members may change it by default");
    assert_eq!(retry(&bob).0, 403, "non-members may not");
    fails_with(&cli(&url, &carol, &["orgs", "set", "security", "--members-can-administer", "false"], None), "ask an admin of security");
    succeeds(&cli(&url, &alice, &["orgs", "set", "security", "--members-can-administer", "false"], None));
    let (status, body) = retry(&carol);
    assert_eq!(status, 403);
    assert!(json(&body)["error"].as_str().expect("error").contains("lets only its admins change"), "{body}");
    assert_eq!(retry(&alice).0, 200);

    // Opening the host again shows bob everything.
    succeeds(&cli(&url, ADMIN, &["codehost", "restrict", "secret", "--everyone"], None));
    assert!(repos(&bob).contains("secret/vault"));

    // Every change above is in the audit log.
    let page: serde_json::Value = serde_json::from_str(&succeeds(&cli(&url, ADMIN, &["audit-log", "--json"], None))).expect("JSON");
    let actions: Vec<String> = page["events"].as_array().expect("events").iter().map(|event| format!("{} {}", event["actor"].as_str().unwrap_or("-"), event["action"].as_str().unwrap_or("?"))).collect();
    for expected in ["admin code_host.restrict", "admin code_host.create", "admin batch_spec.create", "alice batch_spec.create", "carol batch_spec.retry", "alice batch_spec.retry", "alice org.update"] {
        assert!(actions.iter().any(|action| action == expected), "{expected:?} not in {actions:#?}");
    }
}

#[test]
fn every_accounts_command_teaches_with_an_example() {
    for command in [
        &["users"][..],
        &["users", "create"],
        &["users", "list"],
        &["users", "set-password"],
        &["orgs"],
        &["orgs", "create"],
        &["orgs", "list"],
        &["orgs", "members"],
        &["orgs", "add-member"],
        &["orgs", "remove-member"],
        &["orgs", "set"],
        &["codehost", "restrict"],
        &["codehost", "credential"],
        &["codehost", "credential", "set"],
        &["codehost", "credential", "delete"],
        &["audit-log"],
    ] {
        let output = flotilla().args(command).arg("--help").output().expect("run flotilla");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success() && help.contains("Example") && help.contains("flotilla "), "{command:?} --help shows no example:\n{help}");
    }
}
