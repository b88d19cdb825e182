//! The log endpoints: append to a stream, NDJSON batches, and reads.

use crate::body::parse_json;
use crate::error::{ApiError, ErrorKind, Result};
use crate::wire::{events_response, AppendBody, NdjsonLine};
use crate::{AppState, Principal};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use bytes::Bytes;
use chiso_ingest::{Append, Author, Checker, Ingestor};
use chiso_query::{LogScope, ReadScope};
use chiso_store::{ReadDirection, StreamName};
use serde::Deserialize;
use serde_json::{json, Value};

/// Most events one read answers.
pub const MAX_READ_LIMIT: usize = 10_000;
const DEFAULT_READ_LIMIT: usize = 100;

/// `POST /v1/streams/{stream}`: append `{expected_revision, events}` atomically.
#[tracing::instrument(skip_all, fields(stream = %stream))]
#[utoipa::path(post, path = "/v1/streams/{stream}", tag = "log", security(("bearer" = [])),
    params(("stream" = String, Path, description = "`category-id`, e.g. `dossier-26.2019.0000123`")),
    request_body(content = crate::wire::AppendBody, description = "Events to append atomically; each `type` and `data` as in `GET /v1/schema`"),
    responses((status = 200, description = "Appended (or already there, for a retry): `stream`, `first_revision`, `last_revision`, `first_position`, `last_position`"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn append_to_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let author = principal.author()?;
    let stream = StreamName::new(stream)?;
    let limit = state.limits.max_body_bytes;
    let (bytes, _held) = state.bodies.read(&headers, body, limit).await?;
    let body: AppendBody = parse_json(&bytes, "")?;
    if body.events.is_empty() {
        return Err(ApiError::bad_request(
            "empty_append",
            "`events` is empty: an append carries at least one event",
        ));
    }
    let events_in_body = body.events.len();
    principal.take_appends(|| events_in_body)?;
    let (checker, now) = (state.ingestor.checker(), chrono::Utc::now());
    let events = (0..)
        .zip(body.events)
        .map(|(i, event)| event.into_checked(&format!("/events/{i}"), &stream, checker, now))
        .collect::<Result<Vec<_>>>()?;
    let name = stream.as_str().to_owned();
    let request = Append {
        stream,
        expected: body.expected_revision.0,
        events,
    };
    let result = state
        .ingestor
        .append(&author, request)
        .await
        .map_err(|error| {
            let event = error.rejected_event();
            ApiError::from(error).under_pointer(event.map(|i| format!("/events/{i}")))
        })?;
    principal.appended(events_in_body);
    Ok(Json(json!({
        "stream": name,
        "first_revision": result.first_revision,
        "last_revision": result.last_revision,
        "first_position": result.first_position,
        "last_position": result.last_position,
    })))
}

/// `POST /v1/events`: NDJSON, one event per line with its `stream`; all lines or none.
#[tracing::instrument(skip_all)]
#[utoipa::path(post, path = "/v1/events", tag = "log", security(("bearer" = [])),
    request_body(content = String, content_type = "application/x-ndjson", description = "One event a line: `{stream, id, type, data, metadata?, expected_revision?}`; all lines or none"),
    responses((status = 200, description = "`count`, `first_position`, `last_position`"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn append_batch(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    let author = principal.author()?;
    let limit = state.limits.max_body_bytes;
    let (bytes, _held) = state.bodies.read(&headers, body, limit).await?;
    principal.take_appends(|| {
        let lines = bytes.split(|b| *b == b'\n');
        lines.filter(|line| !line.trim_ascii().is_empty()).count()
    })?;
    let batch = append_ndjson(&state.ingestor, &author, bytes).await?;
    principal.appended(batch.count);
    Ok(Json(json!({
        "count": batch.count,
        "first_position": batch.first_position,
        "last_position": batch.last_position,
    })))
}

/// What an NDJSON batch appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batch {
    /// Events appended (or already there, for a retry).
    pub count: usize,
    /// Position of the first.
    pub first_position: Option<u64>,
    /// Position of the last.
    pub last_position: Option<u64>,
}

/// Decodes an NDJSON body (one event per line with its `stream`) and appends it, all lines or
/// none, through `ingestor` by `author`: the path of `POST /v1/events`, which `chiso import
/// --data-dir` and `chiso serve --demo` take in-process. A refusal names the body's line.
pub async fn append_ndjson(ingestor: &Ingestor, author: &Author, bytes: Bytes) -> Result<Batch> {
    let checker = ingestor.checker();
    let threads = match bytes.len() >= PARALLEL_PARSE_BYTES {
        true => cores(),
        false => 1,
    };
    // Parsing is CPU work: one parser thread per core at most, however many bodies arrive;
    // the others wait for a permit without holding a thread.
    let _permits = PARSERS
        .acquire_many(threads as u32)
        .await
        .map_err(|e| ApiError::internal(&e))?;
    let (requests, line_numbers) =
        tokio::task::spawn_blocking(move || parse_ndjson(&bytes, checker, threads))
            .await
            .map_err(|e| ApiError::internal(&e))??;
    let count = requests.len();
    let results = ingestor
        .append_all(author, requests)
        .await
        .map_err(|error| {
            let line = error.request_index().map(|i| line_numbers[i]);
            with_line(ApiError::from(error), line)
        })?;
    Ok(Batch {
        count,
        first_position: results.iter().map(|r| r.first_position).min(),
        last_position: results.iter().map(|r| r.last_position).max(),
    })
}

/// Bodies with at least this many bytes are decoded on several threads.
const PARALLEL_PARSE_BYTES: usize = 256 << 10;

/// Permits for NDJSON parser threads: one per core.
static PARSERS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(cores()));

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Decodes every non-blank line; the first bad one fails the whole body, naming its line.
/// A large body is cut at line boundaries and decoded on `threads` threads, in order.
fn parse_ndjson(
    bytes: &[u8],
    checker: Checker,
    threads: usize,
) -> Result<(Vec<Append>, Vec<usize>)> {
    let now = chrono::Utc::now();
    let pieces = match threads > 1 {
        true => split_lines(bytes, threads),
        false => vec![(1, bytes)],
    };
    let parsed: Vec<Result<Parsed>> = std::thread::scope(|scope| {
        let workers: Vec<_> = pieces
            .iter()
            .map(|&(first_line, piece)| {
                scope.spawn(move || parse_piece(piece, first_line, checker, now))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a parser thread panicked"))
            .collect()
    });
    let (mut requests, mut line_numbers) = (Vec::new(), Vec::new());
    for piece in parsed {
        let (piece_requests, piece_lines) = piece?;
        requests.extend(piece_requests);
        line_numbers.extend(piece_lines);
    }
    if requests.is_empty() {
        return Err(ApiError::bad_request(
            "empty_append",
            "the body has no events: send one JSON event per line",
        ));
    }
    Ok((requests, line_numbers))
}

type Parsed = (Vec<Append>, Vec<usize>);

fn parse_piece(
    bytes: &[u8],
    first_line: usize,
    checker: Checker,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Parsed> {
    let (mut requests, mut line_numbers) = (Vec::new(), Vec::new());
    for (number, line) in (first_line..).zip(bytes.split(|&b| b == b'\n')) {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let request = parse_line(line, checker, now).map_err(|e| with_line(e, Some(number)))?;
        requests.push(request);
        line_numbers.push(number);
    }
    Ok((requests, line_numbers))
}

/// Cuts `bytes` into about `parts` pieces at line ends: (number of its first line, piece).
fn split_lines(bytes: &[u8], parts: usize) -> Vec<(usize, &[u8])> {
    let mut pieces = Vec::with_capacity(parts);
    let (mut start, mut line) = (0, 1);
    for part in 1..=parts {
        let target = (bytes.len() * part / parts).max(start);
        let end = match bytes[target..].iter().position(|&b| b == b'\n') {
            Some(offset) if part < parts => target + offset + 1,
            _ => bytes.len(),
        };
        let piece = &bytes[start..end];
        pieces.push((line, piece));
        line += piece.iter().filter(|&&b| b == b'\n').count();
        start = end;
        if start == bytes.len() {
            break;
        }
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::{parse_ndjson, split_lines};

    /// One NDJSON line: a valid receipt, a broken copy of it, or noise.
    fn line() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let valid = r#"{"stream": "dossier-1", "id": "0b6f3c1e-6f0a-4c55-9d43-6f3f1d1a2b01", "type": "DossierReceived", "data": {"agency": "26", "service": "1.001", "channel": "online", "received_at": "2019-03-04T08:00:00+07:00", "due_at": "2019-03-11T17:00:00+07:00"}}"#;
        prop_oneof![
            Just(valid.to_owned()),
            (0..valid.len()).prop_map(move |cut| valid[..cut].to_owned()),
            "\\PC{0,80}",
            Just(String::new()),
            Just("   \t".to_owned()),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        /// Any body parses or is refused naming a line, never panics, and cutting it for two
        /// threads answers exactly what one thread does.
        #[test]
        fn any_body_parses_the_same_on_one_or_two_threads(
            lines in proptest::collection::vec(line(), 0..40),
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            for body in [lines.join("\n").into_bytes(), bytes] {
                let outcome = |threads| match parse_ndjson(&body, chiso_ingest::Checker::Catalog, threads) {
                    Ok((requests, numbers)) => Ok((requests.len(), numbers)),
                    Err(error) => Err((error.code, error.details.get("line").cloned())),
                };
                let one = outcome(1);
                proptest::prop_assert_eq!(&one, &outcome(2));
                if let Err((_, line)) = &one {
                    let empty = body.iter().all(u8::is_ascii_whitespace);
                    proptest::prop_assert!(line.is_some() || empty, "{:?}", one);
                }
            }
        }
    }

    #[test]
    fn pieces_keep_lines_whole_and_numbered() {
        let body = b"a\nbb\nccc\ndddd\n\nf";
        for parts in 1..6 {
            let pieces = split_lines(body, parts);
            let joined: Vec<u8> = pieces.iter().flat_map(|(_, p)| p.to_vec()).collect();
            assert_eq!(joined, body);
            let mut offset = 0;
            for (first_line, piece) in pieces {
                let before = body[..offset].iter().filter(|&&b| b == b'\n').count();
                assert_eq!(first_line, before + 1);
                assert!(offset == 0 || body[offset - 1] == b'\n');
                offset += piece.len();
            }
        }
    }
}

fn parse_line(line: &[u8], checker: Checker, now: chrono::DateTime<chrono::Utc>) -> Result<Append> {
    let line: NdjsonLine = parse_json(line, "")?;
    let (stream, expected, event) = line.into_event();
    let stream = StreamName::new(stream)?;
    let event = event.into_checked("", &stream, checker, now)?;
    Ok(Append {
        stream,
        expected: expected.0,
        events: vec![event],
    })
}

fn with_line(mut error: ApiError, line: Option<usize>) -> ApiError {
    if let Some(line) = line {
        error.message = format!("line {line}: {}", error.message);
        if let Some(details) = error.details.as_object_mut() {
            details.remove("index");
            details.remove("event");
            details.insert("line".into(), line.into());
        }
    }
    error
}

/// Query of `GET /v1/streams/{stream}`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StreamReadQuery {
    /// The revision to start at.
    from: Option<u64>,
    /// `forwards` (the default) or `backwards`.
    #[serde(default)]
    #[param(inline)]
    direction: Direction,
    /// 1–10 000, default 100.
    limit: Option<usize>,
}

#[derive(Deserialize, Default, Clone, Copy, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum Direction {
    #[default]
    Forwards,
    Backwards,
}

/// `GET /v1/streams/{stream}?from=&direction=&limit=`.
#[utoipa::path(get, path = "/v1/streams/{stream}", tag = "log", security(("bearer" = [])),
    params(("stream" = String, Path, description = "The stream"), StreamReadQuery),
    responses((status = 200, description = "`{events: [{position, stream, revision, id, type, data, metadata, recorded_at}]}`"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn read_stream(
    State(state): State<AppState>,
    principal: Principal,
    Path(stream): Path<String>,
    query: std::result::Result<Query<StreamReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    principal.require_query()?;
    let Query(query) = query.map_err(invalid_query)?;
    let stream = StreamName::new(stream)?;
    let limit = read_limit(query.limit)?;
    let direction = match query.direction {
        Direction::Forwards => ReadDirection::Forwards,
        Direction::Backwards => ReadDirection::Backwards,
    };
    let store = state.store.clone();
    let mut scope = log_scope(&state, &principal)?;
    let events = tokio::task::spawn_blocking(move || {
        // A stream outside the caller's scope is as if it did not exist.
        if let Some(scope) = &mut scope {
            if !scope.sees_stream(&store, stream.as_str())? {
                return Err(chiso_store::Error::StreamNotFound(stream.to_string()));
            }
        }
        store.read_stream(&stream, query.from, direction, limit)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    events_response(&events)
}

/// Which of the log's events `principal` reads (`None`: all). A `query:{agency}` scope needs
/// the tables, which know the agencies below it.
pub(crate) fn log_scope(state: &AppState, principal: &Principal) -> Result<Option<LogScope>> {
    match principal.read_scope() {
        None | Some(ReadScope::All) => Ok(None),
        Some(scope) => {
            let engine = state.sql.as_ref().ok_or_else(|| {
                ApiError::new(
                    ErrorKind::Forbidden,
                    "forbidden",
                    "a `query:{agency}` token reads the log only on a server with its tables",
                )
            })?;
            Ok(engine.log_scope(&scope))
        }
    }
}

/// Query of `GET /v1/events`.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AllReadQuery {
    /// The position to start at (default 0).
    #[serde(default)]
    from: u64,
    /// 1–10 000, default 100.
    limit: Option<usize>,
}

/// `GET /v1/events?from=&limit=`: the whole log in position order.
#[utoipa::path(get, path = "/v1/events", tag = "log", security(("bearer" = [])), params(AllReadQuery),
    responses((status = 200, description = "`{events: […]}` in position order"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn read_all(
    State(state): State<AppState>,
    principal: Principal,
    query: std::result::Result<Query<AllReadQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response> {
    principal.require_query()?;
    let Query(query) = query.map_err(invalid_query)?;
    let limit = read_limit(query.limit)?;
    let store = state.store.clone();
    let scope = log_scope(&state, &principal)?;
    let events = tokio::task::spawn_blocking(move || {
        let Some(mut scope) = scope else {
            return store.read_all(query.from, limit);
        };
        // The caller's events only: read on until `limit` of them, or the head.
        let (mut seen, mut from, head) = (Vec::new(), query.from, store.head());
        while seen.len() < limit && from < head {
            let page = store.read_all(from, MAX_READ_LIMIT)?;
            let Some(last) = page.last() else { break };
            from = last.position + 1;
            for event in page {
                if seen.len() < limit && scope.sees(&store, &event)? {
                    seen.push(event);
                }
            }
        }
        Ok(seen)
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    events_response(&events)
}

fn read_limit(limit: Option<usize>) -> Result<usize> {
    match limit.unwrap_or(DEFAULT_READ_LIMIT) {
        limit @ 1..=MAX_READ_LIMIT => Ok(limit),
        _ => Err(ApiError::bad_request(
            "invalid_parameter",
            format!("`limit` must be between 1 and {MAX_READ_LIMIT}"),
        )
        .with_details(json!({"parameter": "limit"}))),
    }
}

/// 400 `invalid_parameter` for a query string that does not parse.
pub fn invalid_query(rejection: axum::extract::rejection::QueryRejection) -> ApiError {
    ApiError::bad_request("invalid_parameter", rejection.body_text())
}
