//! `berth network create|ls|inspect|rm|connect|disconnect|prune` and `berth port`, with
//! docker's flags, output and messages.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use berth_api::models::container::{EndpointIpamConfig, EndpointSettings};
use berth_api::models::network::{Ipam, IpamConfig, NetworkCreateRequest, NetworkResource};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Env, confirm, deleted_list, each_name, fail_if, inspect_each, parse_filters};
use crate::format::Format;
use crate::output::{self, StatusError};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network
    Create(CreateArgs),
    /// List networks
    #[command(visible_alias = "list")]
    Ls(ListArgs),
    /// Display detailed information on one or more networks
    Inspect(InspectArgs),
    /// Remove one or more networks
    #[command(visible_alias = "remove")]
    Rm(RemoveArgs),
    /// Connect a container to a network
    Connect(ConnectArgs),
    /// Disconnect a container from a network
    Disconnect(DisconnectArgs),
    /// Remove all unused networks
    Prune(PruneArgs),
}

pub async fn run(env: &Env, command: NetworkCommand) -> Result<()> {
    match command {
        NetworkCommand::Create(a) => create(env, a).await,
        NetworkCommand::Ls(a) => list(env, a).await,
        NetworkCommand::Inspect(a) => inspect(env, a).await,
        NetworkCommand::Rm(a) => remove(env, a).await,
        NetworkCommand::Connect(a) => connect(env, a).await,
        NetworkCommand::Disconnect(a) => disconnect(env, a).await,
        NetworkCommand::Prune(a) => prune(env, a).await,
    }
}

// ---------------------------------------------------------------------------------------------
// create

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Driver to manage the Network
    #[arg(short, long, value_name = "string", default_value = "bridge")]
    pub driver: String,
    /// Subnet in CIDR format that represents a network segment
    #[arg(long, value_name = "strings")]
    pub subnet: Vec<String>,
    /// Allocate container ip from a sub-range
    #[arg(long = "ip-range", value_name = "strings")]
    pub ip_range: Vec<String>,
    /// IPv4 or IPv6 Gateway for the master subnet
    #[arg(long, value_name = "strings")]
    pub gateway: Vec<String>,
    /// Auxiliary IPv4 or IPv6 addresses used by Network driver
    #[arg(long = "aux-address", value_name = "map")]
    pub aux_address: Vec<String>,
    /// Restrict external access to the network
    #[arg(long)]
    pub internal: bool,
    /// Enable manual container attachment
    #[arg(long)]
    pub attachable: bool,
    /// Create swarm routing-mesh network
    #[arg(long)]
    pub ingress: bool,
    /// Set metadata on a network
    #[arg(long, value_name = "list")]
    pub label: Vec<String>,
    /// Set driver specific options
    #[arg(short = 'o', long = "opt", value_name = "map")]
    pub opt: Vec<String>,
    /// IP Address Management Driver
    #[arg(long = "ipam-driver", value_name = "string", default_value = "default")]
    pub ipam_driver: String,
    /// Set IPAM driver specific options
    #[arg(long = "ipam-opt", value_name = "map")]
    pub ipam_opt: Vec<String>,
    /// Enable or disable IPv4 address assignment
    #[arg(long, value_name = "bool", num_args = 0..=1, default_missing_value = "true")]
    pub ipv4: Option<bool>,
    /// Enable or disable IPv6 address assignment
    #[arg(long, value_name = "bool", num_args = 0..=1, default_missing_value = "true")]
    pub ipv6: Option<bool>,
    /// Control the network's scope
    #[arg(long, value_name = "string")]
    pub scope: Option<String>,
    #[arg(value_name = "NETWORK")]
    pub name: String,
}

fn key_values(list: &[String], what: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in list {
        match item.split_once('=') {
            Some((k, v)) => out.insert(k.to_string(), v.to_string()),
            None if what == "label" => out.insert(item.clone(), String::new()),
            None => bail!("invalid key/value pair format in driver options"),
        };
    }
    Ok(out)
}

fn contains(subnet: &str, ip: &str) -> bool {
    let (Ok(net), Ok(addr)) = (
        subnet.parse::<ipnet_lite::Net>(),
        ip.split('/')
            .next()
            .unwrap_or(ip)
            .parse::<std::net::IpAddr>(),
    ) else {
        return false;
    };
    net.contains(addr)
}

/// docker's pairing of `--subnet` with the `--ip-range`, `--gateway` and `--aux-address`
/// that fall inside it.
fn ipam_configs(a: &CreateArgs) -> Result<Vec<IpamConfig>> {
    let mut configs: Vec<IpamConfig> = a
        .subnet
        .iter()
        .map(|s| IpamConfig {
            subnet: s.clone(),
            ..Default::default()
        })
        .collect();
    for r in &a.ip_range {
        let Some(c) = configs.iter_mut().find(|c| contains(&c.subnet, r)) else {
            bail!("no matching subnet for range {r}");
        };
        if !c.ip_range.is_empty() {
            bail!(
                "cannot configure multiple ranges ({r}, {}) on the same subnet ({})",
                c.ip_range,
                c.subnet
            );
        }
        c.ip_range = r.clone();
    }
    for g in &a.gateway {
        let Some(c) = configs.iter_mut().find(|c| contains(&c.subnet, g)) else {
            bail!("no matching subnet for gateway {g}");
        };
        if !c.gateway.is_empty() {
            bail!(
                "cannot configure multiple gateways ({g}, {}) for the same subnet ({})",
                c.gateway,
                c.subnet
            );
        }
        c.gateway = g.clone();
    }
    for (k, v) in key_values(&a.aux_address, "aux-address")? {
        let Some(c) = configs.iter_mut().find(|c| contains(&c.subnet, &v)) else {
            bail!("no matching subnet for aux-address {v}");
        };
        c.auxiliary_addresses
            .get_or_insert_with(BTreeMap::new)
            .insert(k, v);
    }
    Ok(configs)
}

pub async fn create(env: &Env, a: CreateArgs) -> Result<()> {
    let configs = ipam_configs(&a)?;
    let req = NetworkCreateRequest {
        name: a.name.clone(),
        driver: a.driver.clone(),
        scope: a.scope.clone().unwrap_or_default(),
        internal: a.internal,
        attachable: a.attachable,
        ingress: a.ingress,
        ipam: Some(Ipam {
            driver: a.ipam_driver.clone(),
            options: Some(key_values(&a.ipam_opt, "ipam-opt")?),
            config: Some(configs),
        }),
        enable_ipv4: a.ipv4,
        enable_ipv6: a.ipv6,
        options: Some(key_values(&a.opt, "opt")?),
        labels: Some(key_values(&a.label, "label")?),
        ..Default::default()
    };
    let client = env.client()?;
    let resp = client.network_create(&req).await?;
    output::out(&format!("{}\n", resp.id));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// ls

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Provide filter values (e.g. "driver=bridge")
    #[arg(short, long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Format output using a custom template
    #[arg(long, value_name = "string")]
    pub format: Option<String>,
    /// Do not truncate the output
    #[arg(long)]
    pub no_trunc: bool,
    /// Only display network IDs
    #[arg(short, long)]
    pub quiet: bool,
}

const NETWORK_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv4", "IPV4"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

fn network_row(n: &NetworkResource, trunc: bool) -> Value {
    let id = if trunc && n.id.len() > 12 {
        n.id[..12].to_string()
    } else {
        n.id.clone()
    };
    let labels: Vec<String> = n.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let created = chrono::DateTime::parse_from_rfc3339(&n.created)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S %z %Z").to_string())
        .unwrap_or_default();
    json!({
        "ID": id,
        "Name": n.name,
        "Driver": n.driver,
        "Scope": n.scope,
        "IPv4": n.enable_ipv4.to_string(),
        "IPv6": n.enable_ipv6.to_string(),
        "Internal": n.internal.to_string(),
        "Labels": labels.join(","),
        "CreatedAt": created,
    })
}

pub async fn list(env: &Env, a: ListArgs) -> Result<()> {
    let client = env.client()?;
    let filters = parse_filters(&a.filter)?;
    let networks = client.networks_list(&filters).await?;
    let format = Format::for_list(
        a.quiet,
        "ID",
        a.format.as_deref(),
        "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}",
    );
    let rows: Vec<Value> = networks
        .iter()
        .map(|n| network_row(n, !a.no_trunc))
        .collect();
    output::out(&format.render(&rows, NETWORK_HEADERS)?);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// inspect, rm

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Format output using a custom template
    #[arg(short, long, value_name = "string")]
    pub format: Option<String>,
    /// Verbose output for diagnostics
    #[arg(short, long)]
    pub verbose: bool,
    #[arg(required = true, value_name = "NETWORK")]
    pub names: Vec<String>,
}

pub async fn inspect(env: &Env, a: InspectArgs) -> Result<()> {
    let client = env.client()?;
    inspect_each(&a.names, a.format.as_deref(), async |name| {
        client.network_inspect_bytes(name).await
    })
    .await
}

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// Do not error if the network does not exist
    #[arg(short, long)]
    pub force: bool,
    #[arg(required = true, value_name = "NETWORK")]
    pub names: Vec<String>,
}

pub async fn remove(env: &Env, a: RemoveArgs) -> Result<()> {
    let client = env.client()?;
    let (_, errors) = each_name(&a.names, async |name| {
        match client.network_remove(name).await {
            Ok(()) => output::out(&format!("{name}\n")),
            // `-f`: a network that is not there is no error, and is not printed either.
            Err(berth_client::Error::Api(e))
                if a.force && e.kind == berth_client::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(())
    })
    .await?;
    fail_if(errors)
}

// ---------------------------------------------------------------------------------------------
// connect, disconnect

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Add network-scoped alias for the container
    #[arg(long, value_name = "strings")]
    pub alias: Vec<String>,
    /// Driver options for the network
    #[arg(long = "driver-opt", value_name = "strings")]
    pub driver_opt: Vec<String>,
    /// IPv4 address (e.g., "172.30.100.104")
    #[arg(long, value_name = "string")]
    pub ip: Option<String>,
    /// IPv6 address (e.g., "2001:db8::33")
    #[arg(long, value_name = "string")]
    pub ip6: Option<String>,
    /// Add link to another container
    #[arg(long, value_name = "list")]
    pub link: Vec<String>,
    #[arg(value_name = "NETWORK")]
    pub network: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn connect(env: &Env, a: ConnectArgs) -> Result<()> {
    if !a.link.is_empty() {
        bail!("links are not supported");
    }
    let ipam = (a.ip.is_some() || a.ip6.is_some()).then(|| EndpointIpamConfig {
        ipv4_address: a.ip.clone().unwrap_or_default(),
        ipv6_address: a.ip6.clone().unwrap_or_default(),
        link_local_ips: None,
    });
    let endpoint = EndpointSettings {
        ipam_config: ipam,
        aliases: (!a.alias.is_empty()).then(|| a.alias.clone()),
        driver_opts: (!a.driver_opt.is_empty())
            .then(|| key_values(&a.driver_opt, "driver-opt"))
            .transpose()?,
        ..Default::default()
    };
    let client = env.client()?;
    client
        .network_connect(&a.network, &a.container, Some(endpoint))
        .await?;
    Ok(())
}

#[derive(Debug, Args)]
pub struct DisconnectArgs {
    /// Force the container to disconnect from a network
    #[arg(short, long)]
    pub force: bool,
    #[arg(value_name = "NETWORK")]
    pub network: String,
    #[arg(value_name = "CONTAINER")]
    pub container: String,
}

pub async fn disconnect(env: &Env, a: DisconnectArgs) -> Result<()> {
    let client = env.client()?;
    client
        .network_disconnect(&a.network, &a.container, a.force)
        .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// prune

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Provide filter values (e.g. "until=<timestamp>")
    #[arg(long, value_name = "filter")]
    pub filter: Vec<String>,
    /// Do not prompt for confirmation
    #[arg(short, long)]
    pub force: bool,
}

pub async fn prune(env: &Env, a: PruneArgs) -> Result<()> {
    let filters = parse_filters(&a.filter)?;
    if !a.force
        && !confirm(
            "WARNING! This will remove all custom networks not used by at least one container.",
        )
    {
        return Ok(());
    }
    let client = env.client()?;
    let report = client.networks_prune(&filters).await?;
    // Unlike the other prunes, docker says nothing of reclaimed space here.
    let deleted = report.networks_deleted.unwrap_or_default();
    output::out(&deleted_list("Deleted Networks:", &deleted));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// port

#[derive(Debug, Args)]
pub struct PortArgs {
    #[arg(value_name = "CONTAINER")]
    pub container: String,
    /// PRIVATE_PORT[/PROTO]
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    pub port: Option<String>,
}

fn host_port_text(ip: &str, port: &str) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `berth port`: the container's published ports (`80/tcp -> 0.0.0.0:8080`), or the host
/// addresses of one private port.
pub async fn port(env: &Env, a: PortArgs) -> Result<()> {
    let client = env.client()?;
    let c = client.container_inspect(&a.container).await?;
    let ports = &c.network_settings.ports;
    let mut text = String::new();
    match &a.port {
        Some(spec) => {
            let (port, proto) = spec.split_once('/').unwrap_or((spec.as_str(), "tcp"));
            if port.parse::<u16>().is_err() {
                bail!(
                    "Error: invalid port ({port}): strconv.ParseUint: parsing {port:?}: invalid syntax"
                );
            }
            let key = format!("{port}/{proto}");
            match ports.get(&key).cloned().flatten() {
                Some(bindings) if !bindings.is_empty() => {
                    for b in bindings {
                        text.push_str(&host_port_text(&b.host_ip, &b.host_port));
                        text.push('\n');
                    }
                }
                _ => {
                    return Err(StatusError::error(
                        1,
                        format!(
                            "Error: No public port '{key}' published for {}",
                            a.container
                        ),
                    ));
                }
            }
        }
        None => {
            let mut keys: Vec<&String> = ports.keys().collect();
            keys.sort_by_key(|k| {
                let (p, proto) = k.split_once('/').unwrap_or((k.as_str(), ""));
                (p.parse::<u32>().unwrap_or(0), proto.to_string())
            });
            for key in keys {
                for b in ports[key].iter().flatten() {
                    text.push_str(&format!(
                        "{key} -> {}\n",
                        host_port_text(&b.host_ip, &b.host_port)
                    ));
                }
            }
        }
    }
    output::out(&text);
    Ok(())
}

/// A CIDR network parsed just far enough to pair gateways and ranges with subnets.
mod ipnet_lite {
    use std::net::IpAddr;

    pub struct Net {
        addr: IpAddr,
        prefix: u8,
    }

    impl std::str::FromStr for Net {
        type Err = ();
        fn from_str(s: &str) -> Result<Net, ()> {
            let (a, p) = s.split_once('/').ok_or(())?;
            let addr: IpAddr = a.parse().map_err(|_| ())?;
            let prefix: u8 = p.parse().map_err(|_| ())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if prefix > max {
                return Err(());
            }
            Ok(Net { addr, prefix })
        }
    }

    impl Net {
        pub fn contains(&self, ip: IpAddr) -> bool {
            let bits = |a: IpAddr| -> u128 {
                match a {
                    IpAddr::V4(v) => u32::from(v) as u128,
                    IpAddr::V6(v) => u128::from(v),
                }
            };
            if self.addr.is_ipv4() != ip.is_ipv4() {
                return false;
            }
            let width = if self.addr.is_ipv4() { 32 } else { 128 };
            let shift = width - self.prefix as u32;
            if shift >= 128 {
                return true;
            }
            (bits(self.addr) >> shift) == (bits(ip) >> shift)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        c: NetworkCommand,
    }

    #[test]
    fn gateways_and_ranges_pair_with_their_subnet() {
        let t = T::parse_from([
            "x",
            "create",
            "--subnet",
            "10.1.0.0/16",
            "--subnet",
            "10.2.0.0/16",
            "--gateway",
            "10.2.0.254",
            "--ip-range",
            "10.1.5.0/24",
            "n",
        ]);
        let NetworkCommand::Create(a) = t.c else {
            panic!()
        };
        let c = ipam_configs(&a).unwrap();
        assert_eq!(c[0].ip_range, "10.1.5.0/24");
        assert_eq!(c[1].gateway, "10.2.0.254");
        let t = T::parse_from([
            "x",
            "create",
            "--subnet",
            "10.1.0.0/16",
            "--gateway",
            "10.3.0.1",
            "n",
        ]);
        let NetworkCommand::Create(a) = t.c else {
            panic!()
        };
        assert_eq!(
            ipam_configs(&a).unwrap_err().to_string(),
            "no matching subnet for gateway 10.3.0.1"
        );
    }
}
