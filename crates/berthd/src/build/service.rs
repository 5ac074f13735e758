//! The daemon's build state: the on-disk cache records, the builds running (for
//! `/build/cancel`), and the cache's budget with least-recently-used eviction.

use std::collections::{HashMap, HashSet};
use std::io;
use std::sync::Mutex;

use berth_build::cache::{CacheRecord, CacheStore, DiskCache, PruneOptions, select_prune};
use berth_image::DeleteOptions;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The cache's share of the data root's file system when daemon.json sets no budget.
const DEFAULT_BUDGET_PERCENT: u64 = 10;

pub struct Builds {
    pub cache: DiskCache,
    /// Keep the cache under this many bytes (least recently used records go first).
    pub budget: u64,
    active: Mutex<HashMap<String, CancellationToken>>,
    /// Serialises evictions and prunes (each removes images).
    prune_lock: tokio::sync::Mutex<()>,
}

/// What a prune removed.
#[derive(Debug, Default)]
pub struct Pruned {
    pub ids: Vec<String>,
    pub space: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Builds {
    pub fn open(config: &Config) -> io::Result<Builds> {
        let dir = config.data_root.join("builder").join("cache");
        let budget = config.builder_keep_storage.unwrap_or_else(|| {
            rustix::fs::statvfs(&config.data_root)
                .map(|s| s.f_blocks * s.f_frsize / 100 * DEFAULT_BUDGET_PERCENT)
                .unwrap_or(10 << 30)
        });
        Ok(Builds {
            cache: DiskCache::open(&dir)?,
            budget,
            active: Mutex::new(HashMap::new()),
            prune_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Registers a running build under `id` (the `buildid` query, for `/build/cancel`).
    pub fn start(&self, id: &str, token: CancellationToken) {
        if !id.is_empty() {
            lock(&self.active).insert(id.to_string(), token);
        }
    }

    pub fn finish(&self, id: &str) {
        lock(&self.active).remove(id);
    }

    /// `/build/cancel?id=`: whether such a build was running.
    pub fn cancel(&self, id: &str) -> bool {
        match lock(&self.active).remove(id) {
            Some(t) => {
                t.cancel();
                true
            }
            None => false,
        }
    }

    /// The images cache records name: intermediate results a plain `docker images` hides.
    pub fn cached_images(&self) -> HashSet<String> {
        self.cache
            .list()
            .unwrap_or_default()
            .into_iter()
            .map(|r| r.image)
            .collect()
    }

    pub fn records(&self) -> Vec<CacheRecord> {
        self.cache.list().unwrap_or_default()
    }

    /// Removes the records `opts` selects, and the images only they kept (untagged, unused by
    /// a container); returns their keys and the bytes their layers held.
    pub async fn prune(&self, state: &crate::state::AppState, opts: PruneOptions) -> Pruned {
        let _p = self.prune_lock.lock().await;
        let records = self.records();
        let keys = select_prune(&records, &opts);
        let by_key: HashMap<&str, &CacheRecord> =
            records.iter().map(|r| (r.key.as_str(), r)).collect();
        let mut out = Pruned::default();
        let mut images = Vec::new();
        for k in keys {
            if let Ok(Some(r)) = self.cache.remove(&k) {
                out.space += by_key.get(k.as_str()).map_or(r.size, |r| r.size);
                out.ids.push(k);
                images.push(r.image);
            }
        }
        // An image another remaining record names stays (two keys can share a result).
        let kept: HashSet<String> = self.cached_images();
        let st = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for id in images {
                if kept.contains(&id) {
                    continue;
                }
                let Ok(image) = st.images.get(&id) else {
                    continue;
                };
                if !image.repo_tags.is_empty() || st.containers.count_using(&image.id) > 0 {
                    continue;
                }
                if let Err(e) = st.images.delete(&id, DeleteOptions::default(), &|_| None) {
                    tracing::debug!(image = %id, error = %e, "cannot remove a build cache image");
                }
            }
        })
        .await;
        out
    }

    /// Evicts least recently used records while the cache is over its budget.
    pub async fn enforce_budget(&self, state: &crate::state::AppState) {
        let total: u64 = self.records().iter().map(|r| r.size).sum();
        if total <= self.budget {
            return;
        }
        let pruned = self
            .prune(
                state,
                PruneOptions {
                    keep_storage: Some(self.budget),
                    ..Default::default()
                },
            )
            .await;
        tracing::info!(
            records = pruned.ids.len(),
            bytes = pruned.space,
            "build cache over its budget: least recently used records evicted"
        );
    }
}
