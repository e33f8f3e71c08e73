//! Hostile specs and payloads against the real binary (issue 9, "Security"): one test per
//! attack, each asserting (a) a clear error naming the problem, or a safe outcome, (b) that the
//! server still answers afterwards, and (c) that nothing escaped: a sentinel file outside every
//! workspace keeps its content and never shows up in a diff or a log.
//!
//! What the library crates already prove beside their code is referenced, not repeated:
//! YAML bombs and nesting (`flotilla-yaml` `load::tests`), template loops and allocations
//! (`flotilla-template` `exec::hostile_template_tests`), hostile diffs committed by the server
//! (`flotilla-git` `hostile_diffs_never_write_outside_the_repository`), a poisoned cached diff
//! (`flotilla-executor` `job::hostile_diff_tests`), branch names (`flotilla-server`
//! `changeset_specs` tests), files targets and mountpoints (`flotilla-spec` `validate_cases`). Malformed specs and wrong tokens are in
//! `e2e_bad_input.rs`. The attack → defence → test table is in RELIABILITY.md.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use support::{flotilla, git, http_request, make_repository, start_executor, start_server, Running};

const ADMIN: &str = "flt_u_hostile_input_admin_token_00000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_hostile_input_executor_token_000000000000000000000000000";
const SENTINEL_TEXT: &str = "sentinel: must never be read, written or leaked\n";

/// A server with a `local` code host over `<root>/repos`, a sentinel file outside it, and
/// (when asked) one executor.
struct World {
    root: tempfile::TempDir,
    url: String,
    _server: Running,
    _executor: Option<Running>,
}

impl World {
    fn start(repositories: &[(&str, &[(&str, &str)])], runtime: Option<&str>) -> World {
        // No `.` at the start of any path component (unlike tempdir()'s `/tmp/.tmpXXXX`), so
        // paths written into branch names are valid git ref text.
        let root = tempfile::Builder::new().prefix("flotilla-hostile-").tempdir().expect("temp dir");
        for (name, files) in repositories {
            make_repository(root.path(), name, files);
        }
        std::fs::create_dir_all(root.path().join("repos")).expect("repos folder");
        std::fs::create_dir_all(root.path().join("outside")).expect("outside folder");
        std::fs::write(root.path().join("outside/sentinel"), SENTINEL_TEXT).expect("sentinel");
        let (server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &[]);
        let world = World { root, url, _server: server, _executor: None };
        world.sync();
        let executor = runtime.map(|runtime| start_executor(&world.url, EXECUTOR, "hostile", &world.root.path().join("executor"), runtime));
        World { _executor: executor, ..world }
    }

    fn path(&self) -> &Path {
        self.root.path()
    }

    fn client(&self, arguments: &[&str]) -> std::process::Output {
        flotilla().args(arguments).env("FLOTILLA_URL", &self.url).env("FLOTILLA_TOKEN", ADMIN).stdin(Stdio::null()).output().expect("run flotilla")
    }

    fn sync(&self) {
        let (status, body) = http_request(&self.url, "POST", "/api/v1/code-hosts", Some(&admin()), Some(&serde_json::json!({"kind": "git", "name": "local", "path": self.path().join("repos")}).to_string()));
        assert!(status == 201 || status == 409, "{status} {body}");
        let (status, body) = http_request(&self.url, "POST", "/api/v1/repositories/sync", Some(&admin()), Some(r#"{"wait": true}"#));
        assert_eq!(status, 204, "{body}");
    }

    /// `flotilla batch preview --json` of `spec`: (exit success, the JSON document or null, stderr).
    fn preview(&self, spec: &str) -> (bool, serde_json::Value, String) {
        let file = self.path().join(format!("spec-{}.batch.yaml", unique()));
        std::fs::write(&file, spec).expect("write spec");
        let output = self.client(&["batch", "preview", "--json", "-f", file.to_str().expect("utf-8")]);
        let document = serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null);
        (output.status.success(), document, String::from_utf8_lossy(&output.stderr).into_owned())
    }

    /// (b) and (c): the server answers, and the sentinel is untouched.
    fn assert_unharmed(&self) {
        let (status, body) = http_request(&self.url, "GET", "/healthz", None, None);
        assert_eq!((status, body.as_str()), (200, "ok"), "the server must still answer");
        let (status, _) = http_request(&self.url, "GET", "/api/v1/repositories", Some(&admin()), None);
        assert_eq!(status, 200, "the API must still answer");
        let sentinel = std::fs::read_to_string(self.path().join("outside/sentinel")).expect("the sentinel still exists");
        assert_eq!(sentinel, SENTINEL_TEXT, "the sentinel was changed");
    }
}

fn admin() -> String {
    format!("token {ADMIN}")
}

fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", &body[..body.len().min(300)]))
}

/// A spec for `repository` with `steps` (YAML list items, indented by two) and `branch`.
fn spec(repository: &str, steps: &str, branch: &str) -> String {
    format!("name: hostile\non:\n  - repository: {repository}\nsteps:\n{steps}changesetTemplate:\n  title: t\n  branch: {branch}\n  commit:\n    message: m\n")
}

/// Every text a workspace left behind: its diff, failure message and log.
fn everything_said(world: &World, document: &serde_json::Value) -> String {
    let mut text = document.to_string();
    if let Some(batch_spec) = document["batchSpec"].as_str() {
        let (_, body) = http_request(&world.url, "GET", &format!("/api/v1/batch-specs/{batch_spec}/workspaces"), Some(&admin()), None);
        for workspace in json(&body)["workspaces"].as_array().cloned().unwrap_or_default() {
            if let Some(job) = workspace["jobId"].as_i64() {
                let (_, log) = http_request(&world.url, "GET", &format!("/api/v1/jobs/{job}/logs"), Some(&admin()), None);
                text.push_str(&log);
            }
        }
        text.push_str(&body);
    }
    text
}

/// A POST that keeps going when the server stops reading a body it refused; returns the status
/// (0 when the server closed the connection before answering) and the body.
fn post_huge(url: &str, path: &str, authorization: &str, body: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).expect("connect to the server");
    let head = format!("POST {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAuthorization: {authorization}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).expect("send head");
    let _ = stream.write_all(body);
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let response = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (head.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0), body.to_owned())
}

fn post_spec(world: &World, spec_text: &str) -> (u16, String) {
    http_request(&world.url, "POST", "/api/v1/batch-specs", Some(&admin()), Some(&serde_json::json!({"spec": spec_text}).to_string()))
}

// ---------------------------------------------------------------------------------------
// Specs: parser limits. The positions must name line and column.

#[test]
fn billion_laughs_alias_bomb_is_refused_with_its_position() {
    let world = World::start(&[], None);
    let mut bomb = String::from("name: bomb\ndescription: x\nx0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
    for level in 1..12 {
        let previous = level - 1;
        bomb.push_str(&format!("x{level}: &a{level} [{}]\n", vec![format!("*a{previous}"); 10].join(", ")));
    }
    let started = std::time::Instant::now();
    let (status, body) = post_spec(&world, &bomb);
    assert_eq!(status, 400, "{body}");
    let answer = json(&body);
    let diagnostic = &answer["diagnostics"][0];
    assert!(diagnostic["message"].as_str().unwrap_or_default().contains("expands to more than 1000000 nodes"), "{body}");
    assert!(diagnostic["line"].as_u64().is_some_and(|line| line >= 4) && diagnostic["column"].as_u64().is_some(), "{body}");
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());

    // The same bomb of long strings: few nodes, gigabytes of text.
    let mut strings = format!("name: bomb\ndescription: &s \"{}\"\nx: [", "w".repeat(1 << 20));
    strings.push_str(&"*s, ".repeat(1000));
    strings.push_str("]\n");
    let (status, body) = post_spec(&world, &strings);
    assert_eq!(status, 400, "{}", &body[..body.len().min(400)]);
    assert!(body.contains("bytes of text (through aliases of long values)"), "{}", &body[..body.len().min(400)]);
    assert_eq!(json(&body)["diagnostics"][0]["line"], 3, "the alias that went over is on line 3");

    // And the command line names file:line:column for the same spec.
    let file = world.path().join("bomb.batch.yaml");
    std::fs::write(&file, &bomb).expect("write");
    let output = world.client(&["batch", "validate", "-f", file.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("bomb.batch.yaml:") && stderr.contains("expands to more than"), "{stderr}");
    world.assert_unharmed();
}

#[test]
fn deeply_nested_yaml_is_refused_with_its_position() {
    let world = World::start(&[], None);
    let nested = format!("name: deep\ndescription: {}x{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = post_spec(&world, &nested);
    assert_eq!(status, 400, "{}", &body[..body.len().min(400)]);
    let answer = json(&body);
    let message = answer["diagnostics"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nesting deeper than") || message.contains("recursion limit"), "{message}");
    assert_eq!(answer["diagnostics"][0]["line"], 2, "{message}");
    // Merge keys over a big mapping, many times: linear, not minutes.
    let mut merges = String::from("name: merges\nbase: &b {");
    for index in 0..40_000 {
        merges.push_str(&format!("k{index}: 1, "));
    }
    merges.push_str("}\nx:\n  <<: [*b, *b, *b, *b, *b, *b]\n");
    let started = std::time::Instant::now();
    let (status, body) = post_spec(&world, &merges);
    assert_eq!(status, 400, "unknown fields are reported: {}", &body[..body.len().min(200)]);
    assert!(started.elapsed() < Duration::from_secs(30), "merging took {:?}", started.elapsed());
    world.assert_unharmed();
}

// ---------------------------------------------------------------------------------------
// Bodies and fields: limits with the limit named.

#[test]
fn a_100_megabyte_body_and_a_huge_single_field_are_refused_with_413() {
    let world = World::start(&[], None);
    // 100 MB, streamed: the server stops reading at its limit.
    let hundred_megabytes = format!("{{\"spec\": \"{}\"}}", "a".repeat(100 * 1024 * 1024));
    let (status, body) = post_huge(&world.url, "/api/v1/batch-specs", &admin(), hundred_megabytes.as_bytes());
    assert_eq!(status, 413, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("error"), "a JSON error body: {body}");
    // A single 5 MB field inside an otherwise small spec: the spec limit, named.
    let field = format!("name: x\ndescription: \"{}\"\n", "b".repeat(5 * 1024 * 1024));
    let (status, body) = post_spec(&world, &field);
    assert_eq!(status, 413, "{}", &body[..body.len().min(300)]);
    assert!(body.contains("this server accepts at most"), "{body}");
    // The executor routes have their own limit, before any token is looked at.
    let (status, body) = post_huge(&world.url, "/.executors/jobs/1/complete", "Bearer flt_j_nothing", hundred_megabytes.as_bytes());
    assert!(status == 413 || status == 401 || status == 403, "{status} {body}");
    world.assert_unharmed();
}

// ---------------------------------------------------------------------------------------
// Templates that loop or allocate without bound: on the executor (step fields) and on the
// server (changesetTemplate, rendered when a result arrives).

#[test]
fn templates_that_loop_or_allocate_without_bound_fail_with_the_limit_named() {
    let world = World::start(&[("loops", &[("README.md", "# loops\n")])], Some("process"));
    let nested_loops = "${{ $s := split (printf \"%3000s\" \"\") \"\" }}${{ range $s }}${{ range $s }}${{ range $s }}${{ end }}${{ end }}${{ end }}";
    let squaring = "${{ $a := replace \"xxxxxxxxxx\" \"\" \"xxxxxxxxxx\" }}${{ $b := replace $a \"\" $a }}${{ $c := replace $b \"\" $b }}${{ $d := replace $c \"\" $c }}";
    let started = std::time::Instant::now();
    // In a step's `run`: validation runs every template once against sample data, under the
    // same limits, so the spec is refused at upload with the template's position.
    let (success, _, stderr) = world.preview(&spec("local/loops", &format!("  - run: echo '{nested_loops}' >> README.md\n    container: alpine:3\n"), "batch/loops"));
    assert!(!success, "{stderr}");
    assert!(stderr.contains(".batch.yaml:5:") && stderr.contains("error: steps[0].run: template error") && stderr.contains("more than 5000000 evaluation steps"), "{stderr}");
    // In the changeset title, where the server renders it.
    let text = spec("local/loops", "  - run: echo changed >> README.md\n    container: alpine:3\n", "batch/squares").replace("title: t", &format!("title: '{squaring}'"));
    let (success, _, stderr) = world.preview(&text);
    assert!(!success, "{stderr}");
    assert!(stderr.contains(".batch.yaml:8:") && stderr.contains("changesetTemplate.title") && stderr.contains("bytes for a value computed in a template"), "{stderr}");
    // Written so that only real data triggers it (validation's sample outputs are empty), the
    // workspace fails on the executor with the limit named.
    let data_driven = "${{ range $x := split outputs.text \"\" }}${{ range $y := split outputs.text \"\" }}${{ range $z := split outputs.text \"\" }}${{ end }}${{ end }}${{ end }}";
    let steps = format!("  - run: printf '%3000s' x\n    container: alpine:3\n    outputs:\n      text:\n        value: \"${{{{ step.stdout }}}}\"\n  - run: echo '{data_driven}'\n    container: alpine:3\n");
    let (_, document, stderr) = world.preview(&spec("local/loops", &steps, "batch/data"));
    let workspace = &document["workspaces"][0];
    assert_eq!(workspace["state"], "failed", "{document} {stderr}");
    let message = workspace["failureMessage"].as_str().unwrap_or_default();
    assert!(message.contains("step 2: rendering `run` failed") && message.contains("more than 5000000 evaluation steps"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(60), "{:?}", started.elapsed());
    world.assert_unharmed();
}

// ---------------------------------------------------------------------------------------
// Path traversal: mount sources, files targets and mountpoints, uploads.

#[test]
fn path_traversal_in_mounts_and_files_is_refused_with_file_line_and_column() {
    let world = World::start(&[("paths", &[("README.md", "# paths\n")])], None);
    let specs = world.path().join("specs");
    std::fs::create_dir_all(specs.join("folder")).expect("specs");
    let validate = |name: &str, steps: &str| {
        let file = specs.join(name);
        std::fs::write(&file, spec("local/paths", steps, "batch/paths")).expect("write");
        let output = world.client(&["batch", "validate", "-f", file.to_str().expect("utf-8")]);
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    for (name, steps, wanted) in [
        ("dotdot.batch.yaml", "  - run: cat /m\n    container: alpine:3\n    mount:\n      - path: ../outside/sentinel\n        mountpoint: /m\n", "dotdot.batch.yaml:8:15: error: steps[0].mount[0].path: the mount path must be inside the batch spec's directory"),
        ("absolute.batch.yaml", "  - run: cat /m\n    container: alpine:3\n    mount:\n      - path: /etc/passwd\n        mountpoint: /m\n", "absolute.batch.yaml:8:15: error: steps[0].mount[0].path: the mount path must be inside"),
        ("colon.batch.yaml", "  - run: cat /m\n    container: alpine:3\n    files:\n      /m:/etc/shadow: x\n", "colon.batch.yaml:8:7: error: steps[0].files: step 1 files target `/m:/etc/shadow` must be an absolute path in the container, without `:`"),
        ("mountpoint.batch.yaml", "  - run: cat /m\n    container: alpine:3\n    mount:\n      - path: folder\n        mountpoint: /m:rw\n", "mountpoint.batch.yaml:9:21: error: steps[0].mount[0].mountpoint: step 1 mount mountpoint `/m:rw` must be an absolute path"),
    ] {
        let (code, stderr) = validate(name, steps);
        assert_eq!(code, Some(1), "{name}: {stderr}");
        assert!(stderr.contains(wanted), "{name}: {stderr}");
    }

    // A symbolic link next to the spec that leads outside its folder: the CLI refuses to
    // upload what it points at, and says which link.
    std::os::unix::fs::symlink(world.path().join("outside/sentinel"), specs.join("folder/innocent.txt")).expect("symlink");
    let file = specs.join("symlink.batch.yaml");
    std::fs::write(&file, spec("local/paths", "  - run: cat /m/innocent.txt\n    container: alpine:3\n    mount:\n      - path: folder\n        mountpoint: /m\n", "batch/paths")).expect("write");
    let output = world.client(&["batch", "preview", "--json", "-f", file.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("step 1 mounts `folder`") && stderr.contains("is a symbolic link to") && stderr.contains("outside the batch spec's folder"), "{stderr}");
    // A link cycle inside the folder is read once, not forever.
    std::fs::remove_file(specs.join("folder/innocent.txt")).expect("remove");
    std::fs::write(specs.join("folder/real.txt"), "fine\n").expect("write");
    std::os::unix::fs::symlink("..", specs.join("folder/loop")).expect("symlink");
    let output = world.client(&["batch", "validate", "-f", file.to_str().expect("utf-8")]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    // An upload whose path leaves the spec's folder, sent straight to the API.
    let body = serde_json::json!({
        "spec": spec("local/paths", "  - run: cat /m\n    container: alpine:3\n    mount:\n      - path: folder\n        mountpoint: /m\n", "batch/paths"),
        "mountFiles": [{"path": "../../outside/sentinel", "contentBase64": "eA==", "modifiedAt": 0}],
    });
    let (status, body) = http_request(&world.url, "POST", "/api/v1/batch-specs", Some(&admin()), Some(&body.to_string()));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("the uploaded mount file `../../outside/sentinel` must be a path relative to the spec's folder"), "{body}");
    world.assert_unharmed();
}

// ---------------------------------------------------------------------------------------
// Repositories with symbolic links that point outside: resolution, search and the diff.

/// A repository whose tree holds `leak` → the sentinel (absolute), `up` → `../../../outside`
/// (from an executor workspace, the sentinel's folder) and `go.mod` → the sentinel.
fn repository_with_outward_symlinks(world_root: &Path) {
    let work = world_root.join("links-work");
    std::fs::create_dir_all(work.join("sub")).expect("work");
    git(&work, &["init", "-q", "-b", "main"]);
    std::fs::write(work.join("README.md"), "# links\n").expect("readme");
    std::fs::write(work.join("sub/go.mod"), "module sub\n").expect("go.mod");
    std::os::unix::fs::symlink(world_root.join("outside/sentinel"), work.join("leak")).expect("leak");
    std::os::unix::fs::symlink("../../../outside", work.join("up")).expect("up");
    std::os::unix::fs::symlink(world_root.join("outside/sentinel"), work.join("go.mod")).expect("go.mod");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "links"]);
    let bare = world_root.join("repos/links.git");
    git(world_root, &["clone", "-q", "--bare", work.to_str().expect("utf-8"), bare.to_str().expect("utf-8")]);
    std::fs::remove_dir_all(&work).expect("remove work");
}

#[test]
fn symlinks_in_a_repository_are_never_followed_by_resolution_search_or_workspaces() {
    let world = World::start(&[], Some("process"));
    repository_with_outward_symlinks(world.path());
    world.sync();
    // Content search for the sentinel's text: the server reads blobs (a link's blob is its
    // target path), never the files links point at.
    let resolve = |text: &str| {
        let (status, body) = http_request(&world.url, "POST", "/api/v1/batch-specs/resolve", Some(&admin()), Some(&serde_json::json!({"spec": text}).to_string()));
        (status, body)
    };
    let (status, body) = resolve(&spec("local/links", "  - run: echo\n    container: alpine:3\n", "b").replace("  - repository: local/links", "  - repositoriesMatchingQuery: \"must never be read\""));
    assert!(status == 200 || status == 400, "{status} {body}");
    assert!(!body.contains("local/links"), "content search matched through a link: {body}");
    eprintln!("content search for the sentinel's text: {status} {}", &body[..body.len().min(300)]);
    // `in:` patterns that try to climb out, and `rootAtLocationOf` on a name whose root entry
    // is a link: only real paths inside the tree become workspaces.
    let workspaces = "workspaces:\n  - rootAtLocationOf: go.mod\n    in: \"../*\"\n  - rootAtLocationOf: go.mod\n    in: \"/*\"\n";
    let text = spec("local/links", "  - run: echo\n    container: alpine:3\n", "b").replace("steps:\n", &format!("{workspaces}steps:\n"));
    let (status, body) = resolve(&text);
    assert!(status == 200 || status == 400, "{status} {body}");
    assert!(!body.contains("\"..") && !body.contains("\"/"), "a workspace path left the repository: {body}");
    eprintln!("`in:` patterns climbing out: {status} {}", &body[..body.len().min(300)]);
    let text = spec("local/links", "  - run: echo\n    container: alpine:3\n", "b").replace("steps:\n", "workspaces:\n  - rootAtLocationOf: go.mod\n    in: \"**\"\nsteps:\n");
    let (status, body) = resolve(&text);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(SENTINEL_TEXT.trim()), "{body}");

    // The executor's own diff of a step that touches the links records links, never what they
    // point at (git does not follow them); the process runtime isolates nothing else, so the
    // step itself only renames and re-links.
    let steps = "  - run: ln -sf ../../../outside/sentinel again && mv leak leak-renamed && echo changed >> README.md\n    container: alpine:3\n";
    let (_, document, stderr) = world.preview(&spec("local/links", steps, "batch/links"));
    assert_eq!(document["workspaces"][0]["state"], "completed", "{document} {stderr}");
    let diff = document["changesetSpecs"][0]["diff"].as_str().unwrap_or_default();
    assert!(diff.contains("new file mode 120000") && diff.contains("+../../../outside/sentinel"), "{diff}");
    assert!(!everything_said(&world, &document).contains(SENTINEL_TEXT.trim()), "the sentinel's content leaked");
    world.assert_unharmed();
}

#[test]
fn steps_in_containers_cannot_reach_the_host_through_symlinks_files_or_the_workspace_git() {
    if !support::podman_ready("the hostile container input test") {
        return;
    }
    let world = World::start(&[], Some("podman"));
    repository_with_outward_symlinks(world.path());
    world.sync();
    let pwned = world.path().join("outside/pwned-by-filter");
    // 1. Follow the links from inside the container: they resolve in the container's own
    //    file system, so the sentinel is neither read nor written.
    // 2. `files` mounted over a link: the runtime resolves it inside the container too.
    // 3. A clean filter in the workspace's .git/config would run on the executor's host when
    //    it computes the diff (`git add`): the .git folder is read-only in the container.
    let steps = format!(
        "  - run: |\n      cat leak > copied.txt 2>&1 || true\n      cat up/sentinel >> copied.txt 2>&1 || true\n      echo pwned > up/sentinel 2>/dev/null || true\n      cat /flotilla-file >> copied.txt 2>&1 || true\n      printf '[filter \"x\"]\\n\\tclean = touch {}\\n' >> .git/config 2>>copied.txt || echo refused >> copied.txt\n      echo '* filter=x' > .gitattributes\n    container: alpine:3\n    files:\n      /flotilla-file: from the spec\n",
        pwned.display()
    );
    let (_, document, stderr) = world.preview(&spec("local/links", &steps, "batch/links"));
    let workspace = &document["workspaces"][0];
    assert_eq!(workspace["state"], "completed", "{document} {stderr}");
    let diff = document["changesetSpecs"][0]["diff"].as_str().unwrap_or_default();
    assert!(!pwned.exists(), "a filter in the workspace's .git/config ran on the executor's host");
    assert!(diff.contains("refused") && diff.contains("+from the spec"), "the step ran, and .git was read-only: {diff}");
    assert!(!everything_said(&world, &document).contains(SENTINEL_TEXT.trim()), "the sentinel's content leaked");
    world.assert_unharmed();
}

// ---------------------------------------------------------------------------------------
// Shell metacharacters in repository and branch names: nothing goes through a shell, and
// git refuses (and we refuse first) what it cannot take.

/// Waits for every changeset of batch change `name` to finish reconciling.
fn reconciled(world: &World, name: &str) -> Vec<serde_json::Value> {
    let mut changesets = Vec::new();
    support::wait_until(Duration::from_secs(60), "the reconciler to finish", || {
        let (status, body) = http_request(&world.url, "GET", &format!("/api/v1/batch-changes/{name}/changesets"), Some(&admin()), None);
        if status != 200 {
            return false;
        }
        let answer = json(&body);
        changesets = answer.as_array().cloned().or_else(|| answer["changesets"].as_array().cloned()).unwrap_or_default();
        !changesets.is_empty() && changesets.iter().all(|changeset| matches!(changeset["reconcilerState"].as_str(), Some("completed" | "failed")))
    });
    changesets
}

#[test]
fn shell_metacharacters_in_repository_and_branch_names_are_never_run() {
    let world = World::start(&[], Some("process"));
    let outside = world.path().join("outside");
    let marker = |name: &str| outside.join(name).display().to_string();
    // Repository names come from the code host (here: folder names below its path).
    let names = [
        format!("dollar$(touch${{IFS}}{})", marker("pwned-dollar")),
        format!("tick`touch${{IFS}}{}`", marker("pwned-tick")),
        format!("semi;touch${{IFS}}{}", marker("pwned-semi")),
        "-upload-pack=touch".to_owned(),
    ];
    for name in &names {
        let relative = name.replace('/', "_");
        make_repository(world.path(), &relative, &[("README.md", "# odd\n")]);
    }
    world.sync();
    let (_, body) = http_request(&world.url, "GET", "/api/v1/repositories", Some(&admin()), None);
    let on: String = names.iter().map(|name| format!("  - repository: \"local/{}\"\n", name.replace('/', "_"))).collect();
    let branch = format!("\"batch/$(touch${{IFS}}{});`touch${{IFS}}{}`\"", marker("pwned-branch"), marker("pwned-branch-tick"));
    let text = format!(
        "name: odd-names\non:\n{on}steps:\n  - run: echo changed >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: {branch}\n  commit:\n    message: m\n  published: true\n"
    );
    let (_, document, stderr) = world.preview(&text);
    let workspaces = document["workspaces"].as_array().cloned().unwrap_or_default();
    assert_eq!(workspaces.len(), names.len(), "{document} {stderr} {body}");
    for workspace in &workspaces {
        assert_eq!(workspace["state"], "completed", "{workspace}");
    }
    let batch_spec = document["batchSpec"].as_str().expect("batch spec id");
    let (status, body) = http_request(&world.url, "POST", &format!("/api/v1/batch-specs/{batch_spec}/apply"), Some(&admin()), Some(""));
    assert_eq!(status, 200, "{body}");
    let changesets = reconciled(&world, "odd-names");
    assert_eq!(changesets.len(), names.len(), "{changesets:?}");
    for changeset in &changesets {
        assert_eq!(changeset["reconcilerState"], "completed", "{changeset}");
    }
    // The branch exists with its literal name in every repository.
    for name in &names {
        let repository = world.path().join("repos").join(format!("{}.git", name.replace('/', "_")));
        let refs = std::process::Command::new("git").arg("--git-dir").arg(&repository).args(["for-each-ref", "--format=%(refname)"]).output().expect("git");
        let refs = String::from_utf8_lossy(&refs.stdout);
        assert!(refs.contains(&format!("refs/heads/batch/$(touch${{IFS}}{});`touch${{IFS}}{}`", marker("pwned-branch"), marker("pwned-branch-tick"))), "{name}: {refs}");
    }
    let touched: Vec<_> = std::fs::read_dir(&outside).expect("outside").flatten().map(|entry| entry.file_name()).filter(|name| name != "sentinel").collect();
    assert!(touched.is_empty(), "a name was run by a shell: {touched:?}");

    // Branches git cannot take fail their workspace at once, with the reason.
    for (bad, reason) in [("\"-x\"", "must not start with `-`"), ("\"batch/a\\nb\"", "control characters"), ("\"batch/a..b\"", "`..`")] {
        let text = spec(&format!("\"local/{}\"", names[0].replace('/', "_")), "  - run: echo changed >> README.md\n    container: alpine:3\n", bad);
        let (_, document, stderr) = world.preview(&text);
        let workspace = &document["workspaces"][0];
        assert_eq!(workspace["state"], "failed", "{bad}: {document} {stderr}");
        let message = workspace["failureMessage"].as_str().unwrap_or_default();
        assert!(message.contains("git cannot use as a branch name") && message.contains(reason), "{bad}: {message}");
    }
    world.assert_unharmed();
}

// ---------------------------------------------------------------------------------------
// A compromised executor: its diff tries to write outside the repository when the server
// turns it into a commit.

#[test]
fn a_compromised_executors_diff_cannot_write_outside_the_repository() {
    let world = World::start(&[("target", &[("README.md", "# target\n")])], None);
    let text = spec("local/target", "  - run: echo\n    container: alpine:3\n", "batch/evil").replace("    message: m\n", "    message: m\n  published: true\n");
    let (status, body) = post_spec(&world, &text);
    assert_eq!(status, 201, "{body}");
    let batch_spec = json(&body)["id"].as_str().expect("id").to_owned();
    let dequeue = serde_json::json!({"executor": {"name": "evil", "version": "0", "hostname": "h", "os": "linux", "architecture": "x86_64", "runtime": "process"}}).to_string();
    let mut job = serde_json::Value::Null;
    support::wait_until(Duration::from_secs(30), "the job", || {
        let (status, body) = http_request(&world.url, "POST", "/.executors/queue/dequeue", Some(&format!("token-executor {EXECUTOR}")), Some(&dequeue));
        if status == 200 {
            job = json(&body);
        }
        status == 200
    });
    let escape = world.path().join("outside/escaped.txt");
    let depth = "../".repeat(12);
    let target = format!("{depth}{}", escape.display().to_string().trim_start_matches('/'));
    let diff = format!(
        "diff --git {target} {target}\nnew file mode 100644\n--- /dev/null\n+++ {target}\n@@ -0,0 +1 @@\n+pwned\ndiff --git README.md README.md\n--- README.md\n+++ README.md\n@@ -1 +1,2 @@\n # target\n+changed\n"
    );
    let mut step = flotilla_wire::executor::StepResult::default();
    step.changed_files.modified.push("README.md".to_owned());
    step.changed_files.added.push(target.clone());
    step.set_diff(diff.as_bytes());
    let bearer = format!("Bearer {}", job["token"].as_str().expect("token"));
    let (status, body) = http_request(&world.url, "POST", &format!("/.executors/jobs/{}/complete", job["id"]), Some(&bearer), Some(&serde_json::json!({"final_result": step, "cache_entries": []}).to_string()));
    assert!(status == 204 || status == 400, "{status} {body}");
    support::wait_until(Duration::from_secs(30), "the workspace to finish", || {
        let (_, body) = http_request(&world.url, "GET", &format!("/api/v1/batch-specs/{batch_spec}"), Some(&admin()), None);
        matches!(json(&body)["state"].as_str(), Some("completed" | "failed"))
    });
    // The result is refused on arrival: the workspace fails, naming the path.
    let (_, body) = http_request(&world.url, "GET", &format!("/api/v1/batch-specs/{batch_spec}/workspaces"), Some(&admin()), None);
    let workspace = &json(&body)["workspaces"][0];
    assert_eq!(workspace["state"], "failed", "{body}");
    let message = workspace["failureMessage"].as_str().unwrap_or_default();
    assert!(message.contains("which climbs out with `..`; the result was refused"), "{message}");
    // So there is nothing to publish. (Had it been stored, `git apply --cached` refuses the
    // path when the server commits it: `flotilla-git` `hostile_diffs_never_write_outside_the_repository`.)
    let (status, body) = http_request(&world.url, "POST", &format!("/api/v1/batch-specs/{batch_spec}/apply"), Some(&admin()), Some(""));
    if status == 200 {
        let (_, listed) = http_request(&world.url, "GET", "/api/v1/batch-changes/hostile/changesets", Some(&admin()), None);
        assert!(!listed.contains("batch/evil"), "{listed}");
    } else {
        assert!((400..500).contains(&status), "{status} {body}");
    }
    assert!(!escape.exists(), "the diff wrote outside the repository");
    let branches = std::process::Command::new("git").arg("--git-dir").arg(world.path().join("repos/target.git")).args(["branch", "--list", "batch/evil"]).output().expect("git");
    assert!(String::from_utf8_lossy(&branches.stdout).trim().is_empty(), "nothing was pushed");
    world.assert_unharmed();
}

// ---------------------------------------------------------------------------------------
// Absurdly large logs and diffs: limits, with the limit named.

#[test]
fn absurd_output_and_diffs_are_stopped_with_the_limit_named() {
    let world = World::start(&[("big", &[("README.md", "# big\n")])], Some("process"));
    // Endless output: stopped at 4 MiB of standard output, the log cut at 1 MiB.
    let (_, document, stderr) = world.preview(&spec("local/big", "  - run: yes flotilla-output-line\n    container: alpine:3\n", "batch/yes"));
    let workspace = &document["workspaces"][0];
    assert_eq!(workspace["state"], "failed", "{document} {stderr}");
    let message = workspace["failureMessage"].as_str().unwrap_or_default();
    assert!(message.contains("wrote more than 4194304 bytes to its standard output and was stopped"), "{message}");
    let job = workspace["jobId"].as_i64();
    if let Some(job) = job {
        let (_, log) = http_request(&world.url, "GET", &format!("/api/v1/jobs/{job}/logs"), Some(&admin()), None);
        assert!(log.contains("the log of this step was cut here: it keeps at most 1048576 bytes"), "{}", &log[..log.len().min(300)]);
        assert!(log.len() < 4 * 1024 * 1024, "the log is {} bytes", log.len());
    }
    // One endless line without a newline: read in pieces, stopped the same way.
    let (_, document, _) = world.preview(&spec("local/big", "  - run: tr '\\0' y < /dev/zero\n    container: alpine:3\n", "batch/line"));
    let message = document["workspaces"][0]["failureMessage"].as_str().unwrap_or_default().to_owned();
    assert!(message.contains("wrote more than 4194304 bytes to its standard output"), "{message}");
    // A diff larger than a report may be: the job fails saying how large, not retried.
    let (_, document, stderr) = world.preview(&spec("local/big", "  - run: head -c 30000000 /dev/urandom | base64 > big.txt\n    container: alpine:3\n", "batch/bigdiff"));
    let workspace = &document["workspaces"][0];
    assert_eq!(workspace["state"], "failed", "{document} {stderr}");
    let message = workspace["failureMessage"].as_str().unwrap_or_default();
    assert!(message.contains("more than the 33554432 bytes a server accepts") && !message.contains("infrastructure"), "{message}");
    world.assert_unharmed();
}
