//! Which cgroup hierarchy the host has, decided in one place. Everything that must know
//! (spec generation, `info`, create-time defaults, stats, update, pause, top, cleanup) asks
//! [`CgroupVersion::host`], or [`CgroupVersion::of`] for a fixture root in tests, so no two
//! callers can disagree about one host.

use std::path::Path;
use std::sync::OnceLock;

/// Where the cgroup hierarchies are mounted.
pub const ROOT: &str = "/sys/fs/cgroup";

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
}
