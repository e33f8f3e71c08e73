//! `flotilla up`, `flotilla server` and `flotilla executor`: the long-running roles.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use flotilla_executor::{ExecutorConfig, RuntimeKind, StepNetwork, default_executor_name, run_executor};
use flotilla_server::{ServerConfig, bootstrap, load_or_create_secret_key, open_store, start};
use tokio_util::sync::CancellationToken;

use crate::cli::{ExecutorArgs, ServerArgs, UpArgs};

fn default_data_dir() -> PathBuf {
    if let Some(directory) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(directory).join("flotilla");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/flotilla"),
        None => PathBuf::from("flotilla-data"),
    }
}

fn init_logging() {
    let filter = std::env::var("FLOTILLA_LOG").unwrap_or_else(|_| "info".to_owned());
    // Colours only on a terminal: a log file or the journal gets plain text to search.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(colours).with_writer(std::io::stderr).try_init();
}

pub async fn up(arguments: UpArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let data_dir = arguments.data_dir.clone().unwrap_or_else(default_data_dir);
    let secret_key = load_or_create_secret_key(&data_dir)?;
    let mut config = ServerConfig::new(arguments.listen, data_dir.clone(), secret_key);
    arguments.policy.apply(&mut config)?;
    let store = open_store(&config).await?;
    let credentials = bootstrap(&store, arguments.admin_token.as_deref(), arguments.executor_token.as_deref()).await?;
    let server = start(config, store).await?;
    let url = format!("http://{}", server.address);

    // Local executors need the executor token; when it was generated at an earlier start
    // (and so is only stored hashed), `up` keeps its own copy in the data directory.
    let executor_token = match (&credentials.executor_token, &arguments.executor_token) {
        (Some(token), _) | (None, Some(token)) => {
            write_private(&data_dir.join("executor-token"), token)?;
            token.clone()
        }
        (None, None) => std::fs::read_to_string(data_dir.join("executor-token"))
            .map(|token| token.trim().to_owned())
            .context("the executor token is unknown: pass --executor-token (or remove the data directory to start afresh)")?,
    };
    if let Some(token) = &credentials.admin_token {
        write_private(&data_dir.join("credentials.env"), &format!("FLOTILLA_URL={url}\nFLOTILLA_TOKEN={token}\n"))?;
    }

    let executors = arguments.executors.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |cores| cores.get()));
    let runtime = RuntimeKind::parse(&arguments.runtime)
        .with_context(|| format!("unknown runtime {:?}: use podman, docker or process", arguments.runtime))?;
    let shutdown = CancellationToken::new();
    let mut executor_tasks = tokio::task::JoinSet::new();
    for index in 0..executors {
        let mut config = ExecutorConfig::new(&url, &executor_token, runtime, &data_dir.join(format!("executor-{index}")));
        config.name = format!("{}-local{index}", default_executor_name());
        let shutdown = shutdown.clone();
        executor_tasks.spawn(async move {
            if let Err(error) = run_executor(config, shutdown).await {
                tracing::error!(error = %error, "a local executor stopped");
            }
        });
    }

    println!("Flotilla is running at {url}");
    println!("  web interface: {url}/ (sign in with the admin token below)");
    println!("  data directory: {}", data_dir.display());
    println!("  local executors: {executors} ({})", runtime.name());
    match &credentials.admin_token {
        Some(token) => println!("  admin token ({}): {token}", credentials.admin_username),
        None => println!("  admin token: printed at the first start (see {})", data_dir.join("credentials.env").display()),
    }
    println!("  executor token: {executor_token}");
    println!("Use it with:\n  export FLOTILLA_URL={url} FLOTILLA_TOKEN=<admin token>\n  flotilla codehost add --kind git --name local --path /path/to/repositories\n  flotilla batch preview -f hello.batch.yaml");

    wait_for_interrupt().await;
    eprintln!("stopping...");
    shutdown.cancel();
    while executor_tasks.join_next().await.is_some() {}
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn server(arguments: ServerArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let data_dir = arguments.data_dir.clone().unwrap_or_else(default_data_dir);
    let secret_key = match std::env::var("FLOTILLA_SECRET_KEY") {
        Ok(hex) => flotilla_server::secrets_crypto::SecretKey::from_hex(&hex).context("FLOTILLA_SECRET_KEY")?,
        Err(_) => load_or_create_secret_key(&data_dir)?,
    };
    let mut config = ServerConfig::new(arguments.listen, data_dir, secret_key);
    config.database_url = arguments.database_url.clone();
    config.stalled_after = std::time::Duration::from_secs(arguments.heartbeat_timeout.max(1));
    arguments.policy.apply(&mut config)?;
    let store = open_store(&config).await?;
    let credentials = bootstrap(&store, arguments.admin_token.as_deref(), arguments.executor_token.as_deref()).await?;
    let server = start(config, store).await?;
    println!("Flotilla server listening on http://{}", server.address);
    println!("  web interface: http://{}/", server.address);
    if let Some(token) = &credentials.admin_token {
        println!("  admin token ({}): {token}", credentials.admin_username);
    }
    if let Some(token) = &credentials.executor_token {
        println!("  executor token: {token}");
    }
    wait_for_interrupt().await;
    server.stop().await;
    Ok(ExitCode::SUCCESS)
}

pub async fn executor(arguments: ExecutorArgs) -> anyhow::Result<ExitCode> {
    init_logging();
    let runtime = RuntimeKind::parse(&arguments.runtime)
        .with_context(|| format!("unknown runtime {:?}: use podman, docker or process", arguments.runtime))?;
    let work_dir = arguments.work_dir.clone().unwrap_or_else(|| default_data_dir().join("executor"));
    let mut config = ExecutorConfig::new(&arguments.url, &arguments.token, runtime, &work_dir);
    if let Some(name) = &arguments.name {
        config.name = name.clone();
    }
    config.concurrency = arguments.concurrency;
    config.cpus = arguments.cpus;
    config.memory_bytes = arguments.memory.as_deref().map(parse_bytes).transpose()?;
    config.min_free_disk_bytes = arguments.min_free_disk.saturating_mul(1 << 20);
    config.pids_limit = arguments.pids_limit;
    config.step_network = StepNetwork::parse(&arguments.step_network)
        .with_context(|| format!("unknown --step-network {:?}: use on-request, never or always", arguments.step_network))?;
    let mut labels = BTreeMap::new();
    for label in &arguments.labels {
        let (name, value) = label.split_once('=').unwrap_or((label.as_str(), "true"));
        labels.insert(name.to_owned(), value.to_owned());
    }
    config.labels = labels;
    let shutdown = CancellationToken::new();
    let stopper = shutdown.clone();
    tokio::spawn(async move {
        wait_for_interrupt().await;
        stopper.cancel();
    });
    eprintln!("executor {} taking jobs from {} ({} at a time, {} runtime)", config.name, config.server_url, config.concurrency, runtime.name());
    if runtime != RuntimeKind::Process {
        let limits = config.container_limits();
        let show = |value: Option<String>| value.unwrap_or_else(|| "no limit".to_owned());
        eprintln!(
            "  each step container: cpus {}, memory {}, processes {}, network {}",
            show(limits.cpus.map(|cpus| cpus.to_string())),
            show(limits.memory_bytes.map(|bytes| format!("{} MiB", bytes >> 20))),
            show(limits.pids_limit.map(|pids| pids.to_string())),
            arguments.step_network
        );
    }
    run_executor(config, shutdown).await.map_err(|error| anyhow::anyhow!("{error}"))?;
    Ok(ExitCode::SUCCESS)
}

/// `2G`, `512M`, `1048576` → bytes; `0` (no limit) too.
fn parse_bytes(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, multiplier) = match text.chars().last() {
        Some('G' | 'g') => (&text[..text.len() - 1], 1u64 << 30),
        Some('M' | 'm') => (&text[..text.len() - 1], 1 << 20),
        Some('K' | 'k') => (&text[..text.len() - 1], 1 << 10),
        _ => (text, 1),
    };
    let value: f64 = number.parse().with_context(|| format!("{text:?} is not a size such as 512M or 2G"))?;
    if value < 0.0 || !value.is_finite() {
        bail!("{text:?} must be a positive size, or 0 for no limit");
    }
    Ok((value * multiplier as f64) as u64)
}

async fn wait_for_interrupt() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match terminate.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn write_private(path: &std::path::Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(content.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
