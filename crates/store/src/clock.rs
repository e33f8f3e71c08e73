//! The one place the store reads the wall clock. Operations take `now_ms` from their caller so
//! tests (stalled jobs, token expiry) control time; production callers use [`Clock::now_ms`].

use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time in unix milliseconds, the unit of every timestamp column.
#[derive(Debug, Clone, Copy, Default)]
pub struct Clock;

impl Clock {
    /// Milliseconds since the unix epoch; 0 if the system clock is before 1970.
    pub fn now_ms() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
}
