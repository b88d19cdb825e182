//! Errors of the query crate, classified so the api maps each kind to one status.

use chiso_store::ErrorKind;
use datafusion::error::DataFusionError;

/// Errors of projections and SQL.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The statement is not valid SQL or does not plan.
    #[error("{0}")]
    Sql(String),
    /// A parameter or option is wrong.
    #[error("{0}")]
    InvalidParameter(String),
    /// Not a read-only statement.
    #[error("{0}")]
    ReadOnly(String),
    /// A client gave its query the id of one still running.
    #[error("a query with id {0:?} is running; give each query its own id")]
    QueryIdInUse(String),
    /// The caller is at one of its limits (see [`crate::Quota`]).
    #[error("{message}")]
    QuotaExceeded {
        /// Which limit: `too_many_queries`, `row_quota_exceeded`.
        code: &'static str,
        /// What to do about it.
        message: String,
        /// When to try again.
        retry_after_secs: u64,
    },
    /// The query was cancelled (`DELETE /v1/queries/{id}`).
    #[error("the query was cancelled")]
    Cancelled,
    /// Reading a table only admins may read.
    #[error("{0}")]
    Forbidden(String),
    /// Past the time limit.
    #[error("the query did not finish within {0} ms")]
    Timeout(u64),
    /// More rows than allowed.
    #[error("the answer has more than {0} rows; add a LIMIT or aggregate")]
    TooManyRows(usize),
    /// A function would build a value larger than allowed.
    #[error("{0}")]
    ValueTooLarge(String),
    /// The memory pool refused an allocation.
    #[error("the query needs more memory than the server allows for queries: {0}")]
    ResourcesExhausted(String),
    /// The tables have not caught up with the asked position in time.
    #[error("the tables have not reached position {wanted} (they are at {at})")]
    Behind {
        /// What the client asked for.
        wanted: u64,
        /// Where the tables are.
        at: u64,
    },
    /// The log failed.
    #[error(transparent)]
    Store(#[from] chiso_store::Error),
    /// Anything else DataFusion reports that is not the user's doing.
    #[error("query engine: {0}")]
    Engine(String),
    /// The query's task panicked (a bug in the engine or a function): answered as internal.
    #[error("the query stopped unexpectedly: {0}")]
    Panicked(String),
    /// The fold could not go on past an event (it stays before it and retries).
    #[error("fold: {0}")]
    Fold(String),
    /// A segment file could not be read or written.
    #[error("segment {file}: {reason}")]
    Segment {
        /// The file.
        file: String,
        /// What went wrong.
        reason: String,
    },
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The classification.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Sql(_) | Self::InvalidParameter(_) => ErrorKind::InvalidInput,
            Self::ReadOnly(_) | Self::Forbidden(_) => ErrorKind::Forbidden,
            Self::QueryIdInUse(_) | Self::Cancelled => ErrorKind::Conflict,
            Self::Timeout(_) => ErrorKind::Timeout,
            Self::QuotaExceeded { .. } => ErrorKind::Overloaded,
            Self::TooManyRows(_) | Self::ValueTooLarge(_) => ErrorKind::TooLarge,
            Self::ResourcesExhausted(_) | Self::Behind { .. } => ErrorKind::Unavailable,
            Self::Store(error) => error.kind(),
            Self::Engine(_) | Self::Segment { .. } | Self::Fold(_) | Self::Panicked(_) => {
                ErrorKind::Internal
            }
        }
    }

    /// What a client may act on, as JSON.
    pub fn details(&self) -> serde_json::Value {
        match self {
            Self::Behind { wanted, at } => {
                serde_json::json!({"min_position": wanted, "position": at})
            }
            Self::TooManyRows(max) => serde_json::json!({"max_rows": max}),
            Self::Timeout(ms) => serde_json::json!({"timeout_ms": ms}),
            Self::QuotaExceeded {
                retry_after_secs, ..
            } => serde_json::json!({"retry_after_secs": retry_after_secs}),
            Self::Store(error) => error.details(),
            _ => serde_json::json!({}),
        }
    }

    /// A stable snake_case code for clients.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Sql(_) => "invalid_sql",
            Self::InvalidParameter(_) => "invalid_parameter",
            Self::ReadOnly(_) => "read_only",
            Self::QueryIdInUse(_) => "query_id_in_use",
            Self::Cancelled => "query_cancelled",
            Self::Forbidden(_) => "forbidden",
            Self::Timeout(_) => "query_timeout",
            Self::QuotaExceeded { code, .. } => code,
            Self::TooManyRows(_) => "too_many_rows",
            Self::ValueTooLarge(_) => "value_too_large",
            Self::ResourcesExhausted(_) => "query_memory_exhausted",
            Self::Behind { .. } => "tables_behind",
            Self::Store(error) => error.code(),
            Self::Engine(_) | Self::Segment { .. } | Self::Fold(_) | Self::Panicked(_) => {
                "internal"
            }
        }
    }
}

impl From<DataFusionError> for Error {
    /// Plan, SQL and schema errors are the user's; resource errors are the server's limits;
    /// the rest are ours.
    fn from(error: DataFusionError) -> Self {
        if let Some(too_large) = find_source::<crate::capped::TooLarge>(&error) {
            return Self::ValueTooLarge(too_large.to_string());
        }
        match error.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            // What the statement asks of DataFusion's options (`COPY t TO 'file'` with no
            // format) is the user's too.
            | DataFusionError::Configuration(_) => Self::Sql(error.strip_backtrace()),
            DataFusionError::ResourcesExhausted(message) => {
                Self::ResourcesExhausted(message.clone())
            }
            DataFusionError::Execution(message) => Self::Sql(message.clone()),
            DataFusionError::ArrowError(inner, _) => match inner.as_ref() {
                datafusion::arrow::error::ArrowError::CastError(message)
                | datafusion::arrow::error::ArrowError::ParseError(message)
                | datafusion::arrow::error::ArrowError::InvalidArgumentError(message)
                | datafusion::arrow::error::ArrowError::ComputeError(message) => {
                    Self::Sql(message.clone())
                }
                datafusion::arrow::error::ArrowError::DivideByZero => {
                    Self::Sql("division by zero".into())
                }
                other => Self::Engine(other.to_string()),
            },
            other => Self::Engine(other.to_string()),
        }
    }
}

/// The first error of type `T` in `error`'s chain of sources, itself included.
fn find_source<T: std::error::Error + 'static>(error: &DataFusionError) -> Option<&T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        if let Some(found) = error.downcast_ref::<T>() {
            return Some(found);
        }
        current = error.source();
    }
    None
}
