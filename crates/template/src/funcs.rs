//! The function table: Go's builtin template functions plus Sourcegraph's helpers, with
//! their Go signatures (which decide argument conversion and error texts) and their
//! implementations on plain values.

use crate::glob::Glob;
use crate::print;
use crate::shellquote;
use crate::value::Value;

/// Go parameter types that matter for argument conversion (`evalArg`/`validateType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamType {
    /// `reflect.Value`: receives the evaluated value untouched.
    ReflectValue,
    /// `interface{}`.
    Interface,
    /// `string`.
    String,
    /// `[]string`.
    StringSlice,
}

/// A function signature: fixed parameters plus an optional variadic element type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Signature {
    pub(crate) fixed: &'static [ParamType],
    pub(crate) variadic: Option<ParamType>,
}

/// Every function a template can call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Builtin {
    And,
    Or,
    Not,
    Len,
    Index,
    Slice,
    Call,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Print,
    Printf,
    Println,
    Html,
    Js,
    Urlquery,
    // Sourcegraph helpers.
    Join,
    Split,
    Replace,
    JoinIf,
    Matches,
    ShellquoteJoin,
    ShellquoteSplit,
}

use ParamType::{Interface as I, ReflectValue as R, String as S, StringSlice as SS};

impl Builtin {
    /// Go's builtins, always available.
    pub(crate) fn go_builtin(name: &str) -> Option<Builtin> {
        Some(match name {
            "and" => Builtin::And,
            "or" => Builtin::Or,
            "not" => Builtin::Not,
            "len" => Builtin::Len,
            "index" => Builtin::Index,
            "slice" => Builtin::Slice,
            "call" => Builtin::Call,
            "eq" => Builtin::Eq,
            "ne" => Builtin::Ne,
            "lt" => Builtin::Lt,
            "le" => Builtin::Le,
            "gt" => Builtin::Gt,
            "ge" => Builtin::Ge,
            "print" => Builtin::Print,
            "printf" => Builtin::Printf,
            "println" => Builtin::Println,
            "html" => Builtin::Html,
            "js" => Builtin::Js,
            "urlquery" => Builtin::Urlquery,
            _ => return None,
        })
    }

    /// Sourcegraph's helper functions.
    pub(crate) fn sourcegraph_helper(name: &str) -> Option<Builtin> {
        Some(match name {
            "join" => Builtin::Join,
            "split" => Builtin::Split,
            "replace" => Builtin::Replace,
            "join_if" => Builtin::JoinIf,
            "matches" => Builtin::Matches,
            "shellquote_join" => Builtin::ShellquoteJoin,
            "shellquote_split" => Builtin::ShellquoteSplit,
            _ => return None,
        })
    }

    pub(crate) fn is_go_builtin(self) -> bool {
        !matches!(
            self,
            Builtin::Join
                | Builtin::Split
                | Builtin::Replace
                | Builtin::JoinIf
                | Builtin::Matches
                | Builtin::ShellquoteJoin
                | Builtin::ShellquoteSplit
        )
    }

    pub(crate) fn signature(self) -> Signature {
        let (fixed, variadic): (&'static [ParamType], Option<ParamType>) = match self {
            Builtin::And
            | Builtin::Or
            | Builtin::Index
            | Builtin::Slice
            | Builtin::Call
            | Builtin::Eq => (&[R], Some(R)),
            Builtin::Not | Builtin::Len => (&[R], None),
            Builtin::Ne | Builtin::Lt | Builtin::Le | Builtin::Gt | Builtin::Ge => (&[R, R], None),
            Builtin::Print
            | Builtin::Println
            | Builtin::Html
            | Builtin::Js
            | Builtin::Urlquery
            | Builtin::ShellquoteJoin => (&[], Some(I)),
            Builtin::Printf => (&[S], Some(I)),
            Builtin::Join => (&[SS, S], None),
            Builtin::Split | Builtin::Matches => (&[S, S], None),
            Builtin::Replace => (&[S, S, S], None),
            Builtin::JoinIf => (&[S], Some(S)),
            Builtin::ShellquoteSplit => (&[S], None),
        };
        Signature { fixed, variadic }
    }
}

/// Go's `HTMLEscapeString`.
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\0' => out.push('\u{FFFD}'),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            other => out.push(other),
        }
    }
    out
}

/// Go's `JSEscapeString`.
pub(crate) fn js_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '"' => out.push_str("\\\""),
            '<' => out.push_str("\\u003C"),
            '>' => out.push_str("\\u003E"),
            '&' => out.push_str("\\u0026"),
            '=' => out.push_str("\\u003D"),
            control if (control as u32) < 0x20 => {
                out.push_str(&format!("\\u00{:02X}", control as u32))
            }
            other if other.is_ascii() => out.push(other),
            other if print::is_go_printable(other) => out.push(other),
            other => {
                // Go writes \u%04X with the full code point for non-printable runes.
                out.push_str(&format!("\\u{:04X}", other as u32));
            }
        }
    }
    out
}

/// Go's `url.QueryEscape`.
pub(crate) fn url_query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Go's `evalArgs` for html/js/urlquery: a single string is used as is, anything else is
/// `fmt.Sprint`ed.
pub(crate) fn eval_args_text(args: &[&Value]) -> String {
    if let [Value::String(text)] = args {
        return text.clone();
    }
    print::sprint(args)
}

/// `strings.Split`.
pub(crate) fn split(text: &str, separator: &str) -> Vec<String> {
    if separator.is_empty() {
        return text.chars().map(String::from).collect();
    }
    text.split(separator).map(str::to_owned).collect()
}

/// `join_if`: join non-empty elements.
pub(crate) fn join_if(separator: &str, elements: &[&str]) -> String {
    elements
        .iter()
        .filter(|element| !element.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(separator)
}

/// `matches`: gobwas glob match.
pub(crate) fn glob_matches(text: &str, pattern: &str) -> Result<bool, String> {
    let glob = Glob::compile(pattern).map_err(|error| error.to_string())?;
    Ok(glob.is_match(text))
}

/// src-cli's `isCanonicallyShellQuoted`.
fn is_canonically_shell_quoted(text: &str) -> bool {
    match shellquote::split(text) {
        Ok(parts) if parts.len() == 1 => shellquote::quote(&parts[0]) == text,
        _ => false,
    }
}

fn shellquote_one(text: &str, out: &mut Vec<String>) {
    if is_canonically_shell_quoted(text) {
        out.push(text.to_owned());
    } else {
        out.push(shellquote::quote(text));
    }
}

/// `shellquote_join`: accepts strings, `[]string` and `[]interface{}` of strings.
pub(crate) fn shellquote_join(args: &[&Value]) -> Result<String, String> {
    let mut flat = Vec::new();
    for arg in args {
        match arg {
            Value::String(text) => shellquote_one(text, &mut flat),
            Value::StringList(items) => {
                for item in items {
                    shellquote_one(item, &mut flat);
                }
            }
            Value::List(items) => {
                for (index, item) in items.iter().enumerate() {
                    let Value::String(text) = item else {
                        return Err(format!(
                            "shellquote_join: element {index} is {}, want string",
                            item.go_type_name()
                        ));
                    };
                    shellquote_one(text, &mut flat);
                }
            }
            other => {
                return Err(format!(
                    "shellquote_join: unsupported argument type {}",
                    other.go_type_name()
                ));
            }
        }
    }
    Ok(flat.join(" "))
}
