//! Rootless berthd (issue 18): the daemon run by an ordinary user, in a user namespace of its
//! own mapped to the user's id and subordinate ranges. Each test makes a throw-away system
//! user with its own ranges in /etc/subuid and /etc/subgid and its own `$HOME` and
//! `$XDG_RUNTIME_DIR`, runs berthd and berth as that user (setpriv), and removes all of it on
//! drop, failure included: the daemon (by its pid), any process left with the user's ids, the
//! ranges, the user, the directories. The daemon's mounts live in its own mount namespace and
//! go with it. Needs root, newuidmap/newgidmap (uidmap) and slirp4netns.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use berth_e2e::daemon::binary;
use berth_e2e::{Output, busybox_archive, require_root, run_command};

static USERS: AtomicU32 = AtomicU32::new(0);
const RANGE: u32 = 65536;

fn have(program: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(program).exists())
}

/// Skips (saying so) where the mode's programs are missing.
macro_rules! require_rootless_tools {
    () => {
        if !["newuidmap", "newgidmap", "slirp4netns"].iter().all(|p| have(p)) {
            eprintln!(
                "skipped: rootless mode needs newuidmap, newgidmap (uidmap) and slirp4netns (scripts/install-deps.sh)"
            );
            return;
        }
    };
}

/// A throw-away user, its ranges (unless `ranges` is false), its directories and its daemon.
struct RootlessUser {
    name: String,
    uid: u32,
    /// The first subordinate id (the same in both files).
    base: u32,
    dir: tempfile::TempDir,
    daemon: Option<Child>,
}

impl RootlessUser {
    fn new(ranges: bool) -> RootlessUser {
        let n = USERS.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("brl{}x{n}", pid % 100_000);
        // Far above what distributions hand out and above the remap tests' ranges.
        let base = 600_000_000 + ((pid % 500) * 8 + n) * RANGE;
        let _g = berth_e2e::subids::lock();
        // A system user gets no ranges from useradd: the test decides.
        let st = Command::new("useradd")
            .args(["-r", "-M", "-s", "/bin/sh", &name])
            .status()
            .expect("run useradd");
        assert!(st.success(), "useradd {name}");
        let id = Command::new("id").args(["-u", &name]).output().unwrap();
        let uid: u32 = String::from_utf8_lossy(&id.stdout).trim().parse().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("berth-rootless-")
            .tempdir()
            .expect("temp dir");
        let user = RootlessUser {
            name,
            uid,
            base,
            dir,
            daemon: None,
        };
        if ranges {
            berth_e2e::subids::add_range(&user.name, base, RANGE);
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(user.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        for (sub, mode) in [("home", 0o755), ("run", 0o700)] {
            let p = user.dir.path().join(sub);
            std::fs::create_dir(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let st = Command::new("chown")
                .arg(format!("{uid}:{uid}"))
                .arg(&p)
                .status()
                .unwrap();
            assert!(st.success());
        }
        user
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }
    fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    fn data_root(&self) -> PathBuf {
        self.home().join(".local/share/berth")
    }
    fn socket(&self) -> PathBuf {
        self.runtime_dir().join("berth.sock")
    }

    /// `program args` as the user, with only the user's environment and `path` as `$PATH`.
    fn command_with_path(&self, program: &Path, args: &[&str], path: &str) -> Command {
        let mut cmd = Command::new("/usr/bin/setpriv");
        cmd.args([
            "--reuid",
            &self.name,
            "--regid",
            &self.name,
            "--init-groups",
        ])
        .arg(program)
        .args(args)
        .env_clear()
        .env("HOME", self.home())
        .env("XDG_RUNTIME_DIR", self.runtime_dir())
        .env("PATH", path)
        .current_dir(self.home());
        cmd
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        self.command_with_path(
            program,
            args,
            "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        )
    }

    /// berth as the user, with no `-H`: it must find the user's daemon by itself.
    fn berth(&self, args: &[&str]) -> Output {
        run_command(self.command(&binary("berth"), args), None)
    }

    fn berth_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        run_command(self.command(&binary("berth"), args), Some(stdin))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("berthd.log")).unwrap_or_default()
    }

    /// Starts the user's berthd and waits until it answers.
    fn start_daemon(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("berthd.log")).unwrap();
        let child = self
            .command(&binary("berthd"), &["--log-level", "debug"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.daemon = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(status))) = self.daemon.as_mut().map(Child::try_wait) {
                panic!("berthd exited early ({status}); log:\n{}", self.log());
            }
            if self.socket().exists() && self.berth(&["version"]).code == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the rootless berthd did not answer in 30 s; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM to the daemon; its exit code once it exited.
    fn stop_daemon(&mut self) -> Option<i32> {
        let mut child = self.daemon.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Pids of the processes that run with the user's uid or one of its subordinate ids.
    fn processes(&self) -> Vec<i32> {
        let ours = |uid: u32| uid == self.uid || (self.base..self.base + RANGE).contains(&uid);
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .ok()
                    .and_then(|s| {
                        let line = s.lines().find(|l| l.starts_with("Uid:"))?.to_string();
                        line.split_whitespace().nth(1)?.parse::<u32>().ok()
                    })
                    .is_some_and(ours)
            })
            .collect()
    }
}

impl Drop for RootlessUser {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // What the daemon left (shims, containers): only this user's ids, by pid.
        for _ in 0..3 {
            let left = self.processes();
            if left.is_empty() {
                break;
            }
            for pid in left {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let _g = berth_e2e::subids::lock();
        berth_e2e::subids::remove_ranges(&self.name);
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// `/proc/PID/status`'s real uid of a host process.
fn host_uid(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("a Uid line")
}

fn http_get(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

#[test]
fn a_users_daemon_runs_execs_logs_publishes_and_keeps_volumes() {
    require_root!();
    require_rootless_tools!();
    let mut user = RootlessUser::new(true);
    user.start_daemon();
    // The daemon's files are the user's, where XDG puts them.
    assert!(user.socket().exists());
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(user.socket()).unwrap().uid(), user.uid);
    let info = user
        .berth(&[
            "info",
            "--format",
            "{{.DockerRootDir}} {{json .SecurityOptions}}",
        ])
        .success();
    assert!(
        info.stdout
            .starts_with(&user.data_root().display().to_string()),
        "{}",
        info.stdout
    );
    assert!(info.stdout.contains("name=rootless"), "{}", info.stdout);

    user.berth_with_stdin(&["load", "-q"], &busybox_archive("busybox:latest"))
        .success();
    let out = user
        .berth(&["run", "--rm", "busybox", "sh", "-c", "id -u; echo hello"])
        .success();
    assert_eq!(out.stdout, "0\nhello\n");
    // The docker CLI, as the user, on the user's socket.
    if let Some(docker) = berth_e2e::docker_cli() {
        let mut cmd = user.command(&docker, &["run", "--rm", "busybox", "echo", "via docker"]);
        cmd.env("DOCKER_HOST", format!("unix://{}", user.socket().display()));
        let out = run_command(cmd, None).success();
        assert_eq!(out.stdout, "via docker\n");
    }

    // A server with a volume and a port on the host's 127.0.0.1 (a port the daemon's parent
    // binds in the host's network namespace).
    user.berth(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1::80",
        "-v",
        "rootless-vol:/data",
        "busybox",
        "sh",
        "-c",
        "echo started; exec httpd -f -p 80 -h /data",
    ])
    .success();
    user.berth(&[
        "exec",
        "web",
        "sh",
        "-c",
        "echo served-rootless > /data/index.html",
    ])
    .success();
    let out = user.berth(&["exec", "web", "id", "-u"]).success();
    assert_eq!(out.stdout, "0\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !user
        .berth(&["logs", "web"])
        .success()
        .stdout
        .contains("started")
    {
        assert!(Instant::now() < deadline, "no log line");
        std::thread::sleep(Duration::from_millis(50));
    }
    let port = user.berth(&["port", "web", "80"]).success();
    let port: u16 = port
        .stdout
        .trim()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| panic!("a port: {}", port.stdout));
    let answer = http_get(port);
    assert!(answer.contains("served-rootless"), "{answer}");
    // A privileged port cannot be bound by the user's parent process: said so.
    let unprivileged_start: u32 =
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(1024);
    if unprivileged_start > 81 {
        let out = user
            .berth(&[
                "run",
                "-d",
                "-p",
                "127.0.0.1:81:80",
                "busybox",
                "sleep",
                "30",
            ])
            .failure();
        assert!(
            out.stderr.contains("ip_unprivileged_port_start"),
            "{}",
            out.stderr
        );
    }
    // No cgroup: top lists the container's pid namespace; pause says why it cannot.
    let top = user.berth(&["top", "web"]).success();
    assert!(top.stdout.contains("httpd"), "{}", top.stdout);
    let out = user.berth(&["pause", "web"]).failure();
    assert!(out.stderr.contains("no cgroups"), "{}", out.stderr);

    // Container root is the user on the host; another container uid is a subordinate id.
    let pid: u32 = user
        .berth(&["inspect", "-f", "{{.State.Pid}}", "web"])
        .success()
        .stdout
        .trim()
        .parse()
        .unwrap();
    assert_eq!(host_uid(pid), user.uid);
    user.berth(&[
        "run", "-d", "--name", "sub", "--user", "1000", "busybox", "sleep", "300",
    ])
    .success();
    let sub_pid: u32 = user
        .berth(&["inspect", "-f", "{{.State.Pid}}", "sub"])
        .success()
        .stdout
        .trim()
        .parse()
        .unwrap();
    assert_eq!(host_uid(sub_pid), user.base + 999);

    // The volume's data is under the user's data root, owned by the user.
    let mountpoint = user
        .berth(&["volume", "inspect", "-f", "{{.Mountpoint}}", "rootless-vol"])
        .success();
    let file = Path::new(mountpoint.stdout.trim()).join("index.html");
    assert!(file.starts_with(user.data_root()), "{}", file.display());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "served-rootless\n");
    assert_eq!(std::fs::metadata(&file).unwrap().uid(), user.uid);
    // It outlives the container.
    user.berth(&["rm", "-f", "web"]).success();
    let out = user
        .berth(&[
            "run",
            "--rm",
            "-v",
            "rootless-vol:/data",
            "busybox",
            "cat",
            "/data/index.html",
        ])
        .success();
    assert_eq!(out.stdout, "served-rootless\n");

    // No cgroups for the user: a limit is discarded with dockerd's warning, not ignored in
    // silence.
    let out = user
        .berth(&["run", "--rm", "--memory", "64m", "busybox", "true"])
        .success();
    assert!(
        out.stderr.contains("memory limit") && out.stderr.contains("discarded"),
        "{}",
        out.stderr
    );
    let warnings = user
        .berth(&["info", "--format", "{{json .Warnings}}"])
        .success();
    assert!(warnings.stdout.contains("rootless"), "{}", warnings.stdout);
    // The host's cgroup version, not that of the daemon's own (read-only) cgroup2 mount, and
    // no cgroup driver. (This test runs outside a delegated cgroup; delegation is tested in
    // the cgroup v2 VM: cgroup_v2_vm.rs.)
    let host_version = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "2"
    } else {
        "1"
    };
    let cg = user
        .berth(&["info", "--format", "{{.CgroupVersion}} {{.CgroupDriver}}"])
        .success();
    assert_eq!(cg.stdout.trim(), format!("{host_version} none"));

    // Stopping the daemon (SIGTERM to the process the user started) stops its containers:
    // nothing of the user's keeps running, and the next daemon knows they exited.
    let code = user.stop_daemon();
    assert_eq!(code, Some(0), "log:\n{}", user.log());
    // The shims record the exits and end a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !user.processes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let left: Vec<String> = user
        .processes()
        .iter()
        .map(|p| std::fs::read_to_string(format!("/proc/{p}/cmdline")).unwrap_or_default())
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    user.start_daemon();
    let out = user
        .berth(&["ps", "-a", "--filter", "name=sub", "--format", "{{.State}}"])
        .success();
    assert_eq!(out.stdout.trim(), "exited");
    user.berth(&["rm", "-f", "sub"]).success();
}

#[test]
fn a_rootless_start_without_ranges_or_newuidmap_changes_nothing() {
    require_root!();
    require_rootless_tools!();
    // No subordinate ranges.
    let user = RootlessUser::new(false);
    let out = run_command(user.command(&binary("berthd"), &[]), None);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr
            .contains("no subordinate uid range in /etc/subuid")
            && out.stderr.contains(&user.name),
        "{}",
        out.stderr
    );
    assert!(!user.data_root().exists() && !user.socket().exists());
    assert!(!user.runtime_dir().join("berth").exists());
    drop(user);

    // Ranges, but no newuidmap on $PATH.
    let user = RootlessUser::new(true);
    let empty = user.dir.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    let out = run_command(
        user.command_with_path(&binary("berthd"), &[], &empty.display().to_string()),
        None,
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("newuidmap") && out.stderr.contains("uidmap"),
        "{}",
        out.stderr
    );
    assert!(!user.data_root().exists() && !user.socket().exists());

    // No $XDG_RUNTIME_DIR (no login session): said so.
    let mut cmd = user.command(&binary("berthd"), &[]);
    cmd.env_remove("XDG_RUNTIME_DIR");
    let out = run_command(cmd, None);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("XDG_RUNTIME_DIR"), "{}", out.stderr);
    assert!(!user.data_root().exists());

    // Root cannot ask for a rootless daemon.
    let out = run_command(
        {
            let mut cmd = Command::new(binary("berthd"));
            cmd.arg("--rootless");
            cmd
        },
        None,
    );
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("ordinary user"), "{}", out.stderr);
}
