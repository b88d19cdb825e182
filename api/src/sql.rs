//! `GET·POST /v1/sql` and `GET /v1/reports/dossiers`: answers streamed batch by batch in
//! JSON, JSON lines, CSV, Arrow IPC or Parquet.
//!
//! The status is decided before the first byte: the first [`HOLD_ROWS`] rows are held back,
//! so an answer that small gets its exact error (408, 413, 503). Past that the answer streams;
//! an error later (a limit crossed, a cancel) ends a JSON answer with a last element
//! `{"error": {"code", "message"}}`, a JSON-lines answer with that object as its last line and
//! a CSV answer with a last line `# error: <code>: <message>`; an Arrow or Parquet answer ends
//! without its end (the transfer is cut, and the partial file does not read).
//!
//! Every answer carries the query's id in `X-Chiso-Query-Id`: the client's own, sent in that
//! header, or a new one. `GET /v1/queries` lists the running queries and `DELETE
//! /v1/queries/{id}` cancels one.

use crate::error::{ApiError, Result};
use crate::xlsx::{self, Heading, Sheet};
use crate::{AppState, Principal};
use axum::body::{Body, Bytes};
use axum::extract::{Query as QueryString, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chiso_query::datafusion::arrow::array::RecordBatch;
use chiso_query::datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use chiso_query::datafusion::arrow::datatypes::SchemaRef;
use chiso_query::datafusion::arrow::ipc::writer::IpcWriteOptions;
use chiso_query::datafusion::arrow::ipc::writer::StreamWriter;
use chiso_query::datafusion::arrow::ipc::CompressionType;
use chiso_query::datafusion::arrow::json::writer::{
    LineDelimited, WriterBuilder as JsonWriterBuilder,
};
use chiso_query::datafusion::parquet::arrow::ArrowWriter;
use chiso_query::datafusion::parquet::basic::{Compression, ZstdLevel};
use chiso_query::datafusion::parquet::file::properties::WriterProperties;
use chiso_query::{ErrorKind, Protocol, Query, QueryLog, QueryStream};
use serde::Deserialize;
use std::time::Duration;

/// Rows held back before the answer starts streaming.
const HOLD_ROWS: usize = 65_536;
/// The query's own id, sent by the client (documentation of the header).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
pub struct QueryIdHeader {
    /// 1–128 letters, digits, `-`, `_`, `.`, `:`; a new UUID when absent. 409
    /// `query_id_in_use` while a query of that id runs.
    #[param(rename = "X-Chiso-Query-Id")]
    id: Option<String>,
}

/// The query string of `GET /v1/reports/dossiers` (documentation: the handler reads it
/// pair by pair, to name an unknown parameter).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ReportQuery {
    /// The period's first local date, `YYYY-MM-DD`.
    from: String,
    /// The period's last local date, `YYYY-MM-DD`.
    to: String,
    /// As for `/v1/sql`.
    format: Option<String>,
    /// As for `/v1/sql`.
    min_position: Option<u64>,
    /// Only the agencies of this province (its code, e.g. `26`); required by `layout=form`.
    province: Option<String>,
    /// `agencies` (default): a row per agency with dossiers. `form`: the printed form's rows —
    /// every agency of the province, grouped (the Center; the province and its departments;
    /// each district followed by its communes), each group closed by a subtotal, the province's
    /// total last (`line`: `agency` · `subtotal` · `total`).
    layout: Option<String>,
}

/// The header naming a query's id, in a request and in its answer.
pub static QUERY_ID: HeaderName = HeaderName::from_static("x-chiso-query-id");
/// Longest wait for `min_position`, whatever the query's time limit.
const MAX_POSITION_WAIT: Duration = Duration::from_secs(10);

/// Options of a query, from the query string or a JSON body.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SqlRequest {
    /// The statement (or `sql`).
    q: Option<String>,
    /// The statement (or `q`).
    sql: Option<String>,
    /// A JSON array for `$1, $2, …` or an object for `$name`; in a query string, its JSON text.
    #[schema(value_type = Option<Object>)]
    #[param(value_type = Option<String>)]
    params: Option<serde_json::Value>,
    /// `json` (default) · `jsonl` · `csv` · `arrow` · `parquet` · `xlsx`.
    format: Option<String>,
    /// Wait (at most 10 s) until the tables include this log position.
    min_position: Option<u64>,
    /// Time limit (default 30 000, at most 300 000).
    timeout_ms: Option<u64>,
    /// Row limit (default and ceiling `--sql-max-rows`).
    max_rows: Option<usize>,
    /// Buffer compression of an Arrow or Parquet answer: `zstd` or `lz4`.
    compression: Option<String>,
}

/// The wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Jsonl,
    Csv,
    Arrow,
    Parquet,
    Xlsx,
}

impl Format {
    fn parse(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("json") {
            "json" => Self::Json,
            "jsonl" | "ndjson" => Self::Jsonl,
            "csv" => Self::Csv,
            "arrow" => Self::Arrow,
            "parquet" => Self::Parquet,
            "xlsx" => Self::Xlsx,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!(
                        "format {other:?} is not one of json, jsonl, csv, arrow, parquet, xlsx"
                    ),
                ))
            }
        })
    }

    fn content_type(self) -> &'static str {
        match self {
            Self::Json => "application/json",
            Self::Jsonl => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8; header=present",
            Self::Arrow => "application/vnd.apache.arrow.stream",
            Self::Parquet => "application/vnd.apache.parquet",
            Self::Xlsx => XLSX_CONTENT_TYPE,
        }
    }
}

/// An Excel workbook (`format=xlsx`).
pub(crate) const XLSX_CONTENT_TYPE: &str =
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";

/// How an answer in Excel is headed and named: a report has its form's header rows.
#[derive(Debug, Clone)]
struct Workbook {
    heading: Heading,
    filename: String,
}

/// The shape of every SQL handler: the query's id, the `query` scope, then the request, then
/// the answer, which names the id.
async fn answer(
    state: &AppState,
    principal: Principal,
    headers: &HeaderMap,
    request: impl std::future::Future<Output = Result<SqlRequest>>,
    workbook: Option<Workbook>,
) -> Response {
    let id = match headers.get(&QUERY_ID) {
        None => QueryLog::new_id(),
        // A value that is not text is no id either: the one check refuses it.
        Some(value) => {
            let id = value.to_str().unwrap_or_default();
            if let Err(error) = QueryLog::check_id(id) {
                return query_error(error).into_response();
            }
            id.to_owned()
        }
    };
    let answered = async {
        principal.require_query()?;
        run(state, &principal, id.clone(), request.await?, workbook).await
    };
    let mut response = answered.await.unwrap_or_else(IntoResponse::into_response);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(QUERY_ID.clone(), value);
    }
    response
}

/// `GET /v1/sql?q=…`.
#[utoipa::path(get, path = "/v1/sql", tag = "sql", security(("bearer" = [])), params(SqlRequest, QueryIdHeader),
    responses((status = 200, description = "The answer in `format` (`application/json`, `application/x-ndjson`, `text/csv`, `application/vnd.apache.arrow.stream`, `application/vnd.apache.parquet`, or a whole Excel workbook), streamed; `X-Chiso-Query-Id` names the query"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn get_sql(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    QueryString(raw): QueryString<Vec<(String, String)>>,
) -> Response {
    answer(
        &state,
        principal,
        &headers,
        async { from_query_string(raw, None) },
        None,
    )
    .await
}

/// `POST /v1/sql` with a JSON body, or with the SQL as a text body and options in the query
/// string.
#[utoipa::path(post, path = "/v1/sql", tag = "sql", security(("bearer" = [])), params(QueryIdHeader),
    request_body(content(
        (SqlRequest = "application/json"),
        (String = "text/plain", example = "SELECT count(*) FROM dossiers")),
        description = "A JSON query, or the SQL itself with the options in the query string"),
    responses((status = 200, description = "The answer in `format`, streamed"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn post_sql(
    State(state): State<AppState>,
    principal: Principal,
    request: Request,
) -> Response {
    let limit = state.limits.max_sql_body_bytes;
    let (parts, body) = request.into_parts();
    let headers = parts.headers.clone();
    let request = async move {
        let bytes = crate::body::read_limited(&parts.headers, body, limit).await?;
        let raw: Vec<(String, String)> = parts.uri.query().map(query_pairs).unwrap_or_default();
        let request = if is_json(&parts.headers) {
            if !raw.is_empty() {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    "with a JSON body, put every option in the body",
                ));
            }
            serde_json::from_slice::<SqlRequest>(&bytes).map_err(|error| {
                ApiError::bad_request("invalid_json", format!("the body is not a query: {error}"))
            })?
        } else {
            let sql = String::from_utf8(bytes.to_vec()).map_err(|_| {
                ApiError::bad_request("invalid_parameter", "the SQL body is not UTF-8")
            })?;
            from_query_string(raw, Some(sql))?
        };
        Ok(request)
    };
    answer(&state, principal, &headers, request, None).await
}

/// `GET /v1/reports/dossiers?from=&to=&format=`: the Biểu 06 report per agency.
#[utoipa::path(get, path = "/v1/reports/dossiers", tag = "sql", security(("bearer" = [])), params(ReportQuery, QueryIdHeader),
    responses((status = 200, description = "Biểu 06 per agency (`dossier_report`), in `format`"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn dossier_report(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    QueryString(raw): QueryString<Vec<(String, String)>>,
) -> Response {
    let (request, workbook) = match report_request(raw) {
        Ok((request, workbook)) => (Ok(request), Some(workbook)),
        Err(error) => (Err(error), None),
    };
    answer(&state, principal, &headers, async { request }, workbook).await
}

/// The query a report request asks for, and the workbook it makes in Excel.
fn report_request(raw: Vec<(String, String)>) -> Result<(SqlRequest, Workbook)> {
    let mut request = SqlRequest::default();
    let (mut from, mut to, mut province, mut layout) = (None, None, None, None);
    for (name, value) in raw {
        match name.as_str() {
            "from" => from = Some(date(&name, &value)?),
            "to" => to = Some(date(&name, &value)?),
            "format" => request.format = Some(value),
            "min_position" => request.min_position = Some(number(&name, &value)?),
            "province" => province = Some(value),
            "layout" => layout = Some(value),
            other => return Err(unknown_parameter(other)),
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "from and to are required local dates, e.g. from=2019-01-01&to=2019-12-31",
        ));
    };
    let report = format!("dossier_report(DATE '{from}', DATE '{to}')");
    request.sql = Some(match (layout.as_deref(), &province) {
        (None | Some("agencies"), None) => format!("SELECT * FROM {report} ORDER BY agency"),
        (None | Some("agencies"), Some(_)) => {
            format!("SELECT * FROM {report} WHERE province = $province ORDER BY agency")
        }
        (Some("form"), Some(_)) => crate::report::form_sql(&report),
        (Some("form"), None) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "layout=form is one province's form: add province=<code>, e.g. province=26",
            ))
        }
        (Some(other), _) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                format!("layout {other:?} is not one of agencies, form"),
            ))
        }
    });
    if let Some(province) = &province {
        request.params = Some(serde_json::json!({ "province": province }));
    }
    let workbook = Workbook {
        heading: crate::xlsx::report_heading(from, to),
        filename: format!("bieu06-{from}-{to}.xlsx"),
    };
    Ok((request, workbook))
}

/// Runs `sql` with named `params` for a caller that needs the `query` scope.
pub async fn run_for(
    state: AppState,
    principal: Principal,
    sql: String,
    params: serde_json::Value,
    format: Option<String>,
) -> Response {
    let request = SqlRequest {
        sql: Some(sql),
        params: Some(params),
        format,
        ..SqlRequest::default()
    };
    answer(
        &state,
        principal,
        &HeaderMap::new(),
        async { Ok(request) },
        None,
    )
    .await
}

fn date(name: &str, value: &str) -> Result<chrono::NaiveDate> {
    let parsed = (value.len() == 10).then(|| value.parse().ok()).flatten();
    parsed.ok_or_else(|| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{name} must be a date YYYY-MM-DD, not {value:?}"),
        )
    })
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value.parse().map_err(|_| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("{name} must be a non-negative integer, not {value:?}"),
        )
    })
}

fn unknown_parameter(name: &str) -> ApiError {
    ApiError::bad_request("invalid_parameter", format!("unknown parameter {name:?}"))
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .expect("a query string makes a URI"),
    )
    .map(|q| q.0)
    .unwrap_or_default()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn from_query_string(raw: Vec<(String, String)>, body: Option<String>) -> Result<SqlRequest> {
    let mut request = SqlRequest {
        sql: body,
        ..SqlRequest::default()
    };
    for (name, value) in raw {
        match name.as_str() {
            "q" => request.q = Some(value),
            "sql" => request.sql = Some(value),
            "format" => request.format = Some(value),
            "params" => {
                let params = serde_json::from_str(&value).map_err(|error| {
                    ApiError::bad_request(
                        "invalid_parameter",
                        format!("params must be a JSON array or object: {error}"),
                    )
                })?;
                request.params = Some(params);
            }
            "min_position" => request.min_position = Some(number(&name, &value)?),
            "timeout_ms" => request.timeout_ms = Some(number(&name, &value)?),
            "max_rows" => request.max_rows = Some(number(&name, &value)?),
            "compression" => request.compression = Some(value),
            other => return Err(unknown_parameter(other)),
        }
    }
    Ok(request)
}

async fn run(
    state: &AppState,
    principal: &Principal,
    id: String,
    request: SqlRequest,
    workbook: Option<Workbook>,
) -> Result<Response> {
    let engine = engine(state)?;
    let format = Format::parse(request.format.as_deref())?;
    let compression = Compressed::parse(request.compression.as_deref(), format)?;
    let sql = match (request.q, request.sql) {
        (Some(sql), None) | (None, Some(sql)) if !sql.trim().is_empty() => sql,
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "give the statement once, as q or as sql",
            ))
        }
        _ => {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "no SQL: pass it as q or sql",
            ))
        }
    };
    if let Some(position) = request.min_position {
        let wait = request
            .timeout_ms
            .map_or(MAX_POSITION_WAIT, Duration::from_millis)
            .min(MAX_POSITION_WAIT);
        engine
            .projections()
            .wait_for(position, wait)
            .await
            .map_err(query_error)?;
    }
    let query = Query {
        sql,
        statement: None,
        params: request.params.map(chiso_query::Params::Json),
        timeout: request.timeout_ms.map(Duration::from_millis),
        // An Excel sheet holds a million rows: past them the answer is `too_many_rows`.
        max_rows: match format {
            Format::Xlsx => Some(request.max_rows.unwrap_or(usize::MAX).min(xlsx::MAX_ROWS)),
            _ => request.max_rows,
        },
        id: Some(id),
        caller: principal.caller(),
        protocol: Protocol::Http,
    };
    let running = state.sql_metrics.running();
    let mut stream = engine.execute(query).await.map_err(query_error)?;
    if format == Format::Xlsx {
        let workbook = workbook.unwrap_or_else(|| Workbook {
            heading: Heading::default(),
            filename: format!("chiso-{}.xlsx", stream.id()),
        });
        return xlsx_answer(stream, running, workbook).await;
    }
    let mut held = Vec::new();
    let mut held_rows = 0;
    while held_rows < HOLD_ROWS {
        let Some(batch) = stream.next().await else {
            break;
        };
        let batch = batch.map_err(query_error)?;
        held_rows += batch.num_rows();
        held.push(batch);
    }
    let schema = stream.schema();
    let encoder = Encoder::new(format, &schema, compression).map_err(|e| ApiError::internal(&e))?;
    let body = answer_body(encoder, held, stream, running);
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

/// The whole answer as one workbook, written on a blocking thread as its batches come; sent
/// only once it is whole, so a refusal (too many rows, a text too long for a cell) or a failed
/// query is an error answer rather than a broken file.
async fn xlsx_answer(
    mut stream: QueryStream,
    running: crate::ops::RunningQuery,
    workbook: Workbook,
) -> Result<Response> {
    let schema = stream.schema();
    let (batches, mut received) = tokio::sync::mpsc::channel::<RecordBatch>(2);
    let heading = workbook.heading;
    let writer = tokio::task::spawn_blocking(move || {
        let first = received.blocking_recv();
        let mut sheet = Sheet::new(&schema, &heading, first.as_ref())?;
        if let Some(batch) = first {
            sheet.batch(&batch)?;
        }
        while let Some(batch) = received.blocking_recv() {
            sheet.batch(&batch)?;
        }
        sheet.finish()
    });
    while let Some(batch) = stream.next().await {
        // A failed query drops the channel: the writer stops and its file is removed.
        let batch = batch.map_err(query_error)?;
        if batches.send(batch).await.is_err() {
            break; // the writer refused a batch: its error is the answer
        }
    }
    drop(batches);
    let bytes = match writer.await.map_err(|error| ApiError::internal(&error))? {
        Ok(bytes) => bytes,
        Err(refused) => {
            stream.refuse(refused.code);
            return Err(refused);
        }
    };
    stream.add_bytes(bytes.len() as u64);
    drop(running);
    let disposition = format!("attachment; filename=\"{}\"", workbook.filename);
    Ok((
        [
            (header::CONTENT_TYPE, XLSX_CONTENT_TYPE.to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response())
}

fn engine(state: &AppState) -> Result<&chiso_query::SqlEngine> {
    state.sql.as_ref().ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            "this server has no SQL engine",
        )
    })
}

/// `GET /v1/queries`: the queries running now, oldest first — an admin's list has every
/// query, anyone else's only those of their own token.
#[utoipa::path(get, path = "/v1/queries", tag = "sql", security(("bearer" = [])),
    responses((status = 200, description = "`{queries: [{id, token_id, sql, protocol, started_at, rows}]}`, oldest first"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn list_queries(State(state): State<AppState>, principal: Principal) -> Result<Response> {
    principal.require_query()?;
    let running = engine(&state)?.queries().running(&principal.caller());
    Ok(axum::Json(serde_json::json!({ "queries": running })).into_response())
}

/// `DELETE /v1/queries/{id}`: cancels a running query (an admin any, anyone else their own);
/// its client gets `query_cancelled`.
#[utoipa::path(delete, path = "/v1/queries/{id}", tag = "sql", security(("bearer" = [])),
    params(("id" = String, Path, description = "The query's id")),
    responses((status = 204, description = "Cancelled: its client gets 409 `query_cancelled`"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn cancel_query(
    State(state): State<AppState>,
    principal: Principal,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<StatusCode> {
    principal.require_query()?;
    match engine(&state)?.queries().cancel(&id, &principal.caller()) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::new(
            ErrorKind::NotFound,
            "query_not_found",
            "no query of that id is running (or it is not yours)",
        )),
    }
}

/// A query error as an answer (through the one mapping of [`ApiError`]).
pub(crate) fn query_error(error: chiso_query::Error) -> ApiError {
    ApiError::from(error)
}

/// The body: the held batches, then the rest of the stream, encoded; an error past the first
/// byte ends the body with the error (see the module's doc). The stream stays with the body to
/// its end, so the query log counts the bytes sent and how the answer ended.
fn answer_body(
    encoder: Encoder,
    held: Vec<RecordBatch>,
    stream: QueryStream,
    running: crate::ops::RunningQuery,
) -> Body {
    struct Progress {
        encoder: Option<Encoder>,
        held: std::vec::IntoIter<RecordBatch>,
        stream: QueryStream,
        _running: crate::ops::RunningQuery,
        started: bool,
    }
    let progress = Progress {
        encoder: Some(encoder),
        held: held.into_iter(),
        stream,
        _running: running,
        started: false,
    };
    let chunks = futures_util::stream::unfold(progress, |mut p| async move {
        let encoder = p.encoder.as_mut()?;
        let mut out = Vec::new();
        if !p.started {
            p.started = true;
            out.extend(encoder.start());
        }
        let next = match p.held.next() {
            Some(batch) => Some(Ok(batch)),
            None => p.stream.next().await,
        };
        let encoded = match next {
            Some(Ok(batch)) => encoder.batch(&batch),
            Some(Err(error)) => {
                tracing::warn!(%error, "query failed after its answer started; ending the body");
                let error = query_error(error);
                match p.encoder.take().expect("encoder present").fail(&error) {
                    Some(last) => Ok(last),
                    None => return Some((Err(std::io::Error::other(error.message)), p)),
                }
            }
            None => p.encoder.take().expect("encoder present").finish(),
        };
        match encoded {
            Ok(bytes) => {
                out.extend(bytes);
                p.stream.add_bytes(out.len() as u64);
                Some((Ok(Bytes::from(out)), p))
            }
            Err(error) => {
                tracing::error!(%error, "encoding an answer failed");
                p.encoder = None;
                Some((Err(std::io::Error::other("encoding failed")), p))
            }
        }
    });
    // Fused: a layer around the body (compression) may poll it again after its end.
    Body::from_stream(futures_util::StreamExt::fuse(chunks))
}

/// Buffer compression inside an Arrow or Parquet answer (`compression=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compressed {
    None,
    Zstd,
    Lz4,
}

impl Compressed {
    fn parse(name: Option<&str>, format: Format) -> Result<Self> {
        let compression = match name {
            None => return Ok(Self::None),
            Some("zstd") => Self::Zstd,
            Some("lz4") => Self::Lz4,
            Some(other) => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("compression {other:?} is not one of zstd, lz4"),
                ))
            }
        };
        match format {
            Format::Arrow | Format::Parquet => Ok(compression),
            _ => Err(ApiError::bad_request(
                "invalid_parameter",
                "compression= applies to format=arrow and format=parquet; \
                 for the others send Accept-Encoding: gzip or zstd",
            )),
        }
    }
}

type EncodeResult = std::result::Result<Vec<u8>, chiso_query::datafusion::arrow::error::ArrowError>;

/// Turns batches into the bytes of one format, incrementally.
enum Encoder {
    Json { first: bool },
    Jsonl,
    Csv { header: bool, schema: SchemaRef },
    Arrow(StreamWriter<Vec<u8>>),
    Parquet(ArrowWriter<Vec<u8>>),
}

impl Encoder {
    fn new(
        format: Format,
        schema: &SchemaRef,
        compression: Compressed,
    ) -> std::result::Result<Self, String> {
        Ok(match format {
            Format::Json => Self::Json { first: true },
            Format::Jsonl => Self::Jsonl,
            Format::Csv => Self::Csv {
                header: true,
                schema: schema.clone(),
            },
            Format::Arrow => {
                let codec = match compression {
                    Compressed::None => None,
                    Compressed::Zstd => Some(CompressionType::ZSTD),
                    Compressed::Lz4 => Some(CompressionType::LZ4_FRAME),
                };
                let options = IpcWriteOptions::default()
                    .try_with_compression(codec)
                    .map_err(|e| e.to_string())?;
                let writer = StreamWriter::try_new_with_options(Vec::new(), schema, options);
                Self::Arrow(writer.map_err(|e| e.to_string())?)
            }
            Format::Xlsx => return Err("an Excel answer is written whole, not encoded".into()),
            Format::Parquet => {
                let codec = match compression {
                    Compressed::None => Compression::UNCOMPRESSED,
                    Compressed::Zstd => Compression::ZSTD(ZstdLevel::default()),
                    Compressed::Lz4 => Compression::LZ4_RAW,
                };
                let properties = WriterProperties::builder().set_compression(codec).build();
                Self::Parquet(
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(properties))
                        .map_err(|e| e.to_string())?,
                )
            }
        })
    }

    fn start(&mut self) -> Vec<u8> {
        match self {
            Self::Json { .. } => b"[".to_vec(),
            Self::Arrow(writer) => std::mem::take(writer.get_mut()),
            _ => Vec::new(),
        }
    }

    fn batch(&mut self, batch: &RecordBatch) -> EncodeResult {
        match self {
            Self::Json { first } => {
                let lines = json_lines(batch)?;
                let mut out = Vec::with_capacity(lines.len() + 1);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if !std::mem::take(first) {
                        out.push(b',');
                    }
                    out.extend_from_slice(line);
                }
                Ok(out)
            }
            Self::Jsonl => json_lines(batch),
            Self::Csv { header, .. } => {
                let mut out = Vec::new();
                let mut writer = CsvWriterBuilder::new()
                    .with_header(std::mem::take(header))
                    .build(&mut out);
                writer.write(batch)?;
                drop(writer);
                Ok(out)
            }
            Self::Arrow(writer) => {
                writer.write(batch)?;
                Ok(std::mem::take(writer.get_mut()))
            }
            Self::Parquet(writer) => {
                writer.write(batch).map_err(parquet_error)?;
                if writer.in_progress_rows() >= HOLD_ROWS {
                    writer.flush().map_err(parquet_error)?;
                }
                Ok(std::mem::take(writer.inner_mut()))
            }
        }
    }

    /// The last bytes of an answer that failed after it started: the error as the last JSON
    /// element, JSON line or CSV line; `None` for Arrow and Parquet, whose transfer is cut.
    fn fail(self, error: &ApiError) -> Option<Vec<u8>> {
        let object = serde_json::json!({"error": {"code": error.code, "message": error.message}});
        match self {
            Self::Json { first } => {
                let separator = if first { "" } else { "," };
                Some(format!("{separator}{object}]\n").into_bytes())
            }
            Self::Jsonl => Some(format!("{object}\n").into_bytes()),
            Self::Csv { .. } => {
                let message = error.message.replace(['\r', '\n'], " ");
                Some(format!("# error: {}: {message}\n", error.code).into_bytes())
            }
            Self::Arrow(_) | Self::Parquet(_) => None,
        }
    }

    fn finish(self) -> EncodeResult {
        match self {
            Self::Json { .. } => Ok(b"]\n".to_vec()),
            Self::Jsonl => Ok(Vec::new()),
            // An empty answer still names its columns.
            Self::Csv {
                header: true,
                schema,
            } => {
                let mut out = Vec::new();
                let mut writer = CsvWriterBuilder::new().with_header(true).build(&mut out);
                writer.write(&RecordBatch::new_empty(schema))?;
                drop(writer);
                Ok(out)
            }
            Self::Csv { .. } => Ok(Vec::new()),
            Self::Arrow(mut writer) => {
                writer.finish()?;
                Ok(std::mem::take(writer.get_mut()))
            }
            Self::Parquet(writer) => writer.into_inner().map_err(parquet_error),
        }
    }
}

fn json_lines(batch: &RecordBatch) -> EncodeResult {
    let mut out = Vec::new();
    let mut writer = JsonWriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, LineDelimited>(&mut out);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

fn parquet_error(
    error: chiso_query::datafusion::parquet::errors::ParquetError,
) -> chiso_query::datafusion::arrow::error::ArrowError {
    chiso_query::datafusion::arrow::error::ArrowError::ExternalError(Box::new(error))
}
