//! The crate's error type. Each variant maps onto one engine-wide [`ErrorKind`]; the messages
//! are Docker's where a docker user would recognise them.

use berth_api::{ErrorKind, PathIoError};
use berth_runtime::RuntimeError;

/// Result alias for this crate.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

/// Everything that can go wrong managing containers.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// No container matches the name, id or id prefix.
    #[error("No such container: {0}")]
    NotFound(String),
    /// A path inside a container does not exist (the full message).
    #[error("{0}")]
    PathNotFound(String),
    /// The request is malformed or asks for something invalid (Docker's 400).
    #[error("{0}")]
    Invalid(String),
    /// The container is in a state that forbids the operation (Docker's 409).
    #[error("{0}")]
    Conflict(String),
    /// Berth does not implement this yet (501).
    #[error("{0}")]
    NotImplemented(String),
    /// The image store answered with an error (no such image, ...).
    #[error("{0}")]
    Image(#[from] berth_image::ImageError),
    /// The runtime refused or failed.
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    /// A file operation on a named path failed.
    #[error(transparent)]
    Io(#[from] PathIoError),
    /// The network service refused or failed (its own class and Docker's message).
    #[error("{0}")]
    Network(berth_api::ApiError),
    /// Anything else.
    #[error("{0}")]
    Internal(String),
}

/// A reference or digest that does not parse is what the image store would have said: callers
/// keep using `?` on `berth_image::Digest::parse` as before the types moved to
/// `berth-reference`.
impl From<berth_image::ReferenceError> for ContainerError {
    fn from(e: berth_image::ReferenceError) -> Self {
        ContainerError::Image(e.into())
    }
}

impl From<berth_api::vocab::InvalidValue> for ContainerError {
    fn from(e: berth_api::vocab::InvalidValue) -> Self {
        ContainerError::Invalid(e.0)
    }
}

impl ContainerError {
    /// The engine-wide class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::NotFound(_) | ContainerError::PathNotFound(_) => ErrorKind::NotFound,
            ContainerError::Invalid(_) => ErrorKind::InvalidArgument,
            ContainerError::Conflict(_) => ErrorKind::Conflict,
            ContainerError::NotImplemented(_) => ErrorKind::NotImplemented,
            ContainerError::Image(e) => e.kind(),
            ContainerError::Runtime(e) => e.kind(),
            ContainerError::Network(e) => e.kind,
            ContainerError::Io(_) | ContainerError::Internal(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        ContainerError::Io(PathIoError::new(op, path, source))
    }
}

/// Shorthand for a 400.
pub(crate) fn invalid(message: impl Into<String>) -> ContainerError {
    ContainerError::Invalid(message.into())
}

/// Shorthand for a 409.
pub(crate) fn conflict(message: impl Into<String>) -> ContainerError {
    ContainerError::Conflict(message.into())
}
