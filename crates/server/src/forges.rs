//! The server's side of forge code hosts (GitHub and GitLab today): one adapter per connection and
//! credential, shared by everything the server does on that host (listing repositories for
//! mirrors, the reconciler's pull requests), so all of it spends one rate-limit budget.
//!
//! Adapters are built on first use from the connection's configuration and its decrypted
//! credential, and rebuilt when the credential changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flotilla_codehost::{CodeHost, GitHub, GitHubConfig, GitLab, GitLabConfig, RepositoryRef, RepositorySelection};
use flotilla_store::{CodeHost as CodeHostRow, CodeHostId, CodeHostKind};

use crate::SharedState;

/// An adapter and the encrypted credential it was built with.
type BuiltAdapter = (Vec<u8>, Arc<dyn CodeHost>);

/// Adapters by code host connection.
#[derive(Default)]
pub struct Forges {
    adapters: Mutex<HashMap<CodeHostId, BuiltAdapter>>,
}

impl Forges {
    /// The adapter for a forge connection; an error says what to fix (kind, credential).
    pub fn adapter(&self, state: &SharedState, host: &CodeHostRow) -> Result<Arc<dyn CodeHost>, String> {
        let ciphertext = host.credential_ciphertext.clone().unwrap_or_default();
        let mut adapters = self.adapters.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((built_with, adapter)) = adapters.get(&host.id)
            && *built_with == ciphertext
        {
            return Ok(adapter.clone());
        }
        let token = token(state, host)?;
        let adapter: Arc<dyn CodeHost> = match host.kind {
            CodeHostKind::Github => Arc::new(GitHub::new(GitHubConfig::new(host.url.clone(), token)).map_err(|error| error.to_string())?),
            CodeHostKind::Gitlab => Arc::new(GitLab::new(GitLabConfig::new(host.url.clone(), token)).map_err(|error| error.to_string())?),
            other => return Err(format!("{} code hosts are not supported yet; GitHub and GitLab are", other.as_str())),
        };
        adapters.insert(host.id, (ciphertext, adapter.clone()));
        Ok(adapter)
    }
}

/// The connection's token, decrypted.
fn token(state: &SharedState, host: &CodeHostRow) -> Result<String, String> {
    match (&host.credential_ciphertext, &host.credential_nonce) {
        (Some(ciphertext), Some(nonce)) => state
            .config
            .secret_key
            .decrypt(ciphertext, nonce)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .map_err(|error| format!("the credential of code host {} cannot be read ({error}); set it again with `flotilla codehost credential set {}`", host.name, host.name)),
        _ => Err(format!("code host {} has no credential: set one with `flotilla codehost credential set {}`", host.name, host.name)),
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
