//! Rotated log files compressed as Docker's `compress` option does (the `local` driver's
//! default, json-file's opt-in), read back by `logs` whole, with `--tail` and while following.

use std::path::{Path, PathBuf};

use berth_e2e::Daemon;
use berth_e2e::containers::{daemon_with_busybox as daemon, until};
use berth_e2e::daemon::{ChildGuard, binary};
use berth_e2e::require_root;

const LINES: usize = 200;

/// A shell loop printing `line-0` .. `line-<LINES-1>`.
fn printer() -> String {
    format!("i=0; while [ $i -lt {LINES} ]; do echo line-$i; i=$((i+1)); done")
}

fn expected(from: usize) -> String {
    (from..LINES).map(|i| format!("line-{i}\n")).collect()
}

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Waits until every rotated file next to `log` is compressed (the shim gzips the newest one
/// beside the container's output), then checks they are gzip files; returns how many.
fn rotated_are_gzip(log: &Path) -> usize {
    let dir = log.parent().unwrap();
    let base = log.file_name().unwrap().to_str().unwrap().to_string();
    let rotated = |n: &String| n.starts_with(&format!("{base}.")) && n != &base;
    until("rotated files to be compressed", || {
        files(dir)
            .iter()
            .filter(|n| rotated(n))
            .all(|n| n.ends_with(".gz"))
    });
    let gz: Vec<String> = files(dir).into_iter().filter(|n| rotated(n)).collect();
    for n in &gz {
        let bytes = std::fs::read(dir.join(n)).unwrap();
        assert_eq!(&bytes[..2], &[0x1f, 0x8b], "{n} is not gzip");
    }
    gz.len()
}

fn container_dir(d: &Daemon, name: &str) -> PathBuf {
    let out = d.berth(&["inspect", "-f", "{{.Id}}", name]).success();
    d.data_root().join("containers").join(out.stdout.trim())
}

#[test]
fn local_driver_gzips_rotated_files_and_logs_reads_them_in_order() {
    require_root!();
    let d = daemon();
    // Before the container prints anything, follow its log from the start.
    d.berth(&[
        "run",
        "-d",
        "--name",
        "lz",
        "--log-driver",
        "local",
        "--log-opt",
        "max-size=1k",
        "--log-opt",
        "max-file=30",
        "busybox",
        "sh",
        "-c",
        &format!("while [ ! -e /tmp/go ]; do sleep 0.05; done; {}", printer()),
    ])
    .success();
    let follower = std::process::Command::new(binary("berth"))
        .args(["-H", &d.host(), "logs", "-f", "lz"])
        .env("BERTH_CONFIG", d.dir().join("berth-config"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut follower = ChildGuard(follower);
    let mut stdout = follower.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut s);
        let _ = tx.send(s);
    });
    d.berth(&["exec", "lz", "touch", "/tmp/go"]).success();
    assert_eq!(d.berth(&["wait", "lz"]).success().stdout.trim(), "0");

    let log = container_dir(&d, "lz").join("local-logs/container.log");
    let n = rotated_are_gzip(&log);
    assert!(
        n >= 3,
        "expected several rotations: {:?}",
        files(log.parent().unwrap())
    );

    // `-f` ended with the container, having read across every rotation.
    // (The deadline only turns a hang into a failure.)
    let out = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("logs -f did not end with the container");
    assert_eq!(out, expected(0));
    drop(follower);

    let all = d.berth(&["logs", "lz"]).success();
    assert_eq!(all.stdout, expected(0));
    let tail = d.berth(&["logs", "--tail", "150", "lz"]).success();
    assert_eq!(tail.stdout, expected(LINES - 150));
    if let Some(out) = d.docker(&["logs", "--tail", "5", "lz"]) {
        assert_eq!(out.success().stdout, expected(LINES - 5));
        let out = d.docker(&["logs", "lz"]).unwrap().success();
        assert_eq!(out.stdout, expected(0));
    }
}

#[test]
fn json_file_compress_option_and_local_compress_false() {
    require_root!();
    let d = daemon();
    for (name, driver, compress) in [("jz", "json-file", "true"), ("lp", "local", "false")] {
        d.berth(&[
            "run",
            "--name",
            name,
            "--log-driver",
            driver,
            "--log-opt",
            "max-size=1k",
            "--log-opt",
            "max-file=40",
            "--log-opt",
            &format!("compress={compress}"),
            "busybox",
            "sh",
            "-c",
            &printer(),
        ])
        .success();
        assert_eq!(d.berth(&["logs", name]).success().stdout, expected(0));
        assert_eq!(
            d.berth(&["logs", "--tail", "3", name]).success().stdout,
            expected(LINES - 3)
        );
    }
    let json_log = {
        let dir = container_dir(&d, "jz");
        let id = dir.file_name().unwrap().to_str().unwrap().to_string();
        dir.join(format!("{id}-json.log"))
    };
    assert!(rotated_are_gzip(&json_log) >= 3);
    let plain = container_dir(&d, "lp").join("local-logs");
    let names = files(&plain);
    assert!(names.len() >= 4, "{names:?}");
    assert!(names.iter().all(|n| !n.ends_with(".gz")), "{names:?}");
    let bad = d.berth(&[
        "run",
        "--log-driver",
        "local",
        "--log-opt",
        "compress=maybe",
        "busybox",
        "true",
    ]);
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("compress"), "{}", bad.stderr);
}
