//! The few cgroup file operations the daemon does itself: listing a container's processes
//! (`top`), freezing it (`pause`), and removing leftover directories at removal. The runtime
//! creates and deletes the cgroups; these only read or write existing files.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_runtime::cgroups::{CgroupVersion, ROOT};

fn is_v1() -> bool {
    CgroupVersion::host().is_v1()
}

/// The directories a cgroup path has across the mounted hierarchies.
pub fn dirs(cgroup_path: &str) -> Vec<PathBuf> {
    let clean = berth_runtime::spec::clean_cgroups_path(cgroup_path);
    let rel = clean.trim_start_matches('/');
    if CgroupVersion::host().is_v2() {
        return vec![Path::new(ROOT).join(rel)];
    }
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(ROOT) {
        for e in entries.flatten() {
            let p = e.path().join(rel);
            if p.is_dir() {
                out.push(p);
            }
        }
    }
    out
}

/// The pids in a container's cgroup.
pub fn pids(cgroup_path: &str) -> Vec<i32> {
    let mut all = Vec::new();
    for d in dirs(cgroup_path) {
        if let Ok(text) = std::fs::read_to_string(d.join("cgroup.procs")) {
            for p in text.lines().filter_map(|l| l.trim().parse().ok()) {
                if !all.contains(&p) {
                    all.push(p);
                }
            }
            if !all.is_empty() {
                break;
            }
        }
    }
    all
}

/// Freezes (`true`) or thaws a container's cgroup and waits until the kernel reports it done.
pub fn freeze(cgroup_path: &str, frozen: bool) -> std::io::Result<()> {
    let clean = berth_runtime::spec::clean_cgroups_path(cgroup_path);
    let rel = clean.trim_start_matches('/');
    let deadline = Instant::now() + Duration::from_secs(10);
    if is_v1() {
        let file = Path::new(ROOT)
            .join("freezer")
            .join(rel)
            .join("freezer.state");
        let want = if frozen { "FROZEN" } else { "THAWED" };
        loop {
            std::fs::write(&file, want)?;
            let now = std::fs::read_to_string(&file)?;
            if now.trim() == want {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other(format!(
                    "{} stayed {}",
                    file.display(),
                    now.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let dir = Path::new(ROOT).join(rel);
    std::fs::write(dir.join("cgroup.freeze"), if frozen { "1" } else { "0" })?;
    loop {
        let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap_or_default();
        let state = events
            .lines()
            .find_map(|l| l.strip_prefix("frozen "))
            .unwrap_or("")
            .trim()
            .to_string();
        if state == if frozen { "1" } else { "0" } {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(std::io::Error::other(format!(
                "{} still reports frozen {state:?}",
                dir.join("cgroup.events").display()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
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
    for d in dirs(cgroup_path) {
        let _ = std::fs::remove_dir(&d);
    }
}
