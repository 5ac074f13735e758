//! The on-disk area of partial downloads: `<dir>/<hex of the blob digest>` holds the first
//! bytes of a blob as they arrived (written by `Ingest::write_layer_resumable`, which renames
//! the file into the content store once the blob verifies). A pull that fails on the network (or a daemon killed
//! mid-pull) leaves it there, and the next pull of that blob starts from it with an HTTP
//! `Range` request instead of from byte 0. Entries nobody touched for [`MAX_AGE`] are removed
//! (at daemon start and before each pull), so an abandoned download does not stay forever.
//!
//! One writer per blob at a time: pulls in this process share a blob's download (see
//! `inflight`), and the data-root lock keeps other daemons out.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_image::Digest;

/// How long an untouched partial download is kept for a later resume.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// A blob's partial download.
pub(crate) struct Partial {
    path: PathBuf,
    /// Bytes of the blob the file holds.
    len: u64,
}

impl Partial {
    /// Opens (creating) the partial download of `digest` under `dir`. A file longer than the
    /// blob (`size`) cannot be a prefix of it and is started over.
    pub(crate) fn open(dir: &Path, digest: &Digest, size: u64) -> io::Result<Partial> {
        fs::create_dir_all(dir)?;
        let path = dir.join(digest.hex());
        let len = match fs::metadata(&path) {
            Ok(m) if m.len() <= size => m.len(),
            // Longer than the blob: not a prefix of it (the writer truncates it).
            Ok(_) => 0,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(Partial { path, len })
    }

    /// The file the download is written to.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes already downloaded.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// A reader of the bytes downloaded so far (to feed them again to the unpack).
    pub(crate) fn prefix(&self) -> io::Result<io::Take<File>> {
        Ok(io::Read::take(File::open(&self.path)?, self.len))
    }

    /// Forgets the download (it completed, or its bytes are wrong).
    pub(crate) fn remove(&self) {
        if let Err(e) = fs::remove_file(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove a partial download");
        }
    }
}

/// Removes the partial downloads under `dir` untouched for longer than `max_age`, except those
/// being downloaded now (`busy`). Returns how many were removed.
pub fn sweep(dir: &Path, max_age: Duration, busy: &dyn Fn(&str) -> bool) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if busy(&name) {
            continue;
        }
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .unwrap_or_default();
        if age > max_age {
            let path = entry.path();
            let gone = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            match gone {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot remove a stale partial download")
                }
            }
        }
    }
    if removed > 0 {
        tracing::info!(dir = %dir.display(), removed, "removed stale partial downloads");
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_download_persists_and_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let digest = Digest::of_bytes(b"whole blob");
        let p = Partial::open(dir.path(), &digest, 10).unwrap();
        assert_eq!(p.len(), 0);
        fs::write(p.path(), b"whole").unwrap();
        let p = Partial::open(dir.path(), &digest, 10).unwrap();
        assert_eq!(p.len(), 5);
        let mut prefix = String::new();
        io::Read::read_to_string(&mut p.prefix().unwrap(), &mut prefix).unwrap();
        assert_eq!(prefix, "whole");
        // Longer than the blob: not a prefix of it.
        let p = Partial::open(dir.path(), &digest, 3).unwrap();
        assert_eq!(p.len(), 0);
        p.remove();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn sweep_removes_only_old_idle_entries() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("old"), b"x").unwrap();
        fs::write(dir.path().join("busy"), b"x").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fs::write(dir.path().join("new"), b"x").unwrap();
        let removed = sweep(dir.path(), Duration::from_millis(10), &|n| n == "busy");
        assert_eq!(removed, 1);
        assert!(dir.path().join("new").exists());
        assert!(dir.path().join("busy").exists());
        assert!(!dir.path().join("old").exists());
    }
}
