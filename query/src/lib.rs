//! `chiso-query` owns the tables of ARCHITECTURE.md §5 and the read-only SQL over them.
//!
//! - [`Projections`] fold the log into tables (`agencies`, `services`, `service_levels`,
//!   `dossiers`, `agency_daily`, `ict_index`, `rankings`), follow it live, and checkpoint
//!   changed monthly partitions as Parquet segments with an atomic manifest, so a restart
//!   loads segments and folds only the tail.
//! - [`SqlEngine`] answers SQL with DataFusion over those tables, the log itself (`events`)
//!   and the table function `dossier_report(DATE, DATE)`; it refuses anything but reads and
//!   runs every query under a shared memory pool, a time limit and a row limit. Every query
//!   has an id and a caller; while it runs it is listed and may be cancelled, and when it
//!   ends its record goes to a bounded [`QueryLog`], which admins read as `system.queries`.
//!
//! Local dates and months are in `Asia/Ho_Chi_Minh` (UTC+07:00).
//!
//! ```no_run
//! # async fn example() -> chiso_query::Result<()> {
//! use chiso_query::{Projections, Query, SqlEngine, SqlLimits};
//! let log = chiso_store::EventStore::open("./chiso-data/log")?;
//! let projections = Projections::open(log.store(), "./chiso-data/tables")?;
//! projections.catch_up(|_, _| {})?;
//! let engine = SqlEngine::new(log.store(), &projections, SqlLimits::default())?;
//! let query = Query { sql: "SELECT count(*) FROM dossiers".into(), ..Query::default() };
//! let batches = engine.execute(query).await?.collect().await?;
//! # Ok(()) }
//! ```

mod agencies;
pub mod calendar;
mod capped;
mod date_trunc;
mod engine;
mod error;
mod information_schema;
mod local_parquet;
pub mod local_time;
pub mod postgres;
mod priority;
mod projections;
mod providers;
mod queries;
pub mod rankings;
mod report;
mod scope;
mod sealed_filter;

pub use chiso_store::ErrorKind;
pub use datafusion;
pub use engine::{
    answer_schema, Params, Query, QueryStream, SqlEngine, SqlLimits, TableEntry, CATALOG,
};
pub use error::{Error, Result};
pub use projections::{Backup, DossierStorage, Projections, SealPolicy, SealedFile, TableName};
pub use queries::{
    ByteCounter, Caller, Protocol, QueryLog, Quota, RunningQuery, Ticket, QUERY_LOG,
};
pub use report::REPORT;
pub use scope::{LogScope, ReadScope};
