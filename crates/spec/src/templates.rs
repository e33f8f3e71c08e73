//! Checks the templated fields of a spec against the variables their context provides.
//!
//! Like Sourcegraph, each template is parsed and executed against an empty context with
//! `missingkey=error`, so a misspelt variable or function is an error at validation time.
//! Unlike Sourcegraph (which deletes every `${{ ... outputs.* }}` action from the raw spec
//! before checking, and so rejects a template such as `${{ if eq outputs.x "" }}...${{ else }}`
//! whose `if` it deleted), outputs are checked against the outputs the steps declare: a text
//! output is an empty string, a json or yaml output's structure is only known after the step
//! has run, so what is read from inside it is not checked; an output no step declares is an
//! error. `index` on data that is only known at run time is not checked either, as in
//! Sourcegraph.

use std::collections::BTreeMap;

use flotilla_template::Value;
use flotilla_template::sourcegraph::{ChangesetTemplateContext, StepContext, render_changeset_template_field, render_step_template};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TemplateContext {
    Step,
    Changeset,
}

pub(crate) struct TemplateProblem {
    pub message: String,
    /// Byte offset in the template text.
    pub offset: Option<usize>,
    pub width: usize,
}

/// The outputs the spec's steps declare, by name, and whether their value is structured
/// (json/yaml, only known at run time).
#[derive(Clone, Debug, Default)]
pub(crate) struct DeclaredOutputs {
    pub outputs: BTreeMap<String, bool>,
}

impl DeclaredOutputs {
    fn placeholder_values(&self) -> BTreeMap<String, Value> {
        self.outputs
            .iter()
            .map(|(name, structured)| {
                let value = if *structured { Value::Map(BTreeMap::new()) } else { Value::from("") };
                (name.clone(), value)
            })
            .collect()
    }
}

pub(crate) fn check(text: &str, context: TemplateContext, declared: &DeclaredOutputs) -> Result<(), TemplateProblem> {
    if !text.contains(flotilla_template::LEFT_DELIMITER) {
        return Ok(());
    }
    let outputs = declared.placeholder_values();
    let result = match context {
        TemplateContext::Step => {
            let step_context = StepContext { outputs, ..StepContext::default() };
            render_step_template("spec", text, &step_context).map(|_| ())
        }
        TemplateContext::Changeset => {
            let changeset_context = ChangesetTemplateContext { outputs, ..ChangesetTemplateContext::default() };
            render_changeset_template_field("spec", text, &changeset_context).map(|_| ())
        }
    };
    let Err(error) = result else {
        return Ok(());
    };
    let message = error.to_string();
    // Go names only the head of a field chain (`at <outputs>: map has no entry for key "x"`),
    // so read the whole chain from the template text at the error's offset.
    let chain = error.offset().map(|offset| chain_at(text, offset)).filter(|chain| !chain.is_empty());
    let node = chain.or_else(|| failing_node(&message));
    if let Some(node) = node
        && is_runtime_dependent(node, declared)
    {
        return Ok(());
    }
    let width = node.map_or(1, |node| node.chars().count());
    // A parse error about an unknown function points near the action; point at the name.
    let offset = match undefined_function(&message) {
        Some(name) => {
            let from = error.offset().unwrap_or(0).min(text.len());
            let search_start = text[..from].rfind(flotilla_template::LEFT_DELIMITER).unwrap_or(0);
            text[search_start..].find(name).map(|found| search_start + found).or(error.offset())
        }
        None => error.offset(),
    };
    let width = undefined_function(&message).map_or(width, |name| name.chars().count());
    Err(TemplateProblem { message: friendly_message(&message, node, declared, context), offset, width })
}

fn undefined_function(message: &str) -> Option<&str> {
    let start = message.find("function \"")? + "function \"".len();
    let end = message[start..].find("\" not defined")? + start;
    Some(&message[start..end])
}

/// The identifier or field chain (`outputs.a.b`, `index`) starting at a byte offset.
fn chain_at(text: &str, offset: usize) -> &str {
    let Some(rest) = text.get(offset..) else {
        return "";
    };
    let end = rest
        .find(|character: char| !(character.is_alphanumeric() || character == '_' || character == '.' || character == '$'))
        .unwrap_or(rest.len());
    rest[..end].trim_end_matches('.')
}

/// The expression Go's execution error names: `... executing "spec" at <repository.nme>: ...`.
fn failing_node(message: &str) -> Option<&str> {
    let start = message.find(" at <")? + " at <".len();
    let end = message[start..].find(">: ")? + start;
    Some(&message[start..end])
}

/// Whether a failure depends on data only known when steps run: reading inside a structured
/// output, or `index`/`slice` over run-time data.
fn is_runtime_dependent(node: &str, declared: &DeclaredOutputs) -> bool {
    if node == "index" || node == "slice" || node.starts_with("index ") || node.starts_with("slice ") {
        return true;
    }
    let Some(path) = node.strip_prefix("outputs.") else {
        return false;
    };
    let name = path.split('.').next().unwrap_or(path);
    declared.outputs.get(name).copied().unwrap_or(false)
}

/// Go's message without the `template: spec:L:C:` prefix (the diagnostic has the position),
/// with a plainer explanation for the common cases.
fn friendly_message(message: &str, node: Option<&str>, declared: &DeclaredOutputs, context: TemplateContext) -> String {
    let detail = message
        .strip_prefix("template: spec:")
        .map(|rest| {
            // Skip `L:C: ` or `L: `.
            let mut parts = rest.splitn(3, ':');
            let _line = parts.next();
            match (parts.next(), parts.next()) {
                (Some(column), Some(tail)) if column.chars().all(|character| character.is_ascii_digit()) => tail.trim_start().to_owned(),
                (Some(tail), None) => tail.trim_start().to_owned(),
                (Some(first), Some(tail)) => format!("{}:{}", first.trim_start(), tail),
                _ => rest.to_owned(),
            }
        })
        .unwrap_or_else(|| message.to_owned());
    if let Some(name) = detail.strip_prefix("function \"").and_then(|rest| rest.split('"').next()) {
        let available = match context {
            TemplateContext::Step => "batch_change, repository, previous_step, step, steps, outputs",
            TemplateContext::Changeset => "batch_change, repository, steps, outputs, batch_change_link",
        };
        return format!("unknown template variable or function `{name}`; this field can use {available} and the template functions");
    }
    if let Some(node) = node {
        if let Some(output) = node.strip_prefix("outputs.") {
            let name = output.split('.').next().unwrap_or(output);
            if !declared.outputs.contains_key(name) {
                let known: Vec<&str> = declared.outputs.keys().map(String::as_str).collect();
                let known = if known.is_empty() { "no step declares outputs".to_owned() } else { format!("the steps declare: {}", known.join(", ")) };
                return format!("unknown output `{name}` ({known})");
            }
        }
        if detail.contains("map has no entry for key") {
            return format!("unknown template variable `{node}`");
        }
    }
    format!("template error: {}", detail.split_once("executing \"spec\" at ").map_or(detail.as_str(), |(_, rest)| rest))
}
