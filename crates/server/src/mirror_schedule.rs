//! When each mirror is next fetched by the periodic sync.
//!
//! Fetching every mirror every minute is fine for a hundred repositories and a constant load
//! at 45,000 (each fetch is at least one `git ls-remote`, a process and a request to the code
//! host). Most repositories change rarely, so, like Sourcegraph's update scheduler, a mirror
//! is fetched again after half the time since it last changed, between the sync interval
//! (one minute) and eight hours: a repository pushed to a minute ago is checked every minute,
//! one untouched for a week every eight hours. Webhooks and `flotilla repos sync` fetch at once
//! whatever the schedule says.
//!
//! The schedule lives in memory: after a restart every mirror is fetched once, which also
//! tells the schedule where each one stands.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use flotilla_store::RepositoryId;

/// The longest a mirror waits between two fetches.
pub const MAX_INTERVAL: Duration = Duration::from_secs(8 * 60 * 60);

/// The periodic sync's schedule.
pub struct SyncSchedule {
    min_interval: Duration,
    repositories: Mutex<HashMap<RepositoryId, Due>>,
}

#[derive(Clone, Copy, Debug)]
struct Due {
    last_change: Instant,
    next: Instant,
}

impl SyncSchedule {
    /// A schedule whose shortest interval is `min_interval` (the server's sync interval).
    pub fn new(min_interval: Duration) -> SyncSchedule {
        SyncSchedule { min_interval, repositories: Mutex::default() }
    }

    /// Whether the periodic sync should fetch `repository` at `now`: always for one the
    /// schedule has not seen yet.
    pub fn is_due(&self, repository: RepositoryId, now: Instant) -> bool {
        self.lock().get(&repository).is_none_or(|due| due.next <= now)
    }

    /// Records a sync of `repository` that finished at `now` and whether it changed anything
    /// (a new mirror counts as changed).
    pub fn record(&self, repository: RepositoryId, changed: bool, now: Instant) {
        let mut repositories = self.lock();
        let last_change = match repositories.get(&repository) {
            Some(due) if !changed => due.last_change,
            _ => now,
        };
        let interval = (now.saturating_duration_since(last_change) / 2).clamp(self.min_interval, MAX_INTERVAL.max(self.min_interval));
        repositories.insert(repository, Due { last_change, next: now + interval });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RepositoryId, Due>> {
        self.repositories.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn unseen_repositories_are_due_and_a_change_keeps_the_shortest_interval() {
        let schedule = SyncSchedule::new(MINUTE);
        let start = Instant::now();
        let repository = RepositoryId(7);
        assert!(schedule.is_due(repository, start));
        schedule.record(repository, true, start);
        assert!(!schedule.is_due(repository, start + MINUTE - Duration::from_secs(1)));
        assert!(schedule.is_due(repository, start + MINUTE));
        assert!(schedule.is_due(RepositoryId(8), start), "another repository is unaffected");
    }

    #[test]
    fn a_quiet_repository_is_fetched_ever_less_often_up_to_eight_hours() {
        let schedule = SyncSchedule::new(MINUTE);
        let start = Instant::now();
        let repository = RepositoryId(1);
        schedule.record(repository, true, start);
        // Unchanged for an hour: next fetch half an hour later.
        let hour_later = start + Duration::from_secs(3600);
        schedule.record(repository, false, hour_later);
        assert!(!schedule.is_due(repository, hour_later + Duration::from_secs(29 * 60)));
        assert!(schedule.is_due(repository, hour_later + Duration::from_secs(30 * 60)));
        // Unchanged for a week: eight hours, never more.
        let week_later = start + Duration::from_secs(7 * 24 * 3600);
        schedule.record(repository, false, week_later);
        assert!(!schedule.is_due(repository, week_later + MAX_INTERVAL - Duration::from_secs(1)));
        assert!(schedule.is_due(repository, week_later + MAX_INTERVAL));
        // A change brings it back to every minute.
        schedule.record(repository, true, week_later + MAX_INTERVAL);
        assert!(schedule.is_due(repository, week_later + MAX_INTERVAL + MINUTE));
    }
}
