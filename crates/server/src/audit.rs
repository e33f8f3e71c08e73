//! The audit log as the API shows it: handlers record who did what with [`record`], and site
//! admins read it newest first through `GET /api/v1/audit-log`.
//!
//! An event is recorded after the change it describes succeeded. If recording fails the request
//! fails with a 500 (the change stays made): an action that leaves no trace must be visible as
//! an error rather than silently pass.

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use flotilla_store::{AuditEventId, Clock, NewAuditEvent, UserId};
use serde::{Deserialize, Serialize};

use crate::SharedState;
use crate::access::require_site_admin;
use crate::api::authenticate;
use crate::error::ApiResult;

pub fn router(state: SharedState) -> Router {
    Router::new().route("/api/v1/audit-log", get(list)).with_state(state)
}

/// Appends one event: `action` is a dotted verb (`user.create`), the target is a kind and an id
/// or name, `details` anything else worth keeping (never a secret or token value).
pub async fn record(state: &SharedState, actor: UserId, action: &str, target_kind: &str, target_id: impl ToString, details: serde_json::Value) -> ApiResult<()> {
    state
        .store
        .append_audit_event(
            &NewAuditEvent { actor_user_id: Some(actor), action: action.to_owned(), target_kind: target_kind.to_owned(), target_id: target_id.to_string(), details },
            Clock::now_ms(),
        )
        .await?;
    Ok(())
}

#[derive(Deserialize)]
pub struct AuditQuery {
    /// Only events older than this id (the `next` of the previous page).
    before: Option<i64>,
    limit: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEventInfo {
    id: i64,
    /// The acting user's name (`null` if the user was deleted).
    actor: Option<String>,
    action: String,
    target_kind: String,
    target_id: String,
    details: serde_json::Value,
    created_at_ms: i64,
}

#[derive(Serialize)]
pub struct AuditPage {
    events: Vec<AuditEventInfo>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<i64>,
}

async fn list(State(state): State<SharedState>, headers: HeaderMap, Query(query): Query<AuditQuery>) -> ApiResult<Json<AuditPage>> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let events = state.store.list_audit_events(query.before.map(AuditEventId), limit).await?;
    let mut names = std::collections::HashMap::new();
    let mut infos = Vec::with_capacity(events.len());
    for event in &events {
        let actor = match event.actor_user_id {
            Some(user_id) => {
                if let std::collections::hash_map::Entry::Vacant(entry) = names.entry(user_id) {
                    entry.insert(state.store.get_user(user_id).await.ok().map(|user| user.username));
                }
                names[&user_id].clone()
            }
            None => None,
        };
        infos.push(AuditEventInfo {
            id: event.id.0,
            actor,
            action: event.action.clone(),
            target_kind: event.target_kind.clone(),
            target_id: event.target_id.clone(),
            details: event.details.clone(),
            created_at_ms: event.created_at,
        });
    }
    let next = (events.len() as i64 == limit).then(|| events.last().map(|event| event.id.0)).flatten();
    Ok(Json(AuditPage { events: infos, next }))
}
