//! Operator endpoints: liveness, readiness, Prometheus metrics, and HTTP instrumentation.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::FutureExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde_json::json;
use std::panic::AssertUnwindSafe;
use std::sync::LazyLock;
use std::time::Instant;

/// Labels of the HTTP request histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of the error counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    code: &'static str,
}

/// HTTP instruments: request latency by method, route and status (appends included), and
/// error answers by code.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        Self {
            requests: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_1, 2.0, 18))
            }),
            errors: Family::default(),
        }
    }
}

impl HttpMetrics {
    /// Registers `chiso_http_request_duration_seconds`, `chiso_http_errors` and
    /// `chiso_panics`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "chiso_http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            self.requests.clone(),
        );
        registry.register(
            "chiso_http_errors",
            "Error answers by code",
            self.errors.clone(),
        );
        registry.register(
            "chiso_panics",
            "Panics caught anywhere in the process (handlers, queries, background work)",
            PANICS.clone(),
        );
    }
}

/// Every panic of the process, counted by the hook [`install_panic_hook`] sets.
static PANICS: LazyLock<Counter> = LazyLock::new(Counter::default);

/// Counts every panic in `chiso_panics` and logs it, then runs the default hook. A panic in a
/// handler or a query is answered as a 500 `internal`; the count tells operators it happened.
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.inc();
        tracing::error!(panic = %info, "panic");
        default(info);
    }));
}

/// SQL instruments: queries started, and queries whose answer is still being produced.
#[derive(Clone, Default)]
pub struct SqlMetrics {
    started: prometheus_client::metrics::counter::Counter,
    running: prometheus_client::metrics::gauge::Gauge,
}

impl SqlMetrics {
    /// Registers `chiso_sql_queries` and `chiso_sql_queries_running`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "chiso_sql_queries",
            "SQL queries started",
            self.started.clone(),
        );
        registry.register(
            "chiso_sql_queries_running",
            "SQL queries planning, running or streaming their answer",
            self.running.clone(),
        );
    }

    /// Counts a query as running until the returned guard drops (the answer ends or the
    /// client goes away).
    pub fn running(&self) -> RunningQuery {
        self.started.inc();
        self.running.inc();
        RunningQuery(self.running.clone())
    }

    /// Queries running now.
    pub fn running_now(&self) -> i64 {
        self.running.get()
    }
}

/// Registers gauges read when metrics are scraped: name, help, gauge.
fn register_gauges(registry: &mut Registry, gauges: &[(&str, &str, &Gauge)]) {
    for (name, help, gauge) in gauges {
        registry.register(*name, *help, (*gauge).clone());
    }
}

/// Sets a gauge to a count or a size (saturating: a gauge is an `i64`).
fn set_gauge(gauge: &Gauge, value: u64) {
    gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
}

/// Where the tables' rows are, read when metrics are scraped.
#[derive(Clone, Default)]
pub struct TableMetrics {
    position: Gauge,
    dossiers_in_memory: Gauge,
    dossiers_sealed: Gauge,
    sealed_months: Gauge,
    sealed_bytes: Gauge,
    daily_rows: Gauge,
    daily_cold_rows: Gauge,
    memory_bytes: Gauge,
    recalled: Gauge,
    repaired: Gauge,
    footer_files: Gauge,
    footer_bytes: Gauge,
}

impl TableMetrics {
    /// Registers the `chiso_tables_*` gauges.
    pub fn register(&self, registry: &mut Registry) {
        let gauges = [
            (
                "chiso_tables_position",
                "Log position the tables include every event before",
                &self.position,
            ),
            (
                "chiso_tables_dossiers_in_memory",
                "Dossier rows in memory: hot months, and open or changed rows of sealed months",
                &self.dossiers_in_memory,
            ),
            (
                "chiso_tables_dossiers_sealed",
                "Dossier rows read from sealed Parquet files",
                &self.dossiers_sealed,
            ),
            (
                "chiso_tables_sealed_months",
                "Months of dossiers with a sealed file",
                &self.sealed_months,
            ),
            (
                "chiso_tables_sealed_bytes",
                "Bytes of the sealed files",
                &self.sealed_bytes,
            ),
            (
                "chiso_tables_agency_daily_rows",
                "Rows of agency_daily in memory",
                &self.daily_rows,
            ),
            (
                "chiso_tables_agency_daily_cold_rows",
                "Rows of agency_daily only in their segments (settled months)",
                &self.daily_cold_rows,
            ),
            (
                "chiso_tables_memory_bytes",
                "Estimated memory of the table rows kept in memory (what --hot-memory-mb bounds)",
                &self.memory_bytes,
            ),
            (
                "chiso_tables_recalled",
                "Sealed dossiers a late event brought back into memory since start",
                &self.recalled,
            ),
            (
                "chiso_tables_repaired_at_open",
                "Partitions whose damaged or missing segments were rebuilt alone from the log at start",
                &self.repaired,
            ),
            (
                "chiso_tables_footer_cache_files",
                "Sealed files whose Parquet footers the SQL engine holds parsed",
                &self.footer_files,
            ),
            (
                "chiso_tables_footer_cache_bytes",
                "Bytes of the sealed files' parsed footers the SQL engine holds (at most 50 MiB)",
                &self.footer_bytes,
            ),
        ];
        register_gauges(registry, &gauges);
    }

    fn update(&self, engine: &chiso_query::SqlEngine) {
        let projections = engine.projections();
        let stored = projections.dossier_storage();
        set_gauge(&self.position, projections.position());
        set_gauge(&self.dossiers_in_memory, stored.in_memory as u64);
        set_gauge(&self.dossiers_sealed, stored.sealed_rows);
        set_gauge(&self.sealed_months, stored.sealed_months as u64);
        set_gauge(&self.sealed_bytes, stored.sealed_bytes);
        set_gauge(&self.daily_rows, stored.daily_rows as u64);
        set_gauge(&self.daily_cold_rows, stored.daily_cold_rows);
        set_gauge(&self.memory_bytes, stored.memory_estimate() as u64);
        set_gauge(&self.recalled, stored.recalled);
        set_gauge(&self.repaired, projections.repaired_at_open() as u64);
        let (files, bytes) = engine.cached_footers();
        set_gauge(&self.footer_files, files.len() as u64);
        set_gauge(&self.footer_bytes, bytes as u64);
    }
}

/// What the log's RocksDB holds in memory and owes in compactions, read when metrics are
/// scraped.
#[derive(Clone, Default)]
pub struct LogMemoryMetrics {
    block_cache: Gauge,
    memtables: Gauge,
    table_readers: Gauge,
    pending_compaction: Gauge,
    compactions: Gauge,
    flushes: Gauge,
}

impl LogMemoryMetrics {
    /// Registers the `chiso_log_*_bytes` memory gauges.
    pub fn register(&self, registry: &mut Registry) {
        let gauges = [
            (
                "chiso_log_block_cache_bytes",
                "Bytes in the block caches of the log's column families",
                &self.block_cache,
            ),
            (
                "chiso_log_memtable_bytes",
                "Bytes in the log's memtables, every column family",
                &self.memtables,
            ),
            (
                "chiso_log_table_readers_bytes",
                "Bytes the log's open SST files hold outside the block caches (index and filter blocks)",
                &self.table_readers,
            ),
            (
                "chiso_log_compaction_pending_bytes",
                "Bytes RocksDB estimates its compactions of the log still have to rewrite",
                &self.pending_compaction,
            ),
            (
                "chiso_log_compactions_running",
                "Compactions of the log running now",
                &self.compactions,
            ),
            (
                "chiso_log_flushes_running",
                "Memtable flushes of the log running now",
                &self.flushes,
            ),
        ];
        register_gauges(registry, &gauges);
    }

    fn update(&self, store: &chiso_store::EventStore) {
        let memory = store.memory();
        set_gauge(&self.block_cache, memory.block_cache);
        set_gauge(&self.memtables, memory.memtables);
        set_gauge(&self.table_readers, memory.table_readers);
        let background = store.background();
        set_gauge(
            &self.pending_compaction,
            background.pending_compaction_bytes,
        );
        set_gauge(&self.compactions, background.running_compactions);
        set_gauge(&self.flushes, background.running_flushes);
    }
}

/// A running query; dropping it ends the count.
pub struct RunningQuery(prometheus_client::metrics::gauge::Gauge);

impl Drop for RunningQuery {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Middleware that times each request under its route template.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    // A handler that panics answers 500 instead of dropping the connection.
    let response = match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(_) => crate::error::ApiError::internal(&"a request handler panicked").into_response(),
    };
    if let Some(code) = response.extensions().get::<crate::ErrorCode>() {
        let labels = ErrorLabels { code: code.0 };
        state.http_metrics.errors.get_or_create(&labels).inc();
    }
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    state
        .http_metrics
        .requests
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}

/// `GET /health`: the process answers.
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "`{\"status\": \"ok\"}`")))]
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`: 200 while the log takes writes, 503 otherwise.
#[utoipa::path(get, path = "/ready", tag = "ops", responses(
    (status = 200, description = "`{ready, log_head, tables_position}`: the log takes writes and the tables have caught up"),
    (status = 503, description = "Not ready, with `reason`")))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let head = state.store.head();
    let tables = state.sql.as_ref().map(|sql| sql.projections().position());
    let reason = if !state.store.is_writable() || state.shutdown.is_cancelled() {
        Some("the log is not taking writes")
    } else if state.store.disk_full().is_some() {
        Some("the disk is full: appends are refused until space is freed")
    } else if tables.is_some_and(|position| position < head) {
        Some("the tables are catching up with the log")
    } else {
        None
    };
    let mut body = json!({"ready": reason.is_none(), "log_head": head});
    if let Some(position) = tables {
        body["tables_position"] = position.into();
    }
    match reason {
        None => Json(body).into_response(),
        Some(reason) => {
            body["reason"] = reason.into();
            (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
        }
    }
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Prometheus text", content_type = "text/plain"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, principal: crate::Principal) -> Response {
    if let Err(error) = principal.require_admin() {
        return error.into_response();
    }
    if let Some(sql) = &state.sql {
        state.table_metrics.update(sql);
    }
    state.log_memory.update(&state.store);
    let mut text = String::new();
    if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &state.registry) {
        return crate::error::ApiError::internal(&error).into_response();
    }
    let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}
