//! How berth finds its daemon from the environment, as the docker CLI does: `DOCKER_HOST`,
//! `DOCKER_CONTEXT`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` (Berth's own `BERTH_*` first),
//! and `--tls` without a CA file, which checks the daemon against the system's trust store.

use std::path::Path;
use std::process::Command;

use berth_e2e::daemon::binary;
use berth_e2e::pki::{Pki, free_port};
use berth_e2e::{Daemon, Output, require_root, run_command};

/// berth with no `-H`, a clean environment of its own (no `BERTH_*`/`DOCKER_*` from the
/// caller's), `home` as `$HOME` and `vars` set.
fn berth_env(home: &Path, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(binary("berth"));
    cmd.args(args).env("HOME", home);
    for var in [
        "BERTH_HOST",
        "BERTH_CONTEXT",
        "BERTH_CONFIG",
        "BERTH_TLS_VERIFY",
        "BERTH_CERT_PATH",
        "DOCKER_HOST",
        "DOCKER_CONTEXT",
        "DOCKER_CONFIG",
        "DOCKER_TLS_VERIFY",
        "DOCKER_CERT_PATH",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    run_command(cmd, None)
}

#[test]
fn docker_host_and_docker_context_find_the_daemon_berth_variables_first() {
    require_root!();
    let d = Daemon::start();
    let home = tempfile::tempdir().expect("home");
    let host = d.host();
    let version = ["version", "--format", "{{.Server.APIVersion}}"];
    let out = berth_env(home.path(), &[("DOCKER_HOST", &host)], &version).success();
    assert_eq!(out.stdout.trim(), "1.51");

    // BERTH_HOST wins over DOCKER_HOST.
    let nowhere = format!("unix://{}/absent.sock", home.path().display());
    let out = berth_env(
        home.path(),
        &[("DOCKER_HOST", &host), ("BERTH_HOST", &nowhere)],
        &version,
    )
    .failure();
    assert!(out.stderr.contains("absent.sock"), "{}", out.stderr);

    // DOCKER_CONTEXT names a context of the config dir (~/.docker, shared with docker).
    berth_env(
        home.path(),
        &[],
        &[
            "context",
            "create",
            "env-ctx",
            "--docker",
            &format!("host={host}"),
        ],
    )
    .success();
    let out = berth_env(home.path(), &[("DOCKER_CONTEXT", "env-ctx")], &version).success();
    assert_eq!(out.stdout.trim(), "1.51");
    let out = berth_env(
        home.path(),
        &[("DOCKER_CONTEXT", "env-ctx")],
        &["context", "show"],
    )
    .success();
    assert_eq!(out.stdout.trim(), "env-ctx");
    // DOCKER_HOST over DOCKER_CONTEXT, as with docker.
    let out = berth_env(
        home.path(),
        &[("DOCKER_CONTEXT", "env-ctx"), ("DOCKER_HOST", &nowhere)],
        &version,
    )
    .failure();
    assert!(out.stderr.contains("absent.sock"), "{}", out.stderr);
    // A BERTH_CONTEXT is not overridden by a DOCKER_HOST meant for docker.
    let out = berth_env(
        home.path(),
        &[("BERTH_CONTEXT", "env-ctx"), ("DOCKER_HOST", &nowhere)],
        &version,
    )
    .success();
    assert_eq!(out.stdout.trim(), "1.51");
    // A context that does not exist is an error, not the default socket.
    let out = berth_env(home.path(), &[("DOCKER_CONTEXT", "missing")], &version).failure();
    assert!(out.stderr.contains("missing"), "{}", out.stderr);
}

/// A daemon on tcp with `--tlsverify` (client certificates required) and its PKI.
fn tls_daemon() -> (Daemon, u16, Pki, tempfile::TempDir) {
    let pki_dir = tempfile::Builder::new()
        .prefix("berth-pki-")
        .tempdir()
        .expect("pki dir");
    let pki = Pki::new(pki_dir.path());
    let port = free_port();
    let d = Daemon::start_with(&[
        "-H",
        &format!("tcp://127.0.0.1:{port}"),
        "--tlsverify",
        "--tlscacert",
        &pki.arg("ca"),
        "--tlscert",
        &pki.arg("server"),
        "--tlskey",
        &pki.arg("server-key"),
    ]);
    (d, port, pki, pki_dir)
}

#[test]
fn docker_tls_variables_and_the_system_trust_store() {
    require_root!();
    let (_d, port, pki, pki_dir) = tls_daemon();
    let home = tempfile::tempdir().expect("home");
    let tcp = format!("tcp://127.0.0.1:{port}");
    let version = ["version", "--format", "{{.Server.APIVersion}}"];

    // The docker CLI's environment: DOCKER_TLS_VERIFY and a DOCKER_CERT_PATH holding
    // ca.pem, cert.pem and key.pem.
    let certs = pki_dir.path().join("docker-certs");
    std::fs::create_dir(&certs).expect("certs dir");
    for (from, to) in [
        ("ca", "ca.pem"),
        ("client", "cert.pem"),
        ("client-key", "key.pem"),
    ] {
        std::fs::copy(pki.path(from), certs.join(to)).expect("copy pem");
    }
    let certs_arg = certs.display().to_string();
    let docker_env = [
        ("DOCKER_HOST", tcp.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", certs_arg.as_str()),
    ];
    let out = berth_env(home.path(), &docker_env, &version).success();
    assert_eq!(out.stdout.trim(), "1.51");
    // Without DOCKER_TLS_VERIFY the request is plain HTTP, which a TLS daemon refuses.
    berth_env(home.path(), &docker_env[..1], &version).failure();
    // BERTH_CERT_PATH over DOCKER_CERT_PATH: a directory without the files fails.
    let empty = home.path().join("empty-certs");
    std::fs::create_dir(&empty).expect("dir");
    let mut env = docker_env.to_vec();
    let empty_arg = empty.display().to_string();
    env.push(("BERTH_CERT_PATH", &empty_arg));
    berth_env(home.path(), &env, &version).failure();

    // `--tls` with no CA anywhere (no --tlscacert, no ca.pem in the cert path): the daemon is
    // checked against the system's trust store, which does not know the test CA...
    let client = [
        "--tls",
        "-H",
        &tcp,
        "--tlscert",
        &pki.arg("client"),
        "--tlskey",
        &pki.arg("client-key"),
    ];
    let args: Vec<&str> = client.iter().copied().chain(version).collect();
    let out = berth_env(home.path(), &[], &args).failure();
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "{}",
        out.stderr
    );
    // ...and a trust store that holds it (SSL_CERT_FILE is the system store's override).
    let out = berth_env(home.path(), &[("SSL_CERT_FILE", &pki.arg("ca"))], &args).success();
    assert_eq!(out.stdout.trim(), "1.51");
    // An explicit --tlsverify=false only encrypts.
    let mut args_no_verify = args.clone();
    args_no_verify.insert(0, "--tlsverify=false");
    let out = berth_env(home.path(), &[], &args_no_verify).success();
    assert_eq!(out.stdout.trim(), "1.51");
}
