//! The rootless daemon's child side: entering the namespaces the parent maps, before anything
//! else runs (`unshare(CLONE_NEWUSER)` needs a single-threaded process).

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::OnceLock;

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// Set once the process is a rootless child (the variable is gone from the environment by
/// then, so that the shims and containers it starts do not see it).
pub static ACTIVE: OnceLock<()> = OnceLock::new();

/// The descriptors the parent gave: the sync pipes and the ports socket.
struct Fds {
    sync_read: File,
    sync_write: File,
    ports: OwnedFd,
}

fn parse_fds(text: &str) -> Result<Fds, String> {
    let fds: Vec<i32> = text
        .split(',')
        .map(|f| f.parse::<i32>().map_err(|_| format!("bad {text:?}")))
        .collect::<Result<_, _>>()?;
    let [r, w, p] = fds[..] else {
        return Err(format!("bad {text:?}"));
    };
    // SAFETY: the parent passed these descriptors open (see `parent::spawn_child`), and
    // nothing else in this process uses them: each is owned once, here.
    unsafe {
        Ok(Fds {
            sync_read: File::from_raw_fd(r),
            sync_write: File::from_raw_fd(w),
            ports: OwnedFd::from_raw_fd(p),
        })
    }
}

/// When this process is a rootless child: enters its namespaces (waiting for the parent to
/// map them), makes its mounts private, hides the host's cgroups, and installs the ports
/// binder. Returns whether it was a child. Must run before any thread is started.
pub fn enter_if_child() -> anyhow::Result<bool> {
    let Some(text) = std::env::var_os(super::CHILD_ENV) else {
        return Ok(false);
    };
    // SAFETY: called first thing in `main`, before any other thread exists, so nothing reads
    // the environment concurrently.
    unsafe { std::env::remove_var(super::CHILD_ENV) };
    let mut fds = parse_fds(&text.to_string_lossy()).map_err(anyhow::Error::msg)?;
    unshare(
        CloneFlags::CLONE_NEWUSER
            | CloneFlags::CLONE_NEWNS
            | CloneFlags::CLONE_NEWNET
            | CloneFlags::CLONE_NEWCGROUP,
    )
    .map_err(|e| anyhow::anyhow!("cannot create the rootless namespaces: {e}"))?;
    // The parent gone (killed), the daemon stops too rather than run on without its network
    // and ports.
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
        .map_err(|e| anyhow::anyhow!("PR_SET_PDEATHSIG: {e}"))?;
    fds.sync_write.write_all(b"1")?;
    drop(fds.sync_write);
    let mut ack = [0u8; 1];
    // The parent closes the pipe without a byte when it could not map the namespace (and
    // says why on its own stderr).
    if fds.sync_read.read(&mut ack)? != 1 {
        anyhow::bail!("the rootless parent did not set up the namespaces");
    }
    nix::unistd::setresgid(0.into(), 0.into(), 0.into())
        .map_err(|e| anyhow::anyhow!("setresgid(0) in the user namespace: {e}"))?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into())
        .map_err(|e| anyhow::anyhow!("setresuid(0) in the user namespace: {e}"))?;
    // Mounts made from here (overlays, the exec root's tmpfs, netns files) stay in this
    // namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| anyhow::anyhow!("making / private in the rootless mount namespace: {e}"))?;
    // No cgroup is the user's to manage (v1 has no delegation; v2's, through systemd, is not
    // used yet): the unified hierarchy of this cgroup namespace, read-only, where the host's
    // hierarchies were. The runtime then leaves containers in the daemon's cgroup (its
    // rootless mode takes EROFS as "no cgroups"), and limits are discarded with a warning
    // (`berth_container::validate::discard_unsupported`).
    mount(
        Some("cgroup2"),
        "/sys/fs/cgroup",
        Some("cgroup2"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY,
        None::<&str>,
    )
    .map_err(|e| {
        anyhow::anyhow!("mounting cgroup2 read-only in the rootless mount namespace: {e}")
    })?;
    super::ports::install_client(fds.ports);
    let _ = ACTIVE.set(());
    Ok(true)
}
