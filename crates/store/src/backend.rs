//! Connection handling: opening either backend, running its migrations, and the two macros every
//! query goes through (`on_pool!` for single statements, `write_transaction!` for atomic groups).
//!
//! The macros expand the same query code once per backend. That keeps one copy of each query in
//! the source while sqlx still sees concrete database types (no `Any` driver and its type gaps).

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::StoreError;

/// Which SQL dialect a statement is being prepared for, for the few places that differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The row-locking suffix for "take the first row nobody else is taking". SQLite needs none
    /// because the whole write transaction holds the database's single write lock.
    pub(crate) fn skip_locked(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }
}

pub(crate) enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

struct StoreInner {
    backend: Backend,
    /// SQLite has one writer at a time. Queueing writers here, in-process, instead of letting them
    /// spin in SQLite's busy handler (which sleeps in growing steps) keeps dequeue latency flat
    /// under many concurrent executors. `busy_timeout` still covers other processes.
    sqlite_write_lock: tokio::sync::Mutex<()>,
    /// SQLite only: the queue's hot transactions run here (see `sqlite_queue`).
    sqlite_queue: Option<crate::sqlite_queue::QueueThread>,
}

/// The database handle. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Store {
    inner: Arc<StoreInner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Store")
            .field("dialect", &self.dialect())
            .finish()
    }
}

impl Store {
    /// Opens a store. `url` is `postgres://…`/`postgresql://…` for PostgreSQL, `sqlite://path?mode=rwc`
    /// or a plain file path for SQLite (the file is created if missing). Does not migrate.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        let mut sqlite_queue = None;
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            // While PostgreSQL is away (restarting, failing over) a request waits this long for
            // a connection and then fails as `StoreError::Unavailable` (HTTP 503), instead of
            // holding its caller for half a minute; connections are checked before use, so
            // the pool reconnects by itself once the database is back.
            let pool = PgPoolOptions::new()
                .max_connections(16)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            Backend::Postgres(pool)
        } else {
            let base_options = if url.starts_with("sqlite:") {
                SqliteConnectOptions::from_str(url)?
            } else {
                SqliteConnectOptions::new()
                    .filename(url)
                    .create_if_missing(true)
            };
            let options = base_options
                .journal_mode(SqliteJournalMode::Wal)
                // NORMAL is durable across application crashes in WAL mode; only an OS crash can
                // lose the last transactions, which the queue's reset logic tolerates.
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(30))
                .foreign_keys(true);
            let file = options.get_filename().to_path_buf();
            let pool = SqlitePoolOptions::new()
                .max_connections(8)
                .acquire_timeout(Duration::from_secs(30))
                // When the disk is full SQLite rolls a failing transaction back by itself, so
                // sqlx's own ROLLBACK (or COMMIT) fails and it keeps counting the transaction
                // as open: reused, the connection would refuse every later BEGIN ("non-zero
                // transaction depth") long after space was freed. Such a connection is closed
                // instead of going back to the pool.
                .after_release(|connection, _| Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(connection)) }))
                .connect_with(options)
                .await?;
            sqlite_queue = Some(crate::sqlite_queue::QueueThread::open(&file)?);
            Backend::Sqlite(pool)
        };
        Ok(Store {
            inner: Arc::new(StoreInner {
                backend,
                sqlite_write_lock: tokio::sync::Mutex::new(()),
                sqlite_queue,
            }),
        })
    }

    /// Applies the embedded migrations for this backend (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match &self.inner.backend {
            Backend::Sqlite(pool) => sqlx::migrate!("./migrations/sqlite").run(pool).await?,
            Backend::Postgres(pool) => sqlx::migrate!("./migrations/postgres").run(pool).await?,
        }
        Ok(())
    }

    /// Which backend this store talks to.
    pub fn dialect(&self) -> Dialect {
        match &self.inner.backend {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        match &self.inner.backend {
            Backend::Sqlite(pool) => pool.close().await,
            Backend::Postgres(pool) => pool.close().await,
        }
    }

    pub(crate) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(crate) fn sqlite_write_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.inner.sqlite_write_lock
    }

    pub(crate) fn sqlite_queue(&self) -> Option<&crate::sqlite_queue::QueueThread> {
        self.inner.sqlite_queue.as_ref()
    }
}

/// Commits on success and rolls back explicitly on failure, so the connection goes back to the
/// pool clean either way.
pub(crate) async fn finish_transaction<DB: sqlx::Database, T>(
    transaction: sqlx::Transaction<'static, DB>,
    outcome: Result<T, StoreError>,
) -> Result<T, StoreError> {
    match outcome {
        Ok(value) => {
            transaction.commit().await?;
            Ok(value)
        }
        Err(error) => {
            // The original error is the one worth reporting; a failed rollback closes the
            // connection anyway.
            let _ignored = transaction.rollback().await;
            Err(error)
        }
    }
}

/// Runs `$body` once with `$pool` bound to the concrete pool and `$dialect` to its [`Dialect`].
/// For reads and for single statements that are atomic on their own.
macro_rules! on_pool {
    ($store:expr, $pool:ident, $dialect:ident => $body:expr) => {
        match $store.backend() {
            $crate::backend::Backend::Sqlite($pool) => {
                let $dialect = $crate::backend::Dialect::Sqlite;
                let _ = &$dialect;
                $body
            }
            $crate::backend::Backend::Postgres($pool) => {
                let $dialect = $crate::backend::Dialect::Postgres;
                let _ = &$dialect;
                $body
            }
        }
    };
}

/// Runs `$body` (which evaluates to `Result<T, StoreError>`, and may use `?`) inside one write
/// transaction with `$tx: &mut Transaction`. SQLite transactions start with `BEGIN IMMEDIATE` so
/// the write lock is taken up front: a deferred transaction that reads first and writes later can
/// fail with SQLITE_BUSY when another writer commits in between.
macro_rules! write_transaction {
    ($store:expr, $tx:ident, $dialect:ident => $body:expr) => {
        match $store.backend() {
            $crate::backend::Backend::Sqlite(pool) => {
                let _serialised_writer = $store.sqlite_write_lock().lock().await;
                let mut transaction = pool.begin_with("BEGIN IMMEDIATE").await?;
                let $dialect = $crate::backend::Dialect::Sqlite;
                let _ = &$dialect;
                let outcome: Result<_, $crate::error::StoreError> = {
                    let $tx = &mut transaction;
                    async { $body }.await
                };
                $crate::backend::finish_transaction(transaction, outcome).await
            }
            $crate::backend::Backend::Postgres(pool) => {
                let mut transaction = pool.begin().await?;
                let $dialect = $crate::backend::Dialect::Postgres;
                let _ = &$dialect;
                let outcome: Result<_, $crate::error::StoreError> = {
                    let $tx = &mut transaction;
                    async { $body }.await
                };
                $crate::backend::finish_transaction(transaction, outcome).await
            }
        }
    };
}

/// `$start, $start+1, …` as `$n` placeholders joined by commas, for `IN (…)` lists and
/// multi-row `VALUES`. Only numbers go into the text, never caller data.
pub(crate) fn placeholders(start: usize, count: usize) -> String {
    let mut text = String::with_capacity(count * 5);
    for offset in 0..count {
        if offset > 0 {
            text.push_str(", ");
        }
        text.push('$');
        text.push_str(&(start + offset).to_string());
    }
    text
}

/// `VALUES` rows for a multi-row insert: `($1, $2), ($3, $4)` for 2 rows of 2 columns on
/// PostgreSQL, `(?, ?), (?, ?)` on SQLite. SQLite finds a named parameter (`$7`) by walking a
/// list of every name in the statement, and sqlx asks for each one: quadratic in the number
/// of parameters, which made 500-row inserts (4,000 parameters) cost more than the insert.
/// Anonymous parameters are bound by position without names.
pub(crate) fn values_rows(dialect: Dialect, row_count: usize, column_count: usize) -> String {
    let mut text = String::new();
    for row in 0..row_count {
        if row > 0 {
            text.push_str(", ");
        }
        text.push('(');
        match dialect {
            Dialect::Postgres => text.push_str(&placeholders(1 + row * column_count, column_count)),
            Dialect::Sqlite => text.push_str(&vec!["?"; column_count].join(", ")),
        }
        text.push(')');
    }
    text
}

/// Rows per multi-row INSERT statement: keeps bind parameters far below SQLite's 32,766 and
/// PostgreSQL's 65,535 limits for every table we bulk insert into.
pub(crate) const BULK_INSERT_ROWS: usize = 500;
