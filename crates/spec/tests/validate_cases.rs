//! Table of specs and the exact diagnostics the validator gives for them.
//!
//! Each case is a spec text and the expected problems as `line:column path: message`, all of
//! them, in source order. Valid specs are checked by what they parse to.

use flotilla_spec::{OnEntry, OutputFormat, Published, PublishedValue, Severity, parse_batch_spec};

/// Asserts the spec is rejected with exactly these errors (warnings are not listed).
fn check_errors(source: &str, expected: &[&str]) {
    let diagnostics = match parse_batch_spec(source) {
        Ok(_) => panic!("expected errors, but the spec is valid:\n{source}"),
        Err(diagnostics) => diagnostics,
    };
    let mut actual: Vec<_> = diagnostics.iter().filter(|diagnostic| diagnostic.severity == Severity::Error).collect();
    actual.sort_by_key(|diagnostic| (diagnostic.line, diagnostic.column));
    let actual: Vec<String> = actual
        .iter()
        .map(|diagnostic| {
            if diagnostic.path.is_empty() {
                format!("{}:{} {}", diagnostic.line, diagnostic.column, diagnostic.message)
            } else {
                format!("{}:{} {}: {}", diagnostic.line, diagnostic.column, diagnostic.path, diagnostic.message)
            }
        })
        .collect();
    assert_eq!(actual, expected, "for spec:\n{source}");
}

const MINIMAL_TEMPLATE: &str = "changesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n";

fn with_template(head: &str) -> String {
    format!("{head}{MINIMAL_TEMPLATE}")
}

#[test]
fn name_is_required_and_checked() {
    check_errors("description: x\n", &["1:1 missing required field `name` (the batch change's name)"]);
    check_errors(
        "name: has space\n",
        &["1:7 name: The batch change name can only contain word characters, dots and dashes. No whitespace or newlines allowed."],
    );
    check_errors("name: ok\nname: again\n", &["2:1 invalid YAML: duplicate key `name` (first defined at line 1, column 1)"]);
    check_errors("name: 12\n", &["1:7 name: expected a string, found the number 12; put it in quotes to use it as text"]);
}

#[test]
fn empty_and_malformed_documents() {
    check_errors("", &["1:1 the batch spec is empty; it needs at least a `name` (run `flotilla batch new` for a starter spec)"]);
    check_errors("- a\n- b\n", &["1:1 expected a batch spec (a mapping), found a list"]);
    check_errors("name: x\non: [\n", &["3:1 invalid YAML: while parsing a node, did not find expected node content"]);
}

#[test]
fn version() {
    check_errors(
        "version: 3\nname: x\n",
        &["1:10 version: version 3 batch specs (agentic batch changes: codingAgent and buildImage steps, image, changesetHooks) are not supported yet; use version 1 or 2"],
    );
    check_errors("version: 4\nname: x\n", &["1:10 version: expected 1, 2 or 3, found the number 4"]);
    check_errors("version: \"1\"\nname: x\n", &["1:10 version: expected 1, 2 or 3, found the string \"1\""]);
    assert_eq!(parse_batch_spec("version: 2\nname: x\n").expect("valid").spec.version, 2);
    assert_eq!(parse_batch_spec("name: x\n").expect("valid").spec.version, 1);
}

#[test]
fn unknown_fields_everywhere() {
    check_errors(
        "name: x\nnmae: y\n",
        &["2:1 unknown field `nmae`; expected one of: version, name, description, on, workspaces, steps, transformChanges, importChangesets, changesetTemplate, executor"],
    );
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    contaner: alpine\n"),
        &[
            "3:5 steps[0]: missing required field `container` (the container image to run it in, e.g. alpine:3)",
            "4:5 steps[0]: unknown field `contaner`; expected one of: run, container, env, files, outputs, if, mount, network",
        ],
    );
    check_errors(
        "name: x\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n    sign: true\n",
        &["7:5 changesetTemplate.commit: unknown field `sign`; expected one of: message, author"],
    );
}

#[test]
fn on_entries() {
    check_errors(
        "name: x\non:\n  - repositoriesMatchingQuery: a\n    repository: b\n",
        &["3:5 on[0]: an `on` entry has either `repositoriesMatchingQuery` or `repository`, not both"],
    );
    check_errors(
        "name: x\non:\n  - repository: a\n    branch: main\n    branches: [dev]\n",
        &["3:5 on[0]: both branch and branches specified; use `branch` for one, `branches` for several"],
    );
    check_errors("name: x\non:\n  - github.com/a/b\n", &["3:5 on[0]: expected a mapping with `repositoriesMatchingQuery` or `repository`, found the string \"github.com/a/b\""]);
    check_errors("name: x\non:\n  - branch: main\n", &["3:5 on[0]: expected `repositoriesMatchingQuery: <search query>` or `repository: <name>`"]);
    check_errors("name: x\non: file:README\n", &["2:5 on: expected a list of repository queries or repositories, found the string \"file:README\""]);
    let spec = parse_batch_spec("name: x\non:\n  - repositoriesMatchingQuery: file:a\n  - repository: r\n    branch: b\n  - repository: s\n    branches: [c, d]\n  - repository: t\n")
        .expect("valid")
        .spec;
    assert_eq!(
        spec.on,
        vec![
            OnEntry::Query { repositories_matching_query: "file:a".into() },
            OnEntry::Repository { repository: "r".into(), branches: vec!["b".into()] },
            OnEntry::Repository { repository: "s".into(), branches: vec!["c".into(), "d".into()] },
            OnEntry::Repository { repository: "t".into(), branches: vec![] },
        ]
    );
    assert!(parse_batch_spec("name: x\non:\n").expect("null `on` is allowed").spec.on.is_empty());
}

#[test]
fn workspaces() {
    check_errors(
        "name: x\nworkspaces:\n  - in: a/*\n    onlyFetchWorkspace: yes\n",
        &[
            "3:5 workspaces[0]: missing required field `rootAtLocationOf` (the file name that marks a workspace's root, e.g. package.json)",
            "4:25 workspaces[0].onlyFetchWorkspace: expected true or false, found the string \"yes\"",
        ],
    );
    let spec = parse_batch_spec("name: x\nworkspaces:\n  - rootAtLocationOf: go.mod\n    in: github.com/a/*\n    onlyFetchWorkspace: true\n").expect("valid").spec;
    assert_eq!(spec.workspaces[0].root_at_location_of, "go.mod");
    assert_eq!(spec.workspaces[0].in_repositories, "github.com/a/*");
    assert!(spec.workspaces[0].only_fetch_workspace);
}

#[test]
fn steps_need_a_changeset_template() {
    check_errors(
        "name: x\nsteps:\n  - run: a\n    container: alpine\n",
        &["3:3 changesetTemplate: batch spec includes steps but no changesetTemplate; add one to say how the changes become changesets"],
    );
}

#[test]
fn step_fields() {
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    container: alpine\n    env:\n      A: 1\n      B: [x]\n"),
        &[
            "6:10 steps[0].env.A: expected a string, found the number 1; put it in quotes to use it as text",
            "7:10 steps[0].env.B: expected a string, found a list",
        ],
    );
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    container: alpine\n    env:\n      - A\n      - {B: b, C: c}\n      - 3\n"),
        &[
            "7:9 steps[0].env[1]: expected a variable name (taken from the environment or a secret) or a mapping with exactly one `NAME: value`, found a mapping",
            "8:9 steps[0].env[2]: expected a variable name (taken from the environment or a secret) or a mapping with exactly one `NAME: value`, found the number 3",
        ],
    );
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    container: alpine\n    files:\n      /a,b: x\n    mount:\n      - path: ../secrets\n        mountpoint: /m\n      - path: \"a,b\"\n        mountpoint: \"/x\\ny\"\n"),
        &[
            "6:7 steps[0].files: step 1 files target path contains invalid characters (commas, quotes and newlines cannot be mounted)",
            "8:15 steps[0].mount[0].path: the mount path must be inside the batch spec's directory (a relative path without `..` that leaves it)",
            "10:15 steps[0].mount[1].path: step 1 mount path contains invalid characters (commas, quotes and newlines cannot be mounted)",
            "11:21 steps[0].mount[1].mountpoint: step 1 mount mountpoint contains invalid characters (commas, quotes and newlines cannot be mounted)",
        ],
    );
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    container: alpine\n    outputs:\n      o:\n        format: xml\n    if: 3\n"),
        &[
            "7:9 steps[0].outputs.o: missing required field `value` (a template for the output's value)",
            "7:17 steps[0].outputs.o.format: expected text, json or yaml, found the string \"xml\"",
            "8:9 steps[0].if: expected true, false or a template such as ${{ eq repository.name \"x\" }}, found the number 3",
        ],
    );
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    image: alpine\n    container: alpine\n"),
        &["4:12 steps[0].image: `image` belongs to version 3 batch specs, which Flotilla does not support yet; use `container`"],
    );
    check_errors(&with_template("name: x\nsteps:\n  - run: a\n    container: \"\"\n"), &["4:16 steps[0].container: the container image is empty; name an image such as alpine:3"]);
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    container: alpine\n    network: \"yes\"\n"),
        &["5:14 steps[0].network: expected true or false, found the string \"yes\""],
    );
}

#[test]
fn step_model() {
    let spec = parse_batch_spec(&with_template(
        "name: x\nsteps:\n  - run: a\n    container: alpine\n    if: true\n    env:\n      - SECRET\n      - PLAIN: v\n    files:\n      /f: content\n    outputs:\n      o:\n        value: ${{ step.stdout }}\n        format: json\n  - run: b\n    container: alpine\n    if: false\n    env: {X: y}\n",
    ))
    .expect("valid")
    .spec;
    let first = &spec.steps[0];
    assert_eq!(first.if_condition, "true");
    assert_eq!(first.env[0].name, "SECRET");
    assert_eq!(first.env[0].value, None);
    assert_eq!(first.env[1].value.as_deref(), Some("v"));
    assert_eq!(first.files, vec![("/f".to_owned(), "content".to_owned())]);
    assert_eq!(first.outputs[0].1.format, OutputFormat::Json);
    assert_eq!(spec.steps[1].if_condition, "false");
    assert_eq!(spec.required_outer_variables(), vec!["SECRET"]);
    // `network: true` (Flotilla's extension) asks for a network; without it, none.
    assert!(!first.network && !spec.steps[1].network);
    let online = parse_batch_spec(&with_template("name: x\nsteps:\n  - run: npm install\n    container: node:20\n    network: true\n")).expect("valid").spec;
    assert!(online.steps[0].network);
    assert_eq!(serde_json::to_value(&online.steps[0]).expect("json")["network"], true);
    assert!(serde_json::to_value(first).expect("json").get("network").is_none(), "left out when false, so cache keys do not change");
}

#[test]
fn output_extra_keys_are_warnings_like_sourcegraph() {
    let validated = parse_batch_spec(&with_template(
        "name: x\nsteps:\n  - run: a\n    container: alpine\n    outputs:\n      o:\n        value: v\n        description: ignored\n",
    ))
    .expect("Sourcegraph's schema allows extra keys in an output");
    assert_eq!(validated.warnings.len(), 1);
    assert_eq!(validated.warnings[0].message, "`description` is ignored; an output has `value` and `format`");
}

#[test]
fn transform_changes_and_imports() {
    check_errors(
        "name: x\ntransformChanges:\n  group:\n    - directory: \"\"\n      branch: a\n    - directory: b\n      branch: a\n    - directory: c\n      branch: a\n      repository: r\n",
        &[
            "4:18 transformChanges.group[0].directory: must not be empty (the directory whose changes form this group)",
            "9:15 transformChanges.group[2].branch: branch `a` is used by two groups; each group needs its own branch",
        ],
    );
    check_errors(
        "name: x\nimportChangesets:\n  - repository: r\n    externalIDs: [1, \"2\", 1, 1.5]\n  - externalIDs: [3]\n",
        &[
            "4:27 importChangesets[0].externalIDs[2]: `1` is listed twice",
            "4:30 importChangesets[0].externalIDs[3]: expected a pull request number or id, found the number 1.5",
            "5:5 importChangesets[1]: missing required field `repository` (the repository's name)",
        ],
    );
    let spec = parse_batch_spec("name: x\nimportChangesets:\n  - repository: r\n    externalIDs: [120, \"abc\"]\n").expect("valid").spec;
    assert_eq!(spec.import_changesets[0].external_ids, vec!["120", "abc"]);
}

#[test]
fn changeset_template() {
    check_errors(
        "name: x\nchangesetTemplate:\n  body: b\n",
        &[
            "3:3 changesetTemplate: missing required field `title` (the pull request title)",
            "3:3 changesetTemplate: missing required field `branch` (the branch to push, e.g. batch/update-readme)",
            "3:3 changesetTemplate: missing required field `commit` (the commit to create, with at least `message`)",
        ],
    );
    check_errors(
        "name: x\nchangesetTemplate:\n  title: t\n  branch: b\n  fork: maybe\n  commit:\n    message: m\n    author:\n      name: n\n      email: not-an-email\n",
        &[
            "5:9 changesetTemplate.fork: expected true or false, found the string \"maybe\"",
            "10:14 changesetTemplate.commit.author.email: `not-an-email` is not an email address",
        ],
    );
}

#[test]
fn published_forms() {
    let published = |value: &str| {
        parse_batch_spec(&format!("name: x\nchangesetTemplate:\n  title: t\n  branch: b\n  commit:\n    message: m\n  published: {value}\n"))
            .map(|validated| validated.spec.changeset_template.expect("template").published)
    };
    assert_eq!(published("true").expect("valid"), Published::Everywhere(PublishedValue::Published));
    assert_eq!(published("false").expect("valid"), Published::Everywhere(PublishedValue::Unpublished));
    assert_eq!(published("draft").expect("valid"), Published::Everywhere(PublishedValue::Draft));
    assert_eq!(published("null").expect("valid"), Published::Unset);
    let rules = published("\n    - \"*\": false\n    - github.com/a/*@dev: draft\n").expect("valid");
    assert_eq!(rules.value_for("github.com/a/b", "dev"), Some(PublishedValue::Draft));
    assert_eq!(rules.value_for("github.com/a/b", "main"), Some(PublishedValue::Unpublished));
    let errors = published("\"true\"").expect_err("a quoted true is a string");
    assert_eq!(errors[0].message, "expected true, false or \"draft\", found the string \"true\"");
    let errors = published("\n    - {a: true, b: false}\n").expect_err("two keys in one rule");
    assert_eq!(errors[0].message, "expected a mapping with exactly one `<repository glob>[@<branch>]: true | false | draft` entry");
}

#[test]
fn all_errors_are_reported_at_once() {
    let source = "name: bad name\nversion: 2\non: 5\nsteps:\n  - run: 1\n    container: [x]\nchangesetTemplate:\n  title: t\n  branch: b\n  commit: {message: m}\n  published: sometimes\n";
    let errors = parse_batch_spec(source).expect_err("invalid");
    assert_eq!(errors.len(), 5, "{errors:#?}");
}

#[test]
fn yaml_features() {
    let source = "name: anchors\ndefaults: &defaults\n  container: alpine:3\n";
    check_errors(
        source,
        &["2:1 unknown field `defaults`; expected one of: version, name, description, on, workspaces, steps, transformChanges, importChangesets, changesetTemplate, executor"],
    );
    let source = "name: anchors\nsteps:\n  - &first\n    run: echo a\n    container: alpine:3\n  - <<: *first\n    run: echo b\n  - *first\nchangesetTemplate:\n  title: t\n  branch: b\n  commit: {message: m}\n";
    let spec = parse_batch_spec(source).expect("valid").spec;
    assert_eq!(spec.steps.len(), 3);
    assert_eq!(spec.steps[1].run, "echo b");
    assert_eq!(spec.steps[1].container, "alpine:3");
    assert_eq!(spec.steps[2].run, "echo a");
}

#[test]
fn starter_spec_is_valid() {
    let validated = parse_batch_spec(flotilla_spec::STARTER_SPEC).expect("the starter spec validates");
    assert!(validated.warnings.is_empty());
    assert_eq!(validated.spec.name, "hello-world");
}

#[test]
fn oversized_specs_are_refused() {
    let source = format!("name: x\ndescription: \"{}\"\n", "a".repeat(flotilla_spec::MAX_SPEC_BYTES));
    let errors = parse_batch_spec(&source).expect_err("too big");
    assert!(errors[0].message.starts_with("the batch spec is "), "{}", errors[0].message);
}

#[test]
fn templates_are_checked_against_their_context() {
    check_errors(
        &with_template("name: x\nsteps:\n  - run: echo ${{ repository.nme }}\n    container: alpine\n"),
        &["3:19 steps[0].run: unknown template variable `repository.nme`"],
    );
    check_errors(
        &with_template("name: x\nsteps:\n  - run: |\n      echo one\n      echo ${{ repositry.name }}\n    container: alpine\n"),
        &["5:16 steps[0].run: unknown template variable or function `repositry`; this field can use batch_change, repository, previous_step, step, steps, outputs and the template functions"],
    );
    check_errors(
        "name: x\nchangesetTemplate:\n  title: ${{ previous_step.stdout }}\n  branch: b\n  commit:\n    message: m\n",
        &["3:14 changesetTemplate.title: unknown template variable or function `previous_step`; this field can use batch_change, repository, steps, outputs, batch_change_link and the template functions"],
    );
    check_errors(
        "name: x\nchangesetTemplate:\n  title: \"${{ if }}\"\n  branch: b\n  commit:\n    message: m\n",
        &["3:18 changesetTemplate.title: template error: missing value for if"],
    );
}

#[test]
fn outputs_are_checked_against_the_declared_outputs() {
    let spec = "name: x\nsteps:\n  - run: echo\n    container: alpine\n    outputs:\n      text:\n        value: ${{ step.stdout }}\n      structured:\n        value: ${{ step.stdout }}\n        format: yaml\nchangesetTemplate:\n  title: ${{ outputs.text }} ${{ outputs.structured.deep.field }}\n  branch: ${{ if eq outputs.text \"\" }}a${{ else }}b${{ end }}\n  commit:\n    message: ${{ outputs.txet }}\n";
    check_errors(spec, &["15:18 changesetTemplate.commit.message: unknown output `txet` (the steps declare: structured, text)"]);
}

#[test]
fn index_on_run_time_data_is_not_checked() {
    parse_batch_spec(&with_template("name: x\nsteps:\n  - run: echo ${{ index repository.search_result_paths 0 }}\n    container: alpine\n"))
        .expect("index into search results is only known at run time");
}

#[test]
fn positions_count_every_yaml_line_break() {
    // A lone carriage return ends a line in YAML; positions and the shown line must agree.
    let source = "name: x\r\nversion: 9\rdescription: d\n";
    let errors = parse_batch_spec(source).expect_err("invalid version");
    assert_eq!((errors[0].line, errors[0].column), (2, 10));
    let rendered = flotilla_spec::render_all(&errors, "spec.yaml", source);
    assert!(rendered.contains("2 | version: 9\n"), "{rendered}");
}

#[test]
fn executor_labels_route_a_spec() {
    let spec = parse_batch_spec("name: x\nexecutor:\n  labels:\n    gpu: true\n    size: large\n").expect("valid").spec;
    assert_eq!(spec.executor.routing_key(), "gpu=true,size=large");
    assert_eq!(parse_batch_spec("name: x\n").expect("valid").spec.executor.routing_key(), "");
    check_errors(
        "name: x\nexecutor:\n  labels:\n    \"bad label\": yes\n  pool: a\n",
        &[
            "4:5 executor.labels.bad label: label names and values are letters, digits, `-`, `_`, `.` and `/`",
            "5:3 executor: unknown field `pool`; expected one of: labels",
        ],
    );
}

/// Hostile container paths: a `:` would be read by `podman -v` as more mount options, and a
/// relative target has no meaning in a container; a mount source that leaves the spec's
/// folder is refused too. Each is named with line and column (`e2e_hostile_input.rs` drives
/// them through the server).
#[test]
fn hostile_files_targets_and_mountpoints_are_refused_with_positions() {
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    container: alpine:3\n    files:\n      /tmp/a:/etc/shadow: x\n      relative/b: y\n"),
        &[
            "6:7 steps[0].files: step 1 files target `/tmp/a:/etc/shadow` must be an absolute path in the container, without `:`",
            "7:7 steps[0].files: step 1 files target `relative/b` must be an absolute path in the container, without `:`",
        ],
    );
    check_errors(
        &with_template("name: x\nsteps:\n  - run: a\n    container: alpine:3\n    mount:\n      - path: ../../etc/passwd\n        mountpoint: /x:rw\n"),
        &[
            "6:15 steps[0].mount[0].path: the mount path must be inside the batch spec's directory (a relative path without `..` that leaves it)",
            "7:21 steps[0].mount[0].mountpoint: step 1 mount mountpoint `/x:rw` must be an absolute path in the container, without `:`",
        ],
    );
}
