//! The git command line as a small, safe async library.
//!
//! Flotilla's server keeps bare mirrors of code-host repositories, reads their trees for code
//! search, serves them to executors over git's smart HTTP protocol, and turns changeset diffs
//! into commits it pushes back to the code host. Executors fetch a job's commit into a
//! per-repository cache, check it out into a fresh working directory and compute the diff a
//! batch spec's steps produced. All of that is here, as functions over paths.
//!
//! Architecture invariants:
//! - every git process starts through [`command::GitCommand`]: hermetic environment, explicit
//!   repository, killed on drop, typed errors (see that module);
//! - credentials reach git only as an environment-provided `http.extraHeader`, never in argv,
//!   URLs, errors or logs;
//! - names from users (branches, commit ids, paths) are validated newtypes ([`names`]) before
//!   they reach argv, and none can be mistaken for an option;
//! - the diff parsing in [`diff`] is pure (no IO) so it tests instantly.
//!
//! Code map: [`discovery`] finds repositories in a directory tree; [`mirror`] creates and
//! updates mirrors and answers branch questions; [`tree`] lists files and reads blobs;
//! [`smart_http`] serves fetches; [`workspace`] prepares executor workspaces and diffs them;
//! `refs` reads refs and `objects` writes objects without starting git;
//! [`diff`] parses diffs; [`commit`] applies a diff as a commit and pushes it.

pub mod command;
pub mod commit;
pub mod diff;
pub mod discovery;
pub mod error;
pub mod mirror;
pub mod names;
mod objects;
mod refs;
pub mod smart_http;
pub mod tree;
pub mod workspace;

pub use command::Credentials;
pub use commit::{GitTime, PushOptions, Signature, commit_diff, delete_remote_branch, push};
pub use diff::{
    ChangedFiles, DiffParseError, DiffStat, FileChangeKind, FileDiff, changed_files, diff_stat,
    split_diff_by_file,
};
pub use discovery::{DiscoveredRepository, discover_repositories};
pub use error::{GitError, RemoteFailureKind};
pub use mirror::{
    Branch, FetchOutcome, RefChange, RemoteOptions, create_mirror, default_branch, fetch_mirror,
    list_branches, resolve_branch,
};
pub use names::{BranchName, CommitId, ObjectId, RepoPath};
pub use smart_http::{
    ADVERTISEMENT_CONTENT_TYPE, REQUEST_CONTENT_TYPE, RESULT_CONTENT_TYPE, UploadPackResponse,
    advertise_upload_pack, upload_pack,
};
pub use tree::{BlobReader, TreeEntry, file_exists, list_files};
pub use workspace::{PreparedWorkspace, WorkspaceCache, diff_workspace};

/// A string that is unique within this machine for naming temporary files and directories:
/// process id, a per-process counter and the current time in nanoseconds.
pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{count}-{nanos}", std::process::id())
}
