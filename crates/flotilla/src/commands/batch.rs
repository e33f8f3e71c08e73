//! `flotilla batch ...`: commands on batch specs that need no server.

use std::io::{Read, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use flotilla_spec::{BatchSpec, OnEntry, Severity, parse_batch_spec, render_all};

use crate::cli::{NewArgs, ValidateArgs};

/// Reads a spec from a path, or from standard input for `-`.
pub fn read_spec_source(path: &Path) -> anyhow::Result<(String, String)> {
    if path == Path::new("-") {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text).context("reading the batch spec from standard input")?;
        return Ok(("<stdin>".to_owned(), text));
    }
    let bytes = std::fs::read(path).with_context(|| format!("reading the batch spec {}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text; a batch spec is a YAML text file", path.display()))?;
    Ok((path.display().to_string(), text))
}

pub fn validate(arguments: &ValidateArgs) -> anyhow::Result<ExitCode> {
    let (file_name, source) = read_spec_source(&arguments.file)?;
    match parse_batch_spec(&source) {
        Ok(validated) => {
            if arguments.json {
                let document = serde_json::json!({"valid": true, "spec": validated.spec, "warnings": validated.warnings});
                println!("{}", serde_json::to_string_pretty(&document)?);
            } else {
                if !validated.warnings.is_empty() {
                    eprint!("{}", render_all(&validated.warnings, &file_name, &source));
                }
                println!("{file_name}: {}", summary(&validated.spec));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            let errors = diagnostics.iter().filter(|diagnostic| diagnostic.severity == Severity::Error).count();
            if arguments.json {
                let document = serde_json::json!({"valid": false, "diagnostics": diagnostics});
                println!("{}", serde_json::to_string_pretty(&document)?);
            } else {
                eprint!("{}", render_all(&diagnostics, &file_name, &source));
                let plural = if errors == 1 { "" } else { "s" };
                eprintln!("{file_name}: invalid batch spec: {errors} error{plural}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// One line saying what a valid spec will do.
fn summary(spec: &BatchSpec) -> String {
    let queries = spec.on.iter().filter(|entry| matches!(entry, OnEntry::Query { .. })).count();
    let repositories = spec.on.len() - queries;
    let mut parts = Vec::new();
    if queries > 0 || repositories == 0 {
        parts.push(count(queries, "repository query", "repository queries"));
    }
    if repositories > 0 {
        parts.push(count(repositories, "repository", "repositories"));
    }
    parts.push(count(spec.steps.len(), "step", "steps"));
    if !spec.workspaces.is_empty() {
        parts.push(count(spec.workspaces.len(), "workspace rule", "workspace rules"));
    }
    if !spec.import_changesets.is_empty() {
        let imported: usize = spec.import_changesets.iter().map(|import| import.external_ids.len()).sum();
        parts.push(count(imported, "imported changeset", "imported changesets"));
    }
    format!("valid batch spec \"{}\" (version {}): {}", spec.name, spec.version, parts.join(", "))
}

fn count(number: usize, singular: &str, plural: &str) -> String {
    format!("{number} {}", if number == 1 { singular } else { plural })
}

pub fn new(arguments: &NewArgs) -> anyhow::Result<ExitCode> {
    if arguments.file == Path::new("-") {
        std::io::stdout().write_all(flotilla_spec::STARTER_SPEC.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if arguments.file.exists() && !arguments.force {
        bail!("{} already exists; pass --force to overwrite it, or -f to choose another file", arguments.file.display());
    }
    std::fs::write(&arguments.file, flotilla_spec::STARTER_SPEC)
        .with_context(|| format!("writing {}", arguments.file.display()))?;
    eprintln!(
        "wrote {}; edit it, then run: flotilla batch validate -f {}",
        arguments.file.display(),
        arguments.file.display()
    );
    Ok(ExitCode::SUCCESS)
}
