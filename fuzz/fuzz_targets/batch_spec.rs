//! Any text given to the batch spec parser must give a spec or diagnostics, never a panic,
//! and every diagnostic must point inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match flotilla_spec::parse_batch_spec(text) {
        Ok(validated) => {
            let _ = serde_json_roundtrip(&validated.spec);
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "a rejected spec has at least one diagnostic");
            let lines = flotilla_spec::source_lines(text).len().max(1);
            for diagnostic in &diagnostics {
                assert!(diagnostic.line >= 1 && diagnostic.line <= lines + 1, "{diagnostic:?} outside {lines} lines");
                let _ = diagnostic.render("fuzz.yaml", text);
            }
        }
    }
});

fn serde_json_roundtrip(spec: &flotilla_spec::BatchSpec) -> Option<()> {
    let json = serde_json::to_string(spec).ok()?;
    let back: flotilla_spec::BatchSpec = serde_json::from_str(&json).expect("a stored spec reads back");
    assert_eq!(&back, spec);
    Some(())
}
