//! The HTTP client for the server's executor API (`/.executors/...`): dequeue and heartbeat
//! with the executor token, log entries and results with each job's own token.
//!
//! Every call has a timeout; connection failures, timeouts and 5xx answers are retried with
//! exponential backoff, because the server may restart under a running executor and the
//! executor must reconnect by itself. A 404 or 409 on a job route means the server no longer
//! considers the job ours ([`ClientError::JobGone`]): the caller stops working on it.
//!
//! The server URL may be a comma-separated list: the servers of one PostgreSQL database (see
//! RELIABILITY.md, "Running two servers"). Every server answers every call (jobs, job tokens
//! and logs live in the database), so the client uses one and moves to the next as soon as a
//! call to it fails in a way that retrying could fix; the retry then goes to the next server.

use std::time::Duration;

use flotilla_wire::executor::{
    DequeueRequest, ErrorBody, HeartbeatRequest, HeartbeatResponse, Job, JobFailure, JobResult, LogEntryCreated, LogEntryStart,
    LogEntryUpdate,
};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long one request may take in total.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAXIMUM_BACKOFF: Duration = Duration::from_secs(5);

/// How often a call is tried before its error is returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retries {
    /// One attempt: for calls that are repeated anyway (intermediate log updates).
    Once,
    /// A few attempts over about a second: dequeue and heartbeat, which their loops repeat.
    Few,
    /// Attempts over about half a minute: results and final log writes, which must arrive.
    Persistent,
}

impl Retries {
    fn attempts(self) -> u32 {
        match self {
            Retries::Once => 1,
            Retries::Few => 3,
            Retries::Persistent => 10,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the server no longer considers job {job_id} this executor's (HTTP {status}: {message}); the job was stopped")]
    JobGone { job_id: i64, status: u16, message: String },
    #[error("the server rejected the executor token (HTTP {status}: {message}); check that the executor token matches the server's")]
    Unauthorized { status: u16, message: String },
    #[error("{method} {path} failed with HTTP {status}: {message}")]
    Status { method: String, path: String, status: u16, message: String },
    #[error("cannot reach the Flotilla server at {url}: {message}; check that it runs and that the server URL is right")]
    Unreachable { url: String, message: String },
    #[error("the server's answer to {path} is not what this executor understands: {message}; are the server and executor the same version?")]
    InvalidResponse { path: String, message: String },
    #[error("cannot build the HTTP client: {0}")]
    Setup(String),
}

impl ClientError {
    /// Whether the call may succeed when tried again (the server restarting or overloaded).
    fn is_transient(&self) -> bool {
        match self {
            ClientError::Unreachable { .. } => true,
            ClientError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Authorisation of a request: the shared executor token or one job's token.
#[derive(Clone, Copy, Debug)]
enum Authorization<'a> {
    Executor,
    Job { id: i64, token: &'a str },
}

/// A client for one server, or for several servers of one database with failover.
#[derive(Clone, Debug)]
pub struct ExecutorClient {
    http: reqwest::Client,
    servers: std::sync::Arc<[String]>,
    /// The server calls go to (an index into `servers`), shared by every clone.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    executor_token: String,
}

/// `http://a:7080/, http://b:7080` → the URLs without trailing slashes, in order.
pub fn parse_server_urls(server_urls: &str) -> Vec<String> {
    server_urls.split(',').map(|url| url.trim().trim_end_matches('/')).filter(|url| !url.is_empty()).map(str::to_owned).collect()
}

impl ExecutorClient {
    /// A client for the server at `server_url` (e.g. `http://127.0.0.1:7080`), or for the
    /// servers of a comma-separated list (`http://a:7080,http://b:7080`), used one at a time.
    pub fn new(server_url: &str, executor_token: &str) -> Result<ExecutorClient, ClientError> {
        let servers = parse_server_urls(server_url);
        if servers.is_empty() {
            return Err(ClientError::Setup(format!("no server URL in {server_url:?}: pass --url http://HOST:PORT (several separated by commas)")));
        }
        // reqwest is built without a default TLS provider (see the workspace manifest); the
        // ring provider serves `https://` server URLs. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("flotilla-executor/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::Setup(error.to_string()))?;
        Ok(ExecutorClient {
            http,
            servers: servers.into(),
            current: std::sync::Arc::default(),
            executor_token: executor_token.to_owned(),
        })
    }

    /// The base URL of the server calls go to now, without a trailing slash.
    pub fn base_url(&self) -> &str {
        let index = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.servers.len();
        &self.servers[index]
    }

    /// Moves to the next server of the list after a failure of `failed` (a base URL this client
    /// used); does nothing with one server, or when another call already moved on from it.
    pub fn fail_over_from(&self, failed: &str) {
        if self.servers.len() < 2 {
            return;
        }
        let index = self.current.load(std::sync::atomic::Ordering::Relaxed) % self.servers.len();
        if self.servers[index] != failed {
            return;
        }
        let next = (index + 1) % self.servers.len();
        if self
            .current
            .compare_exchange(index, next, std::sync::atomic::Ordering::Relaxed, std::sync::atomic::Ordering::Relaxed)
            .is_ok()
        {
            tracing::warn!(failed, next = %self.servers[next], "the server stopped answering; using the next one");
        }
    }

    /// How many servers this client may use.
    pub fn server_count(&self) -> usize {
        self.servers.len()
    }

    /// Asks for a job; `None` when there is nothing to do.
    pub async fn dequeue(&self, request: &DequeueRequest) -> Result<Option<Job>, ClientError> {
        self.call(Method::POST, "/.executors/queue/dequeue", Authorization::Executor, Some(request), Retries::Few).await
    }

    pub async fn heartbeat(&self, request: &HeartbeatRequest) -> Result<HeartbeatResponse, ClientError> {
        let path = "/.executors/queue/heartbeat";
        let response: Option<HeartbeatResponse> = self.call(Method::POST, path, Authorization::Executor, Some(request), Retries::Few).await?;
        response.ok_or_else(|| ClientError::InvalidResponse { path: path.to_owned(), message: "no body".to_owned() })
    }

    /// Starts a log entry of a job; returns its index.
    pub async fn start_log_entry(&self, job: &Job, entry: &LogEntryStart, retries: Retries) -> Result<i64, ClientError> {
        let path = format!("/.executors/jobs/{}/log", job.id);
        let created: Option<LogEntryCreated> =
            self.call(Method::POST, &path, Authorization::Job { id: job.id, token: &job.token }, Some(entry), retries).await?;
        created.map(|created| created.index).ok_or(ClientError::InvalidResponse { path, message: "no body".to_owned() })
    }

    pub async fn update_log_entry(&self, job: &Job, index: i64, update: &LogEntryUpdate, retries: Retries) -> Result<(), ClientError> {
        let path = format!("/.executors/jobs/{}/log/{index}", job.id);
        self.call::<_, serde_json::Value>(Method::PATCH, &path, Authorization::Job { id: job.id, token: &job.token }, Some(update), retries)
            .await
            .map(drop)
    }

    pub async fn complete(&self, job: &Job, result: &JobResult) -> Result<(), ClientError> {
        let path = format!("/.executors/jobs/{}/complete", job.id);
        self.call::<_, serde_json::Value>(Method::POST, &path, Authorization::Job { id: job.id, token: &job.token }, Some(result), Retries::Persistent)
            .await
            .map(drop)
    }

    pub async fn fail(&self, job: &Job, failure: &JobFailure) -> Result<(), ClientError> {
        let path = format!("/.executors/jobs/{}/fail", job.id);
        self.call::<_, serde_json::Value>(Method::POST, &path, Authorization::Job { id: job.id, token: &job.token }, Some(failure), Retries::Persistent)
            .await
            .map(drop)
    }

    /// Downloads a file of the job (a mount file), with retries.
    pub async fn download(&self, job: &Job, path: &str) -> Result<Vec<u8>, ClientError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let server = self.base_url().to_owned();
            match self.download_once(&server, job, path).await {
                Err(error) if error.is_transient() && attempt < Retries::Few.attempts() => {
                    self.fail_over_from(&server);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAXIMUM_BACKOFF);
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn download_once(&self, server: &str, job: &Job, path: &str) -> Result<Vec<u8>, ClientError> {
        let url = format!("{server}{path}");
        let unreachable = |error: reqwest::Error| ClientError::Unreachable { url: server.to_owned(), message: describe_reqwest_error(&error) };
        let response = self.http.get(&url).bearer_auth(&job.token).send().await.map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|body| body.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(500).collect());
        Err(ClientError::Status { method: "GET".to_owned(), path: path.to_owned(), status: status.as_u16(), message })
    }

    /// One API call with retries. `Ok(None)` for an empty answer (204).
    async fn call<Body: Serialize, Answer: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        authorization: Authorization<'_>,
        body: Option<&Body>,
        retries: Retries,
    ) -> Result<Option<Answer>, ClientError> {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let server = self.base_url().to_owned();
            match self.call_once(&server, method.clone(), path, authorization, body).await {
                // With several servers, the next one is tried; a single call (`Once`) moves on
                // too, so the call that follows goes to a server that answers.
                Err(error) if error.is_transient() && attempt < retries.attempts() => {
                    self.fail_over_from(&server);
                    tracing::debug!(path, attempt, %error, "retrying an executor API call");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAXIMUM_BACKOFF);
                    attempt += 1;
                }
                Err(error) => {
                    if error.is_transient() {
                        self.fail_over_from(&server);
                    }
                    return Err(error);
                }
                result => return result,
            }
        }
    }

    async fn call_once<Body: Serialize, Answer: DeserializeOwned>(
        &self,
        server: &str,
        method: Method,
        path: &str,
        authorization: Authorization<'_>,
        body: Option<&Body>,
    ) -> Result<Option<Answer>, ClientError> {
        let url = format!("{server}{path}");
        let mut request = self.http.request(method.clone(), &url);
        request = match authorization {
            Authorization::Executor => request.header("Authorization", format!("token-executor {}", self.executor_token)),
            Authorization::Job { token, .. } => request.bearer_auth(token),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| ClientError::Unreachable { url: server.to_owned(), message: describe_reqwest_error(&error) })?;
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|error| ClientError::Unreachable { url: server.to_owned(), message: describe_reqwest_error(&error) })?;
        if status.is_success() {
            if bytes.is_empty() {
                return Ok(None);
            }
            return serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|error| ClientError::InvalidResponse { path: path.to_owned(), message: error.to_string() });
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .map(|body| body.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).chars().take(500).collect());
        let status_code = status.as_u16();
        match (authorization, status) {
            (Authorization::Job { id, .. }, StatusCode::NOT_FOUND | StatusCode::CONFLICT) => {
                Err(ClientError::JobGone { job_id: id, status: status_code, message })
            }
            (Authorization::Executor, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                Err(ClientError::Unauthorized { status: status_code, message })
            }
            _ => Err(ClientError::Status { method: method.to_string(), path: path.to_owned(), status: status_code, message }),
        }
    }
}

/// reqwest's `Display` hides the cause ("error sending request"); the chain says why.
fn describe_reqwest_error(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_of_servers_is_read_in_order_without_blanks_or_trailing_slashes() {
        assert_eq!(parse_server_urls("http://a:7080/, http://b:7080 ,,"), vec!["http://a:7080", "http://b:7080"]);
        assert_eq!(parse_server_urls("http://only:7080"), vec!["http://only:7080"]);
        assert!(parse_server_urls(" , ").is_empty());
        assert!(ExecutorClient::new(" ", "token").is_err());
    }

    #[test]
    fn a_failure_moves_every_clone_to_the_next_server_once() {
        let client = ExecutorClient::new("http://a:1,http://b:2", "token").expect("client");
        let clone = client.clone();
        assert_eq!(client.base_url(), "http://a:1");
        client.fail_over_from("http://a:1");
        // A second call that failed on the same server does not skip the next one.
        clone.fail_over_from("http://a:1");
        assert_eq!((client.base_url(), clone.base_url()), ("http://b:2", "http://b:2"));
        clone.fail_over_from("http://b:2");
        assert_eq!(client.base_url(), "http://a:1", "the list wraps around");
        let single = ExecutorClient::new("http://only:1", "token").expect("client");
        single.fail_over_from("http://only:1");
        assert_eq!(single.base_url(), "http://only:1");
    }

    #[tokio::test]
    async fn a_call_to_a_dead_server_is_retried_on_the_next_one() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let dead_url = format!("http://{}", dead.local_addr().expect("address"));
        drop(dead);
        let alive = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let alive_url = format!("http://{}", alive.local_addr().expect("address"));
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = alive.accept().await {
                let mut buffer = vec![0u8; 4096];
                let _ = stream.read(&mut buffer).await;
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n").await;
            }
        });
        let client = ExecutorClient::new(&format!("{dead_url},{alive_url}"), "token").expect("client");
        let request = DequeueRequest { executor: flotilla_wire::executor::ExecutorDescription::default() };
        let answer = client.dequeue(&request).await.expect("the second server answers");
        assert!(answer.is_none());
        assert_eq!(client.base_url(), alive_url);
    }
}
