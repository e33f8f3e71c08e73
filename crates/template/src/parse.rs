//! The parser: turns lexer items into the node tree, reproducing Go's parse/parse.go.
//!
//! The parser keeps Go's quirks that are visible to users: which token an error mentions,
//! the line it reports (the line of the furthest item read, as Go's `t.token[0].line`),
//! the "function not defined" check at parse time, variable scoping of declarations,
//! and `{{break}}`/`{{continue}}` only inside `range`.

use crate::lexer::{Item, ItemType, lex};
use crate::node::{Arg, Branch, Command, Node, Number, Pipe, Variable};

/// A parse failure: Go's full message and the byte offset of the offending item.
#[derive(Debug, Clone)]
pub(crate) struct ParseFailure {
    pub(crate) message: String,
    pub(crate) offset: Option<usize>,
}

/// A parsed template body plus the named templates defined inside it.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub(crate) root: Vec<Node>,
    pub(crate) definitions: Vec<(String, Vec<Node>)>,
}

/// Maximum nesting of parentheses and control structures while parsing. Go has no such
/// bound but recursion in Rust must not overflow the stack on hostile input.
const MAX_PARSE_DEPTH: usize = 1000;

/// Parses `text` with the given delimiters; `has_function` says whether an identifier is a
/// known function (Go checks this at parse time).
pub(crate) fn parse(
    name: &str,
    text: &str,
    left_delim: &str,
    right_delim: &str,
    has_function: &dyn Fn(&str) -> bool,
) -> Result<Tree, ParseFailure> {
    let items = lex(text, left_delim, right_delim);
    let mut parser = Parser {
        name,
        items,
        next_index: 0,
        furthest: 0,
        vars: vec!["$".to_owned()],
        range_depth: 0,
        action_line: 0,
        depth: 0,
        has_function,
        definitions: Vec::new(),
    };
    let root = parser.parse_root()?;
    Ok(Tree {
        root,
        definitions: parser.definitions,
    })
}

enum ListEnd {
    End,
    Else { pos: usize },
}

struct Parser<'a> {
    name: &'a str,
    items: Vec<Item>,
    next_index: usize,
    furthest: usize,
    vars: Vec<String>,
    range_depth: usize,
    action_line: usize,
    depth: usize,
    has_function: &'a dyn Fn(&str) -> bool,
    definitions: Vec<(String, Vec<Node>)>,
}

type Parsed<T> = Result<T, ParseFailure>;

impl Parser<'_> {
    fn item_at(&self, index: usize) -> Item {
        // The lexer always ends with Eof or Error and the parser never reads past either,
        // but stay total: repeat the last item.
        self.items
            .get(index)
            .or_else(|| self.items.last())
            .cloned()
            .unwrap_or(Item {
                item_type: ItemType::Eof,
                pos: 0,
                value: String::new(),
                line: 1,
            })
    }

    fn next(&mut self) -> Item {
        let item = self.item_at(self.next_index);
        self.furthest = self.furthest.max(self.next_index);
        if self.next_index + 1 < self.items.len() {
            self.next_index += 1;
        } else {
            // Stay on the terminal item, like a drained Go lexer channel that keeps
            // yielding its last state.
            self.next_index = self.items.len();
        }
        item
    }

    fn backup(&mut self) {
        self.next_index = self.next_index.saturating_sub(1);
    }

    fn peek(&mut self) -> Item {
        let item = self.next();
        self.backup();
        item
    }

    fn next_non_space(&mut self) -> Item {
        loop {
            let item = self.next();
            if item.item_type != ItemType::Space {
                return item;
            }
        }
    }

    fn peek_non_space(&mut self) -> Item {
        let item = self.next_non_space();
        self.backup();
        item
    }

    fn error<T>(&self, message: String) -> Parsed<T> {
        let furthest = self.item_at(self.furthest);
        Err(ParseFailure {
            message: format!("template: {}:{}: {}", self.name, furthest.line, message),
            offset: Some(furthest.pos),
        })
    }

    fn unexpected<T>(&self, item: &Item, context: &str) -> Parsed<T> {
        if item.item_type == ItemType::Error {
            let mut extra = String::new();
            if self.action_line != 0 && self.action_line != item.line {
                extra = format!(" in action started at {}:{}", self.name, self.action_line);
                if item.value.ends_with(" action") {
                    extra = extra[" in action".len()..].to_owned();
                }
            }
            return self.error(format!("{item}{extra}"));
        }
        self.error(format!("unexpected {item} in {context}"))
    }

    fn expect(&mut self, expected: ItemType, context: &str) -> Parsed<Item> {
        let item = self.next_non_space();
        if item.item_type != expected {
            return self.unexpected(&item, context);
        }
        Ok(item)
    }

    fn enter(&mut self) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_PARSE_DEPTH {
            return self.error(format!(
                "template nesting exceeds the maximum depth ({MAX_PARSE_DEPTH})"
            ));
        }
        Ok(())
    }

    fn parse_root(&mut self) -> Parsed<Vec<Node>> {
        let mut root = Vec::new();
        while self.peek().item_type != ItemType::Eof {
            if self.peek().item_type == ItemType::LeftDelim {
                let delim_index = self.next_index;
                self.next();
                if self.next_non_space().item_type == ItemType::Define {
                    self.parse_definition()?;
                    continue;
                }
                self.next_index = delim_index;
            }
            match self.text_or_action()? {
                Parsed2::Node(node) => root.push(node),
                Parsed2::End => return self.error("unexpected {{end}}".to_owned()),
                Parsed2::Else { .. } => return self.error("unexpected {{else}}".to_owned()),
            }
        }
        Ok(root)
    }

    fn parse_definition(&mut self) -> Parsed<()> {
        let context = "define clause";
        let name_item = self.next_non_space();
        if name_item.item_type != ItemType::String && name_item.item_type != ItemType::RawString {
            return self.unexpected(&name_item, context);
        }
        let name = match unquote(&name_item.value) {
            Ok(name) => name,
            Err(message) => return self.error(message),
        };
        self.expect(ItemType::RightDelim, context)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_owned()]);
        let (list, end) = self.item_list()?;
        self.vars = saved_vars;
        if let ListEnd::Else { .. } = end {
            return self.error(format!("unexpected {{{{else}}}} in {context}"));
        }
        self.add_definition(name, list)
    }

    fn add_definition(&mut self, name: String, list: Vec<Node>) -> Parsed<()> {
        if let Some(existing) = self
            .definitions
            .iter_mut()
            .find(|(existing, _)| *existing == name)
        {
            if !is_empty_tree(&existing.1) && !is_empty_tree(&list) {
                return self.error(format!(
                    "template: multiple definition of template {}",
                    crate::print::go_quote(&name)
                ));
            }
            if is_empty_tree(&existing.1) {
                existing.1 = list;
            }
            return Ok(());
        }
        self.definitions.push((name, list));
        Ok(())
    }

    fn item_list(&mut self) -> Parsed<(Vec<Node>, ListEnd)> {
        self.enter()?;
        let mut list = Vec::new();
        while self.peek_non_space().item_type != ItemType::Eof {
            match self.text_or_action()? {
                Parsed2::Node(node) => list.push(node),
                Parsed2::End => {
                    self.depth -= 1;
                    return Ok((list, ListEnd::End));
                }
                Parsed2::Else { pos } => {
                    self.depth -= 1;
                    return Ok((list, ListEnd::Else { pos }));
                }
            }
        }
        self.error("unexpected EOF".to_owned())
    }

    fn text_or_action(&mut self) -> Parsed<Parsed2> {
        let item = self.next_non_space();
        match item.item_type {
            ItemType::Text => Ok(Parsed2::Node(Node::Text {
                pos: item.pos,
                text: item.value,
            })),
            ItemType::LeftDelim => {
                self.action_line = item.line;
                let result = self.action();
                self.action_line = 0;
                result
            }
            _ => self.unexpected(&item, "input"),
        }
    }

    fn action(&mut self) -> Parsed<Parsed2> {
        let item = self.next_non_space();
        match item.item_type {
            ItemType::Block => return self.block_control().map(Parsed2::Node),
            ItemType::Break | ItemType::Continue => {
                let is_break = item.item_type == ItemType::Break;
                let context = if is_break {
                    "{{break}}"
                } else {
                    "{{continue}}"
                };
                let next = self.next_non_space();
                if next.item_type != ItemType::RightDelim {
                    return self.unexpected(&next, context);
                }
                if self.range_depth == 0 {
                    return self.error(format!("{context} outside {{{{range}}}}"));
                }
                return Ok(Parsed2::Node(if is_break {
                    Node::Break { pos: item.pos }
                } else {
                    Node::Continue { pos: item.pos }
                }));
            }
            ItemType::Else => return self.else_control(),
            ItemType::End => {
                self.expect(ItemType::RightDelim, "end")?;
                return Ok(Parsed2::End);
            }
            ItemType::If => return self.if_control().map(Parsed2::Node),
            ItemType::Range => {
                let branch = self.parse_control(false, "range")?;
                return Ok(Parsed2::Node(Node::Range(branch)));
            }
            ItemType::Template => return self.template_control().map(Parsed2::Node),
            ItemType::With => {
                let branch = self.parse_control(false, "with")?;
                return Ok(Parsed2::Node(Node::With(branch)));
            }
            _ => {}
        }
        self.backup();
        let item = self.peek();
        let pipe = self.pipeline("command", ItemType::RightDelim)?;
        Ok(Parsed2::Node(Node::Action {
            pos: item.pos,
            pipe,
        }))
    }

    fn if_control(&mut self) -> Parsed<Node> {
        let branch = self.parse_control(true, "if")?;
        Ok(Node::If(branch))
    }

    fn else_control(&mut self) -> Parsed<Parsed2> {
        let peeked = self.peek_non_space();
        if peeked.item_type == ItemType::If {
            return Ok(Parsed2::Else { pos: peeked.pos });
        }
        let item = self.expect(ItemType::RightDelim, "else")?;
        Ok(Parsed2::Else { pos: item.pos })
    }

    fn parse_control(&mut self, allow_else_if: bool, context: &str) -> Parsed<Branch> {
        let saved_vars = self.vars.len();
        let result = self.parse_control_inner(allow_else_if, context);
        self.vars.truncate(saved_vars);
        result
    }

    fn parse_control_inner(&mut self, allow_else_if: bool, context: &str) -> Parsed<Branch> {
        self.enter()?;
        let pipe = self.pipeline(context, ItemType::RightDelim)?;
        if context == "range" {
            self.range_depth += 1;
        }
        let listed = self.item_list();
        if context == "range" {
            self.range_depth -= 1;
        }
        let (list, end) = listed?;
        let mut else_list = None;
        if let ListEnd::Else { pos } = end {
            let mut handled = false;
            if allow_else_if && self.peek().item_type == ItemType::If {
                self.next();
                let nested = self.if_control()?;
                let _ = pos;
                else_list = Some(vec![nested]);
                handled = true;
            }
            if !handled {
                let (list, end) = self.item_list()?;
                if let ListEnd::Else { .. } = end {
                    return self.error("expected end; found {{else}}".to_owned());
                }
                else_list = Some(list);
            }
        }
        self.depth -= 1;
        Ok(Branch {
            pos: pipe.pos,
            pipe,
            list,
            else_list,
        })
    }

    fn block_control(&mut self) -> Parsed<Node> {
        let context = "block clause";
        let item = self.next_non_space();
        let name = self.template_name(&item, context)?;
        let pipe = self.pipeline(context, ItemType::RightDelim)?;
        let saved_vars = std::mem::replace(&mut self.vars, vec!["$".to_owned()]);
        let saved_range = std::mem::replace(&mut self.range_depth, 0);
        let listed = self.item_list();
        self.vars = saved_vars;
        self.range_depth = saved_range;
        let (list, end) = listed?;
        if let ListEnd::Else { .. } = end {
            return self.error(format!("unexpected {{{{else}}}} in {context}"));
        }
        self.add_definition(name.clone(), list)?;
        Ok(Node::Template {
            pos: item.pos,
            name,
            pipe: Some(pipe),
        })
    }

    fn template_control(&mut self) -> Parsed<Node> {
        let context = "template clause";
        let item = self.next_non_space();
        let name = self.template_name(&item, context)?;
        let mut pipe = None;
        if self.next_non_space().item_type != ItemType::RightDelim {
            self.backup();
            pipe = Some(self.pipeline(context, ItemType::RightDelim)?);
        }
        Ok(Node::Template {
            pos: item.pos,
            name,
            pipe,
        })
    }

    fn template_name(&self, item: &Item, context: &str) -> Parsed<String> {
        match item.item_type {
            ItemType::String | ItemType::RawString => match unquote(&item.value) {
                Ok(name) => Ok(name),
                Err(message) => self.error(message),
            },
            _ => self.unexpected(item, context),
        }
    }

    fn pipeline(&mut self, context: &str, end: ItemType) -> Parsed<Pipe> {
        self.enter()?;
        let first = self.peek_non_space();
        let mut pipe = Pipe {
            pos: first.pos,
            is_assign: false,
            decl: Vec::new(),
            cmds: Vec::new(),
        };
        loop {
            let variable = self.peek_non_space();
            if variable.item_type != ItemType::Variable {
                break;
            }
            let variable_index = self.next_index;
            // peek_non_space left next_index on the variable (spaces skipped before it).
            self.next();
            let token_after_variable = self.peek();
            let next = self.peek_non_space();
            if next.item_type == ItemType::Assign || next.item_type == ItemType::Declare {
                pipe.is_assign = next.item_type == ItemType::Assign;
                self.next_non_space();
                pipe.decl.push(new_variable(variable.pos, &variable.value));
                self.vars.push(variable.value.clone());
                break;
            } else if next.item_type == ItemType::Char && next.value == "," {
                self.next_non_space();
                pipe.decl.push(new_variable(variable.pos, &variable.value));
                self.vars.push(variable.value.clone());
                if context == "range" && pipe.decl.len() < 2 {
                    match self.peek_non_space().item_type {
                        ItemType::Variable | ItemType::RightDelim | ItemType::RightParen => {
                            continue;
                        }
                        _ => return self.error("range can only initialize variables".to_owned()),
                    }
                }
                return self.error(format!("too many declarations in {context}"));
            } else {
                let _ = token_after_variable;
                self.next_index = variable_index;
                break;
            }
        }
        loop {
            let item = self.next_non_space();
            if item.item_type == end {
                self.check_pipeline(&pipe, context)?;
                self.depth -= 1;
                return Ok(pipe);
            }
            match item.item_type {
                ItemType::Bool
                | ItemType::CharConstant
                | ItemType::Complex
                | ItemType::Dot
                | ItemType::Field
                | ItemType::Identifier
                | ItemType::Number
                | ItemType::Nil
                | ItemType::RawString
                | ItemType::String
                | ItemType::Variable
                | ItemType::LeftParen => {
                    self.backup();
                    let command = self.command()?;
                    pipe.cmds.push(command);
                }
                _ => return self.unexpected(&item, context),
            }
        }
    }

    fn check_pipeline(&self, pipe: &Pipe, context: &str) -> Parsed<()> {
        if pipe.cmds.is_empty() {
            return self.error(format!("missing value for {context}"));
        }
        for (index, command) in pipe.cmds.iter().enumerate().skip(1) {
            if let Some(
                Arg::Bool { .. }
                | Arg::Dot { .. }
                | Arg::Nil { .. }
                | Arg::Number(_)
                | Arg::String { .. },
            ) = command.args.first()
            {
                return self.error(format!(
                    "non executable command in pipeline stage {}",
                    index + 1
                ));
            }
        }
        Ok(())
    }

    fn command(&mut self) -> Parsed<Command> {
        let first = self.peek_non_space();
        let mut command = Command {
            pos: first.pos,
            args: Vec::new(),
        };
        loop {
            self.peek_non_space();
            if let Some(operand) = self.operand()? {
                command.args.push(operand);
            }
            let item = self.next();
            match item.item_type {
                ItemType::Space => continue,
                ItemType::RightDelim | ItemType::RightParen => self.backup(),
                ItemType::Pipe => {}
                _ => return self.unexpected(&item, "operand"),
            }
            break;
        }
        if command.args.is_empty() {
            return self.error("empty command".to_owned());
        }
        Ok(command)
    }

    fn operand(&mut self) -> Parsed<Option<Arg>> {
        let Some(node) = self.term()? else {
            return Ok(None);
        };
        if self.peek().item_type != ItemType::Field {
            return Ok(Some(node));
        }
        let chain_pos = self.peek().pos;
        let mut fields = Vec::new();
        while self.peek().item_type == ItemType::Field {
            let item = self.next();
            // Field items look like ".a.b" only when lexed together; each is one ".name".
            fields.extend(item.value[1..].split('.').map(str::to_owned));
        }
        Ok(Some(match node {
            Arg::Field { ident, .. } => {
                let mut ident = ident;
                ident.extend(fields);
                Arg::Field {
                    pos: chain_pos,
                    ident,
                }
            }
            Arg::Variable(variable) => {
                let mut ident = variable.ident;
                ident.extend(fields);
                Arg::Variable(Variable {
                    pos: chain_pos,
                    ident,
                })
            }
            Arg::Bool { .. }
            | Arg::String { .. }
            | Arg::Number(_)
            | Arg::Nil { .. }
            | Arg::Dot { .. } => {
                let quoted = crate::print::go_quote(&node.to_string());
                return self.error(format!("unexpected . after term {quoted}"));
            }
            other => Arg::Chain {
                pos: chain_pos,
                node: Box::new(other),
                fields,
            },
        }))
    }

    fn term(&mut self) -> Parsed<Option<Arg>> {
        let item = self.next_non_space();
        let pos = item.pos;
        Ok(Some(match item.item_type {
            ItemType::Identifier => {
                if !(self.has_function)(&item.value) {
                    return self.error(format!(
                        "function {} not defined",
                        crate::print::go_quote(&item.value)
                    ));
                }
                Arg::Identifier {
                    pos,
                    name: item.value,
                }
            }
            ItemType::Dot => Arg::Dot { pos },
            ItemType::Nil => Arg::Nil { pos },
            ItemType::Variable => {
                let variable = new_variable(pos, &item.value);
                let Some(first) = variable.ident.first() else {
                    return self.error("empty variable".to_owned());
                };
                if !self.vars.iter().any(|name| name == first) {
                    return self.error(format!(
                        "undefined variable {}",
                        crate::print::go_quote(first)
                    ));
                }
                Arg::Variable(variable)
            }
            ItemType::Field => Arg::Field {
                pos,
                ident: item.value[1..].split('.').map(str::to_owned).collect(),
            },
            ItemType::Bool => Arg::Bool {
                pos,
                value: item.value == "true",
            },
            ItemType::CharConstant | ItemType::Complex | ItemType::Number => {
                match new_number(pos, &item.value, item.item_type) {
                    Ok(number) => Arg::Number(number),
                    Err(message) => return self.error(message),
                }
            }
            ItemType::LeftParen => Arg::Pipe(Box::new(
                self.pipeline("parenthesized pipeline", ItemType::RightParen)?,
            )),
            ItemType::String | ItemType::RawString => match unquote(&item.value) {
                Ok(text) => Arg::String {
                    pos,
                    quoted: item.value,
                    text,
                },
                Err(message) => return self.error(message),
            },
            _ => {
                self.backup();
                return Ok(None);
            }
        }))
    }
}

enum Parsed2 {
    Node(Node),
    End,
    Else { pos: usize },
}

fn new_variable(pos: usize, text: &str) -> Variable {
    Variable {
        pos,
        ident: text.split('.').map(str::to_owned).collect(),
    }
}

fn is_empty_tree(list: &[Node]) -> bool {
    list.iter().all(|node| matches!(node, Node::Text { text, .. } if text.trim_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']).is_empty()))
}

/// Go's `strconv.Unquote` for the two string forms the lexer produces.
pub(crate) fn unquote(quoted: &str) -> Result<String, String> {
    const SYNTAX: &str = "invalid syntax";
    if quoted.len() < 2 {
        return Err(SYNTAX.to_owned());
    }
    let inner = &quoted[1..quoted.len() - 1];
    if quoted.starts_with('`') {
        return Ok(inner.replace('\r', ""));
    }
    if inner.contains('\n') {
        return Err(SYNTAX.to_owned());
    }
    let mut bytes = Vec::with_capacity(inner.len());
    let mut rest = inner;
    while !rest.is_empty() {
        let (value, is_byte, tail) = unquote_char(rest, '"').map_err(|_| SYNTAX.to_owned())?;
        if is_byte {
            bytes.push(value as u8);
        } else {
            let character = char::from_u32(value).ok_or_else(|| SYNTAX.to_owned())?;
            let mut buffer = [0u8; 4];
            bytes.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
        }
        rest = tail;
    }
    // Go strings may hold arbitrary bytes (via \x escapes); Rust strings cannot, so invalid
    // sequences become U+FFFD.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Go's `strconv.UnquoteChar`: returns the code point (or byte, when `is_byte`) and the tail.
fn unquote_char(text: &str, quote: char) -> Result<(u32, bool, &str), ()> {
    let mut characters = text.chars();
    let first = characters.next().ok_or(())?;
    if first == quote && (quote == '\'' || quote == '"') {
        return Err(());
    }
    if first != '\\' {
        return Ok((first as u32, false, characters.as_str()));
    }
    let escape = characters.next().ok_or(())?;
    let tail = characters.as_str();
    let simple = match escape {
        'a' => Some(7),
        'b' => Some(8),
        'f' => Some(12),
        'n' => Some(10),
        'r' => Some(13),
        't' => Some(9),
        'v' => Some(11),
        '\\' => Some(u32::from('\\')),
        '\'' | '"' => {
            if escape != quote {
                return Err(());
            }
            Some(escape as u32)
        }
        _ => None,
    };
    if let Some(value) = simple {
        return Ok((value, false, tail));
    }
    match escape {
        'x' | 'u' | 'U' => {
            let length = match escape {
                'x' => 2,
                'u' => 4,
                _ => 8,
            };
            let digits = tail.get(..length).ok_or(())?;
            let value = u32::from_str_radix(digits, 16).map_err(|_| ())?;
            if !digits.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(());
            }
            if escape == 'x' {
                return Ok((value, quote != '\'', &tail[length..]));
            }
            if char::from_u32(value).is_none() {
                return Err(());
            }
            Ok((value, false, &tail[length..]))
        }
        '0'..='7' => {
            let digits = text.get(1..4).ok_or(())?;
            if !digits.bytes().all(|byte| (b'0'..=b'7').contains(&byte)) {
                return Err(());
            }
            let value = u32::from_str_radix(digits, 8).map_err(|_| ())?;
            if value > 255 {
                return Err(());
            }
            Ok((value, quote != '\'', &text[4..]))
        }
        _ => Err(()),
    }
}

/// Go's `underscoreOK`: underscores must separate digits.
fn underscore_ok(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut saw = b'^';
    let mut index = 0;
    let mut start = 0;
    if !bytes.is_empty() && (bytes[0] == b'-' || bytes[0] == b'+') {
        start = 1;
    }
    let body = &bytes[start..];
    let mut hex = false;
    if body.len() >= 2
        && body[0] == b'0'
        && matches!(body[1].to_ascii_lowercase(), b'b' | b'o' | b'x')
    {
        index = 2;
        saw = b'0';
        hex = body[1].eq_ignore_ascii_case(&b'x');
    }
    while index < body.len() {
        let byte = body[index];
        if byte.is_ascii_digit() || hex && byte.is_ascii_hexdigit() {
            saw = b'0';
        } else if byte == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
        index += 1;
    }
    saw != b'_'
}

/// Go's `strconv.ParseUint(text, 0, 64)`.
fn parse_go_uint(text: &str) -> Option<u64> {
    if text.is_empty() {
        return None;
    }
    let lower = text.to_ascii_lowercase();
    let (radix, digits) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, &lower[1..])
    } else {
        (10, lower.as_str())
    };
    let has_underscore = digits.contains('_');
    let cleaned: String = digits
        .chars()
        .filter(|character| *character != '_')
        .collect();
    if cleaned.is_empty() && (radix != 8 || lower.starts_with("0o")) {
        return None;
    }
    if has_underscore && !underscore_ok(text) {
        return None;
    }
    if cleaned.is_empty() {
        return Some(0);
    }
    if cleaned.starts_with(['+', '-']) {
        return None;
    }
    u64::from_str_radix(&cleaned, radix).ok()
}

/// Go's `strconv.ParseInt(text, 0, 64)`.
fn parse_go_int(text: &str) -> Option<i64> {
    let (negative, magnitude_text) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let magnitude = parse_go_uint(magnitude_text)?;
    if negative {
        if magnitude > i64::MAX as u64 + 1 {
            return None;
        }
        Some((magnitude as i128).wrapping_neg() as i64)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Go's `strconv.ParseFloat(text, 64)` for the syntaxes the lexer can produce.
fn parse_go_float(text: &str) -> Option<f64> {
    if text.contains('_') && !underscore_ok(text) {
        return None;
    }
    let cleaned: String = text.chars().filter(|character| *character != '_').collect();
    let (negative, body) = match cleaned.as_bytes().first() {
        Some(b'-') => (true, &cleaned[1..]),
        Some(b'+') => (false, &cleaned[1..]),
        _ => (false, cleaned.as_str()),
    };
    let lower = body.to_ascii_lowercase();
    let magnitude = if let Some(hex) = lower.strip_prefix("0x") {
        parse_hex_float(hex)?
    } else {
        if lower.starts_with(['+', '-'])
            || lower.contains("inf")
            || lower.contains("nan")
            || lower.is_empty()
        {
            return None;
        }
        let value: f64 = lower.parse().ok()?;
        if value.is_infinite() {
            return None;
        }
        value
    };
    Some(if negative { -magnitude } else { magnitude })
}

fn parse_hex_float(text: &str) -> Option<f64> {
    let (mantissa, exponent) = match text.split_once('p') {
        Some((mantissa, exponent)) => (mantissa, exponent.parse::<i32>().ok()?),
        None => return None,
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    if whole.is_empty() && fraction.is_empty() {
        return None;
    }
    let mut value = 0f64;
    for digit in whole.chars() {
        value = value * 16.0 + f64::from(digit.to_digit(16)?);
    }
    let mut scale = 1.0 / 16.0;
    for digit in fraction.chars() {
        value += f64::from(digit.to_digit(16)?) * scale;
        scale /= 16.0;
    }
    let result = value * 2f64.powi(exponent);
    if result.is_infinite() {
        None
    } else {
        Some(result)
    }
}

/// Go's `newNumber`: decides which of int/uint/float a constant can be.
fn new_number(pos: usize, text: &str, item_type: ItemType) -> Result<Number, String> {
    let mut number = Number {
        pos,
        text: text.to_owned(),
        is_int: false,
        is_uint: false,
        is_float: false,
        is_complex: false,
        int_value: 0,
        float_value: 0.0,
    };
    if item_type == ItemType::CharConstant {
        let inner = text.get(1..).unwrap_or("");
        let (value, _, tail) =
            unquote_char(inner, '\'').map_err(|_| "invalid syntax".to_owned())?;
        if tail != "'" {
            return Err(format!("malformed character constant: {text}"));
        }
        number.is_int = true;
        number.is_uint = true;
        number.is_float = true;
        number.int_value = i64::from(value);
        number.float_value = f64::from(value);
        return Ok(number);
    }
    if item_type == ItemType::Complex || text.ends_with('i') {
        // Complex constants are accepted by the parser but never useful in batch specs;
        // execution reports them as unsupported.
        number.is_complex = true;
        return Ok(number);
    }
    let unsigned = parse_go_uint(text);
    if let Some(value) = unsigned {
        number.is_uint = true;
        number.float_value = value as f64;
        number.is_float = true;
    }
    if let Some(value) = parse_go_int(text) {
        number.is_int = true;
        number.int_value = value;
        if value == 0 {
            number.is_uint = true;
        }
        number.is_float = true;
        number.float_value = value as f64;
    }
    if !number.is_int
        && !number.is_uint
        && let Some(value) = parse_go_float(text)
    {
        {
            if !text.contains(['.', 'e', 'E', 'p', 'P']) {
                return Err(format!(
                    "integer overflow: {}",
                    crate::print::go_quote(text)
                ));
            }
            number.is_float = true;
            number.float_value = value;
            if value.fract() == 0.0
                && (-9.223_372_036_854_776e18..9.223_372_036_854_776e18).contains(&value)
            {
                number.is_int = true;
                number.int_value = value as i64;
            }
            if value.fract() == 0.0 && (0.0..1.844_674_407_370_955_2e19).contains(&value) {
                number.is_uint = true;
            }
        }
    }
    if !number.is_int && !number.is_uint && !number.is_float {
        return Err(format!(
            "illegal number syntax: {}",
            crate::print::go_quote(text)
        ));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        let result = parse("t", input, "${{", "}}", &|name| {
            matches!(name, "f" | "printf" | "eq")
        });
        let actual = match result {
            Ok(tree) => tree
                .root
                .iter()
                .map(ToString::to_string)
                .collect::<String>(),
            Err(failure) => format!("ERROR: {}", failure.message),
        };
        assert_eq!(actual, expected, "parsing {input:?}");
    }

    #[test]
    fn parses_actions() {
        check("a${{ .x.y }}b", "a{{.x.y}}b");
        check(
            "${{ $v := f 1 | printf \"%d\" }}",
            "{{$v := f 1 | printf \"%d\"}}",
        );
        check(
            "${{ if eq 1 2 }}a${{ else if f }}b${{ else }}c${{ end }}",
            "{{if eq 1 2}}a{{else}}{{if f}}b{{else}}c{{end}}{{end}}",
        );
        check(
            "${{ range $i, $v := .x }}${{ $v }}${{ break }}${{ end }}",
            "{{range $i, $v := .x}}{{$v}}{{break}}{{end}}",
        );
        check("${{ (f).a.b }}", "{{(f).a.b}}");
    }

    #[test]
    fn reports_errors_like_go() {
        check(
            "${{ foo }}",
            "ERROR: template: t:1: function \"foo\" not defined",
        );
        check(
            "${{ 3 }",
            "ERROR: template: t:1: unexpected \"}\" in operand",
        );
        check("${{ end }}", "ERROR: template: t:1: unexpected {{end}}");
        check(
            "${{ $x }}",
            "ERROR: template: t:1: undefined variable \"$x\"",
        );
        check("${{ if 1 }}", "ERROR: template: t:1: unexpected EOF");
        check(
            "${{ break }}",
            "ERROR: template: t:1: {{break}} outside {{range}}",
        );
        check(
            "${{ 9999999999999999999999 }}",
            "ERROR: template: t:1: integer overflow: \"9999999999999999999999\"",
        );
    }
}
