//! `run`/`create` flags and their translation into a `POST /containers/create` body, as
//! docker's CLI does it (the same defaults, the same normalisations, the same error texts).
//! The flags' values are parsed in `parse`, the request is assembled in `spec`, and the
//! resource flags `update` shares are in `resources`.

mod parse;
mod resources;
mod spec;

use anyhow::Result;
use berth_api::models::container::ContainerCreateRequest;
use clap::{Arg, ArgAction, Args};

pub use parse::{
    parse_device, parse_mount, parse_nano_cpus, parse_port_spec, parse_restart, parse_ulimit,
    read_kv_file,
};
pub use resources::ResourceFlags;

use crate::output::StatusError;

/// docker's help lists a command's flags by name (pflag sorts them); clap lists them in the
/// order they are declared. The resource flags are declared once, in [`ResourceFlags`], so
/// in `run` and `create` they would all come last: instead every flag's place is set from
/// its long name, its first bytes read as a big-endian number, which orders as the names do
/// (clap breaks a tie, names alike in their first eight bytes, by the name).
fn order_by_name(arg: Arg) -> Arg {
    let Some(long) = arg.get_long() else {
        return arg;
    };
    let key = long
        .bytes()
        .chain(std::iter::repeat(0))
        .take(std::mem::size_of::<usize>())
        .fold(0usize, |key, byte| (key << 8) | usize::from(byte));
    arg.display_order(key)
}

/// The flags `run` and `create` share.
#[derive(Debug, Args, Clone, Default)]
#[command(mut_args(order_by_name))]
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
    // Memory, CPU, block IO and pids limits, shared with `update`.
    #[command(flatten)]
    pub resources: ResourceFlags,
}

/// The flags only `run` has.
#[derive(Debug, Args, Clone, Default)]
pub struct RunFlags {
    // `run`'s own flags are listed first (see `order_by_name`).
    /// Run container in background and print container ID
    #[arg(short = 'd', long, display_order = 0)]
    pub detach: bool,
    /// Override the key sequence for detaching a container
    #[arg(long = "detach-keys", value_name = "string", display_order = 1)]
    pub detach_keys: Option<String>,
    /// Proxy received signals to the process
    #[arg(
        long = "sig-proxy",
        display_order = 2,
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
}

#[cfg(test)]
mod tests;
