//! `flotilla repos ...`: the mirrored repositories.

use std::process::ExitCode;

use flotilla_wire::api::{RepositoryInfo, SyncRequest};

use crate::cli::{JsonFlag, ReposSyncArgs};
use crate::client::Client;

pub async fn list(arguments: JsonFlag) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let mut all: Vec<RepositoryInfo> = Vec::new();
    loop {
        let path = match all.last() {
            Some(last) => format!("/api/v1/repositories?limit=1000&after={}", urlencode(&last.name)),
            None => "/api/v1/repositories?limit=1000".to_owned(),
        };
        let page: Vec<RepositoryInfo> = client.get(&path).await?;
        let done = page.len() < 1000;
        all.extend(page);
        if done {
            break;
        }
    }
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&all)?);
    } else {
        for repository in &all {
            let detail = repository.last_error.clone().unwrap_or_else(|| repository.default_branch.clone().unwrap_or_default());
            println!("{}\t{}\t{}", repository.name, repository.mirror_state, detail);
        }
        eprintln!("{} repositories", all.len());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn sync(arguments: ReposSyncArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    eprintln!("syncing {}...", arguments.name.as_deref().unwrap_or("every repository"));
    client.post_empty("/api/v1/repositories/sync", &SyncRequest { name: arguments.name, wait: true }).await?;
    eprintln!("done; see `flotilla repos list`");
    Ok(ExitCode::SUCCESS)
}

/// Percent-encodes a query parameter value.
pub fn urlencode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => encoded.push(byte as char),
            other => encoded.push_str(&format!("%{other:02X}")),
        }
    }
    encoded
}
