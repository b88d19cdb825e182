//! Why the catalog or the write model refuses an event.

use chiso_store::{Rejection, RejectionKind};

/// How a refusal is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngestErrorKind {
    /// Malformed: not an event of the catalog (HTTP 400).
    Malformed,
    /// Breaks a rule on its own or against reference data (HTTP 422).
    Unprocessable,
    /// Contradicts the current state (HTTP 409).
    Conflict,
    /// The principal may not write it (HTTP 403).
    Forbidden,
}

/// A refused event: a stable code, a message a person can act on, and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IngestError {
    /// How to answer.
    pub kind: IngestErrorKind,
    /// Stable snake_case code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// JSON pointer of the field inside the event (`/data/due_at`), if one.
    pub pointer: Option<String>,
}

/// Result with [`IngestError`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

impl IngestError {
    /// A malformed event (400).
    pub fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(IngestErrorKind::Malformed, code, message)
    }

    /// A rule broken (422).
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(IngestErrorKind::Unprocessable, code, message)
    }

    /// Outside the principal's scopes (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(IngestErrorKind::Forbidden, "forbidden", message)
    }

    /// A state conflict (409).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(IngestErrorKind::Conflict, code, message)
    }

    fn new(kind: IngestErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            message: message.into(),
            pointer: None,
        }
    }

    /// Names the field, relative to the event (`/data/level`).
    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    /// As the log's writer reports it, for the event at `event` in its request.
    pub fn into_rejection(self, event: usize) -> Rejection {
        let kind = match self.kind {
            IngestErrorKind::Conflict => RejectionKind::Conflict,
            IngestErrorKind::Forbidden => RejectionKind::Forbidden,
            _ => RejectionKind::Unprocessable,
        };
        Rejection {
            kind,
            code: self.code,
            message: self.message,
            event,
            pointer: self.pointer,
        }
    }
}
