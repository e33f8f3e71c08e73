//! `/metrics`: Prometheus text for the queue (the depth an autoscaler scales executors on),
//! jobs by state, live executors, and how long jobs take.
//!
//! Gauges are read from the store at scrape time, so every server of a scaled-out
//! installation reports the same queue. Job durations are a histogram this server process
//! observes as executors report jobs finished (Prometheus sums them across servers).

use std::sync::Mutex;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use flotilla_store::Clock;

use crate::SharedState;
use crate::error::ApiResult;

/// Upper bounds of the job duration buckets, in seconds.
const DURATION_BUCKETS: [f64; 11] = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0];

/// A Prometheus histogram of job durations, by outcome.
#[derive(Default)]
pub struct JobDurations {
    outcomes: Mutex<Vec<(&'static str, Histogram)>>,
}

#[derive(Clone, Default)]
struct Histogram {
    counts: [u64; DURATION_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl JobDurations {
    /// Records a finished job (`outcome` is "completed" or "failed").
    pub fn observe(&self, outcome: &'static str, seconds: f64) {
        let mut outcomes = self.outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let index = match outcomes.iter().position(|(name, _)| *name == outcome) {
            Some(index) => index,
            None => {
                outcomes.push((outcome, Histogram::default()));
                outcomes.len() - 1
            }
        };
        let histogram = &mut outcomes[index].1;
        for (bucket, bound) in histogram.counts.iter_mut().zip(DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        histogram.count += 1;
        histogram.sum += seconds;
    }

    /// Records a job that started at `started_at_ms` (if it did) and finished now.
    pub fn observe_job(&self, outcome: &'static str, started_at_ms: Option<i64>) {
        if let Some(started) = started_at_ms {
            self.observe(outcome, (Clock::now_ms() - started).max(0) as f64 / 1000.0);
        }
    }

    fn render(&self, text: &mut String) {
        text.push_str("# HELP flotilla_job_duration_seconds Time from dequeue to the executor's report, by outcome.\n");
        text.push_str("# TYPE flotilla_job_duration_seconds histogram\n");
        let outcomes = self.outcomes.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        for (outcome, histogram) in outcomes {
            for (count, bound) in histogram.counts.iter().zip(DURATION_BUCKETS) {
                text.push_str(&format!("flotilla_job_duration_seconds_bucket{{outcome=\"{outcome}\",le=\"{bound}\"}} {count}\n"));
            }
            text.push_str(&format!("flotilla_job_duration_seconds_bucket{{outcome=\"{outcome}\",le=\"+Inf\"}} {}\n", histogram.count));
            text.push_str(&format!("flotilla_job_duration_seconds_sum{{outcome=\"{outcome}\"}} {}\n", histogram.sum));
            text.push_str(&format!("flotilla_job_duration_seconds_count{{outcome=\"{outcome}\"}} {}\n", histogram.count));
        }
    }
}

pub async fn metrics(State(state): State<SharedState>) -> ApiResult<Response> {
    let depth = state.store.queue_depth().await?;
    let counts = state.store.jobs_by_state().await?;
    let executors = state.store.list_executors(Clock::now_ms() - 60_000).await?.len();
    let mut text = String::new();
    text.push_str("# HELP flotilla_queue_depth Workspace jobs waiting for an executor.\n# TYPE flotilla_queue_depth gauge\n");
    text.push_str(&format!("flotilla_queue_depth {depth}\n"));
    text.push_str("# HELP flotilla_jobs Workspace jobs by state.\n# TYPE flotilla_jobs gauge\n");
    for (name, value) in [
        ("queued", counts.queued),
        ("processing", counts.processing),
        ("canceling", counts.canceling),
        ("completed", counts.completed),
        ("failed", counts.failed),
        ("canceled", counts.canceled),
    ] {
        text.push_str(&format!("flotilla_jobs{{state=\"{name}\"}} {value}\n"));
    }
    text.push_str("# HELP flotilla_executors_alive Executors that sent a heartbeat in the last minute.\n# TYPE flotilla_executors_alive gauge\n");
    text.push_str(&format!("flotilla_executors_alive {executors}\n"));
    state.job_durations.render(&mut text);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_histogram_is_cumulative_per_outcome() {
        let durations = JobDurations::default();
        durations.observe("completed", 0.5);
        durations.observe("completed", 20.0);
        durations.observe("failed", 4000.0);
        let mut text = String::new();
        durations.render(&mut text);
        assert!(text.contains("flotilla_job_duration_seconds_bucket{outcome=\"completed\",le=\"1\"} 1\n"), "{text}");
        assert!(text.contains("flotilla_job_duration_seconds_bucket{outcome=\"completed\",le=\"30\"} 2\n"), "{text}");
        assert!(text.contains("flotilla_job_duration_seconds_bucket{outcome=\"completed\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("flotilla_job_duration_seconds_sum{outcome=\"completed\"} 20.5\n"), "{text}");
        assert!(text.contains("flotilla_job_duration_seconds_bucket{outcome=\"failed\",le=\"3600\"} 0\n"), "{text}");
        assert!(text.contains("flotilla_job_duration_seconds_count{outcome=\"failed\"} 1\n"), "{text}");
    }
}
