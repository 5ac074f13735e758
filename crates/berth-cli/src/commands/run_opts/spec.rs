//! `run`/`create` flags → the `POST /containers/create` body: [`ContainerOptions::to_spec`].
//! Flags are checked in docker's order, so the first bad one is the one reported.

use std::collections::BTreeMap;

use anyhow::Result;
use berth_api::models::container::{
    ContainerCreateRequest, EndpointIpamConfig, EndpointSettings, HostConfig, LogConfig,
    NetworkingConfig, Resources,
};
use berth_api::models::{ContainerConfig, HealthConfig};
use berth_api::vocab::NetworkMode;

use super::parse::{
    PortMap, bytes_flag, duration_flag, expand_env, key_values, normalize_caps, parse_device,
    parse_expose, parse_mount, parse_port_spec, parse_restart, parse_ulimit, read_kv_file,
    security_opts,
};
use super::{ContainerOptions, CreateSpec, attach_streams, flag_error, usage};

/// `ExposedPorts` and `Volumes`: keys with empty objects as values.
type EmptyObjects = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

impl ContainerOptions {
    /// Builds the create request. `detach` is `run -d` (create never attaches streams).
    pub fn to_spec(&self, detach: bool) -> Result<CreateSpec> {
        let resources = self.container_resources()?;
        let shm_size = bytes_flag(&self.shm_size, "--shm-size")?;
        let mut mounts = Vec::new();
        for m in &self.mount {
            mounts.push(parse_mount(m).map_err(|e| flag_error(m, "--mount", e))?);
        }
        let (attach_stdin, attach_stdout, attach_stderr) = attach_streams(self, detach)?;
        let (bindings, exposed) = self.ports()?;
        let (binds, volumes) = self.volumes()?;
        let (env, labels) = self.env_and_labels()?;
        let healthcheck = self.healthcheck()?;
        let restart_policy = parse_restart(&self.restart).map_err(usage)?;
        if self.rm && !matches!(restart_policy.name.as_str(), "" | "no") {
            return Err(usage("Conflicting options: --restart and --rm"));
        }
        let (network, networking_config) = self.networking()?;
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
            cmd: (self.args.len() > 1).then(|| self.args[1..].to_vec()),
            healthcheck,
            image: self.image().to_string(),
            volumes: Some(volumes),
            working_dir: self.workdir.clone(),
            entrypoint: self.entrypoint.as_ref().map(|e| vec![e.clone()]),
            labels: Some(key_values(&labels)),
            stop_signal: self.stop_signal.clone(),
            stop_timeout: self.stop_timeout,
            ..Default::default()
        };
        let host_config = HostConfig {
            resources,
            binds: (!binds.is_empty()).then_some(binds),
            network_mode: NetworkMode::parse(&network),
            port_bindings: Some(bindings.into_iter().map(|(k, v)| (k, Some(v))).collect()),
            restart_policy,
            mounts: (!mounts.is_empty()).then_some(mounts),
            shm_size,
            ..self.host_options()?
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

    /// The shared resource flags, and the cgroup settings only `run` and `create` have.
    fn container_resources(&self) -> Result<Resources> {
        let shared = self.resources.to_resources()?;
        let mut ulimits = Vec::new();
        for u in &self.ulimit {
            ulimits.push(parse_ulimit(u).map_err(|e| flag_error(u, "--ulimit", e))?);
        }
        let mut devices = Vec::new();
        for d in &self.device {
            devices.push(parse_device(d).map_err(|e| flag_error(d, "--device", e))?);
        }
        Ok(Resources {
            cgroup_parent: self.cgroup_parent.clone(),
            blkio_weight_device: Some(vec![]),
            blkio_device_read_bps: Some(vec![]),
            blkio_device_write_bps: Some(vec![]),
            blkio_device_read_iops: Some(vec![]),
            blkio_device_write_iops: Some(vec![]),
            devices: Some(devices),
            device_cgroup_rules: (!self.device_cgroup_rule.is_empty())
                .then(|| self.device_cgroup_rule.clone()),
            device_requests: None,
            memory_swappiness: Some(self.memory_swappiness),
            oom_kill_disable: Some(self.oom_kill_disable),
            init: self.init.then_some(true),
            ulimits: Some(ulimits),
            ..shared
        })
    }

    /// `-p` and `--expose`: the bindings, and every port exposed (published ones too).
    fn ports(&self) -> Result<(PortMap, EmptyObjects)> {
        let mut bindings = PortMap::new();
        for spec in &self.publish {
            parse_port_spec(spec, &mut bindings).map_err(usage)?;
        }
        let mut exposed: EmptyObjects = bindings
            .keys()
            .map(|k| (k.clone(), BTreeMap::new()))
            .collect();
        for spec in &self.expose {
            for key in parse_expose(spec).map_err(usage)? {
                exposed.entry(key).or_default();
            }
        }
        Ok((bindings, exposed))
    }

    /// `-v`: binds, and anonymous volumes (`-v /path`, anything without a source).
    fn volumes(&self) -> Result<(Vec<String>, EmptyObjects)> {
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
        Ok((binds, volumes))
    }

    /// The environment and labels: files first, then the flags.
    fn env_and_labels(&self) -> Result<(Vec<String>, Vec<String>)> {
        let mut env = Vec::new();
        for file in &self.env_file {
            env.extend(read_kv_file(file, true)?);
        }
        env.extend(self.env.iter().map(|e| expand_env(e)));
        let mut labels = Vec::new();
        for file in &self.label_file {
            labels.extend(read_kv_file(file, false)?);
        }
        labels.extend(self.label.iter().cloned());
        Ok((env, labels))
    }

    /// `--health-*` and `--no-healthcheck`.
    fn healthcheck(&self) -> Result<Option<HealthConfig>> {
        let health_set = self.health_cmd.is_some()
            || self.health_interval.is_some()
            || self.health_timeout.is_some()
            || self.health_start_period.is_some()
            || self.health_start_interval.is_some()
            || self.health_retries.is_some();
        if self.no_healthcheck {
            if health_set {
                return Err(usage("--no-healthcheck conflicts with --health-* options"));
            }
            return Ok(Some(HealthConfig {
                test: Some(vec!["NONE".to_string()]),
                ..Default::default()
            }));
        }
        if !health_set {
            return Ok(None);
        }
        let check = HealthConfig {
            test: self
                .health_cmd
                .as_ref()
                .map(|cmd| vec!["CMD-SHELL".to_string(), cmd.clone()]),
            interval: duration_flag(&self.health_interval, "--health-interval")?,
            timeout: duration_flag(&self.health_timeout, "--health-timeout")?,
            start_period: duration_flag(&self.health_start_period, "--health-start-period")?,
            start_interval: duration_flag(&self.health_start_interval, "--health-start-interval")?,
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
        Ok(Some(check))
    }

    /// The network mode (the first `--network`) and the endpoints to join.
    fn networking(&self) -> Result<(String, NetworkingConfig)> {
        // More user networks than the first are joined at start too.
        let network = self
            .network
            .first()
            .cloned()
            .unwrap_or_else(|| "default".to_string());
        // An empty `--network ""` names no built-in mode (docker/cli's `IsUserDefined`).
        let builtin = |n: &str| !n.is_empty() && !NetworkMode::parse(n).is_user_defined();
        if self.network.len() > 1 && self.network.iter().any(|n| builtin(n)) {
            return Err(usage(
                "conflicting options: cannot attach both user-defined and non-user-defined network-modes",
            ));
        }
        let user_defined = !builtin(&network);
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
        Ok((network, NetworkingConfig { endpoints_config }))
    }

    /// The host settings taken from the flags as they are (or nearly).
    fn host_options(&self) -> Result<HostConfig> {
        let some = |list: &[String]| (!list.is_empty()).then(|| list.to_vec());
        let map = |list: &[String]| (!list.is_empty()).then(|| key_values(list));
        Ok(HostConfig {
            container_id_file: self.cidfile.clone(),
            log_config: LogConfig {
                kind: self.log_driver.clone(),
                config: key_values(&self.log_opt),
            },
            auto_remove: self.rm,
            volume_driver: self.volume_driver.clone(),
            volumes_from: some(&self.volumes_from),
            console_size: Some([0, 0]),
            annotations: map(&self.annotation),
            cap_add: normalize_caps(&self.cap_add),
            cap_drop: normalize_caps(&self.cap_drop),
            cgroupns_mode: self.cgroupns.clone(),
            dns: Some(self.dns.clone()),
            dns_options: Some(self.dns_option.clone()),
            dns_search: Some(self.dns_search.clone()),
            extra_hosts: some(&self.add_host),
            group_add: some(&self.group_add),
            ipc_mode: self.ipc.clone(),
            links: some(&self.link),
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
            storage_opt: map(&self.storage_opt),
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
            sysctls: map(&self.sysctl),
            runtime: self.runtime.clone(),
            isolation: self.isolation.clone(),
            ..Default::default()
        })
    }
}
