//! `/sys/fs/cgroup` for a container on cgroup v1 that joins another's PID namespace
//! (`--pid container:X`).
//!
//! Why the spec carries it instead of a `cgroup` mount: libcontainer 0.7 emulates the v1
//! mount by reading its parent's cgroups at `/proc/<pid>` of the host's procfs, with its own
//! pid as the joined namespace numbers it (its parent is outside that namespace). On the
//! host, that pid is another process, or none, and then the start fails with "failed to
//! prepare rootfs" (about one start in six here). The view is the one runc gives: a tmpfs,
//! and in it the container's own cgroup of each controller hierarchy, bound read-only unless
//! the container is privileged.

use std::path::{Path, PathBuf};

use oci_spec::runtime::Mount;

/// Controllers whose hierarchies the cgroup manager makes the container's cgroup in (the
/// bind needs it to exist); others (`name=systemd`, `rdma`, ...) are not shown.
const MANAGED: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "hugetlb",
    "perf_event",
    "net_cls",
    "net_prio",
];

const ROOT: &str = "/sys/fs/cgroup";

/// The mount points of the host's v1 hierarchies of managed controllers, from the text of
/// `/proc/self/mountinfo`.
pub(crate) fn v1_hierarchies(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount_point = left.split(' ').nth(4)?;
            let mut right = right.split(' ');
            let (fstype, _source, options) = (right.next()?, right.next()?, right.next()?);
            let managed = options.split(',').any(|o| MANAGED.contains(&o));
            let under_root = Path::new(mount_point).parent() == Some(Path::new(ROOT));
            (fstype == "cgroup" && managed && under_root).then(|| PathBuf::from(mount_point))
        })
        .collect()
}

/// The mounts that make up the view: a tmpfs at `/sys/fs/cgroup`, then one bind per
/// hierarchy of the container's cgroup (`cgroups_path`) there.
pub(crate) fn v1_view(hierarchies: &[PathBuf], cgroups_path: &str, mode: &str) -> Vec<Mount> {
    let mut mounts = vec![super::mount(
        ROOT,
        "tmpfs",
        "tmpfs",
        &["nosuid", "noexec", "nodev", "mode=755"],
    )];
    let relative = cgroups_path.trim_start_matches('/');
    for h in hierarchies {
        let Some(name) = h.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let source = h.join(relative);
        mounts.push(super::mount(
            &format!("{ROOT}/{name}"),
            "bind",
            &source.to_string_lossy(),
            &["rbind", "nosuid", "noexec", "nodev", mode],
        ));
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 1 0:23 / /sys rw,nosuid - sysfs sysfs rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
34 30 0:30 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
35 30 0:31 / /sys/fs/cgroup/rdma rw,nosuid shared:14 - cgroup cgroup rw,rdma
36 1 0:32 / /mnt/elsewhere rw - cgroup cgroup rw,pids
";

    #[test]
    fn hierarchies_are_the_managed_v1_ones_under_the_cgroup_root() {
        assert_eq!(
            v1_hierarchies(MOUNTINFO),
            vec![
                PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"),
                PathBuf::from("/sys/fs/cgroup/memory")
            ]
        );
        assert!(v1_hierarchies("garbage\n\n1 2 3\n").is_empty());
    }

    #[test]
    fn the_view_binds_the_containers_own_cgroup_of_each_hierarchy() {
        let h = v1_hierarchies(MOUNTINFO);
        let m = v1_view(&h, "/berth/abc", "ro");
        let described: Vec<(String, String)> = m
            .iter()
            .map(|m| {
                (
                    m.destination().display().to_string(),
                    m.source().as_ref().unwrap().display().to_string(),
                )
            })
            .collect();
        assert_eq!(
            described,
            vec![
                ("/sys/fs/cgroup".into(), "tmpfs".into()),
                (
                    "/sys/fs/cgroup/cpu,cpuacct".into(),
                    "/sys/fs/cgroup/cpu,cpuacct/berth/abc".into()
                ),
                (
                    "/sys/fs/cgroup/memory".into(),
                    "/sys/fs/cgroup/memory/berth/abc".into()
                ),
            ]
        );
        assert!(m[1].options().as_ref().unwrap().contains(&"ro".to_string()));
    }
}
