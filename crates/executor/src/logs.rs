//! One entry of a job's execution log (`setup.fetch`, `step.N`), streamed to the server: the
//! full output so far at most once per second while the command runs, then a final write
//! with the exit code and duration. Everything is redacted before it leaves.

use std::time::{Duration, Instant};

use flotilla_wire::executor::{Job, LogEntryStart, LogEntryUpdate, MAX_LOG_ENTRY_BYTES};

use crate::client::{ClientError, ExecutorClient, Retries};
use crate::redact::Redactor;

/// The least time between two updates of the same entry (Sourcegraph's executors use 1 s).
pub const LOG_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// A started log entry.
pub struct LogEntry<'a> {
    client: &'a ExecutorClient,
    job: &'a Job,
    redactor: &'a Redactor,
    index: i64,
    output: String,
    started: Instant,
    last_update: Option<Instant>,
    /// Length of `output` when it was last sent, to skip updates that change nothing.
    sent_length: usize,
    /// Whether output was dropped because the entry reached its limit.
    truncated: bool,
}

impl<'a> LogEntry<'a> {
    /// Starts an entry named `key` for `command` (both redacted).
    pub async fn start(
        client: &'a ExecutorClient,
        job: &'a Job,
        redactor: &'a Redactor,
        key: &str,
        command: &[String],
    ) -> Result<LogEntry<'a>, ClientError> {
        let started_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let start = LogEntryStart {
            key: key.to_owned(),
            command: command.iter().map(|part| redactor.redact(part)).collect(),
            started_at_ms,
        };
        let index = client.start_log_entry(job, &start).await?;
        Ok(LogEntry { client, job, redactor, index, output: String::new(), started: Instant::now(), last_update: None, sent_length: 0, truncated: false })
    }

    /// Adds one line of output (without its newline), up to [`MAX_LOG_ENTRY_BYTES`]; the first
    /// line past it is replaced by a note that the log was cut.
    pub fn push_line(&mut self, line: &str) {
        if self.truncated {
            return;
        }
        if self.output.len() + line.len() + 1 > MAX_LOG_ENTRY_BYTES {
            self.truncated = true;
            self.output.push_str(&format!("[the log of this step was cut here: it keeps at most {MAX_LOG_ENTRY_BYTES} bytes]\n"));
            return;
        }
        self.output.push_str(line);
        self.output.push('\n');
    }

    /// When the next intermediate update may be sent, if there is anything new to send.
    pub fn next_update_due(&self) -> Option<Instant> {
        if self.output.len() == self.sent_length {
            return None;
        }
        Some(match self.last_update {
            Some(last) => last + LOG_UPDATE_INTERVAL,
            None => Instant::now(),
        })
    }

    /// Sends the output so far, once. Only [`ClientError::JobGone`] is returned: a lost
    /// intermediate update is repaired by the next one.
    pub async fn send_update(&mut self) -> Result<(), ClientError> {
        self.last_update = Some(Instant::now());
        self.sent_length = self.output.len();
        let update = LogEntryUpdate { output: self.redactor.redact(&self.output), exit_code: None, duration_ms: None };
        match self.client.update_log_entry(self.job, self.index, &update, Retries::Once).await {
            Err(error @ ClientError::JobGone { .. }) => Err(error),
            Err(error) => {
                tracing::debug!(job.id = self.job.id, %error, "a log update did not arrive; the next one repeats it");
                Ok(())
            }
            Ok(()) => Ok(()),
        }
    }

    /// The final write: all output, the exit code and the duration. It must arrive.
    pub async fn finish(self, exit_code: i32) -> Result<(), ClientError> {
        let duration_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let update = LogEntryUpdate { output: self.redactor.redact(&self.output), exit_code: Some(exit_code), duration_ms: Some(duration_ms) };
        self.client.update_log_entry(self.job, self.index, &update, Retries::Persistent).await
    }
}
