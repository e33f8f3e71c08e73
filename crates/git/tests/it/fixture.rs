//! Test repositories built with the git CLI, with frozen identities and dates so commit ids are
//! stable from run to run (each commit is one second after the previous one).

use std::path::{Path, PathBuf};
use std::process::Command;

use flotilla_git::CommitId;

/// The first fixture commit's time; later commits add one second each.
const EPOCH: u64 = 1_700_000_000;

/// A non-bare repository being built for a test.
pub struct FixtureRepository {
    pub path: PathBuf,
    commits_made: u64,
}

impl FixtureRepository {
    /// `git init -b main` at `path` (created if missing).
    pub fn init(path: &Path) -> FixtureRepository {
        std::fs::create_dir_all(path).expect("create fixture directory");
        git(path, &["init", "--quiet", "--initial-branch=main"]);
        FixtureRepository {
            path: path.to_path_buf(),
            commits_made: 0,
        }
    }

    pub fn write(&self, relative: &str, contents: impl AsRef<[u8]>) -> &FixtureRepository {
        let file = self.path.join(relative);
        std::fs::create_dir_all(file.parent().expect("file has a parent"))
            .expect("create parent directories");
        std::fs::write(&file, contents).expect("write fixture file");
        self
    }

    pub fn remove(&self, relative: &str) -> &FixtureRepository {
        std::fs::remove_file(self.path.join(relative)).expect("remove fixture file");
        self
    }

    /// Stages everything and commits with a frozen author, committer and date.
    pub fn commit(&mut self, message: &str) -> CommitId {
        self.commits_made += 1;
        git(&self.path, &["add", "--all"]);
        let date = format!("@{} +0000", EPOCH + self.commits_made);
        let status = base_command(&self.path)
            .args(["commit", "--quiet", "--allow-empty", "-m", message])
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .status()
            .expect("run git commit");
        assert!(status.success(), "git commit failed");
        self.head()
    }

    pub fn head(&self) -> CommitId {
        CommitId::new(git(&self.path, &["rev-parse", "HEAD"]).trim()).expect("HEAD is a commit id")
    }

    pub fn git(&self, arguments: &[&str]) -> String {
        git(&self.path, arguments)
    }
}

/// A git command with the fixture environment: no user or system config, frozen identity.
pub fn base_command(directory: &Path) -> Command {
    let mut command = Command::new("git");
    command
        .current_dir(directory)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Fixture Author")
        .env("GIT_AUTHOR_EMAIL", "author@example.com")
        .env("GIT_COMMITTER_NAME", "Fixture Committer")
        .env("GIT_COMMITTER_EMAIL", "committer@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE");
    command
}

/// Runs git in `directory`, panics with stderr on failure, returns stdout.
pub fn git(directory: &Path, arguments: &[&str]) -> String {
    let output = base_command(directory)
        .args(arguments)
        .output()
        .expect("run git");
    assert!(
        output.status.success(),
        "git {arguments:?} failed in {}: {}",
        directory.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A bare clone of `source` at `destination`, the way a code host stores repositories.
pub fn bare_clone(source: &Path, destination: &Path) {
    let parent = destination.parent().expect("destination has a parent");
    std::fs::create_dir_all(parent).expect("create parent");
    git(
        parent,
        &[
            "clone",
            "--quiet",
            "--bare",
            &source.display().to_string(),
            &destination.display().to_string(),
        ],
    );
}

/// A small repository with a few commits, used by several tests.
/// Returns the repository and its commits in order.
pub fn sample_repository(path: &Path) -> (FixtureRepository, Vec<CommitId>) {
    let mut repository = FixtureRepository::init(path);
    repository
        .write("README.md", "# Sample\n")
        .write("src/main.rs", "fn main() {\n    println!(\"hello\");\n}\n")
        .write("src/lib.rs", "pub fn answer() -> u32 {\n    42\n}\n")
        .write("docs/guide.md", "Guide\n")
        .write("dir with space/file name.txt", "spaces\n");
    let first = repository.commit("initial commit");
    repository.write("src/lib.rs", "pub fn answer() -> u32 {\n    43\n}\n");
    let second = repository.commit("change the answer");
    (repository, vec![first, second])
}
