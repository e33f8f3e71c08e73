//! Runs the Go oracle (tools/template-oracle, real text/template) on every case and compares
//! with Rust byte for byte. Requires Go: `apt-get install -y golang-go`.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn build_oracle(work: &std::path::Path) -> PathBuf {
    let go = which_go().unwrap_or_else(|| panic!("`go` was not found on PATH; install Go 1.19 with `apt-get install -y golang-go` to run the differential test"));
    let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/template-oracle");
    let binary = work.join("template-oracle");
    let status = Command::new(go)
        .arg("build")
        .arg("-o")
        .arg(&binary)
        .arg(".")
        .current_dir(&source)
        .env("GOCACHE", work.join("gocache"))
        .env("GOPATH", work.join("gopath"))
        .env("GOFLAGS", "-mod=mod")
        .env("GO111MODULE", "on")
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .status()
        .expect("running go build");
    assert!(status.success(), "building the Go oracle failed");
    binary
}

fn which_go() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join("go"))
        .find(|candidate| candidate.is_file())
}

#[test]
fn rust_matches_go_on_every_case() {
    let work =
        std::env::temp_dir().join(format!("flotilla-template-oracle-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("creating a temp dir");
    let oracle = build_oracle(&work);
    let cases = common::load_cases();
    let input = serde_json::Value::Array(cases.iter().map(|case| case.raw.clone()).collect());
    let mut child = Command::new(&oracle)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the oracle");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.to_string().as_bytes())
        .expect("writing cases to the oracle");
    let output = child.wait_with_output().expect("waiting for the oracle");
    assert!(output.status.success(), "the oracle failed");
    let results: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the oracle writes JSON");
    let results = results.as_array().expect("the oracle writes an array");
    assert_eq!(results.len(), cases.len());
    let mut failures = Vec::new();
    for (case, go) in cases.iter().zip(results) {
        let go = common::parse_result(go).expect("each oracle result has output or error");
        let rust = common::run_case(case);
        if let Some(failure) = common::compare(case, &rust, &go) {
            failures.push(failure);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from Go:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
