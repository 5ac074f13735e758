//! The build cache: step key → the image that step produced.
//!
//! A key is content-based (see `engine::keys`): the parent's key, the instruction after
//! substitution, the build args it uses and, for COPY/ADD, a digest of the selected files'
//! content and effective metadata. Records are small; the image they name holds the data.
//! [`CacheStore`] has an in-memory implementation (tests, `--no-cache` dry runs) and an
//! on-disk one (one JSON file per record under the data root, so records survive restarts and
//! a crash loses at most the record being written); both pass [`suite::run_all`].
//!
//! Eviction is decided by pure functions over the records ([`select_prune`]): least recently
//! used first until the kept size fits the budget, as BuildKit's `keep-storage`.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// One cached step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheRecord {
    /// The step's key (hex sha256).
    pub key: String,
    /// The image the step produced (`sha256:...`).
    pub image: String,
    /// The step's parent image, to tell which records chain on which.
    #[serde(default)]
    pub parent: Option<String>,
    /// What the step was (`RUN echo hi`), shown by `docker system df -v`.
    pub description: String,
    /// `regular` (RUN and metadata), `source.local` (COPY/ADD from the context).
    pub kind: String,
    /// Bytes the step's layer holds (0 for metadata steps).
    pub size: u64,
    /// Unix seconds.
    pub created: i64,
    pub last_used: i64,
    pub usage_count: u64,
}

/// Storage for [`CacheRecord`]s.
pub trait CacheStore: Send + Sync {
    fn get(&self, key: &str) -> io::Result<Option<CacheRecord>>;
    /// Inserts or replaces the record of `record.key`.
    fn put(&self, record: &CacheRecord) -> io::Result<()>;
    fn remove(&self, key: &str) -> io::Result<Option<CacheRecord>>;
    fn list(&self) -> io::Result<Vec<CacheRecord>>;

    /// Marks a record used now (a cache hit).
    fn touch(&self, key: &str, now: i64) -> io::Result<()> {
        if let Some(mut r) = self.get(key)? {
            r.last_used = now;
            r.usage_count += 1;
            self.put(&r)?;
        }
        Ok(())
    }
}

/// Records in memory.
#[derive(Debug, Default)]
pub struct MemoryCache {
    records: Mutex<HashMap<String, CacheRecord>>,
}

impl MemoryCache {
    pub fn new() -> Self {
        Self::default()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl CacheStore for MemoryCache {
    fn get(&self, key: &str) -> io::Result<Option<CacheRecord>> {
        Ok(lock(&self.records).get(key).cloned())
    }
    fn put(&self, record: &CacheRecord) -> io::Result<()> {
        lock(&self.records).insert(record.key.clone(), record.clone());
        Ok(())
    }
    fn remove(&self, key: &str) -> io::Result<Option<CacheRecord>> {
        Ok(lock(&self.records).remove(key))
    }
    fn list(&self) -> io::Result<Vec<CacheRecord>> {
        Ok(lock(&self.records).values().cloned().collect())
    }
}

/// Records as `<dir>/<key>.json`, written temp file + rename so a crash never leaves a torn
/// record; unreadable files are skipped (and removed) rather than failing every build.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    /// Serialises read-modify-write (`touch`) between concurrent builds.
    write: Mutex<()>,
}

impl DiskCache {
    pub fn open(dir: &Path) -> io::Result<DiskCache> {
        fs::create_dir_all(dir)?;
        // Temp files of writes a crash interrupted.
        for entry in fs::read_dir(dir)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(DiskCache {
            dir: dir.to_path_buf(),
            write: Mutex::new(()),
        })
    }

    fn path(&self, key: &str) -> io::Result<PathBuf> {
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid cache key {key:?}"),
            ));
        }
        Ok(self.dir.join(format!("{key}.json")))
    }

    fn read(path: &Path) -> io::Result<Option<CacheRecord>> {
        match fs::read(path) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(r) => Ok(Some(r)),
                Err(_) => {
                    let _ = fs::remove_file(path);
                    Ok(None)
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl CacheStore for DiskCache {
    fn get(&self, key: &str) -> io::Result<Option<CacheRecord>> {
        Self::read(&self.path(key)?)
    }

    fn put(&self, record: &CacheRecord) -> io::Result<()> {
        let path = self.path(&record.key)?;
        let _w = lock(&self.write);
        let tmp = self.dir.join(format!(".tmp-{}", record.key));
        fs::write(&tmp, serde_json::to_vec(record).map_err(io::Error::other)?)?;
        fs::rename(&tmp, &path)
    }

    fn remove(&self, key: &str) -> io::Result<Option<CacheRecord>> {
        let path = self.path(key)?;
        let _w = lock(&self.write);
        let old = Self::read(&path)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(old),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<CacheRecord>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some(r) = Self::read(&entry.path())? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn touch(&self, key: &str, now: i64) -> io::Result<()> {
        let path = self.path(key)?;
        let _w = lock(&self.write);
        if let Some(mut r) = Self::read(&path)? {
            r.last_used = now;
            r.usage_count += 1;
            let tmp = self.dir.join(format!(".tmp-{key}"));
            fs::write(&tmp, serde_json::to_vec(&r).map_err(io::Error::other)?)?;
            fs::rename(&tmp, &path)?;
        }
        Ok(())
    }
}

/// What `/build/prune` (or the budget) asks to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneOptions {
    /// Remove every record (else only those no longer reused... here: all the filters select).
    pub all: bool,
    /// Only records last used before this (unix seconds), from `until`.
    pub until: Option<i64>,
    /// Only these keys (prefixes), from the `id` filter.
    pub ids: Vec<String>,
    /// Only these kinds, from the `type` filter.
    pub kinds: Vec<String>,
    /// Keep the most recently used records up to this many bytes.
    pub keep_storage: Option<u64>,
}

/// The records to remove for `opts`: those the filters select, least recently used first; with
/// `keep_storage`, only as many as needed to bring the total down to it.
pub fn select_prune(records: &[CacheRecord], opts: &PruneOptions) -> Vec<String> {
    let selected = |r: &CacheRecord| {
        opts.until.is_none_or(|t| r.last_used < t)
            && (opts.ids.is_empty() || opts.ids.iter().any(|p| r.key.starts_with(p.as_str())))
            && (opts.kinds.is_empty() || opts.kinds.contains(&r.kind))
    };
    let mut candidates: Vec<&CacheRecord> = records.iter().filter(|r| selected(r)).collect();
    candidates.sort_by_key(|r| (r.last_used, r.created));
    let Some(keep) = opts.keep_storage else {
        return candidates.into_iter().map(|r| r.key.clone()).collect();
    };
    let mut total: u64 = records.iter().map(|r| r.size).sum();
    let mut out = Vec::new();
    for r in candidates {
        if total <= keep {
            break;
        }
        total = total.saturating_sub(r.size);
        out.push(r.key.clone());
    }
    out
}

/// The shared test suite every [`CacheStore`] passes.
#[cfg(any(test, feature = "testutil"))]
pub mod suite {
    use super::*;

    pub fn record(key: &str, used: i64, size: u64) -> CacheRecord {
        CacheRecord {
            key: key.into(),
            image: format!("sha256:{key}"),
            parent: None,
            description: format!("RUN {key}"),
            kind: "regular".into(),
            size,
            created: used,
            last_used: used,
            usage_count: 0,
        }
    }

    pub fn run_all(store: &dyn CacheStore) {
        get_put_remove(store);
        touch_updates_use(store);
        list_sees_all(store);
    }

    fn get_put_remove(s: &dyn CacheStore) {
        assert_eq!(s.get("aa").unwrap(), None);
        s.put(&record("aa", 1, 10)).unwrap();
        assert_eq!(s.get("aa").unwrap().unwrap().image, "sha256:aa");
        let mut replaced = record("aa", 1, 10);
        replaced.image = "sha256:bb".into();
        s.put(&replaced).unwrap();
        assert_eq!(s.get("aa").unwrap().unwrap().image, "sha256:bb");
        assert_eq!(s.remove("aa").unwrap().unwrap().image, "sha256:bb");
        assert_eq!(s.remove("aa").unwrap(), None);
        assert_eq!(s.get("aa").unwrap(), None);
    }

    fn touch_updates_use(s: &dyn CacheStore) {
        s.put(&record("cc", 5, 1)).unwrap();
        s.touch("cc", 9).unwrap();
        let r = s.get("cc").unwrap().unwrap();
        assert_eq!((r.last_used, r.usage_count, r.created), (9, 1, 5));
        // Touching a missing record is not an error (it was pruned meanwhile).
        s.touch("dd", 9).unwrap();
        assert_eq!(s.get("dd").unwrap(), None);
        s.remove("cc").unwrap();
    }

    fn list_sees_all(s: &dyn CacheStore) {
        for k in ["k1", "k2", "k3"] {
            s.put(&record(k, 1, 1)).unwrap();
        }
        let mut keys: Vec<String> = s.list().unwrap().into_iter().map(|r| r.key).collect();
        keys.sort();
        assert_eq!(keys, ["k1", "k2", "k3"]);
        for k in ["k1", "k2", "k3"] {
            s.remove(k).unwrap();
        }
        assert!(s.list().unwrap().is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::suite::record;
    use super::*;

    #[test]
    fn memory_store_passes_the_suite() {
        suite::run_all(&MemoryCache::new());
    }

    #[test]
    fn disk_store_passes_the_suite_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        suite::run_all(&DiskCache::open(dir.path()).unwrap());
        DiskCache::open(dir.path())
            .unwrap()
            .put(&record("ee", 3, 4))
            .unwrap();
        fs::write(dir.path().join("bad.json"), b"{").unwrap();
        let reopened = DiskCache::open(dir.path()).unwrap();
        assert_eq!(reopened.get("ee").unwrap().unwrap().size, 4);
        assert_eq!(reopened.list().unwrap().len(), 1);
        assert!(reopened.get("../x").is_err());
    }

    #[test]
    fn prune_selects_lru_down_to_the_budget() {
        let records = vec![
            record("old", 1, 100),
            record("mid", 2, 100),
            record("new", 3, 100),
        ];
        let all = select_prune(&records, &PruneOptions::default());
        assert_eq!(all, ["old", "mid", "new"]);
        let keep = PruneOptions {
            keep_storage: Some(150),
            ..Default::default()
        };
        assert_eq!(select_prune(&records, &keep), ["old", "mid"]);
        let until = PruneOptions {
            until: Some(3),
            ..Default::default()
        };
        assert_eq!(select_prune(&records, &until), ["old", "mid"]);
        let ids = PruneOptions {
            ids: vec!["ne".into()],
            ..Default::default()
        };
        assert_eq!(select_prune(&records, &ids), ["new"]);
    }
}
