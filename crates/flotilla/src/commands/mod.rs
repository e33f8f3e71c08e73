//! One module per command group; each function returns the process exit code.

mod batch;
mod bench;
mod bench_e2e;
mod codehost;
mod remote;
mod repos;
mod accounts;
mod secrets;
mod tokens;
mod up;

use std::process::ExitCode;

use crate::cli::{BatchCommand, BenchCommand, ChangesetsCommand, Cli, CodehostCommand, CodehostCredentialCommand, CodehostWebhookCommand, Command, OrgsCommand, ReposCommand, SecretsCommand, TokensCommand, UsersCommand};

pub fn run(arguments: Cli) -> anyhow::Result<ExitCode> {
    match arguments.command {
        Command::Batch(BatchCommand::Validate(validate)) => batch::validate(&validate),
        Command::Batch(BatchCommand::New(new)) => batch::new(&new),
        Command::Batch(BatchCommand::Preview(preview)) => runtime()?.block_on(remote::preview(preview)),
        Command::Batch(BatchCommand::Remote(remote)) => runtime()?.block_on(remote::remote(remote)),
        Command::Batch(BatchCommand::Repositories(repositories)) => runtime()?.block_on(remote::repositories(repositories)),
        Command::Batch(BatchCommand::Apply(apply)) => runtime()?.block_on(remote::apply(apply)),
        Command::Batch(BatchCommand::Close(close)) => runtime()?.block_on(remote::close(close)),
        Command::Batch(BatchCommand::Delete(delete)) => runtime()?.block_on(remote::delete(delete)),
        Command::Batch(BatchCommand::Status(status)) => runtime()?.block_on(remote::status(status)),
        Command::Changesets(ChangesetsCommand::List(list)) => runtime()?.block_on(remote::list_changesets(list)),
        Command::Changesets(ChangesetsCommand::Bulk(bulk)) => runtime()?.block_on(remote::bulk(bulk)),
        Command::Up(up) => runtime()?.block_on(up::up(up)),
        Command::Bench(BenchCommand::Queue(queue)) => runtime()?.block_on(bench::queue(queue)),
        Command::Bench(BenchCommand::Resolution(resolution)) => runtime()?.block_on(bench::resolution(resolution)),
        Command::Bench(BenchCommand::E2e(e2e)) => runtime()?.block_on(bench_e2e::e2e(e2e)),
        Command::Server(server) => runtime()?.block_on(up::server(server)),
        Command::Executor(executor) => runtime()?.block_on(up::executor(executor)),
        Command::Codehost(CodehostCommand::Add(add)) => runtime()?.block_on(codehost::add(add)),
        Command::Codehost(CodehostCommand::List(list)) => runtime()?.block_on(codehost::list(list)),
        Command::Codehost(CodehostCommand::Restrict(restrict)) => runtime()?.block_on(codehost::restrict(restrict)),
        Command::Codehost(CodehostCommand::Credential(CodehostCredentialCommand::Set(set))) => runtime()?.block_on(codehost::set_credential(set)),
        Command::Codehost(CodehostCommand::Credential(CodehostCredentialCommand::Delete(delete))) => runtime()?.block_on(codehost::delete_credential(delete)),
        Command::Codehost(CodehostCommand::Credential(CodehostCredentialCommand::List(list))) => runtime()?.block_on(codehost::list_credentials(list)),
        Command::Codehost(CodehostCommand::Webhook(CodehostWebhookCommand::Set(set))) => runtime()?.block_on(codehost::set_webhook_secret(set)),
        Command::Codehost(CodehostCommand::Webhook(CodehostWebhookCommand::Delete(delete))) => runtime()?.block_on(codehost::delete_webhook_secret(delete)),
        Command::Users(UsersCommand::Create(create)) => runtime()?.block_on(accounts::create_user(create)),
        Command::Users(UsersCommand::List(list)) => runtime()?.block_on(accounts::list_users(list)),
        Command::Users(UsersCommand::SetPassword(user)) => runtime()?.block_on(accounts::set_password(user)),
        Command::Orgs(OrgsCommand::Create(create)) => runtime()?.block_on(accounts::create_org(create)),
        Command::Orgs(OrgsCommand::List(list)) => runtime()?.block_on(accounts::list_orgs(list)),
        Command::Orgs(OrgsCommand::Members(org)) => runtime()?.block_on(accounts::list_members(org)),
        Command::Orgs(OrgsCommand::AddMember(member)) => runtime()?.block_on(accounts::add_member(member)),
        Command::Orgs(OrgsCommand::RemoveMember(member)) => runtime()?.block_on(accounts::remove_member(member)),
        Command::Orgs(OrgsCommand::Set(set)) => runtime()?.block_on(accounts::set_org(set)),
        Command::AuditLog(audit) => runtime()?.block_on(accounts::audit_log(audit)),
        Command::Repos(ReposCommand::List(list)) => runtime()?.block_on(repos::list(list)),
        Command::Repos(ReposCommand::Sync(sync)) => runtime()?.block_on(repos::sync(sync)),
        Command::Secrets(SecretsCommand::Set(set)) => runtime()?.block_on(secrets::set(set)),
        Command::Secrets(SecretsCommand::List(list)) => runtime()?.block_on(secrets::list(list)),
        Command::Secrets(SecretsCommand::Delete(delete)) => runtime()?.block_on(secrets::delete(delete)),
        Command::Tokens(TokensCommand::Create(create)) => runtime()?.block_on(tokens::create(create)),
        Command::Tokens(TokensCommand::List(list)) => runtime()?.block_on(tokens::list(list)),
        Command::Tokens(TokensCommand::Revoke(revoke)) => runtime()?.block_on(tokens::revoke(revoke)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
