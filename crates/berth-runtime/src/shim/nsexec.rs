//! An exec's process, started the way runc's `nsexec` starts one.
//!
//! libcontainer's tenant path joins the container's PID namespace, forks the process into it
//! and only then joins the mount namespace: for that window the process is visible in the
//! container while its root is the host's, and a process in the container with
//! `CAP_SYS_PTRACE` reads the host's files through `/proc/<pid>/root`. Here every namespace,
//! the mount namespace last, is joined by an intermediate process (stage 1) that is not in the
//! container's PID namespace; the exec's process (stage 2) is forked from it, so it is born in
//! the PID namespace with the container's root, holding only its stdio and a close-on-exec
//! report pipe. Stage 2 then becomes the exec's user (groups, capabilities, seccomp last) and
//! execs the command.
//!
//! Both stages report on one pipe, a JSON line each: stage 1 the process's pid, either stage
//! what failed. The pipe reaches end of file when stage 2's `execve` closes it.

use std::fs::File;
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::capabilities;
use libcontainer::syscall::syscall::create_syscall;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sched::{CloneFlags, setns};
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};
use oci_spec::runtime::{Process, Spec};
use serde::{Deserialize, Serialize};

use super::ExecConfig;
use super::helper;
use super::io::{bind_long, connect_long};
use super::server::{ProcIo, pipe, pty_io};
use crate::bundle::Bundle;
use crate::cgroups::{CgroupVersion, ROOT as CGROUP_ROOT};
use crate::error::RuntimeError;
use crate::seccomp_bpf::CompiledFilter;
use crate::spec::DEFAULT_PATH;

/// The namespaces an exec joins, in the order it joins them. The shim is root in the host's
/// user namespace, which may join any namespace; a remapped container's user namespace is
/// joined late, since from inside it the network namespace (the host's user namespace owns
/// it) can no longer be joined. Its mount namespace needs the rights of the container's user
/// namespace, and goes last anyway (it takes the host's filesystem, `/proc` included, away).
const NAMESPACES: [(&str, CloneFlags); 7] = [
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("user", CloneFlags::CLONE_NEWUSER),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// One line on the report pipe.
#[derive(Debug, Serialize, Deserialize)]
enum Report {
    /// Stage 1 forked the process: its pid in the shim's PID namespace.
    Started(i32),
    /// A step failed; `errno` when a system call did.
    Failed {
        step: String,
        message: String,
        errno: Option<i32>,
    },
}

/// A failed step, as a stage reports it.
struct Failure {
    step: String,
    message: String,
    errno: Option<i32>,
}

impl Failure {
    fn errno(step: impl Into<String>, e: Errno) -> Failure {
        Failure {
            step: step.into(),
            message: e.desc().to_lowercase(),
            errno: Some(e as i32),
        }
    }

    fn io(step: impl Into<String>, e: std::io::Error) -> Failure {
        match e.raw_os_error() {
            Some(n) => Failure::errno(step, Errno::from_raw(n)),
            None => Failure::other(step, e),
        }
    }

    fn other(step: impl Into<String>, e: impl std::fmt::Display) -> Failure {
        Failure {
            step: step.into(),
            message: e.to_string(),
            errno: None,
        }
    }

    fn into_report(self) -> Report {
        Report::Failed {
            step: self.step,
            message: self.message,
            errno: self.errno,
        }
    }
}

/// Start the exec's process in the container whose bundle is `bundle`; runs in the shim's
/// exec helper (single-threaded). Returns the process (the helper's grandchild, the shim's
/// child once the helper exits) and its stdio as the shim holds it.
pub(crate) fn spawn(
    bundle: &Bundle,
    spec: &Spec,
    process: &Process,
    cfg: &ExecConfig,
    console_path: &Path,
    seccomp: Option<CompiledFilter>,
) -> Result<(Pid, ProcIo), RuntimeError> {
    let start_err = |reason: String| RuntimeError::ExecStart { reason };
    let init = std::fs::read_to_string(bundle.init_pid_path())
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .ok_or_else(|| start_err("the container's init process is not known".into()))?;
    let namespaces = open_namespaces(init).map_err(start_err)?;
    let cgroups = open_cgroups(spec).map_err(start_err)?;

    // The process's stdio as stage 1 installs it: three pipes, or (with a tty, whose pty
    // stage 2 creates in the container) /dev/null until then, with a connection to the
    // console socket made here, where the socket's path is still reachable.
    let mut io = ProcIo::default();
    let (stdio, console): ([OwnedFd; 3], Option<(UnixListener, OwnedFd)>) = if cfg.tty {
        let _ = std::fs::remove_file(console_path);
        let listener =
            bind_long(console_path).map_err(|e| RuntimeError::io("bind", console_path, e))?;
        let conn = connect_long(console_path)
            .map_err(|e| RuntimeError::io("connect to", console_path, e))?;
        let null = File::options()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| RuntimeError::io("open", "/dev/null", e))?;
        let dup = |f: &File| {
            f.try_clone()
                .map(OwnedFd::from)
                .map_err(|e| RuntimeError::io("duplicate", "/dev/null", e))
        };
        (
            [dup(&null)?, dup(&null)?, dup(&null)?],
            Some((listener, conn.into())),
        )
    } else {
        let (in_r, in_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        io.out = Some(out_r);
        io.err = Some(err_r);
        io.stdin = cfg.stdin.then_some(in_w);
        ([in_r.into(), out_w.into(), err_w.into()], None)
    };
    let (report_r, report_w) = pipe()?;

    let plan = Stage1 {
        namespaces: namespaces
            .iter()
            .map(|(n, f, fd)| (*n, *f, fd.as_raw_fd()))
            .collect(),
        cgroups: cgroups.iter().map(|f| f.as_raw_fd()).collect(),
        stdio: [
            stdio[0].as_raw_fd(),
            stdio[1].as_raw_fd(),
            stdio[2].as_raw_fd(),
        ],
        console: console.as_ref().map(|(_, c)| c.as_raw_fd()),
        report: report_w.as_raw_fd(),
    };
    // SAFETY: the helper is single-threaded, so the child may run arbitrary code after fork.
    let stage1 = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // A panic must not unwind into the helper's frames (their descriptors are gone).
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                plan.run(process, seccomp.as_ref())
            }));
            let line = match run {
                Ok(Ok(pid)) => Report::Started(pid.as_raw()),
                Ok(Err(f)) => f.into_report(),
                Err(_) => Failure::other("start the exec", "panicked").into_report(),
            };
            send_report(plan.report, &line);
            // SAFETY: ends stage 1 without running the helper's destructors (the descriptors
            // they own were closed or handed on).
            unsafe { nix::libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(start_err(format!("fork: {e}"))),
    };
    // Only the stages may hold the report pipe's write end: its end of file is the exec.
    drop((report_w, stdio, namespaces, cgroups));
    let listener = console.map(|(listener, conn)| {
        drop(conn);
        listener
    });
    let mut report = Vec::new();
    let read = (&report_r).read_to_end(&mut report);
    let _ = waitpid(stage1, None);
    read.map_err(|e| start_err(format!("read the exec's start report: {e}")))?;

    let mut pid = None;
    let mut failed = None;
    for line in report.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        match serde_json::from_slice::<Report>(line) {
            Ok(Report::Started(p)) => pid = Some(Pid::from_raw(p)),
            Ok(Report::Failed {
                step,
                message,
                errno,
            }) => failed = failed.or(Some((step, message, errno))),
            Err(e) => failed = failed.or(Some(("report".into(), e.to_string(), None))),
        }
    }
    if let Some((step, message, errno)) = failed {
        if let Some(pid) = pid {
            let _ = kill(pid, Signal::SIGKILL);
        }
        return Err(start_error(&cfg.args[0], &step, &message, errno));
    }
    let pid = pid.ok_or_else(|| start_err("the exec's process was not started".into()))?;
    if let Some(listener) = listener {
        match pty_io(&listener, cfg.stdin) {
            Ok(p) => io = p,
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                return Err(RuntimeError::io("receive pty from", console_path, e));
            }
        }
    }
    Ok((pid, io))
}

/// The error a failed step becomes, in runc's words where Docker judges them.
fn start_error(args0: &str, step: &str, message: &str, errno: Option<i32>) -> RuntimeError {
    match (step, errno.map(Errno::from_raw)) {
        ("exec", Some(Errno::ENOENT)) => RuntimeError::ExecutableNotFound {
            name: args0.to_string(),
        },
        ("exec", Some(Errno::EACCES)) => RuntimeError::ExecutableNotRunnable {
            name: args0.to_string(),
        },
        ("exec", _) => RuntimeError::ExecStart {
            reason: format!("exec: \"{args0}\": {message}"),
        },
        _ => RuntimeError::ExecStart {
            reason: format!("{step}: {message}"),
        },
    }
}

/// Writes one report line (one `write`, below `PIPE_BUF`: the stages' lines never mix).
fn send_report(fd: RawFd, report: &Report) {
    let mut line = serde_json::to_vec(report).unwrap_or_default();
    line.truncate(2048);
    line.push(b'\n');
    // SAFETY: `fd` is the report pipe's write end, open for the life of this stage; the
    // `File` is forgotten, not closed.
    let mut f = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
    let _ = f.write_all(&line);
}

/// The container init's namespaces that differ from the helper's (a container may share the
/// host's network or PID namespace): (name, type, descriptor).
fn open_namespaces(init: i32) -> Result<Vec<(&'static str, CloneFlags, File)>, String> {
    let mut out = Vec::new();
    for (name, flag) in NAMESPACES {
        // A kernel without that namespace type has no link for it.
        let Ok(ours) = std::fs::metadata(format!("/proc/self/ns/{name}")) else {
            continue;
        };
        let theirs = format!("/proc/{init}/ns/{name}");
        let file = File::open(&theirs).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                format!("the container's init process ({init}) is gone")
            }
            _ => format!("open {theirs}: {e}"),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| format!("inspect {theirs}: {e}"))?;
        if (ours.dev(), ours.ino()) != (meta.dev(), meta.ino()) {
            out.push((name, flag, file));
        }
    }
    Ok(out)
}

/// `cgroup.procs` of the container's cgroup in every hierarchy that has it (cgroup v1: one per
/// mounted controller; v2: the unified tree), opened while the host's `/sys/fs/cgroup` is
/// in view. None when the spec names no cgroup.
fn open_cgroups(spec: &Spec) -> Result<Vec<File>, String> {
    let Some(path) = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()) else {
        return Ok(Vec::new());
    };
    let rel = path.strip_prefix("/").unwrap_or(&path);
    let root = Path::new(CGROUP_ROOT);
    let mut dirs: Vec<PathBuf> = Vec::new();
    if CgroupVersion::host().is_v2() {
        dirs.push(root.join(rel));
    } else if let Ok(entries) = std::fs::read_dir(root) {
        // Each hierarchy once: `cpu` and `cpuacct` are symlinks to `cpu,cpuacct`.
        dirs.extend(
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path().join(rel)),
        );
    }
    let mut files = Vec::new();
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        match File::options().write(true).open(&procs) {
            Ok(f) => files.push(f),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("open {}: {e}", procs.display())),
        }
    }
    // A rootless daemon's containers have no cgroup of their own (see `spec::without_cgroups`):
    // the exec'd process stays in the daemon's, as the container's does.
    if files.is_empty() && !crate::spec::without_cgroups() {
        return Err(format!(
            "the container's cgroup {} does not exist",
            path.display()
        ));
    }
    Ok(files)
}

/// What stage 1 works with: raw descriptors, which it closes or hands on (the objects that
/// own them stay in the helper).
struct Stage1 {
    namespaces: Vec<(&'static str, CloneFlags, RawFd)>,
    cgroups: Vec<RawFd>,
    stdio: [RawFd; 3],
    console: Option<RawFd>,
    report: RawFd,
}

impl Stage1 {
    /// Join the container's cgroups and namespaces, install the stdio, fork stage 2.
    fn run(&self, process: &Process, seccomp: Option<&CompiledFilter>) -> Result<Pid, Failure> {
        // Not dumpable (inherited by stage 2 until its `execve`): a process in the container
        // without `CAP_SYS_PTRACE` cannot open anything of its through `/proc/<pid>`.
        nix::sys::prctl::set_dumpable(false).map_err(|e| Failure::errno("set dumpable", e))?;
        let mut keep: Vec<RawFd> = self.namespaces.iter().map(|n| n.2).collect();
        keep.extend(&self.cgroups);
        keep.extend(self.stdio);
        keep.extend(self.console);
        keep.push(self.report);
        // Nothing of the helper's (the shim's socket, a cached host procfs handle, ...) may
        // reach the process.
        helper::close_all_except(&keep);
        for (i, &fd) in self.stdio.iter().enumerate() {
            let target = i as RawFd;
            nix::unistd::dup2(fd, target).map_err(|e| Failure::errno("install stdio", e))?;
        }
        for &fd in &self.stdio {
            close(fd);
        }
        // Before any namespace: the host's /sys/fs/cgroup leaves the view with the mount
        // namespace, and a process moves only between cgroups its cgroup namespace sees.
        let me = std::process::id().to_string();
        for &fd in &self.cgroups {
            // SAFETY: `fd` is an open `cgroup.procs`; the `File` is forgotten, not closed.
            let mut f = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            f.write_all(me.as_bytes())
                .map_err(|e| Failure::io("join the container's cgroup", e))?;
            close(fd);
        }
        for &(name, flag, fd) in &self.namespaces {
            // SAFETY: `fd` is an open namespace descriptor, closed right after.
            let ns = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            setns(ns, flag)
                .map_err(|e| Failure::errno(format!("join the container's {name} namespace"), e))?;
            close(fd);
        }
        // SAFETY: stage 1 is single-threaded.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    stage2(process, seccomp, self.console)
                }));
                let f = match run {
                    Ok(Err(f)) => f,
                    Err(_) => Failure::other("start the exec", "panicked"),
                };
                send_report(self.report, &f.into_report());
                // SAFETY: ends the failed stage 2 without running destructors of objects
                // whose descriptors are gone.
                unsafe { nix::libc::_exit(127) }
            }
            Ok(ForkResult::Parent { child }) => Ok(child),
            Err(e) => Err(Failure::errno("fork into the container", e)),
        }
    }
}

fn close(fd: RawFd) {
    // SAFETY: `fd` was handed to this stage to close; nothing uses it afterwards.
    drop(unsafe { OwnedFd::from_raw_fd(fd) });
}

/// The exec's process, in all the container's namespaces: becomes the process the spec
/// describes and execs its command. Returns only on failure.
fn stage2(
    process: &Process,
    seccomp: Option<&CompiledFilter>,
    console: Option<RawFd>,
) -> Result<std::convert::Infallible, Failure> {
    reset_signals();
    nix::unistd::setsid().map_err(|e| Failure::errno("setsid", e))?;
    if let Some(console) = console {
        setup_pty(console)?;
    }
    let user = process.user();
    let (uid, gid) = (user.uid(), user.gid());
    // As root first: the directory may be out of the user's reach, which is the user's
    // problem only if root cannot enter it either (runc's order).
    let cwd = process.cwd();
    let chdir_later = match nix::unistd::chdir(cwd) {
        Ok(()) => false,
        Err(Errno::EPERM) => true,
        Err(e) => return Err(chdir_failure(cwd, e)),
    };
    let syscall = create_syscall();
    for rl in process.rlimits().iter().flatten() {
        syscall
            .set_rlimit(rl)
            .map_err(|e| Failure::other(format!("set rlimit {:?}", rl.typ()), e))?;
    }
    if let Some(adj) = process.oom_score_adj() {
        std::fs::write("/proc/self/oom_score_adj", adj.to_string())
            .map_err(|e| Failure::io("set oom_score_adj", e))?;
    }
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(mask));
    }
    if process.apparmor_profile().is_some() || process.selinux_label().is_some() {
        return Err(Failure::other(
            "apply security labels",
            "AppArmor and SELinux labels are not supported for exec",
        ));
    }
    let env = with_home(process.env().clone().unwrap_or_default(), uid);
    fix_stdio_owner(uid);

    let groups: Vec<Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|&g| Gid::from_raw(g))
        .collect();
    syscall
        .set_groups(&groups)
        .map_err(|e| Failure::other("setgroups", e))?;
    // Keeps the permitted capabilities across a change to a non-root user (libcontainer's
    // order: the spec's sets are applied after it).
    syscall
        .set_id(Uid::from_raw(uid), Gid::from_raw(gid))
        .map_err(|e| Failure::other(format!("set user {uid}:{gid}"), e))?;
    capabilities::reset_effective(syscall.as_ref())
        .map_err(|e| Failure::other("reset effective capabilities", e))?;
    if let Some(caps) = process.capabilities() {
        capabilities::drop_privileges(caps, syscall.as_ref())
            .map_err(|e| Failure::other("set capabilities", e))?;
    }
    if chdir_later {
        nix::unistd::chdir(cwd).map_err(|e| chdir_failure(cwd, e))?;
    }
    if process.no_new_privileges() == Some(true) {
        nix::sys::prctl::set_no_new_privs().map_err(|e| Failure::errno("set no_new_privs", e))?;
    }
    // Last: the filter may forbid what comes before. Without no_new_privs the kernel wants
    // CAP_SYS_ADMIN for it, which the process then still holds (`keep_sys_admin_until_exec`)
    // and loses at `execve` (it is in none of the sets that survive it).
    if let Some(filter) = seccomp {
        filter
            .load()
            .map_err(|e| Failure::io("load seccomp filter", e))?;
    }
    execvpe(process.args().as_deref().unwrap_or_default(), &env)
}

fn chdir_failure(cwd: &Path, e: Errno) -> Failure {
    Failure::errno(
        format!(
            "chdir to cwd ({:?}) set in config.json failed",
            cwd.display().to_string()
        ),
        e,
    )
}

/// Default dispositions and an empty signal mask, as a new process expects (the shim blocks
/// SIGCHLD and ignores SIGPIPE and the C library's signals 32 and 33; ignored signals would
/// stay ignored across `execve`).
fn reset_signals() {
    // All zero is SIG_DFL with no flags and an empty mask in every architecture's
    // `struct sigaction` (large enough for any of them); the C library's `signal` refuses
    // the signals it reserves, the kernel does not.
    let default = [0u64; 4];
    for sig in 1..=nix::libc::SIGRTMAX() {
        // SAFETY: the kernel reads a `struct sigaction` from `default`, which outlives the
        // call; no handler is installed. SIGKILL and SIGSTOP fail harmlessly.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_rt_sigaction,
                sig,
                default.as_ptr(),
                std::ptr::null_mut::<u64>(),
                8usize,
            )
        };
    }
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
}

/// Create the process's pty in the container's devpts, make it the controlling terminal and
/// stdio, and send the master to the shim over the console connection.
fn setup_pty(console: RawFd) -> Result<(), Failure> {
    let step = "create the exec's terminal";
    let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(|e| Failure::errno(step, e))?;
    nix::pty::grantpt(&master).map_err(|e| Failure::errno(step, e))?;
    nix::pty::unlockpt(&master).map_err(|e| Failure::errno(step, e))?;
    // The peer through the master itself, not a path in the container's /dev/pts.
    // SAFETY: TIOCGPTPEER takes open flags and returns a new descriptor, owned below.
    let slave = unsafe {
        nix::libc::ioctl(
            master.as_raw_fd(),
            nix::libc::TIOCGPTPEER,
            nix::libc::O_RDWR | nix::libc::O_CLOEXEC,
        )
    };
    if slave < 0 {
        return Err(Failure::errno(step, Errno::last()));
    }
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    let slave = unsafe { OwnedFd::from_raw_fd(slave) };
    // SAFETY: TIOCSCTTY takes an integer argument (0: do not steal a terminal).
    if unsafe { nix::libc::ioctl(slave.as_raw_fd(), nix::libc::TIOCSCTTY, 0) } < 0 {
        return Err(Failure::errno(
            "set the controlling terminal",
            Errno::last(),
        ));
    }
    for target in 0..3 {
        nix::unistd::dup2(slave.as_raw_fd(), target).map_err(|e| Failure::errno(step, e))?;
    }
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        console,
        &[IoSlice::new(b"/dev/ptmx")],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| Failure::errno("send the terminal to the shim", e))?;
    close(console);
    Ok(())
}

/// Give the process's stdio to its user (runc's `fixStdioPermissions`), so that it can reopen
/// them (`/dev/stdout`, `/proc/self/fd/1`); the group stays (a pty's is `tty`), `/dev/null`
/// as it is.
fn fix_stdio_owner(uid: u32) {
    let null = std::fs::metadata("/dev/null").ok();
    for fd in 0..3 {
        // SAFETY: stdio is open for the life of the process; only inspected and chowned.
        let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
        let Ok(st) = rustix::fs::fstat(fd) else {
            continue;
        };
        if st.st_uid == uid
            || null.as_ref().is_some_and(|n| {
                n.rdev() == st.st_rdev
                    && rustix::fs::FileType::from_raw_mode(st.st_mode).is_char_device()
            })
        {
            continue;
        }
        let _ = rustix::fs::fchown(fd, Some(rustix::fs::Uid::from_raw(uid)), None);
    }
}

/// The environment with `HOME` from the container's `/etc/passwd` when it has none (`/`
/// for a user without an entry), as runc sets it.
fn with_home(mut env: Vec<String>, uid: u32) -> Vec<String> {
    let has_home = env
        .iter()
        .any(|e| e.strip_prefix("HOME=").is_some_and(|v| !v.is_empty()));
    if has_home {
        return env;
    }
    let home = read_passwd()
        .and_then(|passwd| {
            passwd.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2].parse() == Ok(uid)).then(|| f[5].to_string())
            })
        })
        .unwrap_or_else(|| "/".to_string());
    env.retain(|e| !e.starts_with("HOME="));
    env.push(format!("HOME={home}"));
    env
}

/// The container's `/etc/passwd`, if it is a regular file: the container owns it, and a FIFO
/// or device there must not hold the exec (and with it the shim) up.
fn read_passwd() -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open("/etc/passwd")
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut text = String::new();
    f.take(1 << 20).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `execve` the command, looked up in the environment's `PATH` when it has no `/` (the
/// first candidate that runs; a candidate that exists but cannot run is reported only when
/// none runs, as `execvp` does).
fn execvpe(args: &[String], env: &[String]) -> Result<std::convert::Infallible, Failure> {
    let cstr = |s: &str| {
        std::ffi::CString::new(s).map_err(|_| Failure::other("exec", "a NUL byte in the command"))
    };
    let argv = args
        .iter()
        .map(|a| cstr(a))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = env.iter().map(|e| cstr(e)).collect::<Result<Vec<_>, _>>()?;
    let Some(name) = args.first() else {
        return Err(Failure::other("exec", "no command given"));
    };
    if name.contains('/') {
        let e = nix::unistd::execve(&cstr(name)?, &argv, &envp).unwrap_err();
        return Err(Failure::errno("exec", e));
    }
    let path = env
        .iter()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or(DEFAULT_PATH);
    let mut denied = false;
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = cstr(&format!("{dir}/{name}"))?;
        match nix::unistd::execve(&candidate, &argv, &envp).unwrap_err() {
            Errno::EACCES => denied = true,
            Errno::ENOENT | Errno::ENOTDIR | Errno::ESTALE | Errno::ELOOP | Errno::ENAMETOOLONG => {
            }
            e => return Err(Failure::errno("exec", e)),
        }
    }
    Err(Failure::errno(
        "exec",
        if denied { Errno::EACCES } else { Errno::ENOENT },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_is_kept_or_found() {
        let env = vec!["PATH=/bin".to_string(), "HOME=/x".to_string()];
        assert_eq!(with_home(env.clone(), 0), env);
        // No passwd entry: `/`, as runc.
        let env = with_home(vec!["HOME=".to_string()], 4_242_424);
        assert_eq!(env, ["HOME=/"]);
    }

    #[test]
    fn failed_steps_become_dockers_errors() {
        let e = start_error("nope", "exec", "no such file", Some(Errno::ENOENT as i32));
        assert!(matches!(e, RuntimeError::ExecutableNotFound { name } if name == "nope"));
        let e = start_error(
            "/etc",
            "exec",
            "permission denied",
            Some(Errno::EACCES as i32),
        );
        assert!(matches!(e, RuntimeError::ExecutableNotRunnable { .. }));
        let cwd = chdir_failure(Path::new("/x"), Errno::ENOENT);
        let e = start_error("sh", &cwd.step, &cwd.message, cwd.errno);
        assert_eq!(e.docker_exit_code(), Some(127));
        assert!(e.oci_exec_message().unwrap().contains(
            "chdir to cwd (\"/x\") set in config.json failed: no such file or directory"
        ));
    }
}
