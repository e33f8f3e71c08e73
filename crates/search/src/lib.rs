//! Search over mirrored repositories for `on.repositoriesMatchingQuery`.
//!
//! Sourcegraph resolves a batch spec's `repositoriesMatchingQuery` with its code search; a
//! repository is included when anything in it matches (its name, a path, or file content), on
//! its default branch, and the paths of matching files become `repository.search_result_paths`.
//! This crate is the pure part of that: the query language ([`Query`]) and the decision for
//! one repository ([`match_repository`]), reading files through a [`FileSource`] the caller
//! provides (the server reads them from its git mirrors). No IO happens here.

pub mod languages;
mod query;

pub use query::{ContentMatcher, Inclusion, PatternType, Query, QueryError, RepositoryPredicate, ResultType};

/// Files larger than this are not searched (Sourcegraph's search skips large files too).
pub const MAX_SEARCHED_FILE_BYTES: u64 = 1 << 20;

/// What the matcher needs to know about a repository besides its files.
#[derive(Clone, Copy, Debug)]
pub struct RepositoryFacts<'a> {
    pub name: &'a str,
    pub fork: bool,
    pub archived: bool,
}

/// A file of the repository's default branch.
#[derive(Clone, Debug)]
pub struct FileEntry {
    pub path: String,
    pub size: u64,
}

/// Reads a repository's files at the searched commit.
pub trait FileSource {
    type Error;
    /// Every file (not directory) path of the commit.
    fn files(&mut self) -> Result<Vec<FileEntry>, Self::Error>;
    /// A file's content.
    fn content(&mut self, path: &str) -> Result<Vec<u8>, Self::Error>;
}

/// Why a repository matched: the file paths that matched (sorted, deduplicated). Empty when
/// the query matched the repository itself (by name, or with `type:repo`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepositoryMatch {
    pub file_paths: Vec<String>,
}

impl Query {
    /// Whether the repository passes the `repo:`, `fork:` and `archived:` filters, which need
    /// no file access. Callers use it to skip repositories before reading anything.
    pub fn repository_passes(&self, repository: RepositoryFacts<'_>) -> bool {
        let included = |pattern: &regex::Regex| pattern.is_match(repository.name);
        if !self.repository_patterns.iter().all(included) || self.excluded_repository_patterns.iter().any(included) {
            return false;
        }
        let allowed = |inclusion: Inclusion, flag: bool| match inclusion {
            Inclusion::Include => true,
            Inclusion::Exclude => !flag,
            Inclusion::Only => flag,
        };
        allowed(self.forks, repository.fork) && allowed(self.archived, repository.archived)
    }

    /// Whether a path passes the `file:` and `lang:` filters.
    pub fn path_passes(&self, path: &str) -> bool {
        self.file_patterns.iter().all(|pattern| pattern.is_match(path))
            && !self.excluded_file_patterns.iter().any(|pattern| pattern.is_match(path))
            && (self.languages.is_empty() || self.languages.iter().any(|language| language.matches_path(path)))
            && !self.excluded_languages.iter().any(|language| language.matches_path(path))
    }

    /// Whether text satisfies the content condition (every matcher of some OR group).
    pub fn text_matches(&self, text: &str) -> bool {
        self.content.is_empty()
            || self
                .content
                .iter()
                .any(|group| group.iter().all(|matcher| matcher.regex.is_match(text) != matcher.negated))
    }
}

/// Decides whether a repository matches the query, and which files made it match.
pub fn match_repository<Source: FileSource>(
    query: &Query,
    repository: RepositoryFacts<'_>,
    source: &mut Source,
) -> Result<Option<RepositoryMatch>, Source::Error> {
    if !query.repository_passes(repository) {
        return Ok(None);
    }
    if query.repository_only {
        return Ok(Some(RepositoryMatch::default()));
    }
    let files = source.files()?;
    for predicate in &query.repository_predicates {
        let mut found = false;
        for file in &files {
            if predicate.path.as_ref().is_some_and(|path| !path.is_match(&file.path)) {
                continue;
            }
            found = match &predicate.content {
                None => true,
                Some(content) => {
                    if file.size > MAX_SEARCHED_FILE_BYTES {
                        continue;
                    }
                    let bytes = source.content(&file.path)?;
                    !looks_binary(&bytes) && content.is_match(&String::from_utf8_lossy(&bytes))
                }
            };
            if found {
                break;
            }
        }
        if found == predicate.negated {
            return Ok(None);
        }
    }
    let only_predicates = query.content.is_empty()
        && query.file_patterns.is_empty()
        && query.excluded_file_patterns.is_empty()
        && query.languages.is_empty()
        && query.excluded_languages.is_empty();
    if only_predicates {
        return Ok(Some(RepositoryMatch::default()));
    }
    let mut matched = Vec::new();
    for file in files {
        if !query.path_passes(&file.path) {
            continue;
        }
        let file_matches = if query.content.is_empty() {
            true
        } else if query.result_type == ResultType::Path {
            query.text_matches(&file.path)
        } else {
            if file.size > MAX_SEARCHED_FILE_BYTES {
                continue;
            }
            let content = source.content(&file.path)?;
            if looks_binary(&content) {
                continue;
            }
            query.text_matches(&String::from_utf8_lossy(&content))
        };
        if file_matches {
            if query.result_type == ResultType::Repository {
                return Ok(Some(RepositoryMatch::default()));
            }
            matched.push(file.path);
        }
    }
    if matched.is_empty() {
        return Ok(None);
    }
    matched.sort();
    matched.dedup();
    Ok(Some(RepositoryMatch { file_paths: matched }))
}

/// Git's heuristic: a NUL byte in the first 8,000 bytes means binary.
fn looks_binary(content: &[u8]) -> bool {
    content.iter().take(8000).any(|byte| *byte == 0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Files(BTreeMap<&'static str, &'static str>);

    impl FileSource for Files {
        type Error = std::convert::Infallible;
        fn files(&mut self) -> Result<Vec<FileEntry>, Self::Error> {
            Ok(self.0.iter().map(|(path, content)| FileEntry { path: (*path).to_owned(), size: content.len() as u64 }).collect())
        }
        fn content(&mut self, path: &str) -> Result<Vec<u8>, Self::Error> {
            Ok(self.0.get(path).map(|content| content.as_bytes().to_vec()).unwrap_or_default())
        }
    }

    fn repository() -> Files {
        Files(BTreeMap::from([
            ("README.md", "# Demo\nfmt.Sprintf is used\n"),
            ("go.mod", "module example.com/demo\n"),
            ("cmd/main.go", "package main\nfunc main() { fmt.Sprintf(\"%d\", 1) }\n"),
            ("web/package.json", "{\"name\": \"web\"}\n"),
            ("logo.png", "\u{0}PNG"),
        ]))
    }

    fn check(query: &str, name: &str, expected: Option<&[&str]>) {
        let query = Query::parse(query, 1).expect("query parses");
        let facts = RepositoryFacts { name, fork: false, archived: false };
        let result = match_repository(&query, facts, &mut repository()).expect("infallible");
        let expected = expected.map(|paths| RepositoryMatch { file_paths: paths.iter().map(|path| (*path).to_owned()).collect() });
        assert_eq!(result, expected);
    }

    #[test]
    fn table() {
        check("repo:demo$", "github.com/a/demo", Some(&[]));
        check("repo:other", "github.com/a/demo", None);
        check("-repo:demo", "github.com/a/demo", None);
        check("file:go.mod$", "r", Some(&["go.mod"]));
        check("file:package.json", "r", Some(&["web/package.json"]));
        check("fmt.Sprintf", "r", Some(&["README.md", "cmd/main.go"]));
        check("fmt.Sprintf lang:go", "r", Some(&["cmd/main.go"]));
        check("fmt.Sprintf -file:README", "r", Some(&["cmd/main.go"]));
        check("fmt.Sprintf type:repo", "r", Some(&[]));
        check("PNG", "r", None);
        check("nothing-like-this", "r", None);
        check("main type:path", "r", Some(&["cmd/main.go"]));
        check("-file:\\.md$ -file:\\.go$ -file:mod$ -file:json$ -file:png$", "r", None);
        check("repo:has.path(\\.go$)", "r", Some(&[]));
        check("-repo:has.content(phpstan)", "r", Some(&[]));
        check("repo:has.content(phpstan)", "r", None);
        check("repo:has.file(path:go.mod content:example) file:README", "r", Some(&["README.md"]));
    }

    #[test]
    fn forks_and_archived() {
        let query = Query::parse("repo:x", 1).expect("parses");
        assert!(query.repository_passes(RepositoryFacts { name: "x", fork: true, archived: false }));
        assert!(!query.repository_passes(RepositoryFacts { name: "x", fork: false, archived: true }), "archived excluded by default");
        let only_forks = Query::parse("repo:x fork:only", 1).expect("parses");
        assert!(!only_forks.repository_passes(RepositoryFacts { name: "x", fork: false, archived: false }));
    }
}
