//! Every real-world spec in the shared corpus (`../shared/compat-specs/`, written for
//! Sourcegraph) must validate, except the ones listed below, which Sourcegraph rejects too.
//!
//! The corpus is read in place, never copied into the project: `.ci/run` points
//! `FLOTILLA_COMPAT_SPECS` at it. Without it the test falls back to the path beside the
//! checkout, and fails loudly if the corpus is not there.

use std::path::{Path, PathBuf};

/// Specs in the corpus that Sourcegraph itself would reject, with the message we expect and
/// why Sourcegraph rejects them. None: every corpus spec passes src-cli's schema and semantic
/// checks, which are Flotilla's.
const EXPECTED_REJECTIONS: &[(&str, &str, &str)] = &[];

/// Specs that src-cli accepts but Sourcegraph's *server-side* template validator
/// (`ValidateBatchSpecTemplate`, run when a spec is created from raw YAML) rejects, because it
/// deletes every `${{ ... outputs.* }}` action before checking and so breaks the template's
/// structure. Flotilla checks outputs against the declared outputs instead (see
/// `flotilla_spec::templates`) and accepts them, so users do not have to rewrite working specs.
const SOURCEGRAPH_SERVER_VALIDATOR_ARTIFACTS: &[(&str, &str)] = &[
    (
        "utils/workspace-discovery.yaml",
        "deleting `${{ if eq outputs.projectName \"\" }}` leaves its `${{ else }}` unmatched: `unexpected {{else}}`",
    ),
    (
        "utils/dynamic-changeset-template.batch.yaml",
        "deleting `${{ range $index, $hook := outputs.goreleaserConfig.before.hooks }}` leaves `$hook` undefined",
    ),
];

fn corpus_directory() -> PathBuf {
    let configured = std::env::var_os("FLOTILLA_COMPAT_SPECS").map(PathBuf::from);
    let fallback = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compat-specs");
    let directory = configured.unwrap_or(fallback);
    assert!(
        directory.is_dir(),
        "the compat-spec corpus is missing at {}: set FLOTILLA_COMPAT_SPECS to the shared/compat-specs folder",
        directory.display()
    );
    directory
}

fn spec_files(directory: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(directory)
        .unwrap_or_else(|error| panic!("reading {}: {error}", directory.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            spec_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "yaml" || extension == "yml") {
            found.push(path);
        }
    }
}

#[test]
fn every_corpus_spec_gets_sourcegraphs_verdict() {
    let directory = corpus_directory();
    let mut files = Vec::new();
    spec_files(&directory, &mut files);
    assert!(files.len() >= 50, "expected the 52-spec corpus, found {} specs in {}", files.len(), directory.display());

    let mut failures = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&directory).expect("file is below the corpus").display().to_string();
        let source = std::fs::read_to_string(file).expect("corpus spec is UTF-8");
        let expected = EXPECTED_REJECTIONS.iter().find(|(name, _, _)| relative.ends_with(name));
        match (flotilla_spec::parse_batch_spec(&source), expected) {
            (Ok(_), None) => {}
            (Ok(_), Some((_, message, why))) => {
                failures.push(format!("{relative}: accepted, but Sourcegraph rejects it ({why}); expected `{message}`"))
            }
            (Err(diagnostics), None) => failures.push(format!(
                "{relative}: rejected, but Sourcegraph accepts it:\n{}",
                flotilla_spec::render_all(&diagnostics, &relative, &source)
            )),
            (Err(diagnostics), Some((_, message, _))) => {
                if !diagnostics.iter().any(|diagnostic| diagnostic.message.contains(message)) {
                    failures.push(format!(
                        "{relative}: rejected, but not with `{message}`:\n{}",
                        flotilla_spec::render_all(&diagnostics, &relative, &source)
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} specs disagree with Sourcegraph:\n{}", failures.len(), files.len(), failures.join("\n"));
}

#[test]
fn sourcegraphs_server_side_template_validator_rejects_exactly_the_documented_specs() {
    let directory = corpus_directory();
    let mut files = Vec::new();
    spec_files(&directory, &mut files);
    let mut rejected = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&directory).expect("below the corpus").display().to_string();
        let source = std::fs::read_to_string(file).expect("corpus spec is UTF-8");
        if flotilla_template::sourcegraph::validate_batch_spec_template(&source).is_err() {
            assert!(flotilla_spec::parse_batch_spec(&source).is_ok(), "{relative}: Flotilla must accept it");
            rejected.push(relative);
        }
    }
    let expected: Vec<&str> = SOURCEGRAPH_SERVER_VALIDATOR_ARTIFACTS.iter().map(|(name, _)| *name).collect();
    let mut rejected_short: Vec<&str> = rejected
        .iter()
        .map(|path| expected.iter().find(|name| path.ends_with(*name)).copied().unwrap_or(path.as_str()))
        .collect();
    rejected_short.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(rejected_short, expected_sorted);
}
