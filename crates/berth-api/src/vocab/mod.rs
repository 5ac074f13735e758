//! Docker's small vocabularies, parsed once at the edge into typed values: restart policies,
//! `wait` conditions, namespace and network modes, log drivers and security options. Each
//! keeps Docker's spelling as its wire form ([`std::fmt::Display`] gives it back), so records
//! and responses that carry the string stay as they were; a parse failure carries dockerd's
//! message.

mod log_driver;
mod mode;
mod restart;
mod security_opt;
mod wait;

pub use log_driver::LogDriver;
pub use mode::{NamespaceMode, NetworkMode};
pub use restart::RestartPolicy;
pub use security_opt::{SecurityOpt, SecurityOpts};
pub use wait::WaitCondition;

/// A value outside its vocabulary. The message is dockerd's, for a 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl From<InvalidValue> for crate::ApiError {
    fn from(e: InvalidValue) -> Self {
        crate::ApiError::invalid(e.0)
    }
}
