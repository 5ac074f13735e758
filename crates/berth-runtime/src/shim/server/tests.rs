//! The supervisor without a container: its processes are pipes the test writes to, its
//! children's exits are reported by hand, its clients connect to a socket in a temporary
//! directory. No root needed.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::state::{Container, InitProcess, Limits, Pace, Supervisor};
use super::stdio::{Mode, ProcIo, Target, pipe, set_nonblocking};
use crate::bundle::ExitRecord;
use crate::error::RuntimeError;
use crate::shim::log::NoLog;
use crate::shim::{ContainerStatus, ErrorReason, ExecConfig, Request, Response};

/// Pids above the kernel's limit (2^22): no real process is ever signalled.
const INIT: i32 = 4_200_001;
/// Rounds a test waits for something before it fails (each waits at most [`ROUND_MS`]).
const ROUNDS: usize = 5_000;
const ROUND_MS: u8 = 10;

/// A process made of pipes: the supervisor reads `io`, the test writes `out` and `err`.
struct FakeProc {
    out: Option<File>,
    err: Option<File>,
}

impl FakeProc {
    fn new() -> (FakeProc, ProcIo) {
        let (out_r, out_w) = pipe().unwrap();
        let (err_r, err_w) = pipe().unwrap();
        let io = ProcIo {
            out: Some(out_r),
            err: Some(err_r),
            ..Default::default()
        };
        set_nonblocking(&io.out);
        set_nonblocking(&io.err);
        let out = Some(out_w);
        set_nonblocking(&out);
        (
            FakeProc {
                out,
                err: Some(err_w),
            },
            io,
        )
    }

    /// Its output ends (its pipes' last writers close).
    fn close(&mut self) {
        self.out = None;
        self.err = None;
    }
}

/// The [`Container`] of these tests: exits are queued by the test, execs' processes handed
/// out in order.
struct FakeContainer {
    events: File,
    wake: File,
    exits: Vec<(Pid, WaitStatus)>,
    exec_procs: VecDeque<(Pid, ProcIo)>,
    started: bool,
    record: Option<ExitRecord>,
    cleaned_up: bool,
}

impl FakeContainer {
    fn exit(&mut self, pid: i32, code: i32) {
        let pid = Pid::from_raw(pid);
        self.exits.push((pid, WaitStatus::Exited(pid, code)));
        self.wake.write_all(b"x").unwrap();
    }
}

impl Container for FakeContainer {
    fn child_events(&self) -> BorrowedFd<'_> {
        self.events.as_fd()
    }

    fn reap(&mut self) -> Vec<(Pid, WaitStatus)> {
        let mut buf = [0u8; 64];
        while matches!(self.events.read(&mut buf), Ok(n) if n > 0) {}
        std::mem::take(&mut self.exits)
    }

    fn start(&mut self) -> Result<(), RuntimeError> {
        self.started = true;
        Ok(())
    }

    fn spawn_exec(&mut self, _: &ExecConfig, _: u64) -> Result<(Pid, ProcIo), RuntimeError> {
        self.exec_procs
            .pop_front()
            .ok_or_else(|| RuntimeError::ExecStart {
                reason: "the test prepared no process".into(),
            })
    }

    fn oom_killed(&self) -> bool {
        false
    }

    fn record_exit(&mut self, record: &ExitRecord) {
        self.record = Some(record.clone());
    }

    fn clean_up(&mut self) {
        self.cleaned_up = true;
    }
}

/// A supervisor over a [`FakeContainer`] whose init is `init`.
struct Harness {
    sup: Supervisor<FakeContainer>,
    pace: Pace,
    sock: PathBuf,
    init: FakeProc,
    ended: bool,
    _dir: tempfile::TempDir,
}

impl Harness {
    fn new(limits: Limits, started: bool) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("shim.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let (events, wake) = pipe().unwrap();
        fcntl(events.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
        let container = FakeContainer {
            events,
            wake,
            exits: Vec::new(),
            exec_procs: VecDeque::new(),
            started,
            record: None,
            cleaned_up: false,
        };
        let (init, io) = FakeProc::new();
        let init_process = InitProcess {
            id: "c1".into(),
            pid: Pid::from_raw(INIT),
            io,
            started,
            stdin_once: false,
        };
        let sup = Supervisor::new(
            container,
            init_process,
            Box::new(NoLog),
            Some(listener),
            limits,
        );
        Harness {
            sup,
            pace: Pace::bounded(ROUND_MS),
            sock,
            init,
            ended: false,
            _dir: dir,
        }
    }

    /// One round of the loop (none once the container's life is over).
    fn round(&mut self) {
        if !self.ended {
            self.ended = !self.sup.round(&mut self.pace);
        }
    }

    /// Rounds until `done` holds; fails the test when it never does.
    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Harness) -> bool) {
        for _ in 0..ROUNDS {
            if done(self) {
                return;
            }
            self.round();
        }
        panic!("never happened: {what}");
    }

    fn connect(&mut self) -> Peer {
        let s = UnixStream::connect(&self.sock).unwrap();
        s.set_nonblocking(true).unwrap();
        Peer {
            s,
            got: Vec::new(),
            eof: false,
        }
    }

    /// Sends a request line and returns the answer.
    fn ask(&mut self, peer: &mut Peer, req: &Request) -> Response {
        let mut line = serde_json::to_vec(req).unwrap();
        line.push(b'\n');
        peer.send(&line);
        self.answer(peer)
    }

    fn answer(&mut self, peer: &mut Peer) -> Response {
        let mut answer = None;
        self.until("an answer", |_| {
            peer.read();
            answer = peer.line();
            answer.is_some()
        });
        answer.unwrap()
    }

    /// An exec (through the protocol) whose process is a [`FakeProc`].
    fn exec(&mut self, peer: &mut Peer, id: &str, pid: i32, detach: bool) -> FakeProc {
        let (proc, io) = FakeProc::new();
        self.sup
            .container
            .exec_procs
            .push_back((Pid::from_raw(pid), io));
        let cfg = ExecConfig {
            exec_id: id.into(),
            args: vec!["true".into()],
            stdout: true,
            stderr: true,
            detach,
            ..Default::default()
        };
        let resp = self.ask(peer, &Request::ExecStart(cfg));
        assert_eq!(resp, Response::ExecStarted { pid, tty: false });
        proc
    }

    /// What the supervisor wrote as `exit.json`.
    fn recorded_exit(&self) -> &ExitRecord {
        let record = self.sup.container.record.as_ref();
        record.expect("the exit is recorded")
    }

    fn stream_clients(&self) -> usize {
        let streams = self.sup.clients.iter();
        streams
            .filter(|c| matches!(c.mode, Mode::Stream { .. }))
            .count()
    }
}

/// The test's end of a connection to the shim.
struct Peer {
    s: UnixStream,
    got: Vec<u8>,
    eof: bool,
}

impl Peer {
    fn send(&mut self, bytes: &[u8]) {
        self.s.set_nonblocking(false).unwrap();
        self.s.write_all(bytes).unwrap();
        self.s.set_nonblocking(true).unwrap();
    }

    /// Takes what is there to read.
    fn read(&mut self) {
        let mut buf = [0u8; 64 * 1024];
        loop {
            match self.s.read(&mut buf) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return;
                }
                Err(e) => panic!("read: {e}"),
            }
        }
    }

    fn line(&mut self) -> Option<Response> {
        let pos = self.got.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.got.drain(..=pos).collect();
        Some(serde_json::from_slice(&line).unwrap())
    }

    /// Reads to the end of the stream on a thread: for output the supervisor sends while it
    /// blocks (its last output, lingering).
    fn read_to_end_in_background(self) -> std::thread::JoinHandle<Vec<u8>> {
        let mut s = self.s;
        let mut got = self.got;
        std::thread::spawn(move || {
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            s.read_to_end(&mut got).unwrap();
            got
        })
    }
}

/// Splits Docker's frames into stdout and stderr; the bytes must be whole frames.
fn deframe(mut bytes: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while !bytes.is_empty() {
        assert!(bytes.len() >= 8, "a truncated frame header");
        let len = u32::from_be_bytes(bytes[4..8].try_into().unwrap()) as usize;
        assert_eq!(bytes[1..4], [0, 0, 0]);
        let data = &bytes[8..8 + len];
        match bytes[0] {
            1 => out.extend_from_slice(data),
            2 => err.extend_from_slice(data),
            s => panic!("stream {s}"),
        }
        bytes = &bytes[8 + len..];
    }
    (out, err)
}

/// Writes what fits into a non-blocking pipe; the bytes written.
fn fill(w: &mut File, data: &[u8]) -> usize {
    match w.write(data) {
        Ok(n) => n,
        Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
        Err(e) => panic!("write: {e}"),
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn attach(h: &mut Harness) -> Peer {
    let mut peer = h.connect();
    let req = Request::Attach {
        stdin: false,
        stdout: true,
        stderr: true,
    };
    assert_eq!(h.ask(&mut peer, &req), Response::Attached { tty: false });
    peer
}

fn quick() -> Limits {
    Limits {
        linger: Duration::from_secs(60),
        ..Limits::SHIM
    }
}

#[test]
fn a_stream_client_gets_framed_output_then_eof_and_a_waiter_the_exit() {
    let mut h = Harness::new(quick(), true);
    let mut peer = attach(&mut h);
    let mut waiter = h.connect();
    waiter.send(b"{\"op\":\"wait\"}\n");
    h.until("the wait is registered", |h| !h.sup.waiters.is_empty());
    h.init.out.as_mut().unwrap().write_all(b"hello").unwrap();
    h.init.err.as_mut().unwrap().write_all(b"oops").unwrap();
    h.until("both chunks arrive", |_| {
        peer.read();
        peer.got.len() == 8 + 5 + 8 + 4
    });
    let (out, err) = deframe(&peer.got);
    assert_eq!((&out[..], &err[..]), (&b"hello"[..], &b"oops"[..]));

    h.init.close();
    h.sup.container.exit(INIT, 3);
    h.until("the container's life ends", |h| h.ended);
    peer.read();
    assert!(peer.eof, "the stream ends");
    waiter.read();
    match waiter.line() {
        Some(Response::Exited(r)) => assert_eq!((r.exit_code, r.signal), (3, None)),
        other => panic!("{other:?}"),
    }
    let record = h.recorded_exit();
    assert_eq!(record.exit_code, 3);
    assert!(h.sup.container.cleaned_up);
}

#[test]
fn requests_split_across_reads_and_bad_lines_are_answered_in_order() {
    let mut h = Harness::new(quick(), true);
    let mut peer = h.connect();
    peer.send(br#"{"op":"sta"#);
    h.until("the half line is read", |h| {
        h.sup.clients.iter().any(|c| !c.inbuf.is_empty())
    });
    for _ in 0..3 {
        h.round();
    }
    peer.read();
    assert!(peer.got.is_empty(), "no answer to half a request");
    peer.send(b"te\"}\nnonsense\n{\"op\":\"exec_state\",\"exec_id\":\"nope\"}\n");
    match h.answer(&mut peer) {
        Response::State(s) => {
            assert_eq!((s.pid, s.status), (INIT, ContainerStatus::Running));
        }
        other => panic!("{other:?}"),
    }
    match h.answer(&mut peer) {
        Response::Error { message, .. } => assert!(message.starts_with("bad request")),
        other => panic!("{other:?}"),
    }
    match h.answer(&mut peer) {
        Response::Error { reason, .. } => assert_eq!(
            reason,
            Some(ErrorReason::NoSuchExec {
                exec_id: "nope".into()
            })
        ),
        other => panic!("{other:?}"),
    }
    let again = h.ask(&mut peer, &Request::Start);
    assert!(matches!(again, Response::Error { message, .. } if message.contains("already")));
}

#[test]
fn a_created_container_starts_on_request() {
    let mut h = Harness::new(quick(), false);
    let mut peer = h.connect();
    match h.ask(&mut peer, &Request::State) {
        Response::State(s) => assert_eq!(s.status, ContainerStatus::Created),
        other => panic!("{other:?}"),
    }
    let cfg = ExecConfig {
        exec_id: "e".into(),
        args: vec!["true".into()],
        ..Default::default()
    };
    match h.ask(&mut peer, &Request::ExecStart(cfg)) {
        Response::Error { reason, .. } => assert_eq!(reason, Some(ErrorReason::NotRunning)),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.ask(&mut peer, &Request::Start), Response::Ok);
    assert!(h.sup.container.started);
    match h.ask(&mut peer, &Request::State) {
        Response::State(s) => assert_eq!(s.status, ContainerStatus::Running),
        other => panic!("{other:?}"),
    }
}

#[test]
fn back_pressure_holds_the_process_at_the_high_water_mark_and_resumes_without_loss() {
    const HIGH: usize = 64 * 1024;
    let mut h = Harness::new(
        Limits {
            stream_high_water: HIGH,
            stream_stall_limit: Duration::from_secs(3600),
            ..quick()
        },
        true,
    );
    let mut peer = attach(&mut h);
    let data = pattern(2 * 1024 * 1024);
    let mut written = 0;
    // The client reads nothing: the shim queues up to the mark, then leaves the output in
    // the pipe until the pipe is full and the process would block.
    h.until("the process is held back", |h| {
        let w = h.init.out.as_mut().unwrap();
        let n = fill(w, &data[written..]);
        written += n;
        let queued = h.sup.clients.iter().map(|c| c.out.len()).max().unwrap();
        // One read of at most 32 KiB (and its frame header) may follow the last check.
        assert!(queued < HIGH + 33 * 1024, "queued {queued} bytes");
        n == 0 && h.sup.throttled(Target::Init)
    });
    assert!(
        written < data.len(),
        "everything fit: no back-pressure tested"
    );
    for _ in 0..5 {
        h.round();
        assert!(h.sup.throttled(Target::Init));
        assert_eq!(fill(h.init.out.as_mut().unwrap(), &data[written..]), 0);
    }
    // The client reads again: everything arrives, in order.
    h.until("all is written", |h| {
        peer.read();
        written += fill(h.init.out.as_mut().unwrap(), &data[written..]);
        written == data.len()
    });
    h.init.close();
    h.sup.container.exit(INIT, 0);
    let reader = peer.read_to_end_in_background();
    h.until("the container's life ends", |h| h.ended);
    let (out, err) = deframe(&reader.join().unwrap());
    assert!(err.is_empty());
    assert!(
        out == data,
        "got {} of {} bytes, or out of order",
        out.len(),
        data.len()
    );
}

#[test]
fn a_stream_client_that_stops_reading_is_dropped_after_the_stall_limit() {
    const HIGH: usize = 64 * 1024;
    let mut h = Harness::new(
        Limits {
            stream_high_water: HIGH,
            stream_stall_limit: Duration::ZERO,
            ..quick()
        },
        true,
    );
    let mut peer = attach(&mut h);
    let data = pattern(1024 * 1024);
    let mut written = 0;
    h.until("the stalled client is dropped", |h| {
        written += fill(h.init.out.as_mut().unwrap(), &data[written..]);
        h.stream_clients() == 0
    });
    // The process is no longer held back: the shim takes all it writes.
    h.until("the rest is taken", |h| {
        written += fill(h.init.out.as_mut().unwrap(), &data[written..]);
        written == data.len()
    });
    h.until("the client's connection ends", |_| {
        peer.read();
        peer.eof
    });
    assert!(peer.got.len() < data.len());
}

/// Sizes a pipe to hold `len` bytes, if the system lets it; what it holds.
fn grow_pipe(w: &File, len: usize) -> usize {
    let size = i32::try_from(len).unwrap();
    fcntl(w.as_raw_fd(), FcntlArg::F_SETPIPE_SZ(size)).map_or(64 * 1024, |n| n as usize)
}

#[test]
fn output_already_written_when_the_init_drain_deadline_passes_is_delivered() {
    let mut h = Harness::new(
        Limits {
            drain_after_exit: Duration::ZERO,
            ..quick()
        },
        true,
    );
    let peer = attach(&mut h);
    let w = h.init.out.as_mut().unwrap();
    let data = pattern(grow_pipe(w, 512 * 1024));
    w.write_all(&data).unwrap();
    // A leftover of the process keeps the pipe open: only the deadline ends the stream.
    let _leftover = h.init.out.take();
    h.init.err = None;
    h.sup.container.exit(INIT, 0);
    let reader = peer.read_to_end_in_background();
    h.until("the container's life ends", |h| h.ended);
    let (out, _) = deframe(&reader.join().unwrap());
    assert!(out == data, "got {} of {} bytes", out.len(), data.len());
}

#[test]
fn output_already_written_when_an_exec_drain_deadline_passes_is_delivered() {
    let mut h = Harness::new(
        Limits {
            drain_after_exit: Duration::ZERO,
            ..quick()
        },
        true,
    );
    let mut peer = h.connect();
    let mut exec = h.exec(&mut peer, "e1", INIT + 1, false);
    let w = exec.out.as_mut().unwrap();
    let data = pattern(grow_pipe(w, 512 * 1024));
    w.write_all(&data).unwrap();
    let _leftover = exec.out.take();
    h.sup.container.exit(INIT + 1, 7);
    let reader = peer.read_to_end_in_background();
    h.until("the exec's stream ends", |h| h.stream_clients() == 0);
    let (out, _) = deframe(&reader.join().unwrap());
    assert!(out == data, "got {} of {} bytes", out.len(), data.len());
    let mut control = h.connect();
    let state = h.ask(
        &mut control,
        &Request::ExecState {
            exec_id: "e1".into(),
        },
    );
    match state {
        Response::ExecState(s) => assert_eq!((s.running, s.exit_code), (false, Some(7))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn forgetting_finished_execs_leaves_other_execs_streams_alone() {
    let mut h = Harness::new(
        Limits {
            finished_execs_kept: 1,
            ..quick()
        },
        true,
    );
    let mut control = h.connect();
    let mut a = h.exec(&mut control, "a", INIT + 1, true);
    let mut b = h.exec(&mut control, "b", INIT + 2, true);
    let mut streamer = h.connect();
    let mut c = h.exec(&mut streamer, "c", INIT + 3, false);
    for (p, pid) in [(&mut a, INIT + 1), (&mut b, INIT + 2)] {
        p.close();
        h.sup.container.exit(pid, 0);
    }
    h.until("the oldest finished exec is forgotten", |h| {
        h.sup.execs.keys().len() == 2
    });
    let ask_state = |h: &mut Harness, control: &mut Peer, id: &str| {
        let exec_id = id.to_string();
        h.ask(control, &Request::ExecState { exec_id })
    };
    assert!(matches!(
        ask_state(&mut h, &mut control, "a"),
        Response::Error {
            reason: Some(ErrorReason::NoSuchExec { .. }),
            ..
        }
    ));
    assert!(matches!(
        ask_state(&mut h, &mut control, "b"),
        Response::ExecState(s) if s.exit_code == Some(0)
    ));
    // The stream of `c` still carries `c`'s output, and ends when `c` does.
    c.out.as_mut().unwrap().write_all(b"from c").unwrap();
    c.close();
    h.sup.container.exit(INIT + 3, 0);
    h.until("c's stream ends", |_| {
        streamer.read();
        streamer.eof
    });
    assert_eq!(deframe(&streamer.got).0, b"from c");
}

/// A stdin pipe for a process: the supervisor's end (non-blocking) and the process's.
fn stdin_pipe() -> (File, File) {
    let (r, w) = pipe().unwrap();
    for f in [&r, &w] {
        fcntl(f.as_raw_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    }
    (w, r)
}

/// What the process read from its stdin so far, and whether it saw its end.
fn read_stdin(r: &mut File, got: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(e) => panic!("read stdin: {e}"),
        }
    }
}

#[test]
fn a_clients_end_of_input_closes_an_execs_stdin_after_its_bytes() {
    let mut h = Harness::new(quick(), true);
    let (ours, mut theirs) = stdin_pipe();
    let (_proc, mut io) = FakeProc::new();
    io.stdin = Some(ours);
    h.sup
        .container
        .exec_procs
        .push_back((Pid::from_raw(INIT + 1), io));
    let mut peer = h.connect();
    let cfg = ExecConfig {
        exec_id: "e".into(),
        args: vec!["cat".into()],
        stdin: true,
        stdout: true,
        ..Default::default()
    };
    let started = h.ask(&mut peer, &Request::ExecStart(cfg));
    assert!(matches!(started, Response::ExecStarted { .. }));
    peer.send(b"typed");
    peer.s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut got = Vec::new();
    h.until("stdin ends", |_| read_stdin(&mut theirs, &mut got));
    assert_eq!(got, b"typed");
}

#[test]
fn a_clients_end_of_input_closes_the_inits_stdin_only_with_stdin_once() {
    for stdin_once in [false, true] {
        let mut h = Harness::new(quick(), true);
        let (ours, mut theirs) = stdin_pipe();
        h.sup.io.stdin = Some(ours);
        h.sup.stdin_once = stdin_once;
        let mut peer = h.connect();
        let req = Request::Attach {
            stdin: true,
            stdout: true,
            stderr: false,
        };
        assert_eq!(h.ask(&mut peer, &req), Response::Attached { tty: false });
        peer.send(b"abc");
        peer.s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut got = Vec::new();
        let mut ended = false;
        h.until("the input is written", |_| {
            ended = read_stdin(&mut theirs, &mut got);
            got.len() == 3
        });
        h.until("the client's end is seen", |h| {
            h.sup.clients.iter().all(|c| c.read_closed)
        });
        for _ in 0..3 {
            h.round();
        }
        ended |= read_stdin(&mut theirs, &mut got);
        assert_eq!(got, b"abc");
        assert_eq!(ended, stdin_once, "stdin_once {stdin_once}");
    }
}

#[test]
fn the_exit_record_says_how_each_exec_ended() {
    let mut h = Harness::new(quick(), true);
    let mut control = h.connect();
    let mut a = h.exec(&mut control, "a", INIT + 1, true);
    let mut b = h.exec(&mut control, "b", INIT + 2, true);
    a.close();
    h.sup.container.exit(INIT + 1, 7);
    h.until("a is done", |h| {
        h.sup.execs.iter().any(|e| e.id == "a" && e.done)
    });
    // `b` ends with the container (the kernel kills what is left in its pid namespace).
    h.init.close();
    h.sup.container.exit(INIT, 0);
    b.close();
    h.sup.container.exit(INIT + 2, 128 + 9);
    h.until("the container's life ends", |h| h.ended);
    let record = h.recorded_exit();
    let execs: Vec<(&str, i32)> = record.execs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(execs, [("a", 7), ("b", 137)]);
    // Older records without execs still read, and records without execs stay as they were.
    let old: ExitRecord =
        serde_json::from_str(r#"{"exit_code":0,"finished_at":"2026-01-02T03:04:05Z"}"#).unwrap();
    assert!(old.execs.is_empty());
    assert!(!serde_json::to_string(&old).unwrap().contains("execs"));
}
