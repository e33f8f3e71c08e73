//! The code host API every forge adapter implements, and the adapters themselves.
//!
//! The reconciler speaks only the types in [`types`] and the [`CodeHost`] trait, so the same
//! plan drives GitHub, GitLab, Gitea or Bitbucket. Each adapter owns its forge's wire format,
//! its pagination and its rate-limit rules; every call an adapter makes goes through one
//! [`RateLimitBudget`] per credential, so everything the server does on a host shares the pace
//! the host allows. Errors say whether retrying can help ([`CodeHostError`]).

pub mod bitbucket_server;
/// Implements [`CodeHost`] for an adapter by boxing its inherent async methods, which every
/// adapter names alike (`list_repositories_impl`, `get_repository_impl`, `find_by_head_impl`,
/// `load_impl`, `create_impl`, `update_impl`, `ready_impl`, `merge_impl`, `comment_impl`): the
/// trait object needs boxed futures, the adapters are clearer as plain `async fn`s.
#[macro_export]
#[doc(hidden)]
macro_rules! code_host_by_inherent_methods {
    ($adapter:ty) => {
        impl $crate::CodeHost for $adapter {
            fn list_repositories<'a>(
                &'a self,
                selection: &'a $crate::RepositorySelection,
            ) -> $crate::BoxFuture<'a, Result<Vec<$crate::HostedRepository>, $crate::CodeHostError>> {
                Box::pin(self.list_repositories_impl(selection))
            }

            fn get_repository<'a>(&'a self, repository: &'a $crate::RepositoryRef) -> $crate::BoxFuture<'a, Result<$crate::HostedRepository, $crate::CodeHostError>> {
                Box::pin(self.get_repository_impl(repository))
            }

            fn find_changeset_by_head<'a>(
                &'a self,
                repository: &'a $crate::RepositoryRef,
                head_ref: &'a str,
            ) -> $crate::BoxFuture<'a, Result<Option<$crate::ExternalChangeset>, $crate::CodeHostError>> {
                Box::pin(self.find_by_head_impl(repository, head_ref))
            }

            fn load_changeset<'a>(&'a self, repository: &'a $crate::RepositoryRef, number: u64) -> $crate::BoxFuture<'a, Result<$crate::ExternalChangeset, $crate::CodeHostError>> {
                Box::pin(self.load_impl(repository, number))
            }

            fn create_changeset<'a>(&'a self, request: &'a $crate::ChangesetRequest) -> $crate::BoxFuture<'a, Result<$crate::ExternalChangeset, $crate::CodeHostError>> {
                Box::pin(self.create_impl(request))
            }

            fn update_changeset<'a>(
                &'a self,
                repository: &'a $crate::RepositoryRef,
                number: u64,
                update: &'a $crate::ChangesetUpdate,
            ) -> $crate::BoxFuture<'a, Result<$crate::ExternalChangeset, $crate::CodeHostError>> {
                Box::pin(self.update_impl(repository, number, update))
            }

            fn mark_ready_for_review<'a>(&'a self, repository: &'a $crate::RepositoryRef, number: u64) -> $crate::BoxFuture<'a, Result<$crate::ExternalChangeset, $crate::CodeHostError>> {
                Box::pin(self.ready_impl(repository, number))
            }

            fn merge_changeset<'a>(
                &'a self,
                repository: &'a $crate::RepositoryRef,
                number: u64,
                method: $crate::MergeMethod,
            ) -> $crate::BoxFuture<'a, Result<$crate::ExternalChangeset, $crate::CodeHostError>> {
                Box::pin(self.merge_impl(repository, number, method))
            }

            fn comment<'a>(&'a self, repository: &'a $crate::RepositoryRef, number: u64, body: &'a str) -> $crate::BoxFuture<'a, Result<(), $crate::CodeHostError>> {
                Box::pin(self.comment_impl(repository, number, body))
            }
        }
    };
}

pub mod budget;
pub mod error;
pub mod gitea;
pub mod github;
pub mod gitlab;
mod transport;
pub mod types;

use std::future::Future;
use std::pin::Pin;

pub use bitbucket_server::{BitbucketServer, BitbucketServerConfig};
pub use budget::{RateLimitBudget, RateLimitHeaders, RetryPolicy};
pub use error::{CodeHostError, PermanentKind};
pub use gitea::{Gitea, GiteaConfig};
pub use github::{GitHub, GitHubConfig};
pub use gitlab::{GitLab, GitLabConfig};
pub use types::{
    ChangesetRequest, ChangesetUpdate, CheckState, ExternalChangeset, ExternalState,
    HostedRepository, MergeMethod, RepositoryRef, RepositorySelection, ReviewState,
};

/// A boxed future, so that [`CodeHost`] can be used as a trait object (`Box<dyn CodeHost>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the reconciler and the mirrors need from a code host. Every method is one logical
/// operation; retries of transient failures and rate-limit waits happen inside.
pub trait CodeHost: Send + Sync {
    /// The repositories of an organisation (every page), or the listed ones.
    fn list_repositories<'a>(
        &'a self,
        selection: &'a RepositorySelection,
    ) -> BoxFuture<'a, Result<Vec<HostedRepository>, CodeHostError>>;

    /// One repository.
    fn get_repository<'a>(
        &'a self,
        repository: &'a RepositoryRef,
    ) -> BoxFuture<'a, Result<HostedRepository, CodeHostError>>;

    /// The most recent changeset (in any state) whose head is `head_ref`, if there is one.
    /// This is what makes publishing crash-safe: look before opening, never open twice.
    fn find_changeset_by_head<'a>(
        &'a self,
        repository: &'a RepositoryRef,
        head_ref: &'a str,
    ) -> BoxFuture<'a, Result<Option<ExternalChangeset>, CodeHostError>>;

    /// A changeset with its review and check states.
    fn load_changeset<'a>(
        &'a self,
        repository: &'a RepositoryRef,
        number: u64,
    ) -> BoxFuture<'a, Result<ExternalChangeset, CodeHostError>>;

    /// Opens a changeset (a draft when `request.draft`). Review and check states of the
    /// returned changeset are `Pending` and `Unknown`: a new pull request has neither yet.
    fn create_changeset<'a>(
        &'a self,
        request: &'a ChangesetRequest,
    ) -> BoxFuture<'a, Result<ExternalChangeset, CodeHostError>>;

    /// Changes title, body, base or open/closed state.
    fn update_changeset<'a>(
        &'a self,
        repository: &'a RepositoryRef,
        number: u64,
        update: &'a ChangesetUpdate,
    ) -> BoxFuture<'a, Result<ExternalChangeset, CodeHostError>>;

    /// Turns a draft into a changeset ready for review.
    fn mark_ready_for_review<'a>(
        &'a self,
        repository: &'a RepositoryRef,
        number: u64,
    ) -> BoxFuture<'a, Result<ExternalChangeset, CodeHostError>>;

    /// Merges a changeset.
    fn merge_changeset<'a>(
        &'a self,
        repository: &'a RepositoryRef,
        number: u64,
        method: MergeMethod,
    ) -> BoxFuture<'a, Result<ExternalChangeset, CodeHostError>>;

    /// Adds a comment to a changeset.
    fn comment<'a>(
        &'a self,
        repository: &'a RepositoryRef,
        number: u64,
        body: &'a str,
    ) -> BoxFuture<'a, Result<(), CodeHostError>>;
}
