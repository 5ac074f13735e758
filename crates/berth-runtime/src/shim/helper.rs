//! Short-lived helper processes that do the shim's heavy work.
//!
//! A shim lives as long as its container, so what it keeps resident matters more than what it
//! does once. Creating a container (libcontainer's builder, the runtime spec with Docker's
//! seccomp profile, cgroup setup), starting it, running an exec and deleting the runtime state
//! touch several megabytes of code and heap. The shim runs each of these in a forked child
//! ([`run`]): the pages the child touches are the child's, and its exit gives them back. The
//! shim itself only ever touches its event loop, so an idle shim stays near the size of an
//! empty process.
//!
//! Processes the helper creates (a container's init, an exec) are its children; when it exits
//! they are reparented to the shim, which is a child subreaper, and reaped by its loop as
//! before. File descriptors the helper opened (pipes, the pty master) come back to the shim
//! with `SCM_RIGHTS`, its result as a JSON message on the same `SOCK_SEQPACKET` socket.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use nix::sys::wait::waitpid;
use nix::unistd::{ForkResult, fork};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::RuntimeError;

/// Most descriptors a helper hands back (stdout, stderr, stdin).
const MAX_FDS: usize = 4;

/// A [`RuntimeError`] as it crosses from the helper to the shim: the variants the daemon tells
/// apart keep their identity, the rest their message.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "error", rename_all = "snake_case")]
enum WireError {
    NotFound { name: String },
    NotRunnable { name: String },
    InvalidConfig { message: String },
    ExecStart { reason: String },
    Create { id: String, message: String },
    Other { message: String },
}

impl From<RuntimeError> for WireError {
    fn from(e: RuntimeError) -> WireError {
        match e {
            RuntimeError::ExecutableNotFound { name } => WireError::NotFound { name },
            RuntimeError::ExecutableNotRunnable { name } => WireError::NotRunnable { name },
            RuntimeError::InvalidConfig(message) => WireError::InvalidConfig { message },
            RuntimeError::ExecStart { reason } => WireError::ExecStart { reason },
            RuntimeError::Create { id, message } => WireError::Create { id, message },
            other => WireError::Other {
                message: other.to_string(),
            },
        }
    }
}

impl WireError {
    fn into_error(self, what: &str) -> RuntimeError {
        match self {
            WireError::NotFound { name } => RuntimeError::ExecutableNotFound { name },
            WireError::NotRunnable { name } => RuntimeError::ExecutableNotRunnable { name },
            WireError::InvalidConfig { message } => RuntimeError::InvalidConfig(message),
            WireError::ExecStart { reason } => RuntimeError::ExecStart { reason },
            WireError::Create { id, message } => RuntimeError::Create { id, message },
            WireError::Other { message } => RuntimeError::Helper {
                what: what.to_string(),
                message,
            },
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum Outcome<T> {
    Ok { value: T },
    Err(WireError),
}

fn helper_err(what: &str, message: impl Into<String>) -> RuntimeError {
    RuntimeError::Helper {
        what: what.to_string(),
        message: message.into(),
    }
}

/// Run `f` in a forked child and return its value and the descriptors it handed back. `what`
/// names the work in errors. The caller must be single-threaded (the shim is).
pub(crate) fn run<T, F>(what: &str, f: F) -> Result<(T, Vec<OwnedFd>), RuntimeError>
where
    T: Serialize + DeserializeOwned,
    F: FnOnce() -> Result<(T, Vec<OwnedFd>), RuntimeError>,
{
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| helper_err(what, format!("socketpair: {e}")))?;
    // SAFETY: the shim is single-threaded, so the child may run arbitrary code after fork.
    let child = match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(ours);
            // The shim's descriptors (its socket and clients, logs, other processes' pipes
            // and ptys) are no business of the processes the helper creates, which libcontainer
            // only marks close-on-exec: closed for real, before any of them exists.
            close_inherited(theirs.as_raw_fd());
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let (outcome, fds) = match outcome {
                Ok(Ok((value, fds))) => (Outcome::Ok { value }, fds),
                Ok(Err(e)) => (Outcome::Err(WireError::from(e)), Vec::new()),
                Err(_) => (
                    Outcome::Err(WireError::Other {
                        message: "helper panicked".into(),
                    }),
                    Vec::new(),
                ),
            };
            let msg = serde_json::to_vec(&outcome).unwrap_or_default();
            let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
            let cmsg = [ControlMessage::ScmRights(&raw)];
            let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsg };
            let _ = sendmsg::<()>(
                theirs.as_raw_fd(),
                &[IoSlice::new(&msg)],
                cmsgs,
                MsgFlags::empty(),
                None,
            );
            // SAFETY: _exit ends the child without running the parent's exit handlers or
            // destructors twice.
            unsafe { nix::libc::_exit(0) }
        }
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => return Err(helper_err(what, format!("fork: {e}"))),
    };
    drop(theirs);
    // Results are a few hundred bytes (an error chain at most a few KiB); a larger message
    // would arrive truncated and fail to parse. Kept small: the shim's heap stays resident.
    let mut buf = vec![0u8; 16 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
    let received = loop {
        let mut iov = [IoSliceMut::new(&mut buf)];
        match recvmsg::<()>(
            ours.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => break Err(helper_err(what, format!("receive result: {e}"))),
            Ok(msg) => {
                let mut fds = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            // SAFETY: the kernel just installed these descriptors for us.
                            fds.extend(
                                raw.into_iter()
                                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                            );
                        }
                    }
                }
                break Ok((msg.bytes, fds));
            }
        }
    };
    let _ = waitpid(child, None);
    let (len, fds) = received?;
    if len == 0 {
        return Err(helper_err(what, "the helper died without answering"));
    }
    match serde_json::from_slice::<Outcome<T>>(&buf[..len]) {
        Ok(Outcome::Ok { value }) => Ok((value, fds)),
        Ok(Outcome::Err(e)) => Err(e.into_error(what)),
        Err(e) => Err(helper_err(what, format!("bad result: {e}"))),
    }
}

/// Closes every descriptor above stdio except `keep` (the result socket).
fn close_inherited(keep: RawFd) {
    close_all_except(&[keep]);
}

/// Closes every descriptor above stdio except those in `keep`. For a freshly forked,
/// single-threaded child that ends with `_exit` or `execve`: the objects that owned the
/// closed descriptors must never be used (or dropped) again.
pub(crate) fn close_all_except(keep: &[RawFd]) {
    let close_range = |first: RawFd, last: RawFd| {
        if first > last {
            return;
        }
        // SAFETY: closes descriptors of this freshly forked, single-threaded child only; the
        // objects that own them are never used again here (see the function).
        let rc = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_close_range,
                first as nix::libc::c_uint,
                last as nix::libc::c_uint,
                0 as nix::libc::c_uint,
            )
        };
        if rc != 0 {
            // Before Linux 5.9: one by one, as far as the descriptor limit.
            let max = rustix::process::getrlimit(rustix::process::Resource::Nofile)
                .current
                .unwrap_or(1024)
                .min(1 << 20) as RawFd;
            for fd in first..=last.min(max) {
                // SAFETY: as above.
                unsafe { nix::libc::close(fd) };
            }
        }
    };
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first = 3;
    for fd in keep {
        close_range(first, fd - 1);
        first = fd + 1;
    }
    close_range(first, RawFd::MAX);
}

/// Makes libcontainer's procfs access open a handle per use instead of one cached handle.
///
/// pathrs (libcontainer's safe path library) keeps one private, detached `subset=pid` procfs
/// mount open for the life of the process. Made in libcontainer's intermediate process, which
/// is still in the host's PID namespace, it is a view of the host's processes; an init that
/// joins another container's PID namespace inherits it (close-on-exec only) while it already
/// lives there, so until `execve` a process in that container with `CAP_SYS_PTRACE` could
/// open `/proc/<pid>/fd/<n>/1/root`: the host's root. pathrs gives up its cache for good when the
/// cached descriptor stops being a procfs (its guard for runtimes that close descriptors):
/// make the handle now, in the helper, and put `/dev/null` in its place. Every later handle
/// is then owned by the code that uses it and closed after that use.
pub(crate) fn defuse_procfs_cache() {
    use std::os::fd::AsFd;
    let Ok(handle) = pathrs::procfs::ProcfsHandle::new() else {
        return;
    };
    let fd = handle.as_fd().as_raw_fd();
    drop(handle);
    // An uncached handle was closed with the drop: nothing is left to defuse.
    let still_procfs = rustix::fs::fstatfs(
        // SAFETY: only inspected; a cached handle's descriptor stays open (its cache owns it).
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
    )
    // `f_type`'s width differs between architectures.
    .is_ok_and(
        #[allow(clippy::unnecessary_cast)]
        |st| st.f_type as i64 == nix::libc::PROC_SUPER_MAGIC as i64,
    );
    if !still_procfs {
        return;
    }
    if let Ok(null) = std::fs::File::open("/dev/null") {
        // SAFETY: replaces the cache's descriptor with /dev/null (the cache keeps owning the
        // number); `null` itself is closed on drop.
        unsafe { nix::libc::dup3(null.as_raw_fd(), fd, nix::libc::O_CLOEXEC) };
    }
    // The next use finds the cache invalid and marks it bad for the life of the process.
    let _ = pathrs::procfs::ProcfsHandle::new();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_errors_and_descriptors_come_back() {
        let (v, fds) = run("test", || Ok((42u32, Vec::new()))).unwrap();
        assert_eq!(v, 42);
        assert!(fds.is_empty());

        let e = run::<u32, _>("test", || {
            Err(RuntimeError::ExecutableNotFound {
                name: "nope".into(),
            })
        })
        .unwrap_err();
        assert!(matches!(e, RuntimeError::ExecutableNotFound { name } if name == "nope"));

        let (_, fds) = run("test", || {
            let (r, w) = super::super::server::pipe()?;
            use std::io::Write;
            (&w).write_all(b"hi").unwrap();
            Ok(((), vec![OwnedFd::from(r)]))
        })
        .unwrap();
        let mut s = String::new();
        use std::io::Read;
        std::fs::File::from(fds.into_iter().next().unwrap())
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "hi");
    }
}
