//! `flotilla bench e2e`: a whole batch change at scale, on this machine, as a user runs it.
//!
//! It generates N bare repositories (hard-linked copies of one small repository, so 45,000
//! take seconds), starts a real `flotilla server` process and E `flotilla executor`
//! processes (process runtime), registers the folder as a code host, and then runs one batch
//! spec (a step that edits a file, `published: true`, so every branch is pushed) through
//! every phase: mirroring, resolution and queueing, execution, changeset spec ingestion,
//! apply and publishing. While it runs, it samples the server process's resident memory and
//! CPU time from `/proc`, and a prober lists workspaces and changesets through the API every
//! 200 ms to measure what a user browsing the run would wait.
//!
//! Everything is measured from outside the server (its HTTP API and `/proc`), so the figures
//! include what a deployment pays: HTTP, JSON, the database, git.

use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use flotilla_wire::api::{BatchChangeStatistics, BatchSpecStatus, CreateBatchSpec, RepositoryInfo, WorkspacePage};

use super::bench::{hard_link_tree, make_template};
use crate::cli::BenchE2eArgs;
use crate::client::Client;

const ADMIN: &str = "flt_u_bench_e2e_admin_token_000000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_bench_e2e_executor_token_00000000000000000000000000000000";

/// Child processes killed when the benchmark ends, however it ends.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The server process's resources, sampled from `/proc/PID`.
#[derive(Default, Clone, Copy)]
struct ProcessSample {
    resident_bytes: u64,
    cpu_seconds: f64,
    /// CPU of the child processes it waited for (git serving fetches and pushing branches).
    children_cpu_seconds: f64,
}

fn sample_process(pid: u32) -> Option<ProcessSample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let resident_kib: u64 = status.lines().find_map(|line| line.strip_prefix("VmRSS:"))?.split_whitespace().next()?.parse().ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |index: usize| fields.get(index).and_then(|value| value.parse::<u64>().ok());
    let ticks = field(11)? + field(12)?;
    let children_ticks = field(13)? + field(14)?;
    Some(ProcessSample { resident_bytes: resident_kib * 1024, cpu_seconds: ticks as f64 / 100.0, children_cpu_seconds: children_ticks as f64 / 100.0 })
}

/// The `q`-quantile of `values` (sorted in place), 0 when empty.
fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * q).round() as usize]
}

pub async fn e2e(arguments: BenchE2eArgs) -> anyhow::Result<ExitCode> {
    let root = std::env::temp_dir().join(format!("flotilla-bench-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let result = run(&arguments, &root).await;
    if arguments.keep {
        eprintln!("kept the repositories, data and logs in {}", root.display());
    } else {
        let _ = std::fs::remove_dir_all(&root);
    }
    result
}

async fn run(arguments: &BenchE2eArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let repositories = arguments.repositories;
    let executable = std::env::current_exe().context("finding the flotilla binary")?;

    // N repositories: hard-linked copies of one (git never rewrites an object file, and refs
    // are replaced by rename, so pushes to one copy do not touch the others).
    let generated = Instant::now();
    let (template, _) = make_template(&root.join("template"), "service", &[("README.md", "# service\n"), ("src/main.rs", "fn main() {}\n")])?;
    let repos = root.join("repos");
    for index in 0..repositories {
        hard_link_tree(&template, &repos.join(format!("service-{index:05}.git")))?;
    }
    eprintln!("generated {repositories} repositories in {:.1} s", generated.elapsed().as_secs_f64());

    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    drop(listener);
    let url = format!("http://127.0.0.1:{port}");
    let mut children = Children(Vec::new());
    let mut server = Command::new(&executable);
    server
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--admin-token", ADMIN, "--executor-token", EXECUTOR])
        .args(["--changeset-sync-interval", "3600"])
        .arg("--data-dir")
        .arg(root.join("data"))
        .env("FLOTILLA_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(root.join("server.log"))?));
    if let Some(database_url) = &arguments.database_url {
        server.args(["--database-url", database_url]);
    }
    let server = server.spawn().context("starting the server")?;
    let server_pid = server.id();
    children.0.push(server);
    let client = Client::new(Some(url.clone()), Some(ADMIN.to_owned()))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = format!("{url}/healthz");
    while !reqwest::get(&health).await.is_ok_and(|response| response.status().is_success()) {
        anyhow::ensure!(Instant::now() < deadline, "the server did not start; see {}", root.join("server.log").display());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Resource sampling and API probing run for the whole benchmark.
    let running = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(Mutex::new(ProcessSample::default()));
    let at_start = sample_process(server_pid).unwrap_or_default();
    let sampler = {
        let (running, peak) = (running.clone(), peak.clone());
        tokio::spawn(async move {
            while running.load(Ordering::Relaxed) {
                if let Some(sample) = sample_process(server_pid) {
                    let mut peak = peak.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    peak.resident_bytes = peak.resident_bytes.max(sample.resident_bytes);
                    peak.cpu_seconds = sample.cpu_seconds;
                    peak.children_cpu_seconds = sample.children_cpu_seconds;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let probe_paths: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let latencies: Arc<Mutex<Vec<f64>>> = Arc::new(Mutex::new(Vec::new()));
    let prober = {
        let (running, paths, latencies, client) = (running.clone(), probe_paths.clone(), latencies.clone(), Client::new(Some(url.clone()), Some(ADMIN.to_owned()))?);
        let probing = !arguments.no_probe;
        tokio::spawn(async move {
            while probing && running.load(Ordering::Relaxed) {
                let current: Vec<String> = paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
                for path in current {
                    let started = Instant::now();
                    if client.get::<serde_json::Value>(&path).await.is_ok() {
                        latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let total = Instant::now();
    let mut phases: Vec<(&str, f64)> = Vec::new();

    // Mirroring.
    let phase = Instant::now();
    let _: serde_json::Value = client
        .post("/api/v1/code-hosts", &serde_json::json!({ "kind": "git-directory", "name": "bench", "path": repos.to_str().context("UTF-8 path")? }))
        .await?;
    client.post_empty("/api/v1/repositories/sync", &serde_json::json!({ "wait": false })).await?;
    loop {
        let mut ready = 0;
        let mut after: Option<String> = None;
        loop {
            let path = match &after {
                Some(after) => format!("/api/v1/repositories?limit=10000&after={after}"),
                None => "/api/v1/repositories?limit=10000".to_owned(),
            };
            let page: Vec<RepositoryInfo> = client.get(&path).await?;
            ready += page.iter().filter(|repository| repository.mirror_state == "ready").count();
            match page.last() {
                Some(last) if page.len() == 10_000 => after = Some(last.name.clone()),
                _ => break,
            }
        }
        if ready >= repositories {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    phases.push(("mirroring", phase.elapsed().as_secs_f64()));

    for index in 0..arguments.executors {
        let child = Command::new(&executable)
            .args(["executor", "--url", &url, "--token", EXECUTOR, "--runtime", "process", "--name", &format!("bench-{index}")])
            .args(["--concurrency", &arguments.concurrency.to_string()])
            .arg("--work-dir")
            .arg(root.join(format!("executor-{index}")))
            .env("FLOTILLA_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(root.join(format!("executor-{index}.log")))?))
            .spawn()
            .context("starting an executor")?;
        children.0.push(child);
    }

    // Resolution, queueing and execution.
    let spec = "name: bench-e2e\non:\n  - repositoriesMatchingQuery: repo:^bench/\nsteps:\n  - run: echo \"benchmarked\" >> README.md\n    container: alpine:3\nchangesetTemplate:\n  title: Benchmark ${{ repository.name }}\n  body: Edits the README\n  branch: batch/bench-e2e\n  commit:\n    message: Benchmark\n  published: true\n";
    let phase = Instant::now();
    let created: BatchSpecStatus = client.post("/api/v1/batch-specs", &CreateBatchSpec { spec: spec.into(), namespace: None, allow_ignored: false, no_cache: true, mount_files: Vec::new() }).await?;
    let id = created.id.clone();
    probe_paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("/api/v1/batch-specs/{id}/workspaces?limit=50"));
    let (mut resolved_at, mut first_job_at) = (None, None);
    let status = loop {
        let status: BatchSpecStatus = client.get(&format!("/api/v1/batch-specs/{id}")).await?;
        if first_job_at.is_none() && status.jobs.completed > 0 {
            first_job_at = Some(phase.elapsed().as_secs_f64());
        }
        if resolved_at.is_none() && status.resolution_state == "completed" {
            resolved_at = Some(phase.elapsed().as_secs_f64());
        }
        anyhow::ensure!(status.resolution_state != "failed", "resolution failed: {}", status.resolution_failure.unwrap_or_default());
        if resolved_at.is_some() && status.jobs.queued == 0 && status.jobs.processing == 0 {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let executed = phase.elapsed().as_secs_f64();
    phases.push(("resolution and queueing", resolved_at.unwrap_or(executed)));
    phases.push(("execution (from the spec's upload)", executed));
    anyhow::ensure!(status.jobs.failed == 0, "{} workspaces failed; see the executors' logs in {} (--keep)", status.jobs.failed, root.display());

    // Changeset specs are stored as each job reports; wait for the last.
    let phase = Instant::now();
    loop {
        let status: BatchSpecStatus = client.get(&format!("/api/v1/batch-specs/{id}")).await?;
        if status.changeset_specs >= repositories as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    phases.push(("changeset spec ingestion (after the last job)", phase.elapsed().as_secs_f64()));

    // Per-workspace durations, from the workspace list.
    let mut durations = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(after) => format!("/api/v1/batch-specs/{id}/workspaces?limit=1000&after={after}"),
            None => format!("/api/v1/batch-specs/{id}/workspaces?limit=1000"),
        };
        let page: WorkspacePage = client.get(&path).await?;
        durations.extend(page.workspaces.iter().filter_map(|workspace| Some((workspace.finished_at_ms? - workspace.started_at_ms?) as f64)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }

    // Apply and publish: every branch pushed.
    let phase = Instant::now();
    client.post_empty(&format!("/api/v1/batch-specs/{id}/apply"), &serde_json::json!({})).await?;
    let applied = phase.elapsed().as_secs_f64();
    probe_paths.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push("/api/v1/batch-changes/bench-e2e/changesets?limit=50".to_owned());
    loop {
        let statistics: BatchChangeStatistics = client.get("/api/v1/batch-changes/bench-e2e/statistics?points=1").await?;
        let counts = &statistics.changesets;
        anyhow::ensure!(counts.failed == 0, "{} changesets failed to publish", counts.failed);
        if counts.open >= repositories as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    phases.push(("apply (the request)", applied));
    phases.push(("publishing (branches pushed, from apply)", phase.elapsed().as_secs_f64()));
    let total_seconds = total.elapsed().as_secs_f64();

    running.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let _ = prober.await;
    let peak = *peak.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut latencies = latencies.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();

    println!("flotilla bench e2e: {repositories} repositories, {} executor(s) × {} (process runtime), {}", arguments.executors, arguments.concurrency, if arguments.database_url.is_some() { "PostgreSQL" } else { "SQLite" });
    for (name, seconds) in &phases {
        println!("  {name:<48} {seconds:>8.1} s");
    }
    println!("  {:<48} {total_seconds:>8.1} s", "total (mirroring to the last branch pushed)");
    println!("  first workspace completed after {:.1} s; {:.0} workspaces/min", first_job_at.unwrap_or_default(), repositories as f64 / executed.max(f64::EPSILON) * 60.0);
    println!("  per workspace (executor's start to finish): p50 {:.0} ms, p95 {:.0} ms", quantile(&mut durations, 0.5), quantile(&mut durations, 0.95));
    let server_cpu = peak.cpu_seconds - at_start.cpu_seconds;
    let git_cpu = peak.children_cpu_seconds - at_start.children_cpu_seconds;
    println!(
        "  server: peak resident memory {:.0} MiB; CPU {server_cpu:.1} s = {:.2} ms per workspace, plus {git_cpu:.1} s = {:.2} ms per workspace in its git processes (serving fetches, pushing)",
        peak.resident_bytes as f64 / (1 << 20) as f64,
        server_cpu * 1000.0 / repositories as f64,
        git_cpu * 1000.0 / repositories as f64
    );
    println!(
        "  API while running (workspace and changeset pages of 50, {} requests): p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        quantile(&mut latencies, 0.5),
        quantile(&mut latencies, 0.99),
        quantile(&mut latencies, 1.0)
    );
    drop(children);
    Ok(ExitCode::SUCCESS)
}
