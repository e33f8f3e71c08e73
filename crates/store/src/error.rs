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
            _ => StoreError::Database(error),
        }
    }
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
