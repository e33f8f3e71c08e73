//! Repository-name globs (gobwas syntax, as Sourcegraph uses for `published` and `workspaces.in`).
//! (Wired to flotilla-template's glob once it lands.)

pub fn validate(_pattern: &str) -> Result<(), String> {
    Ok(())
}

pub fn matches(pattern: &str, text: &str) -> Result<bool, String> {
    Ok(pattern == "*" || pattern == text)
}
