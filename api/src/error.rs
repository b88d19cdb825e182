//! The one place where errors become HTTP responses: `{"error": {"code", "message", "details"}}`.
//! Internal errors are logged in full and answered with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chiso_store::ErrorKind;
use serde_json::{json, Value};

/// Result of a handler.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// An error answer: status, stable snake_case code, a message a person can act on, details.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Structured details (the offending field, line, revision, …).
    pub details: Value,
}

impl ApiError {
    /// An error with empty details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: json!({}),
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// A refusal of the catalog, for the event at `pointer` in the request.
    pub fn from_ingest(error: chiso_ingest::IngestError, pointer: &str) -> Self {
        use chiso_ingest::IngestErrorKind as K;
        let status = match error.kind {
            K::Malformed => StatusCode::BAD_REQUEST,
            K::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            K::Conflict => StatusCode::CONFLICT,
            K::Forbidden => StatusCode::FORBIDDEN,
        };
        let field = format!("{pointer}{}", error.pointer.as_deref().unwrap_or(""));
        let message = match &error.pointer {
            Some(_) if !error.message.starts_with('/') => format!("{field}: {}", error.message),
            _ => error.message.replace("/data", &format!("{pointer}/data")),
        };
        Self::new(status, error.code, message).with_details(json!({"pointer": field}))
    }

    /// Puts the pointer of a write-model refusal under the event's place in the request.
    pub fn under_pointer(mut self, prefix: Option<String>) -> Self {
        if let (Some(prefix), Some(details)) = (prefix, self.details.as_object_mut()) {
            let inner = details
                .get("pointer")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            let pointer = format!("{prefix}{inner}");
            if inner.is_empty() {
            } else if self.message.contains(&inner) {
                self.message = self.message.replace(&inner, &pointer);
            } else {
                self.message = format!("{pointer}: {}", self.message);
            }
            details.insert("pointer".into(), pointer.into());
            details.remove("event");
            details.remove("index");
        }
        self
    }

    /// 500 that shows nothing of `cause` to the client.
    pub fn internal(cause: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<chiso_store::Error> for ApiError {
    fn from(error: chiso_store::Error) -> Self {
        use chiso_store::Error as E;
        let message = error.to_string();
        let index = error.request_index();
        let (status, code, details) = match &error {
            E::InvalidStreamName { name, .. } => (
                StatusCode::BAD_REQUEST,
                "invalid_stream_name",
                json!({"stream": name}),
            ),
            E::EmptyAppend { stream, .. } => (
                StatusCode::BAD_REQUEST,
                "empty_append",
                json!({"stream": stream}),
            ),
            E::InvalidEvent { .. } => (StatusCode::BAD_REQUEST, "invalid_event", json!({})),
            E::DuplicateIdInRequest { id, .. } => (
                StatusCode::BAD_REQUEST,
                "duplicate_id_in_request",
                json!({"id": id}),
            ),
            E::WrongExpectedRevision {
                stream,
                expected,
                actual,
                ..
            } => (
                StatusCode::CONFLICT,
                "wrong_expected_revision",
                json!({"stream": stream, "expected_revision": expected.to_string(), "actual_revision": actual}),
            ),
            E::DuplicateEventId {
                id,
                existing_stream,
                position,
                ..
            } => (
                StatusCode::CONFLICT,
                "duplicate_event_id",
                json!({"id": id, "stream": existing_stream, "position": position}),
            ),
            E::Rejected { rejection, .. } => {
                let status = match rejection.kind {
                    chiso_store::RejectionKind::Conflict => StatusCode::CONFLICT,
                    chiso_store::RejectionKind::Forbidden => StatusCode::FORBIDDEN,
                    chiso_store::RejectionKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
                };
                let pointer = rejection.pointer.clone().unwrap_or_default();
                (
                    status,
                    rejection.code,
                    json!({"event": rejection.event, "pointer": pointer}),
                )
            }
            E::StreamNotFound(stream) => (
                StatusCode::NOT_FOUND,
                "stream_not_found",
                json!({"stream": stream}),
            ),
            _ if error.kind() == ErrorKind::Unavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable", json!({}))
            }
            _ => return Self::internal(&error),
        };
        let mut details = details;
        if let (Some(index), Some(map)) = (index, details.as_object_mut()) {
            map.insert("index".into(), index.into());
        }
        Self::new(status, code, message).with_details(details)
    }
}
