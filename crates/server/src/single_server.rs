//! One server process per SQLite database: a second `flotilla server` (or `flotilla up`) on the
//! same database file is refused at start with what to do instead.
//!
//! SQLite serves one process well, and the server relies on that there: the queue's reports
//! reuse the jobs this process handed out from memory (see `executor_api`). Several servers of
//! one database need PostgreSQL (RELIABILITY.md, "Running two servers"). The claim is an
//! advisory `flock` on `<database>.server-lock`, held until the process exits, so a killed
//! server never leaves a stale lock behind; a process may open its own database again (tests
//! restart servers in-process).

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

/// The lock files this process holds, by database path.
static HELD: Mutex<Option<HashMap<PathBuf, File>>> = Mutex::new(None);

/// Claims `database` for this process, or says which process has it and what to do.
pub fn claim(database: &Path) -> anyhow::Result<()> {
    let absolute = std::path::absolute(database).unwrap_or_else(|_| database.to_path_buf());
    let mut held = HELD.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let held = held.get_or_insert_with(HashMap::new);
    if held.contains_key(&absolute) {
        return Ok(());
    }
    let mut name = absolute.as_os_str().to_owned();
    name.push(".server-lock");
    let lock_path = PathBuf::from(name);
    if let Some(parent) = lock_path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let process = if holder.is_empty() { String::new() } else { format!(" (process {holder})") };
            anyhow::bail!(
                "another Flotilla server{process} is using the SQLite database {}: SQLite serves one server process. \
                 Stop the other server, give this one another --data-dir, or run several servers on one PostgreSQL \
                 database (--database-url postgres://...; see RELIABILITY.md, \"Running two servers\")",
                absolute.display()
            );
        }
        Err(std::fs::TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("locking {}", lock_path.display()));
        }
    }
    // Who holds it, for the message a second server prints.
    let _ = file.set_len(0).and_then(|()| file.rewind()).and_then(|()| write!(file, "{}", std::process::id()));
    held.insert(absolute, file);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_held_by_another_open_file_is_refused_with_advice_and_this_process_may_reopen_its_own() {
        let folder = tempfile::tempdir().expect("temp dir");
        let database = folder.path().join("flotilla.sqlite");
        claim(&database).expect("the first claim");
        claim(&database).expect("this process opens its own database again");
        // Another process is simulated by a second open file description holding the lock.
        let other = folder.path().join("other.sqlite");
        let lock = File::create(folder.path().join("other.sqlite.server-lock")).expect("lock file");
        lock.lock().expect("lock");
        let refused = claim(&other).expect_err("held by someone else");
        let message = format!("{refused:#}");
        assert!(message.contains("another Flotilla server"), "{message}");
        assert!(message.contains("PostgreSQL"), "{message}");
        drop(lock);
        claim(&other).expect("free once the other let go");
    }
}
