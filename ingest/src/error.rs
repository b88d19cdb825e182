//! Why the catalog or the write model refuses an event.

use chiso_store::{ErrorKind, Rejection};

/// A refused event: a stable code, a message a person can act on, and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct IngestError {
    /// How to answer: `InvalidInput` (not an event of the catalog), `Unprocessable` (a rule
    /// broken), `Conflict` (against the current state) or `Forbidden` (outside the scopes).
    pub kind: ErrorKind,
    /// Stable snake_case code.
    pub code: &'static str,
    /// What is wrong and what to do.
    pub message: String,
    /// JSON pointer of the field inside the event (`/data/due_at`), if one. The message names
    /// the field in words; the pointer is only here.
    pub pointer: Option<String>,
}

/// Result with [`IngestError`].
pub type Result<T, E = IngestError> = std::result::Result<T, E>;

impl IngestError {
    /// A malformed event (400).
    pub fn malformed(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, code, message)
    }

    /// A rule broken (422).
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, message)
    }

    /// Outside the principal's scopes (403).
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, "forbidden", message)
    }

    /// A state conflict (409).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// The classification the API maps to a status.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The stable snake_case code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
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
        // The log answers a malformed event as a broken rule: it passed the envelope checks.
        let kind = match self.kind {
            ErrorKind::InvalidInput => ErrorKind::Unprocessable,
            kind => kind,
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
