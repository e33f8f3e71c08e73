//! Container runtimes: run one step's script in a container (podman or docker through their
//! CLI) or, by explicit opt-in, directly on the machine (`process`).
//!
//! The CLI rather than an API socket, because podman needs no daemon that way, the commands
//! in the logs can be pasted into a terminal, and docker and podman take the same flags.
//! Isolation defaults (see [`container_arguments`]): no network unless the step asks for it
//! (`network: true`), never privileged, `no-new-privileges`, only the capabilities a root
//! package install needs, limits on processes, memory and CPU, and the workspace the only
//! writable host mount (the script and files are mounted read-only; nothing else of the host
//! is mounted). The container is removed after the step (`--rm`, or `rm --force` on a timeout
//! or cancel). Environment values go through an `--env-file`, never argv, so secrets do not
//! show in `ps`.
//!
//! Failures of the runtime itself (not the step) are turned into messages that say how to
//! fix them, including the two that these VMs need (see `../shared/ENVIRONMENT.md`): crun
//! refusing hybrid cgroups (use runc) and `setrlimit` being forbidden (lower ulimits).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Which runtime runs steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Podman,
    Docker,
    /// No isolation: the script runs as a process of the executor, in the workspace.
    Process,
}

impl RuntimeKind {
    pub fn parse(text: &str) -> Option<RuntimeKind> {
        match text {
            "podman" => Some(RuntimeKind::Podman),
            "docker" => Some(RuntimeKind::Docker),
            "process" => Some(RuntimeKind::Process),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Podman => "podman",
            RuntimeKind::Docker => "docker",
            RuntimeKind::Process => "process",
        }
    }
}

/// Which steps get a network (`flotilla executor --step-network`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StepNetwork {
    /// Only steps that say `network: true` (the default).
    #[default]
    OnRequest,
    /// None: a step that asks for a network fails, saying so.
    Never,
    /// Every step, as Sourcegraph's executors do: for unchanged specs that install packages.
    Always,
}

impl StepNetwork {
    pub fn parse(text: &str) -> Option<StepNetwork> {
        match text {
            "on-request" => Some(StepNetwork::OnRequest),
            "never" => Some(StepNetwork::Never),
            "always" => Some(StepNetwork::Always),
            _ => None,
        }
    }

    /// Whether a step gets a network, or why it cannot run here.
    pub fn decide(self, step_asks: bool) -> Result<bool, String> {
        match (self, step_asks) {
            (StepNetwork::Always, _) => Ok(true),
            (StepNetwork::OnRequest, asks) => Ok(asks),
            (StepNetwork::Never, false) => Ok(false),
            (StepNetwork::Never, true) => Err(
                "it asks for a network (`network: true`), but this executor runs steps without one (--step-network never); route the spec to executors that allow it with `executor: {labels: ...}`".to_owned(),
            ),
        }
    }
}

/// Settings that apply to every container an executor starts.
#[derive(Clone, Debug)]
pub struct RuntimeSettings {
    pub kind: RuntimeKind,
    /// The container CLI binary (`podman`, `docker`, or a path).
    pub binary: PathBuf,
    /// podman's OCI runtime (`--runtime`), e.g. `runc` on hosts where crun fails.
    pub oci_runtime: Option<String>,
    /// `--ulimit` values, e.g. `nofile=1024:1024`, for hosts that forbid raising limits.
    pub ulimits: Vec<String>,
    /// CPU limit per container (`--cpus`); `None` for none.
    pub cpus: Option<f64>,
    /// Memory limit per container in bytes (`--memory`, with as much `--memory-swap`, so a
    /// step cannot swap its way past it); `None` for none.
    pub memory_bytes: Option<u64>,
    /// Most processes and threads per container (`--pids-limit`): a fork bomb stops there.
    /// `None` for the runtime's own default.
    pub pids_limit: Option<u64>,
    /// Label put on every container, so a restarted executor can remove what it left behind.
    pub owner_label: String,
}

impl RuntimeSettings {
    /// Settings for a runtime kind, detecting what this host needs.
    pub async fn detect(kind: RuntimeKind, owner_label: &str) -> Result<RuntimeSettings, RuntimeError> {
        let binary = PathBuf::from(kind.name());
        let mut settings = RuntimeSettings {
            kind,
            binary,
            oci_runtime: None,
            ulimits: Vec::new(),
            cpus: None,
            memory_bytes: None,
            pids_limit: None,
            owner_label: owner_label.to_owned(),
        };
        let limits = ContainerLimits::defaults(1);
        settings.cpus = limits.cpus;
        settings.memory_bytes = limits.memory_bytes;
        settings.pids_limit = limits.pids_limit;
        if kind == RuntimeKind::Process {
            return Ok(settings);
        }
        let version = Command::new(&settings.binary).arg("--version").output().await.map_err(|error| {
            RuntimeError::Unavailable(format!(
                "cannot run `{}`: {error}. Install it (Debian: apt-get install podman runc), or choose another runtime with --runtime",
                kind.name()
            ))
        })?;
        if !version.status.success() {
            return Err(RuntimeError::Unavailable(format!("`{} --version` failed: {}", kind.name(), String::from_utf8_lossy(&version.stderr).trim())));
        }
        if kind == RuntimeKind::Podman {
            // crun (podman's default) refuses hybrid cgroup hierarchies; runc works there.
            let info = Command::new(&settings.binary)
                .args(["info", "--format", "{{.Host.OCIRuntime.Name}} {{.Host.CgroupsVersion}}"])
                .output()
                .await
                .map_err(|error| RuntimeError::Unavailable(format!("`podman info` failed: {error}")))?;
            let info = String::from_utf8_lossy(&info.stdout).to_string();
            let cgroups_v1_or_hybrid = info.split_whitespace().nth(1).is_some_and(|version| version != "v2");
            if cgroups_v1_or_hybrid && info.starts_with("crun") && which("runc").is_some() {
                settings.oci_runtime = Some("runc".to_owned());
            }
            // Some VMs forbid raising RLIMIT_NOFILE/NPROC to podman's defaults.
            settings.ulimits = vec!["nofile=1024:1024".to_owned(), "nproc=1024:1024".to_owned()];
        }
        Ok(settings)
    }
}

/// Most processes and threads a step container may have unless the executor says otherwise
/// (`--pids-limit`). Large builds (make -j, Go, a JVM) stay well under it; a fork bomb stops
/// at it instead of taking the machine.
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;

/// Resource limits for each step container. `None` means no limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContainerLimits {
    pub cpus: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub pids_limit: Option<u64>,
}

impl ContainerLimits {
    /// The defaults for an executor running `concurrency` jobs at once on this machine.
    pub fn defaults(concurrency: usize) -> ContainerLimits {
        let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
        ContainerLimits::defaults_for(cores, machine_memory_bytes(), concurrency)
    }

    /// The defaults, pure: the machine's cores and three quarters of its memory shared
    /// between the jobs that run at once (at least one core and 256 MiB each), so that
    /// concurrent steps cannot starve one another or the executor, and 4,096 processes.
    pub fn defaults_for(cores: usize, memory_bytes: Option<u64>, concurrency: usize) -> ContainerLimits {
        let concurrency = concurrency.max(1);
        ContainerLimits {
            cpus: Some((cores as f64 / concurrency as f64).max(1.0)),
            memory_bytes: memory_bytes.map(|total| (total / 4 * 3 / concurrency as u64).max(256 << 20)),
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
        }
    }
}

/// This machine's physical memory, if the system says.
fn machine_memory_bytes() -> Option<u64> {
    // SAFETY: sysconf only reads system configuration.
    let (pages, page_size) = unsafe { (libc::sysconf(libc::_SC_PHYS_PAGES), libc::sysconf(libc::_SC_PAGESIZE)) };
    (pages > 0 && page_size > 0).then(|| pages as u64 * page_size as u64)
}

/// Capabilities a step's root keeps: what a package manager run as root needs (apt and dpkg
/// change owners and modes, drop to the `_apt` user, set file capabilities; npm and pip write
/// files of other users; a test server may bind a low port). Everything else is dropped,
/// notably `SYS_ADMIN` (mounts), `NET_RAW` (forged packets), `MKNOD` (devices), `SYS_CHROOT`,
/// `SETPCAP` and `AUDIT_WRITE`; docker's and podman's defaults differ, so the list is explicit.
pub const KEPT_CAPABILITIES: &[&str] = &["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETFCAP", "NET_BIND_SERVICE"];

/// Finds an executable on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|directory| directory.join(name)).find(|candidate| candidate.is_file())
}

/// One step to run.
#[derive(Clone, Debug)]
pub struct StepInvocation {
    /// Unique name for the container (also used for clean-up).
    pub container_name: String,
    pub image: String,
    /// The script, already rendered. Run with `/bin/sh`.
    pub script: String,
    /// The workspace on the host, mounted at `/work`.
    pub workspace: PathBuf,
    /// The step's working directory relative to the workspace ("" for the root).
    pub working_directory: String,
    pub environment: Vec<(String, String)>,
    /// Files to mount read-only: (container path, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// Scratch space on the host for the script, env file and files of this step.
    pub scratch: PathBuf,
    pub network: bool,
    pub timeout: Option<Duration>,
}

/// A line of output from a running step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputLine {
    Stdout(String),
    Stderr(String),
}

/// How a step ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepExit {
    /// The script's exit code; `None` when it was killed (timeout, cancel).
    pub exit_code: Option<i32>,
    pub duration: Duration,
    pub timed_out: bool,
    pub canceled: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime cannot be used at all on this machine.
    #[error("{0}")]
    Unavailable(String),
    /// The image is missing and cannot be pulled, or is for another architecture.
    #[error("{0}")]
    Image(String),
    /// The runtime failed to start the container (not the step failing).
    #[error("{0}")]
    Start(String),
    #[error("{0}")]
    Io(String),
    /// The step wrote more output than an executor keeps; it was stopped.
    #[error("{0}")]
    OutputTooLarge(String),
}

/// Runs one step, sending each output line as it appears.
pub async fn run_step(
    settings: &RuntimeSettings,
    invocation: &StepInvocation,
    output: mpsc::UnboundedSender<OutputLine>,
    cancel: CancellationToken,
) -> Result<StepExit, RuntimeError> {
    tokio::fs::create_dir_all(&invocation.scratch)
        .await
        .map_err(|error| RuntimeError::Io(format!("creating {}: {error}", invocation.scratch.display())))?;
    let script_path = invocation.scratch.join("step.sh");
    write_file(&script_path, invocation.script.as_bytes()).await?;
    let mut command = match settings.kind {
        RuntimeKind::Process => process_command(invocation, &script_path).await?,
        RuntimeKind::Podman | RuntimeKind::Docker => container_command(settings, invocation, &script_path).await?,
    };
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    // Its own process group, so a timeout or cancel kills the script's children too (a
    // killed shell would otherwise leave `sleep` holding the output pipes open).
    command.process_group(0);
    let started = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|error| RuntimeError::Start(format!("starting {}: {error}", settings.binary.display())))?;
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take().expect("stderr was piped");
    // Container runtimes print their own failures on stderr; keep the tail to explain them.
    let (stderr_tail_sender, mut stderr_tail) = mpsc::unbounded_channel::<String>();
    let stdout_task = tokio::spawn(forward_lines(stdout, output.clone(), OutputLine::Stdout, None));
    let stderr_task = tokio::spawn(forward_lines(stderr, output, OutputLine::Stderr, Some(stderr_tail_sender)));

    let timeout = invocation.timeout.unwrap_or(Duration::from_secs(24 * 3600));
    let (status, timed_out, canceled) = tokio::select! {
        status = child.wait() => (Some(status.map_err(|error| RuntimeError::Io(format!("waiting for the step: {error}")))?), false, false),
        _ = tokio::time::sleep(timeout) => (None, true, false),
        _ = cancel.cancelled() => (None, false, true),
    };
    if status.is_none() {
        if let Some(process_id) = child.id() {
            kill_process_group(process_id);
        }
        let _ = child.start_kill();
        if settings.kind != RuntimeKind::Process {
            remove_container(settings, &invocation.container_name).await;
        }
        let _ = child.wait().await;
    }
    // Output readers end when every writer is gone; bound the wait in case something
    // detached still holds a pipe.
    let _ = tokio::time::timeout(Duration::from_secs(5), stdout_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(5), stderr_task).await;
    let duration = started.elapsed();
    let exit_code = status.and_then(|status| status.code());
    if settings.kind != RuntimeKind::Process && exit_code.is_some_and(|code| code >= 125) {
        // 125-127 are the runtime's own failures (docker run's documented codes), unless
        // the script itself used them; decide from what the runtime printed.
        let mut tail = Vec::new();
        while let Ok(line) = stderr_tail.try_recv() {
            tail.push(line);
        }
        if let Some(problem) = explain_runtime_failure(settings, &invocation.image, &tail.join("\n")) {
            return Err(problem);
        }
    }
    Ok(StepExit { exit_code, duration, timed_out, canceled })
}

fn kill_process_group(process_id: u32) {
    // SAFETY: kill(2) with a negative pid signals a process group; it has no memory effects.
    unsafe {
        libc::kill(-(process_id as i32), libc::SIGKILL);
    }
}

async fn write_file(path: &Path, content: &[u8]) -> Result<(), RuntimeError> {
    tokio::fs::write(path, content).await.map_err(|error| RuntimeError::Io(format!("writing {}: {error}", path.display())))
}

async fn process_command(invocation: &StepInvocation, script_path: &Path) -> Result<Command, RuntimeError> {
    // Without containers, `files` are written to scratch space and their container paths
    // cannot exist; absolute targets are refused rather than written over the host.
    if let Some((target, _)) = invocation.files.first() {
        return Err(RuntimeError::Start(format!(
            "the process runtime cannot provide the file {target} (steps' `files` need a container runtime); use --runtime podman or docker"
        )));
    }
    let mut command = Command::new("/bin/sh");
    command.arg(script_path);
    let directory = invocation.workspace.join(&invocation.working_directory);
    command.current_dir(directory).env_clear();
    command.env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command.env("HOME", &invocation.scratch);
    for (name, value) in &invocation.environment {
        command.env(name, value);
    }
    Ok(command)
}

async fn container_command(
    settings: &RuntimeSettings,
    invocation: &StepInvocation,
    script_path: &Path,
) -> Result<Command, RuntimeError> {
    let env_file = invocation.scratch.join("step.env");
    let mut env_text = String::new();
    for (name, value) in &invocation.environment {
        if value.contains('\n') {
            return Err(RuntimeError::Start(format!(
                "the environment variable {name} has a newline in its value, which container runtimes cannot pass; put multi-line content in `files` instead"
            )));
        }
        env_text.push_str(&format!("{name}={value}\n"));
    }
    write_file(&env_file, env_text.as_bytes()).await?;
    let mut file_mounts = Vec::with_capacity(invocation.files.len() + 1);
    // The executor runs git on the workspace outside the container (to compute the diff), so
    // a step must not be able to change what that git reads: a `[filter]` in `.git/config`
    // would run a command on the executor's machine, `objects/info/alternates` or `HEAD` could
    // point the diff at other repositories' objects. Steps may read the repository.
    let git_dir = invocation.workspace.join(".git");
    if git_dir.is_dir() {
        file_mounts.push((git_dir, "/work/.git".to_owned()));
    }
    for (index, (target, content)) in invocation.files.iter().enumerate() {
        let host = invocation.scratch.join(format!("file-{index}"));
        write_file(&host, content).await?;
        file_mounts.push((host, target.clone()));
    }
    let mut command = Command::new(&settings.binary);
    command.args(container_arguments(settings, invocation, &env_file, script_path, &file_mounts));
    Ok(command)
}

/// The container CLI's arguments for one step, pure so that the isolation it promises can be
/// read and tested in one place. `file_mounts` are (host path, container path) of the step's
/// `files` and `mount` entries.
pub fn container_arguments(
    settings: &RuntimeSettings,
    invocation: &StepInvocation,
    env_file: &Path,
    script_path: &Path,
    file_mounts: &[(PathBuf, String)],
) -> Vec<std::ffi::OsString> {
    let mut arguments: Vec<std::ffi::OsString> = Vec::new();
    let mut push = |values: &[&str]| arguments.extend(values.iter().map(std::ffi::OsString::from));
    if let Some(oci_runtime) = &settings.oci_runtime {
        push(&["--runtime", oci_runtime]);
    }
    push(&["run", "--rm", "--init", "--pull=never", "--name", &invocation.container_name]);
    push(&["--label", &format!("flotilla.owner={}", settings.owner_label)]);
    if !invocation.network {
        push(&["--network", "none"]);
    }
    // Never `--privileged`; no gaining privileges through setuid binaries; a short list of
    // capabilities instead of the runtime's defaults.
    push(&["--security-opt", "no-new-privileges", "--cap-drop", "ALL"]);
    for capability in KEPT_CAPABILITIES {
        push(&["--cap-add", capability]);
    }
    for limit in &settings.ulimits {
        push(&["--ulimit", limit]);
    }
    if let Some(pids) = settings.pids_limit {
        push(&["--pids-limit", &pids.to_string()]);
    }
    if let Some(cpus) = settings.cpus {
        push(&["--cpus", &cpus.to_string()]);
    }
    if let Some(memory) = settings.memory_bytes {
        push(&["--memory", &memory.to_string(), "--memory-swap", &memory.to_string()]);
    }
    arguments.push("--env-file".into());
    arguments.push(env_file.into());
    // The only host paths in the container: the workspace (writable), the script, the step's
    // files and the workspace's `.git` (read-only, mounted over the workspace's).
    arguments.push("-v".into());
    arguments.push(format!("{}:/work", invocation.workspace.display()).into());
    arguments.push("-v".into());
    arguments.push(format!("{}:/flotilla-step.sh:ro", script_path.display()).into());
    for (host, target) in file_mounts {
        arguments.push("-v".into());
        arguments.push(format!("{}:{target}:ro", host.display()).into());
    }
    let working_directory = if invocation.working_directory.is_empty() {
        "/work".to_owned()
    } else {
        format!("/work/{}", invocation.working_directory)
    };
    for value in ["-w", &working_directory, "--entrypoint", "/bin/sh", &invocation.image, "/flotilla-step.sh"] {
        arguments.push(value.into());
    }
    arguments
}

/// Why a step that exited non-zero in a container most likely did, when a limit of this
/// executor explains it: exit code 137 (SIGKILL, what the kernel's out-of-memory killer
/// sends) under a memory limit, or a shell that could not fork under a process limit.
pub fn limit_explanation(settings: &RuntimeSettings, exit_code: i32, stderr: &str) -> Option<String> {
    if settings.kind == RuntimeKind::Process {
        return None;
    }
    if exit_code == 137
        && let Some(memory) = settings.memory_bytes
    {
        return Some(format!(
            "it was killed with SIGKILL, most likely because it ran out of memory: each step container may use at most {} on this executor (raise it with `flotilla executor --memory`, or make the step use less)",
            human_bytes(memory)
        ));
    }
    let lower = stderr.to_ascii_lowercase();
    let could_not_fork = lower.contains("can't fork")
        || lower.contains("cannot fork")
        || (lower.contains("fork") && lower.contains("resource temporarily unavailable"));
    if could_not_fork && let Some(pids) = settings.pids_limit {
        return Some(format!(
            "it could not start more processes: each step container may run at most {pids} processes and threads on this executor (raise it with `flotilla executor --pids-limit`)"
        ));
    }
    None
}

/// `1.5 GiB`, `64 MiB`, `512 KiB`, `100 bytes`.
fn human_bytes(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if value.fract() == 0.0 { format!("{value:.0} {unit}") } else { format!("{value:.1} {unit}") };
        }
    }
    format!("{bytes} bytes")
}

/// The longest piece of output sent as one line; longer lines arrive as several.
const MAX_LINE_BYTES: u64 = 1024 * 1024;

async fn forward_lines<Reader: AsyncRead + Unpin>(
    reader: Reader,
    output: mpsc::UnboundedSender<OutputLine>,
    wrap: fn(String) -> OutputLine,
    tail: Option<mpsc::UnboundedSender<String>>,
) {
    let mut lines = BufReader::new(reader);
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        // A line is read in pieces of at most MAX_LINE_BYTES: a step printing gigabytes
        // without a newline must not be held in memory whole.
        match (&mut lines).take(MAX_LINE_BYTES).read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let line = String::from_utf8_lossy(&buffer).trim_end_matches(['\n', '\r']).to_owned();
                if let Some(tail) = &tail {
                    let _ = tail.send(line.clone());
                }
                let _ = output.send(wrap(line));
            }
        }
    }
}

/// Turns what a container runtime printed into a message that says how to fix it, if it
/// is a runtime failure rather than the step's own output.
pub fn explain_runtime_failure(settings: &RuntimeSettings, image: &str, stderr: &str) -> Option<RuntimeError> {
    let runtime = settings.kind.name();
    if stderr.contains("cgroups in hybrid mode not supported") || stderr.contains("crun: cgroups") {
        return Some(RuntimeError::Unavailable(format!(
            "{runtime}'s OCI runtime crun cannot run containers on this machine's hybrid cgroup layout: install runc (apt-get install runc) and set `runtime = \"runc\"` under [engine] in /etc/containers/containers.conf"
        )));
    }
    if stderr.contains("setrlimit") && stderr.contains("operation not permitted") {
        return Some(RuntimeError::Unavailable(format!(
            "this machine forbids raising file or process limits inside containers: set `default_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]` under [containers] in /etc/containers/containers.conf (or run the executor with {runtime}, which passes them)"
        )));
    }
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("image not known")
        || lower.contains("no such image")
        || lower.contains("unable to find image")
        || (lower.contains("pull") && (lower.contains("never") || lower.contains("denied") || lower.contains("not found")))
    {
        return Some(RuntimeError::Image(format!(
            "the image {image} is not on this executor and cannot be pulled: load it with `{runtime} load`/`{runtime} import`, or pull it where a registry is reachable"
        )));
    }
    if lower.contains("exec format error") || lower.contains("does not match the specified platform") || lower.contains("image platform") {
        return Some(RuntimeError::Image(format!(
            "the image {image} is built for another architecture than this executor ({}); build it for linux/{} (e.g. docker build --platform linux/{})",
            std::env::consts::ARCH,
            docker_architecture(),
            docker_architecture()
        )));
    }
    if lower.contains("error") && (lower.contains("oci runtime") || lower.contains("container create failed")) {
        let last = stderr.lines().last().unwrap_or_default();
        return Some(RuntimeError::Start(format!("{runtime} could not start the container: {last}")));
    }
    None
}

/// This machine's architecture as container images name it.
pub fn docker_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Removes a container by name, ignoring errors (it may already be gone).
pub async fn remove_container(settings: &RuntimeSettings, name: &str) {
    let _ = Command::new(&settings.binary).args(["rm", "--force", "--time", "0", name]).output().await;
}

/// Removes every container an earlier run of this executor left behind (after a crash).
pub async fn remove_leftover_containers(settings: &RuntimeSettings) -> Result<usize, RuntimeError> {
    if settings.kind == RuntimeKind::Process {
        return Ok(0);
    }
    let listed = Command::new(&settings.binary)
        .args(["ps", "--all", "--quiet", "--filter", &format!("label=flotilla.owner={}", settings.owner_label)])
        .output()
        .await
        .map_err(|error| RuntimeError::Io(format!("listing containers: {error}")))?;
    let names: Vec<String> = String::from_utf8_lossy(&listed.stdout).lines().map(str::to_owned).filter(|line| !line.is_empty()).collect();
    for name in &names {
        remove_container(settings, name).await;
    }
    Ok(names.len())
}

/// The architecture an image was built for, if the runtime knows the image.
pub async fn image_architecture(settings: &RuntimeSettings, image: &str) -> Result<Option<String>, RuntimeError> {
    if settings.kind == RuntimeKind::Process {
        return Ok(None);
    }
    let output = Command::new(&settings.binary)
        .args(["image", "inspect", "--format", "{{.Architecture}}", image])
        .output()
        .await
        .map_err(|error| RuntimeError::Io(format!("inspecting the image {image}: {error}")))?;
    if !output.status.success() {
        return Ok(None);
    }
    let architecture = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    Ok((!architecture.is_empty()).then_some(architecture))
}

/// Checks before running that an image is present and for this architecture, so that the
/// failure message is precise.
pub async fn check_image(settings: &RuntimeSettings, image: &str) -> Result<(), RuntimeError> {
    if settings.kind == RuntimeKind::Process {
        return Ok(());
    }
    match image_architecture(settings, image).await? {
        None => Err(RuntimeError::Image(format!(
            "the image {image} is not on this executor and cannot be pulled: load it with `{runtime} load`/`{runtime} import`, or pull it where a registry is reachable",
            runtime = settings.kind.name()
        ))),
        Some(architecture) if !architecture.is_empty() && architecture != docker_architecture() => Err(RuntimeError::Image(format!(
            "the image {image} is built for linux/{architecture}, but this executor runs linux/{}: rebuild it with --platform linux/{}",
            docker_architecture(),
            docker_architecture()
        ))),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RuntimeSettings {
        RuntimeSettings {
            kind: RuntimeKind::Podman,
            binary: PathBuf::from("podman"),
            oci_runtime: Some("runc".to_owned()),
            ulimits: vec!["nofile=1024:1024".to_owned()],
            cpus: Some(2.0),
            memory_bytes: Some(512 << 20),
            pids_limit: Some(DEFAULT_PIDS_LIMIT),
            owner_label: "owner".to_owned(),
        }
    }

    fn invocation(network: bool) -> StepInvocation {
        StepInvocation {
            container_name: "c".to_owned(),
            image: "alpine:3".to_owned(),
            script: "true".to_owned(),
            workspace: PathBuf::from("/host/jobs/workspace"),
            working_directory: "sub".to_owned(),
            environment: Vec::new(),
            files: Vec::new(),
            scratch: PathBuf::from("/host/jobs/scratch"),
            network,
            timeout: None,
        }
    }

    fn arguments(network: bool) -> Vec<String> {
        let mounts = vec![(PathBuf::from("/host/jobs/scratch/file-0"), "/etc/config.yml".to_owned())];
        container_arguments(&settings(), &invocation(network), Path::new("/host/jobs/scratch/step.env"), Path::new("/host/jobs/scratch/step.sh"), &mounts)
            .into_iter()
            .map(|argument| argument.to_string_lossy().into_owned())
            .collect()
    }

    /// The value after each occurrence of `flag`.
    fn values<'a>(arguments: &'a [String], flag: &str) -> Vec<&'a str> {
        arguments.windows(2).filter(|pair| pair[0] == flag).map(|pair| pair[1].as_str()).collect()
    }

    #[test]
    fn containers_are_unprivileged_limited_and_removed() {
        let arguments = arguments(false);
        assert!(!arguments.iter().any(|argument| argument.contains("privileged")), "{arguments:?}");
        assert!(arguments.contains(&"--rm".to_owned()));
        assert_eq!(values(&arguments, "--security-opt"), ["no-new-privileges"]);
        assert_eq!(values(&arguments, "--cap-drop"), ["ALL"]);
        let kept = values(&arguments, "--cap-add");
        assert!(!kept.iter().any(|capability| ["SYS_ADMIN", "NET_RAW", "MKNOD", "SYS_PTRACE", "NET_ADMIN"].contains(capability)), "{kept:?}");
        assert!(kept.contains(&"CHOWN") && kept.contains(&"SETUID"), "a root package install keeps what it needs: {kept:?}");
        assert_eq!(values(&arguments, "--pids-limit"), ["4096"]);
        assert_eq!(values(&arguments, "--cpus"), ["2"]);
        assert_eq!(values(&arguments, "--memory"), [(512u64 << 20).to_string()]);
        assert_eq!(values(&arguments, "--memory-swap"), [(512u64 << 20).to_string()], "no swap beyond the memory limit");
    }

    #[test]
    fn only_the_workspace_is_a_writable_host_mount() {
        let arguments = arguments(false);
        let mounts = values(&arguments, "-v");
        assert_eq!(mounts, ["/host/jobs/workspace:/work", "/host/jobs/scratch/step.sh:/flotilla-step.sh:ro", "/host/jobs/scratch/file-0:/etc/config.yml:ro"]);
        for flag in ["--volume", "--mount", "--tmpfs", "--device", "--volumes-from", "--pid", "--ipc", "--uts", "--userns"] {
            assert!(!arguments.iter().any(|argument| argument == flag || argument.starts_with(&format!("{flag}="))), "{flag} in {arguments:?}");
        }
        assert_eq!(values(&arguments, "-w"), ["/work/sub"]);
    }

    #[test]
    fn no_network_unless_the_step_asks() {
        assert_eq!(values(&arguments(false), "--network"), ["none"]);
        assert!(values(&arguments(true), "--network").is_empty(), "the runtime's default network");
        assert_eq!(StepNetwork::OnRequest.decide(false), Ok(false));
        assert_eq!(StepNetwork::OnRequest.decide(true), Ok(true));
        assert_eq!(StepNetwork::Always.decide(false), Ok(true));
        assert_eq!(StepNetwork::Never.decide(false), Ok(false));
        assert!(StepNetwork::Never.decide(true).expect_err("refused").contains("--step-network never"));
        assert_eq!(StepNetwork::parse("on-request"), Some(StepNetwork::OnRequest));
        assert_eq!(StepNetwork::parse("sometimes"), None);
    }

    #[test]
    fn unconfigured_limits_share_the_machine_between_concurrent_jobs() {
        let gib = 1u64 << 30;
        let one = ContainerLimits::defaults_for(8, Some(16 * gib), 1);
        assert_eq!(one, ContainerLimits { cpus: Some(8.0), memory_bytes: Some(12 * gib), pids_limit: Some(DEFAULT_PIDS_LIMIT) });
        let four = ContainerLimits::defaults_for(8, Some(16 * gib), 4);
        assert_eq!((four.cpus, four.memory_bytes), (Some(2.0), Some(3 * gib)));
        let crowded = ContainerLimits::defaults_for(2, Some(gib), 16);
        assert_eq!((crowded.cpus, crowded.memory_bytes), (Some(1.0), Some(256 << 20)), "floors");
        assert_eq!(ContainerLimits::defaults_for(2, None, 1).memory_bytes, None, "unknown memory: no limit rather than a guess");
    }

    #[test]
    fn exit_137_and_fork_failures_are_explained_by_the_limits() {
        let settings = settings();
        let memory = limit_explanation(&settings, 137, "").expect("explained");
        assert!(memory.contains("ran out of memory") && memory.contains("512 MiB") && memory.contains("--memory"), "{memory}");
        let pids = limit_explanation(&settings, 2, "sh: can't fork: Resource temporarily unavailable").expect("explained");
        assert!(pids.contains("4096 processes") && pids.contains("--pids-limit"), "{pids}");
        assert!(limit_explanation(&settings, 1, "error: no such file").is_none());
        let process = RuntimeSettings { kind: RuntimeKind::Process, ..settings };
        assert!(limit_explanation(&process, 137, "").is_none(), "no limits without containers");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
