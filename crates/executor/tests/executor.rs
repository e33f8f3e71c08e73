//! The executor's job loop against a fake Flotilla server written here with axum: it hands
//! out jobs from a list, serves a fixture repository built by the test over real smart HTTP
//! (`flotilla_git::advertise_upload_pack`/`upload_pack`), and records every request body,
//! log entry, heartbeat, completion and failure. Steps run for real, with the process
//! runtime and with podman (an image built from busybox and tagged `alpine:3`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use flotilla_executor::runtime::{RuntimeKind, RuntimeSettings};
use flotilla_executor::{ExecutorConfig, ExecutorError, run_executor};
use flotilla_spec::{EnvironmentVariable, Output, OutputFormat, Step};
use flotilla_wire::executor::{
    HeartbeatRequest, HeartbeatResponse, Job, JobFailure, JobResult, LogEntryCreated, LogEntryStart, LogEntryUpdate, Redaction,
};
use tokio_util::sync::CancellationToken;

const EXECUTOR_TOKEN: &str = "executor-token-for-tests-0123456789";
const REPOSITORY: &str = "github.com/acme/app";

// ---------------------------------------------------------------------------------------
// The fake server.

#[derive(Debug)]
struct RecordedLogEntry {
    job_id: i64,
    key: String,
    command: Vec<String>,
    /// When the executor says the command started (its clock, milliseconds since the epoch).
    started_at_ms: i64,
    created: Instant,
    updates: Vec<(Instant, LogEntryUpdate)>,
}

#[derive(Default, Debug)]
struct ServerState {
    queue: VecDeque<Job>,
    /// Token of every job handed out, for the job routes and git.
    tokens: BTreeMap<i64, String>,
    log_entries: Vec<RecordedLogEntry>,
    completions: Vec<(i64, JobResult)>,
    failures: Vec<(i64, JobFailure)>,
    cancel_ids: BTreeSet<i64>,
    heartbeats: Vec<HeartbeatRequest>,
    /// Every request body received, as text, to check that no secret ever arrives.
    bodies: Vec<String>,
    repository: PathBuf,
}

type Shared = Arc<Mutex<ServerState>>;

fn lock(state: &Shared) -> std::sync::MutexGuard<'_, ServerState> {
    state.lock().expect("server state lock")
}

fn executor_authorized(headers: &HeaderMap) -> bool {
    headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) == Some(&format!("token-executor {EXECUTOR_TOKEN}"))
}

fn job_authorized(state: &ServerState, headers: &HeaderMap, job_id: Option<i64>) -> bool {
    let Some(token) = headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(|value| value.strip_prefix("Bearer "))
    else {
        return false;
    };
    match job_id {
        Some(id) => state.tokens.get(&id).is_some_and(|expected| expected == token),
        None => state.tokens.values().any(|expected| expected == token),
    }
}

fn record_body(state: &mut ServerState, body: &Bytes) {
    state.bodies.push(String::from_utf8_lossy(body).into_owned());
}

fn json_response<T: serde::Serialize>(value: &T) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(value).expect("serialize")).into_response()
}

async fn dequeue(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !executor_authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut state = lock(&state);
    record_body(&mut state, &body);
    match state.queue.pop_front() {
        Some(job) => {
            state.tokens.insert(job.id, job.token.clone());
            json_response(&job)
        }
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

async fn heartbeat(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if !executor_authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut state = lock(&state);
    record_body(&mut state, &body);
    let request: HeartbeatRequest = serde_json::from_slice(&body).expect("heartbeat body");
    let response = HeartbeatResponse {
        known_ids: request.job_ids.clone(),
        cancel_ids: request.job_ids.iter().copied().filter(|id| state.cancel_ids.contains(id)).collect(),
    };
    state.heartbeats.push(request);
    json_response(&response)
}

async fn start_log(State(state): State<Shared>, UrlPath(job_id): UrlPath<i64>, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = lock(&state);
    if !job_authorized(&state, &headers, Some(job_id)) {
        return StatusCode::NOT_FOUND.into_response();
    }
    record_body(&mut state, &body);
    let start: LogEntryStart = serde_json::from_slice(&body).expect("log entry body");
    // An entry may arrive whole (its command finished within a second): record its content
    // as the entry's first update, as the server stores it.
    let whole = (!start.output.is_empty() || start.exit_code.is_some())
        .then(|| (Instant::now(), LogEntryUpdate { output: start.output, exit_code: start.exit_code, duration_ms: start.duration_ms }));
    state.log_entries.push(RecordedLogEntry {
        job_id,
        key: start.key,
        command: start.command,
        started_at_ms: start.started_at_ms,
        created: Instant::now(),
        updates: whole.into_iter().collect(),
    });
    let index = i64::try_from(state.log_entries.len()).expect("small");
    json_response(&LogEntryCreated { index })
}

async fn update_log(State(state): State<Shared>, UrlPath((job_id, index)): UrlPath<(i64, usize)>, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = lock(&state);
    if !job_authorized(&state, &headers, Some(job_id)) {
        return StatusCode::NOT_FOUND.into_response();
    }
    record_body(&mut state, &body);
    let update: LogEntryUpdate = serde_json::from_slice(&body).expect("log update body");
    match state.log_entries.get_mut(index.wrapping_sub(1)) {
        Some(entry) if entry.job_id == job_id => {
            entry.updates.push((Instant::now(), update));
            StatusCode::NO_CONTENT.into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn complete(State(state): State<Shared>, UrlPath(job_id): UrlPath<i64>, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = lock(&state);
    if !job_authorized(&state, &headers, Some(job_id)) {
        return StatusCode::NOT_FOUND.into_response();
    }
    record_body(&mut state, &body);
    let result: JobResult = serde_json::from_slice(&body).expect("job result body");
    state.completions.push((job_id, result));
    StatusCode::NO_CONTENT.into_response()
}

async fn fail(State(state): State<Shared>, UrlPath(job_id): UrlPath<i64>, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = lock(&state);
    if !job_authorized(&state, &headers, Some(job_id)) {
        return StatusCode::NOT_FOUND.into_response();
    }
    record_body(&mut state, &body);
    let failure: JobFailure = serde_json::from_slice(&body).expect("job failure body");
    state.failures.push((job_id, failure));
    StatusCode::NO_CONTENT.into_response()
}

/// `GET .../info/refs?service=git-upload-pack` and `POST .../git-upload-pack` for the one
/// fixture repository, whatever the name.
async fn git(State(state): State<Shared>, UrlPath(rest): UrlPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let repository = {
        let state = lock(&state);
        if !job_authorized(&state, &headers, None) {
            return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")]).into_response();
        }
        state.repository.clone()
    };
    let protocol = headers.get("git-protocol").and_then(|value| value.to_str().ok());
    if rest.ends_with("/info/refs") {
        let advertisement = flotilla_git::advertise_upload_pack(&repository, protocol).await.expect("advertise refs");
        return (StatusCode::OK, [(header::CONTENT_TYPE, flotilla_git::smart_http::ADVERTISEMENT_CONTENT_TYPE)], advertisement).into_response();
    }
    if rest.ends_with("/git-upload-pack") {
        assert!(headers.get(header::CONTENT_ENCODING).is_none(), "the fake server does not decode gzip request bodies");
        let mut response = flotilla_git::upload_pack(&repository, std::io::Cursor::new(body.to_vec()), protocol).await.expect("upload-pack");
        let mut pack = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut response, &mut pack).await.expect("read the pack");
        return (StatusCode::OK, [(header::CONTENT_TYPE, flotilla_git::smart_http::RESULT_CONTENT_TYPE)], pack).into_response();
    }
    StatusCode::NOT_FOUND.into_response()
}

struct FakeServer {
    state: Shared,
    url: String,
    commit: String,
    _fixture: tempfile::TempDir,
}

impl FakeServer {
    async fn start() -> FakeServer {
        FakeServer::start_on("127.0.0.1:0").await
    }

    async fn start_on(address: &str) -> FakeServer {
        let fixture = tempfile::tempdir().expect("fixture dir");
        let commit = build_fixture_repository(fixture.path()).await;
        let state: Shared = Arc::new(Mutex::new(ServerState { repository: fixture.path().join(".git"), ..ServerState::default() }));
        let router = Router::new()
            .route("/.executors/queue/dequeue", post(dequeue))
            .route("/.executors/queue/heartbeat", post(heartbeat))
            .route("/.executors/jobs/{id}/log", post(start_log))
            .route("/.executors/jobs/{id}/log/{index}", patch(update_log))
            .route("/.executors/jobs/{id}/complete", post(complete))
            .route("/.executors/jobs/{id}/fail", post(fail))
            .route("/.executors/git/{*rest}", get(git).post(git))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(address).await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, router).await.expect("serve") });
        FakeServer { state, url, commit, _fixture: fixture }
    }

    fn push_job(&self, job: Job) {
        lock(&self.state).queue.push_back(job);
    }

    /// Waits until `check` finds something in the state, failing after `timeout`.
    async fn wait_for<T>(&self, timeout: Duration, what: &str, check: impl Fn(&ServerState) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = check(&lock(&self.state)) {
                return found;
            }
            if Instant::now() > deadline {
                let state = lock(&self.state);
                panic!(
                    "timed out waiting for {what}; completions {:?}, failures {:?}, log entries {:#?}",
                    state.completions, state.failures, state.log_entries
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_for_outcome(&self, job_id: i64) -> Result<JobResult, JobFailure> {
        self.wait_for(Duration::from_secs(60), &format!("job {job_id} to end"), |state| {
            if let Some((_, result)) = state.completions.iter().find(|(id, _)| *id == job_id) {
                return Some(Ok(result.clone()));
            }
            state.failures.iter().find(|(id, _)| *id == job_id).map(|(_, failure)| Err(failure.clone()))
        })
        .await
    }

    fn log_keys(&self, job_id: i64) -> Vec<String> {
        lock(&self.state).log_entries.iter().filter(|entry| entry.job_id == job_id).map(|entry| entry.key.clone()).collect()
    }

    /// The final output of a job's log entry.
    fn log_output(&self, job_id: i64, key: &str) -> String {
        let state = lock(&self.state);
        let entry = state.log_entries.iter().find(|entry| entry.job_id == job_id && entry.key == key).expect("log entry exists");
        entry.updates.last().map(|(_, update)| update.output.clone()).unwrap_or_default()
    }
}

async fn git_command(directory: &Path, arguments: &[&str]) -> String {
    let output = tokio::process::Command::new("git")
        .args(arguments)
        .current_dir(directory)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Fixture")
        .env("GIT_AUTHOR_EMAIL", "fixture@example.com")
        .env("GIT_COMMITTER_NAME", "Fixture")
        .env("GIT_COMMITTER_EMAIL", "fixture@example.com")
        .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
        .output()
        .await
        .expect("run git");
    assert!(output.status.success(), "git {arguments:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// A repository with a README and a sub-folder, committed with frozen dates.
async fn build_fixture_repository(directory: &Path) -> String {
    git_command(directory, &["init", "--quiet", "--initial-branch=main"]).await;
    std::fs::write(directory.join("README.md"), "# app\n").expect("write README");
    std::fs::create_dir_all(directory.join("src")).expect("create src");
    std::fs::write(directory.join("src/main.txt"), "main\n").expect("write src/main.txt");
    git_command(directory, &["add", "--all"]).await;
    git_command(directory, &["commit", "--quiet", "-m", "initial"]).await;
    git_command(directory, &["rev-parse", "HEAD"]).await
}

// ---------------------------------------------------------------------------------------
// Executors, jobs and steps.

struct RunningExecutor {
    shutdown: CancellationToken,
    handle: tokio::task::JoinHandle<Result<(), ExecutorError>>,
    work_directory: tempfile::TempDir,
}

impl RunningExecutor {
    fn start(server: &FakeServer, runtime: RuntimeKind) -> RunningExecutor {
        RunningExecutor::start_for_url(&server.url, runtime)
    }

    fn start_for_url(url: &str, runtime: RuntimeKind) -> RunningExecutor {
        RunningExecutor::start_configured(url, runtime, |_| {})
    }

    /// Starts an executor whose configuration `configure` adjusts (limits, network policy).
    fn start_configured(url: &str, runtime: RuntimeKind, configure: impl FnOnce(&mut ExecutorConfig)) -> RunningExecutor {
        let work_directory = tempfile::tempdir().expect("work directory");
        let mut config = ExecutorConfig::new(url, EXECUTOR_TOKEN, runtime, work_directory.path());
        config.concurrency = 2;
        config.poll_interval = Duration::from_millis(100);
        configure(&mut config);
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(run_executor(config, shutdown.clone()));
        RunningExecutor { shutdown, handle, work_directory }
    }

    /// Job folders left in the work directory (there must be none once jobs ended).
    fn job_folders(&self) -> Vec<String> {
        match std::fs::read_dir(self.work_directory.path().join("jobs")) {
            Ok(entries) => entries.filter_map(Result::ok).map(|entry| entry.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        let result = tokio::time::timeout(Duration::from_secs(30), self.handle).await.expect("executor stops").expect("executor task");
        result.expect("executor ran without error");
    }
}

fn job(server: &FakeServer, id: i64, steps: Vec<Step>) -> Job {
    Job {
        id,
        token: format!("job-token-{id}-abcdefghijklmnop"),
        repository_name: REPOSITORY.to_owned(),
        commit: server.commit.clone(),
        branch: "main".to_owned(),
        git_path: format!("/.executors/git/{REPOSITORY}"),
        workspace_path: String::new(),
        only_fetch_workspace: false,
        batch_change_name: "hello-world".to_owned(),
        batch_change_description: "Says hello".to_owned(),
        search_result_paths: vec!["README.md".to_owned()],
        steps,
        skipped_steps: Vec::new(),
        cached_result: None,
        secrets: BTreeMap::new(),
        redactions: Vec::new(),
        mount_files: Vec::new(),
        allowed_images: Vec::new(),
        timeout_seconds: 600,
    }
}

fn step(run: &str) -> Step {
    Step {
        run: run.to_owned(),
        container: "alpine:3".to_owned(),
        env: Vec::new(),
        files: Vec::new(),
        outputs: Vec::new(),
        if_condition: String::new(),
        mount: Vec::new(),
        network: false,
    }
}

fn output(value: &str, format: OutputFormat) -> Output {
    Output { value: value.to_owned(), format }
}

/// Podman settings, or `None` (with a notice) when podman is missing and the environment
/// does not demand every tool; CI sets FLOTILLA_REQUIRE_ALL_TOOLS=1 so it fails instead.
async fn podman_available() -> bool {
    match RuntimeSettings::detect(RuntimeKind::Podman, "flotilla-executor-test").await {
        Ok(_) => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image");
            let output = tokio::process::Command::new("bash").arg(&script).output().await.expect("run build-test-image");
            assert!(output.status.success(), "building the test image failed: {}", String::from_utf8_lossy(&output.stderr));
            true
        }
        Err(problem) if std::env::var_os("FLOTILLA_REQUIRE_ALL_TOOLS").is_none() => {
            eprintln!("NOTICE: podman unavailable, podman executor tests not run: {problem}");
            false
        }
        Err(problem) => panic!("podman is required (FLOTILLA_REQUIRE_ALL_TOOLS is set): {problem}"),
    }
}

// ---------------------------------------------------------------------------------------
// Tests.

/// Three steps: the first changes files and sets YAML, JSON and text outputs; the second's
/// `if:` is false; the third uses `previous_step.stdout`, the outputs and `steps.added_files`.
fn three_step_job(server: &FakeServer, id: i64) -> Job {
    let mut first = step("echo \"hello from ${{ batch_change.name }}\" > hello.txt\necho changed >> README.md\nprintf 'name: app\\ncount: 3\\n'\n");
    first.outputs = vec![
        ("info".to_owned(), output("${{ step.stdout }}", OutputFormat::Yaml)),
        ("numbers".to_owned(), output("{\"n\": 3}", OutputFormat::Json)),
        ("added".to_owned(), output("${{ step.added_files }}", OutputFormat::Text)),
    ];
    let mut second = step("echo should-not-run > skipped.txt");
    second.if_condition = "${{ eq outputs.info.name \"other\" }}".to_owned();
    let third = step(concat!(
        "echo \"${{ previous_step.stdout }}\" | head -n 1 > previous.txt\n",
        "echo \"count=${{ outputs.info.count }} n=${{ outputs.numbers.n }}\" > outputs.txt\n",
        "echo \"${{ steps.added_files }} ${{ repository.search_result_paths }}\" > changes.txt\n",
    ));
    job(server, id, vec![first, second, third])
}

async fn check_three_step_job(runtime: RuntimeKind) {
    let server = FakeServer::start().await;
    server.push_job(three_step_job(&server, 1));
    let executor = RunningExecutor::start(&server, runtime);
    let started = Instant::now();
    let result = server.wait_for_outcome(1).await.expect("the job completes");
    eprintln!("{} runtime: three-step job took {:?}", runtime.name(), started.elapsed());

    let final_result = &result.final_result;
    assert_eq!(final_result.step_index, 2);
    assert!(!final_result.skipped);
    assert_eq!(final_result.changed_files.modified, vec!["README.md"]);
    assert_eq!(final_result.changed_files.added, vec!["changes.txt", "hello.txt", "outputs.txt", "previous.txt"]);
    let diff = String::from_utf8(final_result.diff()).expect("text diff");
    assert!(diff.contains("+++ hello.txt\n@@ -0,0 +1 @@\n+hello from hello-world\n"), "{diff}");
    assert!(diff.contains("+++ previous.txt\n@@ -0,0 +1 @@\n+name: app\n"), "{diff}");
    assert!(diff.contains("+count=3 n=3\n"), "{diff}");
    assert!(diff.contains("+[hello.txt] README.md\n"), "{diff}");
    assert!(diff.contains("+changed\n") && !diff.contains("skipped.txt"), "{diff}");
    assert_eq!(final_result.outputs.get("info"), Some(&serde_json::json!({"name": "app", "count": 3})));
    assert_eq!(final_result.outputs.get("numbers").map(ToString::to_string).as_deref(), Some("{\"n\":3.0}"));
    assert_eq!(final_result.outputs.get("added"), Some(&serde_json::json!("[hello.txt]")));

    let keys: Vec<&str> = result.cache_entries.iter().map(|entry| entry.key.as_str()).collect();
    assert_eq!(keys.len(), 3, "{keys:?}");
    for (index, key) in keys.iter().enumerate() {
        assert!(key.ends_with(&format!("-step-{index}")) && key.len() == 22 + "-step-0".len(), "{key}");
    }
    let first = &result.cache_entries[0].value;
    assert_eq!(first.changed_files.added, vec!["hello.txt"]);
    assert_eq!(first.stdout, "name: app\ncount: 3\n");
    let skipped = &result.cache_entries[1].value;
    assert!(skipped.skipped && skipped.diff() == first.diff() && skipped.outputs == first.outputs, "{skipped:?}");
    assert_eq!(result.cache_entries[2].value, *final_result);

    assert_eq!(server.log_keys(1), vec!["setup.fetch", "step.0", "step.1", "step.2"]);
    assert!(server.log_output(1, "step.0").contains("stdout: name: app\n"));
    assert!(server.log_output(1, "step.1").contains("skipped"));
    {
        let state = lock(&server.state);
        let step_entry = state.log_entries.iter().find(|entry| entry.key == "step.2").expect("step.2 logged");
        assert!(step_entry.command[0].starts_with("echo \"name: app\ncount: 3\n\" | head -n 1"), "rendered command: {:?}", step_entry.command);
        assert_eq!(step_entry.updates.last().map(|(_, update)| update.exit_code), Some(Some(0)));
        assert!(!state.heartbeats.is_empty(), "the executor heartbeats");
    }
    assert!(executor.job_folders().is_empty(), "job folders are removed: {:?}", executor.job_folders());
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_runtime_runs_steps_with_outputs_conditions_diffs_and_cache_entries() {
    check_three_step_job(RuntimeKind::Process).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_runtime_runs_the_same_job_in_containers() {
    if !podman_available().await {
        return;
    }
    check_three_step_job(RuntimeKind::Podman).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_step_fails_the_job_with_exit_code_stderr_tail_and_earlier_cache_entries() {
    let server = FakeServer::start().await;
    let failing = step("echo partial > partial.txt\nfor i in $(seq 1 30); do echo \"err line $i\" >&2; done\nexit 3\n");
    server.push_job(job(&server, 7, vec![step("echo ok > ok.txt"), failing]));
    let executor = RunningExecutor::start(&server, RuntimeKind::Process);
    let failure = server.wait_for_outcome(7).await.expect_err("the job fails");
    assert!(!failure.infrastructure, "a failing step is final");
    assert!(failure.message.starts_with("step 2 (run in alpine:3) exited with code 3\n"), "{}", failure.message);
    assert!(failure.message.contains("run: echo partial > partial.txt"), "{}", failure.message);
    assert!(failure.message.contains("  err line 30\n") && failure.message.contains("  err line 11\n"), "{}", failure.message);
    assert!(!failure.message.contains("err line 10\n"), "only the last 20 lines: {}", failure.message);
    assert_eq!(failure.cache_entries.len(), 1);
    assert!(failure.cache_entries[0].key.ends_with("-step-0"));
    assert_eq!(failure.cache_entries[0].value.changed_files.added, vec!["ok.txt"]);
    {
        let state = lock(&server.state);
        let entry = state.log_entries.iter().find(|entry| entry.key == "step.1").expect("step.1 logged");
        assert_eq!(entry.updates.last().map(|(_, update)| update.exit_code), Some(Some(3)));
    }
    assert!(executor.job_folders().is_empty(), "job folders are removed: {:?}", executor.job_folders());
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_over_the_memory_limit_fails_saying_it_ran_out_of_memory() {
    if !podman_available().await {
        return;
    }
    let server = FakeServer::start().await;
    // busybox dd allocates its whole block: 256 MiB against a 64 MiB limit without swap.
    server.push_job(job(&server, 21, vec![step("echo allocating\ndd if=/dev/zero of=/dev/null bs=256M count=1\n")]));
    let executor = RunningExecutor::start_configured(&server.url, RuntimeKind::Podman, |config| config.memory_bytes = Some(64 << 20));
    let failure = server.wait_for_outcome(21).await.expect_err("the job fails");
    assert!(!failure.infrastructure, "the step's own fault: {failure:?}");
    assert!(
        failure.message.starts_with("step 1 (run in alpine:3) exited with code 137: it was killed with SIGKILL, most likely because it ran out of memory: each step container may use at most 64 MiB on this executor"),
        "{}",
        failure.message
    );
    assert!(failure.message.contains("--memory"), "{}", failure.message);
    assert!(server.log_output(21, "step.0").contains("stdout: allocating"));
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_bomb_is_stopped_by_the_pids_limit_and_the_step_fails_saying_so() {
    if !podman_available().await {
        return;
    }
    let server = FakeServer::start().await;
    // Starts up to 5,000 processes that stay alive; the limit of 64 stops it long before.
    let bomb = "i=0\nwhile [ $i -lt 5000 ]; do sleep 120 & i=$((i + 1)); done\necho all-started\n";
    server.push_job(job(&server, 22, vec![step(bomb)]));
    let started = Instant::now();
    let executor = RunningExecutor::start_configured(&server.url, RuntimeKind::Podman, |config| config.pids_limit = Some(64));
    let failure = server.wait_for_outcome(22).await.expect_err("the job fails");
    assert!(
        failure.message.contains("it could not start more processes: each step container may run at most 64 processes and threads on this executor"),
        "{}",
        failure.message
    );
    assert!(!server.log_output(22, "step.0").contains("all-started"));
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
    // The host is fine: none of the bomb's processes outlived its container.
    let survivors: Vec<String> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(Result::ok)
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .map(|command| String::from_utf8_lossy(&command).replace('\0', " "))
        .filter(|command| command.trim_end() == "sleep 120")
        .collect();
    assert!(survivors.is_empty(), "{} of the bomb's processes are left on the host", survivors.len());
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_asking_for_a_network_fails_on_an_executor_that_gives_none() {
    let server = FakeServer::start().await;
    let mut online = step("echo should-not-run > ran.txt");
    online.network = true;
    server.push_job(job(&server, 23, vec![online]));
    let executor = RunningExecutor::start_configured(&server.url, RuntimeKind::Process, |config| config.step_network = flotilla_executor::StepNetwork::Never);
    let failure = server.wait_for_outcome(23).await.expect_err("the job fails");
    assert!(failure.message.starts_with("step 1 cannot run on this executor: it asks for a network (`network: true`)"), "{}", failure.message);
    assert!(failure.message.contains("--step-network never"), "{}", failure.message);
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_reach_the_step_but_the_server_only_sees_their_placeholders() {
    let server = FakeServer::start().await;
    let secret = "hunter2-very-secret-value";
    let mut leaking = step("echo \"token=$API_TOKEN greeting=$GREETING\"\necho \"stderr $API_TOKEN\" >&2\n");
    leaking.env = vec![
        EnvironmentVariable { name: "API_TOKEN".to_owned(), value: None },
        EnvironmentVariable { name: "GREETING".to_owned(), value: Some("hi ${{ repository.name }}".to_owned()) },
    ];
    leaking.outputs = vec![("echoed".to_owned(), output("${{ step.stdout }}", OutputFormat::Text))];
    // The second step prints the secret into the failure message's stderr tail, and has it
    // in its rendered command.
    let failing = step(&format!("echo \"again {secret}\" >&2\nexit 1\n"));
    let mut secret_job = job(&server, 3, vec![leaking, failing]);
    secret_job.secrets = BTreeMap::from([("API_TOKEN".to_owned(), secret.to_owned())]);
    secret_job.redactions = vec![Redaction { value: secret.to_owned(), replacement: "${{ secrets.API_TOKEN }}".to_owned() }];
    server.push_job(secret_job);
    let executor = RunningExecutor::start(&server, RuntimeKind::Process);
    let failure = server.wait_for_outcome(3).await.expect_err("the second step fails");
    assert!(failure.message.contains("again ${{ secrets.API_TOKEN }}"), "{}", failure.message);
    let first = &failure.cache_entries[0].value;
    assert_eq!(first.stdout, format!("token=${{{{ secrets.API_TOKEN }}}} greeting=hi {REPOSITORY}\n"));
    assert_eq!(first.stderr, "stderr ${{ secrets.API_TOKEN }}\n");
    assert_eq!(first.outputs.get("echoed"), Some(&serde_json::json!(format!("token=${{{{ secrets.API_TOKEN }}}} greeting=hi {REPOSITORY}\n"))));
    {
        let state = lock(&server.state);
        assert!(state.bodies.len() > 5);
        for body in &state.bodies {
            assert!(!body.contains(secret), "a request body contains the secret: {body}");
        }
        let command = &state.log_entries.iter().find(|entry| entry.key == "step.1").expect("step.1 logged").command;
        assert_eq!(command, &vec!["echo \"again ${{ secrets.API_TOKEN }}\" >&2\nexit 1\n".to_owned()]);
        assert!(state.log_entries.iter().any(|entry| entry.updates.iter().any(|(_, update)| update.output.contains("token=${{ secrets.API_TOKEN }}"))));
    }
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_printed_line_reaches_the_server_while_the_step_still_runs() {
    let server = FakeServer::start().await;
    server.push_job(job(&server, 4, vec![step("echo hello-stream\nsleep 3\necho done\n")]));
    let executor = RunningExecutor::start(&server, RuntimeKind::Process);
    let (created, started_at_ms) = server
        .wait_for(Duration::from_secs(30), "the streamed line", |state| {
            let entry = state.log_entries.iter().find(|entry| entry.job_id == 4 && entry.key == "step.0")?;
            let (_, update) = entry.updates.iter().find(|(_, update)| update.output.contains("hello-stream"))?;
            assert_eq!(update.exit_code, None, "the line must arrive before the step ends");
            Some((entry.created, entry.started_at_ms))
        })
        .await;
    // The behaviour is asserted above (the line arrives while the step runs); the latency is
    // a measurement for BENCHMARKS.md, not an assertion.
    let now_ms = i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis()).expect("ms");
    eprintln!("a line printed as the step started reached the server at most {} ms after the step started", now_ms - started_at_ms);
    server.wait_for_outcome(4).await.expect("the job completes");
    {
        let state = lock(&server.state);
        let entry = state.log_entries.iter().find(|entry| entry.job_id == 4 && entry.key == "step.0").expect("step.0 logged");
        let (finished, last) = entry.updates.last().expect("final update");
        assert_eq!(last.exit_code, Some(0));
        assert!(last.output.contains("stdout: hello-stream\nstdout: done\n"), "{}", last.output);
        assert!(last.duration_ms.is_some_and(|duration| duration >= 3000), "{last:?}");
        assert!(*finished - created >= Duration::from_millis(1500), "the entry existed on the server while the step ran");
    }
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_shorter_than_a_second_is_logged_in_one_request() {
    let server = FakeServer::start().await;
    server.push_job(job(&server, 5, vec![step("echo quick\n")]));
    let executor = RunningExecutor::start(&server, RuntimeKind::Process);
    server.wait_for_outcome(5).await.expect("the job completes");
    {
        let state = lock(&server.state);
        let entries: Vec<&RecordedLogEntry> = state.log_entries.iter().filter(|entry| entry.job_id == 5).collect();
        assert!(entries.iter().any(|entry| entry.key == "setup.fetch") && entries.iter().any(|entry| entry.key == "step.0"), "{entries:#?}");
        for entry in entries {
            // Created whole: the start carried the output and the exit code, and no update followed.
            assert_eq!(entry.updates.len(), 1, "{entry:#?}");
            let (_, update) = &entry.updates[0];
            assert_eq!(update.exit_code, Some(0), "{entry:#?}");
            assert!(update.duration_ms.is_some(), "{entry:#?}");
        }
        let step = state.log_entries.iter().find(|entry| entry.job_id == 5 && entry.key == "step.0").expect("step.0");
        assert!(step.updates[0].1.output.contains("stdout: quick\n"), "{step:#?}");
    }
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_canceled_through_the_heartbeat_stops_and_reports_canceled() {
    let server = FakeServer::start().await;
    server.push_job(job(&server, 5, vec![step("echo started\nsleep 60\necho never > never.txt\n")]));
    let executor = RunningExecutor::start(&server, RuntimeKind::Process);
    server
        .wait_for(Duration::from_secs(30), "the step to start", |state| {
            state.log_entries.iter().any(|entry| entry.job_id == 5 && entry.updates.iter().any(|(_, update)| update.output.contains("started"))).then_some(())
        })
        .await;
    let canceled_at = Instant::now();
    lock(&server.state).cancel_ids.insert(5);
    let failure = server.wait_for_outcome(5).await.expect_err("the job is canceled");
    let took = canceled_at.elapsed();
    assert_eq!(failure.message, "canceled");
    assert!(!failure.infrastructure);
    assert!(took < Duration::from_secs(10), "cancel took {took:?} (heartbeats every 5 s)");
    assert!(executor.job_folders().is_empty(), "job folders are removed: {:?}", executor.job_folders());
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_result_is_applied_and_execution_resumes_after_it() {
    let server = FakeServer::start().await;
    let mut first = step("echo cached > cached.txt\necho first-stdout\n");
    first.outputs = vec![("word".to_owned(), output("from-cache", OutputFormat::Text))];
    server.push_job(job(&server, 10, vec![first.clone()]));
    let executor = RunningExecutor::start(&server, RuntimeKind::Process);
    let first_run = server.wait_for_outcome(10).await.expect("the first job completes");
    let cached = first_run.cache_entries[0].clone();

    let second = step("cat cached.txt > seen.txt\necho \"${{ outputs.word }}\" >> seen.txt\necho \"${{ previous_step.stdout }}\" >> seen.txt\n");
    let mut resumed = job(&server, 11, vec![first, second]);
    resumed.cached_result = Some(cached.value.clone());
    server.push_job(resumed);
    let result = server.wait_for_outcome(11).await.expect("the resumed job completes");
    assert_eq!(server.log_keys(11), vec!["setup.fetch", "step.1"], "step 1 is not run again");
    assert!(server.log_output(11, "setup.fetch").contains("applied the cached result of step 1"));
    assert_eq!(result.cache_entries.len(), 1);
    assert!(result.cache_entries[0].key.ends_with("-step-1"));
    assert_eq!(result.final_result.changed_files.added, vec!["cached.txt", "seen.txt"]);
    assert_eq!(result.final_result.outputs.get("word"), Some(&serde_json::json!("from-cache")));
    let diff = String::from_utf8(result.final_result.diff()).expect("text diff");
    assert!(diff.contains("+++ seen.txt\n@@ -0,0 +1,4 @@\n+cached\n+from-cache\n+first-stdout\n"), "{diff}");
    executor.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executor_keeps_polling_until_the_server_comes_up() {
    // Reserve a free port, release it, and start the server there only after the executor.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let executor = RunningExecutor::start_for_url(&format!("http://{address}"), RuntimeKind::Process);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = FakeServer::start_on(&address.to_string()).await;
    server.push_job(job(&server, 20, vec![step("echo late > late.txt")]));
    let result = server.wait_for_outcome(20).await.expect("the job completes once the server is up");
    assert_eq!(result.final_result.changed_files.added, vec!["late.txt"]);
    executor.stop().await;
}

/// Not an assertion: prints how long a one-step job takes from dequeue to report, per runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_workspace_overhead_is_printed() {
    let mut runtimes = vec![RuntimeKind::Process];
    if podman_available().await {
        runtimes.push(RuntimeKind::Podman);
    }
    for runtime in runtimes {
        let server = FakeServer::start().await;
        let executor = RunningExecutor::start(&server, runtime);
        // The first job warms the repository cache; the others measure a cached fetch.
        for id in 1..=4 {
            server.push_job(job(&server, id, vec![step("true")]));
            let started = Instant::now();
            server.wait_for_outcome(id).await.expect("the job completes");
            eprintln!("{}: job {id} with one `true` step took {:?}", runtime.name(), started.elapsed());
        }
        executor.stop().await;
    }
}
