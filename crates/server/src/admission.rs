//! What the server accepts beyond a valid spec: the files its steps mount (uploaded with it,
//! within the configured sizes) and the container images its admin allows.
//!
//! Both are checked when the spec is created, so a user learns at once rather than from a
//! failed workspace. Images written with templates (`container: registry.other/${{ repository.name }}:1`) are
//! only known once rendered, so the executor checks them again against the same list, which
//! travels in each job.

use flotilla_spec::BatchSpec;
use flotilla_store::NewMountFile;
use flotilla_wire::api::UploadedMountFile;
use flotilla_wire::image_allowed;

/// The files to store with a spec: every upload a mount covers, decoded and within limits.
/// Every mount must cover at least one upload.
pub fn mount_files(
    spec: &BatchSpec,
    uploads: &[UploadedMountFile],
    max_file_bytes: usize,
    max_total_bytes: usize,
) -> Result<Vec<NewMountFile>, String> {
    let mounts: Vec<(usize, &flotilla_spec::Mount)> =
        spec.steps.iter().enumerate().flat_map(|(index, step)| step.mount.iter().map(move |mount| (index + 1, mount))).collect();
    let mut files = Vec::new();
    let mut total = 0usize;
    for upload in uploads {
        let path = flotilla_spec::normalize_relative_path(&upload.path);
        if path.is_empty() || upload.path.starts_with('/') || upload.path.split(['/', '\\']).any(|part| part == "..") {
            return Err(format!("the uploaded mount file `{}` must be a path relative to the spec's folder", upload.path));
        }
        if !mounts.iter().any(|(_, mount)| mount.target_of(&path).is_some()) {
            continue;
        }
        if files.iter().any(|file: &NewMountFile| file.path == path) {
            return Err(format!("the mount file `{path}` was uploaded twice"));
        }
        let content = upload.content().map_err(|error| format!("the mount file `{path}` is not valid base64: {error}"))?;
        if content.len() > max_file_bytes {
            return Err(format!(
                "the mount file `{path}` is {} bytes; this server accepts files of at most {max_file_bytes} bytes (put large files into the image instead)",
                content.len()
            ));
        }
        total += content.len();
        if total > max_total_bytes {
            return Err(format!("the mounted files add up to more than {max_total_bytes} bytes, this server's limit per batch spec"));
        }
        files.push(NewMountFile { path, modified_at: upload.modified_at, content });
    }
    for (step, mount) in mounts {
        if !files.iter().any(|file| mount.target_of(&file.path).is_some()) {
            return Err(format!(
                "step {step} mounts `{}`, but no such file was uploaded with the spec: put it next to the batch spec file \
                 (mount paths are relative to it) and run `flotilla batch preview -f <spec>` again",
                mount.path
            ));
        }
    }
    Ok(files)
}

/// Checks the images written without templates against the allow list.
pub fn check_images(spec: &BatchSpec, allowed: &[String]) -> Result<(), String> {
    for (index, step) in spec.steps.iter().enumerate() {
        let image = step.container.trim();
        if image.contains("${{") || image.contains("{{") {
            continue;
        }
        if !image_allowed(allowed, image) {
            return Err(format!(
                "step {} uses the image `{image}`, which this server does not allow; allowed images: {} (ask a site admin to extend --allowed-images)",
                index + 1,
                allowed.join(", ")
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(steps: &str) -> BatchSpec {
        let yaml = format!("{steps}changesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n");
        flotilla_spec::parse_batch_spec(&yaml).expect("valid spec").spec
    }

    fn upload(path: &str, content: &[u8]) -> UploadedMountFile {
        UploadedMountFile::new(path, content, 1_700_000_000_000)
    }

    const MOUNTING: &str = "name: m\nsteps:\n  - run: /tmp/fix.sh\n    container: alpine:3\n    mount:\n      - path: ./fix.sh\n        mountpoint: /tmp/fix.sh\n      - path: lib/\n        mountpoint: /opt/lib\n";

    #[test]
    fn keeps_the_uploads_the_mounts_cover() {
        let files = mount_files(
            &spec(MOUNTING),
            &[upload("fix.sh", b"echo hi"), upload("./lib/a.sh", b"a"), upload("unrelated.txt", b"x")],
            1 << 20,
            1 << 20,
        )
        .expect("accepted");
        let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
        assert_eq!(paths, ["fix.sh", "lib/a.sh"]);
        assert_eq!(files[0].content, b"echo hi");
    }

    #[test]
    fn a_mount_without_an_upload_is_refused_naming_the_step() {
        let error = mount_files(&spec(MOUNTING), &[upload("fix.sh", b"echo")], 1 << 20, 1 << 20).expect_err("lib/ missing");
        assert!(error.contains("step 1 mounts `lib/`"), "{error}");
    }

    #[test]
    fn sizes_are_limited_per_file_and_in_total() {
        let too_big = mount_files(&spec(MOUNTING), &[upload("fix.sh", &[b'x'; 11]), upload("lib/a", b"a")], 10, 100).expect_err("file");
        assert!(too_big.contains("at most 10 bytes"), "{too_big}");
        let total = mount_files(&spec(MOUNTING), &[upload("fix.sh", &[b'x'; 8]), upload("lib/a", &[b'y'; 8])], 10, 12).expect_err("total");
        assert!(total.contains("more than 12 bytes"), "{total}");
    }

    #[test]
    fn paths_leaving_the_spec_folder_are_refused() {
        let error = mount_files(&spec(MOUNTING), &[upload("../etc/passwd", b"x")], 1 << 20, 1 << 20).expect_err("escape");
        assert!(error.contains("relative to the spec's folder"), "{error}");
    }

    #[test]
    fn images_are_checked_against_the_allow_list_unless_templated() {
        let allowed = vec![String::from("alpine:*"), String::from("registry.example.com/*")];
        assert!(image_allowed(&allowed, "alpine:3"));
        assert!(image_allowed(&allowed, "registry.example.com/team/tool:1"));
        assert!(!image_allowed(&allowed, "ubuntu:22.04"));
        assert!(image_allowed(&[], "anything"));
        let templated = spec("name: t\nsteps:\n  - run: echo\n    container: registry.other/${{ repository.name }}:1\n");
        assert!(check_images(&templated, &allowed).is_ok());
        let refused = spec("name: t\nsteps:\n  - run: echo\n    container: alpine:3\n  - run: echo\n    container: ubuntu:22.04\n");
        let error = check_images(&refused, &allowed).expect_err("ubuntu");
        assert!(error.contains("step 2 uses the image `ubuntu:22.04`"), "{error}");
    }
}
