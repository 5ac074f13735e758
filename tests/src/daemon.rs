//! A real `berthd` under test: its own temporary data root, exec root, socket and config file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::api::RawApi;

/// Where cargo put the workspace's binaries: next to the `deps` directory the test runs from.
/// `BERTH_BIN_DIR` overrides it (e.g. to test release builds).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent");
    deps.parent().expect("deps has a parent").to_path_buf()
}

pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// The docker CLI, when this machine has one (the docker-CLI tests are skipped otherwise).
pub fn docker_cli() -> Option<PathBuf> {
    ["/usr/local/bin/docker", "/usr/bin/docker"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// What a command printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    fn from(out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with everything printed unless the command exited 0.
    pub fn success(self) -> Output {
        assert_eq!(
            self.code, 0,
            "command failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics unless the command failed.
    pub fn failure(self) -> Output {
        assert_ne!(
            self.code, 0,
            "command unexpectedly succeeded:\nstdout: {}",
            self.stdout
        );
        self
    }
}

static CGROUP_COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// A running daemon owned by one test.
pub struct Daemon {
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The daemon's `--cgroup-parent`, unique per daemon; removed on drop.
    cgroup_parent: String,
    /// Extra daemon flags ([`Daemon::start_with`]).
    extra_args: Vec<String>,
    /// The default bridge's device, unique per daemon (`--bridge`); removed on drop.
    bridge: String,
    /// The default bridge's `--bip`, unique per daemon.
    bip: String,
    /// A command the daemon runs under (e.g. `nsenter --net=... unshare --uts sh -c ...`),
    /// which must end by exec'ing berthd so that the PID started is the daemon's.
    wrapper: Vec<String>,
}

impl Daemon {
    /// Starts a daemon on a fresh temporary data root and waits until it answers `/_ping`.
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// Like [`Daemon::start`], with extra daemon flags (kept across restarts).
    pub fn start_with(extra_args: &[&str]) -> Daemon {
        Daemon::start_prepared(extra_args, |_| {})
    }

    /// Like [`Daemon::start`], with the data root on a tmpfs of `size` (`mount -o size=`),
    /// for tests of a full disk. The tmpfs is unmounted when the daemon is dropped.
    pub fn start_on_tmpfs(size: &str) -> Daemon {
        Daemon::start_prepared(&[], |root| {
            std::fs::create_dir_all(root).expect("create data root");
            let st = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(root)
                .status()
                .expect("run mount");
            assert!(st.success(), "mount a tmpfs on {}", root.display());
        })
    }

    /// Like [`Daemon::start_with`], running `prepare` on the data root's path (not yet
    /// created) before the daemon starts.
    pub fn start_prepared(extra_args: &[&str], prepare: impl FnOnce(&Path)) -> Daemon {
        Daemon::start_wrapped(extra_args, Vec::new(), prepare)
    }

    /// Like [`Daemon::start_prepared`], with berthd started as the last argument of `wrapper`
    /// (its program and arguments), which must exec it (see `cluster.rs`).
    pub fn start_wrapped(
        extra_args: &[&str],
        wrapper: Vec<String>,
        prepare: impl FnOnce(&Path),
    ) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-")
            .tempdir()
            .expect("temp dir");
        std::fs::write(dir.path().join("daemon.json"), "{}").expect("write daemon.json");
        let n = CGROUP_COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pid = std::process::id();
        // Concurrent daemons (other tests, other test processes) must not share a bridge or
        // a subnet: both come from this process's pid and the daemon's counter.
        let bridge = format!("bt{:x}x{n}", pid & 0xff_ffff);
        // The default bridge gets the first /26 of a /24; tests carve their user networks
        // from the other three ([`Daemon::spare_subnet`]).
        let bip = format!(
            "10.{}.{}.1/26",
            100 + pid % 100,
            (pid / 100 + n as u32) % 256
        );
        let mut extra: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        if !extra
            .iter()
            .any(|a| a == "--bridge" || a == "-b" || a == "--bip")
        {
            extra.extend([
                "--bridge".into(),
                bridge.clone(),
                "--bip".into(),
                bip.clone(),
            ]);
        }
        let mut daemon = Daemon {
            dir,
            child: None,
            cgroup_parent: format!("/berth-test-{pid}-{n}"),
            extra_args: extra,
            bridge,
            bip,
            wrapper,
        };
        prepare(&daemon.data_root());
        daemon.spawn();
        daemon
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    /// The default bridge's device and `--bip` this daemon was given.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }
    pub fn bip(&self) -> &str {
        &self.bip
    }
    /// The default bridge's gateway address (a host address).
    pub fn gateway(&self) -> &str {
        self.bip.split('/').next().unwrap_or_default()
    }
    /// A /26 that no other daemon uses, for a test's user network (`i` in 1..=3).
    pub fn spare_subnet(&self, i: u8) -> String {
        assert!((1..=3).contains(&i), "three spare subnets per daemon");
        let base = self
            .gateway()
            .rsplit_once('.')
            .map(|(b, _)| b)
            .unwrap_or_default();
        format!("{base}.{}/26", 64 * i as u32)
    }
    /// The daemon's nftables table (`berth_` + 8 hex of sha256 of the data root).
    pub fn firewall_table(&self) -> String {
        let root = std::path::absolute(self.data_root()).unwrap_or(self.data_root());
        format!(
            "berth_{}",
            &crate::fixtures::sha256_hex(root.as_os_str().as_encoded_bytes())[..8]
        )
    }
    /// Bridge devices of this daemon's networks: the default one and user networks'.
    pub fn bridges(&self) -> Vec<String> {
        let mut v = vec![self.bridge.clone()];
        let dir = self.data_root().join("network/networks");
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let rec: Option<serde_json::Value> = std::fs::read(e.path())
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if let Some(dev) = rec.as_ref().and_then(|r| r["device"].as_str())
                && !dev.is_empty()
                && !v.iter().any(|d| d == dev)
            {
                v.push(dev.to_string());
            }
        }
        v
    }
    pub fn data_root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    pub fn exec_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    /// A container's bundle (spec, pid files, exit record): `<exec-root>/containers/<id>`.
    pub fn run_dir(&self, id: &str) -> PathBuf {
        self.exec_root().join("containers").join(id)
    }
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("berth.sock")
    }
    pub fn host(&self) -> String {
        format!("unix://{}", self.socket().display())
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("berthd.log")
    }
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The daemon's command line, for tests that start a second one on purpose.
    pub fn command(&self) -> Command {
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary("berthd"));
                c
            }
            None => Command::new(binary("berthd")),
        };
        cmd.arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("--host")
            .arg(self.host())
            .arg("--config-file")
            .arg(self.dir.path().join("daemon.json"))
            .arg("--log-level")
            .arg("debug")
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(&self.extra_args);
        cmd
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open daemon log");
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("berthd exited early ({status}); log:\n{}", self.log());
            }
            if self.socket().exists()
                && std::panic::catch_unwind(|| self.api().get("/_ping").status).ok() == Some(200)
            {
                return;
            }
            if Instant::now() > deadline {
                panic!("berthd did not answer /_ping in 30 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn api(&self) -> RawApi {
        RawApi {
            socket: self.socket(),
        }
    }

    /// Runs `berth -H <this daemon> ARGS`.
    pub fn berth(&self, args: &[&str]) -> Output {
        self.berth_with_stdin(args, None)
    }

    pub fn berth_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(binary("berth"));
        cmd.arg("-H").arg(self.host()).args(args);
        cmd.env("BERTH_CONFIG", self.dir.path().join("berth-config"));
        run(cmd, stdin)
    }

    /// Runs the real docker CLI against this daemon; `None` when docker is not installed.
    pub fn docker(&self, args: &[&str]) -> Option<Output> {
        self.docker_with_stdin(args, None)
    }

    pub fn docker_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Option<Output> {
        let docker = docker_cli()?;
        let mut cmd = Command::new(docker);
        cmd.args(args)
            .env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.dir.path().join("docker-config"))
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        Some(run(cmd, stdin))
    }

    /// Stops the daemon with SIGKILL, as a crash would.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// Stops the daemon with SIGTERM and returns its exit status code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).ok();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                child.kill().ok();
                child.wait().ok();
                panic!("berthd ignored SIGTERM for 15 s; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the daemon again on the same data root (after `stop` or `kill_hard`).
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts it again after a crash, without stopping anything first.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "daemon still running");
        self.spawn();
    }
}

impl Daemon {
    /// The daemon's cgroup parent (`/berth-test-<pid>-<n>`).
    pub fn cgroup_parent(&self) -> &str {
        &self.cgroup_parent
    }

    /// Kills every container's process and shim by the pids they recorded, unmounts their
    /// root filesystems and removes the daemon's cgroups: containers outlive their daemon.
    fn clean_containers(&self) {
        // `--userns-remap` daemons keep theirs under `<data-root>/<uid>.<gid>/`.
        let mut roots = vec![self.data_root()];
        roots.extend(
            std::fs::read_dir(self.data_root())
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().contains('.'))
                .map(|e| e.path()),
        );
        let dirs: Vec<PathBuf> = roots
            .iter()
            .flat_map(|r| {
                std::fs::read_dir(r.join("containers"))
                    .map(|rd| rd.flatten().map(|e| e.path()).collect::<Vec<_>>())
                    .unwrap_or_default()
            })
            .collect();
        let mut killed = false;
        for d in &dirs {
            let run = self
                .exec_root()
                .join("containers")
                .join(d.file_name().unwrap_or_default());
            for f in ["init.pid", "shim.pid"] {
                if let Some(pid) = std::fs::read_to_string(run.join(f))
                    .ok()
                    .and_then(|s| s.trim().parse::<i32>().ok())
                    .and_then(rustix::process::Pid::from_raw)
                {
                    killed |=
                        rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok();
                }
            }
        }
        if killed {
            std::thread::sleep(Duration::from_millis(100));
        }
        for d in &dirs {
            for m in ["rootfs", "mounts/shm"] {
                let _ = rustix::mount::unmount(d.join(m), rustix::mount::UnmountFlags::DETACH);
            }
        }
        // Volumes with driver options (tmpfs, binds) stay mounted while the daemon is away.
        if let Ok(rd) = std::fs::read_dir(self.data_root().join("volumes")) {
            for v in rd.flatten() {
                let data = v.path().join("_data");
                let _ = rustix::mount::unmount(&data, rustix::mount::UnmountFlags::DETACH);
            }
        }
        self.clean_network();
        let rel = self.cgroup_parent.trim_start_matches('/');
        if let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") {
            for h in hierarchies.flatten() {
                let parent = h.path().join(rel);
                if let Ok(children) = std::fs::read_dir(&parent) {
                    for c in children.flatten() {
                        if c.path().is_dir() {
                            let _ = std::fs::remove_dir(c.path());
                        }
                    }
                }
                let _ = std::fs::remove_dir(&parent);
            }
        }
    }
}

impl Daemon {
    /// Removes what the daemon's networking leaves on the host once it is gone: netns
    /// mounts, bridges (their veths go with the netns), the nftables table and the iptables
    /// accept rules marked with the table's name.
    fn clean_network(&self) {
        let netns = self.exec_root().join("netns");
        for e in std::fs::read_dir(&netns).into_iter().flatten().flatten() {
            let _ = rustix::mount::unmount(e.path(), rustix::mount::UnmountFlags::DETACH);
            let _ = std::fs::remove_file(e.path());
        }
        let quiet = |args: &[&str]| {
            let _ = std::process::Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        for b in self.bridges() {
            if std::path::Path::new("/sys/class/net").join(&b).exists() {
                quiet(&["ip", "link", "del", &b]);
            }
        }
        let table = self.firewall_table();
        quiet(&["nft", "delete", "table", "inet", &table]);
        for chain in ["DOCKER-USER", "FORWARD"] {
            // Delete every rule of ours, one at a time (`-D` takes the rule as listed).
            for _ in 0..16 {
                let out = std::process::Command::new("iptables")
                    .args(["-S", chain])
                    .output();
                let Ok(out) = out else { break };
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                let Some(line) = text.lines().find(|l| l.contains(&table)) else {
                    break;
                };
                let args: Vec<String> = shell_words(line.trim_start_matches("-A "));
                let mut cmd = vec!["iptables".to_string(), "-D".into()];
                cmd.extend(args);
                let refs: Vec<&str> = cmd.iter().map(String::as_str).collect();
                quiet(&refs);
            }
        }
    }
}

/// Splits an `iptables -S` line into arguments (double-quoted comments stay one argument).
fn shell_words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut any = false;
    for ch in line.chars() {
        match ch {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            ' ' if !quoted => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            c => {
                cur.push(c);
                any = true;
            }
        }
    }
    if any {
        out.push(cur);
    }
    out
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.is_some() {
            // A failing test must still not leave a daemon behind.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.stop()));
            self.kill_hard();
        }
        self.clean_containers();
        self.unmount_below();
    }
}

impl Daemon {
    /// Unmounts what is still mounted below the test's directory, deepest first: the tmpfs
    /// the daemon puts on its exec root (it stays while shims may use it), and anything a
    /// test's own daemons left.
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

/// A process a test started by hand: killed (by its own PID) and reaped when dropped, so a
/// failing assertion cannot leave it running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `cmd` with `stdin` (or none) and collects what it printed.
pub fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    });
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin pipe");
        let input = input.to_vec();
        // Write from a thread so a command that answers before reading all input cannot deadlock us.
        std::thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }
    Output::from(child.wait_with_output().expect("wait for command"))
}
