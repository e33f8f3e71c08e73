//! Workspace results → changeset specs (the pull requests a batch change would open).
//!
//! [`build`] is pure, following Sourcegraph's `BuildChangesetSpecs`: no diff, no changeset;
//! otherwise the changesetTemplate is rendered with the final step context (batch change,
//! repository, cumulative changes, workspace path, outputs), the branch becomes a
//! `refs/heads/` head ref, `published` is decided per repository and branch, and
//! `transformChanges` groups split the diff into one changeset per group branch (a file goes
//! to the last group whose directory contains it; the rest stay on the template's branch).

use std::collections::BTreeMap;

use flotilla_spec::{BatchSpec, PublishedValue};
use flotilla_store::{Clock, ExecutionJob, NewChangesetSpec};
use flotilla_template::Value;
use flotilla_template::sourcegraph::{
    BatchChangeAttributes, Changes, ChangesetTemplateContext, Repository as TemplateRepository, StepsContext,
    render_changeset_template_field,
};
use flotilla_wire::{CacheEntry, Job, JobResult, StepResult};

use crate::SharedState;
use crate::error::ApiResult;
use crate::secrets_crypto::random_bytes;

/// What a workspace's changeset specs are built from.
pub struct WorkspaceFacts<'a> {
    pub repository_name: &'a str,
    pub branch: &'a str,
    pub commit: &'a str,
    pub path: &'a str,
    pub file_matches: &'a [String],
}

/// A changeset spec before it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct BuiltChangesetSpec {
    pub base_ref: String,
    pub base_rev: String,
    pub head_ref: String,
    pub title: String,
    pub body: String,
    pub commit_message: String,
    pub author_name: String,
    pub author_email: String,
    pub published: Option<PublishedValue>,
    pub fork: Option<bool>,
    pub diff: Vec<u8>,
}

/// The author used when the spec's template has none.
pub struct FallbackAuthor<'a> {
    pub name: &'a str,
    pub email: &'a str,
}

/// Builds the changeset specs of one workspace result.
pub fn build(
    spec: &BatchSpec,
    workspace: &WorkspaceFacts<'_>,
    result: &StepResult,
    fallback_author: &FallbackAuthor<'_>,
) -> Result<Vec<BuiltChangesetSpec>, String> {
    let diff = result.diff();
    if diff.is_empty() {
        return Ok(Vec::new());
    }
    let Some(template) = &spec.changeset_template else {
        return Ok(Vec::new());
    };
    let context = ChangesetTemplateContext {
        batch_change_attributes: BatchChangeAttributes { name: spec.name.clone(), description: spec.description.clone() },
        steps: StepsContext {
            changes: Changes {
                modified: result.changed_files.modified.clone(),
                added: result.changed_files.added.clone(),
                deleted: result.changed_files.deleted.clone(),
                renamed: result.changed_files.renamed.clone(),
            },
            path: workspace.path.to_owned(),
        },
        outputs: result.outputs.iter().map(|(name, value)| (name.clone(), Value::from_json(value.clone()))).collect(),
        repository: TemplateRepository {
            name: workspace.repository_name.to_owned(),
            branch: workspace.branch.to_owned(),
            file_matches: workspace.file_matches.to_vec(),
        },
    };
    let render = |field: &str, text: &str| {
        render_changeset_template_field(field, text, &context).map_err(|error| format!("rendering changesetTemplate.{field}: {error}"))
    };
    let title = render("title", &template.title)?;
    let body = render("body", &template.body)?;
    let branch = render("branch", &template.branch)?;
    let commit_message = render("commit.message", &template.commit.message)?;
    let (author_name, author_email) = match &template.commit.author {
        Some(author) => (render("commit.author.name", &author.name)?, render("commit.author.email", &author.email)?),
        None => (fallback_author.name.to_owned(), fallback_author.email.to_owned()),
    };
    if branch.is_empty() {
        return Err("changesetTemplate.branch rendered to an empty string; every changeset needs a branch".to_owned());
    }
    // Checked here, not first when publishing: a branch rendered from repository data
    // (`batch/${{ repository.name }}`) may hold anything a code host allows in a name, and a
    // workspace whose branch git would refuse (`-x`, a newline, `..`) fails now, saying so.
    // Valid names are only ever passed to git as arguments, never through a shell.
    if let Err(error) = flotilla_git::BranchName::new(branch.trim_start_matches("refs/heads/")) {
        return Err(format!("changesetTemplate.branch rendered to {branch:?}, which git cannot use as a branch name: {error}"));
    }
    // An executor is trusted with one workspace, not with the server's disk: a diff naming a
    // path outside the repository (which `git apply` would refuse anyway when publishing) is
    // refused when it arrives, saying so, instead of failing later as "does not apply".
    for file in &flotilla_git::split_diff_by_file(&diff).map_err(|error| format!("reading the workspace's diff: {error}"))? {
        for path in std::iter::once(&file.path).chain(file.old_path.as_ref()) {
            if let Some(reason) = path_outside_repository(path) {
                return Err(format!("the workspace's diff names the path {path:?}, {reason}; the result was refused (was the executor tampered with?)"));
            }
        }
    }
    let default_head_ref = head_ref(&branch);
    let base = |head_ref: String, diff: Vec<u8>| BuiltChangesetSpec {
        base_ref: head_ref_of_base(workspace.branch),
        base_rev: workspace.commit.to_owned(),
        published: template.published.value_for(workspace.repository_name, &head_ref),
        head_ref,
        title: title.clone(),
        body: body.clone(),
        commit_message: commit_message.clone(),
        author_name: author_name.clone(),
        author_email: author_email.clone(),
        fork: template.fork,
        diff,
    };
    let groups: Vec<_> = spec
        .transform_changes
        .as_ref()
        .map(|transform| {
            transform
                .group
                .iter()
                .filter(|group| group.repository.as_deref().is_none_or(|repository| repository == workspace.repository_name))
                .collect()
        })
        .unwrap_or_default();
    if groups.is_empty() {
        return Ok(vec![base(default_head_ref, diff)]);
    }
    for group in &groups {
        if let Err(error) = flotilla_git::BranchName::new(group.branch.trim_start_matches("refs/heads/")) {
            return Err(format!("transformChanges group branch {:?} cannot be used as a branch name: {error}", group.branch));
        }
        if head_ref(&group.branch) == default_head_ref {
            return Err(format!(
                "transformChanges group branch `{}` is the same as changesetTemplate.branch; groups need their own branches",
                group.branch
            ));
        }
    }
    let files = flotilla_git::split_diff_by_file(&diff).map_err(|error| format!("reading the workspace's diff: {error}"))?;
    // Branch → concatenated file diffs, in first-seen order (the default branch first).
    let mut by_branch: BTreeMap<String, (usize, Vec<u8>)> = BTreeMap::new();
    for file in files {
        let mut destination = default_head_ref.clone();
        for group in &groups {
            let directory = group.directory.trim_start_matches(['~', '.', '/']);
            if file.path.starts_with(&format!("{}/", directory.trim_end_matches('/'))) {
                destination = head_ref(&group.branch);
            }
        }
        let order = by_branch.len();
        by_branch.entry(destination).or_insert_with(|| (order, Vec::new())).1.extend_from_slice(&file.bytes);
    }
    let mut ordered: Vec<(String, (usize, Vec<u8>))> = by_branch.into_iter().collect();
    ordered.sort_by_key(|(_, (order, _))| *order);
    Ok(ordered.into_iter().map(|(head_ref, (_, diff))| base(head_ref, diff)).collect())
}

/// Why a path from a diff is not a path inside the repository, if it is not.
fn path_outside_repository(path: &str) -> Option<&'static str> {
    if path.starts_with('/') {
        return Some("which is absolute");
    }
    if path.split('/').any(|component| component == "..") {
        return Some("which climbs out with `..`");
    }
    if path.split('/').any(|component| component.eq_ignore_ascii_case(".git")) {
        return Some("which reaches into `.git`");
    }
    None
}

fn head_ref(branch: &str) -> String {
    if branch.starts_with("refs/heads/") { branch.to_owned() } else { format!("refs/heads/{branch}") }
}

fn head_ref_of_base(branch: &str) -> String {
    head_ref(branch)
}

/// A public, unguessable id for stored objects.
pub fn rand_id() -> String {
    hex::encode(random_bytes::<12>())
}

impl<'a> WorkspaceFacts<'a> {
    /// The facts of the workspace a job payload describes.
    pub fn of_job(payload: &'a Job) -> WorkspaceFacts<'a> {
        WorkspaceFacts {
            repository_name: &payload.repository_name,
            branch: &payload.branch,
            commit: &payload.commit,
            path: &payload.workspace_path,
            file_matches: &payload.search_result_paths,
        }
    }
}

/// Where a built changeset spec is stored.
pub struct Destination {
    pub batch_spec_id: flotilla_store::BatchSpecId,
    pub workspace_id: flotilla_store::WorkspaceId,
    pub repository_id: flotilla_store::RepositoryId,
    /// The commit author when the template names none.
    pub author: flotilla_store::UserId,
}

/// Builds the changeset specs of a workspace's result, ready to store.
pub async fn build_for_workspace(
    state: &SharedState,
    spec: &BatchSpec,
    payload: &Job,
    result: &StepResult,
    destination: &Destination,
) -> Result<Vec<NewChangesetSpec>, String> {
    let author = state.store.get_user(destination.author).await.map_err(|error| error.to_string())?;
    let fallback = FallbackAuthor { name: &author.display_name, email: &author.email };
    let built = build(spec, &WorkspaceFacts::of_job(payload), result, &fallback)?;
    Ok(built
        .into_iter()
        .map(|built| to_new_changeset_spec(destination.batch_spec_id, Some(destination.workspace_id), destination.repository_id, built))
        .collect())
}

/// Builds the changeset specs for a finished job (before it is marked complete).
pub async fn build_for_job(state: &SharedState, job: &ExecutionJob, result: &JobResult) -> Result<Vec<NewChangesetSpec>, String> {
    // No changes, no changesets: skip loading the spec and the workspace.
    if result.final_result.diff_base64.is_empty() {
        return Ok(Vec::new());
    }
    let payload: Job = serde_json::from_value(job.payload.clone()).map_err(|error| format!("the job's payload is unreadable: {error}"))?;
    let spec_row = state.store.get_batch_spec(job.batch_spec_id).await.map_err(|error| error.to_string())?;
    let spec: BatchSpec = serde_json::from_value(spec_row.parsed_spec).map_err(|error| format!("the stored spec is unreadable: {error}"))?;
    let workspace = state.store.get_workspace(job.workspace_id).await.map_err(|error| error.to_string())?;
    let destination = Destination {
        batch_spec_id: job.batch_spec_id,
        workspace_id: job.workspace_id,
        repository_id: workspace.repository_id,
        author: job.user_id,
    };
    build_for_workspace(state, &spec, &payload, &result.final_result, &destination).await
}

/// Stores a workspace's changeset specs and links them to it.
pub async fn insert_for_workspace(
    state: &SharedState,
    workspace_id: flotilla_store::WorkspaceId,
    specs: &[NewChangesetSpec],
) -> Result<(), flotilla_store::StoreError> {
    if specs.is_empty() {
        return Ok(());
    }
    let ids = state.store.insert_changeset_specs(specs, Clock::now_ms()).await?;
    state.store.set_workspace_changeset_specs(workspace_id, &ids).await
}

pub fn to_new_changeset_spec(
    batch_spec_id: flotilla_store::BatchSpecId,
    workspace_id: Option<flotilla_store::WorkspaceId>,
    repository_id: flotilla_store::RepositoryId,
    built: BuiltChangesetSpec,
) -> NewChangesetSpec {
    let stat = flotilla_git::diff_stat(&built.diff).unwrap_or_default();
    NewChangesetSpec {
        rand_id: rand_id(),
        batch_spec_id,
        workspace_id,
        repository_id,
        kind: flotilla_store::ChangesetSpecKind::Branch,
        external_id: None,
        base_ref: Some(built.base_ref),
        base_rev: Some(built.base_rev),
        head_ref: Some(built.head_ref),
        title: Some(built.title),
        body: Some(built.body),
        published: built.published.map(published_json),
        diff: Some(built.diff),
        commit_message: Some(built.commit_message),
        author_name: Some(built.author_name),
        author_email: Some(built.author_email),
        fork: built.fork.map(|fork| fork.to_string()),
        diff_stat_added: stat.added as i64,
        diff_stat_deleted: stat.deleted as i64,
    }
}

/// `published` as Sourcegraph writes it in a changeset spec: true, false or "draft".
pub fn published_json(value: PublishedValue) -> serde_json::Value {
    match value {
        PublishedValue::Published => serde_json::Value::Bool(true),
        PublishedValue::Unpublished => serde_json::Value::Bool(false),
        PublishedValue::Draft => serde_json::Value::String("draft".to_owned()),
    }
}

/// Stores a job's changeset specs (replacing those of an earlier report of its workspace)
/// and cache entries; false when `executor` no longer owns the running job.
pub async fn store_for_job(state: &SharedState, job: &ExecutionJob, executor: &str, result: &JobResult, specs: &[NewChangesetSpec]) -> ApiResult<bool> {
    store_cache_entries(state, job, &result.cache_entries).await?;
    Ok(state.store.replace_workspace_changeset_specs(job.id, executor, job.workspace_id, specs, Clock::now_ms()).await?)
}

/// Saves step results in the job owner's step cache.
pub async fn store_cache_entries(state: &SharedState, job: &ExecutionJob, entries: &[CacheEntry]) -> ApiResult<()> {
    let now = Clock::now_ms();
    for entry in entries {
        let value = serde_json::to_value(&entry.value).unwrap_or_default();
        state.store.upsert_step_cache_entry(job.user_id, &entry.key, &value, now).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> BatchSpec {
        let text = format!(
            "name: demo\ndescription: the description\nsteps:\n  - run: echo\n    container: alpine:3\n    outputs:\n      greeting:\n        value: hi\nchangesetTemplate:\n  title: Update ${{{{ repository.name }}}} (${{{{ outputs.greeting }}}})\n  body: Made by ${{{{ batch_change.name }}}} in `${{{{ steps.path }}}}`\n  branch: batch/${{{{ batch_change.name }}}}\n  commit:\n    message: Update files\n  published:\n    - \"*\": false\n    - github.com/a/*: draft\n{extra}"
        );
        flotilla_spec::parse_batch_spec(&text).expect("test spec is valid").spec
    }

    fn result_with(diff: &str) -> StepResult {
        let mut result = StepResult::default();
        result.set_diff(diff.as_bytes());
        result.outputs.insert("greeting".to_owned(), serde_json::json!("hello"));
        result
    }

    const TWO_FILE_DIFF: &str = "diff --git web/a.txt web/a.txt\nindex 1..2 100644\n--- web/a.txt\n+++ web/a.txt\n@@ -1 +1 @@\n-a\n+b\ndiff --git README.md README.md\nindex 1..2 100644\n--- README.md\n+++ README.md\n@@ -1 +1 @@\n-x\n+y\n";

    fn facts() -> WorkspaceFacts<'static> {
        WorkspaceFacts { repository_name: "github.com/a/b", branch: "main", commit: "c0ffee", path: "", file_matches: &[] }
    }

    #[test]
    fn branches_git_would_refuse_fail_the_workspace_at_once_and_shell_characters_stay_literal() {
        let author = FallbackAuthor { name: "Ann", email: "ann@example.com" };
        let with_branch = |branch: &str| {
            let text = format!("name: demo\nsteps:\n  - run: echo\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: {branch}\n  commit:\n    message: m\n");
            flotilla_spec::parse_batch_spec(&text).expect("test spec is valid").spec
        };
        for (branch, reason) in [("\"-upload-pack=touch x\"", "must not start with `-`"), ("\"a\\nb\"", "control characters"), ("a..b", "`..`")] {
            let error = build(&with_branch(branch), &facts(), &result_with(TWO_FILE_DIFF), &author).expect_err(branch);
            assert!(error.contains("git cannot use as a branch name") && error.contains(reason), "{branch}: {error}");
        }
        // Shell metacharacters are legal in git refs; they stay literal text (nothing is ever
        // passed through a shell, see `e2e_hostile_input.rs`).
        let built = build(&with_branch("\"batch/$(touch${IFS}x);`id`\""), &facts(), &result_with(TWO_FILE_DIFF), &author).expect("builds");
        assert_eq!(built[0].head_ref, "refs/heads/batch/$(touch${IFS}x);`id`");
    }

    #[test]
    fn diffs_naming_paths_outside_the_repository_are_refused() {
        let author = FallbackAuthor { name: "Ann", email: "ann@example.com" };
        for (path, reason) in [("../../x", "`..`"), ("/etc/passwd", "absolute"), ("a/.git/config", "`.git`")] {
            let diff = format!("diff --git {path} {path}\nnew file mode 100644\n--- /dev/null\n+++ {path}\n@@ -0,0 +1 @@\n+x\n");
            let error = build(&spec(""), &facts(), &result_with(&diff), &author).expect_err(path);
            assert!(error.contains(reason) && error.contains("the result was refused"), "{path}: {error}");
        }
    }

    #[test]
    fn renders_the_template_and_publication() {
        let built = build(&spec(""), &facts(), &result_with(TWO_FILE_DIFF), &FallbackAuthor { name: "Ann", email: "ann@example.com" })
            .expect("builds");
        assert_eq!(built.len(), 1);
        let changeset = &built[0];
        assert_eq!(changeset.title, "Update github.com/a/b (hello)");
        assert_eq!(changeset.body, "Made by demo in ``");
        assert_eq!(changeset.head_ref, "refs/heads/batch/demo");
        assert_eq!(changeset.base_ref, "refs/heads/main");
        assert_eq!(changeset.base_rev, "c0ffee");
        assert_eq!(changeset.author_name, "Ann");
        assert_eq!(changeset.published, Some(PublishedValue::Draft));
        assert_eq!(changeset.diff, TWO_FILE_DIFF.as_bytes());
    }

    #[test]
    fn empty_diff_builds_nothing() {
        let built = build(&spec(""), &facts(), &result_with(""), &FallbackAuthor { name: "a", email: "b" }).expect("builds");
        assert!(built.is_empty());
    }

    #[test]
    fn transform_changes_split_by_directory() {
        let spec = spec("transformChanges:\n  group:\n    - directory: web\n      branch: batch/web\n");
        let built = build(&spec, &facts(), &result_with(TWO_FILE_DIFF), &FallbackAuthor { name: "a", email: "b" }).expect("builds");
        let branches: Vec<&str> = built.iter().map(|changeset| changeset.head_ref.as_str()).collect();
        assert_eq!(branches, vec!["refs/heads/batch/web", "refs/heads/batch/demo"]);
        assert!(String::from_utf8_lossy(&built[0].diff).contains("web/a.txt"));
        assert!(!String::from_utf8_lossy(&built[0].diff).contains("README.md"));
        assert!(String::from_utf8_lossy(&built[1].diff).contains("README.md"));
    }

    #[test]
    fn a_group_on_the_default_branch_is_an_error() {
        let spec = spec("transformChanges:\n  group:\n    - directory: web\n      branch: batch/demo\n");
        let error = build(&spec, &facts(), &result_with(TWO_FILE_DIFF), &FallbackAuthor { name: "a", email: "b" }).expect_err("conflict");
        assert!(error.contains("same as changesetTemplate.branch"), "{error}");
    }
}
