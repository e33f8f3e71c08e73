//! Changesets published per minute: the real server's reconciler pushes N branches and opens N
//! pull requests on the emulated GitHub, first without a rate limit, then under one, where it
//! must keep to the limit without a single rejected request.
//!
//! Run: `cargo run --release -p flotilla-codehost-emulator --example publish_bench -- 1000`
//! (the number of changesets; spread over 50 repositories, 20 branches each at 1000).

use std::time::{Duration, Instant};

use flotilla_codehost_emulator::{DEFAULT_TOKEN, Emulator, EmulatorConfig, NewRepository, RateLimitConfig};
use flotilla_server::{ServerConfig, bootstrap, open_store, start};
use flotilla_store::{BatchSpecId, ChangesetSpecKind, Clock, CodeHostKind, Namespace, NewBatchSpec, NewChangesetSpec, NewCodeHost};

const ADMIN: &str = "flt_u_publish_bench_admin_token_000000000000000000000000000000";

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let changesets: usize = std::env::args().nth(1).map(|count| count.parse()).transpose()?.unwrap_or(1000);
    let repositories = changesets.div_ceil(20).clamp(1, 50);
    let _ = rustls::crypto::ring::default_provider().install_default();

    let unlimited = run(changesets, repositories, None).await?;
    println!(
        "publish, no rate limit: {changesets} changesets (push + pull request) over {repositories} repositories in {:.1} s = {:.0} changesets/min; {} API requests, {} rejected",
        unlimited.seconds,
        changesets as f64 / unlimited.seconds * 60.0,
        unlimited.requests,
        unlimited.rejections
    );

    // A limit scaled down so it binds within seconds: 60 requests per 10-second window.
    let limit = RateLimitConfig { limit: 60, period_secs: 10 };
    let limited_changesets = 150;
    let limited = run(limited_changesets, 5, Some(limit)).await?;
    // Windows are aligned to the clock, so a run of T seconds touches at most floor(T/period)
    // + 2 of them (a partial one at each end).
    let windows = (limited.seconds / limit.period_secs as f64).floor() as u64 + 2;
    println!(
        "publish under a limit of {} requests per {} s ({:.0}/hour): {limited_changesets} changesets in {:.1} s; {} API requests, at most {} allowed in the {windows} windows touched ({:.1}/s against {:.1}/s); {} rejected",
        limit.limit,
        limit.period_secs,
        limit.limit as f64 / limit.period_secs as f64 * 3600.0,
        limited.seconds,
        limited.requests,
        limit.limit * windows,
        limited.requests as f64 / limited.seconds,
        limit.limit as f64 / limit.period_secs as f64,
        limited.rejections
    );
    Ok(())
}

struct Outcome {
    seconds: f64,
    requests: u64,
    rejections: u64,
}

async fn run(changesets: usize, repositories: usize, limit: Option<RateLimitConfig>) -> anyhow::Result<Outcome> {
    let emulator = Emulator::start(EmulatorConfig::default()).await?;
    for index in 0..repositories {
        emulator.create_repository(NewRepository::new("acme", format!("service-{index:03}"))).await?;
    }

    let data = tempfile::tempdir()?;
    let mut config = ServerConfig::new("127.0.0.1:0".parse()?, data.path().to_path_buf(), flotilla_server::secrets_crypto::SecretKey::generate());
    config.changeset_sync_interval = Duration::from_secs(3600);
    let store = open_store(&config).await?;
    bootstrap(&store, Some(ADMIN), None).await?;
    let admin = store.get_user_by_username("admin").await?.ok_or_else(|| anyhow::anyhow!("no admin"))?;
    let credential = flotilla_server::code_host_credentials::encrypt(
        &config.secret_key,
        &flotilla_wire::api::SetCodeHostCredential { token: DEFAULT_TOKEN.to_owned(), username: None },
    );
    let now = Clock::now_ms();
    let host = store
        .create_code_host(
            &NewCodeHost {
                kind: CodeHostKind::Github,
                name: "github.com".into(),
                url: emulator.url().to_owned(),
                config: serde_json::json!({ "org": "acme" }),
                credential_ciphertext: Some(credential.ciphertext),
                credential_nonce: Some(credential.nonce),
                credential_username: None,
                restricted_to: None,
            },
            now,
        )
        .await?;
    let server = start(config, store.clone()).await?;
    let mirrored = flotilla_server::mirrors::sync_code_host(&server.state, &host, flotilla_server::mirrors::Which::All).await?;

    // One batch spec whose changeset specs each add a file on their own branch.
    let batch_spec = store
        .create_batch_spec(
            &NewBatchSpec {
                rand_id: "publishbench".into(),
                namespace: Namespace::User(admin.id),
                creator_user_id: admin.id,
                name: "publish-bench".into(),
                raw_spec: "name: publish-bench".into(),
                parsed_spec: serde_json::json!({ "name": "publish-bench", "description": "", "version": 1, "on": [], "steps": [], "workspaces": [], "importChangesets": [] }),
                created_from_raw: false,
                allow_unsupported: false,
                allow_ignored: false,
                no_cache: true,
                batch_change_id: None,
            },
            now,
        )
        .await?;
    let mut specs = Vec::with_capacity(changesets);
    for index in 0..changesets {
        let repository = store.get_repository(mirrored[index % mirrored.len()].id).await?;
        let head = repository.head_commit.clone().ok_or_else(|| anyhow::anyhow!("{} has no head", repository.name))?;
        let diff = format!("diff --git bench-{index}.txt bench-{index}.txt\nnew file mode 100644\n--- /dev/null\n+++ bench-{index}.txt\n@@ -0,0 +1 @@\n+changeset {index}\n");
        specs.push(new_spec(batch_spec.id, repository.id, &head, index, diff));
    }
    store.insert_changeset_specs(&specs, now).await?;

    let stats_before = emulator.stats();
    emulator.set_rate_limit(limit);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response = client
        .post(format!("http://{}/api/v1/batch-specs/publishbench/apply", server.address))
        .header("Authorization", format!("token {ADMIN}"))
        .json(&serde_json::json!({}))
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "apply failed: {}", response.text().await?);
    let batch_change = store.get_batch_change_by_name(Namespace::User(admin.id), "publish-bench").await?.ok_or_else(|| anyhow::anyhow!("no batch change"))?;
    loop {
        let listed = store.list_changesets_for_batch_change(batch_change.id, None, 100_000).await?;
        let failed: Vec<_> = listed.iter().filter(|changeset| changeset.reconciler_state == "failed").collect();
        anyhow::ensure!(failed.is_empty(), "{} changesets failed, e.g. {:?}", failed.len(), failed[0].failure_message);
        if listed.len() == changesets && listed.iter().all(|changeset| changeset.reconciler_state == "completed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    let stats = emulator.stats();
    let opened: usize = mirrored.iter().map(|repository| emulator.pull_request_count("acme", repository.name.trim_start_matches("github.com/acme/"))).sum();
    anyhow::ensure!(opened == changesets, "{opened} pull requests for {changesets} changesets");
    server.stop().await;
    Ok(Outcome { seconds, requests: stats.requests - stats_before.requests, rejections: stats.rate_limit_rejections - stats_before.rate_limit_rejections })
}

fn new_spec(batch_spec_id: BatchSpecId, repository_id: flotilla_store::RepositoryId, head: &str, index: usize, diff: String) -> NewChangesetSpec {
    NewChangesetSpec {
        rand_id: format!("bench{index}"),
        batch_spec_id,
        workspace_id: None,
        repository_id,
        kind: ChangesetSpecKind::Branch,
        external_id: None,
        base_ref: Some("refs/heads/main".into()),
        base_rev: Some(head.to_owned()),
        head_ref: Some(format!("refs/heads/bench/{index}")),
        title: Some(format!("Benchmark changeset {index}")),
        body: Some("Published by the publish benchmark".into()),
        published: Some(serde_json::Value::Bool(true)),
        diff: Some(diff.into_bytes()),
        commit_message: Some(format!("Benchmark change {index}")),
        author_name: Some("Bench".into()),
        author_email: Some("bench@example.com".into()),
        fork: None,
        diff_stat_added: 1,
        diff_stat_deleted: 0,
    }
}
