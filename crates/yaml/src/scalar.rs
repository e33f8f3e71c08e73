//! Resolution of scalars to typed values with the YAML 1.2 core schema.
//!
//! Only *plain* (unquoted) scalars are resolved; quoted and block scalars are always strings.
//! The core schema is deliberately small: `yes`, `no`, `on`, `off`, `y` and `n` are strings,
//! unlike YAML 1.1, which is what keeps the batch spec key `on` a string.

use crate::Value;

/// Resolves a plain, untagged scalar.
pub(crate) fn resolve_plain(text: &str, style: crate::ScalarStyle) -> Value {
    if is_null(text) {
        return Value::Null;
    }
    match text {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(number) = parse_int(text) {
        return number;
    }
    if let Some(number) = parse_float(text) {
        return Value::Float(number);
    }
    Value::String { text: text.to_owned(), style }
}

pub(crate) fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Parses the core schema's integer forms: decimal with optional sign, `0o` octal, `0x` hex.
/// A decimal integer too large for 64 bits becomes a float, as in most YAML loaders.
pub(crate) fn parse_int(text: &str) -> Option<Value> {
    if let Some(octal) = text.strip_prefix("0o") {
        if !octal.is_empty() && octal.bytes().all(|byte| (b'0'..=b'7').contains(&byte)) {
            return i64::from_str_radix(octal, 8).ok().map(Value::Int);
        }
        return None;
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if !hex.is_empty() && hex.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return i64::from_str_radix(hex, 16).ok().map(Value::Int);
        }
        return None;
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    match text.parse::<i64>() {
        Ok(number) => Some(Value::Int(number)),
        Err(_) => text.parse::<f64>().ok().map(Value::Float),
    }
}

/// Parses the core schema's float forms, including `.inf` and `.nan`.
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let (negative, unsigned) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") {
        return Some(if negative { f64::NEG_INFINITY } else { f64::INFINITY });
    }
    if matches!(text, ".nan" | ".NaN" | ".NAN") {
        return Some(f64::NAN);
    }
    if !is_core_float(unsigned) {
        return None;
    }
    text.parse::<f64>().ok()
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_core_float(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut index = 0;
    let integer_digits = count_digits(&bytes[index..]);
    index += integer_digits;
    let mut fraction_digits = 0;
    if bytes.get(index) == Some(&b'.') {
        index += 1;
        fraction_digits = count_digits(&bytes[index..]);
        index += fraction_digits;
    }
    if integer_digits == 0 && fraction_digits == 0 {
        return false;
    }
    if matches!(bytes.get(index), Some(b'e' | b'E')) {
        index += 1;
        if matches!(bytes.get(index), Some(b'-' | b'+')) {
            index += 1;
        }
        let exponent_digits = count_digits(&bytes[index..]);
        if exponent_digits == 0 {
            return false;
        }
        index += exponent_digits;
    }
    index == bytes.len()
}

fn count_digits(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|byte| byte.is_ascii_digit()).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ScalarStyle;

    fn check(text: &str, expected: Value) {
        assert_eq!(resolve_plain(text, ScalarStyle::Plain), expected, "resolving {text:?}");
    }

    fn string(text: &str) -> Value {
        Value::String { text: text.to_owned(), style: ScalarStyle::Plain }
    }

    #[test]
    fn yaml_1_1_booleans_stay_strings() {
        for word in ["on", "off", "yes", "no", "y", "n", "On", "YES"] {
            check(word, string(word));
        }
    }

    #[test]
    fn core_schema_values() {
        check("true", Value::Bool(true));
        check("FALSE", Value::Bool(false));
        check("~", Value::Null);
        check("", Value::Null);
        check("null", Value::Null);
        check("42", Value::Int(42));
        check("-7", Value::Int(-7));
        check("+7", Value::Int(7));
        check("0o17", Value::Int(15));
        check("0x1F", Value::Int(31));
        check("1.5", Value::Float(1.5));
        check(".5", Value::Float(0.5));
        check("1e3", Value::Float(1000.0));
        check("-.inf", Value::Float(f64::NEG_INFINITY));
        check("99999999999999999999", Value::Float(1e20));
        check("1_000", string("1_000"));
        check("0x", string("0x"));
        check("1.2.3", string("1.2.3"));
        check("e3", string("e3"));
        check("3.", Value::Float(3.0));
        check("alpine:3", string("alpine:3"));
    }
}
