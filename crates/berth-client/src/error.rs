//! The client's error type: transport failures, API errors decoded from the daemon, and
//! responses that do not decode.

use berth_api::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon could not be reached at all.
    #[error("Cannot connect to the Berth daemon at {host}. Is the berth daemon running?")]
    Connect {
        host: String,
        #[source]
        source: std::io::Error,
    },
    /// The daemon answered with an error status and `{"message": ...}`.
    #[error("{0}")]
    Api(#[from] ApiError),
    /// A host string such as `ftp://x` that the client cannot use.
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost { host: String, reason: String },
    /// HTTP framing failed mid-request or mid-response.
    #[error("error during connect to {host}: {message}")]
    Http { host: String, message: String },
    /// The daemon's answer was not the JSON the API describes.
    #[error("cannot decode the daemon's response to {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// TLS material that cannot be used (a missing CA file, a key without its certificate).
    #[error("invalid TLS configuration: {0}")]
    InvalidTls(String),
    /// Reading a request body (a file, stdin) failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The API error, when the daemon answered with one.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }

    /// Is this a "no such object" answer (HTTP 404)?
    pub fn is_not_found(&self) -> bool {
        self.api()
            .is_some_and(|e| e.kind == berth_api::ErrorKind::NotFound)
    }
}

pub type Result<T> = std::result::Result<T, Error>;
