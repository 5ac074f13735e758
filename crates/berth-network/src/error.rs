//! The data plane's error type: what failed, on which object.

use berth_api::error::{ApiError, ErrorKind};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A system call or file operation failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed (link, address or route).
    #[error("{context}: {source}")]
    Netlink {
        context: String,
        #[source]
        source: rtnetlink::Error,
    },
    /// `nft` or `iptables` refused a change or could not be run.
    #[error("{context}: {message}")]
    Firewall { context: String, message: String },
    /// The host port of a published port is taken (Docker's text).
    #[error("Bind for {addr} failed: port is already allocated")]
    PortAllocated { addr: String },
    /// The description asked for something impossible (bad name, bad address family...).
    #[error("{0}")]
    Invalid(String),
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn netlink(context: impl Into<String>, source: rtnetlink::Error) -> Self {
        Error::Netlink {
            context: context.into(),
            source,
        }
    }
    pub(crate) fn firewall(context: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Firewall {
            context: context.into(),
            message: message.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Invalid(_) => ErrorKind::InvalidArgument,
            _ => ErrorKind::Internal,
        };
        ApiError::new(kind, e.to_string())
    }
}
