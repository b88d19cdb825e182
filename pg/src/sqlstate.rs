//! chiso's errors as PostgreSQL errors: a SQLSTATE a driver can act on and the message a
//! person reads. Internal errors keep their text in the server's log.

use chiso_query::Error;
use pgwire::error::{ErrorInfo, PgWireError};

/// An `ERROR` (the statement fails, the connection stays).
pub(crate) fn error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(info("ERROR", code, message)))
}

/// A `FATAL` error: the connection closes after it.
pub(crate) fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(info("FATAL", code, message)))
}

pub(crate) fn info(severity: &str, code: &str, message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new(severity.into(), code.into(), message.into())
}

/// The connection's server is shutting down (PostgreSQL's `admin_shutdown`).
pub(crate) fn shutting_down() -> PgWireError {
    fatal(
        "57P01",
        "terminating connection because chiso is shutting down",
    )
}

/// A query's error.
pub(crate) fn query_error(error: Error) -> PgWireError {
    PgWireError::UserError(Box::new(query_error_info(&error)))
}

pub(crate) fn query_error_info(error: &Error) -> ErrorInfo {
    let code = match error {
        Error::Sql(message) => sql_state(message),
        Error::InvalidParameter(_) => "22023",
        Error::ReadOnly(_) => "25006",
        Error::QueryIdInUse(_) => "42710",
        Error::Cancelled => {
            return info("ERROR", "57014", "canceling statement due to user request");
        }
        Error::Timeout(ms) => {
            return info(
                "ERROR",
                "57014",
                format!("canceling statement due to statement timeout ({ms} ms)"),
            );
        }
        Error::Forbidden(_) => "42501",
        Error::TooManyRows(_) | Error::ValueTooLarge(_) => "54000",
        Error::ResourcesExhausted(_) => "53200",
        // A token's limit (queries at once, rows a minute): configuration_limit_exceeded.
        Error::QuotaExceeded { .. } => "53400",
        Error::Behind { .. } => "55000",
        _ => {
            tracing::error!(%error, "a PostgreSQL query failed");
            return info(
                "ERROR",
                "XX000",
                "internal error; the server's log has the details",
            );
        }
    };
    info("ERROR", code, error.to_string())
}

/// The SQLSTATE of a statement DataFusion could not plan or run, from its message.
fn sql_state(message: &str) -> &'static str {
    let lower = message.to_ascii_lowercase();
    if lower.contains("this feature is not implemented") {
        "0A000"
    } else if lower.contains("division by zero") || lower.contains("divide by zero") {
        "22012"
    } else if lower.contains("table function") {
        "42883"
    } else if lower.contains("table") && lower.contains("not found") {
        "42P01"
    } else if lower.contains("no field named")
        || lower.contains("column") && lower.contains("not found")
    {
        "42703"
    } else if lower.contains("invalid function")
        || lower.contains("function") && lower.contains("not found")
    {
        "42883"
    } else if lower.contains("cannot cast") || lower.contains("cast error") {
        "22P02"
    } else {
        "42601"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_sqlstates_drivers_know() {
        let state = |error: Error| query_error_info(&error).code;
        assert_eq!(
            state(Error::Sql("table 'chiso.public.nope' not found".into())),
            "42P01"
        );
        assert_eq!(
            state(Error::Sql("Schema error: No field named nope".into())),
            "42703"
        );
        assert_eq!(state(Error::Sql("Invalid function 'nope'".into())), "42883");
        assert_eq!(state(Error::Sql("division by zero".into())), "22012");
        assert_eq!(
            state(Error::Sql(
                "This feature is not implemented: Unsupported SQL statement: LISTEN".into()
            )),
            "0A000"
        );
        assert_eq!(
            state(Error::Sql("table function 'nope' not found".into())),
            "42883"
        );
        assert_eq!(
            state(Error::Sql("sql parser error: Expected".into())),
            "42601"
        );
        assert_eq!(state(Error::ReadOnly("read-only".into())), "25006");
        assert_eq!(state(Error::Timeout(5)), "57014");
        assert_eq!(state(Error::Cancelled), "57014");
        assert_eq!(state(Error::TooManyRows(3)), "54000");
        assert_eq!(state(Error::Forbidden("admins".into())), "42501");
        let internal = query_error_info(&Error::Engine("secret path /x".into()));
        assert_eq!(internal.code, "XX000");
        assert!(!internal.message.contains("secret"));
    }
}
