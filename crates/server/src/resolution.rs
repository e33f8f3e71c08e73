//! Workspace resolution: a batch spec → workspaces → queued jobs.
//!
//! Runs as a background worker over the store's resolution jobs (one per created batch
//! spec), with Sourcegraph's semantics: `on` entries are merged per repository (an explicit
//! `repository` entry overrides what queries found for it); `repositoriesMatchingQuery` is
//! answered from the mirrors' default branches; `workspaces` rules split repositories into
//! project folders; a root `.batchignore` file excludes a repository; steps whose `if:` is
//! statically false for a repository are skipped, and a workspace with nothing left to run
//! is dropped. Workspaces are written and their jobs queued in chunks as they are found, so
//! executors start on the first ones before the last are resolved. Step results already in
//! the user's cache are reused: a fully cached workspace gets its changeset specs at once.
//! The worker heartbeats while it resolves; a resolution whose server process died is queued
//! again by the janitor and starts over from nothing, so each workspace is written once.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_git::CommitId;
use flotilla_search::{FileEntry, FileSource, Query, RepositoryFacts, match_repository};
use flotilla_spec::{BatchSpec, OnEntry};
use flotilla_store::{
    BatchSpec as BatchSpecRow, Clock, MirrorState, NewExecutionJob, NewWorkspace, Repository, ResolutionJob, UserId,
};
use flotilla_template::sourcegraph::{BatchChangeAttributes, Repository as TemplateRepository, StaticBool, StepContext, is_static_bool};
use flotilla_wire::{Job, StepResult};
use flotilla_wire::cache::{CacheKeyInputs, resolve_environments, step_cache_key};
use tokio_util::sync::CancellationToken;

use crate::SharedState;
use crate::access::RepositoryVisibility;
use crate::changeset_specs::{Destination, build_for_workspace, insert_for_workspace};
use crate::mirrors::mirror_path;

/// Workspaces are written and queued in chunks of this size.
const CHUNK: usize = 500;

/// Runs until shutdown, resolving queued batch specs one at a time per worker.
pub async fn run_worker(state: SharedState, shutdown: CancellationToken) {
    // Unique across every server process of the database: ownership checks compare it, and
    // two servers in containers often share a process id (1).
    let worker = format!("resolver-{}-{}", std::process::id(), hex::encode(crate::secrets_crypto::random_bytes::<6>()));
    loop {
        match state.store.dequeue_resolution_job(&worker, Clock::now_ms()).await {
            Ok(Some(job)) => {
                let outcome = resolve_with_heartbeats(&state, &job, &worker).await;
                let failure = outcome.as_ref().err().map(String::as_str);
                if let Some(message) = failure {
                    tracing::warn!(batch_spec.id = job.batch_spec_id.0, error = %message, "workspace resolution failed");
                }
                if let Err(error) = state.store.finish_resolution_job(job.id, &worker, failure, Clock::now_ms()).await {
                    tracing::error!(error = %error, "recording the end of a resolution failed");
                }
                continue;
            }
            Ok(None) => {}
            Err(error) => tracing::error!(error = %error, "dequeuing a resolution job failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = state.resolution_requested.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// Resolves `job` while recording every third of the stall timeout that this worker is still
/// at it: without heartbeats the janitor would take a resolution longer than the timeout for
/// one of a dead server and start it a second time.
async fn resolve_with_heartbeats(state: &SharedState, job: &ResolutionJob, worker: &str) -> Result<usize, String> {
    let resolving = resolve_job(state, job);
    tokio::pin!(resolving);
    let period = (state.config.stalled_after / 3).max(std::time::Duration::from_millis(500));
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    loop {
        tokio::select! {
            outcome = &mut resolving => return outcome,
            _ = ticker.tick() => {
                match state.store.heartbeat_resolution_job(job.id, worker, Clock::now_ms()).await {
                    Ok(true) => {}
                    Ok(false) => tracing::warn!(batch_spec.id = job.batch_spec_id.0, "this worker no longer owns the resolution it is running"),
                    Err(error) => tracing::warn!(batch_spec.id = job.batch_spec_id.0, %error, "recording a resolution heartbeat failed"),
                }
            }
        }
    }
}

/// One repository revision to run on.
#[derive(Clone, Debug)]
struct RepositoryRevision {
    repository: Repository,
    branch: String,
    commit: String,
    file_matches: BTreeSet<String>,
}

async fn resolve_job(state: &SharedState, job: &ResolutionJob) -> Result<usize, String> {
    let row = state.store.get_batch_spec(job.batch_spec_id).await.map_err(|error| error.to_string())?;
    let spec: BatchSpec = serde_json::from_value(row.parsed_spec.clone()).map_err(|error| format!("the stored spec is unreadable: {error}"))?;
    // The creator's repository permissions decide what the spec may touch: a repository they
    // cannot read is "not found", exactly as if it did not exist.
    let creator = state.store.get_user(row.creator_user_id).await.map_err(|error| error.to_string())?;
    let visibility = RepositoryVisibility::for_user(state, &creator, creator.site_admin).await.map_err(|error| error.to_string())?;
    // Secret values are part of the step cache keys (changing a secret re-runs the steps that
    // use it); they are read once here and never stored in the job payloads.
    let names = crate::executor_api::outer_variable_names(&spec.steps);
    let namespace = row.namespace().map_err(|error| error.to_string())?;
    let accessor = flotilla_store::SecretAccessor { user_id: Some(row.creator_user_id), job_id: None };
    let secrets = crate::secrets::resolve(state, namespace, &names, accessor).await?;
    // A resolution interrupted by a server crash left part of its workspaces (and maybe jobs
    // without them); starting over from nothing is what makes each workspace appear once.
    let discarded = state.store.discard_resolution_output(row.id).await.map_err(|error| error.to_string())?;
    if discarded > 0 {
        tracing::warn!(batch_spec.id = row.id.0, workspaces = discarded, "resolving again after an interrupted resolution; its partial output was removed");
    }
    import_changesets(state, &spec, &row, &visibility).await?;
    let mut writer = ChunkWriter { state, spec: &spec, row: &row, secrets: &secrets, pending: Vec::new(), total: 0 };
    resolve_revisions(state, &spec, &visibility, &mut writer).await?;
    let pending = std::mem::take(&mut writer.pending);
    writer.total += write_chunk(state, &spec, &row, &secrets, pending).await?;
    Ok(writer.total)
}

/// `importChangesets`: one changeset spec of kind `existing` per pull request to track, so an
/// apply adds them to the batch change without pushing anything.
async fn import_changesets(state: &SharedState, spec: &BatchSpec, row: &BatchSpecRow, visibility: &RepositoryVisibility) -> Result<(), String> {
    let mut specs = Vec::new();
    for import in &spec.import_changesets {
        let repository = state
            .store
            .get_repository_by_name(&import.repository)
            .await
            .map_err(|error| error.to_string())?
            .filter(|found| visibility.can_read(found))
            .ok_or_else(|| format!("importChangesets: repository {} not found: check the name with `flotilla repos list`", import.repository))?;
        for external_id in &import.external_ids {
            specs.push(flotilla_store::NewChangesetSpec {
                rand_id: crate::changeset_specs::rand_id(),
                batch_spec_id: row.id,
                workspace_id: None,
                repository_id: repository.id,
                kind: flotilla_store::ChangesetSpecKind::Existing,
                external_id: Some(external_id.clone()),
                base_ref: None,
                base_rev: None,
                head_ref: None,
                title: None,
                body: None,
                published: None,
                diff: None,
                commit_message: None,
                author_name: None,
                author_email: None,
                fork: None,
                diff_stat_added: 0,
                diff_stat_deleted: 0,
            });
        }
    }
    if !specs.is_empty() {
        state.store.insert_changeset_specs(&specs, Clock::now_ms()).await.map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// Receives repository revisions in repository-name order as resolution finds them.
trait RevisionSink {
    async fn accept(&mut self, revision: RepositoryRevision) -> Result<(), String>;

    /// A page of repositories was searched: a chance to hand on what is pending.
    async fn page_done(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Plans each revision's workspaces and writes (and queues) them a chunk at a time.
struct ChunkWriter<'a> {
    state: &'a SharedState,
    spec: &'a BatchSpec,
    row: &'a BatchSpecRow,
    secrets: &'a BTreeMap<String, String>,
    pending: Vec<PlannedWorkspace>,
    total: usize,
}

impl RevisionSink for ChunkWriter<'_> {
    async fn accept(&mut self, revision: RepositoryRevision) -> Result<(), String> {
        for planned in plan_workspaces(self.state, self.spec, self.row, &revision).await? {
            self.pending.push(planned);
            if self.pending.len() >= CHUNK {
                let chunk = std::mem::take(&mut self.pending);
                self.total += write_chunk(self.state, self.spec, self.row, self.secrets, chunk).await?;
            }
        }
        Ok(())
    }

    /// Queues what was found so far, so executors start while later pages are searched.
    async fn page_done(&mut self) -> Result<(), String> {
        if !self.pending.is_empty() {
            let chunk = std::mem::take(&mut self.pending);
            self.total += write_chunk(self.state, self.spec, self.row, self.secrets, chunk).await?;
        }
        Ok(())
    }
}

/// Repositories are read from the store a page at a time; each page is searched (several
/// repositories at once) and its revisions handed on before the next page is read, so
/// workspaces are queued while later pages are still being searched.
const SEARCH_PAGE: i64 = 1000;
/// Repositories searched at once: git work is part IO, part CPU.
const SEARCH_CONCURRENCY: usize = 8;

/// Merges the `on` entries into repository revisions and hands them to `sink` sorted by
/// repository name, page by page. An explicit `repository` entry overrides what queries found
/// for it (later explicit entries override earlier ones); among queries, the last one that
/// matches a repository gives its search result paths; `count:` limits each query.
/// Only repositories `visibility` allows are considered.
async fn resolve_revisions(state: &SharedState, spec: &BatchSpec, visibility: &RepositoryVisibility, sink: &mut impl RevisionSink) -> Result<(), String> {
    let mut explicit: BTreeMap<String, Vec<RepositoryRevision>> = BTreeMap::new();
    let mut queries: Vec<QueryProgress> = Vec::new();
    for entry in &spec.on {
        match entry {
            OnEntry::Query { repositories_matching_query } => {
                let query = Query::parse(repositories_matching_query, spec.version)
                    .map_err(|error| format!("repositoriesMatchingQuery {repositories_matching_query:?}: {error}"))?;
                queries.push(QueryProgress { remaining: query.count, query });
            }
            OnEntry::Repository { repository, branches } => {
                let found = state
                    .store
                    .get_repository_by_name(repository)
                    .await
                    .map_err(|error| error.to_string())?
                    .filter(|found| visibility.can_read(found))
                    .ok_or_else(|| format!("repository {repository} not found: check the name with `flotilla repos list`, or add its code host"))?;
                let revisions = explicit_revisions(state, &found, branches).await?;
                explicit.insert(repository.clone(), revisions);
            }
        }
    }
    let explicit_names: BTreeSet<String> = explicit.keys().cloned().collect();
    let mut explicit = explicit.into_iter().peekable();
    let mut after: Option<String> = None;
    while !queries.is_empty() && queries.iter().any(|query| query.remaining != Some(0)) {
        let page = state.store.list_repositories(after.as_deref(), SEARCH_PAGE).await.map_err(|error| error.to_string())?;
        let Some(last) = page.last() else { break };
        after = Some(last.name.clone());
        for revision in search_page(state, &mut queries, page, visibility, &explicit_names).await? {
            while let Some((_, revisions)) = explicit.next_if(|(name, _)| *name < revision.repository.name) {
                for explicit_revision in revisions {
                    sink.accept(explicit_revision).await?;
                }
            }
            sink.accept(revision).await?;
        }
        sink.page_done().await?;
    }
    for (_, revisions) in explicit {
        for revision in revisions {
            sink.accept(revision).await?;
        }
    }
    Ok(())
}

/// A `repositoriesMatchingQuery` and how many more repositories its `count:` allows.
struct QueryProgress {
    query: Query,
    remaining: Option<usize>,
}

/// Searches one page of repositories (sorted by name) with every query that still may match,
/// several repositories at once; returns the matches in name order.
async fn search_page(
    state: &SharedState,
    queries: &mut [QueryProgress],
    page: Vec<Repository>,
    visibility: &RepositoryVisibility,
    explicit: &BTreeSet<String>,
) -> Result<Vec<RepositoryRevision>, String> {
    use futures_util::StreamExt;
    let mut candidates = Vec::new();
    for repository in page {
        if repository.mirror_state != MirrorState::Ready || !visibility.can_read(&repository) || explicit.contains(&repository.name) {
            continue;
        }
        let Some(revision) = default_revision(&repository) else { continue };
        let facts = RepositoryFacts { name: &repository.name, fork: repository.fork, archived: repository.archived };
        let relevant: Vec<(usize, Query)> = queries
            .iter()
            .enumerate()
            .filter(|(_, progress)| progress.remaining != Some(0) && progress.query.repository_passes(facts))
            .map(|(index, progress)| (index, progress.query.clone()))
            .collect();
        if !relevant.is_empty() {
            candidates.push((revision, relevant));
        }
    }
    let searches = candidates.into_iter().map(|(revision, relevant)| {
        let state = state.clone();
        async move {
            let outcomes = match_candidate(&state, &revision, relevant).await?;
            Ok::<_, String>((revision, outcomes))
        }
    });
    let results: Vec<Result<_, String>> = futures_util::stream::iter(searches).buffered(SEARCH_CONCURRENCY).collect().await;
    let mut found = Vec::new();
    for result in results {
        let (mut revision, outcomes) = result?;
        let mut matched: Option<Vec<String>> = None;
        for (index, outcome) in outcomes {
            let progress = &mut queries[index];
            if progress.remaining == Some(0) {
                continue;
            }
            if let Some(outcome) = outcome {
                matched = Some(outcome.file_paths);
                if let Some(remaining) = progress.remaining.as_mut() {
                    *remaining -= 1;
                }
            }
        }
        if let Some(file_paths) = matched {
            revision.file_matches = file_paths.into_iter().collect();
            found.push(revision);
        }
    }
    Ok(found)
}

/// Matches one repository against the queries that may match it, listing its files once.
async fn match_candidate(
    state: &SharedState,
    revision: &RepositoryRevision,
    queries: Vec<(usize, Query)>,
) -> Result<Vec<(usize, Option<flotilla_search::RepositoryMatch>)>, String> {
    let repository = &revision.repository;
    if queries.iter().all(|(_, query)| query.repository_only) {
        return Ok(queries.into_iter().map(|(index, _)| (index, Some(Default::default()))).collect());
    }
    let state = state.clone();
    let (id, name, commit) = (repository.id, repository.name.clone(), revision.commit.clone());
    let (fork, archived) = (repository.fork, repository.archived);
    let searched = name.clone();
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Handle::current();
        let mirror = mirror_path(&state.config, id);
        let mut source = MirrorFiles { runtime, state: state.clone(), repository: id, mirror, commit, reader: None, files: None };
        let facts = RepositoryFacts { name: &name, fork, archived };
        queries
            .into_iter()
            .map(|(index, query)| match_repository(&query, facts, &mut source).map(|outcome| (index, outcome)))
            .collect::<Result<Vec<_>, String>>()
    })
    .await
    .map_err(|error| format!("searching {searched}: {error}"))?
    .map_err(|error| format!("searching {searched}: {error}"))
}

async fn explicit_revisions(state: &SharedState, repository: &Repository, branches: &[String]) -> Result<Vec<RepositoryRevision>, String> {
    if repository.mirror_state != MirrorState::Ready {
        return Err(format!(
            "repository {} is not mirrored yet ({}); wait for the sync or run `flotilla repos sync {}`",
            repository.name,
            repository.last_error.as_deref().unwrap_or("sync pending"),
            repository.name
        ));
    }
    if branches.is_empty() {
        return default_revision(repository).map(|revision| vec![revision]).ok_or_else(|| format!("repository {} has no default branch", repository.name));
    }
    let mirror = mirror_path(&state.config, repository.id);
    let mut revisions = Vec::new();
    for branch in branches {
        let name = flotilla_git::BranchName::new(branch).map_err(|error| format!("branch {branch:?}: {error}"))?;
        let commit = flotilla_git::resolve_branch(&mirror, &name)
            .await
            .map_err(|error| error.to_string())?
            .ok_or_else(|| format!("no branch matching {branch:?} found for repository {}", repository.name))?;
        revisions.push(RepositoryRevision {
            repository: repository.clone(),
            branch: branch.clone(),
            commit: commit.as_str().to_owned(),
            file_matches: BTreeSet::new(),
        });
    }
    Ok(revisions)
}

fn default_revision(repository: &Repository) -> Option<RepositoryRevision> {
    Some(RepositoryRevision {
        repository: repository.clone(),
        branch: repository.default_branch.clone()?,
        commit: repository.head_commit.clone()?,
        file_matches: BTreeSet::new(),
    })
}

/// File listings of mirrored commits, shared by search and workspace planning: one
/// `git ls-tree` per repository and commit instead of one for the search, one for
/// `.batchignore` and one for `workspaces`, and none when a spec is resolved again. Commits
/// never change, so entries never go stale; the cache is emptied when it grows too large.
#[derive(Default)]
pub struct TreeCache {
    inner: std::sync::Mutex<TreeCacheInner>,
}

#[derive(Default)]
struct TreeCacheInner {
    trees: std::collections::HashMap<(flotilla_store::RepositoryId, String), std::sync::Arc<Vec<flotilla_git::TreeEntry>>>,
    entries: usize,
}

/// File entries kept at most (about 100 bytes each).
const TREE_CACHE_ENTRIES: usize = 2_000_000;

impl TreeCache {
    /// The files of `commit` in a repository's mirror.
    pub async fn files(
        &self,
        mirror: &std::path::Path,
        repository: flotilla_store::RepositoryId,
        commit: &str,
    ) -> Result<std::sync::Arc<Vec<flotilla_git::TreeEntry>>, String> {
        let key = (repository, commit.to_owned());
        if let Some(found) = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).trees.get(&key) {
            return Ok(found.clone());
        }
        // The listing the syncer wrote next to the mirror, else `git ls-tree` (written back for
        // the next resolution): see `search_index`.
        let files = match crate::search_index::read_listing(mirror, commit).await {
            Some(files) => std::sync::Arc::new(files),
            None => {
                let commit_id = CommitId::new(commit).map_err(|error| error.to_string())?;
                let files = flotilla_git::list_files(mirror, &commit_id).await.map_err(|error| error.to_string())?;
                crate::search_index::write_listing(mirror, commit, &files).await;
                std::sync::Arc::new(files)
            }
        };
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if inner.entries + files.len() > TREE_CACHE_ENTRIES {
            inner.trees.clear();
            inner.entries = 0;
        }
        inner.entries += files.len();
        inner.trees.insert(key, files.clone());
        Ok(files)
    }
}

/// Reads a mirror's files for the search matcher, from a blocking thread.
struct MirrorFiles {
    runtime: tokio::runtime::Handle,
    state: SharedState,
    repository: flotilla_store::RepositoryId,
    mirror: std::path::PathBuf,
    commit: String,
    reader: Option<flotilla_git::BlobReader>,
    files: Option<std::sync::Arc<Vec<flotilla_git::TreeEntry>>>,
}

impl MirrorFiles {
    fn listing(&mut self) -> Result<std::sync::Arc<Vec<flotilla_git::TreeEntry>>, String> {
        if let Some(files) = &self.files {
            return Ok(files.clone());
        }
        let files = self.runtime.block_on(self.state.trees.files(&self.mirror, self.repository, &self.commit))?;
        self.files = Some(files.clone());
        Ok(files)
    }
}

impl FileSource for MirrorFiles {
    type Error = String;

    fn files(&mut self) -> Result<Vec<FileEntry>, String> {
        Ok(self.listing()?.iter().map(|entry| FileEntry { path: entry.path.clone(), size: entry.size.unwrap_or(0) }).collect())
    }

    fn content(&mut self, path: &str) -> Result<Vec<u8>, String> {
        let files = self.listing()?;
        let Some(entry) = files.iter().find(|entry| entry.path == path) else {
            return Ok(Vec::new());
        };
        let blob_id = entry.blob_id.clone();
        if let Some(cached) = self.state.blobs.get(&blob_id) {
            return Ok(cached.as_ref().clone());
        }
        let reader = self.reader.get_or_insert_with(|| flotilla_git::BlobReader::new(&self.mirror));
        let content = self.runtime.block_on(reader.read_blob(&blob_id)).map_err(|error| error.to_string())?.unwrap_or_default();
        Ok(self.state.blobs.insert(blob_id, content).as_ref().clone())
    }
}

/// A workspace about to be written.
struct PlannedWorkspace {
    workspace: NewWorkspace,
    repository: Repository,
    skipped_steps: Vec<usize>,
}

/// Splits a repository revision into workspaces according to the spec's `workspaces` rules.
async fn plan_workspaces(state: &SharedState, spec: &BatchSpec, row: &BatchSpecRow, revision: &RepositoryRevision) -> Result<Vec<PlannedWorkspace>, String> {
    plan_workspaces_for(state, spec, row.id, row.allow_ignored, revision).await
}

/// What `flotilla batch repositories` shows: the workspaces a spec resolves to, without
/// storing or running anything.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspacePreview {
    pub repository: String,
    pub branch: String,
    pub commit: String,
    pub path: String,
    pub search_result_paths: Vec<String>,
    pub ignored: bool,
    pub skipped_steps: Vec<usize>,
}

/// Resolves a spec's workspaces without storing them (the same rules as a real resolution).
/// Ignored workspaces (`.batchignore`) are listed with `ignored: true` so users see why a
/// repository will be left out.
pub async fn preview_workspaces(state: &SharedState, spec: &BatchSpec, visibility: &RepositoryVisibility) -> Result<Vec<WorkspacePreview>, String> {
    struct Previews<'a> {
        state: &'a SharedState,
        spec: &'a BatchSpec,
        previews: Vec<WorkspacePreview>,
    }
    impl RevisionSink for Previews<'_> {
        async fn accept(&mut self, revision: RepositoryRevision) -> Result<(), String> {
            for planned in plan_workspaces_for(self.state, self.spec, flotilla_store::BatchSpecId(0), true, &revision).await? {
                self.previews.push(WorkspacePreview {
                    repository: planned.repository.name.clone(),
                    branch: planned.workspace.branch,
                    commit: planned.workspace.commit,
                    path: planned.workspace.path,
                    search_result_paths: planned.workspace.file_matches,
                    ignored: planned.workspace.ignored,
                    skipped_steps: planned.skipped_steps,
                });
            }
            Ok(())
        }
    }
    let mut sink = Previews { state, spec, previews: Vec::new() };
    resolve_revisions(state, spec, visibility, &mut sink).await?;
    Ok(sink.previews)
}

async fn plan_workspaces_for(
    state: &SharedState,
    spec: &BatchSpec,
    batch_spec_id: flotilla_store::BatchSpecId,
    allow_ignored: bool,
    revision: &RepositoryRevision,
) -> Result<Vec<PlannedWorkspace>, String> {
    if spec.steps.is_empty() {
        return Ok(Vec::new());
    }
    let mirror = mirror_path(&state.config, revision.repository.id);
    let files = state.trees.files(&mirror, revision.repository.id, &revision.commit).await?;
    let ignored = files.iter().any(|file| file.path == ".batchignore");
    if ignored && !allow_ignored {
        return Ok(Vec::new());
    }
    let matching: Vec<_> = spec
        .workspaces
        .iter()
        .filter(|rule| {
            let glob = if rule.in_repositories.is_empty() { "*" } else { rule.in_repositories.as_str() };
            flotilla_spec::glob::matches(glob, &revision.repository.name).unwrap_or(false)
        })
        .collect();
    if matching.len() > 1 {
        return Err(format!("repository {} matches more than one `workspaces` rule; each repository may match at most one", revision.repository.name));
    }
    let mut paths: Vec<(String, bool)> = Vec::new();
    match matching.first() {
        None => paths.push((String::new(), false)),
        Some(rule) => {
            let mut directories = BTreeSet::new();
            for file in files.iter() {
                let (directory, name) = file.path.rsplit_once('/').unwrap_or(("", file.path.as_str()));
                if name == rule.root_at_location_of {
                    directories.insert(directory.to_owned());
                }
            }
            for directory in directories {
                let only_fetch = rule.only_fetch_workspace && !directory.is_empty();
                paths.push((directory, only_fetch));
            }
        }
    }
    let skipped_steps = statically_skipped_steps(spec, revision)?;
    if skipped_steps.len() == spec.steps.len() {
        return Ok(Vec::new());
    }
    Ok(paths
        .into_iter()
        .map(|(path, only_fetch_workspace)| {
            let file_matches: Vec<String> = revision
                .file_matches
                .iter()
                .filter(|file| path.is_empty() || file.starts_with(&format!("{path}/")))
                .cloned()
                .collect();
            PlannedWorkspace {
                workspace: NewWorkspace {
                    batch_spec_id,
                    repository_id: revision.repository.id,
                    branch: revision.branch.clone(),
                    commit: revision.commit.clone(),
                    path,
                    file_matches,
                    only_fetch_workspace,
                    ignored,
                    unsupported: false,
                    skipped: false,
                    cached_result_found: false,
                    step_cache_results: serde_json::json!({}),
                },
                repository: revision.repository.clone(),
                skipped_steps: skipped_steps.clone(),
            }
        })
        .collect())
}

/// Steps whose `if:` is false knowing only the repository and the batch change.
fn statically_skipped_steps(spec: &BatchSpec, revision: &RepositoryRevision) -> Result<Vec<usize>, String> {
    let context = StepContext {
        batch_change: BatchChangeAttributes { name: spec.name.clone(), description: spec.description.clone() },
        repository: TemplateRepository {
            name: revision.repository.name.clone(),
            branch: revision.branch.clone(),
            file_matches: revision.file_matches.iter().cloned().collect(),
        },
        ..StepContext::default()
    };
    let mut skipped = Vec::new();
    for (index, step) in spec.steps.iter().enumerate() {
        if step.if_condition.is_empty() {
            continue;
        }
        match is_static_bool(&step.if_condition, &context) {
            Ok(StaticBool::Static(false)) => skipped.push(index),
            Ok(_) => {}
            Err(error) => return Err(format!("evaluating steps[{index}].if for {}: {error}", revision.repository.name)),
        }
    }
    Ok(skipped)
}

/// Writes a chunk of workspaces, reuses cached step results, and queues the rest.
async fn write_chunk(
    state: &SharedState,
    spec: &BatchSpec,
    row: &BatchSpecRow,
    secrets: &BTreeMap<String, String>,
    planned: Vec<PlannedWorkspace>,
) -> Result<usize, String> {
    if planned.is_empty() {
        return Ok(0);
    }
    let now = Clock::now_ms();
    let user = row.creator_user_id;
    let mut jobs_payloads = Vec::with_capacity(planned.len());
    let mut rows = Vec::with_capacity(planned.len());
    for item in &planned {
        let payload = job_payload(spec, item);
        let cached = if row.no_cache { None } else { cached_result(state, user, spec, &payload, secrets, &item.skipped_steps).await? };
        let mut workspace = item.workspace.clone();
        let fully_cached = cached.as_ref().is_some_and(|result| last_runnable_step(spec, &item.skipped_steps) == Some(result.step_index));
        workspace.cached_result_found = fully_cached;
        rows.push(workspace);
        jobs_payloads.push((payload, cached, fully_cached));
    }
    let ids = state.store.insert_workspaces(&rows, now).await.map_err(|error| error.to_string())?;
    let mut jobs = Vec::new();
    for ((workspace_id, (mut payload, cached, fully_cached)), item) in ids.into_iter().zip(jobs_payloads).zip(&planned) {
        if item.workspace.ignored && !row.allow_ignored {
            continue;
        }
        if fully_cached {
            if let Some(result) = &cached {
                store_cached_changeset_specs(state, spec, row, workspace_id, item, &payload, result).await?;
            }
            continue;
        }
        payload.cached_result = cached;
        jobs.push(NewExecutionJob {
            workspace_id,
            batch_spec_id: row.id,
            user_id: user,
            routing_key: spec.executor.routing_key(),
            payload: serde_json::to_value(&payload).map_err(|error| error.to_string())?,
        });
    }
    let count = rows.len();
    if !jobs.is_empty() {
        state.store.enqueue_execution_jobs(&jobs, now).await.map_err(|error| error.to_string())?;
        state.jobs_were_queued();
    }
    Ok(count)
}

fn last_runnable_step(spec: &BatchSpec, skipped: &[usize]) -> Option<usize> {
    (0..spec.steps.len()).rev().find(|index| !skipped.contains(index))
}

/// A repository name as URL path segments: every byte but letters, digits, `-._~` and the `/`
/// between segments is percent-encoded. Code hosts allow names (a backtick, `{`, a space) that
/// an HTTP request line cannot carry as they are; the route decodes them again.
fn url_path_of(name: &str) -> String {
    let mut path = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~/".contains(&byte) {
            path.push(char::from(byte));
        } else {
            path.push_str(&format!("%{byte:02X}"));
        }
    }
    path
}

/// The job an executor will receive, without its per-attempt token and secrets.
fn job_payload(spec: &BatchSpec, item: &PlannedWorkspace) -> Job {
    Job {
        id: 0,
        token: String::new(),
        repository_name: item.repository.name.clone(),
        commit: item.workspace.commit.clone(),
        branch: item.workspace.branch.clone(),
        git_path: format!("/.executors/git/{}", url_path_of(&item.repository.name)),
        workspace_path: item.workspace.path.clone(),
        only_fetch_workspace: item.workspace.only_fetch_workspace,
        batch_change_name: spec.name.clone(),
        batch_change_description: spec.description.clone(),
        search_result_paths: item.workspace.file_matches.clone(),
        steps: spec.steps.clone(),
        skipped_steps: item.skipped_steps.clone(),
        cached_result: None,
        secrets: BTreeMap::new(),
        redactions: Vec::new(),
        mount_files: Vec::new(),
        allowed_images: Vec::new(),
        timeout_seconds: 0,
    }
}

/// The result of the latest step whose cache entry exists, with every earlier runnable step
/// cached too (resuming needs an unbroken prefix).
async fn cached_result(
    state: &SharedState,
    user: UserId,
    spec: &BatchSpec,
    payload: &Job,
    secrets: &BTreeMap<String, String>,
    skipped: &[usize],
) -> Result<Option<StepResult>, String> {
    let environments = resolve_environments(&spec.steps, secrets);
    let inputs = CacheKeyInputs {
        repository_name: &payload.repository_name,
        branch: &payload.branch,
        commit: &payload.commit,
        file_matches: payload.search_result_paths.clone(),
        path: &payload.workspace_path,
        only_fetch_workspace: payload.only_fetch_workspace,
        batch_change_name: &spec.name,
        batch_change_description: &spec.description,
        steps: &spec.steps,
        environments,
        mounts: Vec::new(),
    };
    let runnable: Vec<usize> = (0..spec.steps.len()).filter(|index| !skipped.contains(index)).collect();
    let keys: Vec<String> = runnable.iter().map(|index| step_cache_key(&inputs, *index)).collect();
    let entries = state.store.get_step_cache_entries(user, &keys).await.map_err(|error| error.to_string())?;
    let mut latest = None;
    for key in &keys {
        match entries.iter().find(|entry| &entry.key == key) {
            Some(entry) => latest = serde_json::from_value::<StepResult>(entry.value.clone()).ok(),
            None => break,
        }
    }
    Ok(latest)
}

async fn store_cached_changeset_specs(
    state: &SharedState,
    spec: &BatchSpec,
    row: &BatchSpecRow,
    workspace_id: flotilla_store::WorkspaceId,
    item: &PlannedWorkspace,
    payload: &Job,
    result: &StepResult,
) -> Result<(), String> {
    let destination = Destination { batch_spec_id: row.id, workspace_id, repository_id: item.repository.id, author: row.creator_user_id };
    let specs = build_for_workspace(state, spec, payload, result, &destination).await?;
    insert_for_workspace(state, workspace_id, &specs).await.map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::url_path_of;

    #[test]
    fn repository_names_become_url_paths_an_http_request_can_carry() {
        assert_eq!(url_path_of("github.com/a/b.c-d_e~f"), "github.com/a/b.c-d_e~f");
        assert_eq!(url_path_of("local/tick`x` $(y){z};w"), "local/tick%60x%60%20%24%28y%29%7Bz%7D%3Bw");
        assert_eq!(url_path_of("local/é"), "local/%C3%A9");
    }
}
