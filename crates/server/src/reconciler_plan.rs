//! What applying a batch spec does to each changeset, decided over data alone: the rewirer
//! (which new changeset spec continues which existing changeset) and the plan (the operations
//! that bring one changeset from where it is to where its spec wants it), following
//! Sourcegraph's `rewirer` and `reconciler.DeterminePlan`.
//!
//! Both the apply preview (what would happen) and the reconciler (make it happen) use these
//! functions, so what a user previews is what runs. The reconciler recomputes the plan from
//! the changeset's stored state after a crash instead of remembering half-done work, which is
//! what makes it idempotent: a pushed branch whose pull request was never opened plans
//! `Publish` again, and the publisher first looks for an existing pull request on that branch.

use std::collections::BTreeMap;

/// One step the reconciler takes on a changeset (Sourcegraph's operation names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    /// Push the commit to the changeset's branch (force: the branch belongs to the batch change).
    Push,
    /// Open the pull request.
    Publish,
    /// Open the pull request as a draft.
    PublishDraft,
    /// Change the pull request's title, body or base branch.
    Update,
    /// Mark a draft pull request ready for review.
    Undraft,
    /// Close the pull request (or, on a host without pull requests, delete the branch).
    Close,
    /// Reopen a closed pull request the spec still wants.
    Reopen,
    /// Keep the changeset only as history of the batch change (after it was closed).
    Archive,
    /// Remove an unpublished changeset the spec no longer produces.
    Detach,
    /// Start tracking an existing pull request (`importChangesets`).
    Import,
}

impl Operation {
    /// Sourcegraph's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Push => "push",
            Operation::Publish => "publish",
            Operation::PublishDraft => "publish-draft",
            Operation::Update => "update",
            Operation::Undraft => "undraft",
            Operation::Close => "close",
            Operation::Reopen => "reopen",
            Operation::Archive => "archive",
            Operation::Detach => "detach",
            Operation::Import => "import",
        }
    }
}

/// What a changeset spec asks for: `published` as the template (or the UI) says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Desired {
    /// `published: false` or unset: nothing is pushed or opened.
    Unpublished,
    Draft,
    Published,
}

/// The parts of a changeset spec the plan compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecView {
    /// An imported pull request (`importChangesets`): tracked, never pushed or changed.
    pub imported: bool,
    pub desired: Desired,
    pub base_ref: String,
    pub title: String,
    pub body: String,
    pub commit_message: String,
    pub author: String,
    /// A digest of the diff (equal digests, equal diffs).
    pub diff_digest: String,
}

/// Where a changeset is on its code host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum External {
    /// Nothing pushed or opened yet.
    Unpublished,
    /// Pushed to a host without pull requests (plain git).
    Pushed,
    Draft,
    Open,
    Closed,
    Merged,
}

/// A changeset as the plan sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangesetView {
    pub external: External,
    /// The spec it was last reconciled to (`None` if never).
    pub previous: Option<SpecView>,
    /// The spec it should reach; `None` once no spec of the batch change produces it.
    pub current: Option<SpecView>,
    /// A person asked to close it (bulk close): close it and do nothing else.
    pub closing: bool,
}

/// What the code host can do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCapabilities {
    pub pull_requests: bool,
    pub drafts: bool,
}

impl HostCapabilities {
    /// A plain git remote: branches only.
    pub const GIT: HostCapabilities = HostCapabilities { pull_requests: false, drafts: false };
    /// GitHub, GitLab, Gitea, Bitbucket Data Center (8.18 and later; its adapter refuses a
    /// draft on older versions with advice): pull (merge) requests with drafts.
    pub const FORGE: HostCapabilities = HostCapabilities { pull_requests: true, drafts: true };
    /// A forge whose pull requests have no drafts.
    pub const FORGE_WITHOUT_DRAFTS: HostCapabilities = HostCapabilities { pull_requests: true, drafts: false };
}

/// The operations that take `changeset` where its current spec wants it, in order. An error
/// says why the spec cannot be applied as asked (and what to change).
pub fn plan(changeset: &ChangesetView, host: HostCapabilities) -> Result<Vec<Operation>, String> {
    if changeset.closing {
        return Ok(match changeset.external {
            External::Draft | External::Open | External::Pushed => vec![Operation::Close],
            External::Unpublished | External::Closed | External::Merged => Vec::new(),
        });
    }
    let Some(current) = &changeset.current else {
        // An imported pull request is not the batch change's to close: it is let go.
        if changeset.previous.as_ref().is_some_and(|previous| previous.imported) {
            return Ok(vec![Operation::Detach]);
        }
        // No spec wants it any more: close what is open, drop what never was.
        return Ok(match changeset.external {
            External::Unpublished => vec![Operation::Detach],
            External::Draft | External::Open | External::Pushed => vec![Operation::Close, Operation::Archive],
            External::Closed | External::Merged => vec![Operation::Archive],
        });
    };
    if current.imported {
        if !host.pull_requests {
            return Err("importChangesets needs a code host with pull requests".to_owned());
        }
        return Ok(if changeset.external == External::Unpublished { vec![Operation::Import] } else { Vec::new() });
    }
    if current.desired == Desired::Draft && host.pull_requests && !host.drafts {
        return Err("this code host has no draft pull requests: use `published: true` or `false` for its repositories".to_owned());
    }
    let mut operations = Vec::new();
    match changeset.external {
        External::Unpublished => match (current.desired, host.pull_requests) {
            (Desired::Unpublished, _) => {}
            (_, false) => operations.push(Operation::Push),
            (Desired::Draft, true) => operations.extend([Operation::Push, Operation::PublishDraft]),
            (Desired::Published, true) => operations.extend([Operation::Push, Operation::Publish]),
        },
        External::Merged => {}
        External::Pushed | External::Draft | External::Open | External::Closed => {
            if changeset.external == External::Closed {
                operations.push(Operation::Reopen);
            }
            let previous = changeset.previous.as_ref();
            let changed = |field: fn(&SpecView) -> &str| previous.is_none_or(|previous| field(previous) != field(current));
            // A new base needs a new commit on it; a new diff, message or author too.
            if changed(|spec| &spec.diff_digest) || changed(|spec| &spec.commit_message) || changed(|spec| &spec.author) || changed(|spec| &spec.base_ref) {
                operations.push(Operation::Push);
            }
            if host.pull_requests && (changed(|spec| &spec.title) || changed(|spec| &spec.body) || changed(|spec| &spec.base_ref)) {
                operations.push(Operation::Update);
            }
            // A published pull request is never turned back into a draft (hosts refuse it).
            if changeset.external == External::Draft && current.desired == Desired::Published {
                operations.push(Operation::Undraft);
            }
        }
    }
    Ok(operations)
}

/// How one new changeset spec, or one existing changeset, fares in an apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rewiring<S, C> {
    /// A spec with no changeset yet on its repository and branch: a new changeset.
    Create { spec: S },
    /// An existing changeset continued by a spec of the same repository and branch.
    Continue { changeset: C, spec: S },
    /// An existing changeset no spec produces any more.
    Retire { changeset: C },
}

/// A changeset's identity within a batch change: (repository id, head ref).
pub type ChangesetKey = (i64, String);

/// Matches new specs to the batch change's existing changesets by repository and branch (head
/// ref), as Sourcegraph's rewirer does: keys are `(repository id, head ref)`. The result is
/// ordered by key; retirements come with their key's position.
pub fn rewire<S: Clone, C: Clone>(specs: &[(ChangesetKey, S)], existing: &[(ChangesetKey, C)]) -> Vec<Rewiring<S, C>> {
    type Pair<'a, S, C> = (Option<&'a S>, Option<&'a C>);
    let mut by_key: BTreeMap<&ChangesetKey, Pair<'_, S, C>> = BTreeMap::new();
    for (key, spec) in specs {
        by_key.entry(key).or_default().0 = Some(spec);
    }
    for (key, changeset) in existing {
        by_key.entry(key).or_default().1 = Some(changeset);
    }
    by_key
        .into_values()
        .filter_map(|pair| match pair {
            (Some(spec), None) => Some(Rewiring::Create { spec: spec.clone() }),
            (Some(spec), Some(changeset)) => Some(Rewiring::Continue { changeset: changeset.clone(), spec: spec.clone() }),
            (None, Some(changeset)) => Some(Rewiring::Retire { changeset: changeset.clone() }),
            (None, None) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::Operation::*;
    use super::*;

    fn spec(desired: Desired) -> SpecView {
        SpecView {
            imported: false,
            desired,
            base_ref: "refs/heads/main".into(),
            title: "Fix".into(),
            body: "Body".into(),
            commit_message: "fix".into(),
            author: "Ada <ada@example.com>".into(),
            diff_digest: "d1".into(),
        }
    }

    fn changeset(external: External, previous: Option<SpecView>, current: Option<SpecView>) -> ChangesetView {
        ChangesetView { external, previous, current, closing: false }
    }

    /// (case, changeset, host, expected operations)
    fn cases() -> Vec<(&'static str, ChangesetView, HostCapabilities, Vec<Operation>)> {
        let published = spec(Desired::Published);
        let draft = spec(Desired::Draft);
        let retitled = SpecView { title: "Better fix".into(), ..published.clone() };
        let new_diff = SpecView { diff_digest: "d2".into(), ..published.clone() };
        let rebased = SpecView { base_ref: "refs/heads/develop".into(), ..published.clone() };
        vec![
            ("new, published", changeset(External::Unpublished, None, Some(published.clone())), HostCapabilities::FORGE, vec![Push, Publish]),
            ("new, draft", changeset(External::Unpublished, None, Some(draft.clone())), HostCapabilities::FORGE, vec![Push, PublishDraft]),
            ("new, unpublished", changeset(External::Unpublished, None, Some(spec(Desired::Unpublished))), HostCapabilities::FORGE, vec![]),
            ("new, plain git: the branch is the publication", changeset(External::Unpublished, None, Some(published.clone())), HostCapabilities::GIT, vec![Push]),
            ("new, plain git, draft: pushed all the same", changeset(External::Unpublished, None, Some(draft.clone())), HostCapabilities::GIT, vec![Push]),
            ("re-applied unchanged: nothing", changeset(External::Open, Some(published.clone()), Some(published.clone())), HostCapabilities::FORGE, vec![]),
            ("new title: update only", changeset(External::Open, Some(published.clone()), Some(retitled)), HostCapabilities::FORGE, vec![Update]),
            ("new diff: push only", changeset(External::Open, Some(published.clone()), Some(new_diff.clone())), HostCapabilities::FORGE, vec![Push]),
            ("new base: new commit and update", changeset(External::Open, Some(published.clone()), Some(rebased)), HostCapabilities::FORGE, vec![Push, Update]),
            ("draft now published: undraft", changeset(External::Draft, Some(draft.clone()), Some(published.clone())), HostCapabilities::FORGE, vec![Undraft]),
            ("open now draft: never back to draft", changeset(External::Open, Some(published.clone()), Some(draft.clone())), HostCapabilities::FORGE, vec![]),
            ("closed on the host but still wanted: reopen", changeset(External::Closed, Some(published.clone()), Some(published.clone())), HostCapabilities::FORGE, vec![Reopen]),
            ("merged: left alone", changeset(External::Merged, Some(published.clone()), Some(new_diff.clone())), HostCapabilities::FORGE, vec![]),
            ("pushed branch, new diff", changeset(External::Pushed, Some(published.clone()), Some(new_diff)), HostCapabilities::GIT, vec![Push]),
            ("no longer in the spec, open: close and archive", changeset(External::Open, Some(published.clone()), None), HostCapabilities::FORGE, vec![Close, Archive]),
            ("no longer in the spec, pushed branch: close (delete) and archive", changeset(External::Pushed, Some(published.clone()), None), HostCapabilities::GIT, vec![Close, Archive]),
            ("no longer in the spec, never published: detach", changeset(External::Unpublished, Some(spec(Desired::Unpublished)), None), HostCapabilities::FORGE, vec![Detach]),
            ("no longer in the spec, merged: archive", changeset(External::Merged, Some(published.clone()), None), HostCapabilities::FORGE, vec![Archive]),
            ("imported: tracked once", changeset(External::Unpublished, None, Some(SpecView { imported: true, ..spec(Desired::Unpublished) })), HostCapabilities::FORGE, vec![Import]),
            ("imported, no longer in the spec: let go, not closed", changeset(External::Open, Some(SpecView { imported: true, ..spec(Desired::Unpublished) }), None), HostCapabilities::FORGE, vec![Detach]),
            ("imported and tracked: nothing", changeset(External::Open, None, Some(SpecView { imported: true, ..spec(Desired::Unpublished) })), HostCapabilities::FORGE, vec![]),
            ("bulk close of an open pull request: close only", ChangesetView { closing: true, ..changeset(External::Open, Some(published.clone()), Some(published.clone())) }, HostCapabilities::FORGE, vec![Close]),
            ("bulk close of a draft: close only", ChangesetView { closing: true, ..changeset(External::Draft, Some(draft.clone()), Some(draft.clone())) }, HostCapabilities::FORGE, vec![Close]),
            ("bulk close of a pushed branch: delete it", ChangesetView { closing: true, ..changeset(External::Pushed, Some(published.clone()), Some(published.clone())) }, HostCapabilities::GIT, vec![Close]),
            ("bulk close of a merged one: nothing", ChangesetView { closing: true, ..changeset(External::Merged, Some(published.clone()), Some(published.clone())) }, HostCapabilities::FORGE, vec![]),
            ("after a crash between push and publish the plan is the same", changeset(External::Unpublished, Some(published.clone()), Some(published)), HostCapabilities::FORGE, vec![Push, Publish]),
        ]
    }

    #[test]
    fn plans_follow_sourcegraph() {
        for (case, changeset, host, expected) in cases() {
            assert_eq!(plan(&changeset, host), Ok(expected), "{case}");
        }
    }

    #[test]
    fn drafts_on_a_host_without_them_are_refused_with_advice() {
        let error = plan(&changeset(External::Unpublished, None, Some(spec(Desired::Draft))), HostCapabilities::FORGE_WITHOUT_DRAFTS).expect_err("no drafts");
        assert!(error.contains("no draft pull requests"), "{error}");
    }

    #[test]
    fn rewiring_matches_by_repository_and_branch() {
        let key = |repository: i64, branch: &str| (repository, format!("refs/heads/{branch}"));
        let specs = vec![(key(1, "fix"), "spec-1"), (key(2, "fix"), "spec-2"), (key(2, "fix-web"), "spec-2w")];
        let existing = vec![(key(2, "fix"), "cs-2"), (key(3, "fix"), "cs-3")];
        assert_eq!(
            rewire(&specs, &existing),
            vec![
                Rewiring::Create { spec: "spec-1" },
                Rewiring::Continue { changeset: "cs-2", spec: "spec-2" },
                Rewiring::Create { spec: "spec-2w" },
                Rewiring::Retire { changeset: "cs-3" },
            ]
        );
    }
}
