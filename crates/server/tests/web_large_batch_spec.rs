//! The web interface's execution page of a 45,000-workspace batch spec loads only what it
//! shows: the shell, the batch spec's counts, one page of 50 workspaces (filtered in the
//! database), and one workspace's panel; never the whole list. The test prints how long each
//! took (the figures in BENCHMARKS.md; timings are not asserted, the machine is shared).

use std::time::Instant;

use flotilla_server::{ServerConfig, bootstrap, open_store, start};
use flotilla_store::{Clock, CodeHostKind, Namespace, NewBatchSpec, NewCodeHost, NewExecutionJob, NewRepository, NewWorkspace};

const WORKSPACES: usize = 45_000;
const ADMIN: &str = "flt_u_web_large_admin_token_00000000000000000000000000000000000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_execution_page_of_45000_workspaces_loads_one_page() {
    let data = tempfile::tempdir().expect("temp dir");
    let config = ServerConfig::new("127.0.0.1:0".parse().expect("address"), data.path().to_path_buf(), flotilla_server::secrets_crypto::SecretKey::generate());
    let store = open_store(&config).await.expect("store");
    bootstrap(&store, Some(ADMIN), None).await.expect("bootstrap");
    let admin = store.get_user_by_username("admin").await.expect("admin").expect("admin exists");
    let now = Clock::now_ms();
    let host = store
        .create_code_host(
            &NewCodeHost {
                kind: CodeHostKind::GitUrls,
                name: "large".into(),
                url: String::new(),
                config: serde_json::json!({ "urls": [] }),
                credential_ciphertext: None,
                credential_nonce: None,
                credential_username: None,
                restricted_to: None,
            },
            now,
        )
        .await
        .expect("code host");
    let mut repositories = Vec::new();
    for index in 0..100 {
        let name = format!("large/repo{index:03}");
        let new = NewRepository { code_host_id: host.id, name, clone_url: String::new(), default_branch: Some("main".into()), archived: false, fork: false };
        repositories.push(store.upsert_repository(&new, now).await.expect("repository"));
    }
    let spec_text = "name: large\non:\n  - repositoriesMatchingQuery: large\nsteps:\n  - run: \"true\"\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b-${{ steps.path }}\n  commit:\n    message: m\n";
    let spec = flotilla_spec::parse_batch_spec(spec_text).expect("valid spec").spec;
    let batch_spec = store
        .create_batch_spec(
            &NewBatchSpec {
                rand_id: "large45k".into(),
                namespace: Namespace::User(admin.id),
                creator_user_id: admin.id,
                name: "large".into(),
                raw_spec: spec_text.into(),
                parsed_spec: serde_json::to_value(&spec).expect("spec json"),
                // Not from raw: no resolution job, so the resolution worker leaves the
                // workspaces written here alone (a resolution starts by discarding what an
                // earlier attempt wrote).
                created_from_raw: false,
                allow_unsupported: false,
                allow_ignored: false,
                no_cache: true,
                batch_change_id: None,
            },
            now,
        )
        .await
        .expect("batch spec");
    let workspaces: Vec<NewWorkspace> = (0..WORKSPACES)
        .map(|index| NewWorkspace {
            batch_spec_id: batch_spec.id,
            repository_id: repositories[index % repositories.len()].id,
            branch: "main".into(),
            commit: "0".repeat(40),
            path: format!("project{index}"),
            file_matches: Vec::new(),
            only_fetch_workspace: false,
            ignored: false,
            unsupported: false,
            skipped: false,
            cached_result_found: false,
            step_cache_results: serde_json::json!({}),
        })
        .collect();
    let ids = store.insert_workspaces(&workspaces, now).await.expect("workspaces");
    let payload = serde_json::json!({ "id": 0, "token": "", "repository_name": "large/repo000", "commit": "0", "branch": "main", "git_path": "", "workspace_path": "", "only_fetch_workspace": false, "batch_change_name": "large", "batch_change_description": "", "search_result_paths": [], "steps": spec.steps, "skipped_steps": [], "cached_result": null, "secrets": {}, "redactions": [] });
    let jobs: Vec<NewExecutionJob> = ids
        .iter()
        .map(|workspace_id| NewExecutionJob { workspace_id: *workspace_id, batch_spec_id: batch_spec.id, user_id: admin.id, routing_key: String::new(), payload: payload.clone() })
        .collect();
    store.enqueue_execution_jobs(&jobs, now).await.expect("jobs");

    let server = start(config, store).await.expect("server");
    let url = format!("http://{}", server.address);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let fetch = |path: String| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let started = Instant::now();
            let response = http.get(format!("{url}{path}")).header("Authorization", format!("token {ADMIN}")).send().await.expect("request");
            assert!(response.status().is_success(), "{path}: {}", response.status());
            let body = response.text().await.expect("body");
            (started.elapsed(), body)
        }
    };
    // Warm up once (first connections, prepared statements), then measure what the page loads.
    fetch("/api/v1/batch-specs/large45k".into()).await;
    let opened = Instant::now();
    let (shell, _) = fetch("/batch-specs/large45k".into()).await;
    let (status, status_body) = fetch("/api/v1/batch-specs/large45k".into()).await;
    let (first_page, page_body) = fetch("/api/v1/batch-specs/large45k/workspaces?limit=50".into()).await;
    let (filtered, _) = fetch("/api/v1/batch-specs/large45k/workspaces?state=failed&limit=50".into()).await;
    let page: serde_json::Value = serde_json::from_str(&page_body).expect("page");
    let next = page["next"].as_i64().expect("a next page");
    let (second_page, _) = fetch(format!("/api/v1/batch-specs/large45k/workspaces?limit=50&after={next}")).await;
    let workspace = page["workspaces"][0]["id"].as_i64().expect("workspace id");
    let (panel, _) = fetch(format!("/api/v1/workspaces/{workspace}")).await;
    let total = opened.elapsed();
    println!(
        "45,000 workspaces: shell {shell:?}, status {status:?}, first page {first_page:?}, filtered page {filtered:?}, second page {second_page:?}, workspace panel {panel:?}; all {total:?}"
    );
    let status: serde_json::Value = serde_json::from_str(&status_body).expect("status");
    assert_eq!(status["workspaces"], WORKSPACES as i64);
    assert_eq!(status["jobs"]["queued"], WORKSPACES as i64);
    assert_eq!(page["workspaces"].as_array().map(Vec::len), Some(50), "one page, never the whole list");
    assert!(page_body.len() < 64 * 1024, "a page is small: {} bytes", page_body.len());
    server.stop().await;
}
