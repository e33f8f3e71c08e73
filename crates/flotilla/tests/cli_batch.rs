//! End-to-end tests of `flotilla batch validate` and `flotilla batch new`, driving the real
//! binary in a temporary directory the way a user would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn flotilla() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
}

fn temporary_directory(name: &str) -> PathBuf {
    let directory = std::env::temp_dir().join(format!("flotilla-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&directory);
    std::fs::create_dir_all(&directory).expect("create temporary directory");
    directory
}

fn run(command: &mut Command) -> Output {
    command.output().expect("run flotilla")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(directory: &Path, name: &str, content: &str) -> PathBuf {
    let path = directory.join(name);
    std::fs::write(&path, content).expect("write spec");
    path
}

#[test]
fn valid_spec_exits_zero_with_a_one_line_summary() {
    let directory = temporary_directory("valid");
    let spec = write(
        &directory,
        "ok.batch.yaml",
        "name: ok\non:\n  - repository: github.com/a/b\nsteps:\n  - run: echo hi\n    container: alpine:3\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n",
    );
    let output = run(flotilla().args(["batch", "validate", "-f"]).arg(&spec));
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.ends_with("valid batch spec \"ok\" (version 1): 1 repository, 1 step\n"), "{stdout}");
}

#[test]
fn invalid_spec_exits_one_with_every_error_located() {
    let directory = temporary_directory("invalid");
    let spec = write(&directory, "bad.yaml", "name: bad name\nsteps:\n  - run: echo\n    contaner: alpine\n");
    let output = run(flotilla().args(["batch", "validate", "-f"]).arg(&spec));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    let file = spec.display().to_string();
    for expected in [
        format!("{file}:1:7: error: name: The batch change name can only contain word characters"),
        format!("{file}:3:5: error: steps[0]: missing required field `container`"),
        format!("{file}:4:5: error: steps[0]: unknown field `contaner`; expected one of: run, container"),
        format!("{file}:3:3: error: changesetTemplate: batch spec includes steps but no changesetTemplate"),
        format!("{file}: invalid batch spec: 4 errors"),
    ] {
        assert!(stderr.contains(&expected), "missing `{expected}` in:\n{stderr}");
    }
    assert!(stderr.contains("4 |     contaner: alpine\n  |     ^^^^^^^^"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn reads_standard_input_with_dash() {
    let mut child = flotilla()
        .args(["batch", "validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(b"name: from-stdin\n").expect("write stdin");
    let output = child.wait_with_output().expect("wait");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("<stdin>: valid batch spec \"from-stdin\""));
}

#[test]
fn json_output_is_machine_readable() {
    let directory = temporary_directory("json");
    let spec = write(&directory, "bad.yaml", "name: x\nversion: 9\n");
    let output = run(flotilla().args(["batch", "validate", "--json", "-f"]).arg(&spec));
    assert_eq!(output.status.code(), Some(1));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("stdout is JSON");
    assert_eq!(document["valid"], false);
    assert_eq!(document["diagnostics"][0]["path"], "version");
    assert_eq!(document["diagnostics"][0]["line"], 2);
    assert_eq!(document["diagnostics"][0]["column"], 10);
}

#[test]
fn missing_file_is_a_command_error_naming_the_path() {
    let output = run(flotilla().args(["batch", "validate", "-f", "/nonexistent/spec.yaml"]));
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("reading the batch spec /nonexistent/spec.yaml"), "{}", text(&output.stderr));
}

#[test]
fn new_writes_a_starter_spec_that_validates_and_never_overwrites() {
    let directory = temporary_directory("new");
    let spec = directory.join("starter.batch.yaml");
    let output = run(flotilla().args(["batch", "new", "-f"]).arg(&spec));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let validated = run(flotilla().args(["batch", "validate", "-f"]).arg(&spec));
    assert!(validated.status.success(), "{}", text(&validated.stderr));

    let again = run(flotilla().args(["batch", "new", "-f"]).arg(&spec));
    assert_eq!(again.status.code(), Some(2));
    assert!(text(&again.stderr).contains("already exists; pass --force"), "{}", text(&again.stderr));
    let forced = run(flotilla().args(["batch", "new", "--force", "-f"]).arg(&spec));
    assert!(forced.status.success());
}

#[test]
fn help_teaches_with_examples() {
    let output = run(flotilla().args(["batch", "validate", "--help"]));
    let help = text(&output.stdout);
    assert!(help.contains("flotilla batch validate -f hello.batch.yaml"), "{help}");
    let output = run(flotilla().args(["--help"]));
    assert!(text(&output.stdout).contains("flotilla batch new -f hello.batch.yaml"));
}
