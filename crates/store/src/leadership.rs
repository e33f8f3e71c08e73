//! Duties one server process does for the whole database: the rollout scheduler (whose pace
//! two processes would double) and the periodic changeset sync (whose forge requests two
//! processes would double). Each is led by one process at a time.
//!
//! On PostgreSQL a leader holds a session advisory lock (`pg_try_advisory_lock`) on its own
//! connection, taken out of the pool: when the process dies, its connection closes and the lock
//! is released, so another server takes the duty over at its next try. On SQLite there is one
//! server by construction, and it always leads.

use sqlx::Connection;

use crate::Store;
use crate::error::StoreError;

/// A duty this process leads, held until dropped (or its connection is lost).
pub struct Leadership {
    /// PostgreSQL only: the connection holding the advisory lock.
    connection: Option<sqlx::PgConnection>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Leadership").field("postgres", &self.connection.is_some()).finish()
    }
}

/// The advisory lock key of a duty: a stable 64-bit hash of its name (FNV-1a).
fn duty_key(duty: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in duty.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

impl Store {
    /// Takes the lead of `duty` if no other process of this database has it; `None` when one
    /// does (try again later).
    pub async fn try_lead(&self, duty: &str) -> Result<Option<Leadership>, StoreError> {
        match self.backend() {
            crate::backend::Backend::Sqlite(_) => Ok(Some(Leadership { connection: None })),
            crate::backend::Backend::Postgres(pool) => {
                let mut connection = pool.acquire().await?.detach();
                let taken: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(duty_key(duty)).fetch_one(&mut connection).await?;
                if taken {
                    Ok(Some(Leadership { connection: Some(connection) }))
                } else {
                    let _ = connection.close().await;
                    Ok(None)
                }
            }
        }
    }
}

impl Leadership {
    /// Whether the lead still holds: on PostgreSQL, whether the connection holding the lock
    /// still answers (a lost connection released it, and another process may lead now).
    pub async fn still_held(&mut self) -> bool {
        match &mut self.connection {
            None => true,
            Some(connection) => connection.ping().await.is_ok(),
        }
    }
}
