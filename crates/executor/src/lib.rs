//! The executor: a stateless worker that takes workspace jobs from the Flotilla server over
//! HTTP, fetches the code from the server, runs the steps in containers, streams logs, and
//! reports results.
//!
//! - [`executor`]: the main loop ([`run_executor`]): dequeue, heartbeats, concurrency,
//!   shutdown, clean-up after a crash.
//! - [`job`]: one job from fetch to report.
//! - [`steps`]: the pure parts of running steps (template context, outputs, messages).
//! - [`disk`]: free space on the work folder's disk (no job taken while it is short; a job
//!   that failed on a full disk is the machine's failure, retried).
//! - [`client`]: the HTTP client of the server's executor API, with retries.
//! - [`logs`]: streaming one execution-log entry.
//! - [`redact`]: replacing secrets in everything sent to the server.
//! - [`runtime`]: runs one step's script through podman, docker, or (explicitly) as a plain
//!   process.

pub mod client;
pub mod disk;
pub mod executor;
pub mod job;
pub mod logs;
pub mod redact;
pub mod runtime;
pub mod steps;

pub use executor::{ExecutorConfig, ExecutorError, default_executor_name, run_executor};
pub use runtime::{RuntimeKind, StepNetwork};
