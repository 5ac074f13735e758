//! A reserve of space in the data root, so that a full disk does not lock the operator out.
//!
//! ext4 keeps blocks for root, which is how dockerd still manages to record what `rm`, `rmi`
//! and the prunes did on a "full" disk; a tmpfs, XFS, or a disk filled by root has no such
//! reserve. Yet even the operations that free space write a little first (a new
//! `repositories.json` after an untag, a record replaced through a temp file). So berthd
//! keeps its own: a 1 MiB file made at start when there is room, deleted right before a
//! request that frees space when the data root is full, and made again afterwards once
//! there is room to spare. Nothing else is written for it.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

use crate::state::AppState;

/// The reserve file, directly in the data root.
pub const RESERVE_FILE: &str = "space-reserve";
const SIZE: u64 = 1 << 20;

fn path(root: &Path) -> PathBuf {
    root.join(RESERVE_FILE)
}

/// Bytes an unprivileged writer could still get on the data root's filesystem.
fn available(root: &Path) -> Option<u64> {
    let st = rustix::fs::statvfs(root).ok()?;
    Some(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Makes the reserve when it is missing (or short) and the filesystem has room to spare;
/// best effort: a reserve that cannot be made is made later.
pub fn ensure(root: &Path) {
    let p = path(root);
    if std::fs::metadata(&p).is_ok_and(|m| m.len() >= SIZE) {
        return;
    }
    if available(root).is_none_or(|a| a < 2 * SIZE) {
        return;
    }
    let made = std::fs::File::create(&p).and_then(|mut f| {
        // Written, not sized: a sparse file reserves nothing.
        f.write_all(&vec![0_u8; SIZE as usize])?;
        f.sync_all()
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&p);
        tracing::debug!(path = %p.display(), error = %e, "cannot make the space reserve");
    }
}

/// Deletes the reserve when the data root is (nearly) full; whether it did.
pub fn release_if_full(root: &Path) -> bool {
    if available(root).is_some_and(|a| a >= SIZE / 2) {
        return false;
    }
    match std::fs::remove_file(path(root)) {
        Ok(()) => {
            tracing::warn!(root = %root.display(), "the data root is full: releasing the space reserve for a request that frees space");
            true
        }
        Err(_) => false,
    }
}

/// Requests that free space but must write first: image removals and prunes rewrite the
/// references. Removing containers, volumes and networks only renames and deletes, which
/// needs no space, so they leave the reserve for these.
fn frees_space(method: &Method, path: &str) -> bool {
    (*method == Method::DELETE && path.starts_with("/images/"))
        || (*method == Method::POST && matches!(path, "/images/prune" | "/build/prune"))
}

/// Middleware around the routes (paths without their version prefix).
pub async fn around_freeing(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if !frees_space(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let root = state.config.data_root.clone();
    let released = release_if_full(&root);
    let response = next.run(req).await;
    if released {
        let _ = tokio::task::spawn_blocking(move || ensure(&root)).await;
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removals_and_prunes_free_space() {
        assert!(frees_space(&Method::DELETE, "/images/busybox:latest"));
        assert!(frees_space(&Method::POST, "/images/prune"));
        assert!(!frees_space(&Method::DELETE, "/containers/x"));
        assert!(!frees_space(&Method::POST, "/containers/create"));
        assert!(!frees_space(&Method::GET, "/images/prune"));
    }

    #[test]
    fn the_reserve_is_made_once_and_released_only_when_full() {
        let dir = tempfile::tempdir().unwrap();
        ensure(dir.path());
        let p = path(dir.path());
        // The test machine's temp directory is not full.
        if available(dir.path()).is_some_and(|a| a > 2 * SIZE) {
            assert_eq!(std::fs::metadata(&p).unwrap().len(), SIZE);
            assert!(!release_if_full(dir.path()));
            assert!(p.exists());
        }
    }
}
