//! Reading a commit's files without a working tree, fast enough for code search over
//! thousands of files: one `git ls-tree` call for the listing, and one long-lived
//! `git cat-file --batch` process per repository for the contents.

use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::Mutex;

use crate::command::GitCommand;
use crate::error::GitError;
use crate::names::{CommitId, ObjectId, RepoPath};

/// A file in a commit's tree, as listed by [`list_files`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TreeEntry {
    /// Path from the repository root, `/`-separated. Bytes that are not UTF-8 are replaced by
    /// U+FFFD, so such a path is for display and search, not for writing back.
    pub path: String,
    /// The blob id (for a submodule entry: the id of the submodule's commit).
    pub blob_id: ObjectId,
    /// Size in bytes; `None` for submodule entries, which have no blob here.
    pub size: Option<u64>,
    /// The git file mode: `0o100644` regular, `0o100755` executable, `0o120000` symbolic link,
    /// `0o160000` submodule.
    pub mode: u32,
}

impl TreeEntry {
    /// True for symbolic links (the blob holds the link target).
    pub fn is_symlink(&self) -> bool {
        self.mode == 0o120000
    }

    /// True for submodule (gitlink) entries.
    pub fn is_submodule(&self) -> bool {
        self.mode == 0o160000
    }
}

/// Every file (blob, symbolic link, submodule) in `commit`'s tree, recursively, in git's order.
pub async fn list_files(repository: &Path, commit: &CommitId) -> Result<Vec<TreeEntry>, GitError> {
    let command = GitCommand::in_git_dir(repository)
        .args(["ls-tree", "-r", "-z", "--long", "--full-tree"])
        .arg(commit.as_str());
    let display_command =
        GitCommand::in_git_dir(repository).args(["ls-tree", "-r", commit.as_str()]);
    let stdout = command.run().await?;
    let mut entries = Vec::new();
    for record in stdout
        .split(|byte| *byte == 0)
        .filter(|record| !record.is_empty())
    {
        let entry = parse_ls_tree_record(record).ok_or_else(|| {
            display_command.unexpected_output(format!(
                "unparsable entry {:?}",
                String::from_utf8_lossy(record)
            ))
        })?;
        entries.push(entry);
    }
    Ok(entries)
}

/// Parses `<mode> SP <type> SP <object> SP+ <size or -> TAB <path>`.
fn parse_ls_tree_record(record: &[u8]) -> Option<TreeEntry> {
    let tab = record.iter().position(|byte| *byte == b'\t')?;
    let (metadata, path) = (&record[..tab], &record[tab + 1..]);
    let metadata = std::str::from_utf8(metadata).ok()?;
    let mut fields = metadata.split_ascii_whitespace();
    let mode = u32::from_str_radix(fields.next()?, 8).ok()?;
    let _object_type = fields.next()?;
    let blob_id = ObjectId::new(fields.next()?).ok()?;
    let size = match fields.next()? {
        "-" => None,
        size => Some(size.parse().ok()?),
    };
    Some(TreeEntry {
        path: String::from_utf8_lossy(path).into_owned(),
        blob_id,
        size,
        mode,
    })
}

/// True when `path` exists in `commit`'s tree (as a file, link, submodule or directory).
/// Used to look for `.batchignore` without a checkout.
pub async fn file_exists(
    repository: &Path,
    commit: &CommitId,
    path: &RepoPath,
) -> Result<bool, GitError> {
    let stdout = GitCommand::in_git_dir(repository)
        .env("GIT_LITERAL_PATHSPECS", "1")
        .args(["ls-tree", "-z", "--name-only", "--full-tree"])
        .arg(commit.as_str())
        .arg("--")
        .arg(path.as_str())
        .run()
        .await?;
    Ok(stdout
        .split(|byte| *byte == 0)
        .any(|name| name == path.as_str().as_bytes()))
}

/// One long-lived `git cat-file --batch` process for a repository, returning object contents by
/// id without starting a process per object. Calls are serialised; keep one reader per
/// repository and share it (it is `Sync`).
///
/// A call that is cancelled midway leaves the process in an unknown position of its output, so
/// the next call replaces the process; an i/o error does the same.
#[derive(Debug)]
pub struct BlobReader {
    repository: PathBuf,
    process: Mutex<Option<BatchProcess>>,
}

#[derive(Debug)]
struct BatchProcess {
    // Kept so the process is killed when the reader is dropped (kill_on_drop).
    _child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Set while a request is being answered; still set on the next call means the previous
    /// call was cancelled and the stream position is unknown.
    request_in_flight: bool,
}

impl BlobReader {
    /// A reader for the repository at `repository` (a git directory). The process starts on
    /// the first read.
    pub fn new(repository: &Path) -> BlobReader {
        BlobReader {
            repository: repository.to_path_buf(),
            process: Mutex::new(None),
        }
    }

    fn command(&self) -> GitCommand {
        GitCommand::in_git_dir(&self.repository).args(["cat-file", "--batch"])
    }

    /// The contents of blob `id`, or `None` when the repository has no such object.
    /// An object that exists but is not a blob is an error.
    pub async fn read_blob(&self, id: &ObjectId) -> Result<Option<Vec<u8>>, GitError> {
        let mut guard = self.process.lock().await;
        if guard
            .as_ref()
            .is_some_and(|process| process.request_in_flight)
        {
            *guard = None;
        }
        if guard.is_none() {
            *guard = Some(self.start()?);
        }
        let Some(process) = guard.as_mut() else {
            return Err(self
                .command()
                .unexpected_output("cat-file process vanished"));
        };
        process.request_in_flight = true;
        let result = self.request(process, id).await;
        match &result {
            Ok(_) => process.request_in_flight = false,
            Err(_) => *guard = None,
        }
        result
    }

    fn start(&self) -> Result<BatchProcess, GitError> {
        let mut child = self.command().spawn_piped(false)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(self
                .command()
                .unexpected_output("cat-file started without pipes"));
        };
        Ok(BatchProcess {
            _child: child,
            stdin,
            stdout: BufReader::with_capacity(64 * 1024, stdout),
            request_in_flight: false,
        })
    }

    async fn request(
        &self,
        process: &mut BatchProcess,
        id: &ObjectId,
    ) -> Result<Option<Vec<u8>>, GitError> {
        let command = self.command();
        let pipe_error = |source| command.pipe_error(source);
        process
            .stdin
            .write_all(format!("{id}\n").as_bytes())
            .await
            .map_err(pipe_error)?;
        process.stdin.flush().await.map_err(pipe_error)?;
        let mut header = String::new();
        let read = process
            .stdout
            .read_line(&mut header)
            .await
            .map_err(pipe_error)?;
        if read == 0 {
            return Err(command
                .unexpected_output("cat-file exited; is the repository path a git directory?"));
        }
        let header = header.trim_end();
        if header.ends_with(" missing") || header.ends_with(" ambiguous") {
            return Ok(None);
        }
        let mut fields = header.split(' ');
        let (Some(_object), Some(object_type), Some(size), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(command.unexpected_output(format!("bad header {header:?}")));
        };
        let size: usize = size
            .parse()
            .map_err(|_| command.unexpected_output(format!("bad size in header {header:?}")))?;
        let mut contents = vec![0; size];
        process
            .stdout
            .read_exact(&mut contents)
            .await
            .map_err(pipe_error)?;
        let mut newline = [0u8; 1];
        process
            .stdout
            .read_exact(&mut newline)
            .await
            .map_err(pipe_error)?;
        if object_type != "blob" {
            return Err(GitError::invalid(
                "blob id",
                id.as_str(),
                "the object exists but is not a blob",
            ));
        }
        Ok(Some(contents))
    }
}
