//! The template library of the web interface's create page: a handful of starter specs
//! shipped with the server (in `crates/server/templates/`), plus the ones site admins add,
//! stored in the database. Every signed-in user reads them; only site admins add and delete.
//! A template is a valid batch spec (checked when it is added, and by a test for the starters).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get};
use axum::{Json, Router};
use flotilla_store::Clock;
use serde::{Deserialize, Serialize};

use crate::SharedState;
use crate::access::require_site_admin;
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};

/// The starters: (name, spec). The description is the spec's own.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("hello-world", include_str!("../templates/hello-world.batch.yaml")),
    ("find-and-replace", include_str!("../templates/find-and-replace.batch.yaml")),
    ("add-codeowners", include_str!("../templates/add-codeowners.batch.yaml")),
    ("remove-file", include_str!("../templates/remove-file.batch.yaml")),
    ("per-project-npm-update", include_str!("../templates/per-project-npm-update.batch.yaml")),
];

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/v1/batch-templates", get(list).post(create))
        .route("/api/v1/batch-templates/{name}", delete(remove))
        .with_state(state)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TemplateInfo {
    name: String,
    description: String,
    spec: String,
    /// True for the starters shipped with the server (they cannot be deleted).
    built_in: bool,
}

fn built_in() -> Vec<TemplateInfo> {
    BUILT_IN
        .iter()
        .map(|(name, spec)| TemplateInfo {
            name: (*name).to_owned(),
            description: flotilla_spec::parse_batch_spec(spec).map(|validated| validated.spec.description).unwrap_or_default(),
            spec: (*spec).to_owned(),
            built_in: true,
        })
        .collect()
}

async fn list(State(state): State<SharedState>, headers: HeaderMap) -> ApiResult<Json<Vec<TemplateInfo>>> {
    authenticate(&state, &headers).await?;
    let mut templates = built_in();
    templates.extend(state.store.list_batch_templates().await?.into_iter().map(|template| TemplateInfo {
        name: template.name,
        description: template.description,
        spec: template.spec,
        built_in: false,
    }));
    Ok(Json(templates))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewTemplate {
    name: String,
    #[serde(default)]
    description: Option<String>,
    spec: String,
}

fn valid_template_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.'))
}

async fn create(State(state): State<SharedState>, headers: HeaderMap, Json(request): Json<NewTemplate>) -> ApiResult<(StatusCode, Json<TemplateInfo>)> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    if !valid_template_name(&request.name) {
        return Err(ApiError::bad_request("a template name is 1-64 letters, digits, `-`, `_` or `.`, e.g. `update-go-version`"));
    }
    if BUILT_IN.iter().any(|(name, _)| *name == request.name) {
        return Err(ApiError::conflict(format!("{} is the name of a starter template; choose another", request.name)));
    }
    let validated = flotilla_spec::parse_batch_spec(&request.spec).map_err(|diagnostics| {
        ApiError::bad_request(format!("a template must be a valid batch spec:\n{}", flotilla_spec::render_all(&diagnostics, "template", &request.spec)))
    })?;
    let description = request.description.filter(|text| !text.trim().is_empty()).unwrap_or(validated.spec.description);
    let stored = state.store.create_batch_template(&request.name, &description, &request.spec, caller.user.id, Clock::now_ms()).await.map_err(|error| match error {
        flotilla_store::StoreError::Conflict { .. } => ApiError::conflict(format!("a template named {} exists; delete it first or choose another name", request.name)),
        other => other.into(),
    })?;
    crate::audit::record(&state, caller.user.id, "batch_template.create", "batch_template", &stored.name, serde_json::json!({})).await?;
    Ok((StatusCode::CREATED, Json(TemplateInfo { name: stored.name, description: stored.description, spec: stored.spec, built_in: false })))
}

async fn remove(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>) -> ApiResult<StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    require_site_admin(&caller)?;
    if BUILT_IN.iter().any(|(built_in, _)| *built_in == name) {
        return Err(ApiError::conflict(format!("{name} is a starter template shipped with the server and cannot be deleted")));
    }
    if !state.store.delete_batch_template(&name).await? {
        return Err(ApiError::not_found(format!("no template named {name}")));
    }
    crate::audit::record(&state, caller.user.id, "batch_template.delete", "batch_template", &name, serde_json::json!({})).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_starter_is_a_valid_spec_without_warnings() {
        for (name, spec) in BUILT_IN {
            match flotilla_spec::parse_batch_spec(spec) {
                Ok(validated) => {
                    assert!(validated.warnings.is_empty(), "{name}: {:?}", validated.warnings);
                    assert!(!validated.spec.description.is_empty(), "{name} needs a description");
                }
                Err(diagnostics) => panic!("{name}:\n{}", flotilla_spec::render_all(&diagnostics, name, spec)),
            }
        }
    }

    #[test]
    fn template_names_are_plain() {
        assert!(valid_template_name("update-go_1.22"));
        for bad in ["", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_template_name(bad), "{bad}");
        }
    }
}
