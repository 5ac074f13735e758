//! Pulling from a real registry (Debian's docker-registry on 127.0.0.1, see
//! berth_e2e::registry) through berth, the raw API and the docker CLI. Skipped with a message
//! where docker-registry is not installed.

use berth_e2e::fixtures::{Entry, ImageSpec, layer_tar};
use berth_e2e::registry::{
    DOCKER_LIST, DOCKER_MANIFEST, FaultProxy, OCI_INDEX, OCI_MANIFEST, Registry, free_port,
};
use berth_e2e::{Daemon, docker_cli};

/// The status lines of a pull's JSON stream, `id: status` (or `status`).
fn statuses(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l["id"].as_str() {
            Some(id) => format!("{id}: {}", l["status"].as_str().unwrap_or_default()),
            None => l["status"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

fn image_id(daemon: &Daemon, name: &str) -> String {
    let r = daemon.api().get(&format!("/images/{name}/json"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["Id"].as_str().unwrap().to_string()
}

/// No partial blob or unpacked layer left behind in the data root.
fn assert_no_leftovers(daemon: &Daemon) {
    let root = daemon.data_root();
    let mut leftovers = Vec::new();
    for dir in ["blobs/.ingest", "layers"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if dir.ends_with(".ingest") || name.starts_with(".tmp") {
                    leftovers.push(format!("{dir}/{name}"));
                }
            }
        }
    }
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

#[test]
fn pull_by_tag_and_digest_through_berth_and_the_api() {
    let Some(registry) = Registry::start("pull_by_tag_and_digest_through_berth_and_the_api") else {
        return;
    };
    let spec = ImageSpec::busybox(None).file_layer(&[("etc/app", b"1.4")]);
    let (digest, _) = registry.push_image("team/app", Some("1.4"), &spec, DOCKER_MANIFEST);
    let reference = format!("{}/team/app:1.4", registry.host());
    let daemon = Daemon::start();

    let out = daemon.berth(&["pull", &reference]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1.4: Pulling from team/app", "{}", out.stdout);
    for expected in [
        "Pulling fs layer",
        "Pull complete",
        &format!("Digest: {digest}"),
        &format!("Status: Downloaded newer image for {reference}"),
    ] {
        assert!(
            out.stdout.contains(expected),
            "no {expected:?} in {}",
            out.stdout
        );
    }
    assert_eq!(lines.last().copied(), Some(reference.as_str()));
    assert_eq!(image_id(&daemon, &reference), spec.id());
    let inspect = daemon
        .api()
        .get(&format!("/images/{reference}/json"))
        .json();
    assert_eq!(
        inspect["RepoDigests"],
        serde_json::json!([format!("{}/team/app@{digest}", registry.host())])
    );

    // Again: nothing to download.
    let out = daemon.berth(&["pull", &reference]).success();
    assert!(out.stdout.contains("Already exists"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains(&format!("Status: Image is up to date for {reference}")),
        "{}",
        out.stdout
    );
    // -q prints the reference only.
    let out = daemon.berth(&["pull", "-q", &reference]).success();
    assert_eq!(out.stdout, format!("{reference}\n"));

    // By digest through the raw API (the docker CLI puts the digest in `tag`), into a fresh
    // daemon: every message Docker sends, in order for each layer.
    let fresh = Daemon::start();
    let repo = format!("{}/team/app", registry.host());
    let r = fresh.api().post(
        &format!("/images/create?fromImage={repo}&tag={digest}"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.json_lines();
    let st = statuses(&lines);
    assert_eq!(st[0], format!("{digest}: Pulling from team/app"), "{st:?}");
    let layer = &st[1][..12];
    let mut order: Vec<&str> = st
        .iter()
        .filter_map(|s| s.strip_prefix(&format!("{layer}: ")))
        .collect();
    order.dedup();
    assert_eq!(
        order,
        [
            "Pulling fs layer",
            "Downloading",
            "Verifying Checksum",
            "Download complete",
            "Extracting",
            "Pull complete"
        ],
        "{st:?}"
    );
    let downloading = lines
        .iter()
        .find(|l| l["status"] == "Downloading")
        .expect("a Downloading message");
    assert!(downloading["progressDetail"]["total"].as_i64().unwrap() > 0);
    assert!(st.contains(&format!("Digest: {digest}")), "{st:?}");
    assert_eq!(
        st.last().unwrap(),
        &format!("Status: Downloaded newer image for {repo}@{digest}")
    );
    assert_eq!(image_id(&fresh, &format!("{repo}@{digest}")), spec.id());
    // Pulled by digest only: no tag.
    let tags = fresh
        .api()
        .get(&format!("/images/{}/json", spec.id()))
        .json()["RepoTags"]
        .clone();
    assert_eq!(tags, serde_json::json!([]));
    assert_no_leftovers(&fresh);
    let out = fresh.berth(&["images", "--digests"]).success();
    assert!(out.stdout.contains(&digest), "{}", out.stdout);
    // rmi by digest removes what a pull by digest brought.
    let out = fresh.berth(&["rmi", &format!("{repo}@{digest}")]).success();
    assert!(
        out.stdout.contains(&format!("Untagged: {repo}@{digest}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!("Deleted: {}", spec.id())),
        "{}",
        out.stdout
    );
    assert_eq!(
        fresh.api().get("/images/json").json(),
        serde_json::json!([])
    );
}

#[test]
fn pull_selects_the_platform_in_an_index() {
    let Some(registry) = Registry::start("pull_selects_the_platform_in_an_index") else {
        return;
    };
    let amd = ImageSpec::busybox(None).label("arch", "amd64");
    let arm = ImageSpec::busybox(None)
        .label("arch", "arm64")
        .platform("arm64", Some("v8"));
    let index = |media_type: &str, manifest_type: &str| {
        let (amd_digest, amd_manifest) = registry.push_image("multi", None, &amd, manifest_type);
        let (arm_digest, arm_manifest) = registry.push_image("multi", None, &arm, manifest_type);
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media_type,
            "manifests": [
                {"mediaType": manifest_type, "digest": arm_digest, "size": arm_manifest.len(),
                 "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
                {"mediaType": manifest_type, "digest": amd_digest, "size": amd_manifest.len(),
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ],
        }))
        .unwrap()
    };
    let oci_index =
        registry.push_manifest("multi", "oci", OCI_INDEX, &index(OCI_INDEX, OCI_MANIFEST));
    registry.push_manifest(
        "multi",
        "docker",
        DOCKER_LIST,
        &index(DOCKER_LIST, DOCKER_MANIFEST),
    );
    let daemon = Daemon::start();
    let host = registry.host();

    // The host's platform by default (these tests run on amd64).
    let oci = format!("{host}/multi:oci");
    daemon.berth(&["pull", &oci]).success();
    assert_eq!(image_id(&daemon, &oci), amd.id());
    // The repository digest is the index's, as Docker records it.
    let inspect = daemon.api().get(&format!("/images/{oci}/json")).json();
    assert_eq!(
        inspect["RepoDigests"],
        serde_json::json!([format!("{host}/multi@{oci_index}")])
    );

    let out = daemon
        .berth(&[
            "pull",
            "--platform",
            "linux/arm64",
            &format!("{host}/multi:docker"),
        ])
        .success();
    // The layer is shared with the amd64 image: only the manifest and config are new.
    assert!(out.stdout.contains("Already exists"), "{}", out.stdout);
    assert!(
        out.stdout.contains("Downloaded newer image"),
        "{}",
        out.stdout
    );
    assert_eq!(image_id(&daemon, &format!("{host}/multi:docker")), arm.id());
    // Inspect shows the platform that was pulled.
    let inspect = daemon
        .api()
        .get(&format!("/images/{host}/multi:docker/json"))
        .json();
    assert_eq!(
        (
            &inspect["Os"],
            &inspect["Architecture"],
            &inspect["Variant"]
        ),
        (&"linux".into(), &"arm64".into(), &"v8".into())
    );

    // What the registry has, without pulling.
    let r = daemon
        .api()
        .get(&format!("/distribution/{host}/multi:oci/json"));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json(),
        serde_json::json!({
            "Descriptor": {"mediaType": OCI_INDEX, "digest": oci_index, "size": r.json()["Descriptor"]["size"]},
            "Platforms": [
                {"architecture": "arm64", "os": "linux", "variant": "v8"},
                {"architecture": "amd64", "os": "linux"},
            ],
        })
    );
    let (single, _) = registry.push_image("multi", Some("single"), &amd, OCI_MANIFEST);
    let r = daemon
        .api()
        .get(&format!("/distribution/{host}/multi:single/json"));
    assert_eq!(r.json()["Descriptor"]["digest"], single);
    assert_eq!(
        r.json()["Platforms"],
        serde_json::json!([{"architecture": "amd64", "os": "linux"}])
    );
    let r = daemon
        .api()
        .get(&format!("/distribution/{host}/multi:nope/json"));
    assert_eq!(r.status, 404, "{}", r.text());

    // A platform the index lacks: after `Pulling from`, in the stream, as Docker's.
    let r = daemon.api().post(
        &format!("/images/create?fromImage={host}/multi&tag=oci&platform=linux/s390x"),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.json_lines();
    assert_eq!(statuses(&lines)[0], "oci: Pulling from multi");
    assert_eq!(
        lines.last().unwrap()["error"],
        "no matching manifest for linux/s390x in the manifest list entries"
    );
    let out = daemon
        .berth(&["pull", "--platform", "linux/s390x", &oci])
        .failure();
    assert!(
        out.stderr
            .contains("no matching manifest for linux/s390x in the manifest list entries"),
        "{}",
        out.stderr
    );
}

#[test]
fn pull_errors_in_dockers_words() {
    let Some(registry) = Registry::start("pull_errors_in_dockers_words") else {
        return;
    };
    let spec = ImageSpec::busybox(None);
    registry.push_image("team/app", Some("1"), &spec, OCI_MANIFEST);
    let daemon = Daemon::start();
    let host = registry.host();

    let r = daemon.api().post(
        &format!("/images/create?fromImage={host}/team/app&tag=nope"),
        None,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(
        r.message(),
        format!("manifest for {host}/team/app:nope not found: manifest unknown: manifest unknown")
    );
    // distribution answers MANIFEST_UNKNOWN for an unknown repository too.
    let out = daemon
        .berth(&["pull", &format!("{host}/nobody/here")])
        .failure();
    assert_eq!(
        out.stderr.trim_end(),
        format!(
            "Error response from daemon: manifest for {host}/nobody/here:latest not found: manifest unknown: manifest unknown"
        )
    );

    // Nothing listens on this port.
    let down = format!("127.0.0.1:{}", free_port());
    let r = daemon
        .api()
        .post(&format!("/images/create?fromImage={down}/x&tag=1"), None);
    assert_eq!(r.status, 500, "{}", r.text());
    assert_eq!(
        r.message(),
        format!("Get \"http://{down}/v2/\": dial tcp {down}: connect: connection refused")
    );
    let out = daemon.berth(&["pull", &format!("{down}/x:1")]).failure();
    assert!(out.stderr.contains("connection refused"), "{}", out.stderr);

    // Still healthy, nothing stored.
    assert_eq!(daemon.api().get("/_ping").status, 200);
    assert_eq!(
        daemon.api().get("/images/json").json(),
        serde_json::json!([])
    );
}

#[test]
fn a_layer_that_does_not_match_its_digest_stores_nothing() {
    let Some(registry) = Registry::start("a_layer_that_does_not_match_its_digest_stores_nothing")
    else {
        return;
    };
    let spec = ImageSpec::busybox(None).file_layer(&[("data", &[7u8; 100_000])]);
    let (_, manifest) = registry.push_image("bad", Some("1"), &spec, OCI_MANIFEST);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    // Corrupt the busybox layer behind the registry's back: it serves the bytes as stored.
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let path = registry.blob_data_path(&layer);
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();

    let daemon = Daemon::start();
    let reference = format!("{}/bad:1", registry.host());
    let out = daemon.berth(&["pull", &reference]).failure();
    assert!(
        out.stderr.contains(&format!(
            "filesystem layer verification failed for digest {layer}"
        )),
        "{}",
        out.stderr
    );
    let r = daemon.api().get("/images/json");
    assert_eq!(r.json(), serde_json::json!([]));
    assert_no_leftovers(&daemon);
    let blobs = std::fs::read_dir(daemon.data_root().join("blobs/sha256"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        .unwrap_or_default();
    assert!(
        !blobs.iter().any(|b| layer.ends_with(&*b.to_string_lossy())),
        "the corrupt blob was stored"
    );
    assert_eq!(daemon.api().get("/_ping").status, 200);
}

/// `n` bytes that do not compress (a simple xorshift stream).
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn several_mb_layers_pull_in_parallel_and_run() {
    let Some(registry) = Registry::start("several_mb_layers_pull_in_parallel_and_run") else {
        return;
    };
    let mut spec = ImageSpec::busybox(None);
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| noise(6 << 20, i + 1)).collect();
    for (i, blob) in blobs.iter().enumerate() {
        let path = format!("big{i}");
        spec.layers.push(layer_tar(&[Entry::File {
            path: &path,
            data: blob,
            mode: 0o644,
        }]));
    }
    registry.push_image("big", Some("1"), &spec, OCI_MANIFEST);
    let daemon = Daemon::start();
    let reference = format!("{}/big:1", registry.host());
    let r = daemon.api().post(
        &format!("/images/create?fromImage={}/big&tag=1", registry.host()),
        None,
    );
    assert_eq!(r.status, 200);
    let st = statuses(&r.json_lines());
    // Three at a time (max-concurrent-downloads): the other two wait.
    assert_eq!(
        st.iter().filter(|s| s.ends_with(": Waiting")).count(),
        2,
        "{st:?}"
    );
    assert_eq!(
        st.iter().filter(|s| s.ends_with(": Pull complete")).count(),
        5,
        "{st:?}"
    );
    assert_eq!(image_id(&daemon, &reference), spec.id());
    let out = daemon
        .berth(&[
            "run",
            "--rm",
            &reference,
            "sh",
            "-c",
            "wc -c /big0 /big3 | head -2",
        ])
        .success();
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["6291456", "/big0", "6291456", "/big3"]
    );
}

#[test]
fn run_pulls_a_missing_image() {
    let Some(registry) = Registry::start("run_pulls_a_missing_image") else {
        return;
    };
    let spec = ImageSpec::busybox(None).file_layer(&[("hello", b"from the registry\n")]);
    registry.push_image("app", Some("latest"), &spec, DOCKER_MANIFEST);
    let daemon = Daemon::start();
    let image = format!("{}/app", registry.host());

    let out = daemon
        .berth(&["run", "--rm", "--pull", "never", &image, "true"])
        .failure();
    assert!(out.stderr.contains("No such image"), "{}", out.stderr);

    let out = daemon
        .berth(&["run", "--rm", &image, "cat", "/hello"])
        .success();
    assert_eq!(out.stdout, "from the registry\n");
    assert!(
        out.stderr
            .starts_with(&format!("Unable to find image '{image}:latest' locally\n")),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("Pull complete"), "{}", out.stderr);

    // Present now: no pull unless asked.
    let out = daemon.berth(&["run", "--rm", &image, "true"]).success();
    assert_eq!(out.stderr, "");
    let out = daemon
        .berth(&["create", "--pull", "always", &image])
        .success();
    assert!(out.stderr.contains("Image is up to date"), "{}", out.stderr);
}

#[test]
fn docker_cli_pulls_by_tag_and_digest() {
    let Some(registry) = Registry::start("docker_cli_pulls_by_tag_and_digest") else {
        return;
    };
    if docker_cli().is_none() {
        eprintln!("skipped docker_cli_pulls_by_tag_and_digest: no docker CLI on this machine");
        return;
    }
    let spec = ImageSpec::busybox(None);
    let (digest, _) = registry.push_image("cli/app", Some("2"), &spec, OCI_MANIFEST);
    let daemon = Daemon::start();
    let reference = format!("{}/cli/app:2", registry.host());
    let out = daemon.docker(&["pull", &reference]).unwrap().success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    assert!(
        out.stdout.contains(&format!("Digest: {digest}")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.trim_end().ends_with(&reference),
        "{}",
        out.stdout
    );
    let by_digest = format!("{}/cli/app@{digest}", registry.host());
    let out = daemon.docker(&["pull", &by_digest]).unwrap().success();
    assert!(out.stdout.contains("Image is up to date"), "{}", out.stdout);
    let out = daemon
        .docker(&[
            "image",
            "inspect",
            "--format",
            "{{.Id}} {{json .RepoDigests}}",
            &reference,
        ])
        .unwrap()
        .success();
    assert_eq!(
        out.stdout.trim(),
        format!("{} [\"{by_digest}\"]", spec.id())
    );
    let out = daemon
        .docker(&["pull", &format!("{}/cli/app:missing", registry.host())])
        .unwrap()
        .failure();
    assert!(out.stderr.contains("manifest unknown"), "{}", out.stderr);
}

#[test]
fn pull_an_oci_image_skopeo_pushed() {
    let Some(registry) = Registry::start("pull_an_oci_image_skopeo_pushed") else {
        return;
    };
    if !std::path::Path::new("/usr/bin/skopeo").exists() {
        eprintln!("skipped pull_an_oci_image_skopeo_pushed: no skopeo (apt package skopeo)");
        return;
    }
    let mut spec = ImageSpec::busybox(Some("sk:1")).file_layer(&[("sk", b"copied")]);
    spec.gzip_layers = true;
    let archive = registry.dir().join("oci.tar");
    std::fs::write(&archive, spec.oci_archive()).unwrap();
    let out = std::process::Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://{}/sk:1", registry.host()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let daemon = Daemon::start();
    let reference = format!("{}/sk:1", registry.host());
    daemon.berth(&["pull", &reference]).success();
    assert_eq!(image_id(&daemon, &reference), spec.id());
    let out = daemon
        .berth(&["run", "--rm", &reference, "cat", "/sk"])
        .success();
    assert_eq!(out.stdout, "copied");
}

#[test]
fn max_concurrent_downloads_limits_the_parallel_layers() {
    let Some(registry) = Registry::start("max_concurrent_downloads_limits_the_parallel_layers")
    else {
        return;
    };
    let spec = ImageSpec::busybox(None)
        .file_layer(&[("a", b"1")])
        .file_layer(&[("b", b"2")]);
    registry.push_image("layers", Some("3"), &spec, OCI_MANIFEST);
    let daemon = Daemon::start_with(&["--max-concurrent-downloads", "1"]);
    let r = daemon.api().post(
        &format!("/images/create?fromImage={}/layers&tag=3", registry.host()),
        None,
    );
    assert_eq!(r.status, 200);
    let st = statuses(&r.json_lines());
    assert_eq!(
        st.iter().filter(|s| s.ends_with(": Waiting")).count(),
        2,
        "{st:?}"
    );
    // One at a time: each layer completes before the next starts downloading.
    let events: Vec<&str> = st
        .iter()
        .filter_map(|s| s.split_once(": ").map(|(_, status)| status))
        .filter(|s| *s == "Pull complete" || *s == "Verifying Checksum")
        .collect();
    assert_eq!(
        events,
        [
            "Verifying Checksum",
            "Pull complete",
            "Verifying Checksum",
            "Pull complete",
            "Verifying Checksum",
            "Pull complete"
        ]
    );
    assert_eq!(
        image_id(&daemon, &format!("{}/layers:3", registry.host())),
        spec.id()
    );
}

#[test]
fn layers_plain_gzip_and_zstd_pull() {
    let Some(registry) = Registry::start("layers_plain_gzip_and_zstd_pull") else {
        return;
    };
    let spec = ImageSpec::busybox(None)
        .file_layer(&[("plain", b"p")])
        .file_layer(&[("zstd", b"z")]);
    let config = spec.config_json();
    let config_digest = registry.push_blob("comp", &config);
    let blobs = [
        (
            berth_e2e::fixtures::gzip(&spec.layers[0]),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            spec.layers[1].clone(),
            "application/vnd.oci.image.layer.v1.tar",
        ),
        (
            zstd::encode_all(&spec.layers[2][..], 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    ];
    let layers: Vec<serde_json::Value> = blobs
        .iter()
        .map(|(blob, media_type)| {
            serde_json::json!({
                "mediaType": media_type,
                "digest": registry.push_blob("comp", blob),
                "size": blob.len(),
            })
        })
        .collect();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers,
    }))
    .unwrap();
    registry.push_manifest("comp", "1", OCI_MANIFEST, &manifest);
    let daemon = Daemon::start();
    let reference = format!("{}/comp:1", registry.host());
    let out = daemon
        .berth(&["run", "--rm", &reference, "cat", "/plain", "/zstd"])
        .success();
    assert_eq!(out.stdout, "pz");
    assert_eq!(image_id(&daemon, &reference), spec.id());
    if docker_cli().is_some() {
        // The docker CLI pulls on create's 404 too.
        let other = Daemon::start();
        let out = other
            .docker(&["run", "--rm", &reference, "cat", "/zstd"])
            .unwrap()
            .success();
        assert_eq!(out.stdout, "z");
        assert!(
            out.stderr
                .contains(&format!("Unable to find image '{reference}' locally")),
            "{}",
            out.stderr
        );
    }
}

/// A registry of one schema 1 manifest (distribution no longer accepts them): answers every
/// request on its own connection; stops with the test process.
fn schema1_registry() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let manifest = br#"{"schemaVersion":1,"name":"old","tag":"1","architecture":"amd64","fsLayers":[],"history":[]}"#;
    let digest = format!("sha256:{}", berth_e2e::fixtures::sha256_hex(manifest));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if berth_e2e::registry::opens_with_tls(&stream) {
                continue;
            }
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let path = String::from_utf8_lossy(&head)
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let (content_type, body): (&str, &[u8]) = if path.contains("/manifests/") {
                (
                    "application/vnd.docker.distribution.manifest.v1+prettyjws",
                    manifest,
                )
            } else {
                ("application/json", b"{}")
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nDocker-Content-Digest: {digest}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    host
}

#[test]
fn schema1_is_refused_with_dockers_message() {
    let host = schema1_registry();
    let daemon = Daemon::start();
    let r = daemon
        .api()
        .post(&format!("/images/create?fromImage={host}/old&tag=1"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.json_lines();
    assert_eq!(statuses(&lines)[0], "1: Pulling from old");
    assert_eq!(
        lines.last().unwrap()["error"],
        format!(
            "Docker Image Format v1 and Docker Image manifest version 2, schema 1 support has been removed. Suggest the author of {host}/old:1 to upgrade the image to the OCI Format or Docker Image manifest v2, schema 2. More information at https://docs.docker.com/go/deprecated-image-specs/"
        )
    );
    let out = daemon.berth(&["pull", &format!("{host}/old:1")]).failure();
    assert!(
        out.stderr.contains("schema 1 support has been removed"),
        "{}",
        out.stderr
    );
    assert_eq!(
        daemon.api().get("/images/json").json(),
        serde_json::json!([])
    );
}

#[test]
fn a_dropped_connection_resumes_with_a_range_request() {
    let Some(registry) = Registry::start("a_dropped_connection_resumes_with_a_range_request")
    else {
        return;
    };
    let blob = noise(8 << 20, 42);
    let mut spec = ImageSpec::busybox(None);
    spec.layers.push(layer_tar(&[Entry::File {
        path: "big",
        data: &blob,
        mode: 0o644,
    }]));
    let (_, manifest) = registry.push_image("resume", Some("1"), &spec, OCI_MANIFEST);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let big = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let big_size = manifest["layers"][1]["size"].as_u64().unwrap() as usize;
    let port: u16 = registry.host().rsplit(':').next().unwrap().parse().unwrap();
    let proxy = FaultProxy::start(port, &big);
    let daemon = Daemon::start();
    let r = daemon.api().post(
        &format!("/images/create?fromImage={}/resume&tag=1", proxy.host()),
        None,
    );
    assert_eq!(r.status, 200);
    let st = statuses(&r.json_lines());
    let id = &big[7..19];
    assert!(
        st.contains(&format!("{id}: Retrying in 1 second")),
        "{st:?}"
    );
    assert!(st.contains(&format!("{id}: Pull complete")), "{st:?}");
    assert_eq!(
        image_id(&daemon, &format!("{}/resume:1", proxy.host())),
        spec.id()
    );
    let requests = proxy.requests.lock().unwrap().clone();
    let for_big: Vec<_> = requests.iter().filter(|r| r.path.ends_with(&big)).collect();
    assert_eq!(for_big.len(), 2, "{requests:?}");
    let range = for_big[1]
        .range
        .as_deref()
        .expect("the retry asks for a range");
    let from: usize = range
        .trim_start_matches("bytes=")
        .trim_end_matches('-')
        .parse()
        .unwrap();
    assert!(from > 0 && from <= big_size / 2, "{range}");
    // The bytes already received are not fetched again.
    let total: usize = for_big.iter().map(|r| r.bytes_sent).sum();
    assert!(total * 10 < big_size * 16, "{total} of {big_size}");
    assert_no_leftovers(&daemon);
}

#[test]
fn insecure_registries_are_reported_in_info() {
    let daemon = Daemon::start_with(&["--insecure-registry", "reg.lan:5000"]);
    let info = daemon.api().get("/info").json();
    assert_eq!(
        info["RegistryConfig"]["IndexConfigs"]["reg.lan:5000"],
        serde_json::json!({"Name": "reg.lan:5000", "Mirrors": [], "Secure": false, "Official": false})
    );
    if docker_cli().is_some() {
        let out = daemon.docker(&["info"]).unwrap().success();
        let section = out
            .stdout
            .split("Insecure Registries:")
            .nth(1)
            .unwrap_or_default();
        assert!(section.contains("reg.lan:5000"), "{}", out.stdout);
        assert!(section.contains("127.0.0.0/8"), "{}", out.stdout);
    }
}

#[test]
fn a_client_that_goes_away_does_not_leave_a_half_pull() {
    use std::io::{Read, Write};
    let Some(registry) = Registry::start("a_client_that_goes_away_does_not_leave_a_half_pull")
    else {
        return;
    };
    let mut spec = ImageSpec::busybox(None);
    let blobs: Vec<Vec<u8>> = (0..3).map(|i| noise(4 << 20, 100 + i)).collect();
    for (i, blob) in blobs.iter().enumerate() {
        let path = format!("f{i}");
        spec.layers.push(layer_tar(&[Entry::File {
            path: &path,
            data: blob,
            mode: 0o644,
        }]));
    }
    registry.push_image("gone", Some("1"), &spec, OCI_MANIFEST);
    let daemon = Daemon::start();
    let mut socket = std::os::unix::net::UnixStream::connect(daemon.socket()).unwrap();
    write!(
        socket,
        "POST /images/create?fromImage={}/gone&tag=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        registry.host()
    )
    .unwrap();
    let mut first = [0u8; 64];
    let n = socket.read(&mut first).unwrap();
    assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
    drop(socket);
    // The pull goes on to the end without its client, and leaves nothing half-done.
    let reference = format!("{}/gone:1", registry.host());
    berth_e2e::containers::until("the pull to finish", || {
        daemon
            .api()
            .get(&format!("/images/{reference}/json"))
            .status
            == 200
    });
    assert_eq!(image_id(&daemon, &reference), spec.id());
    assert_no_leftovers(&daemon);
    assert_eq!(daemon.api().get("/_ping").status, 200);
}

#[test]
fn pull_with_basic_auth_credentials() {
    use berth_e2e::registry::{BASIC_PASSWORD, BASIC_USER, base64_encode};
    let Some(registry) = Registry::start_with_basic_auth("pull_with_basic_auth_credentials") else {
        return;
    };
    let spec = ImageSpec::busybox(None).file_layer(&[("secret", b"private")]);
    registry.push_image("private/app", Some("1"), &spec, OCI_MANIFEST);
    let host = registry.host();
    let daemon = Daemon::start();
    let path = format!("/images/create?fromImage={host}/private/app&tag=1");
    let manifest_url = format!("http://{host}/v2/private/app/manifests/1");

    let r = daemon.api().post(&path, None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.message(),
        format!("Head \"{manifest_url}\": no basic auth credentials")
    );
    let auth = |password: &str| {
        base64_encode(
            serde_json::json!({"username": BASIC_USER, "password": password, "serveraddress": host})
                .to_string()
                .as_bytes(),
        )
    };
    let wrong = auth("wrong");
    let r = daemon
        .api()
        .request("POST", &path, &[("X-Registry-Auth", &wrong)], None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.message(),
        format!("Head \"{manifest_url}\": unauthorized: authentication required")
    );
    let right = auth(BASIC_PASSWORD);
    let r = daemon
        .api()
        .request("POST", &path, &[("X-Registry-Auth", &right)], None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Pull complete"), "{}", r.text());
    assert_eq!(
        image_id(&daemon, &format!("{host}/private/app:1")),
        spec.id()
    );

    // POST /auth checks credentials with the registry (docker login).
    let login = |password: &str| {
        let body = serde_json::json!({"username": BASIC_USER, "password": password, "serveraddress": host});
        daemon
            .api()
            .post("/auth", Some(body.to_string().as_bytes()))
    };
    let r = login("wrong");
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        r.message(),
        format!("login attempt to http://{host}/v2/ failed with status: 401 Unauthorized")
    );
    let r = login(BASIC_PASSWORD);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["Status"], "Login Succeeded");

    if docker_cli().is_some() {
        // docker login (through /auth) stores the credentials in its config.json, and
        // docker pull sends them.
        let other = Daemon::start();
        let out = other
            .docker_with_stdin(
                &["login", &host, "-u", BASIC_USER, "--password-stdin"],
                Some(b"wrong\n"),
            )
            .unwrap()
            .failure();
        assert!(out.stderr.contains("401 Unauthorized"), "{}", out.stderr);
        let out = other
            .docker_with_stdin(
                &["login", &host, "-u", BASIC_USER, "--password-stdin"],
                Some(format!("{BASIC_PASSWORD}\n").as_bytes()),
            )
            .unwrap()
            .success();
        assert!(out.stdout.contains("Login Succeeded"), "{}", out.stdout);
        let stored =
            std::fs::read_to_string(other.dir().join("docker-config/config.json")).unwrap();
        let entry = base64_encode(format!("{BASIC_USER}:{BASIC_PASSWORD}").as_bytes());
        assert!(stored.contains(&entry), "{stored}");
        let out = other
            .docker(&["pull", &format!("{host}/private/app:1")])
            .unwrap()
            .success();
        assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    }
}

#[test]
fn pull_all_tags_of_a_repository() {
    let Some(registry) = Registry::start("pull_all_tags_of_a_repository") else {
        return;
    };
    let host = registry.host();
    let repo = format!("{host}/team/multi");
    let one = ImageSpec::busybox(None).file_layer(&[("v", b"1")]);
    let two = ImageSpec::busybox(None).file_layer(&[("v", b"2")]);
    registry.push_image("team/multi", Some("1"), &one, OCI_MANIFEST);
    registry.push_image("team/multi", Some("2"), &two, OCI_MANIFEST);
    let daemon = Daemon::start();

    let out = daemon
        .berth(&["pull", "-a", &format!("{repo}:1")])
        .failure();
    assert_eq!(out.stderr, "tag can't be used with --all-tags/-a\n");
    let out = daemon.berth(&["pull", "--all-tags", &repo]).success();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines.contains(&"1: Pulling from team/multi"),
        "{}",
        out.stdout
    );
    assert!(
        lines.contains(&"2: Pulling from team/multi"),
        "{}",
        out.stdout
    );
    assert_eq!(
        lines[lines.len() - 2..],
        [
            format!("Status: Downloaded newer image for {repo}"),
            repo.clone()
        ],
        "{}",
        out.stdout
    );
    assert_eq!(image_id(&daemon, &format!("{repo}:1")), one.id());
    assert_eq!(image_id(&daemon, &format!("{repo}:2")), two.id());

    // The raw API: a name without a tag is every tag (dockerd's rule).
    let r = daemon
        .api()
        .post(&format!("/images/create?fromImage={repo}"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let st = statuses(&r.json_lines());
    assert_eq!(
        st.last().unwrap(),
        &format!("Status: Image is up to date for {repo}")
    );
    // A plain pull still means `latest`, and says so.
    let out = daemon.berth(&["pull", &repo]).failure();
    assert!(
        out.stdout.starts_with("Using default tag: latest\n"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("manifest unknown"), "{}", out.stderr);

    if docker_cli().is_some() {
        daemon
            .berth(&["rmi", &format!("{repo}:1"), &format!("{repo}:2")])
            .success();
        let out = daemon.docker(&["pull", "-a", &repo]).unwrap().success();
        assert!(
            out.stdout
                .contains(&format!("Downloaded newer image for {repo}")),
            "{}",
            out.stdout
        );
        assert_eq!(image_id(&daemon, &format!("{repo}:2")), two.id());
    }
}
