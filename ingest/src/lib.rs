//! `chiso-ingest` owns what may enter the log: the event catalog of ARCHITECTURE.md §4
//! (typed events, their JSON Schema), the checks each event makes on its own ([`decode`]),
//! and the write model ([`IngestModel`]) that checks events against the state — referential
//! rules, the dossier state machine, one ICT rank per province and year — inside the log's
//! writer, so validation and append are one step; and the [`Ingestor`], the one way into the
//! log of every entry point. It also owns the working-day calendar ([`calendar`]), which the
//! demo's deadlines and the SQL functions share.
//!
//! ```
//! use chiso_ingest::{decode, DomainEvent};
//! use chiso_store::StreamName;
//! let stream = StreamName::new("dossier-26.001-2019-000123").unwrap();
//! let data = r#"{"at": "2019-03-05T10:00:00+07:00", "outcome": "approved"}"#;
//! let event = decode(&stream, "DossierResolved", data, "{}", chrono::Utc::now()).unwrap();
//! assert!(matches!(event, DomainEvent::DossierResolved(_)));
//! ```

pub mod calendar;
mod catalog;
pub mod demo;
mod error;
mod ingestor;
mod write_model;

pub use catalog::*;
pub use error::{IngestError, Result};
pub use ingestor::{Append, Author, Checked, Checker, Ingestor};
pub use write_model::{Grant, IngestModel};
