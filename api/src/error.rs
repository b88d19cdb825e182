//! The one place where errors become HTTP responses: `{"error": {"code", "message",
//! "details"}}`. Every crate classifies its errors by [`ErrorKind`]; [`status`] maps each kind
//! to one status, here and nowhere else. Messages say what is wrong in words; JSON pointers,
//! lines and indexes live only in `details`. Internal errors are logged in full and answered
//! with a generic message.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use chiso_store::ErrorKind;
use serde_json::{json, Value};

/// Result of a handler.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

/// The HTTP status of each kind of error: the one table.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::Timeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Overloaded => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error answer: its kind (hence its status), a stable snake_case code, a message a person
/// can act on, and structured details.
#[derive(Debug)]
pub struct ApiError {
    /// What kind of failure: decides the status.
    pub kind: ErrorKind,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Structured details (the offending field's `pointer`, `line`, `index`, revision, …).
    pub details: Value,
}

/// The code of an error answer, kept on the response for the request metrics.
#[derive(Clone, Copy, Debug)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    /// An error with empty details.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
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

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        status(self.kind)
    }

    /// 400 with `code`.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidInput, code, message)
    }

    /// A refusal of the catalog, for the event at `pointer` in the request.
    pub fn from_ingest(error: chiso_ingest::IngestError, pointer: &str) -> Self {
        let field = format!("{pointer}{}", error.pointer.as_deref().unwrap_or(""));
        Self::new(error.kind(), error.code(), error.message).with_details(json!({"pointer": field}))
    }

    /// Puts the pointer of a write-model refusal (relative to its event) under the event's
    /// place in the request.
    pub fn under_pointer(mut self, prefix: Option<String>) -> Self {
        if let (Some(prefix), Some(details)) = (prefix, self.details.as_object_mut()) {
            let inner = details.get("pointer").and_then(Value::as_str).unwrap_or("");
            let pointer = format!("{prefix}{inner}");
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
            ErrorKind::Internal,
            "internal",
            "internal error; the server log has the details",
        )
    }

    /// Any crate's error by its kind, code, message and details; internal ones hidden.
    fn classified(
        kind: ErrorKind,
        code: &'static str,
        error: &dyn std::fmt::Display,
        details: Value,
    ) -> Self {
        match kind {
            ErrorKind::Internal => Self::internal(error),
            _ => Self::new(kind, code, error.to_string()).with_details(details),
        }
    }
}

impl ApiError {
    /// The answer's body: `{"error": {"code", "message", "details"}}`.
    pub fn body(&self) -> Value {
        json!({"error": {"code": self.code, "message": self.message, "details": self.details}})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let retry_after = self.details["retry_after_secs"].as_u64();
        let mut response = (status, axum::Json(self.body())).into_response();
        response.extensions_mut().insert(ErrorCode(self.code));
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

impl From<chiso_store::Error> for ApiError {
    fn from(error: chiso_store::Error) -> Self {
        Self::classified(error.kind(), error.code(), &error, error.details())
    }
}

impl From<chiso_query::Error> for ApiError {
    fn from(error: chiso_query::Error) -> Self {
        Self::classified(error.kind(), error.code(), &error, error.details())
    }
}
