//! The server's own redaction of what jobs report: log commands and output, step stdout,
//! stderr and outputs, failure messages and cached step results pass through the job's
//! secrets again before they are stored, so an executor that does not redact (an old, a
//! buggy or a hostile one) cannot put a secret value into the database, the API or a
//! changeset. Diffs cannot be redacted (a rewritten diff no longer applies): a diff that
//! holds a secret's value fails its workspace instead, naming the secret.
//!
//! The job's secret values are resolved once, when the job is handed out, and kept in memory
//! per job (bounded); a report that reaches another server process, or arrives after the
//! memory was emptied, resolves them again (recorded in the secrets' access log, like the
//! first read).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use flotilla_store::{ExecutionJob, JobId, SecretAccessor};
use flotilla_wire::redact::Redactor;
use flotilla_wire::{CacheEntry, JobFailure, JobResult, Redaction, StepResult};

use crate::SharedState;
use crate::error::{ApiError, ApiResult};

/// Jobs whose redactors are remembered at most; beyond, the memory is emptied and reports
/// resolve their job's secrets again.
const REMEMBERED_JOBS: usize = 10_000;

/// Secret values shorter than this are redacted in text but not looked for in diffs: a
/// secret such as `true` or `main` would otherwise fail every workspace whose diff has the
/// word. Such short values are not secret in any useful sense.
pub const SHORTEST_SECRET_CHECKED_IN_DIFFS: usize = 8;

/// A job's secrets, ready to search for.
#[derive(Debug)]
pub struct JobRedactor {
    /// Every non-empty secret value → `${{ secrets.NAME }}`.
    text: Redactor,
    /// The values of [`SHORTEST_SECRET_CHECKED_IN_DIFFS`] bytes or more → the secret's name.
    diffs: Redactor,
}

impl JobRedactor {
    /// A redactor for a job's secrets (name → value).
    pub fn new(secrets: &BTreeMap<String, String>) -> JobRedactor {
        let placeholders: Vec<Redaction> =
            secrets.iter().map(|(name, value)| Redaction { value: value.clone(), replacement: format!("${{{{ secrets.{name} }}}}") }).collect();
        let named: Vec<Redaction> = secrets
            .iter()
            .filter(|(_, value)| value.len() >= SHORTEST_SECRET_CHECKED_IN_DIFFS)
            .map(|(name, value)| Redaction { value: value.clone(), replacement: name.clone() })
            .collect();
        JobRedactor { text: Redactor::new(&placeholders, &[]), diffs: Redactor::new(&named, &[]) }
    }

    /// A job without secrets: reports pass unchanged.
    pub fn none() -> JobRedactor {
        JobRedactor { text: Redactor::none(), diffs: Redactor::none() }
    }

    pub fn redact(&self, text: &str) -> String {
        if self.text.is_empty() { text.to_owned() } else { self.text.redact(text) }
    }

    /// The name of a secret the step result's diff holds.
    pub fn secret_in_diff(&self, result: &StepResult) -> Option<String> {
        if self.diffs.is_empty() {
            return None;
        }
        self.diffs.find(&result.diff()).map(str::to_owned)
    }

    fn redact_step_result(&self, result: &mut StepResult) {
        if self.text.is_empty() {
            return;
        }
        result.stdout = self.text.redact(&result.stdout);
        result.stderr = self.text.redact(&result.stderr);
        result.outputs = result.outputs.iter().map(|(name, value)| (self.text.redact(name), self.text.redact_json(value))).collect();
    }

    /// Redacts cached step results, dropping those whose diff holds a secret (they are not
    /// worth keeping: the workspace fails when one reaches its final result).
    fn redact_cache_entries(&self, entries: &mut Vec<CacheEntry>) {
        entries.retain(|entry| self.secret_in_diff(&entry.value).is_none());
        for entry in entries {
            self.redact_step_result(&mut entry.value);
        }
    }

    /// Redacts a completion. `Err` names the secret the final diff holds: the workspace must
    /// fail rather than store it.
    pub fn redact_result(&self, result: &mut JobResult) -> Result<(), String> {
        self.redact_cache_entries(&mut result.cache_entries);
        self.redact_step_result(&mut result.final_result);
        match self.secret_in_diff(&result.final_result) {
            Some(name) => Err(diff_holds_secret_message(&name)),
            None => Ok(()),
        }
    }

    pub fn redact_failure(&self, failure: &mut JobFailure) {
        failure.message = self.redact(&failure.message);
        self.redact_cache_entries(&mut failure.cache_entries);
    }
}

/// The failure message of a workspace whose diff holds a secret's value.
pub fn diff_holds_secret_message(name: &str) -> String {
    format!(
        "the diff contains the value of secret {name}, so it was not stored: change the steps so that they do not write the secret into the repository's files (use it from the environment only)"
    )
}

/// Each running job's [`JobRedactor`], by job.
#[derive(Default)]
pub struct JobRedactors {
    jobs: Mutex<HashMap<JobId, Arc<JobRedactor>>>,
}

impl JobRedactors {
    /// Remembers the secrets of a job just handed out.
    pub fn remember(&self, job: JobId, secrets: &BTreeMap<String, String>) {
        let redactor = if secrets.is_empty() { JobRedactor::none() } else { JobRedactor::new(secrets) };
        if let Ok(mut jobs) = self.jobs.lock() {
            if jobs.len() >= REMEMBERED_JOBS {
                jobs.clear();
            }
            jobs.insert(job, Arc::new(redactor));
        }
    }

    /// Forgets a job that ended (or was handed out again).
    pub fn forget(&self, job: JobId) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.remove(&job);
        }
    }

    fn remembered(&self, job: JobId) -> Option<Arc<JobRedactor>> {
        self.jobs.lock().ok().and_then(|jobs| jobs.get(&job).cloned())
    }

    /// The job's redactor: remembered, or built from its secrets resolved again.
    pub async fn for_job(&self, state: &SharedState, job: &ExecutionJob) -> ApiResult<Arc<JobRedactor>> {
        if let Some(redactor) = self.remembered(job.id) {
            return Ok(redactor);
        }
        let secrets = resolve_job_secrets(state, job).await?;
        self.remember(job.id, &secrets);
        Ok(self.remembered(job.id).unwrap_or_else(|| Arc::new(JobRedactor::new(&secrets))))
    }
}

/// The secret values a job's steps use (their bare `env` names), read from the store.
pub async fn resolve_job_secrets(state: &SharedState, job: &ExecutionJob) -> ApiResult<BTreeMap<String, String>> {
    let steps: Vec<flotilla_spec::Step> = match job.payload.get("steps") {
        Some(steps) => serde_json::from_value(steps.clone())
            .map_err(|error| ApiError::internal(format!("job {} has an unreadable payload: {error}", job.id.0)))?,
        None => Vec::new(),
    };
    let names = crate::executor_api::outer_variable_names(&steps);
    if names.is_empty() {
        return Ok(BTreeMap::new());
    }
    let namespace = state.store.get_batch_spec(job.batch_spec_id).await?.namespace()?;
    let accessor = SecretAccessor { user_id: Some(job.user_id), job_id: Some(job.id) };
    crate::secrets::resolve(state, namespace, &names, accessor).await.map_err(ApiError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> JobRedactor {
        JobRedactor::new(&BTreeMap::from([("TOKEN".to_owned(), "s3cr3t-value-1234".to_owned()), ("SHORT".to_owned(), "main".to_owned())]))
    }

    fn result_with(text: &str, diff: &str) -> StepResult {
        let mut result = StepResult { stdout: format!("out {text}"), stderr: format!("err {text}"), ..StepResult::default() };
        result.outputs.insert("said".to_owned(), serde_json::json!({"nested": [format!("x {text}")]}));
        result.set_diff(diff.as_bytes());
        result
    }

    #[test]
    fn text_of_every_kind_is_redacted() {
        let redactor = redactor();
        assert_eq!(redactor.redact("a s3cr3t-value-1234 b main"), "a ${{ secrets.TOKEN }} b ${{ secrets.SHORT }}");
        let mut result = JobResult { final_result: result_with("s3cr3t-value-1234", "+safe\n"), cache_entries: Vec::new() };
        result.cache_entries.push(CacheEntry { key: "k-step-0".to_owned(), value: result_with("s3cr3t-value-1234", "+safe\n") });
        redactor.redact_result(&mut result).expect("no secret in the diff");
        let text = serde_json::to_string(&result).expect("json");
        assert!(!text.contains("s3cr3t-value-1234"), "{text}");
        assert_eq!(result.final_result.stdout, "out ${{ secrets.TOKEN }}");
        assert_eq!(result.cache_entries[0].value.outputs["said"]["nested"][0], "x ${{ secrets.TOKEN }}");
        let mut failure = JobFailure { message: "step 1 failed: s3cr3t-value-1234".to_owned(), infrastructure: false, cache_entries: Vec::new() };
        redactor.redact_failure(&mut failure);
        assert_eq!(failure.message, "step 1 failed: ${{ secrets.TOKEN }}");
    }

    #[test]
    fn a_diff_with_a_secret_fails_and_its_cache_entries_are_dropped() {
        let redactor = redactor();
        let mut result = JobResult { final_result: result_with("", "+token: s3cr3t-value-1234\n"), cache_entries: Vec::new() };
        result.cache_entries.push(CacheEntry { key: "k-step-0".to_owned(), value: result_with("", "+fine on main\n") });
        result.cache_entries.push(CacheEntry { key: "k-step-1".to_owned(), value: result_with("", "+token: s3cr3t-value-1234\n") });
        let message = redactor.redact_result(&mut result).expect_err("the diff holds the secret");
        assert!(message.starts_with("the diff contains the value of secret TOKEN"), "{message}");
        assert_eq!(result.cache_entries.len(), 1, "short secrets (`main`) are not looked for in diffs");
        assert_eq!(result.cache_entries[0].key, "k-step-0");
    }

    #[test]
    fn without_secrets_nothing_changes() {
        let mut result = JobResult { final_result: result_with("text", "+diff\n"), cache_entries: Vec::new() };
        let before = result.clone();
        JobRedactor::none().redact_result(&mut result).expect("fine");
        assert_eq!(result, before);
    }
}
