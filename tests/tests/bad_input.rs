//! Bad input and faults: each gets Docker's error, changes nothing, and the daemon keeps serving.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use berth_e2e::fixtures::{Entry, ImageSpec, layer_tar, pack};
use berth_e2e::{ApiResponse, Daemon};

/// A load either fails outright or reports an error in its JSON stream, as Docker may do both.
fn load_failed(response: &ApiResponse) -> bool {
    response.status >= 400
        || response
            .json_lines()
            .iter()
            .any(|l| l.get("error").is_some())
}

fn assert_nothing_loaded(daemon: &Daemon) {
    assert_eq!(
        daemon.api().get("/images/json").json(),
        serde_json::json!([])
    );
    assert_eq!(
        daemon.api().get("/_ping").status,
        200,
        "daemon must keep serving"
    );
}

/// Files in the data root's content and layer stores (ignoring empty directories).
fn stored_files(daemon: &Daemon) -> Vec<String> {
    let mut found = Vec::new();
    for dir in ["blobs", "layers"] {
        let root = daemon.data_root().join(dir);
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(path);
                } else {
                    found.push(path.display().to_string());
                }
            }
        }
    }
    found
}

/// A raw tar entry whose name the `tar` crate would refuse to write (`..`, absolute paths).
fn raw_entry(builder: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut header = tar::Header::new_old();
    header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_mtime(1_700_000_000);
    header.set_cksum();
    builder.append(&header, data).unwrap();
}

/// A docker-archive whose only layer is `layer` (diff ids computed from it, so only the layer's
/// content is at fault).
fn archive_with_layer(tag: &str, layer: Vec<u8>) -> Vec<u8> {
    let mut spec = ImageSpec::busybox(Some(tag));
    spec.layers = vec![layer];
    spec.docker_archive()
}

#[test]
fn truncated_and_corrupt_archives_are_refused() {
    let daemon = Daemon::start();
    let archive = ImageSpec::busybox(Some("busybox:latest")).docker_archive();
    let truncated = daemon
        .api()
        .post("/images/load?quiet=1", Some(&archive[..archive.len() / 2]));
    assert!(load_failed(&truncated), "{}", truncated.text());
    assert_nothing_loaded(&daemon);

    let mut garbage = vec![0u8; 64 * 1024];
    for (i, b) in garbage.iter_mut().enumerate() {
        *b = (i * 7 + 13) as u8;
    }
    let corrupt = daemon.api().post("/images/load?quiet=1", Some(&garbage));
    assert!(load_failed(&corrupt), "{}", corrupt.text());
    assert_nothing_loaded(&daemon);

    let out = daemon
        .berth_with_stdin(&["load"], Some(&archive[..archive.len() - 4096]))
        .failure();
    assert!(!out.stderr.is_empty());
    assert_nothing_loaded(&daemon);

    // After a restart, recovery has removed whatever the failed loads wrote.
    let mut daemon = daemon;
    daemon.restart();
    assert_eq!(stored_files(&daemon), Vec::<String>::new());
}

#[test]
fn a_layer_that_does_not_match_its_digest_is_refused() {
    let daemon = Daemon::start();
    // docker-archive: the config names diff ids of other content.
    let honest = ImageSpec::busybox(Some("liar:1")).file_layer(&[("a", b"a")]);
    let config = honest.config_json();
    let other_layer = layer_tar(&[Entry::File {
        path: "a",
        data: b"not a",
        mode: 0o644,
    }]);
    let base_layer = honest.layers[0].clone();
    let manifest = serde_json::json!([{
        "Config": "config.json",
        "RepoTags": ["liar:1"],
        "Layers": ["0/layer.tar", "1/layer.tar"],
    }]);
    let archive = pack(&[
        ("config.json".into(), config),
        ("0/layer.tar".into(), base_layer),
        ("1/layer.tar".into(), other_layer.clone()),
        (
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
    ]);
    let response = daemon.api().post("/images/load?quiet=1", Some(&archive));
    assert!(load_failed(&response), "{}", response.text());
    assert!(
        response.text().contains("sha256:"),
        "the error names the layer: {}",
        response.text()
    );
    assert_nothing_loaded(&daemon);

    // OCI layout: a blob whose bytes differ from the digest that names it.
    let spec = ImageSpec::busybox(Some("ocil:1"));
    let mut oci = spec.oci_archive();
    let good_layer = &spec.layers[0];
    let pos = oci
        .windows(good_layer.len().min(4096))
        .position(|w| w == &good_layer[..good_layer.len().min(4096)]);
    let pos = pos.expect("layer bytes inside the archive");
    oci[pos + 4096] ^= 0xff; // inside busybox's data, so the tar framing stays valid
    let response = daemon.api().post("/images/load?quiet=1", Some(&oci));
    assert!(load_failed(&response), "{}", response.text());
    assert_nothing_loaded(&daemon);
}

#[test]
fn layers_cannot_write_outside_their_root() {
    let daemon = Daemon::start();
    let marker = format!("berth-escape-{}", std::process::id());
    let outside = daemon.dir().join(&marker);

    // `..` that climbs out of the layer.
    let mut builder = tar::Builder::new(Vec::new());
    raw_entry(&mut builder, &format!("../../../../{marker}"), b"evil");
    let dotdot = builder.into_inner().unwrap();
    // An absolute path.
    let mut builder = tar::Builder::new(Vec::new());
    raw_entry(&mut builder, &format!("{}", outside.display()), b"evil");
    let absolute = builder.into_inner().unwrap();
    // A symlink to the outside, then a file written through it.
    let dir = daemon.dir().display().to_string();
    let mut builder = tar::Builder::new(Vec::new());
    let mut link = tar::Header::new_gnu();
    link.set_entry_type(tar::EntryType::Symlink);
    link.set_size(0);
    link.set_mode(0o777);
    builder.append_link(&mut link, "escape", &dir).unwrap();
    raw_entry(&mut builder, &format!("escape/{marker}"), b"evil");
    let through_symlink = builder.into_inner().unwrap();
    // A hard link to a file outside.
    let mut builder = tar::Builder::new(Vec::new());
    let mut hard = tar::Header::new_gnu();
    hard.set_entry_type(tar::EntryType::Link);
    hard.set_size(0);
    hard.set_mode(0o644);
    builder
        .append_link(&mut hard, "passwd-copy", "../../../../../../etc/passwd")
        .unwrap();
    let hardlink = builder.into_inner().unwrap();

    for (name, layer) in [
        ("dotdot", dotdot),
        ("absolute", absolute),
        ("symlink", through_symlink),
        ("hardlink", hardlink),
    ] {
        let response = daemon.api().post(
            "/images/load?quiet=1",
            Some(&archive_with_layer("evil:1", layer)),
        );
        assert!(load_failed(&response), "{name}: {}", response.text());
        assert!(
            !outside.exists(),
            "{name}: a file was written outside the layer"
        );
        assert!(
            !std::path::Path::new("/").join(&marker).exists(),
            "{name}: wrote to /"
        );
        assert_nothing_loaded(&daemon);
    }
}

#[test]
fn unknown_images_and_bad_references_get_dockers_errors() {
    let daemon = Daemon::start();
    let api = daemon.api();
    let missing = api.get("/images/nope/json");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.message(), "No such image: nope");
    let missing = api.delete("/images/nope:2");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.message(), "No such image: nope:2");
    let out = daemon.berth(&["rmi", "nope"]).failure();
    assert!(out.stderr.contains("No such image: nope"), "{}", out.stderr);
    let out = daemon.berth(&["image", "inspect", "nope"]).failure();
    assert!(out.stderr.contains("nope"), "{}", out.stderr);
    let out = daemon.berth(&["history", "nope"]).failure();
    assert!(out.stderr.contains("No such image: nope"), "{}", out.stderr);

    daemon
        .berth_with_stdin(
            &["load"],
            Some(&ImageSpec::busybox(Some("busybox:latest")).docker_archive()),
        )
        .success();
    let bad = api.post("/images/busybox/tag?repo=Bad..Name&tag=x", None);
    assert_eq!(bad.status, 400);
    assert!(
        bad.message().starts_with("invalid reference format"),
        "{}",
        bad.text()
    );
    let out = daemon.berth(&["tag", "busybox", "UPPER/case:1"]).failure();
    assert!(
        out.stderr.contains("invalid reference format"),
        "{}",
        out.stderr
    );
    let out = daemon.berth(&["tag", "busybox", "a:b:c"]).failure();
    assert!(
        out.stderr.contains("invalid reference format"),
        "{}",
        out.stderr
    );
    // Nothing changed.
    let tags = api.get("/images/busybox/json").json()["RepoTags"].clone();
    assert_eq!(tags, serde_json::json!(["busybox:latest"]));
}

#[test]
fn a_load_cut_off_by_a_killed_client_leaves_nothing() {
    let daemon = Daemon::start();
    let archive = ImageSpec::busybox(Some("cut:1")).docker_archive();
    let mut child = std::process::Command::new(berth_e2e::daemon::binary("berth"))
        .args(["-H", &daemon.host(), "load"])
        .env("BERTH_CONFIG", daemon.dir().join("cfg"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&archive[..archive.len() / 2]).unwrap();
    stdin.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    // The daemon notices the cut connection; give it a moment, then nothing may be visible.
    std::thread::sleep(Duration::from_millis(500));
    assert_nothing_loaded(&daemon);
    let mut daemon = daemon;
    daemon.restart();
    assert_nothing_loaded(&daemon);
    assert_eq!(stored_files(&daemon), Vec::<String>::new());
}

#[test]
fn a_daemon_killed_mid_load_recovers_on_the_next_start() {
    let mut daemon = Daemon::start();
    let archive = ImageSpec::busybox(Some("crash:1"))
        .file_layer(&[("big", &vec![7u8; 4 << 20])])
        .docker_archive();
    let mut stream = UnixStream::connect(daemon.socket()).unwrap();
    let head = format!(
        "POST /v1.51/images/load?quiet=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-tar\r\nContent-Length: {}\r\n\r\n",
        archive.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(&archive[..archive.len() * 3 / 4]).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    daemon.kill_hard();
    drop(stream);
    daemon.start_again();
    assert_nothing_loaded(&daemon);
    assert_eq!(
        stored_files(&daemon),
        Vec::<String>::new(),
        "recovery must remove partial blobs and layers"
    );
    // The same load now succeeds in full.
    let ok = daemon.api().post("/images/load?quiet=1", Some(&archive));
    assert!(!load_failed(&ok), "{}", ok.text());
    assert_eq!(daemon.api().get("/images/crash:1/json").status, 200);
}
