//! Monthly rankings: `POST /v1/rankings/{month}/publish` (admin), `GET /v1/rankings`, and the
//! scheduler inside `chiso serve` that publishes the previous month at 00:05 local time on
//! the 1st, and at start every month it missed.

use crate::error::{ApiError, ErrorKind, Result};
use crate::{AppState, Principal};
use axum::extract::{Path, Query as QueryString, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chiso_ingest::Append;
use chiso_ingest::Author;
use chiso_query::local_time::{month_name, parse_month, MonthKey};
use chiso_store::{ExpectedRevision, ProposedEvent, StreamName};
use serde_json::{json, Value};
use std::time::Duration;

/// How long a publication waits for the tables to include the log's head.
const CATCH_UP: Duration = Duration::from_secs(600);
/// How long a publication waits for the hash chain to reach what its figures were computed
/// from (it follows the head within milliseconds, except while an older log is first hashed).
const CHAIN_WAIT: Duration = Duration::from_secs(5);

/// `POST /v1/rankings/{month}/publish`.
#[utoipa::path(post, path = "/v1/rankings/{month}/publish", tag = "sql", security(("bearer" = [])),
    params(("month" = String, Path, description = "`YYYY-MM`")),
    responses((status = 200, description = "The rankings published for the month"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    principal: Principal,
    Path(month): Path<String>,
) -> Result<Json<Value>> {
    principal.require_admin()?;
    let month = parse_month(&month).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_parameter",
            format!("month must be YYYY-MM, not {month:?}"),
        )
    })?;
    let author = Author::admin(principal.token_id.clone());
    Ok(Json(publish_month(&state, month, &author).await?))
}

/// Computes `month`'s rankings on tables that include the whole log, and appends those whose
/// figures changed to `ranking-{YYYY-MM}` (nothing when none did), recorded as `author`'s.
pub async fn publish_month(state: &AppState, month: MonthKey, author: &Author) -> Result<Value> {
    // One publication at a time: two computed on tables that differ by the other's events
    // would send a mix of stored and new ids (a 409).
    static PUBLISHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _one_at_a_time = PUBLISHING.lock().await;
    let engine = state.sql.as_ref().ok_or_else(no_tables)?;
    let head = state.store.head();
    if head > 0 {
        let caught_up = engine.projections().wait_for(head - 1, CATCH_UP).await;
        // Not caught up in time is the server's state, whatever the tables answered.
        caught_up.map_err(|e| ApiError::new(ErrorKind::Unavailable, e.code(), e.to_string()))?;
    }
    let started = std::time::Instant::now();
    let projections = engine.projections().clone();
    // The log as far as the tables have folded as the computation begins.
    let folded = projections.position();
    let computed = tokio::task::spawn_blocking(move || projections.ranking_changes(month)).await;
    let changes = computed
        .map_err(|e| ApiError::internal(&e))?
        .map_err(crate::sql::query_error)?;
    let name = month_name(month);
    let computed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if changes.is_empty() {
        return Ok(json!({"month": name, "published": 0, "computed_ms": computed_ms}));
    }
    // Each carries the chain hash of the log it was computed from (outside its id), when the
    // chain has reached it (a log from before the chain may still be being hashed).
    let anchor = match folded {
        0 => None,
        folded => state.store.chain_hash_at(folded - 1, CHAIN_WAIT).await?,
    };
    let anchor = anchor.map(|(position, hash)| chiso_ingest::ChainAnchor {
        position,
        hash: crate::auth::hex(&hash),
    });
    // The publisher's events take the clients' path: checked by the catalog, then appended
    // as an admin's request or as chiso's own (the scheduler's).
    let stream = StreamName::new(format!("ranking-{name}"))?;
    let (checker, now) = (state.ingestor.checker(), chrono::Utc::now());
    let events = changes
        .iter()
        .map(|change| {
            let event = chiso_ingest::RankingPublished {
                chain: anchor.clone(),
                ..change.event.clone()
            };
            let envelope = ProposedEvent {
                id: change.id,
                event_type: "RankingPublished".into(),
                data: serde_json::to_string(&event).expect("a ranking serializes"),
                metadata: json!({"publisher": "chiso rankings"}).to_string(),
                decoded: (),
            };
            checker.check(&stream, envelope, now)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::internal(&format!("a computed ranking was refused: {e}")))?;
    let request = Append {
        stream,
        expected: ExpectedRevision::Any,
        events,
    };
    let appended = state.ingestor.append(author, request).await?;
    tracing::info!(month = %name, rankings = changes.len(), "rankings published");
    Ok(json!({
        "month": name,
        "published": changes.len(),
        "first_position": appended.first_position,
        "last_position": appended.last_position,
        "computed_ms": computed_ms,
    }))
}

fn no_tables() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "not_found",
        "this server has no tables",
    )
}

/// The query string of `GET /v1/rankings` (documentation: the handler reads it pair by pair).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct RankingsQuery {
    /// `YYYY-MM`.
    month: Option<String>,
    /// The agency whose children are ranked (`national` for the provinces).
    scope: Option<String>,
    /// The metric ranked.
    metric: Option<String>,
    /// As for `/v1/sql`.
    format: Option<String>,
}

/// `GET /v1/rankings?month=&scope=&metric=&format=`: the latest publication of each ranking.
#[utoipa::path(get, path = "/v1/rankings", tag = "sql", security(("bearer" = [])), params(RankingsQuery),
    responses((status = 200, description = "The latest publication of each ranking, in `format`"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    QueryString(raw): QueryString<Vec<(String, String)>>,
) -> Response {
    let mut conditions = Vec::new();
    let mut params = serde_json::Map::new();
    let mut format = None;
    for (name, value) in raw {
        match name.as_str() {
            "month" | "scope" | "metric" => {
                conditions.push(format!("{name} = ${name}"));
                params.insert(name, value.into());
            }
            "format" => format = Some(value),
            other => {
                let message =
                    format!("unknown parameter {other:?}; use month, scope, metric, format");
                return ApiError::bad_request("invalid_parameter", message).into_response();
            }
        }
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT month, scope, metric, agency, value, rank, position FROM rankings{filter} \
         ORDER BY month, scope, metric, rank, agency"
    );
    crate::sql::run_for(state, principal, sql, Value::Object(params), format).await
}

/// Publishes every month with dossiers and no ranking yet, before the current one.
async fn publish_missed(state: &AppState) {
    let Some(engine) = &state.sql else { return };
    let head = state.store.head();
    if head > 0
        && engine
            .projections()
            .wait_for(head - 1, CATCH_UP)
            .await
            .is_err()
    {
        tracing::warn!("rankings: the tables did not catch up; will try again");
        return;
    }
    let current = chiso_query::rankings::month_at(chrono::Utc::now().timestamp_micros());
    let (active, published) = engine.projections().ranking_months();
    for month in active.into_iter().filter(|m| *m < current) {
        if published.contains(&month_name(month)) {
            continue;
        }
        if let Err(error) = publish_month(state, month, &Author::chiso()).await {
            tracing::error!(month = %month_name(month), error = %error.message, "rankings not published");
        }
    }
}

/// Time until the next 1st of a month, 00:05 local (+07:00).
fn until_next_run(now: chrono::DateTime<chrono::Utc>) -> Duration {
    use chrono::{Datelike, TimeZone};
    let zone = chrono::FixedOffset::east_opt(7 * 3600).expect("+07:00");
    let local = now.with_timezone(&zone);
    let (year, month) = if local.month() == 12 {
        (local.year() + 1, 1)
    } else {
        (local.year(), local.month() + 1)
    };
    let next = zone
        .with_ymd_and_hms(year, month, 1, 0, 5, 0)
        .single()
        .expect("a real time");
    (next - local).to_std().unwrap_or(Duration::from_secs(60))
}

/// The scheduler: publishes what it missed at start, then the previous month on each 1st at
/// 00:05 local time, until shutdown.
pub fn spawn_scheduler(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            publish_missed(&state).await;
            let wait = until_next_run(chrono::Utc::now());
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = state.shutdown.cancelled() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_run_is_the_first_at_five_past_midnight_local() {
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .with_timezone(&chrono::Utc)
        };
        // 31 January 23:00 local → 1 February 00:05 local: 65 minutes.
        assert_eq!(
            until_next_run(at("2019-01-31T23:00:00+07:00")),
            Duration::from_secs(65 * 60)
        );
        // 1 December 00:06 local → 1 January 00:05 local.
        let wait = until_next_run(at("2019-12-01T00:06:00+07:00"));
        assert_eq!(wait, Duration::from_secs(31 * 86_400 - 60));
    }
}
