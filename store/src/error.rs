//! The store's errors, classified by [`ErrorKind`] so callers map them without string matching.

use crate::ExpectedRevision;
use uuid::Uuid;

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an error is. Every crate's errors are classified by this one enum,
/// and the API maps each kind to one HTTP status in one table (`chiso-api`'s `error.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is malformed (400).
    InvalidInput,
    /// No credentials, or credentials that are not valid (401).
    Unauthenticated,
    /// The caller may not do this (403).
    Forbidden,
    /// The named thing does not exist (404).
    NotFound,
    /// The endpoint does not take that method (405).
    MethodNotAllowed,
    /// The work ran past its time limit (408).
    Timeout,
    /// The request contradicts what is stored (expected revision, reused event id) (409).
    Conflict,
    /// The request or its answer is larger than allowed (413).
    TooLarge,
    /// Well formed, but it breaks a rule on its own or against reference data (422).
    Unprocessable,
    /// Too many requests at once: retry later (429).
    Overloaded,
    /// The server cannot do this now: shutting down, a failed fsync, out of memory (503).
    Unavailable,
    /// The disk has no room for more: nothing was written (507).
    InsufficientStorage,
    /// A bug or an I/O failure: never shown to clients in detail (500).
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
    /// A synced write failed (a failed fsync leaves the files in an unknown state): the
    /// writer takes no more appends until a restart.
    #[error("the event log stopped taking writes after a failed write, and this request's events may or may not be stored: once the server is restarted, retry with the same event ids (stored events are answered as the original append)")]
    WriteFailed,
    /// Less free space than the reserve kept for flushes and compactions: the append is
    /// refused whole, and appends resume once space is freed.
    #[error("the disk holding the log has {free_bytes} bytes free, under the {reserve_bytes} bytes kept in reserve; nothing was written: free space and retry")]
    DiskFull {
        /// Free bytes on the log's filesystem.
        free_bytes: u64,
        /// The reserve appends may not eat into.
        reserve_bytes: u64,
    },
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
            Self::Rejected { rejection, .. } => rejection.kind,
            Self::StreamNotFound(_) => ErrorKind::NotFound,
            Self::Unavailable(_) | Self::WriteFailed => ErrorKind::Unavailable,
            Self::DiskFull { .. } => ErrorKind::InsufficientStorage,
            Self::Corrupt { .. } | Self::Replay { .. } | Self::Storage(_) | Self::Io(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// A stable snake_case code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidStreamName { .. } => "invalid_stream_name",
            Self::EmptyAppend { .. } => "empty_append",
            Self::InvalidEvent { .. } => "invalid_event",
            Self::DuplicateIdInRequest { .. } => "duplicate_id_in_request",
            Self::WrongExpectedRevision { .. } => "wrong_expected_revision",
            Self::DuplicateEventId { .. } => "duplicate_event_id",
            Self::Rejected { rejection, .. } => rejection.code,
            Self::StreamNotFound(_) => "stream_not_found",
            Self::Unavailable(_) => "unavailable",
            Self::WriteFailed => "log_write_failed",
            Self::DiskFull { .. } => "disk_full",
            Self::Corrupt { .. } | Self::Replay { .. } | Self::Storage(_) | Self::Io(_) => {
                "internal"
            }
        }
    }

    /// What a client may act on, as JSON: the stream, the revisions, the id, the field
    /// (`pointer`, relative to the event), the request's `index` within an atomic unit.
    pub fn details(&self) -> serde_json::Value {
        use serde_json::json;
        let mut details = match self {
            Self::InvalidStreamName { name, .. } => json!({"stream": name}),
            Self::EmptyAppend { stream, .. } => json!({"stream": stream}),
            Self::DuplicateIdInRequest { id, .. } => json!({"id": id}),
            Self::WrongExpectedRevision {
                stream,
                expected,
                actual,
                ..
            } => json!({
                "stream": stream,
                "expected_revision": expected.to_string(),
                "actual_revision": actual,
            }),
            Self::DuplicateEventId {
                id,
                existing_stream,
                position,
                ..
            } => json!({"id": id, "stream": existing_stream, "position": position}),
            Self::Rejected { rejection, .. } => json!({
                "event": rejection.event,
                "pointer": rejection.pointer.clone().unwrap_or_default(),
            }),
            Self::StreamNotFound(stream) => json!({"stream": stream}),
            Self::DiskFull {
                free_bytes,
                reserve_bytes,
            } => json!({"free_bytes": free_bytes, "reserve_bytes": reserve_bytes}),
            _ => json!({}),
        };
        if let (Some(index), Some(map)) = (self.request_index(), details.as_object_mut()) {
            map.insert("index".into(), index.into());
        }
        details
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
