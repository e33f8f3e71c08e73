//! The lexer: splits template text into Go text/template's items.
//!
//! It mirrors Go's state-machine lexer (parse/lex.go) item for item, including its line
//! accounting, because parse error messages carry the line of the last item the parser
//! looked at. The whole input is lexed up front into a vector; lexing stops at the first
//! error item, exactly where Go's lexer goroutine would stop.

/// Kinds of lexical items; ordering matters only for the keyword split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ItemType {
    Error,
    Bool,
    Char,
    CharConstant,
    Complex,
    Assign,
    Declare,
    Eof,
    Field,
    Identifier,
    LeftDelim,
    LeftParen,
    Number,
    Pipe,
    RawString,
    RightDelim,
    RightParen,
    Space,
    String,
    Text,
    Variable,
    // Keywords.
    Block,
    Break,
    Continue,
    Dot,
    Define,
    Else,
    End,
    If,
    Nil,
    Range,
    Template,
    With,
}

impl ItemType {
    fn is_keyword(self) -> bool {
        matches!(
            self,
            ItemType::Block
                | ItemType::Break
                | ItemType::Continue
                | ItemType::Dot
                | ItemType::Define
                | ItemType::Else
                | ItemType::End
                | ItemType::If
                | ItemType::Nil
                | ItemType::Range
                | ItemType::Template
                | ItemType::With
        )
    }
}

/// One lexical item with its byte offset and starting line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    pub(crate) item_type: ItemType,
    pub(crate) pos: usize,
    pub(crate) value: String,
    pub(crate) line: usize,
}

impl std::fmt::Display for Item {
    /// Go's `item.String()`, used verbatim in "unexpected ..." parse errors.
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.item_type {
            ItemType::Eof => write!(formatter, "EOF"),
            ItemType::Error => write!(formatter, "{}", self.value),
            kind if kind.is_keyword() => write!(formatter, "<{}>", self.value),
            _ => {
                if self.value.len() > 10 {
                    // Go's %.10q truncates to ten runes before quoting.
                    let truncated: String = self.value.chars().take(10).collect();
                    write!(formatter, "{}...", crate::print::go_quote(&truncated))
                } else {
                    write!(formatter, "{}", crate::print::go_quote(&self.value))
                }
            }
        }
    }
}

const LEFT_COMMENT: &str = "/*";
const RIGHT_COMMENT: &str = "*/";
const TRIM_MARKER_LEN: usize = 2;

fn is_space(character: Option<char>) -> bool {
    matches!(character, Some(' ' | '\t' | '\r' | '\n'))
}

fn is_alphanumeric(character: Option<char>) -> bool {
    match character {
        Some(character) => character == '_' || character.is_alphabetic() || is_go_digit(character),
        None => false,
    }
}

/// Go's `unicode.IsDigit`: Unicode category Nd. Rust's `is_numeric` is broader (No, Nl), so
/// approximate Nd with the decimal-digit test Rust exposes per character.
fn is_go_digit(character: char) -> bool {
    character.is_ascii_digit() || (!character.is_ascii() && is_unicode_decimal(character))
}

/// Unicode Nd blocks are runs of ten consecutive code points; this table lists their starts
/// for the common scripts. Anything outside is treated as "not a digit", which only matters
/// for identifiers using exotic digits.
fn is_unicode_decimal(character: char) -> bool {
    const STARTS: &[u32] = &[
        0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
        0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0,
        0x1A80, 0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0,
        0xAA50, 0xABF0, 0xFF10,
    ];
    let code = character as u32;
    STARTS
        .iter()
        .any(|start| code >= *start && code < start + 10)
}

fn has_left_trim_marker(rest: &str) -> bool {
    let bytes = rest.as_bytes();
    bytes.len() >= 2 && bytes[0] == b'-' && matches!(bytes[1], b' ' | b'\t' | b'\r' | b'\n')
}

fn has_right_trim_marker(rest: &str) -> bool {
    let bytes = rest.as_bytes();
    bytes.len() >= 2 && matches!(bytes[0], b' ' | b'\t' | b'\r' | b'\n') && bytes[1] == b'-'
}

fn trim_right_spaces_length(text: &str) -> usize {
    text.len() - text.trim_end_matches([' ', '\t', '\r', '\n']).len()
}

fn trim_left_spaces_length(text: &str) -> usize {
    text.len() - text.trim_start_matches([' ', '\t', '\r', '\n']).len()
}

#[derive(Clone, Copy)]
enum State {
    Text,
    LeftDelim,
    Comment,
    RightDelim,
    InsideAction,
    Space,
    Identifier,
    Field,
    Variable,
    Char,
    Number,
    Quote,
    RawQuote,
}

struct Lexer<'input> {
    input: &'input str,
    left_delim: &'input str,
    right_delim: &'input str,
    pos: usize,
    start: usize,
    at_eof: bool,
    paren_depth: usize,
    line: usize,
    start_line: usize,
    items: Vec<Item>,
}

/// Lexes `input` completely. The last item is always `Eof` or `Error`.
pub(crate) fn lex(input: &str, left_delim: &str, right_delim: &str) -> Vec<Item> {
    let mut lexer = Lexer {
        input,
        left_delim,
        right_delim,
        pos: 0,
        start: 0,
        at_eof: false,
        paren_depth: 0,
        line: 1,
        start_line: 1,
        items: Vec::new(),
    };
    let mut state = Some(State::Text);
    while let Some(current) = state {
        state = lexer.step(current);
    }
    lexer.items
}

impl<'input> Lexer<'input> {
    fn rest(&self) -> &'input str {
        self.input.get(self.pos..).unwrap_or("")
    }

    fn next(&mut self) -> Option<char> {
        let Some(character) = self.rest().chars().next() else {
            self.at_eof = true;
            return None;
        };
        self.pos += character.len_utf8();
        if character == '\n' {
            self.line += 1;
        }
        Some(character)
    }

    fn peek(&mut self) -> Option<char> {
        let character = self.next();
        self.backup();
        character
    }

    fn backup(&mut self) {
        if !self.at_eof
            && self.pos > 0
            && let Some(character) = self
                .input
                .get(..self.pos)
                .and_then(|before| before.chars().next_back())
        {
            self.pos -= character.len_utf8();
            if character == '\n' {
                self.line -= 1;
            }
        }
    }

    fn emit(&mut self, item_type: ItemType) {
        self.items.push(Item {
            item_type,
            pos: self.start,
            value: self
                .input
                .get(self.start..self.pos)
                .unwrap_or("")
                .to_owned(),
            line: self.start_line,
        });
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn ignore(&mut self) {
        self.line += self
            .input
            .get(self.start..self.pos)
            .unwrap_or("")
            .matches('\n')
            .count();
        self.start = self.pos;
        self.start_line = self.line;
    }

    fn accept(&mut self, valid: &str) -> bool {
        if let Some(character) = self.next()
            && valid.contains(character)
        {
            return true;
        }
        self.backup();
        false
    }

    fn accept_run(&mut self, valid: &str) {
        while let Some(character) = self.next() {
            if !valid.contains(character) {
                break;
            }
        }
        self.backup();
    }

    fn error(&mut self, message: String) -> Option<State> {
        self.items.push(Item {
            item_type: ItemType::Error,
            pos: self.start,
            value: message,
            line: self.start_line,
        });
        None
    }

    fn at_right_delim(&self) -> (bool, bool) {
        let rest = self.rest();
        if has_right_trim_marker(rest) && rest[TRIM_MARKER_LEN..].starts_with(self.right_delim) {
            return (true, true);
        }
        (rest.starts_with(self.right_delim), false)
    }

    fn at_terminator(&mut self) -> bool {
        let character = self.peek();
        if is_space(character) {
            return true;
        }
        match character {
            None | Some('.' | ',' | '|' | ':' | ')' | '(') => true,
            _ => self.rest().starts_with(self.right_delim),
        }
    }

    fn step(&mut self, state: State) -> Option<State> {
        match state {
            State::Text => self.lex_text(),
            State::LeftDelim => self.lex_left_delim(),
            State::Comment => self.lex_comment(),
            State::RightDelim => self.lex_right_delim(),
            State::InsideAction => self.lex_inside_action(),
            State::Space => self.lex_space(),
            State::Identifier => self.lex_identifier(),
            State::Field => self.lex_field_or_variable(ItemType::Field),
            State::Variable => {
                if self.at_terminator() {
                    self.emit(ItemType::Variable);
                    return Some(State::InsideAction);
                }
                self.lex_field_or_variable(ItemType::Variable)
            }
            State::Char => self.lex_quoted(
                '\'',
                "unterminated character constant",
                ItemType::CharConstant,
            ),
            State::Number => self.lex_number(),
            State::Quote => self.lex_quoted('"', "unterminated quoted string", ItemType::String),
            State::RawQuote => self.lex_raw_quote(),
        }
    }

    fn lex_text(&mut self) -> Option<State> {
        if let Some(offset) = self.rest().find(self.left_delim) {
            let delimiter_length = self.left_delim.len();
            self.pos += offset;
            let mut trim_length = 0;
            if has_left_trim_marker(self.input.get(self.pos + delimiter_length..).unwrap_or("")) {
                trim_length = trim_right_spaces_length(&self.input[self.start..self.pos]);
            }
            self.pos -= trim_length;
            if self.pos > self.start {
                self.line += self.input[self.start..self.pos].matches('\n').count();
                self.emit(ItemType::Text);
            }
            self.pos += trim_length;
            self.ignore();
            return Some(State::LeftDelim);
        }
        self.pos = self.input.len();
        if self.pos > self.start {
            self.line += self.input[self.start..self.pos].matches('\n').count();
            self.emit(ItemType::Text);
        }
        self.emit(ItemType::Eof);
        None
    }

    fn lex_left_delim(&mut self) -> Option<State> {
        self.pos += self.left_delim.len();
        let trim_space = has_left_trim_marker(self.rest());
        let after_marker = if trim_space { TRIM_MARKER_LEN } else { 0 };
        if self
            .input
            .get(self.pos + after_marker..)
            .unwrap_or("")
            .starts_with(LEFT_COMMENT)
        {
            self.pos += after_marker;
            self.ignore();
            return Some(State::Comment);
        }
        self.emit(ItemType::LeftDelim);
        self.pos += after_marker;
        self.ignore();
        self.paren_depth = 0;
        Some(State::InsideAction)
    }

    fn lex_comment(&mut self) -> Option<State> {
        self.pos += LEFT_COMMENT.len();
        let Some(offset) = self.rest().find(RIGHT_COMMENT) else {
            return self.error("unclosed comment".to_owned());
        };
        self.pos += offset + RIGHT_COMMENT.len();
        let (delim, trim_space) = self.at_right_delim();
        if !delim {
            return self.error("comment ends before closing delimiter".to_owned());
        }
        if trim_space {
            self.pos += TRIM_MARKER_LEN;
        }
        self.pos += self.right_delim.len();
        if trim_space {
            self.pos += trim_left_spaces_length(self.rest());
        }
        self.ignore();
        Some(State::Text)
    }

    fn lex_right_delim(&mut self) -> Option<State> {
        let trim_space = has_right_trim_marker(self.rest());
        if trim_space {
            self.pos += TRIM_MARKER_LEN;
            self.ignore();
        }
        self.pos += self.right_delim.len();
        self.emit(ItemType::RightDelim);
        if trim_space {
            self.pos += trim_left_spaces_length(self.rest());
            self.ignore();
        }
        Some(State::Text)
    }

    fn lex_inside_action(&mut self) -> Option<State> {
        let (delim, _) = self.at_right_delim();
        if delim {
            if self.paren_depth == 0 {
                return Some(State::RightDelim);
            }
            return self.error("unclosed left paren".to_owned());
        }
        let character = self.next();
        match character {
            None => return self.error("unclosed action".to_owned()),
            Some(' ' | '\t' | '\r' | '\n') => {
                self.backup();
                return Some(State::Space);
            }
            Some('=') => self.emit(ItemType::Assign),
            Some(':') => {
                if self.next() != Some('=') {
                    return self.error("expected :=".to_owned());
                }
                self.emit(ItemType::Declare);
            }
            Some('|') => self.emit(ItemType::Pipe),
            Some('"') => return Some(State::Quote),
            Some('`') => return Some(State::RawQuote),
            Some('$') => return Some(State::Variable),
            Some('\'') => return Some(State::Char),
            Some('.') => {
                let next_byte = self.input.as_bytes().get(self.pos).copied();
                if let Some(next_byte) = next_byte
                    && !next_byte.is_ascii_digit()
                {
                    return Some(State::Field);
                }
                self.backup();
                return Some(State::Number);
            }
            Some('+' | '-' | '0'..='9') => {
                self.backup();
                return Some(State::Number);
            }
            Some(other) if is_alphanumeric(Some(other)) => {
                self.backup();
                return Some(State::Identifier);
            }
            Some('(') => {
                self.emit(ItemType::LeftParen);
                self.paren_depth += 1;
            }
            Some(')') => {
                self.emit(ItemType::RightParen);
                if self.paren_depth == 0 {
                    return self.error(format!(
                        "unexpected right paren {}",
                        crate::print::go_unicode_format(')')
                    ));
                }
                self.paren_depth -= 1;
            }
            Some(other) if other.is_ascii() && !other.is_ascii_control() => {
                self.emit(ItemType::Char)
            }
            Some(other) => {
                return self.error(format!(
                    "unrecognized character in action: {}",
                    crate::print::go_unicode_format(other)
                ));
            }
        }
        Some(State::InsideAction)
    }

    fn lex_space(&mut self) -> Option<State> {
        let mut space_count = 0;
        while is_space(self.peek()) {
            self.next();
            space_count += 1;
        }
        let from_last_space = self.input.get(self.pos.saturating_sub(1)..).unwrap_or("");
        if has_right_trim_marker(from_last_space)
            && from_last_space
                .get(TRIM_MARKER_LEN..)
                .unwrap_or("")
                .starts_with(self.right_delim)
        {
            self.backup();
            if space_count == 1 {
                return Some(State::RightDelim);
            }
        }
        self.emit(ItemType::Space);
        Some(State::InsideAction)
    }

    fn lex_identifier(&mut self) -> Option<State> {
        loop {
            let character = self.next();
            if is_alphanumeric(character) {
                continue;
            }
            self.backup();
            let word = &self.input[self.start..self.pos];
            if !self.at_terminator() {
                return self.error(format!("bad character {}", go_unicode_or_eof(character)));
            }
            let item_type = match word {
                "block" => ItemType::Block,
                "break" => ItemType::Break,
                "continue" => ItemType::Continue,
                "define" => ItemType::Define,
                "else" => ItemType::Else,
                "end" => ItemType::End,
                "if" => ItemType::If,
                "range" => ItemType::Range,
                "nil" => ItemType::Nil,
                "template" => ItemType::Template,
                "with" => ItemType::With,
                "true" | "false" => ItemType::Bool,
                _ => ItemType::Identifier,
            };
            self.emit(item_type);
            return Some(State::InsideAction);
        }
    }

    fn lex_field_or_variable(&mut self, item_type: ItemType) -> Option<State> {
        if self.at_terminator() {
            self.emit(if item_type == ItemType::Variable {
                ItemType::Variable
            } else {
                ItemType::Dot
            });
            return Some(State::InsideAction);
        }
        let mut character;
        loop {
            character = self.next();
            if !is_alphanumeric(character) {
                self.backup();
                break;
            }
        }
        if !self.at_terminator() {
            return self.error(format!("bad character {}", go_unicode_or_eof(character)));
        }
        self.emit(item_type);
        Some(State::InsideAction)
    }

    /// Interpreted strings and character constants share Go's scanning loop.
    fn lex_quoted(
        &mut self,
        quote: char,
        unterminated: &str,
        item_type: ItemType,
    ) -> Option<State> {
        loop {
            match self.next() {
                Some('\\') => {
                    let escaped = self.next();
                    if escaped.is_some() && escaped != Some('\n') {
                        continue;
                    }
                    return self.error(unterminated.to_owned());
                }
                None | Some('\n') => return self.error(unterminated.to_owned()),
                Some(character) if character == quote => break,
                Some(_) => {}
            }
        }
        self.emit(item_type);
        Some(State::InsideAction)
    }

    fn lex_raw_quote(&mut self) -> Option<State> {
        loop {
            match self.next() {
                None => return self.error("unterminated raw quoted string".to_owned()),
                Some('`') => break,
                Some(_) => {}
            }
        }
        self.emit(ItemType::RawString);
        Some(State::InsideAction)
    }

    fn lex_number(&mut self) -> Option<State> {
        if !self.scan_number() {
            let text = self.input[self.start..self.pos].to_owned();
            return self.error(format!(
                "bad number syntax: {}",
                crate::print::go_quote(&text)
            ));
        }
        let sign = self.peek();
        if sign == Some('+') || sign == Some('-') {
            if !self.scan_number()
                || self.input.as_bytes().get(self.pos.wrapping_sub(1)) != Some(&b'i')
            {
                let text = self.input[self.start..self.pos].to_owned();
                return self.error(format!(
                    "bad number syntax: {}",
                    crate::print::go_quote(&text)
                ));
            }
            self.emit(ItemType::Complex);
        } else {
            self.emit(ItemType::Number);
        }
        Some(State::InsideAction)
    }

    fn scan_number(&mut self) -> bool {
        self.accept("+-");
        let mut digits = "0123456789_";
        if self.accept("0") {
            if self.accept("xX") {
                digits = "0123456789abcdefABCDEF_";
            } else if self.accept("oO") {
                digits = "01234567_";
            } else if self.accept("bB") {
                digits = "01_";
            }
        }
        self.accept_run(digits);
        if self.accept(".") {
            self.accept_run(digits);
        }
        if digits.len() == 11 && self.accept("eE") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        if digits.len() == 23 && self.accept("pP") {
            self.accept("+-");
            self.accept_run("0123456789_");
        }
        self.accept("i");
        if is_alphanumeric(self.peek()) {
            self.next();
            return false;
        }
        true
    }
}

fn go_unicode_or_eof(character: Option<char>) -> String {
    match character {
        Some(character) => crate::print::go_unicode_format(character),
        // Go formats eof (-1) with %#U as "U+FFFFFFFFFFFFFFFF"; it cannot occur here in practice
        // because end of input is a terminator.
        None => "U+FFFFFFFFFFFFFFFF".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &[(ItemType, &str)]) {
        let items = lex(input, "${{", "}}");
        let actual: Vec<(ItemType, &str)> = items
            .iter()
            .map(|item| (item.item_type, item.value.as_str()))
            .collect();
        assert_eq!(actual, expected, "lexing {input:?}");
    }

    #[test]
    fn text_and_actions() {
        check("", &[(ItemType::Eof, "")]);
        check(
            "hello {{ x }}",
            &[(ItemType::Text, "hello {{ x }}"), (ItemType::Eof, "")],
        );
        check(
            "a${{ .x | f $y }}b",
            &[
                (ItemType::Text, "a"),
                (ItemType::LeftDelim, "${{"),
                (ItemType::Space, " "),
                (ItemType::Field, ".x"),
                (ItemType::Space, " "),
                (ItemType::Pipe, "|"),
                (ItemType::Space, " "),
                (ItemType::Identifier, "f"),
                (ItemType::Space, " "),
                (ItemType::Variable, "$y"),
                (ItemType::Space, " "),
                (ItemType::RightDelim, "}}"),
                (ItemType::Text, "b"),
                (ItemType::Eof, ""),
            ],
        );
    }

    #[test]
    fn trim_markers_and_comments() {
        check(
            "a  ${{- 3 -}}  b",
            &[
                (ItemType::Text, "a"),
                (ItemType::LeftDelim, "${{"),
                (ItemType::Number, "3"),
                (ItemType::RightDelim, "}}"),
                (ItemType::Text, "b"),
                (ItemType::Eof, ""),
            ],
        );
        check(
            "a ${{- /* c */ -}} b",
            &[
                (ItemType::Text, "a"),
                (ItemType::Text, "b"),
                (ItemType::Eof, ""),
            ],
        );
        check("${{/* c", &[(ItemType::Error, "unclosed comment")]);
    }

    #[test]
    fn literals() {
        check(
            r#"${{"a\"b" `r` 'x' 0x1F 1.5e3 -7 true nil}}"#,
            &[
                (ItemType::LeftDelim, "${{"),
                (ItemType::String, r#""a\"b""#),
                (ItemType::Space, " "),
                (ItemType::RawString, "`r`"),
                (ItemType::Space, " "),
                (ItemType::CharConstant, "'x'"),
                (ItemType::Space, " "),
                (ItemType::Number, "0x1F"),
                (ItemType::Space, " "),
                (ItemType::Number, "1.5e3"),
                (ItemType::Space, " "),
                (ItemType::Number, "-7"),
                (ItemType::Space, " "),
                (ItemType::Bool, "true"),
                (ItemType::Space, " "),
                (ItemType::Nil, "nil"),
                (ItemType::RightDelim, "}}"),
                (ItemType::Eof, ""),
            ],
        );
        check(
            "${{ 3x }}",
            &[
                (ItemType::LeftDelim, "${{"),
                (ItemType::Space, " "),
                (ItemType::Error, "bad number syntax: \"3x\""),
            ],
        );
    }
}
