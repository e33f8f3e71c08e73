//! The executor: takes workspace jobs from the server, runs their steps in containers and
//! reports logs, diffs and outputs back.
//!
//! [`runtime`] runs one step's script through podman, docker, or (explicitly) as a plain
//! process.

pub mod runtime;
