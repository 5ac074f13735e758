//! `/images/load` fed the way streaming writers feed it: skopeo's `docker-daemon:` transport
//! (a docker-archive written on the fly, `manifest.json` after the layers; skipped where skopeo
//! is not installed), a hand-streamed archive with 100 MB layers and `manifest.json` last
//! (the daemon spools to disk: its memory must not grow with the layers), and garbage.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Command;

use berth_e2e::fixtures::{ImageSpec, sha256_hex};
use berth_e2e::{Daemon, api};
use serde_json::json;

fn skopeo() -> Option<&'static str> {
    ["/usr/bin/skopeo", "/usr/local/bin/skopeo"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

#[test]
fn skopeo_copies_an_oci_archive_into_berth() {
    let Some(skopeo) = skopeo() else {
        eprintln!("skipped: no skopeo (scripts/install-test-peers.sh installs it)");
        return;
    };
    let d = Daemon::start();
    let spec = ImageSpec::busybox(None).file_layer(&[("big", &vec![3u8; 8 << 20])]);
    let archive = d.dir().join("img.tar");
    std::fs::write(&archive, spec.oci_archive()).unwrap();
    let out = Command::new(skopeo)
        .args([
            "--insecure-policy",
            "copy",
            &format!("oci-archive:{}", archive.display()),
            "docker-daemon:edge/skopeo:1",
            "--dest-daemon-host",
            &d.host(),
        ])
        .env("TMPDIR", d.dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo failed: {}\n{}\ndaemon log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        d.log()
    );
    let r = d.api().get("/images/edge/skopeo:1/json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["RootFS"]["Layers"].as_array().unwrap().len(), 2);
}

/// A tar header for a regular file.
fn header(name: &str, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    h
}

/// Writes a layer tar holding one `size`-byte file of pseudo-random bytes (so that nothing
/// compresses or deduplicates it) and returns its sha256.
fn write_layer(w: &mut impl Write, file: &str, size: u64, seed: u64) -> String {
    use sha2::{Digest, Sha256};
    struct Hashing<'a, W: Write>(&'a mut W, Sha256);
    impl<W: Write> Write for Hashing<'_, W> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = self.0.write(buf)?;
            self.1.update(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }
    let mut hashing = Hashing(w, Sha256::new());
    let h = header(file, size);
    hashing.write_all(h.as_bytes()).unwrap();
    let mut state = seed | 1;
    let mut chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        for word in chunk.chunks_mut(8) {
            // xorshift64
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes()[..word.len()]);
        }
        let n = left.min(chunk.len() as u64) as usize;
        hashing.write_all(&chunk[..n]).unwrap();
        left -= n as u64;
    }
    let pad = (512 - size % 512) % 512;
    hashing.write_all(&vec![0u8; pad as usize + 1024]).unwrap();
    hex::encode(hashing.1.finalize())
}

fn layer_tar_size(size: u64) -> u64 {
    512 + size.div_ceil(512) * 512 + 1024
}

fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn streamed_archive_with_manifest_last_and_100mb_layers_loads_in_bounded_memory() {
    let d = Daemon::start();
    let pid = d.pid().expect("daemon pid");
    const LAYER: u64 = 100 << 20;
    let mut stream = UnixStream::connect(d.socket()).unwrap();
    stream
        .write_all(
            b"POST /v1.51/images/load?quiet=1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
              Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
    /// Writes HTTP chunks of whatever the tar writer produces.
    struct Chunked<'a>(&'a mut UnixStream);
    impl Write for Chunked<'_> {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if buf.is_empty() {
                return Ok(0);
            }
            write!(self.0, "{:x}\r\n", buf.len())?;
            self.0.write_all(buf)?;
            self.0.write_all(b"\r\n")?;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut body = Chunked(&mut stream);
    let mut diff_ids = Vec::new();
    // Layers first, each as a tar member whose content is itself the layer tar.
    for (i, name) in ["layer1/layer.tar", "layer2/layer.tar"].iter().enumerate() {
        body.write_all(header(name, layer_tar_size(LAYER)).as_bytes())
            .unwrap();
        let digest = write_layer(&mut body, &format!("file{i}"), LAYER, 7 + i as u64);
        diff_ids.push(format!("sha256:{digest}"));
        // layer_tar_size is a multiple of 512: no padding.
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "layer 1"}, {"created_by": "layer 2"}],
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256_hex(&config));
    let manifest = serde_json::to_vec(&json!([{
        "Config": config_name,
        "RepoTags": ["edge/big:1"],
        "Layers": ["layer1/layer.tar", "layer2/layer.tar"],
    }]))
    .unwrap();
    for (name, data) in [
        (config_name.as_str(), &config),
        ("manifest.json", &manifest),
    ] {
        body.write_all(header(name, data.len() as u64).as_bytes())
            .unwrap();
        body.write_all(data).unwrap();
        body.write_all(&vec![0u8; (512 - data.len() % 512) % 512])
            .unwrap();
    }
    body.write_all(&[0u8; 1024]).unwrap();
    stream.write_all(b"0\r\n\r\n").unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let response = api::parse_response(&raw, false);
    assert_eq!(response.status, 200, "{}", response.text());
    assert!(
        response.text().contains("Loaded image: edge/big:1"),
        "{}",
        response.text()
    );
    let hwm = vm_hwm_kib(pid);
    // 200 MB went through; a daemon that buffered a layer would have peaked above 100 MB.
    assert!(
        hwm < 90 << 10,
        "berthd peaked at {} MiB of resident memory loading two 100 MB layers",
        hwm >> 10
    );
    let r = d.api().get("/images/edge/big:1/json");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["RootFS"]["Layers"], json!(diff_ids));
}

#[test]
fn loading_garbage_reports_a_clean_message() {
    let d = Daemon::start();
    let mut garbage = vec![0u8; 64 << 10];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for b in garbage.iter_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *b = state as u8;
    }
    let r = d.api().post("/images/load?quiet=1", Some(&garbage));
    let text = r.text();
    let message = if r.status == 200 {
        r.json_lines()
            .iter()
            .find_map(|l| l["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no error in {text}"))
    } else {
        r.message()
    };
    assert!(
        message
            .chars()
            .all(|c| !c.is_control() && (c.is_ascii_graphic() || c == ' ')),
        "message carries raw bytes: {message:?}"
    );
    assert!(!message.is_empty());
    let Some(out) = d.docker_with_stdin(&["load"], Some(&garbage)) else {
        return;
    };
    let out = out.failure();
    assert!(
        out.stderr
            .trim()
            .chars()
            .all(|c| c == '\n' || (!c.is_control() && c != '\u{fffd}')),
        "docker load printed raw bytes: {:?}",
        out.stderr
    );
}
