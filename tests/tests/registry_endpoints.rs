//! Where pulls go and how they get there: mirrors (dockerd's `registry-mirrors` for Docker Hub,
//! and Berth's per-registry `registry-mirrors-per-registry`), and per-registry TLS roots in
//! `certs.d/<host:port>/` beside daemon.json. Real registries (Debian's docker-registry) on
//! 127.0.0.1 only.

use std::process::Command;

use berth_e2e::fault_proxy::{Plan, Proxy};
use berth_e2e::fixtures::ImageSpec;
use berth_e2e::registry::{OCI_MANIFEST, Registry, free_port, make_certs, tls_registry};
use berth_e2e::{Daemon, docker_cli};

fn image_id(daemon: &Daemon, name: &str) -> Option<String> {
    let r = daemon.api().get(&format!("/images/{name}/json"));
    (r.status == 200).then(|| r.json()["Id"].as_str().unwrap().to_string())
}

fn port_of(host: &str) -> u16 {
    host.rsplit(':').next().unwrap().parse().unwrap()
}

/// Writes daemon.json and restarts the daemon with it.
fn configure(daemon: &mut Daemon, config: serde_json::Value) {
    std::fs::write(daemon.dir().join("daemon.json"), config.to_string()).unwrap();
    daemon.restart();
}

#[test]
fn mirrors_are_tried_in_order_before_the_registry() {
    let Some(upstream) = Registry::start("mirrors_are_tried_in_order_before_the_registry") else {
        return;
    };
    let Some(mirror) = Registry::start("mirrors_are_tried_in_order_before_the_registry") else {
        return;
    };
    // The registry, behind a proxy that counts what is asked of it.
    let proxy = Proxy::start(port_of(&upstream.host()), Plan::default());
    let only_upstream = ImageSpec::busybox(None).file_layer(&[("where", b"upstream")]);
    upstream.push_image("team/app", Some("1"), &only_upstream, OCI_MANIFEST);
    let mirrored = ImageSpec::busybox(None).file_layer(&[("where", b"mirror")]);
    mirror.push_image("team/app", Some("2"), &mirrored, OCI_MANIFEST);
    let dead = format!("127.0.0.1:{}", free_port());

    let mut daemon = Daemon::start();
    configure(
        &mut daemon,
        serde_json::json!({
            "registry-mirrors": ["https://hub-mirror.example.com"],
            "registry-mirrors-per-registry": {
                proxy.host(): [format!("http://{dead}"), format!("http://{}/", mirror.host())],
            },
        }),
    );
    let info = daemon.api().get("/info").json();
    let hub = serde_json::json!(["https://hub-mirror.example.com/"]);
    assert_eq!(info["RegistryConfig"]["Mirrors"], hub);
    assert_eq!(
        info["RegistryConfig"]["IndexConfigs"]["docker.io"]["Mirrors"],
        hub
    );
    assert_eq!(
        info["RegistryConfig"]["IndexConfigs"][proxy.host()],
        serde_json::json!({
            "Name": proxy.host(),
            "Mirrors": [format!("http://{dead}/"), format!("http://{}/", mirror.host())],
            "Secure": false,
            "Official": false,
        })
    );

    // The mirror has it: the registry is not contacted (the dead mirror before it is skipped).
    let from_mirror = format!("{}/team/app:2", proxy.host());
    let out = daemon.berth(&["pull", &from_mirror]).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    assert_eq!(
        image_id(&daemon, &from_mirror).as_deref(),
        Some(&*mirrored.id())
    );
    assert!(
        proxy.requests().is_empty(),
        "the registry was asked: {:?}",
        proxy.requests()
    );

    // The mirrors lack it (one is down, one answers 404): the registry serves it.
    let from_upstream = format!("{}/team/app:1", proxy.host());
    daemon.berth(&["pull", &from_upstream]).success();
    assert_eq!(
        image_id(&daemon, &from_upstream).as_deref(),
        Some(&*only_upstream.id())
    );
    assert!(
        proxy
            .requests()
            .iter()
            .any(|r| r.path.ends_with("/manifests/1")),
        "{:?}",
        proxy.requests()
    );

    if docker_cli().is_some() {
        let out = daemon.docker(&["info"]).unwrap().success();
        let section = out
            .stdout
            .split("Registry Mirrors:")
            .nth(1)
            .unwrap_or_default();
        assert!(
            section.contains("https://hub-mirror.example.com/"),
            "{}",
            out.stdout
        );
    }

    // A mirror that is not a URL is refused at start, as dockerd does.
    std::fs::write(
        daemon.dir().join("daemon.json"),
        r#"{"registry-mirrors": ["hub-mirror.example.com"]}"#,
    )
    .unwrap();
    daemon.stop();
    let out = daemon.command().output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("invalid mirror"), "{stderr}");
}

#[test]
fn a_registry_with_its_own_ca_in_certs_d() {
    let Some(registry) = Registry::start("a_registry_with_its_own_ca_in_certs_d") else {
        return;
    };
    if Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped a_registry_with_its_own_ca_in_certs_d: no openssl");
        return;
    }
    let spec = ImageSpec::busybox(None).file_layer(&[("tls", b"yes")]);
    registry.push_image("secure/app", Some("1"), &spec, OCI_MANIFEST);
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let (host, _tls) = tls_registry(&registry.dir().join("data"), certs.path(), false, "");
    let daemon = Daemon::start();
    let reference = format!("{host}/secure/app:1");
    // certs.d beside daemon.json; a directory for the registry says it speaks TLS (even on
    // loopback, which is plain HTTP otherwise).
    let dir = daemon.dir().join("certs.d").join(&host);
    std::fs::create_dir_all(&dir).unwrap();

    let r = daemon.api().post(
        &format!("/images/create?fromImage={host}/secure/app&tag=1"),
        None,
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        r.message(),
        format!(
            "Get \"https://{host}/v2/\": tls: failed to verify certificate: x509: certificate signed by unknown authority"
        )
    );
    let out = daemon.berth(&["pull", &reference]).failure();
    assert!(
        out.stderr
            .contains("x509: certificate signed by unknown authority"),
        "{}",
        out.stderr
    );
    assert_eq!(image_id(&daemon, &reference), None);

    // With the CA, the pull works (certs.d is read at each pull: no restart).
    std::fs::copy(certs.path().join("ca.crt"), dir.join("ca.crt")).unwrap();
    let out = daemon.berth(&["pull", &reference]).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    assert_eq!(image_id(&daemon, &reference).as_deref(), Some(&*spec.id()));

    // A registry that requires a client certificate: refused without one, served with
    // `client.cert` and `client.key` in its certs.d directory.
    // (A fresh daemon: every blob comes through that registry.)
    let (host, _mtls) = tls_registry(&registry.dir().join("data"), certs.path(), true, "");
    let daemon = Daemon::start();
    let reference = format!("{host}/secure/app:1");
    let dir = daemon.dir().join("certs.d").join(&host);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(certs.path().join("ca.crt"), dir.join("ca.crt")).unwrap();
    daemon.berth(&["pull", &reference]).failure();
    assert_eq!(image_id(&daemon, &reference), None);
    // A certificate without its key is refused as dockerd refuses it.
    std::fs::copy(certs.path().join("client.cert"), dir.join("client.cert")).unwrap();
    let out = daemon.berth(&["pull", &reference]).failure();
    assert!(
        out.stderr.contains(
            "missing key client.key for client certificate client.cert. CA certificates must use the extension .crt"
        ),
        "{}",
        out.stderr
    );
    std::fs::copy(certs.path().join("client.key"), dir.join("client.key")).unwrap();
    daemon.berth(&["pull", &reference]).success();
    assert_eq!(image_id(&daemon, &reference).as_deref(), Some(&*spec.id()));
}
