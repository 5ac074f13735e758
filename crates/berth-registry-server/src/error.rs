//! The registry's errors: one variant per failure, each naming what failed, each mapped once
//! to the distribution spec's error code and HTTP status ([`RegistryError::code`],
//! [`RegistryError::status`]) and answered as `{"errors":[{"code","message","detail"}]}`.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::driver::DriverError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("blob {digest} is unknown to repository {name}")]
    BlobUnknown { name: String, digest: String },
    #[error("blob upload invalid: {0}")]
    BlobUploadInvalid(String),
    #[error("blob upload {id} is unknown to repository {name}")]
    BlobUploadUnknown { name: String, id: String },
    /// A chunk that does not start where the upload ends (416).
    #[error("chunk range {range} does not continue the upload, which has {size} bytes")]
    RangeInvalid { range: String, size: u64 },
    /// A `Range` on a blob GET outside the blob (416).
    #[error("range {range} is not satisfiable for a blob of {size} bytes")]
    RangeNotSatisfiable { range: String, size: u64 },
    #[error("digest invalid: {0}")]
    DigestInvalid(String),
    #[error("manifest references blob {digest}, which repository {name} does not have")]
    ManifestBlobUnknown { name: String, digest: String },
    #[error("manifest invalid: {0}")]
    ManifestInvalid(String),
    #[error("manifest {reference} is unknown to repository {name}")]
    ManifestUnknown { name: String, reference: String },
    #[error("invalid repository name {0:?}")]
    NameInvalid(String),
    #[error("repository {0} is not known to this registry")]
    NameUnknown(String),
    #[error("invalid tag {0:?}")]
    TagInvalid(String),
    #[error("size invalid: {0}")]
    SizeInvalid(String),
    #[error("manifest of {size} bytes is over the limit of {limit} bytes")]
    ManifestTooBig { size: u64, limit: u64 },
    /// Credentials missing or wrong; `challenge` is the `WWW-Authenticate` value.
    #[error("authentication required")]
    Unauthorized { challenge: String },
    #[error("requested access to the resource is denied: {0}")]
    Denied(String),
    #[error("unsupported: {0}")]
    Unsupported(String),
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    #[error("upstream registry: {0}")]
    Upstream(String),
    #[error("{0}")]
    Storage(#[from] DriverError),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

impl RegistryError {
    /// The distribution spec's error code.
    pub fn code(&self) -> &'static str {
        use RegistryError::*;
        match self {
            BlobUnknown { .. } => "BLOB_UNKNOWN",
            BlobUploadInvalid(_) | RangeInvalid { .. } => "BLOB_UPLOAD_INVALID",
            RangeNotSatisfiable { .. } => "RANGE_INVALID",
            BlobUploadUnknown { .. } => "BLOB_UPLOAD_UNKNOWN",
            DigestInvalid(_) => "DIGEST_INVALID",
            ManifestBlobUnknown { .. } => "MANIFEST_BLOB_UNKNOWN",
            ManifestInvalid(_) => "MANIFEST_INVALID",
            ManifestUnknown { .. } => "MANIFEST_UNKNOWN",
            NameInvalid(_) => "NAME_INVALID",
            NameUnknown(_) => "NAME_UNKNOWN",
            TagInvalid(_) => "TAG_INVALID",
            SizeInvalid(_) | ManifestTooBig { .. } => "SIZE_INVALID",
            Unauthorized { .. } => "UNAUTHORIZED",
            Denied(_) => "DENIED",
            Unsupported(_) => "UNSUPPORTED",
            TooManyRequests(_) => "TOOMANYREQUESTS",
            Upstream(_) | Storage(_) => "UNKNOWN",
        }
    }

    pub fn status(&self) -> StatusCode {
        use RegistryError::*;
        match self {
            BlobUnknown { .. }
            | BlobUploadUnknown { .. }
            | ManifestUnknown { .. }
            | NameUnknown(_) => StatusCode::NOT_FOUND,
            BlobUploadInvalid(_)
            | DigestInvalid(_)
            | ManifestBlobUnknown { .. }
            | ManifestInvalid(_)
            | NameInvalid(_)
            | TagInvalid(_)
            | SizeInvalid(_) => StatusCode::BAD_REQUEST,
            RangeInvalid { .. } | RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            ManifestTooBig { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Denied(_) => StatusCode::FORBIDDEN,
            Unsupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Upstream(_) => StatusCode::BAD_GATEWAY,
            Storage(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Storage errors that mean "not there" become the caller's own not-found variant.
    pub fn or_not_found(e: DriverError, missing: impl FnOnce() -> RegistryError) -> RegistryError {
        if e.is_not_found() {
            missing()
        } else {
            RegistryError::Storage(e)
        }
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::json!({
            "errors": [{ "code": self.code(), "message": self.to_string(), "detail": null }]
        });
        let mut response = (status, axum::Json(body)).into_response();
        if let RegistryError::TooManyRequests(_) = &self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let RegistryError::Unauthorized { challenge } = &self
            && let Ok(v) = HeaderValue::from_str(challenge)
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}
