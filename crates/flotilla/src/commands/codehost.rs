//! `flotilla codehost ...`: code host connections and their credentials.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use flotilla_wire::api::{CodeHostCredentialInfo, CodeHostInfo, CreateCodeHost, SetCodeHostCredential, SetWebhookSecret, WebhookSecretInfo};

use crate::cli::{CodehostAddArgs, CodehostCredentialNameArgs, CodehostCredentialSetArgs, CodehostRestrictArgs, CodehostWebhookNameArgs, CodehostWebhookSetArgs, JsonFlag};
use crate::client::Client;

/// A token from standard input, without the trailing newline `echo` or a file adds.
fn token_from_stdin() -> anyhow::Result<String> {
    let mut token = String::new();
    std::io::stdin().read_to_string(&mut token).context("reading the token from standard input")?;
    let token = token.strip_suffix('\n').map(|token| token.strip_suffix('\r').unwrap_or(token)).unwrap_or(&token).to_owned();
    if token.is_empty() {
        bail!("no token on standard input; pipe it in, e.g. `printf %s \"$TOKEN\" | flotilla codehost credential set NAME`");
    }
    Ok(token)
}

/// The code host named `name` among those the caller may read.
async fn find_host(client: &Client, name: &str) -> anyhow::Result<CodeHostInfo> {
    let hosts: Vec<CodeHostInfo> = client.get("/api/v1/code-hosts").await?;
    hosts.into_iter().find(|host| host.name == name).with_context(|| format!("no code host named {name}; see `flotilla codehost list`"))
}

fn credential_path(host: &CodeHostInfo, mine: bool) -> String {
    if mine { format!("/api/v1/code-hosts/{}/credentials/me", host.id) } else { format!("/api/v1/code-hosts/{}/credential", host.id) }
}

pub async fn set_credential(arguments: CodehostCredentialSetArgs) -> anyhow::Result<ExitCode> {
    let token = token_from_stdin()?;
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let host = find_host(&client, &arguments.name).await?;
    let saved: CodeHostCredentialInfo =
        client.put(&credential_path(&host, arguments.mine), &SetCodeHostCredential { token, username: arguments.username }).await?;
    if arguments.mine {
        eprintln!("saved your credential for {}; changesets you publish there are opened with it", saved.code_host);
    } else {
        eprintln!("saved the credential of {}; its repositories are synced with it: see `flotilla repos list`", saved.code_host);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete_credential(arguments: CodehostCredentialNameArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let host = find_host(&client, &arguments.name).await?;
    client.delete(&credential_path(&host, arguments.mine)).await?;
    if arguments.mine {
        eprintln!("deleted your credential for {}", host.name);
    } else {
        eprintln!("deleted the credential of {}", host.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list_credentials(arguments: JsonFlag) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let credentials: Vec<CodeHostCredentialInfo> = client.get("/api/v1/code-host-credentials").await?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&credentials)?);
    } else {
        for credential in credentials {
            println!("{}\t{}\t{}", credential.code_host, credential.scope, credential.username.as_deref().unwrap_or("-"));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn add(arguments: CodehostAddArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let path = match &arguments.path {
        Some(path) => Some(std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?.display().to_string()),
        None => None,
    };
    let credential = if arguments.token_stdin { Some(SetCodeHostCredential { token: token_from_stdin()?, username: arguments.username }) } else { None };
    let name = match (&arguments.name, &arguments.api_url) {
        (Some(name), _) => name.clone(),
        (None, Some(api_url)) => {
            let host = api_url.split_once("://").map_or(api_url.as_str(), |(_, rest)| rest).split(['/', ':']).next().unwrap_or_default();
            host.strip_prefix("api.").unwrap_or(host).to_owned()
        }
        (None, None) => anyhow::bail!("give the code host a --name (the prefix of its repositories' names)"),
    };
    let request = CreateCodeHost {
        kind: arguments.kind,
        name,
        path,
        urls: arguments.urls,
        url: arguments.api_url,
        org: arguments.org,
        repos: arguments.repos,
        credential,
    };
    let created: CodeHostInfo = client.post("/api/v1/code-hosts", &request).await?;
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
            let credential = match (host.has_credential, host.has_my_credential) {
                (_, true) => "credential: yours",
                (true, false) => "credential: connection",
                (false, false) => "credential: none",
            };
            println!("{}\t{}\t{}\t{credential}", host.name, host.kind, host.url);
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

fn webhook_secret_path(host: &CodeHostInfo) -> String {
    format!("/api/v1/code-hosts/{}/webhook-secret", host.id)
}

/// The header each forge proves its deliveries with, for the printed instructions.
fn proof_of(kind: &str) -> &'static str {
    match kind {
        "gitlab" => "the secret token (sent as X-Gitlab-Token)",
        "gitea" => "the secret (signed as X-Gitea-Signature)",
        "bitbucket-server" => "the secret (signed as X-Hub-Signature)",
        _ => "the secret (signed as X-Hub-Signature-256), content type application/json",
    }
}

pub async fn set_webhook_secret(arguments: CodehostWebhookSetArgs) -> anyhow::Result<ExitCode> {
    let mut secret = String::new();
    std::io::stdin().read_to_string(&mut secret).context("reading the webhook secret from standard input")?;
    let secret = secret.strip_suffix('\n').map(|secret| secret.strip_suffix('\r').unwrap_or(secret)).unwrap_or(&secret).to_owned();
    if secret.is_empty() {
        bail!("no secret on standard input; pipe one in, e.g. `openssl rand -hex 32 | flotilla codehost webhook set {} --secret-stdin`", arguments.name);
    }
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let host = find_host(&client, &arguments.name).await?;
    let saved: WebhookSecretInfo = client.put(&webhook_secret_path(&host), &SetWebhookSecret { secret }).await?;
    let base = arguments.public_url.as_deref().unwrap_or(client.base_url()).trim_end_matches('/');
    let url = format!("{base}{}", saved.path);
    if arguments.json {
        let mut answer = serde_json::to_value(&saved)?;
        answer["url"] = serde_json::Value::String(url);
        println!("{}", serde_json::to_string_pretty(&answer)?);
    } else {
        println!("{url}");
        eprintln!(
            "saved the webhook secret of {}. On the forge, add a webhook with the URL above, {}, and these events: {}",
            saved.code_host,
            proof_of(&saved.kind),
            saved.events.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn delete_webhook_secret(arguments: CodehostWebhookNameArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(arguments.connection.url, arguments.connection.token)?;
    let host = find_host(&client, &arguments.name).await?;
    client.delete(&webhook_secret_path(&host)).await?;
    eprintln!("deleted the webhook secret of {}; its deliveries are refused until one is set again", host.name);
    Ok(ExitCode::SUCCESS)
}
