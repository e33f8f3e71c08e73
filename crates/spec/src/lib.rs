//! The batch spec language: parse, validate and model Sourcegraph batch specs.
//!
//! Flotilla accepts Sourcegraph's batch spec format unchanged. This crate turns the YAML text
//! of a spec into a typed [`BatchSpec`], or into the full list of [`Diagnostic`]s explaining
//! why it cannot (file position, field path, what was expected). It is pure: no IO, no clock,
//! no network, so every other part of the system (the CLI's `batch validate`, the server's
//! upload endpoint, the web editor) gets the same answer for the same text.
//!
//! The pipeline is: YAML text → positioned tree ([`flotilla_yaml`]) → schema and semantic
//! checks (`validate`) → templates checked against the variables Sourcegraph exposes
//! ([`flotilla_template`]) → [`BatchSpec`].

mod diagnostic;
pub mod glob;
pub mod model;
pub mod published;
mod templates;
mod validate;

pub use diagnostic::{Diagnostic, Severity, render_all, source_lines};
pub use model::*;
pub use published::{Published, PublishedRule, PublishedValue};

/// Largest spec text accepted, in bytes. Real specs are a few kilobytes; the largest in the
/// Sourcegraph examples (a list of 9,000 pull requests to import) is about 60 KB.
pub const MAX_SPEC_BYTES: usize = 4 * 1024 * 1024;

/// A spec that passed validation, with any warnings found on the way.
#[derive(Clone, Debug)]
pub struct ValidatedSpec {
    pub spec: BatchSpec,
    pub warnings: Vec<Diagnostic>,
}

/// Parses and validates a batch spec.
///
/// On failure the list holds every error found (and any warnings), not just the first.
pub fn parse_batch_spec(source: &str) -> Result<ValidatedSpec, Vec<Diagnostic>> {
    if source.len() > MAX_SPEC_BYTES {
        return Err(vec![Diagnostic {
            severity: Severity::Error,
            path: String::new(),
            message: format!(
                "the batch spec is {} bytes; the limit is {} bytes",
                source.len(),
                MAX_SPEC_BYTES
            ),
            line: 1,
            column: 1,
            width: 1,
        }]);
    }
    let root = flotilla_yaml::load(source).map_err(|error| {
        vec![Diagnostic {
            severity: Severity::Error,
            path: String::new(),
            message: format!("invalid YAML: {}", error.message),
            line: error.position.line.max(1),
            column: error.position.column.max(1),
            width: 1,
        }]
    })?;
    let mut checker = validate::Checker::new(source);
    let spec = validate::check_batch_spec(&mut checker, &root);
    match spec {
        Some(spec) => Ok(ValidatedSpec { spec, warnings: checker.diagnostics }),
        None => Err(checker.diagnostics),
    }
}

/// A commented starter spec that validates; `flotilla batch new` writes it.
pub const STARTER_SPEC: &str = include_str!("starter.batch.yaml");
