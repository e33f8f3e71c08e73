//! The deployment files in `deploy/` cannot run here (no systemd, no Kubernetes), so they are
//! validated: they parse, have the shape their tools need, and every flag and environment
//! variable they give `flotilla executor` is one the binary really has.

use std::path::{Path, PathBuf};
use std::process::Command;

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(path)
}

fn executor_help() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_flotilla")).args(["executor", "--help"]).output().expect("run flotilla");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `--flag` words in a text.
fn flags(text: &str) -> Vec<String> {
    text.split(|character: char| character.is_whitespace() || character == '"' || character == ',' || character == '[' || character == ']')
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(|word| word.split('=').next().unwrap_or(word).to_owned())
        .collect()
}

#[test]
fn kubernetes_manifests_parse_and_use_real_flags_and_variables() {
    let text = std::fs::read_to_string(deploy("kubernetes/executor.yaml")).expect("read manifest");
    let help = executor_help();
    let documents: Vec<flotilla_yaml::Node> = text
        .split("\n---\n")
        .map(|document| flotilla_yaml::load(document).unwrap_or_else(|error| panic!("manifest does not parse: {error:?}")))
        .collect();
    let kinds: Vec<&str> = documents.iter().filter_map(|document| document.get("kind").and_then(flotilla_yaml::Node::as_str)).collect();
    assert_eq!(kinds, vec!["Secret", "Deployment", "HorizontalPodAutoscaler"]);
    let deployment = &documents[1];
    let containers = deployment
        .get("spec")
        .and_then(|spec| spec.get("template"))
        .and_then(|template| template.get("spec"))
        .and_then(|spec| spec.get("containers"))
        .and_then(flotilla_yaml::Node::as_sequence)
        .expect("the Deployment has containers");
    let executor = containers.iter().find(|container| container.get("name").and_then(flotilla_yaml::Node::as_str) == Some("executor")).expect("executor container");
    for argument in executor.get("args").and_then(flotilla_yaml::Node::as_sequence).expect("args") {
        let argument = argument.as_str().expect("string argument");
        if argument.starts_with("--") {
            assert!(help.contains(argument), "`flotilla executor` has no flag {argument}");
        }
    }
    for variable in executor.get("env").and_then(flotilla_yaml::Node::as_sequence).expect("env") {
        let name = variable.get("name").and_then(flotilla_yaml::Node::as_str).expect("env name");
        if name.starts_with("FLOTILLA_") {
            assert!(help.contains(name), "`flotilla executor` reads no variable {name}");
        }
    }
    let metric = documents[2].to_json()["spec"]["metrics"][0]["external"]["metric"]["name"].clone();
    assert_eq!(metric, "flotilla_queue_depth", "the autoscaler scales on the metric the server exports");
}

#[test]
fn systemd_unit_and_containerfile_use_real_flags_and_variables() {
    let help = executor_help();
    let unit = std::fs::read_to_string(deploy("systemd/flotilla-executor.service")).expect("read unit");
    let exec_start = unit.lines().find(|line| line.starts_with("ExecStart=")).expect("ExecStart");
    assert!(exec_start.contains("flotilla executor"));
    for flag in flags(exec_start) {
        assert!(help.contains(&flag), "`flotilla executor` has no flag {flag}");
    }
    for line in unit.lines().filter(|line| line.starts_with("#   FLOTILLA_")) {
        let name = line.trim_start_matches("#   ").split('=').next().expect("variable name");
        assert!(help.contains(name) || name == "FLOTILLA_URL", "`flotilla executor` reads no variable {name}");
    }
    let containerfile = std::fs::read_to_string(deploy("container/Containerfile")).expect("read Containerfile");
    for line in containerfile.lines().filter(|line| line.starts_with("ENV ")) {
        for assignment in line.trim_start_matches("ENV ").split_whitespace() {
            let name = assignment.split('=').next().expect("name");
            if name.starts_with("FLOTILLA_") {
                assert!(help.contains(name), "`flotilla executor` reads no variable {name}");
            }
        }
    }
    assert!(containerfile.contains("ENTRYPOINT [\"/usr/local/bin/flotilla\", \"executor\"]"));
}
