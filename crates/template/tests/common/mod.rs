//! Shared by the table and differential tests: loads `cases.json` and renders one case in
//! Rust the same way `tools/template-oracle` renders it in Go.

use std::collections::BTreeMap;
use std::path::PathBuf;

use flotilla_template::sourcegraph::{
    self, BatchChangeAttributes, Changes, ChangesetTemplateContext, Repository, StaticBool,
    StepContext, StepResult, StepsContext,
};
use flotilla_template::{Functions, Template, Value};
use serde_json::Value as Json;

/// One case of the table.
#[allow(
    dead_code,
    reason = "each test binary uses a different subset of the shared fields"
)]
pub struct Case {
    pub name: String,
    pub template: String,
    pub mode: String,
    pub context: Json,
    pub expected: Option<Result<String, String>>,
    pub loose_error: bool,
    pub raw: Json,
}

pub fn cases_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("cases.json")
}

fn text(json: &Json, key: &str) -> String {
    json.get(key)
        .and_then(Json::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings(json: &Json, key: &str) -> Vec<String> {
    json.get(key)
        .and_then(Json::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Json::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

pub fn parse_result(json: &Json) -> Option<Result<String, String>> {
    if let Some(output) = json.get("output").and_then(Json::as_str) {
        return Some(Ok(output.to_owned()));
    }
    json.get("error")
        .and_then(Json::as_str)
        .map(|error| Err(error.to_owned()))
}

pub fn load_cases() -> Vec<Case> {
    let raw = std::fs::read_to_string(cases_path()).expect("cases.json is part of the repository");
    let json: Json = serde_json::from_str(&raw).expect("cases.json is valid JSON");
    json.as_array()
        .expect("cases.json is an array")
        .iter()
        .map(|case| Case {
            name: text(case, "name"),
            template: text(case, "template"),
            mode: text(case, "mode"),
            context: case.get("context").cloned().unwrap_or(Json::Null),
            expected: case.get("expected").and_then(parse_result),
            loose_error: case
                .get("loose_error")
                .and_then(Json::as_bool)
                .unwrap_or(false),
            raw: case.clone(),
        })
        .collect()
}

fn changes(json: &Json) -> Changes {
    Changes {
        modified: strings(json, "modified"),
        added: strings(json, "added"),
        deleted: strings(json, "deleted"),
        renamed: strings(json, "renamed"),
    }
}

fn step_result(json: Option<&Json>) -> StepResult {
    let json = json.cloned().unwrap_or(Json::Null);
    StepResult {
        changed_files: changes(&json),
        stdout: text(&json, "stdout"),
        stderr: text(&json, "stderr"),
    }
}

fn data_value(json: Option<&Json>, yaml_numbers: bool) -> Value {
    match json {
        None => Value::Nil,
        Some(json) if yaml_numbers => Value::from_yaml_json(json.clone()),
        Some(json) => Value::from_json(json.clone()),
    }
}

fn step_context(context: &Json) -> StepContext {
    let yaml_numbers = context
        .get("yaml_numbers")
        .and_then(Json::as_bool)
        .unwrap_or(false);
    let outputs = match data_value(context.get("outputs"), yaml_numbers) {
        Value::Map(map) => map,
        _ => BTreeMap::new(),
    };
    let batch_change = context.get("batch_change").cloned().unwrap_or(Json::Null);
    let repository = context.get("repository").cloned().unwrap_or(Json::Null);
    let steps = context.get("steps").cloned().unwrap_or(Json::Null);
    StepContext {
        batch_change: BatchChangeAttributes {
            name: text(&batch_change, "name"),
            description: text(&batch_change, "description"),
        },
        outputs,
        step: step_result(context.get("step")),
        steps: StepsContext {
            changes: changes(&steps),
            path: text(&steps, "path"),
        },
        previous_step: step_result(context.get("previous_step")),
        repository: Repository {
            name: text(&repository, "name"),
            branch: text(&repository, "branch"),
            file_matches: strings(&repository, "file_matches"),
        },
    }
}

/// Renders a case in Rust; mirrors `render` in tools/template-oracle/main.go.
pub fn run_case(case: &Case) -> Result<String, String> {
    let kind = text(&case.context, "kind");
    match kind.as_str() {
        "changeset" => {
            let step = step_context(&case.context);
            let context = ChangesetTemplateContext {
                batch_change_attributes: step.batch_change,
                steps: step.steps,
                outputs: step.outputs,
                repository: step.repository,
            };
            if case.mode == "changeset_field" {
                return sourcegraph::render_changeset_template_field(
                    &case.name,
                    &case.template,
                    &context,
                )
                .map_err(|error| error.to_string());
            }
            let functions = context.functions();
            Template::parse(&case.name, &case.template, &functions)
                .and_then(|template| template.execute(&Value::Nil, &functions))
                .map_err(|error| error.to_string())
        }
        "data" => {
            let yaml_numbers = case
                .context
                .get("yaml_numbers")
                .and_then(Json::as_bool)
                .unwrap_or(false);
            let data = data_value(case.context.get("data"), yaml_numbers);
            let mut functions = Functions::with_sourcegraph_helpers();
            functions.add_value("outputs", data.clone());
            Template::parse(&case.name, &case.template, &functions)
                .and_then(|template| template.execute(&data, &functions))
                .map_err(|error| error.to_string())
        }
        _ => {
            let context = step_context(&case.context);
            match case.mode.as_str() {
                "validate" => sourcegraph::validate_batch_spec_template(&case.template)
                    .map(|()| "ok".to_owned()),
                "static" => match sourcegraph::is_static_bool(&case.template, &context) {
                    Ok(StaticBool::NotStatic) => Ok("dynamic".to_owned()),
                    Ok(StaticBool::Static(value)) => Ok(format!("static:{value}")),
                    Err(error) => Err(error.to_string()),
                },
                "condition" => sourcegraph::eval_step_condition(&case.template, &context)
                    .map(|value| value.to_string())
                    .map_err(|error| error.to_string()),
                _ => {
                    let functions = context.functions();
                    Template::parse(&case.name, &case.template, &functions)
                        .and_then(|template| template.execute(&Value::Nil, &functions))
                        .map_err(|error| error.to_string())
                }
            }
        }
    }
}

/// Compares a Rust result with the Go one; loose cases only require both to be errors.
pub fn compare(
    case: &Case,
    rust: &Result<String, String>,
    go: &Result<String, String>,
) -> Option<String> {
    let same = match (rust, go) {
        (Err(_), Err(_)) if case.loose_error => true,
        (left, right) => left == right,
    };
    if same {
        None
    } else {
        Some(format!(
            "case {:?} template {:?}\n  rust: {:?}\n  go:   {:?}",
            case.name, case.template, rust, go
        ))
    }
}
