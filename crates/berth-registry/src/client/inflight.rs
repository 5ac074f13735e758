//! Blob downloads in progress, process-wide: two pulls that need the same blob (the same image
//! pulled twice at once, or images sharing layers) download it once. The first to claim a blob
//! downloads it; the others wait for it to finish and then find it stored (or, if it failed,
//! one of them claims it in turn).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, OnceLock};

use berth_image::Digest;

/// (data root, blob digest) of the downloads running now.
struct Flights {
    running: Mutex<HashSet<(PathBuf, Digest)>>,
    done: Condvar,
}

fn flights() -> &'static Flights {
    static FLIGHTS: OnceLock<Flights> = OnceLock::new();
    FLIGHTS.get_or_init(|| Flights {
        running: Mutex::new(HashSet::new()),
        done: Condvar::new(),
    })
}

/// The right to download a blob; dropping it lets the waiters go.
pub(crate) struct Claim {
    key: (PathBuf, Digest),
}

impl Drop for Claim {
    fn drop(&mut self) {
        let f = flights();
        f.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
        f.done.notify_all();
    }
}

/// Claims the download of `digest` into the store at `root`. When another pull is downloading
/// it, `waiting` is called once and this blocks until that download ends; `None` is returned
/// then (the caller looks whether the blob is stored now, and claims again if not).
pub(crate) fn claim(root: &Path, digest: &Digest, waiting: &mut dyn FnMut()) -> Option<Claim> {
    let f = flights();
    let key = (root.to_path_buf(), digest.clone());
    let mut running = f.running.lock().unwrap_or_else(|e| e.into_inner());
    if running.insert(key.clone()) {
        return Some(Claim { key });
    }
    waiting();
    while running.contains(&key) {
        running = f.done.wait(running).unwrap_or_else(|e| e.into_inner());
    }
    None
}

/// Whether a blob (by hex digest) is being downloaded into the store at `root`.
pub(crate) fn is_running(root: &Path, hex: &str) -> bool {
    let f = flights();
    let running = f.running.lock().unwrap_or_else(|e| e.into_inner());
    running.iter().any(|(r, d)| r == root && d.hex() == hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_waits_for_the_first() {
        let root = Path::new("/nonexistent/inflight-test");
        let digest = Digest::of_bytes(b"blob");
        let first = claim(root, &digest, &mut || panic!("first claim waits")).unwrap();
        assert!(is_running(root, digest.hex()));
        let waited = std::thread::scope(|s| {
            let h = s.spawn(|| {
                let mut waited = false;
                let c = claim(root, &digest, &mut || waited = true);
                (waited, c.is_none())
            });
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(first);
            h.join().unwrap()
        });
        assert_eq!(waited, (true, true));
        assert!(!is_running(root, digest.hex()));
        assert!(claim(root, &digest, &mut || {}).is_some());
    }
}
