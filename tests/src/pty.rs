//! Interactive sessions through a real pseudo-terminal: the test opens the pty itself, runs
//! `berth` or the docker CLI on its slave side as a session leader, types on the master and
//! reads what the terminal shows.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::Daemon;
use crate::containers::until;
use crate::daemon::{ChildGuard, binary};

/// A CLI running on the slave side of a pty this test opened; the master is read by a thread.
pub struct PtySession {
    pub child: ChildGuard,
    master: std::fs::File,
    output: Arc<Mutex<Vec<u8>>>,
}

impl PtySession {
    /// Spawns `cmd` as a session leader with the pty's slave as its controlling terminal and
    /// stdio, the window set to `rows`x`cols` first.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> PtySession {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master: OwnedFd = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("openpt");
        grantpt(&master).expect("grantpt");
        unlockpt(&master).expect("unlockpt");
        let name = ptsname(&master, Vec::new()).expect("ptsname");
        rustix::termios::tcsetwinsize(
            &master,
            rustix::termios::Winsize {
                ws_row: rows,
                ws_col: cols,
                ws_xpixel: 0,
                ws_ypixel: 0,
            },
        )
        .expect("set window size");
        let slave = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .expect("open pty slave");
        cmd.stdin(Stdio::from(slave.try_clone().unwrap()))
            .stdout(Stdio::from(slave.try_clone().unwrap()))
            .stderr(Stdio::from(slave));
        // SAFETY: only async-signal-safe system calls between fork and exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                rustix::process::setsid()?;
                // fd 0 is the slave by now; no allocation (std's stdin() would) after fork.
                rustix::process::ioctl_tiocsctty(std::os::fd::BorrowedFd::borrow_raw(0))?;
                Ok(())
            });
        }
        let child = ChildGuard(cmd.spawn().expect("spawn on pty"));
        drop(cmd); // closes this process's copies of the slave
        let master = std::fs::File::from(master);
        let output = Arc::new(Mutex::new(Vec::new()));
        let (mut reader, sink) = (master.try_clone().unwrap(), output.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once every slave descriptor is closed.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtySession {
            child,
            master,
            output,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    pub fn type_in(&mut self, bytes: &[u8]) {
        self.master.write_all(bytes).expect("write to pty master");
    }

    /// Waits until `needle` was printed after output position `from`.
    pub fn expect(&self, from: usize, needle: &str) {
        until(&format!("{needle:?} on the terminal"), || {
            let out = self.output.lock().unwrap();
            String::from_utf8_lossy(&out[from.min(out.len())..]).contains(needle)
        });
    }

    /// How much the terminal has shown so far: a position to `expect` from.
    pub fn output_len(&self) -> usize {
        self.output.lock().unwrap().len()
    }

    pub fn exit_code(&mut self) -> i32 {
        let mut code = None;
        until("the CLI to exit", || {
            code = self.child.0.try_wait().unwrap();
            code.is_some()
        });
        code.unwrap().code().unwrap_or(-1)
    }
}

/// Which command-line client drives the session.
pub enum Cli {
    Berth,
    Docker(PathBuf),
}

/// The client's command line against daemon `d`, with its own config directory.
pub fn cli_command(d: &Daemon, cli: &Cli, args: &[&str]) -> Command {
    match cli {
        Cli::Berth => {
            let mut cmd = Command::new(binary("berth"));
            cmd.arg("-H")
                .arg(d.host())
                .args(args)
                .env("BERTH_CONFIG", d.dir().join("berth-config"));
            cmd
        }
        Cli::Docker(path) => {
            let mut cmd = Command::new(path);
            cmd.args(args)
                .env("DOCKER_HOST", d.host())
                .env("DOCKER_CONFIG", d.dir().join("docker-config"))
                .env_remove("DOCKER_CONTEXT")
                .env_remove("DOCKER_API_VERSION");
            cmd
        }
    }
}
