//! Pure parsing of git diffs: which files a diff touches, the diff split per file, and line
//! counts. No IO, no processes.
//!
//! The input is what `git diff --no-prefix --binary` prints (and what `src` uploads in
//! changeset specs). The classification matches Sourcegraph's `git.ChangesInDiff`: a file whose
//! new name is `/dev/null` is deleted, whose old name is `/dev/null` is added, whose names are
//! equal is modified (including mode-only changes) and otherwise renamed (listed under its new
//! name; copies count as renames there too). Names come from, in order of precedence, the
//! `rename from`/`rename to` (or `copy`) lines, the `---`/`+++` lines, and the `diff --git`
//! line; `new file mode`/`deleted file mode` mark additions and deletions that have no
//! `---`/`+++` lines (binary files, empty files). Git's C-style quoting (`"tab\there"`,
//! `"\303\251"`) is undone; names that are not UTF-8 are decoded lossily.

use std::fmt;

/// The files a diff touches, by kind, in diff order. Mirrors Sourcegraph's `git.Changes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChangedFiles {
    pub modified: Vec<String>,
    pub added: Vec<String>,
    pub deleted: Vec<String>,
    /// New names of renamed (or copied) files.
    pub renamed: Vec<String>,
}

/// What a diff does to one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileChangeKind {
    Modified,
    Added,
    Deleted,
    Renamed,
}

/// Lines added and deleted, counted from the hunks (binary files count zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiffStat {
    pub added: u64,
    pub deleted: u64,
}

/// The part of a diff about one file, from its `diff --git` line up to the next one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileDiff {
    /// The new name, or the old name when the file is deleted.
    pub path: String,
    /// The old name when it differs from `path` (renames and copies).
    pub old_path: Option<String>,
    pub kind: FileChangeKind,
    /// The exact bytes of this file's part of the diff, ready to be concatenated again.
    pub bytes: Vec<u8>,
    pub stat: DiffStat,
}

/// A diff that this parser cannot read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiffParseError {
    /// 1-based line number in the diff.
    pub line: usize,
    pub reason: &'static str,
}

impl fmt::Display for DiffParseError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "cannot parse the diff at line {}: {}; the diff must be produced by `git diff --no-prefix`",
            self.line, self.reason
        )
    }
}

impl std::error::Error for DiffParseError {}

/// Sourcegraph's `ChangesInDiff`: the touched files by kind.
pub fn changed_files(diff: &[u8]) -> Result<ChangedFiles, DiffParseError> {
    let mut changes = ChangedFiles::default();
    for file in split_diff_by_file(diff)? {
        let list = match file.kind {
            FileChangeKind::Modified => &mut changes.modified,
            FileChangeKind::Added => &mut changes.added,
            FileChangeKind::Deleted => &mut changes.deleted,
            FileChangeKind::Renamed => &mut changes.renamed,
        };
        list.push(file.path);
    }
    Ok(changes)
}

/// Total lines added and deleted over all files.
pub fn diff_stat(diff: &[u8]) -> Result<DiffStat, DiffParseError> {
    let mut total = DiffStat::default();
    for file in split_diff_by_file(diff)? {
        total.added += file.stat.added;
        total.deleted += file.stat.deleted;
    }
    Ok(total)
}

/// Splits a multi-file git diff into one [`FileDiff`] per file, in order. Text before the first
/// `diff --git` line (a mail header, say) is ignored; an empty diff gives an empty list.
pub fn split_diff_by_file(diff: &[u8]) -> Result<Vec<FileDiff>, DiffParseError> {
    let lines = lines_with_offsets(diff);
    let section_starts: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, line)| line.text.starts_with(b"diff --git "))
        .map(|(index, _)| index)
        .collect();
    let has_content = lines
        .iter()
        .any(|line| !line.text.iter().all(u8::is_ascii_whitespace));
    if section_starts.is_empty() && has_content {
        return Err(DiffParseError {
            line: 1,
            reason: "no `diff --git` line found",
        });
    }
    let mut files = Vec::with_capacity(section_starts.len());
    for (position, &first_line) in section_starts.iter().enumerate() {
        let end_line = section_starts
            .get(position + 1)
            .copied()
            .unwrap_or(lines.len());
        files.push(parse_file_section(
            diff,
            &lines[first_line..end_line],
            first_line + 1,
        )?);
    }
    Ok(files)
}

struct Line<'a> {
    /// The line without its `\n`.
    text: &'a [u8],
    /// Byte offset of the line's start in the whole diff.
    start: usize,
    /// Byte offset just past the line's `\n` (or the end of the diff).
    end: usize,
}

fn lines_with_offsets(diff: &[u8]) -> Vec<Line<'_>> {
    let mut lines = Vec::new();
    let mut start = 0;
    while start < diff.len() {
        let newline = diff[start..].iter().position(|byte| *byte == b'\n');
        let (text_end, end) = match newline {
            Some(offset) => (start + offset, start + offset + 1),
            None => (diff.len(), diff.len()),
        };
        lines.push(Line {
            text: &diff[start..text_end],
            start,
            end,
        });
        start = end;
    }
    lines
}

fn parse_file_section(
    diff: &[u8],
    lines: &[Line<'_>],
    first_line_number: usize,
) -> Result<FileDiff, DiffParseError> {
    let error = |offset: usize, reason| DiffParseError {
        line: first_line_number + offset,
        reason,
    };
    let header = lines[0]
        .text
        .strip_prefix(b"diff --git ")
        .unwrap_or_default();
    let header_names = parse_header_names(header);
    let mut minus_name = None;
    let mut plus_name = None;
    let mut rename_from = None;
    let mut rename_to = None;
    let mut new_file = false;
    let mut deleted_file = false;
    let mut stat = DiffStat::default();
    let mut in_hunks = false;
    for (offset, line) in lines.iter().enumerate().skip(1) {
        let text = line.text;
        if in_hunks {
            if text.starts_with(b"+") {
                stat.added += 1;
            } else if text.starts_with(b"-") {
                stat.deleted += 1;
            }
            continue;
        }
        if text.starts_with(b"@@") {
            in_hunks = true;
        } else if text.starts_with(b"GIT binary patch") || text.starts_with(b"Binary files ") {
            // Nothing after this in the section is header: base85 data or nothing.
            break;
        } else if text.starts_with(b"new file mode ") {
            new_file = true;
        } else if text.starts_with(b"deleted file mode ") {
            deleted_file = true;
        } else if let Some(name) = text
            .strip_prefix(b"rename from ")
            .or_else(|| text.strip_prefix(b"copy from "))
        {
            rename_from = Some(
                parse_name(name).ok_or_else(|| error(offset, "bad quoting in `rename from`"))?,
            );
        } else if let Some(name) = text
            .strip_prefix(b"rename to ")
            .or_else(|| text.strip_prefix(b"copy to "))
        {
            rename_to =
                Some(parse_name(name).ok_or_else(|| error(offset, "bad quoting in `rename to`"))?);
        } else if let Some(name) = text.strip_prefix(b"--- ") {
            minus_name = Some(
                parse_name(strip_trailing_tab(name))
                    .ok_or_else(|| error(offset, "bad quoting in `---` line"))?,
            );
        } else if let Some(name) = text.strip_prefix(b"+++ ") {
            plus_name = Some(
                parse_name(strip_trailing_tab(name))
                    .ok_or_else(|| error(offset, "bad quoting in `+++` line"))?,
            );
        }
    }
    let (header_old, header_new) = match header_names {
        Some((old, new)) => (Some(old), Some(new)),
        None => (None, None),
    };
    let mut old_name = rename_from.or(minus_name).or(header_old);
    let mut new_name = rename_to.or(plus_name).or(header_new);
    if new_file {
        old_name = Some(DEV_NULL.to_owned());
    }
    if deleted_file {
        new_name = Some(DEV_NULL.to_owned());
    }
    let (Some(old_name), Some(new_name)) = (old_name, new_name) else {
        return Err(error(
            0,
            "cannot tell the file names apart in the `diff --git` line and there are no `---`/`+++` or rename lines",
        ));
    };
    // Deleted and added files have no useful name on the `/dev/null` side: take it from the
    // header or the other side, as go-diff does.
    let (kind, path, old_path) = if new_name == DEV_NULL {
        (FileChangeKind::Deleted, old_name, None)
    } else if old_name == DEV_NULL {
        (FileChangeKind::Added, new_name, None)
    } else if old_name == new_name {
        (FileChangeKind::Modified, new_name, None)
    } else {
        (FileChangeKind::Renamed, new_name, Some(old_name))
    };
    if path == DEV_NULL {
        return Err(error(0, "both sides of the file diff are /dev/null"));
    }
    let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
        return Err(error(0, "empty file section"));
    };
    Ok(FileDiff {
        path,
        old_path,
        kind,
        bytes: diff[first.start..last.end].to_vec(),
        stat,
    })
}

const DEV_NULL: &str = "/dev/null";

/// Git appends a tab to `---`/`+++` names that contain a space.
fn strip_trailing_tab(name: &[u8]) -> &[u8] {
    name.strip_suffix(b"\t").unwrap_or(name)
}

/// A name that is either C-quoted (`"..."`) or taken literally.
fn parse_name(name: &[u8]) -> Option<String> {
    if name.starts_with(b"\"") {
        let (unquoted, rest) = unquote_c_style(name)?;
        if !rest.is_empty() {
            return None;
        }
        return Some(String::from_utf8_lossy(&unquoted).into_owned());
    }
    Some(String::from_utf8_lossy(name).into_owned())
}

/// The two names of a `diff --git <old> <new>` line (no prefixes). Returns `None` when they
/// cannot be separated, which only happens for unquoted names with spaces that differ (a
/// rename), where the rename lines give the names instead.
fn parse_header_names(header: &[u8]) -> Option<(String, String)> {
    if header.starts_with(b"\"") {
        let (old, rest) = unquote_c_style(header)?;
        let new = parse_name(rest.strip_prefix(b" ")?)?;
        return Some((String::from_utf8_lossy(&old).into_owned(), new));
    }
    if header.ends_with(b"\"") {
        // Old name unquoted, new name quoted: the new one starts at the last ` "` that
        // unquotes cleanly to the end of the line.
        for (index, window) in header.windows(2).enumerate().rev() {
            if window == b" \""
                && let Some((new, rest)) = unquote_c_style(&header[index + 1..])
                && rest.is_empty()
            {
                let old = String::from_utf8_lossy(&header[..index]).into_owned();
                return Some((old, String::from_utf8_lossy(&new).into_owned()));
            }
        }
        return None;
    }
    // Unquoted on both sides: equal names split exactly in the middle (git's own rule).
    if header.len() % 2 == 1 {
        let middle = header.len() / 2;
        if header[middle] == b' ' && header[..middle] == header[middle + 1..] {
            let name = String::from_utf8_lossy(&header[..middle]).into_owned();
            return Some((name.clone(), name));
        }
    }
    let spaces = header.iter().filter(|byte| **byte == b' ').count();
    if spaces == 1 {
        let space = header.iter().position(|byte| *byte == b' ')?;
        return Some((
            String::from_utf8_lossy(&header[..space]).into_owned(),
            String::from_utf8_lossy(&header[space + 1..]).into_owned(),
        ));
    }
    None
}

/// Undoes git's C-style quoting of a name starting with `"`. Returns the unquoted bytes and
/// what follows the closing quote.
fn unquote_c_style(quoted: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut bytes = quoted.strip_prefix(b"\"")?.iter().enumerate();
    let body = &quoted[1..];
    let mut unquoted = Vec::with_capacity(body.len());
    while let Some((index, &byte)) = bytes.next() {
        match byte {
            b'"' => return Some((unquoted, &body[index + 1..])),
            b'\\' => {
                let (_, &escaped) = bytes.next()?;
                let replacement = match escaped {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'r' => b'\r',
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'0'..=b'3' => {
                        let (_, &second) = bytes.next()?;
                        let (_, &third) = bytes.next()?;
                        if !(b'0'..=b'7').contains(&second) || !(b'0'..=b'7').contains(&third) {
                            return None;
                        }
                        ((escaped - b'0') << 6) | ((second - b'0') << 3) | (third - b'0')
                    }
                    _ => return None,
                };
                unquoted.push(replacement);
            }
            _ => unquoted.push(byte),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquotes_git_c_style_names() {
        let cases: [(&[u8], &[u8]); 4] = [
            (b"\"a\\tb\"", b"a\tb"),
            (b"\"\\303\\251t\\303\\251.txt\"", "été.txt".as_bytes()),
            (b"\"quote\\\"d\"", b"quote\"d"),
            (b"\"back\\\\slash\"", b"back\\slash"),
        ];
        for (quoted, expected) in cases {
            let (unquoted, rest) = unquote_c_style(quoted).expect("valid quoting");
            assert_eq!(unquoted, expected);
            assert!(rest.is_empty());
        }
        assert!(unquote_c_style(b"\"unterminated").is_none());
    }

    #[test]
    fn separates_header_names() {
        type Case<'a> = (&'a [u8], Option<(&'a str, &'a str)>);
        let cases: [Case; 5] = [
            (b"a.txt a.txt", Some(("a.txt", "a.txt"))),
            (
                b"dir with space/f dir with space/f",
                Some(("dir with space/f", "dir with space/f")),
            ),
            (b"old.txt new.txt", Some(("old.txt", "new.txt"))),
            (b"\"t\\tab\" \"t\\tab\"", Some(("t\tab", "t\tab"))),
            (b"a b c d", None),
        ];
        for (header, expected) in cases {
            let parsed = parse_header_names(header);
            assert_eq!(
                parsed
                    .as_ref()
                    .map(|(old, new)| (old.as_str(), new.as_str())),
                expected,
                "{}",
                String::from_utf8_lossy(header)
            );
        }
    }
}
