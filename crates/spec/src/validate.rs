//! The batch spec schema and semantic rules, checked over a positioned YAML tree.
//!
//! This is a hand-written equivalent of Sourcegraph's JSON schema (`batch_spec.schema.json`)
//! plus the semantic checks of `lib/batches/batch_spec.go`. Hand-written rather than a
//! generic JSON-schema run because every message must name the field, say what was expected
//! and point at the line and column, and a generic `oneOf` failure can do none of that.
//! The walk never stops at the first problem: every field is checked and every problem kept.

use flotilla_yaml::{Node, Position, ScalarStyle, Value};

use crate::diagnostic::Diagnostic;
use crate::model::{
    BatchSpec, ChangesetTemplate, CommitAuthor, CommitTemplate, EnvironmentVariable, ImportChangeset, Mount, OnEntry,
    Output, OutputFormat, Step, TransformChanges, TransformGroup, WorkspaceConfiguration,
};
use crate::published::{Published, PublishedRule, PublishedValue};
use crate::templates::{self, DeclaredOutputs, TemplateContext};

/// Characters Docker's `--mount` argument parser (Go's encoding/csv) cannot take in a path.
const INVALID_MOUNT_CHARACTERS: &[char] = &[',', '"', '\n', '\r'];

const TOP_LEVEL_FIELDS: &[&str] = &[
    "version",
    "name",
    "description",
    "on",
    "workspaces",
    "steps",
    "transformChanges",
    "importChangesets",
    "changesetTemplate",
    "executor",
];
const STEP_FIELDS: &[&str] = &["run", "container", "env", "files", "outputs", "if", "mount", "network"];
const VERSION_3_STEP_FIELDS: &[&str] = &["image", "codingAgent", "buildImage"];

pub(crate) struct Checker<'source> {
    source_lines: Vec<&'source str>,
    pub(crate) diagnostics: Vec<Diagnostic>,
    /// Outputs the steps declare, for checking `outputs.*` in templates.
    declared_outputs: DeclaredOutputs,
}

impl<'source> Checker<'source> {
    pub(crate) fn new(source: &'source str) -> Checker<'source> {
        Checker { source_lines: crate::diagnostic::source_lines(source), diagnostics: Vec::new(), declared_outputs: DeclaredOutputs::default() }
    }

    fn error(&mut self, path: &str, node: &Node, message: impl Into<String>) {
        let width = node_width(node);
        self.diagnostics.push(Diagnostic::error(path, node.span.start, width, message));
    }

    fn error_at(&mut self, path: &str, position: Position, width: usize, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::error(path, position, width, message));
    }

    fn warning(&mut self, path: &str, node: &Node, message: impl Into<String>) {
        let width = node_width(node);
        self.diagnostics.push(Diagnostic::warning(path, node.span.start, width, message));
    }

    /// The entries of a mapping node, after reporting keys outside `allowed`.
    fn mapping<'node>(
        &mut self,
        node: &'node Node,
        path: &str,
        what: &str,
        allowed: &[&str],
    ) -> Option<&'node [(Node, Node)]> {
        let Some(entries) = node.as_mapping() else {
            self.error(path, node, format!("expected {what} (a mapping), found {}", describe(node)));
            return None;
        };
        for (key, _) in entries {
            let name = key.key_text();
            if key.as_str().is_none() || !allowed.contains(&name.as_str()) {
                self.error_at(
                    path,
                    key.span.start,
                    name.chars().count(),
                    format!("unknown field `{name}`; expected one of: {}", displayed_fields(allowed)),
                );
            }
        }
        Some(entries)
    }

    fn required<'node>(&mut self, parent: &'node Node, path: &str, key: &str, what: &str) -> Option<&'node Node> {
        let found = parent.get(key);
        if found.is_none() {
            self.error(path, parent, format!("missing required field `{key}` ({what})"));
        }
        found
    }

    fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::String { text, .. } => Some(text.clone()),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                self.error(
                    path,
                    node,
                    format!("expected a string, found {}; put it in quotes to use it as text", describe(node)),
                );
                None
            }
            _ => {
                self.error(path, node, format!("expected a string, found {}", describe(node)));
                None
            }
        }
    }

    fn optional_string(&mut self, parent: &Node, key: &str, path: &str) -> Option<String> {
        parent.get(key).and_then(|node| self.string(node, &join_path(path, key)))
    }

    fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.value {
            Value::Bool(flag) => Some(flag),
            _ => {
                self.error(path, node, format!("expected true or false, found {}", describe(node)));
                None
            }
        }
    }

    /// A list, where `null` (an empty value) is accepted as empty, as the schema allows.
    fn list<'node>(&mut self, node: &'node Node, path: &str, what: &str) -> &'node [Node] {
        match &node.value {
            Value::Sequence(items) => items,
            Value::Null => &[],
            _ => {
                self.error(path, node, format!("expected a list of {what}, found {}", describe(node)));
                &[]
            }
        }
    }

    /// Checks a templated field against the variables of its context, reporting template
    /// errors at their position inside the field's text.
    fn template(&mut self, node: &Node, path: &str, text: &str, context: TemplateContext) {
        if let Err(problem) = templates::check(text, context, &self.declared_outputs) {
            let position = match problem.offset {
                Some(offset) => self.position_in_scalar(node, text, offset),
                None => node.span.start,
            };
            self.error_at(path, position, problem.width.max(1), problem.message);
        }
    }

    /// Maps a byte offset inside a scalar's value back to a source position.
    ///
    /// Block scalars (`|`, `>`) lose their indentation and quoted scalars their quotes, so the
    /// mapping follows the line structure; when it cannot be exact it stays on the right line.
    fn position_in_scalar(&self, node: &Node, text: &str, byte_offset: usize) -> Position {
        let before = &text[..byte_offset.min(text.len())];
        let value_line = before.matches('\n').count();
        let column_in_line = before.rsplit('\n').next().map_or(0, |line| line.chars().count());
        let style = match &node.value {
            Value::String { style, .. } => *style,
            _ => ScalarStyle::Plain,
        };
        let start = node.span.start;
        let (line, column) = match style {
            ScalarStyle::Literal | ScalarStyle::Folded => {
                // The node may start at the `|`/`>` indicator or at its first content line.
                let indicator_line = self
                    .source_lines
                    .get(start.line.wrapping_sub(1))
                    .is_some_and(|text| ends_with_block_indicator(text));
                let line = start.line + usize::from(indicator_line) + value_line;
                let indent = self.indentation_of(line);
                (line, indent + column_in_line + 1)
            }
            ScalarStyle::Plain | ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
                let quote = usize::from(style != ScalarStyle::Plain);
                if value_line == 0 {
                    (start.line, start.column + quote + column_in_line)
                } else {
                    let line = start.line + value_line;
                    (line, self.indentation_of(line) + column_in_line + 1)
                }
            }
        };
        Position { line, column, char_offset: start.char_offset }
    }

    fn indentation_of(&self, line: usize) -> usize {
        self.source_lines
            .get(line.wrapping_sub(1))
            .map_or(0, |text| text.chars().take_while(|character| *character == ' ').count())
    }
}

/// Whether a source line ends with a block scalar indicator (`|`, `>-`, `|+2`, ...), ignoring
/// a trailing comment.
fn ends_with_block_indicator(line: &str) -> bool {
    let without_comment = line.split(" #").next().unwrap_or(line).trim_end();
    let last_word = without_comment.rsplit(' ').next().unwrap_or(without_comment);
    last_word.starts_with(['|', '>']) && last_word[1..].chars().all(|character| matches!(character, '-' | '+' | '1'..='9'))
}

/// Validates the whole document and builds the typed spec when there are no errors.
pub(crate) fn check_batch_spec(checker: &mut Checker<'_>, root: &Node) -> Option<BatchSpec> {
    if root.is_null() {
        checker.error("", root, "the batch spec is empty; it needs at least a `name` (run `flotilla batch new` for a starter spec)");
        return None;
    }
    let entries = checker.mapping(root, "", "a batch spec", &with_version_3_hint(TOP_LEVEL_FIELDS))?;
    let _ = entries;

    let version = check_version(checker, root)?;
    checker.declared_outputs = declared_outputs(root);
    if let Some(hooks) = root.get("changesetHooks") {
        checker.error(
            "changesetHooks",
            hooks,
            "`changesetHooks` belongs to version 3 batch specs (agentic batch changes), which Flotilla does not support yet",
        );
    }

    let name = match checker.required(root, "", "name", "the batch change's name") {
        Some(node) => checker.string(node, "name").and_then(|name| {
            if is_valid_name(&name) {
                Some(name)
            } else {
                checker.error(
                    "name",
                    node,
                    "The batch change name can only contain word characters, dots and dashes. No whitespace or newlines allowed.",
                );
                None
            }
        }),
        None => None,
    };
    let description = checker.optional_string(root, "description", "").unwrap_or_default();
    let on = root.get("on").map(|node| check_on(checker, node)).unwrap_or_default();
    let workspaces = root.get("workspaces").map(|node| check_workspaces(checker, node)).unwrap_or_default();
    let steps = root.get("steps").map(|node| check_steps(checker, node)).unwrap_or_default();
    let transform_changes = root.get("transformChanges").and_then(|node| check_transform_changes(checker, node));
    let import_changesets = root.get("importChangesets").map(|node| check_imports(checker, node)).unwrap_or_default();
    let changeset_template = match root.get("changesetTemplate") {
        Some(node) => check_changeset_template(checker, node),
        None => {
            if let Some(steps_node) = root.get("steps").filter(|node| !node.as_sequence().unwrap_or(&[]).is_empty()) {
                checker.error(
                    "changesetTemplate",
                    steps_node,
                    "batch spec includes steps but no changesetTemplate; add one to say how the changes become changesets",
                );
            }
            None
        }
    };

    let executor = root.get("executor").map(|node| check_executor(checker, node)).unwrap_or_default();

    let has_errors = checker.diagnostics.iter().any(|diagnostic| diagnostic.severity == crate::Severity::Error);
    if has_errors {
        return None;
    }
    Some(BatchSpec {
        version,
        name: name?,
        description,
        on,
        workspaces,
        steps,
        transform_changes,
        import_changesets,
        changeset_template,
        executor,
    })
}

/// `executor: {labels: {name: value}}`: label names and values are plain words so they can
/// form the queue's routing key (`name=value,...`).
fn check_executor(checker: &mut Checker<'_>, node: &Node) -> crate::model::ExecutorRequirements {
    let mut requirements = crate::model::ExecutorRequirements::default();
    if checker.mapping(node, "executor", "executor requirements", &["labels"]).is_none() {
        return requirements;
    }
    let Some(labels) = node.get("labels") else {
        return requirements;
    };
    let Some(entries) = labels.as_mapping() else {
        checker.error("executor.labels", labels, format!("expected a mapping of label: value, found {}", describe(labels)));
        return requirements;
    };
    let plain = |text: &str| !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'/'));
    for (key, value) in entries {
        let name = key.key_text();
        let path = format!("executor.labels.{name}");
        let text = match &value.value {
            Value::String { text, .. } => text.clone(),
            Value::Bool(flag) => flag.to_string(),
            Value::Int(number) => number.to_string(),
            _ => {
                checker.error(&path, value, format!("expected a label value, found {}", describe(value)));
                continue;
            }
        };
        if !plain(&name) || !plain(&text) {
            checker.error(&path, key, "label names and values are letters, digits, `-`, `_`, `.` and `/`");
            continue;
        }
        requirements.labels.insert(name, text);
    }
    requirements
}

/// Every output any step declares, and whether it is structured (json or yaml).
fn declared_outputs(root: &Node) -> DeclaredOutputs {
    let mut declared = DeclaredOutputs::default();
    let steps = root.get("steps").and_then(Node::as_sequence).unwrap_or(&[]);
    for step in steps {
        let outputs = step.get("outputs").and_then(Node::as_mapping).unwrap_or(&[]);
        for (name, definition) in outputs {
            let structured = matches!(definition.get("format").and_then(Node::as_str), Some("json" | "yaml"));
            declared.outputs.insert(name.key_text(), structured);
        }
    }
    declared
}

fn with_version_3_hint(fields: &[&'static str]) -> Vec<&'static str> {
    // `changesetHooks` gets its own, clearer message; don't also call it unknown.
    let mut allowed = fields.to_vec();
    allowed.push("changesetHooks");
    allowed
}

fn check_version(checker: &mut Checker<'_>, root: &Node) -> Option<u8> {
    let Some(node) = root.get("version") else {
        return Some(1);
    };
    let number = match node.value {
        Value::Int(number) => Some(number as f64),
        Value::Float(number) => Some(number),
        _ => None,
    };
    match number {
        Some(1.0) => Some(1),
        Some(2.0) => Some(2),
        Some(3.0) => {
            checker.error(
                "version",
                node,
                "version 3 batch specs (agentic batch changes: codingAgent and buildImage steps, image, changesetHooks) are not supported yet; use version 1 or 2",
            );
            None
        }
        _ => {
            checker.error("version", node, format!("expected 1, 2 or 3, found {}", describe(node)));
            None
        }
    }
}

/// Go's `^[\w.-]+$` with ASCII `\w`.
fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}

fn check_on(checker: &mut Checker<'_>, node: &Node) -> Vec<OnEntry> {
    let mut entries = Vec::new();
    for (index, item) in checker.list(node, "on", "repository queries or repositories").iter().enumerate() {
        let path = format!("on[{index}]");
        let has_query = item.get("repositoriesMatchingQuery").is_some();
        let has_repository = item.get("repository").is_some();
        if item.as_mapping().is_none() {
            checker.error(
                &path,
                item,
                format!(
                    "expected a mapping with `repositoriesMatchingQuery` or `repository`, found {}",
                    describe(item)
                ),
            );
            continue;
        }
        if has_query && has_repository {
            checker.error(&path, item, "an `on` entry has either `repositoriesMatchingQuery` or `repository`, not both");
            continue;
        }
        if has_query {
            if checker.mapping(item, &path, "a query entry", &["repositoriesMatchingQuery"]).is_none() {
                continue;
            }
            if let Some(query) = checker.optional_string(item, "repositoriesMatchingQuery", &path) {
                entries.push(OnEntry::Query { repositories_matching_query: query });
            }
        } else if has_repository {
            if checker.mapping(item, &path, "a repository entry", &["repository", "branch", "branches"]).is_none() {
                continue;
            }
            let repository = checker.optional_string(item, "repository", &path);
            let branch = checker.optional_string(item, "branch", &path);
            let branches = item.get("branches").map(|list| {
                let list_path = join_path(&path, "branches");
                let items = checker.list(list, &list_path, "branch names");
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(branch_index, branch)| checker.string(branch, &format!("{list_path}[{branch_index}]")))
                    .collect::<Vec<_>>()
            });
            if item.get("branch").is_some() && item.get("branches").is_some() {
                checker.error(&path, item, "both branch and branches specified; use `branch` for one, `branches` for several");
                continue;
            }
            if let Some(repository) = repository {
                let branches = match (branch, branches) {
                    (Some(branch), _) => vec![branch],
                    (None, Some(branches)) => branches,
                    (None, None) => Vec::new(),
                };
                entries.push(OnEntry::Repository { repository, branches });
            }
        } else {
            checker.error(&path, item, "expected `repositoriesMatchingQuery: <search query>` or `repository: <name>`");
        }
    }
    entries
}

fn check_workspaces(checker: &mut Checker<'_>, node: &Node) -> Vec<WorkspaceConfiguration> {
    let mut configurations = Vec::new();
    for (index, item) in checker.list(node, "workspaces", "workspace configurations").iter().enumerate() {
        let path = format!("workspaces[{index}]");
        if checker.mapping(item, &path, "a workspace configuration", &["rootAtLocationOf", "in", "onlyFetchWorkspace"]).is_none() {
            continue;
        }
        let root = checker
            .required(item, &path, "rootAtLocationOf", "the file name that marks a workspace's root, e.g. package.json")
            .and_then(|node| checker.string(node, &join_path(&path, "rootAtLocationOf")));
        let in_repositories = match item.get("in") {
            Some(glob_node) => {
                let glob_path = join_path(&path, "in");
                let glob = checker.string(glob_node, &glob_path);
                if let Some(glob) = &glob
                    && let Err(problem) = crate::glob::validate(glob)
                {
                    checker.error(&glob_path, glob_node, format!("invalid glob: {problem}"));
                }
                glob
            }
            None => Some(String::new()),
        };
        let only_fetch_workspace = match item.get("onlyFetchWorkspace") {
            Some(flag) => checker.boolean(flag, &join_path(&path, "onlyFetchWorkspace")),
            None => Some(false),
        };
        if let (Some(root_at_location_of), Some(in_repositories), Some(only_fetch_workspace)) =
            (root, in_repositories, only_fetch_workspace)
        {
            configurations.push(WorkspaceConfiguration { root_at_location_of, in_repositories, only_fetch_workspace });
        }
    }
    configurations
}

fn check_steps(checker: &mut Checker<'_>, node: &Node) -> Vec<Step> {
    let mut steps = Vec::new();
    for (index, item) in checker.list(node, "steps", "steps").iter().enumerate() {
        let path = format!("steps[{index}]");
        let mut allowed = STEP_FIELDS.to_vec();
        allowed.extend_from_slice(VERSION_3_STEP_FIELDS);
        if checker.mapping(item, &path, "a step", &allowed).is_none() {
            continue;
        }
        for field in VERSION_3_STEP_FIELDS {
            if let Some(found) = item.get(field) {
                let hint = if *field == "image" { "; use `container`" } else { "" };
                checker.error(
                    &join_path(&path, field),
                    found,
                    format!("`{field}` belongs to version 3 batch specs, which Flotilla does not support yet{hint}"),
                );
            }
        }
        let run = checker
            .required(item, &path, "run", "the shell script to run")
            .and_then(|run_node| {
                let run_path = join_path(&path, "run");
                let run = checker.string(run_node, &run_path)?;
                checker.template(run_node, &run_path, &run, TemplateContext::Step);
                Some(run)
            });
        let container = checker
            .required(item, &path, "container", "the container image to run it in, e.g. alpine:3")
            .and_then(|container_node| {
                let container_path = join_path(&path, "container");
                let container = checker.string(container_node, &container_path)?;
                if container.trim().is_empty() {
                    checker.error(&container_path, container_node, "the container image is empty; name an image such as alpine:3");
                    return None;
                }
                checker.template(container_node, &container_path, &container, TemplateContext::Step);
                Some(container)
            });
        let env = item.get("env").map(|env| check_env(checker, env, &join_path(&path, "env"))).unwrap_or_default();
        let files = item.get("files").map(|files| check_files(checker, files, &join_path(&path, "files"), index)).unwrap_or_default();
        let outputs = item.get("outputs").map(|outputs| check_outputs(checker, outputs, &join_path(&path, "outputs"))).unwrap_or_default();
        let if_condition = match item.get("if") {
            None => String::new(),
            Some(condition) => match &condition.value {
                Value::Null => String::new(),
                Value::Bool(true) => "true".to_owned(),
                Value::Bool(false) => "false".to_owned(),
                Value::String { text, .. } => {
                    checker.template(condition, &join_path(&path, "if"), text, TemplateContext::Step);
                    text.clone()
                }
                _ => {
                    checker.error(
                        &join_path(&path, "if"),
                        condition,
                        format!("expected true, false or a template such as ${{{{ eq repository.name \"x\" }}}}, found {}", describe(condition)),
                    );
                    String::new()
                }
            },
        };
        let mount = item.get("mount").map(|mount| check_mounts(checker, mount, &join_path(&path, "mount"), index)).unwrap_or_default();
        // Flotilla's extension: the step's container gets a network (none otherwise).
        let network = item.get("network").and_then(|node| checker.boolean(node, &join_path(&path, "network"))).unwrap_or(false);
        if let (Some(run), Some(container)) = (run, container) {
            steps.push(Step { run, container, env, files, outputs, if_condition, mount, network });
        }
    }
    steps
}

fn check_env(checker: &mut Checker<'_>, node: &Node, path: &str) -> Vec<EnvironmentVariable> {
    let mut variables = Vec::new();
    match &node.value {
        Value::Null => {}
        Value::Mapping(entries) => {
            for (key, value) in entries {
                let name = key.key_text();
                let value_path = join_path(path, &name);
                if let Some(text) = checker.string(value, &value_path) {
                    checker.template(value, &value_path, &text, TemplateContext::Step);
                    variables.push(EnvironmentVariable { name, value: Some(text) });
                }
            }
        }
        Value::Sequence(items) => {
            for (index, item) in items.iter().enumerate() {
                let item_path = format!("{path}[{index}]");
                match &item.value {
                    Value::String { text, .. } => variables.push(EnvironmentVariable { name: text.clone(), value: None }),
                    Value::Mapping(entries) if entries.len() == 1 => {
                        let (key, value) = &entries[0];
                        let name = key.key_text();
                        let value_path = join_path(&item_path, &name);
                        if let Some(text) = checker.string(value, &value_path) {
                            checker.template(value, &value_path, &text, TemplateContext::Step);
                            variables.push(EnvironmentVariable { name, value: Some(text) });
                        }
                    }
                    _ => checker.error(
                        &item_path,
                        item,
                        format!(
                            "expected a variable name (taken from the environment or a secret) or a mapping with exactly one `NAME: value`, found {}",
                            describe(item)
                        ),
                    ),
                }
            }
        }
        _ => checker.error(path, node, format!("expected a mapping of NAME: value or a list, found {}", describe(node))),
    }
    variables
}

fn check_files(checker: &mut Checker<'_>, node: &Node, path: &str, step_index: usize) -> Vec<(String, String)> {
    let mut files = Vec::new();
    if node.is_null() {
        return files;
    }
    let Some(entries) = node.as_mapping() else {
        checker.error(path, node, format!("expected a mapping of container path: content, found {}", describe(node)));
        return files;
    };
    for (key, value) in entries {
        let target = key.key_text();
        if target.contains(INVALID_MOUNT_CHARACTERS) {
            checker.error_at(
                path,
                key.span.start,
                target.chars().count(),
                format!("step {} files target path contains invalid characters (commas, quotes and newlines cannot be mounted)", step_index + 1),
            );
        }
        if target.contains(':') || !target.starts_with('/') {
            checker.error_at(
                path,
                key.span.start,
                target.chars().count(),
                format!("step {} files target `{target}` must be an absolute path in the container, without `:`", step_index + 1),
            );
        }
        let value_path = join_path(path, &target);
        if let Some(content) = checker.string(value, &value_path) {
            checker.template(value, &value_path, &content, TemplateContext::Step);
            files.push((target, content));
        }
    }
    files
}

fn check_outputs(checker: &mut Checker<'_>, node: &Node, path: &str) -> Vec<(String, Output)> {
    let mut outputs = Vec::new();
    if node.is_null() {
        return outputs;
    }
    let Some(entries) = node.as_mapping() else {
        checker.error(path, node, format!("expected a mapping of output name: {{value, format}}, found {}", describe(node)));
        return outputs;
    };
    for (key, definition) in entries {
        let name = key.key_text();
        let output_path = join_path(path, &name);
        let Some(fields) = definition.as_mapping() else {
            checker.error(&output_path, definition, format!("expected a mapping with `value` and optional `format`, found {}", describe(definition)));
            continue;
        };
        for (field, _) in fields {
            let field_name = field.key_text();
            if field_name != "value" && field_name != "format" {
                // Sourcegraph's schema allows extra keys here and ignores them; say so.
                checker.warning(&output_path, field, format!("`{field_name}` is ignored; an output has `value` and `format`"));
            }
        }
        let value = checker.required(definition, &output_path, "value", "a template for the output's value").and_then(|value_node| {
            let value_path = join_path(&output_path, "value");
            let text = checker.string(value_node, &value_path)?;
            checker.template(value_node, &value_path, &text, TemplateContext::Step);
            Some(text)
        });
        let format = match definition.get("format") {
            None => Some(OutputFormat::Text),
            Some(format_node) => match format_node.as_str() {
                Some("text") => Some(OutputFormat::Text),
                Some("json") => Some(OutputFormat::Json),
                Some("yaml") => Some(OutputFormat::Yaml),
                _ => {
                    checker.error(&join_path(&output_path, "format"), format_node, format!("expected text, json or yaml, found {}", describe(format_node)));
                    None
                }
            },
        };
        if let (Some(value), Some(format)) = (value, format) {
            outputs.push((name, Output { value, format }));
        }
    }
    outputs
}

fn check_mounts(checker: &mut Checker<'_>, node: &Node, path: &str, step_index: usize) -> Vec<Mount> {
    let mut mounts = Vec::new();
    for (index, item) in checker.list(node, path, "mounts").iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        if checker.mapping(item, &item_path, "a mount", &["path", "mountpoint"]).is_none() {
            continue;
        }
        let source = checker
            .required(item, &item_path, "path", "a file or folder next to the batch spec")
            .and_then(|source| checker.string(source, &join_path(&item_path, "path")).map(|text| (text, source)));
        let mountpoint = checker
            .required(item, &item_path, "mountpoint", "where it appears in the container")
            .and_then(|target| checker.string(target, &join_path(&item_path, "mountpoint")).map(|text| (text, target)));
        if let Some((text, source_node)) = &source {
            let field_path = join_path(&item_path, "path");
            if text.contains(INVALID_MOUNT_CHARACTERS) {
                checker.error(&field_path, source_node, format!("step {} mount path contains invalid characters (commas, quotes and newlines cannot be mounted)", step_index + 1));
            }
            if escapes_directory(text) {
                checker.error(&field_path, source_node, "the mount path must be inside the batch spec's directory (a relative path without `..` that leaves it)");
            }
        }
        if let Some((text, target_node)) = &mountpoint
            && (text.contains(':') || !text.starts_with('/'))
        {
            checker.error(&join_path(&item_path, "mountpoint"), target_node, format!("step {} mount mountpoint `{text}` must be an absolute path in the container, without `:`", step_index + 1));
        }
        if let Some((text, target_node)) = &mountpoint
            && text.contains(INVALID_MOUNT_CHARACTERS)
        {
            checker.error(&join_path(&item_path, "mountpoint"), target_node, format!("step {} mount mountpoint contains invalid characters (commas, quotes and newlines cannot be mounted)", step_index + 1));
        }
        if let (Some((path, _)), Some((mountpoint, _))) = (source, mountpoint) {
            mounts.push(Mount { path, mountpoint });
        }
    }
    mounts
}

/// Whether a relative path leaves the directory it is relative to (or is absolute).
fn escapes_directory(path: &str) -> bool {
    if path.starts_with('/') || path.starts_with('\\') {
        return true;
    }
    let mut depth: i64 = 0;
    for part in path.split(['/', '\\']) {
        match part {
            "" | "." => {}
            ".." => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn check_transform_changes(checker: &mut Checker<'_>, node: &Node) -> Option<TransformChanges> {
    if node.is_null() {
        return None;
    }
    checker.mapping(node, "transformChanges", "transformChanges", &["group"])?;
    let mut groups: Vec<TransformGroup> = Vec::new();
    if let Some(group_node) = node.get("group") {
        for (index, item) in checker.list(group_node, "transformChanges.group", "groups").iter().enumerate() {
            let path = format!("transformChanges.group[{index}]");
            if checker.mapping(item, &path, "a group", &["directory", "branch", "repository"]).is_none() {
                continue;
            }
            let directory = non_empty_string(checker, item, &path, "directory", "the directory whose changes form this group");
            let branch = non_empty_string(checker, item, &path, "branch", "the branch for this group's changeset");
            let repository = checker.optional_string(item, "repository", &path);
            if let (Some(directory), Some(branch)) = (directory, branch) {
                let duplicate = groups.iter().any(|existing| {
                    existing.branch == branch
                        && (existing.repository.is_none() || repository.is_none() || existing.repository == repository)
                });
                if duplicate {
                    checker.error(&join_path(&path, "branch"), item.get("branch").unwrap_or(item), format!("branch `{branch}` is used by two groups; each group needs its own branch"));
                }
                groups.push(TransformGroup { directory, branch, repository });
            }
        }
    }
    Some(TransformChanges { group: groups })
}

fn non_empty_string(checker: &mut Checker<'_>, parent: &Node, path: &str, key: &str, what: &str) -> Option<String> {
    let node = checker.required(parent, path, key, what)?;
    let field_path = join_path(path, key);
    let text = checker.string(node, &field_path)?;
    if text.is_empty() {
        checker.error(&field_path, node, format!("must not be empty ({what})"));
        return None;
    }
    Some(text)
}

fn check_imports(checker: &mut Checker<'_>, node: &Node) -> Vec<ImportChangeset> {
    let mut imports = Vec::new();
    for (index, item) in checker.list(node, "importChangesets", "changesets to import").iter().enumerate() {
        let path = format!("importChangesets[{index}]");
        if checker.mapping(item, &path, "an import", &["repository", "externalIDs"]).is_none() {
            continue;
        }
        let repository = checker
            .required(item, &path, "repository", "the repository's name")
            .and_then(|repository| checker.string(repository, &join_path(&path, "repository")));
        let ids_path = join_path(&path, "externalIDs");
        let Some(ids_node) = checker.required(item, &path, "externalIDs", "the pull request numbers to track") else {
            continue;
        };
        let mut external_ids: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (id_index, id) in checker.list(ids_node, &ids_path, "pull request numbers").iter().enumerate() {
            let id_path = format!("{ids_path}[{id_index}]");
            let text = match &id.value {
                Value::Int(number) => number.to_string(),
                Value::String { text, .. } => text.clone(),
                _ => {
                    checker.error(&id_path, id, format!("expected a pull request number or id, found {}", describe(id)));
                    continue;
                }
            };
            if !seen.insert(text.clone()) {
                checker.error(&id_path, id, format!("`{text}` is listed twice"));
                continue;
            }
            external_ids.push(text);
        }
        if let Some(repository) = repository {
            imports.push(ImportChangeset { repository, external_ids });
        }
    }
    imports
}

fn check_changeset_template(checker: &mut Checker<'_>, node: &Node) -> Option<ChangesetTemplate> {
    const PATH: &str = "changesetTemplate";
    checker.mapping(node, PATH, "a changeset template", &["title", "body", "branch", "fork", "commit", "published"])?;
    let templated = |checker: &mut Checker<'_>, key: &str, required: Option<&str>| -> Option<String> {
        let field = match required {
            Some(what) => checker.required(node, PATH, key, what)?,
            None => node.get(key)?,
        };
        let field_path = join_path(PATH, key);
        let text = checker.string(field, &field_path)?;
        checker.template(field, &field_path, &text, TemplateContext::Changeset);
        Some(text)
    };
    let title = templated(checker, "title", Some("the pull request title"));
    let body = templated(checker, "body", None);
    let branch = templated(checker, "branch", Some("the branch to push, e.g. batch/update-readme"));
    let fork = node.get("fork").and_then(|fork| checker.boolean(fork, "changesetTemplate.fork"));
    let commit = checker.required(node, PATH, "commit", "the commit to create, with at least `message`").and_then(|commit| check_commit(checker, commit));
    let published = match node.get("published") {
        Some(published) => check_published(checker, published),
        None => Some(Published::Unset),
    };
    Some(ChangesetTemplate {
        title: title?,
        body: body.unwrap_or_default(),
        branch: branch?,
        fork,
        commit: commit?,
        published: published?,
    })
}

fn check_commit(checker: &mut Checker<'_>, node: &Node) -> Option<CommitTemplate> {
    const PATH: &str = "changesetTemplate.commit";
    checker.mapping(node, PATH, "a commit", &["message", "author"])?;
    let message = checker.required(node, PATH, "message", "the commit message").and_then(|message| {
        let path = join_path(PATH, "message");
        let text = checker.string(message, &path)?;
        checker.template(message, &path, &text, TemplateContext::Changeset);
        Some(text)
    });
    let author = match node.get("author") {
        None => None,
        Some(author) => {
            let path = join_path(PATH, "author");
            checker.mapping(author, &path, "an author", &["name", "email"])?;
            let field = |checker: &mut Checker<'_>, key: &str, what: &str| -> Option<(String, Node)> {
                let found = checker.required(author, &path, key, what)?;
                let field_path = join_path(&path, key);
                let text = checker.string(found, &field_path)?;
                checker.template(found, &field_path, &text, TemplateContext::Changeset);
                Some((text, found.clone()))
            };
            let name = field(checker, "name", "the author's name");
            let email = field(checker, "email", "the author's email address");
            if let Some((email, email_node)) = &email
                && !email.contains("${{")
                && !looks_like_email(email)
            {
                checker.error(&join_path(&path, "email"), email_node, format!("`{email}` is not an email address"));
                return None;
            }
            Some(CommitAuthor { name: name?.0, email: email?.0 })
        }
    };
    Some(CommitTemplate { message: message?, author })
}

/// The shape JSON schema's `email` format accepts: `local@domain`, no spaces, one `@`.
fn looks_like_email(text: &str) -> bool {
    match text.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty() && !domain.is_empty() && !domain.contains('@') && !text.contains(char::is_whitespace)
        }
        None => false,
    }
}

fn check_published(checker: &mut Checker<'_>, node: &Node) -> Option<Published> {
    const PATH: &str = "changesetTemplate.published";
    match &node.value {
        Value::Null => Some(Published::Unset),
        Value::Sequence(items) => {
            let mut rules = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let path = format!("{PATH}[{index}]");
                match item.as_mapping() {
                    Some([(key, value)]) => {
                        let key_text = key.key_text();
                        let (repository_glob, branch) = PublishedRule::parse_key(&key_text);
                        if let Err(problem) = crate::glob::validate(&repository_glob) {
                            checker.error(&path, key, format!("invalid glob `{repository_glob}`: {problem}"));
                            continue;
                        }
                        if let Some(value) = published_value(checker, value, &path) {
                            rules.push(PublishedRule { repository_glob, branch, value });
                        }
                    }
                    _ => checker.error(
                        &path,
                        item,
                        "expected a mapping with exactly one `<repository glob>[@<branch>]: true | false | draft` entry",
                    ),
                }
            }
            Some(Published::Rules(rules))
        }
        _ => published_value(checker, node, PATH).map(Published::Everywhere),
    }
}

fn published_value(checker: &mut Checker<'_>, node: &Node, path: &str) -> Option<PublishedValue> {
    match &node.value {
        Value::Bool(true) => Some(PublishedValue::Published),
        Value::Bool(false) => Some(PublishedValue::Unpublished),
        Value::String { text, .. } if text == "draft" => Some(PublishedValue::Draft),
        _ => {
            checker.error(path, node, format!("expected true, false or \"draft\", found {}", describe(node)));
            None
        }
    }
}

/// The fields to suggest: everything allowed except version 3 fields, which are accepted
/// only to be answered with their own "not supported yet" message.
fn displayed_fields(allowed: &[&str]) -> String {
    allowed
        .iter()
        .filter(|field| !VERSION_3_STEP_FIELDS.contains(field) && **field != "changesetHooks")
        .copied()
        .collect::<Vec<_>>()
        .join(", ")
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() { key.to_owned() } else { format!("{parent}.{key}") }
}

/// How a node's value reads in an error message: its type, and the value if short.
fn describe(node: &Node) -> String {
    match &node.value {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(flag) => format!("the boolean {flag}"),
        Value::Int(number) => format!("the number {number}"),
        Value::Float(number) => format!("the number {number}"),
        Value::String { text, .. } if text.chars().count() <= 40 && !text.contains('\n') => format!("the string \"{text}\""),
        Value::String { .. } => "a string".to_owned(),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
    }
}

/// Characters to underline for a node: a scalar's extent on its first line, else one.
fn node_width(node: &Node) -> usize {
    let (start, end) = (node.span.start, node.span.end);
    match node.value {
        Value::Sequence(_) | Value::Mapping(_) => 1,
        _ if end.line == start.line => end.column.saturating_sub(start.column).max(1),
        _ => 1,
    }
}
