//! The typed batch spec: what a valid spec means, after every check has passed.
//!
//! These types can only be built by the validator in this crate (or deserialized from JSON
//! that it produced), so the rest of the system never handles an unchecked spec. Field names
//! serialize in Sourcegraph's camelCase so that stored specs read like the YAML users wrote.

use serde::{Deserialize, Serialize};

use crate::published::Published;

/// A parsed and validated batch spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// Schema version: 1 (default) or 2 (keyword search by default in `repositoriesMatchingQuery`).
    pub version: u8,
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub on: Vec<OnEntry>,
    #[serde(default)]
    pub workspaces: Vec<WorkspaceConfiguration>,
    #[serde(default)]
    pub steps: Vec<Step>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transform_changes: Option<TransformChanges>,
    #[serde(default)]
    pub import_changesets: Vec<ImportChangeset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changeset_template: Option<ChangesetTemplate>,
    /// Flotilla's extension: which executors may run this spec's workspaces.
    #[serde(default, skip_serializing_if = "ExecutorRequirements::is_empty")]
    pub executor: ExecutorRequirements,
}

/// `executor:` (a Flotilla extension to the format): labels an executor must advertise to
/// take this spec's workspaces, e.g. `executor: {labels: {gpu: "true"}}` runs only on
/// executors started with `--labels gpu=true`. Sourcegraph's schema rejects unknown fields,
/// so a spec that uses it is Flotilla-only; specs without it are unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorRequirements {
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
}

impl ExecutorRequirements {
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The queue's routing key: `name=value` pairs, sorted, joined by commas ("" for any).
    pub fn routing_key(&self) -> String {
        self.labels.iter().map(|(name, value)| format!("{name}={value}")).collect::<Vec<_>>().join(",")
    }
}

/// One entry of `on`: a search query, or one repository with optional branches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OnEntry {
    #[serde(rename_all = "camelCase")]
    Query { repositories_matching_query: String },
    Repository {
        repository: String,
        /// Empty means the repository's default branch. `branch: x` is stored as `[x]`.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        branches: Vec<String>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceConfiguration {
    pub root_at_location_of: String,
    /// Glob over repository names; empty means every repository.
    #[serde(default, rename = "in")]
    pub in_repositories: String,
    #[serde(default)]
    pub only_fetch_workspace: bool,
}

/// One step: a shell script run in a container.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub run: String,
    pub container: String,
    #[serde(default)]
    pub env: Vec<EnvironmentVariable>,
    /// Container path → content (templated), in the order written.
    #[serde(default)]
    pub files: Vec<(String, String)>,
    /// Output name → definition, in the order written.
    #[serde(default)]
    pub outputs: Vec<(String, Output)>,
    /// The `if:` condition as Sourcegraph normalises it: `true`/`false` for booleans, the
    /// string itself, or empty when absent.
    #[serde(default, rename = "if", skip_serializing_if = "String::is_empty")]
    pub if_condition: String,
    #[serde(default)]
    pub mount: Vec<Mount>,
    /// `network: true` (a Flotilla extension to the format): the step's container gets a
    /// network; without it, steps run with none. Left out of the serialized step when false,
    /// so specs without it keep their cache keys.
    #[serde(default, skip_serializing_if = "is_false")]
    pub network: bool,
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// An environment variable of a step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    pub name: String,
    /// `None` for a bare name: the value comes from outside the spec (server-side, an
    /// executor secret of that name).
    pub value: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Output {
    pub value: String,
    pub format: OutputFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Text,
    Json,
    Yaml,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub path: String,
    pub mountpoint: String,
}

impl Mount {
    /// The mount's source as uploaded: relative to the batch spec's folder, `/`-separated,
    /// without `.` parts (`./scripts/../fix.sh` → `fix.sh`; the folder itself is "").
    pub fn normalized_path(&self) -> String {
        normalize_relative_path(&self.path)
    }

    /// Where an uploaded file (by its normalized path) appears in the container when this
    /// mount covers it: the mountpoint itself for the mounted file, or below the mountpoint
    /// for a file inside a mounted folder.
    pub fn target_of(&self, uploaded_path: &str) -> Option<String> {
        let source = self.normalized_path();
        let mountpoint = self.mountpoint.trim_end_matches('/');
        if uploaded_path == source {
            return Some(mountpoint.to_owned());
        }
        let inside = if source.is_empty() { Some(uploaded_path) } else { uploaded_path.strip_prefix(&source)?.strip_prefix('/') };
        inside.filter(|rest| !rest.is_empty()).map(|rest| format!("{mountpoint}/{rest}"))
    }
}

/// A relative path, `/`-separated, with `.` and `..` parts resolved (a `..` above the start
/// is dropped: validation refuses such mount paths before they get here).
pub fn normalize_relative_path(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    parts.join("/")
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformChanges {
    pub group: Vec<TransformGroup>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TransformGroup {
    pub directory: String,
    pub branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImportChangeset {
    pub repository: String,
    /// Pull request numbers or ids, as strings (`120` and `"120"` mean the same).
    #[serde(rename = "externalIDs")]
    pub external_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangesetTemplate {
    pub title: String,
    #[serde(default)]
    pub body: String,
    pub branch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<bool>,
    pub commit: CommitTemplate,
    #[serde(default)]
    pub published: Published,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitTemplate {
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<CommitAuthor>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitAuthor {
    pub name: String,
    pub email: String,
}

impl Step {
    /// Names of the environment variables whose values come from outside the spec.
    pub fn outer_variable_names(&self) -> impl Iterator<Item = &str> {
        self.env.iter().filter(|variable| variable.value.is_none()).map(|variable| variable.name.as_str())
    }
}

impl BatchSpec {
    /// Every outer (secret) variable name the steps use, deduplicated, in first-use order.
    pub fn required_outer_variables(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for name in self.steps.iter().flat_map(Step::outer_variable_names) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    fn mount(path: &str, mountpoint: &str) -> Mount {
        Mount { path: path.to_owned(), mountpoint: mountpoint.to_owned() }
    }

    #[test]
    fn paths_are_normalized_relative_to_the_spec() {
        for (written, normalized) in [("./fix.sh", "fix.sh"), ("scripts/../fix.sh", "fix.sh"), ("./a//b/./c", "a/b/c"), (".", ""), ("a\\b", "a/b")] {
            assert_eq!(mount(written, "/x").normalized_path(), normalized, "{written}");
        }
    }

    #[test]
    fn a_file_mount_covers_only_that_file() {
        let file = mount("./fix.sh", "/tmp/fix.sh");
        assert_eq!(file.target_of("fix.sh").as_deref(), Some("/tmp/fix.sh"));
        assert_eq!(file.target_of("fix.sh.bak"), None);
        assert_eq!(file.target_of("other/fix.sh"), None);
    }

    #[test]
    fn a_folder_mount_covers_what_is_below_it() {
        let folder = mount("./scripts/", "/opt/scripts/");
        assert_eq!(folder.target_of("scripts/a.sh").as_deref(), Some("/opt/scripts/a.sh"));
        assert_eq!(folder.target_of("scripts/lib/b.sh").as_deref(), Some("/opt/scripts/lib/b.sh"));
        assert_eq!(folder.target_of("scriptsx/a.sh"), None);
        let whole = mount(".", "/spec");
        assert_eq!(whole.target_of("a/b.sh").as_deref(), Some("/spec/a/b.sh"));
    }
}
