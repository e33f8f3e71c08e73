//! Publication choices made at apply time: for changesets whose spec leaves `published` unset,
//! the person applying says which to publish, which to publish as drafts and which to leave
//! unpublished (Sourcegraph's `publicationStates`), in the same request as the apply. The web
//! interface's preview page sends them; `POST …/apply` without a body (the CLI) makes none.
//!
//! Choices are checked before the apply writes anything (each must name a changeset spec of
//! the batch spec, by repository and branch, whose template leaves `published` unset) and are
//! recorded as the changesets' `ui_publication_state` right after the apply queued them,
//! before the reconciler is woken, so the first reconcile already publishes them.

use std::collections::HashMap;

use flotilla_store::{BatchChangeId, BatchSpec as BatchSpecRow, ChangesetSpec, ChangesetSpecId, ChangesetSpecKind};
use serde::Deserialize;

use crate::SharedState;
use crate::error::{ApiError, ApiResult};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApplyRequest {
    #[serde(default)]
    publication_states: Vec<Choice>,
}

/// One choice: the changeset spec (repository and branch, as the preview shows them) and
/// `PUBLISHED`, `DRAFT` or `UNPUBLISHED`.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Choice {
    repository: String,
    head_ref: String,
    state: String,
}

/// The choices in an apply's body; an empty body (or `{}`) has none.
pub fn parse(body: &[u8]) -> ApiResult<Vec<Choice>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Vec::new());
    }
    let request: ApplyRequest = serde_json::from_slice(body).map_err(|error| {
        ApiError::bad_request(format!("the apply body must be {{\"publicationStates\": [{{\"repository\", \"headRef\", \"state\": \"PUBLISHED|DRAFT|UNPUBLISHED\"}}]}}: {error}"))
    })?;
    for choice in &request.publication_states {
        if !matches!(choice.state.as_str(), "PUBLISHED" | "DRAFT" | "UNPUBLISHED") {
            return Err(ApiError::bad_request(format!("unknown publication state {:?} for {}: use PUBLISHED, DRAFT or UNPUBLISHED", choice.state, choice.repository)));
        }
    }
    Ok(request.publication_states)
}

/// The changeset specs the choices name, with the state chosen for each; refuses a choice for
/// a spec that does not exist or that sets `published` itself.
pub async fn resolve(state: &SharedState, row: &BatchSpecRow, choices: &[Choice]) -> ApiResult<Vec<(ChangesetSpecId, &'static str)>> {
    if choices.is_empty() {
        return Ok(Vec::new());
    }
    let mut specs: Vec<ChangesetSpec> = Vec::new();
    let mut after = None;
    loop {
        let page = state.store.list_changeset_specs(row.id, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        specs.extend(page.into_iter().filter(|spec| spec.kind == ChangesetSpecKind::Branch));
    }
    let mut ids: Vec<_> = specs.iter().map(|spec| spec.repository_id).collect();
    ids.sort();
    ids.dedup();
    let names: HashMap<_, _> = state.store.get_repositories(&ids).await?.into_iter().map(|repository| (repository.id, repository.name)).collect();
    let mut resolved = Vec::with_capacity(choices.len());
    for choice in choices {
        let spec = specs
            .iter()
            .find(|spec| names.get(&spec.repository_id) == Some(&choice.repository) && spec.head_ref.as_deref() == Some(choice.head_ref.as_str()))
            .ok_or_else(|| ApiError::bad_request(format!("the batch spec has no changeset for {} on {}; see its apply-preview", choice.repository, choice.head_ref)))?;
        if crate::apply::spec_sets_published(spec) {
            return Err(ApiError::bad_request(format!(
                "{}: its changesetTemplate sets `published`, so it cannot be chosen at apply; change `published` in the spec",
                choice.repository
            )));
        }
        let chosen = match choice.state.as_str() {
            "PUBLISHED" => "PUBLISHED",
            "DRAFT" => "DRAFT",
            _ => "UNPUBLISHED",
        };
        resolved.push((spec.id, chosen));
    }
    Ok(resolved)
}

/// Records the choices on the batch change's changesets that the apply pointed at those specs.
/// A changeset already further along (published when a draft is asked for, say) keeps its
/// state, as a bulk publish would leave it.
pub async fn record(state: &SharedState, batch_change: BatchChangeId, chosen: &[(ChangesetSpecId, &'static str)], now: i64) -> ApiResult<()> {
    if chosen.is_empty() {
        return Ok(());
    }
    let wanted: HashMap<ChangesetSpecId, &'static str> = chosen.iter().copied().collect();
    let mut by_state: HashMap<&'static str, Vec<flotilla_store::ChangesetId>> = HashMap::new();
    let mut after = None;
    loop {
        let page = state.store.list_changesets_for_batch_change(batch_change, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for changeset in page {
            let Some(choice) = changeset.current_spec_id.and_then(|id| wanted.get(&id)) else { continue };
            let allowed = match (crate::apply::external(&changeset), *choice) {
                (_, "UNPUBLISHED") => changeset.publication_state == "UNPUBLISHED",
                (crate::reconciler_plan::External::Unpublished, _) => true,
                (crate::reconciler_plan::External::Draft, "PUBLISHED") => true,
                _ => false,
            };
            if allowed {
                by_state.entry(choice).or_default().push(changeset.id);
            }
        }
    }
    for (choice, ids) in by_state {
        state.store.set_ui_publication_state(&ids, choice, state.reconciler_entry(), now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_body_makes_no_choice() {
        assert!(parse(b"").expect("empty").is_empty());
        assert!(parse(b"{}").expect("empty object").is_empty());
        assert!(parse(b"  \n").expect("blank").is_empty());
    }

    #[test]
    fn choices_are_read_and_checked() {
        let choices = parse(br#"{"publicationStates": [{"repository": "local/a", "headRef": "refs/heads/x", "state": "DRAFT"}]}"#).expect("choices");
        assert_eq!(choices, vec![Choice { repository: "local/a".into(), head_ref: "refs/heads/x".into(), state: "DRAFT".into() }]);
        assert!(parse(br#"{"publicationStates": [{"repository": "a", "headRef": "b", "state": "LOUD"}]}"#).is_err());
        assert!(parse(br#"{"publish": true}"#).is_err());
        assert!(parse(b"not json").is_err());
    }
}
