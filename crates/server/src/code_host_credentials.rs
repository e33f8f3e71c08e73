//! Code host credentials: the connection's (a service account, set by site admins) and each
//! user's own (so the pull requests a user's batch change opens are authored by them).
//!
//! They are kept like executor secrets: encrypted with the server's key before they reach the
//! store, never returned by any route (listings say only whether one exists), and every change
//! is audit-logged. Unlike secrets they never reach an executor: only the server talks to code
//! hosts (mirror clone and fetch here; pushes and pull requests with the changeset work), and
//! it hands them to git only as an `Authorization` header through the environment
//! ([`flotilla_git::Credentials`]), never in a URL, argv, log line or job payload.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use flotilla_store::{AuthenticatedToken, Clock, CodeHost, CodeHostId, CodeHostKind, EncryptedCredential};
use flotilla_wire::api::{CodeHostCredentialInfo, SetCodeHostCredential};

use crate::SharedState;
use crate::access::{RepositoryVisibility, require_site_admin};
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::secrets_crypto::{CryptoError, SecretKey};

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/v1/code-hosts/{id}/credential", put(set_connection_credential).delete(delete_connection_credential))
        .route("/api/v1/code-hosts/{id}/credentials/me", put(set_my_credential).delete(delete_my_credential))
        .route("/api/v1/code-host-credentials", get(list_my_credentials))
        .with_state(state)
}

/// The longest token accepted: far above any forge's, small enough to keep headers sane.
const MAX_TOKEN_BYTES: usize = 4096;
const MAX_USERNAME_BYTES: usize = 256;

/// Checks a credential sent by a client; the messages say what to send instead.
pub fn validate(credential: &SetCodeHostCredential) -> ApiResult<()> {
    let token = &credential.token;
    if token.trim().is_empty() {
        return Err(ApiError::bad_request("the token is empty; send the code host's access token as `token`"));
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(ApiError::bad_request(format!("the token is {} bytes; at most {MAX_TOKEN_BYTES} are accepted", token.len())));
    }
    if token.chars().any(char::is_control) {
        return Err(ApiError::bad_request("the token contains a line break or control character; send it on one line without a trailing newline"));
    }
    if let Some(username) = &credential.username
        && (username.is_empty() || username.len() > MAX_USERNAME_BYTES || username.contains(':') || username.chars().any(char::is_control))
    {
        return Err(ApiError::bad_request(format!(
            "the username must be 1 to {MAX_USERNAME_BYTES} characters without `:` or control characters; leave it out to use the code host's default"
        )));
    }
    Ok(())
}

/// Encrypts a validated credential with the server's key.
pub fn encrypt(key: &SecretKey, credential: &SetCodeHostCredential) -> EncryptedCredential {
    let (ciphertext, nonce) = key.encrypt(credential.token.as_bytes());
    EncryptedCredential { ciphertext, nonce, username: credential.username.clone() }
}

/// Refuses kinds that never talk to a remote, so nobody stores a token that is never used.
pub fn require_remote_kind(host: &CodeHost) -> ApiResult<()> {
    if host.kind == CodeHostKind::GitDirectory {
        return Err(ApiError::bad_request(format!(
            "code host {} reads git repositories from a folder on the server and needs no credential",
            host.name
        )));
    }
    Ok(())
}

/// The username sent with a token when none was stored: what each forge accepts in front of
/// a personal access token over HTTPS basic auth (GitHub and Gitea ignore it, GitLab wants
/// `oauth2`). Bitbucket Server has no such name: it wants the token owner's real username, or
/// no basic auth at all (see [`git_credentials`]).
fn default_username(kind: CodeHostKind) -> &'static str {
    match kind {
        CodeHostKind::Gitlab => "oauth2",
        _ => "x-access-token",
    }
}

/// Why a stored credential cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error(transparent)]
    Decrypt(#[from] CryptoError),
    #[error("the stored credential cannot be sent to git: {0}")]
    Unusable(#[from] flotilla_git::GitError),
}

/// Turns a stored credential into what git sends: HTTP basic auth with the stored username
/// (or the code host kind's default) and the token as password. A Bitbucket Server token
/// stored without a username is sent as `Bearer`: project and repository access tokens work
/// only that way, and personal ones work that way too.
pub fn git_credentials(key: &SecretKey, kind: CodeHostKind, credential: &EncryptedCredential) -> Result<flotilla_git::Credentials, CredentialError> {
    let token = key.decrypt(&credential.ciphertext, &credential.nonce)?;
    let token = String::from_utf8_lossy(&token);
    if kind == CodeHostKind::BitbucketServer && credential.username.is_none() {
        return Ok(flotilla_git::Credentials::bearer(&token)?);
    }
    let username = credential.username.as_deref().unwrap_or(default_username(kind));
    Ok(flotilla_git::Credentials::basic(username, &token)?)
}

/// The connection's own credential for git, if it has one.
pub fn connection_git_credentials(key: &SecretKey, host: &CodeHost) -> Result<Option<flotilla_git::Credentials>, CredentialError> {
    match (&host.credential_ciphertext, &host.credential_nonce) {
        (Some(ciphertext), Some(nonce)) => {
            let stored = EncryptedCredential { ciphertext: ciphertext.clone(), nonce: nonce.clone(), username: host.credential_username.clone() };
            git_credentials(key, host.kind, &stored).map(Some)
        }
        _ => Ok(None),
    }
}

fn not_found(id: i64) -> ApiError {
    ApiError::not_found(format!("no code host {id}; see `flotilla codehost list`"))
}

/// The code host `id`, if the caller may read it; an unreadable one is "not found", exactly as
/// an absent one, so its existence does not leak.
async fn readable_host(state: &SharedState, caller: &AuthenticatedToken, id: i64) -> ApiResult<CodeHost> {
    let visibility = RepositoryVisibility::for_caller(state, caller).await?;
    if !visibility.can_read_host(CodeHostId(id)) {
        return Err(not_found(id));
    }
    state.store.get_code_host(CodeHostId(id)).await.map_err(|_| not_found(id))
}

async fn set_connection_credential(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>, Json(body): Json<SetCodeHostCredential>) -> ApiResult<Json<CodeHostCredentialInfo>> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    let host = state.store.get_code_host(CodeHostId(id)).await.map_err(|_| not_found(id))?;
    require_remote_kind(&host)?;
    validate(&body)?;
    let now = Clock::now_ms();
    let saved = state.store.set_code_host_credential(host.id, Some(&encrypt(&state.config.secret_key, &body)), now).await?;
    crate::audit::record(&state, caller.user.id, "code_host.credential.set", "code_host", &saved.name, serde_json::json!({ "username": saved.credential_username })).await?;
    // A host that failed for want of a credential can be retried at once.
    state.sync_requested.notify_one();
    Ok(Json(CodeHostCredentialInfo {
        code_host_id: saved.id.0,
        code_host: saved.name,
        scope: "connection".to_owned(),
        username: saved.credential_username,
        updated_at_ms: saved.credential_updated_at.unwrap_or(now),
    }))
}

async fn delete_connection_credential(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    let host = state.store.get_code_host(CodeHostId(id)).await.map_err(|_| not_found(id))?;
    if !host.has_credential() {
        return Err(ApiError::not_found(format!("code host {} has no credential to delete", host.name)));
    }
    state.store.set_code_host_credential(host.id, None, Clock::now_ms()).await?;
    crate::audit::record(&state, caller.user.id, "code_host.credential.delete", "code_host", &host.name, serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_my_credential(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>, Json(body): Json<SetCodeHostCredential>) -> ApiResult<Json<CodeHostCredentialInfo>> {
    let caller = authenticate(&state, &headers).await?;
    let host = readable_host(&state, &caller, id).await?;
    require_remote_kind(&host)?;
    validate(&body)?;
    let saved = state
        .store
        .set_user_code_host_credential(caller.user.id, host.id, &encrypt(&state.config.secret_key, &body), Clock::now_ms())
        .await?;
    crate::audit::record(
        &state,
        caller.user.id,
        "code_host.user_credential.set",
        "code_host",
        &host.name,
        serde_json::json!({ "user": caller.user.username, "username": saved.username }),
    )
    .await?;
    Ok(Json(CodeHostCredentialInfo { code_host_id: host.id.0, code_host: host.name, scope: "user".to_owned(), username: saved.username, updated_at_ms: saved.updated_at }))
}

async fn delete_my_credential(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    let host = readable_host(&state, &caller, id).await?;
    state.store.delete_user_code_host_credential(caller.user.id, host.id).await.map_err(|error| match error {
        flotilla_store::StoreError::NotFound { .. } => ApiError::not_found(format!("you have no credential for code host {}; see `flotilla codehost credential list`", host.name)),
        other => other.into(),
    })?;
    crate::audit::record(&state, caller.user.id, "code_host.user_credential.delete", "code_host", &host.name, serde_json::json!({ "user": caller.user.username })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own credentials (without values), plus, for site admins, every connection's.
async fn list_my_credentials(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Vec<CodeHostCredentialInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let hosts: std::collections::HashMap<CodeHostId, CodeHost> = state.store.list_code_hosts().await?.into_iter().map(|host| (host.id, host)).collect();
    let mut listed = Vec::new();
    if crate::access::is_site_admin(&caller) {
        let mut connections: Vec<&CodeHost> = hosts.values().filter(|host| host.has_credential()).collect();
        connections.sort_by_key(|host| host.id);
        for host in connections {
            listed.push(CodeHostCredentialInfo {
                code_host_id: host.id.0,
                code_host: host.name.clone(),
                scope: "connection".to_owned(),
                username: host.credential_username.clone(),
                updated_at_ms: host.credential_updated_at.unwrap_or(host.created_at),
            });
        }
    }
    for credential in state.store.list_user_code_host_credentials(caller.user.id).await? {
        let Some(host) = hosts.get(&credential.code_host_id) else { continue };
        listed.push(CodeHostCredentialInfo {
            code_host_id: host.id.0,
            code_host: host.name.clone(),
            scope: "user".to_owned(),
            username: credential.username,
            updated_at_ms: credential.updated_at,
        });
    }
    Ok(Json(listed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(token: &str, username: Option<&str>) -> SetCodeHostCredential {
        SetCodeHostCredential { token: token.to_owned(), username: username.map(str::to_owned) }
    }

    #[test]
    fn credentials_are_checked_at_the_edge() {
        assert!(validate(&credential("ghp_abc", None)).is_ok());
        assert!(validate(&credential("ghp_abc", Some("alice"))).is_ok());
        for bad in [credential("", None), credential("  ", None), credential("a\nb", None), credential(&"x".repeat(5000), None), credential("t", Some("a:b")), credential("t", Some(""))] {
            let error = validate(&bad).expect_err("refused");
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn stored_credentials_become_basic_auth_and_never_show() {
        let key = SecretKey::generate();
        let stored = encrypt(&key, &credential("tok-123", None));
        assert!(!stored.ciphertext.windows(7).any(|window| window == b"tok-123"));
        let github = git_credentials(&key, CodeHostKind::Github, &stored).expect("usable");
        assert_eq!(github, flotilla_git::Credentials::basic("x-access-token", "tok-123").expect("basic"));
        let gitlab = git_credentials(&key, CodeHostKind::Gitlab, &stored).expect("usable");
        assert_eq!(gitlab, flotilla_git::Credentials::basic("oauth2", "tok-123").expect("basic"));
        let named = encrypt(&key, &credential("tok-123", Some("bob")));
        assert_eq!(git_credentials(&key, CodeHostKind::BitbucketServer, &named).expect("usable"), flotilla_git::Credentials::basic("bob", "tok-123").expect("basic"));
        let bitbucket = git_credentials(&key, CodeHostKind::BitbucketServer, &stored).expect("usable");
        assert_eq!(bitbucket, flotilla_git::Credentials::bearer("tok-123").expect("bearer"), "Bitbucket project tokens work only as Bearer");
        assert!(!format!("{github:?}{stored:?}").contains("tok-123"));
        assert!(matches!(git_credentials(&SecretKey::generate(), CodeHostKind::Github, &stored), Err(CredentialError::Decrypt(_))));
    }
}
