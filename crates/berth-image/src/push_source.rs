//! What a registry push reads from the store: an image's config, its layer blobs as stored
//! (with the media type and diff id of each), the manifest it arrived with, and the recording
//! of the repository digest a registry gave the pushed manifest.

use std::fs::File;

use crate::digest::Digest;
use crate::error::{ImageError, IoContext, Result};
use crate::reference::Reference;
use crate::store::{ImageStore, lock};

/// One layer of an image as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLayer {
    /// The blob the layer arrived as (compressed when it was pulled, often a plain tar when it
    /// was loaded, committed or imported).
    pub blob_digest: Digest,
    pub blob_size: u64,
    /// The media type the blob came with (OCI's names for locally made layers).
    pub media_type: String,
    pub diff_id: Digest,
}

/// An image as a push needs it.
#[derive(Debug, Clone)]
pub struct PushSource {
    pub id: Digest,
    pub config: Vec<u8>,
    pub layers: Vec<StoredLayer>,
    /// The manifest the image arrived with (pulled or loaded from an OCI layout), and its
    /// media type, when the store kept it.
    pub manifest: Option<(Vec<u8>, String)>,
}

impl ImageStore {
    /// The config, layers and original manifest of the image `id`.
    pub fn push_source(&self, id: &Digest) -> Result<PushSource> {
        let (record, _) = self.record_and_config(id)?;
        let config =
            std::fs::read(self.blob_path(id)).ctx(|| format!("cannot read image config {id}"))?;
        let manifest = match &record.manifest_digest {
            Some(d) => std::fs::read(self.blob_path(d)).ok().map(|bytes| {
                (
                    bytes,
                    record.manifest_media_type.clone().unwrap_or_default(),
                )
            }),
            None => None,
        };
        Ok(PushSource {
            id: id.clone(),
            config,
            layers: record
                .layers
                .iter()
                .map(|l| StoredLayer {
                    blob_digest: l.blob_digest.clone(),
                    blob_size: l.blob_size,
                    media_type: l.media_type.clone(),
                    diff_id: l.diff_id.clone(),
                })
                .collect(),
            manifest,
        })
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).ctx(|| format!("cannot open blob {digest}"))
    }

    /// Records `reference` (`repo@sha256:...`, the digest a registry gave a pushed manifest)
    /// as a repository digest of the image `id`.
    pub fn add_repo_digest(&self, reference: &Reference, id: &Digest) -> Result<()> {
        if reference.digest().is_none() {
            return Err(ImageError::InvalidArgument(format!(
                "{reference} is not a digest reference"
            )));
        }
        let _w = crate::store::exclusive(&self.write_lock);
        let mut state = lock(&self.state);
        if !state.images.contains_key(id) {
            return Err(ImageError::NotFound(id.to_string()));
        }
        self.add_reference(&mut state, reference.clone(), id.clone())
    }
}
