//! Berth's own registry (`berth registry serve`, crate berth-registry-server) driven by real
//! clients: skopeo, berthd (berth CLI and raw API), the docker CLI through berthd and through
//! Debian's dockerd 20.10 (a throw-away one, the reference client stack), and raw HTTP for bad
//! input and faults. skopeo, dockerd and the docker CLI are skipped where missing
//! (scripts/install-test-peers.sh installs skopeo).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use berth_e2e::dockerd::{DOCKERD, Dockerd};
use berth_e2e::fixtures::{ImageSpec, sha256_hex};
use berth_e2e::registry::{DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, Registry, base64_encode};
use berth_e2e::{Daemon, docker_cli};

fn skopeo() -> Option<&'static str> {
    ["/usr/bin/skopeo", "/usr/local/bin/skopeo"]
        .into_iter()
        .find(|p| Path::new(p).exists())
}

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run command");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn skopeo_copies_an_oci_image_and_a_multi_arch_index_byte_exact() {
    let Some(skopeo) = skopeo() else {
        eprintln!("skipped: no skopeo (scripts/install-test-peers.sh installs it)");
        return;
    };
    let registry = Registry::start_berth("", None);
    let host = registry.host();
    let work = tempfile::tempdir().unwrap();
    let spec =
        ImageSpec::busybox(Some("team/app:1")).file_layer(&[("data", &random_bytes(4 << 20, 1))]);
    let archive = work.path().join("app.tar");
    std::fs::write(&archive, spec.oci_archive()).unwrap();
    let (ok, text) = run(Command::new(skopeo).args([
        "copy",
        "--dest-tls-verify=false",
        &format!("oci-archive:{}", archive.display()),
        &format!("docker://{host}/team/app:1"),
    ]));
    assert!(ok, "skopeo push: {text}\n{}", registry.log());
    let (ok, text) = run(Command::new(skopeo).args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/team/app:1"),
    ]));
    assert!(ok, "{text}");
    let served = registry.request("GET", "/v2/team/app/manifests/1", &[], &[]);
    assert_eq!(served.status, 200);
    assert_eq!(served.header("Content-Type"), Some(OCI_MANIFEST));
    // Pulled back into an OCI layout: the same manifest and layers, byte for byte.
    let layout = work.path().join("back");
    let (ok, text) = run(Command::new(skopeo).args([
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{host}/team/app:1"),
        &format!("oci:{}:back", layout.display()),
    ]));
    assert!(ok, "skopeo pull: {text}");
    let digest = sha256_hex(&served.body);
    let local = std::fs::read(layout.join("blobs/sha256").join(&digest)).unwrap();
    assert_eq!(local, served.body);
    let m: serde_json::Value = serde_json::from_slice(&served.body).unwrap();
    for l in m["layers"].as_array().unwrap() {
        let hex = l["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let bytes = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap();
        assert_eq!(sha256_hex(&bytes), hex);
    }

    // A multi-arch index of two images, copied registry to registry with --all.
    let amd = ImageSpec::busybox(None).label("arch", "amd64");
    let arm = ImageSpec::busybox(None).label("arch", "arm64");
    let (amd_digest, amd_m) = registry.push_image("team/multi", None, &amd, OCI_MANIFEST);
    let (arm_digest, arm_m) = registry.push_image("team/multi", None, &arm, OCI_MANIFEST);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": amd_digest, "size": amd_m.len(), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm_digest, "size": arm_m.len(), "platform": {"architecture": "arm64", "os": "linux"}},
        ],
    }))
    .unwrap();
    registry.push_manifest("team/multi", "v1", OCI_INDEX, &index);
    let (ok, text) = run(Command::new(skopeo).args([
        "copy",
        "--all",
        "--src-tls-verify=false",
        "--dest-tls-verify=false",
        &format!("docker://{host}/team/multi:v1"),
        &format!("docker://{host}/mirror/multi:v1"),
    ]));
    assert!(ok, "skopeo copy --all: {text}\n{}", registry.log());
    let copied = registry.request("GET", "/v2/mirror/multi/manifests/v1", &[], &[]);
    assert_eq!(copied.body, index, "the index round-trips byte for byte");
    assert_eq!(copied.header("Content-Type"), Some(OCI_INDEX));
    for (d, bytes) in [(&amd_digest, &amd_m), (&arm_digest, &arm_m)] {
        let child = registry.request("GET", &format!("/v2/mirror/multi/manifests/{d}"), &[], &[]);
        assert_eq!(&child.body, bytes);
    }
}

#[test]
fn berthd_and_the_docker_cli_push_and_pull_through_it() {
    let registry = Registry::start_berth("", None);
    let host = registry.host();
    let reference = format!("{host}/team/app:1");
    let spec =
        ImageSpec::busybox(Some(&reference)).file_layer(&[("data", &random_bytes(3 << 20, 2))]);
    let daemon = Daemon::start();
    let r = daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    assert_eq!(r.status, 200, "{}", r.text());
    let out = daemon.berth(&["push", &reference]).success();
    assert!(out.stdout.contains("1: digest: sha256:"), "{}", out.stdout);
    let served = registry.request("GET", "/v2/team/app/manifests/1", &[], &[]);
    assert_eq!(served.status, 200);
    assert_eq!(served.header("Content-Type"), Some(DOCKER_MANIFEST));
    let digest = format!("sha256:{}", sha256_hex(&served.body));
    assert!(out.stdout.contains(&digest), "{}", out.stdout);

    // Pulled into a fresh daemon through the raw API: the same image.
    let fresh = Daemon::start();
    let r = fresh.api().post(
        &format!("/images/create?fromImage={host}/team/app&tag=1"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.text().contains("errorDetail"), "{}", r.text());
    let inspect = fresh.api().get(&format!("/images/{reference}/json")).json();
    assert_eq!(inspect["Id"], spec.id());

    // A second repository: the layers are mounted, not sent again.
    let copy = format!("{host}/team/copy:1");
    fresh.berth(&["tag", &reference, &copy]).success();
    let out = fresh.berth(&["push", &copy]).success();
    assert!(
        out.stdout.contains("Mounted from team/app"),
        "{}",
        out.stdout
    );

    if docker_cli().is_none() {
        eprintln!("docker CLI part skipped: no docker CLI");
        return;
    }
    let tagged = format!("{host}/team/docker:2");
    daemon.berth(&["tag", &reference, &tagged]).success();
    let out = daemon.docker(&["push", &tagged]).unwrap().success();
    assert!(
        out.stdout.contains(&format!("2: digest: {digest}")),
        "{}",
        out.stdout
    );
    let out = fresh.docker(&["pull", &tagged]).unwrap().success();
    assert!(out.stdout.contains(&digest), "{}", out.stdout);
}

/// One raw request whose body is cut after `send` of `declared` bytes (a client that goes away).
fn cut_request(port: u16, method: &str, path: &str, declared: usize, send: &[u8]) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\nContent-Type: application/octet-stream\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(send).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    drop(s);
}

fn location_path(r: &berth_e2e::ApiResponse) -> String {
    r.header("Location").expect("Location").to_string()
}

fn code(r: &berth_e2e::ApiResponse) -> String {
    r.json()["errors"][0]["code"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn bad_input_is_refused_with_the_spec_codes_and_the_server_keeps_serving() {
    let registry = Registry::start_berth("max_manifest_bytes: 1048576\n", None);
    let blob = random_bytes(1 << 20, 3);
    let digest = format!("sha256:{}", sha256_hex(&blob));

    // Digest mismatch.
    let wrong = format!("sha256:{}", sha256_hex(b"other"));
    let r = registry.request(
        "POST",
        &format!("/v2/bad/blobs/uploads/?digest={wrong}"),
        &[],
        &blob,
    );
    assert_eq!(
        (r.status, code(&r).as_str()),
        (400, "DIGEST_INVALID"),
        "{}",
        r.text()
    );
    let r = registry.request(
        "POST",
        "/v2/bad/blobs/uploads/?digest=sha256:xyz",
        &[],
        &blob,
    );
    assert_eq!((r.status, code(&r).as_str()), (400, "DIGEST_INVALID"));

    // A manifest naming a missing blob.
    let config = registry.push_blob("bad", b"{}");
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": blob.len()}],
    })).unwrap();
    let r = registry.request(
        "PUT",
        "/v2/bad/manifests/1",
        &[("Content-Type", OCI_MANIFEST)],
        &m,
    );
    assert_eq!(
        (r.status, code(&r).as_str()),
        (400, "MANIFEST_BLOB_UNKNOWN"),
        "{}",
        r.text()
    );

    // Invalid names and traversal.
    for path in [
        "/v2/../../etc/tags/list",
        "/v2/a/..%2f..%2fx/tags/list",
        "/v2/Team/manifests/1",
        "/v2/a//b/tags/list",
    ] {
        let r = registry.request("GET", path, &[], &[]);
        assert_eq!(
            (r.status, code(&r).as_str()),
            (400, "NAME_INVALID"),
            "{path}: {}",
            r.text()
        );
    }
    let r = registry.request(
        "PUT",
        "/v2/bad/manifests/-bad-tag",
        &[("Content-Type", OCI_MANIFEST)],
        &m,
    );
    assert_eq!(r.status, 400);

    // A huge manifest.
    // The answer comes before the body is read, so the client's write may fail: ignored.
    let mut s = TcpStream::connect(("127.0.0.1", registry.port())).unwrap();
    let head = format!(
        "PUT /v2/bad/manifests/huge HTTP/1.1\r\nHost: x\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        2 << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(&vec![b' '; 2 << 20]);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("SIZE_INVALID"), "{text}");

    // Out-of-order chunk: 416, the session intact.
    let start = registry.request("POST", "/v2/bad/blobs/uploads/", &[], &[]);
    assert_eq!(start.status, 202);
    let loc = location_path(&start);
    let r = registry.request(
        "PATCH",
        &loc,
        &[("Content-Range", "0-524287")],
        &blob[..524_288],
    );
    assert_eq!(r.status, 202);
    assert_eq!(r.header("Range"), Some("0-524287"));
    let r = registry.request(
        "PATCH",
        &loc,
        &[("Content-Range", "600000-1048575")],
        &blob[600_000..],
    );
    assert_eq!(r.status, 416);

    // A client that goes away mid-chunk: the bytes that arrived stay, status says how many.
    cut_request(
        registry.port(),
        "PATCH",
        &loc,
        524_288,
        &blob[524_288..724_288],
    );
    let status = registry.request("GET", &loc, &[], &[]);
    assert_eq!(status.status, 204);
    let range = status.header("Range").unwrap().to_string();
    let next: usize = range.rsplit('-').next().unwrap().parse::<usize>().unwrap() + 1;
    assert!((524_288..=724_288).contains(&next), "{range}");
    let r = registry.request(
        "PUT",
        &format!("{loc}?digest={digest}"),
        &[("Content-Range", &format!("{next}-{}", blob.len() - 1))],
        &blob[next..],
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = registry.request("GET", &format!("/v2/bad/blobs/{digest}"), &[], &[]);
    assert_eq!(r.body, blob);

    // A whole-blob PUT cut off: nothing half-written becomes the blob.
    let other = random_bytes(1 << 20, 4);
    let other_digest = format!("sha256:{}", sha256_hex(&other));
    cut_request(
        registry.port(),
        "POST",
        &format!("/v2/bad/blobs/uploads/?digest={other_digest}"),
        other.len(),
        &other[..1000],
    );
    let r = registry.request("HEAD", &format!("/v2/bad/blobs/{other_digest}"), &[], &[]);
    assert_eq!(r.status, 404);

    // The server still serves.
    assert_eq!(registry.request("GET", "/v2/", &[], &[]).status, 200);
}

/// `f(0..n)` on a pool of 16 threads (a bounded client), results in order.
fn pooled<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<std::sync::Mutex<Option<T>>> =
        (0..n).map(|_| std::sync::Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..16 {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let r = f(i);
                    *results[i].lock().unwrap() = Some(r);
                }
            });
        }
    });
    results
        .into_iter()
        .map(|m| m.into_inner().unwrap().expect("pooled result"))
        .collect()
}

/// Raises this process's open-file limit (inherited by the server it starts) so that 1,000
/// connections at once fit on machines whose soft limit is 1,024.
fn raise_nofile(wanted: u64) {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    if limit.current.is_some_and(|c| c < wanted) {
        limit.current = Some(wanted.min(hard));
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// 1,000 uploads in flight at once (the figure), on 1,000 connections that each sent
/// their request head and half their body before any finishes: half monolithic POSTs, half
/// PATCHes to sessions opened beforehand (then completed by PUT). The server answers a health
/// check meanwhile, and every blob is served back whole afterwards.
#[test]
fn a_thousand_concurrent_uploads_all_land() {
    const N: usize = 1000;
    raise_nofile(4096);
    let registry = Registry::start_berth("", None);
    let repo = |i: usize| format!("load/r{}", i % 7);
    let blobs: Vec<Vec<u8>> = (0..N)
        .map(|i| random_bytes(8 << 10, 100 + i as u64))
        .collect();
    let digests: Vec<String> = blobs
        .iter()
        .map(|b| format!("sha256:{}", sha256_hex(b)))
        .collect();
    // The PATCH half's sessions, all open at once from here on.
    let sessions = pooled(N, |i| {
        (i % 2 == 1).then(|| {
            let r = registry.request("POST", &format!("/v2/{}/blobs/uploads/", repo(i)), &[], &[]);
            assert_eq!(r.status, 202, "{}", r.text());
            location_path(&r)
        })
    });

    let mut conns: Vec<TcpStream> = (0..N)
        .map(|i| {
            let (blob, half) = (&blobs[i], blobs[i].len() / 2);
            let (method, path, range) = match &sessions[i] {
                None => (
                    "POST",
                    format!("/v2/{}/blobs/uploads/?digest={}", repo(i), digests[i]),
                    String::new(),
                ),
                Some(loc) => (
                    "PATCH",
                    loc.clone(),
                    format!("Content-Range: 0-{}\r\n", blob.len() - 1),
                ),
            };
            let mut s = TcpStream::connect(("127.0.0.1", registry.port())).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(120))).ok();
            let head = format!(
                "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{range}\r\n",
                blob.len()
            );
            s.write_all(head.as_bytes()).expect("write head");
            s.write_all(&blob[..half]).expect("write half a body");
            s
        })
        .collect();
    // All 1,000 are mid-body: the server still answers.
    assert_eq!(registry.request("GET", "/healthz", &[], &[]).status, 200);
    assert_eq!(registry.request("GET", "/v2/", &[], &[]).status, 200);
    for (i, s) in conns.iter_mut().enumerate() {
        s.write_all(&blobs[i][blobs[i].len() / 2..])
            .expect("write the rest");
    }
    let mut patched = Vec::new();
    for (i, mut s) in conns.into_iter().enumerate() {
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).expect("read answer");
        let r = berth_e2e::api::parse_response(&raw, false);
        if sessions[i].is_none() {
            assert_eq!(r.status, 201, "upload {i}: {}", r.text());
            assert_eq!(r.header("Docker-Content-Digest"), Some(digests[i].as_str()));
        } else {
            assert_eq!(r.status, 202, "upload {i}: {}", r.text());
            patched.push((i, location_path(&r)));
        }
    }
    pooled(patched.len(), |k| {
        let (i, loc) = &patched[k];
        let sep = if loc.contains('?') { '&' } else { '?' };
        let r = registry.request(
            "PUT",
            &format!("{loc}{sep}digest={}", digests[*i]),
            &[],
            &[],
        );
        assert_eq!(r.status, 201, "finish upload {i}: {}", r.text());
    });
    pooled(N, |i| {
        let r = registry.request(
            "GET",
            &format!("/v2/{}/blobs/{}", repo(i), digests[i]),
            &[],
            &[],
        );
        assert_eq!(r.status, 200, "blob {i}");
        assert_eq!(r.body, blobs[i], "blob {i}");
    });
    assert_eq!(registry.request("GET", "/healthz", &[], &[]).status, 200);
}

#[test]
fn a_killed_server_keeps_tags_whole_and_abandoned_uploads_expire() {
    let registry = Registry::start_berth("upload_max_age_secs: 2\n", None);
    let spec = ImageSpec::busybox(None);
    let (digest, bytes) = registry.push_image("team/app", Some("1"), &spec, OCI_MANIFEST);
    let start = registry.request("POST", "/v2/team/app/blobs/uploads/", &[], &[]);
    let loc = location_path(&start);
    registry.request("PATCH", &loc, &[], &random_bytes(100_000, 5));
    // SIGKILL and start again on the same storage.
    let registry = registry.restart_berth();
    let r = registry.request("GET", "/v2/team/app/manifests/1", &[], &[]);
    assert_eq!(r.body, bytes);
    assert_eq!(r.header("Docker-Content-Digest"), Some(digest.as_str()));
    // The session survived the restart (its bytes are on disk)...
    let r = registry.request("GET", &loc, &[], &[]);
    assert_eq!((r.status, r.header("Range")), (204, Some("0-99999")));
    // ...and, left alone, expires.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let r = registry.request("GET", &loc, &[], &[]);
        if r.status == 404 {
            assert_eq!(code(&r), "BLOB_UPLOAD_UNKNOWN");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "upload never expired");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn gc_removes_unreferenced_content_while_serving() {
    let registry = Registry::start_berth("", None);
    let keep = ImageSpec::busybox(None).label("v", "1");
    let drop_ = ImageSpec::busybox(None).file_layer(&[("x", &random_bytes(1 << 20, 6))]);
    let (kept, _) = registry.push_image("team/app", Some("1"), &keep, OCI_MANIFEST);
    let (gone, gone_m) = registry.push_image("team/app", Some("2"), &drop_, OCI_MANIFEST);
    let gone_layer =
        serde_json::from_slice::<serde_json::Value>(&gone_m).unwrap()["layers"][1]["digest"]
            .as_str()
            .unwrap()
            .to_string();
    assert_eq!(
        registry
            .request("DELETE", "/v2/team/app/manifests/2", &[], &[])
            .status,
        202
    );
    let out = Command::new(berth_e2e::daemon::binary("berth"))
        .args(["registry", "gc", "--grace", "0", "--root"])
        .arg(registry.dir().join("data"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("manifests deleted: 1"), "{text}");
    assert_eq!(
        registry
            .request("GET", &format!("/v2/team/app/manifests/{gone}"), &[], &[])
            .status,
        404
    );
    assert_eq!(
        registry
            .request(
                "HEAD",
                &format!("/v2/team/app/blobs/{gone_layer}"),
                &[],
                &[]
            )
            .status,
        404
    );
    let r = registry.request("GET", "/v2/team/app/manifests/1", &[], &[]);
    assert_eq!(r.header("Docker-Content-Digest"), Some(kept.as_str()));
    // A push after the collection works as before.
    registry.push_image("team/app", Some("2"), &drop_, OCI_MANIFEST);
    // With the default grace, a fresh unreferenced blob is kept.
    let fresh = registry.push_blob("team/app", b"fresh");
    let out = Command::new(berth_e2e::daemon::binary("berth"))
        .args(["registry", "gc", "--root"])
        .arg(registry.dir().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        registry
            .request("HEAD", &format!("/v2/team/app/blobs/{fresh}"), &[], &[])
            .status,
        200
    );
}

#[test]
fn htpasswd_auth_challenges_and_accepts_the_docker_cli_way() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    // bcrypt of "s3cret".
    std::fs::write(
        &htpasswd,
        "ci:$2b$10$Wv6FD/sLhcYISxAUnBWq1eWsMVc5o1nT1xRuIP6epl1C3yb7mhFcq\n",
    )
    .unwrap();
    let auth = format!("Basic {}", base64_encode(b"ci:s3cret"));
    let registry = Registry::start_berth(
        &format!(
            "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
            htpasswd.display()
        ),
        Some(auth.clone()),
    );
    let mut raw = TcpStream::connect(("127.0.0.1", registry.port())).unwrap();
    raw.write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    raw.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("www-authenticate: basic realm=\"berth-test\""),
        "{text}"
    );
    // With credentials (the helper sends them).
    let spec = ImageSpec::busybox(None);
    registry.push_image("team/app", Some("1"), &spec, OCI_MANIFEST);
    // berthd pushes with `berth login` credentials.
    let host = registry.host();
    let daemon = Daemon::start();
    let reference = format!("{host}/team/app:2");
    let spec = ImageSpec::busybox(Some(&reference));
    daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    let out = daemon.berth(&["push", &reference]).failure();
    assert!(
        out.stderr.to_lowercase().contains("auth") || out.stderr.contains("401"),
        "{}",
        out.stderr
    );
    daemon
        .berth_with_stdin(
            &["login", "-u", "ci", "--password-stdin", &host],
            Some(b"s3cret"),
        )
        .success();
    daemon.berth(&["push", &reference]).success();
    let wrong = format!("Basic {}", base64_encode(b"ci:wrong"));
    let mut raw = TcpStream::connect(("127.0.0.1", registry.port())).unwrap();
    raw.write_all(format!("GET /v2/team/app/tags/list HTTP/1.1\r\nHost: x\r\nAuthorization: {wrong}\r\nConnection: close\r\n\r\n").as_bytes()).unwrap();
    let mut text = String::new();
    raw.read_to_string(&mut text).unwrap();
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    assert!(text.contains("UNAUTHORIZED"), "{text}");
}

#[test]
fn berths_push_client_resumes_a_cut_upload_from_the_reported_range() {
    use berth_e2e::upload_proxy::{Faults, UploadProxy};
    let registry = Registry::start_berth("", None);
    // The first upload request carrying more than 8 MiB is cut after 8 MiB of it.
    let proxy = UploadProxy::start(
        registry.port(),
        Faults {
            cut_upload_after: Some(8 << 20),
            ..Default::default()
        },
    );
    let reference = format!("{}/team/big:1", proxy.host());
    let spec =
        ImageSpec::busybox(Some(&reference)).file_layer(&[("random", &random_bytes(40 << 20, 7))]);
    let daemon = Daemon::start();
    let r = daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    assert_eq!(r.status, 200, "{}", r.text());
    daemon.berth(&["push", &reference]).success();
    let seen = proxy.seen();
    assert!(seen.iter().any(|s| s.cut), "nothing was cut: {seen:?}");
    // What the registry holds is the image.
    let m = registry
        .request("GET", "/v2/team/big/manifests/1", &[], &[])
        .json();
    let mut stored: u64 = m["config"]["size"].as_u64().unwrap();
    for l in m["layers"].as_array().unwrap() {
        let d = l["digest"].as_str().unwrap();
        let body = registry
            .request("GET", &format!("/v2/team/big/blobs/{d}"), &[], &[])
            .body;
        assert_eq!(format!("sha256:{}", sha256_hex(&body)), d);
        stored += l["size"].as_u64().unwrap();
    }
    let big = m["layers"][1]["size"].as_u64().unwrap();
    // Bytes sent more than once: everything uploaded less what is stored.
    let uploaded: u64 = seen
        .iter()
        .filter(|s| matches!(s.method.as_str(), "PATCH" | "PUT" | "POST"))
        .filter(|s| s.path.contains("/blobs/"))
        .map(|s| s.body_bytes as u64)
        .sum();
    let resent = uploaded.saturating_sub(stored);
    assert!(
        resent * 100 < big * 60,
        "{resent} of {big} bytes sent again: {seen:#?}"
    );
    // It went on from the registry's Range: a status GET after the cut, answered 204.
    let cut = seen.iter().position(|s| s.cut).unwrap();
    let session = seen[cut].path.split('?').next().unwrap().to_string();
    let status = seen[cut + 1..]
        .iter()
        .find(|s| s.path.split('?').next().unwrap() == session)
        .expect("a request on the session after the cut");
    assert_eq!(status.method, "GET", "{seen:#?}");
    assert!(status.answer.contains("204"), "{seen:#?}");
    eprintln!(
        "resume: {resent} of {big} bytes sent again ({} %)",
        resent * 100 / big
    );

    // The answer to a whole chunk is lost: the client asks the session's status and goes on
    // from the Range the registry reports, instead of sending the chunk again.
    let lossy = UploadProxy::start(
        registry.port(),
        Faults {
            lose_answer_of_patch_over: Some(1 << 20),
            ..Default::default()
        },
    );
    let lossy_ref = format!("{}/team/lossy:1", lossy.host());
    let spec =
        ImageSpec::busybox(Some(&lossy_ref)).file_layer(&[("random", &random_bytes(40 << 20, 8))]);
    let r = daemon
        .api()
        .post("/images/load?quiet=1", Some(&spec.docker_archive()));
    assert_eq!(r.status, 200, "{}", r.text());
    daemon.berth(&["push", &lossy_ref]).success();
    let seen = lossy.seen();
    let m = registry
        .request("GET", "/v2/team/lossy/manifests/1", &[], &[])
        .json();
    let stored: u64 = std::iter::once(&m["config"])
        .chain(m["layers"].as_array().unwrap())
        .map(|d| d["size"].as_u64().unwrap())
        .sum();
    let uploaded: u64 = seen
        .iter()
        .filter(|s| matches!(s.method.as_str(), "PATCH" | "PUT" | "POST"))
        .filter(|s| s.path.contains("/blobs/"))
        .map(|s| s.body_bytes as u64)
        .sum();
    let big = m["layers"][1]["size"].as_u64().unwrap();
    let resent = uploaded.saturating_sub(stored);
    assert!(
        resent * 100 < big * 60,
        "{resent} of {big} bytes sent again: {seen:#?}"
    );
    eprintln!(
        "lost answer: {resent} of {big} bytes sent again ({} %)",
        resent * 100 / big
    );
}

/// Unmounts (lazily) when dropped.
struct Mounted(std::path::PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_fails_the_push_not_the_server() {
    let registry = Registry::start_berth("", None);
    let data = registry.dir().join("data");
    // The server opens its paths by name: a tmpfs over its root is its storage from now on.
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=8m", "tmpfs"])
        .arg(&data)
        .status()
        .unwrap();
    assert!(st.success(), "mount a tmpfs");
    let _mounted = Mounted(data);
    let big = random_bytes(16 << 20, 9);
    let digest = format!("sha256:{}", sha256_hex(&big));
    let r = registry.request(
        "POST",
        &format!("/v2/full/blobs/uploads/?digest={digest}"),
        &[],
        &big,
    );
    assert_eq!(r.status, 500, "{}", r.text());
    assert!(r.text().contains("No space left"), "{}", r.text());
    // Chunked: the chunk fails; cancelling the session frees its space.
    let start = registry.request("POST", "/v2/full/blobs/uploads/", &[], &[]);
    assert_eq!(start.status, 202);
    let loc = location_path(&start);
    let r = registry.request("PATCH", &loc, &[], &big);
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(registry.request("DELETE", &loc, &[], &[]).status, 204);
    // Still serving, and a push that fits works.
    assert_eq!(registry.request("GET", "/v2/", &[], &[]).status, 200);
    let (digest, bytes) =
        registry.push_image("full", Some("1"), &ImageSpec::busybox(None), OCI_MANIFEST);
    let r = registry.request("GET", &format!("/v2/full/manifests/{digest}"), &[], &[]);
    assert_eq!(r.body, bytes);
}

#[test]
fn online_gc_collects_while_pushes_and_pulls_go_on() {
    let registry = std::sync::Arc::new(Registry::start_berth(
        "gc:\n  interval_secs: 1\n  grace_secs: 0\n",
        None,
    ));
    let doomed = ImageSpec::busybox(None).file_layer(&[("doomed", &random_bytes(1 << 20, 10))]);
    let (_, m) = registry.push_image("team/app", Some("old"), &doomed, OCI_MANIFEST);
    let layer = serde_json::from_slice::<serde_json::Value>(&m).unwrap()["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        registry
            .request("DELETE", "/v2/team/app/manifests/old", &[], &[])
            .status,
        202
    );
    // Pushes and pulls of other images go on the whole time; every one must succeed, and
    // every tag must stay whole, while collections run every second with no grace.
    let pusher = {
        let registry = registry.clone();
        std::thread::spawn(move || {
            for i in 0..40u64 {
                let spec =
                    ImageSpec::busybox(None).file_layer(&[("n", &random_bytes(64 << 10, 200 + i))]);
                let tag = format!("t{i}");
                let bytes = loop {
                    // A blob collected between its upload and the manifest is refused
                    // (MANIFEST_BLOB_UNKNOWN): the client uploads again.
                    let manifest = registry.image_manifest("team/live", &spec, OCI_MANIFEST);
                    let put = registry.request(
                        "PUT",
                        &format!("/v2/team/live/manifests/{tag}"),
                        &[("Content-Type", OCI_MANIFEST)],
                        &manifest,
                    );
                    if put.status == 201 {
                        break manifest;
                    }
                    assert_eq!(code(&put), "MANIFEST_BLOB_UNKNOWN", "{}", put.text());
                };
                let got =
                    registry.request("GET", &format!("/v2/team/live/manifests/{tag}"), &[], &[]);
                assert_eq!(got.body, bytes);
            }
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while registry
        .request("HEAD", &format!("/v2/team/app/blobs/{layer}"), &[], &[])
        .status
        != 404
    {
        assert!(
            std::time::Instant::now() < deadline,
            "never collected: {}",
            registry.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    pusher.join().expect("pushes during GC");
    // Every tag pushed names a manifest whose blobs are all there.
    let tags = registry
        .request("GET", "/v2/team/live/tags/list", &[], &[])
        .json();
    for tag in tags["tags"].as_array().unwrap() {
        let m = registry
            .request(
                "GET",
                &format!("/v2/team/live/manifests/{}", tag.as_str().unwrap()),
                &[],
                &[],
            )
            .json();
        for d in std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap()) {
            let d = d["digest"].as_str().unwrap();
            let r = registry.request("HEAD", &format!("/v2/team/live/blobs/{d}"), &[], &[]);
            assert_eq!(r.status, 200, "tag {tag} lost {d}");
        }
    }
}

/// The digests a Docker schema 2 or OCI image manifest references: config, then layers.
fn referenced_blobs(manifest: &[u8]) -> Vec<String> {
    let m: serde_json::Value = serde_json::from_slice(manifest).expect("manifest json");
    std::iter::once(&m["config"])
        .chain(m["layers"].as_array().expect("layers"))
        .map(|d| d["digest"].as_str().expect("digest").to_string())
        .collect()
}

/// The reference client stack: Debian's dockerd 20.10 (a throw-away one), driven by the docker
/// CLI, pushes an image to Berth's registry and pulls it back by tag and by digest.
#[test]
fn dockerd_pushes_to_it_and_pulls_back_by_tag_and_digest() {
    if !Path::new(DOCKERD).exists() {
        eprintln!("skipped: {DOCKERD} is missing");
        return;
    }
    let registry = Registry::start_berth("", None);
    let Some(dockerd) = Dockerd::start("dockerd push/pull", &[]) else {
        return;
    };
    let repo = format!("{}/team/busybox", registry.host());
    let reference = format!("{repo}:1");
    let spec =
        ImageSpec::busybox(Some(&reference)).file_layer(&[("data", &random_bytes(3 << 20, 9))]);
    let load = dockerd.docker_with_input(&["load", "-q"], Some(&spec.docker_archive()));
    assert_eq!(load.code, 0, "docker load: {}{}", load.stdout, load.stderr);
    let id = |r: &str| {
        dockerd
            .docker(&["image", "inspect", "--format", "{{.Id}}", r])
            .stdout
            .trim()
            .to_string()
    };
    assert_eq!(id(&reference), spec.id(), "{}", dockerd.log());

    let out = dockerd.docker(&["push", &reference]);
    let served = registry.request("GET", "/v2/team/busybox/manifests/1", &[], &[]);
    assert_eq!(served.status, 200);
    assert_eq!(served.header("Content-Type"), Some(DOCKER_MANIFEST));
    let digest = format!("sha256:{}", sha256_hex(&served.body));
    assert!(
        out.stdout.contains(&format!("1: digest: {digest}")),
        "{}",
        out.stdout
    );
    for blob in referenced_blobs(&served.body) {
        let r = registry.request("GET", &format!("/v2/team/busybox/blobs/{blob}"), &[], &[]);
        assert_eq!(r.status, 200, "{blob}");
        assert_eq!(format!("sha256:{}", sha256_hex(&r.body)), blob);
    }

    // Back by tag, then by digest, each time into a daemon that no longer has the image.
    dockerd.docker(&["rmi", &reference]);
    let out = dockerd.docker(&["pull", &reference]);
    assert!(out.stdout.contains(&digest), "{}", out.stdout);
    assert_eq!(id(&reference), spec.id());
    dockerd.docker(&["rmi", &reference]);
    let by_digest = format!("{repo}@{digest}");
    dockerd.docker(&["pull", &by_digest]);
    assert_eq!(id(&by_digest), spec.id());
    let repo_digests = dockerd
        .docker(&[
            "image",
            "inspect",
            "--format",
            "{{json .RepoDigests}}",
            &by_digest,
        ])
        .stdout;
    assert!(repo_digests.contains(&by_digest), "{repo_digests}");
}

/// dockerd's `--registry-mirror` pointed at Berth's registry in proxy mode, whose upstream is a
/// second Berth registry holding `library/busybox:latest`: `docker pull busybox` comes through
/// the mirror (there is no internet here to fall back to), and the cache keeps what it fetched,
/// so it serves the image again once the upstream is gone.
#[test]
fn dockerd_pulls_docker_hub_names_through_it_as_a_registry_mirror() {
    if !Path::new(DOCKERD).exists() {
        eprintln!("skipped: {DOCKERD} is missing");
        return;
    }
    let upstream = Registry::start_berth("", None);
    let spec = ImageSpec::busybox(None).file_layer(&[("data", &random_bytes(2 << 20, 10))]);
    let (digest, manifest) =
        upstream.push_image("library/busybox", Some("latest"), &spec, DOCKER_MANIFEST);
    let proxy = Registry::start_berth(
        &format!("proxy:\n  remote_url: http://{}\n", upstream.host()),
        None,
    );
    let mirror = format!("http://{}", proxy.host());
    let Some(dockerd) = Dockerd::start("dockerd mirror", &["--registry-mirror", &mirror]) else {
        return;
    };
    let out = dockerd.docker(&["pull", "busybox"]);
    assert!(out.stdout.contains(&digest), "{}", out.stdout);
    let id = dockerd.docker(&["image", "inspect", "--format", "{{.Id}}", "busybox"]);
    assert_eq!(id.stdout.trim(), spec.id());

    // The cache holds the manifest and every blob: served with the upstream gone.
    drop(upstream);
    let m = proxy.request("GET", "/v2/library/busybox/manifests/latest", &[], &[]);
    assert_eq!(m.status, 200, "{}", m.text());
    assert_eq!(m.body, manifest);
    for blob in referenced_blobs(&manifest) {
        let r = proxy.request(
            "GET",
            &format!("/v2/library/busybox/blobs/{blob}"),
            &[],
            &[],
        );
        assert_eq!(r.status, 200, "{blob}: {}", r.text());
        assert_eq!(format!("sha256:{}", sha256_hex(&r.body)), blob);
    }
    dockerd.docker(&["rmi", "busybox"]);
    let out = dockerd.docker(&["pull", "busybox"]);
    assert!(out.stdout.contains(&digest), "{}", out.stdout);
}
