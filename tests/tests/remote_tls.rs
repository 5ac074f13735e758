//! Remote access over TLS: berthd with `--tlsverify` serves the docker CLI and berth (plain
//! requests and hijacked exec streams) when they present a certificate signed by its CA, and
//! refuses the rest; bad TLS material or an unauthenticated non-loopback tcp host stop the
//! start. Certificates are made by the test with the openssl CLI.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::daemon::binary;
use berth_e2e::pki::{Pki, free_port};
use berth_e2e::{Daemon, Output, busybox_archive, docker_cli, require_root, run_command};
use sha2::Digest;

/// A daemon on its unix socket and on `tcp://127.0.0.1:<port>` with `--tlsverify`.
struct TlsDaemon {
    daemon: Daemon,
    port: u16,
    pki: Pki,
    _pki_dir: tempfile::TempDir,
}

impl TlsDaemon {
    fn start() -> TlsDaemon {
        let pki_dir = tempfile::Builder::new()
            .prefix("berth-pki-")
            .tempdir()
            .expect("pki dir");
        let pki = Pki::new(pki_dir.path());
        let port = free_port();
        let host = format!("tcp://127.0.0.1:{port}");
        let (ca, cert, key) = (pki.arg("ca"), pki.arg("server"), pki.arg("server-key"));
        let daemon = Daemon::start_with(&[
            "-H",
            &host,
            "--tlsverify",
            "--tlscacert",
            &ca,
            "--tlscert",
            &cert,
            "--tlskey",
            &key,
        ]);
        let loaded = daemon.api().post(
            "/images/load?quiet=1",
            Some(&busybox_archive("busybox:latest")),
        );
        assert_eq!(loaded.status, 200, "{}", loaded.text());
        TlsDaemon {
            daemon,
            port,
            pki,
            _pki_dir: pki_dir,
        }
    }

    fn tcp(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    /// `--tlsverify` with the CA and the client certificate `cert` (`client`, `stranger`,
    /// `expired`), or none.
    fn tls_args(&self, cert: Option<&str>) -> Vec<String> {
        let mut args = vec![
            "--tlsverify".into(),
            "--tlscacert".into(),
            self.pki.arg("ca"),
        ];
        if let Some(cert) = cert {
            // The expired certificate is the client's key signed again.
            let key = if cert == "stranger" {
                "stranger-key"
            } else {
                "client-key"
            };
            args.extend([
                "--tlscert".into(),
                self.pki.arg(cert),
                "--tlskey".into(),
                self.pki.arg(key),
            ]);
        }
        args
    }

    fn berth(&self, cert: Option<&str>, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(binary("berth"));
        cmd.arg("-H")
            .arg(self.tcp())
            .args(self.tls_args(cert))
            .args(args)
            .env("BERTH_CONFIG", self.daemon.dir().join("berth-config"))
            .env("HOME", self.daemon.dir())
            .env_remove("BERTH_HOST")
            .env_remove("BERTH_CONTEXT")
            // berth reads docker's variables too.
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        run_command(cmd, stdin)
    }

    fn docker(&self, cert: Option<&str>, args: &[&str], stdin: Option<&[u8]>) -> Option<Output> {
        let mut cmd = Command::new(docker_cli()?);
        cmd.arg("-H")
            .arg(self.tcp())
            .args(self.tls_args(cert))
            .args(args)
            .env("DOCKER_CONFIG", self.daemon.dir().join("docker-config"))
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT")
            .env_remove("DOCKER_API_VERSION");
        Some(run_command(cmd, stdin))
    }
}

/// Megabytes that are not all alike, and their sha256 as `sha256sum` prints it.
fn payload(len: usize) -> (Vec<u8>, String) {
    let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
    let digest = hex::encode(sha2::Sha256::digest(&data));
    (data, digest)
}

#[test]
fn docker_cli_with_tlsverify_runs_and_streams_stdin() {
    require_root!();
    if docker_cli().is_none() {
        eprintln!("skipped: no docker CLI on this machine");
        return;
    }
    let d = TlsDaemon::start();
    let out = d
        .docker(
            Some("client"),
            &["version", "--format", "{{.Server.APIVersion}}"],
            None,
        )
        .unwrap()
        .success();
    assert_eq!(out.stdout.trim(), "1.51");
    let out = d
        .docker(
            Some("client"),
            &["run", "--rm", "busybox", "echo", "over tls"],
            None,
        )
        .unwrap()
        .success();
    assert_eq!(out.stdout, "over tls\n");
    // A hijacked exec with megabytes of stdin: its end must reach the process (half-close
    // through TLS) for sha256sum to answer.
    d.docker(
        Some("client"),
        &["run", "-d", "--name", "tls-exec", "busybox", "sleep", "300"],
        None,
    )
    .unwrap()
    .success();
    let (data, digest) = payload(3 << 20);
    let out = d
        .docker(
            Some("client"),
            &["exec", "-i", "tls-exec", "sha256sum"],
            Some(&data),
        )
        .unwrap()
        .success();
    assert!(out.stdout.starts_with(&digest), "{}", out.stdout);
    d.docker(Some("client"), &["rm", "-f", "tls-exec"], None)
        .unwrap()
        .success();
}

#[test]
fn berth_with_tls_runs_execs_and_uses_contexts() {
    require_root!();
    let d = TlsDaemon::start();
    let out = d
        .berth(
            Some("client"),
            &["version", "--format", "{{.Server.APIVersion}}"],
            None,
        )
        .success();
    assert_eq!(out.stdout.trim(), "1.51");
    let out = d
        .berth(
            Some("client"),
            &["run", "--rm", "busybox", "echo", "berth over tls"],
            None,
        )
        .success();
    assert_eq!(out.stdout, "berth over tls\n");
    d.berth(
        Some("client"),
        &["run", "-d", "--name", "tls-exec", "busybox", "sleep", "300"],
        None,
    )
    .success();
    let (data, digest) = payload(3 << 20);
    let out = d
        .berth(
            Some("client"),
            &["exec", "-i", "tls-exec", "sha256sum"],
            Some(&data),
        )
        .success();
    assert!(out.stdout.starts_with(&digest), "{}", out.stdout);

    // The environment docker users set: BERTH_TLS_VERIFY and BERTH_CERT_PATH with docker's
    // file names; the default port of a TLS host is 2376, so the port is given.
    let certs = d.daemon.dir().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    for (from, to) in [("ca", "ca"), ("client", "cert"), ("client-key", "key")] {
        std::fs::copy(d.pki.path(from), certs.join(format!("{to}.pem"))).unwrap();
    }
    let mut cmd = Command::new(binary("berth"));
    cmd.args(["ps", "--format", "{{.Names}}"])
        .env("BERTH_HOST", d.tcp())
        .env("BERTH_TLS_VERIFY", "1")
        .env("BERTH_CERT_PATH", &certs)
        .env("BERTH_CONFIG", d.daemon.dir().join("berth-config"));
    let out = run_command(cmd, None).success();
    assert_eq!(out.stdout.trim(), "tls-exec");

    // A context keeps its TLS material: created from files, used without any flag.
    let context = |args: &[&str]| {
        let mut cmd = Command::new(binary("berth"));
        cmd.args(args)
            .env("BERTH_CONFIG", d.daemon.dir().join("berth-config"))
            .env("HOME", d.daemon.dir())
            .env_remove("BERTH_HOST")
            .env_remove("BERTH_CONTEXT")
            // berth reads docker's variables too.
            .env_remove("DOCKER_HOST")
            .env_remove("DOCKER_CONTEXT");
        run_command(cmd, None)
    };
    let spec = format!(
        "host={},ca={},cert={},key={}",
        d.tcp(),
        d.pki.arg("ca"),
        d.pki.arg("client"),
        d.pki.arg("client-key")
    );
    context(&["context", "create", "remote", "--docker", &spec]).success();
    let out = context(&[
        "--context",
        "remote",
        "exec",
        "tls-exec",
        "echo",
        "via context",
    ])
    .success();
    assert_eq!(out.stdout, "via context\n");
    let out = context(&[
        "context",
        "inspect",
        "remote",
        "--format",
        "{{json .TLSMaterial}}",
    ])
    .success();
    assert_eq!(
        out.stdout.trim(),
        r#"{"docker":["ca.pem","cert.pem","key.pem"]}"#
    );
    // A context whose files are missing is not created.
    let bad = format!("host={},ca=/nonexistent/ca.pem", d.tcp());
    let out = context(&["context", "create", "broken", "--docker", &bad]).failure();
    assert!(out.stderr.contains("/nonexistent/ca.pem"), "{}", out.stderr);
    context(&["context", "inspect", "broken"]).failure();
    d.berth(Some("client"), &["rm", "-f", "tls-exec"], None)
        .success();
}

#[test]
fn clients_without_a_good_certificate_are_refused() {
    require_root!();
    let d = TlsDaemon::start();
    for (cert, why) in [
        (None, "no certificate"),
        (Some("stranger"), "a certificate from another CA"),
        (Some("expired"), "an expired certificate"),
    ] {
        let out = d.berth(cert, &["ps"], None).failure();
        assert!(
            out.stderr.contains("error during connect"),
            "{why}: {}",
            out.stderr
        );
        if let Some(out) = d.docker(cert, &["ps"], None) {
            let out = out.failure();
            assert!(out.stderr.contains("tls"), "docker, {why}: {}", out.stderr);
        }
    }
    // Plain HTTP on the TLS port is no way in either; the client is told why, as dockerd does.
    let mut cmd = Command::new(binary("berth"));
    cmd.args(["-H", &d.tcp(), "ps"])
        .env("BERTH_CONFIG", d.daemon.dir().join("berth-config"));
    let out = run_command(cmd, None).failure();
    assert!(
        out.stderr
            .contains("Client sent an HTTP request to an HTTPS server"),
        "{}",
        out.stderr
    );
    // The daemon logged the refusals and still serves the rightful client.
    let log = d.daemon.log();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("expired"), "{log}");
    d.berth(Some("client"), &["ps"], None).success();
    assert_eq!(d.daemon.api().get("/_ping").status, 200);
}

/// Runs berthd with `args` and a fresh data root; it must exit by itself. Returns its
/// status, stderr, and whether it left its socket behind.
fn start_must_fail(args: &[&str]) -> (i32, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("b.sock");
    let mut child = Command::new(binary("berthd"))
        .arg("--data-root")
        .arg(dir.path().join("root"))
        .arg("--exec-root")
        .arg(dir.path().join("run"))
        .arg("--config-file")
        .arg(write_empty_config(dir.path()))
        .arg("-H")
        .arg(format!("unix://{}", socket.display()))
        .args(["--bridge", "none", "--iptables=false"])
        .args(args)
        // No default TLS files from this machine's ~/.docker.
        .env("HOME", dir.path())
        .env_remove("DOCKER_CERT_PATH")
        .env_remove("DOCKER_CONFIG")
        .env_remove("DOCKER_TLS_VERIFY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn berthd");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            child.wait().ok();
            panic!("berthd {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("berthd output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        socket.exists(),
    )
}

fn write_empty_config(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("daemon.json");
    std::fs::write(&path, "{}").unwrap();
    path
}

#[test]
fn bad_tls_material_stops_the_start() {
    let pki_dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(pki_dir.path());
    let garbage = pki_dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a key\n").unwrap();
    let host = format!("tcp://127.0.0.1:{}", free_port());
    let (ca, cert) = (pki.arg("ca"), pki.arg("server"));
    let garbage = garbage.display().to_string();
    let wrong_key = pki.arg("client-key");
    let missing = pki_dir.path().join("missing.pem").display().to_string();
    for (key, expected) in [
        (&garbage, "no PEM private key"),
        (&wrong_key, "does not go with the certificate"),
        (&missing, "cannot read key"),
    ] {
        let args = [
            "-H",
            &host,
            "--tlsverify",
            "--tlscacert",
            &ca,
            "--tlscert",
            &cert,
            "--tlskey",
            key,
        ];
        let (code, stderr, socket_left) = start_must_fail(&args);
        assert_ne!(code, 0, "{stderr}");
        assert!(stderr.contains("invalid TLS configuration"), "{stderr}");
        assert!(stderr.contains(expected), "{stderr}");
        assert!(!socket_left, "a socket was bound for {key}");
    }
}

#[test]
fn unauthenticated_tcp_off_loopback_is_refused_at_start() {
    // Refused while reading the configuration: nothing is bound (0.0.0.0 is never listened on).
    let port = free_port();
    let host = format!("tcp://0.0.0.0:{port}");
    let (code, stderr, socket_left) = start_must_fail(&["-H", &host]);
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("refusing to listen on"), "{stderr}");
    assert!(
        stderr.contains("--tlsverify") && stderr.contains("--tls=false"),
        "the message says how to enable TLS: {stderr}"
    );
    assert!(!socket_left);
    // --tls alone means client verification, as dockerd: with no material in ~/.docker it
    // fails on the files, not on the host.
    let (code, stderr, _) = start_must_fail(&["-H", &host, "--tls"]);
    assert_ne!(code, 0);
    assert!(stderr.contains("invalid TLS configuration"), "{stderr}");
}

#[test]
fn loopback_tcp_without_tls_starts_with_a_warning() {
    require_root!();
    let port = free_port();
    let host = format!("tcp://127.0.0.1:{port}");
    let daemon = Daemon::start_with(&["-H", &host]);
    let log = daemon.log();
    assert!(
        log.contains("WARN") && log.contains("without TLS client verification"),
        "{log}"
    );
    let mut cmd = Command::new(binary("berth"));
    cmd.args(["-H", &host, "version", "--format", "{{.Server.APIVersion}}"])
        .env("BERTH_CONFIG", daemon.dir().join("berth-config"));
    assert_eq!(run_command(cmd, None).success().stdout.trim(), "1.51");
}
