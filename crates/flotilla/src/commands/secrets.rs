//! `flotilla secrets ...`: executor secrets.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::repos::urlencode;
use crate::cli::{SecretNameArgs, SecretScopeArgs};
use crate::client::Client;

fn query(scope: &SecretScopeArgs) -> String {
    scope.namespace.as_deref().map(|namespace| format!("?namespace={}", urlencode(namespace))).unwrap_or_default()
}

pub async fn set(arguments: SecretNameArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.scope.connection.url.clone(), arguments.scope.connection.token.clone())?;
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value).context("reading the secret's value from standard input")?;
    // A trailing newline from `echo` or a file is almost never part of a token.
    let value = value.strip_suffix('\n').map(|value| value.strip_suffix('\r').unwrap_or(value)).unwrap_or(&value).to_owned();
    if value.is_empty() {
        bail!("no value on standard input; pipe the secret in, e.g. `printf %s \"$TOKEN\" | flotilla secrets set NAME`");
    }
    let path = format!("/api/v1/secrets/{}{}", urlencode(&arguments.name), query(&arguments.scope));
    let saved: serde_json::Value = client.put(&path, &serde_json::json!({ "value": value })).await?;
    eprintln!("saved secret {} in {} (version {})", arguments.name, saved["namespace"].as_str().unwrap_or("?"), saved["version"]);
    Ok(ExitCode::SUCCESS)
}

pub async fn list(arguments: SecretScopeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url.clone(), arguments.connection.token.clone())?;
    let secrets: Vec<serde_json::Value> = client.get(&format!("/api/v1/secrets{}", query(&arguments))).await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&secrets)?);
    } else {
        for secret in &secrets {
            println!("{}\t{}\tversion {}", secret["name"].as_str().unwrap_or("?"), secret["namespace"].as_str().unwrap_or("?"), secret["version"]);
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete(arguments: SecretNameArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.scope.connection.url.clone(), arguments.scope.connection.token.clone())?;
    client.delete(&format!("/api/v1/secrets/{}{}", urlencode(&arguments.name), query(&arguments.scope))).await?;
    eprintln!("deleted secret {}", arguments.name);
    Ok(ExitCode::SUCCESS)
}
