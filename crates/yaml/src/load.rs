//! Turns parser events into a [`Node`] tree: aliases, merge keys, limits.
//!
//! The builder is an explicit stack rather than recursion, so a deeply nested document cannot
//! overflow the Rust stack; nesting beyond [`LoadLimits::max_depth`] is an error instead.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle as ParserScalarStyle, Span as ParserSpan, Tag};

use crate::scalar::{is_null, parse_float, parse_int, resolve_plain};
use crate::{Node, Position, ScalarStyle, Span, Value, YamlError};

/// Bounds that keep a hostile document from exhausting memory or the stack.
#[derive(Clone, Copy, Debug)]
pub struct LoadLimits {
    /// Most nodes the finished tree may hold, counting every copy an alias makes.
    pub max_nodes: usize,
    /// Deepest nesting of sequences and mappings.
    pub max_depth: usize,
    /// Most bytes of scalar text the finished tree may hold, counting every copy an alias
    /// makes: a one-megabyte string anchored once and aliased a thousand times is a gigabyte,
    /// however few nodes that is.
    pub max_bytes: usize,
}

impl Default for LoadLimits {
    fn default() -> Self {
        LoadLimits { max_nodes: 1_000_000, max_depth: 256, max_bytes: 64 * 1024 * 1024 }
    }
}

/// Loads a single-document YAML text with the default [`LoadLimits`].
///
/// An empty text loads as a null node.
pub fn load(text: &str) -> Result<Node, YamlError> {
    load_with_limits(text, LoadLimits::default())
}

/// Loads a single-document YAML text.
pub fn load_with_limits(text: &str, limits: LoadLimits) -> Result<Node, YamlError> {
    let mut repaired: Option<String> = None;
    // Each round can repair one quoted scalar; a document has a bounded number of them.
    for _ in 0..64 {
        let current = repaired.as_deref().unwrap_or(text);
        match load_events(current, limits) {
            Err(error) if error.message == UNINDENTED_QUOTED_SCALAR => {
                match indent_quoted_scalar_continuations(current, error.position.char_offset) {
                    Some(fixed) => repaired = Some(fixed),
                    None => return Err(error),
                }
            }
            result => return result,
        }
    }
    load_events(repaired.as_deref().unwrap_or(text), limits)
}

/// The parser's message for a multi-line quoted scalar whose continuation lines are indented
/// less than the YAML 1.2 grammar requires.
const UNINDENTED_QUOTED_SCALAR: &str = "invalid indentation in quoted scalar";

/// Indents the continuation lines of the quoted scalar that starts at `start_char` so that the
/// YAML 1.2 parser accepts it.
///
/// Go's YAML library (libyaml), which Sourcegraph uses, accepts such scalars, and real specs
/// rely on it (a top-level `description: "...` spanning several unindented lines). Leading
/// whitespace of continuation lines is folded away in a quoted scalar, so indenting them
/// changes no value; lines keep their numbers, so positions in errors stay right.
fn indent_quoted_scalar_continuations(text: &str, start_char: usize) -> Option<String> {
    let start_byte = text.char_indices().nth(start_char).map(|(index, _)| index)?;
    let quote = text[start_byte..].chars().next().filter(|character| *character == '"' || *character == '\'')?;
    let line_start = text[..start_byte].rfind('\n').map_or(0, |index| index + 1);
    let wanted_indent = text[line_start..].chars().take_while(|character| *character == ' ').count() + 1;
    let mut result = String::with_capacity(text.len() + 64);
    result.push_str(&text[..start_byte + 1]);
    let mut rest = text[start_byte + 1..].char_indices().peekable();
    let body = &text[start_byte + 1..];
    let mut end = None;
    while let Some((index, character)) = rest.next() {
        match character {
            '\\' if quote == '"' => {
                result.push(character);
                if let Some((_, escaped)) = rest.next() {
                    result.push(escaped);
                }
            }
            '\'' if quote == '\'' && rest.peek().map(|(_, next)| *next) == Some('\'') => {
                result.push_str("''");
                rest.next();
            }
            character if character == quote => {
                end = Some(index);
                break;
            }
            '\n' => {
                result.push('\n');
                let indent = body[index + 1..].chars().take_while(|character| *character == ' ').count();
                for _ in indent..wanted_indent {
                    result.push(' ');
                }
            }
            other => result.push(other),
        }
    }
    let end = end?;
    result.push_str(&body[end..]);
    Some(result)
}

fn load_events(text: &str, limits: LoadLimits) -> Result<Node, YamlError> {
    let mut builder = Builder { limits, stack: Vec::new(), anchors: HashMap::new(), node_count: 0, byte_count: 0 };
    let mut document: Option<Node> = None;
    let mut documents_seen = 0usize;
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|error| YamlError {
            message: error.info().to_owned(),
            position: position_of(error.marker()),
        })?;
        match event {
            Event::DocumentStart(_) => {
                documents_seen += 1;
                if documents_seen > 1 {
                    return Err(YamlError {
                        message: "found a second YAML document (after `---`); a batch spec is a single document".to_owned(),
                        position: position_of(&span.start),
                    });
                }
            }
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            Event::Alias(anchor_id) => {
                let node = builder.alias(anchor_id, span)?;
                if let Some(done) = builder.push_value(node)? {
                    document = Some(done);
                }
            }
            Event::Scalar(text, style, anchor_id, tag) => {
                let node = scalar_node(&text, style, tag.as_deref(), span)?;
                builder.count(1, text.len(), span)?;
                builder.remember(anchor_id, &node);
                if let Some(done) = builder.push_value(node)? {
                    document = Some(done);
                }
            }
            Event::SequenceStart(anchor_id, _) => {
                builder.open(Frame::Sequence { items: Vec::new(), start: span, anchor_id })?;
            }
            Event::MappingStart(anchor_id, _) => {
                builder.open(Frame::Mapping {
                    entries: Vec::new(),
                    pending_key: None,
                    merges: Vec::new(),
                    string_keys: HashMap::new(),
                    start: span,
                    anchor_id,
                })?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let node = builder.close(span)?;
                if let Some(done) = builder.push_value(node)? {
                    document = Some(done);
                }
            }
        }
    }
    Ok(document.unwrap_or(Node {
        value: Value::Null,
        span: Span { start: Position { line: 1, column: 1, char_offset: 0 }, end: Position { line: 1, column: 1, char_offset: 0 } },
    }))
}

enum Frame {
    Sequence {
        items: Vec<Node>,
        start: ParserSpan,
        anchor_id: usize,
    },
    Mapping {
        entries: Vec<(Node, Node)>,
        pending_key: Option<Node>,
        /// Values of `<<` keys, applied when the mapping ends.
        merges: Vec<Node>,
        /// Positions of the keys seen so far, by [`key_identity`], so duplicate detection stays
        /// linear however many keys a hostile mapping has.
        string_keys: HashMap<(u8, String), Position>,
        start: ParserSpan,
        anchor_id: usize,
    },
}

struct Builder {
    limits: LoadLimits,
    stack: Vec<Frame>,
    /// Each anchor's node, with its size in nodes and in bytes of scalar text.
    anchors: HashMap<usize, (Node, usize, usize)>,
    node_count: usize,
    byte_count: usize,
}

impl Builder {
    fn count(&mut self, nodes: usize, bytes: usize, span: ParserSpan) -> Result<(), YamlError> {
        self.node_count = self.node_count.saturating_add(nodes);
        self.byte_count = self.byte_count.saturating_add(bytes);
        if self.byte_count > self.limits.max_bytes {
            return Err(YamlError {
                message: format!(
                    "the document expands to more than {} bytes of text (through aliases of long values); refusing to load it",
                    self.limits.max_bytes
                ),
                position: position_of(&span.start),
            });
        }
        if self.node_count > self.limits.max_nodes {
            return Err(YamlError {
                message: format!(
                    "the document expands to more than {} nodes (through aliases or sheer size); refusing to load it",
                    self.limits.max_nodes
                ),
                position: position_of(&span.start),
            });
        }
        Ok(())
    }

    fn remember(&mut self, anchor_id: usize, node: &Node) {
        if anchor_id != 0 {
            let (nodes, bytes) = measure(node);
            self.anchors.insert(anchor_id, (node.clone(), nodes, bytes));
        }
    }

    fn alias(&mut self, anchor_id: usize, span: ParserSpan) -> Result<Node, YamlError> {
        let Some((_, size, bytes)) = self.anchors.get(&anchor_id) else {
            return Err(YamlError {
                message: "alias refers to an anchor that is not defined before it".to_owned(),
                position: position_of(&span.start),
            });
        };
        let (size, bytes) = (*size, *bytes);
        // Counted before the copy is made, so a refused alias costs nothing.
        self.count(size, bytes, span)?;
        let node = self.anchors.get(&anchor_id).map(|(node, _, _)| node.clone());
        Ok(node.expect("the anchor was found just above"))
    }

    fn open(&mut self, frame: Frame) -> Result<(), YamlError> {
        if self.stack.len() >= self.limits.max_depth {
            let start = match &frame {
                Frame::Sequence { start, .. } | Frame::Mapping { start, .. } => *start,
            };
            return Err(YamlError {
                message: format!("nesting deeper than {} levels", self.limits.max_depth),
                position: position_of(&start.start),
            });
        }
        self.stack.push(frame);
        Ok(())
    }

    fn close(&mut self, end: ParserSpan) -> Result<Node, YamlError> {
        let frame = self.stack.pop().ok_or_else(|| YamlError {
            message: "unbalanced end of a collection".to_owned(),
            position: position_of(&end.start),
        })?;
        self.count(1, 0, end)?;
        let (node, anchor_id) = match frame {
            Frame::Sequence { items, start, anchor_id } => {
                (Node { value: Value::Sequence(items), span: span_of(start.start, end.end) }, anchor_id)
            }
            Frame::Mapping { mut entries, merges, start, anchor_id, .. } => {
                apply_merges(&mut entries, merges)?;
                (Node { value: Value::Mapping(entries), span: span_of(start.start, end.end) }, anchor_id)
            }
        };
        self.remember(anchor_id, &node);
        Ok(node)
    }

    /// Adds a finished node to the collection being built, or returns it as the document.
    fn push_value(&mut self, node: Node) -> Result<Option<Node>, YamlError> {
        let Some(frame) = self.stack.last_mut() else {
            return Ok(Some(node));
        };
        match frame {
            Frame::Sequence { items, .. } => items.push(node),
            Frame::Mapping { entries, pending_key, merges, string_keys, .. } => match pending_key.take() {
                None => *pending_key = Some(node),
                Some(key) => {
                    if is_merge_key(&key) {
                        merges.push(node);
                    } else {
                        let first = string_keys.get(&key_identity(&key)).copied();
                        if first.is_none() {
                            string_keys.insert(key_identity(&key), key.span.start);
                        }
                        if let Some(first) = first {
                            return Err(YamlError {
                                message: format!(
                                    "duplicate key `{}` (first defined at line {}, column {})",
                                    key.key_text(),
                                    first.line,
                                    first.column
                                ),
                                position: key.span.start,
                            });
                        }
                        entries.push((key, node));
                    }
                }
            },
        }
        Ok(None)
    }
}

fn is_merge_key(key: &Node) -> bool {
    matches!(&key.value, Value::String { text, style: ScalarStyle::Plain } if text == "<<")
}

/// What makes two mapping keys the same key: their kind and their text (`1` and `"1"` differ).
fn key_identity(key: &Node) -> (u8, String) {
    let kind = match &key.value {
        Value::String { .. } => 0,
        Value::Null => 1,
        Value::Bool(_) => 2,
        Value::Int(_) => 3,
        Value::Float(_) => 4,
        Value::Sequence(_) => 5,
        Value::Mapping(_) => 6,
    };
    (kind, key.key_text())
}

/// Applies `<<` merge sources: a mapping, or a list of mappings whose earlier items win.
///
/// The keys present are kept in a set, so merging a large mapping many times stays linear
/// (a list search per merged key made a 50,000-key merge take minutes).
fn apply_merges(entries: &mut Vec<(Node, Node)>, merges: Vec<Node>) -> Result<(), YamlError> {
    if merges.is_empty() {
        return Ok(());
    }
    let mut present: std::collections::HashSet<(u8, String)> = entries.iter().map(|(key, _)| key_identity(key)).collect();
    for merge in merges {
        let sources: Vec<Node> = match merge.value {
            Value::Mapping(_) => vec![merge],
            Value::Sequence(items) => items,
            _ => {
                return Err(YamlError {
                    message: "a merge key `<<` needs a mapping or a list of mappings as its value".to_owned(),
                    position: merge.span.start,
                });
            }
        };
        for source in sources {
            let Value::Mapping(source_entries) = source.value else {
                return Err(YamlError {
                    message: "a merge key `<<` needs a mapping or a list of mappings as its value".to_owned(),
                    position: source.span.start,
                });
            };
            for (key, value) in source_entries {
                if present.insert(key_identity(&key)) {
                    entries.push((key, value));
                }
            }
        }
    }
    Ok(())
}

fn scalar_node(text: &str, style: ParserScalarStyle, tag: Option<&Tag>, span: ParserSpan) -> Result<Node, YamlError> {
    let style = match style {
        ParserScalarStyle::Plain => ScalarStyle::Plain,
        ParserScalarStyle::SingleQuoted => ScalarStyle::SingleQuoted,
        ParserScalarStyle::DoubleQuoted => ScalarStyle::DoubleQuoted,
        ParserScalarStyle::Literal => ScalarStyle::Literal,
        ParserScalarStyle::Folded => ScalarStyle::Folded,
    };
    let string = || Value::String { text: text.to_owned(), style };
    let value = match tag {
        None if style == ScalarStyle::Plain => resolve_plain(text, style),
        None => string(),
        Some(tag) if tag.is_yaml_core_schema() => {
            let invalid = || YamlError {
                message: format!("`{text}` is not a valid !!{}", tag.suffix),
                position: position_of(&span.start),
            };
            match tag.suffix.as_str() {
                "str" => string(),
                "null" if is_null(text) => Value::Null,
                "bool" => match text {
                    "true" | "True" | "TRUE" => Value::Bool(true),
                    "false" | "False" | "FALSE" => Value::Bool(false),
                    _ => return Err(invalid()),
                },
                "int" => parse_int(text).ok_or_else(invalid)?,
                "float" => match parse_int(text) {
                    Some(Value::Int(number)) => Value::Float(number as f64),
                    _ => Value::Float(parse_float(text).ok_or_else(invalid)?),
                },
                _ => return Err(invalid()),
            }
        }
        // Application tags (`!foo`) and the non-specific `!` mean nothing to a batch spec;
        // keep the text.
        Some(_) => string(),
    };
    Ok(Node { value, span: span_of(span.start, span.end) })
}

/// A node's size: how many nodes it holds and how many bytes of scalar text.
fn measure(node: &Node) -> (usize, usize) {
    let mut total = 0usize;
    let mut bytes = 0usize;
    let mut pending = vec![node];
    while let Some(current) = pending.pop() {
        total += 1;
        match &current.value {
            Value::String { text, .. } => bytes = bytes.saturating_add(text.len()),
            Value::Sequence(items) => pending.extend(items.iter()),
            Value::Mapping(entries) => {
                for (key, value) in entries {
                    pending.push(key);
                    pending.push(value);
                }
            }
            _ => {}
        }
    }
    (total, bytes)
}

fn position_of(marker: &saphyr_parser::Marker) -> Position {
    Position { line: marker.line(), column: marker.col() + 1, char_offset: marker.index() }
}

fn span_of(start: saphyr_parser::Marker, end: saphyr_parser::Marker) -> Span {
    Span { start: position_of(&start), end: position_of(&end) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> serde_json::Value {
        load(text).expect("test document loads").to_json()
    }

    fn error(text: &str) -> YamlError {
        load(text).expect_err("test document must fail")
    }

    #[test]
    fn on_key_is_a_string() {
        assert_eq!(json("on:\n  - repository: a\n"), serde_json::json!({"on": [{"repository": "a"}]}));
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let text = "base: &base\n  container: alpine:3\n  run: echo\nsteps:\n  - <<: *base\n    run: override\n  - *base\n";
        assert_eq!(
            json(text),
            serde_json::json!({
                "base": {"container": "alpine:3", "run": "echo"},
                "steps": [{"run": "override", "container": "alpine:3"}, {"container": "alpine:3", "run": "echo"}]
            })
        );
    }

    #[test]
    fn merge_list_earlier_sources_win() {
        let text = "a: &a {x: 1}\nb: &b {x: 2, y: 2}\nc:\n  <<: [*a, *b]\n";
        assert_eq!(json(text)["c"], serde_json::json!({"x": 1, "y": 2}));
    }

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let node = load("name: x\nsteps:\n  - run: hi\n").expect("loads");
        let run = &node.get("steps").expect("steps").as_sequence().expect("list")[0];
        let value = run.get("run").expect("run");
        assert_eq!((value.span.start.line, value.span.start.column), (3, 10));
    }

    #[test]
    fn duplicate_keys_name_both_positions() {
        let failure = error("name: a\nname: b\n");
        assert_eq!(failure.position.line, 2);
        assert!(failure.message.contains("first defined at line 1"), "{}", failure.message);
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let previous = level - 1;
            text.push_str(&format!("a{level}: &a{level} [*a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}, *a{previous}]\n"));
        }
        let failure = error(&text);
        assert!(failure.message.contains("more than"), "{}", failure.message);
    }

    #[test]
    fn aliases_of_a_long_string_are_refused_by_size_not_count() {
        // 2,000 copies of a megabyte: few nodes, two gigabytes.
        let mut text = format!("a: &a \"{}\"\nb: [", "x".repeat(1_000_000));
        text.push_str(&"*a, ".repeat(2000));
        text.push_str("]\n");
        let started = std::time::Instant::now();
        let failure = error(&text);
        assert!(failure.message.contains("more than 67108864 bytes of text"), "{}", failure.message);
        assert_eq!(failure.position.line, 2, "the alias that went over is named");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
    }

    #[test]
    fn merging_a_large_mapping_many_times_stays_linear() {
        let mut text = String::from("a: &a {");
        for index in 0..50_000 {
            text.push_str(&format!("k{index}: 1, "));
        }
        text.push_str("}\nb:\n  <<: [*a, *a, *a, *a, *a, *a, *a, *a]\n  k7: 2\nc: {1: a, 2: b, 3: c}\n");
        let started = std::time::Instant::now();
        let node = load(&text).expect("loads");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
        let merged = node.get("b").and_then(Node::as_mapping).expect("b");
        assert_eq!(merged.len(), 50_000);
        assert_eq!(node.get("b").and_then(|b| b.get("k7")).map(|value| value.value.clone()), Some(Value::Int(2)));
        assert!(error("c: {1: a, 1: b}\n").message.contains("duplicate key `1`"));
        assert_eq!(json("c: {1: a, \"1\": b}\n")["c"], serde_json::json!({"1": "b"}), "an integer key and a string key differ");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let failure = error(&text);
        // Either our own depth limit or the parser's recursion guard stops it, with a message.
        assert!(
            failure.message.contains("nesting deeper") || failure.message.contains("recursion limit"),
            "{}",
            failure.message
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let failure = error("name: x\nsteps: [\n");
        assert!(failure.position.line >= 2, "{failure:?}");
    }

    #[test]
    fn second_document_is_an_error() {
        let failure = error("name: a\n---\nname: b\n");
        assert_eq!(failure.position.line, 2);
    }

    #[test]
    fn tags_and_quotes() {
        assert_eq!(json("a: !!str 12\nb: '12'\nc: !!int \"7\"\nd: !!float 1\n"), serde_json::json!({"a": "12", "b": "12", "c": 7, "d": 1.0}));
        assert!(error("a: !!int x\n").message.contains("not a valid !!int"));
    }

    #[test]
    fn unindented_quoted_continuation_lines_are_accepted_like_go_yaml() {
        let text = "name: x\ndescription: \"first line\n\nsecond `line`\nthird\"\non: []\n";
        let node = load(text).expect("loads");
        assert_eq!(node.get("description").and_then(Node::as_str), Some("first line\nsecond `line` third"));
        assert_eq!(node.get("on").map(|on| on.span.start.line), Some(6));
    }

    #[test]
    fn empty_document_is_null() {
        assert!(load("").expect("loads").is_null());
        assert!(load("# only a comment\n").expect("loads").is_null());
    }
}
