//! `changesetTemplate.published`: one value for every changeset, or rules per repository.
//!
//! Sourcegraph accepts `true`, `false`, `"draft"`, nothing (the UI decides), or a list of
//! single-key mappings `{"<glob>[@<branch>]": value}` where the glob matches the repository
//! name, the optional `@branch` must equal the changeset's branch, and the *last* matching
//! rule wins. A scalar is sugar for `[{"*": value}]`.

use serde::{Deserialize, Serialize};

/// What a changeset's publication should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PublishedValue {
    /// Leave unpublished.
    #[serde(rename = "false")]
    Unpublished,
    /// Open a pull request.
    #[serde(rename = "true")]
    Published,
    /// Open a draft pull request (where the host has drafts).
    #[serde(rename = "draft")]
    Draft,
}

/// One rule of the list form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PublishedRule {
    /// Glob over repository names (gobwas syntax).
    pub repository_glob: String,
    /// Exact branch the rule is limited to, from the `@branch` suffix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub value: PublishedValue,
}

/// The whole `published` field.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Published {
    /// Not set: publication is chosen in the UI or with bulk operations.
    #[default]
    Unset,
    /// One value for every changeset.
    Everywhere(PublishedValue),
    /// Rules; the last that matches wins, none matching means unset.
    Rules(Vec<PublishedRule>),
}

impl PublishedRule {
    /// Splits a rule key `glob@branch` at its last `@`. An `@` inside the glob (before the
    /// last one) stays part of the glob, as in Sourcegraph.
    pub fn parse_key(key: &str) -> (String, Option<String>) {
        match key.rsplit_once('@') {
            Some((glob, branch)) => (glob.to_owned(), Some(branch.to_owned())),
            None => (key.to_owned(), None),
        }
    }
}

impl Published {
    /// The publication for a changeset in `repository_name` on `branch` (with or without the
    /// `refs/heads/` prefix). `None` means the spec leaves it to the UI.
    pub fn value_for(&self, repository_name: &str, branch: &str) -> Option<PublishedValue> {
        match self {
            Published::Unset => None,
            Published::Everywhere(value) => Some(*value),
            Published::Rules(rules) => {
                let branch = branch.strip_prefix("refs/heads/").unwrap_or(branch);
                let mut decided = None;
                for rule in rules {
                    let branch_matches = rule
                        .branch
                        .as_deref()
                        .is_none_or(|wanted| wanted.strip_prefix("refs/heads/").unwrap_or(wanted) == branch);
                    if branch_matches && crate::glob::matches(&rule.repository_glob, repository_name).unwrap_or(false) {
                        decided = Some(rule.value);
                    }
                }
                decided
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(list: &[(&str, PublishedValue)]) -> Published {
        Published::Rules(
            list.iter()
                .map(|(key, value)| {
                    let (repository_glob, branch) = PublishedRule::parse_key(key);
                    PublishedRule { repository_glob, branch, value: *value }
                })
                .collect(),
        )
    }

    #[test]
    fn last_matching_rule_wins() {
        let published = rules(&[
            ("*", PublishedValue::Unpublished),
            ("github.com/org/*", PublishedValue::Draft),
            ("github.com/org/special", PublishedValue::Published),
        ]);
        assert_eq!(published.value_for("github.com/org/a", "b"), Some(PublishedValue::Draft));
        assert_eq!(published.value_for("github.com/org/special", "b"), Some(PublishedValue::Published));
        assert_eq!(published.value_for("gitlab.com/x/y", "b"), Some(PublishedValue::Unpublished));
    }

    #[test]
    fn branch_suffix_limits_a_rule() {
        let published = rules(&[("github.com/org/*@feature", PublishedValue::Draft)]);
        assert_eq!(published.value_for("github.com/org/a", "refs/heads/feature"), Some(PublishedValue::Draft));
        assert_eq!(published.value_for("github.com/org/a", "other"), None);
    }

    #[test]
    fn scalar_applies_everywhere_and_unset_is_none() {
        assert_eq!(Published::Everywhere(PublishedValue::Draft).value_for("x", "y"), Some(PublishedValue::Draft));
        assert_eq!(Published::Unset.value_for("x", "y"), None);
    }
}
