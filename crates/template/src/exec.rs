//! The executor: walks the parse tree against data, reproducing Go's text/template
//! exec.go semantics (option `missingkey=error`).
//!
//! Go distinguishes a value's static type from its dynamic one: a map element is an
//! `interface{}` until a pipeline stage unwraps it, and that difference shows up in error
//! messages (`can't evaluate field x in type interface {}`) and in nil handling. [`Val`]
//! models exactly the three reflect states that matter: invalid, concrete and boxed.
//! Values are borrowed from the data wherever possible so repeated rendering stays cheap.

use std::borrow::Cow;
use std::fmt::{self, Display};

use crate::error::TemplateError;
use crate::funcs::{self, Builtin, ParamType};
use crate::node::{Arg, Branch, Command, Node, Number, Pipe, Variable};
use crate::print;
use crate::value::Value;
use crate::{Functions, Limits, Template};

static NIL: Value = Value::Nil;

/// A reflected value as Go's executor sees it.
#[derive(Debug, Clone)]
pub(crate) enum Val<'a> {
    /// `reflect.Value{}`: missing value, untyped nil.
    Invalid,
    /// A value whose static type is its own type.
    Concrete(Cow<'a, Value>),
    /// A value held in an `interface{}` (map and `[]interface{}` elements); may be nil.
    Boxed(Cow<'a, Value>),
}

impl<'a> Val<'a> {
    fn borrowed(value: &'a Value) -> Val<'a> {
        Val::Concrete(Cow::Borrowed(value))
    }

    fn owned(value: Value) -> Val<'a> {
        Val::Concrete(Cow::Owned(value))
    }

    /// The pipeline's "dig down one level" step for `interface{}` values.
    fn unbox(self) -> Val<'a> {
        match self {
            Val::Boxed(value) if matches!(value.as_ref(), Value::Nil) => Val::Invalid,
            Val::Boxed(value) => Val::Concrete(value),
            other => other,
        }
    }

    /// `indirectInterface`: the dynamic value, or None for invalid and nil interfaces.
    fn dynamic(&self) -> Option<&Value> {
        match self {
            Val::Invalid => None,
            Val::Concrete(value) | Val::Boxed(value) => match value.as_ref() {
                Value::Nil => None,
                other => Some(other),
            },
        }
    }

    /// The value an `interface{}` parameter receives.
    fn as_interface(&self) -> &Value {
        self.dynamic().unwrap_or(&NIL)
    }

    fn static_type_name(&self) -> &'static str {
        match self {
            Val::Invalid => "<invalid>",
            Val::Boxed(_) => "interface {}",
            Val::Concrete(value) => value.go_type_name(),
        }
    }

    fn is_true(&self) -> bool {
        self.dynamic().is_some_and(Value::is_true)
    }
}

/// The node execution is currently "at", for error locations and contexts.
#[derive(Clone, Copy)]
enum At<'t> {
    Nothing,
    Node(&'t Node),
    Pipe(&'t Pipe),
    Command(&'t Command),
    Arg(&'t Arg),
}

impl At<'_> {
    fn pos(&self) -> Option<usize> {
        match self {
            At::Nothing => None,
            At::Node(node) => Some(node.pos()),
            At::Pipe(pipe) => Some(pipe.pos),
            At::Command(command) => Some(command.pos),
            At::Arg(arg) => Some(arg.pos()),
        }
    }
}

impl Display for At<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Nothing => Ok(()),
            At::Node(node) => write!(formatter, "{node}"),
            At::Pipe(pipe) => write!(formatter, "{pipe}"),
            At::Command(command) => write!(formatter, "{command}"),
            At::Arg(arg) => write!(formatter, "{arg}"),
        }
    }
}

enum Flow {
    Normal,
    Break,
    Continue,
}

enum Callable<'a> {
    Builtin(Builtin),
    Niladic(&'a Value),
}

type Exec<T> = Result<T, TemplateError>;

pub(crate) struct State<'a> {
    template: &'a Template,
    functions: &'a Functions,
    limits: &'a Limits,
    current_name: &'a str,
    out: String,
    vars: Vec<(&'a str, Val<'a>)>,
    at: At<'a>,
    depth: usize,
    /// Evaluation steps taken so far, against [`Limits::max_steps`].
    steps: usize,
}

/// Executes `template` against `data`.
pub(crate) fn execute(
    template: &Template,
    data: &Value,
    functions: &Functions,
    limits: &Limits,
) -> Result<String, TemplateError> {
    let dot = match data {
        Value::Nil => Val::Invalid,
        other => Val::borrowed(other),
    };
    let mut state = State {
        template,
        functions,
        limits,
        current_name: &template.name,
        out: String::new(),
        vars: vec![("$", dot.clone())],
        at: At::Nothing,
        depth: 0,
        steps: 0,
    };
    state.walk_list(&dot, &template.tree.root)?;
    Ok(state.out)
}

impl<'a> State<'a> {
    fn error(&self, message: impl Display) -> TemplateError {
        let name = print::go_quote(self.current_name);
        match self.at.pos() {
            None => TemplateError::Execute {
                message: format!("template: {}: {}", self.current_name, message),
                offset: None,
            },
            Some(pos) => {
                let text = &self.template.text;
                let before = text.get(..pos).unwrap_or(text);
                let (line, column) = match before.rfind('\n') {
                    None => (1, pos),
                    Some(newline) => (1 + before.matches('\n').count(), pos - newline - 1),
                };
                TemplateError::Execute {
                    message: format!(
                        "template: {}:{}:{}: executing {} at <{}>: {}",
                        self.template.name, line, column, name, self.at, message
                    ),
                    offset: Some(pos),
                }
            }
        }
    }

    fn fail<T>(&self, message: impl Display) -> Exec<T> {
        Err(self.error(message))
    }

    fn write(&mut self, text: &str) -> Exec<()> {
        if self.out.len() + text.len() > self.limits.max_output_bytes {
            return Err(TemplateError::OutputTooLarge {
                limit: self.limits.max_output_bytes,
            });
        }
        self.out.push_str(text);
        Ok(())
    }

    /// Counts one evaluation step; fails once [`Limits::max_steps`] is used up.
    fn tick(&mut self) -> Exec<()> {
        self.steps += 1;
        if self.steps > self.limits.max_steps {
            return self.fail(format!(
                "the template takes more than {} evaluation steps (a loop over a huge list, nested loops, or templates calling each other); refusing to go on",
                self.limits.max_steps
            ));
        }
        Ok(())
    }

    fn walk_list(&mut self, dot: &Val<'a>, list: &'a [Node]) -> Exec<Flow> {
        for node in list {
            match self.walk(dot, node)? {
                Flow::Normal => {}
                other => return Ok(other),
            }
        }
        Ok(Flow::Normal)
    }

    fn walk(&mut self, dot: &Val<'a>, node: &'a Node) -> Exec<Flow> {
        self.at = At::Node(node);
        self.tick()?;
        match node {
            Node::Text { text, .. } => self.write(text)?,
            Node::Action { pipe, .. } => {
                let value = self.eval_pipeline(dot, pipe)?;
                if pipe.decl.is_empty() {
                    self.at = At::Node(node);
                    self.print_value(&value)?;
                }
            }
            Node::Break { .. } => return Ok(Flow::Break),
            Node::Continue { .. } => return Ok(Flow::Continue),
            Node::If(branch) => return self.walk_if_or_with(false, dot, branch),
            Node::With(branch) => return self.walk_if_or_with(true, dot, branch),
            Node::Range(branch) => return self.walk_range(dot, branch),
            Node::Template { name, pipe, .. } => self.walk_template(dot, name, pipe.as_ref())?,
        }
        Ok(Flow::Normal)
    }

    fn print_value(&mut self, value: &Val<'a>) -> Exec<()> {
        match value {
            Val::Invalid => self.write("<no value>"),
            Val::Concrete(inner) | Val::Boxed(inner) => {
                if let Value::String(text) = inner.as_ref() {
                    return self.write(text);
                }
                let mut rendered = String::new();
                print::write_value(&mut rendered, inner);
                self.write(&rendered)
            }
        }
    }

    fn walk_if_or_with(&mut self, is_with: bool, dot: &Val<'a>, branch: &'a Branch) -> Exec<Flow> {
        let mark = self.vars.len();
        let result = (|| {
            let value = self.eval_pipeline(dot, &branch.pipe)?;
            if value.is_true() {
                if is_with {
                    self.walk_list(&value, &branch.list)
                } else {
                    self.walk_list(dot, &branch.list)
                }
            } else if let Some(else_list) = &branch.else_list {
                self.walk_list(dot, else_list)
            } else {
                Ok(Flow::Normal)
            }
        })();
        self.vars.truncate(mark);
        result
    }

    fn walk_range(&mut self, dot: &Val<'a>, branch: &'a Branch) -> Exec<Flow> {
        let outer_mark = self.vars.len();
        let result = self.walk_range_inner(dot, branch);
        self.vars.truncate(outer_mark);
        result.map(|_| Flow::Normal)
    }

    fn range_iteration(
        &mut self,
        branch: &'a Branch,
        mark: usize,
        index: Val<'a>,
        element: Val<'a>,
    ) -> Exec<bool> {
        self.tick()?;
        let declared = branch.pipe.decl.len();
        let variable_count = self.vars.len();
        if declared > 0 && variable_count >= 1 {
            self.vars[variable_count - 1].1 = element.clone();
        }
        if declared > 1 && variable_count >= 2 {
            self.vars[variable_count - 2].1 = index;
        }
        let flow = self.walk_list(&element, &branch.list);
        self.vars.truncate(mark);
        Ok(matches!(flow?, Flow::Break))
    }

    fn walk_range_inner(&mut self, dot: &Val<'a>, branch: &'a Branch) -> Exec<()> {
        let value = self.eval_pipeline(dot, &branch.pipe)?;
        let mark = self.vars.len();
        let mut iterated = false;
        match value {
            Val::Invalid => {}
            Val::Concrete(container) | Val::Boxed(container) => match container {
                Cow::Borrowed(Value::List(items)) => {
                    for (index, item) in items.iter().enumerate() {
                        iterated = true;
                        if self.range_iteration(
                            branch,
                            mark,
                            Val::owned(Value::Int(index as i64)),
                            Val::Boxed(Cow::Borrowed(item)),
                        )? {
                            break;
                        }
                    }
                }
                Cow::Borrowed(Value::StringList(items) | Value::PathList(items)) => {
                    for (index, item) in items.iter().enumerate() {
                        iterated = true;
                        let element = Val::owned(Value::String(item.clone()));
                        if self.range_iteration(
                            branch,
                            mark,
                            Val::owned(Value::Int(index as i64)),
                            element,
                        )? {
                            break;
                        }
                    }
                }
                Cow::Borrowed(Value::Map(entries)) => {
                    for (key, item) in entries {
                        iterated = true;
                        let key = Val::owned(Value::String(key.clone()));
                        if self.range_iteration(
                            branch,
                            mark,
                            key,
                            Val::Boxed(Cow::Borrowed(item)),
                        )? {
                            break;
                        }
                    }
                }
                Cow::Owned(Value::List(items)) => {
                    for (index, item) in items.into_iter().enumerate() {
                        iterated = true;
                        if self.range_iteration(
                            branch,
                            mark,
                            Val::owned(Value::Int(index as i64)),
                            Val::Boxed(Cow::Owned(item)),
                        )? {
                            break;
                        }
                    }
                }
                Cow::Owned(Value::StringList(items) | Value::PathList(items)) => {
                    for (index, item) in items.into_iter().enumerate() {
                        iterated = true;
                        if self.range_iteration(
                            branch,
                            mark,
                            Val::owned(Value::Int(index as i64)),
                            Val::owned(Value::String(item)),
                        )? {
                            break;
                        }
                    }
                }
                Cow::Owned(Value::Map(entries)) => {
                    for (key, item) in entries {
                        iterated = true;
                        if self.range_iteration(
                            branch,
                            mark,
                            Val::owned(Value::String(key)),
                            Val::Boxed(Cow::Owned(item)),
                        )? {
                            break;
                        }
                    }
                }
                Cow::Borrowed(Value::Nil) | Cow::Owned(Value::Nil) => {}
                other => {
                    return self.fail(format!(
                        "range can't iterate over {}",
                        print::format_value(&other)
                    ));
                }
            },
        }
        if !iterated && let Some(else_list) = &branch.else_list {
            self.walk_list(dot, else_list)?;
        }
        Ok(())
    }

    fn walk_template(&mut self, dot: &Val<'a>, name: &str, pipe: Option<&'a Pipe>) -> Exec<()> {
        let Some((defined_name, list)) = self
            .template
            .tree
            .definitions
            .iter()
            .find(|(defined, _)| defined == name)
        else {
            return self.fail(format!("template {} not defined", print::go_quote(name)));
        };
        if self.depth >= self.limits.max_depth {
            return self.fail(format!(
                "exceeded maximum template depth ({})",
                self.limits.max_depth
            ));
        }
        let new_dot = match pipe {
            Some(pipe) => self.eval_pipeline(dot, pipe)?,
            None => Val::Invalid,
        };
        let saved_vars = std::mem::replace(&mut self.vars, vec![("$", new_dot.clone())]);
        let saved_name = std::mem::replace(&mut self.current_name, defined_name.as_str());
        self.depth += 1;
        let result = self.walk_list(&new_dot, list);
        self.depth -= 1;
        self.current_name = saved_name;
        self.vars = saved_vars;
        result.map(|_| ())
    }

    fn eval_pipeline(&mut self, dot: &Val<'a>, pipe: &'a Pipe) -> Exec<Val<'a>> {
        self.at = At::Pipe(pipe);
        self.depth += 1;
        if self.depth > self.limits.max_depth {
            self.depth -= 1;
            return self.fail(format!(
                "exceeded maximum template depth ({})",
                self.limits.max_depth
            ));
        }
        let result = self.eval_pipeline_inner(dot, pipe);
        self.depth -= 1;
        result
    }

    fn eval_pipeline_inner(&mut self, dot: &Val<'a>, pipe: &'a Pipe) -> Exec<Val<'a>> {
        let mut value: Option<Val<'a>> = None;
        for command in &pipe.cmds {
            let result = self.eval_command(dot, command, value.take())?;
            value = Some(result.unbox());
        }
        let value = value.unwrap_or(Val::Invalid);
        for variable in &pipe.decl {
            let name = variable.ident.first().map(String::as_str).unwrap_or("$");
            if pipe.is_assign {
                self.set_var(name, value.clone())?;
            } else {
                self.vars.push((name, value.clone()));
            }
        }
        Ok(value)
    }

    fn set_var(&mut self, name: &str, value: Val<'a>) -> Exec<()> {
        for variable in self.vars.iter_mut().rev() {
            if variable.0 == name {
                variable.1 = value;
                return Ok(());
            }
        }
        self.fail(format!("undefined variable: {name}"))
    }

    fn var_value(&self, name: &str) -> Exec<Val<'a>> {
        for variable in self.vars.iter().rev() {
            if variable.0 == name {
                return Ok(variable.1.clone());
            }
        }
        self.fail(format!("undefined variable: {name}"))
    }

    fn not_a_function(&self, args: &[Arg], final_value: &Option<Val<'a>>) -> Exec<()> {
        if args.len() > 1 || final_value.is_some() {
            let first = args.first().map(ToString::to_string).unwrap_or_default();
            return self.fail(format!("can't give argument to non-function {first}"));
        }
        Ok(())
    }

    fn eval_command(
        &mut self,
        dot: &Val<'a>,
        command: &'a Command,
        final_value: Option<Val<'a>>,
    ) -> Exec<Val<'a>> {
        let Some(first) = command.args.first() else {
            return self.fail("empty command");
        };
        self.tick()?;
        match first {
            Arg::Field { ident, .. } => {
                self.at = At::Arg(first);
                return self.eval_field_chain(
                    dot,
                    dot.clone(),
                    first,
                    ident,
                    &command.args,
                    final_value,
                );
            }
            Arg::Chain { .. } => {
                return self.eval_chain_node(dot, first, &command.args, final_value);
            }
            Arg::Identifier { name, .. } => {
                return self.eval_function(
                    dot,
                    first,
                    name,
                    At::Command(command),
                    &command.args,
                    final_value,
                );
            }
            Arg::Pipe(pipe) => {
                self.not_a_function(&command.args, &final_value)?;
                return self.eval_pipeline(dot, pipe);
            }
            Arg::Variable(variable) => {
                return self.eval_variable_node(dot, first, variable, &command.args, final_value);
            }
            _ => {}
        }
        self.at = At::Arg(first);
        self.not_a_function(&command.args, &final_value)?;
        match first {
            Arg::Bool { value, .. } => Ok(Val::owned(Value::Bool(*value))),
            Arg::Dot { .. } => Ok(dot.clone()),
            Arg::Nil { .. } => self.fail("nil is not a command"),
            Arg::Number(number) => self.ideal_constant(first, number),
            Arg::String { text, .. } => Ok(Val::owned(Value::String(text.clone()))),
            other => self.fail(format!(
                "can't evaluate command {}",
                print::go_quote(&other.to_string())
            )),
        }
    }

    fn ideal_constant(&mut self, arg: &'a Arg, number: &Number) -> Exec<Val<'a>> {
        self.at = At::Arg(arg);
        let text = &number.text;
        let is_hex_int = text.len() > 2
            && text.starts_with('0')
            && matches!(text.as_bytes()[1], b'x' | b'X')
            && !text.contains(['p', 'P']);
        let is_rune = text.starts_with('\'');
        if number.is_complex {
            return self.fail(format!("complex constant {text} is not supported"));
        }
        if number.is_float && !is_hex_int && !is_rune && text.contains(['.', 'e', 'E', 'p', 'P']) {
            return Ok(Val::owned(Value::Float(number.float_value)));
        }
        if number.is_int {
            return Ok(Val::owned(Value::Int(number.int_value)));
        }
        if number.is_uint {
            return self.fail(format!("{text} overflows int"));
        }
        Ok(Val::Invalid)
    }

    fn eval_chain_node(
        &mut self,
        dot: &Val<'a>,
        chain: &'a Arg,
        args: &'a [Arg],
        final_value: Option<Val<'a>>,
    ) -> Exec<Val<'a>> {
        self.at = At::Arg(chain);
        let Arg::Chain { node, fields, .. } = chain else {
            return self.fail("internal error: not a chain");
        };
        if fields.is_empty() {
            return self.fail("internal error: no fields in evalChainNode");
        }
        if let Arg::Nil { .. } = node.as_ref() {
            return self.fail(format!("indirection through explicit nil in {chain}"));
        }
        let receiver = self.eval_arg(dot, None, node)?;
        self.eval_field_chain(dot, receiver, chain, fields, args, final_value)
    }

    fn eval_variable_node(
        &mut self,
        dot: &Val<'a>,
        arg: &'a Arg,
        variable: &'a Variable,
        args: &'a [Arg],
        final_value: Option<Val<'a>>,
    ) -> Exec<Val<'a>> {
        self.at = At::Arg(arg);
        let name = variable.ident.first().map(String::as_str).unwrap_or("$");
        let value = self.var_value(name)?;
        if variable.ident.len() == 1 {
            self.not_a_function(args, &final_value)?;
            return Ok(value);
        }
        self.eval_field_chain(dot, value, arg, &variable.ident[1..], args, final_value)
    }

    fn eval_field_chain(
        &mut self,
        dot: &Val<'a>,
        receiver: Val<'a>,
        node: &'a Arg,
        ident: &'a [String],
        args: &'a [Arg],
        final_value: Option<Val<'a>>,
    ) -> Exec<Val<'a>> {
        let Some((last, init)) = ident.split_last() else {
            return Ok(receiver);
        };
        let mut receiver = receiver;
        for name in init {
            receiver = self.eval_field(dot, name, node, &[], None, receiver)?;
        }
        self.eval_field(dot, last, node, args, final_value, receiver)
    }

    fn eval_field(
        &mut self,
        _dot: &Val<'a>,
        name: &str,
        node: &'a Arg,
        args: &'a [Arg],
        final_value: Option<Val<'a>>,
        receiver: Val<'a>,
    ) -> Exec<Val<'a>> {
        let _ = node;
        let static_type = receiver.static_type_name();
        let inner = match receiver {
            Val::Invalid => {
                return self.fail(format!(
                    "nil data; no entry for key {}",
                    print::go_quote(name)
                ));
            }
            Val::Boxed(value) if matches!(value.as_ref(), Value::Nil) => {
                return self.fail(format!("nil pointer evaluating {static_type}.{name}"));
            }
            Val::Boxed(value) | Val::Concrete(value) => value,
        };
        if name == "String"
            && let Value::PathList(items) = inner.as_ref()
        {
            let argument_count = args.len().saturating_sub(1) + usize::from(final_value.is_some());
            if argument_count != 0 {
                return self.fail(format!(
                    "wrong number of args for String: want 0 got {argument_count}"
                ));
            }
            return Ok(Val::owned(Value::String(items.join(" "))));
        }
        let has_args = args.len() > 1 || final_value.is_some();
        match inner {
            Cow::Borrowed(Value::Map(entries)) => {
                if has_args {
                    return self.fail(format!("{name} is not a method but has arguments"));
                }
                match entries.get(name) {
                    Some(value) => Ok(Val::Boxed(Cow::Borrowed(value))),
                    None => self.fail(format!(
                        "map has no entry for key {}",
                        print::go_quote(name)
                    )),
                }
            }
            Cow::Owned(Value::Map(mut entries)) => {
                if has_args {
                    return self.fail(format!("{name} is not a method but has arguments"));
                }
                match entries.remove(name) {
                    Some(value) => Ok(Val::Boxed(Cow::Owned(value))),
                    None => self.fail(format!(
                        "map has no entry for key {}",
                        print::go_quote(name)
                    )),
                }
            }
            _ => self.fail(format!("can't evaluate field {name} in type {static_type}")),
        }
    }

    fn find_function(&self, name: &str) -> Option<Callable<'a>> {
        if let Some(value) = self
            .functions
            .values
            .iter()
            .rev()
            .find(|(candidate, _)| candidate == name)
        {
            return Some(Callable::Niladic(&value.1));
        }
        if self.functions.helpers
            && let Some(helper) = Builtin::sourcegraph_helper(name)
        {
            return Some(Callable::Builtin(helper));
        }
        Builtin::go_builtin(name).map(Callable::Builtin)
    }

    fn eval_function(
        &mut self,
        dot: &Val<'a>,
        node: &'a Arg,
        name: &'a str,
        command: At<'a>,
        args: &'a [Arg],
        final_value: Option<Val<'a>>,
    ) -> Exec<Val<'a>> {
        self.at = At::Arg(node);
        let Some(callable) = self.find_function(name) else {
            return self.fail(format!(
                "{} is not a defined function",
                print::go_quote(name)
            ));
        };
        self.eval_call(dot, callable, command, name, args, final_value)
    }

    fn eval_call(
        &mut self,
        dot: &Val<'a>,
        callable: Callable<'a>,
        node: At<'a>,
        name: &str,
        args: &'a [Arg],
        final_value: Option<Val<'a>>,
    ) -> Exec<Val<'a>> {
        let args = args.get(1..).unwrap_or(&[]);
        let input_count = args.len() + usize::from(final_value.is_some());
        let builtin = match callable {
            Callable::Niladic(value) => {
                if input_count != 0 {
                    return self.fail(format!(
                        "wrong number of args for {name}: want 0 got {input_count}"
                    ));
                }
                return Ok(Val::borrowed(value));
            }
            Callable::Builtin(builtin) => builtin,
        };
        let signature = builtin.signature();
        let fixed_count = signature.fixed.len();
        if signature.variadic.is_some() {
            if input_count < fixed_count {
                return self.fail(format!(
                    "wrong number of args for {name}: want at least {fixed_count} got {}",
                    args.len()
                ));
            }
        } else if input_count != fixed_count {
            return self.fail(format!(
                "wrong number of args for {name}: want {fixed_count} got {input_count}"
            ));
        }
        if builtin.is_go_builtin() && matches!(builtin, Builtin::And | Builtin::Or) {
            let is_or = builtin == Builtin::Or;
            let mut value = Val::Invalid;
            for arg in args {
                value = self.eval_arg(dot, Some(ParamType::ReflectValue), arg)?;
                if value.is_true() == is_or {
                    return Ok(value);
                }
            }
            if let Some(final_value) = final_value {
                value = final_value;
            }
            return Ok(value);
        }
        let mut argv: Vec<Val<'a>> = Vec::with_capacity(input_count);
        for (index, arg) in args.iter().enumerate() {
            let param = signature
                .fixed
                .get(index)
                .copied()
                .or(signature.variadic)
                .unwrap_or(ParamType::Interface);
            argv.push(self.eval_arg(dot, Some(param), arg)?);
        }
        if let Some(final_value) = final_value {
            let param = if signature.variadic.is_some() {
                signature
                    .fixed
                    .get(input_count - 1)
                    .copied()
                    .or(signature.variadic)
                    .unwrap_or(ParamType::Interface)
            } else {
                signature
                    .fixed
                    .last()
                    .copied()
                    .unwrap_or(ParamType::Interface)
            };
            argv.push(self.validate_type(final_value, Some(param))?);
        }
        match self.call_builtin(builtin, argv) {
            Ok(value) => Ok(value),
            Err(message) => {
                self.at = node;
                self.fail(format!("error calling {name}: {message}"))
            }
        }
    }

    fn validate_type(&self, value: Val<'a>, param: Option<ParamType>) -> Exec<Val<'a>> {
        let Some(param) = param else {
            return Ok(value);
        };
        match param {
            ParamType::ReflectValue => Ok(value),
            ParamType::Interface => Ok(match value {
                Val::Invalid => Val::owned(Value::Nil),
                Val::Boxed(inner) | Val::Concrete(inner) => Val::Concrete(inner),
            }),
            ParamType::String => match value {
                Val::Invalid => self.fail("invalid value; expected string"),
                Val::Boxed(inner) | Val::Concrete(inner)
                    if matches!(inner.as_ref(), Value::String(_)) =>
                {
                    Ok(Val::Concrete(inner))
                }
                Val::Boxed(inner) if matches!(inner.as_ref(), Value::Nil) => {
                    self.fail("wrong type for value; expected string; got interface {}")
                }
                Val::Boxed(inner) | Val::Concrete(inner) => self.fail(format!(
                    "wrong type for value; expected string; got {}",
                    inner.go_type_name()
                )),
            },
            ParamType::StringSlice => match value {
                Val::Invalid => Ok(Val::owned(Value::StringList(Vec::new()))),
                Val::Boxed(inner) | Val::Concrete(inner)
                    if matches!(inner.as_ref(), Value::StringList(_) | Value::PathList(_)) =>
                {
                    Ok(Val::Concrete(inner))
                }
                Val::Boxed(inner) if matches!(inner.as_ref(), Value::Nil) => {
                    self.fail("wrong type for value; expected []string; got interface {}")
                }
                Val::Boxed(inner) | Val::Concrete(inner) => self.fail(format!(
                    "wrong type for value; expected []string; got {}",
                    inner.go_type_name()
                )),
            },
        }
    }

    fn eval_arg(&mut self, dot: &Val<'a>, param: Option<ParamType>, arg: &'a Arg) -> Exec<Val<'a>> {
        self.at = At::Arg(arg);
        match arg {
            Arg::Dot { .. } => return self.validate_type(dot.clone(), param),
            Arg::Nil { .. } => {
                return match param {
                    None | Some(ParamType::ReflectValue) => Ok(Val::Invalid),
                    Some(ParamType::Interface) => Ok(Val::owned(Value::Nil)),
                    Some(ParamType::StringSlice) => Ok(Val::owned(Value::StringList(Vec::new()))),
                    Some(ParamType::String) => self.fail("cannot assign nil to string"),
                };
            }
            Arg::Field { ident, .. } => {
                let value = self.eval_field_chain(
                    dot,
                    dot.clone(),
                    arg,
                    ident,
                    std::slice::from_ref(arg),
                    None,
                )?;
                return self.validate_type(value, param);
            }
            Arg::Variable(variable) => {
                let value = self.eval_variable_node(dot, arg, variable, &[], None)?;
                return self.validate_type(value, param);
            }
            Arg::Pipe(pipe) => {
                let value = self.eval_pipeline(dot, pipe)?;
                return self.validate_type(value, param);
            }
            Arg::Identifier { name, .. } => {
                let value = self.eval_function(dot, arg, name, At::Arg(arg), &[], None)?;
                return self.validate_type(value, param);
            }
            Arg::Chain { .. } => {
                let value = self.eval_chain_node(dot, arg, &[], None)?;
                return self.validate_type(value, param);
            }
            _ => {}
        }
        match param {
            None | Some(ParamType::ReflectValue) | Some(ParamType::Interface) => match arg {
                Arg::Bool { value, .. } => Ok(Val::owned(Value::Bool(*value))),
                Arg::Number(number) => self.ideal_constant(arg, number),
                Arg::String { text, .. } => Ok(Val::owned(Value::String(text.clone()))),
                other => self.fail(format!(
                    "can't handle assignment of {other} to empty interface argument"
                )),
            },
            Some(ParamType::String) => match arg {
                Arg::String { text, .. } => Ok(Val::owned(Value::String(text.clone()))),
                other => self.fail(format!("expected string; found {other}")),
            },
            Some(ParamType::StringSlice) => {
                self.fail(format!("can't handle {arg} for arg of type []string"))
            }
        }
    }

    fn string_arg<'v>(argv: &'v [Val<'a>], index: usize) -> &'v str {
        match argv.get(index).and_then(Val::dynamic) {
            Some(Value::String(text)) => text,
            _ => "",
        }
    }

    fn call_builtin(&mut self, builtin: Builtin, argv: Vec<Val<'a>>) -> Result<Val<'a>, String> {
        let value_limit = self.limits.max_value_bytes;
        // Sizes are checked before the work where a result can outgrow its arguments many
        // times over (a `replace` of "" in a long text, `join` or `print` of a list that holds
        // the same long string many times), so the bound holds for memory, not just output.
        let expected = expected_result_bytes(builtin, &argv);
        if expected > value_limit {
            return Err(too_large_value(expected, value_limit));
        }
        let result = self.call_builtin_unchecked(builtin, argv)?;
        if expected > 0
            && let Some(value) = result.dynamic()
        {
            let size = approximate_bytes(value);
            if size > value_limit {
                return Err(too_large_value(size, value_limit));
            }
        }
        Ok(result)
    }

    fn call_builtin_unchecked(&mut self, builtin: Builtin, argv: Vec<Val<'a>>) -> Result<Val<'a>, String> {
        let limit = self.limits.max_output_bytes;
        let interfaces = |argv: &[Val<'a>]| -> Vec<Value> {
            argv.iter()
                .map(|value| value.as_interface().clone())
                .collect()
        };
        Ok(match builtin {
            Builtin::And | Builtin::Or => Val::Invalid,
            Builtin::Not => Val::owned(Value::Bool(!argv.first().is_some_and(Val::is_true))),
            Builtin::Len => {
                let Some(item) = argv.first() else {
                    return Err("missing argument".to_owned());
                };
                match item {
                    Val::Invalid => {
                        return Err("reflect: call of reflect.Value.Type on zero Value".to_owned());
                    }
                    Val::Boxed(value) if matches!(value.as_ref(), Value::Nil) => {
                        return Err("len of nil pointer".to_owned());
                    }
                    Val::Boxed(value) | Val::Concrete(value) => match value.go_len() {
                        Some(length) => Val::owned(Value::Int(length as i64)),
                        None => return Err(format!("len of type {}", value.go_type_name())),
                    },
                }
            }
            Builtin::Index => return index_value(argv),
            Builtin::Slice => return slice_value(argv),
            Builtin::Call => {
                return match argv.first().and_then(Val::dynamic) {
                    None => Err("call of nil".to_owned()),
                    Some(value) => Err(format!("non-function of type {}", value.go_type_name())),
                };
            }
            Builtin::Eq => {
                let (first, rest) = argv
                    .split_first()
                    .ok_or_else(|| "missing argument for comparison".to_owned())?;
                Val::owned(Value::Bool(equal_any(first, rest)?))
            }
            Builtin::Ne => {
                let (first, rest) = argv
                    .split_first()
                    .ok_or_else(|| "missing argument for comparison".to_owned())?;
                Val::owned(Value::Bool(!equal_any(first, rest)?))
            }
            Builtin::Lt | Builtin::Le | Builtin::Gt | Builtin::Ge => {
                let (Some(left), Some(right)) = (argv.first(), argv.get(1)) else {
                    return Err("missing argument for comparison".to_owned());
                };
                let less = less_than(left, right)?;
                let result = match builtin {
                    Builtin::Lt => less,
                    Builtin::Ge => !less,
                    Builtin::Le => less || equal_any(left, std::slice::from_ref(right))?,
                    _ => !(less || equal_any(left, std::slice::from_ref(right))?),
                };
                Val::owned(Value::Bool(result))
            }
            Builtin::Print | Builtin::Println => {
                let values = interfaces(&argv);
                let references: Vec<&Value> = values.iter().collect();
                let text = if builtin == Builtin::Print {
                    print::sprint(&references)
                } else {
                    print::sprintln(&references)
                };
                Val::owned(Value::String(text))
            }
            Builtin::Printf => {
                let format = Self::string_arg(&argv, 0).to_owned();
                let values = interfaces(argv.get(1..).unwrap_or(&[]));
                let references: Vec<&Value> = values.iter().collect();
                match print::sprintf(&format, &references, limit) {
                    Ok(text) => Val::owned(Value::String(text)),
                    Err(_) => {
                        return Err(format!("printf output exceeds the limit of {limit} bytes"));
                    }
                }
            }
            Builtin::Html | Builtin::Js | Builtin::Urlquery => {
                let values = interfaces(&argv);
                let references: Vec<&Value> = values.iter().collect();
                let text = funcs::eval_args_text(&references);
                Val::owned(Value::String(match builtin {
                    Builtin::Html => funcs::html_escape(&text),
                    Builtin::Js => funcs::js_escape(&text),
                    _ => funcs::url_query_escape(&text),
                }))
            }
            Builtin::Join => {
                let elements: &[String] = match argv.first().and_then(Val::dynamic) {
                    Some(Value::StringList(items) | Value::PathList(items)) => items,
                    _ => &[],
                };
                let separator = Self::string_arg(&argv, 1);
                Val::owned(Value::String(elements.join(separator)))
            }
            Builtin::Split => Val::owned(Value::StringList(funcs::split(
                Self::string_arg(&argv, 0),
                Self::string_arg(&argv, 1),
            ))),
            Builtin::Replace => {
                let text = Self::string_arg(&argv, 0);
                let old = Self::string_arg(&argv, 1);
                let new = Self::string_arg(&argv, 2);
                Val::owned(Value::String(text.replace(old, new)))
            }
            Builtin::JoinIf => {
                let separator = Self::string_arg(&argv, 0);
                let elements: Vec<&str> = (1..argv.len())
                    .map(|index| Self::string_arg(&argv, index))
                    .collect();
                Val::owned(Value::String(funcs::join_if(separator, &elements)))
            }
            Builtin::Matches => Val::owned(Value::Bool(funcs::glob_matches(
                Self::string_arg(&argv, 0),
                Self::string_arg(&argv, 1),
            )?)),
            Builtin::ShellquoteJoin => {
                let values = interfaces(&argv);
                let references: Vec<&Value> = values.iter().collect();
                Val::owned(Value::String(funcs::shellquote_join(&references)?))
            }
            Builtin::ShellquoteSplit => {
                match crate::shellquote::split(Self::string_arg(&argv, 0)) {
                    Ok(words) => Val::owned(Value::StringList(words)),
                    Err(error) => return Err(error.to_string()),
                }
            }
        })
    }
}

fn too_large_value(size: usize, limit: usize) -> String {
    format!("the result would be about {size} bytes, more than the limit of {limit} bytes for a value computed in a template")
}

/// About how many bytes `value` occupies: its text, plus a word for every element.
fn approximate_bytes(value: &Value) -> usize {
    const ELEMENT: usize = 24;
    let mut total = 0usize;
    let mut pending = vec![value];
    while let Some(current) = pending.pop() {
        total = total.saturating_add(match current {
            Value::String(text) => text.len(),
            Value::StringList(items) | Value::PathList(items) => {
                items.iter().fold(0usize, |sum, item| sum.saturating_add(item.len()).saturating_add(ELEMENT))
            }
            Value::List(items) => {
                pending.extend(items.iter());
                items.len().saturating_mul(ELEMENT)
            }
            Value::Map(entries) => {
                pending.extend(entries.values());
                entries.keys().fold(0usize, |sum, key| sum.saturating_add(key.len()).saturating_add(ELEMENT))
            }
            Value::Nil | Value::Bool(_) | Value::Int(_) | Value::Float(_) => ELEMENT,
        });
    }
    total
}

/// An upper estimate of the bytes a builtin's result takes, computed without doing the work.
fn expected_result_bytes(builtin: Builtin, argv: &[Val<'_>]) -> usize {
    let text = |index: usize| match argv.get(index).and_then(Val::dynamic) {
        Some(Value::String(text)) => text.as_str(),
        _ => "",
    };
    let arguments = || argv.iter().filter_map(Val::dynamic).fold(0usize, |sum, value| sum.saturating_add(approximate_bytes(value)));
    match builtin {
        Builtin::Replace => {
            let (subject, old, new) = (text(0), text(1), text(2));
            let occurrences = if old.is_empty() { subject.chars().count() + 1 } else { subject.matches(old).count() };
            subject.len().saturating_sub(occurrences.saturating_mul(old.len())).saturating_add(occurrences.saturating_mul(new.len()))
        }
        Builtin::Join => {
            let count = match argv.first().and_then(Val::dynamic) {
                Some(Value::StringList(items) | Value::PathList(items)) => items.len(),
                _ => 0,
            };
            arguments().saturating_add(count.saturating_mul(text(1).len()))
        }
        Builtin::Split => {
            let (subject, separator) = (text(0), text(1));
            let pieces = if separator.is_empty() { subject.chars().count() } else { subject.matches(separator).count() + 1 };
            subject.len().saturating_add(pieces.saturating_mul(24))
        }
        // Escaping writes at most six bytes per input byte (`\u003C`, `%XX`, `&#34;`).
        Builtin::Html | Builtin::Js | Builtin::Urlquery => arguments().saturating_mul(6),
        Builtin::Print | Builtin::Println | Builtin::JoinIf => arguments(),
        Builtin::ShellquoteJoin => arguments().saturating_mul(4),
        // printf bounds its own output as it writes; the rest return (parts of) arguments.
        _ => 0,
    }
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum BasicKind {
    Invalid,
    Bool,
    Int,
    Float,
    String,
}

fn basic_kind(value: Option<&Value>) -> BasicKind {
    match value {
        Some(Value::Bool(_)) => BasicKind::Bool,
        Some(Value::Int(_)) => BasicKind::Int,
        Some(Value::Float(_)) => BasicKind::Float,
        Some(Value::String(_)) => BasicKind::String,
        _ => BasicKind::Invalid,
    }
}

fn format_with_s(value: &Value) -> String {
    print::sprintf("%s", &[value], usize::MAX).unwrap_or_default()
}

/// Go's `eq`: true if `first` equals any of `others`.
fn equal_any(first: &Val<'_>, others: &[Val<'_>]) -> Result<bool, String> {
    if others.is_empty() {
        return Err("missing argument for comparison".to_owned());
    }
    let left = first.dynamic();
    let left_kind = basic_kind(left);
    for other in others {
        let right = other.dynamic();
        let right_kind = basic_kind(right);
        let truth = if left_kind != right_kind {
            // Only an invalid (untyped nil) operand may be compared with another kind.
            if left.is_some() && right.is_some() {
                return Err("incompatible types for comparison".to_owned());
            }
            false
        } else {
            match (left, right) {
                (Some(Value::Bool(a)), Some(Value::Bool(b))) => a == b,
                (Some(Value::Int(a)), Some(Value::Int(b))) => a == b,
                (Some(Value::Float(a)), Some(Value::Float(b))) => a == b,
                (Some(Value::String(a)), Some(Value::String(b))) => a == b,
                (None, None) => true,
                (None, Some(_)) | (Some(_), None) => false,
                (Some(a), Some(b)) => {
                    if std::mem::discriminant(a) != std::mem::discriminant(b) {
                        return Err(format!(
                            "non-comparable types {}: {}, {}: {}",
                            format_with_s(a),
                            a.go_type_name(),
                            b.go_type_name(),
                            print::format_value(b)
                        ));
                    }
                    return Err(format!(
                        "non-comparable type {}: {}",
                        format_with_s(b),
                        b.go_type_name()
                    ));
                }
            }
        };
        if truth {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Go's `lt`.
fn less_than(left: &Val<'_>, right: &Val<'_>) -> Result<bool, String> {
    let left = left.dynamic();
    let right = right.dynamic();
    let left_kind = basic_kind(left);
    if left_kind == BasicKind::Invalid {
        return Err("invalid type for comparison".to_owned());
    }
    let right_kind = basic_kind(right);
    if right_kind == BasicKind::Invalid {
        return Err("invalid type for comparison".to_owned());
    }
    if left_kind != right_kind {
        return Err("incompatible types for comparison".to_owned());
    }
    match (left, right) {
        (Some(Value::Int(a)), Some(Value::Int(b))) => Ok(a < b),
        (Some(Value::Float(a)), Some(Value::Float(b))) => Ok(a < b),
        (Some(Value::String(a)), Some(Value::String(b))) => Ok(a < b),
        _ => Err("invalid type for comparison".to_owned()),
    }
}

fn index_argument(index: &Val<'_>, length: usize) -> Result<usize, String> {
    let value = match index.dynamic() {
        None => return Err("cannot index slice/array with nil".to_owned()),
        Some(Value::Int(value)) => *value,
        Some(other) => {
            return Err(format!(
                "cannot index slice/array with type {}",
                other.go_type_name()
            ));
        }
    };
    if value < 0 || value as u64 > length as u64 {
        return Err(format!("index out of range: {value}"));
    }
    Ok(value as usize)
}

/// Go's `index`.
fn index_value<'a>(argv: Vec<Val<'a>>) -> Result<Val<'a>, String> {
    let mut arguments = argv.into_iter();
    let mut item = arguments.next().unwrap_or(Val::Invalid);
    if item.dynamic().is_none() {
        return Err("index of untyped nil".to_owned());
    }
    for index in arguments {
        let container = match item {
            Val::Invalid => return Err("index of untyped nil".to_owned()),
            Val::Boxed(value) | Val::Concrete(value) => value,
        };
        if matches!(container.as_ref(), Value::Nil) {
            return Err("index of nil pointer".to_owned());
        }
        item = match container {
            Cow::Borrowed(value) => index_one_borrowed(value, &index)?,
            Cow::Owned(value) => index_one_owned(value, &index)?,
        };
    }
    Ok(item)
}

fn index_one_borrowed<'a>(container: &'a Value, index: &Val<'_>) -> Result<Val<'a>, String> {
    match container {
        Value::Map(entries) => Ok(match entries.get(map_key(index)?) {
            Some(value) => Val::Boxed(Cow::Borrowed(value)),
            None => Val::Boxed(Cow::Owned(Value::Nil)),
        }),
        other => index_one_owned(other.clone(), index),
    }
}

fn map_key<'i>(index: &'i Val<'_>) -> Result<&'i str, String> {
    match index.dynamic() {
        None => Err("value is nil; should be of type string".to_owned()),
        Some(Value::String(key)) => Ok(key),
        Some(other) => Err(format!(
            "value has type {}; should be string",
            other.go_type_name()
        )),
    }
}

fn index_one_owned<'a>(container: Value, index: &Val<'_>) -> Result<Val<'a>, String> {
    match container {
        Value::List(mut items) => {
            let position = index_argument(index, items.len())?;
            if position >= items.len() {
                return Err("reflect: slice index out of range".to_owned());
            }
            Ok(Val::Boxed(Cow::Owned(items.swap_remove(position))))
        }
        Value::StringList(mut items) | Value::PathList(mut items) => {
            let position = index_argument(index, items.len())?;
            if position >= items.len() {
                return Err("reflect: slice index out of range".to_owned());
            }
            Ok(Val::owned(Value::String(items.swap_remove(position))))
        }
        Value::String(text) => {
            let position = index_argument(index, text.len())?;
            match text.as_bytes().get(position) {
                Some(byte) => Ok(Val::owned(Value::Int(i64::from(*byte)))),
                None => Err("reflect: string index out of range".to_owned()),
            }
        }
        Value::Map(mut entries) => {
            let key = map_key(index)?.to_owned();
            Ok(Val::Boxed(Cow::Owned(
                entries.remove(&key).unwrap_or(Value::Nil),
            )))
        }
        other => Err(format!("can't index item of type {}", other.go_type_name())),
    }
}

/// Go's `slice`.
fn slice_value<'a>(argv: Vec<Val<'a>>) -> Result<Val<'a>, String> {
    let mut arguments = argv.into_iter();
    let item = arguments.next().unwrap_or(Val::Invalid);
    let indexes: Vec<Val<'a>> = arguments.collect();
    let Some(container) = item.dynamic() else {
        return Err("slice of untyped nil".to_owned());
    };
    if indexes.len() > 3 {
        return Err(format!("too many slice indexes: {}", indexes.len()));
    }
    let length = match container {
        Value::String(text) => {
            if indexes.len() == 3 {
                return Err("cannot 3-index slice a string".to_owned());
            }
            text.len()
        }
        Value::List(items) => items.len(),
        Value::StringList(items) | Value::PathList(items) => items.len(),
        other => return Err(format!("can't slice item of type {}", other.go_type_name())),
    };
    let mut bounds = [0, length, length];
    for (position, index) in indexes.iter().enumerate() {
        bounds[position] = index_argument(index, length)?;
    }
    if bounds[0] > bounds[1] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[0], bounds[1]
        ));
    }
    if indexes.len() == 3 && bounds[1] > bounds[2] {
        return Err(format!(
            "invalid slice index: {} > {}",
            bounds[1], bounds[2]
        ));
    }
    let (start, end) = (bounds[0], bounds[1]);
    Ok(Val::owned(match container {
        Value::String(text) => {
            Value::String(String::from_utf8_lossy(&text.as_bytes()[start..end]).into_owned())
        }
        Value::List(items) => Value::List(items[start..end].to_vec()),
        Value::StringList(items) => Value::StringList(items[start..end].to_vec()),
        Value::PathList(items) => Value::PathList(items[start..end].to_vec()),
        _ => Value::Nil,
    }))
}

/// Templates written to exhaust the machine: each must end quickly with an error that says
/// which limit it hit, however little it writes.
#[cfg(test)]
mod hostile_template_tests {
    use std::time::{Duration, Instant};

    use crate::{Functions, Limits, Template, TemplateError, Value};

    fn run(text: &str) -> (Result<String, TemplateError>, Duration) {
        let functions = Functions::with_sourcegraph_helpers();
        let template = Template::parse("hostile", text, &functions).expect("the template parses");
        let started = Instant::now();
        let result = template.execute_with_limits(&Value::Nil, &functions, &Limits::default());
        (result, started.elapsed())
    }

    fn refused(text: &str, wanted: &str) {
        let (result, took) = run(text);
        let message = result.expect_err("a hostile template must fail").to_string();
        assert!(message.contains(wanted), "{message}");
        assert!(took < Duration::from_secs(20), "took {took:?}");
    }

    #[test]
    fn replace_that_squares_a_string_in_variables_is_refused() {
        // `replace s "" s` puts s between every character of s: each level squares the length
        // (10 → 120 → ~14,500 → ~210 million bytes → ...);
        // nothing is written, so only a bound on computed values stops it.
        refused(
            r#"${{ $a := replace "xxxxxxxxxx" "" "xxxxxxxxxx" }}${{ $b := replace $a "" $a }}${{ $c := replace $b "" $b }}${{ $d := replace $c "" $c }}"#,
            "more than the limit of 67108864 bytes for a value computed in a template",
        );
    }

    #[test]
    fn nested_ranges_over_split_strings_are_refused() {
        // 4,000 × 4,000 × 4,000 iterations that print nothing.
        let chars = "x".repeat(4000);
        refused(
            &format!(r#"${{{{ $s := split "{chars}" "" }}}}${{{{ range $s }}}}${{{{ range $s }}}}${{{{ range $s }}}}${{{{ end }}}}${{{{ end }}}}${{{{ end }}}}"#),
            "more than 5000000 evaluation steps",
        );
    }

    #[test]
    fn templates_calling_each_other_twice_per_level_are_refused() {
        // 2^40 calls within the depth limit.
        let mut text = String::from(r#"${{ define "t0" }}${{ end }}"#);
        for level in 1..=40 {
            let below = level - 1;
            text.push_str(&format!(r#"${{{{ define "t{level}" }}}}${{{{ template "t{below}" }}}}${{{{ template "t{below}" }}}}${{{{ end }}}}"#));
        }
        text.push_str(r#"${{ template "t40" }}"#);
        refused(&text, "evaluation steps");
    }

    #[test]
    fn join_and_print_of_a_repeated_long_string_are_refused_before_the_work() {
        // $b is about 2.9 MB; 26 copies of it printed, or 14 escaped, pass 64 MiB.
        let long = r#"${{ $a := replace "yyyyyyyyyyyyyyyyyyyy" "" "yyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy" }}${{ $b := replace $a "" $a }}"#;
        refused(&format!("{long}${{{{ $c := print $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b $b }}}}"), "bytes for a value computed");
        refused(&format!("{long}${{{{ $c := html $b $b $b $b $b $b $b $b $b $b $b $b $b $b }}}}"), "bytes for a value computed");
    }

    #[test]
    fn printf_with_a_huge_width_is_refused() {
        // Go caps one width at a million; forty of them still pass 16 MiB, and fail there.
        let format = "%1000000d".repeat(40);
        let arguments = " 1".repeat(40);
        refused(&format!(r#"${{{{ $a := printf "{format}"{arguments} }}}}"#), "printf output exceeds the limit");
    }

    #[test]
    fn ordinary_templates_stay_within_the_limits() {
        let (result, _) = run(r#"${{ range $i, $w := split "a b c" " " }}${{ $i }}=${{ replace $w "b" "B" }};${{ end }}"#);
        assert_eq!(result.expect("renders"), "0=a;1=B;2=c;");
    }
}
