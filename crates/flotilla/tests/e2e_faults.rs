//! The fault suite (issue 9), at a size CI runs: real `flotilla server` and `flotilla executor`
//! processes are killed with SIGKILL at random points and restarted, and each test then checks
//! that nothing was lost and nothing happened twice: every workspace completed (or failed)
//! exactly once, one changeset spec per workspace, logs of completed steps kept, and one pull
//! request per repository however often the server died while publishing.
//!
//! Randomness comes from one seed printed by each test (`FLOTILLA_FAULT_SEED=<seed>` replays
//! it). RELIABILITY.md states the guarantees these tests prove and the figures they measured.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_codehost_emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig, Fault, NewRepository};
use support::batch::{fresh_postgres_database, sigkill};
use support::fleet::{self, Tokens, start_server_logged};
use support::{Running, start_executor, wait_until};

const ADMIN: &str = "flt_u_faults_e2e_admin_token_00000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_faults_e2e_executor_token_000000000000000000000000000000";
/// Executors heartbeat every 5 s; a job silent for 8 s is presumed dead and requeued (the
/// janitor looks every 5 s), so a killed executor's job is running again within ~13 s.
const HEARTBEAT_TIMEOUT: &str = "8";

/// A small seeded generator (splitmix64): the seed is printed so a failing run can be replayed.
struct Random(u64);

impl Random {
    fn from_environment(test: &str) -> Random {
        let seed = std::env::var("FLOTILLA_FAULT_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|since| since.as_nanos() as u64).unwrap_or(1)
        });
        eprintln!("{test}: FLOTILLA_FAULT_SEED={seed}");
        Random(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        value ^ (value >> 31)
    }

    /// A number in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

const TOKENS: Tokens = Tokens { admin: ADMIN, executor: EXECUTOR };

/// `flotilla server` on `data` at a fixed port (so a restarted server is found at the same URL
/// by the executors that outlived it) with this suite's heartbeat timeout.
fn start_server_at(data: &Path, port: u16, extra: &[&str]) -> Running {
    start_server_logged(TOKENS, data, port, &[&["--heartbeat-timeout", HEARTBEAT_TIMEOUT], extra].concat())
}

/// How many lines of the server logs beside `data` (every start's) contain `text`.
fn server_log_lines(data: &Path, text: &str) -> usize {
    fleet::server_log_lines(data, text).len()
}

fn run_client(url: &str, arguments: &[&str], stdin: Option<&str>) -> std::process::Output {
    fleet::run_client(TOKENS, url, arguments, stdin)
}

fn setup_git_code_host(url: &str, root: &Path, count: usize) {
    fleet::setup_git_code_host(TOKENS, url, root, count);
}

fn start_spec(url: &str, root: &Path, spec: &str) -> String {
    fleet::start_spec(TOKENS, url, root, spec)
}

fn status(url: &str, id: &str) -> serde_json::Value {
    fleet::spec_status(TOKENS, url, id)
}

fn finished(url: &str, id: &str) -> bool {
    fleet::spec_finished(TOKENS, url, id)
}

fn workspaces(url: &str, id: &str) -> Vec<serde_json::Value> {
    fleet::workspaces(TOKENS, url, id)
}

fn assert_each_workspace_completed_once(url: &str, id: &str, count: usize, log_marker: &str) {
    fleet::assert_each_workspace_completed_once(TOKENS, url, id, count, log_marker);
}

#[test]
fn executors_killed_repeatedly_at_random_points_lose_nothing() {
    let mut random = Random::from_environment("executors_killed_repeatedly_at_random_points_lose_nothing");
    let started = Instant::now();
    let root = tempfile::tempdir().expect("temp dir");
    let url = format!("http://127.0.0.1:{}", support::free_port());
    let port: u16 = url.rsplit(':').next().expect("port").parse().expect("port number");
    let _server = start_server_at(&root.path().join("data"), port, &[]);
    setup_git_code_host(&url, root.path(), 30);
    let names = ["fault-a", "fault-b", "fault-c"];
    let mut executors: Vec<Option<Running>> = names.iter().map(|name| Some(start_executor(&url, EXECUTOR, name, &root.path().join(name), "process"))).collect();
    let id = start_spec(
        &url,
        root.path(),
        "name: kill-executors\non:\n  - repositoriesMatchingQuery: repo:^fleet/\nsteps:\n  - run: sleep 1 && echo step-finished-here && echo touched >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Touch ${{ repository.name }}\n  branch: batch/touch\n  commit:\n    message: touch\n",
    );

    // The killer: six times, at a random moment, SIGKILL a random executor (one running a job
    // when there is one, so kills land mid-job) and start it again after a random pause.
    let mut kills = 0;
    let mut kills_mid_job = 0;
    while kills < 6 && !finished(&url, &id) {
        std::thread::sleep(Duration::from_millis(random.between(300, 2500)));
        let busy: Vec<usize> = workspaces(&url, &id)
            .iter()
            .filter(|workspace| workspace["state"] == "processing")
            .filter_map(|workspace| names.iter().position(|name| workspace["executor"] == *name))
            .collect();
        let victim = if busy.is_empty() { random.between(0, names.len() as u64) as usize } else { busy[random.between(0, busy.len() as u64) as usize] };
        let replacement_pause = Duration::from_millis(random.between(0, 1500));
        sigkill(executors[victim].take().expect("every executor runs between kills"));
        kills += 1;
        kills_mid_job += usize::from(!busy.is_empty());
        eprintln!("kill {kills}: {} after {:.1} s ({})", names[victim], started.elapsed().as_secs_f64(), if busy.is_empty() { "idle" } else { "mid-job" });
        std::thread::sleep(replacement_pause);
        executors[victim] = Some(start_executor(&url, EXECUTOR, names[victim], &root.path().join(names[victim]), "process"));
    }
    assert!(kills_mid_job >= 3, "at least three kills landed in the middle of a job ({kills_mid_job} of {kills})");

    wait_until(Duration::from_secs(120), "the batch spec to finish", || finished(&url, &id));
    assert_each_workspace_completed_once(&url, &id, 30, "step-finished-here");
    let (_, metrics) = support::http_request(&url, "GET", "/metrics", None, None);
    assert!(metrics.lines().any(|line| line == "flotilla_jobs{state=\"completed\"} 30"), "{metrics}");
    eprintln!("{kills} executor kills ({kills_mid_job} mid-job), 30 workspaces, nothing lost, in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_server_killed_mid_execution_resumes_and_finishes() {
    server_killed_mid_execution("the_server_killed_mid_execution_resumes_and_finishes", None);
}

#[test]
fn the_server_on_postgres_killed_mid_execution_resumes_and_finishes() {
    let Some(database_url) = fresh_postgres_database("faults_execution") else { return };
    server_killed_mid_execution("the_server_on_postgres_killed_mid_execution_resumes_and_finishes", Some(&database_url));
}

/// Two SIGKILLs of the server while executors run jobs, each followed by a restart on the same
/// data (SQLite in the data folder, or `database_url`) and port.
fn server_killed_mid_execution(test: &str, database_url: Option<&str>) {
    let mut random = Random::from_environment(test);
    let started = Instant::now();
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let server_arguments: Vec<&str> = database_url.map(|database_url| vec!["--database-url", database_url]).unwrap_or_default();
    let mut server = Some(start_server_at(&data, port, &server_arguments));
    setup_git_code_host(&url, root.path(), 20);
    let mut executors: Vec<Running> =
        ["survivor-a", "survivor-b"].iter().map(|name| start_executor(&url, EXECUTOR, name, &root.path().join(name), "process")).collect();
    let id = start_spec(
        &url,
        root.path(),
        "name: kill-server\non:\n  - repositoriesMatchingQuery: repo:^fleet/\nsteps:\n  - run: sleep 1 && echo step-finished-here && echo touched >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Touch ${{ repository.name }}\n  branch: batch/touch\n  commit:\n    message: touch\n",
    );

    // Kill the server twice while jobs run, each time restarting it on the same data and port.
    for round in 1..=2 {
        let target = 4 * round;
        wait_until(Duration::from_secs(60), "some completed workspaces and a running one", || {
            let current = status(&url, &id);
            current["jobs"]["completed"].as_i64().unwrap_or(0) >= target && current["jobs"]["processing"].as_i64().unwrap_or(0) > 0
        });
        std::thread::sleep(Duration::from_millis(random.between(0, 800)));
        sigkill(server.take().expect("the server runs"));
        let down = Duration::from_millis(random.between(200, 2500));
        eprintln!("server kill {round} after {:.1} s; down for {} ms", started.elapsed().as_secs_f64(), down.as_millis());
        std::thread::sleep(down);
        server = Some(start_server_at(&data, port, &server_arguments));
    }

    wait_until(Duration::from_secs(90), "the batch spec to finish", || finished(&url, &id));
    for executor in &mut executors {
        assert!(executor.0.try_wait().expect("executor state").is_none(), "the executors outlived the server and reconnected by themselves");
    }
    assert_each_workspace_completed_once(&url, &id, 20, "step-finished-here");
    let backend = if database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    eprintln!("2 server kills mid-execution ({backend}), 20 workspaces, nothing lost, in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn the_server_killed_mid_resolution_resumes() {
    server_killed_mid_resolution("the_server_killed_mid_resolution_resumes", None);
}

#[test]
fn the_server_on_postgres_killed_mid_resolution_resumes() {
    let Some(database_url) = fresh_postgres_database("faults_resolution") else { return };
    server_killed_mid_resolution("the_server_on_postgres_killed_mid_resolution_resumes", Some(&database_url));
}

/// A SIGKILL of the server while it resolves a spec over 300 repositories of four projects each
/// (1,200 workspaces, written in chunks of 500), after the first chunk was written and queued,
/// then a restart on the same data and port.
fn server_killed_mid_resolution(test: &str, database_url: Option<&str>) {
    let mut random = Random::from_environment(test);
    let started = Instant::now();
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let (repositories, projects) = (300, 4);
    let count = repositories * projects;
    let server_arguments: Vec<&str> = database_url.map(|database_url| vec!["--database-url", database_url]).unwrap_or_default();
    let mut server = Some(start_server_at(&data, port, &server_arguments));
    let files = [("README.md", "# service\n"), ("a/go.mod", "module a\n"), ("b/go.mod", "module b\n"), ("c/go.mod", "module c\n"), ("d/go.mod", "module d\n")];
    fleet::setup_git_code_host_with(TOKENS, &url, root.path(), repositories, &files);
    eprintln!("{repositories} repositories mirrored in {:.1} s", started.elapsed().as_secs_f64());
    // `file:` and `workspaces` make resolution list every repository's tree.
    let id = start_spec(
        &url,
        root.path(),
        "name: kill-resolution\non:\n  - repositoriesMatchingQuery: repo:^fleet/ file:^README\\.md$\nworkspaces:\n  - rootAtLocationOf: go.mod\n    in: fleet/*\nsteps:\n  - run: echo touched >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: batch/touch-${{ steps.path }}\n  commit:\n    message: touch\n",
    );
    // Kill once the first chunk is queued (a random few milliseconds later), before the end.
    let deadline = Instant::now() + Duration::from_secs(60);
    let before_kill = loop {
        let current = status(&url, &id);
        assert!(current["resolutionState"] != "completed", "the resolution ended before the kill could land: {current}");
        if current["resolutionState"] == "processing" && current["workspaces"].as_i64().unwrap_or(0) > 0 {
            std::thread::sleep(Duration::from_millis(random.between(0, 20)));
            break current;
        }
        assert!(Instant::now() < deadline, "resolution wrote nothing in time: {current}");
    };
    sigkill(server.take().expect("the server runs"));
    eprintln!("server killed mid-resolution: {before_kill}");

    let restarted = Instant::now();
    let _server = start_server_at(&data, port, &server_arguments);
    let after_restart = status(&url, &id);
    assert_eq!(after_restart["resolutionState"], "processing", "the kill landed while resolution ran: {after_restart}");
    assert!(after_restart["workspaces"].as_i64().unwrap_or(0) > 0, "part of the workspaces had been written: {after_restart}");
    wait_until(Duration::from_secs(45), "the resolution to resume and finish", || status(&url, &id)["resolutionState"] == "completed");
    let resumed_after = restarted.elapsed();
    assert!(server_log_lines(&data, "resolutions of a server process that stopped were reset") >= 1, "the restarted server took the resolution back");
    let final_status = status(&url, &id);
    assert_eq!(final_status["workspaces"], count as i64, "every project once: {final_status}");
    assert_eq!(final_status["jobs"]["queued"], count as i64, "one job per workspace: {final_status}");
    let listed = workspaces(&url, &id);
    let mut keys: Vec<(&str, &str)> =
        listed.iter().map(|workspace| (workspace["repository"].as_str().expect("repository"), workspace["path"].as_str().expect("path"))).collect();
    keys.sort_unstable();
    keys.dedup();
    assert_eq!((listed.len(), keys.len()), (count, count), "one workspace per project");
    eprintln!(
        "resolution of {count} workspaces ({} written before the kill) resumed and finished {:.1} s after the restart",
        after_restart["workspaces"],
        resumed_after.as_secs_f64()
    );
}

#[test]
fn the_server_killed_mid_publishing_opens_no_pull_request_twice() {
    server_killed_mid_publishing("the_server_killed_mid_publishing_opens_no_pull_request_twice", None);
}

#[test]
fn the_server_on_postgres_killed_mid_publishing_opens_no_pull_request_twice() {
    let Some(database_url) = fresh_postgres_database("faults_publishing") else { return };
    server_killed_mid_publishing("the_server_on_postgres_killed_mid_publishing_opens_no_pull_request_twice", Some(&database_url));
}

/// Three SIGKILLs of the server while its reconciler opens pull requests on the GitHub
/// emulator, each followed by a restart on the same data and port.
fn server_killed_mid_publishing(test: &str, database_url: Option<&str>) {
    let mut random = Random::from_environment(test);
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
    let names: Vec<String> = (0..10).map(|index| format!("app-{index}")).collect();
    for name in &names {
        runtime.block_on(emulator.create_repository(NewRepository::new("acme", name.as_str()))).expect("repository");
    }
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server_arguments = vec!["--changeset-sync-interval", "3600"];
    if let Some(database_url) = database_url {
        server_arguments.extend(["--database-url", database_url]);
    }
    let mut server = Some(start_server_at(&data, port, &server_arguments));
    let _executor = start_executor(&url, EXECUTOR, "publisher", &root.path().join("executor"), "process");
    let added = run_client(
        &url,
        &["codehost", "add", "--kind", "github", "--name", "github.com", "--api-url", emulator.url(), "--org", "acme", "--token-stdin"],
        Some(DEFAULT_TOKEN),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(run_client(&url, &["repos", "sync"], None).status.success());

    let file = root.path().join("publish.batch.yaml");
    std::fs::write(
        &file,
        "name: publish\non:\n  - repositoriesMatchingQuery: repo:^github\\.com/acme/\nsteps:\n  - run: echo fixed >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Fix the README\n  body: Fixes it\n  branch: batch/publish\n  commit:\n    message: Fix the README\n  published: true\n",
    )
    .expect("write spec");
    // Every forge request answers slowly, so the reconciler is mid-way through some changeset
    // (its pull request opened or not, the result recorded or not) when the server dies.
    emulator.inject_faults(Fault::Slow { millis: 150 }, 100_000);
    let applied = run_client(&url, &["batch", "apply", "--json", "-f", file.to_str().expect("utf-8")], None);
    assert!(applied.status.success(), "{}", String::from_utf8_lossy(&applied.stderr));
    let opened = || names.iter().map(|name| emulator.pull_request_count("acme", name)).sum::<usize>();

    // Three kills while pull requests are being opened: after 2, 5 and 8 of the 10.
    for (round, target) in [2, 5, 8].into_iter().enumerate() {
        wait_until(Duration::from_secs(60), "more pull requests to be opened", || opened() >= target);
        std::thread::sleep(Duration::from_millis(random.between(0, 300)));
        let opened_at_kill = opened();
        sigkill(server.take().expect("the server runs"));
        eprintln!("server kill {} mid-publishing after {:.1} s: {opened_at_kill} of 10 pull requests open", round + 1, started.elapsed().as_secs_f64());
        std::thread::sleep(Duration::from_millis(random.between(100, 1000)));
        server = Some(start_server_at(&data, port, &server_arguments));
    }

    let mut listed: Vec<serde_json::Value> = Vec::new();
    wait_until(Duration::from_secs(60), "the reconciler to finish every changeset", || {
        let output = run_client(&url, &["changesets", "list", "--batch-change", "publish", "--json"], None);
        listed = serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default();
        listed.len() == 10 && listed.iter().all(|changeset| matches!(changeset["reconcilerState"].as_str(), Some("completed" | "failed")))
    });
    for changeset in &listed {
        assert_eq!((changeset["reconcilerState"].as_str(), changeset["externalState"].as_str()), (Some("completed"), Some("OPEN")), "{changeset}");
    }
    for name in &names {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "exactly one pull request in {name}");
    }
    let taken_back = server_log_lines(&data, "changesets a stopped server process was reconciling were queued again");
    assert!(taken_back >= 1, "at least one kill landed while a changeset was being reconciled, and a restarted server took it back");
    drop(server);
    eprintln!("3 server kills mid-publishing, 10 repositories, one pull request each, in {:.1} s", started.elapsed().as_secs_f64());
}
