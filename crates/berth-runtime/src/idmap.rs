//! User-namespace remapping (`--userns-remap`): the id range containers run in, a user
//! namespace holding that mapping for idmapped mounts, and idmapped copies of directories.
//!
//! Image layers stay on disk as the image has them (owned by uid 0 and friends). A remapped
//! container sees them through idmapped mounts (Linux 5.12+, overlayfs over idmapped layers
//! 5.19+): on-disk uid `u` shows as host uid `start + u`, which is `u` again inside the
//! container's user namespace. No layer is copied or chowned, per container or otherwise.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The host id ranges container ids 0.. map to (the first subordinate range of the remap
/// user in `/etc/subuid` and `/etc/subgid`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct IdMapping {
    /// Host uid of container uid 0.
    pub uid: u32,
    /// Number of uids mapped.
    pub uid_count: u32,
    /// Host gid of container gid 0.
    pub gid: u32,
    /// Number of gids mapped.
    pub gid_count: u32,
}

impl IdMapping {
    /// The host uid of container uid `id`, if mapped.
    pub fn host_uid(&self, id: u32) -> Option<u32> {
        (id < self.uid_count).then(|| self.uid + id)
    }

    /// The host gid of container gid `id`, if mapped.
    pub fn host_gid(&self, id: u32) -> Option<u32> {
        (id < self.gid_count).then(|| self.gid + id)
    }

    /// The container uid of host uid `id`, if mapped.
    pub fn container_uid(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.uid).filter(|c| *c < self.uid_count)
    }

    /// The container gid of host gid `id`, if mapped.
    pub fn container_gid(&self, id: u32) -> Option<u32> {
        id.checked_sub(self.gid).filter(|c| *c < self.gid_count)
    }

    /// `chown` `path` (not following a symlink) to the remapped root.
    pub fn chown_to_root(&self, path: &Path) -> io::Result<()> {
        std::os::unix::fs::lchown(path, Some(self.uid), Some(self.gid))
    }
}

/// A user namespace with `mapping` written in, for `MOUNT_ATTR_IDMAP`. Made by a forked child
/// that unshares its user namespace and waits while this process writes its maps; the
/// namespace outlives the child through the returned descriptor.
pub fn user_namespace(mapping: &IdMapping) -> io::Result<OwnedFd> {
    // Close-on-exec: programs other threads spawn meanwhile must not hold them open.
    let flags = rustix::pipe::PipeFlags::CLOEXEC;
    let (ready_r, ready_w) = rustix::pipe::pipe_with(flags)?;
    let (done_r, done_w) = rustix::pipe::pipe_with(flags)?;
    // SAFETY: the child makes raw system calls only and `_exit`s (safe in a threaded parent).
    let pid = unsafe { nix::libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls on descriptors this child owns.
        unsafe {
            // Its copy of the parent's ends would keep the pipe from ever reading end of file.
            nix::libc::close(done_w.as_raw_fd());
            nix::libc::close(ready_r.as_raw_fd());
            let ok = nix::libc::unshare(nix::libc::CLONE_NEWUSER) == 0;
            let b = [u8::from(ok)];
            nix::libc::write(ready_w.as_raw_fd(), b.as_ptr().cast(), 1);
            let mut x = [0u8; 1];
            // Returns at end of file: the parent has the namespace (or gave up).
            nix::libc::read(done_r.as_raw_fd(), x.as_mut_ptr().cast(), 1);
            nix::libc::_exit(0);
        }
    }
    drop(ready_w);
    drop(done_r);
    let result = (|| {
        let mut b = [0u8; 1];
        let n = rustix::io::read(&ready_r, &mut b)?;
        if n != 1 || b[0] != 1 {
            return Err(io::Error::other("cannot unshare a user namespace"));
        }
        let proc = format!("/proc/{pid}");
        std::fs::write(
            format!("{proc}/uid_map"),
            format!("0 {} {}\n", mapping.uid, mapping.uid_count),
        )?;
        std::fs::write(
            format!("{proc}/gid_map"),
            format!("0 {} {}\n", mapping.gid, mapping.gid_count),
        )?;
        let f = std::fs::File::open(format!("{proc}/ns/user"))?;
        Ok(OwnedFd::from(f))
    })();
    drop(done_w);
    let mut status = 0;
    // SAFETY: reaps the child forked above.
    unsafe { nix::libc::waitpid(pid, &mut status, 0) };
    result
}

/// Kernel `struct mount_attr` (`mount_setattr(2)`).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOUNT_ATTR_RDONLY: u64 = 0x0000_0001;

/// A detached, read-only, idmapped bind mount of `dir` (through user namespace `userns`):
/// usable as an overlay lower layer by its `/proc/self/fd/N` path, gone when dropped.
pub fn idmapped_tree(dir: &Path, userns: &OwnedFd) -> io::Result<OwnedFd> {
    use rustix::mount::OpenTreeFlags;
    let tree = rustix::mount::open_tree(
        rustix::fs::CWD,
        dir,
        OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC,
    )
    .map_err(|e| io::Error::other(format!("open_tree {}: {e}", dir.display())))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP | MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    // SAFETY: a valid descriptor, an empty C string and a correctly sized attribute struct.
    let rc = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("idmapped mount of {}: {e}", dir.display()),
        ));
    }
    Ok(tree)
}

/// Shifts the owner of everything under `dir` (not following symlinks) into `mapping`'s
/// range: a freshly copied volume's content for a remapped container (Docker copies with the
/// ids remapped). Ids outside the range are left as they are.
pub fn shift_tree(dir: &Path, mapping: &IdMapping) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(dir)?;
    if let (Some(u), Some(g)) = (mapping.host_uid(m.uid()), mapping.host_gid(m.gid())) {
        // chown clears setuid bits: put the mode back on what is not a symlink.
        std::os::unix::fs::lchown(dir, Some(u), Some(g))?;
        if !m.file_type().is_symlink() {
            std::fs::set_permissions(dir, m.permissions())?;
        }
    }
    if m.is_dir() {
        for e in std::fs::read_dir(dir)? {
            shift_tree(&e?.path(), mapping)?;
        }
    }
    Ok(())
}
