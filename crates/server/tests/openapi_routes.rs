//! `docs/openapi.yaml` must describe exactly the routes the server has: every `.route(...)`
//! in the server's source has a path there, and every path there is served.

use std::collections::BTreeSet;
use std::path::Path;

fn server_routes() -> BTreeSet<String> {
    let source_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(&source_dir).expect("read src") {
        let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read source");
        for part in text.split(".route(\"").skip(1) {
            let path = part.split('"').next().expect("route path");
            // OpenAPI has no catch-all: `{*path}` is written `{path}`.
            routes.insert(path.replace("{*", "{"));
        }
    }
    routes
}

fn documented_paths() -> BTreeSet<String> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.yaml")).expect("read openapi.yaml");
    let document = flotilla_yaml::load(&text).expect("openapi.yaml parses");
    document
        .get("paths")
        .and_then(flotilla_yaml::Node::as_mapping)
        .expect("paths")
        .iter()
        .map(|(path, _)| path.key_text())
        .collect()
}

#[test]
fn openapi_describes_every_route_and_only_those() {
    let routes = server_routes();
    let documented = documented_paths();
    assert!(routes.len() >= 20, "found {} routes; the scan of the source is broken", routes.len());
    let undocumented: Vec<_> = routes.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&routes).collect();
    assert!(undocumented.is_empty(), "routes missing from docs/openapi.yaml: {undocumented:?}");
    assert!(unserved.is_empty(), "paths in docs/openapi.yaml the server does not serve: {unserved:?}");
}

/// Every documented response is `{description: TEXT, ...}`. An unquoted description with a
/// comma in a flow mapping silently becomes two keys (the second with no value); this caught
/// six such entries.
#[test]
fn every_documented_response_has_one_text_description() {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/openapi.yaml")).expect("read openapi.yaml");
    let document = flotilla_yaml::load(&text).expect("openapi.yaml parses").to_json();
    let mut checked = 0;
    for (path, operations) in document["paths"].as_object().expect("paths") {
        for (method, operation) in operations.as_object().expect("operations") {
            let responses = operation["responses"].as_object().unwrap_or_else(|| panic!("{method} {path} has no responses"));
            assert!(!method.is_empty() && !responses.is_empty(), "{method} {path}");
            for (status, response) in responses {
                let fields = response.as_object().unwrap_or_else(|| panic!("{method} {path} {status} is not a mapping"));
                assert!(fields.get("description").is_some_and(serde_json::Value::is_string), "{method} {path} {status} has no text description: {response}");
                let null = fields.iter().find(|(_, value)| value.is_null());
                assert!(null.is_none(), "{method} {path} {status}: {null:?} (an unquoted comma in a flow mapping?)");
                checked += 1;
            }
        }
    }
    assert!(checked > 100, "checked only {checked} responses");
}
