//! The crate's error type, mapped onto the engine-wide [`ErrorKind`].

use berth_api::{ErrorKind, PathIoError};

/// Result alias for this crate.
pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

/// Everything that can go wrong with volumes and mount specifications.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No volume by that name (Docker's `get NAME: no such volume`).
    #[error("get {0}: no such volume")]
    NotFound(String),
    /// A malformed request: bad name, option, mode or mount specification (400).
    #[error("{0}")]
    Invalid(String),
    /// The volume is in a state that forbids the operation (409).
    #[error("{0}")]
    Conflict(String),
    /// Looking up something else failed (the container of a `--volumes-from`).
    #[error("{1}")]
    Lookup(ErrorKind, String),
    /// A file or mount operation on a named path failed.
    #[error(transparent)]
    Io(#[from] PathIoError),
}

impl VolumeError {
    /// The engine-wide class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            VolumeError::NotFound(_) => ErrorKind::NotFound,
            VolumeError::Invalid(_) => ErrorKind::InvalidArgument,
            VolumeError::Conflict(_) => ErrorKind::Conflict,
            VolumeError::Lookup(kind, _) => *kind,
            VolumeError::Io(_) => ErrorKind::Internal,
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        VolumeError::Io(PathIoError::new(op, path, source))
    }
}

pub(crate) fn invalid(message: impl Into<String>) -> VolumeError {
    VolumeError::Invalid(message.into())
}
