//! Every case in `cases.json` renders in Rust exactly as recorded from Go's text/template
//! (regenerate with `go run ./tools/template-oracle --record crates/template/tests/cases.json`).

mod common;

#[test]
fn every_case_matches_the_recorded_go_result() {
    let cases = common::load_cases();
    assert!(
        cases.len() >= 180,
        "the table should keep at least 180 cases, has {}",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let Some(expected) = &case.expected else {
            failures.push(format!(
                "case {:?} has no recorded expectation; run the oracle with --record",
                case.name
            ));
            continue;
        };
        let actual = common::run_case(case);
        if let Some(failure) = common::compare(case, &actual, expected) {
            failures.push(failure);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    let functions = flotilla_template::sourcegraph::StepContext::default().functions();
    let alphabet: &[&str] = &[
        "${{",
        "}}",
        "-",
        " ",
        "(",
        ")",
        "|",
        "$x",
        ":=",
        "=",
        ".",
        "a",
        "\"",
        "`",
        "'",
        "1",
        "if",
        "else",
        "end",
        "range",
        "with",
        "index",
        "eq",
        "printf",
        "%",
        "\n",
        "/*",
        "*/",
        "é",
        "define",
        "template",
        "block",
        "nil",
        "repository",
        "break",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        let mut text = String::new();
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let length = (seed % 24) as usize;
        for _ in 0..length {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            text.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
        }
        if let Ok(template) = flotilla_template::Template::parse("fuzz", &text, &functions) {
            let _ = template.execute(&flotilla_template::Value::Nil, &functions);
        }
    }
}
