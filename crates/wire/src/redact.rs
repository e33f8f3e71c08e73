//! Redaction, shared by both ends of a job: the executor passes every string it sends to the
//! server (log output, commands, step stdout/stderr, outputs, failure messages) through a
//! [`Redactor`] built from the job's `redactions` (secret value → `${{ secrets.NAME }}`) and
//! its own tokens; the server passes everything a job reports through one built from the same
//! secrets again before it stores it, so an executor that does not redact leaks nothing.
//!
//! Like Sourcegraph's string replacer this is best effort: a secret that a step prints in
//! another encoding (base64, URL-escaped) is not recognised. Diffs are never rewritten,
//! because a changed diff would no longer apply: [`Redactor::find`] tells the server which
//! secret a diff holds, and the server refuses it.

use aho_corasick::{AhoCorasick, MatchKind};

use crate::executor::Redaction;

/// What executor-level secrets (the executor and job tokens) are replaced with.
pub const SECRET_REMOVED: &str = "SECRET_REMOVED";

/// Replaces secret values by their placeholders, all at once (the longest match wins when
/// one secret contains another).
#[derive(Clone, Debug)]
pub struct Redactor {
    automaton: Option<AhoCorasick>,
    /// (secret, replacement), longest secret first.
    pairs: Vec<(String, String)>,
}

impl Redactor {
    /// A redactor for `redactions` plus `extra_secrets` (replaced by [`SECRET_REMOVED`]).
    /// Empty values are ignored: replacing the empty string would garble everything.
    pub fn new(redactions: &[Redaction], extra_secrets: &[&str]) -> Redactor {
        let mut pairs: Vec<(String, String)> = redactions
            .iter()
            .map(|redaction| (redaction.value.clone(), redaction.replacement.clone()))
            .chain(extra_secrets.iter().map(|secret| ((*secret).to_owned(), SECRET_REMOVED.to_owned())))
            .filter(|(secret, _)| !secret.is_empty())
            .collect();
        pairs.sort_by_key(|(secret, _)| std::cmp::Reverse(secret.len()));
        // Building only fails for absurdly large pattern sets; `redact` then falls back to
        // replacing one secret after the other.
        let automaton = (!pairs.is_empty())
            .then(|| {
                AhoCorasick::builder()
                    .match_kind(MatchKind::LeftmostLongest)
                    .build(pairs.iter().map(|(secret, _)| secret))
                    .ok()
            })
            .flatten();
        Redactor { automaton, pairs }
    }

    /// A redactor that changes nothing.
    pub fn none() -> Redactor {
        Redactor { automaton: None, pairs: Vec::new() }
    }

    /// `text` with every secret replaced.
    pub fn redact(&self, text: &str) -> String {
        if let Some(automaton) = &self.automaton {
            let replacements: Vec<&str> = self.pairs.iter().map(|(_, replacement)| replacement.as_str()).collect();
            return automaton.replace_all(text, &replacements);
        }
        let mut redacted = text.to_owned();
        for (secret, replacement) in &self.pairs {
            redacted = redacted.replace(secret.as_str(), replacement);
        }
        redacted
    }

    /// The replacement of the first secret found in `haystack` (bytes, so binary diffs are
    /// searched too), if any.
    pub fn find(&self, haystack: &[u8]) -> Option<&str> {
        if let Some(automaton) = &self.automaton {
            return automaton.find(haystack).map(|found| self.pairs[found.pattern().as_usize()].1.as_str());
        }
        self.pairs
            .iter()
            .find(|(secret, _)| haystack.windows(secret.len()).any(|window| window == secret.as_bytes()))
            .map(|(_, replacement)| replacement.as_str())
    }

    /// Whether there is any secret to look for.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// Redacts every string inside a JSON value (keys and values).
    pub fn redact_json(&self, value: &serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::String(text) => serde_json::Value::String(self.redact(text)),
            serde_json::Value::Array(items) => serde_json::Value::Array(items.iter().map(|item| self.redact_json(item)).collect()),
            serde_json::Value::Object(entries) => serde_json::Value::Object(
                entries.iter().map(|(key, item)| (self.redact(key), self.redact_json(item))).collect(),
            ),
            other => other.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redaction(value: &str, name: &str) -> Redaction {
        Redaction { value: value.to_owned(), replacement: format!("${{{{ secrets.{name} }}}}") }
    }

    #[test]
    fn replaces_every_secret_longest_first() {
        let redactor = Redactor::new(&[redaction("abc", "SHORT"), redaction("abcdef", "LONG"), redaction("", "EMPTY")], &["tok"]);
        assert_eq!(
            redactor.redact("x abcdef y abc z tok"),
            "x ${{ secrets.LONG }} y ${{ secrets.SHORT }} z SECRET_REMOVED"
        );
    }

    #[test]
    fn without_secrets_text_is_unchanged() {
        assert_eq!(Redactor::new(&[], &[""]).redact("plain"), "plain");
        assert_eq!(Redactor::none().redact("plain"), "plain");
    }

    #[test]
    fn finds_which_secret_bytes_hold() {
        let redactor = Redactor::new(&[redaction("s3cret-long", "LONG"), redaction("other", "OTHER")], &[]);
        assert_eq!(redactor.find(b"+a line with s3cret-long\n"), Some("${{ secrets.LONG }}"));
        assert_eq!(redactor.find(b"\x00binary other"), Some("${{ secrets.OTHER }}"));
        assert_eq!(redactor.find(b"nothing here"), None);
        assert_eq!(Redactor::none().find(b"anything"), None);
        assert!(Redactor::none().is_empty() && !redactor.is_empty());
    }

    #[test]
    fn redacts_inside_json() {
        let redactor = Redactor::new(&[redaction("s3cret", "S")], &[]);
        let value = serde_json::json!({"a": ["x s3cret", 1], "s3cret": true});
        assert_eq!(redactor.redact_json(&value), serde_json::json!({"a": ["x ${{ secrets.S }}", 1], "${{ secrets.S }}": true}));
    }
}
