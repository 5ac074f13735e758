//! The crate's one error type. Its `Display` text is the message a docker user reads, so the
//! wording follows Docker's. Every variant is a caller's mistake (an invalid argument); the
//! crates above map it to their own error class.

use crate::digest::Digest;

/// Result alias for this crate.
pub type Result<T, E = ReferenceError> = std::result::Result<T, E>;

/// A malformed reference or digest, or content that does not match its digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// A reference string does not follow Docker's grammar; the string is the full message,
    /// because Docker varies it (`invalid reference format`, `... must be lowercase`).
    #[error("{0}")]
    InvalidReference(String),

    /// A digest string is malformed.
    #[error("invalid digest {0:?}: expected sha256:<64 lowercase hex characters>")]
    InvalidDigest(String),

    /// Content did not hash to the digest it was announced with.
    #[error("{what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
}

impl ReferenceError {
    /// `invalid reference format`, Docker's message for a malformed reference.
    pub(crate) fn invalid_reference() -> ReferenceError {
        ReferenceError::InvalidReference("invalid reference format".into())
    }
}
