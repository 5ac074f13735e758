//! The containers that share a PID namespace a starting container joins (`--pid container:X`)
//! are frozen while its init is prepared.
//!
//! Why: the joining init is cloned into X's PID namespace before it has its own root. Until
//! the runtime's `pivot_root`, `/proc/<pid>/root` of that init is the host's root, and a
//! process in X with `CAP_SYS_PTRACE` (the capability debugging sidecars are given) can walk
//! the host's files through it. dockerd with runc has the same window (measured: a process
//! in X reached the host's root through every one of 20 `docker run --pid container:X`). The
//! peers do not run during it: each is frozen (the cgroup freezer, as `pause` does) from
//! before the init exists until its command runs, a pause of a few milliseconds, and thawed
//! after. A peer the user paused stays paused; one whose operation lock is taken (being
//! stopped, paused or removed) is left alone.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use super::{Container, Containers, Record, cgroup_of};
use crate::cgroup;
use crate::record::Status;

/// Peers frozen for a start, each with its operation lock held (nobody pauses, stops or
/// removes it meanwhile, so the thaw never undoes a user's pause); thawed when dropped,
/// also when the start panics.
struct Frozen<'a> {
    peers: Vec<(tokio::sync::MutexGuard<'a, ()>, &'a str, String)>,
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        for (_lock, id, cg) in self.peers.drain(..) {
            if let Err(e) = cgroup::freeze(&cg, false) {
                tracing::error!(%id, error = %e, "cannot thaw a container frozen while another joined its PID namespace");
            }
        }
    }
}

/// The identity of a process's PID namespace.
fn pid_namespace(pid: i64) -> Option<(u64, u64)> {
    if pid <= 0 {
        return None;
    }
    let m = std::fs::metadata(format!("/proc/{pid}/ns/pid")).ok()?;
    Some((m.dev(), m.ino()))
}

impl Containers {
    /// Runs `start` (the creation of `r`'s init up to its command) with the running
    /// containers of the PID namespace `r` joins frozen, when it joins another container's.
    pub(crate) fn with_pid_peers_frozen<T>(&self, r: &Record, start: impl FnOnce() -> T) -> T {
        let ns = r
            .pid_mode()
            .container()
            .and_then(|owner| self.get(owner).ok())
            .and_then(|o| pid_namespace(o.record().state.pid));
        let Some(ns) = ns else {
            return start();
        };
        let candidates: Vec<Arc<Container>> =
            self.all().into_iter().filter(|c| c.id != r.id).collect();
        let mut frozen = Frozen { peers: Vec::new() };
        for c in &candidates {
            // A busy peer is being stopped, paused or removed: waiting for it could take
            // seconds, and it is on its way out of the running state anyway.
            let Ok(lock) = c.op.try_lock() else {
                continue;
            };
            let rec = c.record();
            if rec.state.status != Status::Running || pid_namespace(rec.state.pid) != Some(ns) {
                continue;
            }
            let cg = cgroup_of(&rec, &c.paths);
            match cgroup::freeze(&cg, true) {
                Ok(()) => frozen.peers.push((lock, &c.id, cg)),
                Err(e) => {
                    tracing::warn!(id = %c.id, error = %e, "cannot freeze a container while another joins its PID namespace");
                    let _ = cgroup::freeze(&cg, false);
                }
            }
        }
        tracing::debug!(id = %r.id, frozen = frozen.peers.len(), "peers of the joined PID namespace frozen");
        let out = start();
        drop(frozen);
        out
    }
}
