//! Access tokens: created (shown once), listed (never the value) and revoked by their owner.
//!
//! A token is stored only as its SHA-256 hash. Its scope is `user` (the user's API) or
//! `site-admin` (administration); only a site admin holding a site-admin token can create
//! another site-admin token.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use flotilla_store::{Clock, TokenId, TokenScope};
use serde::{Deserialize, Serialize};

use crate::SharedState;
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::secrets_crypto::{TokenKind, generate_token, hash_token};

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/v1/tokens", get(list).post(create))
        .route("/api/v1/tokens/{id}", delete(revoke))
        .with_state(state)
}

#[derive(Deserialize)]
pub struct CreateToken {
    #[serde(default)]
    note: String,
    /// `user` (default) or `site-admin`.
    #[serde(default)]
    scope: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    id: i64,
    note: String,
    scope: String,
    created_at_ms: i64,
    last_used_at_ms: Option<i64>,
    revoked: bool,
    /// When the token stops working (web sessions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at_ms: Option<i64>,
    /// Only in the answer to creation: the token itself, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

async fn create(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<CreateToken>) -> ApiResult<(StatusCode, Json<TokenInfo>)> {
    let caller = authenticate(&state, &headers).await?;
    let scope = match request.scope.as_deref() {
        None | Some("user") => TokenScope::User,
        Some("site-admin") => {
            if !crate::access::is_site_admin(&caller) {
                return Err(ApiError::forbidden("only a site admin with a site-admin token can create site-admin tokens"));
            }
            TokenScope::SiteAdmin
        }
        Some(other) => return Err(ApiError::bad_request(format!("unknown scope {other:?}; use user or site-admin"))),
    };
    let token = generate_token(TokenKind::User);
    let created = state.store.create_access_token(caller.user.id, &hash_token(&token), scope, &request.note, Clock::now_ms()).await?;
    crate::audit::record(&state, caller.user.id, "token.create", "access_token", created.id, serde_json::json!({ "scope": scope.as_str(), "note": created.note })).await?;
    Ok((
        StatusCode::CREATED,
        Json(TokenInfo {
            id: created.id.0,
            note: created.note,
            scope: created.scope.as_str().to_owned(),
            created_at_ms: created.created_at,
            last_used_at_ms: created.last_used_at,
            revoked: false,
            expires_at_ms: created.expires_at,
            token: Some(token),
        }),
    ))
}

async fn list(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Vec<TokenInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let tokens = state.store.list_access_tokens(caller.user.id).await?;
    Ok(Json(
        tokens
            .into_iter()
            .map(|token| TokenInfo {
                id: token.id.0,
                note: token.note,
                scope: token.scope.as_str().to_owned(),
                created_at_ms: token.created_at,
                last_used_at_ms: token.last_used_at,
                revoked: token.revoked_at.is_some(),
                expires_at_ms: token.expires_at,
                token: None,
            })
            .collect(),
    ))
}

async fn revoke(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    state
        .store
        .revoke_access_token(TokenId(id), caller.user.id, Clock::now_ms())
        .await
        .map_err(|_| ApiError::not_found(format!("you have no active token {id}; see `flotilla tokens list`")))?;
    crate::audit::record(&state, caller.user.id, "token.revoke", "access_token", id, serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}
