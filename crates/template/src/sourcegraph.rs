//! Sourcegraph's template layer (src-cli `lib/batches/template`): the step and
//! changeset-template contexts, exposed to templates as niladic functions returning maps
//! exactly as src-cli's `ToFuncMap` does, plus rendering, condition evaluation, spec
//! validation and the partial evaluator that decides static `if:` conditions.
//!
//! File lists are shell-escaped per element with go-shellquote's `Join` before templates
//! see them (src-cli's VULN-91 fix), so they are safe to splat into `/bin/sh`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use regex::Regex;

use crate::funcs::Builtin;
use crate::node::{Arg, Node, Pipe};
use crate::parse;
use crate::shellquote;
use crate::{Functions, Template, TemplateError, Value, print};

/// `BatchChangeAttributes`: the spec's name and description.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchChangeAttributes {
    /// The batch change name.
    pub name: String,
    /// The batch change description.
    pub description: String,
}

/// The repository a workspace belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repository {
    /// Repository name, e.g. `github.com/sourcegraph/src-cli`.
    pub name: String,
    /// Branch name.
    pub branch: String,
    /// Paths of search results in this repository (unsorted, unescaped).
    pub file_matches: Vec<String>,
}

impl Repository {
    /// `SearchResultPaths`: sorted, shell-escaped, typed as `fileMatchPathList`.
    pub fn search_result_paths(&self) -> Value {
        let mut paths = self.file_matches.clone();
        paths.sort();
        Value::PathList(paths.iter().map(|path| shellquote::quote(path)).collect())
    }

    fn to_value(&self) -> Value {
        Value::map([
            ("search_result_paths", self.search_result_paths()),
            ("name", Value::from(self.name.as_str())),
            ("branch", Value::from(self.branch.as_str())),
        ])
    }
}

/// Files changed by steps (`git.Changes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Modified files.
    pub modified: Vec<String>,
    /// Added files.
    pub added: Vec<String>,
    /// Deleted files.
    pub deleted: Vec<String>,
    /// Renamed files.
    pub renamed: Vec<String>,
}

/// The result of a step (`execution.AfterStepResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepResult {
    /// Files the step changed.
    pub changed_files: Changes,
    /// Captured standard output.
    pub stdout: String,
    /// Captured standard error.
    pub stderr: String,
}

/// `StepsContext`: changes of all steps so far and the workspace path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepsContext {
    /// Changes made by all steps executed so far.
    pub changes: Changes,
    /// Workspace path relative to the repository root, no leading `/`.
    pub path: String,
}

/// Context for rendering step fields (`run`, `env`, `outputs`, `if`, ...).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepContext {
    /// Batch change attributes.
    pub batch_change: BatchChangeAttributes,
    /// Outputs of the current and previous steps (`map[string]interface{}`).
    pub outputs: BTreeMap<String, Value>,
    /// The current step's result (filled when rendering `outputs`).
    pub step: StepResult,
    /// Steps context.
    pub steps: StepsContext,
    /// The previous step's result.
    pub previous_step: StepResult,
    /// The repository.
    pub repository: Repository,
}

/// Context for rendering changeset template fields.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChangesetTemplateContext {
    /// Batch change attributes.
    pub batch_change_attributes: BatchChangeAttributes,
    /// Steps context.
    pub steps: StepsContext,
    /// Outputs defined by the steps.
    pub outputs: BTreeMap<String, Value>,
    /// The repository.
    pub repository: Repository,
}

fn escaped_list(paths: &[String]) -> Value {
    Value::StringList(paths.iter().map(|path| shellquote::quote(path)).collect())
}

fn batch_change_value(attributes: &BatchChangeAttributes) -> Value {
    Value::map([
        ("name", Value::from(attributes.name.as_str())),
        ("description", Value::from(attributes.description.as_str())),
    ])
}

fn step_result_value(result: &StepResult) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    map.insert(
        "modified_files".to_owned(),
        escaped_list(&result.changed_files.modified),
    );
    map.insert(
        "added_files".to_owned(),
        escaped_list(&result.changed_files.added),
    );
    map.insert(
        "deleted_files".to_owned(),
        escaped_list(&result.changed_files.deleted),
    );
    map.insert(
        "renamed_files".to_owned(),
        escaped_list(&result.changed_files.renamed),
    );
    map.insert("stdout".to_owned(), Value::from(result.stdout.as_str()));
    map.insert("stderr".to_owned(), Value::from(result.stderr.as_str()));
    map
}

impl StepContext {
    /// The template functions (`ToFuncMap`): helpers plus `previous_step`, `step`, `steps`,
    /// `outputs`, `repository`, `batch_change`.
    pub fn functions(&self) -> Functions {
        let mut functions = Functions::with_sourcegraph_helpers();
        self.add_functions(&mut functions);
        functions
    }

    fn add_functions(&self, functions: &mut Functions) {
        let mut steps = step_result_value(&StepResult {
            changed_files: self.steps.changes.clone(),
            ..StepResult::default()
        });
        steps.insert("path".to_owned(), Value::from(self.steps.path.as_str()));
        functions
            .add_value(
                "previous_step",
                Value::Map(step_result_value(&self.previous_step)),
            )
            .add_value("step", Value::Map(step_result_value(&self.step)))
            .add_value("steps", Value::Map(steps))
            .add_value("outputs", Value::Map(self.outputs.clone()))
            .add_value("repository", self.repository.to_value())
            .add_value("batch_change", batch_change_value(&self.batch_change));
    }
}

impl ChangesetTemplateContext {
    /// The template functions: helpers plus `repository`, `batch_change`, `outputs`,
    /// `steps` and `batch_change_link`.
    pub fn functions(&self) -> Functions {
        let mut functions = Functions::with_sourcegraph_helpers();
        self.add_functions(&mut functions);
        functions
    }

    fn add_functions(&self, functions: &mut Functions) {
        let changes = &self.steps.changes;
        let steps = Value::map([
            ("modified_files", escaped_list(&changes.modified)),
            ("added_files", escaped_list(&changes.added)),
            ("deleted_files", escaped_list(&changes.deleted)),
            ("renamed_files", escaped_list(&changes.renamed)),
            ("path", Value::from(self.steps.path.as_str())),
        ]);
        functions
            .add_value("repository", self.repository.to_value())
            .add_value(
                "batch_change",
                batch_change_value(&self.batch_change_attributes),
            )
            .add_value("outputs", Value::Map(self.outputs.clone()))
            .add_value("steps", steps)
            // Rendered later by the reconciler, so it is left as literal template text.
            .add_value("batch_change_link", Value::from("${{ batch_change_link }}"));
    }
}

/// `RenderStepTemplate`. src-cli additionally prefixes parse errors with
/// `parsing step run: `; callers that need that exact text add it.
pub fn render_step_template(
    name: &str,
    template: &str,
    context: &StepContext,
) -> Result<String, TemplateError> {
    let functions = context.functions();
    Template::parse(name, template, &functions)?.execute(&Value::Nil, &functions)
}

/// `EvalStepCondition`: empty is true, otherwise true iff the trimmed output is `true`.
pub fn eval_step_condition(condition: &str, context: &StepContext) -> Result<bool, TemplateError> {
    if condition.is_empty() {
        return Ok(true);
    }
    let output = render_step_template("step-condition", condition, context)?;
    Ok(output.trim() == "true")
}

/// `RenderChangesetTemplateField`: renders and trims surrounding whitespace.
pub fn render_changeset_template_field(
    name: &str,
    template: &str,
    context: &ChangesetTemplateContext,
) -> Result<String, TemplateError> {
    let functions = context.functions();
    let output = Template::parse(name, template, &functions)?.execute(&Value::Nil, &functions)?;
    Ok(output.trim().to_owned())
}

/// Which context a template is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextKind {
    /// Step fields (`run`, `env`, `if`, `outputs`, ...).
    Step,
    /// Changeset template fields.
    Changeset,
}

/// A template that fails against empty context values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateCheckError {
    /// Go's error message.
    pub message: String,
    /// Byte offset into the template text, when known.
    pub offset: Option<usize>,
}

/// Parses and executes one template against an empty context of `kind`, reporting the
/// first error with its offset. `outputs.*` lookups fail on an empty context, so callers
/// should only check templates that do not depend on outputs (as Sourcegraph's validator
/// strips them).
pub fn check_template(template: &str, kind: ContextKind) -> Result<(), TemplateCheckError> {
    let functions = match kind {
        ContextKind::Step => StepContext::default().functions(),
        ContextKind::Changeset => ChangesetTemplateContext::default().functions(),
    };
    let result = Template::parse("check", template, &functions)
        .and_then(|parsed| parsed.execute(&Value::Nil, &functions));
    result.map(|_| ()).map_err(|error| TemplateCheckError {
        offset: error.offset(),
        message: error.to_string(),
    })
}

fn regex(cell: &'static OnceLock<Option<Regex>>, pattern: &str) -> Option<&'static Regex> {
    cell.get_or_init(|| Regex::new(pattern).ok()).as_ref()
}

/// `ValidateBatchSpecTemplate`: dry-runs the whole raw spec text as one template with both
/// contexts' functions, after stripping `outputs.*` and `index` actions.
pub fn validate_batch_spec_template(spec: &str) -> Result<(), String> {
    static OUTPUTS: OnceLock<Option<Regex>> = OnceLock::new();
    static INDEX: OnceLock<Option<Regex>> = OnceLock::new();
    static NOT_DEFINED: OnceLock<Option<Regex>> = OnceLock::new();
    static MISSING_KEY: OnceLock<Option<Regex>> = OnceLock::new();
    let mut stripped = spec.to_owned();
    if let Some(outputs) = regex(&OUTPUTS, r"(?i)\$\{\{\s*[^}]*\s*outputs\.[^}]*\}\}") {
        stripped = outputs.replace_all(&stripped, "").into_owned();
    }
    if let Some(index) = regex(&INDEX, r"(?i)\$\{\{\s*index\s*[^}]*\}\}") {
        stripped = index.replace_all(&stripped, "").into_owned();
    }
    let mut functions = Functions::with_sourcegraph_helpers();
    StepContext::default().add_functions(&mut functions);
    ChangesetTemplateContext::default().add_functions(&mut functions);
    let parsed = match Template::parse("validateBatchSpecTemplate", &stripped, &functions) {
        Ok(parsed) => parsed,
        Err(error) => {
            let message = error.to_string();
            if let Some(captures) =
                regex(&NOT_DEFINED, r#"(?i)function "(?P<key>[^"]+)" not defined"#)
                    .and_then(|re| re.captures(&message))
            {
                return Err(format!(
                    "validating batch spec template: unknown templating variable: '{}'",
                    &captures["key"]
                ));
            }
            return Err(format!("validating batch spec template: {message}"));
        }
    };
    if let Err(error) = parsed.execute(&Value::Nil, &functions) {
        let message = error.to_string();
        if let Some(captures) = regex(
            &MISSING_KEY,
            r#"(?i)at <(?P<outer>[^>]+)>:.*for key "(?P<inner>[^"]+)""#,
        )
        .and_then(|re| re.captures(&message))
        {
            return Err(format!(
                "validating batch spec template: unknown templating variable: '{}.{}'",
                &captures["outer"], &captures["inner"]
            ));
        }
        return Err(format!("validating batch spec template: {message}"));
    }
    Ok(())
}

/// Result of [`is_static_bool`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StaticBool {
    /// The condition needs data only available during execution.
    NotStatic,
    /// The condition is decided ahead of execution.
    Static(bool),
}

/// `IsStaticBool`: partially evaluates `condition` with only the batch change and
/// repository known (src-cli `partial_eval.go`), as `SkippedStepsForRepo` does to skip
/// steps whose `if:` is statically false.
pub fn is_static_bool(condition: &str, context: &StepContext) -> Result<StaticBool, TemplateError> {
    let functions = context.functions();
    let tree = parse::parse(
        "partial-eval",
        condition,
        crate::LEFT_DELIMITER,
        crate::RIGHT_DELIMITER,
        &|name| functions.contains(name),
    )
    .map_err(|failure| TemplateError::Parse {
        message: failure.message,
        offset: failure.offset,
    })?;
    let mut text = String::new();
    for node in &tree.root {
        match node {
            Node::Text { text: chunk, .. } => text.push_str(chunk),
            Node::Action { pipe, .. } => match partial_pipe(context, pipe) {
                Some(value) => print::write_value(&mut text, &value),
                None => return Ok(StaticBool::NotStatic),
            },
            _ => return Ok(StaticBool::NotStatic),
        }
    }
    Ok(StaticBool::Static(text.trim() == "true"))
}

fn partial_pipe(context: &StepContext, pipe: &Pipe) -> Option<Value> {
    if !pipe.decl.is_empty() {
        return None;
    }
    let mut last = None;
    for command in &pipe.cmds {
        let first = command.args.first()?;
        last = Some(match first {
            Arg::Bool { .. } | Arg::Number(_) | Arg::String { .. } | Arg::Chain { .. } => {
                if command.args.len() != 1 {
                    return None;
                }
                partial_node(context, first)?
            }
            Arg::Identifier { name, .. } => partial_function(context, name, &command.args[1..])?,
            _ => return None,
        });
    }
    last
}

fn partial_node(context: &StepContext, node: &Arg) -> Option<Value> {
    match node {
        Arg::Bool { value, .. } => Some(Value::Bool(*value)),
        Arg::Number(number) => {
            let text = &number.text;
            let is_hex_int = text.len() > 2
                && text.starts_with('0')
                && matches!(text.as_bytes()[1], b'x' | b'X')
                && !text.contains(['p', 'P']);
            if number.is_complex {
                None
            } else if number.is_float
                && !is_hex_int
                && !text.starts_with('\'')
                && text.contains(['.', 'e', 'E', 'p', 'P'])
            {
                Some(Value::Float(number.float_value))
            } else if number.is_int {
                Some(Value::Int(number.int_value))
            } else {
                None
            }
        }
        Arg::String { text, .. } => Some(Value::from(text.as_str())),
        Arg::Chain { node, fields, .. } => {
            let [field] = fields.as_slice() else {
                return None;
            };
            let Arg::Identifier { name, .. } = node.as_ref() else {
                return None;
            };
            match (name.as_str(), field.as_str()) {
                ("repository", "name") => Some(Value::from(context.repository.name.as_str())),
                ("batch_change", "name") => Some(Value::from(context.batch_change.name.as_str())),
                ("batch_change", "description") => {
                    Some(Value::from(context.batch_change.description.as_str()))
                }
                _ => None,
            }
        }
        Arg::Pipe(pipe) => partial_pipe(context, pipe),
        _ => None,
    }
}

fn partial_function(context: &StepContext, name: &str, args: &[Arg]) -> Option<Value> {
    match name {
        "eq" | "ne" => {
            let [left, right] = args else { return None };
            let left = partial_node(context, left)?;
            let right = partial_node(context, right)?;
            // Go compares the two interface values: same dynamic type and equal value.
            let equal = match (&left, &right) {
                (Value::Bool(a), Value::Bool(b)) => a == b,
                (Value::Int(a), Value::Int(b)) => a == b,
                (Value::Float(a), Value::Float(b)) => a == b,
                (Value::String(a), Value::String(b)) => a == b,
                _ => false,
            };
            Some(Value::Bool(if name == "eq" { equal } else { !equal }))
        }
        "not" => {
            let [argument] = args else { return None };
            Some(Value::Bool(!partial_node(context, argument)?.is_true()))
        }
        _ => {
            let helper = Builtin::sourcegraph_helper(name)?;
            let values: Vec<Value> = args
                .iter()
                .map(|arg| partial_node(context, arg))
                .collect::<Option<_>>()?;
            partial_call(helper, &values)
        }
    }
}

/// Calls a helper the way reflect.Call would: wrong arity or argument types panic in Go,
/// which the partial evaluator treats as "not static".
fn partial_call(helper: Builtin, values: &[Value]) -> Option<Value> {
    let string = |index: usize| match values.get(index) {
        Some(Value::String(text)) => Some(text.as_str()),
        _ => None,
    };
    let all_strings = |from: usize| {
        values
            .iter()
            .skip(from)
            .all(|value| matches!(value, Value::String(_)))
    };
    match helper {
        Builtin::Split if values.len() == 2 => Some(Value::StringList(crate::funcs::split(
            string(0)?,
            string(1)?,
        ))),
        Builtin::Replace if values.len() == 3 => {
            Some(Value::from(string(0)?.replace(string(1)?, string(2)?)))
        }
        Builtin::Matches if values.len() == 2 => crate::funcs::glob_matches(string(0)?, string(1)?)
            .ok()
            .map(Value::Bool),
        Builtin::JoinIf if !values.is_empty() && all_strings(0) => {
            let elements: Vec<&str> = (1..values.len()).filter_map(string).collect();
            Some(Value::from(crate::funcs::join_if(string(0)?, &elements)))
        }
        Builtin::ShellquoteJoin => {
            let references: Vec<&Value> = values.iter().collect();
            crate::funcs::shellquote_join(&references)
                .ok()
                .map(Value::String)
        }
        Builtin::ShellquoteSplit if values.len() == 1 => {
            shellquote::split(string(0)?).ok().map(Value::StringList)
        }
        _ => None,
    }
}
