//! Attach and exec streams: large standard input round trips byte-exact (both directions full
//! at once), end of input reaches the process, exit codes are the container's; hijacked
//! answers come alone before any output; exec start's framing follows the start body's `Tty`;
//! a failed exec start says why.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_e2e::containers::{create, daemon_with_busybox as daemon, inspect, start, until, wait};
use berth_e2e::daemon::binary;
use berth_e2e::fixtures::sha256_hex;
use berth_e2e::require_root;
use berth_e2e::{Daemon, docker_cli};
use serde_json::{Value, json};

/// Runs a CLI with `input` on stdin (written from a thread while output is read, so both
/// directions are full at once); returns (exit code, stdout bytes, stderr).
fn pipe_through(mut cmd: Command, input: &[u8]) -> (i32, Vec<u8>, String) {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the CLI");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().expect("wait for the CLI");
    writer.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn berth(d: &Daemon, args: &[&str]) -> Command {
    let mut cmd = Command::new(binary("berth"));
    cmd.arg("-H").arg(d.host()).args(args);
    cmd
}

fn docker(d: &Daemon, args: &[&str]) -> Option<Command> {
    let mut cmd = Command::new(docker_cli()?);
    cmd.args(args)
        .env("DOCKER_HOST", d.host())
        .env("DOCKER_CONFIG", d.data_root().join("docker-config"))
        .env_remove("DOCKER_CONTEXT")
        .env_remove("DOCKER_API_VERSION");
    Some(cmd)
}

/// The sizes the round trips use: empty, one byte, around a pipe's 64 KiB, 1 MiB, 50 MiB.
const SIZES: [usize; 7] = [0, 1, 65535, 65536, 65537, 1 << 20, 50 << 20];

/// `cmd` (a CLI running `cat` in a container) gives back exactly what it was given.
fn assert_round_trip(what: &str, make: impl Fn() -> Command, sizes: &[usize]) {
    for &len in sizes {
        let input = payload(len);
        let (code, out, err) = pipe_through(make(), &input);
        assert_eq!(code, 0, "{what}, {len} bytes: exit {code}; stderr: {err}");
        assert_eq!(
            out.len(),
            len,
            "{what}, {len} bytes in: {} out; stderr: {err}",
            out.len()
        );
        assert!(
            out == input,
            "{what}, {len} bytes: output differs from input"
        );
    }
}

/// Deterministic, incompressible-looking bytes (all 256 values).
fn payload(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

#[test]
fn berth_run_i_cat_round_trips_large_stdin() {
    require_root!();
    let d = daemon();
    assert_round_trip(
        "berth run -i cat",
        || berth(&d, &["run", "-i", "--rm", "busybox", "cat"]),
        &SIZES,
    );
}

#[test]
fn berth_exec_i_cat_round_trips_large_stdin_and_sha256sum_sees_all_of_it() {
    require_root!();
    let d = daemon();
    let out = d.berth(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_round_trip(
        "berth exec -i cat",
        || berth(&d, &["exec", "-i", "box", "cat"]),
        &SIZES,
    );
    // A checksum in the container: all of the input reached it, and the end of input too.
    let input = payload(3 << 20);
    for args in [
        &["exec", "-i", "box", "sha256sum"][..],
        &["run", "-i", "--rm", "busybox", "sha256sum"][..],
    ] {
        let (code, out, err) = pipe_through(berth(&d, args), &input);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{}  -\n", sha256_hex(&input)),
            "{args:?}"
        );
    }
    // The exit code is the process's, after its input ended.
    let (code, out, _) = pipe_through(
        berth(&d, &["exec", "-i", "box", "sh", "-c", "wc -c; exit 3"]),
        &input,
    );
    assert_eq!(code, 3);
    assert_eq!(String::from_utf8_lossy(&out).trim(), (3 << 20).to_string());
    let (code, _, _) = pipe_through(
        berth(
            &d,
            &[
                "run",
                "-i",
                "--rm",
                "busybox",
                "sh",
                "-c",
                "cat >/dev/null; exit 7",
            ],
        ),
        &input,
    );
    assert_eq!(code, 7);
}

#[test]
fn docker_cli_run_and_exec_i_cat_round_trip_large_stdin() {
    require_root!();
    if docker_cli().is_none() {
        eprintln!("skipped: docker CLI not installed");
        return;
    }
    let d = daemon();
    assert_round_trip(
        "docker run -i cat",
        || docker(&d, &["run", "-i", "--rm", "busybox", "cat"]).unwrap(),
        &SIZES,
    );
    let out = d.berth(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_round_trip(
        "docker exec -i cat",
        || docker(&d, &["exec", "-i", "box", "cat"]).unwrap(),
        &SIZES,
    );
    let (code, _, err) = pipe_through(
        docker(
            &d,
            &["exec", "-i", "box", "sh", "-c", "cat >/dev/null; exit 5"],
        )
        .unwrap(),
        &payload(1 << 20),
    );
    assert_eq!(code, 5, "{err}");
}

// ---- the raw API --------------------------------------------------------------------------

/// Sends a request that upgrades, reads the answer's head (byte by byte, so no stream byte
/// is taken with it) and returns the connection and the head.
fn hijack(d: &Daemon, path: &str, body: &[u8]) -> (UnixStream, String) {
    let mut s = UnixStream::connect(d.socket()).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read the answer");
        assert_eq!(n, 1, "connection closed in the answer: {got:?}");
        got.push(byte[0]);
    }
    (s, String::from_utf8_lossy(&got).into_owned())
}

/// A client that reads the `101` late, with one large read (docker-py's buffered reader),
/// finds nothing of the exec's output with the head: the process starts once the head was
/// read. Without that, the quick `echo` has written long before the client's read.
#[test]
fn an_execs_output_never_comes_with_the_answers_head() {
    require_root!();
    let d = daemon();
    let out = d.berth(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    for _ in 0..5 {
        let create = json!({"Cmd": ["echo", "hello"], "AttachStdout": true}).to_string();
        let r = d
            .api()
            .post("/containers/box/exec", Some(create.as_bytes()));
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["Id"].as_str().unwrap().to_string();
        let mut s = UnixStream::connect(d.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = br#"{"Detach":false,"Tty":false}"#;
        let head = format!(
            "POST /exec/{id}/start HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\n\
             Upgrade: tcp\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).unwrap();
        s.write_all(body).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let mut buf = vec![0u8; 64 * 1024];
        let n = s.read(&mut buf).unwrap();
        let first = &buf[..n];
        assert!(
            first.starts_with(b"HTTP/1.1 101"),
            "{:?}",
            String::from_utf8_lossy(first)
        );
        assert!(
            first.ends_with(b"\r\n\r\n"),
            "output came with the head: {:?}",
            String::from_utf8_lossy(first)
        );
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert_eq!(berth_e2e::containers::demux(&rest).0, "hello\n");
    }
}

/// Writes `input` from a thread, half-closes, and reads everything until the daemon closes.
fn exchange(s: UnixStream, input: Vec<u8>) -> Vec<u8> {
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&input);
        let _ = w.shutdown(std::net::Shutdown::Write);
    });
    let mut out = Vec::new();
    let mut r = s;
    r.read_to_end(&mut out).expect("read the stream");
    writer.join().unwrap();
    out
}

/// The multiplexed stream's (stdout, stderr), byte-exact; panics on a malformed frame.
fn demux_bytes(mut wire: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while !wire.is_empty() {
        assert!(wire.len() >= 8, "truncated frame header");
        let len = u32::from_be_bytes([wire[4], wire[5], wire[6], wire[7]]) as usize;
        assert!(wire.len() >= 8 + len, "truncated frame");
        match wire[0] {
            1 => out.extend_from_slice(&wire[8..8 + len]),
            2 => err.extend_from_slice(&wire[8..8 + len]),
            k => panic!("unexpected stream type {k}"),
        }
        wire = &wire[8 + len..];
    }
    (out, err)
}

fn exec_create(d: &Daemon, ctr: &str, body: Value) -> String {
    let r = d.api().post(
        &format!("/containers/{ctr}/exec"),
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["Id"].as_str().unwrap().to_string()
}

fn exec_inspect(d: &Daemon, id: &str) -> Value {
    let r = d.api().get(&format!("/exec/{id}/json"));
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

#[test]
fn raw_attach_and_exec_round_trip_large_stdin_with_stdin_once_and_exit_codes() {
    require_root!();
    let d = daemon();
    for len in [0usize, 65537, 1 << 20, 50 << 20] {
        // attach before start (as `run` does), StdinOnce: the end of input ends `cat`.
        let id = create(
            &d,
            None,
            json!({"Image": "busybox", "Cmd": ["sh", "-c", "cat; exit 4"], "OpenStdin": true,
                   "StdinOnce": true, "AttachStdin": true, "AttachStdout": true,
                   "AttachStderr": true}),
        );
        let (s, head) = hijack(
            &d,
            &format!("/containers/{id}/attach?stream=1&stdin=1&stdout=1&stderr=1"),
            b"",
        );
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        start(&d, &id);
        let input = payload(len);
        let (out, err) = demux_bytes(&exchange(s, input.clone()));
        assert!(err.is_empty(), "{}", String::from_utf8_lossy(&err));
        assert_eq!(out.len(), len, "attach, {len} bytes");
        assert!(out == input, "attach, {len} bytes: output differs");
        assert_eq!(wait(&d, &id), 4);
    }
    let ctr = create(
        &d,
        Some("box"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &ctr);
    for len in [0usize, 65535, 1 << 20, 50 << 20] {
        let id = exec_create(
            &d,
            "box",
            json!({"Cmd": ["sh", "-c", "cat; echo done >&2; exit 9"], "AttachStdin": true,
                   "AttachStdout": true, "AttachStderr": true}),
        );
        let (s, head) = hijack(&d, &format!("/exec/{id}/start"), br#"{"Tty":false}"#);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let input = payload(len);
        let (out, err) = demux_bytes(&exchange(s, input.clone()));
        assert_eq!(out.len(), len, "exec, {len} bytes");
        assert!(out == input, "exec, {len} bytes: output differs");
        assert_eq!(err, b"done\n");
        until("the exec's exit is recorded", || {
            exec_inspect(&d, &id)["Running"] == false
        });
        assert_eq!(exec_inspect(&d, &id)["ExitCode"], 9);
    }
}

/// With a tty, a terminal in raw mode (`stty raw -echo`) passes any data but the detach
/// keys unchanged: no line discipline, no echo, no `\n` → `\r\n`. (A terminal in its usual
/// canonical mode edits lines, limits them to 4095 bytes and echoes, under Docker too.)
#[test]
fn raw_tty_exec_round_trips_large_input_in_raw_mode() {
    require_root!();
    let d = daemon();
    let ctr = create(
        &d,
        Some("box"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &ctr);
    let id = exec_create(
        &d,
        "box",
        json!({"Cmd": ["sh", "-c", "stty raw -echo; echo ready; exec cat"], "Tty": true,
               "AttachStdin": true, "AttachStdout": true, "AttachStderr": true}),
    );
    let (mut s, head) = hijack(&d, &format!("/exec/{id}/start"), br#"{"Tty":true}"#);
    assert!(head.contains("application/vnd.docker.raw-stream"), "{head}");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.ends_with(b"ready\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(
            n > 0,
            "ended before ready: {:?}",
            String::from_utf8_lossy(&seen)
        );
        seen.extend_from_slice(&buf[..n]);
    }
    // Without ctrl-p (the first detach key).
    let input: Vec<u8> = payload(4 << 20)
        .into_iter()
        .map(|b| if b == 0x10 { b'p' } else { b })
        .collect();
    let mut w = s.try_clone().unwrap();
    let sent = input.clone();
    let writer = std::thread::spawn(move || w.write_all(&sent).unwrap());
    let mut out = vec![0u8; input.len()];
    s.read_exact(&mut out).expect("read the echoed data");
    writer.join().unwrap();
    assert!(out == input, "tty raw round trip differs");
    drop(s);
}

// ---- hijacked answers come alone ----------------------------------------------------------

/// docker-py reads the answer's head with a buffered HTTP reader and then the raw socket:
/// stream bytes that arrive in the same read as the head are lost. The answer must be
/// written before the process runs, so one large read right away gets the head alone.
#[test]
fn exec_start_answers_before_any_output() {
    require_root!();
    let d = daemon();
    let ctr = create(
        &d,
        Some("box"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &ctr);
    for tty in [false, true] {
        let id = exec_create(
            &d,
            "box",
            json!({"Cmd": ["echo", "hello world"], "Tty": tty, "AttachStdout": true,
                   "AttachStderr": true}),
        );
        let mut s = UnixStream::connect(d.socket()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let body = format!(r#"{{"Detach":false,"Tty":{tty}}}"#);
        let req = format!(
            "POST /v1.44/exec/{id}/start HTTP/1.1\r\nHost: localhost\r\n\
             Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut first = vec![0u8; 65536];
        let n = s.read(&mut first).unwrap();
        let head = String::from_utf8_lossy(&first[..n]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(
            head.ends_with("\r\n\r\n"),
            "output arrived with the answer's head: {head:?}"
        );
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        let out = if tty { rest } else { demux_bytes(&rest).0 };
        assert_eq!(String::from_utf8_lossy(&out).trim_end(), "hello world");
    }
}

// ---- exec stream format and detach keys ---------------------------------------------------

/// dockerd frames an exec's stream after the start request's `Tty`, not the create's.
#[test]
fn exec_stream_format_follows_the_start_requests_tty() {
    require_root!();
    let d = daemon();
    let ctr = create(
        &d,
        Some("box"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &ctr);
    // A process with a tty, started without: stdout frames carrying the terminal's output.
    let id = exec_create(
        &d,
        "box",
        json!({"Cmd": ["echo", "framed"], "Tty": true, "AttachStdout": true,
               "AttachStderr": true}),
    );
    let (s, head) = hijack(&d, &format!("/exec/{id}/start"), br#"{"Tty":false}"#);
    assert!(
        head.contains("application/vnd.docker.multiplexed-stream"),
        "{head}"
    );
    let (out, err) = demux_bytes(&exchange(s, Vec::new()));
    assert_eq!(out, b"framed\r\n");
    assert!(err.is_empty());
    // A process without one, started with: raw stdout, no stderr (as dockerd: none attached).
    let id = exec_create(
        &d,
        "box",
        json!({"Cmd": ["sh", "-c", "echo raw; echo gone >&2"], "Tty": false,
               "AttachStdout": true, "AttachStderr": true}),
    );
    let (s, head) = hijack(&d, &format!("/exec/{id}/start"), br#"{"Tty":true}"#);
    assert!(head.contains("application/vnd.docker.raw-stream"), "{head}");
    assert_eq!(exchange(s, Vec::new()), b"raw\n");
}

/// The exec's own `DetachKeys` end a tty session (the process keeps running); without a tty
/// the same bytes are data.
#[test]
fn exec_detach_keys_apply_to_a_tty_only() {
    require_root!();
    let d = daemon();
    let ctr = create(
        &d,
        Some("box"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &ctr);
    let id = exec_create(
        &d,
        "box",
        json!({"Cmd": ["sh", "-c", "echo ready; exec sleep 1000"], "Tty": true,
               "AttachStdin": true, "AttachStdout": true, "DetachKeys": "ctrl-x"}),
    );
    assert_eq!(exec_inspect(&d, &id)["DetachKeys"], "ctrl-x");
    let (mut s, _) = hijack(&d, &format!("/exec/{id}/start"), br#"{"Tty":true}"#);
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("ready") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "ended early");
        seen.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"\x18").unwrap();
    // The daemon ends the session: the stream closes while the process runs on.
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("the stream ends after the detach keys");
    assert_eq!(exec_inspect(&d, &id)["Running"], true);

    let id = exec_create(
        &d,
        "box",
        json!({"Cmd": ["cat"], "AttachStdin": true, "AttachStdout": true,
               "DetachKeys": "ctrl-x"}),
    );
    let (s, _) = hijack(&d, &format!("/exec/{id}/start"), br#"{"Tty":false}"#);
    let (out, _) = demux_bytes(&exchange(s, b"a\x18\x10\x11b".to_vec()));
    assert_eq!(out, b"a\x18\x10\x11b");
}

// ---- an exec that cannot start ------------------------------------------------------------

#[test]
fn exec_that_cannot_start_says_why_in_dockers_words() {
    require_root!();
    let d = daemon();
    let ctr = create(
        &d,
        Some("box"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &ctr);
    let why = "OCI runtime exec failed: exec failed: unable to start container process: \
               chdir to cwd (\"/nonexistent\") set in config.json failed: no such file or \
               directory: unknown";
    let out = d.berth(&["exec", "-w", "/nonexistent", "box", "sh"]);
    assert_eq!(out.code, 127, "{out:?}");
    assert!(
        out.stdout.contains(why) || out.stderr.contains(why),
        "{out:?}"
    );
    if let Some(out) = d.docker(&["exec", "-w", "/nonexistent", "box", "sh"]) {
        assert_eq!(out.code, 127, "{out:?}");
        assert!(
            out.stdout.contains(why) || out.stderr.contains(why),
            "{out:?}"
        );
        let out = d.docker(&["exec", "box", "nope"]).unwrap();
        assert_eq!(out.code, 127, "{out:?}");
        assert!(out.stdout.contains("executable file not found"), "{out:?}");
    }
    // Through the API: 101, then the reason as stdout, and the exit code on inspect.
    let id = exec_create(
        &d,
        "box",
        json!({"Cmd": ["sh"], "WorkingDir": "/etc/passwd", "AttachStdout": true}),
    );
    let (s, head) = hijack(&d, &format!("/exec/{id}/start"), br#"{"Tty":false}"#);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let (out, _) = demux_bytes(&exchange(s, Vec::new()));
    assert!(
        String::from_utf8_lossy(&out).contains("set in config.json failed: not a directory"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(exec_inspect(&d, &id)["ExitCode"], 127);
    // The container is untouched.
    assert_eq!(inspect(&d, "box")["State"]["Running"], true);
}

// ---- no host descriptor reaches an exec's process -----------------------------------------

/// A marker file only the host has, removed on drop.
struct HostMarker {
    name: String,
    path: std::path::PathBuf,
}

impl Drop for HostMarker {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Starts `attacker`: a container with `CAP_SYS_PTRACE` and a 50 ms health check that hunts
/// through every descriptor of every process it can see, through procfs roots
/// (`<fd>/<pid>/root`) and directory handles (`<fd>/tmp`), for the host's marker, noting what
/// it reaches in `/found`.
fn start_attacker(d: &Daemon, probe: bool) -> HostMarker {
    let name = format!("berth-escape-marker-{}", std::process::id());
    let path = std::path::Path::new("/tmp").join(&name);
    std::fs::write(&path, "host").unwrap();
    let marker = HostMarker { name, path };
    let hunt = format!(
        "while true; do echo $((n=n+1)) > /beat; for r in /proc/[0-9]*/root; do \
           [ -e \"$r/tmp/{m}\" ] && echo \"ESCAPED $r\" >> /found; done; \
         for f in /proc/[0-9]*/fd/*; do \
           for p in \"$f/1/root/tmp/{m}\" \"$f/2/root/tmp/{m}\" \"$f/tmp/{m}\"; do \
             [ -e \"$p\" ] && echo \"ESCAPED $p\" >> /found; \
           done; done; done",
        m = marker.name
    );
    let mut args = vec!["run", "-d", "--name", "attacker", "--cap-add", "SYS_PTRACE"];
    if probe {
        args.extend(["--health-cmd", "true", "--health-interval", "50ms"]);
    }
    args.extend(["busybox", "sh", "-c", &hunt]);
    let out = d.berth(&args);
    assert_eq!(out.code, 0, "{out:?}");
    marker
}

/// A file of the attacker's, read from the host side of its root filesystem (an `exec`
/// would be one more process for the attacker to hunt through).
fn attacker_file(d: &Daemon, file: &str) -> String {
    let id = d.api().get("/containers/attacker/json").json()["Id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = d
        .data_root()
        .join("containers")
        .join(id)
        .join("rootfs")
        .join(file);
    std::fs::read_to_string(path).unwrap_or_default()
}

/// What the attacker reached.
fn attacker_found(d: &Daemon) -> String {
    attacker_file(d, "found")
}

/// An attacker in a container with `CAP_SYS_PTRACE` hunts through the descriptors of its own
/// exec processes (the health probe's and the host's `exec`s) while they start, looking for
/// one that leads to the host's root (a marker file only the host has). None may.
#[test]
fn exec_processes_carry_no_descriptor_that_leads_to_the_host() {
    require_root!();
    let d = daemon();
    let marker = start_attacker(&d, true);
    for _ in 0..150 {
        let out = d.berth(&["exec", "attacker", "true"]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    let found = attacker_found(&d);
    assert_eq!(
        found, "",
        "a descriptor of an exec or health probe led to the host: {found}"
    );
    // The exec's working directory cannot be one of those descriptors either.
    let out = d.berth(&["exec", "-w", "/proc/self/fd/30", "attacker", "pwd"]);
    assert_ne!(out.stdout.trim(), "/", "{out:?}");
    assert!(!out.stdout.contains(&marker.name));
}

/// The init of a container that joins another's PID namespace (`--pid container:X`) is in X's
/// view from its clone on, while it still prepares its root filesystem: its `/proc/<pid>/root`
/// is the host's root until `pivot_root` (dockerd with runc has the same window: a process in X
/// with `CAP_SYS_PTRACE` reaches the host's root through every joining `runc init`). Berth
/// freezes X's processes meanwhile: none of them may reach the host through the joining init,
/// by its root or its descriptors.
#[test]
fn inits_joining_a_pid_namespace_carry_no_descriptor_that_leads_to_the_host() {
    require_root!();
    let d = daemon();
    let _marker = start_attacker(&d, false);
    // Every start succeeds (on cgroup v1, libcontainer's own /sys/fs/cgroup failed about one
    // start in six when the PID namespace was joined: see spec/cgroup_v1_view.rs).
    for _ in 0..20 {
        let out = d.berth(&[
            "run",
            "--rm",
            "--pid",
            "container:attacker",
            "busybox",
            "true",
        ]);
        assert_eq!(out.code, 0, "{out:?}");
    }
    // The owner of the namespace was thawed after each start: its hunt goes on.
    let state = d.api().get("/containers/attacker/json").json();
    assert_eq!(state["State"]["Status"], "running");
    let beat = attacker_file(&d, "beat");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while attacker_file(&d, "beat") == beat {
        assert!(
            std::time::Instant::now() < deadline,
            "the attacker stayed frozen"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let found = attacker_found(&d);
    assert_eq!(
        found, "",
        "a descriptor of a joining init led to the host: {found}"
    );
}

// ---- the shim's binary ----------------------------------------------------------------------

/// A container's processes are clones of a shim helper until their `execve`, so what their
/// `/proc/self/exe` leads to is the shim's executable: a sealed in-memory copy that nobody
/// can write, never the host's file (`--entrypoint /proc/self/exe`, CVE-2019-5736).
#[test]
fn shims_run_from_a_sealed_copy_of_their_binary() {
    use std::os::unix::fs::MetadataExt;
    require_root!();
    let d = daemon();
    let out = d.berth(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    let id = out.stdout.trim().to_string();
    let pid = std::fs::read_to_string(d.run_dir(&id).join("shim.pid")).unwrap();
    let exe = format!("/proc/{}/exe", pid.trim());
    let target = std::fs::read_link(&exe).unwrap();
    assert!(
        target.to_string_lossy().starts_with("/memfd:berth-shim"),
        "the shim runs from {}",
        target.display()
    );
    let host = std::fs::metadata(binary("berth-shim")).unwrap();
    let running = std::fs::metadata(&exe).unwrap();
    assert_ne!((host.dev(), host.ino()), (running.dev(), running.ino()));
    let writable = std::fs::OpenOptions::new()
        .write(true)
        .open(&exe)
        .and_then(|mut f| f.write_all(b"\0"));
    assert!(writable.is_err(), "the shim's binary accepted a write");
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{}/comm", pid.trim()))
            .unwrap()
            .trim(),
        "berth-shim"
    );
}

/// docker-py's `exec_run` reads the hijacked stream from under its HTTP reader: it gets all
/// the output only if none came with the answer's head. Skipped without python3's `docker`.
#[test]
fn docker_py_exec_run_gets_all_the_output() {
    require_root!();
    let has_docker_py = Command::new("python3")
        .args(["-c", "import docker"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !has_docker_py {
        eprintln!("skipped: python3 docker module not installed");
        return;
    }
    let d = daemon();
    let out = d.berth(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    let script = r#"
import docker, sys
ctr = docker.DockerClient(base_url=sys.argv[1]).containers.get("box")
for _ in range(20):
    r = ctr.exec_run(["echo", "hello world"])
    assert r.output == b"hello world\n", r
r = ctr.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"], demux=True)
assert (r.exit_code, r.output) == (3, (b"out\n", b"err\n")), r
r = ctr.exec_run(["sh"], workdir="/nonexistent")
assert r.exit_code == 127 and b"chdir to cwd" in r.output, r
print("ok")
"#;
    let out = Command::new("python3")
        .args(["-c", script, &d.host()])
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stdout == b"ok\n",
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process that exits before reading all its input: the client still gets the whole output
/// and the exit code (the daemon takes the unread input instead of resetting the connection,
/// which made the clients fail with "connection reset by peer").
#[test]
fn a_process_that_stops_reading_early_still_ends_cleanly() {
    require_root!();
    let d = daemon();
    let out = d.berth(&["run", "-d", "--name", "box", "busybox", "sleep", "1000"]);
    assert_eq!(out.code, 0, "{out:?}");
    let input = payload(16 << 20);
    let mut cases = vec![
        (
            "berth run",
            berth(&d, &["run", "-i", "--rm", "busybox", "head", "-c", "10"]),
            0,
        ),
        (
            "berth exec",
            berth(&d, &["exec", "-i", "box", "sh", "-c", "head -c 10; exit 4"]),
            4,
        ),
    ];
    if let Some(cmd) = docker(&d, &["exec", "-i", "box", "sh", "-c", "head -c 10; exit 4"]) {
        cases.push(("docker exec", cmd, 4));
    }
    if let Some(cmd) = docker(&d, &["run", "-i", "--rm", "busybox", "head", "-c", "10"]) {
        cases.push(("docker run", cmd, 0));
    }
    for (what, cmd, want) in cases {
        let (code, out, err) = pipe_through(cmd, &input);
        assert_eq!(code, want, "{what}: {err}");
        assert!(out == input[..10], "{what}: {} bytes out", out.len());
    }
}

/// A client that stops reading for a while holds the process back (flow control) and then
/// gets every byte: nothing is dropped for being slow.
#[test]
fn a_client_that_pauses_gets_all_the_output() {
    require_root!();
    let d = daemon();
    let ctr = create(
        &d,
        Some("box"),
        json!({"Image": "busybox", "Cmd": ["sleep", "1000"]}),
    );
    start(&d, &ctr);
    let id = exec_create(
        &d,
        "box",
        json!({"Cmd": ["head", "-c", "40000000", "/dev/zero"], "AttachStdout": true}),
    );
    let (s, _) = hijack(&d, &format!("/exec/{id}/start"), br#"{"Tty":false}"#);
    // Far more than every buffer on the way (sockets, the daemon's, the shim's 1 MiB) fills
    // up while the client is away.
    std::thread::sleep(Duration::from_secs(3));
    let (out, _) = demux_bytes(&exchange(s, Vec::new()));
    assert_eq!(out.len(), 40_000_000);
    assert!(out.iter().all(|&b| b == 0));
    until("the exec's exit is recorded", || {
        exec_inspect(&d, &id)["Running"] == false
    });
    assert_eq!(exec_inspect(&d, &id)["ExitCode"], 0);
}
