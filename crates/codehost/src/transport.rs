//! The request loop every forge adapter shares: wait for the credential's rate-limit budget,
//! send, read the answer to the end, let the forge classify it, and retry transient failures
//! with backoff (or wait out a rate limit) within the bounds of the [`RetryPolicy`].
//!
//! What differs between forges (how to authenticate, which rate-limit headers they send, what
//! their status codes mean) is a [`Forge`] value; the loop itself exists once.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::budget::{RateLimitBudget, RateLimitHeaders, RetryPolicy};
use crate::error::CodeHostError;

/// What the loop needs to know about one forge's API.
pub(crate) struct Forge {
    /// For messages: "GitHub", "GitLab".
    pub name: &'static str,
    /// What the base URL should be, for the message when an answer cannot be read.
    pub api_hint: &'static str,
    pub rate_limit_headers: RateLimitHeaders,
    /// `None` when the answer is a success; otherwise what to do about it.
    pub classify: fn(&Reply, &str, SystemTime) -> Option<Verdict>,
}

/// A response read to the end.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub forge: &'static Forge,
}

impl Reply {
    pub fn json<T: DeserializeOwned>(&self, what: &str) -> Result<T, CodeHostError> {
        serde_json::from_slice(&self.body).map_err(|error| {
            CodeHostError::protocol(format!("{what}: {}'s answer could not be read ({error}); is the base URL {}?", self.forge.name, self.forge.api_hint))
        })
    }
}

/// What a failed attempt's answer means.
pub(crate) enum Verdict {
    /// Try again after at least `wait` (None: the policy's backoff).
    Retry { wait: Option<Duration>, message: String },
    /// A rate limit: nothing may be sent for `wait`.
    RateLimited { wait: Duration, message: String },
    Fail(CodeHostError),
}

/// One logical request with the budget, retries and rate-limit waits; `authorize` adds the
/// forge's credential to each attempt.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn send(
    forge: &'static Forge,
    client: &reqwest::Client,
    budget: &RateLimitBudget,
    retry: &RetryPolicy,
    authorize: impl Fn(RequestBuilder) -> RequestBuilder,
    method: Method,
    url: &str,
    query: &[(&str, String)],
    body: Option<&Value>,
    what: &str,
) -> Result<Reply, CodeHostError> {
    let name = forge.name;
    let mut failures = 0_u32;
    loop {
        if let Err(wait) = budget.acquire(retry.max_rate_limit_wait).await {
            return Err(CodeHostError::RateLimited { message: format!("{what}: {name}'s rate limit is used up"), retry_after: wait });
        }
        let mut request = authorize(client.request(method.clone(), url));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let verdict = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                forge.rate_limit_headers.observe(budget, &headers);
                match response.bytes().await {
                    Ok(body) => {
                        let reply = Reply { status, headers, body: body.to_vec(), forge };
                        match (forge.classify)(&reply, what, SystemTime::now()) {
                            None => return Ok(reply),
                            Some(verdict) => verdict,
                        }
                    }
                    Err(error) if error.is_timeout() => Verdict::Retry { wait: None, message: format!("{what}: {name} did not answer within the request timeout") },
                    Err(error) => Verdict::Retry { wait: None, message: format!("{what}: reading {name}'s answer failed: {}", describe(&error)) },
                }
            }
            Err(error) if error.is_builder() => return Err(CodeHostError::protocol(format!("{what}: {error}"))),
            Err(error) if error.is_timeout() => Verdict::Retry { wait: None, message: format!("{what}: {name} did not answer within the request timeout") },
            Err(error) => Verdict::Retry { wait: None, message: format!("{what}: {name} could not be reached: {}", describe(&error)) },
        };
        failures += 1;
        match verdict {
            Verdict::Fail(error) => return Err(error),
            Verdict::RateLimited { wait, message } => {
                tracing::info!(wait_ms = wait.as_millis() as u64, "{message}");
                budget.block_for(wait, SystemTime::now());
                if wait > retry.max_rate_limit_wait {
                    return Err(CodeHostError::RateLimited { message, retry_after: wait });
                }
                if failures >= retry.max_attempts {
                    // Still a rate limit, and said so: the caller waits for it, not for an outage.
                    return Err(CodeHostError::RateLimited { message: format!("{message} (gave up after {failures} attempts)"), retry_after: wait });
                }
            }
            Verdict::Retry { wait, message } => {
                if failures >= retry.max_attempts {
                    return Err(CodeHostError::Transient { message: format!("{message} (gave up after {failures} attempts)"), retry_after: wait });
                }
                let backoff = retry.backoff(failures).max(wait.unwrap_or_default());
                tracing::info!(attempt = failures, backoff_ms = backoff.as_millis() as u64, "{message}; retrying");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// reqwest's `Display` hides the cause ("error sending request for url"); the chain says why
/// (connection refused, reset, a TLS failure).
fn describe(error: &reqwest::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

/// The `rel="next"` target of a `Link` header (GitHub, GitLab and Gitea paginate with it).
pub(crate) fn next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, parameters) = part.split_once(';')?;
        let is_next = parameters.split(';').any(|parameter| {
            let parameter = parameter.trim();
            parameter == "rel=\"next\"" || parameter == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_owned())
    })
}

/// A branch name without `refs/heads/`.
pub(crate) fn branch_name(reference: &str) -> &str {
    reference.strip_prefix("refs/heads/").unwrap_or(reference)
}

/// An owner, repository or project name as one URL path segment (RFC 3986 unreserved bytes
/// kept, every other byte percent-encoded).
pub(crate) fn encode_segment(segment: &str) -> String {
    let mut encoded = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}
