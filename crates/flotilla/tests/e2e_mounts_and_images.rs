//! Server policy and uploads through the real binary: files and folders a step mounts travel
//! with the spec to the executor and appear read-only in the container; a server with an
//! image allow list refuses other images at upload, and fails a workspace whose templated
//! image renders to one.

mod support;

use std::process::Stdio;

use support::{flotilla, make_repository, start_executor, start_server};

const ADMIN: &str = "flt_u_mounts_e2e_admin_token_0000000000000000000000000000000000";
const EXECUTOR: &str = "flt_e_mounts_e2e_executor_token_000000000000000000000000000000";

fn run_client(url: &str, arguments: &[&str]) -> std::process::Output {
    flotilla().args(arguments).env("FLOTILLA_URL", url).env("FLOTILLA_TOKEN", ADMIN).stdin(Stdio::null()).output().expect("run flotilla")
}

fn preview(url: &str, spec: &std::path::Path) -> std::process::Output {
    run_client(url, &["batch", "preview", "--json", "-f", spec.to_str().expect("utf-8")])
}

#[test]
fn mounted_files_reach_the_container_and_the_image_allow_list_holds() {
    if !support::podman_ready("the mount and image allow-list test") {
        return;
    }
    let root = tempfile::tempdir().expect("temp dir");
    make_repository(root.path(), "solo", &[("README.md", "# solo\n")]);
    let (_server, url) = start_server(&root.path().join("data"), ADMIN, EXECUTOR, &["--allowed-images", "alpine:*,docker.io/library/alpine:*"]);
    let repos = root.path().join("repos");
    assert!(run_client(&url, &["codehost", "add", "--kind", "git", "--name", "local", "--path", repos.to_str().expect("utf-8")]).status.success());
    assert!(run_client(&url, &["repos", "sync"]).status.success());
    let _executor = start_executor(&url, EXECUTOR, "mounts", &root.path().join("executor"), "podman");

    // A script file and a folder next to the spec, mounted into the step's container.
    let specs = root.path().join("specs");
    std::fs::create_dir_all(specs.join("data/nested")).expect("mkdir");
    std::fs::write(specs.join("fix.sh"), "cat /opt/data/greeting.txt /opt/data/nested/name.txt >> README.md\n").expect("script");
    std::fs::write(specs.join("data/greeting.txt"), "hello from a mounted file\n").expect("greeting");
    std::fs::write(specs.join("data/nested/name.txt"), "and from a nested one\n").expect("name");
    let spec = specs.join("mount.batch.yaml");
    std::fs::write(
        &spec,
        "name: mounts\non:\n  - repository: local/solo\nsteps:\n  - run: sh /tmp/fix.sh && ! (echo x >> /opt/data/greeting.txt) 2>/dev/null\n    container: alpine:3\n    mount:\n      - path: ./fix.sh\n        mountpoint: /tmp/fix.sh\n      - path: data\n        mountpoint: /opt/data\nchangesetTemplate:\n  title: Mounted\n  branch: batch/mounted\n  commit:\n    message: m\n",
    )
    .expect("spec");
    let output = preview(&url, &spec);
    assert!(output.status.success(), "{}{}", String::from_utf8_lossy(&output.stderr), String::from_utf8_lossy(&output.stdout));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(document["workspaces"][0]["state"], "completed", "{document}");
    let diff = document["changesetSpecs"][0]["diff"].as_str().expect("diff");
    assert!(diff.contains("+hello from a mounted file") && diff.contains("+and from a nested one"), "{diff}");

    // A mount whose file is missing is refused by the client, naming the path.
    let missing = specs.join("missing.batch.yaml");
    std::fs::write(&missing, "name: missing\non:\n  - repository: local/solo\nsteps:\n  - run: sh /tmp/x.sh\n    container: alpine:3\n    mount:\n      - path: ./nowhere.sh\n        mountpoint: /tmp/x.sh\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n").expect("spec");
    let output = preview(&url, &missing);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("step 1 mounts `./nowhere.sh`"), "{stderr}");

    // An image outside the allow list is refused at upload...
    let refused = specs.join("refused.batch.yaml");
    std::fs::write(&refused, "name: refused\non:\n  - repository: local/solo\nsteps:\n  - run: echo hi\n    container: ubuntu:22.04\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n").expect("spec");
    let output = preview(&url, &refused);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && stderr.contains("step 1 uses the image `ubuntu:22.04`, which this server does not allow"), "{stderr}");

    // ...and a templated one that renders outside it fails its workspace with that message.
    let templated = specs.join("templated.batch.yaml");
    std::fs::write(
        &templated,
        "name: templated\non:\n  - repository: local/solo\nsteps:\n  - run: echo hi >> README.md\n    container: busybox-${{ repository.name }}:1\nchangesetTemplate:\n  title: t\n  branch: batch/t\n  commit:\n    message: m\n",
    )
    .expect("spec");
    let output = preview(&url, &templated);
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    let workspace = &document["workspaces"][0];
    assert_eq!(workspace["state"], "failed", "{document}");
    let message = workspace["failureMessage"].as_str().unwrap_or_default();
    assert!(message.contains("the image `busybox-local/solo:1` is not allowed on this server"), "{message}");
}
