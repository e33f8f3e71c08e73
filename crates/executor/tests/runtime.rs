//! The container runtimes against real podman (with an image built in the test from local
//! files and tagged `alpine:3`, since no registry is reachable) and the process runtime.

use std::path::Path;
use std::time::Duration;

use flotilla_executor::runtime::{
    OutputLine, RuntimeError, RuntimeKind, RuntimeSettings, StepInvocation, check_image, remove_leftover_containers, run_step,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Builds a busybox image and tags it `alpine:3`, once per machine (idempotent).
async fn ensure_test_image() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image");
    let output = tokio::process::Command::new("bash").arg(&script).output().await.expect("run build-test-image");
    assert!(output.status.success(), "building the test image failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// Podman settings, or `None` (with a notice) when podman is missing and the environment
/// does not demand every tool; CI sets FLOTILLA_REQUIRE_ALL_TOOLS=1 so it fails instead.
async fn podman() -> Option<RuntimeSettings> {
    match RuntimeSettings::detect(RuntimeKind::Podman, "flotilla-runtime-test").await {
        Ok(settings) => {
            ensure_test_image().await;
            Some(settings)
        }
        Err(problem) if std::env::var_os("FLOTILLA_REQUIRE_ALL_TOOLS").is_none() => {
            eprintln!("NOTICE: podman unavailable, podman runtime tests not run: {problem}");
            None
        }
        Err(problem) => panic!("podman is required (FLOTILLA_REQUIRE_ALL_TOOLS is set): {problem}"),
    }
}

fn invocation(workspace: &Path, name: &str, script: &str) -> StepInvocation {
    StepInvocation {
        container_name: format!("flotilla-runtime-test-{name}-{}", std::process::id()),
        image: "alpine:3".to_owned(),
        script: script.to_owned(),
        workspace: workspace.to_owned(),
        working_directory: String::new(),
        environment: vec![("GREETING".to_owned(), "hello world".to_owned())],
        files: Vec::new(),
        scratch: workspace.parent().expect("workspace has a parent").join(format!("scratch-{name}")),
        network: false,
        timeout: None,
    }
}

async fn run(settings: &RuntimeSettings, step: &StepInvocation) -> (Result<flotilla_executor::runtime::StepExit, RuntimeError>, Vec<OutputLine>) {
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let result = run_step(settings, step, sender, CancellationToken::new()).await;
    let mut lines = Vec::new();
    while let Ok(line) = receiver.try_recv() {
        lines.push(line);
    }
    (result, lines)
}

fn workspace() -> (tempfile::TempDir, std::path::PathBuf) {
    let directory = tempfile::tempdir().expect("temp dir");
    let workspace = directory.path().join("workspace");
    std::fs::create_dir_all(workspace.join("sub")).expect("create workspace");
    std::fs::write(workspace.join("README.md"), "hi\n").expect("write file");
    (directory, workspace)
}

#[tokio::test]
async fn process_runtime_runs_in_the_workspace_with_env_and_exit_code() {
    let (_guard, workspace) = workspace();
    let settings = RuntimeSettings::detect(RuntimeKind::Process, "test").await.expect("process runtime");
    let step = invocation(&workspace, "process", "echo \"$GREETING\"; echo oops >&2; echo changed >> README.md; exit 3");
    let (result, lines) = run(&settings, &step).await;
    let exit = result.expect("runs");
    assert_eq!(exit.exit_code, Some(3));
    assert!(lines.contains(&OutputLine::Stdout("hello world".into())));
    assert!(lines.contains(&OutputLine::Stderr("oops".into())));
    assert_eq!(std::fs::read_to_string(workspace.join("README.md")).expect("read"), "hi\nchanged\n");
}

#[tokio::test]
async fn process_runtime_times_out_and_cancels() {
    let (_guard, workspace) = workspace();
    let settings = RuntimeSettings::detect(RuntimeKind::Process, "test").await.expect("process runtime");
    let mut step = invocation(&workspace, "timeout", "sleep 30");
    step.timeout = Some(Duration::from_millis(300));
    let (result, _) = run(&settings, &step).await;
    let exit = result.expect("runs");
    assert!(exit.timed_out && exit.exit_code.is_none(), "{exit:?}");
    assert!(exit.duration < Duration::from_secs(5));
}

#[tokio::test]
async fn podman_runs_steps_isolated_with_files_and_working_directory() {
    let Some(settings) = podman().await else { return };
    let (_guard, workspace) = workspace();
    let mut step = invocation(
        &workspace,
        "podman",
        "pwd; echo \"$GREETING\"; cat /etc/flotilla-test/config.txt; echo from-container > created.txt; (echo x >> /etc/flotilla-test/config.txt) 2>/dev/null || echo files-are-read-only",
    );
    step.working_directory = "sub".to_owned();
    step.files = vec![("/etc/flotilla-test/config.txt".to_owned(), b"config content\n".to_vec())];
    let (result, lines) = run(&settings, &step).await;
    let exit = result.expect("runs");
    assert_eq!(exit.exit_code, Some(0), "{lines:?}");
    assert!(lines.contains(&OutputLine::Stdout("/work/sub".into())), "{lines:?}");
    assert!(lines.contains(&OutputLine::Stdout("hello world".into())), "{lines:?}");
    assert!(lines.contains(&OutputLine::Stdout("config content".into())), "{lines:?}");
    assert!(lines.contains(&OutputLine::Stdout("files-are-read-only".into())), "{lines:?}");
    assert_eq!(std::fs::read_to_string(workspace.join("sub/created.txt")).expect("step wrote into the workspace"), "from-container\n");
}

/// A TCP server on every interface of the host that answers `hello-from-host` once; a
/// container with a network reaches it through its default gateway (the host's bridge).
fn host_listener() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").expect("bind a host port");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        if let Ok((mut connection, _)) = listener.accept() {
            use std::io::Write;
            let _ = connection.write_all(b"hello-from-host\n");
        }
    });
    port
}

/// A script that connects to the host listener through the default gateway, if any.
fn connect_to_host(port: u16) -> String {
    format!("ls /sys/class/net; gateway=$(ip route | awk '/default/ {{print $3}}'); echo \"gateway=$gateway\"; nc -w 3 \"${{gateway:-10.88.0.1}}\" {port} || echo no-connection")
}

fn stdout_lines(lines: &[OutputLine]) -> Vec<&str> {
    lines.iter().filter_map(|line| match line { OutputLine::Stdout(text) => Some(text.as_str()), _ => None }).collect()
}

#[tokio::test]
async fn podman_has_no_network_by_default() {
    let Some(settings) = podman().await else { return };
    let (_guard, workspace) = workspace();
    let step = invocation(&workspace, "network", &connect_to_host(host_listener()));
    let (result, lines) = run(&settings, &step).await;
    assert_eq!(result.expect("runs").exit_code, Some(0));
    let stdout = stdout_lines(&lines);
    assert_eq!(stdout, vec!["lo", "gateway=", "no-connection"], "only loopback, no route, no connection: {lines:?}");
}

#[tokio::test]
async fn podman_gives_a_network_to_a_step_that_asks() {
    let Some(settings) = podman().await else { return };
    let (_guard, workspace) = workspace();
    let mut step = invocation(&workspace, "with-network", &connect_to_host(host_listener()));
    step.network = true;
    let (result, lines) = run(&settings, &step).await;
    assert_eq!(result.expect("runs").exit_code, Some(0));
    let stdout = stdout_lines(&lines);
    assert!(stdout.contains(&"hello-from-host"), "the step reached a server on the host: {lines:?}");
    assert!(!stdout.contains(&"no-connection"), "{lines:?}");
}

/// A tiny Debian package built with the host's `dpkg-deb`: a setuid program, and a data file
/// its postinst gives to another user.
fn build_test_package(directory: &Path) -> Vec<u8> {
    let root = directory.join("flotilla-hello");
    std::fs::create_dir_all(root.join("DEBIAN")).expect("create package");
    std::fs::create_dir_all(root.join("usr/bin")).expect("create package");
    std::fs::create_dir_all(root.join("usr/share/flotilla-hello")).expect("create package");
    std::fs::write(root.join("DEBIAN/control"), "Package: flotilla-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: Flotilla <test@example.com>\nDescription: test\n").expect("write control");
    std::fs::write(root.join("DEBIAN/postinst"), "#!/bin/sh\nchown 100:100 /usr/share/flotilla-hello/data\nchmod 640 /usr/share/flotilla-hello/data\n").expect("write postinst");
    std::fs::write(root.join("usr/share/flotilla-hello/data"), "data\n").expect("write data");
    std::fs::write(root.join("usr/bin/flotilla-hello"), "#!/bin/sh\necho hello-installed\n").expect("write program");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(root.join("DEBIAN/postinst"), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(root.join("usr/bin/flotilla-hello"), std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let package = directory.join("flotilla-hello.deb");
    let built = std::process::Command::new("dpkg-deb").args(["--root-owner-group", "-b"]).arg(&root).arg(&package).output().expect("run dpkg-deb (Debian's dpkg)");
    assert!(built.status.success(), "dpkg-deb failed: {}", String::from_utf8_lossy(&built.stderr));
    std::fs::read(&package).expect("read the package")
}

#[tokio::test]
async fn podman_steps_are_not_privileged_but_root_can_still_install_packages() {
    let Some(settings) = podman().await else { return };
    let (_guard, workspace) = workspace();
    let script = concat!(
        "grep -E '^(CapEff|NoNewPrivs):' /proc/self/status\n",
        // No mounts (CAP_SYS_ADMIN), no device nodes (CAP_MKNOD).
        "mkdir -p /tmp/mnt; mount -t tmpfs none /tmp/mnt 2>/dev/null && echo mounted || echo mount-refused\n",
        "mknod /tmp/disk b 8 0 2>/dev/null && echo mknod-allowed || echo mknod-refused\n",
        // What a root package install does: own files for other users, read and replace
        // them regardless of their mode, and drop to an unprivileged user (apt's `_apt`).
        "mkdir -p /var/lib/pkg && echo data > /var/lib/pkg/file && chown 100:100 /var/lib/pkg/file && chmod 600 /var/lib/pkg/file\n",
        "cat /var/lib/pkg/file && echo more >> /var/lib/pkg/file && chmod 4755 /var/lib/pkg/file && echo owner-ok\n",
        "echo 'pkg:x:100:100::/tmp:/bin/sh' >> /etc/passwd && echo 'pkg:x:100:' >> /etc/group && su -s /bin/sh -c 'id -u' pkg\n",
        // A real package install with the image's dpkg: unpack, a postinst that chowns, a
        // setuid file kept as packaged.
        "mkdir -p /var/lib/dpkg/info /usr/bin && touch /var/lib/dpkg/status && dpkg -i /tmp/flotilla-hello.deb >/dev/null && flotilla-hello\n",
        "stat -c '%u:%g %a' /usr/share/flotilla-hello/data /usr/bin/flotilla-hello\n",
    );
    let mut step = invocation(&workspace, "privileges", script);
    step.files = vec![("/tmp/flotilla-hello.deb".to_owned(), build_test_package(workspace.parent().expect("parent")))];
    let (result, lines) = run(&settings, &step).await;
    assert_eq!(result.expect("runs").exit_code, Some(0), "{lines:?}");
    let stdout = stdout_lines(&lines);
    let capabilities = stdout.iter().find_map(|line| line.strip_prefix("CapEff:")).expect("CapEff printed").trim();
    let capabilities = u64::from_str_radix(capabilities, 16).expect("hex capabilities");
    const CAP_NET_RAW: u32 = 13;
    const CAP_SYS_ADMIN: u32 = 21;
    const CAP_MKNOD: u32 = 27;
    for (name, bit) in [("CAP_SYS_ADMIN", CAP_SYS_ADMIN), ("CAP_NET_RAW", CAP_NET_RAW), ("CAP_MKNOD", CAP_MKNOD)] {
        assert_eq!(capabilities & (1 << bit), 0, "{name} must be dropped: CapEff {capabilities:x}");
    }
    assert!(stdout.iter().any(|line| line.starts_with("NoNewPrivs:") && line.trim_end().ends_with('1')), "no-new-privileges: {lines:?}");
    for expected in ["mount-refused", "mknod-refused", "data", "owner-ok", "100", "hello-installed", "100:100 640", "0:0 4755"] {
        assert!(stdout.contains(&expected), "expected {expected:?}: {lines:?}");
    }
}

#[tokio::test]
async fn podman_only_the_workspace_is_writable_and_nothing_outlives_the_container() {
    let Some(settings) = podman().await else { return };
    let (guard, workspace) = workspace();
    let marker = format!("flotilla-isolation-{}", std::process::id());
    let script = format!(
        concat!(
            "(echo x >> /flotilla-step.sh) 2>/dev/null && echo script-writable || echo script-read-only\n",
            "(echo x >> /etc/flotilla/config.txt) 2>/dev/null && echo file-writable || echo file-read-only\n",
            "(rm -f /etc/flotilla/config.txt) 2>/dev/null; test -e /etc/flotilla/config.txt && echo file-kept\n",
            // Writable outside /work, but only inside this container's own filesystem.
            "echo \"left-$((6 * 7))\" > /tmp/{marker} && echo \"left-$((6 * 7))\" > /{marker} && echo wrote-outside\n",
            "echo kept > /work/kept.txt\n",
        ),
        marker = marker
    );
    let mut step = invocation(&workspace, "writable", &script);
    step.files = vec![("/etc/flotilla/config.txt".to_owned(), b"original\n".to_vec())];
    let (result, lines) = run(&settings, &step).await;
    assert_eq!(result.expect("runs").exit_code, Some(0), "{lines:?}");
    let stdout = stdout_lines(&lines);
    for expected in ["script-read-only", "file-read-only", "file-kept", "wrote-outside"] {
        assert!(stdout.contains(&expected), "expected {expected:?}: {lines:?}");
    }
    // The host: the workspace has the step's file; the mounted copies are unchanged; nothing
    // written outside /work exists anywhere under the test's folder or the host's /tmp and /.
    assert_eq!(std::fs::read_to_string(workspace.join("kept.txt")).expect("the workspace is writable"), "kept\n");
    assert_eq!(std::fs::read_to_string(step.scratch.join("file-0")).expect("mounted file"), "original\n");
    assert_eq!(std::fs::read_to_string(step.scratch.join("step.sh")).expect("script"), script);
    for path in [std::path::PathBuf::from("/tmp").join(&marker), std::path::PathBuf::from("/").join(&marker)] {
        assert!(!path.exists(), "{} leaked to the host", path.display());
    }
    let found = std::process::Command::new("grep").args(["-rl", "left-42"]).arg(guard.path()).output().expect("grep");
    assert!(String::from_utf8_lossy(&found.stdout).trim().is_empty(), "leaked into {}", String::from_utf8_lossy(&found.stdout));

    // The container is gone, and the next step's container starts from the image again.
    let listed = std::process::Command::new("podman").args(["ps", "--all", "--quiet", "--filter", &format!("name={}", step.container_name)]).output().expect("podman ps");
    assert!(String::from_utf8_lossy(&listed.stdout).trim().is_empty(), "the container was removed");
    let next = invocation(&workspace, "writable-next", &format!("test -e /tmp/{marker} || test -e /{marker} && echo carried-over || echo fresh; cat /work/kept.txt"));
    let (result, lines) = run(&settings, &next).await;
    assert_eq!(result.expect("runs").exit_code, Some(0), "{lines:?}");
    assert_eq!(stdout_lines(&lines), vec!["fresh", "kept"], "only the workspace carries over: {lines:?}");
}

#[tokio::test]
async fn podman_step_timeout_kills_and_removes_the_container() {
    let Some(settings) = podman().await else { return };
    let (_guard, workspace) = workspace();
    let mut step = invocation(&workspace, "timeout", "sleep 60");
    step.timeout = Some(Duration::from_secs(2));
    let started = std::time::Instant::now();
    let (result, _) = run(&settings, &step).await;
    let exit = result.expect("runs");
    assert!(exit.timed_out && exit.exit_code.is_none(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    let listed = std::process::Command::new("podman").args(["ps", "--all", "--quiet", "--filter", &format!("name={}", step.container_name)]).output().expect("podman ps");
    assert!(String::from_utf8_lossy(&listed.stdout).trim().is_empty(), "the container is gone");
}

#[tokio::test]
async fn podman_cancel_kills_the_container_within_seconds() {
    let Some(settings) = podman().await else { return };
    let (_guard, workspace) = workspace();
    let step = invocation(&workspace, "cancel", "sleep 60");
    let cancel = CancellationToken::new();
    let (sender, _receiver) = mpsc::unbounded_channel();
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        canceller.cancel();
    });
    let started = std::time::Instant::now();
    let exit = run_step(&settings, &step, sender, cancel).await.expect("runs");
    assert!(exit.canceled, "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    let listed = std::process::Command::new("podman").args(["ps", "--all", "--quiet", "--filter", &format!("name={}", step.container_name)]).output().expect("podman ps");
    assert!(String::from_utf8_lossy(&listed.stdout).trim().is_empty(), "the container is gone");
}

#[tokio::test]
async fn missing_image_fails_with_a_message_saying_what_to_do() {
    let Some(settings) = podman().await else { return };
    let problem = check_image(&settings, "registry.example/not-here:1").await.expect_err("missing image");
    let message = problem.to_string();
    assert!(message.contains("is not on this executor and cannot be pulled"), "{message}");
    let (_guard, workspace) = workspace();
    let mut step = invocation(&workspace, "missing", "true");
    step.image = "registry.example/not-here:1".to_owned();
    let (result, _) = run(&settings, &step).await;
    match result {
        Err(RuntimeError::Image(message)) => assert!(message.contains("cannot be pulled"), "{message}"),
        other => panic!("expected an image error, got {other:?}"),
    }
}

#[tokio::test]
async fn leftover_containers_are_removed_on_start() {
    let Some(mut settings) = podman().await else { return };
    settings.owner_label = format!("leftover-test-{}", std::process::id());
    let name = format!("flotilla-leftover-{}", std::process::id());
    let created = std::process::Command::new("podman")
        .args(["--runtime", settings.oci_runtime.as_deref().unwrap_or("runc"), "create", "--name", &name, "--label", &format!("flotilla.owner={}", settings.owner_label), "alpine:3", "true"])
        .output()
        .expect("podman create");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    assert_eq!(remove_leftover_containers(&settings).await.expect("clean up"), 1);
    assert_eq!(remove_leftover_containers(&settings).await.expect("clean up again"), 0);
}
