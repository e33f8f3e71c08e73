//! Repository discovery: naming of bare and non-bare repositories, no descent into them.

use crate::fixture::{FixtureRepository, bare_clone, git};

#[test]
fn names_bare_and_non_bare_repositories_by_their_path_below_the_root() {
    let temporary = tempfile::tempdir().expect("temp dir");
    let root = temporary.path().join("repos");
    let mut source = FixtureRepository::init(&temporary.path().join("source"));
    source.write("a.txt", "a\n");
    source.commit("one");
    bare_clone(&source.path, &root.join("github.com/org/bare.git"));
    bare_clone(&source.path, &root.join("github.com/org/no-suffix"));
    // A clone with a working tree, named without `.git`.
    git(
        &root,
        &[
            "clone",
            "--quiet",
            &source.path.display().to_string(),
            "gitlab.example/group/checkout",
        ],
    );
    // A repository inside a bare repository's directory must not be reported separately.
    bare_clone(
        &source.path,
        &root.join("github.com/org/bare.git/nested.git"),
    );
    std::fs::create_dir_all(root.join("empty/dir")).expect("plain directories");

    let found = flotilla_git::discover_repositories(&root).expect("discovery succeeds");
    let summary: Vec<(String, bool, bool)> = found
        .iter()
        .map(|repository| {
            (
                repository.relative_name.clone(),
                repository.is_bare,
                repository.git_dir.join("HEAD").is_file(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("github.com/org/bare".to_owned(), true, true),
            ("github.com/org/no-suffix".to_owned(), true, true),
            ("gitlab.example/group/checkout".to_owned(), false, true),
        ]
    );
    assert!(
        found[2]
            .git_dir
            .ends_with("gitlab.example/group/checkout/.git")
    );
}

#[test]
fn a_missing_root_is_an_error_naming_it() {
    let error =
        flotilla_git::discover_repositories(std::path::Path::new("/nonexistent/flotilla-root"))
            .expect_err("missing root");
    assert!(
        error.to_string().contains("/nonexistent/flotilla-root"),
        "{error}"
    );
}
