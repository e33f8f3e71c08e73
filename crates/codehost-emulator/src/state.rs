//! The emulator's memory: repositories, pull requests, comments, reviews, check runs, injected
//! faults and the rate-limit counters. Plain data behind one mutex, never held across an
//! `.await`; git repositories themselves live on disk (see `git`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone)]
pub struct Repository {
    pub id: u64,
    pub owner: String,
    pub name: String,
    pub private: bool,
    pub archived: bool,
    pub fork: bool,
    pub default_branch: String,
    pub git_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct PullRequest {
    pub id: u64,
    pub number: u64,
    pub node_id: String,
    pub open: bool,
    pub draft: bool,
    pub merged: bool,
    pub merged_at: Option<String>,
    pub title: String,
    pub body: String,
    pub head: String,
    pub base: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comment {
    pub id: u64,
    pub body: String,
    pub user: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Review {
    pub user: String,
    /// `APPROVED`, `CHANGES_REQUESTED`, `COMMENTED` or `DISMISSED`.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckRun {
    pub name: String,
    /// `queued`, `in_progress` or `completed`.
    pub status: String,
    /// `success`, `failure`, ... once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// One misbehaviour, served instead of (or before) the next API request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Fault {
    /// An error status (500, 502, 503...) with GitHub's error body.
    ServerError { status: u16 },
    /// 429 with `Retry-After`.
    TooManyRequests { retry_after_secs: u64 },
    /// GitHub's secondary limit: 403 with `Retry-After` and its message.
    SecondaryLimit { retry_after_secs: u64 },
    /// The request is answered normally, after this delay.
    Slow { millis: u64 },
}

/// A primary rate limit: `limit` requests per token per `period_secs`, in windows aligned to
/// the Unix epoch so `X-RateLimit-Reset` is a whole second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitConfig {
    pub limit: u64,
    pub period_secs: u64,
}

/// What the emulator counted, for tests to assert on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// API requests received (git and admin requests are not counted).
    pub requests: u64,
    /// Requests refused because the primary rate limit was used up.
    pub rate_limit_rejections: u64,
    /// Injected faults served.
    pub faults_served: u64,
}

#[derive(Debug, Default)]
pub struct RepositoryState {
    pub repository: Option<Repository>,
    pub pulls: Vec<PullRequest>,
    pub comments: BTreeMap<u64, Vec<Comment>>,
    pub reviews: BTreeMap<u64, Vec<Review>>,
    /// Check runs by commit id.
    pub checks: BTreeMap<String, Vec<CheckRun>>,
    /// Bitbucket's optimistic-lock `version` per pull request number: the changes made
    /// through the Bitbucket face (absent: 0).
    pub bitbucket_versions: BTreeMap<u64, u64>,
}

#[derive(Debug, Default)]
pub struct State {
    /// By `(owner, name)`.
    pub repositories: BTreeMap<(String, String), RepositoryState>,
    pub faults: VecDeque<Fault>,
    /// An outage: phases in order, each fault answering every API request until its moment.
    pub outage: Vec<(Fault, SystemTime)>,
    pub rate_limit: Option<RateLimitConfig>,
    /// Per token: (window index, requests used in it).
    pub usage: BTreeMap<String, (u64, u64)>,
    pub tokens: BTreeSet<String>,
    pub stats: Stats,
    pub next_id: u64,
}

impl State {
    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn repository(&self, owner: &str, name: &str) -> Option<&RepositoryState> {
        self.repositories.get(&(owner.to_owned(), name.to_owned())).filter(|state| state.repository.is_some())
    }

    pub fn repository_mut(&mut self, owner: &str, name: &str) -> Option<&mut RepositoryState> {
        self.repositories.get_mut(&(owner.to_owned(), name.to_owned())).filter(|state| state.repository.is_some())
    }
}

/// What the rate limiter says about one request.
pub struct RateLimitDecision {
    pub allowed: bool,
    pub limit: u64,
    pub remaining: u64,
    pub used: u64,
    pub reset: u64,
}

/// Without a configured limit the headers still appear (as GitHub always sends them), showing
/// a full budget that never runs down.
const UNLIMITED: u64 = 5000;

impl State {
    pub fn count_request(&mut self, token: &str, now: SystemTime) -> RateLimitDecision {
        let now_secs = now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
        let Some(config) = self.rate_limit else {
            return RateLimitDecision { allowed: true, limit: UNLIMITED, remaining: UNLIMITED, used: 0, reset: now_secs + 3600 };
        };
        let period = config.period_secs.max(1);
        let window = now_secs / period;
        let reset = (window + 1) * period;
        let usage = self.usage.entry(token.to_owned()).or_insert((window, 0));
        if usage.0 != window {
            *usage = (window, 0);
        }
        if usage.1 >= config.limit {
            self.stats.rate_limit_rejections += 1;
            return RateLimitDecision { allowed: false, limit: config.limit, remaining: 0, used: usage.1, reset };
        }
        usage.1 += 1;
        RateLimitDecision { allowed: true, limit: config.limit, remaining: config.limit - usage.1, used: usage.1, reset }
    }
}

/// RFC 3339 in UTC, as GitHub writes timestamps.
pub fn timestamp(time: SystemTime) -> String {
    let seconds = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Milliseconds since the epoch of a [`timestamp`] (`YYYY-MM-DDTHH:MM:SSZ`); its inverse.
pub fn timestamp_millis(timestamp: &str) -> i64 {
    let number = |range: std::ops::Range<usize>| timestamp.get(range).and_then(|part| part.parse::<i64>().ok()).unwrap_or(0);
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute, second) = (number(11..13), number(14..16), number(17..19));
    // Howard Hinnant's days-from-civil.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    ((days * 86_400) + hour * 3600 + minute * 60 + second) * 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339() {
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(SystemTime::UNIX_EPOCH + Duration::from_secs(1_709_210_096)), "2024-02-29T12:34:56Z");
    }

    #[test]
    fn the_rate_limit_refuses_past_the_limit_and_resets_with_the_window() {
        let mut state = State { rate_limit: Some(RateLimitConfig { limit: 2, period_secs: 10 }), ..State::default() };
        let at = |seconds| SystemTime::UNIX_EPOCH + Duration::from_secs(seconds);
        assert!(state.count_request("t", at(100)).allowed);
        let second = state.count_request("t", at(101));
        assert!(second.allowed && second.remaining == 0 && second.reset == 110);
        assert!(!state.count_request("t", at(109)).allowed);
        assert!(state.count_request("other", at(109)).allowed, "budgets are per token");
        assert!(state.count_request("t", at(110)).allowed);
        assert_eq!(state.stats.rate_limit_rejections, 1);
    }
}
