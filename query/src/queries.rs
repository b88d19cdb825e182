//! The queries the engine runs, whatever protocol brought them: each has an id (the client's
//! own or a new one), the id of the token that asked and its protocol. While it runs it can be
//! listed and cancelled; when it ends, a record of it goes to a bounded log that admins read as
//! the table `system.queries` (as ClickHouse keeps `system.query_log` and InfluxDB 3
//! `system.queries`).

use crate::error::{Error, Result};
use crate::local_time::ZONE;
use datafusion::arrow::array::{
    ArrayRef, Float64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
    UInt64Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::common::TableReference;
use datafusion::logical_expr::LogicalPlan;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// The table of past queries, in the schema `system`.
pub const QUERY_LOG_TABLE: &str = "queries";
/// The schema of chiso's own tables.
pub const SYSTEM_SCHEMA: &str = "system";

/// Who runs a query: the id of the token that asked (the first 16 hex digits of its SHA-256;
/// `admin` for the environment's admin token), whether it may see every query, and what it may
/// use of the engine.
#[derive(Clone)]
pub struct Caller {
    /// The token's id.
    pub token_id: String,
    /// An admin sees and cancels every query and reads `system.queries`.
    pub admin: bool,
    /// Its limits, kept across its queries; `None`: unlimited.
    pub quota: Option<Arc<dyn Quota>>,
    /// Which agencies' rows it may read.
    pub scope: crate::ReadScope,
}

impl std::fmt::Debug for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Caller")
            .field("token_id", &self.token_id)
            .field("admin", &self.admin)
            .field("limited", &self.quota.is_some())
            .field("scope", &self.scope)
            .finish()
    }
}

impl Default for Caller {
    /// chiso's own queries (the ranking publisher): not an admin, so a path that forgets to
    /// name its caller reads no query log.
    fn default() -> Self {
        Self {
            token_id: "chiso".into(),
            admin: false,
            quota: None,
            scope: crate::ReadScope::All,
        }
    }
}

/// What a caller may use of the engine, whatever the protocol: asked as each of its queries
/// begins, told of the rows they return and of their end. The API keeps one per token.
pub trait Quota: Send + Sync {
    /// A query begins: refused ([`Error::QuotaExceeded`], 429) when the caller is at a limit.
    fn begin(&self) -> Result<()>;
    /// A query of the caller returned `rows` more rows.
    fn rows(&self, rows: u64);
    /// A query the quota let begin ended.
    fn end(&self);
}

/// How a query reached the engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Protocol {
    /// `/v1/sql` and `/v1/reports/dossiers`.
    Http,
    /// The PostgreSQL wire protocol (`--pg-listen`).
    Postgres,
    /// Arrow Flight SQL (`--flight-listen`).
    FlightSql,
    /// chiso itself (the ranking publisher, `collect`).
    #[default]
    Internal,
}

impl Protocol {
    /// Its name in listings and the query log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Postgres => "postgres",
            Self::FlightSql => "flightsql",
            Self::Internal => "internal",
        }
    }
}

/// How a query ended, in the query log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Its answer was read to the end.
    Finished,
    /// It failed with an error code.
    Failed(&'static str),
    /// `DELETE /v1/queries/{id}` (or a protocol's cancel) stopped it.
    Cancelled,
    /// Its client went away before the end.
    Abandoned,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Finished => "finished",
            Self::Failed(_) => "failed",
            Self::Cancelled => "cancelled",
            Self::Abandoned => "abandoned",
        }
    }
}

/// A query running now, as listed.
#[derive(Debug, Clone, Serialize)]
pub struct RunningQuery {
    /// The query's id.
    pub id: String,
    /// The id of the token that asked.
    pub token_id: String,
    /// The statement.
    pub sql: String,
    /// How it came (`http`, `internal`).
    pub protocol: &'static str,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Rows of the answer so far.
    pub rows: u64,
}

/// The running queries and the log of those that ended; cheap to clone.
#[derive(Clone)]
pub struct QueryLog {
    inner: Arc<Inner>,
}

struct Inner {
    running: Mutex<HashMap<String, Arc<Running>>>,
    ended: Mutex<VecDeque<Ended>>,
    capacity: usize,
}

struct Running {
    id: String,
    caller: Caller,
    sql: String,
    protocol: Protocol,
    started_at: chrono::DateTime<chrono::Utc>,
    started: Instant,
    rows: AtomicU64,
    bytes: AtomicU64,
    cancel: CancellationToken,
}

struct Ended {
    id: String,
    sql: String,
    protocol: Protocol,
    token_id: String,
    started_at: i64,
    duration_ms: f64,
    rows: u64,
    bytes: u64,
    outcome: Outcome,
}

impl std::fmt::Debug for QueryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryLog")
            .field("capacity", &self.inner.capacity)
            .finish_non_exhaustive()
    }
}

/// The longest id a client may give a query.
const MAX_ID_LEN: usize = 128;

impl QueryLog {
    /// A log keeping the last `capacity` queries that ended.
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                running: Mutex::default(),
                ended: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
                capacity,
            }),
        }
    }

    /// A new query id.
    pub fn new_id() -> String {
        uuid::Uuid::new_v4().to_string()
    }

    /// Checks an id a client gave its query: 1–128 letters, digits, `-`, `_`, `.` or `:`.
    pub fn check_id(id: &str) -> Result<()> {
        let valid = (1..=MAX_ID_LEN).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        match valid {
            true => Ok(()),
            false => Err(Error::InvalidParameter(format!(
                "a query id is 1 to {MAX_ID_LEN} letters, digits, '-', '_', '.' or ':'"
            ))),
        }
    }

    /// Registers a query as running; an id already running is refused.
    pub(crate) fn begin(
        &self,
        id: String,
        caller: Caller,
        protocol: Protocol,
        sql: &str,
    ) -> Result<Ticket> {
        Self::check_id(&id)?;
        let mut running = self.inner.running.lock().expect("query log lock");
        if running.contains_key(&id) {
            return Err(Error::QueryIdInUse(id));
        }
        if let Some(quota) = &caller.quota {
            quota.begin()?;
        }
        let entry = Arc::new(Running {
            id: id.clone(),
            caller,
            sql: sql.to_owned(),
            protocol,
            started_at: chrono::Utc::now(),
            started: Instant::now(),
            rows: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            cancel: CancellationToken::new(),
        });
        running.insert(id, entry.clone());
        Ok(Ticket {
            log: self.clone(),
            entry,
            outcome: None,
        })
    }

    /// The queries running now that `caller` may see: an admin every one, others their own.
    pub fn running(&self, caller: &Caller) -> Vec<RunningQuery> {
        let running = self.inner.running.lock().expect("query log lock");
        let mut listed: Vec<(Instant, RunningQuery)> = running
            .values()
            .filter(|entry| caller.admin || entry.caller.token_id == caller.token_id)
            .map(|entry| {
                let listed = RunningQuery {
                    id: entry.id.clone(),
                    token_id: entry.caller.token_id.clone(),
                    sql: entry.sql.clone(),
                    protocol: entry.protocol.as_str(),
                    started_at: entry
                        .started_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                    rows: entry.rows.load(Ordering::Relaxed),
                };
                (entry.started, listed)
            })
            .collect();
        listed.sort_by_key(|(started, _)| *started);
        listed.into_iter().map(|(_, query)| query).collect()
    }

    /// Cancels the running query `id` if `caller` may see it; whether it did.
    pub fn cancel(&self, id: &str, caller: &Caller) -> bool {
        let running = self.inner.running.lock().expect("query log lock");
        match running.get(id) {
            Some(entry) if caller.admin || entry.caller.token_id == caller.token_id => {
                entry.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// The queries that ended, oldest first, as one batch of [`QUERY_LOG`].
    pub(crate) fn batch(&self) -> Result<RecordBatch> {
        let ended = self.inner.ended.lock().expect("query log lock");
        let n = ended.len();
        let mut id = StringBuilder::with_capacity(n, n * 36);
        let mut sql = StringBuilder::with_capacity(n, n * 64);
        let mut protocol = StringBuilder::with_capacity(n, n * 8);
        let mut token_id = StringBuilder::with_capacity(n, n * 16);
        let mut started_at = TimestampMicrosecondBuilder::with_capacity(n).with_timezone(ZONE);
        let mut duration = Float64Builder::with_capacity(n);
        let (mut rows, mut bytes) = (UInt64Builder::with_capacity(n), UInt64Builder::new());
        let mut outcome = StringBuilder::with_capacity(n, n * 8);
        let mut error_code = StringBuilder::new();
        for query in ended.iter() {
            id.append_value(&query.id);
            sql.append_value(&query.sql);
            protocol.append_value(query.protocol.as_str());
            token_id.append_value(&query.token_id);
            started_at.append_value(query.started_at);
            duration.append_value(query.duration_ms);
            rows.append_value(query.rows);
            bytes.append_value(query.bytes);
            outcome.append_value(query.outcome.as_str());
            match query.outcome {
                Outcome::Failed(code) => error_code.append_value(code),
                Outcome::Cancelled => error_code.append_value("query_cancelled"),
                _ => error_code.append_null(),
            }
        }
        drop(ended);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(id.finish()),
            Arc::new(sql.finish()),
            Arc::new(protocol.finish()),
            Arc::new(token_id.finish()),
            Arc::new(started_at.finish()),
            Arc::new(duration.finish()),
            Arc::new(rows.finish()),
            Arc::new(bytes.finish()),
            Arc::new(outcome.finish()),
            Arc::new(error_code.finish()),
        ];
        RecordBatch::try_new(QUERY_LOG.clone(), columns).map_err(|e| Error::Engine(e.to_string()))
    }

    fn end(&self, entry: &Running, outcome: Outcome) {
        self.inner
            .running
            .lock()
            .expect("query log lock")
            .remove(&entry.id);
        if self.inner.capacity == 0 {
            return;
        }
        let ended = Ended {
            id: entry.id.clone(),
            sql: entry.sql.clone(),
            protocol: entry.protocol,
            token_id: entry.caller.token_id.clone(),
            started_at: entry.started_at.timestamp_micros(),
            duration_ms: entry.started.elapsed().as_secs_f64() * 1000.0,
            rows: entry.rows.load(Ordering::Relaxed),
            bytes: entry.bytes.load(Ordering::Relaxed),
            outcome,
        };
        let mut log = self.inner.ended.lock().expect("query log lock");
        if log.len() == self.inner.capacity {
            log.pop_front();
        }
        log.push_back(ended);
    }
}

/// A running query's place in the [`QueryLog`]: counts its rows and bytes, carries its
/// cancellation, and records how it ended when dropped.
pub struct Ticket {
    log: QueryLog,
    entry: Arc<Running>,
    outcome: Option<Outcome>,
}

impl Ticket {
    /// The query's id.
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// Counts bytes of the answer sent to the client.
    pub fn add_bytes(&self, bytes: u64) {
        self.entry.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_rows(&self, rows: u64) {
        self.entry.rows.fetch_add(rows, Ordering::Relaxed);
        if let Some(quota) = &self.entry.caller.quota {
            quota.rows(rows);
        }
    }

    /// Resolves when the query is cancelled.
    pub(crate) fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.entry.cancel.cancelled()
    }

    /// Counts bytes of the answer where a protocol encodes it.
    pub(crate) fn byte_counter(&self) -> ByteCounter {
        ByteCounter(self.entry.clone())
    }

    /// What cancels the query, for the task that produces its answer.
    pub(crate) fn cancellation(&self) -> tokio_util::sync::CancellationToken {
        self.entry.cancel.clone()
    }

    /// Records that its answer was refused after the query ran (the protocol could not carry
    /// it), whatever the query's own end.
    pub(crate) fn refused(&mut self, code: &'static str) {
        self.outcome = Some(Outcome::Failed(code));
    }

    /// Records how the query ended (the first outcome stays).
    pub(crate) fn ended(&mut self, result: std::result::Result<(), &Error>) {
        self.outcome.get_or_insert(match result {
            Ok(()) => Outcome::Finished,
            Err(Error::Cancelled) => Outcome::Cancelled,
            Err(error) => Outcome::Failed(error.code()),
        });
    }
}

/// Counts the bytes of a query's answer sent to its client, from where a protocol encodes
/// them (Flight SQL's encoder, apart from the batches it reads).
#[derive(Clone)]
pub struct ByteCounter(Arc<Running>);

impl ByteCounter {
    /// Counts `bytes` more.
    pub fn add(&self, bytes: u64) {
        self.0.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or(Outcome::Abandoned);
        self.log.end(&self.entry, outcome);
        if let Some(quota) = &self.entry.caller.quota {
            quota.end();
        }
    }
}

/// `system.queries`: one row per query that ended, oldest first.
pub static QUERY_LOG: LazyLock<SchemaRef> = LazyLock::new(|| {
    let text = |name| Field::new(name, DataType::Utf8, false);
    Arc::new(Schema::new(vec![
        text("id"),
        text("sql"),
        text("protocol"),
        text("token_id"),
        Field::new(
            "started_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some(ZONE.into())),
            false,
        ),
        Field::new("duration_ms", DataType::Float64, false),
        Field::new("rows", DataType::UInt64, false),
        Field::new("bytes", DataType::UInt64, false),
        text("outcome"),
        Field::new("error_code", DataType::Utf8, true),
    ]))
});

/// Whether `plan` reads `system.queries` (in a subquery too).
pub(crate) fn reads_query_log(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNodeRecursion;
    let wanted = TableReference::partial(SYSTEM_SCHEMA, QUERY_LOG_TABLE);
    let mut found = false;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            if scan.table_name.resolved_eq(&wanted) {
                found = true;
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(token_id: &str, admin: bool) -> Caller {
        Caller {
            token_id: token_id.into(),
            admin,
            quota: None,
            scope: crate::ReadScope::All,
        }
    }

    #[test]
    fn a_running_id_is_refused_until_its_query_ends_and_the_log_keeps_the_last() {
        let log = QueryLog::new(2);
        let a = caller("aaaa", false);
        let first = log
            .begin("q1".into(), a.clone(), Protocol::Http, "SELECT 1")
            .unwrap();
        assert!(matches!(
            log.begin("q1".into(), a.clone(), Protocol::Http, "SELECT 2"),
            Err(Error::QueryIdInUse(_))
        ));
        assert!(log
            .begin("bad id".into(), a.clone(), Protocol::Http, "x")
            .is_err());
        drop(first);
        for n in 0..3 {
            let mut ticket = log
                .begin(format!("q{n}"), a.clone(), Protocol::Http, "x")
                .unwrap();
            ticket.ended(Ok(()));
        }
        let batch = log.batch().unwrap();
        assert_eq!(batch.num_rows(), 2, "the capacity bounds the log");
    }

    #[test]
    fn callers_see_and_cancel_only_their_own_queries_and_admins_all() {
        let log = QueryLog::new(10);
        let (a, b) = (caller("aaaa", false), caller("bbbb", false));
        let _q = log
            .begin("qa".into(), a.clone(), Protocol::Http, "SELECT 1")
            .unwrap();
        assert_eq!(log.running(&a).len(), 1);
        assert!(log.running(&b).is_empty());
        assert_eq!(log.running(&caller("admin", true)).len(), 1);
        assert!(!log.cancel("qa", &b));
        assert!(log.cancel("qa", &a));
    }
}
