//! Rollout windows: when, and how fast, changesets reach the code hosts (Sourcegraph's
//! `batchChanges.rolloutWindows`).
//!
//! Opening thousands of pull requests at once floods reviewers and CI, and trips GitHub's
//! secondary limits. An admin can therefore start the server with a list of windows, each
//! `{rate, days?, start?, end?}` (times in UTC, `HH:MM`; `rate` is `unlimited`, `N/second`,
//! `N/minute`, `N/hour`, or `0` to pause). With windows configured, what an apply or a bulk
//! publish sends to the reconciler is parked as `scheduled`, and [`run_scheduler`] releases it,
//! oldest first, one at a time at the active window's rate (a leaky bucket). The last window
//! that covers the current moment is the active one; when none does, nothing is released. An
//! empty list therefore pauses publishing entirely, as in Sourcegraph. Without windows
//! (the default) changesets go straight to the reconciler.
//!
//! Bulk comment, merge, close and retry, and closing a batch change, are a person acting now
//! and are not scheduled. Parsing and window selection are pure functions, tested below; the
//! scheduler loop only reads the clock and the store.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::SharedState;

/// How fast changesets are released while a window is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rate {
    Unlimited,
    /// Nothing is released (rate `0`).
    Paused,
    /// One changeset per this interval.
    Every(Duration),
}

/// One rollout window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutWindow {
    pub rate: Rate,
    /// Weekdays it covers, 0 = Sunday; empty means every day.
    pub days: Vec<u8>,
    /// Minutes after midnight UTC, start inclusive and end exclusive; `None` means all day.
    pub hours: Option<(u32, u32)>,
}

const WEEKDAYS: [&str; 7] = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"];

/// Reads the windows from their JSON form (a YAML file is loaded into the same form). Errors
/// name the window and the field, and say what is accepted.
pub fn parse_windows(value: &Value) -> Result<Vec<RolloutWindow>, String> {
    let windows = value.as_array().ok_or("rollout windows must be a list of {rate, days, start, end} objects")?;
    windows.iter().enumerate().map(|(index, window)| parse_window(window).map_err(|error| format!("rollout window {}: {error}", index + 1))).collect()
}

fn parse_window(window: &Value) -> Result<RolloutWindow, String> {
    let object = window.as_object().ok_or("must be an object with rate, and optionally days, start and end")?;
    if let Some(unknown) = object.keys().find(|key| !matches!(key.as_str(), "rate" | "days" | "start" | "end")) {
        return Err(format!("unknown field {unknown:?} (use rate, days, start, end)"));
    }
    let rate = parse_rate(object.get("rate").ok_or("rate is required (\"unlimited\", \"10/hour\", \"2/minute\", or 0)")?)?;
    let days = match object.get("days") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(days)) => days
            .iter()
            .map(|day| {
                let name = day.as_str().map(str::to_ascii_lowercase).unwrap_or_default();
                WEEKDAYS.iter().position(|weekday| *weekday == name).map(|index| index as u8).ok_or_else(|| format!("{day} is not a weekday name (monday … sunday)"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("days must be a list of weekday names, not {other}")),
    };
    let time = |field: &str| -> Result<Option<u32>, String> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => parse_time(text).map(Some).ok_or_else(|| format!("{field} {text:?} is not a time of day as HH:MM (UTC)")),
            Some(other) => Err(format!("{field} must be a time of day as \"HH:MM\", not {other}")),
        }
    };
    let hours = match (time("start")?, time("end")?) {
        (None, None) => None,
        (Some(start), Some(end)) if start < end => Some((start, end)),
        (Some(_), Some(_)) => return Err("end must be later than start (windows do not cross midnight; use two windows)".into()),
        _ => return Err("start and end go together: give both or neither".into()),
    };
    Ok(RolloutWindow { rate, days, hours })
}

fn parse_rate(rate: &Value) -> Result<Rate, String> {
    let text = match rate {
        Value::Number(number) if number.as_u64() == Some(0) => return Ok(Rate::Paused),
        Value::String(text) => text.trim().to_ascii_lowercase(),
        other => return Err(format!("rate {other} is not \"unlimited\", \"N/second\", \"N/minute\", \"N/hour\" or 0")),
    };
    if text == "unlimited" {
        return Ok(Rate::Unlimited);
    }
    if text == "0" {
        return Ok(Rate::Paused);
    }
    let invalid = || format!("rate {text:?} is not \"unlimited\", \"N/second\", \"N/minute\", \"N/hour\" or 0");
    let (count, unit) = text.split_once('/').ok_or_else(invalid)?;
    let count: u64 = count.trim().parse().map_err(|_| invalid())?;
    let period = match unit.trim() {
        "second" | "sec" | "s" => Duration::from_secs(1),
        "minute" | "min" | "m" => Duration::from_secs(60),
        "hour" | "hr" | "h" => Duration::from_secs(3600),
        _ => return Err(invalid()),
    };
    Ok(if count == 0 { Rate::Paused } else { Rate::Every(period / count.min(u32::MAX as u64) as u32) })
}

/// `HH:MM` (24-hour) as minutes after midnight.
fn parse_time(text: &str) -> Option<u32> {
    let (hours, minutes) = text.trim().split_once(':')?;
    let (hours, minutes): (u32, u32) = (hours.parse().ok()?, minutes.parse().ok()?);
    (hours < 24 && minutes < 60 && text.trim().len() <= 5).then_some(hours * 60 + minutes)
}

/// The rate in force at `now` (seconds since the Unix epoch, UTC): the last window covering
/// it, or `None` when no window does (nothing is released then).
pub fn active_rate(windows: &[RolloutWindow], now_secs: u64) -> Option<Rate> {
    let weekday = ((now_secs / 86_400 + 4) % 7) as u8; // 1970-01-01 was a Thursday.
    let minute = ((now_secs % 86_400) / 60) as u32;
    windows
        .iter()
        .rev()
        .find(|window| (window.days.is_empty() || window.days.contains(&weekday)) && window.hours.is_none_or(|(start, end)| start <= minute && minute < end))
        .map(|window| window.rate)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

/// Releases scheduled changesets to the reconciler at the active window's pace, until
/// `shutdown`. Does nothing when no windows are configured.
pub async fn run_scheduler(state: SharedState, shutdown: CancellationToken) {
    let Some(windows) = state.config.rollout_windows.clone() else { return };
    let mut idle = Duration::from_millis(250);
    // Several servers of one database would each release at the window's rate: one leads.
    let mut leadership = None;
    loop {
        if !crate::leadership::lead(&state, "rollout-scheduler", &mut leadership).await {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(crate::leadership::RETRY_EVERY) => continue,
            }
        }
        let rate = active_rate(&windows, now_secs());
        let (release, pause) = match rate {
            Some(Rate::Unlimited) => (1_000, Duration::ZERO),
            Some(Rate::Every(interval)) => (1, interval),
            // Outside every window, or paused: look again at the next minute, when a window
            // may open.
            Some(Rate::Paused) | None => (0, Duration::from_secs(60 - now_secs() % 60)),
        };
        let released = if release > 0 {
            match state.store.release_scheduled_changesets(release, flotilla_store::Clock::now_ms()).await {
                Ok(released) => released,
                Err(error) => {
                    tracing::warn!(%error, "releasing scheduled changesets failed; trying again");
                    0
                }
            }
        } else {
            0
        };
        let wait = if released > 0 {
            state.reconcile_requested.notify_waiters();
            idle = Duration::from_millis(250);
            pause
        } else if release > 0 {
            // Nothing scheduled: back off (up to 5 s) until an apply schedules something.
            idle = (idle * 2).min(Duration::from_secs(5));
            idle
        } else {
            pause
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(wait) => {}
            () = state.schedule_requested.notified(), if released == 0 && release > 0 => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rates_read_as_sourcegraph_writes_them() {
        let rate = |value: Value| parse_windows(&json!([{ "rate": value }])).map(|windows| windows[0].rate);
        assert_eq!(rate(json!("unlimited")), Ok(Rate::Unlimited));
        assert_eq!(rate(json!(0)), Ok(Rate::Paused));
        assert_eq!(rate(json!("0/hour")), Ok(Rate::Paused));
        assert_eq!(rate(json!("10/hour")), Ok(Rate::Every(Duration::from_secs(360))));
        assert_eq!(rate(json!("2/minute")), Ok(Rate::Every(Duration::from_secs(30))));
        assert_eq!(rate(json!("4/second")), Ok(Rate::Every(Duration::from_millis(250))));
        for bad in [json!("fast"), json!("10/day"), json!("x/hour"), json!(5), json!(true)] {
            let error = rate(bad.clone()).expect_err(&bad.to_string());
            assert!(error.starts_with("rollout window 1: rate"), "{error}");
        }
    }

    #[test]
    fn bad_windows_say_which_field_and_what_is_accepted() {
        let error = |value: Value| parse_windows(&value).expect_err(&value.to_string());
        assert!(error(json!({"rate": "unlimited"})).contains("must be a list"));
        assert!(error(json!([{"days": ["monday"]}])).contains("rate is required"));
        assert!(error(json!([{"rate": 0}, {"rate": 0, "days": ["funday"]}])).starts_with("rollout window 2: \"funday\" is not a weekday"));
        assert!(error(json!([{"rate": 0, "start": "10:00"}])).contains("start and end go together"));
        assert!(error(json!([{"rate": 0, "start": "18:00", "end": "09:00"}])).contains("end must be later than start"));
        assert!(error(json!([{"rate": 0, "start": "25:00", "end": "26:00"}])).contains("is not a time of day"));
        assert!(error(json!([{"rate": 0, "speed": 1}])).contains("unknown field \"speed\""));
    }

    #[test]
    fn the_last_window_covering_the_moment_sets_the_rate() {
        let windows = parse_windows(&json!([
            { "rate": "10/hour" },
            { "rate": "unlimited", "days": ["Saturday", "sunday"] },
            { "rate": 0, "days": ["monday"], "start": "09:00", "end": "12:00" },
        ]))
        .expect("valid");
        // 2026-11-30 was a Monday.
        let monday = 1_795_996_800; // 2026-11-30T00:00:00Z
        assert_eq!(active_rate(&windows, monday + 8 * 3600 + 59 * 60), Some(Rate::Every(Duration::from_secs(360))));
        assert_eq!(active_rate(&windows, monday + 9 * 3600), Some(Rate::Paused));
        assert_eq!(active_rate(&windows, monday + 11 * 3600 + 59 * 60 + 59), Some(Rate::Paused));
        assert_eq!(active_rate(&windows, monday + 12 * 3600), Some(Rate::Every(Duration::from_secs(360))));
        assert_eq!(active_rate(&windows, monday + 5 * 86_400 + 3600), Some(Rate::Unlimited), "Saturday");
        assert_eq!(active_rate(&windows, monday + 6 * 86_400 + 3600), Some(Rate::Unlimited), "Sunday");
    }

    #[test]
    fn outside_every_window_nothing_is_released() {
        let windows = parse_windows(&json!([{ "rate": "unlimited", "days": ["tuesday"], "start": "10:00", "end": "11:00" }])).expect("valid");
        let tuesday = 1_796_083_200; // 2026-12-01T00:00:00Z
        assert_eq!(active_rate(&windows, tuesday + 10 * 3600 + 30 * 60), Some(Rate::Unlimited));
        assert_eq!(active_rate(&windows, tuesday + 11 * 3600), None);
        assert_eq!(active_rate(&windows, tuesday - 3600), None, "Monday");
        assert_eq!(active_rate(&[], tuesday), None, "an empty list pauses everything");
    }
}
