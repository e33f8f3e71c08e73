//! The value model: the handful of Go types Sourcegraph puts into batch spec templates.
//!
//! Go's text/template works on arbitrary reflected values; Sourcegraph only ever hands it
//! strings, booleans, numbers, `[]interface{}`, `[]string`, its own `fileMatchPathList`
//! and `map[string]interface{}`. Modelling exactly those keeps the executor simple while
//! still letting it reproduce Go's type-dependent behaviour (and its type names in errors).

use std::collections::BTreeMap;

/// A template value, mirroring one Go type each.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A nil `interface{}` (JSON `null`, or an absent value inside a container).
    Nil,
    /// Go `bool`.
    Bool(bool),
    /// Go `int` (64 bits, as on every platform Sourcegraph runs on).
    Int(i64),
    /// Go `float64`, e.g. every JSON number.
    Float(f64),
    /// Go `string`.
    String(String),
    /// Go `[]interface{}`.
    List(Vec<Value>),
    /// Go `[]string`.
    StringList(Vec<String>),
    /// Sourcegraph's `fileMatchPathList`: a `[]string` whose `String()` joins with spaces.
    PathList(Vec<String>),
    /// Go `map[string]interface{}`; the BTreeMap keeps Go's sorted printing order for free.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// Converts decoded JSON the way Go's encoding/json fills an `interface{}`:
    /// every number becomes a `float64`.
    pub fn from_json(json: serde_json::Value) -> Value {
        Value::from_json_with_numbers(json, false)
    }

    /// Converts decoded YAML (already turned into JSON values) the way yaml.v3 fills an
    /// `interface{}`: integral numbers written without a fraction or exponent become `int`,
    /// everything else `float64`.
    pub fn from_yaml_json(json: serde_json::Value) -> Value {
        Value::from_json_with_numbers(json, true)
    }

    fn from_json_with_numbers(json: serde_json::Value, integers_stay_integers: bool) -> Value {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(boolean) => Value::Bool(boolean),
            serde_json::Value::Number(number) => {
                if integers_stay_integers && let Some(integer) = number.as_i64() {
                    return Value::Int(integer);
                }
                Value::Float(number.as_f64().unwrap_or(f64::NAN))
            }
            serde_json::Value::String(text) => Value::String(text),
            serde_json::Value::Array(items) => Value::List(
                items
                    .into_iter()
                    .map(|item| Value::from_json_with_numbers(item, integers_stay_integers))
                    .collect(),
            ),
            serde_json::Value::Object(entries) => Value::Map(
                entries
                    .into_iter()
                    .map(|(key, item)| {
                        (
                            key,
                            Value::from_json_with_numbers(item, integers_stay_integers),
                        )
                    })
                    .collect(),
            ),
        }
    }

    /// Builds a Go `[]string`.
    pub fn string_list<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> Value {
        Value::StringList(items.into_iter().map(Into::into).collect())
    }

    /// Builds a Go `map[string]interface{}` from pairs.
    pub fn map<I: IntoIterator<Item = (K, Value)>, K: Into<String>>(entries: I) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(key, value)| (key.into(), value))
                .collect(),
        )
    }

    /// The Go type name used in error messages (`%T` / `reflect.Type.String()`).
    pub fn go_type_name(&self) -> &'static str {
        match self {
            Value::Nil => "<nil>",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float64",
            Value::String(_) => "string",
            Value::List(_) => "[]interface {}",
            Value::StringList(_) => "[]string",
            Value::PathList(_) => "template.fileMatchPathList",
            Value::Map(_) => "map[string]interface {}",
        }
    }

    /// Length for Go's `len`, for the kinds that have one.
    pub(crate) fn go_len(&self) -> Option<usize> {
        match self {
            Value::String(text) => Some(text.len()),
            Value::List(items) => Some(items.len()),
            Value::StringList(items) | Value::PathList(items) => Some(items.len()),
            Value::Map(entries) => Some(entries.len()),
            _ => None,
        }
    }

    /// Go's truthiness (`isTrue`): empty containers, zero numbers, false and nil are false.
    pub fn is_true(&self) -> bool {
        match self {
            Value::Nil => false,
            Value::Bool(boolean) => *boolean,
            Value::Int(integer) => *integer != 0,
            Value::Float(float) => *float != 0.0,
            other => other.go_len().unwrap_or(0) > 0,
        }
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::String(text.to_owned())
    }
}

impl From<String> for Value {
    fn from(text: String) -> Value {
        Value::String(text)
    }
}

impl From<bool> for Value {
    fn from(boolean: bool) -> Value {
        Value::Bool(boolean)
    }
}

impl From<i64> for Value {
    fn from(integer: i64) -> Value {
        Value::Int(integer)
    }
}

impl From<f64> for Value {
    fn from(float: f64) -> Value {
        Value::Float(float)
    }
}
