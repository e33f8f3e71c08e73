//! The pure part of running a job's steps, with src-cli's semantics (`run_steps.go`): the
//! step template context, step outputs parsed by format, the conversions between the wire's
//! step results and the template's, and the message of a failed step. No IO here.

use std::collections::BTreeMap;

use flotilla_spec::{OutputFormat, Step};
use flotilla_template::Value;
use flotilla_template::sourcegraph::{BatchChangeAttributes, Changes, Repository, StepContext, StepResult as TemplateStepResult, StepsContext};
use flotilla_wire::executor::{ChangedFiles, Job, StepResult};

/// How many trailing lines of a failed step's standard error its failure message shows.
pub const FAILURE_STDERR_LINES: usize = 20;

/// The context for rendering step `step`'s fields, as src-cli builds it: `previous_step` is
/// the result of the last step that ran (or the cached one), `steps.changes` the cumulative
/// changes so far, `outputs` everything set so far.
pub fn step_context(job: &Job, previous: Option<&StepResult>, outputs: &serde_json::Map<String, serde_json::Value>) -> StepContext {
    let previous_step = previous.map(template_step_result).unwrap_or_default();
    StepContext {
        batch_change: BatchChangeAttributes { name: job.batch_change_name.clone(), description: job.batch_change_description.clone() },
        outputs: template_outputs(outputs),
        step: TemplateStepResult::default(),
        steps: StepsContext { changes: previous_step.changed_files.clone(), path: job.workspace_path.clone() },
        previous_step,
        repository: Repository { name: job.repository_name.clone(), branch: job.branch.clone(), file_matches: job.search_result_paths.clone() },
    }
}

/// A wire step result as templates see it.
pub fn template_step_result(result: &StepResult) -> TemplateStepResult {
    TemplateStepResult { changed_files: template_changes(&result.changed_files), stdout: result.stdout.clone(), stderr: result.stderr.clone() }
}

pub fn template_changes(changes: &ChangedFiles) -> Changes {
    Changes {
        modified: changes.modified.clone(),
        added: changes.added.clone(),
        deleted: changes.deleted.clone(),
        renamed: changes.renamed.clone(),
    }
}

pub fn wire_changes(changes: flotilla_git::ChangedFiles) -> ChangedFiles {
    ChangedFiles { modified: changes.modified, added: changes.added, deleted: changes.deleted, renamed: changes.renamed }
}

/// Outputs as template values. Stored outputs keep integers only where YAML produced them
/// (JSON outputs are stored as floats), so reading them back the yaml.v3 way restores the
/// Go types exactly.
pub fn template_outputs(outputs: &serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, Value> {
    outputs.iter().map(|(name, value)| (name.clone(), Value::from_yaml_json(value.clone()))).collect()
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the output {name} is not valid {format}: {message}")]
pub struct OutputParseError {
    pub name: String,
    pub format: &'static str,
    pub message: String,
}

/// An output's rendered text parsed by its format, as src-cli does: `yaml` with yaml.v3
/// (integers stay integers), `json` with encoding/json (every number a float), `text` as is.
pub fn parse_output(name: &str, format: OutputFormat, rendered: &str) -> Result<serde_json::Value, OutputParseError> {
    match format {
        OutputFormat::Text => Ok(serde_json::Value::String(rendered.to_owned())),
        OutputFormat::Yaml => flotilla_yaml::load(rendered)
            .map(|node| node.to_json())
            .map_err(|error| OutputParseError { name: name.to_owned(), format: "YAML", message: error.to_string() }),
        OutputFormat::Json => serde_json::from_str::<serde_json::Value>(rendered)
            .map(numbers_as_floats)
            .map_err(|error| OutputParseError { name: name.to_owned(), format: "JSON", message: error.to_string() }),
    }
}

/// Go decodes every JSON number into a float64; so must stored JSON outputs be.
fn numbers_as_floats(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Number(number) => match number.as_f64().and_then(serde_json::Number::from_f64) {
            Some(float) => serde_json::Value::Number(float),
            None => serde_json::Value::Number(number),
        },
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(numbers_as_floats).collect()),
        serde_json::Value::Object(entries) => {
            serde_json::Value::Object(entries.into_iter().map(|(key, item)| (key, numbers_as_floats(item))).collect())
        }
        other => other,
    }
}

/// The message of a step that exited non-zero: which step and image, the exit code (and what
/// explains it, such as an executor's limit), the rendered command, and the tail of its
/// standard error.
pub fn step_failure_message(step_index: usize, image: &str, exit_code: i32, explanation: Option<&str>, command: &str, stderr: &str) -> String {
    let because = explanation.map(|text| format!(": {text}")).unwrap_or_default();
    let mut message = format!("step {} (run in {image}) exited with code {exit_code}{because}\n\nrun: {}\n", step_index + 1, command.trim_end());
    let lines: Vec<&str> = stderr.lines().collect();
    if !lines.is_empty() {
        let start = lines.len().saturating_sub(FAILURE_STDERR_LINES);
        if start > 0 {
            message.push_str(&format!("\nstandard error (last {FAILURE_STDERR_LINES} of {} lines):\n", lines.len()));
        } else {
            message.push_str("\nstandard error:\n");
        }
        for line in &lines[start..] {
            message.push_str("  ");
            message.push_str(line);
            message.push('\n');
        }
    }
    message
}

/// Each step's environment with templates rendered: static values are templates, bare names
/// take the job's secret of that name (missing secrets are empty, like an unset variable).
pub fn environment_sources<'a>(step: &'a Step, secrets: &'a BTreeMap<String, String>) -> impl Iterator<Item = (&'a str, EnvironmentSource<'a>)> {
    step.env.iter().map(move |variable| match &variable.value {
        Some(template) => (variable.name.as_str(), EnvironmentSource::Template(template)),
        None => (variable.name.as_str(), EnvironmentSource::Secret(secrets.get(&variable.name).map(String::as_str).unwrap_or(""))),
    })
}

/// Where one environment variable's value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvironmentSource<'a> {
    /// Written in the spec; rendered with the step context.
    Template(&'a str),
    /// A secret's value, used verbatim (never rendered: it is not the spec author's text).
    Secret(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_outputs_keep_integers_and_json_outputs_become_floats() {
        let yaml = parse_output("a", OutputFormat::Yaml, "count: 3\nratio: 0.5\nname: x\n").expect("valid yaml");
        assert_eq!(yaml, serde_json::json!({"count": 3, "ratio": 0.5, "name": "x"}));
        let json = parse_output("b", OutputFormat::Json, r#"{"count": 3, "list": [1, "x"]}"#).expect("valid json");
        assert_eq!(json.to_string(), r#"{"count":3.0,"list":[1.0,"x"]}"#);
        let outputs = serde_json::Map::from_iter([("a".to_owned(), yaml), ("b".to_owned(), json)]);
        let values = template_outputs(&outputs);
        let Some(Value::Map(a)) = values.get("a") else { panic!("a is a map: {values:?}") };
        assert_eq!(a.get("count"), Some(&Value::Int(3)));
        let Some(Value::Map(b)) = values.get("b") else { panic!("b is a map: {values:?}") };
        assert_eq!(b.get("count"), Some(&Value::Float(3.0)));
        assert_eq!(parse_output("c", OutputFormat::Text, " t \n").expect("text"), serde_json::json!(" t \n"));
        let error = parse_output("d", OutputFormat::Json, "{").expect_err("invalid json");
        assert!(error.to_string().starts_with("the output d is not valid JSON"), "{error}");
    }

    #[test]
    fn failure_message_names_step_image_code_command_and_stderr_tail() {
        let stderr: String = (1..=25).map(|line| format!("line {line}\n")).collect();
        let message = step_failure_message(1, "alpine:3", 3, None, "make it\n", &stderr);
        assert!(message.starts_with("step 2 (run in alpine:3) exited with code 3\n\nrun: make it\n"), "{message}");
        assert!(message.contains("last 20 of 25 lines"), "{message}");
        assert!(message.contains("  line 6\n") && message.contains("  line 25\n") && !message.contains("line 5\n"), "{message}");
    }
}
