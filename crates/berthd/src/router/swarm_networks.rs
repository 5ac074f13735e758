//! Swarm-scoped networks in `/networks`: `create -d overlay` on a manager stores a cluster
//! Network (its subnet and VXLAN id chosen then, `berth_swarm::allocator`); `ls`, `inspect`
//! and `rm` show and remove them beside the daemon's local networks, in dockerd's shape
//! (`Scope: swarm`).

use std::collections::BTreeMap;

use berth_api::models::network::{
    ConfigReference, Ipam, IpamConfig, NetworkContainer, NetworkCreateRequest, NetworkResource,
};
use berth_api::{ApiError, ErrorKind, Filters};
use berth_swarm::allocator::{self, OPT_ENCRYPTED, OPT_VXLAN_ID};
use berth_swarm::store::{Op, State as ClusterState};
use berth_swarm::types::{Kind, Meta, Network, Object, new_id};
use serde_json::json;

use super::swarm::{NOT_A_MANAGER, commit};
use super::{Error, Result};
use crate::state::AppState;

/// Why `--opt encrypted` is refused (rather than silently left in clear).
pub const ENCRYPTED_UNSUPPORTED: &str = "encrypted overlay networks are not supported by Berth: \
     this kernel has the xfrm framework but no ESP transform (adding an ESP state fails with \
     \"Requested type not found\": CONFIG_INET_ESP is not built in and modules cannot be loaded) \
     and no rfc4106(gcm(aes)) AEAD; create the network without --opt encrypted";

/// Drivers whose networks live in the cluster store.
pub fn is_swarm_driver(driver: &str) -> bool {
    driver == "overlay"
}

/// `POST /networks/create` with `-d overlay`.
pub async fn create(state: &AppState, req: NetworkCreateRequest) -> Result<String> {
    let Some(h) = state.swarm.handle().await else {
        return Err(Error(ApiError::new(ErrorKind::Unavailable, NOT_A_MANAGER)));
    };
    if state
        .networks
        .get(&req.name)
        .is_ok_and(|n| n.name == req.name)
    {
        return Err(Error(ApiError::conflict(format!(
            "network with name {} already exists",
            req.name
        ))));
    }
    if req.name.is_empty() {
        return Err(Error(ApiError::invalid(
            "rpc error: code = InvalidArgument desc = meta: name must be provided",
        )));
    }
    let ipam = req.ipam.clone().unwrap_or_default();
    let configs: Vec<serde_json::Value> = ipam
        .config
        .iter()
        .flatten()
        .map(|c| json!({"Subnet": c.subnet, "Range": c.ip_range, "Gateway": c.gateway}))
        .collect();
    validate_ipam(&configs, req.enable_ipv6 == Some(true))?;
    let v6_configs = configs
        .iter()
        .filter(|c| c["Subnet"].as_str().is_some_and(|s| s.contains(':')))
        .count();
    if v6_configs > 1 || configs.len() - v6_configs > 1 {
        return Err(Error(ApiError::invalid(
            "Berth's overlay networks take one IPv4 subnet and one IPv6 subnet",
        )));
    }
    let options = req.options.clone().unwrap_or_default();
    let spec = json!({
        "Name": req.name,
        "Labels": req.labels.clone().unwrap_or_default(),
        "DriverConfiguration": {"Name": "overlay", "Options": options},
        "Internal": req.internal,
        "Attachable": req.attachable,
        "EnableIPv6": req.enable_ipv6 == Some(true),
        "Ingress": req.ingress,
        "IPAMOptions": {"Driver": {"Name": "default"}, "Configs": configs},
        "Scope": "swarm",
    });
    if options.contains_key(OPT_ENCRYPTED) {
        // Refused rather than made unencrypted: see docs/architecture.md ("Overlay networks").
        return Err(Error(ApiError::invalid(ENCRYPTED_UNSUPPORTED)));
    }
    let network = h.store().view(|s| {
        if req.ingress
            && let Some(old) = s.networks.values().find(|n| n.ingress())
        {
            return Err(Error(ApiError::new(
                ErrorKind::Forbidden,
                format!("ingress network ({}) is already present", old.meta.id),
            )));
        }
        if s.find_network(&req.name)
            .is_some_and(|n| n.name() == req.name)
        {
            return Err(Error(ApiError::conflict(format!(
                "network with name {} already exists",
                req.name
            ))));
        }
        let alloc = allocator::allocate_network(s, &spec).map_err(|e| {
            Error(ApiError::invalid(format!(
                "rpc error: code = InvalidArgument desc = {e}"
            )))
        })?;
        let mut spec = spec.clone();
        let mut configs = vec![json!({"Subnet": alloc.subnet, "Gateway": alloc.gateway})];
        if !alloc.subnet6.is_empty() {
            configs.push(json!({"Subnet": alloc.subnet6, "Gateway": alloc.gateway6}));
        }
        spec["IPAMOptions"]["Configs"] = json!(configs);
        Ok(Network {
            meta: Meta::new(new_id()),
            spec,
            driver_state: alloc,
        })
    })?;
    let id = network.meta.id.clone();
    commit(&h, vec![Op::Create(Object::Network(network))]).await?;
    Ok(id)
}

/// dockerd's checks of the subnets before the request reaches the cluster (Docker 28's
/// `ValidateIPAM`): IPv6 subnets are only checked on IPv6 networks.
fn validate_ipam(configs: &[serde_json::Value], ipv6: bool) -> Result<()> {
    for c in configs {
        let Some(s) = c["Subnet"].as_str().filter(|s| !s.is_empty()) else {
            continue;
        };
        let Ok(net) = s.parse::<ipnet::IpNet>() else {
            return Err(Error(ApiError::invalid(format!(
                "invalid subnet {s}: invalid CIDR block notation"
            ))));
        };
        if matches!(net, ipnet::IpNet::V6(_)) && !ipv6 {
            continue;
        }
        if net.trunc() != net {
            return Err(Error(ApiError::invalid(format!(
                "invalid subnet {net}: it should be {}",
                net.trunc()
            ))));
        }
    }
    Ok(())
}

/// The swarm networks as `GET /networks` lists them (none outside a swarm). A worker shows
/// those its managers sent it that are in use here (see [`worker_view`]).
pub async fn list(state: &AppState, f: &Filters) -> Vec<NetworkResource> {
    let Some(h) = state.swarm.handle().await else {
        let Some((node, s)) = worker_view(state).await else {
            return Vec::new();
        };
        return s
            .networks
            .values()
            .filter(|n| used_here(&s, n, &node) && matches(n, f))
            .map(|n| resource(&s, n, Some(&node)))
            .collect();
    };
    h.store().view(|s| {
        s.networks
            .values()
            .filter(|n| matches(n, f))
            .map(|n| resource(s, n, None))
            .collect()
    })
}

fn matches(n: &Network, f: &Filters) -> bool {
    let ok = |key: &str, test: &dyn Fn(&str) -> bool| {
        !f.contains(key) || f.get(key).iter().any(|v| test(v))
    };
    ok("driver", &|v| v == "overlay")
        && ok("id", &|v| n.meta.id.starts_with(v))
        && ok("name", &|v| n.name().contains(v))
        && ok("scope", &|v| v == "swarm")
        && ok("type", &|v| v == "custom")
        && f.get("label").iter().all(|v| {
            let labels = &n.spec["Labels"];
            match v.split_once('=') {
                Some((k, val)) => labels[k] == val,
                None => labels.get(*v).is_some(),
            }
        })
}

/// A swarm network as dockerd shows it; with `node`, the tasks of that node on it appear
/// under `Containers` (as `network inspect` on that node shows them).
pub fn resource(s: &ClusterState, n: &Network, node: Option<&str>) -> NetworkResource {
    let spec = &n.spec;
    let mut options: BTreeMap<String, String> = spec["DriverConfiguration"]["Options"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    options.insert(
        OPT_VXLAN_ID.to_string(),
        n.driver_state.vxlan_id.to_string(),
    );
    let labels = spec["Labels"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut containers = BTreeMap::new();
    if let Some(node) = node {
        for t in s.tasks.values() {
            if t.node_id != node || !allocator::holds_addresses(t) {
                continue;
            }
            let Some(cs) = &t.status.container_status else {
                continue;
            };
            for (net, addr) in allocator::task_addresses(t) {
                if net != n.meta.id || cs.container_id.is_empty() {
                    continue;
                }
                let ipv6_address = berth_swarm::allocator6::task_addresses6(t)
                    .into_iter()
                    .find(|(n6, _)| *n6 == net)
                    .map(|(_, a)| a.to_string())
                    .unwrap_or_default();
                let name = s
                    .services
                    .get(&t.service_id)
                    .map(|svc| berth_swarm::agent::task_name(svc.name(), t))
                    .unwrap_or_default();
                containers.insert(
                    cs.container_id.clone(),
                    NetworkContainer {
                        name,
                        endpoint_id: t.meta.id.clone(),
                        mac_address: berth_network::overlay::mac_of(addr.addr()),
                        ipv4_address: addr.to_string(),
                        ipv6_address,
                    },
                );
            }
        }
    }
    if let Some(node) = node {
        for (container, (on, addr)) in &n.driver_state.attachments {
            if on != node {
                continue;
            }
            let ip = addr.parse::<ipnet::IpNet>().ok();
            containers.insert(
                container.clone(),
                NetworkContainer {
                    name: n
                        .driver_state
                        .attachment_names
                        .get(container)
                        .cloned()
                        .unwrap_or_default(),
                    endpoint_id: endpoint_id(container, &n.meta.id),
                    mac_address: ip
                        .map(|ip| berth_network::overlay::mac_of(ip.addr()))
                        .unwrap_or_default(),
                    ipv4_address: addr.clone(),
                    ipv6_address: n
                        .driver_state
                        .attachments6
                        .get(container)
                        .cloned()
                        .unwrap_or_default(),
                },
            );
        }
    }
    NetworkResource {
        name: n.name().to_string(),
        id: n.meta.id.clone(),
        created: n.meta.created_at.clone(),
        scope: "swarm".into(),
        driver: "overlay".into(),
        enable_ipv4: true,
        enable_ipv6: !n.driver_state.subnet6.is_empty(),
        ipam: Ipam {
            driver: "default".into(),
            options: None,
            config: Some(
                std::iter::once((&n.driver_state.subnet, &n.driver_state.gateway))
                    .chain(
                        (!n.driver_state.subnet6.is_empty())
                            .then_some((&n.driver_state.subnet6, &n.driver_state.gateway6)),
                    )
                    .map(|(subnet, gateway)| IpamConfig {
                        subnet: subnet.clone(),
                        gateway: gateway.clone(),
                        ..Default::default()
                    })
                    .collect(),
            ),
        },
        internal: spec["Internal"] == true,
        attachable: spec["Attachable"] == true,
        ingress: n.ingress(),
        config_from: ConfigReference::default(),
        config_only: false,
        containers,
        options,
        labels,
    }
}

/// A worker's id and the state its managers last sent it (`None` on a manager or outside a
/// swarm).
async fn worker_view(
    state: &AppState,
) -> Option<(String, std::sync::Arc<berth_swarm::store::State>)> {
    let node = state.swarm.worker_node_id().await?;
    let (_, s) = state.swarm.node_view().await?;
    Some((node, s))
}

/// Whether a worker shows a swarm network: dockerd has one on a worker only while a task or
/// a plain container of the node is on it, and ingress always (every node's routing mesh).
fn used_here(s: &ClusterState, n: &Network, node: &str) -> bool {
    n.ingress()
        || n.driver_state
            .attachments
            .values()
            .any(|(on, _)| on == node)
        || s.tasks.values().any(|t| {
            t.node_id == node
                && allocator::holds_addresses(t)
                && allocator::task_addresses(t)
                    .iter()
                    .any(|(id, _)| *id == n.meta.id)
        })
}

/// A plain container's endpoint id on a swarm network (stable: derived from both ids).
fn endpoint_id(container: &str, network: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(format!("{container}/{network}").as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /networks/{id}` for a swarm network; `None` when there is none by that key.
pub async fn inspect(state: &AppState, key: &str) -> Option<NetworkResource> {
    let Some(h) = state.swarm.handle().await else {
        let (node, s) = worker_view(state).await?;
        return s
            .find_network(key)
            .filter(|n| used_here(&s, n, &node))
            .map(|n| resource(&s, n, Some(&node)));
    };
    let node = h.node_id().to_string();
    h.store()
        .view(|s| s.find_network(key).map(|n| resource(s, n, Some(&node))))
}

/// `DELETE /networks/{id}` for a swarm network; `None` when there is none by that key.
pub async fn remove(state: &AppState, key: &str) -> Option<Result<()>> {
    let Some(h) = state.swarm.handle().await else {
        // A worker shows the swarm networks it uses (see `inspect`); removing one is a change
        // to the cluster, which only managers make (dockerd's `errNoManager`).
        inspect(state, key).await?;
        return Some(Err(Error(ApiError::new(
            ErrorKind::Unavailable,
            super::swarm::WORKER_NOT_A_MANAGER,
        ))));
    };
    let found = h.store().view(|s| {
        let n = s.find_network(key)?;
        let users = s
            .services
            .values()
            .find(|svc| allocator::service_networks(s, svc).contains(&n.meta.id))
            .map(|svc| svc.meta.id.clone());
        let attached = crate::overlay::attachable::attached(s, &n.meta.id);
        Some((n.meta.id.clone(), n.ingress(), users, attached))
    })?;
    let (id, ingress, users, attached) = found;
    if attached > 0 {
        return Some(Err(Error(ApiError::new(
            ErrorKind::Forbidden,
            format!("error while removing network: network {key} id {id} has active endpoints"),
        ))));
    }
    if let Some(service) = users {
        let message = if ingress {
            format!(
                "rpc error: code = FailedPrecondition desc = ingress network cannot be removed because service {service} depends on it"
            )
        } else {
            format!(
                "rpc error: code = FailedPrecondition desc = network {id} is in use by service {service}"
            )
        };
        return Some(Err(Error(ApiError::invalid(message))));
    }
    Some(
        commit(
            &h,
            vec![Op::Delete {
                kind: Kind::Network,
                id,
            }],
        )
        .await,
    )
}

/// A service's networks must exist, and ingress is only joined by publishing ports
/// (swarmkit's texts).
pub fn check_service_networks(
    h: &berth_swarm::manager::Handle,
    spec: &serde_json::Value,
) -> Result<()> {
    let targets: Vec<String> = spec["TaskTemplate"]["Networks"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(spec["Networks"].as_array().into_iter().flatten())
        .filter_map(|a| a["Target"].as_str().map(str::to_string))
        .collect();
    let ports: Vec<&serde_json::Value> = spec["EndpointSpec"]["Ports"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let ingress_mode = |p: &serde_json::Value| {
        p["PublishMode"]
            .as_str()
            .is_none_or(|m| m.is_empty() || m == "ingress")
    };
    if spec["EndpointSpec"]["Mode"] == "dnsrr" && ports.iter().any(|p| ingress_mode(p)) {
        return Err(Error(ApiError::invalid(
            "rpc error: code = InvalidArgument desc = EndpointSpec: port published with ingress mode can't be used with dnsrr mode",
        )));
    }
    let name = spec["Name"].as_str().unwrap_or_default();
    h.store().view(|s| {
        for p in ports.iter().filter(|p| ingress_mode(p)) {
            let Some(port) = p["PublishedPort"].as_u64().filter(|p| *p > 0) else {
                continue;
            };
            let proto = p["Protocol"].as_str().unwrap_or("tcp");
            let taken = s.services.values().find(|other| {
                other.name() != name
                    && other.endpoint["Ports"].as_array().is_some_and(|ps| {
                        ps.iter().any(|q| {
                            q["PublishedPort"] == port
                                && q["Protocol"].as_str().unwrap_or("tcp") == proto
                                && q["PublishMode"] == "ingress"
                        })
                    })
            });
            if let Some(other) = taken {
                return Err(Error(ApiError::invalid(format!(
                    "rpc error: code = InvalidArgument desc = port '{port}' is already in use by service '{}' ({}) as an ingress port",
                    other.name(),
                    other.meta.id
                ))));
            }
        }
        for t in &targets {
            match s.find_network(t) {
                None => return Err(Error(ApiError::not_found(format!("network {t} not found")))),
                Some(n) if n.ingress() => {
                    return Err(Error(ApiError::invalid(
                        "rpc error: code = InvalidArgument desc = Service cannot be explicitly attached to the ingress network \"ingress\"",
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(())
    })
}
