//! `chiso-store` owns chiso's append-only event log on RocksDB. It is domain-agnostic: it
//! stores streams of JSON events and never names a dossier.
//!
//! Guarantees:
//! - every event has a revision in its stream (0, 1, 2, …) and a gapless global position;
//! - an append is atomic, checks its [`ExpectedRevision`], and is acknowledged only after
//!   fsync; concurrent appends share one fsync (group commit, no timers);
//! - re-sending the same event ids to the same stream returns the original positions and
//!   writes nothing; the same id with other content is a conflict;
//! - a batch over many streams ([`EventStore::append_all`]) is all-or-nothing;
//! - records carry a version and a CRC32: a corrupt record is an error, never garbage;
//! - after a crash the log continues right after the last acknowledged append.
//!
//! ```no_run
//! # async fn example() -> chiso_store::Result<()> {
//! use chiso_store::{AppendRequest, EventStore, ExpectedRevision, ProposedEvent, StreamName};
//! // A log without rules: its appender takes requests with no principal and no decoded data.
//! let appender = EventStore::open("./chiso-data/log")?;
//! let event = ProposedEvent {
//!     id: uuid::Uuid::new_v4(),
//!     event_type: "AgencyRegistered".into(),
//!     data: r#"{"code":"26"}"#.into(),
//!     metadata: "{}".into(),
//!     decoded: (),
//! };
//! let stream = StreamName::new("agency-26")?;
//! let request = AppendRequest {
//!     stream: stream.clone(),
//!     expected: ExpectedRevision::NoStream,
//!     events: vec![event],
//!     principal: (),
//! };
//! let result = appender.append("example", request).await?;
//! assert_eq!(result.first_revision, 0);
//! // Reads go through the store, which any number of readers share.
//! let store: &EventStore = appender.store();
//! assert_eq!(store.stream_revision(&stream)?, Some(0));
//! # Ok(()) }
//! ```
//!
//! Appends are typed by the log's [`WriteModel`]: a model's principal and decoded events are
//! its own types, so a log opened without rules cannot be handed a grant it would not check.
//!
//! ```compile_fail
//! # async fn example() -> chiso_store::Result<()> {
//! use chiso_store::{AppendRequest, EventStore, ExpectedRevision, StreamName};
//! struct Grant;
//! let appender = EventStore::open("./chiso-data/log")?;
//! let request = AppendRequest {
//!     stream: StreamName::new("agency-26")?,
//!     expected: ExpectedRevision::Any,
//!     events: vec![],
//!     principal: Grant, // NoRules takes no principal: this does not compile
//! };
//! appender.append("example", request).await?;
//! # Ok(()) }
//! ```

mod chunk;
mod error;
mod log;
mod metrics;
mod segments;
mod stream;
mod write_model;

pub use error::{Error, ErrorKind, Result};
pub use log::{
    verify_dir, AnchorMismatch, Appender, ChainHash, ChainHead, EventStore, LogBackground,
    LogMemory, LogOptions, Mismatch, ReadDirection, Subscription, Verification,
};
pub use metrics::StoreMetrics;
pub use segments::{Manifest, SegmentDir};
pub use stream::{category_of, ExpectedRevision, StreamName, MAX_STREAM_NAME_LEN};
pub use write_model::{NoRules, Rejection, RequestOf, StoredStates, WriteModel};

use uuid::Uuid;

/// An event as a client proposes it. `data` and `metadata` are JSON texts (objects); the
/// store keeps their bytes and compares them as JSON values on idempotent retries. `D` is the
/// log's [`WriteModel::Decoded`]: what the caller decoded of `data` (`()` without rules).
#[derive(Debug, Clone, Default)]
pub struct ProposedEvent<D = ()> {
    /// Client-chosen id: the idempotency key.
    pub id: Uuid,
    /// The event type, e.g. `DossierReceived`.
    pub event_type: String,
    /// JSON object text.
    pub data: String,
    /// JSON object text.
    pub metadata: String,
    /// The decoded form of `data`, which the caller checked: handed to the [`WriteModel`]
    /// untouched, so the writer does not parse it again. Not stored.
    pub decoded: D,
}

/// Two proposed events are the same when what the log would store is (the id, the type and
/// the JSON texts), whatever was decoded of them.
impl<D> PartialEq for ProposedEvent<D> {
    fn eq(&self, other: &Self) -> bool {
        (&self.id, &self.event_type, &self.data, &self.metadata)
            == (&other.id, &other.event_type, &other.data, &other.metadata)
    }
}

impl<D> Eq for ProposedEvent<D> {}

/// One atomic append to one stream, asked by `principal` (the log's
/// [`WriteModel::Principal`], which the model authorises; `()` without rules).
#[derive(Debug, Clone)]
pub struct AppendRequest<P = (), D = ()> {
    /// Target stream.
    pub stream: StreamName,
    /// What the client believes the stream's state is.
    pub expected: ExpectedRevision,
    /// At least one event.
    pub events: Vec<ProposedEvent<D>>,
    /// Who asks, for the [`WriteModel`] to authorise (opaque to the store).
    pub principal: P,
}

/// Where an append's events landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendResult {
    /// Revision of the first event.
    pub first_revision: u64,
    /// Revision of the last event.
    pub last_revision: u64,
    /// Global position of the first event.
    pub first_position: u64,
    /// Global position of the last event.
    pub last_position: u64,
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Gapless global position.
    pub position: u64,
    /// The stream.
    pub stream: String,
    /// Revision in the stream.
    pub revision: u64,
    /// The client's id.
    pub id: Uuid,
    /// The event type.
    pub event_type: String,
    /// JSON object text.
    pub data: String,
    /// JSON object text.
    pub metadata: String,
    /// When the log wrote it, microseconds since the Unix epoch (UTC).
    pub recorded_at_micros: i64,
    /// Who appended it, as the appender named them ([`Appender::append_all`]); empty for
    /// events written before authors were recorded.
    pub recorded_by: String,
}

impl RecordedEvent {
    /// A view of it, as [`EventStore::scan`] gives.
    pub fn as_event_ref(&self) -> EventRef<'_> {
        EventRef {
            position: self.position,
            stream: &self.stream,
            revision: self.revision,
            id: self.id,
            event_type: &self.event_type,
            data: &self.data,
            metadata: &self.metadata,
            recorded_at_micros: self.recorded_at_micros,
            recorded_by: &self.recorded_by,
        }
    }
}

/// An event read in place: its texts borrow the chunk it is stored in (a replay reads
/// millions of them without allocating).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef<'a> {
    /// Gapless global position.
    pub position: u64,
    /// The stream.
    pub stream: &'a str,
    /// Revision in the stream.
    pub revision: u64,
    /// The client's id.
    pub id: Uuid,
    /// The event type.
    pub event_type: &'a str,
    /// JSON object text.
    pub data: &'a str,
    /// JSON object text.
    pub metadata: &'a str,
    /// When the log wrote it, microseconds since the Unix epoch (UTC).
    pub recorded_at_micros: i64,
    /// Who appended it; empty for events written before authors were recorded.
    pub recorded_by: &'a str,
}

impl EventRef<'_> {
    /// An owned copy.
    pub fn to_recorded(&self) -> RecordedEvent {
        RecordedEvent {
            position: self.position,
            stream: self.stream.to_owned(),
            revision: self.revision,
            id: self.id,
            event_type: self.event_type.to_owned(),
            data: self.data.to_owned(),
            metadata: self.metadata.to_owned(),
            recorded_at_micros: self.recorded_at_micros,
            recorded_by: self.recorded_by.to_owned(),
        }
    }
}
