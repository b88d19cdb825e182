//! Request bodies: read under a size limit (413), parsed with the path of the offending field
//! so errors name it as a JSON pointer.

use crate::error::{ApiError, ErrorKind, Result};
use axum::body::Body;
use axum::http::{header, HeaderMap};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Reads the whole body, refusing more than `limit` bytes with 413 `body_too_large`.
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes> {
    if declared_length(headers).is_some_and(|len| len > limit as u64) {
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

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// How long a body waits for room in the [`BodyBudget`] before it is refused.
const BUDGET_WAIT: Duration = Duration::from_secs(1);

/// The bytes of append bodies the server holds at once, across requests: past it a new body
/// waits up to a second for room, then is refused with 429 `overloaded` — rather than many
/// large bodies at once taking the memory.
#[derive(Clone)]
pub struct BodyBudget {
    /// One permit a KiB.
    kib: Arc<Semaphore>,
    bytes: usize,
}

/// Room held in the [`BodyBudget`]; given back when dropped.
pub struct HeldBytes(Option<OwnedSemaphorePermit>);

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        Self {
            kib: Arc::new(Semaphore::new(bytes.div_ceil(1024))),
            bytes,
        }
    }

    /// Reads the body like [`read_limited`], holding its bytes against the budget until the
    /// returned [`HeldBytes`] drop.
    pub async fn read(
        &self,
        headers: &HeaderMap,
        body: Body,
        limit: usize,
    ) -> Result<(Bytes, HeldBytes)> {
        let declared = declared_length(headers);
        if declared.is_some_and(|len| len > limit as u64) {
            return Err(too_large(limit));
        }
        let mut held = HeldBytes(None);
        let mut held_kib = 0;
        self.hold(&mut held, &mut held_kib, declared.unwrap_or(0) as usize)
            .await?;
        let mut body = Limited::new(body, limit);
        let mut bytes = BytesMut::with_capacity(declared.unwrap_or(0) as usize);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|error| match error.downcast_ref::<LengthLimitError>() {
                Some(_) => too_large(limit),
                None => ApiError::bad_request(
                    "body_read_error",
                    format!("could not read the request body: {error}"),
                ),
            })?;
            if let Ok(data) = frame.into_data() {
                self.hold(&mut held, &mut held_kib, bytes.len() + data.len())
                    .await?;
                bytes.extend_from_slice(&data);
            }
        }
        Ok((bytes.freeze(), held))
    }

    /// Grows `held` to cover `bytes`.
    async fn hold(&self, held: &mut HeldBytes, held_kib: &mut usize, bytes: usize) -> Result<()> {
        let wanted = bytes.div_ceil(1024);
        if wanted <= *held_kib {
            return Ok(());
        }
        let more = u32::try_from(wanted - *held_kib).map_err(|_| self.overloaded())?;
        let acquired = tokio::time::timeout(BUDGET_WAIT, self.kib.clone().acquire_many_owned(more));
        let permit = match acquired.await {
            Ok(Ok(permit)) => permit,
            _ => return Err(self.overloaded()),
        };
        match &mut held.0 {
            Some(all) => all.merge(permit),
            none => *none = Some(permit),
        }
        *held_kib = wanted;
        Ok(())
    }

    fn overloaded(&self) -> ApiError {
        ApiError::new(
            ErrorKind::Overloaded,
            "overloaded",
            format!(
                "the server holds {} bytes of request bodies, its limit (--max-inflight-body-mb); retry in a second",
                self.bytes
            ),
        )
        .with_details(json!({"max_inflight_body_bytes": self.bytes, "retry_after_secs": 1}))
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
