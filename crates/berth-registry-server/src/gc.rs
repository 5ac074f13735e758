//! Garbage collection while the registry serves: mark and sweep with a grace period.
//!
//! Mark: for every repository, the manifests reachable from its tags (through index entries
//! and referrers) are kept with the blobs they reference; other manifests and repository blob
//! links are candidates. Sweep: candidates and unmarked blobs are deleted — unless they were
//! modified after `start - grace` (an upload or push in progress, or another process's), or a
//! commit touched them since the mark began. The sweep holds the store's commit lock
//! exclusively, and every commit that makes content reachable (blob link, mount, manifest PUT)
//! holds it shared and records what it touched: a manifest that validated its blobs before
//! the sweep keeps them; one that validates after finds them gone and is refused
//! (`MANIFEST_BLOB_UNKNOWN`), never accepted dangling.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::GcConfig;
use crate::digest::Digest;
use crate::error::{RegistryError, Result};
use crate::manifest;
use crate::paths;
use crate::store::Store;

/// One collection at a time per process.
static RUNNING: Mutex<()> = Mutex::new(());

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub repositories: usize,
    pub manifests_deleted: usize,
    pub links_deleted: usize,
    pub blobs_deleted: usize,
    pub bytes_freed: u64,
    pub blobs_kept: usize,
    pub elapsed: Duration,
}

fn old(store: &Store, path: &str, cutoff: SystemTime) -> bool {
    store.driver.stat(path).is_ok_and(|i| i.modified < cutoff)
}

pub fn collect(store: &Store, config: &GcConfig) -> Result<GcReport> {
    let _one = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    let started = Instant::now();
    // Tracking starts under the sweep lock: a commit that validated its blobs before the
    // tracking began (and so recorded nothing) has then also written its tag, which the mark
    // below sees. Without the barrier a manifest PUT in flight could validate untracked,
    // tag after the mark read the tags, and have its blobs swept.
    let cutoff = {
        let _barrier = store.sweep_guard();
        store.track_touched(true);
        SystemTime::now() - Duration::from_secs(config.grace_secs)
    };
    let result = collect_inner(store, cutoff);
    store.track_touched(false);
    let mut report = result?;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn collect_inner(store: &Store, cutoff: SystemTime) -> Result<GcReport> {
    let mut report = GcReport::default();
    let mut marked: HashSet<Digest> = HashSet::new();
    let repos = store.catalog()?;
    report.repositories = repos.len();
    for name in &repos {
        // Roots: tagged manifests. Then what they reach.
        let mut keep: HashSet<Digest> = HashSet::new();
        // A storage error while marking ends the collection: what could not be read would
        // look unreferenced. Only what is really absent (a dangling tag) is passed over.
        let tags = match store.tags(name) {
            Ok(t) => t,
            Err(RegistryError::NameUnknown(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut queue: VecDeque<Digest> = VecDeque::new();
        for t in &tags {
            match store.resolve(name, t) {
                Ok(d) => queue.push_back(d),
                Err(RegistryError::Storage(e)) if !e.is_not_found() => {
                    return Err(RegistryError::Storage(e));
                }
                Err(_) => {}
            }
        }
        let mut repo_blobs: HashSet<Digest> = HashSet::new();
        while let Some(d) = queue.pop_front() {
            if !keep.insert(d.clone()) {
                continue;
            }
            match store.get_manifest(name, &d.to_string()) {
                Ok(m) => {
                    if let Ok(parsed) = manifest::parse(&m.bytes, Some(&m.media_type)) {
                        repo_blobs.extend(parsed.blobs.iter().cloned());
                        queue.extend(parsed.manifests.iter().cloned());
                    }
                }
                Err(RegistryError::Storage(e)) => return Err(RegistryError::Storage(e)),
                Err(_) => {}
            }
            // Referrers (signatures, SBOMs) of a kept manifest are kept with it.
            for desc in store.referrers(name, &d, None)? {
                if let Some(r) = desc
                    .get("digest")
                    .and_then(|v| v.as_str())
                    .and_then(|s| Digest::parse(s).ok())
                {
                    queue.push_back(r);
                }
            }
        }
        let revisions = store.revisions(name)?;
        let layer_links: Vec<Digest> = store
            .driver
            .walk(&paths::layers(name))?
            .iter()
            .filter_map(|f| {
                let parts: Vec<&str> = f.path.rsplit('/').take(3).collect();
                match parts[..] {
                    [_, hex, alg] => paths::digest_from(alg, hex),
                    _ => None,
                }
            })
            .collect();
        {
            let _sweep = store.sweep_guard();
            let touched = store.touched();
            for d in &revisions {
                if keep.contains(d)
                    || touched.contains(d)
                    || !old(store, &paths::revision_link(name, d), cutoff)
                {
                    keep.insert(d.clone());
                    continue;
                }
                if store.delete_manifest(name, &d.to_string()).is_ok() {
                    report.manifests_deleted += 1;
                }
            }
        }
        // Blob links: candidates chosen without the lock, deleted in batches under it.
        let candidates: Vec<Digest> = layer_links
            .into_iter()
            .filter(|d| {
                let keep =
                    repo_blobs.contains(d) || !old(store, &paths::layer_link(name, d), cutoff);
                if keep {
                    repo_blobs.insert(d.clone());
                }
                !keep
            })
            .collect();
        let deleted = sweep(store, &candidates, |d| store.unlink_blob(name, d).is_ok());
        for (d, gone) in candidates.into_iter().zip(deleted) {
            if gone {
                report.links_deleted += 1;
            } else {
                repo_blobs.insert(d);
            }
        }
        // A kept manifest's bytes are a blob too.
        marked.extend(keep);
        marked.extend(repo_blobs);
    }
    let mut candidates: Vec<(Digest, u64)> = Vec::new();
    for f in store.driver.walk(paths::BLOBS)? {
        let parts: Vec<&str> = f.path.rsplit('/').take(4).collect();
        let Some(d) = (match parts[..] {
            ["data", hex, _, alg] => paths::digest_from(alg, hex),
            _ => None,
        }) else {
            continue;
        };
        if marked.contains(&d) || f.modified >= cutoff {
            report.blobs_kept += 1;
        } else {
            candidates.push((d, f.size));
        }
    }
    let deleted = sweep(store, &candidates, |(d, _)| {
        store.driver.delete(&paths::blob_dir(d)).is_ok()
    });
    for ((_, size), gone) in candidates.iter().zip(deleted) {
        if gone {
            report.blobs_deleted += 1;
            report.bytes_freed += size;
        } else {
            report.blobs_kept += 1;
        }
    }
    Ok(report)
}

/// Deletes per batch.
const BATCH: usize = 256;
/// Deleting threads: deletes wait on the disk, not the CPU.
const THREADS: usize = 8;

trait Named {
    fn digest(&self) -> &Digest;
}

impl Named for Digest {
    fn digest(&self) -> &Digest {
        self
    }
}

impl Named for (Digest, u64) {
    fn digest(&self) -> &Digest {
        &self.0
    }
}

/// Deletes `items` with `delete`, a batch at a time under the sweep lock — commits wait one
/// batch at most — skipping what commits touched since the collection began, in parallel
/// threads. Returns, per item, whether it was deleted.
fn sweep<T: Named + Sync>(
    store: &Store,
    items: &[T],
    delete: impl Fn(&T) -> bool + Sync,
) -> Vec<bool> {
    let mut out = Vec::with_capacity(items.len());
    for batch in items.chunks(BATCH) {
        let _sweep = store.sweep_guard();
        let touched = store.touched();
        let per = batch.len().div_ceil(THREADS).max(1);
        let results: Vec<Vec<bool>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .chunks(per)
                .map(|part| {
                    let (touched, delete) = (&touched, &delete);
                    scope.spawn(move || {
                        part.iter()
                            .map(|i| !touched.contains(i.digest()) && delete(i))
                            .collect::<Vec<bool>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        out.extend(results.into_iter().flatten());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Algorithm;
    use crate::driver::InMemoryDriver;
    use std::sync::Arc;

    fn manifest_of(blobs: &[&Digest]) -> Vec<u8> {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": manifest::OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blobs[0].to_string(), "size": 1},
            "layers": blobs[1..].iter().map(|b| serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": b.to_string(), "size": 1})).collect::<Vec<_>>(),
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn keeps_tagged_content_and_collects_the_rest() {
        let store = Store::new(Arc::new(InMemoryDriver::new()));
        let blob = |s: &[u8]| {
            let d = Digest::of(Algorithm::Sha256, s);
            store.put_blob_bytes(&d, s).unwrap();
            store.link_blob("r", &d).unwrap();
            d
        };
        let (c, l1, l2) = (blob(b"config"), blob(b"layer1"), blob(b"layer2"));
        store
            .put_manifest(
                "r",
                "v1",
                Some(manifest::OCI_MANIFEST),
                &manifest_of(&[&c, &l1]),
            )
            .unwrap();
        let (old_m, _) = store
            .put_manifest(
                "r",
                "v2",
                Some(manifest::OCI_MANIFEST),
                &manifest_of(&[&c, &l2]),
            )
            .unwrap();
        store.delete_manifest("r", "v2").unwrap(); // untag only
        // Grace 0: everything unreferenced is collected.
        let report = collect(
            &store,
            &GcConfig {
                interval_secs: None,
                grace_secs: 0,
            },
        )
        .unwrap();
        assert_eq!(report.manifests_deleted, 1, "{report:?}");
        assert!(store.get_manifest("r", &old_m.to_string()).is_err());
        assert!(store.blob_size("r", &l2).is_err(), "layer2 went with it");
        assert!(store.blob_size_anywhere(&l2).is_none());
        assert!(store.blob_size("r", &l1).is_ok());
        assert!(store.get_manifest("r", "v1").is_ok());
        // A long grace keeps everything young.
        let x = blob(b"fresh upload");
        let report = collect(&store, &GcConfig::default()).unwrap();
        assert_eq!(report.blobs_deleted, 0);
        assert!(store.blob_size("r", &x).is_ok());
    }

    /// Pushes race collections with no grace at all: a blob can be collected between its
    /// upload and its manifest (the push is then refused and retried), but no tag ever names
    /// a manifest whose blobs are gone.
    #[test]
    fn concurrent_pushes_never_leave_a_tag_with_missing_blobs() {
        let store = Arc::new(Store::new(Arc::new(InMemoryDriver::new())));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let gc = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut runs = 0;
                let config = GcConfig {
                    interval_secs: None,
                    grace_secs: 0,
                };
                while !done.load(std::sync::atomic::Ordering::SeqCst) {
                    collect(&store, &config).unwrap();
                    runs += 1;
                }
                runs
            })
        };
        let mut refused = 0;
        for i in 0..300u32 {
            loop {
                let blobs: Vec<Digest> = (0..3)
                    .map(|j| {
                        let bytes = format!("blob {i} {j}").into_bytes();
                        let d = Digest::of(Algorithm::Sha256, &bytes);
                        let _commit = store.commit_guard();
                        store.put_blob_bytes(&d, &bytes).unwrap();
                        store.link_blob("race", &d).unwrap();
                        d
                    })
                    .collect();
                let refs: Vec<&Digest> = blobs.iter().collect();
                match store.put_manifest(
                    "race",
                    &format!("t{i}"),
                    Some(manifest::OCI_MANIFEST),
                    &manifest_of(&refs),
                ) {
                    Ok(_) => break,
                    Err(crate::error::RegistryError::ManifestBlobUnknown { .. }) => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        let runs = gc.join().unwrap();
        assert!(runs > 0);
        for tag in store.tags("race").unwrap() {
            let m = store.get_manifest("race", &tag).unwrap();
            let parsed = manifest::parse(&m.bytes, Some(&m.media_type)).unwrap();
            for b in parsed.blobs {
                assert!(
                    store.blob_size("race", &b).is_ok(),
                    "tag {tag} names missing blob {b} ({runs} collections, {refused} pushes refused)"
                );
            }
        }
    }
}
