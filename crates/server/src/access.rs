//! Who may read and change what: the one place the server's permission rules live.
//!
//! The rules follow Sourcegraph's (see docs/authorization.md for the full matrix):
//! * Acting as a **site admin** needs a site admin's *site-admin-scoped* token (or web
//!   session); a site admin's user-scoped token acts as an ordinary user, so a token handed to
//!   a script cannot do more than the script needs.
//! * **Batch specs** are readable by every signed-in user. They may be changed (cancel, retry)
//!   by their creator, site admins, the user whose namespace holds them, the admins of the org
//!   whose namespace holds them, and that org's members when the org allows it
//!   (`membersCanAdminister`, true by default as in Sourcegraph).
//! * **Repositories** are readable through their code host connection: unrestricted
//!   connections are open to everyone signed in; a restricted one only to the users and org
//!   members it names. An unreadable repository is treated everywhere as if it did not exist
//!   (search, resolution, workspace lists, logs, changeset specs), so its name never leaks.

use std::collections::{HashMap, HashSet};

use flotilla_store::{AuthenticatedToken, BatchSpec, CodeHost, CodeHostId, Namespace, OrgId, OrgRole, Repository, RepositoryId, StoreError, TokenScope, User, UserId};
use serde::{Deserialize, Serialize};

use crate::SharedState;
use crate::error::{ApiError, ApiResult};

/// Whether the caller acts as a site admin right now.
pub fn is_site_admin(caller: &AuthenticatedToken) -> bool {
    caller.user.site_admin && caller.scope == TokenScope::SiteAdmin
}

pub fn require_site_admin(caller: &AuthenticatedToken) -> ApiResult<()> {
    if is_site_admin(caller) {
        Ok(())
    } else if caller.user.site_admin {
        Err(ApiError::forbidden("this needs a site-admin token: create one with `flotilla tokens create --scope site-admin`"))
    } else {
        Err(ApiError::forbidden("only site admins can do this; ask one of your site admins"))
    }
}

/// Who may read a code host connection's repositories, as stored in `code_hosts.restricted_to`.
/// Both lists empty (or no document at all) means everyone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeHostAccess {
    #[serde(default)]
    pub users: Vec<UserId>,
    #[serde(default)]
    pub orgs: Vec<OrgId>,
}

impl CodeHostAccess {
    /// Reads a code host's stored restriction; an unreadable document restricts to nobody but
    /// site admins rather than opening the host to everyone.
    pub fn of(host: &CodeHost) -> Option<CodeHostAccess> {
        let document = host.restricted_to.as_ref()?;
        let access = serde_json::from_value::<CodeHostAccess>(document.clone()).unwrap_or_else(|error| {
            tracing::error!(code_host.id = host.id.0, error = %error, "unreadable code host restriction; only site admins can read it");
            CodeHostAccess { users: Vec::new(), orgs: vec![OrgId(-1)] }
        });
        (!access.users.is_empty() || !access.orgs.is_empty()).then_some(access)
    }
}

/// The repositories one user may read, computed once per request.
#[derive(Clone, Debug)]
pub struct RepositoryVisibility {
    /// `None`: everything (site admins).
    readable_hosts: Option<HashSet<CodeHostId>>,
    /// Per-repository answers already looked up (repository → code host).
    hosts_of_repositories: HashMap<RepositoryId, CodeHostId>,
}

impl RepositoryVisibility {
    /// Everything: for site admins.
    pub fn everything() -> RepositoryVisibility {
        RepositoryVisibility { readable_hosts: None, hosts_of_repositories: HashMap::new() }
    }

    /// What the caller may read.
    pub async fn for_caller(state: &SharedState, caller: &AuthenticatedToken) -> Result<RepositoryVisibility, StoreError> {
        RepositoryVisibility::for_user(state, &caller.user, is_site_admin(caller)).await
    }

    /// What `user` may read; `site_admin` sees everything. Resolution uses this for a spec's
    /// creator (with the creator's own site-admin flag, as there is no token then).
    pub async fn for_user(state: &SharedState, user: &User, site_admin: bool) -> Result<RepositoryVisibility, StoreError> {
        if site_admin {
            return Ok(RepositoryVisibility::everything());
        }
        let orgs: HashSet<OrgId> = state.store.list_user_orgs(user.id).await?.into_iter().map(|member| member.org_id).collect();
        let readable_hosts = state
            .store
            .list_code_hosts()
            .await?
            .into_iter()
            .filter(|host| match CodeHostAccess::of(host) {
                None => true,
                Some(access) => access.users.contains(&user.id) || access.orgs.iter().any(|org| orgs.contains(org)),
            })
            .map(|host| host.id)
            .collect();
        Ok(RepositoryVisibility { readable_hosts: Some(readable_hosts), hosts_of_repositories: HashMap::new() })
    }

    pub fn sees_everything(&self) -> bool {
        self.readable_hosts.is_none()
    }

    pub fn can_read(&self, repository: &Repository) -> bool {
        self.can_read_host(repository.code_host_id)
    }

    pub fn can_read_host(&self, code_host_id: CodeHostId) -> bool {
        self.readable_hosts.as_ref().is_none_or(|hosts| hosts.contains(&code_host_id))
    }

    /// Whether the repository with this id is readable, looking its code host up once.
    pub async fn can_read_id(&mut self, state: &SharedState, repository_id: RepositoryId) -> Result<bool, StoreError> {
        if self.sees_everything() {
            return Ok(true);
        }
        let host = match self.hosts_of_repositories.get(&repository_id) {
            Some(host) => *host,
            None => {
                let host = state.store.get_repository(repository_id).await?.code_host_id;
                self.hosts_of_repositories.insert(repository_id, host);
                host
            }
        };
        Ok(self.can_read_host(host))
    }
}

impl RepositoryVisibility {
    /// The names of the readable repositories among `ids`, looked up in one query: what a page
    /// of workspaces, changeset specs or changesets shows (the rest are left out).
    pub async fn readable_names(
        &self,
        state: &SharedState,
        ids: impl IntoIterator<Item = RepositoryId>,
    ) -> Result<HashMap<RepositoryId, String>, StoreError> {
        let mut ids: Vec<RepositoryId> = ids.into_iter().collect();
        ids.sort();
        ids.dedup();
        Ok(state
            .store
            .get_repositories(&ids)
            .await?
            .into_iter()
            .filter(|repository| self.can_read(repository))
            .map(|repository| (repository.id, repository.name))
            .collect())
    }
}

/// Checks the caller may change (cancel, retry, apply) the batch spec, with a 403 that says who can.
pub async fn require_can_administer(state: &SharedState, caller: &AuthenticatedToken, spec: &BatchSpec) -> ApiResult<()> {
    require_can_change(state, caller, Some(spec.creator_user_id), spec.namespace()?, &format!("batch spec {}", spec.rand_id)).await
}

/// Checks the caller may change (close, delete) the batch change.
pub async fn require_can_administer_batch_change(state: &SharedState, caller: &AuthenticatedToken, batch_change: &flotilla_store::BatchChange) -> ApiResult<()> {
    require_can_change(state, caller, batch_change.creator_user_id, batch_change.namespace()?, &format!("batch change {}", batch_change.name)).await
}

/// Sourcegraph's rule for changing what lives in a namespace: its creator, site admins, the
/// namespace's user, the org's admins, and its members when the org allows it.
async fn require_can_change(state: &SharedState, caller: &AuthenticatedToken, creator: Option<UserId>, namespace: Namespace, what: &str) -> ApiResult<()> {
    if is_site_admin(caller) || creator == Some(caller.user.id) {
        return Ok(());
    }
    match namespace {
        Namespace::User(user) if user == caller.user.id => Ok(()),
        Namespace::User(_) => Err(ApiError::forbidden(format!("only the creator of {what} and site admins can change it; ask them"))),
        Namespace::Org(org_id) => {
            let org = state.store.get_org(org_id).await?;
            match state.store.get_org_role(org_id, caller.user.id).await? {
                Some(OrgRole::Admin) => Ok(()),
                Some(OrgRole::Member) if org.members_can_administer_batch_changes => Ok(()),
                Some(OrgRole::Member) => Err(ApiError::forbidden(format!(
                    "organization {} lets only its admins change its batch changes; ask an admin of {}, or ask them to run `flotilla orgs set {} --members-can-administer true`",
                    org.name, org.name, org.name
                ))),
                None => Err(ApiError::forbidden(format!(
                    "{what} belongs to organization {}; only its creator, admins of {} (and members, when it allows) and site admins can change it",
                    org.name, org.name
                ))),
            }
        }
    }
}

/// Checks the caller administers the org (org admin or site admin).
pub async fn require_org_admin(state: &SharedState, caller: &AuthenticatedToken, org_id: OrgId, org_name: &str) -> ApiResult<()> {
    if is_site_admin(caller) || state.store.get_org_role(org_id, caller.user.id).await? == Some(OrgRole::Admin) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("only admins of {org_name} (and site admins) can do this; ask an admin of {org_name}")))
    }
}
