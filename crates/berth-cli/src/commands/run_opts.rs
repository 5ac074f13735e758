//! `run`/`create` flags and their translation into a `POST /containers/create` body, as
//! docker's CLI does it (the same defaults, the same normalisations, the same error texts).

use std::collections::BTreeMap;

use anyhow::Result;
use berth_api::models::container::{
    BindOptions, ContainerCreateRequest, DeviceMapping, EndpointIpamConfig, EndpointSettings,
    HostConfig, LogConfig, Mount, NetworkingConfig, PortBinding, Resources, RestartPolicy,
    TmpfsOptions, Ulimit, VolumeDriverConfig, VolumeOptions,
};
use berth_api::models::{ContainerConfig, HealthConfig};
use berth_api::units::ram_in_bytes;
use clap::{ArgAction, Args};

use crate::output::StatusError;

/// The flags `run` and `create` share.
#[derive(Debug, Args, Clone, Default)]
pub struct ContainerOptions {
    /// Add a custom host-to-IP mapping (host:ip)
    #[arg(long = "add-host", value_name = "list")]
    pub add_host: Vec<String>,
    /// Add an annotation to the container (passed through to the OCI runtime)
    #[arg(long, value_name = "map")]
    pub annotation: Vec<String>,
    /// Attach to STDIN, STDOUT or STDERR
    #[arg(short = 'a', long, value_name = "list")]
    pub attach: Vec<String>,
    /// Block IO (relative weight), between 10 and 1000, or 0 to disable
    #[arg(long = "blkio-weight", value_name = "uint16", default_value_t = 0)]
    pub blkio_weight: u16,
    /// Add Linux capabilities
    #[arg(long = "cap-add", value_name = "list")]
    pub cap_add: Vec<String>,
    /// Drop Linux capabilities
    #[arg(long = "cap-drop", value_name = "list")]
    pub cap_drop: Vec<String>,
    /// Optional parent cgroup for the container
    #[arg(long = "cgroup-parent", value_name = "string", default_value = "")]
    pub cgroup_parent: String,
    /// Cgroup namespace to use (host|private)
    #[arg(long = "cgroupns", value_name = "string", default_value = "")]
    pub cgroupns: String,
    /// Write the container ID to the file
    #[arg(long, value_name = "string", default_value = "")]
    pub cidfile: String,
    /// Limit CPU CFS (Completely Fair Scheduler) period
    #[arg(long = "cpu-period", value_name = "int", default_value_t = 0)]
    pub cpu_period: i64,
    /// Limit CPU CFS (Completely Fair Scheduler) quota
    #[arg(
        long = "cpu-quota",
        value_name = "int",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub cpu_quota: i64,
    /// Limit CPU real-time period in microseconds
    #[arg(long = "cpu-rt-period", value_name = "int", default_value_t = 0)]
    pub cpu_rt_period: i64,
    /// Limit CPU real-time runtime in microseconds
    #[arg(long = "cpu-rt-runtime", value_name = "int", default_value_t = 0)]
    pub cpu_rt_runtime: i64,
    /// CPU shares (relative weight)
    #[arg(
        short = 'c',
        long = "cpu-shares",
        value_name = "int",
        default_value_t = 0
    )]
    pub cpu_shares: i64,
    /// Number of CPUs
    #[arg(long, value_name = "decimal")]
    pub cpus: Option<String>,
    /// CPUs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-cpus", value_name = "string", default_value = "")]
    pub cpuset_cpus: String,
    /// MEMs in which to allow execution (0-3, 0,1)
    #[arg(long = "cpuset-mems", value_name = "string", default_value = "")]
    pub cpuset_mems: String,
    /// Add a host device to the container
    #[arg(long, value_name = "list")]
    pub device: Vec<String>,
    /// Add a rule to the cgroup allowed devices list
    #[arg(long = "device-cgroup-rule", value_name = "list")]
    pub device_cgroup_rule: Vec<String>,
    /// Skip image verification
    #[arg(long = "disable-content-trust", hide = true, num_args = 0..=1, default_missing_value = "true")]
    pub disable_content_trust: Option<String>,
    /// Set custom DNS servers
    #[arg(long, value_name = "list")]
    pub dns: Vec<String>,
    /// Set DNS options
    #[arg(long = "dns-option", alias = "dns-opt", value_name = "list")]
    pub dns_option: Vec<String>,
    /// Set custom DNS search domains
    #[arg(long = "dns-search", value_name = "list")]
    pub dns_search: Vec<String>,
    /// Container NIS domain name
    #[arg(long, value_name = "string", default_value = "")]
    pub domainname: String,
    /// Overwrite the default ENTRYPOINT of the image
    #[arg(long, value_name = "string")]
    pub entrypoint: Option<String>,
    /// Set environment variables
    #[arg(short = 'e', long = "env", value_name = "list")]
    pub env: Vec<String>,
    /// Read in a file of environment variables
    #[arg(long = "env-file", value_name = "list")]
    pub env_file: Vec<String>,
    /// Expose a port or a range of ports
    #[arg(long, value_name = "list")]
    pub expose: Vec<String>,
    /// Add additional groups to join
    #[arg(long = "group-add", value_name = "list")]
    pub group_add: Vec<String>,
    /// Command to run to check health
    #[arg(long = "health-cmd", value_name = "string")]
    pub health_cmd: Option<String>,
    /// Time between running the check (ms|s|m|h) (default 0s)
    #[arg(long = "health-interval", value_name = "duration")]
    pub health_interval: Option<String>,
    /// Consecutive failures needed to report unhealthy
    #[arg(long = "health-retries", value_name = "int")]
    pub health_retries: Option<i64>,
    /// Time between running the check during the start period (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-interval", value_name = "duration")]
    pub health_start_interval: Option<String>,
    /// Start period for the container to initialize before starting health-retries countdown
    /// (ms|s|m|h) (default 0s)
    #[arg(long = "health-start-period", value_name = "duration")]
    pub health_start_period: Option<String>,
    /// Maximum time to allow one check to run (ms|s|m|h) (default 0s)
    #[arg(long = "health-timeout", value_name = "duration")]
    pub health_timeout: Option<String>,
    /// Print usage
    #[arg(long, action = ArgAction::Help)]
    pub help: Option<bool>,
    /// Container host name
    #[arg(short = 'h', long, value_name = "string", default_value = "")]
    pub hostname: String,
    /// Run an init inside the container that forwards signals and reaps processes
    #[arg(long)]
    pub init: bool,
    /// Keep STDIN open even if not attached
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// IPv4 address (e.g., 172.30.100.104)
    #[arg(long, value_name = "string", default_value = "")]
    pub ip: String,
    /// IPv6 address (e.g., 2001:db8::33)
    #[arg(long, value_name = "string", default_value = "")]
    pub ip6: String,
    /// IPC mode to use
    #[arg(long, value_name = "string", default_value = "")]
    pub ipc: String,
    /// Container isolation technology
    #[arg(long, value_name = "string", default_value = "")]
    pub isolation: String,
    /// Set meta data on a container
    #[arg(short = 'l', long = "label", value_name = "list")]
    pub label: Vec<String>,
    /// Read in a line delimited file of labels
    #[arg(long = "label-file", value_name = "list")]
    pub label_file: Vec<String>,
    /// Add link to another container
    #[arg(long, value_name = "list")]
    pub link: Vec<String>,
    /// Logging driver for the container
    #[arg(long = "log-driver", value_name = "string", default_value = "")]
    pub log_driver: String,
    /// Log driver options
    #[arg(long = "log-opt", value_name = "list")]
    pub log_opt: Vec<String>,
    /// Container MAC address (e.g., 92:d0:c6:0a:29:33)
    #[arg(long = "mac-address", value_name = "string", default_value = "")]
    pub mac_address: String,
    /// Memory limit
    #[arg(short = 'm', long, value_name = "bytes")]
    pub memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", value_name = "bytes")]
    pub memory_reservation: Option<String>,
    /// Swap limit equal to memory plus swap: '-1' to enable unlimited swap
    #[arg(long = "memory-swap", value_name = "bytes", allow_hyphen_values = true)]
    pub memory_swap: Option<String>,
    /// Tune container memory swappiness (0 to 100)
    #[arg(long = "memory-swappiness", value_name = "int", default_value_t = -1, allow_hyphen_values = true)]
    pub memory_swappiness: i64,
    /// Attach a filesystem mount to the container
    #[arg(long, value_name = "mount")]
    pub mount: Vec<String>,
    /// Assign a name to the container
    #[arg(long, value_name = "string", default_value = "")]
    pub name: String,
    /// Connect a container to a network
    #[arg(long, alias = "net", value_name = "network")]
    pub network: Vec<String>,
    /// Add network-scoped alias for the container
    #[arg(long = "network-alias", alias = "net-alias", value_name = "list")]
    pub network_alias: Vec<String>,
    /// Disable any container-specified HEALTHCHECK
    #[arg(long = "no-healthcheck")]
    pub no_healthcheck: bool,
    /// Disable OOM Killer
    #[arg(long = "oom-kill-disable")]
    pub oom_kill_disable: bool,
    /// Tune host's OOM preferences (-1000 to 1000)
    #[arg(
        long = "oom-score-adj",
        value_name = "int",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub oom_score_adj: i64,
    /// PID namespace to use
    #[arg(long, value_name = "string", default_value = "")]
    pub pid: String,
    /// Tune container pids limit (set -1 for unlimited)
    #[arg(
        long = "pids-limit",
        value_name = "int",
        default_value_t = 0,
        allow_hyphen_values = true
    )]
    pub pids_limit: i64,
    /// Set platform if server is multi-platform capable
    #[arg(
        long,
        value_name = "string",
        env = "DOCKER_DEFAULT_PLATFORM",
        default_value = ""
    )]
    pub platform: String,
    /// Give extended privileges to this container
    #[arg(long)]
    pub privileged: bool,
    /// Publish a container's port(s) to the host
    #[arg(short = 'p', long, value_name = "list")]
    pub publish: Vec<String>,
    /// Publish all exposed ports to random ports
    #[arg(short = 'P', long = "publish-all")]
    pub publish_all: bool,
    /// Pull image before running ("always", "missing", "never")
    #[arg(long, value_name = "string", default_value = "missing")]
    pub pull: String,
    /// Suppress the pull output
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Mount the container's root filesystem as read only
    #[arg(long = "read-only")]
    pub read_only: bool,
    /// Restart policy to apply when a container exits
    #[arg(long, value_name = "string", default_value = "no")]
    pub restart: String,
    /// Automatically remove the container and its associated anonymous volumes when it exits
    #[arg(long)]
    pub rm: bool,
    /// Runtime to use for this container
    #[arg(long, value_name = "string", default_value = "")]
    pub runtime: String,
    /// Security Options
    #[arg(long = "security-opt", value_name = "list")]
    pub security_opt: Vec<String>,
    /// Size of /dev/shm
    #[arg(long = "shm-size", value_name = "bytes")]
    pub shm_size: Option<String>,
    /// Signal to stop the container
    #[arg(long = "stop-signal", value_name = "string")]
    pub stop_signal: Option<String>,
    /// Timeout (in seconds) to stop a container
    #[arg(long = "stop-timeout", value_name = "int", allow_hyphen_values = true)]
    pub stop_timeout: Option<i64>,
    /// Storage driver options for the container
    #[arg(long = "storage-opt", value_name = "list")]
    pub storage_opt: Vec<String>,
    /// Sysctl options
    #[arg(long, value_name = "map")]
    pub sysctl: Vec<String>,
    /// Mount a tmpfs directory
    #[arg(long, value_name = "list")]
    pub tmpfs: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Ulimit options
    #[arg(long, value_name = "ulimit")]
    pub ulimit: Vec<String>,
    /// Username or UID (format: <name|uid>[:<group|gid>])
    #[arg(short = 'u', long, value_name = "string", default_value = "")]
    pub user: String,
    /// User namespace to use
    #[arg(long, value_name = "string", default_value = "")]
    pub userns: String,
    /// UTS namespace to use
    #[arg(long, value_name = "string", default_value = "")]
    pub uts: String,
    /// Bind mount a volume
    #[arg(short = 'v', long, value_name = "list")]
    pub volume: Vec<String>,
    /// Optional volume driver for the container
    #[arg(long = "volume-driver", value_name = "string", default_value = "")]
    pub volume_driver: String,
    /// Mount volumes from the specified container(s)
    #[arg(long = "volumes-from", value_name = "list")]
    pub volumes_from: Vec<String>,
    /// Working directory inside the container
    #[arg(short = 'w', long, value_name = "string", default_value = "")]
    pub workdir: String,
    /// The image, then the command and its arguments
    #[arg(
        value_name = "IMAGE [COMMAND] [ARG...]",
        required = true,
        num_args = 1..,
        trailing_var_arg = true
    )]
    pub args: Vec<String>,
}

/// The flags only `run` has.
#[derive(Debug, Args, Clone, Default)]
pub struct RunFlags {
    /// Run container in background and print container ID
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string")]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(
        long = "sig-proxy",
        value_name = "bool",
        default_value = "true",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub sig_proxy: bool,
}

/// What the flags turn into: the request body and the query parameters beside it.
#[derive(Debug, Clone)]
pub struct CreateSpec {
    pub request: ContainerCreateRequest,
    pub name: Option<String>,
    pub platform: Option<String>,
}

/// A `run`/`create` option that cannot be turned into a request. docker words the two kinds
/// differently: a flag value it cannot parse is followed by the usage line; a combination it
/// refuses is prefixed with the program name.
#[derive(Debug, thiserror::Error)]
pub enum OptionError {
    /// `invalid argument "x" for "-m, --memory" flag: invalid size: 'x'`.
    #[error("invalid argument \"{value}\" for \"{flag}\" flag: {reason}")]
    Flag {
        value: String,
        flag: String,
        reason: String,
    },
    /// `invalid containerPort: 99999`.
    #[error("{0}")]
    Invalid(String),
    /// Refused with exit status 1 and no decoration (`-a` with `-d`).
    #[error("{0}")]
    Conflict(String),
}

impl OptionError {
    /// The final message and exit status for `berth <command>` (`run`, `create`).
    pub fn into_status(self, command: &str, usage: &str) -> anyhow::Error {
        match self {
            OptionError::Flag { .. } => StatusError::error(
                125,
                format!(
                    "{self}\n\nUsage:  {usage}\n\nRun 'berth {command} --help' for more information"
                ),
            ),
            OptionError::Invalid(message) => StatusError::error(
                125,
                format!("berth: {message}\n\nRun 'berth {command} --help' for more information"),
            ),
            OptionError::Conflict(message) => StatusError::error(1, message),
        }
    }
}

/// A flag's value was rejected before anything was sent.
pub fn flag_error(value: &str, flag: &str, reason: impl std::fmt::Display) -> anyhow::Error {
    OptionError::Flag {
        value: value.to_string(),
        flag: flag.to_string(),
        reason: reason.to_string(),
    }
    .into()
}

/// A semantic error found while building the request (`invalid containerPort: x`).
fn usage(message: impl Into<String>) -> anyhow::Error {
    OptionError::Invalid(message.into()).into()
}

fn bytes_flag(value: &Option<String>, flag: &str) -> Result<i64> {
    match value {
        None => Ok(0),
        Some(v) => ram_in_bytes(v).map_err(|e| flag_error(v, flag, e)),
    }
}

/// `--memory-swap`: a size, or `-1` for unlimited.
fn swap_flag(value: &Option<String>) -> Result<i64> {
    match value.as_deref() {
        Some("-1") => Ok(-1),
        _ => bytes_flag(value, "--memory-swap"),
    }
}

/// `--cpus 1.5` → 1500000000 nano CPUs.
pub fn parse_nano_cpus(text: &str) -> Result<i64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("failed to parse {text} as a rational number"))?;
    let nanos = value * 1e9;
    if nanos.fract().abs() > 1e-6 {
        return Err("value is too precise".to_string());
    }
    Ok(nanos.round() as i64)
}

/// A Go duration flag (`5s`, `1m30s`) in nanoseconds.
fn duration_flag(value: &Option<String>, flag: &str) -> Result<i64> {
    match value {
        None => Ok(0),
        Some(v) => berth_api::duration::parse_go_duration(v)
            .ok_or_else(|| flag_error(v, flag, format!("time: invalid duration \"{v}\""))),
    }
}

/// `--restart no|always|unless-stopped|on-failure[:N]`.
pub fn parse_restart(text: &str) -> Result<RestartPolicy, String> {
    if text.is_empty() {
        return Ok(RestartPolicy {
            name: "no".into(),
            maximum_retry_count: 0,
        });
    }
    let (name, count) = match text.split_once(':') {
        Some((name, count)) => (name, Some(count)),
        None => (text, None),
    };
    let mut policy = RestartPolicy {
        name: name.to_string(),
        maximum_retry_count: 0,
    };
    if let Some(count) = count {
        if name != "on-failure" {
            return Err("maximum retry count can only be used with 'on-failure'".to_string());
        }
        policy.maximum_retry_count = count
            .parse()
            .map_err(|_| "maximum retry count must be an integer".to_string())?;
    }
    Ok(policy)
}

const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// `--ulimit nofile=1024:2048`.
pub fn parse_ulimit(text: &str) -> Result<Ulimit, String> {
    let Some((name, limits)) = text.split_once('=') else {
        return Err(format!("invalid ulimit argument: {text}"));
    };
    if !ULIMIT_NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let parse = |v: &str| {
        v.parse::<i64>()
            .map_err(|_| format!("invalid ulimit value: {v}"))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (parse(s)?, parse(h)?),
        None => {
            let v = parse(limits)?;
            (v, v)
        }
    };
    if soft > hard && hard != -1 {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// A port or range: `80`, `8000-8010`.
fn parse_range(text: &str) -> Option<(u16, u16)> {
    let parse = |s: &str| s.parse::<u16>().ok();
    match text.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (parse(a)?, parse(b)?);
            (a <= b).then_some((a, b))
        }
        None => parse(text).map(|p| (p, p)),
    }
}

/// Published ports: `(ExposedPorts keys, PortBindings)`.
pub type PortMap = BTreeMap<String, Vec<PortBinding>>;

/// docker's `nat.ParsePortSpec`: `[ip:][hostPort:]containerPort[/proto]`, with ranges.
pub fn parse_port_spec(spec: &str, out: &mut PortMap) -> Result<(), String> {
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((rest, proto)) => (rest, proto.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid proto: {proto}"));
    }
    // The IP may be bracketed IPv6: `[::1]:80:80`.
    let (ip, rest) = if let Some(after) = rest.strip_prefix('[') {
        let Some((ip, rest)) = after.split_once("]:") else {
            return Err(format!("invalid IP address: {rest}"));
        };
        (ip.to_string(), rest.to_string())
    } else {
        let parts: Vec<&str> = rest.rsplitn(3, ':').collect();
        match parts.len() {
            3 => (parts[2].to_string(), format!("{}:{}", parts[1], parts[0])),
            _ => (String::new(), rest.to_string()),
        }
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (host, container) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest.as_str()),
    };
    if container.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (c_start, c_end) =
        parse_range(container).ok_or_else(|| format!("invalid containerPort: {container}"))?;
    let (h_start, h_end) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(host).ok_or_else(|| format!("invalid hostPort: {host}"))?
    };
    if !host.is_empty() && (h_end - h_start) != (c_end - c_start) && c_start != c_end {
        return Err(format!(
            "invalid ranges specified for container and host Ports: {container} and {host}"
        ));
    }
    for (i, port) in (c_start..=c_end).enumerate() {
        let host_port = if host.is_empty() {
            String::new()
        } else if c_start == c_end && h_start != h_end {
            format!("{h_start}-{h_end}")
        } else {
            (h_start as usize + i).to_string()
        };
        out.entry(format!("{port}/{proto}"))
            .or_default()
            .push(PortBinding {
                host_ip: ip.clone(),
                host_port,
            });
    }
    Ok(())
}

/// `--expose 7000-7001/udp` → port keys.
pub fn parse_expose(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = match spec.rsplit_once('/') {
        Some((p, proto)) => (p, proto),
        None => (spec, "tcp"),
    };
    let (start, end) =
        parse_range(ports).ok_or_else(|| format!("invalid range format for --expose: {spec}"))?;
    Ok((start..=end).map(|p| format!("{p}/{proto}")).collect())
}

/// `--mount type=...,source=...,target=...`.
pub fn parse_mount(spec: &str) -> Result<Mount, String> {
    let mut mount = Mount {
        kind: "volume".to_string(),
        ..Default::default()
    };
    let mut volume = VolumeOptions::default();
    let mut bind = BindOptions::default();
    let mut tmpfs = TmpfsOptions::default();
    let mut driver = VolumeDriverConfig::default();
    let (mut has_volume, mut has_bind, mut has_tmpfs) = (false, false, false);
    let bool_value = |key: &str, value: Option<&str>| -> Result<bool, String> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("1") | Some("true") => Ok(true),
            Some("0") | Some("false") => Ok(false),
            Some(v) => Err(format!("invalid value for {key}: {v}")),
        }
    };
    for field in spec.split(',') {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v)),
            None => (field.trim().to_ascii_lowercase(), None),
        };
        let required =
            || value.ok_or_else(|| format!("invalid field '{field}' must be a key=value pair"));
        match key.as_str() {
            "readonly" | "ro" => mount.read_only = bool_value(&key, value)?,
            "volume-nocopy" => {
                volume.no_copy = bool_value(&key, value)?;
                has_volume = true;
            }
            "bind-nonrecursive" => {
                bind.non_recursive = bool_value(&key, value)?;
                has_bind = true;
            }
            "type" => mount.kind = required()?.to_ascii_lowercase(),
            "source" | "src" => mount.source = required()?.to_string(),
            "target" | "dst" | "destination" => mount.target = required()?.to_string(),
            "consistency" => mount.consistency = required()?.to_string(),
            "bind-propagation" => {
                bind.propagation = required()?.to_ascii_lowercase();
                has_bind = true;
            }
            "bind-recursive" => {
                match required()? {
                    "enabled" => {}
                    "disabled" => bind.non_recursive = true,
                    "writable" => bind.read_only_non_recursive = true,
                    "readonly" => bind.read_only_force_recursive = true,
                    v => return Err(format!("invalid value for {key}: {v}")),
                }
                has_bind = true;
            }
            "volume-subpath" => {
                volume.subpath = required()?.to_string();
                has_volume = true;
            }
            "volume-driver" => {
                driver.name = required()?.to_string();
                has_volume = true;
            }
            "volume-label" => {
                let (k, v) = required()?.split_once('=').unwrap_or((required()?, ""));
                volume
                    .labels
                    .get_or_insert_with(Default::default)
                    .insert(k.to_string(), v.to_string());
                has_volume = true;
            }
            "volume-opt" => {
                let v = required()?;
                let (k, v) = v.split_once('=').unwrap_or((v, ""));
                driver
                    .options
                    .get_or_insert_with(Default::default)
                    .insert(k.to_string(), v.to_string());
                has_volume = true;
            }
            "tmpfs-size" => {
                let v = required()?;
                tmpfs.size_bytes =
                    ram_in_bytes(v).map_err(|_| format!("invalid value for {key}: {v}"))?;
                has_tmpfs = true;
            }
            "tmpfs-mode" => {
                let v = required()?;
                tmpfs.mode = u32::from_str_radix(v, 8)
                    .map_err(|_| format!("invalid value for {key}: {v}"))?;
                has_tmpfs = true;
            }
            _ => return Err(format!("unexpected key '{key}' in '{field}'")),
        }
    }
    if mount.target.is_empty() {
        return Err("target is required".to_string());
    }
    if has_volume && mount.kind != "volume" {
        return Err(format!(
            "cannot mix 'volume-*' options with mount type '{}'",
            mount.kind
        ));
    }
    if has_bind && mount.kind != "bind" {
        return Err(format!(
            "cannot mix 'bind-*' options with mount type '{}'",
            mount.kind
        ));
    }
    if has_tmpfs && mount.kind != "tmpfs" {
        return Err(format!(
            "cannot mix 'tmpfs-*' options with mount type '{}'",
            mount.kind
        ));
    }
    if !driver.name.is_empty() || driver.options.is_some() {
        volume.driver_config = Some(driver);
    }
    if has_volume {
        mount.volume_options = Some(volume);
    }
    if has_bind {
        mount.bind_options = Some(bind);
    }
    if has_tmpfs {
        mount.tmpfs_options = Some(tmpfs);
    }
    Ok(mount)
}

/// `--device /dev/sda[:/dev/xvda][:rwm]`.
pub fn parse_device(spec: &str) -> Result<DeviceMapping, String> {
    let valid_mode = |m: &str| !m.is_empty() && m.chars().all(|c| "rwm".contains(c));
    let parts: Vec<&str> = spec.split(':').collect();
    let (src, dst, perms) = match parts.as_slice() {
        [src] => (*src, *src, "rwm"),
        [src, mode] if valid_mode(mode) => (*src, *src, *mode),
        [src, dst] => (*src, *dst, "rwm"),
        [src, dst, mode] => (*src, *dst, *mode),
        _ => return Err(format!("invalid device specification: {spec}")),
    };
    if !valid_mode(perms) {
        return Err(format!("invalid device mode: {perms}"));
    }
    if !dst.starts_with('/') {
        return Err(format!("{dst} is not an absolute path"));
    }
    Ok(DeviceMapping {
        path_on_host: src.to_string(),
        path_in_container: dst.to_string(),
        cgroup_permissions: perms.to_string(),
    })
}

/// `-e NAME` takes the value from the local environment when it has one.
fn expand_env(entry: &str) -> String {
    if entry.contains('=') {
        return entry.to_string();
    }
    match std::env::var(entry) {
        Ok(value) => format!("{entry}={value}"),
        Err(_) => entry.to_string(),
    }
}

/// Reads an `--env-file`/`--label-file`: `KEY=VALUE` lines; blank lines and `#` comments
/// skipped; for env files a bare `KEY` takes the local value, and is dropped when unset.
pub fn read_kv_file(path: &str, env: bool) -> Result<Vec<String>> {
    let text = std::fs::read(path).map_err(|e| {
        usage(format!(
            "open {path}: {}",
            crate::commands::os_error_text(&e)
        ))
    })?;
    let text = String::from_utf8_lossy(&text);
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, _)) = line.split_once('=') {
            if key.is_empty() {
                return Err(usage(format!(
                    "invalid environment variable: {line} (line {} in {path})",
                    n + 1
                )));
            }
            out.push(line.to_string());
        } else if env {
            let key = line.trim_end();
            if let Ok(value) = std::env::var(key) {
                out.push(format!("{key}={value}"));
            }
        } else {
            out.push(line.trim_end().to_string());
        }
    }
    Ok(out)
}

/// Go's `json.Compact` on a seccomp profile: whitespace outside strings removed, order kept.
fn compact_json(text: &str) -> Result<String, String> {
    serde_json::from_str::<serde::de::IgnoredAny>(text).map_err(|e| e.to_string())?;
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in text.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !c.is_whitespace() {
            out.push(c);
        }
    }
    Ok(out)
}

fn security_opts(opts: &[String]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for opt in opts {
        let (key, value) = match opt.split_once('=').or_else(|| opt.split_once(':')) {
            Some(kv) => kv,
            None if opt == "no-new-privileges" => {
                out.push(opt.clone());
                continue;
            }
            None => return Err(usage(format!("Invalid --security-opt: {opt:?}"))),
        };
        if key == "seccomp" && value != "unconfined" && value != "builtin" {
            let text = std::fs::read_to_string(value).map_err(|e| {
                usage(format!(
                    "opening seccomp profile ({value}) failed: open {value}: {}",
                    crate::commands::os_error_text(&e)
                ))
            })?;
            let compact = compact_json(&text).map_err(|e| {
                usage(format!(
                    "compacting json for seccomp profile ({value}) failed: {e}"
                ))
            })?;
            out.push(format!("seccomp={compact}"));
        } else {
            out.push(opt.clone());
        }
    }
    Ok(out)
}

fn key_values(items: &[String]) -> BTreeMap<String, String> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.to_string(), String::new()),
        })
        .collect()
}

/// `CAP_` prefixed and upper-cased, `ALL` kept, as docker's `opts.CapabilitiesMap`.
fn normalize_caps(caps: &[String]) -> Option<Vec<String>> {
    if caps.is_empty() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for cap in caps {
        let upper = cap.trim().to_ascii_uppercase();
        let cap = if upper == "ALL" || upper.starts_with("CAP_") {
            upper
        } else {
            format!("CAP_{upper}")
        };
        if !out.contains(&cap) {
            out.push(cap);
        }
    }
    Some(out)
}

/// The streams to attach: `(stdin, stdout, stderr)`.
pub fn attach_streams(opts: &ContainerOptions, detach: bool) -> Result<(bool, bool, bool)> {
    if detach {
        if !opts.attach.is_empty() {
            return Err(OptionError::Conflict(
                "conflicting options: cannot specify both --attach and --detach".to_string(),
            )
            .into());
        }
        return Ok((false, false, false));
    }
    if opts.attach.is_empty() {
        return Ok((opts.interactive, true, true));
    }
    let (mut stdin, mut stdout, mut stderr) = (false, false, false);
    for stream in &opts.attach {
        match stream.to_ascii_lowercase().as_str() {
            "stdin" => stdin = true,
            "stdout" => stdout = true,
            "stderr" => stderr = true,
            _ => {
                return Err(flag_error(
                    stream,
                    "-a, --attach",
                    "valid streams are STDIN, STDOUT and STDERR",
                ));
            }
        }
    }
    Ok((stdin, stdout, stderr))
}

impl ContainerOptions {
    pub fn image(&self) -> &str {
        &self.args[0]
    }

    /// Builds the create request. `detach` is `run -d` (create never attaches streams).
    pub fn to_spec(&self, detach: bool) -> Result<CreateSpec> {
        let memory = bytes_flag(&self.memory, "-m, --memory")?;
        let memory_reservation = bytes_flag(&self.memory_reservation, "--memory-reservation")?;
        let memory_swap = swap_flag(&self.memory_swap)?;
        let shm_size = bytes_flag(&self.shm_size, "--shm-size")?;
        let nano_cpus = match &self.cpus {
            Some(v) => parse_nano_cpus(v).map_err(|e| flag_error(v, "--cpus", e))?,
            None => 0,
        };
        let mut ulimits = Vec::new();
        for u in &self.ulimit {
            ulimits.push(parse_ulimit(u).map_err(|e| flag_error(u, "--ulimit", e))?);
        }
        let mut devices = Vec::new();
        for d in &self.device {
            devices.push(parse_device(d).map_err(|e| flag_error(d, "--device", e))?);
        }
        let mut mounts = Vec::new();
        for m in &self.mount {
            mounts.push(parse_mount(m).map_err(|e| flag_error(m, "--mount", e))?);
        }
        let (attach_stdin, attach_stdout, attach_stderr) = attach_streams(self, detach)?;

        // Ports.
        let mut bindings = PortMap::new();
        for spec in &self.publish {
            parse_port_spec(spec, &mut bindings).map_err(usage)?;
        }
        let mut exposed: BTreeMap<String, BTreeMap<String, serde_json::Value>> = bindings
            .keys()
            .map(|k| (k.clone(), BTreeMap::new()))
            .collect();
        for spec in &self.expose {
            for key in parse_expose(spec).map_err(usage)? {
                exposed.entry(key).or_default();
            }
        }

        // Volumes: `-v /path` is an anonymous volume, anything with a source is a bind.
        let mut binds = Vec::new();
        let mut volumes = BTreeMap::new();
        for spec in &self.volume {
            if spec.is_empty() {
                return Err(usage(format!("invalid volume specification: '{spec}'")));
            }
            match spec.split_once(':') {
                Some((source, rest)) => {
                    if source.starts_with('.') {
                        let absolute = std::path::absolute(source)
                            .map(|p| p.display().to_string())
                            .unwrap_or_else(|_| source.to_string());
                        binds.push(format!("{absolute}:{rest}"));
                    } else {
                        binds.push(spec.clone());
                    }
                }
                None => {
                    volumes.insert(spec.clone(), BTreeMap::new());
                }
            }
        }

        let mut env = Vec::new();
        for file in &self.env_file {
            env.extend(read_kv_file(file, true)?);
        }
        env.extend(self.env.iter().map(|e| expand_env(e)));
        let mut label_list = Vec::new();
        for file in &self.label_file {
            label_list.extend(read_kv_file(file, false)?);
        }
        label_list.extend(self.label.iter().cloned());

        // Health check.
        let health_set = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_start_period.is_some()
            || self.health_start_interval.is_some()
            || self.health_retries.is_some();
        let healthcheck = if self.no_healthcheck {
            if health_set {
                return Err(usage("--no-healthcheck conflicts with --health-* options"));
            }
            Some(HealthConfig {
                test: Some(vec!["NONE".to_string()]),
                ..Default::default()
            })
        } else if health_set {
            let check = HealthConfig {
                test: self
                    .health_cmd
                    .as_ref()
                    .map(|cmd| vec!["CMD-SHELL".to_string(), cmd.clone()]),
                interval: duration_flag(&self.health_interval, "--health-interval")?,
                timeout: duration_flag(&self.health_timeout, "--health-timeout")?,
                start_period: duration_flag(&self.health_start_period, "--health-start-period")?,
                start_interval: duration_flag(
                    &self.health_start_interval,
                    "--health-start-interval",
                )?,
                retries: self.health_retries.unwrap_or(0),
            };
            for (value, name) in [
                (check.interval, "--health-interval"),
                (check.timeout, "--health-timeout"),
                (check.start_period, "--health-start-period"),
                (check.start_interval, "--health-start-interval"),
            ] {
                if value < 0 {
                    return Err(usage(format!("{name} cannot be negative")));
                }
            }
            if check.retries < 0 {
                return Err(usage("--health-retries cannot be negative"));
            }
            Some(check)
        } else {
            None
        };

        let restart_policy = parse_restart(&self.restart).map_err(usage)?;
        if self.rm && !matches!(restart_policy.name.as_str(), "" | "no") {
            return Err(usage("Conflicting options: --restart and --rm"));
        }

        // Networking.
        // The first `--network` is the mode; more user networks are joined at start too.
        let network = self
            .network
            .first()
            .cloned()
            .unwrap_or_else(|| "default".to_string());
        let builtin = |n: &str| {
            matches!(n, "default" | "bridge" | "host" | "none") || n.starts_with("container:")
        };
        if self.network.len() > 1 && self.network.iter().any(|n| builtin(n)) {
            return Err(usage(
                "conflicting options: cannot attach both user-defined and non-user-defined network-modes",
            ));
        }
        let user_defined = !matches!(network.as_str(), "default" | "bridge" | "host" | "none")
            && !network.starts_with("container:");
        if !self.network_alias.is_empty() && !user_defined {
            return Err(usage(
                "network-scoped aliases are only supported for user-defined networks",
            ));
        }
        let mut endpoint = EndpointSettings {
            mac_address: self.mac_address.clone(),
            ..Default::default()
        };
        if !self.network_alias.is_empty() {
            endpoint.aliases = Some(self.network_alias.clone());
        }
        // On a user-defined network links are the endpoint's (DNS aliases), as the docker
        // CLI sends them.
        if user_defined && !self.link.is_empty() {
            endpoint.links = Some(self.link.clone());
        }
        if !self.ip.is_empty() || !self.ip6.is_empty() {
            endpoint.ipam_config = Some(EndpointIpamConfig {
                ipv4_address: self.ip.clone(),
                ipv6_address: self.ip6.clone(),
                link_local_ips: None,
            });
        }
        let mut endpoints_config = BTreeMap::from([(network.clone(), endpoint)]);
        for other in self.network.iter().skip(1) {
            endpoints_config
                .entry(other.clone())
                .or_insert_with(EndpointSettings::default);
        }
        let networking_config = NetworkingConfig { endpoints_config };

        let entrypoint = self.entrypoint.as_ref().map(|e| vec![e.clone()]);
        let cmd = (self.args.len() > 1).then(|| self.args[1..].to_vec());

        let config = ContainerConfig {
            hostname: self.hostname.clone(),
            domainname: self.domainname.clone(),
            user: self.user.clone(),
            attach_stdin,
            attach_stdout,
            attach_stderr,
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            tty: self.tty,
            open_stdin: self.interactive,
            stdin_once: attach_stdin,
            env: (!env.is_empty()).then_some(env),
            cmd,
            healthcheck,
            image: self.image().to_string(),
            volumes: Some(volumes),
            working_dir: self.workdir.clone(),
            entrypoint,
            labels: Some(key_values(&label_list)),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            ..Default::default()
        };

        let resources = Resources {
            cpu_shares: self.cpu_shares,
            memory,
            cgroup_parent: self.cgroup_parent.clone(),
            blkio_weight: self.blkio_weight,
            blkio_weight_device: Some(vec![]),
            blkio_device_read_bps: Some(vec![]),
            blkio_device_write_bps: Some(vec![]),
            blkio_device_read_iops: Some(vec![]),
            blkio_device_write_iops: Some(vec![]),
            cpu_period: self.cpu_period,
            cpu_quota: self.cpu_quota,
            cpu_realtime_period: self.cpu_rt_period,
            cpu_realtime_runtime: self.cpu_rt_runtime,
            cpuset_cpus: self.cpuset_cpus.clone(),
            cpuset_mems: self.cpuset_mems.clone(),
            devices: Some(devices),
            device_cgroup_rules: (!self.device_cgroup_rule.is_empty())
                .then(|| self.device_cgroup_rule.clone()),
            device_requests: None,
            memory_reservation,
            memory_swap,
            memory_swappiness: Some(self.memory_swappiness),
            nano_cpus,
            oom_kill_disable: Some(self.oom_kill_disable),
            init: self.init.then_some(true),
            pids_limit: Some(self.pids_limit),
            ulimits: Some(ulimits),
            ..Default::default()
        };

        let host_config = HostConfig {
            resources,
            binds: (!binds.is_empty()).then_some(binds),
            container_id_file: self.cidfile.clone(),
            log_config: LogConfig {
                kind: self.log_driver.clone(),
                config: key_values(&self.log_opt),
            },
            network_mode: network,
            port_bindings: Some(bindings.into_iter().map(|(k, v)| (k, Some(v))).collect()),
            restart_policy,
            auto_remove: self.rm,
            volume_driver: self.volume_driver.clone(),
            volumes_from: (!self.volumes_from.is_empty()).then(|| self.volumes_from.clone()),
            mounts: (!mounts.is_empty()).then_some(mounts),
            console_size: Some([0, 0]),
            annotations: (!self.annotation.is_empty()).then(|| key_values(&self.annotation)),
            cap_add: normalize_caps(&self.cap_add),
            cap_drop: normalize_caps(&self.cap_drop),
            cgroupns_mode: self.cgroupns.clone(),
            dns: Some(self.dns.clone()),
            dns_options: Some(self.dns_option.clone()),
            dns_search: Some(self.dns_search.clone()),
            extra_hosts: (!self.add_host.is_empty()).then(|| self.add_host.clone()),
            group_add: (!self.group_add.is_empty()).then(|| self.group_add.clone()),
            ipc_mode: self.ipc.clone(),
            links: (!self.link.is_empty()).then(|| self.link.clone()),
            oom_score_adj: self.oom_score_adj,
            pid_mode: self.pid.clone(),
            privileged: self.privileged,
            publish_all_ports: self.publish_all,
            readonly_rootfs: self.read_only,
            security_opt: if self.security_opt.is_empty() {
                None
            } else {
                Some(security_opts(&self.security_opt)?)
            },
            storage_opt: (!self.storage_opt.is_empty()).then(|| key_values(&self.storage_opt)),
            tmpfs: (!self.tmpfs.is_empty()).then(|| {
                self.tmpfs
                    .iter()
                    .map(|t| match t.split_once(':') {
                        Some((path, opts)) => (path.to_string(), opts.to_string()),
                        None => (t.clone(), String::new()),
                    })
                    .collect()
            }),
            uts_mode: self.uts.clone(),
            userns_mode: self.userns.clone(),
            shm_size,
            sysctls: (!self.sysctl.is_empty()).then(|| key_values(&self.sysctl)),
            runtime: self.runtime.clone(),
            isolation: self.isolation.clone(),
            ..Default::default()
        };
        if !matches!(self.pull.as_str(), "always" | "missing" | "never") {
            return Err(usage(format!(
                "invalid pull option: '{}': must be one of \"always\", \"missing\" or \"never\"",
                self.pull
            )));
        }
        Ok(CreateSpec {
            request: ContainerCreateRequest {
                config,
                host_config: Some(host_config),
                networking_config: Some(networking_config),
            },
            name: (!self.name.is_empty()).then(|| self.name.clone()),
            platform: (!self.platform.is_empty()).then(|| self.platform.clone()),
        })
    }
}

#[cfg(test)]
mod tests;
