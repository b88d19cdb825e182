//! `POST /v1/admin/backup` (admin): a consistent copy of the data directory — the log and the
//! table segments — written by the server while it serves, to a directory on its machine.

use crate::body::{parse_json, read_limited};
use crate::error::{ApiError, ErrorKind, Result};
use crate::{AppState, Principal};
use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Body of `POST /v1/admin/backup`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct BackupBody {
    /// An absolute path on the server's machine: a new or empty directory.
    #[schema(value_type = String)]
    destination: PathBuf,
}

/// `POST /v1/admin/backup {"destination": "/abs/dir"}`.
#[utoipa::path(post, path = "/v1/admin/backup", tag = "admin", security(("bearer" = [])), request_body = BackupBody,
    responses((status = 200, description = "A consistent copy, written by the server"), (status = "4XX", description = "Refused: see README › Errors", body = crate::openapi::ErrorBody), (status = "5XX", description = "Unavailable or internal", body = crate::openapi::ErrorBody)))]
pub async fn backup(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>> {
    principal.require_admin()?;
    let bytes = read_limited(&headers, body, crate::MAX_CONTROL_BODY_BYTES).await?;
    let BackupBody { destination } = parse_json(&bytes, "")?;
    if !destination.is_absolute() {
        return Err(ApiError::bad_request(
            "invalid_parameter",
            "`destination` must be an absolute path on the server's machine",
        )
        .with_details(json!({"parameter": "destination"})));
    }
    let engine = state.sql.clone().ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            "not_found",
            "this server has no tables",
        )
    })?;
    let started = std::time::Instant::now();
    let target = destination.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        // Created here, so an unusable destination is named with the system's reason.
        std::fs::create_dir_all(&target).map_err(|error| unusable(&target, &error))?;
        engine
            .projections()
            .backup(&target)
            .map_err(|error| match error {
                chiso_query::Error::InvalidParameter(message) => {
                    ApiError::new(ErrorKind::Conflict, "destination_exists", message)
                }
                other => ApiError::internal(&other),
            })
    })
    .await
    .map_err(|e| ApiError::internal(&e))??;
    tracing::info!(destination = %destination.display(), ?outcome, "backup written");
    Ok(Json(json!({
        "destination": destination,
        "log_head": outcome.log_head,
        "tables_position": outcome.tables_position,
        "segments": outcome.segments,
        "segment_bytes": outcome.segment_bytes,
        "seconds": started.elapsed().as_secs_f64(),
    })))
}

/// 422 `backup_failed`: the destination cannot be created (its reason is the operator's to fix).
fn unusable(path: &std::path::Path, error: &std::io::Error) -> ApiError {
    ApiError::new(
        ErrorKind::Unprocessable,
        "backup_failed",
        format!("cannot create {}: {error}", path.display()),
    )
}
