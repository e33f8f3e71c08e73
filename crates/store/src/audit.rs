//! The audit log: an append-only record of who did what to which object, listed newest first
//! with keyset pagination.

use crate::Store;
use crate::error::StoreError;
use crate::ids::{AuditEventId, UserId};
use crate::json::{JsonText, to_text};

#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub actor_user_id: Option<UserId>,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct AuditEvent {
    pub id: AuditEventId,
    pub actor_user_id: Option<UserId>,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    #[sqlx(try_from = "JsonText")]
    pub details: serde_json::Value,
    pub created_at: i64,
}

impl Store {
    pub async fn append_audit_event(
        &self,
        event: &NewAuditEvent,
        now_ms: i64,
    ) -> Result<AuditEventId, StoreError> {
        write_transaction!(self, tx, dialect => {
            Ok(sqlx::query_scalar::<_, AuditEventId>(
                "INSERT INTO audit_log (actor_user_id, action, target_kind, target_id, details, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(event.actor_user_id)
            .bind(event.action.clone())
            .bind(event.target_kind.clone())
            .bind(event.target_id.clone())
            .bind(to_text(&event.details))
            .bind(now_ms)
            .fetch_one(&mut **tx)
            .await?)
        })
    }

    /// Events newest first, strictly older than `before` (keyset pagination).
    pub async fn list_audit_events(
        &self,
        before: Option<AuditEventId>,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        on_pool!(self, pool, dialect => {
            Ok(sqlx::query_as::<_, AuditEvent>(
                "SELECT id, actor_user_id, action, target_kind, target_id, details, created_at FROM audit_log \
                 WHERE id < $1 ORDER BY id DESC LIMIT $2",
            )
            .bind(before.map_or(i64::MAX, |event_id| event_id.0))
            .bind(limit)
            .fetch_all(pool)
            .await?)
        })
    }
}
