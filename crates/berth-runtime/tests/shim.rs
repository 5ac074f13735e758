//! Root integration tests: real containers through the `berth-shim` binary on a busybox root
//! filesystem. Each test cleans up after itself (also on failure) through [`Fixture`]'s Drop:
//! kill by pid, unmount, remove the test's cgroups.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_runtime::config::{ContainerRunConfig, LogConfig, Resources};
use berth_runtime::spec::RealHost;
use berth_runtime::{Bundle, RuntimeError, Shim, ShimHandle, rootfs};

const SHIM: &str = env!("CARGO_BIN_EXE_berth-shim");

/// The shim under test; `BERTH_TEST_SHIM` points at another build (e.g. a release binary
/// for the timing and RSS figures).
fn shim_bin() -> PathBuf {
    std::env::var_os("BERTH_TEST_SHIM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SHIM))
}
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ps", "sleep", "id", "hostname", "ls", "true", "head", "stty", "seq",
];

static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// One test's temp dir, busybox image layer and cgroup parent; cleans everything on drop.
struct Fixture {
    dir: tempfile::TempDir,
    cgroup_parent: String,
    handles: Vec<ShimHandle>,
    mounts: Vec<PathBuf>,
}

impl Fixture {
    fn new() -> Fixture {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = tempfile::Builder::new()
            .prefix("berth-rt-")
            .tempdir()
            .unwrap();
        let layer = dir.path().join("layer");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(layer.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", layer.join("bin/busybox")).unwrap();
        for a in APPLETS {
            std::os::unix::fs::symlink("busybox", layer.join("bin").join(a)).unwrap();
        }
        Fixture {
            dir,
            cgroup_parent: format!("berth-test-{}-{n}", std::process::id()),
            handles: Vec::new(),
            mounts: Vec::new(),
        }
    }

    fn layer(&self) -> PathBuf {
        self.dir.path().join("layer")
    }

    /// A container dir with the busybox layer under an overlay, and a config for `args`.
    fn config(&mut self, id: &str, args: &[&str]) -> ContainerRunConfig {
        let cdir = self.dir.path().join(id);
        let rootfs = rootfs::mount_overlay(&[self.layer()], &cdir).unwrap();
        self.mounts.push(rootfs.clone());
        ContainerRunConfig {
            id: id.to_string(),
            rootfs,
            args: args.iter().map(|s| s.to_string()).collect(),
            hostname: "berth-host".into(),
            cgroup_path: Some(format!("/{}/{id}", self.cgroup_parent)),
            ..Default::default()
        }
    }

    fn bundle(&self, id: &str) -> PathBuf {
        self.dir.path().join(id)
    }

    fn spawn(&mut self, cfg: &ContainerRunConfig) -> Result<ShimHandle, RuntimeError> {
        let bundle = self.bundle(&cfg.id);
        Bundle::new(&bundle).write(cfg, &RealHost).unwrap();
        let h = Shim::spawn(&bundle, &shim_bin())?;
        self.handles.push(h.clone());
        Ok(h)
    }

    /// Like [`Fixture::spawn`], but only created: [`ShimHandle::start`] runs it.
    fn create(&mut self, cfg: &ContainerRunConfig) -> Result<ShimHandle, RuntimeError> {
        let bundle = self.bundle(&cfg.id);
        Bundle::new(&bundle).write(cfg, &RealHost).unwrap();
        let h = Shim::create(&bundle, &shim_bin())?;
        self.handles.push(h.clone());
        Ok(h)
    }

    fn log_lines(&self, id: &str) -> Vec<serde_json::Value> {
        let p = self.bundle(id).join(format!("{id}-json.log"));
        std::fs::read_to_string(p)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn stdout(&self, id: &str) -> String {
        self.log_lines(id)
            .iter()
            .filter(|l| l["stream"] == "stdout")
            .map(|l| l["log"].as_str().unwrap().to_string())
            .collect()
    }

    fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
            let p = entry.path().join(&self.cgroup_parent);
            if p.exists() {
                out.push(p);
            }
        }
        out
    }

    /// Assert the runtime cleaned up after itself: no container cgroup left below the test's
    /// parent, no runtime state left in the bundle. The shim reports the exit first and
    /// cleans up after; it removes `shim.pid` once done, so that is waited for.
    fn assert_runtime_cleaned(&self, id: &str) {
        let pid_file = self.bundle(id).join("shim.pid");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pid_file.exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!pid_file.exists(), "the shim never finished its clean-up");
        for parent in self.cgroup_dirs() {
            assert!(
                !parent.join(id).exists(),
                "cgroup {} left behind",
                parent.join(id).display()
            );
        }
        assert!(
            !self.bundle(id).join("runtime").join(id).exists(),
            "runtime state left behind"
        );
        assert!(!self.bundle(id).join("shim.sock").exists());
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for h in &self.handles {
            for pid in [h.pid(), h.shim_pid()] {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
        }
        if !self.handles.is_empty() {
            // Give killed shims a moment to delete their containers' cgroups.
            std::thread::sleep(Duration::from_millis(100));
        }
        for m in &self.mounts {
            let _ = rootfs::unmount(m);
        }
        for parent in self.cgroup_dirs() {
            if let Ok(entries) = std::fs::read_dir(&parent) {
                for e in entries.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&parent);
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let tmp = self.dir.path().to_path_buf();
        let left: Vec<String> = rootfs::mountpoints(&info)
            .filter(|m| Path::new(m).starts_with(&tmp))
            .collect();
        let cg_left = self.cgroup_dirs();
        if !std::thread::panicking() {
            assert!(
                left.is_empty(),
                "mounts left under {}: {left:?}",
                tmp.display()
            );
            assert!(cg_left.is_empty(), "cgroups left: {cg_left:?}");
        }
    }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

#[test]
fn echo_hello_is_logged_and_exits_zero() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("echo", &["echo", "hello"]);
    let h = fx.spawn(&cfg).unwrap();
    let rec = h.wait().unwrap();
    assert_eq!(rec.exit_code, 0);
    assert!(!rec.oom_killed);
    let lines = fx.log_lines("echo");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["log"], "hello\n");
    assert_eq!(lines[0]["stream"], "stdout");
    // The shim is gone now: wait and state answer from exit.json.
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(h.wait().unwrap(), rec);
    assert_eq!(
        ShimHandle::connect(&fx.bundle("echo"))
            .unwrap()
            .wait()
            .unwrap(),
        rec
    );
    fx.assert_runtime_cleaned("echo");
}

#[test]
fn exit_code_passes_through() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("exit3", &["sh", "-c", "echo out; echo err >&2; exit 3"]);
    let h = fx.spawn(&cfg).unwrap();
    let rec = h.wait().unwrap();
    assert_eq!(rec.exit_code, 3);
    assert_eq!(rec.signal, None);
    let lines = fx.log_lines("exit3");
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stderr" && l["log"] == "err\n"),
        "{lines:?}"
    );
    assert_eq!(fx.stdout("exit3"), "out\n");
    fx.assert_runtime_cleaned("exit3");
}

fn vm_rss_kib(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
fn sigkill_gives_137_and_state_reports_running() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("sleeper", &["sleep", "100"]);
    let h = fx.spawn(&cfg).unwrap();
    let st = h.state().unwrap();
    assert_eq!(st.status, berth_runtime::shim::ContainerStatus::Running);
    assert_eq!(st.pid, h.pid());
    let rss = vm_rss_kib(h.shim_pid()).unwrap();
    println!("shim VmRSS while `sleep` runs: {rss} kB");
    h.kill(9).unwrap();
    let rec = h.wait().unwrap();
    assert_eq!(rec.exit_code, 137);
    assert_eq!(rec.signal, Some(9));
    fx.assert_runtime_cleaned("sleeper");
}

#[test]
fn pid_namespace_hides_host_processes() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("ps", &["ps"]);
    let h = fx.spawn(&cfg).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 0);
    let out = fx.stdout("ps");
    let rows: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "only ps itself: {out}");
    assert!(rows[0].trim_start().starts_with("1 "), "{out}");
}

#[test]
fn hostname_is_configured() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("host", &["hostname"]);
    let h = fx.spawn(&cfg).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 0);
    assert_eq!(fx.stdout("host"), "berth-host\n");
}

#[test]
fn default_capabilities_and_seccomp_apply() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("caps", &["cat", "/proc/self/status"]);
    let h = fx.spawn(&cfg).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 0);
    let out = fx.stdout("caps");
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    // Docker's default set: 0x00000000a80425fb.
    assert_eq!(field("CapEff:"), "00000000a80425fb", "{out}");
    assert_eq!(field("CapBnd:"), "00000000a80425fb");
    assert_eq!(field("CapInh:"), "0000000000000000");
    assert_eq!(field("Seccomp:"), "2");
    // The filter (compiled by the daemon, loaded right before execve) needed CAP_SYS_ADMIN,
    // not no_new_privs: as in Docker, setuid programs still work, and the capability held
    // for loading it is gone after execve.
    assert_eq!(field("CapPrm:"), "00000000a80425fb");
    assert_eq!(field("NoNewPrivs:"), "0");
}

#[test]
fn memory_limit_lands_in_cgroup() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config("mem", &["sleep", "100"]);
    cfg.resources = Resources {
        memory: 64 * 1024 * 1024,
        pids_limit: 50,
        ..Default::default()
    };
    let h = fx.spawn(&cfg).unwrap();
    let base = format!("{}/mem", fx.cgroup_parent);
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(&base)
        .join("memory.limit_in_bytes");
    let v2 = Path::new("/sys/fs/cgroup").join(&base).join("memory.max");
    let limit = std::fs::read_to_string(&v1)
        .or_else(|_| std::fs::read_to_string(&v2))
        .unwrap();
    assert_eq!(limit.trim(), "67108864");
    let pids = Path::new("/sys/fs/cgroup/pids")
        .join(&base)
        .join("pids.max");
    if let Ok(p) = std::fs::read_to_string(pids) {
        assert_eq!(p.trim(), "50");
    }
    // pid 1 of a pid namespace ignores SIGTERM without a handler (as under Docker).
    h.kill(9).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 137);
    fx.assert_runtime_cleaned("mem");
}

#[test]
fn missing_command_is_a_distinct_error() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("missing", &["no-such-command"]);
    match fx.spawn(&cfg) {
        Err(e @ RuntimeError::ExecutableNotFound { .. }) => {
            assert_eq!(e.docker_exit_code(), Some(127));
            assert!(
                e.to_string().contains("executable file not found in $PATH"),
                "{e}"
            );
        }
        other => panic!("expected ExecutableNotFound, got {other:?}"),
    }
    fx.assert_runtime_cleaned("missing");
    assert!(
        ShimHandle::connect(&fx.bundle("missing")).is_err(),
        "no pid files after a failed start"
    );
}

#[test]
fn tty_output_goes_through_the_pty() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config("tty", &["sh", "-c", "test -t 1 && echo is-a-tty"]);
    cfg.tty = true;
    let h = fx.spawn(&cfg).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 0);
    assert_eq!(fx.stdout("tty"), "is-a-tty\r\n");
}

#[test]
fn overlay_with_zero_one_and_many_layers() {
    require_root!();
    let mut fx = Fixture::new();
    // No layers: an empty lower.
    let empty = fx.dir.path().join("c-empty");
    let r = rootfs::mount_overlay(&[], &empty).unwrap();
    fx.mounts.push(r.clone());
    assert!(rootfs::is_mounted(&r));
    assert_eq!(std::fs::read_dir(&r).unwrap().count(), 0);
    rootfs::unmount(&r).unwrap();
    assert!(!rootfs::is_mounted(&r));
    // Many layers with long paths: more than a page of lowerdir options.
    let mut layers = Vec::new();
    for i in 0..40 {
        let l = fx
            .dir
            .path()
            .join(format!("layers/{i:02}-{}", "x".repeat(100)));
        std::fs::create_dir_all(&l).unwrap();
        std::fs::write(l.join(format!("f{i}")), format!("{i}")).unwrap();
        std::fs::write(l.join("top"), format!("{i}")).unwrap();
        layers.push(l);
    }
    let many = fx.dir.path().join("c-many");
    let r = rootfs::mount_overlay(&layers, &many).unwrap();
    fx.mounts.push(r.clone());
    assert_eq!(
        std::fs::read_to_string(r.join("top")).unwrap(),
        "39",
        "last layer is on top"
    );
    assert_eq!(std::fs::read_to_string(r.join("f0")).unwrap(), "0");
    std::fs::write(r.join("new"), "x").unwrap();
    assert!(many.join("upper/new").exists());
    rootfs::unmount(&r).unwrap();
}

#[test]
fn spawn_to_exit_timing() {
    require_root!();
    let mut fx = Fixture::new();
    let mtime = |p: PathBuf| std::fs::metadata(p).unwrap().modified().unwrap();
    let mut total = Vec::new();
    let mut phases = Vec::new();
    for i in 0..20 {
        let id = format!("t{i}");
        let cfg = fx.config(&id, &["true"]);
        let b = Bundle::new(fx.bundle(&id));
        b.write(&cfg, &RealHost).unwrap();
        let wall = std::time::SystemTime::now();
        let start = Instant::now();
        let h = Shim::spawn(&fx.bundle(&id), &shim_bin()).unwrap();
        fx.handles.push(h.clone());
        let rec = h.wait().unwrap();
        total.push(start.elapsed());
        assert_eq!(rec.exit_code, 0);
        let since = |p| mtime(p).duration_since(wall).unwrap_or_default();
        // (shim.pid is gone by now: the shim removes it once it has cleaned up.)
        phases.push((since(b.init_pid_path()), since(b.exit_path())));
    }
    total.sort();
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    println!(
        "spawn -> exit of `true` through the shim, 20 runs: median {:?}, min {:?}, max {:?}; \
         median phases since spawn: container created {:?}, exit recorded {:?}",
        total[10],
        total[0],
        total[19],
        median(phases.iter().map(|p| p.0).collect()),
        median(phases.iter().map(|p| p.1).collect()),
    );
}

#[test]
fn close_stdin_gives_eof() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config("stdin", &["sh", "-c", "cat; echo eof"]);
    cfg.open_stdin = true;
    let h = fx.spawn(&cfg).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        h.state().unwrap().status,
        berth_runtime::shim::ContainerStatus::Running,
        "cat waits for input"
    );
    h.close_stdin().unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 0);
    assert_eq!(fx.stdout("stdin"), "eof\n");
}

#[test]
fn a_restarted_daemon_adopts_the_shim() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("adopt", &["sleep", "100"]);
    let h = fx.spawn(&cfg).unwrap();
    // The shim is not our child: it was reparented when its first process exited.
    let status = std::fs::read_to_string(format!("/proc/{}/status", h.shim_pid())).unwrap();
    let ppid: u32 = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_ne!(ppid, std::process::id());
    // A fresh handle from the bundle alone, as after a daemon restart.
    let adopted = ShimHandle::connect(&fx.bundle("adopt")).unwrap();
    assert_eq!(adopted.pid(), h.pid());
    assert_eq!(adopted.state().unwrap().pid, h.pid());
    // Two waiters at once both get the record.
    let waiter = {
        let h = h.clone();
        std::thread::spawn(move || h.wait().unwrap())
    };
    std::thread::sleep(Duration::from_millis(50));
    adopted.kill(9).unwrap();
    let rec = adopted.wait().unwrap();
    assert_eq!(rec.exit_code, 137);
    assert_eq!(waiter.join().unwrap(), rec);
    assert!(
        adopted.kill(9).is_err(),
        "killing an exited container fails"
    );
}

#[test]
fn oom_kill_is_recorded() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config(
        "oom",
        &[
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
        ],
    );
    cfg.resources = Resources {
        memory: 16 * 1024 * 1024,
        memory_swap: 16 * 1024 * 1024,
        ..Default::default()
    };
    let h = fx.spawn(&cfg).unwrap();
    let rec = h.wait().unwrap();
    assert_eq!(rec.exit_code, 137, "{rec:?}");
    assert!(rec.oom_killed, "{rec:?}");
    fx.assert_runtime_cleaned("oom");
}

#[test]
fn readonly_rootfs_masks_user_and_binds() {
    require_root!();
    let mut fx = Fixture::new();
    let host_dir = fx.dir.path().join("hostdata");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("f"), "from-host").unwrap();
    let script = "touch /x 2>/dev/null && echo rw-root || echo ro-root; \
                  wc -c < /proc/keys; id -u; id -G; cat /data/f; echo; \
                  touch /data/y 2>/dev/null && echo rw-bind || echo ro-bind; \
                  touch /tmp/z && echo tmpfs-ok";
    let mut cfg = fx.config("ro", &["sh", "-c", script]);
    cfg.readonly_rootfs = true;
    cfg.user.uid = 1000;
    cfg.user.gid = 1000;
    cfg.group_add = vec![44];
    cfg.mounts = vec![
        berth_runtime::config::MountSpec {
            destination: "/data".into(),
            kind: berth_runtime::config::MountKind::Bind {
                source: host_dir.clone(),
            },
            readonly: true,
            options: vec![],
        },
        berth_runtime::config::MountSpec {
            destination: "/tmp".into(),
            kind: berth_runtime::config::MountKind::Tmpfs,
            readonly: false,
            options: vec!["mode=1777".into()],
        },
    ];
    let h = fx.spawn(&cfg).unwrap();
    let rec = h.wait().unwrap();
    let out = fx.stdout("ro");
    assert_eq!(rec.exit_code, 0, "{out}");
    assert_eq!(
        out,
        "ro-root\n0\n1000\n1000 44\nfrom-host\nro-bind\ntmpfs-ok\n",
        "{:?}",
        fx.log_lines("ro")
    );
    assert!(!host_dir.join("y").exists());
}

#[test]
fn tty_resize_reaches_the_process() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config("resize", &["sh", "-c", "sleep 0.3; stty size"]);
    cfg.tty = true;
    let h = fx.spawn(&cfg).unwrap();
    h.resize(33, 101).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 0);
    assert_eq!(fx.stdout("resize"), "33 101\r\n");
}

#[test]
fn runtime_failure_is_reported_and_cleaned_up() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config("badcwd", &["true"]);
    cfg.working_dir = "/bin/busybox/not-a-dir".into();
    match fx.spawn(&cfg) {
        Err(e @ RuntimeError::Create { .. }) => {
            println!("create failure reads: {e}");
            assert!(e.to_string().contains("badcwd"), "{e}");
            assert_eq!(e.docker_exit_code(), None);
        }
        other => panic!("expected Create, got {other:?}"),
    }
    fx.assert_runtime_cleaned("badcwd");
    assert!(!fx.bundle("badcwd").join("runtime").exists());
}

// ---- attach, exec, init, log drivers ----------------------------------------------------

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use berth_runtime::shim::{ContainerStatus, ExecConfig, LogDriverConfig};

/// Read a stream to its end (the shim closes it after the last output). The timeout only
/// guards against a hang: it must outlast the shim's 30 s stall limit, for which a stuck
/// attacher holds every other reader's output back (`two_attachers_and_a_stuck_one`).
fn read_all(s: &mut UnixStream) -> Vec<u8> {
    s.set_read_timeout(Some(Duration::from_secs(90))).unwrap();
    let mut v = Vec::new();
    s.read_to_end(&mut v).expect("the stream ends");
    v
}

/// Split Docker's multiplexed frames into stdout and stderr.
fn demux(mut b: &[u8]) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while !b.is_empty() {
        assert!(b.len() >= 8, "truncated frame header: {b:?}");
        assert_eq!(&b[1..4], &[0, 0, 0], "bad frame header");
        let len = u32::from_be_bytes(b[4..8].try_into().unwrap()) as usize;
        let payload = &b[8..8 + len];
        match b[0] {
            1 => out.extend_from_slice(payload),
            2 => err.extend_from_slice(payload),
            x => panic!("bad stream byte {x}"),
        }
        b = &b[8 + len..];
    }
    (
        String::from_utf8(out).unwrap(),
        String::from_utf8(err).unwrap(),
    )
}

fn exec(args: &[&str]) -> ExecConfig {
    ExecConfig {
        exec_id: format!("x{}", COUNTER.fetch_add(1, Ordering::SeqCst)),
        args: args.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        stderr: true,
        ..Default::default()
    }
}

#[test]
fn attach_before_start_gets_all_output() {
    require_root!();
    let mut fx = Fixture::new();
    for i in 0..5 {
        let id = format!("early{i}");
        let cfg = fx.config(&id, &["sh", "-c", "echo hello; echo oops >&2"]);
        let h = fx.create(&cfg).unwrap();
        assert_eq!(h.state().unwrap().status, ContainerStatus::Created);
        let mut a = h.attach(false, true, true).unwrap();
        assert!(!a.tty);
        h.start().unwrap();
        let (out, err) = demux(&read_all(&mut a.stream));
        assert_eq!(
            (out.as_str(), err.as_str()),
            ("hello\n", "oops\n"),
            "run {i}"
        );
        assert_eq!(h.wait().unwrap().exit_code, 0);
        assert!(h.start().is_err(), "start after exit fails");
        fx.assert_runtime_cleaned(&id);
    }
}

#[test]
fn two_attachers_and_a_stuck_one() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config(
        "multi",
        &[
            "sh",
            "-c",
            "sleep 0.2; echo one; echo two >&2; head -c 20000000 /dev/zero",
        ],
    );
    cfg.log = LogDriverConfig::None;
    let h = fx.create(&cfg).unwrap();
    let mut a = h.attach(false, true, true).unwrap();
    let mut b = h.attach(false, true, false).unwrap();
    // Attached but never reads: it holds the container back (flow control, as under Docker)
    // only until it has taken nothing for the stall limit (30 s), then it is dropped.
    let _stuck = h.attach(false, true, true).unwrap();
    // Attached and gone at once.
    drop(h.attach(true, true, true).unwrap());
    h.start().unwrap();
    let rss = vm_rss_kib(h.shim_pid()).unwrap_or(0);
    let ta = std::thread::spawn(move || read_all(&mut a.stream));
    let tb = std::thread::spawn(move || read_all(&mut b.stream));
    let started = Instant::now();
    let rec = h.wait().unwrap();
    println!(
        "20 MB through two attached clients (one stuck): exit after {:?}; shim VmRSS while \
         attached: {rss} kB",
        started.elapsed()
    );
    assert_eq!(rec.exit_code, 0);
    let (a_out, b_out) = (ta.join().unwrap(), tb.join().unwrap());
    let (ao, ae) = demux(&a_out);
    let (bo, be) = demux(&b_out);
    assert_eq!(ae, "two\n");
    assert_eq!(be, "", "b did not ask for stderr");
    assert!(ao.starts_with("one\n") && bo.starts_with("one\n"));
    assert_eq!(ao.len(), 4 + 20_000_000);
    assert_eq!(bo.len(), 4 + 20_000_000);
    assert!(
        !fx.bundle("multi").join("multi-json.log").exists(),
        "the none driver writes no log"
    );
}

#[test]
fn stdin_through_attach_reaches_cat_and_eof_ends_it() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config("cat", &["sh", "-c", "cat; echo done"]);
    cfg.open_stdin = true;
    cfg.stdin_once = true;
    let h = fx.create(&cfg).unwrap();
    let mut a = h.attach(true, true, true).unwrap();
    h.start().unwrap();
    a.stream.write_all(b"hi there\n").unwrap();
    a.stream.shutdown(std::net::Shutdown::Write).unwrap();
    let (out, _) = demux(&read_all(&mut a.stream));
    assert_eq!(out, "hi there\ndone\n");
    assert_eq!(h.wait().unwrap().exit_code, 0);
}

#[test]
fn tty_attach_gets_raw_bytes() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config("ttyattach", &["sh", "-c", "read x; echo got-$x"]);
    cfg.tty = true;
    cfg.open_stdin = true;
    let h = fx.create(&cfg).unwrap();
    let mut a = h.attach(true, true, true).unwrap();
    assert!(a.tty);
    h.start().unwrap();
    a.stream.write_all(b"abc\r").unwrap();
    let raw = String::from_utf8(read_all(&mut a.stream)).unwrap();
    // The pty echoes the input, then the output: raw bytes, no frame headers.
    assert_eq!(raw, "abc\r\ngot-abc\r\n");
    assert_eq!(h.wait().unwrap().exit_code, 0);
}

#[test]
fn exec_runs_in_the_container() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("execs", &["sleep", "100"]);
    let h = fx.spawn(&cfg).unwrap();

    // Output, exit code, pid namespace and hostname of the container.
    let e = exec(&["sh", "-c", "echo hello; hostname; echo err >&2; echo $$"]);
    let mut p = h.exec_start(&e).unwrap();
    let (out, err) = demux(&read_all(p.stream.as_mut().unwrap()));
    assert_eq!(err, "err\n");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(&lines[..2], ["hello", "berth-host"]);
    assert_ne!(
        lines[2], "1",
        "not pid 1, but inside the container's pid namespace"
    );
    assert!(lines[2].parse::<u32>().unwrap() < 100);
    let st = h.exec_wait(&e.exec_id).unwrap();
    assert_eq!((st.running, st.exit_code), (false, Some(0)));
    assert_eq!(h.exec_state(&e.exec_id).unwrap(), st);

    let e5 = exec(&["sh", "-c", "exit 5"]);
    let mut p = h.exec_start(&e5).unwrap();
    read_all(p.stream.as_mut().unwrap());
    assert_eq!(h.exec_wait(&e5.exec_id).unwrap().exit_code, Some(5));
    assert!(matches!(
        h.exec_start(&e5),
        Err(RuntimeError::ExecExists { .. })
    ));
    assert!(matches!(
        h.exec_state("nope"),
        Err(RuntimeError::NoSuchExec { .. })
    ));

    // stdin: EOF from the client ends `cat`.
    let mut ec = exec(&["cat"]);
    ec.stdin = true;
    let mut p = h.exec_start(&ec).unwrap();
    let s = p.stream.as_mut().unwrap();
    s.write_all(b"via exec stdin\n").unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(demux(&read_all(s)).0, "via exec stdin\n");
    assert_eq!(h.exec_wait(&ec.exec_id).unwrap().exit_code, Some(0));

    // A user and environment of its own.
    let mut eu = exec(&["sh", "-c", "id -u; echo $FOO"]);
    eu.user = Some(berth_runtime::config::ProcessUser {
        uid: 1234,
        gid: 1234,
        additional_gids: vec![],
    });
    eu.env = vec!["FOO=bar".into()];
    let mut p = h.exec_start(&eu).unwrap();
    assert_eq!(
        demux(&read_all(p.stream.as_mut().unwrap())).0,
        "1234\nbar\n"
    );

    // The container's confinement applies: capabilities and seccomp.
    let mut p = h.exec_start(&exec(&["cat", "/proc/self/status"])).unwrap();
    let status = demux(&read_all(p.stream.as_mut().unwrap())).0;
    let field = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    assert_eq!(field("CapEff:"), "00000000a80425fb", "{status}");
    assert_eq!(field("CapBnd:"), "00000000a80425fb");
    assert_eq!(
        field("Seccomp:"),
        "2",
        "exec runs under the container's seccomp filter"
    );
    assert_eq!(field("CapPrm:"), "00000000a80425fb", "{status}");
    assert_eq!(
        field("NoNewPrivs:"),
        "0",
        "an exec keeps setuid working, as Docker's"
    );
    let mut ep = exec(&["sh", "-c", "grep CapEff /proc/self/status"]);
    ep.privileged = true;
    let mut p = h.exec_start(&ep).unwrap();
    let caps = demux(&read_all(p.stream.as_mut().unwrap())).0;
    assert_ne!(
        caps.trim(),
        "CapEff:\t00000000a80425fb",
        "privileged exec has all caps"
    );

    // Detached: no stream; wait reports the exit.
    let mut ed = exec(&["sh", "-c", "exit 3"]);
    ed.detach = true;
    let p = h.exec_start(&ed).unwrap();
    assert!(p.stream.is_none());
    assert_eq!(h.exec_wait(&ed.exec_id).unwrap().exit_code, Some(3));

    assert_eq!(h.state().unwrap().status, ContainerStatus::Running);
    h.kill(9).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 137);
    fx.assert_runtime_cleaned("execs");
}

#[test]
fn exec_with_tty() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("exectty", &["sleep", "100"]);
    let h = fx.spawn(&cfg).unwrap();
    let mut e = exec(&[
        "sh",
        "-c",
        "test -t 1 && echo is-a-tty; sleep 0.3; stty size",
    ]);
    e.tty = true;
    let mut p = h.exec_start(&e).unwrap();
    assert!(p.tty);
    h.exec_resize(&e.exec_id, 40, 120).unwrap();
    let raw = String::from_utf8(read_all(p.stream.as_mut().unwrap())).unwrap();
    assert_eq!(raw, "is-a-tty\r\n40 120\r\n");
    assert_eq!(h.exec_wait(&e.exec_id).unwrap().exit_code, Some(0));
    h.kill(9).unwrap();
    h.wait().unwrap();
}

#[test]
fn exec_errors_are_distinct() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("execerr", &["sleep", "100"]);
    let h = fx.spawn(&cfg).unwrap();
    match h.exec_start(&exec(&["nope"])) {
        Err(e @ RuntimeError::ExecutableNotFound { .. }) => {
            assert_eq!(e.docker_exit_code(), Some(127));
            assert_eq!(
                e.oci_exec_message().unwrap(),
                "OCI runtime exec failed: exec failed: unable to start container process: \
                 exec: \"nope\": executable file not found in $PATH: unknown"
            );
        }
        other => panic!("expected ExecutableNotFound, got {other:?}"),
    }
    assert!(matches!(
        h.exec_start(&exec(&["/etc"])),
        Err(RuntimeError::ExecutableNotRunnable { .. })
    ));
    h.kill(9).unwrap();
    h.wait().unwrap();
    // Exited: the shim is gone.
    let err = h.exec_start(&exec(&["true"])).unwrap_err();
    assert!(matches!(err, RuntimeError::NotRunning { .. }), "{err:?}");
    assert_eq!(err.kind(), berth_api::ErrorKind::Conflict);
    assert!(matches!(
        h.attach(false, true, true),
        Err(RuntimeError::NotRunning { .. })
    ));

    // Created, not started: refused too.
    let cfg = fx.config("execcreated", &["true"]);
    let h = fx.create(&cfg).unwrap();
    assert!(matches!(
        h.exec_start(&exec(&["true"])),
        Err(RuntimeError::NotRunning { .. })
    ));
    h.kill(9).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 137);
    fx.assert_runtime_cleaned("execcreated");
}

/// Processes whose parent is `pid` and that are zombies.
fn zombie_children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/status")) else {
            continue;
        };
        let field = |k: &str| {
            st.lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        if field("PPid:") == pid.to_string() && field("State:").starts_with('Z') {
            out.push(p);
        }
    }
    out
}

#[test]
fn init_reaps_zombies_and_forwards_sigterm() {
    require_root!();
    let mut fx = Fixture::new();
    let init = fx.dir.path().join("docker-init");
    berth_runtime::init::install(&init).unwrap();
    // Orphans reparent to pid 1 and would stay zombies without a reaper.
    let mut cfg = fx.config(
        "init",
        &[
            "sh",
            "-c",
            "(sleep 0.1 &); (sleep 0.1 &); (sleep 0.1 &); sleep 100",
        ],
    );
    cfg.init = true;
    cfg.init_path = Some(init);
    cfg.readonly_rootfs = true;
    let h = fx.spawn(&cfg).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(zombie_children(h.pid()), Vec::<i32>::new());
    let mut p = h.exec_start(&exec(&["ps"])).unwrap();
    let (ps, _) = demux(&read_all(p.stream.as_mut().unwrap()));
    let pid1 = ps
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_default();
    assert!(pid1.contains("/sbin/docker-init -- sh -c"), "{ps}");
    // pid 1 of a pid namespace ignores SIGTERM without a handler; the init forwards it.
    h.kill(15).unwrap();
    let rec = h.wait().unwrap();
    assert_eq!(rec.exit_code, 143, "{rec:?}");
    fx.assert_runtime_cleaned("init");
}

#[test]
fn init_with_a_tty() {
    require_root!();
    let mut fx = Fixture::new();
    let init = fx.dir.path().join("docker-init");
    berth_runtime::init::install(&init).unwrap();
    let mut cfg = fx.config("inittty", &["sh", "-c", "test -t 0 && echo tty-ok; exit 4"]);
    cfg.init = true;
    cfg.init_path = Some(init);
    cfg.tty = true;
    let h = fx.spawn(&cfg).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 4);
    assert_eq!(fx.stdout("inittty"), "tty-ok\r\n");
}

#[test]
fn init_reports_a_missing_command_before_start() {
    require_root!();
    let mut fx = Fixture::new();
    let init = fx.dir.path().join("docker-init");
    berth_runtime::init::install(&init).unwrap();
    let mut cfg = fx.config("initmissing", &["nope"]);
    cfg.init = true;
    cfg.init_path = Some(init);
    assert!(matches!(
        fx.spawn(&cfg),
        Err(RuntimeError::ExecutableNotFound { .. })
    ));
}

#[test]
fn json_file_rotation_keeps_max_file_files() {
    require_root!();
    let mut fx = Fixture::new();
    let mut cfg = fx.config("rot", &["seq", "1", "2000"]);
    cfg.log = LogDriverConfig::from_docker(&LogConfig {
        driver: "json-file".into(),
        opts: [("max-size", "1k"), ("max-file", "3")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
    .unwrap();
    let h = fx.spawn(&cfg).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 0);
    let mut names: Vec<String> = std::fs::read_dir(fx.bundle("rot"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("rot-json.log"))
        .collect();
    names.sort();
    assert_eq!(names, ["rot-json.log", "rot-json.log.1", "rot-json.log.2"]);
    let last = fx.stdout("rot");
    assert!(last.ends_with("2000\n"), "{last}");
    // Drivers not implemented (gelf): a distinct error before anything runs.
    let err = LogDriverConfig::from_docker(&LogConfig {
        driver: "gelf".into(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        matches!(err, RuntimeError::LogDriverNotSupported { .. }),
        "{err}"
    );
}

#[test]
fn attach_to_a_running_container_sees_output_from_then_on() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config(
        "late",
        &[
            "sh",
            "-c",
            "i=0; while [ $i -lt 20 ]; do echo $i; i=$((i+1)); sleep 0.05; done",
        ],
    );
    let h = fx.spawn(&cfg).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // One client leaves early, half-way through; the container does not notice.
    let early = h.attach(true, true, true).unwrap();
    let mut a = h.attach(false, true, false).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(early);
    let (out, _) = demux(&read_all(&mut a.stream));
    assert!(out.ends_with("18\n19\n"), "{out}");
    assert!(
        !out.starts_with("0\n"),
        "no output from before the attach: {out}"
    );
    assert_eq!(h.wait().unwrap().exit_code, 0);
    assert!(
        fx.stdout("late").starts_with("0\n1\n"),
        "the log has everything"
    );
}

fn exec_true_latency(h: &ShimHandle) -> Vec<Duration> {
    let mut times = Vec::new();
    for _ in 0..10 {
        let et = exec(&["true"]);
        let t = Instant::now();
        let mut p = h.exec_start(&et).unwrap();
        read_all(p.stream.as_mut().unwrap());
        assert_eq!(h.exec_wait(&et.exec_id).unwrap().exit_code, Some(0));
        times.push(t.elapsed());
    }
    times.sort();
    times
}

#[test]
fn exec_latency() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("lat", &["sleep", "100"]);
    let h = fx.spawn(&cfg).unwrap();
    let mut cfg = fx.config("latu", &["sleep", "100"]);
    cfg.seccomp = berth_runtime::config::SeccompMode::Unconfined;
    let hu = fx.spawn(&cfg).unwrap();
    let (t, tu) = (exec_true_latency(&h), exec_true_latency(&hu));
    println!(
        "exec `true`, exec_start -> exit recorded, 10 runs: median {:?} (min {:?}, max {:?}) \
         with the default seccomp profile; median {:?} (min {:?}) unconfined",
        t[5], t[0], t[9], tu[5], tu[0]
    );
    for h in [h, hu] {
        h.kill(9).unwrap();
        h.wait().unwrap();
    }
}

// ---- An external OCI runtime (`--runtime runc`) driven through its command line ----

const RUNC: &str = "/usr/sbin/runc";

macro_rules! require_runc {
    () => {
        require_root!();
        if !Path::new(RUNC).exists() {
            eprintln!("skipped: {RUNC} is not installed");
            return;
        }
    };
}

impl Fixture {
    /// Like [`Fixture::config`], run by runc instead of the embedded runtime.
    fn runc_config(&mut self, id: &str, args: &[&str]) -> ContainerRunConfig {
        let mut cfg = self.config(id, args);
        cfg.runtime = Some(berth_runtime::config::OciRuntime {
            name: "runc".into(),
            path: RUNC.into(),
            args: Vec::new(),
        });
        cfg
    }

    /// Nothing of runc's left: no cgroup, no state directory, no socket.
    fn assert_runc_cleaned(&self, id: &str) {
        self.assert_runtime_cleaned(id);
        assert!(
            !self.bundle(id).join("runtime-state").exists(),
            "runc state left behind"
        );
    }
}

#[test]
fn runc_echo_hello_is_logged_and_exits_zero() {
    require_runc!();
    let mut fx = Fixture::new();
    let cfg = fx.runc_config("rcecho", &["echo", "hello"]);
    let h = fx.spawn(&cfg).unwrap();
    let rec = h.wait().unwrap();
    assert_eq!(rec.exit_code, 0);
    assert_eq!(fx.stdout("rcecho"), "hello\n");
    std::thread::sleep(Duration::from_millis(50));
    fx.assert_runc_cleaned("rcecho");
}

#[test]
fn runc_exit_code_and_sigkill() {
    require_runc!();
    let mut fx = Fixture::new();
    let cfg = fx.runc_config("rcexit", &["sh", "-c", "echo err >&2; exit 3"]);
    let h = fx.spawn(&cfg).unwrap();
    let rec = h.wait().unwrap();
    assert_eq!((rec.exit_code, rec.signal), (3, None));
    let lines = fx.log_lines("rcexit");
    assert!(
        lines
            .iter()
            .any(|l| l["stream"] == "stderr" && l["log"] == "err\n"),
        "{lines:?}"
    );

    // Created, held before exec, then started; killed by signal.
    let cfg = fx.runc_config("rckill", &["sleep", "100"]);
    let h = fx.create(&cfg).unwrap();
    assert_eq!(h.state().unwrap().status, ContainerStatus::Created);
    h.start().unwrap();
    assert_eq!(h.state().unwrap().status, ContainerStatus::Running);
    h.kill(9).unwrap();
    let rec = h.wait().unwrap();
    assert_eq!((rec.exit_code, rec.signal), (137, Some(9)));
    std::thread::sleep(Duration::from_millis(50));
    fx.assert_runc_cleaned("rcexit");
    fx.assert_runc_cleaned("rckill");
}

#[test]
fn runc_exec_runs_in_the_container() {
    require_runc!();
    let mut fx = Fixture::new();
    let cfg = fx.runc_config("rcexec", &["sleep", "100"]);
    let h = fx.spawn(&cfg).unwrap();
    let e = exec(&["sh", "-c", "echo hello; hostname; echo err >&2; exit 5"]);
    let mut p = h.exec_start(&e).unwrap();
    let (out, err) = demux(&read_all(p.stream.as_mut().unwrap()));
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("hello\nberth-host\n", "err\n")
    );
    let st = h.exec_wait(&e.exec_id).unwrap();
    assert_eq!((st.running, st.exit_code), (false, Some(5)));

    let mut t = exec(&["sh", "-c", "test -t 0 && echo tty"]);
    t.tty = true;
    let mut p = h.exec_start(&t).unwrap();
    let out = String::from_utf8(read_all(p.stream.as_mut().unwrap())).unwrap();
    assert_eq!(out.trim(), "tty");
    assert_eq!(h.exec_wait(&t.exec_id).unwrap().exit_code, Some(0));

    assert!(matches!(
        h.exec_start(&exec(&["no-such-command"])),
        Err(RuntimeError::ExecutableNotFound { .. })
    ));
    h.kill(9).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 137);
    std::thread::sleep(Duration::from_millis(50));
    fx.assert_runc_cleaned("rcexec");
}

#[test]
fn runc_missing_command_is_not_found() {
    require_runc!();
    let mut fx = Fixture::new();
    // Found missing before runc runs.
    let cfg = fx.runc_config("rcmissing", &["no-such-command"]);
    match fx.spawn(&cfg) {
        Err(e @ RuntimeError::ExecutableNotFound { .. }) => {
            assert_eq!(e.docker_exit_code(), Some(127))
        }
        other => panic!("expected ExecutableNotFound, got {other:?}"),
    }
    fx.assert_runc_cleaned("rcmissing");
    // Under a mount the pre-check cannot see: runc's own error, from its log.
    let cfg = fx.runc_config("rcmissing2", &["/dev/shm/no-such-command"]);
    match fx.spawn(&cfg) {
        Err(e @ RuntimeError::ExecutableNotFound { .. }) => {
            assert_eq!(e.docker_exit_code(), Some(127))
        }
        other => panic!("expected ExecutableNotFound, got {other:?}"),
    }
    fx.assert_runc_cleaned("rcmissing2");
    assert!(ShimHandle::connect(&fx.bundle("rcmissing2")).is_err());
}

#[test]
fn runc_tty_output_goes_through_the_pty() {
    require_runc!();
    let mut fx = Fixture::new();
    // A long id puts the console socket's full path beyond what a socket address may hold (as
    // a long data root does); runc must still reach it.
    let id = format!("rctty{}", "0".repeat(95));
    let mut cfg = fx.runc_config(&id, &["sh", "-c", "test -t 1 && echo is-a-tty"]);
    cfg.tty = true;
    let h = fx.spawn(&cfg).unwrap();
    assert_eq!(h.wait().unwrap().exit_code, 0);
    assert_eq!(fx.stdout(&id).trim(), "is-a-tty");
    std::thread::sleep(Duration::from_millis(50));
    fx.assert_runc_cleaned(&id);
}

#[test]
fn runc_created_then_started_quick_command_is_reaped() {
    require_runc!();
    let mut fx = Fixture::new();
    let cfg = fx.runc_config("rcquick", &["echo", "hi"]);
    let h = fx.create(&cfg).unwrap();
    let mut a = h.attach(false, true, true).unwrap();
    h.start().unwrap();
    let (out, _) = demux(&read_all(&mut a.stream));
    assert_eq!(out, "hi\n");
    assert_eq!(h.wait().unwrap().exit_code, 0);
    std::thread::sleep(Duration::from_millis(50));
    fx.assert_runc_cleaned("rcquick");
}

/// A long-lived container's execs (a health check every interval) do not pile up in its shim:
/// past a bound the oldest finished ones are forgotten, the newest stay queryable.
#[test]
fn finished_execs_are_forgotten_past_a_bound() {
    require_root!();
    let mut fx = Fixture::new();
    let cfg = fx.config("manyexecs", &["sleep", "100"]);
    let h = fx.spawn(&cfg).unwrap();
    let mut ids = Vec::new();
    for n in 0..70 {
        let e = exec(&["sh", "-c", &format!("exit {}", n % 7)]);
        let mut p = h.exec_start(&e).unwrap();
        read_all(p.stream.as_mut().unwrap());
        assert_eq!(h.exec_wait(&e.exec_id).unwrap().exit_code, Some(n % 7));
        ids.push(e.exec_id);
    }
    // A request wakes the shim's loop, which forgets before it answers the next one.
    let _ = h.exec_state(&ids[69]);
    assert!(
        matches!(h.exec_state(&ids[0]), Err(RuntimeError::NoSuchExec { .. })),
        "the oldest of 70 finished execs is forgotten"
    );
    let last = h.exec_state(&ids[69]).unwrap();
    assert_eq!((last.running, last.exit_code), (false, Some(69 % 7)));
    let kept = ids.iter().filter(|id| h.exec_state(id).is_ok()).count();
    assert_eq!(kept, 64, "the newest 64 finished execs stay");
}
