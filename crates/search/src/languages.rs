//! `lang:` names and the file names and extensions that belong to each language.
//!
//! A small table in the spirit of GitHub Linguist's (which Sourcegraph uses): enough for the
//! languages batch changes are written for. Names match case-insensitively, with aliases.

/// A language and how to recognise its files.
#[derive(Debug, PartialEq, Eq)]
pub struct Language {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub extensions: &'static [&'static str],
    pub file_names: &'static [&'static str],
}

impl Language {
    /// Whether a repository path belongs to this language.
    pub fn matches_path(&self, path: &str) -> bool {
        let file_name = path.rsplit('/').next().unwrap_or(path);
        if self.file_names.iter().any(|name| name.eq_ignore_ascii_case(file_name)) {
            return true;
        }
        let lower = file_name.to_ascii_lowercase();
        self.extensions.iter().any(|extension| lower.ends_with(extension))
    }
}

macro_rules! language {
    ($name:literal, [$($alias:literal),*], [$($extension:literal),*], [$($file:literal),*]) => {
        Language { name: $name, aliases: &[$($alias),*], extensions: &[$($extension),*], file_names: &[$($file),*] }
    };
}

pub static LANGUAGES: &[Language] = &[
    language!("Go", ["golang"], [".go"], []),
    language!("Python", ["py"], [".py", ".pyi", ".pyw"], []),
    language!("JavaScript", ["js", "node"], [".js", ".mjs", ".cjs", ".jsx"], []),
    language!("TypeScript", ["ts"], [".ts", ".tsx", ".mts", ".cts"], []),
    language!("Java", [], [".java"], []),
    language!("Kotlin", [], [".kt", ".kts"], []),
    language!("Scala", [], [".scala", ".sc"], []),
    language!("Rust", ["rs"], [".rs"], []),
    language!("Ruby", ["rb"], [".rb", ".rake", ".gemspec"], ["Gemfile", "Rakefile"]),
    language!("PHP", [], [".php"], []),
    language!("C", [], [".c", ".h"], []),
    language!("C++", ["cpp", "c++"], [".cpp", ".cc", ".cxx", ".hpp", ".hh", ".hxx"], []),
    language!("C#", ["csharp", "cs"], [".cs"], []),
    language!("Swift", [], [".swift"], []),
    language!("Shell", ["bash", "sh", "zsh"], [".sh", ".bash", ".zsh"], []),
    language!("YAML", ["yml"], [".yaml", ".yml"], []),
    language!("JSON", [], [".json"], []),
    language!("XML", [], [".xml", ".pom"], []),
    language!("HTML", [], [".html", ".htm"], []),
    language!("CSS", [], [".css"], []),
    language!("SCSS", [], [".scss"], []),
    language!("Markdown", ["md"], [".md", ".markdown"], []),
    language!("Dockerfile", ["docker"], [".dockerfile"], ["Dockerfile", "Containerfile"]),
    language!("HCL", ["terraform", "tf"], [".hcl", ".tf", ".tfvars"], []),
    language!("TOML", [], [".toml"], []),
    language!("Dart", [], [".dart"], []),
    language!("Elixir", [], [".ex", ".exs"], []),
    language!("Haskell", [], [".hs"], []),
    language!("Lua", [], [".lua"], []),
    language!("Perl", [], [".pl", ".pm"], []),
    language!("R", [], [".r"], []),
    language!("SQL", [], [".sql"], []),
    language!("Groovy", ["gradle"], [".groovy", ".gradle"], []),
    language!("Makefile", ["make"], [".mk"], ["Makefile", "GNUmakefile"]),
];

/// Finds a language by name or alias, ignoring case.
pub fn find(name: &str) -> Option<&'static Language> {
    LANGUAGES.iter().find(|language| {
        language.name.eq_ignore_ascii_case(name) || language.aliases.iter().any(|alias| alias.eq_ignore_ascii_case(name))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_name_and_alias_and_matches_paths() {
        let go = find("GO").expect("go");
        assert!(go.matches_path("cmd/main.go"));
        assert!(!go.matches_path("go.mod"));
        assert!(find("dockerfile").expect("docker").matches_path("build/Dockerfile"));
        assert_eq!(find("ts").map(|language| language.name), Some("TypeScript"));
        assert!(find("klingon").is_none());
    }
}
