//! The server's side of forge code hosts (GitHub, GitLab, Gitea/Forgejo and Bitbucket Server):
//! one adapter per connection and credential, shared by everything the server does on that host
//! (listing repositories for mirrors, the reconciler's pull requests), so all of it spends one
//! rate-limit budget.
//!
//! Adapters are built on first use from the connection's configuration and a decrypted
//! credential (the acting user's own, or the connection's), one per credential.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotilla_codehost::{
    BitbucketServer, BitbucketServerConfig, CodeHost, GitHub, GitHubConfig, GitLab, GitLabConfig, Gitea, GiteaConfig, RepositoryRef, RepositorySelection,
};
use flotilla_store::{CodeHost as CodeHostRow, CodeHostId, CodeHostKind, EncryptedCredential, UserId};

use crate::SharedState;

/// Adapters by code host connection and credential (its ciphertext), so each credential has
/// one rate-limit budget however many workers use it.
#[derive(Default)]
pub struct Forges {
    adapters: Mutex<HashMap<AdapterKey, Arc<dyn CodeHost>>>,
}

/// A connection and a credential's ciphertext.
type AdapterKey = (CodeHostId, Vec<u8>);

impl Forges {
    /// The adapter acting with the connection's own credential.
    pub fn adapter(&self, state: &SharedState, host: &CodeHostRow) -> Result<Arc<dyn CodeHost>, String> {
        match (&host.credential_ciphertext, &host.credential_nonce) {
            (Some(ciphertext), Some(nonce)) => {
                let credential = EncryptedCredential { ciphertext: ciphertext.clone(), nonce: nonce.clone(), username: host.credential_username.clone() };
                self.adapter_with(state, host, &credential)
            }
            _ => Err(format!("code host {} has no credential: set one with `flotilla codehost credential set {}`", host.name, host.name)),
        }
    }

    /// The adapter acting for `user`: with their own credential for this host if they set one
    /// (their pull requests are then theirs), else the connection's, as Sourcegraph does.
    pub async fn adapter_for_user(&self, state: &SharedState, host: &CodeHostRow, user: Option<UserId>) -> Result<(Arc<dyn CodeHost>, EncryptedCredential), String> {
        let acting = match user {
            Some(user) => state.store.credential_to_act_with(user, host.id).await.map_err(|error| error.to_string())?,
            None => None,
        };
        let credential = match acting {
            Some(acting) => acting.credential,
            None => match (&host.credential_ciphertext, &host.credential_nonce) {
                (Some(ciphertext), Some(nonce)) => EncryptedCredential { ciphertext: ciphertext.clone(), nonce: nonce.clone(), username: host.credential_username.clone() },
                _ => return Err(format!("no credential for code host {}: set one with `flotilla codehost credential set {} [--mine]`", host.name, host.name)),
            },
        };
        Ok((self.adapter_with(state, host, &credential)?, credential))
    }

    fn adapter_with(&self, state: &SharedState, host: &CodeHostRow, credential: &EncryptedCredential) -> Result<Arc<dyn CodeHost>, String> {
        let key = (host.id, credential.ciphertext.clone());
        let mut adapters = self.adapters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(adapter) = adapters.get(&key) {
            return Ok(adapter.clone());
        }
        let token = state
            .config
            .secret_key
            .decrypt(&credential.ciphertext, &credential.nonce)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|error| format!("a credential of code host {} cannot be read ({error}); set it again with `flotilla codehost credential set {}`", host.name, host.name))?;
        let timeout = state.config.code_host_request_timeout;
        let adapter: Arc<dyn CodeHost> = match host.kind {
            CodeHostKind::Github => {
                let config = GitHubConfig { request_timeout: timeout, ..GitHubConfig::new(host.url.clone(), token) };
                Arc::new(GitHub::new(config).map_err(|error| error.to_string())?)
            }
            CodeHostKind::Gitlab => {
                let config = GitLabConfig { request_timeout: timeout, ..GitLabConfig::new(host.url.clone(), token) };
                Arc::new(GitLab::new(config).map_err(|error| error.to_string())?)
            }
            CodeHostKind::Gitea => {
                let config = GiteaConfig { request_timeout: timeout, ..GiteaConfig::new(host.url.clone(), token) };
                Arc::new(Gitea::new(config).map_err(|error| error.to_string())?)
            }
            CodeHostKind::BitbucketServer => {
                let config = BitbucketServerConfig { request_timeout: timeout, ..BitbucketServerConfig::new(host.url.clone(), token) };
                Arc::new(BitbucketServer::new(config).map_err(|error| error.to_string())?)
            }
            other => return Err(format!("{} code hosts have no pull requests; use a forge kind", other.as_str())),
        };
        adapters.insert(key, adapter.clone());
        Ok(adapter)
    }
}

/// Which repositories a forge connection mirrors: its `org`, or its `repos` list.
pub fn selection(host: &CodeHostRow) -> Result<RepositorySelection, String> {
    if let Some(org) = host.config.get("org").and_then(|org| org.as_str()) {
        return Ok(RepositorySelection::Organization(org.to_owned()));
    }
    let repos: Vec<RepositoryRef> = host
        .config
        .get("repos")
        .and_then(|repos| repos.as_array())
        .map(|repos| repos.iter().filter_map(|repo| repo.as_str()).filter_map(RepositoryRef::parse).collect())
        .unwrap_or_default();
    if repos.is_empty() {
        return Err(format!("code host {} lists no repositories: add it again with --org ORG or --repos owner/a,owner/b", host.name));
    }
    Ok(RepositorySelection::Explicit(repos))
}

/// A mirrored repository's name on its forge: `NAME/owner/repo` → `owner/repo`.
pub fn repository_ref(host: &CodeHostRow, repository_name: &str) -> Option<RepositoryRef> {
    RepositoryRef::parse(repository_name.strip_prefix(&format!("{}/", host.name))?)
}
