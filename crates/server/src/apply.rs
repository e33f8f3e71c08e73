//! Applying a batch spec: its changeset specs become the batch change's changesets, and the
//! reconciler is asked to bring each to where its spec wants it.
//!
//! The decision is [`crate::reconciler_plan`]'s over the stored state, so the preview
//! (`GET …/apply-preview`) shows exactly the operations an apply (`POST …/apply`) queues.
//! Applying the same spec twice queues nothing new; an edited spec continues the existing
//! changesets (matched by repository and branch) instead of opening new ones; a repository the
//! spec no longer produces gets its changeset closed and archived.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use flotilla_spec::BatchSpec;
use flotilla_store::{
    BatchChange, BatchChangeUpdate, BatchSpec as BatchSpecRow, Changeset, ChangesetSpec, ChangesetSpecId, Clock, CodeHostKind,
    Namespace, NewBatchChange, RepositoryId,
};
use flotilla_wire::api::{ApplyPlan, ChangesetInfo, PlannedChangeset};
use serde::Deserialize;

use crate::SharedState;
use crate::api::authenticate;
use crate::error::{ApiError, ApiResult};
use crate::reconciler_plan::{ChangesetKey, ChangesetView, Desired, External, HostCapabilities, Rewiring, SpecView, plan, rewire};

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/api/v1/batch-specs/{id}/apply-preview", get(preview))
        .route("/api/v1/batch-specs/{id}/apply", post(apply))
        .route("/api/v1/batch-changes/{name}/changesets", get(list_changesets))
        .route("/api/v1/batch-changes/{name}/close", post(close))
        .route("/api/v1/batch-changes/{name}/changesets/bulk", post(bulk))
        .route("/api/v1/batch-changes/{name}", delete(delete_batch_change))
        .with_state(state)
}

/// What a code host can do with changesets.
pub fn capabilities(kind: CodeHostKind) -> HostCapabilities {
    match kind {
        CodeHostKind::GitDirectory | CodeHostKind::GitUrls => HostCapabilities::GIT,
        _ => HostCapabilities::FORGE,
    }
}

/// The plan's view of a stored changeset spec.
pub fn spec_view(spec: &ChangesetSpec) -> SpecView {
    spec_view_with(spec, None)
}

/// Whether the spec's changeset template sets `published` for this changeset; if it does, a
/// person cannot choose (Sourcegraph refuses a UI publish then).
pub fn spec_sets_published(spec: &ChangesetSpec) -> bool {
    spec.published.as_ref().is_some_and(|published| !published.is_null())
}

/// The plan's view of a changeset's spec, where a person's choice (`ui_publication_state`,
/// from a bulk publish) counts when the spec leaves `published` unset.
pub fn spec_view_with(spec: &ChangesetSpec, ui_publication_state: Option<&str>) -> SpecView {
    let desired = match (&spec.published, ui_publication_state) {
        (Some(serde_json::Value::Bool(true)), _) => Desired::Published,
        (Some(serde_json::Value::String(text)), _) if text == "draft" => Desired::Draft,
        (published, Some(ui)) if published.as_ref().is_none_or(serde_json::Value::is_null) => match ui {
            "PUBLISHED" => Desired::Published,
            "DRAFT" => Desired::Draft,
            _ => Desired::Unpublished,
        },
        _ => Desired::Unpublished,
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    spec.diff.hash(&mut hasher);
    SpecView {
        imported: spec.kind == flotilla_store::ChangesetSpecKind::Existing,
        desired,
        base_ref: spec.base_ref.clone().unwrap_or_default(),
        title: spec.title.clone().unwrap_or_default(),
        body: spec.body.clone().unwrap_or_default(),
        commit_message: spec.commit_message.clone().unwrap_or_default(),
        author: format!("{} <{}>", spec.author_name.as_deref().unwrap_or_default(), spec.author_email.as_deref().unwrap_or_default()),
        diff_digest: format!("{:016x}", hasher.finish()),
    }
}

/// Where a stored changeset is on its host.
pub fn external(changeset: &Changeset) -> External {
    if changeset.publication_state == "UNPUBLISHED" {
        return External::Unpublished;
    }
    match changeset.external_state.as_deref() {
        Some("DRAFT") => External::Draft,
        Some("CLOSED") => External::Closed,
        Some("MERGED") => External::Merged,
        Some("OPEN") => External::Open,
        _ => External::Pushed,
    }
}

/// Everything an apply decides, before anything is written.
struct Decided {
    plan: ApplyPlan,
    existing: Option<BatchChange>,
    created: Vec<(RepositoryId, ChangesetSpecId)>,
    continued: Vec<(flotilla_store::ChangesetId, ChangesetSpecId)>,
    retired: Vec<flotilla_store::ChangesetId>,
}

async fn decide(state: &SharedState, row: &BatchSpecRow) -> ApiResult<Decided> {
    let spec: BatchSpec = serde_json::from_value(row.parsed_spec.clone()).map_err(|error| ApiError::internal(format!("the stored spec is unreadable: {error}")))?;
    let namespace = row.namespace()?;
    let existing = state.store.get_batch_change_by_name(namespace, &spec.name).await?;
    let mut specs: Vec<ChangesetSpec> = Vec::new();
    let mut after = None;
    loop {
        let page = state.store.list_changeset_specs(row.id, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        specs.extend(page);
    }
    let mut changesets: Vec<Changeset> = Vec::new();
    if let Some(batch_change) = &existing {
        let mut after = None;
        loop {
            let page = state.store.list_changesets_for_batch_change(batch_change.id, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            changesets.extend(page.into_iter().filter(|changeset| !changeset.archived && changeset.detached_at.is_none()));
        }
    }
    // The spec each existing changeset was last applied to: its key and what it asked for.
    let applied_ids: Vec<ChangesetSpecId> =
        changesets.iter().flat_map(|changeset| [changeset.current_spec_id, changeset.previous_spec_id].into_iter().flatten()).collect();
    let applied_specs: HashMap<ChangesetSpecId, ChangesetSpec> =
        state.store.get_changeset_specs(&applied_ids).await?.into_iter().map(|spec| (spec.id, spec)).collect();
    // Branch changesets are known by repository and branch, imported ones by their number.
    let key_of_spec = |spec: &ChangesetSpec| -> ChangesetKey {
        match spec.kind {
            flotilla_store::ChangesetSpecKind::Existing => (spec.repository_id.0, format!("import:{}", spec.external_id.as_deref().unwrap_or_default())),
            flotilla_store::ChangesetSpecKind::Branch => (spec.repository_id.0, spec.head_ref.clone().unwrap_or_default()),
        }
    };
    let spec_keys: Vec<(ChangesetKey, &ChangesetSpec)> = specs.iter().map(|spec| (key_of_spec(spec), spec)).collect();
    let changeset_keys: Vec<(ChangesetKey, &Changeset)> = changesets
        .iter()
        .filter_map(|changeset| {
            let applied = changeset.current_spec_id.or(changeset.previous_spec_id)?;
            Some((key_of_spec(applied_specs.get(&applied)?), changeset))
        })
        .collect();

    let mut repositories: HashMap<RepositoryId, (String, CodeHostKind)> = HashMap::new();
    let mut host_kinds: HashMap<flotilla_store::CodeHostId, CodeHostKind> = HashMap::new();
    let mut ids: Vec<RepositoryId> = specs.iter().map(|spec| spec.repository_id).chain(changesets.iter().map(|changeset| changeset.repository_id)).collect();
    ids.sort();
    ids.dedup();
    for repository in state.store.get_repositories(&ids).await? {
        let kind = match host_kinds.get(&repository.code_host_id) {
            Some(kind) => *kind,
            None => {
                let kind = state.store.get_code_host(repository.code_host_id).await?.kind;
                host_kinds.insert(repository.code_host_id, kind);
                kind
            }
        };
        repositories.insert(repository.id, (repository.name, kind));
    }
    let describe = |repository_id: RepositoryId| repositories.get(&repository_id).cloned().unwrap_or_else(|| (format!("repository {repository_id}"), CodeHostKind::GitUrls));

    let mut decided = Decided {
        plan: ApplyPlan { batch_change: spec.name.clone(), changesets: Vec::new() },
        existing,
        created: Vec::new(),
        continued: Vec::new(),
        retired: Vec::new(),
    };
    let mut problems = Vec::new();
    for rewiring in rewire(&spec_keys, &changeset_keys) {
        let (repository_id, head_ref, action, view) = match &rewiring {
            Rewiring::Create { spec } => (spec.repository_id, spec.head_ref.clone(), "create", ChangesetView { external: External::Unpublished, previous: None, current: Some(spec_view(spec)), closing: false }),
            Rewiring::Continue { changeset, spec } => {
                let previous = changeset.previous_spec_id.and_then(|id| applied_specs.get(&id)).map(spec_view);
                let current = spec_view_with(spec, changeset.ui_publication_state.as_deref());
                (changeset.repository_id, spec.head_ref.clone(), "continue", ChangesetView { external: external(changeset), previous, current: Some(current), closing: changeset.closing })
            }
            Rewiring::Retire { changeset } => {
                let applied = changeset.current_spec_id.or(changeset.previous_spec_id).and_then(|id| applied_specs.get(&id));
                (changeset.repository_id, applied.and_then(|spec| spec.head_ref.clone()), "retire", ChangesetView { external: external(changeset), previous: applied.map(spec_view), current: None, closing: changeset.closing })
            }
        };
        let (repository, kind) = describe(repository_id);
        match plan(&view, capabilities(kind)) {
            Ok(operations) => decided.plan.changesets.push(PlannedChangeset {
                repository,
                head_ref: head_ref.unwrap_or_default(),
                action: action.to_owned(),
                operations: operations.iter().map(|operation| operation.as_str().to_owned()).collect(),
            }),
            Err(problem) => problems.push(format!("{repository}: {problem}")),
        }
        match rewiring {
            Rewiring::Create { spec } => decided.created.push((spec.repository_id, spec.id)),
            Rewiring::Continue { changeset, spec } => decided.continued.push((changeset.id, spec.id)),
            Rewiring::Retire { changeset } => decided.retired.push(changeset.id),
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::bad_request(format!("the batch spec cannot be applied as it is:\n{}", problems.join("\n"))));
    }
    Ok(decided)
}

async fn preview(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<ApplyPlan>> {
    authenticate(&state, &headers).await?;
    let row = crate::api::batch_spec_by_id(&state, &id).await?;
    Ok(Json(decide(&state, &row).await?.plan))
}

async fn apply(State(state): State<SharedState>, headers: HeaderMap, Path(id): Path<String>, body: axum::body::Bytes) -> ApiResult<Json<ApplyPlan>> {
    let caller = authenticate(&state, &headers).await?;
    let row = crate::api::batch_spec_by_id(&state, &id).await?;
    crate::access::require_can_administer(&state, &caller, &row).await?;
    let choices = crate::publication_choices::parse(&body)?;
    let status = crate::api::batch_spec_status(&state, &row).await?;
    if !matches!(status.state.as_str(), "completed" | "failed") {
        return Err(ApiError::conflict(format!("the batch spec is still {}: wait until its workspaces finish (`flotilla batch preview` waits)", status.state)));
    }
    if !status.problems.is_empty() {
        return Err(ApiError::conflict(format!("the batch spec cannot be applied: {}", status.problems.join("; "))));
    }
    let decided = decide(&state, &row).await?;
    let chosen = crate::publication_choices::resolve(&state, &row, &choices).await?;
    let now = Clock::now_ms();
    let spec: BatchSpec = serde_json::from_value(row.parsed_spec.clone()).map_err(|error| ApiError::internal(format!("the stored spec is unreadable: {error}")))?;
    let batch_change = match &decided.existing {
        Some(existing) => existing.clone(),
        None => {
            state
                .store
                .create_batch_change(
                    &NewBatchChange {
                        namespace: row.namespace()?,
                        name: spec.name.clone(),
                        description: spec.description.clone(),
                        creator_user_id: caller.user.id,
                        batch_spec_id: Some(row.id),
                    },
                    now,
                )
                .await?
        }
    };
    state.store.record_apply(batch_change.id, &decided.created, &decided.continued, &decided.retired, state.reconciler_entry(), now).await?;
    crate::publication_choices::record(&state, batch_change.id, &chosen, now).await?;
    state
        .store
        .update_batch_change(
            batch_change.id,
            &BatchChangeUpdate {
                description: spec.description.clone(),
                batch_spec_id: Some(row.id),
                last_applier_user_id: Some(caller.user.id),
                last_applied_at: Some(now),
                closed_at: None,
            },
            now,
        )
        .await?;
    state.store.set_batch_spec_batch_change(row.id, Some(batch_change.id), now).await?;
    crate::audit::record(&state, caller.user.id, "batch_change.apply", "batch_change", &spec.name, serde_json::json!({ "batchSpec": row.rand_id })).await?;
    state.changesets_were_sent();
    crate::webhooks::emit(&state, crate::webhooks::Event {
        event: "batch_change.apply".into(),
        batch_change: Some(spec.name.clone()),
        repository: None,
        branch: None,
        message: None,
        at: now,
    });
    Ok(Json(decided.plan))
}

#[derive(Deserialize)]
struct NamespaceQuery {
    namespace: Option<String>,
}

/// The batch change `name` in the namespace the query names (the caller's own by default).
pub(crate) async fn find_batch_change(state: &SharedState, caller: &flotilla_store::AuthenticatedToken, name: &str, namespace: Option<&str>) -> ApiResult<BatchChange> {
    let namespace = match namespace {
        None => Namespace::User(caller.user.id),
        Some(namespace) if namespace == caller.user.username => Namespace::User(caller.user.id),
        Some(namespace) => match state.store.get_org_by_name(namespace).await? {
            Some(org) => Namespace::Org(org.id),
            None => match state.store.get_user_by_username(namespace).await? {
                Some(user) => Namespace::User(user.id),
                None => return Err(ApiError::not_found(format!("no user or organisation named {namespace}"))),
            },
        },
    };
    state
        .store
        .get_batch_change_by_name(namespace, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no batch change {name}; apply a batch spec first (`flotilla batch apply -f SPEC`)")))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CloseRequest {
    #[serde(default)]
    close_changesets: bool,
}

/// Closes a batch change; with `closeChangesets`, its open changesets are closed too (branches
/// deleted on plain git hosts) and archived.
async fn close(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<NamespaceQuery>,
    Json(request): Json<CloseRequest>,
) -> ApiResult<Json<BatchChangeClosed>> {
    let caller = authenticate(&state, &headers).await?;
    let batch_change = find_batch_change(&state, &caller, &name, query.namespace.as_deref()).await?;
    crate::access::require_can_administer_batch_change(&state, &caller, &batch_change).await?;
    let now = Clock::now_ms();
    let mut closing = Vec::new();
    if request.close_changesets {
        let mut after = None;
        loop {
            let page = state.store.list_changesets_for_batch_change(batch_change.id, after, 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            closing.extend(page.iter().filter(|changeset| !changeset.archived && changeset.detached_at.is_none()).map(|changeset| changeset.id));
        }
        state.store.record_apply(batch_change.id, &[], &[], &closing, flotilla_store::ReconcilerEntry::Queued, now).await?;
        state.reconcile_requested.notify_waiters();
    }
    state
        .store
        .update_batch_change(
            batch_change.id,
            &BatchChangeUpdate {
                description: batch_change.description.clone(),
                batch_spec_id: batch_change.batch_spec_id,
                last_applier_user_id: batch_change.last_applier_user_id,
                last_applied_at: batch_change.last_applied_at,
                closed_at: Some(now),
            },
            now,
        )
        .await?;
    crate::audit::record(&state, caller.user.id, "batch_change.close", "batch_change", &name, serde_json::json!({ "closeChangesets": request.close_changesets })).await?;
    crate::webhooks::emit(&state, crate::webhooks::Event {
        event: "batch_change.close".into(),
        batch_change: Some(name.clone()),
        repository: None,
        branch: None,
        message: None,
        at: now,
    });
    Ok(Json(BatchChangeClosed { batch_change: name, closing_changesets: closing.len() }))
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BatchChangeClosed {
    batch_change: String,
    closing_changesets: usize,
}

/// Deletes a closed batch change (its changesets stay on the code hosts as they are).
async fn delete_batch_change(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>, Query(query): Query<NamespaceQuery>) -> ApiResult<axum::http::StatusCode> {
    let caller = authenticate(&state, &headers).await?;
    let batch_change = find_batch_change(&state, &caller, &name, query.namespace.as_deref()).await?;
    crate::access::require_can_administer_batch_change(&state, &caller, &batch_change).await?;
    if batch_change.closed_at.is_none() {
        return Err(ApiError::conflict(format!("batch change {name} is open: close it first (`flotilla batch close {name}`, with --close-changesets to close its changesets)")));
    }
    state.store.delete_batch_change(batch_change.id).await?;
    crate::audit::record(&state, caller.user.id, "batch_change.delete", "batch_change", &name, serde_json::json!({})).await?;
    crate::webhooks::emit(&state, crate::webhooks::Event {
        event: "batch_change.delete".into(),
        batch_change: Some(name),
        repository: None,
        branch: None,
        message: None,
        at: Clock::now_ms(),
    });
    Ok(axum::http::StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct ChangesetListQuery {
    namespace: Option<String>,
    /// At most this many (a page); every changeset when absent.
    limit: Option<i64>,
    /// Only changesets with a larger id (the last id of the previous page).
    after: Option<i64>,
}

async fn list_changesets(State(state): State<SharedState>, headers: HeaderMap, Path(name): Path<String>, Query(query): Query<ChangesetListQuery>) -> ApiResult<Json<Vec<ChangesetInfo>>> {
    let caller = authenticate(&state, &headers).await?;
    let batch_change = find_batch_change(&state, &caller, &name, query.namespace.as_deref()).await?;
    let visibility = crate::access::RepositoryVisibility::for_caller(&state, &caller).await?;
    let wanted = query.limit.map(|limit| limit.clamp(1, 10_000) as usize);
    let mut result = Vec::new();
    let mut after = query.after.map(flotilla_store::ChangesetId);
    loop {
        if wanted.is_some_and(|wanted| result.len() >= wanted) {
            break;
        }
        let page_size = wanted.map_or(1000, |wanted| (wanted - result.len()).min(1000) as i64);
        let page = state.store.list_changesets_for_batch_change(batch_change.id, after, page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let names = visibility.readable_names(&state, page.iter().map(|changeset| changeset.repository_id)).await?;
        let spec_ids: Vec<ChangesetSpecId> = page.iter().filter_map(|changeset| changeset.current_spec_id.or(changeset.previous_spec_id)).collect();
        let specs: HashMap<ChangesetSpecId, ChangesetSpec> = state.store.get_changeset_specs(&spec_ids).await?.into_iter().map(|spec| (spec.id, spec)).collect();
        for changeset in page {
            let Some(repository) = names.get(&changeset.repository_id) else { continue };
            let spec = changeset.current_spec_id.or(changeset.previous_spec_id).and_then(|id| specs.get(&id));
            let retrying = changeset.reconciler_state == "queued" && changeset.num_failures > 0;
            result.push(ChangesetInfo {
                id: changeset.id.0,
                repository: repository.clone(),
                head_ref: spec.as_ref().and_then(|spec| spec.head_ref.clone()).or(changeset.external_branch.clone()).unwrap_or_default(),
                title: spec.as_ref().and_then(|spec| spec.title.clone()).unwrap_or_default(),
                publication_state: changeset.publication_state,
                external_state: changeset.external_state,
                reconciler_state: changeset.reconciler_state,
                failure_message: changeset.failure_message,
                archived: changeset.archived,
                external_id: changeset.external_id,
                external_url: changeset.external_url,
                review_state: changeset.review_state,
                check_state: changeset.check_state,
                num_failures: changeset.num_failures,
                retry_at: changeset.process_after.filter(|_| retrying),
            });
        }
    }
    Ok(Json(result))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkRequest {
    /// publish, comment, merge, close, retry or detach.
    action: String,
    /// The changesets to act on (ids from the list); all of the batch change's when absent.
    #[serde(default)]
    changeset_ids: Option<Vec<i64>>,
    /// The comment, for `comment`.
    #[serde(default)]
    body: Option<String>,
    /// Squash when merging.
    #[serde(default)]
    squash: bool,
    /// Publish as drafts, for `publish`.
    #[serde(default)]
    draft: bool,
}

/// What a bulk operation did, per changeset.
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct BulkOutcome {
    id: i64,
    repository: String,
    /// done, skipped (not available for this changeset, with the reason) or failed.
    outcome: String,
    message: Option<String>,
}

/// Bulk operations on a selection of a batch change's changesets, with Sourcegraph's
/// availability rules: publish needs a changeset whose spec leaves `published` unset (and goes
/// through the rollout schedule), comment and merge need an open pull request, close an open
/// or draft one, retry a failed changeset, detach one no spec produces any more.
async fn bulk(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(query): Query<NamespaceQuery>,
    Json(request): Json<BulkRequest>,
) -> ApiResult<Json<Vec<BulkOutcome>>> {
    let caller = authenticate(&state, &headers).await?;
    let batch_change = find_batch_change(&state, &caller, &name, query.namespace.as_deref()).await?;
    crate::access::require_can_administer_batch_change(&state, &caller, &batch_change).await?;
    if !matches!(request.action.as_str(), "publish" | "comment" | "merge" | "close" | "retry" | "detach") {
        return Err(ApiError::bad_request(format!("unknown bulk action {:?}: use publish, comment, merge, close, retry or detach", request.action)));
    }
    let body = match (request.action.as_str(), request.body.as_deref().map(str::trim)) {
        ("comment", Some(body)) if !body.is_empty() => body.to_owned(),
        ("comment", _) => return Err(ApiError::bad_request("a comment needs a body")),
        _ => String::new(),
    };
    let mut changesets = Vec::new();
    let mut after = None;
    loop {
        let page = state.store.list_changesets_for_batch_change(batch_change.id, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        changesets.extend(page.into_iter().filter(|changeset| request.changeset_ids.as_ref().is_none_or(|ids| ids.contains(&changeset.id.0))));
    }
    let names = crate::access::RepositoryVisibility::for_caller(&state, &caller).await?.readable_names(&state, changesets.iter().map(|changeset| changeset.repository_id)).await?;
    let now = Clock::now_ms();
    let specs: HashMap<ChangesetSpecId, ChangesetSpec> = if request.action == "publish" {
        let ids: Vec<ChangesetSpecId> = changesets.iter().filter_map(|changeset| changeset.current_spec_id).collect();
        let mut specs = HashMap::new();
        for chunk in ids.chunks(1000) {
            specs.extend(state.store.get_changeset_specs(chunk).await?.into_iter().map(|spec| (spec.id, spec)));
        }
        specs
    } else {
        HashMap::new()
    };
    let mut outcomes = Vec::new();
    let (mut to_close, mut to_retry, mut to_publish) = (Vec::new(), Vec::new(), Vec::new());
    for changeset in changesets {
        let Some(repository_name) = names.get(&changeset.repository_id).cloned() else { continue };
        let open = matches!(changeset.external_state.as_deref(), Some("OPEN" | "DRAFT"));
        let skip = |reason: &str| BulkOutcome { id: changeset.id.0, repository: repository_name.clone(), outcome: "skipped".into(), message: Some(reason.to_owned()) };
        let outcome = match request.action.as_str() {
            "publish" => match publish_refusal(&changeset, changeset.current_spec_id.and_then(|id| specs.get(&id)), request.draft) {
                Some(reason) => skip(reason),
                None => {
                    to_publish.push(changeset.id);
                    BulkOutcome { id: changeset.id.0, repository: repository_name.clone(), outcome: "done".into(), message: None }
                }
            },
            "close" if open || changeset.external_state.as_deref() == Some("PUSHED") => {
                to_close.push(changeset.id);
                BulkOutcome { id: changeset.id.0, repository: repository_name.clone(), outcome: "done".into(), message: None }
            }
            "close" => skip("not open"),
            "retry" if changeset.reconciler_state == "failed" => match changeset.current_spec_id {
                Some(spec) => {
                    to_retry.push((changeset.id, spec));
                    BulkOutcome { id: changeset.id.0, repository: repository_name.clone(), outcome: "done".into(), message: None }
                }
                None => skip("no spec to retry"),
            },
            "retry" => skip("not failed"),
            "detach" if changeset.current_spec_id.is_none() => {
                state
                    .store
                    .finish_reconciling(changeset.id, &flotilla_store::ReconcileOutcome { reconciler_state: "completed".into(), detached: true, ..Default::default() }, now)
                    .await?;
                BulkOutcome { id: changeset.id.0, repository: repository_name.clone(), outcome: "done".into(), message: None }
            }
            "detach" => skip("still produced by the batch change's spec"),
            "comment" | "merge" if changeset.external_state.as_deref() == Some("OPEN") => {
                forge_action(&state, &changeset, &repository_name, &request.action, &body, request.squash, now).await
            }
            _ => skip("needs an open pull request"),
        };
        outcomes.push(outcome);
    }
    if !to_retry.is_empty() {
        state.store.record_apply(batch_change.id, &[], &to_retry, &[], flotilla_store::ReconcilerEntry::Queued, now).await?;
    }
    if !to_close.is_empty() {
        state.store.mark_changesets_closing(&to_close, now).await?;
    }
    if !to_close.is_empty() || !to_retry.is_empty() {
        state.reconcile_requested.notify_waiters();
    }
    if !to_publish.is_empty() {
        let chosen = if request.draft { "DRAFT" } else { "PUBLISHED" };
        state.store.set_ui_publication_state(&to_publish, chosen, state.reconciler_entry(), now).await?;
        state.changesets_were_sent();
    }
    crate::audit::record(&state, caller.user.id, &format!("changesets.{}", request.action), "batch_change", &name, serde_json::json!({ "changesets": outcomes.len() })).await?;
    Ok(Json(outcomes))
}

/// Why a changeset cannot be published (as a draft when `draft`) by a person, if it cannot:
/// Sourcegraph's rules (the spec decides when it sets `published`; imported and archived
/// changesets are not the batch change's to publish; nothing goes back to being a draft).
fn publish_refusal(changeset: &Changeset, spec: Option<&ChangesetSpec>, draft: bool) -> Option<&'static str> {
    let Some(spec) = spec else { return Some("no spec of the batch change produces it any more") };
    if changeset.archived {
        return Some("archived");
    }
    if spec.kind == flotilla_store::ChangesetSpecKind::Existing {
        return Some("an imported changeset is not published by the batch change");
    }
    if spec_sets_published(spec) {
        return Some("cannot publish a changeset that has a published value set in its changesetTemplate: change `published` in the spec and apply it");
    }
    match (external(changeset), draft) {
        (External::Unpublished, _) => None,
        (External::Draft, false) => None,
        (External::Draft, true) => Some("already a draft"),
        (_, true) => Some("already published: a published pull request cannot become a draft"),
        (_, false) => Some("already published"),
    }
}

/// A comment or merge on one pull request, now.
async fn forge_action(state: &SharedState, changeset: &Changeset, repository_name: &str, action: &str, body: &str, squash: bool, now: i64) -> BulkOutcome {
    let outcome = |result: Result<(), String>| BulkOutcome {
        id: changeset.id.0,
        repository: repository_name.to_owned(),
        outcome: if result.is_ok() { "done".into() } else { "failed".into() },
        message: result.err(),
    };
    let result = async {
        let repository = state.store.get_repository(changeset.repository_id).await.map_err(|error| error.to_string())?;
        let host = state.store.get_code_host(repository.code_host_id).await.map_err(|error| error.to_string())?;
        let adapter = state.forges.adapter(state, &host)?;
        let reference = crate::forges::repository_ref(&host, &repository.name).ok_or_else(|| "not a forge repository".to_owned())?;
        let number: u64 = changeset.external_id.as_deref().and_then(|id| id.parse().ok()).ok_or_else(|| "no pull request number".to_owned())?;
        if action == "comment" {
            adapter.comment(&reference, number, body).await.map_err(|error| error.to_string())
        } else {
            let method = if squash { flotilla_codehost::MergeMethod::Squash } else { flotilla_codehost::MergeMethod::Merge };
            adapter.merge_changeset(&reference, number, method).await.map_err(|error| error.to_string())?;
            let review = changeset.review_state.clone().unwrap_or_else(|| "PENDING".into());
            let check = changeset.check_state.clone().unwrap_or_else(|| "UNKNOWN".into());
            state.store.record_changeset_sync(changeset.id, "MERGED", &review, &check, now).await.map_err(|error| error.to_string())
        }
    }
    .await;
    outcome(result)
}
