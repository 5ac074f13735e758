//! The crate's one error type. Its `Display` text is the message a docker user reads, so the
//! wording follows Docker's wherever Docker has one; [`ImageError::kind`] gives the engine-wide
//! class the API layer turns into a status code.

use berth_api::ErrorKind;

use berth_reference::ReferenceError;

/// Result alias for this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Everything that can go wrong in the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// A name, id or digest does not resolve to an image (Docker's wording).
    #[error("No such image: {0}")]
    NotFound(String),

    /// A malformed reference or digest, or content that does not match its digest
    /// (`berth-reference`'s error, whose text is Docker's).
    #[error(transparent)]
    Reference(#[from] ReferenceError),

    /// Deleting is refused; the message is Docker's `conflict: unable to delete ...` sentence.
    #[error("conflict: {0}")]
    Conflict(String),

    /// A caller-supplied argument (an import change, a platform, ...) is invalid.
    #[error("{0}")]
    InvalidArgument(String),

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
            ImageError::Reference(_)
            | ImageError::InvalidArgument(_)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Digest, Reference};

    #[test]
    fn reference_errors_are_invalid_arguments_with_their_own_text() {
        let e = ImageError::from(Reference::parse_normalized("Busybox").unwrap_err());
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_eq!(
            e.to_string(),
            "invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        let e = ImageError::from(Digest::parse("sha256:abc").unwrap_err());
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        let mismatch = Digest::of_bytes(b"a").verify(&Digest::of_bytes(b"b"), "layer");
        let e = ImageError::from(mismatch.unwrap_err());
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.to_string().starts_with("layer digest mismatch"), "{e}");
    }
}
