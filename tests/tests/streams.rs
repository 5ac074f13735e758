//! Attach and exec streams: large standard input round trips byte-exact (both directions full
//! at once), end of input reaches the process, exit codes are the container's; hijacked
//! answers come alone before any output; exec start's framing follows the start body's `Tty`;
//! a failed exec start says why.

use berth_e2e::containers::daemon_with_busybox as daemon;
use berth_e2e::daemon::binary;
use berth_e2e::fixtures::sha256_hex;
use berth_e2e::require_root;
use berth_e2e::{Daemon, docker_cli};
use std::io::{Read, Write};
use std::process::{Command, Stdio};

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
