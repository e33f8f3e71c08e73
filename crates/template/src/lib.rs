//! Go's `text/template`, reimplemented for Sourcegraph batch spec templates.
//!
//! Batch specs use `${{ ... }}` actions evaluated by Go's text/template with
//! `missingkey=error` and a set of Sourcegraph helper functions. Users' specs depend on the
//! exact output and error texts, so this crate reproduces Go 1.19's behaviour byte for byte
//! for the value types Sourcegraph uses ([`Value`]). The [`sourcegraph`] module layers the
//! step and changeset-template contexts and helpers of src-cli on top.
//!
//! Parse once with [`Template::parse`], then [`Template::execute`] many times; execution
//! borrows data instead of cloning it.

mod error;
mod exec;
mod funcs;
pub mod glob;
mod lexer;
mod node;
mod parse;
pub mod print;
pub mod shellquote;
pub mod sourcegraph;
mod value;

pub use error::TemplateError;
pub use value::Value;

/// Sourcegraph's left delimiter.
pub const LEFT_DELIMITER: &str = "${{";
/// Sourcegraph's right delimiter.
pub const RIGHT_DELIMITER: &str = "}}";

/// The functions a template may call beyond Go's builtins: optionally Sourcegraph's
/// helpers, plus niladic functions returning fixed values (how Sourcegraph exposes
/// `repository`, `outputs`, ...).
#[derive(Debug, Clone, Default)]
pub struct Functions {
    pub(crate) helpers: bool,
    pub(crate) values: Vec<(String, Value)>,
}

impl Functions {
    /// Only Go's builtins.
    pub fn new() -> Functions {
        Functions::default()
    }

    /// Go's builtins plus Sourcegraph's helpers (`join`, `split`, `matches`, ...).
    pub fn with_sourcegraph_helpers() -> Functions {
        Functions {
            helpers: true,
            values: Vec::new(),
        }
    }

    /// Adds a niladic function `name` returning `value`; later additions win.
    pub fn add_value(&mut self, name: impl Into<String>, value: Value) -> &mut Functions {
        self.values.push((name.into(), value));
        self
    }

    /// Whether `name` can be called from a template.
    pub fn contains(&self, name: &str) -> bool {
        funcs_builtin_exists(name, self.helpers)
            || self.values.iter().any(|(candidate, _)| candidate == name)
    }
}

fn funcs_builtin_exists(name: &str, helpers: bool) -> bool {
    funcs::Builtin::go_builtin(name).is_some()
        || (helpers && funcs::Builtin::sourcegraph_helper(name).is_some())
}

/// Resource bounds for execution of untrusted templates.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Maximum bytes of output (default 16 MiB).
    pub max_output_bytes: usize,
    /// Maximum nesting of template calls and pipelines during execution (default 1000;
    /// Go allows 100000, which would overflow a Rust thread's stack).
    pub max_depth: usize,
    /// Most evaluation steps (nodes walked, loop iterations, commands) one execution may take
    /// (default 5,000,000). Go has no such bound; a server does: nested `range`s over long
    /// lists or templates that call each other twice per level would otherwise run for hours
    /// without writing anything.
    pub max_steps: usize,
    /// Most bytes a value computed during execution may hold (default 64 MiB): `replace`,
    /// `join`, `print` and friends can square a string's size per call, in variables that are
    /// never written out, so the output limit alone does not bound memory.
    pub max_value_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_output_bytes: 16 * 1024 * 1024,
            max_depth: 1000,
            max_steps: 5_000_000,
            max_value_bytes: 64 * 1024 * 1024,
        }
    }
}

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    pub(crate) name: String,
    pub(crate) text: String,
    pub(crate) tree: parse::Tree,
}

impl Template {
    /// Parses `text` with the `${{`/`}}` delimiters; identifiers must name functions in
    /// `functions` (or Go's builtins), as Go checks at parse time.
    pub fn parse(name: &str, text: &str, functions: &Functions) -> Result<Template, TemplateError> {
        Template::parse_with_delimiters(name, text, LEFT_DELIMITER, RIGHT_DELIMITER, functions)
    }

    /// Parses with custom delimiters (empty strings mean Go's defaults `{{`/`}}`).
    pub fn parse_with_delimiters(
        name: &str,
        text: &str,
        left_delimiter: &str,
        right_delimiter: &str,
        functions: &Functions,
    ) -> Result<Template, TemplateError> {
        let left = if left_delimiter.is_empty() {
            "{{"
        } else {
            left_delimiter
        };
        let right = if right_delimiter.is_empty() {
            "}}"
        } else {
            right_delimiter
        };
        let tree = parse::parse(name, text, left, right, &|candidate| {
            functions.contains(candidate)
        })
        .map_err(|failure| TemplateError::Parse {
            message: failure.message,
            offset: failure.offset,
        })?;
        Ok(Template {
            name: name.to_owned(),
            text: text.to_owned(),
            tree,
        })
    }

    /// The template's name, as used in error messages.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Executes with `data` as dot and default [`Limits`].
    pub fn execute(&self, data: &Value, functions: &Functions) -> Result<String, TemplateError> {
        exec::execute(self, data, functions, &Limits::default())
    }

    /// Executes with explicit limits.
    pub fn execute_with_limits(
        &self,
        data: &Value,
        functions: &Functions,
        limits: &Limits,
    ) -> Result<String, TemplateError> {
        exec::execute(self, data, functions, limits)
    }
}

/// Parses and executes in one go, like `template.New(name).Delims("${{","}}").Option("missingkey=error").Funcs(...).Parse(text).Execute(data)`.
pub fn render(
    name: &str,
    text: &str,
    data: &Value,
    functions: &Functions,
) -> Result<String, TemplateError> {
    Template::parse(name, text, functions)?.execute(data, functions)
}
