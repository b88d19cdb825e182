//! `GET·POST /v1/sql` and `GET /v1/reports/dossiers`: answers streamed batch by batch in
//! JSON, JSON lines, CSV, Arrow IPC or Parquet.
//!
//! The status is decided before the first byte: the first [`HOLD_ROWS`] rows are held back,
//! so an answer that small gets its exact error (408, 413, 503). Past that the answer streams;
//! a limit crossed later ends the body early (the client sees a truncated transfer), and the
//! server log says why.

use crate::error::{ApiError, Result};
use crate::{AppState, Principal};
use axum::body::{Body, Bytes};
use axum::extract::{Query as QueryString, Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use chiso_query::datafusion::arrow::array::RecordBatch;
use chiso_query::datafusion::arrow::csv::WriterBuilder as CsvWriterBuilder;
use chiso_query::datafusion::arrow::datatypes::SchemaRef;
use chiso_query::datafusion::arrow::ipc::writer::StreamWriter;
use chiso_query::datafusion::arrow::json::writer::{
    LineDelimited, WriterBuilder as JsonWriterBuilder,
};
use chiso_query::datafusion::parquet::arrow::ArrowWriter;
use chiso_query::{ErrorKind, Query, QueryStream};
use serde::Deserialize;
use std::time::Duration;

/// Rows held back before the answer starts streaming.
const HOLD_ROWS: usize = 65_536;
/// Longest wait for `min_position`, whatever the query's time limit.
const MAX_POSITION_WAIT: Duration = Duration::from_secs(10);

/// Options of a query, from the query string or a JSON body.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    q: Option<String>,
    sql: Option<String>,
    /// A JSON array or object; in a query string, its JSON text.
    params: Option<serde_json::Value>,
    format: Option<String>,
    min_position: Option<u64>,
    timeout_ms: Option<u64>,
    max_rows: Option<usize>,
}

/// The wire formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Jsonl,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    fn parse(name: Option<&str>) -> Result<Self> {
        Ok(match name.unwrap_or("json") {
            "json" => Self::Json,
            "jsonl" | "ndjson" => Self::Jsonl,
            "csv" => Self::Csv,
            "arrow" => Self::Arrow,
            "parquet" => Self::Parquet,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("format {other:?} is not one of json, jsonl, csv, arrow, parquet"),
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
        }
    }
}

/// The shape of every SQL handler: the `query` scope, then the request, then the answer.
async fn answer(
    state: &AppState,
    principal: Principal,
    request: impl std::future::Future<Output = Result<SqlRequest>>,
) -> Response {
    let answered = async {
        principal.require_query()?;
        run(state, request.await?).await
    };
    answered.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /v1/sql?q=…`.
pub async fn get_sql(
    State(state): State<AppState>,
    principal: Principal,
    QueryString(raw): QueryString<Vec<(String, String)>>,
) -> Response {
    answer(&state, principal, async { from_query_string(raw, None) }).await
}

/// `POST /v1/sql` with a JSON body, or with the SQL as a text body and options in the query
/// string.
pub async fn post_sql(
    State(state): State<AppState>,
    principal: Principal,
    request: Request,
) -> Response {
    let limit = state.limits.max_sql_body_bytes;
    answer(&state, principal, async move {
        let (parts, body) = request.into_parts();
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
    })
    .await
}

/// `GET /v1/reports/dossiers?from=&to=&format=`: the Biểu 06 report per agency.
pub async fn dossier_report(
    State(state): State<AppState>,
    principal: Principal,
    QueryString(raw): QueryString<Vec<(String, String)>>,
) -> Response {
    answer(&state, principal, async {
        let mut request = SqlRequest::default();
        let (mut from, mut to) = (None, None);
        for (name, value) in raw {
            match name.as_str() {
                "from" => from = Some(date(&name, &value)?),
                "to" => to = Some(date(&name, &value)?),
                "format" => request.format = Some(value),
                "min_position" => request.min_position = Some(number(&name, &value)?),
                other => return Err(unknown_parameter(other)),
            }
        }
        let (Some(from), Some(to)) = (from, to) else {
            return Err(ApiError::bad_request(
                "invalid_parameter",
                "from and to are required local dates, e.g. from=2019-01-01&to=2019-12-31",
            ));
        };
        request.sql = Some(format!(
            "SELECT * FROM dossier_report(DATE '{from}', DATE '{to}') ORDER BY agency"
        ));
        Ok(request)
    })
    .await
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
    answer(&state, principal, async { Ok(request) }).await
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
            other => return Err(unknown_parameter(other)),
        }
    }
    Ok(request)
}

async fn run(state: &AppState, request: SqlRequest) -> Result<Response> {
    let Some(engine) = &state.sql else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            "this server has no SQL engine",
        ));
    };
    let format = Format::parse(request.format.as_deref())?;
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
        params: request.params,
        timeout: request.timeout_ms.map(Duration::from_millis),
        max_rows: request.max_rows,
    };
    let running = state.sql_metrics.running();
    let mut stream = engine.execute(query).await.map_err(query_error)?;
    let mut held = Vec::new();
    let mut held_rows = 0;
    let mut finished = false;
    while held_rows < HOLD_ROWS {
        match stream.next().await {
            Some(batch) => {
                let batch = batch.map_err(query_error)?;
                held_rows += batch.num_rows();
                held.push(batch);
            }
            None => {
                finished = true;
                break;
            }
        }
    }
    let schema = stream.schema();
    let encoder = Encoder::new(format, &schema).map_err(|e| ApiError::internal(&e))?;
    let body = answer_body(encoder, held, (!finished).then_some(stream), running);
    Ok(([(header::CONTENT_TYPE, format.content_type())], body).into_response())
}

/// A query error as an answer (through the one mapping of [`ApiError`]).
pub(crate) fn query_error(error: chiso_query::Error) -> ApiError {
    ApiError::from(error)
}

/// The body: the held batches, then the rest of the stream, encoded; an error past the first
/// byte ends the body early.
fn answer_body(
    encoder: Encoder,
    held: Vec<RecordBatch>,
    rest: Option<QueryStream>,
    running: crate::ops::RunningQuery,
) -> Body {
    struct Progress {
        encoder: Option<Encoder>,
        held: std::vec::IntoIter<RecordBatch>,
        rest: Option<QueryStream>,
        _running: crate::ops::RunningQuery,
        started: bool,
    }
    let progress = Progress {
        encoder: Some(encoder),
        held: held.into_iter(),
        rest,
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
            None => match p.rest.as_mut() {
                Some(stream) => stream.next().await,
                None => None,
            },
        };
        let encoded = match next {
            Some(Ok(batch)) => encoder.batch(&batch),
            Some(Err(error)) => {
                tracing::warn!(%error, "query failed after its answer started; ending the body");
                p.encoder = None;
                return Some((Err(std::io::Error::other(error.to_string())), p));
            }
            None => p.encoder.take().expect("encoder present").finish(),
        };
        match encoded {
            Ok(bytes) => {
                out.extend(bytes);
                Some((Ok(Bytes::from(out)), p))
            }
            Err(error) => {
                tracing::error!(%error, "encoding an answer failed");
                p.encoder = None;
                Some((Err(std::io::Error::other("encoding failed")), p))
            }
        }
    });
    Body::from_stream(chunks)
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
    fn new(format: Format, schema: &SchemaRef) -> std::result::Result<Self, String> {
        Ok(match format {
            Format::Json => Self::Json { first: true },
            Format::Jsonl => Self::Jsonl,
            Format::Csv => Self::Csv {
                header: true,
                schema: schema.clone(),
            },
            Format::Arrow => {
                Self::Arrow(StreamWriter::try_new(Vec::new(), schema).map_err(|e| e.to_string())?)
            }
            Format::Parquet => Self::Parquet(
                ArrowWriter::try_new(Vec::new(), schema.clone(), None)
                    .map_err(|e| e.to_string())?,
            ),
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
