//! Driving an external OCI runtime (`runc`) through its command line, for containers run with
//! `--runtime <name>`. The shim stays the container's supervisor: it is a child subreaper, so
//! the init (and every exec process) that `runc create` / `runc exec -d` leave behind is
//! reparented to it and reaped by the same loop as the embedded runtime's processes.
//!
//! Every invocation gets `--root <bundle>/runtime-state` (the runtime's state is private to
//! the container) and `--log <bundle>/runtime.log --log-format json`; a failure is reported
//! with the last error line the invocation added to that log.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::unistd::Pid;

use super::io::bind_long;
use super::server::{ProcIo, pipe, pty_io, with_child_signal_state};
use crate::bundle::{Bundle, ShimConfig};
use crate::config::OciRuntime;
use crate::error::RuntimeError;

/// One container run by an external OCI runtime binary.
pub(crate) struct OciCli {
    runtime: OciRuntime,
    id: String,
    state_root: PathBuf,
    log: PathBuf,
    bundle: PathBuf,
}

impl OciCli {
    pub(crate) fn new(bundle: &Bundle, id: &str, runtime: &OciRuntime) -> OciCli {
        OciCli {
            runtime: runtime.clone(),
            id: id.to_string(),
            state_root: bundle.oci_state_root(),
            log: bundle.oci_log_path(),
            bundle: bundle.dir().to_path_buf(),
        }
    }

    /// Where exec process files are written.
    pub(crate) fn state_root(&self) -> &Path {
        &self.state_root
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.runtime.path);
        c.args(&self.runtime.args)
            .arg("--root")
            .arg(&self.state_root)
            .arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        c
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    /// The last error the runtime logged after byte `from` of its log.
    fn logged_error(&self, from: u64) -> Option<String> {
        let mut f = File::open(&self.log).ok()?;
        f.seek(SeekFrom::Start(from)).ok()?;
        let mut text = String::new();
        f.read_to_string(&mut text).ok()?;
        text.lines().rev().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let level = v.get("level")?.as_str()?;
            matches!(level, "error" | "fatal")
                .then(|| v.get("msg")?.as_str().map(str::to_string))
                .flatten()
        })
    }

    /// Run `cmd` to completion; on failure, the runtime's logged error as a [`RuntimeError`].
    fn run(&self, what: &str, mut cmd: Command) -> Result<(), RuntimeError> {
        let from = self.log_len();
        let status = with_child_signal_state(|| cmd.status());
        let status = status.map_err(|e| RuntimeError::io("run", &self.runtime.path, e))?;
        if status.success() {
            return Ok(());
        }
        let message = self
            .logged_error(from)
            .unwrap_or_else(|| format!("{} {what} failed: {status}", self.runtime.name));
        Err(runtime_error(&self.id, message))
    }

    fn read_pid_file(&self, path: &Path) -> Result<Pid, RuntimeError> {
        let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io("read", path, e))?;
        let _ = std::fs::remove_file(path);
        text.trim()
            .parse()
            .map(Pid::from_raw)
            .map_err(|_| RuntimeError::Create {
                id: self.id.clone(),
                message: format!("{}: bad pid file {text:?}", self.runtime.name),
            })
    }

    /// `create`: the init is held before exec (until [`OciCli::start`]). Returns its pid, its
    /// stdio and, for a tty, the console socket the pty master waits on (already received when
    /// this returns: see [`OciCli::create`]'s caller).
    pub(crate) fn create(
        &self,
        cfg: &ShimConfig,
        console_path: &Path,
    ) -> Result<(Pid, ProcIo, Option<UnixListener>), RuntimeError> {
        std::fs::create_dir_all(&self.state_root)
            .map_err(|e| RuntimeError::io("create", &self.state_root, e))?;
        let pid_file = self.bundle.join("init.oci-pid");
        let mut cmd = self.command();
        cmd.arg("create")
            .arg("--bundle")
            .arg(&self.bundle)
            .arg("--pid-file")
            .arg(&pid_file);
        let mut io = ProcIo::default();
        let mut console = None;
        if cfg.tty {
            let _ = std::fs::remove_file(console_path);
            console = Some(
                bind_long(console_path).map_err(|e| RuntimeError::io("bind", console_path, e))?,
            );
            console_socket_arg(&mut cmd, console_path);
            cmd.stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
        } else {
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            cmd.stdin(in_r).stdout(out_w).stderr(err_w);
            io.out = Some(out_r);
            io.err = Some(err_r);
            io.stdin = cfg.open_stdin.then_some(in_w);
        }
        cmd.arg(&self.id);
        // `cmd` owns the child's pipe ends; they are closed when it is dropped here.
        let res = self.run("create", cmd);
        if let Err(e) = res {
            self.delete();
            return Err(e);
        }
        match self.read_pid_file(&pid_file) {
            Ok(pid) => Ok((pid, io, console)),
            Err(e) => {
                self.delete();
                Err(e)
            }
        }
    }

    /// `start`: the held init runs its command.
    pub(crate) fn start(&self) -> Result<(), RuntimeError> {
        let mut cmd = self.command();
        cmd.arg("start").arg(&self.id);
        quiet(&mut cmd);
        self.run("start", cmd)
    }

    /// `delete --force` (removes the container's cgroup), then the state root.
    pub(crate) fn delete(&self) {
        let mut cmd = self.command();
        cmd.arg("delete").arg("--force").arg(&self.id);
        quiet(&mut cmd);
        if let Err(e) = self.run("delete", cmd) {
            eprintln!("berth-shim: delete container: {e}");
        }
        let _ = std::fs::remove_dir_all(&self.state_root);
    }

    /// `exec -d` of the process in `process_path`: its pid (a child of the shim once the
    /// runtime exits) and stdio.
    pub(crate) fn exec(
        &self,
        exec_id: &str,
        tty: bool,
        stdin: bool,
        process_path: &Path,
        console_path: &Path,
    ) -> Result<(Pid, ProcIo), RuntimeError> {
        let pid_file = process_path.with_extension("pid");
        let mut cmd = self.command();
        cmd.arg("exec")
            .arg("--process")
            .arg(process_path)
            .arg("--pid-file")
            .arg(&pid_file)
            .arg("--detach");
        let mut io = ProcIo::default();
        let mut console = None;
        if tty {
            let _ = std::fs::remove_file(console_path);
            console = Some(
                bind_long(console_path).map_err(|e| RuntimeError::io("bind", console_path, e))?,
            );
            console_socket_arg(&mut cmd, console_path);
            quiet(&mut cmd);
        } else {
            let (in_r, in_w) = pipe()?;
            let (out_r, out_w) = pipe()?;
            let (err_r, err_w) = pipe()?;
            cmd.stdin(in_r).stdout(out_w).stderr(err_w);
            io.out = Some(out_r);
            io.err = Some(err_r);
            io.stdin = stdin.then_some(in_w);
        }
        cmd.arg(&self.id);
        self.run("exec", cmd).map_err(|e| match e {
            RuntimeError::Create { id, message } => RuntimeError::Create {
                id,
                message: format!("exec {exec_id}: {message}"),
            },
            other => other,
        })?;
        let pid = self.read_pid_file(&pid_file)?;
        if let Some(listener) = console {
            match pty_io(&listener, stdin) {
                Ok(p) => io = p,
                Err(e) => {
                    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                    return Err(RuntimeError::io("receive pty from", console_path, e));
                }
            }
        }
        Ok((pid, io))
    }
}

fn quiet(cmd: &mut Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
}

/// The runtime's error message as a [`RuntimeError`]: a missing or unrunnable command
/// becomes the distinct errors Docker answers with 127 and 126.
fn runtime_error(id: &str, message: String) -> RuntimeError {
    let quoted = |m: &str| {
        let start = m.find("exec: \"")? + 7;
        let len = m[start..].find('"')?;
        Some(m[start..start + len].to_string())
    };
    let not_found = message.contains("executable file not found")
        || message.contains("no such file or directory") && message.contains("exec: \"");
    if not_found && let Some(name) = quoted(&message) {
        return RuntimeError::ExecutableNotFound { name };
    }
    if message.contains("permission denied")
        && let Some(name) = quoted(&message)
    {
        return RuntimeError::ExecutableNotRunnable { name };
    }
    RuntimeError::Create {
        id: id.to_string(),
        message,
    }
}

/// Passes the console socket to the runtime by a name relative to its working directory: a
/// socket path is limited to 108 bytes, which a long data root exceeds.
fn console_socket_arg(cmd: &mut Command, console_path: &Path) {
    match (console_path.parent(), console_path.file_name()) {
        (Some(dir), Some(name)) if !dir.as_os_str().is_empty() => {
            cmd.current_dir(dir).arg("--console-socket").arg(name);
        }
        _ => {
            cmd.arg("--console-socket").arg(console_path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_map_to_docker_exit_classes() {
        let e = runtime_error(
            "c",
            "runc create failed: unable to start container process: exec: \"nope\": executable file not found in $PATH".into(),
        );
        assert!(matches!(e, RuntimeError::ExecutableNotFound { name } if name == "nope"));
        let e = runtime_error(
            "c",
            "unable to start container process: exec: \"/etc\": permission denied".into(),
        );
        assert!(matches!(e, RuntimeError::ExecutableNotRunnable { name } if name == "/etc"));
        let e = runtime_error("c", "container_linux.go: something else".into());
        assert!(matches!(e, RuntimeError::Create { .. }));
    }
}
