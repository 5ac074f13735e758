//! A full disk must not lock the operator out: on a data root with no space left, the daemon
//! restarts, and exec, stop, rm, rmi, volume rm and the prunes work (they are how space is
//! freed), writing nothing that is not needed and never leaving a truncated record. The data
//! root is a small tmpfs, filled up by a file.

use std::io::Write;
use std::path::Path;

use berth_e2e::fixtures::ImageSpec;
use berth_e2e::{Daemon, busybox_archive, require_root};
use serde_json::Value;

/// Fills the filesystem of `dir` with one file until a write fails for lack of space.
fn fill(dir: &Path) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut f = std::fs::File::create(dir.join(format!("filler-{n}"))).unwrap();
    for chunk in [1 << 20, 4096, 512] {
        let buf = vec![0x5a_u8; chunk];
        loop {
            match f.write_all(&buf) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc_enospc()) => break,
                Err(e) => panic!("filling {}: {e}", dir.display()),
            }
        }
    }
    let _ = f.sync_all();
    // Nothing more fits: even a small new file fails.
    let probe = std::fs::write(dir.join("probe"), vec![1_u8; 8192]);
    assert!(probe.is_err(), "the data root is not full");
    let _ = std::fs::remove_file(dir.join("probe"));
}

fn libc_enospc() -> i32 {
    28
}

fn load(d: &Daemon, archive: &[u8]) {
    let r = d.api().post("/images/load?quiet=1", Some(archive));
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Every container record in the data root parses (none was left truncated).
fn records_parse(d: &Daemon) {
    let dir = d.data_root().join("containers");
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path().join("config.v2.json");
        if p.exists() {
            let bytes = std::fs::read(&p).unwrap();
            serde_json::from_slice::<Value>(&bytes)
                .unwrap_or_else(|err| panic!("{}: {err}", p.display()));
        }
    }
}

#[test]
fn a_full_data_root_still_restarts_execs_stops_and_frees_space() {
    require_root!();
    let mut d = Daemon::start_on_tmpfs("48m");
    load(&d, &busybox_archive("busybox:latest"));
    let big: Vec<u8> = (0..3 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    load(
        &d,
        &ImageSpec::busybox(Some("big:1"))
            .file_layer(&[("big.bin", &big)])
            .docker_archive(),
    );
    d.berth(&["tag", "busybox", "extra:1"]).success();
    d.berth(&["run", "-d", "--name", "keep", "busybox", "sleep", "600"])
        .success();
    for name in ["other", "killed", "forced"] {
        d.berth(&["run", "-d", "--name", name, "busybox", "sleep", "600"])
            .success();
    }
    d.berth(&["create", "--name", "dead", "busybox", "true"])
        .success();
    d.berth(&["create", "--name", "pruned", "busybox", "true"])
        .success();
    d.berth(&["volume", "create", "vol1"]).success();
    d.berth(&["volume", "create"]).success();
    fill(&d.data_root());

    // A run refused for lack of space leaves nothing that stops the daemon from starting
    // again on the full disk (nothing unchanged is rewritten at start).
    let refused = d.berth(&["run", "--name", "nospace", "busybox", "true"]);
    assert_ne!(refused.code, 0, "a run on a full disk: {}", refused.stdout);
    d.restart();
    let ps = d.berth(&["ps", "--format", "{{.Names}}"]).success().stdout;
    assert!(ps.lines().any(|l| l == "keep"), "{ps}");

    // exec, even though Berth records execs on disk.
    fill(&d.data_root());
    let out = d.berth(&["exec", "keep", "echo", "hello"]).success();
    assert_eq!(out.stdout.trim(), "hello");
    let out = d.berth(&["exec", "keep", "ls", "/"]).success();
    assert!(out.stdout.contains("bin"), "{}", out.stdout);

    // stop, then the ways to free space.
    fill(&d.data_root());
    d.berth(&["stop", "-t", "1", "other"]).success();
    let st = d
        .berth(&["inspect", "-f", "{{.State.Running}}", "other"])
        .success();
    assert_eq!(st.stdout.trim(), "false");
    // Each way of freeing space works on a disk that is full again.
    let root = d.data_root();
    for args in [
        &["kill", "killed"][..],
        &["wait", "killed"],
        &["rm", "-f", "forced"],
        &["rm", "other"],
        &["rm", "killed"],
        &["rm", "dead"],
        &["rmi", "extra:1"],
        &["rmi", "big:1"],
        &["volume", "rm", "vol1"],
        &["volume", "prune", "-f"],
        &["container", "prune", "-f"],
        &["image", "prune", "-a", "-f"],
    ] {
        fill(&root);
        eprintln!("on a full disk: berth {}", args.join(" "));
        d.berth(args).success();
    }
    records_parse(&d);

    // What was freed is gone for good: a restart sees the same state.
    d.restart();
    let all = d
        .berth(&["ps", "-a", "--format", "{{.Names}}"])
        .success()
        .stdout;
    assert_eq!(all.trim(), "keep");
    let images = d
        .berth(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
        .success()
        .stdout;
    assert_eq!(images.trim(), "busybox:latest");
    let vols = d.berth(&["volume", "ls", "-q"]).success().stdout;
    assert_eq!(vols.trim(), "");
    records_parse(&d);
}
