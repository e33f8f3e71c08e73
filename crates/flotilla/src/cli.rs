//! The command line as a faithful record of what the user typed (clap derive).
//!
//! Help texts teach: every command says what it does and shows an example.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "flotilla",
    version,
    about = "Change code across thousands of repositories with batch changes, run server-side.",
    long_about = "Flotilla runs batch changes: a batch spec (YAML, Sourcegraph's format) says which \
repositories to change, which steps to run in containers, and how the resulting pull requests look.\n\n\
Start with:\n  flotilla batch new -f hello.batch.yaml     # write a starter spec\n  \
flotilla batch validate -f hello.batch.yaml   # check it, with every error at its line and column",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Work with batch specs: write, validate, and (with a server) preview and apply them.
    #[command(subcommand)]
    Batch(BatchCommand),

    /// Run everything on this machine: the server on an embedded SQLite database plus local
    /// executors. Prints the URL and the tokens to use.
    ///
    /// Examples:
    ///   flotilla up                                  # data in ~/.local/share/flotilla
    ///   flotilla up --data-dir ./data --executors 0  # executors run on other machines
    #[command(verbatim_doc_comment)]
    Up(UpArgs),

    /// Run the server alone (SQLite by default, PostgreSQL with --database-url).
    ///
    /// Example:
    ///   flotilla server --database-url postgres://flotilla@db/flotilla --listen 0.0.0.0:7080
    #[command(verbatim_doc_comment)]
    Server(ServerArgs),

    /// Run an executor: take workspace jobs from a server and run their steps in containers.
    ///
    /// Example:
    ///   flotilla executor --url http://server:7080 --token $EXECUTOR_TOKEN --concurrency 4
    #[command(verbatim_doc_comment)]
    Executor(ExecutorArgs),

    /// Look at the changesets of batch changes (what apply pushed).
    #[command(subcommand)]
    Changesets(ChangesetsCommand),

    /// Manage code host connections (where repositories come from).
    #[command(subcommand)]
    Codehost(CodehostCommand),

    /// List and sync the repositories the server mirrors.
    #[command(subcommand)]
    Repos(ReposCommand),

    /// Manage executor secrets: values steps receive as environment variables (a spec's
    /// bare `env` names), stored encrypted and never shown again.
    #[command(subcommand)]
    Secrets(SecretsCommand),

    /// Manage your access tokens (for the CLI, scripts and the API).
    #[command(subcommand)]
    Tokens(TokensCommand),

    /// Manage users (site admins) and your password.
    ///
    /// Example:
    ///   printf %s "$PASSWORD" | flotilla users create alice --email alice@example.com --password-stdin
    #[command(subcommand, verbatim_doc_comment)]
    Users(UsersCommand),

    /// Manage organizations and their members: a shared namespace for batch specs and secrets.
    ///
    /// Example:
    ///   flotilla orgs create platform && flotilla orgs add-member platform alice
    #[command(subcommand, verbatim_doc_comment)]
    Orgs(OrgsCommand),

    /// Show who did what, newest first (site admins).
    ///
    /// Examples:
    ///   flotilla audit-log
    ///   flotilla audit-log --limit 20 --json
    #[command(verbatim_doc_comment)]
    AuditLog(AuditLogArgs),

    /// Measure Flotilla on this machine (figures for BENCHMARKS.md).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Jobs dequeued and completed per second through the executor HTTP API, with no-op
    /// executors, on SQLite (default) or PostgreSQL.
    ///
    /// Example:
    ///   flotilla bench queue --jobs 5000 --executors 8
    #[command(verbatim_doc_comment)]
    Queue(BenchQueueArgs),
    /// Workspace resolution of `repositoriesMatchingQuery` specs over many mirrored
    /// repositories: real bare git mirrors (hard-linked copies of two small repositories, one
    /// in ten with a go.mod), resolved by the server's own resolution worker. Reports the time
    /// to the first queued job (resolution streams) and to the end, for a name-only query and
    /// for a file query that reads every repository, cold and again warm.
    ///
    /// Example:
    ///   flotilla bench resolution --repositories 10000
    #[command(verbatim_doc_comment)]
    Resolution(BenchResolutionArgs),
    /// A whole batch change at scale: N generated repositories on a local code host, a real
    /// server process and E executor processes (process runtime), one spec that edits a file
    /// in each, applied with every branch pushed. Reports each phase (mirroring, resolution,
    /// execution with p50/p95 per workspace, changeset spec ingestion, publishing), the
    /// server's peak memory and CPU per workspace, and the API's p99 while the run goes on.
    ///
    /// Examples:
    ///   flotilla bench e2e --repositories 1000
    ///   flotilla bench e2e --repositories 45000 --executors 2 --concurrency 4
    #[command(verbatim_doc_comment)]
    E2e(BenchE2eArgs),
}

#[derive(Debug, Args)]
pub struct BenchResolutionArgs {
    #[arg(long, default_value_t = 10_000)]
    pub repositories: usize,
}

#[derive(Debug, Args)]
pub struct BenchE2eArgs {
    /// Repositories to generate (each becomes one workspace and one changeset).
    #[arg(long, default_value_t = 1000)]
    pub repositories: usize,
    /// Executor processes.
    #[arg(long, default_value_t = 2)]
    pub executors: usize,
    /// Jobs each executor runs at once.
    #[arg(long, default_value_t = 2)]
    pub concurrency: usize,
    /// `postgres://...` to run the server on PostgreSQL (a database you can throw away).
    #[arg(long)]
    pub database_url: Option<String>,
    /// Keep the generated repositories, data and logs (their folder is printed).
    #[arg(long)]
    pub keep: bool,
    /// Do not list workspaces and changesets during the run: the server's CPU per workspace
    /// then excludes what a user browsing the run costs (no API latency is reported).
    #[arg(long)]
    pub no_probe: bool,
}

#[derive(Debug, Args)]
pub struct BenchQueueArgs {
    #[arg(long, default_value_t = 5000)]
    pub jobs: usize,
    /// Concurrent no-op executors.
    #[arg(long, default_value_t = 8)]
    pub executors: usize,
    /// `postgres://...` to measure PostgreSQL (use a database you can throw away).
    #[arg(long)]
    pub database_url: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user (site admins). With --password-stdin the password is read from standard
    /// input, so it never shows in the shell history; without it the user cannot sign in to
    /// the web interface until a password is set.
    ///
    /// Examples:
    ///   flotilla users create alice --email alice@example.com
    ///   printf %s "$PASSWORD" | flotilla users create bob --password-stdin
    ///   flotilla users create carol --site-admin
    #[command(verbatim_doc_comment)]
    Create(UserCreateArgs),
    /// List users (site admins).
    ///
    /// Example:
    ///   flotilla users list --json
    #[command(verbatim_doc_comment)]
    List(JsonFlag),
    /// Set a user's web sign-in password, read from standard input (your own, or anyone's as a
    /// site admin). At least 12 characters.
    ///
    /// Example:
    ///   printf %s "$NEW_PASSWORD" | flotilla users set-password alice
    #[command(verbatim_doc_comment)]
    SetPassword(UserNameArgs),
}

#[derive(Debug, Args)]
pub struct UserCreateArgs {
    /// The user's name: letters, digits, `-`, `_` or `.`.
    pub username: String,
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub display_name: Option<String>,
    /// Read a web sign-in password from standard input.
    #[arg(long)]
    pub password_stdin: bool,
    /// Make the user a site admin.
    #[arg(long)]
    pub site_admin: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct UserNameArgs {
    pub username: String,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Subcommand)]
pub enum OrgsCommand {
    /// Create an organization; you become its first admin.
    ///
    /// Examples:
    ///   flotilla orgs create platform
    ///   flotilla orgs create security --members-can-administer false
    #[command(verbatim_doc_comment)]
    Create(OrgCreateArgs),
    /// List organizations, with your role in each.
    ///
    /// Example:
    ///   flotilla orgs list --json
    #[command(verbatim_doc_comment)]
    List(JsonFlag),
    /// List an organization's members and their roles (members and site admins).
    ///
    /// Example:
    ///   flotilla orgs members platform
    #[command(verbatim_doc_comment)]
    Members(OrgNameArgs),
    /// Add a member or change their role (org admins and site admins).
    ///
    /// Examples:
    ///   flotilla orgs add-member platform alice
    ///   flotilla orgs add-member platform bob --role admin
    #[command(verbatim_doc_comment)]
    AddMember(OrgMemberArgs),
    /// Remove a member (org admins and site admins; anyone may remove themselves).
    ///
    /// Example:
    ///   flotilla orgs remove-member platform alice
    #[command(verbatim_doc_comment)]
    RemoveMember(OrgMemberArgs),
    /// Change an organization's settings (org admins and site admins).
    ///
    /// Example:
    ///   flotilla orgs set platform --members-can-administer false   # only admins change its batch specs
    #[command(verbatim_doc_comment)]
    Set(OrgSetArgs),
}

#[derive(Debug, Args)]
pub struct OrgCreateArgs {
    pub name: String,
    #[arg(long)]
    pub display_name: Option<String>,
    /// Whether every member may cancel and retry the org's batch specs, or only its admins.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    pub members_can_administer: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct OrgNameArgs {
    pub name: String,
    /// Print JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct OrgMemberArgs {
    /// The organization.
    pub org: String,
    /// The user.
    pub username: String,
    /// `member` or `admin` (add-member only).
    #[arg(long, default_value = "member")]
    pub role: String,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct OrgSetArgs {
    pub name: String,
    /// Whether every member may cancel and retry the org's batch specs, or only its admins.
    #[arg(long, action = clap::ArgAction::Set, value_name = "true|false")]
    pub members_can_administer: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct AuditLogArgs {
    /// How many events to show.
    #[arg(long, default_value_t = 100)]
    pub limit: i64,
    /// Show events older than this event id (the `next` of a previous --json page).
    #[arg(long)]
    pub before: Option<i64>,
    /// Print JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; it is printed once on standard output and stored only as a hash.
    ///
    /// Examples:
    ///   flotilla tokens create --note "CI pipeline"
    ///   flotilla tokens create --note admin-scripts --scope site-admin
    #[command(verbatim_doc_comment)]
    Create(TokenCreateArgs),
    /// List your tokens (ids, notes, scopes; never the values).
    List(JsonFlag),
    /// Revoke a token by its id (see `flotilla tokens list`).
    Revoke(TokenRevokeArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// What the token is for.
    #[arg(long, default_value = "")]
    pub note: String,
    /// `user` or `site-admin`.
    #[arg(long, default_value = "user")]
    pub scope: String,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct TokenRevokeArgs {
    pub id: i64,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Create or replace a secret; the value is read from standard input.
    ///
    /// Examples:
    ///   printf %s "$GITHUB_TOKEN" | flotilla secrets set GITHUB_TOKEN
    ///   flotilla secrets set NPM_TOKEN --namespace my-org < token.txt
    ///   flotilla secrets set SHARED_KEY --namespace global < key.txt   # site admins
    #[command(verbatim_doc_comment)]
    Set(SecretNameArgs),
    /// List secrets (names and versions, never values).
    List(SecretScopeArgs),
    /// Delete a secret.
    Delete(SecretNameArgs),
}

#[derive(Debug, Args)]
pub struct SecretNameArgs {
    /// The environment variable name steps see.
    pub name: String,
    #[command(flatten)]
    pub scope: SecretScopeArgs,
}

#[derive(Debug, Args)]
pub struct SecretScopeArgs {
    /// `global`, your user name, or an organisation; yours by default.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Print JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

/// Where the server is and who you are; from the environment by default.
#[derive(Debug, Args, Clone)]
pub struct ServerConnection {
    /// The server's URL.
    #[arg(long = "url", env = "FLOTILLA_URL", global = true, hide_env_values = true)]
    pub url: Option<String>,
    /// Your access token.
    #[arg(long = "token", env = "FLOTILLA_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Where the database, mirrors and keys live.
    #[arg(long, value_name = "DIR", env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7080")]
    pub listen: std::net::SocketAddr,
    /// Local executors to start (default: one per core; 0 for none).
    #[arg(long)]
    pub executors: Option<usize>,
    /// The first admin's access token (generated when not given).
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// The token executors authenticate with (generated when not given).
    #[arg(long, env = "FLOTILLA_EXECUTOR_TOKEN", hide_env_values = true)]
    pub executor_token: Option<String>,
    /// How local executors run steps: podman, docker, or process (no isolation).
    #[arg(long, default_value = "podman")]
    pub runtime: String,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// What the server accepts from batch specs, and how it talks to the outside.
#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// How often published pull requests are asked for their state (merged, closed, reviews,
    /// checks).
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub changeset_sync_interval: u64,
    /// Container images steps may use, as globs (e.g. `alpine:*,registry.example.com/*`);
    /// steps with other images are refused at upload (or fail when a templated image renders
    /// to one). Default: every image.
    #[arg(long, value_delimiter = ',', value_name = "GLOBS", env = "FLOTILLA_ALLOWED_IMAGES")]
    pub allowed_images: Vec<String>,
    /// Largest file a step may mount, in bytes.
    #[arg(long, default_value_t = 10 << 20, value_name = "BYTES")]
    pub max_mount_file_bytes: usize,
    /// Send events (batch_change.apply/close/delete, changeset.publish/error) as JSON POSTs to
    /// this URL; repeat for several.
    #[arg(long = "webhook", value_name = "URL", env = "FLOTILLA_WEBHOOKS", value_delimiter = ',')]
    pub webhooks: Vec<String>,
    /// Sign webhook bodies: `X-Flotilla-Signature: sha256=<HMAC-SHA256 of the body>`.
    #[arg(long, value_name = "SECRET", env = "FLOTILLA_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Rollout windows: a YAML or JSON file listing when, and how fast, changesets are
    /// published, e.g. `[{rate: 10/minute, days: [monday, friday], start: "09:00", end:
    /// "17:00"}, {rate: unlimited, days: [saturday, sunday]}]` (UTC; rate `unlimited`,
    /// `N/second|minute|hour`, or 0; the last window covering the moment wins; outside every
    /// window nothing is published). Without it, changesets are published at once.
    #[arg(long, value_name = "FILE", env = "FLOTILLA_ROLLOUT_WINDOWS")]
    pub rollout_windows: Option<PathBuf>,
    /// Longest wait for one answer from a code host's API; a request that takes longer counts
    /// as a failure of the host and is retried.
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    pub code_host_timeout: u64,
    /// Pause before a changeset whose code host failed (5xx, timeouts) is tried again; doubled
    /// after each further failure, up to 5 minutes, ten attempts in all. A rate limit's
    /// `Retry-After` is waited out and does not count as an attempt.
    #[arg(long, default_value_t = 5, value_name = "SECONDS")]
    pub reconciler_retry_pause: u64,
}

impl PolicyArgs {
    pub fn apply(&self, config: &mut flotilla_server::ServerConfig) -> anyhow::Result<()> {
        if let Some(path) = &self.rollout_windows {
            let text = std::fs::read_to_string(path).map_err(|error| anyhow::anyhow!("reading the rollout windows {}: {error}", path.display()))?;
            let document = flotilla_yaml::load(&text).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            let windows = flotilla_server::rollout::parse_windows(&document.to_json()).map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
            config.rollout_windows = Some(windows);
        }
        config.allowed_images = self.allowed_images.iter().map(|pattern| pattern.trim().to_owned()).filter(|pattern| !pattern.is_empty()).collect();
        config.max_mount_file_bytes = self.max_mount_file_bytes;
        config.changeset_sync_interval = std::time::Duration::from_secs(self.changeset_sync_interval.max(1));
        config.code_host_request_timeout = std::time::Duration::from_secs(self.code_host_timeout.max(1));
        config.reconciler_retry_pause = std::time::Duration::from_secs(self.reconciler_retry_pause.max(1));
        config.webhooks = flotilla_server::webhooks::WebhookConfig { urls: self.webhooks.clone(), secret: self.webhook_secret.clone() };
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    #[arg(long, value_name = "DIR", env = "FLOTILLA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[arg(long, default_value = "127.0.0.1:7080")]
    pub listen: std::net::SocketAddr,
    /// `postgres://...` to use PostgreSQL instead of SQLite in the data directory.
    #[arg(long, env = "FLOTILLA_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    #[arg(long, env = "FLOTILLA_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    #[arg(long, env = "FLOTILLA_EXECUTOR_TOKEN", hide_env_values = true)]
    pub executor_token: Option<String>,
    /// Seconds without a heartbeat after which a job's executor is presumed dead and the job
    /// goes back to the queue (three times at most, then it fails).
    #[arg(long, default_value_t = 25, value_name = "SECONDS")]
    pub heartbeat_timeout: u64,
    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct ExecutorArgs {
    /// The server's URL; for several servers of one PostgreSQL database, a comma-separated
    /// list (`http://a:7080,http://b:7080`): the executor uses one and moves to the next when
    /// it stops answering.
    #[arg(long, env = "FLOTILLA_URL")]
    pub url: String,
    /// The executor token the server printed.
    #[arg(long, env = "FLOTILLA_EXECUTOR_TOKEN", hide_env_values = true)]
    pub token: String,
    /// A unique name (default: hostname plus a random suffix).
    #[arg(long, env = "FLOTILLA_EXECUTOR_NAME")]
    pub name: Option<String>,
    /// Jobs to run at once.
    #[arg(long, default_value_t = 1, env = "FLOTILLA_EXECUTOR_CONCURRENCY")]
    pub concurrency: usize,
    /// podman, docker, or process (no isolation: only for trusted specs on machines without containers).
    #[arg(long, default_value = "podman", env = "FLOTILLA_EXECUTOR_RUNTIME")]
    pub runtime: String,
    /// Labels that route jobs here, e.g. `gpu=true,size=large`.
    #[arg(long, value_delimiter = ',', env = "FLOTILLA_EXECUTOR_LABELS")]
    pub labels: Vec<String>,
    /// Where workspaces and the repository cache live.
    #[arg(long, value_name = "DIR", env = "FLOTILLA_EXECUTOR_DIR")]
    pub work_dir: Option<PathBuf>,
    /// CPU limit per step container (default: the machine's cores divided by --concurrency,
    /// at least 1; 0 for none).
    #[arg(long, env = "FLOTILLA_EXECUTOR_CPUS")]
    pub cpus: Option<f64>,
    /// Memory limit per step container, e.g. 2G, without swap beyond it (default: three
    /// quarters of the machine's memory divided by --concurrency; 0 for none). A step killed
    /// for going over it fails with a message that says so.
    #[arg(long, env = "FLOTILLA_EXECUTOR_MEMORY")]
    pub memory: Option<String>,
    /// Take no job while the work folder's disk has less free space than this (in MiB); a
    /// step that fails on a full disk is reported as the executor's failure, so the job is
    /// retried, not failed.
    #[arg(long, default_value_t = 100, value_name = "MIB", env = "FLOTILLA_EXECUTOR_MIN_FREE_DISK")]
    pub min_free_disk: u64,
    /// Most processes and threads per step container, so a fork bomb stops there (default
    /// 4096; 0 for the runtime's own default).
    #[arg(long, value_name = "N", env = "FLOTILLA_EXECUTOR_PIDS_LIMIT")]
    pub pids_limit: Option<u64>,
    /// Which steps get a network: on-request (those with `network: true`), never (such steps
    /// fail), or always (every step, as on Sourcegraph's executors). Step containers are
    /// otherwise never privileged, run with no-new-privileges and a short capability list,
    /// and see only the workspace (writable), their script and files (read-only).
    #[arg(long, default_value = "on-request", value_name = "WHEN", env = "FLOTILLA_EXECUTOR_STEP_NETWORK")]
    pub step_network: String,
}

#[derive(Debug, Subcommand)]
pub enum CodehostCommand {
    /// Add a code host connection.
    ///
    /// Examples:
    ///   flotilla codehost add --kind git --name local --path /srv/git
    ///   flotilla codehost add --kind git-urls --name mirror --urls https://example.com/a.git,https://example.com/b.git
    ///   printf %s "$TOKEN" | flotilla codehost add --kind git-urls --name private --urls https://example.com/c.git --token-stdin
    ///   printf %s "$TOKEN" | flotilla codehost add --kind gitea --api-url https://codeberg.org/api/v1 --org acme --token-stdin
    ///   printf %s "$TOKEN" | flotilla codehost add --kind bitbucket-server --api-url https://bitbucket.example.com --org PROJ --token-stdin --username alice
    #[command(verbatim_doc_comment)]
    Add(CodehostAddArgs),
    /// List code host connections (those whose repositories you may read).
    List(JsonFlag),
    /// Choose who may read a code host connection's repositories (site admins). Everyone else
    /// no longer sees them: not in `repos list`, not in batch spec resolution or results.
    ///
    /// Examples:
    ///   flotilla codehost restrict internal --org security --user alice
    ///   flotilla codehost restrict internal --everyone
    #[command(verbatim_doc_comment)]
    Restrict(CodehostRestrictArgs),
    /// Manage code host credentials: the connection's (site admins; used to mirror its
    /// repositories) or your own (--mine; your pull requests are opened with it). Tokens are
    /// read from standard input, stored encrypted and never shown again.
    ///
    /// Examples:
    ///   printf %s "$TOKEN" | flotilla codehost credential set github --username bot
    ///   printf %s "$MY_TOKEN" | flotilla codehost credential set github --mine
    ///   flotilla codehost credential list
    #[command(subcommand, verbatim_doc_comment)]
    Credential(CodehostCredentialCommand),
    /// Receive webhooks from a forge connection (site admins): its deliveries then update the
    /// changesets they name at once instead of at the next sync. The secret is read from
    /// standard input, stored encrypted and never shown again; the command prints the URL and
    /// the events to configure on the forge, with the same secret.
    ///
    /// Examples:
    ///   openssl rand -hex 32 | tee /dev/stderr | flotilla codehost webhook set github.com --secret-stdin
    ///   flotilla codehost webhook delete github.com
    #[command(subcommand, verbatim_doc_comment)]
    Webhook(CodehostWebhookCommand),
}

#[derive(Debug, Subcommand)]
pub enum CodehostWebhookCommand {
    /// Set the secret the forge signs its deliveries with, and print where it delivers.
    Set(CodehostWebhookSetArgs),
    /// Delete the secret; deliveries are refused from then on.
    Delete(CodehostWebhookNameArgs),
}

#[derive(Debug, Args)]
pub struct CodehostWebhookSetArgs {
    /// The code host connection's name (see `flotilla codehost list`).
    pub name: String,
    /// Read the secret from standard input (16 to 1024 characters, one line).
    #[arg(long, required = true)]
    pub secret_stdin: bool,
    /// The server's URL as the forge reaches it, for the printed webhook URL (default: --url).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Print JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct CodehostWebhookNameArgs {
    /// The code host connection's name (see `flotilla codehost list`).
    pub name: String,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Subcommand)]
pub enum CodehostCredentialCommand {
    /// Set a credential; the token is read from standard input.
    ///
    /// Example:
    ///   printf %s "$TOKEN" | flotilla codehost credential set github --username bot
    #[command(verbatim_doc_comment)]
    Set(CodehostCredentialSetArgs),
    /// Delete a credential.
    ///
    /// Example:
    ///   flotilla codehost credential delete github --mine
    #[command(verbatim_doc_comment)]
    Delete(CodehostCredentialNameArgs),
    /// List your credentials (and, for site admins, the connections'), without values.
    List(JsonFlag),
}

#[derive(Debug, Args)]
pub struct CodehostCredentialSetArgs {
    /// The code host connection's name (see `flotilla codehost list`).
    pub name: String,
    /// The account the token belongs to, for hosts that need one; by default `x-access-token`
    /// (`oauth2` for GitLab; on Bitbucket Server the token is then sent as Bearer, which
    /// project and repository tokens need, and a personal token may name its owner here).
    #[arg(long)]
    pub username: Option<String>,
    /// Your own credential rather than the connection's.
    #[arg(long)]
    pub mine: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct CodehostCredentialNameArgs {
    /// The code host connection's name (see `flotilla codehost list`).
    pub name: String,
    /// Your own credential rather than the connection's.
    #[arg(long)]
    pub mine: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct CodehostRestrictArgs {
    /// The code host connection's name (see `flotilla codehost list`).
    pub name: String,
    /// A user who may read it (repeatable).
    #[arg(long = "user", value_name = "USER")]
    pub users: Vec<String>,
    /// An organization whose members may read it (repeatable).
    #[arg(long = "org", value_name = "ORG")]
    pub orgs: Vec<String>,
    /// Open it to everyone signed in again.
    #[arg(long, conflicts_with_all = ["users", "orgs"])]
    pub everyone: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct CodehostAddArgs {
    /// `git` (a folder of git repositories), `git-urls` (a list of clone URLs), `github`,
    /// `gitlab`, `gitea` (also for Forgejo: `forgejo` is the same kind) or `bitbucket-server`
    /// (Bitbucket Server / Data Center).
    #[arg(long)]
    pub kind: String,
    /// Prefix of the repositories' names: every repository becomes NAME/<path> (for github,
    /// NAME/owner/repo; NAME defaults to the API's host without `api.`, e.g. github.com).
    #[arg(long)]
    pub name: Option<String>,
    /// For forges: the API's base URL, e.g. https://api.github.com, https://HOST/api/v3,
    /// https://gitlab.com/api/v4, https://HOST/api/v1 for Gitea and Forgejo, or the server's root
    /// https://HOST for Bitbucket Server (`--url` is the Flotilla server's own).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// For forges: mirror every repository of this organisation (a GitLab group, a
    /// Bitbucket project key)...
    #[arg(long, value_name = "ORG", conflicts_with = "repos")]
    pub org: Option<String>,
    /// ...or exactly these repositories (`PROJECT/slug` on Bitbucket).
    #[arg(long, value_name = "OWNER/NAME", value_delimiter = ',')]
    pub repos: Vec<String>,
    /// For `--kind git`: the folder on the server whose repositories are mirrored.
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// For `--kind git-urls`: clone URLs.
    #[arg(long, value_delimiter = ',')]
    pub urls: Vec<String>,
    /// Read the connection's access token from standard input (stored encrypted; used to
    /// clone and fetch).
    #[arg(long)]
    pub token_stdin: bool,
    /// With --token-stdin: the account the token belongs to, if the host needs one (a
    /// Bitbucket Server personal token over git; leave it out for project tokens).
    #[arg(long, requires = "token_stdin")]
    pub username: Option<String>,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Subcommand)]
pub enum ReposCommand {
    /// List mirrored repositories with their sync state.
    ///
    /// Example:
    ///   flotilla repos list --json
    #[command(verbatim_doc_comment)]
    List(JsonFlag),
    /// Fetch one repository (or all) from its code host now, and wait.
    ///
    /// Examples:
    ///   flotilla repos sync
    ///   flotilla repos sync local/team/service
    #[command(verbatim_doc_comment)]
    Sync(ReposSyncArgs),
}

#[derive(Debug, Args)]
pub struct ReposSyncArgs {
    pub name: Option<String>,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Check a batch spec: schema, semantic rules and templates, with no server needed.
    ///
    /// Exits 0 and prints a one-line summary when the spec is valid; exits 1 and prints every
    /// problem (file:line:column, the field, what was expected) when it is not.
    ///
    /// Examples:
    ///   flotilla batch validate -f hello.batch.yaml
    ///   cat hello.batch.yaml | flotilla batch validate -f -
    #[command(verbatim_doc_comment)]
    Validate(ValidateArgs),

    /// Write a commented starter batch spec that validates.
    ///
    /// Examples:
    ///   flotilla batch new                       # writes batch.yaml
    ///   flotilla batch new -f update-readme.batch.yaml
    #[command(verbatim_doc_comment)]
    New(NewArgs),

    /// Run a spec server-side and show what it would change: resolves the workspaces, runs
    /// the steps on the executors with live progress, then prints every workspace and the
    /// changeset specs (the pull requests apply would open).
    ///
    /// Exit status: 0 when every workspace completed, 3 when some failed (they are listed
    /// with their error), 4 when the changeset specs cannot be applied as they are (e.g. two
    /// workspaces of one repository push to the same branch), 1 when the spec is invalid or
    /// cannot be resolved.
    ///
    /// Examples:
    ///   flotilla batch preview -f hello.batch.yaml
    ///   flotilla batch preview -f hello.batch.yaml --json > preview.json
    #[command(verbatim_doc_comment)]
    Preview(PreviewArgs),

    /// List the repositories and workspaces a spec would run on, without running anything.
    ///
    /// Example:
    ///   flotilla batch repositories -f hello.batch.yaml
    #[command(verbatim_doc_comment, alias = "repos")]
    Repositories(RepositoriesArgs),

    /// Start a spec server-side and return at once with its id (--follow to watch it).
    ///
    /// Example:
    ///   flotilla batch remote -f hello.batch.yaml --follow
    #[command(verbatim_doc_comment)]
    Remote(RemoteArgs),

    /// Run a spec server-side (as preview does), then apply it: its changeset specs become the
    /// batch change's changesets and the server pushes them. Prints what each changeset gets
    /// (push, publish, update, close, ...). Applying the same spec again does nothing; an
    /// edited spec updates the same changesets; a repository the spec no longer matches has
    /// its changeset closed. On forges (GitHub, GitLab, Gitea, Bitbucket Server) a changeset is
    /// a pull request; on plain git code hosts, a branch pushed to the repository.
    ///
    /// Examples:
    ///   flotilla batch apply -f hello.batch.yaml
    ///   flotilla batch apply --preview 6f1c0e2a9b3d4e5f6a7b8c9d   # a spec already previewed
    #[command(verbatim_doc_comment)]
    Apply(ApplyArgs),

    /// Close a batch change; with --close-changesets its changesets are closed too (on plain
    /// git hosts: their branches deleted) and archived. Applying a spec again reopens it.
    ///
    /// Example:
    ///   flotilla batch close hello-world --close-changesets
    #[command(verbatim_doc_comment)]
    Close(CloseArgs),

    /// Delete a closed batch change (its changesets stay on the code hosts as they are).
    ///
    /// Example:
    ///   flotilla batch close hello-world && flotilla batch delete hello-world
    #[command(verbatim_doc_comment)]
    Delete(DeleteArgs),

    /// Show a batch change's progress: its changesets counted by state (open, draft, merged,
    /// closed, unpublished, scheduled, processing, retrying, failed, archived) and the
    /// burndown (those counts over time, from the first published changeset to now).
    ///
    /// Examples:
    ///   flotilla batch status hello-world
    ///   flotilla batch status hello-world --points 10 --json
    #[command(verbatim_doc_comment)]
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The batch change's name.
    pub name: String,
    /// Points on the burndown (1 to 500).
    #[arg(long, default_value_t = 8)]
    pub points: usize,
    /// Its namespace (user or organisation); yours by default.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Print the statistics as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct CloseArgs {
    /// The batch change's name (the spec's `name`).
    pub name: String,
    /// Close its open changesets too.
    #[arg(long)]
    pub close_changesets: bool,
    /// Its namespace (user or organisation); yours by default.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The batch change's name.
    pub name: String,
    /// Its namespace (user or organisation); yours by default.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[arg(short = 'f', long = "file", value_name = "FILE", required_unless_present = "preview", conflicts_with = "preview")]
    pub file: Option<PathBuf>,
    /// Apply a batch spec that already ran (the id `batch preview` printed).
    #[arg(long, value_name = "ID")]
    pub preview: Option<String>,
    /// Print the plan as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    /// Namespace (user or organisation) of the batch change; yours by default.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Ignore cached step results and run every step again.
    #[arg(long)]
    pub clear_cache: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Subcommand)]
pub enum ChangesetsCommand {
    /// List a batch change's changesets: repository, branch, publication and reconciler state.
    ///
    /// Example:
    ///   flotilla changesets list --batch-change hello-world --json
    #[command(verbatim_doc_comment)]
    List(ChangesetsListArgs),

    /// Act on many changesets at once: publish them (as drafts with --draft) where the spec
    /// leaves `published` unset, comment on or merge their open pull requests, close them,
    /// retry failed ones, or detach those the spec no longer produces. Without --id, every
    /// changeset of the batch change; ones the action does not apply to are listed as skipped.
    ///
    /// Examples:
    ///   flotilla changesets bulk publish --batch-change hello-world --draft
    ///   flotilla changesets bulk comment --batch-change hello-world --body "Please review"
    ///   flotilla changesets bulk merge --batch-change hello-world --id 12 --id 15 --squash
    ///   flotilla changesets bulk retry --batch-change hello-world
    #[command(verbatim_doc_comment)]
    Bulk(ChangesetsBulkArgs),
}

#[derive(Debug, Args)]
pub struct ChangesetsBulkArgs {
    /// publish, comment, merge, close, retry or detach.
    pub action: String,
    #[arg(long, value_name = "NAME")]
    pub batch_change: String,
    /// Only these changesets (ids from `changesets list --json`); repeat for several.
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<i64>,
    /// The comment's text, for `comment`.
    #[arg(long)]
    pub body: Option<String>,
    /// Squash when merging.
    #[arg(long)]
    pub squash: bool,
    /// Publish as draft pull requests, for `publish`.
    #[arg(long)]
    pub draft: bool,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct ChangesetsListArgs {
    /// The batch change's name (the spec's `name`).
    #[arg(long, value_name = "NAME")]
    pub batch_change: String,
    /// Its namespace (user or organisation); yours by default.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct PreviewArgs {
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Print one JSON document on standard output.
    #[arg(long)]
    pub json: bool,
    /// Namespace (user or organisation) of the batch change; yours by default.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Run repositories that have a .batchignore file too.
    #[arg(long)]
    pub force_override_ignore: bool,
    /// Ignore cached step results and run every step again.
    #[arg(long)]
    pub clear_cache: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct RepositoriesArgs {
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Print JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct RemoteArgs {
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Show progress until the run finishes.
    #[arg(long)]
    pub follow: bool,
    #[arg(long)]
    pub clear_cache: bool,
    #[command(flatten)]
    pub connection: ServerConnection,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The batch spec file; `-` reads standard input.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,

    /// Print the result as JSON on standard output (the parsed spec, or the diagnostics).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Where to write the spec.
    #[arg(short = 'f', long = "file", value_name = "FILE", default_value = "batch.yaml")]
    pub file: PathBuf,

    /// Overwrite the file if it exists.
    #[arg(long)]
    pub force: bool,
}
