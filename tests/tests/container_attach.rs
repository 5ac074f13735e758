//! Attaching to running containers: what an attached client's end of input does to the
//! container (nothing, unless it was created with `StdinOnce` and has no tty: Docker's rule),
//! and attaching again after a detach with ctrl-p ctrl-q. Every daemon has its own cgroup
//! parent; dropping it removes the containers and cgroups. Processes a test starts itself are
//! held in `ChildGuard`s (killed by their own PID).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::Stdio;
use std::time::{Duration, Instant};

use berth_e2e::containers::{daemon_with_busybox as daemon, inspect};
use berth_e2e::pty::{Cli, PtySession, cli_command};
use berth_e2e::require_root;
use berth_e2e::{Daemon, docker_cli};

/// A hijacked `POST /containers/{id}/attach` on the daemon's socket, past the 101 answer.
fn raw_attach(d: &Daemon, id: &str, query: &str) -> UnixStream {
    let mut s = UnixStream::connect(d.socket()).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let head = format!(
        "POST /containers/{id}/attach?{query} HTTP/1.1\r\nHost: localhost\r\n\
         Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read the attach answer");
        assert_eq!(n, 1, "connection closed in the answer: {got:?}");
        got.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&got);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    s
}

// ---- an attached client's end of input ------------------------------------------------------

/// A client attaches with stdin and ends its input at once (an empty pipe); then the
/// container is still running and a second client's input reaches the shell and is answered.
fn eof_leaves_the_shell_to_the_next_client(d: &Daemon, name: &str) {
    let s = raw_attach(d, name, "stream=1&stdin=1&stdout=1&stderr=1");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    // Give the daemon and the shim time to act on the half-close.
    std::thread::sleep(Duration::from_millis(1500));
    let i = inspect(d, name);
    assert_eq!(
        i["State"]["Running"], true,
        "a client's end of input must not end a tty container: {}",
        i["State"]
    );
    drop(s);

    let mut s = raw_attach(d, name, "stream=1&stdin=1&stdout=1&stderr=1");
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(20);
    // The arithmetic keeps the terminal's echo of the line from matching the answer.
    s.write_all(b"echo still-$((40+2))\n").unwrap();
    while !String::from_utf8_lossy(&out).contains("still-42") {
        assert!(
            Instant::now() < deadline,
            "the next client's input got no answer; it saw {:?}",
            String::from_utf8_lossy(&out)
        );
        match s.read(&mut buf) {
            Ok(0) => panic!("stream ended: {:?}", String::from_utf8_lossy(&out)),
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("read: {e}; got {:?}", String::from_utf8_lossy(&out)),
        }
    }
    drop(s);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(inspect(d, name)["State"]["Running"], true);
}

#[test]
fn end_of_an_attached_clients_stdin_leaves_a_dit_container_running() {
    require_root!();
    let d = daemon();
    d.berth(&["run", "-dit", "--name", "dit", "busybox", "sh"])
        .success();
    let i = inspect(&d, "dit");
    assert_eq!(i["Config"]["StdinOnce"], false);
    assert_eq!(i["State"]["Running"], true);
    eof_leaves_the_shell_to_the_next_client(&d, "dit");
}

#[test]
fn end_of_an_attached_clients_stdin_never_closes_a_tty() {
    require_root!();
    let d = daemon();
    // As `docker run -it` creates it: StdinOnce, which Docker honours only without a tty.
    let body = serde_json::json!({
        "Image": "busybox",
        "Cmd": ["sh"],
        "Tty": true,
        "OpenStdin": true,
        "StdinOnce": true,
        "AttachStdin": true,
        "AttachStdout": true,
        "AttachStderr": true,
    });
    let r = d.api().request(
        "POST",
        "/containers/create?name=ito",
        &[("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let r = d.api().post("/containers/ito/start", None);
    assert_eq!(r.status, 204, "{}", r.text());
    eof_leaves_the_shell_to_the_next_client(&d, "ito");
}

#[test]
fn end_of_an_attached_clients_stdin_leaves_a_di_container_running() {
    require_root!();
    let d = daemon();
    // Without a tty too: the pipe to the container's stdin stays open.
    d.berth(&["run", "-di", "--name", "di", "busybox", "cat"])
        .success();
    let s = raw_attach(&d, "di", "stream=1&stdin=1&stdout=1&stderr=1");
    s.shutdown(std::net::Shutdown::Write).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(inspect(&d, "di")["State"]["Running"], true);
}

#[test]
fn run_i_closes_stdin_once_the_input_ends() {
    require_root!();
    let d = daemon();
    // `run -i` creates the container with StdinOnce: cat sees EOF and exits.
    let out = d
        .berth_with_stdin(&["run", "-i", "--rm", "busybox", "cat"], Some(b"hi\n"))
        .success();
    assert_eq!(out.stdout, "hi\n");
    let out = d
        .berth_with_stdin(
            &["run", "-i", "--name", "once", "busybox", "cat"],
            Some(b"hi\n"),
        )
        .success();
    assert_eq!(out.stdout, "hi\n");
    let i = inspect(&d, "once");
    assert_eq!(i["Config"]["StdinOnce"], true);
    assert_eq!(i["State"]["ExitCode"], 0);
}

// ---- detach, then attach again ---------------------------------------------------------------

/// Attaches through a pty, runs `echo <word>` in the shell and sees its answer, detaches
/// with ctrl-p ctrl-q.
fn attach_echo_detach(d: &Daemon, cli: &Cli, name: &str, word: &str) {
    let mut s = PtySession::spawn(cli_command(d, cli, &["attach", name]), 30, 100);
    // Attaching prints nothing by itself; input sent before the stream is connected waits.
    let mark = s.output_len();
    // The arithmetic keeps the terminal's echo of the line from matching the answer.
    s.type_in(format!("echo {word}-$(({} * 2))\n", word.len()).as_bytes());
    s.expect(mark, &format!("{word}-{}", word.len() * 2));
    let mark = s.output_len();
    // Typed as a person does: one key, then the other.
    s.type_in(b"\x10");
    std::thread::sleep(Duration::from_millis(300));
    s.type_in(b"\x11");
    s.expect(mark, "read escape sequence");
    assert_eq!(s.exit_code(), 1, "terminal output: {}", s.text());
    let i = inspect(d, name);
    assert_eq!(i["State"]["Running"], true, "detaching must not stop it");
}

fn attach_detach_attach(cli: Cli) {
    let d = daemon();
    let run = cli_command(
        &d,
        &cli,
        &["run", "-dit", "--name", "again", "busybox", "sh"],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(run.status.success(), "{run:?}");
    attach_echo_detach(&d, &cli, "again", "one");
    attach_echo_detach(&d, &cli, "again", "two");
    attach_echo_detach(&d, &cli, "again", "three");
}

/// `run -it` (StdinOnce, as Docker's CLI creates it), detach, then attach again: the first
/// client's end must not close the shell's terminal input.
fn run_it_detach_attach(cli: Cli) {
    let d = daemon();
    let mut s = PtySession::spawn(
        cli_command(&d, &cli, &["run", "-it", "--name", "once", "busybox", "sh"]),
        30,
        100,
    );
    s.expect(0, "# ");
    let mark = s.output_len();
    s.type_in(b"echo zero-$((2*2))\n");
    s.expect(mark, "zero-4");
    let mark = s.output_len();
    s.type_in(b"\x10\x11");
    // `run` detaches quietly, with status 0 (`attach` says "read escape sequence", status 1).
    assert_eq!(s.exit_code(), 0, "terminal output: {}", s.text());
    assert!(!s.text()[mark..].contains("zero"), "{}", s.text());
    let i = inspect(&d, "once");
    assert_eq!(i["Config"]["StdinOnce"], true);
    assert_eq!(i["State"]["Running"], true, "detaching must not stop it");
    attach_echo_detach(&d, &cli, "once", "one");
    attach_echo_detach(&d, &cli, "once", "two");
}

#[test]
fn berth_run_it_detach_then_attach_again() {
    require_root!();
    run_it_detach_attach(Cli::Berth);
}

#[test]
fn docker_cli_run_it_detach_then_attach_again() {
    require_root!();
    let Some(docker) = docker_cli() else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    run_it_detach_attach(Cli::Docker(docker));
}

#[test]
fn berth_attach_again_after_detaching_sees_output_and_sends_input() {
    require_root!();
    attach_detach_attach(Cli::Berth);
}

#[test]
fn docker_cli_attach_again_after_detaching_sees_output_and_sends_input() {
    require_root!();
    let Some(docker) = docker_cli() else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    attach_detach_attach(Cli::Docker(docker));
}
