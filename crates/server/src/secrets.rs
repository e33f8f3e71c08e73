//! Executor secrets: stored encrypted, resolved for one job at a time, never returned.
//!
//! A spec step's bare `env` name (`env: [GITHUB_TOKEN]`) is an executor secret. Secrets are
//! global (site admins), per user, or per org; a namespace's secret overrides a global one of
//! the same name. Values are encrypted with the server's key, never returned by the API, and
//! every read is recorded in the store's access log. They reach an executor only inside the
//! one job that needs them, together with the redactions that replace each value by
//! `${{ secrets.NAME }}` in everything the executor sends back.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use flotilla_store::{Clock, Namespace, NewSecret, SecretAccessor, SecretScope};
use serde::{Deserialize, Serialize};

use crate::SharedState;
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/v1/secrets", get(list))
        .route("/api/v1/secrets/{name}", put(set).delete(delete))
        .with_state(state)
}

/// Resolves the secrets `names` for a namespace: the namespace's own, else the global ones.
/// Missing names are left out (a step then sees the variable empty, as Sourcegraph does).
pub async fn resolve(
    state: &SharedState,
    namespace: Namespace,
    names: &[String],
    accessor: SecretAccessor,
) -> Result<BTreeMap<String, String>, String> {
    let mut values = BTreeMap::new();
    if names.is_empty() {
        return Ok(values);
    }
    let scope = match namespace {
        Namespace::User(user) => SecretScope::User(user),
        Namespace::Org(org) => SecretScope::Org(org),
    };
    let now = Clock::now_ms();
    // Global first, then the namespace's, so the namespace's overwrite.
    for scope in [SecretScope::Global, scope] {
        let found = state.store.read_secrets_by_name(scope, names, accessor, now).await.map_err(|error| error.to_string())?;
        for secret in found {
            let plaintext = state
                .config
                .secret_key
                .decrypt(&secret.ciphertext, &secret.nonce)
                .map_err(|error| format!("secret {}: {error}", secret.metadata.name))?;
            values.insert(secret.metadata.name, String::from_utf8_lossy(&plaintext).into_owned());
        }
    }
    Ok(values)
}

#[derive(Deserialize, Default)]
pub struct ScopeQuery {
    /// `global`, a user name or an org name; the caller's own namespace when absent.
    namespace: Option<String>,
}

#[derive(Deserialize)]
pub struct SecretValue {
    value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretInfo {
    name: String,
    namespace: String,
    version: i64,
    updated_at_ms: i64,
}

/// The scope a request names, after checking the caller may change (or read) it.
async fn scope_for(state: &SharedState, caller: &flotilla_store::AuthenticatedToken, query: &ScopeQuery) -> ApiResult<(SecretScope, String)> {
    let site_admin = crate::access::is_site_admin(caller);
    match query.namespace.as_deref() {
        None => Ok((SecretScope::User(caller.user.id), caller.user.username.clone())),
        Some("global") => {
            if !site_admin {
                return Err(ApiError::forbidden("only site admins manage global secrets"));
            }
            Ok((SecretScope::Global, "global".to_owned()))
        }
        Some(name) if name == caller.user.username => Ok((SecretScope::User(caller.user.id), name.to_owned())),
        Some(name) => {
            if let Some(org) = state.store.get_org_by_name(name).await? {
                let role = state.store.get_org_role(org.id, caller.user.id).await?;
                let admin = matches!(role, Some(flotilla_store::OrgRole::Admin)) || site_admin;
                if !admin {
                    return Err(ApiError::forbidden(format!("only admins of {name} manage its secrets")));
                }
                return Ok((SecretScope::Org(org.id), name.to_owned()));
            }
            match state.store.get_user_by_username(name).await? {
                Some(user) if site_admin => Ok((SecretScope::User(user.id), name.to_owned())),
                Some(_) => Err(ApiError::forbidden("you can only manage your own secrets")),
                None => Err(ApiError::not_found(format!("no user or organisation named {name}"))),
            }
        }
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

async fn set(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>, Query(query): Query<ScopeQuery>, Json(body): Json<SecretValue>) -> ApiResult<(StatusCode, Json<SecretInfo>)> {
    let caller = authenticate(&state, &headers).await?;
    let (scope, namespace) = scope_for(&state, &caller, &query).await?;
    if !valid_name(&name) {
        return Err(ApiError::bad_request("a secret's name is an environment variable name: letters, digits and `_`, not starting with a digit"));
    }
    if body.value.is_empty() {
        return Err(ApiError::bad_request("the secret's value is empty"));
    }
    let (ciphertext, nonce) = state.config.secret_key.encrypt(body.value.as_bytes());
    let now = Clock::now_ms();
    let existing = state.store.list_secrets(scope).await?.into_iter().find(|secret| secret.name == name);
    let (status, saved) = match existing {
        Some(secret) => (StatusCode::OK, state.store.update_secret(secret.id, &ciphertext, &nonce, now).await?),
        None => {
            let created = state
                .store
                .create_secret(&NewSecret { scope, name: name.clone(), ciphertext, nonce, created_by: Some(caller.user.id) }, now)
                .await?;
            (StatusCode::CREATED, created)
        }
    };
    crate::audit::record(&state, caller.user.id, "secret.set", "secret", format!("{namespace}/{}", saved.name), serde_json::json!({ "version": saved.version })).await?;
    Ok((status, Json(SecretInfo { name: saved.name, namespace, version: saved.version, updated_at_ms: saved.updated_at })))
}

async fn list(State(state): State<SharedState>, headers: HeaderMap, Query(query): Query<ScopeQuery>) -> ApiResult<Json<Vec<SecretInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let (scope, namespace) = scope_for(&state, &caller, &query).await?;
    let secrets = state.store.list_secrets(scope).await?;
    Ok(Json(
        secrets
            .into_iter()
            .map(|secret| SecretInfo { name: secret.name, namespace: namespace.clone(), version: secret.version, updated_at_ms: secret.updated_at })
            .collect(),
    ))
}

async fn delete(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>, Query(query): Query<ScopeQuery>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    let (scope, namespace) = scope_for(&state, &caller, &query).await?;
    let secret = state
        .store
        .list_secrets(scope)
        .await?
        .into_iter()
        .find(|secret| secret.name == name)
        .ok_or_else(|| ApiError::not_found(format!("no secret {name} in {namespace}; see `flotilla secrets list`")))?;
    state.store.delete_secret(secret.id).await?;
    crate::audit::record(&state, caller.user.id, "secret.delete", "secret", format!("{namespace}/{name}"), serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn secret_names_are_environment_variable_names() {
        assert!(valid_name("GITHUB_TOKEN"));
        assert!(valid_name("_x1"));
        assert!(!valid_name("1TOKEN"));
        assert!(!valid_name("A-B"));
        assert!(!valid_name(""));
    }
}
