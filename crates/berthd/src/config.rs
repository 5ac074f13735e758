//! Daemon configuration: command-line flags merged with `daemon.json`, with dockerd's rules (a
//! key given both ways is an error, unknown keys are an error, a missing default file is fine).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::Deserialize;

pub const DEFAULT_HOST: &str = "unix:///run/berth/berth.sock";
pub const DEFAULT_DATA_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_EXEC_ROOT: &str = "/run/berth";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/berth/daemon.json";
const DEFAULT_TCP_PORT: u16 = 2375;

/// What is wrong with the daemon's configuration; printed as is before exiting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unable to read configuration file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("unable to parse configuration file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("the following directives don't match any configuration option: {0}")]
    UnknownKeys(String),
    #[error(
        "the following directives are specified both as a flag and in the configuration file: {0}"
    )]
    Conflicts(String),
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost { host: String, reason: String },
    #[error("invalid log level {0:?}: expected one of debug, info, warn, error, fatal")]
    InvalidLogLevel(String),
    #[error("{0}")]
    InvalidRuntime(String),
    #[error("{0}")]
    InvalidNetwork(String),
    #[error("{0}")]
    InvalidRegistry(String),
    #[error("{0}")]
    InsecureHost(String),
}

/// The daemon's command line (dockerd's flag names where they apply).
#[derive(Debug, Clone, Default, Parser)]
#[command(name = "berthd", version, about = "The Berth container engine daemon")]
pub struct Flags {
    /// Daemon socket(s) to listen on: unix:///path or tcp://host:port (repeatable)
    #[arg(short = 'H', long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Run as an ordinary user, in a user namespace of the daemon's own (implied when not
    /// started by root; see docs/rootless.md)
    #[arg(long)]
    pub rootless: bool,
    /// Root directory of persistent state
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Root directory for execution state files
    #[arg(long, value_name = "DIR")]
    pub exec_root: Option<PathBuf>,
    /// Path to use for the daemon PID file [default: <exec-root>/berthd.pid]
    #[arg(short = 'p', long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Logging level: debug, info, warn, error, fatal [default: info]
    #[arg(short = 'l', long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// Enable debug mode
    #[arg(short = 'D', long)]
    pub debug: bool,
    /// Daemon configuration file
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Set key=value labels on the daemon (repeatable)
    #[arg(long = "label", value_name = "LABEL")]
    pub labels: Vec<String>,
    /// Parent cgroup for all containers [default: /berth]
    #[arg(long, value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// The berth-shim executable [default: next to berthd]
    #[arg(long, value_name = "FILE")]
    pub shim_binary: Option<PathBuf>,
    /// Register an additional OCI runtime as NAME=PATH (repeatable)
    #[arg(long = "add-runtime", value_name = "NAME=PATH")]
    pub add_runtimes: Vec<String>,
    /// Default OCI runtime for containers [default: berth, the embedded one]
    #[arg(long, value_name = "NAME")]
    pub default_runtime: Option<String>,
    /// Device of the default bridge network; "none" disables it [default: berth0]
    #[arg(short = 'b', long, value_name = "DEVICE")]
    pub bridge: Option<String>,
    /// The default bridge's address and prefix, e.g. 172.17.0.1/16
    #[arg(long, value_name = "CIDR")]
    pub bip: Option<String>,
    /// Where containers on the default bridge get their addresses (within --bip's subnet)
    #[arg(long, value_name = "CIDR")]
    pub fixed_cidr: Option<String>,
    /// Manage firewall rules (NAT, forwarding, published ports) [default: true]
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub iptables: Option<bool>,
    /// MTU of the default bridge's interfaces [default: 1500]
    #[arg(long, value_name = "BYTES")]
    pub mtu: Option<u32>,
    /// Connections served at once per listener; more wait to be accepted [default: 1024]
    #[arg(long, value_name = "N")]
    pub max_connections: Option<usize>,
    /// Registry (host[:port]) spoken to over plain HTTP (repeatable); loopback ones always are
    #[arg(long = "insecure-registry", value_name = "REGISTRY")]
    pub insecure_registries: Vec<String>,
    /// Layers a pull downloads at once [default: 3]
    #[arg(long, value_name = "N")]
    pub max_concurrent_downloads: Option<usize>,
    /// Attempts at each blob of a pull before it fails [default: 5]
    #[arg(long, value_name = "N")]
    pub max_download_attempts: Option<u32>,
    /// A download slower than this many bytes per second (over --download-stall-time) has
    /// stalled and is resumed [default: 1024]
    #[arg(long, value_name = "BYTES")]
    pub download_stall_speed: Option<u64>,
    /// Seconds over which a download's speed is measured for stall detection [default: 30]
    #[arg(long, value_name = "SECONDS")]
    pub download_stall_time: Option<f64>,
    /// Preferred Docker Hub mirror (repeatable), e.g. https://mirror.example.com
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,
    /// Layers a push uploads at once [default: 5]
    #[arg(long, value_name = "N")]
    pub max_concurrent_uploads: Option<usize>,
    /// Run containers in a user namespace mapped to the subordinate ids of default (the
    /// dockremap user, created if missing), USER[:GROUP] or UID[:GID]
    #[arg(long, value_name = "USER[:GROUP]")]
    pub userns_remap: Option<String>,
    #[command(flatten)]
    pub tls: crate::tls::TlsFlags,
}

/// `daemon.json`: the dockerd keys Berth understands.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    pub hosts: Option<Vec<String>>,
    pub data_root: Option<PathBuf>,
    pub exec_root: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    pub log_level: Option<String>,
    pub debug: Option<bool>,
    pub labels: Option<Vec<String>>,
    pub cgroup_parent: Option<String>,
    pub shim_binary: Option<PathBuf>,
    pub runtimes: Option<BTreeMap<String, RuntimeConfig>>,
    pub default_runtime: Option<String>,
    pub bridge: Option<String>,
    pub bip: Option<String>,
    pub fixed_cidr: Option<String>,
    pub iptables: Option<bool>,
    pub mtu: Option<u32>,
    pub default_address_pools: Option<Vec<AddressPool>>,
    pub max_connections: Option<usize>,
    pub insecure_registries: Option<Vec<String>>,
    pub max_concurrent_downloads: Option<usize>,
    pub max_download_attempts: Option<u32>,
    pub download_stall_speed: Option<u64>,
    pub download_stall_time: Option<f64>,
    pub registry_mirrors: Option<Vec<String>>,
    /// Mirrors of any registry: `{"reg:5000": ["https://mirror:5001"]}`, tried in order
    /// before the registry itself (dockerd's `registry-mirrors` covers Docker Hub only).
    pub registry_mirrors_per_registry: Option<BTreeMap<String, Vec<String>>>,
    pub max_concurrent_uploads: Option<usize>,
    pub tls: Option<bool>,
    pub tlsverify: Option<bool>,
    pub tlscacert: Option<PathBuf>,
    pub tlscert: Option<PathBuf>,
    pub tlskey: Option<PathBuf>,
    pub userns_remap: Option<String>,
    /// dockerd's `builder` section; only `gc.defaultKeepStorage` is used.
    pub builder: Option<BuilderConfig>,
}

/// daemon.json `builder`: `{"gc": {"enabled": true, "defaultKeepStorage": "10GB"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BuilderConfig {
    #[serde(default)]
    pub gc: BuilderGc,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct BuilderGc {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(rename = "defaultKeepStorage", default)]
    pub default_keep_storage: Option<String>,
}

/// One entry of daemon.json `default-address-pools`: subnets of `size` bits from `base`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPool {
    pub base: String,
    pub size: u8,
}

/// An external OCI runtime (daemon.json `runtimes`, `--add-runtime`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    pub path: PathBuf,
    #[serde(rename = "runtimeArgs", default)]
    pub runtime_args: Vec<String>,
}

/// API connections served at once per listener unless configured.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// The embedded runtime's name; it needs no binary and cannot be redefined.
pub const EMBEDDED_RUNTIME: &str = "berth";

const FILE_KEYS: &[&str] = &[
    "hosts",
    "data-root",
    "exec-root",
    "pidfile",
    "log-level",
    "debug",
    "labels",
    "cgroup-parent",
    "shim-binary",
    "runtimes",
    "default-runtime",
    "bridge",
    "bip",
    "fixed-cidr",
    "iptables",
    "mtu",
    "default-address-pools",
    "max-connections",
    "insecure-registries",
    "max-concurrent-downloads",
    "max-download-attempts",
    "download-stall-speed",
    "download-stall-time",
    "registry-mirrors",
    "registry-mirrors-per-registry",
    "tls",
    "tlsverify",
    "tlscacert",
    "tlscert",
    "tlskey",
    "builder",
    "userns-remap",
];

/// An address the API is served on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
}

impl Host {
    /// Parses `unix:///path` or `tcp://host:port` (as dockerd, an empty path or host takes the
    /// default; a missing port is 2375).
    pub fn parse(text: &str) -> Result<Host, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidHost {
            host: text.to_string(),
            reason: reason.to_string(),
        };
        if let Some(path) = text.strip_prefix("unix://") {
            let path = if path.is_empty() {
                DEFAULT_HOST.trim_start_matches("unix://")
            } else {
                path
            };
            if !path.starts_with('/') {
                return Err(invalid("a unix socket path must be absolute"));
            }
            return Ok(Host::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = text.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            if addr.contains('/') {
                return Err(invalid("a tcp address has no path"));
            }
            let (host, port) = match addr.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || addr.starts_with('[') => {
                    let port: u16 = p.parse().map_err(|_| invalid("invalid port"))?;
                    (h, port)
                }
                _ => (addr, DEFAULT_TCP_PORT),
            };
            let host = if host.is_empty() { "127.0.0.1" } else { host };
            return Ok(Host::Tcp(format!("{host}:{port}")));
        }
        Err(invalid("expected unix:///path or tcp://host:port"))
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Unix(path) => write!(f, "unix://{}", path.display()),
            Host::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// The daemon's effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub hosts: Vec<Host>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub pidfile: PathBuf,
    /// One of debug, info, warn, error, fatal.
    pub log_level: String,
    pub debug: bool,
    pub labels: Vec<String>,
    /// cgroup parent of containers that do not name one.
    pub cgroup_parent: String,
    /// The shim executable; `None` means `berth-shim` next to the daemon's executable.
    pub shim_binary: Option<PathBuf>,
    /// External OCI runtimes by name (the embedded `berth` is not listed).
    pub runtimes: BTreeMap<String, RuntimeConfig>,
    /// Runtime of containers that name none.
    pub default_runtime: String,
    /// Networking: default bridge, pools, firewall.
    pub network: NetworkConfig,
    /// API connections served at once per listener (`--max-connections`).
    pub max_connections: usize,
    /// Registry client settings.
    pub registry: RegistryConfig,
    /// TLS on the tcp listeners (`--tls*`).
    pub tls: crate::tls::ApiTls,
    /// Warnings about the listeners, logged once logging is set up.
    pub host_warnings: Vec<String>,
    /// The build cache's budget in bytes (daemon.json `builder.gc.defaultKeepStorage`);
    /// `None`: a tenth of the data root's file system.
    pub builder_keep_storage: Option<u64>,
    /// `--userns-remap` as given; resolved at start ([`crate::userns`]).
    pub userns_remap: Option<String>,
    /// The id mapping `userns_remap` resolved to (set by [`crate::server::run`], which also
    /// moves `data_root` to the remapped root).
    pub remap: Option<berth_runtime::idmap::IdMapping>,
}

/// How the daemon pulls (`--insecure-registry`, `--max-concurrent-downloads`, mirrors...).
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryConfig {
    pub insecure_registries: Vec<String>,
    pub max_concurrent_downloads: usize,
    pub max_download_attempts: u32,
    pub stall: berth_registry::client::StallPolicy,
    /// Docker Hub mirrors, normalized as dockerd does (`https://host/`).
    pub mirrors: Vec<String>,
    /// Mirrors of other registries (`host[:port]` → endpoints), normalized the same way.
    pub mirrors_per_registry: BTreeMap<String, Vec<String>>,
    /// Per-registry TLS material: `<dir>/<host[:port]>/{ca.crt,*.cert,*.key}` (dockerd's
    /// `/etc/docker/certs.d`): `certs.d` beside the daemon's configuration file.
    pub certs_dir: PathBuf,
    pub max_concurrent_uploads: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: Vec::new(),
            // dockerd's defaults.
            max_concurrent_downloads: 3,
            max_download_attempts: berth_registry::client::MAX_DOWNLOAD_ATTEMPTS,
            stall: berth_registry::client::StallPolicy::default(),
            mirrors: Vec::new(),
            mirrors_per_registry: BTreeMap::new(),
            certs_dir: certs_dir_for(Path::new(DEFAULT_CONFIG_FILE)),
            max_concurrent_uploads: 5,
        }
    }
}

/// `certs.d` beside a configuration file (`/etc/berth/daemon.json` → `/etc/berth/certs.d`).
fn certs_dir_for(config_file: &Path) -> PathBuf {
    absolute(
        config_file
            .parent()
            .unwrap_or(Path::new("/"))
            .join("certs.d"),
    )
}

impl RegistryConfig {
    pub fn remote_options(&self) -> berth_registry::client::RemoteOptions {
        let mut mirrors = self.mirrors_per_registry.clone();
        if !self.mirrors.is_empty() {
            mirrors.insert("docker.io".into(), self.mirrors.clone());
        }
        berth_registry::client::RemoteOptions {
            insecure_registries: self.insecure_registries.clone(),
            mirrors,
            certs_dir: Some(self.certs_dir.clone()),
        }
    }

    /// How a pull into `data_root` downloads.
    pub fn pull_options(&self, data_root: &Path) -> berth_registry::client::PullOptions {
        berth_registry::client::PullOptions {
            max_concurrent: self.max_concurrent_downloads,
            persistence: berth_registry::client::Persistence {
                max_attempts: self.max_download_attempts,
                stall: self.stall,
                ..Default::default()
            },
            partial_dir: Some(partial_downloads_dir(data_root)),
        }
    }
}

/// Where partial blob downloads wait for a resume: `<data-root>/downloads/<hex>`.
pub fn partial_downloads_dir(data_root: &Path) -> PathBuf {
    data_root.join("downloads")
}

/// A mirror URL as dockerd normalizes it: a scheme (http or https) and a host, no path
/// beyond `/`; `https://mirror:5000` becomes `https://mirror:5000/`.
fn normalize_mirror(text: &str) -> Result<String, ConfigError> {
    let invalid =
        |why: &str| ConfigError::InvalidRegistry(format!("invalid mirror: {text:?} {why}"));
    let rest = text
        .strip_prefix("https://")
        .map(|r| ("https", r))
        .or_else(|| text.strip_prefix("http://").map(|r| ("http", r)));
    let Some((scheme, rest)) = rest else {
        return Err(invalid("must start with http:// or https://"));
    };
    let host = rest.trim_end_matches('/');
    if host.is_empty() || host.contains('/') || host.contains('?') || host.contains('#') {
        return Err(invalid("must be a scheme and a host, without a path"));
    }
    Ok(format!("{scheme}://{host}/"))
}

/// The daemon's network settings (`--bridge`, `--bip`, `--fixed-cidr`, `--iptables`, `--mtu`,
/// daemon.json `default-address-pools`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig {
    /// Device of the default bridge; `none` disables the default bridge network.
    pub bridge: String,
    pub bip: Option<berth_network::IpNet>,
    pub fixed_cidr: Option<berth_network::IpNet>,
    pub iptables: bool,
    pub mtu: Option<u32>,
    pub default_address_pools: Vec<berth_network::ipam::DefaultPool>,
}

/// The default bridge's device name.
pub const DEFAULT_BRIDGE: &str = "berth0";

impl NetworkConfig {
    fn defaults() -> NetworkConfig {
        NetworkConfig {
            bridge: DEFAULT_BRIDGE.into(),
            bip: None,
            fixed_cidr: None,
            iptables: true,
            mtu: None,
            default_address_pools: berth_network::ipam::docker_default_pools(),
        }
    }
}

/// Default cgroup parent of containers.
pub const DEFAULT_CGROUP_PARENT: &str = "/berth";

impl Config {
    /// The shim binary to run: configured, or `berth-shim` beside the daemon's executable.
    pub fn shim_binary(&self) -> PathBuf {
        self.shim_binary.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("berth-shim")))
                .unwrap_or_else(|| PathBuf::from("berth-shim"))
        })
    }

    /// Reads the configuration file the flags name (or the default one, if it exists) and
    /// merges it with the flags.
    pub fn load(flags: &Flags) -> Result<Config, ConfigError> {
        let (path, explicit) = match &flags.config_file {
            Some(p) => (p.clone(), true),
            // A rootless daemon's is the user's, never the system daemon's.
            None => (
                crate::rootless::default_config_file()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE)),
                false,
            ),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => Some(text),
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(ConfigError::ReadFile { path, source }),
        };
        let file = match text {
            Some(text) => parse_file(&path, &text)?,
            None => FileConfig::default(),
        };
        Config::merge(flags, &file)
    }

    /// Merges flags and file, refusing keys given both ways.
    pub fn merge(flags: &Flags, file: &FileConfig) -> Result<Config, ConfigError> {
        let mut conflicts = Vec::new();
        let mut conflict = |key: &str, flag: String, from_file: String| {
            conflicts.push(format!(
                "{key}: (from flag: {flag}, from file: {from_file})"
            ));
        };
        if let (false, Some(f)) = (flags.hosts.is_empty(), &file.hosts) {
            conflict("hosts", format!("{:?}", flags.hosts), format!("{f:?}"));
        }
        if let (Some(a), Some(b)) = (&flags.data_root, &file.data_root) {
            conflict(
                "data-root",
                a.display().to_string(),
                b.display().to_string(),
            );
        }
        if let (Some(a), Some(b)) = (&flags.exec_root, &file.exec_root) {
            conflict(
                "exec-root",
                a.display().to_string(),
                b.display().to_string(),
            );
        }
        if let (Some(a), Some(b)) = (&flags.pidfile, &file.pidfile) {
            conflict("pidfile", a.display().to_string(), b.display().to_string());
        }
        if let (Some(a), Some(b)) = (&flags.log_level, &file.log_level) {
            conflict("log-level", a.clone(), b.clone());
        }
        if let (Some(a), Some(b)) = (&flags.userns_remap, &file.userns_remap) {
            conflict("userns-remap", a.clone(), b.clone());
        }
        if let (true, Some(b)) = (flags.debug, file.debug) {
            conflict("debug", "true".into(), b.to_string());
        }
        if let (false, Some(b)) = (flags.labels.is_empty(), &file.labels) {
            conflict("labels", format!("{:?}", flags.labels), format!("{b:?}"));
        }
        if let (Some(a), Some(b)) = (&flags.cgroup_parent, &file.cgroup_parent) {
            conflict("cgroup-parent", a.clone(), b.clone());
        }
        if let (Some(a), Some(b)) = (&flags.shim_binary, &file.shim_binary) {
            conflict(
                "shim-binary",
                a.display().to_string(),
                b.display().to_string(),
            );
        }
        if let (Some(a), Some(b)) = (&flags.default_runtime, &file.default_runtime) {
            conflict("default-runtime", a.clone(), b.clone());
        }
        if let (Some(a), Some(b)) = (&flags.bridge, &file.bridge) {
            conflict("bridge", a.clone(), b.clone());
        }
        if let (Some(a), Some(b)) = (&flags.bip, &file.bip) {
            conflict("bip", a.clone(), b.clone());
        }
        if let (Some(a), Some(b)) = (&flags.fixed_cidr, &file.fixed_cidr) {
            conflict("fixed-cidr", a.clone(), b.clone());
        }
        if let (Some(a), Some(b)) = (&flags.iptables, &file.iptables) {
            conflict("iptables", a.to_string(), b.to_string());
        }
        if let (Some(a), Some(b)) = (&flags.mtu, &file.mtu) {
            conflict("mtu", a.to_string(), b.to_string());
        }
        if let (Some(a), Some(b)) = (&flags.max_connections, &file.max_connections) {
            conflict("max-connections", a.to_string(), b.to_string());
        }
        if let (false, Some(b)) = (
            flags.insecure_registries.is_empty(),
            &file.insecure_registries,
        ) {
            conflict(
                "insecure-registries",
                format!("{:?}", flags.insecure_registries),
                format!("{b:?}"),
            );
        }
        if let (Some(a), Some(b)) = (
            flags.max_concurrent_downloads,
            file.max_concurrent_downloads,
        ) {
            conflict("max-concurrent-downloads", a.to_string(), b.to_string());
        }
        if let (Some(a), Some(b)) = (flags.max_download_attempts, file.max_download_attempts) {
            conflict("max-download-attempts", a.to_string(), b.to_string());
        }
        if let (Some(a), Some(b)) = (flags.download_stall_speed, file.download_stall_speed) {
            conflict("download-stall-speed", a.to_string(), b.to_string());
        }
        if let (Some(a), Some(b)) = (flags.download_stall_time, file.download_stall_time) {
            conflict("download-stall-time", a.to_string(), b.to_string());
        }
        if let (false, Some(b)) = (flags.registry_mirrors.is_empty(), &file.registry_mirrors) {
            conflict(
                "registry-mirrors",
                format!("{:?}", flags.registry_mirrors),
                format!("{b:?}"),
            );
        }
        if let (Some(a), Some(b)) = (flags.max_concurrent_uploads, file.max_concurrent_uploads) {
            conflict("max-concurrent-uploads", a.to_string(), b.to_string());
        }
        crate::tls::conflicts(&flags.tls, file, &mut conflicts);
        if !conflicts.is_empty() {
            return Err(ConfigError::Conflicts(conflicts.join(", ")));
        }
        let (runtimes, default_runtime) = runtimes(flags, file)?;

        let host_texts: Vec<String> = if !flags.hosts.is_empty() {
            flags.hosts.clone()
        } else {
            file.hosts.clone().unwrap_or_default()
        };
        let mut hosts = host_texts
            .iter()
            .map(|h| Host::parse(h))
            .collect::<Result<Vec<_>, _>>()?;
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let tls = crate::tls::resolve(&flags.tls, file, &env);
        if hosts.is_empty() {
            // As dockerd: with TLS on and no host given, tcp rather than the unix socket.
            hosts.push(Host::parse(if tls.enabled() {
                crate::tls::DEFAULT_TLS_HOST
            } else {
                DEFAULT_HOST
            })?);
        }
        let host_warnings = crate::tls::check_hosts(&hosts, &tls)?;
        let data_root = flags
            .data_root
            .clone()
            .or_else(|| file.data_root.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_ROOT));
        let exec_root = flags
            .exec_root
            .clone()
            .or_else(|| file.exec_root.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_EXEC_ROOT));
        let pidfile = flags
            .pidfile
            .clone()
            .or_else(|| file.pidfile.clone())
            .unwrap_or_else(|| exec_root.join("berthd.pid"));
        let debug = flags.debug || file.debug.unwrap_or(false);
        let log_level = flags
            .log_level
            .clone()
            .or_else(|| file.log_level.clone())
            .unwrap_or_else(|| "info".to_string())
            .to_ascii_lowercase();
        if !["debug", "info", "warn", "error", "fatal"].contains(&log_level.as_str()) {
            return Err(ConfigError::InvalidLogLevel(log_level));
        }
        let labels = if !flags.labels.is_empty() {
            flags.labels.clone()
        } else {
            file.labels.clone().unwrap_or_default()
        };
        let cgroup_parent = flags
            .cgroup_parent
            .clone()
            .or_else(|| file.cgroup_parent.clone())
            .unwrap_or_else(|| DEFAULT_CGROUP_PARENT.to_string());
        let shim_binary = flags
            .shim_binary
            .clone()
            .or_else(|| file.shim_binary.clone())
            .map(absolute);
        let network = network_config(flags, file)?;
        let max_connections = flags
            .max_connections
            .or(file.max_connections)
            .unwrap_or(DEFAULT_MAX_CONNECTIONS)
            .max(1);
        let registry = RegistryConfig {
            insecure_registries: if flags.insecure_registries.is_empty() {
                file.insecure_registries.clone().unwrap_or_default()
            } else {
                flags.insecure_registries.clone()
            },
            max_concurrent_downloads: flags
                .max_concurrent_downloads
                .or(file.max_concurrent_downloads)
                .unwrap_or(3)
                .max(1),
            max_download_attempts: flags
                .max_download_attempts
                .or(file.max_download_attempts)
                .unwrap_or(berth_registry::client::MAX_DOWNLOAD_ATTEMPTS)
                .max(1),
            stall: berth_registry::client::StallPolicy {
                min_speed: flags
                    .download_stall_speed
                    .or(file.download_stall_speed)
                    .unwrap_or(berth_registry::client::StallPolicy::default().min_speed),
                window: match flags.download_stall_time.or(file.download_stall_time) {
                    Some(secs) if secs.is_finite() && secs > 0.0 => {
                        std::time::Duration::from_secs_f64(secs)
                    }
                    Some(secs) => {
                        return Err(ConfigError::InvalidRegistry(format!(
                            "invalid download-stall-time {secs}: expected a positive number of seconds"
                        )));
                    }
                    None => berth_registry::client::StallPolicy::default().window,
                },
            },
            mirrors: if flags.registry_mirrors.is_empty() {
                file.registry_mirrors.clone().unwrap_or_default()
            } else {
                flags.registry_mirrors.clone()
            }
            .iter()
            .map(|m| normalize_mirror(m))
            .collect::<Result<_, _>>()?,
            mirrors_per_registry: file
                .registry_mirrors_per_registry
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|(registry, list)| {
                    let list = list
                        .iter()
                        .map(|m| normalize_mirror(m))
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((registry, list))
                })
                .collect::<Result<_, ConfigError>>()?,
            certs_dir: certs_dir_for(
                flags
                    .config_file
                    .as_deref()
                    .unwrap_or(Path::new(DEFAULT_CONFIG_FILE)),
            ),
            max_concurrent_uploads: flags
                .max_concurrent_uploads
                .or(file.max_concurrent_uploads)
                .unwrap_or(5)
                .max(1),
        };
        let builder_keep_storage = match file
            .builder
            .as_ref()
            .and_then(|b| b.gc.default_keep_storage.as_deref())
        {
            Some(text) => Some(berth_api::units::ram_in_bytes(text).map(|n| n as u64).map_err(|_| {
                ConfigError::InvalidRegistry(format!(
                    "invalid builder.gc.defaultKeepStorage {text:?}: expected a size such as 10GB"
                ))
            })?),
            None => None,
        };
        Ok(Config {
            userns_remap: flags
                .userns_remap
                .clone()
                .or_else(|| file.userns_remap.clone())
                .filter(|s| !s.is_empty()),
            remap: None,
            tls,
            host_warnings,
            builder_keep_storage,
            max_connections,
            network,
            registry,
            cgroup_parent,
            shim_binary,
            runtimes,
            default_runtime,
            hosts,
            data_root: absolute(data_root),
            exec_root: absolute(exec_root),
            pidfile: absolute(pidfile),
            log_level: if debug { "debug".into() } else { log_level },
            debug,
            labels,
        })
    }

    /// The configuration tests use: everything under one temporary directory.
    pub fn for_root(root: &Path) -> Config {
        Config {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            hosts: vec![Host::Unix(root.join("berth.sock"))],
            data_root: root.join("data"),
            exec_root: root.join("exec"),
            pidfile: root.join("exec/berthd.pid"),
            log_level: "info".into(),
            debug: false,
            labels: Vec::new(),
            cgroup_parent: DEFAULT_CGROUP_PARENT.to_string(),
            shim_binary: None,
            runtimes: BTreeMap::new(),
            default_runtime: EMBEDDED_RUNTIME.to_string(),
            // No default bridge and no firewall: unit tests of the router touch no kernel state.
            network: NetworkConfig {
                bridge: "none".into(),
                iptables: false,
                ..NetworkConfig::defaults()
            },
            registry: RegistryConfig::default(),
            tls: crate::tls::ApiTls::default(),
            host_warnings: Vec::new(),
            builder_keep_storage: None,
            userns_remap: None,
            remap: None,
        }
    }

    /// The nftables table of this daemon: `berth` for the default data root, else `berth_`
    /// and 8 hex digits of the data root's sha256, so daemons on other data roots (tests)
    /// never touch each other's rules.
    pub fn firewall_table(&self) -> String {
        // Under --userns-remap the data root is `<root>/<uid>.<gid>`: the table stays keyed on
        // the root the operator configured, so that turning remapping on or off never leaves
        // a table behind that no daemon owns.
        let root = match &self.remap {
            Some(_) => self.data_root.parent().unwrap_or(&self.data_root),
            None => &self.data_root,
        };
        if root == Path::new(DEFAULT_DATA_ROOT) {
            return "berth".into();
        }
        use sha2::Digest;
        let digest = sha2::Sha256::digest(root.as_os_str().as_encoded_bytes());
        format!("berth_{}", &hex::encode(digest)[..8])
    }
}

fn network_config(flags: &Flags, file: &FileConfig) -> Result<NetworkConfig, ConfigError> {
    let mut n = NetworkConfig::defaults();
    if let Some(b) = flags.bridge.clone().or_else(|| file.bridge.clone()) {
        if b.is_empty() || b.len() > 15 || b.contains(['/', ' ']) {
            return Err(ConfigError::InvalidNetwork(format!(
                "invalid bridge name {b:?}"
            )));
        }
        n.bridge = b;
    }
    let cidr =
        |key: &str, v: Option<String>| -> Result<Option<berth_network::IpNet>, ConfigError> {
            v.map(|t| {
                t.parse::<berth_network::IpNet>().map_err(|_| {
                    ConfigError::InvalidNetwork(format!(
                        "invalid {key} {t:?}: expected an address with a prefix length"
                    ))
                })
            })
            .transpose()
        };
    n.bip = cidr("bip", flags.bip.clone().or_else(|| file.bip.clone()))?;
    n.fixed_cidr = cidr(
        "fixed-cidr",
        flags.fixed_cidr.clone().or_else(|| file.fixed_cidr.clone()),
    )?;
    if let (Some(bip), Some(fixed)) = (n.bip, n.fixed_cidr)
        && !bip.trunc().contains(&fixed.network())
    {
        return Err(ConfigError::InvalidNetwork(format!(
            "fixed-cidr {fixed} is not within bip {bip}"
        )));
    }
    if n.bip.is_some() && n.bridge == "none" {
        return Err(ConfigError::InvalidNetwork(
            "you specified -b & --bip, mutually exclusive options. Please specify only one".into(),
        ));
    }
    n.iptables = flags.iptables.or(file.iptables).unwrap_or(true);
    n.mtu = flags.mtu.or(file.mtu);
    if let Some(pools) = &file.default_address_pools {
        n.default_address_pools = pools
            .iter()
            .map(|p| {
                let base = p.base.parse::<berth_network::IpNet>().map_err(|_| {
                    ConfigError::InvalidNetwork(format!(
                        "invalid default-address-pools base {:?}",
                        p.base
                    ))
                })?;
                if p.size < base.prefix_len() || p.size > base.max_prefix_len() {
                    return Err(ConfigError::InvalidNetwork(format!(
                        "invalid default-address-pools size {} for base {}",
                        p.size, p.base
                    )));
                }
                Ok(berth_network::ipam::DefaultPool {
                    base: base.trunc(),
                    size: p.size,
                })
            })
            .collect::<Result<_, _>>()?;
    }
    Ok(n)
}

fn absolute(path: PathBuf) -> PathBuf {
    std::path::absolute(&path).unwrap_or(path)
}

/// The runtimes of `--add-runtime` and daemon.json `runtimes` (a name given both ways is an
/// error, as is redefining `berth`), and the default runtime, which must be one of them.
fn runtimes(
    flags: &Flags,
    file: &FileConfig,
) -> Result<(BTreeMap<String, RuntimeConfig>, String), ConfigError> {
    let mut out = file.runtimes.clone().unwrap_or_default();
    for spec in &flags.add_runtimes {
        let (name, path) = spec
            .split_once('=')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty())
            .ok_or_else(|| {
                ConfigError::InvalidRuntime(format!(
                    "invalid --add-runtime {spec:?}: expected NAME=PATH"
                ))
            })?;
        if out.contains_key(name) {
            return Err(ConfigError::InvalidRuntime(format!(
                "runtime {name:?} is defined both by --add-runtime and in the configuration file"
            )));
        }
        let rt = RuntimeConfig {
            path: PathBuf::from(path),
            runtime_args: Vec::new(),
        };
        out.insert(name.to_string(), rt);
    }
    for (name, rt) in &out {
        if name == EMBEDDED_RUNTIME {
            return Err(ConfigError::InvalidRuntime(format!(
                "runtime name '{EMBEDDED_RUNTIME}' is reserved"
            )));
        }
        if rt.path.as_os_str().is_empty() {
            return Err(ConfigError::InvalidRuntime(format!(
                "runtime {name:?}: a path is required"
            )));
        }
    }
    let default = flags
        .default_runtime
        .clone()
        .or_else(|| file.default_runtime.clone())
        .unwrap_or_else(|| EMBEDDED_RUNTIME.to_string());
    if default != EMBEDDED_RUNTIME && !out.contains_key(&default) {
        return Err(ConfigError::InvalidRuntime(format!(
            "default runtime {default:?} is not configured"
        )));
    }
    Ok((out, default))
}

/// Parses `daemon.json`, reporting unknown keys in dockerd's words.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, ConfigError> {
    let parse_error = |message: String| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message,
    };
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_str(text).map_err(|e| parse_error(e.to_string()))?;
    let unknown: Vec<&str> = raw
        .keys()
        .map(String::as_str)
        .filter(|k| !FILE_KEYS.contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(ConfigError::UnknownKeys(unknown.join(", ")));
    }
    serde_json::from_str(text).map_err(|e| parse_error(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        let mut argv = vec!["berthd"];
        argv.extend_from_slice(args);
        Flags::try_parse_from(argv).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::merge(&flags(&[]), &FileConfig::default()).unwrap();
        assert_eq!(
            c.hosts,
            vec![Host::Unix(PathBuf::from("/run/berth/berth.sock"))]
        );
        assert_eq!(c.data_root, PathBuf::from("/var/lib/berth"));
        assert_eq!(c.pidfile, PathBuf::from("/run/berth/berthd.pid"));
        assert_eq!(c.log_level, "info");
    }

    #[test]
    fn flags_and_file_merge() {
        let file = parse_file(
            Path::new("daemon.json"),
            r#"{"data-root":"/d","labels":["a=b"],"log-level":"warn"}"#,
        )
        .unwrap();
        let c = Config::merge(
            &flags(&[
                "-H",
                "unix:///tmp/s.sock",
                "-H",
                "tcp://:2376",
                "--exec-root",
                "/e",
            ]),
            &file,
        )
        .unwrap();
        assert_eq!(
            c.hosts,
            vec![
                Host::Unix(PathBuf::from("/tmp/s.sock")),
                Host::Tcp("127.0.0.1:2376".into())
            ]
        );
        assert_eq!(c.data_root, PathBuf::from("/d"));
        assert_eq!(c.pidfile, PathBuf::from("/e/berthd.pid"));
        assert_eq!(c.labels, vec!["a=b".to_string()]);
        assert_eq!(c.log_level, "warn");
        let debug = Config::merge(&flags(&["-D"]), &file).unwrap();
        assert_eq!(debug.log_level, "debug");
    }

    #[test]
    fn max_connections_from_flag_or_file() {
        let none = FileConfig::default();
        let c = Config::merge(&flags(&[]), &none).unwrap();
        assert_eq!(c.max_connections, DEFAULT_MAX_CONNECTIONS);
        let c = Config::merge(&flags(&["--max-connections", "64"]), &none).unwrap();
        assert_eq!(c.max_connections, 64);
        let file = parse_file(Path::new("daemon.json"), r#"{"max-connections": 32}"#).unwrap();
        assert_eq!(
            Config::merge(&flags(&[]), &file).unwrap().max_connections,
            32
        );
        assert!(Config::merge(&flags(&["--max-connections", "64"]), &file).is_err());
    }

    #[test]
    fn registry_settings_from_flags_or_file() {
        let c = Config::merge(&flags(&[]), &FileConfig::default()).unwrap();
        assert_eq!(c.registry, RegistryConfig::default());
        assert_eq!(c.registry.max_concurrent_downloads, 3);
        let file = parse_file(
            Path::new("daemon.json"),
            r#"{"insecure-registries":["reg.lan:5000"],"max-concurrent-downloads":5}"#,
        )
        .unwrap();
        let c = Config::merge(&flags(&[]), &file).unwrap();
        assert_eq!(c.registry.insecure_registries, vec!["reg.lan:5000"]);
        assert_eq!(c.registry.max_concurrent_downloads, 5);
        let c = Config::merge(
            &flags(&[
                "--insecure-registry",
                "a:1",
                "--insecure-registry",
                "b:2",
                "--max-concurrent-downloads",
                "1",
            ]),
            &FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.registry.insecure_registries, vec!["a:1", "b:2"]);
        assert_eq!(c.registry.max_concurrent_downloads, 1);
        let err = Config::merge(&flags(&["--max-concurrent-downloads", "2"]), &file).unwrap_err();
        assert!(
            err.to_string().contains("max-concurrent-downloads"),
            "{err}"
        );
    }

    #[test]
    fn mirrors_retries_and_stall_detection_settings() {
        let file = parse_file(
            Path::new("daemon.json"),
            r#"{"registry-mirrors":["https://mirror.lan:5000"],
                "registry-mirrors-per-registry":{"reg.lan:5000":["http://m1.lan","https://m2.lan/"]},
                "max-download-attempts":2,"download-stall-speed":10,"download-stall-time":0.5}"#,
        )
        .unwrap();
        let c = Config::merge(&flags(&["--config-file", "/etc/x/daemon.json"]), &file).unwrap();
        let r = &c.registry;
        assert_eq!(r.mirrors, vec!["https://mirror.lan:5000/"]);
        assert_eq!(
            r.mirrors_per_registry["reg.lan:5000"],
            vec!["http://m1.lan/", "https://m2.lan/"]
        );
        assert_eq!(r.max_download_attempts, 2);
        assert_eq!(r.stall.min_speed, 10);
        assert_eq!(r.stall.window, std::time::Duration::from_millis(500));
        assert_eq!(r.certs_dir, Path::new("/etc/x/certs.d"));
        let options = r.remote_options();
        assert_eq!(options.mirrors["docker.io"], r.mirrors);
        assert_eq!(options.mirrors["reg.lan:5000"].len(), 2);
        // Flags for Docker Hub mirrors, and dockerd's refusals.
        let c = Config::merge(
            &flags(&[
                "--registry-mirror",
                "http://a.lan",
                "--max-download-attempts",
                "7",
            ]),
            &FileConfig::default(),
        )
        .unwrap();
        assert_eq!(c.registry.mirrors, vec!["http://a.lan/"]);
        assert_eq!(c.registry.max_download_attempts, 7);
        let err = Config::merge(&flags(&["--registry-mirror", "http://b"]), &file).unwrap_err();
        assert!(err.to_string().contains("registry-mirrors"), "{err}");
        for bad in ["mirror.lan", "ftp://m", "https://m/path"] {
            let err = Config::merge(&flags(&["--registry-mirror", bad]), &FileConfig::default())
                .unwrap_err();
            assert!(err.to_string().contains("invalid mirror"), "{err}");
        }
    }

    #[test]
    fn network_flags_and_address_pools() {
        let c = Config::merge(&flags(&[]), &FileConfig::default()).unwrap();
        assert_eq!(c.network.bridge, "berth0");
        assert!(c.network.iptables);
        assert_eq!(c.firewall_table(), "berth");
        let file = parse_file(
            Path::new("daemon.json"),
            r#"{"default-address-pools":[{"base":"10.10.0.0/16","size":24}],"iptables":false}"#,
        )
        .unwrap();
        let c = Config::merge(
            &flags(&[
                "--bridge",
                "br9",
                "--bip",
                "10.9.0.1/24",
                "--fixed-cidr",
                "10.9.0.128/25",
                "--data-root",
                "/tmp/x",
            ]),
            &file,
        )
        .unwrap();
        assert_eq!(c.network.bridge, "br9");
        assert_eq!(c.network.bip.unwrap().to_string(), "10.9.0.1/24");
        assert!(!c.network.iptables);
        assert_eq!(c.network.default_address_pools.len(), 1);
        assert_eq!(c.network.default_address_pools[0].size, 24);
        assert!(c.firewall_table().starts_with("berth_") && c.firewall_table().len() == 14);
        let bad = Config::merge(
            &flags(&["--bip", "10.9.0.1/24", "--fixed-cidr", "10.8.0.0/25"]),
            &FileConfig::default(),
        );
        assert!(bad.unwrap_err().to_string().contains("not within bip"));
        let bad = Config::merge(&flags(&["--bip", "nonsense"]), &FileConfig::default());
        assert!(bad.is_err());
        let file = parse_file(Path::new("d.json"), r#"{"bridge":"x"}"#).unwrap();
        assert!(Config::merge(&flags(&["--bridge", "y"]), &file).is_err());
    }

    #[test]
    fn conflicts_are_errors() {
        let file = parse_file(Path::new("d.json"), r#"{"data-root":"/d","debug":true}"#).unwrap();
        let err = Config::merge(&flags(&["--data-root", "/x", "-D"]), &file).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("the following directives are specified both as a flag and in the configuration file: data-root: (from flag: /x, from file: /d)"),
            "{text}"
        );
        assert!(text.contains("debug"), "{text}");
    }

    #[test]
    fn unknown_keys_and_bad_values() {
        let err = parse_file(Path::new("d.json"), r#"{"bogus":1,"hosts":[]}"#).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the following directives don't match any configuration option: bogus"
        );
        assert!(parse_file(Path::new("d.json"), "{").is_err());
        assert!(Config::merge(&flags(&["--log-level", "loud"]), &FileConfig::default()).is_err());
        assert!(Host::parse("http://x").is_err());
        assert!(Host::parse("unix://relative").is_err());
        assert_eq!(
            Host::parse("tcp://0.0.0.0").unwrap(),
            Host::Tcp("0.0.0.0:2375".into())
        );
    }

    #[test]
    fn missing_config_files() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.json");
        let mut f = flags(&[]);
        f.config_file = Some(missing);
        assert!(matches!(
            Config::load(&f),
            Err(ConfigError::ReadFile { .. })
        ));
        let present = dir.path().join("daemon.json");
        std::fs::write(&present, r#"{"hosts":["unix:///tmp/q.sock"]}"#).unwrap();
        f.config_file = Some(present);
        let c = Config::load(&f).unwrap();
        assert_eq!(c.hosts, vec![Host::Unix(PathBuf::from("/tmp/q.sock"))]);
    }

    #[test]
    fn runtimes_from_flags_and_file() {
        let c = Config::merge(&flags(&[]), &FileConfig::default()).unwrap();
        assert!(c.runtimes.is_empty());
        assert_eq!(c.default_runtime, "berth");

        let file = parse_file(
            Path::new("daemon.json"),
            r#"{"runtimes": {"crun": {"path": "/usr/bin/crun", "runtimeArgs": ["--debug"]}},
                "default-runtime": "runc"}"#,
        )
        .unwrap();
        let c = Config::merge(&flags(&["--add-runtime", "runc=/usr/sbin/runc"]), &file).unwrap();
        assert_eq!(c.default_runtime, "runc");
        assert_eq!(c.runtimes["runc"].path, PathBuf::from("/usr/sbin/runc"));
        assert_eq!(c.runtimes["crun"].runtime_args, vec!["--debug".to_string()]);

        let bad = |args: &[&str], file: &FileConfig| Config::merge(&flags(args), file).is_err();
        assert!(bad(&["--add-runtime", "runc"], &FileConfig::default()));
        assert!(bad(
            &["--add-runtime", "berth=/bin/x"],
            &FileConfig::default()
        ));
        assert!(bad(&["--add-runtime", "crun=/x"], &file));
        assert!(bad(&["--default-runtime", "nope"], &FileConfig::default()));
    }
}
