//! Pure diff parsing: `changed_files` cases matching Sourcegraph's `ChangesInDiff`, splitting
//! per file and line statistics.

use flotilla_git::{ChangedFiles, DiffStat, FileChangeKind};

fn check(diff: &str, expected: ChangedFiles) {
    let parsed = flotilla_git::changed_files(diff.as_bytes()).expect("diff parses");
    assert_eq!(parsed, expected, "diff:\n{diff}");
}

fn changes(modified: &[&str], added: &[&str], deleted: &[&str], renamed: &[&str]) -> ChangedFiles {
    let owned = |names: &[&str]| names.iter().map(|name| (*name).to_owned()).collect();
    ChangedFiles {
        modified: owned(modified),
        added: owned(added),
        deleted: owned(deleted),
        renamed: owned(renamed),
    }
}

#[test]
fn classifies_files_like_sourcegraph() {
    check("", changes(&[], &[], &[], &[]));
    check(
        "diff --git README.md README.md\nindex 1111111..2222222 100644\n--- README.md\n+++ README.md\n@@ -1 +1 @@\n-a\n+b\n",
        changes(&["README.md"], &[], &[], &[]),
    );
    check(
        "diff --git new.txt new.txt\nnew file mode 100644\nindex 0000000..2222222\n--- /dev/null\n+++ new.txt\n@@ -0,0 +1 @@\n+x\n",
        changes(&[], &["new.txt"], &[], &[]),
    );
    check(
        "diff --git old.txt old.txt\ndeleted file mode 100644\nindex 1111111..0000000\n--- old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
        changes(&[], &[], &["old.txt"], &[]),
    );
    check(
        "diff --git a.txt b.txt\nsimilarity index 100%\nrename from a.txt\nrename to b.txt\n",
        changes(&[], &[], &[], &["b.txt"]),
    );
    // Rename with spaces: the header is ambiguous, the rename lines are not.
    check(
        "diff --git dir a/x y dir b/x y\nsimilarity index 90%\nrename from dir a/x y\nrename to dir b/x y\nindex 1..2 100644\n--- dir a/x y\t\n+++ dir b/x y\t\n@@ -1 +1 @@\n-a\n+b\n",
        changes(&[], &[], &[], &["dir b/x y"]),
    );
    // Empty new file: no ---/+++ lines at all.
    check(
        "diff --git empty empty\nnew file mode 100644\nindex 0000000..e69de29\n",
        changes(&[], &["empty"], &[], &[]),
    );
    // Binary addition with --binary.
    check(
        "diff --git img.png img.png\nnew file mode 100644\nindex 0000000000000000000000000000000000000000..1111111111111111111111111111111111111111\nGIT binary patch\nliteral 4\nLcmZQzWMT#Y01f~L\n\nliteral 0\nHcmV?d00001\n\n",
        changes(&[], &["img.png"], &[], &[]),
    );
    // Binary modification without --binary.
    check(
        "diff --git data.bin data.bin\nindex 1111111..2222222 100644\nBinary files data.bin and data.bin differ\n",
        changes(&["data.bin"], &[], &[], &[]),
    );
    // Mode-only change.
    check(
        "diff --git run.sh run.sh\nold mode 100644\nnew mode 100755\n",
        changes(&["run.sh"], &[], &[], &[]),
    );
    // Quoted unicode and tab names.
    check(
        "diff --git \"\\303\\251t\\303\\251.txt\" \"\\303\\251t\\303\\251.txt\"\nnew file mode 100644\nindex 0000000..1111111\n--- /dev/null\n+++ \"\\303\\251t\\303\\251.txt\"\n@@ -0,0 +1 @@\n+x\n",
        changes(&[], &["été.txt"], &[], &[]),
    );
    check(
        "diff --git \"tab\\there\" \"tab\\there\"\ndeleted file mode 100644\nindex 1111111..0000000\n",
        changes(&[], &[], &["tab\there"], &[]),
    );
    // Copy counts as a rename (go-diff sees two different names).
    check(
        "diff --git a.txt c.txt\nsimilarity index 100%\ncopy from a.txt\ncopy to c.txt\n",
        changes(&[], &[], &[], &["c.txt"]),
    );
    // Several files keep their order within each kind.
    check(
        "diff --git z z\nindex 1..2 100644\n--- z\n+++ z\n@@ -1 +1 @@\n-a\n+b\ndiff --git a a\nindex 1..2 100644\n--- a\n+++ a\n@@ -1 +1 @@\n-a\n+b\n",
        changes(&["z", "a"], &[], &[], &[]),
    );
}

#[test]
fn rejects_text_that_is_not_a_git_diff() {
    let error = flotilla_git::changed_files(b"hello world\n").expect_err("not a diff");
    assert!(error.to_string().contains("diff --git"), "{error}");
}

#[test]
fn splits_per_file_and_counts_lines() {
    let diff = "diff --git a.txt a.txt\nindex 1..2 100644\n--- a.txt\n+++ a.txt\n@@ -1,2 +1,2 @@\n-old\n--- looks like a header\n+new\n+++ also content\n context\ndiff --git gone gone\ndeleted file mode 100644\nindex 1..0\n--- gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n";
    let files = flotilla_git::split_diff_by_file(diff.as_bytes()).expect("parses");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].path, "a.txt");
    assert_eq!(files[0].kind, FileChangeKind::Modified);
    assert_eq!(
        files[0].stat,
        DiffStat {
            added: 2,
            deleted: 2
        }
    );
    assert_eq!(files[1].path, "gone");
    assert_eq!(files[1].kind, FileChangeKind::Deleted);
    assert_eq!(
        files[1].stat,
        DiffStat {
            added: 0,
            deleted: 1
        }
    );
    let rejoined: Vec<u8> = files.iter().flat_map(|file| file.bytes.clone()).collect();
    assert_eq!(rejoined, diff.as_bytes());
    assert_eq!(
        flotilla_git::diff_stat(diff.as_bytes()).expect("parses"),
        DiffStat {
            added: 2,
            deleted: 3
        }
    );
}
