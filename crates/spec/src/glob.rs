//! Repository-name globs (gobwas syntax, as Sourcegraph uses for `published` and
//! `workspaces.in`), from the template crate, which needs the same globs for `matches`.

use flotilla_template::glob::Glob;

/// Checks that a glob compiles.
pub fn validate(pattern: &str) -> Result<(), String> {
    Glob::compile(pattern).map(|_| ()).map_err(|error| error.to_string())
}

/// Whether `text` matches the glob.
pub fn matches(pattern: &str, text: &str) -> Result<bool, String> {
    Glob::compile(pattern).map(|glob| glob.is_match(text)).map_err(|error| error.to_string())
}
