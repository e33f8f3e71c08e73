//! Incoming webhooks from code hosts: `POST /api/webhooks/{code host name}` receives a forge's
//! deliveries for that connection, and site admins set the shared secret with
//! `PUT /api/v1/code-hosts/{id}/webhook-secret` (`flotilla codehost webhook set`).
//!
//! The forge, not a user, calls the receiving route, so it takes no Flotilla token: the
//! signature is its authentication ([`crate::forge_webhooks::verify`]: GitHub's, GitLab's,
//! Gitea's or Bitbucket Server's scheme, by the connection's kind, against the connection's
//! secret, stored encrypted like credentials and never returned).
//!
//! A delivery is only a notification. Its payload says which repository and pull requests
//! changed; their state is then read again through the forge's API by the sync worker's own
//! [`crate::reconciler::sync_changeset`], exactly as polling does. Deliveries can arrive out of
//! order, twice, or never (the forge gives up, the server was down), and a payload is a
//! snapshot of a moment already past: re-reading makes the newest state win whatever the
//! order, and the periodic sync still catches what no delivery announced. The answer (202 with
//! how many tracked changesets will be re-read) goes back at once; the syncs run in the
//! background, a few at a time, so a burst of deliveries cannot exhaust the forge's rate limit
//! or hold up the forge's own timeouts.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{post, put};
use axum::{Json, Router};
use flotilla_store::{Clock, CodeHost, CodeHostId};
use flotilla_wire::api::{SetWebhookSecret, WebhookSecretInfo};
use serde_json::json;

use crate::SharedState;
use crate::access::require_site_admin;
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::forge_webhooks::{ForgeKind, MAX_BODY_BYTES, Notification, event_name, parse, verify};

/// Syncs started by webhooks that may talk to code hosts at once (others wait their turn).
const CONCURRENT_SYNCS: usize = 4;

/// The most tracked changesets of one repository a delivery looks through.
const MAX_CHANGESETS_PER_DELIVERY: i64 = 1000;

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/webhooks/{code_host}", post(receive))
        // The body is read (and bounded) by the handler, so an oversized one gets its own 413.
        .layer(DefaultBodyLimit::disable())
        .route("/api/v1/code-hosts/{id}/webhook-secret", put(set_secret).delete(delete_secret))
        .with_state(state)
}

/// The path a connection's forge delivers to.
pub fn webhook_path(code_host_name: &str) -> String {
    let mut path = String::from("/api/webhooks/");
    for byte in code_host_name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path
}

/// What to enable on the forge so every change Flotilla tracks is announced.
pub fn events_to_enable(kind: ForgeKind) -> Vec<String> {
    let events: &[&str] = match kind {
        ForgeKind::GitHub => &["pull_request", "pull_request_review", "check_suite", "check_run", "status"],
        ForgeKind::GitLab => &["Merge request events", "Pipeline events"],
        ForgeKind::Gitea => &["Pull Request", "Pull Request Reviewed (approved, rejected)", "Pull Request Synchronized", "Commit Status"],
        ForgeKind::BitbucketServer => &["pr:opened", "pr:merged", "pr:declined", "pr:deleted", "pr:modified", "pr:from_ref_updated", "pr:reviewer:approved", "pr:reviewer:unapproved", "pr:reviewer:needs_work"],
    };
    events.iter().map(|event| (*event).to_owned()).collect()
}

fn json_answer(status: StatusCode, body: serde_json::Value) -> (StatusCode, Json<serde_json::Value>) {
    (status, Json(body))
}

/// Receives one delivery: 404 for an unknown connection, 409 when it has no secret yet, 413 for
/// a body over 25 MiB, 401 when the signature does not match, 200 for pings and events that
/// change nothing tracked, 202 when tracked changesets will be re-read.
async fn receive(State(state): State<SharedState>, Path(name): Path<String>, headers: HeaderMap, body: Body) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let host = state
        .store
        .list_code_hosts()
        .await?
        .into_iter()
        .find(|host| host.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no code host named {name}: the webhook URL ends with a code host's name as `flotilla codehost list` shows it")))?;
    let kind = ForgeKind::of(host.kind).ok_or_else(|| {
        ApiError::not_found(format!("code host {name} is a {} connection, which receives no webhooks; only github, gitlab, gitea and bitbucket-server connections do", host.kind.as_str()))
    })?;
    let stored = state.store.get_code_host_webhook_secret(host.id).await?.ok_or_else(|| {
        ApiError::conflict(format!("code host {name} has no webhook secret yet: run `flotilla codehost webhook set {name} --secret-stdin` and give the webhook on {} the same secret", kind.name()))
    })?;
    let secret = state.config.secret_key.decrypt(&stored.ciphertext, &stored.nonce).map_err(|error| {
        ApiError::internal(format!("the webhook secret of code host {name} cannot be read ({error}); set it again with `flotilla codehost webhook set {name} --secret-stdin`"))
    })?;
    let too_large = || ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("the delivery is larger than {} MiB, the most a webhook may send", MAX_BODY_BYTES >> 20));
    let declared_length = headers.get(header::CONTENT_LENGTH).and_then(|value| value.to_str().ok()).and_then(|value| value.parse::<usize>().ok());
    if declared_length.is_some_and(|length| length > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES).await.map_err(|_| too_large())?;
    verify(kind, &headers, &body, &secret).map_err(|error| {
        tracing::warn!(code_host = %name, %error, "refused a webhook delivery");
        ApiError::unauthorized(error.to_string())
    })?;
    let event = event_name(kind, &headers).ok_or_else(|| ApiError::bad_request(format!("the delivery names no event: a {} webhook sends its event in a header; is the connection's kind right?", kind.name())))?;
    let changed = match parse(kind, &event, &body).map_err(|error| ApiError::bad_request(error.to_string()))? {
        Notification::Ping => return Ok(json_answer(StatusCode::OK, json!({ "event": event, "received": "ping" }))),
        Notification::Ignored { event } => return Ok(json_answer(StatusCode::OK, json!({ "event": event, "ignored": "Flotilla tracks nothing this event changes" }))),
        Notification::Changed(changed) => changed,
    };
    let repository_name = format!("{}/{}", host.name, changed.repository);
    let concerned: Vec<_> = state
        .store
        .published_changesets_in_repository(host.id, &repository_name, MAX_CHANGESETS_PER_DELIVERY)
        .await?
        .into_iter()
        .filter(|changeset| changed.concerns(changeset.external_id.as_deref().and_then(|id| id.parse().ok()), changeset.external_branch.as_deref()))
        .collect();
    if concerned.is_empty() {
        return Ok(json_answer(StatusCode::OK, json!({ "event": event, "repository": repository_name, "changesets": 0 })));
    }
    tracing::info!(code_host = %name, event = %event, repository = %repository_name, changesets = concerned.len(), "a webhook delivery asks for changesets to be synced");
    let count = concerned.len();
    for changeset in concerned {
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(_permit) = sync_permits().acquire().await else { return };
            if let Err(error) = crate::reconciler::sync_changeset(&state, &changeset).await {
                tracing::warn!(changeset.id = changeset.id.0, %error, "a sync asked for by a webhook failed; the periodic sync tries again");
            }
        });
    }
    Ok(json_answer(StatusCode::ACCEPTED, json!({ "event": event, "repository": repository_name, "changesets": count })))
}

/// The permits bounding webhook-started syncs, shared by the whole process.
fn sync_permits() -> &'static Arc<tokio::sync::Semaphore> {
    static PERMITS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| Arc::new(tokio::sync::Semaphore::new(CONCURRENT_SYNCS)))
}

/// The shortest secret accepted: a guessable one would let anyone announce changes.
const MIN_SECRET_CHARS: usize = 16;
const MAX_SECRET_BYTES: usize = 1024;

fn validate_secret(secret: &str) -> ApiResult<()> {
    if secret.chars().count() < MIN_SECRET_CHARS || secret.len() > MAX_SECRET_BYTES {
        return Err(ApiError::bad_request(format!(
            "a webhook secret is {MIN_SECRET_CHARS} to {MAX_SECRET_BYTES} characters; make a random one, e.g. `openssl rand -hex 32`"
        )));
    }
    if secret.chars().any(char::is_control) || secret.trim() != secret {
        return Err(ApiError::bad_request("the webhook secret contains a line break, a control character or surrounding spaces; send it on one line without a trailing newline"));
    }
    Ok(())
}

async fn forge_host(state: &SharedState, id: i64) -> ApiResult<(CodeHost, ForgeKind)> {
    let host = state.store.get_code_host(CodeHostId(id)).await.map_err(|_| ApiError::not_found(format!("no code host {id}; see `flotilla codehost list`")))?;
    let kind = ForgeKind::of(host.kind).ok_or_else(|| {
        ApiError::bad_request(format!("code host {} is a {} connection, which sends no webhooks; only github, gitlab, gitea and bitbucket-server connections do", host.name, host.kind.as_str()))
    })?;
    Ok((host, kind))
}

async fn set_secret(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>, Json(body): Json<SetWebhookSecret>) -> ApiResult<Json<WebhookSecretInfo>> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    let (host, kind) = forge_host(&state, id).await?;
    validate_secret(&body.secret)?;
    let (ciphertext, nonce) = state.config.secret_key.encrypt(body.secret.as_bytes());
    let now = Clock::now_ms();
    state.store.set_code_host_webhook_secret(host.id, &ciphertext, &nonce, now).await?;
    crate::audit::record(&state, caller.user.id, "code_host.webhook_secret.set", "code_host", &host.name, json!({})).await?;
    Ok(Json(WebhookSecretInfo {
        code_host_id: host.id.0,
        path: webhook_path(&host.name),
        code_host: host.name,
        kind: host.kind.as_str().to_owned(),
        events: events_to_enable(kind),
        updated_at_ms: now,
    }))
}

async fn delete_secret(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    let (host, _) = forge_host(&state, id).await?;
    state.store.delete_code_host_webhook_secret(host.id).await.map_err(|error| match error {
        flotilla_store::StoreError::NotFound { .. } => ApiError::not_found(format!("code host {} has no webhook secret to delete", host.name)),
        other => other.into(),
    })?;
    crate::audit::record(&state, caller.user.id, "code_host.webhook_secret.delete", "code_host", &host.name, json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_path_is_the_escaped_code_host_name() {
        assert_eq!(webhook_path("github.com"), "/api/webhooks/github.com");
        assert_eq!(webhook_path("my host/x"), "/api/webhooks/my%20host%2Fx");
    }

    #[test]
    fn secrets_are_long_single_lines() {
        assert!(validate_secret("0123456789abcdef").is_ok());
        for bad in ["short", "0123456789abcdef\n", " 0123456789abcdef", "0123456789\u{7}abcdef", &"x".repeat(2000)] {
            assert_eq!(validate_secret(bad).expect_err("refused").status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }
}
