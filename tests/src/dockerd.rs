//! A throw-away dockerd (Debian's 20.10 at [`DOCKERD`]) for tests that check Berth's registry
//! against the reference client stack: its own data root, exec root, socket and pidfile in a
//! temporary directory, no bridge and no iptables rules (nothing outside the directory changes),
//! the vfs storage driver (no overlay mounts to leave behind). Dropping it stops dockerd and its
//! containerd by the PIDs they wrote, unmounts what is left below the directory and removes it,
//! also when the test panics.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::daemon::{Output, run};

pub const DOCKERD: &str = "/usr/sbin/dockerd";

pub struct Dockerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts dockerd with `extra` arguments (e.g. `--registry-mirror`), or returns `None`
    /// (after saying why) when it or a docker CLI is not installed.
    pub fn start(test: &str, extra: &[&str]) -> Option<Dockerd> {
        if !Path::new(DOCKERD).exists() {
            eprintln!("skipped {test}: {DOCKERD} is missing (Debian package docker.io)");
            return None;
        }
        if crate::docker_cli().is_none() {
            eprintln!("skipped {test}: no docker CLI");
            return None;
        }
        // Short: the socket path must fit in sun_path.
        let dir = tempfile::Builder::new()
            .prefix("berth-dkd-")
            .tempdir_in("/tmp")
            .expect("dockerd dir");
        let d = dir.path();
        std::fs::create_dir_all(d.join("docker-config")).expect("docker config dir");
        let log = std::fs::File::create(d.join("dockerd.log")).expect("dockerd log");
        let child = Command::new(DOCKERD)
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args([
                "--bridge",
                "none",
                "--iptables=false",
                "--ip6tables=false",
                "--storage-driver",
                "vfs",
            ])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let dockerd = Dockerd {
            dir,
            child: Some(child),
        };
        dockerd.wait_ready();
        Some(dockerd)
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.pings() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = UnixStream::connect(self.socket()) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_secs(5))).ok();
        if s.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            .is_err()
        {
            return false;
        }
        let mut answer = String::new();
        s.read_to_string(&mut answer).is_ok() && answer.starts_with("HTTP/1.0 200")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    /// Runs the docker CLI against this daemon (with a config directory of its own, so the
    /// machine's credentials and settings play no part), with `stdin` when given.
    pub fn docker_with_input(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let cli = crate::docker_cli().expect("docker CLI");
        let mut cmd = Command::new(cli);
        cmd.args(args)
            .env("DOCKER_HOST", format!("unix://{}", self.socket().display()))
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"));
        run(cmd, stdin)
    }

    /// Runs the docker CLI against this daemon; panics (with dockerd's log) when it fails.
    pub fn docker(&self, args: &[&str]) -> Output {
        let out = self.docker_with_input(args, None);
        assert_eq!(
            out.code,
            0,
            "docker {args:?} failed: {}{}\ndockerd log:\n{}",
            out.stdout,
            out.stderr,
            self.log()
        );
        out
    }

    /// The PID containerd (started by dockerd) recorded, when that process still runs
    /// containerd with this daemon's config (a reused PID is left alone).
    fn containerd_pid(&self) -> Option<i32> {
        let exec = self.dir.path().join("exec/containerd");
        let pid: i32 = std::fs::read_to_string(exec.join("containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let ours = String::from_utf8_lossy(&cmdline).contains(&*exec.to_string_lossy());
        ours.then_some(pid)
    }

    fn unmount_below(&self) {
        let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
            return;
        };
        let base = self.dir.path();
        let mut points: Vec<PathBuf> = info
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(PathBuf::from)
            .filter(|p| p.starts_with(base))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        for p in points {
            let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let containerd = self.containerd_pid();
        if let Some(mut child) = self.child.take() {
            // SIGTERM first: dockerd then stops containerd and unmounts its data root itself.
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(20);
            while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(pid) = containerd.and_then(rustix::process::Pid::from_raw)
            && self.containerd_pid().is_some()
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        self.unmount_below();
    }
}
