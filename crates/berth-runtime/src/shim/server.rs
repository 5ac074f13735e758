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
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigHandler, SigSet, Signal, kill, signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::{ForkResult, Pid, fork, pipe2, setsid};
use oci_spec::runtime::Spec;

use super::io::bind_long;
use super::log::{JsonLogWriter, Stream};
use super::lookup::check_executable;
use super::{ContainerStatus, Handshake, Request, Response, ShimState};
use crate::bundle::{Bundle, ExitRecord, ShimConfig, write_atomic, write_json_atomic};
use crate::error::RuntimeError;

/// How long output is still collected after init exited, for processes outside the
/// container's pid namespace that keep the pipes open (`--pid host`).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Entry point of the `berth-shim` binary; returns the process exit code.
pub fn main() -> i32 {
    let mut args = std::env::args_os().skip(1);
    let Some(bundle) = args.next().map(PathBuf::from) else {
        eprintln!("usage: berth-shim <bundle-dir>");
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
    let mut handshake = match detach_stdio(&Bundle::new(&bundle)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("berth-shim: {e}");
            return 1;
        }
    };
    let _ = nix::sys::prctl::set_child_subreaper(true);
    match Supervisor::start(&bundle) {
        Ok(mut sup) => {
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
                let _ = sup.container.delete(true);
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

struct Client {
    stream: UnixStream,
    buf: Vec<u8>,
    closed: bool,
}

/// A running container and everything the shim holds for it.
struct Supervisor {
    bundle: Bundle,
    container: Container,
    pid: Pid,
    cgroups_path: Option<PathBuf>,
    out: Option<File>,
    err: Option<File>,
    stdin: Option<File>,
    /// The pty master (tty containers), for resizing.
    pty: Option<File>,
    log: JsonLogWriter,
    listener: UnixListener,
    sigfd: SignalFd,
    clients: Vec<Client>,
    waiters: Vec<UnixStream>,
    exited: Option<(WaitStatus, Instant)>,
}

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

fn pipe() -> Result<(File, File), RuntimeError> {
    let (r, w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::io("create", "pipe", nix_io(e)))?;
    Ok((File::from(r), File::from(w)))
}

impl Supervisor {
    fn start(dir: &Path) -> Result<Supervisor, RuntimeError> {
        let bundle = Bundle::new(dir);
        let cfg: ShimConfig = bundle.read_shim_config()?;
        let spec = Spec::load(bundle.config_path()).map_err(|e| RuntimeError::Create {
            id: cfg.id.clone(),
            message: format!(
                "load {}: {}",
                bundle.config_path().display(),
                error_chain(&e)
            ),
        })?;
        write_atomic(
            &bundle.shim_pid_path(),
            std::process::id().to_string().as_bytes(),
        )?;
        precheck(&bundle, &spec)?;
        let log = JsonLogWriter::open(&bundle.log_path(&cfg))
            .map_err(io_err("open", bundle.log_path(&cfg)))?;

        let console_path = bundle.dir().join("console.sock");
        let mut builder = ContainerBuilder::new(cfg.id.clone(), SyscallType::default())
            .with_root_path(bundle.runtime_root())
            .map_err(|e| create_err(&cfg.id, &e))?;
        let mut console = None;
        let (mut out, mut err, mut stdin, mut pty) = (None, None, None, None);
        if cfg.tty {
            let _ = std::fs::remove_file(&console_path);
            console = Some(bind_long(&console_path).map_err(io_err("bind", &console_path))?);
            builder = builder.with_console_socket(Some(&console_path));
        } else {
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            builder = builder
                .with_stdin(OwnedFd::from(in_r))
                .with_stdout(OwnedFd::from(out_w))
                .with_stderr(OwnedFd::from(err_w));
            out = Some(out_r);
            err = Some(err_r);
            stdin = cfg.open_stdin.then_some(in_w);
        }

        // The container's init is cloned from this process during build(): it must inherit
        // default signal dispositions and an empty signal mask.
        // SAFETY: restoring the default disposition installs no handler.
        unsafe {
            let _ = signal(Signal::SIGPIPE, SigHandler::SigDfl);
        }
        let built = builder
            .as_init(bundle.dir())
            .with_systemd(false)
            .with_detach(true)
            .build();
        // SAFETY: ignoring a signal installs no handler.
        unsafe {
            let _ = signal(Signal::SIGPIPE, SigHandler::SigIgn);
        }
        let mut container = match built {
            Ok(c) => c,
            Err(e) => {
                let e = create_err(&cfg.id, &e);
                cleanup_failed(&bundle, &cfg.id, None);
                return Err(e);
            }
        };
        let Some(pid) = container.pid() else {
            cleanup_failed(&bundle, &cfg.id, Some(container));
            return Err(RuntimeError::Create {
                id: cfg.id,
                message: "runtime reported no pid".into(),
            });
        };
        let fail = |container: Container, e: RuntimeError| {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
            cleanup_failed(&bundle, &cfg.id, Some(container));
            e
        };
        if let Err(e) = write_atomic(&bundle.init_pid_path(), pid.as_raw().to_string().as_bytes()) {
            return Err(fail(container, e));
        }
        if let Some(listener) = console.take() {
            match receive_pty(&listener) {
                Ok(master) => {
                    let master = File::from(master);
                    if cfg.open_stdin {
                        match master.try_clone() {
                            Ok(w) => stdin = Some(w),
                            Err(e) => {
                                return Err(fail(
                                    container,
                                    RuntimeError::io("dup", "pty master", e),
                                ));
                            }
                        }
                    }
                    match master.try_clone() {
                        Ok(m) => pty = Some(m),
                        Err(e) => {
                            return Err(fail(container, RuntimeError::io("dup", "pty master", e)));
                        }
                    }
                    out = Some(master);
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
        let sock = bundle.socket_path();
        let _ = std::fs::remove_file(&sock);
        let listener = match bind_long(&sock) {
            Ok(l) => l,
            Err(e) => return Err(fail(container, RuntimeError::io("bind", &sock, e))),
        };
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        let sigfd = mask.thread_block().and_then(|_| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        });
        let sigfd = match sigfd {
            Ok(s) => s,
            Err(e) => {
                return Err(fail(
                    container,
                    RuntimeError::io("create", "signalfd", nix_io(e)),
                ));
            }
        };
        if let Err(e) = container.start() {
            let e = create_err(&cfg.id, &e);
            return Err(fail(container, e));
        }
        let _ = listener.set_nonblocking(true);
        for f in [&out, &err].into_iter().flatten() {
            let _ = fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        }
        Ok(Supervisor {
            cgroups_path: spec.linux().as_ref().and_then(|l| l.cgroups_path().clone()),
            bundle,
            container,
            pid,
            out,
            err,
            stdin,
            pty,
            log,
            listener,
            sigfd,
            clients: Vec::new(),
            waiters: Vec::new(),
            exited: None,
        })
    }

    fn run(&mut self) {
        // A SIGCHLD may have arrived before the signalfd existed.
        self.reap();
        loop {
            if let Some((_, at)) = self.exited {
                let drained = self.out.is_none() && self.err.is_none();
                if drained || at.elapsed() >= DRAIN_AFTER_EXIT {
                    self.finish();
                    return;
                }
            }
            let timeout = match self.exited {
                Some((_, at)) => {
                    PollTimeout::try_from(DRAIN_AFTER_EXIT.saturating_sub(at.elapsed()))
                        .unwrap_or(PollTimeout::ZERO)
                }
                None => PollTimeout::NONE,
            };
            let ready = self.poll_once(timeout);
            let Ok(ready) = ready else { continue };
            for (src, flags) in ready {
                match src {
                    Src::Signal => self.reap(),
                    Src::Out => self.pump(Stream::Stdout),
                    Src::Err => self.pump(Stream::Stderr),
                    Src::Listener => self.accept(),
                    Src::Client(i) => self.serve(i, flags),
                }
            }
            self.clients.retain(|c| !c.closed);
        }
    }

    fn poll_once(&self, timeout: PollTimeout) -> nix::Result<Vec<(Src, PollFlags)>> {
        let mut srcs = vec![Src::Signal, Src::Listener];
        let mut fds = vec![
            PollFd::new(self.sigfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(f) = &self.out {
            srcs.push(Src::Out);
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        if let Some(f) = &self.err {
            srcs.push(Src::Err);
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
        }
        for (i, c) in self.clients.iter().enumerate() {
            srcs.push(Src::Client(i));
            fds.push(PollFd::new(c.stream.as_fd(), PollFlags::POLLIN));
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
                    if status.pid() == Some(self.pid) && self.exited.is_none() {
                        self.exited = Some((status, Instant::now()));
                    }
                }
            }
        }
    }

    fn pump(&mut self, stream: Stream) {
        let slot = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        let Some(f) = slot else { return };
        let mut buf = [0u8; 32 * 1024];
        loop {
            match f.read(&mut buf) {
                Ok(0) => {
                    *slot = None;
                    let _ = self.log.flush_stream(stream);
                    return;
                }
                Ok(n) => {
                    if let Err(e) = self.log.write(stream, &buf[..n]) {
                        eprintln!("berth-shim: write log: {e}");
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // EIO: the pty's last slave closed.
                Err(_) => {
                    *slot = None;
                    let _ = self.log.flush_stream(stream);
                    return;
                }
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(true);
            self.clients.push(Client {
                stream,
                buf: Vec::new(),
                closed: false,
            });
        }
    }

    /// Read and answer the requests of client `i`; mark it closed at EOF.
    fn serve(&mut self, i: usize, _flags: PollFlags) {
        let mut chunk = [0u8; 4096];
        let mut closed = false;
        loop {
            match self.clients[i].stream.read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.clients[i].buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        while let Some(pos) = self.clients[i].buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.clients[i].buf.drain(..=pos).collect();
            let resp = match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Wait) => {
                    // Answered in finish(), once exit.json is written.
                    if let Ok(s) = self.clients[i].stream.try_clone() {
                        self.waiters.push(s);
                    }
                    continue;
                }
                Ok(req) => self.handle(req),
                Err(e) => Response::Error {
                    message: format!("bad request: {e}"),
                },
            };
            respond(&mut self.clients[i].stream, &resp);
        }
        self.clients[i].closed = closed;
    }

    fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::State => Response::State(ShimState {
                pid: self.pid.as_raw(),
                shim_pid: std::process::id() as i32,
                status: if self.exited.is_some() {
                    ContainerStatus::Exited
                } else {
                    ContainerStatus::Running
                },
            }),
            Request::Kill { signal } => {
                if self.exited.is_some() {
                    return Response::Error {
                        message: "container is not running".into(),
                    };
                }
                match Signal::try_from(signal) {
                    Ok(sig) => match kill(self.pid, sig) {
                        Ok(()) => Response::Ok,
                        Err(e) => Response::Error {
                            message: format!("kill {}: {e}", self.pid),
                        },
                    },
                    Err(_) => Response::Error {
                        message: format!("invalid signal {signal}"),
                    },
                }
            }
            Request::CloseStdin => {
                self.stdin = None;
                Response::Ok
            }
            Request::Resize { height, width } => match &self.pty {
                Some(pty) => match set_winsize(pty, height, width) {
                    Ok(()) => Response::Ok,
                    Err(e) => Response::Error {
                        message: format!("resize: {e}"),
                    },
                },
                None => Response::Error {
                    message: "the container has no tty".into(),
                },
            },
            Request::Wait => unreachable!("wait is queued by serve"),
        }
    }

    fn finish(&mut self) {
        for s in [Stream::Stdout, Stream::Stderr] {
            let _ = self.log.flush_stream(s);
        }
        let (status, _) = self.exited.expect("finish after exit");
        let (exit_code, signal) = match status {
            WaitStatus::Exited(_, code) => (code, None),
            WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
            _ => (255, None),
        };
        let record = ExitRecord {
            exit_code,
            signal,
            finished_at: Utc::now().to_rfc3339_opts(SecondsFormat::Nanos, true),
            oom_killed: self.cgroups_path.as_deref().map(oom_kills).unwrap_or(0) > 0,
        };
        if let Err(e) = write_json_atomic(&self.bundle.exit_path(), &record) {
            eprintln!("berth-shim: {e}");
        }
        if let Err(e) = self.container.delete(true) {
            eprintln!("berth-shim: delete container: {}", error_chain(&e));
        }
        let _ = std::fs::remove_dir(self.bundle.runtime_root());
        let _ = std::fs::remove_file(self.bundle.socket_path());
        for mut w in self.waiters.drain(..) {
            let _ = w.set_nonblocking(false);
            respond(&mut w, &Response::Exited(record.clone()));
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Src {
    Signal,
    Listener,
    Out,
    Err,
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
    let Some(args0) = process.args().as_ref().and_then(|a| a.first()) else {
        return Ok(());
    };
    let Some(root) = spec.root() else {
        return Ok(());
    };
    let rootfs = bundle.dir().join(root.path());
    let mounted: Vec<PathBuf> = spec
        .mounts()
        .iter()
        .flatten()
        .map(|m| m.destination().clone())
        .collect();
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
