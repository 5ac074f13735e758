//! `--userns-remap` (issue 18): containers run in a user namespace mapped to a subordinate id
//! range, so that root in the container is an unprivileged uid on the host. Each test makes
//! its own system user with its own range in /etc/subuid and /etc/subgid, and removes both
//! (a guard, also on failure). Needs root.

use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use berth_e2e::daemon::ChildGuard;
use berth_e2e::{Daemon, busybox_archive, require_root};

static USERS: AtomicU32 = AtomicU32::new(0);
const RANGE: u32 = 65536;

/// A throw-away system user (no home, no login) with, unless `ranges` is false, one range of
/// 65536 ids in /etc/subuid and /etc/subgid; all of it removed on drop.
struct RemapUser {
    name: String,
    /// The range's first id (the same in both files).
    base: u32,
}

impl RemapUser {
    fn new(ranges: bool) -> RemapUser {
        let n = USERS.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let name = format!("brm{}x{n}", pid % 100_000);
        // Far above what distributions hand out (100000 + 65536 per user), distinct per
        // process and test.
        let base = 2_000_000 + ((pid % 500) * 8 + n) * RANGE;
        let _g = berth_e2e::subids::lock();
        let st = Command::new("useradd")
            .args(["-r", "-M", "-s", "/bin/false", &name])
            .status()
            .expect("run useradd");
        assert!(st.success(), "useradd {name}");
        let user = RemapUser { name, base };
        if ranges {
            berth_e2e::subids::add_range(&user.name, base, RANGE);
        }
        user
    }
}

impl Drop for RemapUser {
    fn drop(&mut self) {
        let _g = berth_e2e::subids::lock();
        berth_e2e::subids::remove_ranges(&self.name);
        let _ = Command::new("userdel").arg(&self.name).status();
    }
}

/// A daemon remapped to `user`'s range, with busybox loaded. Its temporary directory is made
/// traversable (0711) as dockerd requires of every directory above the remapped root.
fn remapped_daemon(user: &RemapUser) -> Daemon {
    let d = Daemon::start_prepared(&["--userns-remap", &user.name], |root| {
        let parent = root.parent().expect("data root has a parent");
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o711)).unwrap();
    });
    let r = d.api().post(
        "/images/load?quiet=1",
        Some(&busybox_archive("busybox:latest")),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    d
}

fn remapped_root(d: &Daemon, user: &RemapUser) -> PathBuf {
    d.data_root().join(format!("{}.{}", user.base, user.base))
}

fn pid_of(d: &Daemon, name: &str) -> u32 {
    let out = d
        .berth(&["inspect", "-f", "{{.State.Pid}}", name])
        .success();
    out.stdout.trim().parse().expect("a pid")
}

/// `(real, effective, saved, fs)` uids (or gids) of a host process.
fn ids(pid: u32, field: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap())
        .collect()
}

fn container_dir(d: &Daemon, user: &RemapUser, name: &str) -> PathBuf {
    let id = d.berth(&["inspect", "-f", "{{.Id}}", name]).success();
    remapped_root(d, user)
        .join("containers")
        .join(id.stdout.trim())
}

/// The proof: container root is the range's first uid on the host; it cannot read a host
/// root-only file bound in read-only, cannot kill a host process it can see; a volume is its
/// own. The data root is dockerd's remapped layout.
#[test]
fn remapped_container_root_is_unprivileged_on_the_host() {
    require_root!();
    let user = RemapUser::new(true);
    let d = remapped_daemon(&user);
    let root = remapped_root(&d, &user);
    let m = std::fs::metadata(&root).expect("the remapped data root <uid>.<gid>");
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, user.base, 0o710));
    assert!(root.join("containers").is_dir(), "containers live in it");
    let info = d
        .berth(&["info", "-f", "{{json .SecurityOptions}} {{.DockerRootDir}}"])
        .success();
    assert!(info.stdout.contains("name=userns"), "{}", info.stdout);
    assert!(
        info.stdout
            .trim_end()
            .ends_with(&format!("/{}.{}", user.base, user.base)),
        "dockerd reports the remapped root: {}",
        info.stdout
    );

    d.berth(&["run", "-d", "--name", "ctr", "busybox", "sleep", "1000"])
        .success();
    let pid = pid_of(&d, "ctr");
    let b = user.base;
    assert_eq!(ids(pid, "Uid"), vec![b, b, b, b], "root in the container");
    assert_eq!(ids(pid, "Gid"), vec![b, b, b, b]);
    let inside = d.berth(&["exec", "ctr", "id", "-u"]).success();
    assert_eq!(inside.stdout.trim(), "0", "still root inside");

    // A file only host root may read, bound in read-only.
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "HOST-ONLY-7d1c").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(secret_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bind = format!("{}:/secret:ro", secret.display());
    let out = d.berth(&["run", "--rm", "-v", &bind, "busybox", "cat", "/secret"]);
    assert_ne!(
        out.code, 0,
        "read the host's root-only file: {}",
        out.stdout
    );
    assert!(out.stderr.contains("Permission denied"), "{}", out.stderr);
    assert!(!out.stdout.contains("HOST-ONLY"));
    // The same container opted out of remapping reads it: the mapping is what stops it.
    let out = d
        .berth(&[
            "run", "--rm", "--userns", "host", "-v", &bind, "busybox", "cat", "/secret",
        ])
        .success();
    assert_eq!(out.stdout.trim(), "HOST-ONLY-7d1c");

    // A host root process made visible in the container's PID namespace.
    let mut nsenter = ChildGuard(
        Command::new("nsenter")
            .args(["--target", &pid.to_string(), "--pid", "--", "sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("run nsenter"),
    );
    let host_pid = {
        let mut found = None;
        berth_e2e::containers::until("the host process in the container's namespace", || {
            let children =
                std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", nsenter.0.id()))
                    .unwrap_or_default();
            found = children
                .split_whitespace()
                .next()
                .map(|p| p.parse::<u32>().unwrap());
            found.is_some()
        });
        found.unwrap()
    };
    let status = std::fs::read_to_string(format!("/proc/{host_pid}/status")).unwrap();
    let ns_pid = status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_string();
    assert_eq!(ids(host_pid, "Uid"), vec![0, 0, 0, 0]);
    let seen = d.berth(&["exec", "ctr", "ps", "-o", "pid,comm"]).success();
    assert!(
        seen.stdout
            .lines()
            .any(|l| l.split_whitespace().next() == Some(&ns_pid)),
        "the container sees pid {ns_pid}: {}",
        seen.stdout
    );
    let out = d.berth(&["exec", "ctr", "kill", "-9", &ns_pid]);
    assert_ne!(out.code, 0, "killed a host root process");
    assert!(out.stderr.contains("not permitted"), "{}", out.stderr);
    assert!(
        Path::new(&format!("/proc/{host_pid}")).exists() && nsenter.0.try_wait().unwrap().is_none(),
        "the host process still runs"
    );
    let _ = nsenter.0.kill();
    let _ = nsenter.0.wait();

    // A new volume belongs to the remapped root: container root writes it.
    let out = d
        .berth(&[
            "run",
            "--rm",
            "-v",
            "vol1:/data",
            "busybox",
            "sh",
            "-c",
            "echo x > /data/f && stat -c %u:%g /data/f",
        ])
        .success();
    assert_eq!(out.stdout.trim(), "0:0");
    let f = root.join("volumes/vol1/_data/f");
    let m = std::fs::metadata(&f).expect("the volume's file");
    assert_eq!((m.uid(), m.gid()), (b, b));
    // So do /etc/hosts and the writable layer.
    d.berth(&[
        "exec",
        "ctr",
        "sh",
        "-c",
        "echo '10.9.9.9 x' >> /etc/hosts && touch /made",
    ])
    .success();
    let made = container_dir(&d, &user, "ctr").join("upper/made");
    assert_eq!(std::fs::metadata(made).unwrap().uid(), b);
    d.berth(&["rm", "-f", "ctr"]).success();
}

fn tar_owners(tar: &[u8]) -> Vec<(String, u64, u64)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let h = e.header();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                h.uid().unwrap(),
                h.gid().unwrap(),
            )
        })
        .collect()
}

/// exec, cp both ways, commit and export work under remapping and carry container ids, not
/// the host's shifted ones (which would make root's files nobody's in the next image).
#[test]
fn exec_cp_commit_export_under_remapping() {
    require_root!();
    let user = RemapUser::new(true);
    let d = remapped_daemon(&user);
    let b = user.base;
    d.berth(&["run", "-d", "--name", "ctr", "busybox", "sleep", "1000"])
        .success();
    d.berth(&["exec", "ctr", "sh", "-c", "echo hi > /root-file"])
        .success();
    let upper = container_dir(&d, &user, "ctr").join("upper");
    assert_eq!(std::fs::metadata(upper.join("root-file")).unwrap().uid(), b);

    // cp out: container ids in the tar.
    let out = Command::new(berth_e2e::daemon::binary("berth"))
        .args(["-H", &d.host(), "cp", "ctr:/root-file", "-"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let owners = tar_owners(&out.stdout);
    assert_eq!(owners, vec![("root-file".to_string(), 0, 0)]);

    // cp in: root's file in the container, the remapped root's on the host.
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("copied"), "in").unwrap();
    let src = host.path().join("copied");
    d.berth(&["cp", src.to_str().unwrap(), "ctr:/copied"])
        .success();
    let inside = d
        .berth(&["exec", "ctr", "stat", "-c", "%u:%g", "/copied"])
        .success();
    assert_eq!(inside.stdout.trim(), "0:0");
    let m = std::fs::metadata(upper.join("copied")).unwrap();
    assert_eq!((m.uid(), m.gid()), (b, b));

    // export: the image's files and the container's as root's.
    let mut child = Command::new(berth_e2e::daemon::binary("berth"))
        .args(["-H", &d.host(), "export", "ctr"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut tar = Vec::new();
    child.stdout.take().unwrap().read_to_end(&mut tar).unwrap();
    assert!(child.wait().unwrap().success());
    let owners = tar_owners(&tar);
    for want in ["bin/busybox", "root-file", "copied"] {
        let e = owners
            .iter()
            .find(|(p, ..)| p.trim_end_matches('/') == want)
            .unwrap_or_else(|| panic!("{want} in the export"));
        assert_eq!((e.1, e.2), (0, 0), "{want}");
    }

    // commit: the new image's layer holds root's file, which the next container sees as
    // root's (a shifted id would show as nobody).
    d.berth(&["commit", "ctr", "committed:1"]).success();
    let out = d
        .berth(&[
            "run",
            "--rm",
            "committed:1",
            "stat",
            "-c",
            "%u:%g %n",
            "/root-file",
            "/copied",
        ])
        .success();
    assert_eq!(out.stdout.trim(), "0:0 /root-file\n0:0 /copied");
    d.berth(&["rm", "-f", "ctr"]).success();
}

/// dockerd's rules: `--privileged`, `--pid host` and `--net host` need `--userns host`, which
/// runs the container as host root, unmapped.
#[test]
fn userns_host_opts_out_and_dockerd_rules_hold() {
    require_root!();
    let user = RemapUser::new(true);
    let d = remapped_daemon(&user);
    for (flags, want) in [
        (
            &["--privileged"][..],
            "privileged mode is incompatible with user namespaces.  You must run the container in the host namespace when running privileged mode",
        ),
        (
            &["--pid", "host"][..],
            "cannot share the host PID namespace when user namespaces are enabled",
        ),
        (
            &["--net", "host"][..],
            "cannot share the host's network namespace when user namespaces are enabled",
        ),
    ] {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend(["busybox", "true"]);
        let out = d.berth(&args).failure();
        assert!(out.stderr.contains(want), "{flags:?}: {}", out.stderr);
        args.splice(2..2, ["--userns", "host"]);
        d.berth(&args).success();
    }
    d.berth(&[
        "run", "-d", "--name", "hostns", "--userns", "host", "busybox", "sleep", "1000",
    ])
    .success();
    assert_eq!(ids(pid_of(&d, "hostns"), "Uid"), vec![0, 0, 0, 0]);
    let mode = d
        .berth(&["inspect", "-f", "{{.HostConfig.UsernsMode}}", "hostns"])
        .success();
    assert_eq!(mode.stdout.trim(), "host");
    d.berth(&["rm", "-f", "hostns"]).success();

    // Sharing a remapped container's PID or IPC namespace shares its user namespace too, as
    // with dockerd (the runtime could not join them from a new one).
    d.berth(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "busybox",
        "sleep",
        "1000",
    ])
    .success();
    for mode in ["--pid", "--ipc"] {
        let out = d
            .berth(&[
                "run",
                "--rm",
                mode,
                "container:donor",
                "busybox",
                "sh",
                "-c",
                "id -u; ps -o comm",
            ])
            .success();
        assert!(out.stdout.starts_with("0\n"), "{mode}: {}", out.stdout);
        if mode == "--pid" {
            assert!(
                out.stdout.contains("sleep"),
                "the donor's process: {}",
                out.stdout
            );
        }
    }
    d.berth(&["rm", "-f", "donor"]).success();
}

/// `--ipc host` and `--uts host` are allowed under remapping, as with dockerd (only `--pid`
/// and `--net host` are refused): the container, root of its own user namespace, shares the
/// host's /dev/shm (its files are the range's first uid on the host) and hostname.
#[test]
fn host_ipc_and_uts_under_remapping() {
    require_root!();
    let user = RemapUser::new(true);
    let d = remapped_daemon(&user);
    let name = format!("berth-e2e-ipc-{}", std::process::id());
    let shm = Path::new("/dev/shm").join(&name);
    struct Remove<'a>(&'a Path);
    impl Drop for Remove<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _cleanup = Remove(&shm);
    let out = d
        .berth(&[
            "run",
            "--rm",
            "--ipc",
            "host",
            "busybox",
            "sh",
            "-c",
            &format!("id -u; echo shared > /dev/shm/{name}"),
        ])
        .success();
    assert_eq!(out.stdout, "0\n");
    assert_eq!(std::fs::read_to_string(&shm).unwrap(), "shared\n");
    assert_eq!(std::fs::metadata(&shm).unwrap().uid(), user.base);
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let out = d
        .berth(&["run", "--rm", "--uts", "host", "busybox", "hostname"])
        .success();
    assert_eq!(out.stdout.trim(), host_name.trim());
}

/// A remap user without subordinate ranges: dockerd's error, no daemon, nothing created.
#[test]
fn a_remap_user_without_ranges_is_refused_at_start() {
    require_root!();
    let user = RemapUser::new(false);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::write(dir.path().join("none.json"), "{}").unwrap();
    let out = Command::new(berth_e2e::daemon::binary("berthd"))
        .arg("--data-root")
        .arg(&data)
        .arg("--exec-root")
        .arg(dir.path().join("exec"))
        .arg("--host")
        .arg(format!("unix://{}", dir.path().join("s.sock").display()))
        .arg("--config-file")
        .arg(dir.path().join("none.json"))
        .args(["--bridge", "none", "--userns-remap", &user.name])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started: {stderr}");
    assert!(
        stderr.contains(&format!(
            "error creating ID mappings: no subuid ranges found for user \"{}\"",
            user.name
        )),
        "{stderr}"
    );
    assert!(!data.exists(), "the data root was created");
    assert!(!dir.path().join("s.sock").exists());
}

/// `--userns-remap default` (daemon.json here) creates dockerd's `dockremap` system user with
/// a free range in /etc/subuid and /etc/subgid, and remaps to it. Skipped where the host
/// already has a dockremap user (a real one is not ours to remove).
#[test]
fn default_creates_dockremap_and_its_ranges() {
    require_root!();
    let exists = Command::new("id")
        .arg("dockremap")
        .output()
        .is_ok_and(|o| o.status.success());
    if exists {
        eprintln!("skipped: the host has a dockremap user");
        return;
    }
    // Removes what the daemon made, as RemapUser does for the tests' own users.
    let made = RemapUser {
        name: "dockremap".into(),
        base: 0,
    };
    let _g = berth_e2e::subids::lock();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let config = dir.path().join("daemon.json");
    std::fs::write(&config, r#"{"userns-remap": "default"}"#).unwrap();
    let sock = dir.path().join("s.sock");
    let mut daemon = ChildGuard(
        Command::new(berth_e2e::daemon::binary("berthd"))
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("exec"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .arg("--config-file")
            .arg(&config)
            .args(["--bridge", "none"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    berth_e2e::containers::until("the daemon's socket", || sock.exists());
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    let _ = rustix::mount::unmount(dir.path().join("exec"), rustix::mount::UnmountFlags::DETACH);
    // The killed daemon's (empty) nftables table, keyed on the data root it was given.
    let table = format!(
        "berth_{}",
        &berth_e2e::fixtures::sha256_hex(dir.path().join("data").as_os_str().as_encoded_bytes())
            [..8]
    );
    let _ = Command::new("nft")
        .args(["delete", "table", "inet", &table])
        .stderr(Stdio::null())
        .status();
    let line = |file: &str| {
        std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .find(|l| l.starts_with("dockremap:"))
            .map(str::to_string)
    };
    let (u, g) = (line("/etc/subuid"), line("/etc/subgid"));
    drop(_g);
    let u = u.expect("a dockremap range in /etc/subuid");
    assert!(g.is_some(), "a dockremap range in /etc/subgid");
    let f: Vec<&str> = u.split(':').collect();
    assert_eq!(f[2], "65536");
    let start: u32 = f[1].parse().unwrap();
    assert!(start >= 100_000);
    let gstart = g.unwrap().split(':').nth(1).unwrap().to_string();
    assert!(
        dir.path().join(format!("data/{start}.{gstart}")).is_dir(),
        "the remapped data root"
    );
    drop(made);
}

#[test]
fn builds_under_remapping_store_the_containers_own_ids() {
    require_root!();
    let user = RemapUser::new(true);
    let d = remapped_daemon(&user);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nRUN echo made > /made && id -u > /uid\nCOPY copied /copied\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("copied"), "c").unwrap();
    d.berth(&[
        "build",
        "-q",
        "-t",
        "remapped-build",
        dir.path().to_str().unwrap(),
    ])
    .success();
    // Root in the build container is root in the image: the layer holds 0:0 files, whoever
    // runs the image later (here, without remapping).
    let out = d
        .berth(&[
            "run",
            "--rm",
            "--userns",
            "host",
            "remapped-build",
            "sh",
            "-c",
            "cat /uid; stat -c %u:%g /made /copied",
        ])
        .success();
    assert_eq!(
        out.stdout.split_whitespace().collect::<Vec<_>>(),
        ["0", "0:0", "0:0"]
    );
}
