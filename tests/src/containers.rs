//! Helpers shared by the container tests: a daemon with busybox loaded, the create/start/wait/
//! inspect calls through the raw API, log demultiplexing, and polling with a deadline.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Daemon, busybox_archive};

/// Container tests create namespaces, mounts and cgroups: they need root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Returns from the calling test, with a message, when not running as root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::containers::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// A daemon with `busybox:latest` loaded.
pub fn daemon_with_busybox() -> Daemon {
    let d = Daemon::start();
    load_busybox(&d);
    d
}

/// Loads `busybox:latest` (built from Debian's busybox-static) into a daemon.
pub fn load_busybox(d: &Daemon) {
    let r = d.api().post(
        "/images/load?quiet=1",
        Some(&busybox_archive("busybox:latest")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
}

/// `POST /containers/create[?name=]`; returns the id.
pub fn create(d: &Daemon, name: Option<&str>, body: Value) -> String {
    let path = match name {
        Some(n) => format!("/containers/create?name={n}"),
        None => "/containers/create".to_string(),
    };
    let r = d.api().post(&path, Some(body.to_string().as_bytes()));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["Id"].as_str().unwrap().to_string()
}

pub fn start(d: &Daemon, id: &str) {
    let r = d.api().post(&format!("/containers/{id}/start"), None);
    assert_eq!(r.status, 204, "{}", r.text());
}

/// `POST /containers/{id}/wait`: the exit code.
pub fn wait(d: &Daemon, id: &str) -> i64 {
    let r = d.api().post(&format!("/containers/{id}/wait"), None);
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["StatusCode"].as_i64().unwrap()
}

pub fn inspect(d: &Daemon, id: &str) -> Value {
    let r = d.api().get(&format!("/containers/{id}/json"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Runs `cmd` in a running container through the exec API (detached); its exit code.
pub fn exec_code(d: &Daemon, container: &str, cmd: &[&str]) -> i64 {
    let r = d.api().post(
        &format!("/containers/{container}/exec"),
        Some(serde_json::json!({"Cmd": cmd}).to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let exec = r.json()["Id"].as_str().unwrap().to_string();
    d.api().post(&format!("/exec/{exec}/start"), Some(br#"{}"#));
    d.api().get(&format!("/exec/{exec}/json")).json()["ExitCode"]
        .as_i64()
        .unwrap()
}

/// Demultiplexes a logs/attach body into (stdout, stderr).
pub fn demux(body: &[u8]) -> (String, String) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut decoder = FrameReader { rest: body };
    while let Some((kind, payload)) = decoder.next() {
        match kind {
            1 => out.extend_from_slice(payload),
            2 => err.extend_from_slice(payload),
            _ => {}
        }
    }
    (
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

/// Walks Docker's 8-byte-header frames of a complete body (independently of berth-api's
/// decoder, so the tests check the wire rather than reuse the code under test).
struct FrameReader<'a> {
    rest: &'a [u8],
}

impl<'a> FrameReader<'a> {
    fn next(&mut self) -> Option<(u8, &'a [u8])> {
        if self.rest.len() < 8 {
            return None;
        }
        let len = u32::from_be_bytes([self.rest[4], self.rest[5], self.rest[6], self.rest[7]]);
        let end = (8 + len as usize).min(self.rest.len());
        let frame = (self.rest[0], &self.rest[8..end]);
        self.rest = &self.rest[end..];
        Some(frame)
    }
}

/// Polls `f` until it holds; the generous deadline only turns a hang into a failure.
pub fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
