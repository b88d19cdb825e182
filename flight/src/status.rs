//! chiso's errors as gRPC statuses: one table from an error's kind to its code; the message
//! a person reads, except for internal errors, whose text stays in the server's log.

use arrow_flight::error::FlightError;
use chiso_query::{Error, ErrorKind};
use tonic::{Code, Status};

/// The gRPC code of each kind of error.
fn code(kind: ErrorKind) -> Code {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::Unprocessable => Code::InvalidArgument,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::Forbidden => Code::PermissionDenied,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::MethodNotAllowed => Code::Unimplemented,
        ErrorKind::Timeout => Code::DeadlineExceeded,
        ErrorKind::Conflict => Code::AlreadyExists,
        ErrorKind::TooLarge | ErrorKind::Overloaded | ErrorKind::InsufficientStorage => {
            Code::ResourceExhausted
        }
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Internal => Code::Internal,
    }
}

/// A query's error as a status.
pub(crate) fn query_status(error: Error) -> Status {
    let code = match &error {
        Error::Cancelled => Code::Cancelled,
        // The pool is full now; a retry later may pass, but not at once.
        Error::ResourcesExhausted(_) => Code::ResourceExhausted,
        other => code(other.kind()),
    };
    if code == Code::Internal {
        tracing::error!(%error, "a Flight SQL query failed");
        return Status::internal("internal error; the server's log has the details");
    }
    Status::new(code, error.to_string())
}

/// An error of the encoder or decoder: a status chiso made stays as it is; anything else is
/// internal, its text in the log.
pub(crate) fn flight_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        FlightError::ProtocolError(message) => Status::invalid_argument(message),
        other => {
            tracing::error!(error = %other, "a Flight SQL answer failed");
            Status::internal("internal error; the server's log has the details")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_codes_clients_know() {
        let code_of = |error: Error| query_status(error).code();
        assert_eq!(
            code_of(Error::Sql("no such table".into())),
            Code::InvalidArgument
        );
        assert_eq!(
            code_of(Error::ReadOnly("read-only".into())),
            Code::PermissionDenied
        );
        assert_eq!(code_of(Error::Timeout(5)), Code::DeadlineExceeded);
        assert_eq!(code_of(Error::Cancelled), Code::Cancelled);
        assert_eq!(code_of(Error::TooManyRows(3)), Code::ResourceExhausted);
        let internal = query_status(Error::Engine("secret path /x".into()));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("secret"));
    }
}
