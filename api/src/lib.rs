//! `chiso-api` is chiso's HTTP surface (ARCHITECTURE.md §6) on axum: the log endpoints,
//! Server-Sent Events, and the operator endpoints. Every error leaves through one mapping
//! ([`ApiError`]) as `{"error": {"code", "message", "details"}}`; internal errors never show
//! their text. Nothing of a refused request is written.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let appender = chiso_store::EventStore::open_with(
//!     "./chiso-data/log",
//!     chiso_store::StoreMetrics::default(),
//!     chiso_ingest::IngestModel::new(),
//! )?;
//! let ingestor = chiso_ingest::Ingestor::new(appender);
//! let state = chiso_api::AppState::new(ingestor, chiso_api::Limits::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
//! axum::serve(listener, chiso_api::router(state)).await?;
//! # Ok(()) }
//! ```

mod auth;
mod backup;
mod body;
mod console;
mod error;
mod listen;
mod log;
mod openapi;
mod ops;
mod quota;
mod rankings;
mod report;
mod sql;
mod subscribe;
mod verify;
mod wire;
mod xlsx;

pub use auth::{Auth, Principal, Scope};
pub use error::{ApiError, ErrorCode, ErrorKind, Result};
pub use listen::{serve, ServeLimits};
pub use log::{append_ndjson, Batch};
pub use ops::{install_panic_hook, HttpMetrics, SqlMetrics, TableMetrics};
pub use rankings::spawn_scheduler;
pub use verify::report as verify_report;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use chiso_ingest::Ingestor;
use chiso_store::EventStore;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tower_http::compression::predicate::{DefaultPredicate, NotForContentType, Predicate};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Request size limits, by route (413 above them). A body is read only up to its route's
/// limit, so no request holds more memory than that.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest body of an append or an NDJSON batch, in bytes.
    pub max_body_bytes: usize,
    /// Largest body of a SQL request (the statement and its parameters), in bytes.
    pub max_sql_body_bytes: usize,
    /// Bytes of append bodies held at once across requests (429 `overloaded` past it).
    pub max_inflight_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_sql_body_bytes: 1 << 20,
            max_inflight_body_bytes: 256 << 20,
        }
    }
}

/// Largest body of a token or admin request: a few fields of JSON.
pub const MAX_CONTROL_BODY_BYTES: usize = 64 << 10;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// The event log, for reading it.
    pub store: EventStore,
    /// The way into the log: every append goes through it.
    pub ingestor: Ingestor,
    /// Request limits.
    pub limits: Limits,
    /// The append bodies held now, against `limits.max_inflight_body_bytes`.
    bodies: body::BodyBudget,
    /// Cancelled when the server shuts down: ends live subscriptions.
    pub shutdown: CancellationToken,
    /// Tokens and scopes; off unless configured.
    auth: Auth,
    http_metrics: HttpMetrics,
    /// The SQL engine over the tables; without it the SQL endpoints answer 404.
    sql: Option<chiso_query::SqlEngine>,
    sql_metrics: SqlMetrics,
    table_metrics: TableMetrics,
    log_memory: ops::LogMemoryMetrics,
    quota_metrics: quota::QuotaMetrics,
    registry: Arc<Registry>,
}

impl AppState {
    /// State over the log `ingestor` appends to, with a metrics registry holding the store's
    /// and the HTTP instruments. Appends are checked against the event catalog
    /// (ARCHITECTURE.md §4) unless the ingestor was made without it.
    pub fn new(ingestor: Ingestor, limits: Limits) -> Self {
        let store = ingestor.store().clone();
        let mut registry = Registry::default();
        store.metrics().register(&mut registry);
        let http_metrics = HttpMetrics::default();
        http_metrics.register(&mut registry);
        let sql_metrics = SqlMetrics::default();
        sql_metrics.register(&mut registry);
        let table_metrics = TableMetrics::default();
        table_metrics.register(&mut registry);
        let log_memory = ops::LogMemoryMetrics::default();
        log_memory.register(&mut registry);
        let quota_metrics = quota::QuotaMetrics::default();
        quota_metrics.register(&mut registry);
        Self {
            store,
            ingestor,
            limits,
            bodies: body::BodyBudget::new(
                limits.max_inflight_body_bytes.max(limits.max_body_bytes),
            ),
            shutdown: CancellationToken::new(),
            auth: Auth::default(),
            http_metrics,
            sql: None,
            sql_metrics,
            table_metrics,
            log_memory,
            quota_metrics,
            registry: Arc::new(registry),
        }
    }
}

impl AppState {
    /// Serves SQL, the report and readiness of the tables from `engine`.
    pub fn with_sql(mut self, engine: chiso_query::SqlEngine) -> Self {
        self.sql = Some(engine);
        self
    }

    /// SQL instruments (queries running now, for tests and operators).
    pub fn sql_metrics(&self) -> &SqlMetrics {
        &self.sql_metrics
    }

    /// Requires tokens (see [`Auth::enabled`]).
    pub fn with_auth(mut self, auth: Auth) -> Self {
        auth.count_in(&self.quota_metrics);
        self.auth = auth;
        self
    }
}

/// The whole HTTP API, and its OpenAPI document (`GET /v1/openapi.json`), collected from the
/// same routes.
pub fn router(state: AppState) -> Router {
    let (router, document) = routes().split_for_parts();
    let _ = openapi::DOCUMENT.set(serde_json::to_value(&document).unwrap_or_default());
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::track,
        ))
        // Answers compressed as the client accepts (gzip, zstd); not event streams, whose
        // events must leave as they come, nor answers under 32 bytes, nor Excel workbooks
        // (already zip files).
        .layer(
            tower_http::compression::CompressionLayer::new().compress_when(
                DefaultPredicate::new().and(NotForContentType::const_new(sql::XLSX_CONTENT_TYPE)),
            ),
        )
        // Each handler reads its body with `body::read_limited` under its route's limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

/// Every route, each documented by its handler's `#[utoipa::path]`.
fn routes() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(log::append_to_stream, log::read_stream))
        .routes(routes!(log::append_batch, log::read_all))
        .routes(routes!(subscribe::subscribe))
        .routes(routes!(schema))
        .routes(routes!(sql::get_sql, sql::post_sql))
        .routes(routes!(sql::dossier_report))
        .routes(routes!(sql::list_queries))
        .routes(routes!(sql::cancel_query))
        .routes(routes!(rankings::list))
        .routes(routes!(rankings::publish))
        .routes(routes!(backup::backup))
        .routes(routes!(verify::verify))
        .routes(routes!(auth::create_token, auth::list_tokens))
        .routes(routes!(auth::revoke_token))
        .routes(routes!(ops::health))
        .routes(routes!(ops::ready))
        .routes(routes!(ops::metrics))
        .routes(routes!(openapi::document))
        .routes(routes!(console::index))
        .routes(routes!(console::asset))
}

/// The OpenAPI document of [`router`], for tests and tools.
pub fn openapi_document() -> serde_json::Value {
    serde_json::to_value(routes().split_for_parts().1).unwrap_or_default()
}

/// `GET /v1/schema`: the JSON Schema of the event catalog, generated from its types.
#[utoipa::path(get, path = "/v1/schema", tag = "ops", responses((status = 200, description = "JSON Schema of the event catalog")))]
async fn schema() -> axum::Json<serde_json::Value> {
    axum::Json(chiso_ingest::json_schema())
}

async fn not_found() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "not_found",
        "no such endpoint; see ARCHITECTURE.md §6 for the API",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}
