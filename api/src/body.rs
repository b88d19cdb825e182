//! Request bodies: read under a size limit (413), parsed with the path of the offending field
//! so errors name it as a JSON pointer.

use crate::error::{ApiError, ErrorKind, Result};
use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::Bytes;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::json;

/// Reads the whole body, refusing more than `limit` bytes with 413 `body_too_large`.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(too_large(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large(limit)),
        Err(error) => Err(ApiError::bad_request(
            "body_read_error",
            format!("could not read the request body: {error}"),
        )),
    }
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        ErrorKind::TooLarge,
        "body_too_large",
        format!("the request body is larger than the limit of {limit} bytes; split it"),
    )
    .with_details(json!({"limit_bytes": limit}))
}

/// Parses `bytes` as JSON into `T`. Syntax errors are `invalid_json`; a value of the wrong
/// shape is `invalid_event` with a JSON pointer under `pointer_prefix`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], pointer_prefix: &str) -> Result<T> {
    // The plain parser is the fast path; only a refused body is parsed again to find the path.
    serde_json::from_slice(bytes).map_err(|_| explain::<T>(bytes, pointer_prefix))
}

fn explain<T: DeserializeOwned>(bytes: &[u8], pointer_prefix: &str) -> ApiError {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let error = match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(error) => error,
        Ok(_) => {
            return match deserializer.end() {
                Err(error) => malformed(&error),
                Ok(()) => ApiError::internal(&"a body refused once was accepted on re-parsing"),
            }
        }
    };
    let path = chiso_ingest::json_pointer(error.path());
    let pointer = format!("{pointer_prefix}{path}");
    let inner = error.into_inner();
    if inner.is_data() {
        let field = chiso_ingest::field_name(&path);
        ApiError::bad_request("invalid_event", format!("{field}: {inner}"))
            .with_details(json!({"pointer": pointer}))
    } else {
        malformed(&inner)
    }
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::bad_request("invalid_json", format!("malformed JSON: {error}"))
        .with_details(json!({"line": error.line(), "column": error.column()}))
}
