//! The per-container shim: its wire protocol and the daemon-side client.
//!
//! One `berth-shim` process runs per container. The daemon starts it with [`Shim::spawn`]; the
//! shim daemonizes (forks, `setsid`), creates and starts the container with libcontainer,
//! reports success or failure on its stdout pipe, and then supervises: it copies the
//! container's output into the json-file log, reaps init, writes `exit.json`, deletes the
//! runtime state (cgroups) and exits. While it runs it serves `shim.sock` in the bundle, one
//! JSON [`Request`] per line, one JSON [`Response`] line back.
//!
//! # Wire protocol (`shim.sock`)
//!
//! Requests are JSON objects tagged by `op` ([`Request`]), answers tagged by `type`
//! ([`Response`]); a failed request answers `{"type":"error","message":…,"reason":{"kind":…}}`
//! where `reason` ([`ErrorReason`]) is set for what the daemon must tell apart (not running,
//! executable not found / not runnable, no such exec, exec id taken).
//!
//! - `{"op":"start"}`: run a container the shim was started for with `--create-only`
//!   ([`Shim::create`]). Until then the container's init exists but waits; clients attach
//!   first, so nothing of an `echo` is lost (Docker's `run` attaches, then starts).
//! - `{"op":"attach","stdin":…,"stdout":…,"stderr":…}` → `{"type":"attached","tty":…}`, then
//!   the connection is a stream: the container's output from now on (without a tty Docker's
//!   8-byte-header frames, stream 1 stdout / 2 stderr; with a tty raw bytes); bytes the client
//!   sends go to stdin (when asked for and the container has `open_stdin`). The client's
//!   half-close (or a detach) closes the container's stdin if it has `stdin_once` and no tty
//!   (Docker's rule; a pty is never closed for a client). Any number of clients;
//!   each gets everything from its attach on. Writes never block the shim: a client with more
//!   than 4 MiB queued is dropped; a broken one is dropped (SIGPIPE is ignored). When the
//!   container exits, streams get EOF after the last output.
//! - `{"op":"exec_start","exec_id":…,"args":[…],"env":[…],"cwd":…,"user":{"uid","gid",
//!   "additional_gids"},"tty":…,"stdin":…,"stdout":…,"stderr":…,"privileged":…,"cap_add":[…],
//!   "detach":…}` ([`ExecConfig`]) → `{"type":"exec_started","pid":…,"tty":…}`, then (unless
//!   `detach`) the exec's stdio as a stream like attach, ending when the exec exited and its
//!   output drained; its half-close closes the exec's stdin (without a tty).
//! - `exec_resize {exec_id,height,width}`, `exec_kill {exec_id,signal}` → `ok`;
//!   `exec_state {exec_id}` → `exec_state {exec_id,pid,running,exit_code}`; `exec_wait` answers
//!   the same once the exec is done.
//! - `state`, `kill {signal}`, `wait`, `close_stdin`, `resize {height,width}` as before.
//!
//! Everything in this module's client half is blocking socket and process I/O, safe from the
//! daemon's multi-threaded runtime (call it from `spawn_blocking`).

mod helper;
mod io;
pub mod local_log;
mod log;
mod lookup;
mod loopback;
mod nsexec;
mod oci_cli;
pub mod server;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, ExitRecord};
use crate::config::ProcessUser;
use crate::error::{Result, RuntimeError};

pub use log::{
    JsonLogWriter, LocalLogWriter, LogDriver, LogDriverConfig, NoLog, RotatedMeta, Stream,
    compress_file, gz_name,
};
pub use lookup::check_executable;

/// A request on `shim.sock`. New operations (`attach`, `resize`, `exec`) are new variants; a
/// shim answers an operation it does not know with [`Response::Error`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The container's pid and status.
    State,
    /// Send a signal to the container's init.
    Kill {
        /// Signal number.
        signal: i32,
    },
    /// Answer (with [`Response::Exited`]) once the container has exited.
    Wait,
    /// Close the container's stdin (EOF for the process).
    CloseStdin,
    /// Set the pty's window size (tty containers only).
    Resize {
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
    },
    /// Start a container whose shim was spawned with [`Shim::create`].
    Start,
    /// Turn this connection into the container's stdio stream (answer
    /// [`Response::Attached`]); see [`ShimHandle::attach`] for the stream's format.
    Attach {
        /// Copy what the client sends into the container's stdin (needs `open_stdin`).
        #[serde(default)]
        stdin: bool,
        /// Send the container's stdout.
        #[serde(default)]
        stdout: bool,
        /// Send the container's stderr.
        #[serde(default)]
        stderr: bool,
    },
    /// Run an extra process in the running container (answer [`Response::ExecStarted`]);
    /// unless `detach`, the connection then carries its stdio like [`Request::Attach`].
    ExecStart(ExecConfig),
    /// Set an exec's pty size.
    ExecResize {
        /// The exec.
        exec_id: String,
        /// Rows.
        height: u16,
        /// Columns.
        width: u16,
    },
    /// An exec's state (answer [`Response::ExecState`]).
    ExecState {
        /// The exec.
        exec_id: String,
    },
    /// Answer [`Response::ExecState`] once the exec has exited and its output is drained.
    ExecWait {
        /// The exec.
        exec_id: String,
    },
    /// Send a signal to an exec's process.
    ExecKill {
        /// The exec.
        exec_id: String,
        /// Signal number.
        signal: i32,
    },
}

/// An exec's process, as the daemon resolved it (Docker's `ExecConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecConfig {
    /// The daemon's exec id (unique within the container).
    pub exec_id: String,
    /// Command and arguments; `args[0]` is looked up in `PATH` inside the container.
    pub args: Vec<String>,
    /// `KEY=value` pairs, overriding the container's variables of the same name.
    pub env: Vec<String>,
    /// Working directory; empty means the container's.
    pub cwd: String,
    /// The user; `None` means the container's.
    pub user: Option<ProcessUser>,
    /// Allocate a pty.
    pub tty: bool,
    /// Attach stdin (`-i`); closing the client's write side closes it (without a tty).
    pub stdin: bool,
    /// Stream stdout.
    pub stdout: bool,
    /// Stream stderr.
    pub stderr: bool,
    /// All capabilities (and no seccomp change: see the crate's gotchas).
    pub privileged: bool,
    /// Capabilities added to the container's set.
    pub cap_add: Vec<String>,
    /// Do not stream: the connection stays a control connection.
    pub detach: bool,
}

/// An exec's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecState {
    /// The exec.
    pub exec_id: String,
    /// Its process, in the host pid namespace.
    pub pid: i32,
    /// Still running (or its output is still being drained).
    pub running: bool,
    /// Exit code once it exited (128 + signal for a signal death).
    pub exit_code: Option<i32>,
}

/// Why a request failed, for the failures the daemon must tell apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ErrorReason {
    /// Not started yet, or exited.
    NotRunning,
    /// The exec's command does not exist.
    ExecutableNotFound {
        /// `args[0]`
        name: String,
    },
    /// The exec's command cannot be executed.
    ExecutableNotRunnable {
        /// `args[0]`
        name: String,
    },
    /// The exec's process could not start (see [`RuntimeError::ExecStart`]).
    ExecStart {
        /// Why, in runc's words.
        reason: String,
    },
    /// Unknown exec id.
    NoSuchExec {
        /// The exec id.
        exec_id: String,
    },
    /// The exec id is taken.
    ExecExists {
        /// The exec id.
        exec_id: String,
    },
}

/// An answer on `shim.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// Answer to [`Request::State`].
    State(ShimState),
    /// The container exited (answer to [`Request::Wait`]).
    Exited(ExitRecord),
    /// Done.
    Ok,
    /// Answer to [`Request::Attach`]; the stream follows on the connection.
    Attached {
        /// The container has a pty: raw bytes instead of multiplexed frames.
        tty: bool,
    },
    /// Answer to [`Request::ExecStart`]; unless detached, the stream follows.
    ExecStarted {
        /// The exec's process (host pid namespace).
        pid: i32,
        /// The exec has a pty: raw bytes instead of multiplexed frames.
        tty: bool,
    },
    /// Answer to [`Request::ExecState`] and [`Request::ExecWait`].
    ExecState(ExecState),
    /// The request failed.
    Error {
        /// Why, for people.
        message: String,
        /// Why, for the daemon.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<ErrorReason>,
    },
}

impl Response {
    pub(crate) fn error(message: impl Into<String>) -> Response {
        Response::Error {
            message: message.into(),
            reason: None,
        }
    }
}

/// A container's status as its shim sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    /// Created by [`Shim::create`], waiting for [`ShimHandle::start`].
    Created,
    /// The process runs.
    Running,
    /// The process exited (the shim may be finishing its bookkeeping).
    Exited,
}

/// Answer to [`Request::State`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimState {
    /// The container's init, in the host pid namespace.
    pub pid: i32,
    /// The shim's own pid.
    pub shim_pid: i32,
    /// Running or exited.
    pub status: ContainerStatus,
}

/// What the shim reports on its stdout once the container started or failed to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum Handshake {
    Started { pid: i32, shim_pid: i32 },
    NotFound { name: String },
    NotRunnable { name: String },
    InvalidConfig { message: String },
    Failed { message: String },
}

/// How long [`Shim::spawn`] waits for the shim to report.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts shims.
#[derive(Debug, Clone, Copy)]
pub struct Shim;

impl Shim {
    /// Start `shim_binary` for the bundle at `bundle` (written with [`Bundle::write`]) and
    /// return once the container runs, or with the reason it could not start:
    /// [`RuntimeError::ExecutableNotFound`] / [`RuntimeError::ExecutableNotRunnable`] for a bad
    /// command (Docker's 127/126), [`RuntimeError::Create`] for anything the runtime refused.
    /// The shim outlives the caller.
    pub fn spawn(bundle: &Path, shim_binary: &Path) -> Result<ShimHandle> {
        Self::prepare(bundle, shim_binary)?.spawn()
    }

    /// Like [`Shim::spawn`], but the container is only created: its process exists, blocked
    /// before running the command, and the shim serves its socket. Attach clients first, then
    /// call [`ShimHandle::start`]: attached clients see all the output (Docker's `run`
    /// attaches before it starts).
    pub fn create(bundle: &Path, shim_binary: &Path) -> Result<ShimHandle> {
        Self::prepare(bundle, shim_binary)?.create()
    }

    /// Starts the shim process before its bundle is written: it loads, detaches from the
    /// caller and waits for [`PendingShim::spawn`] or [`PendingShim::create`], so that its own
    /// start-up (exec, dynamic linking, daemonizing: ~2 ms) overlaps the caller's preparation
    /// of the bundle. The directory `bundle` must exist (the shim's log goes there). Dropping
    /// the [`PendingShim`] ends the shim.
    pub fn prepare(bundle: &Path, shim_binary: &Path) -> Result<PendingShim> {
        let shim_err = |message: String| RuntimeError::Shim {
            bundle: bundle.to_path_buf(),
            message,
        };
        // The gate is a socket: the release can carry attach clients' streams.
        let (gate, theirs) =
            UnixStream::pair().map_err(|e| shim_err(format!("socketpair: {e}")))?;
        // argv[0] stays the shim's name when it runs from its sealed copy (`/proc/self/fd/N`).
        let child = Command::new(shim_binary)
            .arg0("berth-shim")
            .arg("--gated")
            .arg(bundle)
            .stdin(Stdio::from(std::os::fd::OwnedFd::from(theirs)))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| shim_err(format!("cannot run {}: {e}", shim_binary.display())))?;
        Ok(PendingShim {
            bundle: bundle.to_path_buf(),
            child,
            gate: Some(gate),
        })
    }
}

/// A shim waiting for its bundle ([`Shim::prepare`]).
#[derive(Debug)]
pub struct PendingShim {
    bundle: PathBuf,
    child: std::process::Child,
    gate: Option<UnixStream>,
}

/// What attach clients get from [`PendingShim::spawn_attached`]: stdin, stdout, stderr.
pub type AttachFlags = (bool, bool, bool);

impl PendingShim {
    /// Lets the shim create and start the container ([`Shim::spawn`]).
    pub fn spawn(self) -> Result<ShimHandle> {
        self.go(b's', &[]).map(|(h, _)| h)
    }

    /// Lets the shim create the container only ([`Shim::create`]).
    pub fn create(self) -> Result<ShimHandle> {
        self.go(b'c', &[]).map(|(h, _)| h)
    }

    /// Lets the shim create and start the container with clients already attached (as
    /// [`ShimHandle::attach`] with these flags; their streams are returned in order). The
    /// shim registers them before it reads any of the container's output, so they see all of
    /// it, as Docker's `run` (attach, then start) does, without the round trips of a create,
    /// attaches and a start.
    pub fn spawn_attached(
        self,
        attaches: &[AttachFlags],
    ) -> Result<(ShimHandle, Vec<AttachStream>)> {
        self.go(b's', attaches)
    }

    fn go(mut self, mode: u8, attaches: &[AttachFlags]) -> Result<(ShimHandle, Vec<AttachStream>)> {
        let b = Bundle::new(&self.bundle);
        wait_previous_shim(&b);
        let bundle = self.bundle.clone();
        let shim_err = |message: String| RuntimeError::Shim {
            bundle: bundle.clone(),
            message,
        };
        let mut ours = Vec::with_capacity(attaches.len());
        let mut theirs = Vec::with_capacity(attaches.len());
        for _ in attaches {
            let (a, b) = UnixStream::pair().map_err(|e| shim_err(format!("socketpair: {e}")))?;
            ours.push(a);
            theirs.push(b);
        }
        let gate = self.gate.take().expect("a gate until released");
        let mut msg = vec![mode];
        msg.extend(serde_json::to_vec(attaches).expect("flags serialize"));
        let fds: Vec<i32> = theirs.iter().map(|s| s.as_raw_fd()).collect();
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&fds)];
        let released = nix::sys::socket::sendmsg::<()>(
            gate.as_raw_fd(),
            &[std::io::IoSlice::new(&msg)],
            if fds.is_empty() { &[] } else { &cmsg },
            nix::sys::socket::MsgFlags::empty(),
            None,
        );
        drop(gate);
        drop(theirs);
        let stdout = self.child.stdout.take().expect("piped stdout");
        // The first process forks the real shim and exits at once.
        let status = self
            .child
            .wait()
            .map_err(|e| shim_err(format!("wait: {e}")))?;
        released.map_err(|e| shim_err(format!("cannot release the shim: {e}")))?;
        if !status.success() {
            return Err(shim_err(format!(
                "shim exited with {status}; see {}",
                b.shim_log_path().display()
            )));
        }
        // The shim answers within milliseconds; a shim that never does is killed, with the
        // container it may have left waiting.
        let mut fds = [PollFd::new(stdout.as_fd(), PollFlags::POLLIN)];
        let ready = poll(
            &mut fds,
            PollTimeout::try_from(HANDSHAKE_TIMEOUT).unwrap_or(PollTimeout::NONE),
        )
        .map_err(|e| shim_err(format!("wait for handshake: {e}")))?;
        if ready == 0 {
            for p in [b.init_pid_path(), b.shim_pid_path()] {
                if let Ok(Some(pid)) = Bundle::read_pid(&p) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            return Err(shim_err(format!(
                "no answer within {HANDSHAKE_TIMEOUT:?}; killed; see {}",
                b.shim_log_path().display()
            )));
        }
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| shim_err(format!("read handshake: {e}")))?;
        if line.trim().is_empty() {
            return Err(shim_err(format!(
                "shim exited without reporting; see {}",
                b.shim_log_path().display()
            )));
        }
        let hs: Handshake = serde_json::from_str(line.trim())
            .map_err(|e| shim_err(format!("bad handshake {line:?}: {e}")))?;
        let id = || b.read_shim_config().map(|c| c.id).unwrap_or_default();
        match hs {
            Handshake::Started { pid, shim_pid } => {
                let h = ShimHandle {
                    bundle: b,
                    pid,
                    shim_pid,
                };
                // Each stream starts with the shim's answer to the attach, as over the socket.
                let streams = ours
                    .into_iter()
                    .map(|s| match h.read_answer(s)? {
                        (Response::Attached { tty }, stream) => Ok(AttachStream { stream, tty }),
                        (other, _) => Err(h.unexpected(&other)),
                    })
                    .collect::<Result<Vec<_>>>()?;
                Ok((h, streams))
            }
            Handshake::NotFound { name } => Err(RuntimeError::ExecutableNotFound { name }),
            Handshake::NotRunnable { name } => Err(RuntimeError::ExecutableNotRunnable { name }),
            Handshake::InvalidConfig { message } => Err(RuntimeError::InvalidConfig(message)),
            Handshake::Failed { message } => Err(RuntimeError::Create { id: id(), message }),
        }
    }
}

impl Drop for PendingShim {
    fn drop(&mut self) {
        // Not let go: closing the gate ends the waiting shim; its first process is reaped.
        if self.gate.take().is_some() {
            let _ = self.child.wait();
        }
    }
}

/// A shim that closed its listener with us in its queue (the container just exited) resets
/// the connection: not running either.
fn gone(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
    )
}

/// How long a start waits for the previous shim of the same container to finish its clean-up.
const PREVIOUS_SHIM_TIMEOUT: Duration = Duration::from_secs(5);

/// A container started again right after it exited may find its previous shim still removing
/// the cgroups and runtime state the new one is about to create (it reports the exit first,
/// then cleans up, then removes `shim.pid`). Waits, bounded, while that shim is alive.
fn wait_previous_shim(b: &Bundle) {
    let Ok(Some(pid)) = Bundle::read_pid(&b.shim_pid_path()) else {
        return;
    };
    let deadline = std::time::Instant::now() + PREVIOUS_SHIM_TIMEOUT;
    let comm = format!("/proc/{pid}/comm");
    // A pid file left by a killed shim may name an unrelated process by now.
    while std::fs::read_to_string(&comm).is_ok_and(|c| c.trim() == "berth-shim")
        && b.shim_pid_path().exists()
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The container's stdio stream from [`ShimHandle::attach`].
#[derive(Debug)]
pub struct AttachStream {
    /// The connection: output from the shim, stdin to it.
    pub stream: UnixStream,
    /// Raw pty bytes (true) or multiplexed frames (false).
    pub tty: bool,
}

/// A started exec, from [`ShimHandle::exec_start`].
#[derive(Debug)]
pub struct ExecProcess {
    /// Its process (host pid namespace).
    pub pid: i32,
    /// It has a pty.
    pub tty: bool,
    /// Its stdio stream (`None` when detached).
    pub stream: Option<UnixStream>,
}

/// A handle on a running (or finished) container's shim. Cheap; holds no connection.
#[derive(Debug, Clone)]
pub struct ShimHandle {
    bundle: Bundle,
    pid: i32,
    shim_pid: i32,
}

impl ShimHandle {
    /// Adopt the shim of an existing bundle (for example after a daemon restart), from the pid
    /// files it wrote (the shim's pid is 0 once it finished: it removes its pid file last).
    /// Fails with [`RuntimeError::ShimGone`] if it never started.
    pub fn connect(bundle: &Path) -> Result<ShimHandle> {
        let b = Bundle::new(bundle);
        let pid = Bundle::read_pid(&b.init_pid_path())?;
        let mut shim_pid = Bundle::read_pid(&b.shim_pid_path())?;
        if shim_pid.is_none() && b.exit_path().exists() {
            // A shim that finished removes its pid file last; its exit record stays.
            shim_pid = Some(0);
        }
        match (pid, shim_pid) {
            (Some(pid), Some(shim_pid)) => Ok(ShimHandle {
                bundle: b,
                pid,
                shim_pid,
            }),
            _ => Err(RuntimeError::ShimGone {
                bundle: bundle.to_path_buf(),
            }),
        }
    }

    /// The container's init pid (host pid namespace).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The shim's pid.
    pub fn shim_pid(&self) -> i32 {
        self.shim_pid
    }

    /// The bundle.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// Ask the shim for the container's state; if the shim is gone, the state recorded in
    /// `exit.json`.
    pub fn state(&self) -> Result<ShimState> {
        match self.request(&Request::State)? {
            Some(Response::State(s)) => Ok(s),
            Some(other) => Err(self.unexpected(&other)),
            None => match self.bundle.read_exit()? {
                Some(_) => Ok(ShimState {
                    pid: self.pid,
                    shim_pid: self.shim_pid,
                    status: ContainerStatus::Exited,
                }),
                None => Err(RuntimeError::ShimGone {
                    bundle: self.bundle.dir().to_path_buf(),
                }),
            },
        }
    }

    /// Send `signal` to the container's init.
    pub fn kill(&self, signal: i32) -> Result<()> {
        self.simple(&Request::Kill { signal })
    }

    /// Close the container's stdin.
    pub fn close_stdin(&self) -> Result<()> {
        self.simple(&Request::CloseStdin)
    }

    /// Set the terminal size of a tty container.
    pub fn resize(&self, height: u16, width: u16) -> Result<()> {
        self.simple(&Request::Resize { height, width })
    }

    /// Block until the container exits; returns its exit record (from the shim, or from
    /// `exit.json` if the shim already finished).
    pub fn wait(&self) -> Result<ExitRecord> {
        self.wait_answer(self.request(&Request::Wait)?)
    }

    /// [`Self::wait`] for callers with an event loop of their own, which would rather not
    /// park a thread per container: the connection on which the shim answers one line once
    /// the container exited (`None`: no shim is listening). Read that line (none if the
    /// connection ends first) and give it to [`Self::wait_answer_line`].
    pub fn wait_request(&self) -> Result<Option<UnixStream>> {
        self.send(&Request::Wait)
    }

    /// The exit record from the line the shim answered to [`Self::wait_request`], or, when
    /// it answered nothing, from `exit.json`.
    pub fn wait_answer_line(&self, line: Option<&str>) -> Result<ExitRecord> {
        let resp = match line {
            Some(l) if !l.trim().is_empty() => Some(self.parse_answer(l)?),
            _ => None,
        };
        self.wait_answer(resp)
    }

    fn wait_answer(&self, resp: Option<Response>) -> Result<ExitRecord> {
        match resp {
            Some(Response::Exited(rec)) => Ok(rec),
            Some(other) => Err(self.unexpected(&other)),
            None => self
                .bundle
                .read_exit()?
                .ok_or_else(|| RuntimeError::ShimGone {
                    bundle: self.bundle.dir().to_path_buf(),
                }),
        }
    }

    /// Start a container created with [`Shim::create`].
    pub fn start(&self) -> Result<()> {
        self.simple(&Request::Start)
    }

    /// Attach to the container's stdio. The returned connection carries, without a tty,
    /// Docker's multiplexed frames (8-byte header: stream 1 = stdout, 2 = stderr, three zero
    /// bytes, big-endian u32 length; then the payload), with a tty the raw pty output. Bytes
    /// written to it go to the container's stdin (when `stdin` and the container has
    /// `open_stdin`); shutting down the write side closes the container's stdin if it has
    /// `stdin_once` and no tty. Output starts at attach time; the stream ends (EOF) after the
    /// last output once the container exited. A client that stops reading is dropped, never
    /// waited for. Blocking; for tokio: `set_nonblocking(true)` then
    /// `tokio::net::UnixStream::from_std`.
    pub fn attach(&self, stdin: bool, stdout: bool, stderr: bool) -> Result<AttachStream> {
        let req = Request::Attach {
            stdin,
            stdout,
            stderr,
        };
        let (resp, stream) = self.open_stream(&req)?;
        match resp {
            Response::Attached { tty } => Ok(AttachStream { stream, tty }),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Run an extra process in the running container. Errors: [`RuntimeError::NotRunning`]
    /// (Docker's 409), [`RuntimeError::ExecutableNotFound`] / `ExecutableNotRunnable`
    /// (126/127; see [`RuntimeError::oci_exec_message`]), [`RuntimeError::ExecExists`].
    /// Unless `cfg.detach`, the returned stream carries the exec's stdio as
    /// [`ShimHandle::attach`] describes, ending when the exec exited and its output drained.
    pub fn exec_start(&self, cfg: &ExecConfig) -> Result<ExecProcess> {
        let (resp, stream) = self.open_stream(&Request::ExecStart(cfg.clone()))?;
        match resp {
            Response::ExecStarted { pid, tty } => Ok(ExecProcess {
                pid,
                tty,
                stream: (!cfg.detach).then_some(stream),
            }),
            other => Err(self.unexpected(&other)),
        }
    }

    /// Set an exec's pty size.
    pub fn exec_resize(&self, exec_id: &str, height: u16, width: u16) -> Result<()> {
        self.simple(&Request::ExecResize {
            exec_id: exec_id.into(),
            height,
            width,
        })
    }

    /// Send a signal to an exec's process.
    pub fn exec_kill(&self, exec_id: &str, signal: i32) -> Result<()> {
        self.simple(&Request::ExecKill {
            exec_id: exec_id.into(),
            signal,
        })
    }

    /// An exec's state.
    pub fn exec_state(&self, exec_id: &str) -> Result<ExecState> {
        self.exec_query(&Request::ExecState {
            exec_id: exec_id.into(),
        })
    }

    /// Block until the exec exited and its output drained; its final state.
    pub fn exec_wait(&self, exec_id: &str) -> Result<ExecState> {
        self.exec_query(&Request::ExecWait {
            exec_id: exec_id.into(),
        })
    }

    fn exec_query(&self, req: &Request) -> Result<ExecState> {
        match self.request(req)? {
            Some(Response::ExecState(s)) => Ok(s),
            Some(other) => Err(self.unexpected(&other)),
            None => Err(RuntimeError::NotRunning { id: self.id() }),
        }
    }

    fn id(&self) -> String {
        self.bundle
            .read_shim_config()
            .map(|c| c.id)
            .unwrap_or_default()
    }

    /// Send `req`, read exactly one answer line (nothing of the stream behind it).
    fn open_stream(&self, req: &Request) -> Result<(Response, UnixStream)> {
        let sock = self.bundle.socket_path();
        let mut stream = match io::connect_long(&sock) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Err(RuntimeError::NotRunning { id: self.id() });
            }
            Err(e) => return Err(RuntimeError::io("connect", sock, e)),
        };
        let mut line = serde_json::to_string(req).expect("requests serialize");
        line.push('\n');
        match stream.write_all(line.as_bytes()) {
            Err(e) if gone(&e) => return Err(RuntimeError::NotRunning { id: self.id() }),
            Err(e) => return Err(RuntimeError::io("write to", &sock, e)),
            Ok(()) => {}
        }
        self.read_answer(stream)
    }

    /// Reads the shim's one-line answer at the start of a stream.
    fn read_answer(&self, mut stream: UnixStream) -> Result<(Response, UnixStream)> {
        let sock = self.bundle.socket_path();
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        loop {
            match stream.read(&mut byte) {
                Ok(0) => return Err(RuntimeError::NotRunning { id: self.id() }),
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => answer.push(byte[0]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if gone(&e) => return Err(RuntimeError::NotRunning { id: self.id() }),
                Err(e) => return Err(RuntimeError::io("read from", &sock, e)),
            }
        }
        let resp = serde_json::from_slice(&answer).map_err(|e| RuntimeError::Shim {
            bundle: self.bundle.dir().to_path_buf(),
            message: format!("bad answer {:?}: {e}", String::from_utf8_lossy(&answer)),
        })?;
        Ok((resp, stream))
    }

    fn simple(&self, req: &Request) -> Result<()> {
        match self.request(req)? {
            Some(Response::Ok) => Ok(()),
            Some(other) => Err(self.unexpected(&other)),
            None => Err(RuntimeError::ShimGone {
                bundle: self.bundle.dir().to_path_buf(),
            }),
        }
    }

    fn unexpected(&self, resp: &Response) -> RuntimeError {
        let message = match resp {
            Response::Error {
                reason: Some(reason),
                ..
            } => {
                return match reason.clone() {
                    ErrorReason::NotRunning => RuntimeError::NotRunning { id: self.id() },
                    ErrorReason::ExecutableNotFound { name } => {
                        RuntimeError::ExecutableNotFound { name }
                    }
                    ErrorReason::ExecutableNotRunnable { name } => {
                        RuntimeError::ExecutableNotRunnable { name }
                    }
                    ErrorReason::ExecStart { reason } => RuntimeError::ExecStart { reason },
                    ErrorReason::NoSuchExec { exec_id } => RuntimeError::NoSuchExec { exec_id },
                    ErrorReason::ExecExists { exec_id } => RuntimeError::ExecExists { exec_id },
                };
            }
            Response::Error { message, .. } => message.clone(),
            other => format!("unexpected answer {other:?}"),
        };
        RuntimeError::Shim {
            bundle: self.bundle.dir().to_path_buf(),
            message,
        }
    }

    /// One request/response exchange. `Ok(None)`: no shim is listening, or it closed the
    /// connection without answering (it exited).
    fn request(&self, req: &Request) -> Result<Option<Response>> {
        let Some(stream) = self.send(req)? else {
            return Ok(None);
        };
        let mut answer = String::new();
        match BufReader::new(&stream).read_line(&mut answer) {
            Ok(0) => Ok(None),
            Ok(_) => self.parse_answer(&answer).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(None),
            Err(e) => Err(RuntimeError::io("read from", self.bundle.socket_path(), e)),
        }
    }

    /// Connects and sends one request. `Ok(None)`: no shim is listening.
    fn send(&self, req: &Request) -> Result<Option<UnixStream>> {
        let sock = self.bundle.socket_path();
        let mut stream = match io::connect_long(&sock) {
            Ok(s) => s,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(RuntimeError::io("connect", sock, e)),
        };
        let mut line = serde_json::to_string(req).expect("requests serialize");
        line.push('\n');
        if let Err(e) = stream.write_all(line.as_bytes()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(None);
            }
            return Err(RuntimeError::io("write to", sock, e));
        }
        Ok(Some(stream))
    }

    fn parse_answer(&self, answer: &str) -> Result<Response> {
        serde_json::from_str(answer.trim()).map_err(|e| RuntimeError::Shim {
            bundle: self.bundle.dir().to_path_buf(),
            message: format!("bad answer {answer:?}: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The wire shapes the daemon relies on.
    #[test]
    fn protocol_json_shapes() {
        let to = |r: &Request| serde_json::to_value(r).unwrap();
        assert_eq!(to(&Request::Start), json!({"op": "start"}));
        assert_eq!(
            to(&Request::Attach {
                stdin: true,
                stdout: true,
                stderr: false
            }),
            json!({"op": "attach", "stdin": true, "stdout": true, "stderr": false})
        );
        let r: Request = serde_json::from_value(json!({"op": "attach", "stdout": true})).unwrap();
        assert_eq!(
            r,
            Request::Attach {
                stdin: false,
                stdout: true,
                stderr: false
            }
        );
        let r: Request = serde_json::from_value(json!({
            "op": "exec_start", "exec_id": "e1", "args": ["sh"], "tty": true,
            "user": {"uid": 1, "gid": 2, "additional_gids": [3]}
        }))
        .unwrap();
        let Request::ExecStart(cfg) = r else {
            panic!("{r:?}")
        };
        assert_eq!(cfg.exec_id, "e1");
        assert!(cfg.tty && !cfg.stdin && !cfg.detach);
        assert_eq!(cfg.user.unwrap().additional_gids, [3]);
        assert_eq!(
            to(&Request::ExecResize {
                exec_id: "e1".into(),
                height: 24,
                width: 80
            }),
            json!({"op": "exec_resize", "exec_id": "e1", "height": 24, "width": 80})
        );
        let resp = |r: &Response| serde_json::to_value(r).unwrap();
        assert_eq!(
            resp(&Response::Attached { tty: false }),
            json!({"type": "attached", "tty": false})
        );
        assert_eq!(
            resp(&Response::ExecStarted { pid: 7, tty: true }),
            json!({"type": "exec_started", "pid": 7, "tty": true})
        );
        assert_eq!(
            resp(&Response::ExecState(ExecState {
                exec_id: "e1".into(),
                pid: 7,
                running: false,
                exit_code: Some(5)
            })),
            json!({"type": "exec_state", "exec_id": "e1", "pid": 7, "running": false, "exit_code": 5})
        );
        assert_eq!(
            resp(&Response::Error {
                message: "m".into(),
                reason: Some(ErrorReason::ExecutableNotFound {
                    name: "nope".into()
                })
            }),
            json!({"type": "error", "message": "m",
                   "reason": {"kind": "executable_not_found", "name": "nope"}})
        );
        assert_eq!(
            resp(&Response::error("x")),
            json!({"type": "error", "message": "x"})
        );
        let old: Response =
            serde_json::from_value(json!({"type": "error", "message": "x"})).unwrap();
        assert_eq!(old, Response::error("x"));
    }
}
