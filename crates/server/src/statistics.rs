//! A batch change's statistics (changesets by the state a person sees) and its burndown chart
//! (those states over time), as Sourcegraph's `ChangesetsStats` and `changesetCountsOverTime`.
//!
//! Counts come from one grouped query over the changesets; the chart replays the
//! `changeset_events` history the reconciler and the sync append to (see
//! `flotilla_store::changeset_history`). Both folds are pure functions over those rows, tested
//! below, so the API handler only loads and returns.

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use flotilla_store::{ChangesetEvent, ChangesetStateCount, Clock};
use flotilla_wire::api::{BatchChangeStatistics, BurndownPoint, ChangesetStatistics};
use serde::Deserialize;

use crate::SharedState;
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};

/// Most points a chart may ask for.
const MAX_POINTS: usize = 500;

pub fn router(state: SharedState) -> Router {
    Router::new().route("/api/v1/batch-changes/{name}/statistics", get(statistics)).with_state(state)
}

#[derive(Deserialize)]
struct StatisticsQuery {
    namespace: Option<String>,
    /// Points on the chart (default 30, at most 500).
    points: Option<usize>,
    /// Chart range in milliseconds since the epoch; from the first event to now by default.
    from: Option<i64>,
    to: Option<i64>,
}

async fn statistics(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>, Query(query): Query<StatisticsQuery>) -> ApiResult<Json<BatchChangeStatistics>> {
    let caller = authenticate(&state, &headers).await?;
    let batch_change = crate::apply::find_batch_change(&state, &caller, &name, query.namespace.as_deref()).await?;
    let points = query.points.unwrap_or(30);
    if points == 0 || points > MAX_POINTS {
        return Err(ApiError::bad_request(format!("points must be between 1 and {MAX_POINTS}")));
    }
    let counts = state.store.changeset_state_counts(batch_change.id).await?;
    let events = state.store.changeset_events_for_batch_change(batch_change.id).await?;
    let to = query.to.unwrap_or_else(Clock::now_ms);
    let from = query.from.unwrap_or_else(|| events.iter().map(|event| event.at).min().unwrap_or(batch_change.created_at)).min(to);
    Ok(Json(BatchChangeStatistics { changesets: changeset_statistics(&counts), burndown: burndown(&events, from, to, points) }))
}

/// Folds grouped counts into the states a person sees, in Sourcegraph's order of precedence:
/// archived; then the reconciler's (failed, retrying, scheduled, processing); then unpublished;
/// then the state on the code host.
pub fn changeset_statistics(counts: &[ChangesetStateCount]) -> ChangesetStatistics {
    let mut statistics = ChangesetStatistics::default();
    for group in counts {
        if group.archived {
            statistics.archived += group.count;
            continue;
        }
        statistics.total += group.count;
        let bucket = match (group.reconciler_state.as_str(), group.failing) {
            ("failed", _) => &mut statistics.failed,
            ("queued", true) => &mut statistics.retrying,
            ("scheduled", _) => &mut statistics.scheduled,
            ("queued" | "processing", false) => &mut statistics.processing,
            _ if group.publication_state == "UNPUBLISHED" => &mut statistics.unpublished,
            _ => match group.external_state.as_deref() {
                Some("DRAFT") => &mut statistics.draft,
                Some("MERGED") => &mut statistics.merged,
                Some("CLOSED") => &mut statistics.closed,
                _ => &mut statistics.open,
            },
        };
        *bucket += group.count;
    }
    let done = statistics.merged + statistics.closed;
    statistics.percent_complete = if statistics.total == 0 { 0.0 } else { (done as f64 * 1000.0 / statistics.total as f64).round() / 10.0 };
    statistics.is_completed = statistics.total > 0 && done == statistics.total;
    statistics
}

/// The chart: at each of `points` moments evenly spaced from `from` to `to` (both included),
/// every changeset in the state of its latest event at or before that moment. `events` must be
/// ordered by changeset, then by time (as the store returns them).
pub fn burndown(events: &[ChangesetEvent], from: i64, to: i64, points: usize) -> Vec<BurndownPoint> {
    let moments: Vec<i64> = match points {
        0 => Vec::new(),
        1 => vec![to],
        _ => (0..points).map(|index| from + ((to - from) as i128 * index as i128 / (points - 1) as i128) as i64).collect(),
    };
    let mut chart: Vec<BurndownPoint> = moments.iter().map(|&at| BurndownPoint { at, ..BurndownPoint::default() }).collect();
    for history in events.chunk_by(|a, b| a.changeset_id == b.changeset_id) {
        let mut latest = 0;
        for point in chart.iter_mut() {
            while latest < history.len() && history[latest].at <= point.at {
                latest += 1;
            }
            let Some(event) = latest.checked_sub(1).map(|index| &history[index]) else { continue };
            point.total += 1;
            match event.external_state.as_str() {
                "DRAFT" => point.draft += 1,
                "MERGED" => point.merged += 1,
                "CLOSED" => point.closed += 1,
                _ => {
                    point.open += 1;
                    match event.review_state.as_deref() {
                        Some("APPROVED") => point.open_approved += 1,
                        Some("CHANGES_REQUESTED" | "CHANGESREQUESTED") => point.open_changes_requested += 1,
                        _ => point.open_pending += 1,
                    }
                }
            }
        }
    }
    chart
}

#[cfg(test)]
mod tests {
    use flotilla_store::ChangesetId;

    use super::*;

    fn group(publication: &str, external: Option<&str>, reconciler: &str, archived: bool, failing: bool, count: i64) -> ChangesetStateCount {
        ChangesetStateCount {
            publication_state: publication.into(),
            external_state: external.map(Into::into),
            reconciler_state: reconciler.into(),
            archived,
            failing,
            count,
        }
    }

    #[test]
    fn counts_fold_into_the_states_a_person_sees() {
        let statistics = changeset_statistics(&[
            group("UNPUBLISHED", None, "completed", false, false, 2),
            group("UNPUBLISHED", None, "scheduled", false, false, 3),
            group("UNPUBLISHED", None, "queued", false, false, 1),
            group("UNPUBLISHED", None, "queued", false, true, 4),
            group("PUBLISHED", Some("OPEN"), "failed", false, true, 1),
            group("PUBLISHED", Some("OPEN"), "completed", false, false, 5),
            group("PUBLISHED", Some("DRAFT"), "completed", false, false, 6),
            group("PUBLISHED", Some("PUSHED"), "completed", false, false, 1),
            group("PUBLISHED", Some("MERGED"), "completed", false, false, 7),
            group("PUBLISHED", Some("CLOSED"), "completed", false, false, 8),
            group("PUBLISHED", Some("CLOSED"), "completed", true, false, 9),
        ]);
        assert_eq!(
            (statistics.unpublished, statistics.scheduled, statistics.processing, statistics.retrying, statistics.failed),
            (2, 3, 1, 4, 1)
        );
        assert_eq!((statistics.open, statistics.draft, statistics.merged, statistics.closed, statistics.archived), (6, 6, 7, 8, 9));
        assert_eq!(statistics.total, 38);
        assert_eq!(statistics.percent_complete, 39.5);
        assert!(!statistics.is_completed);
        let done = changeset_statistics(&[group("PUBLISHED", Some("MERGED"), "completed", false, false, 2), group("PUBLISHED", Some("CLOSED"), "completed", false, false, 1)]);
        assert!(done.is_completed);
        assert_eq!(done.percent_complete, 100.0);
        assert!(!changeset_statistics(&[]).is_completed, "an empty batch change is not complete");
    }

    fn event(changeset: i64, state: &str, review: Option<&str>, at: i64) -> ChangesetEvent {
        ChangesetEvent { changeset_id: ChangesetId(changeset), external_state: state.into(), review_state: review.map(Into::into), at }
    }

    #[test]
    fn the_burndown_replays_each_changesets_latest_state_at_each_moment() {
        let events = vec![
            event(1, "DRAFT", None, 100),
            event(1, "OPEN", Some("PENDING"), 200),
            event(1, "OPEN", Some("APPROVED"), 250),
            event(1, "MERGED", Some("APPROVED"), 300),
            event(2, "OPEN", Some("CHANGES_REQUESTED"), 150),
            event(2, "CLOSED", None, 400),
            event(3, "OPEN", None, 350),
        ];
        let chart = burndown(&events, 0, 400, 5);
        let at: Vec<i64> = chart.iter().map(|point| point.at).collect();
        assert_eq!(at, [0, 100, 200, 300, 400]);
        let row = |index: usize| {
            let point = &chart[index];
            (point.total, point.draft, point.open, point.merged, point.closed, point.open_approved, point.open_changes_requested, point.open_pending)
        };
        assert_eq!(row(0), (0, 0, 0, 0, 0, 0, 0, 0), "nothing published yet");
        assert_eq!(row(1), (1, 1, 0, 0, 0, 0, 0, 0));
        assert_eq!(row(2), (2, 0, 2, 0, 0, 0, 1, 1));
        assert_eq!(row(3), (2, 0, 1, 1, 0, 0, 1, 0));
        assert_eq!(row(4), (3, 0, 1, 1, 1, 0, 0, 1));
        assert_eq!(burndown(&events, 0, 400, 1).len(), 1);
        assert_eq!(burndown(&events, 0, 400, 1)[0].total, 3);
    }
}
