//! Engine-wide error classes. Every crate's error type maps onto one [`ErrorKind`]; the API layer
//! turns that into Docker's status code and `{"message": ...}` body. Nothing decides on an
//! error's text.

use serde::{Deserialize, Serialize};

/// The class of a failure, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// 400: the request or one of its parameters is malformed.
    InvalidArgument,
    /// 404: the named object does not exist.
    NotFound,
    /// 409: the object exists but is in a state that forbids the operation.
    Conflict,
    /// 413: the request body is larger than the daemon accepts.
    PayloadTooLarge,
    /// 401: credentials are missing or wrong.
    Unauthorized,
    /// 403: the operation is not allowed.
    Forbidden,
    /// 501: Berth does not implement this.
    NotImplemented,
    /// 503: a dependency is not available right now.
    Unavailable,
    /// 500: anything else.
    Internal,
}

impl ErrorKind {
    /// The HTTP status code Docker uses for this class.
    pub fn status_code(self) -> u16 {
        match self {
            ErrorKind::InvalidArgument => 400,
            ErrorKind::Unauthorized => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::Internal => 500,
            ErrorKind::NotImplemented => 501,
            ErrorKind::Unavailable => 503,
        }
    }

    /// The class for an HTTP status code (used by clients decoding an error response).
    pub fn from_status_code(code: u16) -> ErrorKind {
        match code {
            400 => ErrorKind::InvalidArgument,
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::PayloadTooLarge,
            501 => ErrorKind::NotImplemented,
            503 => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}

/// An error as it crosses the API: a class and the message the user reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotImplemented, message)
    }

    /// The JSON body Docker sends with an error status.
    pub fn body(&self) -> ErrorResponse {
        ErrorResponse {
            message: self.message.clone(),
        }
    }
}

/// A file or mount operation on a named path that failed, read as Go's `*PathError` is:
/// `open /var/lib/berth/x: permission denied`. The crates' error enums carry it as their `Io`
/// variant (always a daemon-side failure, [`ErrorKind::Internal`]).
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct PathIoError {
    /// What was being done.
    pub op: &'static str,
    /// The path involved (or a longer description of the object).
    pub path: String,
    /// The underlying error.
    #[source]
    pub source: std::io::Error,
}

impl PathIoError {
    pub fn new(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        PathIoError {
            op,
            path: path.display().to_string(),
            source,
        }
    }
}

/// Docker's error body: `{"message": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_io_errors_read_like_gos() {
        let source = std::io::Error::from_raw_os_error(2);
        let e = PathIoError::new("open", std::path::Path::new("/x/y"), source);
        assert!(
            e.to_string()
                .starts_with("open /x/y: No such file or directory")
        );
        let inner = std::error::Error::source(&e).expect("the io error is the source");
        assert!(inner.is::<std::io::Error>());
    }

    #[test]
    fn status_codes_round_trip() {
        for kind in [
            ErrorKind::InvalidArgument,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unauthorized,
            ErrorKind::Forbidden,
            ErrorKind::NotImplemented,
            ErrorKind::Unavailable,
            ErrorKind::Internal,
        ] {
            assert_eq!(ErrorKind::from_status_code(kind.status_code()), kind);
        }
    }
}
