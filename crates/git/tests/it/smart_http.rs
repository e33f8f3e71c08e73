//! Smart HTTP serving end to end: a real `git clone`/`git fetch` against the test server, with
//! protocol v0 and v2, including fetching an unadvertised commit by id.

use std::collections::HashMap;
use std::time::Instant;

use crate::fixture::{bare_clone, base_command, git, sample_repository};
use crate::http_server::TestGitServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_clients_fetch_over_smart_http_with_protocol_v0_and_v2() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let (source, commits) = sample_repository(&temporary.path().join("source"));
    let served = temporary.path().join("served/repo.git");
    bare_clone(&source.path, &served);
    let server = TestGitServer::start(
        HashMap::from([("org/repo".to_owned(), served.clone())]),
        None,
    )
    .await;

    let version_0 = flotilla_git::advertise_upload_pack(&served, None)
        .await
        .expect("advertise v0");
    assert!(
        version_0.starts_with(b"001e# service=git-upload-pack\n0000"),
        "{}",
        String::from_utf8_lossy(&version_0)
    );
    assert!(String::from_utf8_lossy(&version_0).contains(commits[1].as_str()));
    let version_2 = flotilla_git::advertise_upload_pack(&served, Some("version=2"))
        .await
        .expect("advertise v2");
    assert!(
        version_2.starts_with(b"000eversion 2\n"),
        "{}",
        String::from_utf8_lossy(&version_2)
    );

    for protocol in ["0", "2"] {
        let clone = temporary.path().join(format!("clone-v{protocol}"));
        let started = Instant::now();
        let url = server.url("org/repo");
        let destination = clone.display().to_string();
        let output = tokio::task::spawn_blocking(move || {
            base_command(std::path::Path::new("/"))
                .args([
                    "-c",
                    &format!("protocol.version={protocol}"),
                    "clone",
                    "--quiet",
                    &url,
                    &destination,
                ])
                .output()
                .expect("run git clone")
        })
        .await
        .expect("join");
        assert!(
            output.status.success(),
            "clone v{protocol}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        println!(
            "smart HTTP clone with protocol v{protocol}: {:?}",
            started.elapsed()
        );
        assert_eq!(
            git(&clone, &["rev-parse", "HEAD"]).trim(),
            commits[1].as_str()
        );
        assert_eq!(
            std::fs::read_to_string(clone.join("src/lib.rs")).expect("file"),
            "pub fn answer() -> u32 {\n    43\n}\n"
        );
    }

    // Fetch a commit by id that no ref points to any more (allowAnySHA1InWant), like executors do.
    git(
        &served,
        &["update-ref", "refs/heads/old", commits[0].as_str()],
    );
    git(&served, &["update-ref", "-d", "refs/heads/old"]);
    for protocol in ["0", "2"] {
        let target = temporary.path().join(format!("by-id-v{protocol}"));
        git(
            temporary.path(),
            &["init", "--quiet", &target.display().to_string()],
        );
        let url = server.url("org/repo");
        let commit = commits[0].to_string();
        let started = Instant::now();
        let output = tokio::task::spawn_blocking(move || {
            base_command(&target)
                .args([
                    "-c",
                    &format!("protocol.version={protocol}"),
                    "fetch",
                    "--quiet",
                    "--depth=1",
                    &url,
                    &commit,
                ])
                .output()
                .expect("run git fetch")
        })
        .await
        .expect("join");
        assert!(
            output.status.success(),
            "fetch by id v{protocol}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        println!(
            "smart HTTP shallow fetch by commit id with protocol v{protocol}: {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_response_stops_git() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let (source, _) = sample_repository(&temporary.path().join("source"));
    let served = temporary.path().join("repo.git");
    bare_clone(&source.path, &served);
    // A request that never ends: git waits for more input until the response is dropped.
    let (_client, server_side) = tokio::io::duplex(64);
    let response = flotilla_git::upload_pack(&served, server_side, Some("version=2"))
        .await
        .expect("spawn");
    drop(response);
}
