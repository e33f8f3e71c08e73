//! Go `fmt` reimplemented for the template value types: `%v` printing of actions and the
//! `print`, `printf` and `println` builtins.
//!
//! Output must match Go byte for byte, so this follows fmt's rules for flags, widths,
//! bad verbs (`%!d(string=x)`), missing and extra arguments, nested containers, sorted map
//! keys, the `fileMatchPathList` Stringer and Go's float formatting (`%v` is `%g` with the
//! shortest representation, switching to exponent form below 1e-4 and from 1e+06 on).

use crate::value::Value;
use std::fmt::Write as _;

/// Go's `strconv.Quote`.
pub(crate) fn go_quote(text: &str) -> String {
    quote_with(text, '"', false)
}

fn quote_with(text: &str, quote: char, ascii_only: bool) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push(quote);
    for character in text.chars() {
        append_escaped_rune(&mut out, character, quote, ascii_only);
    }
    out.push(quote);
    out
}

fn append_escaped_rune(out: &mut String, character: char, quote: char, ascii_only: bool) {
    if character == quote || character == '\\' {
        out.push('\\');
        out.push(character);
        return;
    }
    if character == '\u{FFFD}' {
        // Go quotes invalid UTF-8 bytes as \x..; a literal U+FFFD is printable and kept.
        if ascii_only {
            out.push_str("\\ufffd");
        } else {
            out.push(character);
        }
        return;
    }
    if ascii_only {
        if character.is_ascii() && is_go_printable(character) {
            out.push(character);
            return;
        }
    } else if is_go_printable(character) {
        out.push(character);
        return;
    }
    match character {
        '\u{7}' => out.push_str("\\a"),
        '\u{8}' => out.push_str("\\b"),
        '\u{c}' => out.push_str("\\f"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        '\u{b}' => out.push_str("\\v"),
        other if (other as u32) < 0x20 || other as u32 == 0x7f => {
            let _ = write!(out, "\\x{:02x}", other as u32);
        }
        other if (other as u32) < 0x10000 => {
            let _ = write!(out, "\\u{:04x}", other as u32);
        }
        other => {
            let _ = write!(out, "\\U{:08x}", other as u32);
        }
    }
}

/// Approximates Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and
/// the ASCII space. Rust has no category tables in std, so control, format, separator and
/// private-use/unassigned ranges that matter in practice are excluded explicitly.
pub(crate) fn is_go_printable(character: char) -> bool {
    let code = character as u32;
    if code < 0x20 || (0x7f..0xa0).contains(&code) {
        return false;
    }
    if code < 0x7f {
        return true;
    }
    !matches!(code,
        0xad | 0x600..=0x605 | 0x61c | 0x6dd | 0x70f | 0x180e | 0x2000..=0x200f | 0x2028..=0x202f
        | 0x205f..=0x206f | 0x3000 | 0xd800..=0xdfff | 0xe000..=0xf8ff | 0xfeff | 0xfff9..=0xfffb
        | 0xfffe | 0xffff | 0xa0 | 0x1680 | 0xe0000..=0xe007f | 0xf0000..=0x10ffff)
}

/// Go's `%#U` rendering: `U+0029 ')'`.
pub(crate) fn go_unicode_format(character: char) -> String {
    let mut out = format!("U+{:04X}", character as u32);
    if is_go_printable(character) {
        let _ = write!(out, " '{character}'");
    }
    out
}

/// Formats `value` like Go's `fmt.Sprint(value)` (the `%v` verb).
pub fn format_value(value: &Value) -> String {
    let mut printer = Printer::default();
    printer.print_arg(value, 'v');
    printer.buffer
}

/// Appends the `%v` rendering of `value` to `out` without intermediate allocation for the
/// common string case.
pub(crate) fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::String(text) => out.push_str(text),
        other => {
            let mut printer = Printer {
                buffer: std::mem::take(out),
                ..Printer::default()
            };
            printer.print_arg(other, 'v');
            *out = printer.buffer;
        }
    }
}

/// `fmt.Sprint`: spaces are added between operands when neither side is a string.
pub(crate) fn sprint(args: &[&Value]) -> String {
    let mut printer = Printer::default();
    let mut previous_was_string = false;
    for (index, arg) in args.iter().enumerate() {
        let is_string = matches!(arg, Value::String(_));
        if index > 0 && !is_string && !previous_was_string {
            printer.buffer.push(' ');
        }
        printer.print_arg(arg, 'v');
        previous_was_string = is_string;
    }
    printer.buffer
}

/// `fmt.Sprintln`: always spaces, then a newline.
pub(crate) fn sprintln(args: &[&Value]) -> String {
    let mut printer = Printer::default();
    for (index, arg) in args.iter().enumerate() {
        if index > 0 {
            printer.buffer.push(' ');
        }
        printer.print_arg(arg, 'v');
    }
    printer.buffer.push('\n');
    printer.buffer
}

/// Error from `sprintf` when its output would exceed the caller's bound.
#[derive(Debug)]
pub(crate) struct TooLong;

/// `fmt.Sprintf`, bounded to `max_len` bytes of output.
pub(crate) fn sprintf(format: &str, args: &[&Value], max_len: usize) -> Result<String, TooLong> {
    let mut printer = Printer::default();
    let bytes = format.as_bytes();
    let end = bytes.len();
    let mut arg_index = 0;
    let mut index = 0;
    while index < end {
        let literal_start = index;
        while index < end && bytes[index] != b'%' {
            index += 1;
        }
        if index > literal_start {
            printer.buffer.push_str(&format[literal_start..index]);
        }
        if index >= end {
            break;
        }
        index += 1;
        printer.flags = Flags::default();
        // Flags.
        while index < end {
            match bytes[index] {
                b'#' => printer.flags.sharp = true,
                b'0' => printer.flags.zero = !printer.flags.minus,
                b'+' => printer.flags.plus = true,
                b'-' => {
                    printer.flags.minus = true;
                    printer.flags.zero = false;
                }
                b' ' => printer.flags.space = true,
                _ => break,
            }
            index += 1;
        }
        // Width.
        if index < end && bytes[index] == b'*' {
            index += 1;
            match int_from_arg(args, &mut arg_index) {
                Some(width) => {
                    printer.flags.width = Some(width.unsigned_abs() as usize);
                    if width < 0 {
                        printer.flags.minus = true;
                        printer.flags.zero = false;
                    }
                }
                None => printer.buffer.push_str("%!(BADWIDTH)"),
            }
        } else {
            let (number, present, next) = parse_number(bytes, index);
            if present {
                printer.flags.width = Some(number);
            }
            index = next;
        }
        // Precision.
        if index < end && bytes[index] == b'.' {
            index += 1;
            if index < end && bytes[index] == b'*' {
                index += 1;
                match int_from_arg(args, &mut arg_index) {
                    Some(precision) if precision >= 0 => {
                        printer.flags.precision = Some(precision as usize)
                    }
                    Some(_) => printer.flags.precision = None,
                    None => printer.buffer.push_str("%!(BADPREC)"),
                }
            } else {
                let (number, present, next) = parse_number(bytes, index);
                printer.flags.precision = Some(if present { number } else { 0 });
                index = next;
            }
        }
        if index >= end {
            printer.buffer.push_str("%!(NOVERB)");
            break;
        }
        let verb = format[index..].chars().next().unwrap_or('%');
        index += verb.len_utf8();
        if verb == '%' {
            printer.buffer.push('%');
        } else if arg_index >= args.len() {
            printer.buffer.push_str("%!");
            printer.buffer.push(verb);
            printer.buffer.push_str("(MISSING)");
        } else {
            let arg = args[arg_index];
            arg_index += 1;
            printer.print_arg(arg, verb);
        }
        if printer.buffer.len() > max_len {
            return Err(TooLong);
        }
    }
    if arg_index < args.len() {
        printer.flags = Flags::default();
        printer.buffer.push_str("%!(EXTRA ");
        for (position, arg) in args[arg_index..].iter().enumerate() {
            if position > 0 {
                printer.buffer.push_str(", ");
            }
            if matches!(arg, Value::Nil) {
                printer.buffer.push_str("<nil>");
            } else {
                printer.buffer.push_str(arg.go_type_name());
                printer.buffer.push('=');
                printer.print_arg(arg, 'v');
            }
            if printer.buffer.len() > max_len {
                return Err(TooLong);
            }
        }
        printer.buffer.push(')');
    }
    if printer.buffer.len() > max_len {
        return Err(TooLong);
    }
    Ok(printer.buffer)
}

fn int_from_arg(args: &[&Value], arg_index: &mut usize) -> Option<i64> {
    let arg = args.get(*arg_index)?;
    *arg_index += 1;
    match arg {
        Value::Int(value) if (-1_000_000..=1_000_000).contains(value) => Some(*value),
        _ => None,
    }
}

fn parse_number(bytes: &[u8], start: usize) -> (usize, bool, usize) {
    let mut index = start;
    let mut number: usize = 0;
    let mut present = false;
    while index < bytes.len() && bytes[index].is_ascii_digit() {
        if number > 1_000_000 {
            // Go's tooLarge: give up on the number but keep consuming digits.
            return (0, false, skip_digits(bytes, index));
        }
        number = number * 10 + usize::from(bytes[index] - b'0');
        present = true;
        index += 1;
    }
    if number > 1_000_000 {
        return (0, false, index);
    }
    (number, present, index)
}

fn skip_digits(bytes: &[u8], mut index: usize) -> usize {
    while index < bytes.len() && bytes[index].is_ascii_digit() {
        index += 1;
    }
    index
}

#[derive(Default, Clone, Copy)]
struct Flags {
    sharp: bool,
    zero: bool,
    plus: bool,
    minus: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
}

#[derive(Default)]
struct Printer {
    buffer: String,
    flags: Flags,
}

impl Printer {
    fn print_arg(&mut self, arg: &Value, verb: char) {
        match arg {
            Value::Nil => match verb {
                'v' => self.pad("<nil>"),
                _ => self.bad_verb(verb, arg),
            },
            _ => self.print_value(arg, verb),
        }
    }

    fn print_value(&mut self, value: &Value, verb: char) {
        match value {
            Value::Nil => {
                // Only reachable inside containers: a nil interface element.
                self.pad("<nil>");
            }
            Value::Bool(boolean) => match verb {
                't' | 'v' => self.pad(if *boolean { "true" } else { "false" }),
                _ => self.bad_verb(verb, value),
            },
            Value::Int(integer) => self.format_integer(*integer, verb, value),
            Value::Float(float) => self.format_float_verb(*float, verb, value),
            Value::String(text) => self.format_string(text, verb, value),
            Value::PathList(items) if matches!(verb, 'v' | 's' | 'x' | 'X' | 'q') => {
                let joined = items.join(" ");
                self.format_string(&joined, verb, value);
            }
            Value::List(items) => {
                self.buffer.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        self.buffer.push(' ');
                    }
                    self.print_value(item, verb);
                }
                self.buffer.push(']');
            }
            Value::StringList(items) | Value::PathList(items) => {
                self.buffer.push('[');
                for (index, item) in items.iter().enumerate() {
                    if index > 0 {
                        self.buffer.push(' ');
                    }
                    let element = Value::String(item.clone());
                    self.print_value(&element, verb);
                }
                self.buffer.push(']');
            }
            Value::Map(entries) => {
                self.buffer.push_str("map[");
                for (index, (key, item)) in entries.iter().enumerate() {
                    if index > 0 {
                        self.buffer.push(' ');
                    }
                    let key_value = Value::String(key.clone());
                    self.print_value(&key_value, verb);
                    self.buffer.push(':');
                    self.print_value(item, verb);
                }
                self.buffer.push(']');
            }
        }
    }

    fn bad_verb(&mut self, verb: char, value: &Value) {
        let saved = self.flags;
        self.buffer.push_str("%!");
        self.buffer.push(verb);
        self.buffer.push('(');
        if matches!(value, Value::Nil) {
            self.buffer.push_str("<nil>");
        } else {
            self.buffer.push_str(value.go_type_name());
            self.buffer.push('=');
            self.print_arg(value, 'v');
        }
        self.buffer.push(')');
        self.flags = saved;
    }

    fn write_padding(&mut self, count: usize) {
        let pad = if self.flags.zero { '0' } else { ' ' };
        self.buffer.extend(std::iter::repeat_n(pad, count));
    }

    /// Go's `fmt.pad`: width counts runes.
    fn pad(&mut self, text: &str) {
        let Some(width) = self.flags.width else {
            self.buffer.push_str(text);
            return;
        };
        let length = text.chars().count();
        if length >= width {
            self.buffer.push_str(text);
            return;
        }
        if self.flags.minus {
            self.buffer.push_str(text);
            let saved = self.flags.zero;
            self.flags.zero = false;
            self.write_padding(width - length);
            self.flags.zero = saved;
        } else {
            self.write_padding(width - length);
            self.buffer.push_str(text);
        }
    }

    fn truncate<'t>(&self, text: &'t str) -> &'t str {
        if let Some(precision) = self.flags.precision
            && let Some((byte_index, _)) = text.char_indices().nth(precision)
        {
            return &text[..byte_index];
        }
        text
    }

    fn format_string(&mut self, text: &str, verb: char, value: &Value) {
        match verb {
            'v' | 's' => {
                let truncated = self.truncate(text);
                self.pad(truncated);
            }
            'q' => {
                let truncated = self.truncate(text).to_owned();
                let quoted = if self.flags.sharp && can_backquote(&truncated) {
                    format!("`{truncated}`")
                } else {
                    quote_with(&truncated, '"', self.flags.plus)
                };
                self.pad(&quoted);
            }
            'x' | 'X' => {
                let truncated: Vec<u8> = match self.flags.precision {
                    Some(precision) => text.bytes().take(precision).collect(),
                    None => text.bytes().collect(),
                };
                let mut hex = String::new();
                for (index, byte) in truncated.iter().enumerate() {
                    if self.flags.space && index > 0 {
                        hex.push(' ');
                    }
                    if self.flags.sharp && (self.flags.space || index == 0) {
                        hex.push_str(if verb == 'x' { "0x" } else { "0X" });
                    }
                    if verb == 'x' {
                        let _ = write!(hex, "{byte:02x}");
                    } else {
                        let _ = write!(hex, "{byte:02X}");
                    }
                }
                self.pad(&hex);
            }
            _ => self.bad_verb(verb, value),
        }
    }

    fn format_integer(&mut self, integer: i64, verb: char, value: &Value) {
        match verb {
            'v' | 'd' => self.format_integer_base(integer, 10, verb),
            'b' => self.format_integer_base(integer, 2, verb),
            'o' | 'O' => self.format_integer_base(integer, 8, verb),
            'x' | 'X' => self.format_integer_base(integer, 16, verb),
            'c' => {
                let character = u32::try_from(integer)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                self.pad(&character.to_string());
            }
            'q' => {
                let character = u32::try_from(integer)
                    .ok()
                    .and_then(char::from_u32)
                    .unwrap_or('\u{FFFD}');
                let mut quoted = String::from("'");
                if character == '\'' {
                    quoted.push_str("\\'");
                } else if character == '"' {
                    quoted.push('"');
                } else {
                    append_escaped_rune(&mut quoted, character, '\'', self.flags.plus);
                }
                quoted.push('\'');
                self.pad(&quoted);
            }
            'U' => {
                let mut text = format!("U+{:04X}", integer);
                if self.flags.sharp
                    && let Some(character) = u32::try_from(integer).ok().and_then(char::from_u32)
                    && is_go_printable(character)
                {
                    let _ = write!(text, " '{character}'");
                }
                self.pad(&text);
            }
            _ => self.bad_verb(verb, value),
        }
    }

    /// Go's `fmt.fmtInteger`.
    fn format_integer_base(&mut self, integer: i64, base: u32, verb: char) {
        let negative = integer < 0;
        let magnitude = integer.unsigned_abs();
        let mut digits = match base {
            2 => format!("{magnitude:b}"),
            8 => format!("{magnitude:o}"),
            16 if verb == 'X' => format!("{magnitude:X}"),
            16 => format!("{magnitude:x}"),
            _ => magnitude.to_string(),
        };
        let mut precision = 0;
        if let Some(explicit) = self.flags.precision {
            precision = explicit;
            if explicit == 0 && magnitude == 0 {
                let saved = self.flags.zero;
                self.flags.zero = false;
                let width = self.flags.width.unwrap_or(0);
                self.write_padding(width);
                self.flags.zero = saved;
                return;
            }
        } else if self.flags.zero
            && let Some(width) = self.flags.width
        {
            precision = width;
            if negative || self.flags.plus || self.flags.space {
                precision = precision.saturating_sub(1);
            }
        }
        if digits.len() < precision {
            digits = format!("{}{}", "0".repeat(precision - digits.len()), digits);
        }
        if self.flags.sharp {
            match base {
                8 if !digits.starts_with('0') => digits.insert(0, '0'),
                16 => digits.insert_str(0, if verb == 'X' { "0X" } else { "0x" }),
                2 => digits.insert_str(0, "0b"),
                _ => {}
            }
        }
        if verb == 'O' {
            digits.insert_str(0, "0o");
        }
        if negative {
            digits.insert(0, '-');
        } else if self.flags.plus {
            digits.insert(0, '+');
        } else if self.flags.space {
            digits.insert(0, ' ');
        }
        let saved = self.flags.zero;
        self.flags.zero = false;
        self.pad(&digits);
        self.flags.zero = saved;
    }

    fn format_float_verb(&mut self, float: f64, verb: char, value: &Value) {
        let text = match verb {
            'v' | 'g' | 'G' => format_g(float, self.flags.precision, verb == 'G'),
            'e' | 'E' => format_e(float, self.flags.precision.unwrap_or(6), verb == 'E'),
            'f' | 'F' => format_f(float, self.flags.precision.unwrap_or(6)),
            _ => {
                self.bad_verb(verb, value);
                return;
            }
        };
        self.pad_float(text);
    }

    /// The sign and padding rules of Go's `fmt.fmtFloat`.
    fn pad_float(&mut self, formatted: String) {
        let mut number = if formatted.starts_with('-') || formatted.starts_with('+') {
            formatted
        } else {
            format!("+{formatted}")
        };
        if self.flags.space && number.starts_with('+') && !self.flags.plus {
            number.replace_range(0..1, " ");
        }
        let second = number.as_bytes().get(1).copied();
        if second == Some(b'I') || second == Some(b'N') {
            let saved = self.flags.zero;
            self.flags.zero = false;
            if second == Some(b'N') && !self.flags.space && !self.flags.plus {
                number.remove(0);
            }
            self.pad(&number);
            self.flags.zero = saved;
            return;
        }
        if self.flags.plus || !number.starts_with('+') {
            if self.flags.zero
                && let Some(width) = self.flags.width
                && width > number.len()
            {
                self.buffer.push_str(&number[..1]);
                self.write_padding(width - number.len());
                self.buffer.push_str(&number[1..]);
                return;
            }
            self.pad(&number);
            return;
        }
        self.pad(&number[1..]);
    }
}

fn can_backquote(text: &str) -> bool {
    text.chars().all(|character| {
        character != '`'
            && character != '\u{FFFD}'
            && (character == '\t' || !character.is_control())
    })
}

/// Decimal digits and decimal-point position (`0.d1d2... × 10^point`), like strconv's
/// `decimalSlice`. `significant` = None asks for the shortest round-tripping digits.
fn decimal_digits(float: f64, significant: Option<usize>) -> (String, i32) {
    let magnitude = float.abs();
    if magnitude == 0.0 {
        return (String::new(), 0);
    }
    let scientific = match significant {
        None => format!("{magnitude:e}"),
        Some(count) => format!("{:.*e}", count.saturating_sub(1), magnitude),
    };
    let (mantissa, exponent) = scientific
        .split_once('e')
        .unwrap_or((scientific.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let mut digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
    }
    if digits == "0" {
        return (String::new(), 0);
    }
    (digits, exponent + 1)
}

fn special_float(float: f64) -> Option<String> {
    if float.is_nan() {
        Some("NaN".to_owned())
    } else if float.is_infinite() {
        Some(if float > 0.0 {
            "+Inf".to_owned()
        } else {
            "-Inf".to_owned()
        })
    } else {
        None
    }
}

fn sign_prefix(float: f64) -> &'static str {
    if float.is_sign_negative() { "-" } else { "" }
}

/// strconv's `%e` body from digits: `d.ddde±xx` with `precision` fraction digits.
fn fmt_e(digits: &str, point: i32, precision: usize, upper: bool) -> String {
    let mut out = String::new();
    let mut characters = digits.chars();
    out.push(characters.next().unwrap_or('0'));
    if precision > 0 {
        out.push('.');
        let rest: String = characters.collect();
        let mut fraction: String = rest.chars().take(precision).collect();
        while fraction.len() < precision {
            fraction.push('0');
        }
        out.push_str(&fraction);
    }
    let exponent = if digits.is_empty() { 0 } else { point - 1 };
    out.push(if upper { 'E' } else { 'e' });
    out.push(if exponent < 0 { '-' } else { '+' });
    let magnitude = exponent.unsigned_abs();
    if magnitude < 10 {
        out.push('0');
    }
    let _ = write!(out, "{magnitude}");
    out
}

/// strconv's `%f` body from digits with `precision` fraction digits.
fn fmt_f(digits: &str, point: i32, precision: usize) -> String {
    let bytes = digits.as_bytes();
    let digit_at = |index: i32| -> char {
        if index >= 0 && (index as usize) < bytes.len() {
            bytes[index as usize] as char
        } else {
            '0'
        }
    };
    let mut out = String::new();
    if point > 0 {
        for index in 0..point {
            out.push(digit_at(index));
        }
    } else {
        out.push('0');
    }
    if precision > 0 {
        out.push('.');
        for offset in 0..precision as i32 {
            out.push(digit_at(point + offset));
        }
    }
    out
}

/// `%g`/`%v` for floats: shortest digits when no precision is given.
fn format_g(float: f64, precision: Option<usize>, upper: bool) -> String {
    if let Some(special) = special_float(float) {
        return special;
    }
    let sign = sign_prefix(float);
    let (digits, point) = match precision {
        None => decimal_digits(float, None),
        Some(explicit) => decimal_digits(float, Some(explicit.max(1))),
    };
    let digit_count = digits.len().max(if digits.is_empty() { 0 } else { 1 });
    let (mut precision_value, shortest) = match precision {
        None => (digit_count, true),
        Some(explicit) => (explicit.max(1), false),
    };
    let mut exponent_precision = precision_value as i32;
    if exponent_precision > digit_count as i32 && digit_count as i32 >= point {
        exponent_precision = digit_count as i32;
    }
    if shortest {
        exponent_precision = 6;
    }
    let exponent = point - 1;
    if !digits.is_empty() && (exponent < -4 || exponent >= exponent_precision) {
        if precision_value > digit_count {
            precision_value = digit_count;
        }
        return format!(
            "{sign}{}",
            fmt_e(&digits, point, precision_value.saturating_sub(1), upper)
        );
    }
    if digits.is_empty() {
        return format!("{sign}0");
    }
    if precision_value as i32 > point {
        precision_value = digit_count;
    }
    let fraction = (precision_value as i32 - point).max(0) as usize;
    format!("{sign}{}", fmt_f(&digits, point, fraction))
}

fn format_e(float: f64, precision: usize, upper: bool) -> String {
    if let Some(special) = special_float(float) {
        return special;
    }
    let (digits, point) = decimal_digits(float, Some(precision + 1));
    format!(
        "{}{}",
        sign_prefix(float),
        fmt_e(&digits, point, precision, upper)
    )
}

fn format_f(float: f64, precision: usize) -> String {
    if let Some(special) = special_float(float) {
        return special;
    }
    // Rust's fixed formatting is exact and rounds half to even on exact ties like Go.
    let text = format!("{:.*}", precision, float.abs());
    format!("{}{}", sign_prefix(float), text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_like_go() {
        let cases = [
            (1.0, "1"),
            (1.5, "1.5"),
            (1e6, "1e+06"),
            (123456.0, "123456"),
            (1e-5, "1e-05"),
            (0.0001, "0.0001"),
            (0.1 + 0.2, "0.30000000000000004"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
            (1e21, "1e+21"),
        ];
        for (float, expected) in cases {
            assert_eq!(format_value(&Value::Float(float)), expected);
        }
    }

    #[test]
    fn printf_verbs() {
        let s = Value::from("x");
        let i = Value::Int(42);
        let f = Value::Float(1.23456);
        let check = |format: &str, args: &[&Value], expected: &str| {
            assert_eq!(
                sprintf(format, args, usize::MAX).ok().as_deref(),
                Some(expected),
                "{format}"
            );
        };
        check(
            "%d|%5d|%-5d|%05d",
            &[&i, &i, &i, &i],
            "42|   42|42   |00042",
        );
        check("%s %q %v %x", &[&s, &s, &s, &s], "x \"x\" x 78");
        check("%.2f %e %g", &[&f, &f, &f], "1.23 1.234560e+00 1.23456");
        check("%d", &[&s], "%!d(string=x)");
        check("%s", &[], "%!s(MISSING)");
        check("a", &[&i], "a%!(EXTRA int=42)");
        check("%%", &[], "%");
    }
}
