//! Glob matching for the `matches` helper, following github.com/gobwas/glob compiled
//! without separators (as src-cli does): `*` matches any sequence (including `/`), `?` one
//! character, `[abc]`/`[!abc]`/`[a-z]` character classes, `{a,b}` alternatives (which may
//! nest and contain wildcards) and `\` escapes.
//!
//! Alternatives are expanded into plain patterns (bounded in number), and each plain pattern
//! is matched with the classic greedy-star backtracking algorithm, which is O(n·m) and cannot
//! blow up on hostile patterns.

/// A glob compile error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct GlobError {
    message: String,
}

fn glob_error(message: &str) -> GlobError {
    GlobError {
        message: message.to_owned(),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Literal(char),
    Any,
    Single,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

#[derive(Debug, Clone)]
enum Piece {
    Token(Token),
    Alternatives(Vec<Vec<Piece>>),
}

/// Bound on the number of plain patterns alternatives may expand to.
const MAX_EXPANSIONS: usize = 4096;

/// A compiled glob.
#[derive(Debug, Clone)]
pub struct Glob {
    alternatives: Vec<Vec<Token>>,
}

impl Glob {
    /// Compiles `pattern`.
    pub fn compile(pattern: &str) -> Result<Glob, GlobError> {
        let characters: Vec<char> = pattern.chars().collect();
        let mut position = 0;
        let pieces = parse_sequence(&characters, &mut position, false)?;
        if position < characters.len() {
            return Err(glob_error("unexpected end of alternatives"));
        }
        let alternatives = expand(&pieces)?;
        Ok(Glob { alternatives })
    }

    /// Whether `text` matches.
    pub fn is_match(&self, text: &str) -> bool {
        let characters: Vec<char> = text.chars().collect();
        self.alternatives
            .iter()
            .any(|tokens| match_tokens(tokens, &characters))
    }
}

fn parse_sequence(
    characters: &[char],
    position: &mut usize,
    inside_alternatives: bool,
) -> Result<Vec<Piece>, GlobError> {
    let mut pieces = Vec::new();
    while *position < characters.len() {
        let character = characters[*position];
        match character {
            ',' | '}' if inside_alternatives => return Ok(pieces),
            '*' => {
                *position += 1;
                // Consecutive stars ("super" wildcards) are equivalent without separators.
                if pieces
                    .last()
                    .is_none_or(|last| !matches!(last, Piece::Token(Token::Any)))
                {
                    pieces.push(Piece::Token(Token::Any));
                }
            }
            '?' => {
                *position += 1;
                pieces.push(Piece::Token(Token::Single));
            }
            '\\' => {
                *position += 1;
                let Some(escaped) = characters.get(*position) else {
                    return Err(glob_error("unexpected end of input after escape"));
                };
                *position += 1;
                pieces.push(Piece::Token(Token::Literal(*escaped)));
            }
            '[' => {
                *position += 1;
                pieces.push(Piece::Token(parse_class(characters, position)?));
            }
            '{' => {
                *position += 1;
                let mut alternatives = Vec::new();
                loop {
                    alternatives.push(parse_sequence(characters, position, true)?);
                    match characters.get(*position) {
                        Some(',') => *position += 1,
                        Some('}') => {
                            *position += 1;
                            break;
                        }
                        _ => return Err(glob_error("unexpected end of input in alternatives")),
                    }
                }
                pieces.push(Piece::Alternatives(alternatives));
            }
            other => {
                *position += 1;
                pieces.push(Piece::Token(Token::Literal(other)));
            }
        }
    }
    Ok(pieces)
}

fn parse_class(characters: &[char], position: &mut usize) -> Result<Token, GlobError> {
    let mut negated = false;
    if characters.get(*position) == Some(&'!') {
        negated = true;
        *position += 1;
    }
    let mut ranges = Vec::new();
    loop {
        let Some(&character) = characters.get(*position) else {
            return Err(glob_error("unexpected end of input in character class"));
        };
        *position += 1;
        if character == ']' {
            break;
        }
        if characters.get(*position) == Some(&'-')
            && characters
                .get(*position + 1)
                .is_some_and(|next| *next != ']')
        {
            let high = characters[*position + 1];
            *position += 2;
            if high < character {
                return Err(glob_error(
                    "hi character should be greater than lo character",
                ));
            }
            ranges.push((character, high));
        } else {
            ranges.push((character, character));
        }
    }
    if ranges.is_empty() {
        return Err(glob_error("empty character class"));
    }
    Ok(Token::Class { negated, ranges })
}

fn expand(pieces: &[Piece]) -> Result<Vec<Vec<Token>>, GlobError> {
    let mut results: Vec<Vec<Token>> = vec![Vec::new()];
    for piece in pieces {
        match piece {
            Piece::Token(token) => {
                for result in &mut results {
                    result.push(token.clone());
                }
            }
            Piece::Alternatives(alternatives) => {
                let mut expanded_alternatives = Vec::new();
                for alternative in alternatives {
                    expanded_alternatives.extend(expand(alternative)?);
                }
                let mut next = Vec::new();
                for result in &results {
                    for alternative in &expanded_alternatives {
                        let mut combined = result.clone();
                        combined.extend(alternative.iter().cloned());
                        next.push(combined);
                        if next.len() > MAX_EXPANSIONS {
                            return Err(glob_error("too many alternatives in pattern"));
                        }
                    }
                }
                results = next;
            }
        }
    }
    Ok(results)
}

fn token_matches(token: &Token, character: char) -> bool {
    match token {
        Token::Literal(literal) => *literal == character,
        Token::Single => true,
        Token::Any => false,
        Token::Class { negated, ranges } => {
            let inside = ranges
                .iter()
                .any(|(low, high)| *low <= character && character <= *high);
            inside != *negated
        }
    }
}

fn match_tokens(tokens: &[Token], text: &[char]) -> bool {
    let (mut token_index, mut text_index) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while text_index < text.len() {
        if token_index < tokens.len() {
            if tokens[token_index] == Token::Any {
                star = Some((token_index, text_index));
                token_index += 1;
                continue;
            }
            if token_matches(&tokens[token_index], text[text_index]) {
                token_index += 1;
                text_index += 1;
                continue;
            }
        }
        match star {
            Some((star_token, star_text)) => {
                token_index = star_token + 1;
                text_index = star_text + 1;
                star = Some((star_token, star_text + 1));
            }
            None => return false,
        }
    }
    tokens[token_index..]
        .iter()
        .all(|token| *token == Token::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pattern: &str, text: &str, expected: bool) {
        let glob = Glob::compile(pattern).map_err(|error| error.to_string());
        assert_eq!(
            glob.map(|glob| glob.is_match(text)),
            Ok(expected),
            "{pattern} vs {text}"
        );
    }

    #[test]
    fn matches_like_gobwas() {
        check("*", "a/b/c", true);
        check("github.com/*", "github.com/a/b", true);
        check("*.go", "main.rs", false);
        check("?at", "cat", true);
        check("[!c]at", "cat", false);
        check("[a-c]at", "bat", true);
        check("{foo,ba*}", "bar", true);
        check("a\\*", "a*", true);
        check("", "", true);
        assert!(Glob::compile("[abc").is_err());
    }
}
