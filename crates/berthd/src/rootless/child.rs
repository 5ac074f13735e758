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

/// The parent's cgroup delegation: `Ok((host cgroup, enabled controllers))`, or why none.
static CGROUPS: OnceLock<Result<(String, String), String>> = OnceLock::new();

/// The host's cgroup layout, seen before the child's own cgroup2 mount hides it (a v1 host's
/// rootless daemon mounts cgroup2 too, and `info` must still say v1).
static HOST_CGROUP: OnceLock<berth_runtime::cgroups::CgroupVersion> = OnceLock::new();

/// The host's cgroup layout when this process is a rootless child.
pub fn host_cgroup_version() -> Option<berth_runtime::cgroups::CgroupVersion> {
    HOST_CGROUP.get().copied()
}

/// Logs how the daemon's containers get cgroups (once logging is set up).
pub fn log_cgroups() {
    match CGROUPS.get() {
        Some(Ok((dir, controllers))) => tracing::info!(
            cgroup = %dir,
            controllers = %controllers,
            "rootless: using the delegated cgroup v2 subtree for the containers' limits"
        ),
        Some(Err(why)) => tracing::warn!(
            "rootless: running without cgroups, resource limits are discarded: {why}"
        ),
        None => {}
    }
}

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
    // The parent closes the pipe without a byte when it could not map the namespace (and
    // says why on its own stderr); else `1<why not>` (no delegated cgroup) or
    // `2<cgroup>\n<controllers>` (see `super::cgroup::delegate`).
    let mut go = String::new();
    fds.sync_read.read_to_string(&mut go)?;
    let delegated = match go.as_bytes().first() {
        Some(b'2') => true,
        Some(b'1') => false,
        _ => anyhow::bail!("the rootless parent did not set up the namespaces"),
    };
    let _ = CGROUPS.set(if delegated {
        let (dir, controllers) = go[1..].split_once('\n').unwrap_or((&go[1..], ""));
        Ok((dir.to_string(), controllers.to_string()))
    } else {
        Err(go[1..].to_string())
    });
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
    // The unified hierarchy of this cgroup namespace where the host's hierarchies were. Its
    // root is the cgroup the daemon was started in. Delegated to the user (cgroup v2 and
    // systemd's `Delegate=yes`), it is writable: the parent moved the daemon into its leaf
    // `berthd` and enabled the controllers, and containers get cgroups under it. Otherwise
    // no cgroup is the user's to manage (v1 has no delegation): read-only, the runtime then
    // leaves containers in the daemon's cgroup (its rootless mode takes EROFS as "no
    // cgroups"), and limits are discarded with a warning
    // (`berth_container::validate::discard_unsupported`).
    let _ = HOST_CGROUP.set(berth_runtime::cgroups::CgroupVersion::of(
        std::path::Path::new(berth_runtime::cgroups::ROOT),
    ));
    // A tmpfs first: on a v2 host `/sys/fs/cgroup` is a mount of the same cgroup2 superblock,
    // and the kernel refuses to mount a superblock on the root of a mount of itself (EBUSY).
    mount(
        Some("tmpfs"),
        "/sys/fs/cgroup",
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(|e| anyhow::anyhow!("mounting a tmpfs on /sys/fs/cgroup: {e}"))?;
    let mut flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if !delegated {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(
        Some("cgroup2"),
        "/sys/fs/cgroup",
        Some("cgroup2"),
        flags,
        None::<&str>,
    )
    .map_err(|e| anyhow::anyhow!("mounting cgroup2 in the rootless mount namespace: {e}"))?;
    super::ports::install_client(fds.ports);
    let _ = ACTIVE.set(());
    Ok(true)
}
