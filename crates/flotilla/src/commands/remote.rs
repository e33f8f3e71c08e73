//! `flotilla batch preview` and `flotilla batch remote`: run a spec server-side.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use flotilla_wire::api::{ApplyPlan, BatchChangeStatistics, BatchSpecStatus, ChangesetInfo, ChangesetSpecInfo, ChangesetSpecPage, CreateBatchSpec, UploadedMountFile, WorkspaceInfo, WorkspacePage};

use super::batch::read_spec_source;
use crate::cli::{ApplyArgs, ChangesetsBulkArgs, ChangesetsListArgs, CloseArgs, DeleteArgs, PreviewArgs, RemoteArgs, RepositoriesArgs, StatusArgs};
use crate::client::Client;

/// Uploads the spec after validating it locally (so errors show with the file's name).
async fn upload(client: &Client, file: &std::path::Path, namespace: Option<String>, allow_ignored: bool, no_cache: bool) -> anyhow::Result<Result<BatchSpecStatus, ExitCode>> {
    let (file_name, source) = read_spec_source(file)?;
    let validated = match flotilla_spec::parse_batch_spec(&source) {
        Ok(validated) => validated,
        Err(diagnostics) => {
            eprint!("{}", flotilla_spec::render_all(&diagnostics, &file_name, &source));
            eprintln!("{file_name}: invalid batch spec");
            return Ok(Err(ExitCode::from(1)));
        }
    };
    let spec_folder = match file.to_str() {
        Some("-") => std::env::current_dir()?,
        _ => file.parent().map(std::path::Path::to_path_buf).unwrap_or_default(),
    };
    let mount_files = read_mount_files(&validated.spec, &spec_folder)?;
    let created: BatchSpecStatus = client
        .post("/api/v1/batch-specs", &CreateBatchSpec { spec: source, namespace, allow_ignored, no_cache, mount_files })
        .await?;
    Ok(Ok(created))
}

/// Largest file a step may mount (Sourcegraph's limit; the server may set a lower one).
const MAX_MOUNT_FILE_BYTES: u64 = 10 << 20;

/// Reads the files and folders the steps mount, relative to the spec's folder, to upload
/// with the spec: the server hands them to the executors.
fn read_mount_files(spec: &flotilla_spec::BatchSpec, spec_folder: &std::path::Path) -> anyhow::Result<Vec<UploadedMountFile>> {
    use anyhow::Context;
    let mut files: Vec<UploadedMountFile> = Vec::new();
    let spec_folder_real = std::fs::canonicalize(if spec_folder.as_os_str().is_empty() { std::path::Path::new(".") } else { spec_folder })
        .with_context(|| format!("reading the batch spec's folder {}", spec_folder.display()))?;
    for (index, step) in spec.steps.iter().enumerate() {
        for mount in &step.mount {
            let relative = mount.normalized_path();
            let root = spec_folder.join(&relative);
            let metadata = std::fs::metadata(&root).with_context(|| {
                format!("step {} mounts `{}`, which does not exist at {} (mount paths are relative to the batch spec file)", index + 1, mount.path, root.display())
            })?;
            let mut pending = vec![(root, relative, metadata)];
            // Folders already read, by real path: a symbolic link back up the tree is read once.
            let mut folders_read = std::collections::HashSet::new();
            while let Some((path, relative, metadata)) = pending.pop() {
                // Symbolic links are followed only while they stay inside the spec's folder: a
                // mount must not upload `/etc/passwd` or `~/.ssh` through a link next to the spec.
                let real = std::fs::canonicalize(&path).with_context(|| format!("reading {}", path.display()))?;
                if !real.starts_with(&spec_folder_real) {
                    anyhow::bail!(
                        "step {} mounts `{}`, but {} is a symbolic link to {}, outside the batch spec's folder {}; copy what the step needs next to the spec instead",
                        index + 1,
                        mount.path,
                        path.display(),
                        real.display(),
                        spec_folder_real.display()
                    );
                }
                if metadata.is_dir() {
                    if !folders_read.insert(real) {
                        continue;
                    }
                    for entry in std::fs::read_dir(&path).with_context(|| format!("reading the folder {}", path.display()))? {
                        let entry = entry.with_context(|| format!("reading the folder {}", path.display()))?;
                        let name = entry.file_name().to_string_lossy().into_owned();
                        let child_relative = if relative.is_empty() { name } else { format!("{relative}/{name}") };
                        let child_metadata = std::fs::metadata(entry.path()).with_context(|| format!("reading {}", entry.path().display()))?;
                        pending.push((entry.path(), child_relative, child_metadata));
                    }
                    continue;
                }
                if files.iter().any(|file| file.path == relative) {
                    continue;
                }
                if metadata.len() > MAX_MOUNT_FILE_BYTES {
                    anyhow::bail!(
                        "{} is {} bytes; mounted files may be at most {MAX_MOUNT_FILE_BYTES} bytes (put large files into the image instead)",
                        path.display(),
                        metadata.len()
                    );
                }
                let content = std::fs::read(&path).with_context(|| format!("reading the mounted file {}", path.display()))?;
                let modified_at = metadata
                    .modified()
                    .ok()
                    .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX));
                files.push(UploadedMountFile::new(&relative, &content, modified_at));
            }
        }
    }
    files.sort_by(|left, right| left.path.cmp(&right.path));
    Ok(files)
}

/// Polls until resolution and execution are over, printing progress to stderr.
async fn follow(client: &Client, id: &str, quiet: bool) -> anyhow::Result<BatchSpecStatus> {
    let interactive = std::io::stderr().is_terminal();
    let mut last_line = String::new();
    loop {
        let status: BatchSpecStatus = client.get(&format!("/api/v1/batch-specs/{id}")).await?;
        let jobs = &status.jobs;
        let line = format!(
            "{}: {} workspaces resolved{} — {} queued, {} running, {} done, {} failed{}",
            status.name,
            status.workspaces,
            if status.state == "pending" { " so far" } else { "" },
            jobs.queued,
            jobs.processing + jobs.canceling,
            jobs.completed,
            jobs.failed,
            if jobs.canceled > 0 { format!(", {} canceled", jobs.canceled) } else { String::new() },
        );
        if !quiet && line != last_line {
            if interactive {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            last_line = line;
        }
        if matches!(status.state.as_str(), "completed" | "failed" | "canceled") {
            if !quiet && interactive {
                eprintln!();
            }
            return Ok(status);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn all_workspaces(client: &Client, id: &str) -> anyhow::Result<Vec<WorkspaceInfo>> {
    let mut workspaces = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(after) => format!("/api/v1/batch-specs/{id}/workspaces?limit=1000&after={after}"),
            None => format!("/api/v1/batch-specs/{id}/workspaces?limit=1000"),
        };
        let page: WorkspacePage = client.get(&path).await?;
        workspaces.extend(page.workspaces);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(workspaces),
        }
    }
}

async fn all_changeset_specs(client: &Client, id: &str) -> anyhow::Result<Vec<ChangesetSpecInfo>> {
    let mut specs = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let path = match after {
            Some(after) => format!("/api/v1/batch-specs/{id}/changeset-specs?limit=1000&after={after}"),
            None => format!("/api/v1/batch-specs/{id}/changeset-specs?limit=1000"),
        };
        let page: ChangesetSpecPage = client.get(&path).await?;
        specs.extend(page.changeset_specs);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(specs),
        }
    }
}

pub async fn preview(arguments: PreviewArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let created = match upload(&client, &arguments.file, arguments.namespace.clone(), arguments.force_override_ignore, arguments.clear_cache).await? {
        Ok(created) => created,
        Err(code) => return Ok(code),
    };
    let url = format!("{}/api/v1/batch-specs/{}", client.base_url(), created.id);
    if !arguments.json {
        eprintln!("running batch spec {} server-side ({url})", created.id);
    }
    let status = follow(&client, &created.id, arguments.json).await?;
    if status.resolution_state == "failed" {
        eprintln!("error: resolving the workspaces failed: {}", status.resolution_failure.unwrap_or_default());
        return Ok(ExitCode::from(1));
    }
    let workspaces = all_workspaces(&client, &created.id).await?;
    let changeset_specs = all_changeset_specs(&client, &created.id).await?;
    // What `batch apply` would do with them (absent when they cannot be applied as they are).
    let apply_plan: Option<ApplyPlan> = client.get(&format!("/api/v1/batch-specs/{}/apply-preview", created.id)).await.ok();
    let failed = workspaces.iter().filter(|workspace| workspace.state == "failed").count();
    if workspaces.is_empty() {
        eprintln!("warning: the spec matched no repositories; check `on` and that the repositories are mirrored (`flotilla repos list`)");
    }
    if arguments.json {
        let document = serde_json::json!({
            "batchSpec": created.id,
            "url": url,
            "state": status.state,
            "problems": status.problems,
            "workspaces": workspaces.iter().map(|workspace| serde_json::json!({
                "repository": workspace.repository,
                "branch": workspace.branch,
                "path": workspace.path,
                "state": workspace.state,
                "executor": workspace.executor,
                "failureMessage": workspace.failure_message,
            })).collect::<Vec<_>>(),
            "applyPlan": apply_plan,
            "changesetSpecs": changeset_specs.iter().map(|spec| serde_json::json!({
                "repository": spec.repository,
                "baseRef": spec.base_ref,
                "headRef": spec.head_ref,
                "title": spec.title,
                "body": spec.body,
                "commitMessage": spec.commit_message,
                "authorName": spec.author_name,
                "authorEmail": spec.author_email,
                "published": spec.published,
                "diff": spec.diff,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        println!("Workspaces ({}):", workspaces.len());
        for workspace in &workspaces {
            let path = if workspace.path.is_empty() { String::new() } else { format!(" /{}", workspace.path) };
            println!("  {:<10} {}@{}{}", workspace.state, workspace.repository, workspace.branch, path);
            if let Some(message) = &workspace.failure_message {
                for line in message.lines() {
                    println!("             {line}");
                }
            }
        }
        println!("Changesets ({}):", changeset_specs.len());
        for spec in &changeset_specs {
            let published = match &spec.published {
                serde_json::Value::Null => "unset".to_owned(),
                other => other.to_string().trim_matches('"').to_owned(),
            };
            println!("  {} {} → {} (published: {published})", spec.repository, spec.base_ref.trim_start_matches("refs/heads/"), spec.head_ref.trim_start_matches("refs/heads/"));
            println!("    {}", spec.title);
        }
        if let Some(plan) = &apply_plan {
            println!("If applied to batch change {}:", plan.batch_change);
            for changeset in &plan.changesets {
                let operations = if changeset.operations.is_empty() { "nothing to do".to_owned() } else { changeset.operations.join(", ") };
                println!("  {:<8} {} {}: {operations}", changeset.action, changeset.repository, changeset.head_ref.trim_start_matches("refs/heads/"));
            }
        }
    }
    for problem in &status.problems {
        eprintln!("error: {problem}");
    }
    Ok(if failed > 0 {
        ExitCode::from(3)
    } else if !status.problems.is_empty() {
        ExitCode::from(4)
    } else {
        ExitCode::SUCCESS
    })
}

pub async fn remote(arguments: RemoteArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let created = match upload(&client, &arguments.file, arguments.namespace.clone(), false, arguments.clear_cache).await? {
        Ok(created) => created,
        Err(code) => return Ok(code),
    };
    println!("{}/api/v1/batch-specs/{}", client.base_url(), created.id);
    if arguments.follow {
        let status = follow(&client, &created.id, false).await?;
        eprintln!("finished: {}", status.state);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn repositories(arguments: RepositoriesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let (file_name, source) = read_spec_source(&arguments.file)?;
    if let Err(diagnostics) = flotilla_spec::parse_batch_spec(&source) {
        eprint!("{}", flotilla_spec::render_all(&diagnostics, &file_name, &source));
        return Ok(ExitCode::from(1));
    }
    let workspaces: Vec<serde_json::Value> = client
        .post("/api/v1/batch-specs/resolve", &CreateBatchSpec { spec: source, namespace: None, allow_ignored: false, no_cache: false, mount_files: Vec::new() })
        .await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&workspaces)?);
        return Ok(ExitCode::SUCCESS);
    }
    let repositories: std::collections::BTreeSet<&str> = workspaces.iter().filter_map(|workspace| workspace["repository"].as_str()).collect();
    for workspace in &workspaces {
        let path = workspace["path"].as_str().unwrap_or_default();
        let ignored = if workspace["ignored"] == true { "  (ignored: .batchignore)" } else { "" };
        println!(
            "{}@{}{}{}",
            workspace["repository"].as_str().unwrap_or("?"),
            workspace["branch"].as_str().unwrap_or("?"),
            if path.is_empty() { String::new() } else { format!(" /{path}") },
            ignored
        );
    }
    eprintln!("{} workspaces in {} repositories", workspaces.len(), repositories.len());
    Ok(ExitCode::SUCCESS)
}

pub async fn apply(arguments: ApplyArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let id = match (&arguments.preview, &arguments.file) {
        (Some(id), _) => id.clone(),
        (None, Some(file)) => {
            let created = match upload(&client, file, arguments.namespace.clone(), false, arguments.clear_cache).await? {
                Ok(created) => created,
                Err(code) => return Ok(code),
            };
            let status = follow(&client, &created.id, arguments.json).await?;
            if status.resolution_state == "failed" {
                eprintln!("error: resolving the workspaces failed: {}", status.resolution_failure.unwrap_or_default());
                return Ok(ExitCode::from(1));
            }
            if status.jobs.failed > 0 {
                eprintln!("warning: {} workspaces failed; their changesets are left out (see `flotilla batch preview`)", status.jobs.failed);
            }
            created.id
        }
        (None, None) => anyhow::bail!("give the spec with -f FILE, or an already previewed batch spec with --preview ID"),
    };
    let plan: ApplyPlan = client.post(&format!("/api/v1/batch-specs/{id}/apply"), &serde_json::json!({})).await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("Applied batch change {} ({} changesets):", plan.batch_change, plan.changesets.len());
    for changeset in &plan.changesets {
        let operations = if changeset.operations.is_empty() { "nothing to do".to_owned() } else { changeset.operations.join(", ") };
        println!("  {:<8} {} {}: {operations}", changeset.action, changeset.repository, changeset.head_ref.trim_start_matches("refs/heads/"));
    }
    eprintln!("the server is pushing them now; follow with `flotilla changesets list --batch-change {}`", plan.batch_change);
    Ok(ExitCode::SUCCESS)
}

pub async fn list_changesets(arguments: ChangesetsListArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let mut path = format!("/api/v1/batch-changes/{}/changesets", arguments.batch_change);
    if let Some(namespace) = &arguments.namespace {
        path.push_str(&format!("?namespace={namespace}"));
    }
    let changesets: Vec<ChangesetInfo> = client.get(&path).await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&changesets)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_millis() as i64);
    for changeset in &changesets {
        let external = changeset.external_state.as_deref().unwrap_or("-");
        // A queued changeset that failed before is waiting for its next attempt: say so.
        let reconciler = match changeset.retry_at {
            Some(at) => format!("retrying in {} s", ((at - now_ms).max(0) + 999) / 1000),
            None => changeset.reconciler_state.clone(),
        };
        println!(
            "{} {} {} {} reconciler:{}{}",
            changeset.repository,
            changeset.head_ref.trim_start_matches("refs/heads/"),
            changeset.publication_state,
            external,
            reconciler,
            changeset.failure_message.as_deref().map(|message| format!(" ({message})")).unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn namespace_query(namespace: &Option<String>) -> String {
    namespace.as_ref().map(|namespace| format!("?namespace={namespace}")).unwrap_or_default()
}

pub async fn close(arguments: CloseArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let path = format!("/api/v1/batch-changes/{}/close{}", arguments.name, namespace_query(&arguments.namespace));
    let closed: serde_json::Value = client.post(&path, &serde_json::json!({ "closeChangesets": arguments.close_changesets })).await?;
    eprintln!("closed batch change {} ({} changesets being closed)", arguments.name, closed["closingChangesets"].as_u64().unwrap_or(0));
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(arguments: DeleteArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    client.delete(&format!("/api/v1/batch-changes/{}{}", arguments.name, namespace_query(&arguments.namespace))).await?;
    eprintln!("deleted batch change {}", arguments.name);
    Ok(ExitCode::SUCCESS)
}

pub async fn bulk(arguments: ChangesetsBulkArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let path = format!("/api/v1/batch-changes/{}/changesets/bulk{}", arguments.batch_change, namespace_query(&arguments.namespace));
    let mut request = serde_json::json!({ "action": arguments.action, "squash": arguments.squash, "draft": arguments.draft });
    if !arguments.ids.is_empty() {
        request["changesetIds"] = serde_json::json!(arguments.ids);
    }
    if let Some(body) = &arguments.body {
        request["body"] = serde_json::json!(body);
    }
    let outcomes: Vec<serde_json::Value> = client.post(&path, &request).await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
    } else {
        for outcome in &outcomes {
            let message = outcome["message"].as_str().map(|message| format!(" ({message})")).unwrap_or_default();
            println!("{} {}{message}", outcome["repository"].as_str().unwrap_or_default(), outcome["outcome"].as_str().unwrap_or_default());
        }
    }
    let failed = outcomes.iter().any(|outcome| outcome["outcome"] == "failed");
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub async fn status(arguments: StatusArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let mut path = format!("/api/v1/batch-changes/{}/statistics?points={}", arguments.name, arguments.points);
    if let Some(namespace) = &arguments.namespace {
        path.push_str(&format!("&namespace={namespace}"));
    }
    let statistics: BatchChangeStatistics = client.get(&path).await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&statistics)?);
        return Ok(ExitCode::SUCCESS);
    }
    let counts = &statistics.changesets;
    println!("{}: {} changesets, {}% complete{}", arguments.name, counts.total, counts.percent_complete, if counts.is_completed { " (all merged or closed)" } else { "" });
    println!(
        "  open {}  draft {}  merged {}  closed {}  unpublished {}  scheduled {}  processing {}  retrying {}  failed {}  archived {}",
        counts.open, counts.draft, counts.merged, counts.closed, counts.unpublished, counts.scheduled, counts.processing, counts.retrying, counts.failed, counts.archived
    );
    if statistics.burndown.iter().any(|point| point.total > 0) {
        println!("Burndown (UTC)          open  draft  merged  closed");
        for point in &statistics.burndown {
            println!("  {}  {:>5}  {:>5}  {:>6}  {:>6}", utc_minute(point.at), point.open, point.draft, point.merged, point.closed);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `YYYY-MM-DD HH:MM` (UTC) for milliseconds since the epoch (Howard Hinnant's civil-from-days).
fn utc_minute(at_ms: i64) -> String {
    let seconds = at_ms.div_euclid(1000);
    let (days, of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::utc_minute;

    #[test]
    fn times_print_as_utc_calendar_minutes() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(1_795_996_800_000 + 9 * 3_600_000 + 5 * 60_000 + 59_000), "2026-11-30 09:05");
        assert_eq!(utc_minute(951_782_400_000), "2000-02-29 00:00");
        assert_eq!(utc_minute(-86_400_000), "1969-12-31 00:00");
    }
}
