//! Test databases: a fresh SQLite file per test, and a fresh PostgreSQL database per test created
//! from `FLOTILLA_TEST_POSTGRES_URL`. Without that variable the PostgreSQL tests are skipped with
//! a notice, unless `FLOTILLA_REQUIRE_ALL_TOOLS=1` (set by CI), in which case they fail.

use std::sync::atomic::{AtomicUsize, Ordering};

use flotilla_store::Store;
use sqlx::{Connection, Executor};

pub struct SqliteDatabase {
    pub store: Store,
    _directory: tempfile::TempDir,
}

pub async fn sqlite_database() -> SqliteDatabase {
    let directory = tempfile::tempdir().expect("creating a temporary directory");
    let path = directory.path().join("flotilla.db");
    let store = Store::open(path.to_str().expect("temporary path is UTF-8"))
        .await
        .expect("opening SQLite");
    store.migrate().await.expect("migrating SQLite");
    SqliteDatabase {
        store,
        _directory: directory,
    }
}

pub struct PostgresDatabase {
    pub store: Store,
    admin_url: String,
    name: String,
}

static NEXT_DATABASE: AtomicUsize = AtomicUsize::new(0);

/// Replaces the database name (the last path segment) of a PostgreSQL URL.
fn with_database_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let prefix_end = base
        .rfind('/')
        .expect("a PostgreSQL URL has a /database part");
    let mut result = format!("{}/{name}", &base[..prefix_end]);
    if let Some(query) = query {
        result.push('?');
        result.push_str(query);
    }
    result
}

pub async fn postgres_database(test_name: &str) -> Option<PostgresDatabase> {
    let admin_url = match std::env::var("FLOTILLA_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => {
            let explanation = "FLOTILLA_TEST_POSTGRES_URL is not set. Start PostgreSQL 15 \
                (e.g. `pg_ctlcluster 15 main start`) and export \
                FLOTILLA_TEST_POSTGRES_URL=postgres://postgres:postgres@127.0.0.1:5432/postgres \
                (a role allowed to CREATE DATABASE); each test creates and drops its own database.";
            if std::env::var("FLOTILLA_REQUIRE_ALL_TOOLS").as_deref() == Ok("1") {
                panic!("{explanation}");
            }
            eprintln!("skipping PostgreSQL test {test_name}: {explanation}");
            return None;
        }
    };
    let name = format!(
        "flotilla_test_{}_{}_{}",
        std::process::id(),
        NEXT_DATABASE.fetch_add(1, Ordering::SeqCst),
        test_name.chars().take(30).collect::<String>()
    );
    let mut admin = sqlx::PgConnection::connect(&admin_url)
        .await
        .expect("connecting to FLOTILLA_TEST_POSTGRES_URL");
    admin
        .execute(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name}"
        )))
        .await
        .expect("dropping a leftover test database");
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .expect("creating a test database");
    admin.close().await.expect("closing the admin connection");
    let store = Store::open(&with_database_name(&admin_url, &name))
        .await
        .expect("opening PostgreSQL");
    store.migrate().await.expect("migrating PostgreSQL");
    Some(PostgresDatabase {
        store,
        admin_url,
        name,
    })
}

impl PostgresDatabase {
    pub async fn drop_database(self) {
        self.store.close().await;
        let mut admin = sqlx::PgConnection::connect(&self.admin_url)
            .await
            .expect("reconnecting as admin");
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await
            .expect("dropping the test database");
    }
}

/// Generates, for each conformance function `name(Store)`, one test per backend.
#[macro_export]
macro_rules! conformance_tests {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let database = $crate::common::sqlite_database().await;
                    super::$name(database.store.clone()).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(database) = $crate::common::postgres_database(stringify!($name)).await else {
                        return;
                    };
                    super::$name(database.store.clone()).await;
                    database.drop_database().await;
                }
            )*
        }
    };
}
