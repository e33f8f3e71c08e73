//! The step-result cache key, with Sourcegraph's rules.
//!
//! The key for step *i* of a workspace hashes everything that can change what steps `0..=i`
//! produce: the repository, its commit and search results, the workspace path, those steps
//! exactly as written, each step's resolved environment (secret values included, so changing
//! a secret invalidates the steps that use it), mounted files' metadata, and the batch
//! change's name and description. It does not include the changesetTemplate, so editing only
//! the template re-runs nothing; and changing step *k* invalidates steps `k..` only.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The inputs of a workspace that its step cache keys depend on.
#[derive(Clone, Debug, Serialize)]
pub struct CacheKeyInputs<'a> {
    pub repository_name: &'a str,
    pub branch: &'a str,
    pub commit: &'a str,
    /// Search result paths (sorted before hashing).
    pub file_matches: Vec<String>,
    pub path: &'a str,
    pub only_fetch_workspace: bool,
    pub batch_change_name: &'a str,
    pub batch_change_description: &'a str,
    pub steps: &'a [flotilla_spec::Step],
    /// Each step's environment as it reaches the container (static values and secrets).
    pub environments: Vec<BTreeMap<String, String>>,
    /// (path, size, modified) of every mounted file.
    pub mounts: Vec<(String, u64, i64)>,
}

#[derive(Serialize)]
struct Hashed<'a> {
    repository: (&'a str, &'a str, &'a str, &'a [String]),
    path: &'a str,
    only_fetch_workspace: bool,
    steps: &'a [flotilla_spec::Step],
    batch_change: (&'a str, &'a str),
    step_index: usize,
    environments: &'a [BTreeMap<String, String>],
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    mounts: &'a [(String, u64, i64)],
}

/// The cache key of step `step_index` (0-based): `<base64url of 16 bytes of SHA-256>-step-<i>`.
pub fn step_cache_key(inputs: &CacheKeyInputs<'_>, step_index: usize) -> String {
    let mut file_matches = inputs.file_matches.clone();
    file_matches.sort();
    let last = step_index.min(inputs.steps.len().saturating_sub(1));
    let hashed = Hashed {
        repository: (inputs.repository_name, inputs.branch, inputs.commit, &file_matches),
        path: inputs.path,
        only_fetch_workspace: inputs.only_fetch_workspace,
        steps: &inputs.steps[..=last.min(inputs.steps.len().saturating_sub(1))],
        batch_change: (inputs.batch_change_name, inputs.batch_change_description),
        step_index,
        environments: &inputs.environments[..(last + 1).min(inputs.environments.len())],
        mounts: &inputs.mounts,
    };
    let json = serde_json::to_vec(&hashed).expect("cache key inputs always serialize");
    let digest = Sha256::digest(&json);
    format!("{}-step-{step_index}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&digest[..16]))
}

/// Each step's environment: static values as written, bare names from `secrets` (missing
/// secrets resolve to the empty string, as an unset variable would).
pub fn resolve_environments(steps: &[flotilla_spec::Step], secrets: &BTreeMap<String, String>) -> Vec<BTreeMap<String, String>> {
    steps
        .iter()
        .map(|step| {
            step.env
                .iter()
                .map(|variable| {
                    let value = match &variable.value {
                        Some(value) => value.clone(),
                        None => secrets.get(&variable.name).cloned().unwrap_or_default(),
                    };
                    (variable.name.clone(), value)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(runs: &[&str]) -> Vec<flotilla_spec::Step> {
        runs.iter()
            .map(|run| flotilla_spec::Step {
                run: (*run).to_owned(),
                container: "alpine:3".to_owned(),
                env: vec![flotilla_spec::EnvironmentVariable { name: "TOKEN".to_owned(), value: None }],
                files: Vec::new(),
                outputs: Vec::new(),
                if_condition: String::new(),
                mount: Vec::new(),
                network: false,
            })
            .collect()
    }

    fn keys(steps: &[flotilla_spec::Step], secret: &str, description: &str) -> Vec<String> {
        let secrets = BTreeMap::from([("TOKEN".to_owned(), secret.to_owned())]);
        let inputs = CacheKeyInputs {
            repository_name: "r",
            branch: "main",
            commit: "abc",
            file_matches: vec!["b".into(), "a".into()],
            path: "",
            only_fetch_workspace: false,
            batch_change_name: "n",
            batch_change_description: description,
            steps,
            environments: resolve_environments(steps, &secrets),
            mounts: Vec::new(),
        };
        (0..steps.len()).map(|index| step_cache_key(&inputs, index)).collect()
    }

    #[test]
    fn changing_a_step_invalidates_it_and_later_steps_only() {
        let before = keys(&steps(&["a", "b", "c"]), "s", "d");
        let after = keys(&steps(&["a", "B", "c"]), "s", "d");
        assert_eq!(before[0], after[0]);
        assert_ne!(before[1], after[1]);
        assert_ne!(before[2], after[2]);
        assert!(before[2].ends_with("-step-2"));
    }

    #[test]
    fn secrets_and_description_are_part_of_the_key() {
        let base = keys(&steps(&["a"]), "s", "d");
        assert_ne!(base, keys(&steps(&["a"]), "other secret", "d"));
        assert_ne!(base, keys(&steps(&["a"]), "s", "other description"));
        assert_eq!(base, keys(&steps(&["a"]), "s", "d"), "the key is deterministic");
    }
}
