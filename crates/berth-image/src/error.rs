//! The crate's one error type. Its `Display` text is the message a docker user reads, so the
//! wording follows Docker's wherever Docker has one; [`ImageError::kind`] gives the engine-wide
//! class the API layer turns into a status code.

use berth_api::ErrorKind;

use crate::digest::Digest;

/// Result alias for this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A name, id or digest does not resolve to an image (Docker's wording).
    #[error("No such image: {0}")]
    NotFound(String),

    /// A reference string does not follow Docker's grammar; the string is the full message,
    /// because Docker varies it (`invalid reference format`, `... must be lowercase`).
    #[error("{0}")]
    InvalidReference(String),

    /// A digest string is malformed.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex characters>")]
    InvalidDigest(String),

    /// Deleting is refused; the message is Docker's `conflict: unable to delete ...` sentence.
    #[error("conflict: {0}")]
    Conflict(String),

    /// A caller-supplied argument (an import change, a platform, ...) is invalid.
    #[error("{0}")]
    InvalidArgument(String),

    /// Content did not hash to the digest it was announced with.
    #[error("{what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },

    /// A layer entry would land outside the layer directory.
    #[error("cannot unpack layer {layer}: entry {entry:?} escapes the layer root")]
    LayerEscape { layer: String, entry: String },

    /// A layer entry could not be created.
    #[error("cannot unpack layer {layer}: entry {entry:?}: {source}")]
    Unpack {
        layer: String,
        entry: String,
        #[source]
        source: std::io::Error,
    },

    /// A layer stream is not a readable (possibly compressed) tar.
    #[error("cannot unpack layer {layer}: {source}")]
    LayerStream {
        layer: String,
        #[source]
        source: std::io::Error,
    },

    /// An archive given to `load` is malformed, truncated or inconsistent.
    #[error("{0}")]
    InvalidArchive(String),

    /// A load failed; wraps the cause with Docker's prefix.
    #[error("failed to load image: {0}")]
    Load(Box<ImageError>),

    /// Stored metadata could not be parsed.
    #[error("corrupt metadata {path}: {source}")]
    CorruptMetadata {
        path: String,
        #[source]
        source: serde_json::Error,
    },

    /// An operating-system error, with what was being done.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl ImageError {
    /// The engine-wide class of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Conflict(_) => ErrorKind::Conflict,
            ImageError::InvalidReference(_)
            | ImageError::InvalidDigest(_)
            | ImageError::InvalidArgument(_)
            | ImageError::DigestMismatch { .. }
            | ImageError::LayerEscape { .. }
            | ImageError::LayerStream { .. }
            | ImageError::InvalidArchive(_) => ErrorKind::InvalidArgument,
            ImageError::Load(inner) => inner.kind(),
            ImageError::Unpack { .. }
            | ImageError::CorruptMetadata { .. }
            | ImageError::Io { .. } => ErrorKind::Internal,
        }
    }

    /// An I/O error with context (the path or object involved).
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> ImageError {
        ImageError::Io {
            context: context.into(),
            source,
        }
    }

    /// `invalid reference format`, Docker's message for a malformed reference.
    pub(crate) fn invalid_reference() -> ImageError {
        ImageError::InvalidReference("invalid reference format".into())
    }
}

/// Adds context to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ImageError::io(context(), source))
    }
}
