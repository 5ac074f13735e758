//! The rootless daemon's parent side: checks, the child's namespaces (mapped with newuidmap and
//! newgidmap, networked with slirp4netns), its published ports, and its supervision (signals
//! forwarded, exit status passed on).

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, bail};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::unistd::Pid;

use super::{Dirs, find_program, subordinate_range};

/// What the checks found: everything a start needs, before anything is changed.
struct Plan {
    user: String,
    uid: u32,
    gid: u32,
    subuid: (u32, u32),
    subgid: (u32, u32),
    newuidmap: PathBuf,
    newgidmap: PathBuf,
    slirp4netns: PathBuf,
}

/// The checks of a rootless start, each with what to do about it. Nothing is created before
/// they pass.
fn plan() -> anyhow::Result<Plan> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let user = nix::unistd::User::from_uid(uid.into())
        .ok()
        .flatten()
        .map(|u| u.name)
        .with_context(|| format!("uid {uid} has no entry in /etc/passwd"))?;
    let (Some(newuidmap), Some(newgidmap)) = (find_program("newuidmap"), find_program("newgidmap"))
    else {
        bail!(
            "rootless mode needs newuidmap and newgidmap (setuid programs of the \"uidmap\" package: apt-get install uidmap), and they are not installed"
        );
    };
    let subuid = subordinate_range("/etc/subuid".as_ref(), &user, uid).with_context(|| {
        format!(
            "user {user} (uid {uid}) has no subordinate uid range in /etc/subuid; add one as root, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {user}` (scripts/rootless-setup.sh {user})"
        )
    })?;
    let subgid = subordinate_range("/etc/subgid".as_ref(), &user, uid).with_context(|| {
        format!(
            "user {user} (uid {uid}) has no subordinate gid range in /etc/subgid; add one as root, e.g. `usermod --add-subgids 100000-165535 {user}` (scripts/rootless-setup.sh {user})"
        )
    })?;
    let slirp4netns = find_program("slirp4netns").context(
        "rootless mode needs slirp4netns for the containers' networking (apt-get install slirp4netns), and it is not installed",
    )?;
    Ok(Plan {
        user,
        uid,
        gid,
        subuid,
        subgid,
        newuidmap,
        newgidmap,
        slirp4netns,
    })
}

fn pipe() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")
}

/// The signals the parent handles itself (and the child gets back, unblocked, at exec).
fn handled() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set
}

/// A command that starts with the signals unblocked and `keep` inherited.
fn command(program: impl Into<OsString>, keep: Vec<RawFd>) -> Command {
    let mut cmd = Command::new(program.into());
    // SAFETY: only async-signal-safe calls (sigprocmask and fcntl) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&handled()), None)?;
            for fd in &keep {
                let flags = nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_GETFD)?;
                let flags =
                    nix::fcntl::FdFlag::from_bits_truncate(flags) & !nix::fcntl::FdFlag::FD_CLOEXEC;
                nix::fcntl::fcntl(*fd, nix::fcntl::FcntlArg::F_SETFD(flags))?;
            }
            Ok(())
        });
    }
    cmd
}

fn map_ids(program: &PathBuf, pid: u32, own: u32, range: (u32, u32)) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args([
            pid.to_string(),
            "0".into(),
            own.to_string(),
            "1".into(),
            "1".into(),
            range.0.to_string(),
            range.1.to_string(),
        ])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed ({}): {}",
            program.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Runs the rootless daemon: the child berthd in its namespaces, until it exits. Returns its
/// exit code.
pub fn run() -> anyhow::Result<i32> {
    let plan = plan()?;
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    Dirs::from_env(&env).map_err(anyhow::Error::msg)?;
    // Blocked before any thread or child exists; sigwait takes them below.
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&handled()), None).context("sigprocmask")?;

    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (ports_parent, ports_child) = UnixStream::pair().context("socketpair")?;
    let exe = std::env::current_exe().context("finding the berthd executable")?;
    let child_fds = vec![
        go_r.as_raw_fd(),
        ready_w.as_raw_fd(),
        ports_child.as_raw_fd(),
    ];
    let mut child = command(&exe, child_fds)
        .args(std::env::args_os().skip(1))
        .env(
            super::CHILD_ENV,
            format!(
                "{},{},{}",
                go_r.as_raw_fd(),
                ready_w.as_raw_fd(),
                ports_child.as_raw_fd()
            ),
        )
        .spawn()
        .context("starting the rootless child")?;
    drop((go_r, ready_w, ports_child));
    let pid = child.id();

    let setup = || -> anyhow::Result<Child> {
        let mut byte = [0u8; 1];
        if std::fs::File::from(ready_r).read(&mut byte)? != 1 {
            bail!("the rootless child exited before creating its namespaces");
        }
        map_ids(&plan.newuidmap, pid, plan.uid, plan.subuid)?;
        map_ids(&plan.newgidmap, pid, plan.gid, plan.subgid)?;
        let (slirp_ready_r, slirp_ready_w) = pipe()?;
        // slirp4netns exits when this pipe's write end (held by the parent only) closes.
        let (exit_r, exit_w) = pipe()?;
        let keep = vec![slirp_ready_w.as_raw_fd(), exit_r.as_raw_fd()];
        let slirp = command(&plan.slirp4netns, keep)
            .args([
                "--configure".to_string(),
                "--mtu=65520".into(),
                "--disable-host-loopback".into(),
                format!("--ready-fd={}", slirp_ready_w.as_raw_fd()),
                format!("--exit-fd={}", exit_r.as_raw_fd()),
                pid.to_string(),
                "tap0".into(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("running {}", plan.slirp4netns.display()))?;
        drop((slirp_ready_w, exit_r));
        if std::fs::File::from(slirp_ready_r).read(&mut byte)? != 1 {
            bail!("slirp4netns did not configure the daemon's network namespace");
        }
        // Kept open for the daemon's life: closing it stops slirp4netns.
        std::mem::forget(exit_w);
        Ok(slirp)
    };
    let mut slirp = match setup() {
        Ok(slirp) => slirp,
        Err(e) => {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Err(e.context(format!("rootless setup for user {}", plan.user)));
        }
    };
    // The child's cgroup namespace is rooted at this process's cgroup: when that is delegated
    // to the user, the child mounts it writable and its containers get cgroups under it.
    let go = match super::cgroup::delegate() {
        Ok(d) => format!("2{}\n{}", d.dir.display(), d.controllers.join(" ")),
        Err(why) => format!("1{why}"),
    };
    std::fs::File::from(go_w)
        .write_all(go.as_bytes())
        .context("starting the rootless child")?;
    std::thread::spawn(move || super::ports::serve(ports_parent));

    let code = supervise(&mut child);
    let _ = slirp.kill();
    let _ = slirp.wait();
    Ok(code)
}

/// Forwards termination signals to the child until it exits; its exit code (128 + signal
/// when killed).
fn supervise(child: &mut Child) -> i32 {
    let pid = Pid::from_raw(child.id() as i32);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            use std::os::unix::process::ExitStatusExt;
            return status
                .code()
                .or_else(|| status.signal().map(|s| 128 + s))
                .unwrap_or(1);
        }
        match handled().wait() {
            Ok(Signal::SIGCHLD) | Err(_) => {}
            Ok(signal) => {
                let _ = kill(pid, signal);
            }
        }
    }
}
