//! Pull-through cache: not configured in this build.

use std::sync::Arc;

use axum::response::Response;
use http::HeaderMap;

use crate::digest::Digest;
use crate::error::{RegistryError, Result};
use crate::registry::Registry;
use crate::store::Manifest;

pub async fn blob(
    _: &Arc<Registry>,
    name: &str,
    d: &Digest,
    _: &HeaderMap,
    _: bool,
) -> Result<Response> {
    Err(RegistryError::BlobUnknown {
        name: name.into(),
        digest: d.to_string(),
    })
}

pub async fn manifest(_: &Arc<Registry>, name: &str, reference: &str) -> Result<Manifest> {
    Err(RegistryError::ManifestUnknown {
        name: name.into(),
        reference: reference.into(),
    })
}

pub async fn refresh_tag(_: &Arc<Registry>, _: &str, _: &str, m: Manifest) -> Result<Manifest> {
    Ok(m)
}

pub async fn tags(_: &Arc<Registry>, name: &str) -> Result<Vec<String>> {
    Err(RegistryError::NameUnknown(name.into()))
}
