//! One workspace job from start to report: fetch the workspace, apply a cached result, run
//! each step (condition, templates, container, diff, outputs, cache entry), stream the logs,
//! and report `complete` or `fail`. The job folders are always removed afterwards; the
//! repository cache is kept.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_git::{CommitId, Credentials, WorkspaceCache, changed_files, diff_workspace};
use flotilla_template::sourcegraph::{eval_step_condition, render_step_template};
use flotilla_wire::cache::{CacheKeyInputs, resolve_environments, step_cache_key};
use flotilla_wire::executor::{CacheEntry, Job, JobFailure, JobResult, MAX_REPORT_BYTES, MAX_STEP_OUTPUT_BYTES, StepResult, image_allowed};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, ExecutorClient};
use crate::logs::LogEntry;
use crate::redact::Redactor;
use crate::runtime::{OutputLine, RuntimeError, RuntimeSettings, StepInvocation, StepNetwork, check_image, limit_explanation, run_step};
use crate::steps::{EnvironmentSource, environment_sources, parse_output, step_context, step_failure_message, template_step_result, wire_changes};

/// What every job of one executor shares.
pub struct JobEnvironment {
    pub client: ExecutorClient,
    pub runtime: RuntimeSettings,
    pub workspaces: WorkspaceCache,
    /// `<work directory>/jobs`: per-job scratch folders live here (and workspaces, which
    /// [`WorkspaceCache`] creates under the same folder).
    pub jobs_directory: PathBuf,
    /// Prefix of container names, unique per work directory.
    pub container_prefix: String,
    pub executor_token: String,
    pub job_timeout: Duration,
    /// The executor's work folder, whose disk [`crate::disk`] watches.
    pub work_directory: PathBuf,
    /// Below this much free space a failed job is blamed on the disk, not on its steps.
    pub min_free_disk_bytes: u64,
    /// Which steps get a network.
    pub step_network: StepNetwork,
}

/// Why a job was stopped from outside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The server asked (heartbeat `cancel_ids`).
    Canceled,
    /// The executor is shutting down.
    Shutdown,
    TimedOut(Duration),
    /// The server no longer lists the job as ours; nothing is reported.
    Lost,
}

/// Stops a running job: cancels its token, remembering the first reason.
#[derive(Clone, Debug, Default)]
pub struct JobControl {
    token: CancellationToken,
    reason: Arc<Mutex<Option<StopReason>>>,
}

impl JobControl {
    pub fn stop(&self, reason: StopReason) {
        if let Ok(mut current) = self.reason.lock() {
            current.get_or_insert(reason);
        }
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        self.reason.lock().ok().and_then(|reason| reason.clone())
    }

    pub fn token(&self) -> &CancellationToken {
        &self.token
    }
}

/// Why execution ended early.
enum Interruption {
    Failed { message: String, infrastructure: bool },
    /// The token was canceled; [`JobControl::reason`] says why.
    Stopped,
    /// The server answered 404/409: it no longer considers the job ours.
    Gone,
}

impl From<ClientError> for Interruption {
    fn from(error: ClientError) -> Interruption {
        match error {
            ClientError::JobGone { .. } => Interruption::Gone,
            other => Interruption::Failed { message: format!("reporting to the server failed: {other}"), infrastructure: true },
        }
    }
}

fn failed(message: impl Into<String>, infrastructure: bool) -> Interruption {
    Interruption::Failed { message: message.into(), infrastructure }
}

/// Runs a job and reports its outcome; removes its folders.
pub async fn run_job(environment: &JobEnvironment, job: Job, control: JobControl) {
    let redactor = Redactor::new(&job.redactions, &[&environment.executor_token, &job.token]);
    let timeout = match job.timeout_seconds {
        0 => environment.job_timeout,
        seconds => environment.job_timeout.min(Duration::from_secs(seconds)),
    };
    let timer = {
        let control = control.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(timeout) => control.stop(StopReason::TimedOut(timeout)),
                _ = control.token.cancelled() => {}
            }
        })
    };
    let scratch = environment.jobs_directory.join(format!("job-{}", job.id));
    let mut execution = Execution { environment, job: &job, redactor: &redactor, control: &control, scratch, workspace: None, cache_entries: Vec::new() };
    let outcome = blame_a_full_disk(environment, execution.execute().await);
    timer.abort();
    let cache_entries = std::mem::take(&mut execution.cache_entries);
    execution.remove_folders().await;

    let failure = |message: String, infrastructure: bool| {
        let mut failure = JobFailure { message: redactor.redact(&message), infrastructure, cache_entries: cache_entries.clone() };
        if serde_json::to_vec(&failure).map_or(true, |body| body.len() > MAX_REPORT_BYTES) {
            // The cache only saves work; a report the server would refuse saves none.
            failure.cache_entries.clear();
        }
        failure
    };
    let report = match outcome {
        Ok(final_result) => match result_within_limit(JobResult { final_result, cache_entries: cache_entries.clone() }) {
            Ok(result) => {
                tracing::info!(job.id = job.id, repo.name = %job.repository_name, "job completed");
                environment.client.complete(&job, &result).await
            }
            Err(message) => {
                tracing::info!(job.id = job.id, repo.name = %job.repository_name, "job failed: its result is too large");
                environment.client.fail(&job, &JobFailure { message, infrastructure: false, cache_entries: Vec::new() }).await
            }
        },
        Err(Interruption::Failed { message, infrastructure }) => {
            tracing::info!(job.id = job.id, repo.name = %job.repository_name, infrastructure, "job failed");
            environment.client.fail(&job, &failure(message, infrastructure)).await
        }
        Err(Interruption::Stopped) => match control.reason() {
            Some(StopReason::Lost) => Ok(()),
            Some(StopReason::Canceled) => environment.client.fail(&job, &failure("canceled".to_owned(), false)).await,
            Some(StopReason::TimedOut(limit)) => {
                let message = format!("job exceeded maximum execution time of {}s", limit.as_secs());
                environment.client.fail(&job, &failure(message, false)).await
            }
            Some(StopReason::Shutdown) | None => {
                let message = "canceled: the executor shut down while running the job".to_owned();
                environment.client.fail(&job, &failure(message, true)).await
            }
        },
        Err(Interruption::Gone) => Ok(()),
    };
    match report {
        Ok(()) | Err(ClientError::JobGone { .. }) => {}
        Err(error) => tracing::warn!(job.id = job.id, %error, "the job's outcome could not be reported; the server will reset the job"),
    }
}

/// A job that failed while its work folder's disk is full (or whose failure says "No space
/// left on device") failed for the machine's sake: report it as an infrastructure failure, with
/// the disk named, so the server retries it (on this executor once space is freed, or another)
/// instead of failing the workspace for good. Checked before the job's folders are removed,
/// while what filled the disk is still there.
fn blame_a_full_disk(environment: &JobEnvironment, outcome: Result<StepResult, Interruption>) -> Result<StepResult, Interruption> {
    let Err(Interruption::Failed { message, infrastructure }) = outcome else { return outcome };
    let short = crate::disk::is_short_of_space(&environment.work_directory, environment.min_free_disk_bytes);
    if short.is_none() && !crate::disk::mentions_full_disk(&message) {
        return Err(Interruption::Failed { message, infrastructure });
    }
    let free = short.or_else(|| crate::disk::free_bytes(&environment.work_directory).ok());
    let free = free.map(|free| format!(", {} free", crate::disk::describe_bytes(free))).unwrap_or_default();
    let message = format!(
        "the executor's disk is full (work folder {}{free}); the job will be retried once space is freed or on another executor: {message}",
        environment.work_directory.display()
    );
    Err(Interruption::Failed { message, infrastructure: true })
}

struct Execution<'a> {
    environment: &'a JobEnvironment,
    job: &'a Job,
    redactor: &'a Redactor,
    control: &'a JobControl,
    scratch: PathBuf,
    workspace: Option<PathBuf>,
    /// Results of the steps that ran (and were skipped by `if:`), redacted, with their keys.
    cache_entries: Vec<CacheEntry>,
}

impl Execution<'_> {
    async fn execute(&mut self) -> Result<StepResult, Interruption> {
        let job = self.job;
        let workspace = self.fetch().await?;
        let mount_contents = self.download_mount_files().await?;
        let steps = &job.steps;
        let environments = resolve_environments(steps, &job.secrets);
        let key_inputs = CacheKeyInputs {
            repository_name: &job.repository_name,
            branch: &job.branch,
            commit: &job.commit,
            file_matches: job.search_result_paths.clone(),
            path: &job.workspace_path,
            only_fetch_workspace: job.only_fetch_workspace,
            batch_change_name: &job.batch_change_name,
            batch_change_description: &job.batch_change_description,
            steps,
            environments,
            mounts: job.mount_files.iter().map(|file| (file.path.clone(), file.size, file.modified_at)).collect(),
        };

        // src-cli's `previousStepResult`: the last step that ran, or the cached one.
        let mut previous: Option<StepResult> = job.cached_result.clone();
        let mut latest: Option<StepResult> = job.cached_result.clone();
        let mut outputs = job.cached_result.as_ref().map(|cached| cached.outputs.clone()).unwrap_or_default();
        let first_step = job.cached_result.as_ref().map_or(0, |cached| cached.step_index + 1);

        for (step_index, step) in steps.iter().enumerate().skip(first_step) {
            if job.skipped_steps.contains(&step_index) {
                continue;
            }
            if self.control.token().is_cancelled() {
                return Err(Interruption::Stopped);
            }
            let number = step_index + 1;
            let mut context = step_context(job, previous.as_ref(), &outputs);
            let run_condition = eval_step_condition(&step.if_condition, &context)
                .map_err(|error| failed(format!("step {number}: evaluating `if: {}` failed: {error}", step.if_condition), false))?;
            if !run_condition {
                let mut entry = LogEntry::start(&self.environment.client, job, self.redactor, &format!("step.{step_index}"), &[]);
                entry.push_line(&format!("skipped: the condition `if: {}` is false", step.if_condition));
                entry.finish(0).await?;
                let mut skipped = StepResult {
                    step_index,
                    changed_files: previous.as_ref().map(|result| result.changed_files.clone()).unwrap_or_default(),
                    outputs: outputs.clone(),
                    skipped: true,
                    ..StepResult::default()
                };
                skipped.set_diff(&latest.as_ref().map(StepResult::diff).unwrap_or_default());
                self.cache_entries.push(CacheEntry { key: step_cache_key(&key_inputs, step_index), value: self.redacted(&skipped) });
                latest = Some(skipped);
                continue;
            }

            let render = |what: &str, template: &str, context: &flotilla_template::sourcegraph::StepContext| {
                render_step_template(&format!("step-{what}"), template, context)
                    .map_err(|error| failed(format!("step {number}: rendering `{what}` failed: {error}"), false))
            };
            let image = render("container", &step.container, &context)?.trim().to_owned();
            let script = render("run", &step.run, &context)?;
            let mut environment_values = Vec::new();
            for (name, source) in environment_sources(step, &job.secrets) {
                let value = match source {
                    EnvironmentSource::Template(template) => render(&format!("env.{name}"), template, &context)?,
                    EnvironmentSource::Secret(value) => value.to_owned(),
                };
                environment_values.push((name.to_owned(), value));
            }
            let mut files = Vec::new();
            for (path, content) in &step.files {
                files.push((path.clone(), render(&format!("files.{path}"), content, &context)?.into_bytes()));
            }
            for mount in &step.mount {
                let before = files.len();
                for (file, content) in job.mount_files.iter().zip(&mount_contents) {
                    if let Some(target) = mount.target_of(&file.path) {
                        files.push((target, content.clone()));
                    }
                }
                if files.len() == before {
                    return Err(failed(format!("step {number} mounts `{}`, but the server sent no such file with the job", mount.path), false));
                }
            }

            let mut entry = LogEntry::start(&self.environment.client, job, self.redactor, &format!("step.{step_index}"), std::slice::from_ref(&script));
            if !image_allowed(&job.allowed_images, &image) {
                let message = format!(
                    "step {number}: the image `{image}` is not allowed on this server; allowed images: {} (ask a site admin to extend --allowed-images)",
                    job.allowed_images.join(", ")
                );
                entry.push_line(&message);
                entry.finish(1).await?;
                return Err(failed(message, false));
            }
            let network = match self.environment.step_network.decide(step.network) {
                Ok(network) => network,
                Err(reason) => {
                    let message = format!("step {number} cannot run on this executor: {reason}");
                    entry.push_line(&message);
                    entry.finish(1).await?;
                    return Err(failed(message, false));
                }
            };
            if let Err(problem) = check_image(&self.environment.runtime, &image).await {
                entry.push_line(&problem.to_string());
                entry.finish(1).await?;
                return Err(runtime_failure(number, problem));
            }
            let invocation = StepInvocation {
                container_name: format!("{}-job{}-step{step_index}", self.environment.container_prefix, job.id),
                image: image.clone(),
                script: script.clone(),
                workspace: workspace.clone(),
                working_directory: job.workspace_path.clone(),
                environment: environment_values,
                files,
                scratch: self.scratch.join(format!("step-{step_index}")),
                network,
                timeout: None,
            };
            let (stdout, stderr, exit) = self.run_streaming(&invocation, &mut entry).await?;
            let exit = match exit {
                Ok(exit) => exit,
                Err(problem) => {
                    entry.push_line(&problem.to_string());
                    entry.finish(1).await?;
                    return Err(runtime_failure(number, problem));
                }
            };
            if exit.canceled || exit.timed_out {
                let _ = entry.finish(exit.exit_code.unwrap_or(-1)).await;
                return Err(Interruption::Stopped);
            }
            entry.finish(exit.exit_code.unwrap_or(-1)).await?;
            match exit.exit_code {
                Some(0) => {}
                Some(code) => {
                    let explanation = limit_explanation(&self.environment.runtime, code, &stderr);
                    return Err(failed(step_failure_message(step_index, &image, code, explanation.as_deref(), &script, &stderr), false));
                }
                None => return Err(failed(format!("step {number} (run in {image}) was killed by a signal\n\nrun: {}", script.trim_end()), false)),
            }

            let diff = diff_workspace(&workspace).await.map_err(|error| failed(format!("step {number}: computing the workspace's diff failed: {error}"), true))?;
            let changes = changed_files(&diff).map_err(|error| failed(format!("step {number}: {error}"), true))?;
            let mut result = StepResult { step_index, changed_files: wire_changes(changes), stdout, stderr, ..StepResult::default() };
            result.set_diff(&diff);

            // Outputs see this step's result as `step`, and the outputs set before them.
            context.step = template_step_result(&result);
            for (name, output) in &step.outputs {
                let rendered = render(&format!("outputs.{name}"), &output.value, &context)?;
                let value = parse_output(name, output.format, &rendered).map_err(|error| failed(format!("step {number}: {error}"), false))?;
                context.outputs.insert(name.clone(), flotilla_template::Value::from_yaml_json(value.clone()));
                outputs.insert(name.clone(), value);
            }
            result.outputs = outputs.clone();
            self.cache_entries.push(CacheEntry { key: step_cache_key(&key_inputs, step_index), value: self.redacted(&result) });
            previous = Some(result.clone());
            latest = Some(result);
        }

        Ok(match latest {
            Some(result) => self.redacted(&result),
            // Every step was skipped statically: nothing changed.
            None => StepResult { step_index: steps.len().saturating_sub(1), skipped: true, ..StepResult::default() },
        })
    }

    /// Downloads the files the steps mount (in the order of `job.mount_files`).
    async fn download_mount_files(&self) -> Result<Vec<Vec<u8>>, Interruption> {
        let mut contents = Vec::with_capacity(self.job.mount_files.len());
        for file in &self.job.mount_files {
            let content = self
                .environment
                .client
                .download(self.job, &file.url)
                .await
                .map_err(|error| failed(format!("downloading the mount file {} failed: {error}", file.path), true))?;
            contents.push(content);
        }
        Ok(contents)
    }

    /// Fetches the workspace (and applies the cached result's diff) under `setup.fetch`.
    async fn fetch(&mut self) -> Result<PathBuf, Interruption> {
        let job = self.job;
        let remote_url = format!("{}{}", self.environment.client.base_url(), job.git_path);
        let command = vec!["git".to_owned(), "fetch".to_owned(), "--depth=1".to_owned(), remote_url.clone(), job.commit.clone()];
        let mut entry = LogEntry::start(&self.environment.client, job, self.redactor, "setup.fetch", &command);
        let stop = self.control.token().clone();
        // With several servers, a fetch from one that stopped answering is tried on the next
        // (every server serves every job's repository), before the job is given up.
        let mut remote_url = remote_url;
        let mut servers_left = self.environment.client.server_count();
        let prepared = loop {
            let server = self.environment.client.base_url().to_owned();
            let prepared = tokio::select! {
                prepared = self.prepare(&remote_url) => prepared,
                _ = stop.cancelled() => {
                    let _ = entry.finish(-1).await;
                    return Err(Interruption::Stopped);
                }
            };
            servers_left -= 1;
            match prepared {
                Err(message) if servers_left > 0 => {
                    entry.push_line(&format!("{message}; trying the next server"));
                    self.environment.client.fail_over_from(&server);
                    remote_url = format!("{}{}", self.environment.client.base_url(), job.git_path);
                }
                prepared => break prepared,
            }
        };
        let workspace = match prepared {
            Ok(workspace) => workspace,
            Err(message) => {
                entry.push_line(&message);
                entry.finish(1).await?;
                return Err(failed(format!("fetching the repository {} failed: {message}", job.repository_name), true));
            }
        };
        entry.push_line(&format!("checked out {} of {} into a fresh workspace", job.commit, job.repository_name));
        if let Some(cached) = &job.cached_result {
            let diff = cached.diff();
            if !diff.is_empty()
                && let Err(message) = apply_diff(&workspace, &diff).await
            {
                entry.push_line(&message);
                entry.finish(1).await?;
                return Err(failed(format!("applying the cached result of step {} failed: {message}", cached.step_index + 1), false));
            }
            entry.push_line(&format!("applied the cached result of step {}; continuing with step {}", cached.step_index + 1, cached.step_index + 2));
        }
        entry.finish(0).await?;
        Ok(workspace)
    }

    async fn prepare(&mut self, remote_url: &str) -> Result<PathBuf, String> {
        let job = self.job;
        let commit = CommitId::new(&job.commit).map_err(|error| error.to_string())?;
        let credentials = Credentials::bearer(&job.token).map_err(|error| error.to_string())?;
        let sparse_paths = (job.only_fetch_workspace && !job.workspace_path.is_empty()).then(|| vec![job.workspace_path.clone()]);
        let prepared = self
            .environment
            .workspaces
            .prepare(&job.repository_name, remote_url, Some(&credentials), &commit, sparse_paths.as_deref())
            .await
            .map_err(|error| error.to_string())?;
        self.workspace = Some(prepared.path.clone());
        Ok(prepared.path)
    }

    /// Runs one step, streaming its lines into `entry`. Returns stdout, stderr and how the
    /// step ended.
    async fn run_streaming(
        &self,
        invocation: &StepInvocation,
        entry: &mut LogEntry<'_>,
    ) -> Result<(String, String, Result<crate::runtime::StepExit, RuntimeError>), Interruption> {
        let (sender, mut receiver) = mpsc::unbounded_channel();
        // Its own token, so that a step writing without end can be stopped alone.
        let step_token = self.control.token().child_token();
        let run = run_step(&self.environment.runtime, invocation, sender, step_token.clone());
        tokio::pin!(run);
        let mut stdout = String::new();
        let mut stderr = String::new();
        let mut overflow: Option<&'static str> = None;
        let mut record = |line: OutputLine, entry: &mut LogEntry<'_>| {
            let (name, buffer, text) = match line {
                OutputLine::Stdout(text) => ("standard output", &mut stdout, text),
                OutputLine::Stderr(text) => ("standard error", &mut stderr, text),
            };
            if buffer.len() + text.len() + 1 > MAX_STEP_OUTPUT_BYTES {
                if overflow.is_none() {
                    overflow = Some(name);
                    step_token.cancel();
                }
                return;
            }
            entry.push_line(&format!("{}: {text}", if name == "standard output" { "stdout" } else { "stderr" }));
            buffer.push_str(&text);
            buffer.push('\n');
        };
        let exit = loop {
            let due = entry.next_update_due();
            tokio::select! {
                exit = &mut run => break exit,
                Some(line) = receiver.recv() => record(line, entry),
                _ = sleep_until_due(due), if due.is_some() => {
                    if let Err(error) = entry.send_update().await {
                        self.control.stop(StopReason::Lost);
                        let _ = (&mut run).await;
                        return Err(error.into());
                    }
                }
            }
        };
        while let Ok(line) = receiver.try_recv() {
            record(line, entry);
        }
        if let Some(stream) = overflow
            && !self.control.token().is_cancelled()
        {
            let message = format!(
                "the step wrote more than {MAX_STEP_OUTPUT_BYTES} bytes to its {stream} and was stopped; write large output to a file in the workspace instead"
            );
            return Ok((stdout, stderr, Err(RuntimeError::OutputTooLarge(message))));
        }
        Ok((stdout, stderr, exit))
    }

    fn redacted(&self, result: &StepResult) -> StepResult {
        StepResult {
            stdout: self.redactor.redact(&result.stdout),
            stderr: self.redactor.redact(&result.stderr),
            outputs: result.outputs.iter().map(|(name, value)| (self.redactor.redact(name), self.redactor.redact_json(value))).collect(),
            ..result.clone()
        }
    }

    async fn remove_folders(&mut self) {
        for folder in [self.workspace.take(), Some(self.scratch.clone())].into_iter().flatten() {
            if let Err(error) = tokio::fs::remove_dir_all(&folder).await
                && error.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(job.id = self.job.id, path = %folder.display(), %error, "cannot remove a job folder");
            }
        }
    }
}

/// The result as it will be sent, if the server will read it: without the step cache entries
/// when only those make it too large; else the message the job fails with.
fn result_within_limit(mut result: JobResult) -> Result<JobResult, String> {
    let size = |result: &JobResult| serde_json::to_vec(result).map_or(usize::MAX, |body| body.len());
    if size(&result) <= MAX_REPORT_BYTES {
        return Ok(result);
    }
    result.cache_entries.clear();
    let bytes = size(&result);
    if bytes <= MAX_REPORT_BYTES {
        return Ok(result);
    }
    Err(format!(
        "the result is {bytes} bytes (its diff is {} bytes), more than the {MAX_REPORT_BYTES} bytes a server accepts; \
         make the steps change fewer or smaller files (split the batch change, or generate large files in CI instead)",
        result.final_result.diff().len()
    ))
}

async fn sleep_until_due(due: Option<std::time::Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    }
}

/// Image problems are the spec's to fix (final); a runtime that cannot start containers is
/// the machine's (infrastructure, another executor may succeed).
fn runtime_failure(number: usize, problem: RuntimeError) -> Interruption {
    let infrastructure = !matches!(problem, RuntimeError::Image(_) | RuntimeError::OutputTooLarge(_));
    failed(format!("step {number}: {problem}"), infrastructure)
}

/// `git apply -p0 --binary` of a cached diff in the workspace, so later steps see its changes.
pub async fn apply_diff(workspace: &Path, diff: &[u8]) -> Result<(), String> {
    let mut child = tokio::process::Command::new("git")
        .args(["apply", "-p0", "--binary", "--whitespace=nowarn", "-"])
        .current_dir(workspace)
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| format!("cannot run `git apply` in {}: {error}; is git installed?", workspace.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(diff).await.map_err(|error| format!("writing the diff to `git apply`: {error}"))?;
        drop(stdin);
    }
    let output = child.wait_with_output().await.map_err(|error| format!("waiting for `git apply`: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("`git apply -p0 --binary` in {} failed: {}", workspace.display(), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// A cached step result comes from the server, which stored what an executor reported: a
/// compromised executor can poison it. Applying it in a workspace (a real working tree) must
/// never write outside: `git apply` refuses `..`, absolute and `.git` paths and paths beyond a
/// symbolic link, and the job fails with git's reason.
#[cfg(test)]
mod hostile_diff_tests {
    use super::apply_diff;

    const HOSTILE_DIFFS: &[(&str, &str)] = &[
        ("dot-dot path", "diff --git ../../escape.txt ../../escape.txt\nnew file mode 100644\n--- /dev/null\n+++ ../../escape.txt\n@@ -0,0 +1 @@\n+pwned\n"),
        ("absolute path", "diff --git /tmp/flotilla-executor-escape.txt /tmp/flotilla-executor-escape.txt\nnew file mode 100644\n--- /dev/null\n+++ /tmp/flotilla-executor-escape.txt\n@@ -0,0 +1 @@\n+pwned\n"),
        ("into .git", "diff --git .git/hooks/post-checkout .git/hooks/post-checkout\nnew file mode 100755\n--- /dev/null\n+++ .git/hooks/post-checkout\n@@ -0,0 +1 @@\n+touch pwned\n"),
        ("through a new symlink", "diff --git up up\nnew file mode 120000\n--- /dev/null\n+++ up\n@@ -0,0 +1 @@\n+../..\n\\ No newline at end of file\ndiff --git up/escape.txt up/escape.txt\nnew file mode 100644\n--- /dev/null\n+++ up/escape.txt\n@@ -0,0 +1 @@\n+pwned\n"),
    ];

    #[tokio::test]
    async fn a_poisoned_cached_diff_never_writes_outside_the_workspace() {
        let temporary = tempfile::tempdir().expect("temp dir");
        let workspace = temporary.path().join("jobs/workspace");
        std::fs::create_dir_all(&workspace).expect("workspace");
        let git = |arguments: &[&str]| {
            let status = std::process::Command::new("git")
                .args(arguments)
                .current_dir(&workspace)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .status()
                .expect("git");
            assert!(status.success(), "git {arguments:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(workspace.join("README.md"), "hello\n").expect("write");
        git(&["add", "README.md"]);
        git(&["-c", "user.name=a", "-c", "user.email=a@b", "commit", "-qm", "init"]);
        for (attack, diff) in HOSTILE_DIFFS {
            let error = apply_diff(&workspace, diff.as_bytes()).await.expect_err(attack);
            assert!(error.contains("git apply -p0 --binary") && error.len() > 40, "{attack}: {error}");
        }
        for escaped in [temporary.path().join("escape.txt"), temporary.path().join("jobs/escape.txt"), std::path::PathBuf::from("/tmp/flotilla-executor-escape.txt"), workspace.join("pwned")] {
            assert!(!escaped.exists(), "{} was written", escaped.display());
        }
        assert!(!workspace.join(".git/hooks/post-checkout").exists());
    }
}
