//! `POST /build`'s build containers and big contexts: `rm`/`forcerm` keep or remove a RUN
//! step's container as dockerd does, and a 2 GiB context streams through in bounded memory
//! (and a client gone mid-upload leaves nothing).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use berth_e2e::containers::{daemon_with_busybox, until};
use berth_e2e::{Daemon, require_root};
use serde_json::Value;

/// A context tar holding one Dockerfile.
fn dockerfile_tar(text: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(text.len() as u64);
    b.append_data(&mut h, "Dockerfile", text.as_bytes())
        .unwrap();
    b.into_inner().unwrap()
}

/// `POST /build?<query>`: the stream's text and its error.
fn build(d: &Daemon, query: &str, dockerfile: &str) -> (String, Option<String>) {
    let r = d.api().request(
        "POST",
        &format!("/build?{query}"),
        &[("Content-Type", "application/x-tar")],
        Some(&dockerfile_tar(dockerfile)),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let lines = r.json_lines();
    let text = lines.iter().filter_map(|m| m["stream"].as_str()).collect();
    let error = lines
        .iter()
        .find_map(|m| m["error"].as_str().map(str::to_string));
    (text, error)
}

/// The short ids of ` ---> Running in <id>` lines, in order.
fn running_in(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix(" ---> Running in "))
        .map(|s| s.trim().to_string())
        .collect()
}

fn container_ids(d: &Daemon) -> Vec<String> {
    let r = d.api().get("/containers/json?all=1");
    let list: Value = r.json();
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["Id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn rm_and_forcerm_keep_or_remove_build_containers_as_dockerd() {
    require_root!();
    let mut d = daemon_with_busybox();

    // Default (rm=1): the successful step's container goes, the failed one stays.
    let (text, error) = build(&d, "", "FROM busybox\nRUN echo one\nRUN exit 5\n");
    assert!(error.unwrap().contains("returned a non-zero code: 5"));
    let ran = running_in(&text);
    assert_eq!(ran.len(), 2, "{text}");
    assert!(
        text.contains(&format!("Removing intermediate container {}\n", ran[0])),
        "{text}"
    );
    assert!(!text.contains(&format!("container {}", ran[1])), "{text}");
    let ids = container_ids(&d);
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert!(ids[0].starts_with(&ran[1]), "{ids:?} {ran:?}");
    // It is the user's to inspect: a daemon restart does not take it for a crash's leftover.
    d.restart();
    assert_eq!(container_ids(&d), ids);
    assert_eq!(
        d.api().delete(&format!("/containers/{}", ids[0])).status,
        204
    );

    // forcerm=1: the failed step's container goes too, with dockerd's line.
    let (text, error) = build(&d, "forcerm=1", "FROM busybox\nRUN exit 6\n");
    assert!(error.unwrap().contains("returned a non-zero code: 6"));
    let ran = running_in(&text);
    assert!(
        text.contains(&format!("Removing intermediate container {}\n", ran[0])),
        "{text}"
    );
    assert_eq!(container_ids(&d), Vec::<String>::new());

    // rm=0: every step's container stays, and no line says otherwise.
    let (text, error) = build(&d, "rm=0", "FROM busybox\nRUN echo kept\nRUN echo too\n");
    assert_eq!(error, None, "{text}");
    assert!(!text.contains("Removing intermediate container"), "{text}");
    let ran = running_in(&text);
    let ids = container_ids(&d);
    assert_eq!(ids.len(), 2, "{ids:?}");
    for short in &ran {
        assert!(
            ids.iter().any(|id| id.starts_with(short)),
            "{ids:?} {ran:?}"
        );
    }
    for id in ids {
        assert_eq!(d.api().delete(&format!("/containers/{id}")).status, 204);
    }
}

/// Peak resident memory of a process, in KiB.
fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

/// Writes HTTP chunks of whatever is written to it.
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
        self.0.flush()
    }
}

const BIG: u64 = 2 << 30;

/// Starts `POST /build` and streams a context tar generated on the fly (a Dockerfile and a
/// 2 GiB file of zeros, never held anywhere whole); stops after `send` bytes of the big file
/// when given. Returns the connection.
fn stream_big_context(d: &Daemon, dockerfile: &str, send: Option<u64>) -> UnixStream {
    let mut stream = UnixStream::connect(d.socket()).unwrap();
    stream
        .write_all(
            b"POST /v1.51/build?t=big:1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
              Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        .unwrap();
    let mut w = Chunked(&mut stream);
    let mut h = tar::Header::new_ustar();
    h.set_path("Dockerfile").unwrap();
    h.set_size(dockerfile.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    w.write_all(h.as_bytes()).unwrap();
    w.write_all(dockerfile.as_bytes()).unwrap();
    w.write_all(&vec![0u8; (512 - dockerfile.len() % 512) % 512])
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("big.bin").unwrap();
    h.set_size(BIG);
    h.set_mode(0o644);
    h.set_cksum();
    w.write_all(h.as_bytes()).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = send.unwrap_or(BIG);
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        w.write_all(&zeros[..n]).unwrap();
        left -= n as u64;
    }
    if send.is_none() {
        // BIG is a multiple of 512: no padding, then the two end blocks.
        w.write_all(&[0u8; 1024]).unwrap();
        stream.write_all(b"0\r\n\r\n").unwrap();
    }
    stream
}

fn build_dirs(d: &Daemon) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(d.data_root().join("tmp"))
        .map(|it| {
            it.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("build-"))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_2gib_context_streams_in_bounded_memory_and_a_cut_upload_leaves_nothing() {
    require_root!();
    let d = daemon_with_busybox();
    let pid = d.pid().expect("daemon pid");
    // The whole context arrives: a RUN sees the file's full size through a bind mount of
    // the context (no COPY: a 2 GiB layer would only cost the test time and disk).
    let mut stream = stream_big_context(
        &d,
        "FROM busybox\nRUN --mount=type=bind,target=/ctx ls -l /ctx/big.bin\n",
        None,
    );
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(&BIG.to_string()), "{answer}");
    assert!(answer.contains("Successfully built"), "{answer}");
    assert!(answer.contains("Successfully tagged big:1"), "{answer}");
    let peak = vm_hwm_kib(pid);
    assert!(
        peak < 256 * 1024,
        "berthd's peak RSS {peak} KiB for a 2 GiB context"
    );
    until("the build directory to go", || build_dirs(&d).is_empty());

    // A client gone after 1 GiB: no build, no directory, no container, a healthy daemon.
    let stream = stream_big_context(&d, "FROM busybox\nRUN echo never\n", Some(1 << 30));
    drop(stream);
    until("the cut upload's directory to go", || {
        build_dirs(&d).is_empty()
    });
    assert_eq!(d.api().get("/_ping").status, 200);
    let r = d.api().get("/containers/json?all=1");
    assert_eq!(r.json().as_array().unwrap().len(), 0, "{}", r.text());
    assert!(vm_hwm_kib(pid) < 256 * 1024);
}
