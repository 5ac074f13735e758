//! The container's root filesystem: an overlay of the image's layer directories (read-only
//! lowers) with a per-container `upper` and `work` directory, mounted on `<container>/rootfs`.
//!
//! Plain system calls only: safe to call from the multi-threaded daemon.
//!
//! Layout under the container directory:
//! ```text
//! upper/   the container's writable layer
//! work/    overlayfs scratch space
//! lower/   an empty directory, used as the only lower of an image with no layers
//! rootfs/  the mountpoint
//! ```
//!
//! `mount(2)` takes its data in one page (4096 bytes), which a deep image's lowerdir list can
//! exceed. Lists that do not fit are mounted through the new mount API instead, adding one
//! lower at a time with `fsconfig(lowerdir+)` (Linux 6.8+); on older kernels such an image is
//! refused with an error that says so.

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::error::{Result, RuntimeError};

/// Paths of one container's root filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsLayout {
    /// Writable layer.
    pub upper: PathBuf,
    /// overlayfs work directory.
    pub work: PathBuf,
    /// Empty lower for images without layers.
    pub empty_lower: PathBuf,
    /// The mountpoint: the container's root filesystem.
    pub rootfs: PathBuf,
}

impl RootfsLayout {
    /// The layout under `container_dir`.
    pub fn new(container_dir: &Path) -> Self {
        RootfsLayout {
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
            empty_lower: container_dir.join("lower"),
            rootfs: container_dir.join("rootfs"),
        }
    }
}

/// Largest mount data `mount(2)` accepts, including the terminating NUL.
const MOUNT_DATA_MAX: usize = 4096;

fn check_lower(p: &Path) -> Result<()> {
    let s = p.to_string_lossy();
    if s.contains([':', ',']) || !p.is_absolute() {
        return Err(RuntimeError::InvalidConfig(format!(
            "layer directory {} must be an absolute path without ':' or ','",
            p.display()
        )));
    }
    Ok(())
}

/// Mount the overlay for a container whose image layers are `layers` (bottom first, as
/// `berth-image` lists them) under `container_dir`. Creates `upper`, `work` and the mountpoint
/// if missing (so a stopped container's upper is reused). Returns the rootfs path.
pub fn mount_overlay(layers: &[PathBuf], container_dir: &Path) -> Result<PathBuf> {
    mount_overlay_remapped(layers, container_dir, None)
}

/// [`mount_overlay`] for a container in a remapped user namespace: the lowers are idmapped
/// through `remap`'s user namespace (the image's uid 0 shows as the range's first uid), the
/// writable layer belongs to the remapped root. Nothing of the image is copied or chowned.
pub fn mount_overlay_remapped(
    layers: &[PathBuf],
    container_dir: &Path,
    remap: Option<(&crate::idmap::IdMapping, &std::os::fd::OwnedFd)>,
) -> Result<PathBuf> {
    let l = RootfsLayout::new(container_dir);
    for d in [&l.upper, &l.work, &l.rootfs] {
        std::fs::create_dir_all(d).map_err(|e| RuntimeError::io("create", d, e))?;
    }
    let mut lowers: Vec<PathBuf> = layers.iter().rev().cloned().collect();
    if lowers.is_empty() {
        std::fs::create_dir_all(&l.empty_lower)
            .map_err(|e| RuntimeError::io("create", &l.empty_lower, e))?;
        lowers.push(l.empty_lower.clone());
    }
    // Held until the overlay is mounted: it keeps its own references to the layers.
    let mut trees = Vec::new();
    if let Some((mapping, userns)) = remap {
        for d in [&l.upper, &l.rootfs] {
            mapping
                .chown_to_root(d)
                .map_err(|e| RuntimeError::io("chown to the remapped root", d, e))?;
        }
        for p in &lowers {
            check_lower(p)?;
        }
        for lower in lowers.iter_mut() {
            let tree = crate::idmap::idmapped_tree(lower, userns)
                .map_err(|e| RuntimeError::io("idmap", lower.clone(), e))?;
            *lower = PathBuf::from(format!("/proc/self/fd/{}", tree.as_raw_fd()));
            trees.push(tree);
        }
    }
    for p in lowers.iter().chain([&l.upper, &l.work]) {
        check_lower(p)?;
    }
    let lowerdir = lowers
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let data = format!(
        "lowerdir={lowerdir},upperdir={},workdir={}",
        l.upper.display(),
        l.work.display()
    );
    let result = if data.len() < MOUNT_DATA_MAX {
        let data = CString::new(data).map_err(|e| RuntimeError::InvalidConfig(e.to_string()))?;
        rustix::mount::mount(
            "overlay",
            &l.rootfs,
            "overlay",
            MountFlags::empty(),
            data.as_c_str(),
        )
        .map_err(io::Error::from)
    } else {
        mount_overlay_fsconfig(&lowers, &l).map_err(|e| {
            if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) {
                io::Error::other(format!(
                    "{} layers do not fit in one mount(2) call and this kernel lacks \
                     fsconfig lowerdir+ (Linux 6.8+): {e}",
                    lowers.len()
                ))
            } else {
                e
            }
        })
    };
    result.map_err(|e| RuntimeError::io("mount overlay on", &l.rootfs, e))?;
    Ok(l.rootfs)
}

fn mount_overlay_fsconfig(lowers: &[PathBuf], l: &RootfsLayout) -> io::Result<()> {
    let fs = rustix::mount::fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for lower in lowers {
        rustix::mount::fsconfig_set_string(&fs, "lowerdir+", lower.as_path())?;
    }
    rustix::mount::fsconfig_set_string(&fs, "upperdir", l.upper.as_path())?;
    rustix::mount::fsconfig_set_string(&fs, "workdir", l.work.as_path())?;
    rustix::mount::fsconfig_create(&fs)?;
    let mnt = rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    rustix::mount::move_mount(
        &mnt,
        "",
        rustix::fs::CWD,
        l.rootfs.as_path(),
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

/// Unmount a container's root filesystem. Not mounted is fine; a busy mount is detached
/// lazily (`MNT_DETACH`) so the kernel finishes when its last user goes.
pub fn unmount(rootfs: &Path) -> Result<()> {
    match rustix::mount::unmount(rootfs, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(rustix::io::Errno::BUSY) => rustix::mount::unmount(rootfs, UnmountFlags::DETACH)
            .map_err(|e| RuntimeError::io("unmount", rootfs, e.into())),
        Err(e) => Err(RuntimeError::io("unmount", rootfs, e.into())),
    }
}

/// Mounts a tmpfs of `size` bytes at `path` (created if missing) for a `/dev/shm` that lives
/// outside the container, so that other containers can share it (`--ipc shareable`).
/// Already mounted is fine: a restart of the container reuses it.
pub fn mount_shm(path: &Path, size: u64) -> Result<()> {
    if is_mounted(path) {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(|e| RuntimeError::io("create", path, e))?;
    let data = CString::new(format!("mode=1777,size={size}")).expect("no NUL in tmpfs options");
    rustix::mount::mount(
        "shm",
        path,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        data.as_c_str(),
    )
    .map_err(|e| RuntimeError::io("mount shm tmpfs", path, e.into()))
}

/// Where a daemon keeps run-time state (its exec root): on a tmpfs, as `/run` is on most
/// systems. Everything there describes processes, which a reboot ends, and a `run` writes and
/// deletes a dozen files there (bundle, pid files, exit record, the runtime's state): on a
/// disk filesystem each of those costs an inode allocation, block frees and possibly discards.
/// When `dir` is on another filesystem, a tmpfs is mounted on it (private, so the network
/// namespaces bind-mounted inside do not propagate), hiding what a daemon left there before a
/// reboot; unless something there is still in use (a mount below it, a shim's pid file: an
/// older daemon's containers still running), and then it is used as it is. Returns whether a
/// tmpfs was mounted.
pub fn ensure_tmpfs(dir: &Path) -> Result<bool> {
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    std::fs::create_dir_all(dir).map_err(|e| RuntimeError::io("create", dir, e))?;
    let fs = rustix::fs::statfs(dir).map_err(|e| RuntimeError::io("statfs", dir, e.into()))?;
    if fs.f_type as i64 == TMPFS_MAGIC {
        return Ok(false);
    }
    let mounted_below = std::fs::read_to_string("/proc/self/mountinfo")
        .map(|info| {
            mountpoints(&info).any(|m| Path::new(&m).starts_with(dir) && Path::new(&m) != dir)
        })
        .unwrap_or(true);
    let shims = std::fs::read_dir(dir.join("containers"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.path().join("shim.pid").exists());
    if mounted_below || shims {
        return Ok(false);
    }
    rustix::mount::mount(
        "berth-exec",
        dir,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        c"mode=0711",
    )
    .map_err(|e| RuntimeError::io("mount tmpfs", dir, e.into()))?;
    rustix::mount::mount_change(dir, rustix::mount::MountPropagationFlags::PRIVATE)
        .map_err(|e| RuntimeError::io("make private", dir, e.into()))?;
    Ok(true)
}

/// Mountpoints of every container's default mounts: libcontainer creates the missing ones in
/// the container's writable layer at each start (with a copy-up of `/etc`), so a `run --rm`
/// would create and delete them every time, on the data root's disk.
const INIT_DIRS: [&str; 3] = ["proc", "sys", "dev"];
const INIT_FILES: [&str; 3] = ["etc/hostname", "etc/hosts", "etc/resolv.conf"];

/// The init layer of an image whose layers are `layers` (bottom first): a directory `dir`
/// holding the default mounts' mountpoints the image lacks, used as the topmost lower layer of
/// its containers (as Docker's `-init` layer, but shared by all containers of the image, and
/// made once). Only what the image does not have is created, so nothing of the image is
/// hidden; a path under something that is not a directory in the image is left alone. An
/// image that has them all gets an empty one (so the look is not repeated). Returns `None`
/// when the image cannot be looked at in one mount (very many layers): libcontainer then
/// creates the mountpoints as it would anyway.
pub fn ensure_init_layer(layers: &[PathBuf], dir: &Path) -> Result<Option<PathBuf>> {
    if dir.is_dir() {
        return Ok(Some(dir.to_path_buf()));
    }
    if layers.is_empty() {
        return Ok(None);
    }
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let unique = format!("{}-{:x}", std::process::id(), rand_u64());
    let view = parent.join(format!(".init-view-{unique}"));
    let staging = parent.join(format!(".init-tmp-{unique}"));
    let empty = parent.join(format!(".init-empty-{unique}"));
    for d in [&view, &staging, &empty] {
        std::fs::create_dir(d).map_err(|e| RuntimeError::io("create", d, e))?;
    }
    let cleanup = || {
        let _ = std::fs::remove_dir(&view);
        let _ = std::fs::remove_dir(&empty);
        let _ = std::fs::remove_dir_all(&staging);
    };
    // A read-only overlay needs two lowers: an empty one under a single-layer image.
    let mut lowers: Vec<&Path> = layers.iter().rev().map(PathBuf::as_path).collect();
    lowers.push(&empty);
    let data = format!(
        "lowerdir={}",
        lowers
            .iter()
            .map(|p| p.to_string_lossy())
            .collect::<Vec<_>>()
            .join(":")
    );
    if data.len() >= MOUNT_DATA_MAX || lowers.iter().any(|p| check_lower(p).is_err()) {
        cleanup();
        return Ok(None);
    }
    let data = CString::new(data).map_err(|e| RuntimeError::InvalidConfig(e.to_string()))?;
    if let Err(e) = rustix::mount::mount(
        "overlay",
        &view,
        "overlay",
        MountFlags::RDONLY,
        data.as_c_str(),
    ) {
        cleanup();
        return Err(RuntimeError::io("mount image view", &view, e.into()));
    }
    let missing = |rel: &str| -> bool {
        // Each parent must be a real directory in the image (never follow its symlinks).
        let mut p = view.clone();
        let parts: Vec<&str> = rel.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            p.push(part);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => return false,
                Err(_) => return true,
            }
        }
        std::fs::symlink_metadata(view.join(rel)).is_err()
    };
    let made = (|| -> io::Result<()> {
        for d in INIT_DIRS {
            if missing(d) {
                std::fs::create_dir_all(staging.join(d))?;
            }
        }
        for f in INIT_FILES {
            if missing(f) {
                let path = staging.join(f);
                if let Some(p) = path.parent() {
                    std::fs::create_dir_all(p)?;
                    // The image's directory shows through with this one's mode and owner.
                    let rel = Path::new(f).parent().unwrap_or(Path::new(""));
                    if let Ok(m) = std::fs::symlink_metadata(view.join(rel)) {
                        use std::os::unix::fs::MetadataExt;
                        std::fs::set_permissions(p, m.permissions())?;
                        std::os::unix::fs::chown(p, Some(m.uid()), Some(m.gid()))?;
                    }
                }
                std::fs::File::create(&path)?;
            }
        }
        Ok(())
    })();
    let _ = rustix::mount::unmount(&view, UnmountFlags::DETACH);
    if let Err(e) = made {
        cleanup();
        return Err(RuntimeError::io("create init layer", &staging, e));
    }
    // Another start may have made it meanwhile: theirs is as good.
    match std::fs::rename(&staging, dir) {
        Ok(()) => {}
        Err(_) if dir.is_dir() => {}
        Err(e) => {
            cleanup();
            return Err(RuntimeError::io("rename init layer", dir, e));
        }
    }
    cleanup();
    Ok(Some(dir.to_path_buf()))
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

/// Whether `path` is a mountpoint in this process's mount namespace.
pub fn is_mounted(path: &Path) -> bool {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    mountpoints(&info).any(|m| Path::new(&m) == path)
}

/// Mountpoints listed in a `/proc/<pid>/mountinfo` text (octal escapes decoded).
pub fn mountpoints(mountinfo: &str) -> impl Iterator<Item = String> + '_ {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4).map(unescape_mountinfo))
}

fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a daemon left before a reboot is hidden under a new tmpfs; a shim's pid file (an
    /// older daemon's running container) keeps the directory as it is.
    #[test]
    fn exec_root_gets_a_tmpfs_unless_in_use() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run");
        std::fs::create_dir_all(root.join("netns")).unwrap();
        std::fs::create_dir_all(root.join("containers/old")).unwrap();
        std::fs::write(root.join("berthd.pid"), "1\n").unwrap();
        assert!(ensure_tmpfs(&root).unwrap());
        let fs = rustix::fs::statfs(&root).unwrap();
        assert_eq!(fs.f_type as i64, 0x0102_1994);
        assert!(!root.join("berthd.pid").exists(), "the old contents show");
        assert!(!ensure_tmpfs(&root).unwrap(), "mounted twice");
        rustix::mount::unmount(&root, UnmountFlags::DETACH).unwrap();

        std::fs::write(root.join("containers/old/shim.pid"), "1\n").unwrap();
        assert!(!ensure_tmpfs(&root).unwrap());
        assert!(root.join("berthd.pid").exists());
    }

    /// A remapped container's overlay shows the image's uid 0 as the range's first uid
    /// (idmapped lowers, nothing chowned on disk) and its writable layer is the remapped
    /// root's.
    #[test]
    fn remapped_overlay_shifts_lowers_without_chown() {
        use std::os::unix::fs::MetadataExt;
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let layer = dir.path().join("layer");
        std::fs::create_dir_all(layer.join("etc")).unwrap();
        std::fs::write(layer.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::os::unix::fs::chown(layer.join("etc/passwd"), Some(0), Some(0)).unwrap();
        std::fs::write(layer.join("owned"), "x").unwrap();
        std::os::unix::fs::chown(layer.join("owned"), Some(1000), Some(1001)).unwrap();
        let map = crate::idmap::IdMapping {
            uid: 231072,
            uid_count: 65536,
            gid: 331072,
            gid_count: 65536,
        };
        let ns = crate::idmap::user_namespace(&map).unwrap();
        let cdir = dir.path().join("c");
        let root =
            mount_overlay_remapped(std::slice::from_ref(&layer), &cdir, Some((&map, &ns))).unwrap();
        let m = std::fs::metadata(root.join("etc/passwd")).unwrap();
        let o = std::fs::metadata(root.join("owned")).unwrap();
        let u = std::fs::metadata(cdir.join("upper")).unwrap();
        // A write through the mount copies up with the shifted owner.
        std::fs::write(root.join("etc/passwd"), "changed").unwrap();
        let up = std::fs::metadata(cdir.join("upper/etc/passwd")).unwrap();
        unmount(&root).unwrap();
        assert_eq!((m.uid(), m.gid()), (231072, 331072));
        assert_eq!((o.uid(), o.gid()), (232072, 332073));
        assert_eq!((u.uid(), u.gid()), (231072, 331072));
        assert_eq!((up.uid(), up.gid()), (231072, 331072));
        let disk = std::fs::metadata(layer.join("etc/passwd")).unwrap();
        assert_eq!(
            (disk.uid(), disk.gid()),
            (0, 0),
            "the layer itself is unchanged"
        );
    }

    #[test]
    fn mountinfo_unescapes() {
        let info =
            "36 35 98:0 /mnt1 /mnt\\040with\\040space rw,noatime master:1 - ext3 /dev/root rw\n";
        assert_eq!(
            mountpoints(info).collect::<Vec<_>>(),
            vec!["/mnt with space".to_string()]
        );
    }

    #[test]
    fn lower_paths_are_checked() {
        assert!(check_lower(Path::new("/a/b")).is_ok());
        assert!(check_lower(Path::new("/a:b")).is_err());
        assert!(check_lower(Path::new("rel")).is_err());
    }
}
