//! The executor's main loop: clean up after a previous run, then poll the server for jobs
//! (up to `concurrency` at once), heartbeat the running ones, and stop cleanly on shutdown.
//!
//! The executor is stateless: everything it needs for a job comes with the job, and
//! everything it produces goes back to the server. Its work directory holds only the
//! repository cache (kept across runs) and the folders of running jobs (removed when each job
//! ends, and all at start-up, after a crash).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_git::WorkspaceCache;
use flotilla_wire::executor::{DequeueRequest, ExecutorDescription, HeartbeatRequest};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, ExecutorClient};
use crate::job::{JobControl, JobEnvironment, StopReason, run_job};
use crate::runtime::{ContainerLimits, RuntimeError, RuntimeKind, RuntimeSettings, StepNetwork, docker_architecture, remove_leftover_containers};

/// How often running jobs are heartbeated (Sourcegraph: 5 s; the server resets jobs whose
/// heartbeat is older than 25 s).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How often an idle executor heartbeats, so the server lists it as alive.
pub const IDLE_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
/// The longest wait between dequeue attempts while the server is unreachable.
const MAXIMUM_ERROR_BACKOFF: Duration = Duration::from_secs(30);

/// Everything an executor process is configured with.
#[derive(Clone, Debug)]
pub struct ExecutorConfig {
    /// The Flotilla server, e.g. `http://127.0.0.1:7080`.
    pub server_url: String,
    /// The shared executor token (`Authorization: token-executor <token>`).
    pub executor_token: String,
    /// Unique per executor process; see [`default_executor_name`].
    pub name: String,
    /// How many jobs run at once.
    pub concurrency: usize,
    pub runtime: RuntimeKind,
    /// Free-form labels sent with every dequeue.
    pub labels: BTreeMap<String, String>,
    /// Holds `cache/` (repository caches, kept) and `jobs/` (per-job folders, removed).
    pub work_directory: PathBuf,
    /// The longest a job may run (jobs may ask for less).
    pub job_timeout: Duration,
    /// CPU limit per step container; `None` for the default ([`ContainerLimits::defaults`]),
    /// 0 for none.
    pub cpus: Option<f64>,
    /// Memory limit per step container, in bytes; `None` for the default, 0 for none.
    pub memory_bytes: Option<u64>,
    /// Most processes per step container; `None` for the default (4,096), 0 for none.
    pub pids_limit: Option<u64>,
    /// Which steps get a network (default: those that ask with `network: true`).
    pub step_network: StepNetwork,
    /// How long to wait before asking again when there was nothing to do.
    pub poll_interval: Duration,
    /// No job is taken while the work folder's disk has less free space than this.
    pub min_free_disk_bytes: u64,
}

impl ExecutorConfig {
    /// A configuration with Sourcegraph's defaults (one job at a time, 30 minutes per job, a
    /// poll every second) and Flotilla's container limits ([`ContainerLimits::defaults`]).
    pub fn new(server_url: &str, executor_token: &str, runtime: RuntimeKind, work_directory: &Path) -> ExecutorConfig {
        ExecutorConfig {
            server_url: server_url.to_owned(),
            executor_token: executor_token.to_owned(),
            name: default_executor_name(),
            concurrency: 1,
            runtime,
            labels: BTreeMap::new(),
            work_directory: work_directory.to_owned(),
            job_timeout: Duration::from_secs(30 * 60),
            cpus: None,
            memory_bytes: None,
            pids_limit: None,
            step_network: StepNetwork::OnRequest,
            poll_interval: Duration::from_secs(1),
            min_free_disk_bytes: 100 << 20,
        }
    }

    /// The limits each step container gets: the ones configured, else the defaults for this
    /// machine and concurrency; 0 means none.
    pub fn container_limits(&self) -> ContainerLimits {
        let defaults = ContainerLimits::defaults(self.concurrency);
        ContainerLimits {
            cpus: match self.cpus {
                None => defaults.cpus,
                Some(cpus) if cpus <= 0.0 => None,
                Some(cpus) => Some(cpus),
            },
            memory_bytes: match self.memory_bytes {
                None => defaults.memory_bytes,
                Some(0) => None,
                Some(bytes) => Some(bytes),
            },
            pids_limit: match self.pids_limit {
                None => defaults.pids_limit,
                Some(0) => None,
                Some(pids) => Some(pids),
            },
        }
    }

    /// What this executor says about itself to the server.
    pub fn description(&self) -> ExecutorDescription {
        ExecutorDescription {
            name: self.name.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            hostname: hostname(),
            os: std::env::consts::OS.to_owned(),
            architecture: docker_architecture().to_owned(),
            labels: self.labels.clone(),
            cpus: self.container_limits().cpus,
            memory_bytes: self.container_limits().memory_bytes,
            runtime: self.runtime.name().to_owned(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("invalid executor configuration: {0}")]
    Configuration(String),
    #[error("the {runtime} runtime cannot be used: {source}")]
    Runtime { runtime: &'static str, source: RuntimeError },
    #[error("cannot prepare the work directory {path}: {source}; check that it exists and is writable")]
    WorkDirectory { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// `<hostname>-<random>`: unique per process, like Sourcegraph's executor names.
pub fn default_executor_name() -> String {
    format!("{}-{}", hostname(), random_suffix())
}

/// Runs the executor until `shutdown` is canceled; running jobs are then stopped (their
/// containers killed) and reported as canceled before this returns.
pub async fn run_executor(config: ExecutorConfig, shutdown: CancellationToken) -> Result<(), ExecutorError> {
    if config.concurrency == 0 {
        return Err(ExecutorError::Configuration("concurrency must be at least 1".to_owned()));
    }
    if config.name.is_empty() {
        return Err(ExecutorError::Configuration("the executor name must not be empty".to_owned()));
    }
    let owner_label = owner_label(&config.work_directory);
    let mut runtime = RuntimeSettings::detect(config.runtime, &owner_label)
        .await
        .map_err(|source| ExecutorError::Runtime { runtime: config.runtime.name(), source })?;
    let limits = config.container_limits();
    runtime.cpus = limits.cpus;
    runtime.memory_bytes = limits.memory_bytes;
    runtime.pids_limit = limits.pids_limit;
    let removed = remove_leftover_containers(&runtime).await.map_err(|source| ExecutorError::Runtime { runtime: config.runtime.name(), source })?;
    if removed > 0 {
        tracing::info!(containers = removed, "removed containers left behind by a previous run");
    }
    let jobs_directory = config.work_directory.join("jobs");
    clear_directory(&jobs_directory).await?;

    let client = ExecutorClient::new(&config.server_url, &config.executor_token)?;
    let environment = Arc::new(JobEnvironment {
        client: client.clone(),
        runtime,
        workspaces: WorkspaceCache::new(&config.work_directory),
        jobs_directory,
        container_prefix: owner_label,
        executor_token: config.executor_token.clone(),
        job_timeout: config.job_timeout,
        work_directory: config.work_directory.clone(),
        min_free_disk_bytes: config.min_free_disk_bytes,
        step_network: config.step_network,
    });
    let description = config.description();
    let running: RunningJobs = Arc::default();
    let heartbeat_stop = CancellationToken::new();
    let heartbeat = tokio::spawn(heartbeat_loop(client.clone(), description.clone(), running.clone(), heartbeat_stop.clone()));
    tracing::info!(executor.name = %config.name, runtime = config.runtime.name(), server = %config.server_url, "executor started");

    let permits = Arc::new(Semaphore::new(config.concurrency));
    let mut tasks = JoinSet::new();
    let mut error_backoff = config.poll_interval;
    let mut short_of_space = false;
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        // A full disk would fail the job for the machine's sake: wait for space instead.
        if let Some(free) = crate::disk::is_short_of_space(&config.work_directory, config.min_free_disk_bytes) {
            if !short_of_space {
                tracing::warn!(
                    path = %config.work_directory.display(),
                    free = %crate::disk::describe_bytes(free),
                    needed = %crate::disk::describe_bytes(config.min_free_disk_bytes),
                    "the work folder's disk is (nearly) full: taking no job until space is freed there"
                );
                short_of_space = true;
            }
            drop(permit);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(config.poll_interval.max(Duration::from_secs(1))) => {}
            }
            continue;
        }
        if short_of_space {
            tracing::info!(path = %config.work_directory.display(), "the work folder's disk has space again: taking jobs");
            short_of_space = false;
        }
        let request = DequeueRequest { executor: description.clone() };
        let dequeued = tokio::select! {
            _ = shutdown.cancelled() => break,
            dequeued = client.dequeue(&request) => dequeued,
        };
        let wait = match dequeued {
            Ok(Some(job)) => {
                error_backoff = config.poll_interval;
                let control = JobControl::default();
                if let Ok(mut jobs) = running.lock() {
                    jobs.insert(job.id, control.clone());
                }
                tracing::info!(job.id = job.id, repo.name = %job.repository_name, "job dequeued");
                let environment = environment.clone();
                let running = running.clone();
                tasks.spawn(async move {
                    let job_id = job.id;
                    run_job(&environment, job, control).await;
                    if let Ok(mut jobs) = running.lock() {
                        jobs.remove(&job_id);
                    }
                    drop(permit);
                });
                // Ask again right away: there may be more work.
                continue;
            }
            Ok(None) => config.poll_interval,
            Err(error) => {
                tracing::warn!(%error, retry_in_ms = error_backoff.as_millis() as u64, "dequeue failed");
                let wait = error_backoff;
                error_backoff = (error_backoff * 2).clamp(Duration::from_millis(100), MAXIMUM_ERROR_BACKOFF);
                wait
            }
        };
        drop(permit);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(wait) => {}
        }
    }

    tracing::info!("executor shutting down; stopping running jobs");
    if let Ok(jobs) = running.lock() {
        for control in jobs.values() {
            control.stop(StopReason::Shutdown);
        }
    }
    while tasks.join_next().await.is_some() {}
    heartbeat_stop.cancel();
    let _ = heartbeat.await;
    Ok(())
}

type RunningJobs = Arc<Mutex<BTreeMap<i64, JobControl>>>;

/// Heartbeats every [`HEARTBEAT_INTERVAL`] while jobs run (every
/// [`IDLE_HEARTBEAT_INTERVAL`] when idle); stops jobs the server cancels or forgot.
async fn heartbeat_loop(client: ExecutorClient, description: ExecutorDescription, running: RunningJobs, stop: CancellationToken) {
    let mut last_sent: Option<Instant> = None;
    loop {
        let job_ids: Vec<i64> = running.lock().map(|jobs| jobs.keys().copied().collect()).unwrap_or_default();
        let due = match last_sent {
            None => true,
            Some(last) => !job_ids.is_empty() || last.elapsed() >= IDLE_HEARTBEAT_INTERVAL,
        };
        if due {
            last_sent = Some(Instant::now());
            let request = HeartbeatRequest { executor: description.clone(), job_ids: job_ids.clone() };
            match client.heartbeat(&request).await {
                Ok(response) => {
                    let known: BTreeSet<i64> = response.known_ids.iter().copied().collect();
                    let canceled: BTreeSet<i64> = response.cancel_ids.iter().copied().collect();
                    if let Ok(jobs) = running.lock() {
                        for job_id in &job_ids {
                            let Some(control) = jobs.get(job_id) else { continue };
                            if canceled.contains(job_id) {
                                tracing::info!(job.id = job_id, "the server canceled the job");
                                control.stop(StopReason::Canceled);
                            } else if !known.contains(job_id) {
                                tracing::warn!(job.id = job_id, "the server no longer knows the job; stopping it");
                                control.stop(StopReason::Lost);
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "heartbeat failed"),
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(HEARTBEAT_INTERVAL) => {}
        }
    }
}

/// The label on this executor's containers and the prefix of their names: derived from the
/// work directory, so a restarted executor (with a new name) finds what its predecessor left.
fn owner_label(work_directory: &Path) -> String {
    let path = std::fs::canonicalize(work_directory).unwrap_or_else(|_| work_directory.to_owned());
    // FNV-1a: stable across Rust versions, unlike `DefaultHasher`.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.to_string_lossy().bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("flotilla-executor-{hash:016x}")
}

async fn clear_directory(directory: &Path) -> Result<(), ExecutorError> {
    match tokio::fs::remove_dir_all(directory).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => return Err(ExecutorError::WorkDirectory { path: directory.to_owned(), source }),
    }
    tokio::fs::create_dir_all(directory).await.map_err(|source| ExecutorError::WorkDirectory { path: directory.to_owned(), source })
}

fn hostname() -> String {
    let mut buffer = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let status = unsafe { libc::gethostname(buffer.as_mut_ptr().cast(), buffer.len()) };
    if status != 0 {
        return "localhost".to_owned();
    }
    let length = buffer.iter().position(|byte| *byte == 0).unwrap_or(buffer.len());
    String::from_utf8_lossy(&buffer[..length]).into_owned()
}

fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|since| since.as_nanos()).unwrap_or(0));
    hasher.write_u32(std::process::id());
    format!("{:012x}", hasher.finish() & 0xffff_ffff_ffff)
}
