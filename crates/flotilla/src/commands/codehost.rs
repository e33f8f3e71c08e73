//! `flotilla codehost ...`: code host connections.

use std::process::ExitCode;

use anyhow::Context;
use flotilla_wire::api::{CodeHostInfo, CreateCodeHost};

use crate::cli::{CodehostAddArgs, CodehostRestrictArgs, JsonFlag};
use crate::client::Client;

pub async fn add(arguments: CodehostAddArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let path = match &arguments.path {
        Some(path) => Some(std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?.display().to_string()),
        None => None,
    };
    let created: CodeHostInfo = client
        .post("/api/v1/code-hosts", &CreateCodeHost { kind: arguments.kind, name: arguments.name, path, urls: arguments.urls })
        .await?;
    eprintln!("added code host {} ({}); its repositories are being mirrored: see `flotilla repos list`", created.name, created.kind);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(arguments: JsonFlag) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let hosts: Vec<CodeHostInfo> = client.get("/api/v1/code-hosts").await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&hosts)?);
    } else {
        for host in hosts {
            println!("{}\t{}\t{}", host.name, host.kind, host.url);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restrict(arguments: CodehostRestrictArgs) -> anyhow::Result<ExitCode> {
    if !arguments.everyone && arguments.users.is_empty() && arguments.orgs.is_empty() {
        anyhow::bail!("say who may read {}: --user USER and/or --org ORG (repeatable), or --everyone", arguments.name);
    }
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let hosts: Vec<CodeHostInfo> = client.get("/api/v1/code-hosts").await?;
    let host = hosts
        .iter()
        .find(|host| host.name == arguments.name)
        .with_context(|| format!("no code host named {}; see `flotilla codehost list`", arguments.name))?;
    let answer: serde_json::Value = client
        .put(&format!("/api/v1/code-hosts/{}/access", host.id), &serde_json::json!({ "users": arguments.users, "orgs": arguments.orgs }))
        .await?;
    if answer["everyone"] == true {
        eprintln!("everyone signed in may read the repositories of {}", arguments.name);
    } else {
        eprintln!(
            "only site admins, users [{}] and members of [{}] may read the repositories of {}",
            arguments.users.join(", "),
            arguments.orgs.join(", "),
            arguments.name
        );
    }
    Ok(ExitCode::SUCCESS)
}
