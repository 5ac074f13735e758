//! The shim process (`berth-shim <bundle>`): single-threaded, no async runtime. See the
//! module docs of [`crate::shim`] for its life cycle.
//!
//! Its modules, laid out as containerd's runc shim:
//! - `init`: creating (and starting) the container's init, and the `Container` the
//!   supervisor runs over (the OCI runtime, the bundle's files, SIGCHLD);
//! - `exec`: execs, their table and their start;
//! - `driver`: the OCI runtime (the embedded libcontainer or a runtime's command line) and
//!   what init and exec share;
//! - `stdio`: processes' stdio, clients, framing, flow control;
//! - `state`: the supervisor's loop and the container's life (exit, finish, linger, clean-up);
//! - `protocol`: `shim.sock`'s requests and their one dispatch;
//! - `release`: giving memory back when idle.

mod driver;
mod exec;
mod init;
mod protocol;
mod release;
mod state;
mod stdio;
#[cfg(test)]
mod tests;

use std::fs::File;
use std::io::{IoSliceMut, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::fcntl::{FcntlArg, fcntl};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::unistd::{ForkResult, fork, setsid};

pub(crate) use driver::{pty_io, with_child_signal_state};
pub(crate) use stdio::{ProcIo, pipe};

use super::Handshake;
use crate::bundle::Bundle;
use crate::error::RuntimeError;
use init::OciContainer;

/// Entry point of the `berth-shim` binary; returns the process exit code.
pub fn main() -> i32 {
    // Run from its sealed copy (`/proc/self/fd/N`) its name would be the descriptor's number:
    // the daemon recognizes shims by `comm` (and `ps` shows it).
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe { nix::libc::prctl(nix::libc::PR_SET_NAME, c"berth-shim".as_ptr(), 0, 0, 0) };
    let mut args = std::env::args_os().skip(1).peekable();
    let gated = args.next_if(|a| a == "--gated").is_some();
    let mut create_only = args.next_if(|a| a == "--create-only").is_some();
    let Some(bundle) = args.next().map(PathBuf::from) else {
        eprintln!("usage: berth-shim [--gated | --create-only] <bundle-dir>");
        return 2;
    };
    // SAFETY: the process is single-threaded here (nothing has spawned a thread yet), so the
    // child may run arbitrary code after fork.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            eprintln!("berth-shim: fork: {e}");
            return 1;
        }
    }
    let _ = setsid();
    let mut attached: Vec<EarlyClient> = Vec::new();
    if gated {
        // Started ahead of its bundle (`Shim::prepare`): wait until the daemon has written
        // it. The release says how to run the container, with the streams of clients that
        // attach from the start; end of file says it will not run.
        match receive_release() {
            Some((mode, clients)) => {
                create_only = mode == b'c';
                attached = clients;
            }
            None => return 0,
        }
    }
    let mut handshake = match detach_stdio(&Bundle::new(&bundle)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            return 1;
        }
    };
    let _ = nix::sys::prctl::set_child_subreaper(true);
    match OciContainer::create(&bundle, !create_only) {
        Ok(mut sup) => {
            // Before any output is read: these clients see all of it.
            for (stream, (stdin, stdout, stderr)) in attached {
                sup.attach_from_start(stream, stdin, stdout, stderr);
            }
            send_handshake(
                &mut handshake,
                &Handshake::Started {
                    pid: sup.pid.as_raw(),
                    shim_pid: std::process::id() as i32,
                },
            );
            drop(handshake);
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sup.run(true)));
            if run.is_err() {
                sup.container.abandon();
                return 1;
            }
            0
        }
        Err(e) => {
            eprintln!("berth-shim: {e}");
            let b = Bundle::new(&bundle);
            let _ = std::fs::remove_file(b.shim_pid_path());
            let _ = std::fs::remove_file(b.init_pid_path());
            let hs = match e {
                RuntimeError::ExecutableNotFound { name } => Handshake::NotFound { name },
                RuntimeError::ExecutableNotRunnable { name } => Handshake::NotRunnable { name },
                RuntimeError::InvalidConfig(message) => Handshake::InvalidConfig { message },
                RuntimeError::Create { message, .. } => Handshake::Failed { message },
                other => Handshake::Failed {
                    message: other.to_string(),
                },
            };
            send_handshake(&mut handshake, &hs);
            1
        }
    }
}

/// A client attached from the start: its stream, and whether it takes stdin, stdout, stderr.
type EarlyClient = (UnixStream, (bool, bool, bool));

/// The daemon's release of a gated shim (`PendingShim::go`): a mode byte (`c` create only,
/// `s` create and start), the attach clients' flags as JSON, their streams as descriptors.
fn receive_release() -> Option<(u8, Vec<EarlyClient>)> {
    let mut buf = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 16]);
    let (n, fds) = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(0, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
            Ok(msg) => {
                let mut fds = Vec::new();
                for c in msg.cmsgs().into_iter().flatten() {
                    if let ControlMessageOwned::ScmRights(raw) = c {
                        // SAFETY: descriptors just received, owned by nobody else.
                        fds.extend(
                            raw.into_iter()
                                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                        );
                    }
                }
                break (msg.bytes, fds);
            }
        }
    };
    let (&mode, flags) = buf[..n].split_first()?;
    let flags: Vec<(bool, bool, bool)> = if flags.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(flags).ok()?
    };
    let streams = fds.into_iter().map(UnixStream::from);
    Some((mode, streams.zip(flags).collect()))
}

fn send_handshake(f: &mut File, hs: &Handshake) {
    let mut line = serde_json::to_string(hs).expect("handshake serializes");
    line.push('\n');
    let _ = f.write_all(line.as_bytes());
}

/// Keep the daemon's pipe (fd 1) as a close-on-exec handshake fd; point stdin/stdout at
/// /dev/null and stderr at `shim.log`.
fn detach_stdio(bundle: &Bundle) -> std::io::Result<File> {
    let hs = fcntl(1, FcntlArg::F_DUPFD_CLOEXEC(3))?;
    // SAFETY: `hs` is a freshly duplicated descriptor owned by nobody else.
    let hs = unsafe { File::from_raw_fd(hs) };
    let null = File::options().read(true).write(true).open("/dev/null")?;
    let log = File::options()
        .create(true)
        .append(true)
        .open(bundle.shim_log_path())?;
    nix::unistd::dup2(null.as_raw_fd(), 0)?;
    nix::unistd::dup2(null.as_raw_fd(), 1)?;
    nix::unistd::dup2(log.as_raw_fd(), 2)?;
    Ok(hs)
}
