//! The control plane's error type: Docker's classes and messages for network operations, and
//! the data plane's failures with the object they happened on.

use berth_api::error::{ApiError, ErrorKind, PathIoError};

pub type Result<T, E = ControlError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Docker's 400.
    #[error("{0}")]
    Invalid(String),
    /// Docker's 404 (the full message, e.g. `network foo not found`).
    #[error("{0}")]
    NotFound(String),
    /// Docker's 409.
    #[error("{0}")]
    Conflict(String),
    /// No addresses or subnets left (Docker answers these as 503/400 depending on the path;
    /// Berth as 503).
    #[error("{0}")]
    Unavailable(String),
    /// Docker's 403 (operations refused on the predefined networks).
    #[error("{0}")]
    Forbidden(String),
    /// The data plane failed.
    #[error("{context}: {source}")]
    DataPlane {
        context: String,
        #[source]
        source: crate::Error,
    },
    /// Reading or writing the store.
    #[error(transparent)]
    Io(#[from] PathIoError),
}

impl ControlError {
    pub fn invalid(m: impl Into<String>) -> Self {
        ControlError::Invalid(m.into())
    }
    pub fn not_found(m: impl Into<String>) -> Self {
        ControlError::NotFound(m.into())
    }
    pub fn conflict(m: impl Into<String>) -> Self {
        ControlError::Conflict(m.into())
    }
    pub fn unavailable(m: impl Into<String>) -> Self {
        ControlError::Unavailable(m.into())
    }
    pub fn data(context: impl Into<String>) -> impl FnOnce(crate::Error) -> ControlError {
        let context = context.into();
        move |source| ControlError::DataPlane { context, source }
    }
    pub fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ControlError::Io(PathIoError::new(op, path, source))
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            ControlError::Invalid(_) => ErrorKind::InvalidArgument,
            ControlError::NotFound(_) => ErrorKind::NotFound,
            ControlError::Conflict(_) => ErrorKind::Conflict,
            ControlError::Unavailable(_) => ErrorKind::Unavailable,
            ControlError::Forbidden(_) => ErrorKind::Forbidden,
            // A taken host port is the user's conflict, not the daemon's fault; Docker answers 500
            // with this text, and the CLI only prints the text.
            ControlError::DataPlane {
                source: crate::Error::Invalid(_),
                ..
            } => ErrorKind::InvalidArgument,
            ControlError::DataPlane { .. } | ControlError::Io(_) => ErrorKind::Internal,
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        // A port already allocated reads best without the context prefix (Docker's text).
        let message = match &e {
            ControlError::DataPlane {
                source: src @ crate::Error::PortAllocated { .. },
                ..
            } => format!("driver failed programming external connectivity on endpoint: {src}"),
            other => other.to_string(),
        };
        ApiError::new(e.kind(), message)
    }
}
