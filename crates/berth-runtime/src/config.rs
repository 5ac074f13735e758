//! [`ContainerRunConfig`]: everything the runtime needs to know to run one container, already
//! resolved by the daemon (image config merged, user looked up, volumes mapped). The daemon
//! stores it with the container record; [`crate::spec::generate`] turns it into an OCI spec.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A container's run-time configuration, as the daemon resolved it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerRunConfig {
    /// Container id (64 hex characters in production; any libcontainer-valid id in tests).
    pub id: String,
    /// The root filesystem (usually the overlay mountpoint from [`crate::rootfs`]).
    pub rootfs: PathBuf,
    /// Entrypoint followed by cmd; `args[0]` is looked up in `PATH` inside the container.
    pub args: Vec<String>,
    /// `KEY=value` pairs. A default `PATH` is added when none is given.
    pub env: Vec<String>,
    /// Working directory inside the container; empty means `/`.
    pub working_dir: String,
    /// The resolved user.
    pub user: ProcessUser,
    /// Hostname (ignored when the UTS namespace is the host's).
    pub hostname: String,
    /// NIS domain name, if any.
    pub domainname: String,
    /// Allocate a pseudo-terminal for the process (`-t`).
    pub tty: bool,
    /// The terminal's initial size as (rows, columns), applied to the pty before the process
    /// starts, so a command that asks at once (`stty size`) never sees 0x0 (Docker's
    /// `HostConfig.ConsoleSize`). Later changes come through `resize`.
    #[serde(default)]
    pub console_size: Option<(u16, u16)>,
    /// Keep stdin open for attached clients (`-i`). Without it stdin reads EOF at once.
    pub open_stdin: bool,
    /// Mount the root filesystem read-only.
    pub readonly_rootfs: bool,
    /// `--privileged`: all capabilities, all devices, no seccomp, no masked paths.
    pub privileged: bool,
    /// Capabilities to add (`ALL`, or names with or without the `CAP_` prefix, any case).
    pub cap_add: Vec<String>,
    /// Capabilities to drop (same syntax as `cap_add`); drops apply before adds, as in Docker.
    pub cap_drop: Vec<String>,
    /// Set `no_new_privs` for the process.
    pub no_new_privileges: bool,
    /// Seccomp confinement.
    pub seccomp: SeccompMode,
    /// Namespace modes for the namespaces Docker lets users share.
    pub namespaces: NamespaceModes,
    /// cgroup resource limits.
    pub resources: Resources,
    /// Size of `/dev/shm` in bytes; `None` means Docker's 64 MiB.
    pub shm_size: Option<u64>,
    /// `--ipc none`: the container gets no `/dev/shm` at all.
    pub no_dev_shm: bool,
    /// Extra mounts (binds, tmpfs), applied after the default mounts; a mount on the same
    /// destination as a default mount replaces it.
    pub mounts: Vec<MountSpec>,
    /// Host devices to expose.
    pub devices: Vec<DeviceSpec>,
    /// `--device-cgroup-rule` entries (`c 1:11 rwm`, `a *:* m`), added to the allow-list.
    pub device_cgroup_rules: Vec<String>,
    /// Resource limits (`--ulimit`); only those asked for are set, passed through unchanged.
    pub ulimits: Vec<Ulimit>,
    /// Paths to mask; `None` means Docker's default list.
    pub masked_paths: Option<Vec<String>>,
    /// Paths to make read-only; `None` means Docker's default list.
    pub readonly_paths: Option<Vec<String>>,
    /// Namespaced kernel parameters.
    pub sysctls: BTreeMap<String, String>,
    /// Extra supplementary group ids (`--group-add`, already resolved).
    pub group_add: Vec<u32>,
    /// Run an init process as pid 1 (`--init`): [`Self::init_path`] is bind-mounted read-only
    /// at `/sbin/docker-init` and the command becomes `["/sbin/docker-init", "--", args...]`.
    pub init: bool,
    /// The init binary on the host (written by [`crate::init::install`]); required with `init`.
    pub init_path: Option<PathBuf>,
    /// `StdinOnce`: close the container's stdin when the attached client that sent it closes
    /// its side.
    pub stdin_once: bool,
    /// The log driver (`--log-driver`, `--log-opt`), parsed and checked by the daemon
    /// ([`LogDriverConfig::from_docker`]): the bundle hands it to the shim as it is.
    pub log: crate::shim::LogDriverConfig,
    /// cgroup path (`linux.cgroupsPath`); `None` means `/berth/<id>`. A `cgroup_parent` from
    /// Docker's API becomes `<parent>/<id>` here.
    pub cgroup_path: Option<String>,
    /// An external OCI runtime (`--runtime runc`) driven through its command line; `None`
    /// means the embedded libcontainer (the runtime named `berth`).
    #[serde(default)]
    pub runtime: Option<OciRuntime>,
    /// `--userns-remap`: a new user namespace with these ranges (container root is the
    /// first host id); `None` runs in the host's user namespace.
    #[serde(default)]
    pub userns: Option<crate::idmap::IdMapping>,
    /// With `userns`: join this user namespace instead of making one (dockerd's rule for a
    /// container sharing another's PID, IPC or network namespace: it shares its user
    /// namespace too, which owns those namespaces).
    #[serde(default)]
    pub userns_path: Option<PathBuf>,
}

/// An external OCI runtime binary (Docker's `runtimes` daemon setting).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OciRuntime {
    /// The name users pick it by (`runc`).
    pub name: String,
    /// The binary.
    pub path: PathBuf,
    /// Arguments put before every subcommand (`runtimeArgs`).
    pub args: Vec<String>,
}

/// The process's identity, resolved from the image's `/etc/passwd` and `/etc/group`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProcessUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
}

/// Seccomp confinement (`--security-opt seccomp=...`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "profile")]
pub enum SeccompMode {
    /// Docker's default profile.
    #[default]
    Default,
    /// No seccomp filter.
    Unconfined,
    /// A profile in Docker's JSON format (the text of the file).
    Custom(String),
}

/// How a namespace is provided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "path")]
pub enum NamespaceMode {
    /// A new namespace for this container.
    #[default]
    Private,
    /// The host's namespace (no namespace entry in the spec).
    Host,
    /// Join an existing namespace, e.g. `/proc/<pid>/ns/net` of another container
    /// (`--net container:<id>`).
    Path(PathBuf),
}

/// Modes of the namespaces Docker lets users choose. Mount namespaces are always private.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NamespaceModes {
    /// `--pid`
    pub pid: NamespaceMode,
    /// `--ipc`
    pub ipc: NamespaceMode,
    /// `--uts`
    pub uts: NamespaceMode,
    /// `--network`
    pub net: NamespaceMode,
    /// `--cgroupns`: private (the container's cgroup is its `/`) or the host's. Only
    /// `Private` and `Host` are meaningful.
    pub cgroup: NamespaceMode,
}

/// cgroup limits, with Docker's HostConfig meanings. Zero or `None` means "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: i64,
    /// Memory + swap in bytes; -1 unlimited; 0 with a memory limit means twice the memory.
    pub memory_swap: i64,
    /// Soft limit in bytes.
    pub memory_reservation: i64,
    /// Disable the OOM killer.
    pub oom_kill_disable: bool,
    /// Relative CPU weight.
    pub cpu_shares: u64,
    /// CFS quota in microseconds.
    pub cpu_quota: i64,
    /// CFS period in microseconds.
    pub cpu_period: u64,
    /// CPUs in units of 1e-9 CPUs (`--cpus`); becomes quota/period with a 100 ms period.
    pub nano_cpus: i64,
    /// CPUs allowed (`0-3,5`).
    pub cpuset_cpus: String,
    /// Memory nodes allowed.
    pub cpuset_mems: String,
    /// Maximum number of pids; 0 or negative means unlimited.
    pub pids_limit: i64,
    /// Block IO weight (10–1000).
    pub blkio_weight: u16,
}

/// An extra mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// Where it appears in the container.
    pub destination: String,
    /// What it is.
    #[serde(flatten)]
    pub kind: MountKind,
    /// Mount read-only.
    #[serde(default)]
    pub readonly: bool,
    /// Extra options passed through (`size=64m`, `mode=1777`, `rshared`, `noexec`, ...).
    #[serde(default)]
    pub options: Vec<String>,
}

/// The kind of an extra mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum MountKind {
    /// Recursive bind mount of a host path.
    Bind {
        /// Host path.
        source: PathBuf,
    },
    /// A fresh tmpfs.
    Tmpfs,
}

/// A host device exposed to the container (`--device /dev/fuse:/dev/fuse:rwm`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// Device node on the host.
    pub path_on_host: PathBuf,
    /// Path inside the container; empty means the same as on the host.
    #[serde(default)]
    pub path_in_container: String,
    /// Device cgroup access: a combination of `r`, `w`, `m`; empty means `rwm`.
    #[serde(default)]
    pub permissions: String,
}

/// One resource limit (`--ulimit nofile=1024:2048`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Name without the `RLIMIT_` prefix, lower case as Docker takes it (`nofile`).
    pub name: String,
    /// Soft limit.
    pub soft: u64,
    /// Hard limit.
    pub hard: u64,
}

/// Docker's `HostConfig.LogConfig`: a driver name and its options, as given (the input of
/// [`crate::shim::LogDriverConfig::from_docker`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogConfig {
    /// `json-file` (also when empty), `none`; other drivers are refused.
    pub driver: String,
    /// Driver options (`max-size`, `max-file`, ...).
    pub opts: BTreeMap<String, String>,
}
