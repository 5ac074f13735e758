//! Paying the kernel's cgroup-migration grace period ahead of time.
//!
//! Moving a process into a cgroup (libcontainer writes the container's pid to `cgroup.procs`)
//! takes the kernel's global `cgroup_threadgroup_rwsem` for writing. When no writer took it in
//! the last grace period, that first waits for an RCU grace period: 5–15 ms on a 250 Hz
//! kernel, the largest single wait in `run --rm` once everything else is fast. Writers that
//! come while another one waits, or within a grace period after one, pass at once.
//!
//! So when a container is about to start (at create, at start, at exec) the daemon asks
//! [`prewarm`] for a no-op migration, on a thread of its own: it writes its own pid to the
//! `cgroup.procs` of the cgroup it already is in. That waits out the grace period in parallel
//! with writing the bundle and starting the shim, and the container's real migration a few
//! milliseconds later finds the lock's fast path open. Failures are ignored: this only saves
//! time.
//!
//! The fast path stays open about one grace period after the last writer. Container starts
//! come in bursts (a compose project, a CI job's `run`s one after another), so after each
//! request the worker keeps it open for [`KEEP_FOR`] with a no-op migration every
//! [`KEEP_EVERY`]: a start within that time pays no grace period at all. Each of those is a
//! few microseconds under the cgroup lock; while the window is open, forks and exits
//! elsewhere take the lock's slightly slower read path.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// Requests coalesce: one no-op migration keeps the fast path open for a grace period after it.
const COALESCE: Duration = Duration::from_millis(4);
/// How long after the last request the fast path is kept open...
const KEEP_FOR: Duration = Duration::from_millis(250);
/// ...with a no-op migration this often (well within a grace period: 12 ms or more at 250 Hz).
const KEEP_EVERY: Duration = Duration::from_millis(5);

static WORKER: OnceLock<Option<Sender<()>>> = OnceLock::new();

/// Start (if none is under way) a no-op cgroup migration of this process, in the background.
pub fn prewarm() {
    let worker = WORKER.get_or_init(|| {
        let path = own_cgroup_procs()?;
        let (tx, rx) = channel::<()>();
        std::thread::Builder::new()
            .name("cgroup-warmup".into())
            .spawn(move || {
                let pid = std::process::id().to_string();
                let mut last: Option<Instant> = None;
                let mut keep_until: Option<Instant> = None;
                loop {
                    let request = match keep_until {
                        Some(until) if Instant::now() < until => {
                            match rx.recv_timeout(KEEP_EVERY) {
                                Ok(()) => true,
                                Err(RecvTimeoutError::Timeout) => false,
                                Err(RecvTimeoutError::Disconnected) => return,
                            }
                        }
                        _ => match rx.recv() {
                            Ok(()) => true,
                            Err(_) => return,
                        },
                    };
                    if request {
                        // Requests that queued up while the last write waited are served by it.
                        while rx.try_recv().is_ok() {}
                        keep_until = Some(Instant::now() + KEEP_FOR);
                        if last.is_some_and(|t| t.elapsed() < COALESCE) {
                            continue;
                        }
                    }
                    if let Err(e) = std::fs::write(&path, &pid) {
                        tracing::debug!(path = %path.display(), error = %e, "cgroup warm-up write failed");
                    }
                    last = Some(Instant::now());
                }
            })
            .ok()?;
        Some(tx)
    });
    if let Some(tx) = worker {
        let _ = tx.send(());
    }
}

/// `cgroup.procs` of the cgroup this process is in, in the first cgroup hierarchy mounted
/// here (any hierarchy will do: the lock is global).
fn own_cgroup_procs() -> Option<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    for m in mounts.lines() {
        // `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS... - FSTYPE SOURCE SUPEROPTS`
        let Some((head, tail)) = m.split_once(" - ") else {
            continue;
        };
        let f: Vec<&str> = head.split(' ').collect();
        let t: Vec<&str> = tail.split(' ').collect();
        let (Some(root), Some(mountpoint), Some(fstype)) = (f.get(3), f.get(4), t.first()) else {
            continue;
        };
        let superopts = t.get(2).copied().unwrap_or("");
        // The line of /proc/self/cgroup for this hierarchy: `0::` for cgroup2, else the
        // controllers (or `name=`) of this v1 mount.
        let line = own.lines().find(|l| {
            let mut p = l.splitn(3, ':');
            let (_, ctl) = (p.next(), p.next().unwrap_or(""));
            match *fstype {
                "cgroup2" => ctl.is_empty(),
                "cgroup" => {
                    !ctl.is_empty() && ctl.split(',').all(|c| superopts.split(',').any(|o| o == c))
                }
                _ => false,
            }
        });
        let Some(path) = line.and_then(|l| l.splitn(3, ':').nth(2)) else {
            continue;
        };
        // Inside a cgroup namespace or a bind of a sub-tree, the mount shows `root`.
        let rel = path
            .strip_prefix(root)
            .unwrap_or(path)
            .trim_start_matches('/');
        let procs = PathBuf::from(mountpoint.replace("\\040", " "))
            .join(rel)
            .join("cgroup.procs");
        if procs.exists() {
            return Some(procs);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_this_process_in_its_own_cgroup() {
        let Some(procs) = own_cgroup_procs() else {
            return; // no cgroup file system mounted here
        };
        let listed = std::fs::read_to_string(&procs).unwrap();
        assert!(
            listed.lines().any(|l| l == std::process::id().to_string()),
            "{} does not list this process",
            procs.display()
        );
    }
}
