//! `flotilla users ...`, `flotilla orgs ...` and `flotilla audit-log`: accounts through the
//! server's API. Results go to stdout (tab-separated, or JSON with `--json`), confirmations to
//! stderr.

use std::io::Read;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::repos::urlencode;
use crate::cli::{AuditLogArgs, JsonFlag, OrgCreateArgs, OrgMemberArgs, OrgNameArgs, OrgSetArgs, ServerConnection, UserCreateArgs, UserNameArgs};
use crate::client::Client;

fn client(connection: &ServerConnection) -> anyhow::Result<Client> {
    Client::new(connection.url.clone(), connection.token.clone())
}

/// Reads a password from standard input, without the trailing newline `echo` adds.
fn password_from_stdin() -> anyhow::Result<String> {
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value).context("reading the password from standard input")?;
    let value = value.strip_suffix('\n').map(|value| value.strip_suffix('\r').unwrap_or(value)).unwrap_or(&value).to_owned();
    if value.is_empty() {
        bail!("no password on standard input; pipe it in, e.g. `printf %s \"$PASSWORD\" | flotilla users set-password NAME`");
    }
    Ok(value)
}

fn text(value: &Value) -> &str {
    value.as_str().unwrap_or("")
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub async fn create_user(arguments: UserCreateArgs) -> anyhow::Result<ExitCode> {
    let client = client(&arguments.connection)?;
    let password = if arguments.password_stdin { Some(password_from_stdin()?) } else { None };
    let body = json!({
        "username": arguments.username,
        "email": arguments.email,
        "displayName": arguments.display_name,
        "password": password,
        "siteAdmin": arguments.site_admin,
    });
    let created: Value = client.post("/api/v1/users", &body).await?;
    let sign_in = if created["hasPassword"] == true {
        "they can sign in to the web interface"
    } else {
        "set a password with `flotilla users set-password` before they sign in to the web interface"
    };
    eprintln!("created user {}{}; {sign_in}", text(&created["username"]), if created["siteAdmin"] == true { " (site admin)" } else { "" });
    Ok(ExitCode::SUCCESS)
}

pub async fn list_users(arguments: JsonFlag) -> anyhow::Result<ExitCode> {
    let users: Vec<Value> = client(&arguments.connection)?.get("/api/v1/users").await?;
    if arguments.json {
        print_json(&users)?;
    } else {
        for user in &users {
            let role = if user["siteAdmin"] == true { "site-admin" } else { "user" };
            println!("{}\t{}\t{}", text(&user["username"]), role, text(&user["email"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn set_password(arguments: UserNameArgs) -> anyhow::Result<ExitCode> {
    let client = client(&arguments.connection)?;
    let password = password_from_stdin()?;
    client.put_empty(&format!("/api/v1/users/{}/password", urlencode(&arguments.username)), &json!({ "password": password })).await?;
    eprintln!("password of {} set", arguments.username);
    Ok(ExitCode::SUCCESS)
}

pub async fn create_org(arguments: OrgCreateArgs) -> anyhow::Result<ExitCode> {
    let client = client(&arguments.connection)?;
    let body = json!({ "name": arguments.name, "displayName": arguments.display_name, "membersCanAdminister": arguments.members_can_administer });
    let created: Value = client.post("/api/v1/orgs", &body).await?;
    eprintln!(
        "created organization {}; you are its admin. Add members with `flotilla orgs add-member {} USER`",
        text(&created["name"]),
        text(&created["name"])
    );
    Ok(ExitCode::SUCCESS)
}

pub async fn list_orgs(arguments: JsonFlag) -> anyhow::Result<ExitCode> {
    let orgs: Vec<Value> = client(&arguments.connection)?.get("/api/v1/orgs").await?;
    if arguments.json {
        print_json(&orgs)?;
    } else {
        for org in &orgs {
            let role = org["role"].as_str().unwrap_or("-");
            let who = if org["membersCanAdminister"] == true { "members-administer" } else { "admins-administer" };
            println!("{}\t{role}\t{who}", text(&org["name"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn list_members(arguments: OrgNameArgs) -> anyhow::Result<ExitCode> {
    let members: Vec<Value> = client(&arguments.connection)?.get(&format!("/api/v1/orgs/{}/members", urlencode(&arguments.name))).await?;
    if arguments.json {
        print_json(&members)?;
    } else {
        for member in &members {
            println!("{}\t{}", text(&member["username"]), text(&member["role"]));
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn add_member(arguments: OrgMemberArgs) -> anyhow::Result<ExitCode> {
    let client = client(&arguments.connection)?;
    let path = format!("/api/v1/orgs/{}/members/{}", urlencode(&arguments.org), urlencode(&arguments.username));
    let member: Value = client.put(&path, &json!({ "role": arguments.role })).await?;
    eprintln!("{} is now {} of {}", text(&member["username"]), if member["role"] == "admin" { "an admin" } else { "a member" }, arguments.org);
    Ok(ExitCode::SUCCESS)
}

pub async fn remove_member(arguments: OrgMemberArgs) -> anyhow::Result<ExitCode> {
    let client = client(&arguments.connection)?;
    client.delete(&format!("/api/v1/orgs/{}/members/{}", urlencode(&arguments.org), urlencode(&arguments.username))).await?;
    eprintln!("removed {} from {}", arguments.username, arguments.org);
    Ok(ExitCode::SUCCESS)
}

pub async fn set_org(arguments: OrgSetArgs) -> anyhow::Result<ExitCode> {
    let client = client(&arguments.connection)?;
    let org: Value = client.patch(&format!("/api/v1/orgs/{}", urlencode(&arguments.name)), &json!({ "membersCanAdminister": arguments.members_can_administer })).await?;
    let who = if org["membersCanAdminister"] == true { "every member" } else { "only its admins" };
    eprintln!("{}: {who} may now change its batch specs", text(&org["name"]));
    Ok(ExitCode::SUCCESS)
}

pub async fn audit_log(arguments: AuditLogArgs) -> anyhow::Result<ExitCode> {
    let client = client(&arguments.connection)?;
    let mut path = format!("/api/v1/audit-log?limit={}", arguments.limit);
    if let Some(before) = arguments.before {
        path.push_str(&format!("&before={before}"));
    }
    let page: Value = client.get(&path).await?;
    if arguments.json {
        print_json(&page)?;
        return Ok(ExitCode::SUCCESS);
    }
    for event in page["events"].as_array().map(Vec::as_slice).unwrap_or_default() {
        println!(
            "{}\t{}\t{}\t{}\t{}:{}\t{}",
            event["id"],
            event["createdAtMs"],
            event["actor"].as_str().unwrap_or("-"),
            text(&event["action"]),
            text(&event["targetKind"]),
            text(&event["targetId"]),
            event["details"]
        );
    }
    if let Some(next) = page["next"].as_i64() {
        eprintln!("older events: flotilla audit-log --before {next}");
    }
    Ok(ExitCode::SUCCESS)
}
