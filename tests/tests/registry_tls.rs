//! How Berth reaches a registry over TLS, as dockerd does: an insecure registry (loopback, or
//! named in `insecure-registries`, by name or CIDR) is tried over HTTPS without verifying its
//! certificate, then over plain HTTP; a registry's `certs.d/<host:port>/` CA and client
//! certificate serve logins and pushes as well as pulls. Real registries (Debian's
//! docker-registry) with certificates made by openssl, on 127.0.0.1 only; through berth, the
//! raw API and the docker CLI.

use std::path::Path;
use std::process::Command;

use berth_e2e::daemon::binary;
use berth_e2e::fixtures::ImageSpec;
use berth_e2e::registry::{
    BASIC_PASSWORD, BASIC_USER, OCI_MANIFEST, Registry, basic_auth_yaml, make_certs, tls_registry,
};
use berth_e2e::{Daemon, Output, docker_cli};

fn image_id(daemon: &Daemon, name: &str) -> Option<String> {
    let r = daemon.api().get(&format!("/images/{name}/json"));
    (r.status == 200).then(|| r.json()["Id"].as_str().unwrap().to_string())
}

fn have_openssl(test: &str) -> bool {
    let ok = Command::new("openssl").arg("version").output().is_ok();
    if !ok {
        eprintln!("skipped {test}: no openssl");
    }
    ok
}

/// `berth -H <daemon> ARGS` with `config` as its config directory.
fn berth(daemon: &Daemon, config: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(binary("berth"));
    cmd.arg("-H")
        .arg(daemon.host())
        .args(args)
        .env("BERTH_CONFIG", config);
    berth_e2e::daemon::run(cmd, stdin.map(str::as_bytes))
}

#[test]
fn an_insecure_registry_is_tried_over_https_unverified_then_http() {
    let test = "an_insecure_registry_is_tried_over_https_unverified_then_http";
    let Some(plain) = Registry::start(test) else {
        return;
    };
    if !have_openssl(test) {
        return;
    }
    let spec = ImageSpec::busybox(None).file_layer(&[("tls", b"yes")]);
    plain.push_image("secure/app", Some("1"), &spec, OCI_MANIFEST);
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    // The same storage over TLS, with a certificate nothing trusts.
    let (tls, _tls) = tls_registry(&plain.dir().join("data"), certs.path(), false, "");
    let mut daemon = Daemon::start();

    // Loopback is insecure: HTTPS without verification.
    let reference = format!("{tls}/secure/app:1");
    let out = daemon.berth(&["pull", &reference]).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    assert_eq!(image_id(&daemon, &reference).as_deref(), Some(&*spec.id()));
    // Pushes too.
    let pushed = format!("{tls}/secure/pushed:1");
    daemon.berth(&["tag", &reference, &pushed]).success();
    let out = daemon.berth(&["push", &pushed]).success();
    assert!(out.stdout.contains("1: digest: sha256:"), "{}", out.stdout);
    // And logins (the raw API): an open registry takes anyone.
    let r = daemon.api().post(
        "/auth",
        Some(
            serde_json::json!({"serveraddress": tls})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The plain registry: HTTPS fails, HTTP serves.
    let over_http = format!("{}/secure/app:1", plain.host());
    let r = daemon.api().post(
        &format!("/images/create?fromImage={}/secure/app&tag=1", plain.host()),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Status: "), "{}", r.text());
    assert_eq!(image_id(&daemon, &over_http).as_deref(), Some(&*spec.id()));

    // The docker CLI through berthd.
    if docker_cli().is_some() {
        daemon.berth(&["rmi", &pushed]).success();
        let out = daemon.docker(&["pull", &pushed]).unwrap().success();
        assert!(out.stdout.contains(&pushed), "{}", out.stdout);
    }

    // A certs.d directory without the CA makes a loopback registry verified (Berth's rule,
    // tested in registry_endpoints) ...
    std::fs::create_dir_all(daemon.dir().join("certs.d").join(&tls)).unwrap();
    daemon.berth(&["rmi", &reference]).success();
    let out = daemon.berth(&["pull", &reference]).failure();
    assert!(
        out.stderr
            .contains("x509: certificate signed by unknown authority"),
        "{}",
        out.stderr
    );
    // ... unless it is named insecure, here by a CIDR, reported as dockerd reports it.
    std::fs::write(
        daemon.dir().join("daemon.json"),
        r#"{"insecure-registries": ["127.0.0.0/16"]}"#,
    )
    .unwrap();
    daemon.restart();
    daemon.berth(&["pull", &reference]).success();
    let info = daemon.api().get("/info").json();
    assert_eq!(
        info["RegistryConfig"]["InsecureRegistryCIDRs"],
        serde_json::json!(["::1/128", "127.0.0.0/8", "127.0.0.0/16"])
    );
}

#[test]
fn client_certificates_in_certs_d_serve_login_push_and_pull() {
    let test = "client_certificates_in_certs_d_serve_login_push_and_pull";
    if !Path::new(berth_e2e::registry::REGISTRY_BINARY).exists() {
        eprintln!("skipped {test}: no docker-registry");
        return;
    }
    if !have_openssl(test) {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let storage = tempfile::tempdir().unwrap();
    let auth = basic_auth_yaml(certs.path());
    // TLS with client certificates required, and a password.
    let (host, _mtls) = tls_registry(storage.path(), certs.path(), true, &auth);
    let daemon = Daemon::start();
    let dir = daemon.dir().join("certs.d").join(&host);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(certs.path().join("ca.crt"), dir.join("ca.crt")).unwrap();
    let config = tempfile::tempdir().unwrap();
    let login = |stdin: &str| {
        berth(
            &daemon,
            config.path(),
            &["login", &host, "-u", BASIC_USER, "--password-stdin"],
            Some(stdin),
        )
    };

    // Without the client certificate, the registry hangs up on the login.
    login(&format!("{BASIC_PASSWORD}\n")).failure();
    std::fs::copy(certs.path().join("client.cert"), dir.join("client.cert")).unwrap();
    std::fs::copy(certs.path().join("client.key"), dir.join("client.key")).unwrap();
    let out = login("wrong\n").failure();
    assert!(out.stderr.contains("401 Unauthorized"), "{}", out.stderr);
    let out = login(&format!("{BASIC_PASSWORD}\n")).success();
    assert_eq!(out.stdout, "Login Succeeded\n");

    // Push and pull back, with the certificate and the stored password.
    let reference = format!("{host}/team/mtls:1");
    let spec = ImageSpec::busybox(Some(&reference)).file_layer(&[("m", b"tls")]);
    let r = daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    assert_eq!(r.status, 200, "{}", r.text());
    let out = berth(&daemon, config.path(), &["push", &reference], None).success();
    assert!(out.stdout.contains("1: digest: sha256:"), "{}", out.stdout);
    berth(&daemon, config.path(), &["rmi", &reference], None).success();
    let out = berth(&daemon, config.path(), &["pull", &reference], None).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    assert_eq!(image_id(&daemon, &reference).as_deref(), Some(&*spec.id()));

    // The docker CLI through berthd: login and push.
    if docker_cli().is_some() {
        let out = daemon
            .docker_with_stdin(
                &["login", &host, "-u", BASIC_USER, "--password-stdin"],
                Some(BASIC_PASSWORD.as_bytes()),
            )
            .unwrap()
            .success();
        assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
        let copy = format!("{host}/team/mtls:2");
        daemon.berth(&["tag", &reference, &copy]).success();
        let out = daemon.docker(&["push", &copy]).unwrap().success();
        assert!(out.stdout.contains("2: digest: sha256:"), "{}", out.stdout);
    }
}
