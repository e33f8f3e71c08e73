//! Flotilla's database layer: the only crate that knows SQL.
//!
//! One [`Store`] value fronts two real backends with the same logical schema: embedded SQLite
//! (the default, one file, WAL mode) and PostgreSQL 15 (when the server is scaled out). Callers
//! never see which one is in use. The store also owns the execution-job queue that remote
//! executors pull from (see [`queue`]); its invariants — a job is handed to at most one executor,
//! a completion applies at most once, users are served round robin — are enforced here, in SQL
//! transactions, so every server replica can rely on them.
//!
//! Design rules for this crate:
//! * Queries are runtime queries (`sqlx::query_as` + `FromRow`), so building needs no database.
//! * SQL text is shared between the backends where both dialects agree (SQLite accepts `$1`
//!   placeholders); where they differ (row locking) the statement is chosen by [`Dialect`].
//! * Time is passed in by the caller as unix milliseconds, so tests control "now".
//! * Secrets and code host credentials arrive already encrypted and tokens already hashed: the
//!   store only keeps bytes.

#[macro_use]
mod backend;

pub mod accounts;
pub mod audit;
pub mod batch_changes;
pub mod batch_specs;
pub mod changeset_history;
pub mod clock;
pub mod code_hosts;
pub mod credentials;
pub mod error;
pub mod ids;
pub mod json;
pub mod leadership;
pub mod queue;
pub mod secrets;
mod sqlite_queue;
pub mod step_cache;
pub mod templates;
pub mod webhook_secrets;

pub use backend::{Dialect, Store};
pub use clock::Clock;
pub use error::StoreError;
pub use ids::*;
pub use json::Namespace;
pub use leadership::Leadership;

pub use accounts::*;
pub use audit::*;
pub use batch_changes::*;
pub use batch_specs::*;
pub use changeset_history::*;
pub use code_hosts::*;
pub use credentials::*;
pub use queue::*;
pub use secrets::*;
pub use step_cache::*;
pub use templates::*;
pub use webhook_secrets::*;
