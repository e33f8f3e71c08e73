//! The Flotilla server: the HTTP API for users and executors, and the background workers.
//!
//! The server holds the code (mirrors of every repository), resolves batch specs into
//! workspaces, queues one job per workspace, hands jobs to executors over HTTP, serves them
//! the code, and turns their results into changeset specs. It never runs a user's steps
//! itself, so no batch change can take it down.
//!
//! Code map: [`api`] (user routes, token and session-cookie auth), [`access`] (who may read
//! and change what), [`accounts`] (users, orgs, password sign-in), [`audit`] (the audit log),
//! [`passwords`] (argon2), [`tokens`] and [`secrets`], [`executor_api`] (the executor queue and git
//! routes, executor and job tokens), [`mirrors`] (code hosts → mirrored repositories),
//! [`resolution`] (spec → workspaces → jobs), [`changeset_specs`] (results → changeset
//! specs), [`admission`] (mounted files and the image allow list), [`metrics`] (Prometheus),
//! [`apply`] (batch spec → batch change and its changesets), [`reconciler_plan`] (apply's
//! rewirer and the reconciler's plan, over data alone), [`reconciler`] (the worker that
//! pushes branches),
//! [`janitor`] (stalled jobs), [`leadership`] (the duties one server process leads for the
//! whole database), [`single_server`] (one server per SQLite database), [`secrets_crypto`]
//! (tokens and encryption at rest),
//! [`incoming_webhooks`] (forges' deliveries → immediate changeset syncs) with the pure
//! [`forge_webhooks`] (signatures and payloads per forge),
//! [`web_api`], [`templates`] and [`log_stream`] (what the web interface needs: listings,
//! validation as you type, the template library, live logs as server-sent events); the web
//! client itself is `flotilla-web`, served for every path no route matches.
//! Only this crate knows HTTP routing; only `flotilla-store` knows SQL.

pub mod access;
pub mod accounts;
pub mod admission;
pub mod api;
pub mod apply;
pub mod audit;
pub mod changeset_specs;
pub mod code_host_credentials;
pub mod error;
pub mod executor_api;
pub mod forge_webhooks;
pub mod forges;
pub mod incoming_webhooks;
pub mod janitor;
pub mod leadership;
pub mod log_stream;
pub mod metrics;
pub mod mirror_schedule;
pub mod mirrors;
pub mod reconciler;
pub mod reconciler_plan;
pub mod passwords;
pub mod report_redaction;
pub mod publication_choices;
pub mod resolution;
pub mod rollout;
pub mod secrets;
pub mod search_index;
pub mod secrets_crypto;
pub mod single_server;
pub mod statistics;
pub mod templates;
pub mod tokens;
pub mod web_api;
pub mod webhooks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use flotilla_store::{Clock, NewUser, Store, TokenScope};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::secrets_crypto::{SecretKey, TokenKind, generate_token, hash_token};

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Holds the SQLite database (unless `database_url` is set), the mirrors and the key.
    pub data_dir: PathBuf,
    /// `postgres://...` to use PostgreSQL; `None` for SQLite in the data directory.
    pub database_url: Option<String>,
    pub secret_key: SecretKey,
    /// Largest batch spec accepted, in bytes.
    pub max_spec_bytes: usize,
    /// How often mirrors are fetched in the background.
    pub mirror_interval: Duration,
    /// A job whose executor has not sent a heartbeat for this long is requeued.
    pub stalled_after: Duration,
    /// How many times a stalled job is requeued before it fails.
    pub max_resets: i64,
    /// Whole-job time limit sent to executors.
    pub job_timeout: Duration,
    /// Largest file a step may mount, in bytes (Sourcegraph: 10 MB).
    pub max_mount_file_bytes: usize,
    /// Largest total of mounted files per batch spec, in bytes.
    pub max_mount_total_bytes: usize,
    /// Container images steps may use (globs such as `alpine:*` or `registry.example.com/*`);
    /// empty allows every image.
    pub allowed_images: Vec<String>,
    /// Changesets reconciled at once (each is a few git commands and code host calls).
    pub reconciler_workers: usize,
    /// How often published pull requests are asked for their state (merged, reviews, checks).
    pub changeset_sync_interval: Duration,
    /// Where events (apply, close, publish, errors) are sent.
    pub webhooks: webhooks::WebhookConfig,
    /// When and how fast changesets reach the code hosts; `None` sends them at once (see
    /// `rollout`).
    pub rollout_windows: Option<Vec<rollout::RolloutWindow>>,
    /// Longest wait for one answer from a code host's API.
    pub code_host_request_timeout: Duration,
    /// Pause before a changeset whose code host failed is tried again (doubled each time).
    pub reconciler_retry_pause: Duration,
}

impl ServerConfig {
    pub fn new(listen: SocketAddr, data_dir: PathBuf, secret_key: SecretKey) -> ServerConfig {
        ServerConfig {
            listen,
            data_dir,
            database_url: None,
            secret_key,
            max_spec_bytes: flotilla_spec::MAX_SPEC_BYTES,
            mirror_interval: Duration::from_secs(60),
            stalled_after: Duration::from_secs(25),
            max_resets: 3,
            job_timeout: Duration::from_secs(3600),
            max_mount_file_bytes: 10 << 20,
            max_mount_total_bytes: 100 << 20,
            allowed_images: Vec::new(),
            webhooks: webhooks::WebhookConfig::default(),
            changeset_sync_interval: Duration::from_secs(60),
            reconciler_workers: 4,
            rollout_windows: None,
            code_host_request_timeout: Duration::from_secs(30),
            reconciler_retry_pause: Duration::from_secs(5),
        }
    }

    pub fn mirrors_dir(&self) -> PathBuf {
        self.data_dir.join("mirrors")
    }
}

/// Shared state of every request handler and worker.
pub struct AppState {
    pub store: Store,
    pub config: ServerConfig,
    /// Woken when jobs are queued, so idle dequeues can answer quickly.
    pub jobs_queued: Notify,
    /// Woken when a batch spec needs resolving.
    pub resolution_requested: Notify,
    /// Woken when an apply queued changesets for the reconciler.
    pub reconcile_requested: Notify,
    /// Wakes the rollout scheduler when changesets were scheduled.
    pub schedule_requested: Notify,
    /// Woken when a mirror sync is requested.
    pub sync_requested: Notify,
    /// When each mirror is next fetched by the periodic sync.
    pub mirror_schedule: mirror_schedule::SyncSchedule,
    /// One lock per repository, so a background sync and a requested one never clone or
    /// fetch the same mirror at once.
    pub mirror_locks: std::sync::Mutex<std::collections::HashMap<flotilla_store::RepositoryId, Arc<tokio::sync::Mutex<()>>>>,
    /// Executor tokens and routing keys dequeues reuse (see `executor_api`).
    pub dequeue_caches: executor_api::DequeueCaches,
    /// Forge adapters, one per code host connection (see `forges`).
    pub forges: forges::Forges,
    /// File listings of mirrored commits (see `resolution`).
    pub trees: resolution::TreeCache,
    /// File contents by blob id, for content queries (see `search_index`).
    pub blobs: search_index::BlobCache,
    /// Durations of the jobs this process saw finish (for `/metrics`).
    pub job_durations: metrics::JobDurations,
    /// When each executor was last recorded from a dequeue (see `executor_api`).
    pub executors_seen: std::sync::Mutex<std::collections::HashMap<String, i64>>,
    /// Log writes announced to live log streams (see `log_stream`).
    pub log_updates: log_stream::LogUpdates,
    /// Each running job's secrets, to redact its reports (see `report_redaction`).
    pub job_redactors: report_redaction::JobRedactors,
}

pub type SharedState = Arc<AppState>;

impl AppState {
    /// Where changesets an apply or a bulk publish touches go: the rollout schedule when
    /// windows are configured, else straight to the reconciler.
    pub fn reconciler_entry(&self) -> flotilla_store::ReconcilerEntry {
        if self.config.rollout_windows.is_some() { flotilla_store::ReconcilerEntry::Scheduled } else { flotilla_store::ReconcilerEntry::Queued }
    }

    /// Wakes whoever works on changesets just sent by [`AppState::reconciler_entry`].
    pub fn changesets_were_sent(&self) {
        self.reconcile_requested.notify_waiters();
        self.schedule_requested.notify_waiters();
    }

    /// Tells idle dequeues that jobs were queued (and forgets the cached routing keys).
    pub fn jobs_were_queued(&self) {
        self.dequeue_caches.jobs_queued();
        self.jobs_queued.notify_waiters();
    }
}

/// A started server: its address and a handle to stop it.
pub struct RunningServer {
    pub address: SocketAddr,
    pub state: SharedState,
    pub shutdown: CancellationToken,
    pub tasks: tokio::task::JoinSet<()>,
}

impl RunningServer {
    /// Stops serving and waits for the workers to finish.
    pub async fn stop(mut self) {
        self.state.log_updates.close();
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Opens the database named by the configuration (SQLite in the data directory by default)
/// and brings its schema up to date.
pub async fn open_store(config: &ServerConfig) -> anyhow::Result<Store> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}?mode=rwc", config.data_dir.join("flotilla.sqlite").display()),
    };
    if let Some(database) = sqlite_file(&url) {
        single_server::claim(&database)?;
    }
    let store = Store::open(&url).await.with_context(|| "opening the database (check --database-url)".to_owned())?;
    store.migrate().await.context("bringing the database schema up to date")?;
    Ok(store)
}

/// The database file of a SQLite URL (`sqlite://PATH?options` or a plain path); `None` for
/// PostgreSQL and for in-memory databases.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && !path.contains(":memory:")).then(|| PathBuf::from(path))
}

/// Starts the HTTP server and the background workers.
pub async fn start(config: ServerConfig, store: Store) -> anyhow::Result<RunningServer> {
    std::fs::create_dir_all(config.mirrors_dir())
        .with_context(|| format!("creating {}", config.mirrors_dir().display()))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {} (is another server running there? choose another with --listen)", config.listen))?;
    let address = listener.local_addr().context("reading the listening address")?;
    let mirror_schedule = mirror_schedule::SyncSchedule::new(config.mirror_interval);
    let state = Arc::new(AppState {
        store,
        config,
        jobs_queued: Notify::new(),
        resolution_requested: Notify::new(),
        sync_requested: Notify::new(),
        mirror_schedule,
        reconcile_requested: Notify::new(),
        schedule_requested: Notify::new(),
        job_durations: metrics::JobDurations::default(),
        trees: resolution::TreeCache::default(),
        blobs: search_index::BlobCache::default(),
        forges: forges::Forges::default(),
        dequeue_caches: executor_api::DequeueCaches::default(),
        mirror_locks: std::sync::Mutex::new(std::collections::HashMap::new()),
        executors_seen: std::sync::Mutex::new(std::collections::HashMap::new()),
        log_updates: log_stream::LogUpdates::default(),
        job_redactors: report_redaction::JobRedactors::default(),
    });
    let shutdown = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();

    let router = api::router(state.clone())
        .merge(accounts::router(state.clone()))
        .merge(audit::router(state.clone()))
        .merge(secrets::router(state.clone()))
        .merge(code_host_credentials::router(state.clone()))
        .merge(tokens::router(state.clone()))
        .merge(apply::router(state.clone()))
        .merge(statistics::router(state.clone()))
        .merge(incoming_webhooks::router(state.clone()))
        .merge(executor_api::router(state.clone()))
        .merge(web_api::router(state.clone()))
        .merge(templates::router(state.clone()))
        .merge(log_stream::router(state.clone()))
        // Last: the web interface answers every path no route above matches.
        .merge(flotilla_web::router())
        .layer(axum::middleware::map_response(error::json_refusals));
    let serve_shutdown = shutdown.clone();
    tasks.spawn(async move {
        let serving = axum::serve(listener, router).with_graceful_shutdown(async move { serve_shutdown.cancelled().await });
        if let Err(error) = serving.await {
            tracing::error!(error = %error, "the HTTP server stopped");
        }
    });
    tasks.spawn(mirrors::run_syncer(state.clone(), shutdown.clone()));
    tasks.spawn(resolution::run_worker(state.clone(), shutdown.clone()));
    for _ in 0..state.config.reconciler_workers.max(1) {
        tasks.spawn(reconciler::run_worker(state.clone(), shutdown.clone()));
    }
    tasks.spawn(reconciler::run_sync_worker(state.clone(), shutdown.clone()));
    tasks.spawn(rollout::run_scheduler(state.clone(), shutdown.clone()));
    tasks.spawn(janitor::run(state.clone(), shutdown.clone()));
    Ok(RunningServer { address, state, shutdown, tasks })
}

/// The first administrator and the credentials `flotilla up` prints.
pub struct Bootstrap {
    pub admin_username: String,
    /// Set when a token was created now (tokens are only stored hashed and cannot be shown again).
    pub admin_token: Option<String>,
    pub executor_token: Option<String>,
}

/// Creates the first site admin and an executor token if the database has no users yet, or
/// registers the tokens given on the command line.
///
/// Servers of one database may start at the same moment on a fresh database: one of them then
/// loses the race to create the administrator or a token (a unique key refuses its insert),
/// and simply looks again, finding what the other created.
pub async fn bootstrap(store: &Store, admin_token: Option<&str>, executor_token: Option<&str>) -> anyhow::Result<Bootstrap> {
    let mut attempt = 1;
    loop {
        match bootstrap_once(store, admin_token, executor_token).await {
            Err(error) if attempt < 3 => {
                tracing::warn!(%error, "setting up the first administrator and tokens failed (another server starting?); looking again");
                tokio::time::sleep(Duration::from_millis(250 * attempt)).await;
                attempt += 1;
            }
            outcome => return outcome,
        }
    }
}

async fn bootstrap_once(store: &Store, admin_token: Option<&str>, executor_token: Option<&str>) -> anyhow::Result<Bootstrap> {
    let now = Clock::now_ms();
    let existing = store.get_user_by_username("admin").await.context("looking up the administrator")?;
    let admin = match existing {
        Some(user) => user,
        None => store
            .create_user(
                &NewUser {
                    username: "admin".to_owned(),
                    display_name: "Administrator".to_owned(),
                    email: "admin@localhost".to_owned(),
                    password_hash: None,
                    site_admin: true,
                },
                now,
            )
            .await
            .context("creating the first administrator")?,
    };
    let mut created_admin_token = None;
    let wanted_admin_token = match admin_token {
        Some(token) => Some(token.to_owned()),
        None if store.list_access_tokens(admin.id).await?.is_empty() => {
            let token = generate_token(TokenKind::User);
            created_admin_token = Some(token.clone());
            Some(token)
        }
        None => None,
    };
    if let Some(token) = &wanted_admin_token
        && store.lookup_access_token(&hash_token(token), now).await?.is_none()
    {
        store.create_access_token(admin.id, &hash_token(token), TokenScope::SiteAdmin, "bootstrap", now).await?;
        created_admin_token = Some(token.clone());
    }
    let mut created_executor_token = None;
    let wanted_executor_token = match executor_token {
        Some(token) => Some(token.to_owned()),
        None if store.list_executor_tokens().await?.is_empty() => Some(generate_token(TokenKind::Executor)),
        None => None,
    };
    if let Some(token) = &wanted_executor_token
        && store.lookup_executor_token(&hash_token(token)).await?.is_none()
    {
        store.create_executor_token(&hash_token(token), "bootstrap", now).await?;
        created_executor_token = Some(token.clone());
    }
    Ok(Bootstrap { admin_username: admin.username, admin_token: created_admin_token, executor_token: created_executor_token })
}

/// Reads the server's secret key from the data directory, creating it on first start.
pub fn load_or_create_secret_key(data_dir: &Path) -> anyhow::Result<SecretKey> {
    let path = data_dir.join("secret.key");
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    match std::fs::read_to_string(&path) {
        Ok(text) => SecretKey::from_hex(&text).with_context(|| format!("reading the secret key {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let key = SecretKey::generate();
            // Written whole under a temporary name and linked into place, which fails if the
            // file appeared meanwhile: two servers starting on one new data folder then both
            // use the key that won, never half of one.
            let temporary = data_dir.join(format!(".secret.key.{}-{}", std::process::id(), hex::encode(secrets_crypto::random_bytes::<4>())));
            write_private_file(&temporary, key.to_hex().as_bytes())?;
            let linked = std::fs::hard_link(&temporary, &path);
            let _ = std::fs::remove_file(&temporary);
            match linked {
                Ok(()) => Ok(key),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                    let text = std::fs::read_to_string(&path).with_context(|| format!("reading the secret key {}", path.display()))?;
                    SecretKey::from_hex(&text).with_context(|| format!("reading the secret key {}", path.display()))
                }
                Err(error) => Err(error).with_context(|| format!("creating {}", path.display())),
            }
        }
        Err(error) => Err(error).with_context(|| format!("reading the secret key {}", path.display())),
    }
}

fn write_private_file(path: &Path, content: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
