//! Redaction on the executor: the [`Redactor`] lives in `flotilla-wire`, because the server
//! checks everything a job reports with the same one again before storing it.

pub use flotilla_wire::redact::{Redactor, SECRET_REMOVED};
