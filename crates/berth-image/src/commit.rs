//! `docker commit`: a new image made of an existing image plus one layer (a container's
//! changes). Atomic like a load: the layer blob is written and hashed, unpacked under its chain
//! id, the config blob written, then the image record and finally the reference; a failure at
//! any step leaves nothing visible, and what was written is collected.

use std::io::Read;

use crate::config::{HistoryEntry, ImageConfig};
use crate::digest::Digest;
use crate::error::Result;
use crate::publish::{PublishConfig, PublishRequest, Step, tags_of};
use crate::store::{Image, ImageStore, exclusive};

/// The DiffID of an empty layer (a tar of two zero blocks), which Docker does not add to an
/// image's rootfs (the history entry is marked `empty_layer` instead).
pub const EMPTY_LAYER_DIFF_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";

/// What a commit adds on top of its base image.
#[derive(Debug, Clone, Default)]
pub struct CommitRequest {
    /// The new image's config without the new layer: everything but `rootfs`, `history` and
    /// `created`, which the store fills in from the base image and the layer.
    pub config: ImageConfig,
    /// The history entry for the new layer (`created_by`, `author`, `comment`); its `created`
    /// time and `empty_layer` flag are set by the store.
    pub history: HistoryEntry,
    /// `repo[:tag]` to point at the new image.
    pub reference: Option<String>,
}

impl ImageStore {
    /// Creates an image from `base` plus the uncompressed OCI layer tar `layer` (whiteouts as
    /// `.wh.` entries). The new config is `req.config` with the base's `rootfs.diff_ids` and
    /// `history` followed by the new layer's, so `docker history` shows the base's steps too.
    /// An empty layer is not added (as Docker does). Returns the new image.
    pub fn commit_image(
        &self,
        base: &Digest,
        layer: &mut dyn Read,
        req: CommitRequest,
    ) -> Result<Image> {
        self.commit_image_on(Some(base), Some(layer), req)
    }

    /// [`ImageStore::commit_image`] where the base may be nothing (a build `FROM scratch`):
    /// the image is then the layer alone; and the layer may be none (a build's metadata step),
    /// which records an `empty_layer` history entry without storing anything.
    pub fn commit_image_on(
        &self,
        base: Option<&Digest>,
        layer: Option<&mut dyn Read>,
        req: CommitRequest,
    ) -> Result<Image> {
        let tags = tags_of(req.reference.as_deref())?;
        let _w = exclusive(&self.write_lock);
        let (layers, rootfs, history) = match base {
            Some(base) => {
                let (record, config) = self.record_and_config(base)?;
                (record.layers, config.rootfs, config.history)
            }
            None => (Vec::new(), Default::default(), Vec::new()),
        };
        let mut empty = false;
        let result = (|| -> Result<Image> {
            let parent = layers.last().map(|l| l.chain_id.clone());
            let layer = match layer {
                Some(layer) => self.store_layer(layer, parent.as_ref())?,
                None => {
                    empty = true;
                    return self.publish_one(PublishRequest {
                        config: PublishConfig::Built {
                            config: ImageConfig {
                                rootfs: rootfs.clone(),
                                history: history.clone(),
                                ..req.config.clone()
                            },
                            step: Step {
                                history: req.history.clone(),
                                layer: None,
                            },
                        },
                        layers: layers.clone(),
                        manifest: None,
                        tags: tags.clone(),
                        repo_digest: None,
                    });
                }
            };
            empty = layer.diff_id.to_string() == EMPTY_LAYER_DIFF_ID;
            self.publish_one(PublishRequest {
                config: PublishConfig::Built {
                    config: ImageConfig {
                        rootfs,
                        history,
                        ..req.config
                    },
                    step: Step {
                        history: req.history,
                        layer: (!empty).then_some(layer),
                    },
                },
                layers,
                manifest: None,
                tags,
                repo_digest: None,
            })
        })();
        // On success only an empty layer, unpacked but not part of the image, is left over.
        if (result.is_err() || empty)
            && let Err(e) = self.gc()
        {
            tracing::warn!(error = %e, "cannot collect after a commit");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{layer_tar, simple_docker_archive};

    #[test]
    fn commit_adds_a_layer_history_and_tag() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let archive = simple_docker_archive(&["base:1"], &[&[("bin/sh", b"sh")]]);
        let base = store.load(&mut &archive[..], &mut |_| {}).unwrap()[0]
            .id
            .clone();
        let layer = layer_tar(&[("etc/new", b"hello")]);
        let mut config = store.get("base:1").unwrap().config;
        config.author = Some("me".into());
        let img = store
            .commit_image(
                &base,
                &mut &layer[..],
                CommitRequest {
                    config,
                    history: HistoryEntry {
                        created_by: Some("sh".into()),
                        comment: Some("msg".into()),
                        ..Default::default()
                    },
                    reference: Some("committed:v2".into()),
                },
            )
            .unwrap();
        assert_eq!(img.repo_tags, vec!["committed:v2".to_string()]);
        assert_eq!(img.layers.len(), 2);
        assert_eq!(img.config.rootfs.diff_ids.len(), 2);
        let last = img.config.history.last().unwrap();
        assert_eq!(last.created_by.as_deref(), Some("sh"));
        assert!(!last.empty_layer);
        let dirs = store.layer_dirs(&img.id).unwrap();
        assert_eq!(std::fs::read(dirs[1].join("etc/new")).unwrap(), b"hello");
        // The stored config is exactly the blob the id names.
        let reopened = ImageStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get("committed:v2").unwrap().id, img.id);
    }

    #[test]
    fn empty_changes_add_no_layer_and_bad_tags_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let archive = simple_docker_archive(&["base:1"], &[&[("bin/sh", b"sh")]]);
        let base = store.load(&mut &archive[..], &mut |_| {}).unwrap()[0]
            .id
            .clone();
        let empty = [0u8; 1024];
        let img = store
            .commit_image(&base, &mut &empty[..], CommitRequest::default())
            .unwrap();
        assert_eq!(img.layers.len(), 1);
        assert!(img.config.history.last().unwrap().empty_layer);
        assert_eq!(Digest::of_bytes(&empty).to_string(), EMPTY_LAYER_DIFF_ID);
        let before = store.images().len();
        let req = CommitRequest {
            reference: Some("Bad:Tag".into()),
            ..Default::default()
        };
        assert!(store.commit_image(&base, &mut &empty[..], req).is_err());
        assert_eq!(store.images().len(), before);
    }
}
