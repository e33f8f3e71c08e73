//! Any bytes as a template, parsed and executed against a full Sourcegraph step context,
//! must render or fail with an error, never panic, hang or exceed the output limit.
#![no_main]

use flotilla_template::sourcegraph::{
    BatchChangeAttributes, Changes, Repository, StepContext, StepResult, StepsContext, render_step_template,
};
use flotilla_template::Value;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut outputs = std::collections::BTreeMap::new();
    outputs.insert("text".to_owned(), Value::from("out"));
    outputs.insert("list".to_owned(), Value::List(vec![Value::from("a"), Value::Int(1), Value::Nil]));
    outputs.insert("number".to_owned(), Value::Float(2.5));
    let context = StepContext {
        batch_change: BatchChangeAttributes { name: "fuzz".into(), description: "d".into() },
        outputs,
        step: StepResult { changed_files: Changes { modified: vec!["a b".into()], ..Changes::default() }, stdout: "x\n".into(), stderr: String::new() },
        steps: StepsContext { changes: Changes::default(), path: "sub".into() },
        previous_step: StepResult::default(),
        repository: Repository { name: "github.com/a/b".into(), branch: "main".into(), file_matches: vec!["$(x).go".into()] },
    };
    if let Ok(output) = render_step_template("fuzz", text, &context) {
        assert!(output.len() <= 16 * 1024 * 1024);
    }
    let _ = flotilla_template::sourcegraph::check_template(text, flotilla_template::sourcegraph::ContextKind::Changeset);
});
