//! The read-only SQL engine: DataFusion over the projections and the log, under a memory
//! pool, a time limit and a row limit.

use crate::error::{Error, Result};
use crate::local_time::ZONE;
use crate::projections::Projections;
use crate::providers::{EventsTable, ProjectionTable};
use crate::queries::{
    reads_query_log, ByteCounter, Caller, Protocol, QueryLog, Ticket, QUERY_LOG, QUERY_LOG_TABLE,
    SYSTEM_SCHEMA,
};
use crate::report::DossierReportFunction;
use crate::scope::{ReadScope, ScopeSet};
use chiso_store::EventStore;
use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement;
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// The catalog chiso's tables are in: the database a PostgreSQL client names.
pub const CATALOG: &str = "chiso";

/// Limits every query runs under.
#[derive(Debug, Clone, Copy)]
pub struct SqlLimits {
    /// Memory all running queries may hold together; past it a query fails with 503.
    pub memory_bytes: usize,
    /// Time limit when the request names none.
    pub default_timeout: Duration,
    /// The longest time limit a request may ask for.
    pub max_timeout: Duration,
    /// The most rows an answer may have.
    pub max_rows: usize,
    /// Threads of the runtime queries run on, apart from the server's own (appends, HTTP) and
    /// the fold's: also the partitions a scan is split into.
    pub threads: usize,
    /// The most bytes one call of a function like `repeat` or `lpad` may build for a batch
    /// (see `capped.rs`): what the memory pool does not see is bounded here.
    pub max_function_bytes: usize,
    /// Queries that ended kept in `system.queries` (the oldest leave first).
    pub query_log: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 2 << 30,
            default_timeout: Duration::from_secs(30),
            max_timeout: Duration::from_secs(300),
            max_rows: 1_000_000,
            threads: 2,
            max_function_bytes: 256 << 20,
            query_log: 10_000,
        }
    }
}

/// One query as a client asks it.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// One SQL statement.
    pub sql: String,
    /// The statement already parsed, by a protocol with its own dialect (PostgreSQL's);
    /// `sql` is then its text, for the query log.
    pub statement: Option<Statement>,
    /// Values of the statement's parameters.
    pub params: Option<Params>,
    /// Time limit (at most [`SqlLimits::max_timeout`]).
    pub timeout: Option<Duration>,
    /// Row limit (at most [`SqlLimits::max_rows`]).
    pub max_rows: Option<usize>,
    /// The client's id for the query (a new one when `None`); refused while a query of that
    /// id runs.
    pub id: Option<String>,
    /// Who asks.
    pub caller: Caller,
    /// How the query came.
    pub protocol: Protocol,
}

/// Values of a statement's parameters.
#[derive(Debug, Clone)]
pub enum Params {
    /// `$1, $2, …` as a JSON array or `$name` as a JSON object (HTTP).
    Json(serde_json::Value),
    /// Values a protocol has decoded by their types (PostgreSQL's Bind).
    Values(ParamValues),
}

/// The read-only SQL engine.
#[derive(Clone)]
pub struct SqlEngine {
    context: SessionContext,
    limits: SqlLimits,
    projections: Projections,
    runtime: Arc<QueryRuntime>,
    queries: QueryLog,
}

/// The runtime queries plan and execute on: [`SqlLimits::threads`] workers (and their blocking
/// pool) at a lower CPU priority than the server's threads, so a heavy query shares the two
/// cores but an append, woken, runs first.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

/// How much less CPU priority (`nice`) query threads have than the server's other threads.
const QUERY_NICENESS: i32 = 5;

impl QueryRuntime {
    fn new(threads: usize) -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("chiso-sql")
            .on_thread_start(|| crate::priority::lower(QUERY_NICENESS))
            .enable_all()
            .build()
            .map_err(|error| Error::Engine(format!("cannot start the query runtime: {error}")))?;
        Ok(Self(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the runtime lives as long as the engine")
            .handle()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Engines are dropped inside async code (tests, the server's shutdown), where waiting
        // for a runtime's threads is not allowed.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl SqlEngine {
    /// An engine over the log and its tables.
    pub fn new(store: &EventStore, projections: &Projections, limits: SqlLimits) -> Result<Self> {
        // DataFusion's own options may be set by an operator as `DATAFUSION_*` variables
        // (`DATAFUSION_EXECUTION_PARQUET_PUSHDOWN_FILTERS=true`); chiso's settings win.
        let mut config = SessionConfig::from_env()?
            // chiso's own information_schema (information_schema.rs) takes its place.
            .with_information_schema(false)
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_target_partitions(limits.threads.max(1));
        config.options_mut().execution.time_zone = Some(ZONE.to_owned());
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limits.memory_bytes, 1.0)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()?;
        projections.share_footer_cache(&runtime.cache_manager.get_file_metadata_cache());
        let context = SessionContext::new_with_config_rt(config, runtime);
        context.register_table("events", Arc::new(EventsTable::new(store.clone())))?;
        for (name, table) in ProjectionTable::all(projections) {
            context.register_table(name, Arc::new(table))?;
        }
        context.register_udf(crate::date_trunc::LocalDateTrunc::udf());
        crate::calendar::register(&context, projections.calendar())?;
        crate::agencies::register(&context, projections)?;
        crate::postgres::install(&context, CATALOG)?;
        crate::capped::register(&context, limits.max_function_bytes)?;
        let queries = QueryLog::new(limits.query_log);
        let catalog = context
            .state()
            .config_options()
            .catalog
            .default_catalog
            .clone();
        if let Some(catalog) = context.catalog(&catalog) {
            let schema = Arc::new(datafusion::catalog::MemorySchemaProvider::new());
            catalog.register_schema(SYSTEM_SCHEMA, schema)?;
        }
        context.register_table(
            datafusion::common::TableReference::partial(SYSTEM_SCHEMA, QUERY_LOG_TABLE),
            Arc::new(crate::providers::SnapshotTable::new(
                QUERY_LOG.clone(),
                datafusion::datasource::TableType::View,
                {
                    let queries = queries.clone();
                    move || {
                        queries
                            .batch()
                            .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))
                    }
                },
            )),
        )?;
        context.register_udtf(
            "dossier_report",
            Arc::new(DossierReportFunction::new(projections.clone())),
        );
        crate::information_schema::install(&context, CATALOG)?;
        Ok(Self {
            context,
            limits,
            projections: projections.clone(),
            runtime: Arc::new(QueryRuntime::new(limits.threads)?),
            queries,
        })
    }

    /// Every table `caller` may read (`system.queries` only for admins), with the columns of
    /// its answers (strings plain, as every protocol sends them): what a protocol lists in its
    /// own catalog calls (Flight SQL's GetTables).
    pub async fn tables(&self, caller: &Caller) -> Result<Vec<TableEntry>> {
        let mut tables = Vec::new();
        for catalog_name in self.context.catalog_names() {
            let Some(catalog) = self.context.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                if schema_name == SYSTEM_SCHEMA && !caller.admin {
                    continue;
                }
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in schema.table_names() {
                    let Some(table) = schema.table(&table_name).await? else {
                        continue;
                    };
                    tables.push(TableEntry {
                        catalog: catalog_name.clone(),
                        schema: schema_name.clone(),
                        name: table_name,
                        view: table.table_type() == datafusion::datasource::TableType::View,
                        columns: without_views(&table.schema()),
                    });
                }
            }
        }
        Ok(tables)
    }

    /// The queries running and those that ended.
    pub fn queries(&self) -> &QueryLog {
        &self.queries
    }

    /// The tables this engine reads.
    pub fn projections(&self) -> &Projections {
        &self.projections
    }

    /// The files whose footers this engine holds parsed (sealed files it has read), and the
    /// bytes they take.
    pub fn cached_footers(&self) -> (Vec<String>, usize) {
        let cache = self
            .context
            .runtime_env()
            .cache_manager
            .get_file_metadata_cache();
        let entries = cache.list_entries();
        let bytes = entries.values().map(|entry| entry.size_bytes).sum();
        (entries.into_keys().map(|p| p.to_string()).collect(), bytes)
    }

    /// Bytes the running queries hold in the memory pool now.
    pub fn memory_reserved(&self) -> usize {
        self.context.runtime_env().memory_pool.reserved()
    }

    /// The limits.
    pub fn limits(&self) -> SqlLimits {
        self.limits
    }

    /// Plans `query` (refusing anything but a read) and starts it on the query runtime; the
    /// answer streams from the returned [`QueryStream`].
    pub async fn execute(&self, mut query: Query) -> Result<QueryStream> {
        let id = query.id.take().unwrap_or_else(QueryLog::new_id);
        let caller = query.caller.clone();
        let mut ticket = self.queries.begin(id, caller, query.protocol, &query.sql)?;
        match self.start_streaming(query, &ticket).await {
            Ok(started) => Ok(started.with_ticket(ticket)),
            Err(error) => {
                ticket.ended(Err(&error));
                Err(error)
            }
        }
    }

    async fn start_streaming(&self, query: Query, ticket: &Ticket) -> Result<QueryStream> {
        let timeout = query
            .timeout
            .unwrap_or(self.limits.default_timeout)
            .min(self.limits.max_timeout);
        let max_rows = query
            .max_rows
            .unwrap_or(self.limits.max_rows)
            .min(self.limits.max_rows);
        let deadline = Instant::now() + timeout;
        let (started, schema) = tokio::sync::oneshot::channel();
        // Two batches in flight: the query runs ahead of a slow client by no more than that.
        let (sender, batches) = tokio::sync::mpsc::channel(2);
        let engine = self.clone();
        let cancellation = ticket.cancellation();
        // The producer keeps the query's memory (sorts, aggregates) while it waits for a
        // client to read: it stops at the deadline or a cancel even when nobody reads, and
        // says why, so the reader never takes its end for the end of the answer.
        let task = self.runtime.handle().spawn(async move {
            let produce = async move {
                let mut stream = match engine.start(&query).await {
                    Ok(stream) => stream,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let schema = without_views(&stream.schema());
                if started.send(Ok(schema.clone())).is_err() {
                    return;
                }
                while let Some(batch) = stream.next().await {
                    let batch = batch
                        .map_err(Error::from)
                        .and_then(|batch| plain_strings(batch, &schema));
                    let failed = batch.is_err();
                    if sender.send(batch).await.is_err() || failed {
                        return;
                    }
                }
            };
            tokio::select! {
                () = produce => Ok(()),
                () = cancellation.cancelled() => Err(Error::Cancelled),
                () = tokio::time::sleep_until(deadline) => {
                    Err(Error::Timeout(timeout.as_millis() as u64))
                }
            }
        });
        let mut task = AbortOnDrop(task);
        let schema = tokio::select! {
            _ = ticket.cancelled() => return Err(Error::Cancelled),
            schema = tokio::time::timeout_at(deadline, schema) => schema,
        };
        let schema = match schema {
            Err(_) => return Err(Error::Timeout(timeout.as_millis() as u64)),
            // The task ended before it planned: stopped (say why) or panicked.
            Ok(Err(_)) => {
                return Err(match (&mut task.0).await {
                    Ok(Err(error)) => error,
                    _ => Error::Panicked("before its first batch".into()),
                })
            }
            Ok(Ok(schema)) => schema?,
        };
        Ok(QueryStream {
            schema,
            batches,
            task,
            ended: false,
            deadline,
            timeout,
            max_rows,
            rows: 0,
            ticket: None,
        })
    }

    /// Runs `sql` under the default limits and collects its answer.
    pub async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let query = Query {
            sql: sql.to_owned(),
            ..Query::default()
        };
        self.execute(query).await?.collect().await
    }

    /// Plans `query` as it would run, refusing what it would refuse: anything but a read, and
    /// `system.queries` to a caller who is not an admin. Protocols describe a statement's
    /// parameters and columns from this plan before they run it.
    pub async fn plan(&self, query: &Query) -> Result<LogicalPlan> {
        Ok(self.plan_in_scope(query).await?.1)
    }

    /// The session a query of `caller` plans and runs in: the engine's, with the caller's read
    /// scope resolved to agency codes for the table providers to narrow their scans to.
    fn session(&self, caller: &Caller) -> SessionState {
        let scope = ScopeSet(self.codes(&caller.scope));
        let mut state = self.context.state();
        state.config_mut().set_extension(Arc::new(scope));
        state
    }

    /// The agencies `scope` reads, as of the agencies folded now (`None`: every agency).
    fn codes(&self, scope: &ReadScope) -> Option<Arc<std::collections::BTreeSet<String>>> {
        match scope {
            ReadScope::All => None,
            ReadScope::Agencies(roots) => {
                Some(Arc::new(self.projections.read(|tables| {
                    crate::scope::resolve(&tables.agencies, roots)
                })))
            }
        }
    }

    /// Which of the log's events `scope` reads, for the API's reads of the log (`None`:
    /// all of them).
    pub fn log_scope(&self, scope: &ReadScope) -> Option<crate::scope::LogScope> {
        self.codes(scope).map(crate::scope::LogScope::new)
    }

    /// [`SqlEngine::plan`], with the session it was planned in.
    async fn plan_in_scope(&self, query: &Query) -> Result<(SessionState, LogicalPlan)> {
        let state = self.session(&query.caller);
        let plan = match &query.statement {
            Some(statement) => state.statement_to_plan(statement.clone()).await?,
            None => state.create_logical_plan(&query.sql).await?,
        };
        let read_only = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        if let Err(error) = read_only.verify_plan(&plan) {
            return Err(Error::ReadOnly(format!(
                "chiso's SQL is read-only: {}",
                error.strip_backtrace()
            )));
        }
        if !query.caller.admin && reads_query_log(&plan) {
            return Err(Error::Forbidden(format!(
                "{SYSTEM_SCHEMA}.{QUERY_LOG_TABLE} is for admins"
            )));
        }
        Ok((state, plan))
    }

    async fn start(&self, query: &Query) -> Result<SendableRecordBatchStream> {
        let (state, plan) = self.plan_in_scope(query).await?;
        // Run in the session it was planned in: its scans see the caller's scope. (The plan is
        // a read: nothing here for the context's own handling of DDL.)
        let mut frame = DataFrame::new(state, plan);
        match &query.params {
            Some(Params::Json(params)) => frame = frame.with_param_values(param_values(params)?)?,
            Some(Params::Values(values)) => frame = frame.with_param_values(values.clone())?,
            None => {}
        }
        Ok(frame.execute_stream().await?)
    }
}

/// A table as [`SqlEngine::tables`] lists it.
#[derive(Debug, Clone)]
pub struct TableEntry {
    /// Its catalog (`chiso`).
    pub catalog: String,
    /// Its schema (`public`, `system`, `pg_catalog`, `information_schema`).
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Whether it is a view.
    pub view: bool,
    /// The columns of its answers.
    pub columns: SchemaRef,
}

/// JSON parameters as DataFusion values: an array for `$1…`, an object for `$name`.
fn param_values(params: &serde_json::Value) -> Result<ParamValues> {
    match params {
        serde_json::Value::Array(values) => {
            let values: Result<Vec<ScalarValue>> = values.iter().map(scalar).collect();
            Ok(values?.into())
        }
        serde_json::Value::Object(values) => {
            let values: Result<HashMap<String, ScalarValue>> = values
                .iter()
                .map(|(name, value)| Ok((name.clone(), scalar(value)?)))
                .collect();
            Ok(values?.into())
        }
        _ => Err(Error::InvalidParameter(
            "params must be a JSON array ($1, $2, …) or object ($name)".into(),
        )),
    }
}

fn scalar(value: &serde_json::Value) -> Result<ScalarValue> {
    use serde_json::Value as V;
    Ok(match value {
        V::Null => ScalarValue::Null,
        V::Bool(b) => ScalarValue::Boolean(Some(*b)),
        V::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        },
        V::String(s) => ScalarValue::Utf8(Some(s.clone())),
        V::Array(_) | V::Object(_) => {
            return Err(Error::InvalidParameter(
                "a parameter must be a string, number, boolean or null".into(),
            ))
        }
    })
}

/// The schema of an answer to a plan of this schema: string views (how the tables are read)
/// as plain strings, which every Arrow and Parquet client reads.
pub fn answer_schema(schema: &SchemaRef) -> SchemaRef {
    without_views(schema)
}

fn without_views(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Utf8View => field.as_ref().clone().with_data_type(DataType::Utf8),
            _ => field.as_ref().clone(),
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A batch of the answer in [`without_views`]'s schema.
fn plain_strings(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| cast(column, field.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|error| Error::Engine(error.to_string()))?;
    RecordBatch::try_new_with_options(
        schema.clone(),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
    )
    .map_err(|error| Error::Engine(error.to_string()))
}

/// Aborts a query's task when its stream is dropped, which cancels the query.
struct AbortOnDrop(tokio::task::JoinHandle<Result<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A running query's answer, batch by batch, under its time and row limits. Dropping it
/// cancels the query.
pub struct QueryStream {
    schema: SchemaRef,
    batches: tokio::sync::mpsc::Receiver<Result<RecordBatch>>,
    task: AbortOnDrop,
    ended: bool,
    deadline: Instant,
    timeout: Duration,
    max_rows: usize,
    rows: usize,
    /// Its place among the running queries (none only while it starts).
    ticket: Option<Ticket>,
}

impl QueryStream {
    /// The answer's columns.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn with_ticket(mut self, ticket: Ticket) -> Self {
        self.ticket = Some(ticket);
        self
    }

    /// The query's id.
    pub fn id(&self) -> &str {
        self.ticket.as_ref().map_or("", Ticket::id)
    }

    /// What counts bytes of the answer where a protocol encodes them.
    pub fn byte_counter(&self) -> Option<ByteCounter> {
        self.ticket.as_ref().map(Ticket::byte_counter)
    }

    /// Records in the query log that the answer was refused with `code` after the query ran
    /// (its format could not carry it: past an Excel sheet's limits), not sent.
    pub fn refuse(&mut self, code: &'static str) {
        if let Some(ticket) = &mut self.ticket {
            ticket.refused(code);
        }
    }

    /// Counts bytes of the answer sent to the client (for the query log).
    pub fn add_bytes(&self, bytes: u64) {
        if let Some(ticket) = &self.ticket {
            ticket.add_bytes(bytes);
        }
    }

    /// The next batch; `None` at the end. The end or an error is recorded in the query log.
    pub async fn next(&mut self) -> Option<Result<RecordBatch>> {
        let next = self.next_batch().await;
        if let Some(ticket) = &mut self.ticket {
            match &next {
                None => ticket.ended(Ok(())),
                Some(Err(error)) => ticket.ended(Err(error)),
                Some(Ok(batch)) => ticket.add_rows(batch.num_rows() as u64),
            }
        }
        next
    }

    async fn next_batch(&mut self) -> Option<Result<RecordBatch>> {
        let (ticket, batches) = (&self.ticket, &mut self.batches);
        let cancelled = async {
            match ticket {
                Some(ticket) => ticket.cancelled().await,
                None => std::future::pending().await,
            }
        };
        let received = tokio::select! {
            _ = cancelled => return Some(Err(Error::Cancelled)),
            received = tokio::time::timeout_at(self.deadline, batches.recv()) => received,
        };
        let batch = match received {
            Err(_) => return Some(Err(Error::Timeout(self.timeout.as_millis() as u64))),
            Ok(None) => return self.ended().await.err().map(Err),
            Ok(Some(Err(error))) => return Some(Err(error)),
            Ok(Some(Ok(batch))) => batch,
        };
        self.rows += batch.num_rows();
        if self.rows > self.max_rows {
            return Some(Err(Error::TooManyRows(self.max_rows)));
        }
        Some(Ok(batch))
    }

    /// Whether the query's task ended well once its batches ran out: a panic, a cancel or
    /// the deadline drop the sender too, and must not read as the end of a shorter answer.
    async fn ended(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.ended, true) {
            return Ok(());
        }
        match (&mut self.task.0).await {
            Ok(ended) => ended,
            Err(error) => {
                tracing::error!(%error, "a query's task failed");
                Err(Error::Panicked(error.to_string()))
            }
        }
    }

    /// Every remaining batch.
    pub async fn collect(mut self) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        while let Some(batch) = self.next().await {
            batches.push(batch?);
        }
        Ok(batches)
    }
}
