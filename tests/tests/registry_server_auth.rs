//! Berth's own registry with token auth (its own issuer, and trusting an external one) and
//! TLS, driven by raw HTTP, berthd (berth CLI, raw API) and the docker CLI through berthd.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;

use berth_e2e::fixtures::ImageSpec;
use berth_e2e::registry::{OCI_MANIFEST, Registry, base64_encode};
use berth_e2e::{Daemon, docker_cli};

/// bcrypt of "s3cret".
const HASH: &str = "$2b$10$Wv6FD/sLhcYISxAUnBWq1eWsMVc5o1nT1xRuIP6epl1C3yb7mhFcq";

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One raw request; the whole answer as text.
fn raw(port: u16, head: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(format!("{head}\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn token_from(answer: &str) -> String {
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["token"].as_str().unwrap().to_string()
}

fn registry_auth(username: &str, password: &str, host: &str) -> String {
    base64_encode(
        serde_json::json!({"username": username, "password": password, "serveraddress": host})
            .to_string()
            .as_bytes(),
    )
}

fn own_issuer_config(dir: &Path) -> String {
    let key = dir.join("signing.pem");
    openssl(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-out",
        key.to_str().unwrap(),
    ]);
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("ci:{HASH}\n")).unwrap();
    let access = dir.join("access.yaml");
    std::fs::write(
        &access,
        "- account: ci\n  name: team/*\n  actions: [pull, push]\n- account: ci\n  name: \"*\"\n  actions: [pull]\n- account: \"*\"\n  name: public/*\n  actions: [pull]\n",
    )
    .unwrap();
    format!(
        "auth:\n  token:\n    realm: http://127.0.0.1:{{PORT}}/token\n    service: berth-registry\n    issuer: berth-registry\n    signing_key: {}\n    htpasswd: {}\n    access: {}\n",
        key.display(),
        htpasswd.display(),
        access.display()
    )
}

#[test]
fn token_auth_with_its_own_issuer_grants_by_the_access_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::start_berth(&own_issuer_config(dir.path()), None);
    let port = registry.port();
    // No token: a challenge docker understands.
    let a = raw(
        port,
        "POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nContent-Length: 0",
    );
    assert!(a.starts_with("HTTP/1.1 401"), "{a}");
    assert!(
        a.contains(&format!("www-authenticate: Bearer realm=\"http://127.0.0.1:{port}/token\",service=\"berth-registry\",scope=\"repository:team/app:pull,push\"")),
        "{a}"
    );
    // A wrong password: no token.
    let wrong = base64_encode(b"ci:nope");
    let a = raw(
        port,
        &format!(
            "GET /token?service=berth-registry&scope=repository:team/app:pull,push HTTP/1.1\r\nAuthorization: Basic {wrong}"
        ),
    );
    assert!(a.starts_with("HTTP/1.1 401"), "{a}");
    // Anonymous: a token without push; the push is refused as insufficient.
    let a = raw(
        port,
        "GET /token?service=berth-registry&scope=repository:team/app:pull,push HTTP/1.1",
    );
    let anon = token_from(&a);
    let a = raw(
        port,
        &format!(
            "POST /v2/team/app/blobs/uploads/ HTTP/1.1\r\nContent-Length: 0\r\nAuthorization: Bearer {anon}"
        ),
    );
    assert!(
        a.starts_with("HTTP/1.1 401") && a.contains("insufficient_scope"),
        "{a}"
    );
    // ci: push and pull in team/*.
    let right = base64_encode(b"ci:s3cret");
    let a = raw(
        port,
        &format!(
            "GET /token?service=berth-registry&scope=repository:team/app:pull,push HTTP/1.1\r\nAuthorization: Basic {right}"
        ),
    );
    let token = token_from(&a);
    registry.set_authorization(Some(format!("Bearer {token}")));
    registry.push_image(
        "team/app",
        Some("1"),
        &ImageSpec::busybox(None),
        OCI_MANIFEST,
    );
    // A token for one repository is no good for another (berthd's login check pulls one
    // that does not exist, hence ci's pull on `*`).
    let r = registry.request("GET", "/v2/team/other/tags/list", &[], &[]);
    assert_eq!(r.status, 401);
    // A forged token (signature of another key) is refused.
    let mut forged = token.clone();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let a = raw(
        port,
        &format!("GET /v2/team/app/tags/list HTTP/1.1\r\nAuthorization: Bearer {forged}"),
    );
    assert!(
        a.starts_with("HTTP/1.1 401") && a.contains("invalid_token"),
        "{a}"
    );

    // berthd: refused without credentials, pushes with them; the docker CLI too.
    let host = registry.host();
    let reference = format!("{host}/team/app:2");
    let spec = ImageSpec::busybox(Some(&reference)).label("n", "2");
    let daemon = Daemon::start();
    let r = daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    assert_eq!(r.status, 200);
    let path = format!("/images/{host}/team/app/push?tag=2");
    let r = daemon.api().post(&path, None);
    assert!(r.text().contains("errorDetail"), "{}", r.text());
    let r = daemon.api().request(
        "POST",
        &path,
        &[("X-Registry-Auth", &registry_auth("ci", "s3cret", &host))],
        None,
    );
    assert!(!r.text().contains("errorDetail"), "{}", r.text());
    if docker_cli().is_some() {
        let out = daemon
            .docker_with_stdin(
                &["login", &host, "-u", "ci", "--password-stdin"],
                Some(b"s3cret"),
            )
            .unwrap()
            .success();
        assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
        let tagged = format!("{host}/team/app:3");
        daemon.berth(&["tag", &reference, &tagged]).success();
        daemon.docker(&["push", &tagged]).unwrap().success();
        // Not in a repository the access file does not give.
        let denied = format!("{host}/elsewhere/app:1");
        daemon.berth(&["tag", &reference, &denied]).success();
        daemon.docker(&["push", &denied]).unwrap().failure();
    }
}

#[test]
fn token_auth_trusting_an_external_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = berth_e2e::token_auth::TokenIssuer::start(dir.path());
    let registry = Registry::start_berth(&issuer.berth_auth_yaml(dir.path()), None);
    let host = registry.host();
    let reference = format!("{host}/team/ext:1");
    let spec = ImageSpec::busybox(Some(&reference));
    let daemon = Daemon::start();
    daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    let path = format!("/images/{host}/team/ext/push?tag=1");
    // Anonymous: the issuer grants pull only.
    let r = daemon.api().post(&path, None);
    assert!(r.text().contains("errorDetail"), "{}", r.text());
    let auth = registry_auth(
        berth_e2e::token_auth::TOKEN_USER,
        berth_e2e::token_auth::TOKEN_PASSWORD,
        &host,
    );
    let r = daemon
        .api()
        .request("POST", &path, &[("X-Registry-Auth", &auth)], None);
    assert!(!r.text().contains("errorDetail"), "{}", r.text());
    // Anonymous pull works with the issuer's pull-only token.
    let fresh = Daemon::start();
    fresh.berth(&["pull", &reference]).success();
}

#[test]
fn tls_with_a_certificate_and_key() {
    if !Path::new("/usr/bin/curl").exists() {
        eprintln!("skipped: no curl (the TLS client of this test)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=127.0.0.1",
        "-addext",
        "subjectAltName=IP:127.0.0.1",
        "-keyout",
        key.to_str().unwrap(),
        "-out",
        cert.to_str().unwrap(),
    ]);
    let port = berth_e2e::registry::free_port();
    let root = dir.path().join("data");
    let config = dir.path().join("registry.yaml");
    std::fs::write(
        &config,
        format!(
            "tls:\n  cert: {}\n  key: {}\n",
            cert.display(),
            key.display()
        ),
    )
    .unwrap();
    let mut child = berth_e2e::daemon::ChildGuard(
        Command::new(berth_e2e::daemon::binary("berth"))
            .args([
                "registry",
                "serve",
                "--addr",
                &format!("127.0.0.1:{port}"),
                "--root",
            ])
            .arg(&root)
            .arg("--config")
            .arg(&config)
            .stderr(std::fs::File::create(dir.path().join("log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let url = format!("https://127.0.0.1:{port}/v2/");
    let mut answer = String::new();
    for _ in 0..100 {
        let out = Command::new("curl")
            .args(["-sS", "--cacert", cert.to_str().unwrap(), "-i", &url])
            .output()
            .unwrap();
        answer = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer
            .to_lowercase()
            .contains("docker-distribution-api-version: registry/2.0"),
        "{answer}"
    );
    // Plain HTTP on the TLS port gets nothing useful.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("http://127.0.0.1:{port}/v2/"),
        ])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&out.stdout), "200");
    let _ = child.0.kill();
}

#[test]
fn a_pull_through_cache_of_a_token_auth_registry_serves_berthd_as_its_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let mut upstream = Registry::start_berth(&own_issuer_config(dir.path()), None);
    let port = upstream.port();
    let right = base64_encode(b"ci:s3cret");
    let a = raw(
        port,
        &format!(
            "GET /token?service=berth-registry&scope=repository:team/app:pull,push HTTP/1.1\r\nAuthorization: Basic {right}"
        ),
    );
    upstream.set_authorization(Some(format!("Bearer {}", token_from(&a))));
    let spec = ImageSpec::busybox(None).file_layer(&[("cached", &[9u8; 2 << 20])]);
    let (digest, bytes) = upstream.push_image("team/app", Some("1"), &spec, OCI_MANIFEST);

    let cache = Registry::start_berth(
        &format!(
            "proxy:\n  remote_url: http://{}\n  username: ci\n  password: s3cret\n  tag_ttl_secs: 0\n",
            upstream.host()
        ),
        None,
    );
    // Direct: the manifest, fetched through.
    let r = cache.request("GET", "/v2/team/app/manifests/1", &[], &[]);
    assert_eq!(r.status, 200, "{}\n{}", r.text(), cache.log());
    assert_eq!(r.body, bytes);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    // Pushes are refused: a cache is read-only.
    let r = cache.request("POST", "/v2/team/app/blobs/uploads/", &[], &[]);
    assert_eq!(r.status, 405);

    // berthd with the cache as the upstream's mirror.
    let mut daemon = Daemon::start();
    std::fs::write(
        daemon.dir().join("daemon.json"),
        serde_json::json!({"registry-mirrors-per-registry": {upstream.host(): [format!("http://{}", cache.host())]}}).to_string(),
    )
    .unwrap();
    daemon.restart();
    let reference = format!("{}/team/app:1", upstream.host());
    daemon.berth(&["pull", &reference]).success();
    let id = daemon
        .api()
        .get(&format!("/images/{reference}/json"))
        .json()["Id"]
        .clone();
    assert_eq!(id, spec.id());
    // The cache holds everything now: with the upstream gone, a pull by digest still works.
    drop(upstream);
    let m: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let layer = m["layers"][1]["digest"].as_str().unwrap();
    let mut ok = false;
    for _ in 0..50 {
        // Caching finishes behind the answer.
        if cache
            .request("HEAD", &format!("/v2/team/app/blobs/{layer}"), &[], &[])
            .status
            == 200
        {
            ok = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(ok, "layer not cached: {}", cache.log());
    let r = cache.request("GET", &format!("/v2/team/app/manifests/{digest}"), &[], &[]);
    assert_eq!(r.body, bytes);
    // A tag whose upstream is down is served from the cache.
    let r = cache.request("GET", "/v2/team/app/manifests/1", &[], &[]);
    assert_eq!(r.status, 200, "{}", r.text());
}
