//! Outages of what Flotilla depends on (issue 9), at a size CI runs, against the real
//! `flotilla` binary: PostgreSQL stopped and started again under load (on a private instance
//! this test starts, never the shared cluster), a full disk on the server and on an executor
//! (a small tmpfs the test mounts, so it runs as root, as CI does, and fails loudly otherwise),
//! and a code host answering 5xx, then 429, then nothing at all for a sustained period.
//!
//! Each test checks that the outage is visible while it lasts (a clear status and message),
//! that nothing is lost or done twice, and that everything finishes after it without anyone
//! running a command. RELIABILITY.md states the guarantees and the figures measured.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use flotilla_codehost_emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig, Fault, NewRepository};
use support::fleet::{
    Tokens, assert_each_workspace_completed_once, run_client, server_log_lines, setup_git_code_host, spec_finished, spec_status, start_server_logged, start_spec,
    workspaces,
};
use support::{Running, http_request, start_executor, start_executor_with, wait_until};

const TOKENS: Tokens = Tokens {
    admin: "flt_u_outages_e2e_admin_token_0000000000000000000000000000000000",
    executor: "flt_e_outages_e2e_executor_token_00000000000000000000000000000",
};
/// A job silent this long is requeued (the janitor looks every 5 s).
const HEARTBEAT_TIMEOUT: &str = "8";

/// A spec over the plain git fleet whose step takes a second, so outages land mid-run.
const FLEET_SPEC: &str = "name: outage\non:\n  - repositoriesMatchingQuery: repo:^fleet/\nsteps:\n  - run: sleep 1 && echo step-finished-here && echo touched >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Touch ${{ repository.name }}\n  branch: batch/touch\n  commit:\n    message: touch\n";

fn running(process: &mut Running) -> bool {
    process.0.try_wait().expect("process state").is_none()
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL restarted under load

/// A PostgreSQL instance of this test's own (initdb in a temporary folder, a free port), run as
/// the `postgres` user when the test runs as root. Stopped for good when dropped.
struct PrivatePostgres {
    folder: tempfile::TempDir,
    binaries: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// `None` (with a notice) when PostgreSQL's server programs are not installed; under
    /// FLOTILLA_REQUIRE_ALL_TOOLS that fails instead.
    fn start() -> Option<PrivatePostgres> {
        let binaries = ["/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin"]
            .iter()
            .map(PathBuf::from)
            .find(|folder| folder.join("initdb").exists() && folder.join("pg_ctl").exists());
        let Some(binaries) = binaries else {
            assert!(
                std::env::var_os("FLOTILLA_REQUIRE_ALL_TOOLS").is_none(),
                "PostgreSQL's initdb and pg_ctl are required (FLOTILLA_REQUIRE_ALL_TOOLS is set): apt-get install postgresql"
            );
            eprintln!("NOTICE: PostgreSQL's server programs are not installed; the PostgreSQL restart test did not run");
            return None;
        };
        let folder = tempfile::tempdir().expect("temp dir");
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(folder.path()).status().expect("run chown");
            assert!(status.success(), "chown of the private PostgreSQL folder to the postgres user failed");
        }
        let postgres = PrivatePostgres { folder, binaries, port: support::free_port() };
        postgres.run("initdb", &["-D", &postgres.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        postgres.start_again();
        Some(postgres)
    }

    fn data(&self) -> String {
        self.folder.path().join("data").to_string_lossy().into_owned()
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Runs one of PostgreSQL's programs as the postgres user (as ourselves when not root).
    fn run(&self, program: &str, arguments: &[&str]) {
        let executable = self.binaries.join(program);
        let output = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&executable).args(arguments).current_dir(self.folder.path()).output()
        } else {
            Command::new(&executable).args(arguments).current_dir(self.folder.path()).output()
        }
        .unwrap_or_else(|error| panic!("run {}: {error}", executable.display()));
        assert!(
            output.status.success(),
            "{program} {arguments:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn start_again(&self) {
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60", self.port, self.folder.path().display());
        let log = self.folder.path().join("postgres.log").to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &self.data(), "-l", &log, "-o", &options, "-w", "-t", "30", "start"]);
    }

    /// `pg_ctl stop -m fast` (connections told to go) or `immediate` (as a crash: no
    /// checkpoint, recovery on the next start).
    fn stop(&self, mode: &str) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", mode, "-w", "-t", "30", "stop"]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let executable = self.binaries.join("pg_ctl");
        let data = self.data();
        let arguments = ["-D", data.as_str(), "-m", "immediate", "stop"];
        let _ = if is_root() {
            Command::new("runuser").args(["-u", "postgres", "--"]).arg(&executable).args(arguments).output()
        } else {
            Command::new(&executable).args(arguments).output()
        };
    }
}

/// Asks for the batch spec while the database is away: the server answers, quickly enough,
/// 503 with `Retry-After` and a message that says the database is unavailable.
fn assert_answers_database_unavailable(url: &str, id: &str) -> Duration {
    let asked = Instant::now();
    let (status, body) = http_request(url, "GET", &format!("/api/v1/batch-specs/{id}"), Some(&format!("token {}", TOKENS.admin)), None);
    let took = asked.elapsed();
    assert_eq!(status, 503, "the database is away: {body}");
    assert!(body.contains("the database is unavailable") && body.contains("try again shortly"), "a clear message: {body}");
    assert!(took < Duration::from_secs(12), "the answer came in {took:?}, not after a long hang");
    took
}

#[test]
fn postgres_restarted_under_load_loses_nothing_and_opens_no_pull_request_twice() {
    let Some(postgres) = PrivatePostgres::start() else { return };
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
    let count = 20;
    let names: Vec<String> = (0..count).map(|index| format!("app-{index:02}")).collect();
    for name in &names {
        runtime.block_on(emulator.create_repository(NewRepository::new("acme", name.as_str()))).expect("repository");
    }
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let database_url = postgres.url();
    let mut server = start_server_logged(
        TOKENS,
        &data,
        port,
        &["--database-url", &database_url, "--heartbeat-timeout", HEARTBEAT_TIMEOUT, "--changeset-sync-interval", "3600"],
    );
    let mut executors: Vec<Running> =
        ["pg-a", "pg-b", "pg-c"].iter().map(|name| start_executor(&url, TOKENS.executor, name, &root.path().join(name), "process")).collect();
    let added = run_client(
        TOKENS,
        &url,
        &["codehost", "add", "--kind", "github", "--name", "github.com", "--api-url", emulator.url(), "--org", "acme", "--token-stdin"],
        Some(DEFAULT_TOKEN),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(run_client(TOKENS, &url, &["repos", "sync"], None).status.success());
    let id = start_spec(
        TOKENS,
        &url,
        root.path(),
        "name: restart\non:\n  - repositoriesMatchingQuery: repo:^github\\.com/acme/\nsteps:\n  - run: sleep 1 && echo step-finished-here && echo fixed >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Fix the README\n  body: Fixes it\n  branch: batch/restart\n  commit:\n    message: Fix the README\n  published: true\n",
    );

    // Twice while jobs run: PostgreSQL stops (fast, then as a crash), the API says so, and it
    // comes back after a few seconds.
    let mut restarts = 0;
    for (round, (target, mode, down)) in [(4, "fast", 7), (11, "immediate", 4)].into_iter().enumerate() {
        wait_until(Duration::from_secs(60), "completed workspaces and a running one", || {
            let current = spec_status(TOKENS, &url, &id);
            current["jobs"]["completed"].as_i64().unwrap_or(0) >= target && current["jobs"]["processing"].as_i64().unwrap_or(0) > 0
        });
        let stopped = Instant::now();
        postgres.stop(mode);
        restarts += 1;
        let took = assert_answers_database_unavailable(&url, &id);
        eprintln!("PostgreSQL stopped ({mode}) after {:.1} s; the API answered 503 in {:.1} s", started.elapsed().as_secs_f64(), took.as_secs_f64());
        std::thread::sleep(Duration::from_secs(down).saturating_sub(stopped.elapsed()));
        assert!(running(&mut server), "the server outlives PostgreSQL's restart (round {})", round + 1);
        postgres.start_again();
    }

    wait_until(Duration::from_secs(90), "the batch spec to finish", || spec_finished(TOKENS, &url, &id));
    for executor in &mut executors {
        assert!(running(executor), "the executors outlived the database outage");
    }
    assert_each_workspace_completed_once(TOKENS, &url, &id, count, "step-finished-here");
    eprintln!("{count} workspaces completed once each after {restarts} restarts, in {:.1} s", started.elapsed().as_secs_f64());

    // Once more while the reconciler opens pull requests (each forge answer takes 150 ms).
    emulator.inject_faults(Fault::Slow { millis: 150 }, 100_000);
    let (status, body) = http_request(&url, "POST", &format!("/api/v1/batch-specs/{id}/apply"), Some(&format!("token {}", TOKENS.admin)), Some(""));
    assert_eq!(status, 200, "{body}");
    let opened = || names.iter().map(|name| emulator.pull_request_count("acme", name)).sum::<usize>();
    wait_until(Duration::from_secs(60), "some pull requests to be opened", || opened() >= 5);
    let opened_at_stop = opened();
    postgres.stop("immediate");
    restarts += 1;
    eprintln!("PostgreSQL stopped (immediate) mid-publishing with {opened_at_stop} of {count} pull requests open");
    std::thread::sleep(Duration::from_secs(4));
    postgres.start_again();

    let mut listed: Vec<serde_json::Value> = Vec::new();
    wait_until(Duration::from_secs(90), "the reconciler to finish every changeset", || {
        let output = run_client(TOKENS, &url, &["changesets", "list", "--batch-change", "restart", "--json"], None);
        listed = serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default();
        listed.len() == count && listed.iter().all(|changeset| matches!(changeset["reconcilerState"].as_str(), Some("completed" | "failed")))
    });
    for changeset in &listed {
        assert_eq!((changeset["reconcilerState"].as_str(), changeset["externalState"].as_str()), (Some("completed"), Some("OPEN")), "{changeset}");
    }
    for name in &names {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "exactly one pull request in {name}");
    }
    assert!(running(&mut server), "the same server process ran through all {restarts} restarts");
    let said = server_log_lines(&data, "the database is unavailable");
    assert!(!said.is_empty(), "the server's log says the database was away");
    eprintln!("the server's log said, for example: {}", said[0]);
    eprintln!(
        "{restarts} PostgreSQL restarts, {count} workspaces and {count} pull requests, none lost or doubled, {} log lines about it, in {:.1} s",
        said.len(),
        started.elapsed().as_secs_f64()
    );
}

// ---------------------------------------------------------------------------------------------
// Disk full

/// A tmpfs of `megabytes` mounted at `path` for the test's lifetime (unmounted when dropped).
/// Mounting needs root, as CI has; anything else fails the test loudly.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, megabytes: u64) -> SmallDisk {
        std::fs::create_dir_all(path).expect("create the mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m,mode=0755"), "flotilla-test-disk"])
            .arg(path)
            .output()
            .expect("run mount");
        assert!(
            output.status.success(),
            "mounting a {megabytes} MiB tmpfs at {} failed (the disk-full tests need root, as CI runs them): {}",
            path.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk { path: path.to_owned() }
    }

    /// Writes `filler` until the disk refuses more (ENOSPC); returns how much was written.
    fn fill(&self) -> u64 {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(self.path.join("filler")).expect("create the filler");
        let mut written = 0;
        for chunk in [1 << 20, 4096, 1] {
            let block = vec![0x5a_u8; chunk];
            loop {
                match file.write(&block) {
                    Ok(0) => break,
                    Ok(count) => written += count as u64,
                    Err(error) if error.raw_os_error() == Some(28) => break,
                    Err(error) => panic!("filling {}: {error}", self.path.display()),
                }
            }
        }
        let _ = file.flush();
        written
    }

    fn free_the_filler(&self) {
        std::fs::remove_file(self.path.join("filler")).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

#[test]
fn disk_full_on_the_server_refuses_writes_clearly_and_carries_on_once_freed() {
    let started = Instant::now();
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let disk = SmallDisk::mount(&data, 48);
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let mut server = start_server_logged(TOKENS, &data, port, &["--heartbeat-timeout", HEARTBEAT_TIMEOUT]);
    let count = 8;
    setup_git_code_host(TOKENS, &url, root.path(), count);
    let executor_work = root.path().join("executor");
    let mut executor = start_executor(&url, TOKENS.executor, "roomy", &executor_work, "process");
    let id = start_spec(TOKENS, &url, root.path(), FLEET_SPEC);
    wait_until(Duration::from_secs(60), "two completed workspaces", || spec_status(TOKENS, &url, &id)["jobs"]["completed"].as_i64().unwrap_or(0) >= 2);

    let filled = disk.fill();
    eprintln!("server disk filled with {} MiB after {:.1} s", filled >> 20, started.elapsed().as_secs_f64());
    // A write that needs room is refused with 507 and a message saying what to do; reads work.
    let admin = format!("token {}", TOKENS.admin);
    let big_spec = format!("name: too-big\ndescription: \"{}\"\non:\n  - repositoriesMatchingQuery: repo:^fleet/\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n", "x".repeat(2 << 20));
    let body = serde_json::json!({ "spec": big_spec }).to_string();
    let (status, answer) = http_request(&url, "POST", "/api/v1/batch-specs", Some(&admin), Some(&body));
    assert_eq!(status, 507, "{answer}");
    assert!(answer.contains("disk is full") && answer.contains("free space"), "a clear message: {answer}");
    let (status, answer) = http_request(&url, "GET", &format!("/api/v1/batch-specs/{id}"), Some(&admin), None);
    assert_eq!(status, 200, "reads still work on a full disk: {answer}");
    std::thread::sleep(Duration::from_secs(6));
    assert!(running(&mut server), "the server outlives a full disk");
    assert!(running(&mut executor), "the executor outlives the server's full disk");

    disk.free_the_filler();
    eprintln!("server disk freed after {:.1} s", started.elapsed().as_secs_f64());
    wait_until(Duration::from_secs(90), "the batch spec to finish", || spec_finished(TOKENS, &url, &id));
    assert_each_workspace_completed_once(TOKENS, &url, &id, count, "step-finished-here");
    let (status, answer) = http_request(&url, "POST", "/api/v1/batch-specs", Some(&admin), Some(&body));
    assert_eq!(status, 201, "writes work again once space is freed: {answer}");
    let said = server_log_lines(&data, "disk is full");
    assert!(!said.is_empty(), "the server's log says its disk was full");
    eprintln!("the server's log said, for example: {}", said[0]);
    drop(server);

    let checked = Command::new("sqlite3").arg(data.join("flotilla.sqlite")).arg("PRAGMA integrity_check;").output();
    let checked = checked.expect("sqlite3 is required to check the database (apt-get install sqlite3)");
    assert_eq!(String::from_utf8_lossy(&checked.stdout).trim(), "ok", "the database is intact: {}", String::from_utf8_lossy(&checked.stderr));
    eprintln!("server disk full for ~6 s: refused writes with 507, {count} workspaces completed once, database intact, in {:.1} s", started.elapsed().as_secs_f64());
}

#[test]
fn disk_full_on_an_executor_fails_the_attempt_clearly_and_retries_it_once_freed() {
    let started = Instant::now();
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    let _server = start_server_logged(TOKENS, &data, port, &["--heartbeat-timeout", HEARTBEAT_TIMEOUT]);
    let count = 4;
    setup_git_code_host(TOKENS, &url, root.path(), count);
    let work = root.path().join("cramped");
    let disk = SmallDisk::mount(&work, 24);
    // The threshold is above what the failed attempts' deleted workspaces give back (two jobs'
    // checkouts and up to 3 MiB of scratch each), so the executor does not take a job, fail it
    // on the still-full disk and spend its attempts (seen once in CI with 4 MiB).
    let mut executor = start_executor_with(&url, TOKENS.executor, "cramped", &work, "process", &["--min-free-disk", "10"]);
    // The step writes a few MiB of scratch data, as builds do, and removes it again.
    let spec = FLEET_SPEC.replace(
        "sleep 1 && echo step-finished-here && echo touched >> README.md",
        "sleep 2 && dd if=/dev/zero of=scratch.bin bs=1M count=3 status=none && rm scratch.bin && echo step-finished-here && echo touched >> README.md",
    );
    let id = start_spec(TOKENS, &url, root.path(), &spec);

    // The disk fills up while a job runs: its step fails on it.
    wait_until(Duration::from_secs(60), "a running job", || workspaces(TOKENS, &url, &id).iter().any(|workspace| workspace["state"] == "processing"));
    let filled = disk.fill();
    eprintln!("executor disk filled with {} MiB after {:.1} s", filled >> 20, started.elapsed().as_secs_f64());
    let mut blamed = serde_json::Value::Null;
    wait_until(Duration::from_secs(30), "the attempt to fail on the full disk", || {
        blamed = workspaces(TOKENS, &url, &id)
            .into_iter()
            .find(|workspace| workspace["failureMessage"].as_str().is_some_and(|message| message.contains("disk is full")))
            .unwrap_or_default();
        !blamed.is_null()
    });
    let message = blamed["failureMessage"].as_str().expect("message");
    assert!(message.starts_with("infrastructure failure: the executor's disk is full (work folder"), "{message}");
    assert!(message.contains("No space left on device") && message.contains("retried"), "{message}");
    assert_eq!(blamed["state"], "queued", "the job is retried, not failed: {blamed}");
    eprintln!("the failed attempt says: {message}");

    // While the disk stays full the executor takes nothing: no workspace fails, none runs.
    std::thread::sleep(Duration::from_secs(4));
    let during = workspaces(TOKENS, &url, &id);
    assert!(during.iter().all(|workspace| workspace["state"] == "queued" || workspace["state"] == "completed"), "nothing runs on a full disk: {during:?}");
    assert!(running(&mut executor), "the executor outlives its full disk");

    disk.free_the_filler();
    wait_until(Duration::from_secs(60), "the batch spec to finish", || spec_finished(TOKENS, &url, &id));
    assert_each_workspace_completed_once(TOKENS, &url, &id, count, "step-finished-here");
    eprintln!("executor disk full: one attempt failed with a clear message, retried, {count} workspaces completed once, in {:.1} s", started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------------------------------------
// A code host outage

#[test]
fn a_code_host_outage_of_minutes_shows_retrying_changesets_then_publishes_each_once() {
    let started = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let emulator = runtime.block_on(Emulator::start(EmulatorConfig::default())).expect("emulator");
    let count = 8;
    let names: Vec<String> = (0..count).map(|index| format!("svc-{index}")).collect();
    for name in &names {
        runtime.block_on(emulator.create_repository(NewRepository::new("acme", name.as_str()))).expect("repository");
    }
    let root = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("data");
    let port = support::free_port();
    let url = format!("http://127.0.0.1:{port}");
    // "Minutes" scaled down for CI: a 1 s answer timeout and a 1 s first retry pause stand for
    // the defaults' 30 s and 5 s.
    let _server = start_server_logged(TOKENS, &data, port, &["--changeset-sync-interval", "3600", "--code-host-timeout", "1", "--reconciler-retry-pause", "1"]);
    let _executor = start_executor(&url, TOKENS.executor, "outage", &root.path().join("executor"), "process");
    let added = run_client(
        TOKENS,
        &url,
        &["codehost", "add", "--kind", "github", "--name", "github.com", "--api-url", emulator.url(), "--org", "acme", "--token-stdin"],
        Some(DEFAULT_TOKEN),
    );
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    assert!(run_client(TOKENS, &url, &["repos", "sync"], None).status.success());
    let id = start_spec(
        TOKENS,
        &url,
        root.path(),
        "name: outage\non:\n  - repositoriesMatchingQuery: repo:^github\\.com/acme/\nsteps:\n  - run: echo fixed >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Fix the README\n  body: Fixes it\n  branch: batch/outage\n  commit:\n    message: Fix the README\n  published: true\n",
    );
    wait_until(Duration::from_secs(60), "the batch spec to finish", || spec_finished(TOKENS, &url, &id));

    // The outage: server errors, then rate limits (with GitHub's headers), then no answer at
    // all, back to back for a sustained period, while the changesets are being published.
    let phases = [
        ("502", Fault::ServerError { status: 502 }, Duration::from_secs(10)),
        ("429", Fault::TooManyRequests { retry_after_secs: 1 }, Duration::from_secs(10)),
        ("hang", Fault::Slow { millis: 30_000 }, Duration::from_secs(18)),
    ];
    let outage_started = Instant::now();
    emulator.start_outage(&phases.iter().map(|(_, fault, duration)| (*fault, *duration)).collect::<Vec<_>>());
    let (status, body) = http_request(&url, "POST", &format!("/api/v1/batch-specs/{id}/apply"), Some(&format!("token {}", TOKENS.admin)), Some(""));
    assert_eq!(status, 200, "{body}");
    let mut seen: Vec<(String, String)> = Vec::new();
    let mut text_seen = String::new();
    let mut phase_end = outage_started;
    for (name, _, duration) in &phases {
        phase_end += *duration;
        let mut polls = 0;
        loop {
            let polled_at = Instant::now();
            if polled_at + Duration::from_millis(300) >= phase_end {
                break;
            }
            let published: usize = names.iter().map(|name| emulator.pull_request_count("acme", name)).sum();
            assert_eq!(published, 0, "nothing is published while the host is down ({name} phase)");
            let (status, body) = http_request(&url, "GET", "/api/v1/batch-changes/outage/changesets", Some(&format!("token {}", TOKENS.admin)), None);
            assert_eq!(status, 200, "{body}");
            let listed = serde_json::from_str::<Vec<serde_json::Value>>(&body).expect("changesets");
            for changeset in &listed {
                assert_ne!(changeset["reconcilerState"], "failed", "an outage of this length fails no changeset: {changeset}");
                if let Some(message) = changeset["failureMessage"].as_str() {
                    // Waiting for its next attempt (and saying when), or in it.
                    assert!(changeset["numFailures"].as_i64().unwrap_or(0) >= 1, "{changeset}");
                    match changeset["reconcilerState"].as_str() {
                        Some("queued") => assert!(changeset["retryAt"].as_i64().is_some(), "when it retries: {changeset}"),
                        Some("processing") => {}
                        _ => panic!("a changeset with a failure is retrying: {changeset}"),
                    }
                    seen.push(((*name).to_owned(), message.to_owned()));
                }
            }
            if polls % 5 == 4 {
                let text = run_client(TOKENS, &url, &["changesets", "list", "--batch-change", "outage"], None);
                let text = String::from_utf8_lossy(&text.stdout).into_owned();
                if text.contains("reconciler:retrying in") {
                    text_seen = text;
                }
            }
            polls += 1;
            std::thread::sleep(Duration::from_millis(400));
        }
        eprintln!("outage phase {name} over after {:.1} s", started.elapsed().as_secs_f64());
    }
    let ended = Instant::now();

    // What a person saw meanwhile: which phase failed how, and when it would be tried again.
    seen.sort();
    seen.dedup();
    let saw = |phase: &str, needle: &str| seen.iter().any(|(seen_phase, message)| seen_phase == phase && message.contains(needle));
    assert!(saw("502", "GitHub answered 502") && saw("502", "reconciling attempt 1 of 10 failed; next attempt in"), "5xx phase: {seen:#?}");
    assert!(seen.iter().any(|(_, message)| message.contains("429") && message.contains("rate limit")), "429 phase: {seen:#?}");
    assert!(saw("hang", "did not answer within the request timeout"), "hang phase: {seen:#?}");
    for (phase, message) in &seen {
        eprintln!("seen during the {phase} phase: {message}");
    }
    assert!(text_seen.contains("reconciler:retrying in"), "the CLI says they are retrying: {text_seen}");

    // After it, everything is published without anyone running a command, each once.
    let mut listed: Vec<serde_json::Value> = Vec::new();
    wait_until(Duration::from_secs(60), "every changeset to be published", || {
        let output = run_client(TOKENS, &url, &["changesets", "list", "--batch-change", "outage", "--json"], None);
        listed = serde_json::from_slice::<Vec<serde_json::Value>>(&output.stdout).unwrap_or_default();
        listed.len() == count && listed.iter().all(|changeset| changeset["reconcilerState"] == "completed")
    });
    for changeset in &listed {
        assert_eq!(changeset["externalState"], "OPEN", "{changeset}");
        assert!(changeset["failureMessage"].is_null() && changeset["retryAt"].is_null(), "the message clears once it worked: {changeset}");
    }
    for name in &names {
        assert_eq!(emulator.pull_request_count("acme", name), 1, "exactly one pull request in {name}");
    }
    let stats = emulator.stats();
    eprintln!(
        "{:.0} s outage ({} faults served, {} distinct failure messages seen); every pull request opened once {:.1} s after it ended; {:.1} s in all",
        phases.iter().map(|phase| phase.2.as_secs_f64()).sum::<f64>(),
        stats.faults_served,
        seen.len(),
        ended.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
