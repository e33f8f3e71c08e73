//! The types that cross the wire between the server, executors and the command-line client.
//!
//! Plain serde structs with no behaviour beyond encoding, so that all three sides agree by
//! construction. The executor protocol mirrors Sourcegraph's executor queue API (dequeue,
//! heartbeat, log entries, mark complete/failed) with job payloads that carry everything a
//! stateless executor needs. [`cache`] holds the one piece of shared logic: the step-result
//! cache key, which the server computes at resolution and the executor after each step, and
//! which must therefore be computed by one function; and [`redact`], the secret redaction
//! both apply to what a job reports.

pub mod api;
pub mod cache;
pub mod executor;
pub mod redact;

pub use executor::*;
