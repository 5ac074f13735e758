//! What pushes and pulls learned about blobs, kept beside the image store
//! (`<data-root>/distribution/blobs.json`):
//! - per layer diff id, the compressed blobs it was pushed as (so that a second push checks
//!   the registry for that digest instead of compressing again, and the digests stay the same);
//! - per blob, the repositories (`registry/path`) it is known to be in, for cross-repository
//!   mounts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use berth_image::Digest;
use serde::{Deserialize, Serialize};

/// Serialises the read-modify-write of the file between concurrent pushes.
static FILE_LOCK: Mutex<()> = Mutex::new(());

/// A compressed form of a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compressed {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct File {
    #[serde(default)]
    compressed: BTreeMap<String, Compressed>,
    #[serde(default)]
    repositories: BTreeMap<String, BTreeSet<String>>,
}

/// The blob knowledge under one data root.
pub struct DistributionMeta {
    path: PathBuf,
}

impl DistributionMeta {
    pub fn new(data_root: &Path) -> DistributionMeta {
        DistributionMeta {
            path: data_root.join("distribution").join("blobs.json"),
        }
    }

    fn read(&self) -> File {
        std::fs::read(&self.path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    fn update(&self, change: impl FnOnce(&mut File)) {
        let _l = FILE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let mut file = self.read();
        change(&mut file);
        // Losing this file costs a recompression or a mount, never correctness: a failed
        // write is logged, not fatal.
        let result = (|| -> std::io::Result<()> {
            let dir = self.path.parent().expect("has a parent");
            std::fs::create_dir_all(dir)?;
            let tmp = dir.join(".blobs.json.tmp");
            std::fs::write(
                &tmp,
                serde_json::to_vec(&file).map_err(std::io::Error::other)?,
            )?;
            std::fs::rename(&tmp, &self.path)
        })();
        if let Err(e) = result {
            tracing::warn!(error = %e, path = %self.path.display(), "cannot record blob metadata");
        }
    }

    /// The compressed blob `diff_id` was last pushed as.
    pub fn compressed(&self, diff_id: &Digest) -> Option<Compressed> {
        self.read().compressed.get(&diff_id.to_string()).cloned()
    }

    pub fn set_compressed(&self, diff_id: &Digest, compressed: Compressed) {
        self.update(|f| {
            f.compressed.insert(diff_id.to_string(), compressed);
        });
    }

    /// Repositories (`registry/path`) known to have `blob`.
    pub fn repositories(&self, blob: &Digest) -> Vec<String> {
        self.read()
            .repositories
            .get(&blob.to_string())
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn add_repository(&self, blobs: &[Digest], repository: &str) {
        self.update(|f| {
            for b in blobs {
                f.repositories
                    .entry(b.to_string())
                    .or_default()
                    .insert(repository.to_string());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_compressed_forms_and_repositories() {
        let dir = std::env::temp_dir().join(format!("berth-meta-{}", std::process::id()));
        let meta = DistributionMeta::new(&dir);
        let diff = Digest::of_bytes(b"tar");
        let blob = Digest::of_bytes(b"gz");
        assert_eq!(meta.compressed(&diff), None);
        let c = Compressed {
            digest: blob.clone(),
            size: 2,
            media_type: "gzip".into(),
        };
        meta.set_compressed(&diff, c.clone());
        meta.add_repository(std::slice::from_ref(&blob), "reg/a");
        meta.add_repository(std::slice::from_ref(&blob), "reg/b");
        assert_eq!(meta.compressed(&diff), Some(c));
        assert_eq!(meta.repositories(&blob), vec!["reg/a", "reg/b"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
