//! One entry of a job's execution log (`setup.fetch`, `step.N`), streamed to the server: the
//! full output so far at most once per second while the command runs, then a final write
//! with the exit code and duration. Everything is redacted before it leaves.
//!
//! The entry reaches the server only once its command has run for half a second (then it is
//! updated every second, as Sourcegraph's executors do) or when it finishes: a command that
//! takes less than that — most setup commands and many steps — costs one request, not
//! three. Across 45,000 workspaces that is most of the executor API's traffic.

use std::time::{Duration, Instant};

use flotilla_wire::executor::{Job, LogEntryStart, LogEntryUpdate, MAX_LOG_ENTRY_BYTES};

use crate::client::{ClientError, ExecutorClient, Retries};
use crate::redact::Redactor;

/// The least time between two updates of the same entry (Sourcegraph's executors use 1 s).
pub const LOG_UPDATE_INTERVAL: Duration = Duration::from_secs(1);

/// How long a command runs before its entry is sent: short enough that a line printed at the
/// start is visible within a second, long enough that most setup commands finish first.
pub const FIRST_SEND_DELAY: Duration = Duration::from_millis(500);

/// A log entry of a running command.
pub struct LogEntry<'a> {
    client: &'a ExecutorClient,
    job: &'a Job,
    redactor: &'a Redactor,
    key: String,
    /// Redacted already.
    command: Vec<String>,
    started_at_ms: i64,
    /// The entry's index on the server, once it was sent.
    index: Option<i64>,
    output: String,
    started: Instant,
    last_update: Option<Instant>,
    /// Length of `output` when it was last sent, to skip updates that change nothing.
    sent_length: usize,
    /// Whether output was dropped because the entry reached its limit.
    truncated: bool,
}

impl<'a> LogEntry<'a> {
    /// An entry named `key` for `command` (both redacted); nothing is sent yet.
    pub fn start(client: &'a ExecutorClient, job: &'a Job, redactor: &'a Redactor, key: &str, command: &[String]) -> LogEntry<'a> {
        let started_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        LogEntry {
            client,
            job,
            redactor,
            key: key.to_owned(),
            command: command.iter().map(|part| redactor.redact(part)).collect(),
            started_at_ms,
            index: None,
            output: String::new(),
            started: Instant::now(),
            last_update: None,
            sent_length: 0,
            truncated: false,
        }
    }

    fn whole(&self, exit_code: Option<i32>, duration_ms: Option<i64>) -> LogEntryStart {
        LogEntryStart {
            key: self.key.clone(),
            command: self.command.clone(),
            started_at_ms: self.started_at_ms,
            output: self.redactor.redact(&self.output),
            exit_code,
            duration_ms,
        }
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

    /// When the next intermediate update may be sent: [`FIRST_SEND_DELAY`] after the command
    /// started for an entry not sent yet (a second after a failed attempt), then a second
    /// after the last update when there is new output.
    pub fn next_update_due(&self) -> Option<Instant> {
        if self.index.is_none() {
            return Some(match self.last_update {
                Some(last) => last + LOG_UPDATE_INTERVAL,
                None => self.started + FIRST_SEND_DELAY,
            });
        }
        if self.output.len() == self.sent_length {
            return None;
        }
        Some(match self.last_update {
            Some(last) => last + LOG_UPDATE_INTERVAL,
            None => Instant::now(),
        })
    }

    /// Sends the output so far, once (creating the entry on the server the first time). Only
    /// [`ClientError::JobGone`] is returned: a lost update is repaired by the next one.
    pub async fn send_update(&mut self) -> Result<(), ClientError> {
        self.last_update = Some(Instant::now());
        let sent_length = self.output.len();
        let sent = match self.index {
            None => self.client.start_log_entry(self.job, &self.whole(None, None), Retries::Once).await.map(|index| self.index = Some(index)),
            Some(index) => {
                let update = LogEntryUpdate { output: self.redactor.redact(&self.output), exit_code: None, duration_ms: None };
                self.client.update_log_entry(self.job, index, &update, Retries::Once).await
            }
        };
        match sent {
            Err(error @ ClientError::JobGone { .. }) => Err(error),
            Err(error) => {
                tracing::debug!(job.id = self.job.id, %error, "a log update did not arrive; the next one repeats it");
                Ok(())
            }
            Ok(()) => {
                self.sent_length = sent_length;
                Ok(())
            }
        }
    }

    /// The final write: all output, the exit code and the duration (the whole entry in one
    /// request when it was never sent). It must arrive.
    pub async fn finish(self, exit_code: i32) -> Result<(), ClientError> {
        let duration_ms = i64::try_from(self.started.elapsed().as_millis()).unwrap_or(i64::MAX);
        match self.index {
            None => self.client.start_log_entry(self.job, &self.whole(Some(exit_code), Some(duration_ms)), Retries::Persistent).await.map(drop),
            Some(index) => {
                let update = LogEntryUpdate { output: self.redactor.redact(&self.output), exit_code: Some(exit_code), duration_ms: Some(duration_ms) };
                self.client.update_log_entry(self.job, index, &update, Retries::Persistent).await
            }
        }
    }
}
