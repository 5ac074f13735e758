//! Processes' stdio and the clients that read and feed it: each process's descriptors
//! ([`ProcIo`]), each connection's queues ([`Client`]), and the supervisor's side of moving
//! bytes between them: reading output ([`Supervisor::pump`]) into every stream client (Docker's
//! frames without a tty), flow control at the high-water mark, dropping stalled clients, and
//! writing clients' input to a process's stdin.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::PollFlags;
use nix::unistd::pipe2;

use super::state::{Container, Supervisor};
use crate::error::RuntimeError;
use crate::shim::log::Stream;

/// Most output one [`Supervisor::pump`] call moves, so that one busy process cannot keep the
/// loop from its other descriptors (stdin, clients, other processes).
pub(super) const PUMP_BUDGET: usize = 256 * 1024;
/// After the drain deadline, at most this many budgets of output already written are still
/// taken from a process's pipe (16 MiB: more than a pipe or pty holds).
const LATE_DRAIN_ROUNDS: usize = 64;

/// Whose stdio a stream connection carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Target {
    Init,
    /// An exec, by its serial number: stable while older execs are forgotten.
    Exec(u64),
}

/// One process's stdio as the shim holds it.
#[derive(Default)]
pub(crate) struct ProcIo {
    pub(crate) out: Option<File>,
    pub(crate) err: Option<File>,
    pub(crate) stdin: Option<File>,
    /// Bytes from clients not yet taken by the process.
    pub(super) stdin_buf: Vec<u8>,
    /// Close stdin once `stdin_buf` is written.
    pub(super) close_stdin: bool,
    /// The pty master (tty processes), for resizing.
    pub(super) pty: Option<File>,
    pub(super) tty: bool,
}

impl ProcIo {
    /// The descriptors to hand from a helper to the shim: the pty master alone, or stdout,
    /// stderr and (when kept) stdin. Returns (tty, has stdin, descriptors).
    pub(super) fn into_fds(self) -> (bool, bool, Vec<OwnedFd>) {
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
    pub(super) fn from_fds(tty: bool, stdin: bool, fds: Vec<OwnedFd>) -> std::io::Result<ProcIo> {
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

    pub(super) fn drained(&self) -> bool {
        self.out.is_none() && self.err.is_none()
    }

    /// Write what clients sent; close stdin when asked and done.
    pub(super) fn feed_stdin(&mut self) {
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

pub(super) fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

pub(crate) fn pipe() -> Result<(File, File), RuntimeError> {
    let (r, w) =
        pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::io("create", "pipe", nix_io(e)))?;
    Ok((File::from(r), File::from(w)))
}

pub(super) fn set_nonblocking(f: &Option<File>) {
    if let Some(f) = f {
        let _ = fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    }
}

/// What a connection is.
pub(super) enum Mode {
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

pub(super) struct Client {
    pub(super) stream: UnixStream,
    pub(super) inbuf: Vec<u8>,
    pub(super) out: Vec<u8>,
    pub(super) mode: Mode,
    /// The peer shut down its write side.
    pub(super) read_closed: bool,
    /// The target finished: shut our write side down once `out` is sent.
    pub(super) finishing: bool,
    /// Our write side is shut down.
    pub(super) shut: bool,
    /// Drop at the end of this round.
    pub(super) closed: bool,
    /// When `out` last shrank (or started filling): a stalled client is dropped.
    pub(super) last_progress: Instant,
    /// Output queued for a control client beyond which it is dropped (it stopped reading).
    max_backlog: usize,
}

impl Client {
    pub(super) fn new(stream: UnixStream, max_backlog: usize) -> Client {
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
            max_backlog,
        }
    }

    pub(super) fn target(&self) -> Option<Target> {
        match self.mode {
            Mode::Stream { target, .. } => Some(target),
            Mode::Control => None,
        }
    }

    /// Send queued output without blocking; a broken peer is dropped.
    pub(super) fn flush(&mut self) {
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
    pub(super) fn send(&mut self, data: &[u8]) {
        if self.closed || self.shut {
            return;
        }
        if self.out.is_empty() {
            self.last_progress = Instant::now();
        }
        self.out.extend_from_slice(data);
        self.flush();
        // Stream clients are held back by flow control instead (the high-water mark).
        if matches!(self.mode, Mode::Control) && self.out.len() > self.max_backlog {
            eprintln!("berth-shim: dropping an attached client that does not read");
            self.closed = true;
        }
    }

    /// Still taking output: neither dropped nor at its end.
    fn open(&self) -> bool {
        !self.closed && !self.shut
    }
}

/// Docker's multiplexed stream frame for a chunk of a process without a tty: stream (1 stdout,
/// 2 stderr), three zero bytes, the length (big-endian u32), the bytes.
pub(super) fn frame(stream: Stream, data: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(8 + data.len());
    framed.push(if stream == Stream::Stdout { 1 } else { 2 });
    framed.extend_from_slice(&[0, 0, 0]);
    framed.extend_from_slice(&(data.len() as u32).to_be_bytes());
    framed.extend_from_slice(data);
    framed
}

impl<C: Container> Supervisor<C> {
    pub(super) fn io_mut(&mut self, t: Target) -> Option<&mut ProcIo> {
        match t {
            Target::Init => Some(&mut self.io),
            Target::Exec(key) => self.execs.get_mut(key).map(|e| &mut e.io),
        }
    }

    pub(super) fn io(&self, t: Target) -> Option<&ProcIo> {
        match t {
            Target::Init => Some(&self.io),
            Target::Exec(key) => self.execs.get(key).map(|e| &e.io),
        }
    }

    /// A stream client of `t` has the high-water mark queued: its output waits in the pipe.
    pub(super) fn throttled(&self, t: Target) -> bool {
        let high = self.limits.stream_high_water;
        self.clients
            .iter()
            .any(|c| c.target() == Some(t) && c.open() && c.out.len() >= high)
    }

    /// Drops stream clients that hold their process back and took nothing for the stall
    /// limit; returns whether any client still holds a process back.
    pub(super) fn drop_stalled(&mut self) -> bool {
        let mut holding = false;
        for c in &mut self.clients {
            if c.target().is_none() || !c.open() || c.out.len() < self.limits.stream_high_water {
                continue;
            }
            if c.last_progress.elapsed() >= self.limits.stream_stall_limit {
                eprintln!("berth-shim: dropping an attached client that stopped reading");
                c.closed = true;
            } else {
                holding = true;
            }
        }
        holding
    }

    /// The target's output ended: its stream clients get EOF once their output is sent.
    pub(super) fn end_streams(&mut self, t: Target) {
        for c in &mut self.clients {
            if c.target() == Some(t) {
                c.finishing = true;
                c.flush();
            }
        }
    }

    /// A process exited the drain deadline ago and its output has not ended: something it
    /// left behind holds the pipe open. What it wrote is in the pipe and is sent before the
    /// streams end: the deadline runs from the exit the shim *saw*, and a busy loop (a slow
    /// exec start, a starved CPU) can pass it before the output was read at all. Bounded: a
    /// leftover that writes without end does not keep the process from finishing.
    pub(super) fn take_what_is_written(&mut self, t: Target) {
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
    pub(super) fn pump(&mut self, t: Target, stream: Stream) -> usize {
        let mut buf = [0u8; 32 * 1024];
        let mut moved = 0;
        loop {
            if moved >= PUMP_BUDGET || self.throttled(t) {
                return moved;
            }
            let Some(io) = self.io_mut(t) else {
                return moved;
            };
            let slot = match stream {
                Stream::Stdout => &mut io.out,
                Stream::Stderr => &mut io.err,
            };
            let Some(f) = slot else { return moved };
            let n = match f.read(&mut buf) {
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
                    framed = frame(stream, data);
                }
                c.send(&framed);
            }
        }
    }

    pub(super) fn accept(&mut self) {
        let Some(listener) = &self.listener else {
            return;
        };
        while let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(true);
            self.clients
                .push(Client::new(stream, self.limits.max_client_backlog));
        }
    }

    /// Serve client `i`: send its queued output, read what it sent.
    #[inline(never)]
    pub(super) fn serve(&mut self, i: usize, flags: PollFlags) {
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
        if let Some(io) = self.io_mut(target)
            && io.stdin.is_some()
            && !data.is_empty()
        {
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
                if let Some(io) = self.io_mut(target)
                    && once
                    && !io.tty
                {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_stream_and_length() {
        assert_eq!(
            frame(Stream::Stdout, b"hello"),
            [&[1, 0, 0, 0, 0, 0, 0, 5][..], b"hello"].concat()
        );
        let big = vec![7u8; 70_000];
        let f = frame(Stream::Stderr, &big);
        assert_eq!(f[..8], [2, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert_eq!(f.len(), 8 + big.len());
    }

    #[test]
    fn control_client_that_does_not_read_is_dropped_past_its_backlog() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let mut c = Client::new(theirs, 64 * 1024);
        let chunk = vec![b'x'; 16 * 1024];
        // The socket's buffer takes the first few chunks; the queue then grows to the limit.
        let mut sent = 0;
        while !c.closed {
            c.send(&chunk);
            sent += chunk.len();
            assert!(sent < 64 * 1024 * 1024, "never dropped");
        }
        assert!(c.out.len() > 64 * 1024);
        drop(ours);
    }

    #[test]
    fn stream_client_is_not_dropped_for_its_backlog() {
        let (_ours, theirs) = UnixStream::pair().unwrap();
        theirs.set_nonblocking(true).unwrap();
        let mut c = Client::new(theirs, 64 * 1024);
        c.mode = Mode::Stream {
            target: Target::Init,
            stdin: false,
            stdout: true,
            stderr: true,
        };
        let chunk = vec![b'x'; 16 * 1024];
        for _ in 0..64 {
            c.send(&chunk);
        }
        assert!(!c.closed && c.out.len() > 64 * 1024);
    }

    #[test]
    fn stdin_is_written_and_closed_when_asked() {
        let (r, w) = pipe().unwrap();
        let mut io = ProcIo {
            stdin: Some(w),
            ..Default::default()
        };
        set_nonblocking(&io.stdin);
        io.stdin_buf.extend_from_slice(b"typed");
        io.close_stdin = true;
        io.feed_stdin();
        assert!(io.stdin.is_none() && io.stdin_buf.is_empty());
        let mut got = String::new();
        let mut r = r;
        r.read_to_string(&mut got).unwrap();
        assert_eq!(got, "typed");
    }
}
