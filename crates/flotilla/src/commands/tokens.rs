//! `flotilla tokens ...`: access tokens.

use std::process::ExitCode;

use crate::cli::{JsonFlag, TokenCreateArgs, TokenRevokeArgs};
use crate::client::Client;

pub async fn create(arguments: TokenCreateArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let created: serde_json::Value =
        client.post("/api/v1/tokens", &serde_json::json!({ "note": arguments.note, "scope": arguments.scope })).await?;
    println!("{}", created["token"].as_str().unwrap_or_default());
    eprintln!("token {} created ({}); it is shown only now: keep it somewhere safe", created["id"], created["scope"].as_str().unwrap_or("?"));
    Ok(ExitCode::SUCCESS)
}

pub async fn list(arguments: JsonFlag) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let tokens: Vec<serde_json::Value> = client.get("/api/v1/tokens").await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&tokens)?);
    } else {
        for token in &tokens {
            let state = if token["revoked"] == true { "revoked" } else { "active" };
            println!("{}\t{}\t{}\t{}", token["id"], token["scope"].as_str().unwrap_or("?"), state, token["note"].as_str().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(arguments: TokenRevokeArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    client.delete(&format!("/api/v1/tokens/{}", arguments.id)).await?;
    eprintln!("token {} revoked", arguments.id);
    Ok(ExitCode::SUCCESS)
}
