//! The `repositoriesMatchingQuery` language: parsing a Sourcegraph search query into filters.
//!
//! Supported: `repo:`/`-repo:` (alias `r:`) regexes with an optional `@rev` suffix that only
//! filters; `file:`/`-file:` (alias `f:`) path regexes; `lang:`/`-lang:` (alias `l:`);
//! `case:yes|no`; `fork:yes|no|only`; `archived:yes|no|only`; `count:N|all`;
//! `patterntype:literal|regexp|standard|keyword|structural`; `type:repo|file|path`;
//! `select:repo`; `content:"..."`; quoted and unquoted pattern terms, `/regex/` terms in
//! standard mode; `timeout:` and `visibility:` are accepted and ignored (they mean nothing for
//! a local search). Anything else is an error that names the field, so a typo never silently
//! widens a batch change.

use regex::{Regex, RegexBuilder};

/// How pattern terms are interpreted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatternType {
    /// Terms are literal text; `/.../` terms are regexes; terms are joined by a space.
    Standard,
    /// The whole pattern is one literal string.
    Literal,
    /// The whole pattern is one regular expression.
    Regexp,
    /// Each term must occur somewhere in the file (terms are ANDed); `/.../` is a regex.
    Keyword,
    /// Comby structural search; approximated by matching its literal parts in order.
    Structural,
}

/// How a tri-state filter such as `fork:` or `archived:` treats repositories.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inclusion {
    Include,
    Exclude,
    Only,
}

/// A parsed query.
#[derive(Clone, Debug)]
pub struct Query {
    pub repository_patterns: Vec<Regex>,
    pub excluded_repository_patterns: Vec<Regex>,
    pub file_patterns: Vec<Regex>,
    pub excluded_file_patterns: Vec<Regex>,
    pub languages: Vec<&'static crate::languages::Language>,
    pub excluded_languages: Vec<&'static crate::languages::Language>,
    pub forks: Inclusion,
    pub archived: Inclusion,
    /// `count:N`; `None` is `count:all` (Sourcegraph appends `count:all` to batch queries).
    pub count: Option<usize>,
    pub case_sensitive: bool,
    pub result_type: ResultType,
    /// Content conditions in disjunctive form: a file matches when every matcher of at least
    /// one group matches (`a b OR c` is two groups). Empty means no content pattern.
    pub content: Vec<Vec<ContentMatcher>>,
    /// `repo:has.path(...)`, `repo:has.content(...)`, `repo:has.file(...)` predicates.
    pub repository_predicates: Vec<RepositoryPredicate>,
    /// Whether the query can only match repositories by name (no file, content or language
    /// filter): then no file needs to be read.
    pub repository_only: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResultType {
    /// Default: match file contents (or, with no pattern, repositories and paths).
    Default,
    Repository,
    File,
    Path,
}

/// One content condition.
#[derive(Clone, Debug)]
pub struct ContentMatcher {
    pub regex: Regex,
    /// Whether the matcher is negated (`NOT term`, `-content:`).
    pub negated: bool,
}

/// A condition on a repository's files, from `repo:has.*(...)`.
#[derive(Clone, Debug)]
pub struct RepositoryPredicate {
    pub path: Option<Regex>,
    pub content: Option<Regex>,
    /// `-repo:has...`: the repository must *not* have such a file.
    pub negated: bool,
}

/// Why a query could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub message: String,
}

fn error(message: impl Into<String>) -> QueryError {
    QueryError { message: message.into() }
}

/// A token of the query text: a `field:value` pair or a pattern term.
#[derive(Debug, PartialEq, Eq)]
enum Token {
    Field { negated: bool, name: String, value: String },
    Term { text: String, quoted: bool, regex: bool },
    Not,
    Or,
}

/// Field names the query language knows; any other `word:` is part of a pattern, as in
/// Sourcegraph (so `entrypoint:` or `golang:1.21` search for that text).
const KNOWN_FIELDS: &[&str] = &[
    "repo", "r", "file", "f", "path", "lang", "l", "language", "fork", "archived", "count", "type", "select", "content",
    "patterntype", "case", "timeout", "visibility", "rev", "revision",
];

impl Query {
    /// Parses a query. `spec_version` picks the default pattern type the way Sourcegraph does:
    /// standard for version 1 specs, keyword for version 2.
    pub fn parse(text: &str, spec_version: u8) -> Result<Query, QueryError> {
        // Quotes delimit terms only in standard and keyword search; in regexp, literal and
        // structural search they are ordinary characters of the pattern.
        let raw_pattern_type = declared_pattern_type(text);
        let quotes_are_delimiters = !matches!(raw_pattern_type.as_deref(), Some("regexp" | "regex" | "literal" | "structural"));
        let tokens = tokenize(text, quotes_are_delimiters)?;
        let mut pattern_type = if spec_version >= 2 { PatternType::Keyword } else { PatternType::Standard };
        let mut case_sensitive = false;
        for token in &tokens {
            if let Token::Field { name, value, .. } = token {
                match name.as_str() {
                    "patterntype" | "patternType" => {
                        pattern_type = match value.to_ascii_lowercase().as_str() {
                            "literal" => PatternType::Literal,
                            "regexp" | "regex" => PatternType::Regexp,
                            "standard" => PatternType::Standard,
                            "keyword" => PatternType::Keyword,
                            "structural" => PatternType::Structural,
                            other => return Err(error(format!("unknown patterntype `{other}`; use literal, regexp, standard, keyword or structural"))),
                        }
                    }
                    "case" => {
                        case_sensitive = match value.to_ascii_lowercase().as_str() {
                            "yes" | "true" => true,
                            "no" | "false" => false,
                            other => return Err(error(format!("case: takes yes or no, not `{other}`"))),
                        }
                    }
                    _ => {}
                }
            }
        }

        let mut query = Query {
            repository_patterns: Vec::new(),
            excluded_repository_patterns: Vec::new(),
            file_patterns: Vec::new(),
            excluded_file_patterns: Vec::new(),
            languages: Vec::new(),
            excluded_languages: Vec::new(),
            forks: Inclusion::Include,
            archived: Inclusion::Exclude,
            count: None,
            case_sensitive,
            result_type: ResultType::Default,
            content: Vec::new(),
            repository_predicates: Vec::new(),
            repository_only: true,
        };
        // Pattern terms, split into OR groups: (text, quoted, regex, negated).
        let mut groups: Vec<Vec<(String, bool, bool, bool)>> = vec![Vec::new()];
        let mut field_content: Vec<ContentMatcher> = Vec::new();
        let mut negate_next = false;
        for token in tokens {
            let terms = groups.last_mut().expect("there is always a group");
            match token {
                Token::Not => negate_next = true,
                Token::Or => {
                    negate_next = false;
                    groups.push(Vec::new());
                }
                Token::Term { text, quoted, regex } => {
                    terms.push((text, quoted, regex, negate_next));
                    negate_next = false;
                }
                Token::Field { negated, name, value } => {
                    negate_next = false;
                    if name.eq_ignore_ascii_case("content") {
                        let regex = compile(&regex::escape(&value), case_sensitive, "content")?;
                        field_content.push(ContentMatcher { regex, negated });
                    } else {
                        query.apply_field(negated, &name, &value)?;
                    }
                }
            }
        }
        if groups.iter().any(Vec::is_empty) && groups.len() > 1 {
            return Err(error("OR needs a pattern on both sides"));
        }
        for terms in &groups {
            let mut matchers = build_content_matchers(terms, pattern_type, case_sensitive)?;
            matchers.extend(field_content.iter().cloned());
            if !matchers.is_empty() {
                query.content.push(matchers);
            }
        }
        query.repository_only = query.content.is_empty()
            && query.repository_predicates.is_empty()
            && query.file_patterns.is_empty()
            && query.excluded_file_patterns.is_empty()
            && query.languages.is_empty()
            && query.excluded_languages.is_empty()
            && matches!(query.result_type, ResultType::Default | ResultType::Repository);
        Ok(query)
    }

    fn apply_field(&mut self, negated: bool, name: &str, value: &str) -> Result<(), QueryError> {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "repo" | "r" if value.starts_with("has.") => {
                self.repository_predicates.push(parse_repository_predicate(value, negated, self.case_sensitive)?);
            }
            "repo" | "r" => {
                // `repo:name@rev` filters by revision too; batch changes target the default
                // branch regardless, so the revision part is dropped.
                let pattern = value.split_once('@').map_or(value, |(name, _)| name);
                let regex = compile(pattern, false, "repo")?;
                if negated { self.excluded_repository_patterns.push(regex) } else { self.repository_patterns.push(regex) }
            }
            "file" | "f" | "path" => {
                let regex = compile(value, self.case_sensitive, "file")?;
                if negated { self.excluded_file_patterns.push(regex) } else { self.file_patterns.push(regex) }
            }
            "lang" | "l" | "language" => {
                let language = crate::languages::find(value)
                    .ok_or_else(|| error(format!("unknown language `{value}` in lang:; use a name such as go, python, typescript, java, yaml")))?;
                if negated { self.excluded_languages.push(language) } else { self.languages.push(language) }
            }
            "fork" => self.forks = inclusion(value, "fork")?,
            "archived" => self.archived = inclusion(value, "archived")?,
            "count" => {
                self.count = if value.eq_ignore_ascii_case("all") {
                    None
                } else {
                    Some(value.parse().map_err(|_| error(format!("count: takes a number or all, not `{value}`")))?)
                }
            }
            "type" => {
                self.result_type = match value.to_ascii_lowercase().as_str() {
                    "repo" => ResultType::Repository,
                    "file" => ResultType::File,
                    "path" => ResultType::Path,
                    other => return Err(error(format!("type:{other} is not supported for batch changes; use type:repo, type:file or type:path"))),
                }
            }
            "select" => {
                if !value.eq_ignore_ascii_case("repo") {
                    return Err(error(format!("select:{value} is not supported for batch changes; only select:repo is")));
                }
                self.result_type = ResultType::Repository;
            }
            "patterntype" | "case" | "timeout" | "visibility" | "rev" | "revision" => {}
            other => return Err(error(format!("unknown search field `{other}:`"))),
        }
        Ok(())
    }
}

/// `has.path(re)`, `has.content(re)`, `has.file(path:re content:re)`.
fn parse_repository_predicate(value: &str, negated: bool, case_sensitive: bool) -> Result<RepositoryPredicate, QueryError> {
    let (name, argument) = value
        .split_once('(')
        .and_then(|(name, rest)| rest.strip_suffix(')').map(|argument| (name, argument)))
        .ok_or_else(|| error(format!("repo:{value} needs the form has.path(...), has.content(...) or has.file(path:... content:...)")))?;
    let mut predicate = RepositoryPredicate { path: None, content: None, negated };
    match name {
        "has.path" => predicate.path = Some(compile(argument, case_sensitive, "repo:has.path")?),
        "has.content" => predicate.content = Some(compile(argument, case_sensitive, "repo:has.content")?),
        "has.file" => {
            for part in argument.split_whitespace() {
                if let Some(path) = part.strip_prefix("path:") {
                    predicate.path = Some(compile(path, case_sensitive, "repo:has.file path")?);
                } else if let Some(content) = part.strip_prefix("content:") {
                    predicate.content = Some(compile(content, case_sensitive, "repo:has.file content")?);
                } else {
                    predicate.path = Some(compile(part, case_sensitive, "repo:has.file")?);
                }
            }
        }
        other => return Err(error(format!("repo:{other}(...) is not supported; use has.path, has.content or has.file"))),
    }
    Ok(predicate)
}

/// The value of a `patterntype:` field, read before tokenizing because it decides how quotes
/// are tokenized.
fn declared_pattern_type(text: &str) -> Option<String> {
    text.split_whitespace().rev().find_map(|word| {
        let (name, value) = word.split_once(':')?;
        name.eq_ignore_ascii_case("patterntype").then(|| value.to_ascii_lowercase())
    })
}

fn inclusion(value: &str, field: &str) -> Result<Inclusion, QueryError> {
    match value.to_ascii_lowercase().as_str() {
        "yes" | "true" => Ok(Inclusion::Include),
        "no" | "false" => Ok(Inclusion::Exclude),
        "only" => Ok(Inclusion::Only),
        other => Err(error(format!("{field}: takes yes, no or only, not `{other}`"))),
    }
}

fn compile(pattern: &str, case_sensitive: bool, field: &str) -> Result<Regex, QueryError> {
    RegexBuilder::new(pattern)
        .case_insensitive(!case_sensitive)
        .size_limit(1 << 22)
        .build()
        .map_err(|problem| error(format!("invalid regular expression in {field}: `{pattern}`: {problem}")))
}

/// Turns pattern terms into content matchers according to the pattern type.
fn build_content_matchers(
    terms: &[(String, bool, bool, bool)],
    pattern_type: PatternType,
    case_sensitive: bool,
) -> Result<Vec<ContentMatcher>, QueryError> {
    if terms.is_empty() {
        return Ok(Vec::new());
    }
    let term_regex = |text: &str, regex: bool| if regex { text.to_owned() } else { regex::escape(text) };
    let mut matchers = Vec::new();
    match pattern_type {
        PatternType::Keyword => {
            for (text, _, regex, negated) in terms {
                matchers.push(ContentMatcher { regex: compile(&term_regex(text, *regex), case_sensitive, "pattern")?, negated: *negated });
            }
        }
        PatternType::Standard => {
            // Negated terms stand alone; the others form one pattern joined by spaces, the
            // regex terms inside it kept as regexes.
            let positive: Vec<String> = terms.iter().filter(|term| !term.3).map(|(text, _, regex, _)| term_regex(text, *regex)).collect();
            if !positive.is_empty() {
                matchers.push(ContentMatcher { regex: compile(&positive.join(" "), case_sensitive, "pattern")?, negated: false });
            }
            for (text, _, regex, _) in terms.iter().filter(|term| term.3) {
                matchers.push(ContentMatcher { regex: compile(&term_regex(text, *regex), case_sensitive, "pattern")?, negated: true });
            }
        }
        PatternType::Literal => {
            let joined: Vec<&str> = terms.iter().map(|term| term.0.as_str()).collect();
            matchers.push(ContentMatcher { regex: compile(&regex::escape(&joined.join(" ")), case_sensitive, "pattern")?, negated: false });
        }
        PatternType::Regexp => {
            let joined: Vec<&str> = terms.iter().map(|term| term.0.as_str()).collect();
            matchers.push(ContentMatcher { regex: compile(&joined.join(" "), case_sensitive, "pattern")?, negated: false });
        }
        PatternType::Structural => {
            // Comby holes `:[name]` match anything; the literal parts must appear in order.
            let joined: Vec<&str> = terms.iter().map(|term| term.0.as_str()).collect();
            let pattern = structural_to_regex(&joined.join(" "));
            matchers.push(ContentMatcher { regex: compile(&pattern, case_sensitive, "pattern")?, negated: false });
        }
    }
    Ok(matchers)
}

fn structural_to_regex(pattern: &str) -> String {
    let mut regex = String::from("(?s)");
    let mut rest = pattern;
    while let Some(start) = rest.find(":[") {
        regex.push_str(&regex::escape(&rest[..start]));
        match rest[start..].find(']') {
            Some(end) => {
                regex.push_str(".*?");
                rest = &rest[start + end + 1..];
            }
            None => {
                regex.push_str(&regex::escape(&rest[start..]));
                rest = "";
            }
        }
    }
    regex.push_str(&regex::escape(rest));
    regex
}

/// Splits query text into fields and terms, honouring quotes and `/regex/` delimiters.
fn tokenize(text: &str, quotes_are_delimiters: bool) -> Result<Vec<Token>, QueryError> {
    let mut tokens = Vec::new();
    let characters: Vec<char> = text.chars().collect();
    let mut index = 0;
    while index < characters.len() {
        if characters[index].is_whitespace() {
            index += 1;
            continue;
        }
        let start = index;
        // A field: optional `-`, a name of letters, then `:`.
        let mut cursor = index;
        let negated = characters[cursor] == '-';
        if negated {
            cursor += 1;
        }
        let name_start = cursor;
        while cursor < characters.len() && (characters[cursor].is_ascii_alphabetic()) {
            cursor += 1;
        }
        let name: String = characters[name_start..cursor].iter().collect();
        let known_field = KNOWN_FIELDS.iter().any(|field| field.eq_ignore_ascii_case(&name));
        if known_field && cursor < characters.len() && characters[cursor] == ':' {
            let (value, next) = read_value(&characters, cursor + 1)?;
            tokens.push(Token::Field { negated, name, value });
            index = next;
            continue;
        }
        let (word, quoted, regex, next) = read_term(&characters, start, quotes_are_delimiters)?;
        index = next;
        if !quoted && !regex {
            match word.as_str() {
                "AND" | "and" => continue,
                "NOT" | "not" => {
                    tokens.push(Token::Not);
                    continue;
                }
                "OR" | "or" => {
                    tokens.push(Token::Or);
                    continue;
                }
                _ => {}
            }
        }
        tokens.push(Token::Term { text: word, quoted, regex });
    }
    Ok(tokens)
}

/// A field value: quoted (`"a b"`, `'a b'`) or up to the next whitespace.
fn read_value(characters: &[char], start: usize) -> Result<(String, usize), QueryError> {
    if let Some(&quote) = characters.get(start)
        && (quote == '"' || quote == '\'')
    {
        return read_quoted(characters, start, quote);
    }
    // Parentheses group, so `repo:has.file(path:a content:b)` is one value.
    let mut end = start;
    let mut depth = 0usize;
    while end < characters.len() && (depth > 0 || !characters[end].is_whitespace()) {
        match characters[end] {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        end += 1;
    }
    Ok((characters[start..end].iter().collect(), end))
}

fn read_quoted(characters: &[char], start: usize, quote: char) -> Result<(String, usize), QueryError> {
    let mut value = String::new();
    let mut index = start + 1;
    while index < characters.len() {
        match characters[index] {
            '\\' if index + 1 < characters.len() => {
                let escaped = characters[index + 1];
                if escaped != quote && escaped != '\\' {
                    value.push('\\');
                }
                value.push(escaped);
                index += 2;
            }
            character if character == quote => return Ok((value, index + 1)),
            character => {
                value.push(character);
                index += 1;
            }
        }
    }
    Err(error(format!("unterminated quote {quote} in the query")))
}

fn read_term(characters: &[char], start: usize, quotes_are_delimiters: bool) -> Result<(String, bool, bool, usize), QueryError> {
    match characters[start] {
        '"' | '\'' if quotes_are_delimiters => {
            let (value, next) = read_quoted(characters, start, characters[start])?;
            Ok((value, true, false, next))
        }
        '/' => {
            // `/regex/` up to the next unescaped `/` followed by whitespace or the end.
            let mut index = start + 1;
            while index < characters.len() {
                if characters[index] == '\\' {
                    index += 2;
                    continue;
                }
                if characters[index] == '/' && characters.get(index + 1).is_none_or(|next| next.is_whitespace()) {
                    let value: String = characters[start + 1..index].iter().collect();
                    return Ok((value, false, true, index + 1));
                }
                index += 1;
            }
            let mut end = start;
            while end < characters.len() && !characters[end].is_whitespace() {
                end += 1;
            }
            Ok((characters[start..end].iter().collect(), false, false, end))
        }
        _ => {
            let mut end = start;
            while end < characters.len() && !characters[end].is_whitespace() {
                end += 1;
            }
            Ok((characters[start..end].iter().collect(), false, false, end))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Query {
        Query::parse(text, 1).unwrap_or_else(|problem| panic!("{text}: {problem}"))
    }

    #[test]
    fn fields_and_terms() {
        let query = parse("repo:^github\\.com/a/ -repo:archive file:\\.go$ lang:go count:5 fmt.Sprintf");
        assert_eq!(query.repository_patterns.len(), 1);
        assert_eq!(query.excluded_repository_patterns.len(), 1);
        assert_eq!(query.file_patterns.len(), 1);
        assert_eq!(query.count, Some(5));
        assert_eq!(query.content.len(), 1);
        assert!(query.text_matches("x := fmt.Sprintf(\"%d\", 1)"));
        assert!(!query.text_matches("fmtxSprintf"), "standard terms are literal");
        assert!(!query.repository_only);
    }

    #[test]
    fn repository_only_queries_read_no_files() {
        assert!(parse("repo:automation-testing$").repository_only);
        assert!(parse("repo:a fork:yes archived:no").repository_only);
        assert!(!parse("file:README").repository_only);
    }

    #[test]
    fn pattern_types() {
        let standard = parse("foo bar");
        assert!(standard.text_matches("a foo bar b"));
        assert!(!standard.text_matches("bar foo"));
        let keyword = Query::parse("foo bar", 2).expect("parses");
        assert!(keyword.text_matches("bar then foo"), "keyword terms are ANDed anywhere");
        assert!(!keyword.text_matches("only foo"));
        let regexp = parse("patterntype:regexp fo+ bar");
        assert!(regexp.text_matches("fooo bar"));
        let slashes = parse("/fo+/ baz");
        assert!(slashes.text_matches("foo baz"));
        let structural = parse("fmt.Sprintf(\"%d\", :[v]) patterntype:structural");
        assert!(structural.text_matches("fmt.Sprintf(\"%d\", count)"));
        let quoted = parse("\"a  b\"");
        assert!(quoted.text_matches("xa  by"));
        let regexp_quotes = parse("f:package.json \"bootstrap\": \".?4 patterntype:regexp");
        assert!(regexp_quotes.text_matches("  \"bootstrap\": \"^4.1\""), "quotes are literal in regexp search");
        let unknown_field = parse("file:docker-compose.yaml entrypoint:");
        assert!(unknown_field.text_matches("    entrypoint: [sh]"), "unknown fields are pattern text");
        let either = parse("whitelist OR blacklist -file:scss$");
        assert!(either.text_matches("a blacklist"));
        assert!(either.text_matches("a whitelist"));
        assert!(!either.text_matches("a greylist"));
    }

    #[test]
    fn case_sensitivity() {
        assert!(parse("Foo").text_matches("foo"));
        assert!(!parse("Foo case:yes").text_matches("foo"));
    }

    #[test]
    fn errors_name_the_problem() {
        for (text, message) in [
            ("repo:(", "invalid regular expression in repo: `(`"),
            ("lang:klingon", "unknown language `klingon`"),
            ("a OR", "OR needs a pattern on both sides"),
            ("repo:has.nothing(x)", "repo:has.nothing(...) is not supported"),
            ("count:many", "count: takes a number or all"),
            ("\"open", "unterminated quote"),
        ] {
            let problem = Query::parse(text, 1).expect_err(text);
            assert!(problem.message.contains(message), "{text}: {}", problem.message);
        }
    }

    #[test]
    fn negation() {
        let query = parse("foo NOT bar");
        assert!(query.text_matches("foo"));
        assert!(!query.text_matches("foo bar"));
    }
}
