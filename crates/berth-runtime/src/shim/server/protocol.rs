//! `shim.sock`'s requests: lines taken from a control client's input, and the one dispatch of
//! each [`Request`] to its [`Response`] (see the wire protocol in [`crate::shim`]).

use std::io::Write;
use std::os::unix::net::UnixStream;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::driver::set_winsize;
use super::exec::{Exec, ExecTable};
use super::state::{Container, Supervisor};
use super::stdio::{Client, Mode, ProcIo, Target};
use crate::error::RuntimeError;
use crate::shim::{ContainerStatus, ErrorReason, ExecConfig, Request, Response, ShimState};

/// Takes the next whole line from a control client's input and parses it; `None` until a
/// line is complete (a request may arrive over several reads).
pub(super) fn next_request(inbuf: &mut Vec<u8>) -> Option<Result<Request, serde_json::Error>> {
    let pos = inbuf.iter().position(|&b| b == b'\n')?;
    let line: Vec<u8> = inbuf.drain(..=pos).collect();
    Some(serde_json::from_slice(&line))
}

/// Writes one answer line to a waiter (a blocking connection).
pub(super) fn respond(stream: &mut UnixStream, resp: &Response) {
    let mut line = serde_json::to_string(resp).expect("responses serialize");
    line.push('\n');
    let _ = stream.write_all(line.as_bytes());
}

fn reason_error(message: String, reason: ErrorReason) -> Response {
    Response::Error {
        message,
        reason: Some(reason),
    }
}

fn not_running(id: &str) -> Response {
    reason_error(
        format!("container {id} is not running"),
        ErrorReason::NotRunning,
    )
}

fn no_such_exec(exec_id: &str) -> Response {
    reason_error(
        format!("no such exec instance: {exec_id}"),
        ErrorReason::NoSuchExec {
            exec_id: exec_id.to_string(),
        },
    )
}

/// The exec the daemon calls `exec_id`, or the answer that it has none.
fn find<'a>(execs: &'a mut ExecTable, exec_id: &str) -> Result<&'a mut Exec, Response> {
    execs.find_mut(exec_id).ok_or_else(|| no_such_exec(exec_id))
}

impl<C: Container> Supervisor<C> {
    /// Answers the complete requests client `i` sent, until it turns into a stream.
    pub(super) fn serve_requests(&mut self, i: usize) {
        while matches!(self.clients[i].mode, Mode::Control)
            && let Some(req) = next_request(&mut self.clients[i].inbuf)
        {
            let resp = match req {
                Ok(req) => self.dispatch(i, req),
                Err(e) => Some(Response::error(format!("bad request: {e}"))),
            };
            if let Some(resp) = resp {
                self.reply(i, &resp);
            }
        }
    }

    /// One request of client `i`: its answer, or `None` for a wait, answered once what it
    /// waits for happened ([`Supervisor::finish`], an exec's settling).
    fn dispatch(&mut self, i: usize, req: Request) -> Option<Response> {
        let resp = match req {
            Request::State => Response::State(self.state()),
            Request::Start => self.start(),
            Request::Kill { signal } if self.exited.is_none() => send_signal(self.pid, signal),
            Request::Kill { .. } => not_running(&self.id),
            Request::Wait => {
                // Answered in finish(), once exit.json is written.
                if let Ok(s) = self.clients[i].stream.try_clone() {
                    self.waiters.push(s);
                }
                return None;
            }
            Request::CloseStdin => {
                self.io.close_stdin = true;
                self.io.feed_stdin();
                Response::Ok
            }
            Request::Resize { height, width } => resize(&self.io, height, width),
            Request::Attach {
                stdin,
                stdout,
                stderr,
            } => self.attach(i, stdin, stdout, stderr),
            Request::ExecStart(cfg) => self.exec_start(i, cfg),
            Request::ExecWait { exec_id } => {
                let client = &self.clients[i];
                match find(&mut self.execs, &exec_id) {
                    Ok(e) if !e.done => {
                        if let Ok(s) = client.stream.try_clone() {
                            e.waiters.push(s);
                        }
                        return None;
                    }
                    Ok(e) => Response::ExecState(e.state()),
                    Err(r) => r,
                }
            }
            Request::ExecResize {
                exec_id,
                height,
                width,
            } => match find(&mut self.execs, &exec_id) {
                Ok(e) => resize(&e.io, height, width),
                Err(r) => r,
            },
            Request::ExecState { exec_id } => match find(&mut self.execs, &exec_id) {
                Ok(e) => Response::ExecState(e.state()),
                Err(r) => r,
            },
            Request::ExecKill { exec_id, signal } => match find(&mut self.execs, &exec_id) {
                Ok(e) if e.exit.is_none() => send_signal(e.pid, signal),
                Ok(_) => Response::error(format!("exec {exec_id} is not running")),
                Err(r) => r,
            },
        };
        Some(resp)
    }

    /// Queue a JSON answer line to client `i`.
    fn reply(&mut self, i: usize, resp: &Response) {
        let mut line = serde_json::to_vec(resp).expect("responses serialize");
        line.push(b'\n');
        self.clients[i].send(&line);
    }

    fn state(&self) -> ShimState {
        ShimState {
            pid: self.pid.as_raw(),
            shim_pid: std::process::id() as i32,
            status: if self.exited.is_some() {
                ContainerStatus::Exited
            } else if !self.started {
                ContainerStatus::Created
            } else {
                ContainerStatus::Running
            },
        }
    }

    fn start(&mut self) -> Response {
        if self.exited.is_some() {
            return not_running(&self.id);
        }
        if self.started {
            return Response::error(format!("container {} is already started", self.id));
        }
        match self.container.start() {
            Ok(()) => {
                self.started = true;
                // A quick command may have exited while the runtime's start ran with SIGCHLD
                // unblocked (its signal then discarded).
                self.reap();
                Response::Ok
            }
            Err(e) => Response::error(e.to_string()),
        }
    }

    /// Registers a client whose stream came with the release (see
    /// [`super::receive_release`]), as if it had connected and asked to attach: it gets the
    /// same answer first.
    pub(super) fn attach_from_start(
        &mut self,
        stream: UnixStream,
        stdin: bool,
        stdout: bool,
        stderr: bool,
    ) {
        let _ = stream.set_nonblocking(true);
        self.clients
            .push(Client::new(stream, self.limits.max_client_backlog));
        let i = self.clients.len() - 1;
        let resp = self.attach(i, stdin, stdout, stderr);
        self.reply(i, &resp);
    }

    fn attach(&mut self, i: usize, stdin: bool, stdout: bool, stderr: bool) -> Response {
        if self.exited.is_some() {
            return not_running(&self.id);
        }
        self.clients[i].mode = Mode::Stream {
            target: Target::Init,
            stdin,
            stdout,
            stderr,
        };
        Response::Attached { tty: self.io.tty }
    }

    fn exec_start(&mut self, i: usize, cfg: ExecConfig) -> Response {
        if !self.started || self.exited.is_some() {
            return not_running(&self.id);
        }
        if self.execs.contains(&cfg.exec_id) {
            return reason_error(
                format!("exec instance {} already exists", cfg.exec_id),
                ErrorReason::ExecExists {
                    exec_id: cfg.exec_id.clone(),
                },
            );
        }
        match self.spawn_exec(&cfg) {
            Ok((key, pid, tty)) => {
                if !cfg.detach {
                    self.clients[i].mode = Mode::Stream {
                        target: Target::Exec(key),
                        stdin: cfg.stdin,
                        stdout: cfg.stdout,
                        stderr: cfg.stderr,
                    };
                }
                Response::ExecStarted {
                    pid: pid.as_raw(),
                    tty,
                }
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

    /// Starts the exec's process; its key, pid and whether it has a tty.
    fn spawn_exec(&mut self, cfg: &ExecConfig) -> Result<(u64, Pid, bool), RuntimeError> {
        if cfg.args.is_empty() {
            return Err(RuntimeError::InvalidConfig("exec: no command given".into()));
        }
        let key = self.execs.next_key();
        let (pid, io) = self.container.spawn_exec(cfg, key)?;
        let tty = io.tty;
        self.add_exec(Exec::new(key, cfg.exec_id.clone(), pid, io));
        Ok((key, pid, tty))
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_waits_for_its_whole_line() {
        let mut inbuf = br#"{"op":"sta"#.to_vec();
        assert!(next_request(&mut inbuf).is_none());
        assert_eq!(inbuf, br#"{"op":"sta"#, "a partial line stays");
        inbuf.extend_from_slice(b"te\"}\n{\"op\":\"wait\"}\n{\"op\"");
        assert_eq!(next_request(&mut inbuf).unwrap().unwrap(), Request::State);
        assert_eq!(next_request(&mut inbuf).unwrap().unwrap(), Request::Wait);
        assert!(next_request(&mut inbuf).is_none());
        assert_eq!(inbuf, br#"{"op""#);
    }

    #[test]
    fn bad_lines_are_errors_and_the_next_line_still_parses() {
        let mut inbuf =
            b"nonsense\n{\"op\":\"frobnicate\"}\n\n{\"op\":\"kill\",\"signal\":9}\n".to_vec();
        assert!(next_request(&mut inbuf).unwrap().is_err());
        assert!(next_request(&mut inbuf).unwrap().is_err());
        assert!(next_request(&mut inbuf).unwrap().is_err(), "an empty line");
        assert_eq!(
            next_request(&mut inbuf).unwrap().unwrap(),
            Request::Kill { signal: 9 }
        );
        assert!(inbuf.is_empty());
    }
}
