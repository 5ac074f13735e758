//! berth over TLS against Debian's dockerd 20.10 (`/usr/sbin/dockerd`, skipped when absent):
//! the client side of `--tlsverify` meets Go's TLS server, plain requests and a hijacked exec
//! with megabytes of stdin. dockerd runs on roots of its own, without a bridge or firewall
//! rules, and is stopped by the PID the test started.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::daemon::binary;
use berth_e2e::pki::{Pki, free_port};
use berth_e2e::{Output, busybox_archive, require_root, run_command};
use sha2::Digest;

const DOCKERD: &str = "/usr/sbin/dockerd";

struct Dockerd {
    child: Option<Child>,
    dir: tempfile::TempDir,
    port: u16,
}

impl Dockerd {
    fn start(pki: &Pki) -> Dockerd {
        let dir = tempfile::Builder::new()
            .prefix("berth-dockerd-")
            .tempdir()
            .unwrap();
        let port = free_port();
        std::fs::write(dir.path().join("daemon.json"), "{}").unwrap();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let child = Command::new(DOCKERD)
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("--config-file")
            .arg(dir.path().join("daemon.json"))
            .arg("-H")
            .arg(format!("unix://{}", dir.path().join("d.sock").display()))
            .arg("-H")
            .arg(format!("tcp://127.0.0.1:{port}"))
            .args(["--tlsverify", "--tlscacert"])
            .arg(pki.path("ca"))
            .arg("--tlscert")
            .arg(pki.path("server"))
            .arg("--tlskey")
            .arg(pki.path("server-key"))
            .args(["--bridge", "none", "--iptables=false", "--ip6tables=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn dockerd");
        let mut d = Dockerd {
            child: Some(child),
            dir,
            port,
        };
        d.wait_ready();
        d
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dockerd.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self
            .log()
            .contains(&format!("API listen on 127.0.0.1:{}", self.port))
        {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("dockerd exited ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "dockerd not ready in 60 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while !matches!(child.try_wait(), Ok(Some(_))) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        child.kill().ok();
        child.wait().ok();
        // The containerd dockerd started, if it outlived dockerd (by the pid it recorded).
        let pidfile = self.dir.path().join("exec/containerd/containerd.pid");
        if let Some(pid) = std::fs::read_to_string(pidfile)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        unmount_below(self.dir.path());
    }
}

/// Unmounts what is left below `dir`, deepest first.
fn unmount_below(dir: &Path) {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        let _ = rustix::mount::unmount(&p, rustix::mount::UnmountFlags::DETACH);
    }
}

#[test]
fn berth_with_tls_against_dockerd() {
    require_root!();
    if !Path::new(DOCKERD).exists() {
        eprintln!("skipped: no {DOCKERD} on this machine");
        return;
    }
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let dockerd = Dockerd::start(&pki);
    let berth = |cert: bool, args: &[&str], stdin: Option<&[u8]>| -> Output {
        let mut cmd = Command::new(binary("berth"));
        cmd.arg("-H")
            .arg(format!("tcp://127.0.0.1:{}", dockerd.port))
            .arg("--tlsverify")
            .arg("--tlscacert")
            .arg(pki.path("ca"));
        if cert {
            cmd.arg("--tlscert")
                .arg(pki.path("client"))
                .arg("--tlskey")
                .arg(pki.path("client-key"));
        }
        cmd.args(args)
            .env("BERTH_CONFIG", dockerd.dir.path().join("berth-config"));
        run_command(cmd, stdin)
    };
    let out = berth(true, &["version", "--format", "{{.Server.Version}}"], None).success();
    assert!(out.stdout.starts_with("20.10"), "{}", out.stdout);
    let out = berth(false, &["ps"], None).failure();
    assert!(
        out.stderr.contains("error during connect"),
        "{}",
        out.stderr
    );

    let archive = pki_dir.path().join("busybox.tar");
    std::fs::write(&archive, busybox_archive("busybox:latest")).unwrap();
    berth(true, &["load", "-i", &archive.display().to_string()], None).success();
    berth(
        true,
        &[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "tls-exec",
            "busybox",
            "sleep",
            "300",
        ],
        None,
    )
    .success();
    let data: Vec<u8> = (0..3usize << 20)
        .map(|i| (i * 31 + i / 997) as u8)
        .collect();
    let digest = hex::encode(sha2::Sha256::digest(&data));
    let out = berth(true, &["exec", "-i", "tls-exec", "sha256sum"], Some(&data)).success();
    assert!(out.stdout.starts_with(&digest), "{}", out.stdout);
    berth(true, &["rm", "-f", "tls-exec"], None).success();
}
