//! The request budget of one code host credential, shared by every call made with it.
//!
//! Code hosts meter requests per credential, not per connection or per worker, so the budget
//! lives beside the credential and every adapter instance using that credential holds the same
//! `Arc<RateLimitBudget>`. It learns the limit from the host's rate-limit headers ([`RateLimitHeaders`]), hands
//! out the remaining requests one at a time, and when they run out makes callers wait for the
//! window to reset instead of sending a request the host would reject. A `Retry-After` (429 or
//! a secondary limit) blocks every caller for the time the host asked.
//!
//! The decision ([`RateLimitBudget::reserve`]) takes the time as a parameter so it is tested
//! without sleeping; [`RateLimitBudget::acquire`] is the sleeping wrapper the adapters use.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// How an adapter retries one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per call, the first included, before a transient failure is returned.
    pub max_attempts: u32,
    /// Wait after the first transient failure; doubled after each further one.
    pub initial_backoff: Duration,
    /// Upper bound of one backoff wait.
    pub max_backoff: Duration,
    /// The longest a call waits for a rate limit to reset; a longer wait is returned to the
    /// caller as `CodeHostError::RateLimited` so a worker is not parked for an hour.
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(15 * 60),
        }
    }
}

impl RetryPolicy {
    /// The wait after the `failures`-th consecutive transient failure (1-based).
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = failures.saturating_sub(1).min(20);
        self.initial_backoff.saturating_mul(1 << exponent).min(self.max_backoff)
    }
}

/// What [`RateLimitBudget::reserve`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// A request may be sent now (and has been counted).
    Go,
    /// Nothing may be sent for this long.
    Wait(Duration),
}

/// A margin added to the host's reset time, so a request is not sent in the last instant of
/// the old window.
const RESET_MARGIN: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct BudgetState {
    /// Requests per window, once a response has told us.
    limit: Option<u64>,
    /// Requests left in the current window, counting those already handed out.
    remaining: Option<u64>,
    /// When the current window ends.
    reset_at: Option<SystemTime>,
    /// No request before this (a `Retry-After`).
    blocked_until: Option<SystemTime>,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct RateLimitBudget {
    state: Mutex<BudgetState>,
}

impl RateLimitBudget {
    pub fn new() -> RateLimitBudget {
        RateLimitBudget::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BudgetState> {
        // The state is a handful of numbers updated in one step each, so a panic elsewhere
        // cannot leave it half-written: recovering from poisoning is safe.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides whether a request may go at `now`, and counts it if so.
    pub fn reserve(&self, now: SystemTime) -> Reservation {
        let mut state = self.lock();
        if let Some(blocked_until) = state.blocked_until {
            match blocked_until.duration_since(now) {
                Ok(wait) if !wait.is_zero() => return Reservation::Wait(wait),
                _ => state.blocked_until = None,
            }
        }
        if let Some(reset_at) = state.reset_at
            && now >= reset_at + RESET_MARGIN
        {
            // A new window: the full limit again, if we know it.
            state.remaining = state.limit;
            state.reset_at = None;
        }
        match state.remaining {
            Some(0) => match state.reset_at {
                Some(reset_at) => Reservation::Wait((reset_at + RESET_MARGIN).duration_since(now).unwrap_or(RESET_MARGIN)),
                // Exhausted with no known reset: the next response will tell; let one through.
                None => Reservation::Go,
            },
            Some(remaining) => {
                state.remaining = Some(remaining - 1);
                Reservation::Go
            }
            None => Reservation::Go,
        }
    }

    /// Waits until a request may be sent and counts it; `Err(wait)` without waiting when the
    /// wait would be longer than `max_wait`.
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Duration> {
        loop {
            match self.reserve(SystemTime::now()) {
                Reservation::Go => return Ok(()),
                Reservation::Wait(wait) if wait > max_wait => return Err(wait),
                Reservation::Wait(wait) => {
                    tracing::debug!(wait_ms = wait.as_millis() as u64, "waiting for the code host's rate limit");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Records what a response said about the budget: `X-RateLimit-Limit`, `-Remaining` and
    /// `-Reset` (Unix seconds).
    pub fn observe(&self, limit: Option<u64>, remaining: Option<u64>, reset_unix_seconds: Option<u64>) {
        let mut state = self.lock();
        if limit.is_some() {
            state.limit = limit;
        }
        let Some(remaining) = remaining else { return };
        let reset_at = reset_unix_seconds.map(|seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
        let same_window = reset_at.is_some() && reset_at == state.reset_at;
        state.remaining = match state.remaining {
            // Requests handed out after this one was sent are not in the host's count yet.
            Some(local) if same_window => Some(local.min(remaining)),
            _ => Some(remaining),
        };
        if reset_at.is_some() {
            state.reset_at = reset_at;
        }
    }

    /// Blocks every request until `now + wait` (the host's `Retry-After`).
    pub fn block_for(&self, wait: Duration, now: SystemTime) {
        let mut state = self.lock();
        let until = now + wait;
        if state.blocked_until.is_none_or(|current| current < until) {
            state.blocked_until = Some(until);
        }
    }
}

/// The response headers in which one host reports a credential's budget: GitHub sends
/// `X-RateLimit-Limit`, `-Remaining` and `-Reset`, GitLab the same without the `X-`. Both give
/// the reset as Unix seconds, so only the names differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: &'static str,
    pub remaining: &'static str,
    pub reset: &'static str,
}

impl RateLimitHeaders {
    pub const GITHUB: RateLimitHeaders =
        RateLimitHeaders { limit: "x-ratelimit-limit", remaining: "x-ratelimit-remaining", reset: "x-ratelimit-reset" };
    pub const GITLAB: RateLimitHeaders =
        RateLimitHeaders { limit: "ratelimit-limit", remaining: "ratelimit-remaining", reset: "ratelimit-reset" };

    /// Feeds what `headers` say into `budget`.
    pub fn observe(&self, budget: &RateLimitBudget, headers: &HeaderMap) {
        budget.observe(header_u64(headers, self.limit), header_u64(headers, self.remaining), header_u64(headers, self.reset));
    }

    /// The wait until the reset, when the headers say the budget is used up.
    pub fn exhausted_wait(&self, headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
        if header_u64(headers, self.remaining)? != 0 {
            return None;
        }
        let reset = SystemTime::UNIX_EPOCH + Duration::from_secs(header_u64(headers, self.reset)?);
        Some(reset.duration_since(now).unwrap_or_default() + RESET_MARGIN)
    }
}

/// A header holding a whole number, if it does.
pub fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// `Retry-After` in seconds or as an HTTP date (both hosts may send either).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn an_unknown_budget_lets_requests_through() {
        let budget = RateLimitBudget::new();
        assert_eq!(budget.reserve(at(100)), Reservation::Go);
        assert_eq!(budget.reserve(at(100)), Reservation::Go);
    }

    #[test]
    fn an_exhausted_budget_waits_for_the_reset_then_refills() {
        let budget = RateLimitBudget::new();
        budget.observe(Some(2), Some(1), Some(160));
        assert_eq!(budget.reserve(at(100)), Reservation::Go);
        assert_eq!(budget.reserve(at(100)), Reservation::Wait(Duration::from_secs(60) + RESET_MARGIN));
        assert_eq!(budget.reserve(at(161)), Reservation::Go);
        assert_eq!(budget.reserve(at(161)), Reservation::Go);
        // The new window's reset is unknown until a response says it: one more goes and asks.
        assert_eq!(budget.reserve(at(161)), Reservation::Go);
        budget.observe(Some(2), Some(0), Some(220));
        assert!(matches!(budget.reserve(at(161)), Reservation::Wait(_)));
    }

    #[test]
    fn requests_in_flight_are_not_given_out_twice() {
        let budget = RateLimitBudget::new();
        budget.observe(Some(10), Some(3), Some(200));
        for _ in 0..3 {
            assert_eq!(budget.reserve(at(100)), Reservation::Go);
        }
        // A late response from the same window that still says 2 left does not refill it.
        budget.observe(Some(10), Some(2), Some(200));
        assert!(matches!(budget.reserve(at(100)), Reservation::Wait(_)));
    }

    #[test]
    fn retry_after_blocks_everyone() {
        let budget = RateLimitBudget::new();
        budget.block_for(Duration::from_secs(5), at(100));
        assert_eq!(budget.reserve(at(101)), Reservation::Wait(Duration::from_secs(4)));
        assert_eq!(budget.reserve(at(105)), Reservation::Go);
    }

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let policy = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            max_rate_limit_wait: Duration::from_secs(1),
        };
        let waits: Vec<u128> = (1..=4).map(|failures| policy.backoff(failures).as_millis()).collect();
        assert_eq!(waits, [100, 200, 350, 350]);
        assert_eq!(policy.backoff(u32::MAX), Duration::from_millis(350));
    }
}
