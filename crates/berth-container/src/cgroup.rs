//! The cgroup operations the daemon does itself, by a container's cgroup path: listing its
//! processes (`top`), freezing it (`pause`), ending what a dead shim left, and removing
//! leftover directories. The layout and the file operations are `berth_runtime::cgroups`'s.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_runtime::cgroups::Cgroup;

/// The directories a cgroup path has across the mounted hierarchies.
pub fn dirs(cgroup_path: &str) -> Vec<PathBuf> {
    Cgroup::host(cgroup_path)
        .map(|c| c.dirs())
        .unwrap_or_default()
}

/// The pids in a container's cgroup.
pub fn pids(cgroup_path: &str) -> Vec<i32> {
    Cgroup::host(cgroup_path)
        .map(|c| c.pids())
        .unwrap_or_default()
}

/// Freezes (`true`) or thaws a container's cgroup and waits until the kernel reports it done.
pub fn freeze(cgroup_path: &str, frozen: bool) -> std::io::Result<()> {
    Cgroup::host(cgroup_path)
        .ok_or_else(|| std::io::Error::other(format!("not a container's cgroup: {cgroup_path:?}")))?
        .freeze(frozen)
}

/// SIGKILLs every process in a container's cgroup until it is empty (or `timeout` passed);
/// whether it ended empty. Membership of the cgroup is what identifies the container's
/// processes, so a recycled pid outside it is never signalled. For a container whose shim
/// died: nobody else is left to end it.
pub fn kill_all(cgroup_path: &str, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = pids(cgroup_path);
        if pids.is_empty() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        for p in pids {
            if let Some(pid) = rustix::process::Pid::from_raw(p) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Removes a container's cgroup directories, if the runtime left any (an empty cgroup can
/// be removed with rmdir; one still holding processes cannot, and stays).
pub fn remove(cgroup_path: &str) {
    if let Some(c) = Cgroup::host(cgroup_path) {
        c.remove();
    }
}
