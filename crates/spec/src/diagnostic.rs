//! Problems found in a batch spec, with where they are and how to show them.
//!
//! Bad input is data, not a panic: the validator collects every [`Diagnostic`] it finds so the
//! user sees all problems at once. Rendering is here (not in the CLI) so that the command line
//! and the server's API show exactly the same text.

use std::fmt::Write as _;

use flotilla_yaml::Position;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// The field, written the way a user would: `steps[0].container`. Empty for the whole spec.
    pub path: String,
    /// What is wrong and, where possible, what was expected.
    pub message: String,
    /// Where it is (1-based line and column).
    pub line: usize,
    pub column: usize,
    /// How many characters to underline on that line (at least one).
    pub width: usize,
}

impl Diagnostic {
    pub(crate) fn error(path: &str, position: Position, width: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity: Severity::Error,
            path: path.to_owned(),
            message: message.into(),
            line: position.line.max(1),
            column: position.column.max(1),
            width: width.max(1),
        }
    }

    pub(crate) fn warning(path: &str, position: Position, width: usize, message: impl Into<String>) -> Diagnostic {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(path, position, width, message) }
    }

    /// `file:line:column: error: path: message`, the first line of the rendered form.
    pub fn headline(&self, file_name: &str) -> String {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        if self.path.is_empty() {
            format!("{file_name}:{}:{}: {severity}: {}", self.line, self.column, self.message)
        } else {
            format!("{file_name}:{}:{}: {severity}: {}: {}", self.line, self.column, self.path, self.message)
        }
    }

    /// The headline followed by the source line with the problem underlined.
    pub fn render(&self, file_name: &str, source: &str) -> String {
        let mut out = self.headline(file_name);
        out.push('\n');
        if let Some(line_text) = source_lines(source).get(self.line - 1).copied() {
            let gutter = self.line.to_string().len();
            let _ = writeln!(out, "{:gutter$} |", "");
            let _ = writeln!(out, "{} | {}", self.line, line_text);
            let line_chars = line_text.chars().count();
            let start = (self.column - 1).min(line_chars);
            // Underline within the line; a span that runs past it is shown up to its end.
            let width = self.width.min(line_chars.saturating_sub(start)).max(1);
            let padding: String = line_text
                .chars()
                .take(start)
                .map(|character| if character == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(out, "{:gutter$} | {padding}{}", "", "^".repeat(width));
        }
        out
    }
}

/// The lines of a source text as YAML counts them: `\r\n`, `\n` and a lone `\r` all end a
/// line (so positions from the parser and the lines shown agree, whatever the line endings).
pub fn source_lines(source: &str) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut rest = source;
    while !rest.is_empty() {
        match rest.find(['\n', '\r']) {
            Some(end) => {
                lines.push(&rest[..end]);
                let break_length = if rest[end..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[end + break_length..];
            }
            None => {
                lines.push(rest);
                rest = "";
            }
        }
    }
    lines
}

/// Renders every diagnostic, errors first in source order, then warnings.
pub fn render_all(diagnostics: &[Diagnostic], file_name: &str, source: &str) -> String {
    let mut sorted: Vec<&Diagnostic> = diagnostics.iter().collect();
    sorted.sort_by_key(|diagnostic| (diagnostic.severity != Severity::Error, diagnostic.line, diagnostic.column));
    sorted.iter().map(|diagnostic| diagnostic.render(file_name, source)).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_any_yaml_line_break() {
        assert_eq!(source_lines("a\r\nb\rc\nd"), vec!["a", "b", "c", "d"]);
        assert_eq!(source_lines("a\n\nb\n"), vec!["a", "", "b"]);
        assert!(source_lines("").is_empty());
    }

    #[test]
    fn renders_headline_and_underline() {
        let diagnostic = Diagnostic::error(
            "steps[0]",
            Position { line: 2, column: 5, char_offset: 0 },
            8,
            "unknown field `contaner`",
        );
        let rendered = diagnostic.render("batch.yaml", "steps:\n  - contaner: alpine\n");
        assert_eq!(
            rendered,
            "batch.yaml:2:5: error: steps[0]: unknown field `contaner`\n  |\n2 |   - contaner: alpine\n  |     ^^^^^^^^\n"
        );
    }
}
