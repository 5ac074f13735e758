//! The one way an image becomes visible. Commit, import, load and pull each store their layers
//! (see [`crate::layers`]) and then hand a [`PublishRequest`] to [`ImageStore::publish`], which
//! stores the config (adding the new step's history and rootfs entry for an image made here) and
//! the manifest (synthesised when the image came without one), writes the image records, then
//! the references (tags and RepoDigests): all or nothing. `docker tag` and a push's RepoDigest
//! add references to an existing image through [`ImageStore::add_reference`].

use std::io;

use chrono::Utc;

use crate::config::{HistoryEntry, ImageConfig};
use crate::digest::Digest;
use crate::error::{ImageError, Result};
use crate::reference::Reference;
use crate::store::{
    Image, ImageRecord, ImageStore, LoadedImage, RecordLayer, State, StoredImage, lock,
    write_json_atomic,
};

/// One image to make visible.
pub(crate) struct PublishRequest {
    pub config: PublishConfig,
    /// The image's layers, bottom first, stored and unpacked (for a [`PublishConfig::Built`]
    /// image: its base's layers; the step's layer is added on top).
    pub layers: Vec<RecordLayer>,
    /// The manifest the image arrived with and its media type; without one, an OCI manifest is
    /// synthesised (so that `save` can write one).
    pub manifest: Option<(Vec<u8>, String)>,
    /// References to point at the image (replacing those of the same name elsewhere).
    pub tags: Vec<Reference>,
    /// Records `<repository>@<digest>` (a pulled image's RepoDigest); the digest is the given
    /// one (a manifest list's) or else the stored manifest's.
    pub repo_digest: Option<(Reference, Option<Digest>)>,
}

/// Where the image's config comes from.
pub(crate) enum PublishConfig {
    /// Arrived as bytes (load, pull): stored verbatim, so the id is their digest.
    Received { bytes: Vec<u8>, config: ImageConfig },
    /// Made here (commit, import): `config` has its base's rootfs and history; the store sets
    /// `created`, adds `step`, then encodes it.
    Built { config: ImageConfig, step: Step },
}

/// What an image made here adds on top of its base.
pub(crate) struct Step {
    /// `created_by`, `author`, `comment`; `created` and `empty_layer` are set by the store.
    pub history: HistoryEntry,
    /// The new layer; `None` for an empty one, which Docker does not add to the rootfs (the
    /// history entry is marked `empty_layer` instead).
    pub layer: Option<RecordLayer>,
}

/// The tag a commit or import is asked for (`repo[:tag]`; none when empty), checked before
/// anything is written.
pub(crate) fn tags_of(reference: Option<&str>) -> Result<Vec<Reference>> {
    reference
        .filter(|r| !r.is_empty())
        .map(|r| Ok(Reference::parse_tag_target(r)?))
        .into_iter()
        .collect()
}

/// A fully prepared image, waiting only for its record to be written.
struct PendingImage {
    record: ImageRecord,
    config: ImageConfig,
    tags: Vec<Reference>,
}

impl ImageStore {
    /// Makes the requested images visible, all or none. The caller holds `write_lock`
    /// exclusively from before it stored their layers (so a collection cannot remove them), and
    /// collects what a failure left with [`ImageStore::collect_on_error`].
    pub(crate) fn publish(&self, requests: Vec<PublishRequest>) -> Result<Vec<LoadedImage>> {
        let mut pending = Vec::with_capacity(requests.len());
        for request in requests {
            pending.push(self.prepare(request)?);
        }
        self.make_visible(pending)
    }

    /// [`ImageStore::publish`] for one image, returning its view.
    pub(crate) fn publish_one(&self, request: PublishRequest) -> Result<Image> {
        let loaded = self.publish(vec![request])?;
        let state = lock(&self.state);
        Ok(self.image_view(&state, &loaded[0].id))
    }

    /// Stores the config and manifest blobs and builds the record.
    fn prepare(&self, request: PublishRequest) -> Result<PendingImage> {
        let PublishRequest {
            config,
            mut layers,
            manifest,
            mut tags,
            repo_digest,
        } = request;
        let (config_bytes, config) = match config {
            PublishConfig::Received { bytes, config } => (bytes, config),
            PublishConfig::Built { mut config, step } => {
                let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
                config.created = Some(now.clone());
                config.history.push(HistoryEntry {
                    created: Some(now),
                    empty_layer: step.layer.is_none(),
                    ..step.history
                });
                if let Some(layer) = step.layer {
                    config.rootfs.diff_ids.push(layer.diff_id.clone());
                    layers.push(layer);
                }
                let bytes = serde_json::to_vec(&config).map_err(|e| {
                    ImageError::io("cannot encode image config", io::Error::other(e))
                })?;
                (bytes, config)
            }
        };
        let id = self.write_blob(&config_bytes, None)?;
        let config_size = config_bytes.len() as u64;
        let (manifest_bytes, media_type) = manifest.unwrap_or_else(|| {
            let bytes = crate::archive::synthesize_manifest(&id, config_size, &layers);
            (bytes, crate::archive::OCI_MANIFEST.to_string())
        });
        let manifest_digest = self.write_blob(&manifest_bytes, None)?;
        if let Some((repository, digest)) = repo_digest {
            let digest = digest.unwrap_or_else(|| manifest_digest.clone());
            tags.push(repository.repository().with_digest(digest));
        }
        Ok(PendingImage {
            record: ImageRecord {
                id,
                config_size,
                manifest_digest: Some(manifest_digest),
                manifest_size: manifest_bytes.len() as u64,
                manifest_media_type: Some(media_type),
                layers,
                loaded_at: Utc::now(),
            },
            config,
            tags,
        })
    }

    /// Makes prepared images visible: records first, then their tags (which replace existing
    /// tags of the same name).
    fn make_visible(&self, pending: Vec<PendingImage>) -> Result<Vec<LoadedImage>> {
        let mut state = lock(&self.state);
        let old_refs = state.refs.clone();
        let mut written: Vec<Digest> = Vec::new();
        let result = self.make_visible_locked(&mut state, pending, &mut written);
        if result.is_err() {
            // All or nothing: forget the images this call made visible.
            state.refs = old_refs;
            for id in written {
                if let Err(e) = self.remove_image_record(&mut state, &id) {
                    tracing::warn!(image = %id, error = %e, "cannot roll back an image record");
                }
            }
        }
        result
    }

    fn make_visible_locked(
        &self,
        state: &mut State,
        pending: Vec<PendingImage>,
        written: &mut Vec<Digest>,
    ) -> Result<Vec<LoadedImage>> {
        for p in &pending {
            if state.images.contains_key(&p.record.id) {
                continue;
            }
            let path = self
                .images_dir()
                .join(format!("{}.json", p.record.id.hex()));
            write_json_atomic(&path, &p.record)?;
            written.push(p.record.id.clone());
            state.images.insert(
                p.record.id.clone(),
                StoredImage {
                    record: p.record.clone(),
                    config: p.config.clone(),
                },
            );
        }
        let mut loaded = Vec::new();
        for p in pending {
            let mut tags: Vec<String> = Vec::new();
            for t in &p.tags {
                state.refs.insert(t.clone(), p.record.id.clone());
                let familiar = t.familiar_string();
                if !tags.contains(&familiar) {
                    tags.push(familiar);
                }
            }
            loaded.push(LoadedImage {
                id: p.record.id,
                tags,
            });
        }
        self.save_refs(state)?;
        Ok(loaded)
    }

    /// Points `reference` at the existing image `id` (`docker tag`, a pushed manifest's
    /// RepoDigest); an unrecorded change is undone in memory too. The caller holds `write_lock`.
    pub(crate) fn add_reference(
        &self,
        state: &mut State,
        reference: Reference,
        id: Digest,
    ) -> Result<()> {
        let before = state.refs.insert(reference.clone(), id);
        self.save_refs(state).inspect_err(|_| match before {
            Some(old) => {
                state.refs.insert(reference, old);
            }
            None => {
                state.refs.remove(&reference);
            }
        })
    }

    /// Passes `result` through; on an error first collects what the failed operation (`what`)
    /// left: blobs and layers no image record references.
    pub(crate) fn collect_on_error<T>(&self, what: &str, result: Result<T>) -> Result<T> {
        if result.is_err()
            && let Err(e) = self.gc()
        {
            tracing::warn!(error = %e, "cannot collect what a failed {what} left");
        }
        result
    }
}

#[cfg(test)]
#[path = "publish_tests.rs"]
mod tests;
