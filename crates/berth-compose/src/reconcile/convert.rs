//! A service replica into a `POST /containers/create` body, as Compose v2 builds it: labels,
//! the primary network with the service name as alias, mounts, ports, resources, health.

use std::collections::BTreeMap;

use berth_api::models::container::{
    BindOptions, DeviceMapping, LogConfig, TmpfsOptions, Ulimit, VolumeOptions,
};
use berth_api::models::{
    ContainerConfig, ContainerCreateRequest, EndpointIpamConfig, EndpointSettings, HealthConfig,
    HostConfig, Mount, NetworkingConfig, PortBinding, RestartPolicy,
};
use berth_api::vocab::NetworkMode;
use serde_json::Value;

use crate::labels;
use crate::model::{Project, Service, ServiceNetwork};

/// How a container is made: a replica or a one-off (`run`).
#[derive(Debug, Clone, Default)]
pub struct ReplicaSpec {
    pub number: u32,
    pub oneoff: bool,
    /// The image's id, for the `com.docker.compose.image` label.
    pub image_id: Option<String>,
}

fn text(v: &Value) -> Option<String> {
    crate::loader::canonical::scalar_text(v)
}

fn bytes(v: &Option<Value>) -> i64 {
    v.as_ref()
        .and_then(|v| match v {
            Value::Number(n) => n.as_i64(),
            // Unlimited swap: go-units refuses negative sizes, Compose takes `-1` as is.
            Value::String(s) if s.trim() == "-1" => Some(-1),
            Value::String(s) => berth_api::units::ram_in_bytes(s).ok(),
            _ => None,
        })
        .unwrap_or(0)
}

fn nanos(d: &Option<String>) -> i64 {
    d.as_deref()
        .and_then(berth_api::duration::parse_go_duration)
        .unwrap_or(0)
}

/// `cpus` (a Go `float32` in Compose) times 1e9, computed in `f32` as Compose does.
fn nano_cpus(v: &Option<Value>) -> i64 {
    float32(v).map_or(0, |c| (c * 1e9) as i64)
}

fn float32(v: &Option<Value>) -> Option<f32> {
    v.as_ref()
        .and_then(text)
        .and_then(|t| t.trim().parse::<f32>().ok())
}

/// The networks in the order Compose attaches them: highest priority first, then by name.
pub fn ordered_networks(service: &Service) -> Vec<(&String, Option<&ServiceNetwork>)> {
    let mut nets: Vec<(&String, Option<&ServiceNetwork>)> = service
        .config
        .networks
        .iter()
        .map(|(k, v)| (k, v.as_ref()))
        .collect();
    nets.sort_by_key(|(k, v)| (-v.and_then(|v| v.priority).unwrap_or(0), (*k).clone()));
    nets
}

/// The endpoint of one network: the service name (and its aliases) as DNS aliases.
pub fn endpoint(service: &Service, net: Option<&ServiceNetwork>) -> EndpointSettings {
    let mut aliases = vec![service.name.clone()];
    if let Some(n) = net {
        aliases.extend(n.aliases.iter().cloned());
    }
    EndpointSettings {
        aliases: Some(aliases),
        ipam_config: net
            .filter(|n| n.ipv4_address.is_some() || n.ipv6_address.is_some())
            .map(|n| EndpointIpamConfig {
                ipv4_address: n.ipv4_address.clone().unwrap_or_default(),
                ipv6_address: n.ipv6_address.clone().unwrap_or_default(),
                link_local_ips: None,
            }),
        gw_priority: net.and_then(|n| n.gw_priority).unwrap_or(0),
        mac_address: net.and_then(|n| n.mac_address.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

/// The create body for one replica.
pub fn create_request(
    project: &Project,
    service: &Service,
    spec: &ReplicaSpec,
) -> ContainerCreateRequest {
    let c = &service.config;
    let mut labels_map: BTreeMap<String, String> = c.labels.clone();
    let files: Vec<String> = project
        .config_files
        .iter()
        .map(|f| f.to_string_lossy().into_owned())
        .collect();
    for (k, v) in [
        (labels::PROJECT, project.name.clone()),
        (labels::SERVICE, service.name.clone()),
        (labels::NUMBER, spec.number.to_string()),
        (
            labels::ONEOFF,
            if spec.oneoff { "True" } else { "False" }.to_string(),
        ),
        (labels::CONFIG_HASH, labels::config_hash(service)),
        (
            labels::WORKING_DIR,
            project.working_dir.to_string_lossy().into_owned(),
        ),
        (labels::CONFIG_FILES, files.join(",")),
        (labels::DEPENDS_ON, labels::depends_on_label(service)),
        (labels::VERSION, labels::COMPOSE_VERSION.to_string()),
    ] {
        labels_map.insert(k.to_string(), v);
    }
    if let Some(f) = project.env_files.first() {
        labels_map.insert(
            labels::ENVIRONMENT_FILE.into(),
            f.to_string_lossy().into_owned(),
        );
    }
    if let Some(id) = &spec.image_id {
        labels_map.insert(labels::IMAGE.into(), id.clone());
    }
    let env: Vec<String> = c
        .environment
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={v}")))
        .collect();
    let mut exposed: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    let mut bindings: BTreeMap<String, Option<Vec<PortBinding>>> = BTreeMap::new();
    for e in &c.expose {
        let key = if e.contains('/') {
            e.clone()
        } else {
            format!("{e}/tcp")
        };
        exposed.insert(key, BTreeMap::new());
    }
    for p in &c.ports {
        let key = format!("{}/{}", p.target, p.protocol.as_deref().unwrap_or("tcp"));
        exposed.insert(key.clone(), BTreeMap::new());
        let entry = bindings.entry(key).or_insert_with(|| Some(Vec::new()));
        if let Some(list) = entry {
            list.push(PortBinding {
                host_ip: p.host_ip.clone().unwrap_or_default(),
                host_port: p.published.clone().unwrap_or_default(),
            });
        }
    }
    let healthcheck = c.healthcheck.as_ref().map(|h| {
        if h.disable {
            HealthConfig {
                test: Some(vec!["NONE".into()]),
                ..Default::default()
            }
        } else {
            HealthConfig {
                test: h.test.clone(),
                interval: nanos(&h.interval),
                timeout: nanos(&h.timeout),
                start_period: nanos(&h.start_period),
                start_interval: nanos(&h.start_interval),
                retries: h.retries.unwrap_or(0),
            }
        }
    });
    let mut mounts = Vec::new();
    for v in &c.volumes {
        let source = match (v.kind.as_str(), &v.source) {
            ("volume", Some(s)) => project
                .volumes
                .get(s)
                .map(|vol| vol.name.clone())
                .unwrap_or_else(|| s.clone()),
            (_, Some(s)) => s.clone(),
            _ => String::new(),
        };
        let mut m = Mount {
            target: v.target.clone(),
            source,
            kind: v.kind.clone(),
            read_only: v.read_only,
            ..Default::default()
        };
        match v.kind.as_str() {
            "bind" => {
                let b = v.bind.clone().unwrap_or_default();
                // Compose creates a missing host directory (short syntax, `create_host_path`).
                if b.create_host_path.unwrap_or(false) {
                    let _ = std::fs::create_dir_all(&m.source);
                }
                if b.propagation.is_some() {
                    m.bind_options = Some(BindOptions {
                        propagation: b.propagation.unwrap_or_default(),
                        ..Default::default()
                    });
                }
            }
            "volume" => {
                if let Some(o) = &v.volume
                    && (o.nocopy || o.subpath.is_some())
                {
                    m.volume_options = Some(VolumeOptions {
                        no_copy: o.nocopy,
                        subpath: o.subpath.clone().unwrap_or_default(),
                        ..Default::default()
                    });
                }
            }
            "tmpfs" => {
                if let Some(t) = &v.tmpfs {
                    m.tmpfs_options = Some(TmpfsOptions {
                        size_bytes: bytes(&t.size),
                        mode: t.mode.unwrap_or(0),
                        options: None,
                    });
                }
            }
            _ => {}
        }
        mounts.push(m);
    }
    // Secrets and configs are bind-mounted read-only from their files (or files written for
    // environment and content sources by the caller, see `apply::materialise_files`).
    for (kind, refs, objects) in [
        ("secrets", &c.secrets, &project.secrets),
        ("configs", &c.configs, &project.configs),
    ] {
        for r in refs {
            let Some(obj) = objects.get(&r.source) else {
                continue;
            };
            let source = match &obj.file {
                Some(f) => f.clone(),
                None => crate::reconcile::materialised_path(project, kind, &r.source)
                    .to_string_lossy()
                    .into_owned(),
            };
            let target = match (&r.target, kind) {
                (Some(t), _) if t.starts_with('/') => t.clone(),
                (Some(t), "secrets") => format!("/run/secrets/{t}"),
                (Some(t), _) => format!("/{t}"),
                (None, "secrets") => format!("/run/secrets/{}", r.source),
                (None, _) => format!("/{}", r.source),
            };
            mounts.push(Mount {
                target,
                source,
                kind: "bind".into(),
                read_only: true,
                ..Default::default()
            });
        }
    }
    let tmpfs: BTreeMap<String, String> = c
        .tmpfs
        .iter()
        .map(|t| match t.split_once(':') {
            Some((p, o)) => (p.to_string(), o.to_string()),
            None => (t.clone(), String::new()),
        })
        .collect();
    let nets = ordered_networks(service);
    let network_mode = match &c.network_mode {
        Some(mode) => match mode.strip_prefix("service:") {
            Some(other) => format!("container:{}-{other}-1", project.name),
            None => mode.clone(),
        },
        None => nets
            .first()
            .map(|(k, _)| {
                project
                    .networks
                    .get(*k)
                    .map(|n| n.name.clone())
                    .unwrap_or_else(|| (*k).clone())
            })
            .unwrap_or_default(),
    };
    let networking_config = if c.network_mode.is_none() {
        nets.first().map(|(k, n)| {
            let name = project
                .networks
                .get(*k)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| (*k).clone());
            NetworkingConfig {
                endpoints_config: [(name, endpoint(service, *n))].into_iter().collect(),
            }
        })
    } else {
        None
    };
    let restart = restart_policy(service);
    let limits = c
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.limits.clone())
        .unwrap_or_default();
    let reservations = c
        .deploy
        .as_ref()
        .and_then(|d| d.resources.as_ref())
        .and_then(|r| r.reservations.clone())
        .unwrap_or_default();
    let mut host = HostConfig {
        binds: None,
        log_config: c
            .logging
            .as_ref()
            .map(|l| LogConfig {
                kind: l.driver.clone().unwrap_or_default(),
                config: l
                    .options
                    .iter()
                    .filter_map(|(k, v)| text(v).map(|v| (k.clone(), v)))
                    .collect(),
            })
            .unwrap_or_default(),
        network_mode: NetworkMode::parse(&network_mode),
        port_bindings: (!bindings.is_empty()).then_some(bindings),
        restart_policy: restart,
        mounts: (!mounts.is_empty()).then_some(mounts),
        annotations: (!c.annotations.is_empty()).then(|| c.annotations.clone()),
        cap_add: (!c.cap_add.is_empty()).then(|| c.cap_add.clone()),
        cap_drop: (!c.cap_drop.is_empty()).then(|| c.cap_drop.clone()),
        dns: (!c.dns.is_empty()).then(|| c.dns.clone()),
        dns_options: (!c.dns_opt.is_empty()).then(|| c.dns_opt.clone()),
        dns_search: (!c.dns_search.is_empty()).then(|| c.dns_search.clone()),
        extra_hosts: (!c.extra_hosts.is_empty()).then(|| c.extra_hosts.clone()),
        group_add: (!c.group_add.is_empty()).then(|| c.group_add.iter().filter_map(text).collect()),
        ipc_mode: c.ipc.clone().unwrap_or_default(),
        uts_mode: c.uts.clone().unwrap_or_default(),
        cgroup: c.cgroup.clone().unwrap_or_default(),
        storage_opt: (!c.storage_opt.is_empty()).then(|| c.storage_opt.clone()),
        pid_mode: c.pid.clone().unwrap_or_default(),
        links: (!c.links.is_empty() || !c.external_links.is_empty()).then(|| {
            c.links
                .iter()
                .map(|l| {
                    let (svc, alias) = l.split_once(':').unwrap_or((l, l));
                    format!("{}-{svc}-1:{alias}", project.name)
                })
                .chain(c.external_links.iter().map(|l| {
                    if l.contains(':') {
                        l.clone()
                    } else {
                        format!("{l}:{l}")
                    }
                }))
                .collect()
        }),
        oom_score_adj: c.oom_score_adj.unwrap_or(0),
        privileged: c.privileged,
        readonly_rootfs: c.read_only,
        security_opt: (!c.security_opt.is_empty()).then(|| c.security_opt.clone()),
        tmpfs: (!tmpfs.is_empty()).then_some(tmpfs),
        userns_mode: c.userns_mode.clone().unwrap_or_default(),
        shm_size: bytes(&c.shm_size),
        sysctls: (!c.sysctls.is_empty()).then(|| c.sysctls.clone()),
        runtime: c.runtime.clone().unwrap_or_default(),
        volumes_from: (!c.volumes_from.is_empty()).then(|| {
            c.volumes_from
                .iter()
                .map(|v| match v.strip_prefix("container:") {
                    Some(ctr) => ctr.to_string(),
                    None => {
                        let (svc, mode) = v.split_once(':').unwrap_or((v, ""));
                        let name = format!("{}-{svc}-1", project.name);
                        if mode.is_empty() {
                            name
                        } else {
                            format!("{name}:{mode}")
                        }
                    }
                })
                .collect()
        }),
        ..Default::default()
    };
    let r = &mut host.resources;
    // As Compose: `deploy.resources` override the service-level fields when set.
    r.memory = match bytes(&limits.memory) {
        0 => bytes(&c.mem_limit),
        m => m,
    };
    r.memory_reservation = match bytes(&reservations.memory) {
        0 => bytes(&c.mem_reservation),
        m => m,
    };
    r.memory_swap = bytes(&c.memswap_limit);
    r.nano_cpus = match nano_cpus(&limits.cpus) {
        0 => nano_cpus(&c.cpus),
        n => n,
    };
    r.cpu_shares = c.cpu_shares.unwrap_or(0);
    r.cpu_count = c.cpu_count.unwrap_or(0);
    r.cpu_percent = float32(&c.cpu_percent).map_or(0, |p| (p * 100.0) as i64);
    r.cpu_period = c.cpu_period.unwrap_or(0);
    r.cpu_quota = c.cpu_quota.unwrap_or(0);
    r.cpu_realtime_period = c.cpu_rt_period.unwrap_or(0);
    r.cpu_realtime_runtime = c.cpu_rt_runtime.unwrap_or(0);
    r.memory_swappiness = match bytes(&c.mem_swappiness) {
        0 => None,
        n => Some(n),
    };
    r.oom_kill_disable = Some(c.oom_kill_disable);
    r.device_cgroup_rules =
        (!c.device_cgroup_rules.is_empty()).then(|| c.device_cgroup_rules.clone());
    if let Some(b) = &c.blkio_config {
        blkio(b, r);
    }
    r.cpuset_cpus = c.cpuset.clone().unwrap_or_default();
    r.pids_limit = limits
        .pids
        .filter(|p| *p > 0)
        .or(c.pids_limit.filter(|p| *p != 0));
    r.init = c.init;
    r.cgroup_parent = c.cgroup_parent.clone().unwrap_or_default();
    if !c.ulimits.is_empty() {
        r.ulimits = Some(
            c.ulimits
                .iter()
                .map(|(name, u)| Ulimit {
                    name: name.clone(),
                    soft: u.soft,
                    hard: u.hard,
                })
                .collect(),
        );
    }
    if !c.devices.is_empty() {
        r.devices = Some(c.devices.iter().filter_map(device).collect());
    }
    let config = ContainerConfig {
        hostname: c.hostname.clone().unwrap_or_default(),
        domainname: c.domainname.clone().unwrap_or_default(),
        user: c.user.clone().unwrap_or_default(),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        tty: c.tty,
        open_stdin: c.stdin_open,
        attach_stdout: true,
        attach_stderr: true,
        env: Some(env),
        cmd: c.command.clone(),
        healthcheck,
        image: service.image_name(&project.name),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        entrypoint: c.entrypoint.clone(),
        labels: Some(labels_map),
        stop_signal: c.stop_signal.clone(),
        stop_timeout: c
            .stop_grace_period
            .as_ref()
            .map(|d| nanos(&Some(d.clone())) / 1_000_000_000),
        mac_address: c.mac_address.clone(),
        ..Default::default()
    };
    ContainerCreateRequest {
        config,
        host_config: Some(host),
        networking_config,
    }
}

fn blkio(b: &crate::model::BlkioConfig, r: &mut berth_api::models::container::Resources) {
    use berth_api::models::container::{ThrottleDevice, WeightDevice};
    r.blkio_weight = b.weight.unwrap_or(0);
    let some = |v: Vec<ThrottleDevice>| (!v.is_empty()).then_some(v);
    let rates = |list: &[crate::model::BlkioRate]| {
        some(
            list.iter()
                .map(|d| ThrottleDevice {
                    path: d.path.clone(),
                    rate: bytes(&d.rate).max(0) as u64,
                })
                .collect(),
        )
    };
    r.blkio_weight_device = (!b.weight_device.is_empty()).then(|| {
        b.weight_device
            .iter()
            .map(|d| WeightDevice {
                path: d.path.clone(),
                weight: d.weight,
            })
            .collect()
    });
    r.blkio_device_read_bps = rates(&b.device_read_bps);
    r.blkio_device_read_iops = rates(&b.device_read_iops);
    r.blkio_device_write_bps = rates(&b.device_write_bps);
    r.blkio_device_write_iops = rates(&b.device_write_iops);
}

/// A compose `devices:` entry (short `SRC[:DST[:PERMS]]` or long form); also used by stacks.
pub fn device(v: &Value) -> Option<DeviceMapping> {
    match v {
        Value::String(s) => {
            let parts: Vec<&str> = s.split(':').collect();
            Some(DeviceMapping {
                path_on_host: parts[0].to_string(),
                path_in_container: parts.get(1).unwrap_or(&parts[0]).to_string(),
                cgroup_permissions: parts.get(2).unwrap_or(&"rwm").to_string(),
            })
        }
        Value::Object(o) => {
            let source = o.get("source").and_then(Value::as_str)?.to_string();
            Some(DeviceMapping {
                path_in_container: o
                    .get("target")
                    .and_then(Value::as_str)
                    .unwrap_or(&source)
                    .to_string(),
                cgroup_permissions: o
                    .get("permissions")
                    .and_then(Value::as_str)
                    .unwrap_or("rwm")
                    .to_string(),
                path_on_host: source,
            })
        }
        _ => None,
    }
}

fn restart_policy(service: &Service) -> RestartPolicy {
    let c = &service.config;
    if let Some(r) = &c.restart {
        let (name, count) = r.split_once(':').unwrap_or((r, "0"));
        return RestartPolicy {
            name: name.to_string(),
            maximum_retry_count: count.parse().unwrap_or(0),
        };
    }
    match c.deploy.as_ref().and_then(|d| d.restart_policy.as_ref()) {
        Some(p) => RestartPolicy {
            name: match p.condition.as_deref() {
                Some("none") => "no",
                Some("on-failure") => "on-failure",
                _ => "always",
            }
            .to_string(),
            maximum_retry_count: p.max_attempts.unwrap_or(0),
        },
        None => RestartPolicy::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(text: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("compose.yaml"), text).unwrap();
        crate::loader::load(&crate::LoadOptions {
            working_dir: dir.path().to_path_buf(),
            project_name: Some("p".into()),
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn service_fields_become_the_create_body() {
        let p = project(
            r#"
services:
  web:
    image: nginx
    command: nginx -g "daemon off;"
    environment: {A: "1", UNSET_HERE: null}
    ports: ["127.0.0.1:8080:80", "9000/udp"]
    expose: ["81"]
    volumes: ["data:/data:ro", {type: tmpfs, target: /cache, tmpfs: {size: 1m}}]
    tmpfs: ["/run:size=64k"]
    networks:
      front: {aliases: [www], priority: 10}
      back: {}
    healthcheck: {test: "curl -f localhost", interval: 2s, retries: 3}
    restart: on-failure:4
    mem_limit: 256m
    cpus: 0.5
    cap_add: [NET_ADMIN]
    ulimits: {nofile: 1024}
    labels: {team: web}
    stop_grace_period: 20s
    user: "1000"
    init: true
    secrets: [token]
secrets:
  token: {file: ./token}
networks: {front: {}, back: {}}
volumes: {data: {}}
"#,
        );
        let web = &p.services["web"];
        let r = create_request(
            &p,
            web,
            &ReplicaSpec {
                number: 2,
                ..Default::default()
            },
        );
        let c = &r.config;
        assert_eq!(c.image, "nginx");
        assert_eq!(
            c.cmd,
            Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()])
        );
        assert_eq!(c.env, Some(vec!["A=1".into()]));
        assert_eq!(c.user, "1000");
        assert_eq!(c.stop_timeout, Some(20));
        let labels = c.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "web");
        assert_eq!(labels[labels::NUMBER], "2");
        assert_eq!(labels[labels::SERVICE], "web");
        let hc = c.healthcheck.as_ref().unwrap();
        assert_eq!(
            hc.test,
            Some(vec!["CMD-SHELL".into(), "curl -f localhost".into()])
        );
        assert_eq!(hc.interval, 2_000_000_000);
        assert_eq!(hc.retries, 3);
        let exposed = c.exposed_ports.as_ref().unwrap();
        assert!(
            exposed.contains_key("80/tcp")
                && exposed.contains_key("81/tcp")
                && exposed.contains_key("9000/udp")
        );
        let h = r.host_config.as_ref().unwrap();
        let b = h.port_bindings.as_ref().unwrap();
        assert_eq!(b["80/tcp"].as_ref().unwrap()[0].host_ip, "127.0.0.1");
        assert_eq!(b["80/tcp"].as_ref().unwrap()[0].host_port, "8080");
        assert_eq!(b["9000/udp"].as_ref().unwrap()[0].host_port, "");
        assert_eq!(h.restart_policy.name, "on-failure");
        assert_eq!(h.restart_policy.maximum_retry_count, 4);
        assert_eq!(h.resources.memory, 256 * 1024 * 1024);
        assert_eq!(h.resources.nano_cpus, 500_000_000);
        assert_eq!(h.resources.init, Some(true));
        assert_eq!(h.resources.ulimits.as_ref().unwrap()[0].soft, 1024);
        assert_eq!(h.cap_add, Some(vec!["NET_ADMIN".into()]));
        assert_eq!(h.tmpfs.as_ref().unwrap()["/run"], "size=64k");
        let mounts = h.mounts.as_ref().unwrap();
        assert_eq!(mounts[0].source, "p_data");
        assert!(mounts[0].read_only);
        assert_eq!(mounts[1].kind, "tmpfs");
        assert_eq!(
            mounts[1].tmpfs_options.as_ref().unwrap().size_bytes,
            1024 * 1024
        );
        assert_eq!(mounts[2].target, "/run/secrets/token");
        assert!(mounts[2].read_only);
        // The highest-priority network is the one the container is created on.
        assert_eq!(h.network_mode.to_string(), "p_front");
        let ep = &r.networking_config.as_ref().unwrap().endpoints_config["p_front"];
        assert_eq!(ep.aliases, Some(vec!["web".into(), "www".into()]));
    }
}
