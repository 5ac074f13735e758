//! The host's cgroups in one place: which hierarchy it has, decided once (everything that
//! must know — spec generation, `info`, create-time defaults, stats, update, pause, top,
//! cleanup — asks [`CgroupVersion::host`], or [`CgroupVersion::of`] for a fixture root in
//! tests, so no two callers can disagree about one host), and the few file operations done
//! on a container's cgroup besides the runtime's own creation: its directories, its
//! processes, freezing, and removal (by the shim after an exit, by the daemon for what a dead
//! shim left).

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where the cgroup hierarchies are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

/// Whether limits cannot be set at all under `root` (`/sys/fs/cgroup`): a rootless daemon's
/// read-only cgroup2 (no delegation), or a v1 layout without its memory hierarchy. dockerd
/// discards limits then, with its sysinfo warnings; the container starts without them.
pub fn limits_unavailable(root: &Path) -> bool {
    if root.join("cgroup.controllers").exists() {
        rustix::fs::statvfs(root)
            .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
    } else {
        !root.join("memory").exists()
    }
}

/// On cgroup v2, the controllers a container's cgroup can get under `root`: those its root
/// lists in `cgroup.controllers` (the host's root: all; a rootless daemon's cgroup namespace:
/// what the host delegated to the user). `None` on v1, or where no limit can be set at all.
/// dockerd's sysinfo reads the same file, and discards the limits of a missing controller.
pub fn v2_controllers(root: &Path) -> Option<Vec<String>> {
    if !CgroupVersion::of(root).is_v2() || limits_unavailable(root) {
        return None;
    }
    let text = std::fs::read_to_string(root.join("cgroup.controllers")).ok()?;
    Some(text.split_whitespace().map(str::to_string).collect())
}

/// Whether a container's cgroup can have `controller` under `root` (always on v1 with its
/// memory hierarchy; never without cgroups).
pub fn controller_available(root: &Path, controller: &str) -> bool {
    if limits_unavailable(root) {
        return false;
    }
    v2_controllers(root).is_none_or(|c| c.iter().any(|n| n == controller))
}

/// The cgroup layout of a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    /// One hierarchy per controller (`/sys/fs/cgroup/<controller>/...`), the hybrid layout
    /// included: its `unified` mount carries no controllers.
    V1,
    /// The unified hierarchy mounted at the root itself.
    V2,
}

impl CgroupVersion {
    /// The layout under `root`: v2 when `root` is a unified hierarchy (it has
    /// `cgroup.controllers`, which only cgroup2 has), v1 otherwise. The same test as runc's
    /// and libcontainer's (`statfs` magic aside), and the one that does not depend on which
    /// v1 controllers happen to be mounted.
    pub fn of(root: &Path) -> CgroupVersion {
        if root.join("cgroup.controllers").exists() {
            CgroupVersion::V2
        } else {
            CgroupVersion::V1
        }
    }

    /// The host's layout, probed once per process (a host does not switch hierarchies while
    /// running).
    pub fn host() -> CgroupVersion {
        static HOST: OnceLock<CgroupVersion> = OnceLock::new();
        *HOST.get_or_init(|| CgroupVersion::of(Path::new(ROOT)))
    }

    pub fn is_v2(self) -> bool {
        self == CgroupVersion::V2
    }

    pub fn is_v1(self) -> bool {
        self == CgroupVersion::V1
    }

    /// Docker's `CgroupVersion` in `/info`: `"1"` or `"2"`.
    pub fn as_docker_str(self) -> &'static str {
        match self {
            CgroupVersion::V1 => "1",
            CgroupVersion::V2 => "2",
        }
    }
}

/// A container's cgroup under a hierarchy root: the host's ([`Cgroup::host`]) or a fixture's.
#[derive(Clone, Debug)]
pub struct Cgroup {
    root: PathBuf,
    version: CgroupVersion,
    /// Relative to each hierarchy's root; never empty (see [`Cgroup::at`]).
    rel: PathBuf,
}

impl Cgroup {
    /// The cgroup `path` (a spec's `cgroupsPath`) on this host.
    pub fn host(path: &str) -> Option<Cgroup> {
        Cgroup::at(Path::new(ROOT), CgroupVersion::host(), path)
    }

    /// The cgroup `path` under `root`. `None` for what is not a cgroupfs path of a container:
    /// empty (or `/`, which would name the hierarchies' roots) or systemd's
    /// `slice:prefix:name` form. `..` never leads above the root.
    pub fn at(root: &Path, version: CgroupVersion, path: &str) -> Option<Cgroup> {
        if path.contains(':') {
            return None;
        }
        let clean = crate::spec::clean_cgroups_path(path);
        let rel = clean.trim_start_matches('/');
        if rel.is_empty() {
            return None;
        }
        Some(Cgroup {
            root: root.to_path_buf(),
            version,
            rel: PathBuf::from(rel),
        })
    }

    /// Its directories that exist: one per v1 hierarchy that has it, or the one of v2.
    pub fn dirs(&self) -> Vec<PathBuf> {
        if self.version.is_v2() {
            return vec![self.root.join(&self.rel)]
                .into_iter()
                .filter(|d| d.is_dir())
                .collect();
        }
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for e in entries.flatten() {
                let p = e.path().join(&self.rel);
                if p.is_dir() {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// The pids in it (from the first hierarchy that lists any).
    pub fn pids(&self) -> Vec<i32> {
        let mut all = Vec::new();
        for d in self.dirs() {
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

    /// Freezes (`true`) or thaws it, and waits (10 s at most) until the kernel reports it
    /// done: v1's freezer, v2's `cgroup.freeze`.
    pub fn freeze(&self, frozen: bool) -> std::io::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        if self.version.is_v1() {
            let file = self
                .root
                .join("freezer")
                .join(&self.rel)
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
        let dir = self.root.join(&self.rel);
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

    /// Removes its directories (`rmdir`: one still holding processes stays). True when none
    /// is left.
    pub fn remove(&self) -> bool {
        let mut all = true;
        for dir in self.dirs() {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(_) => all = false,
            }
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unified_hierarchy_is_told_by_cgroup_controllers() {
        let root = tempfile::tempdir().unwrap();
        // A v1 host, even one without a freezer mount, or a hybrid one with `unified`.
        std::fs::create_dir_all(root.path().join("memory")).unwrap();
        std::fs::create_dir_all(root.path().join("unified")).unwrap();
        std::fs::write(root.path().join("unified/cgroup.controllers"), "").unwrap();
        assert_eq!(CgroupVersion::of(root.path()), CgroupVersion::V1);
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory\n").unwrap();
        assert_eq!(CgroupVersion::of(root.path()), CgroupVersion::V2);
        assert_eq!(CgroupVersion::V2.as_docker_str(), "2");
    }

    fn v1_fixture() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for c in ["memory", "freezer", "pids"] {
            std::fs::create_dir_all(root.path().join(c).join("berth/abc")).unwrap();
        }
        std::fs::create_dir_all(root.path().join("cpu")).unwrap();
        root
    }

    #[test]
    fn a_cgroup_is_never_a_hierarchy_root_nor_outside_it() {
        let root = Path::new("/x");
        for bad in ["", "/", "/..", "../..", "system.slice:berth:abc"] {
            assert!(
                Cgroup::at(root, CgroupVersion::V1, bad).is_none(),
                "{bad:?}"
            );
        }
        let c = Cgroup::at(root, CgroupVersion::V1, "/../berth/./abc").unwrap();
        assert_eq!(c.rel, PathBuf::from("berth/abc"));
    }

    #[test]
    fn v1_dirs_pids_freeze_and_remove() {
        let root = v1_fixture();
        let c = Cgroup::at(root.path(), CgroupVersion::V1, "/berth/abc").unwrap();
        let names: Vec<String> = c
            .dirs()
            .iter()
            .map(|d| d.strip_prefix(root.path()).unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            ["freezer/berth/abc", "memory/berth/abc", "pids/berth/abc"]
        );
        std::fs::write(root.path().join("memory/berth/abc/cgroup.procs"), "7\n9\n").unwrap();
        assert_eq!(c.pids(), [7, 9]);
        c.freeze(true).unwrap();
        let state = root.path().join("freezer/berth/abc/freezer.state");
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "FROZEN");
        c.freeze(false).unwrap();
        assert_eq!(std::fs::read_to_string(&state).unwrap(), "THAWED");
        // A directory with something in it (a kernel cgroup with processes) stays.
        assert!(!c.remove());
        assert_eq!(c.dirs().len(), 2);
        std::fs::remove_file(root.path().join("memory/berth/abc/cgroup.procs")).unwrap();
        std::fs::remove_file(&state).unwrap();
        assert!(c.remove());
        assert!(c.dirs().is_empty());
        assert!(
            root.path().join("memory/berth").is_dir(),
            "the parent stays"
        );
    }
}
