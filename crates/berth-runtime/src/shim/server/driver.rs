//! The OCI runtime the shim drives ([`Driver`]: the embedded libcontainer or an external
//! runtime's command line) and what creating a container and starting an exec share: the
//! seccomp executor, the new process's stdio (pipes, or a pty from the console socket),
//! clean-up after a failure.

use std::fs::File;
use std::io::{ErrorKind, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::workload::default::get_executor as default_executor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::sys::signal::{SigHandler, SigSet, Signal, signal};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::stdio::{ProcIo, nix_io, pipe};
use crate::bundle::{Bundle, ShimConfig};
use crate::error::RuntimeError;
use crate::seccomp_bpf::CompiledFilter;
use crate::shim::helper;
use crate::shim::io::bind_long;
use crate::shim::oci_cli::OciCli;

pub(super) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |e| RuntimeError::io(op, path, e)
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// The OCI runtime the shim drives: the embedded libcontainer, or an external runtime's
/// command line ([`OciCli`]). Everything else (stdio, logs, reaping, exit records) is shared.
/// Its operations run in [`helper`] processes, so the shim itself never touches libcontainer.
pub(super) enum Driver {
    /// libcontainer, with its state under this root.
    Embedded(PathBuf),
    OciCli(OciCli),
}

impl Driver {
    pub(super) fn new(bundle: &Bundle, cfg: &ShimConfig) -> Driver {
        match &cfg.runtime {
            None => Driver::Embedded(bundle.runtime_root()),
            Some(rt) => Driver::OciCli(OciCli::new(bundle, &cfg.id, rt)),
        }
    }

    fn load(root: &Path, id: &str) -> Result<Container, RuntimeError> {
        Container::load(root.join(id)).map_err(|e| create_err(id, &e))
    }

    /// Let the created (held) init run its command.
    pub(super) fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self {
            Driver::Embedded(root) => Self::load(root, id)?
                .start()
                .map_err(|e| create_err(id, &e)),
            Driver::OciCli(c) => c.start(),
        }
    }

    /// Remove the runtime's state and the container's cgroup (the init has exited).
    pub(super) fn delete(&self, id: &str) {
        match self {
            Driver::Embedded(root) => match Self::load(root, id) {
                Ok(mut c) => {
                    if let Err(e) = c.delete(true) {
                        eprintln!("berth-shim: delete container: {}", error_chain(&e));
                    }
                }
                Err(e) => eprintln!("berth-shim: delete container: {e}"),
            },
            Driver::OciCli(c) => c.delete(),
        }
    }

    /// Where exec process files are written.
    pub(super) fn state_dir(&self, bundle: &Bundle) -> PathBuf {
        match self {
            Driver::Embedded(_) => bundle.runtime_root(),
            Driver::OciCli(c) => c.state_root().to_path_buf(),
        }
    }

    /// Clean up after a failed start.
    pub(super) fn cleanup_failed(&self, bundle: &Bundle, id: &str) {
        if let Driver::OciCli(c) = self {
            c.delete();
        }
        cleanup_failed(bundle, id, None);
    }

    /// Remove the runtime's state and the container's cgroup once the init has exited. For
    /// the embedded runtime this is a few `rmdir`s, done here: only when a cgroup cannot be
    /// removed (processes left in it, say from `--pid host`) does libcontainer's forced delete
    /// run, in a helper, to kill them.
    pub(super) fn remove(&self, id: &str, cgroups_path: Option<&Path>) {
        if let (Driver::Embedded(root), Some(cgroups)) = (self, cgroups_path)
            && crate::cgroups::Cgroup::host(&cgroups.to_string_lossy()).is_some_and(|c| c.remove())
        {
            let state = root.join(id);
            if let Err(e) = std::fs::remove_dir_all(&state)
                && e.kind() != ErrorKind::NotFound
            {
                eprintln!("berth-shim: remove {}: {e}", state.display());
            }
            return;
        }
        self.delete_in_helper(id);
    }

    /// [`Driver::delete`] in a helper process.
    pub(super) fn delete_in_helper(&self, id: &str) {
        let done = helper::run("delete container", || {
            self.delete(id);
            Ok(((), Vec::new()))
        });
        if let Err(e) = done {
            eprintln!("berth-shim: {e}");
        }
    }
}

/// A process a helper created, as it reports it; its stdio descriptors travel alongside
/// (see [`ProcIo::into_fds`]).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Spawned {
    pub(super) pid: i32,
    pub(super) tty: bool,
    pub(super) stdin: bool,
    /// The container's cgroup (init only), for OOM detection.
    #[serde(default)]
    pub(super) cgroups_path: Option<PathBuf>,
}

/// Run `f` (a libcontainer call that forks) with the signal state a container process must
/// inherit: SIGCHLD unblocked, SIGPIPE default. Restored afterwards.
pub(crate) fn with_child_signal_state<T>(f: impl FnOnce() -> T) -> T {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    let _ = mask.thread_unblock();
    // SAFETY: restoring the default disposition installs no handler.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
    }
    let out = f();
    // SAFETY: ignoring a signal installs no handler.
    unsafe {
        let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
    }
    let _ = mask.thread_block();
    out
}

/// Receive a pty master on `listener` and split it into output, optional stdin and resize
/// handles.
pub(crate) fn pty_io(listener: &UnixListener, with_stdin: bool) -> std::io::Result<ProcIo> {
    let master = File::from(receive_pty(listener)?);
    let stdin = if with_stdin {
        Some(master.try_clone()?)
    } else {
        None
    };
    let pty = Some(master.try_clone()?);
    Ok(ProcIo {
        out: Some(master),
        stdin,
        pty,
        tty: true,
        ..Default::default()
    })
}

/// The stdio libcontainer gives a new process (a container's init or an exec): with a tty, a
/// console socket on which the pty master arrives after `build()`; otherwise three pipes whose
/// far ends the shim keeps (stdin only when the process reads it).
pub(super) fn embedded_stdio(
    builder: ContainerBuilder,
    tty: bool,
    keep_stdin: bool,
    console_path: &Path,
) -> Result<(ContainerBuilder, ProcIo, Option<UnixListener>), RuntimeError> {
    let mut io = ProcIo::default();
    if tty {
        let _ = std::fs::remove_file(console_path);
        let console = bind_long(console_path).map_err(io_err("bind", console_path))?;
        return Ok((
            builder.with_console_socket(Some(console_path)),
            io,
            Some(console),
        ));
    }
    let (in_r, in_w) = pipe()?;
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let builder = builder
        .with_stdin(OwnedFd::from(in_r))
        .with_stdout(OwnedFd::from(out_w))
        .with_stderr(OwnedFd::from(err_w));
    io.out = Some(out_r);
    io.err = Some(err_r);
    io.stdin = keep_stdin.then_some(in_w);
    Ok((builder, io, None))
}

/// Runs a container's command (its init or an exec) under the container's seccomp filter,
/// compiled by the daemon ([`crate::seccomp_bpf`]) and installed right before `execve`.
///
/// libcontainer is built without its own seccomp support: it would compile the profile with
/// libseccomp in every container (8–11 ms), and for an exec (tenant) it rebuilds the spec's
/// `linux` section without the filter at all. The process holds `CAP_SYS_ADMIN` here when it
/// has no `no_new_privs` ([`keep_sys_admin_until_exec`]), so the kernel accepts the filter;
/// `execve` then drops that capability, which is in none of the sets that survive it.
#[derive(Clone)]
pub(super) struct SeccompExecutor {
    pub(super) seccomp: Option<CompiledFilter>,
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(filter) = &self.seccomp {
            filter
                .load()
                .map_err(|e| ExecutorError::Other(format!("load seccomp filter: {e}")))?;
        }
        default_executor().exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        default_executor().validate(spec)
    }
}

/// The compiled seccomp filter the daemon wrote for a container whose spec has one. A spec
/// with a filter but no compiled program is refused: the container must not run unconfined.
pub(super) fn embedded_seccomp(
    bundle: &Bundle,
    spec: &Spec,
) -> Result<Option<CompiledFilter>, RuntimeError> {
    let wants = spec.linux().as_ref().is_some_and(|l| l.seccomp().is_some());
    if !wants {
        return Ok(None);
    }
    let path = bundle.seccomp_path();
    let bytes = std::fs::read(&path).map_err(|e| RuntimeError::io("read", &path, e))?;
    CompiledFilter::from_bytes(&bytes).map(Some).ok_or_else(|| {
        RuntimeError::io(
            "parse",
            &path,
            std::io::Error::other("not a seccomp BPF program"),
        )
    })
}

pub(super) fn mount_destinations(spec: &Spec) -> Vec<PathBuf> {
    spec.mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().clone())
        .collect()
}

pub(super) fn create_err(id: &str, e: &libcontainer::error::LibcontainerError) -> RuntimeError {
    RuntimeError::Create {
        id: id.to_string(),
        message: error_chain(e),
    }
}

/// Remove what a failed start left: the runtime's state and cgroups, the sockets.
pub(super) fn cleanup_failed(bundle: &Bundle, id: &str, container: Option<Container>) {
    let container = container.or_else(|| Container::load(bundle.runtime_root().join(id)).ok());
    if let Some(mut c) = container
        && let Err(e) = c.delete(true)
    {
        eprintln!("berth-shim: delete after failed start: {}", error_chain(&e));
    }
    let _ = std::fs::remove_dir_all(bundle.runtime_root().join(id));
    let _ = std::fs::remove_dir(bundle.runtime_root());
    let _ = std::fs::remove_file(bundle.dir().join("console.sock"));
    let _ = std::fs::remove_file(bundle.socket_path());
    let _ = std::fs::remove_file(bundle.init_pid_path());
    let _ = std::fs::remove_file(bundle.shim_pid_path());
}

pub(super) fn set_winsize(pty: &File, rows: u16, cols: u16) -> std::io::Result<()> {
    let ws = nix::pty::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one `struct winsize` from the pointer, which outlives the call.
    let rc = unsafe { nix::libc::ioctl(pty.as_raw_fd(), nix::libc::TIOCSWINSZ, &ws) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Accept libcontainer's connection on the console socket and take the pty master it sends.
fn receive_pty(listener: &UnixListener) -> std::io::Result<OwnedFd> {
    let (conn, _) = listener.accept()?;
    let mut name = [0u8; 4096];
    let mut iov = [IoSliceMut::new(&mut name)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(nix_io)?;
    for c in msg.cmsgs().map_err(nix_io)? {
        if let ControlMessageOwned::ScmRights(fds) = c
            && let Some(&fd) = fds.first()
        {
            // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
    }
    Err(std::io::Error::other(
        "no pty master received on the console socket",
    ))
}
