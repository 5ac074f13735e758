//! A compose project (berth-compose's loader, with the stack's name as the project name) as
//! the swarm objects the docker CLI's `stack deploy` makes of it: networks (overlay unless
//! the file says otherwise), secrets, configs and service specs, named `STACK_NAME` and
//! labelled `com.docker.stack.namespace=STACK`, so stacks deployed by either CLI are the same
//! objects. Pure: the specs are built here and sent by `deploy`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use berth_compose::{Project, Service};
use serde_json::{Map, Value, json};

/// The label that makes an object part of a stack.
pub const NAMESPACE: &str = "com.docker.stack.namespace";
/// On a service: the image as the file names it (before a digest is resolved).
pub const IMAGE: &str = "com.docker.stack.image";

/// What a deploy creates or updates.
#[derive(Debug, Default)]
pub struct Stack {
    /// Network name -> `POST /networks/create` body (without the name).
    pub networks: BTreeMap<String, Value>,
    /// External networks the services use: they must exist with swarm scope.
    pub external_networks: Vec<String>,
    pub secrets: Vec<FileObject>,
    pub configs: Vec<FileObject>,
    /// Service key in the file -> spec (references to secrets and configs by name; their
    /// ids are filled in by `deploy`).
    pub services: BTreeMap<String, Value>,
}

/// A secret or config to create: its swarm name, labels and data.
#[derive(Debug, Clone)]
pub struct FileObject {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub data: Vec<u8>,
}

pub fn scope(namespace: &str, name: &str) -> String {
    format!("{namespace}_{name}")
}

fn stack_labels(namespace: &str, labels: &BTreeMap<String, String>) -> Value {
    let mut l = labels.clone();
    l.insert(NAMESPACE.into(), namespace.into());
    json!(l)
}

/// A Go duration from the file (`10s`) in nanoseconds.
fn nanos(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_str)
        .and_then(berth_api::duration::parse_go_duration)
}

fn bytes(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => berth_api::units::ram_in_bytes(s).ok(),
        _ => None,
    }
}

/// `cpus` (`"0.5"`, `1`) as nano CPUs, exactly for decimal input as the docker CLI's
/// `ParseCPUs` computes it.
fn nano_cpus(v: Option<&Value>) -> Result<Option<i64>> {
    let text = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim().to_string(),
        Some(other) => other.to_string(),
    };
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    let invalid = || anyhow::anyhow!("failed to parse {text} as a rational number");
    if frac.len() > 9 || !frac.chars().all(|c| c.is_ascii_digit()) {
        bail!(invalid());
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| invalid())?
    };
    let frac_nanos: i64 = format!("{frac:0<9}").parse().map_err(|_| invalid())?;
    Ok(Some(whole * 1_000_000_000 + frac_nanos))
}

fn insert_some(map: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        map.insert(key.into(), v);
    }
}

fn secret_data(kind: &str, name: &str, obj: &berth_compose::model::FileObject) -> Result<Vec<u8>> {
    if let Some(file) = &obj.file {
        return std::fs::read(file).with_context(|| format!("{kind} {name}: cannot read {file}"));
    }
    if let Some(var) = &obj.environment {
        return std::env::var(var)
            .map(String::into_bytes)
            .with_context(|| format!("{kind} {name}: environment variable {var} is not set"));
    }
    if let Some(content) = &obj.content {
        return Ok(content.clone().into_bytes());
    }
    bail!("{kind} {name}: neither file, environment nor content is set")
}

/// Converts the loaded project into the stack's objects.
pub fn convert(namespace: &str, project: &Project) -> Result<Stack> {
    let mut stack = Stack::default();
    let used: BTreeSet<&String> = project
        .services
        .values()
        .flat_map(|s| s.config.networks.keys())
        .collect();
    for key in used {
        let Some(net) = project.networks.get(key) else {
            bail!("undefined network {key:?}");
        };
        if net.external {
            stack.external_networks.push(net.name.clone());
            continue;
        }
        let mut body = Map::new();
        body.insert(
            "Driver".into(),
            json!(net.driver.clone().unwrap_or_else(|| "overlay".into())),
        );
        if !net.driver_opts.is_empty() {
            body.insert("Options".into(), json!(net.driver_opts));
        }
        body.insert("Internal".into(), json!(net.internal));
        body.insert("Attachable".into(), json!(net.attachable));
        body.insert("Labels".into(), stack_labels(namespace, &net.labels));
        if let Some(ipam) = &net.ipam
            && (ipam.driver.is_some() || !ipam.config.is_empty())
        {
            let config: Vec<Value> = ipam
                .config
                .iter()
                .filter_map(|p| p.subnet.as_ref().map(|s| json!({"Subnet": s})))
                .collect();
            body.insert(
                "IPAM".into(),
                json!({"Driver": ipam.driver.clone().unwrap_or_default(), "Config": config}),
            );
        }
        stack.networks.insert(net.name.clone(), Value::Object(body));
    }
    for (kind, objects, out) in [
        ("secret", &project.secrets, &mut stack.secrets),
        ("config", &project.configs, &mut stack.configs),
    ] {
        for (key, obj) in objects {
            if obj.external {
                continue;
            }
            out.push(FileObject {
                name: obj.name.clone().unwrap_or_else(|| scope(namespace, key)),
                labels: [(NAMESPACE.to_string(), namespace.to_string())].into(),
                data: secret_data(kind, key, obj)?,
            });
        }
    }
    for service in project.services.values() {
        let spec = service_spec(namespace, project, service)
            .with_context(|| format!("service {}", service.name))?;
        stack.services.insert(service.name.clone(), spec);
    }
    Ok(stack)
}

/// The name a service's secret or config reference points at.
fn object_name(
    namespace: &str,
    objects: &BTreeMap<String, berth_compose::model::FileObject>,
    key: &str,
    kind: &str,
) -> Result<String> {
    let obj = objects
        .get(key)
        .with_context(|| format!("undefined {kind} {key:?}"))?;
    Ok(obj.name.clone().unwrap_or_else(|| scope(namespace, key)))
}

fn file_ref(r: &berth_compose::model::FileRef, default_target: String) -> Value {
    let mode = match &r.mode {
        Some(Value::Number(n)) => n.as_u64().unwrap_or(0o444),
        Some(Value::String(s)) => {
            u64::from_str_radix(s.trim_start_matches("0o"), 8).unwrap_or(0o444)
        }
        _ => 0o444,
    };
    json!({
        "Name": r.target.clone().unwrap_or(default_target),
        "UID": r.uid.clone().unwrap_or_else(|| "0".into()),
        "GID": r.gid.clone().unwrap_or_else(|| "0".into()),
        "Mode": mode,
    })
}

fn update_config(v: Option<&Value>) -> Option<Value> {
    let u = v?.as_object()?;
    let mut out = Map::new();
    out.insert(
        "Parallelism".into(),
        json!(u.get("parallelism").and_then(Value::as_u64).unwrap_or(1)),
    );
    insert_some(&mut out, "Delay", nanos(u.get("delay")).map(Value::from));
    insert_some(&mut out, "FailureAction", u.get("failure_action").cloned());
    insert_some(
        &mut out,
        "Monitor",
        nanos(u.get("monitor")).map(Value::from),
    );
    insert_some(
        &mut out,
        "MaxFailureRatio",
        u.get("max_failure_ratio").cloned(),
    );
    insert_some(&mut out, "Order", u.get("order").cloned());
    Some(Value::Object(out))
}

fn restart_policy(service: &Service, deploy: &Value) -> Result<Option<Value>> {
    if let Some(p) = deploy.get("restart_policy").and_then(Value::as_object) {
        let mut out = Map::new();
        insert_some(&mut out, "Condition", p.get("condition").cloned());
        insert_some(&mut out, "Delay", nanos(p.get("delay")).map(Value::from));
        insert_some(&mut out, "MaxAttempts", p.get("max_attempts").cloned());
        insert_some(&mut out, "Window", nanos(p.get("window")).map(Value::from));
        return Ok(Some(Value::Object(out)));
    }
    let Some(restart) = service.config.restart.as_deref() else {
        return Ok(None);
    };
    let (name, count) = restart.split_once(':').unwrap_or((restart, ""));
    let attempts: Option<u64> = count.parse().ok().filter(|n| *n > 0);
    let condition = match name {
        "no" | "" => return Ok(None),
        "always" | "unless-stopped" => "any",
        "on-failure" => "on-failure",
        other => bail!(
            "invalid restart policy: unknown policy '{other}' (must be one of 'no', 'always', 'on-failure', or 'unless-stopped')"
        ),
    };
    let mut out = json!({"Condition": condition});
    if let Some(n) = attempts {
        out["MaxAttempts"] = json!(n);
    }
    Ok(Some(out))
}

fn resources(deploy: &Value) -> Result<Value> {
    let mut out = Map::new();
    let r = deploy.get("resources");
    if let Some(l) = r.and_then(|r| r.get("limits")) {
        let mut limits = Map::new();
        insert_some(
            &mut limits,
            "NanoCPUs",
            nano_cpus(l.get("cpus"))?.map(Value::from),
        );
        insert_some(
            &mut limits,
            "MemoryBytes",
            bytes(l.get("memory")).map(Value::from),
        );
        insert_some(&mut limits, "Pids", l.get("pids").cloned());
        out.insert("Limits".into(), Value::Object(limits));
    }
    if let Some(l) = r.and_then(|r| r.get("reservations")) {
        let mut res = Map::new();
        insert_some(
            &mut res,
            "NanoCPUs",
            nano_cpus(l.get("cpus"))?.map(Value::from),
        );
        insert_some(
            &mut res,
            "MemoryBytes",
            bytes(l.get("memory")).map(Value::from),
        );
        out.insert("Reservations".into(), Value::Object(res));
    }
    Ok(Value::Object(out))
}

fn mounts(namespace: &str, project: &Project, service: &Service) -> Vec<Value> {
    service
        .config
        .volumes
        .iter()
        .map(|v| {
            let mut m = json!({"Type": v.kind, "Target": v.target});
            if v.read_only {
                m["ReadOnly"] = json!(true);
            }
            match v.kind.as_str() {
                "volume" => {
                    let key = v.source.clone().unwrap_or_default();
                    let mut options = json!({});
                    if let Some(top) = project.volumes.get(&key) {
                        m["Source"] = json!(top.name);
                        if !top.external {
                            options["Labels"] = stack_labels(namespace, &top.labels);
                            if let Some(driver) = &top.driver {
                                options["DriverConfig"] =
                                    json!({"Name": driver, "Options": top.driver_opts});
                            }
                        }
                    } else if !key.is_empty() {
                        m["Source"] = json!(key);
                    }
                    if v.volume.as_ref().is_some_and(|o| o.nocopy) {
                        options["NoCopy"] = json!(true);
                    }
                    m["VolumeOptions"] = options;
                }
                "bind" => {
                    m["Source"] = json!(v.source.clone().unwrap_or_default());
                }
                "tmpfs" => {
                    if let Some(t) = &v.tmpfs {
                        let mut o = Map::new();
                        insert_some(&mut o, "SizeBytes", bytes(t.size.as_ref()).map(Value::from));
                        insert_some(&mut o, "Mode", t.mode.map(Value::from));
                        m["TmpfsOptions"] = Value::Object(o);
                    }
                }
                _ => {}
            }
            m
        })
        .collect()
}

fn healthcheck(service: &Service) -> Option<Value> {
    let h = service.config.healthcheck.as_ref()?;
    if h.disable {
        return Some(json!({"Test": ["NONE"]}));
    }
    let mut out = Map::new();
    insert_some(&mut out, "Test", h.test.as_ref().map(|t| json!(t)));
    let d = |s: &Option<String>| {
        s.as_deref()
            .and_then(berth_api::duration::parse_go_duration)
            .map(Value::from)
    };
    insert_some(&mut out, "Interval", d(&h.interval));
    insert_some(&mut out, "Timeout", d(&h.timeout));
    insert_some(&mut out, "StartPeriod", d(&h.start_period));
    insert_some(&mut out, "StartInterval", d(&h.start_interval));
    insert_some(&mut out, "Retries", h.retries.map(Value::from));
    Some(Value::Object(out))
}

fn service_spec(namespace: &str, project: &Project, service: &Service) -> Result<Value> {
    let c = &service.config;
    let deploy = service.raw.get("deploy").cloned().unwrap_or(json!({}));
    let image = c
        .image
        .clone()
        .with_context(|| "no image: a stack's services need one (build: is not used)")?;

    let mut env: Vec<String> = c
        .environment
        .iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k}={v}"),
            None => k.clone(),
        })
        .collect();
    env.sort();

    let mut cs = Map::new();
    cs.insert("Image".into(), json!(image));
    insert_some(&mut cs, "Command", c.entrypoint.as_ref().map(|e| json!(e)));
    insert_some(&mut cs, "Args", c.command.as_ref().map(|a| json!(a)));
    insert_some(&mut cs, "Hostname", c.hostname.clone().map(Value::from));
    if !c.extra_hosts.is_empty() {
        // Swarm wants `IP host` lines.
        let hosts: Vec<String> = c
            .extra_hosts
            .iter()
            .filter_map(|h| {
                h.split_once('=')
                    .or_else(|| h.split_once(':'))
                    .map(|(host, ip)| format!("{ip} {host}"))
            })
            .collect();
        cs.insert("Hosts".into(), json!(hosts));
    }
    if !c.dns.is_empty() || !c.dns_search.is_empty() {
        cs.insert(
            "DNSConfig".into(),
            json!({"Nameservers": c.dns, "Search": c.dns_search}),
        );
    }
    insert_some(&mut cs, "Healthcheck", healthcheck(service));
    if !env.is_empty() {
        cs.insert("Env".into(), json!(env));
    }
    cs.insert("Labels".into(), stack_labels(namespace, &c.labels));
    insert_some(&mut cs, "Dir", c.working_dir.clone().map(Value::from));
    insert_some(&mut cs, "User", c.user.clone().map(Value::from));
    let m = mounts(namespace, project, service);
    if !m.is_empty() {
        cs.insert("Mounts".into(), json!(m));
    }
    insert_some(
        &mut cs,
        "StopGracePeriod",
        c.stop_grace_period
            .as_deref()
            .and_then(berth_api::duration::parse_go_duration)
            .map(Value::from),
    );
    insert_some(
        &mut cs,
        "StopSignal",
        c.stop_signal.clone().map(Value::from),
    );
    if c.tty {
        cs.insert("TTY".into(), json!(true));
    }
    if c.stdin_open {
        cs.insert("OpenStdin".into(), json!(true));
    }
    if c.read_only {
        cs.insert("ReadOnly".into(), json!(true));
    }
    insert_some(&mut cs, "Init", c.init.map(Value::from));
    if !c.sysctls.is_empty() {
        cs.insert("Sysctls".into(), json!(c.sysctls));
    }
    if !c.cap_add.is_empty() {
        cs.insert("CapabilityAdd".into(), json!(c.cap_add));
    }
    if !c.cap_drop.is_empty() {
        cs.insert("CapabilityDrop".into(), json!(c.cap_drop));
    }
    // Berth's ContainerSpec extension (see berth_swarm::task_privileges); the docker CLI
    // ignores both keys of a compose file for stacks.
    if c.privileged {
        cs.insert("Privileged".into(), json!(true));
    }
    let devices: Vec<_> = c
        .devices
        .iter()
        .filter_map(berth_compose::reconcile::convert::device)
        .collect();
    if !devices.is_empty() {
        cs.insert("Devices".into(), json!(devices));
    }
    let secrets: Vec<Value> = c
        .secrets
        .iter()
        .map(|r| {
            let name = object_name(namespace, &project.secrets, &r.source, "secret")?;
            Ok(json!({"File": file_ref(r, r.source.clone()), "SecretName": name}))
        })
        .collect::<Result<_>>()?;
    if !secrets.is_empty() {
        cs.insert("Secrets".into(), json!(secrets));
    }
    let configs: Vec<Value> = c
        .configs
        .iter()
        .map(|r| {
            let name = object_name(namespace, &project.configs, &r.source, "config")?;
            Ok(json!({"File": file_ref(r, r.source.clone()), "ConfigName": name}))
        })
        .collect::<Result<_>>()?;
    if !configs.is_empty() {
        cs.insert("Configs".into(), json!(configs));
    }

    let mut networks: Vec<Value> = c
        .networks
        .iter()
        .map(|(key, n)| {
            let target = project
                .networks
                .get(key)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| scope(namespace, key));
            let mut aliases = n.as_ref().map(|n| n.aliases.clone()).unwrap_or_default();
            if !matches!(target.as_str(), "bridge" | "host" | "none" | "default") {
                aliases.push(service.name.clone());
            }
            json!({"Target": target, "Aliases": aliases})
        })
        .collect();
    networks.sort_by(|a, b| a["Target"].as_str().cmp(&b["Target"].as_str()));

    let mut ports: Vec<Value> = Vec::new();
    for p in &c.ports {
        let mut port = json!({
            "Protocol": p.protocol.clone().unwrap_or_else(|| "tcp".into()),
            "TargetPort": p.target,
            "PublishMode": p.mode.clone().unwrap_or_else(|| "ingress".into()),
        });
        if let Some(published) = &p.published {
            let n: u32 = published
                .parse()
                .with_context(|| format!("invalid published port {published:?}"))?;
            port["PublishedPort"] = json!(n);
        }
        ports.push(port);
    }
    ports.sort_by_key(|p| {
        (
            p["PublishedPort"].as_u64().unwrap_or(0),
            p["TargetPort"].as_u64().unwrap_or(0),
            p["Protocol"].as_str().unwrap_or_default().to_string(),
        )
    });

    let replicas = deploy
        .get("replicas")
        .and_then(Value::as_u64)
        .or(c.scale.map(u64::from));
    let mode = match deploy
        .get("mode")
        .and_then(Value::as_str)
        .unwrap_or("replicated")
    {
        "replicated" => json!({"Replicated": {"Replicas": replicas.unwrap_or(1)}}),
        "global" => {
            if replicas.is_some() {
                bail!("replicas can only be used with replicated or replicated-job mode");
            }
            json!({"Global": {}})
        }
        "replicated-job" => json!({"ReplicatedJob": {
            "MaxConcurrent": replicas.unwrap_or(1), "TotalCompletions": replicas.unwrap_or(1)}}),
        "global-job" => json!({"GlobalJob": {}}),
        other => bail!("unknown mode: {other}"),
    };

    let mut labels: BTreeMap<String, String> = deploy
        .get("labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    labels.insert(NAMESPACE.into(), namespace.into());
    labels.insert(IMAGE.into(), image.clone());

    let placement = deploy.get("placement").cloned().unwrap_or(json!({}));
    let mut place = Map::new();
    insert_some(
        &mut place,
        "Constraints",
        placement.get("constraints").cloned(),
    );
    if let Some(prefs) = placement.get("preferences").and_then(Value::as_array) {
        let p: Vec<Value> = prefs
            .iter()
            .filter_map(|p| p.get("spread"))
            .map(|s| json!({"Spread": {"SpreadDescriptor": s}}))
            .collect();
        place.insert("Preferences".into(), json!(p));
    }
    insert_some(
        &mut place,
        "MaxReplicas",
        placement.get("max_replicas_per_node").cloned(),
    );

    let mut task = Map::new();
    task.insert("ContainerSpec".into(), Value::Object(cs));
    if let Some(l) = &c.logging {
        task.insert(
            "LogDriver".into(),
            json!({"Name": l.driver, "Options": l.options}),
        );
    }
    task.insert("Resources".into(), resources(&deploy)?);
    insert_some(
        &mut task,
        "RestartPolicy",
        restart_policy(service, &deploy)?,
    );
    task.insert("Placement".into(), Value::Object(place));
    task.insert("Networks".into(), json!(networks));

    let mut endpoint = json!({"Ports": ports});
    if let Some(m) = deploy.get("endpoint_mode").and_then(Value::as_str) {
        endpoint["Mode"] = json!(m.to_lowercase());
    }
    let mut spec = json!({
        "Name": scope(namespace, &service.name),
        "Labels": labels,
        "TaskTemplate": task,
        "EndpointSpec": endpoint,
        "Mode": mode,
    });
    insert_some(
        spec.as_object_mut().expect("an object"),
        "UpdateConfig",
        update_config(deploy.get("update_config")),
    );
    insert_some(
        spec.as_object_mut().expect("an object"),
        "RollbackConfig",
        update_config(deploy.get("rollback_config")),
    );
    Ok(spec)
}

#[cfg(test)]
mod tests;
