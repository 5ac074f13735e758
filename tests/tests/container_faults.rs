//! Containers misbehaving and being contained: a fork bomb against `--pids-limit`, a memory
//! hog against `-m`, a shim killed under its container, what a default container may not do,
//! and interactive sessions through a real pseudo-terminal. Every daemon has its own cgroup
//! parent; dropping it kills the containers by their recorded pids and removes the cgroups.
//! Processes a test starts itself are held in `ChildGuard`s (killed by their own PID).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_e2e::containers::{daemon_with_busybox as daemon, inspect, until, wait};
use berth_e2e::pty::{Cli, PtySession, cli_command};
use berth_e2e::require_root;
use berth_e2e::{Daemon, docker_cli};

/// The container's cgroup directory in `controller`'s hierarchy (the unified tree on v2).
fn cgroup_dir(d: &Daemon, id: &str, controller: &str) -> PathBuf {
    let root = Path::new("/sys/fs/cgroup");
    let rel = format!("{}/{id}", d.cgroup_parent().trim_start_matches('/'));
    if root.join("cgroup.controllers").exists() {
        root.join(rel)
    } else {
        root.join(controller).join(rel)
    }
}

/// Every cgroup directory the container still has, in any hierarchy.
fn cgroup_leftovers(d: &Daemon, id: &str) -> Vec<PathBuf> {
    let rel = format!("{}/{id}", d.cgroup_parent().trim_start_matches('/'));
    let mut out = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let p = h.path().join(&rel);
        if p.is_dir() {
            out.push(p);
        }
    }
    let unified = Path::new("/sys/fs/cgroup").join(&rel);
    if unified.is_dir() && !out.contains(&unified) {
        out.push(unified);
    }
    out
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn procs_in(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

fn is_mounted(path: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_string_lossy().to_string();
    info.lines()
        .any(|l| l.split_whitespace().nth(4) == Some(want.as_str()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------------------------------------

#[test]
fn a_fork_bomb_is_held_by_the_pids_limit_and_rm_f_ends_it() {
    require_root!();
    let d = daemon();
    let out = d
        .berth(&[
            "run",
            "-d",
            "--name",
            "bomb",
            "--pids-limit",
            "50",
            "busybox",
            "sh",
            "-c",
            // The bomb runs in a shell of its own: ash exits when a fork fails, so had the
            // container's init forked the bomb's first pipeline itself, a loaded machine could
            // let the bomb's children take the last pids before init's second fork.
            "sh -c 'f(){ f|f& }; f'; exec sleep 1000",
        ])
        .success();
    let id = out.stdout.trim().to_string();
    assert_eq!(id.len(), 64, "{out:?}");
    let pids = cgroup_dir(&d, &id, "pids");
    assert_eq!(read_trim(&pids.join("pids.max")), "50");
    // The kernel refused forks at the limit: the bomb really pushed against it.
    until("the bomb to hit pids.max", || {
        std::fs::read_to_string(pids.join("pids.events"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("max "))
                    .and_then(|n| n.trim().parse::<u64>().ok())
            })
            .is_some_and(|n| n > 0)
    });
    for _ in 0..20 {
        let current: u64 = read_trim(&pids.join("pids.current")).parse().unwrap();
        assert!(current <= 50, "pids.current {current} above the limit");
        assert!(procs_in(&pids) <= 50);
        std::thread::sleep(Duration::from_millis(50));
    }
    // The daemon still answers while the bomb runs.
    assert_eq!(d.api().get("/_ping").status, 200);
    let i = inspect(&d, "bomb");
    assert_eq!(i["State"]["Running"], true);
    assert_eq!(i["HostConfig"]["PidsLimit"], 50);
    let top = d.api().get("/containers/bomb/top");
    assert_eq!(top.status, 200, "{}", top.text());
    let rows = top.json()["Processes"].as_array().unwrap().len();
    assert!((1..=50).contains(&rows), "top shows {rows} processes");
    let ps = d
        .berth(&["ps", "--filter", "name=bomb", "--format", "{{.Names}}"])
        .success();
    assert_eq!(ps.stdout.trim(), "bomb");

    d.berth(&["rm", "-f", "bomb"]).success();
    assert_eq!(d.api().get("/containers/bomb/json").status, 404);
    until("the bomb's cgroup to be empty and removed", || {
        cgroup_leftovers(&d, &id)
            .iter()
            .all(|dir| procs_in(dir) == 0 && !dir.exists())
    });
    assert!(!d.data_root().join("containers").join(&id).exists());
}

#[test]
fn a_memory_hog_is_oom_killed_and_reported() {
    require_root!();
    let d = daemon();
    let since = unix_now();
    let out = d.berth(&[
        "run",
        "--name",
        "hog",
        "-m",
        "32m",
        "--memory-swap",
        "32m",
        "busybox",
        "sh",
        "-c",
        "x=0123456789abcdef; while :; do x=$x$x; done",
    ]);
    assert_eq!(out.code, 137, "{out:?}");
    let i = inspect(&d, "hog");
    let id = i["Id"].as_str().unwrap().to_string();
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["ExitCode"], 137);
    assert_eq!(i["State"]["OOMKilled"], true, "{}", i["State"]);
    assert_eq!(i["HostConfig"]["Memory"], 32 << 20);
    assert_eq!(i["HostConfig"]["MemorySwap"], 32 << 20);

    let until_ts = unix_now() + 1;
    let filters = "%7B%22container%22%3A%5B%22hog%22%5D%7D";
    let ev = d.api().get(&format!(
        "/events?since={since}&until={until_ts}&filters={filters}"
    ));
    assert_eq!(ev.status, 200, "{}", ev.text());
    let actions: Vec<String> = ev
        .json_lines()
        .iter()
        .filter(|e| e["id"] == id.as_str())
        .map(|e| e["Action"].as_str().unwrap_or_default().to_string())
        .collect();
    let oom = actions.iter().position(|a| a == "oom");
    let die = actions.iter().position(|a| a == "die");
    assert!(
        oom.is_some() && die.is_some() && oom < die,
        "oom then die expected: {actions:?}"
    );

    let ps = d
        .berth(&[
            "ps",
            "-a",
            "--filter",
            "name=hog",
            "--format",
            "{{.Status}}",
        ])
        .success();
    assert!(ps.stdout.starts_with("Exited (137) "), "{}", ps.stdout);
    d.berth(&["rm", "hog"]).success();
    assert!(cgroup_leftovers(&d, &id).is_empty());
}

#[test]
fn a_killed_shim_ends_its_container_and_leaves_nothing_behind() {
    require_root!();
    let d = daemon();
    let id = d
        .berth(&["run", "-d", "--name", "orphan", "busybox", "sleep", "1000"])
        .success()
        .stdout
        .trim()
        .to_string();
    let dir = d.data_root().join("containers").join(&id);
    let shim: i32 = read_trim(&d.run_dir(&id).join("shim.pid")).parse().unwrap();
    let init = inspect(&d, "orphan")["State"]["Pid"].as_i64().unwrap() as i32;
    assert!(init > 0 && init != shim);
    let rootfs = dir.join("rootfs");
    assert!(is_mounted(&rootfs));
    assert!(!cgroup_leftovers(&d, &id).is_empty());

    rustix::process::kill_process(
        rustix::process::Pid::from_raw(shim).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();

    // wait returns: the daemon noticed.
    assert_eq!(wait(&d, "orphan"), 137);
    let i = inspect(&d, "orphan");
    assert_eq!(i["State"]["Running"], false, "{}", i["State"]);
    assert_eq!(i["State"]["Status"], "exited");
    assert_eq!(i["State"]["Pid"], 0);
    assert_eq!(i["State"]["Error"], "shim exited unexpectedly");
    // The container's process did not outlive its shim (gone, or a zombie of the host's init).
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.chars().next().unwrap_or('?'));
    assert!(
        stat.is_empty() || state == Some('Z'),
        "init {init} still runs: {stat}"
    );
    assert!(!is_mounted(&rootfs), "rootfs still mounted");
    assert!(
        cgroup_leftovers(&d, &id).is_empty(),
        "cgroups left: {:?}",
        cgroup_leftovers(&d, &id)
    );

    // Nothing hangs afterwards.
    d.berth(&["stop", "-t", "1", "orphan"]).success();
    d.berth(&["rm", "orphan"]).success();
    assert!(!dir.exists());
    assert_eq!(d.api().get("/_ping").status, 200);
}

/// A shim killed while the daemon is down is found dead at adoption, and recorded as the
/// live daemon's watcher records it: exit 137, `shim exited unexpectedly`, its container's
/// processes killed, its cgroups and rootfs gone.
#[test]
fn a_shim_killed_while_the_daemon_is_down_is_recorded_as_a_live_daemon_would() {
    require_root!();
    let mut d = daemon();
    let id = d
        .berth(&["run", "-d", "--name", "orphan2", "busybox", "sleep", "1000"])
        .success()
        .stdout
        .trim()
        .to_string();
    let rootfs = d.data_root().join("containers").join(&id).join("rootfs");
    let shim: i32 = read_trim(&d.run_dir(&id).join("shim.pid")).parse().unwrap();
    let init: i32 = read_trim(&d.run_dir(&id).join("init.pid")).parse().unwrap();
    d.kill_hard();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(shim).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    until("the shim to be gone", || {
        let stat = std::fs::read_to_string(format!("/proc/{shim}/stat")).unwrap_or_default();
        stat.is_empty()
            || stat
                .rsplit_once(") ")
                .is_some_and(|(_, s)| s.starts_with('Z'))
    });
    assert!(
        !d.run_dir(&id).join("exit.json").exists(),
        "a SIGKILLed shim records no exit"
    );
    d.start_again();

    let i = inspect(&d, "orphan2");
    assert_eq!(i["State"]["Status"], "exited", "{}", i["State"]);
    assert_eq!(i["State"]["ExitCode"], 137, "{}", i["State"]);
    assert_eq!(i["State"]["Error"], "shim exited unexpectedly");
    assert_eq!(i["State"]["Pid"], 0);
    assert_eq!(wait(&d, "orphan2"), 137);
    let stat = std::fs::read_to_string(format!("/proc/{init}/stat")).unwrap_or_default();
    let state = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.chars().next().unwrap_or('?'));
    assert!(
        stat.is_empty() || state == Some('Z'),
        "init {init} still runs: {stat}"
    );
    assert!(!is_mounted(&rootfs), "rootfs still mounted");
    assert!(
        cgroup_leftovers(&d, &id).is_empty(),
        "cgroups left: {:?}",
        cgroup_leftovers(&d, &id)
    );
    d.berth(&["rm", "orphan2"]).success();
}

#[test]
fn a_default_container_is_confined() {
    require_root!();
    let d = daemon();
    let daemon_pid = d.pid().unwrap();
    let script = format!(
        "echo tree: $(ps -o pid=,ppid= | tr -s ' ' | sed 's/^ //; s/ /:/' | tr '\\n' ' '); \
         kill -0 {daemon_pid} 2>/dev/null && echo kill-ok || echo kill-denied; \
         mkdir -p /mnt; mount -t tmpfs none /mnt 2>&1 && echo mount-ok || echo mount-denied; \
         echo kcore: $(cat /proc/kcore 2>/dev/null | wc -c); \
         echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo procsys-ok || echo procsys-denied; \
         touch /sys/berth-test 2>/dev/null && echo sys-ok || echo sys-denied; \
         grep -E ' /proc/sys | /sys ' /proc/mounts | cut -d' ' -f2,4 | cut -d, -f1; \
         grep -E '^Cap(Eff|Bnd):' /proc/self/status; \
         echo junk > /tmp/x.ko; insmod /tmp/x.ko 2>&1; echo insmod=$?"
    );
    let out = d
        .berth(&["run", "--rm", "busybox", "sh", "-c", &script])
        .success();
    let text = out.stdout;
    // Only the container's own processes, in its own pid namespace: one tree rooted at pid 1
    // (on the host, pid 1 and the kernel threads would both have parent 0).
    let tree: Vec<(i64, i64)> = text
        .lines()
        .find_map(|l| l.strip_prefix("tree: "))
        .unwrap_or_else(|| panic!("{text}"))
        .split_whitespace()
        .map(|p| {
            let (pid, ppid) = p.split_once(':').unwrap();
            (pid.parse().unwrap(), ppid.parse().unwrap())
        })
        .collect();
    assert!(tree.contains(&(1, 0)), "{text}");
    assert!(tree.len() <= 6, "host processes visible: {text}");
    for (pid, ppid) in &tree {
        assert!(
            *pid == 1 || tree.iter().any(|(p, _)| p == ppid),
            "process {pid} has a parent outside the container: {text}"
        );
    }
    assert!(text.contains("kill-denied"), "{text}");
    assert!(text.contains("mount-denied"), "{text}");
    assert!(
        text.contains("Operation not permitted") || text.contains("Permission denied"),
        "{text}"
    );
    assert!(text.contains("kcore: 0"), "{text}");
    assert!(text.contains("procsys-denied"), "{text}");
    assert!(text.contains("sys-denied"), "{text}");
    assert!(text.contains("/proc/sys ro"), "{text}");
    assert!(text.contains("/sys ro"), "{text}");
    assert!(text.contains("CapEff:\t00000000a80425fb"), "{text}");
    let bnd = text
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:\t"))
        .unwrap();
    let bnd = u64::from_str_radix(bnd.trim(), 16).unwrap();
    assert_eq!(bnd & (1 << 16), 0, "CAP_SYS_MODULE in the bounding set");
    assert!(text.contains("insmod=1"), "{text}");
    assert!(
        !text.contains("insmod=0") && text.contains("not permitted"),
        "{text}"
    );

    let out = d
        .berth(&[
            "run",
            "--rm",
            "--cap-drop",
            "ALL",
            "busybox",
            "grep",
            "CapEff",
            "/proc/self/status",
        ])
        .success();
    assert_eq!(out.stdout, "CapEff:\t0000000000000000\n");

    let out = d
        .berth(&[
            "run",
            "--rm",
            "--privileged",
            "busybox",
            "sh",
            "-c",
            "mkdir -p /mnt && mount -t tmpfs none /mnt && grep ' /mnt ' /proc/mounts | cut -d' ' -f3",
        ])
        .success();
    assert_eq!(out.stdout, "tmpfs\n");

    // A privileged container sees the host's device nodes, a default one does not.
    let host_dev = std::fs::read_dir("/dev")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            use std::os::unix::fs::FileTypeExt;
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            std::fs::metadata(p).is_ok_and(|m| m.file_type().is_block_device())
                && !name.starts_with("loop")
        })
        .or_else(|| Some(PathBuf::from("/dev/loop-control")).filter(|p| p.exists()));
    if let Some(dev) = host_dev {
        let dev = dev.to_string_lossy().into_owned();
        let test = format!("test -b {dev} || test -c {dev}");
        d.berth(&["run", "--rm", "--privileged", "busybox", "sh", "-c", &test])
            .success();
        d.berth(&["run", "--rm", "busybox", "sh", "-c", &test])
            .failure();
    }
}

#[test]
fn ipc_modes_share_dev_shm_only_with_shareable_donors() {
    require_root!();
    let d = daemon();
    d.berth(&[
        "run",
        "-d",
        "--name",
        "donor",
        "--ipc",
        "shareable",
        "busybox",
        "sh",
        "-c",
        "echo from-donor > /dev/shm/note; sleep 600",
    ])
    .success();
    d.berth(&["run", "-d", "--name", "private", "busybox", "sleep", "600"])
        .success();
    until("the donor writes its note", || {
        d.berth(&["exec", "donor", "cat", "/dev/shm/note"]).code == 0
    });
    // A joiner shares the donor's IPC namespace and its /dev/shm.
    let out = d
        .berth(&[
            "run",
            "--rm",
            "--ipc",
            "container:donor",
            "busybox",
            "sh",
            "-c",
            "cat /dev/shm/note; readlink /proc/self/ns/ipc",
        ])
        .success();
    let donor_ns = d
        .berth(&["exec", "donor", "readlink", "/proc/self/ns/ipc"])
        .success()
        .stdout;
    assert_eq!(out.stdout, format!("from-donor\n{donor_ns}"));
    // A private container cannot be joined.
    let err = d
        .berth(&[
            "run",
            "--rm",
            "--ipc",
            "container:private",
            "busybox",
            "true",
        ])
        .failure();
    assert!(err.stderr.contains("non-shareable IPC"), "{}", err.stderr);
    // `none`: no /dev/shm at all; a made-up mode is refused at create.
    d.berth(&[
        "run",
        "--rm",
        "--ipc",
        "none",
        "busybox",
        "sh",
        "-c",
        "! grep -q ' /dev/shm ' /proc/mounts",
    ])
    .success();
    let err = d
        .berth(&["create", "--ipc", "bogus", "busybox", "true"])
        .failure();
    assert!(
        err.stderr.contains("invalid IPC mode: bogus"),
        "{}",
        err.stderr
    );
    // The donor's host-side /dev/shm goes away with it.
    let id = inspect(&d, "donor")["Id"].as_str().unwrap().to_string();
    let shm = d
        .data_root()
        .join("containers")
        .join(&id)
        .join("mounts/shm");
    assert!(berth_runtime_is_mounted(&shm));
    d.berth(&["rm", "-f", "donor", "private"]).success();
    assert!(!berth_runtime_is_mounted(&shm));
}

fn berth_runtime_is_mounted(p: &Path) -> bool {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(p.to_str().unwrap()))
}

// ---- interactive sessions through a pseudo-terminal ----------------------------------------

fn interactive_session_and_detach(cli: Cli) {
    let d = daemon();
    // run -it --rm: type into the shell, see its answers, exit with a code.
    let mut s = PtySession::spawn(
        cli_command(&d, &cli, &["run", "-it", "--rm", "busybox", "sh"]),
        33,
        101,
    );
    s.expect(0, "# ");
    let mark = s.output_len();
    s.type_in(b"echo hi-$((1+2))\n");
    s.expect(mark, "hi-3");
    let mark = s.output_len();
    s.type_in(b"stty size\n");
    s.expect(mark, "33 101");
    s.type_in(b"exit 3\n");
    assert_eq!(s.exit_code(), 3, "terminal output: {}", s.text());
    until("--rm to remove the container", || {
        d.api().get("/containers/json?all=1").json() == serde_json::json!([])
    });

    // run -it -d, then attach and detach with ctrl-p ctrl-q.
    let run = cli_command(
        &d,
        &cli,
        &["run", "-it", "-d", "--name", "det", "busybox", "sh"],
    )
    .stdin(Stdio::null())
    .output()
    .unwrap();
    assert!(run.status.success(), "{run:?}");
    let mut s = PtySession::spawn(cli_command(&d, &cli, &["attach", "det"]), 33, 101);
    // Attaching prints nothing by itself: the shell's answer shows the stream is connected.
    let mark = s.output_len();
    s.type_in(b"echo attached-$((2+2))\n");
    s.expect(mark, "attached-4");
    let mark = s.output_len();
    s.type_in(b"\x10\x11");
    // As docker attach does: the escape proxy's error, exit status 1.
    s.expect(mark, "read escape sequence");
    assert_eq!(s.exit_code(), 1, "terminal output: {}", s.text());
    let i = inspect(&d, "det");
    assert_eq!(i["State"]["Running"], true, "detaching must not stop it");
    let r = d.api().delete("/containers/det?force=1");
    assert_eq!(r.status, 204, "{}", r.text());
}

#[test]
fn berth_run_it_through_a_real_pty_and_detach() {
    require_root!();
    interactive_session_and_detach(Cli::Berth);
}

#[test]
fn docker_cli_run_it_through_a_real_pty_and_detach() {
    require_root!();
    let Some(docker) = docker_cli() else {
        eprintln!("skipped: no docker CLI");
        return;
    };
    interactive_session_and_detach(Cli::Docker(docker));
}

/// A custom `--security-opt seccomp=PROFILE.json` applies to the container and its execs, with
/// its own errno and argument conditions (the daemon compiles it once; the container's process
/// loads the program before exec).
#[test]
fn a_custom_seccomp_profile_applies_to_run_and_exec() {
    require_root!();
    let d = daemon();
    // Everything allowed except: mkdir in any form fails with ENOSYS (38), and chmod to 0777
    // fails with EPERM while other modes work (one condition on the mode argument, whose
    // index differs between chmod and fchmodat).
    let profile = r#"{
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 511, "op": "SCMP_CMP_EQ"}]},
            {"names": ["fchmodat", "fchmodat2"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 2, "value": 511, "op": "SCMP_CMP_EQ"}]}
        ]
    }"#;
    let path = d.dir().join("profile.json");
    std::fs::write(&path, profile).unwrap();
    let opt = format!("seccomp={}", path.display());
    let script = "mkdir /made 2>&1; echo mkdir=$?; touch /f; chmod 755 /f; echo chmod755=$?; \
                  chmod 777 /f 2>&1; echo chmod777=$?";
    let check = |text: &str| {
        assert!(text.contains("Function not implemented"), "{text}");
        assert!(text.contains("mkdir=1"), "{text}");
        assert!(text.contains("chmod755=0"), "{text}");
        assert!(text.contains("chmod777=1"), "{text}");
        assert!(text.contains("Operation not permitted"), "{text}");
    };
    let run = [
        "run",
        "--rm",
        "--security-opt",
        &opt,
        "busybox",
        "sh",
        "-c",
        script,
    ];
    check(&d.berth(&run).success().stdout);

    d.berth(&[
        "run",
        "-d",
        "--name",
        "custom-sc",
        "--security-opt",
        &opt,
        "busybox",
        "sleep",
        "100",
    ])
    .success();
    let out = d
        .berth(&["exec", "custom-sc", "sh", "-c", script])
        .success();
    check(&out.stdout);
    d.berth(&["rm", "-f", "custom-sc"]).success();

    // The docker CLI reads the file itself and sends the profile in HostConfig.SecurityOpt.
    if let Some(out) = d.docker(&run) {
        check(&out.success().stdout);
    }
    // A profile libseccomp cannot express is refused at start, with the reason.
    let bad = d.dir().join("bad.json");
    std::fs::write(&bad, r#"{"defaultAction": "SCMP_ACT_NOTIFY"}"#).unwrap();
    let out = d
        .berth(&[
            "run",
            "--rm",
            "--security-opt",
            &format!("seccomp={}", bad.display()),
            "busybox",
            "true",
        ])
        .failure();
    assert!(out.stderr.contains("seccomp"), "{}", out.stderr);
}

/// A container started by a daemon that did not write a compiled seccomp program (an older
/// Berth) keeps its execs confined after the new daemon adopts it: the program is compiled
/// at adoption.
#[test]
fn execs_into_an_adopted_container_without_a_compiled_filter_stay_confined() {
    require_root!();
    let mut d = daemon();
    let id = d
        .berth(&["run", "-d", "busybox", "sleep", "100"])
        .success()
        .stdout
        .trim()
        .to_string();
    let program = d.run_dir(&id).join("seccomp.bpf");
    assert!(program.exists(), "the daemon compiled the filter");
    std::fs::remove_file(&program).unwrap();
    d.kill_hard();
    d.restart();
    assert!(
        program.exists(),
        "recompiled when the container was adopted"
    );
    let out = d
        .berth(&["exec", &id, "grep", "Seccomp:", "/proc/self/status"])
        .success();
    assert!(out.stdout.contains('2'), "{}", out.stdout);
    d.berth(&["rm", "-f", &id]).success();
}

/// A removal cut short by a crash after the container's directory was taken out of sight (the
/// files are deleted in the background) stays a removal: the next daemon deletes the rest and
/// neither lists the container nor holds its name.
#[test]
fn a_removal_cut_short_by_a_crash_stays_removed() {
    require_root!();
    let mut d = daemon();
    let id = d
        .berth(&["create", "--name", "ghost", "busybox", "true"])
        .success()
        .stdout
        .trim()
        .to_string();
    let containers = d.data_root().join("containers");
    let hidden = containers.join(format!(".removing-{id}"));
    d.kill_hard();
    std::fs::rename(containers.join(&id), &hidden).unwrap();
    d.restart();
    assert!(!hidden.exists(), "the leftover is deleted at start");
    let ps = d.berth(&["ps", "-a", "--format", "{{.Names}}"]).success();
    assert!(!ps.stdout.contains("ghost"), "{}", ps.stdout);
    d.berth(&["create", "--name", "ghost", "busybox", "true"])
        .success();
    // A normal removal leaves nothing behind either, once its background delete is done.
    d.berth(&["rm", "ghost"]).success();
    until("the removed container's files to be deleted", || {
        std::fs::read_dir(&containers).unwrap().next().is_none()
    });
}

/// A container's bundle (spec, pid files, exit record, the runtime's state) lives under the
/// exec root, which is a tmpfs (the daemon mounts one on an empty exec root that is not),
/// apart from what lasts in the data root; `rm` removes both.
#[test]
fn bundles_live_on_a_tmpfs_exec_root() {
    require_root!();
    let d = daemon();
    let fs = rustix::fs::statfs(d.exec_root()).unwrap();
    assert_eq!(
        fs.f_type as i64, 0x0102_1994,
        "the exec root is not a tmpfs"
    );
    let id = d
        .berth(&["run", "-d", "busybox", "sleep", "100"])
        .success()
        .stdout
        .trim()
        .to_string();
    let run = d.run_dir(&id);
    let data = d.data_root().join("containers").join(&id);
    for f in [
        "config.json",
        "shim.json",
        "shim.pid",
        "init.pid",
        "shim.sock",
    ] {
        assert!(run.join(f).exists(), "{f} is not in the bundle");
        assert!(!data.join(f).exists(), "{f} is in the data root");
    }
    assert!(data.join("config.v2.json").exists());
    assert!(
        data.join(format!("{id}-json.log")).exists(),
        "the log lasts"
    );
    d.berth(&["rm", "-f", &id]).success();
    assert!(!run.exists(), "the bundle outlived `rm`");
}

/// A `--rm` container that ends while the daemon is down is removed when the daemon comes
/// back (as Docker's restore does), bundle and all.
#[test]
fn an_auto_remove_container_that_ended_while_the_daemon_was_down_is_removed() {
    require_root!();
    let mut d = daemon();
    let id = d
        .berth(&[
            "run", "-d", "--rm", "--name", "brief", "busybox", "sleep", "100",
        ])
        .success()
        .stdout
        .trim()
        .to_string();
    let init: i32 = read_trim(&d.run_dir(&id).join("init.pid")).parse().unwrap();
    let shim: i32 = read_trim(&d.run_dir(&id).join("shim.pid")).parse().unwrap();
    d.kill_hard();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(init).unwrap(),
        rustix::process::Signal::KILL,
    )
    .unwrap();
    until("the shim to record the exit and end", || {
        !Path::new(&format!("/proc/{shim}")).exists()
    });
    d.start_again();
    until("the container to be removed", || {
        !d.berth(&["ps", "-a", "--format", "{{.Names}}"])
            .success()
            .stdout
            .contains("brief")
    });
    assert!(!d.run_dir(&id).exists(), "its bundle stays");
    assert!(
        !d.data_root().join("containers").join(&id).exists(),
        "its directory stays"
    );
}
