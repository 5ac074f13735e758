//! cgroup v2 delegation for the rootless daemon: when the cgroup the user started berthd in
//! is the user's to manage (systemd's `Delegate=yes` chowns a unit's cgroup directory and its
//! `cgroup.procs`, `cgroup.threads` and `cgroup.subtree_control` to the user), the daemon uses
//! it, as rootlesskit's `--evacuate-cgroup2` does.
//!
//! The parent does it, in the host's namespaces, after the child created its cgroup namespace
//! (rooted at that same cgroup, which the child then mounts writable on `/sys/fs/cgroup`):
//! every process of the cgroup moves into the leaf `berthd` (cgroup v2 lets a non-root cgroup
//! enable controllers for its children only while it holds no process), and the controllers
//! the cgroup has are enabled in its `cgroup.subtree_control`. Containers then get cgroups
//! under it (`<cgroup>/berth/<id>`, made by the runtime), so their limits apply.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use berth_runtime::cgroups::{CgroupVersion, ROOT};

/// The leaf the daemon's own processes move into.
pub const LEAF: &str = "berthd";

/// What [`delegate`] did.
#[derive(Debug)]
pub struct Delegated {
    /// The delegated cgroup on the host (`/sys/fs/cgroup/...`).
    pub dir: PathBuf,
    /// The controllers now enabled for its children.
    pub controllers: Vec<String>,
}

/// This process's cgroup v2 path (`0::/path` in `/proc/self/cgroup`).
fn own_cgroup() -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("0::"))
        .map(str::to_string)
}

fn writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// Uses the cgroup this process is in when it is delegated to the user. `Err` says why not
/// (the daemon then runs without cgroups, as on a v1 host).
pub fn delegate() -> Result<Delegated, String> {
    let root = Path::new(ROOT);
    if !CgroupVersion::of(root).is_v2() {
        return Err("the host's cgroups are v1 (no delegation to users)".into());
    }
    let own = own_cgroup().ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
    let dir = root.join(own.trim_start_matches('/'));
    if own == "/" {
        return Err("the daemon runs in the root cgroup".into());
    }
    for file in ["cgroup.procs", "cgroup.subtree_control"] {
        if !writable(&dir.join(file)) {
            return Err(format!(
                "{} is not writable by the user (no delegation: run berthd in a systemd unit with Delegate=yes)",
                dir.join(file).display()
            ));
        }
    }
    if !writable(&dir) {
        return Err(format!("cannot create cgroups in {}", dir.display()));
    }
    let leaf = dir.join(LEAF);
    match std::fs::create_dir(&leaf) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("mkdir {}: {e}", leaf.display())),
    }
    evacuate(&dir, &leaf)?;
    let available = std::fs::read_to_string(dir.join("cgroup.controllers"))
        .map_err(|e| format!("reading {}/cgroup.controllers: {e}", dir.display()))?;
    let mut controllers = Vec::new();
    for c in available.split_whitespace() {
        match std::fs::write(dir.join("cgroup.subtree_control"), format!("+{c}")) {
            Ok(()) => controllers.push(c.to_string()),
            Err(e) => {
                tracing::warn!(controller = c, error = %e, "rootless: cannot enable a delegated controller")
            }
        }
    }
    Ok(Delegated { dir, controllers })
}

/// Moves every process of `dir` into `leaf` (a few rounds: processes may fork meanwhile).
fn evacuate(dir: &Path, leaf: &Path) -> Result<(), String> {
    for _ in 0..10 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs"))
            .map_err(|e| format!("reading {}/cgroup.procs: {e}", dir.display()))?;
        let pids: Vec<&str> = procs.split_whitespace().collect();
        if pids.is_empty() {
            return Ok(());
        }
        for pid in pids {
            match std::fs::write(leaf.join("cgroup.procs"), pid) {
                Ok(()) => {}
                // Exited meanwhile.
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32) => {}
                Err(e) => {
                    return Err(format!("moving process {pid} into {}: {e}", leaf.display()));
                }
            }
        }
    }
    Err(format!("{} keeps getting new processes", dir.display()))
}
