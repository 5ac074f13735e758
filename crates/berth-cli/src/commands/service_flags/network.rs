//! `-p/--publish`, `--network` and `--endpoint-mode` (`EndpointSpec`, `TaskTemplate.Networks`),
//! and their `service update` counterparts `--publish-add/-rm`, `--network-add/-rm`.

use anyhow::{Result, anyhow, bail};
use berth_client::Query;
use clap::Args;
use http::Method;
use serde_json::{Map, Value, json};

use super::flag_error;
use crate::commands::Env;
use crate::commands::swarm::call;

#[derive(Debug, Args)]
pub struct NetworkFlags {
    /// Publish a port as a node port
    #[arg(short, long, value_name = "port")]
    pub publish: Vec<String>,
    /// Network attachments
    #[arg(long, value_name = "network")]
    pub network: Vec<String>,
    /// Endpoint mode (vip or dnsrr)
    #[arg(long, value_name = "string")]
    pub endpoint_mode: Option<String>,
}

/// One `--publish` value: docker's `PortOpt`, short (`8080:80/udp`, ranges) or long
/// (`published=8080,target=80,protocol=udp,mode=host`) syntax.
pub fn parse_ports(text: &str, flag: &str) -> Result<Vec<Value>> {
    let err = |reason: String| flag_error(text, flag, reason);
    if text.contains('=') {
        let mut port = Map::new();
        for field in text.split(',') {
            let Some((key, value)) = field.split_once('=').filter(|(k, _)| !k.is_empty()) else {
                return Err(err(format!("invalid field {field}")));
            };
            let number = |v: &str| {
                v.parse::<u16>().map_err(|_| {
                    err(format!(
                        "strconv.ParseUint: parsing \"{v}\": invalid syntax"
                    ))
                })
            };
            match key.to_ascii_lowercase().as_str() {
                "protocol" => {
                    if !["tcp", "udp", "sctp"].contains(&value) {
                        return Err(err(format!("invalid protocol value '{value}'")));
                    }
                    port.insert("Protocol".into(), json!(value));
                }
                "mode" => {
                    if !["ingress", "host"].contains(&value) {
                        return Err(err(format!(
                            "invalid publish mode value ({value}): must be either 'ingress' or 'host'"
                        )));
                    }
                    port.insert("PublishMode".into(), json!(value));
                }
                "target" => {
                    port.insert("TargetPort".into(), json!(number(value)?));
                }
                "published" => {
                    port.insert("PublishedPort".into(), json!(number(value)?));
                }
                _ => return Err(err(format!("invalid field key {key}"))),
            }
        }
        if port.get("TargetPort").and_then(Value::as_u64).unwrap_or(0) == 0 {
            return Err(err("missing mandatory field 'target'".into()));
        }
        port.entry("Protocol").or_insert(json!("tcp"));
        port.entry("PublishMode").or_insert(json!("ingress"));
        return Ok(vec![Value::Object(port)]);
    }
    let mut map = Default::default();
    crate::commands::run_opts::parse_port_spec(text, &mut map).map_err(err)?;
    let mut out = Vec::new();
    for (key, bindings) in map {
        let (target, proto) = key.split_once('/').unwrap_or((&key, "tcp"));
        for b in bindings {
            if !b.host_ip.is_empty() {
                return Err(err("hostip is not supported".into()));
            }
            let mut port = json!({"Protocol": proto, "TargetPort": target.parse::<u16>()?,
                "PublishMode": "ingress"});
            if !b.host_port.is_empty() {
                let published: u16 = b
                    .host_port
                    .parse()
                    .map_err(|_| err(format!("invalid hostPort: {}", b.host_port)))?;
                port["PublishedPort"] = json!(published);
            }
            out.push(port);
        }
    }
    Ok(out)
}

fn all_ports(items: &[String], flag: &str) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    for i in items {
        out.extend(parse_ports(i, flag)?);
    }
    Ok(out)
}

/// One `--network` value: a name, or `name=N,alias=A,driver-opt=K=V`, its target resolved to
/// the network's ID as the docker CLI does.
async fn attachment(env: &Env, text: &str) -> Result<Value> {
    let mut att = json!({"Target": text});
    if text.contains('=') {
        let mut aliases = Vec::new();
        let mut opts = Map::new();
        for field in text.split(',') {
            let Some((key, value)) = field.split_once('=') else {
                bail!("invalid field '{field}' must be a key=value pair");
            };
            match key.to_ascii_lowercase().as_str() {
                "name" => att["Target"] = json!(value),
                "alias" => aliases.push(value.to_string()),
                "driver-opt" => {
                    let (k, v) = value.split_once('=').ok_or_else(|| {
                        anyhow!("invalid key value pair format in driver options")
                    })?;
                    opts.insert(k.trim().to_ascii_lowercase(), json!(v.trim()));
                }
                _ => bail!("invalid field key {key}"),
            }
        }
        if !aliases.is_empty() {
            att["Aliases"] = json!(aliases);
        }
        if !opts.is_empty() {
            att["DriverOpts"] = Value::Object(opts);
        }
    }
    let name = att["Target"].as_str().unwrap_or_default().to_string();
    att["Target"] = json!(network_id(env, &name).await?);
    Ok(att)
}

async fn network_id(env: &Env, name: &str) -> Result<String> {
    let n = call(
        env,
        Method::GET,
        &format!("/networks/{name}"),
        &Query::new(),
        None,
    )
    .await?;
    Ok(n["Id"].as_str().unwrap_or(name).to_string())
}

fn endpoint_mode(mode: &str) -> Result<Value> {
    let mode = mode.to_ascii_lowercase();
    if mode != "vip" && mode != "dnsrr" {
        bail!("invalid endpoint mode: {mode}");
    }
    Ok(json!(mode))
}

impl NetworkFlags {
    pub async fn apply(&self, env: &Env, spec: &mut Value) -> Result<()> {
        // The docker CLI always sends an endpoint spec, "vip" unless told otherwise.
        let mut endpoint =
            json!({"Mode": endpoint_mode(self.endpoint_mode.as_deref().unwrap_or("vip"))?});
        let ports = all_ports(&self.publish, "-p, --publish")?;
        if !ports.is_empty() {
            endpoint["Ports"] = json!(ports);
        }
        spec["EndpointSpec"] = endpoint;
        if !self.network.is_empty() {
            let mut nets = Vec::new();
            for n in &self.network {
                nets.push(attachment(env, n).await?);
            }
            spec["TaskTemplate"]["Networks"] = json!(nets);
        }
        Ok(())
    }
}

#[derive(Debug, Args)]
pub struct UpdateNetworkFlags {
    /// Add or update a published port
    #[arg(long, value_name = "port")]
    pub publish_add: Vec<String>,
    /// Remove a published port by its target port
    #[arg(long, value_name = "port")]
    pub publish_rm: Vec<String>,
    /// Add a network
    #[arg(long, value_name = "network")]
    pub network_add: Vec<String>,
    /// Remove a network
    #[arg(long, value_name = "list")]
    pub network_rm: Vec<String>,
    /// Endpoint mode (vip or dnsrr)
    #[arg(long, value_name = "string")]
    pub endpoint_mode: Option<String>,
}

impl UpdateNetworkFlags {
    /// The network IDs of `--network-add`/`--network-rm`, resolved before the spec is changed.
    pub async fn resolve(&self, env: &Env) -> Result<(Vec<Value>, Vec<String>)> {
        let mut add = Vec::new();
        for n in &self.network_add {
            add.push(attachment(env, n).await?);
        }
        let mut rm = Vec::new();
        for n in &self.network_rm {
            rm.push(network_id(env, n).await?);
        }
        Ok((add, rm))
    }

    pub fn apply(&self, spec: &mut Value, networks: (Vec<Value>, Vec<String>)) -> Result<()> {
        if let Some(m) = &self.endpoint_mode {
            spec["EndpointSpec"]["Mode"] = endpoint_mode(m)?;
        }
        if !self.publish_add.is_empty() || !self.publish_rm.is_empty() {
            let remove = all_ports(&self.publish_rm, "--publish-rm")?;
            let add = all_ports(&self.publish_add, "--publish-add")?;
            let mut ports: Vec<Value> = spec["EndpointSpec"]["Ports"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            // docker removes by target port, protocol and publish mode (`80` means an ingress
            // port; `target=80,mode=host` a host one); the published port is not compared.
            let mode = |p: &Value| p["PublishMode"].as_str().unwrap_or("ingress").to_string();
            ports.retain(|p| {
                !remove.iter().any(|r| {
                    r["TargetPort"] == p["TargetPort"]
                        && r["Protocol"] == p["Protocol"]
                        && mode(r) == mode(p)
                })
            });
            for a in add {
                if !ports.contains(&a) {
                    ports.push(a);
                }
            }
            if spec["EndpointSpec"].is_null() {
                spec["EndpointSpec"] = json!({"Mode": "vip"});
            }
            spec["EndpointSpec"]["Ports"] = json!(ports);
        }
        let (add, rm) = networks;
        if !add.is_empty() || !rm.is_empty() {
            // docker moves the deprecated service-level `Networks` into the task template.
            let mut nets: Vec<Value> = spec["TaskTemplate"]["Networks"]
                .as_array()
                .or_else(|| spec["Networks"].as_array())
                .cloned()
                .unwrap_or_default();
            if let Some(obj) = spec.as_object_mut() {
                obj.remove("Networks");
            }
            nets.retain(|n| !rm.iter().any(|id| n["Target"] == id.as_str()));
            for a in add {
                if nets.iter().any(|n| n["Target"] == a["Target"]) {
                    bail!(
                        "service is already attached to network {}",
                        a["Target"].as_str().unwrap_or_default()
                    );
                }
                nets.push(a);
            }
            spec["TaskTemplate"]["Networks"] = json!(nets);
        }
        Ok(())
    }
}
