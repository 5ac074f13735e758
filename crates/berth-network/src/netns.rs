//! Named network namespaces: a namespace kept alive by a bind mount of its nsfs file at a path
//! (Berth uses `<exec-root>/netns/<container-id>`), so it outlives the process that made it and
//! a runtime can join it by path.
//!
//! Namespace switches happen only on short-lived threads made for the purpose: a thread that
//! entered another netns is never returned to a pool (tokio's or anyone's).

use std::fs::{self, File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, setns, unshare};

use crate::{Error, Result};

/// Creates a new network namespace bind-mounted at `path` (parent directories are created),
/// with `lo` up. Fails if `path` already holds a namespace.
pub fn create(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
    }
    // create_new: a second create for the same path must not stack a mount on the first.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(format!("cannot create netns file {}", path.display()), e))?;
    let target = path.to_path_buf();
    let made = std::thread::Builder::new()
        .name("berth-netns-new".into())
        .spawn(move || -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("cannot unshare a network namespace", e.into()))?;
            let tid = nix::unistd::gettid();
            let own = PathBuf::from(format!("/proc/self/task/{tid}/ns/net"));
            mount(
                Some(&own),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| {
                Error::io(
                    format!("cannot bind-mount netns at {}", target.display()),
                    e.into(),
                )
            })?;
            set_up("lo")
        })
        .map_err(|e| Error::io("cannot spawn a thread for a new netns", e))?
        .join()
        .unwrap_or_else(|_| Err(Error::Invalid("netns creation thread panicked".into())));
    if made.is_err() {
        let _ = remove(path);
    }
    made
}

/// Unmounts (lazily, so open handles do not block it) and unlinks the namespace at `path`.
/// Ok if nothing is there.
pub fn remove(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => {
            return Err(Error::io(
                format!("cannot unmount netns {}", path.display()),
                e.into(),
            ));
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(
            format!("cannot remove netns file {}", path.display()),
            e,
        )),
    }
}

/// Runs `f` on a fresh thread that entered the namespace at `path`; returns its result.
/// The caller's thread never changes namespace. Sockets made by `f` stay in that namespace.
pub fn run_in<T: Send + 'static>(path: &Path, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    let ns = open(path)?;
    let display = path.display().to_string();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || -> Result<T> {
            setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io(format!("cannot enter netns {display}"), e.into()))?;
            Ok(f())
        })
        .map_err(|e| Error::io("cannot spawn a thread to enter a netns", e))?
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// [`run_in`] for async callers: the blocking join happens off the runtime's worker threads.
pub async fn run_in_async<T: Send + 'static>(
    path: &Path,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || run_in(&path, f))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Opens the namespace file at `path` (a handle keeps the netns alive and can be passed to
/// netlink to move links into it).
pub fn open(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| Error::io(format!("cannot open netns {}", path.display()), e))
}

/// Brings an interface up in the calling thread's netns (SIOCSIFFLAGS; used for `lo`, where a
/// whole netlink connection would cost more than the ioctl).
pub(crate) fn set_up(ifname: &str) -> Result<()> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: plain socket(2); the result is checked and owned at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(Error::io(
            "cannot open a socket",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: raw is a fresh, valid descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain old data; all-zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return Err(Error::Invalid(format!("interface name too long: {ifname}")));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(Error::io(
                format!("cannot read flags of {ifname}"),
                std::io::Error::last_os_error(),
            ));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(Error::io(
                format!("cannot bring {ifname} up"),
                std::io::Error::last_os_error(),
            ));
        }
    }
    Ok(())
}
