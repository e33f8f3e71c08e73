//! Users, organisations and web sign-in through the API.
//!
//! Site admins create users; any signed-in user may create an org and becomes its first admin;
//! org admins (and site admins) manage members and the org's `membersCanAdminister` setting.
//! Password sign-in (`POST /api/v1/sessions`) returns a short-lived access token and sets it as
//! an HttpOnly, SameSite=Strict cookie, so the web interface never handles a long-lived token;
//! signing out revokes it. Every change here is recorded in the audit log.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use flotilla_store::{AuthenticatedToken, Clock, NewOrg, NewUser, Org, OrgId, OrgRole, TokenScope, User, UserId};
use serde::{Deserialize, Serialize};

use crate::SharedState;
use crate::access::{is_site_admin, require_org_admin, require_site_admin};
use crate::api::authenticate;
use crate::audit;
use crate::error::{ApiError, ApiResult};
use crate::passwords::{check_password_rules, hash_password, verify_password};
use crate::secrets_crypto::{TokenKind, generate_token, hash_token};

/// How long a web session lasts.
pub const SESSION_LIFETIME_MS: i64 = 12 * 60 * 60 * 1000;
/// The session cookie's name.
pub const SESSION_COOKIE: &str = "flotilla_session";

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/v1/users", get(list_users).post(create_user))
        .route("/api/v1/users/{username}/password", put(set_password))
        .route("/api/v1/orgs", get(list_orgs).post(create_org))
        .route("/api/v1/orgs/{name}", get(get_org).patch(update_org))
        .route("/api/v1/orgs/{name}/members", get(list_members))
        .route("/api/v1/orgs/{name}/members/{username}", put(set_member).delete(remove_member))
        .route("/api/v1/sessions", axum::routing::post(sign_in))
        .route("/api/v1/sessions/current", delete(sign_out))
        .with_state(state)
}

/// User and org names: what a URL path segment, a namespace flag and a repository-like name can
/// all carry without quoting.
fn valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 39
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
        // `global` names the global secret scope.
        && !name.eq_ignore_ascii_case("global")
}

const NAME_RULE: &str = "a name is 1-39 letters, digits, `-`, `_` or `.`, starting with a letter or digit (and not `global`), e.g. `alice` or `platform-team`";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateUser {
    username: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    site_admin: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    id: i64,
    username: String,
    display_name: String,
    email: String,
    site_admin: bool,
    /// Whether the user can sign in with a password (the hash itself is never returned).
    has_password: bool,
    created_at_ms: i64,
}

impl From<User> for UserInfo {
    fn from(user: User) -> UserInfo {
        UserInfo {
            id: user.id.0,
            username: user.username,
            display_name: user.display_name,
            email: user.email,
            site_admin: user.site_admin,
            has_password: user.password_hash.is_some(),
            created_at_ms: user.created_at,
        }
    }
}

/// Hashes on the blocking pool: argon2 takes tens of milliseconds of CPU on purpose.
async fn hash_on_pool(password: String) -> ApiResult<String> {
    check_password_rules(&password).map_err(|error| ApiError::bad_request(error.to_string()))?;
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|error| ApiError::internal(format!("hashing the password: {error}")))?
        .map_err(|error| ApiError::internal(error.to_string()))
}

async fn create_user(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<CreateUser>) -> ApiResult<(StatusCode, Json<UserInfo>)> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    if !valid_name(&request.username) {
        return Err(ApiError::bad_request(NAME_RULE));
    }
    let password_hash = match request.password {
        Some(password) => Some(hash_on_pool(password).await?),
        None => None,
    };
    let created = state
        .store
        .create_user(
            &NewUser {
                username: request.username.clone(),
                display_name: request.display_name.unwrap_or_default(),
                email: request.email.unwrap_or_default(),
                password_hash,
                site_admin: request.site_admin,
            },
            Clock::now_ms(),
        )
        .await
        .map_err(|error| match error {
            flotilla_store::StoreError::Conflict { message } => ApiError::conflict(format!("{message}; choose another name")),
            other => other.into(),
        })?;
    audit::record(&state, caller.user.id, "user.create", "user", &created.username, serde_json::json!({ "siteAdmin": created.site_admin })).await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

#[derive(Deserialize)]
pub struct PageQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn list_users(State(state): State<SharedState>, headers: HeaderMap, Query(page): Query<PageQuery>) -> ApiResult<Json<Vec<UserInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    let limit = page.limit.unwrap_or(1000).clamp(1, 10_000);
    let users = state.store.list_users(page.after.map(UserId), limit).await?;
    Ok(Json(users.into_iter().map(UserInfo::from).collect()))
}

#[derive(Deserialize)]
pub struct SetPassword {
    password: String,
}

async fn set_password(State(state): State<SharedState>, headers: HeaderMap, Path(username): Path<String>, Json(request): Json<SetPassword>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    if caller.user.username != username && !is_site_admin(&caller) {
        return Err(ApiError::forbidden("you can only set your own password; a site admin can set anyone's"));
    }
    let user = user_named(&state, &username).await?;
    let hash = hash_on_pool(request.password).await?;
    state.store.set_user_password_hash(user.id, Some(&hash)).await?;
    audit::record(&state, caller.user.id, "user.password.set", "user", &user.username, serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn user_named(state: &SharedState, username: &str) -> ApiResult<User> {
    state
        .store
        .get_user_by_username(username)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no user named {username}; see `flotilla users list`")))
}

async fn org_named(state: &SharedState, name: &str) -> ApiResult<Org> {
    state.store.get_org_by_name(name).await?.ok_or_else(|| ApiError::not_found(format!("no organization named {name}; see `flotilla orgs list`")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateOrg {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    /// Whether every member may change the org's batch specs (default true, as Sourcegraph).
    #[serde(default)]
    members_can_administer: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateOrg {
    members_can_administer: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OrgInfo {
    id: i64,
    name: String,
    display_name: String,
    members_can_administer: bool,
    /// The caller's role in the org, if a member.
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<String>,
    created_at_ms: i64,
}

fn org_info(org: Org, role: Option<OrgRole>) -> OrgInfo {
    OrgInfo {
        id: org.id.0,
        name: org.name,
        display_name: org.display_name,
        members_can_administer: org.members_can_administer_batch_changes,
        role: role.map(|role| role.as_str().to_owned()),
        created_at_ms: org.created_at,
    }
}

async fn create_org(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<CreateOrg>) -> ApiResult<(StatusCode, Json<OrgInfo>)> {
    let caller = authenticate(&state, &headers).await?;
    if !valid_name(&request.name) {
        return Err(ApiError::bad_request(NAME_RULE));
    }
    let now = Clock::now_ms();
    let org = state
        .store
        .create_org(
            &NewOrg {
                name: request.name.clone(),
                display_name: request.display_name.unwrap_or_default(),
                members_can_administer_batch_changes: request.members_can_administer.unwrap_or(true),
            },
            now,
        )
        .await
        .map_err(|error| match error {
            flotilla_store::StoreError::Conflict { message } => ApiError::conflict(format!("{message}; choose another name")),
            other => other.into(),
        })?;
    state.store.set_org_member(org.id, caller.user.id, OrgRole::Admin, now).await?;
    audit::record(&state, caller.user.id, "org.create", "org", &org.name, serde_json::json!({ "membersCanAdminister": org.members_can_administer_batch_changes })).await?;
    Ok((StatusCode::CREATED, Json(org_info(org, Some(OrgRole::Admin)))))
}

/// Every org (org names are public inside the server, like user names), with the caller's role.
async fn list_orgs(State(state): State<SharedState>, headers: HeaderMap, Query(page): Query<PageQuery>) -> ApiResult<Json<Vec<OrgInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let limit = page.limit.unwrap_or(1000).clamp(1, 10_000);
    let orgs = state.store.list_orgs(page.after.map(OrgId), limit).await?;
    let roles: std::collections::HashMap<OrgId, OrgRole> =
        state.store.list_user_orgs(caller.user.id).await?.into_iter().map(|member| (member.org_id, member.role)).collect();
    Ok(Json(orgs.into_iter().map(|org| { let role = roles.get(&org.id).copied(); org_info(org, role) }).collect()))
}

async fn get_org(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<OrgInfo>> {
    let caller = authenticate(&state, &headers).await?;
    let org = org_named(&state, &name).await?;
    let role = state.store.get_org_role(org.id, caller.user.id).await?;
    Ok(Json(org_info(org, role)))
}

async fn update_org(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>, Json(request): Json<UpdateOrg>) -> ApiResult<Json<OrgInfo>> {
    let caller = authenticate(&state, &headers).await?;
    let org = org_named(&state, &name).await?;
    require_org_admin(&state, &caller, org.id, &org.name).await?;
    let updated = state.store.set_org_members_can_administer(org.id, request.members_can_administer).await?;
    audit::record(&state, caller.user.id, "org.update", "org", &org.name, serde_json::json!({ "membersCanAdminister": request.members_can_administer })).await?;
    let role = state.store.get_org_role(org.id, caller.user.id).await?;
    Ok(Json(org_info(updated, role)))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MemberInfo {
    username: String,
    role: String,
    added_at_ms: i64,
}

/// Members are listed to the org's members and to site admins.
async fn list_members(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<Json<Vec<MemberInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let org = org_named(&state, &name).await?;
    if !is_site_admin(&caller) && state.store.get_org_role(org.id, caller.user.id).await?.is_none() {
        return Err(ApiError::forbidden(format!("only members of {name} (and site admins) can list its members")));
    }
    let mut members = Vec::new();
    for member in state.store.list_org_members(org.id).await? {
        let user = state.store.get_user(member.user_id).await?;
        members.push(MemberInfo { username: user.username, role: member.role.as_str().to_owned(), added_at_ms: member.created_at });
    }
    Ok(Json(members))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetMember {
    /// `member` (default) or `admin`.
    #[serde(default)]
    role: Option<String>,
}

async fn set_member(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path((name, username)): Path<(String, String)>,
    Json(request): Json<SetMember>,
) -> ApiResult<Json<MemberInfo>> {
    let caller = authenticate(&state, &headers).await?;
    let org = org_named(&state, &name).await?;
    require_org_admin(&state, &caller, org.id, &org.name).await?;
    let role = match request.role.as_deref() {
        None | Some("member") => OrgRole::Member,
        Some("admin") => OrgRole::Admin,
        Some(other) => return Err(ApiError::bad_request(format!("unknown role {other:?}; use member or admin"))),
    };
    let user = user_named(&state, &username).await?;
    if role == OrgRole::Member && state.store.get_org_role(org.id, user.id).await? == Some(OrgRole::Admin) {
        refuse_losing_last_admin(&state, org.id, &org.name).await?;
    }
    state.store.set_org_member(org.id, user.id, role, Clock::now_ms()).await?;
    audit::record(&state, caller.user.id, "org.member.set", "org", &org.name, serde_json::json!({ "user": user.username, "role": role.as_str() })).await?;
    let added_at_ms = state.store.list_org_members(org.id).await?.into_iter().find(|member| member.user_id == user.id).map_or(0, |member| member.created_at);
    Ok(Json(MemberInfo { username: user.username, role: role.as_str().to_owned(), added_at_ms }))
}

/// Org admins remove anyone; a member may also leave on their own.
async fn remove_member(State(state): State<SharedState>, headers: HeaderMap, Path((name, username)): Path<(String, String)>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    let org = org_named(&state, &name).await?;
    if caller.user.username != username {
        require_org_admin(&state, &caller, org.id, &org.name).await?;
    }
    let user = user_named(&state, &username).await?;
    match state.store.get_org_role(org.id, user.id).await? {
        None => return Err(ApiError::not_found(format!("{username} is not a member of {name}; see `flotilla orgs members {name}`"))),
        Some(OrgRole::Admin) => refuse_losing_last_admin(&state, org.id, &org.name).await?,
        Some(OrgRole::Member) => {}
    }
    state.store.remove_org_member(org.id, user.id).await?;
    audit::record(&state, caller.user.id, "org.member.remove", "org", &org.name, serde_json::json!({ "user": user.username })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An org keeps at least one admin, or nobody but site admins could manage it.
async fn refuse_losing_last_admin(state: &SharedState, org_id: OrgId, org_name: &str) -> ApiResult<()> {
    let admins = state.store.list_org_members(org_id).await?.into_iter().filter(|member| member.role == OrgRole::Admin).count();
    if admins <= 1 {
        return Err(ApiError::conflict(format!(
            "this is the last admin of {org_name}; make another member admin first (`flotilla orgs add-member {org_name} USER --role admin`)"
        )));
    }
    Ok(())
}

#[derive(Deserialize)]
pub struct SignIn {
    username: String,
    password: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    /// The session's access token (also set as the `flotilla_session` cookie).
    token: String,
    username: String,
    scope: String,
    expires_at_ms: i64,
}

/// Password sign-in. A wrong username and a wrong password get the same answer, after the same
/// amount of hashing work.
async fn sign_in(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<SignIn>) -> ApiResult<Response> {
    let user = state.store.get_user_by_username(&request.username).await?;
    let stored = user.as_ref().and_then(|user| user.password_hash.clone());
    let password = request.password;
    let verified = tokio::task::spawn_blocking(move || verify_password(&password, stored.as_deref()))
        .await
        .map_err(|error| ApiError::internal(format!("checking the password: {error}")))?;
    let user = match (verified, user) {
        (true, Some(user)) => user,
        _ => return Err(ApiError::unauthorized("wrong username or password; check both, or ask a site admin to set your password with `flotilla users set-password`")),
    };
    // A site admin's browser session acts as a site admin, as Sourcegraph's does.
    let scope = if user.site_admin { TokenScope::SiteAdmin } else { TokenScope::User };
    let token = generate_token(TokenKind::User);
    let now = Clock::now_ms();
    let expires_at_ms = now + SESSION_LIFETIME_MS;
    state.store.create_expiring_access_token(user.id, &hash_token(&token), scope, "web session", Some(expires_at_ms), now).await?;
    audit::record(&state, user.id, "session.create", "user", &user.username, serde_json::json!({})).await?;
    let secure = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()) == Some("https");
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        SESSION_LIFETIME_MS / 1000,
        if secure { "; Secure" } else { "" }
    );
    let mut response = (StatusCode::CREATED, Json(SessionInfo { token, username: user.username, scope: scope.as_str().to_owned(), expires_at_ms })).into_response();
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).map_err(|error| ApiError::internal(error.to_string()))?);
    Ok(response)
}

/// Signs out: revokes the token this request came with (session cookie or header) and clears
/// the cookie.
async fn sign_out(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Response> {
    let caller: AuthenticatedToken = authenticate(&state, &headers).await?;
    state.store.revoke_access_token(caller.token_id, caller.user.id, Clock::now_ms()).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("flotilla_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn names_are_plain_words() {
        for good in ["alice", "platform-team", "a.b_c", "x1"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-lead", "has space", "a/b", "global", "GLOBAL", &"x".repeat(40)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
