//! Pulls against a misbehaving network: the daemon killed mid-pull resumes where it stopped,
//! a stalled registry is retried and then refused clearly, concurrent pulls share downloads.
//! A real registry (Debian's docker-registry on 127.0.0.1) sits behind the tests' own proxy
//! (berth_e2e::fault_proxy), which stages the faults and counts what it serves.

use std::path::{Path, PathBuf};

use berth_e2e::containers::until;
use berth_e2e::fault_proxy::{Plan, Proxy};
use berth_e2e::fixtures::{Entry, ImageSpec, layer_tar};
use berth_e2e::registry::{OCI_MANIFEST, Registry};
use berth_e2e::{ApiResponse, Daemon};

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

/// busybox plus one layer holding `blob` as `/name`.
fn with_big_layer(name: &str, blob: &[u8]) -> ImageSpec {
    let mut spec = ImageSpec::busybox(None);
    spec.layers.push(layer_tar(&[Entry::File {
        path: name,
        data: blob,
        mode: 0o644,
    }]));
    spec
}

/// Pushes `spec` as `repo:tag`; returns the digests and sizes of its layers and its config.
fn push(registry: &Registry, repo: &str, spec: &ImageSpec) -> (Vec<(String, usize)>, String) {
    let (_, manifest) = registry.push_image(repo, Some("1"), spec, OCI_MANIFEST);
    let manifest: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    let layers = manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["digest"].as_str().unwrap().to_string(),
                l["size"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    (
        layers,
        manifest["config"]["digest"].as_str().unwrap().to_string(),
    )
}

fn port_of(host: &str) -> u16 {
    host.rsplit(':').next().unwrap().parse().unwrap()
}

fn image_id(daemon: &Daemon, name: &str) -> Option<String> {
    let r = daemon.api().get(&format!("/images/{name}/json"));
    (r.status == 200).then(|| r.json()["Id"].as_str().unwrap().to_string())
}

fn statuses(r: &ApiResponse) -> Vec<String> {
    r.json_lines()
        .iter()
        .map(|l| match (l["id"].as_str(), l["error"].as_str()) {
            (_, Some(e)) => format!("error: {e}"),
            (Some(id), _) => format!("{id}: {}", l["status"].as_str().unwrap_or_default()),
            (None, _) => l["status"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

fn partial_dir(daemon: &Daemon) -> PathBuf {
    daemon.data_root().join("downloads")
}

fn partial_size(daemon: &Daemon, digest: &str) -> u64 {
    std::fs::metadata(partial_dir(daemon).join(digest.trim_start_matches("sha256:")))
        .map(|m| m.len())
        .unwrap_or(0)
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing half-stored: no blob being ingested, no layer being unpacked.
fn assert_nothing_half_stored(daemon: &Daemon) {
    let root = daemon.data_root();
    let ingest = entries(&root.join("blobs/.ingest"));
    assert!(ingest.is_empty(), "ingest leftovers: {ingest:?}");
    let tmp: Vec<_> = entries(&root.join("layers"))
        .into_iter()
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(tmp.is_empty(), "unpack leftovers: {tmp:?}");
}

/// Starts a pull on a raw connection and leaves it running (the daemon is killed under it).
fn start_pull(daemon: &Daemon, image: &str) -> std::os::unix::net::UnixStream {
    use std::io::Write;
    let mut socket = std::os::unix::net::UnixStream::connect(daemon.socket()).unwrap();
    write!(
        socket,
        "POST /images/create?fromImage={image}&tag=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    socket
}

#[test]
fn a_pull_resumes_after_the_daemon_is_killed_and_stale_downloads_go() {
    let Some(registry) =
        Registry::start("a_pull_resumes_after_the_daemon_is_killed_and_stale_downloads_go")
    else {
        return;
    };
    let spec = with_big_layer("big", &noise(16 << 20, 7));
    let (layers, _) = push(&registry, "resume", &spec);
    let (big, big_size) = layers[1].clone();
    // The registry stalls half-way through the big layer: the daemon is killed meanwhile.
    let proxy = Proxy::start(
        port_of(&registry.host()),
        Plan {
            stall: Some((big.clone(), big_size / 2)),
            ..Plan::default()
        },
    );
    let mut daemon = Daemon::start();
    let _client = start_pull(&daemon, &format!("{}/resume", proxy.host()));
    until("half of the layer saved", || {
        partial_size(&daemon, &big) as usize >= big_size * 2 / 5
    });
    daemon.kill_hard();
    let first = proxy.blob_bytes(&big);
    proxy.set_plan(Plan::default());
    proxy.clear_log();

    daemon.start_again();
    assert!(
        partial_size(&daemon, &big) > 0,
        "the partial download survived the restart"
    );
    let reference = format!("{}/resume:1", proxy.host());
    let out = daemon.berth(&["pull", &reference]).success();
    assert!(out.stdout.contains("Pull complete"), "{}", out.stdout);
    assert_eq!(image_id(&daemon, &reference).as_deref(), Some(&*spec.id()));
    let gets = proxy.blob_gets(&big);
    assert_eq!(gets.len(), 1, "{gets:?}");
    let range = gets[0].range.as_deref().expect("a Range request");
    assert!(range.starts_with("bytes="), "{range}");
    let again = proxy.blob_bytes(&big);
    // Less than 60 % of the layer came again.
    assert!(
        again * 10 < big_size * 6,
        "{again} bytes of {big_size} downloaded again (first pull: {first})"
    );
    assert!(entries(&partial_dir(&daemon)).is_empty());
    assert_nothing_half_stored(&daemon);

    // A partial download abandoned long ago is removed when the daemon starts; a recent one
    // stays for a resume.
    let dir = partial_dir(&daemon);
    let (old, recent) = ("a".repeat(64), "b".repeat(64));
    std::fs::write(dir.join(&old), b"abandoned").unwrap();
    std::fs::write(dir.join(&recent), b"recent").unwrap();
    let touched = std::process::Command::new("touch")
        .args(["-d", "2 days ago"])
        .arg(dir.join(&old))
        .status()
        .unwrap();
    assert!(touched.success());
    daemon.restart();
    assert_eq!(entries(&dir), vec![recent]);
}

#[test]
fn a_stalled_registry_is_retried_then_refused_clearly() {
    let Some(registry) = Registry::start("a_stalled_registry_is_retried_then_refused_clearly")
    else {
        return;
    };
    let spec = with_big_layer("big", &noise(4 << 20, 11));
    let (layers, _) = push(&registry, "stall", &spec);
    let (big, big_size) = layers[1].clone();
    let proxy = Proxy::start(
        port_of(&registry.host()),
        Plan {
            stall: Some((big.clone(), big_size / 4)),
            ..Plan::default()
        },
    );
    // Stalled = under 1 KiB/s for 1 s; two attempts per blob.
    let daemon =
        Daemon::start_with(&["--max-download-attempts", "2", "--download-stall-time", "1"]);
    let image = format!("{}/stall", proxy.host());
    let r = daemon
        .api()
        .post(&format!("/images/create?fromImage={image}&tag=1"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let st = statuses(&r);
    let id = &big[7..19];
    assert!(
        st.contains(&format!("{id}: Retrying in 1 second")),
        "{st:?}"
    );
    let error = st.last().unwrap();
    assert!(
        error.starts_with(&format!("error: failed to pull layer {big}:"))
            && error.contains("download stalled: less than 1024 bytes/s for 1 s")
            && error.contains("gave up after 2 attempts"),
        "{st:?}"
    );
    // The retry resumed from where the stall began.
    let gets = proxy.blob_gets(&big);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert!(gets[1].range.is_some(), "{gets:?}");
    // Nothing of the image is stored; what was downloaded waits for a resume.
    assert_eq!(image_id(&daemon, &format!("{image}:1")), None);
    assert_nothing_half_stored(&daemon);
    assert!(partial_size(&daemon, &big) > 0);
    assert_eq!(daemon.api().get("/_ping").status, 200);

    // Once the registry recovers, the next pull finishes the download.
    proxy.set_plan(Plan::default());
    proxy.clear_log();
    daemon.berth(&["pull", &format!("{image}:1")]).success();
    assert_eq!(
        image_id(&daemon, &format!("{image}:1")).as_deref(),
        Some(&*spec.id())
    );
    let gets = proxy.blob_gets(&big);
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert!(gets[0].range.is_some(), "{gets:?}");
    assert!(entries(&partial_dir(&daemon)).is_empty());
}

#[test]
fn concurrent_pulls_download_each_blob_once() {
    let Some(registry) = Registry::start("concurrent_pulls_download_each_blob_once") else {
        return;
    };
    // Two images sharing busybox and an 8 MiB layer, each with a small layer of its own.
    let shared = noise(8 << 20, 21);
    let one = with_big_layer("shared", &shared).file_layer(&[("one", b"1")]);
    let two = with_big_layer("shared", &shared).file_layer(&[("two", b"2")]);
    let (one_layers, one_config) = push(&registry, "one", &one);
    let (two_layers, _) = push(&registry, "two", &two);
    assert_eq!(one_layers[1].0, two_layers[1].0, "the layer is shared");
    // A slow link, so that the pulls overlap.
    let proxy = Proxy::start(
        port_of(&registry.host()),
        Plan {
            rate: Some(8 << 20),
            ..Plan::default()
        },
    );
    let pull = |daemon: &Daemon, repo: &str| {
        let r = daemon.api().post(
            &format!("/images/create?fromImage={}/{repo}&tag=1", proxy.host()),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(!r.text().contains("\"error\""), "{repo}: {}", r.text());
    };

    // The same image, twice at once.
    let daemon = Daemon::start();
    std::thread::scope(|s| {
        s.spawn(|| pull(&daemon, "one"));
        s.spawn(|| pull(&daemon, "one"));
    });
    assert_eq!(
        image_id(&daemon, &format!("{}/one:1", proxy.host())).as_deref(),
        Some(&*one.id())
    );
    let mut blobs: Vec<&str> = one_layers.iter().map(|(d, _)| d.as_str()).collect();
    blobs.push(&one_config);
    for blob in &blobs {
        assert_eq!(
            proxy.blob_gets(blob).len(),
            1,
            "{blob}: {:?}",
            proxy.requests()
        );
    }

    // Two images sharing layers, at once, into a fresh daemon.
    proxy.clear_log();
    let fresh = Daemon::start();
    std::thread::scope(|s| {
        s.spawn(|| pull(&fresh, "one"));
        s.spawn(|| pull(&fresh, "two"));
    });
    for (name, spec) in [("one", &one), ("two", &two)] {
        assert_eq!(
            image_id(&fresh, &format!("{}/{name}:1", proxy.host())).as_deref(),
            Some(&*spec.id())
        );
    }
    for (blob, _) in &one_layers[..2] {
        assert_eq!(
            proxy.blob_gets(blob).len(),
            1,
            "{blob}: {:?}",
            proxy.requests()
        );
    }
    // Both run.
    for name in ["one", "two"] {
        let out = fresh
            .berth(&[
                "run",
                "--rm",
                &format!("{}/{name}:1", proxy.host()),
                "cat",
                &format!("/{name}"),
            ])
            .success();
        assert_eq!(out.stdout.trim(), if name == "one" { "1" } else { "2" });
    }
}

/// A registry whose manifests are `size` bytes of JSON whitespace, sent with a Content-Length
/// or chunked without one. Returns its host, the bytes it got to send and whether it is done.
fn huge_manifest_registry(
    size: usize,
    with_length: bool,
) -> (
    String,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::io::{Read, Write};
    use std::sync::atomic::Ordering;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (s, d) = (sent.clone(), done.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let (s, d) = (s.clone(), d.clone());
            std::thread::spawn(move || {
                if berth_e2e::registry::opens_with_tls(&stream) {
                    return;
                }
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).into_owned();
                if !text.contains("/manifests/") {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
                    );
                    return;
                }
                let framing = if with_length {
                    format!("Content-Length: {size}")
                } else {
                    "Transfer-Encoding: chunked".to_string()
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: {OCI_MANIFEST}\r\n{framing}\r\nConnection: close\r\n\r\n"
                );
                let chunk = vec![b' '; 64 << 10];
                let mut total = 0;
                while total < size {
                    let ok = if with_length {
                        stream.write_all(&chunk)
                    } else {
                        write!(stream, "{:x}\r\n", chunk.len())
                            .and_then(|_| stream.write_all(&chunk))
                            .and_then(|_| stream.write_all(b"\r\n"))
                    };
                    if ok.is_err() {
                        break;
                    }
                    total += chunk.len();
                    s.store(total, Ordering::SeqCst);
                }
                d.store(true, Ordering::SeqCst);
            });
        }
    });
    (host, sent, done)
}

#[test]
fn a_manifest_of_hundreds_of_mb_is_refused_unread() {
    let daemon = Daemon::start();
    for with_length in [true, false] {
        let (host, sent, done) = huge_manifest_registry(300 << 20, with_length);
        let r = daemon
            .api()
            .post(&format!("/images/create?fromImage={host}/huge&tag=1"), None);
        assert_eq!(r.status, 400, "{}", r.text());
        let size = if with_length {
            (300 << 20).to_string()
        } else {
            format!("over {}", 4 << 20)
        };
        assert_eq!(
            r.message(),
            format!(
                "manifest for {host}/huge:1 is too large: {size} bytes, more than the 4194304 bytes a manifest may have"
            )
        );
        until("the registry to be cut off", || {
            done.load(std::sync::atomic::Ordering::SeqCst)
        });
        let sent = sent.load(std::sync::atomic::Ordering::SeqCst);
        assert!(sent < 64 << 20, "{sent} bytes were read");
    }
    assert_eq!(daemon.api().get("/_ping").status, 200);
}

/// Bytes available on the filesystem of `path`.
fn available(path: &Path) -> u64 {
    let out = std::process::Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_full_disk_during_a_pull_fails_clearly_and_keeps_nothing() {
    berth_e2e::require_root!();
    let Some(registry) =
        Registry::start("a_full_disk_during_a_pull_fails_clearly_and_keeps_nothing")
    else {
        return;
    };
    let big = with_big_layer("big", &noise(40 << 20, 5));
    push(&registry, "big", &big);
    let small = ImageSpec::busybox(None).file_layer(&[("small", b"fits")]);
    push(&registry, "small", &small);
    let daemon = Daemon::start_on_tmpfs("32m");
    let before = available(&daemon.data_root());

    let image = format!("{}/big", registry.host());
    let r = daemon
        .api()
        .post(&format!("/images/create?fromImage={image}&tag=1"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    let st = statuses(&r);
    let error = st.last().unwrap().to_lowercase();
    assert!(
        error.starts_with("error: failed to pull layer")
            && error.contains("no space left on device"),
        "{st:?}"
    );
    assert_eq!(image_id(&daemon, &format!("{image}:1")), None);
    assert_nothing_half_stored(&daemon);
    assert!(entries(&partial_dir(&daemon)).is_empty());
    // The space is given back (what is kept is the base layer that verified, for a retry).
    let after = available(&daemon.data_root());
    assert!(
        after + (4 << 20) >= before,
        "{before} bytes free before, {after} after"
    );
    // The daemon is fine and pulls what fits.
    let small_ref = format!("{}/small:1", registry.host());
    daemon.berth(&["pull", &small_ref]).success();
    assert_eq!(image_id(&daemon, &small_ref).as_deref(), Some(&*small.id()));
}
