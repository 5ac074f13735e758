//! The typed project: what the loader hands the reconciler. Each service keeps its normalised
//! tree too (`raw`), which `config` prints and the config hash is computed from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

/// A loaded, validated project.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    /// The project directory (absolute).
    pub working_dir: PathBuf,
    /// The compose files, absolute, in the order given.
    pub config_files: Vec<PathBuf>,
    /// The `.env`/`--env-file` files read, absolute.
    pub env_files: Vec<PathBuf>,
    /// Services enabled by the active profiles.
    pub services: BTreeMap<String, Service>,
    /// Services their profiles leave out (still cleaned up by `down`).
    pub disabled: BTreeMap<String, Service>,
    pub networks: BTreeMap<String, NetworkConfig>,
    pub volumes: BTreeMap<String, VolumeConfig>,
    pub secrets: BTreeMap<String, FileObject>,
    pub configs: BTreeMap<String, FileObject>,
    /// The whole normalised model (enabled services only), as `config` prints it.
    pub model: Value,
    /// The variables interpolation saw (shell over `.env`): a build `ARG` listed without a
    /// value takes its value from here, as Compose does.
    pub environment: BTreeMap<String, String>,
}

/// One service: its name, typed fields, and the normalised tree they came from.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub config: ServiceConfig,
    pub raw: Value,
    /// The service as Docker Compose hashes it ([`crate::hash::view`]).
    pub hash_view: Value,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceConfig {
    pub image: Option<String>,
    pub build: Option<BuildConfig>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub environment: BTreeMap<String, Option<String>>,
    pub ports: Vec<PortConfig>,
    pub expose: Vec<String>,
    pub volumes: Vec<VolumeMount>,
    pub tmpfs: Vec<String>,
    pub networks: BTreeMap<String, Option<ServiceNetwork>>,
    pub network_mode: Option<String>,
    pub depends_on: BTreeMap<String, Dependency>,
    pub healthcheck: Option<Healthcheck>,
    pub restart: Option<String>,
    pub deploy: Option<Deploy>,
    pub scale: Option<u32>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub container_name: Option<String>,
    pub hostname: Option<String>,
    pub domainname: Option<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_opt: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub privileged: bool,
    pub read_only: bool,
    pub security_opt: Vec<String>,
    pub ulimits: BTreeMap<String, Ulimit>,
    pub sysctls: BTreeMap<String, String>,
    pub logging: Option<Logging>,
    pub init: Option<bool>,
    pub stop_signal: Option<String>,
    pub stop_grace_period: Option<String>,
    pub profiles: Vec<String>,
    pub secrets: Vec<FileRef>,
    pub configs: Vec<FileRef>,
    pub links: Vec<String>,
    pub external_links: Vec<String>,
    pub volumes_from: Vec<String>,
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub devices: Vec<Value>,
    pub tty: bool,
    pub stdin_open: bool,
    pub mem_limit: Option<Value>,
    pub memswap_limit: Option<Value>,
    pub mem_reservation: Option<Value>,
    pub shm_size: Option<Value>,
    pub cpus: Option<Value>,
    pub cpu_shares: Option<i64>,
    pub cpu_count: Option<i64>,
    pub cpu_percent: Option<Value>,
    pub cpu_period: Option<i64>,
    pub cpu_quota: Option<i64>,
    pub cpu_rt_period: Option<i64>,
    pub cpu_rt_runtime: Option<i64>,
    pub mem_swappiness: Option<Value>,
    pub oom_kill_disable: bool,
    pub blkio_config: Option<BlkioConfig>,
    pub device_cgroup_rules: Vec<String>,
    pub uts: Option<String>,
    pub cgroup: Option<String>,
    pub storage_opt: BTreeMap<String, String>,
    pub cpuset: Option<String>,
    pub pids_limit: Option<i64>,
    pub oom_score_adj: Option<i64>,
    pub group_add: Vec<Value>,
    pub cgroup_parent: Option<String>,
    pub userns_mode: Option<String>,
    pub runtime: Option<String>,
    pub mac_address: Option<String>,
    pub pull_policy: Option<String>,
    pub platform: Option<String>,
    pub attach: Option<bool>,
}

/// `blkio_config`: weights and throttles (rates may be sizes such as `1mb`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BlkioConfig {
    pub weight: Option<u16>,
    pub weight_device: Vec<BlkioWeight>,
    pub device_read_bps: Vec<BlkioRate>,
    pub device_read_iops: Vec<BlkioRate>,
    pub device_write_bps: Vec<BlkioRate>,
    pub device_write_iops: Vec<BlkioRate>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BlkioWeight {
    pub path: String,
    pub weight: u16,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BlkioRate {
    pub path: String,
    pub rate: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BuildConfig {
    pub context: String,
    pub dockerfile: Option<String>,
    pub dockerfile_inline: Option<String>,
    pub args: BTreeMap<String, Option<String>>,
    pub target: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cache_from: Vec<String>,
    pub network: Option<String>,
    pub shm_size: Option<Value>,
    pub tags: Vec<String>,
    /// `["host:ip"]`, `["host=ip"]` or `{host: ip}`.
    pub extra_hosts: Option<Value>,
    /// A boolean, or a string once interpolated (`"${NO_CACHE:-false}"`).
    pub no_cache: Option<Value>,
    pub pull: Option<Value>,
    pub platforms: Vec<String>,
    /// `[name]` or `[{source, target}]`: top-level secrets given to `RUN --mount=type=secret`.
    pub secrets: Vec<Value>,
    /// `[default, "id=path"]` or `{id: path}`: agents or keys for `RUN --mount=type=ssh`.
    pub ssh: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct PortConfig {
    pub target: u32,
    pub published: Option<String>,
    pub host_ip: Option<String>,
    pub protocol: Option<String>,
    pub mode: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VolumeMount {
    #[serde(rename = "type")]
    pub kind: String,
    pub source: Option<String>,
    pub target: String,
    pub read_only: bool,
    pub bind: Option<BindOptions>,
    pub volume: Option<VolumeOptions>,
    pub tmpfs: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct BindOptions {
    pub create_host_path: Option<bool>,
    pub propagation: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VolumeOptions {
    pub nocopy: bool,
    pub subpath: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TmpfsOptions {
    pub size: Option<Value>,
    pub mode: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServiceNetwork {
    pub aliases: Vec<String>,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub priority: Option<i64>,
    pub gw_priority: Option<i64>,
    pub mac_address: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Dependency {
    pub condition: String,
    pub required: bool,
    pub restart: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Healthcheck {
    pub test: Option<Vec<String>>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub retries: Option<i64>,
    pub start_period: Option<String>,
    pub start_interval: Option<String>,
    pub disable: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Deploy {
    pub replicas: Option<u32>,
    pub resources: Option<Resources>,
    pub restart_policy: Option<RestartPolicy>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Resources {
    pub limits: Option<ResourceSpec>,
    pub reservations: Option<ResourceSpec>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ResourceSpec {
    pub cpus: Option<Value>,
    pub memory: Option<Value>,
    pub pids: Option<i64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RestartPolicy {
    pub condition: Option<String>,
    pub max_attempts: Option<i64>,
}

/// `nofile: 1024` (one number for both) or `{soft, hard}`.
#[derive(Debug, Clone, Default)]
pub struct Ulimit {
    pub soft: i64,
    pub hard: i64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Single(i64),
            Pair { soft: i64, hard: i64 },
        }
        Ok(match Form::deserialize(d)? {
            Form::Single(n) => Ulimit { soft: n, hard: n },
            Form::Pair { soft, hard } => Ulimit { soft, hard },
        })
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Logging {
    pub driver: Option<String>,
    pub options: BTreeMap<String, Value>,
}

/// A service's use of a secret or config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FileRef {
    pub source: String,
    pub target: Option<String>,
    pub uid: Option<String>,
    pub gid: Option<String>,
    pub mode: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct NetworkConfig {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub ipam: Option<Ipam>,
    pub external: bool,
    pub internal: bool,
    pub attachable: bool,
    pub enable_ipv6: Option<bool>,
    pub enable_ipv4: Option<bool>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Ipam {
    pub driver: Option<String>,
    pub config: Vec<IpamPool>,
    pub options: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct IpamPool {
    pub subnet: Option<String>,
    pub ip_range: Option<String>,
    pub gateway: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct VolumeConfig {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub external: bool,
    pub labels: BTreeMap<String, String>,
}

/// A top-level secret or config: from a file, an environment variable or inline content.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct FileObject {
    pub name: Option<String>,
    pub file: Option<String>,
    pub environment: Option<String>,
    pub content: Option<String>,
    pub external: bool,
}

impl Service {
    /// Replicas: `scale`, else `deploy.replicas`, else 1.
    pub fn replicas(&self) -> u32 {
        self.config
            .scale
            .or(self.config.deploy.as_ref().and_then(|d| d.replicas))
            .unwrap_or(1)
    }

    /// The image the service runs: its own, or the one its build produces.
    pub fn image_name(&self, project: &str) -> String {
        self.config
            .image
            .clone()
            .unwrap_or_else(|| format!("{project}-{}", self.name))
    }

    /// Services this one must wait for, with their conditions.
    pub fn dependencies(&self) -> impl Iterator<Item = (&String, &Dependency)> {
        self.config.depends_on.iter()
    }
}

impl Project {
    /// Services in dependency order (dependencies first; ties by name).
    pub fn ordered_services(&self) -> Vec<&Service> {
        let mut done: Vec<&str> = Vec::new();
        let mut out = Vec::new();
        while out.len() < self.services.len() {
            let before = out.len();
            for (name, service) in &self.services {
                if done.contains(&name.as_str()) {
                    continue;
                }
                let ready = service
                    .config
                    .depends_on
                    .keys()
                    .all(|d| done.contains(&d.as_str()) || !self.services.contains_key(d));
                if ready {
                    done.push(name);
                    out.push(service);
                }
            }
            if out.len() == before {
                // A cycle (the loader refuses them): keep the rest in name order.
                for (name, service) in &self.services {
                    if !done.contains(&name.as_str()) {
                        done.push(name);
                        out.push(service);
                    }
                }
            }
        }
        out
    }
}
