//! The parse tree: Go text/template's node types, reduced to what execution needs.
//!
//! Every node keeps its byte offset because execution errors report `line:column` of the
//! node being evaluated, and the `String()` rendering of nodes appears verbatim in Go's
//! error messages (`executing "x" at <repository.nme>: ...`), so `Display` reproduces
//! Go's `writeTo` methods exactly.

use std::fmt::{self, Display, Formatter};

/// A node in a list of template nodes.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text {
        pos: usize,
        text: String,
    },
    Action {
        pos: usize,
        pipe: Pipe,
    },
    If(Branch),
    Range(Branch),
    With(Branch),
    Break {
        pos: usize,
    },
    Continue {
        pos: usize,
    },
    Template {
        pos: usize,
        name: String,
        pipe: Option<Pipe>,
    },
}

/// `if`, `range` and `with` share a shape.
#[derive(Debug, Clone)]
pub(crate) struct Branch {
    pub(crate) pos: usize,
    pub(crate) pipe: Pipe,
    pub(crate) list: Vec<Node>,
    pub(crate) else_list: Option<Vec<Node>>,
}

/// A pipeline with optional variable declarations.
#[derive(Debug, Clone)]
pub(crate) struct Pipe {
    pub(crate) pos: usize,
    pub(crate) is_assign: bool,
    pub(crate) decl: Vec<Variable>,
    pub(crate) cmds: Vec<Command>,
}

/// `$x` or `$x.a.b`.
#[derive(Debug, Clone)]
pub(crate) struct Variable {
    pub(crate) pos: usize,
    pub(crate) ident: Vec<String>,
}

/// One command of a pipeline: an operand followed by arguments.
#[derive(Debug, Clone)]
pub(crate) struct Command {
    pub(crate) pos: usize,
    pub(crate) args: Vec<Arg>,
}

/// A parsed number constant with Go's "ideal constant" flags.
#[derive(Debug, Clone)]
pub(crate) struct Number {
    pub(crate) pos: usize,
    pub(crate) text: String,
    pub(crate) is_int: bool,
    pub(crate) is_uint: bool,
    pub(crate) is_float: bool,
    pub(crate) is_complex: bool,
    pub(crate) int_value: i64,
    pub(crate) float_value: f64,
}

/// Operands.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Identifier {
        pos: usize,
        name: String,
    },
    Dot {
        pos: usize,
    },
    Nil {
        pos: usize,
    },
    Variable(Variable),
    Field {
        pos: usize,
        ident: Vec<String>,
    },
    Chain {
        pos: usize,
        node: Box<Arg>,
        fields: Vec<String>,
    },
    Bool {
        pos: usize,
        value: bool,
    },
    Number(Number),
    String {
        pos: usize,
        quoted: String,
        text: String,
    },
    Pipe(Box<Pipe>),
}

impl Arg {
    pub(crate) fn pos(&self) -> usize {
        match self {
            Arg::Identifier { pos, .. }
            | Arg::Dot { pos }
            | Arg::Nil { pos }
            | Arg::Field { pos, .. }
            | Arg::Chain { pos, .. }
            | Arg::Bool { pos, .. }
            | Arg::String { pos, .. } => *pos,
            Arg::Variable(variable) => variable.pos,
            Arg::Number(number) => number.pos,
            Arg::Pipe(pipe) => pipe.pos,
        }
    }
}

impl Node {
    pub(crate) fn pos(&self) -> usize {
        match self {
            Node::Text { pos, .. }
            | Node::Action { pos, .. }
            | Node::Break { pos }
            | Node::Continue { pos }
            | Node::Template { pos, .. } => *pos,
            Node::If(branch) | Node::Range(branch) | Node::With(branch) => branch.pos,
        }
    }
}

fn write_list(formatter: &mut Formatter<'_>, list: &[Node]) -> fmt::Result {
    for node in list {
        write!(formatter, "{node}")?;
    }
    Ok(())
}

fn write_branch(formatter: &mut Formatter<'_>, name: &str, branch: &Branch) -> fmt::Result {
    write!(formatter, "{{{{{name} {}}}}}", branch.pipe)?;
    write_list(formatter, &branch.list)?;
    if let Some(else_list) = &branch.else_list {
        write!(formatter, "{{{{else}}}}")?;
        write_list(formatter, else_list)?;
    }
    write!(formatter, "{{{{end}}}}")
}

impl Display for Node {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Node::Text { text, .. } => write!(formatter, "{text}"),
            Node::Action { pipe, .. } => write!(formatter, "{{{{{pipe}}}}}"),
            Node::If(branch) => write_branch(formatter, "if", branch),
            Node::Range(branch) => write_branch(formatter, "range", branch),
            Node::With(branch) => write_branch(formatter, "with", branch),
            Node::Break { .. } => write!(formatter, "{{{{break}}}}"),
            Node::Continue { .. } => write!(formatter, "{{{{continue}}}}"),
            Node::Template { name, pipe, .. } => {
                write!(formatter, "{{{{template {}", crate::print::go_quote(name))?;
                if let Some(pipe) = pipe {
                    write!(formatter, " {pipe}")?;
                }
                write!(formatter, "}}}}")
            }
        }
    }
}

impl Display for Pipe {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> fmt::Result {
        if !self.decl.is_empty() {
            for (index, variable) in self.decl.iter().enumerate() {
                if index > 0 {
                    write!(formatter, ", ")?;
                }
                write!(formatter, "{variable}")?;
            }
            // Go 1.19 prints ":=" even for assignments.
            write!(formatter, " := ")?;
        }
        for (index, command) in self.cmds.iter().enumerate() {
            if index > 0 {
                write!(formatter, " | ")?;
            }
            write!(formatter, "{command}")?;
        }
        Ok(())
    }
}

impl Display for Variable {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}", self.ident.join("."))
    }
}

impl Display for Command {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> fmt::Result {
        for (index, arg) in self.args.iter().enumerate() {
            if index > 0 {
                write!(formatter, " ")?;
            }
            if let Arg::Pipe(pipe) = arg {
                write!(formatter, "({pipe})")?;
            } else {
                write!(formatter, "{arg}")?;
            }
        }
        Ok(())
    }
}

impl Display for Arg {
    fn fmt(&self, formatter: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Arg::Identifier { name, .. } => write!(formatter, "{name}"),
            Arg::Dot { .. } => write!(formatter, "."),
            Arg::Nil { .. } => write!(formatter, "nil"),
            Arg::Variable(variable) => write!(formatter, "{variable}"),
            Arg::Field { ident, .. } => {
                for part in ident {
                    write!(formatter, ".{part}")?;
                }
                Ok(())
            }
            Arg::Chain { node, fields, .. } => {
                if let Arg::Pipe(pipe) = node.as_ref() {
                    write!(formatter, "({pipe})")?;
                } else {
                    write!(formatter, "{node}")?;
                }
                for field in fields {
                    write!(formatter, ".{field}")?;
                }
                Ok(())
            }
            Arg::Bool { value, .. } => write!(formatter, "{value}"),
            Arg::Number(number) => write!(formatter, "{}", number.text),
            Arg::String { quoted, .. } => write!(formatter, "{quoted}"),
            Arg::Pipe(pipe) => write!(formatter, "{pipe}"),
        }
    }
}
