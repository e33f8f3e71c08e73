//! The store's error type. Variants are chosen so the server can map each to one HTTP status
//! without looking at database details.

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The addressed row does not exist (HTTP 404).
    #[error("{what} not found")]
    NotFound { what: String },
    /// A unique constraint would be violated, e.g. a taken username (HTTP 409).
    #[error("conflict: {message}")]
    Conflict { message: String },
    /// The row exists but is not in a state that allows the operation, e.g. appending a log entry
    /// to a job this executor no longer owns (HTTP 409 or 404 depending on the caller).
    #[error("invalid state: {message}")]
    InvalidState { message: String },
    /// A stored JSON document or enum value could not be decoded: the database holds data this
    /// version does not understand.
    #[error("corrupt stored value: {message}")]
    Corrupt { message: String },
    /// Applying the embedded schema migrations failed.
    #[error("migrating the database schema failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database cannot be reached right now (PostgreSQL stopped or restarting, the
    /// connection lost, no connection free in time). Nothing was written; the same request
    /// may succeed shortly (HTTP 503).
    #[error("the database is unavailable ({message}); try again shortly")]
    Unavailable { message: String },
    /// The disk holding the database is full (SQLite's data folder, or PostgreSQL's). The
    /// transaction was rolled back; writes fail until space is freed (HTTP 507).
    #[error("the database's disk is full ({message}): free space on it (the server's data folder, or PostgreSQL's) and try again")]
    StorageFull { message: String },
    /// Any other database failure (HTTP 500).
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// A failure on the SQLite queue thread's own connection (HTTP 500).
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

impl StoreError {
    pub(crate) fn not_found(what: impl Into<String>) -> StoreError {
        StoreError::NotFound { what: what.into() }
    }

    pub(crate) fn invalid_state(message: impl Into<String>) -> StoreError {
        StoreError::InvalidState {
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        match &error {
            sqlx::Error::RowNotFound => StoreError::not_found("row"),
            sqlx::Error::Database(database_error) if database_error.is_unique_violation() => {
                StoreError::Conflict {
                    message: database_error.message().to_owned(),
                }
            }
            sqlx::Error::Database(database_error) if database_error.code().as_deref().is_some_and(means_disk_full) => {
                StoreError::StorageFull { message: database_error.message().to_owned() }
            }
            sqlx::Error::Database(database_error) if database_error.code().as_deref().is_some_and(means_unavailable) => {
                StoreError::Unavailable { message: database_error.message().to_owned() }
            }
            sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                StoreError::Unavailable { message: error.to_string() }
            }
            _ => StoreError::Database(error),
        }
    }
}

/// A database error code saying the disk is full: PostgreSQL's SQLSTATE class 53100
/// `disk_full`, SQLite's `SQLITE_FULL` (13, which sqlx reports as the number).
fn means_disk_full(code: &str) -> bool {
    code == "53100" || code == "13"
}

/// A PostgreSQL SQLSTATE saying the server is going away or not there yet: class 08
/// (connection exception), 57P01 `admin_shutdown`, 57P02 `crash_shutdown`, 57P03
/// `cannot_connect_now` (starting up or shutting down), 53300 `too_many_connections`.
fn means_unavailable(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> StoreError {
        match &error {
            rusqlite::Error::SqliteFailure(failure, message)
                if failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || failure.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                StoreError::Conflict { message: message.clone().unwrap_or_else(|| failure.to_string()) }
            }
            rusqlite::Error::SqliteFailure(failure, message) if failure.code == rusqlite::ErrorCode::DiskFull => {
                StoreError::StorageFull { message: message.clone().unwrap_or_else(|| failure.to_string()) }
            }
            _ => StoreError::Sqlite(error),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> StoreError {
        StoreError::Corrupt {
            message: format!("JSON: {error}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_absent_database_and_a_full_disk_are_told_apart_from_other_failures() {
        for error in [sqlx::Error::PoolTimedOut, sqlx::Error::PoolClosed, sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into())] {
            let mapped = StoreError::from(error);
            assert!(matches!(mapped, StoreError::Unavailable { .. }), "{mapped:?}");
            assert!(mapped.to_string().contains("try again shortly"), "{mapped}");
        }
        assert!(matches!(StoreError::from(sqlx::Error::RowNotFound), StoreError::NotFound { .. }));
        assert!(matches!(StoreError::from(sqlx::Error::Protocol("odd".into())), StoreError::Database(_)));
        assert!(means_disk_full("53100") && means_disk_full("13") && !means_disk_full("23505"));
        for code in ["08006", "08001", "57P01", "57P02", "57P03", "53300"] {
            assert!(means_unavailable(code), "{code}");
        }
        assert!(!means_unavailable("23505") && !means_unavailable("40001"));
        let full = StoreError::StorageFull { message: "database or disk is full".into() };
        assert!(full.to_string().contains("free space"), "{full}");
    }
}
