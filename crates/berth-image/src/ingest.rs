//! Building an image from blobs fetched one by one: what a registry pull (or a build) uses.
//!
//! ```text
//! let mut ingest = store.ingest();
//! if !ingest.has_blob(&layer) { ingest.write_blob(&mut response_body, &layer)?; }
//! ...
//! let image = ingest.commit(&manifest_bytes, media_type, Some(&reference), &mut progress)?;
//! ```
//!
//! Blobs an ingest has seen or written are pinned until it is dropped, so a concurrent `rmi`
//! or prune never collects them half-way through a pull. Nothing is visible until `commit`.
//!
//! [`Ingest::write_layer`] stores a layer blob and unpacks it in the same pass over the
//! stream (a pull's downloads call it from several threads at once: an ingest is `Sync`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::sync::Mutex;

use crate::config::{ImageConfig, chain_ids};
use crate::digest::{Digest, Hasher};
use crate::error::{ImageError, IoContext, Result};
use crate::publish::{PublishConfig, PublishRequest};
use crate::reference::Reference;
use crate::store::{Image, ImageStore, LoadProgress, RecordLayer, exclusive, lock, random_name};
use crate::unpack;

/// An image being assembled from individually fetched blobs. See the module documentation.
pub struct Ingest<'a> {
    store: &'a ImageStore,
    pinned: Mutex<Vec<Digest>>,
    /// Layers [`Ingest::write_layer`] unpacked and verified, by blob digest: commit need not
    /// read their blobs again.
    written: Mutex<HashMap<Digest, WrittenLayer>>,
    /// The repository digest to record instead of the manifest's own (a pull by tag of an
    /// index records the index's digest, as Docker does).
    repo_digest: Option<Digest>,
}

#[derive(Clone)]
struct WrittenLayer {
    chain_id: Digest,
    diff_id: Digest,
    size: u64,
}

impl ImageStore {
    /// Starts assembling an image from blobs (for pulls).
    pub fn ingest(&self) -> Ingest<'_> {
        Ingest {
            store: self,
            pinned: Mutex::new(Vec::new()),
            written: Mutex::new(HashMap::new()),
            repo_digest: None,
        }
    }
}

/// Copies every byte read from `inner` into a file, hashing it on the way; the first `saved`
/// bytes are in the file already (a resumed download) and are only hashed.
struct Tee<'r> {
    inner: &'r mut dyn Read,
    out: File,
    hasher: Hasher,
    saved: u64,
}

impl Read for Tee<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let known = (self.saved.min(n as u64)) as usize;
        self.saved -= known as u64;
        self.out.write_all(&buf[known..n])?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

impl Ingest<'_> {
    fn pin(&self, digest: &Digest) -> bool {
        let mut state = lock(&self.store.state);
        *state.pinned.entry(digest.clone()).or_default() += 1;
        lock(&self.pinned).push(digest.clone());
        // Checked under the lock garbage collection removes blobs under.
        self.store.blob_path(digest).exists()
    }

    /// Whether the content store has this blob already (then it need not be fetched).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.pin(digest)
    }

    /// Whether the layer `blob` (whose uncompressed digest is `diff_id`, on top of the chain
    /// `parent`) is stored and unpacked already: then a pull need not fetch it.
    pub fn has_layer(&self, blob: &Digest, diff_id: &Digest, parent: Option<&Digest>) -> bool {
        let chain = match parent {
            None => diff_id.clone(),
            Some(p) => chain_ids(&[p.clone(), diff_id.clone()])[1].clone(),
        };
        self.pin(blob) && self.store.has_layer(&chain)
    }

    /// Records `digest` as the repository digest of the image (`repo@digest`) instead of the
    /// digest of the manifest given to [`Ingest::commit`].
    pub fn set_repo_digest(&mut self, digest: Digest) {
        self.repo_digest = Some(digest);
    }

    /// Streams a blob into the content store, verifying its digest; returns its size.
    pub fn write_blob(&self, reader: &mut dyn Read, digest: &Digest) -> Result<u64> {
        self.pin(digest);
        Ok(self.store.write_blob_from_reader(reader, Some(digest))?.1)
    }

    /// Streams a layer blob into the content store and unpacks it in the same pass: the
    /// compressed bytes are hashed and written to the ingest area while they are decompressed
    /// and extracted. Only when the blob's digest and the layer's `diff_id` both verify do the
    /// blob and the layer (on top of the chain `parent`) become stored; otherwise nothing is
    /// kept. `progress` receives the compressed bytes read so far. Returns the blob's size.
    pub fn write_layer(
        &self,
        reader: &mut dyn Read,
        blob: &Digest,
        diff_id: &Digest,
        parent: Option<&Digest>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let blob_tmp = self.store.ingest_dir().join(random_name("layer"));
        let result = self.write_layer_into(&blob_tmp, 0, reader, blob, diff_id, parent, progress);
        let _ = fs::remove_file(&blob_tmp);
        result
    }

    /// [`Ingest::write_layer`] for a resumable download: the blob's bytes go to `spool` (on
    /// the data root's filesystem), whose first `saved` bytes are there already and are the
    /// first bytes `reader` gives. On success the file becomes the stored blob (renamed, not
    /// copied); on failure it is left for the caller (to resume from, or to remove).
    #[allow(clippy::too_many_arguments)]
    pub fn write_layer_resumable(
        &self,
        reader: &mut dyn Read,
        spool: &std::path::Path,
        saved: u64,
        blob: &Digest,
        diff_id: &Digest,
        parent: Option<&Digest>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        self.write_layer_into(spool, saved, reader, blob, diff_id, parent, progress)
    }

    #[allow(clippy::too_many_arguments)]
    fn write_layer_into(
        &self,
        blob_tmp: &std::path::Path,
        saved: u64,
        reader: &mut dyn Read,
        blob: &Digest,
        diff_id: &Digest,
        parent: Option<&Digest>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        self.pin(blob);
        let store = self.store;
        let layer_tmp = store.new_tmp_layer()?;
        let result = (|| -> Result<u64> {
            let mut file = fs::OpenOptions::new()
                .create(true)
                .truncate(saved == 0)
                .write(true)
                .open(blob_tmp)
                .ctx(|| format!("cannot create {}", blob_tmp.display()))?;
            if saved > 0 {
                // Exactly the saved prefix: anything past it was never handed on.
                file.set_len(saved)
                    .and_then(|()| io::Seek::seek(&mut file, io::SeekFrom::Start(saved)))
                    .ctx(|| format!("cannot resume {}", blob_tmp.display()))?;
            }
            let mut tee = Tee {
                inner: reader,
                out: file,
                hasher: Hasher::new(),
                saved,
            };
            let unpacked = unpack::unpack_layer(
                &mut tee,
                &layer_tmp.join("diff"),
                &blob.to_string(),
                progress,
            );
            // The decompressor may stop before the blob's end (trailing bytes), and a corrupt
            // blob usually fails to decompress first: read to the end either way, so that a
            // blob that does not match its digest is reported as such.
            let drained = io::copy(&mut tee, &mut io::sink());
            let (file, hasher) = (tee.out, tee.hasher);
            let size = hasher.len();
            let actual = hasher.finish();
            if drained.is_ok() && actual != *blob {
                return Err(ImageError::InvalidArgument(format!(
                    "filesystem layer verification failed for digest {blob}"
                )));
            }
            // The source itself found the bytes wrong (a registry client verifying at the
            // end): that is the cause, whatever the decompressor said before.
            if let Err(e) = &drained
                && e.kind() == io::ErrorKind::InvalidData
            {
                return Err(ImageError::InvalidArgument(e.to_string()));
            }
            let unpacked = unpacked?;
            drained.map_err(|source| ImageError::LayerStream {
                layer: blob.to_string(),
                source,
            })?;
            diff_id.verify(&unpacked.diff_id, &format!("layer {blob}"))?;
            file.sync_all()
                .ctx(|| format!("cannot sync {}", blob_tmp.display()))?;
            store.install_blob(blob_tmp, blob)?;
            let ensured = store.install_unpacked_layer(&layer_tmp, unpacked, parent)?;
            lock(&self.written).insert(
                blob.clone(),
                WrittenLayer {
                    chain_id: ensured.chain_id,
                    diff_id: ensured.diff_id,
                    size: ensured.size,
                },
            );
            Ok(size)
        })();
        if layer_tmp.exists() {
            let _ = fs::remove_dir_all(&layer_tmp);
        }
        result
    }

    /// Reads a (small) stored blob, e.g. a config.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        std::fs::read(self.store.blob_path(digest)).ctx(|| format!("cannot read blob {digest}"))
    }

    /// Unpacks the layers of `manifest` (an OCI or Docker schema 2 image manifest whose config
    /// and layer blobs are stored), and makes the image visible, tagged as `reference` (when it
    /// has a tag) and with the repository digest `repo@<manifest digest>`.
    pub fn commit(
        self,
        manifest: &[u8],
        media_type: &str,
        reference: Option<&Reference>,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Image> {
        let store = self.store;
        let _w = exclusive(&store.write_lock);
        let result = self.commit_locked(manifest, media_type, reference, progress);
        // Layers unpacked for a failed image are unreferenced; pinned blobs stay for a retry.
        store.collect_on_error("ingest", result)
    }

    fn commit_locked(
        &self,
        manifest_bytes: &[u8],
        media_type: &str,
        reference: Option<&Reference>,
        progress: &mut dyn FnMut(LoadProgress),
    ) -> Result<Image> {
        let store = self.store;
        let manifest: crate::archive::Manifest = serde_json::from_slice(manifest_bytes)
            .map_err(|e| ImageError::InvalidArgument(format!("invalid image manifest: {e}")))?;
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let id = Digest::of_bytes(&config_bytes);
        manifest.config.digest.verify(&id, "image config")?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| ImageError::InvalidArgument(format!("invalid image config {id}: {e}")))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::InvalidArgument(format!(
                "image {id} has {} layers, but its config lists {} diff ids",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let chains = chain_ids(diff_ids);
        let mut layers = Vec::new();
        for (i, desc) in manifest.layers.iter().enumerate() {
            let parent = if i == 0 { None } else { Some(&chains[i - 1]) };
            let written = lock(&self.written).get(&desc.digest).cloned();
            if let Some(w) = written.filter(|w| w.chain_id == chains[i] && w.diff_id == diff_ids[i])
            {
                // Unpacked and verified by write_layer: no second pass over the blob.
                layers.push(RecordLayer {
                    diff_id: w.diff_id,
                    chain_id: w.chain_id,
                    blob_digest: desc.digest.clone(),
                    blob_size: desc.size,
                    media_type: desc.media_type.clone(),
                    size: w.size,
                });
                progress(LoadProgress::LayerDone {
                    digest: desc.digest.clone(),
                });
                continue;
            }
            layers.push(store.layer_record(
                &desc.digest,
                desc.size,
                parent,
                &diff_ids[i],
                Some(&desc.media_type),
                progress,
            )?);
        }
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media_type.to_string());
        store.publish_one(PublishRequest {
            config: PublishConfig::Received {
                bytes: config_bytes,
                config,
            },
            layers,
            manifest: Some((manifest_bytes.to_vec(), media_type)),
            tags: reference
                .and_then(|r| r.tag().map(|t| r.with_tag(t)))
                .into_iter()
                .collect(),
            repo_digest: reference.map(|r| (r.clone(), self.repo_digest.clone())),
        })
    }
}

impl Drop for Ingest<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.store.state);
        let pinned = std::mem::take(&mut *lock(&self.pinned));
        for d in pinned {
            if let Some(n) = state.pinned.get_mut(&d) {
                *n -= 1;
                if *n == 0 {
                    state.pinned.remove(&d);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeleteOptions;
    use crate::testutil::{TestImage, gzip, layer_tar};

    #[test]
    fn builds_an_image_from_fetched_blobs_with_a_repo_digest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let layer = gzip(&layer_tar(&[("pulled", b"yes")]));
        let img = TestImage {
            tags: vec![],
            layers: vec![layer.clone()],
            comment: "pulled".into(),
        };
        let config = img.config();
        let config_digest = Digest::of_bytes(&config);
        let layer_digest = Digest::of_bytes(&layer);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer_digest.to_string(), "size": layer.len()}],
        }))
        .unwrap();

        let ingest = store.ingest();
        assert!(!ingest.has_blob(&layer_digest));
        // A wrong digest is refused and leaves nothing.
        let err = ingest
            .write_blob(&mut &b"evil"[..], &layer_digest)
            .unwrap_err();
        assert!(err.to_string().contains("digest mismatch"), "{err}");
        ingest.write_blob(&mut &layer[..], &layer_digest).unwrap();
        ingest.write_blob(&mut &config[..], &config_digest).unwrap();
        // A concurrent prune does not collect the pinned blobs.
        store.prune(true, &|_| true, &|_| None).unwrap();
        assert!(ingest.has_blob(&layer_digest));
        let reference = Reference::parse_normalized("busybox:1.36").unwrap();
        let image = ingest
            .commit(&manifest, "", Some(&reference), &mut |_| {})
            .unwrap();
        let manifest_digest = Digest::of_bytes(&manifest);
        assert_eq!(image.id, config_digest);
        assert_eq!(image.repo_tags, vec!["busybox:1.36"]);
        assert_eq!(
            image.repo_digests,
            vec![format!("busybox@{manifest_digest}")]
        );
        assert_eq!(
            store.get(&format!("busybox@{manifest_digest}")).unwrap().id,
            image.id
        );
        // Removing the last tag removes the digest reference of the same repository too.
        let items = store
            .delete("busybox:1.36", DeleteOptions::default(), &|_| None)
            .unwrap();
        assert_eq!(items[0], crate::DeleteItem::Untagged("busybox:1.36".into()));
        assert_eq!(
            items[1],
            crate::DeleteItem::Untagged(format!("busybox@{manifest_digest}"))
        );
        assert!(store.images().is_empty());
    }

    #[test]
    fn write_layer_stores_and_unpacks_in_one_pass_or_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let tar = layer_tar(&[("streamed", b"while downloading")]);
        let layer = gzip(&tar);
        let img = TestImage {
            tags: vec![],
            layers: vec![layer.clone()],
            comment: "streamed".into(),
        };
        let config = img.config();
        let config_digest = Digest::of_bytes(&config);
        let layer_digest = Digest::of_bytes(&layer);
        let diff_id = Digest::of_bytes(&tar);
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest.to_string(), "size": layer.len()}],
        }))
        .unwrap();
        let leftovers = || {
            let ingest = std::fs::read_dir(store.ingest_dir()).unwrap().count();
            let tmp_layers = std::fs::read_dir(dir.path().join("layers"))
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(".tmp")
                })
                .count();
            ingest + tmp_layers
        };

        let mut ingest = store.ingest();
        // One flipped byte: the digest check fails, nothing is kept.
        let mut bad = layer.clone();
        let middle = bad.len() / 2;
        bad[middle] ^= 0xff;
        let err = ingest
            .write_layer(&mut &bad[..], &layer_digest, &diff_id, None, &mut |_| {})
            .unwrap_err();
        assert!(
            err.to_string().contains(&format!(
                "filesystem layer verification failed for digest {layer_digest}"
            )),
            "{err}"
        );
        assert!(!ingest.has_layer(&layer_digest, &diff_id, None));
        assert_eq!(leftovers(), 0);

        let mut seen = 0;
        let size = ingest
            .write_layer(&mut &layer[..], &layer_digest, &diff_id, None, &mut |n| {
                seen = n
            })
            .unwrap();
        assert_eq!((size, seen), (layer.len() as u64, layer.len() as u64));
        assert!(ingest.has_layer(&layer_digest, &diff_id, None));
        assert_eq!(leftovers(), 0);
        ingest.write_blob(&mut &config[..], &config_digest).unwrap();
        let index_digest = Digest::of_bytes(b"an index");
        ingest.set_repo_digest(index_digest.clone());
        // The commit does not read the blob again: removing it shows that.
        std::fs::remove_file(store.blob_path(&layer_digest)).unwrap();
        let reference = Reference::parse_normalized("reg:5000/app:1").unwrap();
        let image = ingest
            .commit(&manifest, "", Some(&reference), &mut |_| {})
            .unwrap();
        assert_eq!(image.id, config_digest);
        assert_eq!(
            image.repo_digests,
            vec![format!("reg:5000/app@{index_digest}")]
        );
        let dirs = store.layer_dirs(&image.id).unwrap();
        assert_eq!(
            std::fs::read(dirs[0].join("streamed")).unwrap(),
            b"while downloading"
        );
    }

    #[test]
    fn a_resumed_layer_hashes_the_saved_prefix_and_becomes_the_blob() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let tar = layer_tar(&[("resumed", b"half then the rest")]);
        let layer = gzip(&tar);
        let digest = Digest::of_bytes(&layer);
        let diff_id = Digest::of_bytes(&tar);
        let spool = dir.path().join("spool");
        let half = layer.len() / 2;
        // Saved earlier, plus garbage past the prefix (never handed on): truncated away.
        let mut saved = layer[..half].to_vec();
        saved.extend_from_slice(b"garbage");
        std::fs::write(&spool, &saved).unwrap();
        let ingest = store.ingest();
        let size = ingest
            .write_layer_resumable(
                &mut &layer[..],
                &spool,
                half as u64,
                &digest,
                &diff_id,
                None,
                &mut |_| {},
            )
            .unwrap();
        assert_eq!(size, layer.len() as u64);
        assert!(!spool.exists(), "renamed into the store");
        assert_eq!(std::fs::read(store.blob_path(&digest)).unwrap(), layer);
        assert!(ingest.has_layer(&digest, &diff_id, None));

        // A failure leaves the spool for the caller.
        let other = gzip(&layer_tar(&[("x", b"y")]));
        std::fs::write(&spool, b"").unwrap();
        let wrong = Digest::of_bytes(b"not it");
        ingest
            .write_layer_resumable(
                &mut &other[..],
                &spool,
                0,
                &wrong,
                &diff_id,
                None,
                &mut |_| {},
            )
            .unwrap_err();
        assert_eq!(std::fs::read(&spool).unwrap(), other);
    }
}
