//! The shim process (`berth-shim <bundle>`): single-threaded, no async runtime. See the
//! module docs of [`crate::shim`] for its life cycle.

use std::fs::File;
use std::io::{ErrorKind, IoSliceMut, Read, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use libcontainer::container::Container;
use libcontainer::container::builder::ContainerBuilder;
use libcontainer::syscall::syscall::SyscallType;
use libcontainer::workload::default::get_executor as default_executor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, kill, signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use super::helper;
use super::io::bind_long;
use super::log::{LogDriver, Stream};
use super::lookup::{check_cwd, check_executable};
use super::loopback;
use super::nsexec;
use super::oci_cli::OciCli;
use super::{
    ContainerStatus, ErrorReason, ExecConfig, ExecState, Handshake, Request, Response, ShimState,
};
use crate::bundle::{Bundle, ExitRecord, ShimConfig, replace_file, write_json_atomic};
use crate::error::RuntimeError;
use crate::seccomp_bpf::{CompiledFilter, keep_sys_admin_until_exec};

/// How long output is still collected after init exited, for processes outside the
/// container's pid namespace that keep the pipes open (`--pid host`).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Finished execs are forgotten this long after they end (the daemon keeps its own record of
/// them once it has their exit; it only asks again after a restart)...
const FORGET_EXEC_AFTER: Duration = Duration::from_secs(15 * 60);
/// ...or sooner when more than this many finished ones pile up (a health check is an exec
/// every interval: without a bound a long-lived shim would grow forever).
const FINISHED_EXECS_KEPT: usize = 64;

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
    match Supervisor::start(&bundle, !create_only) {
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
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sup.run()));
            if run.is_err() {
                // Never leave a container running without its supervisor.
                let _ = kill(sup.pid, Signal::SIGKILL);
                let _ = waitpid(sup.pid, None);
                sup.driver.delete_in_helper(&sup.id);
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

/// What an idle shim gives back (see [`Release::collect`]).
struct Release {
    /// Runs of resident pages of private read-only file mappings (program code, read-only
    /// data) that are still the file's: none has a private (copy-on-write) copy.
    code: Vec<(usize, usize)>,
    /// The lowest address of the main thread's stack mapping.
    stack: Option<usize>,
    page_size: usize,
}

impl Release {
    /// Finds the memory an idle shim can give back, and trims the free heap.
    ///
    /// Start-up (and every attach, exec or health check) touches code the idle loop never runs
    /// again, and the kernel maps code in 64 KiB fault-around windows, so about a megabyte of
    /// code and read-only data stays mapped; those pages stay in the page cache (shared with
    /// the other shims) and come back on the next use. `/proc/self/pagemap` tells which pages
    /// are the file's own: `MADV_DONTNEED` on those loses nothing, while a page with a private
    /// copy (data the loader relocated, in the mapping of the read-only-after-relocation
    /// data) would lose its contents, so those stay. The stack's deep frames (reading these
    /// files itself, serde) are dead once the loop is back at the top.
    fn collect() -> Release {
        // SAFETY: sysconf only reads a constant of the system.
        let page_size = unsafe { nix::libc::sysconf(nix::libc::_SC_PAGESIZE) };
        let mut release = Release {
            code: Vec::new(),
            stack: None,
            page_size: usize::try_from(page_size).unwrap_or(4096),
        };
        let (Ok(maps), Ok(pagemap)) = (
            std::fs::read_to_string("/proc/self/maps"),
            File::open("/proc/self/pagemap"),
        ) else {
            return release;
        };
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let range = fields.next().unwrap_or_default();
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            let Some((start, end)) = range.split_once('-').and_then(|(s, e)| {
                Some((
                    usize::from_str_radix(s, 16).ok()?,
                    usize::from_str_radix(e, 16).ok()?,
                ))
            }) else {
                continue;
            };
            if path == "[stack]" {
                release.stack = Some(start);
            }
            // Private read-only file mappings only (not [vdso], shared or anonymous memory).
            if path.starts_with('/') && perms.ends_with('p') && !perms.contains('w') {
                release.file_pages(&pagemap, start, end);
            }
        }
        // Free heap pages (buffers of a finished exec or attach) go back to the kernel too.
        // SAFETY: malloc_trim only releases memory the allocator holds free.
        unsafe {
            nix::libc::malloc_trim(0);
        }
        release
    }

    /// Adds the runs of pages of `[start, end)` that are resident and still the file's.
    fn file_pages(&mut self, pagemap: &File, start: usize, end: usize) {
        use std::os::unix::fs::FileExt;
        // pagemap: one 64-bit entry per page; bit 63 "present", bit 61 "file page or shared
        // anonymous" (a private copy of a file page is anonymous).
        const PRESENT: u64 = 1 << 63;
        const FILE: u64 = 1 << 61;
        let pages = (end - start) / self.page_size;
        let mut entries = vec![0u8; pages * 8];
        let offset = (start / self.page_size * 8) as u64;
        if pagemap.read_exact_at(&mut entries, offset).is_err() {
            return;
        }
        let mut run: Option<usize> = None;
        for (i, entry) in entries.chunks_exact(8).enumerate() {
            let bits = u64::from_ne_bytes(entry.try_into().expect("8-byte chunk"));
            let addr = start + i * self.page_size;
            if bits & PRESENT != 0 && bits & FILE != 0 {
                run.get_or_insert(addr);
            } else if let Some(from) = run.take() {
                self.code.push((from, addr));
            }
        }
        if let Some(from) = run {
            self.code.push((from, end));
        }
    }

    /// Drops the pages: the last thing before the loop blocks in `poll`. Every page of code
    /// that runs after the `madvise` faults back in with its 64 KiB window, so giving the
    /// pages back earlier (and then running the loop's bookkeeping) would refill a dozen
    /// windows; here only the windows of this call and of `poll` come back.
    #[inline(always)]
    fn apply(&self) {
        for &(start, end) in &self.code {
            // SAFETY: the range holds only pages of a private, read-only file mapping of this
            // process that have no private copy: dropping them only unmaps page-cache pages,
            // which fault back in unchanged.
            unsafe {
                nix::libc::madvise(
                    start as *mut nix::libc::c_void,
                    end - start,
                    nix::libc::MADV_DONTNEED,
                );
            }
        }
        if let Some(start) = self.stack {
            release_dead_stack(start, self.page_size);
        }
    }
}

/// Gives back the pages of the stack mapping (lowest address `start`) below this call's frame,
/// less a margin for the calls still to come (madvise, poll, a signal frame). Not inlined: its
/// frame lies below every frame of its callers, and the ABI keeps nothing below the stack
/// pointer but a 128-byte red zone.
#[inline(never)]
fn release_dead_stack(start: usize, page_size: usize) {
    let marker = 0u8;
    let here = std::hint::black_box(std::ptr::addr_of!(marker)) as usize;
    let end = here.saturating_sub(STACK_KEEP) & !(page_size - 1);
    if end > start {
        // SAFETY: [start, end) is the unused part of this thread's stack mapping, below every
        // live frame; its pages read back as zeros when the stack grows into them again.
        unsafe {
            nix::libc::madvise(
                start as *mut nix::libc::c_void,
                end - start,
                nix::libc::MADV_DONTNEED,
            );
        }
    }
}

/// How long the shim must have been idle (after start-up, an exec or a client) before it
/// gives memory back, in milliseconds.
const SETTLE_MS: u8 = 100;

/// Stack kept below the frame of [`release_dead_stack`] when the rest is given back.
const STACK_KEEP: usize = 8 * 1024;

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

fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> RuntimeError {
    move |e| RuntimeError::io(op, path, e)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

/// Output queued for one control client beyond which it is dropped (it stopped reading).
const MAX_CLIENT_BACKLOG: usize = 4 * 1024 * 1024;

/// Output queued for one stream client at which the shim stops reading its process's output
/// until the client takes some: flow control, never loss. A process then blocks in its
/// writes, as it does under Docker when an attached client stops reading.
const STREAM_HIGH_WATER: usize = 1024 * 1024;

/// A stream client that takes nothing for this long while it holds its process back is
/// dropped: one that stopped reading altogether (a stuck peer) must not stall the container
/// for good. Docker would wait forever; a slow client keeps making progress and is never hit.
const STREAM_STALL_LIMIT: Duration = Duration::from_secs(30);

/// Most output one [`Supervisor::pump`] call moves, so that one busy process cannot keep the
/// loop from its other descriptors (stdin, clients, other processes).
const PUMP_BUDGET: usize = 256 * 1024;
/// After [`DRAIN_AFTER_EXIT`], at most this many budgets of output already written are still
/// taken from a process's pipe (16 MiB: more than a pipe or pty holds).
const LATE_DRAIN_ROUNDS: usize = 64;

/// Whose stdio a stream connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Init,
    Exec(usize),
}

/// One process's stdio as the shim holds it.
#[derive(Default)]
pub(crate) struct ProcIo {
    pub(crate) out: Option<File>,
    pub(crate) err: Option<File>,
    pub(crate) stdin: Option<File>,
    /// Bytes from clients not yet taken by the process.
    stdin_buf: Vec<u8>,
    /// Close stdin once `stdin_buf` is written.
    close_stdin: bool,
    /// The pty master (tty processes), for resizing.
    pty: Option<File>,
    tty: bool,
}

impl ProcIo {
    /// The descriptors to hand from a helper to the shim: the pty master alone, or stdout,
    /// stderr and (when kept) stdin. Returns (tty, has stdin, descriptors).
    fn into_fds(self) -> (bool, bool, Vec<OwnedFd>) {
        if self.tty {
            let fds = self.out.into_iter().map(OwnedFd::from).collect();
            return (true, self.stdin.is_some(), fds);
        }
        let stdin = self.stdin.is_some();
        let fds = [self.out, self.err, self.stdin]
            .into_iter()
            .flatten()
            .map(OwnedFd::from)
            .collect();
        (false, stdin, fds)
    }

    /// The inverse of [`ProcIo::into_fds`], in the shim; descriptors are made non-blocking.
    fn from_fds(tty: bool, stdin: bool, fds: Vec<OwnedFd>) -> std::io::Result<ProcIo> {
        let mut fds = fds.into_iter().map(File::from);
        let missing = || std::io::Error::other("the helper handed back too few descriptors");
        let io = if tty {
            let master = fds.next().ok_or_else(missing)?;
            ProcIo {
                stdin: if stdin {
                    Some(master.try_clone()?)
                } else {
                    None
                },
                pty: Some(master.try_clone()?),
                out: Some(master),
                tty: true,
                ..Default::default()
            }
        } else {
            let out = fds.next().ok_or_else(missing)?;
            let err = fds.next().ok_or_else(missing)?;
            let input = if stdin {
                Some(fds.next().ok_or_else(missing)?)
            } else {
                None
            };
            ProcIo {
                out: Some(out),
                err: Some(err),
                stdin: input,
                ..Default::default()
            }
        };
        set_nonblocking(&io.out);
        set_nonblocking(&io.err);
        set_nonblocking(&io.stdin);
        Ok(io)
    }

    fn drained(&self) -> bool {
        self.out.is_none() && self.err.is_none()
    }

    /// Write what clients sent; close stdin when asked and done.
    fn feed_stdin(&mut self) {
        let Some(f) = &mut self.stdin else {
            self.stdin_buf.clear();
            return;
        };
        while !self.stdin_buf.is_empty() {
            match f.write(&self.stdin_buf) {
                Ok(n) => {
                    self.stdin_buf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.stdin = None;
                    self.stdin_buf.clear();
                    return;
                }
            }
        }
        if self.close_stdin {
            self.stdin = None;
        }
    }
}

/// An extra process started with `exec_start`.
struct Exec {
    id: String,
    pid: Pid,
    io: ProcIo,
    exit: Option<(i32, Instant)>,
    /// Exited and drained: clients got EOF, waiters their answer.
    done: bool,
    waiters: Vec<UnixStream>,
}

impl Exec {
    fn state(&self) -> ExecState {
        ExecState {
            exec_id: self.id.clone(),
            pid: self.pid.as_raw(),
            running: !self.done,
            exit_code: if self.done {
                self.exit.map(|(c, _)| c)
            } else {
                None
            },
        }
    }
}

enum Mode {
    /// JSON requests, one per line.
    Control,
    /// A process's stdio.
    Stream {
        target: Target,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    },
}

struct Client {
    stream: UnixStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    mode: Mode,
    /// The peer shut down its write side.
    read_closed: bool,
    /// The target finished: shut our write side down once `out` is sent.
    finishing: bool,
    /// Our write side is shut down.
    shut: bool,
    /// Drop at the end of this round.
    closed: bool,
    /// When `out` last shrank (or started filling): a stalled client is dropped.
    last_progress: Instant,
}

impl Client {
    fn new(stream: UnixStream) -> Client {
        Client {
            stream,
            inbuf: Vec::new(),
            out: Vec::new(),
            mode: Mode::Control,
            read_closed: false,
            last_progress: Instant::now(),
            finishing: false,
            shut: false,
            closed: false,
        }
    }

    fn target(&self) -> Option<Target> {
        match self.mode {
            Mode::Stream { target, .. } => Some(target),
            Mode::Control => None,
        }
    }

    /// Send queued output without blocking; a broken peer is dropped.
    fn flush(&mut self) {
        while !self.out.is_empty() && !self.closed {
            match self.stream.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                    self.last_progress = Instant::now();
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.closed = true,
            }
        }
        if self.out.is_empty() && self.finishing && !self.shut {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
            self.shut = true;
            if self.read_closed {
                self.closed = true;
            }
        }
    }

    /// Queue a chunk of output, dropping a client that lets too much pile up.
    fn send(&mut self, data: &[u8]) {
        if self.closed || self.shut {
            return;
        }
        if self.out.is_empty() {
            self.last_progress = Instant::now();
        }
        self.out.extend_from_slice(data);
        self.flush();
        // Stream clients are held back by flow control instead (`STREAM_HIGH_WATER`).
        if matches!(self.mode, Mode::Control) && self.out.len() > MAX_CLIENT_BACKLOG {
            eprintln!("berth-shim: dropping an attached client that does not read");
            self.closed = true;
        }
    }
}

/// The OCI runtime the shim drives: the embedded libcontainer, or an external runtime's
/// command line ([`OciCli`]). Everything else (stdio, logs, reaping, exit records) is shared.
/// Its operations run in [`helper`] processes, so the shim itself never touches libcontainer.
enum Driver {
    /// libcontainer, with its state under this root.
    Embedded(PathBuf),
    OciCli(OciCli),
}

impl Driver {
    fn new(bundle: &Bundle, cfg: &ShimConfig) -> Driver {
        match &cfg.runtime {
            None => Driver::Embedded(bundle.runtime_root()),
            Some(rt) => Driver::OciCli(OciCli::new(bundle, &cfg.id, rt)),
        }
    }

    fn load(root: &Path, id: &str) -> Result<Container, RuntimeError> {
        Container::load(root.join(id)).map_err(|e| create_err(id, &e))
    }

    /// Let the created (held) init run its command.
    fn start(&self, id: &str) -> Result<(), RuntimeError> {
        match self {
            Driver::Embedded(root) => Self::load(root, id)?
                .start()
                .map_err(|e| create_err(id, &e)),
            Driver::OciCli(c) => c.start(),
        }
    }

    /// Remove the runtime's state and the container's cgroup (the init has exited).
    fn delete(&self, id: &str) {
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
    fn state_dir(&self, bundle: &Bundle) -> PathBuf {
        match self {
            Driver::Embedded(_) => bundle.runtime_root(),
            Driver::OciCli(c) => c.state_root().to_path_buf(),
        }
    }

    /// Clean up after a failed start.
    fn cleanup_failed(&self, bundle: &Bundle, id: &str) {
        if let Driver::OciCli(c) = self {
            c.delete();
        }
        cleanup_failed(bundle, id, None);
    }

    /// Remove the runtime's state and the container's cgroup once the init has exited. For
    /// the embedded runtime this is a few `rmdir`s, done here: only when a cgroup cannot be
    /// removed (processes left in it, say from `--pid host`) does libcontainer's forced delete
    /// run, in a helper, to kill them.
    fn remove(&self, id: &str, cgroups_path: Option<&Path>) {
        if let (Driver::Embedded(root), Some(cgroups)) = (self, cgroups_path)
            && remove_cgroups(cgroups)
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
    fn delete_in_helper(&self, id: &str) {
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
struct Spawned {
    pid: i32,
    tty: bool,
    stdin: bool,
    /// The container's cgroup (init only), for OOM detection.
    #[serde(default)]
    cgroups_path: Option<PathBuf>,
}

/// A running container and everything the shim holds for it.
struct Supervisor {
    bundle: Bundle,
    id: String,
    driver: Driver,
    pid: Pid,
    started: bool,
    stdin_once: bool,
    cgroups_path: Option<PathBuf>,
    io: ProcIo,
    log: Box<dyn LogDriver>,
    /// Closed once the container has exited (see [`Supervisor::finish`]).
    listener: Option<UnixListener>,
    sigfd: SignalFd,
    clients: Vec<Client>,
    waiters: Vec<UnixStream>,
    execs: Vec<Exec>,
    exec_seq: u64,
    exited: Option<(WaitStatus, Instant)>,
}

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

pub(crate) fn pipe() -> Result<(File, File), RuntimeError> {
    let (r, w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::io("create", "pipe", nix_io(e)))?;
    Ok((File::from(r), File::from(w)))
}

fn set_nonblocking(f: &Option<File>) {
    if let Some(f) = f {
        let _ = fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
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
fn embedded_stdio(
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

/// Create the container with the embedded libcontainer: the init is held before exec.
/// The spec joins an existing PID namespace (`--pid container:<id>`).
fn joins_pid_namespace(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter().any(|n| {
                n.typ() == oci_spec::runtime::LinuxNamespaceType::Pid && n.path().is_some()
            })
        })
}

fn create_embedded(
    bundle: &Bundle,
    cfg: &ShimConfig,
    console_path: &Path,
    seccomp: Option<CompiledFilter>,
) -> Result<(Container, Pid, ProcIo, Option<UnixListener>), RuntimeError> {
    let builder = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
        .with_root_path(bundle.runtime_root())
        .map_err(|e| create_err(&cfg.id, &e))?
        .with_executor(SeccompExecutor { seccomp });
    let (builder, io, console) = embedded_stdio(builder, cfg.tty, cfg.open_stdin, console_path)?;

    // The container's init is cloned from this process during build(): it must inherit
    // default signal dispositions and an empty signal mask (SIGCHLD is not blocked yet).
    let built = with_child_signal_state(|| {
        builder
            .as_init(bundle.dir())
            .with_systemd(false)
            .with_detach(true)
            .build()
    });
    let container = match built {
        Ok(c) => c,
        Err(e) => {
            let e = create_err(&cfg.id, &e);
            cleanup_failed(bundle, &cfg.id, None);
            return Err(e);
        }
    };
    let Some(pid) = container.pid() else {
        cleanup_failed(bundle, &cfg.id, Some(container));
        return Err(RuntimeError::Create {
            id: cfg.id.clone(),
            message: "runtime reported no pid".into(),
        });
    };
    Ok((container, pid, io, console))
}

/// Create (and with `start_now` start) the container; runs in a [`helper`] process. The init
/// is the helper's child until the helper exits, then the shim's.
fn create_in_helper(
    bundle: &Bundle,
    cfg: &ShimConfig,
    driver: &Driver,
    start_now: bool,
) -> Result<(Spawned, Vec<OwnedFd>), RuntimeError> {
    let spec = Spec::load(bundle.config_path()).map_err(|e| RuntimeError::Create {
        id: cfg.id.clone(),
        message: format!(
            "load {}: {}",
            bundle.config_path().display(),
            error_chain(&e)
        ),
    })?;
    precheck(bundle, &spec)?;
    let console_path = bundle.dir().join("console.sock");
    let (mut container, pid, mut io, mut console) = match driver {
        Driver::Embedded(_) => {
            let seccomp = embedded_seccomp(bundle, &spec)?;
            // An init that joins another container's PID namespace is visible there from its
            // clone on, like an exec's process: no host procfs handle may reach it.
            if joins_pid_namespace(&spec) {
                helper::defuse_procfs_cache();
            }
            let (c, pid, io, console) = create_embedded(bundle, cfg, &console_path, seccomp)?;
            (Some(c), pid, io, console)
        }
        Driver::OciCli(cli) => match cli.create(cfg, &console_path) {
            Ok((pid, io, console)) => (None, pid, io, console),
            Err(e) => {
                cleanup_failed(bundle, &cfg.id, None);
                return Err(e);
            }
        },
    };
    let fail = |container: Option<Container>, e: RuntimeError| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        match container {
            Some(c) => cleanup_failed(bundle, &cfg.id, Some(c)),
            None => driver.cleanup_failed(bundle, &cfg.id),
        }
        e
    };
    if let Err(e) = replace_file(&bundle.init_pid_path(), pid.as_raw().to_string().as_bytes()) {
        return Err(fail(container, e));
    }
    if loopback::has_private_network(&spec)
        && let Err(e) = loopback::bring_up(pid)
    {
        return Err(fail(
            container,
            RuntimeError::Create {
                id: cfg.id.clone(),
                message: e.to_string(),
            },
        ));
    }
    if let Some(listener) = console.take() {
        match pty_io(&listener, cfg.open_stdin) {
            Ok(p) => {
                // The process is still held before exec: size the terminal now.
                if let (Some((rows, cols)), Some(pty)) = (cfg.console_size, p.pty.as_ref())
                    && rows > 0
                    && cols > 0
                    && let Err(e) = set_winsize(pty, rows, cols)
                {
                    eprintln!("berth-shim: cannot set the initial terminal size: {e}");
                }
                io = p;
            }
            Err(e) => {
                return Err(fail(
                    container,
                    RuntimeError::io("receive pty from", &console_path, e),
                ));
            }
        }
        let _ = std::fs::remove_file(&console_path);
    }
    if start_now {
        let started = match (&mut container, driver) {
            (Some(c), _) => c.start().map_err(|e| create_err(&cfg.id, &e)),
            (None, Driver::OciCli(cli)) => cli.start(),
            (None, Driver::Embedded(_)) => unreachable!("the embedded runtime made a container"),
        };
        if let Err(e) = started {
            return Err(fail(container, e));
        }
    }
    let (tty, stdin, fds) = io.into_fds();
    let spawned = Spawned {
        pid: pid.as_raw(),
        tty,
        stdin,
        cgroups_path: spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()),
    };
    Ok((spawned, fds))
}

/// The exec's OCI process: the container's, with the exec's command, environment,
/// directory, user, terminal and capabilities.
fn exec_process(
    base: Option<&oci_spec::runtime::Process>,
    cfg: &ExecConfig,
) -> Result<oci_spec::runtime::Process, RuntimeError> {
    let mut p = base.cloned().unwrap_or_default();
    if cfg.args.is_empty() {
        return Err(RuntimeError::InvalidConfig("exec: no command given".into()));
    }
    p.set_args(Some(cfg.args.clone()));
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &cfg.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if !cfg.cwd.is_empty() {
        p.set_cwd(PathBuf::from(&cfg.cwd));
    }
    p.set_terminal(Some(cfg.tty));
    p.set_console_size(None);
    if let Some(u) = &cfg.user {
        let mut user = oci_spec::runtime::User::default();
        user.set_uid(u.uid);
        user.set_gid(u.gid);
        user.set_additional_gids(
            (!u.additional_gids.is_empty()).then(|| u.additional_gids.clone()),
        );
        p.set_user(user);
    }
    if cfg.privileged || !cfg.cap_add.is_empty() {
        let mut set = if cfg.privileged {
            let all = crate::spec::capability_set(true, &[], &[])?;
            let all = crate::spec::within_bounding(all, crate::spec::own_bounding_set());
            crate::spec::to_oci_caps(&all)?
        } else {
            p.capabilities()
                .as_ref()
                .and_then(|c| c.bounding().clone())
                .unwrap_or_default()
        };
        set.extend(crate::spec::to_oci_caps(&cfg.cap_add)?);
        let mut caps = oci_spec::runtime::LinuxCapabilities::default();
        caps.set_bounding(Some(set.clone()));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set));
        caps.set_inheritable(None);
        caps.set_ambient(None);
        p.set_capabilities(Some(caps));
    }
    // libcontainer treats a present `false` like `true`.
    if p.no_new_privileges() != Some(true) {
        p.set_no_new_privileges(None);
    }
    Ok(p)
}

/// Start an exec's process; runs in a [`helper`] process, which the exec's process outlives
/// (it is then the shim's child).
fn exec_in_helper(
    bundle: &Bundle,
    id: &str,
    driver: &Driver,
    cfg: &ExecConfig,
    n: u64,
) -> Result<(Spawned, Vec<OwnedFd>), RuntimeError> {
    let spec = Spec::load(bundle.config_path()).map_err(|e| RuntimeError::Create {
        id: id.to_string(),
        message: format!(
            "load {}: {}",
            bundle.config_path().display(),
            error_chain(&e)
        ),
    })?;
    let mut process = exec_process(spec.process().as_ref(), cfg)?;
    let seccomp = match driver {
        Driver::Embedded(_) => embedded_seccomp(bundle, &spec)?,
        Driver::OciCli(_) => None,
    };
    if seccomp.is_some() {
        keep_sys_admin_until_exec(&mut process);
    }
    let rootfs = spec
        .root()
        .as_ref()
        .map(|r| bundle.dir().join(r.path()))
        .unwrap_or_default();
    // runc's checks, before any process exists, in its words: the directory first, then
    // the command (looked up relative to it).
    check_cwd(&rootfs, process.cwd(), &mount_destinations(&spec))?;
    check_executable(
        &rootfs,
        &cfg.args[0],
        process.env().as_deref().unwrap_or_default(),
        process.cwd(),
        &mount_destinations(&spec),
    )?;
    let process_path = driver.state_dir(bundle).join(format!("exec-{n}.json"));
    write_json_atomic(&process_path, &process)?;
    let console_path = bundle.dir().join(format!("exec-{n}.sock"));
    let result = match driver {
        Driver::Embedded(_) => nsexec::spawn(bundle, &spec, &process, cfg, &console_path, seccomp),
        Driver::OciCli(cli) => cli.exec(
            &cfg.exec_id,
            cfg.tty,
            cfg.stdin,
            &process_path,
            &console_path,
        ),
    };
    let _ = std::fs::remove_file(&process_path);
    let _ = std::fs::remove_file(&console_path);
    let (pid, io) = result?;
    let (tty, stdin, fds) = io.into_fds();
    let spawned = Spawned {
        pid: pid.as_raw(),
        tty,
        stdin,
        cgroups_path: None,
    };
    Ok((spawned, fds))
}

fn exit_code(status: WaitStatus) -> (i32, Option<i32>) {
    match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
        _ => (255, None),
    }
}

fn reason_error(message: String, reason: ErrorReason) -> Response {
    Response::Error {
        message,
        reason: Some(reason),
    }
}

impl Supervisor {
    fn start(dir: &Path, start_now: bool) -> Result<Supervisor, RuntimeError> {
        let bundle = Bundle::new(dir);
        let cfg: ShimConfig = bundle.read_shim_config()?;
        replace_file(
            &bundle.shim_pid_path(),
            std::process::id().to_string().as_bytes(),
        )?;
        let driver = Driver::new(&bundle, &cfg);
        let (spawned, fds) = helper::run("create container", || {
            create_in_helper(&bundle, &cfg, &driver, start_now)
        })?;
        let pid = Pid::from_raw(spawned.pid);
        let fail = |e: RuntimeError| {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            let _ = helper::run("clean up", || {
                driver.cleanup_failed(&bundle, &cfg.id);
                Ok(((), Vec::new()))
            });
            e
        };
        let io = match ProcIo::from_fds(spawned.tty, spawned.stdin, fds) {
            Ok(io) => io,
            Err(e) => return Err(fail(RuntimeError::io("receive stdio of", dir, e))),
        };
        let log = match cfg.log.open(&bundle.log_path(&cfg)) {
            Ok(l) => l,
            Err(e) => return Err(fail(RuntimeError::io("open", bundle.log_path(&cfg), e))),
        };
        let sock = bundle.socket_path();
        let _ = std::fs::remove_file(&sock);
        let listener = match bind_long(&sock) {
            Ok(l) => l,
            Err(e) => return Err(fail(RuntimeError::io("bind", &sock, e))),
        };
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        let sigfd = mask.thread_block().and_then(|_| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        });
        let sigfd = match sigfd {
            Ok(s) => s,
            Err(e) => return Err(fail(RuntimeError::io("create", "signalfd", nix_io(e)))),
        };
        let _ = listener.set_nonblocking(true);
        Ok(Supervisor {
            cgroups_path: spawned.cgroups_path,
            id: cfg.id.clone(),
            stdin_once: cfg.stdin_once,
            started: start_now,
            bundle,
            driver,
            pid,
            io,
            log,
            listener: Some(listener),
            sigfd,
            clients: Vec::new(),
            waiters: Vec::new(),
            execs: Vec::new(),
            exec_seq: 0,
            exited: None,
        })
    }

    /// Drops stream clients that hold their process back and took nothing for
    /// [`STREAM_STALL_LIMIT`]; returns whether any client still holds a process back.
    fn drop_stalled(&mut self) -> bool {
        let mut holding = false;
        for c in &mut self.clients {
            if c.target().is_none() || c.closed || c.shut || c.out.len() < STREAM_HIGH_WATER {
                continue;
            }
            if c.last_progress.elapsed() >= STREAM_STALL_LIMIT {
                eprintln!("berth-shim: dropping an attached client that stopped reading");
                c.closed = true;
            } else {
                holding = true;
            }
        }
        holding
    }

    /// A stream client of `t` has [`STREAM_HIGH_WATER`] queued: its output waits in the pipe.
    fn throttled(&self, t: Target) -> bool {
        self.clients.iter().any(|c| {
            c.target() == Some(t) && !c.closed && !c.shut && c.out.len() >= STREAM_HIGH_WATER
        })
    }

    fn io_mut(&mut self, t: Target) -> &mut ProcIo {
        match t {
            Target::Init => &mut self.io,
            Target::Exec(i) => &mut self.execs[i].io,
        }
    }

    fn run(&mut self) {
        // A SIGCHLD may have arrived before the signalfd existed.
        self.reap();
        // Start-up counts as activity: memory is given back once the daemon's requests after
        // the handshake (attach, start) are answered, off their critical path.
        let mut busy = true;
        let mut release: Option<Release> = None;
        loop {
            self.settle_execs();
            self.forget_old_execs();
            if let Some((_, at)) = self.exited {
                let execs_done = self.execs.iter().all(|e| e.done);
                let drained = self.io.drained() && execs_done;
                // Output held back by a slow client is not abandoned.
                let late = at.elapsed() >= DRAIN_AFTER_EXIT && !self.throttled(Target::Init);
                if late && !drained {
                    self.take_what_is_written(Target::Init);
                }
                if drained || late {
                    self.finish();
                    // Streams end before the clean-up: `run` returns when its attach stream
                    // does.
                    self.linger();
                    self.clean_up();
                    return;
                }
            }
            // Idle: no exec running, no client but control connections with nothing queued
            // (the daemon's `wait` connection stays open).
            let idle = self.execs.iter().all(|e| e.done)
                && self
                    .clients
                    .iter()
                    .all(|c| matches!(c.mode, Mode::Control) && c.out.is_empty());
            busy |= !idle;
            let pending_exit =
                self.exited.is_some() || self.execs.iter().any(|e| e.exit.is_some() && !e.done);
            // Back to idle after start-up or after clients or execs (a health check, `exec`,
            // `attach`): once nothing has happened for a moment, give back the memory they
            // touched (once per such episode).
            let settling = busy && idle && self.started && !pending_exit;
            // A held-back process is checked again for a stalled client now and then.
            let holding = self.drop_stalled();
            self.clients.retain(|c| !c.closed);
            let timeout = if pending_exit || holding {
                PollTimeout::from(50u8)
            } else if settling {
                PollTimeout::from(SETTLE_MS)
            } else {
                PollTimeout::NONE
            };
            let Ok(ready) = self.poll_once(timeout, release.take().as_ref()) else {
                continue;
            };
            if settling && ready.is_empty() {
                release = Some(Release::collect());
                busy = false;
                continue;
            }
            for (src, flags) in ready {
                match src {
                    Src::Signal => self.reap(),
                    Src::Out(t) => {
                        self.pump(t, Stream::Stdout);
                    }
                    Src::Err(t) => {
                        self.pump(t, Stream::Stderr);
                    }
                    Src::Stdin(t) => self.io_mut(t).feed_stdin(),
                    Src::Listener => self.accept(),
                    Src::Client(i) => self.serve(i, flags),
                }
            }
            self.clients.retain(|c| !c.closed);
        }
    }

    /// Waits for the next events; with `release`, gives memory back first (see
    /// [`Release::apply`] for why here).
    fn poll_once(
        &self,
        timeout: PollTimeout,
        release: Option<&Release>,
    ) -> nix::Result<Vec<(Src, PollFlags)>> {
        let mut srcs = vec![Src::Signal];
        if self.listener.is_some() {
            srcs.push(Src::Listener);
        }
        let mut fds = vec![PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN)];
        if let Some(l) = &self.listener {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        let targets = std::iter::once((Target::Init, &self.io)).chain(
            self.execs
                .iter()
                .enumerate()
                .filter(|(_, e)| !e.done)
                .map(|(i, e)| (Target::Exec(i), &e.io)),
        );
        for (t, io) in targets {
            // A throttled process's output stays in its pipe (or pty) until the client
            // catches up; the client's POLLOUT brings the loop back.
            let held = self.throttled(t);
            if let Some(f) = io.out.as_ref().filter(|_| !held) {
                srcs.push(Src::Out(t));
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            if let Some(f) = io.err.as_ref().filter(|_| !held) {
                srcs.push(Src::Err(t));
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            }
            if let Some(f) = &io.stdin
                && !io.stdin_buf.is_empty()
            {
                srcs.push(Src::Stdin(t));
                fds.push(PollFd::new(f.as_fd(), PollFlags::POLLOUT));
            }
        }
        for (i, c) in self.clients.iter().enumerate() {
            let mut ev = PollFlags::empty();
            let stdin_full = match c.mode {
                Mode::Stream {
                    target,
                    stdin: true,
                    ..
                } => {
                    let io = match target {
                        Target::Init => &self.io,
                        Target::Exec(i) => &self.execs[i].io,
                    };
                    !io.stdin_buf.is_empty()
                }
                _ => false,
            };
            if !c.read_closed && !stdin_full {
                ev |= PollFlags::POLLIN;
            }
            if !c.out.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            srcs.push(Src::Client(i));
            fds.push(PollFd::new(c.stream.as_fd(), ev));
        }
        if let Some(r) = release {
            r.apply();
        }
        poll(&mut fds, timeout)?;
        Ok(srcs
            .into_iter()
            .zip(
                fds.iter()
                    .map(|f| f.revents().unwrap_or(PollFlags::empty())),
            )
            .filter(|(_, r)| !r.is_empty())
            .collect())
    }

    fn reap(&mut self) {
        while let Ok(Some(_)) = self.sigfd.read_signal() {}
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let pid = status.pid();
                    if pid == Some(self.pid) && self.exited.is_none() {
                        self.exited = Some((status, Instant::now()));
                    } else if let Some(e) = self
                        .execs
                        .iter_mut()
                        .find(|e| Some(e.pid) == pid && e.exit.is_none())
                    {
                        e.exit = Some((exit_code(status).0, Instant::now()));
                    }
                }
            }
        }
    }

    /// Finish execs that exited and whose output is drained (or took too long to drain).
    fn settle_execs(&mut self) {
        for i in 0..self.execs.len() {
            let throttled = self.throttled(Target::Exec(i));
            let e = &self.execs[i];
            let Some((_, at)) = e.exit else { continue };
            let late = at.elapsed() >= DRAIN_AFTER_EXIT && !throttled;
            if e.done || !(e.io.drained() || late) {
                continue;
            }
            if !e.io.drained() {
                self.take_what_is_written(Target::Exec(i));
            }
            let e = &mut self.execs[i];
            e.done = true;
            e.io = ProcIo::default();
            let state = e.state();
            for mut w in e.waiters.drain(..) {
                let _ = w.set_nonblocking(false);
                respond(&mut w, &Response::ExecState(state.clone()));
            }
            self.end_streams(Target::Exec(i));
        }
    }

    /// Drop finished execs that are old, or beyond the newest [`FINISHED_EXECS_KEPT`], unless a
    /// client still streams from one. Stream clients name execs by index: those after a removed
    /// one move down.
    fn forget_old_execs(&mut self) {
        let finished = self.execs.iter().filter(|e| e.done).count();
        let mut excess = finished.saturating_sub(FINISHED_EXECS_KEPT);
        let mut i = 0;
        while i < self.execs.len() {
            let e = &self.execs[i];
            let old = e
                .exit
                .is_some_and(|(_, at)| at.elapsed() >= FORGET_EXEC_AFTER);
            let streamed = self
                .clients
                .iter()
                .any(|c| c.target() == Some(Target::Exec(i)));
            if e.done && (old || excess > 0) && !streamed && e.waiters.is_empty() {
                self.execs.remove(i);
                excess = excess.saturating_sub(1);
                for c in &mut self.clients {
                    if let Mode::Stream {
                        target: Target::Exec(j),
                        ..
                    } = &mut c.mode
                        && *j > i
                    {
                        *j -= 1;
                    }
                }
                continue;
            }
            i += 1;
        }
    }

    /// The target's output ended: its stream clients get EOF once their output is sent.
    fn end_streams(&mut self, t: Target) {
        for c in &mut self.clients {
            if c.target() == Some(t) {
                c.finishing = true;
                c.flush();
            }
        }
    }

    /// A process exited [`DRAIN_AFTER_EXIT`] ago and its output has not ended: something it
    /// left behind holds the pipe open. What it wrote is in the pipe and is sent before the
    /// streams end: the deadline runs from the exit the shim *saw*, and a busy loop (a slow
    /// exec start, a starved CPU) can pass it before the output was read at all. Bounded: a
    /// leftover that writes without end does not keep the process from finishing.
    fn take_what_is_written(&mut self, t: Target) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            for _ in 0..LATE_DRAIN_ROUNDS {
                if self.pump(t, stream) < PUMP_BUDGET {
                    break;
                }
            }
        }
    }

    // Not inlined (nor `serve`): a stack buffer in the loop's own frame would stay resident
    // in every idle shim; below it, it is given back with the rest of the dead stack.
    /// Moves what the process wrote to `stream` to its clients (and the log); the bytes moved.
    #[inline(never)]
    fn pump(&mut self, t: Target, stream: Stream) -> usize {
        let mut buf = [0u8; 32 * 1024];
        let mut moved = 0;
        loop {
            if moved >= PUMP_BUDGET || self.throttled(t) {
                return moved;
            }
            let io = self.io_mut(t);
            let slot = match stream {
                Stream::Stdout => &mut io.out,
                Stream::Stderr => &mut io.err,
            };
            let Some(f) = slot else { return moved };
            let n = match f.read(&mut buf) {
                Ok(0) => 0,
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return moved,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // EIO: the pty's last slave closed.
                Err(_) => 0,
            };
            if n == 0 {
                *slot = None;
                if t == Target::Init {
                    let _ = self.log.flush_stream(stream);
                }
                return moved;
            }
            moved += n;
            let tty = io.tty;
            let data = &buf[..n];
            if t == Target::Init
                && let Err(e) = self.log.write(stream, data)
            {
                eprintln!("berth-shim: write log: {e}");
            }
            self.broadcast(t, stream, tty, data);
        }
    }

    fn broadcast(&mut self, t: Target, stream: Stream, tty: bool, data: &[u8]) {
        let mut framed = Vec::new();
        for c in &mut self.clients {
            let Mode::Stream {
                target,
                stdout,
                stderr,
                ..
            } = c.mode
            else {
                continue;
            };
            let wanted = match stream {
                Stream::Stdout => stdout,
                Stream::Stderr => stderr,
            };
            if target != t || !wanted {
                continue;
            }
            if tty {
                c.send(data);
            } else {
                if framed.is_empty() {
                    framed.push(if stream == Stream::Stdout { 1 } else { 2 });
                    framed.extend_from_slice(&[0, 0, 0]);
                    framed.extend_from_slice(&(data.len() as u32).to_be_bytes());
                    framed.extend_from_slice(data);
                }
                c.send(&framed);
            }
        }
    }

    fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(true);
            self.clients.push(Client::new(stream));
        }
    }

    /// Serve client `i`: send its queued output, read what it sent.
    #[inline(never)]
    fn serve(&mut self, i: usize, flags: PollFlags) {
        if flags.contains(PollFlags::POLLOUT) {
            self.clients[i].flush();
        }
        if self.clients[i].read_closed {
            if flags.intersects(PollFlags::POLLHUP | PollFlags::POLLERR) {
                self.clients[i].closed = true;
            }
            return;
        }
        let mut chunk = [0u8; 16 * 1024];
        let mut eof = false;
        loop {
            match self.clients[i].stream.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    self.clients[i].inbuf.extend_from_slice(&chunk[..n]);
                    if self.clients[i].inbuf.len() >= 64 * 1024 {
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.clients[i].closed = true;
                    return;
                }
            }
        }
        if matches!(self.clients[i].mode, Mode::Control) {
            self.serve_requests(i);
        }
        if matches!(self.clients[i].mode, Mode::Stream { .. }) {
            self.stream_input(i);
        }
        if eof {
            self.client_eof(i);
        }
    }

    fn serve_requests(&mut self, i: usize) {
        while matches!(self.clients[i].mode, Mode::Control)
            && let Some(pos) = self.clients[i].inbuf.iter().position(|&b| b == b'\n')
        {
            let line: Vec<u8> = self.clients[i].inbuf.drain(..=pos).collect();
            let resp = match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Wait) => {
                    // Answered in finish(), once exit.json is written.
                    if let Ok(s) = self.clients[i].stream.try_clone() {
                        self.waiters.push(s);
                    }
                    continue;
                }
                Ok(Request::ExecWait { exec_id }) => match self.find_exec(&exec_id) {
                    Ok(x) if !self.execs[x].done => {
                        if let Ok(s) = self.clients[i].stream.try_clone() {
                            self.execs[x].waiters.push(s);
                        }
                        continue;
                    }
                    Ok(x) => Response::ExecState(self.execs[x].state()),
                    Err(r) => r,
                },
                Ok(Request::Attach {
                    stdin,
                    stdout,
                    stderr,
                }) => self.attach(i, stdin, stdout, stderr),
                Ok(Request::ExecStart(cfg)) => self.exec_start(i, cfg),
                Ok(req) => self.handle(req),
                Err(e) => Response::error(format!("bad request: {e}")),
            };
            self.reply(i, &resp);
        }
    }

    /// Queue a JSON answer line to client `i`.
    fn reply(&mut self, i: usize, resp: &Response) {
        let mut line = serde_json::to_vec(resp).expect("responses serialize");
        line.push(b'\n');
        self.clients[i].send(&line);
    }

    /// Bytes from a stream client go to its target's stdin.
    fn stream_input(&mut self, i: usize) {
        let data = std::mem::take(&mut self.clients[i].inbuf);
        let Mode::Stream {
            target,
            stdin: true,
            ..
        } = self.clients[i].mode
        else {
            return;
        };
        let io = self.io_mut(target);
        if io.stdin.is_some() && !data.is_empty() {
            io.stdin_buf.extend_from_slice(&data);
            io.feed_stdin();
        }
    }

    fn client_eof(&mut self, i: usize) {
        let c = &mut self.clients[i];
        c.read_closed = true;
        match c.mode {
            Mode::Control => {
                // A waiter keeps its connection (a clone) in the waiter list.
                c.closed = c.out.is_empty();
                if !c.closed {
                    c.finishing = true;
                }
            }
            Mode::Stream {
                target,
                stdin: true,
                ..
            } => {
                if c.shut {
                    c.closed = true;
                }
                // Docker's rule: a client's end of input closes the process's stdin only
                // without a tty, and for the container's init only with `StdinOnce`. With a
                // tty nothing is closed: the terminal stays the shell's, and the next client
                // (after a detach, say) can type into it.
                let once = match target {
                    Target::Init => self.stdin_once,
                    Target::Exec(_) => true,
                };
                let io = self.io_mut(target);
                if once && !io.tty {
                    io.close_stdin = true;
                    io.feed_stdin();
                }
            }
            Mode::Stream { .. } => {
                if c.shut {
                    c.closed = true;
                }
            }
        }
    }

    /// Registers a client whose stream came with the release (see [`receive_release`]), as if
    /// it had connected and asked to attach: it gets the same answer first.
    fn attach_from_start(&mut self, stream: UnixStream, stdin: bool, stdout: bool, stderr: bool) {
        let _ = stream.set_nonblocking(true);
        self.clients.push(Client::new(stream));
        let i = self.clients.len() - 1;
        let resp = self.attach(i, stdin, stdout, stderr);
        self.reply(i, &resp);
    }

    fn attach(&mut self, i: usize, stdin: bool, stdout: bool, stderr: bool) -> Response {
        if self.exited.is_some() {
            return reason_error(
                format!("container {} is not running", self.id),
                ErrorReason::NotRunning,
            );
        }
        self.clients[i].mode = Mode::Stream {
            target: Target::Init,
            stdin,
            stdout,
            stderr,
        };
        Response::Attached { tty: self.io.tty }
    }

    fn find_exec(&self, exec_id: &str) -> Result<usize, Response> {
        self.execs
            .iter()
            .position(|e| e.id == exec_id)
            .ok_or_else(|| {
                reason_error(
                    format!("no such exec instance: {exec_id}"),
                    ErrorReason::NoSuchExec {
                        exec_id: exec_id.to_string(),
                    },
                )
            })
    }

    fn exec_start(&mut self, i: usize, cfg: ExecConfig) -> Response {
        if !self.started || self.exited.is_some() {
            return reason_error(
                format!("container {} is not running", self.id),
                ErrorReason::NotRunning,
            );
        }
        if self.execs.iter().any(|e| e.id == cfg.exec_id) {
            return reason_error(
                format!("exec instance {} already exists", cfg.exec_id),
                ErrorReason::ExecExists {
                    exec_id: cfg.exec_id.clone(),
                },
            );
        }
        match self.spawn_exec(&cfg) {
            Ok(x) => {
                let e = &self.execs[x];
                let resp = Response::ExecStarted {
                    pid: e.pid.as_raw(),
                    tty: e.io.tty,
                };
                if !cfg.detach {
                    self.clients[i].mode = Mode::Stream {
                        target: Target::Exec(x),
                        stdin: cfg.stdin,
                        stdout: cfg.stdout,
                        stderr: cfg.stderr,
                    };
                }
                resp
            }
            Err(RuntimeError::ExecutableNotFound { name }) => reason_error(
                format!("exec: \"{name}\": executable file not found in $PATH"),
                ErrorReason::ExecutableNotFound { name },
            ),
            Err(RuntimeError::ExecutableNotRunnable { name }) => reason_error(
                format!("exec: \"{name}\": permission denied"),
                ErrorReason::ExecutableNotRunnable { name },
            ),
            Err(RuntimeError::ExecStart { reason }) => {
                reason_error(reason.clone(), ErrorReason::ExecStart { reason })
            }
            Err(e) => Response::error(e.to_string()),
        }
    }

    fn spawn_exec(&mut self, cfg: &ExecConfig) -> Result<usize, RuntimeError> {
        if cfg.args.is_empty() {
            return Err(RuntimeError::InvalidConfig("exec: no command given".into()));
        }
        self.exec_seq += 1;
        let n = self.exec_seq;
        let (bundle, id, driver) = (&self.bundle, &self.id, &self.driver);
        let (spawned, fds) = helper::run(&format!("exec {}", cfg.exec_id), || {
            exec_in_helper(bundle, id, driver, cfg, n)
        })?;
        let pid = Pid::from_raw(spawned.pid);
        let io = match ProcIo::from_fds(spawned.tty, spawned.stdin, fds) {
            Ok(io) => io,
            Err(e) => {
                let _ = kill(pid, Signal::SIGKILL);
                return Err(RuntimeError::io("receive stdio of exec", bundle.dir(), e));
            }
        };
        self.execs.push(Exec {
            id: cfg.exec_id.clone(),
            pid,
            io,
            exit: None,
            done: false,
            waiters: Vec::new(),
        });
        // It may have exited already (its SIGCHLD came when the helper exited).
        self.reap();
        Ok(self.execs.len() - 1)
    }

    fn handle(&mut self, req: Request) -> Response {
        let not_running = |id: &str| {
            reason_error(
                format!("container {id} is not running"),
                ErrorReason::NotRunning,
            )
        };
        match req {
            Request::State => Response::State(ShimState {
                pid: self.pid.as_raw(),
                shim_pid: std::process::id() as i32,
                status: if self.exited.is_some() {
                    ContainerStatus::Exited
                } else if !self.started {
                    ContainerStatus::Created
                } else {
                    ContainerStatus::Running
                },
            }),
            Request::Start => {
                if self.exited.is_some() {
                    return not_running(&self.id);
                }
                if self.started {
                    return Response::error(format!("container {} is already started", self.id));
                }
                let (driver, id) = (&self.driver, &self.id);
                let started = match driver {
                    // A few file reads and one connect to the held init: done here, sparing
                    // a fork on the way to the command (the pages it touches are given back
                    // with the rest once the shim settles).
                    Driver::Embedded(_) => driver.start(id),
                    Driver::OciCli(_) => helper::run("start container", || {
                        driver.start(id).map(|()| ((), Vec::new()))
                    })
                    .map(|_| ()),
                };
                match started {
                    Ok(()) => {
                        self.started = true;
                        // A quick command may have exited while the runtime's start ran
                        // with SIGCHLD unblocked (its signal then discarded).
                        self.reap();
                        Response::Ok
                    }
                    Err(e) => Response::error(e.to_string()),
                }
            }
            Request::Kill { signal } => {
                if self.exited.is_some() {
                    return not_running(&self.id);
                }
                send_signal(self.pid, signal)
            }
            Request::CloseStdin => {
                self.io.close_stdin = true;
                self.io.feed_stdin();
                Response::Ok
            }
            Request::Resize { height, width } => resize(&self.io, height, width),
            Request::ExecResize {
                exec_id,
                height,
                width,
            } => match self.find_exec(&exec_id) {
                Ok(x) => resize(&self.execs[x].io, height, width),
                Err(r) => r,
            },
            Request::ExecState { exec_id } => match self.find_exec(&exec_id) {
                Ok(x) => Response::ExecState(self.execs[x].state()),
                Err(r) => r,
            },
            Request::ExecKill { exec_id, signal } => match self.find_exec(&exec_id) {
                Ok(x) if self.execs[x].exit.is_none() => send_signal(self.execs[x].pid, signal),
                Ok(_) => Response::error(format!("exec {exec_id} is not running")),
                Err(r) => r,
            },
            Request::Wait
            | Request::ExecWait { .. }
            | Request::Attach { .. }
            | Request::ExecStart(_) => unreachable!("handled by serve_requests"),
        }
    }

    fn finish(&mut self) {
        for s in [Stream::Stdout, Stream::Stderr] {
            let _ = self.log.flush_stream(s);
        }
        let (status, _) = self.exited.expect("finish after exit");
        let (exit_code, signal) = exit_code(status);
        let record = ExitRecord {
            exit_code,
            signal,
            finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
            oom_killed: self.cgroups_path.as_deref().map(oom_kills).unwrap_or(0) > 0,
        };
        if let Err(e) = write_json_atomic(&self.bundle.exit_path(), &record) {
            eprintln!("berth-shim: {e}");
        }
        // No new clients: they find exit.json. One still in the listen queue gets EOF (or a
        // reset) when the listener closes, and reads exit.json too.
        let _ = std::fs::remove_file(self.bundle.socket_path());
        self.listener = None;
        // Who waits learns of the exit before the clean-up: the daemon handles it (for
        // `run --rm`, the removal) while the cgroups and the runtime's state go.
        for mut w in self.waiters.drain(..) {
            let _ = w.set_nonblocking(false);
            respond(&mut w, &Response::Exited(record.clone()));
        }
        for e in &mut self.execs {
            let mut st = e.state();
            st.running = false;
            for mut w in e.waiters.drain(..) {
                let _ = w.set_nonblocking(false);
                respond(&mut w, &Response::ExecState(st.clone()));
            }
        }
    }

    /// Once the exit is reported: the cgroups and the runtime's state go.
    fn clean_up(&mut self) {
        self.driver.remove(&self.id, self.cgroups_path.as_deref());
        let _ = std::fs::remove_dir(self.bundle.runtime_root());
        // Last: a new start of this container waits while the file is there, so that it does
        // not create the cgroups and runtime state this shim is still removing
        // ([`super::Shim::spawn`]).
        let _ = std::fs::remove_file(self.bundle.shim_pid_path());
    }

    /// Give stream clients a bounded time to take their last output, then EOF.
    fn linger(&mut self) {
        for c in &mut self.clients {
            c.finishing = true;
            c.flush();
        }
        let deadline = Instant::now() + DRAIN_AFTER_EXIT;
        loop {
            self.clients.retain(|c| !c.closed && !c.out.is_empty());
            if self.clients.is_empty() || Instant::now() >= deadline {
                return;
            }
            let mut fds: Vec<PollFd> = self
                .clients
                .iter()
                .map(|c| PollFd::new(c.stream.as_fd(), PollFlags::POLLOUT))
                .collect();
            let left = deadline.saturating_duration_since(Instant::now());
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(left).unwrap_or(PollTimeout::ZERO),
            );
            drop(fds);
            for c in &mut self.clients {
                c.flush();
            }
        }
    }
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
struct SeccompExecutor {
    seccomp: Option<CompiledFilter>,
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
fn embedded_seccomp(bundle: &Bundle, spec: &Spec) -> Result<Option<CompiledFilter>, RuntimeError> {
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

fn send_signal(pid: Pid, signal: i32) -> Response {
    match Signal::try_from(signal) {
        Ok(sig) => match kill(pid, sig) {
            Ok(()) => Response::Ok,
            Err(e) => Response::error(format!("kill {pid}: {e}")),
        },
        Err(_) => Response::error(format!("invalid signal {signal}")),
    }
}

fn resize(io: &ProcIo, height: u16, width: u16) -> Response {
    match &io.pty {
        Some(pty) => match set_winsize(pty, height, width) {
            Ok(()) => Response::Ok,
            Err(e) => Response::error(format!("resize: {e}")),
        },
        None => Response::error("the process has no tty"),
    }
}

fn mount_destinations(spec: &Spec) -> Vec<PathBuf> {
    spec.mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().clone())
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Src {
    Signal,
    Listener,
    Out(Target),
    Err(Target),
    Stdin(Target),
    Client(usize),
}

fn respond(stream: &mut UnixStream, resp: &Response) {
    let mut line = serde_json::to_string(resp).expect("responses serialize");
    line.push('\n');
    let _ = stream.write_all(line.as_bytes());
}

fn create_err(id: &str, e: &libcontainer::error::LibcontainerError) -> RuntimeError {
    RuntimeError::Create {
        id: id.to_string(),
        message: error_chain(e),
    }
}

/// Remove what a failed start left: the runtime's state and cgroups, the sockets.
fn cleanup_failed(bundle: &Bundle, id: &str, container: Option<Container>) {
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

/// Refuse a command that is certainly missing from the root filesystem.
fn precheck(bundle: &Bundle, spec: &Spec) -> Result<(), RuntimeError> {
    let Some(process) = spec.process() else {
        return Ok(());
    };
    let args = process.args().as_deref().unwrap_or_default();
    // With `--init`, judge the command the init will run.
    let args = match args {
        [init, dashdash, rest @ ..] if init == crate::init::INIT_PATH && dashdash == "--" => rest,
        _ => args,
    };
    let Some(args0) = args.first() else {
        return Ok(());
    };
    let Some(root) = spec.root() else {
        return Ok(());
    };
    let rootfs = bundle.dir().join(root.path());
    let mounted = mount_destinations(spec);
    let env = process.env().clone().unwrap_or_default();
    check_executable(&rootfs, args0, &env, process.cwd(), &mounted)
}

fn set_winsize(pty: &File, rows: u16, cols: u16) -> std::io::Result<()> {
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

/// Remove the container's cgroup `cgroups_path` from every hierarchy (cgroup v1: one per
/// controller under `/sys/fs/cgroup`; v2: the unified tree itself). True when none is left;
/// false when one could not be removed (it still has processes).
fn remove_cgroups(cgroups_path: &Path) -> bool {
    // Only the cgroupfs layout libcontainer uses for an absolute path (never systemd's
    // `slice:prefix:name`, which this cannot resolve).
    let Ok(rel) = cgroups_path.strip_prefix("/") else {
        return false;
    };
    if rel.as_os_str().is_empty() || rel.to_string_lossy().contains(':') {
        return false;
    }
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(rel)];
    if let Ok(entries) = std::fs::read_dir(root) {
        dirs.extend(entries.flatten().map(|e| e.path().join(rel)));
    }
    let mut all = true;
    for dir in dirs {
        match std::fs::remove_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            // v2: `rmdir` of a controller file's parent path that is not a directory.
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => {}
            Err(_) => all = false,
        }
    }
    all
}

/// How often the OOM killer fired in the container's memory cgroup (v1 `memory.oom_control`
/// or v2 `memory.events`, whichever this host has).
pub fn oom_kills(cgroups_path: &Path) -> u64 {
    let rel = cgroups_path.strip_prefix("/").unwrap_or(cgroups_path);
    let candidates = [
        (
            Path::new("/sys/fs/cgroup/memory")
                .join(rel)
                .join("memory.oom_control"),
            "oom_kill ",
        ),
        (
            Path::new("/sys/fs/cgroup").join(rel).join("memory.events"),
            "oom_kill ",
        ),
    ];
    for (path, key) in candidates {
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
        }
    }
    0
}
