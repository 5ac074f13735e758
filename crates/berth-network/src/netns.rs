//! Named network namespaces: a namespace kept alive by a bind mount of its nsfs file at a path
//! (Berth uses `<exec-root>/netns/<container-id>`), so it outlives the process that made it and
//! a runtime can join it by path.

use std::path::Path;

use crate::Result;

/// Creates a new network namespace bind-mounted at `path` (parent directories are created),
/// with `lo` up. Fails if `path` already holds a namespace.
pub fn create(path: &Path) -> Result<()> {
    let _ = path;
    unimplemented!()
}

/// Unmounts (lazily, so open handles do not block it) and unlinks the namespace at `path`.
/// Ok if nothing is there.
pub fn remove(path: &Path) -> Result<()> {
    let _ = path;
    unimplemented!()
}

/// Runs `f` on a fresh thread that entered the namespace at `path`; returns its result.
/// The caller's thread never changes namespace. Sockets made by `f` stay in that namespace.
pub fn run_in<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let _ = (path, f);
    unimplemented!()
}
