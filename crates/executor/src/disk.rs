//! Free space on the disk of the executor's work folder. A full disk is the machine's problem,
//! not the batch spec's: the executor takes no job while space is short (so it does not burn
//! jobs' attempts), and a job that failed on a full disk is reported as an infrastructure
//! failure, which the server retries instead of failing the workspace for good.

use std::path::Path;

/// Bytes an unprivileged process may still write on the filesystem holding `path`.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidInput, error))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `bytes` is a NUL-terminated path and `stat` points to writable memory of the
    // right type; statvfs only writes into it.
    let result = unsafe { libc::statvfs(bytes.as_ptr(), stat.as_mut_ptr()) };
    if result != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs succeeded, so it filled the structure.
    let stat = unsafe { stat.assume_init() };
    // Both fields are 32 bits wide on some targets.
    #[allow(clippy::unnecessary_cast)]
    let (blocks, block_size) = (stat.f_bavail as u64, stat.f_frsize as u64);
    Ok(blocks.saturating_mul(block_size))
}

/// Whether a tool's message says it ran out of disk space (ENOSPC, EDQUOT).
pub fn mentions_full_disk(text: &str) -> bool {
    text.contains("No space left on device") || text.contains("Disk quota exceeded") || text.contains("ENOSPC")
}

/// The free bytes when the disk of `work_directory` holds less than `minimum`, else `None`.
/// Free space that cannot be read is logged and not held against the executor.
pub fn is_short_of_space(work_directory: &Path, minimum: u64) -> Option<u64> {
    match free_bytes(work_directory) {
        Ok(free) if free < minimum => Some(free),
        Ok(_) => None,
        Err(error) => {
            tracing::warn!(path = %work_directory.display(), %error, "cannot read the work folder's free space");
            None
        }
    }
}

/// "3.2 MiB".
pub fn describe_bytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_read_and_full_disk_messages_are_recognised() {
        let folder = tempfile::tempdir().expect("temp dir");
        assert!(free_bytes(folder.path()).expect("statvfs") > 0);
        assert!(free_bytes(&folder.path().join("missing")).is_err());
        assert_eq!(is_short_of_space(folder.path(), 0), None);
        assert!(is_short_of_space(folder.path(), u64::MAX).is_some());
        assert!(mentions_full_disk("stderr: dd: error writing 'x': No space left on device"));
        assert!(mentions_full_disk("write failed: Disk quota exceeded"));
        assert!(!mentions_full_disk("exit status 1"));
        assert_eq!(describe_bytes(3 << 20), "3.0 MiB");
    }
}
