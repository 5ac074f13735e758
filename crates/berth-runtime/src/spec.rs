//! OCI runtime spec generation: [`generate`] turns a [`ContainerRunConfig`] into the
//! `config.json` Docker would produce for it (default mounts, namespaces, capabilities, device
//! cgroup rules, masked paths, seccomp). Pure apart from the [`HostProbe`] seam.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, Linux, LinuxBlockIo, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxPids, LinuxResources,
    Mount, PosixRlimit, PosixRlimitBuilder, PosixRlimitType, Process, Root, Spec, User,
};

use crate::config::{ContainerRunConfig, MountKind, NamespaceMode, SeccompMode};
use crate::error::{Result, RuntimeError};
use crate::seccomp;

mod cgroup_v1_view;

/// `PATH` given to containers whose environment has none (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default `/dev/shm` size: 64 MiB.
pub const DEFAULT_SHM_SIZE: u64 = 64 * 1024 * 1024;

/// The capabilities Docker grants by default.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability `ALL` and `--privileged` stand for.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Paths Docker masks (bind of /dev/null or an empty read-only tmpfs).
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths Docker remounts read-only.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// A device node on the host, as [`HostProbe::device`] reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostDevice {
    /// `true` for a block device, `false` for a character device.
    pub block: bool,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
}

/// What spec generation needs to know about the host: the seam that keeps [`generate`] pure.
pub trait HostProbe {
    /// Kernel version (major, minor).
    fn kernel_version(&self) -> (u32, u32);
    /// Go-style architecture name (`amd64`, `arm64`), as seccomp profiles name them.
    fn arch(&self) -> &str;
    /// Look up a device node.
    fn device(&self, path: &Path) -> io::Result<HostDevice>;
    /// The capability bounding set of this process (bit n = capability n), if known.
    /// `--privileged` and `--cap-add ALL` grant only what it holds, as Docker does.
    fn bounding_set(&self) -> Option<u64> {
        None
    }
    /// Every device node of the host's `/dev`, which `--privileged` passes into the container.
    fn host_devices(&self) -> Vec<PathBuf> {
        Vec::new()
    }
    /// On cgroup v2, the file a block I/O weight goes to (`io.bfq.weight` when BFQ is
    /// registered, `io.weight` otherwise, as runc chooses); `None` on cgroup v1.
    fn io_weight_file(&self) -> Option<&'static str> {
        None
    }
    /// On cgroup v1, the mount points of the controller hierarchies a container's cgroup is
    /// made in (see [`cgroup_v1_view`]); empty on cgroup v2.
    fn cgroup_v1_hierarchies(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// cgroup v2 `cpu.weight` for v1 CPU shares: runc's linear map of 2..262144 onto 1..10000
/// (what Docker's containers get; libcontainer 0.7 uses a newer, non-linear one).
pub fn cpu_weight_from_shares(shares: u64) -> u64 {
    1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142
}

/// cgroup v2 `io.weight` for a blkio weight: runc's linear map of 10..1000 onto 1..10000.
pub fn io_weight_from_blkio(weight: u16) -> u64 {
    1 + (u64::from(weight).clamp(10, 1000) - 10) * 9999 / 990
}

/// Directories under `/dev` whose nodes are not the host's devices (or are set up per
/// container), skipped as Docker skips them for `--privileged`.
const HOST_DEV_SKIP_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Devices every container gets anyway; listing them again would make the runtime create
/// them twice.
const DEFAULT_DEVICE_PATHS: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/console",
    "/dev/ptmx",
];

fn walk_devices(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        let path = e.path();
        if ft.is_dir() {
            let name = e.file_name();
            if !HOST_DEV_SKIP_DIRS.iter().any(|s| name == *s) {
                walk_devices(&path, out);
            }
        } else if (ft.is_char_device() || ft.is_block_device())
            && !DEFAULT_DEVICE_PATHS.iter().any(|d| path == Path::new(d))
        {
            out.push(path);
        }
    }
}

/// This process's capability bounding set (`CapBnd` in `/proc/self/status`).
pub fn own_bounding_set() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Keep the capabilities the bounding set holds (`ALL_CAPABILITIES` is in bit order).
pub fn within_bounding(caps: Vec<String>, bounding: Option<u64>) -> Vec<String> {
    let Some(set) = bounding else { return caps };
    caps.into_iter()
        .filter(|c| {
            ALL_CAPABILITIES
                .iter()
                .position(|a| a == c)
                .is_none_or(|bit| set & (1u64 << bit) != 0)
        })
        .collect()
}

/// The real host.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

impl HostProbe for RealHost {
    fn cgroup_v1_hierarchies(&self) -> Vec<PathBuf> {
        if !crate::cgroups::CgroupVersion::host().is_v1() {
            return Vec::new();
        }
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        cgroup_v1_view::v1_hierarchies(&mountinfo)
    }
    fn kernel_version(&self) -> (u32, u32) {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release
            .trim()
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    fn arch(&self) -> &str {
        seccomp::host_arch()
    }

    fn bounding_set(&self) -> Option<u64> {
        own_bounding_set()
    }

    fn host_devices(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk_devices(Path::new("/dev"), &mut out);
        out.sort();
        out
    }

    fn io_weight_file(&self) -> Option<&'static str> {
        if crate::cgroups::CgroupVersion::host().is_v1() {
            return None;
        }
        // Every non-root cgroup has `io.bfq.weight` once BFQ is registered, and then the
        // block devices list it among their schedulers.
        let bfq = std::fs::read_dir("/sys/block")
            .into_iter()
            .flatten()
            .flatten()
            .any(|d| {
                std::fs::read_to_string(d.path().join("queue/scheduler")).is_ok_and(|s| {
                    s.split_whitespace()
                        .any(|x| x.trim_matches(['[', ']']) == "bfq")
                })
            });
        Some(if bfq { "io.bfq.weight" } else { "io.weight" })
    }

    fn device(&self, path: &Path) -> io::Result<HostDevice> {
        let md = std::fs::metadata(path)?;
        let ft = md.file_type();
        if !ft.is_char_device() && !ft.is_block_device() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a device node",
            ));
        }
        let rdev = md.rdev();
        Ok(HostDevice {
            block: ft.is_block_device(),
            major: rustix::fs::major(rdev) as i64,
            minor: rustix::fs::minor(rdev) as i64,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        })
    }
}

fn linux_device(path: PathBuf, info: &HostDevice) -> LinuxDevice {
    let mut dev = LinuxDevice::default();
    dev.set_path(path);
    dev.set_typ(if info.block {
        LinuxDeviceType::B
    } else {
        LinuxDeviceType::C
    });
    dev.set_major(info.major);
    dev.set_minor(info.minor);
    dev.set_file_mode(Some(info.mode));
    dev.set_uid(Some(info.uid));
    dev.set_gid(Some(info.gid));
    dev
}

fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidConfig(msg.into())
}

/// Normalize a capability name (`net_admin`, `CAP_NET_ADMIN`, `all`) to `CAP_NET_ADMIN` / `ALL`.
fn normalize_cap(name: &str) -> Result<String> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(invalid(format!("unknown capability: {name:?}")))
    }
}

/// The capability set Docker would grant: defaults, minus `drop`, plus `add` (`ALL` honoured).
pub fn capability_set(privileged: bool, add: &[String], drop: &[String]) -> Result<Vec<String>> {
    if privileged {
        return Ok(ALL_CAPABILITIES.iter().map(|s| s.to_string()).collect());
    }
    let add = add
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>>>()?;
    let drop = drop
        .iter()
        .map(|c| normalize_cap(c))
        .collect::<Result<Vec<_>>>()?;
    let has = |v: &[String], c: &str| v.iter().any(|x| x == c);
    let mut caps: Vec<String> = if has(&add, "ALL") {
        ALL_CAPABILITIES
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !has(&drop, c))
            .collect()
    } else {
        let mut base: Vec<String> = if has(&drop, "ALL") {
            Vec::new()
        } else {
            DEFAULT_CAPABILITIES
                .iter()
                .map(|s| s.to_string())
                .filter(|c| !has(&drop, c))
                .collect()
        };
        for c in add {
            if !has(&base, &c) {
                base.push(c);
            }
        }
        base
    };
    caps.sort_by_key(|c| ALL_CAPABILITIES.iter().position(|a| a == c));
    Ok(caps)
}

pub(crate) fn to_oci_caps(names: &[String]) -> Result<HashSet<Capability>> {
    names
        .iter()
        .map(|n| {
            serde_json::from_value(serde_json::Value::String(n.clone()))
                .map_err(|_| invalid(format!("unknown capability: {n:?}")))
        })
        .collect()
}

/// The container's cgroup, relative to each hierarchy's root.
fn cgroups_path(cfg: &ContainerRunConfig) -> String {
    clean_cgroups_path(
        &cfg.cgroup_path
            .clone()
            .unwrap_or_else(|| format!("/berth/{}", cfg.id)),
    )
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|s| s.to_string()).collect()));
    m
}

fn default_mounts(cfg: &ContainerRunConfig, host: &dyn HostProbe) -> Vec<Mount> {
    let sys_mode = if cfg.privileged { "rw" } else { "ro" };
    let shm_size = format!("size={}", cfg.shm_size.unwrap_or(DEFAULT_SHM_SIZE));
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
    ];
    let hierarchies = match cfg.namespaces.pid {
        NamespaceMode::Path(_) => host.cgroup_v1_hierarchies(),
        _ => Vec::new(),
    };
    if hierarchies.is_empty() {
        mounts.push(mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", sys_mode],
        ));
    } else {
        mounts.extend(cgroup_v1_view::v1_view(
            &hierarchies,
            &cgroups_path(cfg),
            sys_mode,
        ));
    }
    mounts.push(mount(
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        &["nosuid", "noexec", "nodev"],
    ));
    if cfg.no_dev_shm {
        // `--ipc none`: nothing at /dev/shm.
    } else if cfg.namespaces.ipc == NamespaceMode::Host {
        mounts.push(mount(
            "/dev/shm",
            "bind",
            "/dev/shm",
            &["rbind", "rprivate"],
        ));
    } else {
        mounts.push(mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", &shm_size],
        ));
    }
    mounts
}

const PROPAGATIONS: &[&str] = &[
    "shared",
    "rshared",
    "slave",
    "rslave",
    "private",
    "rprivate",
    "unbindable",
    "runbindable",
];

/// The root's propagation, by Docker's rule: shared when a bind asks for (r)shared, slave when
/// one asks for (r)slave, private otherwise (Docker's default for binds). libcontainer applies
/// no per-mount propagation, so binds take the root's: it must be the one the binds need.
fn rootfs_propagation(mounts: &[crate::config::MountSpec]) -> &'static str {
    let asks = |p: &[&str]| {
        mounts
            .iter()
            .any(|m| m.options.iter().any(|o| p.contains(&o.as_str())))
    };
    if asks(&["shared", "rshared"]) {
        "shared"
    } else if asks(&["slave", "rslave"]) {
        "slave"
    } else {
        "private"
    }
}

fn user_mount(m: &crate::config::MountSpec) -> Mount {
    let mut opts: Vec<String> = Vec::new();
    let (typ, source) = match &m.kind {
        MountKind::Bind { source } => {
            // A non-recursive bind (`bind-recursive=disabled`) carries "bind" in its options.
            if !m.options.iter().any(|o| o == "bind") {
                opts.push("rbind".into());
            }
            if !m.options.iter().any(|o| PROPAGATIONS.contains(&o.as_str())) {
                opts.push("rprivate".into());
            }
            ("bind", source.clone())
        }
        MountKind::Tmpfs => {
            for d in ["nosuid", "nodev", "noexec"] {
                let contrary = d.trim_start_matches("no").to_string();
                if !m.options.iter().any(|o| o == &contrary || o == d) {
                    opts.push(d.into());
                }
            }
            ("tmpfs", PathBuf::from("tmpfs"))
        }
    };
    opts.extend(m.options.iter().cloned());
    opts.push(if m.readonly { "ro".into() } else { "rw".into() });
    let mut out = Mount::default();
    out.set_destination(PathBuf::from(&m.destination));
    out.set_typ(Some(typ.to_string()));
    out.set_source(Some(source));
    out.set_options(Some(opts));
    out
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// One `--device-cgroup-rule` (`TYPE MAJOR:MINOR ACCESS`, `*` for any number), as Docker's
/// `^([acb]) ([0-9]+|\*):([0-9]+|\*) ([rwm]{1,3})$` reads it, as an allow rule.
fn parse_device_cgroup_rule(rule: &str) -> Result<LinuxDeviceCgroup> {
    let bad = || invalid(format!("invalid device cgroup rule format: '{rule}'"));
    let parts: Vec<&str> = rule.split(' ').collect();
    let [typ, numbers, access] = parts[..] else {
        return Err(bad());
    };
    let typ = match typ {
        "a" => LinuxDeviceType::A,
        "b" => LinuxDeviceType::B,
        "c" => LinuxDeviceType::C,
        _ => return Err(bad()),
    };
    let number = |n: &str| -> Result<Option<i64>> {
        match n {
            "*" => Ok(None),
            n if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().map(Some).map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    };
    let (major, minor) = numbers.split_once(':').ok_or_else(bad)?;
    if access.is_empty() || access.len() > 3 || access.chars().any(|c| !"rwm".contains(c)) {
        return Err(bad());
    }
    Ok(device_rule(
        true,
        typ,
        number(major)?,
        number(minor)?,
        access,
    ))
}

/// Docker's default device cgroup rules: deny everything, then allow mknod of any node and
/// use of the standard devices.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    vec![
        device_rule(false, A, None, None, "rwm"),
        device_rule(true, C, None, None, "m"),
        device_rule(true, B, None, None, "m"),
        device_rule(true, C, Some(1), Some(3), "rwm"), // null
        device_rule(true, C, Some(1), Some(5), "rwm"), // zero
        device_rule(true, C, Some(1), Some(7), "rwm"), // full
        device_rule(true, C, Some(1), Some(8), "rwm"), // random
        device_rule(true, C, Some(1), Some(9), "rwm"), // urandom
        device_rule(true, C, Some(5), Some(0), "rwm"), // tty
        device_rule(true, C, Some(5), Some(1), "rwm"), // console
        device_rule(true, C, Some(5), Some(2), "rwm"), // ptmx
        device_rule(true, C, Some(136), None, "rwm"),  // pts/*
        device_rule(true, C, Some(10), Some(200), "rwm"), // net/tun
    ]
}

fn namespace(typ: LinuxNamespaceType, mode: &NamespaceMode) -> Option<LinuxNamespace> {
    let mut ns = LinuxNamespace::default();
    ns.set_typ(typ);
    match mode {
        NamespaceMode::Host => return None,
        NamespaceMode::Private => {}
        NamespaceMode::Path(p) => {
            ns.set_path(Some(p.clone()));
        }
    }
    Some(ns)
}

fn resources(
    cfg: &ContainerRunConfig,
    host: &dyn HostProbe,
    devices: &mut Vec<LinuxDevice>,
) -> Result<LinuxResources> {
    let r = &cfg.resources;
    let mut res = LinuxResources::default();

    let mut rules = if cfg.privileged {
        vec![device_rule(true, LinuxDeviceType::A, None, None, "rwm")]
    } else {
        default_device_rules()
    };
    if cfg.privileged {
        // Docker gives a privileged container the host's device nodes; explicit `--device`
        // entries (below) take precedence for the same path.
        for path in host.host_devices() {
            if cfg
                .devices
                .iter()
                .any(|d| d.path_on_host == path && d.path_in_container.is_empty())
            {
                continue;
            }
            // A node that vanished since the walk is simply not passed.
            if let Ok(info) = host.device(&path) {
                devices.push(linux_device(path, &info));
            }
        }
    }
    for d in &cfg.devices {
        let info = host.device(&d.path_on_host).map_err(|e| {
            invalid(format!(
                "error gathering device information while adding device {:?}: {e}",
                d.path_on_host
            ))
        })?;
        let typ = if info.block {
            LinuxDeviceType::B
        } else {
            LinuxDeviceType::C
        };
        let access = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if access.chars().any(|c| !"rwm".contains(c)) {
            return Err(invalid(format!(
                "invalid device permissions {access:?} for {:?}",
                d.path_on_host
            )));
        }
        rules.push(device_rule(
            true,
            typ,
            Some(info.major),
            Some(info.minor),
            access,
        ));
        let path = if d.path_in_container.is_empty() {
            d.path_on_host.clone()
        } else {
            PathBuf::from(&d.path_in_container)
        };
        devices.push(linux_device(path, &info));
    }
    for rule in &cfg.device_cgroup_rules {
        rules.push(parse_device_cgroup_rule(rule)?);
    }
    res.set_devices(Some(rules));

    if r.memory > 0 || r.memory_reservation > 0 || r.memory_swap != 0 || r.oom_kill_disable {
        let mut m = LinuxMemory::default();
        // As dockerd: a swap limit applies when positive, or -1 (unlimited); other values
        // (a doubled limit that overflowed, -2) leave swap alone.
        let applies = |s: i64| s > 0 || s == -1;
        if r.memory > 0 {
            m.set_limit(Some(r.memory));
            let swap = if r.memory_swap == 0 {
                r.memory.checked_mul(2).unwrap_or(-2)
            } else {
                r.memory_swap
            };
            if applies(swap) {
                m.set_swap(Some(swap));
            }
        } else if applies(r.memory_swap) {
            m.set_swap(Some(r.memory_swap));
        }
        if r.memory_reservation > 0 {
            m.set_reservation(Some(r.memory_reservation));
        }
        if r.oom_kill_disable {
            m.set_disable_oom_killer(Some(true));
        }
        res.set_memory(Some(m));
    }

    if r.nano_cpus != 0 && (r.cpu_quota != 0 || r.cpu_period != 0) {
        return Err(invalid(
            "conflicting options: Nano CPUs and CPU Period/Quota cannot both be set",
        ));
    }
    let (quota, period) = if r.nano_cpus > 0 {
        const PERIOD: u64 = 100_000;
        (r.nano_cpus * PERIOD as i64 / 1_000_000_000, PERIOD)
    } else {
        (r.cpu_quota, r.cpu_period)
    };
    if r.cpu_shares > 0
        || quota != 0
        || period != 0
        || !r.cpuset_cpus.is_empty()
        || !r.cpuset_mems.is_empty()
    {
        let mut c = LinuxCpu::default();
        if r.cpu_shares > 0 && host.io_weight_file().is_some() {
            // cgroup v2: the weight Docker's runc gives these shares, not libcontainer's.
            let mut unified = res.unified().clone().unwrap_or_default();
            unified.insert(
                "cpu.weight".into(),
                cpu_weight_from_shares(r.cpu_shares).to_string(),
            );
            res.set_unified(Some(unified));
        } else if r.cpu_shares > 0 {
            c.set_shares(Some(r.cpu_shares));
        }
        if quota != 0 {
            c.set_quota(Some(quota));
        }
        if period != 0 {
            c.set_period(Some(period));
        }
        if !r.cpuset_cpus.is_empty() {
            c.set_cpus(Some(r.cpuset_cpus.clone()));
        }
        if !r.cpuset_mems.is_empty() {
            c.set_mems(Some(r.cpuset_mems.clone()));
        }
        res.set_cpu(Some(c));
    }

    if r.pids_limit > 0 {
        let mut p = LinuxPids::default();
        p.set_limit(r.pids_limit);
        res.set_pids(Some(p));
    }
    if r.blkio_weight > 0 {
        match host.io_weight_file() {
            None => {
                let mut b = LinuxBlockIo::default();
                b.set_weight(Some(r.blkio_weight));
                res.set_block_io(Some(b));
            }
            // libcontainer 0.7 converts a weight for `io.weight` in u16 arithmetic, which
            // overflows for any weight above 16 (a panic in debug builds, a wrong weight
            // otherwise), so on v2 the spec names the file and value itself (runc's choice of
            // file and conversion; BFQ takes the blkio weight as it is).
            Some(file) => {
                let value = if file == "io.weight" {
                    io_weight_from_blkio(r.blkio_weight)
                } else {
                    u64::from(r.blkio_weight)
                };
                let mut unified = res.unified().clone().unwrap_or_default();
                unified.insert(file.to_string(), value.to_string());
                res.set_unified(Some(unified));
            }
        }
    }
    Ok(res)
}

fn environment(cfg: &ContainerRunConfig) -> Vec<String> {
    let mut env: Vec<String> = vec![format!("PATH={DEFAULT_PATH}")];
    if cfg.namespaces.uts != NamespaceMode::Host && !cfg.hostname.is_empty() {
        env.push(format!("HOSTNAME={}", cfg.hostname));
    }
    if cfg.tty {
        env.push("TERM=xterm".into());
    }
    for kv in &cfg.env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    env
}

fn rlimits(cfg: &ContainerRunConfig) -> Result<Vec<PosixRlimit>> {
    cfg.ulimits
        .iter()
        .map(|u| {
            let name = format!("RLIMIT_{}", u.name.to_ascii_uppercase());
            let typ: PosixRlimitType = serde_json::from_value(serde_json::Value::String(name))
                .map_err(|_| invalid(format!("invalid ulimit type: {}", u.name)))?;
            if u.soft > u.hard {
                return Err(invalid(format!(
                    "ulimit soft limit must be less than hard limit: {} > {} for {}",
                    u.soft, u.hard, u.name
                )));
            }
            PosixRlimitBuilder::default()
                .typ(typ)
                .soft(u.soft)
                .hard(u.hard)
                .build()
                .map_err(|e| invalid(e.to_string()))
        })
        .collect()
}

/// Generate the OCI runtime spec Docker would produce for `cfg`.
pub fn generate(cfg: &ContainerRunConfig, host: &dyn HostProbe) -> Result<Spec> {
    if cfg.args.is_empty() {
        return Err(invalid("no command specified"));
    }
    let init_path = match (cfg.init, &cfg.init_path) {
        (false, _) => None,
        (true, Some(p)) => Some(p.clone()),
        (true, None) => {
            return Err(invalid("--init needs the init binary's path (init_path)"));
        }
    };
    let mut caps = capability_set(cfg.privileged, &cfg.cap_add, &cfg.cap_drop)?;
    if cfg.privileged || cfg.cap_add.iter().any(|c| c.eq_ignore_ascii_case("all")) {
        caps = within_bounding(caps, host.bounding_set());
    }
    let oci_caps = to_oci_caps(&caps)?;

    let mut user = User::default();
    user.set_uid(cfg.user.uid);
    user.set_gid(cfg.user.gid);
    let gids: BTreeSet<u32> = cfg
        .user
        .additional_gids
        .iter()
        .chain(&cfg.group_add)
        .copied()
        .collect();
    if !gids.is_empty() {
        user.set_additional_gids(Some(gids.into_iter().collect()));
    }

    let mut capabilities = LinuxCapabilities::default();
    capabilities.set_bounding(Some(oci_caps.clone()));
    capabilities.set_effective(Some(oci_caps.clone()));
    capabilities.set_permitted(Some(oci_caps));
    capabilities.set_inheritable(None);
    capabilities.set_ambient(None);

    let mut process = Process::default();
    process.set_terminal(Some(cfg.tty));
    process.set_user(user);
    let args = match init_path {
        Some(_) => [crate::init::INIT_PATH, "--"]
            .iter()
            .map(|s| s.to_string())
            .chain(cfg.args.iter().cloned())
            .collect(),
        None => cfg.args.clone(),
    };
    process.set_args(Some(args));
    process.set_env(Some(environment(cfg)));
    process.set_cwd(PathBuf::from(if cfg.working_dir.is_empty() {
        "/"
    } else {
        &cfg.working_dir
    }));
    process.set_capabilities(Some(capabilities));
    let rl = rlimits(cfg)?;
    process.set_rlimits(if rl.is_empty() { None } else { Some(rl) });
    // libcontainer 0.7 tests `noNewPrivileges` for presence, not value: `Some(false)` makes it
    // load seccomp after dropping CAP_SYS_ADMIN, which fails. Only ever write `true`.
    process.set_no_new_privileges(cfg.no_new_privileges.then_some(true));
    process.set_apparmor_profile(None);
    process.set_oom_score_adj(None);
    process.set_selinux_label(None);

    let mut root = Root::default();
    root.set_path(cfg.rootfs.clone());
    root.set_readonly(Some(cfg.readonly_rootfs));

    let mut mounts = default_mounts(cfg, host);
    let user_mounts: Vec<Mount> = cfg.mounts.iter().map(user_mount).collect();
    mounts.retain(|m| {
        !user_mounts
            .iter()
            .any(|u| u.destination() == m.destination())
    });
    mounts.extend(user_mounts);
    if let Some(source) = init_path {
        let mut m = Mount::default();
        m.set_destination(PathBuf::from(crate::init::INIT_PATH));
        m.set_typ(Some("bind".into()));
        m.set_source(Some(source));
        m.set_options(Some(vec![
            "bind".into(),
            "ro".into(),
            "nosuid".into(),
            "nodev".into(),
        ]));
        mounts.push(m);
    }

    let mut namespaces = vec![namespace(
        LinuxNamespaceType::Mount,
        &NamespaceMode::Private,
    )];
    namespaces.push(namespace(LinuxNamespaceType::Network, &cfg.namespaces.net));
    namespaces.push(namespace(LinuxNamespaceType::Uts, &cfg.namespaces.uts));
    namespaces.push(namespace(LinuxNamespaceType::Pid, &cfg.namespaces.pid));
    namespaces.push(namespace(LinuxNamespaceType::Ipc, &cfg.namespaces.ipc));
    // With its own cgroup namespace the container's `/sys/fs/cgroup` (cgroup2, mounted by
    // the runtime inside the namespace) shows its own cgroup as the root, as Docker's do on v2.
    namespaces.push(namespace(
        LinuxNamespaceType::Cgroup,
        &cfg.namespaces.cgroup,
    ));

    let mut devices = Vec::new();
    let res = resources(cfg, host, &mut devices)?;

    let mut linux = Linux::default();
    linux.set_rootfs_propagation(Some(rootfs_propagation(&cfg.mounts).to_string()));
    linux.set_namespaces(Some(namespaces.into_iter().flatten().collect()));
    // A rootless daemon (in a user namespace of its own, its cgroups read-only) has no cgroup
    // to enforce anything with, devices included (runc's rootless spec drops them the same
    // way): the limits were discarded with warnings at create.
    // A rootless daemon with a delegated cgroup v2: the limits go in an annotation for the
    // shim to write, without device rules (see `crate::cgroup_apply`).
    let rootless_resources = rootless_cgroups().then(|| {
        let mut r = res.clone();
        r.set_devices(None);
        serde_json::to_string(&r).unwrap_or_default()
    });
    linux.set_resources((!without_cgroups() && rootless_resources.is_none()).then_some(res));
    linux.set_devices(if devices.is_empty() {
        None
    } else {
        Some(devices)
    });
    linux.set_cgroups_path(Some(PathBuf::from(cgroups_path(cfg))));
    if cfg.privileged {
        linux.set_masked_paths(None);
        linux.set_readonly_paths(None);
    } else {
        let list = |given: &Option<Vec<String>>, default: &[&str]| {
            given
                .clone()
                .unwrap_or_else(|| default.iter().map(|s| s.to_string()).collect())
        };
        linux.set_masked_paths(Some(list(&cfg.masked_paths, DEFAULT_MASKED_PATHS)));
        linux.set_readonly_paths(Some(list(&cfg.readonly_paths, DEFAULT_READONLY_PATHS)));
    }
    if !cfg.sysctls.is_empty() {
        linux.set_sysctl(Some(cfg.sysctls.clone().into_iter().collect()));
    }
    let seccomp_json = match (&cfg.seccomp, cfg.privileged) {
        (SeccompMode::Unconfined, _) | (SeccompMode::Default, true) => None,
        (SeccompMode::Default, false) => Some(seccomp::DEFAULT_PROFILE),
        (SeccompMode::Custom(json), _) => Some(json.as_str()),
    };
    if let Some(json) = seccomp_json {
        let ctx = seccomp::SeccompContext {
            caps: &caps,
            arch: host.arch(),
            kernel: host.kernel_version(),
        };
        linux.set_seccomp(Some(seccomp::resolve(json, &ctx)?));
    }

    let mut spec = Spec::default();
    spec.set_version(oci_spec::runtime::VERSION.to_string());
    spec.set_process(Some(process));
    spec.set_root(Some(root));
    let uts_private = cfg.namespaces.uts != NamespaceMode::Host;
    spec.set_hostname((uts_private && !cfg.hostname.is_empty()).then(|| cfg.hostname.clone()));
    spec.set_domainname(
        (uts_private && !cfg.domainname.is_empty()).then(|| cfg.domainname.clone()),
    );
    let mut annotations = None;
    if let Some(map) = &cfg.userns {
        annotations = remap_user_namespace(
            map,
            cfg.userns_path.as_deref(),
            &mut linux,
            &mut mounts,
            cfg.runtime.is_none(),
        );
    }
    if let Some(json) = rootless_resources {
        annotations
            .get_or_insert_with(Default::default)
            .insert(crate::cgroup_apply::ANNOTATION.to_string(), json);
    }
    spec.set_mounts(Some(mounts));
    spec.set_annotations(annotations);
    spec.set_hooks(None);
    spec.set_linux(Some(linux));
    Ok(spec)
}

/// Whether this process runs in a user namespace other than the host's (a rootless daemon):
/// its uid map is not the identity of all ids.
pub fn in_user_namespace() -> bool {
    static IN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *IN.get_or_init(|| {
        std::fs::read_to_string("/proc/self/uid_map")
            .is_ok_and(|m| m.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"])
    })
}

/// A rootless daemon's situation: in a user namespace of its own, with no cgroup it may
/// write. Its containers get no cgroup of their own (they stay in the daemon's).
pub fn without_cgroups() -> bool {
    in_user_namespace() && crate::cgroups::limits_unavailable(Path::new(crate::cgroups::ROOT))
}

/// A rootless daemon with a delegated cgroup v2 subtree (its cgroup2 mount writable): its
/// containers get cgroups and limits, written by the shim (see [`crate::cgroup_apply`]).
pub fn rootless_cgroups() -> bool {
    in_user_namespace()
        && crate::cgroups::CgroupVersion::host().is_v2()
        && !crate::cgroups::limits_unavailable(Path::new(crate::cgroups::ROOT))
}

/// The annotation naming the network namespace a remapped container's runtime process joins
/// before it creates the user namespace (see [`remap_user_namespace`]).
pub const NETNS_ANNOTATION: &str = "io.berth.netns-before-userns";

/// A container in a new user namespace mapped to `map` (`--userns-remap`). The network
/// namespace the daemon made belongs to the host's user namespace, which the runtime can no
/// longer join once inside the new one (libcontainer joins namespaces after creating the
/// user namespace; runc joins them before): its path moves to [`NETNS_ANNOTATION`] for the
/// shim to join first, and the container inherits it. sysfs cannot be mounted in a network
/// namespace the user namespace does not own, so `/sys` is the host's, bound read-only, as
/// runc falls back to.
fn remap_user_namespace(
    map: &crate::idmap::IdMapping,
    join: Option<&Path>,
    linux: &mut Linux,
    mounts: &mut Vec<Mount>,
    embedded: bool,
) -> Option<std::collections::HashMap<String, String>> {
    use oci_spec::runtime::LinuxIdMappingBuilder;
    let idmap = |host: u32, size: u32| {
        LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host)
            .size(size)
            .build()
            .expect("all fields set")
    };
    // Mappings are for a new namespace only; a joined one has its own.
    if join.is_none() {
        linux.set_uid_mappings(Some(vec![idmap(map.uid, map.uid_count)]));
        linux.set_gid_mappings(Some(vec![idmap(map.gid, map.gid_count)]));
    }
    let mut namespaces = linux.namespaces().clone().unwrap_or_default();
    let host_ipc = !namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::Ipc);
    let mut netns = None;
    // An external runtime (runc) joins the path itself, before the user namespace.
    namespaces.retain(|n| {
        if embedded
            && n.typ() == LinuxNamespaceType::Network
            && let Some(p) = n.path()
        {
            netns = Some(p.to_string_lossy().into_owned());
            return false;
        }
        true
    });
    let mut user = LinuxNamespace::default();
    user.set_typ(LinuxNamespaceType::User);
    user.set_path(join.map(Path::to_path_buf));
    namespaces.insert(0, user);
    linux.set_namespaces(Some(namespaces));
    for m in mounts.iter_mut() {
        if m.typ().as_deref() == Some("sysfs") {
            m.set_typ(Some("bind".into()));
            m.set_source(Some(PathBuf::from("/sys")));
            m.set_options(Some(
                ["rbind", "nosuid", "noexec", "nodev", "ro"]
                    .map(String::from)
                    .to_vec(),
            ));
        }
    }
    if host_ipc {
        host_mqueue(mounts, host_mqueue_mounted());
    }
    netns.map(|p| [(NETNS_ANNOTATION.to_string(), p)].into_iter().collect())
}

/// `--ipc host` in a new user namespace (Docker allows it: only `--pid/--net host` are
/// refused). The host's IPC namespace belongs to the host's user namespace, so mqueue cannot
/// be mounted for it from the new one (EPERM, the start failed "failed to prepare rootfs"):
/// the host's `/dev/mqueue` is bound instead when the host has one mounted, as runc falls
/// back to; else the container has no `/dev/mqueue` (its queues are the host's all the same,
/// through `mq_open`).
fn host_mqueue(mounts: &mut Vec<Mount>, host_has_mqueue: bool) {
    if host_has_mqueue {
        for m in mounts.iter_mut() {
            if m.typ().as_deref() == Some("mqueue") {
                m.set_typ(Some("bind".into()));
                m.set_source(Some(PathBuf::from("/dev/mqueue")));
                m.set_options(Some(
                    ["rbind", "nosuid", "noexec", "nodev"]
                        .map(String::from)
                        .to_vec(),
                ));
            }
        }
    } else {
        mounts.retain(|m| m.typ().as_deref() != Some("mqueue"));
    }
}

/// Whether the host has an mqueue filesystem at `/dev/mqueue`.
fn host_mqueue_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| {
            let mut fields = l.split(' ');
            let point = fields.nth(4);
            let fstype = l.split(" - ").nth(1).and_then(|t| t.split(' ').next());
            point == Some("/dev/mqueue") && fstype == Some("mqueue")
        })
}

/// A cgroup path kept inside the cgroup hierarchy, as runc's `CleanPath` keeps it: cleaned
/// lexically as if rooted at `/`, so `..` never climbs above `/sys/fs/cgroup`
/// (`/a/../../b` → `/b`, `../../x` → `/x`).
pub fn clean_cgroups_path(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    format!("/{}", out.join("/"))
}

#[cfg(test)]
mod tests;
