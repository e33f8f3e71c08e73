//! A job's log, live: `GET /api/v1/jobs/{id}/logs/stream` is a stream of server-sent events
//! (`text/event-stream`) that sends what the job has logged so far and then every new piece
//! as the executor reports it, until the job finishes. The web interface's workspace panel
//! reads it with `EventSource`; nothing polls the API.
//!
//! The executor routes announce each log write on [`LogUpdates`] (a broadcast of job ids), so
//! a stream on the same server wakes at once; it also re-reads every [`REREAD_EVERY`], which
//! covers executors reporting to another server of the same PostgreSQL database. Each read
//! asks the store only for what is new (`list_log_entries_since`: the entries from the last
//! one sent, its output from the offset already sent). Each event's id is `index:offset`, so a
//! reconnecting `EventSource` (which sends `Last-Event-ID`) continues where it stopped.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use flotilla_store::{JobId, LogEntry};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::SharedState;
use crate::access::RepositoryVisibility;
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};

/// How often a stream re-reads the log without being told of a write (and sends a keep-alive).
pub const REREAD_EVERY: Duration = Duration::from_secs(2);
/// The longest one stream lasts; the browser reconnects and continues from its last event.
const LONGEST_STREAM: Duration = Duration::from_secs(30 * 60);

pub fn router(state: SharedState) -> Router {
    Router::new().route("/api/v1/jobs/{id}/logs/stream", get(stream)).with_state(state)
}

/// Log writes announced to the open streams, and the server's shutdown (open streams end, so
/// a graceful shutdown does not wait for jobs to finish).
pub struct LogUpdates {
    sender: broadcast::Sender<JobId>,
    closing: CancellationToken,
}

impl Default for LogUpdates {
    fn default() -> LogUpdates {
        LogUpdates { sender: broadcast::channel(1024).0, closing: CancellationToken::new() }
    }
}

impl LogUpdates {
    /// Tells the streams of `job` that its log (or its state) changed.
    pub fn changed(&self, job: JobId) {
        // No receiver (no open stream) is the usual case, not an error.
        let _ = self.sender.send(job);
    }

    /// Ends every open stream (the server is stopping).
    pub fn close(&self) {
        self.closing.cancel();
    }
}

/// One event: a log entry's new output (appended at `offset`), and its exit code and duration
/// once it finished.
#[derive(Serialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
struct LogEvent {
    index: i64,
    key: String,
    command: Vec<String>,
    started_at_ms: i64,
    /// Where `output` goes in the entry's whole output (0 replaces it).
    offset: i64,
    output: String,
    exit_code: Option<i64>,
    duration_ms: Option<i64>,
}

/// How far the stream has sent: the last entry, the length of its output sent, and whether
/// its end (exit code) was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Cursor {
    index: i64,
    offset: i64,
    finished: bool,
}

impl Cursor {
    /// From `Last-Event-ID` (`index:offset`); a reconnect re-sends the last entry's end.
    fn parse(text: &str) -> Option<Cursor> {
        let (index, offset) = text.split_once(':')?;
        Some(Cursor { index: index.trim().parse().ok()?, offset: offset.trim().parse().ok()?, finished: false })
    }
}

/// The events for what a read since `cursor` returned, and the cursor after them. Pure, so
/// the rules are tested without a server.
fn events_since(cursor: Cursor, entries: Vec<LogEntry>) -> (Vec<LogEvent>, Cursor) {
    let mut next = cursor;
    let mut events = Vec::new();
    for entry in entries {
        let continuing = entry.entry_index == cursor.index;
        let end = entry.output_offset + entry.output.len() as i64;
        let finished = entry.exit_code.is_some();
        let news = !continuing || !entry.output.is_empty() || (finished && !cursor.finished);
        next = Cursor { index: entry.entry_index, offset: end, finished };
        if news {
            events.push(LogEvent {
                index: entry.entry_index,
                key: entry.key,
                command: serde_json::from_value(entry.command).unwrap_or_default(),
                started_at_ms: entry.started_at,
                offset: entry.output_offset,
                output: entry.output,
                exit_code: entry.exit_code,
                duration_ms: entry.duration_ms,
            });
        }
    }
    (events, next)
}

fn format_event(event: &LogEvent, id: Cursor) -> String {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    format!("id: {}:{}\nevent: log\ndata: {data}\n\n", id.index, id.offset)
}

struct Streaming {
    state: SharedState,
    job: JobId,
    cursor: Cursor,
    updates: broadcast::Receiver<JobId>,
    deadline: tokio::time::Instant,
    first: bool,
    done: bool,
}

async fn stream(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult<Response> {
    let caller = authenticate(&state, &headers).await?;
    let job = state.store.get_execution_job(JobId(id)).await.map_err(|_| ApiError::not_found(format!("no job {id}")))?;
    let workspace = state.store.get_workspace(job.workspace_id).await?;
    // A job on a repository the caller cannot read does not exist for them.
    let mut visibility = RepositoryVisibility::for_caller(&state, &caller).await?;
    if !visibility.can_read_id(&state, workspace.repository_id).await? {
        return Err(ApiError::not_found(format!("no job {id}")));
    }
    let cursor = headers.get("last-event-id").and_then(|value| value.to_str().ok()).and_then(Cursor::parse).unwrap_or_default();
    let streaming = Streaming {
        updates: state.log_updates.sender.subscribe(),
        state,
        job: job.id,
        cursor,
        deadline: tokio::time::Instant::now() + LONGEST_STREAM,
        first: true,
        done: false,
    };
    let body = futures_util::stream::unfold(streaming, |mut streaming| async move {
        if streaming.done {
            return None;
        }
        let chunk = next_chunk(&mut streaming).await;
        Some((Ok::<Bytes, Infallible>(Bytes::from(chunk)), streaming))
    });
    let mut response = Body::from_stream(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tells proxies such as nginx not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// Waits for news (unless this is the first read), then reads and formats it. Ends the
/// stream with an `end` event once the job is finished and everything was sent.
async fn next_chunk(streaming: &mut Streaming) -> String {
    if !streaming.first {
        let woken = tokio::select! {
            _ = streaming.state.log_updates.closing.cancelled() => None,
            _ = tokio::time::sleep_until(streaming.deadline) => None,
            woken = wait_for_job(&mut streaming.updates, streaming.job) => Some(woken),
        };
        if woken.is_none() {
            streaming.done = true;
            return String::new();
        }
    }
    streaming.first = false;
    // The job's state is read before its log: once a finished job's log is read, nothing
    // more can come.
    let finished = match streaming.state.store.get_execution_job(streaming.job).await {
        Ok(job) => job.state.is_terminal(),
        Err(error) => {
            streaming.done = true;
            return format!("event: error\ndata: {}\n\n", serde_json::json!({ "error": format!("reading the job: {error}") }));
        }
    };
    let entries = match streaming.state.store.list_log_entries_since(streaming.job, streaming.cursor.index, streaming.cursor.offset).await {
        Ok(entries) => entries,
        Err(error) => {
            streaming.done = true;
            return format!("event: error\ndata: {}\n\n", serde_json::json!({ "error": format!("reading the log: {error}") }));
        }
    };
    let (events, cursor) = events_since(streaming.cursor, entries);
    let mut chunk = String::new();
    for event in &events {
        let id = if event.index == cursor.index { cursor } else { Cursor { index: event.index, offset: event.offset + event.output.len() as i64, finished: true } };
        chunk.push_str(&format_event(event, id));
    }
    streaming.cursor = cursor;
    if finished {
        chunk.push_str("event: end\ndata: {}\n\n");
        streaming.done = true;
    } else if chunk.is_empty() {
        chunk.push_str(": keep-alive\n\n");
    }
    chunk
}

/// Returns when `job`'s log may have changed: announced, or after [`REREAD_EVERY`].
async fn wait_for_job(updates: &mut broadcast::Receiver<JobId>, job: JobId) {
    let timeout = tokio::time::sleep(REREAD_EVERY);
    tokio::pin!(timeout);
    loop {
        tokio::select! {
            _ = &mut timeout => return,
            received = updates.recv() => match received {
                Ok(id) if id == job => return,
                Ok(_) => {}
                // Missed announcements may include this job's: read again.
                Err(broadcast::error::RecvError::Lagged(_)) => return,
                Err(broadcast::error::RecvError::Closed) => {
                    (&mut timeout).await;
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: i64, output: &str, offset: i64, exit_code: Option<i64>) -> LogEntry {
        LogEntry {
            job_id: JobId(1),
            entry_index: index,
            key: format!("step.{index}"),
            command: serde_json::json!(["sh", "-c", "echo"]),
            started_at: 5,
            exit_code,
            duration_ms: exit_code.map(|_| 10),
            output: output.to_owned(),
            output_offset: offset,
        }
    }

    #[test]
    fn the_first_read_sends_every_entry() {
        let (events, cursor) = events_since(Cursor::default(), vec![entry(0, "fetched\n", 0, Some(0)), entry(1, "hello\n", 0, None)]);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].output, "hello\n");
        assert_eq!(cursor, Cursor { index: 1, offset: 6, finished: false });
    }

    #[test]
    fn later_reads_send_only_new_output_and_the_end_once() {
        let start = Cursor { index: 1, offset: 6, finished: false };
        let (events, cursor) = events_since(start, vec![entry(1, "", 6, None)]);
        assert!(events.is_empty());
        assert_eq!(cursor, start);
        let (events, cursor) = events_since(start, vec![entry(1, "world\n", 6, Some(0))]);
        assert_eq!(events.len(), 1);
        assert_eq!((events[0].offset, events[0].output.as_str(), events[0].exit_code), (6, "world\n", Some(0)));
        assert_eq!(cursor, Cursor { index: 1, offset: 12, finished: true });
        let (events, _) = events_since(cursor, vec![entry(1, "", 12, Some(0))]);
        assert!(events.is_empty(), "a finished entry is not sent again");
        let (events, cursor) = events_since(cursor, vec![entry(1, "", 12, Some(0)), entry(2, "", 0, None)]);
        assert_eq!(events.len(), 1, "a new entry is sent even before it has output");
        assert_eq!(cursor, Cursor { index: 2, offset: 0, finished: false });
    }

    #[test]
    fn last_event_id_resumes() {
        assert_eq!(Cursor::parse("3:120"), Some(Cursor { index: 3, offset: 120, finished: false }));
        assert_eq!(Cursor::parse("nonsense"), None);
        let text = format_event(&events_since(Cursor::default(), vec![entry(0, "a\nb\n", 0, None)]).0[0], Cursor { index: 0, offset: 4, finished: false });
        assert!(text.starts_with("id: 0:4\nevent: log\ndata: {"), "{text}");
        assert!(text.ends_with("}\n\n") && text.matches('\n').count() == 4, "one data line: {text}");
    }
}
