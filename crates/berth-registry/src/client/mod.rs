//! The registry client: the [`Remote`] seam, its `oci-client` implementation, manifest and
//! platform handling, and the pull orchestration.

mod endpoint;
mod inflight;
mod manifest;
mod oci;
mod partial;
pub mod pull;
mod resume;
mod stall;

use std::future::Future;
use std::io;

use berth_image::{Digest, Reference};
use bytes::Bytes;
use futures_util::stream::BoxStream;

pub use endpoint::is_secure;
pub(crate) use endpoint::{ClientCache, endpoints};
pub use manifest::{Platform, media_types};
pub(crate) use oci::install_crypto_provider;
pub use oci::{Credentials, MAX_MANIFEST_SIZE, OciRemote, RemoteOptions};
pub use partial::MAX_AGE as PARTIAL_DOWNLOAD_MAX_AGE;
pub use pull::{
    PullEvent, PullOptions, PullOutcome, Resolved, fetch_image, inspect_remote, pull_all_tags,
    pull_image, resolve_image, sweep_partial_downloads,
};
pub use resume::{MAX_DOWNLOAD_ATTEMPTS, Persistence};
pub use stall::StallPolicy;

/// What a manifest, blob or index entry is: a content descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// A manifest as the registry sent it: the exact bytes (their digest is the manifest's
/// identity), its media type and digest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub bytes: Bytes,
    pub media_type: String,
    pub digest: Digest,
}

impl Manifest {
    /// The descriptor of this manifest (what a tag resolves to).
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
        }
    }
}

/// A blob's bytes as they arrive. The stream ends with an error when the transfer fails.
pub struct BlobStream {
    /// `Content-Length` of the response, when the registry sent one.
    pub length: Option<u64>,
    /// The offset of the stream's first byte in the blob: the requested offset, or 0 when the
    /// registry ignored the `Range` and sent all of it.
    pub start: u64,
    pub stream: BoxStream<'static, io::Result<Bytes>>,
}

/// The seam between a pull (or push) and a registry. Implemented over `oci-client` by
/// [`OciRemote`]; the references are fully qualified (`127.0.0.1:5000/team/app:1.4`).
///
/// There is no separate `resolve` (tag → descriptor): oci-client's HEAD exposes the digest
/// but neither the media type nor the size, so resolving is fetching the (small) manifest;
/// [`Manifest::descriptor`] describes it.
pub trait Remote: Send + Sync {
    /// The manifest (or index) a tag or digest points to, verified against the digest when
    /// the reference has one.
    fn fetch_manifest(
        &self,
        reference: &Reference,
    ) -> impl Future<Output = Result<Manifest>> + Send;
    /// Streams the blob `desc` of `repository`, from byte `offset` on (0 for all of it).
    fn fetch_blob(
        &self,
        repository: &Reference,
        desc: &Descriptor,
        offset: u64,
    ) -> impl Future<Output = Result<BlobStream>> + Send;
}

/// What can go wrong talking to a registry, worded as Docker words it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Unknown repository, tag, digest or platform (HTTP 404 for an API client).
    #[error("{0}")]
    NotFound(String),
    /// Credentials missing or refused.
    #[error("{0}")]
    Unauthorized(String),
    /// A reference, platform or manifest Berth refuses (schema 1...).
    #[error("{0}")]
    Invalid(String),
    /// The registry could not be reached or answered nonsense.
    #[error("{0}")]
    Transport(String),
    /// Storing what was fetched failed (including a blob that does not match its digest).
    #[error(transparent)]
    Store(#[from] berth_image::ImageError),
}

pub type Result<T> = std::result::Result<T, RegistryError>;
