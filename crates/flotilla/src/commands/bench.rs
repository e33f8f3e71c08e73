//! `flotilla bench ...`: measurements for BENCHMARKS.md, run against the real server.
//!
//! `bench queue` starts a server in-process (SQLite in a temporary folder, or PostgreSQL with
//! `--database-url`), queues N jobs directly in the store, and drains them through the real
//! executor HTTP API with no-op executors (dequeue, then complete with an empty result), so
//! the figure is the server's own cost per job: HTTP, authentication, the queue transaction,
//! the job token, the completion.
//!
//! `bench resolution` builds N real bare mirrors (hard-linked copies of two small
//! repositories, so building 10,000 takes seconds), registers them as mirrored, and times the
//! server's own resolution worker on `repositoriesMatchingQuery` specs.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use flotilla_server::{ServerConfig, bootstrap, open_store, start};
use flotilla_store::{
    Clock, CodeHostKind, Namespace, NewBatchSpec, NewCodeHost, NewExecutionJob, NewRepository, NewWorkspace,
};
use flotilla_wire::{DequeueRequest, ExecutorDescription, Job, JobResult};

use crate::cli::{BenchQueueArgs, BenchResolutionArgs};

pub async fn queue(arguments: BenchQueueArgs) -> anyhow::Result<ExitCode> {
    let data = tempfile_directory()?;
    let mut config = ServerConfig::new("127.0.0.1:0".parse()?, data.clone(), flotilla_server::secrets_crypto::SecretKey::generate());
    config.database_url = arguments.database_url.clone();
    let store = open_store(&config).await?;
    let executor_token = "flt_e_bench_queue_executor_token_000000000000000000000000000";
    bootstrap(&store, None, Some(executor_token)).await?;
    let admin = store.get_user_by_username("admin").await?.context("bootstrap created the admin")?;
    let now = Clock::now_ms();

    let code_host = empty_code_host(&store, &format!("bench{}", std::process::id()), now).await?;
    let repository = store
        .upsert_repository(
            &NewRepository { code_host_id: code_host.id, name: format!("bench/repo{}", std::process::id()), clone_url: String::new(), default_branch: Some("main".into()), archived: false, fork: false },
            now,
        )
        .await?;
    let spec_text = "name: bench\nsteps:\n  - run: \"true\"\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n";
    let spec = flotilla_spec::parse_batch_spec(spec_text).map_err(|_| anyhow::anyhow!("bench spec invalid"))?.spec;
    let batch_spec = store
        .create_batch_spec(
            &NewBatchSpec {
                rand_id: format!("bench{}", std::process::id()),
                namespace: Namespace::User(admin.id),
                creator_user_id: admin.id,
                name: "bench".into(),
                raw_spec: spec_text.into(),
                parsed_spec: serde_json::to_value(&spec)?,
                created_from_raw: false,
                allow_unsupported: false,
                allow_ignored: false,
                no_cache: true,
                batch_change_id: None,
            },
            now,
        )
        .await?;
    let workspaces: Vec<NewWorkspace> = (0..arguments.jobs)
        .map(|index| NewWorkspace {
            batch_spec_id: batch_spec.id,
            repository_id: repository.id,
            branch: "main".into(),
            commit: "0".repeat(40),
            path: format!("w{index}"),
            file_matches: Vec::new(),
            only_fetch_workspace: false,
            ignored: false,
            unsupported: false,
            skipped: false,
            cached_result_found: false,
            step_cache_results: serde_json::json!({}),
        })
        .collect();
    let workspace_ids = store.insert_workspaces(&workspaces, now).await?;
    let payload = Job {
        id: 0,
        token: String::new(),
        repository_name: repository.name.clone(),
        commit: "0".repeat(40),
        branch: "main".into(),
        git_path: String::new(),
        workspace_path: String::new(),
        only_fetch_workspace: false,
        batch_change_name: "bench".into(),
        batch_change_description: String::new(),
        search_result_paths: Vec::new(),
        steps: spec.steps.clone(),
        skipped_steps: Vec::new(),
        cached_result: None,
        secrets: Default::default(),
        redactions: Vec::new(),
        mount_files: Vec::new(),
        allowed_images: Vec::new(),
        timeout_seconds: 0,
    };
    let payload = serde_json::to_value(&payload)?;
    let jobs: Vec<NewExecutionJob> = workspace_ids
        .iter()
        .map(|workspace_id| NewExecutionJob { workspace_id: *workspace_id, batch_spec_id: batch_spec.id, user_id: admin.id, routing_key: String::new(), payload: payload.clone() })
        .collect();
    store.enqueue_execution_jobs(&jobs, now).await?;

    let server = start(config, store).await?;
    let url = format!("http://{}", server.address);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().build()?;
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..arguments.executors {
        let (http, url, done) = (http.clone(), url.clone(), done.clone());
        workers.spawn(async move {
            let description = ExecutorDescription {
                name: format!("bench-{worker}"),
                version: "bench".into(),
                hostname: "bench".into(),
                os: "linux".into(),
                architecture: "x86_64".into(),
                runtime: "none".into(),
                ..ExecutorDescription::default()
            };
            loop {
                let response = http
                    .post(format!("{url}/.executors/queue/dequeue"))
                    .header("Authorization", format!("token-executor {executor_token}"))
                    .json(&DequeueRequest { executor: description.clone() })
                    .send()
                    .await?;
                if response.status() == reqwest::StatusCode::NO_CONTENT {
                    return anyhow::Ok(());
                }
                let job: Job = response.error_for_status()?.json().await?;
                http.post(format!("{url}/.executors/jobs/{}/complete", job.id))
                    .bearer_auth(&job.token)
                    .json(&JobResult::default())
                    .send()
                    .await?
                    .error_for_status()?;
                done.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(result) = workers.join_next().await {
        result??;
    }
    let elapsed = started.elapsed();
    let completed = done.load(Ordering::Relaxed);
    let backend = if arguments.database_url.is_some() { "PostgreSQL" } else { "SQLite" };
    println!(
        "queue ({backend}): {completed} jobs dequeued and completed over HTTP by {} no-op executors in {:.2} s: {:.0} jobs/s",
        arguments.executors,
        elapsed.as_secs_f64(),
        completed as f64 / elapsed.as_secs_f64()
    );
    server.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(ExitCode::SUCCESS)
}

/// A code host with nothing to sync: the benchmarks register their repositories themselves.
async fn empty_code_host(store: &flotilla_store::Store, name: &str, now: i64) -> anyhow::Result<flotilla_store::CodeHost> {
    Ok(store
        .create_code_host(
            &NewCodeHost {
                kind: CodeHostKind::GitUrls,
                name: name.to_owned(),
                url: String::new(),
                config: serde_json::json!({ "urls": [] }),
                credential_ciphertext: None,
                credential_nonce: None,
                credential_username: None,
                restricted_to: None,
            },
            now,
        )
        .await?)
}

fn tempfile_directory() -> anyhow::Result<std::path::PathBuf> {
    let directory = std::env::temp_dir().join(format!("flotilla-bench-{}-{}", std::process::id(), Clock::now_ms()));
    std::fs::create_dir_all(&directory).with_context(|| format!("creating {}", directory.display()))?;
    Ok(directory)
}

pub async fn resolution(arguments: BenchResolutionArgs) -> anyhow::Result<ExitCode> {
    let data = tempfile_directory()?;
    let config = ServerConfig::new("127.0.0.1:0".parse()?, data.clone(), flotilla_server::secrets_crypto::SecretKey::generate());
    let store = open_store(&config).await?;
    bootstrap(&store, None, None).await?;
    let admin = store.get_user_by_username("admin").await?.context("bootstrap created the admin")?;

    // Two template mirrors: one in ten repositories is a Go module.
    let templates = data.join("templates");
    let plain = make_template(&templates, "plain", &[("README.md", "# service\n"), ("src/main.rs", "fn main() {}\n")])?;
    let go = make_template(&templates, "go", &[("README.md", "# service\n"), ("go.mod", "module example.com/service\n"), ("cmd/main.go", "package main\n")])?;
    let now = Clock::now_ms();
    let code_host = empty_code_host(&store, "bench", now).await?;
    let setup = Instant::now();
    std::fs::create_dir_all(config.mirrors_dir())?;
    for index in 0..arguments.repositories {
        let repository = store
            .upsert_repository(
                &NewRepository {
                    code_host_id: code_host.id,
                    name: format!("bench/service-{index:05}"),
                    clone_url: String::new(),
                    default_branch: Some("main".into()),
                    archived: false,
                    fork: false,
                },
                now,
            )
            .await?;
        let (template, commit) = if index % 10 == 0 { &go } else { &plain };
        hard_link_tree(template, &flotilla_server::mirrors::mirror_path(&config, repository.id))?;
        store
            .update_repository_mirror_state(
                repository.id,
                &flotilla_store::MirrorStateUpdate {
                    mirror_state: flotilla_store::MirrorState::Ready,
                    head_commit: Some(commit.clone()),
                    default_branch: Some("main".into()),
                    last_error: None,
                    synced_at: Some(now),
                },
            )
            .await?;
    }
    eprintln!("{} mirrors ready in {:.1} s", arguments.repositories, setup.elapsed().as_secs_f64());

    let server = start(config, store.clone()).await?;
    let matching_names = arguments.repositories.min(1000);
    let queries = [
        ("repo:^bench/service-00", matching_names, "name-only query (repo:^bench/service-00)"),
        ("file:^go\\.mod$", arguments.repositories.div_ceil(10), "file query over every repository (file:^go\\.mod$)"),
    ];
    for (round, warmth) in ["cold", "warm"].iter().enumerate() {
        for (query, expected, label) in &queries {
            let spec_text = format!(
                "name: bench-resolution\non:\n  - repositoriesMatchingQuery: {query}\nsteps:\n  - run: \"true\"\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b-${{{{ repository.name }}}}\n  commit:\n    message: m\n"
            );
            let spec = flotilla_spec::parse_batch_spec(&spec_text).map_err(|_| anyhow::anyhow!("bench spec invalid"))?.spec;
            let started = Instant::now();
            let batch_spec = store
                .create_batch_spec(
                    &NewBatchSpec {
                        rand_id: format!("resolution{round}{}", query.len()),
                        namespace: Namespace::User(admin.id),
                        creator_user_id: admin.id,
                        name: "bench-resolution".into(),
                        raw_spec: spec_text.clone(),
                        parsed_spec: serde_json::to_value(&spec)?,
                        created_from_raw: true,
                        allow_unsupported: false,
                        allow_ignored: false,
                        no_cache: true,
                        batch_change_id: None,
                    },
                    Clock::now_ms(),
                )
                .await?;
            server.state.resolution_requested.notify_one();
            let mut first_job: Option<f64> = None;
            let finished = loop {
                if first_job.is_none() && store.count_workspaces(batch_spec.id).await? > 0 {
                    first_job = Some(started.elapsed().as_secs_f64());
                }
                let job = store.get_resolution_job(batch_spec.id).await?.context("the resolution job exists")?;
                match job.state {
                    flotilla_store::ResolutionState::Completed => break started.elapsed().as_secs_f64(),
                    flotilla_store::ResolutionState::Failed => anyhow::bail!("resolution failed: {}", job.failure_message.unwrap_or_default()),
                    _ => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
                }
            };
            let workspaces = store.count_workspaces(batch_spec.id).await?;
            anyhow::ensure!(workspaces == *expected as i64, "{label}: {workspaces} workspaces, expected {expected}");
            println!(
                "resolution ({warmth}), {label} over {} repositories: {workspaces} workspaces; first queued after {:.2} s, all after {finished:.2} s",
                arguments.repositories,
                first_job.unwrap_or(finished),
            );
        }
    }
    server.stop().await;
    let _ = std::fs::remove_dir_all(&data);
    Ok(ExitCode::SUCCESS)
}

/// A bare repository with one commit of `files`; returns its path and head commit.
pub(super) fn make_template(root: &std::path::Path, name: &str, files: &[(&str, &str)]) -> anyhow::Result<(std::path::PathBuf, String)> {
    let work = root.join(format!("{name}-work"));
    for (path, content) in files {
        let file = work.join(path);
        std::fs::create_dir_all(file.parent().context("a file has a folder")?)?;
        std::fs::write(&file, content)?;
    }
    let git = |directory: &std::path::Path, arguments: &[&str]| -> anyhow::Result<String> {
        let output = std::process::Command::new("git")
            .args(arguments)
            .current_dir(directory)
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .output()
            .with_context(|| format!("running git {arguments:?}"))?;
        anyhow::ensure!(output.status.success(), "git {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    git(&work, &["init", "-q", "-b", "main"])?;
    git(&work, &["add", "-A"])?;
    git(&work, &["-c", "user.name=Bench", "-c", "user.email=bench@example.com", "commit", "-q", "-m", "init"])?;
    let commit = git(&work, &["rev-parse", "HEAD"])?;
    let bare = root.join(format!("{name}.git"));
    git(root, &["clone", "-q", "--bare", work.to_str().context("UTF-8 path")?, bare.to_str().context("UTF-8 path")?])?;
    Ok((bare, commit))
}

/// Copies a folder as hard links (git objects never change, so mirrors can share them).
pub(super) fn hard_link_tree(from: &std::path::Path, to: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            hard_link_tree(&entry.path(), &target)?;
        } else {
            std::fs::hard_link(entry.path(), &target).with_context(|| format!("linking {}", target.display()))?;
        }
    }
    Ok(())
}
