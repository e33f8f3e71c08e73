//! A YAML 1.2 loader that keeps the source position of every node.
//!
//! Batch specs are YAML, and every error about a spec must point at a line and column, so the
//! spec validator needs a tree whose nodes remember where they came from. This crate builds
//! that tree from the events of `saphyr-parser` (a pure-Rust, YAML 1.2 parser) and applies the
//! parts of YAML that turn events into data:
//!
//! - plain scalars are resolved with the YAML 1.2 *core schema*, so `on`, `yes` and `off` stay
//!   strings (a YAML 1.1 loader reads the key `on` as `true` and breaks every batch spec);
//! - anchors and aliases are expanded, with a budget on the number of nodes an alias may
//!   produce, so that a "billion laughs" document fails with a clear error instead of eating
//!   the machine's memory;
//! - merge keys (`<<: *base` and `<<: [*a, *b]`) are applied, keys written in the mapping
//!   itself winning over merged ones, earlier merge sources winning over later ones;
//! - duplicate keys are an error that names both positions.
//!
//! The loader never panics on any input; every problem is a [`YamlError`] with a position.

mod load;
mod scalar;

use std::fmt;

pub use load::{LoadLimits, load, load_with_limits};

/// A position in the source text.
///
/// Lines and columns are 1-based and count characters (not bytes), which is what editors show.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// 0-based offset from the start of the text, in characters.
    pub char_offset: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.line, self.column)
    }
}

/// The range of source text a node was read from: `start` inclusive, `end` exclusive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub start: Position,
    pub end: Position,
}

/// How a scalar was written in the source. Needed to map an offset inside a scalar's value
/// back to a source position (a block scalar drops its indentation, a quoted one its quotes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// One node of a YAML document, with where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: Value,
    pub span: Span,
}

/// The data a node holds, after schema resolution.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    String { text: String, style: ScalarStyle },
    Sequence(Vec<Node>),
    /// Entries in source order (merged entries follow the mapping's own).
    Mapping(Vec<(Node, Node)>),
}

impl Node {
    /// The name of this node's type as a user would say it in an error message.
    pub fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Int(_) => "integer",
            Value::Float(_) => "number",
            Value::String { .. } => "string",
            Value::Sequence(_) => "list",
            Value::Mapping(_) => "mapping",
        }
    }

    /// The string value, if this node is a string.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The entries, if this node is a mapping.
    pub fn as_mapping(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            Value::Mapping(entries) => Some(entries),
            _ => None,
        }
    }

    /// The items, if this node is a sequence.
    pub fn as_sequence(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Sequence(items) => Some(items),
            _ => None,
        }
    }

    /// Looks a key up in a mapping node by its string value.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_mapping()?
            .iter()
            .find(|(entry_key, _)| entry_key.as_str() == Some(key))
            .map(|(_, value)| value)
    }

    /// Whether this node is null.
    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Converts the node to JSON, the form the rest of the system stores specs in.
    ///
    /// Mapping keys that are not strings are written as their YAML text (`1`, `true`), the way
    /// Go's YAML-to-JSON conversion does.
    pub fn to_json(&self) -> serde_json::Value {
        match &self.value {
            Value::Null => serde_json::Value::Null,
            Value::Bool(flag) => serde_json::Value::Bool(*flag),
            Value::Int(number) => serde_json::Value::from(*number),
            Value::Float(number) => serde_json::Number::from_f64(*number)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null),
            Value::String { text, .. } => serde_json::Value::String(text.clone()),
            Value::Sequence(items) => {
                serde_json::Value::Array(items.iter().map(Node::to_json).collect())
            }
            Value::Mapping(entries) => {
                let mut object = serde_json::Map::new();
                for (key, value) in entries {
                    object.insert(key.key_text(), value.to_json());
                }
                serde_json::Value::Object(object)
            }
        }
    }

    /// The text of a node used as a mapping key.
    pub fn key_text(&self) -> String {
        match &self.value {
            Value::Null => "null".to_owned(),
            Value::Bool(flag) => flag.to_string(),
            Value::Int(number) => number.to_string(),
            Value::Float(number) => number.to_string(),
            Value::String { text, .. } => text.clone(),
            Value::Sequence(_) => "[...]".to_owned(),
            Value::Mapping(_) => "{...}".to_owned(),
        }
    }
}

/// Why a document could not be loaded.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    pub message: String,
    pub position: Position,
}
