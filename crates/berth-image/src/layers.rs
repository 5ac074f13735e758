//! The content store (blobs written hashed, temp file + fsync + rename) and unpacked layers
//! (`layers/<chain-hex>/`), which every way an image arrives (load, import, commit, pull) uses
//! before [`ImageStore::publish`](crate::publish) makes the image visible.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::chain_ids;
use crate::digest::{Digest, HashingWriter};
use crate::error::{ImageError, IoContext, Result};
use crate::store::{
    ImageStore, LoadProgress, RecordLayer, random_name, sync_dir, write_json_atomic,
};
use crate::unpack::{self, Compression};

/// `layers/<chain-hex>/layer.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub(crate) chain_id: Digest,
    pub(crate) diff_id: Digest,
    pub(crate) parent: Option<Digest>,
    pub(crate) size: u64,
}

/// What [`ImageStore::ensure_layer`] produced.
pub(crate) struct EnsuredLayer {
    pub diff_id: Digest,
    pub chain_id: Digest,
    pub size: u64,
    pub compression: Compression,
}

impl EnsuredLayer {
    /// The layer as an image record lists it. `media_type` is the one a manifest gave, if any;
    /// otherwise it follows the blob's compression.
    pub(crate) fn into_record(
        self,
        blob: Digest,
        blob_size: u64,
        media_type: Option<&str>,
    ) -> RecordLayer {
        RecordLayer {
            media_type: media_type
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .unwrap_or_else(|| self.compression.oci_media_type().to_string()),
            diff_id: self.diff_id,
            chain_id: self.chain_id,
            blob_digest: blob,
            blob_size,
            size: self.size,
        }
    }
}

impl ImageStore {
    // ---- content store ----

    /// Stores `bytes` as a blob, verifying `expected` when given.
    pub(crate) fn write_blob(&self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        Ok(self.write_blob_from_reader(&mut &bytes[..], expected)?.0)
    }

    /// Streams a blob into the store, hashing while writing; on a digest mismatch nothing is
    /// kept. Returns the digest and size.
    pub(crate) fn write_blob_from_reader(
        &self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64)> {
        let tmp = self.ingest_dir().join(random_name("blob"));
        let result = (|| -> Result<(Digest, u64)> {
            let file = File::create(&tmp).ctx(|| format!("cannot create {}", tmp.display()))?;
            let mut w = HashingWriter::new(file);
            io::copy(reader, &mut w).ctx(|| "cannot write blob".to_string())?;
            let (file, hasher) = w.into_parts();
            let size = hasher.len();
            let digest = hasher.finish();
            if let Some(expected) = expected {
                expected.verify(&digest, &format!("blob {expected}"))?;
            }
            file.sync_all()
                .ctx(|| format!("cannot sync {}", tmp.display()))?;
            self.install_blob(&tmp, &digest)?;
            Ok((digest, size))
        })();
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Moves an already verified file (in the same filesystem) into the content store; when the
    /// blob exists already, the file is left for the caller to remove.
    pub(crate) fn install_blob(&self, src: &Path, digest: &Digest) -> Result<()> {
        let dest = self.blob_path(digest);
        if dest.exists() {
            return Ok(());
        }
        fs::rename(src, &dest).ctx(|| format!("cannot store blob {digest}"))?;
        sync_dir(&self.blobs_dir())
    }

    // ---- layers ----

    /// Makes sure the layer of a stored `blob` is unpacked on top of `parent` (verifying its diff
    /// id), reporting progress in blob bytes, and describes it for an image record. Load and
    /// pull both build images through this. `media_type` is the one the manifest gave, if any;
    /// otherwise it follows the blob's compression.
    pub(crate) fn layer_record(
        &self,
        blob: &Digest,
        blob_size: u64,
        parent: Option<&Digest>,
        diff_id: &Digest,
        media_type: Option<&str>,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<RecordLayer> {
        let ensured = self.ensure_layer(blob, parent, Some(diff_id), &mut |current| {
            progress(LoadProgress::Layer {
                digest: blob.clone(),
                current,
                total: Some(blob_size),
            })
        })?;
        progress(LoadProgress::LayerDone {
            digest: blob.clone(),
        });
        Ok(ensured.into_record(blob.clone(), blob_size, media_type))
    }

    /// Stores the layer tar (plain, gzip or zstd) `reader` gives as a blob and unpacks it on top
    /// of `parent`: the layer of an image made here (commit, import).
    pub(crate) fn store_layer(
        &self,
        reader: &mut dyn Read,
        parent: Option<&Digest>,
    ) -> Result<RecordLayer> {
        let (blob, blob_size) = self.write_blob_from_reader(reader, None)?;
        let ensured = self.ensure_layer(&blob, parent, None, &mut |_| {})?;
        Ok(ensured.into_record(blob, blob_size, None))
    }

    /// Makes sure the layer unpacked from `blob` exists under its chain id; verifies its diff id
    /// against `expected_diff` when given.
    pub(crate) fn ensure_layer(
        &self,
        blob: &Digest,
        parent: Option<&Digest>,
        expected_diff: Option<&Digest>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<EnsuredLayer> {
        let blob_path = self.blob_path(blob);
        let open_blob = || File::open(&blob_path).ctx(|| format!("cannot open blob {blob}"));
        let chain_for = |diff: &Digest| match parent {
            None => diff.clone(),
            Some(p) => chain_ids(&[p.clone(), diff.clone()])[1].clone(),
        };
        if let Some(expected) = expected_diff {
            let chain = chain_for(expected);
            if let Some(existing) = self.read_layer_record(&chain)? {
                // Shared layer: only check that this blob really is that layer.
                let (diff, compression) = unpack::diff_id_of(&mut open_blob()?, &blob.to_string())?;
                expected.verify(&diff, &format!("layer {blob}"))?;
                return Ok(EnsuredLayer {
                    diff_id: diff,
                    chain_id: chain,
                    size: existing.size,
                    compression,
                });
            }
        }
        let tmp = self.new_tmp_layer()?;
        let diff_dir = tmp.join("diff");
        let result = (|| -> Result<EnsuredLayer> {
            let unpacked =
                unpack::unpack_layer(&mut open_blob()?, &diff_dir, &blob.to_string(), progress)?;
            if let Some(expected) = expected_diff {
                expected.verify(&unpacked.diff_id, &format!("layer {blob}"))?;
            }
            self.install_unpacked_layer(&tmp, unpacked, parent)
        })();
        if tmp.exists() {
            let _ = fs::remove_dir_all(&tmp);
        }
        result
    }

    /// A fresh layer directory to unpack into (`<tmp>/diff`), removed by the caller on failure.
    pub(crate) fn new_tmp_layer(&self) -> Result<PathBuf> {
        let tmp = self
            .layers_dir()
            .join(format!(".tmp-{}", random_name("layer")));
        let diff_dir = tmp.join("diff");
        fs::create_dir_all(&diff_dir).ctx(|| format!("cannot create {}", diff_dir.display()))?;
        Ok(tmp)
    }

    /// Makes the layer unpacked (and verified) in `tmp` a layer under its chain id.
    pub(crate) fn install_unpacked_layer(
        &self,
        tmp: &Path,
        unpacked: unpack::UnpackedLayer,
        parent: Option<&Digest>,
    ) -> Result<EnsuredLayer> {
        let chain = match parent {
            None => unpacked.diff_id.clone(),
            Some(p) => chain_ids(&[p.clone(), unpacked.diff_id.clone()])[1].clone(),
        };
        let record = LayerRecord {
            chain_id: chain.clone(),
            diff_id: unpacked.diff_id.clone(),
            parent: parent.cloned(),
            size: unpacked.size,
        };
        let ensured = EnsuredLayer {
            diff_id: unpacked.diff_id,
            chain_id: chain.clone(),
            size: unpacked.size,
            compression: unpacked.compression,
        };
        let dest = self.layer_dir(&chain);
        if dest.exists() {
            // Same content arrived again (import of an identical tree).
            return Ok(ensured);
        }
        write_json_atomic(&tmp.join("layer.json"), &record)?;
        // One syncfs instead of an fsync per file: the tree must be durable before the
        // rename makes it a layer.
        let dir = File::open(tmp).ctx(|| format!("cannot open {}", tmp.display()))?;
        rustix::fs::syncfs(&dir).map_err(|e| ImageError::io("cannot sync layer", e.into()))?;
        fs::rename(tmp, &dest).ctx(|| format!("cannot store layer {chain}"))?;
        sync_dir(&self.layers_dir())?;
        Ok(ensured)
    }

    /// Whether the layer with this chain id is unpacked.
    pub(crate) fn has_layer(&self, chain: &Digest) -> bool {
        self.layer_dir(chain).join("layer.json").exists()
    }

    pub(crate) fn read_layer_record(&self, chain: &Digest) -> Result<Option<LayerRecord>> {
        let path = self.layer_dir(chain).join("layer.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
                ImageError::CorruptMetadata {
                    path: path.display().to_string(),
                    source,
                }
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(ImageError::io(format!("cannot read {}", path.display()), e)),
        }
    }
}
