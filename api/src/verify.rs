//! `GET /v1/verify?from=&to=`: recomputes the log's hash chain over a range and compares it
//! with the stored hashes and with the hashes published rankings copied (ARCHITECTURE.md §7).

use crate::auth::hex;
use crate::error::{ApiError, Result};
use crate::{AppState, Principal};
use axum::extract::{Query as QueryString, State};
use axum::Json;
use chiso_store::Verification;
use serde_json::{json, Value};

/// The query string of `GET /v1/verify` (documentation: the handler reads it pair by pair).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct VerifyQuery {
    /// First position to check (0 when absent: the whole chain from its start).
    from: Option<u64>,
    /// One past the last position to check (the chain's end when absent).
    to: Option<u64>,
}

/// `GET /v1/verify`: whether the stored log still gives its hash chain.
#[utoipa::path(get, path = "/v1/verify", tag = "ops", security(("bearer" = [])), params(VerifyQuery),
    responses((status = 200, description = "`{ok, from, to, events, chunks, bytes, head, mismatch, anchors, chained_up_to, log_head, seconds}`: `ok` false names the first chunk that does not match (`mismatch.position`) or the published rankings whose hash the log no longer gives"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn verify(
    State(state): State<AppState>,
    principal: Principal,
    QueryString(raw): QueryString<Vec<(String, String)>>,
) -> Result<Json<Value>> {
    principal.require_query()?;
    let (mut from, mut to) = (0, u64::MAX);
    for (name, value) in raw {
        let slot = match name.as_str() {
            "from" => &mut from,
            "to" => &mut to,
            other => {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("unknown parameter {other:?}; use from, to"),
                ))
            }
        };
        *slot = value.parse().map_err(|_| {
            ApiError::bad_request(
                "invalid_parameter",
                format!("{name} must be a log position (an integer ≥ 0), not {value:?}"),
            )
        })?;
    }
    let store = state.store.clone();
    let started = std::time::Instant::now();
    // The chain follows the commits by milliseconds: what the log held when asked is checked,
    // unless the chain is further behind than that (a log from before it, still being hashed).
    let asked = to.min(store.head());
    if asked > 0 {
        store.chain_hash_at(asked - 1, CHAIN_CATCH_UP).await?;
    }
    let verified = tokio::task::spawn_blocking(move || {
        store.verify(
            from,
            to,
            |_| {},
            |event| chiso_ingest::anchor_of(event.event_type, event.data),
        )
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    let mut answer = report(&verified, started.elapsed().as_secs_f64());
    answer["chained_up_to"] = json!(state.store.chain_head().next_position);
    answer["log_head"] = json!(state.store.head());
    Ok(Json(answer))
}

/// How long `GET /v1/verify` waits for the chain to reach the log's head when it was asked.
const CHAIN_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// A verification as `GET /v1/verify` and `chiso verify` report it.
pub fn report(verified: &Verification, seconds: f64) -> Value {
    let events = verified.to - verified.from;
    let mismatches: Vec<Value> = verified
        .anchor_mismatches
        .iter()
        .map(|m| json!({"event_position": m.event_position, "anchored_position": m.anchored}))
        .collect();
    json!({
        "ok": verified.mismatch.is_none() && mismatches.is_empty(),
        "from": verified.from,
        "to": verified.to,
        "events": events,
        "chunks": verified.chunks,
        "bytes": verified.bytes,
        "head": {"position": verified.to.checked_sub(1), "hash": hex(&verified.head)},
        "mismatch": verified.mismatch.as_ref().map(|m| json!({"position": m.position, "reason": m.reason})),
        "anchors": {"checked": verified.anchors_checked, "mismatched": mismatches},
        "seconds": seconds,
        "events_per_second": if seconds > 0.0 { events as f64 / seconds } else { 0.0 },
    })
}
