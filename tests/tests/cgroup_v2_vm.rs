//! Berth on cgroup v2, for real. This machine's own hierarchy is v1 (plus an empty hybrid
//! cgroup2 mount), so the test boots a small VM (`tests/vm/boot.sh`: qemu, a Debian kernel, the
//! host's `/` shared read-only over 9p) whose PID 1 (`tests/vm/guest-cgroup-v2.sh`) mounts a
//! pure cgroup2 hierarchy, starts the workspace's real `berthd` and drives it with the real
//! `berth`. Each check in the guest writes a PASS or FAIL line; this test asserts that every
//! expected check ran and passed. It builds nothing: the suite builds the binaries first.
//! Without qemu or a kernel it fails, saying what to install (scripts/install-test-peers.sh
//! installs both).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::busybox_archive;
use berth_e2e::daemon::{ChildGuard, bin_dir, binary};

/// Every check the guest script makes; a check that did not run fails the test like one that
/// failed.
const CHECKS: &[&str] = &[
    "hierarchy_is_v2_only",
    "controllers_delegated",
    "daemon_starts",
    "info_cgroup_version",
    "image_loads",
    "cgroup_path",
    "memory_max",
    "memory_swap_max",
    "memory_low",
    "pids_max",
    "cpu_max_from_cpus",
    "cpu_weight",
    "cpuset_cpus",
    "cpuset_mems",
    "io_weight",
    "inspect_resources",
    "cgroupns_mode_private",
    "cgroupns_private_root",
    "cgroupns_private_sees_own_limit",
    "cgroupns_host",
    "oom_kill_disable_warns",
    "oom_kill_disable_discarded",
    "cpu_max_from_period_quota",
    "update_memory_max",
    "update_memory_swap_max",
    "update_pids_max",
    "update_cpu_max",
    "update_cpu_weight",
    "update_inspect",
    "stats_memory_limit",
    "stats_memory_usage",
    "stats_pids",
    "pause_cgroup_freeze",
    "pause_frozen",
    "pause_state",
    "unpause_cgroup_freeze",
    "unpause_frozen",
    "unpause_state",
    "unpause_exec_runs",
    "device_null_writable",
    "device_urandom_readable",
    "device_mknod_allowed",
    "device_default_deny",
    "device_cgroup_rule_allows",
    "device_flag_allows",
    "pids_limit_holds_fork_bomb",
    "bomb_cgroup_removed",
    "oom_exit_code",
    "oom_state",
    "oom_event",
    "cgroup_removed",
    "no_cgroups_left",
];

/// The checks of `tests/vm/guest-rootless-cgroup-v2.sh`: a rootless berthd in a cgroup
/// delegated to its user (all controllers, then memory and pids only), and in one that is not.
const ROOTLESS_CHECKS: &[&str] = &[
    "rl_daemon_starts",
    "rl_daemon_in_leaf",
    "rl_daemon_leaf_procs",
    "rl_controllers_enabled",
    "rl_info_cgroup",
    "rl_info_rootless",
    "rl_info_limits",
    "rl_info_no_warnings",
    "rl_image_loads",
    "rl_run_no_warning",
    "rl_container_cgroup",
    "rl_memory_max",
    "rl_pids_max",
    "rl_cpu_max",
    "rl_inspect_limits",
    "rl_container_sees_limit",
    "rl_stats_limit",
    "rl_pids_limit_holds",
    "rl_pause_freeze",
    "rl_pause_state",
    "rl_unpause_freeze",
    "rl_unpause_state",
    "rl_update_limits",
    "rl_cgroup_removed",
    "rl_partial_daemon_starts",
    "rl_partial_info",
    "rl_partial_info_warning",
    "rl_partial_cpus_warning",
    "rl_partial_no_memory_warning",
    "rl_partial_memory_max",
    "rl_partial_inspect",
    "rl_undelegated_daemon_starts",
    "rl_undelegated_info",
    "rl_undelegated_info_warning",
    "rl_undelegated_memory_warning",
    "rl_undelegated_runs",
    "rl_undelegated_nothing_made",
];

/// Far more than a TCG boot and the scenario need (about a minute; the rootless one starts
/// three daemons); only a hung VM gets here.
const VM_DEADLINE: Duration = Duration::from_secs(170);
const ROOTLESS_VM_DEADLINE: Duration = Duration::from_secs(300);

/// One VM at a time: two TCG guests on a small machine would only slow each other.
static ONE_VM: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn cgroup_v2_in_a_vm() {
    berth_e2e::require_root!();
    run_vm("tests/vm/guest-cgroup-v2.sh", CHECKS, VM_DEADLINE);
}

/// Issue 18: a rootless berthd uses the cgroup v2 subtree delegated to its user.
#[test]
fn rootless_cgroup_v2_in_a_vm() {
    berth_e2e::require_root!();
    let mut checks = ROOTLESS_CHECKS.to_vec();
    // The guest runs the docker CLI's check where the host has the CLI.
    if Path::new("/usr/local/bin/docker").exists() {
        checks.push("rl_docker_cli_memory");
    }
    run_vm(
        "tests/vm/guest-rootless-cgroup-v2.sh",
        &checks,
        ROOTLESS_VM_DEADLINE,
    );
}

/// Boots the VM with `guest` as its PID 1 and asserts that every one of `checks` passed.
fn run_vm(guest: &str, checks: &[&str], deadline: Duration) {
    let _one = ONE_VM.lock().unwrap_or_else(|e| e.into_inner());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    for name in ["berthd", "berth", "berth-shim"] {
        binary(name);
    }
    let work = tempfile::Builder::new()
        .prefix("berth-cg2vm-")
        .tempdir()
        .expect("temp dir");
    let share = work.path().join("share");
    std::fs::create_dir(&share).expect("create the share");
    std::fs::write(share.join("busybox.tar"), busybox_archive("busybox:latest"))
        .expect("write the image");
    let bins: PathBuf = std::fs::canonicalize(bin_dir()).expect("the binaries' directory");
    std::fs::write(
        share.join("vm.env"),
        format!("BIN_DIR={}\n", bins.display()),
    )
    .expect("write vm.env");

    let boot_log = work.path().join("boot.log");
    let log = std::fs::File::create(&boot_log).expect("create boot.log");
    let started = Instant::now();
    // boot.sh execs qemu: the guard's pid is the VM's, killed on drop whatever happens.
    let mut vm = ChildGuard(
        Command::new("bash")
            .arg(repo.join("tests/vm/boot.sh"))
            .arg(work.path())
            .arg(repo.join(guest))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("spawn tests/vm/boot.sh"),
    );
    let results = share.join("results.txt");
    let mut booted: Option<Duration> = None;
    let status = loop {
        if booted.is_none() && results.exists() {
            booted = Some(started.elapsed());
        }
        if let Some(status) = vm.0.try_wait().expect("wait for the VM") {
            break status;
        }
        if started.elapsed() > deadline {
            panic!(
                "the VM did not power off within {deadline:?}\nboot.log:\n{}\nconsole (tail):\n{}\nguest.log (tail):\n{}\nresults:\n{}",
                read(&boot_log),
                tail(&read(&work.path().join("console.log")), 40),
                tail(&read(&share.join("guest.log")), 40),
                read(&results),
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let total = started.elapsed();
    let boot = read(&boot_log);
    let text = read(&results);
    let context = || {
        format!(
            "boot.log:\n{boot}\nconsole (tail):\n{}\nguest.log (tail):\n{}\n{}\nresults:\n{text}",
            tail(&read(&work.path().join("console.log")), 40),
            tail(&read(&share.join("guest.log")), 60),
            [
                "berthd.log",
                "berthd-delegated.log",
                "berthd-partial.log",
                "berthd-undelegated.log"
            ]
            .iter()
            .map(|f| format!("{f} (tail):\n{}", tail(&read(&share.join(f)), 60)))
            .collect::<Vec<_>>()
            .join("\n"),
        )
    };
    assert!(
        status.success() && !text.is_empty(),
        "the VM did not run the guest script ({status})\n{}",
        context()
    );
    eprintln!("{}", boot.trim());
    if let Some(b) = booted {
        eprintln!(
            "VM reached the guest script {:.1} s after the start; whole run {:.1} s",
            b.as_secs_f64(),
            total.as_secs_f64()
        );
    }
    eprintln!("{}", text.trim());

    assert!(
        text.lines().any(|l| l == "DONE"),
        "the guest script did not finish\n{}",
        context()
    );
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL ")).collect();
    let passed: BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("PASS "))
        .collect();
    let missing: Vec<&&str> = checks.iter().filter(|c| !passed.contains(**c)).collect();
    assert!(
        failed.is_empty() && missing.is_empty(),
        "cgroup v2 checks failed: {failed:#?}\nnot run: {missing:?}\n{}",
        context()
    );
}
