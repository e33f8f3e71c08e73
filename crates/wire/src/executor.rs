//! The executor queue protocol: what executors send and what the server answers.
//!
//! Routes (all under `/.executors/`): `POST queue/dequeue` (executor token; 200 with a [`Job`]
//! or 204), `POST queue/heartbeat` (executor token), and, with the job's own token,
//! `POST jobs/{id}/log` + `PATCH jobs/{id}/log/{index}`, `POST jobs/{id}/complete`,
//! `POST jobs/{id}/fail`, and `GET git/{repository}/info/refs` + `POST .../git-upload-pack`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What an executor says about itself when it asks for work.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecutorDescription {
    /// Unique per executor process (hostname plus a random suffix by default).
    pub name: String,
    pub version: String,
    pub hostname: String,
    pub os: String,
    pub architecture: String,
    /// Free-form labels (`gpu=true`, `size=large`) that jobs can require.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub cpus: Option<f64>,
    #[serde(default)]
    pub memory_bytes: Option<u64>,
    /// Which container runtime runs steps (`podman`, `docker`, `process`).
    pub runtime: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DequeueRequest {
    pub executor: ExecutorDescription,
}

/// A workspace job: everything an executor needs to run one workspace's steps.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    /// Short-lived token that authorises exactly this job's reports and this repository's
    /// fetch. Sent as `Authorization: Bearer <token>`.
    pub token: String,
    pub repository_name: String,
    /// The commit to check out (the branch head when the workspace was resolved).
    pub commit: String,
    pub branch: String,
    /// Server-relative URL of the repository's git endpoint (`/.executors/git/<name>`).
    pub git_path: String,
    /// The workspace's folder inside the repository ("" for the root).
    pub workspace_path: String,
    /// Fetch only the workspace's folder (sparse checkout).
    pub only_fetch_workspace: bool,
    pub batch_change_name: String,
    pub batch_change_description: String,
    /// Paths of the search results in this workspace (for `repository.search_result_paths`).
    pub search_result_paths: Vec<String>,
    pub steps: Vec<flotilla_spec::Step>,
    /// Steps the server decided statically not to run (their `if:` is false).
    pub skipped_steps: Vec<usize>,
    /// The latest cached step result, if the first steps are cached: execution resumes after it.
    pub cached_result: Option<StepResult>,
    /// Secret values for the steps' bare `env` names, for this job only.
    pub secrets: BTreeMap<String, String>,
    /// Values to replace in everything the executor sends back (secret → `${{ secrets.NAME }}`).
    pub redactions: Vec<Redaction>,
    /// Files the steps' `mount` entries need: path as written in the spec → download URL.
    #[serde(default)]
    pub mount_files: Vec<MountFile>,
    /// Container images the server allows (globs; empty allows all). Checked again here
    /// because templated images are only known once rendered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_images: Vec<String>,
    /// Whole-job time limit.
    pub timeout_seconds: u64,
}

/// The largest job report (a completion or failure, as JSON) a server reads and an executor
/// sends: the final result and every step's cache entry, each with its diff. An executor with
/// a larger result drops the cache entries, and fails the job with this number if it is
/// still too large, rather than have the server refuse it.
pub const MAX_REPORT_BYTES: usize = 32 * 1024 * 1024;

/// The most output one log entry (one step) keeps; beyond it the executor notes that the
/// output was cut, so a step that prints without end cannot fill memory or the database.
pub const MAX_LOG_ENTRY_BYTES: usize = 1024 * 1024;

/// The most standard output, and separately standard error, one step may write for use as
/// `step.stdout`/`step.stderr`; a step that writes more is stopped and fails, naming it.
pub const MAX_STEP_OUTPUT_BYTES: usize = 4 * 1024 * 1024;

/// Whether an allow list of image globs (empty allows all) admits `image`; the server checks
/// images written in the spec, the executor the rendered ones.
pub fn image_allowed(allowed: &[String], image: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|pattern| flotilla_spec::glob::matches(pattern, image).unwrap_or(false))
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redaction {
    pub value: String,
    pub replacement: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountFile {
    /// Relative to the spec's folder, as uploaded.
    pub path: String,
    /// Server-relative URL to download it from with the job token.
    pub url: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub modified_at: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeartbeatRequest {
    pub executor: ExecutorDescription,
    pub job_ids: Vec<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatResponse {
    /// Jobs the server still considers this executor's.
    pub known_ids: Vec<i64>,
    /// Jobs to stop now (their batch spec was canceled).
    pub cancel_ids: Vec<i64>,
}

/// A new entry in a job's execution log (one per command: setup, each step).
///
/// An entry whose command finished before its first update was due arrives whole, with its
/// output, exit code and duration: one request instead of three.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntryStart {
    pub key: String,
    pub command: Vec<String>,
    pub started_at_ms: i64,
    #[serde(default)]
    pub output: String,
    #[serde(default)]
    pub exit_code: Option<i32>,
    #[serde(default)]
    pub duration_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntryCreated {
    pub index: i64,
}

/// The full output so far of a log entry, and how it ended once it has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntryUpdate {
    pub output: String,
    pub exit_code: Option<i32>,
    pub duration_ms: Option<i64>,
}

/// Files a step (or all steps so far) changed, as Sourcegraph's templates expose them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangedFiles {
    pub modified: Vec<String>,
    pub added: Vec<String>,
    pub deleted: Vec<String>,
    pub renamed: Vec<String>,
}

/// The result after one step (Sourcegraph's `AfterStepResult`, version 2): the cumulative
/// diff and changes so far, the step's own output, and all outputs so far.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub step_index: usize,
    pub changed_files: ChangedFiles,
    pub stdout: String,
    pub stderr: String,
    /// Cumulative diff against the base commit, base64 (binary-safe).
    pub diff_base64: String,
    pub outputs: serde_json::Map<String, serde_json::Value>,
    pub skipped: bool,
}

impl StepResult {
    pub fn diff(&self) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(&self.diff_base64).unwrap_or_default()
    }

    pub fn set_diff(&mut self, diff: &[u8]) {
        use base64::Engine as _;
        self.diff_base64 = base64::engine::general_purpose::STANDARD.encode(diff);
    }
}

/// A step result to store in the step cache under its key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheEntry {
    pub key: String,
    pub value: StepResult,
}

/// What a finished job reports.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The result after the last step that ran (or was cached); its diff is the workspace's.
    pub final_result: StepResult,
    /// One entry per executed step, for the cache and for per-step details.
    pub cache_entries: Vec<CacheEntry>,
}

/// Why a job failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobFailure {
    pub message: String,
    /// True for failures of the infrastructure (fetch, runtime, executor), which the server
    /// may retry on another attempt; false for a step failing, which is final.
    pub infrastructure: bool,
    /// Step results that completed before the failure, so a retry resumes after them.
    #[serde(default)]
    pub cache_entries: Vec<CacheEntry>,
}

/// The standard JSON error body of every API response that is not a success.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
}
