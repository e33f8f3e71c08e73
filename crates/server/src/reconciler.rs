//! The reconciler: a background worker that brings each queued changeset to where its spec
//! wants it, one changeset at a time, with the operations [`crate::reconciler_plan`] decides
//! from the stored state (so a crash mid-way just plans the rest again: the changeset a dead
//! server process held is heartbeated while worked on, and queued again by the janitor).
//!
//! On plain git hosts (a folder of repositories, or git URLs) a changeset is a branch: `Push`
//! commits the spec's diff onto its base in the server's mirror and force-pushes it to the
//! repository's own remote (the branch belongs to the batch change), and `Close` deletes the
//! branch. On forges (GitHub today, through `flotilla-codehost`) the branch is pushed the same
//! way and the pull request opened (looking first for one the branch already has, so a crash
//! never opens two), updated, undrafted, closed or reopened. A diff that no longer applies fails at once;
//! other failures (the remote unreachable, a code host answering 5xx, 429 or nothing) are retried
//! with growing pauses (`--reconciler-retry-pause`, doubled up to 5 minutes, never shorter than a
//! `Retry-After`), ten attempts in all, the changeset `queued` meanwhile with a message saying
//! what failed and when the next attempt comes.

use std::time::Duration;

use flotilla_git::{BranchName, CommitId, GitTime, PushOptions, Signature};
use flotilla_store::{Changeset, ChangesetSpec, Clock, ReconcileOutcome};
use tokio_util::sync::CancellationToken;

use crate::SharedState;
use crate::apply::{capabilities, external, spec_view, spec_view_with};
use crate::mirrors::mirror_path;
use crate::reconciler_plan::{ChangesetView, Operation, plan};

/// Attempts before a retryable failure becomes final.
const MAX_ATTEMPTS: i64 = 10;

/// Runs until shutdown.
pub async fn run_worker(state: SharedState, shutdown: CancellationToken) {
    loop {
        match state.store.next_changeset_to_reconcile(Clock::now_ms()).await {
            Ok(Some(changeset)) => {
                let outcome = reconcile_with_heartbeats(&state, &changeset).await;
                if let Some(message) = &outcome.failure_message {
                    tracing::warn!(changeset.id = changeset.id.0, state = %outcome.reconciler_state, error = %message, "reconciling a changeset failed");
                }
                announce(&state, &changeset, &outcome).await;
                if let Err(error) = state.store.finish_reconciling(changeset.id, &outcome, Clock::now_ms()).await {
                    tracing::error!(changeset.id = changeset.id.0, %error, "recording a reconciled changeset failed");
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => tracing::error!(%error, "taking the next changeset to reconcile failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.reconcile_requested.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}

/// Reconciles one changeset while refreshing its `updated_at` every third of the stall
/// timeout, so the janitor requeues it only if this server process dies mid-way (a slow forge
/// or a long rate-limit wait is not a death).
async fn reconcile_with_heartbeats(state: &SharedState, changeset: &Changeset) -> ReconcileOutcome {
    let reconciling = reconcile(state, changeset);
    tokio::pin!(reconciling);
    let period = (state.config.stalled_after / 3).max(Duration::from_millis(500));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            outcome = &mut reconciling => return outcome,
            _ = ticker.tick() => {
                if let Err(error) = state.store.touch_reconciling(changeset.id, Clock::now_ms()).await {
                    tracing::warn!(changeset.id = changeset.id.0, %error, "recording a reconciler heartbeat failed");
                }
            }
        }
    }
}

/// Tells the webhooks what happened: a changeset published (pushed) or failed for good.
async fn announce(state: &SharedState, changeset: &Changeset, outcome: &ReconcileOutcome) {
    let event = match (outcome.reconciler_state.as_str(), outcome.external_state.as_deref()) {
        ("failed", _) => "changeset.error",
        ("completed", Some("PUSHED" | "OPEN" | "DRAFT")) => "changeset.publish",
        _ => return,
    };
    if state.config.webhooks.urls.is_empty() {
        return;
    }
    let batch_change = match changeset.owned_by_batch_change_id {
        Some(id) => state.store.get_batch_change(id).await.ok().map(|batch_change| batch_change.name),
        None => None,
    };
    let repository = state.store.get_repository(changeset.repository_id).await.ok().map(|repository| repository.name);
    crate::webhooks::emit(state, crate::webhooks::Event {
        event: event.into(),
        batch_change,
        repository,
        branch: outcome.external_branch.clone().or(changeset.external_branch.clone()),
        message: outcome.failure_message.clone(),
        at: Clock::now_ms(),
    });
}

/// Why one pass failed: final, or worth another try later.
enum Failure {
    Final(String),
    Retry(String),
    /// Retry, but not before this (a code host's `Retry-After` or rate-limit reset).
    RetryAfter(String, Duration),
}

/// The longest pause between two attempts at one changeset.
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(300);

async fn reconcile(state: &SharedState, changeset: &Changeset) -> ReconcileOutcome {
    let (message, asked_wait) = match try_reconcile(state, changeset).await {
        Ok(outcome) => return outcome,
        Err(Failure::Final(message)) => {
            return ReconcileOutcome { reconciler_state: "failed".into(), failure_message: Some(message), ..ReconcileOutcome::default() };
        }
        Err(Failure::Retry(message)) => (message, None),
        Err(Failure::RetryAfter(message, wait)) => (message, Some(wait)),
    };
    let attempt = changeset.num_failures + 1;
    if attempt >= MAX_ATTEMPTS {
        return ReconcileOutcome {
            reconciler_state: "failed".into(),
            failure_message: Some(format!("{message} (gave up after {MAX_ATTEMPTS} attempts; retry with a new apply)")),
            ..ReconcileOutcome::default()
        };
    }
    let pause = retry_pause(state.config.reconciler_retry_pause, changeset.num_failures, asked_wait);
    ReconcileOutcome {
        reconciler_state: "queued".into(),
        // Say what failed, which attempt it was and when the next one comes, as Sourcegraph's
        // "retrying" changesets do, so nobody has to guess whether to act.
        failure_message: Some(format!("{message} (reconciling attempt {attempt} of {MAX_ATTEMPTS} failed; next attempt in {} s)", pause.as_secs().max(1))),
        process_after: Some(Clock::now_ms() + pause.as_millis() as i64),
        ..ReconcileOutcome::default()
    }
}

/// The pause after `failures_before` earlier failures: `first` doubled each time, at most
/// [`MAX_RETRY_PAUSE`], and never shorter than the wait the code host asked for.
fn retry_pause(first: Duration, failures_before: i64, asked_wait: Option<Duration>) -> Duration {
    let doubled = first.saturating_mul(2u32.saturating_pow(failures_before.clamp(0, 16) as u32)).min(MAX_RETRY_PAUSE);
    doubled.max(asked_wait.unwrap_or_default())
}

async fn try_reconcile(state: &SharedState, changeset: &Changeset) -> Result<ReconcileOutcome, Failure> {
    let store_error = |error: flotilla_store::StoreError| Failure::Retry(error.to_string());
    let current = match changeset.current_spec_id {
        Some(id) => Some(state.store.get_changeset_spec(id).await.map_err(store_error)?),
        None => None,
    };
    let previous = match changeset.previous_spec_id {
        Some(id) => Some(state.store.get_changeset_spec(id).await.map_err(store_error)?),
        None => None,
    };
    let repository = state.store.get_repository(changeset.repository_id).await.map_err(store_error)?;
    let host = state.store.get_code_host(repository.code_host_id).await.map_err(store_error)?;
    let view = ChangesetView {
        external: external(changeset),
        previous: previous.as_ref().map(spec_view),
        current: current.as_ref().map(|spec| spec_view_with(spec, changeset.ui_publication_state.as_deref())),
        closing: changeset.closing,
    };
    let host_capabilities = capabilities(host.kind);
    let operations = plan(&view, host_capabilities).map_err(Failure::Final)?;
    let mut outcome = ReconcileOutcome { reconciler_state: "completed".into(), ..ReconcileOutcome::default() };
    if operations.is_empty() {
        return Ok(outcome);
    }
    let mut credentials = crate::code_host_credentials::connection_git_credentials(&state.config.secret_key, &host).map_err(|error| Failure::Final(error.to_string()))?;
    let forge = if host_capabilities.pull_requests {
        // Act as the user who last applied the batch change: their own credential for this
        // host if they set one, so the pull requests are theirs; else the connection's.
        let acting_user = match changeset.owned_by_batch_change_id {
            Some(id) => state.store.get_batch_change(id).await.ok().and_then(|batch_change| batch_change.last_applier_user_id.or(batch_change.creator_user_id)),
            None => None,
        };
        let (adapter, credential) = state.forges.adapter_for_user(state, &host, acting_user).await.map_err(Failure::Final)?;
        credentials = Some(
            crate::code_host_credentials::git_credentials(&state.config.secret_key, host.kind, &credential).map_err(|error| Failure::Final(error.to_string()))?,
        );
        let reference = crate::forges::repository_ref(&host, &repository.name)
            .ok_or_else(|| Failure::Final(format!("{} is not named NAME/owner/repo on code host {}", repository.name, host.name)))?;
        Some((adapter, reference))
    } else {
        None
    };
    let mut number: Option<u64> = changeset.external_id.as_deref().and_then(|id| id.parse().ok());
    let mirror = mirror_path(&state.config, repository.id);
    let options = || PushOptions { credentials: credentials.as_ref(), force: true, timeout: Some(Duration::from_secs(600)) };
    for operation in operations {
        match operation {
            Operation::Push => {
                let spec = current.as_ref().ok_or_else(|| Failure::Final("nothing to push: the changeset has no spec".to_owned()))?;
                // Pushing to the repository itself when the spec asked for a fork would put the
                // branch where its author said not to: refuse instead.
                if spec.fork.as_deref() == Some("true") {
                    return Err(Failure::Final(
                        "changesetTemplate.fork is not supported yet: Flotilla pushes branches to the repository itself; remove `fork: true` (the credential then needs push access)"
                            .to_owned(),
                    ));
                }
                let (branch, commit) = commit_for(&mirror, spec).await?;
                flotilla_git::push(&mirror, &repository.clone_url, &commit, &branch, options())
                    .await
                    .map_err(|error| Failure::Retry(format!("pushing {} to {}: {error}", branch.as_str(), repository.name)))?;
                if forge.is_none() {
                    outcome.publication_state = Some("PUBLISHED".into());
                    outcome.external_state = Some("PUSHED".into());
                }
                outcome.external_branch = spec.head_ref.clone();
            }
            Operation::Publish | Operation::PublishDraft if forge.is_some() => {
                let (adapter, reference) = forge.as_ref().ok_or_else(|| Failure::Final("no forge".into()))?;
                let spec = current.as_ref().ok_or_else(|| Failure::Final("nothing to publish: the changeset has no spec".to_owned()))?;
                let head = spec.head_ref.as_deref().unwrap_or_default().trim_start_matches("refs/heads/").to_owned();
                // Crash-safe: a pull request this branch already has (say, opened just before a
                // crash) is taken over, never opened twice.
                let existing = adapter.find_changeset_by_head(reference, &head).await.map_err(forge_failure)?;
                let opened = match existing.filter(|found| matches!(found.state, flotilla_codehost::ExternalState::Open | flotilla_codehost::ExternalState::Draft)) {
                    Some(found) => found,
                    None => adapter
                        .create_changeset(&flotilla_codehost::ChangesetRequest {
                            repository: reference.clone(),
                            base_ref: spec.base_ref.as_deref().unwrap_or_default().trim_start_matches("refs/heads/").to_owned(),
                            head_ref: head.clone(),
                            title: spec.title.clone().unwrap_or_default(),
                            body: spec.body.clone().unwrap_or_default(),
                            draft: operation == Operation::PublishDraft,
                        })
                        .await
                        .map_err(forge_failure)?,
                };
                record_forge(&mut outcome, &opened);
                number = Some(opened.number);
            }
            Operation::Update | Operation::Undraft | Operation::Reopen | Operation::Close if forge.is_some() => {
                let (adapter, reference) = forge.as_ref().ok_or_else(|| Failure::Final("no forge".into()))?;
                let number = number.ok_or_else(|| Failure::Final("the pull request's number is unknown: retry the changeset".to_owned()))?;
                let changed = match operation {
                    Operation::Undraft => adapter.mark_ready_for_review(reference, number).await,
                    Operation::Update => {
                        let spec = current.as_ref().ok_or_else(|| Failure::Final("nothing to update from".to_owned()))?;
                        let update = flotilla_codehost::ChangesetUpdate {
                            title: spec.title.clone(),
                            body: spec.body.clone(),
                            base_ref: spec.base_ref.as_deref().map(|base| base.trim_start_matches("refs/heads/").to_owned()),
                            open: None,
                        };
                        adapter.update_changeset(reference, number, &update).await
                    }
                    _ => {
                        let update = flotilla_codehost::ChangesetUpdate { open: Some(operation == Operation::Reopen), ..Default::default() };
                        adapter.update_changeset(reference, number, &update).await
                    }
                }
                .map_err(forge_failure)?;
                record_forge(&mut outcome, &changed);
            }
            Operation::Close => {
                let head_ref = previous.as_ref().and_then(|spec| spec.head_ref.clone()).or(changeset.external_branch.clone()).unwrap_or_default();
                let branch = BranchName::new(head_ref.trim_start_matches("refs/heads/")).map_err(|error| Failure::Final(error.to_string()))?;
                flotilla_git::delete_remote_branch(&mirror, &repository.clone_url, &branch, options())
                    .await
                    .map_err(|error| Failure::Retry(format!("deleting {} in {}: {error}", branch.as_str(), repository.name)))?;
                outcome.external_state = Some("CLOSED".into());
            }
            Operation::Import => {
                let (adapter, reference) = forge.as_ref().ok_or_else(|| Failure::Final("importChangesets needs a code host with pull requests".into()))?;
                let spec = current.as_ref().ok_or_else(|| Failure::Final("nothing to import".to_owned()))?;
                let wanted: u64 = spec
                    .external_id
                    .as_deref()
                    .and_then(|id| id.trim_start_matches('#').parse().ok())
                    .ok_or_else(|| Failure::Final(format!("importChangesets: {:?} is not a pull request number", spec.external_id)))?;
                let loaded = adapter.load_changeset(reference, wanted).await.map_err(forge_failure)?;
                record_forge(&mut outcome, &loaded);
                outcome.external_branch = Some(format!("refs/heads/{}", loaded.head_ref));
            }
            Operation::Archive => outcome.archived = true,
            Operation::Detach => outcome.detached = true,
            Operation::Publish | Operation::PublishDraft | Operation::Update | Operation::Undraft | Operation::Reopen => {
                return Err(Failure::Final(format!("{operation:?} needs pull requests, which this code host does not have")));
            }
        }
    }
    Ok(outcome)
}

/// Records where a pull request is after an operation.
fn record_forge(outcome: &mut ReconcileOutcome, changeset: &flotilla_codehost::ExternalChangeset) {
    outcome.publication_state = Some("PUBLISHED".into());
    outcome.external_id = Some(changeset.number.to_string());
    outcome.external_url = Some(changeset.url.clone());
    outcome.external_state = Some(
        match changeset.state {
            flotilla_codehost::ExternalState::Open => "OPEN",
            flotilla_codehost::ExternalState::Draft => "DRAFT",
            flotilla_codehost::ExternalState::Closed => "CLOSED",
            flotilla_codehost::ExternalState::Merged => "MERGED",
        }
        .to_owned(),
    );
}

/// A forge's error: retried later when the host may recover (after the wait it asked for,
/// if it did), final when it cannot.
fn forge_failure(error: flotilla_codehost::CodeHostError) -> Failure {
    match (error.is_retryable(), error.retry_after()) {
        (false, _) => Failure::Final(error.to_string()),
        (true, Some(wait)) => Failure::RetryAfter(error.to_string(), wait),
        (true, None) => Failure::Retry(error.to_string()),
    }
}

/// The spec's commit: its diff on its base revision, with its message and author, dated when
/// the spec was made (so the same spec always gives the same commit).
async fn commit_for(mirror: &std::path::Path, spec: &ChangesetSpec) -> Result<(BranchName, CommitId), Failure> {
    let final_error = |error: flotilla_git::GitError| Failure::Final(error.to_string());
    let head_ref = spec.head_ref.as_deref().unwrap_or_default();
    let branch = BranchName::new(head_ref.trim_start_matches("refs/heads/")).map_err(final_error)?;
    let base = CommitId::new(spec.base_rev.as_deref().unwrap_or_default()).map_err(final_error)?;
    let time = GitTime { seconds_since_epoch: spec.created_at / 1000, offset_minutes: 0 };
    let author = Signature {
        name: spec.author_name.clone().unwrap_or_else(|| "Flotilla".to_owned()),
        email: spec.author_email.clone().unwrap_or_else(|| "flotilla@localhost".to_owned()),
        time,
    };
    let commit = flotilla_git::commit_diff(mirror, &base, spec.diff.as_deref().unwrap_or_default(), spec.commit_message.as_deref().unwrap_or_default(), &author, &author)
        .await
        .map_err(|error| match error {
            flotilla_git::GitError::PatchDoesNotApply { .. } => Failure::Final(format!("the changeset's diff does not apply to its base any more: {error}; run the batch spec again")),
            other => Failure::Retry(other.to_string()),
        })?;
    Ok((branch, commit))
}

/// Keeps published pull requests' state fresh (merged, closed, review and check state) by
/// asking their code hosts, least recently synced first, every `changeset_sync_interval`.
/// Incoming webhooks ([`crate::incoming_webhooks`]) sync the changesets they name at once;
/// this pass catches whatever no delivery announced.
pub async fn run_sync_worker(state: SharedState, shutdown: CancellationToken) {
    // Several servers of one database would each ask the forges for every pull request: one
    // leads (webhook deliveries still sync at once on whichever server receives them).
    let mut leadership = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(state.config.changeset_sync_interval) => {}
        }
        if !crate::leadership::lead(&state, "changeset-sync", &mut leadership).await {
            continue;
        }
        if let Err(error) = sync_once(&state).await {
            tracing::warn!(%error, "syncing changesets failed");
        }
    }
}

/// One sync pass over up to 200 changesets; a code host that fails is retried next pass.
pub async fn sync_once(state: &SharedState) -> Result<(), flotilla_store::StoreError> {
    for changeset in state.store.changesets_to_sync(200).await? {
        sync_changeset(state, &changeset).await?;
    }
    Ok(())
}

/// Syncs one published changeset now: reads its pull request from its code host and stores
/// its external, review and check state. The sync worker calls it for each changeset in turn,
/// an incoming webhook for the changesets it names. Returns whether the state was read; a code
/// host that cannot be asked (no adapter, an unreachable host) is logged and tried again by the
/// next sync.
pub async fn sync_changeset(state: &SharedState, changeset: &Changeset) -> Result<bool, flotilla_store::StoreError> {
    let Some(number) = changeset.external_id.as_deref().and_then(|id| id.parse::<u64>().ok()) else { return Ok(false) };
    let repository = state.store.get_repository(changeset.repository_id).await?;
    let host = state.store.get_code_host(repository.code_host_id).await?;
    let (Ok(adapter), Some(reference)) = (state.forges.adapter(state, &host), crate::forges::repository_ref(&host, &repository.name)) else { return Ok(false) };
    match adapter.load_changeset(&reference, number).await {
        Ok(loaded) => {
            let mut outcome = ReconcileOutcome::default();
            record_forge(&mut outcome, &loaded);
            let review = format!("{:?}", loaded.review_state).to_uppercase();
            let check = format!("{:?}", loaded.check_state).to_uppercase();
            state
                .store
                .record_changeset_sync(changeset.id, outcome.external_state.as_deref().unwrap_or("OPEN"), &review, &check, Clock::now_ms())
                .await?;
            Ok(true)
        }
        Err(error) => {
            tracing::warn!(changeset.id = changeset.id.0, %error, "loading a pull request failed; the next sync tries again");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_pauses_double_up_to_five_minutes_and_honour_the_hosts_wait() {
        let first = Duration::from_secs(5);
        let pauses: Vec<u64> = (0..9).map(|failures| retry_pause(first, failures, None).as_secs()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retry_pause(first, 0, Some(Duration::from_secs(42))), Duration::from_secs(42), "a Retry-After longer than the backoff wins");
        assert_eq!(retry_pause(first, 3, Some(Duration::from_secs(1))), Duration::from_secs(40));
        assert_eq!(retry_pause(Duration::from_secs(1), 40, None), MAX_RETRY_PAUSE, "no overflow after many failures");
    }
}
