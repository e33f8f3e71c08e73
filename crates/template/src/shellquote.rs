//! Shell quoting compatible with github.com/kballard/go-shellquote (the 2018 release
//! src-cli pins): `join` quotes words for /bin/sh, `split` parses them back.
//!
//! Sourcegraph escapes every changed-file path with `Join` before exposing it to step
//! templates, so the exact quoting style is visible in rendered scripts.

const SPECIAL_CHARACTERS: &str = "\\'\"`${[|&;<>()*?!";
const EXTRA_SPECIAL_CHARACTERS: &str = " \t\n";
const PREFIX_CHARACTERS: &str = "~";

/// Quotes one word the way `shellquote.Join(word)` does.
pub fn quote(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 2);
    quote_into(word, &mut out);
    out
}

/// `shellquote.Join(words...)`.
pub fn join<S: AsRef<str>>(words: &[S]) -> String {
    let mut out = String::new();
    for (index, word) in words.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        quote_into(word.as_ref(), &mut out);
    }
    out
}

fn quote_into(word: &str, out: &mut String) {
    if word.is_empty() {
        out.push_str("''");
        return;
    }
    if word.contains(|character| EXTRA_SPECIAL_CHARACTERS.contains(character)) {
        // Single quotes read better for words with whitespace; quotes at either end are
        // written as \' outside the quoted part, inner ones as '\''.
        let left_trimmed = word.trim_start_matches('\'');
        let starting_quotes = word.len() - left_trimmed.len();
        let trimmed = left_trimmed.trim_end_matches('\'');
        let ending_quotes = left_trimmed.len() - trimmed.len();
        for _ in 0..starting_quotes {
            out.push_str("\\'");
        }
        out.push('\'');
        for character in trimmed.chars() {
            if character == '\'' {
                out.push_str("'\\''");
            } else {
                out.push(character);
            }
        }
        out.push('\'');
        for _ in 0..ending_quotes {
            out.push_str("\\'");
        }
        return;
    }
    let mut characters = word.chars();
    if let Some(first) = characters.next() {
        if SPECIAL_CHARACTERS.contains(first) || PREFIX_CHARACTERS.contains(first) {
            out.push('\\');
        }
        out.push(first);
    }
    for character in characters {
        if SPECIAL_CHARACTERS.contains(character) {
            out.push('\\');
        }
        out.push(character);
    }
}

/// Errors from [`split`], with go-shellquote's messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    /// A `'` was never closed.
    #[error("Unterminated single-quoted string")]
    UnterminatedSingleQuote,
    /// A `"` was never closed.
    #[error("Unterminated double-quoted string")]
    UnterminatedDoubleQuote,
    /// The input ended right after a backslash.
    #[error("Unterminated backslash-escape")]
    UnterminatedEscape,
}

const SPLIT_CHARACTERS: &str = " \n\t";
const DOUBLE_ESCAPE_CHARACTERS: &str = "$`\"\n\\";

/// `shellquote.Split(input)`: splits a shell-quoted string into words.
pub fn split(input: &str) -> Result<Vec<String>, SplitError> {
    let mut words = Vec::new();
    let mut rest = input;
    while let Some(character) = rest.chars().next() {
        if SPLIT_CHARACTERS.contains(character) {
            rest = &rest[character.len_utf8()..];
            continue;
        }
        if character == '\\' {
            let next = &rest[1..];
            match next.chars().next() {
                None => return Err(SplitError::UnterminatedEscape),
                Some('\n') => {
                    rest = &next[1..];
                    continue;
                }
                Some(_) => {}
            }
        }
        let (word, remainder) = split_word(rest)?;
        words.push(word);
        rest = remainder;
    }
    Ok(words)
}

fn split_word(input: &str) -> Result<(String, &str), SplitError> {
    let mut word = String::new();
    let mut characters = input.char_indices().peekable();
    let mut rest_start = input.len();
    while let Some((index, character)) = characters.next() {
        match character {
            '\'' => loop {
                match characters.next() {
                    None => return Err(SplitError::UnterminatedSingleQuote),
                    Some((_, '\'')) => break,
                    Some((_, inner)) => word.push(inner),
                }
            },
            '"' => loop {
                match characters.next() {
                    None => return Err(SplitError::UnterminatedDoubleQuote),
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match characters.peek().copied() {
                        Some((_, escaped)) if DOUBLE_ESCAPE_CHARACTERS.contains(escaped) => {
                            characters.next();
                            if escaped != '\n' {
                                word.push(escaped);
                            }
                        }
                        _ => word.push('\\'),
                    },
                    Some((_, inner)) => word.push(inner),
                }
            },
            '\\' => match characters.next() {
                None => return Err(SplitError::UnterminatedEscape),
                Some((_, '\n')) => {}
                Some((_, escaped)) => word.push(escaped),
            },
            separator if SPLIT_CHARACTERS.contains(separator) => {
                rest_start = index + separator.len_utf8();
                return Ok((word, &input[rest_start..]));
            }
            other => word.push(other),
        }
    }
    Ok((word, &input[rest_start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_like_go_shellquote() {
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a.txt"), "a.txt");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("$x"), "\\$x");
        assert_eq!(quote("~home"), "\\~home");
        assert_eq!(quote("'a b'"), "\\''a b'\\'");
        assert_eq!(quote("it's here"), "'it'\\''s here'");
    }

    #[test]
    fn splits_like_go_shellquote() {
        assert_eq!(
            split("a 'b c' \"d\\\"e\" f\\ g"),
            Ok(vec!["a".into(), "b c".into(), "d\"e".into(), "f g".into()])
        );
        assert_eq!(split("'a"), Err(SplitError::UnterminatedSingleQuote));
        assert_eq!(split(""), Ok(vec![]));
    }
}
