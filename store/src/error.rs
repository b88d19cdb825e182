//! The store's errors, classified by [`ErrorKind`] so callers map them without string matching.

use crate::ExpectedRevision;
use uuid::Uuid;

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an [`Error`] is; the API maps kinds to HTTP status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed.
    InvalidInput,
    /// The request contradicts what is stored (expected revision, reused event id).
    Conflict,
    /// The named thing does not exist.
    NotFound,
    /// The caller may not do this.
    Unauthorized,
    /// The store cannot take writes now (shutting down, or a failed fsync).
    Unavailable,
    /// A bug or an I/O failure: never shown to clients in detail.
    Internal,
}

/// Errors of the event log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A stream name breaks the naming rules.
    #[error("invalid stream name {name:?}: {reason}")]
    InvalidStreamName {
        /// The name as given (shortened when very long).
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// An append carried no events.
    #[error("append {index} to stream {stream} has no events")]
    EmptyAppend {
        /// Index of the offending request in the atomic unit.
        index: usize,
        /// The stream.
        stream: String,
    },
    /// An event breaks the record limits (type length, body size).
    #[error("append {index} has an event the log cannot store: {reason}")]
    InvalidEvent {
        /// Index of the offending request in the atomic unit.
        index: usize,
        /// Which limit.
        reason: &'static str,
    },
    /// One event id appears twice in one atomic unit.
    #[error("event id {id} appears more than once in the request")]
    DuplicateIdInRequest {
        /// Index of the second occurrence's request in the atomic unit.
        index: usize,
        /// The repeated id.
        id: Uuid,
    },
    /// The stream is not at the revision the client expected.
    #[error("stream {stream} expected {expected} but is at {}", describe_revision(*actual))]
    WrongExpectedRevision {
        /// Index of the offending request in the atomic unit.
        index: usize,
        /// The stream.
        stream: String,
        /// What the client expected.
        expected: ExpectedRevision,
        /// The stream's last revision, `None` when it does not exist.
        actual: Option<u64>,
    },
    /// An event id is already stored with other content or in another place.
    #[error("event id {id} already exists at position {position} in stream {existing_stream} with other content or order")]
    DuplicateEventId {
        /// Index of the offending request in the atomic unit.
        index: usize,
        /// The reused id.
        id: Uuid,
        /// The stream that holds it.
        existing_stream: String,
        /// Its position.
        position: u64,
    },
    /// The write model refused an event.
    #[error("{rejection}")]
    Rejected {
        /// Index of the offending request in the atomic unit.
        index: usize,
        /// Why.
        rejection: crate::Rejection,
    },
    /// The stream has no events.
    #[error("stream {0} not found")]
    StreamNotFound(String),
    /// The store no longer takes appends.
    #[error("the event log is not accepting writes: {0}")]
    Unavailable(&'static str),
    /// A stored record failed its checksum or could not be decoded.
    #[error("corrupt record at {key}: {reason}")]
    Corrupt {
        /// Which record.
        key: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A stored event could not be replayed into the write model.
    #[error("replaying position {position} into the write model failed: {reason}")]
    Replay {
        /// The event.
        position: u64,
        /// Why.
        reason: String,
    },
    /// RocksDB reported an error.
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// Filesystem error outside RocksDB.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

fn describe_revision(actual: Option<u64>) -> String {
    match actual {
        Some(revision) => format!("revision {revision}"),
        None => "no stream".to_owned(),
    }
}

impl Error {
    /// The classification callers map to a response.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::InvalidStreamName { .. }
            | Self::InvalidEvent { .. }
            | Self::EmptyAppend { .. }
            | Self::DuplicateIdInRequest { .. } => ErrorKind::InvalidInput,
            Self::WrongExpectedRevision { .. } | Self::DuplicateEventId { .. } => {
                ErrorKind::Conflict
            }
            Self::Rejected { rejection, .. } => match rejection.kind {
                crate::RejectionKind::Conflict => ErrorKind::Conflict,
                crate::RejectionKind::Forbidden => ErrorKind::Unauthorized,
                crate::RejectionKind::Unprocessable => ErrorKind::InvalidInput,
            },
            Self::StreamNotFound(_) => ErrorKind::NotFound,
            Self::Unavailable(_) => ErrorKind::Unavailable,
            Self::Corrupt { .. } | Self::Replay { .. } | Self::Storage(_) | Self::Io(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// For a write-model refusal, the index of the refused event within its request.
    pub fn rejected_event(&self) -> Option<usize> {
        match self {
            Self::Rejected { rejection, .. } => Some(rejection.event),
            _ => None,
        }
    }

    /// The index, within an atomic unit of appends, of the request this error is about.
    pub fn request_index(&self) -> Option<usize> {
        match self {
            Self::EmptyAppend { index, .. }
            | Self::InvalidEvent { index, .. }
            | Self::DuplicateIdInRequest { index, .. }
            | Self::WrongExpectedRevision { index, .. }
            | Self::DuplicateEventId { index, .. }
            | Self::Rejected { index, .. } => Some(*index),
            _ => None,
        }
    }
}
