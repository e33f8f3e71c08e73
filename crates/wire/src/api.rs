//! The user API's request and response bodies (`/api/v1/...`), shared by the server and the
//! command-line client.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateCodeHost {
    /// `git-directory`, `git-urls`, `github`, `gitlab`, `gitea` (`forgejo` is the same kind) or
    /// `bitbucket-server`.
    pub kind: String,
    pub name: String,
    /// For `git-directory`: the folder whose git repositories are mirrored.
    #[serde(default)]
    pub path: Option<String>,
    /// For `git-urls`: the clone URLs.
    #[serde(default)]
    pub urls: Vec<String>,
    /// For forges: the API's base URL, e.g. https://api.github.com or https://HOST/api/v1 (Gitea).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For forges: mirror every repository of this organisation...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// ...or exactly these (`owner/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<String>,
    /// The connection's credential, if it needs one from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<SetCodeHostCredential>,
}

/// A code host credential being set: a personal access token (or password) and, for hosts
/// that need one, the account's username. Sent once, stored encrypted, never returned.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetCodeHostCredential {
    pub token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

impl std::fmt::Debug for SetCodeHostCredential {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("SetCodeHostCredential")
            .field("token", &"<redacted>")
            .field("username", &self.username)
            .finish()
    }
}

/// A stored code host credential, without its value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeHostCredentialInfo {
    pub code_host_id: i64,
    pub code_host: String,
    /// `connection` (the code host's own, site admins) or `user` (the caller's own).
    pub scope: String,
    pub username: Option<String>,
    pub updated_at_ms: i64,
}

/// A code host connection's incoming webhook secret being set (site admins). Sent once,
/// stored encrypted, never returned.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetWebhookSecret {
    pub secret: String,
}

impl std::fmt::Debug for SetWebhookSecret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("SetWebhookSecret").field("secret", &"<redacted>").finish()
    }
}

/// Where a code host connection's webhooks are received, without the secret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookSecretInfo {
    pub code_host_id: i64,
    pub code_host: String,
    pub kind: String,
    /// The path on this server the forge delivers to (`/api/webhooks/NAME`), to prefix with the
    /// server's URL as the forge reaches it.
    pub path: String,
    /// The events to enable on the forge.
    pub events: Vec<String>,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeHostInfo {
    pub id: i64,
    pub kind: String,
    pub name: String,
    pub url: String,
    /// Whether the connection has a credential (its value is never returned).
    #[serde(default)]
    pub has_credential: bool,
    /// Whether the caller stored their own credential for this code host.
    #[serde(default)]
    pub has_my_credential: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryInfo {
    pub name: String,
    pub mirror_state: String,
    pub default_branch: Option<String>,
    pub head_commit: Option<String>,
    pub last_synced_at_ms: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRequest {
    /// One repository, or every repository when absent.
    #[serde(default)]
    pub name: Option<String>,
    /// Wait for the sync to finish before answering.
    #[serde(default)]
    pub wait: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBatchSpec {
    /// The batch spec's YAML text, as written.
    pub spec: String,
    /// A user or org name; the caller's own namespace when absent.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub allow_ignored: bool,
    #[serde(default)]
    pub no_cache: bool,
    /// The files the steps' `mount` entries name, read next to the spec by the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_files: Vec<UploadedMountFile>,
}

/// A file a step mounts, uploaded with the spec (Sourcegraph's `batch_spec_workspace_files`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadedMountFile {
    /// Relative to the spec's folder, `/`-separated (see `Mount::normalized_path`).
    pub path: String,
    /// The content, base64 (standard alphabet, padded).
    pub content_base64: String,
    /// The file's modification time on the client, in milliseconds since the epoch (part of
    /// the step cache key, as in Sourcegraph).
    pub modified_at: i64,
}

impl UploadedMountFile {
    pub fn new(path: &str, content: &[u8], modified_at: i64) -> UploadedMountFile {
        use base64::Engine;
        UploadedMountFile { path: path.to_owned(), content_base64: base64::engine::general_purpose::STANDARD.encode(content), modified_at }
    }

    /// The decoded content.
    pub fn content(&self) -> Result<Vec<u8>, base64::DecodeError> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(&self.content_base64)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobCounts {
    pub queued: i64,
    pub processing: i64,
    pub canceling: i64,
    pub completed: i64,
    pub failed: i64,
    pub canceled: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpecStatus {
    pub id: String,
    pub name: String,
    pub namespace: String,
    /// pending (resolving), queued, processing, completed, failed, canceling, canceled.
    pub state: String,
    pub resolution_state: String,
    pub resolution_failure: Option<String>,
    pub workspaces: i64,
    pub jobs: JobCounts,
    pub changeset_specs: i64,
    /// Why the changeset specs cannot be applied as they are (e.g. two in one repository
    /// push to the same branch); empty when they can.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceInfo {
    pub id: i64,
    pub repository: String,
    pub branch: String,
    pub path: String,
    /// queued, processing, completed, failed, canceling, canceled, skipped, cached.
    pub state: String,
    pub job_id: Option<i64>,
    pub executor: Option<String>,
    pub failure_message: Option<String>,
    pub queued_at_ms: Option<i64>,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspacePage {
    pub workspaces: Vec<WorkspaceInfo>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<i64>,
}

/// One page of a batch spec's changeset specs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesetSpecPage {
    pub changeset_specs: Vec<ChangesetSpecInfo>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next: Option<i64>,
}

/// A changeset spec in the form Sourcegraph's preview shows (and `batch preview --json` prints).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesetSpecInfo {
    pub id: String,
    pub repository: String,
    pub base_ref: String,
    pub head_ref: String,
    pub title: String,
    pub body: String,
    pub commit_message: String,
    pub author_name: String,
    pub author_email: String,
    /// true, false, "draft" or null.
    pub published: serde_json::Value,
    pub diff: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogEntryInfo {
    pub index: i64,
    pub key: String,
    pub command: Vec<String>,
    pub started_at_ms: i64,
    pub exit_code: Option<i64>,
    pub duration_ms: Option<i64>,
    pub output: String,
}

/// One changeset in an apply: where it goes and what the reconciler will do.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PlannedChangeset {
    pub repository: String,
    pub head_ref: String,
    /// `create`, `continue` or `retire`.
    pub action: String,
    /// Sourcegraph's operation names: push, publish, publish-draft, update, undraft, close,
    /// reopen, archive, detach. Empty: nothing to do.
    pub operations: Vec<String>,
}

/// What an apply does (or, previewed, would do).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApplyPlan {
    pub batch_change: String,
    pub changesets: Vec<PlannedChangeset>,
}

/// A changeset as `flotilla changesets list` shows it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ChangesetInfo {
    pub id: i64,
    pub repository: String,
    pub head_ref: String,
    pub title: String,
    /// UNPUBLISHED or PUBLISHED.
    pub publication_state: String,
    /// PUSHED (a branch on a plain git host), DRAFT, OPEN, CLOSED, MERGED.
    pub external_state: Option<String>,
    /// queued, processing, completed, failed.
    pub reconciler_state: String,
    pub failure_message: Option<String>,
    pub archived: bool,
    /// The pull request's number and address on its host.
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub external_url: Option<String>,
    /// PENDING, APPROVED or CHANGESREQUESTED, from the last sync.
    #[serde(default)]
    pub review_state: Option<String>,
    /// PENDING, PASSED, FAILED or UNKNOWN, from the last sync.
    #[serde(default)]
    pub check_state: Option<String>,
    /// Attempts that failed since the last success; a `queued` changeset with failures is
    /// retrying (`failureMessage` says why).
    #[serde(default)]
    pub num_failures: i64,
    /// When a retrying changeset is tried again (Unix milliseconds).
    #[serde(default)]
    pub retry_at: Option<i64>,
}

/// A batch change's changesets counted by the state a person sees (Sourcegraph's
/// `ChangesetsStats`). Archived changesets are counted only under `archived`, not in `total`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChangesetStatistics {
    pub total: i64,
    pub unpublished: i64,
    /// Waiting in the rollout schedule.
    pub scheduled: i64,
    /// Queued for or being worked on by the reconciler.
    pub processing: i64,
    /// Failed, waiting to be retried.
    pub retrying: i64,
    pub failed: i64,
    pub draft: i64,
    pub open: i64,
    pub merged: i64,
    pub closed: i64,
    pub archived: i64,
    /// Merged and closed as a share of all, 0–100.
    pub percent_complete: f64,
    /// Every changeset is merged or closed.
    pub is_completed: bool,
}

/// The changesets' states at one moment (one point of the burndown chart).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BurndownPoint {
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// Published changesets at that moment.
    pub total: i64,
    pub open: i64,
    pub draft: i64,
    pub merged: i64,
    pub closed: i64,
    pub open_approved: i64,
    pub open_changes_requested: i64,
    pub open_pending: i64,
}

/// `GET /api/v1/batch-changes/{name}/statistics`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BatchChangeStatistics {
    pub changesets: ChangesetStatistics,
    /// Counts over time, oldest first.
    pub burndown: Vec<BurndownPoint>,
}
