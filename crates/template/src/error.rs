//! The crate's error type. Messages are Go's text/template messages verbatim, because users
//! of Sourcegraph see them and the differential tests compare them byte for byte.

/// A template parse or execution failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// The template text is malformed (or names an unknown function).
    #[error("{message}")]
    Parse {
        /// Go's full message, e.g. `template: x:1: function "foo" not defined`.
        message: String,
        /// Byte offset into the template text of the item the parser stopped at.
        offset: Option<usize>,
    },
    /// Execution failed, e.g. a missing map key.
    #[error("{message}")]
    Execute {
        /// Go's full message including `template: NAME:LINE:COL: executing ...`.
        message: String,
        /// Byte offset into the template text of the node being evaluated.
        offset: Option<usize>,
    },
    /// The rendered output would exceed [`crate::Limits::max_output_bytes`].
    #[error("template output exceeds the limit of {limit} bytes")]
    OutputTooLarge {
        /// The configured limit.
        limit: usize,
    },
}

impl TemplateError {
    /// Byte offset into the template text where the error was detected, if known.
    pub fn offset(&self) -> Option<usize> {
        match self {
            TemplateError::Parse { offset, .. } | TemplateError::Execute { offset, .. } => *offset,
            TemplateError::OutputTooLarge { .. } => None,
        }
    }
}
