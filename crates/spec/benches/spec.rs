//! Benchmarks of the spec language (numbers go to BENCHMARKS.md; never asserted in tests).
//!
//! `cargo bench -p flotilla-spec` measures:
//! - validating each spec of the shared corpus (`FLOTILLA_COMPAT_SPECS`), median of many runs;
//! - rendering a realistic changesetTemplate (title, body, branch, commit message) for 45,000
//!   workspaces on one thread, the way the server builds changeset specs after execution.
//!
//! Run as a test (`cargo test --benches`), it does one quick pass of each so it cannot rot.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn main() {
    let full = std::env::args().any(|argument| argument == "--bench");
    let rounds = if full { 200 } else { 1 };
    validate_corpus(rounds);
    render_changeset_templates(if full { 45_000 } else { 500 });
}

fn corpus_files() -> Vec<PathBuf> {
    let directory = std::env::var_os("FLOTILLA_COMPAT_SPECS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/compat-specs"));
    let mut files = Vec::new();
    let mut pending = vec![directory];
    while let Some(directory) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&directory) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "yaml" || extension == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn validate_corpus(rounds: usize) {
    let files = corpus_files();
    assert!(!files.is_empty(), "set FLOTILLA_COMPAT_SPECS to the shared/compat-specs folder");
    println!("validate: {} corpus specs, median of {rounds} runs each", files.len());
    let mut total = Duration::ZERO;
    let mut slowest = (Duration::ZERO, String::new());
    for file in &files {
        let source = std::fs::read_to_string(file).expect("corpus spec is UTF-8");
        let samples: Vec<Duration> = (0..rounds)
            .map(|_| {
                let started = Instant::now();
                let result = flotilla_spec::parse_batch_spec(std::hint::black_box(&source));
                let elapsed = started.elapsed();
                assert!(result.is_ok(), "{} does not validate", file.display());
                elapsed
            })
            .collect();
        let time = median(samples);
        total += time;
        if time > slowest.0 {
            slowest = (time, format!("{} ({} bytes)", file.file_name().unwrap_or_default().to_string_lossy(), source.len()));
        }
    }
    println!(
        "validate: all {} specs in {:.3} ms (mean {:.1} µs per spec); slowest {:.1} µs: {}",
        files.len(),
        total.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e6 / files.len() as f64,
        slowest.0.as_secs_f64() * 1e6,
        slowest.1
    );
}

/// A realistic changesetTemplate: repository and output values, a loop over changed files,
/// a branch derived from the workspace path.
const TEMPLATE_SPEC: &str = r#"name: bench
description: Upgrade the logging library everywhere
steps:
  - run: ./upgrade.sh
    container: alpine:3
    outputs:
      version:
        value: ${{ step.stdout }}
changesetTemplate:
  title: Upgrade logging to ${{ outputs.version }} in ${{ repository.name }}
  body: |
    This pull request was created by the batch change `${{ batch_change.name }}`:
    ${{ batch_change.description }}.

    Files changed:
    ${{ range $index, $file := steps.modified_files }}
    - `${{ $file }}`
    ${{ end }}
    ${{ batch_change_link }}
  branch: batch/logging-${{ replace steps.path "/" "-" }}
  commit:
    message: Upgrade logging to ${{ outputs.version }} (${{ len steps.modified_files }} files)
"#;

fn workspace_context(index: usize) -> flotilla_template::sourcegraph::ChangesetTemplateContext {
    use flotilla_template::sourcegraph::{BatchChangeAttributes, Changes, ChangesetTemplateContext, Repository, StepsContext};
    let mut outputs = std::collections::BTreeMap::new();
    outputs.insert("version".to_owned(), flotilla_template::Value::from("2.4.1"));
    ChangesetTemplateContext {
        batch_change_attributes: BatchChangeAttributes { name: "bench".into(), description: "Upgrade the logging library everywhere".into() },
        steps: StepsContext {
            changes: Changes { modified: vec!["go.mod".into(), "go.sum".into(), format!("internal/log{index}.go")], ..Changes::default() },
            path: format!("services/svc{}", index % 7),
        },
        outputs,
        repository: Repository { name: format!("github.com/acme/repo-{index}"), branch: "main".into(), file_matches: vec!["go.mod".into()] },
    }
}

fn render_changeset_templates(workspaces: usize) {
    let spec = flotilla_spec::parse_batch_spec(TEMPLATE_SPEC).expect("the benchmark spec is valid").spec;
    let template = spec.changeset_template.expect("has a template");
    let fields = [template.title.as_str(), template.body.as_str(), template.branch.as_str(), template.commit.message.as_str()];
    let contexts: Vec<_> = (0..workspaces).map(workspace_context).collect();

    // As the server renders today: each field parsed and executed per workspace.
    let started = Instant::now();
    let mut bytes = 0usize;
    for context in &contexts {
        for field in fields {
            bytes += flotilla_template::sourcegraph::render_changeset_template_field("field", field, context).expect("renders").len();
        }
    }
    let per_call = started.elapsed();
    println!(
        "render: changesetTemplate (4 fields) for {workspaces} workspaces, parse+execute each: {:.0} ms on one thread ({:.1} µs per workspace, {bytes} bytes)",
        per_call.as_secs_f64() * 1e3,
        per_call.as_secs_f64() * 1e6 / workspaces as f64
    );

    // Parsed once, executed per workspace.
    let functions = flotilla_template::sourcegraph::ChangesetTemplateContext::default().functions();
    let parsed: Vec<_> = fields
        .iter()
        .map(|field| flotilla_template::Template::parse("field", field, &functions).expect("parses"))
        .collect();
    let started = Instant::now();
    let mut bytes = 0usize;
    for context in &contexts {
        let functions = context.functions();
        for template in &parsed {
            bytes += template.execute(&flotilla_template::Value::Nil, &functions).expect("renders").trim().len();
        }
    }
    let once = started.elapsed();
    println!(
        "render: same, parsed once: {:.0} ms on one thread ({:.1} µs per workspace, {bytes} bytes)",
        once.as_secs_f64() * 1e3,
        once.as_secs_f64() * 1e6 / workspaces as f64
    );
}
