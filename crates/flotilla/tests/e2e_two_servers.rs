//! Two `flotilla server` processes on one PostgreSQL database (issue 9: the way to run the
//! server highly available). They share one data folder (the supported deployment: same
//! machine or a shared volume), executors are given both URLs (`--url A,B`, in different
//! orders so the work is split), and the user's CLI talks to either (code host added through
//! A, synced through B, spec started through A, applied through B). One server is SIGKILLed
//! while the executors run jobs, the other while the reconciler opens pull requests on the
//! GitHub emulator; the test then checks that every workspace completed exactly once with its
//! log, that every repository got exactly one pull request, and that the executors of the
//! killed server carried on through the other one; and that a job's live log, reported to one
//! server, streams to a viewer of the other. RELIABILITY.md records its runs.
//!
//! Also here: a second server on one SQLite database is refused at start, with advice.

mod support;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use flotilla_codehost_emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig, Fault, NewRepository};
use support::batch::{
    assert_every_workspace_completed_once, batch_spec_status, fresh_postgres_database, run_client_as, sigkill, start_spec_as,
};
use support::{Running, flotilla, http_get, wait_for_line, wait_until};

const ADMIN: &str = "flt_u_two_servers_e2e_admin_token_000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_two_servers_e2e_executor_token_0000000000000000000000000000";
/// A job, resolution or changeset silent for 8 s is taken back by the other server's janitor.
const HEARTBEAT_TIMEOUT: &str = "8";
const REPOSITORIES: usize = 20;

/// `flotilla server` named `name` on `port`, with the shared data folder and database; its log
/// goes to `<name>-<n>.log` in `logs`.
fn start_server(name: &str, port: u16, data: &Path, database_url: &str, logs: &Path, extra: &[&str]) -> Running {
    let mut server = spawn_server(name, port, data, database_url, logs, extra);
    wait_for_line(&mut server.0, "Flotilla server listening on ");
    server
}

/// The same without waiting for it to listen, so two can start at the same moment.
fn spawn_server(name: &str, port: u16, data: &Path, database_url: &str, logs: &Path, extra: &[&str]) -> Running {
    static STARTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let start = STARTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let log = std::fs::File::create(logs.join(format!("{name}-{start}.log"))).expect("create server log");
    let child = flotilla()
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--admin-token", ADMIN, "--executor-token", EXECUTOR])
        .args(["--heartbeat-timeout", HEARTBEAT_TIMEOUT, "--changeset-sync-interval", "3600", "--database-url", database_url])
        .args(extra)
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start flotilla server");
    Running(child)
}

/// `flotilla executor` taking jobs from `urls` (a comma-separated failover list), its log in
/// `logs/<name>.log`.
fn start_executor(urls: &str, name: &str, root: &Path, logs: &Path) -> Running {
    let log = std::fs::File::create(logs.join(format!("{name}.log"))).expect("create executor log");
    let child = flotilla()
        .args(["executor", "--url", urls, "--token", EXECUTOR, "--runtime", "process", "--name", name])
        .arg("--work-dir")
        .arg(root.join(name))
        .env("FLOTILLA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start flotilla executor");
    Running(child)
}

/// Lines containing `text` in the logs whose file names start with `prefix`.
fn log_lines(logs: &Path, prefix: &str, text: &str) -> usize {
    std::fs::read_dir(logs)
        .expect("read the log folder")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.file_name().is_some_and(|name| name.to_string_lossy().starts_with(prefix)))
        .map(|path| std::fs::read_to_string(&path).unwrap_or_default().lines().filter(|line| line.contains(text)).count())
        .sum()
}

fn completed_and_processing(url: &str, id: &str) -> (i64, i64) {
    let status = batch_spec_status(url, ADMIN, id);
    (status["jobs"]["completed"].as_i64().unwrap_or(0), status["jobs"]["processing"].as_i64().unwrap_or(0))
}

#[test]
fn two_servers_on_one_postgres_database_lose_nothing_when_either_is_killed() {
    let Some(database_url) = fresh_postgres_database("two_servers") else { return };
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
    let names: Vec<String> = (0..REPOSITORIES).map(|index| format!("app-{index:02}")).collect();
    for name in &names {
        runtime.block_on(emulator.create_repository(NewRepository::new("acme", name.as_str()))).expect("repository");
    }
    let root = tempfile::tempdir().expect("temp dir");
    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log folder");
    let data = root.path().join("shared-data");
    let (port_a, port_b) = (support::free_port(), support::free_port());
    let (url_a, url_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    // Both start at the same moment on the new database and data folder: schema, first
    // administrator, tokens and secret key are created once, whoever wins.
    let mut server_a = Some(spawn_server("server-a", port_a, &data, &database_url, &logs, &[]));
    let mut server_b = Some(spawn_server("server-b", port_b, &data, &database_url, &logs, &[]));
    for server in [&mut server_a, &mut server_b] {
        wait_for_line(&mut server.as_mut().expect("started").0, "Flotilla server listening on ");
    }

    // The user talks to either server: the code host is added through one, synced through the
    // other.
    let added = run_client_as(
        &url_a,
        ADMIN,
        &["codehost", "add", "--kind", "github", "--name", "github.com", "--api-url", emulator.url(), "--org", "acme", "--token-stdin"],
        Some(DEFAULT_TOKEN),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let synced = run_client_as(&url_b, ADMIN, &["repos", "sync"], None);
    assert!(synced.status.success(), "{}", String::from_utf8_lossy(&synced.stderr));

    // Two executors prefer A, one prefers B; each falls back on the other.
    let list_a = format!("{url_a},{url_b}");
    let list_b = format!("{url_b},{url_a}");
    let mut executors = vec![
        start_executor(&list_a, "prefers-a-1", root.path(), &logs),
        start_executor(&list_a, "prefers-a-2", root.path(), &logs),
        start_executor(&list_b, "prefers-b", root.path(), &logs),
    ];
    let id = start_spec_as(
        &url_a,
        ADMIN,
        root.path(),
        "name: two-servers\non:\n  - repositoriesMatchingQuery: repo:^github\\.com/acme/\nsteps:\n  - run: sleep 1 && echo step-finished-here && echo touched >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Touch the README\n  body: Touches it\n  branch: batch/two-servers\n  commit:\n    message: touch\n  published: true\n",
    );

    // Live logs cross servers: a job run by the executor that reports to B, watched as
    // server-sent events through A (the stream ends when the job does).
    let mut watched = None;
    wait_until(Duration::from_secs(60), "a job running on the executor that prefers B", || {
        let listed = http_get(&url_b, ADMIN, &format!("/api/v1/batch-specs/{id}/workspaces?state=processing"));
        watched = listed["workspaces"]
            .as_array()
            .and_then(|workspaces| workspaces.iter().find(|workspace| workspace["executor"] == "prefers-b"))
            .and_then(|workspace| workspace["jobId"].as_i64());
        watched.is_some()
    });
    let job = watched.expect("a job");
    let (status, stream) =
        support::http_request(&url_a, "GET", &format!("/api/v1/jobs/{job}/logs/stream"), Some(&format!("token {ADMIN}")), None);
    assert_eq!(status, 200, "{stream}");
    assert!(stream.contains("step-finished-here"), "the step's output, reported to B, reached a viewer of A: {stream}");

    // Mid-execution: A dies. Its executors must carry on through B while A is down.
    wait_until(Duration::from_secs(60), "some completed workspaces and running ones", || {
        let (completed, processing) = completed_and_processing(&url_b, &id);
        completed >= 4 && processing > 0
    });
    let (completed_at_kill, _) = completed_and_processing(&url_b, &id);
    sigkill(server_a.take().expect("A runs"));
    eprintln!("server A killed mid-execution after {:.1} s, {completed_at_kill} of {REPOSITORIES} workspaces completed", started.elapsed().as_secs_f64());
    wait_until(Duration::from_secs(60), "workspaces to complete through B alone", || {
        completed_and_processing(&url_b, &id).0 >= completed_at_kill + 6
    });
    server_a = Some(start_server("server-a", port_a, &data, &database_url, &logs, &[]));
    eprintln!("server A restarted after {:.1} s", started.elapsed().as_secs_f64());
    wait_until(Duration::from_secs(90), "the batch spec to finish", || {
        matches!(batch_spec_status(&url_a, ADMIN, &id)["state"].as_str(), Some("completed" | "failed" | "canceled"))
    });
    for executor in &mut executors {
        assert!(executor.0.try_wait().expect("executor state").is_none(), "every executor outlived the killed server");
    }
    for name in ["prefers-a-1", "prefers-a-2"] {
        assert!(log_lines(&logs, name, "using the next one") >= 1, "{name} moved to B when A died");
    }
    assert_every_workspace_completed_once(&url_a, ADMIN, &id, REPOSITORIES, "step-finished-here");
    assert_every_workspace_completed_once(&url_b, ADMIN, &id, REPOSITORIES, "step-finished-here");
    eprintln!("execution done after {:.1} s: {REPOSITORIES} workspaces, each once", started.elapsed().as_secs_f64());

    // Mid-publishing: B dies while both servers' reconcilers open pull requests; A takes over
    // the changesets B was working on. The apply goes through B, whose reconciler starts at
    // once (A's finds the rest within 2 s), and every forge request answers slowly, so that B
    // is in the middle of some when it dies.
    emulator.inject_faults(Fault::Slow { millis: 150 }, 100_000);
    let applied = run_client_as(&url_b, ADMIN, &["batch", "apply", "--preview", &id, "--json"], None);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let opened = || names.iter().map(|name| emulator.pull_request_count("acme", name)).sum::<usize>();
    wait_until(Duration::from_secs(60), "some pull requests to be opened", || opened() >= 5);
    let opened_at_kill = opened();
    sigkill(server_b.take().expect("B runs"));
    eprintln!("server B killed mid-publishing after {:.1} s: {opened_at_kill} of {REPOSITORIES} pull requests open", started.elapsed().as_secs_f64());

    let mut listed: Vec<serde_json::Value> = Vec::new();
    wait_until(Duration::from_secs(60), "the reconciler to finish every changeset", || {
        let output = run_client_as(&url_a, ADMIN, &["changesets", "list", "--batch-change", "two-servers", "--json"], None);
        listed = serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default();
        listed.len() == REPOSITORIES && listed.iter().all(|changeset| matches!(changeset["reconcilerState"].as_str(), Some("completed" | "failed")))
    });
    for changeset in &listed {
        assert_eq!((changeset["reconcilerState"].as_str(), changeset["externalState"].as_str()), (Some("completed"), Some("OPEN")), "{changeset}");
    }
    for name in &names {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "exactly one pull request in {name}");
    }
    assert!(
        log_lines(&logs, "server-a", "changesets a stopped server process was reconciling were queued again") >= 1,
        "B died holding changesets, and A took them back"
    );
    drop(server_a);
    eprintln!(
        "two servers: A killed mid-execution, B mid-publishing; {REPOSITORIES} workspaces once, {REPOSITORIES} pull requests once, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A rollout window paces publishing for the database, not per server: with two servers
/// (each running the scheduler loop) eight changesets at 1/second still take about seven
/// seconds from the first pull request to the last, because one server leads the schedule.
#[test]
fn two_servers_release_a_rollout_window_at_its_rate_not_twice_it() {
    let Some(database_url) = fresh_postgres_database("two_servers_rollout") else { return };
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
    let names: Vec<String> = (0..8).map(|index| format!("paced-{index}")).collect();
    for name in &names {
        runtime.block_on(emulator.create_repository(NewRepository::new("acme", name.as_str()))).expect("repository");
    }
    let root = tempfile::tempdir().expect("temp dir");
    let logs = root.path().join("logs");
    std::fs::create_dir_all(&logs).expect("log folder");
    let data = root.path().join("shared-data");
    let windows = root.path().join("windows.yaml");
    std::fs::write(&windows, "- rate: 1/second\n").expect("write windows");
    let windows_argument = ["--rollout-windows", windows.to_str().expect("utf-8")];
    let (port_a, port_b) = (support::free_port(), support::free_port());
    let (url_a, url_b) = (format!("http://127.0.0.1:{port_a}"), format!("http://127.0.0.1:{port_b}"));
    let _server_a = start_server("server-a", port_a, &data, &database_url, &logs, &windows_argument);
    let _server_b = start_server("server-b", port_b, &data, &database_url, &logs, &windows_argument);
    let added = run_client_as(
        &url_b,
        ADMIN,
        &["codehost", "add", "--kind", "github", "--name", "github.com", "--api-url", emulator.url(), "--org", "acme", "--token-stdin"],
        Some(DEFAULT_TOKEN),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(run_client_as(&url_a, ADMIN, &["repos", "sync"], None).status.success());
    let _executor = start_executor(&format!("{url_a},{url_b}"), "pacer", root.path(), &logs);
    let file = root.path().join("paced.batch.yaml");
    std::fs::write(
        &file,
        "name: paced\non:\n  - repositoriesMatchingQuery: repo:^github\\.com/acme/\nsteps:\n  - run: echo paced >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Paced\n  body: Paced\n  branch: batch/paced\n  commit:\n    message: paced\n  published: true\n",
    )
    .expect("write spec");
    let applied = run_client_as(&url_a, ADMIN, &["batch", "apply", "--json", "-f", file.to_str().expect("utf-8")], None);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));

    let opened = || names.iter().map(|name| emulator.pull_request_count("acme", name)).sum::<usize>();
    wait_until(Duration::from_secs(60), "the first pull request", || opened() >= 1);
    let first = Instant::now();
    wait_until(Duration::from_secs(60), "every pull request", || opened() == names.len());
    let spread = first.elapsed();
    eprintln!("8 changesets at 1/second through two servers: {:.1} s from the first pull request to the last", spread.as_secs_f64());
    assert!(spread >= Duration::from_millis(5_500), "released faster than 1/second (two schedulers?): {spread:?}");
    for name in &names {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "exactly one pull request in {name}");
    }
}

#[test]
fn a_second_server_on_one_sqlite_database_is_refused() {
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let (_first, _url) = support::start_server(&data, ADMIN, EXECUTOR, &[]);
    let second = flotilla()
        .args(["server", "--listen", &format!("127.0.0.1:{}", support::free_port()), "--admin-token", ADMIN, "--executor-token", EXECUTOR])
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run a second server");
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "the second server stops at once: {stderr}");
    assert!(stderr.contains("another Flotilla server"), "{stderr}");
    assert!(stderr.contains("PostgreSQL"), "it says how to run two servers: {stderr}");
}
