//! Branch name validation, checked against `git check-ref-format --branch` itself.

use flotilla_git::BranchName;

use crate::fixture::base_command;

#[test]
fn branch_names_follow_git_check_ref_format() {
    let cases = [
        ("main", true),
        ("batch-changes/update-deps", true),
        ("feature/x.y_z-1", true),
        ("ünïcode", true),
        ("a@b", true),
        ("", false),
        ("-leading-dash", false),
        ("--force", false),
        ("two..dots", false),
        ("ends.lock", false),
        ("dir.lock/x", false),
        ("/leading-slash", false),
        ("trailing-slash/", false),
        ("double//slash", false),
        ("trailing-dot.", false),
        (".hidden", false),
        ("dir/.hidden", false),
        ("has space", false),
        ("tilde~1", false),
        ("caret^", false),
        ("colon:", false),
        ("question?", false),
        ("star*", false),
        ("bracket[", false),
        ("back\\slash", false),
        ("at@{brace", false),
        ("@", false),
        ("HEAD", false),
        ("control\u{7}char", false),
        ("tab\tchar", false),
    ];
    for (name, expected_valid) in cases {
        assert_eq!(
            BranchName::new(name).is_ok(),
            expected_valid,
            "BranchName::new({name:?})"
        );
        // Cross-check with git where git has an opinion (git accepts `-x` names in this form
        // but we reject them on purpose so they can never look like options).
        // `@` and `HEAD` are shorthands that `--branch` expands, so git has no verdict on them.
        if !name.starts_with('-') && !name.is_empty() && name != "@" && name != "HEAD" {
            let git_accepts = base_command(std::path::Path::new("/"))
                .args(["check-ref-format", "--branch", name])
                .output()
                .expect("run git check-ref-format")
                .status
                .success();
            assert_eq!(
                git_accepts, expected_valid,
                "git check-ref-format --branch {name:?}"
            );
        }
    }
}

#[test]
fn invalid_branch_errors_say_which_rule_is_broken() {
    let error = BranchName::new("a..b").expect_err("invalid");
    assert!(error.to_string().contains("`..`"), "{error}");
}
