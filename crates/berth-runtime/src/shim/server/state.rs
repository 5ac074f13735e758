//! The supervisor: one loop over the container's descriptors (its processes' stdio, the
//! SIGCHLD signalfd, the socket's listener and clients) and the container's life as the shim
//! sees it: created, started, exited, finished (exit recorded, waiters answered), lingering
//! (streams take their last output), cleaned up.
//!
//! Everything that needs the OCI runtime, the bundle or the kernel's process table goes
//! through [`Container`], so the loop runs in unit tests over plain pipes and socketpairs.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::exec::{Exec, ExecTable};
use super::protocol::respond;
use super::release::{Release, SETTLE_MS};
use super::stdio::{Client, Mode, ProcIo, Target};
use crate::bundle::ExitRecord;
use crate::error::RuntimeError;
use crate::shim::log::{LogDriver, Stream};
use crate::shim::{ExecConfig, Response};

/// What the supervisor asks of the container it supervises: the OCI runtime's operations, the
/// bundle's files and the reaping of child processes. [`super::init::OciContainer`] is the
/// shim's; unit tests use processes made of pipes.
pub(super) trait Container {
    /// Readable when a child process may have exited (the SIGCHLD signalfd).
    fn child_events(&self) -> BorrowedFd<'_>;
    /// The children that exited since the last call; never blocks.
    fn reap(&mut self) -> Vec<(Pid, WaitStatus)>;
    /// Lets the created (held) init run its command.
    fn start(&mut self) -> Result<(), RuntimeError>;
    /// Starts an exec's process (the `n`th exec of this shim).
    fn spawn_exec(&mut self, cfg: &ExecConfig, n: u64) -> Result<(Pid, ProcIo), RuntimeError>;
    /// The OOM killer fired in the container.
    fn oom_killed(&self) -> bool;
    /// Records the exit (`exit.json`) and removes the socket's path: new clients read the
    /// record instead.
    fn record_exit(&mut self, record: &ExitRecord);
    /// Once the exit is reported: the cgroups and the runtime's state go.
    fn clean_up(&mut self);
}

/// How long output is still collected after a process exited, for processes outside the
/// container's pid namespace that keep the pipes open (`--pid host`).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Finished execs are forgotten this long after they end (the daemon keeps its own record of
/// them once it has their exit; it only asks again after a restart)...
const FORGET_EXEC_AFTER: Duration = Duration::from_secs(15 * 60);
/// ...or sooner when more than this many finished ones pile up (a health check is an exec
/// every interval: without a bound a long-lived shim would grow forever).
const FINISHED_EXECS_KEPT: usize = 64;
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

/// The supervisor's bounds, in one place so that tests can shorten them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// See [`DRAIN_AFTER_EXIT`].
    pub(super) drain_after_exit: Duration,
    /// How long stream clients may take their last output once the container finished.
    pub(super) linger: Duration,
    /// See [`FORGET_EXEC_AFTER`].
    pub(super) forget_exec_after: Duration,
    /// See [`FINISHED_EXECS_KEPT`].
    pub(super) finished_execs_kept: usize,
    /// See [`MAX_CLIENT_BACKLOG`].
    pub(super) max_client_backlog: usize,
    /// See [`STREAM_HIGH_WATER`].
    pub(super) stream_high_water: usize,
    /// See [`STREAM_STALL_LIMIT`].
    pub(super) stream_stall_limit: Duration,
}

impl Limits {
    pub(super) const SHIM: Limits = Limits {
        drain_after_exit: DRAIN_AFTER_EXIT,
        linger: DRAIN_AFTER_EXIT,
        forget_exec_after: FORGET_EXEC_AFTER,
        finished_execs_kept: FINISHED_EXECS_KEPT,
        max_client_backlog: MAX_CLIENT_BACKLOG,
        stream_high_water: STREAM_HIGH_WATER,
        stream_stall_limit: STREAM_STALL_LIMIT,
    };
}

/// The container's init as the supervisor starts with it.
pub(super) struct InitProcess {
    pub(super) id: String,
    pub(super) pid: Pid,
    pub(super) io: ProcIo,
    /// Started (not only created).
    pub(super) started: bool,
    /// A stream client's end of input closes stdin (Docker's `StdinOnce`).
    pub(super) stdin_once: bool,
}

/// A running container and everything the shim holds for it.
pub(super) struct Supervisor<C> {
    pub(super) container: C,
    pub(super) id: String,
    pub(super) pid: Pid,
    pub(super) started: bool,
    pub(super) stdin_once: bool,
    pub(super) io: ProcIo,
    pub(super) log: Box<dyn LogDriver>,
    /// Closed once the container has exited (see [`Supervisor::finish`]).
    pub(super) listener: Option<UnixListener>,
    pub(super) clients: Vec<Client>,
    pub(super) waiters: Vec<UnixStream>,
    pub(super) execs: ExecTable,
    pub(super) exited: Option<(WaitStatus, Instant)>,
    pub(super) limits: Limits,
}

/// What woke the loop.
#[derive(Debug, Clone, Copy)]
enum Src {
    Signal,
    Listener,
    Out(Target),
    Err(Target),
    Stdin(Target),
    Client(usize),
}

/// The loop's memory hygiene between rounds: whether anything happened since memory was last
/// given back, and what to give back right before the next `poll`.
pub(super) struct Pace {
    /// Give memory back when idle (the shim; tests leave the process's memory alone).
    give_back: bool,
    busy: bool,
    release: Option<Release>,
    /// Longest a round waits for an event (tests: a round always returns).
    cap: Option<PollTimeout>,
}

impl Pace {
    pub(super) fn new(give_back: bool) -> Pace {
        // Start-up counts as activity: memory is given back once the daemon's requests after
        // the handshake (attach, start) are answered, off their critical path.
        Pace {
            give_back,
            busy: true,
            release: None,
            cap: None,
        }
    }

    /// A pace for tests: no memory given back, and no round waits longer than `ms`.
    #[cfg(test)]
    pub(super) fn bounded(ms: u8) -> Pace {
        Pace {
            cap: Some(PollTimeout::from(ms)),
            ..Pace::new(false)
        }
    }
}

pub(super) fn exit_code(status: WaitStatus) -> (i32, Option<i32>) {
    match status {
        WaitStatus::Exited(_, code) => (code, None),
        WaitStatus::Signaled(_, sig, _) => (128 + sig as i32, Some(sig as i32)),
        _ => (255, None),
    }
}

impl<C: Container> Supervisor<C> {
    pub(super) fn new(
        container: C,
        init: InitProcess,
        log: Box<dyn LogDriver>,
        listener: Option<UnixListener>,
        limits: Limits,
    ) -> Supervisor<C> {
        if let Some(l) = &listener {
            let _ = l.set_nonblocking(true);
        }
        Supervisor {
            container,
            id: init.id,
            pid: init.pid,
            started: init.started,
            stdin_once: init.stdin_once,
            io: init.io,
            log,
            listener,
            clients: Vec::new(),
            waiters: Vec::new(),
            execs: ExecTable::default(),
            exited: None,
            limits,
        }
    }

    /// Supervises until the container exited, its output is delivered and its state is gone.
    pub(super) fn run(&mut self, give_back_memory: bool) {
        // A SIGCHLD may have arrived before the signalfd existed.
        self.reap();
        let mut pace = Pace::new(give_back_memory);
        while self.round(&mut pace) {}
    }

    /// One turn of the loop: bookkeeping, one `poll`, the events it reported. False once the
    /// container's life is over.
    pub(super) fn round(&mut self, pace: &mut Pace) -> bool {
        self.settle_execs();
        let limits = self.limits;
        let clients = &self.clients;
        self.execs.forget_old(&limits, |key| {
            clients
                .iter()
                .any(|c| c.target() == Some(Target::Exec(key)))
        });
        if self.try_end() {
            return false;
        }
        // Idle: no exec running, no client but control connections with nothing queued
        // (the daemon's `wait` connection stays open).
        let idle = self.execs.all_done()
            && self
                .clients
                .iter()
                .all(|c| matches!(c.mode, Mode::Control) && c.out.is_empty());
        pace.busy |= !idle;
        let pending_exit = self.exited.is_some() || self.execs.any_draining();
        // Back to idle after start-up or after clients or execs (a health check, `exec`,
        // `attach`): once nothing has happened for a moment, give back the memory they
        // touched (once per such episode).
        let settling = pace.give_back && pace.busy && idle && self.started && !pending_exit;
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
        let timeout = match pace.cap {
            Some(cap) if timeout == PollTimeout::NONE || timeout > cap => cap,
            _ => timeout,
        };
        let Ok(ready) = self.poll_once(timeout, pace.release.take().as_ref()) else {
            return true;
        };
        if settling && ready.is_empty() {
            pace.release = Some(Release::collect());
            pace.busy = false;
            return true;
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
                Src::Stdin(t) => {
                    if let Some(io) = self.io_mut(t) {
                        io.feed_stdin();
                    }
                }
                Src::Listener => self.accept(),
                Src::Client(i) => self.serve(i, flags),
            }
        }
        self.clients.retain(|c| !c.closed);
        true
    }

    /// Once the init exited and its output is drained (or the drain deadline passed): reports
    /// the exit, lets the streams take their last output, cleans up. True then.
    fn try_end(&mut self) -> bool {
        let Some((_, at)) = self.exited else {
            return false;
        };
        let drained = self.io.drained() && self.execs.all_done();
        // Output held back by a slow client is not abandoned.
        let late = at.elapsed() >= self.limits.drain_after_exit && !self.throttled(Target::Init);
        if late && !drained {
            self.take_what_is_written(Target::Init);
        }
        if !(drained || late) {
            return false;
        }
        self.finish();
        // Streams end before the clean-up: `run` returns when its attach stream does.
        self.linger();
        self.container.clean_up();
        true
    }

    /// The descriptors to wait on, and what each one is.
    fn poll_set(&self) -> (Vec<Src>, Vec<PollFd<'_>>) {
        let mut srcs = vec![Src::Signal];
        let mut fds = vec![PollFd::new(
            self.container.child_events(),
            PollFlags::POLLIN,
        )];
        if let Some(l) = &self.listener {
            srcs.push(Src::Listener);
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        let targets = std::iter::once((Target::Init, &self.io)).chain(
            self.execs
                .iter()
                .filter(|e| !e.done)
                .map(|e| (Target::Exec(e.key), &e.io)),
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
            // A client's input waits in its socket while its process has not taken the last.
            let stdin_full = match c.mode {
                Mode::Stream {
                    target,
                    stdin: true,
                    ..
                } => self.io(target).is_some_and(|io| !io.stdin_buf.is_empty()),
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
        (srcs, fds)
    }

    /// Waits for the next events; with `release`, gives memory back first (see
    /// [`Release::apply`] for why here).
    fn poll_once(
        &self,
        timeout: PollTimeout,
        release: Option<&Release>,
    ) -> nix::Result<Vec<(Src, PollFlags)>> {
        let (srcs, mut fds) = self.poll_set();
        match release {
            Some(r) => r.apply_then_poll(&mut fds, timeout)?,
            None => poll(&mut fds, timeout)?,
        };
        Ok(srcs
            .into_iter()
            .zip(
                fds.iter()
                    .map(|f| f.revents().unwrap_or(PollFlags::empty())),
            )
            .filter(|(_, r)| !r.is_empty())
            .collect())
    }

    pub(super) fn reap(&mut self) {
        for (pid, status) in self.container.reap() {
            if pid == self.pid && self.exited.is_none() {
                self.exited = Some((status, Instant::now()));
            } else {
                self.execs.exited(pid, exit_code(status).0);
            }
        }
    }

    /// Finish execs that exited and whose output is drained (or took too long to drain).
    fn settle_execs(&mut self) {
        for key in self.execs.keys() {
            let throttled = self.throttled(Target::Exec(key));
            let Some(e) = self.execs.get(key) else {
                continue;
            };
            let Some((_, at)) = e.exit else { continue };
            let late = at.elapsed() >= self.limits.drain_after_exit && !throttled;
            if e.done || !(e.io.drained() || late) {
                continue;
            }
            if !e.io.drained() {
                self.take_what_is_written(Target::Exec(key));
            }
            let Some(e) = self.execs.get_mut(key) else {
                continue;
            };
            e.done = true;
            e.io = ProcIo::default();
            let state = e.state();
            for mut w in e.waiters.drain(..) {
                let _ = w.set_nonblocking(false);
                respond(&mut w, &Response::ExecState(state.clone()));
            }
            self.end_streams(Target::Exec(key));
        }
    }

    /// Adds a started exec; it may have exited already (its SIGCHLD came before it was known).
    pub(super) fn add_exec(&mut self, exec: Exec) {
        self.execs.push(exec);
        self.reap();
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
            oom_killed: self.container.oom_killed(),
            execs: self
                .execs
                .iter()
                .filter_map(|e| Some((e.id.clone(), e.exit?.0)))
                .collect(),
        };
        self.container.record_exit(&record);
        // No new clients: they find exit.json. One still in the listen queue gets EOF (or a
        // reset) when the listener closes, and reads exit.json too.
        self.listener = None;
        // Who waits learns of the exit before the clean-up: the daemon handles it (for
        // `run --rm`, the removal) while the cgroups and the runtime's state go.
        for mut w in self.waiters.drain(..) {
            let _ = w.set_nonblocking(false);
            respond(&mut w, &Response::Exited(record.clone()));
        }
        for e in self.execs.iter_mut() {
            let mut st = e.state();
            st.running = false;
            for mut w in e.waiters.drain(..) {
                let _ = w.set_nonblocking(false);
                respond(&mut w, &Response::ExecState(st.clone()));
            }
        }
    }

    /// Give stream clients a bounded time to take their last output, then EOF.
    fn linger(&mut self) {
        for c in &mut self.clients {
            c.finishing = true;
            c.flush();
        }
        let deadline = Instant::now() + self.limits.linger;
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
