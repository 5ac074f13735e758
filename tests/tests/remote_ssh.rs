//! `ssh://` hosts and `berth system dial-stdio`. The client side runs `ssh ... -- HOST berth
//! system dial-stdio` and speaks HTTP through it; here `ssh` is a stand-in on PATH that runs
//! the remote command locally (recording its arguments), so berth and the docker CLI go
//! through the whole path — process, pipes, dial-stdio, the daemon's socket — without an sshd.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::daemon::binary;
use berth_e2e::{Daemon, Output, busybox_archive, docker_cli, require_root, run_command};
use sha2::Digest;

/// A fake `ssh` in `dir`: logs its arguments to `dir/ssh.log`, skips the options up to `--`
/// and the host, and runs the remote command (`berth` or `docker`: both are this berth).
fn fake_ssh(dir: &Path) -> PathBuf {
    let script = dir.join("ssh");
    let text = format!(
        "#!/bin/sh\necho \"$@\" >> {log}\nwhile [ \"$#\" -gt 0 ] && [ \"$1\" != \"--\" ]; do shift; done\n\
         shift; shift\ncmd=\"$1\"; shift\ncase \"$cmd\" in berth|docker) exec {berth} \"$@\";; esac\n\
         echo \"fake ssh: unknown remote command $cmd\" >&2; exit 127\n",
        log = dir.join("ssh.log").display(),
        berth = binary("berth").display(),
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir.to_path_buf()
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

fn payload(len: usize) -> (Vec<u8>, String) {
    let data: Vec<u8> = (0..len).map(|i| (i * 13 + i / 4093) as u8).collect();
    (data.clone(), hex::encode(sha2::Sha256::digest(&data)))
}

fn daemon_with_busybox() -> Daemon {
    let d = Daemon::start();
    let r = d.api().post(
        "/images/load?quiet=1",
        Some(&busybox_archive("busybox:latest")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    d
}

#[test]
fn dial_stdio_relays_http_and_ends_with_the_daemon() {
    let d = Daemon::start();
    let mut child = Command::new(binary("berth"))
        .args(["-H", &d.host(), "system", "dial-stdio"])
        .env("BERTH_CONFIG", d.dir().join("berth-config"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dial-stdio");
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(b"GET /_ping HTTP/1.1\r\nHost: berth\r\nConnection: close\r\n\r\n")
        .unwrap();
    stdin.flush().unwrap();
    // stdin stays open: the daemon closing the connection ends the relay all the same (a
    // terminal never closes stdin), as docker's dial-stdio does.
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("dial-stdio did not end when the daemon closed the connection");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(stdin);
    let mut answer = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut answer)
        .unwrap();
    assert!(status.success(), "{answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("OK"), "{answer}");

    // A daemon that cannot be reached: the client's usual message, a failure status.
    let out = run_command(
        {
            let mut cmd = Command::new(binary("berth"));
            cmd.args(["-H", "unix:///nonexistent/b.sock", "system", "dial-stdio"]);
            cmd
        },
        Some(b""),
    )
    .failure();
    assert!(
        out.stderr.contains("Cannot connect to the Berth daemon"),
        "{}",
        out.stderr
    );
}

#[test]
fn berth_over_an_ssh_host() {
    require_root!();
    let d = daemon_with_busybox();
    let bin = tempfile::tempdir().unwrap();
    fake_ssh(bin.path());
    let host = format!("ssh://me@fakehost:2222{}", d.socket().display());
    let berth = |args: &[&str], stdin: Option<&[u8]>| -> Output {
        let mut cmd = Command::new(binary("berth"));
        cmd.arg("-H")
            .arg(&host)
            .args(args)
            .env("PATH", path_with(bin.path()))
            .env("BERTH_CONFIG", d.dir().join("berth-config"));
        run_command(cmd, stdin)
    };
    let out = berth(&["version", "--format", "{{.Server.APIVersion}}"], None).success();
    assert_eq!(out.stdout.trim(), "1.51");
    let out = berth(&["run", "--rm", "busybox", "echo", "over ssh"], None).success();
    assert_eq!(out.stdout, "over ssh\n");
    berth(
        &["run", "-d", "--name", "ssh-exec", "busybox", "sleep", "300"],
        None,
    )
    .success();
    // Megabytes of stdin into a hijacked exec: the end of stdin travels as ssh's stdin
    // closing, then dial-stdio's half-close of the daemon connection.
    let (data, digest) = payload(2 << 20);
    let out = berth(&["exec", "-i", "ssh-exec", "sha256sum"], Some(&data)).success();
    assert!(out.stdout.starts_with(&digest), "{}", out.stdout);
    berth(&["rm", "-f", "ssh-exec"], None).success();
    // ssh was asked as the docker CLI asks it.
    let log = std::fs::read_to_string(bin.path().join("ssh.log")).unwrap();
    let expected = format!(
        "-o ConnectTimeout=30 -T -l me -p 2222 -- fakehost berth --host=unix://{} system dial-stdio",
        d.socket().display()
    );
    assert!(log.lines().all(|l| l == expected), "{log}");
}

#[test]
fn docker_cli_over_ssh_to_a_berth_host() {
    require_root!();
    if docker_cli().is_none() {
        eprintln!("skipped: no docker CLI on this machine");
        return;
    }
    let d = daemon_with_busybox();
    let bin = tempfile::tempdir().unwrap();
    fake_ssh(bin.path());
    // Where berth is installed as `docker`, the docker CLI's `docker system dial-stdio` is
    // berth's (the fake ssh maps the name).
    let host = format!("ssh://me@fakehost{}", d.socket().display());
    let docker = |args: &[&str], stdin: Option<&[u8]>| -> Output {
        let mut cmd = Command::new(docker_cli().unwrap());
        cmd.arg("-H")
            .arg(&host)
            .args(args)
            .env("PATH", path_with(bin.path()))
            .env("DOCKER_CONFIG", d.dir().join("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        run_command(cmd, stdin)
    };
    let out = docker(&["version", "--format", "{{.Server.APIVersion}}"], None).success();
    assert_eq!(out.stdout.trim(), "1.51");
    let out = docker(&["run", "--rm", "busybox", "echo", "docker over ssh"], None).success();
    assert_eq!(out.stdout, "docker over ssh\n");
    docker(
        &["run", "-d", "--name", "ssh-exec", "busybox", "sleep", "300"],
        None,
    )
    .success();
    let (data, digest) = payload(2 << 20);
    let out = docker(&["exec", "-i", "ssh-exec", "sha256sum"], Some(&data)).success();
    assert!(out.stdout.starts_with(&digest), "{}", out.stdout);
    docker(&["rm", "-f", "ssh-exec"], None).success();
    let log = std::fs::read_to_string(bin.path().join("ssh.log")).unwrap();
    // docker 28 passes `--host unix://...` as two arguments, older ones `--host=unix://...`.
    let socket = format!("unix://{}", d.socket().display());
    assert!(
        log.lines().all(|l| l
            .starts_with("-o ConnectTimeout=30 -T -l me -- fakehost docker --host")
            && l.contains(&socket)
            && l.ends_with(" system dial-stdio")),
        "{log}"
    );
}

/// A real sshd on 127.0.0.1 (Debian's openssh-server, installed by
/// scripts/install-test-peers.sh), with a host key, client key and authorized_keys of its own
/// in a temporary directory; `bin/ssh` runs the real ssh with a config that uses them.
struct Sshd {
    child: std::process::Child,
    dir: tempfile::TempDir,
    port: u16,
}

const SSHD: &str = "/usr/sbin/sshd";

impl Sshd {
    fn start() -> Option<Sshd> {
        if !Path::new(SSHD).exists() || !Path::new("/usr/bin/ssh").exists() {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-sshd-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        for key in ["host_key", "client_key"] {
            let st = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .status()
                .expect("ssh-keygen");
            assert!(st.success());
        }
        std::fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).unwrap();
        // The remote session's PATH: `docker` there is berth, as on a host where berth is
        // installed under that name.
        let remote_bin = d.join("remote-bin");
        std::fs::create_dir_all(&remote_bin).unwrap();
        std::os::unix::fs::symlink(binary("berth"), remote_bin.join("docker")).unwrap();
        std::os::unix::fs::symlink(binary("berth"), remote_bin.join("berth")).unwrap();
        let port = berth_e2e::pki::free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nPidFile {d}/sshd.pid\n\
                 AuthorizedKeysFile {d}/authorized_keys\nPasswordAuthentication no\n\
                 KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n\
                 PermitRootLogin prohibit-password\nSetEnv PATH={bin}:/usr/bin:/bin\n",
                d = d.display(),
                bin = remote_bin.display(),
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {d}/client_key\n  IdentitiesOnly yes\n  \
                 StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  \
                 BatchMode yes\n",
                d = d.display()
            ),
        )
        .unwrap();
        let bin = d.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(
            bin.join("ssh"),
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F {}/ssh_config \"$@\"\n",
                d.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(
            bin.join("ssh"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        // sshd's privilege separation directory (the package makes it at boot only).
        std::fs::create_dir_all("/run/sshd").unwrap();
        let log = std::fs::File::create(d.join("sshd.log")).unwrap();
        let child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn sshd");
        let mut sshd = Sshd { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = sshd.child.try_wait() {
                panic!("sshd exited ({status}): {}", sshd.log());
            }
            assert!(
                Instant::now() < deadline,
                "sshd not listening: {}",
                sshd.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(sshd)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    /// PATH with the `ssh` that uses this sshd's keys first.
    fn path(&self) -> String {
        path_with(&self.dir.path().join("bin"))
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // By the PID started; sshd's session processes end with their connections.
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn berth_and_docker_over_a_real_sshd() {
    require_root!();
    let Some(sshd) = Sshd::start() else {
        eprintln!("skipped: no sshd (scripts/install-test-peers.sh installs openssh-server)");
        return;
    };
    let d = daemon_with_busybox();
    let host = format!("ssh://root@127.0.0.1:{}{}", sshd.port, d.socket().display());
    let berth = |args: &[&str], stdin: Option<&[u8]>| -> Output {
        let mut cmd = Command::new(binary("berth"));
        cmd.arg("-H")
            .arg(&host)
            .args(args)
            .env("PATH", sshd.path())
            .env("BERTH_CONFIG", d.dir().join("berth-config"));
        run_command(cmd, stdin)
    };
    let out = berth(&["version", "--format", "{{.Server.APIVersion}}"], None);
    assert_eq!(out.code, 0, "{out:?}\nsshd: {}", sshd.log());
    assert_eq!(out.stdout.trim(), "1.51");
    berth(
        &[
            "run",
            "-d",
            "--name",
            "sshd-exec",
            "busybox",
            "sleep",
            "300",
        ],
        None,
    )
    .success();
    let (data, digest) = payload(2 << 20);
    let out = berth(&["exec", "-i", "sshd-exec", "sha256sum"], Some(&data)).success();
    assert!(out.stdout.starts_with(&digest), "{}", out.stdout);
    if let Some(docker) = docker_cli() {
        let mut cmd = Command::new(docker);
        cmd.args(["-H", &host, "exec", "-i", "sshd-exec", "sha256sum"])
            .env("PATH", sshd.path())
            .env("DOCKER_CONFIG", d.dir().join("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        let out = run_command(cmd, Some(&data)).success();
        assert!(out.stdout.starts_with(&digest), "{}", out.stdout);
    }
    berth(&["rm", "-f", "sshd-exec"], None).success();
}
